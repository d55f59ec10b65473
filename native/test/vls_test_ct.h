/* Helpers shared by the session and epoll tests: link two workers and open cut-through sessions
 * between them the way the control channel does (connect half, then accept half). */
#ifndef VLS_TEST_CT_H
#define VLS_TEST_CT_H

#include <unistd.h>

#include "vls_session.h"
#include "vls_test.h"

static inline vls_worker_t *mk_worker(uint32_t index, uint32_t fifo_size, uint32_t mq_size) {
  vls_worker_t *w;
  vls_worker_cfg_t cfg = {.index = index, .segment_size = 1ull << 30, .fifo_size = fifo_size,
                          .mq_size = mq_size, .name = "test"};
  CHECK_EQ(vls_worker_create(&w, &cfg), 0);
  return w;
}

/* Make each worker a peer of the other; returns the peer ids through the pointers. */
static inline void link_workers(vls_worker_t *a, vls_worker_t *b, uint32_t *a_sees_b, uint32_t *b_sees_a) {
  int p = vls_worker_add_peer(a, (uint32_t)vls_worker_index(b), dup(vls_worker_segment_fd(b)),
                              vls_worker_mq_offset(b), dup(vls_worker_eventfd(b)));
  CHECK(p > 0);
  *a_sees_b = (uint32_t)p;
  p = vls_worker_add_peer(b, (uint32_t)vls_worker_index(a), dup(vls_worker_segment_fd(a)),
                          vls_worker_mq_offset(a), dup(vls_worker_eventfd(a)));
  CHECK(p > 0);
  *b_sees_a = (uint32_t)p;
}

/* Give srv (seeing cli as srv_peer) cli's fifo segment for their sessions, as the first CONNECT
 * on a control connection does. */
static inline void ct_share_segment(vls_worker_t *srv, uint32_t srv_peer, vls_worker_t *cli,
                                    uint32_t cli_peer) {
  if (cli == srv) return;
  int fd = vls_peer_ct_segment_fd(cli, cli_peer);
  CHECK(fd >= 0);
  int d = dup(fd);
  int rv = vls_peer_attach_ct_segment(srv, srv_peer, d);
  if (rv == -EALREADY) close(d);
  else CHECK_EQ(rv, 0);
}

/* Connect cli (seeing srv as peer cli_peer) to listener lh of srv (seeing cli as srv_peer), the way
 * the control channel does: the connector makes the pair and is connected, then the acceptor
 * attaches it and accepts. */
static inline void ct_connect(vls_worker_t *srv, uint64_t lh, uint32_t srv_peer, vls_worker_t *cli,
                       uint32_t cli_peer, uint64_t *ch, uint64_t *sh) {
  uint64_t ct_off, acc;
  CHECK_EQ(vls_connect_start(cli, ch), 0);
  CHECK_EQ(vls_connect_ct(cli, *ch, cli_peer, &ct_off), 0);
  ct_share_segment(srv, srv_peer, cli, cli_peer);
  CHECK_EQ(vls_accept_ct(srv, lh, srv_peer, *ch, ct_off, &acc), 0);
  CHECK_EQ(vls_accept(srv, lh, sh), 0);
  CHECK_EQ(*sh, acc);
}

static inline int state_of(vls_worker_t *w, uint64_t h) {
  vls_session_info_t info;
  int rv = vls_session_info(w, h, &info);
  return rv < 0 ? rv : info.state;
}

#endif
