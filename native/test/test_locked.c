#include <signal.h>
#include <sys/wait.h>

#include "vls_locked.h"
#include "vls_test_ct.h"

static void test_listener_bitmap(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "l", 1 << 20), 0);
  int64_t off = vls_listener_shared_create(&seg, 1);
  CHECK(off > 0);
  vls_listener_shared_t *l = vls_listener_shared_get(&seg, (uint64_t)off);
  CHECK(l != NULL);
  CHECK(vls_listener_shared_get(&seg, 64 * 3) == NULL);
  CHECK_EQ(vls_listener_owner(l), 1);
  CHECK_EQ(vls_listener_subscribe(l, 3), 0);
  CHECK_EQ(vls_listener_subscribe(l, 5), 0);
  CHECK_EQ(vls_listener_subscribe(l, VLS_MAX_WORKERS), -EINVAL);
  int seen[8] = {0};
  for (int i = 0; i < 30; i++) {
    int k = vls_listener_pick(l);
    CHECK(k == 1 || k == 3 || k == 5);
    seen[k]++;
  }
  CHECK_EQ(seen[1], 10); /* round-robin: an even spread */
  CHECK_EQ(seen[3], 10);
  CHECK_EQ(seen[5], 10);
  CHECK_EQ(vls_listener_set_active(l, 3, 0), 0);
  for (int i = 0; i < 10; i++) CHECK(vls_listener_pick(l) != 3);
  CHECK_EQ(vls_listener_set_active(l, 4, 1), -ENOENT);
  CHECK_EQ(vls_listener_unsubscribe(l, 1), 2);
  CHECK_EQ(vls_listener_owner(l), 3); /* ownership moves to the lowest subscriber */
  CHECK_EQ(vls_listener_unsubscribe(l, 1), -ENOENT);
  CHECK_EQ(vls_listener_unsubscribe(l, 5), 1);
  CHECK_EQ(vls_listener_pick(l), -ECONNREFUSED); /* 3 is subscribed but inactive */
  CHECK_EQ(vls_listener_set_active(l, 3, 1), 0);
  CHECK_EQ(vls_listener_pick(l), 3);
  CHECK_EQ(vls_listener_unsubscribe(l, 3), 0);
  CHECK_EQ(vls_listener_owner(l), -ENOENT);
  CHECK_EQ(vls_listener_shared_destroy(&seg, (uint64_t)off), 0);
  CHECK(vls_listener_shared_get(&seg, (uint64_t)off) == NULL);
  vls_segment_detach(&seg);
}

/* Several processes subscribe to one listener; one dies holding the lock; the rest go on. */
static void test_listener_across_processes(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "l", 1 << 20), 0);
  int64_t off = vls_listener_shared_create(&seg, 0);
  vls_listener_shared_t *l = vls_listener_shared_get(&seg, (uint64_t)off);
  pid_t kids[4];
  for (int i = 0; i < 4; i++) {
    kids[i] = fork();
    if (kids[i] == 0) {
      CHECK_EQ(vls_listener_subscribe(l, (uint32_t)(10 + i)), 0);
      if (i == 3) {
        vls_shm_mutex_lock(&l->lock);
        _exit(0); /* dies inside the lock */
      }
      _exit(0);
    }
  }
  for (int i = 0; i < 4; i++) waitpid(kids[i], NULL, 0);
  CHECK_EQ(vls_listener_is_subscribed(l, 12), 1);
  int n = 0;
  for (int i = 0; i < 5; i++) n += vls_listener_pick(l) >= 0;
  CHECK_EQ(n, 5);
  CHECK_EQ(vls_listener_unsubscribe(l, 10), 4);
  vls_segment_detach(&seg);
}

/* A session shared by two writer processes: with the VLS lock each record enters whole and the
 * writers' indices stay consistent; the reader sees every record intact, each writer in order. */
typedef struct rec {
  uint32_t writer, seq;
  uint64_t check;
  char pad[48];
} rec_t;

static void test_shared_session_two_writers(void) {
  vls_worker_t *A = mk_worker(1, 4096, 4096), *B = mk_worker(2, 4096, 4096);
  uint32_t a_b, b_a;
  link_workers(A, B, &a_b, &b_a);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  CHECK_EQ(vls_session_share(B, ch), 0);
  vls_session_info_t info;
  CHECK_EQ(vls_session_info(B, ch, &info), 0);
  CHECK(info.flags & VLS_SF_SHARED);
  enum { N = 20000 };
  pid_t kids[2];
  for (uint32_t k = 0; k < 2; k++) {
    kids[k] = fork();
    if (kids[k] == 0) {
      alarm(60);
      for (uint32_t i = 0; i < N; i++) {
        rec_t r = {.writer = k, .seq = i, .check = (uint64_t)k * 1000003u + i * 7919u};
        vls_iov_t iov[2] = {{&r, 16}, {r.pad, sizeof r.pad}};
        while (vls_writev(B, ch, iov, 2, 1) == -EAGAIN) sched_yield();
      }
      _exit(0);
    }
  }
  uint32_t next[2] = {0, 0};
  uint64_t got = 0;
  alarm(60);
  while (got < 2 * N) {
    rec_t r;
    int rv = vls_peek(A, sh, &r, sizeof r);
    if (rv == -EAGAIN || (rv > 0 && rv < (int)sizeof r)) {
      vls_worker_poll(A);
      continue;
    }
    CHECK_EQ(rv, sizeof r);
    CHECK_EQ(vls_read(A, sh, &r, sizeof r), sizeof r);
    CHECK(r.writer < 2);
    CHECK_EQ(r.seq, next[r.writer]);
    CHECK_EQ(r.check, (uint64_t)r.writer * 1000003u + r.seq * 7919u);
    next[r.writer]++;
    got++;
  }
  for (int k = 0; k < 2; k++) {
    int st;
    waitpid(kids[k], &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  alarm(0);
  vls_worker_destroy(A);
  vls_worker_destroy(B);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(test_listener_bitmap);
  RUN(test_listener_across_processes);
  RUN(test_shared_session_two_writers);
  TEST_DONE();
}
