#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "vls_test_ct.h"

static vls_worker_t *A, *B;
static uint32_t a_b, b_a;
static uint64_t lh, ch, sh, epa, epb;

static void setup(void) {
  A = mk_worker(1, 4096, 256);
  B = mk_worker(2, 4096, 256);
  link_workers(A, B, &a_b, &b_a);
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  CHECK_EQ(vls_epoll_create(A, &epa), 0);
  CHECK_EQ(vls_epoll_create(B, &epb), 0);
}
static void teardown(void) {
  vls_worker_destroy(A);
  vls_worker_destroy(B);
}

static int wait0(vls_worker_t *w, uint64_t ep, vls_epoll_event_t *evs) {
  return vls_epoll_wait(w, ep, evs, 16, 0);
}

static void test_level_triggered(void) {
  setup();
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN, .data = 42}, out[16];
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, &ev), 0);
  CHECK_EQ(wait0(A, epa, out), 0);
  CHECK_EQ(vls_write(B, ch, "abcdef", 6), 6);
  CHECK_EQ(wait0(A, epa, out), 1);
  CHECK_EQ(out[0].events, VLS_EPOLLIN);
  CHECK_EQ(out[0].data, 42);
  /* Level-triggered: reported again while data remains. */
  CHECK_EQ(wait0(A, epa, out), 1);
  char buf[8];
  CHECK_EQ(vls_read(A, sh, buf, 3), 3);
  CHECK_EQ(wait0(A, epa, out), 1);
  CHECK_EQ(vls_read(A, sh, buf, 8), 3);
  CHECK_EQ(wait0(A, epa, out), 0);
  CHECK_EQ(wait0(A, epa, out), 0);
  /* EPOLLOUT level-triggered: a writable session reports at once on ADD and keeps reporting. */
  ev.events = VLS_EPOLLOUT;
  CHECK_EQ(vls_epoll_ctl(B, epb, VLS_EPOLL_CTL_ADD, ch, &ev), 0);
  CHECK_EQ(wait0(B, epb, out), 1);
  CHECK_EQ(out[0].events, VLS_EPOLLOUT);
  CHECK_EQ(wait0(B, epb, out), 1);
  teardown();
}

static void test_edge_triggered(void) {
  setup();
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN | VLS_EPOLLET, .data = 7}, out[16];
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, &ev), 0);
  CHECK_EQ(vls_write(B, ch, "abc", 3), 3);
  CHECK_EQ(wait0(A, epa, out), 1);
  CHECK_EQ(wait0(A, epa, out), 0); /* no new transition */
  char buf[8];
  CHECK_EQ(vls_read(A, sh, buf, 1), 1);
  CHECK_EQ(vls_write(B, ch, "d", 1), 1); /* not drained yet: still the same edge */
  CHECK_EQ(wait0(A, epa, out), 0);
  CHECK_EQ(vls_read(A, sh, buf, 8), 3);
  CHECK_EQ(vls_read(A, sh, buf, 8), -EAGAIN); /* drained: the next byte is a new edge */
  CHECK_EQ(vls_write(B, ch, "e", 1), 1);
  CHECK_EQ(wait0(A, epa, out), 1);
  CHECK_EQ(out[0].data, 7);
  CHECK_EQ(wait0(A, epa, out), 0);
  /* EPOLLOUT edge: full -> room freed reports once. */
  ev.events = VLS_EPOLLOUT | VLS_EPOLLET;
  CHECK_EQ(vls_epoll_ctl(B, epb, VLS_EPOLL_CTL_ADD, ch, &ev), 0);
  CHECK_EQ(wait0(B, epb, out), 1);
  CHECK_EQ(wait0(B, epb, out), 0);
  char big[4096] = {0};
  int rv;
  while ((rv = vls_write(B, ch, big, sizeof big)) > 0) {
  }
  CHECK_EQ(rv, -EAGAIN);
  CHECK_EQ(wait0(B, epb, out), 0);
  while (vls_read(A, sh, big, sizeof big) > 0) {
  }
  CHECK_EQ(wait0(B, epb, out), 1);
  CHECK_EQ(out[0].events, VLS_EPOLLOUT);
  CHECK_EQ(wait0(B, epb, out), 0);
  teardown();
}

static void test_oneshot(void) {
  setup();
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN | VLS_EPOLLONESHOT, .data = 1}, out[16];
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, &ev), 0);
  CHECK_EQ(vls_write(B, ch, "abc", 3), 3);
  CHECK_EQ(wait0(A, epa, out), 1);
  CHECK_EQ(wait0(A, epa, out), 0); /* disarmed */
  char buf[8];
  CHECK_EQ(vls_read(A, sh, buf, 8), 3);
  CHECK_EQ(vls_read(A, sh, buf, 8), -EAGAIN);
  CHECK_EQ(vls_write(B, ch, "x", 1), 1);
  CHECK_EQ(wait0(A, epa, out), 0); /* still disarmed, even on a new edge */
  ev.data = 2;
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_MOD, sh, &ev), 0); /* re-arm: ready now */
  CHECK_EQ(wait0(A, epa, out), 1);
  CHECK_EQ(out[0].data, 2);
  CHECK_EQ(wait0(A, epa, out), 0);
  teardown();
}

static void test_rdhup_hup_err(void) {
  setup();
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN | VLS_EPOLLRDHUP, .data = 9}, out[16];
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, &ev), 0);
  CHECK_EQ(vls_shutdown(B, ch, VLS_SHUT_WR), 0);
  CHECK_EQ(wait0(A, epa, out), 1);
  CHECK_EQ(out[0].events, VLS_EPOLLIN | VLS_EPOLLRDHUP);
  /* Our side shuts too: both directions done -> EPOLLHUP, reported though not requested. */
  CHECK_EQ(vls_shutdown(A, sh, VLS_SHUT_WR), 0);
  CHECK_EQ(wait0(A, epa, out), 1);
  CHECK_EQ(out[0].events, VLS_EPOLLIN | VLS_EPOLLRDHUP | VLS_EPOLLHUP);
  teardown();

  setup();
  ev.events = VLS_EPOLLIN | VLS_EPOLLET; /* ERR and HUP come whether asked for or not */
  CHECK_EQ(vls_epoll_ctl(B, epb, VLS_EPOLL_CTL_ADD, ch, &ev), 0);
  CHECK_EQ(wait0(B, epb, out), 0);
  CHECK_EQ(vls_reset(A, sh), 0);
  CHECK_EQ(wait0(B, epb, out), 1);
  CHECK_EQ(out[0].events, VLS_EPOLLIN | VLS_EPOLLERR | VLS_EPOLLHUP);
  char c;
  CHECK_EQ(vls_read(B, ch, &c, 1), -ECONNRESET); /* reading the error clears EPOLLERR */
  ev.events = VLS_EPOLLIN | VLS_EPOLLOUT | VLS_EPOLLRDHUP;
  CHECK_EQ(vls_epoll_ctl(B, epb, VLS_EPOLL_CTL_MOD, ch, &ev), 0);
  CHECK_EQ(wait0(B, epb, out), 1);
  CHECK_EQ(out[0].events, VLS_EPOLLIN | VLS_EPOLLOUT | VLS_EPOLLRDHUP | VLS_EPOLLHUP);
  teardown();

  /* A failed connect reports ERR|HUP. */
  A = mk_worker(1, 4096, 64);
  uint64_t c2, ep;
  CHECK_EQ(vls_connect_start(A, &c2), 0);
  CHECK_EQ(vls_epoll_create(A, &ep), 0);
  ev.events = VLS_EPOLLOUT;
  CHECK_EQ(vls_epoll_ctl(A, ep, VLS_EPOLL_CTL_ADD, c2, &ev), 0);
  CHECK_EQ(wait0(A, ep, out), 0); /* connecting: nothing yet */
  CHECK_EQ(vls_connect_fail(A, c2, -ECONNREFUSED), 0);
  CHECK_EQ(wait0(A, ep, out), 1);
  CHECK(out[0].events & VLS_EPOLLERR);
  CHECK(out[0].events & VLS_EPOLLHUP);
  vls_worker_destroy(A);
}

static void test_listener_readiness(void) {
  setup();
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN, .data = 5}, out[16];
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, lh, &ev), 0);
  CHECK_EQ(wait0(A, epa, out), 0);
  uint64_t c2, ct, acc, s2;
  CHECK_EQ(vls_connect_start(B, &c2), 0);
  CHECK_EQ(vls_connect_ct(B, c2, b_a, &ct), 0);
  ct_share_segment(A, a_b, B, b_a);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, c2, ct, &acc), 0);
  CHECK_EQ(wait0(A, epa, out), 1);
  CHECK_EQ(out[0].data, 5);
  CHECK_EQ(vls_accept(A, lh, &s2), 0);
  CHECK_EQ(wait0(A, epa, out), 0);
  teardown();
}

static void test_ctl_errors(void) {
  setup();
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN, .data = 0};
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, &ev), 0);
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, &ev), -EEXIST);
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_MOD, lh, &ev), -ENOENT);
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_DEL, lh, NULL), -ENOENT);
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_DEL, sh, NULL), 0);
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_DEL, sh, NULL), -ENOENT);
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, 0x123456789ull, &ev), -EBADF);
  CHECK_EQ(vls_epoll_ctl(A, 0x123456789ull, VLS_EPOLL_CTL_ADD, sh, &ev), -EBADF);
  CHECK_EQ(vls_epoll_ctl(A, sh, VLS_EPOLL_CTL_ADD, lh, &ev), -EINVAL);  /* not an epoll */
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, epa, &ev), -EINVAL); /* itself */
  CHECK_EQ(vls_epoll_ctl(A, epa, 99, sh, &ev), -EINVAL);
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, NULL), -EINVAL);
  vls_epoll_event_t bad = {.events = 0x08000000u, .data = 0};
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, &bad), -EINVAL);
  vls_epoll_event_t out[4];
  CHECK_EQ(vls_epoll_wait(A, epa, out, 0, 0), -EINVAL);
  CHECK_EQ(vls_epoll_wait(A, sh, out, 4, 0), -EINVAL);
  CHECK_EQ(vls_epoll_wait(A, 0x123456789ull, out, 4, 0), -EBADF);
  /* A closed session leaves every set it was in; a closed set is a bad handle. */
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, &ev), 0);
  CHECK_EQ(vls_write(B, ch, "x", 1), 1);
  vls_worker_poll(A);
  CHECK_EQ(vls_reset(A, sh), 0);
  CHECK_EQ(vls_epoll_wait(A, epa, out, 4, 0), 0);
  CHECK_EQ(vls_close(A, epa), 0);
  CHECK_EQ(vls_epoll_wait(A, epa, out, 4, 0), -EBADF);
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, lh, &ev), -EBADF);
  teardown();
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *late_writer(void *arg) {
  (void)arg;
  struct timespec d = {0, 50 * 1000 * 1000};
  nanosleep(&d, NULL);
  CHECK_EQ(vls_write(B, ch, "late", 4), 4);
  return NULL;
}

/* Timeouts: 0 returns at once, a finite timeout expires with 0 events, and an infinite wait wakes
 * when the peer writes (from another thread: B is only used by that thread meanwhile). */
static void test_timeouts(void) {
  setup();
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN, .data = 3}, out[4];
  CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, sh, &ev), 0);
  CHECK_EQ(vls_epoll_wait(A, epa, out, 4, 0), 0);
  int64_t t0 = now_ms();
  CHECK_EQ(vls_epoll_wait(A, epa, out, 4, 30), 0);
  CHECK(now_ms() - t0 >= 29); /* it did wait (a lower bound, not a speed claim) */
  pthread_t t;
  pthread_create(&t, NULL, late_writer, NULL);
  CHECK_EQ(vls_epoll_wait(A, epa, out, 4, -1), 1);
  CHECK_EQ(out[0].data, 3);
  pthread_join(t, NULL);
  pthread_create(&t, NULL, late_writer, NULL);
  char buf[8];
  CHECK_EQ(vls_read(A, sh, buf, 8), 4);
  CHECK_EQ(vls_epoll_wait(A, epa, out, 4, 5000), 1);
  pthread_join(t, NULL);
  teardown();
}

/* A wait looks at ready sessions only: 10,000 idle registrations cost nothing per wait. */
static void test_cost_is_o_ready(void) {
  A = mk_worker(1, 4096, 1 << 15);
  B = mk_worker(2, 4096, 1 << 15);
  link_workers(A, B, &a_b, &b_a);
  CHECK_EQ(vls_listen(A, 16, &lh), 0);
  CHECK_EQ(vls_epoll_create(A, &epa), 0);
  enum { N = 10000 };
  static uint64_t chs[N], shs[N];
  for (int i = 0; i < N; i++) {
    ct_connect(A, lh, a_b, B, b_a, &chs[i], &shs[i]);
    vls_epoll_event_t ev = {.events = VLS_EPOLLIN, .data = (uint64_t)i};
    CHECK_EQ(vls_epoll_ctl(A, epa, VLS_EPOLL_CTL_ADD, shs[i], &ev), 0);
  }
  vls_epoll_event_t out[64];
  CHECK_EQ(vls_epoll_wait(A, epa, out, 64, 0), 0);
  vls_worker_stats_t s0, s1;
  vls_worker_stats(A, &s0);
  for (int round = 0; round < 100; round++) {
    int k = (round * 97) % N;
    CHECK_EQ(vls_write(B, chs[k], "z", 1), 1);
    CHECK_EQ(vls_epoll_wait(A, epa, out, 64, 0), 1);
    CHECK_EQ(out[0].data, (uint64_t)k);
    char c;
    CHECK_EQ(vls_read(A, shs[k], &c, 1), 1);
  }
  vls_worker_stats(A, &s1);
  /* Each round examines the one ready item (and once more to drop it): at most 2 per round. */
  CHECK(s1.ep_visits - s0.ep_visits <= 200);
  teardown();
}

/* Two processes: checksummed random-size transfer both ways, driven only by epoll waits. */
static void test_two_process_epoll(void) {
  A = mk_worker(1, 8192, 1024);
  B = mk_worker(2, 8192, 1024);
  link_workers(A, B, &a_b, &b_a);
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  const uint64_t total = 4u << 20;
  pid_t pid = fork();
  if (pid == 0) {
    /* child: B echoes everything back, then closes when it sees EOF */
    alarm(60);
    uint64_t ep;
    CHECK_EQ(vls_epoll_create(B, &ep), 0);
    vls_epoll_event_t ev = {.events = VLS_EPOLLIN | VLS_EPOLLOUT | VLS_EPOLLET, .data = 1}, out[4];
    CHECK_EQ(vls_epoll_ctl(B, ep, VLS_EPOLL_CTL_ADD, ch, &ev), 0);
    static char buf[65536];
    uint32_t have = 0, off = 0;
    int eof = 0;
    while (!eof || have) {
      CHECK(vls_epoll_wait(B, ep, out, 4, 10000) > 0);
      for (;;) {
        if (have) {
          int w = vls_write(B, ch, buf + off, have);
          if (w == -EAGAIN) break;
          CHECK(w > 0);
          off += (uint32_t)w;
          have -= (uint32_t)w;
          if (have) continue;
        }
        if (eof) break;
        int r = vls_read(B, ch, buf, sizeof buf);
        if (r == -EAGAIN) break;
        CHECK(r >= 0);
        if (r == 0) {
          eof = 1;
          break;
        }
        have = (uint32_t)r;
        off = 0;
      }
    }
    CHECK_EQ(vls_close(B, ch), 0);
    _exit(0);
  }
  uint64_t ep;
  CHECK_EQ(vls_epoll_create(A, &ep), 0);
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN | VLS_EPOLLOUT, .data = 1}, out[4];
  CHECK_EQ(vls_epoll_ctl(A, ep, VLS_EPOLL_CTL_ADD, sh, &ev), 0);
  unsigned long long seed_w = 12345, seed_r = 12345, rnd = 99;
  uint64_t sent = 0, recvd = 0;
  static unsigned char wbuf[20000], rbuf[20000];
  int shut = 0, eof = 0;
  while (!eof) {
    CHECK(vls_epoll_wait(A, ep, out, 4, 10000) > 0);
    if (sent < total) {
      uint32_t n = (uint32_t)(vls_test_rand(&rnd) % sizeof wbuf) + 1;
      if (n > total - sent) n = (uint32_t)(total - sent);
      unsigned long long save = seed_w;
      for (uint32_t i = 0; i < n; i++) wbuf[i] = (unsigned char)vls_test_rand(&seed_w);
      int w = vls_write(A, sh, wbuf, n);
      if (w < 0) {
        CHECK_EQ(w, -EAGAIN);
        seed_w = save;
      } else {
        /* rewind the generator to the bytes actually taken */
        seed_w = save;
        for (int i = 0; i < w; i++) vls_test_rand(&seed_w);
        sent += (uint64_t)w;
      }
    } else if (!shut) {
      CHECK_EQ(vls_shutdown(A, sh, VLS_SHUT_WR), 0);
      shut = 1;
    }
    for (;;) {
      uint32_t n = (uint32_t)(vls_test_rand(&rnd) % sizeof rbuf) + 1;
      int r = vls_read(A, sh, rbuf, n);
      if (r == -EAGAIN) break;
      CHECK(r >= 0);
      if (r == 0) {
        eof = 1;
        break;
      }
      for (int i = 0; i < r; i++) CHECK_EQ(rbuf[i], (unsigned char)vls_test_rand(&seed_r));
      recvd += (uint64_t)r;
    }
  }
  CHECK_EQ(recvd, total);
  int status;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  teardown();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(test_level_triggered);
  RUN(test_edge_triggered);
  RUN(test_oneshot);
  RUN(test_rdhup_hup_err);
  RUN(test_listener_readiness);
  RUN(test_ctl_errors);
  RUN(test_timeouts);
  RUN(test_cost_is_o_ready);
  RUN(test_two_process_epoll);
  TEST_DONE();
}
