/*
 * oci_deflate: one gzip member of one block, deflated by libdeflate on libuv's thread pool.
 *
 * The JavaScript side (src/streams/native-deflate.ts) cuts the tar into independent blocks
 * and writes the members in order; this file only turns one block into one member without
 * holding the main thread. Plain C against node_api.h (Node-API 8), so the built addon loads
 * on every Node from 20 on without a rebuild.
 *
 *   deflate(input: Uint8Array, level: 0..12, callback(error, member: Buffer)): void
 *   pending(): number       works queued or running, for tests that abort mid-stream
 *   libdeflateVersion: string
 */
/* mmap and MAP_ANONYMOUS under -std=c11. */
#define _DEFAULT_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <libdeflate.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The OS byte of the gzip header (RFC 1952): libdeflate writes 255 "unknown"; node:zlib on
 * Linux, GNU gzip and pako write 3 "Unix", and every engine of ours writes the same header. */
#define GZIP_OS_OFFSET 9
#define GZIP_OS_UNIX 3

#define MAX_LEVEL 12

typedef struct {
  napi_async_work work;
  napi_ref input_ref;
  napi_ref callback_ref;
  const unsigned char *input;
  size_t input_length;
  int level;
  unsigned char *output;
  size_t output_capacity; /* bytes mapped at `output` */
  size_t output_length;
  const char *error; /* set by execute(); a static string */
} deflate_job;

/* Queued or running jobs, of every Node environment (worker threads load the addon too). */
static atomic_int pending_jobs = 0;

/* A compressor per pool thread, kept for the thread's life: allocating one per block costs
 * hash tables that libdeflate clears anyway. libuv's pool threads live as long as the
 * process, so these are never freed. */
static _Thread_local struct libdeflate_compressor *thread_compressor = NULL;
static _Thread_local int thread_compressor_level = -1;

static struct libdeflate_compressor *compressor_for(int level) {
  if (thread_compressor != NULL && thread_compressor_level == level) return thread_compressor;
  if (thread_compressor != NULL) libdeflate_free_compressor(thread_compressor);
  thread_compressor = libdeflate_alloc_compressor(level);
  thread_compressor_level = thread_compressor == NULL ? -1 : level;
  return thread_compressor;
}

static void execute(napi_env env, void *data) {
  (void)env;
  deflate_job *job = data;
  struct libdeflate_compressor *compressor = compressor_for(job->level);
  if (compressor == NULL) {
    job->error = "libdeflate could not allocate a compressor";
    return;
  }
  size_t bound = libdeflate_gzip_compress_bound(compressor, job->input_length);
  /* Mapped, not malloc'd: a block's bound (~1 MiB) taken from a pool thread's malloc arena
   * and freed on the main thread is kept by glibc for reuse, and those arenas grew the
   * process by ~18 MiB over a 2 GB pull. A mapping is handed back whole when unmapped. */
  void *mapped = mmap(NULL, bound, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) {
    job->error = "out of memory for a gzip member";
    return;
  }
  job->output = mapped;
  job->output_capacity = bound;
  /* libdeflate reads nothing of an empty input, but must not be handed NULL. */
  static const unsigned char nothing[1] = {0};
  const unsigned char *input = job->input_length == 0 ? nothing : job->input;
  job->output_length = libdeflate_gzip_compress(compressor, input, job->input_length, job->output, bound);
  if (job->output_length == 0) {
    job->error = "libdeflate output exceeded its own bound";
    return;
  }
  job->output[GZIP_OS_OFFSET] = GZIP_OS_UNIX;
}

static void release(napi_env env, deflate_job *job) {
  if (job->input_ref != NULL) napi_delete_reference(env, job->input_ref);
  if (job->callback_ref != NULL) napi_delete_reference(env, job->callback_ref);
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  if (job->output != NULL) munmap(job->output, job->output_capacity);
  free(job);
}

static void complete(napi_env env, napi_status status, void *data) {
  deflate_job *job = data;
  pending_jobs--;
  napi_value argv[2];
  napi_get_null(env, &argv[0]);
  napi_get_undefined(env, &argv[1]);
  const char *error = job->error;
  if (status != napi_ok && error == NULL) error = "the deflate job was cancelled";
  if (error == NULL) {
    /* A copy of the exact size: the bound-sized mapping is freed at once and no external
     * buffer is needed (runtimes with the V8 sandbox refuse those). */
    void *copy = NULL;
    if (napi_create_buffer_copy(env, job->output_length, job->output, &copy, &argv[1]) != napi_ok) {
      error = "out of memory for a gzip member";
    }
  }
  if (error != NULL) {
    napi_value code;
    napi_value message;
    napi_create_string_utf8(env, "ERR_OCI_ROOTFS_DEFLATE", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, error, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &argv[0]);
    napi_get_undefined(env, &argv[1]);
  }
  napi_value callback;
  napi_value global;
  napi_get_reference_value(env, job->callback_ref, &callback);
  napi_get_global(env, &global);
  release(env, job);
  /* An exception thrown by the callback stays pending and Node reports it as uncaught. */
  napi_call_function(env, global, callback, 2, argv, NULL);
}

static napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

static napi_value deflate(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) return throw_type_error(env, "deflate(input, level, callback) takes three arguments");

  bool is_typedarray = false;
  napi_is_typedarray(env, argv[0], &is_typedarray);
  if (!is_typedarray) return throw_type_error(env, "input must be a Uint8Array or Buffer");
  napi_typedarray_type type;
  size_t length = 0;
  void *bytes = NULL;
  napi_get_typedarray_info(env, argv[0], &type, &length, &bytes, NULL, NULL);
  if (type != napi_uint8_array) return throw_type_error(env, "input must be a Uint8Array or Buffer");

  napi_valuetype level_type;
  napi_typeof(env, argv[1], &level_type);
  if (level_type != napi_number) return throw_type_error(env, "level must be a number");
  double level = 0;
  napi_get_value_double(env, argv[1], &level);
  if (level != (int)level || level < 0 || level > MAX_LEVEL) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "level must be an integer from 0 to 12");
    return NULL;
  }

  napi_valuetype callback_type;
  napi_typeof(env, argv[2], &callback_type);
  if (callback_type != napi_function) return throw_type_error(env, "callback must be a function");

  deflate_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ERR_OCI_ROOTFS_DEFLATE", "out of memory");
    return NULL;
  }
  job->input = bytes;
  job->input_length = length;
  job->level = (int)level;
  napi_value name;
  napi_create_string_utf8(env, "oci-rootfs:deflate", NAPI_AUTO_LENGTH, &name);
  /* The references keep the input's bytes and the callback alive while a pool thread works. */
  if (napi_create_reference(env, argv[0], 1, &job->input_ref) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &job->callback_ref) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    release(env, job);
    napi_throw_error(env, "ERR_OCI_ROOTFS_DEFLATE", "could not queue the deflate job");
    return NULL;
  }
  pending_jobs++;
  return NULL;
}

static napi_value pending(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_create_int32(env, pending_jobs, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value deflate_fn;
  napi_value pending_fn;
  napi_value version;
  napi_create_function(env, "deflate", NAPI_AUTO_LENGTH, deflate, NULL, &deflate_fn);
  napi_create_function(env, "pending", NAPI_AUTO_LENGTH, pending, NULL, &pending_fn);
  napi_create_string_utf8(env, LIBDEFLATE_VERSION_STRING, NAPI_AUTO_LENGTH, &version);
  napi_set_named_property(env, exports, "deflate", deflate_fn);
  napi_set_named_property(env, exports, "pending", pending_fn);
  napi_set_named_property(env, exports, "libdeflateVersion", version);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
