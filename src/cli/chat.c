/* cli/chat.c: `locallm chat`, a conversation in the terminal (libedit) or over a pipe.
 * Owns: the options of chat and its presets, the REPL and its /-commands, Ctrl-C as cancelling
 * the reply, saving/loading conversations as OpenAI message arrays, and the helpers chat,
 * template and voice share (default chat model, loading with a template override, messages
 * from JSON). The library keeps the KV prefix between turns; this file only keeps the list. */
#include "cli/cli.h"
#include "cli/providers.h"
#include "core/core.h"

#include <editline/readline.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char CHAT_HELP[] =
    "Usage: locallm chat [MODEL] [options]\n"
    "\n"
    "Chats with MODEL (default: the embedded chat model, models/tinychat). On a terminal it is an\n"
    "interactive prompt (type /help); otherwise each input line is one user message and each\n"
    "reply is printed on its own line.\n"
    "\n"
    "Options:\n"
    "      --system TEXT        system prompt\n"
    "      --preset NAME        conversational (300 tokens, temp 0.7, top-p 0.9, stops User:,\n"
    "                           Human:, three newlines) or precise (500 tokens, temp 0.3,\n"
    "                           top-p 0.95); the flags below override its fields\n"
    "  -n, --n-predict N        tokens per reply at most (default 256)\n"
    "      --temp T             temperature (default 0: greedy)\n"
    "      --top-k K            keep the K most likely tokens (0: off)\n"
    "      --top-p P            nucleus sampling (1: off)\n"
    "      --min-p P            drop tokens below P times the best one (0: off)\n"
    "      --repeat-penalty R   penalise repeated tokens (1: off)\n"
    "      --seed S             sampling seed\n"
    "      --stop S             stop string (may be repeated, up to 7)\n"
    CLI_STRUCTURED_HELP
    "      --max-messages N     keep at most N non-system messages in the prompt (0: all;\n"
    "                           default 10)\n"
    "      --chat-template T    llama3, mistral, chatml, zephyr, or a file of Jinja source\n"
    "  -t, --threads N          threads (default: one per core)\n"
    "  -c, --ctx N              context window in tokens (default: the model's, at most 4096)\n"
    "  -v, --verbose            print each turn's stats to stderr\n"
    "  -h, --help               show this help\n"
    "\n"
    "Cloud providers (OpenAI-compatible endpoints):\n"
    "      --provider NAME      answer with this cloud provider instead of a local model\n"
    CLI_CLOUD_HELP
    "\n"
    "The provider that answered is named by /stats, by -v, and on stderr whenever it is not\n"
    "the first choice. Example: locallm chat --provider mine --base-url http://127.0.0.1:8080/v1\n"
    "--model tinychat --api-key-env MY_KEY\n";

static const char REPL_HELP[] =
    "/system TEXT   set the system prompt\n"
    "/reset         forget the conversation (the system prompt stays)\n"
    "/stats         token counts and timings of the last reply\n"
    "/save FILE     save the conversation as a JSON array of messages\n"
    "/load FILE     load a conversation saved by /save\n"
    "/help          this list\n"
    "/quit          leave (Ctrl-D too)\n"
    "Ctrl-C stops a reply; at the prompt it leaves.\n";

/* ---- shared helpers --------------------------------------------------------------------------- */

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *cli_default_chat_model(void) {
    const char *env = getenv("LOCALLM_CHAT_MODEL");
    if (env && *env) return strdup(env);
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = '\0';
        char *slash = strrchr(buf, '/');
        if (slash) {
            *slash = '\0';
            char path[4200];
            snprintf(path, sizeof path, "%s/../models/tinychat", buf);
            if (is_dir(path)) return strdup(path);
        }
    }
#ifdef LM_MODELS_DIR
    return strdup(LM_MODELS_DIR "/tinychat");
#else
    return strdup("models/tinychat");
#endif
}

char *cli_read_file(const char *path, size_t *len) {
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
    if (len) *len = n;
    return buf;
}

static bool is_builtin_template(const char *name) {
    static const char *const names[] = {"llama3", "mistral", "chatml", "zephyr"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(name, names[k]) == 0) return true;
    return false;
}

/* Loads without printing (no progress bar): the reason for a failure goes into why. */
static bool load_chat_model(const char *ref, int32_t n_threads, const char *chat_template,
                            lm_model **out, char *why, size_t cap) {
    *out = NULL;
    char *source = NULL;
    if (chat_template && !is_builtin_template(chat_template)) {
        source = cli_read_file(chat_template, NULL);
        if (!source) {
            snprintf(why, cap, "--chat-template: '%s' is neither a built-in format (llama3, "
                     "mistral, chatml, zephyr) nor a readable file: %s",
                     chat_template, strerror(errno));
            return false;
        }
    }
    char resolved[4096];
    char *cache = cli_hf_cache_dir();
    lm_error err = {0};
    lm_status st = lm_resolve_model(ref, cache, resolved, sizeof resolved, &err);
    free(cache);
    if (st != LM_OK) {
        free(source);
        snprintf(why, cap, "cannot load model: %s", err.msg);
        return false;
    }
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = n_threads;
    mp.chat_template = source ? source : chat_template;
    st = lm_model_load(resolved, &mp, out, &err);
    free(source);
    if (st != LM_OK) {
        *out = NULL;
        snprintf(why, cap, "cannot load model '%.400s': %s", resolved,
                 err.msg[0] ? err.msg : lm_status_str(st));
        return false;
    }
    return true;
}

bool cli_load_chat_model(const char *ref, int32_t n_threads, const char *chat_template,
                         lm_model **out) {
    *out = NULL;
    if (!chat_template) return cli_load_model(ref, n_threads, out, NULL);
    char why[800];
    if (load_chat_model(ref, n_threads, chat_template, out, why, sizeof why)) return true;
    cli_error("%s", why);
    return false;
}

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

typedef struct convo {
    lm_message *msgs;
    size_t n, cap;
} convo;

static bool convo_add(convo *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        lm_message *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return false;
        c->msgs = m;
        c->cap = cap;
    }
    lm_message *m = &c->msgs[c->n];
    memset(m, 0, sizeof *m);
    m->role = strdup(role);
    m->content = strdup(content);
    if (!m->role || !m->content) {
        free((char *)m->role);
        free((char *)m->content);
        return false;
    }
    c->n++;
    return true;
}

static void convo_clear(convo *c, bool keep_system) {
    size_t w = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (keep_system && strcmp(c->msgs[i].role, "system") == 0) {
            c->msgs[w++] = c->msgs[i];
            continue;
        }
        free((char *)c->msgs[i].role);
        free((char *)c->msgs[i].content);
        free((char *)c->msgs[i].tool_calls_json);
        free((char *)c->msgs[i].tool_call_id);
        free((char *)c->msgs[i].name);
    }
    c->n = w;
}

/* Sets (or with text NULL removes) the system message, kept first. */
static bool convo_set_system(convo *c, const char *text) {
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
    if (!convo_add(c, "system", text)) return false;
    lm_message sys = c->msgs[c->n - 1];
    memmove(c->msgs + 1, c->msgs, (c->n - 1) * sizeof *c->msgs);
    c->msgs[0] = sys;
    return true;
}

static bool convo_save(const convo *c, const char *path) {
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
static bool chat_turn(backend *b, convo *c, const lm_chat_params *cp, const lm_gen_params *gp,
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
        if (!convo_add(c, "assistant", r.text.data ? r.text.data : "")) {
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

static int run_pipe(backend *b, convo *c, const lm_chat_params *cp, const lm_gen_params *gp,
                    bool verbose) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = CLI_EXIT_OK;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (got == 0) continue;
        if (!convo_add(c, "user", line)) {
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

static int run_repl(backend *b, convo *c, const lm_chat_params *cp, const lm_gen_params *gp,
                    bool verbose) {
    fprintf(stderr, "locallm chat: type a message, /help for commands, Ctrl-D to leave.\n");
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
                convo_clear(c, true);
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
                printf("unknown command '%s' (try /help)\n", p);
            }
#undef IS
            free(line);
            continue;
        }
        bool ok = convo_add(c, "user", p);
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

/* ---- options ---------------------------------------------------------------------------------- */

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

int cli_chat(int argc, char **argv) {
    const char *cmd = "chat";
    const char *model_path = NULL, *system = NULL, *preset = NULL, *tpl = NULL;
    int32_t n_threads = 0, n_ctx = 0, max_messages = -1;
    bool verbose = false;
    lm_gen_params fl = lm_gen_default_params(); /* the flags given */
    unsigned set = 0;
    size_t n_stop = 0;
    cli_cloud_flags cf;
    memset(&cf, 0, sizeof cf);
    cli_structured so = {0};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        bool bad = false;
        int sr = cli_structured_opt(argc, argv, &i, cmd, &so);
        if (sr < 0) return -sr;
        if (sr > 0) continue;
        int cloud = cli_cloud_opt(argc, argv, &i, cmd, true, &cf);
        if (cloud < 0) return CLI_EXIT_USAGE;
        if (cloud > 0) continue;
        if (cli_is_help(a)) {
            fputs(CHAT_HELP, stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = true;
        } else if (cli_opt(argc, argv, &i, "--system", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            system = v;
        } else if (cli_opt(argc, argv, &i, "--preset", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            if (strcmp(v, "conversational") != 0 && strcmp(v, "precise") != 0)
                return cli_usage_error(cmd, "--preset: '%s' is not a preset (expected "
                                            "conversational or precise)", v);
            preset = v;
        } else if (cli_opt(argc, argv, &i, "--chat-template", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            tpl = v;
        } else if (cli_opt(argc, argv, &i, "--max-messages", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--max-messages", v, 0, INT32_MAX, &max_messages))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "-n", "--n-predict", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "-n", v, -1, INT32_MAX, &fl.max_tokens))
                return CLI_EXIT_USAGE;
            set |= SET_MAX;
        } else if (cli_opt(argc, argv, &i, "--temp", "--temperature", &v, &bad, cmd)) {
            if (bad || !cli_parse_float(cmd, "--temp", v, 0.0f, 100.0f, &fl.temperature))
                return CLI_EXIT_USAGE;
            set |= SET_TEMP;
        } else if (cli_opt(argc, argv, &i, "--top-k", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--top-k", v, 0, INT32_MAX, &fl.top_k))
                return CLI_EXIT_USAGE;
            set |= SET_TOPK;
        } else if (cli_opt(argc, argv, &i, "--top-p", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_float(cmd, "--top-p", v, 0.0f, 1.0f, &fl.top_p))
                return CLI_EXIT_USAGE;
            set |= SET_TOPP;
        } else if (cli_opt(argc, argv, &i, "--min-p", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_float(cmd, "--min-p", v, 0.0f, 1.0f, &fl.min_p))
                return CLI_EXIT_USAGE;
            set |= SET_MINP;
        } else if (cli_opt(argc, argv, &i, "--repeat-penalty", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_float(cmd, "--repeat-penalty", v, 0.0f, 100.0f,
                                        &fl.repeat_penalty))
                return CLI_EXIT_USAGE;
            set |= SET_REP;
        } else if (cli_opt(argc, argv, &i, "--seed", "-s", &v, &bad, cmd)) {
            if (bad || !cli_parse_u64(cmd, "--seed", v, &fl.seed)) return CLI_EXIT_USAGE;
            set |= SET_SEED;
        } else if (cli_opt(argc, argv, &i, "-t", "--threads", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "-t", v, 0, 1024, &n_threads)) return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--ctx", "-c", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--ctx", v, 0, INT32_MAX, &n_ctx))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--stop", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            if (n_stop + 1 >= LM_MAX_STOP)
                return cli_usage_error(cmd, "--stop: at most %d stop strings", LM_MAX_STOP - 1);
            if (!*v) return cli_usage_error(cmd, "--stop: the stop string is empty");
            fl.stop[n_stop++] = v;
            set |= SET_STOP;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!model_path) {
            model_path = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the model is '%s')", a,
                                   model_path);
        }
    }

    /* preset first, then the flags given */
    lm_gen_params gp = lm_gen_default_params();
    gp.max_tokens = 256;
    gp.temperature = 0.0f;
    if (preset && strcmp(preset, "conversational") == 0) {
        gp.max_tokens = 300;
        gp.temperature = 0.7f;
        gp.top_p = 0.9f;
        gp.stop[0] = "User:";
        gp.stop[1] = "Human:";
        gp.stop[2] = "\n\n\n";
        gp.stop[3] = NULL;
    } else if (preset) {
        gp.max_tokens = 500;
        gp.temperature = 0.3f;
        gp.top_p = 0.95f;
    }
    if (set & SET_MAX) gp.max_tokens = fl.max_tokens == 0 ? -1 : fl.max_tokens;
    if (set & SET_TEMP) gp.temperature = fl.temperature;
    if (set & SET_TOPK) gp.top_k = fl.top_k;
    if (set & SET_TOPP) gp.top_p = fl.top_p;
    if (set & SET_MINP) gp.min_p = fl.min_p;
    if (set & SET_REP) gp.repeat_penalty = fl.repeat_penalty;
    if (set & SET_SEED) gp.seed = fl.seed;
    if (set & SET_STOP) memcpy(gp.stop, fl.stop, sizeof gp.stop);
    lm_chat_params cp = lm_chat_default_params();
    if (max_messages >= 0) cp.max_messages = max_messages;

    if (verbose)
        fprintf(stderr,
                "sampling: max %d tokens, temperature %g, top-k %d, top-p %g, min-p %g, "
                "repeat penalty %g%s\n",
                (int)gp.max_tokens, (double)gp.temperature, (int)gp.top_k, (double)gp.top_p,
                (double)gp.min_p, (double)gp.repeat_penalty,
                gp.stop[0] ? ", with stop strings" : "");

    bool want_cloud = cli_cloud_wanted(&cf);
    if (!want_cloud && (cf.base_url || cf.model || cf.api_key_env || cf.providers_file))
        return cli_usage_error(cmd, "--base-url, --model, --api-key-env and --providers need "
                                    "--provider or --fallback");
    if (cf.provider && model_path)
        return cli_usage_error(cmd, "--provider answers instead of a local model; drop '%s' or "
                                    "use --fallback %s", model_path, cf.provider);
    cli_cloud *clouds = NULL;
    size_t n_clouds = 0;
    if (want_cloud) {
        int crc = cli_cloud_resolve(cmd, &cf, &clouds, &n_clouds);
        if (crc != CLI_EXIT_OK) return crc;
    }
    for (size_t k = 0; k < n_clouds; k++) {
        if (clouds[k].api_key_env[0] && !getenv(clouds[k].api_key_env))
            fprintf(stderr, "locallm chat: %s: $%s is not set; no API key is sent\n",
                    clouds[k].name, clouds[k].api_key_env);
    }

    char *default_path = NULL, *structured = NULL;
    int rc = CLI_EXIT_ERROR;
    lm_model *model = NULL;
    lm_engine *engine = NULL;
    lm_call *call = NULL;
    lm_provider *list[17] = {NULL};
    size_t n_list = 0;
    lm_provider *manager = NULL;
    convo c = {0};
    char local_err[800] = "";
    lm_error err = {0};
    if (cli_structured_load(&so, &gp, &structured) != CLI_EXIT_OK) goto done;
    if (n_clouds > 16) {
        cli_usage_error(cmd, "at most 16 providers");
        goto done;
    }
    if (!cf.provider) {
        if (!model_path) {
            default_path = cli_default_chat_model();
            if (!default_path) {
                cli_error("out of memory");
                goto done;
            }
            model_path = default_path;
        }
        if (n_clouds == 0) {
            if (!cli_load_chat_model(model_path, n_threads, tpl, &model)) goto done;
        } else if (!load_chat_model(model_path, n_threads, tpl, &model, local_err,
                                    sizeof local_err)) {
            fprintf(stderr, "locallm chat: the local model is unavailable (%s); answering with "
                    "%s%s\n", local_err, clouds[0].name, n_clouds > 1 ? " and the others" : "");
        }
        if (model) {
            if (!cli_engine_new(model, &engine)) goto done;
            lm_local_params lp = lm_local_default_params();
            lp.session.n_ctx = n_ctx;
            if (lm_provider_local_new(engine, &lp, &list[n_list], &err) != LM_OK) {
                cli_error("cannot create a session: %s", err.msg[0] ? err.msg : "unknown error");
                goto done;
            }
            n_list++;
        }
    }
    for (size_t k = 0; k < n_clouds; k++) {
        lm_openai_params op = cli_cloud_params(&clouds[k], &cf);
        if (lm_provider_openai_new(&op, &list[n_list], &err) != LM_OK) {
            cli_error("%s: %s", clouds[k].name, err.msg);
            goto done;
        }
        n_list++;
    }
    if (lm_call_new(&call, &err) != LM_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    backend b;
    memset(&b, 0, sizeof b);
    b.call = call;
    b.preferred = cf.provider ? cf.provider : "local";
    b.local_err = local_err[0] ? local_err : NULL;
    if (n_list == 1 && !b.local_err) {
        b.p = list[0];
    } else {
        if (lm_provider_fallback_new(list, n_list, &manager, &err) != LM_OK) {
            cli_error("%s", err.msg);
            goto done;
        }
        b.p = manager;
    }
    if (verbose && n_clouds)
        for (size_t k = 0; k < n_clouds; k++)
            fprintf(stderr, "provider %s: %s, model %s\n", clouds[k].name, clouds[k].base_url,
                    clouds[k].model);
    if (system && !convo_set_system(&c, system)) {
        cli_error("out of memory");
        goto done;
    }
    if (isatty(STDIN_FILENO))
        rc = run_repl(&b, &c, &cp, &gp, verbose);
    else
        rc = run_pipe(&b, &c, &cp, &gp, verbose);

done:
    cli_messages_free(c.msgs, c.n);
    lm_provider_free(manager);
    for (size_t k = 0; k < n_list; k++) lm_provider_free(list[k]);
    lm_call_free(call);
    lm_engine_free(engine);
    lm_model_free(model);
    free(clouds);
    free(default_path);
    free(structured);
    return rc;
}
