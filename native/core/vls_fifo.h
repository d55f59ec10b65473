/*
 * Fifo: a single-producer single-consumer byte ring in a shared segment (the svm_fifo idea).
 *
 *   shared (in the segment)                             private (per process)
 *   +---------------------------------+                 +----------------------------+
 *   | line 0: magic, size, data_off   |<-- sh ----------| vls_fifo_t: size, mask,    |
 *   | line 1: head   (consumer writes)|                 |  data ptr, my_head, my_tail|
 *   | line 2: tail, eof (producer)    |                 +----------------------------+
 *   | line 3: has_event, want_deq_ntf,|
 *   |         deq_thresh              |
 *   +---------------------------------+
 *   | data[size] (size a power of 2)  |
 *   +---------------------------------+
 *
 * head and tail are free-running 32-bit byte counters; used = tail - head (mod 2^32) and a byte's
 * slot is counter & mask. The producer publishes bytes with a release store of tail after copying
 * them in; the consumer acquires tail before copying them out and releases head after, which the
 * producer acquires before reusing the room.
 *
 * The other process can write anything into the shared part. So each side keeps its own index in
 * private memory (my_head for the consumer, my_tail for the producer) and never reads it back; the
 * size and data offset are copied and checked once at attach; the peer's index is read once per
 * operation and checked (tail - head must not exceed size) before use. A corrupted fifo answers
 * -EIO; it never makes us touch memory outside its data area.
 *
 * Signalling:
 * - has_event: the producer sets it after enqueuing; only the 0->1 transition asks the caller to
 *   signal the consumer, so a batch of writes costs one wake-up. The consumer clears it when it
 *   finds the fifo empty and then looks again (vls_fifo_unset_event() returns what it found), so a
 *   write racing with the clear is never missed. Both sides order their store before their load
 *   with a seq_cst fence (the classic store/load pairing).
 * - dequeue notification: a producer that found the fifo full asks to be told when at least
 *   `threshold` bytes are free; the consumer checks after each dequeue and answers once.
 */
#ifndef VLS_FIFO_H
#define VLS_FIFO_H

#include "vls_segment.h"

#define VLS_FIFO_MAGIC 0x4f464946u /* "FIFO" */
#define VLS_FIFO_MIN_SIZE 64u
#define VLS_FIFO_MAX_SIZE (1u << 30)

typedef struct vls_fifo_shared {
  /* line 0: set once by the creator */
  uint32_t magic;
  uint32_t size;
  uint64_t data_off; /* segment offset of the data area */
  uint8_t pad0[VLS_CACHE_LINE - 16];
  /* line 1: consumer */
  _Atomic uint32_t head VLS_ALIGNED(VLS_CACHE_LINE);
  uint8_t pad1[VLS_CACHE_LINE - 4];
  /* line 2: producer */
  _Atomic uint32_t tail VLS_ALIGNED(VLS_CACHE_LINE);
  _Atomic uint32_t eof; /* producer will write no more: set after its last byte */
  uint8_t pad2[VLS_CACHE_LINE - 8];
  /* line 3: signalling */
  _Atomic uint32_t has_event VLS_ALIGNED(VLS_CACHE_LINE);
  _Atomic uint32_t want_deq_ntf;
  _Atomic uint32_t deq_thresh;
  uint8_t pad3[VLS_CACHE_LINE - 12];
} vls_fifo_shared_t;

typedef struct vls_fifo {
  vls_fifo_shared_t *sh;
  uint8_t *data;
  uint32_t size;
  uint32_t mask;
  uint32_t my_head; /* consumer's own index, authoritative for this process */
  uint32_t my_tail; /* producer's own index, authoritative for this process */
} vls_fifo_t;

/* Bytes of segment space a fifo of `size` takes: its shared header and its data, two blocks of
 * the segment allocator (block headers included). */
uint64_t vls_fifo_footprint(uint32_t size);
/* Allocate and format a fifo in `seg`; returns its segment offset or a negative errno. */
int64_t vls_fifo_create(vls_segment_t *seg, uint32_t size);
/* Release a fifo made by vls_fifo_create(). */
int vls_fifo_destroy(vls_segment_t *seg, uint64_t off);
/* Build a private view of the fifo at `off`, validating everything read from shared memory. */
int vls_fifo_attach(vls_fifo_t *f, const vls_segment_t *seg, uint64_t off);

/* Bytes the consumer can read / the producer can write now; -EIO if the indices are corrupt. */
int64_t vls_fifo_max_dequeue(vls_fifo_t *f);
int64_t vls_fifo_max_enqueue(vls_fifo_t *f);

/* Copy up to len bytes in; returns bytes taken (may be short), -EAGAIN when full. */
int vls_fifo_enqueue(vls_fifo_t *f, const void *buf, uint32_t len);
/* Multi-segment enqueue: the segments enter as one unit. With all_or_nothing, either every byte
 * goes in (returns the total) or none (-EAGAIN; -EMSGSIZE if the total can never fit); otherwise
 * as many bytes as fit, in order (returns the count, -EAGAIN when full). */
int vls_fifo_enqueue_segs(vls_fifo_t *f, const vls_iov_t *segs, uint32_t n_segs,
                          int all_or_nothing);
/* Copy up to len bytes out and consume them; returns bytes read, -EAGAIN when empty. */
int vls_fifo_dequeue(vls_fifo_t *f, void *buf, uint32_t len);
/* Copy up to len bytes starting `offset` bytes past the head, consuming nothing; -EAGAIN when
 * there is no byte at that offset. */
int vls_fifo_peek(vls_fifo_t *f, uint32_t offset, void *buf, uint32_t len);
/* Consume up to len bytes without copying; returns bytes dropped. */
int vls_fifo_drop(vls_fifo_t *f, uint32_t len);
int vls_fifo_drop_all(vls_fifo_t *f);

/* Producer: mark an event pending; returns 1 when this call made it pending (signal the consumer),
 * 0 when one was already pending. */
int vls_fifo_set_event(vls_fifo_t *f);
/* Consumer: clear the pending flag, then look again; returns the bytes now readable (so > 0 means
 * data raced in and the consumer must keep reading), or -EIO. */
int64_t vls_fifo_unset_event(vls_fifo_t *f);
int vls_fifo_has_event(const vls_fifo_t *f);

/* Producer: ask to be told when at least `threshold` bytes are free (clamped to [1, size]).
 * Returns the bytes free right after arming, so the caller can tell if room already came. */
int64_t vls_fifo_want_deq_ntf(vls_fifo_t *f, uint32_t threshold);
/* Consumer, after dequeuing: 1 if the producer asked and the room is there now (the request is
 * consumed: the caller must notify exactly once), else 0. */
int vls_fifo_needs_deq_ntf(vls_fifo_t *f);

/* Reload this process's own indices from shared memory (checked). Needed when another process
 * may have moved them: a session shared between workers, under its VLS lock. */
int vls_fifo_resync(vls_fifo_t *f);

/* Producer: no more bytes will follow (FIN after queued data). */
void vls_fifo_set_eof(vls_fifo_t *f);
/* Consumer: 1 when the producer set eof and every byte before it has been read. */
int vls_fifo_is_eof(vls_fifo_t *f);
/* Consumer: 1 when the producer set eof, whether or not bytes before it are still unread. */
int vls_fifo_eof_sent(const vls_fifo_t *f);

#endif
