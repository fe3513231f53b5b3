/* cli/util.c: helpers shared by the subcommands of the locallm tool.
 * Owns: error/usage messages, strict number and list parsing, the legacy option scanner, the
 * sampling options every generating command shares (cli_gen_opt), the embedded models' paths,
 * resolving and loading a model (progress bar, memory check and --force, --chat-template,
 * vocab_only), reading files and streams, JSON string escaping and the clock.
 * Does not own: any subcommand's behaviour (one file per subcommand). */
#include "cli/cli.h"
#include "hub/hub.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("locallm: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_ERROR;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("locallm: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "Try 'locallm %s --help' for usage.\n", cmd);
    else
        fputs("Try 'locallm --help' for usage.\n", stderr);
    return CLI_EXIT_USAGE;
}

bool cli_parse_i32(const char *cmd, const char *opt, const char *s, int32_t min, int32_t max,
                   int32_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    /* strtoll skips leading blanks; a number here starts with a digit or a sign. */
    bool ok = *s && (*s == '-' || *s == '+' || (*s >= '0' && *s <= '9')) && end && *end == '\0' &&
              errno == 0;
    if (!ok) {
        cli_usage_error(cmd, "%s: '%s' is not an integer", opt, s);
        return false;
    }
    if (v < min || v > max) {
        cli_usage_error(cmd, "%s: %lld is out of range (expected %ld to %ld)", opt, v, (long)min,
                        (long)max);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

bool cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    /* strtoull accepts "-1" and wraps it; only plain digits are a valid seed. */
    if (!(*s >= '0' && *s <= '9')) {
        cli_usage_error(cmd, "%s: '%s' is not a non-negative integer", opt, s);
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0) {
        cli_usage_error(cmd, "%s: '%s' is not a non-negative integer that fits 64 bits", opt, s);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

bool cli_parse_float(const char *cmd, const char *opt, const char *s, float min, float max,
                     float *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    bool ok = *s && (*s == '-' || *s == '+' || *s == '.' || (*s >= '0' && *s <= '9')) && end &&
              *end == '\0' && errno == 0 && isfinite(v);
    if (!ok) {
        cli_usage_error(cmd, "%s: '%s' is not a number", opt, s);
        return false;
    }
    if (v < min || v > max) {
        cli_usage_error(cmd, "%s: %g is out of range (expected %g to %g)", opt, v, (double)min,
                        (double)max);
        return false;
    }
    *out = (float)v;
    return true;
}

bool cli_parse_i32_list(const char *cmd, const char *opt, const char *s, int32_t min,
                        int32_t max, int32_t **vals, size_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        if (*p == ',') cap++;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) {
        cli_error("out of memory parsing %s", opt);
        return false;
    }
    size_t count = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        /* Blanks around items are fine ("1, 2"); empty items are not. */
        while (len && (*p == ' ' || *p == '\t')) p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        char item[32];
        if (len == 0 || len >= sizeof item) {
            cli_usage_error(cmd, "%s: '%s' is not a comma-separated list of integers", opt, s);
            free(v);
            return false;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (!cli_parse_i32(cmd, opt, item, min, max, &v[count])) {
            free(v);
            return false;
        }
        count++;
        if (!comma) break;
        p = comma + 1;
    }
    *vals = v;
    *n = count;
    return true;
}

bool cli_parse_ids(const char *cmd, const char *opt, const char *s, lm_token **ids, size_t *n) {
    return cli_parse_i32_list(cmd, opt, s, 0, INT32_MAX, ids, n);
}

bool cli_opt(int argc, char **argv, int *i, const char *name, const char *alt, const char **val,
             bool *bad, const char *cmd) {
    const char *a = argv[*i];
    const char *names[2] = {name, alt};
    for (int k = 0; k < 2; k++) {
        const char *nm = names[k];
        if (!nm) continue;
        size_t len = strlen(nm);
        if (strncmp(a, nm, len) != 0) continue;
        if (a[len] == '\0') {
            if (*i + 1 >= argc) {
                cli_usage_error(cmd, "option %s needs a value", nm);
                *bad = true;
                return true;
            }
            *val = argv[++*i];
            return true;
        }
        /* "--name=value" only for long options, so "-n5" is not mistaken for "-n=5". */
        if (a[len] == '=' && nm[0] == '-' && nm[1] == '-') {
            *val = a + len + 1;
            return true;
        }
    }
    return false;
}

bool cli_is_help(const char *arg) {
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

/* Directory of the running executable, from /proc/self/exe where there is one (Linux), else
 * nothing: argv[0] may be a bare name found through PATH, which says nothing about the folder. */
static char *exe_dir(void) {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return NULL;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) return NULL;
    *slash = '\0';
    return join(buf, "");
}

/* $env, else name (a file or a folder) in the models folder beside the executable (a build
 * tree's ../models, an installed ../share/locallm/models), else in LM_MODELS_DIR. */
static char *embedded_model(const char *env, const char *name) {
    const char *e = getenv(env);
    if (e && *e) return join(e, "");
    char *dir = exe_dir();
    if (dir) {
        static const char *const rel[] = {"/../models/", "/../share/locallm/models/"};
        for (size_t k = 0; k < sizeof rel / sizeof rel[0]; k++) {
            size_t cap = strlen(dir) + strlen(rel[k]) + strlen(name) + 1;
            char *p = malloc(cap);
            if (!p) break;
            snprintf(p, cap, "%s%s%s", dir, rel[k], name);
            if (access(p, F_OK) == 0) {
                free(dir);
                return p;
            }
            free(p);
        }
        free(dir);
    }
#ifdef LM_MODELS_DIR
    return join(LM_MODELS_DIR "/", name);
#else
    return join("models/", name);
#endif
}

char *cli_default_model(void) { return embedded_model("LOCALLM_DEFAULT_MODEL", "stories260K.gguf"); }

char *cli_default_chat_model(void) { return embedded_model("LOCALLM_CHAT_MODEL", "tinychat"); }

typedef struct progress_state {
    int last_percent;
    bool drawn;
} progress_state;

static int draw_progress(float fraction, const char *stage, void *user) {
    progress_state *ps = user;
    if (fraction < 0) fraction = 0;
    if (fraction > 1) fraction = 1;
    int percent = (int)(fraction * 100.0f + 0.5f);
    if (percent == ps->last_percent) return 0;
    ps->last_percent = percent;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    int filled = percent * WIDTH / 100;
    for (int k = 0; k < WIDTH; k++) bar[k] = k < filled ? '#' : ' ';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\rloading [%s] %3d%% %-20.20s", bar, percent, stage ? stage : "");
    fflush(stderr);
    ps->drawn = true;
    return 0;
}

/* Big enough that a load takes long enough to be worth a bar. Folders (safetensors) always are.
 * A build may lower it (-DCLI_BAR_MIN_BYTES=0) to see the bar on the small fixtures. */
#ifndef CLI_BAR_MIN_BYTES
#define CLI_BAR_MIN_BYTES (64 * 1024 * 1024)
#endif
static bool worth_a_bar(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return false;
    if (S_ISDIR(st.st_mode)) return true;
    return st.st_size >= CLI_BAR_MIN_BYTES;
}

bool cli_env_true(const char *name) {
    const char *v = getenv(name);
    if (!v) return false;
    return strcmp(v, "1") == 0 || strcasecmp(v, "ON") == 0 || strcasecmp(v, "YES") == 0 || strcasecmp(v, "TRUE") == 0;
}

/* huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
 * ~/.cache/huggingface. Into buf; false when none is known. */
static bool hf_home(char *buf, size_t cap) {
    const char *home = getenv("HF_HOME");
    if (home && *home) return (size_t)snprintf(buf, cap, "%s", home) < cap;
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg) return (size_t)snprintf(buf, cap, "%s/huggingface", xdg) < cap;
    const char *h = getenv("HOME");
    if (!h || !*h) return false;
    return (size_t)snprintf(buf, cap, "%s/.cache/huggingface", h) < cap;
}

char *cli_hf_cache_dir(void) {
    const char *c = getenv("HF_HUB_CACHE");
    if (!c || !*c) c = getenv("HUGGINGFACE_HUB_CACHE"); /* the older name, still read by huggingface_hub */
    if (c && *c) return strdup(c);
    char home[4000], buf[4096];
    if (!hf_home(home, sizeof home)) return NULL;
    snprintf(buf, sizeof buf, "%s/hub", home);
    return strdup(buf);
}

char *cli_hf_token_path(void) {
    const char *p = getenv("HF_TOKEN_PATH");
    if (p && *p) return strdup(p);
    char home[4000], buf[4096];
    if (!hf_home(home, sizeof home)) return NULL;
    snprintf(buf, sizeof buf, "%s/token", home);
    return strdup(buf);
}

static bool g_force;     /* --force: the process-wide answer to the memory check */
static bool g_mem_check; /* set for the commands that run a model (main.c) */

void cli_set_force(bool force) { g_force = force; }
bool cli_force(void) { return g_force; }
void cli_set_mem_check(bool on) { g_mem_check = on; }

bool cli_mem_available(uint64_t *out) {
    const char *o = getenv("LM_MEM_AVAILABLE_OVERRIDE");
    if (o && *o >= '0' && *o <= '9') {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(o, &end, 10);
        if (*end == '\0' && errno == 0) {
            *out = (uint64_t)v;
            return true;
        }
    }
    lm_error err = {0};
    return hub_mem_available(out, &err) == LM_OK;
}

static void human_bytes(char *out, size_t cap, uint64_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double b = (double)n;
    int k = 0;
    while (b >= 1024.0 && k < 4) b /= 1024.0, k++;
    snprintf(out, cap, k ? "%.1f %s" : "%.0f %s", b, u[k]);
}

/* The guide's RAM table as a check: true when need fits the available memory (or it is unknown,
 * or --force); else prints needed vs available and returns false. */
bool cli_mem_check_need(const char *what, const char *verb, const hub_mem_need *need) {
    uint64_t avail = 0;
    if (g_force || !cli_mem_available(&avail) || need->total <= avail) return true;
    char t[32], w[32], kv[32], ov[32], av[32];
    human_bytes(t, sizeof t, need->total);
    human_bytes(w, sizeof w, need->weights);
    human_bytes(kv, sizeof kv, need->kv);
    human_bytes(ov, sizeof ov, need->overhead);
    human_bytes(av, sizeof av, avail);
    cli_error("not enough memory for %s: it needs about %s (weights %s + KV cache %s at %d tokens + "
              "overhead %s) but only %s is available; use a smaller model or context, or --force to %s "
              "it anyway",
              what, t, w, kv, (int)need->ctx, ov, av, verb);
    return false;
}

bool cli_mem_check_path(const char *what, const char *path, int32_t n_ctx, int32_t n_seq) {
    hub_mem_need need;
    lm_error err = {0};
    if (hub_mem_need_path(path, n_ctx, &need, &err) != LM_OK) return true; /* the load says what is wrong */
    if (n_seq > 1) {
        need.kv *= (uint64_t)n_seq;
        need.total = need.weights + need.kv + need.overhead;
    }
    return cli_mem_check_need(what, "load", &need);
}

bool cli_resolve_ref(const char *ref_in, int32_t n_ctx, char *resolved, size_t cap) {
    /* A catalog short name ("llama3.2:3b") stands for its repo id. */
    char ref[512];
    const hub_model_entry *entry = NULL;
    if (access(ref_in, F_OK) == 0) {
        snprintf(ref, sizeof ref, "%s", ref_in);
    } else {
        lm_error xerr = {0};
        if (hub_expand_ref(ref_in, ref, sizeof ref, &xerr) != LM_OK) {
            cli_error("cannot load model: %s", xerr.msg);
            return false;
        }
        entry = hub_catalog_find(ref_in);
    }
    /* A Hugging Face id is looked up in the cache first (the library reads no environment). */
    char *cache = cli_hf_cache_dir();
    lm_error rerr = {0};
    lm_status rst = lm_hub_resolve(ref, cache, resolved, cap, &rerr);
    free(cache);
    /* a hub id not in the cache (or with a :QUANT suffix) is fetched, from the cache first */
    if (rst != LM_OK && access(ref, F_OK) != 0 && strchr(ref, '/') && ref[0] != '/' && ref[0] != '.') {
        int probe = cli_hub_fetch(ref, NULL, 0, true, true, false, resolved, cap);
        if (probe == CLI_EXIT_OK) {
            rst = LM_OK;
        } else if (probe == CLI_EXIT_ERROR && !cli_hub_offline()) {
            if (entry && g_mem_check) {
                hub_mem_need need;
                hub_mem_need_entry(entry, n_ctx, &need);
                if (!cli_mem_check_need(ref_in, "download", &need)) return false;
            }
            fprintf(stderr, "locallm: %s is not in the cache; downloading it\n", ref);
            if (cli_hub_fetch(ref, NULL, 0, false, false, true, resolved, cap) != CLI_EXIT_OK)
                return false;
            rst = LM_OK;
        }
    }
    if (rst != LM_OK) {
        cli_error("cannot load model: %s", rerr.msg);
        return false;
    }
    if (g_mem_check && !cli_mem_check_path(ref_in, resolved, n_ctx, 1)) return false;
    return true;
}

static bool is_builtin_template(const char *name) {
    static const char *const names[] = {"llama3", "mistral", "chatml", "zephyr"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(name, names[k]) == 0) return true;
    return false;
}

/* lm_model_params for o. A --chat-template that is not a built-in name is read from its file
 * into *owned (the caller frees it); false with the reason in why when it cannot be. */
static bool load_params(const cli_load_opts *o, lm_model_params *mp, char **owned, char *why,
                        size_t cap) {
    *mp = lm_model_default_params();
    *owned = NULL;
    mp->n_threads = o->n_threads;
    mp->vocab_only = o->vocab_only;
    /* where the model runs: auto (the default), cpu, cuda or cuda:N (--device is to come) */
    const char *dev = getenv("LOCALLM_DEVICE");
    if (dev && *dev) mp->device = dev;
    const char *t = o->chat_template;
    if (t && !(t = cli_chat_template(t, owned, why, cap))) return false;
    mp->chat_template = t;
    return true;
}

const char *cli_chat_template(const char *opt, char **owned, char *why, size_t cap) {
    *owned = NULL;
    if (is_builtin_template(opt)) return opt;
    *owned = cli_read_file(opt, NULL);
    if (!*owned)
        snprintf(why, cap, "--chat-template: '%s' is neither a built-in format (llama3, "
                 "mistral, chatml, zephyr) nor a readable file: %s", opt, strerror(errno));
    return *owned;
}

/* The load error as one sentence that names the path once. */
static void load_error(const char *path, lm_status st, const lm_error *err, char *why, size_t cap) {
    if (err->msg[0] && strstr(err->msg, path))
        snprintf(why, cap, "cannot load model: %s", err->msg);
    else
        snprintf(why, cap, "cannot load model '%.400s': %s", path,
                 err->msg[0] ? err->msg : lm_status_str(st));
}

bool cli_load(const char *ref, const cli_load_opts *o, lm_model **out, double *load_ms) {
    *out = NULL;
    char why[800];
    lm_model_params mp;
    char *tpl = NULL;
    if (!load_params(o, &mp, &tpl, why, sizeof why)) {
        cli_error("%s", why);
        return false;
    }
    char resolved[4096];
    if (!cli_resolve_ref(ref, o->n_ctx, resolved, sizeof resolved)) {
        free(tpl);
        return false;
    }
    progress_state ps = {.last_percent = -1, .drawn = false};
    if (isatty(STDERR_FILENO) && !o->vocab_only && worth_a_bar(resolved)) {
        mp.progress = draw_progress;
        mp.progress_user = &ps;
    }
    lm_error err = {0};
    double t0 = cli_now_ms();
    lm_status st = lm_model_load(resolved, &mp, out, &err);
    double t1 = cli_now_ms();
    free(tpl);
    if (ps.drawn) fputs("\r\033[K", stderr);
    if (st != LM_OK) {
        *out = NULL;
        load_error(resolved, st, &err, why, sizeof why);
        cli_error("%s", why);
        return false;
    }
    if (load_ms) *load_ms = t1 - t0;
    return true;
}

bool cli_engine_new(const lm_model *model, lm_engine **out) {
    lm_error err = {0};
    if (lm_engine_new(model, NULL, out, &err) != LM_OK) {
        cli_error("cannot start the engine: %s", err.msg[0] ? err.msg : "unknown error");
        return false;
    }
    return true;
}

bool cli_load_model(const char *ref, int32_t n_threads, lm_model **out, double *load_ms) {
    cli_load_opts o = {.n_threads = n_threads};
    return cli_load(ref, &o, out, load_ms);
}

bool cli_load_quiet(const char *ref, const cli_load_opts *o, lm_model **out, char *why,
                    size_t cap) {
    *out = NULL;
    lm_model_params mp;
    char *tpl = NULL;
    if (!load_params(o, &mp, &tpl, why, cap)) return false;
    char resolved[4096];
    char *cache = cli_hf_cache_dir();
    lm_error err = {0};
    lm_status st = lm_hub_resolve(ref, cache, resolved, sizeof resolved, &err);
    free(cache);
    if (st != LM_OK) {
        free(tpl);
        snprintf(why, cap, "cannot load model: %s", err.msg);
        return false;
    }
    st = lm_model_load(resolved, &mp, out, &err);
    free(tpl);
    if (st != LM_OK) {
        *out = NULL;
        load_error(resolved, st, &err, why, cap);
        return false;
    }
    return true;
}

int cli_gen_opt(const cli_args *a, int id, lm_gen_params *gp, size_t *n_stop) {
    bool ok = true;
    switch (id) {
    case CLI_O_N_PREDICT: ok = cli_args_i32(a, -1, INT32_MAX, &gp->max_tokens); break;
    case CLI_O_TEMP: ok = cli_args_float(a, 0.0f, 100.0f, &gp->temperature); break;
    case CLI_O_TOP_K: ok = cli_args_i32(a, 0, INT32_MAX, &gp->top_k); break;
    case CLI_O_TOP_P: ok = cli_args_float(a, 0.0f, 1.0f, &gp->top_p); break;
    case CLI_O_MIN_P: ok = cli_args_float(a, 0.0f, 1.0f, &gp->min_p); break;
    case CLI_O_REPEAT_PENALTY: ok = cli_args_float(a, 0.0f, 100.0f, &gp->repeat_penalty); break;
    case CLI_O_SEED: ok = cli_args_u64(a, &gp->seed); break;
    case CLI_O_STOP:
        /* the list is NULL-terminated inside a fixed array, so one slot stays NULL */
        if (*n_stop + 1 >= LM_MAX_STOP) {
            cli_usage_error(a->cmd->name, "%s: at most %d stop strings", a->opt, LM_MAX_STOP - 1);
            return -1;
        }
        if (!*a->val) {
            cli_usage_error(a->cmd->name, "%s: the stop string is empty", a->opt);
            return -1;
        }
        gp->stop[(*n_stop)++] = a->val;
        break;
    default: return 0;
    }
    return ok ? 1 : -1;
}

char *cli_read_stream(FILE *f, size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (buf && ferror(f)) {
        free(buf);
        return NULL;
    }
    if (!buf) return NULL;
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *s = cli_read_stream(f, len);
    int e = errno;
    fclose(f);
    errno = e;
    return s;
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

double cli_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int cli_structured_opt(const cli_args *a, int id, cli_structured *so) {
    if (id != CLI_O_GRAMMAR && id != CLI_O_JSON_SCHEMA && id != CLI_O_JSON) return 0;
    if (so->grammar_path || so->schema_path || so->json) {
        cli_usage_error(a->cmd->name, "give one of --grammar, --json-schema and --json");
        return -1;
    }
    if (id == CLI_O_GRAMMAR) so->grammar_path = a->val;
    else if (id == CLI_O_JSON_SCHEMA) so->schema_path = a->val;
    else so->json = true;
    return 1;
}

int cli_structured_load(const cli_structured *so, lm_gen_params *gp, char **text) {
    *text = NULL;
    gp->json_object = so->json;
    const char *path = so->grammar_path ? so->grammar_path : so->schema_path;
    if (!path) return CLI_EXIT_OK;
    char *t = cli_read_file(path, NULL);
    if (!t)
        return cli_error("cannot read the %s file '%s': %s", so->grammar_path ? "grammar" : "JSON Schema", path,
                         strerror(errno));
    *text = t;
    if (so->grammar_path) gp->grammar = t;
    else gp->json_schema = t;
    return CLI_EXIT_OK;
}
