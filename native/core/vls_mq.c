#include "vls_mq.h"

#include <string.h>
#include <unistd.h>

int64_t vls_mq_create(vls_segment_t *seg, uint32_t elt_size, uint32_t n_elts) {
  if (elt_size == 0 || elt_size > VLS_MQ_MAX_ELT || elt_size % 8 || !vls_is_pow2(n_elts) ||
      n_elts < 2 || n_elts > VLS_MQ_MAX_ELTS)
    return -EINVAL;
  uint64_t bytes = sizeof(vls_mq_shared_t) + (uint64_t)elt_size * n_elts;
  int64_t off = vls_segment_alloc(seg, bytes);
  if (off < 0) return off;
  vls_mq_shared_t *sh = vls_segment_ptr(seg, (uint64_t)off, sizeof *sh);
  memset(sh, 0, sizeof *sh);
  sh->elt_size = elt_size;
  sh->n_elts = n_elts;
  sh->data_off = (uint64_t)off + sizeof *sh;
  sh->consumer_sleeping = 1; /* until the consumer says otherwise, assume it sleeps */
  int rv = vls_shm_mutex_init(&sh->plock);
  if (rv < 0) {
    vls_segment_free(seg, (uint64_t)off);
    return rv;
  }
  atomic_thread_fence(memory_order_release);
  sh->magic = VLS_MQ_MAGIC;
  return off;
}

int vls_mq_destroy(vls_segment_t *seg, uint64_t off) {
  vls_mq_shared_t *sh = vls_segment_ptr(seg, off, sizeof *sh);
  if (!sh) return -EINVAL;
  sh->magic = 0;
  return vls_segment_free(seg, off);
}

int vls_mq_attach(vls_mq_t *mq, const vls_segment_t *seg, uint64_t off, int efd) {
  memset(mq, 0, sizeof *mq);
  mq->efd = -1;
  vls_mq_shared_t *sh = vls_segment_ptr(seg, off, sizeof *sh);
  if (!sh || off % VLS_CACHE_LINE) return -EINVAL;
  uint32_t magic = sh->magic;
  atomic_thread_fence(memory_order_acquire);
  uint32_t elt_size = *(volatile uint32_t *)&sh->elt_size;
  uint32_t n_elts = *(volatile uint32_t *)&sh->n_elts;
  uint64_t data_off = *(volatile uint64_t *)&sh->data_off;
  if (magic != VLS_MQ_MAGIC || elt_size == 0 || elt_size > VLS_MQ_MAX_ELT || elt_size % 8 ||
      !vls_is_pow2(n_elts) || n_elts < 2 || n_elts > VLS_MQ_MAX_ELTS)
    return -EPROTO;
  uint8_t *data = vls_segment_ptr(seg, data_off, (uint64_t)elt_size * n_elts);
  if (!data) return -EPROTO;
  uint32_t head = atomic_load_explicit(&sh->head, memory_order_acquire);
  uint32_t tail = atomic_load_explicit(&sh->tail, memory_order_acquire);
  if (tail - head > n_elts) return -EPROTO;
  mq->sh = sh;
  mq->data = data;
  mq->elt_size = elt_size;
  mq->n_elts = n_elts;
  mq->mask = n_elts - 1;
  mq->my_head = head;
  mq->efd = efd;
  return 0;
}

int vls_mq_send(vls_mq_t *mq, const void *msg, uint32_t len) {
  if (len > mq->elt_size) return -EINVAL;
  int rv = vls_shm_mutex_lock(&mq->sh->plock);
  if (rv < 0) return rv;
  /* Under the lock we are the only producer, but the tail lives in shared memory where a hostile
   * peer may scribble on it: read it once and check it against head. */
  uint32_t tail = atomic_load_explicit(&mq->sh->tail, memory_order_relaxed);
  /* acquire pairs with the consumer's release store of head in vls_mq_recv_batch() */
  uint32_t head = atomic_load_explicit(&mq->sh->head, memory_order_acquire);
  uint32_t used = tail - head;
  if (VLS_UNLIKELY(used > mq->n_elts)) {
    vls_shm_mutex_unlock(&mq->sh->plock);
    return -EIO;
  }
  if (used == mq->n_elts) {
    atomic_fetch_add_explicit(&mq->sh->n_full, 1, memory_order_relaxed);
    vls_shm_mutex_unlock(&mq->sh->plock);
    return -EAGAIN;
  }
  uint8_t *slot = mq->data + (uint64_t)(tail & mq->mask) * mq->elt_size;
  if (len) memcpy(slot, msg, len);
  if (len < mq->elt_size) memset(slot + len, 0, mq->elt_size - len);
  /* release pairs with the consumer's acquire of tail: the slot is written first */
  atomic_store_explicit(&mq->sh->tail, tail + 1, memory_order_release);
  vls_shm_mutex_unlock(&mq->sh->plock);
  /* Store/load pairing with vls_mq_ready_to_sleep(): tail is visible before we look at the flag. */
  atomic_thread_fence(memory_order_seq_cst);
  int wake = atomic_load_explicit(&mq->sh->consumer_sleeping, memory_order_relaxed) &&
             atomic_exchange_explicit(&mq->sh->consumer_sleeping, 0, memory_order_acq_rel) == 1;
  if (!wake && rv != 1) return 0;
  atomic_store_explicit(&mq->sh->n_signals,
                        atomic_load_explicit(&mq->sh->n_signals, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  if (mq->efd >= 0) {
    uint64_t one = 1;
    ssize_t w;
    do {
      w = write(mq->efd, &one, sizeof one);
    } while (w < 0 && errno == EINTR);
    /* EAGAIN means the counter is saturated: the consumer is already due to wake. */
  }
  return 1;
}

int vls_mq_recv_batch(vls_mq_t *mq, void *out, uint32_t max) {
  /* acquire pairs with the producer's release store of tail in vls_mq_send() */
  uint32_t tail = atomic_load_explicit(&mq->sh->tail, memory_order_acquire);
  uint32_t used = tail - mq->my_head;
  if (VLS_UNLIKELY(used > mq->n_elts)) return -EIO;
  uint32_t n = VLS_MIN(used, max);
  uint8_t *dst = out;
  for (uint32_t i = 0; i < n; i++) {
    memcpy(dst + (uint64_t)i * mq->elt_size,
           mq->data + (uint64_t)((mq->my_head + i) & mq->mask) * mq->elt_size, mq->elt_size);
  }
  if (n) {
    mq->my_head += n;
    /* release pairs with the producer's acquire of head: our copies finish before reuse */
    atomic_store_explicit(&mq->sh->head, mq->my_head, memory_order_release);
  }
  return (int)n;
}

int vls_mq_ready_to_sleep(vls_mq_t *mq) {
  if (atomic_load_explicit(&mq->sh->head, memory_order_relaxed) != mq->my_head)
    atomic_store_explicit(&mq->sh->head, mq->my_head, memory_order_release);
  atomic_store_explicit(&mq->sh->consumer_sleeping, 1, memory_order_relaxed);
  /* Pairs with the fence in vls_mq_send(): the flag is visible before we re-read tail. */
  atomic_thread_fence(memory_order_seq_cst);
  uint32_t tail = atomic_load_explicit(&mq->sh->tail, memory_order_acquire);
  if (tail == mq->my_head) return 1;
  vls_mq_awake(mq);
  return 0;
}

void vls_mq_awake(vls_mq_t *mq) {
  atomic_store_explicit(&mq->sh->consumer_sleeping, 0, memory_order_relaxed);
}

int64_t vls_mq_eventfd_clear(vls_mq_t *mq) {
  if (mq->efd < 0) return 0;
  uint64_t v = 0;
  ssize_t r = read(mq->efd, &v, sizeof v);
  if (r != (ssize_t)sizeof v) return 0;
  return (int64_t)v;
}

int64_t vls_mq_depth(vls_mq_t *mq) {
  uint32_t tail = atomic_load_explicit(&mq->sh->tail, memory_order_acquire);
  uint32_t used = tail - mq->my_head;
  return used > mq->n_elts ? -EIO : (int64_t)used;
}
