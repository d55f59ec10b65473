/* Unit and multi-process tests of the MPSC message queue (vls_mq.h). */
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vls_mq.h"
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

/* Poison the segment except [lo, lo + len): calls on the queue must not stray outside it. */
static void guard(vls_segment_t *seg, const void *lo, uint64_t len) {
  uint8_t *b = seg->base, *l = (uint8_t *)lo, *h = l + len;
  ASAN_POISON_MEMORY_REGION(b, (size_t)(l - b));
  ASAN_POISON_MEMORY_REGION(h, (size_t)(b + seg->size - h));
}
static void unguard(vls_segment_t *seg) { ASAN_UNPOISON_MEMORY_REGION(seg->base, seg->size); }

static uint64_t mq_bytes(uint32_t elt, uint32_t n) {
  return sizeof(vls_mq_shared_t) + (uint64_t)elt * n;
}

static int new_efd(void) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  CHECK(fd >= 0);
  return fd;
}

/* The eventfd counter, read and reset (0 when it was not signalled). */
static uint64_t efd_take(int fd) {
  uint64_t v = 0;
  ssize_t r = read(fd, &v, sizeof v);
  if (r < 0) {
    CHECK(errno == EAGAIN);
    return 0;
  }
  CHECK(r == (ssize_t)sizeof v);
  return v;
}

static void test_create_attach(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "mq-test", SEG_SIZE), 0);
  CHECK_EQ(vls_mq_create(&seg, 0, 16), -EINVAL);
  CHECK_EQ(vls_mq_create(&seg, 12, 16), -EINVAL);  /* not a multiple of 8 */
  CHECK_EQ(vls_mq_create(&seg, 264, 16), -EINVAL); /* above VLS_MQ_MAX_ELT */
  CHECK_EQ(vls_mq_create(&seg, 64, 0), -EINVAL);
  CHECK_EQ(vls_mq_create(&seg, 64, 1), -EINVAL);
  CHECK_EQ(vls_mq_create(&seg, 64, 3), -EINVAL);
  CHECK_EQ(vls_mq_create(&seg, 64, 100), -EINVAL);
  CHECK_EQ(vls_mq_create(&seg, 64, VLS_MQ_MAX_ELTS * 2), -EINVAL);
  CHECK(vls_mq_create(&seg, 256, VLS_MQ_MAX_ELTS) < 0); /* valid, but larger than the segment */
  CHECK_EQ(sizeof(vls_mq_shared_t) % VLS_CACHE_LINE, 0);

  int64_t off = vls_mq_create(&seg, 64, 16);
  CHECK(off > 0);
  CHECK_EQ(off % VLS_CACHE_LINE, 0);
  int64_t off2 = vls_mq_create(&seg, 8, 2); /* the smallest queue */
  CHECK(off2 > 0);
  vls_mq_t mq;
  CHECK_EQ(vls_mq_attach(&mq, &seg, (uint64_t)off, 7), 0);
  CHECK_EQ(mq.elt_size, 64);
  CHECK_EQ(mq.n_elts, 16);
  CHECK_EQ(mq.mask, 15);
  CHECK_EQ(mq.efd, 7);
  CHECK_EQ(vls_mq_depth(&mq), 0);
  CHECK(mq.data >= seg.base && mq.data + 64 * 16 <= seg.base + seg.size);
  vls_mq_shared_t *sh = mq.sh;
  uint64_t o = (uint64_t)off;

  /* offsets */
  CHECK_EQ(vls_mq_attach(&mq, &seg, o + 8, -1), -EINVAL);
  CHECK(mq.sh == NULL);
  CHECK_EQ(mq.efd, -1);
  CHECK_EQ(vls_mq_attach(&mq, &seg, 0, -1), -EINVAL);
  CHECK_EQ(vls_mq_attach(&mq, &seg, seg.size, -1), -EINVAL);
  CHECK_EQ(vls_mq_attach(&mq, &seg, seg.size - 64, -1), -EINVAL);
  CHECK_EQ(vls_mq_attach(&mq, &seg, UINT64_MAX - 63, -1), -EINVAL);
  /* magic */
  sh->magic ^= 1;
  CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), -EPROTO);
  sh->magic ^= 1;
  /* elt_size */
  const uint32_t bad_elt[] = {0, 1, 7, 12, 264, 1024, UINT32_MAX};
  for (size_t i = 0; i < sizeof bad_elt / sizeof bad_elt[0]; i++) {
    sh->elt_size = bad_elt[i];
    CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), -EPROTO);
  }
  sh->elt_size = 256; /* valid, and 256 * 16 bytes from data_off are still inside the segment */
  CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), 0);
  sh->elt_size = 64;
  /* n_elts */
  const uint32_t bad_n[] = {0, 1, 3, 17, VLS_MQ_MAX_ELTS * 2, 1u << 31, UINT32_MAX};
  for (size_t i = 0; i < sizeof bad_n / sizeof bad_n[0]; i++) {
    sh->n_elts = bad_n[i];
    CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), -EPROTO);
  }
  sh->n_elts = VLS_MQ_MAX_ELTS; /* valid count, but 64 MB of slots do not fit in the segment */
  CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), -EPROTO);
  sh->n_elts = 16;
  /* data_off */
  uint64_t good = sh->data_off;
  const uint64_t bad_off[] = {0, 1, seg.size, seg.size - 64 * 16 + 1, seg.size + 4096, 1ull << 40,
                              UINT64_MAX, UINT64_MAX - 64 * 16 + 1};
  for (size_t i = 0; i < sizeof bad_off / sizeof bad_off[0]; i++) {
    sh->data_off = bad_off[i];
    CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), -EPROTO);
  }
  sh->data_off = seg.size - 64 * 16; /* the last slots of the segment: inside, accepted */
  CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), 0);
  CHECK(mq.data + 64 * 16 == seg.base + seg.size);
  sh->data_off = good;
  /* indices */
  atomic_store(&sh->head, 100);
  atomic_store(&sh->tail, 117);
  CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), -EPROTO);
  atomic_store(&sh->tail, 99);
  CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), -EPROTO);
  atomic_store(&sh->tail, 116);
  CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), 0);
  CHECK_EQ(mq.my_head, 100);
  CHECK_EQ(vls_mq_depth(&mq), 16);
  atomic_store(&sh->head, 0);
  atomic_store(&sh->tail, 0);

  /* destroyed */
  CHECK_EQ(vls_mq_destroy(&seg, o), 0);
  CHECK_EQ(vls_mq_attach(&mq, &seg, o, -1), -EPROTO);
  CHECK_EQ(vls_mq_destroy(&seg, o), -EINVAL);
  CHECK_EQ(vls_mq_destroy(&seg, 0), -EINVAL);
  CHECK_EQ(vls_mq_destroy(&seg, (uint64_t)off2), 0);
  vls_segment_detach(&seg);
}

typedef struct msg {
  uint32_t producer;
  uint32_t seq;
  uint64_t check;
  uint8_t fill[48];
} msg_t;

static uint64_t msg_check(uint32_t producer, uint32_t seq) {
  unsigned long long s = ((unsigned long long)producer << 32 | seq) * 2654435761ull + 1;
  return vls_test_rand(&s);
}

static void test_send_recv(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "mq-test", SEG_SIZE), 0);
  int64_t off = vls_mq_create(&seg, 64, 8);
  CHECK(off > 0);
  int efd = new_efd();
  vls_mq_t prod, cons;
  CHECK_EQ(vls_mq_attach(&prod, &seg, (uint64_t)off, efd), 0);
  CHECK_EQ(vls_mq_attach(&cons, &seg, (uint64_t)off, efd), 0);
  guard(&seg, prod.sh, mq_bytes(64, 8));
  uint8_t out[64 * 16];

  CHECK_EQ(vls_mq_recv_batch(&cons, out, 4), 0); /* empty */
  CHECK_EQ(vls_mq_depth(&cons), 0);
  /* dirty every slot first, so the zero fill of short messages below is really checked */
  uint8_t ff[64];
  memset(ff, 0xff, sizeof ff);
  for (int i = 0; i < 8; i++) CHECK(vls_mq_send(&prod, ff, 64) >= 0);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 16), 8);
  CHECK_EQ(vls_mq_ready_to_sleep(&cons), 1);
  CHECK_EQ(efd_take(efd), 1);
  /* full-size message, short message (zero-filled), empty message */
  uint8_t m[80];
  for (int i = 0; i < 80; i++) m[i] = (uint8_t)(i + 1);
  CHECK_EQ(vls_mq_send(&prod, m, 64), 1);
  CHECK_EQ(vls_mq_send(&prod, m, 5), 0);
  CHECK_EQ(vls_mq_send(&prod, m, 0), 0);
  CHECK_EQ(vls_mq_send(&prod, m, 65), -EINVAL); /* longer than elt_size */
  CHECK_EQ(vls_mq_send(&prod, m, UINT32_MAX), -EINVAL);
  CHECK_EQ(vls_mq_depth(&cons), 3);
  memset(out, 0xee, sizeof out);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 0), 0);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 2), 2);
  CHECK(memcmp(out, m, 64) == 0);
  CHECK(memcmp(out + 64, m, 5) == 0);
  for (int i = 5; i < 64; i++) CHECK_EQ(out[64 + i], 0);
  CHECK_EQ(out[128], 0xee); /* only max messages were written */
  CHECK_EQ(vls_mq_depth(&cons), 1);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 16), 1);
  for (int i = 0; i < 64; i++) CHECK_EQ(out[i], 0);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 16), 0);

  /* Ordered numbered messages across several laps of the ring, batches of varying size. */
  uint32_t next_send = 0, next_recv = 0;
  for (int round = 0; round < 500; round++) {
    uint32_t burst = (uint32_t)(round % 9) + 1;
    for (uint32_t i = 0; i < burst; i++) {
      msg_t mm = {.producer = 0, .seq = next_send, .check = msg_check(0, next_send)};
      int rv = vls_mq_send(&prod, &mm, sizeof mm);
      if (rv == -EAGAIN) {
        CHECK_EQ(vls_mq_depth(&cons), 8);
        break;
      }
      CHECK(rv == 0 || rv == 1);
      next_send++;
    }
    int n = vls_mq_recv_batch(&cons, out, (uint32_t)(round % 5) + 1);
    CHECK(n >= 0);
    for (int i = 0; i < n; i++) {
      msg_t mm;
      memcpy(&mm, out + 64 * i, sizeof mm);
      CHECK_EQ(mm.seq, next_recv);
      CHECK_EQ(mm.check, msg_check(0, next_recv));
      next_recv++;
    }
    CHECK_EQ(vls_mq_depth(&cons), next_send - next_recv);
  }
  CHECK(next_recv > 100);
  unguard(&seg);
  close(efd);
  vls_segment_detach(&seg);
}

static void test_full(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "mq-test", SEG_SIZE), 0);
  int64_t off = vls_mq_create(&seg, 16, 4);
  CHECK(off > 0);
  vls_mq_t prod, cons;
  CHECK_EQ(vls_mq_attach(&prod, &seg, (uint64_t)off, -1), 0);
  CHECK_EQ(vls_mq_attach(&cons, &seg, (uint64_t)off, -1), 0);
  guard(&seg, prod.sh, mq_bytes(16, 4));
  uint8_t out[16 * 4];
  for (uint32_t i = 0; i < 4; i++) {
    uint64_t v = i;
    CHECK(vls_mq_send(&prod, &v, sizeof v) >= 0);
  }
  CHECK_EQ(atomic_load(&prod.sh->n_full), 0);
  uint64_t v = 99;
  CHECK_EQ(vls_mq_send(&prod, &v, sizeof v), -EAGAIN);
  CHECK_EQ(vls_mq_send(&prod, &v, sizeof v), -EAGAIN);
  CHECK_EQ(atomic_load(&prod.sh->n_full), 2);
  CHECK_EQ(vls_mq_depth(&cons), 4);
  /* nothing was overwritten: the four originals come out in order */
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 1), 1);
  uint64_t got;
  memcpy(&got, out, 8);
  CHECK_EQ(got, 0);
  v = 4;
  CHECK(vls_mq_send(&prod, &v, sizeof v) >= 0); /* one slot freed, one message fits */
  CHECK_EQ(vls_mq_send(&prod, &v, sizeof v), -EAGAIN);
  CHECK_EQ(atomic_load(&prod.sh->n_full), 3);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 4), 4);
  for (uint32_t i = 0; i < 4; i++) {
    memcpy(&got, out + 16 * i, 8);
    CHECK_EQ(got, i + 1);
  }
  CHECK_EQ(vls_mq_depth(&cons), 0);
  unguard(&seg);
  vls_segment_detach(&seg);
}

/* The producer writes the eventfd only for the message that makes the queue non-empty. */
static void test_eventfd(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "mq-test", SEG_SIZE), 0);
  int64_t off = vls_mq_create(&seg, 32, 8);
  CHECK(off > 0);
  int efd = new_efd();
  vls_mq_t prod, prod2, cons;
  CHECK_EQ(vls_mq_attach(&prod, &seg, (uint64_t)off, efd), 0);
  CHECK_EQ(vls_mq_attach(&prod2, &seg, (uint64_t)off, efd), 0);
  CHECK_EQ(vls_mq_attach(&cons, &seg, (uint64_t)off, efd), 0);
  guard(&seg, prod.sh, mq_bytes(32, 8));
  uint8_t out[32 * 8];
  uint64_t v = 1;

  /* A fresh queue's consumer counts as asleep: the first message wakes it, the rest of the batch
   * costs no syscall. */
  CHECK_EQ(efd_take(efd), 0);
  CHECK_EQ(vls_mq_send(&prod, &v, 8), 1);
  CHECK_EQ(vls_mq_send(&prod, &v, 8), 0);
  CHECK_EQ(vls_mq_send(&prod2, &v, 8), 0);
  CHECK_EQ(efd_take(efd), 1);
  CHECK_EQ(atomic_load(&prod.sh->n_signals), 1);
  /* Going to sleep with messages still queued: refused, and producers still need not signal. */
  CHECK_EQ(vls_mq_ready_to_sleep(&cons), 0);
  CHECK_EQ(vls_mq_send(&prod, &v, 8), 0);
  CHECK_EQ(efd_take(efd), 0);
  /* partially drained: still awake */
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 2), 2);
  CHECK_EQ(vls_mq_send(&prod, &v, 8), 0);
  CHECK_EQ(efd_take(efd), 0);
  /* drained and asleep: the next message signals once, whichever producer sends it */
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 8), 3);
  CHECK_EQ(vls_mq_ready_to_sleep(&cons), 1);
  CHECK_EQ(vls_mq_send(&prod2, &v, 8), 1);
  CHECK_EQ(vls_mq_send(&prod, &v, 8), 0);
  CHECK_EQ(efd_take(efd), 1);
  CHECK_EQ(atomic_load(&prod.sh->n_signals), 2);
  /* an awake consumer (draining) costs its producers nothing */
  vls_mq_awake(&cons);
  /* a full answer does not signal */
  for (int i = 0; i < 6; i++) CHECK_EQ(vls_mq_send(&prod, &v, 8), 0);
  CHECK_EQ(vls_mq_send(&prod, &v, 8), -EAGAIN);
  CHECK_EQ(efd_take(efd), 0);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 8), 8);
  /* Several sleeps before the consumer reads the counter add up. */
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(vls_mq_ready_to_sleep(&cons), 1);
    CHECK_EQ(vls_mq_send(&prod, &v, 8), 1);
    CHECK_EQ(vls_mq_recv_batch(&cons, out, 8), 1);
  }
  CHECK_EQ(vls_mq_eventfd_clear(&cons), 5);
  CHECK_EQ(vls_mq_eventfd_clear(&cons), 0); /* non-blocking, nothing pending */
  CHECK_EQ(atomic_load(&prod.sh->n_signals), 7);
  CHECK_EQ(vls_mq_ready_to_sleep(&cons), 1);
  /* without an eventfd the transition is still reported */
  vls_mq_t quiet;
  CHECK_EQ(vls_mq_attach(&quiet, &seg, (uint64_t)off, -1), 0);
  CHECK_EQ(vls_mq_send(&quiet, &v, 8), 1);
  CHECK_EQ(efd_take(efd), 0);
  CHECK_EQ(vls_mq_eventfd_clear(&quiet), 0);
  unguard(&seg);
  close(efd);
  vls_segment_detach(&seg);
}

/* Corrupt shared indices: every call answers -EIO (or a safe value), nothing outside the queue is
 * touched (the rest of the segment is poisoned under ASan). */
static void test_corrupt(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "mq-test", SEG_SIZE), 0);
  int64_t off = vls_mq_create(&seg, 64, 16);
  CHECK(off > 0);
  int efd = new_efd();
  vls_mq_t prod, cons;
  CHECK_EQ(vls_mq_attach(&prod, &seg, (uint64_t)off, efd), 0);
  CHECK_EQ(vls_mq_attach(&cons, &seg, (uint64_t)off, efd), 0);
  guard(&seg, prod.sh, mq_bytes(64, 16));
  vls_mq_shared_t *sh = prod.sh;
  uint8_t out[64 * 32], m[64] = {1, 2, 3};
  for (int i = 0; i < 5; i++) CHECK(vls_mq_send(&prod, m, 64) >= 0);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 2), 2); /* head 2, tail 5 */
  efd_take(efd);

  const uint32_t bad[] = {17, 100, 1u << 20, 1u << 31, UINT32_MAX, UINT32_MAX - 15};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    /* tail far ahead of head (or behind it): producer and consumer both refuse */
    atomic_store(&sh->tail, cons.my_head + bad[i]);
    CHECK_EQ(vls_mq_send(&prod, m, 64), -EIO);
    CHECK_EQ(vls_mq_recv_batch(&cons, out, 32), -EIO);
    CHECK_EQ(vls_mq_depth(&cons), -EIO);
    CHECK_EQ(vls_mq_ready_to_sleep(&cons), 0); /* not empty as far as it can tell: keep going */
    CHECK_EQ(cons.my_head, 2);
    CHECK_EQ(atomic_load(&sh->tail), cons.my_head + bad[i]); /* the producer wrote nothing */
    atomic_store(&sh->tail, 5);
    /* head scribbled (the producer reads it from shared memory) */
    atomic_store(&sh->head, 5 - bad[i]);
    CHECK_EQ(vls_mq_send(&prod, m, 64), -EIO);
    CHECK_EQ(atomic_load(&sh->tail), 5);
    CHECK_EQ(vls_mq_depth(&cons), 3); /* the consumer keeps its own head */
    atomic_store(&sh->head, 2);
  }
  CHECK_EQ(efd_take(efd), 0);
  CHECK_EQ(atomic_load(&sh->n_full), 0); /* -EIO is not counted as full */
  /* lying but in range: the consumer reads the slots (garbage) inside the queue only */
  atomic_store(&sh->tail, cons.my_head + 16);
  CHECK_EQ(vls_mq_depth(&cons), 16);
  CHECK_EQ(vls_mq_send(&prod, m, 64), -EAGAIN);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 32), 16);
  CHECK_EQ(vls_mq_ready_to_sleep(&cons), 1);
  /* random garbage, many rounds */
  unsigned long long seed = 0xc0ffee;
  for (int round = 0; round < 20000; round++) {
    uint64_t r = vls_test_rand(&seed);
    uint32_t val = (uint32_t)(r >> 32);
    switch (r % 4) {
    case 0: atomic_store(&sh->tail, val); break;
    case 1: atomic_store(&sh->head, val); break;
    case 2: atomic_store(&sh->tail, cons.my_head + val % 40); break;
    default: atomic_store(&sh->head, atomic_load(&sh->tail) - val % 40); break;
    }
    int rv = vls_mq_send(&prod, m, (uint32_t)(r >> 8) % 65);
    CHECK(rv == 0 || rv == 1 || rv == -EAGAIN || rv == -EIO);
    rv = vls_mq_recv_batch(&cons, out, (uint32_t)(r >> 16) % 33);
    CHECK(rv == -EIO || (rv >= 0 && rv <= 16));
    int64_t d = vls_mq_depth(&cons);
    CHECK(d == -EIO || (d >= 0 && d <= 16));
    rv = vls_mq_ready_to_sleep(&cons);
    CHECK(rv == 0 || rv == 1);
    efd_take(efd);
  }
  /* resynced, it works again */
  atomic_store(&sh->head, 0);
  atomic_store(&sh->tail, 0);
  CHECK_EQ(vls_mq_attach(&cons, &seg, (uint64_t)off, efd), 0);
  CHECK_EQ(vls_mq_ready_to_sleep(&cons), 1);
  CHECK_EQ(vls_mq_send(&prod, m, 64), 1);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 32), 1);
  CHECK(memcmp(out, m, 64) == 0);
  /* line 0 rewritten after attach: the private copies rule */
  sh->elt_size = 8;
  sh->n_elts = 1u << 20;
  sh->data_off = UINT64_MAX;
  CHECK_EQ(vls_mq_ready_to_sleep(&cons), 1);
  CHECK_EQ(vls_mq_send(&prod, m, 64), 1);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 32), 1);
  CHECK(memcmp(out, m, 64) == 0);
  unguard(&seg);
  close(efd);
  vls_segment_detach(&seg);
}

/* Several forked producers send numbered messages at once; the consumer sleeps on the eventfd
 * between batches. Every message arrives exactly once and each producer's order is kept. */
#define N_PRODUCERS 4

static void producer_proc(int seg_fd, uint64_t off, int efd, uint32_t id, uint32_t n) {
  vls_segment_t seg;
  int fd = dup(seg_fd);
  CHECK(fd >= 0);
  CHECK_EQ(vls_segment_attach(&seg, fd), 0); /* our own mapping, at our own address */
  vls_mq_t mq;
  CHECK_EQ(vls_mq_attach(&mq, &seg, off, efd), 0);
  unsigned long long rng = 0x1234567ull + id;
  for (uint32_t seq = 0; seq < n;) {
    msg_t m = {.producer = id, .seq = seq, .check = msg_check(id, seq)};
    memset(m.fill, (int)(seq & 0xff), sizeof m.fill);
    uint32_t len = 16 + (uint32_t)(vls_test_rand(&rng) % (sizeof m - 16 + 1));
    int rv = vls_mq_send(&mq, &m, len);
    if (rv == -EAGAIN) {
      if (vls_test_rand(&rng) % 4 == 0) usleep(20);
      else sched_yield();
      continue;
    }
    CHECK(rv == 0 || rv == 1);
    seq++;
  }
  vls_segment_detach(&seg);
}

static void multiprocess(uint32_t n_elts, uint32_t N_MSGS) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "mq-test", SEG_SIZE), 0);
  int64_t off = vls_mq_create(&seg, 64, n_elts);
  CHECK(off > 0);
  int efd = new_efd();
  vls_mq_t cons;
  CHECK_EQ(vls_mq_attach(&cons, &seg, (uint64_t)off, efd), 0);
  pid_t pids[N_PRODUCERS];
  fflush(NULL);
  for (uint32_t i = 0; i < N_PRODUCERS; i++) {
    pids[i] = fork();
    CHECK(pids[i] >= 0);
    if (pids[i] == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      alarm(60);
      producer_proc(seg.fd, (uint64_t)off, efd, i, N_MSGS);
      _exit(0);
    }
  }
  uint32_t next[N_PRODUCERS] = {0};
  uint64_t total = 0, sleeps = 0, wakes = 0, batches = 0;
  uint8_t out[64 * 64];
  while (total < (uint64_t)N_PRODUCERS * N_MSGS) {
    int n = vls_mq_recv_batch(&cons, out, 1 + (uint32_t)(total % 64));
    CHECK(n >= 0);
    if (n > 0) {
      batches++;
      for (int k = 0; k < n; k++) {
        msg_t m;
        memcpy(&m, out + 64 * k, sizeof m);
        CHECK(m.producer < N_PRODUCERS);
        if (m.seq != next[m.producer])
          fprintf(stderr, "producer %u: got seq %u, want %u\n", m.producer, m.seq,
                  next[m.producer]);
        CHECK_EQ(m.seq, next[m.producer]);
        CHECK_EQ(m.check, msg_check(m.producer, m.seq));
        next[m.producer]++;
        total++;
      }
      continue;
    }
    if (!vls_mq_ready_to_sleep(&cons)) continue;
    /* Sleep until a producer signals; the timeout is a watchdog, not a retry. */
    sleeps++;
    struct pollfd pfd = {.fd = efd, .events = POLLIN};
    int waited = 0, pr;
    while ((pr = poll(&pfd, 1, 100)) == 0) {
      waited += 100;
      if (waited >= 10000) {
        fprintf(stderr, "consumer: no wake-up after 10 s, %llu messages received (depth %lld)\n",
                (unsigned long long)total, (long long)vls_mq_depth(&cons));
        CHECK(0);
      }
    }
    CHECK(pr == 1 || (pr < 0 && errno == EINTR));
    if (pr == 1) {
      CHECK(vls_mq_eventfd_clear(&cons) > 0);
      wakes++;
    }
  }
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 64), 0);
  for (uint32_t i = 0; i < N_PRODUCERS; i++) {
    CHECK_EQ(next[i], N_MSGS);
    int st;
    CHECK_EQ(waitpid(pids[i], &st, 0), pids[i]);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 64), 0); /* nothing extra came after the last one */
  fprintf(stderr,
          "  %d producers x %u messages, %u slots: %llu batches, %llu sleeps, %llu wakes, "
          "%llu full answers, %llu signals\n",
          N_PRODUCERS, N_MSGS, n_elts, (unsigned long long)batches, (unsigned long long)sleeps,
          (unsigned long long)wakes, (unsigned long long)atomic_load(&cons.sh->n_full),
          (unsigned long long)atomic_load(&cons.sh->n_signals));
  close(efd);
  vls_segment_detach(&seg);
}

static void test_multiprocess(void) {
  multiprocess(64, 100000); /* mostly a sleeping consumer woken per batch */
  multiprocess(4, 30000);   /* a tiny ring: producers hit full all the time */
}

/* A producer that dies holding the producer lock does not wedge the queue. */
static void test_dead_producer(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "mq-test", SEG_SIZE), 0);
  int64_t off = vls_mq_create(&seg, 64, 8);
  CHECK(off > 0);
  int efd = new_efd();
  vls_mq_t prod, cons;
  CHECK_EQ(vls_mq_attach(&prod, &seg, (uint64_t)off, efd), 0);
  CHECK_EQ(vls_mq_attach(&cons, &seg, (uint64_t)off, efd), 0);
  uint8_t out[64 * 8];
  uint64_t v = 42;
  CHECK_EQ(vls_mq_send(&prod, &v, 8), 1);
  efd_take(efd);

  /* 1. The holder exits inside the lock. */
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    if (vls_shm_mutex_lock(&prod.sh->plock) < 0) _exit(2);
    _exit(0); /* dies holding the lock */
  }
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  v = 43;
  /* the lock is recovered; the queue was not empty, but an extra wake-up after taking over a dead
   * holder's lock is allowed (it may have published without signalling) */
  int rv = vls_mq_send(&prod, &v, 8);
  CHECK(rv == 0 || rv == 1);
  efd_take(efd);
  v = 44;
  CHECK_EQ(vls_mq_send(&prod, &v, 8), 0);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 8), 3);
  for (int i = 0; i < 3; i++) {
    memcpy(&v, out + 64 * i, 8);
    CHECK_EQ(v, 42 + (uint64_t)i);
  }

  /* 2. The holder is killed with SIGKILL while it waits inside the lock. */
  int pfd[2];
  CHECK(pipe(pfd) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    if (vls_shm_mutex_lock(&prod.sh->plock) < 0) _exit(2);
    char c = 'L';
    if (write(pfd[1], &c, 1) != 1) _exit(3);
    for (;;) pause();
  }
  close(pfd[1]);
  char c;
  CHECK_EQ(read(pfd[0], &c, 1), 1); /* it holds the lock now */
  close(pfd[0]);
  CHECK(kill(pid, SIGKILL) == 0);
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  CHECK_EQ(vls_mq_ready_to_sleep(&cons), 1);
  v = 45;
  CHECK_EQ(vls_mq_send(&prod, &v, 8), 1); /* recovered, and the wake-up works */
  CHECK_EQ(efd_take(efd), 1);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 8), 1);
  memcpy(&v, out, 8);
  CHECK_EQ(v, 45);

  /* 3. Another process then sends through the recovered lock, many times. */
  fflush(NULL);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    for (uint64_t i = 0; i < 6; i++) {
      uint64_t w = 100 + i;
      if (vls_mq_send(&prod, &w, 8) < 0) _exit(4);
    }
    _exit(0);
  }
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 8), 6);
  for (int i = 0; i < 6; i++) {
    memcpy(&v, out + 64 * i, 8);
    CHECK_EQ(v, 100 + (uint64_t)i);
  }
  close(efd);
  vls_segment_detach(&seg);
}

/* A producer killed inside the lock after it published its message (the tail store is the last
 * thing vls_mq_send() does under the lock) but before it could signal. The consumer had gone to
 * sleep on an empty queue. The header promises that a producer killed inside the lock "does not
 * wedge the queue": the next producer must wake the consumer, or it sleeps forever with messages
 * queued (every later send sees a non-empty queue and skips the signal). */
static void test_dead_producer_after_publish(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "mq-test", SEG_SIZE), 0);
  int64_t off = vls_mq_create(&seg, 64, 8);
  CHECK(off > 0);
  int efd = new_efd();
  vls_mq_t prod, cons;
  CHECK_EQ(vls_mq_attach(&prod, &seg, (uint64_t)off, efd), 0);
  CHECK_EQ(vls_mq_attach(&cons, &seg, (uint64_t)off, efd), 0);
  CHECK_EQ(vls_mq_ready_to_sleep(&cons), 1); /* the consumer goes to sleep */
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    /* what vls_mq_send() does up to its tail store, then death before unlock and signal */
    if (vls_shm_mutex_lock(&prod.sh->plock) < 0) _exit(2);
    uint32_t tail = atomic_load(&prod.sh->tail);
    uint64_t w = 7;
    memcpy(prod.data + (uint64_t)(tail & prod.mask) * prod.elt_size, &w, sizeof w);
    atomic_store_explicit(&prod.sh->tail, tail + 1, memory_order_release);
    _exit(0);
  }
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK_EQ(efd_take(efd), 0); /* the dead producer never signalled */
  uint64_t v = 8;
  int rv = vls_mq_send(&prod, &v, 8);
  CHECK(rv >= 0);
  /* somebody must wake the sleeping consumer now */
  uint64_t woken = efd_take(efd);
  if (woken == 0)
    fprintf(stderr, "    consumer left asleep with %lld messages queued (send returned %d)\n",
            (long long)vls_mq_depth(&cons), rv);
  CHECK(woken > 0);
  uint8_t out[64 * 8];
  CHECK_EQ(vls_mq_recv_batch(&cons, out, 8), 2);
  close(efd);
  vls_segment_detach(&seg);
}

/* A zero-length message with a NULL pointer must not be undefined behaviour (memcpy(p, NULL, 0)
 * is, and UBSan reports it). */
static void test_null_zero_len(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "mq-test", SEG_SIZE), 0);
  int64_t off = vls_mq_create(&seg, 8, 4);
  CHECK(off > 0);
  vls_mq_t mq;
  CHECK_EQ(vls_mq_attach(&mq, &seg, (uint64_t)off, -1), 0);
  CHECK_EQ(vls_mq_send(&mq, NULL, 0), 1);
  uint8_t out[8] = {1};
  CHECK_EQ(vls_mq_recv_batch(&mq, out, 1), 1);
  CHECK_EQ(out[0], 0);
  vls_segment_detach(&seg);
}

/* Tests that show a known core problem run in a child each, so one failure does not hide the
 * other; the program still fails if any of them does. */
static int g_isolated_failures;

static void run_isolated(void (*fn)(void), const char *name) {
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    fn();
    _exit(0);
  }
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    fprintf(stderr, "  ok %s\n", name);
  } else {
    fprintf(stderr, "  FAILED %s (status 0x%x)\n", name, st);
    g_isolated_failures++;
  }
}

int main(void) {
  alarm(120); /* last resort: never hang the suite */
  RUN(test_create_attach);
  RUN(test_send_recv);
  RUN(test_full);
  RUN(test_eventfd);
  RUN(test_corrupt);
  RUN(test_multiprocess);
  RUN(test_dead_producer);
  run_isolated(test_dead_producer_after_publish, "test_dead_producer_after_publish");
  run_isolated(test_null_zero_len, "test_null_zero_len");
  CHECK_EQ(g_isolated_failures, 0);
  TEST_DONE();
}
