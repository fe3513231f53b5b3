/* compute/cpu/attention_avx2.c: AVX2/FMA/F16C inner loops of attention and SwiGLU (compiled with
 * -mavx2 -mfma -mf16c; chosen at run time by cm_attn_kernels_get).
 * Owns: a vector exp (Cephes' expf polynomial, about 2 ulp on the range softmax uses) and the
 * half-float row conversions. Does not own: tiling and threads (attention.c). */
#include "compute/cpu/attention.h"

#include <immintrin.h>
#include <math.h>

/* exp(x) for 8 floats. x is clamped to [-87, 88] so 2^n stays a normal float: below that the
 * result is under 1.7e-38 (0 for softmax purposes), above it swiglu's 1 + e^-g is huge anyway.
 * Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then Cephes' degree-5 polynomial. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The four horizontal sums of a0..a3 as one vector. */
static inline __m128 hsum8x4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

static void scores_avx2(float *s, const float *q, const float *k, size_t n_keys, size_t hd, float scale) {
    size_t hd8 = hd & ~(size_t)7, j = 0;
    for (; j + 4 <= n_keys; j += 4) {
        const float *k0 = k + j * hd, *k1 = k0 + hd, *k2 = k1 + hd, *k3 = k2 + hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t d = 0; d < hd8; d += 8) {
            __m256 qv = _mm256_loadu_ps(q + d);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + d), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + d), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + d), a3);
        }
        float out[4];
        _mm_storeu_ps(out, hsum8x4(a0, a1, a2, a3));
        for (size_t d = hd8; d < hd; d++) {
            out[0] += q[d] * k0[d];
            out[1] += q[d] * k1[d];
            out[2] += q[d] * k2[d];
            out[3] += q[d] * k3[d];
        }
        for (int i = 0; i < 4; i++) s[j + (size_t)i] = scale * out[i];
    }
    for (; j < n_keys; j++) {
        const float *kr = k + j * hd;
        __m256 a = _mm256_setzero_ps();
        for (size_t d = 0; d < hd8; d += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kr + d), a);
        float sum = hsum8(a);
        for (size_t d = hd8; d < hd; d++) sum += q[d] * kr[d];
        s[j] = scale * sum;
    }
}

static float exp_sum_avx2(float *s, size_t n, float m) {
    __m256 mv = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
        _mm256_storeu_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    float total = hsum8(sum);
    if (j < n) {
        float buf[8] = {0};
        memcpy(buf, s + j, (n - j) * sizeof(float));
        _mm256_storeu_ps(buf, exp8(_mm256_sub_ps(_mm256_loadu_ps(buf), mv)));
        for (size_t i = 0; i < n - j; i++) {
            s[j + i] = buf[i];
            total += buf[i];
        }
    }
    return total;
}

/* acc[d0, d0 + 8 * W) += sum_j p[j] v[j][d0...]: W accumulators stay in registers over all keys. */
#define ACCUM_CHUNK(W)                                                                      \
    for (; d + 8 * (W) <= hd; d += 8 * (W)) {                                               \
        __m256 a[W];                                                                        \
        for (int i = 0; i < (W); i++) a[i] = _mm256_loadu_ps(acc + d + 8 * i);              \
        for (size_t j = 0; j < n_keys; j++) {                                               \
            __m256 pj = _mm256_set1_ps(p[j]);                                               \
            const float *vr = v + j * hd + d;                                               \
            for (int i = 0; i < (W); i++) a[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 8 * i), a[i]); \
        }                                                                                   \
        for (int i = 0; i < (W); i++) _mm256_storeu_ps(acc + d + 8 * i, a[i]);              \
    }

static void accum_avx2(float *acc, const float *p, const float *v, size_t n_keys, size_t hd) {
    size_t d = 0;
    ACCUM_CHUNK(8)
    ACCUM_CHUNK(4)
    ACCUM_CHUNK(1)
    for (; d < hd; d++) {
        float a = acc[d];
        for (size_t j = 0; j < n_keys; j++) a += p[j] * v[j * hd + d];
        acc[d] = a;
    }
}

static void scale_avx2(float *x, size_t n, float f) {
    __m256 fv = _mm256_set1_ps(f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), fv));
    for (; i < n; i++) x[i] *= f;
}

static void f16_to_f32_avx2(float *dst, const uint16_t *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

static void f32_to_f16_avx2(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

static void swiglu_avx2(float *gate, const float *up, size_t n) {
    __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp8(_mm256_sub_ps(zero, g));
        __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

const cm_attn_kernels cm_attn_kernels_avx2 = {
    "avx2", scores_avx2, exp_sum_avx2, accum_avx2, scale_avx2, f16_to_f32_avx2, f32_to_f16_avx2, swiglu_avx2,
};
