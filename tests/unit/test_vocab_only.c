/* tests/unit/test_vocab_only.c: lm_model_params.vocab_only, a model of vocabulary and template
 * alone. A tokenizer folder without weights (tests/data/tokenizers/llama3), its tokenizer.json
 * file, and a GGUF file's metadata load; the ids and the rendered prompt are those of
 * transformers (refs.json); sessions are refused with LM_ERR_UNSUPPORTED and a message; without
 * vocab_only a tokenizer folder is refused naming what it lacks; a folder with no tokenizer.json
 * is an error naming the folder. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "locallm.h"

static lm_model *load_vocab(const char *path) {
    lm_model_params mp = lm_model_default_params();
    mp.vocab_only = true;
    lm_model *m = NULL;
    lm_error err = {0};
    lm_status st = lm_model_load(path, &mp, &m, &err);
    if (st != LM_OK) print_message("%s: %s\n", path, err.msg);
    assert_int_equal(st, LM_OK);
    return m;
}

/* The ids of text, against the refs.json entry "hello" (add_special_tokens=True). */
static void check_hello(const lm_model *m, const cJSON *refs) {
    const cJSON *e;
    const cJSON *want = NULL;
    const char *text = NULL;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(refs, "encode")) {
        if (strcmp(cJSON_GetObjectItem(e, "id")->valuestring, "hello") == 0) {
            want = cJSON_GetObjectItem(e, "ids_with_special");
            text = cJSON_GetObjectItem(e, "text")->valuestring;
        }
    }
    assert_non_null(want);
    lm_token ids[64];
    size_t n = 0;
    lm_error err = {0};
    assert_int_equal(lm_model_tokenize(m, text, strlen(text), LM_TOK_ADD_SPECIAL | LM_TOK_PARSE_SPECIAL,
                                 ids, 64, &n, &err),
                     LM_OK);
    assert_int_equal(n, (size_t)cJSON_GetArraySize(want));
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], cJSON_GetArrayItem(want, (int)i)->valueint);
    char back[256];
    size_t len = 0;
    assert_int_equal(lm_model_detokenize(m, ids, n, true, back, sizeof back, &len, &err), LM_OK);
    assert_string_equal(back, text);
}

static void tokenizer_folder(void **state) {
    (void)state;
    cJSON *refs = tu_json(tu_data("tokenizers/llama3/refs.json"));
    const char *paths[] = {tu_data("tokenizers/llama3"), tu_data("tokenizers/llama3/tokenizer.json")};
    for (size_t k = 0; k < LM_ARRAY_LEN(paths); k++) {
        lm_model *m = load_vocab(paths[k]);
        assert_int_equal(lm_model_n_vocab(m), 128256);
        check_hello(m, refs);
        /* the template of tokenizer_config.json: refs.json chat[0] */
        const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(refs, "chat"), 0);
        const cJSON *msgs = cJSON_GetObjectItem(c, "messages");
        lm_message list[8];
        size_t n = 0;
        const cJSON *mj;
        cJSON_ArrayForEach(mj, msgs) {
            memset(&list[n], 0, sizeof list[n]);
            list[n].role = cJSON_GetObjectItem(mj, "role")->valuestring;
            list[n].content = cJSON_GetObjectItem(mj, "content")->valuestring;
            n++;
        }
        lm_chat_params cp = lm_chat_default_params();
        cp.vars_json = "{\"date_string\": \"26 Jul 2024\"}";
        char out[4096];
        size_t len = 0;
        lm_error err = {0};
        assert_int_equal(lm_model_chat_render(m, list, n, &cp, out, sizeof out, &len, &err), LM_OK);
        assert_string_equal(out, cJSON_GetObjectItem(c, "text")->valuestring);
        /* no weights: no engine to run them */
        lm_engine *e = NULL;
        assert_int_equal(lm_engine_new(m, NULL, &e, &err), LM_ERR_UNSUPPORTED);
        assert_null(e);
        assert_non_null(strstr(err.msg, "vocab_only"));
        lm_model_info mi;
        lm_model_get_info(m, &mi);
        assert_int_equal(mi.n_layer, 0);
        assert_string_equal(mi.format, "tokenizer");
        lm_model_free(m);
    }
    cJSON_Delete(refs);
}

static void gguf_metadata(void **state) {
    (void)state;
    lm_model *m = load_vocab(tu_data("stories260K/stories260K-f32.gguf"));
    assert_int_equal(lm_model_n_vocab(m), 512);
    lm_token ids[16];
    size_t n = 0;
    lm_error err = {0};
    assert_int_equal(lm_model_tokenize(m, "Once upon a time", 16, LM_TOK_ADD_SPECIAL, ids, 16, &n, &err), LM_OK);
    const lm_token want[] = {1, 403, 407, 261, 378};
    assert_int_equal(n, LM_ARRAY_LEN(want));
    assert_memory_equal(ids, want, sizeof want);
    lm_model_info mi;
    lm_model_get_info(m, &mi);
    assert_string_equal(mi.format, "gguf");
    assert_string_equal(mi.arch, "llama");
    assert_int_equal(mi.weight_bytes, 0);
    lm_model_free(m);
}

static void what_is_refused(void **state) {
    (void)state;
    lm_model *m = NULL;
    lm_error err = {0};
    /* a tokenizer folder without vocab_only */
    assert_int_equal(lm_model_load(tu_data("tokenizers/llama3"), NULL, &m, &err), LM_ERR_UNSUPPORTED);
    assert_null(m);
    assert_non_null(strstr(err.msg, "a tokenizer without a model"));
    /* a folder without a tokenizer */
    lm_model_params mp = lm_model_default_params();
    mp.vocab_only = true;
    const char *dir = tu_temp_dir();
    assert_int_equal(lm_model_load(dir, &mp, &m, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, dir));
    assert_non_null(strstr(err.msg, "no tokenizer.json"));
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/none.json", dir);
    assert_int_equal(lm_model_load(missing, &mp, &m, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "none.json"));
    /* a broken tokenizer.json is a format error naming it */
    const char *bad = tu_write_temp("{\"model\": 3", 11, ".json");
    assert_int_not_equal(lm_model_load(bad, &mp, &m, &err), LM_OK);
    assert_null(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tokenizer_folder),
        cmocka_unit_test(gguf_metadata),
        cmocka_unit_test(what_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
