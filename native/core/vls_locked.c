#include "vls_locked.h"

#include <string.h>

int64_t vls_listener_shared_create(vls_segment_t *seg, uint32_t owner_wrk) {
  if (owner_wrk >= VLS_MAX_WORKERS) return -EINVAL;
  int64_t off = vls_segment_alloc(seg, sizeof(vls_listener_shared_t));
  if (off < 0) return off;
  vls_listener_shared_t *l = vls_segment_ptr(seg, (uint64_t)off, sizeof *l);
  memset(l, 0, sizeof *l);
  int rv = vls_shm_mutex_init(&l->lock);
  if (rv < 0) {
    vls_segment_free(seg, (uint64_t)off);
    return rv;
  }
  l->owner_wrk = owner_wrk;
  l->subscribed[owner_wrk / 64] |= 1ull << (owner_wrk % 64);
  l->active[owner_wrk / 64] |= 1ull << (owner_wrk % 64);
  l->n_subscribed = 1;
  atomic_thread_fence(memory_order_release);
  l->magic = VLS_LISTENER_MAGIC;
  return off;
}

int vls_listener_shared_destroy(vls_segment_t *seg, uint64_t off) {
  vls_listener_shared_t *l = vls_listener_shared_get(seg, off);
  if (!l) return -EINVAL;
  l->magic = 0;
  return vls_segment_free(seg, off);
}

vls_listener_shared_t *vls_listener_shared_get(const vls_segment_t *seg, uint64_t off) {
  vls_listener_shared_t *l = vls_segment_ptr(seg, off, sizeof *l);
  if (!l || l->magic != VLS_LISTENER_MAGIC) return NULL;
  return l;
}

static int vls__bit(const uint64_t *bm, uint32_t i) { return (bm[i / 64] >> (i % 64)) & 1; }
static void vls__set(uint64_t *bm, uint32_t i, int on) {
  if (on)
    bm[i / 64] |= 1ull << (i % 64);
  else
    bm[i / 64] &= ~(1ull << (i % 64));
}

int vls_listener_subscribe(vls_listener_shared_t *l, uint32_t wrk) {
  if (wrk >= VLS_MAX_WORKERS) return -EINVAL;
  int rv = vls_shm_mutex_lock(&l->lock);
  if (rv < 0) return rv;
  if (!vls__bit(l->subscribed, wrk)) {
    vls__set(l->subscribed, wrk, 1);
    l->n_subscribed++;
  }
  vls__set(l->active, wrk, 1);
  vls_shm_mutex_unlock(&l->lock);
  return 0;
}

int vls_listener_unsubscribe(vls_listener_shared_t *l, uint32_t wrk) {
  if (wrk >= VLS_MAX_WORKERS) return -EINVAL;
  int rv = vls_shm_mutex_lock(&l->lock);
  if (rv < 0) return rv;
  if (!vls__bit(l->subscribed, wrk)) {
    vls_shm_mutex_unlock(&l->lock);
    return -ENOENT;
  }
  vls__set(l->subscribed, wrk, 0);
  vls__set(l->active, wrk, 0);
  l->n_subscribed--;
  if (l->owner_wrk == wrk) {
    for (uint32_t i = 0; i < VLS_MAX_WORKERS; i++)
      if (vls__bit(l->subscribed, i)) {
        l->owner_wrk = i;
        break;
      }
  }
  int left = (int)l->n_subscribed;
  vls_shm_mutex_unlock(&l->lock);
  return left;
}

int vls_listener_set_active(vls_listener_shared_t *l, uint32_t wrk, int active) {
  if (wrk >= VLS_MAX_WORKERS) return -EINVAL;
  int rv = vls_shm_mutex_lock(&l->lock);
  if (rv < 0) return rv;
  if (!vls__bit(l->subscribed, wrk)) {
    vls_shm_mutex_unlock(&l->lock);
    return -ENOENT;
  }
  vls__set(l->active, wrk, active);
  vls_shm_mutex_unlock(&l->lock);
  return 0;
}

int vls_listener_pick(vls_listener_shared_t *l) {
  int rv = vls_shm_mutex_lock(&l->lock);
  if (rv < 0) return rv;
  uint32_t start = l->rr % VLS_MAX_WORKERS;
  int out = -ECONNREFUSED;
  for (uint32_t k = 0; k < VLS_MAX_WORKERS; k++) {
    uint32_t i = (start + k) % VLS_MAX_WORKERS;
    if (vls__bit(l->active, i) && vls__bit(l->subscribed, i)) {
      out = (int)i;
      l->rr = i + 1;
      break;
    }
  }
  vls_shm_mutex_unlock(&l->lock);
  return out;
}

int vls_listener_is_subscribed(vls_listener_shared_t *l, uint32_t wrk) {
  if (wrk >= VLS_MAX_WORKERS) return 0;
  int rv = vls_shm_mutex_lock(&l->lock);
  if (rv < 0) return rv;
  int s = vls__bit(l->subscribed, wrk);
  vls_shm_mutex_unlock(&l->lock);
  return s;
}

int vls_listener_owner(vls_listener_shared_t *l) {
  int rv = vls_shm_mutex_lock(&l->lock);
  if (rv < 0) return rv;
  int o = l->n_subscribed ? (int)l->owner_wrk : -ENOENT;
  vls_shm_mutex_unlock(&l->lock);
  return o;
}
