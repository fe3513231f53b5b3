/* locallm.h: the one public header of locallm, a C runtime for local LLMs.
 *
 * Conventions (see STYLE.md). They hold for every declaration below; where one says nothing
 * else, these rules are what it does.
 *  - Names are lm_<object>_<verb>: the object is the handle the call works on (lm_model_tokenize,
 *    lm_session_chat, lm_hub_pull); constructors are lm_<object>_new (lm_model_load for models),
 *    destructors lm_<object>_free, and both accept and leave NULL safely.
 *  - Errors: every fallible call returns lm_status (LM_OK is 0). Where the message goes:
 *      * constructors, and calls on handles that many threads share (lm_model, lm_engine, the
 *        hub and convert calls), fill the caller's lm_error *err (which may be NULL);
 *      * calls on a handle one thread uses at a time keep it on that handle until its next call:
 *        lm_session_errmsg, lm_call_errmsg, lm_sentences_errmsg;
 *      * provider calls keep it on their lm_call (a provider is shared; the call is not).
 *    No message is ever empty after a failure.
 *  - Stopping: every stop the caller asks for (a callback returning non-zero, lm_session_cancel,
 *    lm_call_cancel, a progress callback's cancel) makes the call return LM_ERR_CANCELLED, however
 *    far it got. What was delivered before the stop stays delivered (and, for generation, in the
 *    session's context); stats report finish = LM_FINISH_CANCELLED.
 *  - Const: a call that only reads a handle takes it const (every lm_model call but
 *    lm_model_free); a const handle may be used from any number of threads at once.
 *  - Who frees what is said beside each declaration. Strings a call returns are owned by the
 *    handle and valid until the next call on it, unless said otherwise.
 *  - Structs handed in by the caller start from their *_default_params() and only grow at the end.
 *  - Three objects carry the work: an lm_model (weights, vocabulary, template: immutable after
 *    load, shared by any number of threads), an lm_engine (the compute context on the model's
 *    device: scratch, the CPU thread pool, and the scheduler that merges the steps of its
 *    conversations into shared forward passes), and lm_sessions (one conversation each: tokens
 *    and KV cache). A session is used by one thread at a time; sessions of one engine may be used
 *    from different threads at the same time, and their work then shares passes.
 *  - Lifetimes are reference counted upward: an engine keeps its model alive and a session its
 *    engine, so the handles may be freed in any order (lm_model_free drops the caller's handle;
 *    the weights go when the last engine made on them goes).
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
    LM_ERR_MISUSE = 5,      /* the caller broke a contract (NULL handle or out, bad params) */
    LM_ERR_CANCELLED = 6,   /* the caller asked to stop: a callback, lm_session_cancel, lm_call_cancel */
    LM_ERR_TOO_SMALL = 7,   /* a caller buffer is too small; the needed size is reported */
    LM_ERR_NETWORK = 8,     /* a network peer failed or could not be reached */
    LM_ERR_TEMPLATE = 9,    /* a chat template failed to render (raise_exception, runaway) */
    LM_ERR_CONTEXT = 10,    /* the prompt cannot fit the context window */
    LM_ERR_BUSY = 11,       /* every slot is taken and the wait queue is full */
} lm_status;

/* Static string naming the code ("LM_ERR_FORMAT"); never NULL. */
const char *lm_status_str(lm_status s);

/* Filled by constructors on failure; no allocation on the error path. */
typedef struct lm_error {
    lm_status code;
    char msg[256];
} lm_error;

/* How much a log message matters; a sink may drop the levels it does not want. */
typedef enum lm_log_level {
    LM_LOG_ERROR = 0,   /* a call is about to fail (its status and message say the rest) */
    LM_LOG_WARN = 1,    /* something was not as expected and a fallback was taken */
    LM_LOG_INFO = 2,    /* one line per load step: what was loaded, where it runs, how long it took */
    LM_LOG_DEBUG = 3,   /* details for bisecting (kernel choices, sizes) */
} lm_log_level;

/* Log sink: one line of text (no newline; control characters from files or the network are
 * escaped), valid during the call only. Called from the thread doing the work. */
typedef void (*lm_log_fn)(lm_log_level level, const char *msg, void *user);
/* Load progress in [0,1] with a short stage name. Return non-zero to cancel the load. */
typedef int (*lm_progress_fn)(float fraction, const char *stage, void *user);

/* ---- models ----------------------------------------------------------------------------------- */

typedef struct lm_model lm_model;

typedef struct lm_model_params {
    int32_t n_threads;        /* default CPU threads of engines made on the model (their
                                 lm_engine_params.n_threads 0); 0: one per online core */
    bool use_mmap;            /* false: read the weights into owned memory */
    bool force_ref_kernels;   /* CPU: run every kernel on the plain C reference path (bisecting);
                                 the kernels are chosen once, at load */
    lm_progress_fn progress;  /* may be NULL */
    void *progress_user;
    lm_log_fn log;            /* may be NULL: the library stays silent. Gets the load steps, the
                                 device and kernels chosen, template problems and fallbacks */
    void *log_user;
    const char *chat_template;/* NULL: the model's own; else a built-in name ("llama3", "mistral",
                                 "chatml", "zephyr") or Jinja source text. Copied. */
    const char *device;       /* where the weights live and every engine on them runs: NULL or
                                 "auto" (a GPU when this build has a GPU backend and one is
                                 present, else the CPU), "cpu", "cuda" or "cuda:N". Copied. */
    bool vocab_only;          /* load only the vocabulary and chat template: no weights are read
                                 and the path may also be a tokenizer.json file or a folder of
                                 tokenizer files alone (see lm_model_load) */
} lm_model_params;

lm_model_params lm_model_default_params(void);

/* Loads a GGUF file or a Hugging Face model folder (safetensors + config.json, MLX quantized
 * folders too) and prepares its weights for the device. On success *out is the caller's handle;
 * lm_model_free() drops it (engines made on the model keep it alive until they are freed).
 * With params->vocab_only the path may also be a tokenizer.json file (one named tokenizer.json
 * brings its folder's tokenizer_config.json and chat_template.jinja) or a folder holding
 * tokenizer.json without weights; such a model tokenizes, detokenizes and renders chat
 * templates (lm_model_n_vocab counts the tokenizer's vocabulary), and lm_engine_new refuses it with
 * LM_ERR_UNSUPPORTED. */
lm_status lm_model_load(const char *path, const lm_model_params *params, lm_model **out,
                        lm_error *err);
void lm_model_free(lm_model *m);

typedef struct lm_model_info {
    const char *arch;         /* "llama", "qwen2", ...; owned by the model */
    const char *format;       /* "gguf", "safetensors", "mlx" */
    const char *kernels;      /* the backend's kernels, chosen at load: "ref", "avx2", "avx512",
                                 "neon" on the CPU */
    int32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    float rope_theta, norm_eps;
    uint64_t n_params;        /* parameters, a tied output counted once */
    uint64_t weight_bytes;    /* bytes of tensor data */
    int32_t n_threads;        /* engines' default (lm_model_params.n_threads) */
    const char *quant;        /* weight types by tensor group, e.g. "attn: Q8_0 x15; ffn: Q8_0 x10,
                                 F32 x5; embd: Q8_0; output: tied"; owned by the model */
} lm_model_info;

void lm_model_get_info(const lm_model *m, lm_model_info *out);

/* Bytes of KV cache a session needs per context token (all layers, K and V) with the default
 * F16 cache; twice that with lm_session_params.kv_f32. */
uint64_t lm_model_kv_bytes_per_token(const lm_model *m);

/* ---- engines: where conversations run ------------------------------------------------------- */

typedef struct lm_engine lm_engine;

typedef struct lm_engine_params {
    int32_t n_threads;        /* CPU threads of its pool, the scheduler's own included; 0: the
                                 model's lm_model_params.n_threads */
    int32_t max_batch;        /* tokens per forward pass (a prompt's chunk when it runs alone);
                                 0: 512 */
    int32_t max_seqs;         /* sessions whose tokens one pass may hold; 0: 16 */
    int32_t prefill_chunk;    /* tokens of a prompt per pass while other sessions are generating,
                                 so a long prompt never stalls their streams (the chunk is also
                                 cut so such a pass stays near 120 ms); 0: 128 */
} lm_engine_params;

lm_engine_params lm_engine_default_params(void);

/* An engine on m's device: its scratch, its CPU thread pool (one per engine, never one per
 * session) and a scheduler thread that runs the forward passes of all its sessions. Sessions that
 * work at the same time (from different threads) share passes: a prompt of one is evaluated in
 * chunks between the generation steps of the others, and the next tokens of all that generate are
 * computed in one pass that reads each weight once. The engine holds a reference to m. *out is
 * freed with lm_engine_free (sessions made on it keep it alive until they are freed). */
lm_status lm_engine_new(const lm_model *m, const lm_engine_params *p, lm_engine **out,
                        lm_error *err);
void lm_engine_free(lm_engine *e);
/* The model the engine runs (borrowed: valid while the engine lives). */
const lm_model *lm_engine_model(const lm_engine *e);

/* What the scheduler did so far, for tests and benchmarks. */
typedef struct lm_engine_stats {
    uint64_t n_passes;        /* forward passes run */
    uint64_t n_tokens;        /* tokens evaluated, prompts included */
    uint64_t n_shared;        /* passes that held tokens of two sessions or more */
    int32_t max_seqs_in_pass; /* the most sessions one pass held */
} lm_engine_stats;
void lm_engine_get_stats(const lm_engine *e, lm_engine_stats *out);

/* Runs a short generation so the first real request is not cold (page faults, caches). */
lm_status lm_engine_warmup(lm_engine *e, lm_error *err);

/* ---- tokens: the model's vocabulary ----------------------------------------------------------- */

enum {
    LM_TOK_ADD_SPECIAL = 1u << 0,   /* add BOS/EOS as the tokenizer's post-processor says */
    LM_TOK_PARSE_SPECIAL = 1u << 1, /* special-token text in the input becomes special tokens;
                                       leave it off for untrusted text */
};

/* Tokenizes len bytes of text. Sets *n_out to the number of ids the text needs and, when that is
 * at most cap, writes them to ids; otherwise returns LM_ERR_TOO_SMALL and writes nothing (ids may
 * be NULL with cap 0, to ask for the size). */
lm_status lm_model_tokenize(const lm_model *m, const char *text, size_t len, uint32_t flags,
                      lm_token *ids, size_t cap, size_t *n_out, lm_error *err);

/* Decodes ids into text as the tokenizer's decoder does. *len_out gets the text's length in bytes
 * (the NUL not counted). When cap > that length, the text and a terminating NUL are written to out;
 * otherwise LM_ERR_TOO_SMALL, and out is left unchanged. */
lm_status lm_model_detokenize(const lm_model *m, const lm_token *ids, size_t n, bool skip_special,
                        char *out, size_t cap, size_t *len_out, lm_error *err);

/* The beginning- and end-of-sequence ids, -1 when the model has none. */
lm_token lm_model_token_bos(const lm_model *m);
lm_token lm_model_token_eos(const lm_model *m);
/* The size of the vocabulary (the logits' length). */
int32_t lm_model_n_vocab(const lm_model *m);
/* Raw vocabulary entry of id (owned by the model), NULL when out of range. */
const char *lm_model_token_piece(const lm_model *m, lm_token id);

/* ---- sampling ---------------------------------------------------------------------------------- */

#define LM_MAX_STOP 8
#define LM_MAX_TOP_LOGPROBS 20

/* One generated token, as token_fn sees it: its id and, when top_logprobs >= 0, its log-
 * probability under the model (log-softmax of the raw logits: before temperature, penalties and
 * the other samplers) and the n_top most likely tokens at that step, most likely first. The
 * arrays are valid during the call only. */
typedef struct lm_token_info {
    lm_token id;
    float logprob;
    int32_t n_top;
    const lm_token *top_ids;
    const float *top_logprobs;
} lm_token_info;
/* Called for each generated token, in order, before its text reaches the piece callback (on the
 * same thread). Return non-zero to stop, as the piece callback does. */
typedef int (*lm_token_fn)(const lm_token_info *info, void *user);

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
    const char *stop[LM_MAX_STOP]; /* stop strings: the entries before the first NULL (all
                                      LM_MAX_STOP may be used); the text is cut before a match,
                                      which is never delivered */
    bool ignore_eos;           /* keep going past end-of-generation tokens */
    lm_token_fn token_fn;      /* may be NULL: called for each generated token */
    void *token_user;
    int32_t top_logprobs;      /* -1 (default): no log-probabilities; 0..LM_MAX_TOP_LOGPROBS:
                                  token_fn gets each token's log-probability and this many of the
                                  most likely alternatives */
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
    int32_t n_batch;          /* the most of its prompt one pass takes; 0: the engine's max_batch */
    bool kv_f32;              /* keep the KV cache in F32 (default false: F16, half the memory
                                 and bandwidth, relative error about 5e-4 per element) */
} lm_session_params;

lm_session_params lm_session_default_params(void);

/* A conversation on engine e (which it keeps alive), with its own KV cache. *out is freed with
 * lm_session_free(). */
lm_status lm_session_new(lm_engine *e, const lm_session_params *p, lm_session **out, lm_error *err);
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
 * included. Return non-zero to stop: the call returns LM_ERR_CANCELLED with finish
 * LM_FINISH_CANCELLED, and this piece stays delivered. */
typedef int (*lm_piece_fn)(const char *utf8, size_t len, void *user);

typedef enum lm_finish {
    LM_FINISH_NONE = 0,
    LM_FINISH_STOP = 1,       /* end-of-generation token or stop string */
    LM_FINISH_LENGTH = 2,     /* max_tokens or context full */
    LM_FINISH_CANCELLED = 3,  /* the caller stopped it (the call returned LM_ERR_CANCELLED) */
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
 * and, if the context is empty, LM_TOK_ADD_SPECIAL) and generates. */
lm_status lm_session_complete(lm_session *s, const char *prompt, size_t len,
                              const lm_gen_params *gp, lm_piece_fn fn, void *user,
                              lm_gen_stats *stats);

/* Generates from a token prompt, appended to the context. */
lm_status lm_session_generate(lm_session *s, const lm_token *prompt, size_t n,
                              const lm_gen_params *gp, lm_piece_fn fn, void *user,
                              lm_gen_stats *stats);

/* Asks the session's running call to stop as soon as it can (before the engine's next pass); it
 * then returns LM_ERR_CANCELLED. Safe to call from any thread, and from a signal handler (it only
 * sets a flag). The flag is cleared at the start of the next call. */
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
lm_status lm_model_chat_render(const lm_model *m, const lm_message *msgs, size_t n,
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

/* ---- providers: one interface for the local model and OpenAI-compatible endpoints ------------ */

typedef struct lm_provider lm_provider;
typedef struct lm_response_cache lm_response_cache; /* below */

typedef struct lm_openai_params {
    const char *name;          /* shown in results ("openai", "groq"); copied */
    const char *base_url;      /* e.g. "https://api.openai.com/v1"; copied */
    const char *model;         /* model name sent in requests; copied */
    const char *api_key;       /* may be NULL; copied, never logged */
    int32_t connect_timeout_ms;    /* 0: 5000 */
    int32_t first_byte_timeout_ms; /* 0: 15000; no byte of the answer by then: fail */
    int32_t total_timeout_ms;      /* 0: none */
} lm_openai_params;

/* One call on a provider: the handle through which it is cancelled (from any thread) and which
 * keeps what the call left behind: its error message, who answered and the tool calls of the
 * reply. Reusable: each provider call clears those. *out is freed with lm_call_free. */
typedef struct lm_call lm_call;
lm_status lm_call_new(lm_call **out, lm_error *err);
void lm_call_free(lm_call *c);
/* Stops the call as soon as it can (a queued call leaves the queue; a running one stops between
 * tokens); the call then returns LM_ERR_CANCELLED (with what it delivered before kept). Safe from
 * any thread, before or during the call. The flag stays set until lm_call_reset: a call made on
 * a cancelled handle returns LM_ERR_CANCELLED at once. */
void lm_call_cancel(lm_call *c);
void lm_call_reset(lm_call *c);
/* Message of the call's failure ("" after success); owned by c, valid until its next call. */
const char *lm_call_errmsg(const lm_call *c);
/* The provider that answered (a fallback manager names the one it used), or NULL when none did;
 * while the call runs, the one answering. Owned by c, valid until its next call. */
const char *lm_call_answered_by(const lm_call *c);
/* Why a fallback manager skipped providers ("local: busy; groq: HTTP 503 ..."), or "". */
const char *lm_call_skipped(const lm_call *c);
/* Tool calls of the reply, when the request offered tools and the model called some: a JSON array
 * of OpenAI tool calls ({"id","type":"function","function":{"name","arguments"}}), or NULL. The
 * text of a call is held back from the piece callback; what came before it is delivered. Owned
 * by c, valid until its next call. */
const char *lm_call_tool_calls(const lm_call *c);

/* An OpenAI-compatible chat endpoint (OpenAI, Groq, vLLM, llama.cpp, locallm serve), streamed
 * over SSE. Calls from several threads at once each use their own connection. *out freed with
 * lm_provider_free. */
lm_status lm_provider_openai_new(const lm_openai_params *p, lm_provider **out, lm_error *err);

typedef struct lm_local_params {
    int32_t n_slots;          /* sessions, so calls at the same time run concurrently on the
                                 engine (their steps share passes); 0: 1 */
    int32_t n_queue;          /* calls that wait for a slot beyond those; more are refused with
                                 LM_ERR_BUSY; 0: 16; -1: none wait */
    lm_session_params session;/* of every slot */
    lm_response_cache *cache; /* borrowed (must outlive the provider); may be NULL */
} lm_local_params;

lm_local_params lm_local_default_params(void);

/* The local model behind the same interface: a pool of slots (sessions on engine e, which it keeps
 * alive). A call takes the free slot whose cached tokens share the longest prefix with its prompt
 * (a follow-up turn lands where its conversation is cached), waits in a bounded queue when all
 * are busy, and parses the model family's tool-call format (chat/tools.c) out of the reply. */
lm_status lm_provider_local_new(lm_engine *e, const lm_local_params *p, lm_provider **out,
                                lm_error *err);
/* A fallback manager over providers (borrowed; they must outlive it), tried in order: one that
 * is not ready, busy, or fails before its first piece is skipped; once text has streamed, a
 * failure is reported, not retried elsewhere. */
lm_status lm_provider_fallback_new(lm_provider *const *list, size_t n, lm_provider **out,
                                   lm_error *err);
void lm_provider_free(lm_provider *p);

/* The provider's name (owned by it, valid while it lives). */
const char *lm_provider_name(const lm_provider *p);
/* Whether a call could be tried now (the local model loaded, a remote one configured). */
bool lm_provider_is_ready(const lm_provider *p);
/* A streamed chat turn. Any number of threads may call one provider at once, each with its own
 * call handle (which may be NULL: then the call cannot be cancelled and its message is lost).
 * stats may be NULL; remote providers fill what the server reports. */
lm_status lm_provider_chat(lm_provider *p, const lm_message *msgs, size_t n,
                           const lm_chat_params *cp, const lm_gen_params *gp, lm_piece_fn fn,
                           void *user, lm_call *call, lm_gen_stats *stats);
/* A plain completion of prompt text (no template), with the cached prefix reused. Remote
 * providers answer LM_ERR_UNSUPPORTED (a fallback manager skips them). */
lm_status lm_provider_complete(lm_provider *p, const char *prompt, size_t len,
                               const lm_gen_params *gp, lm_piece_fn fn, void *user, lm_call *call,
                               lm_gen_stats *stats);

/* ---- response cache ------------------------------------------------------------------------ */

/* An LRU of replies to common short exchanges, keyed by the rendered prompt and the sampling
 * parameters, used only for greedy (temperature 0) chat turns. Thread-safe; may be shared by
 * sessions. A hit delivers the cached text without running the model. */
typedef struct lm_response_cache lm_response_cache;
/* capacity: entries kept (0: 256). *out is freed with lm_response_cache_free. */
lm_status lm_response_cache_new(size_t capacity, lm_response_cache **out, lm_error *err);
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

/* p may be NULL (defaults); p is copied. LM_ERR_MISUSE when fn or out is NULL, LM_ERR_NOMEM.
 * *out is freed with lm_sentences_free(). One chunker per reply stream; not for several threads
 * at once. */
lm_status lm_sentences_new(const lm_sentences_params *p, lm_sentence_fn fn, void *user, lm_sentences **out,
                           lm_error *err);

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

/* ---- converting models ------------------------------------------------------------------------ */

typedef struct lm_convert_params {
    const char *format;       /* "gguf" or "mlx"; NULL: "gguf" when the output ends in ".gguf" */
    const char *type;         /* GGUF: llama.cpp's names, case-insensitive: F32, F16 (NULL: F16),
                                 BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_M, Q5_K_M, Q6_K; the
                                 quantized ones use llama.cpp's per-tensor mix */
    int32_t mlx_bits;         /* MLX: 4 or 8 (0: 4) */
    int32_t mlx_group_size;   /* MLX: 32 or 64 (0: 64) */
    bool vocab_only;          /* GGUF: metadata and tokenizer only, no tensors */
    int32_t n_threads;        /* 0: one per online core */
    lm_progress_fn progress;  /* may be NULL; return non-zero to cancel */
    void *progress_user;
    lm_log_fn log;            /* may be NULL */
    void *log_user;
} lm_convert_params;

lm_convert_params lm_convert_default_params(void);

/* Converts a Hugging Face model folder (safetensors f32/f16/bf16, sharded or not, or MLX
 * quantized) into a GGUF file at out (metadata as llama.cpp's converter writes it: architecture,
 * hyper-parameters, tokenizer, chat template) or, with format "mlx", a new MLX folder out
 * (which must not exist). Nothing is left at out on failure: files are written under a temporary
 * name and renamed when complete. */
lm_status lm_convert(const char *src, const char *out, const lm_convert_params *p, lm_error *err);

/* ---- misc --------------------------------------------------------------------------------------- */

/* Version string, static. */
const char *lm_version(void);

/* ---- hub downloads ------------------------------------------------------------------------------ */

/* What a pull is doing with one file; lm_hub_progress_fn receives it. */
typedef enum lm_hub_event {
    LM_HUB_FILE_START = 0,    /* its download begins (done > 0: a partial download is resumed) */
    LM_HUB_FILE_PROGRESS = 1, /* bytes arrived; done counts them from the file's start */
    LM_HUB_FILE_DONE = 2,     /* complete, and verified when the hub gave its hash */
    LM_HUB_FILE_CACHED = 3,   /* already complete in the cache: nothing was downloaded */
    LM_HUB_FILE_WAITING = 4,  /* another process (a huggingface_hub download, another pull)
                                 holds the file's lock in .locks/; repeated about once a second */
} lm_hub_event;

typedef struct lm_hub_progress {
    lm_hub_event event;
    const char *file;         /* repo-relative name ("model.safetensors"); valid during the call */
    uint64_t done, total;     /* bytes of this file; total 0 when the hub did not say */
    size_t index, n_files;    /* this file's place (from 0) among the n_files the pull needs */
} lm_hub_progress;

/* Called from the pulling thread. Return non-zero to cancel: the pull returns LM_ERR_CANCELLED,
 * a partial download stays in the cache (blobs/<etag>.incomplete) and the next pull resumes it. */
typedef int (*lm_hub_progress_fn)(const lm_hub_progress *p, void *user);

typedef struct lm_hub_params {
    const char *cache_dir;    /* required: the Hugging Face cache folder (see lm_hub_resolve) */
    const char *endpoint;     /* NULL: "https://huggingface.co" (usually from $HF_ENDPOINT) */
    const char *token;        /* NULL: none; sent as "Authorization: Bearer ...", never logged */
    bool offline;             /* resolve from the cache only, no network ($HF_HUB_OFFLINE) */
    const char *const *includes; /* fnmatch globs the files must match; NULL: the files a model
                                    needs (config, tokenizer, weights; one .gguf by :QUANT) */
    size_t n_includes;
    lm_hub_progress_fn progress; /* may be NULL */
    void *progress_user;
    int32_t etag_timeout_s;   /* metadata: seconds to connect, and for a file's HEAD to answer;
                                 <= 0: 10 ($HF_HUB_ETAG_TIMEOUT) */
    int32_t download_timeout_s; /* a transfer with no byte for this long fails; <= 0: 60
                                   ($HF_HUB_DOWNLOAD_TIMEOUT) */
} lm_hub_params;

/* Resolves a model reference into out (cap bytes): an existing file or folder is returned as is;
 * otherwise "org/name[@revision]" (revision default "main", or a commit hash) is looked up in
 * the Hugging Face cache folder cache_dir as huggingface_hub lays it out, giving the snapshot
 * folder. Ids with "..", absolute parts or odd characters are refused before any file access.
 * The library reads no environment: the caller picks cache_dir ($HF_HUB_CACHE, else
 * $HF_HOME/hub, else ~/.cache/huggingface/hub is the usual rule). */
lm_status lm_hub_resolve(const char *ref, const char *cache_dir, char *out, size_t cap,
                           lm_error *err);

/* cache_dir NULL, the default endpoint, no token, online, timeouts 10 s and 60 s. */
lm_hub_params lm_hub_default_params(void);

/* Downloads what a model needs from the Hugging Face hub into p->cache_dir, laid out as
 * huggingface_hub does (blobs/<etag>, snapshots/<commit>/<file> symlinks, refs/<revision>,
 * .locks/), so both share one cache. ref: "org/name[@revision][:QUANT]" or a catalog short name
 * ("llama3.2:3b"); for a GGUF repository one .gguf is fetched, the first whose name holds QUANT
 * (default Q4_K_M). out (cap bytes) gets the snapshot folder, or the chosen .gguf in it. After
 * the one listing request, files the snapshot already holds are reported LM_HUB_FILE_CACHED and
 * not asked about again. Offline, the cache alone answers. Errors: LM_ERR_NETWORK (unreachable, HTTP errors, interrupted: run it again to
 * resume), LM_ERR_FORMAT (a listing or file the hub should not send: unsafe names, hash mismatch,
 * more bytes than announced), LM_ERR_UNSUPPORTED (no usable model files), LM_ERR_IO (the cache),
 * LM_ERR_CANCELLED, LM_ERR_MISUSE (bad id or params). The library reads no environment: the
 * caller turns $HF_* variables into params (locallm pull shows how). */
lm_status lm_hub_pull(const char *ref, const lm_hub_params *p, char *out, size_t cap, lm_error *err);

#ifdef __cplusplus
}
#endif
#endif /* LOCALLM_H */
