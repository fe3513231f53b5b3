/* cli/options.c: the option table every subcommand parses its arguments with.
 * Owns: scanning argv against a command's table (every spelling of an option, separate values and
 * "--name=value", "--" ending the options), -h/--help with the help text made from the table,
 * typed value parsing that names the option as the user spelled it, and "did you mean"
 * suggestions for unknown options, commands and REPL commands (the nearest spelling by edit
 * distance, or the one the word begins).
 * The options several commands share and what they do to the parameters are here too: sampling
 * (cli_gen_opt) and structured output (cli_structured_opt, cli_structured_load).
 * Does not own: what a command's own options mean (each subcommand's file). */
#include "cli/cli.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* ---- suggestions ------------------------------------------------------------------------------ */

/* Optimal string alignment distance (insert, delete, substitute, swap two neighbours), on the
 * first 63 bytes of each word: names are short, and a longer word is nobody's typo. */
static size_t edit_distance(const char *a, const char *b) {
    enum { MAXW = 63 };
    size_t la = strlen(a), lb = strlen(b);
    if (la > MAXW) la = MAXW;
    if (lb > MAXW) lb = MAXW;
    size_t d[MAXW + 1][MAXW + 1];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best) best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* How far word is from cand for a suggestion, or SIZE_MAX when cand is no good guess. Leading
 * dashes are compared too ("-temp" is one edit from "--temp"); a word of 3 or more letters that
 * cand begins with counts as one edit ("--verb" for "--verbose"). */
static size_t closeness(const char *word, const char *cand) {
    const char *w = word, *c = cand;
    while (*w == '-' || *w == '/') w++;
    while (*c == '-' || *c == '/') c++;
    size_t lw = strlen(w);
    if (lw == 0) return SIZE_MAX;
    size_t d = edit_distance(word, cand);
    if (lw >= 3 && strncmp(c, w, lw) == 0 && d > 1) d = 1;
    /* at most 2 edits, and fewer than half the letters: "--bogus" is nobody's "--json" */
    size_t limit = lw >= 6 ? 2 : 1;
    if (d > limit || 2 * d >= lw + (lw == 1)) return SIZE_MAX;
    return d;
}

const char *cli_nearest(const char *word, const char *const *cands, size_t n) {
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (!cands[i]) continue;
        size_t d = closeness(word, cands[i]);
        if (d < best_d) best_d = d, best = cands[i];
    }
    return best;
}

/* ---- the table -------------------------------------------------------------------------------- */

/* Copies spelling k (0-based) of names into out; false when there is no such spelling. */
static bool spelling(const char *names, size_t k, char *out, size_t cap) {
    const char *p = names;
    for (; k > 0; k--) {
        p = strchr(p, '|');
        if (!p) return false;
        p++;
    }
    size_t n = strcspn(p, "|");
    if (n == 0 || n >= cap) return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* The option of the table spelled exactly word (the part before any '='), or NULL. */
static const cli_option *find(const cli_option *t, const char *word, size_t len) {
    for (; t->id; t++) {
        if (t->id < 0 || !t->names) continue;
        for (const char *p = t->names; p;) {
            size_t n = strcspn(p, "|");
            if (n == len && strncmp(p, word, len) == 0) return t;
            p = p[n] ? p + n + 1 : NULL;
        }
    }
    return NULL;
}

/* The spelling in the table (or -h/--help) nearest to word, written into out; false if none. */
static bool suggest_option(const cli_option *t, const char *word, char *out, size_t cap) {
    size_t best_d = SIZE_MAX;
    const char *help[] = {"--help"};
    if (closeness(word, help[0]) < best_d) {
        best_d = closeness(word, help[0]);
        snprintf(out, cap, "%s", help[0]);
    }
    for (; t->id; t++) {
        if (t->id < 0 || !t->names) continue;
        char s[64];
        for (size_t k = 0; spelling(t->names, k, s, sizeof s); k++) {
            size_t d = closeness(word, s);
            if (d < best_d) {
                best_d = d;
                snprintf(out, cap, "%s", s);
            }
        }
    }
    return best_d != SIZE_MAX;
}

void cli_args_init(cli_args *a, const cli_command *cmd, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
    a->i = 1;
}

int cli_args_next(cli_args *a) {
    a->val = NULL;
    a->opt[0] = '\0';
    if (a->i >= a->argc) return CLI_ARGS_END;
    const char *arg = a->argv[a->i++];
    /* "-" names stdin; "--" ends the options; anything else not starting with '-' is a word */
    if (a->rest || arg[0] != '-' || arg[1] == '\0') {
        a->val = arg;
        return CLI_ARGS_POSITIONAL;
    }
    if (strcmp(arg, "--") == 0) {
        a->rest = true;
        return cli_args_next(a);
    }
    const char *name = a->cmd->name;
    if (cli_is_help(arg)) {
        cli_print_help(a->cmd, stdout);
        return CLI_ARGS_HELP;
    }
    /* "--name=value" for long options only, so "-n=5" is not taken apart */
    const char *eq = arg[1] == '-' ? strchr(arg, '=') : NULL;
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    snprintf(a->opt, sizeof a->opt, "%.*s", (int)(len < sizeof a->opt ? len : sizeof a->opt - 1), arg);
    const cli_option *o = find(a->cmd->options, arg, len);
    if (!o) {
        char near[64];
        if (suggest_option(a->cmd->options, a->opt, near, sizeof near))
            cli_usage_error(name, "unknown option '%s' (did you mean %s?)", a->opt, near);
        else
            cli_usage_error(name, "unknown option '%s'", a->opt);
        return CLI_ARGS_ERROR;
    }
    if (!o->arg) {
        if (eq) {
            cli_usage_error(name, "option %s takes no value", a->opt);
            return CLI_ARGS_ERROR;
        }
        return o->id;
    }
    if (eq) {
        a->val = eq + 1;
    } else if (a->i < a->argc) {
        a->val = a->argv[a->i++]; /* taken as it is, even when it starts with '-' ("-n -1") */
    } else {
        cli_usage_error(name, "option %s needs a value", a->opt);
        return CLI_ARGS_ERROR;
    }
    return o->id;
}

bool cli_args_model(const cli_args *a, const char **model) {
    if (*model) {
        cli_usage_error(a->cmd->name, "unexpected argument '%s' (the model is '%s')", a->val, *model);
        return false;
    }
    *model = a->val;
    return true;
}

int cli_args_step(cli_args *a, const char **model, int *rc) {
    for (;;) {
        int id = cli_args_next(a);
        if (id == CLI_ARGS_HELP || id == CLI_ARGS_ERROR) {
            *rc = id == CLI_ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
            return CLI_ARGS_END;
        }
        if (id != CLI_ARGS_POSITIONAL || !model) return id;
        if (!cli_args_model(a, model)) {
            *rc = CLI_EXIT_USAGE;
            return CLI_ARGS_END;
        }
    }
}

bool cli_args_i32(const cli_args *a, int32_t min, int32_t max, int32_t *out) {
    return cli_parse_i32(a->cmd->name, a->opt, a->val, min, max, out);
}

bool cli_args_u64(const cli_args *a, uint64_t *out) {
    return cli_parse_u64(a->cmd->name, a->opt, a->val, out);
}

bool cli_args_float(const cli_args *a, float min, float max, float *out) {
    return cli_parse_float(a->cmd->name, a->opt, a->val, min, max, out);
}

bool cli_args_kv_type(const cli_args *a, bool *kv_f32) {
    if (strcmp(a->val, "f32") && strcmp(a->val, "f16")) {
        cli_usage_error(a->cmd->name, "%s: expected f16 or f32, got '%s'", a->opt, a->val);
        return false;
    }
    *kv_f32 = strcmp(a->val, "f32") == 0;
    return true;
}

/* ---- help ------------------------------------------------------------------------------------- */

enum { HELP_COLUMN = 27 }; /* where the descriptions start */

static void print_option(const cli_option *o, FILE *f) {
    char left[160];
    size_t n = 0;
    /* a long option alone is indented as if a short one stood before it */
    bool short_first = o->names[0] == '-' && o->names[1] != '-';
    n += (size_t)snprintf(left + n, sizeof left - n, "%s", short_first ? "  " : "      ");
    char s[64];
    for (size_t k = 0; spelling(o->names, k, s, sizeof s) && n < sizeof left; k++)
        n += (size_t)snprintf(left + n, sizeof left - n, "%s%s", k ? ", " : "", s);
    if (o->arg && n < sizeof left) n += (size_t)snprintf(left + n, sizeof left - n, " %s", o->arg);
    if (n >= sizeof left) n = sizeof left - 1;
    fputs(left, f);
    /* too long for the column: the description starts on the next line */
    if (n + 1 >= HELP_COLUMN) {
        fputc('\n', f);
        n = 0;
    }
    fprintf(f, "%*s", (int)(HELP_COLUMN - n), "");
    for (const char *h = o->help ? o->help : ""; *h; h++) {
        fputc(*h, f);
        if (*h == '\n') fprintf(f, "%*s", HELP_COLUMN, "");
    }
    fputc('\n', f);
}

void cli_print_help(const cli_command *cmd, FILE *f) {
    static const cli_option help = CLI_OPT_HELP;
    fputs(cmd->usage, f);
    if (cmd->about) {
        fputc('\n', f);
        fputs(cmd->about, f);
    }
    fputs("\nOptions:\n", f);
    bool help_shown = false;
    for (const cli_option *o = cmd->options; o && o->id; o++) {
        if (o->id == CLI_HEADING) {
            /* a section starts: -h belongs to the command's own options, before it */
            if (!help_shown) print_option(&help, f);
            help_shown = true;
            fprintf(f, "\n%s\n", o->help);
            continue;
        }
        print_option(o, f);
        help_shown |= o->id == CLI_O_HELP;
    }
    if (!help_shown) print_option(&help, f);
    if (cmd->footer) {
        fputc('\n', f);
        fputs(cmd->footer, f);
    }
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
