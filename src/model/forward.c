/* model/forward.c: the one forward pass of every architecture in the table, for a micro-batch
 * of tokens (one matrix-matrix product per weight per layer), with the KV cache.
 * Shapes: x (n, n_embd); q (n, n_head, head_dim); k, v (n, n_head_kv, head_dim);
 * cache per layer (n_head_kv, n_ctx, head_dim) in F16 or F32.
 * Passes over the activations are fused where they meet: each residual add with the norm after
 * it, bias + q/k-norm + RoPE + the cache write per head row while it is in L1, SwiGLU in place;
 * the RoPE sines are computed once per position for all layers. With four tokens or more these
 * per-token passes are split over the pool by tokens (the matmuls and attention split themselves).
 * The last layer goes past its cache write only for the rows whose logits are asked for. */
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

/* The per-token passes of a micro-batch, one kind per pool run, split by tokens. */
enum { TOK_EMBED, TOK_PREP, TOK_ADDNORM };

typedef struct tok_job {
    int kind;
    const lm_model *m;
    const lm_layer *L;
    const cm_ctx *c;
    const lm_kv *kv;
    lm_fwd_buf *b;
    const lm_token *ids;
    const float *inv_freq;
    const float *norm; /* TOK_ADDNORM: the norm after the residual add */
    uint8_t *kc, *vc;  /* TOK_PREP: this layer's cache */
    size_t t0, n, pos0; /* tokens t0..n-1 of the micro-batch at positions pos0.. */
} tok_job;

static void tok_range(const tok_job *j, size_t t0, size_t t1) {
    const lm_hparams *hp = &j->m->hp;
    lm_fwd_buf *b = j->b;
    size_t E = (size_t)hp->n_embd, H = (size_t)hp->n_head, HKV = (size_t)hp->n_head_kv, D = (size_t)hp->head_dim;
    size_t Q = H * D, KV = HKV * D, R = (size_t)LM_MAX(hp->n_rot, 2);
    switch (j->kind) {
    case TOK_EMBED:
        for (size_t t = t0; t < t1; t++) {
            lm_token id = j->ids[t];
            if (id < 0 || id >= hp->n_vocab) id = 0; /* callers validate; never read out of bounds */
            cm_dequant_row(&j->m->tok_embd, (size_t)id, b->x + t * E);
            cm_rope_cs(b->rope_cs + t * R, (size_t)hp->n_rot, j->pos0 + t, j->inv_freq, hp->rope_attn_factor);
            cm_rmsnorm(b->xb + t * E, b->x + t * E, j->m->layers[0].attn_norm, E, hp->norm_eps);
        }
        break;
    case TOK_PREP: {
        const lm_layer *L = j->L;
        size_t esz = j->kv->type == CM_F16 ? sizeof(uint16_t) : sizeof(float);
        for (size_t t = t0; t < t1; t++) {
            size_t pos = j->pos0 + t;
            const float *cs = b->rope_cs + t * R;
            for (size_t h = 0; h < H; h++)
                prep_head(b->q + t * Q + h * D, L->bq ? L->bq + h * D : NULL, L->q_norm, cs, hp);
            for (size_t h = 0; h < HKV; h++) {
                float *kh = b->k + t * KV + h * D, *vh = b->v + t * KV + h * D;
                size_t row = (h * j->kv->n_ctx + pos) * D * esz;
                prep_head(kh, L->bk ? L->bk + h * D : NULL, L->k_norm, cs, hp);
                cm_kv_store(j->c, j->kv->type, j->kc + row, kh, D);
                if (L->bv) cm_add(vh, L->bv + h * D, D);
                cm_kv_store(j->c, j->kv->type, j->vc + row, vh, D);
            }
        }
        break;
    }
    default: /* TOK_ADDNORM */
        for (size_t t = t0; t < t1; t++)
            cm_add_rmsnorm(b->x + t * E, b->o + t * E, b->xb + t * E, j->norm, E, hp->norm_eps);
        break;
    }
}

static void tok_task(void *ctx, int ith, int nth) {
    const tok_job *j = ctx;
    size_t n = j->n - j->t0;
    tok_range(j, j->t0 + n * (size_t)ith / (size_t)nth, j->t0 + n * (size_t)(ith + 1) / (size_t)nth);
}

/* Runs one per-token pass: over the pool when there are enough tokens to pay for the wake-up
 * (a few microseconds, about one 1k-wide norm per token), else on the caller's thread. */
static void tok_run(cm_ctx *c, tok_job *j) {
    lm_pool *pool = cm_ctx_pool(c);
    if (pool && cm_ctx_threads(c) > 1 && j->n - j->t0 >= 4)
        lm_pool_run(pool, tok_task, j);
    else
        tok_range(j, j->t0, j->n);
}

void lm_forward(const lm_model *mc, lm_kv *kv, lm_fwd_buf *b, const lm_token *ids, size_t n,
                size_t pos0, float *logits, float *all_logits) {
    lm_model *m = (lm_model *)mc; /* the compute context is mutable scratch, guarded by the lock */
    const lm_hparams *hp = &m->hp;
    size_t E = (size_t)hp->n_embd, H = (size_t)hp->n_head, HKV = (size_t)hp->n_head_kv, D = (size_t)hp->head_dim;
    size_t Q = H * D, F = (size_t)hp->n_ff;
    size_t esz = kv->type == CM_F16 ? sizeof(uint16_t) : sizeof(float);
    const float *inv_freq = m->inv_freq;
    if (m->inv_freq_long && kv->n_ctx > (size_t)m->rope_orig_ctx) inv_freq = m->inv_freq_long;
    if (n == 0) return;

    pthread_mutex_lock(&m->compute_mu);
    cm_ctx *c = m->cm;
    tok_job tj = {.kind = TOK_EMBED, .m = m, .c = c, .kv = kv, .b = b, .ids = ids, .inv_freq = inv_freq,
                  .n = n, .pos0 = pos0};
    tok_run(c, &tj);
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
        tj.kind = TOK_PREP;
        tj.L = L;
        tj.kc = kc;
        tj.vc = vc;
        tok_run(c, &tj);
        /* the last layer's rows past its cache write only feed the logits: without all_logits
         * only the last token's row goes on (and none when no logits are asked for) */
        size_t t0 = 0;
        if (l + 1 == hp->n_layer && !all_logits) {
            if (!logits) break;
            t0 = n - 1;
        }
        size_t nr = n - t0;
        aa.k = kc;
        aa.v = vc;
        aa.n_tok = nr;
        aa.pos0 = pos0 + t0;
        aa.q = b->q + t0 * Q;
        aa.out = b->att + t0 * Q;
        cm_attention(c, &aa);
        cm_matmul(c, &L->wo, b->att + t0 * Q, nr, b->o + t0 * E);
        tj.kind = TOK_ADDNORM;
        tj.norm = L->ffn_norm;
        tj.t0 = t0;
        tok_run(c, &tj);
        const cm_matrix *gu_w[2] = {&L->w_gate, &L->w_up};
        float *gu_y[2] = {b->gate + t0 * F, b->up + t0 * F};
        cm_matmul_multi(c, gu_w, 2, b->xb + t0 * E, nr, gu_y);
        cm_swiglu(c, b->gate + t0 * F, b->up + t0 * F, nr * F);
        cm_matmul(c, &L->w_down, b->gate + t0 * F, nr, b->o + t0 * E);
        /* the residual add, then the norm the next layer (or the output head) starts with */
        tj.kind = TOK_ADDNORM;
        tj.norm = l + 1 < hp->n_layer ? m->layers[l + 1].attn_norm : m->output_norm;
        tok_run(c, &tj);
        tj.t0 = 0;
    }
    if (all_logits) {
        cm_matmul(c, &m->output, b->xb, n, all_logits);
        if (logits) memcpy(logits, all_logits + (n - 1) * (size_t)hp->n_vocab, (size_t)hp->n_vocab * sizeof(float));
    } else if (logits) {
        cm_matmul(c, &m->output, b->xb + (n - 1) * E, 1, logits);
    }
    pthread_mutex_unlock(&m->compute_mu);
}
