/*
 * The receiver's copy in a bulk stream, alone: 64 KiB chunks copied out of a 1 MiB ring (the fifo,
 * warm in cache) into destinations that are
 *   - reused:    a ring of R MiB of destination buffers, cycled (R = 1, 8, 64, 256);
 *   - malloc'd:  a fresh malloc(64 KiB) per chunk, all freed together once F MiB are outstanding
 *                (F = 8, 64): what a receiver that hands every chunk to the application as a new
 *                Buffer gets, where the garbage collector frees the chunks in batches.
 * Prints GB/s per case. No shared memory and no second process: this is the memcpy's own ceiling,
 * which bounds a receiver (Node's own TCP reads included) that copies every chunk into memory it
 * has not touched recently.
 *
 *   make -C native bench && sh native/bench/run.sh copy [--gib N]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK (64u * 1024u)
#define RING (1u << 20)

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Keeps the compiler from dropping copies nobody reads. */
static volatile uint8_t sink;

static double reused(const uint8_t *src, size_t dst_mib, uint64_t total) {
  size_t n = dst_mib << 20;
  uint8_t *dst = malloc(n);
  if (!dst) return -1;
  memset(dst, 1, n);
  size_t so = 0, ro = 0;
  double t0 = now_s();
  for (uint64_t done = 0; done < total; done += CHUNK) {
    memcpy(dst + so, src + ro, CHUNK);
    so = (so + CHUNK) % n;
    ro = (ro + CHUNK) % RING;
  }
  double t = now_s() - t0;
  sink = dst[so];
  free(dst);
  return (double)total / t / 1e9;
}

static double fresh(const uint8_t *src, size_t batch_mib, uint64_t total) {
  size_t max = (batch_mib << 20) / CHUNK;
  uint8_t **held = calloc(max, sizeof *held);
  if (!held) return -1;
  size_t k = 0, ro = 0;
  double t0 = now_s();
  for (uint64_t done = 0; done < total; done += CHUNK) {
    uint8_t *b = malloc(CHUNK);
    if (!b) {
      total = done;
      break;
    }
    memcpy(b, src + ro, CHUNK);
    ro = (ro + CHUNK) % RING;
    held[k++] = b;
    if (k == max) {
      sink = held[k - 1][0];
      for (size_t i = 0; i < k; i++) free(held[i]);
      k = 0;
    }
  }
  for (size_t i = 0; i < k; i++) free(held[i]);
  double t = now_s() - t0;
  free(held);
  return (double)total / t / 1e9;
}

int main(int argc, char **argv) {
  uint64_t gib = 4;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--gib") && i + 1 < argc) {
      char *end;
      unsigned long v = strtoul(argv[++i], &end, 10);
      if (*end || v == 0 || v > 1024) {
        fprintf(stderr, "bench_copy: --gib takes 1..1024\n");
        return 2;
      }
      gib = v;
    } else {
      fprintf(stderr, "usage: bench_copy [--gib N]   (N GiB copied per case, default 4)\n");
      return 2;
    }
  }
  uint64_t total = gib << 30;
  uint8_t *src = malloc(RING);
  if (!src) return 1;
  memset(src, 2, RING);
  printf("64 KiB chunks out of a 1 MiB ring, %llu GiB per case\n", (unsigned long long)gib);
  static const size_t rings[] = {1, 8, 64, 256};
  for (size_t i = 0; i < sizeof rings / sizeof rings[0]; i++)
    printf("  reused destinations, %4zu MiB cycled         %6.2f GB/s\n", rings[i], reused(src, rings[i], total));
  static const size_t batches[] = {8, 64};
  for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++)
    printf("  malloc per chunk, freed every %4zu MiB       %6.2f GB/s\n", batches[i], fresh(src, batches[i], total));
  free(src);
  return 0;
}
