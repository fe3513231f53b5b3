/* compute/cpu/quants_neon.c: AArch64 NEON kernels (Apple Silicon, Graviton, Raspberry Pi 4/5).
 * Owns: float row dots (F32, F16, BF16), the Q8_0/Q8_K activation quantizers (byte-identical to
 * cm_quantize_ref), integer row dots of Q8_0, Q4_0, Q5_0, Q2_K..Q6_K against those activations,
 * the prefill tiles (cm_gemm_fn) of Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K and their activation
 * quantizer, dequantizers of the common types, and MLX affine 4/8-bit rows (float dot, and
 * integer decode/prefill against cm_mlx_quantize_x's activations).
 * the R16 (Q4_0) and R16M (MLX 4-bit) kernels over weights repacked at load (SDOT only).
 * Does not own: choosing among them (select.c) or threads (ops.c).
 *
 * The integer dots exist twice: *_neon with widening multiplies (SMULL + SADALP, any ARMv8 CPU)
 * and *_neon_dp with SDOT (FEAT_DotProd: Apple M1 and later, Cortex-A55/A76 and later), chosen
 * at run time from LM_CPU_DOTPROD; the prefill tiles exist only with SDOT (without it ops.c falls
 * back to row dots). Both variants come from the one body at the end of this file, which includes
 * itself once per variant so the two can never drift apart. Only the _dp pass is compiled for
 * armv8.2-a+dotprod (a GCC pragma when the command line does not already enable it), so the rest
 * of the file runs on a plain ARMv8.0 core such as the Cortex-A53 (tests/arm checks both).
 *
 * Block layouts: see quants_ref.c. Every load goes through byte vectors or memcpy, so rows need
 * no alignment. Little-endian only, like every AArch64 system we target. */
#ifndef CM_NEON_BODY

#include "compute/backend.h"
#include "compute/cpu/quants.h"

#ifdef CM_HAVE_NEON_KERNELS
#include <arm_neon.h>

/* ---- scalar helpers ---- */

static inline float f16s(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}
static inline float f32s(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}
static inline float bf16s(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return lm_bf16_to_f32(h);
}
static inline float sb_get(uint32_t sb_type, const void *base, size_t i) {
    const uint8_t *p = base;
    if (sb_type == CM_F16) return f16s(p + 2 * i);
    if (sb_type == CM_BF16) return bf16s(p + 2 * i);
    return f32s(p + 4 * i);
}

static inline float32x4_t ldf(const uint8_t *p) { return vreinterpretq_f32_u8(vld1q_u8(p)); }
static inline int8x16_t lds8(const uint8_t *p) { return vld1q_s8((const int8_t *)p); }

/* The 8 6-bit scales and mins of a Q4_K/Q5_K super-block from their 12 packed bytes (the layout
 * of k4_scale_min in quants_ref.c). */
static inline void k4_scales(const uint8_t *s, int *sc, int *mn) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* The 16 signed 6-bit scales of Q3_K (stored + 32: low 4 bits of scale k in the low nibble of
 * byte k, or the high nibble of byte k - 8 for k >= 8; top 2 bits in bytes 8..11). */
static inline void q3k_scales(const uint8_t *s, int *sc) {
    for (int k = 0; k < 16; k++) {
        int lo = k < 8 ? (s[k] & 0xF) : (s[k - 8] >> 4);
        int hi = (s[8 + (k % 4)] >> (2 * (k / 4))) & 3;
        sc[k] = (lo | (hi << 4)) - 32;
    }
}

/* Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}. */
static inline int q8k_bsum(const uint8_t *y, int g) {
    int16_t v;
    memcpy(&v, y + 260 + 2 * g, 2);
    return v;
}

/* sum of a[i] * b[i] over 16 signed bytes added into the 4 lanes of acc, without SDOT: a product
 * of two bytes fits in 16 bits (at most 128 * 128), pairs of them are added into 32 bits. */
static inline int32x4_t dot16_plain(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

/* ---- float dots (n any length: the block size of these types is 1) ---- */

float cm_dot_f32_neon(const void *row, const float *x, size_t n) {
    const uint8_t *p = row;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, ldf(p + 4 * i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, ldf(p + 4 * i + 16), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, ldf(p + 4 * i + 32), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, ldf(p + 4 * i + 48), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, ldf(p + 4 * i), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += f32s(p + 4 * i) * x[i];
    return s;
}

/* 8 halves at p to two float vectors (FCVTL is base ARMv8; no FP16 arithmetic needed). */
static inline void f16x8(const uint8_t *p, float32x4_t *lo, float32x4_t *hi) {
    float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
    *lo = vcvt_f32_f16(vget_low_f16(h));
    *hi = vcvt_high_f32_f16(h);
}

float cm_dot_f16_neon(const void *row, const float *x, size_t n) {
    const uint8_t *p = row;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t w0, w1, w2, w3;
        f16x8(p + 2 * i, &w0, &w1);
        f16x8(p + 2 * i + 16, &w2, &w3);
        a0 = vfmaq_f32(a0, w0, vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, w1, vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, w2, vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, w3, vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) /* the F32 kernel's tail, so both add in one order */
        a0 = vfmaq_f32(a0, vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p + 2 * i))), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += f16s(p + 2 * i) * x[i];
    return s;
}

/* 8 bfloat16 at p: the top halves of floats. */
static inline void bf16x8(const uint8_t *p, float32x4_t *lo, float32x4_t *hi) {
    uint16x8_t u = vreinterpretq_u16_u8(vld1q_u8(p));
    *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(u), 16));
    *hi = vreinterpretq_f32_u32(vshll_high_n_u16(u, 16));
}

float cm_dot_bf16_neon(const void *row, const float *x, size_t n) {
    const uint8_t *p = row;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t w0, w1, w2, w3;
        bf16x8(p + 2 * i, &w0, &w1);
        bf16x8(p + 2 * i + 16, &w2, &w3);
        a0 = vfmaq_f32(a0, w0, vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, w1, vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, w2, vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, w3, vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) /* the F32 kernel's tail, so both add in one order */
        a0 = vfmaq_f32(a0, vreinterpretq_f32_u32(vshll_n_u16(vreinterpret_u16_u8(vld1_u8(p + 2 * i)), 16)),
                       vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += bf16s(p + 2 * i) * x[i];
    return s;
}

/* ---- activation quantizers, byte-identical to cm_quantize_ref ---- */

/* max |x| over n floats (a multiple of 4); FMAXNM ignores a NaN like fmaxf does. */
static inline float absmax(const float *x, size_t n) {
    float32x4_t m = vdupq_n_f32(0);
    for (size_t i = 0; i < n; i += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    return vmaxnmvq_f32(m);
}

/* 16 floats times id to int8: FCVTAS rounds half away from zero like roundf, gives 0 for NaN and
 * saturates, which is the reference's sat_int; then the clamp to [-127, 127]. */
static inline int8x16_t quant16(const float *x, float32x4_t vid) {
    int32x4_t a = vcvtaq_s32_f32(vmulq_f32(vld1q_f32(x), vid));
    int32x4_t b = vcvtaq_s32_f32(vmulq_f32(vld1q_f32(x + 4), vid));
    int32x4_t c = vcvtaq_s32_f32(vmulq_f32(vld1q_f32(x + 8), vid));
    int32x4_t d = vcvtaq_s32_f32(vmulq_f32(vld1q_f32(x + 12), vid));
    const int16x8_t lo = vdupq_n_s16(-127);
    int16x8_t ab = vmaxq_s16(vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)), lo);
    int16x8_t cd = vmaxq_s16(vcombine_s16(vqmovn_s32(c), vqmovn_s32(d)), lo);
    return vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd));
}

void cm_quantize_q8_0_neon(const float *x, void *out, size_t n) {
    uint8_t *b = out;
    for (size_t i = 0; i < n / 32; i++, x += 32, b += 34) {
        float d = absmax(x, 32) / 127.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t h = lm_f32_to_f16(d);
        memcpy(b, &h, 2);
        float32x4_t vid = vdupq_n_f32(id);
        vst1q_s8((int8_t *)(b + 2), quant16(x, vid));
        vst1q_s8((int8_t *)(b + 18), quant16(x + 16, vid));
    }
}

/* cm_r16_quantize (quants_r16_ref.c's activation layout) in one pass a block: the bytes of
 * cm_quantize_q8_0_neon, the widened f16 scale and -8 times the bytes' sum. */
void cm_r16_quantize_neon(const float *x, size_t cols, void *act) {
    size_t nb = cols / 32;
    int8_t *q;
    float *d;
    int32_t *c;
    cm_r16_act_parts(act, cols, &q, &d, &c);
    for (size_t b = 0; b < nb; b++) {
        float dd = absmax(x + 32 * b, 32) / 127.0f, id = dd ? 1.0f / dd : 0.0f;
        d[b] = lm_f16_to_f32(lm_f32_to_f16(dd));
        float32x4_t vid = vdupq_n_f32(id);
        int8x16_t q0 = quant16(x + 32 * b, vid), q1 = quant16(x + 32 * b + 16, vid);
        vst1q_s8(q + 32 * b, q0);
        vst1q_s8(q + 32 * b + 16, q1);
        c[b] = -8 * (vaddlvq_s8(q0) + vaddlvq_s8(q1));
    }
}

void cm_quantize_q8_k_neon(const float *x, void *out, size_t n) {
    uint8_t *b = out;
    for (size_t i = 0; i < n / 256; i++, x += 256, b += 292) {
        float d = absmax(x, 256) / 127.0f, id = d ? 1.0f / d : 0.0f;
        memcpy(b, &d, 4);
        float32x4_t vid = vdupq_n_f32(id);
        int16_t sums[16];
        for (int g = 0; g < 16; g++) {
            int8x16_t q = quant16(x + 16 * g, vid);
            vst1q_s8((int8_t *)(b + 4 + 16 * g), q);
            sums[g] = vaddlvq_s8(q);
        }
        memcpy(b + 260, sums, sizeof sums);
    }
}

/* ---- dequantization: the reference's products in its order (d * q, then - m), so results are
 * identical when neither side is contracted into FMA ---- */

/* 16 signed / unsigned bytes to 4 float vectors. */
static inline void s8x16_f32(int8x16_t v, float32x4_t f[4]) {
    int16x8_t a = vmovl_s8(vget_low_s8(v)), b = vmovl_high_s8(v);
    f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(a)));
    f[1] = vcvtq_f32_s32(vmovl_high_s16(a));
    f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(b)));
    f[3] = vcvtq_f32_s32(vmovl_high_s16(b));
}
static inline void u8x16_f32(uint8x16_t v, float32x4_t f[4]) {
    uint16x8_t a = vmovl_u8(vget_low_u8(v)), b = vmovl_high_u8(v);
    f[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(a)));
    f[1] = vcvtq_f32_u32(vmovl_high_u16(a));
    f[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(b)));
    f[3] = vcvtq_f32_u32(vmovl_high_u16(b));
}
/* y[0..15] = q * d for signed q. */
static inline void store_s8(float *y, int8x16_t v, float d) {
    float32x4_t f[4];
    s8x16_f32(v, f);
    for (int k = 0; k < 4; k++) vst1q_f32(y + 4 * k, vmulq_n_f32(f[k], d));
}
/* y[0..15] = d * q - m for unsigned q. */
static inline void store_u8(float *y, uint8x16_t v, float d, float m) {
    float32x4_t f[4], vm = vdupq_n_f32(m);
    u8x16_f32(v, f);
    for (int k = 0; k < 4; k++) vst1q_f32(y + 4 * k, vsubq_f32(vmulq_n_f32(f[k], d), vm));
}

void cm_dequant_f16_neon(const void *row, float *y, size_t n) {
    const uint8_t *p = row;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t lo, hi;
        f16x8(p + 2 * i, &lo, &hi);
        vst1q_f32(y + i, lo);
        vst1q_f32(y + i + 4, hi);
    }
    for (; i < n; i++) y[i] = f16s(p + 2 * i);
}

void cm_dequant_bf16_neon(const void *row, float *y, size_t n) {
    const uint8_t *p = row;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t lo, hi;
        bf16x8(p + 2 * i, &lo, &hi);
        vst1q_f32(y + i, lo);
        vst1q_f32(y + i + 4, hi);
    }
    for (; i < n; i++) y[i] = bf16s(p + 2 * i);
}

void cm_dequant_q8_0_neon(const void *row, float *y, size_t n) {
    const uint8_t *b = row;
    for (size_t i = 0; i < n / 32; i++, b += 34, y += 32) {
        float d = f16s(b);
        store_s8(y, lds8(b + 2), d);
        store_s8(y + 16, lds8(b + 18), d);
    }
}

void cm_dequant_q4_0_neon(const void *row, float *y, size_t n) {
    const uint8_t *b = row;
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    const int8x16_t s8 = vdupq_n_s8(8);
    for (size_t i = 0; i < n / 32; i++, b += 18, y += 32) {
        float d = f16s(b);
        uint8x16_t v = vld1q_u8(b + 2);
        store_s8(y, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)), s8), d);
        store_s8(y + 16, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), s8), d);
    }
}

/* Q4_K and Q5_K (five: the 5th bit from qh, bit j of qh[l] for sub-block j). */
static void dequant_k45(const uint8_t *b, float *y, bool five) {
    float d = f16s(b), dmin = f16s(b + 2);
    int sc[8], mn[8];
    k4_scales(b + 4, sc, mn);
    const uint8_t *qh = b + 16, *qs = b + (five ? 48 : 16);
    const uint8x16_t m4 = vdupq_n_u8(0xF), b4 = vdupq_n_u8(0x10);
    for (int j = 0; j < 8; j += 2, qs += 32, y += 64) {
        float d1 = d * (float)sc[j], m1 = dmin * (float)mn[j];
        float d2 = d * (float)sc[j + 1], m2 = dmin * (float)mn[j + 1];
        for (int h = 0; h < 2; h++) {
            uint8x16_t v = vld1q_u8(qs + 16 * h);
            uint8x16_t lo = vandq_u8(v, m4), hi = vshrq_n_u8(v, 4);
            if (five) {
                uint8x16_t vh = vld1q_u8(qh + 16 * h);
                lo = vorrq_u8(lo, vandq_u8(vtstq_u8(vh, vdupq_n_u8((uint8_t)(1u << j))), b4));
                hi = vorrq_u8(hi, vandq_u8(vtstq_u8(vh, vdupq_n_u8((uint8_t)(2u << j))), b4));
            }
            store_u8(y + 16 * h, lo, d1, m1);
            store_u8(y + 32 + 16 * h, hi, d2, m2);
        }
    }
}

void cm_dequant_q4_k_neon(const void *row, float *y, size_t n) {
    const uint8_t *b = row;
    for (size_t i = 0; i < n / 256; i++) dequant_k45(b + 144 * i, y + 256 * i, false);
}

void cm_dequant_q5_k_neon(const void *row, float *y, size_t n) {
    const uint8_t *b = row;
    for (size_t i = 0; i < n / 256; i++) dequant_k45(b + 176 * i, y + 256 * i, true);
}

/* The four 6-bit quants (minus 32) of 16 consecutive l in a Q6_K half: element l from the low
 * nibble of ql[l] and bits 0-1 of qh[l], l+32 from ql[l+32] and bits 2-3, l+64 from the high
 * nibble of ql[l] and bits 4-5, l+96 from the high nibble of ql[l+32] and bits 6-7. */
static inline void q6_unpack16(const uint8_t *ql, const uint8_t *qh, int8x16_t q[4]) {
    const uint8x16_t m4 = vdupq_n_u8(0xF), m30 = vdupq_n_u8(0x30);
    const int8x16_t s32 = vdupq_n_s8(32);
    uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 32), h = vld1q_u8(qh);
    uint8x16_t u0 = vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(h, 4), m30));
    uint8x16_t u1 = vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(h, 2), m30));
    uint8x16_t u2 = vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(h, m30));
    uint8x16_t u3 = vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(h, 2), m30));
    q[0] = vsubq_s8(vreinterpretq_s8_u8(u0), s32);
    q[1] = vsubq_s8(vreinterpretq_s8_u8(u1), s32);
    q[2] = vsubq_s8(vreinterpretq_s8_u8(u2), s32);
    q[3] = vsubq_s8(vreinterpretq_s8_u8(u3), s32);
}

void cm_dequant_q6_k_neon(const void *row, float *y, size_t n) {
    const uint8_t *b = row;
    for (size_t i = 0; i < n / 256; i++, b += 210) {
        float d = f16s(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b + 64 * half, *qh = b + 128 + 32 * half;
            float *yh = y + 256 * i + 128 * half;
            for (int k = 0; k < 2; k++) {
                int8x16_t q[4];
                q6_unpack16(ql + 16 * k, qh + 16 * k, q);
                for (int s = 0; s < 4; s++)
                    store_s8(yh + 32 * s + 16 * k, q[s], d * (float)sc[8 * half + 2 * s + k]);
            }
        }
    }
}

/* ---- MLX affine rows, bits 4 and 8, group_size a multiple of 32 (cm_mlx_dot_select checks):
 * per group s * sum(q x) + b * sum(x). 4-bit: byte j holds element 2j in its low nibble and
 * 2j+1 in its high one, so LD2 splits x into the matching even and odd lanes. ---- */

float cm_mlx_dot_neon(const cm_matrix *m, size_t row, const float *x) {
    const uint8_t *p = (const uint8_t *)m->data + row * m->row_bytes;
    size_t gs = m->group_size, n_groups = m->cols / gs;
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    float32x4_t acc = vdupq_n_f32(0);
    for (size_t g = 0; g < n_groups; g++) {
        float s = sb_get(m->sb_type, m->scales, row * n_groups + g);
        float bias = sb_get(m->sb_type, m->biases, row * n_groups + g);
        float32x4_t qx = vdupq_n_f32(0), qx2 = qx, sx = qx, sx2 = qx;
        const float *xg = x + g * gs;
        if (m->bits == 4) {
            const uint8_t *pg = p + g * gs / 2;
            for (size_t k = 0; k < gs; k += 32) {
                uint8x16_t v = vld1q_u8(pg + k / 2);
                float32x4_t lo[4], hi[4];
                u8x16_f32(vandq_u8(v, m4), lo);
                u8x16_f32(vshrq_n_u8(v, 4), hi);
                for (int t = 0; t < 4; t++) {
                    float32x4x2_t xv = vld2q_f32(xg + k + 8 * t);
                    qx = vfmaq_f32(qx, lo[t], xv.val[0]);
                    qx2 = vfmaq_f32(qx2, hi[t], xv.val[1]);
                    sx = vaddq_f32(sx, xv.val[0]);
                    sx2 = vaddq_f32(sx2, xv.val[1]);
                }
            }
        } else {
            const uint8_t *pg = p + g * gs;
            for (size_t k = 0; k < gs; k += 16) {
                float32x4_t q[4];
                u8x16_f32(vld1q_u8(pg + k), q);
                for (int t = 0; t < 4; t += 2) {
                    float32x4_t x0 = vld1q_f32(xg + k + 4 * t), x1 = vld1q_f32(xg + k + 4 * t + 4);
                    qx = vfmaq_f32(qx, q[t], x0);
                    qx2 = vfmaq_f32(qx2, q[t + 1], x1);
                    sx = vaddq_f32(sx, x0);
                    sx2 = vaddq_f32(sx2, x1);
                }
            }
        }
        acc = vfmaq_n_f32(acc, vaddq_f32(qx, qx2), s);
        acc = vfmaq_n_f32(acc, vaddq_f32(sx, sx2), bias);
    }
    return vaddvq_f32(acc);
}

/* ---- MLX integer decode: rows of bits 4 or 8 against the int16 activation cm_mlx_quantize_x
 * prepares (quants.h: float d[nb], gqsum[ng], then int16 q[cols] at cm_mlx_xq_qoff, 4-bit blocks
 * of 32 as their 16 even elements then their 16 odd ones). Per group:
 * s * sum_b d_b * sum(q_w q_x) + bias * gqsum. Widening 16-bit multiply-adds (SMLAL), so one
 * version serves every ARMv8 CPU; a block of 32 sums to at most 32 * 255 * 32767 < 2^31. ---- */

/* The 32 weights of block b of a row as 4 int16x8 in the activation's order. */
static inline void mlx_unpack32(const uint8_t *w, size_t b, uint32_t bits, int16x8_t q[4]) {
    uint8x16_t lo, hi;
    if (bits == 4) {
        uint8x16_t v = vld1q_u8(w + 16 * b);
        lo = vandq_u8(v, vdupq_n_u8(0xF));
        hi = vshrq_n_u8(v, 4);
    } else {
        lo = vld1q_u8(w + 32 * b);
        hi = vld1q_u8(w + 32 * b + 16);
    }
    q[0] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(lo)));
    q[1] = vreinterpretq_s16_u16(vmovl_high_u8(lo));
    q[2] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(hi)));
    q[3] = vreinterpretq_s16_u16(vmovl_high_u8(hi));
}

static inline int32_t mlx_dot32(const int16x8_t w[4], const int16_t *x) {
    int32x4_t a = vdupq_n_s32(0), b = a;
    for (int k = 0; k < 4; k++) {
        int16x8_t xv = vld1q_s16(x + 8 * k);
        a = vmlal_s16(a, vget_low_s16(w[k]), vget_low_s16(xv));
        b = vmlal_high_s16(b, w[k], xv);
    }
    return vaddvq_s32(vaddq_s32(a, b));
}

float cm_mlx_dotq_neon(const cm_matrix *m, size_t row, const void *xq) {
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, bpg = m->group_size / 32;
    const uint8_t *base = xq;
    const float *d = (const float *)(const void *)base, *gqsum = d + nb;
    const int16_t *q = (const int16_t *)(const void *)(base + cm_mlx_xq_qoff(m));
    const uint8_t *w = (const uint8_t *)m->data + row * m->row_bytes;
    float acc = 0;
    for (size_t g = 0; g < ng; g++) {
        float s = sb_get(m->sb_type, m->scales, row * ng + g);
        float bias = sb_get(m->sb_type, m->biases, row * ng + g);
        float qx = 0;
        for (size_t k = 0; k < bpg; k++) {
            size_t b = g * bpg + k;
            int16x8_t wq[4];
            mlx_unpack32(w, b, m->bits, wq);
            qx += d[b] * (float)mlx_dot32(wq, q + 32 * b);
        }
        acc += s * qx + bias * gqsum[g];
    }
    return acc;
}

/* Prefill: tokens in tiles of MLX_TT, so each unpacked weight block serves a whole tile. */
enum { MLX_TT = 16 };

void cm_mlx_gemmq_neon(const cm_matrix *m, size_t r0, size_t r1, const void *xq, size_t xq_stride,
                       size_t n, float *y, size_t ldy) {
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, bpg = m->group_size / 32;
    size_t qoff = cm_mlx_xq_qoff(m);
    const uint8_t *base = xq;
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *w = (const uint8_t *)m->data + r * m->row_bytes;
        for (size_t t0 = 0; t0 < n; t0 += MLX_TT) {
            size_t nt = n - t0 < MLX_TT ? n - t0 : MLX_TT;
            float acc[MLX_TT] = {0};
            for (size_t g = 0; g < ng; g++) {
                float s = sb_get(m->sb_type, m->scales, r * ng + g);
                float bias = sb_get(m->sb_type, m->biases, r * ng + g);
                float qx[MLX_TT] = {0};
                for (size_t k = 0; k < bpg; k++) {
                    size_t b = g * bpg + k;
                    int16x8_t wq[4];
                    mlx_unpack32(w, b, m->bits, wq);
                    for (size_t t = 0; t < nt; t++) {
                        const uint8_t *xt = base + (t0 + t) * xq_stride;
                        const float *d = (const float *)(const void *)xt;
                        const int16_t *q = (const int16_t *)(const void *)(xt + qoff);
                        qx[t] += d[b] * (float)mlx_dot32(wq, q + 32 * b);
                    }
                }
                for (size_t t = 0; t < nt; t++) {
                    const float *gq = (const float *)(const void *)(base + (t0 + t) * xq_stride) + nb;
                    acc[t] += s * qx[t] + bias * gq[g];
                }
            }
            for (size_t t = 0; t < nt; t++) y[(t0 + t) * ldy + r] = acc[t];
        }
    }
}

/* ---- prefill activations (quants.h, cm_gemm_act): each block of 32 of each token quantized
 * exactly as cm_quantize_ref(CM_Q8_0) does, stored 4 bytes per token per group of 4 elements,
 * with the scale, minus the sums of the two halves, and d times the block's sum. ---- */

void cm_gemm_prep_neon(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1) {
    size_t nb = a->cols / 32;
    for (size_t g = g0; g < g1; g++) {
        uint8_t *grp = a->mem + g * nb * CM_GEMM_ACT_BLOCK;
        size_t nt = LM_MIN((size_t)CM_GEMM_TOK, a->n - g * CM_GEMM_TOK);
        if (nt < CM_GEMM_TOK) memset(grp, 0, nb * CM_GEMM_ACT_BLOCK); /* padding lanes give 0 */
        for (size_t t = 0; t < nt; t++) {
            const float *xt = x + (g * CM_GEMM_TOK + t) * ldx;
            uint8_t *blk = grp;
            for (size_t b = 0; b < nb; b++, blk += CM_GEMM_ACT_BLOCK) {
                const float *xb = xt + 32 * b;
                float d = absmax(xb, 32) / 127.0f, id = d ? 1.0f / d : 0.0f;
                d = lm_f16_to_f32(lm_f32_to_f16(d)); /* the Q8_0 block keeps its scale as f16 */
                float32x4_t vid = vdupq_n_f32(id);
                int8x16_t lo = quant16(xb, vid), hi = quant16(xb + 16, vid);
                int8_t q[32];
                vst1q_s8(q, lo);
                vst1q_s8(q + 16, hi);
                for (int k = 0; k < 8; k++) memcpy(blk + 64 * k + 4 * t, q + 4 * k, 4);
                int32_t s0 = vaddlvq_s8(lo), s1 = vaddlvq_s8(hi), n0 = -s0, n1 = -s1;
                float xs = d * (float)(s0 + s1);
                memcpy(blk + 512 + 4 * t, &d, 4);
                memcpy(blk + 576 + 4 * t, &n0, 4);
                memcpy(blk + 640 + 4 * t, &n1, 4);
                memcpy(blk + 704 + 4 * t, &xs, 4);
            }
        }
    }
}

/* ---- integer kernels, once per variant (see the top of the file) ---- */

#define CM_NEON_BODY 1
#define DOT16(acc, a, b) dot16_plain(acc, a, b)
#define KNAME(f) f##_neon
#include "quants_neon.c"
#undef DOT16
#undef KNAME

#ifdef CM_HAVE_NEON_DOTPROD
#if !defined(__ARM_FEATURE_DOTPROD)
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
#define DOT16(acc, a, b) vdotq_s32(acc, a, b)
#define KNAME(f) f##_neon_dp
#define CM_NEON_GEMM 1
#include "quants_neon.c"
#undef CM_NEON_GEMM
#undef DOT16
#undef KNAME
#if !defined(__ARM_FEATURE_DOTPROD)
#pragma GCC pop_options
#endif
#endif /* CM_HAVE_NEON_DOTPROD */

#endif /* CM_HAVE_NEON_KERNELS */

#else /* CM_NEON_BODY: the integer kernels; DOT16 and KNAME come from the includer. */

/* The integer sums of one weight block of 32 against one Q8_0 activation block y. */

/* Q8_0 {f16 d; i8 qs[32]}. */
static inline int32x4_t KNAME(blk_q8_0)(const uint8_t *w, const uint8_t *y) {
    int32x4_t s = DOT16(vdupq_n_s32(0), lds8(w + 2), lds8(y + 2));
    return DOT16(s, lds8(w + 18), lds8(y + 18));
}

/* Q4_0: (q - 8) in -8..7, low nibbles elements 0..15, high 16..31. */
static inline int32x4_t KNAME(blk_q4_0)(const uint8_t *w, const uint8_t *y) {
    uint8x16_t v = vld1q_u8(w + 2);
    int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0xF))), vdupq_n_s8(8));
    int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
    int32x4_t s = DOT16(vdupq_n_s32(0), lo, lds8(y + 2));
    return DOT16(s, hi, lds8(y + 18));
}

/* Q5_0: (q - 16) in -16..15; bit j of the 32-bit qh is the 5th bit of element j, spread to bytes
 * by broadcasting each qh byte over 8 lanes and testing one bit per lane. */
static inline int32x4_t KNAME(blk_q5_0)(const uint8_t *w, const uint8_t *y) {
    const uint8x16_t bit = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t idx_lo = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    const uint8x16_t idx_hi = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    const uint8x16_t m4 = vdupq_n_u8(0xF), b4 = vdupq_n_u8(0x10);
    uint32_t qh;
    memcpy(&qh, w + 2, 4);
    uint8x16_t h = vreinterpretq_u8_u32(vdupq_n_u32(qh));
    uint8x16_t hl = vandq_u8(vtstq_u8(vqtbl1q_u8(h, idx_lo), bit), b4);
    uint8x16_t hh = vandq_u8(vtstq_u8(vqtbl1q_u8(h, idx_hi), bit), b4);
    uint8x16_t v = vld1q_u8(w + 6);
    int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, m4), hl)), vdupq_n_s8(16));
    int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), hh)), vdupq_n_s8(16));
    int32x4_t s = DOT16(vdupq_n_s32(0), lo, lds8(y + 2));
    return DOT16(s, hi, lds8(y + 18));
}

/* Rows of blocks of 32 (wb bytes each, f16 scale first) x Q8_0: d_w * d_x * the block's integer
 * sum, two blocks per step into two accumulators so the multiply-adds overlap. */
#define DOTQ32(type, wb)                                                                   \
    float KNAME(cm_dotq_##type)(const void *row, const void *xq, size_t n) {                     \
        const uint8_t *w = row, *y = xq;                                                         \
        size_t nb = n / 32, i = 0;                                                               \
        float32x4_t a0 = vdupq_n_f32(0), a1 = a0;                                                \
        for (; i + 2 <= nb; i += 2, w += 2 * (wb), y += 68) {                                    \
            a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(KNAME(blk_##type)(w, y)), f16s(w) * f16s(y));     \
            a1 = vfmaq_n_f32(a1, vcvtq_f32_s32(KNAME(blk_##type)(w + (wb), y + 34)),              \
                             f16s(w + (wb)) * f16s(y + 34));                                     \
        }                                                                                        \
        if (i < nb) a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(KNAME(blk_##type)(w, y)), f16s(w) * f16s(y)); \
        return vaddvq_f32(vaddq_f32(a0, a1));                                                    \
    }
DOTQ32(q8_0, 34)
DOTQ32(q4_0, 18)
DOTQ32(q5_0, 22)
#undef DOTQ32

/* Q4_K / Q5_K row x Q8_K: d*yd * sum_j sc_j sum(q q8) - dmin*yd * sum_j m_j sum(q8), the sums of
 * q8 coming from the activation's bsums. The quants (0..15 or 0..31) are valid signed bytes. */
static inline float KNAME(dotq_k45)(const uint8_t *w, const uint8_t *y, bool five) {
    float yd = f32s(y), d = f16s(w) * yd, dmin = f16s(w + 2) * yd;
    int sc[8], mn[8];
    k4_scales(w + 4, sc, mn);
    int summ = 0;
    for (int j = 0; j < 8; j++) summ += mn[j] * (q8k_bsum(y, 2 * j) + q8k_bsum(y, 2 * j + 1));
    const uint8_t *qh = w + 16, *qs = w + (five ? 48 : 16), *q8 = y + 4;
    const uint8x16_t m4 = vdupq_n_u8(0xF), b4 = vdupq_n_u8(0x10);
    uint8x16_t h0 = vdupq_n_u8(0), h1 = h0;
    if (five) {
        h0 = vld1q_u8(qh);
        h1 = vld1q_u8(qh + 16);
    }
    int32x4_t isum = vdupq_n_s32(0);
    for (int j = 0; j < 8; j += 2, qs += 32, q8 += 64) {
        uint8x16_t v0 = vld1q_u8(qs), v1 = vld1q_u8(qs + 16);
        uint8x16_t l0 = vandq_u8(v0, m4), l1 = vandq_u8(v1, m4);
        uint8x16_t u0 = vshrq_n_u8(v0, 4), u1 = vshrq_n_u8(v1, 4);
        if (five) {
            uint8x16_t bl = vdupq_n_u8((uint8_t)(1u << j)), bh = vdupq_n_u8((uint8_t)(2u << j));
            l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(h0, bl), b4));
            l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(h1, bl), b4));
            u0 = vorrq_u8(u0, vandq_u8(vtstq_u8(h0, bh), b4));
            u1 = vorrq_u8(u1, vandq_u8(vtstq_u8(h1, bh), b4));
        }
        int32x4_t s0 = DOT16(vdupq_n_s32(0), vreinterpretq_s8_u8(l0), lds8(q8));
        s0 = DOT16(s0, vreinterpretq_s8_u8(l1), lds8(q8 + 16));
        int32x4_t s1 = DOT16(vdupq_n_s32(0), vreinterpretq_s8_u8(u0), lds8(q8 + 32));
        s1 = DOT16(s1, vreinterpretq_s8_u8(u1), lds8(q8 + 48));
        isum = vmlaq_n_s32(isum, s0, sc[j]);
        isum = vmlaq_n_s32(isum, s1, sc[j + 1]);
    }
    return d * (float)vaddvq_s32(isum) - dmin * (float)summ;
}

float KNAME(cm_dotq_q4_k)(const void *row, const void *xq, size_t n) {
    const uint8_t *w = row, *y = xq;
    float acc = 0;
    for (size_t i = 0; i < n / 256; i++) acc += KNAME(dotq_k45)(w + 144 * i, y + 292 * i, false);
    return acc;
}

float KNAME(cm_dotq_q5_k)(const void *row, const void *xq, size_t n) {
    const uint8_t *w = row, *y = xq;
    float acc = 0;
    for (size_t i = 0; i < n / 256; i++) acc += KNAME(dotq_k45)(w + 176 * i, y + 292 * i, true);
    return acc;
}

/* Q2_K row x Q8_K. Q2_K {u8 scales[16]; u8 qs[64]; f16 d, dmin}: element 128h + 32j + 16k + l
 * (sub-block 8h + 2j + k) is (qs[32h + 16k + l] >> 2j) & 3; its scale byte holds a 4-bit scale
 * (low) and min (high): d*yd * sum_s sc_s sum(q q8) - dmin*yd * sum_s m_s bsum_s. */
float KNAME(cm_dotq_q2_k)(const void *row, const void *xq, size_t n) {
    const uint8_t *w = row, *y = xq;
    const uint8x16_t m3 = vdupq_n_u8(3);
    float acc = 0;
    for (size_t i = 0; i < n / 256; i++, w += 84, y += 292) {
        float yd = f32s(y), d = f16s(w + 80) * yd, dmin = f16s(w + 82) * yd;
        int msum = 0;
        for (int sb = 0; sb < 16; sb++) msum += (w[sb] >> 4) * q8k_bsum(y, sb);
        int32x4_t isum = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            uint8x16_t v0 = vld1q_u8(w + 16 + 32 * h), v1 = vld1q_u8(w + 32 + 32 * h);
            for (int j = 0; j < 4; j++) {
                const uint8_t *q8 = y + 4 + 128 * h + 32 * j;
                const int8x16_t shr = vdupq_n_s8((int8_t)(-2 * j)); /* USHL by -2j: >> 2j */
                uint8x16_t u0 = vshlq_u8(v0, shr), u1 = vshlq_u8(v1, shr);
                int32x4_t t0 = DOT16(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(u0, m3)), lds8(q8));
                int32x4_t t1 = DOT16(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(u1, m3)), lds8(q8 + 16));
                isum = vmlaq_n_s32(isum, t0, w[8 * h + 2 * j] & 0xF);
                isum = vmlaq_n_s32(isum, t1, w[8 * h + 2 * j + 1] & 0xF);
            }
        }
        acc += d * (float)vaddvq_s32(isum) - dmin * (float)msum;
    }
    return acc;
}

/* Q3_K row x Q8_K. Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}: element
 * 128h + 32j + 16k + l is ((qs[32h + 16k + l] >> 2j) & 3) - 4, plus 4 when bit 4h + j of
 * hmask[16k + l] is set: -4..3, a signed byte. d*yd * sum_s sc_s sum(q q8). */
float KNAME(cm_dotq_q3_k)(const void *row, const void *xq, size_t n) {
    const uint8_t *w = row, *y = xq;
    const uint8x16_t m3 = vdupq_n_u8(3), k4 = vdupq_n_u8(4);
    const int8x16_t s4 = vdupq_n_s8(4);
    float acc = 0;
    for (size_t i = 0; i < n / 256; i++, w += 110, y += 292) {
        int sc[16];
        q3k_scales(w + 96, sc);
        uint8x16_t h0 = vld1q_u8(w), h1 = vld1q_u8(w + 16);
        int32x4_t isum = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
            uint8x16_t v0 = vld1q_u8(w + 32 + 32 * h), v1 = vld1q_u8(w + 48 + 32 * h);
            for (int j = 0; j < 4; j++) {
                const uint8_t *q8 = y + 4 + 128 * h + 32 * j;
                const int8x16_t shr = vdupq_n_s8((int8_t)(-2 * j)); /* USHL by -2j: >> 2j */
                uint8x16_t u0 = vshlq_u8(v0, shr), u1 = vshlq_u8(v1, shr);
                uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << (4 * h + j)));
                u0 = vorrq_u8(vandq_u8(u0, m3), vandq_u8(vtstq_u8(h0, bit), k4));
                u1 = vorrq_u8(vandq_u8(u1, m3), vandq_u8(vtstq_u8(h1, bit), k4));
                int32x4_t t0 = DOT16(vdupq_n_s32(0), vsubq_s8(vreinterpretq_s8_u8(u0), s4), lds8(q8));
                int32x4_t t1 = DOT16(vdupq_n_s32(0), vsubq_s8(vreinterpretq_s8_u8(u1), s4), lds8(q8 + 16));
                isum = vmlaq_n_s32(isum, t0, sc[8 * h + 2 * j]);
                isum = vmlaq_n_s32(isum, t1, sc[8 * h + 2 * j + 1]);
            }
        }
        acc += f16s(w + 108) * f32s(y) * (float)vaddvq_s32(isum);
    }
    return acc;
}

/* Q6_K row x Q8_K: d*yd * sum over the 16 sub-blocks of 16 of sc * sum((q - 32) q8). */
float KNAME(cm_dotq_q6_k)(const void *row, const void *xq, size_t n) {
    const uint8_t *w = row, *y = xq;
    float acc = 0;
    for (size_t i = 0; i < n / 256; i++, w += 210, y += 292) {
        const int8_t *sc = (const int8_t *)(w + 192);
        int32x4_t isum = vdupq_n_s32(0);
        for (int half = 0; half < 2; half++) {
            const uint8_t *q8 = y + 4 + 128 * half;
            for (int k = 0; k < 2; k++) {
                int8x16_t q[4];
                q6_unpack16(w + 64 * half + 16 * k, w + 128 + 32 * half + 16 * k, q);
                for (int s = 0; s < 4; s++) {
                    int32x4_t t = DOT16(vdupq_n_s32(0), q[s], lds8(q8 + 32 * s + 16 * k));
                    isum = vmlaq_n_s32(isum, t, sc[8 * half + 2 * s + k]);
                }
            }
        }
        acc += f16s(w + 208) * f32s(y) * (float)vaddvq_s32(isum);
    }
    return acc;
}

#ifdef CM_NEON_GEMM
/* ---- prefill tiles (SDOT only): 2 rows x 16 tokens. Per block of 32, each row gives 32 signed
 * bytes, the scale of elements 0..15 and of 16..31 (equal but for Q6_K) and a min (K types);
 * SDOT by lane multiplies 4 of its bytes with 4 bytes of 4 tokens at once, which is exactly the
 * activation layout. Value of the block: d0 * sum_lo + d1 * sum_hi (times the token's scale)
 * minus min * xs. ---- */

typedef struct {
    int8x16_t q0, q1;
    float d0, d1, m;
} gemm_wblk;

/* Block b (of 32) of a row of type. */
static inline __attribute__((always_inline)) void gemm_get(uint32_t type, const uint8_t *row, size_t b,
                                                           gemm_wblk *o) {
    o->m = 0;
    switch (type) {
    case CM_Q8_0: {
        const uint8_t *p = row + 34 * b;
        o->q0 = lds8(p + 2);
        o->q1 = lds8(p + 18);
        o->d0 = o->d1 = f16s(p);
        break;
    }
    case CM_Q4_0: {
        const uint8_t *p = row + 18 * b;
        uint8x16_t v = vld1q_u8(p + 2);
        o->q0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0xF))), vdupq_n_s8(8));
        o->q1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
        o->d0 = o->d1 = f16s(p);
        break;
    }
    case CM_Q5_0: {
        const uint8_t *p = row + 22 * b;
        const uint8x16_t bit = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t idx_lo = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
        const uint8x16_t idx_hi = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
        uint32_t qh;
        memcpy(&qh, p + 2, 4);
        uint8x16_t h = vreinterpretq_u8_u32(vdupq_n_u32(qh)), v = vld1q_u8(p + 6);
        uint8x16_t hl = vandq_u8(vtstq_u8(vqtbl1q_u8(h, idx_lo), bit), vdupq_n_u8(0x10));
        uint8x16_t hh = vandq_u8(vtstq_u8(vqtbl1q_u8(h, idx_hi), bit), vdupq_n_u8(0x10));
        o->q0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, vdupq_n_u8(0xF)), hl)), vdupq_n_s8(16));
        o->q1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), hh)), vdupq_n_s8(16));
        o->d0 = o->d1 = f16s(p);
        break;
    }
    case CM_Q4_K:
    case CM_Q5_K: {
        bool five = type == CM_Q5_K;
        const uint8_t *p = row + (five ? 176 : 144) * (b / 8);
        int j = (int)(b % 8), sc[8], mn[8];
        k4_scales(p + 4, sc, mn);
        const uint8_t *qs = p + (five ? 48 : 16) + 32 * (j / 2);
        const int8x16_t sh = vdupq_n_s8((int8_t)(j & 1 ? -4 : 0));
        uint8x16_t u0 = vandq_u8(vshlq_u8(vld1q_u8(qs), sh), vdupq_n_u8(0xF));
        uint8x16_t u1 = vandq_u8(vshlq_u8(vld1q_u8(qs + 16), sh), vdupq_n_u8(0xF));
        if (five) {
            uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << j)), b4 = vdupq_n_u8(0x10);
            u0 = vorrq_u8(u0, vandq_u8(vtstq_u8(vld1q_u8(p + 16), bit), b4));
            u1 = vorrq_u8(u1, vandq_u8(vtstq_u8(vld1q_u8(p + 32), bit), b4));
        }
        o->q0 = vreinterpretq_s8_u8(u0);
        o->q1 = vreinterpretq_s8_u8(u1);
        o->d0 = o->d1 = f16s(p) * (float)sc[j];
        o->m = f16s(p + 2) * (float)mn[j];
        break;
    }
    case CM_Q6_K: {
        /* block j of the super-block: half h = j / 4 and s = j % 4, elements 32s + l of the half
         * (see q6_unpack16), sub-block scales 8h + 2s and 8h + 2s + 1 */
        const uint8_t *p = row + 210 * (b / 8);
        int j = (int)(b % 8), h = j / 4, sidx = j % 4;
        const uint8_t *ql = p + 64 * h + 32 * (sidx & 1), *qh = p + 128 + 32 * h;
        const int8x16_t nsh = vdupq_n_s8((int8_t)(sidx >= 2 ? -4 : 0));
        const int8x16_t hsh = vdupq_n_s8((int8_t)(4 - 2 * sidx)); /* bits 2s..2s+1 to 4..5 */
        const uint8x16_t m4 = vdupq_n_u8(0xF), m30 = vdupq_n_u8(0x30);
        uint8x16_t u0 = vorrq_u8(vandq_u8(vshlq_u8(vld1q_u8(ql), nsh), m4),
                                 vandq_u8(vshlq_u8(vld1q_u8(qh), hsh), m30));
        uint8x16_t u1 = vorrq_u8(vandq_u8(vshlq_u8(vld1q_u8(ql + 16), nsh), m4),
                                 vandq_u8(vshlq_u8(vld1q_u8(qh + 16), hsh), m30));
        o->q0 = vsubq_s8(vreinterpretq_s8_u8(u0), vdupq_n_s8(32));
        o->q1 = vsubq_s8(vreinterpretq_s8_u8(u1), vdupq_n_s8(32));
        const int8_t *sc = (const int8_t *)(p + 192);
        float d = f16s(p + 208);
        o->d0 = d * (float)sc[8 * h + 2 * sidx];
        o->d1 = d * (float)sc[8 * h + 2 * sidx + 1];
        break;
    }
    default: break;
    }
}

/* the 4 groups of 4 elements in w (lanes 0..3) against activation rows c0..c0+3 of blk */
#define GEMM_SDOT4(acc, blk, c0, w)                                                    \
    do {                                                                               \
        for (int k_ = 0; k_ < 4; k_++) {                                               \
            const uint8_t *a_ = (blk) + 64 * (c0) + 16 * k_;                           \
            acc[k_] = vdotq_laneq_s32(acc[k_], lds8(a_), w, 0);                        \
            acc[k_] = vdotq_laneq_s32(acc[k_], lds8(a_ + 64), w, 1);                   \
            acc[k_] = vdotq_laneq_s32(acc[k_], lds8(a_ + 128), w, 2);                  \
            acc[k_] = vdotq_laneq_s32(acc[k_], lds8(a_ + 192), w, 3);                  \
        }                                                                              \
    } while (0)

static inline __attribute__((always_inline)) void gemm_rows(uint32_t type, bool two_scales,
                                                            const cm_matrix *w, size_t r0, size_t r1,
                                                            const cm_gemm_act *a, float *y, size_t ldy) {
    size_t nb = a->cols / 32;
    for (size_t r = r0; r < r1; r += 2) {
        bool pair = r + 1 < r1;
        const uint8_t *row0 = (const uint8_t *)w->data + r * w->row_bytes;
        const uint8_t *row1 = pair ? row0 + w->row_bytes : row0;
        for (size_t g = 0; g < a->n_grp; g++) {
            const uint8_t *grp = a->mem + g * nb * CM_GEMM_ACT_BLOCK;
            float32x4_t f0[4], f1[4];
            for (int k = 0; k < 4; k++) f0[k] = f1[k] = vdupq_n_f32(0);
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *blk = grp + b * CM_GEMM_ACT_BLOCK;
                gemm_wblk w0, w1;
                gemm_get(type, row0, b, &w0);
                gemm_get(type, row1, b, &w1);
                int32x4_t lo0[4], lo1[4], hi0[4], hi1[4];
                for (int k = 0; k < 4; k++) lo0[k] = lo1[k] = hi0[k] = hi1[k] = vdupq_n_s32(0);
                GEMM_SDOT4(lo0, blk, 0, w0.q0);
                GEMM_SDOT4(lo1, blk, 0, w1.q0);
                if (two_scales) {
                    GEMM_SDOT4(hi0, blk, 4, w0.q1);
                    GEMM_SDOT4(hi1, blk, 4, w1.q1);
                } else {
                    GEMM_SDOT4(lo0, blk, 4, w0.q1);
                    GEMM_SDOT4(lo1, blk, 4, w1.q1);
                }
                for (int k = 0; k < 4; k++) {
                    float32x4_t dx = vld1q_f32((const float *)(const void *)(blk + 512) + 4 * k);
                    float32x4_t v0 = vmulq_n_f32(vcvtq_f32_s32(lo0[k]), w0.d0);
                    float32x4_t v1 = vmulq_n_f32(vcvtq_f32_s32(lo1[k]), w1.d0);
                    if (two_scales) {
                        v0 = vfmaq_n_f32(v0, vcvtq_f32_s32(hi0[k]), w0.d1);
                        v1 = vfmaq_n_f32(v1, vcvtq_f32_s32(hi1[k]), w1.d1);
                    }
                    f0[k] = vfmaq_f32(f0[k], v0, dx);
                    f1[k] = vfmaq_f32(f1[k], v1, dx);
                    if (type == CM_Q4_K || type == CM_Q5_K) {
                        float32x4_t xs = vld1q_f32((const float *)(const void *)(blk + 704) + 4 * k);
                        f0[k] = vfmsq_n_f32(f0[k], xs, w0.m);
                        f1[k] = vfmsq_n_f32(f1[k], xs, w1.m);
                    }
                }
            }
            float out0[16], out1[16];
            for (int k = 0; k < 4; k++) {
                vst1q_f32(out0 + 4 * k, f0[k]);
                vst1q_f32(out1 + 4 * k, f1[k]);
            }
            size_t nt = LM_MIN((size_t)CM_GEMM_TOK, a->n - g * CM_GEMM_TOK);
            for (size_t t = 0; t < nt; t++) {
                float *yt = y + (g * CM_GEMM_TOK + t) * ldy;
                yt[r] = out0[t];
                if (pair) yt[r + 1] = out1[t];
            }
        }
    }
}
#undef GEMM_SDOT4

void cm_gemm_q8_0_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y,
                          size_t ldy, void *scratch) {
    (void)scratch;
    gemm_rows(CM_Q8_0, false, w, r0, r1, a, y, ldy);
}
void cm_gemm_q4_0_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y,
                          size_t ldy, void *scratch) {
    (void)scratch;
    gemm_rows(CM_Q4_0, false, w, r0, r1, a, y, ldy);
}
void cm_gemm_q5_0_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y,
                          size_t ldy, void *scratch) {
    (void)scratch;
    gemm_rows(CM_Q5_0, false, w, r0, r1, a, y, ldy);
}
void cm_gemm_q4_k_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y,
                          size_t ldy, void *scratch) {
    (void)scratch;
    gemm_rows(CM_Q4_K, false, w, r0, r1, a, y, ldy);
}
void cm_gemm_q5_k_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y,
                          size_t ldy, void *scratch) {
    (void)scratch;
    gemm_rows(CM_Q5_K, false, w, r0, r1, a, y, ldy);
}
void cm_gemm_q6_k_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y,
                          size_t ldy, void *scratch) {
    (void)scratch;
    gemm_rows(CM_Q6_K, true, w, r0, r1, a, y, ldy);
}

/* ---- R16 and R16M (quants_r16_ref.c, quants_r16m_ref.c: layouts and oracles) ----
 * A row group's 16 rows are 4 vectors of 4 int32 lanes; a block's 4 x 64 weight bytes hold, per
 * quad of 4 rows, 16 bytes for each k: 4 bytes per row whose low nibbles are elements 4k..4k+3
 * and high nibbles 16+4k.. . SDOT by lane multiplies them with 4 activation bytes broadcast from
 * a 16-byte load. Quads go one at a time (8 weight vectors in registers) for up to 8 tokens.
 * Integer sums are exact and the float operations are the oracle's (vfmaq_f32 fused as fmaf), so
 * results equal the references bit for bit. Per block of 32 columns and 16 rows, one token: 16
 * loads, 16 masks/shifts and 32 SDOT (Q4_0; 64 SDOT for MLX's two activation bytes), against 4
 * loads, 8 masks/shifts and 8 VPDPBUSD of the AVX-512 kernel (4x the lanes). */
#define R16_NT 8

static inline __attribute__((always_inline)) void r16_unpack(const uint8_t *qs, int quad, int8x16_t *w) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int k = 0; k < 4; k++) {
        uint8x16_t raw = vld1q_u8(qs + 64 * k + 16 * quad);
        w[k] = vreinterpretq_s8_u8(vandq_u8(raw, m4));
        w[4 + k] = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
    }
}

/* The 32-column dot of 4 rows (w) with the activation bytes q: lanes are rows. */
static inline __attribute__((always_inline)) int32x4_t r16_dot(int32x4_t s, const int8x16_t *w, const int8_t *q) {
    int8x16_t a0 = vld1q_s8(q), a1 = vld1q_s8(q + 16);
    s = vdotq_laneq_s32(s, w[0], a0, 0);
    s = vdotq_laneq_s32(s, w[1], a0, 1);
    s = vdotq_laneq_s32(s, w[2], a0, 2);
    s = vdotq_laneq_s32(s, w[3], a0, 3);
    s = vdotq_laneq_s32(s, w[4], a1, 0);
    s = vdotq_laneq_s32(s, w[5], a1, 1);
    s = vdotq_laneq_s32(s, w[6], a1, 2);
    s = vdotq_laneq_s32(s, w[7], a1, 3);
    return s;
}

static void r16_store(float *y, float32x4_t v, size_t n) {
    if (n >= 4) {
        vst1q_f32(y, v);
        return;
    }
    float t[4];
    vst1q_f32(t, v);
    for (size_t i = 0; i < n; i++) y[i] = t[i];
}

void cm_r16_gemm_neon_dp(const void *packed, size_t cols, size_t rows, size_t g0, size_t g1, const uint8_t *act,
                         size_t act_stride, size_t n_tok, float *y, size_t ldy) {
    size_t nb = cols / 32;
    for (size_t g = g0; g < g1; g++) {
        const uint8_t *grp = (const uint8_t *)packed + g * nb * 288;
        size_t nr = rows - g * 16 < 16 ? rows - g * 16 : 16;
        for (size_t t0 = 0; t0 < n_tok; t0 += R16_NT) {
            int nt = (int)(n_tok - t0 < R16_NT ? n_tok - t0 : R16_NT);
            for (int quad = 0; quad < 4 && (size_t)(4 * quad) < nr; quad++) {
                float32x4_t acc[R16_NT];
                for (int t = 0; t < R16_NT; t++) acc[t] = vdupq_n_f32(0.0f);
                for (size_t b = 0; b < nb; b++) {
                    const uint8_t *blk = grp + b * 288;
                    int8x16_t w[8];
                    r16_unpack(blk + 32, quad, w);
                    float16x4_t dh;
                    memcpy(&dh, blk + 8 * quad, 8);
                    float32x4_t dw = vcvt_f32_f16(dh);
                    for (int t = 0; t < R16_NT; t++) {
                        if (t >= nt) break;
                        const uint8_t *a = act + (t0 + (size_t)t) * act_stride;
                        float dx;
                        int32_t c;
                        memcpy(&dx, a + cols + 4 * b, 4);
                        memcpy(&c, a + cols + 4 * nb + 4 * b, 4);
                        int32x4_t s = r16_dot(vdupq_n_s32(c), w, (const int8_t *)a + 32 * b);
                        acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), vmulq_f32(dw, vdupq_n_f32(dx)));
                    }
                }
                for (int t = 0; t < nt; t++)
                    r16_store(y + (t0 + (size_t)t) * ldy + g * 16 + 4 * (size_t)quad, acc[t], nr - 4 * (size_t)quad);
            }
        }
    }
}

static inline float32x4_t r16m_sb(uint32_t sb, const uint8_t *p) {
    if (sb == CM_F32) {
        float32x4_t v;
        memcpy(&v, p, 16);
        return v;
    }
    uint16x4_t h;
    memcpy(&h, p, 8);
    if (sb == CM_BF16) return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

void cm_r16m_gemm_neon_dp(const cm_matrix *w, const void *packed, size_t g0, size_t g1, const uint8_t *act,
                          size_t act_stride, size_t n_tok, float *y, size_t ldy) {
    size_t cols = w->cols, gs = w->group_size, ng = cols / gs, nb = cols / 32, sz = w->sb_type == CM_F32 ? 4 : 2;
    size_t gb = cm_r16m_group_bytes(w);
    for (size_t g = g0; g < g1; g++) {
        const uint8_t *grp = (const uint8_t *)packed + g * ng * gb;
        size_t nr = w->rows - g * 16 < 16 ? w->rows - g * 16 : 16;
        for (size_t t0 = 0; t0 < n_tok; t0 += R16_NT) {
            int nt = (int)(n_tok - t0 < R16_NT ? n_tok - t0 : R16_NT);
            for (int quad = 0; quad < 4 && (size_t)(4 * quad) < nr; quad++) {
                float32x4_t acc[R16_NT];
                for (int t = 0; t < R16_NT; t++) acc[t] = vdupq_n_f32(0.0f);
                for (size_t gi = 0; gi < ng; gi++) {
                    const uint8_t *gp = grp + gi * gb;
                    float32x4_t sc = r16m_sb(w->sb_type, gp + 4 * sz * (size_t)quad);
                    float32x4_t bi = r16m_sb(w->sb_type, gp + 16 * sz + 4 * sz * (size_t)quad);
                    for (size_t bl = 0; bl < gs / 32; bl++) {
                        size_t b = gi * (gs / 32) + bl;
                        int8x16_t wv[8];
                        r16_unpack(gp + 32 * sz + bl * 256, quad, wv);
                        for (int t = 0; t < R16_NT; t++) {
                            if (t >= nt) break;
                            const uint8_t *a = act + (t0 + (size_t)t) * act_stride;
                            const int8_t *hi = (const int8_t *)a + 32 * b, *lo = hi + cols;
                            float dx, bx;
                            memcpy(&dx, a + 2 * cols + 4 * b, 4);
                            memcpy(&bx, a + 2 * cols + 4 * nb + 4 * b, 4);
                            int32x4_t sh = r16_dot(vdupq_n_s32(0), wv, hi), sl = r16_dot(vdupq_n_s32(0), wv, lo);
                            int32x4_t s = vaddq_s32(vshlq_n_s32(sh, 8), sl);
                            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), vmulq_f32(sc, vdupq_n_f32(dx)));
                            acc[t] = vfmaq_f32(acc[t], bi, vdupq_n_f32(bx));
                        }
                    }
                }
                for (int t = 0; t < nt; t++)
                    r16_store(y + (t0 + (size_t)t) * ldy + g * 16 + 4 * (size_t)quad, acc[t], nr - 4 * (size_t)quad);
            }
        }
    }
}
#endif /* CM_NEON_GEMM */

#endif /* CM_NEON_BODY */
