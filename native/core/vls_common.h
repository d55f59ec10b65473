/*
 * Shared definitions of the node-vls native core.
 *
 * Conventions (libuv style): every public call returns >= 0 on success or a negative errno;
 * public names carry the `vls_` prefix, internal helpers a `vls__` prefix. Nothing here depends on
 * Node: the core builds, tests, fuzzes and benchmarks on its own.
 */
#ifndef VLS_COMMON_H
#define VLS_COMMON_H

#include <errno.h>
#ifndef __cplusplus
#include <stdatomic.h>
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VLS_VERSION_MAJOR 0
#define VLS_VERSION_MINOR 1

#define VLS_CACHE_LINE 64
#define VLS_ALIGNED(n) __attribute__((aligned(n)))
#define VLS_LIKELY(x) __builtin_expect(!!(x), 1)
#define VLS_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define VLS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VLS_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VLS_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((uint64_t)(a) - 1))

static inline int vls_is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* Debug logging, gated by VLS_DEBUG=<level>. Prints "<pid:wrk>" and keeps errno intact; when the
 * level is 0 (the default) the cost is one predictable branch on a cached integer. */
extern int vls_debug_level;
extern __thread int vls_debug_wrk;
void vls_debug_init(void);
void vls__debug_print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define VLS_DBG(lvl, ...)                                                                          \
  do {                                                                                             \
    if (VLS_UNLIKELY(vls_debug_level >= (lvl))) vls__debug_print(__VA_ARGS__);                     \
  } while (0)

/* One segment of a gathered write. */
typedef struct vls_iov {
  const void *base;
  uint32_t len;
} vls_iov_t;

/* Name of a negative errno as Node shows it in err.code ("ECONNRESET"); "UNKNOWN" otherwise. */
const char *vls_err_name(int neg_errno);

#ifdef __cplusplus
}
#endif

#endif
