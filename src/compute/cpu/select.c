/* compute/cpu/select.c: which kernel runs what, on this CPU. The one file that knows every
 * kernel set: the reference files (quants_ref.c, quants_mlx_ref.c, quants_r16_ref.c) and the SIMD
 * files (quants_avx2.c, quants_avx512.c, quants_neon.c, quants_mlx_*.c, quants_r16_*.c) never
 * call each other's choosers, so the dependencies run one way: select.c -> kernels -> references.
 * Owns: every cm_*_select() of quants.h, and the small adapters that give the reference kernels
 * the signatures of the SIMD ones.
 * Does not own: the CPU features themselves (lm_cpu_features, core) or narrowing them for tests
 * and benchmarks (cm_cpu_features, ops.c). */
#include "compute/cpu/quants.h"
#include "compute/cpu/quants_mlx.h"

#define REF_DOT(name, type) \
    static float dot_ref_##name(const void *row, const float *x, size_t n) { \
        return cm_dot_ref(type, row, x, n); \
    }
REF_DOT(f32, CM_F32)
REF_DOT(f16, CM_F16)
REF_DOT(bf16, CM_BF16)
REF_DOT(q4_0, CM_Q4_0)
REF_DOT(q4_1, CM_Q4_1)
REF_DOT(q5_0, CM_Q5_0)
REF_DOT(q5_1, CM_Q5_1)
REF_DOT(q8_0, CM_Q8_0)
REF_DOT(q8_1, CM_Q8_1)
REF_DOT(q2_k, CM_Q2_K)
REF_DOT(q3_k, CM_Q3_K)
REF_DOT(q4_k, CM_Q4_K)
REF_DOT(q5_k, CM_Q5_K)
REF_DOT(q6_k, CM_Q6_K)
REF_DOT(q8_k, CM_Q8_K)

#ifdef CM_HAVE_X86_KERNELS
static const uint32_t AVX2_SET = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C;
#endif

cm_dot_fn cm_dot_select(uint32_t type, uint32_t cpu_features) {
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & AVX2_SET) == AVX2_SET) {
        switch (type) {
        case CM_F32: return cm_dot_f32_avx2;
        case CM_F16: return cm_dot_f16_avx2;
        case CM_BF16: return cm_dot_bf16_avx2;
        case CM_Q8_0: return cm_dot_q8_0_avx2;
        case CM_Q4_0: return cm_dot_q4_0_avx2;
        case CM_Q4_K: return cm_dot_q4_k_avx2;
        case CM_Q5_K: return cm_dot_q5_k_avx2;
        case CM_Q6_K: return cm_dot_q6_k_avx2;
        default: break;
        }
    }
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if (cpu_features & LM_CPU_NEON) {
        switch (type) {
        case CM_F32: return cm_dot_f32_neon;
        case CM_F16: return cm_dot_f16_neon;
        case CM_BF16: return cm_dot_bf16_neon;
        default: break;
        }
    }
#endif
    (void)cpu_features;
    switch (type) {
    case CM_F32: return dot_ref_f32;
    case CM_F16: return dot_ref_f16;
    case CM_BF16: return dot_ref_bf16;
    case CM_Q4_0: return dot_ref_q4_0;
    case CM_Q4_1: return dot_ref_q4_1;
    case CM_Q5_0: return dot_ref_q5_0;
    case CM_Q5_1: return dot_ref_q5_1;
    case CM_Q8_0: return dot_ref_q8_0;
    case CM_Q8_1: return dot_ref_q8_1;
    case CM_Q2_K: return dot_ref_q2_k;
    case CM_Q3_K: return dot_ref_q3_k;
    case CM_Q4_K: return dot_ref_q4_k;
    case CM_Q5_K: return dot_ref_q5_k;
    case CM_Q6_K: return dot_ref_q6_k;
    case CM_Q8_K: return dot_ref_q8_k;
    default: return NULL;
    }
}

cm_dotq_fn cm_dotq_select(uint32_t type, uint32_t cpu_features, uint32_t *act_type) {
#ifdef CM_HAVE_X86_KERNELS
    const uint32_t avx512 = AVX2_SET | LM_CPU_AVX512F | LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    if ((cpu_features & avx512) == avx512) {
        switch (type) {
        case CM_Q8_0: *act_type = CM_Q8_0; return cm_dotq_q8_0_avx512;
        case CM_Q4_0: *act_type = CM_Q8_0X4; return cm_dotq_q4_0_avx512;
        case CM_Q5_0: *act_type = CM_Q8_0X4; return cm_dotq_q5_0_avx512;
        case CM_Q4_K: *act_type = CM_Q8_K; return cm_dotq_q4_k_avx512;
        case CM_Q6_K: *act_type = CM_Q8_K; return cm_dotq_q6_k_avx512;
        default: break; /* the AVX2 kernels below */
        }
    }
    if ((cpu_features & AVX2_SET) == AVX2_SET) {
        cm_dotq_fn fn = NULL;
        uint32_t at = CM_Q8_0;
        switch (type) {
        case CM_Q8_0: fn = cm_dotq_q8_0_avx2; break;
        case CM_Q4_0: fn = cm_dotq_q4_0_avx2; break;
        case CM_Q5_0: fn = cm_dotq_q5_0_avx2; break;
        case CM_Q2_K: fn = cm_dotq_q2_k_avx2; at = CM_Q8_K; break;
        case CM_Q3_K: fn = cm_dotq_q3_k_avx2; at = CM_Q8_K; break;
        case CM_Q4_K: fn = cm_dotq_q4_k_avx2; at = CM_Q8_K; break;
        case CM_Q5_K: fn = cm_dotq_q5_k_avx2; at = CM_Q8_K; break;
        case CM_Q6_K: fn = cm_dotq_q6_k_avx2; at = CM_Q8_K; break;
        default: break;
        }
        if (fn) *act_type = at;
        return fn;
    }
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if (cpu_features & LM_CPU_NEON) {
        cm_dotq_fn fn = NULL;
        uint32_t at = CM_Q8_0;
        bool dp = false;
#ifdef CM_HAVE_NEON_DOTPROD
        dp = (cpu_features & LM_CPU_DOTPROD) != 0;
#define NEON_DOTQ(name) (dp ? cm_dotq_##name##_neon_dp : cm_dotq_##name##_neon)
#else
#define NEON_DOTQ(name) cm_dotq_##name##_neon
#endif
        switch (type) {
        case CM_Q8_0: fn = NEON_DOTQ(q8_0); break;
        case CM_Q4_0: fn = NEON_DOTQ(q4_0); break;
        case CM_Q5_0: fn = NEON_DOTQ(q5_0); break;
        case CM_Q2_K: fn = NEON_DOTQ(q2_k); at = CM_Q8_K; break;
        case CM_Q3_K: fn = NEON_DOTQ(q3_k); at = CM_Q8_K; break;
        case CM_Q4_K: fn = NEON_DOTQ(q4_k); at = CM_Q8_K; break;
        case CM_Q5_K: fn = NEON_DOTQ(q5_k); at = CM_Q8_K; break;
        case CM_Q6_K: fn = NEON_DOTQ(q6_k); at = CM_Q8_K; break;
        default: break;
        }
#undef NEON_DOTQ
        (void)dp;
        if (fn) *act_type = at;
        return fn;
    }
#endif
    (void)type;
    (void)cpu_features;
    (void)act_type;
    return NULL;
}

static void quant_q8k_ref(const float *x, void *out, size_t n) { cm_quantize_ref(CM_Q8_K, x, out, n); }
static void prep_q8k_ref(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1) {
    cm_gemm_prep_q8k(x, ldx, a, g0, g1, quant_q8k_ref);
}
#ifdef CM_HAVE_X86_KERNELS
static void prep_q8k_avx2(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1) {
    cm_gemm_prep_q8k(x, ldx, a, g0, g1, cm_quantize_q8_k_avx2);
}
#endif
#ifdef CM_HAVE_NEON_KERNELS
static void prep_q8k_neon(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1) {
    cm_gemm_prep_q8k(x, ldx, a, g0, g1, cm_quantize_q8_k_neon);
}
#endif

cm_gemm_prep_fn cm_gemm_prep_q8k_select(uint32_t cpu_features) {
    cm_quantize_fn q = cm_quantize_select(CM_Q8_K, cpu_features);
#ifdef CM_HAVE_X86_KERNELS
    if (q == (cm_quantize_fn)cm_quantize_q8_k_avx2) return prep_q8k_avx2;
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if (q == cm_quantize_q8_k_neon) return prep_q8k_neon;
#endif
    (void)q;
    return prep_q8k_ref;
}

cm_gemm_fn cm_gemm_select(uint32_t type, uint32_t cpu_features, cm_gemm_prep_fn *prep) {
#ifdef CM_HAVE_X86_KERNELS
    const uint32_t avx512 = AVX2_SET | LM_CPU_AVX512F | LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    if ((cpu_features & avx512) == avx512) {
        cm_gemm_fn fn = NULL;
        switch (type) {
        case CM_Q4_0: fn = cm_gemm_q4_0_avx512; break;
        case CM_Q5_0: fn = cm_gemm_q5_0_avx512; break;
        case CM_Q8_0: fn = cm_gemm_q8_0_avx512; break;
        case CM_Q4_K: fn = cm_gemm_q4_k_avx512; break;
        case CM_Q5_K: fn = cm_gemm_q5_k_avx512; break;
        case CM_Q6_K: fn = cm_gemm_q6_k_avx512; break;
        default: break;
        }
        if (fn) *prep = cm_gemm_prep_avx512;
        return fn;
    }
    if ((cpu_features & AVX2_SET) == AVX2_SET) {
        cm_gemm_fn fn = NULL;
        switch (type) {
        case CM_Q4_0: fn = cm_gemm_q4_0_avx2; break;
        case CM_Q5_0: fn = cm_gemm_q5_0_avx2; break;
        case CM_Q8_0: fn = cm_gemm_q8_0_avx2; break;
        case CM_Q4_K: fn = cm_gemm_q4_k_avx2; break;
        case CM_Q5_K: fn = cm_gemm_q5_k_avx2; break;
        case CM_Q6_K: fn = cm_gemm_q6_k_avx2; break;
        default: break;
        }
        if (fn) *prep = cm_gemm_prep_avx2;
        return fn;
    }
#endif
#ifdef CM_HAVE_NEON_DOTPROD
    if ((cpu_features & (LM_CPU_NEON | LM_CPU_DOTPROD)) == (LM_CPU_NEON | LM_CPU_DOTPROD)) {
        cm_gemm_fn fn = NULL;
        switch (type) {
        case CM_Q4_0: fn = cm_gemm_q4_0_neon_dp; break;
        case CM_Q5_0: fn = cm_gemm_q5_0_neon_dp; break;
        case CM_Q8_0: fn = cm_gemm_q8_0_neon_dp; break;
        case CM_Q4_K: fn = cm_gemm_q4_k_neon_dp; break;
        case CM_Q5_K: fn = cm_gemm_q5_k_neon_dp; break;
        case CM_Q6_K: fn = cm_gemm_q6_k_neon_dp; break;
        default: break;
        }
        if (fn) *prep = cm_gemm_prep_neon;
        return fn;
    }
#endif
    (void)type;
    (void)cpu_features;
    (void)prep;
    return NULL;
}

cm_mlx_dot_fn cm_mlx_dot_select(const cm_matrix *m, uint32_t cpu_features) {
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & AVX2_SET) == AVX2_SET && m->bits >= 2 && m->bits <= 8 &&
        m->group_size % 32 == 0 && m->group_size > 0)
        return cm_mlx_dot_avx2;
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if ((cpu_features & LM_CPU_NEON) && (m->bits == 4 || m->bits == 8) && m->group_size > 0 &&
        m->group_size % 32 == 0)
        return cm_mlx_dot_neon;
#endif
    (void)cpu_features;
    (void)m;
    return cm_mlx_dot_row;
}

#define REF_DQ(name, type) \
    static void dq_ref_##name(const void *row, float *out, size_t n) { \
        cm_dequant_ref(type, row, out, n); \
    }
REF_DQ(f32, CM_F32)
REF_DQ(f16, CM_F16)
REF_DQ(bf16, CM_BF16)
REF_DQ(q4_0, CM_Q4_0)
REF_DQ(q4_1, CM_Q4_1)
REF_DQ(q5_0, CM_Q5_0)
REF_DQ(q5_1, CM_Q5_1)
REF_DQ(q8_0, CM_Q8_0)
REF_DQ(q8_1, CM_Q8_1)
REF_DQ(q2_k, CM_Q2_K)
REF_DQ(q3_k, CM_Q3_K)
REF_DQ(q4_k, CM_Q4_K)
REF_DQ(q5_k, CM_Q5_K)
REF_DQ(q6_k, CM_Q6_K)
REF_DQ(q8_k, CM_Q8_K)

cm_dequant_fn cm_dequant_select(uint32_t type, uint32_t cpu_features) {
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & AVX2_SET) == AVX2_SET) {
        switch (type) {
        case CM_F16: return cm_dequant_f16_avx2;
        case CM_BF16: return cm_dequant_bf16_avx2;
        case CM_Q8_0: return cm_dequant_q8_0_avx2;
        case CM_Q4_0: return cm_dequant_q4_0_avx2;
        case CM_Q4_K: return cm_dequant_q4_k_avx2;
        case CM_Q5_K: return cm_dequant_q5_k_avx2;
        case CM_Q6_K: return cm_dequant_q6_k_avx2;
        default: break;
        }
    }
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if (cpu_features & LM_CPU_NEON) {
        switch (type) {
        case CM_F16: return cm_dequant_f16_neon;
        case CM_BF16: return cm_dequant_bf16_neon;
        case CM_Q8_0: return cm_dequant_q8_0_neon;
        case CM_Q4_0: return cm_dequant_q4_0_neon;
        case CM_Q4_K: return cm_dequant_q4_k_neon;
        case CM_Q5_K: return cm_dequant_q5_k_neon;
        case CM_Q6_K: return cm_dequant_q6_k_neon;
        default: break;
        }
    }
#endif
    (void)cpu_features;
    switch (type) {
    case CM_F32: return dq_ref_f32;
    case CM_F16: return dq_ref_f16;
    case CM_BF16: return dq_ref_bf16;
    case CM_Q4_0: return dq_ref_q4_0;
    case CM_Q4_1: return dq_ref_q4_1;
    case CM_Q5_0: return dq_ref_q5_0;
    case CM_Q5_1: return dq_ref_q5_1;
    case CM_Q8_0: return dq_ref_q8_0;
    case CM_Q8_1: return dq_ref_q8_1;
    case CM_Q2_K: return dq_ref_q2_k;
    case CM_Q3_K: return dq_ref_q3_k;
    case CM_Q4_K: return dq_ref_q4_k;
    case CM_Q5_K: return dq_ref_q5_k;
    case CM_Q6_K: return dq_ref_q6_k;
    case CM_Q8_K: return dq_ref_q8_k;
    default: return NULL;
    }
}

#define REF_Q(name, type) \
    static void q_ref_##name(const float *x, void *out, size_t n) { \
        cm_quantize_ref(type, x, out, n); \
    }
REF_Q(f32, CM_F32)
REF_Q(f16, CM_F16)
REF_Q(bf16, CM_BF16)
REF_Q(q4_0, CM_Q4_0)
REF_Q(q4_1, CM_Q4_1)
REF_Q(q5_0, CM_Q5_0)
REF_Q(q5_1, CM_Q5_1)
REF_Q(q8_0, CM_Q8_0)
REF_Q(q8_0x4, CM_Q8_0X4)
REF_Q(q8_1, CM_Q8_1)
REF_Q(q4_k, CM_Q4_K)
REF_Q(q5_k, CM_Q5_K)
REF_Q(q6_k, CM_Q6_K)
REF_Q(q8_k, CM_Q8_K)

cm_quantize_fn cm_quantize_select(uint32_t type, uint32_t cpu_features) {
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & AVX2_SET) == AVX2_SET) {
        if (type == CM_Q8_0) return cm_quantize_q8_0_avx2;
        if (type == CM_Q8_0X4) return cm_quantize_q8_0x4_avx2;
        if (type == CM_Q8_K) return cm_quantize_q8_k_avx2;
    }
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if (cpu_features & LM_CPU_NEON) {
        if (type == CM_Q8_0) return cm_quantize_q8_0_neon;
        if (type == CM_Q8_K) return cm_quantize_q8_k_neon;
    }
#endif
    (void)cpu_features;
    switch (type) {
    case CM_F32: return q_ref_f32;
    case CM_F16: return q_ref_f16;
    case CM_BF16: return q_ref_bf16;
    case CM_Q4_0: return q_ref_q4_0;
    case CM_Q4_1: return q_ref_q4_1;
    case CM_Q5_0: return q_ref_q5_0;
    case CM_Q5_1: return q_ref_q5_1;
    case CM_Q8_0: return q_ref_q8_0;
    case CM_Q8_0X4: return q_ref_q8_0x4;
    case CM_Q8_1: return q_ref_q8_1;
    case CM_Q4_K: return q_ref_q4_k;
    case CM_Q5_K: return q_ref_q5_k;
    case CM_Q6_K: return q_ref_q6_k;
    case CM_Q8_K: return q_ref_q8_k;
    default: return NULL;
    }
}

/* ---- MLX ---- */

#ifdef CM_HAVE_X86_KERNELS
static const uint32_t MLX_AVX2_SET = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C;
static const uint32_t MLX_AVX512_SET = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C | LM_CPU_AVX512F |
                                       LM_CPU_AVX512BW | LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
#endif

cm_mlx_dotq_fn cm_mlx_dotq_select(const cm_matrix *m, uint32_t cpu_features) {
    if (!cm_mlx_dotq_shape_ok(m)) return NULL;
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & MLX_AVX512_SET) == MLX_AVX512_SET) return cm_mlx_dotq_avx512;
    if ((cpu_features & MLX_AVX2_SET) == MLX_AVX2_SET) return cm_mlx_dotq_avx2;
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if (cpu_features & LM_CPU_NEON) return cm_mlx_dotq_neon;
#endif
    (void)cpu_features;
    return NULL;
}

cm_mlx_gemmq_fn cm_mlx_gemmq_select(const cm_matrix *m, uint32_t cpu_features) {
    if (!cm_mlx_dotq_shape_ok(m)) return NULL;
#ifdef CM_HAVE_X86_KERNELS
    if ((cpu_features & MLX_AVX512_SET) == MLX_AVX512_SET) return cm_mlx_gemmq_avx512;
    if ((cpu_features & MLX_AVX2_SET) == MLX_AVX2_SET) return cm_mlx_gemmq_avx2;
#endif
#ifdef CM_HAVE_NEON_KERNELS
    if (cpu_features & LM_CPU_NEON) return cm_mlx_gemmq_neon;
#endif
    (void)cpu_features;
    return NULL;
}

cm_mlx_tiles_fn cm_mlx_tiles_select(cm_mlx_gemmq_fn fn) {
#ifdef CM_HAVE_X86_KERNELS
    if (fn == cm_mlx_gemmq_avx512) return cm_mlx_gemm_tiles_avx512;
#endif
    (void)fn;
    return NULL;
}

/* ---- R16 ---- */

cm_r16_fn cm_r16_select(uint32_t type, uint32_t cpu_features) {
    if (type != CM_Q4_0) return NULL;
#ifdef CM_HAVE_X86_KERNELS
    const uint32_t avx512 = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C | LM_CPU_AVX512F | LM_CPU_AVX512BW |
                            LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    if ((cpu_features & avx512) == avx512) return cm_r16_gemm_avx512;
    if ((cpu_features & AVX2_SET) == AVX2_SET) return cm_r16_gemm_avx2;
#endif
#ifdef CM_HAVE_NEON_DOTPROD
    if ((cpu_features & (LM_CPU_NEON | LM_CPU_DOTPROD)) == (LM_CPU_NEON | LM_CPU_DOTPROD)) return cm_r16_gemm_neon_dp;
#endif
    (void)cpu_features;
    return NULL;
}

cm_r16m_fn cm_r16m_select(const cm_matrix *w, uint32_t cpu_features) {
    if (!cm_r16m_bytes(w)) return NULL;
#ifdef CM_HAVE_X86_KERNELS
    const uint32_t avx512 = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C | LM_CPU_AVX512F | LM_CPU_AVX512BW |
                            LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    if ((cpu_features & avx512) == avx512) return cm_r16m_gemm_avx512;
    if ((cpu_features & AVX2_SET) == AVX2_SET) return cm_r16m_gemm_avx2;
#endif
#ifdef CM_HAVE_NEON_DOTPROD
    if ((cpu_features & (LM_CPU_NEON | LM_CPU_DOTPROD)) == (LM_CPU_NEON | LM_CPU_DOTPROD)) return cm_r16m_gemm_neon_dp;
#endif
    (void)cpu_features;
    return NULL;
}

cm_r16_quant_fn cm_r16_quantize_select(uint32_t cpu_features) {
#ifdef CM_HAVE_X86_KERNELS
    const uint32_t avx512 = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C | LM_CPU_AVX512F | LM_CPU_AVX512BW |
                            LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    if ((cpu_features & avx512) == avx512) return cm_r16_quantize_avx512;
    const uint32_t avx2 = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C;
    if ((cpu_features & avx2) == avx2) return cm_r16_quantize_avx2;
#elif defined(CM_HAVE_NEON_KERNELS)
    if (cpu_features & LM_CPU_NEON) return cm_r16_quantize_neon;
#endif
    (void)cpu_features;
    return cm_r16_quantize;
}

cm_r16m_quant_fn cm_r16m_quantize_select(uint32_t cpu_features) {
#ifdef CM_HAVE_X86_KERNELS
    const uint32_t avx512 = LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C | LM_CPU_AVX512F | LM_CPU_AVX512BW |
                            LM_CPU_AVX512VL | LM_CPU_AVX512VNNI;
    if ((cpu_features & avx512) == avx512) return cm_r16m_quantize_avx512;
#endif
    (void)cpu_features;
    return cm_r16m_quantize;
}
