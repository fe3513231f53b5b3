/* tests/unit/test_catalog.c: the catalog of recommended models and the memory estimate.
 * Every short name expands to the repo id the guide names (and the -gguf ones to a GGUF repo with
 * a quant); a family name alone picks its default size; a short name that is not in the catalog
 * is an error listing known ones; short names
 * resolve through a cache laid out like huggingface_hub's; the estimate is checked by arithmetic
 * for a catalog entry and for the stories260K fixtures (GGUF and Hugging Face folder). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub/hub.h"

static const char *const EXPECTED[][2] = {
    {"llama3.2:1b", "mlx-community/Llama-3.2-1B-Instruct-4bit"},
    {"llama3.2:3b", "mlx-community/Llama-3.2-3B-Instruct-4bit"},
    {"phi3:mini", "mlx-community/Phi-3-mini-4k-instruct-4bit"},
    {"qwen2.5:3b", "mlx-community/Qwen2.5-3B-Instruct-4bit"},
    {"qwen2.5:7b", "mlx-community/Qwen2.5-7B-Instruct-4bit"},
    {"qwen2.5:14b", "mlx-community/Qwen2.5-14B-Instruct-4bit"},
    {"qwen2.5:32b", "mlx-community/Qwen2.5-32B-Instruct-4bit"},
    {"mistral:7b", "mlx-community/Mistral-7B-Instruct-v0.3-4bit"},
    {"llama3.1:8b", "mlx-community/Meta-Llama-3.1-8B-Instruct-4bit"},
    {"llama3.1:70b", "mlx-community/Meta-Llama-3.1-70B-Instruct-4bit"},
    {"llama3.2:1b-gguf", "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"},
    {"llama3.2:3b-gguf", "bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"},
    {"phi3:mini-gguf", "microsoft/Phi-3-mini-4k-instruct-gguf:q4"},
    {"qwen2.5:3b-gguf", "bartowski/Qwen2.5-3B-Instruct-GGUF:Q4_K_M"},
    {"qwen2.5:7b-gguf", "bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"},
    {"qwen2.5:14b-gguf", "bartowski/Qwen2.5-14B-Instruct-GGUF:Q4_K_M"},
    {"qwen2.5:32b-gguf", "bartowski/Qwen2.5-32B-Instruct-GGUF:Q4_K_M"},
    {"mistral:7b-gguf", "bartowski/Mistral-7B-Instruct-v0.3-GGUF:Q4_K_M"},
    {"llama3.1:8b-gguf", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M"},
    {"llama3.1:70b-gguf", "bartowski/Meta-Llama-3.1-70B-Instruct-GGUF:Q4_K_M"},
};

static void every_short_name_expands(void **state) {
    (void)state;
    size_t n = 0;
    const hub_model_entry *cat = hub_catalog(&n);
    assert_int_equal(n, LM_ARRAY_LEN(EXPECTED));
    for (size_t i = 0; i < LM_ARRAY_LEN(EXPECTED); i++) {
        char out[512];
        lm_error err = {0};
        assert_int_equal(hub_expand_ref(EXPECTED[i][0], out, sizeof out, &err), LM_OK);
        assert_string_equal(out, EXPECTED[i][1]);
        const hub_model_entry *e = hub_catalog_find(EXPECTED[i][0]);
        assert_non_null(e);
        assert_ptr_equal(e, &cat[i]);
        assert_true(hub_is_short_name(e->name));
        bool gguf = strstr(e->name, "-gguf") != NULL;
        assert_string_equal(e->format, gguf ? "gguf" : "mlx");
        /* the repo id is a valid hub id (with its quant for GGUF) */
        char base[512], quant[64], org[128], name[128], rev[256];
        assert_true(hub_split_quant(e->repo, base, sizeof base, quant, sizeof quant));
        assert_true(hub_parse_id(base, org, sizeof org, name, sizeof name, rev, sizeof rev));
        assert_int_equal(quant[0] != 0, gguf);
        assert_true(e->n_layer > 0 && e->n_kv_head > 0 && e->head_dim > 0 && e->n_ctx_train >= 4096);
        assert_true(e->size_gb > 0.3 && e->size_gb < 50 && e->params_b > 1 && e->params_b < 71);
        assert_non_null(e->desc);
    }
}

static void unknown_short_name_lists_known_ones(void **state) {
    (void)state;
    char out[512] = "unchanged";
    lm_error err = {0};
    assert_int_equal(hub_expand_ref("llama9:400b", out, sizeof out, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "llama9:400b: unknown model name"));
    assert_non_null(strstr(err.msg, "llama3.2:3b"));
    assert_non_null(strstr(err.msg, "qwen2.5:7b"));
    assert_non_null(strstr(err.msg, "locallm ls --available"));
    /* the resolver says the same before touching the cache */
    char path[512];
    assert_int_equal(lm_hub_resolve("llama9:400b", "/nonexistent", path, sizeof path, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "unknown model name"));
}

static void other_refs_pass_through(void **state) {
    (void)state;
    const char *refs[] = {"org/name", "org/name@main", "bartowski/X-GGUF:Q8_0", "model.gguf", "./m:1", "/abs/a:b"};
    for (size_t i = 0; i < LM_ARRAY_LEN(refs); i++) {
        char out[512];
        lm_error err = {0};
        assert_false(hub_is_short_name(refs[i]));
        assert_int_equal(hub_expand_ref(refs[i], out, sizeof out, &err), LM_OK);
        assert_string_equal(out, refs[i]);
    }
    assert_false(hub_is_short_name("Llama3:8B")); /* short names are lower case */
    assert_false(hub_is_short_name("llama3"));    /* and have a tag */
    assert_null(hub_catalog_find("llama3.2:3B"));
    char small[8];
    lm_error err = {0};
    assert_int_equal(hub_expand_ref("llama3.2:3b", small, sizeof small, &err), LM_ERR_TOO_SMALL);
}

/* A family name without a tag stands for one size (what `ollama run llama3.2` picks); names that
 * are not families stay as they are. */
static void family_names_pick_the_default_size(void **state) {
    (void)state;
    static const char *const want[][2] = {{"llama3.2", "llama3.2:3b"}, {"llama3.1", "llama3.1:8b"},
                                          {"qwen2.5", "qwen2.5:7b"},   {"phi3", "phi3:mini"},
                                          {"mistral", "mistral:7b"}};
    for (size_t i = 0; i < LM_ARRAY_LEN(want); i++) {
        assert_string_equal(hub_catalog_default(want[i][0]), want[i][1]);
        const hub_model_entry *e = hub_catalog_find(want[i][0]);
        assert_non_null(e);
        assert_string_equal(e->name, want[i][1]);
        char out[512], full[512];
        lm_error err = {0};
        assert_int_equal(hub_expand_ref(want[i][0], out, sizeof out, &err), LM_OK);
        assert_int_equal(hub_expand_ref(want[i][1], full, sizeof full, &err), LM_OK);
        assert_string_equal(out, full);
    }
    assert_null(hub_catalog_default("llama3"));
    assert_null(hub_catalog_default("llama3.2:3b"));
    assert_null(hub_catalog_find("tinychat"));
    char out[512];
    lm_error err = {0};
    assert_int_equal(hub_expand_ref("tinychat", out, sizeof out, &err), LM_OK);
    assert_string_equal(out, "tinychat");
}

/* cache/models--org--name/{refs/main, snapshots/C/file -> ../../blobs/b1} */
static void make_repo(const char *cache, const char *id, const char *file) {
    tu_hub_repo(cache, id, "89abcdef0123456789abcdef0123456789abcdef", file, "data", true);
}

static void short_names_resolve_in_the_cache(void **state) {
    (void)state;
    char cache[1024];
    snprintf(cache, sizeof cache, "%s", tu_temp_dir());
    make_repo(cache, "mlx-community/Llama-3.2-3B-Instruct-4bit", "config.json");
    make_repo(cache, "bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q4_K_M.gguf");
    char out[4096], want[4096];
    lm_error err = {0};
    assert_int_equal(lm_hub_resolve("llama3.2:3b", cache, out, sizeof out, &err), LM_OK);
    snprintf(want, sizeof want, "%s/models--mlx-community--Llama-3.2-3B-Instruct-4bit/snapshots/"
                                "89abcdef0123456789abcdef0123456789abcdef", cache);
    assert_string_equal(out, want);
    assert_int_equal(lm_hub_resolve("llama3.2:3b-gguf", cache, out, sizeof out, &err), LM_OK);
    assert_non_null(strstr(out, "/models--bartowski--Llama-3.2-3B-Instruct-GGUF/snapshots/"));
    assert_non_null(strstr(out, "/Llama-3.2-3B-Instruct-Q4_K_M.gguf"));
    /* a catalog model not in the cache: the message names the repo id to pull */
    assert_int_equal(lm_hub_resolve("qwen2.5:7b", cache, out, sizeof out, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "mlx-community/Qwen2.5-7B-Instruct-4bit"));
    tu_rm_rf(cache);
}

static void estimate_for_a_catalog_entry(void **state) {
    (void)state;
    const hub_model_entry *e = hub_catalog_find("llama3.2:3b");
    assert_non_null(e);
    hub_mem_need need;
    hub_mem_need_entry(e, 0, &need);
    /* 28 layers, 8 KV heads of 128, F16, the default context min(131072, 4096) */
    assert_int_equal(need.ctx, 4096);
    assert_int_equal(need.kv, 2ull * 28 * 8 * 128 * 4096 * 2); /* 469762048 = 448 MiB */
    assert_int_equal(need.kv, 469762048ull);
    assert_int_equal(need.weights, 1800000000ull);
    assert_int_equal(need.overhead, 256ull << 20);
    assert_int_equal(need.total, 1800000000ull + 469762048ull + (256ull << 20));
    hub_mem_need_entry(e, 32768, &need);
    assert_int_equal(need.kv, 469762048ull * 8);
    /* Phi-3 mini has no grouped KV heads (32 of 96) and a 4k context */
    hub_mem_need_entry(hub_catalog_find("phi3:mini"), 0, &need);
    assert_int_equal(need.kv, 2ull * 32 * 32 * 96 * 4096 * 2);
    assert_int_equal(hub_kv_bytes(0, 8, 128, 4096, 2), 0);
    assert_int_equal(hub_default_ctx(0, 512), 512);
    assert_int_equal(hub_default_ctx(0, 131072), 4096);
    assert_int_equal(hub_default_ctx(100, 131072), 100);
}

static uint64_t file_size(const char *p) {
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return (uint64_t)st.st_size;
}

static void estimate_from_model_files(void **state) {
    (void)state;
    /* stories260K: 5 layers, 4 KV heads of 8, context 512 -> 2*5*4*8*512*2 = 327680 bytes */
    const char *g = tu_data("stories260K/stories260K-f32.gguf");
    hub_mem_need need;
    lm_error err = {0};
    assert_int_equal(hub_mem_need_path(g, 0, &need, &err), LM_OK);
    assert_int_equal(need.n_layer, 5);
    assert_int_equal(need.n_kv_head, 4);
    assert_int_equal(need.head_dim, 8);
    assert_int_equal(need.ctx, 512);
    assert_int_equal(need.kv, 327680);
    assert_int_equal(need.weights, file_size(g));
    assert_int_equal(need.total, need.weights + 327680 + (256ull << 20));
    const char *d = tu_data("stories260K/hf");
    assert_int_equal(hub_mem_need_path(d, 100, &need, &err), LM_OK);
    assert_int_equal(need.ctx, 100);
    assert_int_equal(need.kv, 2ull * 5 * 4 * 8 * 100 * 2);
    assert_int_equal(need.weights, file_size(tu_data("stories260K/hf/model.safetensors")));
    assert_int_equal(hub_mem_need_path(tu_data("no/such.gguf"), 0, &need, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "no/such.gguf"));
}

static void available_memory_is_known(void **state) {
    (void)state;
    uint64_t avail = 0;
    lm_error err = {0};
    assert_int_equal(hub_mem_available(&avail, &err), LM_OK);
    assert_true(avail > (16ull << 20)); /* any machine running the tests has more than 16 MiB free */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_short_name_expands),
        cmocka_unit_test(unknown_short_name_lists_known_ones),
        cmocka_unit_test(other_refs_pass_through),
        cmocka_unit_test(family_names_pick_the_default_size),
        cmocka_unit_test(short_names_resolve_in_the_cache),
        cmocka_unit_test(estimate_for_a_catalog_entry),
        cmocka_unit_test(estimate_from_model_files),
        cmocka_unit_test(available_memory_is_known),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
