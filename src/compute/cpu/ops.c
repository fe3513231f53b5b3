/* compute/cpu/ops.c: the CPU compute context (kernel choice, pool, scratch), the per-matrix kernel
 * plans, and matrix products split over the pool by rows.
 * Owns: how a product is split over threads and which kernel runs it. Does not own: the block
 * formats (quants_*.c) or the passes of a layer (cpu_backend.c). */
#include "compute/cpu/ctx.h"
#include "compute/cpu/quants_mlx.h"

#include <math.h>
#include <stdlib.h>

/* LOCALLM_CPU narrows the features to an older kernel set, so one machine can run (and time) the
 * paths of others: "ref" (the reference kernels), "avx2" (AVX2, FMA, F16C only), "neon" (no
 * dotprod). Unset, empty or any other value: everything the CPU has. Never widens. */
uint32_t cm_cpu_features(bool force_ref) {
    if (force_ref) return 0;
    uint32_t f = lm_cpu_features();
    const char *e = getenv("LOCALLM_CPU");
    if (!e) return f;
    if (!strcmp(e, "ref")) return 0;
    if (!strcmp(e, "avx2")) return f & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C);
    if (!strcmp(e, "neon")) return f & LM_CPU_NEON;
    return f;
}

const char *cm_cpu_kernels_name(uint32_t f) {
    const char *k = "ref";
#if defined(__x86_64__) || defined(__i386__)
    if ((f & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)) == (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)) k = "avx2";
    const uint32_t v512 = LM_CPU_AVX512F | LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    if ((f & v512) == v512 && !strcmp(k, "avx2")) k = "avx512";
#elif defined(__aarch64__)
    if (f & LM_CPU_NEON) k = "neon";
#endif
    return k;
}

size_t cm_plan_size(void) { return sizeof(cm_plan); }

void cm_plan_init(cm_plan *p, const cm_matrix *w, uint32_t features) {
    memset(p, 0, sizeof *p);
    if (w->type == CM_MLX) {
        p->mlx_dotq = cm_mlx_dotq_select(w, features);
        p->mlx_dot = cm_mlx_dot_select(w, features);
        p->mlx_gemmq = cm_mlx_gemmq_select(w, features);
        p->r16m = cm_r16m_select(w, features);
        return;
    }
    p->dot = cm_dot_select(w->type, features);
    p->fdot = cm_dot_select(CM_F32, features);
    p->dequant = cm_dequant_select(w->type, features);
    uint32_t act = 0;
    cm_dotq_fn dq = cm_dotq_select(w->type, features, &act);
    if (dq) {
        const cm_type_info *ai = cm_type_get(act);
        cm_quantize_fn q = cm_quantize_select(act, features);
        if (ai && q && w->cols % ai->block_size == 0) {
            p->dotq = dq;
            p->act = act;
            p->quant = q;
        }
    }
    if (w->cols % 32 == 0) p->gemm = cm_gemm_select(w->type, features, &p->prep);
    p->r16 = cm_r16_bytes(w) ? cm_r16_select(w->type, features) : NULL;
    /* the K types: the tiles quantize as the one-token kernel does (Q8_K), so a token's result
     * does not depend on how many share the product */
    if (p->gemm && p->act == CM_Q8_K) {
        if (w->cols % 256 == 0) p->prep = cm_gemm_prep_q8k_select(features);
        else p->gemm = NULL;
    }
}

/* The plan of w: the one chosen at load, or one made now into tmp (tests, bench programs). */
static const cm_plan *plan_of(const cm_ctx *c, const cm_matrix *w, cm_plan *tmp) {
    if (w->plan) return w->plan;
    cm_plan_init(tmp, w, c->features);
    return tmp;
}

cm_ctx *cm_ctx_new(lm_pool *pool, bool force_ref) {
    cm_ctx *c = lm_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pool = pool;
    c->nth = lm_pool_size(pool);
    c->features = cm_cpu_features(force_ref);
    c->kernels = cm_cpu_kernels_name(c->features);
    c->attn = cm_attn_kernels_get(c->features);
    return c;
}

void cm_ctx_free(cm_ctx *c) {
    if (!c) return;
    lm_free(c->scratch);
    lm_free(c->xq);
    lm_free(c->act);
    lm_free(c->tiles);
    lm_free(c->r16act);
    if (c->own_pool) lm_pool_free(c->pool);
    lm_free(c);
}

const char *cm_ctx_kernels(const cm_ctx *c) { return c->kernels; }
int cm_ctx_threads(const cm_ctx *c) { return c->nth; }

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

static bool ensure_xq(cm_ctx *c, size_t need) {
    if (need <= c->xq_cap) return true;
    uint8_t *q = lm_realloc(c->xq, need);
    if (!q) return false;
    c->xq = q;
    c->xq_cap = need;
    return true;
}

typedef struct matmul_job {
    cm_ctx *c;
    const cm_matrix *w;
    const cm_plan *p;
    const float *x;
    size_t n;
    float *y;
    bool use_dotq;     /* decode: integer kernel over c->xq */
    bool use_mlx_dotq; /* decode: MLX integer kernel over c->xq (cm_mlx_quantize_x) */
} matmul_job;

static void matmul_task(void *ctx, int ith, int nth) {
    matmul_job *j = ctx;
    const cm_matrix *w = j->w;
    const cm_plan *p = j->p;
    size_t r0 = w->rows * (size_t)ith / (size_t)nth, r1 = w->rows * (size_t)(ith + 1) / (size_t)nth;
    if (w->type == CM_MLX) { /* one token, or no tiled kernel: row by row for each token */
        for (size_t t = 0; t < j->n; t++) {
            const float *x = j->x + t * w->cols;
            float *y = j->y + t * w->rows;
            if (j->use_mlx_dotq)
                for (size_t r = r0; r < r1; r++) y[r] = p->mlx_dotq(w, r, j->c->xq);
            else
                for (size_t r = r0; r < r1; r++) y[r] = p->mlx_dot(w, r, x);
        }
        return;
    }
    const uint8_t *base = w->data;
    if (j->n == 1) {
        if (j->use_dotq)
            for (size_t r = r0; r < r1; r++) j->y[r] = p->dotq(base + r * w->row_bytes, j->c->xq, w->cols);
        else
            for (size_t r = r0; r < r1; r++) j->y[r] = p->dot(base + r * w->row_bytes, j->x, w->cols);
        return;
    }
    /* Several tokens: dequantize each weight row once and reuse it for every token. The float
     * types' dot kernels give the same numbers as dequantizing and then the F32 dot (the same
     * order of additions), so a token's result does not depend on how many share the pass. */
    float *row = j->c->scratch + (size_t)ith * j->c->scratch_per;
    for (size_t r = r0; r < r1; r++) {
        const float *wr;
        if (w->type == CM_F32) {
            wr = (const float *)(base + r * w->row_bytes);
        } else {
            p->dequant(base + r * w->row_bytes, row, w->cols);
            wr = row;
        }
        for (size_t t = 0; t < j->n; t++) j->y[t * w->rows + r] = p->fdot(wr, j->x + t * w->cols, w->cols);
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

/* The products of x (n > 1 tokens) with those of w[0..nw) (nw <= MULTI_MAX) not done yet that
 * have a tiled kernel, w[0]->cols columns and the activation quantizer of the first of them; sets
 * done[i] for the ones it computed. Returns how many. */
static size_t gemm_multi(cm_ctx *c, const cm_matrix *const *w, size_t nw, const float *x, size_t n,
                         float *const *y, bool *done) {
    gemm_job j;
    memset(&j, 0, sizeof j);
    j.c = c;
    j.x = x;
    size_t first = 0;
    while (first < nw && done[first]) first++;
    if (first == nw) return 0;
    size_t cols = w[first]->cols;
    bool take[MULTI_MAX] = {false};
    for (size_t i = 0; i < nw; i++) {
        cm_plan tmp;
        const cm_plan *p = plan_of(c, w[i], &tmp);
        if (w[i]->type == CM_MLX || w[i]->cols != cols || !p->gemm || done[i]) continue;
        if (j.nw && p->prep != j.prep) continue; /* another activation rule: a later run */
        take[i] = true;
        j.w[j.nw] = w[i];
        j.y[j.nw] = y[i];
        j.fn[j.nw] = p->gemm;
        j.units += (w[i]->rows + 15) / 16;
        j.prep = p->prep;
        j.nw++;
    }
    if (!j.nw || !ensure_gemm(c, n, cols)) return 0;
    j.act.n = n;
    j.act.cols = cols;
    j.act.n_grp = (n + CM_GEMM_TOK - 1) / CM_GEMM_TOK;
    j.act.mem = (uint8_t *)(((uintptr_t)c->act + 63) & ~(uintptr_t)63);
    lm_pool_run(c->pool, gemm_prep_task, &j);
    lm_pool_run(c->pool, gemm_task, &j);
    for (size_t i = 0; i < nw; i++) done[i] = done[i] || take[i];
    return j.nw;
}

/* ---- MLX products of several tokens (quants.h, cm_mlx_matmul) ---- */

typedef struct mlx_job {
    const cm_matrix *w;
    const float *x;
    size_t n, xb;
    float *y;
    uint8_t *xq;
    uint32_t features;
    cm_mlx_gemmq_fn fn;
    cm_mlx_tiles_fn tiles; /* the token-lane tiles kernel (quants_mlx.h), or NULL: fn */
} mlx_job;

static void mlx_prep_task(void *p, int ith, int nth) {
    mlx_job *j = p;
    if (j->tiles) {
        size_t nt = (j->n + CM_MLX_LANES - 1) / CM_MLX_LANES;
        for (size_t k = nt * (size_t)ith / (size_t)nth; k < nt * (size_t)(ith + 1) / (size_t)nth; k++)
            cm_mlx_prep_tile(j->w, j->x, j->n, j->xq + k * j->xb, k);
        return;
    }
    size_t t0 = j->n * (size_t)ith / (size_t)nth, t1 = j->n * (size_t)(ith + 1) / (size_t)nth;
    for (size_t t = t0; t < t1; t++)
        cm_mlx_quantize_x(j->w, j->x + t * j->w->cols, j->xq + t * j->xb, j->features);
}

/* Rows in units of 8 so neighbouring threads do not write the same cache lines of y. */
static void mlx_gemm_task(void *p, int ith, int nth) {
    mlx_job *j = p;
    size_t units = (j->w->rows + 7) / 8;
    size_t r0 = units * (size_t)ith / (size_t)nth * 8, r1 = units * (size_t)(ith + 1) / (size_t)nth * 8;
    if (r1 > j->w->rows) r1 = j->w->rows;
    if (r0 >= r1) return;
    if (j->tiles) {
        j->tiles(j->w, r0, r1, j->xq, j->n, j->y, j->w->rows);
        return;
    }
    j->fn(j->w, r0, r1, j->xq, j->xb, j->n, j->y, j->w->rows);
}

bool cm_mlx_matmul(lm_pool *pool, uint32_t cpu_features, cm_mlx_gemmq_fn fn, uint8_t **buf, size_t *cap,
                   const cm_matrix *w, const float *x, size_t n, float *y) {
    if (!fn || n == 0) return false;
    cm_mlx_tiles_fn tiles = cm_mlx_tiles_select(fn);
    size_t xb = tiles ? cm_mlx_tile_bytes(w) : cm_mlx_xq_bytes(w), need;
    size_t units = tiles ? (n + CM_MLX_LANES - 1) / CM_MLX_LANES : n;
    if (!lm_mul_ok(xb, units, &need)) return false;
    if (need > *cap) {
        uint8_t *q = lm_realloc(*buf, need);
        if (!q) return false;
        *buf = q;
        *cap = need;
    }
    mlx_job j = {w, x, n, xb, y, *buf, cpu_features, fn, tiles};
    lm_pool_run(pool, mlx_prep_task, &j);
    lm_pool_run(pool, mlx_gemm_task, &j);
    return true;
}

/* ---- decode, and the float path of the other types ---- */

/* The product of one matrix, without the tiled kernels. */
static void matmul_one(cm_ctx *c, const cm_matrix *w, const float *x, size_t n, float *y) {
    cm_plan tmp;
    const cm_plan *p = plan_of(c, w, &tmp);
    if (n > 1 && w->type == CM_MLX && cm_mlx_matmul(c->pool, c->features, p->mlx_gemmq, &c->xq, &c->xq_cap, w, x, n, y))
        return;
    matmul_job j = {c, w, p, x, n, y, false, false};
    if (w->type == CM_MLX) {
        if (n == 1 && p->mlx_dotq && ensure_xq(c, cm_mlx_xq_bytes(w))) {
            cm_mlx_quantize_x(w, x, c->xq, c->features);
            j.use_mlx_dotq = true;
        }
        if (n > 1 || j.use_mlx_dotq) {
            lm_pool_run(c->pool, matmul_task, &j);
            return;
        }
        lm_pool_run(c->pool, matmul_task, &j);
        return;
    }
    if (n > 1 && !ensure_scratch(c, w->cols)) {
        /* No scratch: per-token products, slower but correct. */
        for (size_t t = 0; t < n; t++) matmul_one(c, w, x + t * w->cols, 1, y + t * w->rows);
        return;
    }
    if (n == 1 && p->dotq) {
        const cm_type_info *ai = cm_type_get(p->act);
        if (ensure_xq(c, w->cols / ai->block_size * ai->block_bytes)) {
            p->quant(x, c->xq, w->cols);
            j.use_dotq = true;
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
 * quantized once per activation type (Q8_0, Q8_0X4, Q8_K) and all rows share one pool run. Sets
 * done[i] for the ones it computed. */
static void dec_multi(cm_ctx *c, const cm_matrix *const *w, size_t nw, const float *x,
                      float *const *y, bool *done) {
    dec_job j;
    memset(&j, 0, sizeof j);
    size_t first = 0;
    while (first < nw && done[first]) first++;
    if (first == nw) return;
    size_t cols = w[first]->cols;
    enum { N_ACT = 3 };
    const uint32_t acts[N_ACT] = {CM_Q8_0, CM_Q8_0X4, CM_Q8_K};
    cm_quantize_fn quant[N_ACT] = {NULL, NULL, NULL};
    size_t off[N_ACT], need = 0, xoff[MULTI_MAX];
    for (int a = 0; a < N_ACT; a++) {
        const cm_type_info *ai = cm_type_get(acts[a]);
        off[a] = need;
        if (cols % ai->block_size == 0) need += (cols / ai->block_size * ai->block_bytes + 63) & ~(size_t)63;
    }
    bool take[MULTI_MAX] = {false};
    for (size_t i = 0; i < nw; i++) {
        cm_plan tmp;
        const cm_plan *p = plan_of(c, w[i], &tmp);
        if (done[i] || w[i]->type == CM_MLX || w[i]->cols != cols || !p->dotq) continue;
        int a = p->act == CM_Q8_K ? 2 : p->act == CM_Q8_0X4 ? 1 : 0;
        quant[a] = p->quant;
        take[i] = true;
        j.w[j.nw] = w[i];
        j.y[j.nw] = y[i];
        j.fn[j.nw] = p->dotq;
        xoff[j.nw] = off[a];
        j.units += (w[i]->rows + 15) / 16;
        j.nw++;
    }
    if (j.nw < 2 || !ensure_xq(c, need)) return; /* one matrix: matmul_one does the same */
    for (int a = 0; a < N_ACT; a++)
        if (quant[a]) quant[a](x, c->xq + off[a], cols);
    for (size_t k = 0; k < j.nw; k++) j.xq[k] = c->xq + xoff[k];
    lm_pool_run(c->pool, dec_task, &j);
    for (size_t i = 0; i < nw; i++) done[i] = done[i] || take[i];
}

/* ---- R16: repacked matrices, one kernel for any number of tokens ---- */

/* Tokens per unit of work: the activations of a unit's tokens (up to 64 x cols bytes) stay in
 * L2 while its groups stream past. */
#define R16_TOK 64

typedef struct r16_job {
    const cm_matrix *w[MULTI_MAX];
    float *y[MULTI_MAX];
    size_t groups[MULTI_MAX];   /* row groups of each */
    size_t nw, n_groups;        /* groups over all matrices */
    size_t n, n_tb;             /* tokens, and their blocks of R16_TOK */
    const float *x;
    uint8_t *act;
    size_t act_bytes;
    cm_r16_quant_fn q4;         /* the R16 activation quantizer */
    bool mlx;                   /* R16M matrices (MLX 4-bit) and their activations */
    cm_r16m_quant_fn q16;
} r16_job;

static void r16_quant_chunk(void *ctx, int chunk, int n_chunks, int ith) {
    (void)ith;
    r16_job *j = ctx;
    size_t cols = j->w[0]->cols;
    for (size_t t = j->n * (size_t)chunk / (size_t)n_chunks; t < j->n * (size_t)(chunk + 1) / (size_t)n_chunks; t++)
        if (j->mlx) j->q16(j->x + t * cols, cols, j->act + t * j->act_bytes);
        else j->q4(j->x + t * cols, cols, j->act + t * j->act_bytes);
}

/* Units are (token block, group of all matrices); a chunk is a range of them. */
static void r16_chunk(void *ctx, int chunk, int n_chunks, int ith) {
    (void)ith;
    r16_job *j = ctx;
    size_t units = j->n_tb * j->n_groups;
    size_t u0 = units * (size_t)chunk / (size_t)n_chunks, u1 = units * (size_t)(chunk + 1) / (size_t)n_chunks;
    while (u0 < u1) {
        size_t tb = u0 / j->n_groups, gi = u0 % j->n_groups, end = LM_MIN(u1, (tb + 1) * j->n_groups) - tb * j->n_groups;
        size_t t0 = tb * R16_TOK, nt = LM_MIN((size_t)R16_TOK, j->n - t0);
        /* groups [gi, end) of the concatenated matrices */
        size_t off = 0;
        for (size_t i = 0; i < j->nw && gi < end; i++) {
            size_t g_end = off + j->groups[i];
            if (gi < g_end) {
                size_t a = gi - off, b = LM_MIN(end, g_end) - off;
                const cm_matrix *w = j->w[i];
                const cm_plan *p = w->plan;
                if (j->mlx)
                    p->r16m(w, w->data, a, b, j->act + t0 * j->act_bytes, j->act_bytes, nt, j->y[i] + t0 * w->rows, w->rows);
                else
                    p->r16(w->data, w->cols, w->rows, a, b, j->act + t0 * j->act_bytes, j->act_bytes, nt,
                           j->y[i] + t0 * w->rows, w->rows);
                gi = off + b;
            }
            off = g_end;
        }
        u0 = (tb + 1) * j->n_groups < u1 ? (tb + 1) * j->n_groups : u1;
    }
}

static bool ensure_r16act(cm_ctx *c, size_t need) {
    need += 64;
    if (need <= c->r16act_cap) return true;
    uint8_t *a = lm_realloc(c->r16act, need);
    if (!a) return false;
    c->r16act = a;
    c->r16act_cap = need;
    return true;
}

/* The products of x with those of w[0..nw) not done yet whose weights are repacked (R16, or R16M
 * for MLX: the kind of the first such matrix) and that have its columns; sets done[i] for them.
 * Returns how many. */
static size_t r16_multi(cm_ctx *c, const cm_matrix *const *w, size_t nw, const float *x, size_t n, float *const *y,
                        bool *done) {
    r16_job j;
    memset(&j, 0, sizeof j);
    size_t cols = 0;
    bool take[MULTI_MAX] = {false};
    for (size_t i = 0; i < nw; i++) {
        const cm_plan *p = w[i]->plan;
        if (done[i] || !p || !p->packed || (cols && (w[i]->cols != cols || (w[i]->type == CM_MLX) != j.mlx))) continue;
        cols = w[i]->cols;
        j.mlx = w[i]->type == CM_MLX;
        take[i] = true;
        j.w[j.nw] = w[i];
        j.y[j.nw] = y[i];
        j.groups[j.nw] = (w[i]->rows + 15) / 16;
        j.n_groups += j.groups[j.nw];
        j.nw++;
    }
    if (!j.nw) return 0;
    j.act_bytes = j.mlx ? cm_r16m_act_bytes(cols) : cm_r16_act_bytes(cols);
    size_t need;
    if (!lm_mul_ok(j.act_bytes, n, &need) || !ensure_r16act(c, need)) return 0;
    j.act = (uint8_t *)(((uintptr_t)c->r16act + 63) & ~(uintptr_t)63);
    j.x = x;
    j.n = n;
    j.n_tb = (n + R16_TOK - 1) / R16_TOK;
    j.q4 = cm_r16_quantize_select(c->features);
    j.q16 = cm_r16m_quantize_select(c->features);
    if (n >= 8 && c->nth > 1) lm_pool_run_chunks(c->pool, r16_quant_chunk, &j, c->nth);
    else r16_quant_chunk(&j, 0, 1, 0);
    size_t units = j.n_tb * j.n_groups;
    size_t n_chunks = LM_MIN(units, (size_t)c->nth * 8);
    lm_pool_run_chunks(c->pool, r16_chunk, &j, (int)n_chunks);
    for (size_t i = 0; i < nw; i++) done[i] = done[i] || take[i];
    return j.nw;
}

void cm_matmul_multi(cm_ctx *c, const cm_matrix *const *w, size_t nw, const float *x, size_t n,
                     float *const *y) {
    if (n == 0) return;
    for (size_t i0 = 0; i0 < nw; i0 += MULTI_MAX) {
        size_t k = LM_MIN((size_t)MULTI_MAX, nw - i0);
        bool done[MULTI_MAX] = {false};
        while (r16_multi(c, w + i0, k, x, n, y + i0, done)) {}
        if (n > 1)
            while (gemm_multi(c, w + i0, k, x, n, y + i0, done)) {}
        else
            dec_multi(c, w + i0, k, x, y + i0, done);
        for (size_t i = 0; i < k; i++)
            if (!done[i]) matmul_one(c, w[i0 + i], x, n, y[i0 + i]);
    }
}

void cm_matmul(cm_ctx *c, const cm_matrix *w, const float *x, size_t n, float *y) {
    cm_matmul_multi(c, &w, 1, x, n, &y);
}

void cm_dequant_row(const cm_matrix *m, size_t row, float *out) {
    const cm_plan *p = m->plan;
    if (p && p->packed) {
        if (m->type == CM_MLX) cm_r16m_dequant_row(m, m->data, row, out);
        else cm_r16_dequant_row(m->data, m->cols, row, out);
        return;
    }
    if (m->type == CM_MLX) {
        cm_mlx_dequant_row(m, row, out);
        return;
    }
    const uint8_t *r = (const uint8_t *)m->data + row * m->row_bytes;
    if (p && p->dequant) p->dequant(r, out, m->cols);
    else cm_dequant_ref(m->type, r, out, m->cols);
}

bool cm_ctx_reserve(cm_ctx *c, size_t max_tokens, size_t max_cols) {
    if (!ensure_scratch(c, max_cols)) return false;
    /* decode activations of every type, and the prefill tiles of max_tokens tokens */
    if (!ensure_xq(c, 3 * (max_cols / 32 * 36 + 64) + max_cols / 256 * 292 + 256)) return false;
    size_t r16;
    if (!lm_mul_ok(LM_MAX(max_tokens, (size_t)1), cm_r16m_act_bytes(max_cols), &r16) || !ensure_r16act(c, r16)) return false;
    return max_tokens < 2 || max_cols % 32 || ensure_gemm(c, max_tokens, max_cols);
}
