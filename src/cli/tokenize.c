/* cli/tokenize.c: `locallm tokenize`, turn text into token ids.
 * Owns: the options of tokenize and its two outputs: "id<TAB>piece" lines, or {"ids":[...]}. */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char TOKENIZE_HELP[] =
    "Usage: locallm tokenize MODEL (--text TEXT | --file FILE) [options]\n"
    "\n"
    "Prints the token ids of the text, one 'id<TAB>piece' line per token.\n"
    "\n"
    "Options:\n"
    "      --text TEXT       the text to tokenize\n"
    "      --file FILE       read the text from FILE\n"
    "      --no-bos-eos      do not add BOS/EOS tokens\n"
    "      --split-special   treat special-token text (\"<s>\") as plain text\n"
    "      --json            print {\"ids\":[...]} instead\n"
    "  -h, --help            show this help\n";

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int cli_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize";
    const char *model_path = NULL, *text_arg = NULL, *file_arg = NULL;
    uint32_t flags = LM_TOK_ADD_SPECIAL | LM_TOK_PARSE_SPECIAL;
    bool json = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        bool bad = false;
        if (cli_is_help(a)) {
            fputs(TOKENIZE_HELP, stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--no-bos-eos") == 0) {
            flags &= ~(uint32_t)LM_TOK_ADD_SPECIAL;
        } else if (strcmp(a, "--split-special") == 0) {
            flags &= ~(uint32_t)LM_TOK_PARSE_SPECIAL;
        } else if (cli_opt(argc, argv, &i, "--text", "-p", &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            text_arg = v;
        } else if (cli_opt(argc, argv, &i, "--file", "-f", &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            file_arg = v;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!model_path) {
            model_path = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the model is '%s')", a,
                                   model_path);
        }
    }
    if (!model_path) return cli_usage_error(cmd, "no model given");
    if (!text_arg == !file_arg) return cli_usage_error(cmd, "give exactly one of --text or --file");

    char *text = NULL;
    size_t len = 0;
    if (file_arg) {
        text = slurp(file_arg, &len);
        if (!text) return cli_error("cannot read '%s': %s", file_arg, strerror(errno));
    } else {
        len = strlen(text_arg);
        text = malloc(len + 1);
        if (!text) return cli_error("out of memory");
        memcpy(text, text_arg, len + 1);
    }

    int rc = CLI_EXIT_ERROR;
    lm_model *model = NULL;
    lm_token *ids = NULL;
    if (!cli_load_model(model_path, 0, &model, NULL)) goto done;

    lm_error err = {0};
    size_t n = 0;
    /* First ask for the count, then tokenize into a buffer of that size. */
    lm_status st = lm_tokenize(model, text, len, flags, NULL, 0, &n, &err);
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
        st = lm_tokenize(model, text, len, flags, ids, n, &n, &err);
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
            const char *piece = lm_token_piece(model, ids[i]);
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
