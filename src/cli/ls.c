/* cli/ls.c: `locallm ls` lists the models in the Hugging Face cache (or, with --available, the
 * catalog of recommended models with the memory each needs); `locallm rm ORG/NAME` removes one.
 * Owns their options and output. */
#include "cli/cli.h"
#include "hub/hub.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { O_AVAILABLE = CLI_O_OWN };

static const cli_option LS_OPTIONS[] = {
    {O_AVAILABLE, "-a|--available", NULL,
     "list the recommended models by short name instead: download size, the\n"
     "memory each needs (weights + KV cache at the context + overhead), whether\n"
     "it fits the available memory and whether it is cached"},
    {CLI_O_CTX, "-c|--ctx|--ctx-size", "N", "context for the KV cache estimate (default: the model's, at most 4096)"},
    {0, NULL, NULL, NULL},
};

static const cli_command LS_CMD = {
    "ls",
    "Usage: locallm ls [--available [--ctx N]]   (also: locallm list)\n",
    "Lists the models in the Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else\n"
    "~/.cache/huggingface/hub): id, revision and commit, size, format, last modified.\n",
    LS_OPTIONS,
    NULL,
};

static const cli_option RM_OPTIONS[] = {{0, NULL, NULL, NULL}};

static const cli_command RM_CMD = {
    "rm",
    "Usage: locallm rm ORG/NAME | SHORTNAME\n",
    "Removes a model (models--ORG--NAME with all its revisions) from the Hugging Face cache.\n"
    "A short name (llama3.2:3b, or llama3.2 for its default size) names its repository.\n",
    RM_OPTIONS,
    NULL,
};

static void gb(char *out, size_t cap, uint64_t bytes) { snprintf(out, cap, "%.1f GB", (double)bytes / 1e9); }

/* The catalog with the memory each model needs at ctx, the available memory and the cache state. */
static int ls_available(int32_t ctx) {
    char *cache = cli_hf_cache_dir();
    hub_cached *list = NULL;
    size_t n_cached = 0;
    lm_error err = {0};
    if (cache && hub_cache_list(cache, &list, &n_cached, &err) != LM_OK) n_cached = 0;
    uint64_t avail = 0;
    bool known = cli_mem_available(&avail);
    size_t n = 0;
    const hub_model_entry *cat = hub_catalog(&n);
    printf("%-18s %-50s %-5s %7s %9s %9s %-4s %-6s %s\n", "NAME", "REPO", "FMT", "PARAMS", "DOWNLOAD",
           "MEMORY", "FITS", "CACHED", "DESCRIPTION");
    for (size_t i = 0; i < n; i++) {
        const hub_model_entry *e = &cat[i];
        hub_mem_need need;
        hub_mem_need_entry(e, ctx, &need);
        char base[512], quant[64], dl[32], mem[32], params[32];
        if (!hub_split_quant(e->repo, base, sizeof base, quant, sizeof quant)) snprintf(base, sizeof base, "%s", e->repo);
        bool cached = false;
        for (size_t k = 0; k < n_cached && !cached; k++) cached = strcmp(list[k].id, base) == 0;
        /* a GGUF repo counts as cached only when the chosen quant is there: ask the resolver */
        if (cached && quant[0]) {
            char path[4096];
            lm_error e2 = {0};
            cached = lm_hub_resolve(e->name, cache, path, sizeof path, &e2) == LM_OK;
        }
        gb(dl, sizeof dl, need.weights);
        gb(mem, sizeof mem, need.total);
        snprintf(params, sizeof params, "%.1fB", e->params_b);
        printf("%-18s %-50s %-5s %7s %9s %9s %-4s %-6s %s\n", e->name, e->repo, e->format, params, dl, mem,
               !known ? "?" : need.total <= avail ? "yes" : "no", cached ? "yes" : "no", e->desc);
    }
    /* the family names that stand for a default size */
    fputs("\nA name without its tag picks the default size:", stdout);
    const char *sep = " ";
    for (size_t i = 0; i < n; i++) {
        char family[64];
        snprintf(family, sizeof family, "%.*s", (int)strcspn(cat[i].name, ":"), cat[i].name);
        const char *full = hub_catalog_default(family);
        if (full && strcmp(full, cat[i].name) == 0) {
            printf("%s%s = %s", sep, family, full);
            sep = ", ";
        }
    }
    fputs("\n", stdout);
    if (known) {
        char av[32];
        gb(av, sizeof av, avail);
        printf("memory available: %s; MEMORY = weights + F16 KV cache at %s + %llu MiB overhead\n", av,
               ctx > 0 ? "the --ctx context" : "the model's context (at most 4096)",
               (unsigned long long)(HUB_MEM_OVERHEAD >> 20));
    }
    lm_free(list);
    free(cache);
    return CLI_EXIT_OK;
}

int cli_ls(int argc, char **argv) {
    bool available = false;
    int32_t ctx = 0;
    cli_args a;
    cli_args_init(&a, &LS_CMD, argc, argv);
    int rc = -1;
    for (int id; (id = cli_args_step(&a, NULL, &rc)) != CLI_ARGS_END;) {
        switch (id) {
        case CLI_ARGS_POSITIONAL: return cli_usage_error("ls", "unexpected argument '%s'", a.val);
        case O_AVAILABLE: available = true; break;
        case CLI_O_CTX:
            if (!cli_args_i32(&a, 1, INT32_MAX, &ctx)) return CLI_EXIT_USAGE;
            break;
        }
    }
    if (rc >= 0) return rc;
    if (ctx && !available) return cli_usage_error("ls", "--ctx goes with --available");
    if (available) return ls_available(ctx);
    char *cache = cli_hf_cache_dir();
    if (!cache) return cli_error("no Hugging Face cache folder: set HF_HUB_CACHE or HF_HOME");
    hub_cached *list = NULL;
    size_t n = 0;
    lm_error err = {0};
    lm_status st = hub_cache_list(cache, &list, &n, &err);
    free(cache);
    if (st) return cli_error("%s", err.msg);
    if (!n) fputs("no models in the cache\n", stderr);
    else printf("%-40s %-20s %10s %-12s %s\n", "MODEL", "REVISION", "SIZE", "FORMAT", "MODIFIED");
    for (size_t i = 0; i < n; i++) {
        const hub_cached *c = &list[i];
        char rev[160], size[32], when[32] = "-";
        snprintf(rev, sizeof rev, "%s@%.8s", c->rev[0] ? c->rev : "-", c->commit);
        double b = (double)c->size;
        const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        int k = 0;
        while (b >= 1024.0 && k < 4) b /= 1024.0, k++;
        snprintf(size, sizeof size, k ? "%.1f %s" : "%.0f %s", b, u[k]);
        time_t t = (time_t)c->mtime;
        struct tm tm;
        if (c->mtime && localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        printf("%-40s %-20s %10s %-12s %s\n", c->id, rev, size, c->format, when);
    }
    lm_free(list);
    return CLI_EXIT_OK;
}

int cli_rm(int argc, char **argv) {
    const char *ref = NULL;
    cli_args a;
    cli_args_init(&a, &RM_CMD, argc, argv);
    int rc = -1;
    while (cli_args_step(&a, NULL, &rc) == CLI_ARGS_POSITIONAL) {
        if (ref) return cli_usage_error("rm", "expected one model id (ORG/NAME)");
        ref = a.val;
    }
    if (rc >= 0) return rc;
    if (!ref) return cli_usage_error("rm", "expected one model id (ORG/NAME)");
    /* a short name removes its repo (the whole repo: for GGUF every quant in it) */
    char id[512], quant[64];
    const hub_model_entry *entry = hub_catalog_find(ref);
    if (!entry || !hub_split_quant(entry->repo, id, sizeof id, quant, sizeof quant))
        snprintf(id, sizeof id, "%s", ref);
    char org[128], name[128], rev[256];
    if (strchr(id, '@') || !hub_parse_id(id, org, sizeof org, name, sizeof name, rev, sizeof rev))
        return cli_usage_error("rm", "'%s' is not a valid Hugging Face model id (ORG/NAME)", ref);
    char *cache = cli_hf_cache_dir();
    if (!cache) return cli_error("no Hugging Face cache folder: set HF_HUB_CACHE or HF_HOME");
    lm_error err = {0};
    lm_status st = hub_cache_remove(cache, id, &err);
    free(cache);
    if (st) return cli_error("%s", err.msg);
    printf("removed %s\n", id);
    return CLI_EXIT_OK;
}
