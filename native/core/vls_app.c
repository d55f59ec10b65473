#include "vls_app.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vls_session_internal.h"

#define VLS_CTRL_MAGIC 0x4c544356u /* "VCTL" */
#define VLS_CTRL_VERSION 2

#define VLS_CTRL_TYPES(X)                                                                          \
  X(HELLO)       /* a: mq offset; fds: segment, eventfd; secret */                                  \
  X(HELLO_ACK)   /* a: mq offset; fds: segment, eventfd */                                          \
  X(HELLO_NAK)   /* err */                                                                          \
  X(CONNECT)     /* a: connector's session, b: listener, c: endpoint tag, d: ct offset; meta; [fd]; \
                    flags: VLS_CONNECT_ANSWER (reply CONNECT_OK) */                                \
  X(CONNECT_OK)  /* a, b, c, d: as in the CONNECT */                                               \
  X(CONNECT_ERR) /* a, b, c, d: as in the CONNECT; err */                                          \
  X(STAT_REQ)    /* from `vls stat` (no hello): answer with a JSON snapshot, then hang up */

/* The connector waits for the answer: the listener has not accepted one of its connects yet. */
#define VLS_CONNECT_ANSWER 1u

enum {
  VLS_CTRL_NONE = 0,
#define X(t) VLS_CTRL_##t,
  VLS_CTRL_TYPES(X)
#undef X
  VLS_CTRL_N
};

typedef struct vls_ctrl_msg {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t wrk_index;
  int32_t err;
  uint32_t flags;
  uint32_t reserved;
  uint64_t a, b, c, d;
  uint8_t secret[VLS_SECRET_LEN];
  uint16_t meta_len;
  uint8_t meta[VLS_META_MAX];
} vls_ctrl_msg_t;

typedef struct vls_ctrl_out {
  vls_ctrl_msg_t msg;
  int fds[2];
  int n_fds;
} vls_ctrl_out_t;

#define VLS_KNOWN_MAX 16

typedef struct vls_ctrl_conn {
  int fd; /* -1: free slot */
  uint32_t peer_id; /* 0 until the hello exchange is done */
  uint32_t peer_wrk;
  int acceptor;      /* the other side connected to us */
  int ct_fd_sent;    /* our ct segment fd went to the peer already (with a CONNECT) */
  uint32_t serial;   /* tells a stat reply's connection from a later one in the same slot */
  /* Listeners of the peer that accepted a connect of ours on this connection (listener handle,
   * endpoint tag): a connect to one of them is made at once. A refusal takes it out. */
  struct vls_known {
    uint64_t lh, tag;
  } known[VLS_KNOWN_MAX];
  uint32_t n_known, next_known;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  vls_ctrl_out_t *outq;
  uint32_t n_out, cap_out;
} vls_ctrl_conn_t;

/* A connect waiting for its control connection's hello exchange (its CONNECT not sent yet), or,
 * once the hello is done (the connection has a peer), for the listener's answer. */
typedef struct vls_pending {
  uint64_t ch;
  uint32_t conn;
  uint64_t lh, tag;
  uint16_t meta_len; /* the CONNECT's metadata, kept only while it waits for the hello */
  uint8_t meta[VLS_META_MAX];
} vls_pending_t;

struct vls_app {
  vls_worker_t *w;
  int kfd;
  int lfd;
  char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  uint8_t secret[VLS_SECRET_LEN];
  uint64_t ep; /* internal epoll set: every session, edge-triggered */
  vls_ctrl_conn_t *conns;
  uint32_t n_conns;
  vls_pending_t *pending;
  uint32_t n_pending, cap_pending;
  vls_app_evt_t *evq; /* control events waiting for vls_app_poll's caller */
  uint32_t evq_head, evq_n, evq_cap;
  /* Makes kfd readable while evq holds events that a poll will not hand out on its own: those
   * queued outside vls_app_poll (a connect that finds its control connection hung up fails the
   * connects waiting on it), or left over when the caller's array was full. */
  int kick_fd;
  int kicked;  /* kick_fd holds a count (until the next poll reads it) */
  int in_poll; /* inside vls_app_poll_ex: what it queues it hands out, or kicks for at its end */
  vls_app_stats_t st;
  uint32_t next_serial;
};

#define VLS_KIND_EFD 1ull
#define VLS_KIND_LISTEN 2ull
#define VLS_KIND_CONN 3ull
#define VLS_KIND_KICK 4ull
#define VLS_APP_IO_EVENTS (VLS_EPOLLIN | VLS_EPOLLOUT | VLS_EPOLLRDHUP | VLS_EPOLLET)

static int vls__set_path(char *dst, size_t cap, const char *src) {
  if (!src || !*src) return -EINVAL;
  size_t n = strlen(src);
  if (n >= cap) return -ENAMETOOLONG;
  memcpy(dst, src, n + 1);
  return 0;
}

/* Make kfd readable (once until the next poll): the caller's loop polls, and gets evq. */
static void vls__kick(vls_app_t *app) {
  if (app->kicked) return;
  uint64_t one = 1;
  if (write(app->kick_fd, &one, sizeof one) == (ssize_t)sizeof one) app->kicked = 1;
}

static int vls__evq_push(vls_app_t *app, const vls_app_evt_t *e) {
  if (app->evq_n == app->evq_cap) {
    uint32_t n = app->evq_cap ? app->evq_cap * 2 : 64;
    vls_app_evt_t *q = malloc(n * sizeof *q);
    if (!q) return -ENOMEM;
    for (uint32_t i = 0; i < app->evq_n; i++) q[i] = app->evq[(app->evq_head + i) % app->evq_cap];
    free(app->evq);
    app->evq = q;
    app->evq_cap = n;
    app->evq_head = 0;
  }
  app->evq[(app->evq_head + app->evq_n++) % app->evq_cap] = *e;
  if (!app->in_poll) vls__kick(app);
  return 0;
}

int vls_app_create(vls_app_t **out, const vls_app_cfg_t *cfg) {
  *out = NULL;
  vls_app_t *app = calloc(1, sizeof *app);
  if (!app) return -ENOMEM;
  app->kfd = app->lfd = app->kick_fd = -1;
  int rv = vls__set_path(app->sock_path, sizeof app->sock_path, cfg->sock_path);
  if (rv < 0) goto fail;
  memcpy(app->secret, cfg->secret, VLS_SECRET_LEN);
  app->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (app->lfd < 0) goto fail_errno;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path, app->sock_path, strlen(app->sock_path) + 1);
  if (bind(app->lfd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    rv = -errno;
    app->sock_path[0] = 0; /* not ours: never unlink it */
    goto fail;
  }
  if (listen(app->lfd, 4096) < 0) goto fail_errno;
  if ((rv = vls_worker_create(&app->w, &cfg->wrk)) < 0) goto fail;
  if ((rv = vls_epoll_create(app->w, &app->ep)) < 0) goto fail;
  app->kfd = epoll_create1(EPOLL_CLOEXEC);
  if (app->kfd < 0) goto fail_errno;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = VLS_KIND_EFD << 32};
  if (epoll_ctl(app->kfd, EPOLL_CTL_ADD, vls_worker_eventfd(app->w), &ev) < 0) goto fail_errno;
  ev.data.u64 = VLS_KIND_LISTEN << 32;
  if (epoll_ctl(app->kfd, EPOLL_CTL_ADD, app->lfd, &ev) < 0) goto fail_errno;
  app->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (app->kick_fd < 0) goto fail_errno;
  ev.data.u64 = VLS_KIND_KICK << 32;
  if (epoll_ctl(app->kfd, EPOLL_CTL_ADD, app->kick_fd, &ev) < 0) goto fail_errno;
  *out = app;
  return 0;
fail_errno:
  rv = -errno;
fail:
  vls_app_destroy(app);
  return rv;
}

/* Discard what the peer sent and we did not read: a Unix socket closed with unread data makes
 * the peer's next read fail with ECONNRESET, which would hide a last message we sent (a
 * HELLO_NAK saying why). Received fds are closed. */
static void vls__conn_discard_input(int fd) {
  for (int i = 0; i < 1024; i++) {
    char buf[sizeof(vls_ctrl_msg_t)];
    union {
      char c[CMSG_SPACE(4 * sizeof(int))];
      struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.c,
                        .msg_controllen = sizeof u.c};
    if (recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0) return;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t j = 0; j < k; j++) {
        int rfd;
        memcpy(&rfd, CMSG_DATA(cm) + j * sizeof(int), sizeof rfd);
        close(rfd);
      }
    }
  }
}

static void vls__conn_free(vls_app_t *app, uint32_t ci) {
  vls_ctrl_conn_t *c = &app->conns[ci];
  if (c->fd < 0) return;
  epoll_ctl(app->kfd, EPOLL_CTL_DEL, c->fd, NULL);
  vls__conn_discard_input(c->fd);
  close(c->fd);
  for (uint32_t i = 0; i < c->n_out; i++)
    for (int k = 0; k < c->outq[i].n_fds; k++) close(c->outq[i].fds[k]);
  free(c->outq);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

void vls_app_destroy(vls_app_t *app) {
  if (!app) return;
  if (app->w) vls_worker_close_all(app->w); /* FINs first, then the hang-ups */
  for (uint32_t i = 0; i < app->n_conns; i++) vls__conn_free(app, i);
  if (app->w) vls_worker_destroy(app->w);
  if (app->lfd >= 0) close(app->lfd);
  if (app->sock_path[0]) unlink(app->sock_path);
  if (app->kfd >= 0) close(app->kfd);
  if (app->kick_fd >= 0) close(app->kick_fd);
  free(app->conns);
  free(app->pending);
  free(app->evq);
  free(app);
}

vls_worker_t *vls_app_worker(vls_app_t *app) { return app->w; }
int vls_app_fd(const vls_app_t *app) { return app->kfd; }

int vls_app_stats(const vls_app_t *app, vls_app_stats_t *st) {
  *st = app->st;
  st->n_ctrl = 0;
  for (uint32_t i = 0; i < app->n_conns; i++) st->n_ctrl += app->conns[i].fd >= 0;
  return 0;
}

int vls_app_probe(const char *sock_path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int rv = vls__set_path(sa.sun_path, sizeof sa.sun_path, sock_path);
  if (rv < 0) return rv;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  rv = connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
  close(fd);
  /* A listener with a full backlog is alive: only refusal or absence means stale. */
  return rv == -EAGAIN ? 0 : rv;
}

/* ---------------------------------------------------------------------------------------------- */
/* Control connections                                                                             */

static int vls__conn_add(vls_app_t *app, int fd, int acceptor, uint32_t *ci_out) {
  uint32_t ci = 0;
  while (ci < app->n_conns && app->conns[ci].fd >= 0) ci++;
  if (ci == app->n_conns) {
    uint32_t n = app->n_conns ? app->n_conns * 2 : 8;
    vls_ctrl_conn_t *c = realloc(app->conns, n * sizeof *c);
    if (!c) return -ENOMEM;
    memset(c + app->n_conns, 0, (n - app->n_conns) * sizeof *c);
    for (uint32_t i = app->n_conns; i < n; i++) c[i].fd = -1;
    app->conns = c;
    app->n_conns = n;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = (VLS_KIND_CONN << 32) | ci};
  if (epoll_ctl(app->kfd, EPOLL_CTL_ADD, fd, &ev) < 0) return -errno;
  vls_ctrl_conn_t *c = &app->conns[ci];
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->acceptor = acceptor;
  c->serial = ++app->next_serial;
  *ci_out = ci;
  return 0;
}

static void vls__msg_init(vls_app_t *app, vls_ctrl_msg_t *m, uint16_t type) {
  memset(m, 0, sizeof *m);
  m->magic = VLS_CTRL_MAGIC;
  m->version = VLS_CTRL_VERSION;
  m->type = type;
  m->wrk_index = (uint32_t)vls_worker_index(app->w);
}

static int vls__sendmsg(int fd, const vls_ctrl_msg_t *m, const int *fds, int n_fds) {
  struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
  union {
    char buf[CMSG_SPACE(2 * sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (n_fds) {
    memset(&u, 0, sizeof u);
    mh.msg_control = u.buf;
    mh.msg_controllen = CMSG_SPACE((size_t)n_fds * sizeof(int));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN((size_t)n_fds * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, (size_t)n_fds * sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  return n == (ssize_t)sizeof *m ? 0 : -EPROTO;
}

/* Send now, or queue behind earlier messages when the socket is full (the fds are dup'd into the
 * queue so the caller's stay its own). */
static int vls__send(vls_app_t *app, uint32_t ci, const vls_ctrl_msg_t *m, const int *fds,
                     int n_fds) {
  vls_ctrl_conn_t *c = &app->conns[ci];
  if (c->n_out == 0) {
    int rv = vls__sendmsg(c->fd, m, fds, n_fds);
    if (rv != -EAGAIN) return rv;
  }
  if (c->n_out == c->cap_out) {
    uint32_t n = c->cap_out ? c->cap_out * 2 : 8;
    vls_ctrl_out_t *q = realloc(c->outq, n * sizeof *q);
    if (!q) return -ENOMEM;
    c->outq = q;
    c->cap_out = n;
  }
  vls_ctrl_out_t *o = &c->outq[c->n_out];
  o->msg = *m;
  o->n_fds = 0;
  for (int k = 0; k < n_fds; k++) {
    int d = fcntl(fds[k], F_DUPFD_CLOEXEC, 0);
    if (d < 0) return -errno;
    o->fds[o->n_fds++] = d;
  }
  c->n_out++;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLOUT,
                           .data.u64 = (VLS_KIND_CONN << 32) | ci};
  epoll_ctl(app->kfd, EPOLL_CTL_MOD, c->fd, &ev);
  return 0;
}

static int vls__flush(vls_app_t *app, uint32_t ci) {
  vls_ctrl_conn_t *c = &app->conns[ci];
  uint32_t k = 0;
  int rv = 0;
  for (; k < c->n_out; k++) {
    vls_ctrl_out_t *o = &c->outq[k];
    rv = vls__sendmsg(c->fd, &o->msg, o->fds, o->n_fds);
    if (rv == -EAGAIN) break;
    for (int j = 0; j < o->n_fds; j++) close(o->fds[j]);
    if (rv < 0) {
      k++;
      break;
    }
  }
  memmove(c->outq, c->outq + k, (c->n_out - k) * sizeof *c->outq);
  c->n_out -= k;
  if (c->n_out == 0) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = (VLS_KIND_CONN << 32) | ci};
    epoll_ctl(app->kfd, EPOLL_CTL_MOD, c->fd, &ev);
  }
  return rv == -EAGAIN ? 0 : rv;
}

/* The connects waiting on control connection ci fail with err. One that was sent has its pair
 * made: the peer's going down resets it (vls_worker_peer_down), and its application hears of the
 * failure here. */
static void vls__fail_pending(vls_app_t *app, uint32_t ci, int err) {
  int sent = app->conns[ci].peer_id != 0; /* after the hello, every CONNECT went out */
  for (uint32_t i = 0; i < app->n_pending;) {
    if (app->pending[i].conn == ci) {
      uint64_t ch = app->pending[i].ch;
      app->pending[i] = app->pending[--app->n_pending];
      if (sent || vls_connect_fail(app->w, ch, err) == 0) {
        vls_app_evt_t e = {.type = VLS_AE_CONNECT_FAILED, .handle = ch, .err = err};
        vls__evq_push(app, &e);
      }
    } else {
      i++;
    }
  }
}

/* The control connection is gone (hang-up, error, or a malformed message): the peer's sessions
 * are reset, connects waiting on it fail. */
static void vls__conn_down(vls_app_t *app, uint32_t ci, int err) {
  vls_ctrl_conn_t *c = &app->conns[ci];
  if (c->fd < 0) return;
  VLS_DBG(1, "control connection %u (peer worker %u) down: %s", ci, c->peer_wrk, vls_err_name(err));
  /* Before the hello completed, a hang-up means nobody would take us: refused (a HELLO_NAK's
   * reason, such as EACCES, is kept). */
  vls__fail_pending(app, ci, c->peer_id ? -ECONNRESET : (err == -ECONNRESET || err == -EPIPE ? -ECONNREFUSED : err));
  if (c->peer_id) {
    vls_worker_peer_down(app->w, c->peer_id);
    vls_app_evt_t e = {.type = VLS_AE_PEER_DOWN, .handle = c->peer_wrk, .err = err};
    vls__evq_push(app, &e);
  }
  vls__conn_free(app, ci);
}

static int vls__secret_eq(const uint8_t *a, const uint8_t *b) {
  uint8_t d = 0;
  for (int i = 0; i < VLS_SECRET_LEN; i++) d |= (uint8_t)(a[i] ^ b[i]);
  return d == 0;
}

static int vls__hello_fds(vls_app_t *app, int fds[2]) {
  fds[0] = vls_worker_segment_fd(app->w);
  fds[1] = vls_worker_eventfd(app->w);
  return 2;
}

/* Register the peer described by a HELLO / HELLO_ACK and its two fds. */
static int vls__conn_add_peer(vls_app_t *app, uint32_t ci, const vls_ctrl_msg_t *m, int *fds,
                              int n_fds) {
  vls_ctrl_conn_t *c = &app->conns[ci];
  if (n_fds != 2 || m->wrk_index >= VLS_MAX_WORKERS) return -EPROTO;
  int pid = vls_worker_add_peer(app->w, m->wrk_index, fds[0], m->a, fds[1]);
  if (pid < 0) return pid;
  fds[0] = fds[1] = -1; /* owned by the peer entry now */
  c->peer_id = (uint32_t)pid;
  c->peer_wrk = m->wrk_index;
  return 0;
}

/* Answer a CONNECT: its session, listener, tag and pair, named back. */
static void vls__connect_reply(vls_app_t *app, uint32_t ci, const vls_ctrl_msg_t *m, uint16_t type,
                               int err) {
  vls_ctrl_msg_t r;
  vls__msg_init(app, &r, type);
  r.a = m->a;
  r.b = m->b;
  r.c = m->c;
  r.d = m->d;
  r.err = err;
  vls__send(app, ci, &r, NULL, 0);
}

static void vls__on_connect(vls_app_t *app, uint32_t ci, const vls_ctrl_msg_t *m, int *fds,
                            int n_fds) {
  vls_ctrl_conn_t *c = &app->conns[ci];
  /* The first CONNECT on a connection brings the connector's segment for our sessions with it. */
  if (n_fds == 1 && vls_peer_attach_ct_segment(app->w, c->peer_id, fds[0]) == 0) fds[0] = -1;
  uint64_t sh = 0;
  vls_session_info_t li;
  int rv = vls_session_info(app->w, m->b, &li);
  if (rv == 0 && (!(li.flags & VLS_SF_LISTENER) || li.opaque != m->c || m->c == 0)) rv = -EINVAL;
  if (rv == 0) rv = vls_accept_ct(app->w, m->b, c->peer_id, m->a, m->d, &sh);
  if (rv == 0) rv = vls_accept(app->w, m->b, &sh);
  if (rv < 0) {
    /* No such listener (closed, or a stale handle): refused, as the kernel answers a SYN. A
     * connector waiting for the answer fails with ECONNREFUSED; one connected already takes it as
     * a reset. Either way it frees the pair. */
    app->st.ctrl_refused++;
    int err = (rv == -EBADF || rv == -EINVAL) ? -ECONNREFUSED : rv;
    vls__connect_reply(app, ci, m, VLS_CTRL_CONNECT_ERR, err);
    return;
  }
  vls_epoll_event_t ev = {.events = VLS_APP_IO_EVENTS, .data = sh};
  vls_epoll_ctl(app->w, app->ep, VLS_EPOLL_CTL_ADD, sh, &ev);
  if (m->flags & VLS_CONNECT_ANSWER) vls__connect_reply(app, ci, m, VLS_CTRL_CONNECT_OK, 0);
  vls_app_evt_t e = {.type = VLS_AE_ACCEPT, .handle = m->b, .handle2 = sh};
  e.meta_len = m->meta_len;
  memcpy(e.meta, m->meta, m->meta_len);
  vls__evq_push(app, &e);
}

static int vls__known(const vls_ctrl_conn_t *c, uint64_t lh, uint64_t tag) {
  for (uint32_t i = 0; i < c->n_known; i++)
    if (c->known[i].lh == lh && c->known[i].tag == tag) return (int)i;
  return -1;
}

static void vls__known_add(vls_ctrl_conn_t *c, uint64_t lh, uint64_t tag) {
  if (vls__known(c, lh, tag) >= 0) return;
  if (c->n_known < VLS_KNOWN_MAX) {
    c->known[c->n_known++] = (struct vls_known){lh, tag};
  } else {
    c->known[c->next_known] = (struct vls_known){lh, tag};
    c->next_known = (c->next_known + 1) % VLS_KNOWN_MAX;
  }
}

static void vls__known_forget(vls_ctrl_conn_t *c, uint64_t lh, uint64_t tag) {
  int i = vls__known(c, lh, tag);
  if (i >= 0) c->known[i] = c->known[--c->n_known];
}

/* Take connect ch on control connection ci off the pending list: 1 if it was there. */
static int vls__take_pending(vls_app_t *app, uint32_t ci, uint64_t ch) {
  for (uint32_t i = 0; i < app->n_pending; i++)
    if (app->pending[i].conn == ci && app->pending[i].ch == ch) {
      app->pending[i] = app->pending[--app->n_pending];
      return 1;
    }
  return 0;
}

/* Connect over a control connection whose hello is done: make the pair and tell the acceptor
 * (asking for an answer when `answer`). The session is connected in the core from now on; a
 * connect that waits for the answer is reported to the application when it comes. On failure
 * the session is left failed with the error. */
static int vls__connect_now(vls_app_t *app, uint32_t ci, uint64_t ch, uint64_t lh, uint64_t tag,
                            const void *meta, uint32_t meta_len, int answer) {
  vls_ctrl_conn_t *c = &app->conns[ci];
  uint64_t ct_off = 0;
  int rv = vls_connect_ct(app->w, ch, c->peer_id, &ct_off);
  if (rv < 0) {
    vls_connect_fail(app->w, ch, rv);
    return rv;
  }
  vls_epoll_event_t ev = {.events = VLS_APP_IO_EVENTS, .data = ch};
  vls_epoll_ctl(app->w, app->ep, VLS_EPOLL_CTL_ADD, ch, &ev);
  vls_ctrl_msg_t m;
  vls__msg_init(app, &m, VLS_CTRL_CONNECT);
  m.a = ch;
  m.b = lh;
  m.c = tag;
  m.d = ct_off;
  m.flags = answer ? VLS_CONNECT_ANSWER : 0;
  m.meta_len = (uint16_t)meta_len;
  if (meta_len) memcpy(m.meta, meta, meta_len);
  int fd = -1, n_fds = 0;
  if (!c->ct_fd_sent) {
    fd = vls_peer_ct_segment_fd(app->w, c->peer_id);
    if (fd < 0) rv = fd;
    else n_fds = 1;
  }
  if (rv == 0) rv = vls__send(app, ci, &m, &fd, n_fds);
  if (rv < 0) {
    /* The acceptor will never hear of it: refused. */
    vls_connect_refused(app->w, ch, c->peer_id, ct_off, -ECONNREFUSED);
    return -ECONNREFUSED;
  }
  if (n_fds) c->ct_fd_sent = 1;
  return 0;
}

/* The hello exchange is done: the connects that waited for it go out, and wait for their answer. */
static void vls__run_pending(vls_app_t *app, uint32_t ci) {
  for (uint32_t i = 0; i < app->n_pending;) {
    vls_pending_t *p = &app->pending[i];
    if (p->conn != ci) {
      i++;
      continue;
    }
    int rv = vls__connect_now(app, ci, p->ch, p->lh, p->tag, p->meta, p->meta_len, 1);
    if (rv == 0) {
      i++;
      continue;
    }
    vls_app_evt_t e = {.type = VLS_AE_CONNECT_FAILED, .handle = p->ch, .err = rv};
    app->pending[i] = app->pending[--app->n_pending];
    vls__evq_push(app, &e);
  }
}

/* The listener accepted a connect that waited for its answer: connected. It is known now. */
static void vls__on_connect_ok(vls_app_t *app, uint32_t ci, const vls_ctrl_msg_t *m) {
  vls__known_add(&app->conns[ci], m->b, m->c);
  if (!vls__take_pending(app, ci, m->a)) return; /* the application closed it meanwhile */
  vls_app_evt_t e = {.type = VLS_AE_CONNECTED, .handle = m->a};
  vls__evq_push(app, &e);
}

/* The listener refused (it closed meanwhile, or a stale registry entry named it). A connect that
 * waited for the answer fails with ECONNREFUSED, as against a kernel port nobody listens on; one
 * made at once (the listener was known) was connected already, and to it this is a reset, the
 * kernel's answer when a listener closes with connections it did not accept. Either way the pair
 * is freed, even if the session is gone. */
static void vls__on_connect_err(vls_app_t *app, uint32_t ci, const vls_ctrl_msg_t *m) {
  vls_ctrl_conn_t *c = &app->conns[ci];
  vls__known_forget(c, m->b, m->c);
  if (vls__take_pending(app, ci, m->a)) {
    int err = m->err < 0 && m->err > -4096 ? m->err : -ECONNREFUSED;
    vls_connect_refused(app->w, m->a, c->peer_id, m->d, err);
    vls_app_evt_t e = {.type = VLS_AE_CONNECT_FAILED, .handle = m->a, .err = err};
    vls__evq_push(app, &e);
    return;
  }
  vls_connect_refused(app->w, m->a, c->peer_id, m->d, -ECONNRESET);
}

/* One checked message. Returns < 0 when the connection must be closed. */
static int vls__on_msg(vls_app_t *app, uint32_t ci, const vls_ctrl_msg_t *m, int *fds, int n_fds) {
  vls_ctrl_conn_t *c = &app->conns[ci];
  if (m->magic != VLS_CTRL_MAGIC || m->version != VLS_CTRL_VERSION || m->type == VLS_CTRL_NONE ||
      m->type >= VLS_CTRL_N || m->meta_len > VLS_META_MAX)
    return -EPROTO;
  if (m->type == VLS_CTRL_STAT_REQ) {
    /* A status query from `vls stat` on a connection of its own (the namespace directory is
     * private to this user, so anyone who can connect may ask). */
    if (!c->acceptor || c->peer_id) return -EPROTO;
    vls_app_evt_t e = {.type = VLS_AE_STAT, .handle = ci, .handle2 = c->serial};
    return vls__evq_push(app, &e);
  }
  /* Before the hello exchange only a hello may come; after it, no second hello. */
  int hello = m->type == VLS_CTRL_HELLO || m->type == VLS_CTRL_HELLO_ACK ||
              m->type == VLS_CTRL_HELLO_NAK;
  if ((c->peer_id == 0) != hello) return -EPROTO;
  if (c->peer_id && m->wrk_index != c->peer_wrk) return -EPROTO;
  switch (m->type) {
  case VLS_CTRL_HELLO: {
    if (!c->acceptor) return -EPROTO;
    vls_ctrl_msg_t r;
    if (!vls__secret_eq(m->secret, app->secret)) {
      app->st.ctrl_refused++;
      vls__msg_init(app, &r, VLS_CTRL_HELLO_NAK);
      r.err = -EACCES;
      vls__sendmsg(c->fd, &r, NULL, 0);
      return -EACCES;
    }
    int rv = vls__conn_add_peer(app, ci, m, fds, n_fds);
    if (rv < 0) return rv;
    vls__msg_init(app, &r, VLS_CTRL_HELLO_ACK);
    r.a = vls_worker_mq_offset(app->w);
    int hf[2];
    return vls__send(app, ci, &r, hf, vls__hello_fds(app, hf));
  }
  case VLS_CTRL_HELLO_ACK: {
    if (c->acceptor) return -EPROTO;
    int rv = vls__conn_add_peer(app, ci, m, fds, n_fds);
    if (rv == 0) vls__run_pending(app, ci);
    return rv;
  }
  case VLS_CTRL_HELLO_NAK:
    return m->err < 0 && m->err > -4096 ? m->err : -EACCES;
  case VLS_CTRL_CONNECT:
    if (!c->acceptor) return -EPROTO;
    vls__on_connect(app, ci, m, fds, n_fds);
    return 0;
  case VLS_CTRL_CONNECT_OK:
    if (c->acceptor) return -EPROTO;
    vls__on_connect_ok(app, ci, m);
    return 0;
  case VLS_CTRL_CONNECT_ERR:
    if (c->acceptor) return -EPROTO;
    vls__on_connect_err(app, ci, m);
    return 0;
  }
  return -EPROTO;
}

static void vls__conn_readable(vls_app_t *app, uint32_t ci) {
  for (int budget = 0; budget < 256; budget++) {
    vls_ctrl_conn_t *c = &app->conns[ci];
    if (c->fd < 0) return;
    vls_ctrl_msg_t m;
    union {
      char buf[CMSG_SPACE(4 * sizeof(int))];
      struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof u.buf};
    ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      vls__conn_down(app, ci, n == 0 ? -ECONNRESET : -errno);
      return;
    }
    int fds[4] = {-1, -1, -1, -1}, n_fds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
        if (n_fds < 4)
          fds[n_fds++] = fd;
        else
          close(fd);
      }
    }
    int rv = -EPROTO;
    if (n == (ssize_t)sizeof m && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && n_fds <= 2)
      rv = vls__on_msg(app, ci, &m, fds, n_fds);
    for (int i = 0; i < n_fds; i++)
      if (fds[i] >= 0) close(fds[i]);
    if (rv < 0) {
      if (rv == -EPROTO) app->st.ctrl_bad++;
      vls__conn_down(app, ci, rv);
      return;
    }
  }
}

static void vls__accept_ctrl(vls_app_t *app) {
  for (;;) {
    int fd = accept4(app->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    uint32_t ci;
    if (vls__conn_add(app, fd, 1, &ci) < 0) close(fd);
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Public calls                                                                                    */

static int vls__conn_to(vls_app_t *app, const char *path, uint32_t *ci_out) {
  for (uint32_t i = 0; i < app->n_conns; i++)
    if (app->conns[i].fd >= 0 && !app->conns[i].acceptor && !strcmp(app->conns[i].path, path)) {
      /* The worker behind it may have gone since our loop last ran (and a new one may hold its
       * path now): a hung-up connection is taken down here, not reused. */
      struct pollfd p = {.fd = app->conns[i].fd, .events = POLLRDHUP};
      if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR))) {
        vls__conn_readable(app, i);
        vls__conn_down(app, i, -ECONNRESET);
        break;
      }
      *ci_out = i;
      return 0;
    }
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int rv = vls__set_path(sa.sun_path, sizeof sa.sun_path, path);
  if (rv < 0) return rv;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    rv = -errno;
    close(fd);
    VLS_DBG(1, "control connect to %s: %s", path, vls_err_name(rv));
    /* Nobody there (ENOENT: no socket file; ECONNREFUSED: its owner died): refused. */
    return rv == -ENOENT || rv == -ECONNREFUSED || rv == -EAGAIN ? -ECONNREFUSED : rv;
  }
  uint32_t ci = 0;
  if ((rv = vls__conn_add(app, fd, 0, &ci)) < 0) {
    close(fd);
    return rv;
  }
  vls_ctrl_conn_t *c = &app->conns[ci];
  vls__set_path(c->path, sizeof c->path, path);
  vls_ctrl_msg_t m;
  vls__msg_init(app, &m, VLS_CTRL_HELLO);
  m.a = vls_worker_mq_offset(app->w);
  memcpy(m.secret, app->secret, VLS_SECRET_LEN);
  int hf[2];
  if ((rv = vls__send(app, ci, &m, hf, vls__hello_fds(app, hf))) < 0) {
    vls__conn_free(app, ci);
    return rv;
  }
  *ci_out = ci;
  return 0;
}

int vls_app_connect(vls_app_t *app, const char *peer_sock, uint64_t lh, uint64_t tag,
                    const void *meta, uint32_t meta_len, uint64_t *ch) {
  if (meta_len > VLS_META_MAX || (meta_len && !meta)) return -EINVAL;
  uint32_t ci = 0;
  int rv = vls__conn_to(app, peer_sock, &ci);
  if (rv < 0) return rv;
  if (app->n_pending == app->cap_pending) {
    uint32_t n = app->cap_pending ? app->cap_pending * 2 : 16;
    vls_pending_t *p = realloc(app->pending, n * sizeof *p);
    if (!p) return -ENOMEM;
    app->pending = p;
    app->cap_pending = n;
  }
  if ((rv = vls_connect_start(app->w, ch)) < 0) return rv;
  vls_ctrl_conn_t *c = &app->conns[ci];
  int known = c->peer_id && vls__known(c, lh, tag) >= 0;
  if (c->peer_id) {
    /* A control connection to a live peer: the pair is made and the CONNECT goes out now. To a
     * listener that accepted from us before, the session is connected at once; to another one it
     * waits for the answer (so that a stale registry entry is refused, and the connect falls back
     * to the kernel). */
    if ((rv = vls__connect_now(app, ci, *ch, lh, tag, meta, meta_len, !known)) < 0) {
      vls_close(app->w, *ch);
      return rv;
    }
    if (known) return 1;
  }
  /* Otherwise the connect waits: for the answer, or first for the hello exchange of a new control
   * connection (a worker that does not answer, or refuses our secret, fails it). */
  vls_pending_t *p = &app->pending[app->n_pending++];
  p->ch = *ch;
  p->conn = ci;
  p->lh = lh;
  p->tag = tag;
  p->meta_len = 0;
  if (!c->peer_id) { /* its CONNECT goes out after the hello, with this */
    p->meta_len = (uint16_t)meta_len;
    if (meta_len) memcpy(p->meta, meta, meta_len);
  }
  return 0;
}

int vls_app_listen(vls_app_t *app, uint32_t backlog, uint64_t tag, uint64_t *lh) {
  if (tag == 0) return -EINVAL;
  int rv = vls_listen(app->w, backlog, lh);
  if (rv == 0) vls_session_set_opaque(app->w, *lh, tag);
  return rv;
}

static void vls__forget_pending(vls_app_t *app, uint64_t h) {
  for (uint32_t i = 0; i < app->n_pending; i++)
    if (app->pending[i].ch == h) {
      app->pending[i] = app->pending[--app->n_pending];
      return;
    }
}

int vls_app_close(vls_app_t *app, uint64_t h) {
  vls__forget_pending(app, h);
  return vls_close(app->w, h);
}

int vls_app_reset(vls_app_t *app, uint64_t h) {
  vls__forget_pending(app, h);
  return vls_reset(app->w, h);
}

int vls_app_split_eventfd(vls_app_t *app) {
  int efd = vls_worker_eventfd(app->w);
  if (epoll_ctl(app->kfd, EPOLL_CTL_DEL, efd, NULL) < 0 && errno != ENOENT) return -errno;
  return efd;
}

int vls_app_poll(vls_app_t *app, vls_app_evt_t *evs, int max) { return vls_app_poll_ex(app, evs, max, 0); }

int vls_app_poll_ex(vls_app_t *app, vls_app_evt_t *evs, int max, unsigned flags) {
  if (max <= 0) return -EINVAL;
  app->in_poll = 1;
  if (app->kicked) {
    uint64_t cnt;
    if (read(app->kick_fd, &cnt, sizeof cnt) == (ssize_t)sizeof cnt || errno == EAGAIN) app->kicked = 0;
  }
  struct epoll_event kev[64];
  int nk = (flags & VLS_APP_POLL_IO_ONLY) ? 0 : epoll_wait(app->kfd, kev, 64, 0);
  for (int i = 0; i < nk; i++) {
    uint64_t kind = kev[i].data.u64 >> 32;
    uint32_t ci = (uint32_t)kev[i].data.u64;
    if (kind == VLS_KIND_LISTEN) {
      vls__accept_ctrl(app);
    } else if (kind == VLS_KIND_CONN && ci < app->n_conns && app->conns[ci].fd >= 0) {
      if (kev[i].events & EPOLLOUT) {
        int rv = vls__flush(app, ci);
        if (rv < 0) {
          vls__conn_down(app, ci, rv);
          continue;
        }
      }
      if (kev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) vls__conn_readable(app, ci);
    }
    /* VLS_KIND_EFD: vls_epoll_wait below drains the queue; VLS_KIND_KICK: read above. */
  }
  int n = 0;
  while (n < max && app->evq_n) {
    evs[n++] = app->evq[app->evq_head];
    app->evq_head = (app->evq_head + 1) % app->evq_cap;
    app->evq_n--;
  }
  if (n < max) {
    vls_epoll_event_t io[256];
    int want = VLS_MIN(max - n, 256);
    int k = vls_epoll_wait(app->w, app->ep, io, want, 0);
    for (int i = 0; i < k; i++) {
      vls_app_evt_t *e = &evs[n++];
      e->type = VLS_AE_IO;
      e->events = io[i].events;
      e->handle = io[i].data;
      e->handle2 = 0;
      e->err = 0;
      e->meta_len = 0;
    }
  }
  app->in_poll = 0;
  if (app->evq_n) vls__kick(app); /* more than the caller took: its loop comes back for them */
  return n;
}

/* ---------------------------------------------------------------------------------------------- */
/* Namespace attach                                                                                */

int vls_ns_lock(const char *dir) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/.lock", dir) >= (int)sizeof path) return -ENAMETOOLONG;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return -errno;
  int rv;
  do {
    rv = flock(fd, LOCK_EX);
  } while (rv < 0 && errno == EINTR);
  if (rv < 0) {
    rv = -errno;
    close(fd);
    return rv;
  }
  return fd;
}

void vls_ns_unlock(int fd) {
  if (fd < 0) return;
  flock(fd, LOCK_UN);
  close(fd);
}

const char *vls_app_sock_path(const vls_app_t *app) { return app->sock_path; }

int vls_app_attach_ns(vls_app_t **out, vls_app_cfg_t *cfg, const char *dir) {
  *out = NULL;
  int lk = vls_ns_lock(dir);
  if (lk < 0) return lk;
  int rv = -EMFILE;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  for (uint32_t i = 0; i < VLS_MAX_WORKERS; i++) {
    if (snprintf(path, sizeof path, "%s/w%u.sock", dir, i) >= (int)sizeof path) {
      rv = -ENAMETOOLONG;
      break;
    }
    cfg->wrk.index = i;
    cfg->sock_path = path;
    rv = vls_app_create(out, cfg);
    if (rv == -EADDRINUSE && vls_app_probe(path) == -ECONNREFUSED) {
      /* Its owner died without cleaning up; under the namespace lock nobody else is taking it. */
      VLS_DBG(1, "taking over stale worker socket %s", path);
      unlink(path);
      rv = vls_app_create(out, cfg);
    }
    if (rv != -EADDRINUSE) break;
  }
  cfg->sock_path = NULL;
  vls_ns_unlock(lk);
  return rv;
}

/* ---------------------------------------------------------------------------------------------- */
/* Status queries                                                                                  */

int vls_app_stat_reply(vls_app_t *app, uint32_t conn, uint32_t serial, const void *data,
                       uint32_t len) {
  if (conn >= app->n_conns || app->conns[conn].fd < 0 || app->conns[conn].serial != serial)
    return -ENOENT; /* the asker went away */
  int fd = app->conns[conn].fd;
  ssize_t n;
  do {
    n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  int rv = n < 0 ? -errno : 0;
  vls__conn_free(app, conn);
  return rv;
}

int vls_stat_query(const char *sock_path, void *buf, uint32_t cap, int timeout_ms) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int rv = vls__set_path(sa.sun_path, sizeof sa.sun_path, sock_path);
  if (rv < 0) return rv;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  vls_ctrl_msg_t m;
  memset(&m, 0, sizeof m);
  m.magic = VLS_CTRL_MAGIC;
  m.version = VLS_CTRL_VERSION;
  m.type = VLS_CTRL_STAT_REQ;
  m.wrk_index = VLS_MAX_WORKERS; /* not a worker */
  ssize_t n;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || send(fd, &m, sizeof m, MSG_NOSIGNAL) < 0) {
    rv = -errno;
    close(fd);
    return rv == -ENOENT ? -ECONNREFUSED : rv;
  }
  do {
    n = recv(fd, buf, cap, 0);
  } while (n < 0 && errno == EINTR);
  rv = n < 0 ? (errno == EAGAIN ? -ETIMEDOUT : -errno) : (int)n;
  close(fd);
  return rv;
}
