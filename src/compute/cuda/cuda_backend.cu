/* compute/cuda/cuda_backend.cu: the CUDA backend: compute/backend.h's operations on an NVIDIA GPU.
 * Owns: finding the device, uploading a model's weights once in the device formats (repack_row;
 * Q, K and V of a layer concatenated and gate/up interleaved by 8 rows when their formats match,
 * so each is one product), compute contexts (every buffer sized at creation), KV caches in device
 * memory, the passes of a layer as kernel launches, and decode steps captured as CUDA graphs and
 * replayed.
 * A pass: begin writes the batch's tables (ids, positions, sequences, attention items) to pinned
 * memory and copies them to the device in one go, so a captured step reads new positions from the
 * same addresses; the ops launch kernels on the context's stream (or, replaying, launch nothing);
 * end launches the graph if any, copies each sequence's logits to its host memory and waits.
 * A norm after a residual add is not computed as a kernel of its own when the products that need
 * it take the float path: they normalize the residual stream as they stage it (cuda_mm.cu).
 * Does not own: the kernels (cuda_mm.cu, cuda_ops.cu) or the forward pass (model/forward.c). */
extern "C" {
#include "compute/backend.h"
}
#include "compute/cuda/cuda.h"
#include "compute/cuda/cuda_int.h"

#include <cuda_profiler_api.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Products of at most this many tokens take the float path; more take the tensor cores. */
#define CU_MMV_MAX 4
/* Decode steps of at most this many sequences are captured as graphs (the key is a bit mask). */
#define CU_GRAPH_SEQS 64
#define CU_GRAPHS 32
/* Bytes of device memory left free beyond the weights when a model is prepared (a context and a
 * cache must fit too). */
#define CU_HEADROOM ((size_t)256 << 20)

typedef struct cu_impl {
    int dev;
    int n_sm;
    char name[200];
    size_t weights, ctxs, kvs; /* bytes held, updated atomically */
} cu_impl;

static void mem_add(size_t *p, size_t n) { __atomic_fetch_add(p, n, __ATOMIC_RELAXED); }
static void mem_sub(size_t *p, size_t n) { __atomic_fetch_sub(p, n, __ATOMIC_RELAXED); }

static size_t free_mb(void) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) return 0;
    return fr >> 20;
}

/* ---- weights ---- */

typedef struct cu_layer {
    gw qkv, gu;                /* fused views; valid when qkv_fused / gu_fused */
    bool qkv_fused, gu_fused;
    const float *attn_norm, *ffn_norm, *q_norm, *k_norm, *bq, *bk, *bv;
} cu_layer;

typedef struct cu_net {
    void *mem;
    size_t bytes;
    gw *plans;                 /* one per matrix (net_matrix order): what cm_matrix.plan points to */
    cu_layer *layers;
    const float *out_norm, *inv, *inv_long;
    const float **norm_h, **norm_d; /* host norm arrays and their device copies */
    size_t n_norms;
    bool any_unfused_gu;
    cu_dims dims;
} cu_net;

static const char *const ROLE[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

static cm_matrix *net_matrix(cm_net *net, size_t i) {
    size_t nl = (size_t)net->n_layer;
    if (i == 7 * nl) return &net->tok_embd;
    if (i == 7 * nl + 1) return &net->output;
    cm_layer *L = &net->layers[i / 7];
    cm_matrix *all[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return all[i % 7];
}

static void matrix_name(const cm_net *net, size_t i, char *out, size_t cap) {
    size_t nl = (size_t)net->n_layer;
    if (i == 7 * nl) snprintf(out, cap, "token_embd");
    else if (i == 7 * nl + 1) snprintf(out, cap, "output");
    else snprintf(out, cap, "layer %zu %s", i / 7, ROLE[i % 7]);
}

static int sb_code(uint32_t t) { return t == CM_F16 ? 1 : t == CM_BF16 ? 2 : 0; }

bool finfo_of(const cm_matrix *m, finfo *f) {
    size_t c = m->cols;
    if (m->type == CM_MLX) {
        if (m->bits < 2 || m->bits > 8 || !m->group_size || m->group_size % 32 || c % m->group_size ||
            (m->sb_type != CM_F32 && m->sb_type != CM_F16 && m->sb_type != CM_BF16))
            return false;
        f->g = G_MLX2 + (int)m->bits - 2;
        f->q_row = c * m->bits / 8;
        f->s_row = c / m->group_size * (m->sb_type == CM_F32 ? 4 : 2);
        return true;
    }
    int g;
    size_t blk, qb, sb;
    switch (m->type) {
    case CM_F32: f->g = G_F32; f->q_row = (c * 4 + 15) & ~(size_t)15; f->s_row = 0; return true;
    case CM_F16: f->g = G_F16; f->q_row = (c * 2 + 15) & ~(size_t)15; f->s_row = 0; return true;
    case CM_BF16: f->g = G_BF16; f->q_row = (c * 2 + 15) & ~(size_t)15; f->s_row = 0; return true;
    case CM_Q4_0: g = G_Q4_0; blk = 32; qb = 16; sb = 2; break;
    case CM_Q4_1: g = G_Q4_1; blk = 32; qb = 16; sb = 4; break;
    case CM_Q5_0: g = G_Q5_0; blk = 32; qb = 16; sb = 8; break;
    case CM_Q5_1: g = G_Q5_1; blk = 32; qb = 16; sb = 8; break;
    case CM_Q8_0: case CM_Q8_1: g = G_Q8_0; blk = 32; qb = 32; sb = 2; break;
    case CM_Q2_K: g = G_Q2_K; blk = 256; qb = 80; sb = 4; break;
    case CM_Q3_K: g = G_Q3_K; blk = 256; qb = 112; sb = 0; break;
    case CM_Q4_K: g = G_Q4_K; blk = 256; qb = 144; sb = 0; break;
    case CM_Q5_K: g = G_Q5_K; blk = 256; qb = 176; sb = 0; break;
    case CM_Q6_K: g = G_Q6_K; blk = 256; qb = 208; sb = 2; break;
    case CM_Q8_K: g = G_Q8_K; blk = 256; qb = 256; sb = 4; break;
    default: return false;
    }
    if (c % blk) return false;
    f->g = g;
    f->q_row = c / blk * qb;
    f->s_row = c / blk * sb;
    return true;
}

static const char *type_name(const cm_matrix *m) {
    if (m->type == CM_MLX) return "MLX";
    const cm_type_info *ti = cm_type_get(m->type);
    return ti ? ti->name : "unknown";
}

/* Row r of m in the device format (the layouts are listed in cuda_fmt.cuh). */
void repack_row(const cm_matrix *m, size_t r, const finfo *f, uint8_t *q, uint8_t *s, uint8_t *b) {
    const uint8_t *src = (const uint8_t *)m->data + r * m->row_bytes;
    if (m->type == CM_F32 || m->type == CM_F16 || m->type == CM_BF16) {
        memcpy(q, src, m->row_bytes);
        memset(q + m->row_bytes, 0, f->q_row - m->row_bytes);
        return;
    }
    if (m->type == CM_MLX) {
        memcpy(q, src, f->q_row);
        memcpy(s, (const uint8_t *)m->scales + r * f->s_row, f->s_row);
        memcpy(b, (const uint8_t *)m->biases + r * f->s_row, f->s_row);
        return;
    }
    const cm_type_info *ti = cm_type_get(m->type);
    size_t nb = m->cols / ti->block_size, bb = ti->block_bytes;
    for (size_t i = 0; i < nb; i++) {
        const uint8_t *x = src + i * bb;
        switch (m->type) {
        case CM_Q4_0: memcpy(q + 16 * i, x + 2, 16); memcpy(s + 2 * i, x, 2); break;
        case CM_Q4_1: memcpy(q + 16 * i, x + 4, 16); memcpy(s + 4 * i, x, 4); break;
        case CM_Q5_0:
            memcpy(q + 16 * i, x + 6, 16);
            memcpy(s + 8 * i, x + 2, 4);
            memcpy(s + 8 * i + 4, x, 2);
            s[8 * i + 6] = s[8 * i + 7] = 0;
            break;
        case CM_Q5_1:
            memcpy(q + 16 * i, x + 8, 16);
            memcpy(s + 8 * i, x + 4, 4);
            memcpy(s + 8 * i + 4, x, 4);
            break;
        case CM_Q8_0: memcpy(q + 32 * i, x + 2, 32); memcpy(s + 2 * i, x, 2); break;
        case CM_Q8_1: memcpy(q + 32 * i, x + 4, 32); memcpy(s + 2 * i, x, 2); break;
        case CM_Q2_K: memcpy(q + 80 * i, x, 80); memcpy(s + 4 * i, x + 80, 4); break;
        case CM_Q3_K: memcpy(q + 112 * i, x, 110); q[112 * i + 110] = q[112 * i + 111] = 0; break;
        case CM_Q4_K: memcpy(q + 144 * i, x, 144); break;
        case CM_Q5_K: memcpy(q + 176 * i, x, 176); break;
        case CM_Q6_K: memcpy(q + 208 * i, x, 208); memcpy(s + 2 * i, x + 208, 2); break;
        case CM_Q8_K: memcpy(q + 256 * i, x + 4, 256); memcpy(s + 4 * i, x, 4); break;
        default: break;
        }
    }
}

/* An upload unit: one matrix, or matrices of one format stacked (concat: Q, K, V) or interleaved
 * by 8 rows (gate, up), into arrays of their own. */
typedef struct unit {
    const cm_matrix *src[3];
    int n_src;
    bool interleave;
    finfo f;
    size_t rows;
    size_t q_off, s_off, b_off; /* in the weight allocation */
    gw view;
} unit;

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

static void unit_place(unit *u, size_t *off) {
    u->rows = 0;
    for (int i = 0; i < u->n_src; i++) u->rows += u->src[i]->rows;
    u->q_off = *off;
    *off = align256(*off + u->rows * u->f.q_row);
    u->s_off = *off;
    *off = align256(*off + u->rows * u->f.s_row);
    u->b_off = *off;
    if (u->src[0]->type == CM_MLX) *off = align256(*off + u->rows * u->f.s_row);
}

static void unit_view(unit *u, uint8_t *base) {
    const cm_matrix *m = u->src[0];
    gw *g = &u->view;
    memset(g, 0, sizeof *g);
    g->q = base + u->q_off;
    g->s = base + u->s_off;
    g->b = base + u->b_off;
    g->fmt = u->f.g;
    g->rows = (int)u->rows;
    g->cols = (int)m->cols;
    g->q_row = (int)u->f.q_row;
    g->s_row = (int)u->f.s_row;
    g->sb_type = m->type == CM_MLX ? sb_code(m->sb_type) : 0;
    g->gs = m->type == CM_MLX ? (int)m->group_size : 0;
}

/* The view of member i of a stacked unit. */
static gw member_view(const unit *u, int i) {
    gw g = u->view;
    size_t r0 = 0;
    for (int k = 0; k < i; k++) r0 += u->src[k]->rows;
    g.q += r0 * u->f.q_row;
    g.s += r0 * u->f.s_row;
    g.b += r0 * u->f.s_row;
    g.rows = (int)u->src[i]->rows;
    return g;
}

/* Repacks and copies a unit's rows to the device through host buffers of chunk rows. */
static cudaError_t unit_upload(const unit *u, uint8_t *base, uint8_t *hq, uint8_t *hs, uint8_t *hb, size_t chunk) {
    const finfo *f = &u->f;
    for (size_t r0 = 0; r0 < u->rows; r0 += chunk) {
        size_t r1 = r0 + chunk < u->rows ? r0 + chunk : u->rows;
        for (size_t d = r0; d < r1; d++) {
            const cm_matrix *m;
            size_t r;
            if (u->interleave) {
                m = u->src[(d & 15) < 8 ? 0 : 1];
                r = d / 16 * 8 + (d & 7);
            } else {
                int i = 0;
                r = d;
                while (r >= u->src[i]->rows) r -= u->src[i++]->rows;
                m = u->src[i];
            }
            repack_row(m, r, f, hq + (d - r0) * f->q_row, hs + (d - r0) * f->s_row, hb + (d - r0) * f->s_row);
        }
        cudaError_t e = cudaMemcpy(base + u->q_off + r0 * f->q_row, hq, (r1 - r0) * f->q_row, cudaMemcpyHostToDevice);
        if (e == cudaSuccess && f->s_row)
            e = cudaMemcpy(base + u->s_off + r0 * f->s_row, hs, (r1 - r0) * f->s_row, cudaMemcpyHostToDevice);
        if (e == cudaSuccess && f->s_row && u->src[0]->type == CM_MLX)
            e = cudaMemcpy(base + u->b_off + r0 * f->s_row, hb, (r1 - r0) * f->s_row, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

static bool same_format(const cm_matrix *a, const finfo *fa, const cm_matrix *b, const finfo *fb) {
    return fa->g == fb->g && a->cols == b->cols && fa->q_row == fb->q_row && fa->s_row == fb->s_row &&
           (a->type != CM_MLX || (a->group_size == b->group_size && a->sb_type == b->sb_type));
}

typedef struct floats_job {
    const float **h;
    size_t *n;
    const float ***dst;
    size_t count, cap;
} floats_job;

static bool floats_add(floats_job *j, const float *h, size_t n, const float **dst) {
    *dst = NULL;
    if (!h) return true;
    if (j->count == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 64;
        const float **nh = (const float **)lm_realloc(j->h, cap * sizeof *nh);
        if (!nh) return false;
        j->h = nh;
        size_t *nn = (size_t *)lm_realloc(j->n, cap * sizeof *nn);
        if (!nn) return false;
        j->n = nn;
        const float ***nd = (const float ***)lm_realloc(j->dst, cap * sizeof *nd);
        if (!nd) return false;
        j->dst = nd;
        j->cap = cap;
    }
    j->h[j->count] = h;
    j->n[j->count] = n;
    j->dst[j->count] = dst;
    j->count++;
    return true;
}

static void floats_free(floats_job *j) {
    lm_free(j->h);
    lm_free(j->n);
    lm_free(j->dst);
}

static void cu_net_free(cu_impl *im, cu_net *cn) {
    if (!cn) return;
    if (cn->mem) {
        cudaFree(cn->mem);
        mem_sub(&im->weights, cn->bytes);
    }
    lm_free(cn->plans);
    lm_free(cn->layers);
    lm_free(cn->norm_h);
    lm_free(cn->norm_d);
    lm_free(cn);
}

static void cuda_release(const cm_backend *be, cm_net *net) {
    cu_impl *im = (cu_impl *)be->impl;
    cu_net *cn = (cu_net *)net->backend_data;
    if (!cn) return;
    cudaSetDevice(im->dev);
    for (size_t i = 0; i < 7 * (size_t)net->n_layer + 2; i++) net_matrix(net, i)->plan = NULL;
    cu_net_free(im, cn);
    net->backend_data = NULL;
}

static lm_status cuda_prepare(const cm_backend *be, cm_net *net, lm_progress_fn progress, void *user, lm_error *err) {
    cu_impl *im = (cu_impl *)be->impl;
    size_t nl = (size_t)net->n_layer, nm = 7 * nl + 2;
    cudaSetDevice(im->dev);
    if (net->head_dim > 256 || net->head_dim <= 0)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "cuda:%d: head_dim %d is not supported (at most 256)", im->dev,
                       (int)net->head_dim);
    if (net->n_head_kv <= 0 || net->n_head % net->n_head_kv)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "cuda:%d: %d heads over %d KV heads", im->dev, (int)net->n_head,
                       (int)net->n_head_kv);
    finfo *fi = (finfo *)lm_calloc(nm, sizeof *fi);
    unit *units = (unit *)lm_calloc(nm, sizeof *units);
    cu_net *cn = (cu_net *)lm_calloc(1, sizeof *cn);
    if (cn) {
        cn->plans = (gw *)lm_calloc(nm, sizeof *cn->plans);
        cn->layers = (cu_layer *)lm_calloc(nl ? nl : 1, sizeof *cn->layers);
    }
    floats_job fj;
    memset(&fj, 0, sizeof fj);
    uint8_t *hq = NULL, *hs = NULL, *hb = NULL;
    lm_status st = LM_OK;
    size_t n_units = 0, off = 0, f_off = 0;
    int *unit_of = (int *)lm_calloc(nm, sizeof *unit_of); /* matrix -> unit, member index * 1000 */
    if (!fi || !units || !cn || !cn->plans || !cn->layers || !unit_of) {
        st = lm_fail_nomem(err, "CUDA weight tables");
        goto done;
    }
    for (size_t i = 0; i < nm; i++) {
        const cm_matrix *m = net_matrix(net, i);
        if (!finfo_of(m, &fi[i])) {
            char nm_[64];
            matrix_name(net, i, nm_, sizeof nm_);
            if (m->type == CM_MLX)
                st = lm_fail(err, LM_ERR_UNSUPPORTED, "cuda: %s: MLX %u-bit groups of %u are not supported", nm_,
                             m->bits, m->group_size);
            else
                st = lm_fail(err, LM_ERR_UNSUPPORTED, "cuda: %s: tensor type %s is not supported on the GPU", nm_,
                             type_name(m));
            goto done;
        }
    }
    /* units: per layer Q/K/V stacked and gate/up interleaved when their formats match */
    for (size_t l = 0; l < nl; l++) {
        size_t b = 7 * l;
        cm_layer *L = &net->layers[l];
        cu_layer *cl = &cn->layers[l];
        if (same_format(&L->wq, &fi[b], &L->wk, &fi[b + 1]) && same_format(&L->wq, &fi[b], &L->wv, &fi[b + 2])) {
            unit *u = &units[n_units];
            u->src[0] = &L->wq;
            u->src[1] = &L->wk;
            u->src[2] = &L->wv;
            u->n_src = 3;
            u->f = fi[b];
            for (int k = 0; k < 3; k++) unit_of[b + k] = (int)n_units * 4 + k;
            n_units++;
            cl->qkv_fused = true;
        } else {
            for (int k = 0; k < 3; k++) {
                unit *u = &units[n_units];
                u->src[0] = net_matrix(net, b + k);
                u->n_src = 1;
                u->f = fi[b + k];
                unit_of[b + k] = (int)n_units * 4;
                n_units++;
            }
        }
        {
            unit *u = &units[n_units];
            u->src[0] = &L->wo;
            u->n_src = 1;
            u->f = fi[b + 3];
            unit_of[b + 3] = (int)n_units * 4;
            n_units++;
        }
        if (same_format(&L->w_gate, &fi[b + 4], &L->w_up, &fi[b + 5]) && L->w_gate.rows == L->w_up.rows &&
            L->w_gate.rows % 8 == 0) {
            unit *u = &units[n_units];
            u->src[0] = &L->w_gate;
            u->src[1] = &L->w_up;
            u->n_src = 2;
            u->interleave = true;
            u->f = fi[b + 4];
            unit_of[b + 4] = unit_of[b + 5] = (int)n_units * 4;
            n_units++;
            cl->gu_fused = true;
        } else {
            for (int k = 4; k < 6; k++) {
                unit *u = &units[n_units];
                u->src[0] = net_matrix(net, b + k);
                u->n_src = 1;
                u->f = fi[b + k];
                unit_of[b + k] = (int)n_units * 4;
                n_units++;
            }
            cn->any_unfused_gu = true;
        }
        {
            unit *u = &units[n_units];
            u->src[0] = &L->w_down;
            u->n_src = 1;
            u->f = fi[b + 6];
            unit_of[b + 6] = (int)n_units * 4;
            n_units++;
        }
    }
    {
        unit *u = &units[n_units];
        u->src[0] = &net->tok_embd;
        u->n_src = 1;
        u->f = fi[7 * nl];
        unit_of[7 * nl] = (int)n_units * 4;
        n_units++;
        /* a tied output shares the embedding's copy */
        if (net->output.data == net->tok_embd.data && net->output.type == net->tok_embd.type &&
            net->output.rows == net->tok_embd.rows) {
            unit_of[7 * nl + 1] = unit_of[7 * nl];
        } else {
            u = &units[n_units];
            u->src[0] = &net->output;
            u->n_src = 1;
            u->f = fi[7 * nl + 1];
            unit_of[7 * nl + 1] = (int)n_units * 4;
            n_units++;
        }
    }
    for (size_t i = 0; i < n_units; i++) unit_place(&units[i], &off);
    /* the float vectors: norms, biases, RoPE tables */
    {
        size_t E = (size_t)net->n_embd, D = (size_t)net->head_dim, Q = (size_t)net->n_head * D;
        size_t KV = (size_t)net->n_head_kv * D, R2 = (size_t)net->n_rot / 2;
        bool ok = true;
        for (size_t l = 0; l < nl && ok; l++) {
            cm_layer *L = &net->layers[l];
            cu_layer *cl = &cn->layers[l];
            ok = floats_add(&fj, L->attn_norm, E, &cl->attn_norm) && floats_add(&fj, L->ffn_norm, E, &cl->ffn_norm) &&
                 floats_add(&fj, L->q_norm, D, &cl->q_norm) && floats_add(&fj, L->k_norm, D, &cl->k_norm) &&
                 floats_add(&fj, L->bq, Q, &cl->bq) && floats_add(&fj, L->bk, KV, &cl->bk) &&
                 floats_add(&fj, L->bv, KV, &cl->bv);
        }
        ok = ok && floats_add(&fj, net->output_norm, E, &cn->out_norm) && floats_add(&fj, net->inv_freq, R2, &cn->inv) &&
             floats_add(&fj, net->inv_freq_long, R2, &cn->inv_long);
        if (!ok) {
            st = lm_fail_nomem(err, "CUDA norm tables");
            goto done;
        }
    }
    f_off = off;
    for (size_t i = 0; i < fj.count; i++) off = align256(off + fj.n[i] * sizeof(float));
    cn->bytes = off;
    {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        if (off + CU_HEADROOM > fr) {
            st = lm_fail(err, LM_ERR_NOMEM,
                         "cuda:%d: the weights need %zu MB on the GPU (plus %zu MB for a context and KV cache), which "
                         "has %zu MB free of %zu MB",
                         im->dev, off >> 20, CU_HEADROOM >> 20, fr >> 20, tot >> 20);
            goto done;
        }
        cudaError_t e = cudaMalloc(&cn->mem, off ? off : 1);
        if (e != cudaSuccess) {
            cn->mem = NULL;
            cudaGetLastError();
            st = lm_fail(err, LM_ERR_NOMEM, "cuda:%d: out of GPU memory for %zu MB of weights (%s)", im->dev, off >> 20,
                         cudaGetErrorString(e));
            goto done;
        }
        mem_add(&im->weights, off);
    }
    {
        /* host buffers for about 16 MB of rows at a time */
        size_t max_q = 1, max_s = 1;
        for (size_t i = 0; i < n_units; i++) {
            max_q = LM_MAX(max_q, units[i].f.q_row);
            max_s = LM_MAX(max_s, units[i].f.s_row);
        }
        size_t chunk = LM_MAX((size_t)1, ((size_t)16 << 20) / max_q);
        hq = (uint8_t *)lm_malloc(chunk * max_q);
        hs = (uint8_t *)lm_malloc(chunk * max_s);
        hb = (uint8_t *)lm_malloc(chunk * max_s);
        if (!hq || !hs || !hb) {
            st = lm_fail_nomem(err, "CUDA upload buffers");
            goto done;
        }
        uint8_t *base = (uint8_t *)cn->mem;
        size_t done_b = 0;
        char stage[64];
        snprintf(stage, sizeof stage, "uploading weights to cuda:%d", im->dev);
        for (size_t i = 0; i < n_units; i++) {
            unit_view(&units[i], base);
            cudaError_t e = unit_upload(&units[i], base, hq, hs, hb, chunk);
            if (e != cudaSuccess) {
                st = lm_fail(err, LM_ERR_IO, "cuda:%d: copying weights to the GPU failed: %s", im->dev,
                             cudaGetErrorString(e));
                goto done;
            }
            done_b += units[i].rows * units[i].f.q_row;
            if (progress && progress((float)((double)done_b / (double)(f_off ? f_off : 1)), stage, user)) {
                st = lm_fail(err, LM_ERR_CANCELLED, "loading cancelled while uploading the weights to cuda:%d", im->dev);
                goto done;
            }
        }
        size_t fo = f_off;
        for (size_t i = 0; i < fj.count; i++) {
            cudaError_t e = cudaMemcpy(base + fo, fj.h[i], fj.n[i] * sizeof(float), cudaMemcpyHostToDevice);
            if (e != cudaSuccess) {
                st = lm_fail(err, LM_ERR_IO, "cuda:%d: copying norms to the GPU failed: %s", im->dev, cudaGetErrorString(e));
                goto done;
            }
            *fj.dst[i] = (const float *)(base + fo);
            fo = align256(fo + fj.n[i] * sizeof(float));
        }
    }
    /* the plans: each matrix's view; the fused views of each layer */
    for (size_t i = 0; i < nm; i++) {
        const unit *u = &units[unit_of[i] / 4];
        cn->plans[i] = u->n_src == 3 ? member_view(u, unit_of[i] % 4) : u->view;
    }
    for (size_t l = 0; l < nl; l++) {
        cu_layer *cl = &cn->layers[l];
        if (cl->qkv_fused) cl->qkv = units[unit_of[7 * l] / 4].view;
        if (cl->gu_fused) cl->gu = units[unit_of[7 * l + 4] / 4].view;
    }
    /* host norm pointer -> device copy, for project_add */
    cn->norm_h = (const float **)lm_calloc(2 * nl + 1, sizeof *cn->norm_h);
    cn->norm_d = (const float **)lm_calloc(2 * nl + 1, sizeof *cn->norm_d);
    if (!cn->norm_h || !cn->norm_d) {
        st = lm_fail_nomem(err, "CUDA norm tables");
        goto done;
    }
    for (size_t l = 0; l < nl; l++) {
        cn->norm_h[cn->n_norms] = net->layers[l].attn_norm;
        cn->norm_d[cn->n_norms++] = cn->layers[l].attn_norm;
        cn->norm_h[cn->n_norms] = net->layers[l].ffn_norm;
        cn->norm_d[cn->n_norms++] = cn->layers[l].ffn_norm;
    }
    cn->norm_h[cn->n_norms] = net->output_norm;
    cn->norm_d[cn->n_norms++] = cn->out_norm;
    {
        cu_dims *d = &cn->dims;
        d->n_embd = net->n_embd;
        d->n_head = net->n_head;
        d->n_head_kv = net->n_head_kv;
        d->head_dim = net->head_dim;
        d->n_ff = net->n_ff;
        d->n_rot = net->n_rot;
        d->n_layer = net->n_layer;
        d->n_vocab = net->n_vocab;
        d->window = net->sliding_window;
        d->interleaved = net->rope_interleaved;
        d->eps = net->norm_eps;
        d->attn_factor = net->rope_attn_factor;
    }
    {
        cudaError_t e = cu_ops_init(net->head_dim);
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
        if (e != cudaSuccess) {
            st = lm_fail(err, LM_ERR_IO, "cuda:%d: %s", im->dev, cudaGetErrorString(e));
            goto done;
        }
    }
    for (size_t i = 0; i < nm; i++) net_matrix(net, i)->plan = &cn->plans[i];
    /* the weights live on the GPU now: the mapped file's pages may leave resident memory */
    for (size_t i = 0; net->drop && i < nm; i++) {
        const cm_matrix *m = net_matrix(net, i);
        if (i == 7 * nl + 1 && unit_of[i] == unit_of[7 * nl]) continue; /* tied: dropped once */
        net->drop(net->drop_user, m->data, m->rows * m->row_bytes);
        if (m->type == CM_MLX) {
            size_t sb = m->rows * (m->cols / m->group_size) * (m->sb_type == CM_F32 ? 4 : 2);
            net->drop(net->drop_user, m->scales, sb);
            net->drop(net->drop_user, m->biases, sb);
        }
    }
    net->backend_data = cn;
    cn = NULL;
done:
    if (cn) cu_net_free(im, cn);
    lm_free(fi);
    lm_free(units);
    lm_free(unit_of);
    lm_free(hq);
    lm_free(hs);
    lm_free(hb);
    floats_free(&fj);
    return st;
}

/* ---- contexts ---- */

typedef struct cu_graph {
    bool used;
    int n_seq;
    uint64_t mask;
    unsigned long long stamp;
    cudaGraphExec_t exec;
} cu_graph;

struct cm_ctx {
    const cm_backend *be;
    cu_impl *im;
    const cm_net *net;
    cu_net *cn;
    cudaStream_t st;
    pthread_mutex_t mu;
    size_t T, S, L;          /* tokens, sequences, logits rows per pass */
    int E, Qw, KVw, F, V, R;
    float *x, *xb, *qkv, *att, *q, *h, *u, *logits, *cs, *part;
    void *dmem;              /* one allocation for all of the above */
    size_t dbytes;
    /* the pass tables: pinned host copy and device copy, same layout */
    uint8_t *hdesc, *ddesc;
    size_t desc_bytes, off_seqs, off_ids, off_pos, off_seq_of, off_gmap, off_items, off_items_l;
    size_t cap_items;
    int HC, nhc, TC;         /* attention: head chunks per KV head, heads per chunk, tokens per item */
    /* the pass in flight */
    int n_tok, n_seq, n_logits, grid_all, grid_l;
    bool replay, capturing, skip; /* skip: a batch past the context's sizes, refused */
    int graph_slot;
    const float *pending;    /* XB is rmsnorm(X) * pending, not computed yet (NULL: XB is current) */
    cudaError_t err;
    bool graphs;
    cu_graph g[CU_GRAPHS];
    unsigned long long clock;
};

static void note(cm_ctx *c, cudaError_t e) {
    if (e != cudaSuccess && c->err == cudaSuccess) c->err = e;
}

static void cuda_ctx_free(cm_ctx *c) {
    if (!c) return;
    cudaSetDevice(c->im->dev);
    for (int i = 0; i < CU_GRAPHS; i++)
        if (c->g[i].used) cudaGraphExecDestroy(c->g[i].exec);
    if (c->st) cudaStreamDestroy(c->st);
    if (c->dmem) {
        cudaFree(c->dmem);
        mem_sub(&c->im->ctxs, c->dbytes);
    }
    if (c->ddesc) cudaFree(c->ddesc);
    if (c->hdesc) cudaFreeHost(c->hdesc);
    pthread_mutex_destroy(&c->mu);
    lm_free(c);
}

static size_t up16(size_t n) { return (n + 15) & ~(size_t)15; }

static lm_status cuda_ctx_new(const cm_backend *be, const cm_net *net, const cm_ctx_params *p, cm_ctx **out,
                              lm_error *err) {
    cu_impl *im = (cu_impl *)be->impl;
    *out = NULL;
    cu_net *cn = (cu_net *)net->backend_data;
    if (!cn) return lm_fail(err, LM_ERR_MISUSE, "cuda: the model's weights are not prepared for this backend");
    cudaSetDevice(im->dev);
    cm_ctx *c = (cm_ctx *)lm_calloc(1, sizeof *c);
    if (!c) return lm_fail_nomem(err, "compute context");
    pthread_mutex_init(&c->mu, NULL);
    c->be = be;
    c->im = im;
    c->net = net;
    c->cn = cn;
    c->graphs = true;
    c->T = LM_MAX(p->max_tokens, (size_t)1);
    c->S = LM_MAX(p->max_seqs, (size_t)1);
    c->L = LM_MAX(p->max_logits, (size_t)1);
    c->E = net->n_embd;
    c->Qw = net->n_head * net->head_dim;
    c->KVw = net->n_head_kv * net->head_dim;
    c->F = net->n_ff;
    c->V = net->n_vocab;
    c->R = LM_MAX(net->n_rot, 2);
    int G = net->n_head / net->n_head_kv;
    c->nhc = LM_MIN(G, CU_ATT_ROWS);
    c->HC = (G + c->nhc - 1) / c->nhc;
    c->TC = LM_MAX(1, CU_ATT_ROWS / c->nhc);
    size_t T = c->T;
    size_t sizes[10] = {
        T * c->E, T * c->E, T * (size_t)(c->Qw + 2 * c->KVw), T * (size_t)c->Qw, T * (size_t)c->F,
        cn->any_unfused_gu ? T * (size_t)c->F : 0, c->L * (size_t)c->V, T * (size_t)c->R,
        c->S * (size_t)net->n_head * CU_MAX_SPLITS * (size_t)(net->head_dim + 2), 0};
    size_t total = 0, offs[10];
    for (int i = 0; i < 9; i++) {
        offs[i] = total;
        total = align256(total + sizes[i] * sizeof(float));
    }
    cudaError_t e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking);
    if (e == cudaSuccess) {
        e = cudaMalloc(&c->dmem, total);
        if (e != cudaSuccess) c->dmem = NULL;
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        cuda_ctx_free(c);
        return lm_fail(err, LM_ERR_NOMEM,
                       "cuda:%d: out of GPU memory for the compute buffers of %zu tokens per pass (%zu MB; %zu MB free)",
                       im->dev, T, total >> 20, free_mb());
    }
    c->dbytes = total;
    mem_add(&im->ctxs, total);
    float *base = (float *)c->dmem;
    c->x = (float *)((uint8_t *)base + offs[0]);
    c->xb = (float *)((uint8_t *)base + offs[1]);
    c->qkv = (float *)((uint8_t *)base + offs[2]);
    c->att = c->qkv; /* the attention output takes the Q/K/V rows once the epilogue has read them */
    c->q = (float *)((uint8_t *)base + offs[3]);
    c->h = (float *)((uint8_t *)base + offs[4]);
    c->u = cn->any_unfused_gu ? (float *)((uint8_t *)base + offs[5]) : NULL;
    c->logits = (float *)((uint8_t *)base + offs[6]);
    c->cs = (float *)((uint8_t *)base + offs[7]);
    c->part = (float *)((uint8_t *)base + offs[8]);
    /* pass tables */
    c->cap_items = (T + c->S * CU_MAX_SPLITS) * (size_t)net->n_head_kv * (size_t)c->HC;
    size_t o = up16(2 * sizeof(int));
    c->off_seqs = o;
    o = up16(o + c->S * sizeof(cu_seq));
    c->off_ids = o;
    o = up16(o + T * sizeof(int));
    c->off_pos = o;
    o = up16(o + T * sizeof(int));
    c->off_seq_of = o;
    o = up16(o + T * sizeof(int));
    c->off_gmap = o;
    o = up16(o + T * sizeof(int));
    c->off_items = o;
    o = up16(o + c->cap_items * sizeof(cu_item));
    c->off_items_l = o;
    o = up16(o + c->cap_items * sizeof(cu_item));
    c->desc_bytes = o;
    e = cudaHostAlloc((void **)&c->hdesc, o, cudaHostAllocDefault);
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->ddesc, o);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cuda_ctx_free(c);
        return lm_fail(err, LM_ERR_NOMEM, "cuda:%d: out of memory for the pass tables (%zu KB)", im->dev, o >> 10);
    }
    memset(c->hdesc, 0, o);
    *out = c;
    return LM_OK;
}

/* ---- KV caches ---- */

struct cm_kv {
    cm_ctx *c;
    void *k, *v;
    size_t n_ctx, bytes;
    uint32_t type;
};

static void cuda_kv_free(cm_kv *kv) {
    if (!kv) return;
    cm_ctx *c = kv->c;
    pthread_mutex_lock(&c->mu);
    cudaSetDevice(c->im->dev);
    if (kv->k) cudaFree(kv->k);
    if (kv->v) cudaFree(kv->v);
    if (kv->k && kv->v) mem_sub(&c->im->kvs, 2 * kv->bytes);
    pthread_mutex_unlock(&c->mu);
    lm_free(kv);
}

static lm_status cuda_kv_new(cm_ctx *c, size_t n_ctx, uint32_t type, cm_kv **out, lm_error *err) {
    const cm_net *net = c->net;
    *out = NULL;
    if (type != CM_F16 && type != CM_F32)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "cuda: KV cache type %u (expected F16 or F32)", (unsigned)type);
    size_t per, bytes;
    if (!lm_mul_ok((size_t)net->n_head_kv * (size_t)net->head_dim, n_ctx, &per) ||
        !lm_mul_ok(per, (size_t)net->n_layer * (type == CM_F16 ? 2 : 4), &bytes) || n_ctx > INT32_MAX)
        return lm_fail(err, LM_ERR_NOMEM, "a KV cache of %zu tokens does not fit in memory", n_ctx);
    cm_kv *kv = (cm_kv *)lm_calloc(1, sizeof *kv);
    if (!kv) return lm_fail_nomem(err, "KV cache");
    kv->c = c;
    kv->n_ctx = n_ctx;
    kv->type = type;
    kv->bytes = bytes;
    pthread_mutex_lock(&c->mu);
    cudaSetDevice(c->im->dev);
    cudaError_t e = cudaMalloc(&kv->k, bytes ? bytes : 1);
    if (e == cudaSuccess) e = cudaMalloc(&kv->v, bytes ? bytes : 1);
    if (e == cudaSuccess) mem_add(&c->im->kvs, 2 * bytes);
    size_t fr = free_mb();
    pthread_mutex_unlock(&c->mu);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (kv->k && !kv->v) {
            pthread_mutex_lock(&c->mu);
            cudaFree(kv->k);
            pthread_mutex_unlock(&c->mu);
        }
        lm_free(kv);
        return lm_fail(err, LM_ERR_NOMEM, "cuda:%d: out of GPU memory for a KV cache of %zu tokens (%zu MB; %zu MB free)",
                       c->im->dev, n_ctx, 2 * bytes >> 20, fr);
    }
    *out = kv;
    return LM_OK;
}

static void cuda_kv_truncate(cm_kv *kv, size_t n) {
    (void)kv; /* positions >= n are written again before they are read */
    (void)n;
}

/* ---- a pass ---- */

#define DPTR(c, off, T) ((T *)((c)->ddesc + (off)))
#define HPTR(c, off, T) ((T *)((c)->hdesc + (off)))

/* Split a decode query's keys: ranges of at least 64 positions (two key tiles: a block's tiles
 * are loaded one after the other, so short ranges keep the step's latency down), at most
 * CU_MAX_SPLITS of them. */
static void splits_of(size_t ctx, int *ns, int *len) {
    size_t l = (ctx + CU_MAX_SPLITS - 1) / CU_MAX_SPLITS;
    l = (l + 31) / 32 * 32;
    if (l < 64) l = 64;
    *len = (int)l;
    *ns = (int)((ctx + l - 1) / l);
}

static uint64_t decode_mask(const cm_batch *b, bool *ok) {
    uint64_t mask = 0;
    *ok = b->n_seq > 0 && b->n_seq <= CU_GRAPH_SEQS && b->n_tok == b->n_seq;
    for (size_t s = 0; *ok && s < b->n_seq; s++) {
        if (b->seqs[s].n != 1) *ok = false;
        else if (b->seqs[s].n_logits) mask |= (uint64_t)1 << s;
    }
    return mask;
}

/* Items of one list (logits: the rows that want logits, compacted). */
static int build_items(cm_ctx *c, const cm_batch *b, bool logits, bool graph, cu_item *it) {
    const cm_net *net = c->net;
    int n = 0, G = net->n_head / net->n_head_kv, lrow = 0;
    for (size_t s = 0; s < b->n_seq; s++) {
        const cm_seq *q = &b->seqs[s];
        int nq = (int)(logits ? q->n_logits : q->n), skip = (int)q->n - nq;
        if (nq <= 0) continue;
        const cu_seq *cs = HPTR(c, c->off_seqs, cu_seq) + s;
        for (int kvh = 0; kvh < net->n_head_kv; kvh++)
            for (int hc = 0; hc < c->HC; hc++) {
                int h0 = hc * c->nhc, nh = LM_MIN(c->nhc, G - h0);
                if (q->n == 1) {
                    int np = graph ? CU_MAX_SPLITS : cs->n_splits;
                    for (int p = 0; p < np; p++)
                        it[n++] = (cu_item){(int)s, kvh, h0, nh, (int)q->t0, logits ? lrow : (int)q->t0,
                                            (int)q->pos0, 1, p};
                } else {
                    for (int t = 0; t < nq; t += c->TC)
                        it[n++] = (cu_item){(int)s, kvh, h0, nh, (int)q->t0 + skip + t,
                                            (logits ? lrow : (int)q->t0 + skip) + t, (int)(q->pos0 + skip + t),
                                            LM_MIN(c->TC, nq - t), 0};
                }
            }
        lrow += nq;
    }
    return n;
}

static void launch_embed(cm_ctx *c) {
    cu_net *cn = c->cn;
    const gw *emb = &cn->plans[7 * (size_t)c->net->n_layer];
    note(c, cu_embed(emb, DPTR(c, c->off_ids, int), DPTR(c, c->off_pos, int), DPTR(c, c->off_seq_of, int),
                     DPTR(c, c->off_seqs, cu_seq), cn->inv, cn->inv_long, cn->layers[0].attn_norm, cn->dims, c->n_tok,
                     c->x, c->xb, c->cs, c->st));
}

static void cuda_begin(cm_ctx *c, const cm_batch *b) {
    pthread_mutex_lock(&c->mu);
    cudaSetDevice(c->im->dev);
    const cm_net *net = c->net;
    c->err = cudaSuccess;
    c->replay = c->capturing = c->skip = false;
    c->graph_slot = -1;
    c->pending = NULL;
    if (b->n_tok > c->T || b->n_seq > c->S || b->n_logits > b->n_tok) {
        /* the caller broke cm_ctx_params: no kernel runs, the logits come back NaN */
        c->skip = true;
        c->err = cudaErrorInvalidValue;
        return;
    }
    c->n_tok = (int)b->n_tok;
    c->n_seq = (int)b->n_seq;
    c->n_logits = (int)b->n_logits;
    bool dec;
    uint64_t mask = decode_mask(b, &dec);
    bool graph = c->graphs && dec && b->n_logits <= c->L;
    /* the tables */
    cu_seq *seqs = HPTR(c, c->off_seqs, cu_seq);
    int *ids = HPTR(c, c->off_ids, int), *pos = HPTR(c, c->off_pos, int), *seq_of = HPTR(c, c->off_seq_of, int);
    int *gmap = HPTR(c, c->off_gmap, int);
    int lrow = 0;
    for (size_t s = 0; s < b->n_seq; s++) {
        const cm_seq *q = &b->seqs[s];
        const cm_kv *kv = q->kv;
        cu_seq *cs = &seqs[s];
        memset(cs, 0, sizeof *cs);
        cs->k = kv->k;
        cs->v = kv->v;
        cs->n_ctx = (int)kv->n_ctx;
        cs->f16 = kv->type == CM_F16;
        cs->use_long = net->inv_freq_long && kv->n_ctx > (size_t)net->rope_orig_ctx;
        cs->n_splits = 1;
        cs->split_len = 0x7fffffff;
        if (q->n == 1) splits_of(q->pos0 + 1, &cs->n_splits, &cs->split_len);
        cs->part = (int)s * net->n_head;
        cs->o_row = (int)q->t0;
        cs->o_row_l = q->n_logits ? lrow + (int)q->n_logits - 1 : -1;
        cs->t_last = (int)(q->t0 + q->n - 1);
        for (size_t i = 0; i < q->n; i++) {
            ids[q->t0 + i] = b->ids[q->t0 + i];
            pos[q->t0 + i] = (int)(q->pos0 + i);
            seq_of[q->t0 + i] = (int)s;
        }
        for (size_t i = 0; i < q->n_logits; i++) gmap[lrow + (int)i] = (int)(q->t0 + q->n - q->n_logits + i);
        lrow += (int)q->n_logits;
    }
    cu_item *ia = HPTR(c, c->off_items, cu_item), *il = HPTR(c, c->off_items_l, cu_item);
    c->grid_all = build_items(c, b, false, graph, ia);
    bool compact = b->n_logits < b->n_tok;
    c->grid_l = compact ? build_items(c, b, true, graph, il) : 0;
    int *hdr = HPTR(c, 0, int);
    hdr[0] = c->grid_all;
    hdr[1] = c->grid_l;
    note(c, cudaMemcpyAsync(c->ddesc, c->hdesc, c->off_items + (size_t)c->grid_all * sizeof(cu_item),
                            cudaMemcpyHostToDevice, c->st));
    if (c->grid_l)
        note(c, cudaMemcpyAsync(c->ddesc + c->off_items_l, c->hdesc + c->off_items_l, (size_t)c->grid_l * sizeof(cu_item),
                                cudaMemcpyHostToDevice, c->st));
    if (graph) {
        int free_slot = -1, old = 0;
        for (int i = 0; i < CU_GRAPHS; i++) {
            if (c->g[i].used && c->g[i].n_seq == (int)b->n_seq && c->g[i].mask == mask) {
                c->g[i].stamp = ++c->clock;
                c->graph_slot = i;
                c->replay = true;
                return;
            }
            if (!c->g[i].used && free_slot < 0) free_slot = i;
            if (c->g[i].stamp < c->g[old].stamp) old = i;
        }
        int slot = free_slot >= 0 ? free_slot : old;
        if (c->g[slot].used) {
            cudaGraphExecDestroy(c->g[slot].exec);
            c->g[slot].used = false;
        }
        if (c->err == cudaSuccess && cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
            c->capturing = true;
            c->graph_slot = slot;
            c->g[slot].n_seq = (int)b->n_seq;
            c->g[slot].mask = mask;
        } else {
            cudaGetLastError();
        }
    }
    launch_embed(c);
}

/* The input of products that read XB: when the norm is pending, the float path takes the residual
 * stream with the norm; the tensor cores need XB, which is computed first. */
static const float *xb_input(cm_ctx *c, bool any_mmq, const float **norm) {
    *norm = NULL;
    if (!c->pending) return c->xb;
    if (any_mmq) {
        note(c, cu_rmsnorm(c->x, c->pending, c->xb, c->n_tok, c->E, c->cn->dims.eps, c->st));
        c->pending = NULL;
        return c->xb;
    }
    *norm = c->pending;
    return c->x;
}

static bool use_mmq(const gw *w, int n) { return n > CU_MMV_MAX && cu_has_mmq(w->fmt) && w->cols % 32 == 0; }

static void product(cm_ctx *c, const gw *w, const float *x, int ldx, const float *norm, int n, float *y, int ldy,
                    int mode) {
    if (use_mmq(w, n)) note(c, cu_mmq(w, x, ldx, n, y, ldy, mode, c->st));
    else note(c, cu_mmv(w, x, ldx, norm, c->cn->dims.eps, n, y, ldy, mode, c->im->n_sm, c->st));
}

static void cuda_qkv(cm_ctx *c, int l, const cm_batch *b) {
    if (c->replay || c->skip) return;
    cu_net *cn = c->cn;
    const cu_layer *cl = &cn->layers[l];
    const gw *w = &cn->plans[7 * (size_t)l];
    int n = (int)b->n_tok, ld = c->Qw + 2 * c->KVw;
    c->n_tok = n;
    bool any = cl->qkv_fused ? use_mmq(&cl->qkv, n) : use_mmq(&w[0], n) || use_mmq(&w[1], n) || use_mmq(&w[2], n);
    const float *norm;
    const float *x = xb_input(c, any, &norm);
    if (cl->qkv_fused) {
        product(c, &cl->qkv, x, c->E, norm, n, c->qkv, ld, MM_STORE);
    } else {
        product(c, &w[0], x, c->E, norm, n, c->qkv, ld, MM_STORE);
        product(c, &w[1], x, c->E, norm, n, c->qkv + c->Qw, ld, MM_STORE);
        product(c, &w[2], x, c->E, norm, n, c->qkv + c->Qw + c->KVw, ld, MM_STORE);
    }
    note(c, cu_qkv_post(c->qkv, c->q, c->cs, DPTR(c, c->off_pos, int), DPTR(c, c->off_seq_of, int),
                        DPTR(c, c->off_seqs, cu_seq), cl->bq, cl->bk, cl->bv, cl->q_norm, cl->k_norm, cn->dims, l, n,
                        c->st));
}

static void cuda_attention(cm_ctx *c, int l, const cm_batch *b, bool logits_only) {
    (void)b;
    if (c->replay || c->skip) return;
    const cu_item *items = logits_only ? DPTR(c, c->off_items_l, cu_item) : DPTR(c, c->off_items, cu_item);
    const int *cnt = DPTR(c, 0, int) + (logits_only ? 1 : 0);
    int grid = logits_only ? c->grid_l : c->grid_all;
    note(c, cu_attention(items, cnt, grid, DPTR(c, c->off_seqs, cu_seq), c->n_seq, c->q, c->att, c->part, c->cn->dims, l,
                         logits_only, c->st));
    if (logits_only) {
        /* the rows that go on to the logits, gathered to the front of X (through XB: no row is
         * read after it is overwritten) */
        note(c, cu_gather(c->xb, c->x, DPTR(c, c->off_gmap, int), c->n_logits, c->E, c->st));
        note(c, cu_copy_rows(c->x, c->xb, c->n_logits, c->E, c->st));
    }
}

static const float *norm_dev(const cu_net *cn, const float *h) {
    for (size_t i = 0; i < cn->n_norms; i++)
        if (cn->norm_h[i] == h) return cn->norm_d[i];
    return NULL;
}

static void cuda_project_add(cm_ctx *c, const cm_matrix *w, enum cm_buf src, size_t n, const float *norm) {
    if (c->replay || c->skip || !n) return;
    const float *x;
    int ldx;
    switch (src) {
    case CM_BUF_X: x = c->x; ldx = c->E; break;
    case CM_BUF_XB: x = c->xb; ldx = c->E; break;
    case CM_BUF_Q: x = c->q; ldx = c->Qw; break;
    case CM_BUF_ATT: x = c->att; ldx = c->Qw; break;
    default: x = c->h; ldx = c->F; break;
    }
    product(c, (const gw *)w->plan, x, ldx, NULL, (int)n, c->x, c->E, MM_ADD);
    c->n_tok = (int)n; /* the rows the following ops work on */
    c->pending = norm ? norm_dev(c->cn, norm) : NULL;
    if (norm && !c->pending) note(c, cudaErrorInvalidValue);
}

static void cuda_gate_up(cm_ctx *c, const cm_layer *L, size_t n) {
    if (c->replay || c->skip || !n) return;
    cu_net *cn = c->cn;
    size_t l = (size_t)(L - c->net->layers);
    const cu_layer *cl = &cn->layers[l];
    const gw *w = &cn->plans[7 * l];
    int nn = (int)n;
    bool any = cl->gu_fused ? use_mmq(&cl->gu, nn) : use_mmq(&w[4], nn) || use_mmq(&w[5], nn);
    const float *norm;
    const float *x = xb_input(c, any, &norm);
    if (cl->gu_fused) {
        product(c, &cl->gu, x, c->E, norm, nn, c->h, c->F, MM_SWIGLU);
    } else {
        product(c, &w[4], x, c->E, norm, nn, c->h, c->F, MM_STORE);
        product(c, &w[5], x, c->E, norm, nn, c->u, c->F, MM_STORE);
        note(c, cu_swiglu(c->h, c->h, c->u, n * (size_t)c->F, c->st));
    }
}

static void cuda_end(cm_ctx *c, const cm_batch *b) {
    cu_net *cn = c->cn;
    const gw *out = &cn->plans[7 * (size_t)c->net->n_layer + 1];
    size_t V = (size_t)c->V;
    if (c->skip) {
        for (size_t i = 0; i < b->n_seq; i++)
            for (size_t j = 0; j < b->seqs[i].n_logits * V; j++) b->seqs[i].logits[j] = NAN;
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (!c->replay) {
        if (c->capturing) {
            /* a decode step: every row wants its logits at once (n_logits <= L) */
            if (b->n_logits) {
                c->n_tok = (int)b->n_logits;
                const float *norm;
                const float *x = xb_input(c, use_mmq(out, (int)b->n_logits), &norm);
                product(c, out, x, c->E, norm, (int)b->n_logits, c->logits, (int)V, MM_STORE);
            }
            cudaGraph_t g = NULL;
            cudaError_t e = cudaStreamEndCapture(c->st, &g);
            c->capturing = false;
            cu_graph *slot = &c->g[c->graph_slot];
            if (e == cudaSuccess && c->err == cudaSuccess) e = cudaGraphInstantiate(&slot->exec, g, 0);
            else if (e == cudaSuccess) e = c->err;
            if (g) cudaGraphDestroy(g);
            if (e == cudaSuccess) {
                slot->used = true;
                slot->stamp = ++c->clock;
                note(c, cudaGraphLaunch(slot->exec, c->st));
            } else {
                note(c, e);
                cudaGetLastError();
            }
        }
    } else {
        note(c, cudaGraphLaunch(c->g[c->graph_slot].exec, c->st));
    }
    /* the logits, in chunks of the buffer's rows when a pass wants more (a whole prompt's) */
    size_t row = 0;
    bool eager = !c->replay && c->graph_slot < 0;
    size_t s = 0, in_seq = 0; /* where the next logits row goes */
    while (row < b->n_logits) {
        size_t k = LM_MIN(c->L, b->n_logits - row);
        if (eager) {
            c->n_tok = (int)b->n_logits;
            const float *norm;
            const float *x = xb_input(c, use_mmq(out, (int)k), &norm);
            product(c, out, x + row * (size_t)c->E, c->E, norm, (int)k, c->logits, (int)V, MM_STORE);
        }
        for (size_t r = 0; r < k;) {
            while (s < b->n_seq && in_seq >= b->seqs[s].n_logits) {
                s++;
                in_seq = 0;
            }
            const cm_seq *q = &b->seqs[s];
            size_t take = LM_MIN(q->n_logits - in_seq, k - r);
            note(c, cudaMemcpyAsync(q->logits + in_seq * V, c->logits + r * V, take * V * sizeof(float),
                                    cudaMemcpyDeviceToHost, c->st));
            r += take;
            in_seq += take;
        }
        row += k;
    }
    note(c, cudaStreamSynchronize(c->st));
    if (c->err != cudaSuccess) {
        /* a failed pass (a bug or a lost device: buffers were sized at creation) leaves no
         * numbers that could pass for logits */
        for (size_t i = 0; i < b->n_seq; i++)
            for (size_t j = 0; j < b->seqs[i].n_logits * V; j++) b->seqs[i].logits[j] = NAN;
        cudaGetLastError();
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- the backend ---- */

static const char *cuda_describe(const cm_backend *be) { return ((const cu_impl *)be->impl)->name; }

static void cuda_free(cm_backend *be) {
    if (!be) return;
    lm_free(be->impl);
    lm_free(be);
}

static const cm_backend_ops CUDA_OPS = {
    "cuda",
    cuda_prepare,
    cuda_release,
    cuda_ctx_new,
    cuda_ctx_free,
    cuda_kv_new,
    cuda_kv_truncate,
    cuda_kv_free,
    cuda_begin,
    cuda_qkv,
    cuda_attention,
    cuda_project_add,
    cuda_gate_up,
    cuda_end,
    cuda_describe,
    cuda_free,
};

extern "C" lm_status cm_backend_cuda_new(int device, cm_backend **out, lm_error *err) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return lm_fail(err, LM_ERR_IO, "device 'cuda:%d': no CUDA GPU is present (%s)", device,
                       e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports none");
    }
    if (device >= n)
        return lm_fail(err, LM_ERR_IO, "device 'cuda:%d': this machine has %d CUDA GPU%s (cuda:0%s)", device, n,
                       n == 1 ? "" : "s", n == 1 ? "" : " upwards");
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess) {
        cudaGetLastError();
        return lm_fail(err, LM_ERR_IO, "device 'cuda:%d': %s", device, cudaGetErrorString(e));
    }
    if ((e = cu_mm_init(prop.sharedMemPerBlockOptin)) != cudaSuccess) {
        cudaGetLastError();
        return lm_fail(err, LM_ERR_UNSUPPORTED,
                       "device 'cuda:%d' (%s, compute capability %d.%d): this build has no kernels for it (%s); rebuild "
                       "with LM_CUDA_ARCH=%d%d",
                       device, prop.name, prop.major, prop.minor, cudaGetErrorString(e), prop.major, prop.minor);
    }
    cm_backend *be = (cm_backend *)lm_calloc(1, sizeof *be);
    cu_impl *im = (cu_impl *)lm_calloc(1, sizeof *im);
    if (!be || !im) {
        lm_free(be);
        lm_free(im);
        return lm_fail_nomem(err, "CUDA backend");
    }
    im->dev = device;
    im->n_sm = prop.multiProcessorCount;
    snprintf(im->name, sizeof im->name, "cuda:%d %.180s", device, prop.name);
    be->ops = &CUDA_OPS;
    be->impl = im;
    *out = be;
    return LM_OK;
}

/* ---- hooks for tests and benchmarks (cuda.h) ---- */

extern "C" lm_status cm_cuda_matmul(const cm_backend *be, const cm_matrix *w, const float *x, size_t n, float *y,
                                    int path, lm_error *err) {
    if (be->ops != &CUDA_OPS) return lm_fail(err, LM_ERR_MISUSE, "cm_cuda_matmul: not a CUDA backend");
    cu_impl *im = (cu_impl *)be->impl;
    cudaSetDevice(im->dev);
    unit u;
    memset(&u, 0, sizeof u);
    u.src[0] = w;
    u.n_src = 1;
    if (!finfo_of(w, &u.f)) return lm_fail(err, LM_ERR_UNSUPPORTED, "cuda: tensor type %s is not supported", type_name(w));
    if (path == 1 && (!cu_has_mmq(u.f.g) || w->cols % 32))
        return lm_fail(err, LM_ERR_UNSUPPORTED, "cuda: %s has no tensor-core path", type_name(w));
    size_t off = 0;
    unit_place(&u, &off);
    uint8_t *mem = NULL;
    float *dx = NULL, *dy = NULL;
    uint8_t *hq = (uint8_t *)lm_malloc(LM_MAX(u.f.q_row, (size_t)1) * 64);
    uint8_t *hs = (uint8_t *)lm_malloc(LM_MAX(u.f.s_row, (size_t)1) * 64);
    uint8_t *hb = (uint8_t *)lm_malloc(LM_MAX(u.f.s_row, (size_t)1) * 64);
    lm_status st = LM_OK;
    cudaError_t e = hq && hs && hb ? cudaMalloc(&mem, off ? off : 1) : cudaErrorMemoryAllocation;
    if (e == cudaSuccess) e = cudaMalloc(&dx, n * w->cols * sizeof(float) + 16);
    if (e == cudaSuccess) e = cudaMalloc(&dy, n * w->rows * sizeof(float) + 16);
    if (e == cudaSuccess) {
        unit_view(&u, mem);
        e = unit_upload(&u, mem, hq, hs, hb, 64);
    }
    if (e == cudaSuccess) e = cudaMemcpy(dx, x, n * w->cols * sizeof(float), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemset(dy, 0xFF, n * w->rows * sizeof(float)); /* NaN: unwritten shows */
    if (e == cudaSuccess)
        e = path == 1 ? cu_mmq(&u.view, dx, (int)w->cols, (int)n, dy, (int)w->rows, MM_STORE, 0)
                      : cu_mmv(&u.view, dx, (int)w->cols, NULL, 0.0f, (int)n, dy, (int)w->rows, MM_STORE, im->n_sm, 0);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaMemcpy(y, dy, n * w->rows * sizeof(float), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        cudaGetLastError();
        st = lm_fail(err, LM_ERR_IO, "cuda: matmul of a %s matrix: %s", type_name(w), cudaGetErrorString(e));
    }
    cudaFree(mem);
    cudaFree(dx);
    cudaFree(dy);
    lm_free(hq);
    lm_free(hs);
    lm_free(hb);
    return st;
}

extern "C" void cm_cuda_set_graphs(cm_ctx *c, bool on) { c->graphs = on; }

extern "C" void cm_cuda_mem(const cm_backend *be, size_t *weights, size_t *ctx, size_t *kv) {
    const cu_impl *im = (const cu_impl *)be->impl;
    *weights = __atomic_load_n(&im->weights, __ATOMIC_RELAXED);
    *ctx = __atomic_load_n(&im->ctxs, __ATOMIC_RELAXED);
    *kv = __atomic_load_n(&im->kvs, __ATOMIC_RELAXED);
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

extern "C" lm_status cm_cuda_copy_bandwidth(const cm_backend *be, size_t bytes, double *gbs, lm_error *err) {
    cu_impl *im = (cu_impl *)be->impl;
    cudaSetDevice(im->dev);
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms[10];
    cudaError_t e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    if (e == cudaSuccess) e = cudaMemset(a, 1, bytes);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    if (e == cudaSuccess) e = cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice); /* warm-up */
    for (int i = 0; i < 10 && e == cudaSuccess; i++) {
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(e1, 0);
        e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms[i], e0, e1);
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lm_fail(err, LM_ERR_IO, "cuda: copy bandwidth: %s", cudaGetErrorString(e));
    }
    qsort(ms, 10, sizeof ms[0], cmp_f);
    *gbs = 2.0 * (double)bytes / ((double)ms[5] * 1e-3) / 1e9;
    return LM_OK;
}

extern "C" lm_status cm_cuda_hold(const cm_backend *be, size_t leave_free, void **hold, lm_error *err) {
    cu_impl *im = (cu_impl *)be->impl;
    cudaSetDevice(im->dev);
    *hold = NULL;
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    if (fr <= leave_free) return LM_OK;
    cudaError_t e = cudaMalloc(hold, fr - leave_free);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *hold = NULL;
        return lm_fail(err, LM_ERR_NOMEM, "cuda: holding %zu MB: %s", (fr - leave_free) >> 20, cudaGetErrorString(e));
    }
    return LM_OK;
}

extern "C" void cm_cuda_unhold(const cm_backend *be, void *hold) {
    cudaSetDevice(((cu_impl *)be->impl)->dev);
    if (hold) cudaFree(hold);
}

extern "C" void cm_cuda_profiler(bool on) {
    if (on) cudaProfilerStart();
    else cudaProfilerStop();
}
