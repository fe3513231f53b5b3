/* compute/cpu/quants_gemm_x86.h: the parts of the prefill kernels shared by quants_avx2.c and
 * quants_avx512.c (included by those two only, each compiled with its own flags): the activation
 * quantizer (the cm_gemm_act layout of quants.h), the weight unpackers and the loop over row
 * tiles, column steps and token groups; and the decode kernels' prefetch. Everything here needs AVX2 only; the files supply the
 * tile kernel. */
#ifndef LM_COMPUTE_CPU_QUANTS_GEMM_X86_H
#define LM_COMPUTE_CPU_QUANTS_GEMM_X86_H

#include "compute/cpu/quants.h"

#include <immintrin.h>

/* Weight rows per prefill tile: 8 accumulators plus the 8 activation vectors of a block stay in
 * the 32 vector registers. */
#define TR 8

static inline float gx_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* The decode kernels stream each row once: they ask for the lines CM_DECODE_PREFETCH bytes ahead
 * (quants.h). always_inline: GCC dropped the prefetches from an inlined kernel body otherwise
 * (the AVX2 Q4_K/Q5_K kernels, measured at half speed from memory). */
static inline __attribute__((always_inline)) void gx_prefetch_ahead(const uint8_t *p, int lines) {
    for (int k = 0; k < lines; k++) _mm_prefetch((const char *)p + CM_DECODE_PREFETCH + 64 * k, _MM_HINT_T0);
}

static inline int32_t gx_rd32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The activations of token groups [g0, g1), as cm_gemm_prep_fn. */
static inline void gx_prep(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1) {
    size_t nb = a->cols / 32;
    const __m128i bias = _mm_set1_epi8((char)0x80);
    for (size_t g = g0; g < g1; g++) {
        uint8_t *grp = a->mem + g * nb * CM_GEMM_ACT_BLOCK;
        size_t nt = LM_MIN((size_t)CM_GEMM_TOK, a->n - g * CM_GEMM_TOK);
        if (nt < CM_GEMM_TOK) memset(grp, 0, nb * CM_GEMM_ACT_BLOCK); /* padding lanes give 0 */
        for (size_t t = 0; t < nt; t++) {
            const float *xt = x + (g * CM_GEMM_TOK + t) * ldx;
            uint8_t *blk = grp;
            for (size_t b = 0; b < nb; b++, blk += CM_GEMM_ACT_BLOCK) {
                uint8_t q8[34];
                cm_quantize_q8_0_avx2(xt + 32 * b, q8, 32);
                for (int k = 0; k < 8; k++) memcpy(blk + 64 * k + 4 * t, q8 + 2 + 4 * k, 4);
                /* signed byte sums: sad of the biased bytes minus 8 * 128 per half of 16 */
                __m128i lo = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(q8 + 2)), bias);
                __m128i hi = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(q8 + 18)), bias);
                __m128i sl = _mm_sad_epu8(lo, _mm_setzero_si128()), sh = _mm_sad_epu8(hi, _mm_setzero_si128());
                int32_t s0 = _mm_cvtsi128_si32(sl) + _mm_extract_epi32(sl, 2) - 2048;
                int32_t s1 = _mm_cvtsi128_si32(sh) + _mm_extract_epi32(sh, 2) - 2048;
                float d = gx_f16(q8), xs = d * (float)(s0 + s1);
                int32_t n0 = -s0, n1 = -s1;
                memcpy(blk + 512 + 4 * t, &d, 4);
                memcpy(blk + 576 + 4 * t, &n0, 4);
                memcpy(blk + 640 + 4 * t, &n1, 4);
                memcpy(blk + 704 + 4 * t, &xs, 4);
            }
        }
    }
}

/* ---- prefill: weights ----
 * A tile of TR rows is unpacked once into the thread's scratch and then used for every token
 * group: per block b of 32 elements, u8 wq[b][TR][32] (element order), f32 dw[b][2][TR] (the
 * scale of the block, or of its two halves of 16), f32 nm[b][TR] (minus the block's min, for the
 * types with one). A row's value is dw * (q - k) + (-nm), k the type's offset (0, 8, 16, 32 or
 * 128), which the tile subtracts through the activations' sums. */
/* 0xFF in byte j where bit j of m is set. */
static inline __m256i gx_bits32(uint32_t m) {
    const __m256i sel = _mm256_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128,
                                         1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    /* shuffle_epi8 works within 128-bit lanes: bytes 2, 3 of m are copied to the high lane */
    __m256i v = _mm256_set1_epi32((int)m);
    v = _mm256_shuffle_epi8(v, spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

typedef void (*unpack_fn)(const uint8_t *row, size_t nb, uint8_t *wq, float *dw, float *nm, int r);

/* cm_gemm_scratch_bytes() (quants_ref.c) sizes this, and the accumulators, for TR = 8. */

static inline void gx_unpack_q4_0(const uint8_t *row, size_t nb, uint8_t *wq, float *dw, float *nm, int r) {
    (void)nm;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (size_t b = 0; b < nb; b++, row += 18) {
        __m128i qs = _mm_loadu_si128((const __m128i *)(row + 2));
        uint8_t *o = wq + (b * TR + (size_t)r) * 32;
        _mm_storeu_si128((__m128i *)o, _mm_and_si128(qs, m4));
        _mm_storeu_si128((__m128i *)(o + 16), _mm_and_si128(_mm_srli_epi16(qs, 4), m4));
        dw[b * 2 * TR + (size_t)r] = gx_f16(row);
    }
}

static inline void gx_unpack_q5_0(const uint8_t *row, size_t nb, uint8_t *wq, float *dw, float *nm, int r) {
    (void)nm;
    const __m256i m4 = _mm256_set1_epi8(0x0F), h16 = _mm256_set1_epi8(0x10);
    for (size_t b = 0; b < nb; b++, row += 22) {
        uint32_t qh;
        memcpy(&qh, row + 2, 4);
        __m128i qs = _mm_loadu_si128((const __m128i *)(row + 6));
        __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), m4);
        v = _mm256_or_si256(v, _mm256_and_si256(gx_bits32(qh), h16)); /* bit j of qh: element j's 5th */
        _mm256_storeu_si256((__m256i *)(wq + (b * TR + (size_t)r) * 32), v);
        dw[b * 2 * TR + (size_t)r] = gx_f16(row);
    }
}

static inline void gx_unpack_q8_0(const uint8_t *row, size_t nb, uint8_t *wq, float *dw, float *nm, int r) {
    (void)nm;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (size_t b = 0; b < nb; b++, row += 34) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(row + 2));
        _mm256_storeu_si256((__m256i *)(wq + (b * TR + (size_t)r) * 32), _mm256_xor_si256(v, bias));
        dw[b * 2 * TR + (size_t)r] = gx_f16(row);
    }
}

/* Scale and min of sub-block j of Q4_K/Q5_K (as k4_scale_min in quants_ref.c). */
static inline void gx_k4_scale_min(int j, const uint8_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* The 8 scales and mins of a Q4_K/Q5_K super-block, times d and dmin. */
static inline void gx_k45_scales(const uint8_t *s, float d, float dmin, float *sc, float *mn) {
    for (int j = 0; j < 8; j++) {
        int a, m;
        gx_k4_scale_min(j, s, &a, &m);
        sc[j] = d * (float)a;
        mn[j] = dmin * (float)m;
    }
}

/* Sub-blocks j and j + 1 (j even) of a Q4_K/Q5_K super-block as unsigned bytes in element order:
 * the low and high nibbles of raw (the 32 quant bytes they share), with the 5th bit (bit j of
 * qh[l] for element l of sub-block j) or'ed in when five. */
static inline __attribute__((always_inline)) void gx_k45_quants(__m256i raw, __m256i qh, int j, bool five,
                                                                __m256i *q0, __m256i *q1) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), h16 = _mm256_set1_epi8(0x10);
    *q0 = _mm256_and_si256(raw, m4);
    *q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    if (five) {
        __m256i b0 = _mm256_set1_epi8((char)(1 << j)), b1 = _mm256_set1_epi8((char)(2 << j));
        *q0 = _mm256_or_si256(*q0, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b0), b0), h16));
        *q1 = _mm256_or_si256(*q1, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b1), b1), h16));
    }
}

static inline void gx_unpack_k45(const uint8_t *row, size_t nb, uint8_t *wq, float *dw, float *nm,
                              int r, bool five) {
    size_t bb = five ? 176 : 144;
    for (size_t sb = 0; sb < nb / 8; sb++, row += bb) {
        float d = gx_f16(row), dmin = gx_f16(row + 2);
        const uint8_t *s = row + 4, *qs = row + (five ? 48 : 16);
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(row + 16)) : _mm256_setzero_si256();
        for (int j = 0; j < 8; j += 2, qs += 32) {
            __m256i lo, hi;
            gx_k45_quants(_mm256_loadu_si256((const __m256i *)qs), qh, j, five, &lo, &hi);
            size_t b = sb * 8 + (size_t)j;
            _mm256_storeu_si256((__m256i *)(wq + (b * TR + (size_t)r) * 32), lo);
            _mm256_storeu_si256((__m256i *)(wq + ((b + 1) * TR + (size_t)r) * 32), hi);
            for (int h = 0; h < 2; h++) {
                int sc, mn;
                gx_k4_scale_min(j + h, s, &sc, &mn);
                dw[(b + (size_t)h) * 2 * TR + (size_t)r] = d * (float)sc;
                nm[(b + (size_t)h) * TR + (size_t)r] = -(dmin * (float)mn);
            }
        }
    }
}

static inline void gx_unpack_q4_k(const uint8_t *row, size_t nb, uint8_t *wq, float *dw, float *nm, int r) {
    gx_unpack_k45(row, nb, wq, dw, nm, r, false);
}

static inline void gx_unpack_q5_k(const uint8_t *row, size_t nb, uint8_t *wq, float *dw, float *nm, int r) {
    gx_unpack_k45(row, nb, wq, dw, nm, r, true);
}

/* Q6_K: q in 0..63 (offset 32), one int8 scale per 16 elements. */
static inline void gx_unpack_q6_k(const uint8_t *row, size_t nb, uint8_t *wq, float *dw, float *nm, int r) {
    (void)nm;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    for (size_t sb = 0; sb < nb / 8; sb++, row += 210) {
        float d = gx_f16(row + 208);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = row + 64 * h;
            const int8_t *sc = (const int8_t *)(row + 192 + 8 * h);
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(row + 128 + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            for (int k = 0; k < 4; k++) {
                size_t b = sb * 8 + 4 * (size_t)h + (size_t)k;
                _mm256_storeu_si256((__m256i *)(wq + (b * TR + (size_t)r) * 32), q[k]);
                dw[b * 2 * TR + (size_t)r] = d * (float)sc[2 * k];
                dw[b * 2 * TR + TR + (size_t)r] = d * (float)sc[2 * k + 1];
            }
        }
    }
}

/* Blocks per step over the columns: a step's activations (16 x 768 bytes per group) and
 * weights (16 x 352 bytes) stay in L1 while every token group passes over them. */
#define KC 16

typedef void (*gx_tile_fn)(const uint8_t *wq, const float *dw, const float *nm, size_t nb,
                           const uint8_t *act, float *out, bool first, int bk, int kshift,
                           bool has_min);

static inline __attribute__((always_inline)) void gx_gemm(const cm_matrix *w, size_t r0, size_t r1,
                                                       const cm_gemm_act *a, float *y, size_t ldy,
                                                       void *scratch, unpack_fn unpack, gx_tile_fn tile, int bk,
                                                       int kshift, bool has_min) {
    size_t nb = w->cols / 32;
    uint8_t *wq = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *dw = (float *)(wq + nb * TR * 32), *nm = dw + nb * 2 * TR;
    float *acc = (float *)(((uintptr_t)(nm + nb * TR) + 63) & ~(uintptr_t)63); /* (n_grp, TR, 16) */
    const uint8_t *base = w->data;
    for (size_t rt = r0; rt < r1; rt += TR) {
        size_t nr = LM_MIN((size_t)TR, r1 - rt);
        for (size_t r = 0; r < nr; r++) unpack(base + (rt + r) * w->row_bytes, nb, wq, dw, nm, (int)r);
        /* The next tile's rows into L2 while this one computes: rows are too short for the
         * hardware prefetcher, and the unpack above otherwise waits on memory (~10 % of prefill) */
        for (size_t r = rt + TR; r < LM_MIN(rt + 2 * TR, r1); r++) {
            const uint8_t *row = base + r * w->row_bytes;
            for (size_t off = 0; off < w->row_bytes; off += 64) _mm_prefetch((const char *)(row + off), _MM_HINT_T1);
        }
        for (size_t r = nr; r < TR; r++) {
            for (size_t b = 0; b < nb; b++) {
                memset(wq + (b * TR + r) * 32, 0, 32);
                dw[b * 2 * TR + r] = dw[b * 2 * TR + TR + r] = nm[b * TR + r] = 0.0f;
            }
        }
        for (size_t k0 = 0; k0 < nb; k0 += KC) {
            size_t kn = LM_MIN((size_t)KC, nb - k0);
            for (size_t g = 0; g < a->n_grp; g++)
                tile(wq + k0 * TR * 32, dw + k0 * 2 * TR, nm + k0 * TR, kn,
                     a->mem + (g * nb + k0) * CM_GEMM_ACT_BLOCK, acc + g * TR * 16, k0 == 0, bk,
                     kshift, has_min);
        }
        for (size_t g = 0; g < a->n_grp; g++) {
            size_t nt = LM_MIN((size_t)CM_GEMM_TOK, a->n - g * CM_GEMM_TOK);
            const float *out = acc + g * TR * 16;
            for (size_t t = 0; t < nt; t++) {
                float *yt = y + (g * CM_GEMM_TOK + t) * ldy + rt;
                for (size_t r = 0; r < nr; r++) yt[r] = out[r * 16 + t];
            }
        }
    }
}

#endif /* LM_COMPUTE_CPU_QUANTS_GEMM_X86_H */
