/* convert/vocab.c: a Hugging Face tokenizer.json (+ tokenizer_config.json, chat_template.jinja,
 * config.json's ids) as GGUF tokenizer metadata, the keys llama.cpp's loader reads
 * (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md, "Tokenizer"):
 *   tokenizer.ggml.model      "gpt2" for byte-level BPE, "llama" for SentencePiece-style BPE
 *                             (byte_fallback, "▁" for spaces)
 *   tokenizer.ggml.pre        gpt2 only: the pre-tokenizer by llama.cpp's name ("qwen2",
 *                             "llama-bpe", "gpt-2"), recognised from the Split regex
 *   tokenizer.ggml.tokens     every id's string; ids without one become "[PAD<id>]"
 *   tokenizer.ggml.token_type NORMAL 1, UNKNOWN 2, CONTROL 3 (special added tokens, and added
 *                             tokens that look special, "<|...|>", as llama.cpp's converter
 *                             marks them), USER_DEFINED 4 (other added tokens), UNUSED 5 (pads),
 *                             BYTE 6 ("<0xNN>" of SentencePiece vocabularies)
 *   tokenizer.ggml.scores     llama only: SentencePiece merges the pair whose result scores
 *                             highest, BPE the pair of lowest rank; a token made by merge rank r
 *                             scores -r, so both pick the same pair
 *   tokenizer.ggml.merges     gpt2 only: "a b" in rank order
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id, add_bos_token, add_eos_token,
 *   add_space_prefix (llama), tokenizer.chat_template[.<name>]
 * Does not own: tokenizing (tokenizer/), which reads these keys back. */
#include "convert/convert.h"

#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>

/* Pre-tokenizer regexes of the BPE families llama.cpp names (from their tokenizer.json). */
static const struct {
    const char *name, *regex;
} PRE[] = {
    {"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

/* ---- a string -> id map over the token strings ---- */

typedef struct smap {
    int32_t *slot; /* id + 1, 0 empty */
    size_t cap;
    char **tok;
} smap;

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static bool smap_build(smap *m, char **tok, int32_t n) {
    m->cap = 16;
    while (m->cap < (size_t)n * 2) m->cap *= 2;
    m->tok = tok;
    if (!(m->slot = lm_calloc(m->cap, sizeof *m->slot))) return false;
    for (int32_t i = 0; i < n; i++) {
        if (!tok[i]) continue;
        size_t k = hash(tok[i], strlen(tok[i])) & (m->cap - 1);
        while (m->slot[k]) k = (k + 1) & (m->cap - 1);
        m->slot[k] = i + 1;
    }
    return true;
}

static int32_t smap_get(const smap *m, const char *s, size_t n) {
    size_t k = hash(s, n) & (m->cap - 1);
    for (; m->slot[k]; k = (k + 1) & (m->cap - 1)) {
        const char *t = m->tok[m->slot[k] - 1];
        if (strlen(t) == n && memcmp(t, s, n) == 0) return m->slot[k] - 1;
    }
    return -1;
}

/* ---- helpers ---- */

static bool has_type(const cJSON *node, const char *type) {
    if (!node || !cJSON_IsObject(node)) return false;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(node, "type");
    if (cJSON_IsString(t) && strcmp(t->valuestring, type) == 0) return true;
    static const char *const lists[] = {"pretokenizers", "decoders", "normalizers", "processors"};
    for (size_t i = 0; i < LM_ARRAY_LEN(lists); i++) {
        const cJSON *e, *a = cJSON_GetObjectItemCaseSensitive(node, lists[i]);
        cJSON_ArrayForEach(e, a) if (has_type(e, type)) return true;
    }
    return false;
}

/* The first node of type in a (possibly Sequence) component, or NULL. */
static const cJSON *find_type(const cJSON *node, const char *type) {
    if (!node || !cJSON_IsObject(node)) return NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(node, "type");
    if (cJSON_IsString(t) && strcmp(t->valuestring, type) == 0) return node;
    static const char *const lists[] = {"pretokenizers", "decoders", "normalizers", "processors"};
    for (size_t i = 0; i < LM_ARRAY_LEN(lists); i++) {
        const cJSON *e, *a = cJSON_GetObjectItemCaseSensitive(node, lists[i]);
        cJSON_ArrayForEach(e, a) {
            const cJSON *r = find_type(e, type);
            if (r) return r;
        }
    }
    return NULL;
}

/* A token given as a string or as {"content": ...} in tokenizer_config.json; NULL otherwise. */
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* llama.cpp's converter marks added tokens that look like control tokens as CONTROL even when
 * tokenizer.json says special: false (convert_hf_to_gguf.py, does_token_look_special). */
static bool looks_special(const char *t) {
    size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]"))
        return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>")) return true;
    if (n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>') return true;
    return false;
}

static bool is_byte_token(const char *t) {
    static const char hex[] = "0123456789ABCDEFabcdef";
    return strlen(t) == 6 && !strncmp(t, "<0x", 3) && t[5] == '>' && strchr(hex, t[3]) && strchr(hex, t[4]);
}

typedef struct vocab {
    const char *dir;
    lm_error *err;
    cJSON *tj, *tc;
    int32_t n;
    char **tok;        /* n strings (owned) */
    int32_t *type;
    float *score;
    bool *added;
    smap map;
    char **merges;     /* owned */
    size_t n_merges;
} vocab;

static void vocab_free(vocab *v) {
    cJSON_Delete(v->tj);
    cJSON_Delete(v->tc);
    for (int32_t i = 0; v->tok && i < v->n; i++) lm_free(v->tok[i]);
    lm_free(v->tok);
    lm_free(v->type);
    lm_free(v->score);
    lm_free(v->added);
    lm_free(v->map.slot);
    for (size_t i = 0; i < v->n_merges; i++) lm_free(v->merges[i]);
    lm_free(v->merges);
}

static lm_status set_token(vocab *v, int32_t id, const char *s, const char *where) {
    if (v->tok[id]) {
        if (strcmp(v->tok[id], s) == 0) return LM_OK;
        return lm_fail(v->err, LM_ERR_FORMAT, "%s/tokenizer.json: %s: id %d is both '%.60s' and '%.60s'",
                       v->dir, where, (int)id, v->tok[id], s);
    }
    if (!(v->tok[id] = lm_strdup(s))) return lm_fail_nomem(v->err, "vocabulary");
    return LM_OK;
}

/* Id of the special token named by tokenizer_config.json's key, else config.json's id, else -1. */
static int32_t special_id(vocab *v, const char *key, int32_t cfg_id) {
    const char *t = v->tc ? token_text(cJSON_GetObjectItemCaseSensitive(v->tc, key)) : NULL;
    if (t) {
        int32_t id = smap_get(&v->map, t, strlen(t));
        if (id >= 0) return id;
    }
    return cfg_id >= 0 && cfg_id < v->n ? cfg_id : -1;
}

lm_status cv_vocab_gguf(const char *dir, const hf_config *cfg, int32_t n_vocab, gguf_writer *w,
                        int32_t *n_tokens, lm_error *err) {
    vocab v = {dir, err, NULL, NULL, 0, NULL, NULL, NULL, NULL, {0}, NULL, 0};
    lm_status st = LM_OK;
    char *tj = lm_path_join(dir, "tokenizer.json"), *tc = lm_path_join(dir, "tokenizer_config.json");
    char *cj = lm_path_join(dir, "chat_template.jinja");
    char *tmpl_file = NULL;
    if (!tj || !tc || !cj) {
        st = lm_fail_nomem(err, "path");
        goto done;
    }
    if (!lm_path_exists(tj)) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: no tokenizer.json: a GGUF file carries the vocabulary, so the model's tokenizer files are needed", dir);
        goto done;
    }
    if ((st = lm_json_load(tj, &v.tj, err))) goto done;
    if (lm_path_exists(tc) && (st = lm_json_load(tc, &v.tc, err))) goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(v.tj, "model");
    const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *jv = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(jv) || (cJSON_IsString(mtype) && strcmp(mtype->valuestring, "BPE") != 0)) {
        st = lm_fail(err, LM_ERR_UNSUPPORTED, "%s/tokenizer.json: model type '%s': convert writes BPE vocabularies only",
                     dir, cJSON_IsString(mtype) ? mtype->valuestring : "?");
        goto done;
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(v.tj, "pre_tokenizer");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(v.tj, "decoder");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(v.tj, "normalizer");
    bool byte_level = has_type(pre, "ByteLevel") || has_type(dec, "ByteLevel");
    bool spm = !byte_level && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    if (!byte_level && !spm) {
        st = lm_fail(err, LM_ERR_UNSUPPORTED, "%s/tokenizer.json: a BPE vocabulary that is neither byte-level nor SentencePiece-style (byte_fallback): not supported",
                     dir);
        goto done;
    }
    /* size: the largest id */
    const cJSON *e, *added = cJSON_GetObjectItemCaseSensitive(v.tj, "added_tokens");
    int64_t max_id = -1;
    cJSON_ArrayForEach(e, jv) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > (1 << 24)) {
            st = lm_fail(err, LM_ERR_FORMAT, "%s/tokenizer.json: model.vocab['%.60s']: expected an id in 0..16777216", dir, e->string);
            goto done;
        }
        max_id = LM_MAX(max_id, (int64_t)e->valuedouble);
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > (1 << 24) || !cJSON_IsString(content)) {
            st = lm_fail(err, LM_ERR_FORMAT, "%s/tokenizer.json: added_tokens: expected {id, content}", dir);
            goto done;
        }
        max_id = LM_MAX(max_id, (int64_t)id->valuedouble);
    }
    int32_t n_tok = (int32_t)(max_id + 1);
    if (n_vocab > 0 && n_tok > n_vocab) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: tokenizer.json has %d tokens but the model's embedding has %d rows (config.json vocab_size)",
                     dir, (int)n_tok, (int)n_vocab);
        goto done;
    }
    v.n = n_vocab > 0 ? n_vocab : n_tok;
    v.tok = lm_calloc((size_t)v.n, sizeof *v.tok);
    v.type = lm_calloc((size_t)v.n, sizeof *v.type);
    v.score = lm_calloc((size_t)v.n, sizeof *v.score);
    v.added = lm_calloc((size_t)v.n, sizeof *v.added);
    if (!v.tok || !v.type || !v.score || !v.added) {
        st = lm_fail_nomem(err, "vocabulary");
        goto done;
    }
    cJSON_ArrayForEach(e, jv) {
        int32_t id = (int32_t)e->valuedouble;
        if ((st = set_token(&v, id, e->string, "model.vocab"))) goto done;
        v.type[id] = TOK_KIND_NORMAL;
    }
    const char *unk = token_text(cJSON_GetObjectItemCaseSensitive(model, "unk_token"));
    cJSON_ArrayForEach(e, added) {
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        const char *s = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        if ((st = set_token(&v, id, s, "added_tokens"))) goto done;
        bool special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"));
        v.added[id] = true;
        v.type[id] = special || looks_special(s) ? TOK_KIND_CONTROL : TOK_KIND_USER_DEFINED;
    }
    for (int32_t i = 0; i < v.n; i++) {
        if (!v.tok[i]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%d]", (int)i);
            if (!(v.tok[i] = lm_strdup(pad))) {
                st = lm_fail_nomem(err, "vocabulary");
                goto done;
            }
            v.type[i] = TOK_KIND_UNUSED;
        } else if (spm && unk && strcmp(v.tok[i], unk) == 0) {
            v.type[i] = TOK_KIND_UNKNOWN;
        } else if (spm && !v.added[i] && is_byte_token(v.tok[i])) {
            v.type[i] = TOK_KIND_BYTE;
        }
    }
    if (!smap_build(&v.map, v.tok, v.n)) {
        st = lm_fail_nomem(err, "vocabulary");
        goto done;
    }
    /* merges: "a b" strings or ["a", "b"] pairs */
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(model, "merges");
    size_t nm = (size_t)cJSON_GetArraySize(jm);
    if (nm && !(v.merges = lm_calloc(nm, sizeof *v.merges))) {
        st = lm_fail_nomem(err, "merges");
        goto done;
    }
    bool *scored = lm_calloc((size_t)v.n, 1);
    if (!scored) {
        st = lm_fail_nomem(err, "merges");
        goto done;
    }
    cJSON_ArrayForEach(e, jm) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring + (e->valuestring[0] ? 1 : 0), ' ');
            if (sp) {
                a = e->valuestring;
                la = (size_t)(sp - a);
                b = sp + 1;
                lb = strlen(b);
            }
        } else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        }
        if (!a) {
            lm_free(scored);
            st = lm_fail(err, LM_ERR_FORMAT, "%s/tokenizer.json: model.merges[%zu]: expected \"a b\" or [a, b]", dir, v.n_merges);
            goto done;
        }
        char *m = lm_malloc(la + lb + 2);
        if (!m) {
            lm_free(scored);
            st = lm_fail_nomem(err, "merges");
            goto done;
        }
        /* first the merged token, a and b side by side, to score it; then "a b" */
        memcpy(m, a, la);
        memcpy(m + la, b, lb);
        int32_t id = smap_get(&v.map, m, la + lb);
        if (id >= 0 && !scored[id]) {
            scored[id] = true;
            v.score[id] = -(float)v.n_merges;
        }
        m[la] = ' ';
        memcpy(m + la + 1, b, lb);
        m[la + lb + 1] = 0;
        v.merges[v.n_merges++] = m;
    }
    /* tokens no merge makes (single characters, specials): below every merge result, in id
     * order, as SentencePiece's own scores fall with the id */
    for (int32_t i = 0; i < v.n; i++)
        if (!scored[i] && v.type[i] == TOK_KIND_NORMAL) v.score[i] = -(float)v.n_merges - (float)i;
    lm_free(scored);

    gguf_w_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (!spm) {
        const cJSON *split = find_type(pre, "Split");
        const cJSON *pat = split ? cJSON_GetObjectItemCaseSensitive(split, "pattern") : NULL;
        const cJSON *rx = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        const char *name = NULL;
        if (cJSON_IsString(rx)) {
            for (size_t i = 0; i < LM_ARRAY_LEN(PRE); i++)
                if (strcmp(rx->valuestring, PRE[i].regex) == 0) name = PRE[i].name;
        } else if (!split && has_type(pre, "ByteLevel")) {
            const cJSON *bl = find_type(pre, "ByteLevel");
            const cJSON *ur = cJSON_GetObjectItemCaseSensitive(bl, "use_regex");
            if (!ur || cJSON_IsTrue(ur)) name = "gpt-2";
        }
        if (!name) {
            st = lm_fail(err, LM_ERR_UNSUPPORTED, "%s/tokenizer.json: pre-tokenizer %.80s%s is not one convert knows (Qwen2's, Llama 3's, GPT-2's)",
                         dir, cJSON_IsString(rx) ? rx->valuestring : "(no Split regex)", cJSON_IsString(rx) && strlen(rx->valuestring) > 80 ? "..." : "");
            goto done;
        }
        gguf_w_str(w, "tokenizer.ggml.pre", name);
    }
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tok, (size_t)v.n);
    if (spm) gguf_w_arr_f32(w, "tokenizer.ggml.scores", v.score, (size_t)v.n);
    gguf_w_arr_i32(w, "tokenizer.ggml.token_type", v.type, (size_t)v.n);
    if (!spm) gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, v.n_merges);

    int32_t bos = special_id(&v, "bos_token", cfg ? cfg->bos_id : -1);
    int32_t eos = special_id(&v, "eos_token", cfg && cfg->n_eos ? cfg->eos_ids[0] : -1);
    int32_t unk_id = spm && unk ? smap_get(&v.map, unk, strlen(unk)) : special_id(&v, "unk_token", -1);
    int32_t pad_id = special_id(&v, "pad_token", -1);
    if (bos >= 0) gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0) gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (unk_id >= 0) gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk_id);
    if (pad_id >= 0) gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad_id);
    /* BOS/EOS: tokenizer_config.json's flags, else what the post-processor's template adds */
    const cJSON *fb = v.tc ? cJSON_GetObjectItemCaseSensitive(v.tc, "add_bos_token") : NULL;
    const cJSON *fe = v.tc ? cJSON_GetObjectItemCaseSensitive(v.tc, "add_eos_token") : NULL;
    bool add_bos = false, add_eos = false;
    const cJSON *tp = find_type(cJSON_GetObjectItemCaseSensitive(v.tj, "post_processor"), "TemplateProcessing");
    const cJSON *single = tp ? cJSON_GetObjectItemCaseSensitive(tp, "single") : NULL;
    int ns = cJSON_GetArraySize(single);
    if (ns > 0) {
        add_bos = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, 0), "SpecialToken") != NULL;
        add_eos = ns > 1 && cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, ns - 1), "SpecialToken") != NULL;
    }
    if (cJSON_IsBool(fb)) add_bos = cJSON_IsTrue(fb);
    if (cJSON_IsBool(fe)) add_eos = cJSON_IsTrue(fe);
    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    gguf_w_bool(w, "tokenizer.ggml.add_eos_token", add_eos);
    if (spm) {
        /* the dummy prefix: Prepend("▁") in the normalizer, or a Metaspace that prepends */
        const cJSON *pp = find_type(norm, "Prepend");
        const cJSON *ms = find_type(pre, "Metaspace");
        bool prefix = pp != NULL;
        if (ms) {
            const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(ms, "prepend_scheme");
            const cJSON *aps = cJSON_GetObjectItemCaseSensitive(ms, "add_prefix_space");
            prefix = cJSON_IsString(scheme) ? strcmp(scheme->valuestring, "never") != 0 : !cJSON_IsFalse(aps);
        }
        gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", prefix);
    }
    /* chat template: the separate file wins, as transformers does; a file that exists but cannot
     * be read is an error, never a silent fallback */
    if (lm_path_exists(cj)) {
        size_t len;
        if ((st = lm_read_text(cj, &tmpl_file, &len, err))) goto done;
        gguf_w_str(w, "tokenizer.chat_template", tmpl_file);
    } else if (v.tc) {
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(v.tc, "chat_template");
        if (cJSON_IsString(ct)) {
            gguf_w_str(w, "tokenizer.chat_template", ct->valuestring);
        } else if (cJSON_IsArray(ct)) {
            cJSON_ArrayForEach(e, ct) {
                const cJSON *nm2 = cJSON_GetObjectItemCaseSensitive(e, "name");
                const cJSON *tx = cJSON_GetObjectItemCaseSensitive(e, "template");
                if (!cJSON_IsString(nm2) || !cJSON_IsString(tx)) continue;
                char key[160];
                if (strcmp(nm2->valuestring, "default") == 0) snprintf(key, sizeof key, "tokenizer.chat_template");
                else snprintf(key, sizeof key, "tokenizer.chat_template.%.100s", nm2->valuestring);
                gguf_w_str(w, key, tx->valuestring);
            }
        }
    }
    *n_tokens = v.n;
done:
    lm_free(tmpl_file);
    lm_free(tj);
    lm_free(tc);
    lm_free(cj);
    vocab_free(&v);
    return st;
}
