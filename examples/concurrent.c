/* examples/concurrent.c: several conversations at once on one model, through the public API only.
 *
 *   cc concurrent.c $(pkg-config --cflags --libs locallm) -o concurrent
 *   ./concurrent models/tinychat
 *
 * One model, one engine (its thread pool and scheduler), and a session per conversation, each
 * driven from its own thread: the engine merges their work into shared forward passes (the next
 * token of every conversation that is generating is computed in one pass that reads the weights
 * once). Each conversation has two turns; the second reuses the first's KV cache. A fourth
 * conversation is cancelled from the main thread while it runs. Prints the replies and what the
 * engine did; exits non-zero if anything went wrong. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <locallm.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct convo {
    lm_session *s;
    const char *q1, *q2;
    char reply[2][256];
    size_t len;
    int turn;
    lm_gen_stats stats[2];
    lm_status st;
    int turns;      /* turns that ran to their end (or were cancelled after some text) */
    bool endless;   /* ignores end-of-generation: runs until cancelled */
    atomic_int pieces;
} convo;

static int on_piece(const char *utf8, size_t n, void *user) {
    convo *c = user;
    size_t room = sizeof c->reply[0] - 1 - c->len;
    if (n > room) n = room;
    memcpy(c->reply[c->turn] + c->len, utf8, n);
    c->len += n;
    c->reply[c->turn][c->len] = 0;
    atomic_fetch_add(&c->pieces, 1);
    return 0; /* non-zero would stop the generation */
}

static void *run(void *arg) {
    convo *c = arg;
    lm_gen_params gp = lm_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = c->endless ? 1500 : 48;
    gp.ignore_eos = c->endless;
    lm_message msgs[3] = {{.role = "user", .content = c->q1}, {.role = "assistant"}, {.role = "user", .content = c->q2}};
    for (c->turn = 0; c->turn < 2; c->turn++) {
        c->len = 0;
        msgs[1].content = c->reply[0];
        size_t n = c->turn == 0 ? 1 : 3;
        c->st = lm_session_chat(c->s, msgs, n, NULL, &gp, on_piece, c, &c->stats[c->turn]);
        if (c->st == LM_ERR_CANCELLED) c->turns++; /* stopped: what it said counts, no second turn */
        if (c->st != LM_OK) return NULL;
        c->turns++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/tinychat";
    lm_error err;
    lm_model *model = NULL;
    lm_engine *engine = NULL;
    if (lm_model_load(path, NULL, &model, &err) != LM_OK || lm_engine_new(model, NULL, &engine, &err) != LM_OK) {
        fprintf(stderr, "concurrent: %s\n", err.msg);
        lm_model_free(model);
        return 1;
    }
    convo cs[4] = {
        {.q1 = "What is the capital of France?", .q2 = "And what colour is the sky?"},
        {.q1 = "Hello!", .q2 = "What is 2 plus 2?"},
        {.q1 = "What colour is the sky?", .q2 = "What is the capital of France?"},
        {.q1 = "Tell me a story.", .q2 = "Tell me another one.", .endless = true},
    };
    pthread_t th[4];
    int rc = 0;
    for (int i = 0; i < 4; i++) {
        if (lm_session_new(engine, NULL, &cs[i].s, &err) != LM_OK) {
            fprintf(stderr, "concurrent: %s\n", err.msg);
            return 1;
        }
    }
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, run, &cs[i]);
    /* the fourth conversation is cancelled from here once it has said something: its call returns
       with what it had (finish "cancelled"), the others are not disturbed */
    while (atomic_load(&cs[3].pieces) < 8) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    lm_session_cancel(cs[3].s);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        convo *c = &cs[i];
        if (c->st != LM_OK && c->st != LM_ERR_CANCELLED) {
            fprintf(stderr, "concurrent: conversation %d: %s\n", i, lm_session_errmsg(c->s));
            rc = 1;
            continue;
        }
        for (int t = 0; t < c->turns; t++)
            printf("[%d.%d] %s -> %s  (%d tokens, %d cached, finish %s)\n", i, t + 1, t ? c->q2 : c->q1, c->reply[t],
                   c->stats[t].n_generated, c->stats[t].n_cached, lm_finish_str(c->stats[t].finish));
    }
    /* the first three ran to their end; their second turns reused the first turn's cache */
    for (int i = 0; i < 3; i++)
        if (cs[i].st != LM_OK || cs[i].turns != 2 || cs[i].stats[1].n_cached == 0) rc = 1;
    /* the fourth stopped early, cancelled */
    if (cs[3].turns != 1 || cs[3].stats[0].finish != LM_FINISH_CANCELLED || cs[3].stats[0].n_generated >= 1500) rc = 1;
    lm_engine_stats es;
    lm_engine_get_stats(engine, &es);
    printf("engine: %llu passes, %llu shared by several conversations, up to %d in one\n",
           (unsigned long long)es.n_passes, (unsigned long long)es.n_shared, es.max_seqs_in_pass);
    if (es.n_shared == 0) rc = 1;
    for (int i = 0; i < 4; i++) lm_session_free(cs[i].s);
    lm_engine_free(engine);
    lm_model_free(model);
    return rc;
}
