#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vls_segment.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Each block starts with this header; the payload follows at the next cache line. */
typedef struct vls__blk {
  uint64_t magic_class; /* VLS__BLK_MAGIC | class, or VLS__BLK_FREE | class */
  uint64_t next_free;   /* free-list link (offset of next free payload), valid only when free */
  uint8_t pad[VLS_CACHE_LINE - 16];
} vls__blk_t;

#define VLS__BLK_LIVE 0x4c49564500000000ull /* "LIVE" */
#define VLS__BLK_FREE 0x4652454500000000ull /* "FREE" */
#define VLS__BLK_MASK 0xffffffff00000000ull
#define VLS__MIN_CLASS 6 /* payload of one cache line (a 128-byte block with its header) */
/* Class c holds a payload of exactly 2^c bytes behind its header line, so a power-of-two request
 * (a fifo's data, 256 KiB) takes 2^c + 64 bytes, not twice its size. */
#define VLS__BLK_BYTES(c) ((1ull << (c)) + sizeof(vls__blk_t))

int vls_shm_mutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  int rv = pthread_mutexattr_init(&a);
  if (rv) return -rv;
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  rv = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return -rv;
}

int vls_shm_mutex_lock(pthread_mutex_t *m) {
  int rv = pthread_mutex_lock(m);
  if (rv == 0) return 0;
  if (rv == EOWNERDEAD) {
    /* The holder died inside its critical section. Every structure guarded this way publishes its
     * changes with a single final store, so the protected state is consistent as it stands. */
    pthread_mutex_consistent(m);
    return 1;
  }
  return -rv;
}

void vls_shm_mutex_unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }

static uint64_t vls__page_size(void) {
  long p = sysconf(_SC_PAGESIZE);
  return p > 0 ? (uint64_t)p : 4096;
}

int vls_segment_create(vls_segment_t *seg, const char *name, uint64_t size) {
  memset(seg, 0, sizeof *seg);
  seg->fd = -1;
  if (!name || size < VLS_SEGMENT_MIN_SIZE || size > (1ull << 40)) return -EINVAL;
  size = VLS_ALIGN_UP(size, vls__page_size());
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -errno;
  if (ftruncate(fd, (off_t)size) < 0) goto fail;
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) goto fail;
  void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) goto fail;
  seg->fd = fd;
  seg->base = base;
  seg->size = size;
  seg->hdr = base;
  vls_segment_hdr_t *h = seg->hdr;
  h->size = size;
  h->data_start = VLS_ALIGN_UP(sizeof *h, VLS_CACHE_LINE);
  seg->data_start = h->data_start;
  h->bump = h->data_start;
  h->creator_pid = (int32_t)getpid();
  int rv = vls_shm_mutex_init(&h->lock);
  if (rv < 0) {
    munmap(base, size);
    close(fd);
    seg->fd = -1;
    return rv;
  }
  atomic_store(&h->n_attached, 1);
  h->version_major = VLS_VERSION_MAJOR;
  h->version_minor = VLS_VERSION_MINOR;
  /* Publish the magic last: an attacher that sees it sees a fully formatted header. */
  atomic_thread_fence(memory_order_release);
  h->magic = VLS_SEGMENT_MAGIC;
  VLS_DBG(2, "segment %s created: fd %d size %llu", name, fd, (unsigned long long)size);
  return 0;
fail:;
  int err = -errno;
  close(fd);
  return err;
}

int vls_segment_attach(vls_segment_t *seg, int fd) {
  memset(seg, 0, sizeof *seg);
  seg->fd = -1;
  struct stat st;
  if (fd < 0) return -EBADF;
  if (fstat(fd, &st) < 0) return -errno;
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) return errno == EINVAL ? -EPROTO : -errno;
  /* Without SHRINK a peer could truncate the file under us and turn our reads into SIGBUS. */
  if (!(seals & F_SEAL_SHRINK)) return -EPROTO;
  uint64_t size = (uint64_t)st.st_size;
  if (size < VLS_SEGMENT_MIN_SIZE || size > (1ull << 40)) return -EPROTO;
  void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return -errno;
  vls_segment_hdr_t *h = base;
  uint32_t magic = h->magic;
  atomic_thread_fence(memory_order_acquire);
  if (magic != VLS_SEGMENT_MAGIC || h->version_major != VLS_VERSION_MAJOR || h->size != size ||
      h->data_start < sizeof *h || h->data_start >= size) {
    munmap(base, size);
    return -EPROTO;
  }
  seg->fd = fd;
  seg->base = base;
  seg->size = size;
  seg->hdr = h;
  /* Our own layout, not the header's word for it: the header area is never a valid target. */
  seg->data_start = VLS_ALIGN_UP(sizeof *h, VLS_CACHE_LINE);
  atomic_fetch_add(&h->n_attached, 1);
  return 0;
}

void vls_segment_detach(vls_segment_t *seg) {
  if (seg->base) {
    atomic_fetch_sub(&seg->hdr->n_attached, 1);
    munmap(seg->base, seg->size);
  }
  if (seg->fd >= 0) close(seg->fd);
  seg->base = NULL;
  seg->hdr = NULL;
  seg->size = 0;
  seg->data_start = 0;
  seg->fd = -1;
}

void *vls_segment_ptr(const vls_segment_t *seg, uint64_t off, uint64_t len) {
  if (!seg->base || off < seg->data_start || off > seg->size || len > seg->size - off) return NULL;
  return seg->base + off;
}

static int vls__class_of(uint64_t payload) {
  int c = VLS__MIN_CLASS;
  while (c < VLS_SEGMENT_N_CLASSES && (1ull << c) < payload) c++;
  return c;
}

/* A free-list link read from shared memory: must name a free block of the same class. */
static vls__blk_t *vls__checked_free_blk(vls_segment_t *seg, uint64_t payload_off, int cls) {
  if (payload_off < seg->data_start + sizeof(vls__blk_t)) return NULL;
  vls__blk_t *b = vls_segment_ptr(seg, payload_off - sizeof(vls__blk_t), VLS__BLK_BYTES(cls));
  if (!b || b->magic_class != (VLS__BLK_FREE | (uint64_t)cls)) return NULL;
  return b;
}

int64_t vls_segment_alloc(vls_segment_t *seg, uint64_t size) {
  if (!seg->base || size == 0 || size > seg->size) return -EINVAL;
  int cls = vls__class_of(VLS_ALIGN_UP(size, VLS_CACHE_LINE));
  if (cls >= VLS_SEGMENT_N_CLASSES) return -ENOMEM;
  vls_segment_hdr_t *h = seg->hdr;
  int rv = vls_shm_mutex_lock(&h->lock);
  if (rv < 0) return rv;
  int64_t out;
  uint64_t head = h->free_head[cls];
  if (head) {
    vls__blk_t *b = vls__checked_free_blk(seg, head, cls);
    if (!b) {
      out = -EIO; /* corrupted free list */
      goto done;
    }
    h->free_head[cls] = b->next_free;
    b->next_free = 0;
    b->magic_class = VLS__BLK_LIVE | (uint64_t)cls;
    out = (int64_t)head;
  } else {
    uint64_t blk_off = h->bump;
    uint64_t bytes = VLS__BLK_BYTES(cls);
    if (blk_off < seg->data_start || blk_off > seg->size || bytes > seg->size - blk_off) {
      out = blk_off > seg->size ? -EIO : -ENOMEM;
      goto done;
    }
    vls__blk_t *b = (vls__blk_t *)(seg->base + blk_off);
    b->magic_class = VLS__BLK_LIVE | (uint64_t)cls;
    b->next_free = 0;
    h->bump = blk_off + bytes;
    out = (int64_t)(blk_off + sizeof(vls__blk_t));
  }
  h->n_allocs++;
  h->bytes_used += VLS__BLK_BYTES(cls);
done:
  vls_shm_mutex_unlock(&h->lock);
  return out;
}

int vls_segment_free(vls_segment_t *seg, uint64_t off) {
  if (!seg->base || off < seg->data_start + sizeof(vls__blk_t) || off % VLS_CACHE_LINE)
    return -EINVAL;
  vls__blk_t *b = vls_segment_ptr(seg, off - sizeof(vls__blk_t), sizeof(vls__blk_t));
  if (!b) return -EINVAL;
  vls_segment_hdr_t *h = seg->hdr;
  int rv = vls_shm_mutex_lock(&h->lock);
  if (rv < 0) return rv;
  uint64_t mc = b->magic_class;
  int cls = (int)(mc & 0xff);
  if ((mc & VLS__BLK_MASK) != VLS__BLK_LIVE || cls < VLS__MIN_CLASS ||
      cls >= VLS_SEGMENT_N_CLASSES || !vls_segment_ptr(seg, off - sizeof(vls__blk_t), VLS__BLK_BYTES(cls))) {
    vls_shm_mutex_unlock(&h->lock);
    return -EINVAL;
  }
  b->magic_class = VLS__BLK_FREE | (uint64_t)cls;
  b->next_free = h->free_head[cls];
  h->free_head[cls] = off;
  h->n_allocs--;
  h->bytes_used -= VLS__BLK_BYTES(cls);
  vls_shm_mutex_unlock(&h->lock);
  return 0;
}

int vls_segment_stats(const vls_segment_t *seg, vls_segment_stats_t *st) {
  if (!seg->base) return -EBADF;
  vls_segment_hdr_t *h = seg->hdr;
  st->size = seg->size;
  st->bump = h->bump;
  st->n_allocs = h->n_allocs;
  st->bytes_used = h->bytes_used;
  st->n_attached = atomic_load(&h->n_attached);
  return 0;
}
