/* sample/sample.h: the internal header of src/sample.
 * Owns: turning logits into the next token (penalties, top-k, top-p, min-p, temperature, seed);
 * structured output: grammars (grammar.c), their state against a vocabulary (matcher.c) and
 * JSON Schema to grammar (json_schema.c); and the stop-string matcher that holds back text which
 * could still become a stop string. */
#ifndef LM_SAMPLE_H
#define LM_SAMPLE_H

#include "core/core.h"
#include "tokenizer/tokenizer.h"

/* ---- grammars (grammar.c, matcher.c) ---- */

/* A compiled grammar: immutable, independent of any vocabulary. The syntax is described at the
 * top of grammar.c (GBNF as llama.cpp users write it). */
typedef struct smp_grammar smp_grammar;

/* Compiles grammar text. Errors are LM_ERR_FORMAT "grammar line L column C: what was wrong".
 * *out is freed with smp_grammar_free. */
lm_status smp_grammar_compile(const char *text, size_t len, smp_grammar **out, lm_error *err);
void smp_grammar_free(smp_grammar *g);

/* A grammar's state while generating over one vocabulary: which tokens may come next, and
 * advancing by the chosen one. Borrows g and tok (they must outlive it). One thread at a time. */
typedef struct smp_matcher smp_matcher;

/* tok may be NULL (bytes only: smp_matcher_accept_bytes; token references must be ids then).
 * eog: the end-of-generation ids, allowed exactly where the grammar may end. n_vocab: the ids
 * the masks cover (the model's logits; ids the tokenizer lacks are never allowed). Token
 * references that name no token fail here with LM_ERR_FORMAT and the line/column. */
lm_status smp_matcher_new(const smp_grammar *g, const tok_tokenizer *tok, const lm_token *eog,
                          size_t n_eog, size_t n_vocab, smp_matcher **out, lm_error *err);
void smp_matcher_free(smp_matcher *m);
/* The tokens that may come next, one bit per id (n_vocab bits, bit i of word i/64), and their
 * count. Computed on first use for each state and cached; owned by m, valid until the next
 * accept. NULL when memory ran out. The same call may run on another thread while the forward
 * pass computes the logits, as long as nothing else touches m meanwhile. */
const uint64_t *smp_matcher_mask(smp_matcher *m, uint32_t *n_allowed);
/* Whether id may come next (cheaper than a mask when the state has none cached yet). */
bool smp_matcher_allows(smp_matcher *m, lm_token id);
/* Whether the bytes s[0..n) may come next (the state is not changed). */
bool smp_matcher_allows_bytes(smp_matcher *m, const char *s, size_t n);
/* Advances by one token: LM_ERR_MISUSE (state unchanged) when it is not allowed. After an
 * end-of-generation token only more of those are allowed. */
lm_status smp_matcher_accept(smp_matcher *m, lm_token id);
/* Advances by bytes (forced text, tests): LM_ERR_MISUSE (unchanged) when they break it. */
lm_status smp_matcher_accept_bytes(smp_matcher *m, const char *s, size_t n);
/* The output so far is a complete match of the grammar (an end-of-generation token may come). */
bool smp_matcher_can_end(const smp_matcher *m);
/* An end-of-generation token was accepted. */
bool smp_matcher_done(const smp_matcher *m);
/* Cache sizes, for tests and benchmarks. */
void smp_matcher_stats(const smp_matcher *m, size_t *n_states, size_t *n_frames);

static inline uint32_t smp_popcount64(uint64_t x) {
#if defined(__GNUC__)
    return (uint32_t)__builtin_popcountll(x);
#else
    uint32_t c = 0;
    for (; x; x &= x - 1) c++;
    return c;
#endif
}

static inline uint32_t smp_ctz64(uint64_t x) { /* x != 0 */
#if defined(__GNUC__)
    return (uint32_t)__builtin_ctzll(x);
#else
    uint32_t c = 0;
    while (!(x & 1)) {
        x >>= 1;
        c++;
    }
    return c;
#endif
}

/* ---- JSON Schema to grammar (json_schema.c) ---- */

enum {
    SMP_SCHEMA_LENIENT = 1u << 0, /* ignore keywords we cannot enforce (pattern, minimum, ...)
                                     instead of failing: the output still parses */
};

/* Appends to out a grammar whose rule root matches the JSON values schema (JSON text) allows,
 * with optional white space before and after (rules json, json-...).
 * Supported: type (string, number, integer, boolean, null, object, array, or a list of them),
 * properties, required (others optional, in the listed order), additionalProperties (false, or
 * true / a schema; absent: only the listed properties when there are any, like OpenAI's strict
 * mode), items, minItems, maxItems, minLength, maxLength, enum, const, anyOf (and oneOf, taken as
 * anyOf), $ref to #, #/$defs/... and #/definitions/...; annotations (title, description,
 * default, examples, $schema, $id, $comment, format, strict) are ignored. Anything else is
 * LM_ERR_UNSUPPORTED "json_schema: $.path: ..." unless flags has SMP_SCHEMA_LENIENT; a malformed
 * schema is LM_ERR_FORMAT with the path too. */
lm_status smp_json_schema_grammar(const char *schema, size_t len, uint32_t flags, lm_buf *out,
                                  lm_error *err);
/* The same for a parsed schema, appending rules named prefix, prefix-... (prefix is a valid
 * rule name); the value rule is prefix itself. root_doc is the document $ref paths start from
 * (usually schema). what names the schema in errors ("json_schema", "tools[2].parameters"). */
lm_status smp_json_schema_rules(const cJSON *schema, const cJSON *root_doc, const char *prefix,
                                const char *what, uint32_t flags, lm_buf *out, lm_error *err);
/* Appends the grammar of JSON mode: root is any JSON object, optional white space around it. */
bool smp_json_object_grammar(lm_buf *out);

/* ---- the sampler ---- */

/* What a grammar needs of the model: its tokenizer and end-of-generation ids (borrowed). */
typedef struct smp_vocab {
    const tok_tokenizer *tok;
    const lm_token *eog;
    size_t n_eog;
} smp_vocab;

typedef struct smp_sampler {
    lm_gen_params p;
    lm_rng rng;
    size_t n_vocab;
    float *prob;     /* n_vocab scratch */
    int32_t *idx;    /* n_vocab scratch */
    int32_t *counts; /* n_vocab scratch for penalties */
    smp_grammar *grammar; /* owned; NULL when the output is not constrained */
    smp_matcher *matcher; /* owned */
    lm_status status;     /* set when smp_sample could not go on (LM_ERR_NOMEM) */
} smp_sampler;

/* Sets the sampler up for p. When p asks for structured output (grammar, json_schema or
 * json_object), the grammar is compiled here and vocab must give the tokenizer: a bad grammar
 * or schema is LM_ERR_FORMAT / LM_ERR_UNSUPPORTED with the message in err (may be NULL), and
 * asking for more than one of them is LM_ERR_MISUSE. vocab may be NULL without one. */
lm_status smp_init(smp_sampler *s, const lm_gen_params *p, size_t n_vocab, const smp_vocab *vocab,
                   lm_error *err);
void smp_free(smp_sampler *s);
/* Picks the next token. logits (n_vocab) are modified in place. history: tokens so far (for
 * penalties). Deterministic for a given seed and inputs. With a grammar, only tokens that keep
 * the output a prefix of a match are candidates (end-of-generation ids only where it may end),
 * and the grammar then advances by the token picked. Returns -1 when nothing is allowed (the
 * grammar is complete and the model has no end-of-generation id) or on NOMEM (s->status). */
lm_token smp_sample(smp_sampler *s, float *logits, const lm_token *history, size_t n_history);
/* Computes (and caches) the grammar's mask for the next smp_sample now, so a generation loop can
 * run it on another thread while the forward pass computes the logits (nothing else may touch s
 * meanwhile). Does nothing without a grammar or when the mask is cached already. */
void smp_prepare(smp_sampler *s);

/* Stop strings: feed text, get what may be delivered now. */
typedef struct smp_stop {
    const char *const *stop; /* borrowed, NULL-terminated within LM_MAX_STOP */
    size_t n_stop;
    lm_buf pending;
    bool hit;
} smp_stop;

void smp_stop_init(smp_stop *st, const char *const *stop, size_t n);
/* Appends text; appends to out what can be delivered. Sets st->hit when a stop string is found
 * (the stop string and anything after it are dropped). */
void smp_stop_push(smp_stop *st, const char *text, size_t len, lm_buf *out);
/* End of generation: releases held-back text (unless a stop string was hit). */
void smp_stop_flush(smp_stop *st, lm_buf *out);
void smp_stop_free(smp_stop *st);

#endif
