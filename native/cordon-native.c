/*
 * cordon_native: small Node-API functions Node itself lacks.
 *
 *   lockExclusive(fd) -> boolean
 *       flock(fd, LOCK_EX | LOCK_NB): true when this open file description now holds the
 *       exclusive lock, false when another one holds it. The kernel releases the lock when the
 *       last descriptor of the description is closed, which includes every way a process dies
 *       (SIGKILL, a crash, OOM): there is no stale lock to detect, and no read-then-delete step
 *       two processes could both win. Any other failure throws an Error whose code is the
 *       errno name.
 */
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

static const char *errno_name(int e) {
  switch (e) {
  case EBADF:
    return "EBADF";
  case EINVAL:
    return "EINVAL";
  case ENOLCK:
    return "ENOLCK";
  case ENOMEM:
    return "ENOMEM";
  case EINTR:
    return "EINTR";
  default:
    return "EIO";
  }
}

static napi_value throw_errno(napi_env env, const char *call, int e) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s (errno %d)", call, strerror(e), e);
  napi_throw_error(env, errno_name(e), msg);
  return NULL;
}

static napi_value lock_exclusive(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "EINVAL", "lockExclusive(fd): fd must be an open descriptor");
    return NULL;
  }
  int r;
  do {
    r = flock(fd, LOCK_EX | LOCK_NB);
  } while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EWOULDBLOCK) return throw_errno(env, "flock", errno);
  napi_value out;
  if (napi_get_boolean(env, r == 0, &out) != napi_ok) return NULL;
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "lockExclusive", NAPI_AUTO_LENGTH, lock_exclusive, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "lockExclusive", fn) != napi_ok)
    return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
