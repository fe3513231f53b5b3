/* session/session.c: an lm_session, one conversation's tokens and KV cache on an engine, and the
 * session's side of generation: the engine's scheduler evaluates and samples; this thread turns
 * the sampled tokens into UTF-8-safe pieces through the stop-string matcher, calls the caller's
 * callback, asks the scheduler to stop, keeps the context exact and measures. Also the engine's
 * warm-up, which is a throw-away session on it. */
#include "session/session.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

lm_session_params lm_session_default_params(void) {
    lm_session_params p;
    memset(&p, 0, sizeof p);
    return p;
}

lm_status session_fail(lm_session *s, lm_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lm_error e;
    lm_failv(&e, code, fmt, ap);
    va_end(ap);
    memcpy(s->errmsg, e.msg, sizeof s->errmsg);
    return code;
}

const char *lm_session_errmsg(const lm_session *s) { return s ? s->errmsg : "session is NULL"; }

lm_status lm_session_new(lm_engine *e, const lm_session_params *p, lm_session **out, lm_error *err) {
    lm_error_clear(err);
    if (!out) return lm_fail(err, LM_ERR_MISUSE, "lm_session_new: out is NULL");
    *out = NULL;
    if (!e) return lm_fail(err, LM_ERR_MISUSE, "lm_session_new: the engine is NULL");
    const lm_model *m = e->model;
    lm_session_params sp = p ? *p : lm_session_default_params();
    if (sp.n_ctx < 0 || sp.n_batch < 0) return lm_fail(err, LM_ERR_MISUSE, "lm_session_new: n_ctx and n_batch must not be negative");
    size_t n_ctx = sp.n_ctx > 0 ? (size_t)sp.n_ctx : (size_t)LM_MIN(m->hp.n_ctx_train, 4096);
    if (n_ctx == 0) n_ctx = 4096;
    size_t n_batch = sp.n_batch > 0 ? (size_t)sp.n_batch : (size_t)e->p.max_batch;
    lm_session *s = lm_calloc(1, sizeof *s);
    if (!s) return lm_fail_nomem(err, "session");
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    atomic_init(&s->cancel, false);
    pthread_cond_init(&s->cv, NULL);
    s->logits = lm_malloc((size_t)m->hp.n_vocab * sizeof(float));
    lm_status st = s->logits ? LM_OK : lm_fail_nomem(err, "session logits");
    if (!st) {
        s->tokens.ids = lm_malloc(n_ctx * sizeof *s->tokens.ids);
        s->tokens.cap = n_ctx;
        if (!s->tokens.ids) st = lm_fail_nomem(err, "session tokens");
    }
    if (!st) st = m->be->ops->kv_new(e->ctx, n_ctx, sp.kv_f32 ? CM_F32 : CM_F16, &s->kv, err);
    if (st) {
        pthread_cond_destroy(&s->cv);
        lm_free(s->logits);
        lm_free(s->tokens.ids);
        lm_free(s);
        return st;
    }
    engine_retain(e);
    s->eng = e;
    *out = s;
    return LM_OK;
}

void lm_session_free(lm_session *s) {
    if (!s) return;
    lm_engine *e = s->eng;
    e->model->be->ops->kv_free(s->kv);
    tok_vec_free(&s->tokens);
    lm_free(s->logits);
    pthread_cond_destroy(&s->cv);
    lm_free(s);
    engine_release(e);
}

/* Only an atomic store, so a signal handler may call it: the scheduler looks at the flag before
 * every pass, and a request it is not running has nothing to stop. */
void lm_session_cancel(lm_session *s) {
    if (s) atomic_store(&s->cancel, true);
}

size_t lm_session_n_past(const lm_session *s) { return s ? s->tokens.n : 0; }
const lm_token *lm_session_tokens(const lm_session *s) { return s ? s->tokens.ids : NULL; }

void session_truncate(lm_session *s, size_t n) {
    if (n >= s->tokens.n) return;
    s->tokens.n = n;
    s->logits_valid = false;
    s->eng->model->be->ops->kv_truncate(s->kv, n);
}

lm_status lm_session_truncate(lm_session *s, size_t n) {
    lm_status st = session_check(s);
    if (st) return st;
    if (n > s->tokens.n) return session_fail(s, LM_ERR_MISUSE, "cannot truncate %zu tokens to %zu", s->tokens.n, n);
    session_truncate(s, n);
    return LM_OK;
}

lm_status session_check(lm_session *s) {
    if (!s) return LM_ERR_MISUSE;
    s->errmsg[0] = 0;
    return LM_OK;
}

lm_status session_begin(lm_session *s) {
    lm_status st = session_check(s);
    if (!st) atomic_store(&s->cancel, false);
    return st;
}

void session_stats_start(lm_gen_stats *stats) {
    if (!stats) return;
    memset(stats, 0, sizeof *stats);
    stats->stop_token = -1;
}

/* Checks that ids fit the context and the vocabulary. */
static lm_status check_ids(lm_session *s, const lm_token *ids, size_t n) {
    if (s->tokens.n + n > s->n_ctx)
        return session_fail(s, LM_ERR_CONTEXT, "%zu tokens do not fit the context: %zu already in it, window is %zu", n,
                            s->tokens.n, s->n_ctx);
    int32_t nv = s->eng->model->hp.n_vocab;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= nv)
            return session_fail(s, LM_ERR_MISUSE, "token id %d at index %zu is outside the vocabulary (0..%d)", ids[i], i,
                                nv - 1);
    return LM_OK;
}

lm_status session_prefill(lm_session *s, const lm_token *ids, size_t n, float *all_logits) {
    lm_status st = check_ids(s, ids, n);
    if (st || n == 0) return st;
    seq_req r;
    memset(&r, 0, sizeof r);
    r.kind = REQ_EVAL;
    r.ids = ids;
    r.n_ids = n;
    r.all_logits = all_logits;
    r.pending = -1;
    s->req = &r;
    engine_submit(s->eng, s);
    engine_finish(s->eng, s);
    if (r.status) return session_fail(s, r.status, "%s", r.errmsg);
    return LM_OK;
}

lm_status lm_session_eval(lm_session *s, const lm_token *ids, size_t n, float *logits, float *all_logits) {
    lm_status st = session_begin(s);
    if (st) return st;
    size_t V = (size_t)s->eng->model->hp.n_vocab;
    if (n == 0) {
        if (logits && s->logits_valid) memcpy(logits, s->logits, V * sizeof(float));
        return LM_OK;
    }
    if ((st = session_prefill(s, ids, n, all_logits))) return st;
    if (logits) memcpy(logits, s->logits, V * sizeof(float));
    return LM_OK;
}

const char *lm_finish_str(lm_finish f) {
    switch (f) {
    case LM_FINISH_STOP: return "stop";
    case LM_FINISH_LENGTH: return "length";
    case LM_FINISH_CANCELLED: return "cancelled";
    case LM_FINISH_ERROR: return "error";
    default: return "none";
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p-th percentile (0..100) of sorted xs by the nearest-rank rule, the same for every p, so
 * p95 is never below p50. */
static double nearest_rank(const double *xs, size_t n, double p) {
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    return xs[k ? k - 1 : 0];
}

/* The caller's side of one generation. */
typedef struct gen_side {
    lm_piece_fn fn;
    void *user;
    tok_stream *ts;
    smp_stop stop;
    lm_buf piece, text;
    double first_piece_ms;
    double *itl;
    size_t n_itl, cap_itl;
    double t_prev;
} gen_side;

/* Delivers text to the caller; returns true when the caller asked to stop. */
static bool deliver(gen_side *g) {
    if (!g->text.len) return false;
    if (g->first_piece_ms < 0) g->first_piece_ms = lm_time_ms();
    int r = g->fn ? g->fn(g->text.data, g->text.len, g->user) : 0;
    lm_buf_reset(&g->text);
    return r != 0;
}

/* The decoded piece through the stop strings to the caller (the held-back text too when last and
 * no stop string matched); returns true when the caller asked to stop. */
static bool emit(gen_side *g, bool last) {
    smp_stop_push(&g->stop, g->piece.data ? g->piece.data : "", g->piece.len, &g->text);
    if (last && !g->stop.hit) smp_stop_flush(&g->stop, &g->text);
    return deliver(g);
}

lm_status session_generate(lm_session *s, const lm_token *prompt, size_t n, const lm_gen_params *gp_in,
                           lm_piece_fn fn, void *user, lm_gen_stats *stats, double t_start) {
    lm_engine *e = s->eng;
    const lm_model *m = e->model;
    lm_gen_params gp = gp_in ? *gp_in : lm_gen_default_params();
    if (n == 0 && !s->logits_valid) return session_fail(s, LM_ERR_MISUSE, "nothing to continue from: the context is empty");
    if (!m->tok) return session_fail(s, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer, so it cannot produce text", m->path);
    lm_status st = check_ids(s, prompt, n);
    if (st) return st;
    size_t n_stop = 0;
    while (n_stop < LM_MAX_STOP && gp.stop[n_stop]) n_stop++;
    smp_sampler smp;
    lm_error serr = {0};
    const smp_vocab sv = {m->tok, m->eog, m->n_eog};
    st = smp_init(&smp, &gp, (size_t)m->hp.n_vocab, &sv, &serr);
    if (st) return session_fail(s, st, "%s", serr.msg);
    gen_side g;
    memset(&g, 0, sizeof g);
    g.fn = fn;
    g.user = user;
    g.first_piece_ms = -1;
    g.ts = tok_stream_new(m->tok, true);
    size_t max_tok = gp.max_tokens > 0 ? (size_t)gp.max_tokens : SIZE_MAX;
    g.cap_itl = max_tok < 4096 ? max_tok : 4096;
    g.itl = lm_malloc((g.cap_itl ? g.cap_itl : 1) * sizeof(double));
    if (!g.ts || !g.itl) {
        smp_free(&smp);
        tok_stream_free(g.ts);
        lm_free(g.itl);
        return session_fail(s, LM_ERR_NOMEM, "out of memory for generation");
    }
    /* Prime the decoder with the last context token, so the first new piece decodes as a
       continuation (SentencePiece strips the leading space only at the start of a text). */
    lm_token prime = n ? prompt[n - 1] : s->tokens.ids[s->tokens.n - 1];
    if (prime >= 0) {
        lm_buf scratch = {0};
        tok_stream_push(g.ts, prime, &scratch);
        tok_stream_finish(g.ts, &scratch);
        lm_buf_free(&scratch);
    }
    smp_stop_init(&g.stop, gp.stop, n_stop);
    size_t base = s->tokens.n + n; /* the context after the prompt */

    seq_req r;
    memset(&r, 0, sizeof r);
    r.kind = REQ_GEN;
    r.ids = prompt;
    r.n_ids = n;
    r.smp = &smp;
    r.max_new = max_tok;
    r.ignore_eos = gp.ignore_eos;
    r.top_logprobs = gp.token_fn && gp.top_logprobs >= 0 ? LM_MIN(gp.top_logprobs, LM_MAX_TOP_LOGPROBS) : -1;
    if (r.top_logprobs >= 0 && !(r.raw = lm_malloc((size_t)m->hp.n_vocab * sizeof(float)))) {
        smp_free(&smp);
        smp_stop_free(&g.stop);
        tok_stream_free(g.ts);
        lm_free(g.itl);
        return session_fail(s, LM_ERR_NOMEM, "out of memory for log-probabilities");
    }
    r.pending = -1;
    r.stop_token = -1;
    double t_submit = lm_time_ms();
    s->req = &r;
    engine_submit(e, s);

    lm_finish finish = LM_FINISH_NONE;
    size_t n_gen = 0, keep = SIZE_MAX;
    bool stopping = false, done = false;
    req_tok got[4];
    while (!done) {
        size_t k = engine_wait_tokens(e, s, got, LM_ARRAY_LEN(got), &done);
        for (size_t i = 0; i < k && !stopping; i++) {
            n_gen++;
            double now = lm_time_ms();
            if (n_gen > 1 && g.n_itl < g.cap_itl) g.itl[g.n_itl++] = now - g.t_prev;
            g.t_prev = now;
            bool token_stop = false;
            if (gp.token_fn) {
                lm_token_info ti = {got[i].id, r.top_logprobs >= 0 ? got[i].logprob : 0.0f, got[i].n_top, got[i].top_ids,
                                    got[i].top_lp};
                token_stop = gp.token_fn(&ti, gp.token_user) != 0;
            }
            lm_buf_reset(&g.piece);
            tok_stream_push(g.ts, got[i].id, &g.piece);
            if (emit(&g, false) || token_stop) {
                finish = LM_FINISH_CANCELLED;
                keep = n_gen; /* the token was delivered: it stays in the context */
            } else if (g.stop.hit) {
                finish = LM_FINISH_STOP;
                keep = n_gen - 1;
            } else {
                continue;
            }
            stopping = true;
            engine_stop(e, s, keep);
        }
    }
    engine_finish(e, s);
    st = r.status;
    if (st) {
        finish = st == LM_ERR_CANCELLED ? LM_FINISH_CANCELLED : LM_FINISH_ERROR;
        session_fail(s, st, "%s", r.errmsg);
    } else if (finish == LM_FINISH_NONE) {
        finish = r.finish != LM_FINISH_NONE ? r.finish : LM_FINISH_STOP;
    }
    /* A stop the caller asked for (a callback, lm_session_cancel) is LM_ERR_CANCELLED however far
     * the call got; what was delivered stays delivered and in the context. */
    if (st == LM_OK && finish == LM_FINISH_CANCELLED) {
        st = LM_ERR_CANCELLED;
        session_fail(s, st, "stopped by the caller after %zu generated tokens", n_gen);
    }
    /* The context keeps the prompt and the generated tokens the caller saw, never those the
     * scheduler evaluated after a stop was asked for. */
    if (keep != SIZE_MAX && s->tokens.n > base + keep) session_truncate(s, base + keep);
    if (st == LM_OK && finish != LM_FINISH_CANCELLED && !g.stop.hit) {
        lm_buf_reset(&g.piece);
        tok_stream_finish(g.ts, &g.piece);
        emit(&g, true);
    }
    double t_end = lm_time_ms();
    if (stats) {
        if (n) {
            stats->prefill_ms = (r.t_first_logits > 0 ? r.t_first_logits : t_end) - t_submit;
            stats->prefill_tok_s = stats->prefill_ms > 0 ? (double)n / (stats->prefill_ms / 1000.0) : 0;
        }
        double t_dec0 = r.t_first_logits > 0 ? r.t_first_logits : t_submit;
        stats->n_generated = (int32_t)n_gen;
        stats->decode_ms = t_end - t_dec0;
        stats->decode_tok_s = n_gen > 1 && t_end > t_dec0 ? (double)n_gen / ((t_end - t_dec0) / 1000.0) : 0;
        stats->ttft_ms = (g.first_piece_ms >= 0 ? g.first_piece_ms : t_end) - t_start;
        if (g.n_itl) {
            qsort(g.itl, g.n_itl, sizeof(double), cmp_double);
            stats->itl_p50_ms = nearest_rank(g.itl, g.n_itl, 50);
            stats->itl_p95_ms = nearest_rank(g.itl, g.n_itl, 95);
        }
        stats->finish = finish;
        stats->stop_token = r.stop_token;
    }
    smp_free(&smp);
    smp_stop_free(&g.stop);
    tok_stream_free(g.ts);
    lm_free(g.itl);
    lm_free(r.raw);
    lm_buf_free(&g.piece);
    lm_buf_free(&g.text);
    return st;
}

lm_status lm_session_generate(lm_session *s, const lm_token *prompt, size_t n, const lm_gen_params *gp,
                              lm_piece_fn fn, void *user, lm_gen_stats *stats) {
    double t0 = lm_time_ms();
    session_stats_start(stats);
    lm_status st = session_begin(s);
    if (st) return st;
    if (stats) {
        stats->n_prompt = (int32_t)n;
        stats->n_prefilled = (int32_t)n;
    }
    return session_generate(s, prompt, n, gp, fn, user, stats, t0);
}

lm_status lm_session_complete(lm_session *s, const char *prompt, size_t len, const lm_gen_params *gp,
                              lm_piece_fn fn, void *user, lm_gen_stats *stats) {
    double t0 = lm_time_ms();
    lm_status st = session_check(s);
    if (st) return st;
    const lm_model *m = s->eng->model;
    if (!m->tok) return session_fail(s, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer; use token ids", m->path);
    tok_vec ids = {0};
    lm_error err = {0};
    uint32_t flags = LM_TOK_PARSE_SPECIAL | (s->tokens.n == 0 ? LM_TOK_ADD_SPECIAL : 0);
    st = tok_encode(m->tok, prompt, len, flags, &ids, &err);
    if (st) {
        tok_vec_free(&ids);
        return session_fail(s, st, "%s", err.msg);
    }
    /* A completion must not end with the tokenizer's EOS (add_eos_token models): drop it. */
    if (ids.n && (flags & LM_TOK_ADD_SPECIAL) && ids.ids[ids.n - 1] == tok_eos(m->tok) && ids.n > 1) ids.n--;
    double tk = lm_time_ms() - t0;
    st = lm_session_generate(s, ids.ids, ids.n, gp, fn, user, stats);
    if (stats) {
        stats->tokenize_ms = tk;
        stats->ttft_ms += tk;
    }
    tok_vec_free(&ids);
    return st;
}

/* A few passes of a throw-away session, so the first real request does not pay for first-touch
 * page faults and the kernels' caches (here, not in engine.c, which never calls sessions). */
lm_status lm_engine_warmup(lm_engine *e, lm_error *err) {
    lm_error_clear(err);
    if (!e) return lm_fail(err, LM_ERR_MISUSE, "lm_engine_warmup: the engine is NULL");
    lm_session *s = NULL;
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = 64;
    lm_status st = lm_session_new(e, &sp, &s, err);
    if (st) return st;
    const lm_model *m = e->model;
    lm_token ids[8];
    lm_token bos = lm_model_token_bos(m);
    for (int i = 0; i < 8; i++) ids[i] = (lm_token)((i == 0 && bos >= 0) ? bos : (i * 31) % m->hp.n_vocab);
    st = lm_session_eval(s, ids, 8, NULL, NULL);
    for (int i = 0; !st && i < 4; i++) st = lm_session_eval(s, &ids[i], 1, NULL, NULL);
    if (st) lm_fail(err, st, "warm-up: %s", lm_session_errmsg(s));
    lm_session_free(s);
    return st;
}
