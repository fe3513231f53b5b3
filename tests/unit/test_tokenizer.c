/* tests/unit/test_tokenizer.c: GGUF SentencePiece vocabularies against stories260K's cases and
 * llama.cpp's test vectors; decoding and streaming decoding. */
#include "testutil.h"
#include "tok_check.h"

#include "formats/formats.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>

static tok_tokenizer *load_gguf_tok(const char *rel, gguf_file **gf) {
    lm_error err = {0};
    gguf_file *g = NULL;
    if (gguf_open(tu_data(rel), true, &g, &err) != LM_OK) fail_msg("%s", err.msg);
    tok_tokenizer *t = NULL;
    lm_status st = tok_load_gguf(g, &t, &err);
    if (st != LM_OK) fail_msg("%s", err.msg);
    *gf = g;
    return t;
}

static void assert_ids(const tok_vec *v, const cJSON *ids, const char *what) {
    int n = cJSON_GetArraySize(ids);
    bool same = (size_t)n == v->n;
    for (int i = 0; same && i < n; i++)
        same = v->ids[i] == cJSON_GetArrayItem(ids, i)->valueint;
    if (!same) {
        char got[2048] = "", want[2048] = "";
        for (size_t i = 0; i < v->n && strlen(got) < 2000; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), " %d", (int)v->ids[i]);
        for (int i = 0; i < n && strlen(want) < 2000; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), " %d",
                     cJSON_GetArrayItem(ids, i)->valueint);
        fail_msg("%s:\n got:%s\nwant:%s", what, got, want);
    }
}

/* The tokenizer of GGUF metadata built in memory; a failed load fails the test. */
static tok_tokenizer *load_meta(const gguf_file *g) {
    tok_tokenizer *t = NULL;
    lm_error err = {0};
    if (tok_load_gguf(g, &t, &err)) fail_msg("%s", err.msg);
    return t;
}

static void test_stories260k_cases(void **state) {
    (void)state;
    gguf_file *g;
    tok_tokenizer *t = load_gguf_tok("stories260K/stories260K-f32.gguf", &g);
    assert_int_equal(tok_n_vocab(t), 512);
    assert_string_equal(tok_model_name(t), "llama");
    assert_int_equal(tok_bos(t), 1);
    assert_int_equal(tok_eos(t), 2);
    cJSON *j = tu_json(tu_data("stories260K/tokenizer_cases.json"));
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        tok_vec v = {0};
        lm_error err = {0};
        assert_int_equal(tok_encode(t, text, strlen(text), 0, &v, &err), LM_OK);
        assert_ids(&v, cJSON_GetObjectItem(c, "ids"), text);
        check_stream(t, v.ids, v.n, false);
        /* with BOS: one more id in front */
        tok_vec w = {0};
        assert_int_equal(tok_encode(t, text, strlen(text), LM_TOK_ADD_SPECIAL, &w, &err), LM_OK);
        assert_int_equal(w.n, v.n + 1);
        assert_int_equal(w.ids[0], 1);
        tok_vec_free(&v);
        tok_vec_free(&w);
        n++;
    }
    assert_true(n > 20);
    cJSON_Delete(j);
    tok_free(t);
    gguf_close(g);
}

static void test_stories260k_decode(void **state) {
    (void)state;
    gguf_file *g;
    tok_tokenizer *t = load_gguf_tok("stories260K/stories260K-f32.gguf", &g);
    const char *text =
        "Once upon a time, there was a little girl named Lily. \xc3\xa9\xe2\x82\xac!";
    tok_vec v = {0};
    lm_error err = {0};
    assert_int_equal(tok_encode(t, text, strlen(text), LM_TOK_ADD_SPECIAL, &v, &err), LM_OK);
    expect_text(t, v.ids, v.n, true, text);
    check_stream(t, v.ids, v.n, true);
    check_stream(t, v.ids, v.n, false);
    /* byte tokens (<0xNN> = NN + 3 here): a complete sequence, then a cut one -> U+FFFD */
    lm_token euro[] = {0xE2 + 3, 0x82 + 3, 0xAC + 3}, cut[] = {0xE2 + 3, 0x82 + 3, 'a' + 3};
    expect_text(t, euro, 3, false, "\xe2\x82\xac");
    check_stream(t, euro, 3, false);
    expect_text(t, cut, 3, false, "\xef\xbf\xbd"
                                  "a");
    check_stream(t, cut, 3, false);
    check_stream(t, cut, 2, false);
    tok_vec_free(&v);
    tok_free(t);
    gguf_close(g);
}

/* llama.cpp's vectors: inputs separated by "\n__ggml_vocab_test__\n", one line of ids each. */
static void run_llamacpp_vectors(const tok_tokenizer *t, const char *inp_rel, const char *out_rel) {
    size_t ni, no;
    char *inp = tu_read(tu_data(inp_rel), &ni);
    char *outp = tu_read(tu_data(out_rel), &no);
    const char *sep = "\n__ggml_vocab_test__\n";
    char *p = inp, *q = outp;
    int cases = 0;
    for (;;) {
        char *e = strstr(p, sep);
        if (!e) break;
        char *nl = strchr(q, '\n');
        assert_non_null(nl);
        *nl = 0;
        tok_vec v = {0};
        lm_error err = {0};
        assert_int_equal(tok_encode(t, p, (size_t)(e - p), 0, &v, &err), LM_OK);
        char got[4096] = "";
        for (size_t i = 0; i < v.n; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), " %d", (int)v.ids[i]);
        if (strcmp(got, q) != 0)
            fail_msg("input %d '%.*s':\n got:%s\nwant:%s", cases, (int)(e - p), p, got, q);
        check_stream(t, v.ids, v.n, false);
        tok_vec_free(&v);
        p = e + strlen(sep);
        q = nl + 1;
        cases++;
    }
    assert_true(cases > 20);
    lm_free(inp);
    lm_free(outp);
}

/* The llama.cpp vocab GGUFs under tests/data/tokenizers/{llama2,phi3}/llamacpp/ were damaged on
 * the way (every non-UTF-8 byte became U+FFFD, 65205 times), so they cannot be parsed. The same
 * vocabulary is read here from the SentencePiece model (protobuf: ModelProto.pieces = field 1,
 * SentencePiece {piece = 1, score = 2, type = 3}) and handed to tok_load_gguf as GGUF metadata. */
typedef struct sp_vocab {
    gguf_file g;
    gguf_kv kv[6]; /* kv[5]: free for a test's extra key */
    gguf_value *items;
    float *scores;
    int32_t *types;
    char *data;
} sp_vocab;

static uint64_t pb_varint(const uint8_t **p, const uint8_t *end) {
    uint64_t v = 0;
    for (int sh = 0; *p < end && sh < 64; sh += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 127) << sh;
        if (!(b & 128)) break;
    }
    return v;
}

static gguf_str zs(const char *z) {
    return (gguf_str){z, strlen(z)};
}

static void sp_vocab_load(sp_vocab *v, const char *rel) {
    size_t n;
    memset(v, 0, sizeof *v);
    v->data = tu_read(tu_data(rel), &n);
    const uint8_t *p = (const uint8_t *)v->data, *end = p + n;
    size_t cap = 40000, cnt = 0;
    v->items = calloc(cap, sizeof *v->items);
    v->scores = calloc(cap, sizeof *v->scores);
    v->types = calloc(cap, sizeof *v->types);
    while (p < end) {
        uint64_t key = pb_varint(&p, end);
        uint32_t wt = key & 7;
        if (wt == 0) {
            pb_varint(&p, end);
            continue;
        }
        if (wt == 5) {
            p += 4;
            continue;
        }
        if (wt == 1) {
            p += 8;
            continue;
        }
        assert_int_equal(wt, 2);
        uint64_t len = pb_varint(&p, end);
        const uint8_t *q = p, *qe = p + len;
        p = qe;
        if ((key >> 3) != 1) continue;
        assert_true(cnt < cap);
        v->types[cnt] = 1;
        while (q < qe) {
            uint64_t k2 = pb_varint(&q, qe);
            if ((k2 >> 3) == 1) {
                uint64_t l2 = pb_varint(&q, qe);
                v->items[cnt].type = GGUF_STRING;
                v->items[cnt].v.s = (gguf_str){(const char *)q, l2};
                q += l2;
            } else if ((k2 >> 3) == 2) {
                memcpy(&v->scores[cnt], q, 4);
                q += 4;
            } else {
                v->types[cnt] = (int32_t)pb_varint(&q, qe);
            }
        }
        cnt++;
    }
    v->kv[0] = (gguf_kv){zs("tokenizer.ggml.model"), {.type = GGUF_STRING, .v.s = zs("llama")}};
    v->kv[1].key = zs("tokenizer.ggml.tokens");
    v->kv[1].val.type = GGUF_ARRAY;
    v->kv[1].val.v.arr.elem_type = GGUF_STRING;
    v->kv[1].val.v.arr.n = cnt;
    v->kv[1].val.v.arr.items = v->items;
    v->kv[2].key = zs("tokenizer.ggml.scores");
    v->kv[2].val.type = GGUF_ARRAY;
    v->kv[2].val.v.arr.elem_type = GGUF_F32;
    v->kv[2].val.v.arr.n = cnt;
    v->kv[2].val.v.arr.raw = (const uint8_t *)v->scores;
    v->kv[3].key = zs("tokenizer.ggml.token_type");
    v->kv[3].val.type = GGUF_ARRAY;
    v->kv[3].val.v.arr.elem_type = GGUF_I32;
    v->kv[3].val.v.arr.n = cnt;
    v->kv[3].val.v.arr.raw = (const uint8_t *)v->types;
    v->kv[4] = (gguf_kv){zs("tokenizer.ggml.bos_token_id"), {.type = GGUF_U32, .v.u = 1}};
    v->g.path = (char *)"tokenizer.model";
    v->g.n_kv = 5;
    v->g.kv = v->kv;
}

static void sp_vocab_free(sp_vocab *v) {
    free(v->items);
    free(v->scores);
    free(v->types);
    lm_free(v->data);
}

static void test_llamacpp_spm(void **state) {
    (void)state;
    sp_vocab v;
    sp_vocab_load(&v, "tokenizers/llama2/sp/tokenizer.model");
    tok_tokenizer *t = load_meta(&v.g);
    assert_int_equal(tok_n_vocab(t), 32000);
    run_llamacpp_vectors(t, "tokenizers/llama2/llamacpp/ggml-vocab-llama-spm.gguf.inp",
                         "tokenizers/llama2/llamacpp/ggml-vocab-llama-spm.gguf.out");
    tok_free(t);
    sp_vocab_free(&v);
}

/* A GGUF "gpt2" vocabulary built from a tokenizer.json (no such GGUF is among the fixtures):
 * tokens, token_type (special added tokens: 3), merges as "a b" strings, tokenizer.ggml.pre. */
typedef struct bpe_vocab {
    gguf_file g;
    gguf_kv kv[6];
    gguf_value *items, *merges;
    int32_t *types;
    char **strs;
    size_t n_strs;
    cJSON *j;
} bpe_vocab;

static void bpe_vocab_load(bpe_vocab *v, const char *rel, const char *pre) {
    memset(v, 0, sizeof *v);
    v->j = tu_json(tu_data(rel));
    const cJSON *model = cJSON_GetObjectItem(v->j, "model");
    const cJSON *vocab = cJSON_GetObjectItem(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItem(model, "merges");
    const cJSON *added = cJSON_GetObjectItem(v->j, "added_tokens"), *it;
    int n = 0;
    cJSON_ArrayForEach(it, vocab) n = it->valueint + 1 > n ? it->valueint + 1 : n;
    cJSON_ArrayForEach(it, added) {
        int id = cJSON_GetObjectItem(it, "id")->valueint;
        n = id + 1 > n ? id + 1 : n;
    }
    v->items = calloc((size_t)n, sizeof *v->items);
    v->types = calloc((size_t)n, sizeof *v->types);
    for (int i = 0; i < n; i++) {
        v->items[i].type = GGUF_STRING;
        v->items[i].v.s = zs("");
        v->types[i] = 5;
    }
    cJSON_ArrayForEach(it, vocab) {
        v->items[it->valueint].v.s = zs(it->string);
        v->types[it->valueint] = 1;
    }
    cJSON_ArrayForEach(it, added) {
        int id = cJSON_GetObjectItem(it, "id")->valueint;
        v->items[id].v.s = zs(cJSON_GetObjectItem(it, "content")->valuestring);
        v->types[id] = cJSON_IsTrue(cJSON_GetObjectItem(it, "special")) ? 3 : 4;
    }
    int nm = cJSON_GetArraySize(merges), k = 0;
    v->merges = calloc((size_t)nm, sizeof *v->merges);
    v->strs = calloc((size_t)nm, sizeof *v->strs);
    cJSON_ArrayForEach(it, merges) {
        v->merges[k].type = GGUF_STRING;
        if (cJSON_IsString(it)) {
            v->merges[k].v.s = zs(it->valuestring);
        } else {
            const char *a = it->child->valuestring, *b = it->child->next->valuestring;
            char *m = malloc(strlen(a) + strlen(b) + 2);
            sprintf(m, "%s %s", a, b);
            v->strs[v->n_strs++] = m;
            v->merges[k].v.s = zs(m);
        }
        k++;
    }
    v->kv[0] = (gguf_kv){zs("tokenizer.ggml.model"), {.type = GGUF_STRING, .v.s = zs("gpt2")}};
    v->kv[1].key = zs("tokenizer.ggml.tokens");
    v->kv[1].val.type = GGUF_ARRAY;
    v->kv[1].val.v.arr.elem_type = GGUF_STRING;
    v->kv[1].val.v.arr.n = (uint64_t)n;
    v->kv[1].val.v.arr.items = v->items;
    v->kv[2].key = zs("tokenizer.ggml.token_type");
    v->kv[2].val.type = GGUF_ARRAY;
    v->kv[2].val.v.arr.elem_type = GGUF_I32;
    v->kv[2].val.v.arr.n = (uint64_t)n;
    v->kv[2].val.v.arr.raw = (const uint8_t *)v->types;
    v->kv[3].key = zs("tokenizer.ggml.merges");
    v->kv[3].val.type = GGUF_ARRAY;
    v->kv[3].val.v.arr.elem_type = GGUF_STRING;
    v->kv[3].val.v.arr.n = (uint64_t)nm;
    v->kv[3].val.v.arr.items = v->merges;
    v->kv[4] = (gguf_kv){zs("tokenizer.ggml.pre"), {.type = GGUF_STRING, .v.s = zs(pre)}};
    v->kv[5] = (gguf_kv){zs("tokenizer.ggml.add_bos_token"), {.type = GGUF_BOOL, .v.b = false}};
    v->g.path = (char *)"bpe.gguf";
    v->g.n_kv = 6;
    v->g.kv = v->kv;
}

static void bpe_vocab_free(bpe_vocab *v) {
    for (size_t i = 0; i < v->n_strs; i++)
        free(v->strs[i]);
    free(v->strs);
    free(v->items);
    free(v->merges);
    free(v->types);
    cJSON_Delete(v->j);
}

static void run_gpt2(const char *fam, const char *pre, const char *vec) {
    char rel[160], rel2[160];
    bpe_vocab v;
    snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", fam);
    bpe_vocab_load(&v, rel, pre);
    tok_tokenizer *t = load_meta(&v.g);
    assert_string_equal(tok_model_name(t), "gpt2");
    snprintf(rel, sizeof rel, "tokenizers/%s/llamacpp/%s.inp", fam, vec);
    snprintf(rel2, sizeof rel2, "tokenizers/%s/llamacpp/%s.out", fam, vec);
    run_llamacpp_vectors(t, rel, rel2);
    tok_free(t);
    bpe_vocab_free(&v);
}

static void test_gguf_gpt2(void **state) {
    (void)state;
    run_gpt2("llama3", "llama-bpe", "ggml-vocab-llama-bpe.gguf");
    run_gpt2("qwen2", "qwen2", "ggml-vocab-qwen2.gguf");
}

static void test_gguf_errors(void **state) {
    (void)state;
    sp_vocab v;
    sp_vocab_load(&v, "tokenizers/llama2/sp/tokenizer.model");
    tok_tokenizer *t = NULL;
    lm_error err = {0};
    v.kv[2].val.v.arr.n = 7;
    assert_int_equal(tok_load_gguf(&v.g, &t, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "tokenizer.ggml.scores"));
    v.kv[0].val.v.s = zs("bert");
    assert_int_equal(tok_load_gguf(&v.g, &t, &err), LM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "bert"));
    v.g.n_kv = 0;
    assert_int_equal(tok_load_gguf(&v.g, &t, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "tokenizer.ggml.model"));
    assert_null(t);
    sp_vocab_free(&v);
}

static void test_special_parsing(void **state) {
    (void)state;
    sp_vocab v;
    sp_vocab_load(&v, "tokenizers/llama2/sp/tokenizer.model");
    tok_tokenizer *t = load_meta(&v.g);
    lm_error err = {0};
    const char *text = "<s>Hi</s>";
    tok_vec a = {0}, b = {0};
    assert_int_equal(tok_encode(t, text, strlen(text), LM_TOK_PARSE_SPECIAL, &a, &err), LM_OK);
    assert_int_equal(a.ids[0], 1);
    assert_int_equal(a.ids[a.n - 1], 2);
    assert_int_equal(tok_encode(t, text, strlen(text), 0, &b, &err), LM_OK);
    for (size_t i = 0; i < b.n; i++)
        assert_true(b.ids[i] > 2);
    expect_text(t, a.ids, a.n, true, "Hi");
    expect_text(t, a.ids, a.n, false, "<s> Hi</s>");
    lm_buf d = {0};
    assert_true(tok_is_special(t, 1));
    assert_string_equal(tok_bos_text(t), "<s>");
    assert_int_equal(tok_find(t, "<0x0A>"), 13);
    lm_token bad = 99999;
    assert_int_equal(tok_decode(t, &bad, 1, false, &d, &err), LM_ERR_MISUSE);
    lm_buf_free(&d);
    tok_vec_free(&a);
    tok_vec_free(&b);
    tok_free(t);
    sp_vocab_free(&v);
}

/* tokenizer.ggml.add_space_prefix = false: no U+2581 in front, nothing stripped in decode. */
static void test_no_space_prefix(void **state) {
    (void)state;
    sp_vocab v;
    sp_vocab_load(&v, "tokenizers/llama2/sp/tokenizer.model");
    v.kv[5] = (gguf_kv){zs("tokenizer.ggml.add_space_prefix"), {.type = GGUF_BOOL, .v.b = false}};
    v.g.n_kv = 6;
    tok_tokenizer *t = load_meta(&v.g);
    lm_error err = {0};
    tok_vec a = {0};
    assert_int_equal(tok_encode(t, "Hello world", 11, 0, &a, &err), LM_OK);
    /* "Hello", not "\u2581Hello" (15043) */
    assert_int_equal(a.ids[0], tok_find(t, "Hello"));
    assert_int_equal(a.ids[1], 3186); /* "\u2581world" */
    expect_text(t, a.ids, a.n, false, "Hello world");
    tok_vec_free(&a);
    assert_int_equal(tok_encode(t, " x", 2, 0, &a, &err), LM_OK);
    expect_text(t, a.ids, a.n, false, " x");
    tok_vec_free(&a);
    tok_free(t);
    sp_vocab_free(&v);
}

static lm_status load_gguf_attempt(const void *arg, lm_error *err) {
    tok_tokenizer *t = NULL;
    lm_status st = tok_load_gguf(arg, &t, err);
    if (st) assert_null(t);
    tok_free(t);
    return st;
}

/* Every allocation of tok_load_gguf failing in turn gives LM_ERR_NOMEM and leaks nothing. */
static void test_gguf_alloc_failures(void **state) {
    (void)state;
    lm_error err = {0};
    gguf_file *g = NULL;
    if (gguf_open(tu_data("stories260K/stories260K-f32.gguf"), true, &g, &err))
        fail_msg("%s", err.msg);
    tu_alloc_sweep("tok_load_gguf", load_gguf_attempt, g, false, 199);
    gguf_close(g);
}

int main(void) {
    tu_json_use_lm_alloc();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k_cases), cmocka_unit_test(test_stories260k_decode),
        cmocka_unit_test(test_llamacpp_spm),      cmocka_unit_test(test_gguf_errors),
        cmocka_unit_test(test_gguf_gpt2),         cmocka_unit_test(test_gguf_alloc_failures),
        cmocka_unit_test(test_no_space_prefix),
        cmocka_unit_test(test_special_parsing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
