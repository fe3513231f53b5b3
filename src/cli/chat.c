/* cli/chat.c: `locallm chat`, a conversation in the terminal (libedit) or over a pipe, and the
 * same conversation for `locallm run` on a chat model (cli_chat_local).
 * Owns: the options of chat and its presets, the REPL and its /-commands, Ctrl-C as cancelling
 * the reply, saving/loading conversations as OpenAI message arrays, and reading messages from
 * JSON for chat and template. The library keeps the KV prefix between turns; this file only
 * keeps the list. */
#include "cli/cli.h"
#include "cli/providers.h"
#include "core/core.h"

#include <editline/readline.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { O_PRESET = CLI_O_OWN, O_MAX_MESSAGES };

static const cli_option CHAT_OPTIONS[] = {
    CLI_OPT_SYSTEM,
    {O_PRESET, "--preset", "NAME",
     "conversational (300 tokens, temp 0.7, top-p 0.9, stops User:,\n"
     "Human:, three newlines) or precise (500 tokens, temp 0.3,\n"
     "top-p 0.95); the flags below override its fields"},
    {CLI_O_N_PREDICT, "-n|--n-predict", "N", "tokens per reply at most (default 256)"},
    CLI_OPT_SAMPLING,
    CLI_OPT_STRUCTURED,
    {O_MAX_MESSAGES, "--max-messages", "N",
     "keep at most N non-system messages in the prompt (0: all;\ndefault 10)"},
    CLI_OPT_CHAT_TEMPLATE,
    CLI_OPT_THREADS,
    CLI_OPT_CTX,
    {CLI_O_VERBOSE, "-v|--verbose", NULL, "print each turn's stats to stderr"},
    CLI_OPT_FORCE,
    CLI_OPT_HELP,
    {CLI_HEADING, NULL, NULL, "Cloud providers (OpenAI-compatible endpoints):"},
    {CLI_O_PROVIDER, "--provider", "NAME", "answer with this cloud provider instead of a local model"},
    CLI_OPT_CLOUD,
    {0, NULL, NULL, NULL},
};

static const cli_command CHAT_CMD = {
    "chat",
    "Usage: locallm chat [MODEL] [options]\n",
    "Chats with MODEL (default: the embedded chat model, models/tinychat). On a terminal it is an\n"
    "interactive prompt (type /help); otherwise each input line is one user message and each\n"
    "reply is printed on its own line.\n",
    CHAT_OPTIONS,
    "The provider that answered is named by /stats, by -v, and on stderr whenever it is not\n"
    "the first choice. Example: locallm chat --provider mine --base-url http://127.0.0.1:8080/v1\n"
    "--model tinychat --api-key-env MY_KEY\n",
};

static const char REPL_HELP[] =
    "/system TEXT   set the system prompt\n"
    "/reset         forget the conversation (the system prompt stays)\n"
    "/stats         token counts and timings of the last reply\n"
    "/save FILE     save the conversation as a JSON array of messages\n"
    "/load FILE     load a conversation saved by /save\n"
    "/help          this list\n"
    "/quit          leave (Ctrl-D too)\n"
    "Ctrl-C stops a reply; at the prompt it leaves.\n";

/* ---- messages from JSON (chat's /load, template) ------------------------------------------- */

static char *dup_or_null(const cJSON *j) {
    return cJSON_IsString(j) && j->valuestring ? strdup(j->valuestring) : NULL;
}

void cli_messages_free(lm_message *msgs, size_t n) {
    if (!msgs) return;
    for (size_t i = 0; i < n; i++) {
        free((char *)msgs[i].role);
        free((char *)msgs[i].content);
        free((char *)msgs[i].tool_calls_json);
        free((char *)msgs[i].tool_call_id);
        free((char *)msgs[i].name);
    }
    free(msgs);
}

bool cli_messages_load(const char *path, lm_message **out, size_t *n_out) {
    cJSON *root = NULL;
    lm_error err = {0};
    if (lm_json_load(path, &root, &err) != LM_OK) {
        cli_error("%s", err.msg);
        return false;
    }
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        cli_error("%s: expected a JSON array of messages", path);
        return false;
    }
    size_t n = (size_t)cJSON_GetArraySize(root);
    lm_message *msgs = calloc(n ? n : 1, sizeof *msgs);
    if (!msgs) {
        cJSON_Delete(root);
        cli_error("out of memory");
        return false;
    }
    size_t i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, root) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            cli_messages_free(msgs, i);
            cJSON_Delete(root);
            cli_error("%s: message %zu: expected an object with a string 'role'", path, i);
            return false;
        }
        lm_message *d = &msgs[i++];
        d->role = strdup(role->valuestring);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(content)) {
            d->content = strdup(content->valuestring);
        } else if (content && !cJSON_IsNull(content)) {
            /* content parts ([{"type":"text","text":...}]): their texts joined */
            lm_buf b = {0};
            const cJSON *part;
            cJSON_ArrayForEach(part, content) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (cJSON_IsString(t)) lm_buf_puts(&b, t->valuestring);
            }
            d->content = strdup(b.data ? b.data : "");
            lm_buf_free(&b);
        }
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (tc && !cJSON_IsNull(tc)) {
            char *s = lm_json_print(tc);
            d->tool_calls_json = s ? strdup(s) : NULL;
            lm_free(s);
        }
        d->tool_call_id = dup_or_null(cJSON_GetObjectItemCaseSensitive(m, "tool_call_id"));
        d->name = dup_or_null(cJSON_GetObjectItemCaseSensitive(m, "name"));
    }
    cJSON_Delete(root);
    *out = msgs;
    *n_out = n;
    return true;
}

/* ---- the conversation ------------------------------------------------------------------------- */

/* Sets (or with text NULL removes) the system message, kept first. */
static bool convo_set_system(cli_convo *c, const char *text) {
    if (c->n && strcmp(c->msgs[0].role, "system") == 0) {
        if (text) {
            char *t = strdup(text);
            if (!t) return false;
            free((char *)c->msgs[0].content);
            c->msgs[0].content = t;
            return true;
        }
        free((char *)c->msgs[0].role);
        free((char *)c->msgs[0].content);
        memmove(c->msgs, c->msgs + 1, (c->n - 1) * sizeof *c->msgs);
        c->n--;
        return true;
    }
    if (!text) return true;
    if (!cli_convo_add(c, "system", text)) return false;
    lm_message sys = c->msgs[c->n - 1];
    memmove(c->msgs + 1, c->msgs, (c->n - 1) * sizeof *c->msgs);
    c->msgs[0] = sys;
    return true;
}

static bool convo_save(const cli_convo *c, const char *path) {
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < c->n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "role", c->msgs[i].role);
        if (c->msgs[i].content)
            cJSON_AddStringToObject(o, "content", c->msgs[i].content);
        else
            cJSON_AddNullToObject(o, "content");
    }
    char *text = arr ? cJSON_Print(arr) : NULL;
    cJSON_Delete(arr);
    if (!text) {
        cli_error("out of memory saving the conversation");
        return false;
    }
    FILE *f = fopen(path, "wb");
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = false;
    cJSON_free(text);
    if (!ok) cli_error("cannot write '%s': %s", path, strerror(errno));
    return ok;
}

/* ---- one turn --------------------------------------------------------------------------------- */

/* What answers: the local model, one cloud provider, or a fallback manager over them. */
typedef struct backend {
    lm_provider *p;
    lm_call *call;          /* of the turn running (one handle, reset each turn) */
    const char *preferred;  /* the provider asked first: "local" unless --provider */
    const char *local_err;  /* why the local model is unavailable; NULL when it is loaded */
    char last[64];          /* who answered the last turn */
} backend;

static lm_call *volatile g_call;

static void on_sigint(int sig) {
    (void)sig;
    lm_call *c = g_call;
    if (c) lm_call_cancel(c); /* only sets a flag: safe in a signal handler */
}

typedef struct reply {
    lm_buf text;
} reply;

static int on_piece(const char *utf8, size_t len, void *user) {
    reply *r = user;
    if (!len) return 0;
    fwrite(utf8, 1, len, stdout);
    fflush(stdout);
    lm_buf_append(&r->text, utf8, len);
    return 0;
}

/* Sends the conversation, streams the reply and appends it (also a cancelled, partial one).
 * Returns false on a generation error (printed). */
static bool chat_turn(backend *b, cli_convo *c, const lm_chat_params *cp, const lm_gen_params *gp,
                      lm_gen_stats *gs) {
    reply r = {{0}};
    lm_call_reset(b->call);
    g_call = b->call;
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    lm_status st = lm_provider_chat(b->p, c->msgs, c->n, cp, gp, on_piece, &r, b->call, gs);
    sigaction(SIGINT, &old_sa, NULL);
    g_call = NULL;
    fputc('\n', stdout);
    fflush(stdout);
    const char *by = lm_call_answered_by(b->call);
    snprintf(b->last, sizeof b->last, "%s", by ? by : lm_provider_name(b->p));
    if (st == LM_OK && strcmp(b->last, b->preferred) != 0) {
        const char *skipped = lm_call_skipped(b->call);
        fprintf(stderr, "locallm chat: answered by %s (%s%s%s%s)\n", b->last,
                b->local_err ? "local: " : "", b->local_err ? b->local_err : "",
                b->local_err && skipped[0] ? "; " : "", skipped);
    }
    bool ok = true;
    if (st == LM_OK || st == LM_ERR_CANCELLED) {
        if (!cli_convo_add(c, "assistant", r.text.data ? r.text.data : "")) {
            cli_error("out of memory");
            ok = false;
        }
    } else {
        if (b->local_err)
            cli_error("generation failed: local: %s; %s", b->local_err,
                      lm_call_errmsg(b->call)[0] ? lm_call_errmsg(b->call) : lm_status_str(st));
        else
            cli_error("generation failed: %s", lm_call_errmsg(b->call)[0] ? lm_call_errmsg(b->call) : lm_status_str(st));
        /* the user message that failed is taken back so the next turn is clean */
        if (c->n && strcmp(c->msgs[c->n - 1].role, "user") == 0) {
            c->n--;
            free((char *)c->msgs[c->n].role);
            free((char *)c->msgs[c->n].content);
        }
        ok = false;
    }
    lm_buf_free(&r.text);
    return ok;
}

static void print_stats(FILE *f, const lm_gen_stats *gs, const char *provider) {
    fprintf(f,
            "prompt: %d tokens (%d cached, %d prefilled) | generated: %d tokens | first token: "
            "%.1f ms | prefill: %.1f tok/s | decode: %.1f tok/s | dropped messages: %d | "
            "finish: %s | provider: %s\n",
            (int)gs->n_prompt, (int)gs->n_cached, (int)gs->n_prefilled, (int)gs->n_generated,
            gs->ttft_ms, gs->prefill_tok_s, gs->decode_tok_s, (int)gs->n_dropped_messages,
            lm_finish_str(gs->finish), provider);
}

/* ---- modes ------------------------------------------------------------------------------------ */

static int run_pipe(backend *b, cli_convo *c, const lm_chat_params *cp, const lm_gen_params *gp,
                    bool verbose) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = CLI_EXIT_OK;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (got == 0) continue;
        if (!cli_convo_add(c, "user", line)) {
            rc = cli_error("out of memory");
            break;
        }
        lm_gen_stats gs;
        memset(&gs, 0, sizeof gs);
        if (!chat_turn(b, c, cp, gp, &gs)) {
            rc = CLI_EXIT_ERROR;
            break;
        }
        if (verbose) print_stats(stderr, &gs, b->last);
    }
    free(line);
    return rc;
}

/* The /-commands, for suggestions. */
static const char *const REPL_COMMANDS[] = {"/system", "/reset", "/stats", "/save", "/load",
                                            "/help", "/quit", "/exit"};

static int run_repl(backend *b, cli_convo *c, const lm_chat_params *cp, const lm_gen_params *gp,
                    bool verbose) {
    fprintf(stderr, "locallm: type a message, /help for commands, Ctrl-D to leave.\n");
    lm_gen_stats last;
    memset(&last, 0, sizeof last);
    bool have_last = false;
    for (;;) {
        char *line = readline("> ");
        if (!line) {
            fputc('\n', stdout);
            break;
        }
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        size_t len = strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\n')) p[--len] = '\0';
        if (!*p) {
            free(line);
            continue;
        }
        add_history(p);
        if (p[0] == '/') {
            char *arg = p + 1;
            while (*arg && *arg != ' ') arg++;
            size_t cmdlen = (size_t)(arg - (p + 1));
            while (*arg == ' ') arg++;
#define IS(name) (cmdlen == strlen(name) && strncmp(p + 1, name, cmdlen) == 0)
            if (IS("quit") || IS("exit")) {
                free(line);
                break;
            } else if (IS("help")) {
                fputs(REPL_HELP, stdout);
            } else if (IS("system")) {
                if (!convo_set_system(c, *arg ? arg : NULL)) cli_error("out of memory");
                else printf(*arg ? "system prompt set\n" : "system prompt removed\n");
            } else if (IS("reset")) {
                cli_convo_clear(c, true);
                printf("conversation cleared\n");
            } else if (IS("stats")) {
                if (have_last)
                    print_stats(stdout, &last, b->last);
                else
                    printf("no reply yet\n");
            } else if (IS("save")) {
                if (!*arg)
                    printf("usage: /save FILE\n");
                else if (convo_save(c, arg))
                    printf("saved %zu messages to %s\n", c->n, arg);
            } else if (IS("load")) {
                lm_message *msgs = NULL;
                size_t n = 0;
                if (!*arg) {
                    printf("usage: /load FILE\n");
                } else if (cli_messages_load(arg, &msgs, &n)) {
                    cli_messages_free(c->msgs, c->n);
                    c->msgs = msgs;
                    c->n = c->cap = n;
                    printf("loaded %zu messages from %s\n", n, arg);
                }
            } else {
                char word[64];
                snprintf(word, sizeof word, "%.*s", (int)(cmdlen + 1 < sizeof word ? cmdlen + 1 : sizeof word - 1), p);
                const char *near = cli_nearest(word, REPL_COMMANDS,
                                               sizeof REPL_COMMANDS / sizeof REPL_COMMANDS[0]);
                if (near)
                    printf("unknown command '%s' (did you mean %s? /help lists them)\n", word, near);
                else
                    printf("unknown command '%s' (try /help)\n", word);
            }
#undef IS
            free(line);
            continue;
        }
        bool ok = cli_convo_add(c, "user", p);
        free(line);
        if (!ok) return cli_error("out of memory");
        memset(&last, 0, sizeof last);
        if (chat_turn(b, c, cp, gp, &last)) {
            have_last = true;
            if (last.finish == LM_FINISH_CANCELLED) fputs("[stopped]\n", stderr);
            if (verbose) print_stats(stderr, &last, b->last);
        }
    }
    return CLI_EXIT_OK;
}

/* ---- run's conversation -------------------------------------------------------------------- */

int cli_chat_local(lm_model *model, int32_t n_ctx, bool kv_f32, const char *system, const lm_gen_params *gp,
                   const char *prompt, bool verbose) {
    lm_local_params lp = lm_local_default_params();
    lp.session.n_ctx = n_ctx;
    lp.session.kv_f32 = kv_f32;
    lm_provider *local = NULL;
    lm_engine *engine = NULL;
    lm_call *call = NULL;
    lm_error err = {0};
    if (!cli_engine_new(model, &engine)) return CLI_EXIT_ERROR;
    lm_status pst = lm_provider_local_new(engine, &lp, &local, &err);
    lm_engine_free(engine); /* the provider keeps it */
    if (pst != LM_OK) return cli_error("cannot create a session: %s", err.msg[0] ? err.msg : "unknown error");
    if (lm_call_new(&call, &err) != LM_OK) {
        lm_provider_free(local);
        return cli_error("%s", err.msg);
    }
    backend b;
    memset(&b, 0, sizeof b);
    b.p = local;
    b.call = call;
    b.preferred = "local";
    cli_convo c = {0};
    lm_chat_params cp = lm_chat_default_params();
    int rc = CLI_EXIT_ERROR;
    if (system && !convo_set_system(&c, system)) {
        cli_error("out of memory");
    } else if (!prompt) {
        rc = run_repl(&b, &c, &cp, gp, verbose);
    } else if (!cli_convo_add(&c, "user", prompt)) {
        cli_error("out of memory");
    } else {
        lm_gen_stats gs;
        memset(&gs, 0, sizeof gs);
        if (chat_turn(&b, &c, &cp, gp, &gs)) {
            rc = CLI_EXIT_OK;
            if (verbose) print_stats(stderr, &gs, b.last);
        }
    }
    cli_messages_free(c.msgs, c.n);
    lm_provider_free(local);
    lm_call_free(call);
    return rc;
}

/* ---- chat's options --------------------------------------------------------------------------- */

enum {
    SET_MAX = 1 << 0,
    SET_TEMP = 1 << 1,
    SET_TOPK = 1 << 2,
    SET_TOPP = 1 << 3,
    SET_MINP = 1 << 4,
    SET_REP = 1 << 5,
    SET_SEED = 1 << 6,
    SET_STOP = 1 << 7,
};

typedef struct chat_opts {
    const char *model_path, *system, *preset, *tpl;
    int32_t n_threads, n_ctx, max_messages;
    bool verbose;
    lm_gen_params fl; /* the flags given */
    unsigned set;     /* which of them (SET_*) */
    cli_cloud_flags cf;
    cli_structured so;
} chat_opts;

/* Fills *o from the arguments. Returns -1 to go on, else the exit code. */
static int parse(int argc, char **argv, chat_opts *o) {
    cli_args a;
    cli_args_init(&a, &CHAT_CMD, argc, argv);
    size_t n_stop = 0;
    int rc = -1;
    for (int id; (id = cli_args_step(&a, &o->model_path, &rc)) != CLI_ARGS_END;) {
        int g = cli_gen_opt(&a, id, &o->fl, &n_stop);
        if (g < 0) return CLI_EXIT_USAGE;
        if (g > 0) {
            static const int bits[][2] = {{CLI_O_N_PREDICT, SET_MAX}, {CLI_O_TEMP, SET_TEMP},
                                          {CLI_O_TOP_K, SET_TOPK},    {CLI_O_TOP_P, SET_TOPP},
                                          {CLI_O_MIN_P, SET_MINP},    {CLI_O_REPEAT_PENALTY, SET_REP},
                                          {CLI_O_SEED, SET_SEED},     {CLI_O_STOP, SET_STOP}};
            for (size_t k = 0; k < sizeof bits / sizeof bits[0]; k++)
                if (bits[k][0] == id) o->set |= (unsigned)bits[k][1];
            continue;
        }
        int cloud = cli_cloud_opt(&a, id, &o->cf);
        if (cloud < 0) return CLI_EXIT_USAGE;
        if (cloud > 0) continue;
        int so = cli_structured_opt(&a, id, &o->so);
        if (so < 0) return CLI_EXIT_USAGE;
        if (so > 0) continue;
        switch (id) {
        case CLI_O_VERBOSE: o->verbose = true; break;
        case CLI_O_SYSTEM: o->system = a.val; break;
        case CLI_O_CHAT_TEMPLATE: o->tpl = a.val; break;
        case CLI_O_FORCE: cli_set_force(true); break;
        case O_PRESET:
            if (strcmp(a.val, "conversational") != 0 && strcmp(a.val, "precise") != 0)
                return cli_usage_error("chat", "%s: '%s' is not a preset (expected "
                                               "conversational or precise)", a.opt, a.val);
            o->preset = a.val;
            break;
        case O_MAX_MESSAGES:
            if (!cli_args_i32(&a, 0, INT32_MAX, &o->max_messages)) return CLI_EXIT_USAGE;
            break;
        case CLI_O_THREADS:
            if (!cli_args_i32(&a, 0, 1024, &o->n_threads)) return CLI_EXIT_USAGE;
            break;
        case CLI_O_CTX:
            if (!cli_args_i32(&a, 0, INT32_MAX, &o->n_ctx)) return CLI_EXIT_USAGE;
            break;
        }
    }
    return rc;
}

/* The sampling settings: the preset first, then the flags given. */
static lm_gen_params gen_params(const chat_opts *o) {
    lm_gen_params gp = lm_gen_default_params();
    gp.max_tokens = 256;
    gp.temperature = 0.0f;
    if (o->preset && strcmp(o->preset, "conversational") == 0) {
        gp.max_tokens = 300;
        gp.temperature = 0.7f;
        gp.top_p = 0.9f;
        gp.stop[0] = "User:";
        gp.stop[1] = "Human:";
        gp.stop[2] = "\n\n\n";
        gp.stop[3] = NULL;
    } else if (o->preset) {
        gp.max_tokens = 500;
        gp.temperature = 0.3f;
        gp.top_p = 0.95f;
    }
    const lm_gen_params *fl = &o->fl;
    if (o->set & SET_MAX) gp.max_tokens = fl->max_tokens == 0 ? -1 : fl->max_tokens;
    if (o->set & SET_TEMP) gp.temperature = fl->temperature;
    if (o->set & SET_TOPK) gp.top_k = fl->top_k;
    if (o->set & SET_TOPP) gp.top_p = fl->top_p;
    if (o->set & SET_MINP) gp.min_p = fl->min_p;
    if (o->set & SET_REP) gp.repeat_penalty = fl->repeat_penalty;
    if (o->set & SET_SEED) gp.seed = fl->seed;
    if (o->set & SET_STOP) memcpy(gp.stop, fl->stop, sizeof gp.stop);
    return gp;
}

/* What answers a chat, and what it owns: the local model (unless --provider), the cloud
 * providers, and a fallback manager over them when there is more than one. */
typedef struct answerers {
    char *default_path;
    lm_model *model;
    lm_call *call;
    lm_provider *list[17];
    size_t n_list;
    lm_provider *manager;
    char local_err[800]; /* why the local model is unavailable, with clouds behind it */
} answerers;

static void answerers_free(answerers *a) {
    lm_provider_free(a->manager);
    for (size_t k = 0; k < a->n_list; k++) lm_provider_free(a->list[k]);
    lm_call_free(a->call);
    lm_model_free(a->model);
    free(a->default_path);
}

/* Loads the local model and opens the providers into *a, and points b at what answers.
 * false after printing the error. */
static bool open_answerers(const chat_opts *o, const cli_cloud *clouds, size_t n_clouds,
                           answerers *a, backend *b) {
    lm_error err = {0};
    const char *model_path = o->model_path;
    if (n_clouds > 16) {
        cli_usage_error("chat", "at most 16 providers");
        return false;
    }
    if (!o->cf.provider) {
        if (!model_path && !(model_path = a->default_path = cli_default_chat_model())) {
            cli_error("out of memory");
            return false;
        }
        cli_load_opts lo = {.n_threads = o->n_threads, .n_ctx = o->n_ctx, .chat_template = o->tpl};
        if (n_clouds == 0) {
            if (!cli_load(model_path, &lo, &a->model, NULL)) return false;
        } else if (!cli_load_quiet(model_path, &lo, &a->model, a->local_err, sizeof a->local_err)) {
            fprintf(stderr, "locallm chat: the local model is unavailable (%s); answering with "
                    "%s%s\n", a->local_err, clouds[0].name, n_clouds > 1 ? " and the others" : "");
        }
        if (a->model) {
            lm_local_params lp = lm_local_default_params();
            lp.session.n_ctx = o->n_ctx;
            lm_engine *engine = NULL;
            if (!cli_engine_new(a->model, &engine)) return false;
            lm_status pst = lm_provider_local_new(engine, &lp, &a->list[a->n_list], &err);
            lm_engine_free(engine); /* the provider keeps it */
            if (pst != LM_OK) {
                cli_error("cannot create a session: %s", err.msg[0] ? err.msg : "unknown error");
                return false;
            }
            a->n_list++;
        }
    }
    for (size_t k = 0; k < n_clouds; k++) {
        lm_openai_params op = cli_cloud_params(&clouds[k], &o->cf);
        if (lm_provider_openai_new(&op, &a->list[a->n_list], &err) != LM_OK) {
            cli_error("%s: %s", clouds[k].name, err.msg);
            return false;
        }
        a->n_list++;
    }
    if (lm_call_new(&a->call, &err) != LM_OK) {
        cli_error("%s", err.msg);
        return false;
    }
    memset(b, 0, sizeof *b);
    b->call = a->call;
    b->preferred = o->cf.provider ? o->cf.provider : "local";
    b->local_err = a->local_err[0] ? a->local_err : NULL;
    if (a->n_list == 1 && !b->local_err) {
        b->p = a->list[0];
    } else {
        if (lm_provider_fallback_new(a->list, a->n_list, &a->manager, &err) != LM_OK) {
            cli_error("%s", err.msg);
            return false;
        }
        b->p = a->manager;
    }
    return true;
}

int cli_chat(int argc, char **argv) {
    const char *cmd = "chat";
    chat_opts o;
    memset(&o, 0, sizeof o);
    o.max_messages = -1;
    o.fl = lm_gen_default_params();
    int prc = parse(argc, argv, &o);
    if (prc >= 0) return prc;
    const cli_cloud_flags *cf = &o.cf;
    lm_gen_params gp = gen_params(&o);
    lm_chat_params cp = lm_chat_default_params();
    if (o.max_messages >= 0) cp.max_messages = o.max_messages;
    if (o.verbose)
        fprintf(stderr,
                "sampling: max %d tokens, temperature %g, top-k %d, top-p %g, min-p %g, "
                "repeat penalty %g%s\n",
                (int)gp.max_tokens, (double)gp.temperature, (int)gp.top_k, (double)gp.top_p,
                (double)gp.min_p, (double)gp.repeat_penalty,
                gp.stop[0] ? ", with stop strings" : "");

    bool want_cloud = cli_cloud_wanted(cf);
    if (!want_cloud && (cf->base_url || cf->model || cf->api_key_env || cf->providers_file))
        return cli_usage_error(cmd, "--base-url, --model, --api-key-env and --providers need "
                                    "--provider or --fallback");
    if (cf->provider && o.model_path)
        return cli_usage_error(cmd, "--provider answers instead of a local model; drop '%s' or "
                                    "use --fallback %s", o.model_path, cf->provider);
    cli_cloud *clouds = NULL;
    size_t n_clouds = 0;
    if (want_cloud) {
        int crc = cli_cloud_resolve(cmd, cf, &clouds, &n_clouds);
        if (crc != CLI_EXIT_OK) return crc;
    }
    for (size_t k = 0; k < n_clouds; k++) {
        if (clouds[k].api_key_env[0] && !getenv(clouds[k].api_key_env))
            fprintf(stderr, "locallm chat: %s: $%s is not set; no API key is sent\n",
                    clouds[k].name, clouds[k].api_key_env);
    }

    int rc = CLI_EXIT_ERROR;
    answerers a;
    memset(&a, 0, sizeof a);
    backend b;
    cli_convo c = {0};
    char *structured = NULL; /* the --grammar / --json-schema file */
    if (cli_structured_load(&o.so, &gp, &structured) == CLI_EXIT_OK && open_answerers(&o, clouds, n_clouds, &a, &b)) {
        if (o.verbose)
            for (size_t k = 0; k < n_clouds; k++)
                fprintf(stderr, "provider %s: %s, model %s\n", clouds[k].name, clouds[k].base_url,
                        clouds[k].model);
        if (o.system && !convo_set_system(&c, o.system))
            cli_error("out of memory");
        else if (isatty(STDIN_FILENO))
            rc = run_repl(&b, &c, &cp, &gp, o.verbose);
        else
            rc = run_pipe(&b, &c, &cp, &gp, o.verbose);
    }
    cli_messages_free(c.msgs, c.n);
    answerers_free(&a);
    free(clouds);
    free(structured);
    return rc;
}
