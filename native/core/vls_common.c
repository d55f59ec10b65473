#include "vls_common.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int vls_debug_level = 0;
__thread int vls_debug_wrk = -1;

__attribute__((constructor)) void vls_debug_init(void) {
  const char *s = getenv("VLS_DEBUG");
  vls_debug_level = s ? atoi(s) : 0;
}

void vls__debug_print(const char *fmt, ...) {
  int saved = errno;
  char buf[512];
  int n = snprintf(buf, sizeof buf, "<%d:%d> ", (int)getpid(), vls_debug_wrk);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof buf) vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  va_end(ap);
  size_t len = strnlen(buf, sizeof buf - 2);
  buf[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, buf, len);
  (void)w;
  errno = saved;
}

#define VLS_ERRNO_LIST(X)                                                                          \
  X(EPERM) X(ENOENT) X(EINTR) X(EIO) X(EBADF) X(EAGAIN) X(ENOMEM) X(EACCES) X(EFAULT) X(EBUSY)     \
  X(EEXIST) X(EINVAL) X(EMFILE) X(ENOSPC) X(EPIPE) X(ERANGE) X(ENOSYS) X(EMSGSIZE) X(ENOTSOCK)    \
  X(EPROTO) X(EOPNOTSUPP) X(EADDRINUSE) X(EADDRNOTAVAIL) X(ENETUNREACH) X(ECONNABORTED)           \
  X(ECONNRESET) X(ENOBUFS) X(EISCONN) X(ENOTCONN) X(ETIMEDOUT) X(ECONNREFUSED) X(EALREADY)        \
  X(EINPROGRESS) X(ESHUTDOWN) X(EOVERFLOW) X(EBADMSG) X(EOWNERDEAD) X(ENOTRECOVERABLE) X(ESRCH)

const char *vls_err_name(int neg_errno) {
  switch (-neg_errno) {
#define X(e)                                                                                       \
  case e:                                                                                          \
    return #e;
    VLS_ERRNO_LIST(X)
#undef X
  default:
    return "UNKNOWN";
  }
}
