/* compute/cpu/attention_avx512.c: the inner loops of attention and SwiGLU with 512-bit vectors
 * (compiled with the AVX-512 flags by its suffix; chosen at run time by cm_attn_kernels_get when
 * the CPU has AVX-512 F/BW/VL/DQ besides AVX2/FMA/F16C).
 * The same contract and the same exp polynomial as attention_avx2.c, 16 lanes at a time; rows
 * whose length is not a multiple of 16 finish with masked loads and stores instead of a scalar
 * tail. Does not own: tiling and threads (attention.c). */
#include "compute/cpu/attention.h"

#include <immintrin.h>
#include <math.h>

/* exp(x) for 16 floats: attention_avx2.c's exp8 (Cody-Waite reduction, Cephes' degree-5
 * polynomial, x clamped to [-87, 88]) with 2^n built by vscalefps. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);
}

static inline __mmask16 tail_mask(size_t n) { return (__mmask16)((1u << n) - 1); }

static inline __m256 halves(__m512 a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
}

/* The four horizontal sums of a0..a3 as one vector. */
static inline __m128 hsum16x4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(halves(a0), halves(a1)), _mm256_hadd_ps(halves(a2), halves(a3)));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* q . k[j] for 4 keys at once; hd any length (the last part of a row masked). */
static void scores_avx512(float *s, const float *q, const float *k, size_t n_keys, size_t hd, float scale) {
    size_t hd16 = hd & ~(size_t)15, j = 0;
    __mmask16 mt = tail_mask(hd - hd16);
    for (; j + 4 <= n_keys; j += 4) {
        const float *k0 = k + j * hd, *k1 = k0 + hd, *k2 = k1 + hd, *k3 = k2 + hd;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t d = 0; d < hd16; d += 16) {
            __m512 qv = _mm512_loadu_ps(q + d);
            a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + d), a0);
            a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k1 + d), a1);
            a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k2 + d), a2);
            a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k3 + d), a3);
        }
        if (mt) {
            __m512 qv = _mm512_maskz_loadu_ps(mt, q + hd16);
            a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mt, k0 + hd16), a0);
            a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mt, k1 + hd16), a1);
            a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mt, k2 + hd16), a2);
            a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mt, k3 + hd16), a3);
        }
        _mm_storeu_ps(s + j, _mm_mul_ps(hsum16x4(a0, a1, a2, a3), _mm_set1_ps(scale)));
    }
    for (; j < n_keys; j++) {
        const float *kr = k + j * hd;
        __m512 a = _mm512_setzero_ps();
        for (size_t d = 0; d < hd16; d += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(kr + d), a);
        if (mt) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mt, q + hd16), _mm512_maskz_loadu_ps(mt, kr + hd16), a);
        s[j] = scale * _mm512_reduce_add_ps(a);
    }
}

static float exp_sum_avx512(float *s, size_t n, float m) {
    __m512 mv = _mm512_set1_ps(m), sum = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), mv));
        _mm512_storeu_ps(s + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (j < n) {
        __mmask16 mt = tail_mask(n - j);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mt, s + j), mv));
        _mm512_mask_storeu_ps(s + j, mt, e);
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(mt, e));
    }
    return _mm512_reduce_add_ps(sum);
}

/* acc[d0, d0 + 16 * W) += sum_j p[j] v[j][d0...]: W accumulators stay in registers over all keys. */
#define ACCUM_CHUNK(W)                                                                        \
    for (; d + 16 * (W) <= hd; d += 16 * (W)) {                                               \
        __m512 a[W];                                                                          \
        for (int i = 0; i < (W); i++) a[i] = _mm512_loadu_ps(acc + d + 16 * i);               \
        for (size_t j = 0; j < n_keys; j++) {                                                 \
            __m512 pj = _mm512_set1_ps(p[j]);                                                 \
            const float *vr = v + j * hd + d;                                                 \
            for (int i = 0; i < (W); i++) a[i] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vr + 16 * i), a[i]); \
        }                                                                                     \
        for (int i = 0; i < (W); i++) _mm512_storeu_ps(acc + d + 16 * i, a[i]);               \
    }

static void accum_avx512(float *acc, const float *p, const float *v, size_t n_keys, size_t hd) {
    size_t d = 0;
    ACCUM_CHUNK(8)
    ACCUM_CHUNK(4)
    ACCUM_CHUNK(1)
    if (d < hd) {
        __mmask16 mt = tail_mask(hd - d);
        __m512 a = _mm512_maskz_loadu_ps(mt, acc + d);
        for (size_t j = 0; j < n_keys; j++)
            a = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(mt, v + j * hd + d), a);
        _mm512_mask_storeu_ps(acc + d, mt, a);
    }
}

static void scale_avx512(float *x, size_t n, float f) {
    __m512 fv = _mm512_set1_ps(f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), fv));
    if (i < n) {
        __mmask16 mt = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, mt, _mm512_mul_ps(_mm512_maskz_loadu_ps(mt, x + i), fv));
    }
}

static void f16_to_f32_avx512(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        __mmask16 mt = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, mt, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mt, src + i)));
    }
}

static void f32_to_f16_avx512(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        __mmask16 mt = tail_mask(n - i);
        _mm256_mask_storeu_epi16(dst + i, mt, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(mt, src + i), _MM_FROUND_TO_NEAREST_INT));
    }
}

static void swiglu_avx512(float *gate, const float *up, size_t n) {
    __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 mt = n - i >= 16 ? (__mmask16)0xFFFF : tail_mask(n - i);
        __m512 g = _mm512_maskz_loadu_ps(mt, gate + i);
        __m512 e = exp16(_mm512_sub_ps(zero, g));
        __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(gate + i, mt, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(mt, up + i)));
    }
}

const cm_attn_kernels cm_attn_kernels_avx512 = {
    "avx512", scores_avx512, exp_sum_avx512, accum_avx512, scale_avx512, f16_to_f32_avx512, f32_to_f16_avx512, swiglu_avx512,
};
