/* Unit tests of the SPSC byte fifo (vls_fifo.h).
 *
 * Every test works on two private views of one shared fifo, a producer view `p` and a consumer view
 * `c`, the way two processes would. Under ASan the rest of the segment (everything but the fifo's
 * shared header and data area) is poisoned while a test runs, so a fifo call that strays outside
 * its own memory is reported even though the segment is one big mapping. */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vls_fifo.h"
#include "vls_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define VLS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VLS_TEST_ASAN 1
#endif
#endif
#ifdef VLS_TEST_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(a, s) ((void)(a), (void)(s))
#define ASAN_UNPOISON_MEMORY_REGION(a, s) ((void)(a), (void)(s))
#endif

#define SEG_SIZE (1u << 20)

typedef struct fx {
  vls_segment_t seg;
  int64_t off;
  uint32_t size;
  vls_fifo_t p; /* producer view */
  vls_fifo_t c; /* consumer view */
} fx_t;

/* Poison the whole segment except the fifo's shared header and data area. */
static void fx_guard(fx_t *x) {
  uint8_t *base = x->seg.base;
  vls_fifo_shared_t *sh = vls_segment_ptr(&x->seg, (uint64_t)x->off, sizeof *sh);
  uint64_t data = sh->data_off;
  ASAN_POISON_MEMORY_REGION(base, x->seg.size);
  ASAN_UNPOISON_MEMORY_REGION(base + x->off, sizeof *sh);
  ASAN_UNPOISON_MEMORY_REGION(base + data, x->size);
}

static void fx_unguard(fx_t *x) { ASAN_UNPOISON_MEMORY_REGION(x->seg.base, x->seg.size); }

/* Create a fifo of `size` bytes whose free-running counters start at `start`. */
static void fx_init_at(fx_t *x, uint32_t size, uint32_t start) {
  memset(x, 0, sizeof *x);
  CHECK_EQ(vls_segment_create(&x->seg, "fifo-test", SEG_SIZE), 0);
  x->off = vls_fifo_create(&x->seg, size);
  CHECK(x->off > 0);
  x->size = size;
  vls_fifo_shared_t *sh = vls_segment_ptr(&x->seg, (uint64_t)x->off, sizeof *sh);
  CHECK(sh != NULL);
  atomic_store(&sh->head, start);
  atomic_store(&sh->tail, start);
  CHECK_EQ(vls_fifo_attach(&x->p, &x->seg, (uint64_t)x->off), 0);
  CHECK_EQ(vls_fifo_attach(&x->c, &x->seg, (uint64_t)x->off), 0);
  fx_guard(x);
}

static void fx_init(fx_t *x, uint32_t size) { fx_init_at(x, size, 0); }

static void fx_fini(fx_t *x) {
  fx_unguard(x);
  CHECK_EQ(vls_fifo_destroy(&x->seg, (uint64_t)x->off), 0);
  vls_segment_detach(&x->seg);
}

static uint8_t pat(uint32_t i) { return (uint8_t)(i * 7u + (i >> 8) + 1u); }

static void fill(uint8_t *b, uint32_t n, uint32_t from) {
  for (uint32_t i = 0; i < n; i++) b[i] = pat(from + i);
}

static int same(const uint8_t *b, uint32_t n, uint32_t from) {
  for (uint32_t i = 0; i < n; i++)
    if (b[i] != pat(from + i)) return 0;
  return 1;
}

static void test_create_attach(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "fifo-test", SEG_SIZE), 0);
  CHECK_EQ(vls_fifo_create(&seg, 0), -EINVAL);
  CHECK_EQ(vls_fifo_create(&seg, 32), -EINVAL);  /* below the minimum */
  CHECK_EQ(vls_fifo_create(&seg, 100), -EINVAL); /* not a power of two */
  CHECK_EQ(vls_fifo_create(&seg, 4095), -EINVAL);
  CHECK_EQ(vls_fifo_create(&seg, 1u << 31), -EINVAL); /* above the maximum */
  CHECK(vls_fifo_create(&seg, 1u << 30) < 0);         /* valid size, but no room in the segment */
  CHECK(vls_fifo_footprint(4096) >= sizeof(vls_fifo_shared_t) + 4096);
  CHECK(vls_fifo_footprint(4096) <= 2 * sizeof(vls_fifo_shared_t) + 4096 + 2 * VLS_CACHE_LINE);
  CHECK_EQ(sizeof(vls_fifo_shared_t) % VLS_CACHE_LINE, 0);

  int64_t a = vls_fifo_create(&seg, 64);
  int64_t b = vls_fifo_create(&seg, 4096);
  CHECK(a > 0 && b > 0 && a != b);
  CHECK_EQ(a % VLS_CACHE_LINE, 0);
  vls_fifo_t f, g;
  CHECK_EQ(vls_fifo_attach(&f, &seg, (uint64_t)a), 0);
  CHECK_EQ(f.size, 64);
  CHECK_EQ(f.mask, 63);
  CHECK_EQ(vls_fifo_max_enqueue(&f), 64);
  CHECK_EQ(vls_fifo_max_dequeue(&f), 0);
  CHECK_EQ(vls_fifo_has_event(&f), 0);
  CHECK_EQ(vls_fifo_is_eof(&f), 0);
  CHECK_EQ(vls_fifo_attach(&g, &seg, (uint64_t)b), 0);
  CHECK_EQ(g.size, 4096);
  CHECK_EQ(vls_fifo_max_enqueue(&g), 4096);
  /* the data areas are disjoint and inside the segment */
  CHECK(f.data >= seg.base && f.data + f.size <= seg.base + seg.size);
  CHECK(g.data >= seg.base && g.data + g.size <= seg.base + seg.size);
  CHECK(f.data + f.size <= (uint8_t *)g.sh || g.data + g.size <= (uint8_t *)f.sh);

  /* Two views share the bytes. */
  vls_fifo_t f2;
  CHECK_EQ(vls_fifo_attach(&f2, &seg, (uint64_t)a), 0);
  CHECK_EQ(vls_fifo_enqueue(&f, "abc", 3), 3);
  char buf[8] = {0};
  CHECK_EQ(vls_fifo_dequeue(&f2, buf, sizeof buf), 3);
  CHECK(memcmp(buf, "abc", 3) == 0);

  /* A view attached mid-stream starts at the current head/tail. */
  CHECK_EQ(vls_fifo_enqueue(&f, "xyz", 3), 3);
  vls_fifo_t f3;
  CHECK_EQ(vls_fifo_attach(&f3, &seg, (uint64_t)a), 0);
  CHECK_EQ(vls_fifo_max_dequeue(&f3), 3);
  CHECK_EQ(vls_fifo_max_enqueue(&f3), 61);

  /* Destroyed: the magic is gone, attach refuses; a second destroy is refused by the allocator. */
  CHECK_EQ(vls_fifo_destroy(&seg, (uint64_t)a), 0);
  CHECK_EQ(vls_fifo_attach(&f, &seg, (uint64_t)a), -EPROTO);
  CHECK_EQ(vls_fifo_destroy(&seg, (uint64_t)a), -EINVAL);
  CHECK_EQ(vls_fifo_destroy(&seg, 0), -EINVAL);
  CHECK_EQ(vls_fifo_destroy(&seg, seg.size + 4096), -EINVAL);
  /* The block is reused by the next fifo of the same size, freshly formatted. */
  int64_t a2 = vls_fifo_create(&seg, 64);
  CHECK_EQ(a2, a);
  CHECK_EQ(vls_fifo_attach(&f, &seg, (uint64_t)a2), 0);
  CHECK_EQ(vls_fifo_max_dequeue(&f), 0);
  CHECK_EQ(vls_fifo_destroy(&seg, (uint64_t)a2), 0);
  CHECK_EQ(vls_fifo_destroy(&seg, (uint64_t)b), 0);
  vls_segment_detach(&seg);
}

static void test_basic(void) {
  fx_t x;
  fx_init(&x, 256);
  uint8_t in[512], out[512];
  fill(in, sizeof in, 0);

  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 10), -EAGAIN); /* empty */
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 0), 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 0), 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 5), 5);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 5);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 251);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 0), 0); /* len 0 consumes nothing */
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 5);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 3), 3);
  CHECK(same(out, 3, 0));
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 100), 2); /* short read */
  CHECK(same(out, 2, 3));
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 100), -EAGAIN);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 256);

  /* Fill exactly, then full. */
  CHECK_EQ(vls_fifo_enqueue(&x.p, in + 5, 256), 256);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 0);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 256);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 0), 0);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 10), 10);
  CHECK(same(out, 10, 5));
  /* Short write: only the free room is taken. */
  CHECK_EQ(vls_fifo_enqueue(&x.p, in + 261, 100), 10);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 100), -EAGAIN);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, sizeof out), 256);
  CHECK(same(out, 256, 15));
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 0);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 256);

  /* Larger than the fifo: a short write of exactly size bytes. */
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 512), 256);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 512), 256);
  CHECK(same(out, 256, 0));
  fx_fini(&x);
}

static void test_wrap(void) {
  fx_t x;
  fx_init(&x, 64);
  uint8_t in[64], out[64];
  fill(in, 64, 100);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 50), 50);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 50), 50);
  /* 40 bytes from slot 50: 14 at the end of the data area, 26 at its start */
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 40), 40);
  CHECK(memcmp(x.c.data + 50, in, 14) == 0);
  CHECK(memcmp(x.c.data, in + 14, 26) == 0);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 24);
  memset(out, 0, sizeof out);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 64), 40);
  CHECK(memcmp(out, in, 40) == 0);
  /* Fill completely while wrapped, and read it back in two pieces across the edge. */
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 64), 64);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 30), 30);
  CHECK(memcmp(out, in, 30) == 0);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 64), 34);
  CHECK(memcmp(out, in + 30, 34) == 0);

  /* Many laps with an odd stride so every slot boundary is crossed. */
  uint32_t wpos = 0, rpos = 0;
  uint8_t big[64];
  for (int i = 0; i < 2000; i++) {
    uint32_t n = (uint32_t)(i % 63) + 1;
    fill(big, n, wpos);
    int w = vls_fifo_enqueue(&x.p, big, n);
    CHECK(w > 0 || w == -EAGAIN);
    if (w > 0) wpos += (uint32_t)w;
    int r = vls_fifo_dequeue(&x.c, out, (uint32_t)(i % 37) + 1);
    CHECK(r > 0);
    CHECK(same(out, (uint32_t)r, rpos));
    rpos += (uint32_t)r;
    CHECK_EQ(vls_fifo_max_dequeue(&x.c), wpos - rpos);
  }
  fx_fini(&x);
}

/* The free-running 32-bit counters wrap from UINT32_MAX to 0 without a hitch. */
static void test_counter_wrap(void) {
  fx_t x;
  fx_init_at(&x, 128, UINT32_MAX - 200);
  CHECK_EQ(x.p.my_tail, UINT32_MAX - 200);
  uint8_t buf[128], out[128];
  uint32_t wpos = 0, rpos = 0;
  for (int i = 0; i < 100; i++) {
    uint32_t n = (uint32_t)(i * 13 % 97) + 1;
    fill(buf, n, wpos);
    int w = vls_fifo_enqueue(&x.p, buf, n);
    CHECK(w > 0 || w == -EAGAIN);
    if (w > 0) wpos += (uint32_t)w;
    CHECK_EQ(vls_fifo_max_dequeue(&x.c), wpos - rpos);
    CHECK_EQ(vls_fifo_max_enqueue(&x.p), 128 - (wpos - rpos));
    if (wpos - rpos > 4) {
      CHECK_EQ(vls_fifo_peek(&x.c, 2, out, 2), 2);
      CHECK(same(out, 2, rpos + 2));
    }
    int r = vls_fifo_dequeue(&x.c, out, (uint32_t)(i * 7 % 61) + 1);
    CHECK(r > 0);
    CHECK(same(out, (uint32_t)r, rpos));
    rpos += (uint32_t)r;
  }
  CHECK(x.c.my_head < (1u << 20)); /* the counters did wrap */
  CHECK(x.p.my_tail < (1u << 20));
  /* a view attached after the wrap sees a consistent state */
  vls_fifo_t v;
  CHECK_EQ(vls_fifo_attach(&v, &x.seg, (uint64_t)x.off), 0);
  CHECK_EQ(vls_fifo_max_dequeue(&v), wpos - rpos);
  fx_fini(&x);

  /* Full and empty right at the wrap point. */
  fx_init_at(&x, 64, UINT32_MAX - 63);
  fill(buf, 64, 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, buf, 64), 64);
  CHECK_EQ(x.p.my_tail, 0);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, buf, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 64);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 64), 64);
  CHECK(same(out, 64, 0));
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 64), -EAGAIN);
  fx_fini(&x);
}

static void test_peek(void) {
  fx_t x;
  fx_init(&x, 128);
  uint8_t in[128], out[128];
  /* Put the head at slot 100 so the 100 bytes below wrap after 28. */
  fill(in, 100, 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 100), 100);
  CHECK_EQ(vls_fifo_drop(&x.c, 100), 100);
  fill(in, 100, 5000);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 100), 100);

  CHECK_EQ(vls_fifo_peek(&x.c, 0, out, 10), 10);
  CHECK(same(out, 10, 5000));
  CHECK_EQ(vls_fifo_peek(&x.c, 20, out, 20), 20); /* straddles the edge at 28 */
  CHECK(same(out, 20, 5020));
  CHECK_EQ(vls_fifo_peek(&x.c, 28, out, 5), 5); /* starts exactly at the edge */
  CHECK(same(out, 5, 5028));
  CHECK_EQ(vls_fifo_peek(&x.c, 50, out, 128), 50); /* short: only 50 bytes past offset 50 */
  CHECK(same(out, 50, 5050));
  CHECK_EQ(vls_fifo_peek(&x.c, 99, out, 1), 1);
  CHECK(same(out, 1, 5099));
  CHECK_EQ(vls_fifo_peek(&x.c, 0, out, 128), 100);
  CHECK(same(out, 100, 5000));
  CHECK_EQ(vls_fifo_peek(&x.c, 10, out, 0), 0);
  /* beyond the data */
  CHECK_EQ(vls_fifo_peek(&x.c, 100, out, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_peek(&x.c, 100, out, 0), 0);
  CHECK_EQ(vls_fifo_peek(&x.c, 127, out, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_peek(&x.c, 128, out, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_peek(&x.c, 1u << 20, out, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_peek(&x.c, UINT32_MAX, out, UINT32_MAX), -EAGAIN);
  /* peeking consumes nothing */
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 100);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 28);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 30), 30);
  CHECK(same(out, 30, 5000));
  CHECK_EQ(vls_fifo_peek(&x.c, 0, out, 1), 1); /* offsets are relative to the new head */
  CHECK(same(out, 1, 5030));
  CHECK_EQ(vls_fifo_peek(&x.c, 69, out, 10), 1);
  CHECK(same(out, 1, 5099));
  CHECK_EQ(vls_fifo_peek(&x.c, 70, out, 10), -EAGAIN);
  CHECK_EQ(vls_fifo_drop_all(&x.c), 70);
  CHECK_EQ(vls_fifo_peek(&x.c, 0, out, 1), -EAGAIN); /* empty */
  CHECK_EQ(vls_fifo_peek(&x.c, 0, out, 0), 0);
  fx_fini(&x);
}

static void test_drop(void) {
  fx_t x;
  fx_init(&x, 64);
  uint8_t in[64], out[64];
  CHECK_EQ(vls_fifo_drop(&x.c, 10), 0); /* nothing to drop */
  CHECK_EQ(vls_fifo_drop_all(&x.c), 0);
  fill(in, 60, 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 60), 60);
  CHECK_EQ(vls_fifo_drop(&x.c, 0), 0);
  CHECK_EQ(vls_fifo_drop(&x.c, 10), 10);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 50);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 14); /* the producer sees the room */
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 5), 5);
  CHECK(same(out, 5, 10));
  CHECK_EQ(vls_fifo_drop(&x.c, 1000), 45); /* clamped to what is there */
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 0);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 64);
  fill(in, 64, 60);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 64), 64); /* wraps */
  CHECK_EQ(vls_fifo_drop(&x.c, UINT32_MAX), 64);
  CHECK_EQ(vls_fifo_enqueue(&x.p, in, 33), 33);
  CHECK_EQ(vls_fifo_drop_all(&x.c), 33);
  CHECK_EQ(vls_fifo_drop_all(&x.c), 0);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 64);
  fx_fini(&x);
}

static void test_enqueue_segs(void) {
  fx_t x;
  fx_init(&x, 128);
  uint8_t a[200], out[256];
  fill(a, sizeof a, 0);
  vls_iov_t iov[4] = {{a, 10}, {a + 10, 20}, {a + 30, 0}, {a + 30, 30}};

  /* all-or-nothing, fits: one unit, in order */
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, iov, 4, 1), 60);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 60);
  /* all-or-nothing, does not fit now: nothing goes in, -EAGAIN */
  vls_iov_t big[2] = {{a + 60, 40}, {a + 100, 40}};
  uint32_t tail_before = atomic_load(&x.p.sh->tail);
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, big, 2, 1), -EAGAIN);
  CHECK_EQ(atomic_load(&x.p.sh->tail), tail_before);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 60);
  /* all-or-nothing, can never fit: -EMSGSIZE, even with an empty fifo */
  vls_iov_t huge[3] = {{a, 100}, {a, 20}, {a, 9}};
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, huge, 3, 1), -EMSGSIZE);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, sizeof out), 60);
  CHECK(same(out, 60, 0));
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, huge, 3, 1), -EMSGSIZE);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 0);
  /* exactly the fifo size, all-or-nothing, wrapping (head at 60) */
  vls_iov_t exact[3] = {{a, 50}, {a + 50, 50}, {a + 100, 28}};
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, exact, 3, 1), 128);
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, exact, 1, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, exact, 1, 0), -EAGAIN); /* partial mode when full */
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, sizeof out), 128);
  CHECK(same(out, 128, 0));

  /* partial: as much as fits, in order, cut inside a segment */
  CHECK_EQ(vls_fifo_enqueue(&x.p, a, 100), 100);
  vls_iov_t part[3] = {{a + 100, 10}, {a + 110, 10}, {a + 120, 40}};
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, part, 3, 0), 28);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 0);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, sizeof out), 128);
  CHECK(same(out, 128, 0));
  /* partial with a total larger than the fifo: takes size bytes */
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, huge, 3, 0), 128);
  CHECK_EQ(vls_fifo_dequeue(&x.c, out, sizeof out), 128);
  CHECK(same(out, 100, 0) && same(out + 100, 20, 0) && same(out + 120, 8, 0));

  /* nothing to write */
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, iov, 0, 1), 0);
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, iov, 0, 0), 0);
  vls_iov_t zeros[2] = {{a, 0}, {a, 0}};
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, zeros, 2, 1), 0);
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, zeros, 2, 0), 0);
  /* a total that cannot be an int return value is refused before anything is read */
  vls_iov_t bogus[2] = {{a, UINT32_MAX}, {a, 10}};
  int rv = vls_fifo_enqueue_segs(&x.p, bogus, 2, 1);
  CHECK(rv == -EINVAL || rv == -EMSGSIZE);
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, bogus, 2, 0), -EINVAL);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 0);
  fx_fini(&x);
}

static void test_event(void) {
  fx_t x;
  fx_init(&x, 64);
  uint8_t b[16] = {0};
  CHECK_EQ(vls_fifo_has_event(&x.c), 0);
  CHECK_EQ(vls_fifo_set_event(&x.p), 1); /* 0 -> 1: signal */
  CHECK_EQ(vls_fifo_has_event(&x.c), 1);
  CHECK_EQ(vls_fifo_set_event(&x.p), 0); /* already pending */
  CHECK_EQ(vls_fifo_set_event(&x.p), 0);
  CHECK_EQ(vls_fifo_unset_event(&x.c), 0); /* cleared, nothing readable */
  CHECK_EQ(vls_fifo_has_event(&x.c), 0);
  CHECK_EQ(vls_fifo_unset_event(&x.c), 0); /* idempotent */
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 7), 7);
  CHECK_EQ(vls_fifo_set_event(&x.p), 1);
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 5), 5);
  CHECK_EQ(vls_fifo_set_event(&x.p), 0); /* a batch of writes costs one signal */
  /* unset returns the readable bytes after clearing, so the consumer knows to keep reading */
  CHECK_EQ(vls_fifo_unset_event(&x.c), 12);
  CHECK_EQ(vls_fifo_has_event(&x.c), 0);
  CHECK_EQ(vls_fifo_set_event(&x.p), 1);
  CHECK_EQ(vls_fifo_drop_all(&x.c), 12);
  CHECK_EQ(vls_fifo_has_event(&x.c), 1); /* dequeue does not touch the flag */
  CHECK_EQ(vls_fifo_unset_event(&x.c), 0);
  /* Any non-zero value a peer leaves in the flag counts as pending. */
  atomic_store(&x.p.sh->has_event, 0xdeadu);
  CHECK_EQ(vls_fifo_has_event(&x.c), 1);
  CHECK_EQ(vls_fifo_set_event(&x.p), 0);
  CHECK_EQ(vls_fifo_unset_event(&x.c), 0);
  CHECK_EQ(vls_fifo_set_event(&x.p), 1);
  fx_fini(&x);
}

static void test_deq_ntf(void) {
  fx_t x;
  fx_init(&x, 256);
  uint8_t b[256] = {0};
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0); /* nobody asked */
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 256), 256);
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_want_deq_ntf(&x.p, 100), 0); /* returns the room right after arming */
  CHECK_EQ(atomic_load(&x.p.sh->deq_thresh), 100);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0); /* no room yet */
  CHECK_EQ(vls_fifo_dequeue(&x.c, b, 50), 50);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0); /* 50 < 100 */
  CHECK_EQ(vls_fifo_dequeue(&x.c, b, 49), 49);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0); /* 99 < 100 */
  CHECK_EQ(vls_fifo_drop(&x.c, 1), 1);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 1); /* exactly the threshold */
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0); /* fires once */
  CHECK_EQ(vls_fifo_drop(&x.c, 100), 100);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0); /* still once: the request was consumed */
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 200);

  /* Arming when the room is already there: the answer tells the producer so. */
  CHECK_EQ(vls_fifo_want_deq_ntf(&x.p, 150), 200);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 1); /* the request stands until answered */
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0);

  /* Threshold clamps: 0 -> 1, above size -> size. */
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 200), 200);
  CHECK_EQ(vls_fifo_want_deq_ntf(&x.p, 0), 0);
  CHECK_EQ(atomic_load(&x.p.sh->deq_thresh), 1);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0);
  CHECK_EQ(vls_fifo_drop(&x.c, 1), 1);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 1);
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 1), 1);
  CHECK_EQ(vls_fifo_want_deq_ntf(&x.p, 100000), 0);
  CHECK_EQ(atomic_load(&x.p.sh->deq_thresh), 256);
  CHECK_EQ(vls_fifo_drop(&x.c, 255), 255);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0); /* 255 free < 256 */
  CHECK_EQ(vls_fifo_drop(&x.c, 1), 1);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 1); /* empty: the whole fifo is free */
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0);

  /* A peer's odd threshold values are clamped on the consumer side too. */
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 256), 256);
  CHECK_EQ(vls_fifo_want_deq_ntf(&x.p, 10), 0);
  atomic_store(&x.p.sh->deq_thresh, 0); /* treated as size */
  CHECK_EQ(vls_fifo_drop(&x.c, 100), 100);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0);
  atomic_store(&x.p.sh->deq_thresh, 0xffffffffu); /* treated as size */
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0);
  CHECK_EQ(vls_fifo_drop_all(&x.c), 156);
  CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 1);
  fx_fini(&x);
}

static void test_eof(void) {
  fx_t x;
  fx_init(&x, 64);
  uint8_t b[64];
  fill(b, 64, 0);
  CHECK_EQ(vls_fifo_is_eof(&x.c), 0); /* empty but no eof */
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 10), 10);
  vls_fifo_set_eof(&x.p);
  CHECK_EQ(vls_fifo_is_eof(&x.c), 0); /* data before the eof is still unread */
  CHECK_EQ(vls_fifo_dequeue(&x.c, b, 4), 4);
  CHECK_EQ(vls_fifo_is_eof(&x.c), 0);
  CHECK_EQ(vls_fifo_peek(&x.c, 0, b, 6), 6);
  CHECK_EQ(vls_fifo_is_eof(&x.c), 0); /* peek consumes nothing */
  CHECK_EQ(vls_fifo_dequeue(&x.c, b, 64), 6);
  CHECK_EQ(vls_fifo_is_eof(&x.c), 1);
  CHECK_EQ(vls_fifo_is_eof(&x.c), 1); /* stays */
  CHECK_EQ(vls_fifo_dequeue(&x.c, b, 64), -EAGAIN);
  vls_fifo_set_eof(&x.p); /* idempotent */
  CHECK_EQ(vls_fifo_is_eof(&x.c), 1);
  fx_fini(&x);

  /* eof on a fifo that never carried data */
  fx_init(&x, 64);
  vls_fifo_set_eof(&x.p);
  CHECK_EQ(vls_fifo_is_eof(&x.c), 1);
  fx_fini(&x);
}

static void test_attach_validation(void) {
  fx_t x;
  fx_init(&x, 256);
  fx_unguard(&x); /* we attach at offsets outside the fifo below */
  vls_fifo_shared_t *sh = x.c.sh;
  vls_fifo_t f;
  uint64_t off = (uint64_t)x.off;

  /* offsets: unaligned, zero, inside the segment header, past the end */
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off + 8), -EINVAL);
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off + 1), -EINVAL);
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, 0), -EINVAL);
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, x.seg.size), -EINVAL);
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, x.seg.size - 64), -EINVAL); /* header would overrun */
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, UINT64_MAX - 63), -EINVAL);
  CHECK(f.sh == NULL); /* a failed attach leaves a zeroed view */

  /* magic */
  sh->magic = 0x12345678u;
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), -EPROTO);
  sh->magic = VLS_FIFO_MAGIC;
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), 0);

  /* size: zero, below the minimum, not a power of two, above the maximum */
  const uint32_t bad_sizes[] = {0, 1, 32, 63, 100, 255, 257, 3u << 10, 1u << 31, UINT32_MAX};
  for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
    sh->size = bad_sizes[i];
    CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), -EPROTO);
  }
  sh->size = 1u << 30; /* a valid fifo size whose data area does not fit in the segment */
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), -EPROTO);
  sh->size = 256;
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), 0);

  /* data_off outside the segment */
  uint64_t good_data = sh->data_off;
  const uint64_t bad_data[] = {0,
                               1,
                               x.seg.size,
                               x.seg.size - 255,
                               x.seg.size - 1,
                               x.seg.size + 4096,
                               1ull << 40,
                               UINT64_MAX,
                               UINT64_MAX - 255,
                               (uint64_t)INT64_MAX};
  for (size_t i = 0; i < sizeof bad_data / sizeof bad_data[0]; i++) {
    sh->data_off = bad_data[i];
    CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), -EPROTO);
  }
  sh->data_off = x.seg.size - 256; /* the last 256 bytes: inside, so accepted */
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), 0);
  CHECK(f.data + f.size == x.seg.base + x.seg.size);
  sh->data_off = good_data;

  /* indices: more bytes used than the fifo holds */
  atomic_store(&sh->head, 1000);
  atomic_store(&sh->tail, 1000 + 257);
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), -EPROTO);
  atomic_store(&sh->tail, 999); /* tail behind head: a huge used count */
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), -EPROTO);
  atomic_store(&sh->tail, 1000 + 256); /* exactly full is fine */
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), 0);
  CHECK_EQ(vls_fifo_max_dequeue(&f), 256);
  CHECK_EQ(vls_fifo_max_enqueue(&f), 0);
  atomic_store(&sh->head, 0);
  atomic_store(&sh->tail, 0);

  /* After attach the private copies rule: later changes of size/data_off are not looked at. */
  CHECK_EQ(vls_fifo_attach(&f, &x.seg, off), 0);
  fx_guard(&x);
  sh->size = 1u << 30;
  sh->data_off = UINT64_MAX;
  sh->magic = 0;
  uint8_t b[300];
  fill(b, 300, 0);
  CHECK_EQ(vls_fifo_enqueue(&f, b, 300), 256);
  CHECK_EQ(vls_fifo_dequeue(&f, b, 300), 256);
  CHECK(same(b, 256, 0));
  fx_unguard(&x);
  sh->magic = VLS_FIFO_MAGIC;
  sh->size = 256;
  sh->data_off = good_data;
  fx_fini(&x);
}

/* A hostile peer scribbles on the shared indices after we attached. Every call must answer -EIO
 * (or a result that stays inside the data area), never touch memory outside the fifo. */
static void test_hostile_peer(void) {
  fx_t x;
  fx_init(&x, 256);
  vls_fifo_shared_t *sh = x.c.sh;
  uint8_t b[1024];
  fill(b, sizeof b, 0);
  vls_iov_t iov[2] = {{b, 100}, {b + 100, 100}};
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 100), 100);
  CHECK_EQ(vls_fifo_drop(&x.c, 60), 60); /* head 60, tail 100 */

  /* tail out of range: every consumer call says -EIO, nothing is consumed */
  const uint32_t bad_rel[] = {257, 1000, 1u << 20, 1u << 31, UINT32_MAX, UINT32_MAX - 255};
  for (size_t i = 0; i < sizeof bad_rel / sizeof bad_rel[0]; i++) {
    uint32_t head = x.c.my_head;
    atomic_store(&sh->tail, head + bad_rel[i]);
    CHECK_EQ(vls_fifo_max_dequeue(&x.c), -EIO);
    CHECK_EQ(vls_fifo_dequeue(&x.c, b, sizeof b), -EIO);
    CHECK_EQ(vls_fifo_dequeue(&x.c, b, 0), -EIO);
    CHECK_EQ(vls_fifo_peek(&x.c, 0, b, sizeof b), -EIO);
    CHECK_EQ(vls_fifo_peek(&x.c, 5000, b, 1), -EIO);
    CHECK_EQ(vls_fifo_drop(&x.c, 10), -EIO);
    CHECK_EQ(vls_fifo_drop_all(&x.c), -EIO);
    CHECK_EQ(vls_fifo_unset_event(&x.c), -EIO);
    atomic_store(&sh->want_deq_ntf, 1);
    CHECK_EQ(vls_fifo_needs_deq_ntf(&x.c), 0);
    atomic_store(&sh->want_deq_ntf, 0);
    atomic_store(&sh->eof, 1);
    CHECK_EQ(vls_fifo_is_eof(&x.c), 0);
    atomic_store(&sh->eof, 0);
    CHECK_EQ(x.c.my_head, head); /* our own index did not move */
  }
  /* tail lying but in range (the peer claims the fifo is full of its garbage): reads stay inside */
  atomic_store(&sh->tail, x.c.my_head + 256);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 256);
  CHECK_EQ(vls_fifo_peek(&x.c, 255, b + 512, 10), 1);
  CHECK_EQ(vls_fifo_dequeue(&x.c, b + 512, 512), 256);
  atomic_store(&sh->tail, x.c.my_head - 1); /* now behind the head we just published */
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), -EIO);

  /* Resync both views on a sane state before attacking the producer. */
  atomic_store(&sh->head, 0);
  atomic_store(&sh->tail, 0);
  CHECK_EQ(vls_fifo_attach(&x.p, &x.seg, (uint64_t)x.off), 0);
  CHECK_EQ(vls_fifo_attach(&x.c, &x.seg, (uint64_t)x.off), 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 100), 100);

  /* head out of range: every producer call says -EIO, nothing is written */
  for (size_t i = 0; i < sizeof bad_rel / sizeof bad_rel[0]; i++) {
    uint32_t tail = x.p.my_tail;
    atomic_store(&sh->head, tail - bad_rel[i]);
    CHECK_EQ(vls_fifo_max_enqueue(&x.p), -EIO);
    CHECK_EQ(vls_fifo_enqueue(&x.p, b, 10), -EIO);
    CHECK_EQ(vls_fifo_enqueue_segs(&x.p, iov, 2, 1), -EIO);
    CHECK_EQ(vls_fifo_enqueue_segs(&x.p, iov, 2, 0), -EIO);
    CHECK_EQ(vls_fifo_want_deq_ntf(&x.p, 10), -EIO);
    CHECK_EQ(x.p.my_tail, tail);
    CHECK_EQ(atomic_load(&sh->tail), tail);
  }
  /* head ahead of tail by a little is also "more used than size" (wraps to a huge count) */
  atomic_store(&sh->head, x.p.my_tail + 1);
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 10), -EIO);
  /* head lying but in range: the producer may overwrite unread bytes, but only inside the area */
  atomic_store(&sh->head, x.p.my_tail);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 256);
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 1024), 256);
  atomic_store(&sh->head, x.p.my_tail - 256);
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 1), -EAGAIN);

  /* Random garbage in every shared field, many rounds: results stay in their documented ranges
   * and every access stays inside the fifo (ASan would report otherwise). */
  unsigned long long seed = 0x5eed1234abcdull;
  for (int round = 0; round < 20000; round++) {
    uint64_t r = vls_test_rand(&seed);
    uint32_t v = (uint32_t)(r >> 32);
    switch (r % 8) {
    case 0: atomic_store(&sh->head, v); break;
    case 1: atomic_store(&sh->tail, v); break;
    case 2: atomic_store(&sh->head, x.p.my_tail - (v % 300)); break;
    case 3: atomic_store(&sh->tail, x.c.my_head + (v % 300)); break;
    case 4: atomic_store(&sh->has_event, v & 3); break;
    case 5: atomic_store(&sh->want_deq_ntf, v & 3); break;
    case 6: atomic_store(&sh->deq_thresh, v); break;
    default: atomic_store(&sh->eof, v & 1); break;
    }
    uint32_t len = (uint32_t)(vls_test_rand(&seed) % 600);
    uint32_t ofs = (uint32_t)(vls_test_rand(&seed) % 600);
    int rv;
    int64_t rv64;
    rv = vls_fifo_enqueue(&x.p, b, len);
    CHECK(rv == -EIO || rv == -EAGAIN || (rv >= 0 && (uint32_t)rv <= VLS_MIN(len, 256u)));
    rv = vls_fifo_enqueue_segs(&x.p, iov, 2, (int)(r & 1));
    CHECK(rv == -EIO || rv == -EAGAIN || (rv >= 0 && rv <= 200));
    rv64 = vls_fifo_max_enqueue(&x.p);
    CHECK(rv64 == -EIO || (rv64 >= 0 && rv64 <= 256));
    rv64 = vls_fifo_want_deq_ntf(&x.p, len);
    CHECK(rv64 == -EIO || (rv64 >= 0 && rv64 <= 256));
    rv = vls_fifo_set_event(&x.p);
    CHECK(rv == 0 || rv == 1);
    rv = vls_fifo_peek(&x.c, ofs, b + 512, len > 512 ? 512 : len);
    CHECK(rv == -EIO || rv == -EAGAIN || (rv >= 0 && rv <= 256));
    rv = vls_fifo_dequeue(&x.c, b + 512, len > 512 ? 512 : len);
    CHECK(rv == -EIO || rv == -EAGAIN || (rv >= 0 && rv <= 256));
    rv = vls_fifo_drop(&x.c, ofs);
    CHECK(rv == -EIO || (rv >= 0 && rv <= 256));
    rv64 = vls_fifo_max_dequeue(&x.c);
    CHECK(rv64 == -EIO || (rv64 >= 0 && rv64 <= 256));
    rv = vls_fifo_needs_deq_ntf(&x.c);
    CHECK(rv == 0 || rv == 1);
    rv = vls_fifo_is_eof(&x.c);
    CHECK(rv == 0 || rv == 1);
    rv64 = vls_fifo_unset_event(&x.c);
    CHECK(rv64 == -EIO || (rv64 >= 0 && rv64 <= 256));
    if (round % 1000 == 999) { /* re-attach on whatever state is there now */
      vls_fifo_t v2;
      int a = vls_fifo_attach(&v2, &x.seg, (uint64_t)x.off);
      CHECK(a == 0 || a == -EPROTO);
      if (a == 0) CHECK(v2.data == x.c.data && v2.size == 256);
    }
  }

  /* Back to a sane state: everything works again. */
  atomic_store(&sh->head, 0);
  atomic_store(&sh->tail, 0);
  atomic_store(&sh->eof, 0);
  CHECK_EQ(vls_fifo_attach(&x.p, &x.seg, (uint64_t)x.off), 0);
  CHECK_EQ(vls_fifo_attach(&x.c, &x.seg, (uint64_t)x.off), 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 50), 50);
  uint8_t o[64];
  CHECK_EQ(vls_fifo_dequeue(&x.c, o, 64), 50);
  CHECK(same(o, 50, 0));
  fx_fini(&x);
}

/* The peer rewrites line 0 (magic, size, data_off) so that a later attach lands elsewhere: attach
 * either refuses or hands back a data area inside the segment. */
static void test_hostile_attach(void) {
  fx_t x;
  fx_init(&x, 4096);
  fx_unguard(&x);
  vls_fifo_shared_t *sh = x.c.sh;
  unsigned long long seed = 0xa77ac4ull;
  for (int i = 0; i < 20000; i++) {
    uint64_t r = vls_test_rand(&seed);
    sh->size = (r & 1) ? (uint32_t)(vls_test_rand(&seed) >> 32) : 1u << ((r >> 1) % 32);
    uint64_t d = vls_test_rand(&seed);
    switch ((r >> 8) % 4) {
    case 0: sh->data_off = d; break;
    case 1: sh->data_off = d % (x.seg.size + 8192); break;
    case 2: sh->data_off = x.seg.size - d % 8192; break;
    default: sh->data_off = (uint64_t)x.off + 64 * (d % 64); break;
    }
    vls_fifo_t f;
    int rv = vls_fifo_attach(&f, &x.seg, (uint64_t)x.off);
    if (rv == 0) {
      CHECK(vls_is_pow2(f.size) && f.size >= VLS_FIFO_MIN_SIZE && f.size <= VLS_FIFO_MAX_SIZE);
      CHECK(f.data >= x.seg.base + VLS_CACHE_LINE);
      CHECK(f.data + f.size <= x.seg.base + x.seg.size);
      CHECK_EQ(f.mask, f.size - 1);
    } else {
      CHECK_EQ(rv, -EPROTO);
    }
  }
  sh->size = 4096;
  sh->data_off = (uint64_t)x.off + sizeof *sh;
  fx_fini(&x);
}

/* Two workers take turns on one side of a fifo (a shared session, under its lock): each reloads
 * its private index with vls_fifo_resync() before it writes or reads. */
static void test_resync(void) {
  fx_t x;
  fx_init(&x, 128);
  uint8_t b[128], o[128];
  vls_fifo_t p2, c2;
  CHECK_EQ(vls_fifo_attach(&p2, &x.seg, (uint64_t)x.off), 0);
  CHECK_EQ(vls_fifo_attach(&c2, &x.seg, (uint64_t)x.off), 0);
  fill(b, 30, 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, b, 10), 10);
  CHECK_EQ(vls_fifo_resync(&p2), 0); /* p2 takes over after p */
  CHECK_EQ(p2.my_tail, 10);
  CHECK_EQ(vls_fifo_enqueue(&p2, b + 10, 10), 10);
  CHECK_EQ(vls_fifo_resync(&x.p), 0); /* and p after p2 */
  CHECK_EQ(vls_fifo_enqueue(&x.p, b + 20, 10), 10);
  CHECK_EQ(vls_fifo_dequeue(&x.c, o, 15), 15);
  CHECK_EQ(vls_fifo_resync(&c2), 0);
  CHECK_EQ(c2.my_head, 15);
  CHECK_EQ(vls_fifo_dequeue(&c2, o + 15, 128), 15);
  CHECK(same(o, 30, 0)); /* one stream, in order, nothing lost or repeated */
  CHECK_EQ(vls_fifo_resync(&x.c), 0);
  CHECK_EQ(vls_fifo_dequeue(&x.c, o, 1), -EAGAIN);
  CHECK_EQ(vls_fifo_max_enqueue(&x.p), 128);
  /* a resync is a no-op on an up-to-date view */
  CHECK_EQ(vls_fifo_resync(&x.p), 0);
  CHECK_EQ(x.p.my_tail, 30);
  CHECK_EQ(x.p.my_head, 30);
  /* corrupt indices are refused and the private ones stay as they were */
  vls_fifo_shared_t *sh = x.c.sh;
  atomic_store(&sh->tail, 30 + 129);
  CHECK_EQ(vls_fifo_resync(&x.c), -EIO);
  CHECK_EQ(x.c.my_head, 30);
  CHECK_EQ(x.c.my_tail, 30);
  atomic_store(&sh->tail, 29);
  CHECK_EQ(vls_fifo_resync(&x.p), -EIO);
  CHECK_EQ(x.p.my_tail, 30);
  atomic_store(&sh->tail, 30 + 128); /* exactly full is a legal state */
  CHECK_EQ(vls_fifo_resync(&x.c), 0);
  CHECK_EQ(vls_fifo_max_dequeue(&x.c), 128);
  atomic_store(&sh->tail, 30);
  CHECK_EQ(vls_fifo_resync(&x.c), 0);
  fx_fini(&x);
}

/* Zero-length segments and buffers with a NULL base (what an empty Node Buffer or an empty writev
 * entry looks like) must be accepted without undefined behaviour: memcpy(dst, NULL, 0) is UB and
 * UBSan flags it. */
static void test_null_zero_len(void) {
  fx_t x;
  fx_init(&x, 64);
  uint8_t b[16];
  fill(b, 16, 0);
  CHECK_EQ(vls_fifo_enqueue(&x.p, NULL, 0), 0);
  CHECK_EQ(vls_fifo_dequeue(&x.c, NULL, 0), 0);
  vls_iov_t iov[3] = {{b, 5}, {NULL, 0}, {b + 5, 5}};
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, iov, 3, 1), 10);
  CHECK_EQ(vls_fifo_enqueue_segs(&x.p, iov, 3, 0), 10);
  CHECK_EQ(vls_fifo_peek(&x.c, 0, NULL, 0), 0);
  CHECK_EQ(vls_fifo_dequeue(&x.c, b, 16), 16);
  CHECK(same(b, 10, 0) && same(b + 10, 6, 0));
  fx_fini(&x);
}

int main(void) {
  RUN(test_create_attach);
  RUN(test_basic);
  RUN(test_wrap);
  RUN(test_counter_wrap);
  RUN(test_peek);
  RUN(test_drop);
  RUN(test_enqueue_segs);
  RUN(test_event);
  RUN(test_deq_ntf);
  RUN(test_eof);
  RUN(test_attach_validation);
  RUN(test_hostile_peer);
  RUN(test_hostile_attach);
  RUN(test_resync);
  RUN(test_null_zero_len); /* last: under UBSan a failure here ends the program */
  TEST_DONE();
}
