#include "vls_session_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

const char *vls_session_state_str(int state) {
  switch (state) {
#define X(s)                                                                                       \
  case VLS_SS_##s:                                                                                 \
    return #s;
    VLS_SESSION_STATES(X)
#undef X
  default:
    return "UNKNOWN";
  }
}

const char *vls_evt_str(int type) {
  switch (type) {
#define X(e)                                                                                       \
  case VLS_EVT_##e:                                                                                \
    return #e;
    VLS_EVT_TYPES(X)
#undef X
  default:
    return "NONE";
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Worker                                                                                          */

#define VLS_DEFAULT_FIFO (256u * 1024u)
#define VLS_DEFAULT_MQ 65536u
#define VLS_DEFAULT_CT_SEG (16ull << 30) /* address space (as VLS_SEGMENT_SIZE's default) */
#define VLS_BATCH 256u

static int vls__peers_grow(vls_worker_t *w) {
  uint32_t n = w->n_peers ? w->n_peers * 2 : 8;
  vls_peer_t *p = realloc(w->peers, n * sizeof *p);
  if (!p) return -ENOMEM;
  memset(p + w->n_peers, 0, (n - w->n_peers) * sizeof *p);
  for (uint32_t i = w->n_peers; i < n; i++) {
    p[i].mq_seg.fd = p[i].ct_local.fd = p[i].ct_remote.fd = -1;
    p[i].mq.efd = -1;
  }
  w->peers = p;
  w->n_peers = n;
  return 0;
}

int vls_worker_create(vls_worker_t **out, const vls_worker_cfg_t *cfg) {
  *out = NULL;
  if (!cfg || cfg->index >= VLS_MAX_WORKERS) return -EINVAL;
  uint32_t fifo = cfg->fifo_size ? cfg->fifo_size : VLS_DEFAULT_FIFO;
  uint32_t mqn = cfg->mq_size ? cfg->mq_size : VLS_DEFAULT_MQ;
  if (!vls_is_pow2(fifo) || fifo < VLS_FIFO_MIN_SIZE || fifo > VLS_FIFO_MAX_SIZE) return -EINVAL;
  if (!vls_is_pow2(mqn) || mqn < 2 || mqn > VLS_MQ_MAX_ELTS) return -EINVAL;
  vls_worker_t *w = calloc(1, sizeof *w);
  if (!w) return -ENOMEM;
  w->index = cfg->index;
  w->fifo_size = fifo;
  w->ct_segment_size = cfg->segment_size ? cfg->segment_size : VLS_DEFAULT_CT_SEG;
  w->free_head = VLS_NIL;
  w->items_free = VLS_NIL;
  w->seg.fd = -1;
  atomic_store(&w->n_threads, 1);
  pthread_mutex_init(&w->mt_lock, NULL);
  int rv;
  w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->efd < 0) {
    rv = -errno;
    goto fail;
  }
  uint64_t mq_bytes = sizeof(vls_mq_shared_t) + (uint64_t)mqn * sizeof(vls_evt_t);
  rv = vls_segment_create(&w->seg, cfg->name ? cfg->name : "vls-wrk", 2 * mq_bytes + 128 * 1024);
  if (rv < 0) goto fail;
  int64_t off = vls_mq_create(&w->seg, sizeof(vls_evt_t), mqn);
  if (off < 0) {
    rv = (int)off;
    goto fail;
  }
  w->mq_off = (uint64_t)off;
  if ((rv = vls_mq_attach(&w->mq, &w->seg, w->mq_off, w->efd)) < 0) goto fail;
  w->batch_max = VLS_BATCH;
  w->batch = calloc(w->batch_max, sizeof(vls_evt_t));
  if (!w->batch || (rv = vls__peers_grow(w)) < 0) {
    rv = -ENOMEM;
    goto fail;
  }
  /* Peer 0 is ourselves: events to our own sessions go through our own queue. */
  vls_peer_t *self = &w->peers[0];
  self->in_use = 1;
  self->wrk_index = w->index;
  self->mq = w->mq;
  self->mq.efd = w->efd;
  vls_debug_wrk = (int)w->index;
  VLS_DBG(1, "worker %u created: efd %d segment fd %d", w->index, w->efd, w->seg.fd);
  *out = w;
  return 0;
fail:
  vls_worker_destroy(w);
  return rv;
}

static void vls__peer_release(vls_worker_t *w, uint32_t pid) {
  vls_peer_t *p = &w->peers[pid];
  if (pid != 0) {
    vls_segment_detach(&p->mq_seg);
    if (p->mq.efd >= 0) close(p->mq.efd);
  }
  vls_segment_detach(&p->ct_local);
  vls_segment_detach(&p->ct_remote);
  free(p->deferred);
  memset(p, 0, sizeof *p);
  p->mq_seg.fd = p->ct_local.fd = p->ct_remote.fd = -1;
  p->mq.efd = -1;
}

void vls_worker_close_all(vls_worker_t *w) {
  /* Close every live session as the kernel closes the sockets of a process that exits, with
   * vls_close's rule: FIN behind the queued bytes (the peer still maps the fifos and reads them
   * after we are gone), or a reset when received data was left unread. A connection nobody
   * accepted, or one with an error pending, is reset. The peer learns at once, not when it
   * notices that we went. */
  for (uint32_t i = 0; i < w->n_slots; i++) {
    vls_session_t *s = vls__slot(w, i);
    if (!s->gen || (s->flags & (VLS_SF_EPOLL | VLS_SF_LISTENER | VLS_SF_APP_GONE))) continue;
    uint64_t h = vls__session_handle(w, s);
    if (s->ct && s->state != VLS_SS_ACCEPTING && !s->err)
      vls_close(w, h);
    else
      vls_reset(w, h);
  }
}

void vls_worker_destroy(vls_worker_t *w) {
  if (!w) return;
  vls_worker_close_all(w);
  for (uint32_t i = 0; i < w->n_slots; i++) {
    vls_session_t *s = vls__slot(w, i);
    if (s->gen) vls__session_free(w, s);
  }
  for (uint32_t i = 0; i < w->n_peers; i++)
    if (w->peers[i].in_use) vls__peer_release(w, i);
  for (uint32_t c = 0; c < w->n_chunks; c++) free(w->chunks[c]);
  free(w->chunks);
  free(w->peers);
  free(w->items);
  free(w->batch);
  free(w->orphans);
  vls_segment_detach(&w->seg);
  if (w->efd >= 0) close(w->efd);
  pthread_mutex_destroy(&w->mt_lock);
  free(w);
}

int vls_worker_index(const vls_worker_t *w) { return (int)w->index; }
int vls_worker_eventfd(const vls_worker_t *w) { return w->efd; }
int vls_worker_segment_fd(const vls_worker_t *w) { return w->seg.fd; }
uint64_t vls_worker_mq_offset(const vls_worker_t *w) { return w->mq_off; }

int vls_worker_stats(const vls_worker_t *w, vls_worker_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->index = w->index;
  for (uint32_t i = 1; i < w->n_slots; i++) {
    vls_session_t *s = vls__slot(w, i);
    st->n_sessions += s->gen && !(s->flags & VLS_SF_EPOLL);
  }
  for (uint32_t i = 1; i < w->n_peers; i++) st->n_peers += w->peers[i].in_use ? 1 : 0;
  st->evts_in = w->evts_in;
  st->evts_out = w->evts_out;
  st->evts_stale = w->evts_stale;
  st->evts_deferred = w->evts_deferred;
  st->mq_full = w->mq_full;
  st->wakeups = w->wakeups;
  st->ep_visits = w->ep_visits;
  for (uint32_t i = 0; i < w->n_peers; i++) {
    vls_segment_stats_t ss;
    if (w->peers[i].in_use && vls_segment_stats(&w->peers[i].ct_local, &ss) == 0) {
      st->segment_size += ss.size;
      st->segment_used += ss.bytes_used;
    }
  }
  return 0;
}

int vls_worker_thread_register(vls_worker_t *w) {
  /* Take the lock before the count goes above one, so no call runs half locked. */
  pthread_mutex_lock(&w->mt_lock);
  uint32_t n = atomic_fetch_add(&w->n_threads, 1) + 1;
  pthread_mutex_unlock(&w->mt_lock);
  return (int)n;
}

int vls_worker_add_peer(vls_worker_t *w, uint32_t peer_index, int seg_fd, uint64_t mq_off,
                        int efd) {
  if (peer_index >= VLS_MAX_WORKERS || efd < 0) return -EINVAL;
  vls__wlock(w);
  uint32_t pid = 1;
  while (pid < w->n_peers && w->peers[pid].in_use) pid++;
  int rv = 0;
  if (pid == w->n_peers && (rv = vls__peers_grow(w)) < 0) goto out;
  vls_peer_t *p = &w->peers[pid];
  if ((rv = vls_segment_attach(&p->mq_seg, seg_fd)) < 0) goto out;
  if ((rv = vls_mq_attach(&p->mq, &p->mq_seg, mq_off, efd)) < 0) {
    p->mq_seg.fd = -1; /* on failure the caller keeps its fd */
    vls_segment_detach(&p->mq_seg);
    goto out;
  }
  p->in_use = 1;
  p->wrk_index = peer_index;
  rv = (int)pid;
out:
  vls__wunlock(w);
  return rv;
}

static vls_peer_t *vls__peer(vls_worker_t *w, uint32_t pid) {
  if (pid >= w->n_peers || !w->peers[pid].in_use) return NULL;
  return &w->peers[pid];
}

/* The smallest fifo segment made for a peer when the configured size does not fit. */
#define VLS__CT_SEG_MIN (4ull << 20)

/* Our fifo segment for this peer, made on the first connect to it. A size the process's address
 * space cannot take (RLIMIT_AS: the size is address space, not memory) is halved until it fits:
 * a smaller segment holds fewer sessions (a connect that finds it full goes to the kernel), which
 * beats holding none. */
static int vls__ct_local(vls_worker_t *w, vls_peer_t *p) {
  if (p->ct_local.base) return 0;
  char name[32];
  snprintf(name, sizeof name, "vls-ct-%u-%u", w->index, p->wrk_index);
  uint64_t size = w->ct_segment_size;
  for (;;) {
    int rv = vls_segment_create(&p->ct_local, name, size);
    if (rv != -ENOMEM || size / 2 < VLS__CT_SEG_MIN) return rv;
    VLS_DBG(1, "segment %s: %llu bytes do not fit the address space, trying half", name,
            (unsigned long long)size);
    size /= 2;
  }
}

int vls_peer_ct_segment_fd(vls_worker_t *w, uint32_t peer_id) {
  vls__wlock(w);
  vls_peer_t *p = vls__peer(w, peer_id);
  int rv = p ? vls__ct_local(w, p) : -ENOENT;
  if (rv == 0) rv = p->ct_local.fd;
  vls__wunlock(w);
  return rv;
}

int vls_peer_attach_ct_segment(vls_worker_t *w, uint32_t peer_id, int fd) {
  vls__wlock(w);
  vls_peer_t *p = vls__peer(w, peer_id);
  int rv;
  if (!p || peer_id == 0)
    rv = -ENOENT;
  else if (p->ct_remote.base)
    rv = -EALREADY;
  else
    rv = vls_segment_attach(&p->ct_remote, fd);
  vls__wunlock(w);
  return rv;
}

/* ---------------------------------------------------------------------------------------------- */
/* Events                                                                                          */

static int vls__defer(vls_peer_t *p, const vls_evt_t *e) {
  if (p->n_deferred == p->cap_deferred) {
    uint32_t n = p->cap_deferred ? p->cap_deferred * 2 : 16;
    vls_evt_t *d = realloc(p->deferred, n * sizeof *d);
    if (!d) return -ENOMEM;
    p->deferred = d;
    p->cap_deferred = n;
  }
  p->deferred[p->n_deferred++] = *e;
  return 0;
}

/* Post an event to a peer's queue. A full queue is not an error for the session: the event waits
 * in order behind the others and vls_worker_poll() retries. */
static int vls__post(vls_worker_t *w, uint32_t pid, uint16_t type, uint64_t handle, uint64_t arg) {
  vls_peer_t *p = vls__peer(w, pid);
  if (!p || p->down) return -ECONNRESET;
  vls_evt_t e = {.type = type, .aux = w->index, .handle = handle, .arg = arg};
  w->evts_out++;
  if (p->n_deferred) {
    w->evts_deferred++;
    return vls__defer(p, &e);
  }
  int rv = vls_mq_send(&p->mq, &e, sizeof e);
  if (VLS_LIKELY(rv >= 0)) {
    w->wakeups += (uint64_t)rv; /* 1: the peer may have been asleep, its eventfd was written */
    return 0;
  }
  if (rv == -EAGAIN) {
    w->mq_full++;
    w->evts_deferred++;
    return vls__defer(p, &e);
  }
  /* A corrupt queue: the peer is broken. */
  VLS_DBG(1, "peer %u queue unusable (%s): declaring it down", p->wrk_index, vls_err_name(rv));
  vls_worker_peer_down(w, pid);
  return rv;
}

/* Post an event to the other end of session s. A connector learns the acceptor's handle from the
 * pair, where the acceptor stores it when it attaches; until then there is nobody to post to, and
 * the acceptor reads what happened off the pair when it attaches (vls__accept_catch_up). The
 * fence pairs with the one there: either we see the handle, or the acceptor sees what we did. */
static void vls__post_peer(vls_worker_t *w, vls_session_t *s, uint16_t type) {
  if (VLS_UNLIKELY(s->peer_handle == 0)) {
    if (!s->ct) return;
    atomic_thread_fence(memory_order_seq_cst);
    s->peer_handle = atomic_load(&s->ct->acceptor_handle);
    if (s->peer_handle == 0) return;
  }
  vls__post(w, s->peer, type, s->peer_handle, 0);
}

static void vls__flush_deferred(vls_worker_t *w) {
  for (uint32_t i = 0; i < w->n_peers; i++) {
    vls_peer_t *p = &w->peers[i];
    if (!p->in_use || !p->n_deferred) continue;
    uint32_t k = 0;
    while (k < p->n_deferred) {
      int rv = vls_mq_send(&p->mq, &p->deferred[k], sizeof(vls_evt_t));
      if (rv == -EAGAIN) break;
      k++;
    }
    memmove(p->deferred, p->deferred + k, (p->n_deferred - k) * sizeof(vls_evt_t));
    p->n_deferred -= k;
  }
}

int vls_worker_deferred(const vls_worker_t *w) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < w->n_peers; i++) n += w->peers[i].in_use ? w->peers[i].n_deferred : 0;
  return (int)n;
}

/* ---------------------------------------------------------------------------------------------- */
/* Session table                                                                                   */

int vls__session_alloc(vls_worker_t *w, vls_session_t **out) {
  if (w->free_head == VLS_NIL) {
    if (w->n_slots + VLS_CHUNK > VLS_IDX_MASK) return -EMFILE;
    vls_session_t **c = realloc(w->chunks, (w->n_chunks + 1) * sizeof *c);
    if (!c) return -ENOMEM;
    w->chunks = c;
    vls_session_t *chunk = calloc(VLS_CHUNK, sizeof *chunk);
    if (!chunk) return -ENOMEM;
    w->chunks[w->n_chunks++] = chunk;
    /* Slot 0 is never used, so that no handle is 0. */
    for (uint32_t i = VLS_CHUNK; i-- > 0;) {
      uint32_t idx = w->n_slots + i;
      chunk[i].idx = idx;
      if (idx == 0) continue;
      chunk[i].next_free = w->free_head;
      w->free_head = idx;
    }
    w->n_slots += VLS_CHUNK;
  }
  vls_session_t *s = vls__slot(w, w->free_head);
  w->free_head = s->next_free;
  uint32_t gen = s->gen_next ? s->gen_next : 1;
  uint32_t idx = s->idx;
  memset(s, 0, sizeof *s);
  s->idx = idx;
  s->gen = gen;
  s->state = VLS_SS_CREATED;
  s->epitems = VLS_NIL;
  s->ep_items = VLS_NIL;
  s->rl_head = s->rl_tail = VLS_NIL;
  s->listener = VLS_NIL;
  s->peer = VLS_NIL;
  w->n_live++;
  *out = s;
  return 0;
}

void vls__session_free(vls_worker_t *w, vls_session_t *s) {
  if (!s->gen) return;
  if (s->flags & VLS_SF_EPOLL) vls__epoll_destroy_set(w, s);
  vls__epoll_forget_session(w, s);
  free(s->acq);
  uint32_t next_gen = s->gen + 1 > VLS_GEN_MAX ? 1 : s->gen + 1;
  uint32_t idx = s->idx;
  VLS_DBG(2, "session %u freed in state %s", idx, vls_session_state_str(s->state));
  memset(s, 0, sizeof *s);
  s->idx = idx;
  s->gen_next = next_gen;
  s->next_free = w->free_head;
  w->free_head = idx;
  w->n_live--;
}

/* Session lookup for an application call: live, and not yet given up by the application. */
static vls_session_t *vls__app_session(vls_worker_t *w, uint64_t h) {
  vls_session_t *s = vls__session_get(w, h);
  if (!s || (s->flags & VLS_SF_APP_GONE)) return NULL;
  return s;
}

/* ---------------------------------------------------------------------------------------------- */
/* Cut-through pairs                                                                               */

static vls_segment_t *vls__ct_segment(vls_worker_t *w, vls_session_t *s) {
  vls_peer_t *p = &w->peers[s->peer];
  return (s->side == 0 || s->peer == 0) ? &p->ct_local : &p->ct_remote;
}

static void vls__ct_free_pair(vls_segment_t *seg, uint64_t ct_off) {
  vls_ct_shared_t *ct = vls_segment_ptr(seg, ct_off, sizeof *ct);
  if (!ct || ct->magic != VLS_CT_MAGIC) return;
  uint64_t f0 = ct->fifo_off[0], f1 = ct->fifo_off[1];
  ct->magic = 0;
  vls_fifo_destroy(seg, f0);
  vls_fifo_destroy(seg, f1);
  vls_segment_free(seg, ct_off);
}

static int vls__orphan_add(vls_worker_t *w, uint32_t pid, uint64_t ct_off) {
  if (w->n_orphans == w->cap_orphans) {
    uint32_t n = w->cap_orphans ? w->cap_orphans * 2 : 16;
    struct vls_orphan *o = realloc(w->orphans, n * sizeof *o);
    if (!o) return -ENOMEM;
    w->orphans = o;
    w->cap_orphans = n;
  }
  w->orphans[w->n_orphans++] = (struct vls_orphan){pid, ct_off};
  return 0;
}

static int vls__orphan_take(vls_worker_t *w, uint32_t pid, uint64_t ct_off) {
  for (uint32_t i = 0; i < w->n_orphans; i++)
    if (w->orphans[i].peer == pid && w->orphans[i].ct_off == ct_off) {
      w->orphans[i] = w->orphans[--w->n_orphans];
      return 1;
    }
  return 0;
}

/* Our session lets go of its end of the ct pair. The last side out frees it; the owner (side 0)
 * does the freeing, told by a CT_FREE event when the connector is the last. */
static void vls__ct_release(vls_worker_t *w, vls_session_t *s) {
  if (!s->ct) return;
  uint32_t bit = 1u << s->side;
  uint32_t old = atomic_fetch_or(&s->ct->gone_mask, bit);
  vls_peer_t *p = &w->peers[s->peer];
  int both = (old | bit) == 3u;
  if (s->side == 0) {
    if (both || p->down)
      vls__ct_free_pair(&p->ct_local, s->ct_off);
    else
      vls__orphan_add(w, s->peer, s->ct_off);
  } else if (both) {
    if (s->peer == 0)
      vls__ct_free_pair(&p->ct_local, s->ct_off);
    else
      vls__post(w, s->peer, VLS_EVT_CT_FREE, 0, s->ct_off);
  }
  s->ct = NULL;
}

/* Drop a session for good: release the pair, forget it. */
static void vls__session_finish(vls_worker_t *w, vls_session_t *s) {
  s->state = VLS_SS_CLOSED;
  vls__ct_release(w, s);
  uint32_t pid = s->peer;
  vls__session_free(w, s);
  if (pid != VLS_NIL && pid < w->n_peers && w->peers[pid].in_use) {
    vls_peer_t *p = &w->peers[pid];
    if (p->n_sessions) p->n_sessions--;
    /* A dead peer's segments go as soon as its last session does. */
    if (pid != 0 && p->down && p->n_sessions == 0) vls__peer_release(w, pid);
  }
}

static int vls__attach_pair(vls_worker_t *w, vls_session_t *s) {
  vls_segment_t *seg = vls__ct_segment(w, s);
  vls_ct_shared_t *ct = vls_segment_ptr(seg, s->ct_off, sizeof *ct);
  if (!ct || s->ct_off % VLS_CACHE_LINE) return -EPROTO;
  if (ct->magic != VLS_CT_MAGIC) return -EPROTO;
  atomic_thread_fence(memory_order_acquire);
  uint64_t f0 = *(volatile uint64_t *)&ct->fifo_off[0];
  uint64_t f1 = *(volatile uint64_t *)&ct->fifo_off[1];
  vls_fifo_t a, b;
  int rv;
  if ((rv = vls_fifo_attach(&a, seg, f0)) < 0 || (rv = vls_fifo_attach(&b, seg, f1)) < 0)
    return rv;
  s->ct = ct;
  s->tx = s->side == 0 ? a : b;
  s->rx = s->side == 0 ? b : a;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* VLS session lock: only for sessions reachable from another worker.                              */

static inline void vls__slock(vls_session_t *s) {
  if (VLS_UNLIKELY(s->flags & VLS_SF_SHARED) && s->ct) {
    vls_shm_mutex_lock(&s->ct->side_lock[s->side]);
    /* Another process may have moved our indices since we last held the lock. A corrupt pair
     * leaves the cached ones, and the next fifo call reports -EIO. */
    vls_fifo_resync(&s->tx);
    vls_fifo_resync(&s->rx);
  }
}
static inline void vls__sunlock(vls_session_t *s, vls_ct_shared_t *ct) {
  if (VLS_UNLIKELY(s->flags & VLS_SF_SHARED) && ct) vls_shm_mutex_unlock(&ct->side_lock[s->side]);
}

int vls_session_share(vls_worker_t *w, uint64_t h) {
  vls__wlock(w);
  vls_session_t *s = vls__app_session(w, h);
  int rv = -EBADF;
  if (s) {
    s->flags |= VLS_SF_SHARED;
    rv = 0;
  }
  vls__wunlock(w);
  return rv;
}

/* ---------------------------------------------------------------------------------------------- */
/* Listen, connect, accept                                                                         */

int vls_listen(vls_worker_t *w, uint32_t backlog, uint64_t *lh) {
  if (backlog == 0) backlog = 1;
  if (backlog > 65535) backlog = 65535;
  vls__wlock(w);
  vls_session_t *s;
  int rv = vls__session_alloc(w, &s);
  if (rv == 0) {
    s->acq = calloc(backlog, sizeof(uint32_t));
    if (!s->acq) {
      vls__session_free(w, s);
      rv = -ENOMEM;
    } else {
      s->backlog = backlog;
      s->flags |= VLS_SF_LISTENER;
      s->state = VLS_SS_LISTENING;
      *lh = vls__session_handle(w, s);
    }
  }
  vls__wunlock(w);
  return rv;
}

int vls_connect_start(vls_worker_t *w, uint64_t *ch) {
  vls__wlock(w);
  vls_session_t *s;
  int rv = vls__session_alloc(w, &s);
  if (rv == 0) {
    s->state = VLS_SS_CONNECTING;
    *ch = vls__session_handle(w, s);
  }
  vls__wunlock(w);
  return rv;
}

static void vls__on_peer_gone(vls_worker_t *w, vls_session_t *s, int err);
static void vls__peer_rx(vls_worker_t *w, vls_session_t *s);
static void vls__peer_fin(vls_worker_t *w, vls_session_t *s);

/* A new fifo pair in seg: the shared record, then the two fifos. */
static int64_t vls__ct_alloc_pair(vls_worker_t *w, vls_segment_t *seg) {
  int64_t ct_off = vls_segment_alloc(seg, sizeof(vls_ct_shared_t));
  if (ct_off < 0) return ct_off;
  int64_t f0 = vls_fifo_create(seg, w->fifo_size);
  int64_t f1 = f0 < 0 ? f0 : vls_fifo_create(seg, w->fifo_size);
  if (f1 < 0) {
    if (f0 >= 0) vls_fifo_destroy(seg, (uint64_t)f0);
    vls_segment_free(seg, (uint64_t)ct_off);
    return f1;
  }
  vls_ct_shared_t *ct = vls_segment_ptr(seg, (uint64_t)ct_off, sizeof *ct);
  memset(ct, 0, sizeof *ct);
  ct->fifo_size = w->fifo_size;
  ct->fifo_off[0] = (uint64_t)f0;
  ct->fifo_off[1] = (uint64_t)f1;
  vls_shm_mutex_init(&ct->side_lock[0]);
  vls_shm_mutex_init(&ct->side_lock[1]);
  atomic_thread_fence(memory_order_release);
  ct->magic = VLS_CT_MAGIC;
  return ct_off;
}

int vls_connect_ct(vls_worker_t *w, uint64_t ch, uint32_t peer_id, uint64_t *ct_off_out) {
  vls__wlock(w);
  int rv;
  vls_session_t *s = vls__app_session(w, ch);
  vls_peer_t *p = vls__peer(w, peer_id);
  if (!s) {
    rv = -EBADF;
    goto out;
  }
  if (s->state != VLS_SS_CONNECTING) {
    rv = -EISCONN;
    goto out;
  }
  if (!p || p->down) {
    rv = -ENOENT;
    goto out;
  }
  if ((rv = vls__ct_local(w, p)) < 0) goto out;
  int64_t ct_off = vls__ct_alloc_pair(w, &p->ct_local);
  if (ct_off < 0) {
    rv = (int)ct_off;
    goto out;
  }
  s->side = 0;
  s->peer = peer_id;
  s->peer_handle = 0; /* learnt from the pair once the acceptor attaches */
  s->ct_off = (uint64_t)ct_off;
  if ((rv = vls__attach_pair(w, s)) < 0) {
    vls__ct_free_pair(&p->ct_local, (uint64_t)ct_off);
    s->peer = VLS_NIL;
    goto out;
  }
  p->n_sessions++;
  s->state = VLS_SS_READY;
  *ct_off_out = (uint64_t)ct_off;
  vls__epoll_notify(w, s, VLS_EPOLLOUT);
out:
  vls__wunlock(w);
  return rv;
}

/* What the connector did before it knew our handle, read off the pair (after the handle went in,
 * so that whatever it does from now on it posts), handled as its RESET, RX and FIN events are. */
static void vls__accept_catch_up(vls_worker_t *w, vls_session_t *s) {
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load(&s->ct->flags) & VLS_CT_RESET(0)) {
    vls__on_peer_gone(w, s, -ECONNRESET);
    return;
  }
  vls__peer_rx(w, s);
  if (vls_fifo_eof_sent(&s->rx)) vls__peer_fin(w, s);
}

int vls_accept_ct(vls_worker_t *w, uint64_t lh, uint32_t peer_id, uint64_t client_handle,
                  uint64_t ct_off, uint64_t *server_handle) {
  vls__wlock(w);
  int rv;
  vls_session_t *l = vls__app_session(w, lh);
  vls_peer_t *p = vls__peer(w, peer_id);
  if (!l) {
    rv = -EBADF;
    goto out;
  }
  if (!(l->flags & VLS_SF_LISTENER)) {
    rv = -EINVAL;
    goto out;
  }
  if (!p || p->down) {
    rv = -ENOENT;
    goto out;
  }
  if (l->acq_n >= l->backlog) {
    rv = -EAGAIN;
    goto out;
  }
  vls_session_t *s;
  if ((rv = vls__session_alloc(w, &s)) < 0) goto out;
  s->side = 1;
  s->peer = peer_id;
  s->peer_handle = client_handle;
  s->ct_off = ct_off;
  /* The pair must be a fresh one: a CONNECT naming a pair someone accepted already is refused. */
  uint64_t me = vls__session_handle(w, s), none = 0;
  if ((rv = vls__attach_pair(w, s)) < 0 ||
      (rv = atomic_compare_exchange_strong(&s->ct->acceptor_handle, &none, me) ? 0 : -EPROTO) < 0) {
    s->ct = NULL;
    vls__session_free(w, s);
    goto out;
  }
  p->n_sessions++;
  s->state = VLS_SS_ACCEPTING;
  s->listener = l->idx;
  l->acq[(l->acq_head + l->acq_n++) % l->backlog] = s->idx;
  *server_handle = me;
  vls__accept_catch_up(w, s);
  vls__epoll_notify(w, l, VLS_EPOLLIN);
  rv = 0;
out:
  vls__wunlock(w);
  return rv;
}

int vls_connect_refused(vls_worker_t *w, uint64_t ch, uint32_t peer_id, uint64_t ct_off, int err) {
  if (err >= 0) return -EINVAL;
  vls__wlock(w);
  int rv = 0;
  vls_session_t *s = vls__session_get(w, ch);
  vls_peer_t *p = vls__peer(w, peer_id);
  if (p && vls__orphan_take(w, peer_id, ct_off)) {
    /* We let go of it already; the acceptor never held it. */
    vls__ct_free_pair(&p->ct_local, ct_off);
  } else if (s && s->ct && s->side == 0 && s->peer == peer_id && s->ct_off == ct_off &&
             !(s->flags & VLS_SF_PEER_RESET)) {
    /* It will not attach: its side of the pair counts as gone. */
    atomic_fetch_or(&s->ct->gone_mask, 2u);
    vls__on_peer_gone(w, s, err);
  } else {
    rv = -ENOENT;
  }
  vls__wunlock(w);
  return rv;
}

int vls_connect_fail(vls_worker_t *w, uint64_t ch, int err) {
  if (err >= 0) return -EINVAL;
  vls__wlock(w);
  vls_session_t *s = vls__app_session(w, ch);
  int rv = -EBADF;
  if (s && s->state == VLS_SS_CONNECTING) {
    s->err = err;
    s->state = VLS_SS_TRANSPORT_CLOSED;
    vls__epoll_notify(w, s, VLS_EPOLLERR | VLS_EPOLLHUP);
    rv = 0;
  } else if (s) {
    rv = -EISCONN;
  }
  vls__wunlock(w);
  return rv;
}

int vls_accept(vls_worker_t *w, uint64_t lh, uint64_t *h) {
  vls__wlock(w);
  int rv;
  vls_session_t *l = vls__app_session(w, lh);
  if (!l) {
    rv = -EBADF;
  } else if (!(l->flags & VLS_SF_LISTENER)) {
    rv = -EINVAL;
  } else if (l->acq_n == 0) {
    rv = -EAGAIN;
  } else {
    uint32_t idx = l->acq[l->acq_head];
    l->acq_head = (l->acq_head + 1) % l->backlog;
    l->acq_n--;
    vls_session_t *s = vls__slot(w, idx);
    s->listener = VLS_NIL;
    if (s->state == VLS_SS_ACCEPTING) {
      /* Taken: from now on a dead acceptor's end of it closes rather than resets. */
      if (s->ct) atomic_fetch_or(&s->ct->flags, VLS_CT_ACCEPTED);
      if (!(s->flags & VLS_SF_PEER_SHUT_WR))
        s->state = VLS_SS_READY;
      else /* a connector that closed, or died with a FIN (vls__on_peer_died) */
        s->state = w->peers[s->peer].down ? VLS_SS_TRANSPORT_CLOSED : VLS_SS_TRANSPORT_CLOSING;
    }
    *h = vls__session_handle(w, s);
    rv = 0;
  }
  vls__wunlock(w);
  return rv;
}

/* ---------------------------------------------------------------------------------------------- */
/* Data                                                                                            */

static int vls__can_write(vls_session_t *s) {
  if (s->err) return s->err;
  if (s->flags & VLS_SF_SHUT_WR) return -EPIPE;
  if (s->flags & VLS_SF_PEER_RESET) return -EPIPE;
  switch (s->state) {
  case VLS_SS_READY:
  case VLS_SS_TRANSPORT_CLOSING:
  case VLS_SS_ACCEPTING:
    return 0;
  case VLS_SS_CONNECTING:
  case VLS_SS_CREATED:
    return -ENOTCONN;
  case VLS_SS_LISTENING:
    return -ENOTCONN;
  default:
    return -EPIPE;
  }
}

int vls_writev(vls_worker_t *w, uint64_t h, const vls_iov_t *iov, uint32_t n, int all_or_nothing) {
  vls__wlock(w);
  vls_session_t *s = vls__app_session(w, h);
  int rv;
  if (!s) {
    rv = -EBADF;
    goto out;
  }
  if (s->flags & VLS_SF_EPOLL) {
    rv = -EINVAL;
    goto out;
  }
  if ((rv = vls__can_write(s)) < 0) {
    if (rv == s->err) s->err = 0; /* reported once, like SO_ERROR */
    goto out;
  }
  vls_ct_shared_t *ct = s->ct;
  uint64_t total = 0;
  for (uint32_t i = 0; i < n; i++) total += iov[i].len;
  vls__slock(s);
  rv = vls_fifo_enqueue_segs(&s->tx, iov, n, all_or_nothing);
  if (rv > 0) {
    s->bytes_out += (uint64_t)rv;
    if (vls_fifo_set_event(&s->tx)) vls__post_peer(w, s, VLS_EVT_RX);
  }
  if (rv == -EAGAIN || (rv >= 0 && (uint64_t)rv < total)) {
    /* Full, or only part went in: ask for a notification when a useful amount of room frees (a
     * quarter of the fifo, or the whole unit for all-or-nothing writes), which becomes EPOLLOUT.
     * If room came while we armed it, say so at once. */
    uint32_t thresh = all_or_nothing ? (uint32_t)VLS_MIN(total, s->tx.size) : s->tx.size / 4;
    int64_t room = vls_fifo_want_deq_ntf(&s->tx, thresh);
    if (room >= (int64_t)thresh) vls__epoll_notify(w, s, VLS_EPOLLOUT);
  } else if (rv == -EIO) {
    s->err = -EIO;
  }
  vls__sunlock(s, ct);
out:
  vls__wunlock(w);
  return rv;
}

int vls_write(vls_worker_t *w, uint64_t h, const void *buf, uint32_t len) {
  vls_iov_t iov = {buf, len};
  return vls_writev(w, h, &iov, 1, 0);
}

#ifdef VLS_TEST_HOOKS
void (*vls_test_after_dequeue)(vls_worker_t *w, uint64_t h);
#endif

/* Shared read path; peek leaves the bytes in place. */
static int vls__read(vls_worker_t *w, uint64_t h, void *buf, uint32_t len, int peek) {
  vls__wlock(w);
  vls_session_t *s = vls__app_session(w, h);
  int rv;
  if (!s) {
    rv = -EBADF;
    goto out;
  }
  if (s->flags & (VLS_SF_LISTENER | VLS_SF_EPOLL)) {
    rv = -EINVAL;
    goto out;
  }
  if (s->err) {
    rv = s->err;
    if (!peek) s->err = 0;
    goto out;
  }
  if (!s->ct) {
    rv = s->state == VLS_SS_TRANSPORT_CLOSED ? 0 : -ENOTCONN;
    goto out;
  }
  if (s->flags & VLS_SF_SHUT_RD) {
    rv = 0;
    goto out;
  }
  vls_ct_shared_t *ct = s->ct;
  vls__slock(s);
  for (;;) {
    rv = peek ? vls_fifo_peek(&s->rx, 0, buf, len) : vls_fifo_dequeue(&s->rx, buf, len);
    if (rv != -EAGAIN) break;
    /* Empty: clear the event flag, then look again, so bytes racing in are not missed. */
    int64_t again = vls_fifo_unset_event(&s->rx);
    if (again > 0) continue;
    if (again < 0) {
      rv = (int)again;
      break;
    }
    /* End of stream: the peer's eof is behind its last byte, and a peer that died without one
     * (vls__on_peer_died) sent all it ever will. */
    if (vls_fifo_is_eof(&s->rx) || (s->flags & (VLS_SF_PEER_RESET | VLS_SF_PEER_SHUT_WR))) rv = 0;
    break;
  }
  if (rv > 0 && !peek) {
    s->bytes_in += (uint64_t)rv;
#ifdef VLS_TEST_HOOKS
    if (vls_test_after_dequeue) vls_test_after_dequeue(w, h);
#endif
    /* Drained: re-arm the writer's event now, so its next byte signals us and the reader need
     * not come back for an -EAGAIN first. Bytes that raced in while we re-armed were sent while
     * the flag was still set (no signal): report them ourselves. Bytes that came in after the
     * dequeue emptied the fifo but before we looked were sent while the flag was still set too:
     * after a short read, report those as well. So a read that returns less than asked leaves
     * nothing behind without a readable event to come. */
    if (vls_fifo_max_dequeue(&s->rx) == 0) {
      if (vls_fifo_unset_event(&s->rx) > 0) vls__epoll_notify(w, s, VLS_EPOLLIN);
    } else if ((uint32_t)rv < len) {
      vls__epoll_notify(w, s, VLS_EPOLLIN);
    }
    if (vls_fifo_needs_deq_ntf(&s->rx)) vls__post_peer(w, s, VLS_EVT_TX);
  } else if (rv == -EIO) {
    s->err = 0;
    s->flags |= VLS_SF_PEER_RESET; /* a corrupt fifo ends this session only */
  }
  vls__sunlock(s, ct);
out:
  vls__wunlock(w);
  return rv;
}

int vls_read(vls_worker_t *w, uint64_t h, void *buf, uint32_t len) {
  return vls__read(w, h, buf, len, 0);
}

int vls_peek(vls_worker_t *w, uint64_t h, void *buf, uint32_t len) {
  return vls__read(w, h, buf, len, 1);
}

/* Send FIN: eof behind the data already queued, then the event. */
static void vls__send_fin(vls_worker_t *w, vls_session_t *s) {
  if ((s->flags & VLS_SF_SHUT_WR) || !s->ct) return;
  s->flags |= VLS_SF_SHUT_WR;
  vls_fifo_set_eof(&s->tx);
  vls__post_peer(w, s, VLS_EVT_FIN);
}

int vls_shutdown(vls_worker_t *w, uint64_t h, int how) {
  if (how < VLS_SHUT_RD || how > VLS_SHUT_RDWR) return -EINVAL;
  vls__wlock(w);
  vls_session_t *s = vls__app_session(w, h);
  int rv = 0;
  if (!s) {
    rv = -EBADF;
  } else if (s->flags & (VLS_SF_LISTENER | VLS_SF_EPOLL)) {
    rv = -ENOTCONN;
  } else if (!s->ct) {
    rv = -ENOTCONN;
  } else {
    if (how != VLS_SHUT_WR) s->flags |= VLS_SF_SHUT_RD;
    if (how != VLS_SHUT_RD) vls__send_fin(w, s);
    vls__epoll_notify(w, s, VLS_EPOLLIN | VLS_EPOLLOUT | VLS_EPOLLHUP);
  }
  vls__wunlock(w);
  return rv;
}

static void vls__reset_locked(vls_worker_t *w, vls_session_t *s) {
  if (s->ct && !(s->flags & VLS_SF_PEER_RESET)) {
    atomic_fetch_or(&s->ct->flags, VLS_CT_RESET(s->side));
    vls__post_peer(w, s, VLS_EVT_RESET);
  }
  if (s->ct) vls_fifo_drop_all(&s->rx);
  vls__session_finish(w, s);
}

static void vls__close_listener(vls_worker_t *w, vls_session_t *l) {
  /* Connections nobody accepted are reset, as the kernel does when a listener closes. */
  while (l->acq_n) {
    vls_session_t *s = vls__slot(w, l->acq[l->acq_head]);
    l->acq_head = (l->acq_head + 1) % l->backlog;
    l->acq_n--;
    vls__reset_locked(w, s);
  }
  l->state = VLS_SS_CLOSED;
  vls__session_free(w, l);
}

int vls_close(vls_worker_t *w, uint64_t h) {
  vls__wlock(w);
  vls_session_t *s = vls__app_session(w, h);
  int rv = 0;
  if (!s) {
    rv = -EBADF;
    goto out;
  }
  if (s->flags & VLS_SF_LISTENER) {
    vls__close_listener(w, s);
    goto out;
  }
  if (s->flags & VLS_SF_EPOLL || !s->ct) {
    s->state = VLS_SS_CLOSED;
    vls__session_free(w, s);
    goto out;
  }
  if (s->flags & VLS_SF_PEER_RESET || s->state == VLS_SS_TRANSPORT_CLOSED) {
    vls__session_finish(w, s);
    goto out;
  }
  /* Unread data at close: TCP answers with RST, and so do we. */
  if (!(s->flags & VLS_SF_SHUT_RD) && vls_fifo_max_dequeue(&s->rx) > 0) {
    vls__reset_locked(w, s);
    goto out;
  }
  vls__send_fin(w, s);
  s->flags |= VLS_SF_APP_GONE;
  if (s->flags & VLS_SF_PEER_SHUT_WR) {
    /* The peer closed first: both directions are done. */
    vls__session_finish(w, s);
    goto out;
  }
  if (vls_fifo_max_dequeue(&s->tx) > 0) {
    /* FIN waits behind queued bytes: ask to hear when the peer has read them all. */
    s->state = VLS_SS_CLOSING;
    if (vls_fifo_want_deq_ntf(&s->tx, s->tx.size) == s->tx.size) s->state = VLS_SS_APP_CLOSED;
  } else {
    s->state = VLS_SS_APP_CLOSED;
  }
out:
  vls__wunlock(w);
  return rv;
}

int vls_reset(vls_worker_t *w, uint64_t h) {
  vls__wlock(w);
  vls_session_t *s = vls__app_session(w, h);
  int rv = 0;
  if (!s)
    rv = -EBADF;
  else if (s->flags & VLS_SF_LISTENER)
    vls__close_listener(w, s);
  else
    vls__reset_locked(w, s);
  vls__wunlock(w);
  return rv;
}

int vls_session_info(vls_worker_t *w, uint64_t h, vls_session_info_t *info) {
  vls__wlock(w);
  vls_session_t *s = vls__session_get(w, h);
  int rv = 0;
  if (!s) {
    rv = -EBADF;
  } else {
    memset(info, 0, sizeof *info);
    info->state = s->state;
    info->flags = s->flags;
    info->err = s->err;
    info->peer = s->peer;
    info->side = s->side;
    if (s->ct) {
      int64_t r = vls_fifo_max_dequeue(&s->rx);
      int64_t t = (int64_t)s->tx.size - vls_fifo_max_enqueue(&s->tx);
      info->rx_used = r > 0 ? (uint32_t)r : 0;
      info->tx_used = t > 0 && t <= (int64_t)s->tx.size ? (uint32_t)t : 0;
      info->fifo_size = s->tx.size;
    }
    info->bytes_in = s->bytes_in;
    info->bytes_out = s->bytes_out;
    info->peer_handle = s->peer_handle;
    info->accept_queued = s->acq_n;
    info->backlog = s->backlog;
    info->opaque = s->opaque;
  }
  vls__wunlock(w);
  return rv;
}

int vls_session_set_opaque(vls_worker_t *w, uint64_t h, uint64_t opaque) {
  vls__wlock(w);
  vls_session_t *s = vls__session_get(w, h);
  if (s) s->opaque = opaque;
  vls__wunlock(w);
  return s ? 0 : -EBADF;
}

uint64_t vls_session_next(vls_worker_t *w, uint64_t after) {
  vls__wlock(w);
  uint32_t i = after ? (uint32_t)(after & VLS_IDX_MASK) + 1 : 1;
  uint64_t out = 0;
  for (; i < w->n_slots; i++) {
    vls_session_t *s = vls__slot(w, i);
    if (s->gen) {
      out = vls__session_handle(w, s);
      break;
    }
  }
  vls__wunlock(w);
  return out;
}

/* ---------------------------------------------------------------------------------------------- */
/* Applying events                                                                                 */

/* The peer reset the session (or never will take it): what it sent is dropped, the application
 * gets err once, then end of stream; writes fail. */
static void vls__on_peer_gone(vls_worker_t *w, vls_session_t *s, int err) {
  if (s->flags & VLS_SF_APP_GONE) {
    vls__session_finish(w, s);
    return;
  }
  s->flags |= VLS_SF_PEER_RESET;
  if (!s->err) s->err = err;
  if (s->ct) vls_fifo_drop_all(&s->rx);
  if (s->state != VLS_SS_ACCEPTING) s->state = VLS_SS_TRANSPORT_CLOSED;
  vls__epoll_notify(w, s, VLS_EPOLLIN | VLS_EPOLLOUT | VLS_EPOLLERR | VLS_EPOLLHUP | VLS_EPOLLRDHUP);
}

/* The peer's worker is gone (its control connection hung up: its process exited or was killed,
 * or its thread ended) with s still open on our side. The kernel closes a dead process's sockets
 * as vls_close does, and here we do it on the peer's behalf with what the pair tells: if the peer
 * closed its end before it went (an exiting process does), or, killed, had read every byte we
 * sent and had accepted the connection, it is a FIN: what it sent stays readable in the fifo we
 * map, then end of stream, and writing fails as writing to a closed TCP peer does. Otherwise -
 * it reset the session, left bytes we sent unread, or never accepted the connection (a dead
 * listener's queue is reset) - it is a reset. */
static void vls__on_peer_died(vls_worker_t *w, vls_session_t *s) {
  uint32_t f = atomic_load(&s->ct->flags);
  int fin = !(s->flags & VLS_SF_PEER_RESET) && !(f & VLS_CT_RESET(1 - s->side)) &&
            (vls_fifo_eof_sent(&s->rx) ||
             ((s->side == 1 || (f & VLS_CT_ACCEPTED)) && vls_fifo_max_dequeue(&s->tx) == 0));
  if (!fin) {
    vls__on_peer_gone(w, s, -ECONNRESET);
    return;
  }
  if (s->flags & VLS_SF_APP_GONE) {
    vls__session_finish(w, s);
    return;
  }
  s->flags |= VLS_SF_PEER_SHUT_WR;
  /* Not accepted yet: vls_accept makes it TRANSPORT_CLOSED. */
  if (s->state != VLS_SS_ACCEPTING) s->state = VLS_SS_TRANSPORT_CLOSED;
  vls__epoll_notify(w, s, VLS_EPOLLIN | VLS_EPOLLOUT | VLS_EPOLLHUP | VLS_EPOLLRDHUP);
}

/* The peer's bytes arrived (its RX event, or found on the pair when we attach it). The writer
 * sets has_event after its bytes are visible, so a reader that was awake may have read them (and
 * re-armed) before the flag went up: an event then finds the fifo empty with the flag set, and
 * the writer's next bytes would signal nobody. Re-arm here (with the re-check) and report only
 * bytes that are really there. */
static void vls__peer_rx(vls_worker_t *w, vls_session_t *s) {
  int report = 1;
  vls_ct_shared_t *ct = s->ct;
  vls__slock(s);
  if (vls_fifo_max_dequeue(&s->rx) == 0 && vls_fifo_unset_event(&s->rx) == 0) report = 0;
  vls__sunlock(s, ct);
  if (report) vls__epoll_notify(w, s, VLS_EPOLLIN);
}

/* The peer will send no more (its FIN event, or its eof found on the pair when we attach it). A
 * session the application closed already is done with. */
static void vls__peer_fin(vls_worker_t *w, vls_session_t *s) {
  s->flags |= VLS_SF_PEER_SHUT_WR;
  if (s->flags & VLS_SF_APP_GONE) {
    vls__session_finish(w, s);
    return;
  }
  if (s->state == VLS_SS_READY) s->state = VLS_SS_TRANSPORT_CLOSING;
  vls__epoll_notify(w, s, VLS_EPOLLIN | VLS_EPOLLRDHUP |
                              ((s->flags & VLS_SF_SHUT_WR) ? VLS_EPOLLHUP : 0));
}

static void vls__apply(vls_worker_t *w, const vls_evt_t *e) {
  w->evts_in++;
  if (e->type == VLS_EVT_CT_FREE) {
    /* Only a pair we orphaned ourselves, held by a peer entry of the sending worker, is freed: a
     * forged or repeated CT_FREE changes nothing. */
    for (uint32_t i = 1; i < w->n_peers; i++)
      if (w->peers[i].in_use && w->peers[i].wrk_index == e->aux && vls__orphan_take(w, i, e->arg)) {
        vls__ct_free_pair(&w->peers[i].ct_local, e->arg);
        return;
      }
    w->evts_stale++;
    return;
  }
  vls_session_t *s = vls__session_get(w, e->handle);
  /* The sender names itself in aux: an event from any worker but the session's peer is stale. */
  if (!s || !s->ct || s->peer >= w->n_peers || w->peers[s->peer].wrk_index != e->aux) {
    w->evts_stale++;
    VLS_DBG(3, "stale %s for handle %llx", vls_evt_str(e->type), (unsigned long long)e->handle);
    return;
  }
  switch (e->type) {
  case VLS_EVT_RX:
    vls__peer_rx(w, s);
    break;
  case VLS_EVT_TX:
    if (s->state == VLS_SS_CLOSING && vls_fifo_max_enqueue(&s->tx) == s->tx.size)
      s->state = VLS_SS_APP_CLOSED;
    vls__epoll_notify(w, s, VLS_EPOLLOUT);
    break;
  case VLS_EVT_FIN:
    vls__peer_fin(w, s);
    break;
  case VLS_EVT_RESET:
    vls__on_peer_gone(w, s, -ECONNRESET);
    break;
  default:
    w->evts_stale++;
    break;
  }
}

int vls_worker_peer_down(vls_worker_t *w, uint32_t peer_id) {
  vls__wlock(w);
  vls_peer_t *p = vls__peer(w, peer_id);
  int rv = 0;
  if (!p || peer_id == 0) {
    rv = -ENOENT;
    goto out;
  }
  p->down = 1;
  p->n_deferred = 0;
  for (uint32_t i = 1; i < w->n_slots; i++) {
    vls_session_t *s = vls__slot(w, i);
    if (s->gen && s->ct && s->peer == peer_id) vls__on_peer_died(w, s);
  }
  /* Orphaned pairs of this peer will never see their CT_FREE: free them now. */
  for (uint32_t i = 0; i < w->n_orphans;) {
    if (w->orphans[i].peer == peer_id) {
      vls__ct_free_pair(&p->ct_local, w->orphans[i].ct_off);
      w->orphans[i] = w->orphans[--w->n_orphans];
    } else {
      i++;
    }
  }
  rv = (int)p->n_sessions;
  if (p->n_sessions == 0) vls__peer_release(w, peer_id);
out:
  vls__wunlock(w);
  return rv;
}

/* A down peer whose last session went away: unmap its segments. */
static void vls__reap_peers(vls_worker_t *w) {
  for (uint32_t i = 1; i < w->n_peers; i++) {
    vls_peer_t *p = &w->peers[i];
    if (p->in_use && p->down && p->n_sessions == 0) vls__peer_release(w, i);
  }
}

void vls_worker_set_busy_poll(vls_worker_t *w, int on) {
  vls__wlock(w);
  w->busy_poll = on != 0;
  vls__wunlock(w);
}

int vls_worker_has_work(vls_worker_t *w) {
  if (w->kicked || vls_worker_deferred(w)) return 1;
  int64_t d = vls_mq_depth(&w->mq);
  return d != 0; /* -EIO (corrupt) too: vls_worker_poll reports it */
}

void vls_worker_clear_eventfd(vls_worker_t *w) { vls_mq_eventfd_clear(&w->mq); }

int vls_worker_poll(vls_worker_t *w) {
  vls__wlock(w);
  int total = 0;
  w->in_poll = 1;
  w->kicked = 0;
  if (!w->busy_poll) vls_mq_eventfd_clear(&w->mq);
  vls_mq_awake(&w->mq);
  vls__flush_deferred(w);
  for (;;) {
    int n = vls_mq_recv_batch(&w->mq, w->batch, w->batch_max);
    if (n < 0) {
      total = n;
      break;
    }
    if (n == 0) {
      if (w->busy_poll || vls_mq_ready_to_sleep(&w->mq)) break;
      continue;
    }
    for (int i = 0; i < n; i++) vls__apply(w, &w->batch[i]);
    total += n;
  }
  vls__reap_peers(w);
  w->in_poll = 0;
  vls__wunlock(w);
  return total;
}
