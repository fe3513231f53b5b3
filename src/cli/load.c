/* cli/load.c: finding and loading the model a command runs.
 * Owns: the embedded models' paths, resolving a reference (path, hub id, catalog short name:
 * downloading through pull.c, the memory check before a download and before a load), loading with
 * a progress bar, --chat-template (a built-in name or a file), vocab_only, and the engine on it.
 * Does not own: the memory figures and --force (util.c) or downloads (pull.c). */
#include "cli/cli.h"
#include "hub/hub.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static bool g_mem_check; /* set for the commands that run a model (main.c) */

void cli_set_mem_check(bool on) { g_mem_check = on; }

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
