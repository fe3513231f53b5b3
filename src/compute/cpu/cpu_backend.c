/* compute/cpu/cpu_backend.c: the CPU backend: compute/backend.h's operations on the CPU kernels.
 * Owns: the kernels chosen once for this CPU (each matrix's plan, made at load), the passes of a
 * layer over a batch of several sequences (embedding, Q/K/V with biases, q/k norms, RoPE and the
 * cache write, attention per sequence, projections with the residual add fused with the next
 * norm, SwiGLU, logits) and KV caches in host memory.
 * Shapes: x (n, n_embd); q (n, n_head, head_dim); k, v (n, n_head_kv, head_dim); a cache per
 * layer (n_head_kv, n_ctx, head_dim) of F16 or F32, K stored with RoPE applied.
 * The per-token passes are split over the pool by tokens once there are four tokens or more (the
 * products and attention split themselves). */
#include "compute/cpu/ctx.h"

#include <math.h>

typedef struct cpu_impl {
    uint32_t features;
    const char *name;
} cpu_impl;

struct cm_kv {
    void *k, *v;
    uint32_t type;            /* CM_F16 or CM_F32 */
    size_t n_ctx;
    size_t layer_stride;      /* elements per layer */
};

static size_t esz_of(uint32_t type) { return type == CM_F16 ? sizeof(uint16_t) : sizeof(float); }

/* ---- weights ---- */

static cm_matrix *net_matrix(cm_net *net, size_t i) {
    size_t nl = (size_t)net->n_layer;
    if (i == 7 * nl) return &net->tok_embd;
    if (i == 7 * nl + 1) return &net->output;
    cm_layer *L = &net->layers[i / 7];
    cm_matrix *all[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return all[i % 7];
}

/* What prepare made: the plans, and the repacked copies of matrices (one per distinct source: a
 * tied output matrix shares the embedding's). */
typedef struct cpu_weights {
    uint8_t *plans;
    void **bufs;
    size_t n_bufs;
    const void **orig;        /* each matrix's data before prepare, put back by release */
} cpu_weights;

static void weights_free(cpu_weights *cw) {
    if (!cw) return;
    for (size_t i = 0; i < cw->n_bufs; i++) lm_free(cw->bufs[i]);
    lm_free(cw->bufs);
    lm_free(cw->plans);
    lm_free(cw->orig);
    lm_free(cw);
}

static lm_status cpu_prepare(const cm_backend *be, cm_net *net, lm_progress_fn progress, void *user,
                             lm_error *err) {
    const cpu_impl *im = be->impl;
    size_t n = 7 * (size_t)net->n_layer + 2, sz = cm_plan_size();
    cpu_weights *cw = lm_calloc(1, sizeof *cw);
    if (cw) {
        cw->plans = lm_calloc(n, sz);
        cw->bufs = lm_calloc(n, sizeof *cw->bufs);
        cw->orig = lm_calloc(n, sizeof *cw->orig);
    }
    const void **src = lm_calloc(n, sizeof *src); /* the original data of each repacked buffer */
    if (!cw || !cw->plans || !cw->bufs || !cw->orig || !src) {
        weights_free(cw);
        lm_free(src);
        return lm_fail_nomem(err, "kernel plans");
    }
    lm_status st = LM_OK;
    for (size_t i = 0; i < n && !st; i++) {
        cm_matrix *w = net_matrix(net, i);
        cm_plan *p = (cm_plan *)(cw->plans + i * sz);
        cm_plan_init(p, w, im->features);
        w->plan = p;
        cw->orig[i] = w->data;
        size_t bytes = p->r16 ? cm_r16_bytes(w) : p->r16m ? cm_r16m_bytes(w) : 0;
        if (!bytes) continue;
        /* repacked once per source: the output matrix of a tied model is the embedding */
        void *buf = NULL;
        for (size_t k = 0; k < cw->n_bufs && !buf; k++)
            if (src[k] == w->data) buf = cw->bufs[k];
        if (!buf) {
            buf = lm_malloc(bytes);
            if (!buf) {
                st = lm_fail(err, LM_ERR_NOMEM, "out of memory repacking a %zu x %zu matrix (%zu MB)", w->rows, w->cols,
                             bytes >> 20);
                break;
            }
            /* in slices, each source slice let go once packed: never both copies of a big matrix */
            for (size_t r0 = 0; r0 < w->rows; r0 += 4096) {
                size_t r1 = LM_MIN(w->rows, r0 + 4096);
                if (p->r16m) cm_r16m_pack_rows(w, buf, r0, r1);
                else cm_r16_pack_rows(w, buf, r0, r1);
                if (net->drop) net->drop(net->drop_user, (const uint8_t *)w->data + r0 * w->row_bytes, (r1 - r0) * w->row_bytes);
                if (net->drop && p->r16m) { /* MLX: the scales and biases went into the packed copy too */
                    size_t sz = w->sb_type == CM_F32 ? 4 : 2, ng = w->cols / w->group_size;
                    net->drop(net->drop_user, (const uint8_t *)w->scales + r0 * ng * sz, (r1 - r0) * ng * sz);
                    net->drop(net->drop_user, (const uint8_t *)w->biases + r0 * ng * sz, (r1 - r0) * ng * sz);
                }
            }
            src[cw->n_bufs] = w->data;
            cw->bufs[cw->n_bufs++] = buf;
        }
        w->data = buf;
        p->packed = true;
    }
    lm_free(src);
    (void)progress;
    (void)user;
    net->backend_data = cw;
    if (st) {
        cm_backend_ops const *ops = be->ops;
        ops->release(be, net);
    }
    return st;
}

static void cpu_release(const cm_backend *be, cm_net *net) {
    (void)be;
    cpu_weights *cw = net->backend_data;
    for (size_t i = 0; cw && i < 7 * (size_t)net->n_layer + 2; i++) {
        cm_matrix *w = net_matrix(net, i);
        w->plan = NULL;
        if (cw->orig[i]) w->data = cw->orig[i];
    }
    weights_free(cw);
    net->backend_data = NULL;
}

/* ---- contexts ---- */

static void cpu_ctx_free(cm_ctx *c) {
    if (!c) return;
    float *bufs[] = {c->x, c->xb, c->q, c->k, c->v, c->att, c->gate, c->up, c->o, c->logits, c->rope_cs,
                     c->attn_scratch};
    for (size_t i = 0; i < LM_ARRAY_LEN(bufs); i++) lm_free(bufs[i]);
    lm_free(c->inv_freq);
    lm_free(c->pos);
    lm_free(c->seq_of);
    lm_free(c->attn_args);
    cm_ctx_free(c);
}

static float *alloc_rows(size_t rows, size_t width, bool *ok) {
    size_t n;
    if (!lm_mul_ok(rows, width, &n) || !lm_mul_ok(n, sizeof(float), &n)) {
        *ok = false;
        return NULL;
    }
    float *p = lm_malloc(n ? n : 1);
    if (!p) *ok = false;
    return p;
}

static lm_status cpu_ctx_new(const cm_backend *be, const cm_net *net, const cm_ctx_params *p, cm_ctx **out,
                             lm_error *err) {
    const cpu_impl *im = be->impl;
    *out = NULL;
    int nth = p->n_threads > 0 ? p->n_threads : lm_cpu_count();
    lm_pool *pool = lm_pool_new(nth);
    if (!pool) return lm_fail_nomem(err, "thread pool");
    cm_ctx *c = cm_ctx_new(pool, im->features == 0);
    if (!c) {
        lm_pool_free(pool);
        return lm_fail_nomem(err, "compute context");
    }
    c->own_pool = true;
    c->features = im->features;
    c->kernels = im->name;
    c->attn = cm_attn_kernels_get(im->features);
    c->net = net;
    size_t T = LM_MAX(p->max_tokens, (size_t)1), S = LM_MAX(p->max_seqs, (size_t)1);
    c->max_tokens = T;
    c->max_seqs = S;
    c->max_logits = LM_MAX(p->max_logits, (size_t)1);
    c->max_ctx = p->max_ctx;
    size_t E = (size_t)net->n_embd, Q = (size_t)net->n_head * (size_t)net->head_dim;
    size_t KV = (size_t)net->n_head_kv * (size_t)net->head_dim, F = (size_t)net->n_ff;
    size_t R = (size_t)LM_MAX(net->n_rot, 2);
    bool ok = true;
    c->x = alloc_rows(T, E, &ok);
    c->xb = alloc_rows(T, E, &ok);
    c->o = alloc_rows(T, E, &ok);
    c->q = alloc_rows(T, Q, &ok);
    c->k = alloc_rows(T, KV, &ok);
    c->v = alloc_rows(T, KV, &ok);
    c->att = alloc_rows(T, Q, &ok);
    c->gate = alloc_rows(T, F, &ok);
    c->up = alloc_rows(T, F, &ok);
    c->logits = alloc_rows(c->max_logits, (size_t)net->n_vocab, &ok);
    c->rope_cs = alloc_rows(T, R, &ok);
    c->attn_scratch = alloc_rows((size_t)c->nth, cm_attention_scratch((size_t)net->head_dim), &ok);
    c->inv_freq = lm_calloc(T, sizeof *c->inv_freq);
    c->pos = lm_calloc(T, sizeof *c->pos);
    c->seq_of = lm_calloc(T, sizeof *c->seq_of);
    c->attn_args = lm_calloc(S, sizeof *c->attn_args);
    size_t max_cols = LM_MAX(LM_MAX(E, F), Q);
    if (!ok || !c->inv_freq || !c->pos || !c->seq_of || !c->attn_args || !cm_ctx_reserve(c, T, max_cols)) {
        cpu_ctx_free(c);
        return lm_fail(err, LM_ERR_NOMEM, "out of memory for the compute scratch of %zu tokens per pass (%zu sequences)",
                       T, S);
    }
    *out = c;
    return LM_OK;
}

/* ---- KV caches ---- */

static void cpu_kv_free(cm_kv *kv) {
    if (!kv) return;
    lm_free(kv->k);
    lm_free(kv->v);
    lm_free(kv);
}

static lm_status cpu_kv_new(cm_ctx *c, size_t n_ctx, uint32_t type, cm_kv **out, lm_error *err) {
    const cm_net *net = c->net;
    *out = NULL;
    size_t per_layer, total;
    if (!lm_mul_ok((size_t)net->n_head_kv * (size_t)net->head_dim, n_ctx, &per_layer) ||
        !lm_mul_ok(per_layer, (size_t)net->n_layer, &total) || !lm_mul_ok(total, esz_of(type), &total))
        return lm_fail(err, LM_ERR_NOMEM, "a KV cache of %zu tokens does not fit in memory", n_ctx);
    cm_kv *kv = lm_calloc(1, sizeof *kv);
    if (kv) {
        kv->k = lm_malloc(total ? total : 1);
        kv->v = lm_malloc(total ? total : 1);
    }
    if (!kv || !kv->k || !kv->v) {
        cpu_kv_free(kv);
        return lm_fail(err, LM_ERR_NOMEM, "out of memory for a KV cache of %zu tokens (%zu MB)", n_ctx,
                       2 * total >> 20);
    }
    kv->type = type;
    kv->n_ctx = n_ctx;
    kv->layer_stride = per_layer;
    *out = kv;
    return LM_OK;
}

static void cpu_kv_truncate(cm_kv *kv, size_t n) {
    (void)kv; /* positions >= n are simply written again */
    (void)n;
}

/* ---- the per-token passes, one kind per pool run, split by tokens ---- */

enum { TOK_EMBED, TOK_PREP, TOK_ADDNORM };

typedef struct tok_job {
    int kind;
    cm_ctx *c;
    const cm_batch *b;
    int layer;
    const float *norm;  /* TOK_ADDNORM: the norm after the residual add, or NULL */
    size_t n;           /* rows [0, n) */
} tok_job;

/* Bias, optional per-head RMSNorm and RoPE of one head row x[D], in place. */
static void prep_head(float *x, const float *bias, const float *norm, const float *cs, const cm_net *net) {
    size_t D = (size_t)net->head_dim;
    if (bias) cm_add(x, bias, D);
    if (norm) cm_rmsnorm(x, x, norm, D, net->norm_eps);
    cm_rope_apply(x, (size_t)net->n_rot, cs, net->rope_interleaved);
}

static void tok_range(const tok_job *j, size_t t0, size_t t1) {
    cm_ctx *c = j->c;
    const cm_net *net = c->net;
    size_t E = (size_t)net->n_embd, H = (size_t)net->n_head, HKV = (size_t)net->n_head_kv, D = (size_t)net->head_dim;
    size_t Q = H * D, KV = HKV * D, R = (size_t)LM_MAX(net->n_rot, 2);
    switch (j->kind) {
    case TOK_EMBED:
        for (size_t t = t0; t < t1; t++) {
            lm_token id = j->b->ids[t];
            if (id < 0 || id >= net->n_vocab) id = 0; /* callers validate; never read out of bounds */
            cm_dequant_row(&net->tok_embd, (size_t)id, c->x + t * E);
            cm_rope_cs(c->rope_cs + t * R, (size_t)net->n_rot, c->pos[t], c->inv_freq[t], net->rope_attn_factor);
            cm_rmsnorm(c->xb + t * E, c->x + t * E, net->layers[0].attn_norm, E, net->norm_eps);
        }
        break;
    case TOK_PREP: {
        const cm_layer *L = &net->layers[j->layer];
        for (size_t t = t0; t < t1; t++) {
            const cm_kv *kv = j->b->seqs[c->seq_of[t]].kv;
            size_t esz = esz_of(kv->type);
            uint8_t *kc = (uint8_t *)kv->k + (size_t)j->layer * kv->layer_stride * esz;
            uint8_t *vc = (uint8_t *)kv->v + (size_t)j->layer * kv->layer_stride * esz;
            const float *cs = c->rope_cs + t * R;
            for (size_t h = 0; h < H; h++)
                prep_head(c->q + t * Q + h * D, L->bq ? L->bq + h * D : NULL, L->q_norm, cs, net);
            for (size_t h = 0; h < HKV; h++) {
                float *kh = c->k + t * KV + h * D, *vh = c->v + t * KV + h * D;
                size_t row = (h * kv->n_ctx + c->pos[t]) * D * esz;
                prep_head(kh, L->bk ? L->bk + h * D : NULL, L->k_norm, cs, net);
                cm_kv_store(c, kv->type, kc + row, kh, D);
                if (L->bv) cm_add(vh, L->bv + h * D, D);
                cm_kv_store(c, kv->type, vc + row, vh, D);
            }
        }
        break;
    }
    default: /* TOK_ADDNORM */
        for (size_t t = t0; t < t1; t++) {
            if (j->norm) cm_add_rmsnorm(c->x + t * E, c->o + t * E, c->xb + t * E, j->norm, E, net->norm_eps);
            else cm_add(c->x + t * E, c->o + t * E, E);
        }
        break;
    }
}

static void tok_task(void *ctx, int ith, int nth) {
    const tok_job *j = ctx;
    tok_range(j, j->n * (size_t)ith / (size_t)nth, j->n * (size_t)(ith + 1) / (size_t)nth);
}

/* Runs one per-token pass: over the pool when there are enough tokens to pay for the wake-up
 * (a few microseconds, about one 1k-wide norm per token), else on the caller's thread. */
static void tok_run(cm_ctx *c, tok_job *j) {
    if (c->nth > 1 && j->n >= 4) lm_pool_run(c->pool, tok_task, j);
    else tok_range(j, 0, j->n);
}

/* ---- the operations ---- */

/* A forward pass runs with subnormals off on the caller's thread as on the pool's (core.h:
 * lm_fp_subnormals_off); cpu_end gives the caller its own state back. */
static void cpu_begin(cm_ctx *c, const cm_batch *b) {
    const cm_net *net = c->net;
    c->fp_saved = lm_fp_subnormals_off();
    for (size_t s = 0; s < b->n_seq; s++) {
        const cm_seq *q = &b->seqs[s];
        const float *inv = net->inv_freq;
        if (net->inv_freq_long && q->kv->n_ctx > (size_t)net->rope_orig_ctx) inv = net->inv_freq_long;
        for (size_t i = 0; i < q->n; i++) {
            c->pos[q->t0 + i] = q->pos0 + i;
            c->inv_freq[q->t0 + i] = inv;
            c->seq_of[q->t0 + i] = s;
        }
    }
    tok_job j = {.kind = TOK_EMBED, .c = c, .b = b, .n = b->n_tok};
    tok_run(c, &j);
}

static void cpu_qkv(cm_ctx *c, int l, const cm_batch *b) {
    const cm_layer *L = &c->net->layers[l];
    const cm_matrix *w[3] = {&L->wq, &L->wk, &L->wv};
    float *y[3] = {c->q, c->k, c->v};
    cm_matmul_multi(c, w, 3, c->xb, b->n_tok, y);
    tok_job j = {.kind = TOK_PREP, .c = c, .b = b, .layer = l, .n = b->n_tok};
    tok_run(c, &j);
}

static void cpu_attention(cm_ctx *c, int l, const cm_batch *b, bool logits_only) {
    const cm_net *net = c->net;
    size_t E = (size_t)net->n_embd, D = (size_t)net->head_dim, Q = (size_t)net->n_head * D;
    size_t n_args = 0, row = 0;
    for (size_t s = 0; s < b->n_seq; s++) {
        const cm_seq *q = &b->seqs[s];
        size_t skip = logits_only ? q->n - q->n_logits : 0, nq = q->n - skip;
        if (!nq) continue;
        const cm_kv *kv = q->kv;
        size_t esz = esz_of(kv->type);
        cm_attn_args *a = &c->attn_args[n_args++];
        memset(a, 0, sizeof *a);
        a->out = c->att + (logits_only ? row : q->t0) * Q;
        a->q = c->q + (q->t0 + skip) * Q;
        a->k = (const uint8_t *)kv->k + (size_t)l * kv->layer_stride * esz;
        a->v = (const uint8_t *)kv->v + (size_t)l * kv->layer_stride * esz;
        a->kv_type = kv->type;
        a->n_tok = nq;
        a->pos0 = q->pos0 + skip;
        a->n_head = (size_t)net->n_head;
        a->n_head_kv = (size_t)net->n_head_kv;
        a->hd = D;
        a->ctx_stride = kv->n_ctx;
        a->window = (size_t)net->sliding_window;
        a->scale = 1.0f / sqrtf((float)D);
        a->scratch = c->attn_scratch;
        row += nq;
    }
    cm_attention_multi(c, c->attn_args, n_args);
    if (!logits_only) return;
    /* the rows that go on to the logits, moved to the front (in order: a row never moves back) */
    row = 0;
    for (size_t s = 0; s < b->n_seq; s++) {
        const cm_seq *q = &b->seqs[s];
        size_t from = q->t0 + q->n - q->n_logits;
        if (q->n_logits && from != row) memmove(c->x + row * E, c->x + from * E, q->n_logits * E * sizeof(float));
        row += q->n_logits;
    }
}

static float *buf_of(cm_ctx *c, enum cm_buf id) {
    switch (id) {
    case CM_BUF_X: return c->x;
    case CM_BUF_XB: return c->xb;
    case CM_BUF_Q: return c->q;
    case CM_BUF_ATT: return c->att;
    default: return c->gate; /* CM_BUF_H: SwiGLU works in place in gate */
    }
}

static void cpu_project_add(cm_ctx *c, const cm_matrix *w, enum cm_buf src, size_t n, const float *norm) {
    if (!n) return;
    cm_matmul(c, w, buf_of(c, src), n, c->o);
    tok_job j = {.kind = TOK_ADDNORM, .c = c, .norm = norm, .n = n};
    tok_run(c, &j);
}

static void cpu_gate_up(cm_ctx *c, const cm_layer *L, size_t n) {
    if (!n) return;
    const cm_matrix *w[2] = {&L->w_gate, &L->w_up};
    float *y[2] = {c->gate, c->up};
    cm_matmul_multi(c, w, 2, c->xb, n, y);
    cm_swiglu(c, c->gate, c->up, n * (size_t)c->net->n_ff);
}

static void logits_out(cm_ctx *c, const cm_batch *b) {
    const cm_net *net = c->net;
    size_t V = (size_t)net->n_vocab;
    /* one sequence wanting logits: straight into its memory */
    const cm_seq *only = NULL;
    size_t n_with = 0;
    for (size_t s = 0; s < b->n_seq; s++)
        if (b->seqs[s].n_logits) {
            only = &b->seqs[s];
            n_with++;
        }
    if (n_with == 1) {
        cm_matmul(c, &net->output, c->xb, b->n_logits, only->logits);
        return;
    }
    cm_matmul(c, &net->output, c->xb, b->n_logits, c->logits);
    size_t row = 0;
    for (size_t s = 0; s < b->n_seq; s++) {
        const cm_seq *q = &b->seqs[s];
        if (q->n_logits) memcpy(q->logits, c->logits + row * V, q->n_logits * V * sizeof(float));
        row += q->n_logits;
    }
}

static void cpu_end(cm_ctx *c, const cm_batch *b) {
    if (b->n_logits) logits_out(c, b);
    lm_fp_restore(c->fp_saved);
}

static const char *cpu_describe(const cm_backend *be) { return ((const cpu_impl *)be->impl)->name; }

static void cpu_free(cm_backend *be) {
    if (!be) return;
    lm_free(be->impl);
    lm_free(be);
}

static const cm_backend_ops CPU_OPS = {
    .name = "cpu",
    .prepare = cpu_prepare,
    .release = cpu_release,
    .ctx_new = cpu_ctx_new,
    .ctx_free = cpu_ctx_free,
    .kv_new = cpu_kv_new,
    .kv_truncate = cpu_kv_truncate,
    .kv_free = cpu_kv_free,
    .begin = cpu_begin,
    .qkv = cpu_qkv,
    .attention = cpu_attention,
    .project_add = cpu_project_add,
    .gate_up = cpu_gate_up,
    .end = cpu_end,
    .describe = cpu_describe,
    .free = cpu_free,
};

lm_status cm_backend_cpu_new(bool force_ref, cm_backend **out, lm_error *err) {
    *out = NULL;
    cm_backend *be = lm_calloc(1, sizeof *be);
    cpu_impl *im = lm_calloc(1, sizeof *im);
    if (!be || !im) {
        lm_free(be);
        lm_free(im);
        return lm_fail_nomem(err, "CPU backend");
    }
    im->features = cm_cpu_features(force_ref);
    im->name = cm_cpu_kernels_name(im->features);
    be->ops = &CPU_OPS;
    be->impl = im;
    *out = be;
    return LM_OK;
}
