/* compute/cpu/quants_r16m_avx512.c: the R16M kernel (MLX 4-bit repacked; quants_r16m_ref.c has the
 * layout and the oracle) with AVX-512 VNNI: the 16 rows of a row group in the 16 int32 lanes; per
 * block of 32 columns 4 loads and 8 nibble masks shared by the tokens of a chunk, then per token
 * 16 vpdpbusd (the high and the low byte of its 16-bit activations), a shift and add, a convert
 * and two fused multiply-adds (scale, bias). The 16 vpdpbusd run as four chains of 4 (two per
 * byte, the low and the high nibbles), added at the end: with two chains of 8 an Intel Xeon with
 * two VNNI ports waited on their latency (prefill P=128 +7-14 %; integer sums, so the results do
 * not change). Same operations in the same order for each token
 * whatever the chunk: bit-identical to cm_r16m_gemm_ref and to the token alone.
 * Compiled with the AVX-512 flags (F, BW, VL, VNNI); chosen by cm_r16m_select (select.c). */
#include "compute/cpu/quants.h"

#include <immintrin.h>
#include <math.h>

static inline int32_t rd32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 16 scales or biases of sb type (F16, BF16, F32) at p. */
static inline __attribute__((always_inline)) __m512 load_sb(uint32_t sb, const uint8_t *p) {
    if (sb == CM_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
    if (sb == CM_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

static inline __attribute__((always_inline)) void chunk(const cm_matrix *w, const uint8_t *grp, const uint8_t *act,
                                                        size_t stride, int nt, __m512 *out, uint32_t sb) {
    size_t cols = w->cols, gs = w->group_size, ng = cols / gs, nb = cols / 32, sz = sb == CM_F32 ? 4 : 2;
    size_t gb = 32 * sz + gs / 32 * 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[8];
    _Pragma("GCC unroll 8") for (int t = 0; t < 8; t++) acc[t] = _mm512_setzero_ps();
    for (size_t gi = 0; gi < ng; gi++) {
        const uint8_t *gp = grp + gi * gb;
        __m512 sc = load_sb(sb, gp), bi = load_sb(sb, gp + 16 * sz);
        for (size_t bl = 0; bl < gs / 32; bl++) {
            size_t b = gi * (gs / 32) + bl;
            const uint8_t *blk = gp + 32 * sz + bl * 256;
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 192, _MM_HINT_T0);
            __m512i wl[4], wh[4];
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
                __m512i raw = _mm512_loadu_si512((const void *)(blk + 64 * k));
                wl[k] = _mm512_and_si512(raw, m4);
                wh[k] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
            }
            _Pragma("GCC unroll 8") for (int t = 0; t < 8; t++) {
                if (t >= nt) break;
                const uint8_t *a = act + (size_t)t * stride;
                const int8_t *hi = (const int8_t *)a + 32 * b, *lo = hi + cols;
                const float *dx = (const float *)(const void *)(a + 2 * cols);
                __m512i sh = _mm512_setzero_si512(), sl = sh, sh2 = sh, sl2 = sh;
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
                    sh = _mm512_dpbusd_epi32(sh, wl[k], _mm512_set1_epi32(rd32(hi + 4 * k)));
                    sh2 = _mm512_dpbusd_epi32(sh2, wh[k], _mm512_set1_epi32(rd32(hi + 16 + 4 * k)));
                    sl = _mm512_dpbusd_epi32(sl, wl[k], _mm512_set1_epi32(rd32(lo + 4 * k)));
                    sl2 = _mm512_dpbusd_epi32(sl2, wh[k], _mm512_set1_epi32(rd32(lo + 16 + 4 * k)));
                }
                sh = _mm512_add_epi32(sh, sh2);
                sl = _mm512_add_epi32(sl, sl2);
                __m512i s = _mm512_add_epi32(_mm512_slli_epi32(sh, 8), sl);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sc, _mm512_set1_ps(dx[b])), acc[t]);
                acc[t] = _mm512_fmadd_ps(bi, _mm512_set1_ps(dx[nb + b]), acc[t]);
            }
        }
    }
    _Pragma("GCC unroll 8") for (int t = 0; t < 8; t++) out[t] = acc[t];
}

/* One specialisation per token count and scale type: the loops above unroll fully. */
#define R16M_CHUNK(NT)                                                                                            \
    static void chunk_##NT(const cm_matrix *w, const uint8_t *grp, const uint8_t *act, size_t stride, __m512 *out) { \
        switch (w->sb_type) {                                                                                     \
        case CM_F32: chunk(w, grp, act, stride, NT, out, CM_F32); break;                                          \
        case CM_BF16: chunk(w, grp, act, stride, NT, out, CM_BF16); break;                                        \
        default: chunk(w, grp, act, stride, NT, out, CM_F16); break;                                              \
        }                                                                                                         \
    }
R16M_CHUNK(1)
R16M_CHUNK(2)
R16M_CHUNK(3)
R16M_CHUNK(4)
R16M_CHUNK(5)
R16M_CHUNK(6)
R16M_CHUNK(7)
R16M_CHUNK(8)

void cm_r16m_gemm_avx512(const cm_matrix *w, const void *packed, size_t g0, size_t g1, const uint8_t *act,
                         size_t act_stride, size_t n_tok, float *y, size_t ldy) {
    size_t rg = (w->cols / w->group_size) * cm_r16m_group_bytes(w);
    __m512 out[8];
    for (size_t g = g0; g < g1; g++) {
        const uint8_t *grp = (const uint8_t *)packed + g * rg;
        size_t nr = w->rows - g * 16 < 16 ? w->rows - g * 16 : 16;
        __mmask16 keep = (__mmask16)((1u << nr) - 1);
        for (size_t t0 = 0; t0 < n_tok; t0 += 8) {
            size_t nt = n_tok - t0 < 8 ? n_tok - t0 : 8;
            const uint8_t *a = act + t0 * act_stride;
            switch (nt) {
            case 1: chunk_1(w, grp, a, act_stride, out); break;
            case 2: chunk_2(w, grp, a, act_stride, out); break;
            case 3: chunk_3(w, grp, a, act_stride, out); break;
            case 4: chunk_4(w, grp, a, act_stride, out); break;
            case 5: chunk_5(w, grp, a, act_stride, out); break;
            case 6: chunk_6(w, grp, a, act_stride, out); break;
            case 7: chunk_7(w, grp, a, act_stride, out); break;
            default: chunk_8(w, grp, a, act_stride, out); break;
            }
            for (size_t t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ldy + g * 16, keep, out[t]);
        }
    }
}

/* cm_r16m_quantize with AVX-512 (byte-identical: the same comparisons, division, products and
 * rounding half away from zero by truncation of f +- 0.5). */
void cm_r16m_quantize_avx512(const float *x, size_t cols, void *act) {
    size_t nb = cols / 32;
    int8_t *hi = act, *lo = hi + cols;
    float *d = (float *)(void *)(lo + cols), *bx = d + nb;
    const __m512 lim = _mm512_set1_ps(32512.0f), half = _mm512_set1_ps(0.5f);
    const __m512i sgn = _mm512_set1_epi32((int)0x80000000u), c128 = _mm512_set1_epi32(128), c255 = _mm512_set1_epi32(255);
    for (size_t b = 0; b < nb; b++) {
        __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
        __m512 a0 = _mm512_castsi512_ps(_mm512_andnot_si512(sgn, _mm512_castps_si512(x0)));
        __m512 a1 = _mm512_castsi512_ps(_mm512_andnot_si512(sgn, _mm512_castps_si512(x1)));
        /* a NaN or Inf anywhere: x - x is not 0 there */
        __mmask16 bad0 = _mm512_cmp_ps_mask(_mm512_sub_ps(x0, x0), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        __mmask16 bad1 = _mm512_cmp_ps_mask(_mm512_sub_ps(x1, x1), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        bool bad = (bad0 | bad1) != 0;
        float amax = bad ? 0.0f : _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        float db = amax / 32512.0f, id = db > 0 && !bad ? 32512.0f / amax : 0.0f;
        __m512 idv = _mm512_set1_ps(id);
        if (bad) x0 = x1 = _mm512_setzero_ps(); /* as the reference: v = 0, d = NaN */
        __m512i v[2], s = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512 f = _mm512_mul_ps(h ? x1 : x0, idv);
            f = _mm512_min_ps(_mm512_max_ps(f, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
            __m512 r = _mm512_or_ps(half, _mm512_and_ps(f, _mm512_castsi512_ps(sgn))); /* +-0.5 with f's sign */
            v[h] = _mm512_cvttps_epi32(_mm512_add_ps(f, r));
            s = _mm512_add_epi32(s, v[h]);
            __m512i l = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(v[h], c128), c255), c128);
            __m512i hv = _mm512_srai_epi32(_mm512_sub_epi32(v[h], l), 8);
            _mm_storeu_si128((__m128i *)(void *)(hi + 32 * b + 16 * (size_t)h), _mm512_cvtepi32_epi8(hv));
            _mm_storeu_si128((__m128i *)(void *)(lo + 32 * b + 16 * (size_t)h), _mm512_cvtepi32_epi8(l));
        }
        int32_t sum = _mm512_reduce_add_epi32(s);
        d[b] = bad ? NAN : db;
        bx[b] = d[b] * (float)sum;
    }
}
