/*
 * App worker: a vls_worker attached to a namespace, with its control channel.
 *
 *                 kernel epoll fd (the one fd the event loop polls)
 *                  |-- worker eventfd       -> vls_worker_poll -> session readiness
 *                  |-- control listen socket (AF_UNIX SOCK_SEQPACKET, <rundir>/w<index>.sock)
 *                  '-- one control connection per peer worker
 *
 * Cut-through connect, as it crosses the control channel:
 *
 *   connector                                  acceptor
 *   vls_app_connect(path, lh, meta), first to this peer:
 *     HELLO {index, secret, mq_off} + [segment fd, eventfd]  -->  add peer
 *   add peer                    <-- HELLO_ACK + [segment fd, eventfd]   (or HELLO_NAK: EACCES)
 *   then (and at once for every later connect to this peer):
 *   vls_connect_ct: the pair, in our segment for this peer
 *     CONNECT {ch, lh, tag, ct_off, meta} [+ ct segment fd, once]  -->  attach the segment,
 *                                                                 vls_accept_ct + vls_accept
 *                                                                 app event ACCEPT(lh, sh, meta)
 *   app event CONNECTED(ch)      <-- CONNECT_OK (only when asked: the listener is not known)
 *   app event CONNECT_FAILED(ch) <-- CONNECT_ERR {err}  (no such listener)
 *
 * A listener that accepted one of our connects on this control connection is known, and a connect
 * to it needs no answer: as with a loopback TCP connect, which the kernel completes inside
 * connect(), vls_app_connect returns it connected and its first bytes go out before the
 * acceptor's process has run. The acceptor's handle, which the connector's events must name, is
 * in the pair (vls_accept_ct). A known listener that refuses (it closed meanwhile) resets the
 * connection made, as a kernel listener that closes with connections it did not accept; it is not
 * known any more. A listener not known is waited for, so a stale registry entry is refused before
 * the application sees a connection (and the caller can go to the kernel instead).
 *
 * The control connection's hang-up is how a peer learns that the other side died: every session
 * with that peer is reset. A malformed message closes the connection it came on (that peer's
 * sessions reset) and nothing else. Messages are fixed-size records on a SOCK_SEQPACKET socket, so
 * a record never arrives torn; each is checked (size, magic, version, type) before use.
 */
#ifndef VLS_APP_H
#define VLS_APP_H

#include "vls_session.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VLS_META_MAX 128
#define VLS_SECRET_LEN 32

typedef struct vls_app vls_app_t;

typedef struct vls_app_cfg {
  vls_worker_cfg_t wrk;
  const char *sock_path;                /* control socket to bind (must not exist) */
  uint8_t secret[VLS_SECRET_LEN];       /* digest of VLS_SECRET, zeros for none */
} vls_app_cfg_t;

#define VLS_APP_EVTS(X)                                                                            \
  X(ACCEPT)         /* handle: listener, handle2: new session, meta: the connector's */             \
  X(CONNECTED)      /* handle: session (a connect that waited for the listener's answer) */         \
  X(CONNECT_FAILED) /* handle: session, err */                                                      \
  X(IO)             /* handle: session, events: EPOLL bits (edge-triggered) */                      \
  X(PEER_DOWN)      /* handle: peer worker index, err: why */                                     \
  X(STAT)           /* a status query: answer with vls_app_stat_reply(handle, handle2, ...) */

typedef enum vls_app_evt_type {
  VLS_AE_NONE = 0,
#define X(e) VLS_AE_##e,
  VLS_APP_EVTS(X)
#undef X
} vls_app_evt_type_t;

typedef struct vls_app_evt {
  uint32_t type;
  uint32_t events;
  uint64_t handle;
  uint64_t handle2;
  int32_t err;
  uint16_t meta_len;
  uint8_t meta[VLS_META_MAX];
} vls_app_evt_t;

/* Bind the control socket and create the worker. -EADDRINUSE when the path exists (the caller
 * decides whether it is stale: vls_app_probe). */
int vls_app_create(vls_app_t **out, const vls_app_cfg_t *cfg);
/* Attach to a namespace directory: take the namespace lock, pick the lowest free worker index
 * (a socket file whose owner died is taken over), bind <dir>/w<index>.sock. cfg->wrk.index and
 * cfg->sock_path are ignored and filled in. -EMFILE when all VLS_MAX_WORKERS indices are taken. */
int vls_app_attach_ns(vls_app_t **out, vls_app_cfg_t *cfg, const char *dir);
/* The namespace lock (flock on <dir>/.lock): serialises index allocation and registry updates
 * between processes; released by the kernel if the holder dies. Returns the fd to pass to unlock. */
int vls_ns_lock(const char *dir);
void vls_ns_unlock(int fd);
const char *vls_app_sock_path(const vls_app_t *app);
/* Close every session (peers see resets), the control channel, unlink the socket, free. */
void vls_app_destroy(vls_app_t *app);
vls_worker_t *vls_app_worker(vls_app_t *app);
/* The kernel epoll fd that becomes readable when vls_app_poll has something to do: control
 * sockets, IO events, and control events queued by a call outside it (vls_app_connect fails the
 * connects waiting on a control connection it finds hung up) or left over from a full array. */
int vls_app_fd(const vls_app_t *app);
/* Is a control socket alive? 0: a worker answers; -ECONNREFUSED / -ENOENT: stale or absent. */
int vls_app_probe(const char *sock_path);

/* Cut-through connect to listener `lh` of the worker at `peer_sock`, with the new session handle in
 * *ch. Returns 1 when the session is connected now (a listener known on a live control
 * connection; no event follows), 0 when the outcome arrives as CONNECTED or CONNECT_FAILED (the
 * first connect to that listener, or to that worker). Fails at once with -ECONNREFUSED when
 * nobody answers at that path. */
int vls_app_connect(vls_app_t *app, const char *peer_sock, uint64_t lh, uint64_t tag,
                    const void *meta, uint32_t meta_len, uint64_t *ch);
/* Do pending work and collect events (at most max). Never blocks. */
int vls_app_poll(vls_app_t *app, vls_app_evt_t *evs, int max);
/* Take the worker's eventfd out of vls_app_fd() and return it, for a caller that watches the two
 * fds separately (the addon: one uv_poll each). When only the eventfd woke, the caller passes
 * VLS_APP_POLL_IO_ONLY and skips the control sockets (one epoll_wait syscall less per message);
 * when vls_app_fd() woke, it calls with 0 as before. */
int vls_app_split_eventfd(vls_app_t *app);
#define VLS_APP_POLL_IO_ONLY 1u
int vls_app_poll_ex(vls_app_t *app, vls_app_evt_t *evs, int max, unsigned flags);
/* Sessions and listeners made through the app are registered edge-triggered for IO events.
 * `tag` names the endpoint (nonzero); a connect must name the same tag, so a stale registry entry
 * can never reach a different listener that happens to have the same handle in a new worker. */
int vls_app_listen(vls_app_t *app, uint32_t backlog, uint64_t tag, uint64_t *lh);
/* Close a session or listener and forget its registration. */
int vls_app_close(vls_app_t *app, uint64_t h);
int vls_app_reset(vls_app_t *app, uint64_t h);

/* Answer a STAT event with a snapshot (JSON); the asker's connection is closed after it. */
int vls_app_stat_reply(vls_app_t *app, uint32_t conn, uint32_t serial, const void *data,
                       uint32_t len);
/* Ask the worker at sock_path for its snapshot (blocking, up to timeout_ms); returns its length. */
int vls_stat_query(const char *sock_path, void *buf, uint32_t cap, int timeout_ms);

typedef struct vls_app_stats {
  uint32_t n_ctrl;       /* control connections */
  uint64_t ctrl_bad;     /* malformed control messages (their connections were closed) */
  uint64_t ctrl_refused; /* connects refused (bad secret, no such listener) */
} vls_app_stats_t;
int vls_app_stats(const vls_app_t *app, vls_app_stats_t *st);

#ifdef __cplusplus
}
#endif

#endif
