/* session/session.h: the internal header of src/session.
 * Owns: lm_engine (a compute context on the model's backend and the scheduler thread that merges
 * the work of its sessions into shared forward passes), lm_session (a conversation's tokens + KV
 * cache), the generation loop on the caller's side (detokenizing, stop strings, callbacks),
 * cancellation, per-call metrics, chat turns (template, prefix reuse, trimming, partial prefill)
 * and the response cache. */
#ifndef LM_SESSION_H
#define LM_SESSION_H

#include <pthread.h>
#include <stdatomic.h>

#include "model/model.h"
#include "sample/sample.h"

/* ---- requests: what a session asks of its engine's scheduler (session/engine.c) ----
 * The session's thread fills a request, hands it over with engine_submit and waits; from then
 * until the request is done, the scheduler thread alone touches the session's tokens and cache.
 * Fields marked (mu) are read and written under the engine's mutex by both sides. */

typedef enum req_kind { REQ_EVAL, REQ_GEN } req_kind;

#define REQ_QUEUE 16 /* sampled tokens the scheduler may run ahead of the session's thread */

/* A sampled token on its way to the session's thread. */
typedef struct req_tok {
    lm_token id;
    float logprob;                             /* when the request wants log-probabilities */
    int32_t n_top;
    lm_token top_ids[LM_MAX_TOP_LOGPROBS];
    float top_lp[LM_MAX_TOP_LOGPROBS];
} req_tok;

typedef struct seq_req {
    req_kind kind;
    const lm_token *ids;      /* the prompt (borrowed: the caller waits), appended to the cache */
    size_t n_ids;
    size_t n_done;            /* of them, evaluated */
    float *all_logits;        /* REQ_EVAL: n_ids rows of logits, or NULL */
    /* REQ_GEN */
    smp_sampler *smp;         /* the session's sampler, used by the scheduler while active */
    size_t max_new;           /* tokens to generate at most */
    bool ignore_eos;
    int32_t top_logprobs;     /* -1: none; else log-probabilities and this many alternatives */
    float *raw;               /* n_vocab: the logits before sampling, when top_logprobs >= 0 */
    lm_token pending;         /* sampled, not evaluated yet; -1: none */
    size_t n_sampled;         /* tokens sampled (each handed to the session, but an EOG) */
    size_t n_gen_evaluated;   /* generated tokens evaluated into the cache */
    req_tok out[REQ_QUEUE];   /* (mu) sampled tokens the session has not taken yet: a ring */
    size_t out_head, out_n;   /* (mu) */
    bool stop;                /* (mu) the session asks to end: keep its first `keep` generated
                                 tokens in the cache (evaluating the last if it is not yet) */
    size_t keep;              /* (mu) */
    /* the outcome, (mu) */
    bool done;
    lm_status status;
    lm_finish finish;         /* set by the scheduler for EOG, length and context-full ends */
    lm_token stop_token;
    char errmsg[256];
    double t_first_logits;    /* when the prompt's logits were ready (lm_time_ms) */
} seq_req;

struct lm_session {
    lm_engine *eng;
    cm_kv *kv;
    tok_vec tokens;           /* exactly the tokens in the KV cache */
    size_t n_ctx, n_batch;
    float *logits;            /* n_vocab: after the last token in the cache, when logits_valid */
    bool logits_valid;
    atomic_bool cancel;
    const atomic_bool *ext_cancel; /* another flag that cancels the session's calls (a provider
                                      call's), set between calls; may be NULL */
    char errmsg[256];
    lm_response_cache *rcache; /* borrowed, may be NULL */
    /* with the engine (mu) */
    seq_req *req;             /* the request being served, or NULL */
    struct lm_session *next;  /* in the engine's list of sessions with a request, oldest first */
    pthread_cond_t cv;        /* the scheduler signals progress of req here */
};

struct lm_engine {
    const lm_model *model;    /* a reference held */
    cm_ctx *ctx;
    lm_engine_params p;
    size_t max_logits;        /* rows of logits a pass may hold for several sessions */
    double chunk;             /* (mu) tokens of a prompt per pass beside generating sessions */
    bool mixed;               /* (mu) the pass being run holds both */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t work;      /* a request arrived or changed, or stopping */
    lm_session *head, *tail;  /* (mu) sessions with a request, oldest first */
    bool stopping;            /* (mu) */
    bool running;             /* (mu) a pass is being run (by the scheduler or a session) */
    atomic_int refs;          /* the caller's handle and each session */
    lm_engine_stats stats;    /* (mu) */
    /* the pass being built and run: the scheduler thread only */
    lm_token *ids;
    cm_seq *seqs;
    lm_session **seq_sess;
    bool *seq_final;          /* the sequence evaluates its last kept token and ends: no logits */
};

/* Hands s's request (s->req, filled) to the scheduler. */
void engine_submit(lm_engine *e, lm_session *s);
/* Waits until the request is done or has sampled tokens to take; copies up to cap of those into
 * out and returns how many (0 once done and drained). The caller holds no lock. */
size_t engine_wait_tokens(lm_engine *e, lm_session *s, req_tok *out, size_t cap, bool *done);
/* Asks the request to end, keeping `keep` generated tokens in the cache; finish is recorded as
 * the reason unless the scheduler finished first. */
void engine_stop(lm_engine *e, lm_session *s, size_t keep);
/* Waits until the request is done and detaches it from the session. */
void engine_finish(lm_engine *e, lm_session *s);
void engine_retain(lm_engine *e);
void engine_release(lm_engine *e);

lm_status session_check(lm_session *s);
/* The start of a call that runs the model: session_check, then clears a cancel left by an
 * earlier call. */
lm_status session_begin(lm_session *s);
/* Zeroes *stats (may be NULL) for a new call: nothing counted, no stop token (-1). */
void session_stats_start(lm_gen_stats *stats);
lm_status session_fail(lm_session *s, lm_status code, const char *fmt, ...) LM_PRINTF(3, 4);
/* Evaluates ids through the engine, appending them to the context; with all_logits, n rows of
 * logits. The cache then holds exactly the tokens processed (also when cancelled). */
lm_status session_prefill(lm_session *s, const lm_token *ids, size_t n, float *all_logits);
/* Prefills prompt (n may be 0: continue from the current logits) and generates. t_start: the
 * call's start (for TTFT). */
lm_status session_generate(lm_session *s, const lm_token *prompt, size_t n, const lm_gen_params *gp,
                           lm_piece_fn fn, void *user, lm_gen_stats *stats, double t_start);
/* Cuts the cache back to its first n tokens. */
void session_truncate(lm_session *s, size_t n);

/* response cache (session/response_cache.c) */
char *rc_make_key(const char *prompt, size_t len, const lm_gen_params *gp);
bool rc_lookup(lm_response_cache *c, const char *key, lm_buf *text, lm_finish *finish, int32_t *n_gen);
void rc_store(lm_response_cache *c, const char *key, const char *text, size_t len, lm_finish finish,
              int32_t n_gen);

/* chat turns (session/chat_session.c), for the local provider */
typedef struct chat_prompt {
    tok_vec ids;              /* the rendered conversation, tokenized */
    lm_buf text;              /* the rendered conversation */
    int32_t n_dropped;        /* messages trimmed to fit */
} chat_prompt;
/* Renders msgs with m's template (trimming to fit n_ctx - reserve tokens) and tokenizes. cancel
 * (may be NULL) is looked at between renderings: LM_ERR_CANCELLED once it is set. */
lm_status chat_prompt_build(const lm_model *m, size_t n_ctx, const lm_message *msgs, size_t n,
                            const lm_chat_params *cp, size_t reserve, const atomic_bool *cancel,
                            chat_prompt *out, lm_error *err);
void chat_prompt_free(chat_prompt *p);
/* A chat turn on s with the prompt already built (lm_session_chat after its rendering). */
lm_status session_chat_prompt(lm_session *s, const chat_prompt *p, const lm_gen_params *gp,
                              lm_piece_fn fn, void *user, lm_gen_stats *stats, double t0);

#endif
