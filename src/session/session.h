/* session/session.h: the internal header of src/session.
 * Owns: lm_session (a conversation's tokens + KV cache), the generation loop, cancellation,
 * and per-call metrics. */
#ifndef LM_SESSION_H
#define LM_SESSION_H

#include <stdatomic.h>

#include "model/model.h"
#include "sample/sample.h"

struct lm_session {
    lm_model *model;          /* NULL once the model was freed */
    struct lm_session *next;  /* in the model's list of live sessions */
    lm_kv kv;
    lm_fwd_buf buf;
    tok_vec tokens;           /* exactly the tokens in the KV cache */
    size_t n_ctx, n_batch;
    float *logits;            /* after the last token in the cache */
    bool logits_valid;
    atomic_bool cancel;
    char errmsg[256];
    lm_response_cache *rcache; /* borrowed, may be NULL */
};

typedef struct gen_state {
    double first_piece_ms;
} gen_state;

lm_status session_check(lm_session *s);
lm_status session_prefill(lm_session *s, const lm_token *ids, size_t n, float *all_logits);
/* Generates from the current logits. t_start: the call's start (for TTFT). */
lm_status session_generate_from(lm_session *s, const lm_gen_params *gp, lm_piece_fn fn, void *user,
                                lm_gen_stats *stats, double t_start);

/* response cache (session/response_cache.c) */
char *rc_make_key(const char *prompt, size_t len, const lm_gen_params *gp);
bool rc_lookup(lm_response_cache *c, const char *key, lm_buf *text, lm_finish *finish, int32_t *n_gen);
void rc_store(lm_response_cache *c, const char *key, const char *text, size_t len, lm_finish finish,
              int32_t n_gen);

#endif
