/* locallm.h: the one public header of locallm, a C runtime for local LLMs.
 *
 * Conventions (see STYLE.md):
 *  - Every fallible call returns lm_status. Constructors fill the caller's lm_error; calls on a
 *    live handle also keep the message in the handle (lm_session_errmsg).
 *  - Who frees what is said beside each declaration. Every _free accepts NULL.
 *  - Structs handed in by the caller start from their *_default_params() and only grow at the end.
 *  - An lm_model is immutable after load and may be shared by threads; an lm_session is used by
 *    one thread at a time (lm_session_cancel is the one call allowed from another thread).
 */
#ifndef LOCALLM_H
#define LOCALLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LM_VERSION "0.1.0"

typedef int32_t lm_token;

/* Status codes are numbered forever: add at the end, never reuse. */
typedef enum lm_status {
    LM_OK = 0,
    LM_ERR_IO = 1,          /* a file could not be opened, read or written */
    LM_ERR_FORMAT = 2,      /* the input is malformed (file, JSON, template, request) */
    LM_ERR_UNSUPPORTED = 3, /* well-formed but not something locallm can run (arch, quant type) */
    LM_ERR_NOMEM = 4,       /* an allocation failed */
    LM_ERR_MISUSE = 5,      /* the caller broke a contract (NULL handle, freed model, bad params) */
    LM_ERR_CANCELLED = 6,   /* a callback or lm_session_cancel() asked to stop */
    LM_ERR_TOO_SMALL = 7,   /* a caller buffer is too small; the needed size is reported */
    LM_ERR_NETWORK = 8,     /* a network peer failed or could not be reached */
    LM_ERR_TEMPLATE = 9,    /* a chat template failed to render (raise_exception, runaway) */
    LM_ERR_CONTEXT = 10,    /* the prompt cannot fit the context window */
} lm_status;

/* Static string naming the code ("LM_ERR_FORMAT"); never NULL. */
const char *lm_status_str(lm_status s);

/* Filled by constructors on failure; no allocation on the error path. */
typedef struct lm_error {
    lm_status code;
    char msg[256];
} lm_error;

/* Log sink. level: 0 error, 1 warning, 2 info, 3 debug. msg is valid during the call only. */
typedef void (*lm_log_fn)(int level, const char *msg, void *user);
/* Load progress in [0,1] with a short stage name. Return non-zero to cancel the load. */
typedef int (*lm_progress_fn)(float fraction, const char *stage, void *user);

/* ---- models ----------------------------------------------------------------------------------- */

typedef struct lm_model lm_model;

typedef struct lm_model_params {
    int32_t n_threads;        /* 0: one per online core */
    bool use_mmap;            /* false: read the weights into owned memory */
    bool force_ref_kernels;   /* run every kernel on the plain C reference path (bisecting) */
    lm_progress_fn progress;  /* may be NULL */
    void *progress_user;
    lm_log_fn log;            /* may be NULL: the library stays silent */
    void *log_user;
    const char *chat_template;/* NULL: the model's own; else a built-in name ("llama3", "mistral",
                                 "chatml", "zephyr") or Jinja source text. Copied. */
} lm_model_params;

lm_model_params lm_model_default_params(void);

/* Loads a GGUF file or a Hugging Face model folder (safetensors + config.json, MLX quantized
 * folders too). On success *out owns the model; free it with lm_model_free(). Sessions made from
 * a model must be freed before it; a session used after its model is freed reports LM_ERR_MISUSE. */
lm_status lm_model_load(const char *path, const lm_model_params *params, lm_model **out,
                        lm_error *err);
void lm_model_free(lm_model *m);

typedef struct lm_model_info {
    const char *arch;         /* "llama", "qwen2", ...; owned by the model */
    const char *format;       /* "gguf", "safetensors", "mlx" */
    const char *kernels;      /* CPU kernel set in use: "ref", "avx2", "avx512", "neon" */
    int32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    float rope_theta, norm_eps;
    uint64_t n_params;        /* parameters, a tied output counted once */
    uint64_t weight_bytes;    /* bytes of tensor data */
    int32_t n_threads;
    const char *quant;        /* weight types by tensor group, e.g. "attn: Q8_0 x15; ffn: Q8_0 x10,
                                 F32 x5; embd: Q8_0; output: tied"; owned by the model */
} lm_model_info;

void lm_model_get_info(const lm_model *m, lm_model_info *out);

/* Bytes of KV cache a session needs per context token (all layers, K and V) with the default
 * F16 cache; twice that with lm_session_params.kv_f32. */
uint64_t lm_model_kv_bytes_per_token(const lm_model *m);

/* ---- tokens ----------------------------------------------------------------------------------- */

enum {
    LM_TOK_ADD_SPECIAL = 1u << 0,   /* add BOS/EOS as the tokenizer's post-processor says */
    LM_TOK_PARSE_SPECIAL = 1u << 1, /* special-token text in the input becomes special tokens;
                                       leave it off for untrusted text */
};

/* Writes up to cap ids into ids and sets *n_out to the number of ids the text needs. If cap is
 * too small returns LM_ERR_TOO_SMALL (nothing else changed); ids may be NULL with cap 0. */
lm_status lm_tokenize(const lm_model *m, const char *text, size_t len, uint32_t flags,
                      lm_token *ids, size_t cap, size_t *n_out, lm_error *err);

/* Decodes ids into text (as the tokenizer's decoder does). Writes at most cap bytes plus a NUL
 * when it fits; *len_out gets the text length. LM_ERR_TOO_SMALL when cap <= length. */
lm_status lm_detokenize(const lm_model *m, const lm_token *ids, size_t n, bool skip_special,
                        char *out, size_t cap, size_t *len_out, lm_error *err);

lm_token lm_token_bos(const lm_model *m); /* -1 when the model has none */
lm_token lm_token_eos(const lm_model *m);
int32_t lm_n_vocab(const lm_model *m);
/* Raw vocabulary entry of id (owned by the model), NULL when out of range. */
const char *lm_token_piece(const lm_model *m, lm_token id);

/* ---- sampling ---------------------------------------------------------------------------------- */

#define LM_MAX_STOP 8

typedef struct lm_gen_params {
    int32_t max_tokens;        /* <= 0: until the context is full */
    float temperature;         /* 0: greedy */
    int32_t top_k;             /* 0: off */
    float top_p;               /* 1: off */
    float min_p;               /* 0: off */
    float repeat_penalty;      /* 1: off */
    float presence_penalty;    /* 0: off */
    float frequency_penalty;   /* 0: off */
    int32_t penalty_last_n;    /* window of the penalties, in tokens; -1: whole history */
    uint64_t seed;
    const char *stop[LM_MAX_STOP]; /* stop strings (NULL-terminated list); never delivered */
    bool ignore_eos;           /* keep going past end-of-generation tokens */
    /* Structured output: set at most one of the three (NULL / false: free text). Texts are
     * borrowed for the call. Sampling then only picks tokens that keep the reply a prefix of a
     * match, and end-of-generation only once it is a whole one, so the reply always matches
     * unless it is cut short (max_tokens, a full context, a stop string, a cancel). A bad
     * grammar or schema fails the call: LM_ERR_FORMAT (with its line and column, or JSON path)
     * or LM_ERR_UNSUPPORTED (a schema keyword locallm cannot enforce, named with its path). */
    const char *grammar;       /* GBNF as llama.cpp's --grammar takes it: rules "name ::= ...",
                                  output starts at "root"; strings, [classes], . ( ) | * + ?
                                  {m,n}, tokens <[id]> / <|text|> / !<...>, # comments */
    const char *json_schema;   /* a JSON Schema (the subset OpenAI's strict mode accepts: type,
                                  properties, required, additionalProperties, items, min/maxItems,
                                  min/maxLength, enum, const, anyOf, $ref/$defs); the reply is one
                                  JSON value it allows, key order as listed, optional keys may be
                                  left out */
    bool json_object;          /* any JSON object (OpenAI's response_format "json_object") */
} lm_gen_params;

lm_gen_params lm_gen_default_params(void);

/* ---- sessions ---------------------------------------------------------------------------------- */

typedef struct lm_session lm_session;

typedef struct lm_session_params {
    int32_t n_ctx;            /* context window in tokens; 0: the model's, capped at 4096 */
    int32_t n_batch;          /* prefill micro-batch; 0: default (64) */
    bool kv_f32;              /* keep the KV cache in F32 (default false: F16, half the memory
                                 and bandwidth, relative error about 5e-4 per element) */
} lm_session_params;

lm_session_params lm_session_default_params(void);

/* A session borrows the model, which must outlive it. *out is freed with lm_session_free(). */
lm_status lm_session_new(lm_model *m, const lm_session_params *p, lm_session **out, lm_error *err);
void lm_session_free(lm_session *s);

/* Last error message on this session; valid until the next call on it. Never NULL. */
const char *lm_session_errmsg(const lm_session *s);

/* Appends ids to the session's context and runs them through the model in batches. When
 * logits is not NULL it receives n_vocab floats: the logits after the last id. When
 * all_logits is not NULL it receives n * n_vocab floats, one row per position. */
lm_status lm_session_eval(lm_session *s, const lm_token *ids, size_t n, float *logits,
                          float *all_logits);

/* Number of tokens in the context (processed into the KV cache). */
size_t lm_session_n_past(const lm_session *s);
/* Cuts the context back to its first n tokens. */
lm_status lm_session_truncate(lm_session *s, size_t n);
/* Tokens currently in the context; owned by the session, valid until the next call on it. */
const lm_token *lm_session_tokens(const lm_session *s);

/* Callback receiving generated text as it is produced: complete UTF-8 only, stop strings never
 * included. Return non-zero to stop (the call then returns LM_ERR_CANCELLED... see finish). */
typedef int (*lm_piece_fn)(const char *utf8, size_t len, void *user);

typedef enum lm_finish {
    LM_FINISH_NONE = 0,
    LM_FINISH_STOP = 1,       /* end-of-generation token or stop string */
    LM_FINISH_LENGTH = 2,     /* max_tokens or context full */
    LM_FINISH_CANCELLED = 3,  /* callback or lm_session_cancel() */
    LM_FINISH_ERROR = 4,
} lm_finish;

/* Name of a finish reason as OpenAI spells it ("stop", "length", "cancelled", "error"). */
const char *lm_finish_str(lm_finish f);

typedef struct lm_gen_stats {
    int32_t n_prompt;          /* prompt tokens of this call */
    int32_t n_cached;          /* of those, reused from the KV cache */
    int32_t n_prefilled;       /* of those, evaluated now */
    int32_t n_generated;
    double tokenize_ms;        /* template rendering + tokenization */
    double prefill_ms;
    double ttft_ms;            /* from the call's start to the first delivered piece */
    double decode_ms;
    double decode_tok_s;
    double prefill_tok_s;
    double itl_p50_ms, itl_p95_ms; /* inter-token latency */
    lm_finish finish;
    lm_token stop_token;       /* the end-of-generation id that stopped it, or -1 */
    int32_t n_dropped_messages;/* messages trimmed to fit the context */
    bool from_cache;           /* answered by the response cache */
} lm_gen_stats;

/* Continues the session's context with the prompt text (tokenized with LM_TOK_PARSE_SPECIAL
 * and, if the context is empty, LM_TOK_ADD_SPECIAL) and generates. A callback that returns
 * non-zero ends it with finish = LM_FINISH_CANCELLED and status LM_OK. */
lm_status lm_session_complete(lm_session *s, const char *prompt, size_t len,
                              const lm_gen_params *gp, lm_piece_fn fn, void *user,
                              lm_gen_stats *stats);

/* Generates from a token prompt, appended to the context. */
lm_status lm_session_generate(lm_session *s, const lm_token *prompt, size_t n,
                              const lm_gen_params *gp, lm_piece_fn fn, void *user,
                              lm_gen_stats *stats);

/* Asks the session's running call to stop as soon as it can (within one micro-batch).
 * Safe to call from any thread. The flag is cleared at the start of the next call. */
void lm_session_cancel(lm_session *s);

/* ---- chat ------------------------------------------------------------------------------------ */

/* One message in OpenAI form. Strings are borrowed for the duration of the call. */
typedef struct lm_message {
    const char *role;            /* "system", "user", "assistant", "tool" */
    const char *content;         /* may be NULL (an assistant turn with only tool calls) */
    const char *tool_calls_json; /* assistant: JSON array of OpenAI tool calls, or NULL */
    const char *tool_call_id;    /* tool: the call answered, or NULL */
    const char *name;            /* tool: function name, or NULL */
} lm_message;

typedef struct lm_chat_params {
    const char *tools_json;      /* JSON array of tool schemas (OpenAI form), or NULL */
    const char *vars_json;       /* JSON object of extra template variables, or NULL */
    bool add_generation_prompt;  /* default true */
    int32_t max_messages;        /* keep at most this many non-system messages; 0: no limit
                                    (default 10, as the guide suggests) */
    bool no_trim;                /* fail with LM_ERR_CONTEXT instead of dropping old turns */
} lm_chat_params;

lm_chat_params lm_chat_default_params(void);

/* Renders messages with the model's chat template into out (cap bytes incl. NUL);
 * LM_ERR_TOO_SMALL with *len_out set when it does not fit. LM_ERR_TEMPLATE for template errors
 * (raise_exception's message is kept). */
lm_status lm_chat_render(const lm_model *m, const lm_message *msgs, size_t n,
                         const lm_chat_params *cp, char *out, size_t cap, size_t *len_out,
                         lm_error *err);

/* One chat turn: renders the whole message list (as an OpenAI client sends it), reuses the
 * longest common prefix of the session's cached tokens, prefills only the rest, and generates.
 * Old turns are dropped (system prompt kept) when the prompt plus max_tokens would not fit.
 * stats reports cached/prefilled tokens and how many messages were dropped. */
lm_status lm_session_chat(lm_session *s, const lm_message *msgs, size_t n,
                          const lm_chat_params *cp, const lm_gen_params *gp, lm_piece_fn fn,
                          void *user, lm_gen_stats *stats);

/* Prefills a conversation whose last user message is still being spoken (partial text). May be
 * called repeatedly with growing or corrected text; rolls back what changed. The next
 * lm_session_chat with the final text then only prefills the tail. Cancellable. */
lm_status lm_session_prefill_partial(lm_session *s, const lm_message *msgs, size_t n,
                                     const lm_chat_params *cp);

/* Runs a short generation so the first real request is not cold (page faults, caches). */
lm_status lm_model_warmup(lm_model *m, lm_error *err);

/* ---- model references ------------------------------------------------------------------------ */

/* Resolves a model reference into out (cap bytes): an existing file or folder is returned as is;
 * otherwise "org/name[@revision]" (revision default "main", or a commit hash) is looked up in
 * the Hugging Face cache folder cache_dir as huggingface_hub lays it out, giving the snapshot
 * folder. Ids with "..", absolute parts or odd characters are refused before any file access.
 * The library reads no environment: the caller picks cache_dir ($HF_HUB_CACHE, else
 * $HF_HOME/hub, else ~/.cache/huggingface/hub is the usual rule). */
lm_status lm_resolve_model(const char *ref, const char *cache_dir, char *out, size_t cap,
                           lm_error *err);

/* ---- providers: one interface for the local model and OpenAI-compatible endpoints ------------ */

typedef struct lm_provider lm_provider;

typedef struct lm_openai_params {
    const char *name;          /* shown in results ("openai", "groq"); copied */
    const char *base_url;      /* e.g. "https://api.openai.com/v1"; copied */
    const char *model;         /* model name sent in requests; copied */
    const char *api_key;       /* may be NULL; copied, never logged */
    int32_t connect_timeout_ms;    /* 0: 5000 */
    int32_t first_byte_timeout_ms; /* 0: 15000; no byte of the answer by then: fail */
    int32_t total_timeout_ms;      /* 0: none */
} lm_openai_params;

/* An OpenAI-compatible chat endpoint (OpenAI, Groq, vLLM, llama.cpp, locallm serve), streamed
 * over SSE. *out freed with lm_provider_free. */
lm_status lm_provider_openai_new(const lm_openai_params *p, lm_provider **out, lm_error *err);
/* The local model behind the same interface; it owns one session on m (m must outlive it). */
lm_status lm_provider_local_new(lm_model *m, const lm_session_params *sp, lm_provider **out,
                                lm_error *err);
/* A fallback manager over providers (borrowed; they must outlive it), tried in order: one that
 * is not ready or fails before its first piece is skipped; once text has streamed, a failure
 * is reported, not retried elsewhere. */
lm_status lm_provider_fallback_new(lm_provider *const *list, size_t n, lm_provider **out,
                                   lm_error *err);
void lm_provider_free(lm_provider *p);

/* Owned by the provider. */
const char *lm_provider_name(const lm_provider *p);
bool lm_provider_is_ready(lm_provider *p);
/* A streamed chat turn. err gets the reason on failure (the server's own message for HTTP
 * errors). stats may be NULL; remote providers fill what the server reports. */
lm_status lm_provider_chat(lm_provider *p, const lm_message *msgs, size_t n,
                           const lm_chat_params *cp, const lm_gen_params *gp, lm_piece_fn fn,
                           void *user, lm_gen_stats *stats, lm_error *err);
/* Stops the running chat call as soon as possible; safe from any thread. */
void lm_provider_cancel(lm_provider *p);
/* For a fallback manager: the name of the provider that answered the last call (NULL if none)
 * and why others were skipped ("local: not ready; groq: HTTP 503 ..."). Owned by p. */
const char *lm_provider_answered_by(const lm_provider *p);
const char *lm_provider_skipped(const lm_provider *p);

/* ---- response cache ------------------------------------------------------------------------ */

/* An LRU of replies to common short exchanges, keyed by the rendered prompt and the sampling
 * parameters, used only for greedy (temperature 0) chat turns. Thread-safe; may be shared by
 * sessions. A hit delivers the cached text without running the model. */
typedef struct lm_response_cache lm_response_cache;
/* capacity: entries kept (0: 256). NULL on NOMEM. */
lm_response_cache *lm_response_cache_new(size_t capacity);
void lm_response_cache_free(lm_response_cache *c);
/* Attaches c (borrowed; NULL detaches) to the session's lm_session_chat calls. */
void lm_session_set_response_cache(lm_session *s, lm_response_cache *c);
/* Hits and misses so far. */
void lm_response_cache_stats(const lm_response_cache *c, uint64_t *hits, uint64_t *misses);

/* ---- voice: sentence chunking ----------------------------------------------------------------- */

/* Cuts a streamed reply into chunks a text-to-speech engine can speak as soon as each is
 * complete (locallm voice uses it; any TTS loop can). Feed it the pieces lm_piece_fn delivers;
 * it calls back once per chunk. The chunks do not depend on how the text was split into pieces
 * (a piece may even end inside a UTF-8 sequence); invalid UTF-8 passes through.
 *
 * Where a chunk ends:
 *  - at a newline (empty lines give no chunk);
 *  - after . ! ? ... (and runs such as "?!" or "..."), with any closing quotes or brackets right
 *    after them, once white space follows and the next word does not start with a lowercase
 *    letter ("Wait... what?" is one chunk, "Wait... Then" two);
 *  - right after CJK and other space-less sentence marks (e.g. U+3002, U+FF01, U+FF1F, U+061F,
 *    U+0964), with their closers;
 *  - optionally, the first chunk of a reply at a clause mark (, ; : followed by white space, a
 *    dash, U+3001, U+FF0C) once it holds first_chunk_min_chars characters, so audio starts sooner;
 *  - optionally, past max_chunk_chars at the next white space or clause mark.
 * Not after titles and common abbreviations (Dr. Mr. e.g. i.e. vs. z.B. ...), a single capital
 * ("J. R. R. Tolkien"), upper-case initialisms (U.S.), reference words before a digit (No. 5,
 * Fig. 2) or a number starting a line (a list marker). Decimals, times, versions, URLs and e-mail
 * addresses are never cut. Chunks are trimmed of white space and never empty; list markers
 * ("- ", "* ", "1. ") at the start of a line are removed unless keep_list_markers is set.
 * Known miss: German ordinals before a noun ("am 3. Oktober") are cut. */
typedef struct lm_sentences lm_sentences;

typedef struct lm_sentences_params {
    size_t first_chunk_min_chars; /* 0: off. N: the first chunk of a reply may end at a clause
                                     mark once it holds N characters (code points from its first
                                     non-space); counts again after flush/reset */
    size_t max_chunk_chars;       /* 0: no limit. N: a chunk of N characters is cut at the next
                                     white space or clause mark (one long word is never cut) */
    bool keep_list_markers;       /* false: list markers starting a line are removed */
} lm_sentences_params;

/* All zero: sentence ends only, no limit, markers removed. A voice loop might use 20 and 300. */
lm_sentences_params lm_sentences_default_params(void);

/* Receives each chunk: trimmed, non-empty, len bytes at text (NUL-terminated at text[len]),
 * valid only during the call. Return non-zero to stop: the push or flush that called it returns
 * LM_ERR_CANCELLED and nothing more is emitted until lm_sentences_flush/reset. Must not call the
 * chunker it came from. */
typedef int (*lm_sentence_fn)(const char *text, size_t len, void *user);

/* p may be NULL (defaults); p is copied. NULL when fn is NULL or memory is short. Free with
 * lm_sentences_free(). One chunker per reply stream; not for several threads at once. */
lm_sentences *lm_sentences_new(const lm_sentences_params *p, lm_sentence_fn fn, void *user);

/* Appends a piece of the reply (any bytes; len may be 0) and emits every chunk now known to be
 * complete. LM_OK, LM_ERR_NOMEM (the piece was not taken; the chunker is unchanged),
 * LM_ERR_CANCELLED (the callback asked to stop, now or earlier; the piece is dropped) or
 * LM_ERR_MISUSE (NULL s, or NULL piece with len > 0). Allocates only when the text not emitted
 * yet outgrows its buffer, never per piece. */
lm_status lm_sentences_push(lm_sentences *s, const char *piece, size_t len);

/* End of the reply: emits what is left (an unterminated last sentence too), then is ready for
 * the next reply as after lm_sentences_reset(). LM_OK, LM_ERR_CANCELLED or LM_ERR_MISUSE. */
lm_status lm_sentences_flush(lm_sentences *s);

/* Drops the pending text and a stop; keeps the buffer's memory. Accepts NULL. */
void lm_sentences_reset(lm_sentences *s);

/* Text pushed but not emitted yet (untrimmed); owned by s, valid until the next call on s. */
const char *lm_sentences_pending(const lm_sentences *s, size_t *len);

/* Message of the last error on s ("" when none); owned by s. */
const char *lm_sentences_errmsg(const lm_sentences *s);

/* Accepts NULL. */
void lm_sentences_free(lm_sentences *s);

/* ---- misc --------------------------------------------------------------------------------------- */

/* Version string, static. */
const char *lm_version(void);

#ifdef __cplusplus
}
#endif
#endif /* LOCALLM_H */
