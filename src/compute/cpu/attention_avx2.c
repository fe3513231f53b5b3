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

static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- attention blocks ---- */

#define KB CM_ATTN_KB

/* r[i] holds row i of an 8 x 8 block; afterwards r[i] holds column i. */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}

static inline float kv_elem(const void *k, bool f16, size_t i) {
    return f16 ? _cvtsh_ss(((const uint16_t *)k)[i]) : ((const float *)k)[i];
}

/* Whole 8 x 8 blocks transposed in registers, the key and dimension tails one by one. */
static void load_kt_avx2(float *kt, const void *k, bool f16, size_t n_keys, size_t hd) {
    size_t hd8 = hd & ~(size_t)7, nk8 = n_keys & ~(size_t)7;
    for (size_t j = 0; j < nk8; j += 8)
        for (size_t d = 0; d < hd8; d += 8) {
            __m256 r[8];
            for (size_t i = 0; i < 8; i++) {
                size_t at = (j + i) * hd + d;
                r[i] = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)k + at)))
                           : _mm256_loadu_ps((const float *)k + at);
            }
            transpose8(r);
            for (size_t i = 0; i < 8; i++) _mm256_storeu_ps(kt + (d + i) * KB + j, r[i]);
        }
    for (size_t d = 0; d < hd; d++) {
        float *row = kt + d * KB;
        for (size_t j = d < hd8 ? nk8 : 0; j < n_keys; j++) row[j] = kv_elem(k, f16, j * hd + d);
        for (size_t j = n_keys; j < KB; j++) row[j] = 0;
    }
}

static void scale_row(float *x, size_t n, float f) {
    __m256 fv = _mm256_set1_ps(f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), fv));
    for (; i < n; i++) x[i] *= f;
}

/* acc[r][d, d + 8 W) += sum_j p[r][j] v[j][d...] for the NR rows, keys [jl, jh). */
static inline __attribute__((always_inline)) void accum_rows(cm_attn_row *const *rw, int NR, int W,
                                                             const float (*p)[KB], const float *v, size_t hd,
                                                             size_t d, uint32_t jl, uint32_t jh) {
    __m256 a[2][4];
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < W; i++) a[r][i] = _mm256_loadu_ps(rw[r]->acc + d + 8 * i);
    for (uint32_t j = jl; j < jh; j++) {
        const float *vr = v + j * hd + d;
        __m256 vv[4];
        for (int i = 0; i < W; i++) vv[i] = _mm256_loadu_ps(vr + 8 * i);
        for (int r = 0; r < NR; r++) {
            __m256 pb = _mm256_set1_ps(p[r][j]);
            for (int i = 0; i < W; i++) a[r][i] = _mm256_fmadd_ps(pb, vv[i], a[r][i]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < W; i++) _mm256_storeu_ps(rw[r]->acc + d + 8 * i, a[r][i]);
}

/* NR rows (1 or 2) against one block: attention_avx512.c's block_rows with 8 lanes, the scores
 * in four vectors a row, the key range as lane compares. */
static inline __attribute__((always_inline)) void block_rows(cm_attn_row *const *rw, int NR, const float *kt,
                                                             const float *v, size_t hd, float scale) {
    __m256 s[2][4];
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < 4; i++) s[r][i] = _mm256_setzero_ps();
    for (size_t d = 0; d < hd; d++) {
        __m256 kv[4];
        for (int i = 0; i < 4; i++) kv[i] = _mm256_loadu_ps(kt + d * KB + 8 * i);
        for (int r = 0; r < NR; r++) {
            __m256 qb = _mm256_set1_ps(rw[r]->q[d]);
            for (int i = 0; i < 4; i++) s[r][i] = _mm256_fmadd_ps(qb, kv[i], s[r][i]);
        }
    }
    _Alignas(32) float p[2][KB];
    uint32_t jl = KB, jh = 0;
    const __m256 ninf = _mm256_set1_ps(-INFINITY), sv = _mm256_set1_ps(scale);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int r = 0; r < NR; r++) {
        cm_attn_row *w = rw[r];
        __m256i lo = _mm256_set1_epi32((int)w->lo - 1), hi = _mm256_set1_epi32((int)w->hi);
        __m256 ok[4], a[4], mx = ninf;
        for (int i = 0; i < 4; i++) {
            __m256i idx = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * i));
            ok[i] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(idx, lo), _mm256_cmpgt_epi32(hi, idx)));
            a[i] = _mm256_mul_ps(s[r][i], sv);
            mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, a[i], ok[i]));
        }
        float m = hmax8(mx);
        float f = cm_attn_raise_max(w, m);
        if (f != 1.0f) scale_row(w->acc, hd, f);
        __m256 mv = _mm256_set1_ps(w->m), sum = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(a[i], mv)), ok[i]);
            sum = _mm256_add_ps(sum, e);
            _mm256_store_ps(p[r] + 8 * i, e);
        }
        w->l += hsum8(sum);
        jl = w->lo < jl ? w->lo : jl;
        jh = w->hi > jh ? w->hi : jh;
    }
    size_t d = 0;
    for (; d + 32 <= hd; d += 32) accum_rows(rw, NR, 4, (const float (*)[KB])p, v, hd, d, jl, jh);
    for (; d + 8 <= hd; d += 8) accum_rows(rw, NR, 1, (const float (*)[KB])p, v, hd, d, jl, jh);
    for (; d < hd; d++)
        for (int r = 0; r < NR; r++) {
            float acc = rw[r]->acc[d];
            for (uint32_t j = jl; j < jh; j++) acc += p[r][j] * v[j * hd + d];
            rw[r]->acc[d] = acc;
        }
}

static void block_avx2(cm_attn_row *const *rows, size_t n, const float *kt, const float *v, size_t hd,
                       float scale) {
    size_t i = 0;
    for (; i + 2 <= n; i += 2) block_rows(rows + i, 2, kt, v, hd, scale);
    if (i < n) block_rows(rows + i, 1, kt, v, hd, scale);
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
    "avx2", load_kt_avx2, block_avx2, f16_to_f32_avx2, f32_to_f16_avx2, swiglu_avx2,
};
