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

enum { O_HOST = CLI_O_OWN, O_PORT, O_API_KEY, O_PARALLEL, O_QUEUE };

static const cli_option SERVE_OPTIONS[] = {
    {O_HOST, "--host", "ADDR", "numeric address to bind (default 127.0.0.1, this machine only)"},
    {O_PORT, "--port", "N", "port (default 8080; 0: any free port, printed on stderr)"},
    {O_API_KEY, "--api-key", "KEY", "require 'Authorization: Bearer KEY' (default: $LOCALLM_API_KEY)"},
    {O_PARALLEL, "--parallel|-np", "N", "requests generated at once, each with its own KV cache (default 1)"},
    {O_QUEUE, "--queue", "N", "requests that may wait for a slot before 429 (default 16)"},
    {CLI_O_CTX, "-c|--ctx|--ctx-size", "N", "context window per slot (default: the model's, at most 4096)"},
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
    "Serves MODEL over HTTP with OpenAI's API: POST /v1/chat/completions, POST /v1/completions,\n"
    "GET /v1/models and GET /health. MODEL defaults to the embedded chat model (models/tinychat).\n"
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

static void log_line(int level, const char *msg, void *user) {
    (void)user;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    time_t now = time(NULL);
    struct tm tm;
    char ts[32] = "";
    if (gmtime_r(&now, &tm)) strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s locallm serve: %s: %s\n", ts, names[level < 0 || level > 3 ? 3 : level], msg);
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

int cli_serve(int argc, char **argv) {
    const char *cmd = "serve";
#ifdef __GLIBC__
    /* Request bodies up to 8 MB are buffered whole. glibc raises its mmap threshold after such a
     * block is freed, so later ones land in per-thread arenas and stay resident: a long-running
     * server grew ~30 MB under tests/soak/soak.py. A fixed threshold gives big blocks back. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    const char *model_ref = NULL, *host = "127.0.0.1", *api_key = getenv("LOCALLM_API_KEY");
    int32_t port = 8080, n_parallel = 1, n_queue = 16, n_ctx = 0, n_threads = 0;
    cli_cloud_flags cf;
    memset(&cf, 0, sizeof cf);
    cli_args a;
    cli_args_init(&a, &SERVE_CMD, argc, argv);
    for (int id; (id = cli_args_next(&a)) != CLI_ARGS_END;) {
        /* serve has no --provider: a cloud can only stand behind the local model */
        int cloud = id == CLI_O_PROVIDER ? 0 : cli_cloud_opt(&a, id, &cf);
        if (cloud < 0) return CLI_EXIT_USAGE;
        if (cloud > 0) continue;
        bool ok = true;
        switch (id) {
        case CLI_ARGS_HELP: return CLI_EXIT_OK;
        case CLI_ARGS_ERROR: return CLI_EXIT_USAGE;
        case CLI_ARGS_POSITIONAL:
            if (model_ref)
                return cli_usage_error(cmd, "unexpected argument '%s' (the model is '%s')", a.val, model_ref);
            model_ref = a.val;
            break;
        case O_HOST: host = a.val; break;
        case O_API_KEY: api_key = a.val; break;
        case O_PORT: ok = cli_args_i32(&a, 0, 65535, &port); break;
        case O_PARALLEL: ok = cli_args_i32(&a, 1, 256, &n_parallel); break;
        case O_QUEUE: ok = cli_args_i32(&a, 1, 100000, &n_queue); break;
        case CLI_O_CTX: ok = cli_args_i32(&a, 0, INT32_MAX, &n_ctx); break;
        case CLI_O_THREADS: ok = cli_args_i32(&a, 0, 1024, &n_threads); break;
        case CLI_O_FORCE: cli_set_force(true); break;
        }
        if (!ok) return CLI_EXIT_USAGE;
    }
    if (!cli_cloud_wanted(&cf) && (cf.base_url || cf.model || cf.api_key_env || cf.providers_file))
        return cli_usage_error(cmd, "--base-url, --model, --api-key-env and --providers need "
                                    "--fallback");
    if (!is_loopback(host) && (!api_key || !api_key[0]))
        fprintf(stderr, "locallm serve: warning: listening on %s without an API key: anyone who can reach "
                        "this address can use the model%s; set --api-key or LOCALLM_API_KEY\n",
                host, cli_cloud_wanted(&cf) ? " and your cloud providers' keys" : "");
    cli_cloud *clouds = NULL;
    size_t n_clouds = 0;
    if (cli_cloud_wanted(&cf)) {
        int crc = cli_cloud_resolve(cmd, &cf, &clouds, &n_clouds);
        if (crc != CLI_EXIT_OK) return crc;
    }
    lm_openai_params *fallback = n_clouds ? calloc(n_clouds, sizeof *fallback) : NULL;
    if (n_clouds && !fallback) {
        free(clouds);
        return cli_error("out of memory");
    }
    for (size_t k = 0; k < n_clouds; k++) {
        fallback[k] = cli_cloud_params(&clouds[k], &cf);
        if (clouds[k].api_key_env[0] && !fallback[k].api_key)
            fprintf(stderr, "locallm serve: %s: $%s is not set; no API key is sent\n",
                    clouds[k].name, clouds[k].api_key_env);
        fprintf(stderr, "locallm serve: fallback %s: %s, model %s\n", clouds[k].name,
                clouds[k].base_url, clouds[k].model);
    }
    char *default_ref = NULL;
    if (!model_ref) {
        default_ref = cli_default_chat_model();
        if (!default_ref) return cli_error("out of memory");
        model_ref = default_ref;
    }
    /* A hub id or short name is looked up in the cache and downloaded on first use; the memory
     * check runs unless --force. */
    char resolved[4096];
    if (n_clouds) {
        /* with a cloud behind it, a missing model is not fatal: look in the cache only */
        char *cache = cli_hf_cache_dir();
        lm_error err = {0};
        bool have_local = lm_resolve_model(model_ref, cache, resolved, sizeof resolved, &err) == LM_OK;
        free(cache);
        if (!have_local) {
            /* the cloud answers; /health and the log say why the model is missing */
            fprintf(stderr, "locallm serve: warning: %s; chat requests go to %s\n", err.msg,
                    clouds[0].name);
            snprintf(resolved, sizeof resolved, "%s", model_ref);
        }
    } else if (!cli_resolve_ref(model_ref, n_ctx, resolved, sizeof resolved)) {
        free(default_ref);
        return CLI_EXIT_ERROR;
    }

    srv_config cfg = {0};
    cfg.model_path = resolved;
    cfg.model_id = model_id(model_ref);
    cfg.host = host;
    cfg.port = (uint16_t)port;
    cfg.api_key = api_key;
    cfg.n_parallel = n_parallel;
    cfg.n_queue = n_queue;
    cfg.n_ctx = n_ctx;
    cfg.n_threads = n_threads;
    cfg.log = log_line;
    cfg.on_listen = on_listen;
    cfg.fallback = fallback;
    cfg.n_fallback = n_clouds;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lm_error err = {0};
    lm_status st = srv_run(&cfg, &g_stop, &err);
    free(default_ref);
    free(fallback);
    free(clouds);
    if (st != LM_OK) return cli_error("%s", err.msg);
    fputs("locallm serve: stopped\n", stderr);
    return CLI_EXIT_OK;
}
