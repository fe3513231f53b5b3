/* compute/cpu/attention_neon.c: the inner loops of attention and SwiGLU with AArch64 NEON (Apple
 * Silicon, Graviton, Raspberry Pi 4/5; any ARMv8.0 core: nothing here needs a later extension).
 * The contract of attention_avx512.c with 4 lanes: K blocks transposed by 4 x 4 register
 * transposes, the scores of two rows at a time in eight vectors each (keys in the lanes, each lane
 * one fused multiply-add chain over d, as the reference sums), the softmax on those registers,
 * V accumulated two rows x 32 dims at a time; the same exp polynomial as the x86 files.
 * Chosen by cm_attn_kernels_get on LM_CPU_NEON. Does not own: tiling and threads (attention.c). */
#include "compute/cpu/attention.h"

#if defined(CM_HAVE_ATTN_NEON)
#include <arm_neon.h>
#include <math.h>

#define KB CM_ATTN_KB

/* exp(x) for 4 floats: attention_avx2.c's exp8 (Cody-Waite reduction, Cephes' degree-5
 * polynomial, x clamped to [-87, 88]). */
static inline float32x4_t exp4(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t y = vdupq_n_f32(1.9875691500e-4f);
    y = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), y, r);
    y = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), y, r);
    y = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), y, r);
    y = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), y, r);
    y = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), y, r);
    y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), y, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

static inline float kv_elem(const void *k, bool f16, size_t i) {
    if (!f16) return ((const float *)k)[i];
    __fp16 h;
    memcpy(&h, (const uint16_t *)k + i, 2);
    return (float)h;
}

static inline float32x4_t kv_load4(const void *k, bool f16, size_t i) {
    if (!f16) return vld1q_f32((const float *)k + i);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)k + i)));
}

/* Whole 4 x 4 blocks transposed in registers, the key and dimension tails one by one. */
static void load_kt_neon(float *kt, const void *k, bool f16, size_t n_keys, size_t hd) {
    size_t hd4 = hd & ~(size_t)3, nk4 = n_keys & ~(size_t)3;
    for (size_t j = 0; j < nk4; j += 4)
        for (size_t d = 0; d < hd4; d += 4) {
            float32x4_t r0 = kv_load4(k, f16, j * hd + d), r1 = kv_load4(k, f16, (j + 1) * hd + d);
            float32x4_t r2 = kv_load4(k, f16, (j + 2) * hd + d), r3 = kv_load4(k, f16, (j + 3) * hd + d);
            /* pairs, then pairs of pairs: t0 = a0 b0 a2 b2, t1 = a1 b1 a3 b3, ... */
            float32x4_t t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1);
            float32x4_t t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
            float64x2_t u0 = vreinterpretq_f64_f32(t0), u1 = vreinterpretq_f64_f32(t1);
            float64x2_t u2 = vreinterpretq_f64_f32(t2), u3 = vreinterpretq_f64_f32(t3);
            vst1q_f32(kt + d * KB + j, vreinterpretq_f32_f64(vtrn1q_f64(u0, u2)));
            vst1q_f32(kt + (d + 1) * KB + j, vreinterpretq_f32_f64(vtrn1q_f64(u1, u3)));
            vst1q_f32(kt + (d + 2) * KB + j, vreinterpretq_f32_f64(vtrn2q_f64(u0, u2)));
            vst1q_f32(kt + (d + 3) * KB + j, vreinterpretq_f32_f64(vtrn2q_f64(u1, u3)));
        }
    for (size_t d = 0; d < hd; d++) {
        float *row = kt + d * KB;
        for (size_t j = d < hd4 ? nk4 : 0; j < n_keys; j++) row[j] = kv_elem(k, f16, j * hd + d);
        for (size_t j = n_keys; j < KB; j++) row[j] = 0;
    }
}

static void scale_row(float *x, size_t n, float f) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), f));
    for (; i < n; i++) x[i] *= f;
}

/* acc[r][d, d + 4 W) += sum_j p[r][j] v[j][d...] for the NR rows, keys [jl, jh). */
static inline __attribute__((always_inline)) void accum_rows(cm_attn_row *const *rw, int NR, int W,
                                                             const float (*p)[KB], const float *v, size_t hd,
                                                             size_t d, uint32_t jl, uint32_t jh) {
    float32x4_t a[2][8];
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < W; i++) a[r][i] = vld1q_f32(rw[r]->acc + d + 4 * i);
    for (uint32_t j = jl; j < jh; j++) {
        const float *vr = v + j * hd + d;
        float32x4_t vv[8];
        for (int i = 0; i < W; i++) vv[i] = vld1q_f32(vr + 4 * i);
        for (int r = 0; r < NR; r++) {
            float pj = p[r][j];
            for (int i = 0; i < W; i++) a[r][i] = vfmaq_n_f32(a[r][i], vv[i], pj);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < W; i++) vst1q_f32(rw[r]->acc + d + 4 * i, a[r][i]);
}

/* NR rows (1 or 2) against one block. */
static inline __attribute__((always_inline)) void block_rows(cm_attn_row *const *rw, int NR, const float *kt,
                                                             const float *v, size_t hd, float scale) {
    float32x4_t s[2][8];
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < 8; i++) s[r][i] = vdupq_n_f32(0.0f);
    for (size_t d = 0; d < hd; d++) {
        float32x4_t kv[8];
        for (int i = 0; i < 8; i++) kv[i] = vld1q_f32(kt + d * KB + 4 * i);
        for (int r = 0; r < NR; r++) {
            float qd = rw[r]->q[d];
            for (int i = 0; i < 8; i++) s[r][i] = vfmaq_n_f32(s[r][i], kv[i], qd);
        }
    }
    float p[2][KB];
    uint32_t jl = KB, jh = 0;
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    const uint32_t lane_init[4] = {0, 1, 2, 3};
    const uint32x4_t lane = vld1q_u32(lane_init);
    for (int r = 0; r < NR; r++) {
        cm_attn_row *w = rw[r];
        uint32x4_t lo = vdupq_n_u32(w->lo), hi = vdupq_n_u32(w->hi);
        uint32x4_t ok[8];
        float32x4_t a[8], mx = ninf;
        for (int i = 0; i < 8; i++) {
            uint32x4_t idx = vaddq_u32(lane, vdupq_n_u32(4u * (uint32_t)i));
            ok[i] = vandq_u32(vcgeq_u32(idx, lo), vcltq_u32(idx, hi));
            a[i] = vmulq_n_f32(s[r][i], scale);
            mx = vmaxq_f32(mx, vbslq_f32(ok[i], a[i], ninf));
        }
        float m = vmaxvq_f32(mx);
        float f = cm_attn_raise_max(w, m);
        if (f != 1.0f) scale_row(w->acc, hd, f);
        float32x4_t mv = vdupq_n_f32(w->m), sum = vdupq_n_f32(0.0f);
        for (int i = 0; i < 8; i++) {
            float32x4_t e = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(exp4(vsubq_f32(a[i], mv))), ok[i]));
            sum = vaddq_f32(sum, e);
            vst1q_f32(p[r] + 4 * i, e);
        }
        w->l += vaddvq_f32(sum);
        jl = w->lo < jl ? w->lo : jl;
        jh = w->hi > jh ? w->hi : jh;
    }
    size_t d = 0;
    for (; d + 32 <= hd; d += 32) accum_rows(rw, NR, 8, (const float (*)[KB])p, v, hd, d, jl, jh);
    for (; d + 4 <= hd; d += 4) accum_rows(rw, NR, 1, (const float (*)[KB])p, v, hd, d, jl, jh);
    for (; d < hd; d++)
        for (int r = 0; r < NR; r++) {
            float acc = rw[r]->acc[d];
            for (uint32_t j = jl; j < jh; j++) acc = fmaf(p[r][j], v[j * hd + d], acc);
            rw[r]->acc[d] = acc;
        }
}

static void block_neon(cm_attn_row *const *rows, size_t n, const float *kt, const float *v, size_t hd,
                       float scale) {
    size_t i = 0;
    for (; i + 2 <= n; i += 2) block_rows(rows + i, 2, kt, v, hd, scale);
    if (i < n) block_rows(rows + i, 1, kt, v, hd, scale);
}

/* FCVTL / FCVTN: exact widening, and narrowing that rounds to nearest even (the FPCR default) with
 * overflow to infinity and gradual underflow, as core's lm_f32_to_f16. */
static void f16_to_f32_neon(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    for (; i < n; i++) dst[i] = kv_elem(src, true, i);
}

static void f32_to_f16_neon(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    for (; i < n; i++) {
        __fp16 h = (__fp16)src[i];
        memcpy(dst + i, &h, 2);
    }
}

static void swiglu_neon(float *gate, const float *up, size_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t g = vld1q_f32(gate + i);
        float32x4_t silu = vdivq_f32(g, vaddq_f32(one, exp4(vnegq_f32(g))));
        vst1q_f32(gate + i, vmulq_f32(silu, vld1q_f32(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

const cm_attn_kernels cm_attn_kernels_neon = {
    "neon", load_kt_neon, block_neon, f16_to_f32_neon, f32_to_f16_neon, swiglu_neon,
};

#endif
