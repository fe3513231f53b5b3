/* compute/cpu/quants_mlx_avx512.c: AVX-512 VNNI integer kernels for MLX affine 4-bit and 8-bit
 * matrices, the same contract as quants_mlx_avx2.c (which see) with 512-bit vectors: the 32
 * quants of a block widened to int16 in one register and multiplied into int32 pairs with
 * _mm512_dpwssd_epi32 (VNNI), accumulated over the group, one float step per group.
 * Prefill (cm_mlx_gemm_tiles_avx512) works on tiles of 16 tokens in 32-bit lanes (quants_mlx.h):
 * each weight pair is broadcast to all lanes, so one _mm512_dpwssd_epi32 does 16 tokens and the
 * float step per group is shared by 16 tokens too.
 * Compiled with the AVX-512 flags by its suffix; chosen when the CPU has AVX-512 F/BW/VL/VNNI. */
#include "compute/cpu/quants.h"
#include "compute/cpu/quants_mlx.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__FMA__) && defined(__F16C__)
#include "compute/cpu/quants_mlx_x86.h"

/* Up to 16 scales or biases from element i on, lanes outside k zero (and not read). */
static ALWAYS_INLINE __m512 load16_mask(uint32_t sb, const void *base, size_t i, __mmask16 k) {
    const uint8_t *p = (const uint8_t *)base;
    if (sb == CM_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, (const void *)(p + 2 * i))), 16));
    if (sb == CM_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const void *)(p + 2 * i)));
    return _mm512_maskz_loadu_ps(k, (const void *)(p + 4 * i));
}

/* The 32 quants of a block as 32 int16, in the order cm_mlx_quantize_x stores x. */
static ALWAYS_INLINE __m512i unpack(uint32_t bits, const uint8_t *w) {
    if (bits == 4) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)w), m4 = _mm_set1_epi8(15);
        return _mm512_cvtepu8_epi16(_mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4)));
    }
    return _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)w));
}

static ALWAYS_INLINE __m512i xload(const int16_t *x) { return _mm512_loadu_si512((const void *)x); }

static ALWAYS_INLINE float dotq(const cm_matrix *m, size_t row, const void *xq, uint32_t bits, uint32_t sb) {
    size_t nb = m->cols / 32, ng = m->cols / m->group_size, bpg = m->group_size / 32;
    const uint8_t *base = xq;
    const float *d = (const float *)(const void *)base, *gqsum = d + nb;
    const int16_t *q = (const int16_t *)(const void *)(base + cm_mlx_xq_qoff(m));
    const uint8_t *w = (const uint8_t *)m->data + row * m->row_bytes;
    size_t bbytes = bits * 4;
    size_t s0 = row * ng;
    __m512 acc = _mm512_setzero_ps();
    __m256 bacc = _mm256_setzero_ps();
    float st[8], dg[8];
    for (size_t g0 = 0; g0 < ng; g0 += 8) {
        size_t cnt = ng - g0 < 8 ? ng - g0 : 8;
        __m256 s8 = load_n(sb, m->scales, s0 + g0, cnt), b8 = load_n(sb, m->biases, s0 + g0, cnt);
        bacc = _mm256_fmadd_ps(b8, loadf_n(gqsum + g0, cnt), bacc);
        for (size_t k = 0; k < cnt; k++) dg[k] = d[(g0 + k) * bpg]; /* the group's scale */
        _mm256_storeu_ps(st, _mm256_mul_ps(s8, loadf_n(dg, cnt)));
        for (size_t k = 0; k < cnt; k++) {
            size_t b = (g0 + k) * bpg;
            _mm_prefetch((const char *)(w + b * bbytes + CM_DECODE_PREFETCH), _MM_HINT_T0);
            __m512i is;
            if (bits == 4 && bpg % 2 == 0) {
                /* two blocks per 32-byte load: bytes widened to int16, low and high nibbles
                 * split, then each block's [low | high] halves gathered by one shuffle */
                __m512i is2 = _mm512_setzero_si512();
                is = _mm512_setzero_si512();
                for (size_t j = 0; j < bpg; j += 2) {
                    __m512i wv = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(w + (b + j) * 16)));
                    __m512i lo = _mm512_and_si512(wv, _mm512_set1_epi16(15)), hi = _mm512_srli_epi16(wv, 4);
                    is = _mm512_dpwssd_epi32(is, _mm512_shuffle_i64x2(lo, hi, 0x44), xload(q + (b + j) * 32));
                    is2 = _mm512_dpwssd_epi32(is2, _mm512_shuffle_i64x2(lo, hi, 0xEE), xload(q + (b + j + 1) * 32));
                }
                is = _mm512_add_epi32(is, is2);
            } else {
                is = _mm512_dpwssd_epi32(_mm512_setzero_si512(), unpack(bits, w + b * bbytes), xload(q + b * 32));
                for (size_t j = 1; j < bpg; j++)
                    is = _mm512_dpwssd_epi32(is, unpack(bits, w + (b + j) * bbytes), xload(q + (b + j) * 32));
            }
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_set1_ps(st[k]), acc);
        }
    }
    return _mm512_reduce_add_ps(acc) + hsum(bacc);
}

/* 4-bit, groups of 64 (mlx-community's default): 16 groups a step without scalar work. The
 * activations' scales of the 16 groups (d of every other block of 32) come from one two-source
 * permute, the weights' scales and biases 16 at a time; each group's integer dot (two blocks,
 * their bytes widened once and split into low and high nibbles) is converted and added times its
 * scale, broadcast from a 16-float array. The last step masks the groups past the end. */
static ALWAYS_INLINE float dotq4_g64(const cm_matrix *m, size_t row, const void *xq, uint32_t sb) {
    size_t nb = m->cols / 32, ng = nb / 2;
    const float *d = (const float *)xq, *gqsum = d + nb;
    const int16_t *q = (const int16_t *)(const void *)((const uint8_t *)xq + cm_mlx_xq_qoff(m));
    const uint8_t *w = (const uint8_t *)m->data + row * m->row_bytes;
    size_t s0 = row * ng;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i m15 = _mm512_set1_epi16(15);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, bacc = acc0;
    for (size_t g0 = 0; g0 < ng; g0 += 16) {
        size_t cnt = ng - g0 < 16 ? ng - g0 : 16;
        __mmask16 k16 = (__mmask16)((1u << cnt) - 1), klo = (__mmask16)((1u << LM_MIN(cnt * 2, (size_t)16)) - 1);
        __mmask16 khi = (__mmask16)(cnt > 8 ? (1u << (cnt * 2 - 16)) - 1 : 0);
        __m512 s16 = load16_mask(sb, m->scales, s0 + g0, k16), b16 = load16_mask(sb, m->biases, s0 + g0, k16);
        bacc = _mm512_fmadd_ps(b16, _mm512_maskz_loadu_ps(k16, gqsum + g0), bacc);
        __m512 d16 = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(klo, d + 2 * g0), even,
                                            _mm512_maskz_loadu_ps(khi, d + 2 * g0 + 16));
        float st[16] __attribute__((aligned(64)));
        _mm512_store_ps(st, _mm512_mul_ps(s16, d16));
        const uint8_t *wg = w + g0 * 32;
        const int16_t *qg = q + g0 * 64;
        for (size_t k = 0; k < cnt; k += 2, wg += 64, qg += 128) {
            _mm_prefetch((const char *)(wg + CM_DECODE_PREFETCH), _MM_HINT_T0);
            __m512i wv = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)wg));
            __m512i lo = _mm512_and_si512(wv, m15), hi = _mm512_srli_epi16(wv, 4);
            __m512i is = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_shuffle_i64x2(lo, hi, 0x44), xload(qg));
            is = _mm512_dpwssd_epi32(is, _mm512_shuffle_i64x2(lo, hi, 0xEE), xload(qg + 32));
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_set1_ps(st[k]), acc0);
            if (k + 1 == cnt) break;
            wv = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(wg + 32)));
            lo = _mm512_and_si512(wv, m15);
            hi = _mm512_srli_epi16(wv, 4);
            is = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_shuffle_i64x2(lo, hi, 0x44), xload(qg + 64));
            is = _mm512_dpwssd_epi32(is, _mm512_shuffle_i64x2(lo, hi, 0xEE), xload(qg + 96));
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_set1_ps(st[k + 1]), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + _mm512_reduce_add_ps(bacc);
}

float cm_mlx_dotq_avx512(const cm_matrix *m, size_t row, const void *xq) {
    if (m->bits == 4 && m->group_size == 64) {
        switch (m->sb_type) {
        case CM_BF16: return dotq4_g64(m, row, xq, CM_BF16);
        case CM_F16: return dotq4_g64(m, row, xq, CM_F16);
        case CM_F32: return dotq4_g64(m, row, xq, CM_F32);
        default: break;
        }
    }
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

/* Prefill: tiles of TT tokens share each unpacked weight block (32 vector registers: TT int32
 * and TT float accumulators plus the block). */
#define TT 8
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
            /* bias * gqsum first, 16 groups at a time, into the lanes of the accumulators */
            __m512 acc[TT];
            for (size_t t = 0; t < TT; t++) acc[t] = _mm512_setzero_ps();
            for (size_t g0 = 0; g0 < ng; g0 += 16) {
                __mmask16 k = ng - g0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (ng - g0)) - 1);
                __m512 b16 = load16_mask(sb, m->biases, s0 + g0, k);
                for (size_t t = 0; t < TT; t++)
                    acc[t] = _mm512_fmadd_ps(b16, _mm512_maskz_loadu_ps(k, (const float *)(const void *)xb[t] + nb + g0), acc[t]);
            }
            for (size_t g = 0; g < ng; g++) {
                __m512i is[TT];
                for (size_t t = 0; t < TT; t++) is[t] = _mm512_setzero_si512();
                for (size_t j = 0; j < bpg; j++) {
                    size_t b = g * bpg + j;
                    __m512i qv = unpack(bits, w + b * bbytes);
                    for (size_t t = 0; t < TT; t++)
                        is[t] = _mm512_dpwssd_epi32(is[t], qv, xload((const int16_t *)(const void *)(xb[t] + qoff) + b * 32));
                }
                float s = load1(sb, m->scales, s0 + g);
                for (size_t t = 0; t < TT; t++) {
                    const float *d = (const float *)(const void *)xb[t];
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[t]), _mm512_set1_ps(s * d[g * bpg]), acc[t]);
                }
            }
            for (size_t t = 0; t < nt; t++) y[(t0 + t) * ldy + r] = _mm512_reduce_add_ps(acc[t]);
            }
        }
    }
}

void cm_mlx_gemmq_avx512(const cm_matrix *m, size_t r0, size_t r1, const void *xq, size_t xq_stride,
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

/* ---- prefill over token-lane tiles ---- */

/* The weights of one group of a row as 32-bit lanes holding the element pairs (2p, 2p+1) as
 * int16: for 4 bits a packed byte is one pair (low nibble first), for 8 bits two bytes are. */
static ALWAYS_INLINE void unpack_pairs(uint32_t bits, const uint8_t *w, size_t gs, uint32_t *out) {
    if (bits == 4) {
        const __m512i m4 = _mm512_set1_epi32(15);
        for (size_t k = 0; k < gs / 2; k += 16) {
            __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(w + k)));
            __m512i pr = _mm512_or_si512(_mm512_and_si512(b, m4), _mm512_slli_epi32(_mm512_srli_epi32(b, 4), 16));
            _mm512_storeu_si512((void *)(out + k), pr);
        }
    } else {
        for (size_t k = 0; k < gs; k += 32)
            _mm512_storeu_si512((void *)(out + k / 2),
                                _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(w + k))));
    }
}

/* NR rows from r against one tile (nt tokens from t0): two int32 accumulators per row (even and
 * odd pairs) to hide the dpwssd latency, one float accumulator per row, 16 tokens a lane each. */
static ALWAYS_INLINE void tile_rows(const cm_matrix *m, size_t r, size_t NR, const uint8_t *tile, size_t t0,
                                    size_t nt, float *y, size_t ldy) {
    size_t ng = m->cols / m->group_size, gs = m->group_size, np = gs / 2, gbytes = gs * m->bits / 8;
    const int32_t *xq = (const int32_t *)(const void *)tile;
    const float *dv = (const float *)(const void *)(tile + m->cols * 2 * CM_MLX_LANES), *gq = dv + ng * CM_MLX_LANES;
    uint32_t wp[4][64];
    __m512 accf[4];
    for (size_t i = 0; i < NR; i++) accf[i] = _mm512_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        for (size_t i = 0; i < NR; i++)
            unpack_pairs(m->bits, (const uint8_t *)m->data + (r + i) * m->row_bytes + g * gbytes, gs, wp[i]);
        __m512i a0[4], a1[4];
        for (size_t i = 0; i < NR; i++) a0[i] = a1[i] = _mm512_setzero_si512();
        const int32_t *xg = xq + g * np * CM_MLX_LANES;
        for (size_t p = 0; p < np; p += 2) {
            __m512i x0 = _mm512_loadu_si512((const void *)(xg + p * CM_MLX_LANES));
            __m512i x1 = _mm512_loadu_si512((const void *)(xg + (p + 1) * CM_MLX_LANES));
            for (size_t i = 0; i < NR; i++) {
                a0[i] = _mm512_dpwssd_epi32(a0[i], _mm512_set1_epi32((int)wp[i][p]), x0);
                a1[i] = _mm512_dpwssd_epi32(a1[i], _mm512_set1_epi32((int)wp[i][p + 1]), x1);
            }
        }
        __m512 d16 = _mm512_loadu_ps(dv + g * CM_MLX_LANES), q16 = _mm512_loadu_ps(gq + g * CM_MLX_LANES);
        for (size_t i = 0; i < NR; i++) {
            size_t gi = (r + i) * ng + g;
            __m512 v = _mm512_cvtepi32_ps(_mm512_add_epi32(a0[i], a1[i]));
            accf[i] = _mm512_fmadd_ps(v, _mm512_mul_ps(_mm512_set1_ps(load1(m->sb_type, m->scales, gi)), d16), accf[i]);
            accf[i] = _mm512_fmadd_ps(_mm512_set1_ps(load1(m->sb_type, m->biases, gi)), q16, accf[i]);
        }
    }
    for (size_t i = 0; i < NR; i++) {
        float out[CM_MLX_LANES];
        _mm512_storeu_ps(out, accf[i]);
        for (size_t t = 0; t < nt; t++) y[(t0 + t) * ldy + r + i] = out[t];
    }
}

void cm_mlx_gemm_tiles_avx512(const cm_matrix *m, size_t r0, size_t r1, const uint8_t *tiles, size_t n,
                              float *y, size_t ldy) {
    size_t tb = cm_mlx_tile_bytes(m);
    for (size_t r = r0; r < r1; r += 4) {
        size_t nr = r1 - r < 4 ? r1 - r : 4;
        for (size_t t0 = 0; t0 < n; t0 += CM_MLX_LANES) {
            const uint8_t *tile = tiles + t0 / CM_MLX_LANES * tb;
            size_t nt = n - t0 < CM_MLX_LANES ? n - t0 : CM_MLX_LANES;
            switch (nr) {
            case 4: tile_rows(m, r, 4, tile, t0, nt, y, ldy); break;
            case 3: tile_rows(m, r, 3, tile, t0, nt, y, ldy); break;
            case 2: tile_rows(m, r, 2, tile, t0, nt, y, ldy); break;
            default: tile_rows(m, r, 1, tile, t0, nt, y, ldy); break;
            }
        }
    }
}

#endif
