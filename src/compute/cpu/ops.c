/* compute/cpu/ops.c: the compute context (kernel choice, pool, scratch), matrix products split
 * over the pool by rows.
 * Owns: how work is split over threads. Does not own: the block formats (quants_*.c). */
#include "compute/backend.h"
#include "compute/cpu/quants.h"

#include <math.h>

struct cm_ctx {
    lm_pool *pool;     /* borrowed */
    int nth;
    bool force_ref;
    const char *kernels;
    float *scratch;    /* per-thread row buffers: nth * scratch_per */
    size_t scratch_per;
    uint32_t features; /* 0 when force_ref */
    uint8_t *xq;       /* the activation quantized for integer dot kernels */
    size_t xq_cap;
    uint8_t *act;      /* prefill: all tokens' activations (cm_gemm_act), unaligned base */
    size_t act_cap;
    uint8_t *tiles;    /* prefill: per-thread unpacked weight tiles, tiles_per bytes each */
    size_t tiles_per;
};

cm_ctx *cm_ctx_new(lm_pool *pool, bool force_ref) {
    cm_ctx *c = lm_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pool = pool;
    c->nth = lm_pool_size(pool);
    c->force_ref = force_ref;
    c->features = force_ref ? 0 : lm_cpu_features();
    c->kernels = "ref";
#if defined(__x86_64__) || defined(__i386__)
    if ((c->features & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)) == (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)) c->kernels = "avx2";
#elif defined(__aarch64__)
    if (c->features & LM_CPU_NEON) c->kernels = "neon";
#endif
    const uint32_t v512 = LM_CPU_AVX512F | LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    if ((c->features & v512) == v512 && !strcmp(c->kernels, "avx2")) c->kernels = "avx512";
    return c;
}

void cm_ctx_free(cm_ctx *c) {
    if (!c) return;
    lm_free(c->scratch);
    lm_free(c->xq);
    lm_free(c->act);
    lm_free(c->tiles);
    lm_free(c);
}

const char *cm_ctx_kernels(const cm_ctx *c) { return c->kernels; }
int cm_ctx_threads(const cm_ctx *c) { return c->nth; }
lm_pool *cm_ctx_pool(const cm_ctx *c) { return c->pool; }
uint32_t cm_ctx_features(const cm_ctx *c) { return c->features; }

/* Makes sure every thread has `per` floats of scratch. Called before a pool run only. */
static bool ensure_scratch(cm_ctx *c, size_t per) {
    if (per <= c->scratch_per) return true;
    size_t total;
    if (!lm_mul_ok(per, (size_t)c->nth, &total)) return false;
    float *s = lm_realloc(c->scratch, total * sizeof(float));
    if (!s) return false;
    c->scratch = s;
    c->scratch_per = per;
    return true;
}

static inline float dot_f32(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
        s4 += a[i + 4] * b[i + 4];
        s5 += a[i + 5] * b[i + 5];
        s6 += a[i + 6] * b[i + 6];
        s7 += a[i + 7] * b[i + 7];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

typedef struct matmul_job {
    cm_ctx *c;
    const cm_matrix *w;
    const float *x;
    size_t n;
    float *y;
    cm_dot_fn dot;       /* decode: float-activation kernel */
    cm_dotq_fn dotq;     /* decode: integer kernel over c->xq, preferred when set */
    cm_mlx_dot_fn mlx_dot;
    cm_mlx_dotq_fn mlx_dotq; /* decode: MLX integer kernel over c->xq (cm_mlx_quantize_x) */
    cm_dot_fn fdot;      /* several tokens: SIMD float dot of a dequantized row (NULL: dot_f32) */
} matmul_job;

static void matmul_task(void *p, int ith, int nth) {
    matmul_job *j = p;
    const cm_matrix *w = j->w;
    size_t r0 = w->rows * (size_t)ith / (size_t)nth, r1 = w->rows * (size_t)(ith + 1) / (size_t)nth;
    if (j->n == 1) {
        const uint8_t *base = w->data;
        if (j->mlx_dotq) {
            for (size_t r = r0; r < r1; r++) j->y[r] = j->mlx_dotq(w, r, j->c->xq);
        } else if (j->mlx_dot) {
            for (size_t r = r0; r < r1; r++) j->y[r] = j->mlx_dot(w, r, j->x);
        } else if (j->dotq) {
            for (size_t r = r0; r < r1; r++) j->y[r] = j->dotq(base + r * w->row_bytes, j->c->xq, w->cols);
        } else {
            for (size_t r = r0; r < r1; r++) j->y[r] = j->dot(base + r * w->row_bytes, j->x, w->cols);
        }
        return;
    }
    /* Several tokens: dequantize each weight row once and reuse it for every token. */
    float *row = j->c->scratch + (size_t)ith * j->c->scratch_per;
    for (size_t r = r0; r < r1; r++) {
        const float *wr;
        if (w->type == CM_F32) {
            wr = (const float *)((const uint8_t *)w->data + r * w->row_bytes);
        } else {
            cm_dequant_row(w, r, row);
            wr = row;
        }
        if (j->fdot) {
            for (size_t t = 0; t < j->n; t++) j->y[t * w->rows + r] = j->fdot(wr, j->x + t * w->cols, w->cols);
        } else {
            for (size_t t = 0; t < j->n; t++) j->y[t * w->rows + r] = dot_f32(wr, j->x + t * w->cols, w->cols);
        }
    }
}

/* ---- prefill: tiled integer kernels (quants.h, cm_gemm_fn) ---- */

/* Products of one input with up to this many matrices share one pool run. */
#define MULTI_MAX 8

typedef struct gemm_job {
    cm_ctx *c;
    const cm_matrix *w[MULTI_MAX];
    float *y[MULTI_MAX];
    cm_gemm_fn fn[MULTI_MAX];
    size_t nw;
    size_t units;        /* 16-row units over all matrices: threads take whole units */
    const float *x;
    cm_gemm_act act;
    cm_gemm_prep_fn prep;
} gemm_job;

static void gemm_prep_task(void *p, int ith, int nth) {
    gemm_job *j = p;
    size_t g = j->act.n_grp;
    j->prep(j->x, j->act.cols, &j->act, g * (size_t)ith / (size_t)nth, g * (size_t)(ith + 1) / (size_t)nth);
}

static void gemm_task(void *p, int ith, int nth) {
    gemm_job *j = p;
    size_t u0 = j->units * (size_t)ith / (size_t)nth, u1 = j->units * (size_t)(ith + 1) / (size_t)nth;
    void *scratch = j->c->tiles + (size_t)ith * j->c->tiles_per;
    size_t off = 0;
    for (size_t i = 0; i < j->nw; i++) {
        const cm_matrix *w = j->w[i];
        size_t mu = (w->rows + 15) / 16, lo = LM_MAX(u0, off), hi = LM_MIN(u1, off + mu);
        if (lo < hi)
            j->fn[i](w, (lo - off) * 16, LM_MIN(w->rows, (hi - off) * 16), &j->act, j->y[i], w->rows, scratch);
        off += mu;
    }
}

/* Makes room for the activations of n tokens of cols and every thread's weight tile. */
static bool ensure_gemm(cm_ctx *c, size_t n, size_t cols) {
    size_t need = cm_gemm_act_bytes(n, cols) + 64;
    if (need > c->act_cap) {
        uint8_t *a = lm_realloc(c->act, need);
        if (!a) return false;
        c->act = a;
        c->act_cap = need;
    }
    size_t per = (cm_gemm_scratch_bytes(cols, n) + 63) & ~(size_t)63, total;
    if (per > c->tiles_per) {
        if (!lm_mul_ok(per, (size_t)c->nth, &total)) return false;
        uint8_t *t = lm_realloc(c->tiles, total);
        if (!t) return false;
        c->tiles = t;
        c->tiles_per = per;
    }
    return true;
}

/* The products of x (n > 1 tokens) with those of w[0..nw) (nw <= MULTI_MAX) that have a tiled
 * kernel and w[0]->cols columns; sets done[i] for the ones it computed. */
static void gemm_multi(cm_ctx *c, const cm_matrix *const *w, size_t nw, const float *x, size_t n,
                       float *const *y, bool *done) {
    gemm_job j;
    memset(&j, 0, sizeof j);
    j.c = c;
    j.x = x;
    size_t cols = w[0]->cols;
    bool take[MULTI_MAX] = {false};
    for (size_t i = 0; i < nw; i++) {
        cm_gemm_prep_fn prep = NULL;
        cm_gemm_fn fn = w[i]->type == CM_MLX || w[i]->cols != cols || cols % 32 ? NULL
                      : cm_gemm_select(w[i]->type, c->features, &prep);
        if (!fn) continue;
        take[i] = true;
        j.w[j.nw] = w[i];
        j.y[j.nw] = y[i];
        j.fn[j.nw] = fn;
        j.units += (w[i]->rows + 15) / 16;
        j.prep = prep;
        j.nw++;
    }
    if (!j.nw || !ensure_gemm(c, n, cols)) return;
    j.act.n = n;
    j.act.cols = cols;
    j.act.n_grp = (n + CM_GEMM_TOK - 1) / CM_GEMM_TOK;
    j.act.mem = (uint8_t *)(((uintptr_t)c->act + 63) & ~(uintptr_t)63);
    lm_pool_run(c->pool, gemm_prep_task, &j);
    lm_pool_run(c->pool, gemm_task, &j);
    for (size_t i = 0; i < nw; i++) done[i] = take[i];
}

/* ---- decode, and the float path of the other types ---- */

/* The product of one matrix, without the tiled kernels. */
static void matmul_one(cm_ctx *c, const cm_matrix *w, const float *x, size_t n, float *y) {
    if (n > 1 && w->type == CM_MLX && cm_mlx_matmul(c->pool, c->features, &c->xq, &c->xq_cap, w, x, n, y))
        return;
    if (n > 1 && !ensure_scratch(c, w->cols)) {
        /* No scratch: fall back to per-token dots, slower but correct. */
        for (size_t t = 0; t < n; t++) matmul_one(c, w, x + t * w->cols, 1, y + t * w->rows);
        return;
    }
    matmul_job j = {c, w, x, n, y, NULL, NULL, NULL, NULL, NULL};
    if (n > 1 && c->features) j.fdot = cm_dot_select(CM_F32, c->features);
    if (n == 1) {
        if (w->type == CM_MLX) {
            j.mlx_dotq = cm_mlx_dotq_select(w, c->features);
            size_t need = j.mlx_dotq ? cm_mlx_xq_bytes(w) : 0;
            if (need > c->xq_cap) {
                uint8_t *q = lm_realloc(c->xq, need);
                if (q) {
                    c->xq = q;
                    c->xq_cap = need;
                } else {
                    j.mlx_dotq = NULL;
                }
            }
            if (j.mlx_dotq) cm_mlx_quantize_x(w, x, c->xq, c->features);
            else j.mlx_dot = cm_mlx_dot_select(w, c->features);
        } else {
            uint32_t act = 0;
            j.dotq = cm_dotq_select(w->type, c->features, &act);
            cm_quantize_fn quant = j.dotq ? cm_quantize_select(act, c->features) : NULL;
            if (j.dotq) {
                const cm_type_info *ai = cm_type_get(act);
                size_t need = ai ? w->cols / ai->block_size * ai->block_bytes : 0;
                if (!ai || !quant || w->cols % ai->block_size) {
                    j.dotq = NULL;
                } else if (need > c->xq_cap) {
                    uint8_t *q = lm_realloc(c->xq, need);
                    if (q) {
                        c->xq = q;
                        c->xq_cap = need;
                    } else {
                        j.dotq = NULL;
                    }
                }
                if (j.dotq) quant(x, c->xq, w->cols);
            }
            if (!j.dotq) j.dot = cm_dot_select(w->type, c->features);
        }
    }
    lm_pool_run(c->pool, matmul_task, &j);
}

/* ---- decode of several matrices with one input ---- */

typedef struct dec_job {
    const cm_matrix *w[MULTI_MAX];
    float *y[MULTI_MAX];
    cm_dotq_fn fn[MULTI_MAX];
    const uint8_t *xq[MULTI_MAX];
    size_t nw, units; /* 16-row units over all matrices */
} dec_job;

static void dec_task(void *p, int ith, int nth) {
    dec_job *j = p;
    size_t u0 = j->units * (size_t)ith / (size_t)nth, u1 = j->units * (size_t)(ith + 1) / (size_t)nth;
    size_t off = 0;
    for (size_t i = 0; i < j->nw; i++) {
        const cm_matrix *w = j->w[i];
        size_t mu = (w->rows + 15) / 16, lo = LM_MAX(u0, off), hi = LM_MIN(u1, off + mu);
        const uint8_t *base = w->data;
        for (size_t r = (lo < hi ? (lo - off) * 16 : 0), r1 = lo < hi ? LM_MIN(w->rows, (hi - off) * 16) : 0; r < r1; r++)
            j->y[i][r] = j->fn[i](base + r * w->row_bytes, j->xq[i], w->cols);
        off += mu;
    }
}

/* One token through those of w[0..nw) (nw <= MULTI_MAX) that have integer dot kernels: x is
 * quantized once per activation type (Q8_0, Q8_K) and all rows share one pool run. Sets done[i]
 * for the ones it computed. */
static void dec_multi(cm_ctx *c, const cm_matrix *const *w, size_t nw, const float *x,
                      float *const *y, bool *done) {
    dec_job j;
    memset(&j, 0, sizeof j);
    size_t cols = w[0]->cols;
    enum { N_ACT = 3 };
    const uint32_t acts[N_ACT] = {CM_Q8_0, CM_Q8_0X4, CM_Q8_K};
    size_t off[N_ACT], need = 0, xoff[MULTI_MAX];
    for (int a = 0; a < N_ACT; a++) {
        const cm_type_info *ai = cm_type_get(acts[a]);
        off[a] = need;
        if (cols % ai->block_size == 0) need += (cols / ai->block_size * ai->block_bytes + 63) & ~(size_t)63;
    }
    bool used[N_ACT] = {false, false, false}, take[MULTI_MAX] = {false};
    for (size_t i = 0; i < nw; i++) {
        uint32_t act = 0;
        cm_dotq_fn fn = w[i]->type == CM_MLX || w[i]->cols != cols ? NULL : cm_dotq_select(w[i]->type, c->features, &act);
        int a = act == CM_Q8_K ? 2 : act == CM_Q8_0X4 ? 1 : 0;
        if (!fn || cols % cm_type_get(act)->block_size || !cm_quantize_select(act, c->features)) continue;
        take[i] = used[a] = true;
        j.w[j.nw] = w[i];
        j.y[j.nw] = y[i];
        j.fn[j.nw] = fn;
        xoff[j.nw] = off[a];
        j.units += (w[i]->rows + 15) / 16;
        j.nw++;
    }
    if (j.nw < 2) return; /* one matrix: matmul_one does the same */
    if (need > c->xq_cap) {
        uint8_t *q = lm_realloc(c->xq, need);
        if (!q) return;
        c->xq = q;
        c->xq_cap = need;
    }
    for (int a = 0; a < N_ACT; a++)
        if (used[a]) cm_quantize_select(acts[a], c->features)(x, c->xq + off[a], cols);
    for (size_t k = 0; k < j.nw; k++) j.xq[k] = c->xq + xoff[k];
    lm_pool_run(c->pool, dec_task, &j);
    for (size_t i = 0; i < nw; i++) done[i] = take[i];
}

void cm_matmul_multi(cm_ctx *c, const cm_matrix *const *w, size_t nw, const float *x, size_t n,
                     float *const *y) {
    if (n == 0) return;
    for (size_t i0 = 0; i0 < nw; i0 += MULTI_MAX) {
        size_t k = LM_MIN((size_t)MULTI_MAX, nw - i0);
        bool done[MULTI_MAX] = {false};
        if (n > 1) gemm_multi(c, w + i0, k, x, n, y + i0, done);
        else dec_multi(c, w + i0, k, x, y + i0, done);
        for (size_t i = 0; i < k; i++)
            if (!done[i]) matmul_one(c, w[i0 + i], x, n, y[i0 + i]);
    }
}

void cm_matmul(cm_ctx *c, const cm_matrix *w, const float *x, size_t n, float *y) {
    cm_matmul_multi(c, &w, 1, x, n, &y);
}

/* Element-wise ops and attention live in attention.c. */

bool cm_ctx_reserve(cm_ctx *c, size_t n_ctx, size_t max_cols) {
    return ensure_scratch(c, LM_MAX(n_ctx, max_cols));
}
