#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "vls_session_internal.h"
#include "vls_test_ct.h"

static vls_worker_t *A, *B;
static uint32_t a_b, b_a;

static void setup(uint32_t fifo, uint32_t mq) {
  A = mk_worker(1, fifo, mq);
  B = mk_worker(2, fifo, mq);
  link_workers(A, B, &a_b, &b_a);
}
static void teardown(void) {
  vls_worker_destroy(A);
  vls_worker_destroy(B);
}

static void test_states_and_data(void) {
  setup(4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  CHECK_EQ(state_of(A, lh), VLS_SS_LISTENING);
  CHECK_EQ(vls_connect_start(B, &ch), 0);
  CHECK_EQ(state_of(B, ch), VLS_SS_CONNECTING);
  CHECK_EQ(vls_write(B, ch, "x", 1), -ENOTCONN);
  uint64_t ct_off, acc, acc2;
  CHECK_EQ(vls_connect_ct(B, ch, b_a, &ct_off), 0);
  CHECK_EQ(state_of(B, ch), VLS_SS_READY); /* connected before the acceptor has heard of it */
  CHECK_EQ(vls_connect_ct(B, ch, b_a, &ct_off), -EISCONN);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch, ct_off, &acc), -EPROTO); /* B's segment not sent yet */
  CHECK_EQ(vls_peer_attach_ct_segment(A, a_b, dup(vls_peer_ct_segment_fd(B, b_a))), 0);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch, ct_off + 64, &acc), -EPROTO); /* not a pair */
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch, ct_off, &acc), 0);
  CHECK_EQ(state_of(A, acc), VLS_SS_ACCEPTING);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch, ct_off, &acc2), -EPROTO); /* a pair is accepted once */
  CHECK_EQ(vls_accept(A, lh, &sh), 0);
  CHECK_EQ(sh, acc);
  CHECK_EQ(state_of(A, sh), VLS_SS_READY);
  CHECK_EQ(vls_accept(A, lh, &sh), -EAGAIN);
  CHECK_EQ(vls_accept(A, sh, &sh), -EINVAL);

  char buf[64];
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), -EAGAIN);
  CHECK_EQ(vls_write(B, ch, "hello", 5), 5);
  CHECK_EQ(vls_write(B, ch, " world", 6), 6);
  CHECK(vls_worker_poll(A) >= 1); /* one RX event for both writes */
  vls_worker_stats_t st;
  vls_worker_stats(B, &st);
  CHECK_EQ(st.evts_out, 1); /* the event flag coalesced the second write */
  CHECK_EQ(vls_peek(A, sh, buf, 5), 5);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 11);
  CHECK(memcmp(buf, "hello world", 11) == 0);
  CHECK_EQ(vls_write(A, sh, "back", 4), 4);
  CHECK_EQ(vls_read(B, ch, buf, sizeof buf), 4);
  vls_session_info_t info;
  CHECK_EQ(vls_session_info(B, ch, &info), 0);
  CHECK_EQ(info.bytes_out, 11);
  CHECK_EQ(info.bytes_in, 4);
  CHECK(strcmp(vls_session_state_str(VLS_SS_TRANSPORT_CLOSING), "TRANSPORT_CLOSING") == 0);
  teardown();
}

static void test_stale_handles(void) {
  setup(4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  CHECK_EQ(vls_reset(B, ch), 0);
  char c;
  CHECK_EQ(vls_write(B, ch, "x", 1), -EBADF);
  CHECK_EQ(vls_read(B, ch, &c, 1), -EBADF);
  CHECK_EQ(vls_close(B, ch), -EBADF);
  /* The slot is reused with a new generation: the old handle still refers to nothing. */
  uint64_t ch2;
  CHECK_EQ(vls_connect_start(B, &ch2), 0);
  CHECK((ch2 & 0xffffff) == (ch & 0xffffff));
  CHECK(ch2 != ch);
  CHECK_EQ(vls_close(B, ch), -EBADF);
  CHECK_EQ(vls_close(B, ch2), 0);
  CHECK_EQ(vls_read(B, 0, &c, 1), -EBADF);
  CHECK_EQ(vls_read(B, 0xffffffffffffull, &c, 1), -EBADF);
  teardown();
}

/* close(): the peer reads everything that was queued, then EOF. */
static void test_close_fin_after_data(void) {
  setup(4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  char big[3000];
  for (int i = 0; i < 3000; i++) big[i] = (char)i;
  CHECK_EQ(vls_write(B, ch, big, 3000), 3000);
  CHECK_EQ(vls_close(B, ch), 0);
  CHECK_EQ(state_of(B, ch), VLS_SS_CLOSING); /* FIN waits behind 3000 unread bytes */
  CHECK_EQ(vls_write(B, ch, "x", 1), -EBADF);
  vls_worker_poll(A);
  CHECK_EQ(state_of(A, sh), VLS_SS_TRANSPORT_CLOSING);
  char out[4000];
  int got = 0, rv;
  while ((rv = vls_read(A, sh, out + got, 700)) > 0) got += rv;
  CHECK_EQ(rv, 0);
  CHECK_EQ(got, 3000);
  CHECK(memcmp(out, big, 3000) == 0);
  vls_worker_poll(B); /* the reader drained: B's session moves on */
  CHECK_EQ(state_of(B, ch), VLS_SS_APP_CLOSED);
  /* A may still write after the peer's FIN (half-open), then closes. */
  CHECK_EQ(vls_write(A, sh, "y", 1), 1);
  CHECK_EQ(vls_close(A, sh), 0);
  CHECK_EQ(vls_session_info(A, sh, &(vls_session_info_t){0}), -EBADF);
  vls_worker_poll(B);
  CHECK_EQ(state_of(B, ch), -EBADF); /* both closed: gone */
  vls_worker_poll(A);                /* CT_FREE */
  vls_worker_stats_t st;
  vls_worker_stats(A, &st);
  CHECK_EQ(st.n_sessions, 1); /* only the listener */
  teardown();
}

static void test_half_close(void) {
  setup(4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  CHECK_EQ(vls_write(B, ch, "req", 3), 3);
  CHECK_EQ(vls_shutdown(B, ch, VLS_SHUT_WR), 0);
  CHECK_EQ(vls_write(B, ch, "x", 1), -EPIPE);
  vls_worker_poll(A);
  char buf[16];
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 3);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 0);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 0);
  CHECK_EQ(vls_write(A, sh, "resp", 4), 4);
  CHECK_EQ(vls_shutdown(A, sh, VLS_SHUT_WR), 0);
  vls_worker_poll(B);
  CHECK_EQ(vls_read(B, ch, buf, sizeof buf), 4);
  CHECK_EQ(vls_read(B, ch, buf, sizeof buf), 0);
  CHECK_EQ(vls_shutdown(B, ch, 7), -EINVAL);
  CHECK_EQ(vls_close(A, sh), 0);
  CHECK_EQ(vls_close(B, ch), 0);
  vls_worker_poll(A);
  vls_worker_poll(B);
  vls_worker_stats_t st;
  vls_worker_stats(B, &st);
  CHECK_EQ(st.n_sessions, 0);
  teardown();
}

/* reset: queued data is dropped, the peer sees ECONNRESET once, then EOF; writes fail. */
static void test_reset(void) {
  setup(4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  CHECK_EQ(vls_write(B, ch, "lost", 4), 4);
  CHECK_EQ(vls_write(A, sh, "dropped", 7), 7);
  CHECK_EQ(vls_reset(A, sh), 0);
  vls_worker_poll(B);
  CHECK_EQ(state_of(B, ch), VLS_SS_TRANSPORT_CLOSED);
  char buf[16];
  CHECK_EQ(vls_read(B, ch, buf, sizeof buf), -ECONNRESET);
  CHECK_EQ(vls_read(B, ch, buf, sizeof buf), 0);
  CHECK_EQ(vls_write(B, ch, "x", 1), -EPIPE);
  CHECK_EQ(vls_close(B, ch), 0);
  vls_worker_poll(A);
  vls_worker_stats_t st;
  vls_worker_stats(A, &st);
  CHECK_EQ(st.segment_used, 0); /* the pair was freed */
  teardown();
}

/* A reset after a FIN is still a reset: the bytes sent before it are dropped (the FIN does not
 * keep them, as it does when the peer's process goes after closing). */
static void test_reset_after_fin(void) {
  setup(4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  CHECK_EQ(vls_write(B, ch, "sent", 4), 4);
  CHECK_EQ(vls_shutdown(B, ch, VLS_SHUT_WR), 0);
  CHECK_EQ(vls_reset(B, ch), 0);
  vls_worker_poll(A);
  char buf[8];
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), -ECONNRESET);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 0);
  CHECK_EQ(vls_close(A, sh), 0);
  teardown();
}

/* close() with unread data turns into a reset, as TCP does. */
static void test_close_unread_is_reset(void) {
  setup(4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  CHECK_EQ(vls_write(B, ch, "unread", 6), 6);
  CHECK_EQ(vls_close(A, sh), 0);
  vls_worker_poll(B);
  char buf[8];
  CHECK_EQ(vls_write(B, ch, "x", 1), -ECONNRESET);
  CHECK_EQ(vls_read(B, ch, buf, 8), 0);
  vls_close(B, ch);
  teardown();
}

static void test_backpressure(void) {
  setup(4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  char buf[8192];
  memset(buf, 'z', sizeof buf);
  CHECK_EQ(vls_write(B, ch, buf, 8192), 4096);
  CHECK_EQ(vls_write(B, ch, buf, 1), -EAGAIN);
  vls_worker_poll(A);
  CHECK_EQ(vls_read(A, sh, buf, 100), 100); /* not enough room yet for the notification */
  vls_worker_poll(B);
  vls_worker_stats_t st;
  vls_worker_stats(B, &st);
  CHECK_EQ(st.evts_in, 0);
  CHECK_EQ(vls_read(A, sh, buf, 2000), 2000); /* now past a quarter of the fifo */
  CHECK_EQ(vls_worker_poll(B), 1);            /* TX */
  CHECK_EQ(vls_write(B, ch, buf, 8192), 2100);
  /* all-or-nothing writev: a unit larger than the room waits, one larger than the fifo fails */
  CHECK_EQ(vls_read(A, sh, buf, 4096), 4096);
  vls_iov_t iov[2] = {{"head", 4}, {buf, 3000}};
  CHECK_EQ(vls_writev(B, ch, iov, 2, 1), 3004);
  CHECK_EQ(vls_writev(B, ch, iov, 2, 1), -EAGAIN);
  vls_iov_t huge[1] = {{buf, 5000}};
  CHECK_EQ(vls_writev(B, ch, huge, 1, 1), -EMSGSIZE);
  teardown();
}

static void test_listener_backlog_and_close(void) {
  setup(4096, 64);
  uint64_t lh, ch[3], ct[3], acc;
  CHECK_EQ(vls_listen(A, 2, &lh), 0);
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(vls_connect_start(B, &ch[i]), 0);
    CHECK_EQ(vls_connect_ct(B, ch[i], b_a, &ct[i]), 0);
  }
  ct_share_segment(A, a_b, B, b_a);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch[0], ct[0], &acc), 0);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch[1], ct[1], &acc), 0);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch[2], ct[2], &acc), -EAGAIN); /* backlog full */
  /* Refused after it was connected: to the connector, a reset. */
  CHECK_EQ(vls_write(B, ch[2], "lost", 4), 4);
  CHECK_EQ(vls_connect_refused(B, ch[2], b_a, ct[2], -ECONNRESET), 0);
  CHECK_EQ(vls_connect_refused(B, ch[2], b_a, ct[2], -ECONNRESET), -ENOENT); /* once */
  char c;
  CHECK_EQ(vls_read(B, ch[2], &c, 1), -ECONNRESET);
  CHECK(vls_write(B, ch[2], "x", 1) < 0);
  /* Closing the listener resets the connections nobody accepted. */
  CHECK_EQ(vls_close(A, lh), 0);
  vls_worker_poll(B);
  CHECK_EQ(vls_read(B, ch[0], &c, 1), -ECONNRESET);
  CHECK_EQ(vls_read(B, ch[1], &c, 1), -ECONNRESET);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch[2], ct[2], &acc), -EBADF);
  CHECK_EQ(vls_accept_ct(A, ch[0], a_b, ch[2], ct[2], &acc), -EBADF);
  /* Every pair is freed once its sessions are closed. */
  for (int i = 0; i < 3; i++) CHECK_EQ(vls_close(B, ch[i]), 0);
  vls_worker_poll(A);
  vls_worker_poll(B);
  vls_segment_stats_t ss;
  CHECK_EQ(vls_segment_stats(&B->peers[b_a].ct_local, &ss), 0);
  CHECK_EQ(ss.bytes_used, 0);
  teardown();
}

/* A peer that went away (its control connection hung up) without closing: its end is closed for
 * it as the kernel closes a dead process's sockets - FIN behind what it sent, or a reset where it
 * reset, left our bytes unread, or never accepted - and its segments are unmapped once unused. */
static void test_peer_down(void) {
  setup(4096, 64);
  uint64_t lh, ch[5], sh[5], acc;
  char buf[8];
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  for (int i = 0; i < 4; i++) ct_connect(A, lh, a_b, B, b_a, &ch[i], &sh[i]);
  CHECK_EQ(vls_write(B, ch[0], "abc", 3), 3); /* 0: B sent, read all we sent: FIN */
  CHECK_EQ(vls_write(B, ch[1], "abc", 3), 3); /* 1: B left our bytes unread: reset */
  CHECK_EQ(vls_write(A, sh[1], "z", 1), 1);
  CHECK_EQ(vls_write(B, ch[2], "abc", 3), 3); /* 2: B reset it (its event not seen yet): reset */
  CHECK_EQ(vls_reset(B, ch[2]), 0);
  CHECK_EQ(vls_write(B, ch[3], "abc", 3), 3); /* 3: B closed it (FIN) before it went */
  CHECK_EQ(vls_close(B, ch[3]), 0);
  /* 4: B connected and wrote; A had not accepted yet */
  uint64_t ct_off;
  CHECK_EQ(vls_connect_start(B, &ch[4]), 0);
  CHECK_EQ(vls_connect_ct(B, ch[4], b_a, &ct_off), 0);
  CHECK_EQ(vls_write(B, ch[4], "xyz", 3), 3);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch[4], ct_off, &acc), 0);
  CHECK_EQ(vls_worker_peer_down(A, a_b), 5);
  CHECK_EQ(vls_read(A, sh[0], buf, 8), 3);
  CHECK(memcmp(buf, "abc", 3) == 0);
  CHECK_EQ(vls_read(A, sh[0], buf, 8), 0);
  CHECK_EQ(state_of(A, sh[0]), VLS_SS_TRANSPORT_CLOSED);
  CHECK_EQ(vls_write(A, sh[0], "x", 1), -EPIPE);
  CHECK_EQ(vls_read(A, sh[1], buf, 8), -ECONNRESET);
  CHECK_EQ(vls_read(A, sh[1], buf, 8), 0);
  CHECK_EQ(vls_write(A, sh[1], "x", 1), -EPIPE);
  CHECK_EQ(vls_read(A, sh[2], buf, 8), -ECONNRESET);
  CHECK_EQ(vls_read(A, sh[3], buf, 8), 3);
  CHECK_EQ(vls_read(A, sh[3], buf, 8), 0);
  CHECK_EQ(vls_write(A, sh[3], "x", 1), -EPIPE);
  CHECK_EQ(vls_accept(A, lh, &sh[4]), 0);
  CHECK_EQ(sh[4], acc);
  CHECK_EQ(state_of(A, sh[4]), VLS_SS_TRANSPORT_CLOSED);
  CHECK_EQ(vls_read(A, sh[4], buf, 8), 3);
  CHECK(memcmp(buf, "xyz", 3) == 0);
  CHECK_EQ(vls_read(A, sh[4], buf, 8), 0);
  CHECK_EQ(vls_write(A, sh[4], "x", 1), -EPIPE);
  for (int i = 0; i < 5; i++) CHECK_EQ(vls_close(A, sh[i]), 0);
  vls_worker_poll(A);
  vls_worker_stats_t st;
  vls_worker_stats(A, &st);
  CHECK_EQ(st.n_peers, 0);
  CHECK_EQ(vls_worker_peer_down(A, a_b), -ENOENT);
  teardown();
}

/* The connector's view of an acceptor that went away: a connection its application had not taken
 * is reset (the kernel resets a dead listener's queue); one it took closes with a FIN behind what
 * it sent. */
static void test_acceptor_down(void) {
  setup(4096, 64);
  uint64_t lh, ch[2], sh, ct_off, acc;
  char buf[8];
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &ch[0], &sh);
  CHECK_EQ(vls_write(A, sh, "hi", 2), 2);
  CHECK_EQ(vls_connect_start(B, &ch[1]), 0);
  CHECK_EQ(vls_connect_ct(B, ch[1], b_a, &ct_off), 0);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch[1], ct_off, &acc), 0); /* attached, never accepted */
  vls_worker_poll(B);
  CHECK_EQ(vls_worker_peer_down(B, b_a), 2);
  CHECK_EQ(vls_read(B, ch[0], buf, 8), 2);
  CHECK_EQ(vls_read(B, ch[0], buf, 8), 0);
  CHECK_EQ(vls_read(B, ch[1], buf, 8), -ECONNRESET);
  for (int i = 0; i < 2; i++) CHECK_EQ(vls_close(B, ch[i]), 0);
  vls_worker_stats_t st;
  vls_worker_stats(B, &st);
  CHECK_EQ(st.n_peers, 0);
  teardown();
}

/* A peer whose queue is full: events wait in order and arrive once it drains. */
static void test_mq_full_defers(void) {
  setup(4096, 2);
  uint64_t lh, ch[6], sh[6];
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  for (int i = 0; i < 6; i++) ct_connect(A, lh, a_b, B, b_a, &ch[i], &sh[i]);
  for (int i = 0; i < 6; i++) CHECK_EQ(vls_write(B, ch[i], "m", 1), 1);
  vls_worker_stats_t st;
  vls_worker_stats(B, &st);
  CHECK(st.mq_full >= 1);
  CHECK_EQ(vls_worker_deferred(B), 4);
  int seen = 0;
  for (int round = 0; round < 10 && seen < 6; round++) {
    seen += vls_worker_poll(A);
    vls_worker_poll(B); /* retries the deferred events */
  }
  CHECK_EQ(seen, 6);
  CHECK_EQ(vls_worker_deferred(B), 0);
  teardown();
}

/* Both ends in one worker. */
static void test_same_worker(void) {
  vls_worker_t *w = mk_worker(3, 4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(w, 8, &lh), 0);
  ct_connect(w, lh, 0, w, 0, &ch, &sh);
  char buf[8];
  CHECK_EQ(vls_write(w, ch, "ping", 4), 4);
  CHECK_EQ(vls_worker_poll(w), 1);
  CHECK_EQ(vls_read(w, sh, buf, 8), 4);
  CHECK_EQ(vls_close(w, ch), 0);
  vls_worker_poll(w);
  CHECK_EQ(vls_read(w, sh, buf, 8), 0);
  CHECK_EQ(vls_close(w, sh), 0);
  vls_worker_poll(w);
  vls_worker_stats_t st;
  vls_worker_stats(w, &st);
  CHECK_EQ(st.n_sessions, 1);
  CHECK_EQ(st.segment_used, 0);
  vls_worker_destroy(w);
}

/* Many connect/close cycles: the segment does not grow and no session leaks. */
static void test_cycles_no_growth(void) {
  setup(4096, 64);
  uint64_t lh, ch, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  vls_worker_stats_t s0, s1;
  ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
  vls_close(B, ch);
  vls_worker_poll(A);
  vls_close(A, sh);
  vls_worker_poll(B);
  vls_worker_poll(A);
  vls_worker_stats(A, &s0);
  for (int i = 0; i < 10000; i++) {
    ct_connect(A, lh, a_b, B, b_a, &ch, &sh);
    CHECK_EQ(vls_write(B, ch, "q", 1), 1);
    vls_worker_poll(A);
    char c;
    CHECK_EQ(vls_read(A, sh, &c, 1), 1);
    if (i % 2) {
      vls_close(B, ch);
      vls_worker_poll(A);
      vls_close(A, sh);
    } else {
      vls_reset(A, sh);
      vls_worker_poll(B);
      vls_close(B, ch);
    }
    vls_worker_poll(B);
    vls_worker_poll(A);
  }
  vls_worker_stats(A, &s1);
  CHECK_EQ(s1.n_sessions, 1);
  CHECK_EQ(s1.segment_used, s0.segment_used);
  vls_worker_stats(B, &s1);
  CHECK_EQ(s1.n_sessions, 0);
  teardown();
}

/* A second thread registered: the worker lock serialises calls from both threads. */
static uint64_t mt_ch;
static void *mt_writer(void *arg) {
  (void)arg;
  char buf[100];
  for (int i = 0; i < 20000; i++) {
    memset(buf, (char)('a' + i % 26), sizeof buf);
    uint32_t off = 0;
    while (off < sizeof buf) {
      int rv = vls_write(B, mt_ch, buf + off, (uint32_t)(sizeof buf - off));
      if (rv == -EAGAIN) {
        vls_worker_poll(B);
        continue;
      }
      CHECK(rv > 0);
      off += (uint32_t)rv;
    }
  }
  return NULL;
}

static void test_multithread_worker(void) {
  setup(1 << 16, 4096);
  uint64_t lh, sh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, &mt_ch, &sh);
  CHECK_EQ(vls_worker_thread_register(B), 2);
  pthread_t t1, t2;
  pthread_create(&t1, NULL, mt_writer, NULL);
  pthread_create(&t2, NULL, mt_writer, NULL);
  uint64_t total = 0;
  char buf[100];
  while (total < 2ull * 20000 * 100) {
    vls_worker_poll(A);
    int rv = vls_read(A, sh, buf, 100);
    if (rv == -EAGAIN) continue;
    CHECK(rv > 0);
    total += (uint64_t)rv;
  }
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  CHECK_EQ(total, 2ull * 20000 * 100);
  teardown();
}

/* A connected pair, A's end sh (B's end ch), with sh in an edge-triggered epoll set ep of A that
 * reports it as `data`. */
static void connected_in_epoll(uint64_t data, uint64_t *ch, uint64_t *sh, uint64_t *ep) {
  uint64_t lh;
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  ct_connect(A, lh, a_b, B, b_a, ch, sh);
  CHECK_EQ(vls_epoll_create(A, ep), 0);
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN | VLS_EPOLLET, .data = data};
  CHECK_EQ(vls_epoll_ctl(A, *ep, VLS_EPOLL_CTL_ADD, *sh, &ev), 0);
}

/* The lost wake-up the benchmarks found: the writer's bytes are visible before it raises
 * has_event, so an awake reader can read them (and re-arm) first; the writer's event then finds
 * an empty fifo. That event must re-arm the flag, or the writer's next bytes signal nobody. The
 * interleaving is replayed step by step with the writer's own primitives. */
static void test_rx_event_after_early_read(void) {
  setup(4096, 64);
  uint64_t ch, sh, ep;
  connected_in_epoll(7, &ch, &sh, &ep);
  vls_epoll_event_t evs[8];
  vls_epoll_wait(A, ep, evs, 8, 0);
  char buf[16];
  vls_session_t *bs = vls__session_get(B, ch);
  CHECK(bs != NULL);
  for (int round = 0; round < 3; round++) {
    /* 1. the writer's bytes are visible; it has not looked at the flag yet */
    CHECK_EQ(vls_fifo_enqueue(&bs->tx, "abc", 3), 3);
    /* 2. the reader, awake for another reason, reads them and re-arms */
    CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 3);
    /* 3. the writer raises the flag and posts its event */
    CHECK_EQ(vls_fifo_set_event(&bs->tx), 1);
    vls_evt_t e = {.type = VLS_EVT_RX, .aux = B->index, .handle = sh};
    CHECK(vls_mq_send(&B->peers[bs->peer].mq, &e, sizeof e) >= 0);
    /* 4. the reader takes the event: nothing to read, nothing reported */
    CHECK_EQ(vls_epoll_wait(A, ep, evs, 8, 0), 0);
    /* 5. the writer's next bytes must still wake the reader */
    CHECK_EQ(vls_write(B, ch, "de", 2), 2);
    CHECK_EQ(vls_epoll_wait(A, ep, evs, 8, 0), 1);
    CHECK_EQ(evs[0].data, 7);
    CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 2);
  }
  teardown();
}

/* A short read promises that anything left gets an event. Replayed: the reader's dequeue empties
 * the fifo, then - before it looks at what is left - the writer adds bytes and, seeing the event
 * flag still up, posts nothing. The read returns less than asked; the new bytes must be reported
 * all the same (before the fix they sat in the fifo with nobody told: a bulk transfer stalled). */
static vls_worker_t *hook_writer;
static uint64_t hook_ch;
static int hook_fired;
static void write_during_read(vls_worker_t *w, uint64_t h) {
  (void)w;
  (void)h;
  if (hook_fired++) return;
  CHECK_EQ(vls_write(hook_writer, hook_ch, "late", 4), 4);
}

static void test_short_read_reports_late_bytes(void) {
  setup(4096, 64);
  uint64_t ch, sh, ep;
  connected_in_epoll(9, &ch, &sh, &ep);
  vls_epoll_event_t evs[8];
  CHECK_EQ(vls_write(B, ch, "early", 5), 5);
  CHECK_EQ(vls_epoll_wait(A, ep, evs, 8, 0), 1);
  char buf[64];
  hook_writer = B;
  hook_ch = ch;
  hook_fired = 0;
  vls_test_after_dequeue = write_during_read;
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 5); /* short: the caller waits for an event */
  vls_test_after_dequeue = NULL;
  CHECK_EQ(hook_fired, 1);
  CHECK_EQ(vls_epoll_wait(A, ep, evs, 8, 0), 1);
  CHECK_EQ(evs[0].data, 9);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 4);
  CHECK(memcmp(buf, "late", 4) == 0);
  teardown();
}

/* The connector's half of a connect from B to A: connected, the acceptor not told yet. */
static void connect_half(uint64_t *ch, uint64_t *ct) {
  CHECK_EQ(vls_connect_start(B, ch), 0);
  CHECK_EQ(vls_connect_ct(B, *ch, b_a, ct), 0);
}

/* The connector writes, shuts down and closes before the acceptor attaches: the acceptor finds the
 * bytes and the end of stream on the pair, though no event announced them. */
static void test_connected_before_accept(void) {
  setup(4096, 64);
  uint64_t lh, ch, ct, sh;
  char buf[64];
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  connect_half(&ch, &ct);
  CHECK_EQ(vls_write(B, ch, "early", 5), 5);
  CHECK_EQ(vls_close(B, ch), 0); /* FIN behind the bytes */
  vls_worker_stats_t st;
  vls_worker_stats(B, &st);
  CHECK_EQ(st.evts_out, 0); /* nobody to tell yet */
  ct_share_segment(A, a_b, B, b_a);
  uint64_t ep;
  CHECK_EQ(vls_epoll_create(A, &ep), 0);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch, ct, &sh), 0);
  CHECK_EQ(vls_accept(A, lh, &sh), 0);
  vls_epoll_event_t ev = {.events = VLS_EPOLLIN | VLS_EPOLLRDHUP, .data = 1}, out[4];
  CHECK_EQ(vls_epoll_ctl(A, ep, VLS_EPOLL_CTL_ADD, sh, &ev), 0);
  CHECK_EQ(vls_epoll_wait(A, ep, out, 4, 0), 1);
  CHECK(out[0].events & VLS_EPOLLIN);
  CHECK(out[0].events & VLS_EPOLLRDHUP);
  CHECK_EQ(state_of(A, sh), VLS_SS_TRANSPORT_CLOSING);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 5);
  CHECK(memcmp(buf, "early", 5) == 0);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 0);
  CHECK_EQ(vls_write(A, sh, "late", 4), 4); /* half-open: B closed, its reads are gone */
  CHECK_EQ(vls_close(A, sh), 0);
  vls_worker_poll(B); /* A's FIN: B's session finishes and frees the pair */
  CHECK_EQ(state_of(B, ch), -EBADF);
  vls_segment_stats_t ss;
  CHECK_EQ(vls_segment_stats(&B->peers[b_a].ct_local, &ss), 0);
  CHECK_EQ(ss.bytes_used, 0);
  teardown();

  /* A reset before the acceptor attaches: the accepted session reports it. */
  setup(4096, 64);
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  connect_half(&ch, &ct);
  CHECK_EQ(vls_write(B, ch, "dropped", 7), 7);
  CHECK_EQ(vls_reset(B, ch), 0);
  ct_share_segment(A, a_b, B, b_a);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch, ct, &sh), 0);
  CHECK_EQ(vls_accept(A, lh, &sh), 0);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), -ECONNRESET);
  CHECK_EQ(vls_close(A, sh), 0);
  vls_worker_poll(B); /* CT_FREE: B orphaned the pair when it reset */
  CHECK_EQ(vls_segment_stats(&B->peers[b_a].ct_local, &ss), 0);
  CHECK_EQ(ss.bytes_used, 0);
  teardown();

  /* Refused after the connector let go of the session: the pair is freed all the same. */
  setup(4096, 64);
  connect_half(&ch, &ct);
  CHECK_EQ(vls_reset(B, ch), 0);
  CHECK_EQ(vls_connect_refused(B, ch, b_a, ct, -ECONNRESET), 0);
  CHECK_EQ(vls_segment_stats(&B->peers[b_a].ct_local, &ss), 0);
  CHECK_EQ(ss.bytes_used, 0);
  teardown();
}

/* The acceptor attaches between two writes of a connector that has not yet looked for its handle:
 * the first write was not announced (the acceptor read it off the pair), the second one is. */
static void test_connector_learns_acceptor(void) {
  setup(4096, 64);
  uint64_t lh, ch, ct, sh;
  char buf[64];
  CHECK_EQ(vls_listen(A, 8, &lh), 0);
  connect_half(&ch, &ct);
  CHECK_EQ(vls_write(B, ch, "one", 3), 3);
  ct_share_segment(A, a_b, B, b_a);
  CHECK_EQ(vls_accept_ct(A, lh, a_b, ch, ct, &sh), 0);
  CHECK_EQ(vls_accept(A, lh, &sh), 0);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 3); /* drained: the event flag is down again */
  CHECK_EQ(vls_write(B, ch, "two", 3), 3);       /* B finds A's handle in the pair and posts */
  vls_worker_stats_t st;
  vls_worker_stats(B, &st);
  CHECK_EQ(st.evts_out, 1);
  CHECK_EQ(vls_worker_poll(A), 1);
  CHECK_EQ(vls_worker_stats(A, &st), 0);
  CHECK_EQ(st.evts_stale, 0);
  CHECK_EQ(vls_read(A, sh, buf, sizeof buf), 3);
  CHECK(memcmp(buf, "two", 3) == 0);
  vls_session_info_t info;
  CHECK_EQ(vls_session_info(B, ch, &info), 0);
  CHECK_EQ(info.peer_handle, sh);
  CHECK_EQ(info.side, 0);
  teardown();
}

#if !defined(__SANITIZE_ADDRESS__)
/* This process's address space in use (VmSize), in bytes. */
static uint64_t vm_size(void) {
  FILE *f = fopen("/proc/self/status", "r");
  CHECK(f != NULL);
  char line[256];
  unsigned long long kib = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %llu kB", &kib) == 1) break;
  fclose(f);
  CHECK(kib > 0);
  return (uint64_t)kib * 1024;
}
#endif

/* A fifo segment the address space cannot take (RLIMIT_AS) is made smaller, not refused: in a
 * child limited to 1 GiB beyond what it uses, a 64 GiB segment becomes one that fits, and
 * sessions work in it. */
static void test_ct_segment_fits_address_limit(void) {
#if defined(__SANITIZE_ADDRESS__)
  fprintf(stderr, "  (skipped under ASan: its shadow reservations and RLIMIT_AS do not mix)\n");
#else
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    vls_worker_t *a, *b;
    vls_worker_cfg_t cfg = {.index = 1, .segment_size = 64ull << 30, .fifo_size = 4096, .mq_size = 64,
                            .name = "test"};
    CHECK_EQ(vls_worker_create(&a, &cfg), 0);
    cfg.index = 2;
    CHECK_EQ(vls_worker_create(&b, &cfg), 0);
    uint32_t ab, ba;
    link_workers(a, b, &ab, &ba);
    struct rlimit rl;
    CHECK_EQ(getrlimit(RLIMIT_AS, &rl), 0);
    rl.rlim_cur = vm_size() + (1ull << 30); /* the soft limit: it may be raised again below */
    CHECK_EQ(setrlimit(RLIMIT_AS, &rl), 0);
    uint64_t lh, ch, sh;
    CHECK_EQ(vls_listen(a, 8, &lh), 0);
    CHECK_EQ(vls_connect_start(b, &ch), 0);
    uint64_t ct;
    CHECK_EQ(vls_connect_ct(b, ch, ba, &ct), 0);
    struct stat st;
    CHECK_EQ(fstat(vls_peer_ct_segment_fd(b, ba), &st), 0);
    CHECK((uint64_t)st.st_size <= (1ull << 30) && (uint64_t)st.st_size >= (4ull << 20));
    /* The acceptor maps it too (the same process here: half the limit each at most). */
    rl.rlim_cur = vm_size() + (uint64_t)st.st_size + (64ull << 20);
    CHECK_EQ(setrlimit(RLIMIT_AS, &rl), 0);
    ct_share_segment(a, ab, b, ba);
    CHECK_EQ(vls_accept_ct(a, lh, ab, ch, ct, &sh), 0);
    CHECK_EQ(vls_accept(a, lh, &sh), 0);
    char buf[8];
    CHECK_EQ(vls_write(b, ch, "fits", 4), 4);
    CHECK_EQ(vls_read(a, sh, buf, sizeof buf), 4);
    CHECK(memcmp(buf, "fits", 4) == 0);
    vls_worker_destroy(a);
    vls_worker_destroy(b);
    _exit(0);
  }
  int status = 0;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#endif
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(test_states_and_data);
  RUN(test_stale_handles);
  RUN(test_close_fin_after_data);
  RUN(test_half_close);
  RUN(test_reset);
  RUN(test_reset_after_fin);
  RUN(test_close_unread_is_reset);
  RUN(test_backpressure);
  RUN(test_listener_backlog_and_close);
  RUN(test_peer_down);
  RUN(test_acceptor_down);
  RUN(test_mq_full_defers);
  RUN(test_same_worker);
  RUN(test_cycles_no_growth);
  RUN(test_multithread_worker);
  RUN(test_rx_event_after_early_read);
  RUN(test_short_read_reports_late_bytes);
  RUN(test_connected_before_accept);
  RUN(test_connector_learns_acceptor);
  RUN(test_ct_segment_fits_address_limit);
  TEST_DONE();
}
