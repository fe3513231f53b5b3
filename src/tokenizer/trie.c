/* tokenizer/trie.c: the vocabulary's text tokens as a byte trie (tok_get_trie).
 * Owns: deciding which tokens are text, their bytes, and the preorder trie over them.
 * Does not own: what a grammar does with it (sample/grammar.c). */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>

typedef struct entry {
    uint32_t off;
    uint16_t len;
    int32_t id;
} entry;

static int cmp_entry_with(const uint8_t *bytes, const entry *a, const entry *b) {
    size_t n = LM_MIN(a->len, b->len);
    int c = memcmp(bytes + a->off, bytes + b->off, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Merge sort with an explicit context instead of qsort, whose comparator cannot take one. */
static void sort_entries(entry *v, entry *tmp, size_t n, const uint8_t *bytes) {
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = LM_MIN(lo + w, n), hi = LM_MIN(lo + 2 * w, n), i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = cmp_entry_with(bytes, &v[j], &v[i]) < 0 ? v[j++] : v[i++];
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, n * sizeof *v);
    }
}

static bool is_text_token(const tok_tokenizer *t, int32_t id) {
    int k = t->kinds[id];
    return !t->special[id] && k != TOK_KIND_CONTROL && k != TOK_KIND_UNKNOWN &&
           k != TOK_KIND_UNUSED;
}

void tok_trie_free(tok_trie *tr) {
    if (!tr) return;
    lm_free((void *)tr->byte);
    lm_free((void *)tr->depth);
    lm_free((void *)tr->skip);
    lm_free((void *)tr->tok);
    lm_free((void *)tr->next);
    lm_free((void *)tr->off);
    lm_free((void *)tr->len);
    lm_free((void *)tr->bytes);
    lm_free(tr);
}

static tok_trie *build(const tok_tokenizer *t) {
    int32_t nv = t->n_vocab;
    size_t n = nv > 0 ? (size_t)nv : 0;
    tok_trie *tr = lm_calloc(1, sizeof *tr);
    lm_buf arena = {0};
    entry *ents = NULL, *tmp = NULL;
    uint32_t *off = NULL;
    uint16_t *len = NULL;
    int32_t *next = NULL;
    uint8_t *nbyte = NULL;
    uint16_t *ndepth = NULL;
    uint32_t *nskip = NULL, *path = NULL;
    int32_t *ntok = NULL;
    if (!tr) return NULL;
    off = lm_calloc(n ? n : 1, sizeof *off);
    len = lm_calloc(n ? n : 1, sizeof *len);
    next = lm_malloc((n ? n : 1) * sizeof *next);
    ents = lm_malloc((n ? n : 1) * sizeof *ents);
    tmp = lm_malloc((n ? n : 1) * sizeof *tmp);
    if (!off || !len || !next || !ents || !tmp) goto fail;
    size_t n_ent = 0;
    for (int32_t id = 0; id < nv; id++) {
        next[id] = -1;
        if (!is_text_token(t, id)) continue;
        size_t at = arena.len;
        if (!tok_token_bytes(t, id, &arena)) goto fail;
        size_t l = arena.len - at;
        if (l == 0 || l > UINT16_MAX || at > UINT32_MAX) {
            arena.len = at; /* left out: not text, or too long to walk */
            continue;
        }
        off[id] = (uint32_t)at;
        len[id] = (uint16_t)l;
        ents[n_ent++] = (entry){(uint32_t)at, (uint16_t)l, id};
    }
    if (arena.oom) goto fail;
    const uint8_t *bytes = (const uint8_t *)(arena.data ? arena.data : "");
    sort_entries(ents, tmp, n_ent, bytes);
    /* At most one node per byte plus the root. */
    size_t cap = arena.len + 1;
    nbyte = lm_malloc(cap);
    ndepth = lm_malloc(cap * sizeof *ndepth);
    nskip = lm_malloc(cap * sizeof *nskip);
    ntok = lm_malloc(cap * sizeof *ntok);
    path = lm_malloc((UINT16_MAX + 2) * sizeof *path);
    if (!nbyte || !ndepth || !nskip || !ntok || !path) goto fail;
    uint32_t nn = 1;
    nbyte[0] = 0;
    ndepth[0] = 0;
    ntok[0] = -1;
    path[0] = 0;
    size_t cur = 0; /* depth of the deepest open node */
    const entry *prev = NULL;
    for (size_t e = 0; e < n_ent; e++) {
        const entry *en = &ents[e];
        const uint8_t *s = bytes + en->off;
        size_t lcp = 0;
        if (prev) {
            size_t m = LM_MIN(prev->len, en->len);
            const uint8_t *ps = bytes + prev->off;
            while (lcp < m && ps[lcp] == s[lcp]) lcp++;
        }
        while (cur > lcp) nskip[path[cur--]] = nn; /* close the nodes below the shared prefix */
        for (size_t d = lcp; d < en->len; d++) {
            nbyte[nn] = s[d];
            ndepth[nn] = (uint16_t)(d + 1);
            ntok[nn] = -1;
            path[++cur] = nn++;
        }
        uint32_t node = path[en->len];
        if (ntok[node] < 0) {
            ntok[node] = en->id;
        } else { /* same bytes as an earlier token (e.g. "A" and <0x41>): chain it */
            int32_t k = ntok[node];
            while (next[k] >= 0) k = next[k];
            next[k] = en->id;
        }
        prev = en;
    }
    while (cur > 0) nskip[path[cur--]] = nn;
    nskip[0] = nn;
    lm_free(path);
    lm_free(tmp);
    tr->n_vocab = nv;
    tr->n_nodes = nn;
    for (size_t e = 0; e < n_ent; e++) tr->max_depth = LM_MAX(tr->max_depth, ents[e].len);
    tr->byte = nbyte;
    tr->depth = ndepth;
    tr->skip = nskip;
    tr->tok = ntok;
    tr->next = next;
    tr->off = off;
    tr->len = len;
    lm_free(ents);
    tr->bytes = (const uint8_t *)lm_buf_take(&arena);
    if (!tr->bytes) {
        tok_trie_free(tr);
        return NULL;
    }
    return tr;
fail:
    lm_buf_free(&arena);
    lm_free(ents);
    lm_free(tmp);
    lm_free(off);
    lm_free(len);
    lm_free(next);
    lm_free(nbyte);
    lm_free(ndepth);
    lm_free(nskip);
    lm_free(ntok);
    lm_free(path);
    lm_free(tr);
    return NULL;
}

const tok_trie *tok_get_trie(const tok_tokenizer *tc) {
    /* The trie is a cache of facts about an immutable vocabulary, so building it behind a
     * const handle is safe; the pointer is only ever published once. */
    tok_tokenizer *t = (tok_tokenizer *)tc;
    tok_trie *have = atomic_load(&t->trie);
    if (have) return have;
    tok_trie *mine = build(t);
    if (!mine) return NULL;
    tok_trie *expected = NULL;
    if (atomic_compare_exchange_strong(&t->trie, &expected, mine)) return mine;
    tok_trie_free(mine); /* another thread won */
    return expected;
}
