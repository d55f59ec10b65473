/*
 * Epoll emulation over session handles (the vppcom "vep" idea), with Linux's semantics.
 *
 * Each epoll set is a session of its own (flag VLS_SF_EPOLL) with a ready list. Each registration
 * is an epitem, chained both from the watched session and from the set. Readiness is pushed, not
 * polled: when an event changes a session (data arrived, room freed, FIN, reset, a connection to
 * accept), vls__epoll_notify() appends the session's interested epitems to their sets' ready
 * lists. vls_epoll_wait() then walks only the ready list and asks each session for its readiness
 * now, so a wait costs O(ready sessions), never O(registered sessions):
 *   - level-triggered items that are still ready go back on the list (reported again next time);
 *   - edge-triggered items leave the list after a report and come back only with a new event;
 *   - one-shot items are disabled after a report until EPOLL_CTL_MOD re-arms them.
 * EPOLLERR and EPOLLHUP are always reported, requested or not, as Linux does.
 */
#include "vls_session_internal.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VLS_EP_ALWAYS (VLS_EPOLLERR | VLS_EPOLLHUP)
#define VLS_EP_VALID                                                                               \
  (VLS_EPOLLIN | VLS_EPOLLOUT | VLS_EPOLLERR | VLS_EPOLLHUP | VLS_EPOLLRDHUP | VLS_EPOLLONESHOT |  \
   VLS_EPOLLET | 0x002u /* EPOLLPRI */ | 0x040u /* RDNORM */ | 0x100u /* WRNORM */)

uint32_t vls__session_poll(vls_worker_t *w, vls_session_t *s) {
  (void)w;
  if (s->flags & VLS_SF_LISTENER) return s->acq_n ? VLS_EPOLLIN : 0;
  if (s->flags & VLS_SF_EPOLL) return s->rl_head != VLS_NIL ? VLS_EPOLLIN : 0;
  uint32_t r = 0;
  if (s->err || (s->flags & VLS_SF_PEER_RESET)) {
    /* After a reset the socket is readable (the error, then EOF), writable (the write fails) and
     * hung up; EPOLLERR only while the error has not been read. */
    r = VLS_EPOLLIN | VLS_EPOLLOUT | VLS_EPOLLRDHUP | VLS_EPOLLHUP;
    if (s->err) r |= VLS_EPOLLERR;
    return r;
  }
  if (!s->ct) return 0; /* connecting */
  if (vls_fifo_max_dequeue(&s->rx) > 0) r |= VLS_EPOLLIN;
  int peer_fin = (s->flags & VLS_SF_PEER_SHUT_WR) || vls_fifo_is_eof(&s->rx);
  if (peer_fin || (s->flags & VLS_SF_SHUT_RD)) r |= VLS_EPOLLIN | VLS_EPOLLRDHUP;
  if (s->flags & VLS_SF_SHUT_WR) {
    r |= VLS_EPOLLOUT;
  } else {
    int64_t room = vls_fifo_max_enqueue(&s->tx);
    if (room > 0) r |= VLS_EPOLLOUT;
    if (room < 0) r |= VLS_EPOLLERR;
  }
  if ((s->flags & VLS_SF_SHUT_WR) && peer_fin) r |= VLS_EPOLLHUP;
  return r;
}

static vls_epitem_t *vls__item(vls_worker_t *w, uint32_t i) { return &w->items[i]; }

static int vls__item_alloc(vls_worker_t *w, uint32_t *out) {
  if (w->items_free == VLS_NIL) {
    uint32_t n = w->n_items ? w->n_items * 2 : 64;
    if (n > VLS_IDX_MASK) return -ENOMEM;
    vls_epitem_t *it = realloc(w->items, n * sizeof *it);
    if (!it) return -ENOMEM;
    memset(it + w->n_items, 0, (n - w->n_items) * sizeof *it);
    for (uint32_t i = n; i-- > w->n_items;) {
      it[i].next_of_session = w->items_free;
      w->items_free = i;
    }
    w->items = it;
    w->n_items = n;
  }
  uint32_t i = w->items_free;
  vls_epitem_t *it = vls__item(w, i);
  w->items_free = it->next_of_session;
  memset(it, 0, sizeof *it);
  it->in_use = 1;
  it->rl_prev = it->rl_next = VLS_NIL;
  it->next_of_session = it->next_of_ep = it->prev_of_ep = VLS_NIL;
  *out = i;
  return 0;
}

static void vls__rl_remove(vls_worker_t *w, vls_session_t *ep, uint32_t i) {
  vls_epitem_t *it = vls__item(w, i);
  if (!it->on_rl) return;
  if (it->rl_prev != VLS_NIL)
    vls__item(w, it->rl_prev)->rl_next = it->rl_next;
  else
    ep->rl_head = it->rl_next;
  if (it->rl_next != VLS_NIL)
    vls__item(w, it->rl_next)->rl_prev = it->rl_prev;
  else
    ep->rl_tail = it->rl_prev;
  it->rl_prev = it->rl_next = VLS_NIL;
  it->on_rl = 0;
}

static void vls__rl_append(vls_worker_t *w, vls_session_t *ep, uint32_t i) {
  vls_epitem_t *it = vls__item(w, i);
  if (it->on_rl) return;
  it->on_rl = 1;
  it->rl_next = VLS_NIL;
  it->rl_prev = ep->rl_tail;
  if (ep->rl_tail != VLS_NIL)
    vls__item(w, ep->rl_tail)->rl_next = i;
  else
    ep->rl_head = i;
  ep->rl_tail = i;
}

void vls__epoll_notify(vls_worker_t *w, vls_session_t *s, uint32_t events) {
  int queued = 0;
  for (uint32_t i = s->epitems; i != VLS_NIL; i = vls__item(w, i)->next_of_session) {
    vls_epitem_t *it = vls__item(w, i);
    if (it->disabled || !((it->events | VLS_EP_ALWAYS) & events)) continue;
    vls__rl_append(w, vls__slot(w, it->ep), i);
    queued = 1;
  }
  if (queued && !w->in_poll && !w->kicked) {
    uint64_t one = 1;
    w->kicked = 1;
    if (w->busy_poll) return; /* the busy poller sees `kicked` (vls_worker_has_work) */
    ssize_t r = write(w->efd, &one, sizeof one);
    (void)r;
  }
}

/* Unlink item i from its epoll set's chain and ready list, and from the session's chain. */
static void vls__item_unlink(vls_worker_t *w, uint32_t i, int from_session) {
  vls_epitem_t *it = vls__item(w, i);
  vls_session_t *ep = vls__slot(w, it->ep);
  vls__rl_remove(w, ep, i);
  if (it->prev_of_ep != VLS_NIL)
    vls__item(w, it->prev_of_ep)->next_of_ep = it->next_of_ep;
  else
    ep->ep_items = it->next_of_ep;
  if (it->next_of_ep != VLS_NIL) vls__item(w, it->next_of_ep)->prev_of_ep = it->prev_of_ep;
  if (from_session) {
    vls_session_t *s = vls__slot(w, it->sidx);
    uint32_t *pp = &s->epitems;
    while (*pp != VLS_NIL && *pp != i) pp = &vls__item(w, *pp)->next_of_session;
    if (*pp == i) *pp = it->next_of_session;
  }
  it->in_use = 0;
  it->next_of_session = w->items_free;
  w->items_free = i;
}

void vls__epoll_forget_session(vls_worker_t *w, vls_session_t *s) {
  uint32_t i = s->epitems;
  s->epitems = VLS_NIL;
  while (i != VLS_NIL) {
    uint32_t next = vls__item(w, i)->next_of_session;
    vls__item_unlink(w, i, 0);
    i = next;
  }
}

void vls__epoll_destroy_set(vls_worker_t *w, vls_session_t *ep) {
  while (ep->ep_items != VLS_NIL) vls__item_unlink(w, ep->ep_items, 1);
}

int vls_epoll_create(vls_worker_t *w, uint64_t *eph) {
  vls__wlock(w);
  vls_session_t *s;
  int rv = vls__session_alloc(w, &s);
  if (rv == 0) {
    s->flags |= VLS_SF_EPOLL;
    s->state = VLS_SS_READY;
    *eph = vls__session_handle(w, s);
  }
  vls__wunlock(w);
  return rv;
}

static uint32_t vls__find_item(vls_worker_t *w, vls_session_t *s, uint32_t ep_idx) {
  for (uint32_t i = s->epitems; i != VLS_NIL; i = vls__item(w, i)->next_of_session)
    if (vls__item(w, i)->ep == ep_idx) return i;
  return VLS_NIL;
}

int vls_epoll_ctl(vls_worker_t *w, uint64_t eph, int op, uint64_t h, const vls_epoll_event_t *ev) {
  vls__wlock(w);
  int rv = 0;
  vls_session_t *ep = vls__session_get(w, eph);
  vls_session_t *s = vls__session_get(w, h);
  /* Linux's order of checks: bad fds first, then "not an epoll", then "itself", then the op. */
  if (!ep || (ep->flags & VLS_SF_APP_GONE) || !s || (s->flags & VLS_SF_APP_GONE)) {
    rv = -EBADF;
    goto out;
  }
  if (!(ep->flags & VLS_SF_EPOLL) || ep == s || (s->flags & VLS_SF_EPOLL)) {
    /* Nesting epoll sets is not supported by the emulation: refused like a bad target. */
    rv = -EINVAL;
    goto out;
  }
  if (op != VLS_EPOLL_CTL_DEL && (!ev || (ev->events & ~VLS_EP_VALID))) {
    rv = -EINVAL;
    goto out;
  }
  uint32_t found = vls__find_item(w, s, ep->idx);
  switch (op) {
  case VLS_EPOLL_CTL_ADD: {
    if (found != VLS_NIL) {
      rv = -EEXIST;
      break;
    }
    uint32_t i;
    if ((rv = vls__item_alloc(w, &i)) < 0) break;
    vls_epitem_t *it = vls__item(w, i);
    it->ep = ep->idx;
    it->sidx = s->idx;
    it->events = ev->events;
    it->data = ev->data;
    it->next_of_session = s->epitems;
    s->epitems = i;
    it->next_of_ep = ep->ep_items;
    if (ep->ep_items != VLS_NIL) vls__item(w, ep->ep_items)->prev_of_ep = i;
    ep->ep_items = i;
    /* Like ep_insert(): a session that is ready already is queued at once. */
    if (vls__session_poll(w, s) & (ev->events | VLS_EP_ALWAYS)) vls__rl_append(w, ep, i);
    break;
  }
  case VLS_EPOLL_CTL_MOD: {
    if (found == VLS_NIL) {
      rv = -ENOENT;
      break;
    }
    vls_epitem_t *it = vls__item(w, found);
    it->events = ev->events;
    it->data = ev->data;
    it->disabled = 0;
    vls__rl_remove(w, ep, found);
    if (vls__session_poll(w, s) & (ev->events | VLS_EP_ALWAYS)) vls__rl_append(w, ep, found);
    break;
  }
  case VLS_EPOLL_CTL_DEL:
    if (found == VLS_NIL)
      rv = -ENOENT;
    else
      vls__item_unlink(w, found, 1);
    break;
  default:
    rv = -EINVAL;
  }
out:
  vls__wunlock(w);
  return rv;
}

/* Report up to max ready items from ep's ready list. */
static int vls__harvest(vls_worker_t *w, vls_session_t *ep, vls_epoll_event_t *evs, int max) {
  int n = 0;
  uint32_t again = VLS_NIL, again_tail = VLS_NIL; /* level-triggered items to re-queue */
  while (n < max && ep->rl_head != VLS_NIL) {
    uint32_t i = ep->rl_head;
    vls__rl_remove(w, ep, i);
    w->ep_visits++;
    vls_epitem_t *it = vls__item(w, i);
    if (it->disabled) continue;
    vls_session_t *s = vls__slot(w, it->sidx);
    uint32_t r = vls__session_poll(w, s) & (it->events | VLS_EP_ALWAYS);
    if (!r) continue;
    evs[n].events = r;
    evs[n].data = it->data;
    n++;
    if (it->events & VLS_EPOLLONESHOT) {
      it->disabled = 1;
    } else if (!(it->events & VLS_EPOLLET)) {
      /* Park it on a side chain so this harvest does not report it twice. */
      it->rl_next = VLS_NIL;
      it->rl_prev = again_tail;
      if (again_tail != VLS_NIL)
        vls__item(w, again_tail)->rl_next = i;
      else
        again = i;
      again_tail = i;
      it->on_rl = 2;
    }
  }
  for (uint32_t i = again; i != VLS_NIL;) {
    vls_epitem_t *it = vls__item(w, i);
    uint32_t next = it->rl_next;
    it->on_rl = 0;
    vls__rl_append(w, ep, i);
    i = next;
  }
  return n;
}

static int64_t vls__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vls_epoll_wait(vls_worker_t *w, uint64_t eph, vls_epoll_event_t *evs, int max,
                   int timeout_ms) {
  if (max <= 0 || !evs) return -EINVAL;
  int64_t deadline = timeout_ms > 0 ? vls__now_ms() + timeout_ms : 0;
  for (;;) {
    int rv = vls_worker_poll(w);
    if (rv < 0) return rv;
    vls__wlock(w);
    vls_session_t *ep = vls__session_get(w, eph);
    if (!ep || (ep->flags & VLS_SF_APP_GONE)) {
      vls__wunlock(w);
      return -EBADF;
    }
    if (!(ep->flags & VLS_SF_EPOLL)) {
      vls__wunlock(w);
      return -EINVAL;
    }
    int n = vls__harvest(w, ep, evs, max);
    vls__wunlock(w);
    if (n > 0 || timeout_ms == 0) return n;
    int wait_ms = -1;
    if (timeout_ms > 0) {
      int64_t left = deadline - vls__now_ms();
      if (left <= 0) return 0;
      wait_ms = (int)left;
    }
    /* Sleep on the worker's eventfd; vls_worker_poll() re-checked the queue before we got here
     * (vls_mq_ready_to_sleep), so a message sent after that check writes the eventfd. */
    struct pollfd pfd = {.fd = w->efd, .events = POLLIN};
    int pr = poll(&pfd, 1, vls_worker_deferred(w) ? VLS_MIN(wait_ms < 0 ? 1 : wait_ms, 1) : wait_ms);
    if (pr < 0 && errno == EINTR) return -EINTR;
    if (pr < 0) return -errno;
  }
}
