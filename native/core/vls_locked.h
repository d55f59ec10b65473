/*
 * Locked sessions (the VLS idea): locks that are taken only where a session can be touched by more
 * than one thread or process.
 *
 * - A worker used by one thread takes no lock on the data path. When a second thread registers
 *   with the worker (vls_worker_thread_register), every public call takes the worker's lock, the
 *   way vls_mt_* only locks once vls_mt_n_threads > 1.
 * - A session reachable from more than one process (after a fork, or handed to another worker)
 *   is marked shared; operations on it then also take its side lock, a robust process-shared mutex
 *   that lives in shared memory next to the session's fifos.
 * - A listening endpoint served by several workers has shared data of its own: the owner worker,
 *   the subscribed workers and the active-listener bitmap. New connections are spread round-robin
 *   over the active listeners.
 */
#ifndef VLS_LOCKED_H
#define VLS_LOCKED_H

#include "vls_segment.h"

#define VLS_MAX_WORKERS 256
#define VLS_LISTENER_MAGIC 0x4e53494cu /* "LISN" */

typedef struct vls_listener_shared {
  uint32_t magic;
  uint32_t owner_wrk;
  pthread_mutex_t lock;
  uint32_t rr; /* next worker to consider */
  uint32_t n_subscribed;
  uint64_t subscribed[VLS_MAX_WORKERS / 64];
  uint64_t active[VLS_MAX_WORKERS / 64];
} vls_listener_shared_t;

int64_t vls_listener_shared_create(vls_segment_t *seg, uint32_t owner_wrk);
int vls_listener_shared_destroy(vls_segment_t *seg, uint64_t off);
/* Checked pointer to the shared listener data at `off`; NULL when it is not one. */
vls_listener_shared_t *vls_listener_shared_get(const vls_segment_t *seg, uint64_t off);
/* Subscribe a worker (it may accept on this listener); active by default. -EINVAL bad index. */
int vls_listener_subscribe(vls_listener_shared_t *l, uint32_t wrk);
/* Unsubscribe; returns the number of subscribers left. Ownership moves to the lowest remaining
 * subscriber when the owner leaves. */
int vls_listener_unsubscribe(vls_listener_shared_t *l, uint32_t wrk);
/* A subscribed worker stops or resumes taking new connections (its accept queue is full, or it
 * paused). -ENOENT when not subscribed. */
int vls_listener_set_active(vls_listener_shared_t *l, uint32_t wrk, int active);
/* Pick the worker for the next connection: round-robin over active subscribers; -ECONNREFUSED
 * when none is active. */
int vls_listener_pick(vls_listener_shared_t *l);
int vls_listener_is_subscribed(vls_listener_shared_t *l, uint32_t wrk);
int vls_listener_owner(vls_listener_shared_t *l);

#endif
