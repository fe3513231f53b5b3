/* cli/voice.c: `locallm voice`, the voice-assistant loop over streamed transcripts.
 * Owns: reading transcript events (plain text lines, or {"partial": ...} / {"final": ...} JSON
 * lines) on a reader thread, prefilling while the user speaks, streaming the reply through the
 * sentence chunker (lm_sentences_*, with an early first chunk at a clause) into a TTS command and
 * the system's audio player (--play, on a player thread), printing the reply, barge-in (a new
 * utterance cancels the reply and stops the playback; history keeps only what was spoken) and
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

enum {
    O_TRANSCRIPTS = CLI_O_OWN, O_PLAY, O_TTS, O_OUT_DIR, O_QUIET, O_FIRST_CHUNK, O_MAX_CHUNK,
    O_NO_PARTIAL_PREFILL,
};

static const cli_option VOICE_OPTIONS[] = {
    {O_PLAY, "--play", NULL,
     "speak the replies through the system's audio player (aplay or\n"
     "paplay on Linux, afplay on macOS), sentence by sentence"},
    {O_TTS, "--tts", "CMD",
     "run CMD once per sentence, the sentence on its stdin and\n"
     "$LOCALLM_WAV naming a WAV file to write (default:\n"
     "espeak-ng -w \"$LOCALLM_WAV\" --stdin); -: no speech, text only"},
    {O_OUT_DIR, "--out-dir", "DIR",
     "keep the WAV files, turnN_sentM.wav, in DIR (without --play a TTS\n"
     "writes them to a new temporary folder, named on stderr)"},
    {O_QUIET, "-q|--quiet", NULL, "do not print the reply text"},
    {O_TRANSCRIPTS, "--transcripts", "F", "read the transcript from file F (default -: stdin)"},
    {O_FIRST_CHUNK, "--first-chunk", "N",
     "the first sentence of a reply may end at a clause mark (, ; :)\n"
     "once it holds N characters, so speech starts sooner\n"
     "(default 20; 0: whole sentences only)"},
    {O_MAX_CHUNK, "--max-chunk", "N",
     "cut a sentence longer than N characters at the next space or\n"
     "clause mark (default 300; 0: no limit)"},
    {O_NO_PARTIAL_PREFILL, "--no-partial-prefill", NULL,
     "do not prefill partial transcripts (to measure what it saves)"},
    CLI_OPT_SYSTEM,
    CLI_OPT_CHAT_TEMPLATE,
    {CLI_O_N_PREDICT, "-n|--n-predict", "N", "tokens per reply at most (default 256)"},
    {CLI_O_JSON, "--json", NULL, "the latency report as one JSON object per turn (stderr)"},
    CLI_OPT_THREADS,
    CLI_OPT_CTX,
    CLI_OPT_FORCE,
    {0, NULL, NULL, NULL},
};

static const cli_command VOICE_CMD = {
    "voice",
    "Usage: locallm voice [MODEL] [options]\n",
    "A voice-assistant loop. Reads a speech recogniser's transcript, one line at a time: a plain\n"
    "text line is what the user said (a final transcript); a JSON line {\"partial\": \"text so\n"
    "far\"} comes while the user speaks, {\"final\": \"whole utterance\"} when they stop (an\n"
    "optional \"at_ms\": N delivers a line N ms after start). Partials are prefilled so the reply\n"
    "starts fast; the reply is cut into sentences, printed, and with --play spoken by the TTS\n"
    "command and the audio player as soon as each is complete. A new utterance during a reply\n"
    "interrupts it and its playback (barge-in); the conversation keeps only what was spoken.\n"
    "MODEL defaults to models/tinychat. A latency report per turn goes to stderr; its times count\n"
    "from the arrival of the final transcript (end of speech).\n",
    VOICE_OPTIONS,
    "Example: echo \"What is the capital of France?\" | locallm voice --play\n",
};

static const char DEFAULT_TTS[] = "espeak-ng -w \"$LOCALLM_WAV\" --stdin";

/* ---- transcript events, read on their own thread ---------------------------------------------- */

enum ev_kind { EV_PARTIAL, EV_FINAL, EV_EOF, EV_ERROR };

typedef struct event {
    enum ev_kind kind;
    char *text;
    double t_ms;      /* when it arrived (cli_now_ms) */
    struct event *next;
} event;

struct player;
static void player_stop(struct player *pl);

typedef struct shared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    event *head, *tail;
    bool busy;        /* the main thread is handling an event */
    bool generating;  /* a reply is being generated or spoken */
    bool barged;      /* an event arrived while generating */
    bool oom_queued;  /* oom_event is in the queue */
    lm_session *session;
    struct player *player; /* NULL without --play */
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
        if (sh->player) player_stop(sh->player);
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

/* One transcript line as an event: a plain text line is a final utterance; a line starting with
 * '{' is a JSON event. Returns false (with a warning on stderr) for a line to skip. *text is
 * malloc'd (NULL when memory ran out); *at_ms is negative without "at_ms". */
static bool parse_line(const shared *sh, unsigned long lineno, const char *line, size_t len,
                       enum ev_kind *kind, char **text, double *at_ms) {
    *at_ms = -1;
    while (len && (*line == ' ' || *line == '\t')) line++, len--;
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
    if (len == 0) return false;
    if (*line != '{') {
        *kind = EV_FINAL;
        *text = strndup(line, len);
        return true;
    }
    cJSON *j = NULL;
    lm_error err = {0};
    if (lm_json_parse(line, len, "transcript line", &j, &err) != LM_OK || !cJSON_IsObject(j)) {
        fprintf(stderr, "locallm: warning: %s:%lu: not a JSON object, skipped\n", sh->in_name, lineno);
        cJSON_Delete(j);
        return false;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "partial");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "final");
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "at_ms");
    const cJSON *t = cJSON_IsString(f) ? f : cJSON_IsString(p) ? p : NULL;
    if (!t) {
        fprintf(stderr,
                "locallm: warning: %s:%lu: expected {\"partial\": TEXT} or {\"final\": TEXT}, "
                "skipped\n", sh->in_name, lineno);
        cJSON_Delete(j);
        return false;
    }
    *kind = t == f ? EV_FINAL : EV_PARTIAL;
    *text = strdup(t->valuestring);
    if (cJSON_IsNumber(at)) *at_ms = at->valuedouble;
    cJSON_Delete(j);
    return true;
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
        enum ev_kind kind;
        char *text = NULL;
        double at_ms;
        if (!parse_line(sh, lineno, line, (size_t)got, &kind, &text, &at_ms)) continue;
        if (at_ms >= 0) {
            sleep_until(sh->t0 + at_ms);
        } else if (sh->paced) {
            pthread_mutex_lock(&sh->mu);
            while (sh->head || sh->busy) pthread_cond_wait(&sh->cv, &sh->mu);
            pthread_mutex_unlock(&sh->mu);
        }
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

/* ---- playing: the system's audio player on its own thread ---------------------------------- */

/* A sentence's WAV file waiting to be played. */
typedef struct clip {
    char *wav, *text;
    struct clip *next;
} clip;

typedef struct player {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const char *prog;    /* "aplay", "paplay" or "afplay" */
    bool remove_files;   /* the WAVs are ours (a temporary folder): deleted once played */
    clip *head, *tail;
    pid_t pid;           /* the player process now playing; 0 when none */
    bool killed;         /* player_stop ended it: however it exits, that is no failure */
    bool stopped;        /* player_stop ran this turn: later clips are dropped, not played */
    bool quit;
    /* this turn's playback (player_reset clears it) */
    lm_buf played;       /* the sentences whose playback started, joined by spaces */
    int n_played;
    double t_first;      /* when the first of them started (cli_now_ms); 0 before */
    bool failed;         /* the player could not be run or exited non-zero */
    pthread_t th;
} player;

/* Where prog is on $PATH, or false. */
static bool on_path(const char *prog) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/bin:/bin";
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        char full[4096];
        if (n && snprintf(full, sizeof full, "%.*s/%s", (int)n, p, prog) < (int)sizeof full &&
            access(full, X_OK) == 0)
            return true;
        p += n;
        if (*p == ':') p++;
    }
    return false;
}

/* The audio player this system has, or NULL. */
static const char *find_player(void) {
#ifdef __APPLE__
    static const char *const progs[] = {"afplay"};
#else
    static const char *const progs[] = {"aplay", "paplay"};
#endif
    for (size_t k = 0; k < sizeof progs / sizeof progs[0]; k++)
        if (on_path(progs[k])) return progs[k];
    return NULL;
}

static void clip_free(player *pl, clip *c) {
    if (pl->remove_files) unlink(c->wav);
    free(c->wav);
    free(c->text);
    free(c);
}

/* Starts the player on c->wav, its output sent to our stderr; the pid, or -1. */
static pid_t spawn_player(const player *pl, const clip *c) {
    char *argv[4];
    size_t k = 0;
    argv[k++] = (char *)pl->prog;
    if (strcmp(pl->prog, "aplay") == 0) argv[k++] = "-q";
    argv[k++] = c->wav;
    argv[k] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, pl->prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
}

/* Plays the clips in order; the process starts under the lock, so player_stop either finds it
 * (and ends it) or finds the clip still queued (and drops it). */
static void *player_main(void *arg) {
    player *pl = arg;
    pthread_mutex_lock(&pl->mu);
    for (;;) {
        while (!pl->head && !pl->quit) pthread_cond_wait(&pl->cv, &pl->mu);
        if (!pl->head) break;
        clip *c = pl->head;
        pl->head = c->next;
        if (!pl->head) pl->tail = NULL;
        pid_t pid = spawn_player(pl, c);
        if (pid > 0) {
            pl->pid = pid;
            if (!pl->t_first) pl->t_first = cli_now_ms();
            if (pl->played.len) lm_buf_putc(&pl->played, ' ');
            lm_buf_puts(&pl->played, c->text);
            pl->n_played++;
            pthread_mutex_unlock(&pl->mu);
            int status = 0;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            pthread_mutex_lock(&pl->mu);
            if (!pl->killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) pl->failed = true;
            pl->pid = 0;
            pl->killed = false;
        } else {
            pl->failed = true;
        }
        clip_free(pl, c);
        pthread_cond_broadcast(&pl->cv);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

static bool player_start(player *pl, const char *prog, bool remove_files) {
    memset(pl, 0, sizeof *pl);
    pl->prog = prog;
    pl->remove_files = remove_files;
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->cv, NULL);
    if (pthread_create(&pl->th, NULL, player_main, pl) != 0) {
        pthread_mutex_destroy(&pl->mu);
        pthread_cond_destroy(&pl->cv);
        return false;
    }
    return true;
}

/* Queues a sentence's WAV (both strings copied). false when memory is short. */
static bool player_add(player *pl, const char *wav, const char *text) {
    clip *c = calloc(1, sizeof *c);
    if (c) {
        c->wav = strdup(wav);
        c->text = strdup(text);
    }
    if (!c || !c->wav || !c->text) {
        if (c) free(c->wav), free(c->text);
        free(c);
        return false;
    }
    pthread_mutex_lock(&pl->mu);
    if (pl->stopped) {
        /* the user spoke while this sentence was being synthesized */
        clip_free(pl, c);
        pthread_mutex_unlock(&pl->mu);
        return true;
    }
    if (pl->tail) pl->tail->next = c;
    else pl->head = c;
    pl->tail = c;
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
    return true;
}

/* Barge-in: drops what is queued and ends what is playing. Any thread. */
static void player_stop(player *pl) {
    pthread_mutex_lock(&pl->mu);
    for (clip *c = pl->head, *nx; c; c = nx) {
        nx = c->next;
        clip_free(pl, c);
    }
    pl->head = pl->tail = NULL;
    pl->stopped = true;
    if (pl->pid > 0 && !pl->killed) {
        kill(pl->pid, SIGTERM);
        pl->killed = true;
    }
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
}

/* Waits until everything queued has been played (or stopped). */
static void player_wait(player *pl) {
    pthread_mutex_lock(&pl->mu);
    while (pl->head || pl->pid > 0) pthread_cond_wait(&pl->cv, &pl->mu);
    pthread_mutex_unlock(&pl->mu);
}

/* A new turn's playback record. */
static void player_reset(player *pl) {
    pthread_mutex_lock(&pl->mu);
    lm_buf_reset(&pl->played);
    pl->n_played = 0;
    pl->t_first = 0;
    pl->failed = false;
    pl->stopped = false;
    pthread_mutex_unlock(&pl->mu);
}

static void player_end(player *pl) {
    player_stop(pl);
    pthread_mutex_lock(&pl->mu);
    pl->quit = true;
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
    pthread_join(pl->th, NULL);
    lm_buf_free(&pl->played);
    pthread_mutex_destroy(&pl->mu);
    pthread_cond_destroy(&pl->cv);
}

/* ---- one reply ------------------------------------------------------------------------------ */

typedef struct turn {
    shared *sh;
    const char *tts;       /* the TTS command; NULL: no speech */
    player *player;        /* plays what the TTS wrote; NULL: the WAV files are only kept */
    bool print;            /* each sentence to stdout, on its own line */
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
    if (t->print) {
        printf("%s\n", sentence);
        fflush(stdout);
    }
    if (t->tts) {
        char wav[4200];
        snprintf(wav, sizeof wav, "%s/turn%d_sent%d.wav", t->out_dir, t->turn_no, t->n_sent);
        double t0 = cli_now_ms();
        int rc = run_tts(t->tts, sentence, wav);
        double t1 = cli_now_ms();
        if (!t->tts_ms) t->tts_ms = t1 - t0;
        if (rc != 0 && !t->tts_failed) {
            fprintf(stderr, "locallm: warning: the TTS command failed (%s %d): %s\n",
                    rc < 0 ? "could not run it" : "exit status", rc, t->tts);
            t->tts_failed = true;
        }
        if (rc == 0 && t->player && !player_add(t->player, wav, sentence))
            fprintf(stderr, "locallm: warning: out of memory queueing a sentence to play\n");
    }
    /* with a player, the audio starts when it plays (player.t_first) */
    if (!t->player && !t->t_first_audio) t->t_first_audio = cli_now_ms();
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

/* The conversation plus the utterance (borrowed) as the last user message. */
static const lm_message *with_user(cli_convo *c, const char *text) {
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

typedef struct voice_opts {
    const char *model_path, *tts, *transcripts, *out_dir, *system, *tpl;
    int32_t n_threads, n_ctx, max_tokens, first_chunk, max_chunk;
    bool json, partial_prefill, play, quiet;
} voice_opts;

/* Fills *o with the defaults, then from the arguments. Returns -1 to go on, else the exit code. */
static int parse(int argc, char **argv, voice_opts *o) {
    const char *cmd = "voice";
    *o = (voice_opts){.transcripts = "-", .max_tokens = 256, .first_chunk = 20, .max_chunk = 300,
                      .partial_prefill = true};
    cli_args a;
    cli_args_init(&a, &VOICE_CMD, argc, argv);
    int rc = -1;
    for (int id; (id = cli_args_step(&a, &o->model_path, &rc)) != CLI_ARGS_END;) {
        bool ok = true;
        switch (id) {
        case CLI_O_JSON: o->json = true; break;
        case O_NO_PARTIAL_PREFILL: o->partial_prefill = false; break;
        case O_PLAY: o->play = true; break;
        case O_QUIET: o->quiet = true; break;
        case CLI_O_FORCE: cli_set_force(true); break;
        case O_FIRST_CHUNK: ok = cli_args_i32(&a, 0, INT32_MAX, &o->first_chunk); break;
        case O_MAX_CHUNK: ok = cli_args_i32(&a, 0, INT32_MAX, &o->max_chunk); break;
        case CLI_O_N_PREDICT: ok = cli_args_i32(&a, -1, INT32_MAX, &o->max_tokens); break;
        case CLI_O_THREADS: ok = cli_args_i32(&a, 0, 1024, &o->n_threads); break;
        case CLI_O_CTX: ok = cli_args_i32(&a, 0, INT32_MAX, &o->n_ctx); break;
        case O_TTS:
            if (!*a.val) return cli_usage_error(cmd, "%s: the command is empty", a.opt);
            o->tts = a.val;
            break;
        case O_TRANSCRIPTS: o->transcripts = a.val; break;
        case O_OUT_DIR: o->out_dir = a.val; break;
        case CLI_O_CHAT_TEMPLATE: o->tpl = a.val; break;
        case CLI_O_SYSTEM: o->system = a.val; break;
        }
        if (!ok) return CLI_EXIT_USAGE;
    }
    if (rc >= 0) return rc;
    bool no_speech = o->tts && strcmp(o->tts, "-") == 0;
    if (no_speech && (o->play || o->out_dir))
        return cli_usage_error(cmd, "--tts - means no speech; it does not go with %s",
                               o->play ? "--play" : "--out-dir");
    return -1;
}

/* The TTS command to run (NULL: none) and, with --play, the audio player; checks they exist. */
static int speech_setup(const voice_opts *o, const char **tts, const char **prog) {
    *tts = NULL;
    *prog = NULL;
    bool no_speech = o->tts && strcmp(o->tts, "-") == 0;
    if (no_speech || (!o->play && !o->tts && !o->out_dir)) return CLI_EXIT_OK; /* text only */
    *tts = o->tts ? o->tts : DEFAULT_TTS;
    if (!o->tts && !on_path("espeak-ng"))
        return cli_error("espeak-ng, the default TTS, is not installed (scripts/deps.sh installs it); "
                         "or give --tts CMD");
    if (o->play && !(*prog = find_player()))
#ifdef __APPLE__
        return cli_error("--play: afplay is not on PATH");
#else
        return cli_error("--play: no audio player found: install alsa-utils (aplay) or "
                         "pulseaudio-utils (paplay)");
#endif
    return CLI_EXIT_OK;
}

/* One final utterance: the reply generated, cut into sentences, printed and spoken; then the
 * history gets what was spoken. false on an error (printed). */
static bool one_turn(turn *t, shared *sh, player *pl, cli_convo *c, const char *utterance,
                     const lm_chat_params *cp, const lm_gen_params *gp, bool json) {
    lm_session *session = sh->session;
    if (pl) player_reset(pl);
    pthread_mutex_lock(&sh->mu);
    sh->barged = false;
    sh->generating = true;
    pthread_mutex_unlock(&sh->mu);
    lm_gen_stats gs;
    memset(&gs, 0, sizeof gs);
    lm_status gst = lm_session_chat(session, with_user(c, utterance), c->n + 1, cp, gp, on_piece,
                                    t, &gs);
    bool was_barged = barged(sh);
    if (gst == LM_OK && !was_barged && !t->ch_failed) lm_sentences_flush(t->ch);
    lm_sentences_reset(t->ch);
    /* the turn lasts while its sentences play: an utterance meanwhile is a barge-in too */
    if (pl) player_wait(pl);
    pthread_mutex_lock(&sh->mu);
    sh->generating = false;
    was_barged = sh->barged;
    pthread_mutex_unlock(&sh->mu);
    const char *spoken = t->spoken.data;
    if (pl) {
        pthread_mutex_lock(&pl->mu);
        t->n_sent = pl->n_played;
        t->t_first_audio = pl->t_first;
        if (pl->failed && !t->tts_failed)
            fprintf(stderr, "locallm: warning: the audio player (%s) failed\n", pl->prog);
        pthread_mutex_unlock(&pl->mu);
        spoken = pl->played.data; /* no other thread writes it until the next player_reset */
    }
    if (gst != LM_OK && gst != LM_ERR_CANCELLED) {
        cli_error("generation failed: %s", lm_session_errmsg(session));
        return false;
    }
    if (t->ch_failed) {
        cli_error("out of memory cutting the reply into sentences");
        return false;
    }
    report(t, &gs, was_barged, json);
    /* history: the whole reply when it was all spoken, else only the spoken sentences; an
       utterance answered with nothing spoken is forgotten */
    const char *said = was_barged ? spoken : t->reply.data;
    if (said && *said && (!cli_convo_add(c, "user", utterance) || !cli_convo_add(c, "assistant", said))) {
        cli_error("out of memory");
        return false;
    }
    return true;
}

/* Handles events until the transcript ends. false on an error (printed). */
static bool voice_loop(shared *sh, player *pl, turn *tmpl, cli_convo *c, const lm_chat_params *cp,
                       const lm_gen_params *gp, bool partial_prefill, bool json) {
    int turn_no = 0;
    for (;;) {
        event *e = pop(sh);
        enum ev_kind kind = e->kind;
        if (kind == EV_EOF || kind == EV_ERROR) {
            if (e != &oom_event) free(e);
            if (kind == EV_ERROR) {
                cli_error("out of memory reading the transcript");
                return false;
            }
            return true;
        }
        bool ok = true;
        if (kind == EV_PARTIAL) {
            /* a partial already followed by a newer event is stale: only the newest is prefilled */
            pthread_mutex_lock(&sh->mu);
            bool stale = sh->head != NULL;
            pthread_mutex_unlock(&sh->mu);
            if (partial_prefill && !stale) {
                lm_status ps = lm_session_prefill_partial(sh->session, with_user(c, e->text),
                                                          c->n + 1, cp);
                if (ps != LM_OK && ps != LM_ERR_CANCELLED)
                    fprintf(stderr, "locallm: warning: prefill of the partial utterance failed: %s\n",
                            lm_session_errmsg(sh->session));
            }
        } else {
            turn *t = tmpl;
            lm_sentences *ch = t->ch;
            const char *tts = t->tts, *out_dir = t->out_dir;
            bool print = t->print;
            memset(t, 0, sizeof *t);
            t->sh = sh;
            t->ch = ch;
            t->tts = tts;
            t->player = pl;
            t->print = print;
            t->out_dir = out_dir;
            t->turn_no = ++turn_no;
            /* end of speech: when the final transcript arrived, even if a partial's prefill was
               still running then */
            t->t_end = e->t_ms;
            ok = one_turn(t, sh, pl, c, e->text, cp, gp, json);
            lm_buf_free(&t->reply);
            lm_buf_free(&t->spoken);
        }
        free(e->text);
        free(e);
        set_idle(sh);
        if (!ok) return false;
    }
}

/* The folder the WAV files go to: --out-dir (made if missing), else a new temporary one
 * ($TMPDIR, else /tmp) written into tmp_dir (cap bytes; *made_tmp set). */
static bool wav_folder(const voice_opts *o, char *tmp_dir, size_t cap, bool *made_tmp,
                       const char **out_dir) {
    *made_tmp = false;
    if (o->out_dir) {
        if (mkdir(o->out_dir, 0777) != 0 && errno != EEXIST) {
            cli_error("cannot make the folder '%s': %s", o->out_dir, strerror(errno));
            return false;
        }
        *out_dir = o->out_dir;
        return true;
    }
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    if ((size_t)snprintf(tmp_dir, cap, "%s/locallm-voice-XXXXXX", base) >= cap) {
        cli_error("$TMPDIR is too long: %s", base);
        return false;
    }
    if (!mkdtemp(tmp_dir)) {
        cli_error("cannot make a temporary folder: %s", strerror(errno));
        return false;
    }
    *made_tmp = true;
    *out_dir = tmp_dir;
    return true;
}

/* The model, an engine on it and the session of the conversation, warmed up; false after a
 * printed error (what was made is left in the out-parameters to free). */
static bool open_model(voice_opts *o, char **default_path, lm_model **model, lm_engine **engine,
                       lm_session **session) {
    if (!o->model_path && !(o->model_path = *default_path = cli_default_chat_model())) {
        cli_error("out of memory");
        return false;
    }
    cli_load_opts lo = {.n_threads = o->n_threads, .n_ctx = o->n_ctx, .chat_template = o->tpl};
    if (!cli_load(o->model_path, &lo, model, NULL)) return false;
    if (!cli_engine_new(*model, engine)) return false;
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = o->n_ctx;
    lm_error err = {0};
    if (lm_session_new(*engine, &sp, session, &err) != LM_OK) {
        cli_error("cannot create a session: %s", err.msg[0] ? err.msg : "unknown error");
        return false;
    }
    lm_engine_warmup(*engine, &err); /* best effort: a cold first turn only costs latency */
    return true;
}

/* The events the loop left and the queue's lock (only once the reader is done with them). */
static void shared_free(shared *sh) {
    for (event *e = sh->head, *nx; e; e = nx) {
        nx = e->next;
        if (e == &oom_event) continue;
        free(e->text);
        free(e);
    }
    pthread_mutex_destroy(&sh->mu);
    pthread_cond_destroy(&sh->cv);
}

/* The transcripts: stdin for "-", else the file opened. *paced when it is a regular file (see
 * shared.paced). NULL after a printed error. */
static FILE *open_transcripts(const char *name, bool *paced) {
    FILE *in = stdin;
    if (strcmp(name, "-") != 0) {
        in = fopen(name, "r");
        if (!in) {
            cli_error("cannot open '%s': %s", name, strerror(errno));
            return NULL;
        }
    }
    struct stat st;
    *paced = fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode);
    return in;
}

int cli_voice(int argc, char **argv) {
    voice_opts o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    const char *tts = NULL, *prog = NULL;
    if ((rc = speech_setup(&o, &tts, &prog)) != CLI_EXIT_OK) return rc;
    bool paced;
    FILE *in = open_transcripts(o.transcripts, &paced);
    if (!in) return CLI_EXIT_ERROR;

    rc = CLI_EXIT_ERROR;
    char tmp_dir[4096] = "";
    bool made_tmp = false;
    const char *out_dir = NULL;
    char *default_path = NULL;
    lm_model *model = NULL;
    lm_engine *engine = NULL;
    lm_session *session = NULL;
    lm_sentences *chunker = NULL;
    static player pl; /* static like sh: a reader left running on an error may still stop it */
    bool playing = false;
    cli_convo c = {0};
    /* static: on an error the reader thread is left blocked in its read, still using it */
    static shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    bool reader_started = false;
    pthread_t th;

    if (tts && !wav_folder(&o, tmp_dir, sizeof tmp_dir, &made_tmp, &out_dir)) goto done;
    /* played WAVs in a folder of ours are deleted; without a player they are what is left */
    if (made_tmp && !prog) fprintf(stderr, "locallm voice: WAV files in %s\n", out_dir);
    if (prog && !(playing = player_start(&pl, prog, made_tmp))) {
        cli_error("cannot start the audio player thread");
        goto done;
    }
    if (!open_model(&o, &default_path, &model, &engine, &session)) goto done;
    if ((o.system && !cli_convo_add(&c, "system", o.system)) || !cli_convo_reserve(&c)) goto nomem;

    lm_gen_params gp = lm_gen_default_params();
    gp.max_tokens = o.max_tokens == 0 ? -1 : o.max_tokens;
    gp.temperature = 0.0f;
    lm_chat_params cp = lm_chat_default_params();
    lm_sentences_params chp = lm_sentences_default_params();
    chp.first_chunk_min_chars = (size_t)o.first_chunk;
    chp.max_chunk_chars = (size_t)o.max_chunk;
    turn t; /* the chunker's callback gets it; filled per turn */
    memset(&t, 0, sizeof t);
    lm_sentences_new(&chp, on_sentence, &t, &chunker, NULL);
    if (!chunker) goto nomem;
    t.ch = chunker;
    t.tts = tts;
    t.out_dir = out_dir;
    t.print = !o.quiet;

    sh.session = session;
    sh.player = playing ? &pl : NULL;
    sh.in = in;
    sh.in_name = strcmp(o.transcripts, "-") == 0 ? "stdin" : o.transcripts;
    sh.paced = paced;
    sh.t0 = cli_now_ms();
    if (pthread_create(&th, NULL, reader, &sh) != 0) {
        cli_error("cannot start the transcript reader");
        goto done;
    }
    reader_started = true;
    bool ok = voice_loop(&sh, sh.player, &t, &c, &cp, &gp, o.partial_prefill, o.json);
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
    if (rc == CLI_EXIT_OK || !reader_started) shared_free(&sh);
    if (playing && (rc == CLI_EXIT_OK || !reader_started)) player_end(&pl);
    else if (playing) player_stop(&pl);
    if (made_tmp && prog) rmdir(tmp_dir); /* empty once every clip was played or dropped */
    cli_convo_free(&c);
    lm_sentences_free(chunker);
    lm_session_free(session);
    lm_engine_free(engine);
    lm_model_free(model);
    free(default_path);
    if (in != stdin && (rc == CLI_EXIT_OK || !reader_started)) fclose(in);
    return rc;
}
