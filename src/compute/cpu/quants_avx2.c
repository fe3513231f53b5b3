/* compute/cpu/quants_avx2.c: AVX2+FMA+F16C row-dot kernels with float activations.
 * Owns: fast dot products of one weight row with x for F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K,
 * Q6_K and MLX rows of every bit width. Each unpacks the quants to 8-float vectors and
 * accumulates with FMA; block layouts are the same as in quants_ref.c, which is the oracle the
 * tests compare against.
 * Also the prefill tiles without VNNI (the end of the file; shared parts in quants_gemm_x86.h).
 * Compiled only on x86 with -mavx2 -mfma -mf16c; chosen by the cm_*_select() of select.c. */
#include "compute/cpu/quants_gemm_x86.h"

#include <immintrin.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 8 unsigned / signed bytes at p to floats. */
static inline __m256 u8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
static inline __m256 i8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

/* sum over 32 elements of q[i] * x[i] for 32 signed bytes in v. */
static inline __m256 dot32_i8(__m256i v, const float *x) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    __m256 s = _mm256_mul_ps(i8x8(lo), _mm256_loadu_ps(x));
    s = _mm256_fmadd_ps(i8x8(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8), s);
    s = _mm256_fmadd_ps(i8x8(hi), _mm256_loadu_ps(x + 16), s);
    return _mm256_fmadd_ps(i8x8(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), s);
}

/* The same for 16 signed bytes (one Q6_K sub-block). */
static inline __m256 dot16_i8(__m128i v, const float *x) {
    __m256 s = _mm256_mul_ps(i8x8(v), _mm256_loadu_ps(x));
    return _mm256_fmadd_ps(i8x8(_mm_srli_si128(v, 8)), _mm256_loadu_ps(x + 8), s);
}

/* sum of q * x and of x over 32 unsigned bytes in v. */
static inline __m256 dot32_u8(__m256i v, const float *x, __m256 *sx) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
    __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
    *sx = _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3));
    __m256 s = _mm256_mul_ps(u8x8(lo), x0);
    s = _mm256_fmadd_ps(u8x8(_mm_srli_si128(lo, 8)), x1, s);
    s = _mm256_fmadd_ps(u8x8(hi), x2, s);
    return _mm256_fmadd_ps(u8x8(_mm_srli_si128(hi, 8)), x3, s);
}

float cm_dot_f32_avx2(const void *row, const float *x, size_t n) {
    const float *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

/* The F16 and BF16 dots add in exactly the order of cm_dot_f32_avx2 (four accumulators over
 * steps of 32, a tail of 8 into the first, the same final sum), and the conversions are exact, so
 * a row gives the same float as dequantizing it and taking the F32 dot: how the products of
 * several tokens do it (compute/cpu/ops.c), which makes a token's result independent of the
 * batch it is in. */
static inline __m256 f16x8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

float cm_dot_f16_avx2(const void *row, const float *x, size_t n) {
    const uint8_t *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(f16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(f16x8(w + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(f16x8(w + 2 * i + 32), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(f16x8(w + 2 * i + 48), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(f16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += f16(w + 2 * i) * x[i];
    return s;
}

static inline __m256 bf16x8(const uint8_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

float cm_dot_bf16_avx2(const void *row, const float *x, size_t n) {
    const uint8_t *w = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(bf16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(w + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(bf16x8(w + 2 * i + 32), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(bf16x8(w + 2 * i + 48), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(bf16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, w + 2 * i, 2);
        s += lm_bf16_to_f32(h) * x[i];
    }
    return s;
}

/* Q8_0 {f16 d; i8 qs[32]}. */
float cm_dot_q8_0_avx2(const void *row, const float *x, size_t n) {
    const uint8_t *b = row;
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / 32; i++, b += 34, x += 32) {
        __m256 s = dot32_i8(_mm256_loadu_si256((const __m256i *)(b + 2)), x);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(b)), s, acc);
    }
    return hsum(acc);
}

/* Q4_0 {f16 d; u8 qs[16]}: low nibbles elements 0..15, high 16..31, (q - 8) * d. */
float cm_dot_q4_0_avx2(const void *row, const float *x, size_t n) {
    const uint8_t *b = row;
    const __m128i m4 = _mm_set1_epi8(0x0F), k8 = _mm_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / 32; i++, b += 18, x += 32) {
        __m128i qs = _mm_loadu_si128((const __m128i *)(b + 2));
        __m128i lo = _mm_sub_epi8(_mm_and_si128(qs, m4), k8);
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), k8);
        __m256 s = dot32_i8(_mm256_set_m128i(hi, lo), x);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(b)), s, acc);
    }
    return hsum(acc);
}

/* Q4_K: per sub-block of 32, d*sc * sum(q x) - dmin*m * sum(x); Q5_K (five): the same with a 5th
 * bit, bit j of qh[l] for element l of sub-block j. */
static inline __attribute__((always_inline)) float dot_k45(const void *row, const float *x, size_t n, bool five) {
    const uint8_t *b = row;
    size_t bb = five ? 176 : 144;
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / 256; i++, b += bb) {
        const uint8_t *qs = b + (five ? 48 : 16);
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
        float sc[8], mn[8];
        gx_k45_scales(b + 4, f16(b), f16(b + 2), sc, mn);
        for (int j = 0; j < 8; j += 2, qs += 32, x += 64) {
            __m256i w0, w1;
            gx_k45_quants(_mm256_loadu_si256((const __m256i *)qs), qh, j, five, &w0, &w1);
            __m256 sx0, sx1;
            __m256 q0 = dot32_u8(w0, x, &sx0);
            __m256 q1 = dot32_u8(w1, x + 32, &sx1);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(sc[j]), q0, acc);
            acc = _mm256_fnmadd_ps(_mm256_set1_ps(mn[j]), sx0, acc);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(sc[j + 1]), q1, acc);
            acc = _mm256_fnmadd_ps(_mm256_set1_ps(mn[j + 1]), sx1, acc);
        }
    }
    return hsum(acc);
}

float cm_dot_q4_k_avx2(const void *row, const float *x, size_t n) { return dot_k45(row, x, n, false); }
float cm_dot_q5_k_avx2(const void *row, const float *x, size_t n) { return dot_k45(row, x, n, true); }

/* Q6_K {ql[128]; qh[64]; i8 scales[16]; f16 d}: per half of 128, q_k (k = 0..3) for element
 * 32k + l takes a nibble of ql (low for k = 0, 1; high for k = 2, 3; bytes l or l + 32) and bits
 * 2k..2k+1 of qh[l]; 16-element sub-blocks have their own int8 scale. q6k_half unpacks half h of
 * block b into q[0..3], 32 unsigned 6-bit values each (the offset 32 not yet taken off). */
static inline void q6k_half(const uint8_t *b, int h, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const uint8_t *ql = b + 64 * h;
    __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
}

float cm_dot_q6_k_avx2(const void *row, const float *x, size_t n) {
    const uint8_t *b = row;
    const __m256i k32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / 256; i++, b += 210) {
        float d = f16(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int h = 0; h < 2; h++, sc += 8, x += 128) {
            __m256i q[4];
            q6k_half(b, h, q);
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_sub_epi8(q[k], k32);
                __m256 s0 = dot16_i8(_mm256_castsi256_si128(v), x + 32 * k);
                __m256 s1 = dot16_i8(_mm256_extracti128_si256(v, 1), x + 32 * k + 16);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[2 * k]), s0, acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[2 * k + 1]), s1, acc);
            }
        }
    }
    return hsum(acc);
}

static inline float sb_get(uint32_t sb_type, const void *base, size_t i) {
    const uint8_t *p = (const uint8_t *)base;
    if (sb_type == CM_F16) return f16(p + 2 * i);
    if (sb_type == CM_BF16) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return lm_bf16_to_f32(h);
    }
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}

/* The 8 consecutive fields of a width given by s0/s1 (shifts 0..3 and 4..7 times the width)
 * and mask, packed little-endian in w, as 8 int lanes. */
static inline __m256i unpack8(uint64_t w, __m256i s0, __m256i s1, __m256i mask) {
    __m256i v = _mm256_set1_epi64x((long long)w);
    __m256i lo = _mm256_and_si256(_mm256_srlv_epi64(v, s0), mask); /* v0 v1 v2 v3 in 64-bit lanes */
    __m256i hi = _mm256_and_si256(_mm256_srlv_epi64(v, s1), mask); /* v4 v5 v6 v7 */
    __m256i mixed = _mm256_or_si256(lo, _mm256_slli_epi64(hi, 32)); /* v0 v4 v1 v5 ... */
    return _mm256_permutevar8x32_epi32(mixed, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
}

/* MLX rows, group_size a multiple of 32 (cm_mlx_dot_select checks): per group
 * s * sum(q x) + b * sum(x). 4-bit: each uint32 word holds 8 values, value k in bits 4k..4k+3,
 * so one broadcast and a variable shift unpack a word into 8 lanes. 8-bit: bytes. Other widths:
 * every 8 values fill exactly `bits` bytes, read as one little-endian 64-bit window. */
float cm_mlx_dot_avx2(const cm_matrix *m, size_t row, const float *x) {
    const uint8_t *p = (const uint8_t *)m->data + row * m->row_bytes;
    size_t gs = m->group_size, n_groups = m->cols / gs;
    uint32_t bits = m->bits;
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256i m4 = _mm256_set1_epi32(0x0F);
    const __m256i s0 = _mm256_setr_epi64x(0, bits, 2 * bits, 3 * bits);
    const __m256i s1 = _mm256_setr_epi64x(4 * bits, 5 * bits, 6 * bits, 7 * bits);
    const __m256i mb = _mm256_set1_epi64x((1ll << bits) - 1);
    __m256 acc = _mm256_setzero_ps();
    for (size_t g = 0; g < n_groups; g++) {
        float s = sb_get(m->sb_type, m->scales, row * n_groups + g);
        float bias = sb_get(m->sb_type, m->biases, row * n_groups + g);
        __m256 qx = _mm256_setzero_ps(), sx = _mm256_setzero_ps();
        const float *xg = x + g * gs;
        if (bits == 4) {
            const uint8_t *pg = p + g * gs / 2;
            for (size_t k = 0; k < gs; k += 8) {
                uint32_t w;
                memcpy(&w, pg + k / 2, 4);
                __m256i v = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w), shifts), m4);
                __m256 xv = _mm256_loadu_ps(xg + k);
                qx = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), xv, qx);
                sx = _mm256_add_ps(sx, xv);
            }
        } else if (bits == 8) {
            const uint8_t *pg = p + g * gs;
            for (size_t k = 0; k < gs; k += 32) {
                __m256 sx1;
                qx = _mm256_add_ps(qx, dot32_u8(_mm256_loadu_si256((const __m256i *)(pg + k)),
                                                xg + k, &sx1));
                sx = _mm256_add_ps(sx, sx1);
            }
        } else {
            const uint8_t *pg = p + g * gs * bits / 8;
            for (size_t k = 0; k < gs; k += 8) {
                uint64_t w = 0;
                memcpy(&w, pg + k * bits / 8, bits);
                __m256i v = unpack8(w, s0, s1, mb);
                __m256 xv = _mm256_loadu_ps(xg + k);
                qx = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), xv, qx);
                sx = _mm256_add_ps(sx, xv);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(s), qx, acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(bias), sx, acc);
    }
    return hsum(acc);
}

/* ---- integer kernels: rows against activations quantized to Q8_0 / Q8_K ---- */

/* sum of a[i] * b[i] over 32 signed bytes, as 8 int32 lanes (sign moved onto b so that
 * maddubs, which wants one unsigned operand, sees |a|; pairs stay below 2^15). */
static inline __m256i dot32_i8i8(__m256i a, __m256i b) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Q8_0 row x Q8_0 activations {f16 d; i8 qs[32]}. */
float cm_dotq_q8_0_avx2(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / 32; i++, b += 34, y += 34) {
        if (!(i & 1)) gx_prefetch_ahead(b, 2); /* 68 bytes a pair of blocks */
        __m256i s = dot32_i8i8(_mm256_loadu_si256((const __m256i *)(b + 2)),
                               _mm256_loadu_si256((const __m256i *)(y + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(b) * f16(y)), _mm256_cvtepi32_ps(s), acc);
    }
    return hsum(acc);
}

/* Q4_0 row x Q8_0 activations. */
float cm_dotq_q4_0_avx2(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    const __m128i m4 = _mm_set1_epi8(0x0F), k8 = _mm_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / 32; i++, b += 18, y += 34) {
        __m128i qs = _mm_loadu_si128((const __m128i *)(b + 2));
        __m128i lo = _mm_sub_epi8(_mm_and_si128(qs, m4), k8);
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), k8);
        __m256i s = dot32_i8i8(_mm256_set_m128i(hi, lo),
                               _mm256_loadu_si256((const __m256i *)(y + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(b) * f16(y)), _mm256_cvtepi32_ps(s), acc);
    }
    return hsum(acc);
}

/* Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}. */
static inline float q8k_d(const uint8_t *y) {
    float d;
    memcpy(&d, y, 4);
    return d;
}
static inline int q8k_bsum(const uint8_t *y, int s) {
    int16_t v;
    memcpy(&v, y + 260 + 2 * s, 2);
    return v;
}

/* Q4_K row x Q8_K: d*yd * sum_j sc_j sum(q q8) - dmin*yd * sum_j m_j sum(q8), the sums of q8
 * per sub-block coming from bsums. Unsigned nibbles times signed q8 fit maddubs directly. Q5_K
 * (five): the same with the 5th bit or'ed in (5-bit values fit maddubs too). */
static inline __attribute__((always_inline)) float dotq_k45(const void *row, const void *xq, size_t n, bool five) {
    const uint8_t *b = row, *y = xq;
    size_t bb = five ? 176 : 144;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (size_t i = 0; i < n / 256; i++, b += bb, y += 292) {
        gx_prefetch_ahead(b, 3);
        float yd = q8k_d(y), d = f16(b) * yd, dmin = f16(b + 2) * yd;
        const uint8_t *qs = b + (five ? 48 : 16), *q8 = y + 4;
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
        /* the 8 six-bit scales and mins by 32-bit masks and shifts (gx_k4_scale_min's values: sc
         * 0-3 = s[0-3] & 63, sc 4-7 = s[8-11] & 15 | (s[0-3] >> 6) << 4; the mins from s[4-7]
         * and the high nibbles of s[8-11]); the mins meet the pair sums of bsums in one pmaddwd */
        uint32_t w0 = (uint32_t)gx_rd32(b + 4), w1 = (uint32_t)gx_rd32(b + 8), w2 = (uint32_t)gx_rd32(b + 12);
        uint64_t scs = (w0 & 0x3F3F3F3Fu) | (uint64_t)((w2 & 0x0F0F0F0Fu) | ((w0 >> 2) & 0x30303030u)) << 32;
        uint64_t mns = (w1 & 0x3F3F3F3Fu) | (uint64_t)(((w2 >> 4) & 0x0F0F0F0Fu) | ((w1 >> 2) & 0x30303030u)) << 32;
        __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)(y + 260)), _mm_loadu_si128((const __m128i *)(y + 276)));
        __m128i ms = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mns)), pairs);
        ms = _mm_add_epi32(ms, _mm_shuffle_epi32(ms, 0x4E));
        ms = _mm_add_epi32(ms, _mm_shuffle_epi32(ms, 0xB1));
        int msum = _mm_cvtsi128_si32(ms);
        __m256i sum = _mm256_setzero_si256();
        for (int j = 0; j < 8; j += 2, qs += 32, q8 += 64) {
            __m256i q0, q1;
            gx_k45_quants(_mm256_loadu_si256((const __m256i *)qs), qh, j, five, &q0, &q1);
            __m256i p0 = _mm256_maddubs_epi16(q0, _mm256_loadu_si256((const __m256i *)q8));
            __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p0, _mm256_set1_epi16((short)(scs >> (8 * j) & 0xFF))));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p1, _mm256_set1_epi16((short)(scs >> (8 * j + 8) & 0xFF))));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
        mins += dmin * (float)msum;
    }
    return hsum(acc) - mins;
}

float cm_dotq_q4_k_avx2(const void *row, const void *xq, size_t n) { return dotq_k45(row, xq, n, false); }
float cm_dotq_q5_k_avx2(const void *row, const void *xq, size_t n) { return dotq_k45(row, xq, n, true); }

/* Q6_K row x Q8_K: d*yd * sum_s sc_s (sum(q q8) - 32 sum(q8)) with q in 0..63 unsigned; the
 * 16-element sub-blocks of both types line up, so bsums give sum(q8) per scale. */
float cm_dotq_q6_k_avx2(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    __m256 acc = _mm256_setzero_ps();
    float corr_sum = 0;
    for (size_t i = 0; i < n / 256; i++, b += 210, y += 292) {
        gx_prefetch_ahead(b, 4);
        float d = f16(b + 208) * q8k_d(y);
        const int8_t *sc = (const int8_t *)(b + 192);
        int corr = 0;
        for (int s = 0; s < 16; s++) corr += sc[s] * q8k_bsum(y, s);
        __m256i sum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *q8 = y + 4 + 128 * h;
            __m256i q[4];
            q6k_half(b, h, q);
            for (int k = 0; k < 4; k++) {
                const int8_t *s2 = sc + 8 * h + 2 * k;
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(s2[1]), _mm_set1_epi16(s2[0]));
                __m256i y8 = _mm256_loadu_si256((const __m256i *)(q8 + 32 * k));
                __m256i p = _mm256_maddubs_epi16(q[k], y8);
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, scv));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
        corr_sum += d * 32.0f * (float)corr;
    }
    return hsum(acc) - corr_sum;
}

/* Q5_0 row x Q8_0: (q - 16) in -16..15, signed bytes like Q4_0. */
float cm_dotq_q5_0_avx2(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    const __m128i m4 = _mm_set1_epi8(0x0F), h16 = _mm_set1_epi8(0x10);
    /* Byte k of the 16-byte vector tests bit k of its 16-bit half of qh. */
    const __m128i bitsel = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / 32; i++, b += 22, y += 34) {
        if (!(i & 1)) gx_prefetch_ahead(b, 1);
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        __m128i qs = _mm_loadu_si128((const __m128i *)(b + 6));
        /* Bytes 0, 1 of qh over lanes 0..7, 8..15 (elements 0..15); bytes 2, 3 likewise. */
        __m128i v = _mm_cvtsi32_si128((int)qh);
        __m128i hl = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
        __m128i hh = _mm_shuffle_epi8(v, _mm_setr_epi8(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        __m128i bl = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(hl, bitsel), bitsel), h16);
        __m128i bh = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(hh, bitsel), bitsel), h16);
        __m128i lo = _mm_sub_epi8(_mm_or_si128(_mm_and_si128(qs, m4), bl), h16);
        __m128i hi = _mm_sub_epi8(_mm_or_si128(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), bh), h16);
        __m256i s = dot32_i8i8(_mm256_set_m128i(hi, lo),
                               _mm256_loadu_si256((const __m256i *)(y + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(b) * f16(y)), _mm256_cvtepi32_ps(s), acc);
    }
    return hsum(acc);
}

/* ---- dequantization (prefill reuses a dequantized row for every token) ----
 * Same arithmetic as quants_ref.c, in the same order and without FMA, so the values match the
 * reference (exactly, unless the compiler contracts the reference's own expressions). */

static inline void store_i8x32(float *y, __m256i v, __m256 d) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(i8x8(lo), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(i8x8(_mm_srli_si128(lo, 8)), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(i8x8(hi), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(i8x8(_mm_srli_si128(hi, 8)), d));
}

/* y = d * q - m over 32 unsigned bytes. */
static inline void store_u8x32(float *y, __m256i v, __m256 d, __m256 m) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, u8x8(lo)), m));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(d, u8x8(_mm_srli_si128(lo, 8))), m));
    _mm256_storeu_ps(y + 16, _mm256_sub_ps(_mm256_mul_ps(d, u8x8(hi)), m));
    _mm256_storeu_ps(y + 24, _mm256_sub_ps(_mm256_mul_ps(d, u8x8(_mm_srli_si128(hi, 8))), m));
}

void cm_dequant_f16_avx2(const void *row, float *y, size_t n) {
    const uint8_t *w = row;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * i))));
    for (; i < n; i++) y[i] = f16(w + 2 * i);
}

void cm_dequant_bf16_avx2(const void *row, float *y, size_t n) {
    const uint8_t *w = row;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, bf16x8(w + 2 * i));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, w + 2 * i, 2);
        y[i] = lm_bf16_to_f32(h);
    }
}

void cm_dequant_q8_0_avx2(const void *row, float *y, size_t n) {
    const uint8_t *b = row;
    for (size_t i = 0; i < n / 32; i++, b += 34, y += 32)
        store_i8x32(y, _mm256_loadu_si256((const __m256i *)(b + 2)), _mm256_set1_ps(f16(b)));
}

void cm_dequant_q4_0_avx2(const void *row, float *y, size_t n) {
    const uint8_t *b = row;
    const __m128i m4 = _mm_set1_epi8(0x0F), k8 = _mm_set1_epi8(8);
    for (size_t i = 0; i < n / 32; i++, b += 18, y += 32) {
        __m128i qs = _mm_loadu_si128((const __m128i *)(b + 2));
        __m128i lo = _mm_sub_epi8(_mm_and_si128(qs, m4), k8);
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), k8);
        store_i8x32(y, _mm256_set_m128i(hi, lo), _mm256_set1_ps(f16(b)));
    }
}

/* Q4_K and Q5_K (five) share the scale layout. */
static void dequant_k45(const uint8_t *b, float *y, bool five) {
    const uint8_t *qs = b + (five ? 48 : 16);
    __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
    float sc[8], mn[8];
    gx_k45_scales(b + 4, f16(b), f16(b + 2), sc, mn);
    for (int j = 0; j < 8; j += 2, qs += 32, y += 64) {
        __m256i q0, q1;
        gx_k45_quants(_mm256_loadu_si256((const __m256i *)qs), qh, j, five, &q0, &q1);
        store_u8x32(y, q0, _mm256_set1_ps(sc[j]), _mm256_set1_ps(mn[j]));
        store_u8x32(y + 32, q1, _mm256_set1_ps(sc[j + 1]), _mm256_set1_ps(mn[j + 1]));
    }
}

void cm_dequant_q4_k_avx2(const void *row, float *y, size_t n) {
    for (size_t i = 0; i < n / 256; i++) dequant_k45((const uint8_t *)row + 144 * i, y + 256 * i, false);
}

void cm_dequant_q5_k_avx2(const void *row, float *y, size_t n) {
    for (size_t i = 0; i < n / 256; i++) dequant_k45((const uint8_t *)row + 176 * i, y + 256 * i, true);
}

void cm_dequant_q6_k_avx2(const void *row, float *y, size_t n) {
    const uint8_t *b = row;
    const __m256i k32 = _mm256_set1_epi8(32);
    for (size_t i = 0; i < n / 256; i++, b += 210) {
        float d = f16(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int h = 0; h < 2; h++, y += 128) {
            __m256i q[4];
            q6k_half(b, h, q);
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_sub_epi8(q[k], k32);
                __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
                __m256 d0 = _mm256_set1_ps(d * (float)sc[8 * h + 2 * k]);
                __m256 d1 = _mm256_set1_ps(d * (float)sc[8 * h + 2 * k + 1]);
                float *yk = y + 32 * k;
                _mm256_storeu_ps(yk, _mm256_mul_ps(d0, i8x8(lo)));
                _mm256_storeu_ps(yk + 8, _mm256_mul_ps(d0, i8x8(_mm_srli_si128(lo, 8))));
                _mm256_storeu_ps(yk + 16, _mm256_mul_ps(d1, i8x8(hi)));
                _mm256_storeu_ps(yk + 24, _mm256_mul_ps(d1, i8x8(_mm_srli_si128(hi, 8))));
            }
        }
    }
}

/* Q2_K row x Q8_K. Q2_K {u8 scales[16]; u8 qs[64]; f16 d, dmin}: element 128n + 32j + l has
 * q = (qs[32n + l] >> 2j) & 3 and sub-block (element / 16), whose byte holds a 4-bit scale (low)
 * and min (high): d*yd * sum_s sc_s sum(q q8) - dmin*yd * sum_s m_s bsum_s. */
float cm_dotq_q2_k_avx2(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (size_t i = 0; i < n / 256; i++, b += 84, y += 292) {
        float yd = q8k_d(y), d = f16(b + 80) * yd, dmin = f16(b + 82) * yd;
        const uint8_t *sc = b;
        int msum = 0;
        for (int s = 0; s < 16; s++) msum += (sc[s] >> 4) * q8k_bsum(y, s);
        __m256i sum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * h));
            for (int j = 0; j < 4; j++) {
                const uint8_t *s2 = sc + 8 * h + 2 * j;
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * j), m3);
                __m256i y8 = _mm256_loadu_si256((const __m256i *)(y + 4 + 128 * h + 32 * j));
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(s2[1] & 15), _mm_set1_epi16(s2[0] & 15));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(q, y8), scv));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
        mins += dmin * (float)msum;
    }
    return hsum(acc) - mins;
}

/* Q3_K row x Q8_K. Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}: q = u - 4 with
 * u = ((qs[32n + l] >> 2j) & 3) | (bit 4n+j of hmask[l]) << 2 in 0..7, so
 * sum(q q8) = sum(u q8) - 4 bsum; 16 signed 6-bit scales (stored + 32). */
float cm_dotq_q3_k_avx2(const void *row, const void *xq, size_t n) {
    const uint8_t *b = row, *y = xq;
    const __m256i m3 = _mm256_set1_epi8(3), k4 = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / 256; i++, b += 110, y += 292) {
        float d = f16(b + 108) * q8k_d(y);
        const uint8_t *s = b + 96;
        int sc[16], corr = 0;
        for (int k = 0; k < 16; k++) {
            int lo = k < 8 ? (s[k] & 0xF) : (s[k - 8] >> 4);
            int hi = (s[8 + (k % 4)] >> (2 * (k / 4))) & 3;
            sc[k] = (lo | (hi << 4)) - 32;
            corr += sc[k] * q8k_bsum(y, k);
        }
        __m256i hm = _mm256_loadu_si256((const __m256i *)b);
        __m256i sum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * h));
            for (int j = 0; j < 4; j++) {
                __m256i bit = _mm256_set1_epi8((char)(1 << (4 * h + j)));
                __m256i hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), k4);
                __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 2 * j), m3), hb);
                __m256i y8 = _mm256_loadu_si256((const __m256i *)(y + 4 + 128 * h + 32 * j));
                const int *s2 = sc + 8 * h + 2 * j;
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16((short)s2[1]), _mm_set1_epi16((short)s2[0]));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(u, y8), scv));
            }
        }
        sum = _mm256_sub_epi32(sum, _mm256_setr_epi32(4 * corr, 0, 0, 0, 0, 0, 0, 0));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
    }
    return hsum(acc);
}

/* ---- activation quantizers, byte-identical to cm_quantize_ref ---- */

/* q = clamp(roundf(v), -127, 127) with roundf's half-away-from-zero rule (not the SIMD
 * default of half-to-even) and NaN -> 0, as the reference's sat_int. 8 lanes. */
static inline __m256i round_q8(__m256 v) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign_mask, _mm256_sub_ps(v, t));
    __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                              _mm256_or_ps(_mm256_and_ps(v, sign_mask), _mm256_set1_ps(1.0f)));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, up));
}

/* Quantizes 32 floats with the multiplier id into 32 int8 at q; returns their sum. */
static inline int quant32(const float *x, float id, int8_t *q, int16_t *sums16) {
    __m256 vid = _mm256_set1_ps(id);
    __m256i a = round_q8(_mm256_mul_ps(_mm256_loadu_ps(x), vid));
    __m256i b = round_q8(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid));
    __m256i c = round_q8(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid));
    __m256i d = round_q8(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid));
    /* packs interleave 128-bit lanes; the permute puts the 32 bytes back in order. */
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i abcd = _mm256_packs_epi16(ab, cd);
    abcd = _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, abcd);
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d));
    if (sums16) {
        /* elements 0..15 are a, b; 16..31 are c, d */
        __m256i s0 = _mm256_add_epi32(a, b), s1 = _mm256_add_epi32(c, d);
        __m128i t0 = _mm_add_epi32(_mm256_castsi256_si128(s0), _mm256_extracti128_si256(s0, 1));
        __m128i t1 = _mm_add_epi32(_mm256_castsi256_si128(s1), _mm256_extracti128_si256(s1, 1));
        t0 = _mm_hadd_epi32(t0, t1);
        t0 = _mm_hadd_epi32(t0, t0);
        sums16[0] = (int16_t)_mm_cvtsi128_si32(t0);
        sums16[1] = (int16_t)_mm_extract_epi32(t0, 1);
    }
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_hadd_epi32(t, t);
    t = _mm_hadd_epi32(t, t);
    return _mm_cvtsi128_si32(t);
}

/* max |x| over n floats (multiple of 8), ignoring NaN like fmaxf. */
static inline float absmax(const float *x, size_t n) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8)
        m = _mm256_max_ps(_mm256_andnot_ps(sign_mask, _mm256_loadu_ps(x + i)), m);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

void cm_quantize_q8_0_avx2(const float *x, void *out, size_t n) {
    uint8_t *b = out;
    for (size_t i = 0; i < n / 32; i++, x += 32, b += 34) {
        float d = absmax(x, 32) / 127.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t h = lm_f32_to_f16(d);
        memcpy(b, &h, 2);
        quant32(x, id, (int8_t *)(b + 2), NULL);
    }
}

/* cm_r16_quantize (quants_r16_ref.c's activation layout) in one pass a block: the bytes of
 * cm_quantize_q8_0_avx2, the widened f16 scale and -8 times the bytes' sum. */
void cm_r16_quantize_avx2(const float *x, size_t cols, void *act) {
    size_t nb = cols / 32;
    int8_t *q;
    float *d;
    int32_t *c;
    cm_r16_act_parts(act, cols, &q, &d, &c);
    for (size_t b = 0; b < nb; b++) {
        float dd = absmax(x + 32 * b, 32) / 127.0f, id = dd ? 1.0f / dd : 0.0f;
        d[b] = lm_f16_to_f32(lm_f32_to_f16(dd));
        c[b] = -8 * quant32(x + 32 * b, id, q + 32 * b, NULL);
    }
}

/* Q8_0X4 (quants_ref.c): the Q8_0 blocks of cm_quantize_q8_0_avx2 regrouped by four, with the
 * lane sums times -8. */
void cm_quantize_q8_0x4_avx2(const float *x, void *out, size_t n) {
    uint8_t *o = out;
    size_t nb = n / 32;
    const __m128i ones8 = _mm_set1_epi8(1), ones16 = _mm_set1_epi16(1);
    for (size_t g = 0; g < nb; g += 4, o += 256) {
        size_t r = LM_MIN((size_t)4, nb - g);
        for (size_t k = 0; k < r; k++, x += 32) {
            uint8_t b[34];
            cm_quantize_q8_0_avx2(x, b, 32);
            memcpy(o + 16 * k, b + 2, 16);
            memcpy(o + 16 * r + 16 * k, b + 18, 16);
            /* lane i: bytes 4i..4i+3 of both halves, summed as int16 pairs then widened */
            __m128i ql = _mm_loadu_si128((const __m128i *)(b + 2)), qh = _mm_loadu_si128((const __m128i *)(b + 18));
            __m128i sl = _mm_madd_epi16(_mm_maddubs_epi16(ones8, ql), ones16);
            __m128i sh = _mm_madd_epi16(_mm_maddubs_epi16(ones8, qh), ones16);
            _mm_storeu_si128((__m128i *)(o + 32 * r + 16 * k), _mm_mullo_epi32(_mm_add_epi32(sl, sh), _mm_set1_epi32(-8)));
            _mm_storeu_ps((float *)(o + 48 * r + 16 * k), _mm_set1_ps(f16(b)));
        }
    }
}

void cm_quantize_q8_k_avx2(const float *x, void *out, size_t n) {
    uint8_t *b = out;
    for (size_t i = 0; i < n / 256; i++, x += 256, b += 292) {
        float d = absmax(x, 256) / 127.0f, id = d ? 1.0f / d : 0.0f;
        memcpy(b, &d, 4);
        int16_t sums[16];
        for (int k = 0; k < 8; k++) quant32(x + 32 * k, id, (int8_t *)(b + 4 + 32 * k), sums + 2 * k);
        memcpy(b + 260, sums, sizeof sums);
    }
}

/* ---- prefill: tiles of 8 rows times 16 tokens without VNNI ----
 * The AVX-512 tile (quants_avx512.c) with each vpdpbusd replaced by maddubs (unsigned weight
 * times signed activation bytes, pairs summed in int16) and madd with ones. Two groups of 4
 * bytes are added in int16 before widening: 4 products of q <= 63 and |x| <= 127 stay below
 * 2^15. Q8_0 (q + 128 up to 255) would not: it has its own tile, tile256_q8 below. */
static inline __attribute__((always_inline)) void tile256(const uint8_t *wq, const float *dw,
                                                          const float *nm, size_t nb,
                                                          const uint8_t *act, float *out, bool first,
                                                          int bk, int kshift, bool has_min) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) {  /* tokens 0..7, then 8..15 of the group */
        const uint8_t *ah = act + 32 * h, *wb = wq;
        const float *dwb = dw, *nmb = nm;
        __m256 acc[TR];
        #pragma GCC unroll 8
        for (int r = 0; r < TR; r++) acc[r] = first ? _mm256_setzero_ps() : _mm256_load_ps(out + 16 * r + 8 * h);
        for (size_t b = 0; b < nb; b++, ah += CM_GEMM_ACT_BLOCK, wb += TR * 32, dwb += 2 * TR, nmb += TR) {
            __m256 dx = _mm256_load_ps((const float *)(ah + 512));
            __m256i c0 = _mm256_setzero_si256(), c1 = c0;
            if (kshift >= 0) {
                __m256i n0 = _mm256_load_si256((const __m256i *)(ah + 576));
                __m256i n1 = _mm256_load_si256((const __m256i *)(ah + 640));
                if (bk == 32) {
                    c0 = _mm256_slli_epi32(_mm256_add_epi32(n0, n1), kshift);
                } else {
                    c0 = _mm256_slli_epi32(n0, kshift);
                    c1 = _mm256_slli_epi32(n1, kshift);
                }
            }
            __m256 xs = has_min ? _mm256_load_ps((const float *)(ah + 704)) : _mm256_setzero_ps();
            #pragma GCC unroll 8
            for (int r = 0; r < TR; r++) {
                const uint8_t *w = wb + 32 * r;
                __m256i s[2] = {c0, c1};
                #pragma GCC unroll 4
                for (int k = 0; k < 8; k += 2) {
                    __m256i x0 = _mm256_load_si256((const __m256i *)(ah + 64 * k));
                    __m256i x1 = _mm256_load_si256((const __m256i *)(ah + 64 * (k + 1)));
                    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(gx_rd32(w + 4 * k)), x0),
                                                 _mm256_maddubs_epi16(_mm256_set1_epi32(gx_rd32(w + 4 * k + 4)), x1));
                    int half = bk == 32 ? 0 : k / 4;
                    s[half] = _mm256_add_epi32(s[half], _mm256_madd_epi16(p, ones));
                }
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[0]), _mm256_mul_ps(dx, _mm256_set1_ps(dwb[r])), acc[r]);
                if (bk == 16)
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[1]), _mm256_mul_ps(dx, _mm256_set1_ps(dwb[TR + r])), acc[r]);
                if (has_min) acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(nmb[r]), xs, acc[r]);
            }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < TR; r++) _mm256_store_ps(out + 16 * r + 8 * h, acc[r]);
    }
}

/* Q8_0: the weights stay signed bytes (no offset) and each group of 4 meets the activations by
 * the sign trick, maddubs(|q|, x with q's sign): a pair of products is at most 2 * 128 * 127 =
 * 32,512, so it is widened by madd after every maddubs (two maddubs added in int16 could
 * overflow). The integer sums are exact, so the results are those of the other tiles. */
static inline void gx_unpack_q8_0s(const uint8_t *row, size_t nb, uint8_t *wq, float *dw, float *nm, int r) {
    (void)nm;
    for (size_t b = 0; b < nb; b++, row += 34) {
        memcpy(wq + (b * TR + (size_t)r) * 32, row + 2, 32);
        dw[b * 2 * TR + (size_t)r] = gx_f16(row);
    }
}

static inline __attribute__((always_inline)) void tile256_q8(const uint8_t *wq, const float *dw,
                                                             const float *nm, size_t nb, const uint8_t *act,
                                                             float *out, bool first, int bk, int kshift,
                                                             bool has_min) {
    (void)nm, (void)bk, (void)kshift, (void)has_min;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) { /* tokens 0..7, then 8..15 of the group */
        const uint8_t *ah = act + 32 * h, *wb = wq;
        const float *dwb = dw;
        __m256 acc[TR];
        #pragma GCC unroll 8
        for (int r = 0; r < TR; r++) acc[r] = first ? _mm256_setzero_ps() : _mm256_load_ps(out + 16 * r + 8 * h);
        for (size_t b = 0; b < nb; b++, ah += CM_GEMM_ACT_BLOCK, wb += TR * 32, dwb += 2 * TR) {
            __m256 dx = _mm256_load_ps((const float *)(ah + 512));
            #pragma GCC unroll 8
            for (int r = 0; r < TR; r++) {
                const uint8_t *w = wb + 32 * r;
                __m256i s = _mm256_setzero_si256();
                #pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    __m256i q = _mm256_set1_epi32(gx_rd32(w + 4 * k));
                    __m256i x = _mm256_load_si256((const __m256i *)(ah + 64 * k));
                    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(x, q));
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
                }
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dx, _mm256_set1_ps(dwb[r])), acc[r]);
            }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < TR; r++) _mm256_store_ps(out + 16 * r + 8 * h, acc[r]);
    }
}

void cm_gemm_q8_0_avx2(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy,
                       void *scratch) {
    gx_gemm(w, r0, r1, a, y, ldy, scratch, gx_unpack_q8_0s, tile256_q8, 32, -1, false);
}

void cm_gemm_prep_avx2(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1) {
    gx_prep(x, ldx, a, g0, g1);
}

#define GEMM(name, bk, kshift, has_min) \
    void cm_gemm_##name##_avx2(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, \
                               float *y, size_t ldy, void *scratch) { \
        gx_gemm(w, r0, r1, a, y, ldy, scratch, gx_unpack_##name, tile256, bk, kshift, has_min); \
    }
GEMM(q4_0, 32, 3, false)
GEMM(q5_0, 32, 4, false)
GEMM(q4_k, 32, -1, true)
GEMM(q5_k, 32, -1, true)
GEMM(q6_k, 16, 5, false)
