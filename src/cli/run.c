/* cli/run.c: `locallm run`, generate text from a prompt and stream it to stdout.
 * Owns: the options of run, the streaming callback, Ctrl-C as cancellation, and the stats line. */
#include "cli/cli.h"

#include <signal.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char RUN_HELP[] =
    "Usage: locallm run [MODEL] [options]\n"
    "\n"
    "Generates text after a prompt and streams it to stdout (the prompt is printed first).\n"
    "MODEL defaults to the embedded model; it may be a path, a Hugging Face id (downloaded on\n"
    "first use) or a short name such as llama3.2:3b ('locallm ls --available').\n"
    "\n"
    "Options:\n"
    "  -p, --prompt TEXT        prompt text (default: empty)\n"
    "  -f, --file FILE          read the prompt from FILE\n"
    "  -n, --n-predict N        tokens to generate (default 128; 0 or -1: until the context is full)\n"
    "      --temp T             temperature (default 0: greedy, reproducible)\n"
    "      --top-k K            keep the K most likely tokens (0: off)\n"
    "      --top-p P            nucleus sampling (1: off)\n"
    "      --min-p P            drop tokens below P times the best one (0: off)\n"
    "      --repeat-penalty R   penalise repeated tokens (1: off)\n"
    "      --seed S             sampling seed\n"
    "  -t, --threads N          threads (default: one per core)\n"
    "  -c, --ctx N              context window in tokens (default: the model's, at most 4096)\n"
    "      --stop S             stop when S is generated (may be repeated, up to 7)\n"
    CLI_STRUCTURED_HELP
    "      --no-stats           do not print timings to stderr\n"
    "      --force              load even when the model looks too big for the available memory\n"
    "  -h, --help               show this help\n";

/* The session Ctrl-C should cancel. lm_session_cancel() is safe from another thread; from a
 * signal handler it only sets the session's flag. */
static lm_session *volatile g_running;

static void on_sigint(int sig) {
    (void)sig;
    lm_session *s = g_running;
    if (s) lm_session_cancel(s);
}

static int put_piece(const char *utf8, size_t len, void *user) {
    bool *wrote_any = user;
    if (len) {
        fwrite(utf8, 1, len, stdout);
        fflush(stdout);
        *wrote_any = true;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len) {
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

int cli_run(int argc, char **argv) {
    const char *cmd = "run";
    const char *model_path = NULL, *prompt_arg = NULL, *prompt_file = NULL;
    int32_t n_threads = 0, n_ctx = 0;
    bool stats = true;
    lm_gen_params gp = lm_gen_default_params();
    gp.max_tokens = 128;
    gp.temperature = 0.0f;
    size_t n_stop = 0;
    cli_structured so = {0};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        bool bad = false;
        int sr = cli_structured_opt(argc, argv, &i, cmd, &so);
        if (sr < 0) return -sr;
        if (sr > 0) continue;
        if (cli_is_help(a)) {
            fputs(RUN_HELP, stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--no-stats") == 0) {
            stats = false;
        } else if (strcmp(a, "--force") == 0) {
            cli_set_force(true);
        } else if (cli_opt(argc, argv, &i, "-p", "--prompt", &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            prompt_arg = v;
        } else if (cli_opt(argc, argv, &i, "-f", "--file", &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            prompt_file = v;
        } else if (cli_opt(argc, argv, &i, "-n", "--n-predict", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "-n", v, -1, INT32_MAX, &gp.max_tokens))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--temp", "--temperature", &v, &bad, cmd)) {
            if (bad || !cli_parse_float(cmd, "--temp", v, 0.0f, 100.0f, &gp.temperature))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--top-k", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--top-k", v, 0, INT32_MAX, &gp.top_k))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--top-p", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_float(cmd, "--top-p", v, 0.0f, 1.0f, &gp.top_p))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--min-p", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_float(cmd, "--min-p", v, 0.0f, 1.0f, &gp.min_p))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--repeat-penalty", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_float(cmd, "--repeat-penalty", v, 0.0f, 100.0f,
                                        &gp.repeat_penalty))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--seed", "-s", &v, &bad, cmd)) {
            if (bad || !cli_parse_u64(cmd, "--seed", v, &gp.seed)) return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "-t", "--threads", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "-t", v, 0, 1024, &n_threads)) return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--ctx", "-c", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--ctx", v, 0, INT32_MAX, &n_ctx))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--stop", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            /* The list is NULL-terminated inside a fixed array, so one slot stays NULL. */
            if (n_stop + 1 >= LM_MAX_STOP)
                return cli_usage_error(cmd, "--stop: at most %d stop strings", LM_MAX_STOP - 1);
            if (!*v) return cli_usage_error(cmd, "--stop: the stop string is empty");
            gp.stop[n_stop++] = v;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!model_path) {
            model_path = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the model is '%s')", a,
                                   model_path);
        }
    }
    if (prompt_arg && prompt_file)
        return cli_usage_error(cmd, "give the prompt with -p or -f, not both");
    if (gp.max_tokens == 0) gp.max_tokens = -1;

    char *structured = NULL;
    int src = cli_structured_load(&so, &gp, &structured);
    if (src != CLI_EXIT_OK) return src;
    char *prompt = NULL;
    size_t prompt_len = 0;
    if (prompt_file) {
        prompt = read_file(prompt_file, &prompt_len);
        if (!prompt) {
            free(structured);
            return cli_error("cannot read prompt file '%s': %s", prompt_file, strerror(errno));
        }
    } else {
        const char *p = prompt_arg ? prompt_arg : "";
        prompt_len = strlen(p);
        prompt = malloc(prompt_len + 1);
        if (!prompt) {
            free(structured);
            return cli_error("out of memory");
        }
        memcpy(prompt, p, prompt_len + 1);
    }

    char *default_path = NULL;
    if (!model_path) {
        default_path = cli_default_model();
        if (!default_path) {
            free(prompt);
            free(structured);
            return cli_error("out of memory");
        }
        model_path = default_path;
    }

    int rc = CLI_EXIT_ERROR;
    lm_model *model = NULL;
    lm_engine *engine = NULL;
    lm_session *session = NULL;
    double load_ms = 0;
    if (!cli_load_model_ctx(model_path, n_threads, n_ctx, &model, &load_ms)) goto done;
    if (!cli_engine_new(model, &engine)) goto done;

    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = n_ctx;
    lm_error err = {0};
    if (lm_session_new(engine, &sp, &session, &err) != LM_OK) {
        cli_error("cannot create a session: %s", err.msg[0] ? err.msg : "unknown error");
        goto done;
    }

    /* Like llama.cpp, the prompt is echoed so the output reads as one text. */
    fwrite(prompt, 1, prompt_len, stdout);
    fflush(stdout);

    g_running = session;
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);

    bool wrote_any = false;
    lm_gen_stats gs;
    memset(&gs, 0, sizeof gs);
    lm_status st = lm_session_complete(session, prompt, prompt_len, &gp, put_piece, &wrote_any,
                                       &gs);
    sigaction(SIGINT, &old_sa, NULL);
    g_running = NULL;
    fputc('\n', stdout);
    fflush(stdout);

    if (st != LM_OK && st != LM_ERR_CANCELLED) {
        cli_error("generation failed: %s", lm_session_errmsg(session));
        goto done;
    }
    if (stats) {
        fprintf(stderr,
                "load: %.1f ms | prompt: %d tokens, %.1f tok/s | first token: %.1f ms | "
                "decode: %d tokens, %.1f tok/s | finish: %s\n",
                load_ms, (int)gs.n_prompt, gs.prefill_tok_s, gs.ttft_ms, (int)gs.n_generated,
                gs.decode_tok_s, lm_finish_str(gs.finish));
    }
    rc = CLI_EXIT_OK;

done:
    lm_session_free(session);
    lm_engine_free(engine);
    lm_model_free(model);
    free(default_path);
    free(prompt);
    free(structured);
    return rc;
}
