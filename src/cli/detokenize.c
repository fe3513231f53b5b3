/* cli/detokenize.c: `locallm detokenize`, turn token ids into text.
 * Owns: the options of detokenize; the text is printed as the decoder gives it, no newline added. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static const char DETOKENIZE_HELP[] =
    "Usage: locallm detokenize MODEL --ids ID,ID,... [options]\n"
    "\n"
    "Prints the text of the token ids (no newline is added).\n"
    "\n"
    "Options:\n"
    "      --ids LIST       comma-separated token ids (required)\n"
    "      --skip-special   leave special tokens (BOS, EOS, ...) out of the text\n"
    "  -h, --help           show this help\n";

int cli_detokenize(int argc, char **argv) {
    const char *cmd = "detokenize";
    const char *model_path = NULL;
    lm_token *ids = NULL;
    size_t n_ids = 0;
    bool skip_special = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        bool bad = false;
        if (cli_is_help(a)) {
            fputs(DETOKENIZE_HELP, stdout);
            free(ids);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--skip-special") == 0) {
            skip_special = true;
        } else if (cli_opt(argc, argv, &i, "--ids", NULL, &v, &bad, cmd)) {
            free(ids);
            ids = NULL;
            if (bad || !cli_parse_ids(cmd, "--ids", v, &ids, &n_ids)) return CLI_EXIT_USAGE;
        } else if (a[0] == '-' && a[1] != '\0') {
            free(ids);
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!model_path) {
            model_path = a;
        } else {
            free(ids);
            return cli_usage_error(cmd, "unexpected argument '%s' (the model is '%s')", a,
                                   model_path);
        }
    }
    if (!model_path || !ids) {
        free(ids);
        return cli_usage_error(cmd, !model_path ? "no model given" : "--ids is required");
    }

    int rc = CLI_EXIT_ERROR;
    lm_model *model = NULL;
    char *text = NULL;
    if (!cli_load_model(model_path, 0, &model, NULL)) goto done;
    int32_t n_vocab = lm_n_vocab(model);
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] >= n_vocab) {
            cli_error("--ids: id %ld at position %zu is outside the vocabulary (0 to %ld)",
                      (long)ids[i], i, (long)n_vocab - 1);
            goto done;
        }
    }

    lm_error err = {0};
    size_t len = 0;
    /* A first guess that fits most texts; a second call gets the exact size when it does not. */
    size_t cap = n_ids * 16 + 1;
    text = malloc(cap);
    if (!text) {
        cli_error("out of memory");
        goto done;
    }
    lm_status st = lm_detokenize(model, ids, n_ids, skip_special, text, cap, &len, &err);
    if (st == LM_ERR_TOO_SMALL) {
        free(text);
        cap = len + 1;
        text = malloc(cap);
        if (!text) {
            cli_error("out of memory for %zu bytes of text", len);
            goto done;
        }
        st = lm_detokenize(model, ids, n_ids, skip_special, text, cap, &len, &err);
    }
    if (st != LM_OK) {
        cli_error("cannot detokenize: %s", err.msg[0] ? err.msg : lm_status_str(st));
        goto done;
    }
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    rc = CLI_EXIT_OK;

done:
    free(text);
    free(ids);
    lm_model_free(model);
    return rc;
}
