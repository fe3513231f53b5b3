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

void tu_put(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    size_t n = strlen(text);
    if (fwrite(text, 1, n, f) != n || fclose(f) != 0) fail_msg("cannot write %s", path);
}

const char *tu_put_in(const char *dir, const char *name, const char *text) {
    char *p = g_paths[g_next++ & 7];
    int n = snprintf(p, 4096, "%s/%s", dir, name);
    assert_true(n > 0 && n < 4096);
    tu_put(p, text);
    return p;
}

void tu_copy_in(const char *from, const char *dir, const char *name, size_t keep) {
    size_t len;
    char *d = tu_read(from, &len);
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < sizeof path);
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    size_t w = len < keep ? len : keep;
    if (fwrite(d, 1, w, f) != w || fclose(f) != 0) fail_msg("cannot write %s", path);
    lm_free(d);
}

/* Through the shell: these are fixtures' folders under /tmp, named by the tests themselves. */
static void shell(const char *fmt, const char *path) {
    char cmd[4200];
    if (strchr(path, '\'')) fail_msg("%s: a quote in the path would break the shell command", path);
    int n = snprintf(cmd, sizeof cmd, fmt, path);
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    if (system(cmd) != 0) fail_msg("%s failed", cmd);
}

void tu_mkdirs(const char *path) { shell("mkdir -p '%s'", path); }
void tu_rm_rf(const char *path) { shell("rm -rf '%s'", path); }

long tu_alloc_sweep(const char *what, tu_attempt_fn fn, const void *arg, bool may_recover, long max_n) {
    for (long n = 1; n <= max_n; n++) {
        lm_error err = {0};
        lm_alloc_fail_at(n);
        lm_status st = fn(arg, &err);
        bool fired = lm_alloc_failed();
        lm_alloc_fail_at(0);
        if (!fired) {
            if (st != LM_OK)
                fail_msg("%s: no allocation failed at %ld, yet %s: %s", what, n, lm_status_str(st),
                         err.msg);
            return n;
        }
        if (st == LM_OK && may_recover) continue;
        if (st != LM_ERR_NOMEM)
            fail_msg("%s: allocation %ld failing gave %s (%s), expected LM_ERR_NOMEM", what, n,
                     lm_status_str(st), err.msg);
    }
    fail_msg("%s: allocations still failing after %ld runs", what, max_n);
    return max_n;
}

void tu_hub_repo(const char *cache, const char *repo_id, const char *commit, const char *file,
                 const char *blob, bool ref) {
    char repo[2048], p[4096], l[4200];
    const char *slash = strchr(repo_id, '/');
    assert_non_null(slash);
    snprintf(repo, sizeof repo, "%s/models--%.*s--%s", cache, (int)(slash - repo_id), repo_id,
             slash + 1);
    snprintf(p, sizeof p, "%s/blobs", repo);
    tu_mkdirs(p);
    tu_put_in(p, "b1", blob);
    snprintf(p, sizeof p, "%s/snapshots/%s", repo, commit);
    tu_mkdirs(p);
    snprintf(l, sizeof l, "%s/%s", p, file);
    if (symlink("../../blobs/b1", l) != 0) fail_msg("cannot link %s", l);
    if (ref) {
        snprintf(p, sizeof p, "%s/refs", repo);
        tu_mkdirs(p);
        tu_put_in(p, "main", commit);
    }
}

bool tu_printable(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return false;
        uint32_t cp;
        int l = lm_utf8_decode(s + i, n - i, &cp);
        if (c >= 0x80 && (l <= 1 || (cp >= 0x80 && cp <= 0x9f))) return false;
        i += (size_t)l;
    }
    return true;
}
