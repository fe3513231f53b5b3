/* cli/voice.c: `locallm voice`, the voice-assistant loop over streamed transcripts.
 * Owns: reading transcript events ({"partial": ...} / {"final": ...}, one JSON object a line) on
 * a reader thread, prefilling while the user speaks, streaming the reply through the sentence
 * chunker (lm_sentences_*, with an early first chunk at a clause) into a TTS command (or
 * stdout), barge-in (a new utterance cancels the reply; history keeps only what was spoken) and
 * the per-turn latency report.
 *
 * Timing of the transcript: from a pipe or terminal a line is an event when it arrives. A line
 * may carry "at_ms": N (milliseconds after the model is ready) to be delivered then, whatever the
 * assistant is doing (that is how a recorded barge-in is replayed). From a regular file, a line
 * without at_ms is delivered when the assistant is idle, as if the user waited for the reply. */
#include "cli/cli.h"
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char VOICE_HELP[] =
    "Usage: locallm voice [MODEL] [options]\n"
    "\n"
    "A voice-assistant loop. Reads a speech recogniser's transcript as JSON lines:\n"
    "{\"partial\": \"text so far\"} while the user speaks, {\"final\": \"whole utterance\"} when\n"
    "they stop (an optional \"at_ms\": N delivers a line N ms after start). Partials are\n"
    "prefilled so the reply starts fast; the reply is cut into sentences, each spoken by the TTS\n"
    "command as soon as it is complete. A new utterance during a reply interrupts it (barge-in);\n"
    "the conversation keeps only what was spoken. MODEL defaults to models/tinychat.\n"
    "A latency report per turn goes to stderr; its times count from the arrival of the final\n"
    "transcript (end of speech).\n"
    "\n"
    "Options:\n"
    "      --transcripts F      read the transcript from file F (default -: stdin)\n"
    "      --tts CMD            run CMD once per sentence, the sentence on its stdin and\n"
    "                           $LOCALLM_WAV naming a WAV file to write (default:\n"
    "                           espeak-ng -w \"$LOCALLM_WAV\" --stdin); -: print each sentence\n"
    "                           on its own line to stdout\n"
    "      --out-dir DIR        folder for the WAV files turnN_sentM.wav (default: a new\n"
    "                           temporary folder, named on stderr)\n"
    "      --first-chunk N      the first sentence of a reply may end at a clause mark (, ; :)\n"
    "                           once it holds N characters, so speech starts sooner\n"
    "                           (default 20; 0: whole sentences only)\n"
    "      --max-chunk N        cut a sentence longer than N characters at the next space or\n"
    "                           clause mark (default 300; 0: no limit)\n"
    "      --no-partial-prefill do not prefill partial transcripts (to measure what it saves)\n"
    "      --system TEXT        system prompt\n"
    "      --chat-template T    llama3, mistral, chatml, zephyr, or a file of Jinja source\n"
    "  -n, --n-predict N        tokens per reply at most (default 256)\n"
    "      --json               the latency report as one JSON object per turn (stderr)\n"
    "  -t, --threads N          threads (default: one per core)\n"
    "  -c, --ctx N              context window in tokens (default: the model's, at most 4096)\n"
    "  -h, --help               show this help\n";

static const char DEFAULT_TTS[] = "espeak-ng -w \"$LOCALLM_WAV\" --stdin";

/* ---- transcript events, read on their own thread ---------------------------------------------- */

enum ev_kind { EV_PARTIAL, EV_FINAL, EV_EOF, EV_ERROR };

typedef struct event {
    enum ev_kind kind;
    char *text;
    double t_ms;      /* when it arrived (cli_now_ms) */
    struct event *next;
} event;

typedef struct shared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    event *head, *tail;
    bool busy;        /* the main thread is handling an event */
    bool generating;  /* a reply is being generated or spoken */
    bool barged;      /* an event arrived while generating */
    bool oom_queued;  /* oom_event is in the queue */
    lm_session *session;
    FILE *in;
    const char *in_name;
    bool paced;       /* a regular file: untimed lines wait until the assistant is idle */
    double t0;
} shared;

/* Queued when an event cannot be allocated; the loop then stops. */
static event oom_event = {EV_ERROR, NULL, 0, NULL};

static void push(shared *sh, enum ev_kind kind, char *text) {
    event *e = text || kind == EV_EOF ? calloc(1, sizeof *e) : NULL;
    if (e) {
        e->kind = kind;
        e->text = text;
        e->t_ms = cli_now_ms();
    } else {
        free(text);
        e = &oom_event;
        kind = EV_ERROR;
    }
    pthread_mutex_lock(&sh->mu);
    bool queued = e == &oom_event && sh->oom_queued;
    if (e == &oom_event) sh->oom_queued = true;
    if (!queued) {
        if (sh->tail)
            sh->tail->next = e;
        else
            sh->head = e;
        sh->tail = e;
    }
    if (sh->generating && (kind == EV_PARTIAL || kind == EV_FINAL)) {
        sh->barged = true;
        lm_session_cancel(sh->session);
    }
    pthread_cond_broadcast(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

static void sleep_until(double t_ms) {
    for (;;) {
        double left = t_ms - cli_now_ms();
        if (left <= 0) return;
        struct timespec ts = {(time_t)(left / 1000.0), (long)(fmod(left, 1000.0) * 1e6)};
        nanosleep(&ts, NULL);
    }
}

static void *reader(void *arg) {
    shared *sh = arg;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned long lineno = 0;
    while ((got = getline(&line, &cap, sh->in)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (got == 0) continue;
        cJSON *j = NULL;
        lm_error err = {0};
        if (lm_json_parse(line, (size_t)got, "transcript line", &j, &err) != LM_OK ||
            !cJSON_IsObject(j)) {
            fprintf(stderr, "locallm: warning: %s:%lu: not a JSON object, skipped\n",
                    sh->in_name, lineno);
            cJSON_Delete(j);
            continue;
        }
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "partial");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "final");
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "at_ms");
        const cJSON *t = cJSON_IsString(f) ? f : cJSON_IsString(p) ? p : NULL;
        if (!t) {
            fprintf(stderr,
                    "locallm: warning: %s:%lu: expected {\"partial\": TEXT} or "
                    "{\"final\": TEXT}, skipped\n",
                    sh->in_name, lineno);
            cJSON_Delete(j);
            continue;
        }
        char *text = strdup(t->valuestring);
        enum ev_kind kind = t == f ? EV_FINAL : EV_PARTIAL;
        if (cJSON_IsNumber(at)) {
            sleep_until(sh->t0 + at->valuedouble);
        } else if (sh->paced) {
            pthread_mutex_lock(&sh->mu);
            while (sh->head || sh->busy) pthread_cond_wait(&sh->cv, &sh->mu);
            pthread_mutex_unlock(&sh->mu);
        }
        cJSON_Delete(j);
        push(sh, text ? kind : EV_ERROR, text);
        if (!text) break;
    }
    free(line);
    push(sh, EV_EOF, NULL);
    return NULL;
}

static event *pop(shared *sh) {
    pthread_mutex_lock(&sh->mu);
    while (!sh->head) pthread_cond_wait(&sh->cv, &sh->mu);
    event *e = sh->head;
    sh->head = e->next;
    if (!sh->head) sh->tail = NULL;
    sh->busy = true;
    pthread_mutex_unlock(&sh->mu);
    return e;
}

static void set_idle(shared *sh) {
    pthread_mutex_lock(&sh->mu);
    sh->busy = false;
    pthread_cond_broadcast(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

/* ---- speaking --------------------------------------------------------------------------------- */

/* Runs cmd through /bin/sh with text on its stdin, its stdout sent to our stderr, and
 * LOCALLM_WAV=wav in its environment. Returns the exit status (-1: could not run it). */
static int run_tts(const char *cmd, const char *text, const char *wav) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    size_t n_env = 0;
    while (environ[n_env]) n_env++;
    char **env = malloc((n_env + 2) * sizeof *env);
    size_t wl = strlen(wav) + sizeof "LOCALLM_WAV=";
    char *wav_var = malloc(wl);
    if (!env || !wav_var) {
        free(env);
        free(wav_var);
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    snprintf(wav_var, wl, "LOCALLM_WAV=%s", wav);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "LOCALLM_WAV=", 12) != 0) env[k++] = environ[i];
    env[k++] = wav_var;
    env[k] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    free(wav_var);
    close(fds[0]);
    if (rc != 0) {
        close(fds[1]);
        return -1;
    }
    /* a TTS that exits without reading must not kill us with SIGPIPE */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fds[1], text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    if (write(fds[1], "\n", 1) < 0) { /* espeak-ng reads lines */
    }
    close(fds[1]);
    sigaction(SIGPIPE, &old, NULL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

typedef struct turn {
    shared *sh;
    const char *tts;       /* NULL: print to stdout */
    const char *out_dir;
    int turn_no, n_sent;
    lm_sentences *ch;      /* cuts the reply into sentences; calls on_sentence */
    bool ch_failed;        /* the chunker ran out of memory: the reply stops */
    lm_buf reply;          /* everything generated */
    lm_buf spoken;         /* the sentences spoken, joined by spaces */
    double t_end, t_first_token, t_first_sentence, t_first_audio, tts_ms;
    bool tts_failed;
} turn;

static void speak(turn *t, const char *sentence) {
    if (!t->t_first_sentence) t->t_first_sentence = cli_now_ms();
    t->n_sent++;
    if (!t->tts) {
        printf("%s\n", sentence);
        fflush(stdout);
    } else {
        char wav[4200];
        snprintf(wav, sizeof wav, "%s/turn%d_sent%d.wav", t->out_dir, t->turn_no, t->n_sent);
        double t0 = cli_now_ms();
        int rc = run_tts(t->tts, sentence, wav);
        double t1 = cli_now_ms();
        if (!t->t_first_audio) t->tts_ms = t1 - t0;
        if (rc != 0 && !t->tts_failed) {
            fprintf(stderr, "locallm: warning: the TTS command failed (%s %d): %s\n",
                    rc < 0 ? "could not run it" : "exit status", rc, t->tts);
            t->tts_failed = true;
        }
    }
    if (!t->t_first_audio) t->t_first_audio = cli_now_ms();
    if (t->spoken.len) lm_buf_putc(&t->spoken, ' ');
    lm_buf_puts(&t->spoken, sentence);
}

static bool barged(shared *sh) {
    pthread_mutex_lock(&sh->mu);
    bool b = sh->barged;
    pthread_mutex_unlock(&sh->mu);
    return b;
}

/* lm_sentence_fn: speaks one sentence unless the user barged in. */
static int on_sentence(const char *text, size_t len, void *user) {
    turn *t = user;
    (void)len;
    if (barged(t->sh)) return 1;
    speak(t, text);
    return barged(t->sh) ? 1 : 0;
}

static int on_piece(const char *utf8, size_t len, void *user) {
    turn *t = user;
    if (!len) return 0;
    if (!t->t_first_token) t->t_first_token = cli_now_ms();
    lm_buf_append(&t->reply, utf8, len);
    if (barged(t->sh)) return 1;
    lm_status st = lm_sentences_push(t->ch, utf8, len);
    if (st == LM_ERR_NOMEM) t->ch_failed = true;
    return st != LM_OK || barged(t->sh) ? 1 : 0;
}

/* ---- the conversation ------------------------------------------------------------------------- */

typedef struct convo {
    lm_message *msgs;
    size_t n, cap;
} convo;

/* Keeps one slot spare past the list, for the utterance being spoken. */
static bool convo_reserve(convo *c) {
    if (c->n + 1 < c->cap) return true;
    size_t cap = c->cap ? c->cap * 2 : 8;
    lm_message *m = realloc(c->msgs, cap * sizeof *m);
    if (!m) return false;
    c->msgs = m;
    c->cap = cap;
    return true;
}

static bool convo_add(convo *c, const char *role, const char *content) {
    if (!convo_reserve(c)) return false;
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
    return convo_reserve(c);
}

/* The conversation plus the utterance (borrowed) as the last user message. */
static const lm_message *with_user(convo *c, const char *text) {
    memset(&c->msgs[c->n], 0, sizeof c->msgs[c->n]);
    c->msgs[c->n].role = "user";
    c->msgs[c->n].content = text;
    return c->msgs;
}

static void report(const turn *t, const lm_gen_stats *gs, bool was_barged, bool json) {
    double ft = t->t_first_token ? t->t_first_token - t->t_end : -1;
    double fs = t->t_first_sentence ? t->t_first_sentence - t->t_end : -1;
    double fa = t->t_first_audio ? t->t_first_audio - t->t_end : -1;
    double total = cli_now_ms() - t->t_end;
    if (json) {
        fprintf(stderr,
                "{\"turn\":%d,\"first_token_ms\":%.1f,\"first_sentence_ms\":%.1f,"
                "\"first_audio_ms\":%.1f,\"tts_ms\":%.1f,\"total_ms\":%.1f,\"sentences\":%d,"
                "\"prompt_tokens\":%d,\"cached_tokens\":%d,\"generated_tokens\":%d,"
                "\"barge_in\":%s}\n",
                t->turn_no, ft, fs, fa, t->tts_ms, total, t->n_sent, (int)gs->n_prompt,
                (int)gs->n_cached, (int)gs->n_generated, was_barged ? "true" : "false");
    } else {
        fprintf(stderr,
                "turn %d: end of speech -> first token %.1f ms, first sentence %.1f ms, first "
                "audio %.1f ms (TTS %.1f ms), total %.1f ms | %d sentences | prompt %d tokens "
                "(%d cached), %d generated%s\n",
                t->turn_no, ft, fs, fa, t->tts_ms, total, t->n_sent, (int)gs->n_prompt,
                (int)gs->n_cached, (int)gs->n_generated, was_barged ? " | barge-in" : "");
    }
}

/* ---- the command ------------------------------------------------------------------------------ */

int cli_voice(int argc, char **argv) {
    const char *cmd = "voice";
    const char *model_path = NULL, *tts = NULL, *transcripts = "-", *out_dir = NULL;
    const char *system = NULL, *tpl = NULL;
    int32_t n_threads = 0, n_ctx = 0, max_tokens = 256, first_chunk = 20, max_chunk = 300;
    bool json = false, partial_prefill = true;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        bool bad = false;
        if (cli_is_help(a)) {
            fputs(VOICE_HELP, stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--no-partial-prefill") == 0) {
            partial_prefill = false;
        } else if (cli_opt(argc, argv, &i, "--first-chunk", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--first-chunk", v, 0, INT32_MAX, &first_chunk))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--max-chunk", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--max-chunk", v, 0, INT32_MAX, &max_chunk))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--tts", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            if (!*v) return cli_usage_error(cmd, "--tts: the command is empty");
            tts = v;
        } else if (cli_opt(argc, argv, &i, "--transcripts", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            transcripts = v;
        } else if (cli_opt(argc, argv, &i, "--out-dir", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            out_dir = v;
        } else if (cli_opt(argc, argv, &i, "--chat-template", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            tpl = v;
        } else if (cli_opt(argc, argv, &i, "--system", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            system = v;
        } else if (cli_opt(argc, argv, &i, "-n", "--n-predict", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "-n", v, -1, INT32_MAX, &max_tokens))
                return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "-t", "--threads", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "-t", v, 0, 1024, &n_threads)) return CLI_EXIT_USAGE;
        } else if (cli_opt(argc, argv, &i, "--ctx", "-c", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--ctx", v, 0, INT32_MAX, &n_ctx))
                return CLI_EXIT_USAGE;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!model_path) {
            model_path = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the model is '%s')", a,
                                   model_path);
        }
    }
    bool to_stdout = tts && strcmp(tts, "-") == 0;
    if (!tts) tts = DEFAULT_TTS;

    FILE *in = stdin;
    bool paced = false;
    if (strcmp(transcripts, "-") != 0) {
        in = fopen(transcripts, "r");
        if (!in) return cli_error("cannot open '%s': %s", transcripts, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode)) paced = true;

    char tmp_dir[] = "/tmp/locallm-voice-XXXXXX";
    if (!to_stdout) {
        if (!out_dir) {
            if (!mkdtemp(tmp_dir)) {
                if (in != stdin) fclose(in);
                return cli_error("cannot make a temporary folder: %s", strerror(errno));
            }
            out_dir = tmp_dir;
            fprintf(stderr, "locallm voice: WAV files in %s\n", out_dir);
        } else if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
            if (in != stdin) fclose(in);
            return cli_error("cannot make the folder '%s': %s", out_dir, strerror(errno));
        }
    }

    char *default_path = NULL;
    if (!model_path) {
        default_path = cli_default_chat_model();
        if (!default_path) return cli_error("out of memory");
        model_path = default_path;
    }
    int rc = CLI_EXIT_ERROR;
    lm_model *model = NULL;
    lm_engine *engine = NULL;
    lm_session *session = NULL;
    lm_sentences *chunker = NULL;
    convo c = {0};
    /* static: on an error the reader thread is left blocked in its read, still using it */
    static shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    bool reader_started = false;
    pthread_t th;

    if (!cli_load_chat_model(model_path, n_threads, tpl, &model)) goto done;
    if (!cli_engine_new(model, &engine)) goto done;
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = n_ctx;
    lm_error err = {0};
    if (lm_session_new(engine, &sp, &session, &err) != LM_OK) {
        cli_error("cannot create a session: %s", err.msg[0] ? err.msg : "unknown error");
        goto done;
    }
    lm_engine_warmup(engine, &err); /* best effort: a cold first turn only costs latency */
    if ((system && !convo_add(&c, "system", system)) || !convo_reserve(&c)) goto nomem;

    lm_gen_params gp = lm_gen_default_params();
    gp.max_tokens = max_tokens == 0 ? -1 : max_tokens;
    gp.temperature = 0.0f;
    lm_chat_params cp = lm_chat_default_params();
    lm_sentences_params chp = lm_sentences_default_params();
    chp.first_chunk_min_chars = (size_t)first_chunk;
    chp.max_chunk_chars = (size_t)max_chunk;
    turn t; /* the chunker's callback gets it; filled per turn */
    chunker = lm_sentences_new(&chp, on_sentence, &t);
    if (!chunker) goto nomem;

    sh.session = session;
    sh.in = in;
    sh.in_name = strcmp(transcripts, "-") == 0 ? "stdin" : transcripts;
    sh.paced = paced;
    sh.t0 = cli_now_ms();
    if (pthread_create(&th, NULL, reader, &sh) != 0) {
        cli_error("cannot start the transcript reader");
        goto done;
    }
    reader_started = true;

    int turn_no = 0;
    bool ok = true;
    for (;;) {
        event *e = pop(&sh);
        enum ev_kind kind = e->kind;
        if (kind == EV_EOF || kind == EV_ERROR) {
            if (e != &oom_event) free(e);
            if (kind == EV_ERROR) ok = false, cli_error("out of memory reading the transcript");
            break;
        }
        /* a partial already followed by a newer event is stale: only the newest is prefilled */
        bool stale = false;
        if (kind == EV_PARTIAL) {
            pthread_mutex_lock(&sh.mu);
            stale = sh.head != NULL;
            pthread_mutex_unlock(&sh.mu);
        }
        if (kind == EV_PARTIAL && (!partial_prefill || stale)) {
            free(e->text);
            free(e);
            set_idle(&sh);
            continue;
        }
        if (kind == EV_PARTIAL) {
            lm_status ps = lm_session_prefill_partial(session, with_user(&c, e->text), c.n + 1,
                                                      &cp);
            if (ps != LM_OK && ps != LM_ERR_CANCELLED)
                fprintf(stderr, "locallm: warning: prefill of the partial utterance failed: %s\n",
                        lm_session_errmsg(session));
            free(e->text);
            free(e);
            set_idle(&sh);
            continue;
        }
        /* a final utterance: one turn */
        memset(&t, 0, sizeof t);
        t.sh = &sh;
        t.ch = chunker;
        t.tts = to_stdout ? NULL : tts;
        t.out_dir = out_dir;
        t.turn_no = ++turn_no;
        /* end of speech: when the final transcript arrived, even if a partial's prefill was
           still running then */
        t.t_end = e->t_ms;
        pthread_mutex_lock(&sh.mu);
        sh.barged = false;
        sh.generating = true;
        pthread_mutex_unlock(&sh.mu);
        lm_gen_stats gs;
        memset(&gs, 0, sizeof gs);
        lm_status gst = lm_session_chat(session, with_user(&c, e->text), c.n + 1, &cp, &gp,
                                        on_piece, &t, &gs);
        bool was_barged = barged(&sh);
        if (gst == LM_OK && !was_barged && !t.ch_failed) lm_sentences_flush(chunker);
        lm_sentences_reset(chunker);
        pthread_mutex_lock(&sh.mu);
        sh.generating = false;
        was_barged = sh.barged;
        pthread_mutex_unlock(&sh.mu);
        if (gst != LM_OK && gst != LM_ERR_CANCELLED) {
            cli_error("generation failed: %s", lm_session_errmsg(session));
            ok = false;
        } else if (t.ch_failed) {
            cli_error("out of memory cutting the reply into sentences");
            ok = false;
        } else {
            report(&t, &gs, was_barged, json);
            /* history: the whole reply when it was all spoken, else only the spoken sentences;
               an utterance answered with nothing spoken is forgotten */
            const char *said = was_barged ? t.spoken.data : t.reply.data;
            if (said && *said) {
                if (!convo_add(&c, "user", e->text) || !convo_add(&c, "assistant", said))
                    ok = false, cli_error("out of memory");
            }
        }
        lm_buf_free(&t.reply);
        lm_buf_free(&t.spoken);
        free(e->text);
        free(e);
        set_idle(&sh);
        if (!ok) break;
    }
    rc = ok ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    goto done;

nomem:
    cli_error("out of memory");
done:
    if (reader_started) {
        if (rc == CLI_EXIT_OK)
            pthread_join(th, NULL);
        else
            pthread_detach(th); /* it may be blocked reading; the process ends anyway */
    }
    if (rc == CLI_EXIT_OK || !reader_started) {
        for (event *e = sh.head, *nx; e; e = nx) {
            nx = e->next;
            if (e == &oom_event) continue;
            free(e->text);
            free(e);
        }
        pthread_mutex_destroy(&sh.mu);
        pthread_cond_destroy(&sh.cv);
    }
    for (size_t i = 0; i < c.n; i++) {
        free((char *)c.msgs[i].role);
        free((char *)c.msgs[i].content);
    }
    free(c.msgs);
    lm_sentences_free(chunker);
    lm_session_free(session);
    lm_engine_free(engine);
    lm_model_free(model);
    free(default_path);
    if (in != stdin && (rc == CLI_EXIT_OK || !reader_started)) fclose(in);
    return rc;
}
