#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include "vls_segment.h"
#include "vls_test.h"

static void test_create_alloc_free(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "t", 1 << 20), 0);
  vls_segment_stats_t st;
  CHECK_EQ(vls_segment_stats(&seg, &st), 0);
  CHECK_EQ(st.size, 1 << 20);
  CHECK_EQ(st.n_allocs, 0);
  int64_t a = vls_segment_alloc(&seg, 100);
  int64_t b = vls_segment_alloc(&seg, 100);
  CHECK(a > 0 && b > 0 && a != b);
  CHECK_EQ(a % 64, 0);
  CHECK(vls_segment_ptr(&seg, (uint64_t)a, 100) != NULL);
  memset(vls_segment_ptr(&seg, (uint64_t)a, 100), 0xab, 100);
  CHECK_EQ(vls_segment_free(&seg, (uint64_t)a), 0);
  CHECK_EQ(vls_segment_free(&seg, (uint64_t)a), -EINVAL); /* double free refused */
  CHECK_EQ(vls_segment_free(&seg, 12345), -EINVAL);
  int64_t c = vls_segment_alloc(&seg, 90); /* same class: reuses a's block */
  CHECK_EQ(c, a);
  CHECK_EQ(vls_segment_stats(&seg, &st), 0);
  CHECK_EQ(st.n_allocs, 2);
  /* Exhaustion answers ENOMEM, it does not crash or overlap. */
  int n = 0;
  while (vls_segment_alloc(&seg, 60000) > 0) n++;
  CHECK(n > 5);
  CHECK_EQ(vls_segment_alloc(&seg, 60000), -ENOMEM);
  CHECK_EQ(vls_segment_alloc(&seg, 0), -EINVAL);
  CHECK(vls_segment_ptr(&seg, (1 << 20) - 10, 20) == NULL);
  CHECK(vls_segment_ptr(&seg, 0, 1) == NULL);
  vls_segment_detach(&seg);
  vls_segment_detach(&seg); /* idempotent */
}

static void test_reuse_no_growth(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "t", 4 << 20), 0);
  vls_segment_stats_t st0, st1;
  int64_t x = vls_segment_alloc(&seg, 65536 + 256);
  CHECK(x > 0);
  vls_segment_free(&seg, (uint64_t)x);
  vls_segment_stats(&seg, &st0);
  for (int i = 0; i < 10000; i++) {
    int64_t a = vls_segment_alloc(&seg, 65536 + 256);
    CHECK(a > 0);
    CHECK_EQ(vls_segment_free(&seg, (uint64_t)a), 0);
  }
  vls_segment_stats(&seg, &st1);
  CHECK_EQ(st0.bump, st1.bump);
  CHECK_EQ(st1.n_allocs, 0);
  vls_segment_detach(&seg);
}

static void test_attach_checks(void) {
  vls_segment_t seg, peer;
  CHECK_EQ(vls_segment_create(&seg, "t", 1 << 20), 0);
  int fd = dup(seg.fd);
  CHECK_EQ(vls_segment_attach(&peer, fd), 0);
  int64_t a = vls_segment_alloc(&peer, 1000);
  CHECK(a > 0);
  strcpy(vls_segment_ptr(&peer, (uint64_t)a, 16), "hello");
  CHECK(strcmp(vls_segment_ptr(&seg, (uint64_t)a, 16), "hello") == 0);
  vls_segment_stats_t st;
  vls_segment_stats(&seg, &st);
  CHECK_EQ(st.n_attached, 2);
  /* The segment cannot be shrunk or grown by anyone. */
  CHECK(ftruncate(seg.fd, 4096) < 0);
  vls_segment_detach(&peer);
  vls_segment_detach(&seg);

  /* A plain memfd without seals is refused. */
  int bad = memfd_create("bad", MFD_CLOEXEC);
  CHECK(ftruncate(bad, 1 << 20) == 0);
  CHECK_EQ(vls_segment_attach(&peer, bad), -EPROTO);
  close(bad);
  /* A sealed memfd with a garbage header is refused. */
  bad = memfd_create("bad", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  CHECK(ftruncate(bad, 1 << 20) == 0);
  CHECK(fcntl(bad, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
  CHECK_EQ(vls_segment_attach(&peer, bad), -EPROTO);
  close(bad);
  CHECK_EQ(vls_segment_attach(&peer, -1), -EBADF);
  CHECK_EQ(vls_segment_create(&seg, "t", 10), -EINVAL);
}

static void test_corrupt_free_list(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "t", 1 << 20), 0);
  int64_t a = vls_segment_alloc(&seg, 100);
  vls_segment_free(&seg, (uint64_t)a);
  /* A hostile peer points the free list outside the segment: allocation fails, nothing crashes. */
  for (int i = 0; i < VLS_SEGMENT_N_CLASSES; i++)
    if (seg.hdr->free_head[i]) seg.hdr->free_head[i] = 0xfffffffffull;
  CHECK_EQ(vls_segment_alloc(&seg, 100), -EIO);
  seg.hdr->bump = 1ull << 40;
  CHECK_EQ(vls_segment_alloc(&seg, 5000), -EIO);
  vls_segment_detach(&seg);
}

/* A holder killed inside the allocator lock does not wedge the segment for the survivors. */
static void test_robust_lock(void) {
  vls_segment_t seg;
  CHECK_EQ(vls_segment_create(&seg, "t", 1 << 20), 0);
  pid_t pid = fork();
  if (pid == 0) {
    vls_shm_mutex_lock(&seg.hdr->lock);
    _exit(0); /* dies holding the lock */
  }
  int status;
  waitpid(pid, &status, 0);
  CHECK(vls_segment_alloc(&seg, 100) > 0);
  vls_segment_detach(&seg);
}

int main(void) {
  RUN(test_create_alloc_free);
  RUN(test_reuse_no_growth);
  RUN(test_attach_checks);
  RUN(test_corrupt_free_list);
  RUN(test_robust_lock);
  TEST_DONE();
}
