/* Minimal assertion helpers for the native tests: each test file is its own program, run in its
 * own process (libuv's runner does the same), and exits non-zero on the first failed check. */
#ifndef VLS_TEST_H
#define VLS_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int vls_test_checks;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    vls_test_checks++;                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                   \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

#define CHECK_EQ(a, b)                                                                             \
  do {                                                                                             \
    long long _a = (long long)(a), _b = (long long)(b);                                            \
    vls_test_checks++;                                                                             \
    if (_a != _b) {                                                                                \
      fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__, __LINE__, #a, \
              _a, #b, _b);                                                                         \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

#define RUN(fn)                                                                                    \
  do {                                                                                             \
    fn();                                                                                          \
    fprintf(stderr, "  ok %s\n", #fn);                                                             \
  } while (0)

#define TEST_DONE()                                                                                \
  do {                                                                                             \
    printf("%d checks\n", vls_test_checks);                                                        \
    return 0;                                                                                      \
  } while (0)

/* xorshift64*: seeded, reproducible randomness for the randomized tests. */
static inline unsigned long long vls_test_rand(unsigned long long *s) {
  unsigned long long x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

#endif
