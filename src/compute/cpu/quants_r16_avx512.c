/* compute/cpu/quants_r16_avx512.c: the R16 kernel (quants_r16_ref.c has the layout and the oracle)
 * with AVX-512 VNNI: the 16 rows of a group in the 16 int32 lanes, so a block of 32 columns is 4
 * loads and 8 nibble masks shared by the tokens of a chunk, then per token 8 vpdpbusd against its
 * activation bytes broadcast from memory, a convert and one fused multiply-add. No horizontal sum
 * anywhere. The 8 vpdpbusd of a token run as two chains of 4 (low and high nibbles) added at the
 * end: with one chain of 8 a chunk of 8 tokens is 8 dependent sequences of 8 x 5 cycles, which
 * held an Intel Xeon (Sapphire/Emerald Rapids class, two VNNI ports) to 155 GMAC/s a thread;
 * two chains measured 180-187 (bench/kernels.c, 2048 x 8192, 16-128 tokens). Integer sums in
 * another order are the same sums, so results stay bit-identical. Tokens go in chunks of up to 8 (their accumulators stay in registers); the same
 * operations in the same order for each token whatever the chunk, hence bit-identical results
 * for a token alone or in a batch, and equal to cm_r16_gemm_ref bit for bit.
 * Compiled with the AVX-512 flags (F, BW, VL, VNNI); chosen by cm_r16_select. */
#include "compute/cpu/quants.h"

#include <immintrin.h>

#define R16_BLOCK 288

static inline int32_t rd32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* q = clamp(roundf(v), -127, 127) with roundf's half-away-from-zero rule and NaN -> 0, as the
 * Q8_0 reference (quants_avx2.c's round_q8 with 16 lanes). */
static inline __m512i round_q8(__m512 v) {
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 one = _mm512_or_ps(_mm512_and_ps(v, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(1.0f));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, one));
}

void cm_r16_quantize_avx512(const float *x, size_t cols, void *act) {
    size_t nb = cols / 32;
    int8_t *q;
    float *d;
    int32_t *c;
    cm_r16_act_parts(act, cols, &q, &d, &c);
    for (size_t b = 0; b < nb; b++) {
        __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
        /* max |x|, a NaN ignored (it loses every max against the running value, as in absmax) */
        __m512 m = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(x1), m);
        float dd = _mm512_reduce_max_ps(m) / 127.0f, id = dd ? 1.0f / dd : 0.0f;
        d[b] = lm_f16_to_f32(lm_f32_to_f16(dd));
        __m512 idv = _mm512_set1_ps(id);
        __m512i q0 = round_q8(_mm512_mul_ps(x0, idv)), q1 = round_q8(_mm512_mul_ps(x1, idv));
        _mm_storeu_si128((__m128i *)(void *)(q + 32 * b), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(void *)(q + 32 * b + 16), _mm512_cvtepi32_epi8(q1));
        c[b] = -8 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* Rows of group grp (16 lanes) for NT tokens of act, added over blocks [0, nb). */
#define R16_CHUNK(NT)                                                                                             \
    static inline __attribute__((always_inline)) void chunk_##NT(const uint8_t *grp, size_t nb, size_t cols,     \
                                                                 const uint8_t *act, size_t stride, __m512 *out) { \
        const __m512i m4 = _mm512_set1_epi8(0x0F);                                                                \
        __m512 acc[NT];                                                                                           \
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();                        \
        for (size_t b = 0; b < nb; b++) {                                                                          \
            const uint8_t *blk = grp + b * R16_BLOCK;                                                             \
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH, _MM_HINT_T0);                                     \
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 64, _MM_HINT_T0);                                \
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 128, _MM_HINT_T0);                               \
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 192, _MM_HINT_T0);                               \
            _mm_prefetch((const char *)blk + CM_DECODE_PREFETCH + 256, _MM_HINT_T0);                               \
            __m512i lo[4], hi[4];                                                                                  \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {                                                 \
                __m512i raw = _mm512_loadu_si512((const void *)(blk + 32 + 64 * k));                             \
                lo[k] = _mm512_and_si512(raw, m4);                                                                \
                hi[k] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);                                          \
            }                                                                                                      \
            __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk));                                \
            _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {                                                \
                const uint8_t *a = act + (size_t)t * stride;                                                      \
                const int8_t *q = (const int8_t *)a + 32 * b;                                                     \
                float dx = ((const float *)(a + cols))[b];                                                        \
                __m512i s = _mm512_set1_epi32(((const int32_t *)(a + cols + 4 * (cols / 32)))[b]);               \
                __m512i s2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[0], _mm512_set1_epi32(rd32(q + 16)));  \
                s = _mm512_dpbusd_epi32(s, lo[0], _mm512_set1_epi32(rd32(q)));                                   \
                _Pragma("GCC unroll 4") for (int k = 1; k < 4; k++) {                                             \
                    s = _mm512_dpbusd_epi32(s, lo[k], _mm512_set1_epi32(rd32(q + 4 * k)));                       \
                    s2 = _mm512_dpbusd_epi32(s2, hi[k], _mm512_set1_epi32(rd32(q + 16 + 4 * k)));                \
                }                                                                                                  \
                s = _mm512_add_epi32(s, s2);                                                                       \
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(dx)), acc[t]);  \
            }                                                                                                      \
        }                                                                                                          \
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) out[t] = acc[t];                                     \
    }
R16_CHUNK(1)
R16_CHUNK(2)
R16_CHUNK(3)
R16_CHUNK(4)
R16_CHUNK(5)
R16_CHUNK(6)
R16_CHUNK(7)
R16_CHUNK(8)

void cm_r16_gemm_avx512(const void *packed, size_t cols, size_t rows, size_t g0, size_t g1, const uint8_t *act,
                        size_t act_stride, size_t n_tok, float *y, size_t ldy) {
    size_t nb = cols / 32;
    __m512 out[8];
    for (size_t g = g0; g < g1; g++) {
        const uint8_t *grp = (const uint8_t *)packed + g * nb * R16_BLOCK;
        size_t nr = rows - g * 16 < 16 ? rows - g * 16 : 16;
        __mmask16 keep = (__mmask16)((1u << nr) - 1);
        for (size_t t0 = 0; t0 < n_tok; t0 += 8) {
            size_t nt = n_tok - t0 < 8 ? n_tok - t0 : 8;
            const uint8_t *a = act + t0 * act_stride;
            switch (nt) {
            case 1: chunk_1(grp, nb, cols, a, act_stride, out); break;
            case 2: chunk_2(grp, nb, cols, a, act_stride, out); break;
            case 3: chunk_3(grp, nb, cols, a, act_stride, out); break;
            case 4: chunk_4(grp, nb, cols, a, act_stride, out); break;
            case 5: chunk_5(grp, nb, cols, a, act_stride, out); break;
            case 6: chunk_6(grp, nb, cols, a, act_stride, out); break;
            case 7: chunk_7(grp, nb, cols, a, act_stride, out); break;
            default: chunk_8(grp, nb, cols, a, act_stride, out); break;
            }
            for (size_t t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ldy + g * 16, keep, out[t]);
        }
    }
}
