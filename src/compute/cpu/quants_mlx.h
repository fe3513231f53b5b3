/* compute/cpu/quants_mlx.h: the token-lane activation layout of the MLX prefill kernels, shared by
 * quants_mlx_ref.c (which fills it), quants_mlx_avx512.c (which reads it), ops.c (which runs them)
 * and select.c.
 *
 * Tiles of 16 tokens; per tile, for cols columns and ng = cols / group_size groups:
 *   int16 q[cols / 2][16][2]   element pair (2p, 2p+1) of each token: one 32-bit lane per token,
 *                              so a weight pair broadcast to all lanes meets 16 tokens in one
 *                              _mm512_dpwssd_epi32
 *   float d[ng][16]            per group and token: max|x| / 32767 (0 for lanes past n)
 *   float gqsum[ng][16]        per group and token: d * sum of q (0 past n)
 * The rounding is cm_mlx_quantize_x's, so results equal cm_mlx_dotq_ref up to float rounding. */
#ifndef LM_COMPUTE_CPU_QUANTS_MLX_H
#define LM_COMPUTE_CPU_QUANTS_MLX_H

#include "compute/cpu/quants.h"

#define CM_MLX_LANES 16

/* Bytes of one tile of 16 tokens for m's shape. */
static inline size_t cm_mlx_tile_bytes(const cm_matrix *m) {
    return m->cols * 2 * CM_MLX_LANES + 2 * (m->cols / m->group_size) * CM_MLX_LANES * sizeof(float);
}

/* Fills tile k (tokens [16k, 16k + 16) of x, n tokens of m->cols floats) with cm_mlx_quantize_x's
 * rounding (quants_mlx_ref.c). */
void cm_mlx_prep_tile(const cm_matrix *m, const float *x, size_t n, uint8_t *tile, size_t k);
/* y[t * ldy + r] for rows [r0, r1) and tokens t < n, from the tiles. */
typedef void (*cm_mlx_tiles_fn)(const cm_matrix *m, size_t r0, size_t r1, const uint8_t *tiles, size_t n, float *y,
                                size_t ldy);
/* The tiles kernel that goes with the gemm kernel fn (cm_mlx_gemmq_select's), NULL when fn takes
 * cm_mlx_quantize_x's per-token activations instead (select.c). */
cm_mlx_tiles_fn cm_mlx_tiles_select(cm_mlx_gemmq_fn fn);

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
/* quants_mlx_avx512.c: the tiles kernel of AVX-512 VNNI (cm_mlx_gemmq_avx512 stands for it). */
void cm_mlx_gemm_tiles_avx512(const cm_matrix *m, size_t r0, size_t r1, const uint8_t *tiles, size_t n,
                              float *y, size_t ldy);
#endif

#endif /* LM_COMPUTE_CPU_QUANTS_MLX_H */
