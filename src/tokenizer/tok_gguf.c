/* tokenizer/tok_gguf.c: the tokenizer of a GGUF file (tokenizer.ggml.*), and the two calls that
 * see every kind of tokenizer: tok_encode (the tokenizer.json pipeline when there is one, else
 * llama.cpp's SentencePiece rule) and tok_free.
 * Owns: reading GGUF tokenizer metadata into a vocabulary. Does not own: the merge engines
 * (tokenizer.c), the pipelines (tok_json.c) or reading GGUF files (formats/). It sits above
 * tokenizer.c, tok_json.c and trie.c, none of which calls it. */
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- GGUF ---- */

static const gguf_value *kv_get(const gguf_file *g, const char *key) {
    size_t kl = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len == kl && memcmp(g->kv[i].key.ptr, key, kl) == 0) return &g->kv[i].val;
    return NULL;
}

static bool val_int(const gguf_value *v, int64_t *out) {
    switch (v->type) {
    case GGUF_U8:
    case GGUF_U16:
    case GGUF_U32:
    case GGUF_U64: *out = (int64_t)v->v.u; return true;
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64: *out = v->v.i; return true;
    default: return false;
    }
}

static size_t vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_U8:
    case GGUF_I8:
    case GGUF_BOOL: return 1;
    case GGUF_U16:
    case GGUF_I16: return 2;
    case GGUF_U32:
    case GGUF_I32:
    case GGUF_F32: return 4;
    case GGUF_U64:
    case GGUF_I64:
    case GGUF_F64: return 8;
    default: return 0;
    }
}

/* Element i of a numeric array (raw little-endian data) as a double. */
static bool arr_num(const gguf_value *a, uint64_t i, double *out) {
    size_t sz = vtype_size(a->v.arr.elem_type);
    if (!sz || i >= a->v.arr.n || !a->v.arr.raw) return false;
    const uint8_t *p = a->v.arr.raw + i * sz;
    uint64_t u = 0;
    for (size_t k = 0; k < sz; k++)
        u |= (uint64_t)p[k] << (8 * k);
    switch (a->v.arr.elem_type) {
    case GGUF_U8:
    case GGUF_U16:
    case GGUF_U32:
    case GGUF_U64:
    case GGUF_BOOL: *out = (double)u; return true;
    case GGUF_I8: *out = (int8_t)u; return true;
    case GGUF_I16: *out = (int16_t)u; return true;
    case GGUF_I32: *out = (int32_t)u; return true;
    case GGUF_I64: *out = (double)(int64_t)u; return true;
    case GGUF_F32: {
        union {
            uint32_t u;
            float f;
        } c = {(uint32_t)u};
        *out = c.f;
        return true;
    }
    case GGUF_F64: {
        union {
            uint64_t u;
            double f;
        } c = {u};
        *out = c.f;
        return true;
    }
    default: return false;
    }
}

static lm_token get_id(const gguf_file *g, const char *key, int32_t n_vocab) {
    const gguf_value *v = kv_get(g, key);
    int64_t x;
    if (!v || !val_int(v, &x) || x < 0 || x >= n_vocab) return -1;
    return (lm_token)x;
}

static bool get_flag(const gguf_file *g, const char *key, bool dflt) {
    const gguf_value *v = kv_get(g, key);
    if (!v) return dflt;
    if (v->type == GGUF_BOOL) return v->v.b;
    int64_t x;
    return val_int(v, &x) ? x != 0 : dflt;
}

static void fill_special_ids(tok_tokenizer *t) {
    for (int i = 0; i < 256; i++) {
        char name[8];
        static const char hex[] = "0123456789ABCDEF";
        name[0] = '<', name[1] = '0', name[2] = 'x', name[3] = hex[i >> 4], name[4] = hex[i & 15];
        name[5] = '>', name[6] = 0;
        t->byte_ids[i] = tok_strmap_get(t, name, 6);
    }
}

static char *dup_piece(const tok_tokenizer *t, lm_token id) {
    return lm_strdup(id >= 0 ? t->pieces[id] : "");
}

lm_status tok_load_gguf(const gguf_file *g, tok_tokenizer **out, lm_error *err) {
    *out = NULL;
    const char *name = g->path ? g->path : "gguf";
    const gguf_value *model = kv_get(g, "tokenizer.ggml.model");
    if (!model || model->type != GGUF_STRING)
        return lm_fail(err, LM_ERR_FORMAT, "%s: tokenizer.ggml.model: missing or not a string",
                       name);
    bool spm = model->v.s.len == 5 && memcmp(model->v.s.ptr, "llama", 5) == 0;
    bool gpt2 = model->v.s.len == 4 && memcmp(model->v.s.ptr, "gpt2", 4) == 0;
    if (!spm && !gpt2)
        return lm_fail(err, LM_ERR_UNSUPPORTED,
                       "%s: tokenizer.ggml.model: '%.*s' is not supported (expected 'llama' or "
                       "'gpt2')",
                       name, (int)LM_MIN(model->v.s.len, 32), model->v.s.ptr);
    const gguf_value *merges = kv_get(g, "tokenizer.ggml.merges");
    if (gpt2 && (!merges || merges->type != GGUF_ARRAY || merges->v.arr.elem_type != GGUF_STRING ||
                 (merges->v.arr.n && !merges->v.arr.items)))
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: tokenizer.ggml.merges: missing or not a string "
                       "array",
                       name);
    const gguf_value *toks = kv_get(g, "tokenizer.ggml.tokens");
    if (!toks || toks->type != GGUF_ARRAY || toks->v.arr.elem_type != GGUF_STRING ||
        !toks->v.arr.items || toks->v.arr.n == 0 || toks->v.arr.n > INT32_MAX / 2)
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: tokenizer.ggml.tokens: missing or not a non-empty string array", name);
    int32_t n = (int32_t)toks->v.arr.n;
    const gguf_value *scores = kv_get(g, "tokenizer.ggml.scores");
    if (scores && (scores->type != GGUF_ARRAY || scores->v.arr.n != (uint64_t)n))
        return lm_fail(err, LM_ERR_FORMAT, "%s: tokenizer.ggml.scores: expected %d numbers", name,
                       (int)n);
    const gguf_value *types = kv_get(g, "tokenizer.ggml.token_type");
    if (types && (types->type != GGUF_ARRAY || types->v.arr.n != (uint64_t)n))
        return lm_fail(err, LM_ERR_FORMAT, "%s: tokenizer.ggml.token_type: expected %d integers",
                       name, (int)n);
    size_t bytes = 0;
    for (int32_t i = 0; i < n; i++) {
        if (toks->v.arr.items[i].type != GGUF_STRING || toks->v.arr.items[i].v.s.len > 65536)
            return lm_fail(err, LM_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%d]: bad string", name,
                           (int)i);
        bytes += toks->v.arr.items[i].v.s.len + 1;
    }
    tok_tokenizer *t = lm_calloc(1, sizeof *t);
    if (!t) return lm_fail_nomem(err, "tokenizer");
    if (!tok_alloc_vocab(t, n, bytes, true)) goto nomem;
    t->model = spm ? TOK_MODEL_SPM : TOK_MODEL_BPE;
    memcpy(t->model_name, spm ? "llama" : "gpt2", spm ? 6 : 5);
    char *p = t->arena;
    for (int32_t i = 0; i < n; i++) {
        gguf_str s = toks->v.arr.items[i].v.s;
        memcpy(p, s.ptr, s.len);
        p[s.len] = 0;
        t->pieces[i] = p;
        t->piece_len[i] = (uint32_t)s.len;
        p += s.len + 1;
        double d = 0;
        if (scores && !arr_num(scores, (uint64_t)i, &d)) {
            tok_free(t);
            return lm_fail(err, LM_ERR_FORMAT, "%s: tokenizer.ggml.scores: not numeric", name);
        }
        t->scores[i] = (float)d;
        double k = TOK_KIND_NORMAL;
        if (types && (!arr_num(types, (uint64_t)i, &k) || k < 0 || k > 6)) {
            tok_free(t);
            return lm_fail(err, LM_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%d]: expected 0..6",
                           name, (int)i);
        }
        t->kinds[i] = (uint8_t)k;
        t->special[i] = k == TOK_KIND_CONTROL;
    }
    if (!tok_strmap_build(t)) goto nomem;
    fill_special_ids(t);
    tok_fill_byte_tables(t);
    t->bos = get_id(g, "tokenizer.ggml.bos_token_id", n);
    t->eos = get_id(g, "tokenizer.ggml.eos_token_id", n);
    t->unk = get_id(g, "tokenizer.ggml.unknown_token_id", n);
    t->add_bos = get_flag(g, "tokenizer.ggml.add_bos_token", spm);
    t->add_eos = get_flag(g, "tokenizer.ggml.add_eos_token", false);
    t->add_space_prefix = get_flag(g, "tokenizer.ggml.add_space_prefix", true);
    if (spm) {
        t->byte_fallback = true;
        memcpy(t->dec.space_char, "\xe2\x96\x81", 4);
        t->dec.byte_fallback = true;
        t->dec.strip_first = t->add_space_prefix ? 1 : 0; /* the prefix it added */
    } else {
        t->dec.byte_level = true;
        size_t nm = (size_t)merges->v.arr.n;
        if (!tok_mergemap_init(&t->merges, nm)) goto nomem;
        tok_merge_text *mt = lm_malloc((nm ? nm : 1) * sizeof *mt);
        if (!mt) goto nomem;
        for (size_t i = 0; i < nm; i++) {
            gguf_value *mv = &merges->v.arr.items[i];
            const char *a = mv->v.s.ptr, *sp = NULL;
            for (uint64_t k = 1; mv->type == GGUF_STRING && k < mv->v.s.len && !sp; k++)
                if (a[k] == ' ') sp = a + k;
            if (!sp) {
                lm_free(mt);
                tok_free(t);
                return lm_fail(err, LM_ERR_FORMAT,
                               "%s: tokenizer.ggml.merges[%d]: expected \"a b\"", name, (int)i);
            }
            size_t la = (size_t)(sp - a);
            mt[i] = (tok_merge_text){a, sp + 1, (uint32_t)la, (uint32_t)(mv->v.s.len - la - 1)};
        }
        size_t bad = tok_merges_build(t, mt, nm);
        lm_free(mt);
        if (bad != SIZE_MAX) {
            const gguf_value *mv = &merges->v.arr.items[bad];
            tok_free(t);
            return lm_fail(err, LM_ERR_FORMAT,
                           "%s: tokenizer.ggml.merges[%d]: '%.*s' names a token not in the "
                           "vocabulary",
                           name, (int)bad, (int)LM_MIN(mv->v.s.len, 40), mv->v.s.ptr);
        }
    }
    t->bos_text = dup_piece(t, t->bos);
    t->eos_text = dup_piece(t, t->eos);
    if (!t->bos_text || !t->eos_text) goto nomem;
    const gguf_value *tmpl = kv_get(g, "tokenizer.chat_template");
    if (tmpl && tmpl->type == GGUF_STRING) {
        t->chat_template = lm_strndup(tmpl->v.s.ptr, tmpl->v.s.len);
        if (!t->chat_template) goto nomem;
    }
    if (!tok_build_match_list(t, false)) goto nomem;
    if (gpt2) {
        const gguf_value *pre = kv_get(g, "tokenizer.ggml.pre");
        char pre_name[64] = "";
        if (pre && pre->type == GGUF_STRING)
            snprintf(pre_name, sizeof pre_name, "%.*s", (int)LM_MIN(pre->v.s.len, 63),
                     pre->v.s.ptr);
        lm_status st = tok_json_pipe_gguf(t, pre_name[0] ? pre_name : NULL, err);
        if (st) {
            tok_free(t);
            return st;
        }
    }
    *out = t;
    return LM_OK;
nomem:
    tok_free(t);
    return lm_fail_nomem(err, "tokenizer vocabulary");
}

void tok_free(tok_tokenizer *t) {
    if (!t) return;
    tok_json_pipe_free(t->pipe);
    tok_trie_free(atomic_load(&t->trie));
    tok_free_vocab(t);
}

/* ---- encoding (GGUF SentencePiece) ---- */

/* Finds the earliest (then longest) match-list token in s[0..n); returns its offset or n. */
static size_t find_special(const tok_tokenizer *t, const char *s, size_t n, bool parse_special,
                           lm_token *id_out) {
    for (size_t i = 0; i < n; i++) {
        if (!t->match_first[(uint8_t)s[i]]) continue;
        for (size_t k = 0; k < t->n_match; k++) {
            int32_t id = t->match_ids[k];
            if (!parse_special && t->kinds[id] != TOK_KIND_USER_DEFINED) continue;
            uint32_t l = t->piece_len[id];
            if (l <= n - i && memcmp(s + i, t->pieces[id], l) == 0) {
                *id_out = id;
                return i;
            }
        }
    }
    return n;
}

static bool spm_fragment(const tok_tokenizer *t, const char *s, size_t n, bool prefix,
                         tok_vec *out) {
    size_t cap = n * 3 + 4;
    char *buf = lm_malloc(cap);
    if (!buf) return false;
    size_t m = 0;
    if (prefix) {
        memcpy(buf, "\xe2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(buf + m, "\xe2\x96\x81", 3);
            m += 3;
        } else {
            buf[m++] = s[i];
        }
    }
    bool ok = tok_spm_encode_span(t, buf, m, out);
    lm_free(buf);
    return ok;
}

lm_status tok_encode(const tok_tokenizer *t, const char *text, size_t len, uint32_t flags,
                     tok_vec *out, lm_error *err) {
    if (!t || (!text && len)) return lm_fail(err, LM_ERR_MISUSE, "tok_encode: NULL argument");
    if (t->pipe) return tok_json_encode(t, text, len, flags, out, err);
    bool add = flags & LM_TOK_ADD_SPECIAL, parse = flags & LM_TOK_PARSE_SPECIAL;
    if (add && t->add_bos && t->bos >= 0 && !tok_vec_push(out, t->bos)) goto nomem;
    /* llama.cpp's SPM rule: the space prefix goes on the first text and on text that follows a
     * matched special token; an empty text stays empty. */
    bool prev_special = true;
    size_t i = 0;
    while (i < len) {
        lm_token id = -1;
        size_t at = find_special(t, text + i, len - i, parse, &id);
        if (at > 0 && !spm_fragment(t, text + i, at, t->add_space_prefix && prev_special, out))
            goto nomem;
        if (at > 0) prev_special = false;
        if (at == len - i) break;
        if (!tok_vec_push(out, id)) goto nomem;
        prev_special = true;
        i += at + t->piece_len[id];
    }
    if (add && t->add_eos && t->eos >= 0 && !tok_vec_push(out, t->eos)) goto nomem;
    return LM_OK;
nomem:
    return lm_fail_nomem(err, "token ids");
}
