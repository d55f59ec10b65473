/* The control channel between real processes: hello, connect, refusal, secrets, garbage, death. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vls_app.h"
#include "vls_session_internal.h"
#include "vls_test.h"

static char dir[128];

static vls_app_t *mk_app(uint32_t index, const char *name, uint8_t secret_byte) {
  vls_app_cfg_t cfg = {.wrk = {.index = index, .segment_size = 256ull << 20, .fifo_size = 65536,
                               .mq_size = 1024, .name = name}};
  char path[200];
  snprintf(path, sizeof path, "%s/%s.sock", dir, name);
  cfg.sock_path = path;
  memset(cfg.secret, secret_byte, sizeof cfg.secret);
  vls_app_t *app;
  int rv = vls_app_create(&app, &cfg);
  if (rv == -EADDRINUSE && vls_app_probe(path) == -ECONNREFUSED) {
    /* a killed worker's socket file: stale, so take the name over (the registry does the same) */
    unlink(path);
    rv = vls_app_create(&app, &cfg);
  }
  CHECK_EQ(rv, 0);
  return app;
}

static void sock_path(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s.sock", dir, name);
}

/* Poll the app until an event of `type` for handle h shows up (or timeout_ms passes). */
static int wait_evt(vls_app_t *app, uint32_t type, uint64_t h, vls_app_evt_t *out, int timeout_ms) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    vls_app_evt_t evs[32];
    int n = vls_app_poll(app, evs, 32);
    for (int i = 0; i < n; i++)
      if (evs[i].type == type && (h == 0 || evs[i].handle == h)) {
        if (out) *out = evs[i];
        return 0;
      }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int el = (int)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
    if (el > timeout_ms) return -ETIMEDOUT;
    struct pollfd p = {.fd = vls_app_fd(app), .events = POLLIN};
    poll(&p, 1, 10);
  }
}

/* Connect with meta "hello" and wait until connected: at once over a control connection that is
 * up (vls_app_connect returns 1), after the hello exchange over a new one (0, then CONNECTED). */
static void connect_wait(vls_app_t *app, const char *path, uint64_t lh, uint64_t tag, uint64_t *ch) {
  int rv = vls_app_connect(app, path, lh, tag, "hello", 5, ch);
  CHECK(rv == 0 || rv == 1);
  if (rv == 0) CHECK_EQ(wait_evt(app, VLS_AE_CONNECTED, *ch, NULL, 5000), 0);
}

/* Wait up to 10 ms for the app's fd, then poll it once. */
static void poll_round(vls_app_t *app) {
  vls_app_evt_t evs[16];
  struct pollfd p = {.fd = vls_app_fd(app), .events = POLLIN};
  poll(&p, 1, 10);
  vls_app_poll(app, evs, 16);
}

/* Poll until a read of h gives something other than -EAGAIN. */
static int read_wait(vls_app_t *app, uint64_t h, void *buf, uint32_t len) {
  int r = -EAGAIN;
  for (int i = 0; i < 500 && r == -EAGAIN; i++) {
    r = vls_read(vls_app_worker(app), h, buf, len);
    if (r == -EAGAIN) poll_round(app);
  }
  return r;
}

/* Child: an acceptor that echoes; tells the parent its listener handle through a pipe. */
static int hostile_mode;
static int oneshot_mode; /* the listener closes after its first connection */

static void echo_server(int wfd, uint8_t secret, int die_after_bytes) {
  alarm(30);
  vls_app_t *app = mk_app(7, "srv", secret);
  uint64_t lh;
  CHECK_EQ(vls_app_listen(app, 64, 77, &lh), 0);
  CHECK(write(wfd, &lh, sizeof lh) == sizeof lh);
  vls_worker_t *w = vls_app_worker(app);
  static char buf[65536];
  long echoed = 0;
  for (;;) {
    struct pollfd p = {.fd = vls_app_fd(app), .events = POLLIN};
    poll(&p, 1, 100);
    vls_app_evt_t evs[64];
    int n = vls_app_poll(app, evs, 64);
    for (int i = 0; i < n; i++) {
      if (evs[i].type == VLS_AE_ACCEPT && oneshot_mode) CHECK_EQ(vls_app_close(app, lh), 0);
      if (evs[i].type == VLS_AE_ACCEPT) {
        CHECK_EQ(evs[i].meta_len, 5);
        CHECK(memcmp(evs[i].meta, "hello", 5) == 0);
        if (hostile_mode) {
          /* A hostile peer: out-of-range indices in the fifo the client reads, then a signal. */
          vls_session_t *hs = vls__session_get(w, evs[i].handle2);
          CHECK(hs != NULL);
          CHECK_EQ(vls_write(w, evs[i].handle2, "x", 1), 1);
          atomic_store(&hs->tx.sh->tail, 0xdeadbeefu);
          atomic_store(&hs->rx.sh->head, 0x7fff0000u);
          vls_evt_t e = {.type = VLS_EVT_RX, .aux = w->index, .handle = hs->peer_handle};
          vls_mq_send(&w->peers[hs->peer].mq, &e, sizeof e);
        }
      }
      if (evs[i].type != VLS_AE_IO) continue;
      uint64_t h = evs[i].handle;
      for (;;) {
        int r = vls_read(w, h, buf, sizeof buf);
        if (r <= 0) {
          if (r == 0 || r == -ECONNRESET) vls_app_close(app, h);
          break;
        }
        int off = 0;
        while (off < r) {
          int k = vls_write(w, h, buf + off, (uint32_t)(r - off));
          if (k == -EAGAIN) {
            vls_app_poll(app, evs, 0 + 1);
            continue;
          }
          if (k < 0) break;
          off += k;
        }
        echoed += r;
        if (die_after_bytes && echoed > die_after_bytes) kill(getpid(), SIGKILL);
      }
    }
  }
}

static pid_t start_server(uint64_t *lh, uint8_t secret, int die_after) {
  int p[2];
  CHECK(pipe(p) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    echo_server(p[1], secret, die_after);
    _exit(0);
  }
  close(p[1]);
  CHECK(read(p[0], lh, sizeof *lh) == sizeof *lh);
  close(p[0]);
  return pid;
}

static void stop(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

static void test_connect_echo(void) {
  uint64_t lh;
  pid_t srv = start_server(&lh, 0, 0);
  vls_app_t *app = mk_app(8, "cli", 0);
  char path[200];
  sock_path(path, sizeof path, "srv");
  CHECK_EQ(vls_app_probe(path), 0);
  uint64_t ch;
  connect_wait(app, path, lh, 77, &ch);
  vls_worker_t *w = vls_app_worker(app);
  unsigned long long seed = 1, seed2 = 1, rnd = 5;
  static unsigned char out[40000], in[40000];
  long sent = 0, got = 0, total = 8 << 20;
  while (got < total) {
    if (sent < total) {
      int n = (int)(vls_test_rand(&rnd) % sizeof out) + 1;
      if (n > total - sent) n = (int)(total - sent);
      unsigned long long save = seed;
      for (int i = 0; i < n; i++) out[i] = (unsigned char)vls_test_rand(&seed);
      int k = vls_write(w, ch, out, (uint32_t)n);
      seed = save;
      if (k > 0) {
        for (int i = 0; i < k; i++) vls_test_rand(&seed);
        sent += k;
      } else {
        CHECK_EQ(k, -EAGAIN);
      }
    }
    int r = vls_read(w, ch, in, sizeof in);
    if (r == -EAGAIN) {
      struct pollfd p = {.fd = vls_app_fd(app), .events = POLLIN};
      poll(&p, 1, 100);
      vls_app_evt_t evs[16];
      vls_app_poll(app, evs, 16);
      continue;
    }
    CHECK(r > 0);
    for (int i = 0; i < r; i++) CHECK_EQ(in[i], (unsigned char)vls_test_rand(&seed2));
    got += r;
  }
  CHECK_EQ(vls_app_close(app, ch), 0);
  /* Connected while the acceptor's process cannot run, as a loopback TCP connect is: the bytes
   * written meanwhile are echoed once it runs again. */
  CHECK_EQ(kill(srv, SIGSTOP), 0);
  uint64_t ch2;
  CHECK_EQ(vls_app_connect(app, path, lh, 77, "hello", 5, &ch2), 1);
  CHECK_EQ(vls_write(w, ch2, "ping", 4), 4);
  CHECK_EQ(kill(srv, SIGCONT), 0);
  char back[8];
  CHECK_EQ(read_wait(app, ch2, back, sizeof back), 4);
  CHECK(memcmp(back, "ping", 4) == 0);
  CHECK_EQ(vls_app_close(app, ch2), 0);
  vls_app_destroy(app);
  stop(srv);
}

static void test_refused(void) {
  vls_app_t *app = mk_app(8, "cli", 0);
  char path[200];
  sock_path(path, sizeof path, "nobody");
  uint64_t ch;
  CHECK_EQ(vls_app_connect(app, path, 1, 77, NULL, 0, &ch), -ECONNREFUSED);
  CHECK_EQ(vls_app_probe(path), -ENOENT);
  /* A stale socket file whose owner died: refused too, and probe says so. */
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, path);
  CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  close(fd);
  CHECK_EQ(vls_app_probe(path), -ECONNREFUSED);
  CHECK_EQ(vls_app_connect(app, path, 1, 77, NULL, 0, &ch), -ECONNREFUSED);
  unlink(path);
  /* A live worker but a listener handle that is not (or no longer) a listener: refused (the
   * connect waits for the answer of a listener it does not know). */
  uint64_t lh;
  pid_t srv = start_server(&lh, 0, 0);
  sock_path(path, sizeof path, "srv");
  CHECK_EQ(vls_app_connect(app, path, lh + 1, 77, "hello", 5, &ch), 0);
  vls_app_evt_t e;
  CHECK_EQ(wait_evt(app, VLS_AE_CONNECT_FAILED, ch, &e, 5000), 0);
  CHECK_EQ(e.err, -ECONNREFUSED);
  CHECK_EQ(vls_app_close(app, ch), 0);
  /* The right listener handle but another endpoint's tag (a stale registry entry): refused. */
  CHECK_EQ(vls_app_connect(app, path, lh, 78, "hello", 5, &ch), 0);
  CHECK_EQ(wait_evt(app, VLS_AE_CONNECT_FAILED, ch, &e, 5000), 0);
  CHECK_EQ(e.err, -ECONNREFUSED);
  CHECK_EQ(vls_app_close(app, ch), 0);
  /* A refused connect that the application closed before the answer came: nothing left. */
  CHECK_EQ(vls_app_connect(app, path, lh, 78, "hello", 5, &ch), 0);
  CHECK_EQ(vls_app_close(app, ch), 0);
  vls_worker_t *w = vls_app_worker(app);
  vls_worker_stats_t ws;
  for (int i = 0; i < 500; i++) {
    vls_worker_stats(w, &ws);
    if (ws.segment_used == 0) break;
    poll_round(app);
  }
  CHECK_EQ(ws.n_sessions, 0);
  CHECK_EQ(ws.segment_used, 0); /* the refused connects' pairs are freed */
  vls_app_stats_t ast;
  vls_app_stats(app, &ast);
  CHECK_EQ(ast.n_ctrl, 1); /* a refusal does not take the control connection down */
  /* Binding a second app on a live socket path fails with EADDRINUSE. */
  vls_app_cfg_t cfg = {.wrk = {.index = 9}, .sock_path = path};
  vls_app_t *dup;
  CHECK_EQ(vls_app_create(&dup, &cfg), -EADDRINUSE);
  vls_app_destroy(app);
  stop(srv);
}

/* A listener we know (it accepted from us) is connected to at once; if it closed meanwhile, the
 * connection made is reset, and the next connect, to a listener no longer known, is refused. */
static void test_known_listener_closes(void) {
  uint64_t lh;
  oneshot_mode = 1;
  pid_t srv = start_server(&lh, 0, 0);
  oneshot_mode = 0;
  vls_app_t *app = mk_app(8, "cli", 0);
  vls_worker_t *w = vls_app_worker(app);
  char path[200], buf[16];
  sock_path(path, sizeof path, "srv");
  uint64_t ch, ch2, ch3;
  CHECK_EQ(vls_app_connect(app, path, lh, 77, "hello", 5, &ch), 0); /* not known yet: waits */
  CHECK_EQ(wait_evt(app, VLS_AE_CONNECTED, ch, NULL, 5000), 0);
  CHECK_EQ(vls_write(w, ch, "a", 1), 1);
  CHECK_EQ(read_wait(app, ch, buf, sizeof buf), 1); /* served; the listener closed after it */
  CHECK_EQ(vls_app_connect(app, path, lh, 77, "hello", 5, &ch2), 1); /* known: connected now */
  CHECK_EQ(vls_write(w, ch2, "b", 1), 1);
  CHECK_EQ(read_wait(app, ch2, buf, sizeof buf), -ECONNRESET);
  CHECK_EQ(vls_app_connect(app, path, lh, 77, "hello", 5, &ch3), 0); /* forgotten: waits */
  vls_app_evt_t e;
  CHECK_EQ(wait_evt(app, VLS_AE_CONNECT_FAILED, ch3, &e, 5000), 0);
  CHECK_EQ(e.err, -ECONNREFUSED);
  CHECK_EQ(vls_app_close(app, ch), 0);
  CHECK_EQ(vls_app_close(app, ch2), 0);
  CHECK_EQ(vls_app_close(app, ch3), 0);
  vls_app_destroy(app);
  stop(srv);
}

static void test_wrong_secret(void) {
  uint64_t lh;
  pid_t srv = start_server(&lh, 0x11, 0);
  vls_app_t *app = mk_app(8, "cli", 0x22);
  char path[200];
  sock_path(path, sizeof path, "srv");
  uint64_t ch;
  CHECK_EQ(vls_app_connect(app, path, lh, 77, "hello", 5, &ch), 0);
  vls_app_evt_t e;
  CHECK_EQ(wait_evt(app, VLS_AE_CONNECT_FAILED, ch, &e, 5000), 0);
  CHECK_EQ(e.err, -EACCES);
  vls_app_destroy(app);
  stop(srv);
}

/* Garbage on the control channel: that connection is dropped, the worker keeps serving. */
static void test_garbage_ctrl(void) {
  uint64_t lh;
  pid_t srv = start_server(&lh, 0, 0);
  char path[200];
  sock_path(path, sizeof path, "srv");
  for (int round = 0; round < 3; round++) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    char junk[300];
    memset(junk, 0x5a + round, sizeof junk);
    if (round == 2) memcpy(junk, "VCTL", 4);
    CHECK(send(fd, junk, (size_t)(round == 1 ? 17 : 300), 0) > 0);
    char c;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1);
    CHECK(recv(fd, &c, 1, 0) <= 0); /* the worker hung up on us */
    close(fd);
  }
  vls_app_t *app = mk_app(8, "cli", 0);
  uint64_t ch;
  connect_wait(app, path, lh, 77, &ch);
  vls_app_destroy(app);
  stop(srv);
}

/* The server is killed mid-transfer: the client's session resets, the peer goes away. */
static void test_peer_killed(void) {
  uint64_t lh;
  pid_t srv = start_server(&lh, 0, 300000);
  vls_app_t *app = mk_app(8, "cli", 0);
  char path[200];
  sock_path(path, sizeof path, "srv");
  uint64_t ch;
  connect_wait(app, path, lh, 77, &ch);
  vls_worker_t *w = vls_app_worker(app);
  static char buf[65536];
  int reset = 0;
  for (int iter = 0; iter < 100000 && !reset; iter++) {
    int k = vls_write(w, ch, buf, sizeof buf);
    if (k < 0 && k != -EAGAIN) {
      CHECK(k == -ECONNRESET || k == -EPIPE);
      reset = 1;
    }
    int r;
    while ((r = vls_read(w, ch, buf, sizeof buf)) > 0) {
    }
    if (r == -ECONNRESET) reset = 1;
    CHECK(r == -EAGAIN || r == -ECONNRESET || r == 0);
    struct pollfd p = {.fd = vls_app_fd(app), .events = POLLIN};
    poll(&p, 1, 10);
    vls_app_evt_t evs[16];
    vls_app_poll(app, evs, 16);
  }
  CHECK(reset);
  waitpid(srv, NULL, 0);
  vls_app_stats_t st;
  vls_app_stats(app, &st);
  CHECK_EQ(st.n_ctrl, 0);
  CHECK_EQ(vls_app_close(app, ch), 0);
  vls_worker_stats_t ws;
  vls_worker_stats(w, &ws);
  CHECK_EQ(ws.n_peers, 0); /* segments unmapped */
  vls_app_destroy(app);
}

/* A peer process that writes and then exits normally (vls_app_destroy, as at process exit)
 * closes its sessions as the kernel closes a dying process's sockets: the survivor reads every
 * byte that was queued, then end of stream, never a reset; writing back fails with EPIPE. A
 * session with unread received data is reset instead, as TCP does. */
static void test_peer_exits(void) {
  int p[2];
  CHECK(pipe(p) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    close(p[0]);
    vls_app_t *app = mk_app(7, "srv", 0);
    uint64_t lh;
    CHECK_EQ(vls_app_listen(app, 64, 77, &lh), 0);
    CHECK(write(p[1], &lh, sizeof lh) == sizeof lh);
    vls_worker_t *w = vls_app_worker(app);
    uint64_t hs[2];
    int na = 0;
    for (int it = 0; it < 500 && na < 2; it++) {
      vls_app_evt_t evs[16];
      int n = vls_app_poll(app, evs, 16);
      for (int i = 0; i < n; i++)
        if (evs[i].type == VLS_AE_ACCEPT && na < 2) hs[na++] = evs[i].handle2;
      struct pollfd pf = {.fd = vls_app_fd(app), .events = POLLIN};
      if (na < 2) poll(&pf, 1, 10);
    }
    CHECK_EQ(na, 2);
    /* The first session gets 40000 bytes and is left open; the second has unread data. */
    static unsigned char out[40000];
    unsigned long long seed = 9;
    for (size_t i = 0; i < sizeof out; i++) out[i] = (unsigned char)vls_test_rand(&seed);
    CHECK_EQ(vls_write(w, hs[0], out, sizeof out), (int)sizeof out);
    for (int i = 0; i < 500; i++) {
      vls_session_info_t si;
      CHECK_EQ(vls_session_info(w, hs[1], &si), 0);
      if (si.rx_used) break;
      vls_app_evt_t evs[16];
      vls_app_poll(app, evs, 16);
      struct pollfd pf = {.fd = vls_app_fd(app), .events = POLLIN};
      poll(&pf, 1, 10);
    }
    vls_app_destroy(app);
    _exit(0);
  }
  close(p[1]);
  uint64_t lh;
  CHECK(read(p[0], &lh, sizeof lh) == sizeof lh);
  close(p[0]);
  vls_app_t *app = mk_app(8, "cli", 0);
  vls_worker_t *w = vls_app_worker(app);
  char path[200];
  sock_path(path, sizeof path, "srv");
  uint64_t ch[2];
  for (int k = 0; k < 2; k++) {
    connect_wait(app, path, lh, 77, &ch[k]);
  }
  CHECK_EQ(vls_write(w, ch[1], "unread", 6), 6);
  int status;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  /* Let the hang-up of its control connection arrive, then read. */
  vls_app_stats_t st;
  for (int i = 0; i < 500; i++) {
    vls_app_evt_t evs[16];
    vls_app_poll(app, evs, 16);
    vls_app_stats(app, &st);
    if (st.n_ctrl == 0) break;
    struct pollfd pf = {.fd = vls_app_fd(app), .events = POLLIN};
    poll(&pf, 1, 10);
  }
  CHECK_EQ(st.n_ctrl, 0);
  static unsigned char in[65536];
  unsigned long long seed = 9;
  long got = 0;
  int r;
  while ((r = vls_read(w, ch[0], in, sizeof in)) > 0) {
    for (int i = 0; i < r; i++) CHECK_EQ(in[i], (unsigned char)vls_test_rand(&seed));
    got += r;
  }
  CHECK_EQ(got, 40000);
  CHECK_EQ(r, 0); /* end of stream */
  CHECK_EQ(vls_write(w, ch[0], "x", 1), -EPIPE);
  CHECK_EQ(vls_read(w, ch[1], in, sizeof in), -ECONNRESET);
  CHECK_EQ(vls_app_close(app, ch[0]), 0);
  CHECK_EQ(vls_app_close(app, ch[1]), 0);
  vls_worker_stats_t ws;
  vls_worker_stats(w, &ws);
  CHECK_EQ(ws.n_peers, 0); /* its segments unmapped once our sessions went */
  vls_app_destroy(app);
}

/* A peer that writes out-of-range indices into the shared fifos: its session fails with EIO on
 * our side, we do not crash or touch memory outside the fifo, and other sessions go on. */
static void test_hostile_peer(void) {
  uint64_t lh;
  hostile_mode = 1;
  pid_t srv = start_server(&lh, 0, 0);
  hostile_mode = 0;
  vls_app_t *app = mk_app(8, "cli", 0);
  char path[200];
  sock_path(path, sizeof path, "srv");
  uint64_t ch;
  connect_wait(app, path, lh, 77, &ch);
  vls_worker_t *w = vls_app_worker(app);
  char buf[64];
  int r = -EAGAIN;
  for (int i = 0; i < 500 && (r == -EAGAIN || r > 0); i++) {
    vls_app_evt_t evs[16];
    struct pollfd p = {.fd = vls_app_fd(app), .events = POLLIN};
    poll(&p, 1, 10);
    vls_app_poll(app, evs, 16);
    r = vls_read(w, ch, buf, sizeof buf);
  }
  CHECK_EQ(r, -EIO);
  CHECK(vls_write(w, ch, "y", 1) < 0);
  CHECK_EQ(vls_app_close(app, ch), 0);
  vls_app_destroy(app);
  stop(srv);
}

/* A connect that finds its control connection hung up fails the connects waiting on it; their
 * CONNECT_FAILED events are queued inside that call, not in a poll, and the app's fd must become
 * readable for them (the process that polls on it would wait for ever otherwise). */
static void test_events_queued_outside_poll_wake_the_fd(void) {
  vls_app_t *srv = mk_app(11, "quiet", 0); /* never polls: the hello stays unanswered */
  uint64_t lh;
  CHECK_EQ(vls_app_listen(srv, 8, 77, &lh), 0);
  vls_app_t *cli = mk_app(12, "waker", 0);
  char path[200];
  sock_path(path, sizeof path, "quiet");
  uint64_t first, second;
  CHECK_EQ(vls_app_connect(cli, path, lh, 77, "hello", 5, &first), 0); /* waits for the hello */
  vls_app_evt_t evs[8];
  CHECK_EQ(vls_app_poll(cli, evs, 8), 0);
  vls_app_destroy(srv); /* the control connection it never accepted is reset */
  /* The next connect to that path sees the hang-up before the loop did: it fails the first one
   * with ECONNREFUSED (the hello was never answered), and is refused itself (nobody there). */
  CHECK_EQ(vls_app_connect(cli, path, lh, 77, "hello", 5, &second), -ECONNREFUSED);
  struct pollfd p = {.fd = vls_app_fd(cli), .events = POLLIN};
  CHECK_EQ(poll(&p, 1, 0), 1);
  int n = vls_app_poll(cli, evs, 8);
  CHECK_EQ(n, 1);
  CHECK_EQ(evs[0].type, VLS_AE_CONNECT_FAILED);
  CHECK_EQ(evs[0].handle, first);
  CHECK_EQ(evs[0].err, -ECONNREFUSED);
  CHECK_EQ(poll(&p, 1, 0), 0); /* handed out: the fd is quiet again */
  CHECK_EQ(vls_app_close(cli, first), 0);
  vls_app_destroy(cli);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  snprintf(dir, sizeof dir, "/tmp/vls-test-app-%d", (int)getpid());
  CHECK(mkdir(dir, 0700) == 0);
  RUN(test_connect_echo);
  RUN(test_refused);
  RUN(test_known_listener_closes);
  RUN(test_wrong_secret);
  RUN(test_garbage_ctrl);
  RUN(test_peer_killed);
  RUN(test_peer_exits);
  RUN(test_hostile_peer);
  RUN(test_events_queued_outside_poll_wake_the_fd);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  TEST_DONE();
}
