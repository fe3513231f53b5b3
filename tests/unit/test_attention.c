/* tests/unit/test_attention.c: the fused attention kernel (compute/cpu/attention.c) against a
 * naive double-precision softmax attention on seeded random q/k/v, for decode and prefill
 * shapes, odd sizes, GQA/MQA, sliding windows, F32 and F16 caches, the reference and the SIMD
 * kernels, 1, 3 and 5 threads (keys split over threads in long decodes); and the element-wise ops it ships (F16 rows, SwiGLU, fused
 * add+norm, RoPE from a table). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "compute/backend.h"
#include "compute/cpu/attention.h"

typedef struct shape {
    size_t n_tok, pos0, n_head, n_head_kv, hd, window;
} shape;

static const shape SHAPES[] = {
    {1, 0, 1, 1, 8, 0},      /* first token */
    {1, 100, 14, 2, 64, 0},  /* decode, Qwen2.5-0.5B heads */
    {1, 300, 8, 8, 128, 0},  /* decode, no GQA, more than one key tile */
    {7, 5, 6, 3, 20, 0},     /* odd sizes */
    {64, 0, 14, 2, 64, 0},   /* prefill from empty */
    {33, 40, 8, 8, 128, 0},  /* prefill after a prefix */
    {5, 90, 4, 1, 13, 16},   /* MQA, odd hd, sliding window */
    {40, 3, 64, 1, 16, 7},   /* a group larger than one tile of rows, window */
    {3, 200, 8, 2, 96, 50},  /* window across tiles */
    {2, 1, 2, 1, 3, 0},      /* hd below one vector */
    {1, 700, 4, 1, 64, 0},   /* long decode: keys split over threads when they outnumber tiles */
    {1, 650, 6, 2, 40, 200}, /* the same with a window: some key parts see no key */
    {72, 0, 8, 4, 8, 0},     /* stories260K prefill: hd 8 */
};

/* out(t, h) = sum_j softmax_j(scale q.k_j) v_j over j in the causal window, in double.
 * k, v: (n_head_kv, ctx, hd) floats. */
static void naive(double *out, const float *q, const float *k, const float *v, const shape *s,
                  size_t ctx, float scale) {
    size_t group = s->n_head / s->n_head_kv, n_keys = s->pos0 + s->n_tok;
    double *w = malloc(n_keys * sizeof(double));
    for (size_t t = 0; t < s->n_tok; t++)
        for (size_t h = 0; h < s->n_head; h++) {
            size_t pos = s->pos0 + t, kvh = h / group;
            size_t first = s->window && pos + 1 > s->window ? pos + 1 - s->window : 0;
            const float *qv = q + (t * s->n_head + h) * s->hd;
            double m = -INFINITY, sum = 0;
            for (size_t j = first; j <= pos; j++) {
                double d = 0;
                for (size_t i = 0; i < s->hd; i++) d += (double)qv[i] * k[(kvh * ctx + j) * s->hd + i];
                w[j] = d * scale;
                m = fmax(m, w[j]);
            }
            for (size_t j = first; j <= pos; j++) sum += (w[j] = exp(w[j] - m));
            double *o = out + (t * s->n_head + h) * s->hd;
            for (size_t i = 0; i < s->hd; i++) {
                double a = 0;
                for (size_t j = first; j <= pos; j++) a += w[j] * v[(kvh * ctx + j) * s->hd + i];
                o[i] = a / sum;
            }
        }
    free(w);
}

static float round_f16(float x) { return lm_f16_to_f32(lm_f32_to_f16(x)); }

/* Runs one shape through cm_attention and returns max |out - ref| against the reference with
 * K/V as stored (rounded for F16) in *err_stored and against unrounded K/V in *err_exact. */
static void run_shape(cm_ctx *c, const shape *s, uint32_t kv_type, uint64_t seed, double *err_stored,
                      double *err_exact) {
    size_t ctx = s->pos0 + s->n_tok + 3; /* a longer cache: rows past the last key are never read */
    size_t nq = s->n_tok * s->n_head * s->hd, nkv = s->n_head_kv * ctx * s->hd;
    size_t esz = kv_type == CM_F16 ? 2 : 4;
    float *q = malloc(nq * sizeof(float)), *k = malloc(nkv * sizeof(float)), *v = malloc(nkv * sizeof(float));
    float *kr = malloc(nkv * sizeof(float)), *vr = malloc(nkv * sizeof(float));
    float *out = malloc(nq * sizeof(float));
    double *ref = malloc(nq * sizeof(double)), *ref_exact = malloc(nq * sizeof(double));
    uint8_t *kc = malloc(nkv * esz), *vc = malloc(nkv * esz);
    tu_rand_floats(q, nq, seed);
    tu_rand_floats(k, nkv, seed + 1);
    tu_rand_floats(v, nkv, seed + 2);
    for (size_t i = 0; i < nq; i++) q[i] *= 3.0f; /* peakier softmax than uniform inputs give */
    float nan = NAN;
    for (size_t h = 0; h < s->n_head_kv; h++)
        for (size_t j = 0; j < ctx; j++) {
            size_t row = (h * ctx + j) * s->hd;
            if (j >= s->pos0 + s->n_tok) {
                /* poison: a read past the causal end turns the output into NaN */
                for (size_t i = 0; i < s->hd; i++) k[row + i] = v[row + i] = nan;
            }
            cm_kv_store(c, kv_type, kc + row * esz, k + row, s->hd);
            cm_kv_store(c, kv_type, vc + row * esz, v + row, s->hd);
            for (size_t i = 0; i < s->hd; i++) {
                kr[row + i] = kv_type == CM_F16 ? round_f16(k[row + i]) : k[row + i];
                vr[row + i] = kv_type == CM_F16 ? round_f16(v[row + i]) : v[row + i];
            }
        }
    float scale = 1.0f / sqrtf((float)s->hd);
    naive(ref, q, kr, vr, s, ctx, scale);
    naive(ref_exact, q, k, v, s, ctx, scale);
    float *scratch = malloc((size_t)cm_ctx_threads(c) * cm_attention_scratch(s->hd) * sizeof(float));
    cm_attn_args a = {
        .out = out, .q = q, .k = kc, .v = vc, .kv_type = kv_type, .n_tok = s->n_tok, .pos0 = s->pos0,
        .n_head = s->n_head, .n_head_kv = s->n_head_kv, .hd = s->hd, .ctx_stride = ctx,
        .window = s->window, .scale = scale, .scratch = scratch,
    };
    cm_attention(c, &a);
    *err_stored = *err_exact = 0;
    for (size_t i = 0; i < nq; i++) {
        if (!isfinite(out[i])) fail_msg("output %zu is %f (read outside the causal window?)", i, out[i]);
        *err_stored = fmax(*err_stored, fabs(out[i] - ref[i]));
        *err_exact = fmax(*err_exact, fabs(out[i] - ref_exact[i]));
    }
    free(scratch);
    free(q);
    free(k);
    free(v);
    free(kr);
    free(vr);
    free(out);
    free(ref);
    free(ref_exact);
    free(kc);
    free(vc);
}

/* Outputs are convex combinations of V rows in [-1, 1], so absolute errors are relative to 1.
 * Against K/V as stored: 1e-5 (float accumulation over up to 701 keys, the vector exp's 2 ulp);
 * F16 cache against the unrounded K/V: 2e-3 (each element off by up to 2^-11 relative). */
static void check_all(int n_threads, bool force_ref) {
    lm_pool *pool = lm_pool_new(n_threads);
    assert_non_null(pool);
    cm_ctx *c = cm_ctx_new(pool, force_ref);
    assert_non_null(c);
    for (size_t i = 0; i < LM_ARRAY_LEN(SHAPES); i++) {
        const shape *s = &SHAPES[i];
        for (int f16 = 0; f16 < 2; f16++) {
            double es, ee;
            run_shape(c, s, f16 ? CM_F16 : CM_F32, 1000 + i * 7, &es, &ee);
            if (getenv("LM_TEST_VERBOSE")) printf("%s %d %s shape %zu: %.3g %.3g\n", cm_ctx_kernels(c), n_threads, f16 ? "F16" : "F32", i, es, ee);
            if (es > 1e-5 || (f16 && ee > 2e-3) || (!f16 && ee > 1e-5))
                fail_msg("%s kernels, %d threads, %s cache, shape %zu (n_tok %zu pos0 %zu heads %zu/%zu hd %zu "
                         "window %zu): max error %.3g vs stored K/V, %.3g vs exact",
                         cm_ctx_kernels(c), n_threads, f16 ? "F16" : "F32", i, s->n_tok, s->pos0, s->n_head,
                         s->n_head_kv, s->hd, s->window, es, ee);
        }
    }
    cm_ctx_free(c);
    lm_pool_free(pool);
}

static void test_attention_ref_1(void **st) { (void)st; check_all(1, true); }
static void test_attention_ref_3(void **st) { (void)st; check_all(3, true); }
static void test_attention_fast_1(void **st) { (void)st; check_all(1, false); }
static void test_attention_fast_3(void **st) { (void)st; check_all(3, false); }
static void test_attention_ref_5(void **st) { (void)st; check_all(5, true); }
static void test_attention_fast_5(void **st) { (void)st; check_all(5, false); }

/* The tables of inner loops: the reference, AVX2 alone, and the best for this CPU (AVX-512 where
 * it has it). */
static size_t kernel_tables(const cm_attn_kernels *tabs[3]) {
    uint32_t feat = lm_cpu_features();
    const uint32_t avx2 = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C;
    tabs[0] = cm_attn_kernels_get(0);
    tabs[1] = cm_attn_kernels_get(feat & avx2);
    tabs[2] = cm_attn_kernels_get(feat);
#if defined(__x86_64__)
    if ((feat & avx2) == avx2) assert_string_equal(tabs[1]->name, "avx2");
    if (feat & LM_CPU_AVX512F) assert_string_equal(tabs[2]->name, "avx512");
#elif defined(__aarch64__)
    if (feat & LM_CPU_NEON) assert_string_equal(tabs[2]->name, "neon");
#endif
    return 3;
}

/* load_kt: every table bit-identical to the reference (a transposition and exact conversions),
 * which is checked against the rows it reads; columns past n_keys are zero, whatever the tile held. */
static void test_load_kt(void **state) {
    (void)state;
    const cm_attn_kernels *tabs[3];
    size_t nt = kernel_tables(tabs);
    const size_t hds[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 128};
    const size_t nks[] = {1, 5, 8, 9, 15, 16, 17, 24, 31, 32};
    size_t nmax = CM_ATTN_KB * 128;
    float *k = malloc(nmax * sizeof(float)), *a = malloc(nmax * sizeof(float)), *b = malloc(nmax * sizeof(float));
    uint16_t *h = malloc(nmax * sizeof(uint16_t));
    assert_true(k && a && b && h);
    for (size_t hi = 0; hi < LM_ARRAY_LEN(hds); hi++)
        for (size_t ni = 0; ni < LM_ARRAY_LEN(nks); ni++) {
            size_t hd = hds[hi], n = nks[ni];
            tu_rand_floats(k, n * hd, 60 + hi * 16 + ni);
            for (size_t i = 0; i < n * hd; i++) k[i] *= 100.0f;
            cm_attn_kernels_get(0)->f32_to_f16(h, k, n * hd);
            for (int f16 = 0; f16 < 2; f16++) {
                const void *src = f16 ? (const void *)h : (const void *)k;
                for (size_t i = 0; i < CM_ATTN_KB * hd; i++) a[i] = NAN;
                tabs[0]->load_kt(a, src, f16, n, hd);
                for (size_t d = 0; d < hd; d++)
                    for (size_t j = 0; j < CM_ATTN_KB; j++) {
                        float want = j >= n ? 0.0f : f16 ? lm_f16_to_f32(h[j * hd + d]) : k[j * hd + d];
                        if (memcmp(&want, &a[d * CM_ATTN_KB + j], sizeof want))
                            fail_msg("ref load_kt hd=%zu n=%zu f16=%d: (%zu, %zu) is %g, want %g", hd, n, f16, d, j,
                                     a[d * CM_ATTN_KB + j], want);
                    }
                for (size_t ti = 1; ti < nt; ti++) {
                    for (size_t i = 0; i < CM_ATTN_KB * hd; i++) b[i] = NAN;
                    tabs[ti]->load_kt(b, src, f16, n, hd);
                    if (memcmp(a, b, CM_ATTN_KB * hd * sizeof(float)))
                        fail_msg("%s load_kt hd=%zu n=%zu f16=%d differs from the reference", tabs[ti]->name, hd, n, f16);
                }
            }
        }
    free(k);
    free(a);
    free(b);
    free(h);
}

/* Rows of one block test: their state after three blocks, from a fresh start or from a state
 * carried in (a nonzero acc, a running max above or below the block's scores). */
typedef struct block_case {
    size_t hd, n_keys, n_rows;
    uint64_t seed;
} block_case;

static void run_blocks(const cm_attn_kernels *t, const block_case *c, cm_attn_row *rows, float *acc, const float *q,
                       const float *kt, const float *v, const uint32_t *lohi, bool carry) {
    for (size_t r = 0; r < c->n_rows; r++) {
        rows[r] = (cm_attn_row){.q = q + r * c->hd, .acc = acc + r * c->hd, .m = -INFINITY};
        for (size_t d = 0; d < c->hd; d++) rows[r].acc[d] = carry ? 0.25f * (float)(d % 7) : 0.0f;
        if (carry) {
            rows[r].m = (r % 3 == 0) ? 40.0f : -5.0f; /* above every score, or below them */
            rows[r].l = 2.0f;
        }
    }
    for (size_t blk = 0; blk < 3; blk++) {
        /* as attention.c's tile: only the rows that see a key of the block are passed */
        cm_attn_row *act[CM_ATTN_ROWS];
        size_t n_act = 0;
        for (size_t r = 0; r < c->n_rows; r++) {
            rows[r].lo = lohi[(blk * c->n_rows + r) * 2];
            rows[r].hi = lohi[(blk * c->n_rows + r) * 2 + 1];
            if (rows[r].lo < rows[r].hi) act[n_act++] = &rows[r];
        }
        if (n_act)
            t->block(act, n_act, kt + blk * CM_ATTN_KB * c->hd, v + blk * CM_ATTN_KB * c->hd, c->hd,
                     1.0f / sqrtf((float)c->hd));
    }
}

/* block: each table against the reference on ragged key ranges (rows that see no key of a
 * block and are left out, one key, all of them), odd hd, carried state; outputs acc / l within 1e-5 (values are
 * convex combinations of V in [-1, 1]), l and m within 1e-5 relative. And each row's numbers are
 * the same bits whether the block runs it with all the others or alone. */
static void test_block(void **state) {
    (void)state;
    const cm_attn_kernels *tabs[3];
    size_t nt = kernel_tables(tabs);
    const block_case cases[] = {
        {64, 32, 28, 1}, {128, 32, 8, 2}, {17, 9, 5, 3}, {3, 32, 32, 4}, {100, 20, 13, 5}, {8, 1, 3, 6}, {33, 31, 7, 7},
    };
    for (size_t ci = 0; ci < LM_ARRAY_LEN(cases); ci++) {
        const block_case *c = &cases[ci];
        size_t hd = c->hd, nr = c->n_rows, blk = CM_ATTN_KB * hd;
        float *q = malloc(nr * hd * sizeof(float)), *kraw = malloc(3 * blk * sizeof(float));
        float *kt = malloc(3 * blk * sizeof(float)), *v = malloc(3 * blk * sizeof(float));
        float *acc_ref = malloc(nr * hd * sizeof(float)), *acc = malloc(nr * hd * sizeof(float));
        float *acc1 = malloc(hd * sizeof(float));
        uint32_t *lohi = malloc(3 * nr * 2 * sizeof(uint32_t));
        cm_attn_row *rref = malloc(nr * sizeof *rref), *rows = malloc(nr * sizeof *rows);
        assert_true(q && kraw && kt && v && acc_ref && acc && acc1 && lohi && rref && rows);
        tu_rand_floats(q, nr * hd, c->seed * 10);
        for (size_t i = 0; i < nr * hd; i++) q[i] *= 3.0f;
        tu_rand_floats(kraw, 3 * blk, c->seed * 10 + 1);
        tu_rand_floats(v, 3 * blk, c->seed * 10 + 2);
        for (size_t b = 0; b < 3; b++) cm_attn_kernels_get(0)->load_kt(kt + b * blk, kraw + b * blk, false, c->n_keys, hd);
        uint64_t x = c->seed * 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < 3 * nr; i++) {
            x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
            uint32_t u = (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
            uint32_t lo = u % (uint32_t)(c->n_keys + 1), hi = lo + (u >> 8) % (uint32_t)(c->n_keys + 1 - lo);
            if (i % 5 == 1) lo = 0, hi = (uint32_t)c->n_keys; /* all of them */
            if (i % 7 == 3) hi = lo;                          /* none */
            lohi[2 * i] = lo;
            lohi[2 * i + 1] = hi;
        }
        for (int carry = 0; carry < 2; carry++) {
            run_blocks(tabs[0], c, rref, acc_ref, q, kt, v, lohi, carry);
            for (size_t ti = 0; ti < nt; ti++) {
                const cm_attn_kernels *t = tabs[ti];
                run_blocks(t, c, rows, acc, q, kt, v, lohi, carry);
                for (size_t r = 0; r < nr; r++) {
                    const cm_attn_row *w = &rows[r], *e = &rref[r];
                    bool same_m = w->m == e->m || fabsf(w->m - e->m) <= 1e-5f * fabsf(e->m) + 1e-6f;
                    if (!same_m || !(fabsf(w->l - e->l) <= 1e-5f * e->l))
                        fail_msg("%s block case %zu row %zu carry %d: m %g l %g, reference m %g l %g", t->name, ci, r,
                                 carry, w->m, w->l, e->m, e->l);
                    for (size_t d = 0; d < hd; d++) {
                        double got = e->l > 0 ? w->acc[d] / w->l : w->acc[d], want = e->l > 0 ? e->acc[d] / e->l : e->acc[d];
                        if (!(fabs(got - want) <= 1e-5))
                            fail_msg("%s block case %zu row %zu dim %zu carry %d: %g, reference %g", t->name, ci, r, d,
                                     carry, got, want);
                    }
                    /* the same row alone */
                    cm_attn_row one = {.q = q + r * hd, .acc = acc1, .m = -INFINITY};
                    for (size_t d = 0; d < hd; d++) acc1[d] = carry ? 0.25f * (float)(d % 7) : 0.0f;
                    if (carry) one.m = (r % 3 == 0) ? 40.0f : -5.0f, one.l = 2.0f;
                    for (size_t b = 0; b < 3; b++) {
                        one.lo = lohi[(b * nr + r) * 2];
                        one.hi = lohi[(b * nr + r) * 2 + 1];
                        cm_attn_row *p1 = &one;
                        if (one.lo < one.hi) t->block(&p1, 1, kt + b * blk, v + b * blk, hd, 1.0f / sqrtf((float)hd));
                    }
                    if (memcmp(&one.m, &w->m, sizeof one.m) || memcmp(&one.l, &w->l, sizeof one.l) ||
                        memcmp(acc1, w->acc, hd * sizeof(float)))
                        fail_msg("%s block case %zu row %zu carry %d: alone it gives other bits than with %zu rows",
                                 t->name, ci, r, carry, nr);
                }
            }
        }
        free(q);
        free(kraw);
        free(kt);
        free(v);
        free(acc_ref);
        free(acc);
        free(acc1);
        free(lohi);
        free(rref);
        free(rows);
    }
}

/* F16 conversions exact against the reference, SwiGLU within 1e-5 relative, lengths around the
 * vector widths. */
static void test_kernel_tables(void **state) {
    (void)state;
    const cm_attn_kernels *tabs[3];
    size_t nt = kernel_tables(tabs);
    const cm_attn_kernels *ref = tabs[0];
    const size_t lens[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 128};
    const size_t nmax = 128;
    float *k = malloc(nmax * sizeof(float)), *a = malloc(nmax * sizeof(float)), *b = malloc(nmax * sizeof(float));
    float *p = malloc(nmax * sizeof(float)), *u = malloc(nmax * sizeof(float));
    uint16_t *h = malloc(nmax * sizeof(uint16_t)), *h2 = malloc(nmax * sizeof(uint16_t));
    assert_true(k && a && b && p && u && h && h2);
    for (size_t ti = 0; ti < nt; ti++) {
        const cm_attn_kernels *t = tabs[ti];
        for (size_t li = 0; li < LM_ARRAY_LEN(lens); li++) {
            size_t n = lens[li];
            tu_rand_floats(k, n, 20 + li);
            tu_rand_floats(p, n, 30 + li);
            for (size_t i = 0; i < n; i++) k[i] *= 1000.0f; /* reach large halves */
            ref->f32_to_f16(h, k, n);
            t->f32_to_f16(h2, k, n);
            assert_memory_equal(h, h2, n * sizeof(uint16_t));
            ref->f16_to_f32(a, h, n);
            t->f16_to_f32(b, h, n);
            assert_memory_equal(a, b, n * sizeof(float));
            for (size_t i = 0; i < n; i++) a[i] = b[i] = 12.0f * p[i] - 6.0f;
            tu_rand_floats(u, n, 50 + li);
            ref->swiglu(a, u, n);
            t->swiglu(b, u, n);
            for (size_t i = 0; i < n; i++) assert_true(fabsf(a[i] - b[i]) <= 1e-5f * fabsf(a[i]) + 1e-30f);
        }
    }
    free(k);
    free(a);
    free(b);
    free(p);
    free(u);
    free(h);
    free(h2);
}

static void test_kv_store_f16(void **state) {
    (void)state;
    float x[203];
    tu_rand_floats(x, 203, 7);
    for (size_t i = 0; i < 203; i++) x[i] *= (float)(1 << (i % 20)) / 64.0f;
    float special[] = {0.0f, -0.0f, 65504.0f, 65520.0f, 1e6f, -1e6f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 1e-9f,
                       1.0009765625f + 0.00048828125f, 2049.0f, 2051.0f, INFINITY, -INFINITY};
    memcpy(x, special, sizeof special);
    for (int fr = 0; fr < 2; fr++) {
        lm_pool *pool = lm_pool_new(1);
        cm_ctx *c = cm_ctx_new(pool, fr == 1);
        for (size_t n = 1; n <= 203; n += 17) {
            uint16_t h[203];
            cm_kv_store(c, CM_F16, h, x, n);
            for (size_t i = 0; i < n; i++)
                if (h[i] != lm_f32_to_f16(x[i]))
                    fail_msg("%s: n %zu element %zu (%g): 0x%04x, want 0x%04x", cm_ctx_kernels(c), n, i, x[i], h[i],
                             lm_f32_to_f16(x[i]));
        }
        float f[5] = {1, 2, 3, 4, 5}, g[5];
        cm_kv_store(c, CM_F32, g, f, 5);
        assert_memory_equal(f, g, sizeof f);
        cm_ctx_free(c);
        lm_pool_free(pool);
    }
}

/* SwiGLU in place against double: relative 1e-6 (the vector exp is within 2 ulp), plus 1e-30
 * absolute (the vector exp clamps at e^88, so a gate of -200 gives about 1e-36, not 0). Odd length, both kernel sets, and a length
 * past the threshold where it is split over 3 threads. */
static void test_swiglu(void **state) {
    (void)state;
    size_t n = 40000 + 3;
    float *g = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float)), *g0 = malloc(n * sizeof(float));
    tu_rand_floats(g0, n, 11);
    tu_rand_floats(u, n, 12);
    for (size_t i = 0; i < n; i++) g0[i] *= (float)(1 + i % 40); /* gates up to +-40 */
    g0[0] = -200.0f;
    g0[1] = 200.0f;
    for (int fr = 0; fr < 2; fr++) {
        lm_pool *pool = lm_pool_new(3);
        cm_ctx *c = cm_ctx_new(pool, fr == 1);
        for (size_t len = 13; len <= n; len = len == 13 ? n : n + 1) {
            memcpy(g, g0, n * sizeof(float));
            cm_swiglu(c, g, u, len);
            for (size_t i = 0; i < len; i++) {
                double want = (double)g0[i] / (1.0 + exp(-(double)g0[i])) * u[i];
                if (fabs(g[i] - want) > 1e-6 * fabs(want) + 1e-30)
                    fail_msg("%s: len %zu element %zu: gate %g up %g: %.9g, want %.9g", cm_ctx_kernels(c), len, i,
                             g0[i], u[i], g[i], want);
            }
            assert_true(g[len - 1] == g[len - 1]);
            if (len < n) assert_true(g[len] == g0[len]); /* nothing past n written */
        }
        cm_ctx_free(c);
        lm_pool_free(pool);
    }
    free(g);
    free(u);
    free(g0);
}

/* The fused ops give exactly the numbers of the unfused ones they replace. */
static void test_fused_equal_unfused(void **state) {
    (void)state;
    float x[77], r[77], w[77], x1[77], y1[77], y2[77];
    tu_rand_floats(x, 77, 21);
    tu_rand_floats(r, 77, 22);
    tu_rand_floats(w, 77, 23);
    memcpy(x1, x, sizeof x);
    cm_add(x1, r, 77);
    cm_rmsnorm(y1, x1, w, 77, 1e-5f);
    cm_add_rmsnorm(x, r, y2, w, 77, 1e-5f);
    assert_memory_equal(x, x1, sizeof x);
    assert_memory_equal(y1, y2, sizeof y1);
    float inv_freq[32], cs[64], a[64], b[64];
    for (int i = 0; i < 32; i++) inv_freq[i] = powf(10000.0f, -2.0f * (float)i / 64.0f);
    for (int il = 0; il < 2; il++) {
        tu_rand_floats(a, 64, 24 + (uint64_t)il);
        memcpy(b, a, sizeof a);
        cm_rope(a, 48, 1234, inv_freq, 1.5f, il == 1); /* partial rotary: 48 of 64 dims */
        cm_rope_cs(cs, 48, 1234, inv_freq, 1.5f);
        cm_rope_apply(b, 48, cs, il == 1);
        assert_memory_equal(a, b, sizeof a);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_ref_1),   cmocka_unit_test(test_attention_ref_3),
        cmocka_unit_test(test_attention_fast_1),  cmocka_unit_test(test_attention_fast_3),
        cmocka_unit_test(test_attention_ref_5),   cmocka_unit_test(test_attention_fast_5),
        cmocka_unit_test(test_kv_store_f16),      cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_kernel_tables),     cmocka_unit_test(test_load_kt),
        cmocka_unit_test(test_block),
        cmocka_unit_test(test_fused_equal_unfused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
