/* cli/serve.c: `locallm serve`, the OpenAI-compatible HTTP server.
 * Owns: the options of serve, the default chat model, SIGINT/SIGTERM as a clean stop, and log
 * lines on stderr. The server itself lives in the library (server/server.h). */
#include "cli/cli.h"
#include "cli/providers.h"
#include "server/server.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

enum { O_HOST = CLI_O_OWN, O_PORT, O_API_KEY, O_PARALLEL, O_QUEUE, O_CORS, O_ALLOW_HOST, O_HEADER_TIMEOUT,
       O_BODY_TIMEOUT, O_CONNS_PER_IP, O_MAX_MESSAGES };

static const cli_option SERVE_OPTIONS[] = {
    {O_HOST, "--host", "ADDR", "address or host name to bind (default 127.0.0.1, this machine only)"},
    {O_PORT, "--port", "N", "port (default 8080; 0: any free port, printed on stderr)"},
    {O_API_KEY, "--api-key", "KEY", "require 'Authorization: Bearer KEY' (default: $LOCALLM_API_KEY)"},
    {O_PARALLEL, "--parallel|-np", "N", "requests generated at once, each with its own KV cache (default 1)"},
    {O_QUEUE, "--queue", "N", "requests that may wait for a slot before 429 (default 16)"},
    {CLI_O_CTX, "-c|--ctx|--ctx-size", "N", "context window per slot (default: the model's, at most 4096)"},
    CLI_OPT_CHAT_TEMPLATE,
    {O_CORS, "--cors", "ORIGIN", "a browser origin allowed to call the server, e.g. http://localhost:3000\n"
                                 "(repeat it or separate with commas; * allows any; default none)"},
    {O_ALLOW_HOST, "--allow-host", "NAME", "on a loopback address, take this Host name too (repeat, or NAME,NAME; '*': any)"},
    {O_HEADER_TIMEOUT, "--header-timeout", "S", "seconds a client has to send its headers (default 10)"},
    {O_BODY_TIMEOUT, "--body-timeout", "S", "seconds a client has to send its body after the headers (default 60)"},
    {O_CONNS_PER_IP, "--max-conns-per-ip", "N", "connections of one client address (default 64)"},
    {O_MAX_MESSAGES, "--max-messages", "N", "messages in one chat request before 400 (default 1024)"},
    CLI_OPT_THREADS,
    CLI_OPT_FORCE,
    CLI_OPT_HELP,
    {CLI_HEADING, NULL, NULL, "Cloud providers (OpenAI-compatible endpoints):"},
    CLI_OPT_CLOUD,
    {0, NULL, NULL, NULL},
};

static const cli_command SERVE_CMD = {
    "serve",
    "Usage: locallm serve [MODEL] [options]\n",
    "Serves MODEL over HTTP with OpenAI's API (POST /v1/chat/completions, POST /v1/completions,\n"
    "GET /v1/models, GET /v1/models/ID) and Ollama's (POST /api/chat, POST /api/generate,\n"
    "GET /api/tags, POST /api/show, GET /api/version), and GET /health. MODEL defaults to the\n"
    "embedded chat model (models/tinychat).\n"
    "The socket listens at once; the model loads in the background (/health answers 503 until\n"
    "it is ready). Ctrl-C or SIGTERM stops the server.\n",
    SERVE_OPTIONS,
    "With --fallback, chat requests are answered by the cloud while the model loads, when it\n"
    "cannot be loaded, or when it fails before its first token; the response's \"provider\"\n"
    "and \"model\" fields and the x-locallm-provider header say who answered.\n",
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void log_line(lm_log_level level, const char *msg, void *user) {
    (void)user;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    time_t now = time(NULL);
    struct tm tm;
    char ts[32] = "";
    if (gmtime_r(&now, &tm)) strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s locallm serve: %s: %s\n", ts, names[(unsigned)level > LM_LOG_DEBUG ? LM_LOG_DEBUG : level], msg);
}

static void on_listen(const char *host, uint16_t port, void *user) {
    (void)user;
    bool v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "locallm serve: listening on http://%s%s%s:%u\n", v6 ? "[" : "", host,
            v6 ? "]" : "", (unsigned)port);
}

/* True for an address only this machine can reach: 127.0.0.0/8, ::1, localhost. */
static bool is_loopback(const char *host) {
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* The id clients see: the last path component of the model reference. */
static const char *model_id(const char *ref) {
    size_t len = strlen(ref);
    while (len > 1 && ref[len - 1] == '/') len--;
    static char id[256];
    size_t start = len;
    while (start > 0 && ref[start - 1] != '/') start--;
    size_t n = len - start < sizeof id - 1 ? len - start : sizeof id - 1;
    memcpy(id, ref + start, n);
    id[n] = '\0';
    return id;
}

/* The options of serve. */
typedef struct serve_opts {
    const char *model_ref, *host, *api_key, *tpl;
    char *origins[64];
    size_t n_origins;
    char *copies[64];           /* strtok_r cuts each --cors/--allow-host value in a copy of its own */
    size_t n_copies;
    const char *hosts[64];      /* --allow-host */
    size_t n_hosts;
    int32_t port, n_parallel, n_queue, n_ctx, n_threads;
    int32_t header_s, body_s, per_ip, max_msgs;
    cli_cloud_flags cf;
} serve_opts;

/* Adds the comma-separated origins of one --cors value. */
static bool add_origins(serve_opts *o, const char *val) {
    char *copy = o->n_copies < LM_ARRAY_LEN(o->copies) ? strdup(val) : NULL;
    if (!copy) {
        cli_usage_error("serve", "--cors: too many values");
        return false;
    }
    o->copies[o->n_copies++] = copy;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        size_t len = strlen(tok);
        while (len && tok[len - 1] == ' ') tok[--len] = '\0';
        if (!len) continue;
        /* a browser sends scheme://host[:port] with no path: a trailing slash would never match */
        if (strcmp(tok, "*") != 0 && (!strstr(tok, "://") || tok[len - 1] == '/')) {
            cli_usage_error("serve", "--cors: '%s' is not an origin (scheme://host[:port], as a browser "
                            "sends it, e.g. http://localhost:3000; or *)", tok);
            return false;
        }
        if (o->n_origins >= LM_ARRAY_LEN(o->origins)) {
            cli_usage_error("serve", "--cors: at most %zu origins", LM_ARRAY_LEN(o->origins));
            return false;
        }
        o->origins[o->n_origins++] = tok;
    }
    return true;
}

/* Adds the comma-separated names of one --allow-host value. */
static bool add_hosts(serve_opts *o, const char *val) {
    char *copy = o->n_copies < LM_ARRAY_LEN(o->copies) ? strdup(val) : NULL;
    if (!copy) {
        cli_usage_error("serve", "--allow-host: too many values");
        return false;
    }
    o->copies[o->n_copies++] = copy;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_hosts >= LM_ARRAY_LEN(o->hosts)) {
            cli_usage_error("serve", "--allow-host: at most %zu names", LM_ARRAY_LEN(o->hosts));
            return false;
        }
        o->hosts[o->n_hosts++] = tok;
    }
    return true;
}

/* Reads the options into *o; returns -1 to go on, else the exit code. */
static int parse_options(int argc, char **argv, serve_opts *o) {
    cli_args a;
    cli_args_init(&a, &SERVE_CMD, argc, argv);
    int rc = -1;
    for (int id; (id = cli_args_step(&a, &o->model_ref, &rc)) != CLI_ARGS_END;) {
        /* serve has no --provider: a cloud can only stand behind the local model */
        int cloud = id == CLI_O_PROVIDER ? 0 : cli_cloud_opt(&a, id, &o->cf);
        if (cloud < 0) return CLI_EXIT_USAGE;
        if (cloud > 0) continue;
        bool ok = true;
        switch (id) {
        case O_HOST: o->host = a.val; break;
        case O_API_KEY: o->api_key = a.val; break;
        case CLI_O_CHAT_TEMPLATE: o->tpl = a.val; break;
        case O_CORS: ok = add_origins(o, a.val); break;
        case O_ALLOW_HOST: ok = add_hosts(o, a.val); break;
        case O_HEADER_TIMEOUT: ok = cli_args_i32(&a, 1, 3600, &o->header_s); break;
        case O_BODY_TIMEOUT: ok = cli_args_i32(&a, 1, 3600, &o->body_s); break;
        case O_CONNS_PER_IP: ok = cli_args_i32(&a, 2, 256, &o->per_ip); break;
        case O_MAX_MESSAGES: ok = cli_args_i32(&a, 1, 1000000, &o->max_msgs); break;
        case O_PORT: ok = cli_args_i32(&a, 0, 65535, &o->port); break;
        case O_PARALLEL: ok = cli_args_i32(&a, 1, 256, &o->n_parallel); break;
        case O_QUEUE: ok = cli_args_i32(&a, 1, 100000, &o->n_queue); break;
        case CLI_O_CTX: ok = cli_args_i32(&a, 0, INT32_MAX, &o->n_ctx); break;
        case CLI_O_THREADS: ok = cli_args_i32(&a, 0, 1024, &o->n_threads); break;
        case CLI_O_FORCE: cli_set_force(true); break;
        }
        if (!ok) return CLI_EXIT_USAGE;
    }
    if (rc >= 0) return rc;
    if (!cli_cloud_wanted(&o->cf) && (o->cf.base_url || o->cf.model || o->cf.api_key_env || o->cf.providers_file))
        return cli_usage_error("serve", "--base-url, --model, --api-key-env and --providers need --fallback");
    return -1;
}

/* Runs the server on the resolved model until a signal stops it. */
static int run_server(const serve_opts *o, const char *resolved, const lm_openai_params *fallback, size_t n_clouds) {
    char *tpl_owned = NULL, why[600];
    const char *tpl = o->tpl ? cli_chat_template(o->tpl, &tpl_owned, why, sizeof why) : NULL;
    if (o->tpl && !tpl) return cli_usage_error("serve", "%s", why);
    srv_config cfg = {0};
    cfg.model_path = resolved;
    cfg.model_id = model_id(o->model_ref);
    cfg.host = o->host;
    cfg.port = (uint16_t)o->port;
    cfg.api_key = o->api_key;
    cfg.n_parallel = o->n_parallel;
    cfg.n_queue = o->n_queue;
    cfg.n_ctx = o->n_ctx;
    cfg.n_threads = o->n_threads;
    cfg.log = log_line;
    cfg.on_listen = on_listen;
    cfg.fallback = fallback;
    cfg.n_fallback = n_clouds;
    cfg.chat_template = tpl;
    cfg.cors = (char **)o->origins; /* the array is const here, its strings are not */
    cfg.n_cors = o->n_origins;
    cfg.allow_hosts = o->hosts;
    cfg.n_allow_hosts = o->n_hosts;
    cfg.header_timeout_s = (uint32_t)o->header_s;
    cfg.body_timeout_s = (uint32_t)o->body_s;
    cfg.max_conns_per_ip = (uint32_t)o->per_ip;
    cfg.max_messages = (uint32_t)o->max_msgs;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lm_error err = {0};
    lm_status st = srv_run(&cfg, &g_stop, &err);
    free(tpl_owned);
    if (st != LM_OK) return cli_error("%s", err.msg);
    fputs("locallm serve: stopped\n", stderr);
    return CLI_EXIT_OK;
}

/* Resolves the clouds and the model, then runs the server. */
static int serve(serve_opts *o) {
    if (!is_loopback(o->host) && (!o->api_key || !o->api_key[0]))
        fprintf(stderr, "locallm serve: warning: listening on %s without an API key: anyone who can reach "
                        "this address can use the model%s; set --api-key or LOCALLM_API_KEY\n",
                o->host, cli_cloud_wanted(&o->cf) ? " and your cloud providers' keys" : "");
    cli_cloud *clouds = NULL;
    size_t n_clouds = 0;
    if (cli_cloud_wanted(&o->cf)) {
        int crc = cli_cloud_resolve("serve", &o->cf, &clouds, &n_clouds);
        if (crc != CLI_EXIT_OK) return crc;
    }
    lm_openai_params *fallback = n_clouds ? calloc(n_clouds, sizeof *fallback) : NULL;
    if (n_clouds && !fallback) {
        free(clouds);
        return cli_error("out of memory");
    }
    for (size_t k = 0; k < n_clouds; k++) {
        fallback[k] = cli_cloud_params(&clouds[k], &o->cf);
        if (clouds[k].api_key_env[0] && !fallback[k].api_key)
            fprintf(stderr, "locallm serve: %s: $%s is not set; no API key is sent\n",
                    clouds[k].name, clouds[k].api_key_env);
        fprintf(stderr, "locallm serve: fallback %s: %s, model %s\n", clouds[k].name,
                clouds[k].base_url, clouds[k].model);
    }
    char *default_ref = NULL;
    if (!o->model_ref) {
        default_ref = cli_default_chat_model();
        if (!default_ref) {
            free(fallback);
            free(clouds);
            return cli_error("out of memory");
        }
        o->model_ref = default_ref;
    }
    /* A hub id or short name is looked up in the cache and downloaded on first use; the memory
     * check runs unless --force. */
    char resolved[4096];
    int rc = CLI_EXIT_OK;
    if (n_clouds) {
        /* with a cloud behind it, a missing model is not fatal: look in the cache only */
        char *cache = cli_hf_cache_dir();
        lm_error err = {0};
        bool have_local = lm_hub_resolve(o->model_ref, cache, resolved, sizeof resolved, &err) == LM_OK;
        free(cache);
        if (!have_local) {
            /* the cloud answers; /health and the log say why the model is missing */
            fprintf(stderr, "locallm serve: warning: %s; chat requests go to %s\n", err.msg,
                    clouds[0].name);
            snprintf(resolved, sizeof resolved, "%s", o->model_ref);
        }
    } else if (!cli_resolve_ref(o->model_ref, o->n_ctx, resolved, sizeof resolved)) {
        rc = CLI_EXIT_ERROR;
    }
    if (rc == CLI_EXIT_OK) rc = run_server(o, resolved, fallback, n_clouds);
    free(default_ref);
    free(fallback);
    free(clouds);
    return rc;
}

int cli_serve(int argc, char **argv) {
#ifdef __GLIBC__
    /* Request bodies up to 8 MB are buffered whole. glibc raises its mmap threshold after such a
     * block is freed, so later ones land in per-thread arenas and stay resident: a long-running
     * server grew ~30 MB under tests/soak/soak.py. A fixed threshold gives big blocks back. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    serve_opts o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.api_key = getenv("LOCALLM_API_KEY");
    o.port = 8080;
    o.n_parallel = 1;
    o.header_s = 10;
    o.body_s = 60;
    o.per_ip = 64;
    o.max_msgs = (int32_t)SRV_MAX_MESSAGES;
    o.n_queue = 16;
    int rc = parse_options(argc, argv, &o);
    if (rc < 0) rc = serve(&o);
    for (size_t k = 0; k < o.n_copies; k++) free(o.copies[k]);
    return rc;
}
