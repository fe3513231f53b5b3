/* compute/cpu/attention.c: causal grouped-query attention over the KV cache in one pass per
 * query (online softmax), cache rows in F16 or F32, and the element-wise ops of a layer.
 * Owns: how attention is tiled and split over the pool, the KV row format, and the portable
 * inner loops (the oracle for attention_avx2.c and attention_avx512.c).
 * Does not own: matrix products (ops.c) or where the cache lives (model/forward.c). */
#include "compute/cpu/ctx.h"

#include <math.h>

/* Tile sizes (attention.h): CM_ATTN_KB keys are made float once (K transposed, V as rows) and
 * then used by up to CM_ATTN_ROWS (query, head) rows that share one KV head, so each cache row is
 * read from memory once per tile of rows; with hd = 128 the working set (2 * 32 * 128 + 64 * 128
 * floats, 64 KiB) stays in L2. 64 rows rather than 32 halve the K transposition and V
 * conversion per row: prefill at P=4096 ~10 % faster on the Zen 4. */
#define ATTN_KB CM_ATTN_KB
#define ATTN_ROWS CM_ATTN_ROWS

/* ---- portable kernels ---- */

/* Half to float, exact; the bit shift handles normal numbers, core the rest. */
static inline float h2f(uint16_t h) {
    uint32_t em = h & 0x7FFFu;
    if (em >= 0x0400u && em < 0x7C00u) {
        union { uint32_t u; float f; } v;
        v.u = ((uint32_t)(h & 0x8000u) << 16) | ((em << 13) + ((uint32_t)(127 - 15) << 23));
        return v.f;
    }
    return lm_f16_to_f32(h);
}

static void load_kt_ref(float *kt, const void *k, bool f16, size_t n_keys, size_t hd) {
    for (size_t d = 0; d < hd; d++) {
        float *row = kt + d * CM_ATTN_KB;
        for (size_t j = 0; j < n_keys; j++)
            row[j] = f16 ? h2f(((const uint16_t *)k)[j * hd + d]) : ((const float *)k)[j * hd + d];
        for (size_t j = n_keys; j < CM_ATTN_KB; j++) row[j] = 0;
    }
}

/* Row by row, in the order the vector kernels keep per lane: each score one sum over d, then the
 * max, the exps and their sum, and each acc[d] one sum over the keys. */
static void block_ref(cm_attn_row *const *rows, size_t n_rows, const float *kt, const float *v, size_t hd,
                      float scale) {
    float s[CM_ATTN_KB];
    for (size_t r = 0; r < n_rows; r++) {
        cm_attn_row *w = rows[r];
        float m = -INFINITY;
        for (size_t j = w->lo; j < w->hi; j++) {
            float a = 0;
            for (size_t d = 0; d < hd; d++) a += w->q[d] * kt[d * CM_ATTN_KB + j];
            s[j] = a * scale;
            m = s[j] > m ? s[j] : m;
        }
        float f = cm_attn_raise_max(w, m);
        if (f != 1.0f)
            for (size_t d = 0; d < hd; d++) w->acc[d] *= f;
        float sum = 0;
        for (size_t j = w->lo; j < w->hi; j++) sum += s[j] = expf(s[j] - w->m);
        w->l += sum;
        for (size_t j = w->lo; j < w->hi; j++)
            for (size_t d = 0; d < hd; d++) w->acc[d] += s[j] * v[j * hd + d];
    }
}

static void f16_to_f32_ref(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = h2f(src[i]);
}

static void f32_to_f16_ref(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = lm_f32_to_f16(src[i]);
}

static void swiglu_ref(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static const cm_attn_kernels kernels_ref = {
    "ref", load_kt_ref, block_ref, f16_to_f32_ref, f32_to_f16_ref, swiglu_ref,
};

const cm_attn_kernels *cm_attn_kernels_get(uint32_t cpu_features) {
#ifdef CM_HAVE_ATTN_AVX2
    uint32_t need = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C;
    uint32_t need512 = need | LM_CPU_AVX512F | LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512DQ;
    if ((cpu_features & need512) == need512) return &cm_attn_kernels_avx512;
    if ((cpu_features & need) == need) return &cm_attn_kernels_avx2;
#elif defined(CM_HAVE_ATTN_NEON)
    if (cpu_features & LM_CPU_NEON) return &cm_attn_kernels_neon;
#else
    (void)cpu_features;
#endif
    return &kernels_ref;
}

/* ---- element-wise ---- */

void cm_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (size_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void cm_add_rmsnorm(float *x, const float *r, float *y, const float *w, size_t n, float eps) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] + r[i];
        x[i] = v;
        ss += (double)v * v;
    }
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (size_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void cm_rope_cs(float *cs, size_t n_rot, size_t pos, const float *inv_freq, float attn_factor) {
    for (size_t i = 0; i < n_rot / 2; i++) {
        float ang = (float)pos * inv_freq[i];
        cs[2 * i] = cosf(ang) * attn_factor;
        cs[2 * i + 1] = sinf(ang) * attn_factor;
    }
}

void cm_rope_apply(float *x, size_t n_rot, const float *cs, bool interleaved) {
    size_t half = n_rot / 2;
    for (size_t i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        size_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

void cm_rope(float *x, size_t n_rot, size_t pos, const float *inv_freq, float attn_factor,
             bool interleaved) {
    size_t half = n_rot / 2;
    for (size_t i = 0; i < half; i++) {
        float cs[2];
        cm_rope_cs(cs, 2, pos, inv_freq + i, attn_factor);
        size_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * cs[0] - x1 * cs[1];
        x[b] = x0 * cs[1] + x1 * cs[0];
    }
}

void cm_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

typedef struct swiglu_job {
    const cm_attn_kernels *k;
    float *gate;
    const float *up;
    size_t n;
} swiglu_job;

static void swiglu_task(void *p, int ith, int nth) {
    swiglu_job *j = p;
    /* split on multiples of 8 floats so no two threads write one cache line half */
    size_t blocks = (j->n + 7) / 8;
    size_t b0 = blocks * (size_t)ith / (size_t)nth, b1 = blocks * (size_t)(ith + 1) / (size_t)nth;
    size_t i0 = b0 * 8, i1 = LM_MIN(b1 * 8, j->n);
    if (i1 > i0) j->k->swiglu(j->gate + i0, j->up + i0, i1 - i0);
}

void cm_swiglu(cm_ctx *c, float *gate, const float *up, size_t n) {
    const cm_attn_kernels *k = c->attn;
    /* below this the pool's wake-up costs more than the work */
    if (n < 32768 || c->nth < 2) {
        k->swiglu(gate, up, n);
        return;
    }
    swiglu_job j = {k, gate, up, n};
    lm_pool_run(c->pool, swiglu_task, &j);
}

/* ---- KV cache rows ---- */

void cm_kv_store(const cm_ctx *c, uint32_t type, void *dst, const float *src, size_t n) {
    if (type == CM_F16)
        c->attn->f32_to_f16(dst, src, n);
    else
        memcpy(dst, src, n * sizeof(float));
}

/* ---- attention ---- */

/* Floats of one scratch region of n, rounded up to a 64-byte line. */
static size_t line_up(size_t n) { return (n + 15) & ~(size_t)15; }

size_t cm_attention_scratch(size_t hd) {
    return 2 * line_up(ATTN_KB * hd) + line_up(ATTN_ROWS * hd) + 16;
}

typedef struct attn_seq {
    const cm_attn_args *a;
    size_t n_tb, n_gb;  /* tiles along tokens and along the group */
    size_t tile0;       /* index of its first tile among all sequences' */
} attn_seq;

typedef struct attn_job {
    const cm_attn_kernels *k;
    const attn_seq *seqs;
    size_t n_seq;
    size_t group;       /* query heads per KV head */
    size_t rows_t;      /* query tokens per tile */
    size_t rows_g;      /* heads per tile (a chunk of the group) */
    size_t n_tiles;     /* over all sequences */
    float *scratch;     /* per thread, cm_attention_scratch(hd) floats each */
    size_t hd;
} attn_job;

/* First key position token t may attend to (sliding window). */
static size_t first_key(const cm_attn_args *a, size_t t) {
    size_t pos = a->pos0 + t;
    return a->window && pos + 1 > a->window ? pos + 1 - a->window : 0;
}

/* Blocks ahead whose cache rows are prefetched: a decode tile spends ~0.4 us on a block of 32
 * keys and reads them from memory (the weights of a step push the cache out of L3), so without
 * this the K transposition stalls on every line; at 4,000 tokens of context it took 23 % of a
 * Llama-3.2-1B decode step. */
#define ATTN_PREFETCH 2

static inline void prefetch_lines(const uint8_t *p, size_t len) {
#if defined(__GNUC__)
    for (size_t o = 0; o < len; o += 64) __builtin_prefetch(p + o, 0, 3);
#else
    (void)p;
    (void)len;
#endif
}

/* One tile: tokens [t0, t1) x heads [g0, g1) of KV head kvh, one pass over their keys. Key tiles
 * start at multiples of ATTN_KB positions whatever the tile's queries are, so each query sees its
 * keys in the same pieces, and gets the same numbers, however queries are grouped. Scratch: the
 * block's K (transposed) and V as floats, and the rows' sums. */
static void attn_tile(const attn_job *j, const cm_attn_args *a, float *scratch, size_t kvh, size_t t0,
                      size_t t1, size_t g0, size_t g1) {
    const cm_attn_kernels *k = j->k;
    size_t hd = a->hd, ng = g1 - g0, n_rows = (t1 - t0) * ng;
    float *ktile = scratch, *vtile = ktile + line_up(ATTN_KB * hd), *acc = vtile + line_up(ATTN_KB * hd);
    cm_attn_row rows[ATTN_ROWS];
    for (size_t t = t0; t < t1; t++)
        for (size_t g = g0; g < g1; g++) {
            size_t r = (t - t0) * ng + (g - g0), h = kvh * j->group + g;
            rows[r] = (cm_attn_row){.q = a->q + (t * a->n_head + h) * hd, .acc = acc + r * hd, .m = -INFINITY};
        }
    memset(acc, 0, n_rows * hd * sizeof(float));

    bool f16 = a->kv_type == CM_F16;
    size_t esz = f16 ? 2 : 4;
    const uint8_t *kb = (const uint8_t *)a->k + kvh * a->ctx_stride * hd * esz;
    const uint8_t *vb = (const uint8_t *)a->v + kvh * a->ctx_stride * hd * esz;
    size_t j_lo = first_key(a, t0) / ATTN_KB * ATTN_KB, j_hi = a->pos0 + t1; /* keys [j_lo, j_hi) */
    for (size_t j0 = j_lo; j0 < j_hi; j0 += ATTN_KB) {
        size_t j1 = LM_MIN(j0 + ATTN_KB, j_hi), n_keys = j1 - j0;
        /* the cache rows of the block after the next one on their way from memory */
        if (j0 + ATTN_PREFETCH * ATTN_KB < j_hi) {
            size_t from = (j0 + ATTN_PREFETCH * ATTN_KB) * hd * esz;
            size_t len = LM_MIN((size_t)ATTN_KB, j_hi - j0 - ATTN_PREFETCH * ATTN_KB) * hd * esz;
            prefetch_lines(kb + from, len);
            prefetch_lines(vb + from, len);
        }
        k->load_kt(ktile, kb + j0 * hd * esz, f16, n_keys, hd);
        const float *vt = vtile;
        if (f16)
            k->f16_to_f32(vtile, (const uint16_t *)vb + j0 * hd, n_keys * hd);
        else
            vt = (const float *)vb + j0 * hd;
        /* the rows that see keys of this block, with their ranges */
        cm_attn_row *act[ATTN_ROWS];
        size_t n_act = 0;
        for (size_t t = t0; t < t1; t++) {
            size_t lo = LM_MAX(j0, first_key(a, t)), hi = LM_MIN(j1, a->pos0 + t + 1);
            for (size_t g = 0; lo < hi && g < ng; g++) {
                cm_attn_row *w = &rows[(t - t0) * ng + g];
                w->lo = (uint32_t)(lo - j0);
                w->hi = (uint32_t)(hi - j0);
                act[n_act++] = w;
            }
        }
        if (n_act) k->block(act, n_act, ktile, vt, hd, a->scale);
    }
    for (size_t t = t0; t < t1; t++)
        for (size_t g = g0; g < g1; g++) {
            size_t r = (t - t0) * ng + (g - g0), h = kvh * j->group + g;
            float *o = a->out + (t * a->n_head + h) * hd;
            float inv = rows[r].l > 0 ? 1.0f / rows[r].l : 0.0f;
            for (size_t d = 0; d < hd; d++) o[d] = acc[r * hd + d] * inv;
        }
}

static void attn_task(void *p, int ith, int nth) {
    const attn_job *j = p;
    float *scratch = j->scratch + (size_t)ith * cm_attention_scratch(j->hd);
    /* Tiles are dealt round-robin: later query tiles see more keys, so striding mixes long and
     * short ones on every thread. */
    size_t s = 0;
    for (size_t tile = (size_t)ith; tile < j->n_tiles; tile += (size_t)nth) {
        while (s + 1 < j->n_seq && tile >= j->seqs[s + 1].tile0) s++;
        while (tile < j->seqs[s].tile0) s--;
        const attn_seq *q = &j->seqs[s];
        const cm_attn_args *a = q->a;
        size_t local = tile - q->tile0;
        size_t gb = local % q->n_gb, rest = local / q->n_gb;
        size_t tb = rest % q->n_tb, kvh = rest / q->n_tb;
        size_t t0 = tb * j->rows_t, t1 = LM_MIN(t0 + j->rows_t, a->n_tok);
        size_t g0 = gb * j->rows_g, g1 = LM_MIN(g0 + j->rows_g, j->group);
        attn_tile(j, a, scratch, kvh, t0, t1, g0, g1);
    }
}

/* Tiles of every sequence with rows_g heads per tile; returns their count. */
static size_t count_tiles(attn_job *j, attn_seq *seqs, const cm_attn_args *a, size_t n) {
    size_t total = 0;
    j->rows_t = ATTN_ROWS / j->rows_g;
    for (size_t i = 0; i < n; i++) {
        seqs[i].a = &a[i];
        seqs[i].n_gb = (j->group + j->rows_g - 1) / j->rows_g;
        seqs[i].n_tb = (a[i].n_tok + j->rows_t - 1) / j->rows_t;
        seqs[i].tile0 = total;
        total += a[i].n_tok ? a[i].n_head_kv * seqs[i].n_tb * seqs[i].n_gb : 0;
    }
    return total;
}

/* Sequences per pool run of cm_attention_multi (its tile table lives on the stack). */
#define ATTN_MULTI_MAX 64

void cm_attention_multi(cm_ctx *c, const cm_attn_args *a, size_t n) {
    for (size_t i0 = 0; i0 < n; i0 += ATTN_MULTI_MAX) {
        size_t k = LM_MIN((size_t)ATTN_MULTI_MAX, n - i0);
        attn_seq seqs[ATTN_MULTI_MAX];
        attn_job j;
        j.k = c->attn;
        j.seqs = seqs;
        j.n_seq = k;
        j.group = a[i0].n_head / a[i0].n_head_kv;
        j.rows_g = LM_MIN(j.group, (size_t)ATTN_ROWS);
        j.scratch = a[i0].scratch;
        j.hd = a[i0].hd;
        j.n_tiles = count_tiles(&j, seqs, a + i0, k);
        /* Fewer tiles than threads (decode of a model with few KV heads): split each group's
         * heads over more tiles. Each then reads its KV head's cache again, but the threads work
         * in parallel, and no query's numbers change. */
        size_t nth = (size_t)c->nth;
        while (j.n_tiles < nth && j.rows_g > 1) {
            j.rows_g = (j.rows_g + 1) / 2;
            j.n_tiles = count_tiles(&j, seqs, a + i0, k);
        }
        if (j.n_tiles) lm_pool_run(c->pool, attn_task, &j);
    }
}

void cm_attention(cm_ctx *c, const cm_attn_args *a) {
    if (a->n_tok == 0) return;
    cm_attention_multi(c, a, 1);
}
