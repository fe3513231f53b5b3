/* tests/unit/test_hub.c: model references: ids are validated before any file access, and a
 * Hugging Face cache laid out as huggingface_hub does (refs → snapshots) resolves. */
#include "testutil.h"

#include <stdio.h>
#include <sys/stat.h>

#include "hub/hub.h"

static void test_parse_id(void **state) {
    (void)state;
    char o[128], n[128], r[256];
    assert_true(hub_parse_id("mlx-community/Llama-3.2-3B-Instruct-4bit", o, 128, n, 128, r, 256));
    assert_string_equal(o, "mlx-community");
    assert_string_equal(n, "Llama-3.2-3B-Instruct-4bit");
    assert_string_equal(r, "main");
    assert_true(hub_parse_id("org/name@v1.0", o, 128, n, 128, r, 256));
    assert_string_equal(r, "v1.0");
    const char *bad[] = {"org/..", "../x", "/abs/path", "org/na me", "org/name@../x", "org//name", ".org/x", "org/x@", "org/x;rm", "noslash", "org/x/y"};
    for (size_t i = 0; i < LM_ARRAY_LEN(bad); i++)
        if (hub_parse_id(bad[i], o, 128, n, 128, r, 256)) fail_msg("accepted '%s'", bad[i]);
}

static void mk(const char *p) { assert_int_equal(mkdir(p, 0755), 0); }

static void test_resolve_cache(void **state) {
    (void)state;
    const char *cache = tu_temp_dir();
    char p[2048], out[2048];
    const char *commit = "0123456789abcdef0123456789abcdef01234567";
    snprintf(p, sizeof p, "%s/models--org--tiny", cache);
    mk(p);
    snprintf(p, sizeof p, "%s/models--org--tiny/refs", cache);
    mk(p);
    snprintf(p, sizeof p, "%s/models--org--tiny/snapshots", cache);
    mk(p);
    snprintf(p, sizeof p, "%s/models--org--tiny/snapshots/%s", cache, commit);
    mk(p);
    snprintf(p, sizeof p, "%s/models--org--tiny/refs/main", cache);
    tu_put(p, commit);
    lm_error err = {0};
    assert_int_equal(lm_hub_resolve("org/tiny", cache, out, sizeof out, &err), LM_OK);
    snprintf(p, sizeof p, "%s/models--org--tiny/snapshots/%s", cache, commit);
    assert_string_equal(out, p);
    char ref[128];
    snprintf(ref, sizeof ref, "org/tiny@%s", commit);
    assert_int_equal(lm_hub_resolve(ref, cache, out, sizeof out, &err), LM_OK);
    assert_int_equal(lm_hub_resolve("org/tiny@v2", cache, out, sizeof out, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "revision 'v2'"));
    assert_int_equal(lm_hub_resolve("org/missing", cache, out, sizeof out, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "locallm pull"));
    assert_int_equal(lm_hub_resolve("org/../etc", cache, out, sizeof out, &err), LM_ERR_IO);
    /* an existing path is used as is */
    assert_int_equal(lm_hub_resolve(cache, NULL, out, sizeof out, &err), LM_OK);
    assert_string_equal(out, cache);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_resolve_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
