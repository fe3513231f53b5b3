/* compute/cpu/quants.h: row-dot and prefill kernels chosen for the CPU at run time, for
 * compute/cpu/ only.
 * Owns: the kernel signatures and the cm_*_select() functions (all in select.c), which hand back
 * the best kernel the CPU features allow and fall back to the reference (quants_ref.c) otherwise.
 * The SIMD entry points live in quants_avx2.c (-mavx2 -mfma -mf16c), quants_avx512.c (plus
 * AVX-512 F/BW/VL/VNNI), quants_neon.c and quants_mlx_*.c. */
#ifndef LM_COMPUTE_CPU_QUANTS_H
#define LM_COMPUTE_CPU_QUANTS_H

#include "compute/cpu/cpu.h"

/* Dot product of n elements of one row of a fixed type with float x. n is a whole number of
 * blocks of the type. Never NULL once selected for a type with can_matmul. */
typedef float (*cm_dot_fn)(const void *row, const float *x, size_t n);

/* Best dot kernel for type on a CPU with cpu_features (lm_cpu_features(), or 0 for the
 * reference); NULL when the type has no dot kernel at all. */
cm_dot_fn cm_dot_select(uint32_t type, uint32_t cpu_features);

/* Dot product of row of an MLX matrix (cols elements) with float x. */
typedef float (*cm_mlx_dot_fn)(const cm_matrix *m, size_t row, const float *x);

/* Best MLX dot kernel for m's bits, group size and scale type; never NULL (the reference,
 * cm_mlx_dot_row, handles every valid shape). */
cm_mlx_dot_fn cm_mlx_dot_select(const cm_matrix *m, uint32_t cpu_features);

/* Integer kernels: the activations x are quantized once per matrix product,
 * cm_quantize_ref(act_type, x, xq, n) with act_type Q8_0 or Q8_K as cm_dotq_select says, and
 * every row is then dotted with xq. Faster than cm_dot_fn (byte products instead of float
 * conversions) at the price of quantizing x (about 0.5% relative error per dot, as llama.cpp's
 * CPU path). NULL (act_type untouched) when the CPU has no such kernel for type: use
 * cm_dot_select. */
typedef float (*cm_dotq_fn)(const void *row, const void *xq, size_t n);
/* Decode streams every row once and the hardware prefetcher alone leaves a thread well below
 * the memory's bandwidth: the SIMD decode kernels ask for the line this many bytes ahead of what
 * they read (Llama-3.2-1B Q4_0, one thread, Zen 4: 18.2 tok/s without, 24.7 with 4 KiB, 22 with
 * 1 or 16 KiB). Prefetches never fault, so running past a matrix is harmless. */
#ifndef CM_DECODE_PREFETCH /* -DCM_DECODE_PREFETCH=N to measure another distance */
#define CM_DECODE_PREFETCH 4096
#endif
cm_dotq_fn cm_dotq_select(uint32_t type, uint32_t cpu_features, uint32_t *act_type);
/* The fastest quantizer of n floats into blocks of type for this CPU, byte-identical to
 * cm_quantize_ref (meant for the activations of cm_dotq_fn); NULL for types without a
 * quantizer. n a whole number of blocks. */
typedef void (*cm_quantize_fn)(const float *x, void *out, size_t n);
cm_quantize_fn cm_quantize_select(uint32_t type, uint32_t cpu_features);
/* Packs the 6-bit scales ls[8] and mins lm[8] (each 0..63) of a Q4_K or Q5_K super-block into its
 * 12 scale bytes, GGML's layout (quants_ref.c, which reads them back too; quantize_ref.c). */
void cm_k4_pack_scales(uint8_t s12[12], const int ls[8], const int lm[8]);
/* The oracle for cm_dotq_fn: the dot of the dequantized row and dequantized xq (of act_type). */
float cm_dotq_ref(uint32_t type, const void *row, uint32_t act_type, const void *xq, size_t n);

/* MLX integer decode (quants_mlx_*.c): the activation x is prepared once per matrix product by
 * cm_mlx_quantize_x() into a buffer of cm_mlx_xq_bytes(m) bytes: each group rounded to int16
 * (d = max|x| / 32767, q = round(x / d)) and per group the sum of the rounded x; then each row
 * is dotted with it: per group, scale * sum(q * xq) in integers (pmaddwd) + bias * sum(xq).
 * 16 bits, not 8: MLX references are float runs, and 8-bit activations (as llama.cpp's Q8_0
 * path) put the small fixtures' logits ~2% off, ten times their tolerance; int16 costs a few
 * more instructions and stays under the memory-bandwidth floor. The bias meets the same rounded x
 * as the quants, so the rounding errors of q's offset (about 2^(bits-1) * scale) cancel against
 * it. Buffer layout (any alignment), nb = cols / 32, ng = cols / group_size:
 *   float d[nb] (the scale of each block of 32: the blocks of a group share their group's);
 *   float gqsum[ng];
 *   then at byte offset cm_mlx_xq_qoff(m): int16 q[cols], for bits 4 each block of 32 stored as
 *   its 16 even elements then its 16 odd ones (MLX puts element 2j in the low nibble of byte j).
 * Group sizes must be multiples of 32, at most 128 (check cm_mlx_dotq_select first). */
size_t cm_mlx_xq_bytes(const cm_matrix *m);
size_t cm_mlx_xq_qoff(const cm_matrix *m);
void cm_mlx_quantize_x(const cm_matrix *m, const float *x, void *xq, uint32_t cpu_features);
typedef float (*cm_mlx_dotq_fn)(const cm_matrix *m, size_t row, const void *xq);
/* NULL when no integer kernel fits m (bits other than 4 and 8, group size not a multiple of 32,
 * or a CPU without one): use cm_mlx_dot_select. */
cm_mlx_dotq_fn cm_mlx_dotq_select(const cm_matrix *m, uint32_t cpu_features);
/* Whether m has a shape the integer kernels take (bits 4 or 8, group size a multiple of 32 up to
 * 128 dividing cols, scales of F32, F16 or BF16). */
bool cm_mlx_dotq_shape_ok(const cm_matrix *m);
/* The oracle: the dot of the dequantized row with the dequantized xq, in double. */
float cm_mlx_dotq_ref(const cm_matrix *m, size_t row, const void *xq);
/* Several tokens at once (prefill): y[t * ldy + r] for rows r in [r0, r1) and t < n, the
 * activation of token t prepared at xq + t * xq_stride. Each weight group is unpacked once for
 * all the tokens. NULL when no kernel fits (as cm_mlx_dotq_select). */
typedef void (*cm_mlx_gemmq_fn)(const cm_matrix *m, size_t r0, size_t r1, const void *xq,
                                size_t xq_stride, size_t n, float *y, size_t ldy);
cm_mlx_gemmq_fn cm_mlx_gemmq_select(const cm_matrix *m, uint32_t cpu_features);
/* y (n, rows) = x (n, cols) . w^T for an MLX matrix through the tiled integer kernel fn (what
 * cm_mlx_gemmq_select chose for it, NULL when none), split over pool by rows: prepares the n
 * activations into *buf (grown with lm_realloc; *cap its size, owned by the caller) and runs fn.
 * False (nothing written) when fn is NULL or on NOMEM: use the float path. */
bool cm_mlx_matmul(lm_pool *pool, uint32_t cpu_features, cm_mlx_gemmq_fn fn, uint8_t **buf, size_t *cap,
                   const cm_matrix *w, const float *x, size_t n, float *y);

/* Dequantizes n elements (whole blocks) of a row of a fixed type; same values as
 * cm_dequant_ref up to the compiler's contraction of the reference's a*b-c. cm_dequant_row()
 * uses the best one for the running CPU (prefill dequantizes each weight row once per batch). */
typedef void (*cm_dequant_fn)(const void *row, float *out, size_t n);
/* NULL when the type cannot be dequantized. */
cm_dequant_fn cm_dequant_select(uint32_t type, uint32_t cpu_features);

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#define CM_HAVE_X86_KERNELS 1
/* quants_avx2.c: need LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C. */
float cm_dot_f32_avx2(const void *row, const float *x, size_t n);
float cm_dot_f16_avx2(const void *row, const float *x, size_t n);
float cm_dot_bf16_avx2(const void *row, const float *x, size_t n);
float cm_dot_q8_0_avx2(const void *row, const float *x, size_t n);
float cm_dot_q4_0_avx2(const void *row, const float *x, size_t n);
float cm_dot_q4_k_avx2(const void *row, const float *x, size_t n);
float cm_dot_q5_k_avx2(const void *row, const float *x, size_t n);
float cm_dot_q6_k_avx2(const void *row, const float *x, size_t n);
/* xq in Q8_0 blocks for Q8_0, Q4_0 and Q5_0, in Q8_K blocks for the K types. */
float cm_dotq_q8_0_avx2(const void *row, const void *xq, size_t n);
float cm_dotq_q4_0_avx2(const void *row, const void *xq, size_t n);
float cm_dotq_q5_0_avx2(const void *row, const void *xq, size_t n);
float cm_dotq_q2_k_avx2(const void *row, const void *xq, size_t n);
float cm_dotq_q3_k_avx2(const void *row, const void *xq, size_t n);
float cm_dotq_q4_k_avx2(const void *row, const void *xq, size_t n);
float cm_dotq_q5_k_avx2(const void *row, const void *xq, size_t n);
float cm_dotq_q6_k_avx2(const void *row, const void *xq, size_t n);
/* Any bits in 2..8, group_size a multiple of 32. */
float cm_mlx_dot_avx2(const cm_matrix *m, size_t row, const float *x);
/* quants_mlx_avx2.c: bits 4 and 8, group_size a multiple of 32. */
float cm_mlx_dotq_avx2(const cm_matrix *m, size_t row, const void *xq);
void cm_mlx_gemmq_avx2(const cm_matrix *m, size_t r0, size_t r1, const void *xq, size_t xq_stride,
                       size_t n, float *y, size_t ldy);
/* quants_mlx_avx512.c: the AVX2 set plus AVX-512 F/BW/VL/VNNI; same contract. */
float cm_mlx_dotq_avx512(const cm_matrix *m, size_t row, const void *xq);
void cm_mlx_gemmq_avx512(const cm_matrix *m, size_t r0, size_t r1, const void *xq, size_t xq_stride,
                         size_t n, float *y, size_t ldy);
void cm_quantize_q8_0_avx2(const float *x, void *out, size_t n);
void cm_quantize_q8_0x4_avx2(const float *x, void *out, size_t n);
void cm_quantize_q8_k_avx2(const float *x, void *out, size_t n);
void cm_dequant_f16_avx2(const void *row, float *out, size_t n);
void cm_dequant_bf16_avx2(const void *row, float *out, size_t n);
void cm_dequant_q8_0_avx2(const void *row, float *out, size_t n);
void cm_dequant_q4_0_avx2(const void *row, float *out, size_t n);
void cm_dequant_q4_k_avx2(const void *row, float *out, size_t n);
void cm_dequant_q5_k_avx2(const void *row, float *out, size_t n);
void cm_dequant_q6_k_avx2(const void *row, float *out, size_t n);
#endif


#if defined(__aarch64__) && !defined(__AARCH64EB__)
#define CM_HAVE_NEON_KERNELS 1
/* quants_neon.c: need LM_CPU_NEON (every AArch64 CPU). */
float cm_dot_f32_neon(const void *row, const float *x, size_t n);
float cm_dot_f16_neon(const void *row, const float *x, size_t n);
float cm_dot_bf16_neon(const void *row, const float *x, size_t n);
void cm_quantize_q8_0_neon(const float *x, void *out, size_t n);
void cm_quantize_q8_k_neon(const float *x, void *out, size_t n);
/* xq in Q8_0 blocks for Q8_0, Q4_0 and Q5_0, in Q8_K blocks for the K types. */
float cm_dotq_q8_0_neon(const void *row, const void *xq, size_t n);
float cm_dotq_q4_0_neon(const void *row, const void *xq, size_t n);
float cm_dotq_q5_0_neon(const void *row, const void *xq, size_t n);
float cm_dotq_q2_k_neon(const void *row, const void *xq, size_t n);
float cm_dotq_q3_k_neon(const void *row, const void *xq, size_t n);
float cm_dotq_q4_k_neon(const void *row, const void *xq, size_t n);
float cm_dotq_q5_k_neon(const void *row, const void *xq, size_t n);
float cm_dotq_q6_k_neon(const void *row, const void *xq, size_t n);
void cm_dequant_f16_neon(const void *row, float *out, size_t n);
void cm_dequant_bf16_neon(const void *row, float *out, size_t n);
void cm_dequant_q8_0_neon(const void *row, float *out, size_t n);
void cm_dequant_q4_0_neon(const void *row, float *out, size_t n);
void cm_dequant_q4_k_neon(const void *row, float *out, size_t n);
void cm_dequant_q5_k_neon(const void *row, float *out, size_t n);
void cm_dequant_q6_k_neon(const void *row, float *out, size_t n);
/* bits 4 and 8, group_size a multiple of 32. */
float cm_mlx_dot_neon(const cm_matrix *m, size_t row, const float *x);
/* MLX integer decode and prefill (cm_mlx_dotq_fn, cm_mlx_gemmq_fn): bits 4 and 8, group_size a
 * multiple of 32 (cm_mlx_dotq_select checks). */
float cm_mlx_dotq_neon(const cm_matrix *m, size_t row, const void *xq);
void cm_mlx_gemmq_neon(const cm_matrix *m, size_t r0, size_t r1, const void *xq, size_t xq_stride,
                       size_t n, float *y, size_t ldy);
/* The same integer kernels with SDOT: need LM_CPU_DOTPROD too. Compiled where the compiler can
 * target armv8.2-a+dotprod for part of a file (GCC) or the whole build already does (Apple). */
#if defined(__ARM_FEATURE_DOTPROD) || (defined(__GNUC__) && !defined(__clang__))
#define CM_HAVE_NEON_DOTPROD 1
float cm_dotq_q8_0_neon_dp(const void *row, const void *xq, size_t n);
float cm_dotq_q4_0_neon_dp(const void *row, const void *xq, size_t n);
float cm_dotq_q5_0_neon_dp(const void *row, const void *xq, size_t n);
float cm_dotq_q2_k_neon_dp(const void *row, const void *xq, size_t n);
float cm_dotq_q3_k_neon_dp(const void *row, const void *xq, size_t n);
float cm_dotq_q4_k_neon_dp(const void *row, const void *xq, size_t n);
float cm_dotq_q5_k_neon_dp(const void *row, const void *xq, size_t n);
float cm_dotq_q6_k_neon_dp(const void *row, const void *xq, size_t n);
#endif
#endif

/* ---- prefill (matrix-matrix) kernels ----
 * The activations of all n tokens are quantized once per product by a cm_gemm_prep_fn into blocks
 * of 32, each block exactly as cm_quantize_ref(CM_Q8_0) stores it, and laid out CM_GEMM_TOK tokens
 * to a vector (token t of group g is lane t % 16). A cm_gemm_fn then computes rows [r0, r1) of a
 * weight matrix for every token with integer dot products, reusing each unpacked weight block for
 * all tokens. Per group g and block b of 32 (cm_gemm_act_bytes gives the total), 768 bytes:
 *   i8 q[8][16][4]  (4 elements of each token, for the 8 groups of 4 elements of the block)
 *   f32 d[16]       (the Q8_0 scale, 0 for lanes past n)
 *   i32 ns[2][16]   (-sum of q over elements 0..15 and 16..31)
 *   f32 xs[16]      (d * sum of q over the block) */
#define CM_GEMM_TOK 16
#define CM_GEMM_ACT_BLOCK 768
typedef struct cm_gemm_act {
    size_t n, cols;   /* tokens; elements per token (a multiple of 32) */
    size_t n_grp;     /* (n + 15) / 16 */
    uint8_t *mem;     /* cm_gemm_act_bytes(n, cols) bytes, 64-byte aligned */
} cm_gemm_act;
size_t cm_gemm_act_bytes(size_t n, size_t cols);
/* Fills token groups [g0, g1) of a from x (n rows of a->cols floats, ldx floats apart). */
typedef void (*cm_gemm_prep_fn)(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1);
/* y[t * ldy + r] for every token t < a->n and row r in [r0, r1); scratch holds
 * cm_gemm_scratch_bytes(w->cols, a->n) bytes owned by the calling thread. */
typedef void (*cm_gemm_fn)(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a,
                           float *y, size_t ldy, void *scratch);
size_t cm_gemm_scratch_bytes(size_t cols, size_t n);
/* The activation quantizer of the K types' tiles: Q8_K blocks (one scale per 256 elements) made by
 * the quantizer cm_quantize_select gives for this CPU, in the cm_gemm_act layout, so batched and
 * one-token products of a K-type matrix quantize alike. cols a multiple of 256. */
cm_gemm_prep_fn cm_gemm_prep_q8k_select(uint32_t cpu_features);
/* What it selects, with the Q8_K quantizer quant (quants_ref.c). */
void cm_gemm_prep_q8k(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1, cm_quantize_fn quant);
/* The tiled kernel for type on this CPU, and its activation quantizer in *prep; NULL (then use
 * cm_dequant_row and float dots) when there is none. Results equal cm_dot_ref of the row with
 * the dequantized Q8_0 activations up to float rounding. */
cm_gemm_fn cm_gemm_select(uint32_t type, uint32_t cpu_features, cm_gemm_prep_fn *prep);

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
/* quants_avx2.c: the same tiles without VNNI (Q8_0 by the sign trick). */
void cm_gemm_prep_avx2(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1);
void cm_gemm_q4_0_avx2(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q5_0_avx2(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q8_0_avx2(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q4_k_avx2(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q5_k_avx2(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q6_k_avx2(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
/* quants_avx512.c: need AVX2_SET plus LM_CPU_AVX512F | BW | VL | VNNI. */
void cm_gemm_prep_avx512(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1);
void cm_gemm_q4_0_avx512(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q5_0_avx512(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q8_0_avx512(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q4_k_avx512(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q5_k_avx512(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q6_k_avx512(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
float cm_dotq_q8_0_avx512(const void *row, const void *xq, size_t n);
/* Q4_0 and Q5_0 take CM_Q8_0X4 activations, Q8_0 CM_Q8_0, the K types CM_Q8_K. */
float cm_dotq_q4_0_avx512(const void *row, const void *xq, size_t n);
float cm_dotq_q5_0_avx512(const void *row, const void *xq, size_t n);
float cm_dotq_q4_k_avx512(const void *row, const void *xq, size_t n);
float cm_dotq_q6_k_avx512(const void *row, const void *xq, size_t n);
#endif

#ifdef CM_HAVE_NEON_KERNELS
/* quants_neon.c: the prefill activation quantizer (any AArch64 CPU) and tiles of 2 rows x 16
 * tokens with SDOT by lane (need LM_CPU_DOTPROD; they use no scratch). */
void cm_gemm_prep_neon(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1);
#ifdef CM_HAVE_NEON_DOTPROD
void cm_gemm_q8_0_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q4_0_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q5_0_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q4_k_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q5_k_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
void cm_gemm_q6_k_neon_dp(const cm_matrix *w, size_t r0, size_t r1, const cm_gemm_act *a, float *y, size_t ldy, void *scratch);
#endif
#endif

/* ---- R16: weights repacked at load, 16 rows interleaved (quants_r16_ref.c has the layout) ---- */

/* Bytes of w repacked (groups of 16 rows, the last padded), 0 when w cannot be (type Q4_0 with
 * columns a multiple of 32 only, for now). */
size_t cm_r16_bytes(const cm_matrix *w);
/* Writes w's rows (its data, in the type's own layout) repacked into out (cm_r16_bytes); the
 * _rows form only rows [r0, r1) (r0 a multiple of 16; r1 too unless it is w->rows). */
void cm_r16_pack(const cm_matrix *w, void *out);
void cm_r16_pack_rows(const cm_matrix *w, void *out, size_t r0, size_t r1);
/* One row of a repacked matrix of cols columns, dequantized. */
void cm_r16_dequant_row(const void *packed, size_t cols, size_t row, float *out);
/* Per-token activation bytes of the R16 kernels for cols columns (a multiple of 64), and the
 * reference quantizer filling them from x: each block of 32 as cm_quantize_ref(CM_Q8_0) makes it. */
size_t cm_r16_act_bytes(size_t cols);
void cm_r16_quantize(const float *x, size_t cols, void *act);
/* The three parts of one token's R16 activations at act: the bytes q[cols], the block scales
 * d[cols / 32] and the -8 * sums c[cols / 32], for the quantizers that write them. */
static inline void cm_r16_act_parts(void *act, size_t cols, int8_t **q, float **d, int32_t **c) {
    *q = act;
    *d = (float *)(void *)((uint8_t *)act + cols);
    *c = (int32_t *)(*d + cols / 32);
}
/* y[t * ldy + r] for tokens t < n_tok and the rows r < rows of groups [g0, g1); the activations of
 * token t at act + t * act_stride. Any n_tok: a token's numbers never depend on the others. */
typedef void (*cm_r16_fn)(const void *packed, size_t cols, size_t rows, size_t g0, size_t g1,
                          const uint8_t *act, size_t act_stride, size_t n_tok, float *y, size_t ldy);
void cm_r16_gemm_ref(const void *packed, size_t cols, size_t rows, size_t g0, size_t g1, const uint8_t *act,
                     size_t act_stride, size_t n_tok, float *y, size_t ldy);
#ifdef CM_HAVE_X86_KERNELS
/* quants_r16_avx2.c: AVX2, FMA, F16C. */
void cm_r16_gemm_avx2(const void *packed, size_t cols, size_t rows, size_t g0, size_t g1, const uint8_t *act,
                      size_t act_stride, size_t n_tok, float *y, size_t ldy);
/* quants_r16_avx512.c: AVX-512 F/BW/VL/VNNI. */
void cm_r16_gemm_avx512(const void *packed, size_t cols, size_t rows, size_t g0, size_t g1, const uint8_t *act,
                        size_t act_stride, size_t n_tok, float *y, size_t ldy);
#endif
/* cm_r16_quantize's signature, and its AVX2, AVX-512 and NEON forms: byte-identical to it, one
 * pass a block. */
typedef void (*cm_r16_quant_fn)(const float *x, size_t cols, void *act);
#ifdef CM_HAVE_X86_KERNELS
void cm_r16_quantize_avx2(const float *x, size_t cols, void *act);
void cm_r16_quantize_avx512(const float *x, size_t cols, void *act);
#endif
#ifdef CM_HAVE_NEON_KERNELS
void cm_r16_quantize_neon(const float *x, size_t cols, void *act);
#endif
/* The fastest R16 activation quantizer for this CPU (cm_r16_quantize where there is no other). */
cm_r16_quant_fn cm_r16_quantize_select(uint32_t cpu_features);
/* The R16 kernel for type on this CPU; NULL when there is none faster than the row kernels (then
 * the weights are not repacked). */
cm_r16_fn cm_r16_select(uint32_t type, uint32_t cpu_features);

/* ---- R16M: MLX 4-bit weights repacked at load into R16 form (quants_r16m_ref.c has the layout) ---- */

/* Bytes of w repacked, 0 when it cannot be (MLX with bits 4, group size a multiple of 32 dividing
 * cols, scales of F16, BF16 or F32), and of one MLX group of 16 rows. */
size_t cm_r16m_bytes(const cm_matrix *w);
size_t cm_r16m_group_bytes(const cm_matrix *w);
/* Rows [r0, r1) of w (its data, scales and biases in MLX form) into out (cm_r16m_bytes); r0 a
 * multiple of 16, r1 too unless it is w->rows. */
void cm_r16m_pack_rows(const cm_matrix *w, void *out, size_t r0, size_t r1);
/* One row of w repacked at packed, dequantized (w gives the shape, group size and scale type). */
void cm_r16m_dequant_row(const cm_matrix *w, const void *packed, size_t row, float *out);
/* Per-token activation bytes for cols columns, and the quantizer filling them from x. */
size_t cm_r16m_act_bytes(size_t cols);
void cm_r16m_quantize(const float *x, size_t cols, void *act);
/* As cm_r16_fn, for a matrix w whose repacked weights are at packed. */
typedef void (*cm_r16m_fn)(const cm_matrix *w, const void *packed, size_t g0, size_t g1, const uint8_t *act,
                           size_t act_stride, size_t n_tok, float *y, size_t ldy);
void cm_r16m_gemm_ref(const cm_matrix *w, const void *packed, size_t g0, size_t g1, const uint8_t *act,
                      size_t act_stride, size_t n_tok, float *y, size_t ldy);
#ifdef CM_HAVE_X86_KERNELS
/* quants_r16_avx2.c: AVX2, FMA, F16C. */
void cm_r16m_gemm_avx2(const cm_matrix *w, const void *packed, size_t g0, size_t g1, const uint8_t *act,
                       size_t act_stride, size_t n_tok, float *y, size_t ldy);
/* quants_r16m_avx512.c: AVX-512 F/BW/VL/VNNI. */
void cm_r16m_gemm_avx512(const cm_matrix *w, const void *packed, size_t g0, size_t g1, const uint8_t *act,
                         size_t act_stride, size_t n_tok, float *y, size_t ldy);
void cm_r16m_quantize_avx512(const float *x, size_t cols, void *act);
#endif
/* The fastest cm_r16m_quantize for this CPU (byte-identical to it). */
typedef void (*cm_r16m_quant_fn)(const float *x, size_t cols, void *act);
cm_r16m_quant_fn cm_r16m_quantize_select(uint32_t cpu_features);
#ifdef CM_HAVE_NEON_DOTPROD
/* quants_neon.c, with SDOT (LM_CPU_DOTPROD): R16 and R16M. */
void cm_r16_gemm_neon_dp(const void *packed, size_t cols, size_t rows, size_t g0, size_t g1, const uint8_t *act,
                         size_t act_stride, size_t n_tok, float *y, size_t ldy);
void cm_r16m_gemm_neon_dp(const cm_matrix *w, const void *packed, size_t g0, size_t g1, const uint8_t *act,
                          size_t act_stride, size_t n_tok, float *y, size_t ldy);
#endif
/* The R16M kernel for w on this CPU; NULL when there is none (w keeps the MLX kernels). */
cm_r16m_fn cm_r16m_select(const cm_matrix *w, uint32_t cpu_features);

#endif /* LM_COMPUTE_CPU_QUANTS_H */
