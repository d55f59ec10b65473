/* Private structures shared by vls_session.c and vls_epoll.c. Not part of the API. */
#ifndef VLS_SESSION_INTERNAL_H
#define VLS_SESSION_INTERNAL_H

#include <pthread.h>

#include "vls_fifo.h"
#include "vls_locked.h"
#include "vls_mq.h"
#include "vls_session.h"

#define VLS_CT_MAGIC 0x50544356u /* "VCTP" */
#define VLS_IDX_BITS 24
#define VLS_IDX_MASK ((1u << VLS_IDX_BITS) - 1)
#define VLS_GEN_MAX ((1u << 29) - 1)
#define VLS_NIL UINT32_MAX

/* Bits of vls_ct_shared_t.flags. */
#define VLS_CT_RESET(side) (1u << (side)) /* that side reset the session */
#define VLS_CT_ACCEPTED (1u << 2)          /* the acceptor's application took the session */

/* The shared part of a cut-through session, in the connector's segment. Side 0 is the connector,
 * which makes the pair: it writes fifo 0 and reads fifo 1. */
typedef struct vls_ct_shared {
  uint32_t magic;
  uint32_t fifo_size;
  uint64_t fifo_off[2];
  _Atomic uint32_t gone_mask; /* bit per side: that side's session is freed */
  _Atomic uint32_t flags;     /* VLS_CT_RESET(side), VLS_CT_ACCEPTED */
  /* The acceptor's session handle, stored when it attaches the pair. The connector is connected
   * (and may write, close or reset) before it knows it: an event it has for the acceptor before
   * then is not posted, and the acceptor reads the pair's state when it attaches instead. */
  _Atomic uint64_t acceptor_handle;
  /* VLS lock of a shared session. Not on a cache line of their own: they are taken only when a
   * session is shared between workers, and unpadded the record (120 bytes) fits a 128-byte
   * block, which keeps a session's segment bookkeeping (this record, two fifo headers, four block
   * headers) under 1 KiB. */
  pthread_mutex_t side_lock[2];
} vls_ct_shared_t;

/* Another worker we have sessions with. Fifo pairs live in per-pair segments: the one we made
 * for sessions we connected to this peer (ct_local), and the one the peer made for sessions it
 * connected to us (ct_remote). A misbehaving peer can therefore scribble only on memory that
 * holds its own sessions with us. Peer 0 is the worker itself and uses ct_local for both. */
typedef struct vls_peer {
  int in_use;
  int down;
  uint32_t wrk_index;
  vls_segment_t mq_seg; /* attached view of the peer's queue segment (unused for peer 0) */
  vls_mq_t mq;          /* view of the peer's queue; its efd is the peer's eventfd (owned) */
  vls_segment_t ct_local;
  vls_segment_t ct_remote;
  uint32_t n_sessions;
  /* Events that found the peer's queue full, posted in order before any newer one. */
  vls_evt_t *deferred;
  uint32_t n_deferred, cap_deferred;
} vls_peer_t;

typedef struct vls_epitem {
  uint32_t in_use;
  uint32_t ep;       /* session index of the epoll set */
  uint32_t sidx;     /* session index of the watched session */
  uint32_t events;   /* requested events, with EPOLLET / EPOLLONESHOT */
  uint64_t data;
  uint32_t next_of_session; /* chain of the items watching one session */
  uint32_t next_of_ep;      /* chain of the items of one epoll set */
  uint32_t prev_of_ep;
  uint32_t rl_prev, rl_next; /* ready list links */
  uint8_t on_rl;
  uint8_t disabled; /* EPOLLONESHOT fired: silent until EPOLL_CTL_MOD */
} vls_epitem_t;

typedef struct vls_session {
  uint32_t gen;      /* 0 while the slot is free */
  uint32_t gen_next; /* generation the slot's next session gets */
  uint32_t idx;      /* own slot index */
  uint8_t state;
  uint8_t side;
  uint16_t pad;
  uint32_t flags;
  int err;
  uint32_t peer;
  uint64_t peer_handle;
  uint64_t ct_off;
  vls_ct_shared_t *ct;
  vls_fifo_t rx, tx;
  uint64_t bytes_in, bytes_out;
  uint64_t opaque;
  uint32_t epitems; /* head of this session's epitem chain */
  uint32_t next_free;
  /* listener */
  uint32_t backlog;
  uint32_t *acq; /* accept queue: session indices */
  uint32_t acq_head, acq_n;
  uint32_t listener; /* ACCEPTING sessions: index of their listener */
  /* epoll set */
  uint32_t ep_items;       /* head of the set's item chain */
  uint32_t rl_head, rl_tail;
} vls_session_t;

struct vls_worker {
  uint32_t index;
  uint32_t fifo_size;
  int efd;
  vls_segment_t seg;
  uint64_t mq_off;
  vls_mq_t mq;
  /* Sessions live in fixed chunks so a session pointer stays valid while the table grows. */
  vls_session_t **chunks;
  uint32_t n_chunks, n_slots, free_head, n_live;
  vls_peer_t *peers;
  uint32_t n_peers;
  vls_epitem_t *items;
  uint32_t n_items, items_free;
  vls_evt_t *batch;
  uint32_t batch_max;
  uint64_t ct_segment_size;
  /* ct pairs in our segments whose session we freed while the peer still held its end:
   * freed when the peer says it let go (CT_FREE), and only then. */
  struct vls_orphan {
    uint32_t peer;
    uint64_t ct_off;
  } *orphans;
  uint32_t n_orphans, cap_orphans;
  /* VLS: the worker lock is taken only once a second thread registered. */
  _Atomic uint32_t n_threads;
  pthread_mutex_t mt_lock;
  uint64_t evts_in, evts_out, evts_stale, evts_deferred, mq_full;
  uint64_t wakeups;
  uint64_t ep_visits; /* ready-list items examined by vls_epoll_wait (cost accounting) */
  /* Readiness raised by an application call (not by an event from the queue) kicks our own
   * eventfd once, so an event loop that only waits on the eventfd looks again. */
  uint8_t in_poll, kicked;
  /* Busy polling (vls_worker_set_busy_poll): never announce sleep, leave the eventfd to the
   * caller, and note self-kicks instead of writing the eventfd. */
  uint8_t busy_poll;
};

static inline uint64_t vls__handle(uint32_t idx, uint32_t gen) {
  return ((uint64_t)gen << VLS_IDX_BITS) | idx;
}

#define VLS_CHUNK_BITS 10
#define VLS_CHUNK (1u << VLS_CHUNK_BITS)
static inline vls_session_t *vls__slot(const vls_worker_t *w, uint32_t idx) {
  return &w->chunks[idx >> VLS_CHUNK_BITS][idx & (VLS_CHUNK - 1)];
}

/* Session lookup by handle: NULL for a free slot or a stale generation. */
static inline vls_session_t *vls__session_get(vls_worker_t *w, uint64_t h) {
  uint32_t idx = (uint32_t)(h & VLS_IDX_MASK);
  uint64_t gen = h >> VLS_IDX_BITS;
  if (idx >= w->n_slots || gen == 0 || gen > VLS_GEN_MAX) return NULL;
  vls_session_t *s = vls__slot(w, idx);
  return s->gen == gen ? s : NULL;
}

static inline uint32_t vls__sidx(vls_worker_t *w, vls_session_t *s) {
  (void)w;
  return s->idx;
}

static inline uint64_t vls__session_handle(vls_worker_t *w, vls_session_t *s) {
  return vls__handle(vls__sidx(w, s), s->gen);
}

/* Worker lock (VLS mt path) */
static inline void vls__wlock(vls_worker_t *w) {
  if (VLS_UNLIKELY(atomic_load_explicit(&w->n_threads, memory_order_relaxed) > 1))
    pthread_mutex_lock(&w->mt_lock);
}
static inline void vls__wunlock(vls_worker_t *w) {
  if (VLS_UNLIKELY(atomic_load_explicit(&w->n_threads, memory_order_relaxed) > 1))
    pthread_mutex_unlock(&w->mt_lock);
}

/* Readiness of a session now, as epoll bits. */
uint32_t vls__session_poll(vls_worker_t *w, vls_session_t *s);
/* Something happened to session s: queue it on the ready list of every epoll set that watches
 * for one of `events` (ERR and HUP always count). */
void vls__epoll_notify(vls_worker_t *w, vls_session_t *s, uint32_t events);
/* Detach every epitem that watches s (session is going away). */
void vls__epoll_forget_session(vls_worker_t *w, vls_session_t *s);
/* Free every item of the epoll set s. */
void vls__epoll_destroy_set(vls_worker_t *w, vls_session_t *s);
int vls__session_alloc(vls_worker_t *w, vls_session_t **out);
#ifdef VLS_TEST_HOOKS
/* Native tests only: runs inside vls_read between the dequeue and the look at what is left, so
 * a test can replay a writer that comes in at that moment. */
extern void (*vls_test_after_dequeue)(vls_worker_t *w, uint64_t h);
#endif
void vls__session_free(vls_worker_t *w, vls_session_t *s);

#endif
