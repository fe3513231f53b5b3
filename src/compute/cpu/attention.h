/* compute/cpu/attention.h: the inner loops of attention and of the element-wise ops, for
 * compute/cpu/ only. attention.c holds the portable versions (the oracle) and the table that
 * picks between them; attention_avx2.c (built with -mavx2 -mfma -mf16c) and attention_avx512.c
 * the x86 ones.
 * Every kernel takes any n (no multiple-of-8 rule); rows are contiguous floats. */
#ifndef LM_COMPUTE_CPU_ATTENTION_H
#define LM_COMPUTE_CPU_ATTENTION_H

#include "compute/cpu/cpu.h"

typedef struct cm_attn_kernels {
    const char *name;
    /* s[j] = scale * (q . k[j]) for j < n_keys; k is (n_keys, hd) floats. */
    void (*scores)(float *s, const float *q, const float *k, size_t n_keys, size_t hd, float scale);
    /* s[j] = exp(s[j] - m) for j < n; returns the sum of the new s. */
    float (*exp_sum)(float *s, size_t n, float m);
    /* acc[d] += sum_j p[j] * v[j][d]; v is (n_keys, hd) floats. */
    void (*accum)(float *acc, const float *p, const float *v, size_t n_keys, size_t hd);
    /* x[i] *= f */
    void (*scale)(float *x, size_t n, float f);
    /* half floats <-> floats, round to nearest even (the F16C rule) */
    void (*f16_to_f32)(float *dst, const uint16_t *src, size_t n);
    void (*f32_to_f16)(uint16_t *dst, const float *src, size_t n);
    /* gate[i] = silu(gate[i]) * up[i] */
    void (*swiglu)(float *gate, const float *up, size_t n);
} cm_attn_kernels;

/* The kernels for cpu_features (0: the portable ones). Never NULL, no NULL slot. */
const cm_attn_kernels *cm_attn_kernels_get(uint32_t cpu_features);

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
/* attention_avx2.c: need LM_CPU_AVX2 | LM_CPU_FMA | LM_CPU_F16C. */
#define CM_HAVE_ATTN_AVX2 1
extern const cm_attn_kernels cm_attn_kernels_avx2;
/* attention_avx512.c: the AVX2 set plus LM_CPU_AVX512F | BW | VL | DQ. */
extern const cm_attn_kernels cm_attn_kernels_avx512;
#endif

#endif /* LM_COMPUTE_CPU_ATTENTION_H */
