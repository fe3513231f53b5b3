/* compute/cpu/quants_r16m_ref.c: MLX 4-bit matrices repacked at load into the R16 layout (16 rows
 * interleaved, as quants_r16_ref.c does for Q4_0), the reference kernel over them, and their
 * activations.
 * Owns: the R16M layout (what cm_r16m_pack_rows writes and every R16M kernel reads), reading one
 * row back, the activation layout, and the plain C kernel that is the oracle of
 * quants_r16m_avx512.c.
 *
 * Why: MLX's affine groups (w = scale * q + bias, q in 0..15, per group of 32, 64 or 128 along a
 * row) are Q4_0 with a per-group bias: the bias term of a group is bias * sum(x), a per-token
 * number shared by all rows, and the scale multiplies an integer dot product exactly as Q4_0's
 * does. So the same 16-rows-in-16-lanes kernel runs them; the only difference is precision.
 * MLX references are float runs (the fixtures' tolerance is 2e-3) and int8 activations put
 * their logits about 2 % off. The activations are therefore rounded to 16 bits per block of 32
 * (d = max|x| / 32512, v = round(x / d)) and v is split exactly into two signed bytes,
 * v = 256 * hi + lo: two passes of vpdpbusd over the same unpacked weights (hi, then lo) give
 * q . v in integers, twice the multiply-adds of Q4_0 for the same bytes of weights. The bias
 * meets the same rounded x (d * sum(v)) as the quants, so the rounding errors of q's offset
 * cancel against it as they do in the float model.
 *
 * Layout (MLX, bits 4, group_size gs a multiple of 32 dividing cols; scales and biases of type
 * sb = F16, BF16 or F32, kept in that type, sz = 2 or 4 bytes). Rows are cut in groups of 16
 * (the last padded with zero rows); per row group, per MLX group g (ng = cols / gs), gbytes =
 * 32 * sz + gs / 32 * 256 bytes:
 *   sb  scale[16], bias[16]     each row's scale and bias of group g
 *   u8  qs[gs / 32][4][16][4]   per block of 32 columns, as Q4_0's R16: qs[k][r] holds 4 bytes
 *                               whose low nibbles are elements 4k..4k+3 of the block and high
 *                               nibbles 16+4k..16+4k+3 (MLX stores 2j low, 2j+1 high: repacked)
 * so 16 rows of a group take the bytes they take in the MLX file.
 *
 * Activations (per token, cm_r16m_act_bytes(cols), 64-byte aligned by the caller; nb = cols/32):
 *   i8  hi[cols], lo[cols]    v = 256 * hi + lo, lo in -128..127, |v| <= 32512
 *   f32 d[nb]                 each block's scale (NaN when the block holds NaN or Inf)
 *   f32 bx[nb]                d * sum of the block's v */
#include "compute/cpu/quants.h"

#include <math.h>

static size_t sb_size(uint32_t sb) { return sb == CM_F32 ? 4 : 2; }

size_t cm_r16m_group_bytes(const cm_matrix *w) { return 32 * sb_size(w->sb_type) + w->group_size / 32 * 256; }

size_t cm_r16m_bytes(const cm_matrix *w) {
    if (w->type != CM_MLX || w->bits != 4 || w->group_size == 0 || w->group_size % 32 || w->cols % w->group_size ||
        w->rows == 0 || (w->sb_type != CM_F16 && w->sb_type != CM_BF16 && w->sb_type != CM_F32) ||
        w->row_bytes != w->cols / 2)
        return 0;
    return (w->rows + 15) / 16 * (w->cols / w->group_size) * cm_r16m_group_bytes(w);
}

void cm_r16m_pack_rows(const cm_matrix *w, void *out, size_t r0, size_t r1) {
    size_t gs = w->group_size, ng = w->cols / gs, sz = sb_size(w->sb_type), gb = cm_r16m_group_bytes(w);
    uint8_t *o = out;
    size_t g0 = r0 / 16, g1 = (r1 + 15) / 16;
    memset(o + g0 * ng * gb, 0, (g1 - g0) * ng * gb);
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
        const uint8_t *sc = (const uint8_t *)w->scales + r * ng * sz, *bi = (const uint8_t *)w->biases + r * ng * sz;
        size_t lr = r % 16;
        for (size_t g = 0; g < ng; g++) {
            uint8_t *gp = o + ((r / 16) * ng + g) * gb;
            memcpy(gp + lr * sz, sc + g * sz, sz);
            memcpy(gp + 16 * sz + lr * sz, bi + g * sz, sz);
            for (size_t bl = 0; bl < gs / 32; bl++) {
                const uint8_t *src = row + (g * gs + 32 * bl) / 2; /* 16 bytes, elements 2j | 2j+1 << 4 */
                uint8_t q[32], b16[16];
                for (int j = 0; j < 16; j++) {
                    q[2 * j] = src[j] & 0x0F;
                    q[2 * j + 1] = src[j] >> 4;
                }
                for (int i = 0; i < 16; i++) b16[i] = (uint8_t)(q[i] | (q[16 + i] << 4));
                uint8_t *dst = gp + 32 * sz + bl * 256;
                for (int k = 0; k < 4; k++) memcpy(dst + 64 * k + 4 * lr, b16 + 4 * k, 4);
            }
        }
    }
}

static inline float sb_val(uint32_t sb, const uint8_t *p) {
    if (sb == CM_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    return sb == CM_BF16 ? lm_bf16_to_f32(h) : lm_f16_to_f32(h);
}

void cm_r16m_dequant_row(const cm_matrix *w, const void *packed, size_t row, float *out) {
    size_t gs = w->group_size, ng = w->cols / gs, sz = sb_size(w->sb_type), gb = cm_r16m_group_bytes(w);
    size_t lr = row % 16;
    for (size_t g = 0; g < ng; g++) {
        const uint8_t *gp = (const uint8_t *)packed + ((row / 16) * ng + g) * gb;
        float s = sb_val(w->sb_type, gp + lr * sz), b = sb_val(w->sb_type, gp + 16 * sz + lr * sz);
        for (size_t bl = 0; bl < gs / 32; bl++) {
            const uint8_t *blk = gp + 32 * sz + bl * 256;
            float *y = out + g * gs + 32 * bl;
            for (int k = 0; k < 4; k++)
                for (int j = 0; j < 4; j++) {
                    uint8_t q = blk[64 * k + 4 * lr + (size_t)j];
                    y[4 * k + j] = s * (float)(q & 0x0F) + b;
                    y[16 + 4 * k + j] = s * (float)(q >> 4) + b;
                }
        }
    }
}

size_t cm_r16m_act_bytes(size_t cols) { return (2 * cols + cols / 32 * 8 + 63) & ~(size_t)63; }

/* Once per token and product (about a tenth of a prefill's time when written with fmaxf and
 * lrintf calls): plain comparisons and rounding half away from zero, which the compiler turns
 * into vector code. x - x is 0 for finite x and NaN for NaN and Inf. */
void cm_r16m_quantize(const float *x, size_t cols, void *act) {
    size_t nb = cols / 32;
    int8_t *hi = act, *lo = hi + cols;
    float *d = (float *)(void *)(lo + cols), *bx = d + nb;
    for (size_t b = 0; b < nb; b++) {
        const float *xb = x + 32 * b;
        float amax = 0, fin = 0;
        for (int i = 0; i < 32; i++) {
            float a = xb[i] < 0 ? -xb[i] : xb[i];
            amax = a > amax ? a : amax;
            fin += xb[i] - xb[i];
        }
        bool bad = fin != 0 || amax != amax;
        float db = amax / 32512.0f, id = db > 0 && !bad ? 32512.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) {
            float f = bad ? 0.0f : xb[i] * id; /* a bad block's products come out NaN through d */
            f = f > 32512.0f ? 32512.0f : f < -32512.0f ? -32512.0f : f;
            int v = (int)(f + (f < 0 ? -0.5f : 0.5f));
            int l = ((v + 128) & 255) - 128;
            hi[32 * b + (size_t)i] = (int8_t)((v - l) / 256);
            lo[32 * b + (size_t)i] = (int8_t)l;
            sum += v;
        }
        d[b] = bad ? NAN : db;
        bx[b] = d[b] * (float)sum;
    }
}

/* The oracle: the same integer sums and float operations in the same order as the SIMD kernels
 * (fmaf for their fused multiply-adds), so the two agree bit for bit. */
void cm_r16m_gemm_ref(const cm_matrix *w, const void *packed, size_t g0, size_t g1, const uint8_t *act,
                      size_t act_stride, size_t n_tok, float *y, size_t ldy) {
    size_t cols = w->cols, gs = w->group_size, ng = cols / gs, nb = cols / 32, sz = sb_size(w->sb_type);
    size_t gb = cm_r16m_group_bytes(w);
    for (size_t g = g0; g < g1; g++) {
        for (size_t t = 0; t < n_tok; t++) {
            const int8_t *hi = (const int8_t *)(act + t * act_stride), *lo = hi + cols;
            const float *dx = (const float *)(const void *)(lo + cols), *bx = dx + nb;
            float acc[16] = {0};
            for (size_t gi = 0; gi < ng; gi++) {
                const uint8_t *gp = (const uint8_t *)packed + (g * ng + gi) * gb;
                for (size_t bl = 0; bl < gs / 32; bl++) {
                    size_t b = gi * (gs / 32) + bl;
                    const uint8_t *blk = gp + 32 * sz + bl * 256;
                    for (size_t r = 0; r < 16; r++) {
                        int32_t sh = 0, sl = 0;
                        for (int k = 0; k < 4; k++)
                            for (int j = 0; j < 4; j++) {
                                uint8_t q = blk[64 * k + 4 * r + (size_t)j];
                                size_t e0 = 32 * b + 4 * (size_t)k + (size_t)j, e1 = e0 + 16;
                                sh += (q & 0x0F) * hi[e0] + (q >> 4) * hi[e1];
                                sl += (q & 0x0F) * lo[e0] + (q >> 4) * lo[e1];
                            }
                        float sc = sb_val(w->sb_type, gp + r * sz), bi = sb_val(w->sb_type, gp + 16 * sz + r * sz);
                        acc[r] = fmaf((float)(sh * 256 + sl), sc * dx[b], acc[r]);
                        acc[r] = fmaf(bi, bx[b], acc[r]);
                    }
                }
            }
            for (size_t r = 0; r < 16 && g * 16 + r < w->rows; r++) y[t * ldy + g * 16 + r] = acc[r];
        }
    }
}
