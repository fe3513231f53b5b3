/* core/core.h: the internal header of src/core, the only one other areas include from it.
 * Owns: errors, allocation (with the fail-the-Nth hook for tests), mapped files, the thread pool,
 * clocks, growable buffers, UTF-8 and half-float helpers, CPU features, JSON parsing and printing. */
#ifndef LM_CORE_H
#define LM_CORE_H

#include "locallm.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#if defined(__GNUC__)
#define LM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define LM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LM_PRINTF(a, b)
#define LM_UNLIKELY(x) (x)
#endif

#define LM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LM_MAX(a, b) ((a) > (b) ? (a) : (b))
#define LM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- errors ---- */

/* Formats the message into err (when not NULL; escaped with lm_escape_text), sets err->code and
 * returns code, so call sites stay one line: return lm_fail(err, LM_ERR_FORMAT, "%s: ...", path). */
lm_status lm_fail(lm_error *err, lm_status code, const char *fmt, ...) LM_PRINTF(3, 4);
lm_status lm_failv(lm_error *err, lm_status code, const char *fmt, va_list ap);
/* Copies n bytes of src into dst (cap bytes, always NUL-terminated when cap > 0) as printable,
 * valid UTF-8: \n \r \t and other C0 controls and DEL become "\n", "\x1b"..., C1 controls
 * (U+0080..U+009F) "\u009b", and each byte that is not part of a valid UTF-8 sequence "\xff".
 * Stops before an escape or character that would not fit. Returns the length written. lm_fail and
 * lm_log pass every message through it, so text quoted from files or the network is safe to print
 * and to put in JSON. */
size_t lm_escape_text(char *dst, size_t cap, const char *src, size_t n);
/* Fills err for an allocation failure of what (e.g. "tensor table"). */
lm_status lm_fail_nomem(lm_error *err, const char *what);
void lm_error_clear(lm_error *err);

/* ---- allocation ---- */

/* All library allocation goes through these, so tests can make the Nth one fail. */
void *lm_malloc(size_t n);
void *lm_calloc(size_t n, size_t size);
void *lm_realloc(void *p, size_t n);
void lm_free(void *p);
char *lm_strdup(const char *s);
char *lm_strndup(const char *s, size_t n);
/* Overflow-checked n*size; false on overflow. */
bool lm_mul_ok(size_t a, size_t b, size_t *out);

/* Test hook: the n-th allocation from now fails (1 = the next one); 0 turns it off.
 * Counting is process-wide and atomic; only tests call it. */
void lm_alloc_fail_at(long n);
/* Allocations attempted since the last lm_alloc_fail_at() call. */
long lm_alloc_count(void);
/* True once the armed failure has fired. */
bool lm_alloc_failed(void);

/* ---- files ---- */

typedef struct lm_file {
    const uint8_t *data; /* whole file, read-only */
    size_t size;
    bool mapped;         /* mmap'd (else owned heap memory) */
} lm_file;

/* Maps (or reads, when use_mmap is false) the whole file. Errors name the path. Only a regular
 * file (symlinks followed) is opened: a directory, FIFO, socket or device is LM_ERR_IO at once. */
lm_status lm_file_open(lm_file *f, const char *path, bool use_mmap, lm_error *err);
void lm_file_close(lm_file *f);
/* The pages of [p, p + n) of a mapped file are not needed any more (their bytes were copied into
 * another layout): they leave the process's resident memory and are read again from the file
 * only if touched. Whole pages inside the range only; nothing for a file read into memory. */
void lm_file_release(const lm_file *f, const void *p, size_t n);
/* Reads a whole regular file (as lm_file_open, never a FIFO) into a NUL-terminated heap buffer
 * (freed with lm_free). */
lm_status lm_read_text(const char *path, char **out, size_t *len, lm_error *err);
/* Reads fd to its end into a NUL-terminated heap buffer (lm_free); *len (may be NULL) gets the
 * length. what names the source in the message. On failure errno tells why (ENOMEM when out of
 * memory). The one reader under lm_read_text and the CLI's files and stdin. */
lm_status lm_read_fd(int fd, const char *what, char **out, size_t *len, lm_error *err);
/* Finishes a file written as part (f open on it): flushes and closes f, then renames part to
 * path, so a reader never sees half a file. On any failure part is removed and err names it. */
lm_status lm_file_publish(FILE *f, const char *part, const char *path, lm_error *err);
bool lm_path_exists(const char *path);
bool lm_is_dir(const char *path);
/* Joins dir and name with '/' into a new heap string (NULL on NOMEM). */
char *lm_path_join(const char *dir, const char *name);

/* ---- thread pool ---- */

typedef struct lm_pool lm_pool;
/* One chunk of a run: chunk in [0, n_chunks), on thread ith (for what is per thread). */
typedef void (*lm_chunk_fn)(void *ctx, int chunk, int n_chunks, int ith);
/* The classic split: fn(ctx, ith, nth) for every ith in [0, nth), nth the pool's size. */
typedef void (*lm_task_fn)(void *ctx, int ith, int nth);

/* n_threads counts the caller: 1 starts no thread. NULL on failure. */
lm_pool *lm_pool_new(int n_threads);
void lm_pool_free(lm_pool *p);
int lm_pool_size(const lm_pool *p);
/* Runs fn on each chunk once, the chunks taken from a shared counter by the threads that take
 * part (the caller among them), and returns when all are done. One run at a time per pool, from
 * any one thread at a time. */
void lm_pool_run_chunks(lm_pool *p, lm_chunk_fn fn, void *ctx, int n_chunks);
/* lm_pool_run_chunks with lm_pool_size(p) chunks, chunk c given to fn as ith = c (per-thread
 * scratch indexed by ith stays private to the chunk running it). */
void lm_pool_run(lm_pool *p, lm_task_fn fn, void *ctx);
/* Number of online cores. */
int lm_cpu_count(void);
/* Subnormal floats (below 2^-126 in f32) off for the calling thread: results that small become
 * zero and inputs that small count as zero (x86's MXCSR FTZ and DAZ; the F16C conversions ignore
 * both, so f16 subnormals keep their values). On x86 an operation that reads or makes one takes a
 * microcode assist of about a hundred cycles: a kernel fed activations near 1e-35 ran 3x slower.
 * Nothing a model computes is meaningful at that size. Returns the previous state for
 * lm_fp_restore; the pool's threads run with them off from the start. A no-op elsewhere (AArch64
 * cores handle them at speed). */
unsigned lm_fp_subnormals_off(void);
void lm_fp_restore(unsigned state);

/* ---- time ---- */

double lm_time_ms(void); /* monotonic, milliseconds */
uint64_t lm_time_ns(void);
/* pthread_cond_timedwait for at most ms milliseconds (ms < 1000) on the condition's default
 * clock, CLOCK_REALTIME: for loops that wake to check something else (a cancel, a closed
 * socket) as well as for the signal. mu is locked by the caller. */
void lm_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms);

/* ---- growable byte buffer ---- */

typedef struct lm_buf {
    char *data; /* always NUL-terminated when not NULL */
    size_t len, cap;
    bool oom;   /* an append failed; later appends are no-ops */
} lm_buf;

bool lm_buf_append(lm_buf *b, const char *s, size_t n);
bool lm_buf_puts(lm_buf *b, const char *s);
bool lm_buf_putc(lm_buf *b, char c);
bool lm_buf_printf(lm_buf *b, const char *fmt, ...) LM_PRINTF(2, 3);
void lm_buf_reset(lm_buf *b); /* len = 0, keeps memory */
void lm_buf_free(lm_buf *b);
/* Hands the data to the caller (lm_free) and resets b; returns "" copy when empty. */
char *lm_buf_take(lm_buf *b);
/* Copies b's text and a NUL into the caller's out (cap bytes) and frees b; *len_out (may be NULL)
 * gets the length either way. When it does not fit: LM_ERR_TOO_SMALL, "the <what> is N bytes, the
 * buffer holds cap", and out is left alone. */
lm_status lm_buf_copy_out(lm_buf *b, char *out, size_t cap, size_t *len_out, const char *what, lm_error *err);

/* ---- UTF-8 ---- */

/* Length of the sequence that starts with byte c (1..4), or 0 if c cannot start one. */
int lm_utf8_seq_len(unsigned char c);
/* Decodes one code point at s (n bytes available). Returns bytes used (1..4); on invalid input
 * returns 1 and sets *cp to 0xFFFD. */
int lm_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encodes cp into out (4 bytes room); returns bytes written (1..4), 0 for invalid cp. */
int lm_utf8_encode(uint32_t cp, char *out);
/* Length of the longest prefix of s that does not end inside an incomplete UTF-8 sequence
 * (a truncated trailing sequence is held back; invalid bytes pass through). */
size_t lm_utf8_complete_len(const char *s, size_t n);

/* ---- half floats ---- */

float lm_f16_to_f32(uint16_t h);
uint16_t lm_f32_to_f16(float f);
static inline float lm_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}
uint16_t lm_f32_to_bf16(float f); /* round to nearest even */

/* ---- CPU features (computed once) ---- */

enum {
    LM_CPU_AVX2 = 1u << 0,
    LM_CPU_FMA = 1u << 1,
    LM_CPU_F16C = 1u << 2,
    LM_CPU_AVX512F = 1u << 3,
    LM_CPU_AVX512BW = 1u << 4,
    LM_CPU_AVX512VL = 1u << 5,
    LM_CPU_AVX512VNNI = 1u << 6,
    LM_CPU_AVX512BF16 = 1u << 7,
    LM_CPU_AVX512DQ = 1u << 8,
    LM_CPU_NEON = 1u << 16,
    LM_CPU_DOTPROD = 1u << 17,
};
uint32_t lm_cpu_features(void);

/* ---- JSON (json.c: cJSON, with the host's cJSON allocator) ---- */

/* Parses len bytes holding one JSON value (white space around it allowed, anything else after it
 * is LM_ERR_FORMAT). On error fills err with what (a file name) and the byte offset. */
lm_status lm_json_parse(const char *text, size_t len, const char *what, cJSON **out,
                        lm_error *err);
/* Reads and parses a JSON file. */
lm_status lm_json_load(const char *path, cJSON **out, lm_error *err);
/* Serializes without formatting into a heap string (lm_free), NULL on NOMEM. */
char *lm_json_print(const cJSON *j);

/* ---- libcurl (curl.c) ---- */

/* curl_global_init, once per process (thread-safe); call before the first curl handle. */
void lm_curl_init(void);

/* ---- logging through params ---- */

typedef struct lm_logger {
    lm_log_fn fn;
    void *user;
} lm_logger;
void lm_log(const lm_logger *lg, lm_log_level level, const char *fmt, ...) LM_PRINTF(3, 4);

/* ---- small RNG (xoshiro256**), deterministic across platforms ---- */

typedef struct lm_rng {
    uint64_t s[4];
} lm_rng;
void lm_rng_seed(lm_rng *r, uint64_t seed);
uint64_t lm_rng_next(lm_rng *r);
/* Uniform in [0, 1). */
double lm_rng_uniform(lm_rng *r);

#endif /* LM_CORE_H */
