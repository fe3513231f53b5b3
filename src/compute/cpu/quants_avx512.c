/* compute/cpu/quants_avx512.c: AVX-512 (F, BW, VL) + VNNI integer kernels.
 * Owns: the prefill kernels (a tile of 8 weight rows times 16 tokens, vpdpbusd with the tokens in
 * the lanes and each weight's 4 bytes broadcast) with their activation quantizer, and VNNI
 * versions of the decode dot kernels (one row times Q8_0 / Q8_0X4 / Q8_K activations) for Q8_0,
 * Q4_0, Q5_0, Q4_K and Q6_K. Block layouts are those of quants_ref.c, the oracle the tests compare with.
 * Compiled only on x86 with -mavx512f -mavx512bw -mavx512vl -mavx512vnni (and the AVX2 set);
 * chosen by cm_gemm_select() and cm_dotq_select() (select.c). */
#include "compute/cpu/quants_gemm_x86.h"

void cm_gemm_prep_avx512(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1) {
    gx_prep(x, ldx, a, g0, g1);
}

/* One tile: TR rows (already unpacked) times the 16 tokens of a group over nb blocks, added to
 * out[TR][16] (or stored, when first).
 * bk: elements per scale (32, or 16 for Q6_K); kshift: log2 of the offset k (-1: none);
 * has_min: add nm * d * sum(q) of the tokens. */
static inline __attribute__((always_inline)) void tile512(const uint8_t *wq, const float *dw,
                                                       const float *nm, size_t nb,
                                                       const uint8_t *act, float *out, bool first,
                                                       int bk, int kshift, bool has_min) {
    __m512 acc[TR];
    #pragma GCC unroll 8
    for (int r = 0; r < TR; r++) acc[r] = first ? _mm512_setzero_ps() : _mm512_load_ps(out + 16 * r);
    for (size_t b = 0; b < nb; b++, act += CM_GEMM_ACT_BLOCK, wq += TR * 32, dw += 2 * TR, nm += TR) {
        __m512i x[8];
        #pragma GCC unroll 8
        for (int k = 0; k < 8; k++) x[k] = _mm512_load_si512((const void *)(act + 64 * k));
        __m512 dx = _mm512_load_ps((const float *)(act + 512));
        __m512i c0 = _mm512_setzero_si512(), c1 = c0;
        if (kshift >= 0) {
            __m512i n0 = _mm512_load_si512((const void *)(act + 576));
            __m512i n1 = _mm512_load_si512((const void *)(act + 640));
            if (bk == 32) {
                c0 = _mm512_slli_epi32(_mm512_add_epi32(n0, n1), (unsigned)kshift);
            } else {
                c0 = _mm512_slli_epi32(n0, (unsigned)kshift);
                c1 = _mm512_slli_epi32(n1, (unsigned)kshift);
            }
        }
        __m512 xs = has_min ? _mm512_load_ps((const float *)(act + 704)) : _mm512_setzero_ps();
        #pragma GCC unroll 8
        for (int r = 0; r < TR; r++) {
            const uint8_t *w = wq + 32 * r;
            if (bk == 32) {
                __m512i s = c0;
                #pragma GCC unroll 8
                for (int k = 0; k < 8; k++) s = _mm512_dpbusd_epi32(s, _mm512_set1_epi32(gx_rd32(w + 4 * k)), x[k]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dx, _mm512_set1_ps(dw[r])), acc[r]);
            } else {
                __m512i s0 = c0, s1 = c1;
                #pragma GCC unroll 8
                for (int k = 0; k < 4; k++) {
                    s0 = _mm512_dpbusd_epi32(s0, _mm512_set1_epi32(gx_rd32(w + 4 * k)), x[k]);
                    s1 = _mm512_dpbusd_epi32(s1, _mm512_set1_epi32(gx_rd32(w + 16 + 4 * k)), x[k + 4]);
                }
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(dx, _mm512_set1_ps(dw[r])), acc[r]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(dx, _mm512_set1_ps(dw[TR + r])), acc[r]);
            }
            if (has_min) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(nm[r]), xs, acc[r]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < TR; r++) _mm512_store_ps(out + 16 * r, acc[r]);
}

#define GEMM(name, bk, kshift, has_min) \
    void cm_gemm_##name##_avx512(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, \
                                 float *y, size_t ldy, void *scratch) { \
        gx_gemm(w, r0, r1, a, y, ldy, scratch, gx_unpack_##name, tile512, bk, kshift, has_min); \
    }
GEMM(q4_0, 32, 3, false)
GEMM(q5_0, 32, 4, false)
GEMM(q8_0, 32, 7, false)
GEMM(q4_k, 32, -1, true)
GEMM(q5_k, 32, -1, true)
GEMM(q6_k, 16, 5, false)

/* ---- decode: one row times activations quantized once (Q8_0 or Q8_K) ----
 * vpdpbusd wants one unsigned operand: 4-bit and 6-bit quants are unsigned already (their
 * offset, 8 or 32, comes back through the sums of the activations); Q8_0 rows meet the
 * activations plus 128 and give back 128 * sum(row). Two blocks of 32 per 512-bit vector. */

/* Decode prefetch: the line CM_DECODE_PREFETCH bytes ahead (quants.h says why and how far). */

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* d0 in lanes 0..7, d1 in lanes 8..15 */
static inline __m512 two_scales(float d0, float d1) {
    return _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

static inline __m512i cat256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static inline __m256i ld256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Q8_0 row x Q8_0 activations {f16 d; i8 qs[32]}. */
float cm_dotq_q8_0_avx512(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    size_t nb = n / 32, i = 0;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512 acc = _mm512_setzero_ps();
    for (; i + 2 <= nb; i += 2, b += 68, y += 68) {
        gx_prefetch_ahead(b, 1);
        __m512i w = cat256(ld256(b + 2), ld256(b + 36)), x = cat256(ld256(y + 2), ld256(y + 36));
        __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(x, bias), w);
        __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, w);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(s, c)),
                              two_scales(gx_f16(b) * gx_f16(y), gx_f16(b + 34) * gx_f16(y + 34)), acc);
    }
    float sum = _mm512_reduce_add_ps(acc);
    if (i < nb) {
        const __m256i bias8 = _mm256_set1_epi8((char)0x80);
        __m256i w = ld256(b + 2), x = ld256(y + 2);
        __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_xor_si256(x, bias8), w);
        __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias8, w);
        sum += hsum256(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s, c)), _mm256_set1_ps(gx_f16(b) * gx_f16(y))));
    }
    return sum;
}

/* Q4_0 row x Q8_0X4 activations (quants_ref.c): sum((q - 8) * x) per block, four blocks (72
 * bytes) a step. The blocks' quant bytes sit at even offsets (18k + 2), so one two-source word
 * permute gathers the 64 of them in block order and another spreads the four f16 scales over
 * their blocks' lanes; the activations were laid out to match, with Q4_0's -8 * sum(x) already
 * in the accumulator they start. The last step takes the 1-3 blocks left with masked loads (the
 * masked-off bytes are zeros, never read). */
static inline __m512 q4_0x4_step(const uint8_t *b, const uint8_t *y, size_t r, __m512 acc) {
    static const int16_t qw[32] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,
                                   19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35};
    static const int16_t sw[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};
    const __m512i qidx = _mm512_loadu_si512((const void *)qw), sidx = _mm512_loadu_si512((const void *)sw);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i r0, r1, xl, xh, s;
    __m512 dx;
    if (r == 4) {
        r0 = _mm512_loadu_si512((const void *)b);
        r1 = _mm512_maskz_loadu_epi16((__mmask32)0xF, b + 64);
        xl = _mm512_loadu_si512((const void *)y);
        xh = _mm512_loadu_si512((const void *)(y + 64));
        s = _mm512_loadu_si512((const void *)(y + 128));
        dx = _mm512_loadu_ps((const void *)(y + 192));
    } else {
        __mmask64 mb = ((__mmask64)1 << (16 * r)) - 1;
        __mmask16 ml = (__mmask16)((1u << (4 * r)) - 1);
        r0 = _mm512_maskz_loadu_epi16((__mmask32)((1u << (9 * r)) - 1), b);
        r1 = _mm512_setzero_si512();
        xl = _mm512_maskz_loadu_epi8(mb, y);
        xh = _mm512_maskz_loadu_epi8(mb, y + 16 * r);
        s = _mm512_maskz_loadu_epi32(ml, y + 32 * r);
        dx = _mm512_maskz_loadu_ps(ml, y + 48 * r);
    }
    __m512i q = _mm512_permutex2var_epi16(r0, qidx, r1);
    s = _mm512_dpbusd_epi32(s, _mm512_and_si512(q, m4), xl);
    s = _mm512_dpbusd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4), xh);
    __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(sidx, r0)));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc);
}

float cm_dotq_q4_0_avx512(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    size_t nb = n / 32, g = 0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    for (; g + 8 <= nb; g += 8, b += 144, y += 512) {
        gx_prefetch_ahead(b, 3);
        acc0 = q4_0x4_step(b, y, 4, acc0);
        acc1 = q4_0x4_step(b + 72, y + 256, 4, acc1);
    }
    for (; g < nb; g += 4, b += 72, y += 256) acc0 = q4_0x4_step(b, y, LM_MIN((size_t)4, nb - g), acc0);
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* Q5_0 row x Q8_0X4 (its step kept apart from Q4_0's: a shared load/finish form measured 10-17 %
 * slower in bench/kernels.c): Q4_0's step with the fifth bits and the offset 16 (twice the
 * -8 * sum the activations carry). Four blocks of 22 bytes: d at word 11k, qh at byte 22k + 2, the quants at
 * words 11k + 3 .. 11k + 10. Bit j of qh is element j's fifth bit and bit 16 + j element
 * 16 + j's, so the low halves of the four qh (gathered by a third word permute) make a 64-bit
 * mask over the low-nibble bytes and the high halves one over the high-nibble bytes; a masked
 * byte add puts the 16 in. */
static inline __m512 q5_0x4_step(const uint8_t *b, const uint8_t *y, size_t r, __m512 acc) {
    static const int16_t qw[32] = {3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 19, 20, 21,
                                   25, 26, 27, 28, 29, 30, 31, 32, 36, 37, 38, 39, 40, 41, 42, 43};
    static const int16_t sw[32] = {0, 0, 0, 0, 11, 11, 11, 11, 22, 22, 22, 22, 33, 33, 33, 33};
    /* the low 16 bits of the four qh (words 11k + 1), then their high 16 bits (11k + 2) */
    static const int16_t hw[32] = {1, 12, 23, 34, 2, 13, 24, 35};
    const __m512i qidx = _mm512_loadu_si512((const void *)qw), sidx = _mm512_loadu_si512((const void *)sw);
    const __m512i m4 = _mm512_set1_epi8(0x0F), h16 = _mm512_set1_epi8(0x10);
    __m512i r0, r1, xl, xh, s;
    __m512 dx;
    if (r == 4) {
        r0 = _mm512_loadu_si512((const void *)b);
        r1 = _mm512_maskz_loadu_epi16((__mmask32)0xFFF, b + 64);
        xl = _mm512_loadu_si512((const void *)y);
        xh = _mm512_loadu_si512((const void *)(y + 64));
        s = _mm512_loadu_si512((const void *)(y + 128));
        dx = _mm512_loadu_ps((const void *)(y + 192));
    } else {
        size_t words = 11 * r;
        __mmask64 mb = ((__mmask64)1 << (16 * r)) - 1;
        __mmask16 mlanes = (__mmask16)((1u << (4 * r)) - 1);
        r0 = _mm512_maskz_loadu_epi16(words >= 32 ? (__mmask32)0xFFFFFFFF : (__mmask32)((1u << words) - 1), b);
        r1 = words > 32 ? _mm512_maskz_loadu_epi16((__mmask32)((1u << (words - 32)) - 1), b + 64) : _mm512_setzero_si512();
        xl = _mm512_maskz_loadu_epi8(mb, y);
        xh = _mm512_maskz_loadu_epi8(mb, y + 16 * r);
        s = _mm512_maskz_loadu_epi32(mlanes, y + 32 * r);
        dx = _mm512_maskz_loadu_ps(mlanes, y + 48 * r);
    }
    __m512i q = _mm512_permutex2var_epi16(r0, qidx, r1);
    __m128i qh = _mm512_castsi512_si128(_mm512_permutex2var_epi16(r0, _mm512_loadu_si512((const void *)hw), r1));
    uint64_t ml = (uint64_t)_mm_cvtsi128_si64(qh), mh = (uint64_t)_mm_extract_epi64(qh, 1);
    __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
    lo = _mm512_mask_add_epi8(lo, (__mmask64)ml, lo, h16);
    hi = _mm512_mask_add_epi8(hi, (__mmask64)mh, hi, h16);
    s = _mm512_add_epi32(s, s);
    s = _mm512_dpbusd_epi32(s, lo, xl);
    s = _mm512_dpbusd_epi32(s, hi, xh);
    __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(r0, sidx, r1))); /* word 33 is in r1 */
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc);
}

float cm_dotq_q5_0_avx512(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    size_t nb = n / 32, g = 0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    for (; g + 8 <= nb; g += 8, b += 176, y += 512) {
        gx_prefetch_ahead(b, 3);
        acc0 = q5_0x4_step(b, y, 4, acc0);
        acc1 = q5_0x4_step(b + 88, y + 256, 4, acc1);
    }
    for (; g < nb; g += 4, b += 88, y += 256) acc0 = q5_0x4_step(b, y, LM_MIN((size_t)4, nb - g), acc0);
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}. */
static inline float q8k_d(const uint8_t *y) {
    float d;
    memcpy(&d, y, 4);
    return d;
}

/* Q4_K row x Q8_K: per super-block d*yd * sum_j sc_j sum(q q8) - dmin*yd * sum_j m_j sum(q8).
 * The 8 six-bit scales and mins come out of their 12 bytes with 32-bit masks and shifts (sc 0-3
 * = s[0-3] & 63, sc 4-7 = s[8-11] & 15 | (s[0-3] >> 6) << 4; the mins likewise from s[4-7] and
 * the high nibbles of s[8-11]). 64 bytes of nibbles a step: the low nibbles hold sub-blocks j and
 * j + 2, the high ones j + 1 and j + 3, each against its 32 activations. The integer dot of a
 * lane (|p| < 2^15) times its sub-block's scale is one vpdpwssd: the scale sits in the low half
 * of its 32-bit lane and the high half, p's sign, meets zero. The mins meet the activations'
 * sums of 16 through one pmaddwd. */
float cm_dotq_q4_k_avx512(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i ia = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i ib = _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m512i four = _mm512_set1_epi32(4);
    __m512 acc = _mm512_setzero_ps();
    __m128 macc = _mm_setzero_ps();
    for (size_t i = 0; i < n / 256; i++, b += 144, y += 292) {
        gx_prefetch_ahead(b, 3);
        float yd = q8k_d(y);
        uint32_t w0 = (uint32_t)gx_rd32(b + 4), w1 = (uint32_t)gx_rd32(b + 8), w2 = (uint32_t)gx_rd32(b + 12);
        uint64_t scs = (w0 & 0x3F3F3F3Fu) | (uint64_t)((w2 & 0x0F0F0F0Fu) | ((w0 >> 2) & 0x30303030u)) << 32;
        uint64_t mns = (w1 & 0x3F3F3F3Fu) | (uint64_t)(((w2 >> 4) & 0x0F0F0F0Fu) | ((w1 >> 2) & 0x30303030u)) << 32;
        __m512i sc = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)scs));
        __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)(y + 260)), _mm_loadu_si128((const __m128i *)(y + 276)));
        __m128i msum = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mns)), pairs);
        macc = _mm_fmadd_ps(_mm_set1_ps(gx_f16(b + 2) * yd), _mm_cvtepi32_ps(msum), macc);
        const uint8_t *qs = b + 16, *q8 = y + 4;
        __m512i sum = _mm512_setzero_si512(), sa = _mm512_permutexvar_epi32(ia, sc), sb = _mm512_permutexvar_epi32(ib, sc);
        for (int h = 0; h < 2; h++, qs += 64, q8 += 128) {
            __m512i raw = _mm512_loadu_si512((const void *)qs);
            __m512i xa = cat256(ld256(q8), ld256(q8 + 64)), xb = cat256(ld256(q8 + 32), ld256(q8 + 96));
            __m512i pa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(raw, m4), xa);
            __m512i pb = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4), xb);
            sum = _mm512_dpwssd_epi32(sum, pa, sa);
            sum = _mm512_dpwssd_epi32(sum, pb, sb);
            sa = _mm512_permutexvar_epi32(_mm512_add_epi32(ia, four), sc);
            sb = _mm512_permutexvar_epi32(_mm512_add_epi32(ib, four), sc);
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(gx_f16(b) * yd), _mm512_cvtepi32_ps(sum), acc);
    }
    __m128 m = _mm_add_ps(macc, _mm_movehl_ps(macc, macc));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return _mm512_reduce_add_ps(acc) - _mm_cvtss_f32(m);
}

/* Q6_K row x Q8_K: d*yd * sum_s sc_s (sum(q q8) - 32 sum(q8)), q in 0..63; four sub-blocks of
 * 16 per vector, each scale spread over its 4 lanes and applied by vpdpwssd (a lane's integer dot
 * is under 4 * 63 * 128 < 2^15; the scale in its low half, zero against p's sign). */
float cm_dotq_q6_k_avx512(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m128i spread0 = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m128i spread1 = _mm_setr_epi8(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);
    __m512 acc = _mm512_setzero_ps();
    __m256 cacc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / 256; i++, b += 210, y += 292) {
        gx_prefetch_ahead(b, 4);
        float d = gx_f16(b + 208) * q8k_d(y);
        const int8_t *sc = (const int8_t *)(b + 192);
        /* the offset 32: sum_s sc_s * bsum_s in one pmaddwd */
        __m256i corr = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)),
                                         _mm256_loadu_si256((const __m256i *)(y + 260)));
        cacc = _mm256_fmadd_ps(_mm256_set1_ps(d * 32.0f), _mm256_cvtepi32_ps(corr), cacc);
        __m512i sum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *q8 = y + 4 + 128 * h;
            __m256i l0 = ld256(ql), l1 = ld256(ql + 32), qh = ld256(b + 128 + 32 * h);
            __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            __m128i s8;
            int64_t s8v;
            memcpy(&s8v, sc + 8 * h, 8);
            s8 = _mm_cvtsi64_si128(s8v);
            /* int16 in the low half, zero in the high half of each lane */
            __m512i sc0 = _mm512_cvtepu16_epi32(_mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, spread0)));
            __m512i sc1 = _mm512_cvtepu16_epi32(_mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, spread1)));
            __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), cat256(q0, q1), _mm512_loadu_si512((const void *)q8));
            __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), cat256(q2, q3), _mm512_loadu_si512((const void *)(q8 + 64)));
            sum = _mm512_dpwssd_epi32(sum, p0, sc0);
            sum = _mm512_dpwssd_epi32(sum, p1, sc1);
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sum), acc);
    }
    return _mm512_reduce_add_ps(acc) - hsum256(cacc);
}
