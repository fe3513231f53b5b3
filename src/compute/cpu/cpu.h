/* compute/cpu/cpu.h: the CPU backend's own header, for compute/cpu/ and the kernel tests only.
 * Owns: the CPU compute context (the kernel choice, the thread pool, scratch), matrix products
 * split over the pool, the element-wise ops of a layer and attention over a KV cache, as the
 * CPU backend's operations (cpu_backend.c) use them. Nothing outside src/compute includes it
 * except tests and bench programs of the kernels. */
#ifndef LM_COMPUTE_CPU_H
#define LM_COMPUTE_CPU_H

#include "compute/backend.h"

/* ---- the compute context: kernels chosen once, the pool, scratch ---- */

/* A context for running kernels only (tests, bench/kernels.c): pool is borrowed (NULL: one
 * thread). NULL on NOMEM. The CPU backend makes its contexts through cm_backend_ops.ctx_new. */
cm_ctx *cm_ctx_new(lm_pool *pool, bool force_ref);
void cm_ctx_free(cm_ctx *c);
const char *cm_ctx_kernels(const cm_ctx *c); /* "ref", "avx2", "avx512", "neon" */
int cm_ctx_threads(const cm_ctx *c);
/* Sizes the matrix products' scratch (activation quantization, prefill tiles, R16 activations,
 * dequantized rows) for up to max_tokens rows of at most max_cols columns; false on NOMEM.
 * Products within those sizes never allocate, except the MLX prefill kernels' activations (grown
 * on first use; a failure takes the float path). */
bool cm_ctx_reserve(cm_ctx *c, size_t max_tokens, size_t max_cols);

/* The CPU features the kernels of this process may use: lm_cpu_features() narrowed by the
 * environment variable LOCALLM_CPU ("ref", "avx2", "neon": that kernel set on a CPU that has
 * more, for tests and benchmarks), or 0 (the reference kernels) with force_ref; and the name of
 * the kernel set they select. */
uint32_t cm_cpu_features(bool force_ref);
const char *cm_cpu_kernels_name(uint32_t features);
/* Chooses the kernels of w for features once (cm_matrix.plan): writes a plan into *plan, which
 * must outlive the uses of w. Any matrix works without one (chosen per product instead). */
typedef struct cm_plan cm_plan;
size_t cm_plan_size(void);
void cm_plan_init(cm_plan *plan, const cm_matrix *w, uint32_t features);

/* Y (n, rows) = X (n, cols) · W^T, row-major and contiguous. Split over the pool by rows. */
void cm_matmul(cm_ctx *c, const cm_matrix *w, const float *x, size_t n, float *y);
/* y[i] = the product of x with w[i] for i < nw, every w[i] of the same cols: the activations are
 * quantized once for all of them (Q, K, V of one normed x; gate and up) and the rows of all the
 * matrices are split over the pool in one run. The same values as nw cm_matmul calls. */
void cm_matmul_multi(cm_ctx *c, const cm_matrix *const *w, size_t nw, const float *x, size_t n,
                     float *const *y);

/* Any matrix row to floats (dispatches on type). */
void cm_dequant_row(const cm_matrix *m, size_t row, float *out);

/* ---- element-wise ops (attention.c; single thread unless they take a cm_ctx) ---- */

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
/* gate[i] = silu(gate[i]) * up[i], in place; split over the pool when n is large. */
void cm_swiglu(cm_ctx *c, float *gate, const float *up, size_t n);
void cm_add(float *y, const float *x, size_t n); /* y += x */

/* ---- KV cache rows and attention (attention.c) ---- */

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
 * per tile. Split over the pool by (KV head, query tile). Allocates nothing. The result of a
 * query does not depend on which other queries share the call (batched and one-by-one passes
 * give the same numbers). */
void cm_attention(cm_ctx *c, const cm_attn_args *a);
/* The same for several sequences in one pool run: a[0..n) each with its own cache and queries
 * (scratch taken from a[0]). */
void cm_attention_multi(cm_ctx *c, const cm_attn_args *a, size_t n);

#endif /* LM_COMPUTE_CPU_H */
