/* tests/unit/testutil.h: helpers shared by the unit tests (paths to fixtures, file reading). */
#ifndef LM_TESTUTIL_H
#define LM_TESTUTIL_H

#include <setjmp.h>
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
/* A session on an engine of its own (the session keeps the engine alive: lm_session_free
 * releases both). For tests of one conversation at a time. */
lm_status tu_session_new(const lm_model *m, const lm_session_params *sp, lm_session **s, lm_error *err);

#endif
