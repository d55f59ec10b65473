/* Randomized test of the fifo against a reference model (a plain byte queue).
 *
 * Each round makes a fifo of 64..4096 bytes (so wrap-around is constant), starts its free-running
 * counters at a random value (sometimes just below 2^32), and runs thousands of random operations
 * through a producer view and a consumer view, checking every return value and every byte against
 * the model. The seed is printed; set VLS_SEED=<n> to replay a run. */
#include <stdint.h>
#include <unistd.h>
#include <time.h>

#include "vls_fifo.h"
#include "vls_test.h"

#define ROUNDS 250
#define OPS_PER_ROUND 3000
#define MAX_FIFO 4096u

typedef struct model {
  uint8_t buf[MAX_FIFO];
  uint32_t size;
  uint64_t head, tail; /* positions in the byte stream */
  int has_event;
  int want_ntf;
  uint32_t thresh;
  int eof;
} model_t;

static unsigned long long g_seed, g_rng;
static int g_round = -1, g_op = -1, g_opcode = -1, g_done;

static void report_context(void) {
  if (!g_done)
    fprintf(stderr,
            "test_fifo_model: failed in round %d op %d (opcode %d); replay with VLS_SEED=%llu\n",
            g_round, g_op, g_opcode, g_seed);
}

static uint64_t rnd(void) { return vls_test_rand(&g_rng); }
static uint32_t below(uint32_t n) { return n ? (uint32_t)(rnd() % n) : 0; }

static void rand_bytes(uint8_t *b, uint32_t n) {
  uint64_t r = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (i % 8 == 0) r = rnd();
    b[i] = (uint8_t)(r >> (8 * (i % 8)));
  }
}

static uint32_t m_used(const model_t *m) { return (uint32_t)(m->tail - m->head); }
static uint32_t m_free(const model_t *m) { return m->size - m_used(m); }
static uint8_t m_at(const model_t *m, uint64_t pos) { return m->buf[pos % m->size]; }
static void m_push(model_t *m, const uint8_t *src, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) m->buf[(m->tail + i) % m->size] = src[i];
  m->tail += n;
}

/* A length biased towards the interesting values around 0, small, and the fifo size. */
static uint32_t rand_len(uint32_t size) {
  switch (below(8)) {
  case 0: return 0;
  case 1: return 1 + below(8);
  case 2: return size - 4 + below(9);
  case 3: return size + below(size * 2);
  case 4: return below(size / 4 + 1);
  default: return below(size + 1);
  }
}

static void check_bytes(const model_t *m, uint64_t from, const uint8_t *got, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    if (got[i] != m_at(m, from + i)) {
      fprintf(stderr, "byte mismatch at stream pos %llu (+%u): got %u want %u\n",
              (unsigned long long)from, i, got[i], m_at(m, from + i));
      CHECK(0);
    }
  }
}

static void check_state(vls_fifo_t *p, vls_fifo_t *c, const model_t *m, int bytes_too) {
  CHECK_EQ(vls_fifo_max_dequeue(c), m_used(m));
  CHECK_EQ(vls_fifo_max_enqueue(p), m_free(m));
  CHECK_EQ(vls_fifo_has_event(c), m->has_event);
  CHECK_EQ(vls_fifo_is_eof(c), m->eof && m_used(m) == 0);
  CHECK_EQ(p->my_tail - c->my_head, m_used(m));
  if (!bytes_too) return;
  /* the bytes sit where the counters say, in the data area */
  for (uint32_t i = 0; i < m_used(m); i++)
    if (c->data[(c->my_head + i) & c->mask] != m_at(m, m->head + i)) CHECK(0);
}

static void one_round(vls_segment_t *seg, model_t *m, uint8_t *src, uint8_t *dst) {
  uint32_t size = 1u << (6 + below(7)); /* 64 .. 4096 */
  int64_t off = vls_fifo_create(seg, size);
  CHECK(off > 0);
  vls_fifo_shared_t *sh = vls_segment_ptr(seg, (uint64_t)off, sizeof *sh);
  uint32_t start;
  switch (below(3)) {
  case 0: start = 0; break;
  case 1: start = UINT32_MAX - below(3 * size); break;
  default: start = (uint32_t)rnd(); break;
  }
  atomic_store(&sh->head, start);
  atomic_store(&sh->tail, start);
  /* two views of each side, as two workers sharing the session would have; one is active */
  vls_fifo_t pv[2], cv[2];
  for (int i = 0; i < 2; i++) {
    CHECK_EQ(vls_fifo_attach(&pv[i], seg, (uint64_t)off), 0);
    CHECK_EQ(vls_fifo_attach(&cv[i], seg, (uint64_t)off), 0);
  }
  vls_fifo_t *p = &pv[0], *c = &cv[0];
  memset(m, 0, sizeof *m);
  m->size = size;

  for (g_op = 0; g_op < OPS_PER_ROUND; g_op++) {
    int op = (int)below(20);
    g_opcode = op;
    switch (op) {
    case 0:
    case 1:
    case 2: { /* enqueue */
      uint32_t len = rand_len(size);
      rand_bytes(src, len);
      int want = len == 0 ? 0 : m_free(m) == 0 ? -EAGAIN : (int)VLS_MIN(len, m_free(m));
      CHECK_EQ(vls_fifo_enqueue(p, src, len), want);
      if (want > 0) m_push(m, src, (uint32_t)want);
      break;
    }
    case 3:
    case 4: { /* enqueue_segs, partial or all-or-nothing */
      int aon = (int)below(2);
      uint32_t n_segs = below(9);
      vls_iov_t iov[8];
      uint64_t total = 0;
      uint8_t *at = src;
      for (uint32_t i = 0; i < n_segs; i++) {
        uint32_t l = below(4) == 0 ? 0 : below(4) == 0 ? rand_len(size) : below(size / 2 + 1);
        rand_bytes(at, l);
        iov[i].base = at;
        iov[i].len = l;
        at += l;
        total += l;
      }
      int want;
      if (total == 0)
        want = 0;
      else if (aon)
        want = total > size ? -EMSGSIZE : total > m_free(m) ? -EAGAIN : (int)total;
      else
        want = m_free(m) == 0 ? -EAGAIN : (int)VLS_MIN(total, (uint64_t)m_free(m));
      uint32_t tail_before = atomic_load(&sh->tail);
      CHECK_EQ(vls_fifo_enqueue_segs(p, iov, n_segs, aon), want);
      if (want > 0) m_push(m, src, (uint32_t)want); /* the segments are contiguous in src */
      else CHECK_EQ(atomic_load(&sh->tail), tail_before); /* nothing went in */
      break;
    }
    case 5:
    case 6:
    case 7: { /* dequeue */
      uint32_t len = rand_len(size);
      int want = len == 0 ? 0 : m_used(m) == 0 ? -EAGAIN : (int)VLS_MIN(len, m_used(m));
      int got = vls_fifo_dequeue(c, dst, len);
      CHECK_EQ(got, want);
      if (got > 0) {
        check_bytes(m, m->head, dst, (uint32_t)got);
        m->head += (uint32_t)got;
      }
      break;
    }
    case 8:
    case 9: { /* peek at a random offset */
      uint32_t ofs;
      switch (below(4)) {
      case 0: ofs = below(m_used(m) + 1); break;
      case 1: ofs = m_used(m) + below(3); break;
      case 2: ofs = (uint32_t)rnd(); break;
      default: ofs = below(size * 2); break;
      }
      uint32_t len = rand_len(size);
      int want = ofs >= m_used(m) ? (len == 0 ? 0 : -EAGAIN) : (int)VLS_MIN(len, m_used(m) - ofs);
      int got = vls_fifo_peek(c, ofs, dst, len);
      CHECK_EQ(got, want);
      if (got > 0) check_bytes(m, m->head + ofs, dst, (uint32_t)got);
      break;
    }
    case 10: { /* drop */
      uint32_t len = below(3) == 0 ? (uint32_t)rnd() : rand_len(size);
      uint32_t want = VLS_MIN(len, m_used(m));
      CHECK_EQ(vls_fifo_drop(c, len), want);
      m->head += want;
      break;
    }
    case 11: /* drop_all, rarely */
      if (below(4) == 0) {
        CHECK_EQ(vls_fifo_drop_all(c), m_used(m));
        m->head = m->tail;
      }
      break;
    case 12: /* event flag, producer side */
      CHECK_EQ(vls_fifo_set_event(p), !m->has_event);
      m->has_event = 1;
      break;
    case 13: /* event flag, consumer side */
      CHECK_EQ(vls_fifo_unset_event(c), m_used(m));
      m->has_event = 0;
      break;
    case 14: { /* producer asks for a dequeue notification */
      uint32_t t = below(2) ? below(size + 1) : rand_len(size);
      CHECK_EQ(vls_fifo_want_deq_ntf(p, t), m_free(m));
      m->want_ntf = 1;
      m->thresh = t == 0 ? 1 : t > size ? size : t;
      break;
    }
    case 15: { /* consumer checks for a due notification */
      int due = m->want_ntf && m_free(m) >= m->thresh;
      CHECK_EQ(vls_fifo_needs_deq_ntf(c), due);
      if (due) m->want_ntf = 0;
      break;
    }
    case 16: /* eof, rarely (the producer may keep writing: the flag only matters when empty) */
      if (below(50) == 0) {
        vls_fifo_set_eof(p);
        m->eof = 1;
      }
      break;
    case 17: /* a fresh view of one side, or the other worker takes over that side */
      switch (below(4)) {
      case 0: CHECK_EQ(vls_fifo_attach(p, seg, (uint64_t)off), 0); break;
      case 1: CHECK_EQ(vls_fifo_attach(c, seg, (uint64_t)off), 0); break;
      case 2:
        p = p == &pv[0] ? &pv[1] : &pv[0];
        CHECK_EQ(vls_fifo_resync(p), 0);
        break;
      default:
        c = c == &cv[0] ? &cv[1] : &cv[0];
        CHECK_EQ(vls_fifo_resync(c), 0);
        break;
      }
      break;
    default:
      check_state(p, c, m, 0);
      break;
    }
    if (g_op % 128 == 0) check_state(p, c, m, 1);
  }
  check_state(p, c, m, 1);
  CHECK_EQ(vls_fifo_destroy(seg, (uint64_t)off), 0);
}

int main(void) {
  const char *s = getenv("VLS_SEED");
  g_seed = s && *s ? strtoull(s, NULL, 0)
                   : ((unsigned long long)time(NULL) << 20) ^ (unsigned long long)getpid();
  if (g_seed == 0) g_seed = 1; /* xorshift state must be non-zero */
  g_rng = g_seed;
  fprintf(stderr, "test_fifo_model: seed %llu (VLS_SEED=%llu to replay)\n", g_seed, g_seed);
  atexit(report_context);

  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "fifo-model", 1 << 20), 0);
  model_t *m = malloc(sizeof *m);
  uint8_t *src = malloc(3 * MAX_FIFO * 8);
  uint8_t *dst = malloc(3 * MAX_FIFO);
  CHECK(m && src && dst);
  for (g_round = 0; g_round < ROUNDS; g_round++) one_round(&seg, m, src, dst);
  vls_segment_stats_t st;
  CHECK_EQ(vls_segment_stats(&seg, &st), 0);
  CHECK_EQ(st.n_allocs, 0);
  free(m);
  free(src);
  free(dst);
  vls_segment_detach(&seg);
  g_done = 1;
  fprintf(stderr, "  ok %d rounds x %d ops\n", ROUNDS, OPS_PER_ROUND);
  TEST_DONE();
}
