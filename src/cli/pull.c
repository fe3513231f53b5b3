/* cli/pull.c: `locallm pull ORG/NAME[@REV][:QUANT]`, download a model into the Hugging Face cache.
 * Owns: the environment the hub library does not read (HF_ENDPOINT, HF_TOKEN or the token file,
 * HF_HUB_OFFLINE, the cache folder), the progress display, and cli_hub_fetch used by model
 * loading to download on first use. */
#include "cli/cli.h"
#include "hub/hub.h"

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
    "uses) and prints the snapshot path. For a GGUF repository one .gguf is fetched: the one\n"
    "whose name contains QUANT (default Q4_K_M) or matches --include.\n",
    PULL_OPTIONS,
    "Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (else $HF_HOME/token),\n"
    "HF_HUB_OFFLINE=1 (cache only), HF_HUB_CACHE / HF_HOME (the cache folder).\n",
};

static char *read_token(void) {
    const char *t = getenv("HF_TOKEN");
    if (t && *t) return strdup(t);
    char path[4096];
    const char *home = getenv("HF_HOME");
    const char *h = getenv("HOME");
    if (home && *home) snprintf(path, sizeof path, "%s/token", home);
    else if (h && *h) snprintf(path, sizeof path, "%s/.cache/huggingface/token", h);
    else return NULL;
    size_t len = 0;
    char *s = cli_read_file(path, &len);
    if (!s) return NULL;
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ')) s[--len] = 0;
    if (!len) {
        free(s);
        return NULL;
    }
    return s;
}

bool cli_hub_offline(void) {
    const char *v = getenv("HF_HUB_OFFLINE");
    return v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0);
}

typedef struct progress {
    bool tty, quiet;
    char file[512];
    double t0, last;
    uint64_t last_done;
} progress;

static void human(char *out, size_t cap, double b) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (b >= 1024.0 && k < 4) b /= 1024.0, k++;
    snprintf(out, cap, k ? "%.1f %s" : "%.0f %s", b, u[k]);
}

static int on_progress(void *user, const char *file, uint64_t done, uint64_t total) {
    progress *p = user;
    if (p->quiet) return 0;
    double now = cli_now_ms();
    bool fresh = strcmp(p->file, file) != 0;
    if (fresh) {
        if (p->tty && p->file[0]) fputc('\n', stderr);
        snprintf(p->file, sizeof p->file, "%s", file);
        p->t0 = now;
        p->last = 0;
        if (!p->tty) fprintf(stderr, "downloading %s (%llu bytes)\n", file, (unsigned long long)total);
    }
    bool end = total && done >= total;
    if (!p->tty) {
        if (end && p->last_done != done) fprintf(stderr, "done %s\n", file);
        p->last_done = done;
        return 0;
    }
    if (!end && now - p->last < 100) return 0;
    p->last = now;
    double secs = (now - p->t0) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0;
    char d[32], t[32], r[32], eta[32] = "";
    human(d, sizeof d, (double)done);
    human(t, sizeof t, (double)total);
    human(r, sizeof r, rate);
    if (rate <= 0) snprintf(r, sizeof r, "-");
    if (total && rate > 0 && !end) snprintf(eta, sizeof eta, " ETA %.0fs", (double)(total - done) / rate);
    int width = 30, fill = total ? (int)((double)done / (double)total * width) : 0;
    if (fill > width) fill = width;
    fprintf(stderr, "\r\033[K%-30.30s [%.*s%*s] %s / %s %s/s%s", file, fill, "##############################",
            width - fill, "", d, t, r, eta);
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
    hub_opts o = {.endpoint = ep && *ep ? ep : "https://huggingface.co", .token = token, .cache_dir = cache,
                  .offline = offline, .includes = includes, .n_includes = n_includes};
    progress p = {.tty = isatty(STDERR_FILENO) != 0, .quiet = quiet};
    lm_error err = {0};
    lm_status st = hub_pull(&o, ref, on_progress, &p, out, cap, &err);
    if (p.tty && p.file[0] && !quiet) fputc('\n', stderr);
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
    for (int oid; (oid = cli_args_next(&a)) != CLI_ARGS_END;) {
        switch (oid) {
        case CLI_ARGS_HELP: return CLI_EXIT_OK;
        case CLI_ARGS_ERROR: return CLI_EXIT_USAGE;
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
    int rc = cli_hub_fetch(id, inc, n_inc, quiet, cli_hub_offline(), true, out, sizeof out);
    if (rc) return rc;
    printf("%s\n", out);
    return CLI_EXIT_OK;
}
