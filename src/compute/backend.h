/* compute/backend.h: the internal header of src/compute: what the forward pass is written against.
 * Owns: tensor element types (GGML numbering, plus MLX affine groups), weight matrices as views,
 * the description of a network (cm_net) that a model hands to its backend, the batch descriptor
 * (tokens of several sequences in one pass), and the backend interface: a table of operations at
 * the granularity the forward pass fuses, plus weight upload, per-sequence KV caches, scratch and
 * synchronisation. The CPU backend (compute/cpu/) implements it; a device backend (CUDA) is
 * another table, never another forward pass.
 * Does not own: where weights come from (formats/), what they mean (model/) or which sequences
 * share a pass (session/engine.c). Nothing above src/compute includes an ISA or CUDA header. */
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
    const void *data;      /* row r starts at data + r * row_bytes (backend memory once uploaded) */
    size_t row_bytes;
    /* CM_MLX only: w = scale * q + bias per group of group_size along a row; q packed little-
     * endian from the low bits into uint32 words (row_bytes = cols * bits / 8). */
    uint32_t bits, group_size;
    uint32_t sb_type;      /* CM_F32, CM_F16 or CM_BF16: type of scales and biases */
    const void *scales;    /* (rows, cols / group_size) */
    const void *biases;
    /* Set by the backend when the weights are prepared (cm_backend_ops.prepare): how it runs
     * this matrix (for the CPU, the kernels chosen once for its type). NULL before. */
    const void *plan;
} cm_matrix;

/* ---- reference quant kernels (compute/cpu/quants_ref.c): format facts, any backend's oracle ---- */

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

/* ---- the network a model hands to its backend ---- */

/* One transformer layer. Norm weights and biases are float arrays (host memory until prepared). */
typedef struct cm_layer {
    cm_matrix wq, wk, wv, wo, w_gate, w_up, w_down;
    const float *attn_norm, *ffn_norm, *q_norm, *k_norm; /* q/k norms: NULL unless qwen3 */
    const float *bq, *bk, *bv;                           /* NULL without biases */
} cm_layer;

/* Everything the forward pass needs, in the shape every architecture of model/arch.c reduces to:
 * pre-norm layers of grouped-query attention with RoPE and a SwiGLU MLP. */
typedef struct cm_net {
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_rot;
    float norm_eps;
    bool rope_interleaved;     /* rotate pairs (GGUF llama) instead of halves (HF, NEOX) */
    float rope_attn_factor;    /* longrope magnitude scaling, 1 otherwise */
    int32_t sliding_window;    /* 0: none */
    const float *inv_freq;     /* n_rot/2, scaling applied */
    const float *inv_freq_long;/* longrope long factors (sequences whose cache is longer than
                                  rope_orig_ctx use them), or NULL */
    int32_t rope_orig_ctx;
    cm_layer *layers;          /* n_layer */
    cm_matrix tok_embd;        /* (n_vocab, n_embd) */
    cm_matrix output;          /* (n_vocab, n_embd); the embedding when tied */
    const float *output_norm;
    void *backend_data;        /* what prepare made (plans, device copies); release frees it */
    /* Called by prepare for each matrix whose bytes it copied into a layout of its own, as soon
     * as it has: the source (a view into the model's mapped file) may leave resident memory, so a
     * repacked model never holds both copies at once. May be NULL. */
    void (*drop)(void *user, const void *data, size_t bytes);
    void *drop_user;
} cm_net;

/* ---- batches ----
 * A pass evaluates the tokens of several sequences at once. Each sequence's tokens are contiguous
 * in the batch and at consecutive positions; each sequence has its own KV cache. The tokens whose
 * logits are wanted are a tail of each sequence (none, the last, or all of its tokens). */

typedef struct cm_kv cm_kv; /* one sequence's KV cache, in the backend's memory */

typedef struct cm_seq {
    cm_kv *kv;
    size_t t0, n;        /* its tokens: batch rows [t0, t0 + n) */
    size_t pos0;         /* position of row t0: the tokens already in its cache */
    size_t n_logits;     /* its last n_logits tokens want logits (0 <= n_logits <= n) */
    float *logits;       /* host memory for (n_logits, n_vocab) floats when n_logits > 0 */
} cm_seq;

typedef struct cm_batch {
    const lm_token *ids; /* n_tok ids, each in [0, n_vocab) (the caller checks) */
    size_t n_tok;
    const cm_seq *seqs;  /* n_seq, in batch order */
    size_t n_seq;
    size_t n_logits;     /* sum of the sequences' n_logits */
} cm_batch;

/* ---- backends ---- */

typedef struct cm_backend cm_backend; /* a device with the kernels chosen for it; immutable */
typedef struct cm_ctx cm_ctx;         /* a compute context: scratch, thread pool or stream; one
                                         thread drives it at a time */

/* Sizes a compute context is made for; every buffer is allocated once, at cm_ctx creation, so a
 * device backend can capture a step as a graph. */
typedef struct cm_ctx_params {
    int32_t n_threads;        /* CPU: threads of the context's pool, the driving thread included */
    size_t max_tokens;        /* tokens per pass */
    size_t max_seqs;          /* sequences per pass */
    size_t max_logits;        /* rows of logits per pass */
    size_t max_ctx;           /* longest cache a sequence may have (attention scratch) */
} cm_ctx_params;

/* Activation buffers of a context, (rows, width) floats, named rather than pointed at so the
 * forward pass never touches backend memory. */
enum cm_buf { CM_BUF_X /* residual stream (n, n_embd) */, CM_BUF_XB /* its norm (n, n_embd) */,
              CM_BUF_Q /* queries (n, n_head * head_dim) */, CM_BUF_ATT /* attention out */,
              CM_BUF_H /* SwiGLU of gate and up (n, n_ff) */ };

/* The operations. Each runs over the rows [0, n) of the named buffers; ops on a context run in
 * the order they are called (a device backend queues them; cm_backend_ops.end waits). */
typedef struct cm_backend_ops {
    const char *name;                          /* "cpu", "cuda" */

    /* Once per model, at load: chooses how each matrix runs (cm_matrix.plan) and moves the
     * weights into the backend's memory and layout (the CPU keeps the mapping). progress may be
     * NULL; non-zero from it cancels (LM_ERR_CANCELLED). release undoes prepare. */
    lm_status (*prepare)(const cm_backend *be, cm_net *net, lm_progress_fn progress, void *user,
                         lm_error *err);
    void (*release)(const cm_backend *be, cm_net *net);

    /* Compute contexts; NOMEM names what did not fit. */
    lm_status (*ctx_new)(const cm_backend *be, const cm_net *net, const cm_ctx_params *p,
                         cm_ctx **out, lm_error *err);
    void (*ctx_free)(cm_ctx *c);

    /* Per-sequence KV caches for n_ctx positions (every layer, K and V) of CM_F16 or CM_F32.
     * truncate tells the backend that only positions [0, n) stay valid (the CPU needs nothing). */
    lm_status (*kv_new)(cm_ctx *c, size_t n_ctx, uint32_t type, cm_kv **out, lm_error *err);
    void (*kv_truncate)(cm_kv *kv, size_t n);
    void (*kv_free)(cm_kv *kv);

    /* One pass: begin takes the batch (ids, positions and sequences to the device) and embeds
     * it: X = embedding rows, XB = rmsnorm(X) * layer 0's attention norm. */
    void (*begin)(cm_ctx *c, const cm_batch *b);
    /* XB (all rows) -> Q, and K, V into each sequence's cache of layer l at its positions:
     * the three products, biases, q/k norms and RoPE (the sequence's variant). */
    void (*qkv)(cm_ctx *c, int l, const cm_batch *b);
    /* Q -> ATT: causal attention of each sequence's queries over its own cache (with the
     * sliding window). logits_only: only the rows that want logits, written compacted at rows
     * [0, b->n_logits) of ATT, and the same rows of X moved there too (the last layer). */
    void (*attention)(cm_ctx *c, int l, const cm_batch *b, bool logits_only);
    /* X += src · w^T over rows [0, n); then XB = rmsnorm(X) * norm when norm is not NULL. */
    void (*project_add)(cm_ctx *c, const cm_matrix *w, enum cm_buf src, size_t n, const float *norm);
    /* XB -> H = silu(XB · gate^T) * (XB · up^T) over rows [0, n). */
    void (*gate_up)(cm_ctx *c, const cm_layer *L, size_t n);
    /* XB rows [0, b->n_logits) · output^T -> each sequence's logits; then waits for the pass. */
    void (*end)(cm_ctx *c, const cm_batch *b);

    /* What the context runs on, for lm_model_info and logs ("avx512", "cuda:0 H100"). */
    const char *(*describe)(const cm_backend *be);
    void (*free)(cm_backend *be);
} cm_backend_ops;

struct cm_backend {
    const cm_backend_ops *ops;
    void *impl;               /* the backend's own state (kernel tables, device handle) */
};

/* The CPU backend with the kernels for this CPU (force_ref: the plain C reference everywhere,
 * for bisecting). *out is freed with cm_backend_free. */
lm_status cm_backend_cpu_new(bool force_ref, cm_backend **out, lm_error *err);
/* A device backend by name ("cuda", "cuda:1"). LM_ERR_UNSUPPORTED naming the device when this
 * build has none, LM_ERR_IO when no such device is present. */
lm_status cm_backend_device_new(const char *device, cm_backend **out, lm_error *err);
void cm_backend_free(cm_backend *be);

#endif /* LM_COMPUTE_BACKEND_H */
