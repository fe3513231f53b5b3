/* sample/matcher.c: runs a compiled grammar against a vocabulary, one token at a time.
 * Owns: the grammar's state (a set of parse stacks), the tokens that may come next (a mask
 * computed by walking the vocabulary's byte trie against the state), accepting a token, and the
 * caches that make both cheap: stacks and states are interned, a state's transitions by byte
 * are remembered, and so is its mask.
 * Does not own: the grammar's syntax (sample/grammar.c) or sampling (sample/sample.c).
 *
 * The state is a set of stacks, as in an Earley/GLR-style recogniser for a grammar without left
 * recursion (llama.cpp's grammar engine works the same way). A stack is a linked list of frames
 * (position in the element array, parent frame); the top frame's position is a terminal, and
 * the empty stack (frame 0) means the output may end here. A rule reference in tail position
 * reuses the caller's frame, so right recursion (x* and friends) keeps stacks flat. Frames and
 * stack sets are hash-consed, so one state has one id and its transitions and mask are
 * computed once: inside a long JSON string every step lands in the same state. */
#include "sample/grammar_internal.h"

#include <stdlib.h>

enum {
    MAX_STACK_DEPTH = 2048,   /* frames in one stack: deeper nesting is not followed */
    MAX_STACKS = 4096,        /* stacks in one state (ambiguous grammars): the rest dropped */
    SMALL = 12,               /* transitions kept inline before a state gets a 256 table */
    FRAME_LIMIT = 1u << 21,   /* caches are rebuilt (from the current state) past these */
    STATE_LIMIT = 1u << 18,
};
#define MASK_LIMIT ((size_t)128 << 20) /* bytes of cached masks */

typedef struct mstate {
    uint32_t off, n;        /* frame ids in pool, sorted */
    uint8_t nk;
    bool accepting;         /* holds the empty stack */
    bool tok_tops;          /* some top is a token element */
    uint64_t first[4];      /* bytes some top takes: any other byte leads to the dead state */
    uint8_t kb[SMALL];      /* inline transitions: byte -> state */
    int32_t kv[SMALL];
    int32_t *dense;         /* 256 transitions, -1 unknown; NULL until SMALL is outgrown */
    uint64_t *mask;         /* allowed tokens, NULL until computed */
    uint32_t n_allowed;
} mstate;

struct smp_matcher {
    const smp_grammar *g;
    const tok_trie *trie;   /* NULL without a tokenizer (bytes only) */
    size_t n_vocab;         /* ids the mask covers (the sampler's vocabulary) */
    size_t n_tok;           /* ids the tokenizer knows (<= n_vocab counts for token elements) */
    size_t words;
    int32_t *ref_id;        /* token id of each reference */
    uint64_t *eog_bits;     /* (words) end-of-generation ids */
    /* frames */
    uint32_t *f_pos, *f_parent, *f_mark;
    uint16_t *f_depth;
    uint32_t n_frames, cap_frames;
    uint32_t *f_hash;       /* frame id + 1, 0 empty */
    uint32_t f_hash_cap;
    /* states; state 0 is the dead one (no stack) */
    mstate *st;
    uint32_t n_states, cap_states;
    uint32_t *pool;
    size_t n_pool, cap_pool;
    uint32_t *s_hash;
    uint32_t s_hash_cap;
    /* scratch */
    uint32_t gen;
    uint32_t *work;         /* (pos, parent) pairs */
    size_t n_work, cap_work;
    uint32_t *outv;
    size_t n_out, cap_out;
    int32_t *walk;          /* state per trie depth */
    size_t mask_bytes;
    int32_t cur;
    bool done;              /* an end-of-generation token was accepted */
    bool failed;            /* out of memory: the state is no longer trustworthy */
};

#define FAIL (-1)
#define TOO_DEEP (-2)

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static bool grow(void **v, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *nv = lm_realloc(*v, nc * elem);
    if (!nv) return false;
    *v = nv;
    *cap = nc;
    return true;
}

/* ---- frames ---- */

static bool frame_hash_rebuild(smp_matcher *m, uint32_t cap) {
    uint32_t *h = lm_calloc(cap, sizeof *h);
    if (!h) return false;
    for (uint32_t i = 1; i < m->n_frames; i++) {
        size_t k = mix(((uint64_t)m->f_pos[i] << 32) | m->f_parent[i]) & (cap - 1);
        while (h[k]) k = (k + 1) & (cap - 1);
        h[k] = i + 1;
    }
    lm_free(m->f_hash);
    m->f_hash = h;
    m->f_hash_cap = cap;
    return true;
}

/* Id of frame (pos, parent): FAIL on NOMEM, TOO_DEEP past MAX_STACK_DEPTH. */
static int32_t frame(smp_matcher *m, uint32_t pos, uint32_t parent) {
    uint64_t key = ((uint64_t)pos << 32) | parent;
    size_t mask = m->f_hash_cap - 1;
    size_t k = mix(key) & mask;
    while (m->f_hash[k]) {
        uint32_t id = m->f_hash[k] - 1;
        if (m->f_pos[id] == pos && m->f_parent[id] == parent) return (int32_t)id;
        k = (k + 1) & mask;
    }
    uint32_t depth = (uint32_t)m->f_depth[parent] + 1;
    if (depth > MAX_STACK_DEPTH) return TOO_DEEP;
    if (m->n_frames == m->cap_frames) {
        size_t c = m->cap_frames * 2;
        uint32_t *a = lm_realloc(m->f_pos, c * sizeof *a);
        if (!a) return FAIL;
        m->f_pos = a;
        a = lm_realloc(m->f_parent, c * sizeof *a);
        if (!a) return FAIL;
        m->f_parent = a;
        a = lm_realloc(m->f_mark, c * sizeof *a);
        if (!a) return FAIL;
        m->f_mark = a;
        uint16_t *d = lm_realloc(m->f_depth, c * sizeof *d);
        if (!d) return FAIL;
        m->f_depth = d;
        m->cap_frames = (uint32_t)c;
    }
    uint32_t id = m->n_frames++;
    m->f_pos[id] = pos;
    m->f_parent[id] = parent;
    m->f_mark[id] = 0;
    m->f_depth[id] = (uint16_t)depth;
    if ((size_t)m->n_frames * 2 > m->f_hash_cap) {
        if (!frame_hash_rebuild(m, m->f_hash_cap * 2)) {
            m->n_frames--;
            return FAIL;
        }
    } else {
        m->f_hash[k] = id + 1;
    }
    return (int32_t)id;
}

/* ---- states ---- */

static uint64_t list_hash(const uint32_t *v, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; i++) h = mix(h ^ v[i]);
    return h;
}

static bool state_hash_rebuild(smp_matcher *m, uint32_t cap) {
    uint32_t *h = lm_calloc(cap, sizeof *h);
    if (!h) return false;
    for (uint32_t i = 0; i < m->n_states; i++) {
        size_t k = list_hash(m->pool + m->st[i].off, m->st[i].n) & (cap - 1);
        while (h[k]) k = (k + 1) & (cap - 1);
        h[k] = i + 1;
    }
    lm_free(m->s_hash);
    m->s_hash = h;
    m->s_hash_cap = cap;
    return true;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The state holding the frames v[0..n) (sorted here, duplicates allowed). FAIL on NOMEM. */
static int32_t state_of(smp_matcher *m, uint32_t *v, size_t n) {
    if (n > 16) {
        qsort(v, n, sizeof *v, cmp_u32);
    } else {
        for (size_t i = 1; i < n; i++) {
            uint32_t x = v[i];
            size_t j = i;
            while (j > 0 && v[j - 1] > x) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || v[k - 1] != v[i]) v[k++] = v[i];
    n = LM_MIN(k, (size_t)MAX_STACKS);
    uint64_t h = list_hash(v, n);
    size_t mask = m->s_hash_cap - 1, slot = h & mask;
    while (m->s_hash[slot]) {
        const mstate *s = &m->st[m->s_hash[slot] - 1];
        if (s->n == n && (n == 0 || memcmp(m->pool + s->off, v, n * sizeof *v) == 0)) return (int32_t)(m->s_hash[slot] - 1);
        slot = (slot + 1) & mask;
    }
    size_t cs = m->cap_states;
    if (!grow((void **)&m->st, &cs, (size_t)m->n_states + 1, sizeof *m->st)) return FAIL;
    m->cap_states = (uint32_t)cs;
    if (!grow((void **)&m->pool, &m->cap_pool, m->n_pool + n + 1, sizeof *m->pool)) return FAIL;
    uint32_t id = m->n_states;
    mstate *s = &m->st[id];
    memset(s, 0, sizeof *s);
    s->off = (uint32_t)m->n_pool;
    s->n = (uint32_t)n;
    if (n) memcpy(m->pool + m->n_pool, v, n * sizeof *v);
    m->n_pool += n;
    s->accepting = n > 0 && v[0] == 0;
    for (size_t i = 0; i < n; i++) {
        if (!v[i]) continue;
        uint32_t p = m->f_pos[v[i]];
        if (m->g->kind[p] != GE_BYTES) {
            s->tok_tops = true;
            continue;
        }
        const uint64_t *set = m->g->sets[m->g->arg[p]];
        for (int w = 0; w < 4; w++) s->first[w] |= set[w];
    }
    m->n_states++;
    if ((size_t)m->n_states * 2 > m->s_hash_cap) {
        if (!state_hash_rebuild(m, m->s_hash_cap * 2)) {
            m->n_states--;
            m->n_pool -= n;
            return FAIL;
        }
    } else {
        m->s_hash[slot] = id + 1;
    }
    return (int32_t)id;
}

/* ---- expansion ---- */

static bool push_work(smp_matcher *m, uint32_t pos, uint32_t parent) {
    if (!grow((void **)&m->work, &m->cap_work, m->n_work + 2, sizeof *m->work)) return false;
    m->work[m->n_work++] = pos;
    m->work[m->n_work++] = parent;
    return true;
}

static bool push_out(smp_matcher *m, uint32_t id) {
    if (!grow((void **)&m->outv, &m->cap_out, m->n_out + 1, sizeof *m->outv)) return false;
    m->outv[m->n_out++] = id;
    return true;
}

/* Adds to outv every stack whose top is a terminal (or the empty stack) reachable from frame
 * (pos, parent) without reading input. Frames already seen in this generation are skipped. */
static bool expand(smp_matcher *m, uint32_t pos, uint32_t parent) {
    const smp_grammar *g = m->g;
    if (!push_work(m, pos, parent)) return false;
    while (m->n_work) {
        uint32_t par = m->work[--m->n_work];
        uint32_t p = m->work[--m->n_work];
        int32_t id = frame(m, p, par);
        if (id == TOO_DEEP) continue;
        if (id < 0) return false;
        if (m->f_mark[id] == m->gen) continue;
        m->f_mark[id] = m->gen;
        switch (g->kind[p]) {
        case GE_END:
            if (par == 0) {
                if (m->f_mark[0] != m->gen) {
                    m->f_mark[0] = m->gen;
                    if (!push_out(m, 0)) return false;
                }
            } else if (!push_work(m, m->f_pos[par], m->f_parent[par])) {
                return false;
            }
            break;
        case GE_RULE: {
            uint32_t r = (uint32_t)g->arg[p], next = p + 1, cont = par;
            if (g->kind[next] != GE_END) { /* not a tail call: come back to next */
                int32_t c = frame(m, next, par);
                if (c == TOO_DEEP) break;
                if (c < 0) return false;
                cont = (uint32_t)c;
            }
            for (uint32_t a = g->rule_alt[r + 1]; a > g->rule_alt[r]; a--)
                if (!push_work(m, g->alt_start[a - 1], cont)) return false;
            break;
        }
        default:
            if (!push_out(m, (uint32_t)id)) return false;
        }
    }
    return true;
}

static void new_gen(smp_matcher *m) {
    if (++m->gen == 0) { /* wrapped: clear the marks */
        memset(m->f_mark, 0, m->n_frames * sizeof *m->f_mark);
        m->gen = 1;
    }
    m->n_out = 0;
    m->n_work = 0;
}

/* The state after reading byte b in state s. FAIL on NOMEM. */
static int32_t step_byte(smp_matcher *m, int32_t s, uint8_t b) {
    new_gen(m);
    const smp_grammar *g = m->g;
    uint32_t off = m->st[s].off, n = m->st[s].n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = m->pool[off + i];
        if (!id) continue;
        uint32_t p = m->f_pos[id];
        if (g->kind[p] != GE_BYTES || !gr_set_has(g->sets[g->arg[p]], b)) continue;
        if (!expand(m, p + 1, m->f_parent[id])) return FAIL;
    }
    return state_of(m, m->outv, m->n_out);
}

/* Cached transition; FAIL on NOMEM. */
static inline int32_t trans(smp_matcher *m, int32_t s, uint8_t b) {
    mstate *S = &m->st[s];
    if (!((S->first[b >> 6] >> (b & 63)) & 1)) return 0;
    if (S->dense) {
        int32_t v = S->dense[b];
        if (v >= 0) return v;
    } else {
        for (uint32_t k = 0; k < S->nk; k++)
            if (S->kb[k] == b) return S->kv[k];
    }
    int32_t v = step_byte(m, s, b);
    if (v < 0) return FAIL;
    S = &m->st[s]; /* step_byte may have moved the table */
    if (S->dense) {
        S->dense[b] = v;
    } else if (S->nk < SMALL) {
        S->kb[S->nk] = b;
        S->kv[S->nk++] = v;
    } else {
        int32_t *d = lm_malloc(256 * sizeof *d);
        if (!d) return v; /* just not cached */
        for (int i = 0; i < 256; i++) d[i] = -1;
        for (uint32_t k = 0; k < S->nk; k++) d[S->kb[k]] = S->kv[k];
        d[b] = v;
        S->dense = d;
    }
    return v;
}

/* Stacks reached by consuming token id at the token level (token elements of s). */
static bool step_token_elems(smp_matcher *m, int32_t s, lm_token id) {
    const smp_grammar *g = m->g;
    uint32_t off = m->st[s].off, n = m->st[s].n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t f = m->pool[off + i];
        if (!f) continue;
        uint32_t p = m->f_pos[f];
        int k = g->kind[p];
        bool match = (k == GE_TOKEN && m->ref_id[g->arg[p]] == id) ||
                     (k == GE_NOT_TOKEN && m->ref_id[g->arg[p]] != id);
        if (match && !expand(m, p + 1, m->f_parent[f])) return false;
    }
    return true;
}

static bool is_eog(const smp_matcher *m, lm_token id) {
    return (m->eog_bits[(size_t)id >> 6] >> (id & 63)) & 1;
}

/* ---- caches past their budget: start again from the current state ---- */

static bool rebuild(smp_matcher *m) {
    /* the current stacks as position lists, top first */
    const mstate *c = &m->st[m->cur];
    size_t total = 0;
    for (uint32_t i = 0; i < c->n; i++) total += (size_t)m->f_depth[m->pool[c->off + i]] + 1;
    uint32_t *chains = lm_malloc((total + 1) * sizeof *chains);
    uint32_t *lens = lm_malloc((c->n + 1) * sizeof *lens);
    if (!chains || !lens) {
        lm_free(chains);
        lm_free(lens);
        return false;
    }
    uint32_t nstk = c->n;
    size_t at = 0;
    for (uint32_t i = 0; i < nstk; i++) {
        uint32_t len = 0;
        for (uint32_t f = m->pool[c->off + i]; f; f = m->f_parent[f]) chains[at + len++] = m->f_pos[f];
        lens[i] = len;
        at += len;
    }
    for (uint32_t i = 0; i < m->n_states; i++) {
        lm_free(m->st[i].dense);
        lm_free(m->st[i].mask);
    }
    m->mask_bytes = 0;
    m->n_frames = 1;
    m->n_states = 0;
    m->n_pool = 0;
    memset(m->f_hash, 0, m->f_hash_cap * sizeof *m->f_hash);
    memset(m->s_hash, 0, m->s_hash_cap * sizeof *m->s_hash);
    memset(m->f_mark, 0, m->cap_frames * sizeof *m->f_mark);
    m->gen = 0;
    bool ok = state_of(m, NULL, 0) == 0;
    m->n_out = 0;
    at = 0;
    for (uint32_t i = 0; ok && i < nstk; i++) {
        uint32_t parent = 0;
        for (uint32_t k = lens[i]; ok && k > 0; k--) {
            int32_t f = frame(m, chains[at + k - 1], parent);
            ok = f >= 0;
            parent = (uint32_t)f;
        }
        ok = ok && push_out(m, parent);
        at += lens[i];
    }
    lm_free(chains);
    lm_free(lens);
    if (!ok) return false;
    int32_t s = state_of(m, m->outv, m->n_out);
    if (s < 0) return false;
    m->cur = s;
    return true;
}

static void keep_in_budget(smp_matcher *m) {
    if (m->n_frames > FRAME_LIMIT || m->n_states > STATE_LIMIT) {
        if (!rebuild(m)) m->failed = true;
    } else if (m->mask_bytes > MASK_LIMIT) {
        for (uint32_t i = 0; i < m->n_states; i++) {
            lm_free(m->st[i].mask);
            m->st[i].mask = NULL;
        }
        m->mask_bytes = 0;
    }
}

/* ---- public ---- */

void smp_matcher_free(smp_matcher *m) {
    if (!m) return;
    for (uint32_t i = 0; i < m->n_states; i++) {
        lm_free(m->st[i].dense);
        lm_free(m->st[i].mask);
    }
    lm_free(m->st);
    lm_free(m->pool);
    lm_free(m->s_hash);
    lm_free(m->f_pos);
    lm_free(m->f_parent);
    lm_free(m->f_mark);
    lm_free(m->f_depth);
    lm_free(m->f_hash);
    lm_free(m->work);
    lm_free(m->outv);
    lm_free(m->walk);
    lm_free(m->ref_id);
    lm_free(m->eog_bits);
    lm_free(m);
}

static lm_status ref_fail(const smp_grammar *g, uint32_t i, lm_error *err, const char *why) {
    int line, col;
    gr_line_col(g->source, g->source_len, g->refs[i].offset, &line, &col);
    if (g->refs[i].text)
        return lm_fail(err, LM_ERR_FORMAT, "grammar line %d column %d: token %.80s %s", line, col, g->refs[i].text, why);
    return lm_fail(err, LM_ERR_FORMAT, "grammar line %d column %d: token id %d %s", line, col, (int)g->refs[i].id, why);
}

lm_status smp_matcher_new(const smp_grammar *g, const tok_tokenizer *tok, const lm_token *eog, size_t n_eog,
                          size_t n_vocab, smp_matcher **out, lm_error *err) {
    *out = NULL;
    smp_matcher *m = lm_calloc(1, sizeof *m);
    if (!m) return lm_fail_nomem(err, "the grammar state");
    m->g = g;
    m->n_vocab = n_vocab;
    m->words = (n_vocab + 63) / 64;
    m->n_tok = tok ? LM_MIN(n_vocab, (size_t)LM_MAX(tok_n_vocab(tok), 0)) : 0;
    m->ref_id = lm_malloc((g->n_refs + 1) * sizeof *m->ref_id);
    m->eog_bits = lm_calloc(m->words + 1, sizeof *m->eog_bits);
    m->cap_frames = 1024;
    m->f_pos = lm_malloc(m->cap_frames * sizeof *m->f_pos);
    m->f_parent = lm_malloc(m->cap_frames * sizeof *m->f_parent);
    m->f_mark = lm_calloc(m->cap_frames, sizeof *m->f_mark);
    m->f_depth = lm_malloc(m->cap_frames * sizeof *m->f_depth);
    m->f_hash_cap = 4096;
    m->f_hash = lm_calloc(m->f_hash_cap, sizeof *m->f_hash);
    m->s_hash_cap = 1024;
    m->s_hash = lm_calloc(m->s_hash_cap, sizeof *m->s_hash);
    if (!m->ref_id || !m->eog_bits || !m->f_pos || !m->f_parent || !m->f_mark || !m->f_depth || !m->f_hash ||
        !m->s_hash)
        goto nomem;
    for (uint32_t i = 0; i < g->n_refs; i++) {
        int32_t id = g->refs[i].id;
        if (g->refs[i].text) {
            id = tok ? tok_find(tok, g->refs[i].text) : -1;
            if (id < 0) {
                lm_status st = ref_fail(g, i, err, "is not in the vocabulary");
                smp_matcher_free(m);
                return st;
            }
        }
        if (id < 0 || (size_t)id >= (tok ? m->n_tok : n_vocab)) {
            lm_status st = ref_fail(g, i, err, "is outside the vocabulary");
            smp_matcher_free(m);
            return st;
        }
        m->ref_id[i] = id;
    }
    for (size_t i = 0; i < n_eog; i++)
        if (eog[i] >= 0 && (size_t)eog[i] < n_vocab) m->eog_bits[(size_t)eog[i] >> 6] |= 1ull << (eog[i] & 63);
    if (tok) {
        m->trie = tok_get_trie(tok);
        if (!m->trie) goto nomem;
        m->walk = lm_malloc((m->trie->max_depth + 1) * sizeof *m->walk);
        if (!m->walk) goto nomem;
    }
    /* frame 0: the empty stack */
    m->f_pos[0] = UINT32_MAX;
    m->f_parent[0] = 0;
    m->f_depth[0] = 0;
    m->n_frames = 1;
    if (state_of(m, NULL, 0) != 0) goto nomem; /* state 0: dead */
    new_gen(m);
    const uint32_t r = g->root;
    for (uint32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++)
        if (!expand(m, g->alt_start[a], 0)) goto nomem;
    m->cur = state_of(m, m->outv, m->n_out);
    if (m->cur < 0) goto nomem;
    *out = m;
    return LM_OK;
nomem:
    smp_matcher_free(m);
    return lm_fail_nomem(err, "the grammar state");
}

bool smp_matcher_can_end(const smp_matcher *m) { return m->done || m->st[m->cur].accepting; }

bool smp_matcher_done(const smp_matcher *m) { return m->done; }

const uint64_t *smp_matcher_mask(smp_matcher *m, uint32_t *n_allowed) {
    if (m->failed) return NULL;
    int32_t s = m->cur;
    if (m->done) { /* only end-of-generation tokens once one was accepted */
        if (n_allowed) {
            uint32_t cnt = 0;
            for (size_t w = 0; w < m->words; w++) cnt += smp_popcount64(m->eog_bits[w]);
            *n_allowed = cnt;
        }
        return m->eog_bits;
    }
    if (m->st[s].mask) {
        if (n_allowed) *n_allowed = m->st[s].n_allowed;
        return m->st[s].mask;
    }
    uint64_t *bits = lm_calloc(m->words + 1, sizeof *bits);
    if (!bits) {
        m->failed = true;
        return NULL;
    }
    {
        const tok_trie *tr = m->trie;
        if (tr) {
            int32_t *walk = m->walk;
            walk[0] = s;
            const uint8_t *byte = tr->byte;
            const uint16_t *depth = tr->depth;
            const uint32_t *skip = tr->skip;
            const int32_t *tokv = tr->tok;
            uint32_t nn = tr->n_nodes;
            for (uint32_t i = 1; i < nn;) {
                uint32_t d = depth[i];
                int32_t ns = trans(m, walk[d - 1], byte[i]);
                if (ns <= 0) {
                    if (ns < 0) {
                        lm_free(bits);
                        m->failed = true;
                        return NULL;
                    }
                    i = skip[i];
                    continue;
                }
                walk[d] = ns;
                for (int32_t t = tokv[i]; t >= 0; t = tr->next[t])
                    if ((size_t)t < m->n_vocab) bits[(size_t)t >> 6] |= 1ull << (t & 63);
                i++;
            }
        }
        const mstate *S = &m->st[s];
        if (S->tok_tops) {
            const smp_grammar *g = m->g;
            size_t n_ids = m->trie ? m->n_tok : m->n_vocab;
            for (uint32_t i = 0; i < S->n; i++) {
                uint32_t f = m->pool[S->off + i];
                if (!f) continue;
                uint32_t p = m->f_pos[f];
                if (g->kind[p] == GE_BYTES) continue;
                int32_t id = m->ref_id[g->arg[p]];
                if (g->kind[p] == GE_TOKEN) {
                    bits[(size_t)id >> 6] |= 1ull << (id & 63);
                    continue;
                }
                /* any token but id: id stays as the byte walk and the other tops left it */
                bool keep = (bits[(size_t)id >> 6] >> (id & 63)) & 1;
                for (uint32_t j = 0; j < S->n && !keep; j++) {
                    uint32_t f2 = m->pool[S->off + j];
                    if (!f2) continue;
                    uint32_t p2 = m->f_pos[f2];
                    keep = (g->kind[p2] == GE_TOKEN && m->ref_id[g->arg[p2]] == id) ||
                           (g->kind[p2] == GE_NOT_TOKEN && m->ref_id[g->arg[p2]] != id);
                }
                for (size_t w = 0; w < n_ids / 64; w++) bits[w] = ~0ull;
                for (size_t t = n_ids / 64 * 64; t < n_ids; t++) bits[t >> 6] |= 1ull << (t & 63);
                if (!keep) bits[(size_t)id >> 6] &= ~(1ull << (id & 63));
            }
        }
        /* end of generation exactly where the grammar may end */
        for (size_t w = 0; w < m->words; w++) bits[w] &= ~m->eog_bits[w];
        if (m->st[s].accepting)
            for (size_t w = 0; w < m->words; w++) bits[w] |= m->eog_bits[w];
    }
    if (m->words && m->n_vocab % 64) bits[m->words - 1] &= (1ull << (m->n_vocab % 64)) - 1;
    uint32_t cnt = 0;
    for (size_t w = 0; w < m->words; w++) cnt += smp_popcount64(bits[w]);
    m->st[s].mask = bits;
    m->st[s].n_allowed = cnt;
    m->mask_bytes += (m->words + 1) * sizeof *bits;
    if (n_allowed) *n_allowed = cnt;
    return bits;
}

bool smp_matcher_allows_bytes(smp_matcher *m, const char *s, size_t n) {
    if (m->failed || m->done) return false;
    int32_t st = m->cur;
    for (size_t i = 0; i < n && st > 0; i++) st = trans(m, st, (uint8_t)s[i]);
    return st > 0;
}

bool smp_matcher_allows(smp_matcher *m, lm_token id) {
    if (m->failed || id < 0 || (size_t)id >= m->n_vocab) return false;
    const mstate *S = &m->st[m->cur];
    if (m->done) return is_eog(m, id);
    if (S->mask) return (S->mask[(size_t)id >> 6] >> (id & 63)) & 1;
    if (is_eog(m, id)) return S->accepting;
    if (m->trie && id < m->trie->n_vocab && m->trie->len[id] &&
        smp_matcher_allows_bytes(m, (const char *)m->trie->bytes + m->trie->off[id], m->trie->len[id]))
        return true;
    S = &m->st[m->cur];
    if (!S->tok_tops) return false;
    const smp_grammar *g = m->g;
    for (uint32_t i = 0; i < S->n; i++) {
        uint32_t f = m->pool[S->off + i];
        if (!f) continue;
        uint32_t p = m->f_pos[f];
        if (g->kind[p] == GE_TOKEN && m->ref_id[g->arg[p]] == id) return true;
        if (g->kind[p] == GE_NOT_TOKEN && m->ref_id[g->arg[p]] != id && (size_t)id < (m->trie ? m->n_tok : m->n_vocab))
            return true;
    }
    return false;
}

/* Union of two states' stacks. */
static int32_t state_union(smp_matcher *m, int32_t a, int32_t b) {
    if (a == 0) return b;
    if (b == 0 || a == b) return a;
    m->n_out = 0;
    for (uint32_t i = 0; i < m->st[a].n; i++)
        if (!push_out(m, m->pool[m->st[a].off + i])) return FAIL;
    for (uint32_t i = 0; i < m->st[b].n; i++)
        if (!push_out(m, m->pool[m->st[b].off + i])) return FAIL;
    return state_of(m, m->outv, m->n_out);
}

lm_status smp_matcher_accept(smp_matcher *m, lm_token id) {
    if (m->failed) return LM_ERR_NOMEM;
    if (id < 0 || (size_t)id >= m->n_vocab) return LM_ERR_MISUSE;
    if (m->done) return is_eog(m, id) ? LM_OK : LM_ERR_MISUSE;
    int32_t s = m->cur;
    if (is_eog(m, id)) {
        if (!m->st[s].accepting) return LM_ERR_MISUSE;
        m->done = true;
        return LM_OK;
    }
    int32_t by = 0;
    if (m->trie && id < m->trie->n_vocab && m->trie->len[id]) {
        const uint8_t *b = m->trie->bytes + m->trie->off[id];
        by = s;
        for (uint32_t i = 0; i < m->trie->len[id] && by > 0; i++) by = trans(m, by, b[i]);
        if (by < 0) {
            m->failed = true;
            return LM_ERR_NOMEM;
        }
    }
    int32_t tk = 0;
    if (m->st[s].tok_tops) {
        new_gen(m);
        if (!step_token_elems(m, s, id) || (tk = state_of(m, m->outv, m->n_out)) < 0) {
            m->failed = true;
            return LM_ERR_NOMEM;
        }
        if (tk > 0 && (size_t)id >= (m->trie ? m->n_tok : m->n_vocab)) tk = 0;
    }
    int32_t next = state_union(m, by, tk);
    if (next < 0) {
        m->failed = true;
        return LM_ERR_NOMEM;
    }
    if (next == 0) return LM_ERR_MISUSE;
    m->cur = next;
    keep_in_budget(m);
    return m->failed ? LM_ERR_NOMEM : LM_OK;
}

lm_status smp_matcher_accept_bytes(smp_matcher *m, const char *s, size_t n) {
    if (m->failed) return LM_ERR_NOMEM;
    if (m->done) return n ? LM_ERR_MISUSE : LM_OK;
    int32_t st = m->cur;
    for (size_t i = 0; i < n && st > 0; i++) st = trans(m, st, (uint8_t)s[i]);
    if (st < 0) {
        m->failed = true;
        return LM_ERR_NOMEM;
    }
    if (st == 0) return LM_ERR_MISUSE;
    m->cur = st;
    keep_in_budget(m);
    return m->failed ? LM_ERR_NOMEM : LM_OK;
}

void smp_matcher_stats(const smp_matcher *m, size_t *n_states, size_t *n_frames) {
    if (n_states) *n_states = m->n_states;
    if (n_frames) *n_frames = m->n_frames;
}
