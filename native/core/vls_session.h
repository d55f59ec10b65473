/*
 * Workers and sessions: the public API of the native core (what the Node binding calls).
 *
 * A worker is one event consumer: a process, or a thread of one. It owns
 *   - a segment, holding its message queue (the fifo pairs of the sessions it connects live in
 *     one segment per peer),
 *   - an eventfd, the only thing its event loop waits on for all of its sessions,
 *   - a session table, handle-addressed with generations (a stale handle is refused with EBADF),
 *   - a peer table: the workers it has sessions with (their segment and message queue), itself
 *     included as peer 0.
 *
 * A cut-through session is a pair of sessions, one per worker, joined by a pair of fifos in the
 * connector's segment (the "ct pair"). The connector writes into fifo 0 and reads fifo 1; the
 * acceptor the other way round. The connector makes the pair and is connected at once, as a
 * loopback TCP connect completes inside the connecting call: it may write before the acceptor
 * has attached, and the acceptor finds those bytes (and a FIN or reset) on the pair when it does.
 * Control travels as 32-byte events in the receiving worker's message queue:
 *
 *   writer: vls_write -> fifo enqueue -> has_event 0->1 ? mq_send(peer, RX) -> eventfd (if empty)
 *   reader: eventfd wakes loop -> vls_worker_poll drains mq -> session readiness -> epoll ready
 *           list -> vls_epoll_wait reports EPOLLIN -> vls_read -> fifo dequeue
 *           -> writer asked for room ? mq_send(writer, TX)
 *
 * States follow VPP's session layer (see vls_session_state_str). Close and reset are distinct:
 * close queues end-of-stream behind the data already written (the peer reads everything, then
 * EOF); reset drops what is queued and the peer's next read fails with ECONNRESET.
 *
 * Every call returns >= 0 or a negative errno.
 */
#ifndef VLS_SESSION_H
#define VLS_SESSION_H

#include <stdint.h>

#include "vls_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VLS_SESSION_STATES(X)                                                                      \
  X(CREATED)                                                                                       \
  X(LISTENING)                                                                                     \
  X(ACCEPTING)                                                                                     \
  X(CONNECTING)                                                                                    \
  X(READY)                                                                                         \
  X(TRANSPORT_CLOSING)                                                                             \
  X(CLOSING)                                                                                       \
  X(APP_CLOSED)                                                                                    \
  X(TRANSPORT_CLOSED)                                                                              \
  X(CLOSED)

typedef enum vls_session_state {
#define X(s) VLS_SS_##s,
  VLS_SESSION_STATES(X)
#undef X
      VLS_SS_N
} vls_session_state_t;

const char *vls_session_state_str(int state);

#define VLS_EVT_TYPES(X)                                                                           \
  X(RX)      /* bytes arrived in the session's rx fifo */                                          \
  X(TX)      /* room freed in the session's tx fifo (dequeue notification) */                      \
  X(FIN)     /* the peer will send no more (its eof follows its last byte) */                      \
  X(RESET)   /* the peer reset the session */                                                      \
  X(CT_FREE) /* the last user of a ct pair in our segment let go of it: free it */

typedef enum vls_evt_type {
  VLS_EVT_NONE = 0,
#define X(e) VLS_EVT_##e,
  VLS_EVT_TYPES(X)
#undef X
      VLS_EVT_N
} vls_evt_type_t;

const char *vls_evt_str(int type);

/* Fixed-size event, as it sits in a worker's message queue. */
typedef struct vls_evt {
  uint16_t type;
  uint16_t flags;
  uint32_t aux;
  uint64_t handle; /* the receiving worker's session handle */
  uint64_t arg;
  uint64_t arg2;
} vls_evt_t;

typedef struct vls_worker vls_worker_t;

typedef struct vls_worker_cfg {
  uint32_t index;        /* worker index in its namespace, < VLS_MAX_WORKERS */
  uint64_t segment_size; /* virtual size of each per-peer fifo segment (pages are touched lazily) */
  uint32_t fifo_size;    /* bytes per fifo, a power of two */
  uint32_t mq_size;      /* events in the worker's queue, a power of two */
  const char *name;      /* memfd name, for /proc/<pid>/fd listings */
} vls_worker_cfg_t;

/* Session flags, as reported by vls_session_info(). */
#define VLS_SF_SHUT_WR (1u << 0)      /* we sent FIN */
#define VLS_SF_SHUT_RD (1u << 1)      /* we will read no more */
#define VLS_SF_PEER_SHUT_WR (1u << 2) /* the peer sent FIN */
#define VLS_SF_PEER_RESET (1u << 3)   /* the peer reset the session */
#define VLS_SF_SHARED (1u << 4)       /* reachable from more than one worker: VLS locks in use */
#define VLS_SF_LISTENER (1u << 5)
#define VLS_SF_EPOLL (1u << 6)
#define VLS_SF_APP_GONE (1u << 7) /* the application closed its handle */

typedef struct vls_session_info {
  int state;
  uint32_t flags;
  int err;              /* pending error (negative errno) or 0 */
  uint32_t peer;        /* peer id in the worker's peer table */
  uint32_t side;        /* 0: connector (fifos live in our segment), 1: acceptor */
  uint32_t rx_used, tx_used, fifo_size;
  uint64_t bytes_in, bytes_out;
  uint64_t peer_handle;
  uint32_t accept_queued; /* listeners: connections waiting in accept() */
  uint32_t backlog;
  uint64_t opaque;
} vls_session_info_t;

typedef struct vls_worker_stats {
  uint32_t index;
  uint32_t n_sessions; /* sessions and listeners (epoll sets not counted) */
  uint32_t n_peers;
  uint64_t evts_in, evts_out, evts_stale, evts_deferred, mq_full;
  uint64_t wakeups; /* eventfd writes to peers that had announced sleep */
  uint64_t ep_visits;
  uint64_t segment_size, segment_used;
} vls_worker_stats_t;

int vls_worker_create(vls_worker_t **out, const vls_worker_cfg_t *cfg);
/* Resets every live session for its peer, frees everything, closes the eventfd and segment. */
void vls_worker_destroy(vls_worker_t *w);
int vls_worker_index(const vls_worker_t *w);
int vls_worker_eventfd(const vls_worker_t *w);
/* What a peer needs to reach this worker: its segment fd and message-queue offset. */
int vls_worker_segment_fd(const vls_worker_t *w);
uint64_t vls_worker_mq_offset(const vls_worker_t *w);
int vls_worker_stats(const vls_worker_t *w, vls_worker_stats_t *st);

/* Register another worker as a peer. Takes ownership of seg_fd and efd on success. Returns the peer
 * id (> 0; 0 is the worker itself). */
int vls_worker_add_peer(vls_worker_t *w, uint32_t peer_index, int seg_fd, uint64_t mq_off, int efd);
/* fd of the segment holding the fifo pairs of sessions we connect to this peer (created on first
 * use); the acceptor attaches it with vls_peer_attach_ct_segment(). Not a new fd: do not close. */
int vls_peer_ct_segment_fd(vls_worker_t *w, uint32_t peer_id);
/* Acceptor side: attach the peer's fifo segment for us. Takes ownership of fd on success;
 * -EALREADY (fd untouched) when one is attached already. */
int vls_peer_attach_ct_segment(vls_worker_t *w, uint32_t peer_id, int fd);
/* The peer is gone (its control channel hung up, or it was declared dead): every session with it
 * is reset (err ECONNRESET), and its segment is unmapped once no session uses it. */
int vls_worker_peer_down(vls_worker_t *w, uint32_t peer_id);

/* A second thread will use this worker: from now on every call takes the worker lock. */
int vls_worker_thread_register(vls_worker_t *w);

/* Drain the message queue and apply the events; returns the number of events applied. Also
 * retries events that could not be posted earlier because a peer's queue was full. */
int vls_worker_poll(vls_worker_t *w);
/* Events still waiting to be posted to full peer queues (the loop should retry soon). */
int vls_worker_deferred(const vls_worker_t *w);
/* What the kernel does to the sockets of a process that exits: FIN behind queued bytes for each
 * live session (reset where received data was left unread, or nobody accepted it). Called by
 * vls_worker_destroy; an app calls it before it hangs up its control connections, so that peers
 * see the FINs before the hang-up. */
void vls_worker_close_all(vls_worker_t *w);
/* Busy polling (the VLS_POLL_USEC idea, after Onload's EF_POLL_USEC): while on, the worker never
 * tells its producers it may sleep, so they write no eventfd; the caller polls
 * vls_worker_has_work() instead of sleeping, and clears the eventfd itself when it fires. Turn it
 * off, then call vls_worker_poll() once: it announces sleep with the usual re-check. */
void vls_worker_set_busy_poll(vls_worker_t *w, int on);
/* Cheap (no syscall): 1 when vls_worker_poll() would find something (queued events, deferred
 * sends, readiness raised by our own calls). */
int vls_worker_has_work(vls_worker_t *w);
/* Reset the worker's eventfd (non-blocking). */
void vls_worker_clear_eventfd(vls_worker_t *w);

/* Sessions. Handles are >= 1 and fit in 53 bits (safe as JavaScript numbers). */
int vls_listen(vls_worker_t *w, uint32_t backlog, uint64_t *lh);
/* A session that will connect (CONNECTING). */
int vls_connect_start(vls_worker_t *w, uint64_t *ch);
/* Connector half of a cut-through connect: make the ct pair in our segment for this peer and
 * become READY at once. The peer's listener gets ct_off (vls_accept_ct). */
int vls_connect_ct(vls_worker_t *w, uint64_t ch, uint32_t peer_id, uint64_t *ct_off);
/* Acceptor half: attach the connector's pair at ct_off (in the segment it sent us) as an ACCEPTING
 * session queued on the listener, with what the connector already wrote readable. -EAGAIN when the
 * accept queue is full, -EINVAL when lh is not a listener, -EPROTO for a pair that is not a fresh
 * one in that segment. */
int vls_accept_ct(vls_worker_t *w, uint64_t lh, uint32_t peer_id, uint64_t client_handle,
                  uint64_t ct_off, uint64_t *server_handle);
/* The peer's listener refused a connect made with vls_connect_ct (it closed meanwhile): to the
 * connector the connection is reset (err, as from the peer); the pair, which the acceptor never
 * attached, is freed once the session lets go of it. */
int vls_connect_refused(vls_worker_t *w, uint64_t ch, uint32_t peer_id, uint64_t ct_off, int err);
/* A connect that failed before it was made (refused, timed out): the session reports the error. */
int vls_connect_fail(vls_worker_t *w, uint64_t ch, int err);
int vls_accept(vls_worker_t *w, uint64_t lh, uint64_t *h);

/* Data. write: bytes taken, -EAGAIN when full (a dequeue notification is armed, EPOLLOUT follows
 * when room frees), -EPIPE after shutdown, the pending error after a reset. */
int vls_write(vls_worker_t *w, uint64_t h, const void *buf, uint32_t len);
/* writev as one multi-segment enqueue; all_or_nothing keeps a unit together (datagrams). */
int vls_writev(vls_worker_t *w, uint64_t h, const vls_iov_t *iov, uint32_t n, int all_or_nothing);
/* read: bytes read, 0 at end-of-stream, -EAGAIN when nothing is there, the pending error once.
 * A read that returns less than len emptied the fifo: the reader need not call again until the
 * next EPOLLIN (bytes that raced in meanwhile raise one). */
int vls_read(vls_worker_t *w, uint64_t h, void *buf, uint32_t len);
int vls_peek(vls_worker_t *w, uint64_t h, void *buf, uint32_t len);

#define VLS_SHUT_RD 0
#define VLS_SHUT_WR 1
#define VLS_SHUT_RDWR 2
int vls_shutdown(vls_worker_t *w, uint64_t h, int how);
/* Close: FIN behind queued data; the handle is invalid afterwards. Unread received data turns the
 * close into a reset, as with TCP. */
int vls_close(vls_worker_t *w, uint64_t h);
/* Reset: drop queued data; the peer sees ECONNRESET. The handle is invalid afterwards. */
int vls_reset(vls_worker_t *w, uint64_t h);
/* Mark a session as reachable from another worker (after a fork): VLS locks are taken from now. */
int vls_session_share(vls_worker_t *w, uint64_t h);
int vls_session_info(vls_worker_t *w, uint64_t h, vls_session_info_t *info);
int vls_session_set_opaque(vls_worker_t *w, uint64_t h, uint64_t opaque);
/* Iterate live sessions: returns the next handle after `after` (0 starts), 0 at the end. */
uint64_t vls_session_next(vls_worker_t *w, uint64_t after);

/* Epoll emulation over session handles. Event bits have Linux's values. */
#define VLS_EPOLLIN 0x001u
#define VLS_EPOLLOUT 0x004u
#define VLS_EPOLLERR 0x008u
#define VLS_EPOLLHUP 0x010u
#define VLS_EPOLLRDHUP 0x2000u
#define VLS_EPOLLONESHOT (1u << 30)
#define VLS_EPOLLET (1u << 31)
#define VLS_EPOLL_CTL_ADD 1
#define VLS_EPOLL_CTL_DEL 2
#define VLS_EPOLL_CTL_MOD 3

typedef struct vls_epoll_event {
  uint32_t events;
  uint64_t data;
} vls_epoll_event_t;

int vls_epoll_create(vls_worker_t *w, uint64_t *eph);
int vls_epoll_ctl(vls_worker_t *w, uint64_t eph, int op, uint64_t h, const vls_epoll_event_t *ev);
/* timeout_ms: 0 returns at once, > 0 waits at most that long, < 0 waits until an event. */
int vls_epoll_wait(vls_worker_t *w, uint64_t eph, vls_epoll_event_t *evs, int max, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
