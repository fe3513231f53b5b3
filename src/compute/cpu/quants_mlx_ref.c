/* compute/cpu/quants_mlx_ref.c: integer decode of MLX affine-quantized matrices, portable part.
 * Owns: the prepared-activation buffers of the MLX integer kernels (size, layout, filling them
 * from float x: one token, or the token-lane tiles of quants_mlx.h) and the oracle cm_mlx_dotq_ref.
 * Does not own: the float MLX kernels (quants_ref.c), the SIMD loops (quants_mlx_avx2.c, ...),
 * choosing them (select.c) or running them over the pool (ops.c). */
#include "compute/cpu/quants.h"
#include "compute/cpu/quants_mlx.h"

#include <math.h>
#include <string.h>

/* Layout (quants.h): float d[nb], gqsum[ng], then int16 q[cols] at a 32-byte offset. */
size_t cm_mlx_xq_qoff(const cm_matrix *m) {
    size_t nb = m->cols / 32, ng = m->group_size ? m->cols / m->group_size : 0;
    return ((nb + ng) * sizeof(float) + 31) & ~(size_t)31;
}

size_t cm_mlx_xq_bytes(const cm_matrix *m) { return cm_mlx_xq_qoff(m) + m->cols * sizeof(int16_t); }

bool cm_mlx_dotq_shape_ok(const cm_matrix *m) {
    return m->type == CM_MLX && (m->bits == 4 || m->bits == 8) && m->group_size > 0 &&
           m->group_size % 32 == 0 && m->group_size <= 128 && m->cols % m->group_size == 0 &&
           (m->sb_type == CM_F32 || m->sb_type == CM_F16 || m->sb_type == CM_BF16);
}

/* The int16 scale of one group of gs activations: amax / 32767, NaN when the group holds a NaN;
 * *id gets the factor that quantizes (0 for an all-zero group). */
static float group_scale(const float *xg, size_t gs, float *id) {
    float amax = 0;
    bool nan = false;
    for (size_t i = 0; i < gs; i++) {
        amax = fmaxf(amax, fabsf(xg[i]));
        nan |= xg[i] != xg[i];
    }
    float dg = amax / 32767.0f;
    *id = dg > 0 ? 1.0f / dg : 0.0f;
    return nan ? NAN : dg;
}

/* v rounded to int16; clamped first, as x / d may round a hair past 32767; NaN gives 0. */
static int16_t round_q16(float v) {
    return (int16_t)(v >= 32767.0f ? 32767 : v <= -32767.0f ? -32767 : v == v ? (int)lrintf(v) : 0);
}

/* Once per matrix product, cols elements: plain C is fast enough. cpu_features is for a SIMD
 * version if profiles ever show this. A group holding NaN or Inf gets d = NaN or Inf, so the
 * products are not finite either, as with float kernels. */
void cm_mlx_quantize_x(const cm_matrix *m, const float *x, void *xq, uint32_t cpu_features) {
    (void)cpu_features;
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, gs = m->group_size;
    uint8_t *base = xq;
    float *d = (float *)(void *)base, *gqsum = d + nb;
    int16_t *q = (int16_t *)(void *)(base + cm_mlx_xq_qoff(m));
    for (size_t g = 0; g < ng; g++) {
        const float *xg = x + g * gs;
        float id, dg = group_scale(xg, gs, &id);
        /* one scale per group, written for each of its blocks */
        for (size_t b = g * gs / 32; b < (g + 1) * gs / 32; b++) d[b] = dg;
        int16_t *qg = q + g * gs;
        int32_t isum = 0;
        for (size_t i = 0; i < gs; i++) {
            int16_t r = round_q16(xg[i] * id);
            isum += r;
            /* 4-bit: byte j of the packed row holds elements 2j (low) and 2j+1 (high), so each
             * block of 32 is stored as its even elements, then its odd ones. */
            size_t j = i % 32;
            if (m->bits == 4) qg[i - j + (j & 1) * 16 + j / 2] = r;
            else qg[i] = r;
        }
        gqsum[g] = dg * (float)isum;
    }
}

static inline float sb_at(uint32_t sb_type, const void *base, size_t i) {
    const uint8_t *p = (const uint8_t *)base;
    switch (sb_type) {
    case CM_F16: return lm_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
    case CM_BF16: return lm_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
    default: {
        float f;
        memcpy(&f, p + 4 * i, sizeof f);
        return f;
    }
    }
}

/* Per group: s * sum_i q_i d_b(i) xq_i + bias * gqsum, summed in double. */
float cm_mlx_dotq_ref(const cm_matrix *m, size_t row, const void *xq) {
    if (!cm_mlx_dotq_shape_ok(m)) return 0.0f;
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, gs = m->group_size;
    const uint8_t *base = xq;
    const float *d = (const float *)(const void *)base, *gqsum = d + nb;
    const int16_t *q = (const int16_t *)(const void *)(base + cm_mlx_xq_qoff(m));
    const uint8_t *w = (const uint8_t *)m->data + row * m->row_bytes;
    double sum = 0;
    for (size_t g = 0; g < ng; g++) {
        double s = sb_at(m->sb_type, m->scales, row * ng + g);
        double bias = sb_at(m->sb_type, m->biases, row * ng + g);
        double qx = 0;
        for (size_t k = 0; k < gs; k++) {
            size_t i = g * gs + k, j = i % 32;
            int wq, xv;
            if (m->bits == 4) {
                wq = (w[i / 2] >> (4 * (i & 1))) & 15;
                xv = q[i - j + (j & 1) * 16 + j / 2];
            } else {
                wq = w[i];
                xv = q[i];
            }
            qx += (double)d[i / 32] * wq * xv;
        }
        sum += s * qx + bias * gqsum[g];
    }
    return (float)sum;
}

/* ---- the token-lane tiles of the prefill kernels (quants_mlx.h) ---- */

/* Tile k of quants_mlx.h from tokens [16k, 16k + 16) of x, with cm_mlx_quantize_x's rounding. */
void cm_mlx_prep_tile(const cm_matrix *m, const float *x, size_t n, uint8_t *tile, size_t k) {
    size_t cols = m->cols, gs = m->group_size, ng = cols / gs;
    memset(tile, 0, cm_mlx_tile_bytes(m));
    int16_t *q = (int16_t *)(void *)tile;
    float *dv = (float *)(void *)(tile + cols * 2 * CM_MLX_LANES), *gq = dv + ng * CM_MLX_LANES;
    for (size_t t = 0; t < CM_MLX_LANES && k * CM_MLX_LANES + t < n; t++) {
        const float *xt = x + (k * CM_MLX_LANES + t) * cols;
        for (size_t g = 0; g < ng; g++) {
            const float *xg = xt + g * gs;
            float id, dg = group_scale(xg, gs, &id);
            int32_t isum = 0;
            for (size_t i = 0; i < gs; i++) {
                int16_t r = round_q16(xg[i] * id);
                isum += r;
                size_t e = g * gs + i;
                q[((e / 2) * CM_MLX_LANES + t) * 2 + (e & 1)] = r;
            }
            dv[g * CM_MLX_LANES + t] = dg;
            gq[g * CM_MLX_LANES + t] = dg * (float)isum;
        }
    }
}
