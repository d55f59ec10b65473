/* libFuzzer harness for the MPSC message queue.
 *
 * The input picks the element size (8..256) and count (2..256), then a sequence of ops: sends from
 * two producer views, batch receives, depth, ready_to_sleep, eventfd reads, a hostile peer
 * scribbling arbitrary values into the shared header (everything except the producer mutex, which
 * a peer can always wedge and which is outside what the queue defends), fresh attaches and
 * restores of a sane header. While head and tail are untouched every result, every message byte,
 * the eventfd counter and the shared counters are compared with a reference model; after a
 * scribble only the documented ranges are checked (the eventfd and counters stay exact: they must
 * move exactly when a send says so). The rest of the segment is ASan-poisoned during the ops, so
 * any access outside the queue is a crash, as is any failed invariant (abort). */
#include <sanitizer/asan_interface.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vls_mq.h"

#define REQ(c)                                                                                     \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);                   \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

#define MAX_ELTS 256u
#define MAX_OPS 4096

typedef struct rd {
  const uint8_t *p;
  size_t n;
} rd_t;

static uint8_t u8(rd_t *r) {
  if (!r->n) return 0;
  r->n--;
  return *r->p++;
}
static uint16_t u16(rd_t *r) {
  uint16_t lo = u8(r);
  return (uint16_t)(lo | u8(r) << 8);
}
static uint32_t u32(rd_t *r) {
  uint32_t lo = u16(r);
  return lo | (uint32_t)u16(r) << 16;
}
static uint64_t u64(rd_t *r) {
  uint64_t lo = u32(r);
  return lo | (uint64_t)u32(r) << 32;
}

typedef struct model {
  uint8_t msgs[MAX_ELTS][VLS_MQ_MAX_ELT];
  uint64_t head, tail;
  uint64_t efd_count; /* what the eventfd counter must hold */
  uint64_t n_full, n_signals;
  uint32_t sleeping; /* the shared consumer_sleeping word, as the model expects it */
} model_t;

static vls_segment_t g_seg;
static int g_efd = -1;
static model_t g_m;
static uint8_t g_out[(MAX_ELTS + 4) * VLS_MQ_MAX_ELT];
static uint8_t g_msg[VLS_MQ_MAX_ELT + 16];
static uint32_t g_ctr;

static uint64_t efd_read(void) {
  uint64_t v = 0;
  ssize_t r = read(g_efd, &v, sizeof v);
  if (r < 0) {
    REQ(errno == EAGAIN);
    return 0;
  }
  REQ(r == (ssize_t)sizeof v);
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size_in) {
  if (!g_seg.base && vls_segment_create(&g_seg, "fuzz-mq", 1 << 20) != 0) abort();
  if (g_efd < 0 && (g_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) abort();
  efd_read();
  rd_t in = {data, size_in};
  uint8_t h = u8(&in);
  uint32_t elt = 8u * (1 + h % 32);
  uint32_t n_elts = 1u << (1 + (h >> 5) % 8);
  uint32_t start = (u8(&in) & 1) ? u32(&in) : 0;
  int64_t off = vls_mq_create(&g_seg, elt, n_elts);
  REQ(off > 0);
  vls_mq_shared_t *sh = vls_segment_ptr(&g_seg, (uint64_t)off, sizeof *sh);
  REQ(sh != NULL);
  atomic_store(&sh->head, start);
  atomic_store(&sh->tail, start);
  vls_mq_t prod[2], cons;
  REQ(vls_mq_attach(&prod[0], &g_seg, (uint64_t)off, g_efd) == 0);
  REQ(vls_mq_attach(&prod[1], &g_seg, (uint64_t)off, g_efd) == 0);
  REQ(vls_mq_attach(&cons, &g_seg, (uint64_t)off, g_efd) == 0);
  uint8_t *const area = cons.data;
  const uint64_t data_off = sh->data_off;
  REQ(area == (uint8_t *)sh + sizeof *sh);

  uint8_t *lo = (uint8_t *)sh, *hi = area + (uint64_t)elt * n_elts;
  ASAN_POISON_MEMORY_REGION(g_seg.base, (size_t)(lo - g_seg.base));
  ASAN_POISON_MEMORY_REGION(hi, (size_t)(g_seg.base + g_seg.size - hi));

  model_t *m = &g_m;
  m->head = m->tail = 0;
  m->efd_count = m->n_full = m->n_signals = 0;
  m->sleeping = 1; /* a fresh queue's consumer counts as asleep */
  g_ctr = 0;
  int corrupt = 0, line0 = 0;

  for (int ops = 0; in.n && ops < MAX_OPS; ops++) {
    uint8_t op = u8(&in);
    switch (op % 12) {
    case 0:
    case 1:
    case 2: { /* send */
      uint8_t k = u8(&in);
      vls_mq_t *pv = &prod[k & 1];
      uint32_t len;
      switch ((k >> 1) % 4) {
      case 0: len = elt; break;
      case 1: len = u8(&in) % (elt + 9); break; /* up to 8 too long */
      default: len = u8(&in) % 17; break;
      }
      for (uint32_t i = 0; i < len; i++, g_ctr++) g_msg[i] = (uint8_t)((g_ctr * 0x9e3779b1u) >> 24);
      int rv = vls_mq_send(pv, g_msg, len);
      if (len > elt) REQ(rv == -EINVAL);
      if (!corrupt) {
        uint64_t used = m->tail - m->head;
        /* the eventfd is written only if the consumer said it may sleep; the send wakes it */
        int want = len > elt ? -EINVAL : used == n_elts ? -EAGAIN : m->sleeping == 1 ? 1 : 0;
        REQ(rv == want);
        if (rv >= 0) {
          uint8_t *slot = m->msgs[m->tail % n_elts];
          memcpy(slot, g_msg, len);
          memset(slot + len, 0, elt - len);
          m->tail++;
        }
      } else {
        REQ(rv == 0 || rv == 1 || rv == -EAGAIN || rv == -EIO || rv == -EINVAL);
      }
      /* a send that got a slot swaps any non-zero sleeping word to 0 (only 1 signals) */
      if (rv == 0 || rv == 1) m->sleeping = 0;
      /* exact even when corrupt: the eventfd and the counters move iff the answer says so */
      if (rv == 1) {
        m->efd_count++;
        m->n_signals++;
      }
      if (rv == -EAGAIN) m->n_full++;
      REQ(atomic_load(&sh->n_full) == m->n_full);
      REQ(atomic_load(&sh->n_signals) == m->n_signals);
      break;
    }
    case 3:
    case 4: { /* receive a batch */
      uint32_t max = u8(&in) % (n_elts + 4);
      memset(g_out, 0xa5, (size_t)(max + 1) * elt);
      int rv = vls_mq_recv_batch(&cons, g_out, max);
      if (!corrupt) {
        uint64_t used = m->tail - m->head;
        REQ(rv == (int)VLS_MIN((uint64_t)max, used));
        for (int i = 0; i < rv; i++)
          REQ(memcmp(g_out + (size_t)i * elt, m->msgs[(m->head + (uint32_t)i) % n_elts], elt) == 0);
        m->head += (uint32_t)rv;
      } else {
        REQ(rv == -EIO || (rv >= 0 && (uint32_t)rv <= VLS_MIN(max, n_elts)));
      }
      /* nothing written past the batch */
      uint32_t n = rv > 0 ? (uint32_t)rv : 0;
      for (uint32_t i = 0; i < elt; i++) REQ(g_out[(size_t)n * elt + i] == 0xa5);
      break;
    }
    case 5: { /* depth */
      int64_t d = vls_mq_depth(&cons);
      if (!corrupt) REQ(d == (int64_t)(m->tail - m->head));
      else REQ(d == -EIO || (d >= 0 && d <= n_elts));
      break;
    }
    case 6: { /* ready to sleep? */
      int rv = vls_mq_ready_to_sleep(&cons);
      if (!corrupt) REQ(rv == (m->tail == m->head));
      else REQ(rv == 0 || rv == 1);
      m->sleeping = rv == 1;
      REQ(atomic_load(&sh->head) == cons.my_head); /* it republishes our head */
      break;
    }
    case 7: { /* the consumer reads its eventfd */
      int64_t v = vls_mq_eventfd_clear(&cons);
      REQ(v == (int64_t)m->efd_count);
      m->efd_count = 0;
      break;
    }
    case 8:
    case 9: { /* hostile peer */
      uint8_t f = u8(&in);
      uint32_t v = u32(&in);
      switch (f % 10) {
      case 0: atomic_store(&sh->tail, v); corrupt = 1; break;
      case 1: atomic_store(&sh->head, v); corrupt = 1; break;
      case 2: atomic_store(&sh->tail, cons.my_head + v % (2 * n_elts + 2)); corrupt = 1; break;
      case 3:
        atomic_store(&sh->head, atomic_load(&sh->tail) - v % (2 * n_elts + 2));
        corrupt = 1;
        break;
      case 4:
        atomic_store(&sh->n_full, (uint64_t)v << (f & 32));
        m->n_full = (uint64_t)v << (f & 32);
        break;
      case 5:
        atomic_store(&sh->n_signals, (uint64_t)v << (f & 32));
        m->n_signals = (uint64_t)v << (f & 32);
        break;
      case 6: atomic_store(&sh->consumer_sleeping, v); m->sleeping = v; break;
      case 7: sh->magic = (f & 0x10) ? v : 0; line0 = 1; break;
      case 8: if (f & 0x10) sh->elt_size = v; else sh->n_elts = v; line0 = 1; break;
      default:
        sh->data_off = (f & 0x10) ? data_off + (int32_t)v : u64(&in);
        line0 = 1;
        break;
      }
      break;
    }
    case 10: { /* a fresh view from whatever the header says now */
      uint8_t k = u8(&in);
      vls_mq_t v;
      int rv = vls_mq_attach(&v, &g_seg, (uint64_t)off, g_efd);
      if (!corrupt && !line0) REQ(rv == 0);
      REQ(rv == 0 || rv == -EPROTO);
      if (rv != 0) {
        REQ(v.sh == NULL && v.efd == -1);
        break;
      }
      REQ(v.elt_size && v.elt_size <= VLS_MQ_MAX_ELT && v.elt_size % 8 == 0);
      REQ(vls_is_pow2(v.n_elts) && v.n_elts >= 2 && v.n_elts <= VLS_MQ_MAX_ELTS);
      REQ(v.data >= g_seg.base + VLS_CACHE_LINE &&
          v.data + (uint64_t)v.elt_size * v.n_elts <= g_seg.base + g_seg.size);
      if (v.data != area || v.elt_size != elt || v.n_elts != n_elts) break; /* not ours to use */
      if (!corrupt) REQ(v.my_head == cons.my_head);
      if (k & 1) cons = v;
      else prod[(k >> 1) & 1] = v;
      break;
    }
    default: { /* resync: the peer behaves again */
      sh->magic = VLS_MQ_MAGIC;
      sh->elt_size = elt;
      sh->n_elts = n_elts;
      sh->data_off = data_off;
      line0 = 0;
      if (!corrupt) break;
      uint32_t tail = atomic_load(&sh->tail);
      if (tail - cons.my_head > n_elts) tail = cons.my_head;
      atomic_store(&sh->tail, tail);
      atomic_store(&sh->head, cons.my_head);
      m->head = 0;
      m->tail = tail - cons.my_head;
      for (uint32_t i = 0; i < m->tail; i++)
        memcpy(m->msgs[i], area + (uint64_t)((cons.my_head + i) & (n_elts - 1)) * elt, elt);
      corrupt = 0;
      break;
    }
    }
  }

  ASAN_UNPOISON_MEMORY_REGION(g_seg.base, g_seg.size);
  REQ(efd_read() == m->efd_count);
  REQ(vls_mq_destroy(&g_seg, (uint64_t)off) == 0);
  vls_segment_stats_t st;
  REQ(vls_segment_stats(&g_seg, &st) == 0 && st.n_allocs == 0);
  return 0;
}
