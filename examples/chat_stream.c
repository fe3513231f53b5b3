/* examples/chat_stream.c: a streamed two-turn chat with the locallm library.
 *
 *   cc chat_stream.c $(pkg-config --cflags --libs locallm) -o chat_stream
 *   ./chat_stream MODEL [STOP_AFTER]
 *
 * MODEL is a chat model: a .gguf file or a model folder (models/tinychat in the repository).
 * Turn 1 streams a whole answer. Turn 2 is stopped from the streaming callback after STOP_AFTER
 * pieces (default 3), as a "stop" button or a user who starts talking would; Ctrl-C stops any
 * turn through lm_session_cancel(). After each turn the metrics: prompt tokens and how many the
 * KV cache reused from turn 1, time to first token, decode speed, and why it finished. */
#include <locallm.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lm_session *volatile g_session; /* what Ctrl-C cancels */

static void on_sigint(int sig) {
    (void)sig;
    if (g_session) lm_session_cancel(g_session); /* only sets a flag: fine in a signal handler */
}

typedef struct reply {
    char text[4096]; /* the answer so far, kept for the conversation */
    size_t len;
    int pieces, stop_after; /* stop_after 0: never */
} reply;

/* Called with each piece of the answer as it is generated (whole UTF-8 characters). */
static int on_piece(const char *piece, size_t len, void *user) {
    reply *r = user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    if (r->len + len < sizeof r->text) {
        memcpy(r->text + r->len, piece, len);
        r->len += len;
        r->text[r->len] = '\0';
    }
    r->pieces++;
    return r->stop_after > 0 && r->pieces >= r->stop_after; /* non-zero: stop now */
}

static void print_metrics(int turn, const lm_gen_stats *gs) {
    printf("\n[turn %d] prompt %d tokens (%d cached), first token %.1f ms, %d tokens at %.1f tok/s, "
           "finish: %s\n",
           turn, (int)gs->n_prompt, (int)gs->n_cached, gs->ttft_ms, (int)gs->n_generated,
           gs->decode_tok_s, lm_finish_str(gs->finish));
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [STOP_AFTER]\n", argv[0]);
        return 2;
    }
    int stop_after = argc > 2 ? atoi(argv[2]) : 3;

    lm_model_params mp = lm_model_default_params();
    lm_model *model = NULL;
    lm_error err = {0};
    if (lm_model_load(argv[1], &mp, &model, &err) != LM_OK) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], err.msg);
        return 1;
    }
    /* an engine runs the model (its threads, its scratch); a session is one conversation on it */
    lm_engine *engine = NULL;
    lm_session_params sp = lm_session_default_params();
    lm_session *session = NULL;
    if (lm_engine_new(model, NULL, &engine, &err) != LM_OK || lm_session_new(engine, &sp, &session, &err) != LM_OK) {
        fprintf(stderr, "cannot create a session: %s\n", err.msg);
        lm_engine_free(engine);
        lm_model_free(model);
        return 1;
    }
    g_session = session;
    signal(SIGINT, on_sigint);

    /* the whole conversation is sent each turn, as an OpenAI client does; the session reuses the
       KV cache of the part it has seen */
    reply r1 = {.stop_after = 0}, r2 = {.stop_after = stop_after};
    lm_message msgs[3] = {
        {.role = "user", .content = "Hi"},
        {.role = "assistant", .content = r1.text},
        {.role = "user", .content = "What is the capital of France?"},
    };
    lm_chat_params cp = lm_chat_default_params();
    lm_gen_params gp = lm_gen_default_params();
    gp.max_tokens = 256;
    gp.temperature = 0; /* greedy: the same answer every run */
    lm_gen_stats gs;
    int rc = 0;

    if (lm_session_chat(session, msgs, 1, &cp, &gp, on_piece, &r1, &gs) != LM_OK) {
        fprintf(stderr, "turn 1 failed: %s\n", lm_session_errmsg(session));
        rc = 1;
    } else {
        print_metrics(1, &gs);
        /* a stop asked for by the callback (or Ctrl-C) returns LM_ERR_CANCELLED, finish "cancelled":
           the text delivered so far stays in the conversation */
        lm_status st = lm_session_chat(session, msgs, 3, &cp, &gp, on_piece, &r2, &gs);
        if (st != LM_OK && st != LM_ERR_CANCELLED) {
            fprintf(stderr, "turn 2 failed: %s\n", lm_session_errmsg(session));
            rc = 1;
        } else {
            print_metrics(2, &gs);
        }
    }
    g_session = NULL;
    lm_session_free(session);
    lm_engine_free(engine);
    lm_model_free(model);
    return rc;
}
