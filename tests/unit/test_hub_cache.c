/* tests/unit/test_hub_cache.c: the cache side of src/hub without a network: ":QUANT" ids, offline
 * pulls that pick a .gguf from a snapshot (or fail naming the choices), listing with size and
 * format, removal that refuses bad ids and never follows symlinks out of the cache. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub/hub.h"

static const char *COMMIT = "0123456789abcdef0123456789abcdef01234567";

/* cache/models--org--name with blobs/b1 (5 bytes) linked as snapshots/COMMIT/file. */
static void make_repo(const char *cache, const char *org, const char *name, const char *file, bool ref) {
    char id[256];
    snprintf(id, sizeof id, "%s/%s", org, name);
    tu_hub_repo(cache, id, COMMIT, file, "hello", ref);
}

static void test_split_quant(void **state) {
    (void)state;
    char b[512], q[64];
    assert_true(hub_split_quant("org/name:Q4_K_M", b, sizeof b, q, sizeof q));
    assert_string_equal(b, "org/name");
    assert_string_equal(q, "Q4_K_M");
    assert_true(hub_split_quant("org/name@v1", b, sizeof b, q, sizeof q));
    assert_string_equal(b, "org/name@v1");
    assert_string_equal(q, "");
    const char *bad[] = {"org/name:", "org/name:Q4 K", "org/..:Q8_0", "/abs:Q8_0", "org/name:a/b", "x"};
    for (size_t i = 0; i < LM_ARRAY_LEN(bad); i++)
        if (hub_split_quant(bad[i], b, sizeof b, q, sizeof q)) fail_msg("accepted '%s'", bad[i]);
}

static void test_offline_pull(void **state) {
    (void)state;
    const char *cache = tu_temp_dir();
    char c[1024];
    snprintf(c, sizeof c, "%s", cache);
    make_repo(c, "org", "g", "m-Q8_0.gguf", true);
    char p[2048];
    snprintf(p, sizeof p, "%s/models--org--g/snapshots/%s/m-F16.gguf", c, COMMIT);
    assert_int_equal(symlink("../../blobs/b1", p), 0);
    lm_hub_params o = lm_hub_default_params();
    o.cache_dir = c;
    o.offline = true;
    o.endpoint = "http://127.0.0.1:1";
    char out[2048], want[2048];
    lm_error err = {0};
    assert_int_equal(lm_hub_pull("org/g:q8_0", &o, out, sizeof out, &err), LM_OK);
    snprintf(want, sizeof want, "%s/models--org--g/snapshots/%s/m-Q8_0.gguf", c, COMMIT);
    assert_string_equal(out, want);
    const char *inc[] = {"*F16*"};
    o.includes = inc;
    o.n_includes = 1;
    assert_int_equal(lm_hub_pull("org/g", &o, out, sizeof out, &err), LM_OK);
    assert_non_null(strstr(out, "/m-F16.gguf"));
    o.n_includes = 0;
    assert_int_not_equal(lm_hub_pull("org/g", &o, out, sizeof out, &err), LM_OK);
    assert_non_null(strstr(err.msg, "Q4_K_M"));
    assert_non_null(strstr(err.msg, "m-Q8_0.gguf"));
    assert_int_equal(lm_hub_pull("org/missing", &o, out, sizeof out, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "offline"));
    assert_int_equal(lm_hub_pull("org/../x", &o, out, sizeof out, &err), LM_ERR_MISUSE);
    assert_non_null(strstr(err.msg, "not a valid"));
}

static void test_list_and_remove(void **state) {
    (void)state;
    char c[1024];
    snprintf(c, sizeof c, "%s", tu_temp_dir());
    make_repo(c, "org", "st", "model.safetensors", true);
    make_repo(c, "a-org", "gg", "x.gguf", false);
    char p[2048];
    snprintf(p, sizeof p, "%s/models--org--st/snapshots/%s/config.json", c, COMMIT);
    tu_put(p, "{\"quantization\": {\"bits\": 4}}");
    /* a symlink pointing outside the cache must survive rm */
    char outside[1024];
    snprintf(outside, sizeof outside, "%s", tu_temp_dir());
    snprintf(p, sizeof p, "%s/keep", outside);
    tu_put(p, "x");
    snprintf(p, sizeof p, "%s/models--org--st/escape", c);
    assert_int_equal(symlink(outside, p), 0);

    hub_cached *l = NULL;
    size_t n = 0;
    lm_error err = {0};
    assert_int_equal(hub_cache_list(c, &l, &n, &err), LM_OK);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].id, "a-org/gg");
    assert_string_equal(l[0].format, "gguf");
    assert_string_equal(l[0].commit, COMMIT);
    assert_string_equal(l[0].rev, "");
    assert_string_equal(l[1].id, "org/st");
    assert_string_equal(l[1].format, "mlx");
    assert_string_equal(l[1].rev, "main");
    assert_int_equal(l[1].size, 5);
    lm_free(l);

    assert_int_equal(hub_cache_remove(c, "org/..", &err), LM_ERR_MISUSE);
    assert_int_equal(hub_cache_remove(c, "org/st@main", &err), LM_ERR_MISUSE);
    assert_int_equal(hub_cache_remove(c, "org/st", &err), LM_OK);
    snprintf(p, sizeof p, "%s/keep", outside);
    assert_true(lm_path_exists(p));
    assert_int_equal(hub_cache_remove(c, "org/st", &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "not in the cache"));
    assert_int_equal(hub_cache_list(c, &l, &n, &err), LM_OK);
    assert_int_equal(n, 1);
    lm_free(l);
    snprintf(p, sizeof p, "%s/none", c);
    assert_int_equal(hub_cache_list(p, &l, &n, &err), LM_OK);
    assert_int_equal(n, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_quant),
        cmocka_unit_test(test_offline_pull),
        cmocka_unit_test(test_list_and_remove),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
