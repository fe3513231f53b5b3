/* compute/cpu/quants_r16_avx2.c: the R16 (Q4_0) and R16M (MLX 4-bit) kernels with AVX2 only
 * (quants_r16_ref.c and quants_r16m_ref.c have the layouts and the oracles): the 16 rows of a
 * row group in two vectors of 8 int32 lanes, rows 0..7 then 8..15. Without VNNI the byte products
 * go through vpmaddubsw (unsigned nibbles times signed activation bytes, pairs summed to int16):
 * the 8 products of a block's 32 columns are added as int16 (at most 8 * 2 * 15 * 128 = 30720, so
 * never saturated) and widened once with vpmaddwd, a third of the instructions of widening each.
 * Integer sums are exact and the float operations are the oracle's, in its order: the results
 * equal cm_r16_gemm_ref and cm_r16m_gemm_ref bit for bit, whatever the tokens beside them.
 * Compiled with -mavx2 -mfma -mf16c; chosen by cm_r16_select / cm_r16m_select (select.c). */
#include "compute/cpu/quants.h"

#include <immintrin.h>

#define R16_BLOCK 288
#define NT_MAX 4 /* tokens per chunk: 8 weight vectors + 4 accumulators + temporaries in 16 registers */

static inline int32_t rd32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* sum over the 32 columns of a block, per row of a half: w[0..3] the low nibbles (elements
 * 4k..4k+3 of each row), w[4..7] the high ones (16+4k..), q the token's 32 activation bytes. */
static inline __attribute__((always_inline)) __m256i block_dot(const __m256i *w, const int8_t *q) {
    __m256i p = _mm256_maddubs_epi16(w[0], _mm256_set1_epi32(rd32(q)));
    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[4], _mm256_set1_epi32(rd32(q + 16))));
    for (int k = 1; k < 4; k++) {
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[k], _mm256_set1_epi32(rd32(q + 4 * k))));
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[4 + k], _mm256_set1_epi32(rd32(q + 16 + 4 * k))));
    }
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static inline __attribute__((always_inline)) void unpack(const uint8_t *qs, int h, __m256i *w) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int k = 0; k < 4; k++) {
        __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 64 * k + 32 * h));
        w[k] = _mm256_and_si256(raw, m4);
        w[4 + k] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    }
}

static void store_rows(float *y, __m256 v, size_t n) {
    if (n >= 8) {
        _mm256_storeu_ps(y, v);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, v);
    for (size_t i = 0; i < n; i++) y[i] = t[i];
}

/* ---- Q4_0 ---- */

static inline __attribute__((always_inline)) void q4_chunk(const uint8_t *grp, size_t nb, size_t cols, int h,
                                                           const uint8_t *act, size_t stride, int nt, __m256 *acc) {
    for (int t = 0; t < NT_MAX; t++) acc[t] = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + b * R16_BLOCK;
        _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 64 * h, _MM_HINT_T0);
        _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 128 + 64 * h, _MM_HINT_T0);
        __m256i w[8];
        unpack(blk + 32, h, w);
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * h)));
        for (int t = 0; t < NT_MAX; t++) {
            if (t >= nt) break;
            const uint8_t *a = act + (size_t)t * stride;
            float dx = ((const float *)(const void *)(a + cols))[b];
            int32_t c = ((const int32_t *)(const void *)(a + cols + 4 * (cols / 32)))[b];
            __m256i s = _mm256_add_epi32(_mm256_set1_epi32(c), block_dot(w, (const int8_t *)a + 32 * b));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(dx)), acc[t]);
        }
    }
}

void cm_r16_gemm_avx2(const void *packed, size_t cols, size_t rows, size_t g0, size_t g1, const uint8_t *act,
                      size_t act_stride, size_t n_tok, float *y, size_t ldy) {
    size_t nb = cols / 32;
    __m256 acc[NT_MAX];
    for (size_t g = g0; g < g1; g++) {
        const uint8_t *grp = (const uint8_t *)packed + g * nb * R16_BLOCK;
        size_t nr = rows - g * 16 < 16 ? rows - g * 16 : 16;
        for (size_t t0 = 0; t0 < n_tok; t0 += NT_MAX) {
            int nt = (int)(n_tok - t0 < NT_MAX ? n_tok - t0 : NT_MAX);
            for (int h = 0; h < 2 && (size_t)(8 * h) < nr; h++) {
                q4_chunk(grp, nb, cols, h, act + t0 * act_stride, act_stride, nt, acc);
                for (int t = 0; t < nt; t++) store_rows(y + (t0 + (size_t)t) * ldy + g * 16 + 8 * (size_t)h, acc[t], nr - 8 * (size_t)h);
            }
        }
    }
}

/* ---- MLX 4-bit (R16M) ---- */

static inline __attribute__((always_inline)) __m256 load_sb(uint32_t sb, const uint8_t *p) {
    if (sb == CM_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    __m128i hv = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (sb == CM_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(hv), 16));
    return _mm256_cvtph_ps(hv);
}

static inline __attribute__((always_inline)) void mlx_chunk(const cm_matrix *w, const uint8_t *grp, int h,
                                                            const uint8_t *act, size_t stride, int nt, __m256 *acc,
                                                            uint32_t sb) {
    size_t cols = w->cols, gs = w->group_size, ng = cols / gs, nb = cols / 32, sz = sb == CM_F32 ? 4 : 2;
    size_t gb = 32 * sz + gs / 32 * 256;
    for (int t = 0; t < NT_MAX; t++) acc[t] = _mm256_setzero_ps();
    for (size_t gi = 0; gi < ng; gi++) {
        const uint8_t *gp = grp + gi * gb;
        __m256 sc = load_sb(sb, gp + 8 * sz * (size_t)h), bi = load_sb(sb, gp + 16 * sz + 8 * sz * (size_t)h);
        for (size_t bl = 0; bl < gs / 32; bl++) {
            size_t b = gi * (gs / 32) + bl;
            const uint8_t *blk = gp + 32 * sz + bl * 256;
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 64 * h, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 128 + 64 * h, _MM_HINT_T0);
            __m256i wv[8];
            unpack(blk, h, wv);
            for (int t = 0; t < NT_MAX; t++) {
                if (t >= nt) break;
                const uint8_t *a = act + (size_t)t * stride;
                const int8_t *hi = (const int8_t *)a + 32 * b, *lo = hi + cols;
                const float *dx = (const float *)(const void *)(a + 2 * cols);
                __m256i s = _mm256_add_epi32(_mm256_slli_epi32(block_dot(wv, hi), 8), block_dot(wv, lo));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(sc, _mm256_set1_ps(dx[b])), acc[t]);
                acc[t] = _mm256_fmadd_ps(bi, _mm256_set1_ps(dx[nb + b]), acc[t]);
            }
        }
    }
}

static void mlx_chunk_any(const cm_matrix *w, const uint8_t *grp, int h, const uint8_t *act, size_t stride, int nt,
                          __m256 *acc) {
    switch (w->sb_type) {
    case CM_F32: mlx_chunk(w, grp, h, act, stride, nt, acc, CM_F32); break;
    case CM_BF16: mlx_chunk(w, grp, h, act, stride, nt, acc, CM_BF16); break;
    default: mlx_chunk(w, grp, h, act, stride, nt, acc, CM_F16); break;
    }
}

void cm_r16m_gemm_avx2(const cm_matrix *w, const void *packed, size_t g0, size_t g1, const uint8_t *act,
                       size_t act_stride, size_t n_tok, float *y, size_t ldy) {
    size_t rg = (w->cols / w->group_size) * cm_r16m_group_bytes(w);
    __m256 acc[NT_MAX];
    for (size_t g = g0; g < g1; g++) {
        const uint8_t *grp = (const uint8_t *)packed + g * rg;
        size_t nr = w->rows - g * 16 < 16 ? w->rows - g * 16 : 16;
        for (size_t t0 = 0; t0 < n_tok; t0 += NT_MAX) {
            int nt = (int)(n_tok - t0 < NT_MAX ? n_tok - t0 : NT_MAX);
            for (int h = 0; h < 2 && (size_t)(8 * h) < nr; h++) {
                mlx_chunk_any(w, grp, h, act + t0 * act_stride, act_stride, nt, acc);
                for (int t = 0; t < nt; t++) store_rows(y + (t0 + (size_t)t) * ldy + g * 16 + 8 * (size_t)h, acc[t], nr - 8 * (size_t)h);
            }
        }
    }
}
