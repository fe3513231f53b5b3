/* cli/detokenize.c: `locallm detokenize`, turn token ids into text.
 * Owns: the options of detokenize; the text is printed as the decoder gives it, no newline added.
 * MODEL may be a tokenizer alone (a tokenizer.json, or a folder of tokenizer files). */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

enum { O_IDS = CLI_O_OWN, O_SKIP_SPECIAL };

static const cli_option DETOKENIZE_OPTIONS[] = {
    {O_IDS, "--ids", "LIST", "comma-separated token ids (required)"},
    {O_SKIP_SPECIAL, "--skip-special", NULL, "leave special tokens (BOS, EOS, ...) out of the text"},
    {0, NULL, NULL, NULL},
};

static const cli_command DETOKENIZE_CMD = {
    "detokenize",
    "Usage: locallm detokenize MODEL --ids ID,ID,... [options]\n",
    "Prints the text of the token ids (no newline is added). MODEL may be a tokenizer alone: a\n"
    "tokenizer.json file or a folder holding it.\n",
    DETOKENIZE_OPTIONS,
    NULL,
};

int cli_detokenize(int argc, char **argv) {
    const char *cmd = "detokenize";
    const char *model_path = NULL;
    lm_token *ids = NULL;
    size_t n_ids = 0;
    bool skip_special = false;
    cli_args a;
    cli_args_init(&a, &DETOKENIZE_CMD, argc, argv);
    int rc = -1;
    for (int id; rc < 0 && (id = cli_args_step(&a, &model_path, &rc)) != CLI_ARGS_END;) {
        switch (id) {
        case O_SKIP_SPECIAL: skip_special = true; break;
        case O_IDS:
            free(ids);
            ids = NULL;
            if (!cli_parse_ids(cmd, a.opt, a.val, &ids, &n_ids)) rc = CLI_EXIT_USAGE;
            break;
        }
    }
    if (rc < 0 && (!model_path || !ids))
        rc = cli_usage_error(cmd, !model_path ? "no model given" : "--ids is required");
    if (rc >= 0) {
        free(ids);
        return rc;
    }

    rc = CLI_EXIT_ERROR;
    lm_model *model = NULL;
    char *text = NULL;
    cli_load_opts lo = {.vocab_only = true};
    if (!cli_load(model_path, &lo, &model, NULL)) goto done;
    int32_t n_vocab = lm_model_n_vocab(model);
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
    lm_status st = lm_model_detokenize(model, ids, n_ids, skip_special, text, cap, &len, &err);
    if (st == LM_ERR_TOO_SMALL) {
        free(text);
        cap = len + 1;
        text = malloc(cap);
        if (!text) {
            cli_error("out of memory for %zu bytes of text", len);
            goto done;
        }
        st = lm_model_detokenize(model, ids, n_ids, skip_special, text, cap, &len, &err);
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
