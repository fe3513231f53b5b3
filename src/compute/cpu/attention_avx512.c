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

/* ---- attention blocks ---- */

#define KB CM_ATTN_KB

/* r[i] holds row i of a 16 x 16 block; afterwards r[i] holds column i. Three rounds of
 * shuffles: pairs of floats, pairs of pairs (within 128-bit lanes), then the lanes. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* r[4i + k], lane L: rows 4i..4i+3, column 4L + k */
    for (int k = 0; k < 4; k++) {
        t[k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
        t[4 + k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xdd);
        t[8 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xdd);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xdd);
        r[4 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0xdd);
    }
}

/* 16 keys x 16 dims at a time; keys past n_keys load as zeros, which the transposition turns
 * into the zero columns the contract asks for. */
static void load_kt_avx512(float *kt, const void *k, bool f16, size_t n_keys, size_t hd) {
    for (size_t j = 0; j < KB; j += 16) {
        size_t nj = n_keys > j ? LM_MIN(n_keys - j, (size_t)16) : 0;
        for (size_t d = 0; d < hd; d += 16) {
            size_t nd = LM_MIN(hd - d, (size_t)16);
            __mmask16 md = tail_mask(nd);
            __m512 r[16];
            for (size_t i = 0; i < 16; i++) {
                if (i >= nj)
                    r[i] = _mm512_setzero_ps();
                else if (f16)
                    r[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(md, (const uint16_t *)k + (j + i) * hd + d));
                else
                    r[i] = _mm512_maskz_loadu_ps(md, (const float *)k + (j + i) * hd + d);
            }
            transpose16(r);
            for (size_t i = 0; i < nd; i++) _mm512_storeu_ps(kt + (d + i) * KB + j, r[i]);
        }
    }
}

/* acc[0, hd) *= f */
static void scale_row(float *x, size_t n, float f) {
    __m512 fv = _mm512_set1_ps(f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), fv));
    if (i < n) {
        __mmask16 mt = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, mt, _mm512_mul_ps(_mm512_maskz_loadu_ps(mt, x + i), fv));
    }
}

/* 16 floats, or the first lanes of mt (the rest 0) */
static inline __m512 ld_part(const float *x, __mmask16 mt) {
    return mt == 0xFFFF ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps(mt, x);
}

/* acc[r][d, d + 16 W) += sum_j p[r][j] v[j][d...] for the NR rows, keys [jl, jh); the last
 * vector masked by mt. */
static inline __attribute__((always_inline)) void accum_rows(cm_attn_row *const *rw, int NR, int W,
                                                             const float (*p)[KB], const float *v, size_t hd,
                                                             size_t d, uint32_t jl, uint32_t jh, __mmask16 mt) {
    __m512 a[4][4];
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < W; i++) a[r][i] = ld_part(rw[r]->acc + d + 16 * i, i == W - 1 ? mt : 0xFFFF);
    for (uint32_t j = jl; j < jh; j++) {
        const float *vr = v + j * hd + d;
        __m512 vv[4];
        for (int i = 0; i < W; i++) vv[i] = ld_part(vr + 16 * i, i == W - 1 ? mt : 0xFFFF);
        for (int r = 0; r < NR; r++) {
            __m512 pb = _mm512_set1_ps(p[r][j]);
            for (int i = 0; i < W; i++) a[r][i] = _mm512_fmadd_ps(pb, vv[i], a[r][i]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < W; i++) {
            if (i < W - 1 || mt == 0xFFFF)
                _mm512_storeu_ps(rw[r]->acc + d + 16 * i, a[r][i]);
            else
                _mm512_mask_storeu_ps(rw[r]->acc + d + 16 * i, mt, a[r][i]);
        }
}

/* NR rows (1 to 4) against one block: the scores with keys in the lanes (two vectors a row,
 * each lane one sum over d), the softmax update, then V accumulated four rows at a time. */
static inline __attribute__((always_inline)) void block_rows(cm_attn_row *const *rw, int NR, const float *kt,
                                                             const float *v, size_t hd, float scale) {
    __m512 s0[4], s1[4];
    for (int r = 0; r < NR; r++) s0[r] = s1[r] = _mm512_setzero_ps();
    for (size_t d = 0; d < hd; d++) {
        __m512 k0 = _mm512_loadu_ps(kt + d * KB), k1 = _mm512_loadu_ps(kt + d * KB + 16);
        for (int r = 0; r < NR; r++) {
            __m512 qb = _mm512_set1_ps(rw[r]->q[d]);
            s0[r] = _mm512_fmadd_ps(qb, k0, s0[r]);
            s1[r] = _mm512_fmadd_ps(qb, k1, s1[r]);
        }
    }
    _Alignas(64) float p[4][KB];
    uint32_t jl = KB, jh = 0;
    const __m512 ninf = _mm512_set1_ps(-INFINITY), sv = _mm512_set1_ps(scale);
    for (int r = 0; r < NR; r++) {
        cm_attn_row *w = rw[r];
        uint32_t bits = (uint32_t)(((1ull << w->hi) - 1) & ~((1ull << w->lo) - 1));
        __mmask16 m0 = (__mmask16)(bits & 0xFFFF), m1 = (__mmask16)(bits >> 16);
        __m512 a0 = _mm512_mul_ps(s0[r], sv), a1 = _mm512_mul_ps(s1[r], sv);
        float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_mask_mov_ps(ninf, m0, a0), _mm512_mask_mov_ps(ninf, m1, a1)));
        float f = cm_attn_raise_max(w, m);
        if (f != 1.0f) scale_row(w->acc, hd, f);
        __m512 mv = _mm512_set1_ps(w->m);
        __m512 e0 = _mm512_maskz_mov_ps(m0, exp16(_mm512_sub_ps(a0, mv)));
        __m512 e1 = _mm512_maskz_mov_ps(m1, exp16(_mm512_sub_ps(a1, mv)));
        w->l += _mm512_reduce_add_ps(_mm512_add_ps(e0, e1));
        _mm512_store_ps(p[r], e0);
        _mm512_store_ps(p[r] + 16, e1);
        jl = w->lo < jl ? w->lo : jl;
        jh = w->hi > jh ? w->hi : jh;
    }
    size_t d = 0;
    for (; d + 64 <= hd; d += 64) accum_rows(rw, NR, 4, (const float (*)[KB])p, v, hd, d, jl, jh, 0xFFFF);
    for (; d + 16 <= hd; d += 16) accum_rows(rw, NR, 1, (const float (*)[KB])p, v, hd, d, jl, jh, 0xFFFF);
    if (d < hd) accum_rows(rw, NR, 1, (const float (*)[KB])p, v, hd, d, jl, jh, tail_mask(hd - d));
}

static void block_avx512(cm_attn_row *const *rows, size_t n, const float *kt, const float *v, size_t hd,
                         float scale) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) block_rows(rows + i, 4, kt, v, hd, scale);
    switch (n - i) {
    case 3: block_rows(rows + i, 3, kt, v, hd, scale); break;
    case 2: block_rows(rows + i, 2, kt, v, hd, scale); break;
    case 1: block_rows(rows + i, 1, kt, v, hd, scale); break;
    default: break;
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
    "avx512", load_kt_avx512, block_avx512, f16_to_f32_avx512, f32_to_f16_avx512, swiglu_avx512,
};
