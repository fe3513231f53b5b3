/* compute/cpu/quants_mlx_avx2.c: AVX2 integer kernels for MLX affine 4-bit and 8-bit matrices.
 * Owns: dotting MLX rows with an activation prepared by cm_mlx_quantize_x (quants.h gives the
 * layout), one token (decode) or a few at a time (prefill).
 * Does not own: preparing the activation or choosing the kernel (quants_mlx_ref.c, select.c).
 * Compiled with -mavx2 -mfma -mf16c (CMake picks the flags by the file's suffix).
 *
 * Per group of a row: sum_i q_i xq_i in int32 lanes, with q widened to int16 and the products
 * summed in pairs by _mm256_madd_epi16 (|q xq| <= 255 * 32767; a lane sums at most 16 of them
 * for groups of 128), then once per group times scale * d (cm_mlx_quantize_x gives all blocks of
 * a group one scale), plus bias * gqsum. */
#include "compute/cpu/quants.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "compute/cpu/quants_mlx_x86.h"

/* The 32 quants of a block as two vectors of 16 int16, in the order cm_mlx_quantize_x stores x:
 * 4-bit: low nibbles (even elements), then high nibbles (odd); 8-bit: elements 0..15, 16..31. */
static ALWAYS_INLINE void unpack(uint32_t bits, const uint8_t *w, __m256i *q0, __m256i *q1) {
    if (bits == 4) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)w), m4 = _mm_set1_epi8(15);
        *q0 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
        *q1 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
    } else {
        *q0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)w));
        *q1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(w + 16)));
    }
}

/* sum over 32 elements of q * x as 8 int32 lanes. */
static ALWAYS_INLINE __m256i qdot(__m256i q0, __m256i q1, const int16_t *x) {
    return _mm256_add_epi32(_mm256_madd_epi16(q0, _mm256_loadu_si256((const __m256i *)(const void *)x)),
                            _mm256_madd_epi16(q1, _mm256_loadu_si256((const __m256i *)(const void *)(x + 16))));
}

static ALWAYS_INLINE __m256i block_dot(uint32_t bits, const uint8_t *w, const int16_t *x) {
    __m256i q0, q1;
    unpack(bits, w, &q0, &q1);
    return qdot(q0, q1, x);
}

static ALWAYS_INLINE float dotq(const cm_matrix *m, size_t row, const void *xq, uint32_t bits, uint32_t sb) {
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, bpg = m->group_size / 32;
    const uint8_t *base = xq;
    const float *d = (const float *)(const void *)base, *gqsum = d + nb;
    float dg[8];
    const int16_t *q = (const int16_t *)(const void *)(base + cm_mlx_xq_qoff(m));
    const uint8_t *w = (const uint8_t *)m->data + row * m->row_bytes;
    size_t bbytes = bits * 4; /* bytes of weights per block of 32 */
    size_t s0 = row * ng;
    __m256 acc = _mm256_setzero_ps(), bacc = _mm256_setzero_ps();
    float st[8];
    for (size_t g0 = 0; g0 < ng; g0 += 8) {
        size_t cnt = ng - g0 < 8 ? ng - g0 : 8;
        __m256 s8 = load_n(sb, m->scales, s0 + g0, cnt), b8 = load_n(sb, m->biases, s0 + g0, cnt);
        bacc = _mm256_fmadd_ps(b8, loadf_n(gqsum + g0, cnt), bacc);
        for (size_t k = 0; k < cnt; k++) dg[k] = d[(g0 + k) * bpg]; /* the group's scale */
        _mm256_storeu_ps(st, _mm256_mul_ps(s8, loadf_n(dg, cnt)));
        for (size_t k = 0; k < cnt; k++) {
            size_t b = (g0 + k) * bpg;
            __m256i is = block_dot(bits, w + b * bbytes, q + b * 32);
            for (size_t j = 1; j < bpg; j++)
                is = _mm256_add_epi32(is, block_dot(bits, w + (b + j) * bbytes, q + (b + j) * 32));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(st[k]), acc);
        }
    }
    return hsum(_mm256_add_ps(acc, bacc));
}

float cm_mlx_dotq_avx2(const cm_matrix *m, size_t row, const void *xq) {
    switch (m->sb_type * 16 + m->bits) {
    case CM_BF16 * 16 + 4: return dotq(m, row, xq, 4, CM_BF16);
    case CM_BF16 * 16 + 8: return dotq(m, row, xq, 8, CM_BF16);
    case CM_F16 * 16 + 4: return dotq(m, row, xq, 4, CM_F16);
    case CM_F16 * 16 + 8: return dotq(m, row, xq, 8, CM_F16);
    case CM_F32 * 16 + 4: return dotq(m, row, xq, 4, CM_F32);
    case CM_F32 * 16 + 8: return dotq(m, row, xq, 8, CM_F32);
    default: return cm_mlx_dotq_ref(m, row, xq);
    }
}

/* Prefill: tiles of TT tokens share each unpacked weight block. */
#define TT 4
#define RC 16
static ALWAYS_INLINE void gemmq(const cm_matrix *m, size_t r0, size_t r1, const void *xq,
                                size_t xq_stride, size_t n, float *y, size_t ldy, uint32_t bits,
                                uint32_t sb) {
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, bpg = m->group_size / 32;
    size_t qoff = cm_mlx_xq_qoff(m), bbytes = bits * 4;
    /* chunks of RC rows (a few KB of weights) stay in L1 while every tile of TT tokens passes;
     * a tile's activations stay in L1 for the chunk's rows */
    for (size_t rc = r0; rc < r1; rc += RC) {
        size_t re = r1 - rc < RC ? r1 : rc + RC;
        for (size_t t0 = 0; t0 < n; t0 += TT) {
            size_t nt = n - t0 < TT ? n - t0 : TT;
            const uint8_t *xb[TT];
            for (size_t t = 0; t < TT; t++) xb[t] = (const uint8_t *)xq + (t0 + (t < nt ? t : 0)) * xq_stride;
            for (size_t r = rc; r < re; r++) {
            const uint8_t *w = (const uint8_t *)m->data + r * m->row_bytes;
            size_t s0 = r * ng;
            /* bias * gqsum first, 8 groups at a time, into the lanes of the accumulators */
            __m256 acc[TT];
            for (size_t t = 0; t < TT; t++) acc[t] = _mm256_setzero_ps();
            for (size_t g0 = 0; g0 < ng; g0 += 8) {
                size_t cnt = ng - g0 < 8 ? ng - g0 : 8;
                __m256 b8 = load_n(sb, m->biases, s0 + g0, cnt);
                for (size_t t = 0; t < TT; t++)
                    acc[t] = _mm256_fmadd_ps(b8, loadf_n((const float *)(const void *)xb[t] + nb + g0, cnt), acc[t]);
            }
            for (size_t g = 0; g < ng; g++) {
                __m256i is[TT];
                for (size_t t = 0; t < TT; t++) is[t] = _mm256_setzero_si256();
                for (size_t j = 0; j < bpg; j++) {
                    size_t b = g * bpg + j;
                    __m256i q0, q1;
                    unpack(bits, w + b * bbytes, &q0, &q1);
                    for (size_t t = 0; t < TT; t++)
                        is[t] = _mm256_add_epi32(is[t], qdot(q0, q1, (const int16_t *)(const void *)(xb[t] + qoff) + b * 32));
                }
                float s = load1(sb, m->scales, s0 + g);
                for (size_t t = 0; t < TT; t++) {
                    const float *d = (const float *)(const void *)xb[t];
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[t]), _mm256_set1_ps(s * d[g * bpg]), acc[t]);
                }
            }
            for (size_t t = 0; t < nt; t++) y[(t0 + t) * ldy + r] = hsum(acc[t]);
            }
        }
    }
}

void cm_mlx_gemmq_avx2(const cm_matrix *m, size_t r0, size_t r1, const void *xq, size_t xq_stride,
                       size_t n, float *y, size_t ldy) {
    switch (m->sb_type * 16 + m->bits) {
    case CM_BF16 * 16 + 4: gemmq(m, r0, r1, xq, xq_stride, n, y, ldy, 4, CM_BF16); break;
    case CM_BF16 * 16 + 8: gemmq(m, r0, r1, xq, xq_stride, n, y, ldy, 8, CM_BF16); break;
    case CM_F16 * 16 + 4: gemmq(m, r0, r1, xq, xq_stride, n, y, ldy, 4, CM_F16); break;
    case CM_F16 * 16 + 8: gemmq(m, r0, r1, xq, xq_stride, n, y, ldy, 8, CM_F16); break;
    case CM_F32 * 16 + 4: gemmq(m, r0, r1, xq, xq_stride, n, y, ldy, 4, CM_F32); break;
    case CM_F32 * 16 + 8: gemmq(m, r0, r1, xq, xq_stride, n, y, ldy, 8, CM_F32); break;
    default:
        for (size_t r = r0; r < r1; r++)
            for (size_t t = 0; t < n; t++)
                y[t * ldy + r] = cm_mlx_dotq_ref(m, r, (const uint8_t *)xq + t * xq_stride);
    }
}

#endif
