/*
 * Message queue: a ring of fixed-size messages in a shared segment plus an eventfd (the svm_msg_q
 * idea). Many producers (every peer that has a session with this worker), one consumer (the
 * worker).
 *
 *   line 0: magic, elt_size, n_elts, data_off      (set once by the creator)
 *   line 1: producer lock (robust mutex), tail     (producers, under the lock)
 *   line 2: head                                   (consumer only, no lock)
 *   line 3: counters (full answers)
 *   data:   n_elts slots of elt_size bytes
 *
 * Producers serialise on a robust mutex (a producer killed inside the lock does not wedge the
 * queue; it only loses its own unpublished message). The consumer is lock-free: it acquires tail,
 * reads a batch and releases head.
 *
 * Wake-ups: the eventfd is written only when the consumer said it may sleep. Before sleeping the
 * consumer sets consumer_sleeping, fences and re-reads tail (vls_mq_ready_to_sleep); a producer
 * stores tail, fences and takes the flag from 1 to 0 with an exchange, writing the eventfd only if
 * it did. So either the producer sees the sleeping consumer and wakes it, or the consumer sees the
 * new message and does not sleep; a consumer that is awake costs its producers no syscall, and
 * a batch of messages costs one wake-up. (A producer that takes over the lock of one that died
 * after publishing signals too, in case the dead one never did.)
 *
 * A full queue answers -EAGAIN at once: the caller never blocks and nothing is dropped silently.
 */
#ifndef VLS_MQ_H
#define VLS_MQ_H

#include "vls_segment.h"

#define VLS_MQ_MAGIC 0x51514d56u /* "VMQQ" */
#define VLS_MQ_MAX_ELT 256u
#define VLS_MQ_MAX_ELTS (1u << 20)

typedef struct vls_mq_shared {
  uint32_t magic;
  uint32_t elt_size;
  uint32_t n_elts;
  uint32_t pad;
  uint64_t data_off;
  uint8_t pad0[VLS_CACHE_LINE - 24];
  pthread_mutex_t plock VLS_ALIGNED(VLS_CACHE_LINE);
  _Atomic uint32_t tail;
  _Atomic uint32_t head VLS_ALIGNED(VLS_CACHE_LINE);
  _Atomic uint32_t consumer_sleeping; /* 1: the consumer may sleep; wake it with the eventfd */
  _Atomic uint64_t n_full VLS_ALIGNED(VLS_CACHE_LINE);
  _Atomic uint64_t n_signals;
} vls_mq_shared_t;

typedef struct vls_mq {
  vls_mq_shared_t *sh;
  uint8_t *data;
  uint32_t elt_size;
  uint32_t n_elts;
  uint32_t mask;
  uint32_t my_head; /* consumer's own index */
  int efd;          /* consumer's eventfd (owned by whoever created the view) */
} vls_mq_t;

int64_t vls_mq_create(vls_segment_t *seg, uint32_t elt_size, uint32_t n_elts);
int vls_mq_destroy(vls_segment_t *seg, uint64_t off);
/* Private view; `efd` is the consumer's eventfd (not owned, not closed by the mq). */
int vls_mq_attach(vls_mq_t *mq, const vls_segment_t *seg, uint64_t off, int efd);

/* Producer: copy one message (len <= elt_size, the rest zero-filled). 0 on success; -EAGAIN when
 * full; -EINVAL for a bad length; -EIO when the shared indices are corrupt. Writes the eventfd
 * when the consumer may be asleep (returns 1 in that case). */
int vls_mq_send(vls_mq_t *mq, const void *msg, uint32_t len);
/* Consumer: take up to `max` messages into `out` (max * elt_size bytes); returns the count. */
int vls_mq_recv_batch(vls_mq_t *mq, void *out, uint32_t max);
/* Consumer: announce that we may sleep, then look again: 1 when still empty (sleeping is safe:
 * the next message writes the eventfd), 0 when a message came (keep draining). */
int vls_mq_ready_to_sleep(vls_mq_t *mq);
/* Consumer: we are awake and draining; producers need not write the eventfd until the next
 * vls_mq_ready_to_sleep(). */
void vls_mq_awake(vls_mq_t *mq);
/* Consumer: reset the eventfd counter (non-blocking); returns the count read or 0. */
int64_t vls_mq_eventfd_clear(vls_mq_t *mq);
/* Messages in the queue now (checked; -EIO when corrupt). */
int64_t vls_mq_depth(vls_mq_t *mq);

#endif
