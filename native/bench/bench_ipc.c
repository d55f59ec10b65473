/*
 * bench_ipc: two processes (fork), four transports, two CPU placements.
 *
 *   ping-pong  process A sends a message (64 bytes by default), process B echoes it back, A times
 *              each round trip with CLOCK_MONOTONIC; p50/p99 over BENCH_ITERS trips after
 *              BENCH_WARMUP untimed ones (exact percentiles: the samples are sorted).
 *   bulk       A streams BENCH_BULK_MB MiB to B in BENCH_CHUNK-byte writes (after
 *              BENCH_BULK_WARM_MB untimed MiB); GB/s = 10^9 bytes/s, from A's clock when the warm-up
 *              bytes are in to B's clock when the last byte is out.
 *
 * Every transport waits the way libuv does: nonblocking fds, one epoll instance per process,
 * level-triggered, epoll_wait(-1) and then the read.
 *
 *   tcp   loopback TCP, TCP_NODELAY, default buffer sizes. After a wake-up the reader reads until a
 *         short read (at most 32 reads, like uv__read); the writer writes until EAGAIN or a short
 *         write and then waits for EPOLLOUT.
 *   unix  AF_UNIX SOCK_STREAM socketpair, same code as tcp.
 *   shm   the physical floor: a minimal SPSC byte ring per direction in a MAP_SHARED memfd plus one
 *         eventfd per process. Ping-pong writes the peer's eventfd on every message and reads its
 *         own after every wake-up. Bulk signals only when the peer asked (reader: "I am about to
 *         sleep", writer: "wake me when `thresh` bytes are free"), i.e. the same protocol as the
 *         vls fifo, without the message queue.
 *   vls   the project's path: one vls_fifo per direction in a vls_segment, one vls_mq of 32-byte
 *         events per process whose eventfd is the only fd that process waits on. Sender:
 *         vls_fifo_enqueue, vls_fifo_set_event() and, only when it returns 1, vls_mq_send(RX).
 *         Receiver: vls_mq_ready_to_sleep -> epoll_wait -> vls_mq_eventfd_clear ->
 *         vls_mq_recv_batch -> vls_fifo_dequeue until empty -> vls_fifo_unset_event (and read on
 *         while it reports bytes). Bulk flow control: a writer that finds the fifo full arms
 *         vls_fifo_want_deq_ntf(thresh) and sleeps until a TX event; the reader sends that TX
 *         event when vls_fifo_needs_deq_ntf() says so.
 *
 * Placements: same-cpu pins both processes to the first allowed CPU, split-cpu pins A and B to the
 * first two allowed CPUs (skipped, with a note, on a 1-CPU machine).
 *
 * Robustness: each child sets PR_SET_PDEATHSIG and alarm(BENCH_TIMEOUT); the parent waits with
 * sigtimedwait and SIGKILLs both children when one fails or the deadline passes. A failed or timed
 * out cell shows "-" and "!" in the table plus a "! ... failed" line, the run carries on, and the
 * exit status is 1.
 *
 * A second table counts epoll_wait calls and context switches per round trip (per MiB for bulk);
 * e.g. vls core can skip epoll_wait when vls_mq_ready_to_sleep() already sees the reply.
 *
 * Usage: bench_ipc [--json] [--help]; knobs in the environment (see usage()).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vls_fifo.h"
#include "vls_mq.h"
#include "vls_segment.h"

/* ------------------------------------------------------------------------------------------ */
/* configuration                                                                              */

enum { T_TCP, T_UNIX, T_SHM, T_VLS, T_N };
static const char *const t_key[T_N] = {"tcp", "unix", "shm", "vls"};
static const char *const t_name[T_N] = {"loopback TCP", "unix socket", "bare shm", "vls core"};
enum { P_SAME, P_SPLIT, P_N };
static const char *const p_key[P_N] = {"same-cpu", "split-cpu"};
enum { M_PP, M_BULK, M_N };
static const char *const m_key[M_N] = {"pp", "bulk"};

static struct config {
  long iters, warmup, bulk_mb, bulk_warm_mb, reps, timeout;
  long msg, chunk, fifo_kb, thresh_kb, mq_elts;
  int json;
  unsigned t_mask, p_mask, m_mask;
} cfg;

static long env_long(const char *name, long dflt, long lo, long hi) {
  const char *s = getenv(name);
  if (!s || !*s) return dflt;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < lo || v > hi) {
    fprintf(stderr, "bench: %s=%s is not an integer in [%ld, %ld]\n", name, s, lo, hi);
    exit(2);
  }
  return v;
}

/* "tcp,vls" -> bit mask over `keys`; unset or empty -> all. */
static unsigned env_mask(const char *name, const char *const *keys, int n) {
  const char *s = getenv(name);
  if (!s || !*s) return (1u << n) - 1;
  unsigned m = 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
    int i;
    for (i = 0; i < n; i++)
      if (!strcmp(tok, keys[i]) || (keys == p_key && !strncmp(tok, keys[i], strlen(tok)))) break;
    if (i == n) {
      fprintf(stderr, "bench: %s: unknown value '%s'\n", name, tok);
      exit(2);
    }
    m |= 1u << i;
  }
  return m;
}

static void usage(void) {
  printf("usage: bench_ipc [--json]\n"
         "environment (defaults in brackets):\n"
         "  BENCH_ITERS        timed ping-pong round trips per run [100000]\n"
         "  BENCH_WARMUP       untimed round trips before them [10000]\n"
         "  BENCH_MSG          ping-pong message bytes [64]\n"
         "  BENCH_BULK_MB      timed bulk MiB per run [2048]\n"
         "  BENCH_BULK_WARM_MB untimed bulk MiB before them [64]\n"
         "  BENCH_CHUNK        bulk write/read size in bytes [65536]\n"
         "  BENCH_FIFO_KB      shm ring / vls fifo size in KiB, power of 2 [1024]\n"
         "  BENCH_THRESH_KB    bulk writer wake-up threshold (free KiB) [fifo/2]\n"
         "  BENCH_REPS         runs per cell, the table shows the median [3]\n"
         "  BENCH_TIMEOUT      seconds before a run is killed [30]\n"
         "  BENCH_ONLY         transports, comma list of tcp,unix,shm,vls [all]\n"
         "  BENCH_PLACEMENTS   same,split [both]\n"
         "  BENCH_TESTS        pp,bulk [both]\n"
         "  BENCH_JSON=1       same as --json\n");
}

static void config_init(int argc, char **argv) {
  cfg.json = (int)env_long("BENCH_JSON", 0, 0, 1);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) {
      cfg.json = 1;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage();
      exit(0);
    } else {
      fprintf(stderr, "bench: unknown argument %s\n", argv[i]);
      usage();
      exit(2);
    }
  }
  cfg.iters = env_long("BENCH_ITERS", 100000, 100, 100000000);
  cfg.warmup = env_long("BENCH_WARMUP", 10000, 0, 100000000);
  cfg.msg = env_long("BENCH_MSG", 64, 16, 65536);
  cfg.bulk_mb = env_long("BENCH_BULK_MB", 2048, 1, 1 << 20);
  cfg.bulk_warm_mb = env_long("BENCH_BULK_WARM_MB", 64, 0, 1 << 20);
  cfg.chunk = env_long("BENCH_CHUNK", 65536, 64, 16 << 20);
  cfg.fifo_kb = env_long("BENCH_FIFO_KB", 1024, 1, 1 << 20);
  if (!vls_is_pow2((uint64_t)cfg.fifo_kb)) {
    fprintf(stderr, "bench: BENCH_FIFO_KB must be a power of 2\n");
    exit(2);
  }
  cfg.thresh_kb = env_long("BENCH_THRESH_KB", cfg.fifo_kb / 2 ? cfg.fifo_kb / 2 : 1, 1, cfg.fifo_kb);
  cfg.mq_elts = 64;
  cfg.reps = env_long("BENCH_REPS", 3, 1, 1000);
  cfg.timeout = env_long("BENCH_TIMEOUT", 30, 1, 86400);
  cfg.t_mask = env_mask("BENCH_ONLY", t_key, T_N);
  cfg.p_mask = env_mask("BENCH_PLACEMENTS", p_key, P_N);
  cfg.m_mask = env_mask("BENCH_TESTS", m_key, M_N);
  if (cfg.msg > cfg.fifo_kb * 1024) {
    fprintf(stderr, "bench: BENCH_MSG must fit in the fifo\n");
    exit(2);
  }
}

static double loadavg1(void) {
  double v = -1;
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) {
    if (fscanf(f, "%lf", &v) != 1) v = -1;
    fclose(f);
  }
  return v;
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------ */
/* results shared between the children and the parent (one anonymous MAP_SHARED page)         */

typedef struct shres {
  char err[256];
  /* ping-pong, filled by A (microseconds) */
  double p50, p99, p999, mean, min, max;
  /* bulk: A stamps t0 once `sent0` bytes are in, B stamps t1 after the last byte */
  uint64_t t0, sent0, t1, total;
  /* per side, whole child life: epoll_wait calls and context switches */
  uint64_t n_epoll[2], vcsw[2], ivcsw[2];
} shres_t;

static shres_t *g_res;
static const char *g_who = "parent";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (g_res && !g_res->err[0]) snprintf(g_res->err, sizeof g_res->err, "%s: %s", g_who, msg);
  fprintf(stderr, "bench: %s: %s\n", g_who, msg);
  _exit(2);
}

/* ------------------------------------------------------------------------------------------ */
/* bare shm ring                                                                              */

typedef struct ring_hdr {
  _Atomic uint32_t head VLS_ALIGNED(VLS_CACHE_LINE); /* consumer */
  _Atomic uint32_t tail VLS_ALIGNED(VLS_CACHE_LINE); /* producer */
  _Atomic uint32_t rd_sleep VLS_ALIGNED(VLS_CACHE_LINE); /* bulk: reader wants a wake-up */
  _Atomic uint32_t wr_want VLS_ALIGNED(VLS_CACHE_LINE);  /* bulk: writer wants room */
  uint32_t wr_thresh;
} ring_hdr_t;

typedef struct ring {
  ring_hdr_t *h;
  uint8_t *data;
  uint32_t size, mask, my_head, my_tail;
} ring_t;

static inline uint32_t ring_write(ring_t *r, const void *buf, uint32_t len) {
  uint32_t head = atomic_load_explicit(&r->h->head, memory_order_acquire);
  uint32_t room = r->size - (r->my_tail - head);
  uint32_t n = VLS_MIN(len, room);
  if (!n) return 0;
  uint32_t at = r->my_tail & r->mask, first = VLS_MIN(n, r->size - at);
  memcpy(r->data + at, buf, first);
  if (n > first) memcpy(r->data, (const uint8_t *)buf + first, n - first);
  r->my_tail += n;
  atomic_store_explicit(&r->h->tail, r->my_tail, memory_order_release);
  return n;
}

static inline uint32_t ring_read(ring_t *r, void *buf, uint32_t len) {
  uint32_t tail = atomic_load_explicit(&r->h->tail, memory_order_acquire);
  uint32_t n = VLS_MIN(len, tail - r->my_head);
  if (!n) return 0;
  uint32_t at = r->my_head & r->mask, first = VLS_MIN(n, r->size - at);
  memcpy(buf, r->data + at, first);
  if (n > first) memcpy((uint8_t *)buf + first, r->data, n - first);
  r->my_head += n;
  atomic_store_explicit(&r->h->head, r->my_head, memory_order_release);
  return n;
}

static inline uint32_t ring_used_consumer(ring_t *r) {
  return atomic_load_explicit(&r->h->tail, memory_order_acquire) - r->my_head;
}

static inline uint32_t ring_free_producer(ring_t *r) {
  return r->size - (r->my_tail - atomic_load_explicit(&r->h->head, memory_order_acquire));
}

/* ------------------------------------------------------------------------------------------ */
/* endpoints                                                                                  */

#define MAX_EV 64
#define EVT_RX 1u
#define EVT_TX 2u

typedef struct bench_evt {
  uint32_t type;
  uint32_t session;
  uint64_t fifo_off;
  uint64_t pad[2];
} bench_evt_t;
_Static_assert(sizeof(bench_evt_t) == 32, "32-byte events");

/* Everything the parent prepares before fork; side 0 is A, side 1 is B. */
typedef struct setup {
  int kind;
  int sock[2];
  int efd[2];
  uint8_t *shm_base;
  size_t shm_len;
  vls_segment_t seg;
  int64_t fifo_off[2]; /* [s]: fifo written by side s */
  int64_t mq_off[2];   /* [s]: queue read by side s */
  int ready[2];        /* pipe: B -> A "set up" */
} setup_t;

typedef struct ep {
  int kind, side;
  int epfd;
  int sock;
  int efd_mine, efd_peer;
  ring_t tx_ring, rx_ring;
  vls_fifo_t tx, rx;
  vls_mq_t my_mq, peer_mq;
  uint64_t tx_off, rx_off;
  uint8_t *scratch;
  bench_evt_t evs[MAX_EV];
} ep_t;

static uint64_t g_n_epoll;

static void epoll_wait_one(ep_t *e) {
  struct epoll_event ev;
  for (;;) {
    g_n_epoll++;
    int n = epoll_wait(e->epfd, &ev, 1, -1);
    if (n > 0) return;
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
  }
}

static void efd_signal(int fd) {
  uint64_t one = 1;
  if (write(fd, &one, sizeof one) != (ssize_t)sizeof one && errno != EAGAIN)
    die("eventfd write: %s", strerror(errno));
}

static void efd_drain(int fd) {
  uint64_t v;
  if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN) die("eventfd read: %s", strerror(errno));
}

/* --- sockets (tcp, unix) --- */

static void sock_send(ep_t *e, const void *buf, uint32_t len) {
  const uint8_t *p = buf;
  while (len) {
    ssize_t n = write(e->sock, p, len);
    if (n > 0) {
      p += n;
      len -= (uint32_t)n;
    } else if (n < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = e->sock, .events = POLLOUT};
      poll(&pfd, 1, -1);
    } else if (n < 0 && errno != EINTR) {
      die("write: %s", strerror(errno));
    }
  }
}

static void sock_recv(ep_t *e, void *buf, uint32_t len) {
  uint32_t got = 0;
  while (got < len) {
    epoll_wait_one(e);
    ssize_t n = read(e->sock, (uint8_t *)buf + got, len - got);
    if (n > 0) got += (uint32_t)n;
    else if (n == 0) die("unexpected EOF");
    else if (errno != EAGAIN && errno != EINTR) die("read: %s", strerror(errno));
  }
}

static void sock_bulk_write(ep_t *e, uint64_t total, uint64_t warm) {
  uint64_t sent = 0;
  while (sent < total) {
    size_t want = (size_t)VLS_MIN((uint64_t)cfg.chunk, total - sent);
    ssize_t n = write(e->sock, e->scratch, want);
    if (n > 0) {
      if (sent < warm && sent + (uint64_t)n >= warm) {
        g_res->t0 = now_ns();
        g_res->sent0 = sent + (uint64_t)n;
      }
      sent += (uint64_t)n;
      if ((size_t)n == want) continue;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      die("write: %s", strerror(errno));
    }
    epoll_wait_one(e); /* EPOLLOUT */
  }
}

static void sock_bulk_read(ep_t *e, uint64_t total) {
  uint64_t got = 0;
  while (got < total) {
    epoll_wait_one(e);
    for (int k = 0; k < 32; k++) { /* uv__read: until a short read, at most 32 reads */
      ssize_t n = read(e->sock, e->scratch, (size_t)cfg.chunk);
      if (n > 0) {
        got += (uint64_t)n;
        if (n < cfg.chunk) break;
      } else if (n == 0) {
        die("unexpected EOF");
      } else if (errno == EAGAIN) {
        break;
      } else if (errno != EINTR) {
        die("read: %s", strerror(errno));
      }
    }
  }
  g_res->t1 = now_ns();
}

/* --- bare shm --- */

static void shm_send(ep_t *e, const void *buf, uint32_t len) {
  if (ring_write(&e->tx_ring, buf, len) != len) die("ring full in ping-pong");
  efd_signal(e->efd_peer);
}

static void shm_recv(ep_t *e, void *buf, uint32_t len) {
  uint32_t got = 0;
  while (got < len) {
    epoll_wait_one(e);
    efd_drain(e->efd_mine);
    got += ring_read(&e->rx_ring, (uint8_t *)buf + got, len - got);
  }
}

static void shm_bulk_write(ep_t *e, uint64_t total, uint64_t warm) {
  ring_t *r = &e->tx_ring;
  uint32_t thresh = (uint32_t)(cfg.thresh_kb * 1024);
  uint64_t sent = 0;
  while (sent < total) {
    uint32_t want = (uint32_t)VLS_MIN((uint64_t)cfg.chunk, total - sent);
    uint32_t n = ring_write(r, e->scratch, want);
    if (n) {
      if (sent < warm && sent + n >= warm) {
        g_res->t0 = now_ns();
        g_res->sent0 = sent + n;
      }
      sent += n;
      /* wake the reader only if it said it is going to sleep */
      atomic_thread_fence(memory_order_seq_cst);
      if (atomic_load_explicit(&r->h->rd_sleep, memory_order_relaxed) &&
          atomic_exchange_explicit(&r->h->rd_sleep, 0, memory_order_acq_rel))
        efd_signal(e->efd_peer);
      if (n == want) continue;
    }
    /* full: ask for room, look again, sleep */
    r->h->wr_thresh = thresh;
    atomic_store_explicit(&r->h->wr_want, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (ring_free_producer(r) >= thresh) continue;
    epoll_wait_one(e);
    efd_drain(e->efd_mine);
  }
}

static void shm_bulk_read(ep_t *e, uint64_t total) {
  ring_t *r = &e->rx_ring;
  uint64_t got = 0;
  while (got < total) {
    uint32_t n = ring_read(r, e->scratch, (uint32_t)cfg.chunk);
    if (n) {
      got += n;
      atomic_thread_fence(memory_order_seq_cst);
      if (atomic_load_explicit(&r->h->wr_want, memory_order_relaxed) &&
          r->size - ring_used_consumer(r) >= r->h->wr_thresh &&
          atomic_exchange_explicit(&r->h->wr_want, 0, memory_order_acq_rel))
        efd_signal(e->efd_peer);
      continue;
    }
    atomic_store_explicit(&r->h->rd_sleep, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (ring_used_consumer(r)) continue;
    epoll_wait_one(e);
    efd_drain(e->efd_mine);
  }
  g_res->t1 = now_ns();
}

/* --- vls core --- */

static void vls_send_evt(ep_t *e, uint32_t type, uint64_t fifo_off) {
  bench_evt_t ev = {.type = type, .session = 1, .fifo_off = fifo_off};
  int rv = vls_mq_send(&e->peer_mq, &ev, sizeof ev);
  if (rv < 0) die("vls_mq_send: %s", vls_err_name(rv));
}

/* Sleep until our queue holds events; returns how many were taken into e->evs. */
static int vls_wait(ep_t *e) {
  for (;;) {
    if (vls_mq_ready_to_sleep(&e->my_mq)) {
      epoll_wait_one(e);
      vls_mq_eventfd_clear(&e->my_mq);
    }
    int n = vls_mq_recv_batch(&e->my_mq, e->evs, MAX_EV);
    if (n < 0) die("vls_mq_recv_batch: %s", vls_err_name(n));
    if (n > 0) return n;
  }
}

static void vls_send(ep_t *e, const void *buf, uint32_t len) {
  int n = vls_fifo_enqueue(&e->tx, buf, len);
  if (n != (int)len) die("vls_fifo_enqueue: %d", n);
  if (vls_fifo_set_event(&e->tx)) vls_send_evt(e, EVT_RX, e->tx_off);
}

/* Read the fifo dry, clear its event, read on while unset_event reports bytes. */
static uint32_t vls_pp_drain(ep_t *e, uint8_t *buf, uint32_t want) {
  uint32_t got = 0;
  for (;;) {
    int n = vls_fifo_dequeue(&e->rx, e->scratch, (uint32_t)cfg.chunk);
    if (n > 0) {
      if (got + (uint32_t)n > want) die("more bytes than one message");
      memcpy(buf + got, e->scratch, (size_t)n);
      got += (uint32_t)n;
      continue;
    }
    if (n != -EAGAIN) die("vls_fifo_dequeue: %s", vls_err_name(n));
    int64_t r = vls_fifo_unset_event(&e->rx);
    if (r < 0) die("vls_fifo_unset_event: %s", vls_err_name((int)r));
    if (r == 0) return got;
  }
}

static void vls_recv(ep_t *e, void *buf, uint32_t len) {
  uint32_t got = 0;
  while (got < len) {
    int n = vls_wait(e);
    for (int i = 0; i < n; i++)
      if (e->evs[i].type == EVT_RX) got += vls_pp_drain(e, (uint8_t *)buf + got, len - got);
  }
}

static void vls_bulk_write(ep_t *e, uint64_t total, uint64_t warm) {
  uint32_t thresh = (uint32_t)(cfg.thresh_kb * 1024);
  uint64_t sent = 0;
  while (sent < total) {
    uint32_t want = (uint32_t)VLS_MIN((uint64_t)cfg.chunk, total - sent);
    int n = vls_fifo_enqueue(&e->tx, e->scratch, want);
    if (n > 0) {
      if (sent < warm && sent + (uint64_t)n >= warm) {
        g_res->t0 = now_ns();
        g_res->sent0 = sent + (uint64_t)n;
      }
      sent += (uint64_t)n;
      if (vls_fifo_set_event(&e->tx)) vls_send_evt(e, EVT_RX, e->tx_off);
      if ((uint32_t)n == want) continue;
    } else if (n != -EAGAIN) {
      die("vls_fifo_enqueue: %s", vls_err_name(n));
    }
    int64_t room = vls_fifo_want_deq_ntf(&e->tx, thresh);
    if (room < 0) die("vls_fifo_want_deq_ntf: %s", vls_err_name((int)room));
    if (room >= thresh) continue;
    for (int seen_tx = 0; !seen_tx;) {
      int k = vls_wait(e);
      for (int i = 0; i < k; i++) seen_tx |= e->evs[i].type == EVT_TX;
    }
  }
}

static void vls_bulk_read(ep_t *e, uint64_t total) {
  uint64_t got = 0;
  while (got < total) {
    int k = vls_wait(e);
    for (int i = 0; i < k; i++) {
      if (e->evs[i].type != EVT_RX) continue;
      for (;;) {
        int n = vls_fifo_dequeue(&e->rx, e->scratch, (uint32_t)cfg.chunk);
        if (n > 0) {
          got += (uint64_t)n;
          if (vls_fifo_needs_deq_ntf(&e->rx)) vls_send_evt(e, EVT_TX, e->rx_off);
          continue;
        }
        if (n != -EAGAIN) die("vls_fifo_dequeue: %s", vls_err_name(n));
        int64_t r = vls_fifo_unset_event(&e->rx);
        if (r < 0) die("vls_fifo_unset_event: %s", vls_err_name((int)r));
        if (r == 0) break;
      }
    }
  }
  g_res->t1 = now_ns();
}

typedef struct ops {
  void (*send)(ep_t *, const void *, uint32_t);
  void (*recv)(ep_t *, void *, uint32_t);
  void (*bulk_write)(ep_t *, uint64_t, uint64_t);
  void (*bulk_read)(ep_t *, uint64_t);
} ops_t;

static const ops_t t_ops[T_N] = {
    {sock_send, sock_recv, sock_bulk_write, sock_bulk_read},
    {sock_send, sock_recv, sock_bulk_write, sock_bulk_read},
    {shm_send, shm_recv, shm_bulk_write, shm_bulk_read},
    {vls_send, vls_recv, vls_bulk_write, vls_bulk_read},
};

/* ------------------------------------------------------------------------------------------ */
/* parent-side setup                                                                          */

static void ring_init_view(ring_t *r, uint8_t *base, uint32_t size) {
  r->h = (ring_hdr_t *)base;
  r->data = base + VLS_ALIGN_UP(sizeof(ring_hdr_t), 4096);
  r->size = size;
  r->mask = size - 1;
  r->my_head = atomic_load(&r->h->head);
  r->my_tail = atomic_load(&r->h->tail);
}

static size_t ring_footprint(uint32_t size) { return VLS_ALIGN_UP(sizeof(ring_hdr_t), 4096) + size; }

static int tcp_pair(int sv[2]) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ls < 0) return -errno;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  int c = -1, s = -1;
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1) < 0 ||
      getsockname(ls, (struct sockaddr *)&a, &al) < 0)
    goto fail;
  c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) < 0) goto fail;
  s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  if (s < 0) goto fail;
  close(ls);
  sv[0] = c;
  sv[1] = s;
  return 0;
fail:;
  int err = -errno;
  close(ls);
  if (c >= 0) close(c);
  return err;
}

static int setup_make(setup_t *st, int kind) {
  memset(st, 0, sizeof *st);
  st->kind = kind;
  st->sock[0] = st->sock[1] = st->efd[0] = st->efd[1] = -1;
  st->seg.fd = -1;
  if (pipe2(st->ready, O_CLOEXEC) < 0) return -errno;
  uint32_t fsize = (uint32_t)(cfg.fifo_kb * 1024);
  int rv = 0;
  switch (kind) {
  case T_TCP:
  case T_UNIX:
    if (kind == T_TCP) {
      rv = tcp_pair(st->sock);
    } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st->sock) < 0) {
      rv = -errno;
    }
    if (rv < 0) return rv;
    for (int i = 0; i < 2; i++) {
      int one = 1;
      if (kind == T_TCP && setsockopt(st->sock[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return -errno;
      if (fcntl(st->sock[i], F_SETFL, O_NONBLOCK) < 0) return -errno;
    }
    return 0;
  case T_SHM:
  case T_VLS:
    for (int i = 0; i < 2; i++)
      if ((st->efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) return -errno;
    if (kind == T_SHM) {
      int fd = memfd_create("bench-shm", MFD_CLOEXEC);
      if (fd < 0) return -errno;
      st->shm_len = 2 * ring_footprint(fsize);
      if (ftruncate(fd, (off_t)st->shm_len) < 0) {
        close(fd);
        return -errno;
      }
      void *p = mmap(NULL, st->shm_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
      close(fd);
      if (p == MAP_FAILED) return -errno;
      st->shm_base = p;
      return 0;
    }
    rv = vls_segment_create(&st->seg, "vls-bench", 4ull * fsize + (1u << 20));
    if (rv < 0) return rv;
    for (int i = 0; i < 2; i++) {
      st->fifo_off[i] = vls_fifo_create(&st->seg, fsize);
      if (st->fifo_off[i] < 0) return (int)st->fifo_off[i];
      st->mq_off[i] = vls_mq_create(&st->seg, sizeof(bench_evt_t), (uint32_t)cfg.mq_elts);
      if (st->mq_off[i] < 0) return (int)st->mq_off[i];
    }
    return 0;
  }
  return -EINVAL;
}

static void setup_close(setup_t *st) {
  for (int i = 0; i < 2; i++) {
    if (st->sock[i] >= 0) close(st->sock[i]);
    if (st->efd[i] >= 0) close(st->efd[i]);
    if (st->ready[i] > 0) close(st->ready[i]);
    st->sock[i] = st->efd[i] = st->ready[i] = -1;
  }
  if (st->shm_base) munmap(st->shm_base, st->shm_len);
  st->shm_base = NULL;
  if (st->seg.base || st->seg.fd >= 0) vls_segment_detach(&st->seg);
}

/* Child: build this side's endpoint from the inherited setup. */
static void ep_init(ep_t *e, setup_t *st, int side, int mode) {
  memset(e, 0, sizeof *e);
  e->kind = st->kind;
  e->side = side;
  e->sock = e->efd_mine = e->efd_peer = -1;
  e->scratch = aligned_alloc(4096, VLS_ALIGN_UP((uint64_t)cfg.chunk, 4096));
  if (!e->scratch) die("out of memory");
  memset(e->scratch, 0x5a, (size_t)cfg.chunk);
  e->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (e->epfd < 0) die("epoll_create1: %s", strerror(errno));
  int wait_fd;
  uint32_t wait_events = EPOLLIN;
  uint32_t fsize = (uint32_t)(cfg.fifo_kb * 1024);
  switch (st->kind) {
  case T_TCP:
  case T_UNIX:
    e->sock = st->sock[side];
    close(st->sock[1 - side]);
    wait_fd = e->sock;
    if (mode == M_BULK && side == 0) wait_events = EPOLLOUT;
    break;
  case T_SHM:
    e->efd_mine = st->efd[side];
    e->efd_peer = st->efd[1 - side];
    ring_init_view(&e->tx_ring, st->shm_base + (size_t)side * ring_footprint(fsize), fsize);
    ring_init_view(&e->rx_ring, st->shm_base + (size_t)(1 - side) * ring_footprint(fsize), fsize);
    wait_fd = e->efd_mine;
    break;
  default: {
    e->efd_mine = st->efd[side];
    e->efd_peer = st->efd[1 - side];
    int rv;
    e->tx_off = (uint64_t)st->fifo_off[side];
    e->rx_off = (uint64_t)st->fifo_off[1 - side];
    if ((rv = vls_fifo_attach(&e->tx, &st->seg, e->tx_off)) < 0 ||
        (rv = vls_fifo_attach(&e->rx, &st->seg, e->rx_off)) < 0 ||
        (rv = vls_mq_attach(&e->my_mq, &st->seg, (uint64_t)st->mq_off[side], e->efd_mine)) < 0 ||
        (rv = vls_mq_attach(&e->peer_mq, &st->seg, (uint64_t)st->mq_off[1 - side], e->efd_peer)) < 0)
      die("vls attach: %s", vls_err_name(rv));
    wait_fd = e->efd_mine;
    break;
  }
  }
  struct epoll_event ev = {.events = wait_events, .data.fd = wait_fd};
  if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, wait_fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

/* ------------------------------------------------------------------------------------------ */
/* children                                                                                   */

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void run_pp_client(ep_t *e, const ops_t *o) {
  uint32_t len = (uint32_t)cfg.msg;
  uint8_t *msg = calloc(1, len), *rep = calloc(1, len);
  uint32_t *lat = malloc(sizeof(uint32_t) * (size_t)cfg.iters);
  if (!msg || !rep || !lat) die("out of memory");
  long total = cfg.warmup + cfg.iters;
  for (long i = 0; i < total; i++) {
    uint64_t seq = (uint64_t)i * 2654435761u + 1;
    memcpy(msg, &seq, sizeof seq);
    uint64_t t0 = now_ns();
    o->send(e, msg, len);
    o->recv(e, rep, len);
    uint64_t t1 = now_ns();
    if (memcmp(msg, rep, len)) die("echo mismatch at round trip %ld", i);
    if (i >= cfg.warmup) lat[i - cfg.warmup] = (uint32_t)VLS_MIN(t1 - t0, (uint64_t)UINT32_MAX);
  }
  double sum = 0;
  for (long i = 0; i < cfg.iters; i++) sum += lat[i];
  qsort(lat, (size_t)cfg.iters, sizeof *lat, cmp_u32);
  long n = cfg.iters;
  g_res->mean = sum / (double)n / 1000.0;
  g_res->min = lat[0] / 1000.0;
  g_res->p50 = lat[n / 2] / 1000.0;
  g_res->p99 = lat[(long)((double)n * 0.99)] / 1000.0;
  g_res->p999 = lat[(long)((double)n * 0.999)] / 1000.0;
  g_res->max = lat[n - 1] / 1000.0;
}

static void run_pp_server(ep_t *e, const ops_t *o) {
  uint32_t len = (uint32_t)cfg.msg;
  uint8_t *msg = calloc(1, len);
  if (!msg) die("out of memory");
  long total = cfg.warmup + cfg.iters;
  for (long i = 0; i < total; i++) {
    o->recv(e, msg, len);
    o->send(e, msg, len);
  }
}

static pid_t g_parent;

static pid_t spawn(setup_t *st, int side, int cpu, int mode) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  /* child */
  g_who = side == 0 ? "A" : "B";
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != g_parent) _exit(3);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  alarm((unsigned)cfg.timeout); /* default action: terminate */
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity(%d): %s", cpu, strerror(errno));
  ep_t e;
  ep_init(&e, st, side, mode);
  const ops_t *o = &t_ops[st->kind];
  char c = 'r';
  if (side == 1) {
    close(st->ready[0]);
    if (write(st->ready[1], &c, 1) != 1) die("ready pipe: %s", strerror(errno));
    close(st->ready[1]);
  } else {
    close(st->ready[1]);
    if (read(st->ready[0], &c, 1) != 1) die("peer did not start");
    close(st->ready[0]);
  }
  uint64_t warm = (uint64_t)cfg.bulk_warm_mb << 20, total = warm + ((uint64_t)cfg.bulk_mb << 20);
  if (mode == M_PP) {
    if (side == 0) run_pp_client(&e, o);
    else run_pp_server(&e, o);
  } else {
    if (side == 0) {
      if (!warm) {
        g_res->t0 = now_ns();
        g_res->sent0 = 0;
      }
      o->bulk_write(&e, total, warm);
    } else {
      o->bulk_read(&e, total);
      g_res->total = total;
    }
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  g_res->n_epoll[side] = g_n_epoll;
  g_res->vcsw[side] = (uint64_t)ru.ru_nvcsw;
  g_res->ivcsw[side] = (uint64_t)ru.ru_nivcsw;
  _exit(0);
}

/* ------------------------------------------------------------------------------------------ */
/* parent: run one test                                                                       */

typedef struct result {
  int ok;
  char err[256];
  double p50, p99, p999, mean, min, max, gbps;
  double epw, csw, icsw; /* both sides, per round trip (pp) or per MiB (bulk) */
} result_t;

static void reap_pair(pid_t pid[2], int status[2]) {
  int alive = 2;
  uint64_t deadline = now_ns() + (uint64_t)(cfg.timeout + 5) * 1000000000ull;
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  int killed = 0;
  while (alive) {
    for (int i = 0; i < 2; i++) {
      if (pid[i] <= 0) continue;
      int s;
      pid_t r = waitpid(pid[i], &s, WNOHANG);
      if (r == pid[i]) {
        status[i] = s;
        pid[i] = 0;
        alive--;
        /* one side failed: the other would wait forever */
        if (!(WIFEXITED(s) && WEXITSTATUS(s) == 0) && pid[1 - i] > 0 && !killed) {
          kill(pid[1 - i], SIGKILL);
          killed = 1;
        }
      }
    }
    if (!alive) break;
    uint64_t now = now_ns();
    if (now >= deadline) {
      for (int i = 0; i < 2; i++)
        if (pid[i] > 0) {
          kill(pid[i], SIGKILL);
          waitpid(pid[i], &status[i], 0);
          pid[i] = 0;
        }
      break;
    }
    uint64_t left = deadline - now;
    if (left > 200000000ull) left = 200000000ull;
    struct timespec ts = {.tv_sec = (time_t)(left / 1000000000ull), .tv_nsec = (long)(left % 1000000000ull)};
    sigtimedwait(&chld, NULL, &ts);
  }
}

static void describe_status(char *buf, size_t n, const char *who, int s) {
  if (WIFSIGNALED(s))
    snprintf(buf, n, "%s killed by signal %d%s", who, WTERMSIG(s),
             WTERMSIG(s) == SIGALRM ? " (timeout)" : "");
  else
    snprintf(buf, n, "%s exited with %d", who, WEXITSTATUS(s));
}

static result_t run_one(int kind, int placement, int mode, const int cpus[2]) {
  result_t res;
  memset(&res, 0, sizeof res);
  res.p50 = res.p99 = res.p999 = res.mean = res.min = res.max = res.gbps = NAN;
  memset(g_res, 0, sizeof *g_res);
  setup_t st;
  int rv = setup_make(&st, kind);
  if (rv < 0) {
    snprintf(res.err, sizeof res.err, "setup: %s (%s)", strerror(-rv), vls_err_name(rv));
    setup_close(&st);
    return res;
  }
  int cpu_a = cpus[0], cpu_b = placement == P_SAME ? cpus[0] : cpus[1];
  fflush(NULL);
  pid_t pid[2];
  int status[2] = {-1, -1};
  pid[1] = spawn(&st, 1, cpu_b, mode);
  pid[0] = pid[1] > 0 ? spawn(&st, 0, cpu_a, mode) : -1;
  setup_close(&st);
  if (pid[0] < 0 || pid[1] < 0) {
    if (pid[1] > 0) {
      kill(pid[1], SIGKILL);
      waitpid(pid[1], NULL, 0);
    }
    snprintf(res.err, sizeof res.err, "fork: %s", strerror(errno));
    return res;
  }
  reap_pair(pid, status);
  int good[2];
  for (int i = 0; i < 2; i++) good[i] = WIFEXITED(status[i]) && WEXITSTATUS(status[i]) == 0;
  if (!good[0] || !good[1]) {
    if (g_res->err[0]) {
      snprintf(res.err, sizeof res.err, "%s", g_res->err);
    } else {
      int i = good[0] ? 1 : 0;
      describe_status(res.err, sizeof res.err, i ? "B" : "A", status[i]);
    }
    return res;
  }
  res.ok = 1;
  double ops = mode == M_PP ? (double)(cfg.warmup + cfg.iters)
                            : (double)(cfg.bulk_mb + cfg.bulk_warm_mb);
  res.epw = (double)(g_res->n_epoll[0] + g_res->n_epoll[1]) / ops;
  res.csw = (double)(g_res->vcsw[0] + g_res->vcsw[1] + g_res->ivcsw[0] + g_res->ivcsw[1]) / ops;
  res.icsw = (double)(g_res->ivcsw[0] + g_res->ivcsw[1]) / ops;
  if (mode == M_PP) {
    res.p50 = g_res->p50;
    res.p99 = g_res->p99;
    res.p999 = g_res->p999;
    res.mean = g_res->mean;
    res.min = g_res->min;
    res.max = g_res->max;
  } else {
    if (g_res->t1 <= g_res->t0 || g_res->total <= g_res->sent0) {
      res.ok = 0;
      snprintf(res.err, sizeof res.err, "bulk: bad timestamps");
      return res;
    }
    res.gbps = (double)(g_res->total - g_res->sent0) / (double)(g_res->t1 - g_res->t0);
  }
  return res;
}

/* ------------------------------------------------------------------------------------------ */
/* aggregation and output                                                                     */

typedef struct cell {
  int ran, ok;
  char err[300];
  double *p50, *p99, *p999, *mean, *gbps; /* per rep */
  double *diag[M_N][3];                    /* per rep: epoll_waits, switches, involuntary */
  int n_pp, n_bulk;
} cell_t;

static cell_t cells[P_N][T_N];

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
  if (n <= 0) return NAN;
  double *t = malloc(sizeof(double) * (size_t)n);
  if (!t) return NAN;
  memcpy(t, v, sizeof(double) * (size_t)n);
  qsort(t, (size_t)n, sizeof *t, cmp_d);
  double m = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
  free(t);
  return m;
}

static void fmt_num(char *buf, size_t n, double v, int prec) {
  if (isnan(v)) snprintf(buf, n, "-");
  else snprintf(buf, n, "%.*f", prec, v);
}

static void json_num(double v) {
  if (isnan(v) || isinf(v)) printf("null");
  else printf("%.4f", v);
}

static void json_arr(const double *v, int n) {
  printf("[");
  for (int i = 0; i < n; i++) {
    if (i) printf(",");
    json_num(v[i]);
  }
  printf("]");
}

static double cell_med(const cell_t *c, int what) {
  switch (what) {
  case 0: return median(c->p50, c->n_pp);
  case 1: return median(c->p99, c->n_pp);
  case 2: return median(c->gbps, c->n_bulk);
  case 3: return median(c->p999, c->n_pp);
  default: return median(c->mean, c->n_pp);
  }
}

/* slowdown of vls vs shm: latency vls/shm, throughput shm/vls (so > 1 means vls is worse) */
static double ratio_vs(int p, int other, int what) {
  double v = cell_med(&cells[p][T_VLS], what), o = cell_med(&cells[p][other], what);
  if (isnan(v) || isnan(o) || v <= 0 || o <= 0) return NAN;
  return what == 2 ? o / v : v / o;
}

int main(int argc, char **argv) {
  config_init(argc, argv);
  g_parent = getpid();
  g_res = mmap(NULL, sizeof *g_res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (g_res == MAP_FAILED) {
    perror("mmap");
    return 2;
  }
  /* SIGCHLD stays pending for sigtimedwait; children restore an empty mask */
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  signal(SIGPIPE, SIG_IGN);

  cpu_set_t allowed;
  int cpus[2] = {0, 0}, n_cpus = 0;
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    for (int c = 0; c < CPU_SETSIZE && n_cpus < 2; c++)
      if (CPU_ISSET(c, &allowed)) cpus[n_cpus++] = c;
  }
  char note[200] = "";
  if (n_cpus < 2 && (cfg.p_mask & (1u << P_SPLIT))) {
    cfg.p_mask &= ~(1u << P_SPLIT);
    snprintf(note, sizeof note, "split-cpu skipped: only %d CPU available", n_cpus);
  }
  int n_run = 0, n_total = 0;
  for (int p = 0; p < P_N; p++)
    if (cfg.p_mask & (1u << p))
      for (int t = 0; t < T_N; t++)
        if (cfg.t_mask & (1u << t))
          for (int m = 0; m < M_N; m++) n_total += (cfg.m_mask >> m) & 1;
  n_total *= (int)cfg.reps;
  for (int p = 0; p < P_N; p++)
    for (int t = 0; t < T_N; t++) {
      cell_t *c = &cells[p][t];
      c->p50 = calloc((size_t)cfg.reps, sizeof(double));
      c->p99 = calloc((size_t)cfg.reps, sizeof(double));
      c->p999 = calloc((size_t)cfg.reps, sizeof(double));
      c->mean = calloc((size_t)cfg.reps, sizeof(double));
      c->gbps = calloc((size_t)cfg.reps, sizeof(double));
      for (int m = 0; m < M_N; m++)
        for (int k = 0; k < 3; k++) c->diag[m][k] = calloc((size_t)cfg.reps, sizeof(double));
      c->ok = 1;
    }
  double load_start = loadavg1();
  uint64_t t_start = now_ns();
  /* reps interleave the transports so slow drift in the machine hits all of them alike */
  for (int p = 0; p < P_N; p++) {
    if (!(cfg.p_mask & (1u << p))) continue;
    for (long r = 0; r < cfg.reps; r++)
      for (int t = 0; t < T_N; t++) {
        if (!(cfg.t_mask & (1u << t))) continue;
        cell_t *c = &cells[p][t];
        for (int m = 0; m < M_N; m++) {
          if (!(cfg.m_mask & (1u << m))) continue;
          n_run++;
          if (!cfg.json && isatty(STDERR_FILENO))
            fprintf(stderr, "\r[%3d/%3d] %-9s %-12s %-4s rep %ld   ", n_run, n_total, p_key[p],
                    t_name[t], m_key[m], r + 1);
          result_t res = run_one(t, p, m, cpus);
          c->ran = 1;
          if (!res.ok) {
            if (c->ok) snprintf(c->err, sizeof c->err, "%s %s: %s", m_key[m], p_key[p], res.err);
            c->ok = 0;
            fprintf(stderr, "%sbench: %s %s %s failed: %s\n", isatty(STDERR_FILENO) ? "\n" : "",
                    p_key[p], t_key[t], m_key[m], res.err);
            continue;
          }
          int slot = m == M_PP ? c->n_pp : c->n_bulk;
          c->diag[m][0][slot] = res.epw;
          c->diag[m][1][slot] = res.csw;
          c->diag[m][2][slot] = res.icsw;
          if (m == M_PP) {
            c->p50[c->n_pp] = res.p50;
            c->p99[c->n_pp] = res.p99;
            c->p999[c->n_pp] = res.p999;
            c->mean[c->n_pp] = res.mean;
            c->n_pp++;
          } else {
            c->gbps[c->n_bulk++] = res.gbps;
          }
        }
      }
  }
  double secs = (double)(now_ns() - t_start) / 1e9;
  double load_end = loadavg1();
  if (!cfg.json && isatty(STDERR_FILENO)) fprintf(stderr, "\r%70s\r", "");

  if (cfg.json) {
    printf("{\n  \"benchmark\": \"node-vls native ipc\",\n");
    printf("  \"config\": {\"iters\": %ld, \"warmup\": %ld, \"msg_bytes\": %ld, \"bulk_mib\": %ld, "
           "\"bulk_warm_mib\": %ld, \"chunk_bytes\": %ld, \"fifo_kib\": %ld, \"thresh_kib\": %ld, "
           "\"reps\": %ld, \"cpus\": [%d, %d], \"n_cpus\": %d, \"wait\": \"epoll_wait, "
           "level-triggered, nonblocking fds\", \"aggregate\": \"median of reps\"},\n",
           cfg.iters, cfg.warmup, cfg.msg, cfg.bulk_mb, cfg.bulk_warm_mb, cfg.chunk, cfg.fifo_kb,
           cfg.thresh_kb, cfg.reps, cpus[0], cpus[1], n_cpus);
    printf("  \"seconds\": %.1f,\n  \"loadavg1\": {\"start\": %.2f, \"end\": %.2f},\n", secs,
           load_start, load_end);
    printf("  \"notes\": [%s%s%s],\n", note[0] ? "\"" : "", note, note[0] ? "\"" : "");
    printf("  \"results\": [");
    int first = 1;
    for (int p = 0; p < P_N; p++)
      for (int t = 0; t < T_N; t++) {
        cell_t *c = &cells[p][t];
        if (!c->ran) continue;
        printf("%s\n    {\"placement\": \"%s\", \"transport\": \"%s\", \"ok\": %s, ", first ? "" : ",",
               p_key[p], t_key[t], c->ok ? "true" : "false");
        first = 0;
        printf("\"p50_us\": ");
        json_num(cell_med(c, 0));
        printf(", \"p99_us\": ");
        json_num(cell_med(c, 1));
        printf(", \"p999_us\": ");
        json_num(cell_med(c, 3));
        printf(", \"mean_us\": ");
        json_num(cell_med(c, 4));
        printf(", \"bulk_gbps\": ");
        json_num(cell_med(c, 2));
        printf(", \"pp_per_round_trip\": {\"epoll_waits\": ");
        json_num(median(c->diag[M_PP][0], c->n_pp));
        printf(", \"context_switches\": ");
        json_num(median(c->diag[M_PP][1], c->n_pp));
        printf(", \"involuntary\": ");
        json_num(median(c->diag[M_PP][2], c->n_pp));
        printf("}, \"bulk_per_mib\": {\"epoll_waits\": ");
        json_num(median(c->diag[M_BULK][0], c->n_bulk));
        printf(", \"context_switches\": ");
        json_num(median(c->diag[M_BULK][1], c->n_bulk));
        printf(", \"involuntary\": ");
        json_num(median(c->diag[M_BULK][2], c->n_bulk));
        printf("}");
        printf(", \"runs\": {\"p50_us\": ");
        json_arr(c->p50, c->n_pp);
        printf(", \"p99_us\": ");
        json_arr(c->p99, c->n_pp);
        printf(", \"bulk_gbps\": ");
        json_arr(c->gbps, c->n_bulk);
        printf("}");
        if (!c->ok) {
          printf(", \"error\": \"");
          for (const char *s = c->err; *s; s++)
            if (*s != '"' && *s != '\\' && (unsigned char)*s >= 32) putchar(*s);
          printf("\"");
        }
        printf("}");
      }
    printf("\n  ],\n  \"ratios\": {");
    first = 1;
    for (int p = 0; p < P_N; p++) {
      if (!(cfg.p_mask & (1u << p))) continue;
      printf("%s\n    \"%s\": {\"vls_over_shm\": {\"p50\": ", first ? "" : ",", p_key[p]);
      first = 0;
      json_num(ratio_vs(p, T_SHM, 0));
      printf(", \"p99\": ");
      json_num(ratio_vs(p, T_SHM, 1));
      printf(", \"bulk\": ");
      json_num(ratio_vs(p, T_SHM, 2));
      printf("}, \"vls_over_tcp\": {\"p50\": ");
      json_num(ratio_vs(p, T_TCP, 0));
      printf(", \"p99\": ");
      json_num(ratio_vs(p, T_TCP, 1));
      printf(", \"bulk\": ");
      json_num(ratio_vs(p, T_TCP, 2));
      printf("}}");
    }
    printf("\n  },\n  \"ratio_convention\": \"latency: vls/other; bulk: other/vls; so > 1 means "
           "vls is slower, target vls_over_shm <= 1.2\"\n}\n");
  } else {
    printf("node-vls native IPC benchmark: 2 processes, every side waits in epoll_wait "
           "(level-triggered, nonblocking fds)\n");
    printf("  ping-pong: %ld-byte messages, %ld timed round trips after %ld warm-up; latency in "
           "microseconds\n",
           cfg.msg, cfg.iters, cfg.warmup);
    printf("  bulk: %ld MiB one way in %ld-byte writes (+%ld MiB warm-up); ring/fifo %ld KiB, "
           "writer wakes at %ld KiB free; GB/s = 1e9 B/s\n",
           cfg.bulk_mb, cfg.chunk, cfg.bulk_warm_mb, cfg.fifo_kb, cfg.thresh_kb);
    printf("  each cell: median of %ld runs; same = both on CPU %d", cfg.reps, cpus[0]);
    if (cfg.p_mask & (1u << P_SPLIT)) printf(", split = A on CPU %d, B on CPU %d", cpus[0], cpus[1]);
    printf("\n");
    if (note[0]) printf("  note: %s\n", note);
    printf("\n%-14s", "");
    for (int p = 0; p < P_N; p++)
      if (cfg.p_mask & (1u << p))
        printf("| %-32s", p == P_SAME ? "same CPU" : "split CPUs");
    printf("\n%-14s", "transport");
    for (int p = 0; p < P_N; p++)
      if (cfg.p_mask & (1u << p)) printf("| %8s %8s %11s   ", "p50 us", "p99 us", "bulk GB/s");
    printf("\n");
    char sep[200];
    int w = 14;
    for (int p = 0; p < P_N; p++) w += (cfg.p_mask >> p & 1) ? 34 : 0;
    memset(sep, '-', (size_t)w);
    sep[w] = 0;
    printf("%s\n", sep);
    for (int t = 0; t < T_N; t++) {
      if (!(cfg.t_mask & (1u << t))) continue;
      printf("%-14s", t_name[t]);
      for (int p = 0; p < P_N; p++) {
        if (!(cfg.p_mask & (1u << p))) continue;
        cell_t *c = &cells[p][t];
        char a[32], b[32], g[32];
        fmt_num(a, sizeof a, cell_med(c, 0), 2);
        fmt_num(b, sizeof b, cell_med(c, 1), 2);
        fmt_num(g, sizeof g, cell_med(c, 2), 2);
        printf("| %8s %8s %11s %s ", a, b, g, c->ok ? " " : "!");
      }
      printf("\n");
    }
    printf("%s\n", sep);
    const char *lbl[2] = {"vls/bare shm", "vls/TCP"};
    int other[2] = {T_SHM, T_TCP};
    for (int k = 0; k < 2; k++) {
      if (!(cfg.t_mask & (1u << T_VLS)) || !(cfg.t_mask & (1u << other[k]))) continue;
      printf("%-14s", lbl[k]);
      for (int p = 0; p < P_N; p++) {
        if (!(cfg.p_mask & (1u << p))) continue;
        char a[32], b[32], g[32];
        for (int wh = 0; wh < 3; wh++) {
          double v = ratio_vs(p, other[k], wh);
          char *dst = wh == 0 ? a : wh == 1 ? b : g;
          if (isnan(v)) snprintf(dst, 32, "-");
          else snprintf(dst, 32, "%.2fx", v);
        }
        printf("| %8s %8s %11s   ", a, b, g);
      }
      printf("\n");
    }
    printf("(ratios are slowdowns of vls core: latency vls/other, bulk other/vls; < 1 means vls "
           "is faster. target: vls/bare shm <= 1.20x)\n");
    if (cfg.t_mask & (1u << T_VLS) && cfg.t_mask & (1u << T_SHM)) {
      static const char *const what[3] = {"p50", "p99", "bulk"};
      printf("target vls core <= 1.20x bare shm:");
      for (int wh = 0; wh < 3; wh++) {
        int met = 1, any = 0;
        char worst[64] = "";
        double wv = 0;
        for (int p = 0; p < P_N; p++) {
          if (!(cfg.p_mask & (1u << p))) continue;
          double v = ratio_vs(p, T_SHM, wh);
          if (isnan(v)) continue;
          any = 1;
          if (v > 1.2) met = 0;
          if (v > wv) {
            wv = v;
            snprintf(worst, sizeof worst, "%.2fx %s", v, p_key[p]);
          }
        }
        if (any) printf("  %s %s (worst %s)", what[wh], met ? "met" : "MISSED", worst);
      }
      printf("\n");
    }
    /* how each transport slept: explains most differences */
    printf("\nwake-ups, both processes together: epoll_wait calls (epw) and context switches (csw) "
           "per round trip; epw per MiB for bulk\n%-14s", "");
    for (int p = 0; p < P_N; p++)
      if (cfg.p_mask & (1u << p)) printf("| %-32s", p == P_SAME ? "same CPU" : "split CPUs");
    printf("\n%-14s", "transport");
    for (int p = 0; p < P_N; p++)
      if (cfg.p_mask & (1u << p)) printf("| %8s %8s %11s   ", "pp epw", "pp csw", "bulk epw");
    printf("\n");
    for (int t = 0; t < T_N; t++) {
      if (!(cfg.t_mask & (1u << t))) continue;
      printf("%-14s", t_name[t]);
      for (int p = 0; p < P_N; p++) {
        if (!(cfg.p_mask & (1u << p))) continue;
        cell_t *c = &cells[p][t];
        char a[32], b[32], g[32];
        fmt_num(a, sizeof a, median(c->diag[M_PP][0], c->n_pp), 2);
        fmt_num(b, sizeof b, median(c->diag[M_PP][1], c->n_pp), 2);
        fmt_num(g, sizeof g, median(c->diag[M_BULK][0], c->n_bulk), 1);
        printf("| %8s %8s %11s   ", a, b, g);
      }
      printf("\n");
    }
    for (int p = 0; p < P_N; p++)
      for (int t = 0; t < T_N; t++)
        if (cells[p][t].ran && !cells[p][t].ok)
          printf("! %s %s failed: %s\n", p_key[p], t_name[t], cells[p][t].err);
    printf("total %.1f s; 1-min load average %.2f at start, %.2f at end\n", secs, load_start,
           load_end);
    if (load_start > 0.5 || load_end > 2.5)
      printf("warning: other processes were competing for the pinned CPUs (the benchmark itself adds "
             "~2 to the load); p99 and bulk numbers are unreliable, rerun on an idle machine\n");
  }
  int bad = 0;
  for (int p = 0; p < P_N; p++)
    for (int t = 0; t < T_N; t++) bad |= cells[p][t].ran && !cells[p][t].ok;
  return bad ? 1 : 0;
}
