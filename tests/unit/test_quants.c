/* tests/unit/test_quants.c: the type table, reference dequant/dot/quantize of every GGML type
 * against per-element formulas written here independently, MLX affine rows of every bit width,
 * and each selected (SIMD) dot kernel against the reference. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "compute/backend.h"
#include "compute/cpu/cpu.h"
#include "compute/cpu/quants.h"

/* ---- independent per-element formulas (the GGML/GGUF block layouts) ---- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static float h16(const uint8_t *p) { return lm_f16_to_f32(le16(p)); }

/* Element i of a row of type, computed from the layout alone. */
static float elem(uint32_t type, const uint8_t *row, size_t i) {
    size_t k32 = i % 32, k = i % 256;
    const uint8_t *b;
    switch (type) {
    case CM_F32: { float f; memcpy(&f, row + 4 * i, 4); return f; }
    case CM_F16: return h16(row + 2 * i);
    case CM_BF16: return lm_bf16_to_f32(le16(row + 2 * i));
    case CM_Q4_0: {
        b = row + (i / 32) * 18;
        int q = k32 < 16 ? (b[2 + k32] & 15) : (b[2 + k32 - 16] >> 4);
        return (float)(q - 8) * h16(b);
    }
    case CM_Q4_1: {
        b = row + (i / 32) * 20;
        int q = k32 < 16 ? (b[4 + k32] & 15) : (b[4 + k32 - 16] >> 4);
        return (float)q * h16(b) + h16(b + 2);
    }
    case CM_Q5_0: case CM_Q5_1: {
        bool one = type == CM_Q5_1;
        b = row + (i / 32) * (one ? 24 : 22);
        const uint8_t *qh = b + (one ? 4 : 2), *qs = qh + 4;
        uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                     (uint32_t)qh[3] << 24;
        int q = (k32 < 16 ? (qs[k32] & 15) : (qs[k32 - 16] >> 4)) | (int)(((h >> k32) & 1) << 4);
        return one ? (float)q * h16(b) + h16(b + 2) : (float)(q - 16) * h16(b);
    }
    case CM_Q8_0: b = row + (i / 32) * 34; return (float)(int8_t)b[2 + k32] * h16(b);
    case CM_Q8_1: b = row + (i / 32) * 36; return (float)(int8_t)b[4 + k32] * h16(b);
    case CM_Q2_K: {
        b = row + (i / 256) * 84;
        size_t n = k / 128, j = (k % 128) / 32, l = k % 32;
        int q = (b[16 + 32 * n + l] >> (2 * j)) & 3;
        int sc = b[8 * n + 2 * j + l / 16];
        return h16(b + 80) * (float)(sc & 15) * (float)q - h16(b + 82) * (float)(sc >> 4);
    }
    case CM_Q3_K: {
        b = row + (i / 256) * 110;
        const uint8_t *s = b + 96;
        size_t n = k / 128, j = (k % 128) / 32, l = k % 32, is = 8 * n + 2 * j + l / 16;
        int us = is < 4    ? (s[is] & 0xF) | ((s[is + 8] & 3) << 4)
                 : is < 8  ? (s[is] & 0xF) | (((s[is + 4] >> 2) & 3) << 4)
                 : is < 12 ? (s[is - 8] >> 4) | (((s[is] >> 4) & 3) << 4)
                           : (s[is - 8] >> 4) | (((s[is - 4] >> 6) & 3) << 4);
        int q = ((b[32 + 32 * n + l] >> (2 * j)) & 3) - ((b[l] >> (4 * n + j)) & 1 ? 0 : 4);
        return h16(b + 108) * (float)(us - 32) * (float)q;
    }
    case CM_Q4_K: case CM_Q5_K: {
        bool five = type == CM_Q5_K;
        b = row + (i / 256) * (five ? 176 : 144);
        const uint8_t *s = b + 4, *qs = b + (five ? 48 : 16);
        size_t sub = k / 32, l = k % 32;
        int sc, mn;
        if (sub < 4) {
            sc = s[sub] & 63;
            mn = s[sub + 4] & 63;
        } else {
            sc = (s[sub + 4] & 15) | ((s[sub - 4] >> 6) << 4);
            mn = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4);
        }
        int q = (qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 15;
        if (five) q |= ((b[16 + l] >> sub) & 1) << 4;
        return h16(b) * (float)sc * (float)q - h16(b + 2) * (float)mn;
    }
    case CM_Q6_K: {
        b = row + (i / 256) * 210;
        size_t h = k / 128, kk = (k % 128) / 32, l = k % 32;
        int lo = (b[64 * h + l + 32 * (kk & 1)] >> (kk >= 2 ? 4 : 0)) & 15;
        int hi = (b[128 + 32 * h + l] >> (2 * kk)) & 3;
        int sc = (int8_t)b[192 + 8 * h + l / 16 + 2 * kk];
        return h16(b + 208) * (float)sc * (float)((lo | (hi << 4)) - 32);
    }
    case CM_Q8_K: {
        b = row + (i / 256) * 292;
        float d;
        memcpy(&d, b, 4);
        return d * (float)(int8_t)b[4 + k];
    }
    }
    fail_msg("no formula for type %u", type);
    return 0;
}

/* Offsets of the f16 scale fields of each block type (made sane after random bytes). */
static int scale_offsets(uint32_t type, int *off) {
    switch (type) {
    case CM_Q4_0: case CM_Q5_0: case CM_Q8_0: off[0] = 0; return 1;
    case CM_Q4_1: case CM_Q5_1: case CM_Q8_1: case CM_Q4_K: case CM_Q5_K:
        off[0] = 0; off[1] = 2; return 2;
    case CM_Q2_K: off[0] = 80; off[1] = 82; return 2;
    case CM_Q3_K: off[0] = 108; return 1;
    case CM_Q6_K: off[0] = 208; return 1;
    default: return 0;
    }
}

/* A row of n elements of type with random quant bits and scales in +-0.05 (f16, bf16 and f32
 * from random floats). Caller frees. */
static uint8_t *random_row(uint32_t type, size_t n, uint64_t seed) {
    const cm_type_info *t = cm_type_get(type);
    size_t nb = n / t->block_size, bytes = nb * t->block_bytes;
    uint8_t *row = lm_malloc(bytes);
    assert_non_null(row);
    lm_rng r;
    lm_rng_seed(&r, seed);
    if (type == CM_F32 || type == CM_F16 || type == CM_BF16) {
        float *f = lm_malloc(n * sizeof(float));
        tu_rand_floats(f, n, seed);
        assert_true(cm_quantize_ref(type, f, row, n));
        lm_free(f);
        return row;
    }
    for (size_t i = 0; i < bytes; i++) row[i] = (uint8_t)lm_rng_next(&r);
    for (size_t bi = 0; bi < nb; bi++) {
        uint8_t *b = row + bi * t->block_bytes;
        if (type == CM_Q8_K) {
            float d = (float)(lm_rng_uniform(&r) - 0.5) * 0.1f;
            memcpy(b, &d, 4);
            continue;
        }
        int off[2];
        int k = scale_offsets(type, off);
        for (int s = 0; s < k; s++) {
            uint16_t h = lm_f32_to_f16((float)(lm_rng_uniform(&r) - 0.5) * 0.1f);
            b[off[s]] = (uint8_t)h;
            b[off[s] + 1] = (uint8_t)(h >> 8);
        }
    }
    return row;
}

static const uint32_t k_types[] = {CM_F32, CM_F16, CM_BF16, CM_Q4_0, CM_Q4_1, CM_Q5_0, CM_Q5_1,
                                   CM_Q8_0, CM_Q8_1, CM_Q2_K, CM_Q3_K, CM_Q4_K, CM_Q5_K, CM_Q6_K,
                                   CM_Q8_K};

/* ---- tests ---- */

static void test_type_table(void **state) {
    (void)state;
    struct { uint32_t id; const char *name; uint32_t bs, bb; bool mm; } want[] = {
        {CM_F32, "F32", 1, 4, true},       {CM_F16, "F16", 1, 2, true},
        {CM_BF16, "BF16", 1, 2, true},     {CM_Q4_0, "Q4_0", 32, 18, true},
        {CM_Q4_1, "Q4_1", 32, 20, true},   {CM_Q5_0, "Q5_0", 32, 22, true},
        {CM_Q5_1, "Q5_1", 32, 24, true},   {CM_Q8_0, "Q8_0", 32, 34, true},
        {CM_Q8_1, "Q8_1", 32, 36, true},   {CM_Q2_K, "Q2_K", 256, 84, true},
        {CM_Q3_K, "Q3_K", 256, 110, true}, {CM_Q4_K, "Q4_K", 256, 144, true},
        {CM_Q5_K, "Q5_K", 256, 176, true}, {CM_Q6_K, "Q6_K", 256, 210, true},
        {CM_Q8_K, "Q8_K", 256, 292, true}, {CM_I8, "I8", 1, 1, false},
        {CM_I16, "I16", 1, 2, false},      {CM_I32, "I32", 1, 4, false},
        {CM_I64, "I64", 1, 8, false},      {CM_F64, "F64", 1, 8, false},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(want); i++) {
        const cm_type_info *t = cm_type_get(want[i].id);
        assert_non_null(t);
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->block_size, want[i].bs);
        assert_int_equal(t->block_bytes, want[i].bb);
        assert_int_equal(t->can_matmul, want[i].mm);
    }
    uint32_t unknown[] = {4, 5, 16, 23, 29, 31, CM_MLX, 0xFFFFFFFFu};
    for (size_t i = 0; i < LM_ARRAY_LEN(unknown); i++) assert_null(cm_type_get(unknown[i]));

    uint64_t bytes = 0;
    assert_true(cm_type_row_bytes(CM_Q4_K, 4096, &bytes));
    assert_int_equal(bytes, 16 * 144);
    assert_true(cm_type_row_bytes(CM_F16, 3, &bytes));
    assert_int_equal(bytes, 6);
    assert_true(cm_type_row_bytes(CM_Q8_0, 64, &bytes));
    assert_int_equal(bytes, 68);
    assert_false(cm_type_row_bytes(CM_Q4_K, 100, &bytes));
    assert_false(cm_type_row_bytes(CM_Q4_0, 33, &bytes));
    assert_false(cm_type_row_bytes(29, 32, &bytes));
    assert_false(cm_type_row_bytes(CM_F64, UINT64_MAX, &bytes));
}

/* Dequantized value == layout formula, and dot == sum(dequant * x), for every type. */
static void test_dequant_and_dot(void **state) {
    (void)state;
    for (size_t ti = 0; ti < LM_ARRAY_LEN(k_types); ti++) {
        uint32_t type = k_types[ti];
        const cm_type_info *t = cm_type_get(type);
        size_t lens[] = {t->block_size, 3 * t->block_size, (t->block_size == 1 ? 1037 : 7 * t->block_size)};
        for (size_t li = 0; li < 3; li++) {
            size_t n = lens[li];
            uint8_t *row = random_row(type, n, 100 + ti * 10 + li);
            float *y = lm_malloc(n * sizeof(float)), *x = lm_malloc(n * sizeof(float));
            tu_rand_floats(x, n, 7 + li);
            cm_dequant_ref(type, row, y, n);
            double want = 0, mag = 0;
            for (size_t i = 0; i < n; i++) {
                float e = elem(type, row, i);
                if (fabsf(e - y[i]) > 1e-6f * fmaxf(1.0f, fabsf(e)))
                    fail_msg("%s n=%zu element %zu: got %g want %g", t->name, n, i, y[i], e);
                want += (double)y[i] * x[i];
                mag += fabs((double)y[i] * x[i]);
            }
            float got = cm_dot_ref(type, row, x, n);
            if (fabs(got - want) > 1e-4 * mag + 1e-30)
                fail_msg("%s n=%zu dot: got %.9g want %.9g", t->name, n, got, want);
            lm_free(row);
            lm_free(y);
            lm_free(x);
        }
    }
}

/* Quantize then dequantize stays within each type's error bound, block by block; an all-zero
 * block comes back as exact zeros. */
static void test_quantize_roundtrip(void **state) {
    (void)state;
    struct { uint32_t type; float levels; int kind; } q[] = {
        /* kind 0: bound c * max|x| / levels; 1: c * (max - min) / levels; 2: K-type with mins */
        {CM_Q8_0, 127, 0}, {CM_Q8_1, 127, 0}, {CM_Q8_K, 127, 0}, {CM_Q4_0, 8, 0},
        {CM_Q5_0, 16, 0},  {CM_Q4_1, 15, 1},  {CM_Q5_1, 31, 1},  {CM_Q4_K, 15, 2},
        {CM_Q5_K, 31, 2},  {CM_Q6_K, 31, 0},
    };
    const size_t n = 4 * 256;
    float *x = lm_malloc(n * sizeof(float)), *y = lm_malloc(n * sizeof(float));
    uint8_t *buf = lm_malloc(n * 2);
    for (size_t qi = 0; qi < LM_ARRAY_LEN(q); qi++) {
        const cm_type_info *t = cm_type_get(q[qi].type);
        tu_rand_floats(x, n, 1000 + qi);
        /* Blocks of different magnitudes, an all-positive stretch and an all-zero block. */
        for (size_t i = 0; i < 256; i++) x[i] *= 0.01f;
        for (size_t i = 256; i < 512; i++) x[i] = fabsf(x[i]) * 3.0f + 0.5f;
        for (size_t i = 512; i < 768; i++) x[i] = 0;
        assert_true(cm_quantize_ref(q[qi].type, x, buf, n));
        cm_dequant_ref(q[qi].type, buf, y, n);
        for (size_t b0 = 0; b0 < n; b0 += t->block_size) {
            float amax = 0, mn = INFINITY, mx = -INFINITY;
            for (size_t i = b0; i < b0 + t->block_size; i++) {
                amax = fmaxf(amax, fabsf(x[i]));
                mn = fminf(mn, x[i]);
                mx = fmaxf(mx, x[i]);
            }
            float bound;
            if (q[qi].kind == 0)
                bound = (q[qi].type == CM_Q4_0 || q[qi].type == CM_Q5_0 ? 1.02f : 0.56f) * amax /
                        q[qi].levels;
            else if (q[qi].kind == 1)
                bound = 0.55f * (mx - mn) / q[qi].levels + 1e-3f * amax;
            else
                bound = 0.56f * (mx + fmaxf(0.0f, -mn)) / q[qi].levels;
            for (size_t i = b0; i < b0 + t->block_size; i++) {
                if (!(fabsf(y[i] - x[i]) <= bound))
                    fail_msg("%s element %zu: x %g back %g bound %g", t->name, i, x[i], y[i], bound);
            }
        }
    }
    /* Float types: relative rounding. */
    tu_rand_floats(x, n, 5);
    assert_true(cm_quantize_ref(CM_F16, x, buf, n));
    cm_dequant_ref(CM_F16, buf, y, n);
    for (size_t i = 0; i < n; i++) assert_true(fabsf(y[i] - x[i]) <= fabsf(x[i]) * 0x1p-11f + 1e-7f);
    assert_true(cm_quantize_ref(CM_BF16, x, buf, n));
    cm_dequant_ref(CM_BF16, buf, y, n);
    for (size_t i = 0; i < n; i++) assert_true(fabsf(y[i] - x[i]) <= fabsf(x[i]) * 0x1p-8f);
    /* Types without a quantizer, and lengths that are not whole blocks. */
    assert_false(cm_quantize_ref(CM_Q2_K, x, buf, 256));
    assert_false(cm_quantize_ref(CM_I32, x, buf, 256));
    assert_false(cm_quantize_ref(CM_Q8_0, x, buf, 33));
    lm_free(x);
    lm_free(y);
    lm_free(buf);
}

/* NaN, infinities and huge values do not crash a quantizer (no UB under UBSan): each still
 * writes whole blocks, and finite blocks next to them come back within bounds. */
static void test_quantize_nonfinite(void **state) {
    (void)state;
    const uint32_t types[] = {CM_Q8_0, CM_Q8_1, CM_Q8_K, CM_Q4_0, CM_Q4_1, CM_Q5_0, CM_Q5_1,
                              CM_Q4_K, CM_Q5_K, CM_Q6_K};
    float x[512], y[512];
    uint8_t buf[1024];
    tu_rand_floats(x, 512, 3);
    x[1] = NAN;
    x[40] = INFINITY;
    x[77] = -INFINITY;
    x[100] = 1e30f;
    x[200] = -1e38f;
    for (size_t i = 0; i < LM_ARRAY_LEN(types); i++) {
        assert_true(cm_quantize_ref(types[i], x, buf, 512));
        cm_dequant_ref(types[i], buf, y, 512);
        /* The second super-block (elements 256..511) is finite and in [-1, 1). */
        for (size_t k = 256; k < 512; k++) assert_true(fabsf(y[k] - x[k]) < 0.2f);
    }
}

/* ggml's Q8_0 rule on a hand-made block: d = max|x| / 127, q = round half away from zero. */
static void test_q8_0_exact(void **state) {
    (void)state;
    float x[32] = {0};
    x[0] = 1.27f;
    x[1] = -0.005f; /* -0.5 steps: rounds away from zero to -1 */
    x[2] = 0.015f;  /* 1.5 steps: 2 */
    x[3] = -1.0f;
    uint8_t b[34];
    assert_true(cm_quantize_ref(CM_Q8_0, x, b, 32));
    assert_int_equal(le16(b), lm_f32_to_f16(0.01f));
    assert_int_equal((int8_t)b[2], 127);
    assert_int_equal((int8_t)b[3], -1);
    assert_int_equal((int8_t)b[4], 2);
    assert_int_equal((int8_t)b[5], -100);
    assert_int_equal((int8_t)b[6], 0);
}

/* ---- MLX ---- */

/* Packs q[n] as a little-endian stream of bits-wide fields in uint32 words (MLX's layout). */
static void mlx_pack(const uint32_t *q, size_t n, uint32_t bits, uint32_t *words) {
    memset(words, 0, (n * bits + 31) / 32 * 4);
    for (size_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < bits; k++) {
            size_t bit = i * bits + k;
            words[bit / 32] |= ((q[i] >> k) & 1u) << (bit % 32);
        }
}

static void sb_store(uint32_t sb_type, void *base, size_t i, float v) {
    if (sb_type == CM_F32) ((float *)base)[i] = v;
    else ((uint16_t *)base)[i] = sb_type == CM_F16 ? lm_f32_to_f16(v) : lm_f32_to_bf16(v);
}
static float sb_load(uint32_t sb_type, const void *base, size_t i) {
    if (sb_type == CM_F32) return ((const float *)base)[i];
    uint16_t h = ((const uint16_t *)base)[i];
    return sb_type == CM_F16 ? lm_f16_to_f32(h) : lm_bf16_to_f32(h);
}

typedef struct mlx_fixture {
    cm_matrix m;
    uint32_t *q;     /* (rows, cols) */
    uint32_t *words;
    void *scales, *biases;
} mlx_fixture;

static void mlx_make(mlx_fixture *f, size_t rows, size_t cols, uint32_t bits, uint32_t gs,
                     uint32_t sb_type, uint64_t seed) {
    lm_rng r;
    lm_rng_seed(&r, seed);
    size_t words_per_row = cols * bits / 32, n_groups = cols / gs;
    f->q = lm_malloc(rows * cols * sizeof(uint32_t));
    f->words = lm_malloc(rows * words_per_row * 4);
    size_t sb = sb_type == CM_F32 ? 4 : 2;
    f->scales = lm_malloc(rows * n_groups * sb);
    f->biases = lm_malloc(rows * n_groups * sb);
    for (size_t i = 0; i < rows * cols; i++) f->q[i] = (uint32_t)(lm_rng_next(&r) >> 40) & ((1u << bits) - 1);
    for (size_t rr = 0; rr < rows; rr++) mlx_pack(f->q + rr * cols, cols, bits, f->words + rr * words_per_row);
    for (size_t i = 0; i < rows * n_groups; i++) {
        /* Negative scales too: MLX stores whatever its fit produced. */
        sb_store(sb_type, f->scales, i, (float)(lm_rng_uniform(&r) - 0.5) * 0.2f);
        sb_store(sb_type, f->biases, i, (float)(lm_rng_uniform(&r) - 0.5));
    }
    f->m = (cm_matrix){.type = CM_MLX, .rows = rows, .cols = cols, .data = f->words,
                       .row_bytes = words_per_row * 4, .bits = bits, .group_size = gs,
                       .sb_type = sb_type, .scales = f->scales, .biases = f->biases};
}

static void mlx_release(mlx_fixture *f) {
    lm_free(f->q);
    lm_free(f->words);
    lm_free(f->scales);
    lm_free(f->biases);
}

static void test_mlx(void **state) {
    (void)state;
    const uint32_t bits[] = {2, 3, 4, 5, 6, 8}, gss[] = {32, 64, 128};
    const uint32_t sbs[] = {CM_F32, CM_F16, CM_BF16};
    const size_t rows = 3, cols = 384;
    float *y = lm_malloc(cols * sizeof(float)), *x = lm_malloc(cols * sizeof(float));
    tu_rand_floats(x, cols, 77);
    int n_neg = 0;
    for (size_t bi = 0; bi < LM_ARRAY_LEN(bits); bi++)
        for (size_t gi = 0; gi < LM_ARRAY_LEN(gss); gi++)
            for (size_t si = 0; si < LM_ARRAY_LEN(sbs); si++) {
                mlx_fixture f;
                mlx_make(&f, rows, cols, bits[bi], gss[gi], sbs[si], bi * 100 + gi * 10 + si);
                cm_mlx_dot_fn fast = cm_mlx_dot_select(&f.m, lm_cpu_features());
                assert_non_null(fast);
                for (size_t r = 0; r < rows; r++) {
                    cm_mlx_dequant_row(&f.m, r, y);
                    double want = 0, mag = 0;
                    for (size_t c = 0; c < cols; c++) {
                        size_t g = r * (cols / gss[gi]) + c / gss[gi];
                        float s = sb_load(sbs[si], f.scales, g), b = sb_load(sbs[si], f.biases, g);
                        n_neg += s < 0;
                        float w = s * (float)f.q[r * cols + c] + b;
                        if (fabsf(w - y[c]) > 1e-6f)
                            fail_msg("mlx bits %u gs %u sb %u row %zu col %zu: got %g want %g",
                                     bits[bi], gss[gi], sbs[si], r, c, y[c], w);
                        want += (double)w * x[c];
                        mag += fabs((double)w * x[c]);
                    }
                    float got = cm_mlx_dot_row(&f.m, r, x);
                    if (fabs(got - want) > 1e-4 * mag)
                        fail_msg("mlx dot bits %u gs %u: got %g want %g", bits[bi], gss[gi], got, want);
                    float got2 = fast(&f.m, r, x);
                    if (fabs(got2 - want) > 1e-4 * mag)
                        fail_msg("mlx fast dot bits %u gs %u sb %u: got %g want %g", bits[bi],
                                 gss[gi], sbs[si], got2, want);
                    /* cm_dequant_row dispatches MLX to the same values. */
                    float y2[384];
                    cm_dequant_row(&f.m, r, y2);
                    for (size_t c = 0; c < cols; c++)
                        assert_true(fabsf(y[c] - y2[c]) <= 1e-6f * (fabsf(y[c]) + 1.0f));
                }
                mlx_release(&f);
            }
    assert_true(n_neg > 0);
    lm_free(y);
    lm_free(x);
}

/* cm_dequant_row on a GGML matrix reads row r at data + r * row_bytes. */
static void test_dequant_row_ggml(void **state) {
    (void)state;
    const size_t rows = 3, cols = 512;
    uint8_t *data = random_row(CM_Q4_K, rows * cols, 9);
    cm_matrix m = {.type = CM_Q4_K, .rows = rows, .cols = cols, .data = data,
                   .row_bytes = 2 * 144};
    float y[512];
    for (size_t r = 0; r < rows; r++) {
        cm_dequant_row(&m, r, y);
        for (size_t c = 0; c < cols; c++)
            assert_float_equal(y[c], elem(CM_Q4_K, data, r * cols + c), 1e-6 * (fabsf(y[c]) + 1));
    }
    lm_free(data);
}

/* Every selected kernel (SIMD where the CPU has it) agrees with the reference, including lengths
 * that are not multiples of 256; the reference is chosen with no features. */
static void test_dot_select(void **state) {
    (void)state;
    uint32_t feat = lm_cpu_features();
    assert_null(cm_dot_select(CM_I32, feat));
    assert_null(cm_dot_select(29, feat));
    for (size_t ti = 0; ti < LM_ARRAY_LEN(k_types); ti++) {
        uint32_t type = k_types[ti];
        const cm_type_info *t = cm_type_get(type);
        cm_dot_fn fast = cm_dot_select(type, feat), ref = cm_dot_select(type, 0);
        assert_non_null(fast);
        assert_non_null(ref);
        size_t bs = t->block_size;
        size_t lens[] = {bs, bs == 1 ? 7 : 2 * bs, bs == 1 ? 37 : 5 * bs, bs == 1 ? 4099 : 13 * bs,
                         bs == 1 ? 4096 : 16 * bs};
        for (size_t li = 0; li < LM_ARRAY_LEN(lens); li++) {
            size_t n = lens[li];
            for (int rep = 0; rep < 3; rep++) {
                uint8_t *row = random_row(type, n, 500 + ti * 31 + li * 7 + (size_t)rep);
                float *x = lm_malloc(n * sizeof(float)), *w = lm_malloc(n * sizeof(float));
                tu_rand_floats(x, n, 900 + li + (size_t)rep);
                cm_dequant_ref(type, row, w, n);
                double mag = 0;
                for (size_t i = 0; i < n; i++) mag += fabs((double)w[i] * x[i]);
                float a = fast(row, x, n), b = ref(row, x, n), c = cm_dot_ref(type, row, x, n);
                assert_true(b == c);
                if (!(fabs(a - b) <= 1e-4 * mag + 1e-30))
                    fail_msg("%s n=%zu: selected %.9g reference %.9g (mag %g)", t->name, n, a, b, mag);
                lm_free(row);
                lm_free(x);
                lm_free(w);
            }
        }
    }
}

/* The selected activation quantizers write exactly the reference's bytes, including ties at
 * half a step (round half away from zero), NaN, infinities and all-zero blocks. */
static void test_quantize_select(void **state) {
    (void)state;
    uint32_t feat = lm_cpu_features();
    assert_null(cm_quantize_select(CM_Q2_K, feat));
    const uint32_t types[] = {CM_Q8_0, CM_Q8_K, CM_Q4_K, CM_Q8_1, CM_Q8_0X4};
    const size_t n = 8 * 256;
    float *x = lm_malloc(n * sizeof(float));
    uint8_t *a = lm_malloc(n * 2), *b = lm_malloc(n * 2);
    for (int rep = 0; rep < 4; rep++) {
        tu_rand_floats(x, n, 31 + (uint64_t)rep);
        if (rep == 1) {
            /* Ties: multiples of half a step when the block max is 127 steps. */
            for (size_t i = 0; i < n; i++) x[i] = (float)((int)(x[i] * 254.0f)) * 0.5f;
            for (size_t i = 0; i < n; i += 32) x[i] = 127.0f;
        }
        if (rep == 2) {
            x[3] = NAN;
            x[300] = INFINITY;
            x[600] = -1e38f;
            for (size_t i = 1024; i < 1280; i++) x[i] = 0;
        }
        if (rep == 3)
            for (size_t i = 0; i < n; i++) x[i] *= 1e-30f; /* tiny scales */
        for (size_t ti = 0; ti < LM_ARRAY_LEN(types); ti++) {
            cm_quantize_fn fn = cm_quantize_select(types[ti], feat);
            assert_non_null(fn);
            uint64_t bytes;
            assert_true(cm_type_row_bytes(types[ti], n, &bytes));
            memset(a, 0xAA, bytes);
            memset(b, 0x55, bytes);
            assert_true(cm_quantize_ref(types[ti], x, a, n));
            fn(x, b, n);
            if (types[ti] == CM_Q8_0X4 && !memcmp(a, b, bytes)) {
                /* groups of 4 blocks: also lengths whose last group holds 1, 2 and 3 */
                for (size_t cut = 32; cut <= 96 && !memcmp(a, b, bytes); cut += 32) {
                    assert_true(cm_type_row_bytes(types[ti], n - cut, &bytes));
                    memset(a, 0xAA, bytes);
                    memset(b, 0x55, bytes);
                    assert_true(cm_quantize_ref(types[ti], x, a, n - cut));
                    fn(x, b, n - cut);
                }
            }
            if (memcmp(a, b, bytes)) {
                size_t k = 0;
                while (a[k] == b[k]) k++;
                fail_msg("type %u rep %d: byte %zu differs: ref 0x%02x fast 0x%02x", types[ti], rep,
                         k, a[k], b[k]);
            }
        }
    }
    lm_free(x);
    lm_free(a);
    lm_free(b);
}

/* Every half-float bit pattern dequantizes to what core's converter says (NaN stays NaN). */
static void test_f16_all(void **state) {
    (void)state;
    uint16_t *h = lm_malloc(65536 * 2);
    float *y = lm_malloc(65536 * sizeof(float)), *y2 = lm_malloc(65536 * sizeof(float));
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    cm_dequant_ref(CM_F16, h, y, 65536);
    cm_dequant_fn fast = cm_dequant_select(CM_F16, lm_cpu_features());
    assert_non_null(fast);
    fast(h, y2, 65536);
    for (uint32_t i = 0; i < 65536; i++) {
        float want = lm_f16_to_f32((uint16_t)i);
        if (isnan(want)) {
            assert_true(isnan(y[i]) && isnan(y2[i]));
        } else if (memcmp(&want, &y[i], 4) || memcmp(&want, &y2[i], 4)) {
            fail_msg("f16 0x%04x: ref %g fast %g want %g", i, y[i], y2[i], want);
        }
    }
    lm_free(h);
    lm_free(y);
    lm_free(y2);
}

/* The selected dequantizer (SIMD where available) equals the reference, every type, several
 * lengths; cm_dequant_row on a matrix agrees with both. */
static void test_dequant_select(void **state) {
    (void)state;
    uint32_t feat = lm_cpu_features();
    assert_null(cm_dequant_select(CM_I32, feat));
    for (size_t ti = 0; ti < LM_ARRAY_LEN(k_types); ti++) {
        uint32_t type = k_types[ti];
        const cm_type_info *t = cm_type_get(type);
        cm_dequant_fn fast = cm_dequant_select(type, feat);
        assert_non_null(fast);
        size_t bs = t->block_size;
        size_t lens[] = {bs, bs == 1 ? 13 : 3 * bs, bs == 1 ? 1031 : 9 * bs};
        for (size_t li = 0; li < LM_ARRAY_LEN(lens); li++) {
            size_t n = lens[li];
            uint8_t *row = random_row(type, n, 7000 + ti * 10 + li);
            float *a = lm_malloc(n * sizeof(float)), *b = lm_malloc(n * sizeof(float));
            cm_dequant_ref(type, row, a, n);
            fast(row, b, n);
            float amax = 0;
            for (size_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(a[i]));
            for (size_t i = 0; i < n; i++)
                if (!(fabsf(a[i] - b[i]) <= 1e-6f * amax))
                    fail_msg("%s n=%zu element %zu: fast %g ref %g", t->name, n, i, b[i], a[i]);
            cm_matrix m = {.type = type, .rows = 1, .cols = n, .data = row, .row_bytes = 0};
            cm_dequant_row(&m, 0, b);
            for (size_t i = 0; i < n; i++) assert_true(fabsf(a[i] - b[i]) <= 1e-6f * amax);
            lm_free(row);
            lm_free(a);
            lm_free(b);
        }
    }
}

/* Integer kernels against activations quantized to Q8_0/Q8_K: equal to the reference on the same
 * quantized x, and within quantization error of the float dot. */
static void test_dotq(void **state) {
    (void)state;
    uint32_t feat = lm_cpu_features(), at = 12345;
    assert_null(cm_dotq_select(CM_Q4_K, 0, &at));
    assert_int_equal(at, 12345);
    assert_null(cm_dotq_select(CM_F32, feat, &at));
    const uint32_t types[] = {CM_Q8_0, CM_Q4_0, CM_Q5_0, CM_Q2_K, CM_Q3_K, CM_Q4_K, CM_Q5_K, CM_Q6_K};
    /* the best kernels, then the AVX2 ones on a CPU that also has AVX-512 */
    const uint32_t avx512 = LM_CPU_AVX512F | LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    int n_tested = 0;
    for (size_t fi = 0; fi < 2 * LM_ARRAY_LEN(types); fi++) {
        size_t ti = fi % LM_ARRAY_LEN(types);
        if (fi >= LM_ARRAY_LEN(types) && (feat & avx512) != avx512) break;
        uint32_t type = types[ti];
        cm_dotq_fn fn = cm_dotq_select(type, fi < LM_ARRAY_LEN(types) ? feat : feat & ~avx512, &at);
        if (!fn) continue;
        if ((type == CM_Q4_0 || type == CM_Q5_0) && (feat & avx512) == avx512 && fi < LM_ARRAY_LEN(types))
            assert_int_equal(at, CM_Q8_0X4);
        else
            assert_int_equal(at, cm_type_get(type)->block_size == 256 ? CM_Q8_K : CM_Q8_0);
        /* 480: 15 blocks of 32, so the AVX-512 loops of 4 and 2 blocks and the single-block tail
         * all run */
        bool b32 = cm_type_get(type)->block_size == 32;
        /* 288 and 320: 9 and 10 blocks, the last group of 4 holding 1 and 2 (Q8_0X4's tails) */
        size_t lens[] = {256, 768, 13 * 256, 4096, b32 ? 480 : 1280, b32 ? 288 : 512, b32 ? 320 : 2304};
        for (size_t li = 0; li < LM_ARRAY_LEN(lens); li++) {
            size_t n = lens[li];
            uint64_t xbytes;
            assert_true(cm_type_row_bytes(at, n, &xbytes));
            uint8_t *row = random_row(type, n, 4000 + ti * 10 + li), *xq = lm_malloc(xbytes);
            float *x = lm_malloc(n * sizeof(float)), *w = lm_malloc(n * sizeof(float));
            float *xd = lm_malloc(n * sizeof(float));
            tu_rand_floats(x, n, 4100 + li);
            assert_true(cm_quantize_ref(at, x, xq, n));
            cm_dequant_ref(type, row, w, n);
            cm_dequant_ref(at, xq, xd, n);
            double mag = 0, magq = 0;
            for (size_t i = 0; i < n; i++) {
                mag += fabs((double)w[i] * x[i]);
                magq += fabs((double)w[i] * xd[i]);
            }
            float got = fn(row, xq, n), ref = cm_dotq_ref(type, row, at, xq, n);
            float want_q = cm_dot_ref(type, row, xd, n), want_f = cm_dot_ref(type, row, x, n);
            if (!(fabs(ref - want_q) <= 1e-5 * magq))
                fail_msg("type %u n=%zu dotq_ref %.9g vs dot of dequantized x %.9g", type, n, ref, want_q);
            if (!(fabs(got - ref) <= 1e-4 * magq))
                fail_msg("type %u n=%zu dotq %.9g reference %.9g (mag %g)", type, n, got, ref, magq);
            if (!(fabs(got - want_f) <= 0.02 * mag))
                fail_msg("type %u n=%zu dotq %.9g float dot %.9g (mag %g)", type, n, got, want_f, mag);
            n_tested++;
            lm_free(row);
            lm_free(xq);
            lm_free(x);
            lm_free(w);
            lm_free(xd);
        }
    }
#if defined(__x86_64__)
    if (feat & LM_CPU_AVX2) assert_int_equal(n_tested, (feat & avx512) == avx512 ? 112 : 56);
#endif
}

/* The tiled prefill kernels: each output against cm_dot_ref of the row with the token's
 * activations quantized to Q8_0 and dequantized. The kernel's sums are exact integers, so they
 * differ only by float rounding: |got - want| <= 1e-5 * sum |w * x| (a relative 1e-5 of the
 * magnitude, which is what the rounding of the block scales can reach). Odd token counts (lanes
 * past n padded), odd row counts (partial tiles) and row and token-group ranges split unevenly,
 * as threads would. */
static void test_gemm(void **state) {
    (void)state;
    uint32_t feat = lm_cpu_features();
    cm_gemm_prep_fn prep = NULL;
    assert_null(cm_gemm_select(CM_Q4_0, 0, &prep));
    assert_null(prep);
    assert_null(cm_gemm_select(CM_F32, feat, &prep));
    const uint32_t types[] = {CM_Q4_0, CM_Q5_0, CM_Q8_0, CM_Q4_K, CM_Q5_K, CM_Q6_K};
    struct { size_t cols, rows, n; } shapes[] = {{256, 13, 2}, {512, 37, 17}, {768, 8, 16}, {1280, 21, 33}, {96, 9, 5}};
    /* the best kernels, then the AVX2 ones on a CPU that also has AVX-512 VNNI */
    const uint32_t v512 = LM_CPU_AVX512F | LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    int n_tested = 0;
    for (size_t fi = 0; fi < 2 * LM_ARRAY_LEN(types); fi++) {
        size_t ti = fi % LM_ARRAY_LEN(types);
        if (fi >= LM_ARRAY_LEN(types) && (feat & v512) != v512) break;
        uint32_t type = types[ti];
        cm_gemm_fn fn = cm_gemm_select(type, fi < LM_ARRAY_LEN(types) ? feat : feat & ~v512, &prep);
        if (!fn) continue;
        assert_non_null(prep);
        const cm_type_info *info = cm_type_get(type);
        for (size_t si = 0; si < LM_ARRAY_LEN(shapes); si++) {
            size_t cols = shapes[si].cols, rows = shapes[si].rows, n = shapes[si].n;
            if (cols % info->block_size) continue;
            cm_matrix w = {.type = type, .rows = rows, .cols = cols};
            w.row_bytes = cols / info->block_size * info->block_bytes;
            uint8_t *data = random_row(type, rows * cols, 7000 + ti * 10 + si);
            w.data = data;
            float *x = lm_malloc(n * cols * sizeof(float)), *y = lm_malloc(n * rows * sizeof(float));
            float *wf = lm_malloc(cols * sizeof(float)), *xd = lm_malloc(cols * sizeof(float));
            uint8_t *xq = lm_malloc(cols / 32 * 34);
            uint8_t *act = lm_malloc(cm_gemm_act_bytes(n, cols) + 64), *scratch = lm_malloc(cm_gemm_scratch_bytes(cols, n));
            assert_true(x && y && wf && xd && xq && act && scratch);
            tu_rand_floats(x, n * cols, 7100 + si);
            for (size_t i = 0; i < n * rows; i++) y[i] = NAN;
            cm_gemm_act a = {n, cols, (n + CM_GEMM_TOK - 1) / CM_GEMM_TOK, (uint8_t *)(((uintptr_t)act + 63) & ~(uintptr_t)63)};
            size_t gsplit = a.n_grp / 2;
            prep(x, cols, &a, 0, gsplit);
            prep(x, cols, &a, gsplit, a.n_grp);
            size_t rsplit[] = {0, rows / 3, rows / 3 + 5 > rows ? rows : rows / 3 + 5, rows};
            for (int k = 0; k < 3; k++) fn(&w, rsplit[k], rsplit[k + 1], &a, y, rows, scratch);
            for (size_t t = 0; t < n; t++) {
                assert_true(cm_quantize_ref(CM_Q8_0, x + t * cols, xq, cols));
                cm_dequant_ref(CM_Q8_0, xq, xd, cols);
                for (size_t r = 0; r < rows; r++) {
                    const uint8_t *row = data + r * w.row_bytes;
                    cm_dequant_ref(type, row, wf, cols);
                    double mag = 0;
                    for (size_t i = 0; i < cols; i++) mag += fabs((double)wf[i] * xd[i]);
                    float want = cm_dot_ref(type, row, xd, cols), got = y[t * rows + r];
                    if (!(fabs((double)got - want) <= 1e-5 * mag))
                        fail_msg("type %u cols=%zu rows=%zu n=%zu: y[%zu][%zu] %.9g want %.9g (mag %g)",
                                 type, cols, rows, n, t, r, got, want, mag);
                }
            }
            n_tested++;
            lm_free(data);
            lm_free(x);
            lm_free(y);
            lm_free(wf);
            lm_free(xd);
            lm_free(xq);
            lm_free(act);
            lm_free(scratch);
        }
    }
#if defined(__x86_64__)
    /* AVX-512 and AVX2 alike: Q4_0, Q5_0, Q8_0 at 5 shapes, the K types at 4 */
    if ((feat & v512) == v512) assert_int_equal(n_tested, 2 * (3 * 5 + 3 * 4));
    else if (feat & LM_CPU_AVX2) assert_int_equal(n_tested, 3 * 5 + 3 * 4);
#endif
}

/* cm_matmul and cm_matmul_multi over a pool of 3 threads, n = 1 (decode) and n > 1 (prefill),
 * against the force_ref context (float dots, unquantized x): within the activation quantization
 * error, |got - want| <= 0.02 * sum |w * x|; and multi equals separate products exactly. */
static void test_matmul(void **state) {
    (void)state;
    lm_pool *pool = lm_pool_new(3);
    assert_non_null(pool);
    cm_ctx *fast = cm_ctx_new(pool, false), *ref = cm_ctx_new(pool, true);
    assert_true(fast && ref);
    assert_string_equal(cm_ctx_kernels(ref), "ref");
    const uint32_t types[] = {CM_Q4_0, CM_Q8_0, CM_Q4_K, CM_Q6_K, CM_Q5_0, CM_F16, CM_Q4_1};
    size_t cols = 512, rows[3] = {37, 16, 50}, ns[] = {1, 3, 19};
    for (size_t ti = 0; ti < LM_ARRAY_LEN(types); ti++) {
        uint32_t type = types[ti];
        const cm_type_info *info = cm_type_get(type);
        cm_matrix w[3];
        uint8_t *data[3];
        for (int m = 0; m < 3; m++) {
            /* the third matrix of another type, as Q4_K_M files mix Q4_K and Q6_K */
            uint32_t ty = m == 2 ? CM_Q6_K : type;
            const cm_type_info *ii = cm_type_get(ty);
            data[m] = random_row(ty, rows[m] * cols, 8000 + ti * 10 + (uint64_t)m);
            w[m] = (cm_matrix){.type = ty, .rows = rows[m], .cols = cols, .data = data[m],
                               .row_bytes = cols / ii->block_size * ii->block_bytes};
        }
        (void)info;
        for (size_t ni = 0; ni < LM_ARRAY_LEN(ns); ni++) {
            size_t n = ns[ni];
            float *x = lm_malloc(n * cols * sizeof(float)), *wf = lm_malloc(cols * sizeof(float));
            float *y[3], *y1[3], *yr[3];
            tu_rand_floats(x, n * cols, 8100 + ni);
            for (int m = 0; m < 3; m++) {
                y[m] = lm_malloc(n * rows[m] * sizeof(float));
                y1[m] = lm_malloc(n * rows[m] * sizeof(float));
                yr[m] = lm_malloc(n * rows[m] * sizeof(float));
                cm_matmul(fast, &w[m], x, n, y1[m]);
                cm_matmul(ref, &w[m], x, n, yr[m]);
            }
            const cm_matrix *wp[3] = {&w[0], &w[1], &w[2]};
            cm_matmul_multi(fast, wp, 3, x, n, y);
            for (int m = 0; m < 3; m++) {
                assert_memory_equal(y[m], y1[m], n * rows[m] * sizeof(float));
                for (size_t r = 0; r < rows[m]; r++) {
                    cm_dequant_ref(w[m].type, data[m] + r * w[m].row_bytes, wf, cols);
                    for (size_t t = 0; t < n; t++) {
                        double mag = 0;
                        for (size_t i = 0; i < cols; i++) mag += fabs((double)wf[i] * x[t * cols + i]);
                        float got = y[m][t * rows[m] + r], want = yr[m][t * rows[m] + r];
                        if (!(fabs((double)got - want) <= 0.02 * mag))
                            fail_msg("type %u n=%zu y[%zu][%zu] %.9g ref %.9g (mag %g)", w[m].type, n, t, r, got, want, mag);
                    }
                }
                lm_free(y[m]);
                lm_free(y1[m]);
                lm_free(yr[m]);
            }
            lm_free(x);
            lm_free(wf);
        }
        for (int m = 0; m < 3; m++) lm_free(data[m]);
    }
    cm_ctx_free(fast);
    cm_ctx_free(ref);
    lm_pool_free(pool);
}

/* LOCALLM_CPU narrows the kernel set (never widens it), and names the set it leaves. */
static void test_cpu_override(void **state) {
    (void)state;
    uint32_t all = lm_cpu_features();
    unsetenv("LOCALLM_CPU");
    assert_int_equal(cm_cpu_features(false), all);
    assert_int_equal(cm_cpu_features(true), 0);
    setenv("LOCALLM_CPU", "ref", 1);
    assert_int_equal(cm_cpu_features(false), 0);
    assert_string_equal(cm_cpu_kernels_name(cm_cpu_features(false)), "ref");
    setenv("LOCALLM_CPU", "avx2", 1);
    uint32_t f = cm_cpu_features(false);
    assert_int_equal(f & ~(uint32_t)(LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C), 0);
    assert_int_equal(f & ~all, 0);
    if ((all & (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C)) == (LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C))
        assert_string_equal(cm_cpu_kernels_name(f), "avx2");
    setenv("LOCALLM_CPU", "neon", 1);
    assert_int_equal(cm_cpu_features(false), all & LM_CPU_NEON);
    setenv("LOCALLM_CPU", "avx512-please", 1); /* unknown: everything the CPU has */
    assert_int_equal(cm_cpu_features(false), all);
    unsetenv("LOCALLM_CPU");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_dequant_and_dot),
        cmocka_unit_test(test_quantize_roundtrip),
        cmocka_unit_test(test_q8_0_exact),
        cmocka_unit_test(test_quantize_nonfinite),
        cmocka_unit_test(test_mlx),
        cmocka_unit_test(test_dequant_row_ggml),
        cmocka_unit_test(test_dot_select),
        cmocka_unit_test(test_dotq),
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_f16_all),
        cmocka_unit_test(test_quantize_select),
        cmocka_unit_test(test_dequant_select),
        cmocka_unit_test(test_cpu_override),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
