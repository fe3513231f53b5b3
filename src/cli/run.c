/* cli/run.c: `locallm run`, as `ollama run` has it: a chat model answers through its template
 * (one answer to a prompt, or the chat prompt on a terminal); a model without a template, or
 * --raw, continues the prompt as plain text streamed to stdout.
 * Owns: the options of run, where the prompt comes from (-p, -f, the words after MODEL, piped
 * stdin), choosing chat or plain completion, and the plain completion itself with Ctrl-C as
 * cancellation and its stats line. The chat itself is chat.c's (cli_chat_local). */
#include "cli/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { O_PROMPT = CLI_O_OWN, O_FILE, O_RAW, O_NO_STATS };

static const cli_option RUN_OPTIONS[] = {
    {O_PROMPT, "-p|--prompt", "TEXT", "the prompt (or the words after MODEL, or text piped on stdin)"},
    {O_FILE, "-f|--file", "FILE", "read the prompt from FILE"},
    {O_RAW, "--raw", NULL, "continue the prompt as plain text, even with a chat model"},
    CLI_OPT_SYSTEM,
    CLI_OPT_CHAT_TEMPLATE,
    {CLI_O_N_PREDICT, "-n|--n-predict", "N",
     "tokens to generate at most (default: 128 for plain text; an answer\n"
     "runs until the model ends its turn; 0 or -1: until the context is full)"},
    CLI_OPT_SAMPLING,
    CLI_OPT_STRUCTURED,
    CLI_OPT_THREADS,
    CLI_OPT_CTX,
    CLI_OPT_KV_TYPE,
    {CLI_O_VERBOSE, "-v|--verbose", NULL, "print the timings of each answer to stderr"},
    {O_NO_STATS, "--no-stats", NULL, "do not print the timings plain completion prints to stderr"},
    CLI_OPT_FORCE,
    CLI_OPT_HELP,
    {0, NULL, NULL, NULL},
};

static const cli_command RUN_CMD = {
    "run",
    "Usage: locallm run [MODEL] [PROMPT...] [options]\n",
    "With a chat model (one with a chat template, such as models/tinychat or llama3.2), run\n"
    "answers through the model's template: `locallm run MODEL` on a terminal opens the chat\n"
    "prompt (as `locallm chat`, /help lists its commands); with a prompt (the words after MODEL,\n"
    "-p, -f, or text piped on stdin) it prints one answer and exits. A model without a template\n"
    "(the embedded stories260K) or --raw continues the prompt as plain text, printed first.\n"
    "MODEL defaults to the embedded model; it may be a .gguf file, a model folder, a Hugging Face\n"
    "id (downloaded on first use) or a short name such as llama3.2 or qwen2.5:7b\n"
    "('locallm ls --available' lists them).\n",
    RUN_OPTIONS,
    "Examples:\n"
    "  locallm run llama3.2                      chat on the terminal\n"
    "  locallm run llama3.2 \"Why is the sky blue?\"\n"
    "  echo \"Summarise: ...\" | locallm run llama3.2\n"
    "  locallm run -p \"Once upon a time\"         a story from the embedded model\n",
};

typedef struct run_opts {
    const char *model, *prompt_arg, *prompt_file, *system, *tpl;
    char *words;            /* the words after MODEL joined by spaces (malloc'd) */
    int32_t n_threads, n_ctx;
    bool raw, verbose, no_stats, n_set, kv_f32;
    lm_gen_params gp;
    cli_structured so;
} run_opts;

/* Appends word to the prompt words. */
static bool add_word(run_opts *o, const char *w) {
    size_t have = o->words ? strlen(o->words) : 0, len = strlen(w);
    char *s = realloc(o->words, have + len + 2);
    if (!s) return false;
    if (have) s[have++] = ' ';
    memcpy(s + have, w, len + 1);
    o->words = s;
    return true;
}

/* Fills *o from the arguments. Returns -1 to go on, else the exit code. */
static int parse(int argc, char **argv, run_opts *o) {
    cli_args a;
    cli_args_init(&a, &RUN_CMD, argc, argv);
    size_t n_stop = 0;
    int rc = -1;
    for (int id; (id = cli_args_step(&a, NULL, &rc)) != CLI_ARGS_END;) {
        int g = cli_gen_opt(&a, id, &o->gp, &n_stop);
        if (g < 0) return CLI_EXIT_USAGE;
        if (g > 0) {
            o->n_set |= id == CLI_O_N_PREDICT;
            continue;
        }
        int so = cli_structured_opt(&a, id, &o->so);
        if (so < 0) return CLI_EXIT_USAGE;
        if (so > 0) continue;
        switch (id) {
        case CLI_ARGS_POSITIONAL:
            if (!o->model) o->model = a.val;
            else if (!add_word(o, a.val)) return cli_error("out of memory");
            break;
        case O_PROMPT: o->prompt_arg = a.val; break;
        case O_FILE: o->prompt_file = a.val; break;
        case O_RAW: o->raw = true; break;
        case O_NO_STATS: o->no_stats = true; break;
        case CLI_O_VERBOSE: o->verbose = true; break;
        case CLI_O_SYSTEM: o->system = a.val; break;
        case CLI_O_CHAT_TEMPLATE: o->tpl = a.val; break;
        case CLI_O_FORCE: cli_set_force(true); break;
        case CLI_O_THREADS:
            if (!cli_args_i32(&a, 0, 1024, &o->n_threads)) return CLI_EXIT_USAGE;
            break;
        case CLI_O_CTX:
            if (!cli_args_i32(&a, 0, INT32_MAX, &o->n_ctx)) return CLI_EXIT_USAGE;
            break;
        case CLI_O_KV_TYPE:
            if (!cli_args_kv_type(&a, &o->kv_f32)) return CLI_EXIT_USAGE;
            break;
        }
    }
    if (rc >= 0) return rc;
    if ((o->prompt_arg != NULL) + (o->prompt_file != NULL) + (o->words != NULL) > 1)
        return cli_usage_error("run", "give the prompt one way: -p, -f, or the words after MODEL");
    if (o->raw && o->system)
        return cli_usage_error("run", "--raw continues plain text, which has no system prompt");
    if (o->raw && o->tpl)
        return cli_usage_error("run", "--raw continues plain text without the chat template");
    return -1;
}

/* The prompt text (malloc'd): -p, -f, the words, or stdin when it is not a terminal; NULL
 * without one (*failed tells an error, already printed, from no prompt). */
static char *prompt_text(const run_opts *o, size_t *len, bool *failed) {
    *failed = false;
    char *p = NULL;
    if (o->prompt_file) {
        p = cli_read_file(o->prompt_file, len);
        if (!p) cli_error("cannot read prompt file '%s': %s", o->prompt_file, strerror(errno));
    } else if (o->prompt_arg || o->words) {
        p = strdup(o->prompt_arg ? o->prompt_arg : o->words);
        if (!p) cli_error("out of memory");
        else *len = strlen(p);
    } else if (!isatty(STDIN_FILENO)) {
        /* `echo question | locallm run MODEL`: everything piped in is one prompt; its last line
           break is the shell's, not part of the question */
        p = cli_read_stream(stdin, len);
        if (!p) cli_error("cannot read the prompt from stdin: %s", strerror(errno));
        else if (*len && p[*len - 1] == '\n') p[--*len] = '\0';
        if (p && *len && p[*len - 1] == '\r') p[--*len] = '\0';
    } else {
        return NULL;
    }
    *failed = p == NULL;
    return p;
}

/* True when the model has a chat template (its own, the override, or a built-in that fits its
 * tokenizer): rendering a message fails with LM_ERR_UNSUPPORTED only without one. */
static bool has_chat_template(const lm_model *m) {
    lm_message msg = {"user", "x", NULL, NULL, NULL};
    lm_chat_params cp = lm_chat_default_params();
    size_t len = 0;
    lm_error err = {0};
    return lm_model_chat_render(m, &msg, 1, &cp, NULL, 0, &len, &err) != LM_ERR_UNSUPPORTED;
}

/* ---- plain completion ---------------------------------------------------------------------- */

/* The session Ctrl-C should cancel. lm_session_cancel() is safe from another thread; from a
 * signal handler it only sets the session's flag. */
static lm_session *volatile g_running;

static void on_sigint(int sig) {
    (void)sig;
    lm_session *s = g_running;
    if (s) lm_session_cancel(s);
}

static int put_piece(const char *utf8, size_t len, void *user) {
    (void)user;
    if (len) {
        fwrite(utf8, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

static int complete(lm_model *model, const run_opts *o, const char *prompt, size_t prompt_len,
                    double load_ms) {
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = o->n_ctx;
    sp.kv_f32 = o->kv_f32;
    lm_session *session = NULL;
    lm_engine *engine = NULL;
    lm_error err = {0};
    if (!cli_engine_new(model, &engine)) return CLI_EXIT_ERROR;
    lm_status nst = lm_session_new(engine, &sp, &session, &err);
    lm_engine_free(engine); /* the session keeps it */
    if (nst != LM_OK) return cli_error("cannot create a session: %s", err.msg[0] ? err.msg : "unknown error");

    /* Like llama.cpp, the prompt is echoed so the output reads as one text. */
    fwrite(prompt, 1, prompt_len, stdout);
    fflush(stdout);

    g_running = session;
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    lm_gen_stats gs;
    memset(&gs, 0, sizeof gs);
    lm_gen_params gp = o->gp;
    if (!o->n_set) gp.max_tokens = 128;
    lm_status st = lm_session_complete(session, prompt, prompt_len, &gp, put_piece, NULL, &gs);
    sigaction(SIGINT, &old_sa, NULL);
    g_running = NULL;
    fputc('\n', stdout);
    fflush(stdout);

    int rc = CLI_EXIT_OK;
    if (st != LM_OK && st != LM_ERR_CANCELLED) {
        rc = cli_error("generation failed: %s", lm_session_errmsg(session));
    } else if (!o->no_stats) {
        fprintf(stderr,
                "load: %.1f ms | prompt: %d tokens, %.1f tok/s | first token: %.1f ms | "
                "decode: %d tokens, %.1f tok/s | finish: %s\n",
                load_ms, (int)gs.n_prompt, gs.prefill_tok_s, gs.ttft_ms, (int)gs.n_generated,
                gs.decode_tok_s, lm_finish_str(gs.finish));
    }
    lm_session_free(session);
    return rc;
}

/* ---- the command --------------------------------------------------------------------------- */

int cli_run(int argc, char **argv) {
    run_opts o;
    memset(&o, 0, sizeof o);
    o.gp = lm_gen_default_params();
    o.gp.temperature = 0.0f;
    int rc = parse(argc, argv, &o);
    if (rc >= 0) {
        free(o.words);
        return rc;
    }
    rc = CLI_EXIT_ERROR;
    /* 0 means "until the context is full", as -1 does */
    if (o.n_set && o.gp.max_tokens == 0) o.gp.max_tokens = -1;

    size_t prompt_len = 0;
    bool failed = false;
    char *prompt = prompt_text(&o, &prompt_len, &failed);
    char *default_path = NULL, *structured = NULL;
    lm_model *model = NULL;
    double load_ms = 0;
    if (failed || cli_structured_load(&o.so, &o.gp, &structured) != CLI_EXIT_OK) goto done;
    if (!o.model && !(o.model = default_path = cli_default_model())) {
        cli_error("out of memory");
        goto done;
    }
    cli_load_opts lo = {.n_threads = o.n_threads, .n_ctx = o.n_ctx, .chat_template = o.tpl};
    if (!cli_load(o.model, &lo, &model, &load_ms)) goto done;

    if (o.raw || !has_chat_template(model)) {
        if (o.system) {
            cli_error("%s has no chat template, so --system has nothing to go into (give one "
                      "with --chat-template)", o.model);
            goto done;
        }
        rc = complete(model, &o, prompt ? prompt : "", prompt ? prompt_len : 0, load_ms);
        goto done;
    }
    if (prompt && prompt_len == 0) {
        cli_error("nothing to ask: the prompt is empty");
        goto done;
    }
    lm_gen_params gp = o.gp;
    if (!o.n_set) gp.max_tokens = -1; /* an answer ends when the model ends its turn */
    rc = cli_chat_local(model, o.n_ctx, o.kv_f32, o.system, &gp, prompt, o.verbose && !o.no_stats);

done:
    lm_model_free(model);
    free(default_path);
    free(prompt);
    free(o.words);
    free(structured);
    return rc;
}
