/* compute/quantize.h: quantizers for model weights (what `locallm convert` writes), beside the
 * fast activation quantizers of backend.h.
 * Owns: the weight quantizers of every GGUF type convert writes and MLX's affine groups. They
 * spend time searching for good scales (weights are quantized once, activations every token).
 * Implemented in compute/cpu/quantize_ref.c; the dequantizers are cm_dequant_ref and
 * cm_mlx_dequant_row. */
#ifndef LM_COMPUTE_QUANTIZE_H
#define LM_COMPUTE_QUANTIZE_H

#include "compute/backend.h"

/* Quantizes n floats (a whole number of blocks) into blocks of type. F32, F16, BF16, Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1 round as ggml's reference quantizers do (same as cm_quantize_ref);
 * Q4_K and Q5_K search each sub-block's scale and min for the least weighted squared error and
 * Q6_K each sub-block's scale (the rules of llama.cpp's reference quantizers, ggml-quants.c:
 * make_qkx2_quants and make_qx_quants), so their error is below cm_quantize_ref's simple rule.
 * False for types without a weight quantizer or n not a whole number of blocks. Non-finite
 * inputs give garbage values, never undefined behaviour. */
bool cm_quantize_weights(uint32_t type, const float *x, void *out, size_t n);

/* MLX affine quantization of one row of cols floats in groups of group_size (cols a multiple
 * of it), bits in 2..8: per group w ~ scale * q + bias, q in [0, 2^bits - 1], with MLX's rule
 * (mlx/ops.cpp affine_quantize): the end of larger magnitude is the bias and is exact, the scale
 * is (max - min) / (2^bits - 1) nudged so that 0 falls on a level. q is packed little-endian
 * from the low bits (cols * bits / 8 bytes, as MLX's uint32 words); scale and bias of each group
 * are written as sb_type (CM_F32, CM_F16 or CM_BF16), and q is rounded against the stored
 * (rounded) values. */
void cm_mlx_quantize_row(const float *x, size_t cols, uint32_t bits, uint32_t group_size,
                         uint32_t sb_type, uint8_t *q, void *scales, void *biases);

#endif /* LM_COMPUTE_QUANTIZE_H */
