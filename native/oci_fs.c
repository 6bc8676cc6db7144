/*
 * oci_fs: the few syscalls `unpack` needs that node:fs does not have, called directly.
 *
 * Nothing but libc, so it builds wherever a C compiler and Node's headers are (libdeflate's
 * headers are not needed). Synchronous: each call is one cheap syscall on a path the disk
 * writer has just created (microseconds), far less than a hop to the thread pool would
 * cost. Paths, names and values are Buffers, so names that are not UTF-8 pass unchanged.
 * A failure throws an Error whose `code` is the errno name (EPERM, ENOTSUP, EEXIST...) and
 * `errno` the number, like node:fs errors; `syscall` and `path` are set too.
 *
 *   lsetxattr(path: Buffer, name: Buffer, value: Buffer): void
 *   lremovexattr(path: Buffer, name: Buffer): void
 *   llistxattr(path: Buffer): Buffer[]
 *   mknod(path: Buffer, mode: number, major: number, minor: number): void
 *   mkfifo(path: Buffer, mode: number): void
 *   writeBatch(meta, paths, bodies, results, callback(error | null)): void
 *       small regular files (open, write, fchown, fchmod, futimens, close) and directories,
 *       in order, many in one trip to libuv's pool (see below)
 *
 * mknod and mkfifo apply the process umask like the syscalls do: clearing it around the call
 * would change it for every thread of the process (libuv's pool creates files meanwhile), and
 * the disk writer sets the exact mode with chmod afterwards anyway.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define ERROR_CODE_INVALID "ERR_INVALID_ARG_TYPE"

/* The errno names node:fs uses for what unpack can meet; anything else is "E<number>". */
static const char *errno_name(int error) {
  switch (error) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case EMLINK: return "EMLINK";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case ENODATA: return "ENODATA";
    case ENOTSUP: return "ENOTSUP";
    case E2BIG: return "E2BIG";
    case EDQUOT: return "EDQUOT";
    default: return NULL;
  }
}

static napi_value errno_error(napi_env env, int error, const char *syscall, const char *path) {
  char fallback[16];
  const char *name = errno_name(error);
  if (name == NULL) {
    snprintf(fallback, sizeof fallback, "E%d", error);
    name = fallback;
  }
  /* "EPERM: operation not permitted, mknod 'dev/null'" like node:fs; the path in the message
   * is as the bytes allow (a C string), the exact one is not needed to understand it. */
  size_t size = strlen(name) + strlen(strerror(error)) + strlen(syscall) + strlen(path) + 16;
  char *message = malloc(size);
  if (message == NULL) {
    napi_value code_value, error_value;
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_value);
    napi_create_error(env, code_value, code_value, &error_value);
    return error_value;
  }
  int at = snprintf(message, size, "%s: ", name);
  snprintf(message + at, size - (size_t)at, "%s, %s '%s'", strerror(error), syscall, path);
  /* node:fs (libuv) writes "file exists", glibc "File exists". */
  message[at] = (char)tolower((unsigned char)message[at]);
  napi_value code_value, message_value, error_value, errno_value, syscall_value, path_value;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_value);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value);
  free(message);
  napi_create_error(env, code_value, message_value, &error_value);
  /* node:fs reports errno as a negative number (uv's convention); so do we. */
  napi_create_int32(env, -error, &errno_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_create_string_latin1(env, path, NAPI_AUTO_LENGTH, &path_value);
  napi_set_named_property(env, error_value, "errno", errno_value);
  napi_set_named_property(env, error_value, "syscall", syscall_value);
  napi_set_named_property(env, error_value, "path", path_value);
  return error_value;
}

static napi_value throw_errno(napi_env env, int error, const char *syscall, const char *path) {
  napi_throw(env, errno_error(env, error, syscall, path));
  return NULL;
}

static napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, ERROR_CODE_INVALID, message);
  return NULL;
}

/* A NUL-terminated copy of a Buffer argument (a path or an attribute name); NULL after
 * throwing when it is not a Buffer / Uint8Array or holds a NUL byte. Free it. */
static char *c_string(napi_env env, napi_value value, const char *what) {
  bool is_typedarray = false;
  napi_is_typedarray(env, value, &is_typedarray);
  char message[96];
  snprintf(message, sizeof message, "%s must be a Buffer", what);
  if (!is_typedarray) return throw_type_error(env, message), NULL;
  napi_typedarray_type type;
  size_t length = 0;
  void *bytes = NULL;
  napi_get_typedarray_info(env, value, &type, &length, &bytes, NULL, NULL);
  if (type != napi_uint8_array) return throw_type_error(env, message), NULL;
  if (length == 0 || memchr(bytes, 0, length) != NULL) {
    snprintf(message, sizeof message, "%s must be non-empty and hold no NUL byte", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", message);
    return NULL;
  }
  char *copy = malloc(length + 1);
  if (copy == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  memcpy(copy, bytes, length);
  copy[length] = '\0';
  return copy;
}

/* An unsigned integer argument no larger than `max`; false after throwing. */
static bool uint_arg(napi_env env, napi_value value, const char *what, double max, unsigned long *out) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  double number = -1;
  if (type == napi_number) napi_get_value_double(env, value, &number);
  if (type != napi_number || number != (double)(unsigned long)number || number < 0 || number > max) {
    char message[96];
    snprintf(message, sizeof message, "%s must be an integer from 0 to %.0f", what, max);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return false;
  }
  *out = (unsigned long)number;
  return true;
}

static bool get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv, const char *usage) {
  size_t argc = expected;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < expected) {
    throw_type_error(env, usage);
    return false;
  }
  return true;
}

static napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "lsetxattr(path, name, value) takes three Buffers")) return NULL;
  bool is_typedarray = false;
  napi_is_typedarray(env, argv[2], &is_typedarray);
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void *bytes = NULL;
  if (is_typedarray) napi_get_typedarray_info(env, argv[2], &type, &length, &bytes, NULL, NULL);
  if (type != napi_uint8_array) return throw_type_error(env, "value must be a Buffer");
  char *path = c_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  char *name = c_string(env, argv[1], "name");
  if (name == NULL) return free(path), NULL;
  /* An empty value may come with a NULL pointer: the kernel reads nothing then. */
  static const char nothing[1] = {0};
  int result = lsetxattr(path, name, length == 0 ? nothing : bytes, length, 0);
  int error = errno;
  if (result != 0) throw_errno(env, error, "lsetxattr", path);
  free(name);
  free(path);
  return NULL;
}

static napi_value js_lremovexattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "lremovexattr(path, name) takes two Buffers")) return NULL;
  char *path = c_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  char *name = c_string(env, argv[1], "name");
  if (name == NULL) return free(path), NULL;
  int result = lremovexattr(path, name);
  int error = errno;
  if (result != 0) throw_errno(env, error, "lremovexattr", path);
  free(name);
  free(path);
  return NULL;
}

static napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "llistxattr(path) takes a Buffer")) return NULL;
  char *path = c_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  char *list = NULL;
  ssize_t size;
  /* The list can grow between the sizing call and the reading one: retry on ERANGE. */
  for (;;) {
    size = llistxattr(path, NULL, 0);
    if (size < 0) break;
    free(list);
    list = malloc(size == 0 ? 1 : (size_t)size);
    if (list == NULL) {
      free(path);
      napi_throw_error(env, "ENOMEM", "out of memory");
      return NULL;
    }
    size = llistxattr(path, list, (size_t)size);
    if (size >= 0 || errno != ERANGE) break;
  }
  if (size < 0) {
    int error = errno;
    throw_errno(env, error, "llistxattr", path);
    free(list);
    free(path);
    return NULL;
  }
  napi_value names;
  napi_create_array(env, &names);
  uint32_t index = 0;
  for (ssize_t at = 0; at < size;) {
    size_t length = strnlen(list + at, (size_t)(size - at));
    napi_value name;
    void *copy = NULL;
    napi_create_buffer_copy(env, length, list + at, &copy, &name);
    napi_set_element(env, names, index++, name);
    at += (ssize_t)length + 1;
  }
  free(list);
  free(path);
  return names;
}

static napi_value js_mknod(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv, "mknod(path, mode, major, minor) takes four arguments")) return NULL;
  unsigned long mode, major, minor;
  if (!uint_arg(env, argv[1], "mode", 0xffff, &mode) || !uint_arg(env, argv[2], "major", 0xfffff, &major) ||
      !uint_arg(env, argv[3], "minor", 0xfffff, &minor)) {
    return NULL;
  }
  char *path = c_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  int result = mknod(path, (mode_t)mode, makedev((unsigned int)major, (unsigned int)minor));
  int error = errno;
  if (result != 0) throw_errno(env, error, "mknod", path);
  free(path);
  return NULL;
}

static napi_value js_mkfifo(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "mkfifo(path, mode) takes two arguments")) return NULL;
  unsigned long mode;
  if (!uint_arg(env, argv[1], "mode", 07777, &mode)) return NULL;
  char *path = c_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  int result = mkfifo(path, (mode_t)mode);
  int error = errno;
  if (result != 0) throw_errno(env, error, "mkfifo", path);
  free(path);
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * writeBatch: many small regular files and directories in one trip to the pool. A trip costs
 * tens of microseconds of thread handoff on the main thread (a futex wake, an async
 * resource, a callback), as much as writing a small file on tmpfs; a batch pays it once.
 *
 *   writeBatch(meta: Float64Array, paths: Buffer, bodies: Buffer, results: Int32Array,
 *              callback(error | null)): void
 *
 * Entry i is meta[9i .. 9i+8] = flags, uid (-1: keep), gid, mode, mtime seconds, offset of
 * its NUL-terminated path in `paths`, offset and length of its body in `bodies`, kind (0 a
 * regular file, 1 a directory).
 * - A file is open(path, flags | O_CLOEXEC, 0600) (flags carry O_CREAT|O_EXCL|O_NOFOLLOW),
 *   write all of its body, fchown unless uid is -1, fchmod after it (chown clears setuid),
 *   futimens (atime = mtime, fractional seconds), close. On EEXIST what is at the path
 *   (lstat'd, never followed) is unlinked and the open tried once more, unless it is a
 *   directory: a later copy of a path wins, as in the rest of the disk writer.
 * - A directory is mkdir(path, 0700) (mode and times come in the unpack's finishing pass);
 *   an existing directory is kept (children merge), anything else there is unlinked first;
 *   then lchown unless uid is -1. flags, mode, mtime and the body are not used.
 * Entries run in order and independently: results[2i] is 0 or the errno of entry i,
 * results[2i+1] the number of the syscall that failed (the enum below). The callback gets an
 * error only when the batch could not run at all. */

/* Only the numbers cross to JavaScript: file-jobs.ts has the same list of names. */
enum { SYS_NONE, SYS_OPEN, SYS_WRITE, SYS_FCHOWN, SYS_FCHMOD, SYS_FUTIMENS, SYS_CLOSE, SYS_LSTAT, SYS_UNLINK, SYS_MKDIR, SYS_LCHOWN };
#define META_FIELDS 9
enum { KIND_FILE, KIND_DIRECTORY };

typedef struct {
  napi_async_work work;
  napi_ref refs[5]; /* meta, paths, bodies, results, callback */
  const double *meta;
  const char *paths;
  const unsigned char *bodies;
  int32_t *results;
  size_t count;
} batch_job;

static int open_replacing(const char *path, int flags, int *syscall) {
  int fd = open(path, flags | O_CLOEXEC, 0600);
  if (fd >= 0 || errno != EEXIST) {
    *syscall = SYS_OPEN;
    return fd;
  }
  struct stat stats;
  if (lstat(path, &stats) != 0) {
    *syscall = SYS_LSTAT;
    return -1;
  }
  if (S_ISDIR(stats.st_mode)) {
    errno = EEXIST;
    *syscall = SYS_OPEN;
    return -1;
  }
  if (unlink(path) != 0) {
    *syscall = SYS_UNLINK;
    return -1;
  }
  *syscall = SYS_OPEN;
  return open(path, flags | O_CLOEXEC, 0600);
}

/* The directory of a batch entry: 0, or the errno with *syscall set. */
static int make_directory(const char *path, double uid, double gid, int *syscall) {
  if (mkdir(path, 0700) != 0) {
    if (errno != EEXIST) return *syscall = SYS_MKDIR, errno;
    struct stat stats;
    if (lstat(path, &stats) != 0) return *syscall = SYS_LSTAT, errno;
    if (!S_ISDIR(stats.st_mode)) {
      if (unlink(path) != 0) return *syscall = SYS_UNLINK, errno;
      if (mkdir(path, 0700) != 0) return *syscall = SYS_MKDIR, errno;
    }
  }
  if (uid >= 0 && lchown(path, (uid_t)uid, (gid_t)gid) != 0) return *syscall = SYS_LCHOWN, errno;
  return 0;
}

static void batch_execute(napi_env env, void *data) {
  (void)env;
  batch_job *job = data;
  for (size_t i = 0; i < job->count; i++) {
    const double *m = job->meta + i * META_FIELDS;
    const char *path = job->paths + (size_t)m[5];
    if (m[8] == KIND_DIRECTORY) {
      int syscall = SYS_NONE;
      job->results[2 * i] = make_directory(path, m[1], m[2], &syscall);
      job->results[2 * i + 1] = job->results[2 * i] == 0 ? SYS_NONE : syscall;
      continue;
    }
    const unsigned char *body = job->bodies + (size_t)m[6];
    size_t length = (size_t)m[7];
    int error = 0, syscall = SYS_NONE;
    int fd = open_replacing(path, (int)m[0], &syscall);
    if (fd < 0) {
      job->results[2 * i] = errno;
      job->results[2 * i + 1] = syscall;
      continue;
    }
    for (size_t done = 0; done < length;) {
      ssize_t written = write(fd, body + done, length - done);
      if (written < 0) {
        if (errno == EINTR) continue;
        error = errno;
        syscall = SYS_WRITE;
        break;
      }
      done += (size_t)written;
    }
    /* fchmod after fchown, which clears setuid and setgid. */
    if (error == 0 && m[1] >= 0 && fchown(fd, (uid_t)m[1], (gid_t)m[2]) != 0) error = errno, syscall = SYS_FCHOWN;
    if (error == 0 && fchmod(fd, (mode_t)m[3]) != 0) error = errno, syscall = SYS_FCHMOD;
    if (error == 0) {
      double whole = floor(m[4]);
      struct timespec time = {(time_t)whole, (long)((m[4] - whole) * 1e9)};
      if (time.tv_nsec > 999999999) time.tv_nsec = 999999999;
      struct timespec times[2] = {time, time};
      if (futimens(fd, times) != 0) error = errno, syscall = SYS_FUTIMENS;
    }
    if (close(fd) != 0 && error == 0 && errno != EINTR) error = errno, syscall = SYS_CLOSE;
    job->results[2 * i] = error;
    job->results[2 * i + 1] = error == 0 ? SYS_NONE : syscall;
  }
}

static void batch_release(napi_env env, batch_job *job) {
  for (int i = 0; i < 5; i++) if (job->refs[i] != NULL) napi_delete_reference(env, job->refs[i]);
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  free(job);
}

static void batch_complete(napi_env env, napi_status status, void *data) {
  batch_job *job = data;
  napi_value argv[1];
  if (status != napi_ok) {
    napi_value code, message;
    napi_create_string_utf8(env, "ECANCELED", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, "the writes were cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &argv[0]);
  } else {
    napi_get_null(env, &argv[0]);
  }
  napi_value callback, global;
  napi_get_reference_value(env, job->refs[4], &callback);
  napi_get_global(env, &global);
  batch_release(env, job);
  napi_call_function(env, global, callback, 1, argv, NULL);
}

static bool typed_arg(napi_env env, napi_value value, napi_typedarray_type want, const char *message, void **bytes, size_t *length) {
  bool is_typedarray = false;
  napi_is_typedarray(env, value, &is_typedarray);
  napi_typedarray_type type = want == napi_uint8_array ? napi_int8_array : napi_uint8_array;
  if (is_typedarray) napi_get_typedarray_info(env, value, &type, length, bytes, NULL, NULL);
  if (type != want) {
    throw_type_error(env, message);
    return false;
  }
  return true;
}

static napi_value js_write_batch(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv, "writeBatch(meta, paths, bodies, results, callback) takes five arguments")) return NULL;
  void *meta = NULL, *paths = NULL, *bodies = NULL, *results = NULL;
  size_t meta_length = 0, paths_length = 0, bodies_length = 0, results_length = 0;
  if (!typed_arg(env, argv[0], napi_float64_array, "meta must be a Float64Array", &meta, &meta_length) ||
      !typed_arg(env, argv[1], napi_uint8_array, "paths must be a Buffer", &paths, &paths_length) ||
      !typed_arg(env, argv[2], napi_uint8_array, "bodies must be a Buffer", &bodies, &bodies_length) ||
      !typed_arg(env, argv[3], napi_int32_array, "results must be an Int32Array", &results, &results_length)) {
    return NULL;
  }
  napi_valuetype kind;
  napi_typeof(env, argv[4], &kind);
  if (kind != napi_function) return throw_type_error(env, "callback must be a function");
  size_t count = meta_length / META_FIELDS;
  if (meta_length % META_FIELDS != 0 || results_length < 2 * count) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "meta must hold 9 numbers per entry and results 2 per entry");
    return NULL;
  }
  /* Everything the pool thread will read is checked here, so no job reads outside its buffers. */
  const double *m = meta;
  for (size_t i = 0; i < count; i++, m += META_FIELDS) {
    bool whole = true;
    /* All whole numbers but the mtime, which may have a fraction and only has to be finite. */
    for (int f = 0; f < META_FIELDS; f++) whole = whole && (f == 4 ? m[f] > -9.2e18 && m[f] < 9.2e18 : m[f] == floor(m[f]));
    const char *path = (const char *)paths + (size_t)(m[5] >= 0 ? m[5] : 0);
    bool valid = whole && m[0] >= 0 && m[0] <= 0x7fffffff && m[1] >= -1 && m[1] <= 4294967294.0 && m[2] >= 0 &&
                 m[2] <= 4294967294.0 && m[3] >= 0 && m[3] <= 07777 && m[5] >= 0 && m[5] < (double)paths_length &&
                 *path != '\0' && memchr(path, 0, paths_length - (size_t)m[5]) != NULL && m[6] >= 0 && m[7] >= 0 &&
                 m[6] + m[7] <= (double)bodies_length && (m[8] == KIND_FILE || m[8] == KIND_DIRECTORY);
    if (!valid) {
      char message[96];
      snprintf(message, sizeof message, "entry %zu of the batch has an invalid field or range", i);
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
      return NULL;
    }
  }
  batch_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->meta = meta;
  job->paths = paths;
  job->bodies = bodies;
  job->results = results;
  job->count = count;
  napi_value name;
  napi_create_string_utf8(env, "oci-rootfs:writeBatch", NAPI_AUTO_LENGTH, &name);
  bool queued = true;
  for (int i = 0; i < 5 && queued; i++) queued = napi_create_reference(env, argv[i], 1, &job->refs[i]) == napi_ok;
  if (!queued || napi_create_async_work(env, NULL, name, batch_execute, batch_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    batch_release(env, job);
    napi_throw_error(env, "ERR_OCI_ROOTFS_FS", "could not queue the writes");
    return NULL;
  }
  return NULL;
}

static void export_function(napi_env env, napi_value exports, const char *name, napi_callback callback) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

static napi_value init(napi_env env, napi_value exports) {
  export_function(env, exports, "lsetxattr", js_lsetxattr);
  export_function(env, exports, "lremovexattr", js_lremovexattr);
  export_function(env, exports, "llistxattr", js_llistxattr);
  export_function(env, exports, "mknod", js_mknod);
  export_function(env, exports, "mkfifo", js_mkfifo);
  export_function(env, exports, "writeBatch", js_write_batch);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
