/* Helpers shared by the session and epoll tests: link two workers and open cut-through sessions
 * between them the way the control channel will (accept half, then connect half). */
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

/* Connect cli (seeing srv as peer cli_peer) to listener lh of srv (seeing cli as srv_peer). */
static inline void ct_connect(vls_worker_t *srv, uint64_t lh, uint32_t srv_peer, vls_worker_t *cli,
                       uint32_t cli_peer, uint64_t *ch, uint64_t *sh) {
  uint64_t ct_off, acc;
  CHECK_EQ(vls_connect_start(cli, ch), 0);
  CHECK_EQ(vls_accept_ct(srv, lh, srv_peer, *ch, &ct_off, &acc), 0);
  int fd = vls_peer_ct_segment_fd(srv, srv_peer);
  CHECK(fd >= 0);
  if (cli != srv) {
    int d = dup(fd);
    int rv = vls_peer_attach_ct_segment(cli, cli_peer, d);
    if (rv == -EALREADY) close(d);
    else CHECK_EQ(rv, 0);
  }
  CHECK_EQ(vls_connect_finish(cli, *ch, cli_peer, ct_off, acc), 0);
  CHECK_EQ(vls_accept(srv, lh, sh), 0);
  CHECK_EQ(*sh, acc);
}

static inline int state_of(vls_worker_t *w, uint64_t h) {
  vls_session_info_t info;
  int rv = vls_session_info(w, h, &info);
  return rv < 0 ? rv : info.state;
}

#endif
