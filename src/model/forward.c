/* model/forward.c: the one forward pass of every architecture in the table, for a micro-batch
 * of tokens (one matrix-matrix product per weight per layer), with the KV cache.
 * Shapes: x (n, n_embd); q (n, n_head, head_dim); k, v (n, n_head_kv, head_dim);
 * cache per layer (n_head_kv, n_ctx, head_dim) in F16 or F32.
 * Passes over the activations are fused where they meet: each residual add with the norm after
 * it, bias + q/k-norm + RoPE + the cache write per head row while it is in L1, SwiGLU in place;
 * the RoPE sines are computed once per position for all layers. */
#include "model/model.h"

#include <math.h>

lm_status lm_kv_init(lm_kv *kv, const lm_model *m, size_t n_ctx, bool f32) {
    memset(kv, 0, sizeof *kv);
    const lm_hparams *hp = &m->hp;
    size_t esz = f32 ? sizeof(float) : sizeof(uint16_t);
    size_t per_layer, total, scratch;
    if (!lm_mul_ok((size_t)hp->n_head_kv * (size_t)hp->head_dim, n_ctx, &per_layer) ||
        !lm_mul_ok(per_layer, (size_t)hp->n_layer, &total) || !lm_mul_ok(total, esz, &total) ||
        !lm_mul_ok(cm_attention_scratch((size_t)hp->head_dim), (size_t)cm_ctx_threads(m->cm), &scratch) ||
        !lm_mul_ok(scratch, sizeof(float), &scratch))
        return LM_ERR_NOMEM;
    kv->k = lm_malloc(total);
    kv->v = lm_malloc(total);
    kv->attn_scratch = lm_malloc(scratch);
    if (!kv->k || !kv->v || !kv->attn_scratch) {
        lm_kv_free(kv);
        return LM_ERR_NOMEM;
    }
    kv->type = f32 ? CM_F32 : CM_F16;
    kv->n_ctx = n_ctx;
    kv->layer_stride = per_layer;
    return LM_OK;
}

void lm_kv_free(lm_kv *kv) {
    lm_free(kv->k);
    lm_free(kv->v);
    lm_free(kv->attn_scratch);
    memset(kv, 0, sizeof *kv);
}

lm_status lm_fwd_buf_init(lm_fwd_buf *b, const lm_model *m, size_t n) {
    memset(b, 0, sizeof *b);
    const lm_hparams *hp = &m->hp;
    size_t E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim, KV = (size_t)hp->n_head_kv * hp->head_dim;
    size_t F = (size_t)hp->n_ff, R = (size_t)LM_MAX(hp->n_rot, 2);
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
    b->logits = lm_malloc((size_t)hp->n_vocab * sizeof(float));
    b->rope_cs = lm_malloc(n * R * sizeof(float));
    if (!b->x || !b->xb || !b->q || !b->k || !b->v || !b->att || !b->o || !b->gate || !b->up || !b->logits ||
        !b->rope_cs) {
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
    lm_free(b->logits);
    lm_free(b->rope_cs);
    memset(b, 0, sizeof *b);
}

/* Bias, optional per-head RMSNorm and RoPE of one head row x[D], in place. */
static void prep_head(float *x, const float *bias, const float *norm, const float *cs, const lm_hparams *hp) {
    size_t D = (size_t)hp->head_dim;
    if (bias) cm_add(x, bias, D);
    if (norm) cm_rmsnorm(x, x, norm, D, hp->norm_eps);
    cm_rope_apply(x, (size_t)hp->n_rot, cs, hp->rope_interleaved);
}

void lm_forward(const lm_model *mc, lm_kv *kv, lm_fwd_buf *b, const lm_token *ids, size_t n,
                size_t pos0, float *logits, float *all_logits) {
    lm_model *m = (lm_model *)mc; /* the compute context is mutable scratch, guarded by the lock */
    const lm_hparams *hp = &m->hp;
    size_t E = (size_t)hp->n_embd, H = (size_t)hp->n_head, HKV = (size_t)hp->n_head_kv, D = (size_t)hp->head_dim;
    size_t Q = H * D, KV = HKV * D, F = (size_t)hp->n_ff, R = (size_t)LM_MAX(hp->n_rot, 2);
    size_t esz = kv->type == CM_F16 ? sizeof(uint16_t) : sizeof(float);
    const float *inv_freq = m->inv_freq;
    if (m->inv_freq_long && kv->n_ctx > (size_t)m->rope_orig_ctx) inv_freq = m->inv_freq_long;
    if (n == 0) return;

    pthread_mutex_lock(&m->compute_mu);
    cm_ctx *c = m->cm;
    for (size_t t = 0; t < n; t++) {
        lm_token id = ids[t];
        if (id < 0 || id >= hp->n_vocab) id = 0; /* callers validate; never read out of bounds */
        cm_dequant_row(&m->tok_embd, (size_t)id, b->x + t * E);
        cm_rope_cs(b->rope_cs + t * R, (size_t)hp->n_rot, pos0 + t, inv_freq, hp->rope_attn_factor);
        cm_rmsnorm(b->xb + t * E, b->x + t * E, m->layers[0].attn_norm, E, hp->norm_eps);
    }
    cm_attn_args aa = {
        .out = b->att, .q = b->q, .kv_type = kv->type, .n_tok = n, .pos0 = pos0, .n_head = H,
        .n_head_kv = HKV, .hd = D, .ctx_stride = kv->n_ctx, .window = (size_t)hp->sliding_window,
        .scale = 1.0f / sqrtf((float)D), .scratch = kv->attn_scratch,
    };
    for (int32_t l = 0; l < hp->n_layer; l++) {
        const lm_layer *L = &m->layers[l];
        /* xb holds this layer's attention norm of x (fused into the previous residual add);
         * Q, K and V share one quantization of it */
        const cm_matrix *qkv_w[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_y[3] = {b->q, b->k, b->v};
        cm_matmul_multi(c, qkv_w, 3, b->xb, n, qkv_y);
        uint8_t *kc = (uint8_t *)kv->k + (size_t)l * kv->layer_stride * esz;
        uint8_t *vc = (uint8_t *)kv->v + (size_t)l * kv->layer_stride * esz;
        for (size_t t = 0; t < n; t++) {
            size_t pos = pos0 + t;
            const float *cs = b->rope_cs + t * R;
            for (size_t h = 0; h < H; h++)
                prep_head(b->q + t * Q + h * D, L->bq ? L->bq + h * D : NULL, L->q_norm, cs, hp);
            for (size_t h = 0; h < HKV; h++) {
                float *kh = b->k + t * KV + h * D, *vh = b->v + t * KV + h * D;
                size_t row = (h * kv->n_ctx + pos) * D * esz;
                prep_head(kh, L->bk ? L->bk + h * D : NULL, L->k_norm, cs, hp);
                cm_kv_store(c, kv->type, kc + row, kh, D);
                if (L->bv) cm_add(vh, L->bv + h * D, D);
                cm_kv_store(c, kv->type, vc + row, vh, D);
            }
        }
        aa.k = kc;
        aa.v = vc;
        cm_attention(c, &aa);
        cm_matmul(c, &L->wo, b->att, n, b->o);
        for (size_t t = 0; t < n; t++)
            cm_add_rmsnorm(b->x + t * E, b->o + t * E, b->xb + t * E, L->ffn_norm, E, hp->norm_eps);
        const cm_matrix *gu_w[2] = {&L->w_gate, &L->w_up};
        float *gu_y[2] = {b->gate, b->up};
        cm_matmul_multi(c, gu_w, 2, b->xb, n, gu_y);
        cm_swiglu(c, b->gate, b->up, n * F);
        cm_matmul(c, &L->w_down, b->gate, n, b->o);
        /* the residual add, then the norm the next layer (or the output head) starts with */
        const float *next_norm = l + 1 < hp->n_layer ? m->layers[l + 1].attn_norm : m->output_norm;
        for (size_t t = 0; t < n; t++)
            cm_add_rmsnorm(b->x + t * E, b->o + t * E, b->xb + t * E, next_norm, E, hp->norm_eps);
    }
    if (all_logits) {
        cm_matmul(c, &m->output, b->xb, n, all_logits);
        if (logits) memcpy(logits, all_logits + (n - 1) * (size_t)hp->n_vocab, (size_t)hp->n_vocab * sizeof(float));
    } else if (logits) {
        cm_matmul(c, &m->output, b->xb + (n - 1) * E, 1, logits);
    }
    pthread_mutex_unlock(&m->compute_mu);
}
