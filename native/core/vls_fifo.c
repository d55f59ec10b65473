#include "vls_fifo.h"

#include <string.h>

uint64_t vls_fifo_footprint(uint32_t size) {
  /* two allocator blocks: the header (its payload rounded up to a power of two) and the data */
  uint64_t h = VLS_CACHE_LINE;
  while (h < sizeof(vls_fifo_shared_t)) h <<= 1;
  return VLS_CACHE_LINE + h + VLS_CACHE_LINE + size;
}

/* The shared header and the data ring are two allocations, so that the ring (a power of two)
 * fills its size class exactly. */
int64_t vls_fifo_create(vls_segment_t *seg, uint32_t size) {
  if (!vls_is_pow2(size) || size < VLS_FIFO_MIN_SIZE || size > VLS_FIFO_MAX_SIZE) return -EINVAL;
  int64_t off = vls_segment_alloc(seg, sizeof(vls_fifo_shared_t));
  if (off < 0) return off;
  int64_t data = vls_segment_alloc(seg, size);
  if (data < 0) {
    vls_segment_free(seg, (uint64_t)off);
    return data;
  }
  vls_fifo_shared_t *sh = vls_segment_ptr(seg, (uint64_t)off, sizeof *sh);
  memset(sh, 0, sizeof *sh);
  sh->size = size;
  sh->data_off = (uint64_t)data;
  atomic_thread_fence(memory_order_release);
  sh->magic = VLS_FIFO_MAGIC;
  return off;
}

int vls_fifo_destroy(vls_segment_t *seg, uint64_t off) {
  vls_fifo_shared_t *sh = vls_segment_ptr(seg, off, sizeof *sh);
  if (!sh) return -EINVAL;
  uint64_t data = *(volatile uint64_t *)&sh->data_off;
  sh->magic = 0;
  /* The allocator checks the block before it frees it: a data offset a peer scribbled over is
   * refused there, not followed. */
  vls_segment_free(seg, data);
  return vls_segment_free(seg, off);
}

int vls_fifo_attach(vls_fifo_t *f, const vls_segment_t *seg, uint64_t off) {
  memset(f, 0, sizeof *f);
  vls_fifo_shared_t *sh = vls_segment_ptr(seg, off, sizeof *sh);
  if (!sh || off % VLS_CACHE_LINE) return -EINVAL;
  uint32_t magic = sh->magic;
  atomic_thread_fence(memory_order_acquire);
  /* Read size and data offset once; the checked private copies are all we use from now on. */
  uint32_t size = *(volatile uint32_t *)&sh->size;
  uint64_t data_off = *(volatile uint64_t *)&sh->data_off;
  if (magic != VLS_FIFO_MAGIC || !vls_is_pow2(size) || size < VLS_FIFO_MIN_SIZE ||
      size > VLS_FIFO_MAX_SIZE)
    return -EPROTO;
  uint8_t *data = vls_segment_ptr(seg, data_off, size);
  if (!data) return -EPROTO;
  uint32_t head = atomic_load_explicit(&sh->head, memory_order_acquire);
  uint32_t tail = atomic_load_explicit(&sh->tail, memory_order_acquire);
  if (tail - head > size) return -EPROTO;
  f->sh = sh;
  f->data = data;
  f->size = size;
  f->mask = size - 1;
  f->my_head = head;
  f->my_tail = tail;
  return 0;
}

/* Consumer side: bytes readable, checked. */
static inline int64_t vls__used_for_consumer(vls_fifo_t *f, uint32_t *tail_out) {
  /* acquire pairs with the producer's release store of tail in vls__publish_tail() */
  uint32_t tail = atomic_load_explicit(&f->sh->tail, memory_order_acquire);
  uint32_t used = tail - f->my_head;
  if (VLS_UNLIKELY(used > f->size)) return -EIO;
  *tail_out = tail;
  return used;
}

/* Producer side: bytes free, checked. */
static inline int64_t vls__free_for_producer(vls_fifo_t *f) {
  /* acquire pairs with the consumer's release store of head in vls__publish_head() */
  uint32_t head = atomic_load_explicit(&f->sh->head, memory_order_acquire);
  uint32_t used = f->my_tail - head;
  if (VLS_UNLIKELY(used > f->size)) return -EIO;
  return f->size - used;
}

int64_t vls_fifo_max_dequeue(vls_fifo_t *f) {
  uint32_t t;
  return vls__used_for_consumer(f, &t);
}

int64_t vls_fifo_max_enqueue(vls_fifo_t *f) { return vls__free_for_producer(f); }

static inline void vls__copy_in(vls_fifo_t *f, uint32_t pos, const uint8_t *src, uint32_t len) {
  if (len == 0) return; /* an empty iov entry may carry a NULL base */
  uint32_t at = pos & f->mask;
  uint32_t first = VLS_MIN(len, f->size - at);
  memcpy(f->data + at, src, first);
  if (len > first) memcpy(f->data, src + first, len - first);
}

static inline void vls__copy_out(vls_fifo_t *f, uint32_t pos, uint8_t *dst, uint32_t len) {
  if (len == 0) return;
  uint32_t at = pos & f->mask;
  uint32_t first = VLS_MIN(len, f->size - at);
  memcpy(dst, f->data + at, first);
  if (len > first) memcpy(dst + first, f->data, len - first);
}

static inline void vls__publish_tail(vls_fifo_t *f, uint32_t n) {
  f->my_tail += n;
  /* release pairs with the acquire in vls__used_for_consumer(): the bytes are visible first */
  atomic_store_explicit(&f->sh->tail, f->my_tail, memory_order_release);
}

static inline void vls__publish_head(vls_fifo_t *f, uint32_t n) {
  f->my_head += n;
  /* release pairs with the acquire in vls__free_for_producer(): our reads finish first */
  atomic_store_explicit(&f->sh->head, f->my_head, memory_order_release);
}

int vls_fifo_enqueue(vls_fifo_t *f, const void *buf, uint32_t len) {
  vls_iov_t iov = {buf, len};
  return vls_fifo_enqueue_segs(f, &iov, 1, 0);
}

int vls_fifo_enqueue_segs(vls_fifo_t *f, const vls_iov_t *segs, uint32_t n_segs,
                          int all_or_nothing) {
  uint64_t total = 0;
  for (uint32_t i = 0; i < n_segs; i++) total += segs[i].len;
  if (total == 0) return 0;
  if (total > INT32_MAX) return all_or_nothing ? -EMSGSIZE : -EINVAL;
  int64_t room = vls__free_for_producer(f);
  if (room < 0) return (int)room;
  if (all_or_nothing) {
    if (total > f->size) return -EMSGSIZE;
    if (total > (uint64_t)room) return -EAGAIN;
  } else if (room == 0) {
    return -EAGAIN;
  }
  uint32_t want = (uint32_t)VLS_MIN(total, (uint64_t)room);
  uint32_t done = 0;
  for (uint32_t i = 0; i < n_segs && done < want; i++) {
    uint32_t n = VLS_MIN(segs[i].len, want - done);
    vls__copy_in(f, f->my_tail + done, segs[i].base, n);
    done += n;
  }
  vls__publish_tail(f, done);
  return (int)done;
}

int vls_fifo_dequeue(vls_fifo_t *f, void *buf, uint32_t len) {
  uint32_t tail;
  int64_t used = vls__used_for_consumer(f, &tail);
  if (used < 0) return (int)used;
  if (len == 0) return 0;
  if (used == 0) return -EAGAIN;
  uint32_t n = (uint32_t)VLS_MIN((uint64_t)len, (uint64_t)used);
  if (n > INT32_MAX) n = INT32_MAX;
  vls__copy_out(f, f->my_head, buf, n);
  vls__publish_head(f, n);
  return (int)n;
}

int vls_fifo_peek(vls_fifo_t *f, uint32_t offset, void *buf, uint32_t len) {
  uint32_t tail;
  int64_t used = vls__used_for_consumer(f, &tail);
  if (used < 0) return (int)used;
  if ((uint64_t)offset >= (uint64_t)used) return len == 0 ? 0 : -EAGAIN;
  uint32_t n = (uint32_t)VLS_MIN((uint64_t)len, (uint64_t)used - offset);
  if (n > INT32_MAX) n = INT32_MAX;
  vls__copy_out(f, f->my_head + offset, buf, n);
  return (int)n;
}

int vls_fifo_drop(vls_fifo_t *f, uint32_t len) {
  uint32_t tail;
  int64_t used = vls__used_for_consumer(f, &tail);
  if (used < 0) return (int)used;
  uint32_t n = (uint32_t)VLS_MIN((uint64_t)len, (uint64_t)used);
  if (n > INT32_MAX) n = INT32_MAX;
  vls__publish_head(f, n);
  return (int)n;
}

int vls_fifo_drop_all(vls_fifo_t *f) { return vls_fifo_drop(f, UINT32_MAX); }

int vls_fifo_set_event(vls_fifo_t *f) {
  /* Store/load pairing with vls_fifo_unset_event(): our tail store must be globally visible before
   * we look at the flag, or the consumer could clear it, miss our bytes and sleep. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&f->sh->has_event, memory_order_relaxed)) return 0;
  return atomic_exchange_explicit(&f->sh->has_event, 1, memory_order_acq_rel) == 0;
}

int64_t vls_fifo_unset_event(vls_fifo_t *f) {
  atomic_store_explicit(&f->sh->has_event, 0, memory_order_relaxed);
  /* Pairs with the fence in vls_fifo_set_event(): the clear is visible before we re-read tail. */
  atomic_thread_fence(memory_order_seq_cst);
  return vls_fifo_max_dequeue(f);
}

int vls_fifo_has_event(const vls_fifo_t *f) {
  return atomic_load_explicit(&f->sh->has_event, memory_order_acquire) != 0;
}

int64_t vls_fifo_want_deq_ntf(vls_fifo_t *f, uint32_t threshold) {
  if (threshold == 0) threshold = 1;
  if (threshold > f->size) threshold = f->size;
  atomic_store_explicit(&f->sh->deq_thresh, threshold, memory_order_relaxed);
  /* release: the threshold is visible to a consumer that sees the request */
  atomic_store_explicit(&f->sh->want_deq_ntf, 1, memory_order_release);
  /* Pairs with the fence in vls_fifo_needs_deq_ntf(): either the consumer sees our request, or we
   * see the room it freed. */
  atomic_thread_fence(memory_order_seq_cst);
  return vls__free_for_producer(f);
}

int vls_fifo_needs_deq_ntf(vls_fifo_t *f) {
  atomic_thread_fence(memory_order_seq_cst);
  if (!atomic_load_explicit(&f->sh->want_deq_ntf, memory_order_acquire)) return 0;
  uint32_t thresh = atomic_load_explicit(&f->sh->deq_thresh, memory_order_relaxed);
  if (thresh == 0 || thresh > f->size) thresh = f->size;
  uint32_t tail = atomic_load_explicit(&f->sh->tail, memory_order_acquire);
  uint32_t used = tail - f->my_head;
  if (used > f->size) return 0; /* corrupt: the reader's next dequeue reports -EIO */
  if (f->size - used < thresh) return 0;
  return atomic_exchange_explicit(&f->sh->want_deq_ntf, 0, memory_order_acq_rel) == 1;
}

void vls_fifo_set_eof(vls_fifo_t *f) {
  /* release: every byte published before this store is visible to a reader that sees eof */
  atomic_store_explicit(&f->sh->eof, 1, memory_order_release);
}

int vls_fifo_eof_sent(const vls_fifo_t *f) {
  return atomic_load_explicit(&f->sh->eof, memory_order_acquire) != 0;
}

int vls_fifo_is_eof(vls_fifo_t *f) {
  if (!atomic_load_explicit(&f->sh->eof, memory_order_acquire)) return 0;
  uint32_t tail;
  return vls__used_for_consumer(f, &tail) == 0;
}

int vls_fifo_resync(vls_fifo_t *f) {
  uint32_t head = atomic_load_explicit(&f->sh->head, memory_order_acquire);
  uint32_t tail = atomic_load_explicit(&f->sh->tail, memory_order_acquire);
  if (tail - head > f->size) return -EIO;
  f->my_head = head;
  f->my_tail = tail;
  return 0;
}
