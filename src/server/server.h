/* server/server.h: the internal header of src/server, an OpenAI- and Ollama-compatible HTTP
 * server.
 * Owns: the HTTP side (libmicrohttpd), mapping request bodies to chat/generation params, the
 * slots (one lm_session each, keeping its KV cache), the bounded wait queue, SSE streaming,
 * cancelling a generation whose client went away, and OpenAI-shaped responses and errors
 * (Ollama's shapes live in server/ollama.c); what a connection must satisfy first (guard.c:
 * Host/Origin, read deadlines, per-address caps).
 * Does not own: generation (session/), templates and tool-call formats (chat/). The CLI
 * (cli/serve.c) turns options into an srv_config and calls srv_run. */
#ifndef LM_SERVER_H
#define LM_SERVER_H

#include "core/core.h"

#include <signal.h>
#include <sys/socket.h>

#define SRV_MAX_BODY (8u * 1024u * 1024u) /* request bodies over this get 413 */
#define SRV_CONN_MEMORY (256u * 1024u)    /* MHD's memory per connection: headers, chunk lines */
#define SRV_MAX_MESSAGES 1024u            /* the default cap on messages in a chat request */

typedef struct srv_config {
    const char *model_path;  /* a resolved file or folder; loaded in the background */
    const char *model_id;    /* the name /v1/models shows and responses carry */
    const char *host;        /* address or host name to bind (resolved with getaddrinfo, an IPv4
                                address preferred); NULL: 127.0.0.1 */
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
    /* The model's chat template replaced: a built-in name ("llama3", "mistral", "chatml",
     * "zephyr") or Jinja source text (lm_model_params.chat_template); NULL: the model's own. */
    const char *chat_template;
    /* Origins a browser request may come from (the Origin header, exactly as a browser sends
     * it: "http://localhost:3000"; "*": any), from --cors. Responses to a listed origin carry
     * Access-Control-Allow-Origin, and its CORS preflight (OPTIONS) is answered; a preflight
     * from another origin gets 403, and so does any request carrying an Origin not listed (curl
     * and the SDKs send none). Empty by default. Borrowed for the server's life. */
    char **cors;
    size_t n_cors;
    /* Host names a request may carry besides loopback ones (localhost, 127.x.y.z, [::1], any
     * port) while host is a loopback address; "*" allows any. Elsewhere any Host is taken.
     * Against DNS rebinding: a page whose name resolves to 127.0.0.1 still sends its own name. */
    const char *const *allow_hosts;
    size_t n_allow_hosts;
    uint32_t header_timeout_s;  /* whole headers within this, from the connection; 0: 10 */
    uint32_t body_timeout_s;    /* the whole body within this, from the headers; 0: 60 */
    uint32_t max_conns_per_ip;  /* connections of one client address; 0: 64. Half of them at
                                   most may be waiting for their headers: the oldest go first */
    uint32_t max_messages;      /* messages in a chat request before 400; 0: SRV_MAX_MESSAGES */
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
    bool x_sentences;         /* locallm extension for voice clients: a streamed chat (without
                                 tools) sends whole sentences, one per chunk (lm_sentences_*) */
    int api;                  /* enum srv_api: the API the request came in by, which shapes the
                                 response */
    bool ollama_generate;     /* /api/generate: the reply goes in "response", not "message" */
    bool ollama_load;         /* Ollama's "load the model" request (no messages, no prompt):
                                 answered at once, nothing is generated */
    bool logprobs;            /* report each token's log-probability, with gp.top_logprobs
                                 alternatives (gp.top_logprobs is set >= 0 then) */
} srv_request;

enum srv_api { SRV_API_OPENAI, SRV_API_OLLAMA };

/* What went wrong with a request: an HTTP status and OpenAI's error fields. */
typedef struct srv_reqerr {
    int status;
    char param[64];           /* "" when the error is not about one field */
    char msg[256];
} srv_reqerr;

/* OpenAI's error object for an HTTP status: {"error":{"message":msg,"type":(from status),
 * "param":param or null,"code":("invalid_api_key" for 401, else null)}}; NULL when out of memory. */
cJSON *srv_error_json(unsigned status, const char *param, const char *msg);
/* The same printed, allocated (lm_free); NULL when out of memory. */
char *srv_error_body(unsigned status, const char *msg);

/* Parses and validates a request body into *rq (zeroed first). n_ctx bounds max_tokens;
 * max_msgs (0: SRV_MAX_MESSAGES) the messages of a chat.
 * On failure returns false with *e filled (status 400) and *rq released. */
bool srv_request_parse(const char *body, size_t len, bool chat, int32_t n_ctx, size_t max_msgs,
                       srv_request *rq, srv_reqerr *e);
void srv_request_free(srv_request *rq);

/* ---- connection guard (server/guard.c) ---- */

/* True for an address only this machine reaches (127.0.0.0/8, ::1, localhost); NULL or "" is
 * the default bind, loopback. */
bool srv_host_is_loopback(const char *host);
/* Whether a request with this Host header value (NULL: none) may be served (cfg->allow_hosts). */
bool srv_host_allowed(const srv_config *cfg, const char *host_header);
/* Whether a request with this Origin header value (NULL: none) may be served (cfg->cors). */
bool srv_origin_allowed(const srv_config *cfg, const char *origin);

typedef enum srv_guard_phase {
    SRV_GUARD_HEAD,  /* a new connection sending its headers: header deadline */
    SRV_GUARD_BODY,  /* headers read, body arriving: body deadline */
    SRV_GUARD_BUSY,  /* the request is being answered: no deadline */
    SRV_GUARD_IDLE,  /* kept alive, waiting for the next request: the longer of the header
                        deadline and 30 s */
} srv_guard_phase;
typedef struct srv_guard srv_guard;
typedef struct srv_guard_conn srv_guard_conn;
struct sockaddr;

/* Starts the watchdog thread. pending_per_addr: connections of one address waiting for their
 * headers (0: no cap); over it, the one waiting longest is shut down. Free with srv_guard_free
 * after the HTTP daemon stopped. */
lm_status srv_guard_new(unsigned header_s, unsigned body_s, unsigned pending_per_addr, srv_guard **out,
                        lm_error *err);
void srv_guard_free(srv_guard *g);
/* A connection on socket fd from sa began (phase HEAD). NULL when out of memory (unguarded).
 * srv_guard_close before the socket is closed ends it. */
srv_guard_conn *srv_guard_open(srv_guard *g, int fd, const struct sockaddr *sa);
void srv_guard_phase_set(srv_guard *g, srv_guard_conn *gc, srv_guard_phase ph);
void srv_guard_close(srv_guard *g, srv_guard_conn *gc);

/* ---- the listening socket and the first head of each connection (server/front.c) ---- */

/* What srv_head_check found. */
typedef struct srv_head {
    size_t len;       /* complete: the head's bytes, up to and with its empty line */
    int status;       /* refused: 400, 413, 414, 431 or 505 */
    char msg[256];    /* refused: why, valid UTF-8 */
    bool has_length;  /* a Content-Length header, of length bytes */
    uint64_t length;
    bool chunked;     /* Transfer-Encoding: chunked */
} srv_head;
/* Looks at the first n bytes a connection sent (max: the most that will be looked at). 1: a
 * complete request line and headers that the HTTP library takes; 0: incomplete, wait for more;
 * -1: refused (h->status and h->msg): a request line other than METHOD SP TARGET SP HTTP/1.x, an
 * HTTP version other than 1.x (505), a header line without a colon, with no name or with
 * whitespace or another non-token character before its colon, a Content-Length that is not
 * digits or two that differ, one over SRV_MAX_BODY (413), a request line (414) or a head (431)
 * of max bytes or more. Empty lines before the request line and obsolete line folding are
 * allowed, CRLF or bare LF. */
int srv_head_check(const char *buf, size_t n, size_t max, srv_head *h);
/* The first n bytes of a chunked body (after the head srv_head_check took, in h): 1 whole and
 * well formed (h->len grows by its bytes), 0 well formed so far, -1 refused (h->status and
 * h->msg): a chunk size that is not hexadecimal or missing, chunk data not followed by CRLF
 * (400), chunks over SRV_MAX_BODY in all (413). */
int srv_chunked_check(const char *b, size_t n, srv_head *h);

typedef struct srv_front srv_front;
struct MHD_Daemon;
/* Binds and listens on sa (port 0: any; *port gets the one bound). header_s: a new connection's
 * first head must be complete within it; per_addr: connections of one address that may wait
 * for their first head longer than 250 ms (0: no cap), over it the one waiting longest goes. */
lm_status srv_front_new(const struct sockaddr *sa, socklen_t sa_len, unsigned header_s, unsigned per_addr,
                        srv_front **out, uint16_t *port, lm_error *err);
/* Starts accepting: each connection whose first head srv_head_check takes goes to d
 * (MHD_add_connection); one it refuses gets the error as OpenAI's error JSON and is closed. */
lm_status srv_front_start(srv_front *f, struct MHD_Daemon *d, lm_error *err);
/* Stops accepting (before MHD_stop_daemon); srv_front_free closes the socket and what it held. */
void srv_front_stop(srv_front *f);
void srv_front_free(srv_front *f);

/* Helpers of request.c that the Ollama mapping (server/ollama.c) shares. */
bool srv_req_fail(srv_reqerr *e, const char *param, const char *fmt, ...) LM_PRINTF(3, 4);
/* A number field of obj in [lo, hi]; absent or null leaves *out and sets *present false. */
bool srv_req_num(const cJSON *obj, const char *name, double lo, double hi, bool integral, double *out,
                 bool *present, srv_reqerr *e);
bool srv_req_bool(const cJSON *obj, const char *name, bool *out, srv_reqerr *e);
/* "tools" and "tool_choice" of root (OpenAI's shape, which Ollama shares) into rq->tools_json. */
bool srv_req_tools(srv_request *rq, const cJSON *root, srv_reqerr *e);
/* A JSON Schema (object or boolean) for the reply: converted and compiled now so that what
 * cannot be enforced is a 400 naming param; sets rq->schema_text and rq->gp.json_schema. */
bool srv_req_schema(srv_request *rq, const cJSON *schema, const char *param, srv_reqerr *e);
/* Parses body into rq->root (a JSON object without NUL characters in its strings). */
bool srv_req_begin(const char *body, size_t len, srv_request *rq, srv_reqerr *e);

/* ---- the Ollama API (server/ollama.c) ---- */

/* Parses an Ollama /api/chat (chat) or /api/generate body into *rq, as srv_request_parse does
 * (max_msgs, 0: SRV_MAX_MESSAGES, bounds a chat's messages). model_id is the served model:
 * another name is a 404 (e->status). */
bool srv_ollama_parse(const char *body, size_t len, bool chat, int32_t n_ctx, const char *model_id,
                      size_t max_msgs, srv_request *rq, srv_reqerr *e);
/* created_at as Ollama writes it: RFC 3339 in UTC with nanoseconds. */
void srv_ollama_time(char out[40]);

/* What a generation produced, for shaping an Ollama response. */
typedef struct srv_ollama_out {
    const srv_request *rq;
    const char *model;
    const char *text;          /* the content of this chunk, or the whole reply */
    size_t len;
    const cJSON *tool_calls;   /* OpenAI tool calls (arguments as JSON text), or NULL */
    cJSON *logprobs;           /* Ollama logprobs array to attach (taken), or NULL */
    const lm_gen_stats *stats; /* NULL: a chunk (done false); else the final object */
    const char *done_reason;
    uint64_t total_ns;
} srv_ollama_out;
/* One Ollama response object: a streamed chunk, the last one, or the whole reply. */
cJSON *srv_ollama_response(const srv_ollama_out *o);
/* The "load" answer to a request without messages or prompt. */
cJSON *srv_ollama_loaded(const srv_request *rq, const char *model);

/* Facts of the served model for /api/tags and /api/show. */
typedef struct srv_model_facts {
    const char *id;
    const char *path;          /* the file or folder it was loaded from */
    const lm_model *model;     /* NULL while loading (details are then left out) */
    const char *template_src;  /* the chat template in use, or NULL */
    int32_t n_ctx;
} srv_model_facts;
cJSON *srv_ollama_tags(const srv_model_facts *f);
cJSON *srv_ollama_show(const srv_model_facts *f);


#endif /* LM_SERVER_H */
