/* compute/cpu/quants_mlx_x86.h: the small AVX2 helpers both x86 MLX kernel files use (loading
 * scales and biases of any storage type, partial loads, horizontal sum). Include only from files
 * compiled with -mavx2 -mfma -mf16c (quants_mlx_avx2.c, quants_mlx_avx512.c), after <immintrin.h>. */
#ifndef LM_COMPUTE_CPU_QUANTS_MLX_X86_H
#define LM_COMPUTE_CPU_QUANTS_MLX_X86_H

#include <immintrin.h>
#include <string.h>

#include "compute/cpu/quants.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* 8 scales or biases from element i on (all 8 present). */
static ALWAYS_INLINE __m256 load8(uint32_t sb, const void *base, size_t i) {
    const uint8_t *p = (const uint8_t *)base;
    if (sb == CM_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i))), 16));
    if (sb == CM_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i)));
    return _mm256_loadu_ps((const float *)(const void *)(p + 4 * i));
}

static ALWAYS_INLINE float load1(uint32_t sb, const void *base, size_t i) {
    const uint8_t *p = (const uint8_t *)base;
    if (sb == CM_BF16) return lm_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
    if (sb == CM_F16) return _cvtsh_ss((unsigned short)(p[2 * i] | (p[2 * i + 1] << 8)));
    float f;
    memcpy(&f, p + 4 * i, sizeof f);
    return f;
}

/* Up to 8 values from element i on, zero past cnt. */
static ALWAYS_INLINE __m256 load_n(uint32_t sb, const void *base, size_t i, size_t cnt) {
    if (cnt == 8) return load8(sb, base, i);
    float t[8] = {0};
    for (size_t k = 0; k < cnt; k++) t[k] = load1(sb, base, i + k);
    return _mm256_loadu_ps(t);
}

static ALWAYS_INLINE __m256 loadf_n(const float *p, size_t cnt) {
    if (cnt == 8) return _mm256_loadu_ps(p);
    float t[8] = {0};
    for (size_t k = 0; k < cnt; k++) t[k] = p[k];
    return _mm256_loadu_ps(t);
}

static ALWAYS_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#endif /* LM_COMPUTE_CPU_QUANTS_MLX_X86_H */
