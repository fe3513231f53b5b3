/* cli/tokenize.c: `locallm tokenize`, turn text into token ids.
 * Owns: the options of tokenize and its two outputs: "id<TAB>piece" lines, or {"ids":[...]}.
 * MODEL may be a tokenizer alone (a tokenizer.json, or a folder of tokenizer files). */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { O_TEXT = CLI_O_OWN, O_FILE, O_NO_BOS_EOS, O_SPLIT_SPECIAL };

static const cli_option TOKENIZE_OPTIONS[] = {
    {O_TEXT, "--text|-p", "TEXT", "the text to tokenize"},
    {O_FILE, "--file|-f", "FILE", "read the text from FILE"},
    {O_NO_BOS_EOS, "--no-bos-eos", NULL, "do not add BOS/EOS tokens"},
    {O_SPLIT_SPECIAL, "--split-special", NULL, "treat special-token text (\"<s>\") as plain text"},
    {CLI_O_JSON, "--json", NULL, "print {\"ids\":[...]} instead"},
    {0, NULL, NULL, NULL},
};

static const cli_command TOKENIZE_CMD = {
    "tokenize",
    "Usage: locallm tokenize MODEL (--text TEXT | --file FILE) [options]\n",
    "Prints the token ids of the text, one 'id<TAB>piece' line per token. MODEL is a model (a\n"
    ".gguf file, a folder, a hub id or short name) or its tokenizer alone: a tokenizer.json file\n"
    "or a folder holding it (with tokenizer_config.json), no weights needed.\n",
    TOKENIZE_OPTIONS,
    NULL,
};

int cli_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize";
    const char *model_path = NULL, *text_arg = NULL, *file_arg = NULL;
    uint32_t flags = LM_TOK_ADD_SPECIAL | LM_TOK_PARSE_SPECIAL;
    bool json = false;
    cli_args a;
    cli_args_init(&a, &TOKENIZE_CMD, argc, argv);
    int rc = -1;
    for (int id; (id = cli_args_step(&a, &model_path, &rc)) != CLI_ARGS_END;) {
        switch (id) {
        case CLI_O_JSON: json = true; break;
        case O_NO_BOS_EOS: flags &= ~(uint32_t)LM_TOK_ADD_SPECIAL; break;
        case O_SPLIT_SPECIAL: flags &= ~(uint32_t)LM_TOK_PARSE_SPECIAL; break;
        case O_TEXT: text_arg = a.val; break;
        case O_FILE: file_arg = a.val; break;
        }
    }
    if (rc >= 0) return rc;
    if (!model_path) return cli_usage_error(cmd, "no model given");
    if (!text_arg == !file_arg) return cli_usage_error(cmd, "give exactly one of --text or --file");

    char *text = NULL;
    size_t len = 0;
    if (file_arg) {
        text = cli_read_file(file_arg, &len);
        if (!text) return cli_error("cannot read '%s': %s", file_arg, strerror(errno));
    } else {
        len = strlen(text_arg);
        text = malloc(len + 1);
        if (!text) return cli_error("out of memory");
        memcpy(text, text_arg, len + 1);
    }

    rc = CLI_EXIT_ERROR;
    lm_model *model = NULL;
    lm_token *ids = NULL;
    cli_load_opts lo = {.vocab_only = true};
    if (!cli_load(model_path, &lo, &model, NULL)) goto done;

    lm_error err = {0};
    size_t n = 0;
    /* First ask for the count, then tokenize into a buffer of that size. */
    lm_status st = lm_model_tokenize(model, text, len, flags, NULL, 0, &n, &err);
    if (st != LM_OK && st != LM_ERR_TOO_SMALL) {
        cli_error("cannot tokenize: %s", err.msg[0] ? err.msg : lm_status_str(st));
        goto done;
    }
    ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        cli_error("out of memory for %zu tokens", n);
        goto done;
    }
    if (n > 0) {
        st = lm_model_tokenize(model, text, len, flags, ids, n, &n, &err);
        if (st != LM_OK) {
            cli_error("cannot tokenize: %s", err.msg[0] ? err.msg : lm_status_str(st));
            goto done;
        }
    }
    if (json) {
        fputs("{\"ids\":[", stdout);
        for (size_t i = 0; i < n; i++) printf("%s%ld", i ? "," : "", (long)ids[i]);
        fputs("]}\n", stdout);
    } else {
        for (size_t i = 0; i < n; i++) {
            const char *piece = lm_model_token_piece(model, ids[i]);
            printf("%ld\t%s\n", (long)ids[i], piece ? piece : "");
        }
    }
    rc = CLI_EXIT_OK;

done:
    free(ids);
    lm_model_free(model);
    free(text);
    return rc;
}
