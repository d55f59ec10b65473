/*
 * Segments: memfd-backed shared memory that several processes map.
 *
 *   +------------------+---------------------------------------------------------+
 *   | vls_segment_hdr  | blocks: [blk hdr | payload] [blk hdr | payload] ...  bump |
 *   +------------------+---------------------------------------------------------+
 *   offset 0            hdr->data_start                                           size
 *
 * Everything inside a segment links to everything else by offset from the segment base, never by
 * pointer, because each process maps the segment at its own address. The allocator keeps one free
 * list per power-of-two size class (fifos and queues come in a few fixed sizes, so a freed block is
 * reused by the next allocation of the same size and a long run of connect/close cycles does not
 * grow the segment). The allocator lock is a robust, process-shared mutex: a holder killed with
 * SIGKILL does not wedge the other processes.
 *
 * A segment is sealed against shrinking and growing once created, so a peer cannot truncate it and
 * make our next access fault with SIGBUS. An attaching process checks the seals, the size, the
 * magic and the version before it trusts anything else in the header, and every offset it reads
 * from the segment goes through vls_segment_ptr(), which bounds-checks it.
 */
#ifndef VLS_SEGMENT_H
#define VLS_SEGMENT_H

#include <pthread.h>

#include "vls_common.h"

#define VLS_SEGMENT_MAGIC 0x474c5356u /* "VLSG" */
#define VLS_SEGMENT_MIN_SIZE (64u * 1024u)
#define VLS_SEGMENT_N_CLASSES 40

typedef struct vls_segment_hdr {
  uint32_t magic;
  uint16_t version_major;
  uint16_t version_minor;
  uint64_t size;       /* total bytes, equal to the memfd size */
  uint64_t data_start; /* first allocatable offset */
  int32_t creator_pid;
  uint32_t pad0;
  pthread_mutex_t lock; /* robust + process-shared; guards everything below */
  uint64_t bump;        /* next never-allocated offset */
  uint64_t free_head[VLS_SEGMENT_N_CLASSES];
  uint64_t n_allocs;   /* live allocations */
  uint64_t bytes_used; /* bytes in live allocations, block headers included */
  _Atomic uint32_t n_attached; /* processes with the segment mapped (advisory, for stats) */
} vls_segment_hdr_t;

typedef struct vls_segment {
  int fd;
  uint8_t *base;
  uint64_t size;       /* private copy: never re-read from the header after attach */
  uint64_t data_start; /* private copy: offsets below it (the header) are never handed out */
  vls_segment_hdr_t *hdr;
} vls_segment_t;

typedef struct vls_segment_stats {
  uint64_t size;
  uint64_t bump;
  uint64_t n_allocs;
  uint64_t bytes_used;
  uint32_t n_attached;
} vls_segment_stats_t;

/* Create a new segment of `size` bytes (rounded up to the page size). */
int vls_segment_create(vls_segment_t *seg, const char *name, uint64_t size);
/* Map an existing segment from its memfd. Takes ownership of `fd` on success only. */
int vls_segment_attach(vls_segment_t *seg, int fd);
/* Unmap and close. Safe on a zeroed or already detached segment. */
void vls_segment_detach(vls_segment_t *seg);
/* Allocate `size` bytes, 64-byte aligned; returns the payload offset (> 0) or a negative errno. */
int64_t vls_segment_alloc(vls_segment_t *seg, uint64_t size);
/* Free a block by payload offset; -EINVAL for an offset that is not a live block. */
int vls_segment_free(vls_segment_t *seg, uint64_t off);
/* Bounds-checked offset to pointer; NULL when [off, off+len) is not inside the data area. */
void *vls_segment_ptr(const vls_segment_t *seg, uint64_t off, uint64_t len);
int vls_segment_stats(const vls_segment_t *seg, vls_segment_stats_t *st);

/* Robust process-shared mutex helpers used by every shared structure. */
int vls_shm_mutex_init(pthread_mutex_t *m);
/* Lock; recovers a mutex whose holder died (returns 1 in that case, 0 otherwise, < 0 on error). */
int vls_shm_mutex_lock(pthread_mutex_t *m);
void vls_shm_mutex_unlock(pthread_mutex_t *m);

#endif
