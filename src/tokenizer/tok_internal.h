/* tokenizer/tok_internal.h: what the files of src/tokenizer share and nobody else sees.
 * Owns: the tok_tokenizer layout, the piece -> id hash, the pair -> merge hash and the merge
 * engine both the GGUF and the tokenizer.json loaders drive. */
#ifndef LM_TOK_INTERNAL_H
#define LM_TOK_INTERNAL_H

#include "tokenizer/tokenizer.h"

#include <stdatomic.h>

enum tok_model { TOK_MODEL_SPM, TOK_MODEL_BPE };

/* Open-addressing hash of vocabulary strings to ids. */
typedef struct tok_strmap {
    uint64_t *slots; /* (hash high 32 bits << 32) | id; UINT64_MAX for an empty slot */
    size_t mask;
} tok_strmap;

/* Open-addressing hash of (left id, right id) to (rank, merged id). */
typedef struct tok_merge {
    uint64_t key; /* (left << 32) | right; UINT64_MAX for an empty slot */
    int32_t rank, id;
} tok_merge;

typedef struct tok_mergemap {
    tok_merge *slots;
    size_t mask, n;
} tok_mergemap;

struct tok_json_pipe; /* tok_json.c */

/* How ids become text: a per-token rule list, enough for every decoder pipeline we accept. */
typedef struct tok_decode_rules {
    bool byte_level;    /* pieces are GPT-2 byte-level unicode */
    bool byte_fallback; /* <0xNN> pieces are bytes */
    char space_char[8]; /* replaced by ' ' ("" for none), e.g. U+2581 */
    int strip_first;    /* leading spaces removed from the first decoded piece */
} tok_decode_rules;

struct tok_tokenizer {
    int32_t n_vocab; /* vocabulary plus added tokens */
    char **pieces;   /* NUL-terminated, pointing into arena */
    char *arena;
    uint32_t *piece_len;
    float *scores;    /* SPM scores, or NULL */
    uint8_t *kinds;   /* enum tok_kind */
    uint8_t *special; /* added token flagged special (json) or control (gguf) */
    tok_strmap map;
    tok_mergemap merges;
    int32_t byte_ids[256]; /* id of <0xNN>, or -1 */
    uint32_t byte_cp[256]; /* GPT-2 byte-level: code point standing for each byte */
    int16_t cp_byte[324];  /* inverse, -1 where none */
    int32_t bl_ids[256];   /* byte-level: id of the one-character piece standing for each byte,
                              -1 where the vocabulary has none */
    enum tok_model model;
    char model_name[8];
    lm_token bos, eos, unk;
    bool add_bos, add_eos, add_space_prefix;
    bool byte_fallback, fuse_unk, ignore_merges;
    tok_decode_rules dec;
    char *bos_text, *eos_text;
    char *chat_template;
    size_t n_named_templates;
    char **template_names, **template_texts;
    struct tok_json_pipe *pipe; /* tokenizer.json pipeline, NULL for GGUF */
    /* Tokens matched in the raw text (control/user-defined/added), longest first. */
    int32_t *match_ids;
    size_t n_match;
    bool match_first[256]; /* some match-list token starts with this byte */
    /* The byte trie, built on first use by tok_get_trie (trie.c). Published with a
     * compare-and-swap, so a lost race frees its copy; zeroed by calloc like the rest. */
    _Atomic(tok_trie *) trie;
};

/* trie.c */
void tok_trie_free(tok_trie *tr);

uint64_t tok_hash(const char *s, size_t n);
/* Builds t->map over pieces [0, n_vocab). false on NOMEM. Later duplicates keep the first id. */
bool tok_strmap_build(tok_tokenizer *t);
int32_t tok_strmap_get(const tok_tokenizer *t, const char *s, size_t n);
bool tok_mergemap_init(tok_mergemap *m, size_t n);
void tok_mergemap_put(tok_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
const tok_merge *tok_mergemap_get(const tok_mergemap *m, int32_t a, int32_t b);
/* A merge as text: left and right pieces (not NUL-terminated). */
typedef struct tok_merge_text {
    const char *a, *b;
    uint32_t la, lb;
} tok_merge_text;
/* Puts merges m[0..n) into t->merges (already initialised for n) with rank = index, after
 * t->map is built. Returns SIZE_MAX, or the index of the first merge whose left, right or joined
 * piece is not in the vocabulary (the merges before it are in). */
size_t tok_merges_build(tok_tokenizer *t, const tok_merge_text *m, size_t n);

/* Frees the vocabulary, hashes, templates and t itself, not t->pipe or the trie (tok_free does
 * those too): what tok_json.c's loader undoes on failure. */
void tok_free_vocab(tok_tokenizer *t);
/* Allocates pieces/lengths/kinds/special (and scores when with_scores) for n tokens whose text
 * takes arena_bytes in total (NULs included). */
bool tok_alloc_vocab(tok_tokenizer *t, int32_t n, size_t arena_bytes, bool with_scores);
/* Sorts the match list (longest first) from the ids whose kinds/special say so. */
bool tok_build_match_list(tok_tokenizer *t, bool json);

/* SentencePiece score merging of one span (already with U+2581 for spaces); appends ids. */
bool tok_spm_encode_span(const tok_tokenizer *t, const char *s, size_t n, tok_vec *out);
/* Rank merging of one pre-token word (BPE); appends ids. byte_level maps bytes through the
 * GPT-2 table first. */
bool tok_bpe_encode_word(const tok_tokenizer *t, const char *s, size_t n, bool byte_level,
                         tok_vec *out);

/* Length of the well-formed UTF-8 sequence at s, or 0 with *bad = bytes one U+FFFD replaces. */
size_t tok_utf8_seq_ok(const unsigned char *s, size_t n, size_t *bad);
/* Fills byte_cp/cp_byte, the GPT-2 byte <-> code point tables, and bl_ids (after t->map). */
void tok_fill_byte_tables(tok_tokenizer *t);

/* tok_json.c */
lm_status tok_json_encode(const tok_tokenizer *t, const char *text, size_t len, uint32_t flags,
                          tok_vec *out, lm_error *err);
void tok_json_pipe_free(struct tok_json_pipe *p);
/* Byte-level BPE pipeline for a GGUF "gpt2" vocabulary: the pre-tokenizer regex named by
 * tokenizer.ggml.pre (NULL: GPT-2's). Sets t->pipe. */
lm_status tok_json_pipe_gguf(tok_tokenizer *t, const char *pre, lm_error *err);

#endif /* LM_TOK_INTERNAL_H */
