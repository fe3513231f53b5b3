/* session/engine.c: lm_engine, a compute context on the model's backend and the scheduler that
 * runs the forward passes of every session made on it.
 * Owns: the scheduler thread and its policy (which tokens of which sessions go into each pass),
 * sampling the next token of each generating session, and handing tokens to the sessions'
 * threads. Does not own: the passes themselves (model/forward.c), detokenizing, stop strings and
 * callbacks (session.c, on each session's own thread, so a slow callback never holds a pass).
 *
 * Policy of a pass (continuous batching with chunked prefill):
 *  - every generating session with a token to evaluate gets its one token (decode), unless it is
 *    REQ_QUEUE tokens ahead of its thread;
 *  - then prompts, oldest request first, get what is left of max_batch tokens: each at most its
 *    n_batch, and while any session is generating at most a chunk that keeps such a pass near
 *    PASS_TARGET_MS (adapted to the measured pass times, at most prefill_chunk), so a long prompt
 *    is spread over passes and never stalls the streams of the others;
 *  - a request that wants the logits of every prompt token runs alone in its passes;
 *  - at most max_seqs sessions per pass, and max_logits rows of logits.
 * A new request joins at the next pass; a finished or cancelled one leaves at once. */
#include "session/session.h"

#include <math.h>
#include <stdio.h>

lm_engine_params lm_engine_default_params(void) {
    lm_engine_params p;
    memset(&p, 0, sizeof p);
    return p;
}

const lm_model *lm_engine_model(const lm_engine *e) { return e ? e->model : NULL; }

void lm_engine_get_stats(const lm_engine *e, lm_engine_stats *out) {
    memset(out, 0, sizeof *out);
    if (!e) return;
    pthread_mutex_lock((pthread_mutex_t *)&e->mu);
    *out = e->stats;
    pthread_mutex_unlock((pthread_mutex_t *)&e->mu);
}

/* ---- the pass ---- */

/* How a session's request takes part in a pass. */
enum { PART_NONE, PART_DECODE, PART_PROMPT };

static bool wants_all_logits(const seq_req *r) { return r->kind == REQ_EVAL && r->all_logits; }

/* Ends the request with status and message (under mu). */
static void req_end(seq_req *r, lm_status st, lm_finish finish, const char *msg) {
    r->done = true;
    r->status = st;
    if (finish != LM_FINISH_NONE || r->finish == LM_FINISH_NONE) r->finish = finish;
    if (msg) snprintf(r->errmsg, sizeof r->errmsg, "%s", msg);
}

/* Settles requests that end without a pass: cancelled, asked to stop with nothing left to
 * evaluate. Under mu. */
static void settle(lm_engine *e) {
    for (lm_session *s = e->head; s; s = s->next) {
        seq_req *r = s->req;
        if (r->done) continue;
        if (atomic_load(&s->cancel) || (s->ext_cancel && atomic_load(s->ext_cancel))) {
            char msg[128];
            if (r->kind == REQ_EVAL || r->n_done < r->n_ids) {
                snprintf(msg, sizeof msg, "cancelled after %zu of %zu prompt tokens", r->n_done, r->n_ids);
                req_end(r, LM_ERR_CANCELLED, LM_FINISH_CANCELLED, msg);
            } else {
                req_end(r, LM_OK, LM_FINISH_CANCELLED, NULL);
            }
            pthread_cond_broadcast(&s->cv);
            continue;
        }
        if (r->stop && (r->n_gen_evaluated >= r->keep || r->pending < 0)) {
            req_end(r, LM_OK, LM_FINISH_NONE, NULL);
            pthread_cond_broadcast(&s->cv);
        }
    }
}

/* The part a request can take in the next pass. */
static int part_of(const lm_session *s) {
    const seq_req *r = s->req;
    if (r->done) return PART_NONE;
    if (r->n_done < r->n_ids) return PART_PROMPT;
    if (r->kind == REQ_GEN && r->pending >= 0 && (r->out_n < REQ_QUEUE || r->stop)) return PART_DECODE;
    return PART_NONE;
}

/* Fills the pass from the waiting requests (under mu); returns its number of sequences. */
static size_t build_pass(lm_engine *e, cm_batch *b) {
    size_t n_tok = 0, n_seq = 0, n_logits = 0, max_batch = (size_t)e->p.max_batch;
    size_t max_seqs = (size_t)e->p.max_seqs;
    /* a request for every prompt row's logits runs alone */
    for (lm_session *s = e->head; s; s = s->next) {
        seq_req *r = s->req;
        if (part_of(s) != PART_PROMPT || !wants_all_logits(r)) continue;
        size_t n = LM_MIN(r->n_ids - r->n_done, LM_MIN(max_batch, s->n_batch));
        memcpy(e->ids, r->ids + r->n_done, n * sizeof *e->ids);
        e->seqs[0] = (cm_seq){.kv = s->kv, .t0 = 0, .n = n, .pos0 = s->tokens.n, .n_logits = n,
                              .logits = r->all_logits + r->n_done * (size_t)e->model->hp.n_vocab};
        e->seq_sess[0] = s;
        e->seq_final[0] = false;
        b->n_tok = n;
        b->n_seq = 1;
        b->n_logits = n;
        return 1;
    }
    bool decoding = false;
    for (lm_session *s = e->head; s && n_seq < max_seqs && n_tok < max_batch; s = s->next) {
        if (part_of(s) != PART_DECODE) continue;
        seq_req *r = s->req;
        bool final = r->stop; /* its last kept token: evaluated, then it ends */
        if (!final && n_logits == e->max_logits) continue;
        decoding = decoding || !final;
        e->ids[n_tok] = r->pending;
        e->seqs[n_seq] = (cm_seq){.kv = s->kv, .t0 = n_tok, .n = 1, .pos0 = s->tokens.n,
                                  .n_logits = final ? 0 : 1, .logits = s->logits};
        e->seq_sess[n_seq] = s;
        e->seq_final[n_seq] = final;
        n_logits += final ? 0 : 1;
        n_tok++;
        n_seq++;
    }
    /* beside generating sessions a prompt goes in chunks sized so that a pass stays near
       PASS_TARGET_MS (see adapt_chunk), never more than prefill_chunk */
    size_t chunk = decoding ? (size_t)e->chunk : max_batch;
    e->mixed = false;
    for (lm_session *s = e->head; s && n_seq < max_seqs && n_tok < max_batch; s = s->next) {
        if (part_of(s) != PART_PROMPT || wants_all_logits(s->req)) continue;
        seq_req *r = s->req;
        size_t n = LM_MIN(r->n_ids - r->n_done, LM_MIN(LM_MIN(chunk, s->n_batch), max_batch - n_tok));
        bool last = r->n_done + n == r->n_ids;
        if (last && n_logits == e->max_logits) {
            if (n < 2) continue;
            n--; /* all but the last token now; its logits row comes in a later pass */
            last = false;
        }
        memcpy(e->ids + n_tok, r->ids + r->n_done, n * sizeof *e->ids);
        e->seqs[n_seq] = (cm_seq){.kv = s->kv, .t0 = n_tok, .n = n, .pos0 = s->tokens.n,
                                  .n_logits = last ? 1 : 0, .logits = s->logits};
        e->mixed = e->mixed || (decoding && n > 1);
        e->seq_sess[n_seq] = s;
        e->seq_final[n_seq] = false;
        n_logits += last ? 1 : 0;
        n_tok += n;
        n_seq++;
    }
    b->n_tok = n_tok;
    b->n_seq = n_seq;
    b->n_logits = n_logits;
    return n_seq;
}

/* The log-probability of id and the n most likely tokens under the raw logits x (log-softmax). */
static void log_probs(const float *x, size_t V, lm_token id, int32_t n, req_tok *t) {
    float mx = x[0];
    for (size_t i = 1; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (size_t i = 0; i < V; i++) sum += exp((double)x[i] - mx);
    float lse = mx + (float)log(sum);
    t->logprob = x[id] - lse;
    /* the n best by insertion into a short sorted list */
    int32_t k = 0;
    for (size_t i = 0; i < V && n > 0; i++) {
        float v = x[i];
        if (k == n && v <= x[t->top_ids[k - 1]]) continue;
        int32_t j = k < n ? k++ : n - 1;
        while (j > 0 && x[t->top_ids[j - 1]] < v) {
            t->top_ids[j] = t->top_ids[j - 1];
            j--;
        }
        t->top_ids[j] = (lm_token)i;
    }
    t->n_top = k;
    for (int32_t j = 0; j < k; j++) t->top_lp[j] = x[t->top_ids[j]] - lse;
}

/* Samples the next token of a generating request from the logits of its last evaluated token,
 * or ends it (under mu). */
static void gen_next(lm_engine *e, lm_session *s) {
    seq_req *r = s->req;
    const lm_model *m = e->model;
    if (r->stop) {
        req_end(r, LM_OK, LM_FINISH_NONE, NULL);
        return;
    }
    if (r->n_sampled >= r->max_new) {
        req_end(r, LM_OK, LM_FINISH_LENGTH, NULL);
        return;
    }
    if (s->tokens.n >= s->n_ctx) {
        req_end(r, LM_OK, LM_FINISH_LENGTH, NULL);
        return;
    }
    size_t V = (size_t)m->hp.n_vocab;
    if (r->raw) memcpy(r->raw, s->logits, V * sizeof(float));
    lm_token id = smp_sample(r->smp, s->logits, s->tokens.ids, s->tokens.n);
    s->logits_valid = false; /* the sampler works on them in place */
    if (id < 0) { /* the grammar allows nothing more (complete, no end token), or out of memory */
        if (r->smp->status) req_end(r, r->smp->status, LM_FINISH_ERROR, "out of memory in the grammar sampler");
        else req_end(r, LM_OK, LM_FINISH_STOP, NULL);
        return;
    }
    if (!r->ignore_eos && lm_model_is_eog(m, id)) {
        r->stop_token = id;
        req_end(r, LM_OK, LM_FINISH_STOP, NULL);
        return;
    }
    req_tok *t = &r->out[(r->out_head + r->out_n) % REQ_QUEUE];
    t->id = id;
    t->n_top = 0;
    if (r->raw) log_probs(r->raw, V, id, r->top_logprobs, t);
    r->out_n++;
    r->n_sampled++;
    if (r->n_sampled >= r->max_new) {
        req_end(r, LM_OK, LM_FINISH_LENGTH, NULL);
        return;
    }
    r->pending = id;
}

/* After a pass (under mu): the caches hold the pass's tokens; prompts advance, prompts that
 * completed and decoded tokens give logits to sample from, and finished requests end. */
static void after_pass(lm_engine *e, const cm_batch *b) {
    size_t V = (size_t)e->model->hp.n_vocab;
    for (size_t i = 0; i < b->n_seq; i++) {
        lm_session *s = e->seq_sess[i];
        seq_req *r = s->req;
        const cm_seq *q = &b->seqs[i];
        /* the tokens' capacity was reserved for n_ctx when the session was made */
        tok_vec_append(&s->tokens, e->ids + q->t0, q->n);
        if (r->n_done < r->n_ids) {
            r->n_done += q->n;
            if (r->n_done < r->n_ids) continue;
            r->t_first_logits = lm_time_ms();
            if (r->kind == REQ_EVAL) {
                if (r->all_logits) memcpy(s->logits, r->all_logits + (r->n_ids - 1) * V, V * sizeof(float));
                s->logits_valid = true;
                req_end(r, LM_OK, LM_FINISH_NONE, NULL);
            } else {
                s->logits_valid = true;
                gen_next(e, s);
            }
        } else {
            r->pending = -1;
            r->n_gen_evaluated++;
            if (e->seq_final[i]) req_end(r, LM_OK, LM_FINISH_NONE, NULL);
            else gen_next(e, s);
        }
        pthread_cond_broadcast(&s->cv);
    }
}

static bool has_work(lm_engine *e) {
    for (lm_session *s = e->head; s; s = s->next)
        if (part_of(s) != PART_NONE) return true;
    return false;
}

/* Runs one pass of whatever waits, if any (under mu; mu is let go during the pass). The batch
 * buffers are the engine's: `running` says who is using them. */
/* A pass that held both generating sessions and a prompt's chunk: the next chunk is scaled so
 * that such a pass takes about PASS_TARGET_MS (a token of the generating sessions then never
 * waits much longer than that: attention over a long prompt's growing context makes later chunks
 * dearer, and the chunk follows). */
#define PASS_TARGET_MS 120.0

static void adapt_chunk(lm_engine *e, double ms) {
    if (!e->mixed || ms <= 0) return;
    double c = e->chunk * PASS_TARGET_MS / ms;
    c = c < 8 ? 8 : c > e->p.prefill_chunk ? e->p.prefill_chunk : c;
    e->chunk = 0.5 * e->chunk + 0.5 * c; /* smoothed: one slow pass (preemption) does not halve it */
}

static bool one_pass(lm_engine *e) {
    cm_batch b;
    memset(&b, 0, sizeof b);
    b.ids = e->ids;
    b.seqs = e->seqs;
    if (!build_pass(e, &b)) return false;
    e->running = true;
    e->stats.n_passes++;
    e->stats.n_tokens += b.n_tok;
    if (b.n_seq > 1) e->stats.n_shared++;
    if ((int32_t)b.n_seq > e->stats.max_seqs_in_pass) e->stats.max_seqs_in_pass = (int32_t)b.n_seq;
    pthread_mutex_unlock(&e->mu);
    double t0 = lm_time_ms();
    lm_forward(e->model, e->ctx, &b);
    double ms = lm_time_ms() - t0;
    pthread_mutex_lock(&e->mu);
    adapt_chunk(e, ms);
    after_pass(e, &b);
    e->running = false;
    return true;
}

static void *scheduler_main(void *arg) {
    lm_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        settle(e);
        if (e->stopping) break;
        if (e->running || !has_work(e) || !one_pass(e)) pthread_cond_wait(&e->work, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* A session waiting for its evaluation runs the passes itself while the scheduler is not using
 * the engine: a lone caller's prompt and token-by-token evaluations then cost no hand-over
 * between threads. Passes it runs serve everyone waiting. Under mu. */
static void drive_until_done(lm_engine *e, lm_session *s) {
    while (!s->req->done) {
        settle(e);
        if (s->req->done) break;
        if (e->running || !one_pass(e)) pthread_cond_wait(&s->cv, &e->mu);
    }
    pthread_cond_signal(&e->work); /* others may have work left: the scheduler takes over */
}

/* ---- the sessions' side ---- */

void engine_submit(lm_engine *e, lm_session *s) {
    pthread_mutex_lock(&e->mu);
    seq_req *r = s->req;
    if (r->kind == REQ_GEN && r->n_ids == 0) {
        /* continues from the logits the session holds: its first token needs no pass */
        r->t_first_logits = lm_time_ms();
        gen_next(e, s);
    }
    s->next = NULL;
    if (e->tail) e->tail->next = s;
    else e->head = s;
    e->tail = s;
    /* an evaluation is driven by its own thread (engine_finish) when the engine is free; a
       generation is the scheduler's, so the caller's callbacks never hold a pass */
    if (r->kind == REQ_GEN) pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
}

size_t engine_wait_tokens(lm_engine *e, lm_session *s, req_tok *out, size_t cap, bool *done) {
    seq_req *r = s->req;
    pthread_mutex_lock(&e->mu);
    while (!r->done && r->out_n == 0) pthread_cond_wait(&s->cv, &e->mu);
    size_t n = LM_MIN(cap, r->out_n);
    bool was_full = r->out_n == REQ_QUEUE;
    for (size_t i = 0; i < n; i++) out[i] = r->out[(r->out_head + i) % REQ_QUEUE];
    r->out_head = (r->out_head + n) % REQ_QUEUE;
    r->out_n -= n;
    *done = r->done && r->out_n == 0;
    if (was_full && n) pthread_cond_signal(&e->work); /* it may run ahead again */
    pthread_mutex_unlock(&e->mu);
    return n;
}

void engine_stop(lm_engine *e, lm_session *s, size_t keep) {
    pthread_mutex_lock(&e->mu);
    seq_req *r = s->req;
    if (!r->done) {
        r->stop = true;
        r->keep = keep;
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->mu);
}

void engine_finish(lm_engine *e, lm_session *s) {
    pthread_mutex_lock(&e->mu);
    if (s->req->kind == REQ_EVAL) drive_until_done(e, s);
    while (!s->req->done) pthread_cond_wait(&s->cv, &e->mu);
    lm_session **pp = &e->head, *prev = NULL;
    while (*pp && *pp != s) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = s->next;
        if (e->tail == s) e->tail = prev;
    }
    s->next = NULL;
    s->req = NULL;
    pthread_mutex_unlock(&e->mu);
}

/* ---- lifetime ---- */

static void engine_destroy(lm_engine *e) {
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        pthread_cond_signal(&e->work);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    if (e->ctx) e->model->be->ops->ctx_free(e->ctx);
    lm_free(e->ids);
    lm_free(e->seqs);
    lm_free(e->seq_sess);
    lm_free(e->seq_final);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work);
    lm_model_release(e->model);
    lm_free(e);
}

void engine_retain(lm_engine *e) { atomic_fetch_add(&e->refs, 1); }

void engine_release(lm_engine *e) {
    if (e && atomic_fetch_sub(&e->refs, 1) == 1) engine_destroy(e);
}

void lm_engine_free(lm_engine *e) { engine_release(e); }

lm_status lm_engine_new(const lm_model *m, const lm_engine_params *pp, lm_engine **out, lm_error *err) {
    lm_error_clear(err);
    if (!out) return lm_fail(err, LM_ERR_MISUSE, "lm_engine_new: out is NULL");
    *out = NULL;
    if (!m || m->magic != LM_MODEL_MAGIC) return lm_fail(err, LM_ERR_MISUSE, "lm_engine_new: the model is NULL or freed");
    if (!m->be || !m->net.layers)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: loaded with vocab_only: it tokenizes and renders templates, but has no weights to run", m->path);
    lm_engine_params p = pp ? *pp : lm_engine_default_params();
    if (p.n_threads < 0 || p.max_batch < 0 || p.max_seqs < 0 || p.prefill_chunk < 0)
        return lm_fail(err, LM_ERR_MISUSE, "lm_engine_new: n_threads, max_batch, max_seqs and prefill_chunk must not be negative");
    if (p.n_threads == 0) p.n_threads = m->n_threads;
    if (p.max_batch == 0) p.max_batch = 512;
    if (p.max_seqs == 0) p.max_seqs = 16;
    if (p.prefill_chunk == 0) p.prefill_chunk = 128;
    if (p.max_seqs > p.max_batch) p.max_seqs = p.max_batch;
    lm_engine *e = lm_calloc(1, sizeof *e);
    if (!e) return lm_fail_nomem(err, "engine");
    atomic_init(&e->refs, 1);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    lm_model_retain(m);
    e->model = m;
    e->p = p;
    e->max_logits = (size_t)p.max_seqs;
    e->chunk = p.prefill_chunk < 32 ? p.prefill_chunk : 32; /* grows to what the pass times allow */
    size_t T = (size_t)p.max_batch, S = (size_t)p.max_seqs;
    e->ids = lm_malloc(T * sizeof *e->ids);
    e->seqs = lm_calloc(S, sizeof *e->seqs);
    e->seq_sess = lm_calloc(S, sizeof *e->seq_sess);
    e->seq_final = lm_calloc(S, sizeof *e->seq_final);
    if (!e->ids || !e->seqs || !e->seq_sess || !e->seq_final) {
        engine_destroy(e);
        return lm_fail_nomem(err, "engine");
    }
    cm_ctx_params cp = {.n_threads = p.n_threads, .max_tokens = T, .max_seqs = S, .max_logits = e->max_logits};
    lm_status st = m->be->ops->ctx_new(m->be, &m->net, &cp, &e->ctx, err);
    if (st) {
        engine_destroy(e);
        return st;
    }
    if (pthread_create(&e->thread, NULL, scheduler_main, e) != 0) {
        engine_destroy(e);
        return lm_fail(err, LM_ERR_NOMEM, "cannot start the engine's scheduler thread");
    }
    e->thread_started = true;
    *out = e;
    return LM_OK;
}
