/* compute/cpu/quants.h: row-dot kernels chosen for the CPU at run time, for compute/cpu/ only.
 * Owns: the kernel signatures and cm_dot_select()/cm_mlx_dot_select(), which hand back the best
 * kernel the CPU features allow and fall back to the reference (quants_ref.c) otherwise.
 * The SIMD entry points live in quants_avx2.c (compiled with -mavx2 -mfma -mf16c). */
#ifndef LM_COMPUTE_CPU_QUANTS_H
#define LM_COMPUTE_CPU_QUANTS_H

#include "compute/backend.h"

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
cm_dotq_fn cm_dotq_select(uint32_t type, uint32_t cpu_features, uint32_t *act_type);
/* The fastest quantizer of n floats into blocks of type for this CPU, byte-identical to
 * cm_quantize_ref (meant for the activations of cm_dotq_fn); NULL for types without a
 * quantizer. n a whole number of blocks. */
typedef void (*cm_quantize_fn)(const float *x, void *out, size_t n);
cm_quantize_fn cm_quantize_select(uint32_t type, uint32_t cpu_features);
/* The oracle for cm_dotq_fn: the dot of the dequantized row and dequantized xq (of act_type). */
float cm_dotq_ref(uint32_t type, const void *row, uint32_t act_type, const void *xq, size_t n);

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
void cm_quantize_q8_0_avx2(const float *x, void *out, size_t n);
void cm_quantize_q8_k_avx2(const float *x, void *out, size_t n);
void cm_mlx_dequant_avx2(const cm_matrix *m, size_t row, float *out);
void cm_dequant_f16_avx2(const void *row, float *out, size_t n);
void cm_dequant_bf16_avx2(const void *row, float *out, size_t n);
void cm_dequant_q8_0_avx2(const void *row, float *out, size_t n);
void cm_dequant_q4_0_avx2(const void *row, float *out, size_t n);
void cm_dequant_q4_k_avx2(const void *row, float *out, size_t n);
void cm_dequant_q5_k_avx2(const void *row, float *out, size_t n);
void cm_dequant_q6_k_avx2(const void *row, float *out, size_t n);
#endif

#endif /* LM_COMPUTE_CPU_QUANTS_H */
