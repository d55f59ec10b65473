/* Two processes, one fifo: a forked producer streams tens of megabytes in random chunk sizes, the
 * parent consumes and checks every byte against the same seeded stream it regenerates locally.
 *
 * Wake-ups are real: the consumer sleeps in poll() on an eventfd when the fifo is empty and is
 * woken through vls_fifo_set_event()/vls_fifo_unset_event(); the producer sleeps on a second
 * eventfd when the fifo is full and is woken through vls_fifo_want_deq_ntf()/
 * vls_fifo_needs_deq_ntf(). A sleeper only ever returns on an eventfd event (the poll timeout is a
 * watchdog, not a retry), so a lost wake-up shows up as a failure after 10 s, never as a slow pass.
 * The stream ends with eof. The seed is printed; VLS_SEED=<n> replays it. */
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vls_fifo.h"
#include "vls_test.h"

#define WATCHDOG_MS 10000

typedef struct cfg {
  const char *name;
  uint32_t fifo_size;
  uint64_t total;       /* bytes to stream */
  uint32_t max_chunk;   /* producer chunk sizes in [1, max_chunk] */
  uint32_t max_read;    /* consumer read sizes in [1, max_read] */
  int consumer_naps;    /* 1 in N consumptions naps a little (lets the fifo fill up); 0: never */
  int producer_naps;    /* 1 in N chunks naps a little (lets the consumer go to sleep); 0: never */
  int spin;             /* retries on empty/full before arming and sleeping (more overlap, more
                         * races between the flag and the data); 0: sleep at once */
} cfg_t;

/* Counters both processes write, in an anonymous shared mapping. */
typedef struct stats {
  uint64_t enq_calls, full, prod_sleeps, prod_wakes, data_signals;
  uint64_t deq_calls, cons_sleeps, room_signals, raced_unset;
} stats_t;

static stats_t *g_st;
static uint64_t g_cons_sleeps, g_prod_sleeps, g_room_signals; /* over all cases */

/* The byte stream: 8 bytes per xorshift step, regenerated identically on both sides. */
typedef struct gen {
  unsigned long long s;
  uint64_t pos;
  uint64_t cur;
} gen_t;

static void gen_bytes(gen_t *g, uint8_t *b, uint32_t n) {
  for (uint32_t i = 0; i < n; i++, g->pos++) {
    if (g->pos % 8 == 0) g->cur = vls_test_rand(&g->s);
    b[i] = (uint8_t)(g->cur >> (8 * (g->pos % 8)));
  }
}

static void signal_efd(int fd) {
  uint64_t one = 1;
  ssize_t w;
  do {
    w = write(fd, &one, sizeof one);
  } while (w < 0 && errno == EINTR);
  CHECK(w == (ssize_t)sizeof one);
}

/* Sleep until `fd` is signalled. Returns only on a real event; the timeout is a watchdog. `peer`
 * (if > 0) is a child whose early death is reported instead of waiting out the watchdog. */
static void wait_efd(int fd, const char *who, pid_t peer, int *peer_status, int *peer_reaped) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  int waited = 0;
  for (;;) {
    int n = poll(&pfd, 1, 100);
    if (n > 0) {
      uint64_t v;
      ssize_t r = read(fd, &v, sizeof v);
      CHECK(r == (ssize_t)sizeof v || (r < 0 && errno == EAGAIN));
      return;
    }
    if (n < 0) {
      CHECK(errno == EINTR);
      continue;
    }
    waited += 100;
    if (peer > 0 && !*peer_reaped && waitpid(peer, peer_status, WNOHANG) == peer) {
      *peer_reaped = 1;
      fprintf(stderr, "%s: peer exited (status 0x%x) while we slept\n", who, *peer_status);
      /* a clean exit leaves its last wake-up in the eventfd: keep waiting out the watchdog */
      if (!WIFEXITED(*peer_status) || WEXITSTATUS(*peer_status) != 0) exit(1);
    }
    if (waited >= WATCHDOG_MS) {
      fprintf(stderr, "%s: no wake-up after %d ms (lost wake-up?)\n", who, waited);
      exit(1);
    }
  }
}

static uint32_t rand_size(unsigned long long *rng, uint32_t max) {
  uint64_t r = vls_test_rand(rng);
  switch (r % 4) {
  case 0: return 1 + (uint32_t)((r >> 8) % VLS_MIN(max, 64u)); /* small */
  case 1: return max - (uint32_t)((r >> 8) % VLS_MIN(max, 16u)); /* near the top */
  default: return 1 + (uint32_t)((r >> 8) % max);
  }
}

static void producer(const cfg_t *cfg, int seg_fd, uint64_t off, int efd_data, int efd_room,
                     unsigned long long seed) {
  /* Map the segment again from its fd: a different address, as in a separate process. */
  vls_segment_t seg;
  int fd = dup(seg_fd);
  CHECK(fd >= 0);
  CHECK_EQ(vls_segment_attach(&seg, fd), 0);
  vls_fifo_t p;
  CHECK_EQ(vls_fifo_attach(&p, &seg, off), 0);
  gen_t g = {.s = seed, .pos = 0, .cur = 0};
  unsigned long long rng = seed ^ 0x9e3779b97f4a7c15ull;
  uint8_t *buf = malloc(cfg->max_chunk);
  CHECK(buf != NULL);
  uint64_t sent = 0;
  int spins = 0;
  while (sent < cfg->total) {
    uint32_t len = rand_size(&rng, cfg->max_chunk);
    if (len > cfg->total - sent) len = (uint32_t)(cfg->total - sent);
    gen_bytes(&g, buf, len);
    if (cfg->producer_naps && vls_test_rand(&rng) % (uint64_t)cfg->producer_naps == 0)
      usleep((useconds_t)(vls_test_rand(&rng) % 300));
    uint32_t done = 0;
    while (done < len) {
      uint32_t rem = len - done;
      uint64_t r = vls_test_rand(&rng);
      int mode = (int)(r % 3);
      int aon = mode == 2 && rem <= cfg->fifo_size;
      int rv;
      if (mode == 0) {
        rv = vls_fifo_enqueue(&p, buf + done, rem);
      } else {
        /* split what is left into up to 4 segments */
        vls_iov_t iov[4];
        uint32_t k = 1 + (uint32_t)((r >> 8) % 4), at = 0;
        for (uint32_t i = 0; i < k; i++) {
          uint32_t l = i == k - 1 ? rem - at : (uint32_t)(vls_test_rand(&rng) % (rem - at + 1));
          iov[i].base = buf + done + at;
          iov[i].len = l;
          at += l;
        }
        rv = vls_fifo_enqueue_segs(&p, iov, k, aon);
      }
      g_st->enq_calls++;
      if (rv > 0) {
        CHECK(aon ? (uint32_t)rv == rem : (uint32_t)rv <= rem);
        done += (uint32_t)rv;
        spins = 0;
        if (vls_fifo_set_event(&p)) {
          g_st->data_signals++;
          signal_efd(efd_data);
        }
        continue;
      }
      if (rv != -EAGAIN) fprintf(stderr, "producer: enqueue answered %d\n", rv);
      CHECK_EQ(rv, -EAGAIN);
      g_st->full++;
      if (spins++ < cfg->spin) continue;
      spins = 0;
      /* Full (or, all-or-nothing, not enough room): ask to be told when there is. */
      uint32_t need = aon ? rem : 1 + (uint32_t)((r >> 16) % VLS_MIN(rem, cfg->fifo_size));
      int64_t room = vls_fifo_want_deq_ntf(&p, need);
      CHECK(room >= 0);
      if ((uint64_t)room >= need) continue; /* the room came while we armed */
      g_st->prod_sleeps++;
      wait_efd(efd_room, "producer", 0, NULL, NULL);
      g_st->prod_wakes++;
    }
    sent += len;
  }
  vls_fifo_set_eof(&p);
  if (vls_fifo_set_event(&p)) {
    g_st->data_signals++;
    signal_efd(efd_data);
  }
  free(buf);
  vls_segment_detach(&seg);
}

static void run_case(const cfg_t *cfg, unsigned long long seed) {
  vls_segment_t seg;
  uint64_t seg_size = VLS_MAX(vls_fifo_footprint(cfg->fifo_size) * 2, 256u * 1024);
  CHECK_EQ(vls_segment_create(&seg, "fifo-2proc", seg_size), 0);
  int64_t off = vls_fifo_create(&seg, cfg->fifo_size);
  CHECK(off > 0);
  int efd_data = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  int efd_room = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  CHECK(efd_data >= 0 && efd_room >= 0);
  memset(g_st, 0, sizeof *g_st);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);

  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(120); /* last resort */
    producer(cfg, seg.fd, (uint64_t)off, efd_data, efd_room, seed);
    _exit(0);
  }

  /* Consumer. */
  vls_fifo_t c;
  CHECK_EQ(vls_fifo_attach(&c, &seg, (uint64_t)off), 0);
  gen_t g = {.s = seed, .pos = 0, .cur = 0};
  unsigned long long rng = seed ^ 0x5851f42d4c957f2dull;
  uint8_t *buf = malloc(cfg->max_read);
  uint8_t *want = malloc(cfg->max_read);
  CHECK(buf && want);
  uint64_t got = 0;
  int status = 0, reaped = 0, spins = 0;
  for (;;) {
    uint32_t len = rand_size(&rng, cfg->max_read);
    uint64_t r = vls_test_rand(&rng);
    int rv;
    if (r % 4 == 0) { /* peek, peek the second half again at an offset, then drop */
      rv = vls_fifo_peek(&c, 0, buf, len);
      if (rv > 1) {
        uint32_t half = (uint32_t)rv / 2;
        CHECK_EQ(vls_fifo_peek(&c, half, want, (uint32_t)rv - half), rv - (int)half);
        CHECK(memcmp(want, buf + half, (size_t)rv - half) == 0);
      }
      if (rv > 0) CHECK_EQ(vls_fifo_drop(&c, (uint32_t)rv), rv);
    } else {
      rv = vls_fifo_dequeue(&c, buf, len);
    }
    g_st->deq_calls++;
    if (rv > 0) {
      gen_bytes(&g, want, (uint32_t)rv);
      if (memcmp(buf, want, (size_t)rv) != 0) {
        uint32_t i = 0;
        while (buf[i] == want[i]) i++;
        fprintf(stderr, "%s: stream mismatch at byte %llu: got %u want %u (seed %llu)\n", cfg->name,
                (unsigned long long)(got + i), buf[i], want[i], seed);
        CHECK(0);
      }
      got += (uint32_t)rv;
      spins = 0;
      CHECK(got <= cfg->total);
      if (vls_fifo_needs_deq_ntf(&c)) {
        g_st->room_signals++;
        signal_efd(efd_room);
      }
      if (cfg->consumer_naps && vls_test_rand(&rng) % (uint64_t)cfg->consumer_naps == 0)
        usleep((useconds_t)(vls_test_rand(&rng) % 300));
      continue;
    }
    if (rv != -EAGAIN) fprintf(stderr, "consumer: dequeue answered %d\n", rv);
    CHECK_EQ(rv, -EAGAIN);
    if (spins++ < cfg->spin) continue;
    spins = 0;
    /* Empty: clear the flag, look again, and only then sleep. */
    int64_t now = vls_fifo_unset_event(&c);
    CHECK(now >= 0);
    if (now > 0) {
      g_st->raced_unset++;
      continue;
    }
    if (vls_fifo_is_eof(&c)) break;
    g_st->cons_sleeps++;
    wait_efd(efd_data, "consumer", pid, &status, &reaped);
  }
  CHECK_EQ(got, cfg->total);
  CHECK_EQ(g.pos, cfg->total);
  CHECK_EQ(vls_fifo_max_dequeue(&c), 0);
  CHECK_EQ(vls_fifo_dequeue(&c, buf, 1), -EAGAIN);

  if (!reaped) CHECK_EQ(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "%s: producer status 0x%x\n", cfg->name, status);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  fprintf(stderr,
          "  %s: %llu bytes through a %u-byte fifo in %.2f s; producer %llu enqueues, %llu full, "
          "%llu sleeps; consumer %llu dequeues, %llu sleeps, %llu raced unsets; %llu data signals, "
          "%llu room signals\n",
          cfg->name, (unsigned long long)got, cfg->fifo_size, secs,
          (unsigned long long)g_st->enq_calls, (unsigned long long)g_st->full,
          (unsigned long long)g_st->prod_sleeps, (unsigned long long)g_st->deq_calls,
          (unsigned long long)g_st->cons_sleeps, (unsigned long long)g_st->raced_unset,
          (unsigned long long)g_st->data_signals, (unsigned long long)g_st->room_signals);
  g_cons_sleeps += g_st->cons_sleeps;
  g_prod_sleeps += g_st->prod_sleeps;
  g_room_signals += g_st->room_signals;
  free(buf);
  free(want);
  close(efd_data);
  close(efd_room);
  CHECK_EQ(vls_fifo_destroy(&seg, (uint64_t)off), 0);
  vls_segment_detach(&seg);
}

int main(void) {
  const char *s = getenv("VLS_SEED");
  unsigned long long seed =
      s && *s ? strtoull(s, NULL, 0)
              : ((unsigned long long)time(NULL) << 20) ^ (unsigned long long)getpid();
  if (seed == 0) seed = 1;
  fprintf(stderr, "test_fifo_2proc: seed %llu (VLS_SEED=%llu to replay)\n", seed, seed);
  alarm(180); /* last resort: never hang the suite */
  g_st = mmap(NULL, sizeof *g_st, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(g_st != MAP_FAILED);

  const cfg_t cases[] = {
      /* big fifo, big chunks, a consumer that naps now and then so the fifo also fills up */
      {"large", 1u << 20, 64ull << 20, 256u << 10, 192u << 10, 64, 0, 0},
      /* 4 KB fifo, chunks up to twice its size: the full/notify path on nearly every chunk */
      {"small", 4096, 32ull << 20, 8192, 6000, 0, 0, 0},
      /* same, both sides spinning a little before they sleep: they overlap, so the flag and the
       * notification requests race with the data all the time */
      {"small-spin", 4096, 32ull << 20, 8192, 6000, 0, 0, 300},
      /* 4 KB fifo, a producer that naps: the consumer goes to sleep on empty over and over */
      {"small-slow-producer", 4096, 8ull << 20, 3000, 8192, 0, 16, 0},
      /* the smallest fifo: every byte is a wrap away */
      {"tiny", 64, 4ull << 20, 200, 100, 0, 0, 0},
      {"tiny-spin", 64, 2ull << 20, 200, 100, 0, 0, 100},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_case(&cases[i], seed + i);
    fprintf(stderr, "  ok %s\n", cases[i].name);
  }
  /* The sleeping paths really ran (the small fifos make them all but certain, case by case). */
  CHECK(g_cons_sleeps > 0);
  CHECK(g_prod_sleeps > 0);
  CHECK(g_room_signals > 0);
  munmap(g_st, sizeof *g_st);
  TEST_DONE();
}
