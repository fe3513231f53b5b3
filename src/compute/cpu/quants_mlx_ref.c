/* compute/cpu/quants_mlx_ref.c: integer decode of MLX affine-quantized matrices, portable part.
 * Owns: the prepared-activation buffer of the MLX integer kernels (size, layout, filling it from
 * float x), the oracle cm_mlx_dotq_ref, and choosing the SIMD kernel (cm_mlx_dotq_select).
 * Does not own: the float MLX kernels (quants_ref.c) or the SIMD loops (quants_mlx_avx2.c). */
#include "compute/cpu/quants.h"

#include <string.h>

/* Layout (quants.h): float d[nb], gsum[ng], gqsum[ng], then int8 q[cols] at a 32-byte offset. */
size_t cm_mlx_xq_qoff(const cm_matrix *m) {
    size_t nb = m->cols / 32, ng = m->group_size ? m->cols / m->group_size : 0;
    return ((nb + 2 * ng) * sizeof(float) + 31) & ~(size_t)31;
}

size_t cm_mlx_xq_bytes(const cm_matrix *m) { return cm_mlx_xq_qoff(m) + m->cols; }

static bool dotq_shape_ok(const cm_matrix *m) {
    return m->type == CM_MLX && (m->bits == 4 || m->bits == 8) && m->group_size > 0 &&
           m->group_size % 32 == 0 && m->cols % m->group_size == 0 &&
           (m->sb_type == CM_F32 || m->sb_type == CM_F16 || m->sb_type == CM_BF16);
}

void cm_mlx_quantize_x(const cm_matrix *m, const float *x, void *xq, uint32_t cpu_features) {
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, bpg = m->group_size / 32;
    uint8_t *base = xq;
    float *d = (float *)(void *)base, *gsum = d + nb, *gqsum = gsum + ng;
    int8_t *q = (int8_t *)(base + cm_mlx_xq_qoff(m));
    cm_quantize_fn quant = cm_quantize_select(CM_Q8_0, cpu_features);
    for (size_t g = 0; g < ng; g++) {
        float sx = 0, sq = 0;
        for (size_t k = 0; k < bpg; k++) {
            size_t b = g * bpg + k;
            const float *xb = x + b * 32;
            uint8_t blk[34]; /* one Q8_0 block: f16 d, 32 int8 */
            quant(xb, blk, 32);
            d[b] = lm_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)));
            int8_t *qb = q + b * 32;
            int isum = 0;
            for (int i = 0; i < 32; i++) {
                int8_t v = (int8_t)blk[2 + i];
                isum += v;
                sx += xb[i];
                /* 4-bit: byte j of the packed row holds elements 2j (low) and 2j+1 (high). */
                if (m->bits == 4) qb[(i & 1) * 16 + i / 2] = v;
                else qb[i] = v;
            }
            sq += d[b] * (float)isum;
        }
        gsum[g] = sx;
        gqsum[g] = sq;
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

/* Per group: s * sum_i q_i * (d_b(i) * xq_i) + bias * gsum, summed in double. */
float cm_mlx_dotq_ref(const cm_matrix *m, size_t row, const void *xq) {
    if (!dotq_shape_ok(m)) return 0.0f;
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, gs = m->group_size;
    const uint8_t *base = xq;
    const float *d = (const float *)(const void *)base, *gsum = d + nb;
    const int8_t *q = (const int8_t *)(base + cm_mlx_xq_qoff(m));
    const uint8_t *w = (const uint8_t *)m->data + row * m->row_bytes;
    double sum = 0;
    for (size_t g = 0; g < ng; g++) {
        double s = sb_at(m->sb_type, m->scales, row * ng + g);
        double bias = sb_at(m->sb_type, m->biases, row * ng + g);
        double qx = 0;
        for (size_t k = 0; k < gs; k++) {
            size_t i = g * gs + k, b = i / 32, j = i % 32;
            int wq, xv;
            if (m->bits == 4) {
                wq = (w[i / 2] >> (4 * (i & 1))) & 15;
                xv = q[b * 32 + (j & 1) * 16 + j / 2];
            } else {
                wq = w[i];
                xv = q[i];
            }
            qx += (double)d[b] * wq * xv;
        }
        sum += s * qx + bias * gsum[g];
    }
    return (float)sum;
}

static const uint32_t MLX_AVX2_SET = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C;

cm_mlx_dotq_fn cm_mlx_dotq_select(const cm_matrix *m, uint32_t cpu_features) {
    if (!dotq_shape_ok(m)) return NULL;
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & MLX_AVX2_SET) == MLX_AVX2_SET) return cm_mlx_dotq_avx2;
#else
    (void)cpu_features;
#endif
    return NULL;
}

cm_mlx_gemmq_fn cm_mlx_gemmq_select(const cm_matrix *m, uint32_t cpu_features) {
    if (!dotq_shape_ok(m)) return NULL;
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & MLX_AVX2_SET) == MLX_AVX2_SET) return cm_mlx_gemmq_avx2;
#else
    (void)cpu_features;
#endif
    return NULL;
}
