/* libFuzzer harness for the SPSC fifo.
 *
 * The input is a little program: a header picks the fifo size (64..4096) and where the
 * free-running counters start, then each op byte (with its arguments from the following bytes)
 * runs one fifo call (vls_fifo_resync() included) through a producer view or a consumer view, or
 * plays a hostile peer that scribbles an arbitrary value into a shared header field, or
 * re-attaches a view, or puts the fifo back into a sane state.
 *
 * While the indices are untouched every result and every byte is compared with a reference model
 * (flag fields the peer scribbled are modelled exactly, since their semantics are simple). Once the
 * peer has scribbled head or tail the model is off and only the documented ranges are checked until
 * the fifo is made sane again. At all times the rest of the segment is ASan-poisoned, so any access
 * outside the fifo's header and data area is a crash, as is any failed invariant (abort). */
#include <sanitizer/asan_interface.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vls_fifo.h"

#define REQ(c)                                                                                     \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);                   \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

#define MAX_FIFO 4096u
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
  uint8_t buf[MAX_FIFO];
  uint32_t size;
  uint64_t head, tail;
  uint32_t has_event; /* raw shared values: the peer may leave anything in them */
  uint32_t want;
  uint32_t thresh;
  uint32_t eof;
} model_t;

static uint32_t m_used(const model_t *m) { return (uint32_t)(m->tail - m->head); }
static uint32_t m_free(const model_t *m) { return m->size - m_used(m); }

static vls_segment_t g_seg;
static model_t g_m;
static uint8_t g_src[8 * 3 * MAX_FIFO], g_dst[3 * MAX_FIFO];
static uint32_t g_ctr;

static void fill_src(uint8_t *b, uint32_t n) {
  for (uint32_t i = 0; i < n; i++, g_ctr++) b[i] = (uint8_t)((g_ctr * 0x9e3779b1u) >> 24);
}

/* A length around the interesting values for this fifo. */
static uint32_t arg_len(rd_t *r, uint32_t size) {
  uint8_t k = u8(r);
  switch (k % 8) {
  case 0: return 0;
  case 1: return k / 8;
  case 2: return size - 8 + k / 8 % 17;
  case 3: return u32(r);
  default: return u16(r) % (3 * size);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size_in) {
  if (!g_seg.base && vls_segment_create(&g_seg, "fuzz-fifo", 1 << 20) != 0) abort();
  rd_t in = {data, size_in};
  uint32_t size = 1u << (6 + u8(&in) % 7);
  uint32_t start;
  switch (u8(&in) % 4) {
  case 0: start = 0; break;
  case 1: start = UINT32_MAX - u16(&in) % (3 * size); break;
  default: start = u32(&in); break;
  }
  int64_t off = vls_fifo_create(&g_seg, size);
  REQ(off > 0);
  vls_fifo_shared_t *sh = vls_segment_ptr(&g_seg, (uint64_t)off, sizeof *sh);
  REQ(sh != NULL);
  atomic_store(&sh->head, start);
  atomic_store(&sh->tail, start);
  vls_fifo_t p, c;
  REQ(vls_fifo_attach(&p, &g_seg, (uint64_t)off) == 0);
  REQ(vls_fifo_attach(&c, &g_seg, (uint64_t)off) == 0);
  uint8_t *const area = c.data;
  const uint64_t data_off = sh->data_off;
  REQ(area == g_seg.base + data_off);

  /* Everything but this fifo (its header and its ring, two blocks) is off limits while the ops
   * run. */
  ASAN_POISON_MEMORY_REGION(g_seg.base, g_seg.size);
  ASAN_UNPOISON_MEMORY_REGION(sh, sizeof *sh);
  ASAN_UNPOISON_MEMORY_REGION(area, size);

  model_t *m = &g_m;
  memset(m, 0, sizeof *m);
  m->size = size;
  g_ctr = 0;
  int corrupt = 0; /* the peer scribbled head or tail: the model is off until a resync */
  int line0 = 0;   /* the peer scribbled magic/size/data_off: only a new attach could notice */

  for (int ops = 0; in.n && ops < MAX_OPS; ops++) {
    uint8_t op = u8(&in);
    switch (op % 20) {
    case 0: { /* enqueue */
      uint32_t len = arg_len(&in, size);
      uint32_t n = VLS_MIN(len, 3 * MAX_FIFO);
      fill_src(g_src, n);
      int rv = vls_fifo_enqueue(&p, g_src, n);
      if (!corrupt) {
        int want = n == 0 ? 0 : m_free(m) == 0 ? -EAGAIN : (int)VLS_MIN(n, m_free(m));
        REQ(rv == want);
        for (int i = 0; i < rv; i++) m->buf[(m->tail + (uint32_t)i) % size] = g_src[i];
        if (rv > 0) m->tail += (uint32_t)rv;
      } else {
        REQ(rv == -EIO || rv == -EAGAIN || (rv >= 0 && (uint32_t)rv <= VLS_MIN(n, size)));
      }
      break;
    }
    case 1: { /* enqueue_segs */
      uint8_t k = u8(&in);
      int aon = k & 1;
      uint32_t n_segs = (k >> 1) % 9;
      vls_iov_t iov[8];
      uint32_t at = 0;
      uint64_t total = 0;
      for (uint32_t i = 0; i < n_segs; i++) {
        uint32_t l = arg_len(&in, size);
        if (l > 3 * MAX_FIFO) l = 3 * MAX_FIFO;
        fill_src(g_src + at, l);
        iov[i].base = g_src + at;
        iov[i].len = l;
        at += l;
        total += l;
      }
      uint32_t tail_before = atomic_load(&sh->tail);
      int rv = vls_fifo_enqueue_segs(&p, iov, n_segs, aon);
      if (!corrupt) {
        int want;
        if (total == 0) want = 0;
        else if (aon) want = total > size ? -EMSGSIZE : total > m_free(m) ? -EAGAIN : (int)total;
        else want = m_free(m) == 0 ? -EAGAIN : (int)VLS_MIN(total, (uint64_t)m_free(m));
        REQ(rv == want);
        for (int i = 0; i < rv; i++) m->buf[(m->tail + (uint32_t)i) % size] = g_src[i];
        if (rv > 0) m->tail += (uint32_t)rv;
        else REQ(atomic_load(&sh->tail) == tail_before);
      } else {
        REQ(rv == -EIO || rv == -EAGAIN || rv == -EMSGSIZE ||
            (rv >= 0 && (uint64_t)rv <= VLS_MIN(total, (uint64_t)size)));
        if (aon && rv > 0) REQ((uint64_t)rv == total);
      }
      break;
    }
    case 2:
    case 3: { /* dequeue */
      uint32_t len = VLS_MIN(arg_len(&in, size), 3 * MAX_FIFO);
      int rv = vls_fifo_dequeue(&c, g_dst, len);
      if (!corrupt) {
        int want = len == 0 ? 0 : m_used(m) == 0 ? -EAGAIN : (int)VLS_MIN(len, m_used(m));
        REQ(rv == want);
        for (int i = 0; i < rv; i++) REQ(g_dst[i] == m->buf[(m->head + (uint32_t)i) % size]);
        if (rv > 0) m->head += (uint32_t)rv;
      } else {
        REQ(rv == -EIO || rv == -EAGAIN || (rv >= 0 && (uint32_t)rv <= VLS_MIN(len, size)));
      }
      break;
    }
    case 4: { /* peek */
      uint8_t k = u8(&in);
      uint32_t ofs = k % 3 == 0 ? u32(&in) : k % 3 == 1 ? u16(&in) % (2 * size) : k / 3;
      uint32_t len = VLS_MIN(arg_len(&in, size), 3 * MAX_FIFO);
      int rv = vls_fifo_peek(&c, ofs, g_dst, len);
      if (!corrupt) {
        int want = ofs >= m_used(m) ? (len == 0 ? 0 : -EAGAIN) : (int)VLS_MIN(len, m_used(m) - ofs);
        REQ(rv == want);
        for (int i = 0; i < rv; i++)
          REQ(g_dst[i] == m->buf[(m->head + ofs + (uint32_t)i) % size]);
      } else {
        REQ(rv == -EIO || rv == -EAGAIN || (rv >= 0 && (uint32_t)rv <= VLS_MIN(len, size)));
      }
      break;
    }
    case 5: { /* drop */
      uint32_t len = arg_len(&in, size);
      int rv = vls_fifo_drop(&c, len);
      if (!corrupt) {
        REQ(rv == (int)VLS_MIN(len, m_used(m)));
        m->head += (uint32_t)rv;
      } else {
        REQ(rv == -EIO || (rv >= 0 && (uint32_t)rv <= VLS_MIN(len, size)));
      }
      break;
    }
    case 6: { /* drop_all */
      int rv = vls_fifo_drop_all(&c);
      if (!corrupt) {
        REQ(rv == (int)m_used(m));
        m->head = m->tail;
      } else {
        REQ(rv == -EIO || (rv >= 0 && (uint32_t)rv <= size));
      }
      break;
    }
    case 7: { /* sizes */
      int64_t d = vls_fifo_max_dequeue(&c), e = vls_fifo_max_enqueue(&p);
      if (!corrupt) {
        REQ(d == m_used(m));
        REQ(e == m_free(m));
      } else {
        REQ(d == -EIO || (d >= 0 && d <= size));
        REQ(e == -EIO || (e >= 0 && e <= size));
      }
      break;
    }
    case 8: { /* producer: event */
      int rv = vls_fifo_set_event(&p);
      REQ(rv == (m->has_event == 0));
      m->has_event = m->has_event ? m->has_event : 1;
      REQ(vls_fifo_has_event(&c) == 1);
      break;
    }
    case 9: { /* consumer: clear the event and look again */
      int64_t rv = vls_fifo_unset_event(&c);
      m->has_event = 0;
      REQ(vls_fifo_has_event(&c) == 0);
      if (!corrupt) REQ(rv == m_used(m));
      else REQ(rv == -EIO || (rv >= 0 && rv <= size));
      break;
    }
    case 10: { /* producer: ask for a dequeue notification */
      uint32_t t = arg_len(&in, size);
      int64_t rv = vls_fifo_want_deq_ntf(&p, t);
      m->want = 1;
      m->thresh = t == 0 ? 1 : t > size ? size : t;
      REQ(atomic_load(&sh->deq_thresh) == m->thresh);
      if (!corrupt) REQ(rv == m_free(m));
      else REQ(rv == -EIO || (rv >= 0 && rv <= size));
      break;
    }
    case 11: { /* consumer: notification due? */
      int rv = vls_fifo_needs_deq_ntf(&c);
      if (!corrupt) {
        uint32_t th = m->thresh == 0 || m->thresh > size ? size : m->thresh;
        int due = 0;
        if (m->want && m_free(m) >= th) {
          due = m->want == 1;
          m->want = 0;
        }
        REQ(rv == due);
        REQ(atomic_load(&sh->want_deq_ntf) == m->want);
      } else {
        REQ(rv == 0 || rv == 1);
        m->want = atomic_load(&sh->want_deq_ntf);
      }
      break;
    }
    case 12: /* eof */
      if (u8(&in) % 4 == 0) {
        vls_fifo_set_eof(&p);
        m->eof = 1;
      }
      break;
    case 13: {
      int rv = vls_fifo_is_eof(&c);
      if (!corrupt) REQ(rv == (m->eof != 0 && m_used(m) == 0));
      else REQ(rv == 0 || rv == 1);
      break;
    }
    case 14:
    case 15: { /* hostile peer: scribble a shared field */
      uint8_t f = u8(&in);
      uint32_t v = u32(&in);
      switch (f % 10) {
      case 0: atomic_store(&sh->head, v); corrupt = 1; break;
      case 1: atomic_store(&sh->tail, v); corrupt = 1; break;
      case 2: atomic_store(&sh->head, p.my_tail - v % (2 * size)); corrupt = 1; break;
      case 3: atomic_store(&sh->tail, c.my_head + v % (2 * size)); corrupt = 1; break;
      case 4: atomic_store(&sh->has_event, v); m->has_event = v; break;
      case 5: atomic_store(&sh->want_deq_ntf, v); m->want = v; break;
      case 6: atomic_store(&sh->deq_thresh, v); m->thresh = v; break;
      case 7: atomic_store(&sh->eof, v); m->eof = v; break;
      case 8: sh->magic = (f & 0x10) ? v : 0; line0 = 1; break;
      default:
        if (f & 0x10) sh->size = v;
        else sh->data_off = (f & 0x20) ? data_off + (int32_t)v : u64(&in);
        line0 = 1;
        break;
      }
      break;
    }
    case 16: { /* a fresh view of one side from whatever the shared header says now */
      int cons = u8(&in) & 1;
      vls_fifo_t v;
      int rv = vls_fifo_attach(&v, &g_seg, (uint64_t)off);
      if (!corrupt && !line0) REQ(rv == 0);
      REQ(rv == 0 || rv == -EPROTO);
      if (rv != 0) break;
      REQ(vls_is_pow2(v.size) && v.size >= VLS_FIFO_MIN_SIZE && v.size <= VLS_FIFO_MAX_SIZE);
      REQ(v.data >= g_seg.base + VLS_CACHE_LINE && v.data + v.size <= g_seg.base + g_seg.size);
      REQ(v.sh == sh && v.mask == v.size - 1);
      if (v.data != area || v.size != size) break; /* somewhere else: not ours to use */
      if (!corrupt) {
        REQ(v.my_head == c.my_head && v.my_tail == p.my_tail);
      }
      if (cons) c = v;
      else p = v;
      break;
    }
    case 17: { /* the peer behaves again: restore a consistent header */
      sh->magic = VLS_FIFO_MAGIC;
      sh->size = size;
      sh->data_off = data_off;
      line0 = 0;
      if (!corrupt) break;
      uint32_t tail = p.my_tail - c.my_head <= size ? p.my_tail : c.my_head;
      atomic_store(&sh->head, c.my_head);
      atomic_store(&sh->tail, tail);
      REQ(vls_fifo_attach(&p, &g_seg, (uint64_t)off) == 0);
      REQ(vls_fifo_attach(&c, &g_seg, (uint64_t)off) == 0);
      m->head = 0;
      m->tail = tail - c.my_head;
      for (uint32_t i = 0; i < m->tail; i++) m->buf[i % size] = area[(c.my_head + i) & (size - 1)];
      m->want = atomic_load(&sh->want_deq_ntf);
      corrupt = 0;
      break;
    }
    case 18: { /* reload one view's private indices from the shared ones */
      vls_fifo_t *v = (u8(&in) & 1) ? &c : &p;
      vls_fifo_t before = *v;
      int rv = vls_fifo_resync(v);
      if (!corrupt) {
        REQ(rv == 0);
        REQ(v->my_head == c.my_head && v->my_tail == p.my_tail);
      } else {
        REQ(rv == 0 || rv == -EIO);
        if (rv) REQ(v->my_head == before.my_head && v->my_tail == before.my_tail);
        else REQ(v->my_tail - v->my_head <= size);
      }
      REQ(v->sh == before.sh && v->data == before.data && v->size == before.size);
      break;
    }
    default: { /* the views agree with the model, bytes included */
      if (corrupt) break;
      REQ(p.my_tail - c.my_head == m_used(m));
      REQ(atomic_load(&sh->head) == c.my_head && atomic_load(&sh->tail) == p.my_tail);
      for (uint32_t i = 0; i < m_used(m); i++)
        REQ(area[(c.my_head + i) & (size - 1)] == m->buf[(m->head + i) % size]);
      REQ(vls_fifo_has_event(&c) == (m->has_event != 0));
      break;
    }
    }
  }

  ASAN_UNPOISON_MEMORY_REGION(g_seg.base, g_seg.size);
  /* The ring is a block of its own, found through data_off: a data_off the peer scribbled is
   * refused by the allocator's checks (that block then stays allocated until the segment goes,
   * which a per-peer segment does with its peer). Restore it so the leak check below holds. */
  sh->data_off = data_off;
  REQ(vls_fifo_destroy(&g_seg, (uint64_t)off) == 0);
  vls_segment_stats_t st;
  REQ(vls_segment_stats(&g_seg, &st) == 0 && st.n_allocs == 0);
  return 0;
}
