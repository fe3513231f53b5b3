/* compute/cpu/quants_avx2.c: AVX2+FMA+F16C row-dot kernels (placeholder: the reference). */
#include "compute/cpu/quants.h"

float cm_dot_f32_avx2(const void *row, const float *x, size_t n) { return cm_dot_ref(CM_F32, row, x, n); }
float cm_dot_f16_avx2(const void *row, const float *x, size_t n) { return cm_dot_ref(CM_F16, row, x, n); }
float cm_dot_bf16_avx2(const void *row, const float *x, size_t n) { return cm_dot_ref(CM_BF16, row, x, n); }
float cm_dot_q8_0_avx2(const void *row, const float *x, size_t n) { return cm_dot_ref(CM_Q8_0, row, x, n); }
float cm_dot_q4_0_avx2(const void *row, const float *x, size_t n) { return cm_dot_ref(CM_Q4_0, row, x, n); }
float cm_dot_q4_k_avx2(const void *row, const float *x, size_t n) { return cm_dot_ref(CM_Q4_K, row, x, n); }
float cm_dot_q6_k_avx2(const void *row, const float *x, size_t n) { return cm_dot_ref(CM_Q6_K, row, x, n); }
float cm_mlx_dot_avx2(const cm_matrix *m, size_t row, const float *x) { return cm_mlx_dot_row(m, row, x); }
