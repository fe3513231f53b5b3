/* server/server.h: the internal header of src/server, an OpenAI-compatible HTTP server.
 * Owns: the HTTP side (libmicrohttpd), mapping request bodies to chat/generation params, the
 * slots (one lm_session each, keeping its KV cache), the bounded wait queue, SSE streaming,
 * cancelling a generation whose client went away, and OpenAI-shaped responses and errors.
 * Does not own: generation (session/), templates and tool-call formats (chat/). The CLI
 * (cli/serve.c) turns options into an srv_config and calls srv_run. */
#ifndef LM_SERVER_H
#define LM_SERVER_H

#include "core/core.h"

#include <signal.h>

#define SRV_MAX_BODY (8u * 1024u * 1024u) /* request bodies over this get 413 */

typedef struct srv_config {
    const char *model_path;  /* a resolved file or folder; loaded in the background */
    const char *model_id;    /* the name /v1/models shows and responses carry */
    const char *host;        /* numeric address to bind; NULL: 127.0.0.1 */
    uint16_t port;           /* 0: any free port (srv_config.on_listen tells which) */
    const char *api_key;     /* NULL or "": no authentication. Never logged. */
    int32_t n_parallel;      /* slots (concurrent generations); <= 0: 1 */
    int32_t n_queue;         /* requests waiting for a slot before 429; <= 0: 16 */
    int32_t n_ctx;           /* context per slot; 0: the session default */
    int32_t n_threads;       /* 0: library default */
    lm_log_fn log;           /* request and lifecycle lines; may be NULL */
    void *log_user;
    /* Cloud providers (OpenAI-compatible) that answer chat requests, in order, while the model
     * is not loaded (still loading, or it failed) or when it fails before its first token. A
     * fresh client is made per request. The response's "model" and "provider" fields and the
     * x-locallm-provider header say who answered. May be NULL. */
    const lm_openai_params *fallback;
    size_t n_fallback;
    /* Called once the socket listens, with the bound port; may be NULL. */
    void (*on_listen)(const char *host, uint16_t port, void *user);
    void *listen_user;
} srv_config;

/* Starts listening, loads the model in the background (/health says 503 "loading" meanwhile)
 * and serves until *stop becomes non-zero (set it from a signal handler). Then it cancels
 * running generations, closes connections and frees everything. Returns LM_OK after a clean
 * stop; LM_ERR_IO/NETWORK when the socket cannot be opened. A model that fails to load leaves
 * the server answering 503 with the load error until stopped. */
lm_status srv_run(const srv_config *cfg, const volatile sig_atomic_t *stop, lm_error *err);

/* ---- request mapping (server/request.c), separate so it can be fuzzed and unit-tested ---- */

typedef struct srv_request {
    bool chat;                /* /v1/chat/completions; else /v1/completions */
    bool stream, include_usage;
    cJSON *root;              /* the parsed body; strings below point into it */
    lm_message *msgs;
    size_t n_msgs;
    char **owned;             /* strings built here (joined content parts, tool_calls JSON) */
    size_t n_owned;
    char *tools_json;         /* NULL when no tools or tool_choice "none" */
    const char *prompt;       /* completions */
    lm_gen_params gp;         /* gp.json_schema points at schema_text, gp.grammar into root */
    char *schema_text;        /* response_format.json_schema.schema as JSON text, or NULL */
    bool seeded;              /* "seed" was given */
    char *key;                /* text used to pick the slot with the longest shared prefix */
    bool x_sentences;         /* locallm extension for voice clients: a streamed chat (without
                                 tools) sends whole sentences, one per chunk (lm_sentences_*) */
} srv_request;

/* What went wrong with a request: an HTTP status and OpenAI's error fields. */
typedef struct srv_reqerr {
    int status;
    char param[64];           /* "" when the error is not about one field */
    char msg[256];
} srv_reqerr;

/* Parses and validates a request body into *rq (zeroed first). n_ctx bounds max_tokens.
 * On failure returns false with *e filled (status 400) and *rq released. */
bool srv_request_parse(const char *body, size_t len, bool chat, int32_t n_ctx, srv_request *rq,
                       srv_reqerr *e);
void srv_request_free(srv_request *rq);

/* Hermes/Qwen tool calls "<tool_call>{"name":..,"arguments":{..}}</tool_call>" in text.
 * Returns a JSON array of OpenAI tool calls ({id,type,function{name,arguments}}) or NULL when
 * the text has none that parse; *content_len gets the length of the text before the first. */
cJSON *srv_parse_tool_calls(const char *text, size_t len, size_t *content_len);

#endif /* LM_SERVER_H */
