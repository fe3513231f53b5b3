/* compute/cpu/ctx.h: the CPU compute context, shared by ops.c (matrix products), attention.c and
 * cpu_backend.c (the backend's operations). Private to compute/cpu/.
 * Every buffer here is sized once (cm_ctx_reserve, or the backend's ctx_new), so a pass never
 * allocates. */
#ifndef LM_COMPUTE_CPU_CTX_H
#define LM_COMPUTE_CPU_CTX_H

#include "compute/cpu/attention.h"
#include "compute/cpu/quants.h"

/* The kernels of one matrix, chosen once (cm_plan_init). NULL members: no such kernel. */
struct cm_plan {
    cm_dot_fn dot;            /* one row with float activations (every n for F32/F16/BF16) */
    cm_dotq_fn dotq;          /* decode: one row with activations quantized to act */
    uint32_t act;
    cm_quantize_fn quant;     /* the quantizer of act */
    cm_gemm_fn gemm;          /* prefill tiles, with their activation quantizer */
    cm_gemm_prep_fn prep;
    cm_dequant_fn dequant;    /* a row to floats, for the float path of several tokens */
    cm_dot_fn fdot;           /* the F32 dot that follows dequant */
    cm_mlx_dotq_fn mlx_dotq;  /* MLX decode */
    cm_mlx_dot_fn mlx_dot;
    cm_mlx_gemmq_fn mlx_gemmq; /* MLX, several tokens */
    cm_r16_fn r16;            /* the kernel of the R16 layout, for every number of tokens */
    cm_r16m_fn r16m;          /* MLX 4-bit: the kernel of the R16M layout */
    bool packed;              /* the matrix's data is in the R16 (R16M for MLX) layout, packed at load */
};

struct cm_ctx {
    lm_pool *pool;             /* borrowed, or owned when own_pool */
    bool own_pool;
    int nth;
    uint32_t features;         /* 0 with force_ref */
    const char *kernels;
    const cm_attn_kernels *attn;
    /* matrix products (ops.c) */
    float *scratch;            /* per-thread row buffers: nth * scratch_per floats */
    size_t scratch_per;
    uint8_t *xq;               /* the activation quantized for integer dot kernels */
    size_t xq_cap;
    uint8_t *act;              /* prefill: all tokens' activations (cm_gemm_act), unaligned base */
    size_t act_cap;
    uint8_t *tiles;            /* prefill: per-thread unpacked weight tiles, tiles_per bytes each */
    size_t tiles_per;
    uint8_t *r16act;           /* R16 activations of every token (cm_r16_act_bytes each), unaligned */
    size_t r16act_cap;
    /* the forward pass (cpu_backend.c); NULL for a kernels-only context */
    const cm_net *net;
    size_t max_tokens, max_seqs, max_logits, max_ctx;
    float *x, *xb, *q, *k, *v, *att, *gate, *up, *o, *logits;
    float *rope_cs;            /* (max_tokens, n_rot): cos/sin of each row's position */
    const float **inv_freq;    /* per row: the RoPE table of its sequence */
    size_t *pos;               /* per row: its position */
    size_t *seq_of;            /* per row: its sequence in the current batch */
    float *attn_scratch;       /* nth * cm_attention_scratch(head_dim) */
    cm_attn_args *attn_args;   /* max_seqs */
    unsigned fp_saved;         /* the caller's float state, set aside from begin to end */
};

#endif /* LM_COMPUTE_CPU_CTX_H */
