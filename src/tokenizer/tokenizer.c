/* tokenizer/tokenizer.c: vocabularies, the merge engines and decoding: the layer every kind of
 * tokenizer stands on. Owns: the piece -> id and pair -> merge hashes, SentencePiece score merging
 * and BPE rank merging (both with a priority queue), decoding (whole and streaming), accessors.
 * Does not own: loading (tok_gguf.c, tok_json.c), the tokenizer.json pipeline (tok_json.c) or the
 * byte trie (trie.c); it calls none of them. */
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- token vectors ---- */

bool tok_vec_push(tok_vec *v, lm_token id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 32;
        lm_token *p = lm_realloc(v->ids, cap * sizeof *p);
        if (!p) return false;
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return true;
}

bool tok_vec_append(tok_vec *v, const lm_token *ids, size_t n) {
    if (n > v->cap - v->n) {
        size_t cap = v->cap ? v->cap : 32;
        while (cap - v->n < n) {
            if (cap > SIZE_MAX / 2 / sizeof *v->ids) return false;
            cap *= 2;
        }
        lm_token *p = lm_realloc(v->ids, cap * sizeof *p);
        if (!p) return false;
        v->ids = p;
        v->cap = cap;
    }
    if (n) memcpy(v->ids + v->n, ids, n * sizeof *ids);
    v->n += n;
    return true;
}

void tok_vec_free(tok_vec *v) {
    if (!v) return;
    lm_free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

/* ---- hashes ---- */

/* FNV-1a in two steps so a key given in two parts (a merge's left + right) hashes like the
 * joined string; then a final mix for the low bits. */
#define FNV_SEED 1469598103934665603ull
static inline uint64_t fnv_more(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}
static inline uint64_t fnv_end(uint64_t h) {
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

uint64_t tok_hash(const char *s, size_t n) { return fnv_end(fnv_more(FNV_SEED, s, n)); }

/* A slot holds (tag << 32 | id), tag = the hash's high 32 bits, so a probe rejects almost every
 * other key without reading its piece; SLOT_EMPTY marks an empty slot. */
#define SLOT_EMPTY UINT64_MAX
static inline uint64_t slot_of(uint64_t h, int32_t id) { return (h & 0xffffffff00000000ull) | (uint32_t)id; }

#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

bool tok_strmap_build(tok_tokenizer *t) {
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2)
        cap *= 2;
    lm_free(t->map.slots);
    t->map.slots = lm_malloc(cap * sizeof *t->map.slots);
    if (!t->map.slots) return false;
    memset(t->map.slots, 0xff, cap * sizeof *t->map.slots);
    t->map.mask = cap - 1;
    enum { B = 16 };
    uint64_t hs[B];
    for (int32_t base = 0; base < t->n_vocab; base += B) {
        int32_t nb = LM_MIN(B, t->n_vocab - base);
        for (int32_t k = 0; k < nb; k++) {
            hs[k] = tok_hash(t->pieces[base + k], t->piece_len[base + k]);
            PREFETCH(&t->map.slots[hs[k] & t->map.mask]);
        }
        for (int32_t k = 0; k < nb; k++) {
            int32_t id = base + k;
            uint64_t h = hs[k];
            size_t i = h & t->map.mask;
            bool dup = false;
            for (uint64_t v; (v = t->map.slots[i]) != SLOT_EMPTY; i = (i + 1) & t->map.mask) {
                int32_t o = (int32_t)(uint32_t)v;
                if ((v >> 32) == (h >> 32) && t->piece_len[o] == t->piece_len[id] &&
                    memcmp(t->pieces[o], t->pieces[id], t->piece_len[id]) == 0) {
                    dup = true;
                    break;
                }
            }
            if (!dup) t->map.slots[i] = slot_of(h, id);
        }
    }
    return true;
}

/* Looks up the key s1 + s2 (s2 may be empty) whose hash is h. */
static int32_t strmap_get2(const tok_tokenizer *t, uint64_t h, const char *s1, size_t n1, const char *s2,
                           size_t n2) {
    if (!t->map.slots) return -1;
    size_t i = h & t->map.mask;
    for (uint64_t v; (v = t->map.slots[i]) != SLOT_EMPTY; i = (i + 1) & t->map.mask) {
        if ((v >> 32) != (h >> 32)) continue;
        int32_t id = (int32_t)(uint32_t)v;
        const char *p = t->pieces[id];
        if (t->piece_len[id] == n1 + n2 && memcmp(p, s1, n1) == 0 && (!n2 || memcmp(p + n1, s2, n2) == 0))
            return id;
    }
    return -1;
}

int32_t tok_strmap_get(const tok_tokenizer *t, const char *s, size_t n) {
    return strmap_get2(t, tok_hash(s, n), s, n, NULL, 0);
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

bool tok_mergemap_init(tok_mergemap *m, size_t n) {
    size_t cap = 16;
    while (cap * 3 < n * 4)
        cap *= 2; /* load at most 3/4 */
    m->slots = lm_malloc(cap * sizeof *m->slots);
    if (!m->slots) return false;
    for (size_t i = 0; i < cap; i++)
        m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->n = 0;
    return true;
}

void tok_mergemap_put(tok_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = mix64(key) & m->mask;
    while (m->slots[i].key != UINT64_MAX) {
        if (m->slots[i].key == key) return; /* the first (best) rank wins, as in HF */
        i = (i + 1) & m->mask;
    }
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].id = id;
    m->n++;
}

const tok_merge *tok_mergemap_get(const tok_mergemap *m, int32_t a, int32_t b) {
    if (!m->slots) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = mix64(key) & m->mask;
    while (m->slots[i].key != UINT64_MAX) {
        if (m->slots[i].key == key) return &m->slots[i];
        i = (i + 1) & m->mask;
    }
    return NULL;
}

size_t tok_merges_build(tok_tokenizer *t, const tok_merge_text *m, size_t n) {
    /* 280k merges make ~840k lookups and 280k inserts into tables of several MB: each one a
     * cache miss when done in order. In batches, every table line a batch needs is prefetched
     * first (slots, then the pieces the slots name), and a batch's inserts wait until the next
     * batch's lookups are done, so the misses overlap. Inserts stay in rank order. */
    enum { B = 64 };
    uint64_t h[B][3];
    int32_t id[B][3], pend[B][3];
    size_t n_pend = 0, pend_base = 0;
    for (size_t base = 0; base < n; base += B) {
        size_t nb = LM_MIN((size_t)B, n - base);
        for (size_t k = 0; k < nb; k++) {
            const tok_merge_text *x = &m[base + k];
            uint64_t ha = fnv_more(FNV_SEED, x->a, x->la);
            h[k][0] = fnv_end(ha);
            h[k][1] = tok_hash(x->b, x->lb);
            h[k][2] = fnv_end(fnv_more(ha, x->b, x->lb));
            for (int j = 0; j < 3; j++) PREFETCH(&t->map.slots[h[k][j] & t->map.mask]);
        }
        for (size_t k = 0; k < n_pend; k++)
            tok_mergemap_put(&t->merges, pend[k][0], pend[k][1], (int32_t)(pend_base + k), pend[k][2]);
        for (size_t k = 0; k < nb; k++)
            for (int j = 0; j < 3; j++) {
                uint64_t v = t->map.slots[h[k][j] & t->map.mask];
                if (v != SLOT_EMPTY) {
                    int32_t o = (int32_t)(uint32_t)v;
                    PREFETCH(&t->pieces[o]);
                    PREFETCH(&t->piece_len[o]);
                }
            }
        for (size_t k = 0; k < nb; k++)
            for (int j = 0; j < 3; j++) {
                uint64_t v = t->map.slots[h[k][j] & t->map.mask];
                if (v != SLOT_EMPTY) PREFETCH(t->pieces[(int32_t)(uint32_t)v]);
            }
        for (size_t k = 0; k < nb; k++) {
            const tok_merge_text *x = &m[base + k];
            id[k][0] = strmap_get2(t, h[k][0], x->a, x->la, NULL, 0);
            id[k][1] = strmap_get2(t, h[k][1], x->b, x->lb, NULL, 0);
            id[k][2] = strmap_get2(t, h[k][2], x->a, x->la, x->b, x->lb);
            if (id[k][0] < 0 || id[k][1] < 0 || id[k][2] < 0) return base + k;
            uint64_t key = ((uint64_t)(uint32_t)id[k][0] << 32) | (uint32_t)id[k][1];
            PREFETCH(&t->merges.slots[mix64(key) & t->merges.mask]);
        }
        memcpy(pend, id, nb * sizeof id[0]);
        n_pend = nb;
        pend_base = base;
    }
    for (size_t k = 0; k < n_pend; k++)
        tok_mergemap_put(&t->merges, pend[k][0], pend[k][1], (int32_t)(pend_base + k), pend[k][2]);
    return SIZE_MAX;
}

/* ---- vocabulary storage ---- */

bool tok_alloc_vocab(tok_tokenizer *t, int32_t n, size_t arena_bytes, bool with_scores) {
    t->n_vocab = n;
    t->pieces = lm_calloc((size_t)n + 1, sizeof(char *));
    t->piece_len = lm_calloc((size_t)n + 1, sizeof(uint32_t));
    t->kinds = lm_calloc((size_t)n + 1, 1);
    t->special = lm_calloc((size_t)n + 1, 1);
    t->arena = lm_malloc(arena_bytes + 1);
    if (with_scores) t->scores = lm_calloc((size_t)n + 1, sizeof(float));
    return t->pieces && t->piece_len && t->kinds && t->special && t->arena &&
           (!with_scores || t->scores);
}

/* qsort has no context argument in C11; the lengths travel in a side array instead. */
typedef struct match_ent {
    uint32_t len;
    int32_t id;
} match_ent;

static int cmp_match_ent(const void *a, const void *b) {
    const match_ent *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

bool tok_build_match_list(tok_tokenizer *t, bool json) {
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        int k = t->kinds[id];
        bool m = json ? t->special[id] || k == TOK_KIND_USER_DEFINED
                      : k == TOK_KIND_CONTROL || k == TOK_KIND_USER_DEFINED;
        if (m && t->piece_len[id] > 0) n++;
    }
    lm_free(t->match_ids);
    t->match_ids = NULL;
    t->n_match = 0;
    if (!n) return true;
    match_ent *e = lm_malloc(n * sizeof *e);
    t->match_ids = lm_malloc(n * sizeof(int32_t));
    if (!e || !t->match_ids) {
        lm_free(e);
        return false;
    }
    n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        int k = t->kinds[id];
        bool m = json ? t->special[id] || k == TOK_KIND_USER_DEFINED
                      : k == TOK_KIND_CONTROL || k == TOK_KIND_USER_DEFINED;
        if (m && t->piece_len[id] > 0) e[n++] = (match_ent){t->piece_len[id], id};
    }
    qsort(e, n, sizeof *e, cmp_match_ent);
    memset(t->match_first, 0, sizeof t->match_first);
    for (size_t i = 0; i < n; i++) {
        t->match_ids[i] = e[i].id;
        t->match_first[(uint8_t)t->pieces[e[i].id][0]] = true;
    }
    t->n_match = n;
    lm_free(e);
    return true;
}

/* ---- priority queue shared by both merge engines ---- */

typedef struct pq_item {
    double prio;  /* smaller first: -score (SPM) or rank (BPE) */
    int32_t left; /* symbol index; ties go to the leftmost */
    int32_t right;
    int32_t size; /* SPM: byte length of the merged pair */
    int32_t a, b; /* BPE: ids of the pair */
    int32_t id;   /* BPE: merged id */
} pq_item;

typedef struct pq {
    pq_item *v;
    size_t n, cap;
} pq;

static bool pq_less(const pq_item *x, const pq_item *y) {
    if (x->prio != y->prio) return x->prio < y->prio;
    return x->left < y->left;
}

static bool pq_push(pq *q, pq_item it) {
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        pq_item *p = lm_realloc(q->v, cap * sizeof *p);
        if (!p) return false;
        q->v = p;
        q->cap = cap;
    }
    size_t i = q->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pq_less(&it, &q->v[parent])) break;
        q->v[i] = q->v[parent];
        i = parent;
    }
    q->v[i] = it;
    return true;
}

static pq_item pq_pop(pq *q) {
    pq_item top = q->v[0], last = q->v[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && pq_less(&q->v[c + 1], &q->v[c])) c++;
        if (!pq_less(&q->v[c], &last)) break;
        q->v[i] = q->v[c];
        i = c;
    }
    if (q->n) q->v[i] = last;
    return top;
}

typedef struct sym {
    int32_t start, len; /* bytes in the text; len 0: merged away */
    int32_t prev, next;
    int32_t id;
} sym;

/* ---- SentencePiece (score) merging ---- */

static bool spm_try_pair(const tok_tokenizer *t, const char *s, const sym *y, int32_t l, int32_t r,
                         pq *q) {
    if (l < 0 || r < 0) return true;
    int32_t size = y[l].len + y[r].len;
    int32_t id = tok_strmap_get(t, s + y[l].start, (size_t)size);
    if (id < 0) return true;
    pq_item it = {.prio = -(double)t->scores[id], .left = l, .right = r, .size = size};
    return pq_push(q, it);
}

static bool emit_bytes(const tok_tokenizer *t, const char *s, size_t n, tok_vec *out) {
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_ids[(uint8_t)s[i]];
        if (id < 0) id = t->unk;
        if (id >= 0 && !tok_vec_push(out, id)) return false;
    }
    return true;
}

bool tok_spm_encode_span(const tok_tokenizer *t, const char *s, size_t n, tok_vec *out) {
    if (n == 0) return true;
    sym *y = lm_malloc(n * sizeof *y);
    pq q = {0};
    bool ok = y != NULL;
    int32_t ns = 0;
    for (size_t i = 0; ok && i < n;) {
        int l = lm_utf8_seq_len((unsigned char)s[i]);
        if (l == 0) l = 1;
        if ((size_t)l > n - i) l = (int)(n - i);
        y[ns] = (sym){(int32_t)i, l, ns - 1, ns + 1, -1};
        ns++;
        i += (size_t)l;
    }
    if (ok) y[ns - 1].next = -1;
    for (int32_t i = 0; ok && i + 1 < ns; i++)
        ok = spm_try_pair(t, s, y, i, i + 1, &q);
    while (ok && q.n) {
        pq_item it = pq_pop(&q);
        sym *l = &y[it.left], *r = &y[it.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != it.size) continue;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) y[r->next].prev = it.left;
        ok = spm_try_pair(t, s, y, l->prev, it.left, &q) &&
             spm_try_pair(t, s, y, it.left, l->next, &q);
    }
    for (int32_t i = 0; ok && i >= 0 && ns > 0; i = y[i].next) {
        int32_t id = tok_strmap_get(t, s + y[i].start, (size_t)y[i].len);
        if (id >= 0)
            ok = tok_vec_push(out, id);
        else
            ok = emit_bytes(t, s + y[i].start, (size_t)y[i].len, out);
    }
    lm_free(y);
    lm_free(q.v);
    return ok;
}

/* ---- BPE (rank) merging ---- */

/* GPT-2 bytes_to_unicode (a format fact of byte-level BPE): printable bytes map to themselves,
 * the other 68 to 256, 257, ... in byte order. */
static bool byte_kept(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

void tok_fill_byte_tables(tok_tokenizer *t) {
    int k = 0;
    for (int i = 0; i < 324; i++)
        t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = byte_kept(b) ? (uint32_t)b : (uint32_t)(256 + k++);
        t->byte_cp[b] = cp;
        t->cp_byte[cp] = (int16_t)b;
        char enc[4];
        int l = lm_utf8_encode(cp, enc);
        t->bl_ids[b] = tok_strmap_get(t, enc, (size_t)l);
    }
}

static bool bpe_try_pair(const tok_tokenizer *t, const sym *y, int32_t l, int32_t r, pq *q) {
    if (l < 0 || r < 0) return true;
    const tok_merge *m = tok_mergemap_get(&t->merges, y[l].id, y[r].id);
    if (!m) return true;
    pq_item it = {.prio = m->rank, .left = l, .right = r, .a = y[l].id, .b = y[r].id, .id = m->id};
    return pq_push(q, it);
}

bool tok_bpe_encode_word(const tok_tokenizer *t, const char *s, size_t n, bool byte_level,
                         tok_vec *out) {
    if (n == 0) return true;
    sym *y = NULL;
    pq q = {0};
    bool ok = true;
    char *conv = NULL;
    const char *s_in = s;
    size_t n_in = n;
    if (byte_level) {
        conv = lm_malloc(n * 2 + 1);
        if (!conv) return false;
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            m += (size_t)lm_utf8_encode(t->byte_cp[(uint8_t)s[i]], conv + m);
        s = conv;
        n = m;
    }
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(t, s, n);
        if (id >= 0) {
            lm_free(conv);
            return tok_vec_push(out, id);
        }
    }
    y = lm_malloc((n * 4 + 1) * sizeof *y); /* byte fallback: up to 4 symbols per char */
    if (!y) {
        lm_free(conv);
        return false;
    }
    int32_t ns = 0;
    /* byte-level: one symbol per input byte, its id from the table (every real vocabulary has
     * all 256; otherwise the general loop below looks each character up) */
    bool direct = byte_level;
    for (size_t i = 0; direct && i < n_in; i++)
        direct = t->bl_ids[(uint8_t)s_in[i]] >= 0;
    if (direct) {
        for (size_t i = 0; i < n_in; i++)
            y[ns++] = (sym){(int32_t)i, 1, 0, 0, t->bl_ids[(uint8_t)s_in[i]]};
        n = 0; /* skips the general loop */
    }
    for (size_t i = 0; i < n;) {
        int l = lm_utf8_seq_len((unsigned char)s[i]);
        if (l == 0) l = 1;
        if ((size_t)l > n - i) l = (int)(n - i);
        int32_t id = tok_strmap_get(t, s + i, (size_t)l);
        if (id >= 0) {
            y[ns++] = (sym){(int32_t)i, l, 0, 0, id};
        } else {
            bool all = t->byte_fallback;
            for (int k = 0; all && k < l; k++)
                all = t->byte_ids[(uint8_t)s[i + k]] >= 0;
            if (all) {
                for (int k = 0; k < l; k++)
                    y[ns++] = (sym){(int32_t)(i + k), 1, 0, 0, t->byte_ids[(uint8_t)s[i + k]]};
            } else if (t->unk >= 0) {
                if (t->fuse_unk && ns > 0 && y[ns - 1].id == t->unk)
                    y[ns - 1].len += l;
                else
                    y[ns++] = (sym){(int32_t)i, l, 0, 0, t->unk};
            }
        }
        i += (size_t)l;
    }
    for (int32_t i = 0; i < ns; i++) {
        y[i].prev = i - 1;
        y[i].next = i + 1 < ns ? i + 1 : -1;
    }
    for (int32_t i = 0; ok && i + 1 < ns; i++)
        ok = bpe_try_pair(t, y, i, i + 1, &q);
    while (ok && q.n) {
        pq_item it = pq_pop(&q);
        sym *l = &y[it.left];
        if (l->len == 0 || l->id != it.a || l->next != it.right) continue;
        sym *r = &y[it.right];
        if (r->len == 0 || r->id != it.b) continue;
        l->id = it.id;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) y[r->next].prev = it.left;
        ok = bpe_try_pair(t, y, l->prev, it.left, &q) && bpe_try_pair(t, y, it.left, l->next, &q);
    }
    for (int32_t i = 0; ok && ns > 0 && i >= 0; i = y[i].next)
        ok = tok_vec_push(out, y[i].id);
    lm_free(y);
    lm_free(q.v);
    lm_free(conv);
    return ok;
}

void tok_free_vocab(tok_tokenizer *t) {
    if (!t) return;
    lm_free(t->pieces);
    lm_free(t->arena);
    lm_free(t->piece_len);
    lm_free(t->scores);
    lm_free(t->kinds);
    lm_free(t->special);
    lm_free(t->map.slots);
    lm_free(t->merges.slots);
    lm_free(t->bos_text);
    lm_free(t->eos_text);
    lm_free(t->chat_template);
    for (size_t i = 0; i < t->n_named_templates; i++) {
        lm_free(t->template_names[i]);
        lm_free(t->template_texts[i]);
    }
    lm_free(t->template_names);
    lm_free(t->template_texts);
    lm_free(t->match_ids);
    lm_free(t);
}

/* ---- UTF-8 ---- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF), or 0 with *bad set to the bytes one U+FFFD replaces (the maximal subpart, as
 * Python and WHATWG decoders do). */
size_t tok_utf8_seq_ok(const unsigned char *s, size_t n, size_t *bad) {
    unsigned char c = s[0];
    *bad = 1;
    if (c < 0x80) return 1;
    size_t l;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        l = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        l = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        l = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < 2 || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < l; i++) {
        if (i >= n || s[i] < 0x80 || s[i] > 0xBF) {
            *bad = i;
            return 0;
        }
    }
    return l;
}

/* Appends s with every ill-formed sequence replaced by U+FFFD, as HF's from_utf8_lossy. */
static bool append_lossy(lm_buf *out, const char *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        size_t bad, l = tok_utf8_seq_ok((const unsigned char *)s + i, n - i, &bad);
        if (l) {
            i += l;
            continue;
        }
        if (!lm_buf_append(out, s + run, i - run) || !lm_buf_append(out, "\xef\xbf\xbd", 3))
            return false;
        i += bad;
        run = i;
    }
    return lm_buf_append(out, s + run, n - run);
}

/* ---- decoding ---- */

static bool is_skipped(const tok_tokenizer *t, lm_token id, bool skip_special) {
    return skip_special && (t->special[id] || t->kinds[id] == TOK_KIND_CONTROL);
}

/* Appends the text of one token; *first says whether nothing was decoded before it. */
static bool decode_one(const tok_tokenizer *t, lm_token id, bool *first, lm_buf *out) {
    const char *p = t->pieces[id];
    size_t n = t->piece_len[id];
    size_t start = out->len;
    int k = t->kinds[id];
    if (t->special[id] || k == TOK_KIND_CONTROL || k == TOK_KIND_USER_DEFINED ||
        k == TOK_KIND_UNKNOWN) {
        if (!lm_buf_append(out, p, n)) return false;
    } else if (k == TOK_KIND_BYTE ||
               (t->dec.byte_fallback && n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' &&
                p[5] == '>' && t->byte_ids[strtol(p + 3, NULL, 16) & 255] == id)) {
        char c = (char)strtol(p + 3, NULL, 16);
        if (!lm_buf_putc(out, c)) return false;
    } else if (t->dec.byte_level) {
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            int l = lm_utf8_decode(p + i, n - i, &cp);
            int b = cp < 324 ? t->cp_byte[cp] : -1;
            if (b >= 0) {
                if (!lm_buf_putc(out, (char)b)) return false;
            } else if (!lm_buf_append(out, p + i, (size_t)l)) {
                return false;
            }
            i += (size_t)l;
        }
    } else {
        size_t sl = strlen(t->dec.space_char);
        for (size_t i = 0; i < n;) {
            if (sl && n - i >= sl && memcmp(p + i, t->dec.space_char, sl) == 0) {
                if (!lm_buf_putc(out, ' ')) return false;
                i += sl;
            } else {
                if (!lm_buf_putc(out, p[i])) return false;
                i++;
            }
        }
    }
    if (*first && t->dec.strip_first > 0) {
        size_t k2 = 0;
        while (k2 < (size_t)t->dec.strip_first && start + k2 < out->len &&
               out->data[start + k2] == ' ')
            k2++;
        if (k2) {
            memmove(out->data + start, out->data + start + k2, out->len - start - k2 + 1);
            out->len -= k2;
        }
    }
    *first = false;
    return true;
}

lm_status tok_decode(const tok_tokenizer *t, const lm_token *ids, size_t n, bool skip_special,
                     lm_buf *out, lm_error *err) {
    bool first = true;
    lm_buf raw = {0};
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) {
            lm_buf_free(&raw);
            return lm_fail(err, LM_ERR_MISUSE, "tok_decode: id %d out of range [0, %d)",
                           (int)ids[i], (int)t->n_vocab);
        }
        if (is_skipped(t, ids[i], skip_special)) continue;
        if (!decode_one(t, ids[i], &first, &raw)) {
            lm_buf_free(&raw);
            return lm_fail_nomem(err, "decoded text");
        }
    }
    /* byte tokens may spell ill-formed UTF-8: the text handed out is always well-formed */
    bool ok = append_lossy(out, raw.data ? raw.data : "", raw.len);
    lm_buf_free(&raw);
    return ok ? LM_OK : lm_fail_nomem(err, "decoded text");
}

/* ---- streaming decode ---- */

struct tok_stream {
    const tok_tokenizer *t;
    bool skip_special, first;
    lm_buf pending; /* decoded bytes not yet handed out (an incomplete UTF-8 tail) */
};

tok_stream *tok_stream_new(const tok_tokenizer *t, bool skip_special) {
    tok_stream *s = lm_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = t;
    s->skip_special = skip_special;
    s->first = true;
    return s;
}

lm_status tok_stream_push(tok_stream *s, lm_token id, lm_buf *out) {
    const tok_tokenizer *t = s->t;
    if (id < 0 || id >= t->n_vocab) return LM_ERR_MISUSE;
    if (is_skipped(t, id, s->skip_special)) return LM_OK;
    if (!decode_one(t, id, &s->first, &s->pending)) return LM_ERR_NOMEM;
    size_t ok = lm_utf8_complete_len(s->pending.data, s->pending.len);
    if (ok == 0) return LM_OK;
    if (!append_lossy(out, s->pending.data, ok)) return LM_ERR_NOMEM;
    memmove(s->pending.data, s->pending.data + ok, s->pending.len - ok + 1);
    s->pending.len -= ok;
    return LM_OK;
}

lm_status tok_stream_finish(tok_stream *s, lm_buf *out) {
    if (s->pending.len && !append_lossy(out, s->pending.data, s->pending.len)) return LM_ERR_NOMEM;
    lm_buf_reset(&s->pending);
    return LM_OK;
}

void tok_stream_free(tok_stream *s) {
    if (!s) return;
    lm_buf_free(&s->pending);
    lm_free(s);
}

/* ---- accessors ---- */

int32_t tok_n_vocab(const tok_tokenizer *t) {
    return t->n_vocab;
}

const char *tok_piece(const tok_tokenizer *t, lm_token id) {
    return id >= 0 && id < t->n_vocab ? t->pieces[id] : NULL;
}

lm_token tok_find(const tok_tokenizer *t, const char *piece) {
    return tok_strmap_get(t, piece, strlen(piece));
}

int tok_kind(const tok_tokenizer *t, lm_token id) {
    return id >= 0 && id < t->n_vocab ? t->kinds[id] : TOK_KIND_UNDEFINED;
}

bool tok_is_special(const tok_tokenizer *t, lm_token id) {
    return id >= 0 && id < t->n_vocab && (t->special[id] || t->kinds[id] == TOK_KIND_CONTROL);
}

lm_token tok_bos(const tok_tokenizer *t) {
    return t->bos;
}
lm_token tok_eos(const tok_tokenizer *t) {
    return t->eos;
}
const char *tok_bos_text(const tok_tokenizer *t) {
    return t->bos_text ? t->bos_text : "";
}
const char *tok_eos_text(const tok_tokenizer *t) {
    return t->eos_text ? t->eos_text : "";
}
bool tok_adds_bos(const tok_tokenizer *t) {
    return t->add_bos && t->bos >= 0;
}

const char *tok_chat_template(const tok_tokenizer *t, const char *name) {
    if (!name || strcmp(name, "default") == 0) {
        if (t->chat_template) return t->chat_template;
    }
    for (size_t i = 0; i < t->n_named_templates; i++)
        if (strcmp(t->template_names[i], name ? name : "default") == 0) return t->template_texts[i];
    return NULL;
}

bool tok_token_bytes(const tok_tokenizer *t, lm_token id, lm_buf *out) {
    if (id < 0 || id >= t->n_vocab) return false;
    bool first = false; /* mid-text: nothing is stripped */
    return decode_one(t, id, &first, out);
}

const char *tok_model_name(const tok_tokenizer *t) {
    return t->model_name;
}
