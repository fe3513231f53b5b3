/* cli/pull.c: `locallm pull ORG/NAME[@REV][:QUANT]`, download a model into the Hugging Face cache.
 * Owns: the environment the hub library does not read, turned into lm_hub_params as
 * huggingface_hub reads it (HF_ENDPOINT, HF_TOKEN / HUGGING_FACE_HUB_TOKEN / HF_TOKEN_PATH,
 * HF_HUB_DISABLE_IMPLICIT_TOKEN, HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, HF_HUB_ETAG_TIMEOUT,
 * HF_HUB_DOWNLOAD_TIMEOUT, HF_HUB_DISABLE_PROGRESS_BARS, the cache folder), the progress display,
 * and cli_hub_fetch used by model loading to download on first use. */
#include "cli/cli.h"
#include "hub/hub.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum { O_INCLUDE = CLI_O_OWN, O_QUIET };

static const cli_option PULL_OPTIONS[] = {
    {O_INCLUDE, "--include", "GLOB", "only files matching GLOB (fnmatch); may repeat"},
    {O_QUIET, "-q|--quiet", NULL, "no progress output"},
    {CLI_O_FORCE, "--force", NULL, "download a catalog model even when it will not fit in memory"},
    {0, NULL, NULL, NULL},
};

static const cli_command PULL_CMD = {
    "pull",
    "Usage: locallm pull ORG/NAME[@REVISION][:QUANT] [--include GLOB]...\n"
    "       locallm pull SHORTNAME (e.g. llama3.2 or llama3.2:3b; 'locallm ls --available')\n",
    "Downloads a model from the Hugging Face hub into its cache (the layout huggingface_hub\n"
    "uses, .locks/ included, so both can share it) and prints the snapshot path. For a GGUF\n"
    "repository one .gguf is fetched: the one whose name contains QUANT (default Q4_K_M) or\n"
    "matches --include. Files already in the cache are not fetched again.\n",
    PULL_OPTIONS,
    "Environment (as huggingface_hub reads it; true is 1, ON, YES or TRUE in any case):\n"
    "  HF_ENDPOINT                    the hub (default https://huggingface.co)\n"
    "  HF_TOKEN, HUGGING_FACE_HUB_TOKEN  the access token, else the file HF_TOKEN_PATH\n"
    "                                 (default $HF_HOME/token)\n"
    "  HF_HUB_DISABLE_IMPLICIT_TOKEN  true: send no token\n"
    "  HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE  true: the cache only, no network\n"
    "  HF_HUB_ETAG_TIMEOUT            seconds for metadata requests (default 10)\n"
    "  HF_HUB_DOWNLOAD_TIMEOUT        seconds a download may go without data (default 60)\n"
    "  HF_HUB_DISABLE_PROGRESS_BARS   true: a line per file instead of a progress bar\n"
    "  HF_HUB_CACHE (HUGGINGFACE_HUB_CACHE), HF_HOME, XDG_CACHE_HOME  the cache folder\n",
};

static char *read_token(void) {
    /* huggingface_hub's get_token_to_send: no implicit token when disabled */
    if (cli_env_true("HF_HUB_DISABLE_IMPLICIT_TOKEN")) return NULL;
    const char *t = getenv("HF_TOKEN");
    if (!t || !*t) t = getenv("HUGGING_FACE_HUB_TOKEN");
    if (t && *t) return strdup(t);
    char *path = cli_hf_token_path();
    if (!path) return NULL;
    size_t len = 0;
    char *s = cli_read_file(path, &len);
    free(path);
    if (!s) return NULL;
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ')) s[--len] = 0;
    if (!len) {
        free(s);
        return NULL;
    }
    return s;
}

bool cli_hub_offline(void) { return cli_env_true("HF_HUB_OFFLINE") || cli_env_true("TRANSFORMERS_OFFLINE"); }

/* Seconds from a variable (huggingface_hub reads a number, fractions allowed), rounded up;
 * 0 (the library default) when unset or not a positive number. */
static int32_t env_seconds(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end = NULL;
    double d = strtod(v, &end);
    if (end == v || *end || !(d > 0)) {
        fprintf(stderr, "locallm: warning: %s='%s' is not a number of seconds; using the default\n", name, v);
        return 0;
    }
    return d > 86400 ? 86400 : (int32_t)ceil(d);
}

typedef struct progress {
    bool tty, quiet, bars;
    bool line_open;         /* a progress bar is drawn without its newline */
    char file[512], waiting[512];
    double t0, last;
    size_t n_cached, n_fetched;
} progress;

static void human(char *out, size_t cap, double b) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (b >= 1024.0 && k < 4) b /= 1024.0, k++;
    snprintf(out, cap, k ? "%.1f %s" : "%.0f %s", b, u[k]);
}

static void end_line(progress *p) {
    if (p->line_open) fputc('\n', stderr);
    p->line_open = false;
}

static int on_progress(const lm_hub_progress *e, void *user) {
    progress *p = user;
    if (e->event == LM_HUB_FILE_CACHED) {
        p->n_cached++; /* complete files stay quiet: one "up to date" line at the end */
        return 0;
    }
    if (p->quiet) return 0;
    const char *file = e->file;
    if (e->event == LM_HUB_FILE_WAITING) {
        if (strcmp(p->waiting, file) != 0) {
            end_line(p);
            snprintf(p->waiting, sizeof p->waiting, "%s", file);
            fprintf(stderr, "waiting for another download of %s to finish (its lock in .locks/ is held)\n", file);
        }
        return 0;
    }
    double now = cli_now_ms();
    if (e->event == LM_HUB_FILE_START) {
        end_line(p);
        p->n_fetched++;
        snprintf(p->file, sizeof p->file, "%s", file);
        p->t0 = now;
        p->last = 0;
        if (!p->bars) {
            if (e->done) fprintf(stderr, "downloading %s (%llu bytes, resuming at %llu)\n", file,
                                 (unsigned long long)e->total, (unsigned long long)e->done);
            else fprintf(stderr, "downloading %s (%llu bytes)\n", file, (unsigned long long)e->total);
        }
        if (p->bars) p->last = -1e9; /* draw at once */
    }
    if (!p->bars) {
        if (e->event == LM_HUB_FILE_DONE) fprintf(stderr, "done %s\n", file);
        return 0;
    }
    bool end = e->event == LM_HUB_FILE_DONE;
    if (!end && now - p->last < 100) return 0;
    p->last = now;
    uint64_t done = e->done, total = e->total;
    double secs = (now - p->t0) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0;
    char d[32], t[32], r[32], eta[32] = "";
    human(d, sizeof d, (double)done);
    human(t, sizeof t, (double)total);
    human(r, sizeof r, rate);
    if (rate <= 0) snprintf(r, sizeof r, "-");
    if (total && rate > 0 && !end && done < total) snprintf(eta, sizeof eta, " ETA %.0fs", (double)(total - done) / rate);
    int width = 30, fill = total ? (int)((double)done / (double)total * width) : 0;
    if (fill > width) fill = width;
    fprintf(stderr, "\r\033[K%-30.30s [%.*s%*s] %s / %s %s/s%s", file, fill, "##############################",
            width - fill, "", d, t, r, eta);
    p->line_open = true;
    if (end) end_line(p);
    return 0;
}

int cli_hub_fetch(const char *ref, const char *const *includes, size_t n_includes, bool quiet, bool offline,
                  bool report, char *out, size_t cap) {
    char base[512], quant[64];
    if (!hub_split_quant(ref, base, sizeof base, quant, sizeof quant)) {
        if (report) cli_error("'%s' is not a valid Hugging Face model id (ORG/NAME[@REVISION][:QUANT])", ref);
        return CLI_EXIT_USAGE;
    }
    char *cache = cli_hf_cache_dir();
    if (!cache) return cli_error("no Hugging Face cache folder: set HF_HUB_CACHE or HF_HOME");
    char *token = read_token();
    const char *ep = getenv("HF_ENDPOINT");
    lm_hub_params hp = lm_hub_default_params();
    hp.endpoint = ep && *ep ? ep : "https://huggingface.co";
    hp.token = token;
    hp.cache_dir = cache;
    hp.offline = offline;
    hp.includes = includes;
    hp.n_includes = n_includes;
    int32_t t = env_seconds("HF_HUB_ETAG_TIMEOUT");
    if (t) hp.etag_timeout_s = t;
    if ((t = env_seconds("HF_HUB_DOWNLOAD_TIMEOUT"))) hp.download_timeout_s = t;
    progress p = {.tty = isatty(STDERR_FILENO) != 0, .quiet = quiet};
    p.bars = p.tty && !cli_env_true("HF_HUB_DISABLE_PROGRESS_BARS");
    hp.progress = on_progress;
    hp.progress_user = &p;
    lm_error err = {0};
    lm_status st = lm_hub_pull(ref, &hp, out, cap, &err);
    end_line(&p);
    if (st == LM_OK && !quiet && !offline && p.n_fetched == 0)
        fprintf(stderr, "%s: up to date (%zu file%s in the cache)\n", base, p.n_cached, p.n_cached == 1 ? "" : "s");
    free(token);
    free(cache);
    if (st != LM_OK) return report ? cli_error("%s", err.msg) : CLI_EXIT_ERROR;
    return CLI_EXIT_OK;
}

int cli_pull(int argc, char **argv) {
    const char *cmd = "pull";
    const char *id = NULL;
    const char *inc[64];
    size_t n_inc = 0;
    bool quiet = false;
    cli_args a;
    cli_args_init(&a, &PULL_CMD, argc, argv);
    int rc = -1;
    for (int oid; (oid = cli_args_step(&a, NULL, &rc)) != CLI_ARGS_END;) {
        switch (oid) {
        case CLI_ARGS_POSITIONAL:
            if (id) return cli_usage_error(cmd, "unexpected argument '%s'", a.val);
            id = a.val;
            break;
        case O_INCLUDE:
            if (n_inc == sizeof inc / sizeof inc[0]) return cli_usage_error(cmd, "too many --include options");
            inc[n_inc++] = a.val;
            break;
        case O_QUIET: quiet = true; break;
        case CLI_O_FORCE: cli_set_force(true); break;
        }
    }
    if (rc >= 0) return rc;
    if (!id) return cli_usage_error(cmd, "missing the model id (ORG/NAME[@REVISION][:QUANT])");
    /* a short name from the catalog: its repo id, after checking it can run here at all */
    const char *short_name = NULL;
    char expanded[512];
    const hub_model_entry *entry = hub_catalog_find(id);
    if (entry || hub_is_short_name(id)) {
        lm_error xerr = {0};
        if (hub_expand_ref(id, expanded, sizeof expanded, &xerr) != LM_OK) return cli_error("%s", xerr.msg);
        short_name = id;
        id = expanded;
    }
    if (entry && !cli_hub_offline()) {
        hub_mem_need need;
        hub_mem_need_entry(entry, 0, &need);
        if (!cli_mem_check_need(short_name, "download", &need)) return CLI_EXIT_ERROR;
    }
    char base[512], quant[64];
    if (!hub_split_quant(id, base, sizeof base, quant, sizeof quant))
        return cli_usage_error(cmd, "'%s' is not a valid Hugging Face model id (ORG/NAME[@REVISION][:QUANT])", id);
    char out[4096];
    rc = cli_hub_fetch(id, inc, n_inc, quiet, cli_hub_offline(), true, out, sizeof out);
    if (rc) return rc;
    printf("%s\n", out);
    return CLI_EXIT_OK;
}
