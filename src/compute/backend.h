/* compute/backend.h: the internal header of src/compute, what the forward pass is written against.
 * Owns: tensor element types (GGML numbering, plus MLX affine groups), weight matrices as views,
 * matrix products over the thread pool, and the element-wise ops of a transformer layer.
 * Does not own: where weights come from (formats/) or what they mean (model/). */
#ifndef LM_COMPUTE_BACKEND_H
#define LM_COMPUTE_BACKEND_H

#include "core/core.h"

/* Element types. Values follow the GGUF/GGML numbering (a file-format fact) so GGUF type ids map
 * straight through; CM_MLX is ours: MLX affine group quantization, parameters in cm_matrix. */
enum cm_type {
    CM_F32 = 0,
    CM_F16 = 1,
    CM_Q4_0 = 2,
    CM_Q4_1 = 3,
    CM_Q5_0 = 6,
    CM_Q5_1 = 7,
    CM_Q8_0 = 8,
    CM_Q8_1 = 9,
    CM_Q2_K = 10,
    CM_Q3_K = 11,
    CM_Q4_K = 12,
    CM_Q5_K = 13,
    CM_Q6_K = 14,
    CM_Q8_K = 15,
    CM_I8 = 24,
    CM_I16 = 25,
    CM_I32 = 26,
    CM_I64 = 27,
    CM_F64 = 28,
    CM_BF16 = 30,
    CM_MLX = 1000,
};

typedef struct cm_type_info {
    const char *name;    /* "Q4_K" */
    uint32_t block_size; /* elements per block */
    uint32_t block_bytes;/* bytes per block */
    bool can_matmul;     /* has dequantize + dot kernels */
} cm_type_info;

/* NULL when the id is not a type we know (the caller reports it). */
const cm_type_info *cm_type_get(uint32_t type);
/* Bytes of n elements of type; false when unknown type or n is not a whole number of blocks. */
bool cm_type_row_bytes(uint32_t type, uint64_t n, uint64_t *bytes);

/* A weight matrix: y[rows] = W[rows][cols] · x[cols]. A view; owns nothing. */
typedef struct cm_matrix {
    uint32_t type;
    size_t rows, cols;
    const void *data;      /* row r starts at data + r * row_bytes */
    size_t row_bytes;
    /* CM_MLX only: w = scale * q + bias per group of group_size along a row; q packed little-
     * endian from the low bits into uint32 words (row_bytes = cols * bits / 8). */
    uint32_t bits, group_size;
    uint32_t sb_type;      /* CM_F32, CM_F16 or CM_BF16: type of scales and biases */
    const void *scales;    /* (rows, cols / group_size) */
    const void *biases;
} cm_matrix;

/* ---- reference quant kernels (compute/cpu/quants_ref.c) ---- */

/* Dequantizes n elements (a whole number of blocks) of a row of type into out. */
void cm_dequant_ref(uint32_t type, const void *row, float *out, size_t n);
/* Dot product of n elements of a row of type with float x. */
float cm_dot_ref(uint32_t type, const void *row, const float *x, size_t n);
/* Quantizes n floats into blocks of type (Q8_0, Q4_0, ... where implemented; used by tests and
 * by activation quantization). Returns false for types without a quantizer. */
bool cm_quantize_ref(uint32_t type, const float *x, void *out, size_t n);
/* One row of an MLX matrix, dequantized (cols floats). */
void cm_mlx_dequant_row(const cm_matrix *m, size_t row, float *out);
float cm_mlx_dot_row(const cm_matrix *m, size_t row, const float *x);

/* Any matrix row to floats (dispatches on type). */
void cm_dequant_row(const cm_matrix *m, size_t row, float *out);

/* ---- the compute context: kernels chosen once, the pool, scratch ---- */

typedef struct cm_ctx cm_ctx;

/* pool is borrowed (may be NULL: single thread). NULL on NOMEM. */
cm_ctx *cm_ctx_new(lm_pool *pool, bool force_ref);
void cm_ctx_free(cm_ctx *c);
const char *cm_ctx_kernels(const cm_ctx *c); /* "ref", "avx2", "avx512", "neon" */
int cm_ctx_threads(const cm_ctx *c);
/* Reserves per-thread scratch for attention over n_ctx positions and rows of max_cols; false on
 * NOMEM. Call once when a session is made, so ops never allocate. */
bool cm_ctx_reserve(cm_ctx *c, size_t n_ctx, size_t max_cols);

/* Y (n, rows) = X (n, cols) · W^T, row-major and contiguous. Split over the pool by rows. */
void cm_matmul(cm_ctx *c, const cm_matrix *w, const float *x, size_t n, float *y);
/* y[i] = the product of x with w[i] for i < nw, every w[i] of the same cols: the activations are
 * quantized once for all of them (Q, K, V of one normed x; gate and up) and the rows of all the
 * matrices are split over the pool in one run. The same values as nw cm_matmul calls. */
void cm_matmul_multi(cm_ctx *c, const cm_matrix *const *w, size_t nw, const float *x, size_t n,
                     float *const *y);

/* ---- element-wise ops (single thread; the caller splits when it pays) ---- */

void cm_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps);
/* Rotary embedding of one head vector x[hd] at position pos, first n_rot dims rotated.
 * interleaved: pairs (x[2i], x[2i+1]) (GGUF llama); else halves (x[i], x[i+n_rot/2]) (HF/NEOX).
 * inv_freq[n_rot/2] holds theta^(-2i/n_rot), already scaled (llama3, linear, longrope). */
void cm_rope(float *x, size_t n_rot, size_t pos, const float *inv_freq, float attn_factor,
             bool interleaved);
void cm_softmax(float *x, size_t n);
/* out[i] = silu(gate[i]) * up[i] */
void cm_swiglu(float *out, const float *gate, const float *up, size_t n);
void cm_add(float *y, const float *x, size_t n); /* y += x */

/* Causal grouped-query attention of n_tok queries at positions pos0.. over a cache of
 * (pos0 + n_tok) positions, with an optional sliding window (0: none).
 * q: (n_tok, n_head, hd); k_cache, v_cache: per kv head a block of ctx_stride rows of hd floats,
 * i.e. (n_head_kv, ctx_stride, hd); out: (n_tok, n_head, hd). Split over the pool. */
void cm_attention(cm_ctx *c, float *out, const float *q, const float *k_cache,
                  const float *v_cache, size_t n_tok, size_t pos0, size_t n_head,
                  size_t n_head_kv, size_t hd, size_t ctx_stride, float scale, size_t window);

#endif /* LM_COMPUTE_BACKEND_H */
