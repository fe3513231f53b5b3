/* tests/unit/test_convert.c: lm_convert (`locallm convert`) read back by locallm itself; the same
 * files against llama.cpp are tests/llamacpp/test_convert_llamacpp.sh.
 *  - Every architecture fixture (llama 3 with rope_freqs, sharded llama 2, mistral, qwen2, qwen3
 *    with its q/k norms, phi3, the sliding-window phi3 and mistral, and an MLX 4-bit qwen3 against
 *    its own folder) converted to an F32 GGUF reproduces
 *    transformers' references (tests/data/models/<name>/refs.json) at 1e-4 relative, and its 24
 *    greedy tokens: names, q/k row order, norms, biases and RoPE metadata are right.
 *  - tinychat converted to every GGUF type: the per-tensor types are llama.cpp's mix, the logits
 *    stay within each type's measured error of the HF folder's, F32 equals it to 1e-5, and the
 *    GGUF tokenizer encodes every refs.json prompt to the same ids as tokenizer.json, with the
 *    same special ids and chat template.
 *  - The five real tokenizers (tests/data/tokenizers) as --vocab-only GGUFs encode the corpus as
 *    their tokenizer.json does.
 *  - MLX output (4-bit g64, 8-bit g32) loads with the right config and stays near the references.
 *  - The weight quantizers against the dequantizers; the GGUF writer round trip; bad input. */
#include "testutil.h"

#include "compute/quantize.h"
#include "formats/formats.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fixture folder plus a 512-token tokenizer (the fixtures have none; GGUF needs one). */
static const char *fixture_dir(const char *fx, const char *tok) {
    static char dirs[4][4096];
    static int next;
    char *d = dirs[next++ & 3];
    snprintf(d, 4096, "%s", tu_temp_dir());
    static const char *const files[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    for (size_t i = 0; i < LM_ARRAY_LEN(files); i++) {
        char from[4096], to[4200], rel[512];
        snprintf(rel, sizeof rel, "models/%s/%s", fx, files[i]);
        snprintf(from, sizeof from, "%s", tu_data(rel));
        if (!lm_path_exists(from)) continue;
        snprintf(to, sizeof to, "%s/%s", d, files[i]);
        assert_int_equal(symlink(from, to), 0);
    }
    static const char *const tf[] = {"tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; tok && i < LM_ARRAY_LEN(tf); i++) {
        char from[4096], to[4200], rel[512];
        snprintf(rel, sizeof rel, "convert/tok512-%s/%s", tok, tf[i]);
        snprintf(from, sizeof from, "%s", tu_data(rel));
        snprintf(to, sizeof to, "%s/%s", d, tf[i]);
        assert_int_equal(symlink(from, to), 0);
    }
    return d;
}

static const char *out_path(const char *name) {
    static char p[4][4096];
    static int next;
    char *o = p[next++ & 3];
    snprintf(o, 4096, "%s/%s", tu_temp_dir(), name);
    return o;
}

static void convert_ok(const char *src, const char *out, const char *type) {
    lm_convert_params cp = lm_convert_default_params();
    cp.type = type;
    cp.n_threads = 2;
    lm_error err = {0};
    if (lm_convert(src, out, &cp, &err)) fail_msg("convert %s -> %s (%s): %s", src, out, type ? type : "F16", err.msg);
}

static lm_model *load(const char *path) {
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = 2;
    lm_model *m = NULL;
    lm_error err = {0};
    if (lm_model_load(path, &mp, &m, &err)) fail_msg("%s: %s", path, err.msg);
    return m;
}

/* Logits after every id (n * n_vocab, malloc'd), with an F32 KV cache. */
static float *eval_all(lm_model *m, const lm_token *ids, size_t n) {
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = 512;
    sp.kv_f32 = true;
    lm_session *s = NULL;
    lm_error err = {0};
    assert_int_equal(tu_session_new(m, &sp, &s, &err), LM_OK);
    size_t nv = (size_t)lm_model_n_vocab(m);
    float *all = malloc(n * nv * sizeof(float));
    if (lm_session_eval(s, ids, n, NULL, all)) fail_msg("%s", lm_session_errmsg(s));
    lm_session_free(s);
    return all;
}

static double rel_err(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        den += (double)want[i] * want[i];
    }
    return sqrt(num / den);
}

/* The ids of a JSON array of numbers, in a malloc'd array with room for extra more after them;
 * *n gets their count. */
static lm_token *json_ids(const cJSON *arr, size_t extra, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    lm_token *ids = malloc((*n + extra) * sizeof *ids);
    assert_non_null(ids);
    for (size_t i = 0; i < *n; i++) ids[i] = cJSON_GetArrayItem(arr, (int)i)->valueint;
    return ids;
}

/* ---- architecture fixtures as F32 GGUF against transformers ---- */

static void check_refs(const char *fx, const char *tok, double tol) {
    const char *src = fixture_dir(fx, tok);
    char name[128];
    snprintf(name, sizeof name, "%s.gguf", fx);
    const char *out = out_path(name);
    convert_ok(src, out, "F32");
    lm_model *m = load(out);
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/refs.json", fx);
    cJSON *ref = tu_json(tu_data(rel)), *seq;
    size_t nv = (size_t)lm_model_n_vocab(m);
    assert_int_equal(nv, 512);
    cJSON_ArrayForEach(seq, cJSON_GetObjectItem(ref, "sequences")) {
        size_t n;
        lm_token *ids = json_ids(cJSON_GetObjectItem(seq, "input_ids"), 24, &n);
        float *all = eval_all(m, ids, n), want[512];
        cJSON *ll = cJSON_GetObjectItem(seq, "last_logits");
        for (size_t v = 0; v < nv; v++) want[v] = (float)cJSON_GetArrayItem(ll, (int)v)->valuedouble;
        double e = rel_err(all + (n - 1) * nv, want, nv);
        if (getenv("LM_TEST_VERBOSE")) fprintf(stderr, "%s GGUF F32 %s: rel err %.3g\n", fx, cJSON_GetObjectItem(seq, "name")->valuestring, e);
        if (e > tol) fail_msg("%s as GGUF: last-logit relative error %.3g > %.1g", fx, e, tol);
        /* greedy: the reference's 24 tokens */
        cJSON *gt = cJSON_GetObjectItem(cJSON_GetObjectItem(seq, "greedy"), "tokens");
        int ng = cJSON_GetArraySize(gt);
        for (int i = 0; i < ng; i++) ids[n + (size_t)i] = cJSON_GetArrayItem(gt, i)->valueint;
        float *all2 = eval_all(m, ids, n + (size_t)ng);
        for (int i = 0; i < ng; i++) {
            const float *l = all2 + (n - 1 + (size_t)i) * nv;
            lm_token best = 0;
            for (size_t v = 1; v < nv; v++)
                if (l[v] > l[best]) best = (lm_token)v;
            if (best != ids[n + (size_t)i]) fail_msg("%s as GGUF: greedy step %d: %d, want %d", fx, i, best, ids[n + (size_t)i]);
        }
        free(all2);
        free(all);
        free(ids);
    }
    cJSON_Delete(ref);
    lm_model_free(m);
}

static void test_fixtures_f32(void **state) {
    (void)state;
    check_refs("llama3-f32", "bpe", 1e-4);   /* tied, GQA, Llama 3 RoPE scaling as rope_freqs */
    check_refs("llama2-f32", "spm", 1e-4);   /* two shards, MHA, q/k rows interleaved */
    check_refs("mistral-f32", "spm", 1e-4);  /* head_dim != hidden / heads */
    check_refs("qwen2-f32", "bpe", 1e-4);    /* q/k/v biases */
    check_refs("qwen3-f32", "bpe", 1e-4);    /* q/k norms, head_dim 32 with hidden 64 */
    check_refs("phi3-f32", "spm", 1e-4);     /* fused qkv and gate_up */
    check_refs("phi3-swa-f32", "spm", 1e-4); /* sliding window 24: phi3.attention.sliding_window */
    check_refs("mistral-swa-f32", "spm", 1e-4); /* window 32, as llama.attention.sliding_window */
}

/* The Qwen3 GGUF carries qwen3's keys and the q/k norm tensors. */
static void test_qwen3_keys(void **state) {
    (void)state;
    const char *out = out_path("qwen3.gguf");
    convert_ok(fixture_dir("qwen3-f32", "bpe"), out, "Q8_0");
    gguf_file *g = NULL;
    lm_error err = {0};
    assert_int_equal(gguf_open(out, true, &g, &err), LM_OK);
    gguf_str a;
    assert_true(gguf_get_str(g, "general.architecture", &a) && gguf_str_eq(a, "qwen3"));
    uint32_t v = 0;
    assert_true(gguf_get_u32(g, "qwen3.attention.key_length", &v) && v == 32);
    assert_true(gguf_get_u32(g, "qwen3.attention.value_length", &v) && v == 32);
    assert_true(gguf_get_u32(g, "qwen3.embedding_length", &v) && v == 64);
    assert_true(gguf_get_u32(g, "qwen3.attention.head_count_kv", &v) && v == 2);
    assert_true(gguf_get_u32(g, "general.file_type", &v) && v == 7);
    for (int l = 0; l < 2; l++) {
        char n[64];
        snprintf(n, sizeof n, "blk.%d.attn_q_norm.weight", l);
        const gguf_tensor *t = gguf_find_tensor(g, n);
        assert_non_null(t);
        assert_int_equal(t->type, CM_F32);
        assert_int_equal(t->ne[0], 32);
        snprintf(n, sizeof n, "blk.%d.attn_k_norm.weight", l);
        assert_non_null(gguf_find_tensor(g, n));
    }
    assert_null(gguf_find_tensor(g, "output.weight")); /* tied */
    assert_int_equal(gguf_find_tensor(g, "token_embd.weight")->type, CM_Q8_0);
    gguf_close(g);
    /* and it runs: greedy equals the reference on len1 */
    lm_model *m = load(out);
    cJSON *ref = tu_json(tu_data("models/qwen3-f32/refs.json"));
    cJSON *seq = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "sequences"), 0);
    lm_token id = cJSON_GetArrayItem(cJSON_GetObjectItem(seq, "input_ids"), 0)->valueint;
    float *l = eval_all(m, &id, 1);
    lm_token best = 0;
    for (int k = 1; k < 512; k++)
        if (l[k] > l[best]) best = k;
    assert_int_equal(best, cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(seq, "greedy"), "tokens"), 0)->valueint);
    free(l);
    cJSON_Delete(ref);
    lm_model_free(m);
}

/* An MLX source is dequantized: its F32 GGUF computes what the MLX folder computes. */
static void test_from_mlx(void **state) {
    (void)state;
    const char *src = fixture_dir("qwen3-mlx-q4", "bpe");
    const char *out = out_path("qwen3-mlx.gguf");
    convert_ok(src, out, "F32");
    lm_model *a = load(out), *b = load(tu_data("models/qwen3-mlx-q4"));
    cJSON *ref = tu_json(tu_data("models/qwen3-mlx-q4/refs.json"));
    cJSON *seq = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "sequences"), 1);
    size_t n;
    lm_token *ids = json_ids(cJSON_GetObjectItem(seq, "input_ids"), 0, &n);
    float *la = eval_all(a, ids, n), *lb = eval_all(b, ids, n);
    /* the same dequantized weights; the MLX folder runs locallm's integer kernels (activations
     * rounded to int16), the F32 file float dots: 1.2e-4 measured */
    double e = rel_err(la + (n - 1) * 512, lb + (n - 1) * 512, 512);
    if (e > 5e-4) fail_msg("MLX folder vs its F32 GGUF: relative error %.3g", e);
    free(la);
    free(lb);
    free(ids);
    cJSON_Delete(ref);
    lm_model_free(a);
    lm_model_free(b);
}

/* ---- tinychat on every type ---- */

static const struct {
    const char *type;
    uint32_t file_type;
    double tol;   /* last-logit relative error against the bf16 HF folder (measured x ~2) */
} TYPES[] = {
    /* measured: 0, 1.5e-7, 0, 6.2e-3, 3.2e-2, 3.3e-2, 2.4e-2, 1.7e-2, 2.7e-2, 1.7e-2, 1.3e-2 */
    {"F32", 0, 1e-6},   {"F16", 1, 1e-6},   {"BF16", 32, 1e-6}, {"Q8_0", 7, 0.015},
    {"Q4_0", 2, 0.07},  {"Q4_1", 3, 0.07},  {"Q5_0", 8, 0.05},  {"Q5_1", 9, 0.04},
    {"Q4_K_M", 15, 0.06}, {"Q5_K_M", 17, 0.04}, {"Q6_K", 18, 0.03},
};

static uint32_t tensor_type(const gguf_file *g, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) fail_msg("missing tensor %s", name);
    return t->type;
}

/* tinychat's weather_call prompt (refs.json prompts[8]) into *ids (malloc'd, *n of them), and
 * the logits of the bf16 folder after each of its ids (n * 2048, malloc'd): what the converted
 * files are measured against. */
static float *tinychat_want(lm_token **ids, size_t *n) {
    cJSON *refs = tu_json(tu_src("models/tinychat/refs.json"));
    const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(refs, "prompts"), 8);
    *ids = json_ids(cJSON_GetObjectItem(p, "prompt_ids"), 0, n);
    cJSON_Delete(refs);
    lm_model *hf = load(tu_src("models/tinychat"));
    float *want = eval_all(hf, *ids, *n);
    lm_model_free(hf);
    return want;
}

/* Fails, naming what, unless m's logits after the last of ids are within tol (relative error)
 * of want's last row (tinychat_want). */
static void expect_last_logits(lm_model *m, const lm_token *ids, size_t n, const float *want,
                               double tol, const char *what) {
    float *got = eval_all(m, ids, n);
    double e = rel_err(got + (n - 1) * 2048, want + (n - 1) * 2048, 2048);
    if (getenv("LM_TEST_VERBOSE")) fprintf(stderr, "tinychat %s: rel err %.3g\n", what, e);
    if (e > tol) fail_msg("tinychat %s: last-logit relative error %.3g > %.2g", what, e, tol);
    free(got);
}

static void test_tinychat_types(void **state) {
    (void)state;
    const char *tc = tu_src("models/tinychat");
    char tcdir[4096];
    snprintf(tcdir, sizeof tcdir, "%s", tc);
    lm_token *ids;
    size_t n;
    float *want = tinychat_want(&ids, &n);
    for (size_t k = 0; k < LM_ARRAY_LEN(TYPES); k++) {
        char name[64];
        snprintf(name, sizeof name, "tinychat-%s.gguf", TYPES[k].type);
        const char *out = out_path(name);
        convert_ok(tcdir, out, TYPES[k].type);
        gguf_file *g = NULL;
        lm_error err = {0};
        assert_int_equal(gguf_open(out, true, &g, &err), LM_OK);
        uint32_t ft = 0;
        assert_true(gguf_get_u32(g, "general.file_type", &ft));
        assert_int_equal(ft, TYPES[k].file_type);
        assert_int_equal(tensor_type(g, "blk.0.attn_norm.weight"), CM_F32);
        assert_int_equal(tensor_type(g, "blk.0.attn_q.bias"), CM_F32);
        assert_null(gguf_find_tensor(g, "output.weight"));
        const char *t = TYPES[k].type;
        uint32_t base = !strcmp(t, "Q4_K_M") ? CM_Q4_K : !strcmp(t, "Q5_K_M") ? CM_Q5_K : CM_MLX;
        if (base != CM_MLX) {
            /* llama.cpp's _M mix over 6 layers: attn_v and ffn_down of layers 2 and 5 get Q6_K,
             * the tied embedding (the output) Q6_K, the rest the base type */
            assert_int_equal(tensor_type(g, "token_embd.weight"), CM_Q6_K);
            assert_int_equal(tensor_type(g, "blk.0.attn_v.weight"), base);
            assert_int_equal(tensor_type(g, "blk.2.attn_v.weight"), CM_Q6_K);
            assert_int_equal(tensor_type(g, "blk.5.attn_v.weight"), CM_Q6_K);
            assert_int_equal(tensor_type(g, "blk.1.ffn_down.weight"), base);
            assert_int_equal(tensor_type(g, "blk.2.ffn_down.weight"), CM_Q6_K);
            assert_int_equal(tensor_type(g, "blk.3.attn_q.weight"), base);
            assert_int_equal(tensor_type(g, "blk.3.ffn_gate.weight"), base);
        } else if (!strcmp(t, "Q4_0") || !strcmp(t, "Q4_1") || !strcmp(t, "Q5_0") || !strcmp(t, "Q5_1") || !strcmp(t, "Q6_K")) {
            /* quantized files: the output (tied embedding, rows of 256) is Q6_K */
            assert_int_equal(tensor_type(g, "token_embd.weight"), CM_Q6_K);
            assert_int_equal(tensor_type(g, "blk.2.ffn_down.weight"), tensor_type(g, "blk.0.attn_q.weight"));
        } else if (!strcmp(t, "Q8_0")) {
            assert_int_equal(tensor_type(g, "token_embd.weight"), CM_Q8_0);
        } else {
            uint32_t want_t = !strcmp(t, "F32") ? CM_F32 : !strcmp(t, "F16") ? CM_F16 : CM_BF16;
            assert_int_equal(tensor_type(g, "token_embd.weight"), want_t);
            assert_int_equal(tensor_type(g, "blk.0.ffn_up.weight"), want_t);
        }
        gguf_close(g);
        lm_model *m = load(out);
        expect_last_logits(m, ids, n, want, TYPES[k].tol, t);
        lm_model_free(m);
    }
    free(want);
    free(ids);
}

/* The GGUF tokenizer of tinychat: every refs.json prompt encodes as tokenizer.json does (and as
 * refs.json says), with the same vocabulary, kinds, special ids and chat template. */
static void test_tinychat_tokenizer(void **state) {
    (void)state;
    const char *out = out_path("tinychat-vocab.gguf");
    convert_ok(tu_src("models/tinychat"), out, "Q8_0");
    gguf_file *g = NULL;
    lm_error err = {0};
    assert_int_equal(gguf_open(out, true, &g, &err), LM_OK);
    gguf_str s;
    assert_true(gguf_get_str(g, "tokenizer.ggml.model", &s) && gguf_str_eq(s, "gpt2"));
    assert_true(gguf_get_str(g, "tokenizer.ggml.pre", &s) && gguf_str_eq(s, "qwen2"));
    tok_tokenizer *tg = NULL, *tj = NULL;
    assert_int_equal(tok_load_gguf(g, &tg, &err), LM_OK);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_src("models/tinychat"));
    assert_int_equal(tok_load_dir(dir, &tj, &err), LM_OK);
    assert_int_equal(tok_n_vocab(tg), tok_n_vocab(tj));
    for (lm_token i = 0; i < tok_n_vocab(tj); i++) {
        const char *pc = tok_piece(tj, i);
        assert_string_equal(tok_piece(tg, i), pc);
        /* control tokens: the special added ones, and (llama.cpp's converter rule) added tokens
         * that look like "<|...|>" even where tokenizer.json says special: false */
        size_t pl = strlen(pc);
        bool looks = pl >= 4 && !strncmp(pc, "<|", 2) && !strcmp(pc + pl - 2, "|>") && tok_kind(tj, i) == TOK_KIND_USER_DEFINED;
        assert_int_equal(tok_is_special(tg, i), tok_is_special(tj, i) || looks);
    }
    assert_int_equal(tok_kind(tg, 2040), TOK_KIND_USER_DEFINED); /* <tool_call>, special: false */
    assert_int_equal(tok_kind(tg, 2042), TOK_KIND_CONTROL);      /* <|fim_prefix|>, special: false */
    assert_int_equal(tok_bos(tg), 2026);
    assert_int_equal(tok_eos(tg), 2028);
    assert_int_equal(tok_adds_bos(tg), tok_adds_bos(tj));
    assert_string_equal(tok_chat_template(tg, NULL), tok_chat_template(tj, NULL));
    cJSON *refs = tu_json(tu_src("models/tinychat/refs.json")), *p;
    int n_prompts = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(refs, "prompts")) {
        const char *text = cJSON_GetObjectItem(p, "prompt_text")->valuestring;
        cJSON *want = cJSON_GetObjectItem(p, "prompt_ids");
        tok_vec a = {0}, b = {0};
        assert_int_equal(tok_encode(tg, text, strlen(text), LM_TOK_PARSE_SPECIAL, &a, &err), LM_OK);
        assert_int_equal(tok_encode(tj, text, strlen(text), LM_TOK_PARSE_SPECIAL, &b, &err), LM_OK);
        assert_int_equal(a.n, (size_t)cJSON_GetArraySize(want));
        assert_int_equal(a.n, b.n);
        for (size_t i = 0; i < a.n; i++) {
            assert_int_equal(a.ids[i], cJSON_GetArrayItem(want, (int)i)->valueint);
            assert_int_equal(a.ids[i], b.ids[i]);
        }
        tok_vec_free(&a);
        tok_vec_free(&b);
        n_prompts++;
    }
    assert_int_equal(n_prompts, 24);
    cJSON_Delete(refs);
    tok_free(tg);
    tok_free(tj);
    gguf_close(g);
}

/* The five real tokenizers as vocabulary-only GGUFs encode the corpus as their tokenizer.json:
 * exact ids for every corpus string, special-token text parsed and not. */
static void test_real_tokenizers(void **state) {
    (void)state;
    static const char *const fams[] = {"llama2", "llama3", "mistral", "phi3", "qwen2"};
    cJSON *corpus = tu_json(tu_data("tokenizers/corpus.json"));
    for (size_t f = 0; f < LM_ARRAY_LEN(fams); f++) {
        /* the tokenizer files plus a config.json for the hyper-parameters */
        const char *d = tu_temp_dir();
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", d);
        static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
        for (size_t i = 0; i < LM_ARRAY_LEN(files); i++) {
            char rel[256], from[4096], to[4200];
            snprintf(rel, sizeof rel, "tokenizers/%s/%s", fams[f], files[i]);
            snprintf(from, sizeof from, "%s", tu_data(rel));
            if (!lm_path_exists(from)) continue;
            snprintf(to, sizeof to, "%s/%s", dir, files[i]);
            assert_int_equal(symlink(from, to), 0);
        }
        /* hyper-parameters only: the special ids come from the tokenizer files */
        tu_put_in(dir, "config.json",
                  "{\"model_type\": \"llama\", \"hidden_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                  " \"num_key_value_heads\": 4, \"intermediate_size\": 256, \"vocab_size\": 32000, \"rms_norm_eps\": 1e-5,"
                  " \"max_position_embeddings\": 4096}");
        char name[64];
        snprintf(name, sizeof name, "%s-vocab.gguf", fams[f]);
        const char *out = out_path(name);
        lm_convert_params cp = lm_convert_default_params();
        cp.vocab_only = true;
        lm_error err = {0};
        if (lm_convert(dir, out, &cp, &err)) fail_msg("%s: %s", fams[f], err.msg);
        gguf_file *g = NULL;
        assert_int_equal(gguf_open(out, true, &g, &err), LM_OK);
        assert_int_equal(g->n_tensors, 0);
        tok_tokenizer *tg = NULL, *tj = NULL;
        if (tok_load_gguf(g, &tg, &err)) fail_msg("%s: %s", fams[f], err.msg);
        assert_int_equal(tok_load_dir(dir, &tj, &err), LM_OK);
        assert_int_equal(tok_n_vocab(tg), tok_n_vocab(tj));
        assert_int_equal(tok_bos(tg), tok_bos(tj));
        assert_int_equal(tok_eos(tg), tok_eos(tj));
        assert_int_equal(tok_adds_bos(tg), tok_adds_bos(tj));
        char rrel[256];
        snprintf(rrel, sizeof rrel, "tokenizers/%s/refs.json", fams[f]);
        cJSON *refs = tu_json(tu_data(rrel));
        int n = 0, bad = 0, sp = 0;
        cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(corpus, "entries")) {
            const char *text = cJSON_GetObjectItem(e, "text")->valuestring, *id = cJSON_GetObjectItem(e, "id")->valuestring;
            /* SentencePiece's own ids where they differ from tokenizer.json's (mistral: a
             * Metaspace that prepends "▁" only where the text has none; SentencePiece and
             * llama.cpp always do), from refs.json */
            const cJSON *spi = NULL, *r;
            cJSON_ArrayForEach(r, cJSON_GetObjectItem(refs, "encode"))
                if (!strcmp(cJSON_GetObjectItem(r, "id")->valuestring, id)) spi = cJSON_GetObjectItem(r, "sentencepiece_ids");
            /* Plain text, with and without BOS/EOS. Special-token text parsed as such is left out:
             * after a control token a GGUF SentencePiece vocabulary adds no "▁" (llama.cpp's rule,
             * which locallm's GGUF tokenizer follows) where tokenizer.json's normalizer does. */
            for (int flags = 0; flags < 2; flags++) {
                uint32_t fl = flags ? LM_TOK_ADD_SPECIAL : 0;
                tok_vec a = {0}, b = {0};
                assert_int_equal(tok_encode(tg, text, strlen(text), fl, &a, &err), LM_OK);
                assert_int_equal(tok_encode(tj, text, strlen(text), fl, &b, &err), LM_OK);
                bool same = a.n == b.n && (a.n == 0 || memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0);
                if (!same && spi) {
                    size_t off = flags && tok_adds_bos(tg) ? 1 : 0;
                    same = a.n == off + (size_t)cJSON_GetArraySize(spi);
                    for (size_t i = off; same && i < a.n; i++) same = a.ids[i] == cJSON_GetArrayItem(spi, (int)(i - off))->valueint;
                    sp += same;
                }
                if (!same) {
                    bad++;
                    fprintf(stderr, "%s %s (flags %u): GGUF %zu ids, tokenizer.json %zu\n", fams[f], id, fl, a.n, b.n);
                }
                n++;
                tok_vec_free(&a);
                tok_vec_free(&b);
            }
        }
        cJSON_Delete(refs);
        if (getenv("LM_TEST_VERBOSE")) fprintf(stderr, "%s: %d encodings, %d of them SentencePiece's ids\n", fams[f], n, sp);
        if (bad) fail_msg("%s: %d of %d encodings differ between the GGUF vocabulary and tokenizer.json", fams[f], bad, n);
        tok_free(tg);
        tok_free(tj);
        gguf_close(g);
    }
    cJSON_Delete(corpus);
}

/* ---- MLX output ---- */

/* tinychat (a trained model, so quantization error is small and meaningful) to MLX 4-bit g64
 * and 8-bit g32: config.json says so, the tokenizer files come along, the chat template works,
 * and the logits stay within the measured quantization error of the bf16 folder's. */
static void test_mlx_output(void **state) {
    (void)state;
    static const struct { int bits, gs; double tol; } C[] = {{4, 64, 0.15}, {8, 32, 0.01}}; /* measured 0.068, 0.0034 */
    char tc[4096];
    snprintf(tc, sizeof tc, "%s", tu_src("models/tinychat"));
    lm_token *ids;
    size_t n;
    float *want = tinychat_want(&ids, &n);
    for (size_t k = 0; k < LM_ARRAY_LEN(C); k++) {
        const char *out = out_path("tinychat-mlx");
        lm_convert_params cp = lm_convert_default_params();
        cp.format = "mlx";
        cp.mlx_bits = C[k].bits;
        cp.mlx_group_size = C[k].gs;
        lm_error err = {0};
        if (lm_convert(tc, out, &cp, &err)) fail_msg("%s", err.msg);
        char p[4200];
        snprintf(p, sizeof p, "%s/config.json", out);
        cJSON *cfg = tu_json(p), *q = cJSON_GetObjectItem(cfg, "quantization");
        assert_non_null(q);
        assert_int_equal(cJSON_GetObjectItem(q, "bits")->valueint, C[k].bits);
        assert_int_equal(cJSON_GetObjectItem(q, "group_size")->valueint, C[k].gs);
        assert_string_equal(cJSON_GetObjectItem(q, "mode")->valuestring, "affine");
        cJSON_Delete(cfg);
        static const char *const copied[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors.index.json"};
        for (size_t i = 0; i < LM_ARRAY_LEN(copied); i++) {
            snprintf(p, sizeof p, "%s/%s", out, copied[i]);
            if (!lm_path_exists(p)) fail_msg("%s missing from the MLX folder", copied[i]);
        }
        /* the weights are MLX's: packed uint32 with scales and biases in the source's bf16 */
        st_set *st = NULL;
        assert_int_equal(st_open_dir(out, true, &st, &err), LM_OK);
        const st_tensor *w = st_find(st, "model.layers.0.mlp.down_proj.weight");
        const st_tensor *sc = st_find(st, "model.layers.0.mlp.down_proj.scales");
        assert_non_null(w);
        assert_non_null(sc);
        assert_int_equal(w->dtype, ST_U32);
        assert_int_equal(w->shape[1], 768 * (uint64_t)C[k].bits / 32);
        assert_int_equal(sc->dtype, ST_BF16);
        assert_int_equal(sc->shape[1], 768 / C[k].gs);
        assert_non_null(st_find(st, "model.layers.0.input_layernorm.weight"));
        assert_null(st_find(st, "model.layers.0.input_layernorm.scales"));
        st_close(st);
        /* a second conversion into the same folder is refused, the folder kept */
        assert_int_equal(lm_convert(tc, out, &cp, &err), LM_ERR_IO);
        assert_non_null(strstr(err.msg, "already exists"));
        lm_model *m = load(out);
        lm_model_info info;
        lm_model_get_info(m, &info);
        assert_string_equal(info.format, "mlx");
        lm_message msg = {"user", "Hello!", NULL, NULL, NULL};
        char text[1024];
        size_t len;
        assert_int_equal(lm_model_chat_render(m, &msg, 1, NULL, text, sizeof text, &len, &err), LM_OK);
        assert_non_null(strstr(text, "<|im_start|>user\nHello!<|im_end|>"));
        char what[32];
        snprintf(what, sizeof what, "MLX %d-bit g%d", C[k].bits, C[k].gs);
        expect_last_logits(m, ids, n, want, C[k].tol, what);
        lm_model_free(m);
    }
    free(want);
    free(ids);
}

/* ---- quantizers ---- */

static double rms_err(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

/* The searching K quantizers: every element within the format's bound of its dequantized value,
 * and a smaller RMS error than the simple (activation) quantizer on weights-like data. Rows of
 * several magnitudes, an all-zero and an all-positive super-block. */
static void test_weight_quantizers(void **state) {
    (void)state;
    const size_t n = 8 * 256;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *z = malloc(n * sizeof(float));
    uint8_t *q = malloc(n * 2);
    tu_rand_floats(x, n, 77);
    for (size_t i = 0; i < n; i++) x[i] = x[i] * x[i] * x[i] * 0.2f; /* heavier tails, like weights */
    for (size_t i = 256; i < 512; i++) x[i] *= 0.01f;
    for (size_t i = 512; i < 768; i++) x[i] = 0;
    for (size_t i = 768; i < 1024; i++) x[i] = fabsf(x[i]) + 0.3f;
    /* bound: steps of the super-block's range (Q6_K: symmetric, so 2 max|x|) the error may reach.
     * The searches trade the extremes for a smaller RMS error (a few elements clip), and the
     * 6/8-bit sub-block scales round: measured 1.1 (Q4_K, Q5_K) and 1.7 (Q6_K) steps. */
    static const struct { uint32_t type; float levels, steps; } T[] = {{CM_Q4_K, 15, 1.5f}, {CM_Q5_K, 31, 1.5f}, {CM_Q6_K, 63, 3.0f}};
    for (size_t k = 0; k < LM_ARRAY_LEN(T); k++) {
        assert_true(cm_quantize_weights(T[k].type, x, q, n));
        cm_dequant_ref(T[k].type, q, y, n);
        for (size_t b = 0; b < n; b += 256) {
            float mn = INFINITY, mx = -INFINITY;
            for (size_t i = b; i < b + 256; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
            /* within one level of the super-block's range (6-bit scales, rounded levels) */
            float range = T[k].type == CM_Q6_K ? 2 * fmaxf(mx, -mn) : mx - fminf(mn, 0);
            float bound = range / T[k].levels * T[k].steps + 1e-6f;
            for (size_t i = b; i < b + 256; i++)
                if (!(fabsf(y[i] - x[i]) <= bound))
                    fail_msg("%s element %zu: %g back as %g (bound %g)", cm_type_get(T[k].type)->name, i, x[i], y[i], bound);
            if (mx == 0 && mn == 0)
                for (size_t i = b; i < b + 256; i++) assert_true(y[i] == 0);
        }
        assert_true(cm_quantize_ref(T[k].type, x, q, n));
        cm_dequant_ref(T[k].type, q, z, n);
        double es = rms_err(x, y, n), er = rms_err(x, z, n);
        if (getenv("LM_TEST_VERBOSE")) fprintf(stderr, "%s: search rms %.4g, simple %.4g\n", cm_type_get(T[k].type)->name, es, er);
        if (!(es < er)) fail_msg("%s: the searching quantizer's RMS error %.4g is not below the simple one's %.4g", cm_type_get(T[k].type)->name, es, er);
    }
    /* the legacy types are the reference quantizers, byte for byte */
    static const uint32_t L[] = {CM_Q8_0, CM_Q4_0, CM_Q4_1, CM_Q5_0, CM_Q5_1, CM_F16, CM_BF16};
    uint8_t *q2 = malloc(n * 4);
    for (size_t k = 0; k < LM_ARRAY_LEN(L); k++) {
        uint64_t bytes;
        assert_true(cm_type_row_bytes(L[k], n, &bytes));
        assert_true(cm_quantize_weights(L[k], x, q, n));
        assert_true(cm_quantize_ref(L[k], x, q2, n));
        assert_memory_equal(q, q2, bytes);
    }
    assert_false(cm_quantize_weights(CM_Q4_K, x, q, 255));
    assert_false(cm_quantize_weights(CM_Q2_K, x, q, 256));
    /* non-finite input: no undefined behaviour, whole blocks written */
    x[3] = NAN;
    x[300] = INFINITY;
    for (size_t k = 0; k < LM_ARRAY_LEN(T); k++) assert_true(cm_quantize_weights(T[k].type, x, q, n));
    free(q2);
    free(x);
    free(y);
    free(z);
    free(q);
}

/* MLX affine groups: dequantized within half a step of the input, zero exact, for every bits
 * and scale type; the packing is what cm_mlx_dequant_row reads. */
static void test_mlx_quantizer(void **state) {
    (void)state;
    enum { COLS = 256, ROWS = 3 };
    float x[ROWS * COLS], y[COLS];
    tu_rand_floats(x, ROWS * COLS, 9);
    for (int i = 0; i < COLS; i++) x[COLS + i] = fabsf(x[COLS + i]) + 0.25f; /* all positive */
    x[2 * COLS + 5] = 0;
    static const uint32_t bits[] = {2, 3, 4, 5, 6, 8}, sbt[] = {CM_F32, CM_F16, CM_BF16};
    for (size_t b = 0; b < LM_ARRAY_LEN(bits); b++)
        for (size_t s = 0; s < LM_ARRAY_LEN(sbt); s++)
            for (uint32_t gs = 32; gs <= 128; gs *= 2) {
                uint8_t q[ROWS * COLS];
                uint8_t sc[ROWS * COLS / 32 * 4], bi[ROWS * COLS / 32 * 4];
                size_t es = sbt[s] == CM_F32 ? 4 : 2, ng = COLS / gs;
                for (int r = 0; r < ROWS; r++)
                    cm_mlx_quantize_row(x + r * COLS, COLS, bits[b], gs, sbt[s], q + r * COLS * bits[b] / 8,
                                        sc + r * ng * es, bi + r * ng * es);
                cm_matrix m = {0};
                m.type = CM_MLX;
                m.rows = ROWS;
                m.cols = COLS;
                m.data = q;
                m.row_bytes = COLS * bits[b] / 8;
                m.bits = bits[b];
                m.group_size = gs;
                m.sb_type = sbt[s];
                m.scales = sc;
                m.biases = bi;
                for (int r = 0; r < ROWS; r++) {
                    cm_mlx_dequant_row(&m, (size_t)r, y);
                    for (size_t g = 0; g < ng; g++) {
                        float mn = INFINITY, mx = -INFINITY;
                        for (size_t k = 0; k < gs; k++) mn = fminf(mn, x[r * COLS + g * gs + k]), mx = fmaxf(mx, x[r * COLS + g * gs + k]);
                        /* half a step for rounding, and up to one more where MLX's rule moves the
                         * scale to put 0 on a level (the far end then clips), plus the rounding of
                         * a 16-bit scale and bias */
                        float step = (mx - mn) / (float)((1 << bits[b]) - 1);
                        float bound = step * 1.5f + fmaxf(fabsf(mn), fabsf(mx)) * (es == 4 ? 1e-6f : 0.01f);
                        for (size_t k = 0; k < gs; k++) {
                            size_t i = g * gs + k;
                            if (!(fabsf(y[i] - x[r * COLS + i]) <= bound))
                                fail_msg("MLX %u-bit g%u sb %u row %d element %zu: %g back as %g (bound %g)", bits[b], gs, sbt[s], r, i, x[r * COLS + i], y[i], bound);
                        }
                    }
                }
                if (sbt[s] == CM_F32) {
                    cm_mlx_dequant_row(&m, 2, y);
                    assert_true(fabsf(y[5]) < 1e-6f); /* zero falls on a level */
                }
            }
}

/* ---- the GGUF writer ---- */

static void test_gguf_writer(void **state) {
    (void)state;
    const char *out = out_path("w.gguf");
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_u32(w, "a.u32", 7);
    gguf_w_f32(w, "a.f32", 0.5f);
    gguf_w_bool(w, "a.bool", true);
    const char *strs[] = {"x", "", "hello world"};
    gguf_w_arr_str(w, "a.strs", strs, 3);
    float fl[] = {1, -2, 3.5f};
    gguf_w_arr_f32(w, "a.f32s", fl, 3);
    int32_t in[] = {-1, 2};
    gguf_w_arr_i32(w, "a.i32s", in, 2);
    uint64_t ne1[] = {3}, ne2[] = {32, 2};
    gguf_w_tensor(w, "v", CM_F32, 1, ne1);
    gguf_w_tensor(w, "m", CM_Q8_0, 2, ne2);
    lm_error err = {0};
    assert_int_equal(gguf_w_begin(w, out, &err), LM_OK);
    assert_int_equal(gguf_w_data(w, fl, sizeof fl, &err), LM_OK);
    uint8_t blocks[68];
    float row[64];
    tu_rand_floats(row, 64, 1);
    assert_true(cm_quantize_ref(CM_Q8_0, row, blocks, 64));
    assert_int_equal(gguf_w_data(w, blocks, 30, &err), LM_OK); /* any split */
    assert_int_equal(gguf_w_data(w, blocks + 30, 38, &err), LM_OK);
    assert_int_equal(gguf_w_data(w, blocks, 1, &err), LM_ERR_MISUSE); /* more than declared */
    assert_int_equal(gguf_w_finish(w, &err), LM_OK);
    gguf_writer_free(w);
    char part[4200];
    snprintf(part, sizeof part, "%s.part", out);
    assert_false(lm_path_exists(part));
    gguf_file *g = NULL;
    assert_int_equal(gguf_open(out, true, &g, &err), LM_OK);
    uint32_t u;
    float f;
    bool b;
    assert_true(gguf_get_u32(g, "a.u32", &u) && u == 7);
    assert_true(gguf_get_f32(g, "a.f32", &f) && f == 0.5f);
    assert_true(gguf_get_bool(g, "a.bool", &b) && b);
    const gguf_value *a = gguf_get_arr(g, "a.strs");
    assert_non_null(a);
    assert_int_equal(a->v.arr.n, 3);
    assert_true(gguf_str_eq(a->v.arr.items[2].v.s, "hello world"));
    double d;
    assert_true(gguf_arr_f64(gguf_get_arr(g, "a.f32s"), 2, &d) && d == 3.5);
    int64_t i64;
    assert_true(gguf_arr_i64(gguf_get_arr(g, "a.i32s"), 0, &i64) && i64 == -1);
    const gguf_tensor *t = gguf_find_tensor(g, "m");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 32);
    assert_int_equal(t->ne[1], 2);
    assert_memory_equal(t->data, blocks, 68);
    assert_memory_equal(gguf_find_tensor(g, "v")->data, fl, sizeof fl);
    gguf_close(g);
    /* misuse is reported by begin: a key set twice, a row that is not whole blocks */
    w = gguf_writer_new();
    gguf_w_u32(w, "k", 1);
    gguf_w_u32(w, "k", 2);
    assert_int_equal(gguf_w_begin(w, out_path("x.gguf"), &err), LM_ERR_MISUSE);
    assert_non_null(strstr(err.msg, "duplicate metadata key 'k'"));
    gguf_writer_free(w);
    w = gguf_writer_new();
    uint64_t bad[] = {33, 1};
    gguf_w_tensor(w, "t", CM_Q8_0, 2, bad);
    assert_int_equal(gguf_w_begin(w, out_path("y.gguf"), &err), LM_ERR_MISUSE);
    assert_non_null(strstr(err.msg, "'t'"));
    gguf_writer_free(w);
    /* an unfinished file leaves no output and no .part behind */
    const char *o2 = out_path("z.gguf");
    w = gguf_writer_new();
    gguf_w_tensor(w, "v", CM_F32, 1, ne1);
    assert_int_equal(gguf_w_begin(w, o2, &err), LM_OK);
    assert_int_equal(gguf_w_finish(w, &err), LM_ERR_MISUSE);
    gguf_writer_free(w);
    snprintf(part, sizeof part, "%s.part", o2);
    assert_false(lm_path_exists(o2));
    assert_false(lm_path_exists(part));
    /* a begin that cannot create its file is an IO error naming it, and a later begin works (no
     * leak of the first one's paths under ASan) */
    w = gguf_writer_new();
    gguf_w_tensor(w, "v", CM_F32, 1, ne1);
    assert_int_equal(gguf_w_begin(w, "/nonexistent-dir/q.gguf", &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/q.gguf.part"));
    assert_int_equal(gguf_w_begin(w, o2, &err), LM_OK);
    assert_int_equal(gguf_w_data(w, fl, 4 * ne1[0], &err), LM_OK);
    assert_int_equal(gguf_w_finish(w, &err), LM_OK);
    gguf_writer_free(w);
    assert_true(lm_path_exists(o2));
}

/* ---- bad input ---- */

static void test_errors(void **state) {
    (void)state;
    lm_convert_params cp = lm_convert_default_params();
    lm_error err = {0};
    /* no tokenizer: GGUF needs one */
    const char *nt = fixture_dir("qwen2-f32", NULL);
    assert_int_equal(lm_convert(nt, out_path("a.gguf"), &cp, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "tokenizer.json"));
    /* but MLX output does not */
    cp.format = "mlx";
    const char *mo = out_path("mlx-no-tok");
    assert_int_equal(lm_convert(nt, mo, &cp, &err), LM_OK);
    cp.format = NULL;
    /* a type llama.cpp does not name */
    cp.type = "Q3_K_XL";
    assert_int_equal(lm_convert(fixture_dir("qwen2-f32", "bpe"), out_path("b.gguf"), &cp, &err), LM_ERR_MISUSE);
    assert_non_null(strstr(err.msg, "Q3_K_XL"));
    cp.type = NULL;
    /* a GGUF output must end in .gguf */
    assert_int_equal(lm_convert(fixture_dir("qwen2-f32", "bpe"), out_path("c.bin"), &cp, &err), LM_ERR_MISUSE);
    assert_non_null(strstr(err.msg, ".gguf"));
    /* not a folder */
    assert_int_equal(lm_convert(tu_data("models/README.md"), out_path("d.gguf"), &cp, &err), LM_ERR_IO);
    /* an architecture convert does not know */
    const char *d = tu_temp_dir();
    tu_put_in(d, "config.json", "{\"model_type\": \"gpt_neox\", \"hidden_size\": 64, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 128, \"vocab_size\": 512}");
    assert_int_not_equal(lm_convert(d, out_path("e.gguf"), &cp, &err), LM_OK);
    assert_non_null(strstr(err.msg, "gpt_neox"));
}

/* Cancelled from the progress callback: nothing is left at the output. */
static int cancel_at_half(float f, const char *stage, void *user) {
    (void)stage;
    (void)user;
    return f > 0.5f;
}

static void test_cancel(void **state) {
    (void)state;
    lm_convert_params cp = lm_convert_default_params();
    cp.progress = cancel_at_half;
    lm_error err = {0};
    const char *o = out_path("g.gguf");
    assert_int_equal(lm_convert(fixture_dir("qwen2-f32", "bpe"), o, &cp, &err), LM_ERR_CANCELLED);
    char part[4200];
    snprintf(part, sizeof part, "%s.part", o);
    assert_false(lm_path_exists(o));
    assert_false(lm_path_exists(part));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_writer),
        cmocka_unit_test(test_weight_quantizers),
        cmocka_unit_test(test_mlx_quantizer),
        cmocka_unit_test(test_fixtures_f32),
        cmocka_unit_test(test_qwen3_keys),
        cmocka_unit_test(test_from_mlx),
        cmocka_unit_test(test_tinychat_types),
        cmocka_unit_test(test_tinychat_tokenizer),
        cmocka_unit_test(test_real_tokenizers),
        cmocka_unit_test(test_mlx_output),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
