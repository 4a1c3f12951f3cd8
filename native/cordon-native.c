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
 *
 *   peerCredentials(fd) -> { pid, uid, gid }
 *       getsockopt(fd, SOL_SOCKET, SO_PEERCRED) on a connected Unix-domain stream socket: the
 *       credentials the kernel recorded for the peer when it called connect(2). They come from
 *       the kernel, never from anything the peer writes, so a client cannot claim another
 *       identity. Anything else (not a socket, another address family, a datagram or listening
 *       socket, an unconnected one, a peer whose pid this process cannot see) throws an Error
 *       whose code names the reason: the caller gets all three numbers or none.
 */
/* struct ucred and SO_PEERCRED are GNU extensions of <sys/socket.h>. */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

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
  case ENOTSOCK:
    return "ENOTSOCK";
  case EAFNOSUPPORT:
    return "EAFNOSUPPORT";
  case EPROTOTYPE:
    return "EPROTOTYPE";
  case ENOTCONN:
    return "ENOTCONN";
  case ESRCH:
    return "ESRCH";
  case ENOBUFS:
    return "ENOBUFS";
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

static napi_value throw_peer(napi_env env, int fd, int e, const char *why) {
  char msg[200];
  snprintf(msg, sizeof msg, "peerCredentials(fd %d): %s", fd, why);
  napi_throw_error(env, errno_name(e), msg);
  return NULL;
}

static int sockopt_int(int fd, int name, int *out) {
  socklen_t len = sizeof *out;
  if (getsockopt(fd, SOL_SOCKET, name, out, &len) != 0) return errno;
  return len == sizeof *out ? 0 : EINVAL;
}

static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "EINVAL", "peerCredentials(fd): fd must be an open descriptor");
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return throw_errno(env, "peerCredentials: fstat", errno);
  if (!S_ISSOCK(st.st_mode)) return throw_peer(env, fd, ENOTSOCK, "not a socket");
  int v, e;
  /* For any other family the kernel answers SO_PEERCRED with no credentials at all, which it
   * reports as pid 0 and the overflow uid (65534, an ordinary user's number): refuse instead. */
  if ((e = sockopt_int(fd, SO_DOMAIN, &v)) != 0)
    return throw_errno(env, "getsockopt(SO_DOMAIN)", e);
  if (v != AF_UNIX) return throw_peer(env, fd, EAFNOSUPPORT, "not a Unix-domain socket");
  /* A connected datagram socket carries no peer credentials (only each message could, with
   * SCM_CREDENTIALS); only connection-oriented sockets record them at connect(2). */
  if ((e = sockopt_int(fd, SO_TYPE, &v)) != 0) return throw_errno(env, "getsockopt(SO_TYPE)", e);
  if (v != SOCK_STREAM && v != SOCK_SEQPACKET)
    return throw_peer(env, fd, EPROTOTYPE, "not a stream or seqpacket socket");
  /* A listening socket reports its own creator, which is nobody's peer. */
  if ((e = sockopt_int(fd, SO_ACCEPTCONN, &v)) != 0)
    return throw_errno(env, "getsockopt(SO_ACCEPTCONN)", e);
  if (v != 0) return throw_peer(env, fd, ENOTCONN, "a listening socket has no peer");
  struct sockaddr_storage peer;
  socklen_t plen = sizeof peer;
  if (getpeername(fd, (struct sockaddr *)&peer, &plen) != 0) {
    e = errno;
    return throw_peer(env, fd, e, e == ENOTCONN ? "the socket is not connected" : strerror(e));
  }
  struct ucred cred;
  socklen_t clen = sizeof cred;
  memset(&cred, 0, sizeof cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0)
    return throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
  if (clen != sizeof cred) return throw_peer(env, fd, EINVAL, "short SO_PEERCRED answer");
  /* pid 0: the peer lives in a pid namespace this process cannot see into (or it never had
   * credentials); an identity without a pid is refused rather than half-reported. */
  if (cred.pid <= 0) return throw_peer(env, fd, ESRCH, "the peer's pid is not visible here");
  if (cred.uid == (uid_t)-1 || cred.gid == (gid_t)-1)
    return throw_peer(env, fd, EINVAL, "the peer has no valid uid or gid");
  napi_value out, pid, uid, gid;
  if (napi_create_object(env, &out) != napi_ok ||
      napi_create_int32(env, (int32_t)cred.pid, &pid) != napi_ok ||
      napi_create_uint32(env, (uint32_t)cred.uid, &uid) != napi_ok ||
      napi_create_uint32(env, (uint32_t)cred.gid, &gid) != napi_ok ||
      napi_set_named_property(env, out, "pid", pid) != napi_ok ||
      napi_set_named_property(env, out, "uid", uid) != napi_ok ||
      napi_set_named_property(env, out, "gid", gid) != napi_ok)
    return NULL;
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "lockExclusive", NAPI_AUTO_LENGTH, lock_exclusive, NULL, &fn) !=
          napi_ok ||
      napi_set_named_property(env, exports, "lockExclusive", fn) != napi_ok)
    return NULL;
  if (napi_create_function(env, "peerCredentials", NAPI_AUTO_LENGTH, peer_credentials, NULL,
                           &fn) != napi_ok ||
      napi_set_named_property(env, exports, "peerCredentials", fn) != napi_ok)
    return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
