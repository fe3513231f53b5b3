/* cli/ls.c: `locallm ls` lists the models in the Hugging Face cache; `locallm rm ORG/NAME`
 * removes one. Owns their options and output. */
#include "cli/cli.h"
#include "hub/hub.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char LS_HELP[] =
    "Usage: locallm ls\n"
    "\n"
    "Lists the models in the Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else\n"
    "~/.cache/huggingface/hub): id, revision and commit, size, format, last modified.\n";

static const char RM_HELP[] =
    "Usage: locallm rm ORG/NAME\n"
    "\n"
    "Removes a model (models--ORG--NAME with all its revisions) from the Hugging Face cache.\n";

int cli_ls(int argc, char **argv) {
    if (argc > 1 && cli_is_help(argv[1])) {
        fputs(LS_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (argc > 1) return cli_usage_error("ls", "unexpected argument '%s'", argv[1]);
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
    if (argc > 1 && cli_is_help(argv[1])) {
        fputs(RM_HELP, stdout);
        return CLI_EXIT_OK;
    }
    if (argc != 2) return cli_usage_error("rm", "expected one model id (ORG/NAME)");
    char org[128], name[128], rev[256];
    if (strchr(argv[1], '@') || !hub_parse_id(argv[1], org, sizeof org, name, sizeof name, rev, sizeof rev))
        return cli_usage_error("rm", "'%s' is not a valid Hugging Face model id (ORG/NAME)", argv[1]);
    char *cache = cli_hf_cache_dir();
    if (!cache) return cli_error("no Hugging Face cache folder: set HF_HUB_CACHE or HF_HOME");
    lm_error err = {0};
    lm_status st = hub_cache_remove(cache, argv[1], &err);
    free(cache);
    if (st) return cli_error("%s", err.msg);
    printf("removed %s\n", argv[1]);
    return CLI_EXIT_OK;
}
