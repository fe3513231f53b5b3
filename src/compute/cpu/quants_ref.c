/* compute/cpu/quants_ref.c: the plain-C quant kernels of the element types.
 * Owns: dequantizing and dotting one row of any GGML type or of an MLX affine-quantized matrix,
 * simple quantizers (used by tests and for activations), and the prefill activation layout's
 * sizes. These loops are the oracle the SIMD kernels are tested against.
 * Does not own: the type table (compute/types.c), matrix products over threads (ops.c), SIMD
 * kernels (quants_avx2.c, ...) or choosing among them (select.c).
 *
 * Block layouts are the GGML/GGUF format (ggml-common.h in https://github.com/ggml-org/ggml):
 * all multi-byte fields little-endian, f16 scales, and "super-blocks" of 256 for the K types.
 * Bytes are read one at a time so the code does not depend on the host's byte order. */
#include "compute/backend.h"
#include "compute/cpu/quants.h"

#include <math.h>

#define QK 32   /* elements per block of the legacy types */
#define QK_K 256 /* elements per super-block of the K types */

/* ---- byte helpers ---- */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
/* IEEE half to float, inline (core's lm_f16_to_f32 is a call, too slow per element of an F16
 * row); exact for every input: subnormals are m * 2^-24, exponent 31 is inf/NaN. */
static inline float h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF, u;
    if (e == 0x1F) {
        u = sign | 0x7F800000u | (m << 13);
    } else if (e) {
        u = sign | ((e + 112) << 23) | (m << 13);
    } else {
        union { float f; uint32_t u; } v = {(float)m * 0x1p-24f};
        u = sign | v.u;
    }
    union { uint32_t u; float f; } v = {u};
    return v.f;
}
static inline float rdh(const uint8_t *p) { return h2f(rd16(p)); }
static inline void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline float rdf32(const uint8_t *p) {
    union { uint32_t u; float f; } v = {rd32(p)};
    return v.f;
}

/* ---- one block to floats ---- */

/* Q4_0 {f16 d; u8 qs[16]}: low nibbles are elements 0..15, high nibbles 16..31; (q - 8) * d. */
static void dq_q4_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0xF) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1 {f16 d, m; u8 qs[16]}: q * d + m. */
static void dq_q4_1(const uint8_t *b, float *y) {
    float d = rdh(b), m = rdh(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0xF) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}: bit j of the 32-bit qh is the 5th bit of element j;
 * (q - 16) * d. */
static void dq_q5_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    uint32_t qh = rd32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)(lo - 16) * d;
        y[j + 16] = (float)(hi - 16) * d;
    }
}

/* Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]}: q * d + m. */
static void dq_q5_1(const uint8_t *b, float *y) {
    float d = rdh(b), m = rdh(b + 2);
    uint32_t qh = rd32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)lo * d + m;
        y[j + 16] = (float)hi * d + m;
    }
}

/* Q8_0 {f16 d; i8 qs[32]}. */
static void dq_q8_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int j = 0; j < QK; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q8_1 {f16 d; f16 s (= d * sum(qs), unused here); i8 qs[32]}. */
static void dq_q8_1(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int j = 0; j < QK; j++) y[j] = (float)(int8_t)b[4 + j] * d;
}

/* Q2_K {u8 scales[16]; u8 qs[64]; f16 d, dmin}: 16 sub-blocks of 16, each with a 4-bit scale
 * (low nibble) and 4-bit min (high nibble). Each half of 128 uses 32 bytes of qs, four 2-bit
 * planes; value d * sc * q - dmin * m. */
static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    float d = rdh(b + 80), dmin = rdh(b + 82);
    int is = 0;
    for (int half = 0; half < 2; half++, qs += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int k = 0; k < 2; k++, is++) {
                float dl = d * (float)(sc[is] & 0xF), ml = dmin * (float)(sc[is] >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((qs[16 * k + l] >> shift) & 3) - ml;
            }
        }
    }
}

/* Unpacks the 16 6-bit scales of Q3_K (stored biased by 32 in 12 bytes: low 4 bits of scales
 * 0..7 in bytes 0..7 low nibbles, of 8..15 in the high nibbles, top 2 bits in bytes 8..11). */
static void q3k_scales(const uint8_t *s, int *out) {
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? (s[i] & 0xF) : (s[i - 8] >> 4);
        int hi = (s[8 + (i % 4)] >> (2 * (i / 4))) & 3;
        out[i] = (lo | (hi << 4)) - 32;
    }
}

/* Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}: 2 low bits in qs planes like Q2_K,
 * the 3rd bit in hmask (bit 0..7 per 32-element group); a clear hmask bit subtracts 4. */
static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *qs = b + 32;
    float d = rdh(b + 108);
    int sc[16];
    q3k_scales(b + 96, sc);
    int is = 0;
    unsigned m = 1;
    for (int half = 0; half < 2; half++, qs += 32) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
            for (int k = 0; k < 2; k++, is++) {
                float dl = d * (float)sc[is];
                for (int l = 16 * k; l < 16 * k + 16; l++) {
                    int q = ((qs[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                    *y++ = dl * (float)q;
                }
            }
        }
    }
}

/* The 6-bit scale and min of sub-block j (0..7) of Q4_K/Q5_K from their 12 packed bytes:
 * j < 4 in the low 6 bits of bytes j and j+4; j >= 4 split: low 4 bits in byte j+4 (scale in
 * the low nibble, min in the high), top 2 bits in the top bits of bytes j-4 and j. */
static inline void k4_scale_min(int j, const uint8_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Sub-block j's scale d * sc and min dmin * mn. */
static inline void k4_sub(int j, const uint8_t *s, float d, float dmin, float *dj, float *mj) {
    int sc, mn;
    k4_scale_min(j, s, &sc, &mn);
    *dj = d * (float)sc;
    *mj = dmin * (float)mn;
}

/* Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32; each 64 elements share 32
 * bytes of qs (low nibbles first, then high); value d * sc * q - dmin * m. */
static void dq_q4_k(const uint8_t *b, float *y) {
    float d = rdh(b), dmin = rdh(b + 2);
    const uint8_t *s = b + 4, *qs = b + 16;
    for (int j = 0; j < 8; j += 2, qs += 32) {
        float d1, m1, d2, m2;
        k4_sub(j, s, d, dmin, &d1, &m1);
        k4_sub(j + 1, s, d, dmin, &d2, &m2);
        for (int l = 0; l < 32; l++) y[l] = d1 * (float)(qs[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)(qs[l] >> 4) - m2;
        y += 64;
    }
}

/* Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: Q4_K plus a 5th bit, bit j of
 * qh[l] for element l of sub-block j. */
static void dq_q5_k(const uint8_t *b, float *y) {
    float d = rdh(b), dmin = rdh(b + 2);
    const uint8_t *s = b + 4, *qh = b + 16, *qs = b + 48;
    for (int j = 0; j < 8; j += 2, qs += 32) {
        float d1, m1, d2, m2;
        k4_sub(j, s, d, dmin, &d1, &m1);
        k4_sub(j + 1, s, d, dmin, &d2, &m2);
        for (int l = 0; l < 32; l++)
            y[l] = d1 * (float)((qs[l] & 0xF) | (((qh[l] >> j) & 1) << 4)) - m1;
        for (int l = 0; l < 32; l++)
            y[32 + l] = d2 * (float)((qs[l] >> 4) | (((qh[l] >> (j + 1)) & 1) << 4)) - m2;
        y += 64;
    }
}

/* Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: per 128 elements, 64 bytes of ql (low 4
 * bits: elements l, l+32 in the low nibbles, l+64, l+96 in the high) and 32 bytes of qh (2 bits
 * each at shifts 0, 2, 4, 6); 16 sub-blocks of 16 with int8 scales; d * sc * (q - 32). */
static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rdh(b + 208);
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

/* Q8_K {f32 d; i8 qs[256]; i16 bsums[16] (sums of 16, unused here)}. */
static void dq_q8_k(const uint8_t *b, float *y) {
    float d = rdf32(b);
    for (int j = 0; j < QK_K; j++) y[j] = d * (float)(int8_t)b[4 + j];
}

typedef void (*block_dq_fn)(const uint8_t *b, float *y);

static block_dq_fn block_dq(uint32_t type) {
    switch (type) {
    case CM_Q4_0: return dq_q4_0;
    case CM_Q4_1: return dq_q4_1;
    case CM_Q5_0: return dq_q5_0;
    case CM_Q5_1: return dq_q5_1;
    case CM_Q8_0: return dq_q8_0;
    case CM_Q8_1: return dq_q8_1;
    case CM_Q2_K: return dq_q2_k;
    case CM_Q3_K: return dq_q3_k;
    case CM_Q4_K: return dq_q4_k;
    case CM_Q5_K: return dq_q5_k;
    case CM_Q6_K: return dq_q6_k;
    case CM_Q8_K: return dq_q8_k;
    default: return NULL;
    }
}

void cm_dequant_ref(uint32_t type, const void *row, float *out, size_t n) {
    const uint8_t *p = row;
    switch (type) {
    case CM_F32:
        memcpy(out, row, n * sizeof(float));
        return;
    case CM_F16:
        for (size_t i = 0; i < n; i++) out[i] = h2f(rd16(p + 2 * i));
        return;
    case CM_BF16:
        for (size_t i = 0; i < n; i++) out[i] = lm_bf16_to_f32(rd16(p + 2 * i));
        return;
    default: break;
    }
    if (type == CM_Q8_0X4) {
        size_t nb = n / QK;
        for (size_t g = 0; g < nb; g += 4) {
            size_t r = LM_MIN((size_t)4, nb - g);
            const uint8_t *o = p + 64 * g;
            for (size_t k = 0; k < r; k++) {
                float d = rdf32(o + 48 * r + 16 * k);
                for (int j = 0; j < 16; j++) {
                    out[QK * (g + k) + (size_t)j] = d * (float)(int8_t)o[16 * k + (size_t)j];
                    out[QK * (g + k) + 16 + (size_t)j] = d * (float)(int8_t)o[16 * r + 16 * k + (size_t)j];
                }
            }
        }
        return;
    }
    block_dq_fn fn = block_dq(type);
    const cm_type_info *t = cm_type_get(type);
    if (!fn || !t) {
        /* Callers check can_matmul first; zeros keep a misuse from reading garbage. */
        memset(out, 0, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n / t->block_size; i++)
        fn(p + i * t->block_bytes, out + i * t->block_size);
}

float cm_dot_ref(uint32_t type, const void *row, const float *x, size_t n) {
    const uint8_t *p = row;
    double sum = 0;
    switch (type) {
    case CM_F32:
        for (size_t i = 0; i < n; i++) sum += (double)(rdf32(p + 4 * i) * x[i]);
        return (float)sum;
    case CM_F16:
        for (size_t i = 0; i < n; i++) sum += (double)(h2f(rd16(p + 2 * i)) * x[i]);
        return (float)sum;
    case CM_BF16:
        for (size_t i = 0; i < n; i++) sum += (double)(lm_bf16_to_f32(rd16(p + 2 * i)) * x[i]);
        return (float)sum;
    default: break;
    }
    block_dq_fn fn = block_dq(type);
    const cm_type_info *t = cm_type_get(type);
    if (!fn || !t) return 0.0f;
    float tmp[QK_K];
    for (size_t i = 0; i < n / t->block_size; i++) {
        fn(p + i * t->block_bytes, tmp);
        const float *xb = x + i * t->block_size;
        /* A float sum per block, a double across blocks: close to what SIMD kernels do while
         * keeping long rows accurate. */
        float s = 0;
        for (uint32_t j = 0; j < t->block_size; j++) s += tmp[j] * xb[j];
        sum += s;
    }
    return (float)sum;
}

/* ---- quantizers ---- */

/* Float to int without undefined behaviour on NaN or huge values (a broken activation must give
 * garbage numbers, not a crash): NaN becomes 0, the rest saturates to +-32767. */
static inline int sat_int(float v) {
    if (v != v) return 0;
    return v < -32767.0f ? -32767 : v > 32767.0f ? 32767 : (int)v;
}
/* Round half away from zero, as ggml's quantizers do (roundf). */
static inline int iround(float v) { return sat_int(roundf(v)); }
static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Q8_0: d = max|x| / 127, q = round(x / d). */
static void q_q8_0(const float *x, uint8_t *b) {
    float amax = 0;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    wr16(b, lm_f32_to_f16(d));
    for (int j = 0; j < QK; j++) b[2 + j] = (uint8_t)(int8_t)clampi(iround(x[j] * id), -127, 127);
}

/* Q8_1: Q8_0 plus s = d * sum(q). */
static void q_q8_1(const float *x, uint8_t *b) {
    float amax = 0;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK; j++) {
        int q = clampi(iround(x[j] * id), -127, 127);
        sum += q;
        b[4 + j] = (uint8_t)(int8_t)q;
    }
    wr16(b, lm_f32_to_f16(d));
    wr16(b + 2, lm_f32_to_f16(d * (float)sum));
}

/* The signed value of largest magnitude (ggml's Q4_0/Q5_0 rule: d = max / -8 (or -16) so that
 * extreme maps exactly to the most negative level, which has one more step than the positive). */
static float signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void q_q4_0(const float *x, uint8_t *b) {
    float d = signed_absmax(x, QK) / -8.0f, id = d ? 1.0f / d : 0.0f;
    wr16(b, lm_f32_to_f16(d));
    for (int j = 0; j < 16; j++) {
        int lo = LM_MIN(15, sat_int(x[j] * id + 8.5f));
        int hi = LM_MIN(15, sat_int(x[j + 16] * id + 8.5f));
        b[2 + j] = (uint8_t)(lo | (hi << 4));
    }
}

static void q_q5_0(const float *x, uint8_t *b) {
    float d = signed_absmax(x, QK) / -16.0f, id = d ? 1.0f / d : 0.0f;
    wr16(b, lm_f32_to_f16(d));
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        int lo = LM_MIN(31, sat_int(x[j] * id + 16.5f));
        int hi = LM_MIN(31, sat_int(x[j + 16] * id + 16.5f));
        b[6 + j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
        qh |= (uint32_t)((lo >> 4) & 1) << j;
        qh |= (uint32_t)((hi >> 4) & 1) << (j + 16);
    }
    wr32(b + 2, qh);
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    *mn = INFINITY;
    *mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        *mn = fminf(*mn, x[j]);
        *mx = fmaxf(*mx, x[j]);
    }
}

/* Q4_1/Q5_1: d = (max - min) / levels, m = min, q = round((x - min) / d). */
static void q_q4_1(const float *x, uint8_t *b) {
    float mn, mx;
    minmax(x, QK, &mn, &mx);
    float d = (mx - mn) / 15.0f, id = d ? 1.0f / d : 0.0f;
    wr16(b, lm_f32_to_f16(d));
    wr16(b + 2, lm_f32_to_f16(mn));
    for (int j = 0; j < 16; j++) {
        int lo = LM_MIN(15, sat_int((x[j] - mn) * id + 0.5f));
        int hi = LM_MIN(15, sat_int((x[j + 16] - mn) * id + 0.5f));
        b[4 + j] = (uint8_t)(lo | (hi << 4));
    }
}

static void q_q5_1(const float *x, uint8_t *b) {
    float mn, mx;
    minmax(x, QK, &mn, &mx);
    float d = (mx - mn) / 31.0f, id = d ? 1.0f / d : 0.0f;
    wr16(b, lm_f32_to_f16(d));
    wr16(b + 2, lm_f32_to_f16(mn));
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        int lo = LM_MIN(31, sat_int((x[j] - mn) * id + 0.5f));
        int hi = LM_MIN(31, sat_int((x[j + 16] - mn) * id + 0.5f));
        b[8 + j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
        qh |= (uint32_t)((lo >> 4) & 1) << j;
        qh |= (uint32_t)((hi >> 4) & 1) << (j + 16);
    }
    wr32(b + 4, qh);
}

/* Sub-blocks 0..3 keep their scale and min in the low 6 bits of bytes j and j + 4; 4..7 keep the
 * low 4 bits in byte j + 4 and the top 2 in the high bits of bytes j - 4 and j (k4_scale_min). */
void cm_k4_pack_scales(uint8_t s12[12], const int ls[8], const int lm[8]) {
    memset(s12, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s12[j] = (uint8_t)ls[j];
            s12[j + 4] = (uint8_t)lm[j];
        } else {
            s12[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            s12[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s12[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* A super-scale for 6-bit (or 8-bit) sub-scales up to max: a hair above max / levels so that
 * ceil(v / d) never exceeds levels after d is rounded to f16. */
static float super_scale(float max, float levels, float *dq) {
    float d = max / levels * 1.002f;
    uint16_t h = lm_f32_to_f16(d);
    *dq = lm_f16_to_f32(h);
    return d;
}

/* Q4_K/Q5_K with a simple (not optimal) rule: per sub-block of 32, min m = max(0, -min(x)) and
 * scale = (max(x) + m) / levels. Mins are quantized upwards first, then scales upwards against the
 * quantized min, so every x fits without clamping and the error stays below half a step plus a
 * 1/63 of the largest sub-scale. */
static void q_k4_common(const float *x, uint8_t *s12, float *d_out, float *dmin_out,
                        float *sub_d, float *sub_m, float levels) {
    float mins[8], maxs[8], mmax = 0;
    for (int j = 0; j < 8; j++) {
        float mn, mx;
        minmax(x + 32 * j, 32, &mn, &mx);
        mins[j] = fmaxf(0.0f, -mn);
        maxs[j] = mx;
        mmax = fmaxf(mmax, mins[j]);
    }
    float dminq = 0;
    uint16_t hdmin = mmax > 0 ? lm_f32_to_f16(super_scale(mmax, 63, &dminq)) : 0;
    int lm[8], ls[8];
    float need[8], smax = 0;
    for (int j = 0; j < 8; j++) {
        lm[j] = dminq > 0 ? clampi(sat_int(ceilf(mins[j] / dminq)), 0, 63) : 0;
        sub_m[j] = dminq * (float)lm[j];
        need[j] = fmaxf(0.0f, (maxs[j] + sub_m[j]) / levels);
        smax = fmaxf(smax, need[j]);
    }
    float dq = 0;
    uint16_t hd = smax > 0 ? lm_f32_to_f16(super_scale(smax, 63, &dq)) : 0;
    for (int j = 0; j < 8; j++) {
        ls[j] = dq > 0 ? clampi(sat_int(ceilf(need[j] / dq)), 0, 63) : 0;
        sub_d[j] = dq * (float)ls[j];
    }
    cm_k4_pack_scales(s12, ls, lm);
    *d_out = lm_f16_to_f32(hd);
    *dmin_out = lm_f16_to_f32(hdmin);
}

static void q_q4_k(const float *x, uint8_t *b) {
    float d, dmin, sd[8], sm[8];
    q_k4_common(x, b + 4, &d, &dmin, sd, sm, 15);
    wr16(b, lm_f32_to_f16(d));
    wr16(b + 2, lm_f32_to_f16(dmin));
    uint8_t *qs = b + 16;
    for (int j = 0; j < 8; j += 2, qs += 32) {
        for (int l = 0; l < 32; l++) {
            float i1 = sd[j] ? 1.0f / sd[j] : 0.0f, i2 = sd[j + 1] ? 1.0f / sd[j + 1] : 0.0f;
            int q1 = clampi(iround((x[32 * j + l] + sm[j]) * i1), 0, 15);
            int q2 = clampi(iround((x[32 * (j + 1) + l] + sm[j + 1]) * i2), 0, 15);
            qs[l] = (uint8_t)(q1 | (q2 << 4));
        }
    }
}

static void q_q5_k(const float *x, uint8_t *b) {
    float d, dmin, sd[8], sm[8];
    q_k4_common(x, b + 4, &d, &dmin, sd, sm, 31);
    wr16(b, lm_f32_to_f16(d));
    wr16(b + 2, lm_f32_to_f16(dmin));
    uint8_t *qh = b + 16, *qs = b + 48;
    memset(qh, 0, 32);
    for (int j = 0; j < 8; j += 2, qs += 32) {
        for (int l = 0; l < 32; l++) {
            float i1 = sd[j] ? 1.0f / sd[j] : 0.0f, i2 = sd[j + 1] ? 1.0f / sd[j + 1] : 0.0f;
            int q1 = clampi(iround((x[32 * j + l] + sm[j]) * i1), 0, 31);
            int q2 = clampi(iround((x[32 * (j + 1) + l] + sm[j + 1]) * i2), 0, 31);
            qs[l] = (uint8_t)((q1 & 0xF) | ((q2 & 0xF) << 4));
            qh[l] |= (uint8_t)(((q1 >> 4) << j) | ((q2 >> 4) << (j + 1)));
        }
    }
}

/* Q6_K, simply: per sub-block of 16, scale = max|x| / 31 (so q stays in -31..31); int8 scales
 * against d = max scale / 127, rounded up so nothing clamps. */
static void q_q6_k(const float *x, uint8_t *b) {
    float need[16], smax = 0;
    for (int j = 0; j < 16; j++) {
        float amax = 0;
        for (int l = 0; l < 16; l++) amax = fmaxf(amax, fabsf(x[16 * j + l]));
        need[j] = amax / 31.0f;
        smax = fmaxf(smax, need[j]);
    }
    float dq = 0;
    uint16_t hd = smax > 0 ? lm_f32_to_f16(super_scale(smax, 127, &dq)) : 0;
    int8_t *sc = (int8_t *)(b + 192);
    float sub[16];
    for (int j = 0; j < 16; j++) {
        int s = dq > 0 ? clampi(sat_int(ceilf(need[j] / dq)), 0, 127) : 0;
        sc[j] = (int8_t)s;
        sub[j] = dq * (float)s;
    }
    wr16(b + 208, hd);
    uint8_t *ql = b, *qh = b + 128;
    memset(b, 0, 192);
    for (int i = 0; i < QK_K; i++) {
        float inv = sub[i / 16] ? 1.0f / sub[i / 16] : 0.0f;
        int q = clampi(iround(x[i] * inv), -32, 31) + 32;
        /* Element i = 128*h + 32*k + l: low nibble of ql[64h + l + 32*(k&1)] (high nibble for
         * k >= 2), 2 high bits of qh[32h + l] at shift 2k. */
        int h = i / 128, k = (i % 128) / 32, l = i % 32;
        uint8_t *pl = ql + 64 * h + l + 32 * (k & 1);
        *pl |= (uint8_t)((q & 0xF) << (k >= 2 ? 4 : 0));
        qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
    }
}

/* Q8_K: d = max|x| / 127 as f32, plus the sums of each 16 quants. */
static void q_q8_k(const float *x, uint8_t *b) {
    float amax = 0;
    for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    union { float f; uint32_t u; } v = {d};
    wr32(b, v.u);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) {
            int q = clampi(iround(x[16 * g + l] * id), -127, 127);
            b[4 + 16 * g + l] = (uint8_t)(int8_t)q;
            sum += q;
        }
        wr16(b + 260 + 2 * g, (uint16_t)(int16_t)sum);
    }
}

/* The Q8_0X4 layout (see g_q8_0x4) of n elements, from the Q8_0 blocks of x. */
static void q_q8_0x4(const float *x, uint8_t *out, size_t n) {
    size_t nb = n / QK;
    for (size_t g = 0; g < nb; g += 4) {
        size_t r = LM_MIN((size_t)4, nb - g);
        uint8_t *o = out + 64 * g;
        for (size_t k = 0; k < r; k++) {
            uint8_t b[34];
            q_q8_0(x + QK * (g + k), b);
            memcpy(o + 16 * k, b + 2, 16);
            memcpy(o + 16 * r + 16 * k, b + 18, 16);
            union { float f; uint32_t u; } d = {h2f(rd16(b))};
            for (size_t i = 0; i < 4; i++) {
                int sum = 0;
                for (size_t j = 0; j < 4; j++) sum += (int8_t)b[2 + 4 * i + j] + (int8_t)b[18 + 4 * i + j];
                wr32(o + 32 * r + 4 * (4 * k + i), (uint32_t)(-8 * sum));
                wr32(o + 48 * r + 4 * (4 * k + i), d.u);
            }
        }
    }
}

bool cm_quantize_ref(uint32_t type, const float *x, void *out, size_t n) {
    uint8_t *p = out;
    switch (type) {
    case CM_Q8_0X4:
        if (n % QK) return false;
        q_q8_0x4(x, p, n);
        return true;
    case CM_F32:
        memcpy(out, x, n * sizeof(float));
        return true;
    case CM_F16:
        for (size_t i = 0; i < n; i++) wr16(p + 2 * i, lm_f32_to_f16(x[i]));
        return true;
    case CM_BF16:
        for (size_t i = 0; i < n; i++) wr16(p + 2 * i, lm_f32_to_bf16(x[i]));
        return true;
    default: break;
    }
    void (*fn)(const float *, uint8_t *);
    switch (type) {
    case CM_Q4_0: fn = q_q4_0; break;
    case CM_Q4_1: fn = q_q4_1; break;
    case CM_Q5_0: fn = q_q5_0; break;
    case CM_Q5_1: fn = q_q5_1; break;
    case CM_Q8_0: fn = q_q8_0; break;
    case CM_Q8_1: fn = q_q8_1; break;
    case CM_Q4_K: fn = q_q4_k; break;
    case CM_Q5_K: fn = q_q5_k; break;
    case CM_Q6_K: fn = q_q6_k; break;
    case CM_Q8_K: fn = q_q8_k; break;
    default: return false;
    }
    const cm_type_info *t = cm_type_get(type);
    if (n % t->block_size) return false;
    for (size_t i = 0; i < n / t->block_size; i++)
        fn(x + i * t->block_size, p + i * t->block_bytes);
    return true;
}

/* ---- MLX affine groups ---- */

static inline float sb_get(uint32_t sb_type, const void *base, size_t i) {
    const uint8_t *p = base;
    switch (sb_type) {
    case CM_F16: return h2f(rd16(p + 2 * i));
    case CM_BF16: return lm_bf16_to_f32(rd16(p + 2 * i));
    default: return rdf32(p + 4 * i);
    }
}

/* Value i of a little-endian bit stream of bits-wide fields (MLX packs into uint32 words from the
 * low bits; with 3, 5 and 6 bits a value may straddle two words, which a byte stream handles). */
static inline uint32_t mlx_q(const uint8_t *p, size_t i, uint32_t bits, size_t n_bytes) {
    size_t bit = i * bits, byte = bit / 8;
    uint32_t v = 0;
    for (size_t k = 0; k < 3 && byte + k < n_bytes; k++) v |= (uint32_t)p[byte + k] << (8 * k);
    return (v >> (bit % 8)) & ((1u << bits) - 1);
}

void cm_mlx_dequant_row(const cm_matrix *m, size_t row, float *out) {
    if (m->bits == 0 || m->bits > 8 || m->group_size == 0) {
        /* Loaders reject these; zeros keep a misuse from shifting out of range. */
        memset(out, 0, m->cols * sizeof(float));
        return;
    }
    const uint8_t *p = (const uint8_t *)m->data + row * m->row_bytes;
    size_t n_groups = m->cols / m->group_size, n_bytes = (m->cols * m->bits + 7) / 8;
    for (size_t g = 0; g < n_groups; g++) {
        float s = sb_get(m->sb_type, m->scales, row * n_groups + g);
        float b = sb_get(m->sb_type, m->biases, row * n_groups + g);
        for (size_t k = 0; k < m->group_size; k++) {
            size_t i = g * m->group_size + k;
            out[i] = s * (float)mlx_q(p, i, m->bits, n_bytes) + b;
        }
    }
}

/* sum(w x) per group is s * sum(q x) + b * sum(x): two sums and no dequantized temporaries. */
float cm_mlx_dot_row(const cm_matrix *m, size_t row, const float *x) {
    if (m->bits == 0 || m->bits > 8 || m->group_size == 0) return 0.0f;
    const uint8_t *p = (const uint8_t *)m->data + row * m->row_bytes;
    size_t n_groups = m->cols / m->group_size, n_bytes = (m->cols * m->bits + 7) / 8;
    double sum = 0;
    for (size_t g = 0; g < n_groups; g++) {
        float s = sb_get(m->sb_type, m->scales, row * n_groups + g);
        float b = sb_get(m->sb_type, m->biases, row * n_groups + g);
        float qx = 0, sx = 0;
        for (size_t k = 0; k < m->group_size; k++) {
            size_t i = g * m->group_size + k;
            qx += (float)mlx_q(p, i, m->bits, n_bytes) * x[i];
            sx += x[i];
        }
        sum += (double)(s * qx + b * sx);
    }
    return (float)sum;
}


float cm_dotq_ref(uint32_t type, const void *row, uint32_t act_type, const void *xq, size_t n) {
    const cm_type_info *t = cm_type_get(type), *ta = cm_type_get(act_type);
    if (act_type == CM_Q8_0X4 && t && n % QK == 0) {
        /* grouped, not block by block: dequantize it whole */
        float *xf = lm_malloc(n * sizeof(float));
        if (!xf) return NAN;
        cm_dequant_ref(CM_Q8_0X4, xq, xf, n);
        float r = cm_dot_ref(type, row, xf, n);
        lm_free(xf);
        return r;
    }
    block_dq_fn fa = block_dq(act_type);
    if (!t || !ta || !fa || ta->block_size < t->block_size) return 0.0f;
    /* Activation blocks are the larger (Q8_K 256) or equal (Q8_0 32): one at a time. */
    float xf[QK_K];
    double sum = 0;
    for (size_t i = 0; i < n / ta->block_size; i++) {
        fa((const uint8_t *)xq + i * ta->block_bytes, xf);
        size_t off = i * ta->block_size;
        const uint8_t *r = (const uint8_t *)row + off / t->block_size * t->block_bytes;
        sum += cm_dot_ref(type, r, xf, ta->block_size);
    }
    return (float)sum;
}

/* ---- prefill kernels ---- */

/* The prefill activations of the K types, quantized as their one-token kernels quantize them
 * (Q8_K: one scale per 256 elements, cm_quantize_ref), so a token gives the same integer dot
 * products whether it is decoded alone or in a batch (with the very quantizer the one-token kernel
 * uses: cm_quantize_select's, whose rounding of ties may differ from the reference's). The scale
 * of a 256-element block is that of each of its 32-element blocks in the cm_gemm_act layout. cols
 * must be a multiple of 256. */
void cm_gemm_prep_q8k(const float *x, size_t ldx, const cm_gemm_act *a, size_t g0, size_t g1, cm_quantize_fn quant) {
    size_t nb = a->cols / 32;
    uint8_t q8k[292]; /* float d; int8 qs[256]; int16 bsums[16] */
    for (size_t g = g0; g < g1; g++) {
        uint8_t *grp = a->mem + g * nb * CM_GEMM_ACT_BLOCK;
        size_t nt = LM_MIN((size_t)CM_GEMM_TOK, a->n - g * CM_GEMM_TOK);
        if (nt < CM_GEMM_TOK) memset(grp, 0, nb * CM_GEMM_ACT_BLOCK); /* padding lanes give 0 */
        for (size_t t = 0; t < nt; t++) {
            const float *xt = x + (g * CM_GEMM_TOK + t) * ldx;
            for (size_t sb = 0; sb < nb / 8; sb++) {
                quant(xt + 256 * sb, q8k, 256);
                float d;
                memcpy(&d, q8k, 4);
                const int8_t *q = (const int8_t *)(q8k + 4);
                for (size_t b = 0; b < 8; b++) {
                    uint8_t *blk = grp + (sb * 8 + b) * CM_GEMM_ACT_BLOCK;
                    const int8_t *qb = q + 32 * b;
                    for (int k = 0; k < 8; k++) memcpy(blk + 64 * k + 4 * t, qb + 4 * k, 4);
                    int32_t s0 = 0, s1 = 0;
                    for (int i = 0; i < 16; i++) {
                        s0 += qb[i];
                        s1 += qb[16 + i];
                    }
                    int32_t n0 = -s0, n1 = -s1;
                    float xs = d * (float)(s0 + s1);
                    memcpy(blk + 512 + 4 * t, &d, 4);
                    memcpy(blk + 576 + 4 * t, &n0, 4);
                    memcpy(blk + 640 + 4 * t, &n1, 4);
                    memcpy(blk + 704 + 4 * t, &xs, 4);
                }
            }
        }
    }
}

size_t cm_gemm_act_bytes(size_t n, size_t cols) {
    return (n + CM_GEMM_TOK - 1) / CM_GEMM_TOK * (cols / 32) * CM_GEMM_ACT_BLOCK;
}

/* An unpacked tile of 8 rows (per block of 32, 32 bytes and 3 floats per row) and its float
 * accumulators for every token (quants_avx512.c), plus room to align both to 64 bytes. */
size_t cm_gemm_scratch_bytes(size_t cols, size_t n) {
    return cols / 32 * (8 * 32 + 3 * 8 * sizeof(float)) +
           (n + CM_GEMM_TOK - 1) / CM_GEMM_TOK * 8 * CM_GEMM_TOK * sizeof(float) + 128;
}
