/* tests/unit/testutil.c: see testutil.h. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char g_paths[8][4096];
static int g_next;

static const char *join(const char *env, const char *fallback, const char *rel) {
    const char *base = getenv(env);
    if (!base) base = fallback;
    char *p = g_paths[g_next++ & 7];
    snprintf(p, 4096, "%s/%s", base, rel);
    return p;
}

void tu_json_use_lm_alloc(void) {
    cJSON_Hooks h = {lm_malloc, lm_free};
    cJSON_InitHooks(&h);
}

const char *tu_data(const char *rel) { return join("LM_TEST_DATA", "tests/data", rel); }
const char *tu_src(const char *rel) { return join("LM_SOURCE_DIR", ".", rel); }

char *tu_read(const char *path, size_t *len) {
    char *text = NULL;
    lm_error err = {0};
    lm_status st = lm_read_text(path, &text, len, &err);
    if (st) fail_msg("%s", err.msg);
    return text;
}

cJSON *tu_json(const char *path) {
    cJSON *j = NULL;
    lm_error err = {0};
    if (lm_json_load(path, &j, &err)) fail_msg("%s", err.msg);
    return j;
}

void tu_rand_floats(float *x, size_t n, uint64_t seed) {
    lm_rng r;
    lm_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(lm_rng_uniform(&r) * 2.0 - 1.0);
}

const char *tu_write_temp(const void *data, size_t n, const char *suffix) {
    char *p = g_paths[g_next++ & 7];
    snprintf(p, 4096, "/tmp/lmtest_XXXXXX%s", suffix ? suffix : "");
    int fd = mkstemps(p, suffix ? (int)strlen(suffix) : 0);
    if (fd < 0) fail_msg("mkstemps failed");
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, (const char *)data + off, n - off);
        if (w <= 0) fail_msg("write failed");
        off += (size_t)w;
    }
    close(fd);
    return p;
}

const char *tu_temp_dir(void) {
    char *p = g_paths[g_next++ & 7];
    snprintf(p, 4096, "/tmp/lmtestdir_XXXXXX");
    if (!mkdtemp(p)) fail_msg("mkdtemp failed");
    return p;
}

