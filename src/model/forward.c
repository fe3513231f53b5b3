/* model/forward.c: the one forward pass of every architecture in the table, for a micro-batch
 * of tokens (one matrix-matrix product per weight per layer), with the KV cache.
 * Shapes: x (n, n_embd); q (n, n_head, head_dim); k, v (n, n_head_kv, head_dim);
 * cache per layer (n_head_kv, n_ctx, head_dim). */
#include "model/model.h"

#include <math.h>

lm_status lm_kv_init(lm_kv *kv, const lm_model *m, size_t n_ctx) {
    memset(kv, 0, sizeof *kv);
    const lm_hparams *hp = &m->hp;
    size_t per_layer, total;
    if (!lm_mul_ok((size_t)hp->n_head_kv * (size_t)hp->head_dim, n_ctx, &per_layer) ||
        !lm_mul_ok(per_layer, (size_t)hp->n_layer, &total) || !lm_mul_ok(total, sizeof(float), &total))
        return LM_ERR_NOMEM;
    kv->k = lm_malloc(total);
    kv->v = lm_malloc(total);
    if (!kv->k || !kv->v) {
        lm_kv_free(kv);
        return LM_ERR_NOMEM;
    }
    kv->n_ctx = n_ctx;
    kv->layer_stride = per_layer;
    return LM_OK;
}

void lm_kv_free(lm_kv *kv) {
    lm_free(kv->k);
    lm_free(kv->v);
    memset(kv, 0, sizeof *kv);
}

lm_status lm_fwd_buf_init(lm_fwd_buf *b, const lm_model *m, size_t n) {
    memset(b, 0, sizeof *b);
    const lm_hparams *hp = &m->hp;
    size_t E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim, KV = (size_t)hp->n_head_kv * hp->head_dim;
    size_t F = (size_t)hp->n_ff;
    b->n_batch = n;
    b->x = lm_malloc(n * E * sizeof(float));
    b->xb = lm_malloc(n * E * sizeof(float));
    b->q = lm_malloc(n * Q * sizeof(float));
    b->k = lm_malloc(n * KV * sizeof(float));
    b->v = lm_malloc(n * KV * sizeof(float));
    b->att = lm_malloc(n * Q * sizeof(float));
    b->o = lm_malloc(n * E * sizeof(float));
    b->gate = lm_malloc(n * F * sizeof(float));
    b->up = lm_malloc(n * F * sizeof(float));
    b->h = lm_malloc(n * F * sizeof(float));
    b->logits = lm_malloc((size_t)hp->n_vocab * sizeof(float));
    if (!b->x || !b->xb || !b->q || !b->k || !b->v || !b->att || !b->o || !b->gate || !b->up || !b->h || !b->logits) {
        lm_fwd_buf_free(b);
        return LM_ERR_NOMEM;
    }
    return LM_OK;
}

void lm_fwd_buf_free(lm_fwd_buf *b) {
    lm_free(b->x);
    lm_free(b->xb);
    lm_free(b->q);
    lm_free(b->k);
    lm_free(b->v);
    lm_free(b->att);
    lm_free(b->o);
    lm_free(b->gate);
    lm_free(b->up);
    lm_free(b->h);
    lm_free(b->logits);
    memset(b, 0, sizeof *b);
}

static void add_bias(float *y, const float *bias, size_t n_tok, size_t dim) {
    if (!bias) return;
    for (size_t t = 0; t < n_tok; t++) cm_add(y + t * dim, bias, dim);
}

void lm_forward(const lm_model *mc, lm_kv *kv, lm_fwd_buf *b, const lm_token *ids, size_t n,
                size_t pos0, float *logits, float *all_logits) {
    lm_model *m = (lm_model *)mc; /* the compute context is mutable scratch, guarded by the lock */
    const lm_hparams *hp = &m->hp;
    size_t E = (size_t)hp->n_embd, H = (size_t)hp->n_head, HKV = (size_t)hp->n_head_kv, D = (size_t)hp->head_dim;
    size_t Q = H * D, KV = HKV * D, F = (size_t)hp->n_ff;
    float scale = 1.0f / sqrtf((float)D);
    const float *inv_freq = m->inv_freq;
    if (m->inv_freq_long && kv->n_ctx > (size_t)m->rope_orig_ctx) inv_freq = m->inv_freq_long;

    pthread_mutex_lock(&m->compute_mu);
    cm_ctx *c = m->cm;
    for (size_t t = 0; t < n; t++) {
        lm_token id = ids[t];
        if (id < 0 || id >= hp->n_vocab) id = 0; /* callers validate; never read out of bounds */
        cm_dequant_row(&m->tok_embd, (size_t)id, b->x + t * E);
    }
    for (int32_t l = 0; l < hp->n_layer; l++) {
        const lm_layer *L = &m->layers[l];
        for (size_t t = 0; t < n; t++) cm_rmsnorm(b->xb + t * E, b->x + t * E, L->attn_norm, E, hp->norm_eps);
        cm_matmul(c, &L->wq, b->xb, n, b->q);
        cm_matmul(c, &L->wk, b->xb, n, b->k);
        cm_matmul(c, &L->wv, b->xb, n, b->v);
        add_bias(b->q, L->bq, n, Q);
        add_bias(b->k, L->bk, n, KV);
        add_bias(b->v, L->bv, n, KV);
        float *kc = kv->k + (size_t)l * kv->layer_stride, *vc = kv->v + (size_t)l * kv->layer_stride;
        for (size_t t = 0; t < n; t++) {
            size_t pos = pos0 + t;
            for (size_t h = 0; h < H; h++) {
                float *qh = b->q + t * Q + h * D;
                if (L->q_norm) cm_rmsnorm(qh, qh, L->q_norm, D, hp->norm_eps);
                cm_rope(qh, (size_t)hp->n_rot, pos, inv_freq, hp->rope_attn_factor, hp->rope_interleaved);
            }
            for (size_t h = 0; h < HKV; h++) {
                float *kh = b->k + t * KV + h * D;
                if (L->k_norm) cm_rmsnorm(kh, kh, L->k_norm, D, hp->norm_eps);
                cm_rope(kh, (size_t)hp->n_rot, pos, inv_freq, hp->rope_attn_factor, hp->rope_interleaved);
                memcpy(kc + (h * kv->n_ctx + pos) * D, kh, D * sizeof(float));
                memcpy(vc + (h * kv->n_ctx + pos) * D, b->v + t * KV + h * D, D * sizeof(float));
            }
        }
        cm_attention(c, b->att, b->q, kc, vc, n, pos0, H, HKV, D, kv->n_ctx, scale, (size_t)hp->sliding_window);
        cm_matmul(c, &L->wo, b->att, n, b->o);
        cm_add(b->x, b->o, n * E);
        for (size_t t = 0; t < n; t++) cm_rmsnorm(b->xb + t * E, b->x + t * E, L->ffn_norm, E, hp->norm_eps);
        cm_matmul(c, &L->w_gate, b->xb, n, b->gate);
        cm_matmul(c, &L->w_up, b->xb, n, b->up);
        cm_swiglu(b->h, b->gate, b->up, n * F);
        cm_matmul(c, &L->w_down, b->h, n, b->o);
        cm_add(b->x, b->o, n * E);
    }
    if (all_logits) {
        for (size_t t = 0; t < n; t++) cm_rmsnorm(b->xb + t * E, b->x + t * E, m->output_norm, E, hp->norm_eps);
        cm_matmul(c, &m->output, b->xb, n, all_logits);
        if (logits) memcpy(logits, all_logits + (n - 1) * (size_t)hp->n_vocab, (size_t)hp->n_vocab * sizeof(float));
    } else if (logits) {
        cm_rmsnorm(b->xb, b->x + (n - 1) * E, m->output_norm, E, hp->norm_eps);
        cm_matmul(c, &m->output, b->xb, 1, logits);
    }
    pthread_mutex_unlock(&m->compute_mu);
}
