/* sample/grammar.c: compiles grammar text (a GBNF-like EBNF, the form llama.cpp users know)
 * into the flat element form of grammar_internal.h.
 * Owns: the syntax, its errors (with line and column), character classes as UTF-8 byte
 * sequences, repetition operators as generated rules, and the checks a grammar must pass before
 * it can run (root exists, every rule defined, no left recursion).
 * Does not own: running a grammar against a vocabulary (sample/matcher.c).
 *
 * Syntax (https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md describes the
 * same language):
 *   name ::= alternatives          a rule; names are [A-Za-z0-9_-]+; "root" is where output starts
 *   a b                            sequence;   a | b   alternation;   ( ... )   group
 *   "text"                         literal, escapes \n \r \t \\ \" \' \[ \] \- \^ \/ \xHH \uHHHH
 *                                  \UHHHHHHHH (code points, written as UTF-8)
 *   [a-z0-9_] [^"\\]               character class (code point ranges; ^ negates)
 *   .                              any character
 *   x* x+ x? x{m} x{m,} x{m,n} x{,n}   repetition
 *   <[123]> <|im_end|> <[TOOL_CALLS]>  one token by id, by its text <...>, or (our extension, for
 *                                  tokens spelled with brackets) by its text [...]
 *   !<|im_end|>                    any one token except that one
 *   # comment                      to the end of the line
 * A rule ends where the next "name ::=" begins, so rules may span lines freely. */
#include "sample/grammar_internal.h"

#include <stdio.h>
#include <stdlib.h>

enum {
    MAX_SOURCE = 8u << 20,  /* bytes of grammar text */
    MAX_ELEMS = 1u << 22,   /* elements after expansion */
    MAX_RULES = 1u << 20,
    MAX_NESTING = 200,      /* nested groups */
    MAX_REPEAT = 100000,    /* bounds of {m,n} */
};

typedef struct pel {
    uint8_t kind;
    int32_t arg;
} pel;

typedef struct pseq {
    pel *v;
    uint32_t n, cap;
} pseq;

typedef struct palts {
    pseq *v;
    uint32_t n, cap;
} palts;

enum { GEN_NONE, GEN_GROUP, GEN_REPEAT, GEN_CLASS };

typedef struct prule {
    char *name;        /* NULL for a generated rule */
    uint32_t def_off;  /* where it was defined (generated: the operator that made it) */
    uint32_t ref_off;  /* first reference */
    bool defined, referenced;
    uint8_t gen;       /* GEN_* */
    char op;           /* GEN_REPEAT: '*', '+', '?' or '{' */
    palts alts;
} prule;

/* An index by hash, open addressing with linear probing: slot[k] is an item's index + 1, 0 empty;
 * cap is 0 or a power of two, at least twice the number of items. */
typedef struct hindex {
    uint32_t *slot;
    uint32_t cap;
} hindex;

typedef struct parser {
    const char *src;
    size_t len, pos;
    prule *rules;
    uint32_t n_rules, cap_rules;
    hindex names;        /* the named rules */
    uint64_t (*sets)[4];
    uint32_t n_sets, cap_sets;
    hindex known_sets;   /* every set */
    gr_ref *refs;
    uint32_t n_refs, cap_refs;
    size_t n_elems;
    int nesting;
    int32_t any_rule;
    lm_error *err;
    lm_status st;
} parser;

void gr_line_col(const char *text, size_t len, size_t offset, int *line, int *col) {
    int l = 1;
    size_t start = 0;
    for (size_t i = 0; i < offset && i < len; i++)
        if (text[i] == '\n') {
            l++;
            start = i + 1;
        }
    *line = l;
    *col = (int)(offset - start) + 1;
}

static bool perr(parser *P, size_t off, const char *fmt, ...) LM_PRINTF(3, 4);
static bool perr(parser *P, size_t off, const char *fmt, ...) {
    if (P->st) return false; /* the first error is the one reported */
    int line, col;
    gr_line_col(P->src, P->len, off, &line, &col);
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    P->st = lm_fail(P->err, LM_ERR_FORMAT, "grammar line %d column %d: %s", line, col, msg);
    return false;
}

static bool nomem(parser *P) {
    if (!P->st) P->st = lm_fail_nomem(P->err, "the grammar");
    return false;
}

static bool grow(parser *P, void **v, uint32_t *cap, uint32_t need, size_t elem) {
    if (need <= *cap) return true;
    uint32_t nc = *cap ? *cap : 4;
    while (nc < need) nc *= 2;
    void *nv = lm_realloc(*v, (size_t)nc * elem);
    if (!nv) return nomem(P);
    *v = nv;
    *cap = nc;
    return true;
}

static bool seq_push(parser *P, pseq *s, uint8_t kind, int32_t arg) {
    if (++P->n_elems > MAX_ELEMS)
        return perr(P, P->pos, "the grammar expands to more than %u elements", (unsigned)MAX_ELEMS);
    if (!grow(P, (void **)&s->v, &s->cap, s->n + 1, sizeof *s->v)) return false;
    s->v[s->n++] = (pel){kind, arg};
    return true;
}

static bool seq_append(parser *P, pseq *s, const pseq *t) {
    for (uint32_t i = 0; i < t->n; i++)
        if (!seq_push(P, s, t->v[i].kind, t->v[i].arg)) return false;
    return true;
}

static void seq_free(pseq *s) {
    lm_free(s->v);
    memset(s, 0, sizeof *s);
}

static void alts_free(palts *a) {
    for (uint32_t i = 0; i < a->n; i++) seq_free(&a->v[i]);
    lm_free(a->v);
    memset(a, 0, sizeof *a);
}

/* Moves s into a (s is left empty). */
static bool alts_take(parser *P, palts *a, pseq *s) {
    if (!grow(P, (void **)&a->v, &a->cap, a->n + 1, sizeof *a->v)) return false;
    a->v[a->n++] = *s;
    memset(s, 0, sizeof *s);
    return true;
}

/* ---- rules and names ---- */

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static void hindex_put(hindex *x, uint64_t h, uint32_t i) {
    size_t k = h & (x->cap - 1);
    while (x->slot[k]) k = (k + 1) & (x->cap - 1);
    x->slot[k] = i + 1;
}

/* Indexes the newest of n items (index n - 1); when that would fill more than half the table,
 * doubles it and indexes all n again. key gives an item's hash, false for one not indexed. */
static bool hindex_add(parser *P, hindex *x, uint32_t n, bool (*key)(const parser *, uint32_t, uint64_t *)) {
    uint64_t h;
    if (n * 2 <= x->cap) {
        if (key(P, n - 1, &h)) hindex_put(x, h, n - 1);
        return true;
    }
    uint32_t cap = x->cap ? x->cap * 2 : 64;
    uint32_t *slot = lm_calloc(cap, sizeof *slot);
    if (!slot) return nomem(P);
    lm_free(x->slot);
    x->slot = slot;
    x->cap = cap;
    for (uint32_t i = 0; i < n; i++)
        if (key(P, i, &h)) hindex_put(x, h, i);
    return true;
}

static int32_t new_rule(parser *P, char *name, uint32_t off, uint8_t gen) {
    if (P->n_rules >= MAX_RULES) {
        lm_free(name);
        perr(P, off, "more than %u rules", (unsigned)MAX_RULES);
        return -1;
    }
    if (!grow(P, (void **)&P->rules, &P->cap_rules, P->n_rules + 1, sizeof *P->rules)) {
        lm_free(name);
        return -1;
    }
    prule *r = &P->rules[P->n_rules];
    memset(r, 0, sizeof *r);
    r->name = name;
    r->def_off = off;
    r->gen = gen;
    return (int32_t)P->n_rules++;
}

static bool name_key(const parser *P, uint32_t i, uint64_t *h) {
    const char *name = P->rules[i].name;
    if (name) *h = hash_bytes(name, strlen(name));
    return name != NULL; /* generated rules have no name */
}

/* The rule named s[0, n), or -1. */
static int32_t find_rule(const parser *P, const char *s, size_t n) {
    const hindex *x = &P->names;
    for (size_t k = hash_bytes(s, n) & (x->cap - 1); x->cap && x->slot[k]; k = (k + 1) & (x->cap - 1)) {
        const char *nm = P->rules[x->slot[k] - 1].name;
        if (strlen(nm) == n && memcmp(nm, s, n) == 0) return (int32_t)x->slot[k] - 1;
    }
    return -1;
}

/* The rule named src[off, off+n), created (undefined) when new. -1 on failure. */
static int32_t rule_named(parser *P, size_t off, size_t n) {
    const char *s = P->src + off;
    int32_t r = find_rule(P, s, n);
    if (r >= 0) return r;
    char *name = lm_strndup(s, n);
    if (!name) {
        nomem(P);
        return -1;
    }
    r = new_rule(P, name, (uint32_t)off, GEN_NONE);
    if (r < 0 || !hindex_add(P, &P->names, P->n_rules, name_key)) return -1;
    return r;
}

/* A generated rule with the given alternatives (taken). Returns its index or -1. */
static int32_t gen_rule(parser *P, palts *alts, uint32_t off, uint8_t gen, char op) {
    int32_t r = new_rule(P, NULL, off, gen);
    if (r < 0) {
        alts_free(alts);
        return -1;
    }
    P->rules[r].alts = *alts;
    P->rules[r].defined = true;
    P->rules[r].op = op;
    memset(alts, 0, sizeof *alts);
    return r;
}

/* ---- byte sets ---- */

static bool set_key(const parser *P, uint32_t i, uint64_t *h) {
    *h = hash_bytes(P->sets[i], sizeof P->sets[i]);
    return true;
}

/* Index of the byte set (deduplicated), or -1. */
static int32_t set_index(parser *P, const uint64_t set[4]) {
    const hindex *x = &P->known_sets;
    for (size_t k = hash_bytes(set, 32) & (x->cap - 1); x->cap && x->slot[k]; k = (k + 1) & (x->cap - 1))
        if (memcmp(P->sets[x->slot[k] - 1], set, 32) == 0) return (int32_t)x->slot[k] - 1;
    if (!grow(P, (void **)&P->sets, &P->cap_sets, P->n_sets + 1, sizeof *P->sets)) return -1;
    memcpy(P->sets[P->n_sets], set, 32);
    uint32_t idx = P->n_sets++;
    if (!hindex_add(P, &P->known_sets, P->n_sets, set_key)) return -1;
    return (int32_t)idx;
}

static int32_t byte_range_set(parser *P, unsigned lo, unsigned hi) {
    uint64_t set[4] = {0};
    for (unsigned b = lo; b <= hi; b++) set[b >> 6] |= 1ull << (b & 63);
    return set_index(P, set);
}

/* ---- lexing helpers ---- */

static int peek(const parser *P) { return P->pos < P->len ? (unsigned char)P->src[P->pos] : -1; }

static size_t ws_end(const parser *P, size_t pos) {
    while (pos < P->len) {
        char c = P->src[pos];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            pos++;
        } else if (c == '#') {
            while (pos < P->len && P->src[pos] != '\n') pos++;
        } else {
            break;
        }
    }
    return pos;
}

static void skip_ws(parser *P) { P->pos = ws_end(P, P->pos); }

static bool is_name_char(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static size_t name_len(const parser *P, size_t pos) {
    size_t n = 0;
    while (pos + n < P->len && is_name_char((unsigned char)P->src[pos + n])) n++;
    return n;
}

/* True when a rule definition "name ::=" starts at pos. */
static bool rule_starts(const parser *P, size_t pos) {
    size_t n = name_len(P, pos);
    if (!n) return false;
    size_t q = ws_end(P, pos + n);
    return q + 3 <= P->len && memcmp(P->src + q, "::=", 3) == 0;
}

/* Describes the character at off for an error message. */
static void describe_char(const parser *P, size_t off, char *buf, size_t cap) {
    if (off >= P->len) {
        snprintf(buf, cap, "the end of the grammar");
        return;
    }
    unsigned char c = (unsigned char)P->src[off];
    if (c >= 0x21 && c < 0x7f) snprintf(buf, cap, "'%c'", c);
    else if (c == ' ') snprintf(buf, cap, "a space");
    else snprintf(buf, cap, "byte 0x%02X", c);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads one character of a literal or class (an escape or one UTF-8 sequence) into *cp. */
static bool read_char(parser *P, uint32_t *cp) {
    size_t at = P->pos;
    if (P->pos >= P->len) return perr(P, at, "unexpected end of the grammar");
    unsigned char c = (unsigned char)P->src[P->pos];
    if (c == '\\') {
        if (P->pos + 1 >= P->len) return perr(P, at, "unexpected end of the grammar after '\\'");
        char e = P->src[P->pos + 1];
        P->pos += 2;
        int digits = 0;
        switch (e) {
        case 'n': *cp = '\n'; return true;
        case 'r': *cp = '\r'; return true;
        case 't': *cp = '\t'; return true;
        case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/':
            *cp = (unsigned char)e;
            return true;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default: {
            char d[32];
            describe_char(P, at + 1, d, sizeof d);
            return perr(P, at, "unknown escape '\\' followed by %s", d);
        }
        }
        uint32_t v = 0;
        for (int i = 0; i < digits; i++) {
            int h = P->pos < P->len ? hexval((unsigned char)P->src[P->pos]) : -1;
            if (h < 0) return perr(P, at, "escape '\\%c' needs %d hexadecimal digits", e, digits);
            v = v * 16 + (uint32_t)h;
            P->pos++;
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return perr(P, at, "escape '\\%c' names U+%04X, which is not a character", e, (unsigned)v);
        *cp = v;
        return true;
    }
    int n = lm_utf8_seq_len(c);
    uint32_t v = 0;
    int used = n ? lm_utf8_decode(P->src + P->pos, P->len - P->pos, &v) : 0;
    if (!n || used != n) /* lm_utf8_decode returns 1 for anything ill-formed */
        return perr(P, at, "invalid UTF-8 (byte 0x%02X)", c);
    P->pos += (size_t)n;
    *cp = v;
    return true;
}

/* ---- atoms ---- */

/* "text": one byte element per UTF-8 byte. */
static bool parse_literal(parser *P, pseq *out) {
    size_t open = P->pos++;
    for (;;) {
        if (P->pos >= P->len) return perr(P, open, "the string started here is not closed");
        if (P->src[P->pos] == '"') {
            P->pos++;
            return true;
        }
        uint32_t cp;
        if (!read_char(P, &cp)) return false;
        char buf[4];
        int n = lm_utf8_encode(cp, buf);
        for (int i = 0; i < n; i++) {
            int32_t s = byte_range_set(P, (unsigned char)buf[i], (unsigned char)buf[i]);
            if (s < 0 || !seq_push(P, out, GE_BYTES, s)) return false;
        }
    }
}

typedef struct cprange {
    uint32_t lo, hi;
} cprange;

typedef struct cpset {
    cprange *v;
    uint32_t n, cap;
} cpset;

static int cmp_range(const void *a, const void *b) {
    const cprange *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Sorts and merges overlapping or touching ranges. */
static void cpset_normalize(cpset *s) {
    if (!s->n) return;
    qsort(s->v, s->n, sizeof *s->v, cmp_range);
    uint32_t k = 0;
    for (uint32_t i = 1; i < s->n; i++) {
        if (s->v[i].lo <= s->v[k].hi + 1) {
            if (s->v[i].hi > s->v[k].hi) s->v[k].hi = s->v[i].hi;
        } else {
            s->v[++k] = s->v[i];
        }
    }
    s->n = k + 1;
}

/* UTF-8 sequences of a code point range: calls emit with n byte ranges (lo[i]..hi[i]) whose
 * product is exactly the encodings of some sub-range. Surrogates are left out. The splitting
 * rule (a range becomes a product of byte ranges once, at every continuation position, its ends
 * either agree above that position or span it fully) is the usual one for UTF-8 automata. */
typedef struct seq_sink {
    parser *P;
    uint64_t ascii[4]; /* the one-byte part, merged into one set */
    palts alts;        /* the multi-byte sequences */
} seq_sink;

static bool utf8_ranges(seq_sink *k, uint32_t lo, uint32_t hi) {
    if (lo > hi) return true;
    if (lo <= 0xDFFF && hi >= 0xD800) {
        return (lo < 0xD800 ? utf8_ranges(k, lo, 0xD7FF) : true) &&
               (hi > 0xDFFF ? utf8_ranges(k, 0xE000, hi) : true);
    }
    static const uint32_t bounds[3] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++)
        if (lo <= bounds[i] && hi > bounds[i])
            return utf8_ranges(k, lo, bounds[i]) && utf8_ranges(k, bounds[i] + 1, hi);
    if (hi <= 0x7F) {
        for (uint32_t b = lo; b <= hi; b++) k->ascii[b >> 6] |= 1ull << (b & 63);
        return true;
    }
    char a[4], b[4];
    int n = lm_utf8_encode(lo, a);
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0)
                return utf8_ranges(k, lo, lo | m) && utf8_ranges(k, (lo | m) + 1, hi);
            if ((hi & m) != m)
                return utf8_ranges(k, lo, (hi & ~m) - 1) && utf8_ranges(k, hi & ~m, hi);
        }
    }
    lm_utf8_encode(hi, b);
    pseq s = {0};
    for (int i = 0; i < n; i++) {
        int32_t set = byte_range_set(k->P, (unsigned char)a[i], (unsigned char)b[i]);
        if (set < 0 || !seq_push(k->P, &s, GE_BYTES, set)) {
            seq_free(&s);
            return false;
        }
    }
    if (!alts_take(k->P, &k->alts, &s)) {
        seq_free(&s);
        return false;
    }
    return true;
}

/* The element(s) matching one character of s: a byte set when every character is ASCII, else a
 * generated rule with one alternative per UTF-8 shape. */
static bool class_elems(parser *P, const cpset *s, uint32_t off, pseq *out) {
    seq_sink k = {.P = P};
    for (uint32_t i = 0; i < s->n; i++)
        if (!utf8_ranges(&k, s->v[i].lo, s->v[i].hi)) {
            alts_free(&k.alts);
            return false;
        }
    bool any_ascii = k.ascii[0] | k.ascii[1];
    if (!k.alts.n) {
        int32_t set = set_index(P, k.ascii);
        return set >= 0 && seq_push(P, out, GE_BYTES, set);
    }
    if (any_ascii) {
        pseq a = {0};
        int32_t set = set_index(P, k.ascii);
        if (set < 0 || !seq_push(P, &a, GE_BYTES, set) || !alts_take(P, &k.alts, &a)) {
            seq_free(&a);
            alts_free(&k.alts);
            return false;
        }
    }
    int32_t r = gen_rule(P, &k.alts, off, GEN_CLASS, 0);
    return r >= 0 && seq_push(P, out, GE_RULE, r);
}

static bool cpset_add(parser *P, cpset *s, uint32_t lo, uint32_t hi) {
    if (!grow(P, (void **)&s->v, &s->cap, s->n + 1, sizeof *s->v)) return false;
    s->v[s->n++] = (cprange){lo, hi};
    return true;
}

static bool parse_class(parser *P, pseq *out) {
    size_t open = P->pos++;
    bool neg = false;
    if (peek(P) == '^') {
        neg = true;
        P->pos++;
    }
    cpset s = {0};
    bool ok = true;
    for (;;) {
        if (P->pos >= P->len) {
            ok = perr(P, open, "the character class started here is not closed");
            break;
        }
        if (P->src[P->pos] == ']') {
            P->pos++;
            break;
        }
        size_t at = P->pos;
        uint32_t lo, hi;
        if (!(ok = read_char(P, &lo))) break;
        hi = lo;
        if (P->pos + 1 < P->len && P->src[P->pos] == '-' && P->src[P->pos + 1] != ']') {
            P->pos++;
            if (!(ok = read_char(P, &hi))) break;
            if (hi < lo) {
                ok = perr(P, at, "the range runs backwards (U+%04X to U+%04X)", (unsigned)lo, (unsigned)hi);
                break;
            }
        }
        if (!(ok = cpset_add(P, &s, lo, hi))) break;
    }
    if (ok) {
        cpset_normalize(&s);
        if (neg) {
            cpset c = {0};
            uint32_t next = 0;
            for (uint32_t i = 0; ok && i < s.n; i++) {
                if (s.v[i].lo > next) ok = cpset_add(P, &c, next, s.v[i].lo - 1);
                next = s.v[i].hi + 1;
            }
            if (ok && next <= 0x10FFFF) ok = cpset_add(P, &c, next, 0x10FFFF);
            lm_free(s.v);
            s = c;
        }
    }
    if (ok && s.n == 0) ok = perr(P, open, "the character class matches no character");
    if (ok) ok = class_elems(P, &s, (uint32_t)open, out);
    lm_free(s.v);
    return ok;
}

static bool parse_any(parser *P, pseq *out) {
    size_t at = P->pos++;
    if (P->any_rule < 0) {
        cpset s = {0};
        if (!cpset_add(P, &s, 0, 0x10FFFF)) return false;
        pseq tmp = {0};
        bool ok = class_elems(P, &s, (uint32_t)at, &tmp);
        lm_free(s.v);
        if (!ok) {
            seq_free(&tmp);
            return false;
        }
        P->any_rule = tmp.v[0].arg;
        seq_free(&tmp);
    }
    return seq_push(P, out, GE_RULE, P->any_rule);
}

/* <[123]>, <text>, <[text]>, optionally after '!'. */
static bool parse_token_ref(parser *P, pseq *out) {
    size_t at = P->pos;
    bool neg = false;
    if (peek(P) == '!') {
        neg = true;
        P->pos++;
        if (peek(P) != '<') return perr(P, at, "'!' must be followed by a token such as <|end|>");
    }
    size_t open = P->pos;
    size_t close = open + 1;
    while (close < P->len && P->src[close] != '>' && P->src[close] != '\n') close++;
    if (close >= P->len || P->src[close] != '>')
        return perr(P, open, "the token started here is not closed with '>'");
    if (close == open + 1) return perr(P, open, "empty token '<>'");
    gr_ref ref = {NULL, -1, (uint32_t)open};
    const char *b = P->src + open + 1;
    size_t n = close - open - 1;
    if (n >= 2 && b[0] == '[' && b[n - 1] == ']') {
        size_t digits = 0;
        while (digits < n - 2 && b[1 + digits] >= '0' && b[1 + digits] <= '9') digits++;
        if (digits == n - 2) {
            if (digits == 0 || digits > 9) return perr(P, open, "token id out of range");
            ref.id = (int32_t)strtol(b + 1, NULL, 10);
        } else {
            ref.text = lm_strndup(b, n); /* "[TOOL_CALLS]" */
        }
    } else {
        ref.text = lm_strndup(P->src + open, n + 2); /* "<|im_end|>" */
    }
    if (ref.id < 0 && !ref.text) return nomem(P);
    if (!grow(P, (void **)&P->refs, &P->cap_refs, P->n_refs + 1, sizeof *P->refs)) {
        lm_free(ref.text);
        return false;
    }
    P->refs[P->n_refs] = ref;
    P->pos = close + 1;
    return seq_push(P, out, neg ? GE_NOT_TOKEN : GE_TOKEN, (int32_t)P->n_refs++);
}

static bool parse_alts(parser *P, palts *out);

static bool parse_group(parser *P, pseq *out) {
    size_t open = P->pos++;
    if (++P->nesting > MAX_NESTING) return perr(P, open, "groups nested deeper than %d", MAX_NESTING);
    palts alts = {0};
    if (!parse_alts(P, &alts)) {
        alts_free(&alts);
        return false;
    }
    P->nesting--;
    if (peek(P) != ')') {
        alts_free(&alts);
        char d[32];
        describe_char(P, P->pos, d, sizeof d);
        return perr(P, open, "the group opened here is not closed: expected ')', found %s", d);
    }
    P->pos++;
    if (alts.n == 1) { /* a plain sequence: inline it */
        bool ok = seq_append(P, out, &alts.v[0]);
        alts_free(&alts);
        return ok;
    }
    int32_t r = gen_rule(P, &alts, (uint32_t)open, GEN_GROUP, 0);
    return r >= 0 && seq_push(P, out, GE_RULE, r);
}

/* One element standing for all of atom (a rule when it has several). */
static bool single(parser *P, pseq *atom, uint32_t off, pel *el) {
    if (atom->n == 1) {
        *el = atom->v[0];
        return true;
    }
    palts a = {0};
    if (!alts_take(P, &a, atom)) return false;
    int32_t r = gen_rule(P, &a, off, GEN_GROUP, 0);
    if (r < 0) return false;
    *el = (pel){GE_RULE, r};
    return true;
}

static bool read_count(parser *P, uint32_t *v, bool *given) {
    *given = false;
    uint64_t n = 0;
    size_t at = P->pos;
    while (P->pos < P->len && P->src[P->pos] >= '0' && P->src[P->pos] <= '9') {
        n = n * 10 + (uint64_t)(P->src[P->pos] - '0');
        if (n > MAX_REPEAT) return perr(P, at, "repetition count above %u", (unsigned)MAX_REPEAT);
        P->pos++;
        *given = true;
    }
    *v = (uint32_t)n;
    return true;
}

/* x* as R ::= x R | (empty). */
static int32_t star_rule(parser *P, pel x, uint32_t off, char op) {
    palts a = {0};
    pseq s1 = {0}, s2 = {0};
    int32_t r = new_rule(P, NULL, off, GEN_REPEAT);
    if (r < 0) return -1;
    P->rules[r].defined = true;
    P->rules[r].op = op;
    if (!seq_push(P, &s1, x.kind, x.arg) || !seq_push(P, &s1, GE_RULE, r) || !alts_take(P, &a, &s1) ||
        !alts_take(P, &a, &s2)) {
        seq_free(&s1);
        alts_free(&a);
        return -1;
    }
    P->rules[r].alts = a;
    return r;
}

/* Applies the postfix operators after an atom. */
static bool parse_postfix(parser *P, pseq *atom) {
    for (;;) {
        int c = peek(P);
        if (c != '*' && c != '+' && c != '?' && c != '{') return true;
        size_t op = P->pos++;
        uint32_t lo = 0, hi = UINT32_MAX; /* UINT32_MAX: unbounded */
        if (c == '+') lo = 1;
        if (c == '?') hi = 1;
        if (c == '{') {
            bool has_lo, has_hi;
            skip_ws(P);
            if (!read_count(P, &lo, &has_lo)) return false;
            skip_ws(P);
            if (peek(P) == ',') {
                P->pos++;
                skip_ws(P);
                if (!read_count(P, &hi, &has_hi)) return false;
                if (!has_hi) hi = UINT32_MAX;
                if (!has_lo) lo = 0;
                skip_ws(P);
            } else {
                if (!has_lo) return perr(P, op, "expected a count in '{m}', '{m,}', '{m,n}' or '{,n}'");
                hi = lo;
            }
            if (peek(P) != '}') return perr(P, op, "the repetition opened here is not closed with '}'");
            P->pos++;
            if (hi < lo) return perr(P, op, "repetition {%u,%u}: the maximum is below the minimum", (unsigned)lo, (unsigned)hi);
        }
        if (atom->n == 0) continue; /* repeating the empty string changes nothing */
        pel x;
        if (!single(P, atom, (uint32_t)op, &x)) return false;
        pseq res = {0};
        bool ok = true;
        for (uint32_t i = 0; ok && i < lo; i++) ok = seq_push(P, &res, x.kind, x.arg);
        if (ok && hi == UINT32_MAX) {
            int32_t r = star_rule(P, x, (uint32_t)op, (char)c);
            ok = r >= 0 && seq_push(P, &res, GE_RULE, r);
        } else if (ok && hi > lo) {
            /* O_1 ::= x | (empty);  O_k ::= x O_{k-1} | (empty) */
            int32_t prev = -1;
            for (uint32_t k = 0; ok && k < hi - lo; k++) {
                palts a = {0};
                pseq s1 = {0}, s2 = {0};
                ok = seq_push(P, &s1, x.kind, x.arg) && (prev < 0 || seq_push(P, &s1, GE_RULE, prev)) &&
                     alts_take(P, &a, &s1) && alts_take(P, &a, &s2);
                seq_free(&s1);
                if (!ok) {
                    alts_free(&a);
                    break;
                }
                prev = gen_rule(P, &a, (uint32_t)op, GEN_REPEAT, (char)c);
                ok = prev >= 0;
            }
            if (ok) ok = seq_push(P, &res, GE_RULE, prev);
        }
        seq_free(atom);
        *atom = res;
        if (!ok) return false;
    }
}

static bool parse_item(parser *P, pseq *seq) {
    pseq atom = {0};
    bool ok;
    int c = peek(P);
    size_t at = P->pos;
    if (c == '"') {
        ok = parse_literal(P, &atom);
    } else if (c == '[') {
        ok = parse_class(P, &atom);
    } else if (c == '.') {
        ok = parse_any(P, &atom);
    } else if (c == '(') {
        ok = parse_group(P, &atom);
    } else if (c == '<' || c == '!') {
        ok = parse_token_ref(P, &atom);
    } else if (c >= 0 && is_name_char(c)) {
        size_t n = name_len(P, P->pos);
        int32_t r = rule_named(P, P->pos, n);
        ok = r >= 0;
        if (ok && !P->rules[r].referenced) {
            P->rules[r].referenced = true;
            P->rules[r].ref_off = (uint32_t)P->pos;
        }
        P->pos += n;
        ok = ok && seq_push(P, &atom, GE_RULE, r);
    } else {
        char d[32];
        describe_char(P, at, d, sizeof d);
        ok = perr(P, at, "expected a rule name, a \"string\", a [class], '.', '(' or a <token>; found %s", d);
    }
    ok = ok && parse_postfix(P, &atom) && seq_append(P, seq, &atom);
    seq_free(&atom);
    return ok;
}

/* A sequence ends at '|', ')', the end, or the start of the next rule. */
static bool parse_seq(parser *P, pseq *seq) {
    for (;;) {
        skip_ws(P);
        int c = peek(P);
        if (c < 0 || c == '|' || c == ')' || rule_starts(P, P->pos)) return true;
        if (!parse_item(P, seq)) return false;
    }
}

static bool parse_alts(parser *P, palts *out) {
    for (;;) {
        pseq s = {0};
        if (!parse_seq(P, &s) || !alts_take(P, out, &s)) {
            seq_free(&s);
            return false;
        }
        if (peek(P) != '|') return true;
        P->pos++;
    }
}

static bool parse_grammar(parser *P) {
    skip_ws(P);
    if (P->pos >= P->len) return perr(P, P->pos, "the grammar is empty; expected a rule such as root ::= \"yes\" | \"no\"");
    while (P->pos < P->len) {
        size_t at = P->pos;
        size_t n = name_len(P, at);
        if (!n) {
            char d[32];
            describe_char(P, at, d, sizeof d);
            return perr(P, at, "expected a rule name (letters, digits, '-' or '_'), found %s", d);
        }
        P->pos += n;
        skip_ws(P);
        if (P->pos + 3 > P->len || memcmp(P->src + P->pos, "::=", 3) != 0) {
            char d[32];
            describe_char(P, P->pos, d, sizeof d);
            return perr(P, P->pos, "expected '::=' after the rule name '%.*s', found %s", (int)LM_MIN(n, 60),
                        P->src + at, d);
        }
        P->pos += 3;
        int32_t r = rule_named(P, at, n);
        if (r < 0) return false;
        if (P->rules[r].defined) {
            int line, col;
            gr_line_col(P->src, P->len, P->rules[r].def_off, &line, &col);
            return perr(P, at, "rule '%.*s' is defined twice (first at line %d column %d)", (int)LM_MIN(n, 60),
                        P->src + at, line, col);
        }
        P->rules[r].defined = true;
        P->rules[r].def_off = (uint32_t)at;
        palts alts = {0};
        if (!parse_alts(P, &alts)) {
            alts_free(&alts);
            return false;
        }
        P->rules[r].alts = alts;
        if (peek(P) == ')') return perr(P, P->pos, "unexpected ')' with no group open");
        skip_ws(P);
    }
    return true;
}

/* ---- checks ---- */

/* Describes rule r for an error: its name, or the operator that generated it. */
static void rule_desc(const parser *P, uint32_t r, char *buf, size_t cap) {
    const prule *ru = &P->rules[r];
    if (ru->name) {
        snprintf(buf, cap, "'%.60s'", ru->name);
        return;
    }
    int line, col;
    gr_line_col(P->src, P->len, ru->def_off, &line, &col);
    const char *what = ru->gen == GEN_REPEAT ? "the repetition" : ru->gen == GEN_CLASS ? "the class" : "the group";
    snprintf(buf, cap, "%s at line %d column %d", what, line, col);
}

/* True when the alternative holds anything but rule references (it can never be nullable through
 * them alone). */
static bool has_terminal(const pseq *s) {
    for (uint32_t i = 0; i < s->n; i++)
        if (s->v[i].kind != GE_RULE) return true;
    return false;
}

/* Nullable rules (can match the empty string), by propagation: an alternative becomes nullable
 * when its last unresolved rule element does. Linear in the grammar's size. */
static bool compute_nullable(parser *P, uint8_t *nullable) {
    uint32_t n_alts = 0;
    for (uint32_t r = 0; r < P->n_rules; r++) n_alts += P->rules[r].alts.n;
    uint32_t *pending = lm_calloc(n_alts + 1, sizeof *pending); /* rule elements not yet nullable */
    uint32_t *alt_rule = lm_malloc((n_alts + 1) * sizeof *alt_rule);
    uint32_t *occ_start = lm_calloc(P->n_rules + 1, sizeof *occ_start);
    uint32_t *stack = lm_malloc((P->n_rules + 1) * sizeof *stack);
    uint32_t *fill = lm_malloc((P->n_rules + 1) * sizeof *fill);
    uint32_t n_occ = 0;
    for (uint32_t r = 0; r < P->n_rules; r++)
        for (uint32_t a = 0; a < P->rules[r].alts.n; a++) {
            const pseq *s = &P->rules[r].alts.v[a];
            if (!has_terminal(s)) n_occ += s->n;
        }
    uint32_t *occ = lm_malloc((n_occ + 1) * sizeof *occ);
    bool ok = pending && alt_rule && occ_start && stack && fill && occ;
    if (!ok) {
        nomem(P);
        goto done;
    }
    /* CSR of "rule -> alternatives (without terminals) that mention it", one entry per mention */
    uint32_t ai = 0;
    for (uint32_t r = 0; r < P->n_rules; r++)
        for (uint32_t a = 0; a < P->rules[r].alts.n; a++, ai++) {
            const pseq *s = &P->rules[r].alts.v[a];
            bool term = has_terminal(s);
            alt_rule[ai] = r;
            pending[ai] = term ? UINT32_MAX : s->n;
            if (!term)
                for (uint32_t i = 0; i < s->n; i++) occ_start[s->v[i].arg + 1]++;
        }
    for (uint32_t r = 0; r < P->n_rules; r++) occ_start[r + 1] += occ_start[r];
    memcpy(fill, occ_start, (P->n_rules + 1) * sizeof *fill);
    ai = 0;
    for (uint32_t r = 0; r < P->n_rules; r++)
        for (uint32_t a = 0; a < P->rules[r].alts.n; a++, ai++) {
            const pseq *s = &P->rules[r].alts.v[a];
            if (pending[ai] == UINT32_MAX) continue;
            for (uint32_t i = 0; i < s->n; i++) occ[fill[s->v[i].arg]++] = ai;
        }
    uint32_t sp = 0;
    for (ai = 0; ai < n_alts; ai++)
        if (pending[ai] == 0 && !nullable[alt_rule[ai]]) {
            nullable[alt_rule[ai]] = 1;
            stack[sp++] = alt_rule[ai];
        }
    while (sp) {
        uint32_t r = stack[--sp];
        for (uint32_t k = occ_start[r]; k < occ_start[r + 1]; k++) {
            uint32_t a = occ[k];
            if (--pending[a] == 0 && !nullable[alt_rule[a]]) {
                nullable[alt_rule[a]] = 1;
                stack[sp++] = alt_rule[a];
            }
        }
    }
done:
    lm_free(pending);
    lm_free(alt_rule);
    lm_free(occ_start);
    lm_free(stack);
    lm_free(occ);
    lm_free(fill);
    return ok;
}

/* Left recursion: a rule that reaches itself through leftmost positions (everything before
 * them nullable) would expand forever without reading a byte. Iterative DFS over that graph. */
static bool check_left_recursion(parser *P, const uint8_t *nullable) {
    uint32_t n = P->n_rules;
    uint8_t *color = lm_calloc(n ? n : 1, 1); /* 0 new, 1 on the path, 2 done */
    typedef struct frame {
        uint32_t rule, alt, el;
    } frame;
    frame *st = lm_malloc((n ? n : 1) * sizeof *st);
    if (!color || !st) {
        lm_free(color);
        lm_free(st);
        return nomem(P);
    }
    bool ok = true;
    for (uint32_t start = 0; ok && start < n; start++) {
        if (color[start]) continue;
        uint32_t sp = 0;
        st[sp++] = (frame){start, 0, 0};
        color[start] = 1;
        while (sp && ok) {
            frame *f = &st[sp - 1];
            const prule *ru = &P->rules[f->rule];
            if (f->alt >= ru->alts.n) {
                color[f->rule] = 2;
                sp--;
                continue;
            }
            const pseq *s = &ru->alts.v[f->alt];
            if (f->el >= s->n) {
                f->alt++;
                f->el = 0;
                continue;
            }
            pel e = s->v[f->el];
            /* the next leftmost candidate: only past nullable rule elements */
            bool go_on = e.kind == GE_RULE && nullable[e.arg];
            if (go_on) f->el++;
            else {
                f->alt++;
                f->el = 0;
            }
            if (e.kind != GE_RULE) continue;
            uint32_t t = (uint32_t)e.arg;
            if (color[t] == 1) {
                char a[96], b[96];
                rule_desc(P, t, a, sizeof a);
                const prule *tr = &P->rules[t];
                if (tr->gen == GEN_REPEAT && t == f->rule) {
                    ok = perr(P, tr->def_off, "'%c' repeats something that can match the empty string", tr->op);
                } else {
                    rule_desc(P, f->rule, b, sizeof b);
                    ok = perr(P, tr->def_off, "left recursion: rule %s can reach itself (through %s) before reading any input",
                              a, b);
                }
                break;
            }
            if (color[t] == 0) {
                color[t] = 1;
                st[sp++] = (frame){t, 0, 0};
            }
        }
    }
    lm_free(color);
    lm_free(st);
    return ok;
}

/* ---- building ---- */

static void parser_free(parser *P) {
    for (uint32_t i = 0; i < P->n_rules; i++) {
        lm_free(P->rules[i].name);
        alts_free(&P->rules[i].alts);
    }
    lm_free(P->rules);
    lm_free(P->names.slot);
    lm_free(P->sets);
    lm_free(P->known_sets.slot);
    for (uint32_t i = 0; i < P->n_refs; i++) lm_free(P->refs[i].text);
    lm_free(P->refs);
}

void smp_grammar_free(smp_grammar *g) {
    if (!g) return;
    lm_free(g->kind);
    lm_free(g->arg);
    lm_free(g->rule_alt);
    lm_free(g->alt_start);
    lm_free(g->sets);
    for (uint32_t i = 0; i < g->n_refs; i++) lm_free(g->refs[i].text);
    lm_free(g->refs);
    lm_free(g->source);
    lm_free(g);
}

lm_status smp_grammar_compile(const char *text, size_t len, smp_grammar **out, lm_error *err) {
    *out = NULL;
    if (!text && len) return lm_fail(err, LM_ERR_MISUSE, "smp_grammar_compile: NULL text");
    if (len > MAX_SOURCE)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "grammar: %zu bytes is more than the %u allowed", len,
                       (unsigned)MAX_SOURCE);
    parser P = {.src = text ? text : "", .len = len, .any_rule = -1, .err = err};
    uint8_t *nullable = NULL;
    smp_grammar *g = NULL;
    if (!parse_grammar(&P)) goto fail;
    /* every referenced rule is defined; root exists */
    for (uint32_t r = 0; r < P.n_rules; r++)
        if (!P.rules[r].defined) {
            perr(&P, P.rules[r].ref_off, "rule '%.60s' is used but never defined", P.rules[r].name);
            goto fail;
        }
    int32_t root = find_rule(&P, "root", 4);
    if (root < 0) {
        perr(&P, 0, "no rule named 'root' (the output must match root)");
        goto fail;
    }
    nullable = lm_calloc(P.n_rules, 1);
    if (!nullable) {
        nomem(&P);
        goto fail;
    }
    if (!compute_nullable(&P, nullable) || !check_left_recursion(&P, nullable)) goto fail;
    /* flatten */
    g = lm_calloc(1, sizeof *g);
    if (!g) {
        nomem(&P);
        goto fail;
    }
    size_t n_alts = 0, n_el = 0;
    for (uint32_t r = 0; r < P.n_rules; r++) {
        n_alts += P.rules[r].alts.n;
        for (uint32_t a = 0; a < P.rules[r].alts.n; a++) n_el += P.rules[r].alts.v[a].n + 1;
    }
    g->kind = lm_malloc(n_el ? n_el : 1);
    g->arg = lm_malloc((n_el ? n_el : 1) * sizeof *g->arg);
    g->rule_alt = lm_malloc((P.n_rules + 1) * sizeof *g->rule_alt);
    g->alt_start = lm_malloc((n_alts ? n_alts : 1) * sizeof *g->alt_start);
    g->source = lm_strndup(P.src, P.len);
    if (!g->kind || !g->arg || !g->rule_alt || !g->alt_start || !g->source) {
        nomem(&P);
        goto fail;
    }
    g->source_len = P.len;
    uint32_t e = 0, ai = 0;
    for (uint32_t r = 0; r < P.n_rules; r++) {
        g->rule_alt[r] = ai;
        for (uint32_t a = 0; a < P.rules[r].alts.n; a++) {
            const pseq *s = &P.rules[r].alts.v[a];
            g->alt_start[ai++] = e;
            for (uint32_t i = 0; i < s->n; i++) {
                g->kind[e] = s->v[i].kind;
                g->arg[e++] = s->v[i].arg;
            }
            g->kind[e] = GE_END;
            g->arg[e++] = 0;
        }
    }
    g->rule_alt[P.n_rules] = ai;
    g->n_elems = e;
    g->n_rules = P.n_rules;
    g->root = (uint32_t)root;
    g->sets = P.sets;
    g->n_sets = P.n_sets;
    P.sets = NULL;
    g->refs = P.refs;
    g->n_refs = P.n_refs;
    P.refs = NULL;
    P.n_refs = 0;
    lm_free(nullable);
    parser_free(&P);
    *out = g;
    return LM_OK;
fail:
    lm_free(nullable);
    smp_grammar_free(g);
    parser_free(&P);
    return P.st ? P.st : LM_ERR_NOMEM;
}
