/* tokenizer/tokenizer.h: the internal header of src/tokenizer.
 * Owns: vocabularies and their encoders/decoders: SentencePiece-style and byte-level BPE from GGUF
 * metadata (tokenizer.ggml.*) and from Hugging Face tokenizer.json (+ tokenizer_config.json),
 * with normalizers, pre-tokenizers, post-processors, decoders and added/special tokens, exactly as
 * the Hugging Face `tokenizers` library behaves; streaming UTF-8-safe decoding.
 * Does not own: chat templates (chat/), though it keeps the template text tokenizer_config.json
 * carries so chat/ can render it. */
#ifndef LM_TOKENIZER_H
#define LM_TOKENIZER_H

#include "core/core.h"
#include "formats/formats.h"

typedef struct tok_tokenizer tok_tokenizer;

/* Token kinds, numbered as GGUF's tokenizer.ggml.token_type (a format fact). */
enum tok_kind {
    TOK_KIND_UNDEFINED = 0, TOK_KIND_NORMAL = 1, TOK_KIND_UNKNOWN = 2, TOK_KIND_CONTROL = 3,
    TOK_KIND_USER_DEFINED = 4, TOK_KIND_UNUSED = 5, TOK_KIND_BYTE = 6,
};

/* A growable list of token ids. */
typedef struct tok_vec {
    lm_token *ids;
    size_t n, cap;
} tok_vec;
bool tok_vec_push(tok_vec *v, lm_token id);
bool tok_vec_append(tok_vec *v, const lm_token *ids, size_t n);
void tok_vec_free(tok_vec *v);

/* From GGUF metadata: tokenizer.ggml.model "llama" (SentencePiece) or "gpt2" (byte-level BPE with
 * tokenizer.ggml.pre), tokens, scores, token_type, merges, bos/eos/unk/pad ids, add_bos_token,
 * add_eos_token, add_space_prefix, tokenizer.chat_template. */
lm_status tok_load_gguf(const gguf_file *g, tok_tokenizer **out, lm_error *err);
/* From a tokenizer.json and (optional, may be NULL) tokenizer_config.json. */
lm_status tok_load_json(const char *tokenizer_json, const char *tokenizer_config,
                        tok_tokenizer **out, lm_error *err);
/* Same from text already in memory (tests, fuzzing). config_text may be NULL. */
lm_status tok_load_json_text(const char *json, size_t len, const char *config_text,
                             size_t config_len, const char *name, tok_tokenizer **out,
                             lm_error *err);
/* From a folder holding tokenizer.json [+ tokenizer_config.json]. */
lm_status tok_load_dir(const char *dir, tok_tokenizer **out, lm_error *err);
void tok_free(tok_tokenizer *t);

/* Appends the ids of text to out. flags: LM_TOK_ADD_SPECIAL (BOS/EOS per the post-processor /
 * add_bos_token), LM_TOK_PARSE_SPECIAL (special/added-token text in the input is matched). */
lm_status tok_encode(const tok_tokenizer *t, const char *text, size_t len, uint32_t flags,
                     tok_vec *out, lm_error *err);
/* Decodes ids (as the decoder pipeline does) and appends the text to out. */
lm_status tok_decode(const tok_tokenizer *t, const lm_token *ids, size_t n, bool skip_special,
                     lm_buf *out, lm_error *err);

/* Streaming decode: feed ids one at a time; complete UTF-8 text is appended to out as soon as
 * it is final. The concatenation of everything appended (after tok_stream_finish) equals
 * tok_decode of the same ids. Free with tok_stream_free. */
typedef struct tok_stream tok_stream;
tok_stream *tok_stream_new(const tok_tokenizer *t, bool skip_special);
lm_status tok_stream_push(tok_stream *s, lm_token id, lm_buf *out);
lm_status tok_stream_finish(tok_stream *s, lm_buf *out); /* flushes held-back bytes */
void tok_stream_free(tok_stream *s);

int32_t tok_n_vocab(const tok_tokenizer *t);
/* Raw vocabulary string of id (NUL-terminated, owned by t), NULL when out of range. */
const char *tok_piece(const tok_tokenizer *t, lm_token id);
/* Id of an exact vocabulary / added-token string, or -1. */
lm_token tok_find(const tok_tokenizer *t, const char *piece);
int tok_kind(const tok_tokenizer *t, lm_token id);
bool tok_is_special(const tok_tokenizer *t, lm_token id); /* control / special added token */
lm_token tok_bos(const tok_tokenizer *t); /* -1 if none */
lm_token tok_eos(const tok_tokenizer *t);
/* The text form of the bos/eos tokens as the template sees them ("" if none). Owned by t. */
const char *tok_bos_text(const tok_tokenizer *t);
const char *tok_eos_text(const tok_tokenizer *t);
bool tok_adds_bos(const tok_tokenizer *t);
/* Chat template carried by the tokenizer files: name NULL or "default" for the default one,
 * "tool_use" etc. for named ones; NULL when absent. Owned by t. */
const char *tok_chat_template(const tok_tokenizer *t, const char *name);
/* "llama" (SentencePiece), "gpt2" (byte-level BPE), "bpe" (tokenizer.json BPE) */
const char *tok_model_name(const tok_tokenizer *t);

/* ---- the vocabulary as bytes (grammar-constrained sampling, sample/grammar.c) ---- */

/* Appends the bytes id decodes to in the middle of a text (as tok_stream delivers them after
 * other tokens: SentencePiece's U+2581 becomes a space, <0xNN> one byte, byte-level pieces their
 * bytes, added tokens their text; no leading space is stripped). false on NOMEM or a bad id. */
bool tok_token_bytes(const tok_tokenizer *t, lm_token id, lm_buf *out);

/* The text tokens as a byte trie in preorder (children in byte order), so a walk can skip a
 * whole subtree in one step. Text tokens are those that decode to at least one byte and are not
 * special (control, special added tokens, unknown, unused); they are the tokens a grammar
 * constrains by their bytes. Node 0 is the root (the empty prefix). */
typedef struct tok_trie {
    int32_t n_vocab;        /* the tokenizer's */
    uint32_t n_nodes;
    uint32_t max_depth;     /* the longest token, in bytes */
    const uint8_t *byte;    /* (n_nodes) the byte on the edge into node i (0 for the root) */
    const uint16_t *depth;  /* (n_nodes) bytes from the root to node i */
    const uint32_t *skip;   /* (n_nodes) the first node after the subtree of node i */
    const int32_t *tok;     /* (n_nodes) a token whose bytes end at node i, or -1 */
    const int32_t *next;    /* (n_vocab) the next token with the same bytes, or -1 */
    const uint32_t *off;    /* (n_vocab) where the token's bytes start in bytes */
    const uint16_t *len;    /* (n_vocab) how many; 0 for a token that is not in the trie */
    const uint8_t *bytes;
} tok_trie;

/* Built on the first call (about 30 ms for a 150k vocabulary) and kept by t until tok_free;
 * safe to call from several threads. Tokens longer than 65535 bytes are left out. NULL on
 * NOMEM. */
const tok_trie *tok_get_trie(const tok_tokenizer *t);

#endif /* LM_TOKENIZER_H */
