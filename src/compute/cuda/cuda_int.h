/* compute/cuda/cuda_int.h: what the CUDA backend's translation units share (C++ only, private to
 * compute/cuda/).
 * Owns: the device weight formats (gfmt) and the view of an uploaded matrix the kernels read
 * (gw), the per-pass tables the kernels read (cu_seq, cu_item), and the launchers of every
 * kernel. cuda_fmt.cuh says what each format's bytes mean; cuda_backend.cu makes them.
 * Does not own: the backend's operations (cuda_backend.cu) or the kernels' code (cuda_mm.cu,
 * cuda_ops.cu). */
#ifndef LM_COMPUTE_CUDA_INT_H
#define LM_COMPUTE_CUDA_INT_H

#include <cuda_runtime.h>
#include <stdint.h>
#include <stddef.h>

/* Device formats of weights. Each is made at upload from a file type (cuda_backend.cu, repack_row)
 * so that every field the kernels read is aligned; the values are the file's, bit for bit. */
enum gfmt {
    G_F32, G_F16, G_BF16,
    G_Q4_0, G_Q4_1, G_Q5_0, G_Q5_1, G_Q8_0,
    G_Q2_K, G_Q3_K, G_Q4_K, G_Q5_K, G_Q6_K, G_Q8_K,
    G_MLX2, G_MLX3, G_MLX4, G_MLX5, G_MLX6, G_MLX7, G_MLX8,
    G_COUNT
};

/* An uploaded matrix (rows, cols): row r's main bytes at q + r * q_row, its side bytes (scales)
 * at s + r * s_row; MLX biases at b + r * s_row. Passed to kernels by value. */
typedef struct gw {
    const uint8_t *q, *s, *b;
    int fmt;
    int rows, cols;
    int q_row, s_row;
    int sb_type;   /* MLX scales and biases: 0 f32, 1 f16, 2 bf16 */
    int gs;        /* MLX group size (32, 64 or 128) */
} gw;

/* One sequence of a pass, as the kernels see it. */
typedef struct cu_seq {
    void *k, *v;          /* its cache, every layer: (n_layer, n_head_kv, n_ctx, head_dim) */
    int n_ctx;
    int f16;              /* cache elements are halves (else floats) */
    int use_long;         /* RoPE with the long factors */
    int n_splits;         /* decode attention: key ranges of split_len, combined after */
    int split_len;
    int part;             /* its first row of split partials (n_head rows) */
    int o_row, o_row_l;   /* attention output row of its single query: all rows / logits rows */
    int t_last;           /* batch row of its last token */
} cu_seq;

/* One block of attention: queries of tokens [0, nt) from batch row q_row (positions pos0..) and
 * heads h0..h0+nh of KV head kvh of sequence seq, keys of one split. nt == 0: nothing. */
typedef struct cu_item {
    int seq, kvh, h0, nh;
    int q_row, o_row, pos0, nt;
    int split;
} cu_item;

/* Sizes every kernel of a layer needs (constant per model). */
typedef struct cu_dims {
    int n_embd, n_head, n_head_kv, head_dim, n_ff, n_rot, n_layer, n_vocab;
    int window;           /* sliding window, 0: none */
    int interleaved;      /* RoPE on pairs */
    float eps, attn_factor;
} cu_dims;

/* The device format of a host matrix and the bytes per row of its arrays (cuda_backend.cu);
 * finfo_of is false when there is no such format. repack_row writes row r of m in it (q_row
 * bytes to q, s_row to s and, for MLX, to b). */
struct cm_matrix;
typedef struct finfo {
    int g;
    size_t q_row, s_row;
} finfo;
bool finfo_of(const struct cm_matrix *m, finfo *f);
void repack_row(const struct cm_matrix *m, size_t r, const finfo *f, uint8_t *q, uint8_t *s, uint8_t *b);

/* Epilogues of the matrix products. */
enum { MM_STORE, MM_ADD, MM_SWIGLU };

#define CU_MAX_SPLITS 32
#define CU_ATT_ROWS 16     /* query rows (token, head) per attention block */

/* ---- launchers (cuda_mm.cu) ---- */

/* y (n, ldy) from x (n, ldx) and w: rows [0, w.rows) of each token, epilogue mode (MM_SWIGLU:
 * w's rows are 16-row groups of 8 gate rows then 8 up rows and y gets silu(gate) * up at row/2
 * indices). norm != NULL: x is the residual stream and the product uses rmsnorm(x) * norm,
 * computed per block (decode). The float path: exact FP32, every token alone. */
cudaError_t cu_mmv(const gw *w, const float *x, int ldx, const float *norm, float eps, int n, float *y,
                   int ldy, int mode, int n_sm, cudaStream_t st);
/* The same on tensor cores (FP16 operands, FP32 sums) for many tokens; x is plain (no norm). */
cudaError_t cu_mmq(const gw *w, const float *x, int ldx, int n, float *y, int ldy, int mode, cudaStream_t st);
/* Whether a matrix of format fmt has a tensor-core path. */
int cu_has_mmq(int fmt);
/* Loads the product kernels and raises their dynamic shared memory limits (once per device). */
cudaError_t cu_mm_init(size_t smem_optin);

/* ---- launchers (cuda_ops.cu) ---- */

/* X[t] = row ids[t] of emb; XB[t] = rmsnorm(X[t]) * norm; cs[t] = RoPE (cos, sin) of pos[t]. */
cudaError_t cu_embed(const gw *emb, const int *ids, const int *pos, const int *seq_of, const cu_seq *seqs,
                     const float *inv, const float *inv_long, const float *norm, cu_dims d, int n, float *x,
                     float *xb, float *cs, cudaStream_t st);
/* XB[t] = rmsnorm(X[t]) * norm for t < n. */
cudaError_t cu_rmsnorm(const float *x, const float *norm, float *xb, int n, int width, float eps, cudaStream_t st);
/* From qkv (n, Q + 2 KV): biases, q/k norms, RoPE; Q to q (n, Q); K, V into each token's cache
 * at layer l. */
cudaError_t cu_qkv_post(const float *qkv, float *q, const float *cs, const int *pos, const int *seq_of,
                        const cu_seq *seqs, const float *bq, const float *bk, const float *bv, const float *qn,
                        const float *kn, cu_dims d, int l, int n, cudaStream_t st);
/* Attention of the items (n_items: a device count, at most grid blocks), then the combine of
 * split rows of the n_seq sequences (logits_only picks o_row_l). */
cudaError_t cu_attention(const cu_item *items, const int *n_items, int grid, const cu_seq *seqs, int n_seq,
                         const float *q, float *out, float *part, cu_dims d, int l, int logits_only,
                         cudaStream_t st);
/* dst[i] = src[map[i]] rows of width floats, i < n. */
cudaError_t cu_gather(float *dst, const float *src, const int *map, int n, int width, cudaStream_t st);
cudaError_t cu_copy_rows(float *dst, const float *src, int n, int width, cudaStream_t st);
/* h = silu(g) * u over n elements. */
cudaError_t cu_swiglu(float *h, const float *g, const float *u, size_t n, cudaStream_t st);
/* Loads the other kernels and sets attention's dynamic shared memory limit (once per model). */
cudaError_t cu_ops_init(int head_dim);

#endif /* LM_COMPUTE_CUDA_INT_H */
