/* compute/cpu/attention.h: the inner loops of attention and of the element-wise ops, for
 * compute/cpu/ only. attention.c holds the portable versions (the oracle) and the table that
 * picks between them; attention_avx2.c (built with -mavx2 -mfma -mf16c) and attention_avx512.c
 * the x86 ones, attention_neon.c the AArch64 one.
 * Every kernel takes any n (no multiple-of-8 rule); rows are contiguous floats. */
#ifndef LM_COMPUTE_CPU_ATTENTION_H
#define LM_COMPUTE_CPU_ATTENTION_H

#include "compute/cpu/cpu.h"

#include <math.h>

/* Keys per block: a tile's keys are taken CM_ATTN_KB at a time, their K transposed to floats
 * (hd rows of CM_ATTN_KB, key j in column j) so that scores come out with keys in the lanes, and
 * their V rows made float. At most CM_ATTN_ROWS query rows share one pass over a block. */
#define CM_ATTN_KB 32
#define CM_ATTN_ROWS 64

/* One query row of a tile: its online-softmax state, and the keys of the current block it sees. */
typedef struct cm_attn_row {
    const float *q;     /* hd floats */
    float *acc;         /* hd floats: sum_j exp(s_j - m) v_j over the keys seen so far */
    float m, l;         /* running max of the scores (-INFINITY before any key) and sum of exp(s_j - m) */
    uint32_t lo, hi;    /* keys [lo, hi) of the block, lo < hi (a row that sees none is not passed) */
} cm_attn_row;

/* The online softmax's step when a block's scores reach m: a row whose running max grows gets
 * m, its l scaled by exp(m_old - m); returns that factor, by which the caller scales acc (1: acc
 * is left as it is). One rule for every kernel set, so they cannot drift apart. */
static inline float cm_attn_raise_max(cm_attn_row *w, float m) {
    if (!(m > w->m)) return 1.0f;
    float f = w->l > 0 ? expf(w->m - m) : 1.0f;
    w->l *= f;
    w->m = m;
    return f;
}

typedef struct cm_attn_kernels {
    const char *name;
    /* kt[d * CM_ATTN_KB + j] = k[j * hd + d] as floats for j < n_keys (k rows of hd halves when
     * f16, of hd floats otherwise), 0 for n_keys <= j < CM_ATTN_KB; n_keys <= CM_ATTN_KB. */
    void (*load_kt)(float *kt, const void *k, bool f16, size_t n_keys, size_t hd);
    /* One block for the rows rows[0, n_rows), n_rows <= CM_ATTN_ROWS, each seeing at least one
     * of its keys: s_j = scale * (q . k_j) for the row's keys, m = max(m, s_j) with
     * cm_attn_raise_max, then l += sum exp(s_j - m) and acc += sum exp(s_j - m) v_j. kt as load_kt
     * leaves it, v (n_keys, hd) floats. Each row's numbers depend only on its own q, range and
     * state, never on the other rows (so batching does not change results). */
    void (*block)(cm_attn_row *const *rows, size_t n_rows, const float *kt, const float *v, size_t hd,
                  float scale);
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

#if defined(__aarch64__) && !defined(__AARCH64EB__)
/* attention_neon.c: need LM_CPU_NEON (every AArch64 CPU). */
#define CM_HAVE_ATTN_NEON 1
extern const cm_attn_kernels cm_attn_kernels_neon;
#endif

#endif /* LM_COMPUTE_CPU_ATTENTION_H */
