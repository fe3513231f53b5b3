/* sample/grammar_internal.h: what grammar.c (the compiler) and matcher.c (the runtime) share.
 * Owns: the layout of a compiled grammar. Nobody outside src/sample sees it. */
#ifndef LM_GRAMMAR_INTERNAL_H
#define LM_GRAMMAR_INTERNAL_H

#include "sample/sample.h"

/* Element kinds. A grammar is a flat array of elements; each alternative of a rule is a run of
 * elements ended by GE_END. Terminals are sets of bytes: character classes and non-ASCII
 * literals are compiled into UTF-8 byte sequences, so a token that ends inside a character is
 * just a token that stops between two byte elements. */
enum gr_kind {
    GE_END = 0,       /* end of an alternative */
    GE_BYTES = 1,     /* one byte from the set sets[arg] */
    GE_RULE = 2,      /* the rule arg */
    GE_TOKEN = 3,     /* exactly the token of reference refs[arg] */
    GE_NOT_TOKEN = 4, /* any one token but that of refs[arg] (and no end-of-generation token) */
};

/* A token reference: <[123]> by id, <text> or <[text]> by its vocabulary text. */
typedef struct gr_ref {
    char *text;      /* NULL for an id */
    int32_t id;      /* for an id; -1 for a text */
    uint32_t offset; /* in the grammar source, for errors */
} gr_ref;

struct smp_grammar {
    uint32_t n_elems;
    uint8_t *kind;        /* (n_elems) enum gr_kind */
    int32_t *arg;         /* (n_elems) */
    uint32_t n_rules;
    uint32_t *rule_alt;   /* (n_rules + 1) rule r's alternatives are alt_start[rule_alt[r] ..
                             rule_alt[r + 1]) */
    uint32_t *alt_start;  /* element index where each alternative begins */
    uint32_t n_sets;
    uint64_t (*sets)[4];  /* 256-bit byte sets */
    uint32_t n_refs;
    gr_ref *refs;
    uint32_t root;        /* the rule named root */
    char *source;         /* copy of the text, for line/column of errors found at bind time */
    size_t source_len;
};

static inline bool gr_set_has(const uint64_t *set, uint8_t b) {
    return (set[b >> 6] >> (b & 63)) & 1;
}

/* Line and column (1-based, columns in bytes) of offset in text. */
void gr_line_col(const char *text, size_t len, size_t offset, int *line, int *col);

#endif /* LM_GRAMMAR_INTERNAL_H */
