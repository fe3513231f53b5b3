/* compute/cpu/quants_r16_ref.c: weights repacked at load with 16 rows interleaved (the R16
 * layout), the reference kernel over them, and their activations.
 * Owns: the R16 layout of Q4_0 rows (what cm_r16_pack writes and every R16 kernel reads), reading
 * one row back, the activation layout of the R16 kernels, and the plain C kernel that is the
 * oracle of quants_r16_avx512.c.
 *
 * Why: a kernel that puts the 16 rows of a group in the 16 lanes of a vector needs no horizontal
 * sums and shares each weight's unpacking among all the tokens of a pass, so one token costs
 * about half the work of the row-at-a-time decode kernels, and each further token of a batch
 * only its multiply-adds: passes of 2 to 16 tokens (decode steps of several conversations) cost
 * in proportion to their tokens. Every token is computed by the same operations in the same
 * order whatever the pass holds, so a conversation's logits are bit-identical whether it runs
 * alone or batched.
 *
 * Layout (types: Q4_0). Rows are cut in groups of 16 (the last one padded with zero rows); per
 * group, per block b of 32 columns (nb = cols / 32), 288 bytes:
 *   f16 d[16]              the scale of each row's block
 *   u8  qs[4][16][4]       qs[k][r] = bytes 4k..4k+3 of row r's 16 quant bytes: their low
 *                          nibbles are elements 4k..4k+3, their high nibbles 16+4k..16+4k+3
 * A group is nb * 288 bytes, groups follow each other: 18 bytes per row and block, as Q4_0.
 *
 * Activations (per token, cm_r16_act_bytes(cols) bytes, 64-byte aligned by the caller):
 *   i8  q[cols]            the Q8_0 quantization of the token (cm_quantize_select's quantizer)
 *   f32 d[nb]              each block's scale (the f16 of Q8_0 widened)
 *   i32 c[nb]              -8 * sum of the block's q (Q4_0's offset of 8 folded in) */
#include "compute/cpu/quants.h"

#include <math.h>

#define R16_BLOCK 288

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

size_t cm_r16_bytes(const cm_matrix *w) {
    if (w->type != CM_Q4_0 || w->cols % 32 || w->rows == 0) return 0;
    return (w->rows + 15) / 16 * (w->cols / 32) * R16_BLOCK;
}

void cm_r16_pack_rows(const cm_matrix *w, void *out, size_t r0, size_t r1) {
    size_t nb = w->cols / 32;
    uint8_t *o = out;
    size_t g0 = r0 / 16, g1 = (r1 + 15) / 16;
    memset(o + g0 * nb * R16_BLOCK, 0, (g1 - g0) * nb * R16_BLOCK);
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
        uint8_t *grp = o + (r / 16) * nb * R16_BLOCK;
        size_t lr = r % 16;
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + 18 * b;
            uint8_t *dst = grp + b * R16_BLOCK;
            memcpy(dst + 2 * lr, blk, 2);
            for (int k = 0; k < 4; k++) memcpy(dst + 32 + 64 * k + 4 * lr, blk + 2 + 4 * k, 4);
        }
    }
}

void cm_r16_pack(const cm_matrix *w, void *out) { cm_r16_pack_rows(w, out, 0, w->rows); }

void cm_r16_dequant_row(const void *packed, size_t cols, size_t row, float *out) {
    size_t nb = cols / 32;
    const uint8_t *grp = (const uint8_t *)packed + (row / 16) * nb * R16_BLOCK;
    size_t lr = row % 16;
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + b * R16_BLOCK;
        float d = lm_f16_to_f32(rd16(blk + 2 * lr));
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 4; j++) {
                uint8_t q = blk[32 + 64 * k + 4 * lr + j];
                out[32 * b + 4 * k + j] = (float)((int)(q & 0x0F) - 8) * d;
                out[32 * b + 16 + 4 * k + j] = (float)((int)(q >> 4) - 8) * d;
            }
    }
}

size_t cm_r16_act_bytes(size_t cols) { return (cols + cols / 32 * 8 + 63) & ~(size_t)63; }

void cm_r16_quantize(const float *x, size_t cols, void *act) {
    size_t nb = cols / 32;
    int8_t *q;
    float *d;
    int32_t *c;
    cm_r16_act_parts(act, cols, &q, &d, &c);
    uint8_t blk[34];
    for (size_t b = 0; b < nb; b++) {
        cm_quantize_ref(CM_Q8_0, x + 32 * b, blk, 32);
        memcpy(q + 32 * b, blk + 2, 32);
        d[b] = lm_f16_to_f32(rd16(blk));
        int32_t s = 0;
        for (int i = 0; i < 32; i++) s += (int8_t)blk[2 + i];
        c[b] = -8 * s;
    }
}

/* The oracle: the same integer sums and the same float operations, in the same order, as the
 * SIMD kernels (fmaf for their fused multiply-add), so the two agree bit for bit. */
void cm_r16_gemm_ref(const void *packed, size_t cols, size_t rows, size_t g0, size_t g1, const uint8_t *act,
                     size_t act_stride, size_t n_tok, float *y, size_t ldy) {
    size_t nb = cols / 32;
    for (size_t g = g0; g < g1; g++) {
        const uint8_t *grp = (const uint8_t *)packed + g * nb * R16_BLOCK;
        for (size_t t = 0; t < n_tok; t++) {
            const int8_t *q = (const int8_t *)(act + t * act_stride);
            const float *dx = (const float *)(act + t * act_stride + cols);
            const int32_t *cx = (const int32_t *)(dx + nb);
            float acc[16] = {0};
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *blk = grp + b * R16_BLOCK;
                for (int r = 0; r < 16; r++) {
                    int32_t s = cx[b];
                    for (int k = 0; k < 4; k++)
                        for (int j = 0; j < 4; j++) {
                            uint8_t w = blk[32 + 64 * k + 4 * r + j];
                            s += (int32_t)(w & 0x0F) * q[32 * b + 4 * k + j] + (int32_t)(w >> 4) * q[32 * b + 16 + 4 * k + j];
                        }
                    float dw = lm_f16_to_f32(rd16(blk + 2 * r));
                    acc[r] = fmaf((float)s, dw * dx[b], acc[r]);
                }
            }
            for (int r = 0; r < 16 && g * 16 + (size_t)r < rows; r++) y[t * ldy + g * 16 + (size_t)r] = acc[r];
        }
    }
}
