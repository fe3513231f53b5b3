/* tokenizer/tok_json.c: Hugging Face tokenizer.json (+ tokenizer_config.json).
 * Owns: parsing the model/normalizer/pre-tokenizer/post-processor/decoder sections and running
 * that pipeline on text, as the `tokenizers` library does
 * (https://github.com/huggingface/tokenizers, tokenizers/src/{normalizers,pre_tokenizers}).
 * Does not own: the merge engines or decoding (tokenizer.c). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/tok_internal.h"

#include <pcre2.h>
#include <utf8proc.h>

#include <stdio.h>

#define GPT2_REGEX                                                                                 \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

enum norm_kind { N_NFC, N_NFKC, N_NFD, N_NFKD, N_PREPEND, N_REPLACE, N_LOWER, N_STRIP };
enum pre_kind { P_SPLIT, P_METASPACE };
enum behavior { B_REMOVED, B_ISOLATED, B_PREV, B_NEXT, B_CONTIGUOUS };
enum scheme { S_ALWAYS, S_FIRST, S_NEVER };

typedef struct norm_op {
    int kind;
    pcre2_code *re;   /* N_REPLACE (a String pattern is compiled as a literal) */
    char *content;    /* N_PREPEND, N_REPLACE */
    bool left, right; /* N_STRIP */
} norm_op;

typedef struct pre_op {
    int kind;
    pcre2_code *re;
    int behavior;
    bool invert;
    char repl[8]; /* P_METASPACE */
    int scheme;
    bool split;
} pre_op;

struct tok_json_pipe {
    norm_op *norms;
    size_t n_norms;
    pre_op *pres;
    size_t n_pres;
    bool byte_level; /* words go through the GPT-2 byte table before BPE */
    bool has_post;
    tok_vec prefix, suffix;   /* TemplateProcessing "single" around $A */
    uint8_t *lstrip, *rstrip; /* per id, for added tokens */
    uint8_t *normalized;      /* per id: an added token matched after normalization */
    uint8_t *single_word;     /* per id: an added token matched only as a whole word */
    char **norm_piece;        /* its normalized content (owned), per id */
    bool norm_first[256];     /* some normalized content starts with this byte */
    int32_t n_vocab;
};

struct word_cache;
static bool encode_word_cached(const tok_tokenizer *t, const char *w, size_t n, bool byte_level,
                               struct word_cache *c, tok_vec *out);

/* Text pieces: spans of one buffer. A sink (sink_t set) is the last stage instead: each piece
 * is encoded as it comes, without being copied (the pre-tokenizer's last split feeds BPE). */
typedef struct pieces {
    lm_buf text;
    size_t *off, *len;
    bool *origin; /* the piece starts at offset 0 of the input */
    size_t n, cap;
    bool oom;
    const tok_tokenizer *sink_t;
    struct word_cache *sink_wc;
    tok_vec *sink_out;
} pieces;

static void pieces_add(pieces *p, const char *s, size_t n, bool origin) {
    if (p->oom) return;
    if (p->sink_t) {
        if (!encode_word_cached(p->sink_t, s, n, p->sink_t->pipe->byte_level, p->sink_wc, p->sink_out))
            p->oom = true;
        return;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        size_t *o = lm_realloc(p->off, cap * sizeof *o);
        if (o) p->off = o;
        size_t *l = lm_realloc(p->len, cap * sizeof *l);
        if (l) p->len = l;
        bool *g = lm_realloc(p->origin, cap * sizeof *g);
        if (g) p->origin = g;
        if (!o || !l || !g) {
            p->oom = true;
            return;
        }
        p->cap = cap;
    }
    p->off[p->n] = p->text.len;
    p->len[p->n] = n;
    p->origin[p->n] = origin;
    p->n++;
    if (!lm_buf_append(&p->text, s, n)) p->oom = true;
}

static void pieces_free(pieces *p) {
    lm_buf_free(&p->text);
    lm_free(p->off);
    lm_free(p->len);
    lm_free(p->origin);
    memset(p, 0, sizeof *p);
}

/* ---- regex ---- */

/* PCRE2 allocates through core/ too, so the fail-the-Nth tests reach it. */
static void *pc_malloc(PCRE2_SIZE n, void *user) {
    (void)user;
    return lm_malloc(n);
}

static void pc_free(void *p, void *user) {
    (void)user;
    lm_free(p);
}

/* NULL with why filled; *oom tells an allocation failure from a bad pattern. */
static pcre2_code *re_compile(const char *pat, bool literal, char *why, size_t why_len, bool *oom) {
    int code = PCRE2_ERROR_HEAP_FAILED;
    PCRE2_SIZE at = 0;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_general_context *g = pcre2_general_context_create(pc_malloc, pc_free, NULL);
    pcre2_compile_context *c = g ? pcre2_compile_context_create(g) : NULL;
    pcre2_code *re =
        c ? pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &code, &at, c) : NULL;
    pcre2_compile_context_free(c);
    pcre2_general_context_free(g);
    *oom = !re && code == PCRE2_ERROR_HEAP_FAILED;
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(why, why_len, "%s at offset %zu", (const char *)msg, (size_t)at);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter runs it if JIT is unavailable */
    return re;
}

/* Match positions [s0, e0, s1, e1, ...] of the last find_all, and the match data it reuses
 * (one allocation per encode call, not per piece). */
/* Ids of short pre-token words already merged in this call: words repeat a lot in text, and
 * the tokenizer itself stays immutable (shared between threads) by keeping this per call. */
#define WC_SLOTS 4096        /* to start with: a short prompt stays cheap */
#define WC_MAX_SLOTS 131072  /* grown up to this (half of it entries) for long texts */
#define WC_MAX_WORD 64
typedef struct wc_entry {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, n_ids;
} wc_entry;

typedef struct word_cache {
    uint64_t *slots; /* (hash high 32 bits << 32) | entry index; UINT64_MAX empty: a probe
                        touches an entry only when the tag matches */
    wc_entry *e;
    size_t n, n_slots;
    lm_buf keys;
    tok_vec ids;
} word_cache;

typedef struct match_list {
    size_t *v;
    size_t n, cap;
    pcre2_match_data *md;
    word_cache wc;
    int match_err;   /* a PCRE2 error other than "no memory" (a match, depth or heap limit) */
} match_list;

static void match_list_free(match_list *m) {
    lm_free(m->v);
    pcre2_match_data_free(m->md);
    lm_free(m->wc.slots);
    lm_free(m->wc.e);
    lm_buf_free(&m->wc.keys);
    tok_vec_free(&m->wc.ids);
    memset(m, 0, sizeof *m);
}

/* Appends the ids of one word, from the cache or by merging (then remembered). */
static bool encode_word_cached(const tok_tokenizer *t, const char *w, size_t n, bool byte_level,
                               struct word_cache *c, tok_vec *out) {
    if (n > WC_MAX_WORD) return tok_bpe_encode_word(t, w, n, byte_level, out);
    if (!c->slots) {
        c->slots = lm_malloc(WC_SLOTS * sizeof *c->slots);
        c->e = lm_malloc(WC_SLOTS / 2 * sizeof *c->e);
        if (!c->slots || !c->e) return false;
        memset(c->slots, 0xff, WC_SLOTS * sizeof *c->slots);
        c->n_slots = WC_SLOTS;
    }
    if (c->n == c->n_slots / 2 && c->n_slots < WC_MAX_SLOTS) { /* full: double and rehash */
        size_t ns = c->n_slots * 2;
        uint64_t *slots = lm_malloc(ns * sizeof *slots);
        wc_entry *e = slots ? lm_realloc(c->e, ns / 2 * sizeof *e) : NULL;
        if (!e) {
            lm_free(slots);
            return false;
        }
        c->e = e;
        memset(slots, 0xff, ns * sizeof *slots);
        for (size_t k = 0; k < c->n; k++) {
            size_t j = e[k].hash & (ns - 1);
            while (slots[j] != UINT64_MAX) j = (j + 1) & (ns - 1);
            slots[j] = (e[k].hash & 0xffffffff00000000ull) | k;
        }
        lm_free(c->slots);
        c->slots = slots;
        c->n_slots = ns;
    }
    size_t mask = c->n_slots - 1;
    uint64_t h = tok_hash(w, n);
    size_t i = h & mask;
    for (uint64_t v; (v = c->slots[i]) != UINT64_MAX; i = (i + 1) & mask) {
        if ((v >> 32) != (h >> 32)) continue;
        const wc_entry *e = &c->e[(uint32_t)v];
        if (e->key_len == n && memcmp(c->keys.data + e->key_off, w, n) == 0)
            return e->n_ids == 0 || tok_vec_append(out, c->ids.ids + e->ids_off, e->n_ids);
    }
    size_t before = out->n;
    if (!tok_bpe_encode_word(t, w, n, byte_level, out)) return false;
    if (c->n < c->n_slots / 2) { /* full: later words are merged without being remembered */
        wc_entry e = {h, (uint32_t)c->keys.len, (uint32_t)n, (uint32_t)c->ids.n,
                      (uint32_t)(out->n - before)};
        /* a word may give no ids; then out->ids and c->ids.ids can still be NULL */
        if (!lm_buf_append(&c->keys, w, n) ||
            (e.n_ids && !tok_vec_append(&c->ids, out->ids + before, e.n_ids)))
            return false;
        c->e[c->n] = e;
        c->slots[i] = (h & 0xffffffff00000000ull) | c->n++;
    }
    return true;
}

/* All non-overlapping matches of re in text (valid UTF-8); false on NOMEM, or when PCRE2 gave up
 * (m->match_err says why: e.g. its match limit, on a pathological regex or text). */
static bool find_all(pcre2_code *re, const char *text, size_t n, match_list *m) {
    m->n = 0;
    if (!m->md) {
        pcre2_general_context *g = pcre2_general_context_create(pc_malloc, pc_free, NULL);
        if (!g) return false;
        m->md = pcre2_match_data_create(32, g); /* ovector[0..1] is set even with more groups */
        pcre2_general_context_free(g);
        if (!m->md) return false;
    }
    size_t pos = 0;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)text, n, pos, PCRE2_NO_UTF_CHECK, m->md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* e.g. the JIT stack ran out: interpret */
            rc = pcre2_match(re, (PCRE2_SPTR)text, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, m->md,
                             NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            if (rc != PCRE2_ERROR_NOMEMORY) m->match_err = rc;
            return false;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
        size_t s = ov[0], e = ov[1];
        if (e == s) { /* empty match: step one code point */
            if (s >= n) break;
            int l = lm_utf8_seq_len((unsigned char)text[s]);
            pos = s + (l ? (size_t)l : 1);
            continue;
        }
        if (m->n + 2 > m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 32;
            size_t *v = lm_realloc(m->v, cap * sizeof *v);
            if (!v) return false;
            m->v = v;
            m->cap = cap;
        }
        m->v[m->n++] = s;
        m->v[m->n++] = e;
        pos = e;
    }
    return true;
}

/* HF's NormalizedString::split with a pattern and a behavior (tokenizers/src/tokenizer/
 * normalizer.rs): the text becomes alternating (gap, match) segments, folded per behavior. */
static void split_piece(const pre_op *op, const char *s, size_t n, bool origin, match_list *m,
                        pieces *out) {
    if (!find_all(op->re, s, n, m)) {
        out->oom = true;
        return;
    }
    size_t nm = m->n / 2, n_seg = 0;
    /* segments as (start, end, is_match); at most 2 * nm + 1 */
    size_t *seg = lm_malloc((2 * nm + 1) * 3 * sizeof *seg);
    if (!seg) {
        out->oom = true;
        return;
    }
    size_t prev = 0;
    for (size_t k = 0; k <= nm; k++) {
        size_t ms = k < nm ? m->v[2 * k] : n, me = k < nm ? m->v[2 * k + 1] : n;
        if (ms > prev) {
            seg[3 * n_seg] = prev, seg[3 * n_seg + 1] = ms, seg[3 * n_seg + 2] = op->invert;
            n_seg++;
        }
        if (me > ms) {
            seg[3 * n_seg] = ms, seg[3 * n_seg + 1] = me, seg[3 * n_seg + 2] = !op->invert;
            n_seg++;
        }
        prev = me;
    }
    /* fold into output spans, kept in seg's storage: (start, end) pairs, kept flag */
    size_t n_out = 0;
    bool prev_match = false;
    switch (op->behavior) {
    case B_REMOVED:
    case B_ISOLATED:
        for (size_t i = 0; i < n_seg; i++) {
            if (op->behavior == B_REMOVED && seg[3 * i + 2]) continue;
            seg[3 * n_out] = seg[3 * i], seg[3 * n_out + 1] = seg[3 * i + 1];
            n_out++;
        }
        break;
    case B_CONTIGUOUS: /* a match joins the match before it */
    case B_PREV:       /* a match joins the piece before it unless that piece is a match */
        for (size_t i = 0; i < n_seg; i++) {
            bool is_m = seg[3 * i + 2];
            if (is_m && prev_match == (op->behavior == B_CONTIGUOUS) && n_out) {
                seg[3 * (n_out - 1) + 1] = seg[3 * i + 1];
            } else {
                seg[3 * n_out] = seg[3 * i], seg[3 * n_out + 1] = seg[3 * i + 1];
                n_out++;
            }
            prev_match = is_m;
        }
        break;
    case B_NEXT: {
        /* right to left: a match joins the piece after it unless that piece is a match */
        size_t w = n_seg; /* output written downwards into [w, n_seg) */
        for (size_t i = n_seg; i-- > 0;) {
            bool is_m = seg[3 * i + 2];
            size_t st = seg[3 * i], en = seg[3 * i + 1];
            if (is_m && !prev_match && w < n_seg) {
                seg[3 * w] = st;
            } else {
                w--;
                seg[3 * w] = st, seg[3 * w + 1] = en;
            }
            prev_match = is_m;
        }
        for (size_t i = w; i < n_seg; i++) {
            seg[3 * n_out] = seg[3 * i], seg[3 * n_out + 1] = seg[3 * i + 1];
            n_out++;
        }
        break;
    }
    }
    for (size_t i = 0; i < n_out; i++)
        pieces_add(out, s + seg[3 * i], seg[3 * i + 1] - seg[3 * i], origin && seg[3 * i] == 0);
    lm_free(seg);
}

/* ---- normalizers ---- */

static bool normalize(const struct tok_json_pipe *p, lm_buf *b, match_list *m) {
    for (size_t i = 0; i < p->n_norms; i++) {
        const norm_op *op = &p->norms[i];
        if (b->oom) return false;
        switch (op->kind) {
        case N_NFC:
        case N_NFKC:
        case N_NFD:
        case N_NFKD: {
            if (!b->len) break;
            int opts =
                UTF8PROC_STABLE |
                (op->kind == N_NFC || op->kind == N_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
                (op->kind == N_NFKC || op->kind == N_NFKD ? UTF8PROC_COMPAT : 0);
            utf8proc_uint8_t *res = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)b->data,
                                              (utf8proc_ssize_t)b->len, &res, opts);
            if (r < 0) break; /* invalid UTF-8: left as is */
            lm_buf_reset(b);
            lm_buf_append(b, (const char *)res, (size_t)r);
            free(res); /* utf8proc allocates with malloc */
            break;
        }
        case N_PREPEND:
            if (b->len) {
                lm_buf nb = {0};
                lm_buf_puts(&nb, op->content);
                lm_buf_append(&nb, b->data, b->len);
                lm_buf_free(b);
                *b = nb;
            }
            break;
        case N_REPLACE: {
            if (!b->len) break;
            if (!find_all(op->re, b->data, b->len, m)) return false;
            if (!m->n) break;
            lm_buf nb = {0};
            size_t prev = 0;
            for (size_t k = 0; k < m->n; k += 2) {
                lm_buf_append(&nb, b->data + prev, m->v[k] - prev);
                lm_buf_puts(&nb, op->content);
                prev = m->v[k + 1];
            }
            lm_buf_append(&nb, b->data + prev, b->len - prev);
            lm_buf_free(b);
            *b = nb;
            break;
        }
        case N_LOWER: {
            lm_buf nb = {0};
            for (size_t k = 0; k < b->len;) {
                uint32_t cp;
                int l = lm_utf8_decode(b->data + k, b->len - k, &cp);
                char enc[4];
                int el = lm_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc);
                lm_buf_append(&nb, enc, (size_t)el);
                k += (size_t)l;
            }
            lm_buf_free(b);
            *b = nb;
            break;
        }
        case N_STRIP: {
            if (!b->len) break;
            size_t s = 0, e = b->len;
            while (op->left && s < e &&
                   (b->data[s] == ' ' || b->data[s] == '\t' || b->data[s] == '\n' ||
                    b->data[s] == '\r'))
                s++;
            while (op->right && e > s &&
                   (b->data[e - 1] == ' ' || b->data[e - 1] == '\t' || b->data[e - 1] == '\n' ||
                    b->data[e - 1] == '\r'))
                e--;
            memmove(b->data, b->data + s, e - s);
            b->len = e - s;
            if (b->data) b->data[b->len] = 0;
            break;
        }
        }
    }
    return !b->oom;
}

/* ---- encoding ---- */

static bool encode_fragment(const tok_tokenizer *t, const char *s, size_t n, bool origin,
                            match_list *m, tok_vec *out) {
    const struct tok_json_pipe *p = t->pipe;
    bool ok = true;
    /* the input is the first stage's one piece as it is (no copy) */
    pieces cur = {0};
    size_t one_off = 0, one_len = n;
    bool one_origin = origin;
    if (n) {
        cur.text.data = (char *)s;
        cur.off = &one_off;
        cur.len = &one_len;
        cur.origin = &one_origin;
        cur.n = 1;
    }
    bool borrowed = true, sunk = false;
    for (size_t i = 0; ok && i < p->n_pres; i++) {
        const pre_op *op = &p->pres[i];
        pieces nxt = {0};
        if (i + 1 == p->n_pres && op->kind == P_SPLIT) { /* the last split encodes directly */
            nxt.sink_t = t;
            nxt.sink_wc = &m->wc;
            nxt.sink_out = out;
            sunk = true;
        }
        for (size_t k = 0; k < cur.n && !nxt.oom; k++) {
            const char *ps = cur.text.data + cur.off[k];
            size_t pl = cur.len[k];
            if (op->kind == P_SPLIT) {
                split_piece(op, ps, pl, cur.origin[k], m, &nxt);
                continue;
            }
            /* Metaspace: spaces become the replacement, which is prepended per the scheme. */
            lm_buf mb = {0};
            size_t rl = strlen(op->repl);
            bool starts = pl >= rl && memcmp(ps, op->repl, rl) == 0;
            if (!starts && pl && ps[0] == ' ') starts = true;
            if (!starts && (op->scheme == S_ALWAYS || (op->scheme == S_FIRST && cur.origin[k])))
                lm_buf_puts(&mb, op->repl);
            for (size_t c = 0; c < pl; c++) {
                if (ps[c] == ' ')
                    lm_buf_puts(&mb, op->repl);
                else
                    lm_buf_putc(&mb, ps[c]);
            }
            if (mb.oom) {
                nxt.oom = true;
            } else if (!op->split) {
                if (mb.len) pieces_add(&nxt, mb.data, mb.len, cur.origin[k]);
            } else {
                size_t st = 0;
                for (size_t c = 1; c <= mb.len; c++) {
                    if (c == mb.len ||
                        (mb.len - c >= rl && memcmp(mb.data + c, op->repl, rl) == 0)) {
                        pieces_add(&nxt, mb.data + st, c - st, cur.origin[k] && st == 0);
                        st = c;
                    }
                }
            }
            lm_buf_free(&mb);
        }
        ok = !nxt.oom;
        if (!borrowed) pieces_free(&cur);
        borrowed = false;
        cur = nxt;
    }
    for (size_t k = 0; ok && !sunk && k < cur.n; k++)
        ok = encode_word_cached(t, cur.text.data + cur.off[k], cur.len[k], p->byte_level, &m->wc,
                                out);
    ok = ok && !cur.oom;
    if (!borrowed) pieces_free(&cur);
    return ok;
}

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Word characters for single_word added tokens: ASCII letters, digits, '_' and any non-ASCII
 * byte (letters of other scripts; punctuation outside ASCII is rare next to added tokens). */
static bool is_word_byte(char c) {
    unsigned char u = (unsigned char)c;
    return u >= 0x80 || (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') ||
           (u >= 'A' && u <= 'Z') || u == '_';
}

/* HF's AddedVocabulary: tokens with normalized=false are found in the raw text; each piece
 * between them is normalized once, then tokens with normalized=true are found in it by their
 * normalized content. Special tokens count only when parse is set; non-special always. */
static bool split_added(const tok_tokenizer *t, const char *text, size_t len, bool normalized,
                        bool parse, bool origin, match_list *m, tok_vec *out) {
    const struct tok_json_pipe *p = t->pipe;
    size_t i = 0, frag = 0;
    bool ok = true;
    while (ok && i <= len) {
        lm_token id = -1;
        size_t at = len, tl = 0;
        for (size_t s = i; s < len && id < 0; s++) {
            if (!(normalized ? p->norm_first : t->match_first)[(uint8_t)text[s]]) continue;
            for (size_t k = 0; k < t->n_match; k++) {
                int32_t c = t->match_ids[k];
                if ((!parse && t->special[c]) || (p->normalized[c] != 0) != normalized) continue;
                const char *cs = normalized ? p->norm_piece[c] : t->pieces[c];
                size_t l = normalized ? strlen(cs) : t->piece_len[c];
                if (l && l <= len - s && text[s] == cs[0] && memcmp(text + s, cs, l) == 0 &&
                    (!p->single_word[c] || ((s == 0 || !is_word_byte(text[s - 1])) &&
                                            (s + l == len || !is_word_byte(text[s + l]))))) {
                    id = c;
                    at = s;
                    tl = l;
                    break;
                }
            }
        }
        size_t fe = at, next = at;
        if (id >= 0) {
            if (p->lstrip[id])
                while (fe > frag && is_ws(text[fe - 1]))
                    fe--;
            next = at + tl;
            if (p->rstrip[id])
                while (next < len && is_ws(text[next]))
                    next++;
        }
        if (fe > frag) {
            bool o = origin && frag == 0;
            if (normalized) {
                ok = encode_fragment(t, text + frag, fe - frag, o, m, out);
            } else {
                lm_buf nb = {0};
                ok = lm_buf_append(&nb, text + frag, fe - frag) && normalize(p, &nb, m) &&
                     split_added(t, nb.data ? nb.data : "", nb.len, true, parse, o, m, out);
                lm_buf_free(&nb);
            }
        }
        if (id < 0) break;
        ok = ok && tok_vec_push(out, id);
        frag = i = next;
    }
    return ok;
}

lm_status tok_json_encode(const tok_tokenizer *t, const char *text, size_t len, uint32_t flags,
                          tok_vec *out, lm_error *err) {
    const struct tok_json_pipe *p = t->pipe;
    match_list m = {0};
    bool ok = true;
    /* The pipeline (like HF's, which takes Rust strings) needs valid UTF-8: each invalid byte
     * becomes U+FFFD, as Python's errors="replace" decoding would. */
    lm_buf fixed = {0};
    bool fixing = false;
    for (size_t i = 0; i < len;) {
        size_t bad;
        size_t l = tok_utf8_seq_ok((const unsigned char *)text + i, len - i, &bad);
        if (l && !fixing) {
            i += l;
            continue;
        }
        if (!fixing) {
            fixing = true;
            lm_buf_append(&fixed, text, i);
        }
        if (l)
            lm_buf_append(&fixed, text + i, l);
        else
            lm_buf_append(&fixed, "\xef\xbf\xbd", 3);
        i += l ? l : bad;
    }
    if (fixed.oom) {
        lm_buf_free(&fixed);
        return lm_fail_nomem(err, "text");
    }
    if (fixing) {
        text = fixed.data;
        len = fixed.len;
    }
    if (flags & LM_TOK_ADD_SPECIAL) {
        if (p->has_post)
            ok = tok_vec_append(out, p->prefix.ids, p->prefix.n);
        else if (t->add_bos && t->bos >= 0)
            ok = tok_vec_push(out, t->bos);
    }
    ok = ok && split_added(t, text, len, false, flags & LM_TOK_PARSE_SPECIAL, true, &m, out);
    if (ok && (flags & LM_TOK_ADD_SPECIAL)) {
        if (p->has_post)
            ok = tok_vec_append(out, p->suffix.ids, p->suffix.n);
        else if (t->add_eos && t->eos >= 0)
            ok = tok_vec_push(out, t->eos);
    }
    int merr = m.match_err;
    match_list_free(&m);
    lm_buf_free(&fixed);
    if (!ok && merr) {
        PCRE2_UCHAR why[128];
        if (pcre2_get_error_message(merr, why, sizeof why) < 0) snprintf((char *)why, sizeof why, "error %d", merr);
        return lm_fail(err, LM_ERR_UNSUPPORTED,
                       "tokenizer: a regex of its normalizer or pre-tokenizer gave up on this text "
                       "(PCRE2 error %d: %s)", merr, (const char *)why);
    }
    return ok ? LM_OK : lm_fail_nomem(err, "token ids");
}

void tok_json_pipe_free(struct tok_json_pipe *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_norms; i++) {
        pcre2_code_free(p->norms[i].re);
        lm_free(p->norms[i].content);
    }
    for (size_t i = 0; i < p->n_pres; i++)
        pcre2_code_free(p->pres[i].re);
    lm_free(p->norms);
    lm_free(p->pres);
    tok_vec_free(&p->prefix);
    tok_vec_free(&p->suffix);
    lm_free(p->lstrip);
    lm_free(p->rstrip);
    lm_free(p->normalized);
    lm_free(p->single_word);
    for (int32_t i = 0; p->norm_piece && i < p->n_vocab; i++)
        lm_free(p->norm_piece[i]);
    lm_free(p->norm_piece);
    lm_free(p);
}

/* ---- loading ---- */

typedef struct loader {
    const char *name;
    lm_error *err;
    tok_tokenizer *t;
    struct tok_json_pipe *p;
} loader;

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *k, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

typedef lm_status (*step_add_fn)(loader *L, const cJSON *n, const char *path);

/* The "type" of normalizer or pre-tokenizer step n into *type; a "Sequence" instead has each of
 * its steps (the array under list) added by add, and *type is NULL. */
static lm_status step_type(loader *L, const cJSON *n, const char *path, const char *list, step_add_fn add,
                           const char **type) {
    *type = jstr(n, "type");
    if (!*type) return lm_fail(L->err, LM_ERR_FORMAT, "%s: %s.type: expected a string", L->name, path);
    if (strcmp(*type, "Sequence") != 0) return LM_OK;
    *type = NULL;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(n, list)) {
        lm_status st = add(L, c, path);
        if (st) return st;
    }
    return LM_OK;
}

static lm_status add_norm(loader *L, const cJSON *n, const char *path) {
    const char *type;
    lm_status seq = step_type(L, n, path, "normalizers", add_norm, &type);
    if (seq || !type) return seq;
    norm_op op = {0};
    char why[160];
    if (strcmp(type, "NFC") == 0)
        op.kind = N_NFC;
    else if (strcmp(type, "NFKC") == 0)
        op.kind = N_NFKC;
    else if (strcmp(type, "NFD") == 0)
        op.kind = N_NFD;
    else if (strcmp(type, "NFKD") == 0)
        op.kind = N_NFKD;
    else if (strcmp(type, "Lowercase") == 0)
        op.kind = N_LOWER;
    else if (strcmp(type, "Strip") == 0) {
        op.kind = N_STRIP;
        op.left = jbool(n, "strip_left", true);
        op.right = jbool(n, "strip_right", true);
    } else if (strcmp(type, "Prepend") == 0) {
        op.kind = N_PREPEND;
        const char *s = jstr(n, "prepend");
        if (!s)
            return lm_fail(L->err, LM_ERR_FORMAT, "%s: %s.prepend: expected a string", L->name,
                           path);
        if (!(op.content = lm_strdup(s))) return lm_fail_nomem(L->err, "normalizer");
    } else if (strcmp(type, "Replace") == 0) {
        op.kind = N_REPLACE;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *lit = jstr(pat, "String"), *rx = jstr(pat, "Regex"),
                   *content = jstr(n, "content");
        if ((!lit && !rx) || !content)
            return lm_fail(L->err, LM_ERR_FORMAT,
                           "%s: %s (Replace): expected pattern {String|Regex} and content", L->name,
                           path);
        bool oom;
        op.re = re_compile(lit ? lit : rx, lit != NULL, why, sizeof why, &oom);
        if (!op.re && oom) return lm_fail_nomem(L->err, "normalizer regex");
        if (!op.re)
            return lm_fail(L->err, LM_ERR_FORMAT, "%s: %s.pattern: invalid regex: %s", L->name,
                           path, why);
        if (!(op.content = lm_strdup(content))) {
            pcre2_code_free(op.re);
            return lm_fail_nomem(L->err, "normalizer");
        }
    } else {
        return lm_fail(L->err, LM_ERR_UNSUPPORTED, "%s: %s.type: '%s' is not supported", L->name,
                       path, type);
    }
    norm_op *v = lm_realloc(L->p->norms, (L->p->n_norms + 1) * sizeof *v);
    if (!v) {
        pcre2_code_free(op.re);
        lm_free(op.content);
        return lm_fail_nomem(L->err, "normalizers");
    }
    L->p->norms = v;
    v[L->p->n_norms++] = op;
    return LM_OK;
}

static lm_status push_pre(loader *L, pre_op op) {
    pre_op *v = lm_realloc(L->p->pres, (L->p->n_pres + 1) * sizeof *v);
    if (!v) {
        pcre2_code_free(op.re);
        return lm_fail_nomem(L->err, "pre-tokenizers");
    }
    L->p->pres = v;
    v[L->p->n_pres++] = op;
    return LM_OK;
}

static lm_status pre_regex(loader *L, const char *pat, bool literal, int behavior, bool invert,
                           const char *path) {
    char why[160];
    pre_op op = {.kind = P_SPLIT, .behavior = behavior, .invert = invert};
    bool oom;
    op.re = re_compile(pat, literal, why, sizeof why, &oom);
    if (!op.re && oom) return lm_fail_nomem(L->err, "pre-tokenizer regex");
    if (!op.re)
        return lm_fail(L->err, LM_ERR_FORMAT, "%s: %s.pattern: invalid regex: %s", L->name, path,
                       why);
    return push_pre(L, op);
}

static lm_status add_pre(loader *L, const cJSON *n, const char *path) {
    const char *type;
    lm_status seq = step_type(L, n, path, "pretokenizers", add_pre, &type);
    if (seq || !type) return seq;
    if (strcmp(type, "ByteLevel") == 0) {
        L->p->byte_level = true;
        if (jbool(n, "add_prefix_space", true)) {
            /* a space in front unless the text already starts with one: a Metaspace-like step */
            pre_op op = {.kind = P_METASPACE, .scheme = S_ALWAYS, .split = false};
            memcpy(op.repl, " ", 2);
            lm_status st = push_pre(L, op);
            if (st) return st;
        }
        if (jbool(n, "use_regex", true))
            return pre_regex(L, GPT2_REGEX, false, B_ISOLATED, false, path);
        return LM_OK;
    }
    if (strcmp(type, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *lit = jstr(pat, "String"), *rx = jstr(pat, "Regex"), *beh = jstr(n, "behavior");
        if (!lit && !rx)
            return lm_fail(L->err, LM_ERR_FORMAT, "%s: %s.pattern: expected {String|Regex}",
                           L->name, path);
        int b = -1;
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
        for (int k = 0; beh && k < 5; k++)
            if (strcmp(beh, names[k]) == 0) b = k;
        if (b < 0)
            return lm_fail(L->err, LM_ERR_FORMAT,
                           "%s: %s.behavior: expected Removed, Isolated, "
                           "MergedWithPrevious, MergedWithNext or Contiguous",
                           L->name, path);
        return pre_regex(L, lit ? lit : rx, lit != NULL, b, jbool(n, "invert", false), path);
    }
    if (strcmp(type, "Metaspace") == 0) {
        pre_op op = {.kind = P_METASPACE, .split = jbool(n, "split", true), .scheme = S_ALWAYS};
        const char *r = jstr(n, "replacement");
        if (!r) r = "\xe2\x96\x81";
        if (strlen(r) >= sizeof op.repl)
            return lm_fail(L->err, LM_ERR_FORMAT, "%s: %s.replacement: expected one character",
                           L->name, path);
        strcpy(op.repl, r);
        const char *sc = jstr(n, "prepend_scheme");
        if (sc && strcmp(sc, "first") == 0)
            op.scheme = S_FIRST;
        else if (sc && strcmp(sc, "never") == 0)
            op.scheme = S_NEVER;
        else if (!sc && !jbool(n, "add_prefix_space", true))
            op.scheme = S_NEVER;
        return push_pre(L, op);
    }
    if (strcmp(type, "Digits") == 0)
        return pre_regex(L, jbool(n, "individual_digits", false) ? "\\p{Nd}" : "\\p{Nd}+", false,
                         B_ISOLATED, false, path);
    if (strcmp(type, "Punctuation") == 0)
        return pre_regex(L, "[\\p{P}$+<=>^`|~]", false, B_ISOLATED, false, path);
    if (strcmp(type, "Whitespace") == 0)
        return pre_regex(L, "\\w+|[^\\w\\s]+", false, B_REMOVED, true, path);
    if (strcmp(type, "WhitespaceSplit") == 0)
        return pre_regex(L, "\\s+", false, B_REMOVED, false, path);
    return lm_fail(L->err, LM_ERR_UNSUPPORTED, "%s: %s.type: '%s' is not supported", L->name, path,
                   type);
}

static lm_status add_decoder(loader *L, const cJSON *n) {
    const char *type = jstr(n, "type");
    tok_decode_rules *d = &L->t->dec;
    if (!type)
        return lm_fail(L->err, LM_ERR_FORMAT, "%s: decoder.type: expected a string", L->name);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(n, "decoders")) {
            lm_status st = add_decoder(L, c);
            if (st) return st;
        }
    } else if (strcmp(type, "ByteLevel") == 0) {
        d->byte_level = true;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->byte_fallback = true;
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *r = jstr(n, "replacement");
        snprintf(d->space_char, sizeof d->space_char, "%s", r ? r : "\xe2\x96\x81");
        const char *sc = jstr(n, "prepend_scheme");
        bool strip = sc ? strcmp(sc, "never") != 0 : jbool(n, "add_prefix_space", true);
        d->strip_first = strip ? 1 : 0;
    } else if (strcmp(type, "Replace") == 0) {
        const char *lit = jstr(cJSON_GetObjectItemCaseSensitive(n, "pattern"), "String");
        const char *content = jstr(n, "content");
        if (!lit || !content || strcmp(content, " ") != 0 || strlen(lit) >= sizeof d->space_char)
            return lm_fail(
                L->err, LM_ERR_UNSUPPORTED,
                "%s: decoder Replace: only a String pattern replaced by \" \" is supported",
                L->name);
        strcpy(d->space_char, lit);
    } else if (strcmp(type, "Strip") == 0) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(n, "start");
        d->strip_first = cJSON_IsNumber(s) ? s->valueint : 0;
    } else if (strcmp(type, "Fuse") != 0) {
        return lm_fail(L->err, LM_ERR_UNSUPPORTED, "%s: decoder.type: '%s' is not supported",
                       L->name, type);
    }
    return LM_OK;
}

static lm_status add_post(loader *L, const cJSON *n) {
    const char *type = jstr(n, "type");
    if (!type)
        return lm_fail(L->err, LM_ERR_FORMAT, "%s: post_processor.type: expected a string",
                       L->name);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(n, "processors")) {
            lm_status st = add_post(L, c);
            if (st) return st;
        }
        return LM_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) return LM_OK;
    if (strcmp(type, "TemplateProcessing") != 0)
        return lm_fail(L->err, LM_ERR_UNSUPPORTED, "%s: post_processor.type: '%s' is not supported",
                       L->name, type);
    L->p->has_post = true;
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(n, "special_tokens");
    const cJSON *it;
    bool after = false;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "single")) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        if (!sp) {
            after = true;
            continue;
        }
        const char *name = jstr(sp, "id");
        const cJSON *ent = cJSON_GetObjectItemCaseSensitive(specials, name ? name : "");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(ent, "ids"), *x;
        if (!cJSON_IsArray(ids))
            return lm_fail(L->err, LM_ERR_FORMAT,
                           "%s: post_processor.special_tokens: '%s' missing or without ids",
                           L->name, name ? name : "?");
        cJSON_ArrayForEach(x, ids) {
            if (!cJSON_IsNumber(x) || x->valueint < 0 || x->valueint >= L->t->n_vocab)
                return lm_fail(L->err, LM_ERR_FORMAT,
                               "%s: post_processor.special_tokens['%s'].ids: id out of range",
                               L->name, name);
            if (!tok_vec_push(after ? &L->p->suffix : &L->p->prefix, x->valueint))
                return lm_fail_nomem(L->err, "post-processor");
        }
    }
    return LM_OK;
}

/* "<s>" or {"content": "<s>"} */
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    return jstr(v, "content");
}

static lm_status load_config(loader *L, const cJSON *cfg) {
    tok_tokenizer *t = L->t;
    const char *b = token_text(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token"));
    const char *e = token_text(cJSON_GetObjectItemCaseSensitive(cfg, "eos_token"));
    if (b) t->bos = tok_find(t, b);
    if (e) t->eos = tok_find(t, e);
    t->add_bos = jbool(cfg, "add_bos_token", t->add_bos);
    t->add_eos = jbool(cfg, "add_eos_token", t->add_eos);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(ct)) {
        if (!(t->chat_template = lm_strdup(ct->valuestring)))
            return lm_fail_nomem(L->err, "template");
    } else if (cJSON_IsArray(ct)) {
        size_t n = (size_t)cJSON_GetArraySize(ct);
        t->template_names = lm_calloc(n + 1, sizeof(char *));
        t->template_texts = lm_calloc(n + 1, sizeof(char *));
        if (!t->template_names || !t->template_texts) return lm_fail_nomem(L->err, "template");
        const cJSON *it;
        cJSON_ArrayForEach(it, ct) {
            const char *name = jstr(it, "name"), *tx = jstr(it, "template");
            if (!name || !tx)
                return lm_fail(L->err, LM_ERR_FORMAT,
                               "%s: chat_template[]: expected {\"name\", \"template\"}", L->name);
            size_t k = t->n_named_templates;
            t->template_names[k] = lm_strdup(name);
            t->template_texts[k] = lm_strdup(tx);
            t->n_named_templates++;
            if (!t->template_names[k] || !t->template_texts[k])
                return lm_fail_nomem(L->err, "template");
        }
    }
    return LM_OK;
}

/* model.vocab and model.merges, from cJSON or from the fast scanner below. Strings are not
 * NUL-terminated; they point into the cJSON tree or the scanner's buffer. */
typedef struct vent {
    const char *s;
    uint32_t len;
    int32_t id;
} vent;
typedef tok_merge_text ment;
typedef struct big_lists {
    vent *v;
    size_t n_v;
    ment *m;
    size_t n_m;
    char *buf; /* unescaped strings (fast path) */
} big_lists;

static void big_lists_free(big_lists *b) {
    lm_free(b->v);
    lm_free(b->m);
    lm_free(b->buf);
    memset(b, 0, sizeof *b);
}

/* ---- fast scanner: cJSON builds a node per vocab entry and merge, which dominates the load
 * of a 128k-token file; these two sections are read directly instead and the rest of the
 * document (with them replaced by {} and []) goes to cJSON. Anything unexpected: the caller
 * falls back to cJSON for the whole file, which also gives the precise error. ---- */

static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* p at '"': returns the position after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *e) {
    for (p++; p < e; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *e) {
    p = skip_ws(p, e);
    if (p >= e) return NULL;
    if (*p == '"') return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < e) {
            if (*p == '"') {
                p = skip_string(p, e);
                if (!p) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if (*p == '}' || *p == ']') {
                if (--depth == 0) return p + 1;
            }
            p++;
        }
        return NULL;
    }
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r' &&
           *p != '\t')
        p++;
    return p;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool hex4(const char *p, const char *e, uint32_t *out) {
    if (e - p < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return false;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return true;
}

/* Unescapes the string at p ('"') into *w; returns the position after it, or NULL. */
static const char *read_string(const char *p, const char *e, char **w) {
    char *o = *w;
    for (p++; p < e; p++) {
        char c = *p;
        if (c == '"') {
            *w = o;
            return p + 1;
        }
        if (c != '\\') {
            *o++ = c;
            continue;
        }
        if (++p >= e) return NULL;
        switch (*p) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(p + 1, e, &cp)) return NULL;
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (e - p < 7 || p[1] != '\\' || p[2] != 'u' || !hex4(p + 3, e, &lo) ||
                    lo < 0xDC00 || lo >= 0xE000)
                    return NULL;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return NULL;
            }
            int l = lm_utf8_encode(cp, o);
            if (!l) return NULL;
            o += l;
            break;
        }
        default: return NULL;
        }
    }
    return NULL;
}

static bool grow(void **v, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : 1024;
    void *q = lm_realloc(*v, c * elem);
    if (!q) return false;
    *v = q;
    *cap = c;
    return true;
}

/* model.vocab at p ('{'): entries into b; returns the position after '}', NULL if unexpected,
 * and sets *oom on allocation failure. */
static const char *scan_vocab(const char *p, const char *e, big_lists *b, char **w, bool *oom) {
    size_t cap = 0;
    p = skip_ws(p + 1, e);
    while (p < e && *p != '}') {
        if (*p != '"') return NULL;
        char *s0 = *w;
        p = read_string(p, e, w);
        if (!p) return NULL;
        p = skip_ws(p, e);
        if (p >= e || *p != ':') return NULL;
        p = skip_ws(p + 1, e);
        long id = 0;
        int digits = 0;
        while (p < e && *p >= '0' && *p <= '9' && digits < 9)
            id = id * 10 + (*p++ - '0'), digits++;
        if (!digits || id > 16777216) return NULL;
        if (!grow((void **)&b->v, &cap, b->n_v, sizeof *b->v)) {
            *oom = true;
            return NULL;
        }
        b->v[b->n_v++] = (vent){s0, (uint32_t)(*w - s0), (int32_t)id};
        p = skip_ws(p, e);
        if (p < e && *p == ',')
            p = skip_ws(p + 1, e);
        else if (p >= e || *p != '}')
            return NULL;
    }
    return p < e ? p + 1 : NULL;
}

/* model.merges at p ('['), as scan_vocab. */
static const char *scan_merges(const char *p, const char *e, big_lists *b, char **w, bool *oom) {
    size_t cap = 0;
    p = skip_ws(p + 1, e);
    while (p < e && *p != ']') {
        ment m;
        if (*p == '"') {
            char *s0 = *w;
            p = read_string(p, e, w);
            if (!p) return NULL;
            char *sp = NULL;
            for (char *q = s0 + 1; q < *w && !sp; q++)
                if (*q == ' ') sp = q;
            if (!sp) return NULL;
            m = (ment){s0, sp + 1, (uint32_t)(sp - s0), (uint32_t)(*w - sp - 1)};
        } else if (*p == '[') {
            p = skip_ws(p + 1, e);
            char *a0 = *w;
            if (p >= e || *p != '"' || !(p = read_string(p, e, w))) return NULL;
            char *b0 = *w;
            p = skip_ws(p, e);
            if (p >= e || *p != ',') return NULL;
            p = skip_ws(p + 1, e);
            if (p >= e || *p != '"' || !(p = read_string(p, e, w))) return NULL;
            p = skip_ws(p, e);
            if (p >= e || *p != ']') return NULL;
            p++;
            m = (ment){a0, b0, (uint32_t)(b0 - a0), (uint32_t)(*w - b0)};
        } else {
            return NULL;
        }
        if (!grow((void **)&b->m, &cap, b->n_m, sizeof *b->m)) {
            *oom = true;
            return NULL;
        }
        b->m[b->n_m++] = m;
        p = skip_ws(p, e);
        if (p < e && *p == ',')
            p = skip_ws(p + 1, e);
        else if (p >= e || *p != ']')
            return NULL;
    }
    return p < e ? p + 1 : NULL;
}

/* Position of the value of key in the object at p ('{'), skipping the values before it; NULL
 * when absent or unexpected. */
static const char *value_of(const char *p, const char *e, const char *key) {
    size_t kl = strlen(key);
    p = skip_ws(p, e);
    if (p >= e || *p != '{') return NULL;
    p++;
    for (;;) {
        p = skip_ws(p, e);
        if (p >= e || *p != '"') return NULL;
        const char *ks = p + 1, *kend = skip_string(p, e);
        if (!kend) return NULL;
        p = skip_ws(kend, e);
        if (p >= e || *p != ':') return NULL;
        const char *v = skip_ws(p + 1, e);
        if ((size_t)(kend - 1 - ks) == kl && memcmp(ks, key, kl) == 0) return v < e ? v : NULL;
        p = skip_value(v, e);
        if (!p) return NULL;
        p = skip_ws(p, e);
        if (p >= e || *p != ',') return NULL;
        p++;
    }
}

/* 1: read, 0: not applicable (use cJSON), -1: NOMEM. On 1, *rest is the document with the two
 * sections emptied (lm_free). The model object is walked once: vocab and merges are parsed where
 * they stand, other values skipped. */
static int fast_scan(const char *json, size_t len, big_lists *b, char **rest, size_t *rest_len) {
    const char *e = json + len, *vs = NULL, *ve = NULL, *gs = NULL, *ge = NULL;
    const char *p = value_of(json, e, "model");
    if (!p || *p != '{') return 0;
    b->buf = lm_malloc(len + 1);
    if (!b->buf) return -1;
    char *w = b->buf;
    bool oom = false;
    p++;
    while (!(vs && gs)) {
        p = skip_ws(p, e);
        if (p >= e || *p != '"') return 0;
        const char *ks = p + 1, *kend = skip_string(p, e);
        if (!kend) return 0;
        p = skip_ws(kend, e);
        if (p >= e || *p != ':') return 0;
        const char *v = skip_ws(p + 1, e);
        size_t kl = (size_t)(kend - 1 - ks);
        if (kl == 5 && memcmp(ks, "vocab", 5) == 0 && v < e && *v == '{' && !vs) {
            vs = v;
            p = ve = scan_vocab(v, e, b, &w, &oom);
        } else if (kl == 6 && memcmp(ks, "merges", 6) == 0 && v < e && *v == '[' && !gs) {
            gs = v;
            p = ge = scan_merges(v, e, b, &w, &oom);
        } else {
            p = skip_value(v, e);
        }
        if (oom) return -1;
        if (!p) return 0;
        p = skip_ws(p, e);
        if (vs && gs) break;
        if (p >= e || *p != ',') return 0;
        p++;
    }
    /* the rest: vocab -> {}, merges -> [] (vocab and merges may come in either order) */
    char *r = lm_malloc(len + 8);
    if (!r) return -1;
    const char *first_s = vs < gs ? vs : gs, *first_e = vs < gs ? ve : ge;
    const char *second_s = vs < gs ? gs : vs, *second_e = vs < gs ? ge : ve;
    size_t k = 0;
    memcpy(r + k, json, (size_t)(first_s - json)), k += (size_t)(first_s - json);
    r[k++] = *first_s, r[k++] = *first_s == '{' ? '}' : ']';
    memcpy(r + k, first_e, (size_t)(second_s - first_e)), k += (size_t)(second_s - first_e);
    r[k++] = *second_s, r[k++] = *second_s == '{' ? '}' : ']';
    memcpy(r + k, second_e, (size_t)(e - second_e)), k += (size_t)(e - second_e);
    r[k] = 0;
    *rest = r;
    *rest_len = k;
    return 1;
}

/* The slow path: the same lists from the cJSON tree. */
static lm_status lists_from_cjson(loader *L, const cJSON *vocab, const cJSON *merges,
                                  big_lists *b) {
    size_t nv = 0, nm = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) nv++;
    cJSON_ArrayForEach(it, merges) nm++;
    b->v = lm_malloc((nv + 1) * sizeof *b->v);
    b->m = lm_malloc((nm + 1) * sizeof *b->m);
    if (!b->v || !b->m) return lm_fail_nomem(L->err, "vocabulary");
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 16777216)
            return lm_fail(L->err, LM_ERR_FORMAT, "%s: model.vocab['%s']: expected an id", L->name,
                           it->string);
        b->v[b->n_v++] = (vent){it->string, (uint32_t)strlen(it->string), it->valueint};
    }
    cJSON_ArrayForEach(it, merges) {
        if (cJSON_IsString(it)) {
            const char *a = it->valuestring;
            const char *sp = strchr(a + (a[0] ? 1 : 0), ' ');
            if (!sp)
                return lm_fail(L->err, LM_ERR_FORMAT, "%s: model.merges[%d]: expected \"a b\"",
                               L->name, (int)b->n_m);
            b->m[b->n_m++] = (ment){a, sp + 1, (uint32_t)(sp - a), (uint32_t)strlen(sp + 1)};
        } else if (cJSON_IsArray(it) && it->child && cJSON_IsString(it->child) && it->child->next &&
                   cJSON_IsString(it->child->next) && !it->child->next->next) {
            const char *x = it->child->valuestring, *y = it->child->next->valuestring;
            b->m[b->n_m++] = (ment){x, y, (uint32_t)strlen(x), (uint32_t)strlen(y)};
        } else {
            return lm_fail(L->err, LM_ERR_FORMAT,
                           "%s: model.merges[%d]: expected \"a b\" or [a, b]", L->name,
                           (int)b->n_m);
        }
    }
    return LM_OK;
}

static lm_status load(loader *L, const cJSON *root, const cJSON *cfg, big_lists *big) {
    tok_tokenizer *t = L->t;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return lm_fail(L->err, LM_ERR_FORMAT, "%s: model: missing or not an object", L->name);
    const char *mt = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (mt && strcmp(mt, "BPE") != 0)
        return lm_fail(L->err, LM_ERR_UNSUPPORTED,
                       "%s: model.type: '%s' is not supported (only BPE)", L->name, mt);
    if (!cJSON_IsObject(vocab))
        return lm_fail(L->err, LM_ERR_FORMAT, "%s: model.vocab: expected an object", L->name);
    const char *csp = jstr(model, "continuing_subword_prefix"),
               *eow = jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return lm_fail(L->err, LM_ERR_UNSUPPORTED,
                       "%s: model.%s: '%s' is not supported (only "
                       "empty)",
                       L->name, csp && *csp ? "continuing_subword_prefix" : "end_of_word_suffix",
                       csp && *csp ? csp : eow);
    if (!cJSON_IsArray(merges))
        return lm_fail(L->err, LM_ERR_FORMAT, "%s: model.merges: expected an array", L->name);
    lm_status st;
    if (!big->v && (st = lists_from_cjson(L, vocab, merges, big))) return st;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *it;
    int64_t max_id = -1;
    size_t bytes = 0;
    for (size_t i = 0; i < big->n_v; i++) {
        max_id = LM_MAX(max_id, (int64_t)big->v[i].id);
        bytes += big->v[i].len + 1;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = jstr(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 16777216 || !content)
            return lm_fail(L->err, LM_ERR_FORMAT, "%s: added_tokens[]: expected id and content",
                           L->name);
        max_id = LM_MAX(max_id, (int64_t)id->valueint);
        bytes += strlen(content) + 1;
    }
    if (max_id < 0) return lm_fail(L->err, LM_ERR_FORMAT, "%s: model.vocab: empty", L->name);
    int32_t n = (int32_t)max_id + 1;
    if (!tok_alloc_vocab(t, n, bytes + (size_t)n, false))
        return lm_fail_nomem(L->err, "vocabulary");
    L->p->lstrip = lm_calloc((size_t)n, 1);
    L->p->rstrip = lm_calloc((size_t)n, 1);
    L->p->normalized = lm_calloc((size_t)n, 1);
    L->p->single_word = lm_calloc((size_t)n, 1);
    L->p->norm_piece = lm_calloc((size_t)n, sizeof(char *));
    L->p->n_vocab = n;
    if (!L->p->lstrip || !L->p->rstrip || !L->p->normalized || !L->p->norm_piece ||
        !L->p->single_word)
        return lm_fail_nomem(L->err, "vocabulary");
    char *arena = t->arena;
    for (int32_t i = 0; i < n; i++) {
        t->pieces[i] = arena + bytes + (size_t)i; /* holes: empty strings */
        arena[bytes + (size_t)i] = 0;
        t->kinds[i] = TOK_KIND_UNUSED;
    }
    char *p = arena;
    for (size_t i = 0; i < big->n_v; i++) {
        const vent *v = &big->v[i];
        memcpy(p, v->s, v->len);
        p[v->len] = 0;
        t->pieces[v->id] = p;
        t->piece_len[v->id] = v->len;
        t->kinds[v->id] = TOK_KIND_NORMAL;
        p += v->len + 1;
    }
    cJSON_ArrayForEach(it, added) {
        int32_t id = cJSON_GetObjectItemCaseSensitive(it, "id")->valueint;
        const char *content = jstr(it, "content");
        size_t l = strlen(content);
        memcpy(p, content, l + 1);
        t->pieces[id] = p;
        t->piece_len[id] = (uint32_t)l;
        p += l + 1;
        bool special = jbool(it, "special", false);
        t->special[id] = special;
        t->kinds[id] = special ? TOK_KIND_CONTROL : TOK_KIND_USER_DEFINED;
        L->p->lstrip[id] = jbool(it, "lstrip", false);
        L->p->rstrip[id] = jbool(it, "rstrip", false);
        L->p->normalized[id] = jbool(it, "normalized", !special);
        L->p->single_word[id] = jbool(it, "single_word", false);
    }
    if (!tok_strmap_build(t)) return lm_fail_nomem(L->err, "vocabulary");
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        t->byte_ids[i] = tok_strmap_get(t, name, 6);
    }
    tok_fill_byte_tables(t);
    t->byte_fallback = jbool(model, "byte_fallback", false);
    for (int i = 0; i < 256; i++)
        if (t->byte_fallback && t->byte_ids[i] >= 0 && t->kinds[t->byte_ids[i]] == TOK_KIND_NORMAL)
            t->kinds[t->byte_ids[i]] = TOK_KIND_BYTE;
    t->byte_fallback = jbool(model, "byte_fallback", false);
    t->fuse_unk = jbool(model, "fuse_unk", false);
    t->ignore_merges = jbool(model, "ignore_merges", false);
    const char *unk = jstr(model, "unk_token");
    t->unk = unk ? tok_find(t, unk) : -1;
    if (t->unk >= 0 && t->kinds[t->unk] == TOK_KIND_NORMAL) t->kinds[t->unk] = TOK_KIND_UNKNOWN;
    /* merges: rank = position */
    if (!tok_mergemap_init(&t->merges, big->n_m)) return lm_fail_nomem(L->err, "merges");
    size_t bad = tok_merges_build(t, big->m, big->n_m);
    if (bad != SIZE_MAX) {
        const ment *m = &big->m[bad];
        return lm_fail(L->err, LM_ERR_FORMAT,
                       "%s: model.merges[%d]: '%.*s' + '%.*s' names a token not in model.vocab",
                       L->name, (int)bad, (int)LM_MIN(m->la, 40), m->a, (int)LM_MIN(m->lb, 40), m->b);
    }
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (x && !cJSON_IsNull(x) && (st = add_norm(L, x, "normalizer"))) return st;
    match_list ml = {0};
    for (int32_t i = 0; i < n; i++) {
        if (!L->p->normalized[i]) continue;
        lm_buf nb = {0};
        bool ok = lm_buf_puts(&nb, t->pieces[i]) && normalize(L->p, &nb, &ml);
        L->p->norm_piece[i] = ok ? lm_buf_take(&nb) : NULL;
        lm_buf_free(&nb);
        if (!L->p->norm_piece[i]) {
            match_list_free(&ml);
            return lm_fail_nomem(L->err, "added tokens");
        }
        L->p->norm_first[(uint8_t)L->p->norm_piece[i][0]] = true;
    }
    match_list_free(&ml);
    x = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (x && !cJSON_IsNull(x) && (st = add_pre(L, x, "pre_tokenizer"))) return st;
    x = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (x && !cJSON_IsNull(x) && (st = add_decoder(L, x))) return st;
    x = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (x && !cJSON_IsNull(x) && (st = add_post(L, x))) return st;
    t->bos = t->eos = -1;
    if (L->p->prefix.n) t->bos = L->p->prefix.ids[0];
    t->add_bos = L->p->prefix.n > 0;
    if (cfg && (st = load_config(L, cfg))) return st;
    if (L->p->has_post) /* the post-processor decides what LM_TOK_ADD_SPECIAL adds */
        t->add_bos = L->p->prefix.n > 0 && L->p->prefix.ids[0] == t->bos;
    t->bos_text = lm_strdup(t->bos >= 0 ? t->pieces[t->bos] : "");
    t->eos_text = lm_strdup(t->eos >= 0 ? t->pieces[t->eos] : "");
    if (!t->bos_text || !t->eos_text) return lm_fail_nomem(L->err, "tokenizer");
    if (!tok_build_match_list(t, true)) return lm_fail_nomem(L->err, "added tokens");
    return LM_OK;
}

/* Pre-tokenizer regexes of llama.cpp's tokenizer.ggml.pre names (from the tokenizer.json files
 * of those model families). */
#define LLAMA3_REGEX                                                                               \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "                     \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"                                                               \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_REGEX                                                                                \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                          \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"                                                               \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

lm_status tok_json_pipe_gguf(tok_tokenizer *t, const char *pre, lm_error *err) {
    loader L = {"gguf", err, t, lm_calloc(1, sizeof(struct tok_json_pipe))};
    if (!L.p) return lm_fail_nomem(err, "tokenizer");
    t->pipe = L.p;
    size_t n = (size_t)t->n_vocab;
    L.p->n_vocab = t->n_vocab;
    L.p->lstrip = lm_calloc(n, 1);
    L.p->rstrip = lm_calloc(n, 1);
    L.p->normalized = lm_calloc(n, 1);
    L.p->single_word = lm_calloc(n, 1);
    L.p->norm_piece = lm_calloc(n, sizeof(char *));
    if (!L.p->lstrip || !L.p->rstrip || !L.p->normalized || !L.p->norm_piece || !L.p->single_word)
        return lm_fail_nomem(err, "tokenizer");
    L.p->byte_level = true;
    const char *rx = GPT2_REGEX;
    if (pre && (strcmp(pre, "llama-bpe") == 0 || strcmp(pre, "llama3") == 0 ||
                strcmp(pre, "llama-v3") == 0 || strcmp(pre, "smaug-bpe") == 0)) {
        rx = LLAMA3_REGEX;
        t->ignore_merges = true; /* Llama 3's tokenizer.json sets it; llama.cpp does too */
    } else if (pre && strcmp(pre, "qwen2") == 0) {
        rx = QWEN2_REGEX;
        /* Qwen2's tokenizer.json normalizes to NFC first; llama.cpp's vectors expect it too */
        cJSON nfc = {0};
        cJSON type = {0};
        type.type = cJSON_String;
        type.string = (char *)"type";
        type.valuestring = (char *)"NFC";
        nfc.type = cJSON_Object;
        nfc.child = &type;
        lm_status st = add_norm(&L, &nfc, "tokenizer.ggml.pre");
        if (st) return st;
    }
    return pre_regex(&L, rx, false, B_ISOLATED, false, "tokenizer.ggml.pre");
}

/* A tokenizer this file built (no trie yet): tok_free without reaching above this layer. */
static void free_loaded(tok_tokenizer *t) {
    if (!t) return;
    tok_json_pipe_free(t->pipe);
    tok_free_vocab(t);
}

lm_status tok_load_json_text(const char *json, size_t len, const char *config_text,
                             size_t config_len, const char *name, tok_tokenizer **out,
                             lm_error *err) {
    *out = NULL;
    if (!name) name = "tokenizer.json";
    cJSON *root = NULL, *cfg = NULL;
    big_lists big = {0};
    char *rest = NULL;
    size_t rest_len = 0;
    int fast = fast_scan(json, len, &big, &rest, &rest_len);
    if (fast < 0) {
        big_lists_free(&big);
        return lm_fail_nomem(err, "tokenizer.json");
    }
    if (fast == 0) big_lists_free(&big);
    lm_status st = lm_json_parse(fast ? rest : json, fast ? rest_len : len, name, &root, err);
    lm_free(rest);
    if (st) {
        big_lists_free(&big);
        return st;
    }
    if (config_text &&
        (st = lm_json_parse(config_text, config_len, "tokenizer_config.json", &cfg, err))) {
        cJSON_Delete(root);
        big_lists_free(&big);
        return st;
    }
    loader L = {name, err, lm_calloc(1, sizeof(tok_tokenizer)),
                lm_calloc(1, sizeof(struct tok_json_pipe))};
    if (!L.t || !L.p) {
        lm_free(L.t);
        lm_free(L.p);
        st = lm_fail_nomem(err, "tokenizer");
    } else {
        L.t->pipe = L.p;
        L.t->model = TOK_MODEL_BPE;
        L.t->unk = L.t->bos = L.t->eos = -1;
        memcpy(L.t->model_name, "bpe", 4);
        st = load(&L, root, cfg, &big);
        if (st)
            free_loaded(L.t);
        else
            *out = L.t;
    }
    big_lists_free(&big);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    return st;
}

lm_status tok_load_json(const char *tokenizer_json, const char *tokenizer_config,
                        tok_tokenizer **out, lm_error *err) {
    *out = NULL;
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    lm_status st = lm_read_text(tokenizer_json, &a, &la, err);
    if (!st && tokenizer_config) st = lm_read_text(tokenizer_config, &b, &lb, err);
    if (!st) st = tok_load_json_text(a, la, b, lb, tokenizer_json, out, err);
    lm_free(a);
    lm_free(b);
    return st;
}

lm_status tok_load_dir(const char *dir, tok_tokenizer **out, lm_error *err) {
    *out = NULL;
    char *tj = lm_path_join(dir, "tokenizer.json"), *tc = lm_path_join(dir, "tokenizer_config.json");
    char *cj = lm_path_join(dir, "chat_template.jinja");
    lm_status st;
    if (!tj || !tc || !cj) st = lm_fail_nomem(err, "path");
    else if (!lm_path_exists(tj)) st = lm_fail(err, LM_ERR_IO, "%s: no tokenizer.json", dir);
    else st = tok_load_json(tj, lm_path_exists(tc) ? tc : NULL, out, err);
    /* newer Hugging Face repositories keep the template in its own file */
    if (!st && !(*out)->chat_template && lm_path_exists(cj)) {
        size_t n;
        st = lm_read_text(cj, &(*out)->chat_template, &n, err);
        if (st) {
            free_loaded(*out);
            *out = NULL;
        }
    }
    lm_free(tj);
    lm_free(tc);
    lm_free(cj);
    return st;
}
