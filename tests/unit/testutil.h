/* tests/unit/testutil.h: helpers shared by the unit tests (paths to fixtures, file reading). */
#ifndef LM_TESTUTIL_H
#define LM_TESTUTIL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"

/* Path of a fixture under tests/data (LM_TEST_DATA), in a static rotating buffer. */
/* Routes cJSON's allocations through lm_malloc for this test program (the library never installs
 * cJSON hooks: the allocator is the host's), so "fail the Nth allocation" reaches inside cJSON and
 * lm_json_parse reports LM_ERR_NOMEM. Call it first in main() of a test that fails allocations. */
void tu_json_use_lm_alloc(void);
const char *tu_data(const char *rel);
/* Path under the source tree (LM_SOURCE_DIR). */
const char *tu_src(const char *rel);
/* Reads a whole file (asserts on failure); free with lm_free. */
char *tu_read(const char *path, size_t *len);
/* Loads JSON (asserts on failure); free with cJSON_Delete. */
cJSON *tu_json(const char *path);
/* Seeded deterministic random floats in [-1, 1). */
void tu_rand_floats(float *x, size_t n, uint64_t seed);
/* Writes bytes to a new temp file and returns its path (static buffer). */
const char *tu_write_temp(const void *data, size_t n, const char *suffix);
/* A new empty temp directory (static buffer). */
const char *tu_temp_dir(void);
/* Writes text to path, creating or truncating the file (asserts on failure). */
void tu_put(const char *path, const char *text);
/* Writes text to dir/name and returns that path (static rotating buffer). */
const char *tu_put_in(const char *dir, const char *name, const char *text);
/* Copies the first min(size, keep) bytes of the file from into dir/name (SIZE_MAX: all of it;
 * asserts on failure). */
void tu_copy_in(const char *from, const char *dir, const char *name, size_t keep);
/* mkdir -p path; rm -rf path (assert on failure). */
void tu_mkdirs(const char *path);
void tu_rm_rf(const char *path);
/* One run of an allocation-failure sweep: makes the thing under test, checks it when the status
 * is LM_OK, asserts that nothing was handed out when it is not, frees all it made and returns the
 * status (err filled on failure). */
typedef lm_status (*tu_attempt_fn)(const void *arg, lm_error *err);
/* For N = 1, 2, ... runs fn with the Nth allocation failing (lm_alloc_fail_at), until a run in
 * which no allocation failed: that run must return LM_OK. Every other run must return
 * LM_ERR_NOMEM, or LM_OK too when may_recover (an optional allocation, such as a cache or pcre2's
 * JIT, failed and the work went on without it). Fails past max_n runs. Returns the N of the last
 * run: one more than the allocations of a whole run. Leaks show under AddressSanitizer. */
long tu_alloc_sweep(const char *what, tu_attempt_fn fn, const void *arg, bool may_recover, long max_n);
/* A Hugging Face cache entry made by hand, for the hub tests without a network:
 * <cache>/models--<org>--<name>/blobs/b1 holds blob and is linked as snapshots/<commit>/<file>;
 * with ref, refs/main names commit. repo_id is "org/name". */
void tu_hub_repo(const char *cache, const char *repo_id, const char *commit, const char *file,
                 const char *blob, bool ref);
/* True when s is valid UTF-8 with no C0 control, DEL or C1 control: text fit for a person to
 * read in an error message or a listing. */
bool tu_printable(const char *s);
/* A session on an engine of its own (the session keeps the engine alive: lm_session_free
 * releases both). For tests of one conversation at a time. */
lm_status tu_session_new(const lm_model *m, const lm_session_params *sp, lm_session **s, lm_error *err);

#endif
