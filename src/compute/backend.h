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
    /* Ours, never in a file: the activations of the AVX-512 Q4_0 decode kernel (quants_ref.c
     * documents the layout). GGUF tensors with ids of 1000 and up are refused. */
    CM_Q8_0X4 = 1001,
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
lm_pool *cm_ctx_pool(const cm_ctx *c);         /* borrowed; for ops split over the pool */
uint32_t cm_ctx_features(const cm_ctx *c);     /* CPU features kernels may use; 0 with force_ref */
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

/* ---- element-wise ops (compute/cpu/attention.c; single thread unless they take a cm_ctx) ---- */

void cm_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps);
/* x += r, then y = rmsnorm(x) * w: a residual add fused with the norm that follows it (the same
 * numbers as cm_add then cm_rmsnorm). */
void cm_add_rmsnorm(float *x, const float *r, float *y, const float *w, size_t n, float eps);
/* Rotary embedding of one head vector x[hd] at position pos, first n_rot dims rotated.
 * interleaved: pairs (x[2i], x[2i+1]) (GGUF llama); else halves (x[i], x[i+n_rot/2]) (HF/NEOX).
 * inv_freq[n_rot/2] holds theta^(-2i/n_rot), already scaled (llama3, linear, longrope). */
void cm_rope(float *x, size_t n_rot, size_t pos, const float *inv_freq, float attn_factor,
             bool interleaved);
/* The same rotation in two steps, so the sines are computed once per position for every head
 * and layer: cs[n_rot] gets (cos, sin) * attn_factor of pos * inv_freq[i], i < n_rot/2, and
 * cm_rope_apply rotates x with it (the same numbers as cm_rope). */
void cm_rope_cs(float *cs, size_t n_rot, size_t pos, const float *inv_freq, float attn_factor);
void cm_rope_apply(float *x, size_t n_rot, const float *cs, bool interleaved);
void cm_softmax(float *x, size_t n);
/* gate[i] = silu(gate[i]) * up[i], in place; split over the pool when n is large. */
void cm_swiglu(cm_ctx *c, float *gate, const float *up, size_t n);
void cm_add(float *y, const float *x, size_t n); /* y += x */

/* ---- KV cache and attention (compute/cpu/attention.c) ---- */

/* Writes n floats as one cache row of type CM_F16 (rounded to nearest even) or CM_F32. */
void cm_kv_store(const cm_ctx *c, uint32_t type, void *dst, const float *src, size_t n);

typedef struct cm_attn_args {
    float *out;            /* (n_tok, n_head, hd) */
    const float *q;        /* (n_tok, n_head, hd), RoPE applied */
    const void *k, *v;     /* one layer of the cache: (n_head_kv, ctx_stride, hd) of kv_type */
    uint32_t kv_type;      /* CM_F16 or CM_F32 */
    size_t n_tok, pos0;    /* queries at positions pos0..pos0+n_tok-1; keys 0..pos0+n_tok-1 */
    size_t n_head, n_head_kv, hd, ctx_stride;
    size_t window;         /* sliding window in positions, 0: none */
    float scale;           /* usually 1/sqrt(hd) */
    float *scratch;        /* cm_ctx_threads() * cm_attention_scratch(hd) floats, caller's */
} cm_attn_args;

/* Floats of scratch cm_attention needs per pool thread. */
size_t cm_attention_scratch(size_t hd);
/* Causal grouped-query attention, one pass over the keys per tile of queries with an online
 * softmax; query heads that share a KV head are done together so each cache row is read once
 * per tile. Split over the pool by (KV head, query tile). Allocates nothing. */
void cm_attention(cm_ctx *c, const cm_attn_args *a);

#endif /* LM_COMPUTE_BACKEND_H */
