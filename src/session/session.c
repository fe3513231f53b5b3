/* session/session.c: an lm_session, one conversation's tokens and KV cache, and the generation
 * loop: prefill in micro-batches, sample, stream UTF-8-safe pieces through the stop-string
 * matcher, cancel between micro-batches and tokens, and measure. */
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

static lm_status sfail(lm_session *s, lm_status code, const char *fmt, ...) LM_PRINTF(3, 4);
static lm_status sfail(lm_session *s, lm_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lm_error e;
    lm_failv(&e, code, fmt, ap);
    va_end(ap);
    memcpy(s->errmsg, e.msg, sizeof s->errmsg);
    return code;
}

const char *lm_session_errmsg(const lm_session *s) { return s ? s->errmsg : "session is NULL"; }

void lm_session_detach_all(lm_model *m) {
    pthread_mutex_lock(&m->sess_mu);
    for (lm_session *s = m->sessions; s; s = s->next) s->model = NULL;
    m->sessions = NULL;
    pthread_mutex_unlock(&m->sess_mu);
}

lm_status lm_session_new(lm_model *m, const lm_session_params *p, lm_session **out, lm_error *err) {
    lm_error_clear(err);
    if (!out) return lm_fail(err, LM_ERR_MISUSE, "lm_session_new: out is NULL");
    *out = NULL;
    if (!m || m->magic != LM_MODEL_MAGIC) return lm_fail(err, LM_ERR_MISUSE, "lm_session_new: the model is NULL or freed");
    lm_session_params sp = p ? *p : lm_session_default_params();
    size_t n_ctx = sp.n_ctx > 0 ? (size_t)sp.n_ctx : (size_t)LM_MIN(m->hp.n_ctx_train, 4096);
    size_t n_batch = sp.n_batch > 0 ? (size_t)sp.n_batch : 64;
    if (n_batch > n_ctx) n_batch = n_ctx;
    lm_session *s = lm_calloc(1, sizeof *s);
    if (!s) return lm_fail_nomem(err, "session");
    s->model = m;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    atomic_init(&s->cancel, false);
    if (lm_kv_init(&s->kv, m, n_ctx, sp.kv_f32) || lm_fwd_buf_init(&s->buf, m, n_batch) ||
        !(s->logits = lm_malloc((size_t)m->hp.n_vocab * sizeof(float)))) {
        lm_kv_free(&s->kv);
        lm_fwd_buf_free(&s->buf);
        lm_free(s);
        return lm_fail(err, LM_ERR_NOMEM, "out of memory for a session of %zu tokens (%llu MB of KV cache)", n_ctx,
                       (unsigned long long)(lm_model_kv_bytes_per_token(m) * (sp.kv_f32 ? 2u : 1u) * n_ctx >> 20));
    }
    pthread_mutex_lock(&m->compute_mu);
    bool ok = cm_ctx_reserve(m->cm, n_ctx, (size_t)LM_MAX(LM_MAX(m->hp.n_embd, m->hp.n_ff), m->hp.n_head * m->hp.head_dim));
    pthread_mutex_unlock(&m->compute_mu);
    if (!ok) {
        lm_session_free(s);
        return lm_fail_nomem(err, "compute scratch");
    }
    pthread_mutex_lock(&m->sess_mu);
    s->next = m->sessions;
    m->sessions = s;
    pthread_mutex_unlock(&m->sess_mu);
    *out = s;
    return LM_OK;
}

void lm_session_free(lm_session *s) {
    if (!s) return;
    lm_model *m = s->model;
    if (m) {
        pthread_mutex_lock(&m->sess_mu);
        for (lm_session **pp = &m->sessions; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        pthread_mutex_unlock(&m->sess_mu);
    }
    lm_kv_free(&s->kv);
    lm_fwd_buf_free(&s->buf);
    tok_vec_free(&s->tokens);
    lm_free(s->logits);
    lm_free(s);
}

void lm_session_cancel(lm_session *s) {
    if (s) atomic_store(&s->cancel, true);
}

size_t lm_session_n_past(const lm_session *s) { return s ? s->tokens.n : 0; }
const lm_token *lm_session_tokens(const lm_session *s) { return s ? s->tokens.ids : NULL; }

lm_status lm_session_truncate(lm_session *s, size_t n) {
    if (!s) return LM_ERR_MISUSE;
    if (!s->model) return sfail(s, LM_ERR_MISUSE, "the session's model was freed");
    if (n > s->tokens.n) return sfail(s, LM_ERR_MISUSE, "cannot truncate %zu tokens to %zu", s->tokens.n, n);
    if (n < s->tokens.n) s->logits_valid = false;
    s->tokens.n = n;
    return LM_OK;
}

lm_status session_check(lm_session *s) {
    if (!s) return LM_ERR_MISUSE;
    s->errmsg[0] = 0;
    if (!s->model || s->model->magic != LM_MODEL_MAGIC) return sfail(s, LM_ERR_MISUSE, "the session's model was freed; make a new session");
    return LM_OK;
}

/* Evaluates ids in micro-batches, appending them to the context. Checks cancellation between
 * micro-batches; the cache then holds exactly the tokens processed. */
lm_status session_prefill(lm_session *s, const lm_token *ids, size_t n, float *all_logits) {
    lm_model *m = s->model;
    if (s->tokens.n + n > s->n_ctx)
        return sfail(s, LM_ERR_CONTEXT, "%zu tokens do not fit the context: %zu already in it, window is %zu", n, s->tokens.n, s->n_ctx);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->hp.n_vocab)
            return sfail(s, LM_ERR_MISUSE, "token id %d at index %zu is outside the vocabulary (0..%d)", ids[i], i, m->hp.n_vocab - 1);
    size_t done = 0;
    while (done < n) {
        if (atomic_load(&s->cancel)) return sfail(s, LM_ERR_CANCELLED, "cancelled after %zu of %zu prompt tokens", done, n);
        size_t b = LM_MIN(s->n_batch, n - done);
        bool last = done + b == n;
        lm_forward(m, &s->kv, &s->buf, ids + done, b, s->tokens.n, last ? s->logits : NULL,
                   all_logits ? all_logits + done * (size_t)m->hp.n_vocab : NULL);
        if (!tok_vec_append(&s->tokens, ids + done, b)) return sfail(s, LM_ERR_NOMEM, "out of memory for the token history");
        done += b;
        if (last) s->logits_valid = true;
    }
    return LM_OK;
}

lm_status lm_session_eval(lm_session *s, const lm_token *ids, size_t n, float *logits, float *all_logits) {
    lm_status st = session_check(s);
    if (st) return st;
    atomic_store(&s->cancel, false);
    if (n == 0) {
        if (logits && s->logits_valid) memcpy(logits, s->logits, (size_t)s->model->hp.n_vocab * sizeof(float));
        return LM_OK;
    }
    if ((st = session_prefill(s, ids, n, all_logits))) return st;
    if (logits) memcpy(logits, s->logits, (size_t)s->model->hp.n_vocab * sizeof(float));
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

/* Delivers text to the caller; returns true when the caller asked to stop. */
static bool deliver(lm_buf *text, lm_piece_fn fn, void *user, gen_state *g) {
    if (!text->len) return false;
    if (g->first_piece_ms < 0) g->first_piece_ms = lm_time_ms();
    int r = fn ? fn(text->data, text->len, user) : 0;
    lm_buf_reset(text);
    return r != 0;
}

lm_status session_generate_from(lm_session *s, const lm_gen_params *gp_in, lm_piece_fn fn, void *user,
                                lm_gen_stats *stats, double t_start) {
    lm_model *m = s->model;
    lm_gen_params gp = gp_in ? *gp_in : lm_gen_default_params();
    if (!s->logits_valid) return sfail(s, LM_ERR_MISUSE, "nothing to continue from: the context is empty");
    if (!m->tok) return sfail(s, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer, so it cannot produce text", m->path);
    size_t n_stop = 0;
    while (n_stop < LM_MAX_STOP && gp.stop[n_stop]) n_stop++;
    smp_sampler smp;
    lm_error serr = {0};
    const smp_vocab sv = {m->tok, m->eog, m->n_eog};
    lm_status sst = smp_init(&smp, &gp, (size_t)m->hp.n_vocab, &sv, &serr);
    if (sst) return sfail(s, sst, "%s", serr.msg);
    tok_stream *ts = tok_stream_new(m->tok, true);
    size_t max_tok = gp.max_tokens > 0 ? (size_t)gp.max_tokens : SIZE_MAX;
    size_t cap_itl = max_tok < 4096 ? max_tok : 4096;
    double *itl = lm_malloc((cap_itl ? cap_itl : 1) * sizeof(double));
    if (!ts || !itl) {
        smp_free(&smp);
        tok_stream_free(ts);
        lm_free(itl);
        return sfail(s, LM_ERR_NOMEM, "out of memory for generation");
    }
    /* Prime the decoder with the last context token, so the first new piece decodes as a
       continuation (SentencePiece strips the leading space only at the start of a text). */
    if (s->tokens.n > 0) {
        lm_buf scratch = {0};
        tok_stream_push(ts, s->tokens.ids[s->tokens.n - 1], &scratch);
        tok_stream_finish(ts, &scratch);
        lm_buf_free(&scratch);
    }
    smp_stop stop;
    smp_stop_init(&stop, gp.stop, n_stop);
    lm_buf piece = {0}, text = {0};
    gen_state g = {.first_piece_ms = -1};
    lm_finish finish = LM_FINISH_NONE;
    lm_token stop_token = -1;
    lm_status st = LM_OK;
    size_t n_gen = 0, n_itl = 0;
    double t_dec0 = lm_time_ms(), t_prev = t_dec0;
    for (;;) {
        if (atomic_load(&s->cancel)) {
            finish = LM_FINISH_CANCELLED;
            break;
        }
        if (n_gen >= max_tok) {
            finish = LM_FINISH_LENGTH;
            break;
        }
        if (s->tokens.n >= s->n_ctx) {
            finish = LM_FINISH_LENGTH;
            break;
        }
        lm_token id = smp_sample(&smp, s->logits, s->tokens.ids, s->tokens.n);
        if (id < 0) { /* the grammar allows nothing more, or the sampler ran out of memory */
            finish = smp.status ? LM_FINISH_ERROR : LM_FINISH_STOP;
            if (smp.status) st = sfail(s, smp.status, "out of memory in the grammar sampler");
            break;
        }
        if (!gp.ignore_eos && lm_model_is_eog(m, id)) {
            finish = LM_FINISH_STOP;
            stop_token = id;
            break;
        }
        n_gen++;
        double now = lm_time_ms();
        if (n_gen > 1 && n_itl < cap_itl) itl[n_itl++] = now - t_prev;
        t_prev = now;
        lm_buf_reset(&piece);
        tok_stream_push(ts, id, &piece);
        smp_stop_push(&stop, piece.data ? piece.data : "", piece.len, &text);
        if (deliver(&text, fn, user, &g)) {
            finish = LM_FINISH_CANCELLED;
            /* the token was delivered: keep it in the context */
            if (s->tokens.n < s->n_ctx) st = session_prefill(s, &id, 1, NULL);
            break;
        }
        if (stop.hit) {
            finish = LM_FINISH_STOP;
            break;
        }
        if (n_gen >= max_tok) {
            finish = LM_FINISH_LENGTH;
            break;
        }
        if (s->tokens.n >= s->n_ctx) {
            finish = LM_FINISH_LENGTH;
            break;
        }
        st = session_prefill(s, &id, 1, NULL);
        if (st) {
            finish = st == LM_ERR_CANCELLED ? LM_FINISH_CANCELLED : LM_FINISH_ERROR;
            if (st == LM_ERR_CANCELLED) st = LM_OK;
            break;
        }
    }
    if (finish != LM_FINISH_CANCELLED && finish != LM_FINISH_ERROR && !stop.hit) {
        lm_buf_reset(&piece);
        tok_stream_finish(ts, &piece);
        smp_stop_push(&stop, piece.data ? piece.data : "", piece.len, &text);
        if (!stop.hit) smp_stop_flush(&stop, &text);
        deliver(&text, fn, user, &g);
    }
    double t_end = lm_time_ms();
    if (stats) {
        stats->n_generated = (int32_t)n_gen;
        stats->decode_ms = t_end - t_dec0;
        stats->decode_tok_s = n_gen > 1 && t_end > t_dec0 ? (double)(n_gen) / ((t_end - t_dec0) / 1000.0) : 0;
        stats->ttft_ms = (g.first_piece_ms >= 0 ? g.first_piece_ms : t_end) - t_start;
        if (n_itl) {
            qsort(itl, n_itl, sizeof(double), cmp_double);
            stats->itl_p50_ms = itl[n_itl / 2];
            stats->itl_p95_ms = itl[(size_t)((double)(n_itl - 1) * 0.95)];
        }
        stats->finish = finish;
        stats->stop_token = stop_token;
    }
    smp_free(&smp);
    smp_stop_free(&stop);
    tok_stream_free(ts);
    lm_free(itl);
    lm_buf_free(&piece);
    lm_buf_free(&text);
    return st;
}

lm_status lm_session_generate(lm_session *s, const lm_token *prompt, size_t n, const lm_gen_params *gp,
                              lm_piece_fn fn, void *user, lm_gen_stats *stats) {
    double t0 = lm_time_ms();
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->stop_token = -1;
    }
    lm_status st = session_check(s);
    if (st) return st;
    atomic_store(&s->cancel, false);
    if (stats) {
        stats->n_prompt = (int32_t)n;
        stats->n_prefilled = (int32_t)n;
    }
    double tp = lm_time_ms();
    st = session_prefill(s, prompt, n, NULL);
    if (stats) {
        stats->prefill_ms = lm_time_ms() - tp;
        stats->prefill_tok_s = stats->prefill_ms > 0 ? (double)n / (stats->prefill_ms / 1000.0) : 0;
    }
    if (st == LM_ERR_CANCELLED) {
        if (stats) stats->finish = LM_FINISH_CANCELLED;
        return st;
    }
    if (st) {
        if (stats) stats->finish = LM_FINISH_ERROR;
        return st;
    }
    return session_generate_from(s, gp, fn, user, stats, t0);
}

lm_status lm_session_complete(lm_session *s, const char *prompt, size_t len, const lm_gen_params *gp,
                              lm_piece_fn fn, void *user, lm_gen_stats *stats) {
    double t0 = lm_time_ms();
    lm_status st = session_check(s);
    if (st) return st;
    if (!s->model->tok) return sfail(s, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer; use token ids", s->model->path);
    tok_vec ids = {0};
    lm_error err = {0};
    uint32_t flags = LM_TOK_PARSE_SPECIAL | (s->tokens.n == 0 ? LM_TOK_ADD_SPECIAL : 0);
    st = tok_encode(s->model->tok, prompt, len, flags, &ids, &err);
    if (st) {
        tok_vec_free(&ids);
        return sfail(s, st, "%s", err.msg);
    }
    /* A completion must not end with the tokenizer's EOS (add_eos_token models): drop it. */
    if (ids.n && (flags & LM_TOK_ADD_SPECIAL) && ids.ids[ids.n - 1] == tok_eos(s->model->tok) && ids.n > 1) ids.n--;
    double tk = lm_time_ms() - t0;
    st = lm_session_generate(s, ids.ids, ids.n, gp, fn, user, stats);
    if (stats) {
        stats->tokenize_ms = tk;
        stats->ttft_ms += tk;
    }
    tok_vec_free(&ids);
    return st;
}
