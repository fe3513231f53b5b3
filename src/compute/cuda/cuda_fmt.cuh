/* compute/cuda/cuda_fmt.cuh: the device weight formats, decoded 32 elements at a time.
 * Owns: dq32<F>(w, row, c, out): elements [32c, 32c + 32) of row `row` of an uploaded matrix, as
 * the CPU reference (compute/cpu/quants_ref.c) computes them: the same products and sums, so
 * every value is the reference's to the last bit or one rounding. Every format below is the file
 * format's bytes regrouped so that loads are aligned (cuda_backend.cu, repack_row):
 *   F32/F16/BF16  rows as in the file, each padded to 16 bytes; any cols (a tail chunk is masked)
 *   Q4_0  q: qs[16]           s: d (f16)                    per block of 32
 *   Q4_1  q: qs[16]           s: d, m (f16)
 *   Q5_0  q: qs[16]           s: qh (u32), d (f16), pad[2]
 *   Q5_1  q: qs[16]           s: qh (u32), d, m (f16)
 *   Q8_0  q: qs[32]           s: d (f16)                    (Q8_1 too: its s field is unused)
 *   Q2_K  q: scales[16] qs[64]            s: d, dmin (f16)  per block of 256
 *   Q3_K  q: hmask[32] qs[64] scales[12] d (f16) pad[2]     (112 bytes)
 *   Q4_K  q: the file's 144 bytes; Q5_K: the file's 176 bytes
 *   Q6_K  q: ql[128] qh[64] scales[16]    s: d (f16)
 *   Q8_K  q: qs[256]                       s: d (f32)        (bsums dropped)
 *   MLX   q: the packed row (cols * bits / 8 bytes), s/b: the row's scales and biases
 * Included by the kernel files only. */
#ifndef LM_COMPUTE_CUDA_FMT_CUH
#define LM_COMPUTE_CUDA_FMT_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string.h>

#include "compute/cuda/cuda_int.h"

/* The decoders are host code too, so tests/cuda/formats.cu checks them where there is no GPU. */
#define CU_HD __host__ __device__ __forceinline__

CU_HD float u2f(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}
CU_HD float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
CU_HD float bf2f(uint16_t h) { return u2f((uint32_t)h << 16); }
/* An int |v| < 2^22 as a float, exactly, without the quarter-rate I2F: 1.5 * 2^23 + v has v in
 * its low mantissa bits. */
CU_HD float sif(int v) { return u2f((uint32_t)(0x4B400000 + v)) - 12582912.0f; }
CU_HD uint16_t ld16(const uint8_t *p) { return *(const uint16_t *)p; }
CU_HD uint32_t byte_of(const uint32_t *w, int i) { return (w[i >> 2] >> (8 * (i & 3))) & 0xFFu; }

CU_HD void ld32b(uint32_t *o, const uint8_t *p) { /* 32 bytes, 16-aligned */
    uint4 a = ((const uint4 *)p)[0], b = ((const uint4 *)p)[1];
    o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
    o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}
CU_HD void ld16b(uint32_t *o, const uint8_t *p) { /* 16 bytes, 16-aligned */
    uint4 a = *(const uint4 *)p;
    o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
}

CU_HD float sb_at(const uint8_t *base, size_t i, int sb_type) {
    if (sb_type == 1) return h2f(((const uint16_t *)base)[i]);
    if (sb_type == 2) return bf2f(((const uint16_t *)base)[i]);
    return ((const float *)base)[i];
}

/* The 6-bit scale and min of sub-block j of Q4_K/Q5_K (quants_ref.c, k4_scale_min). */
CU_HD void k4_sm(int j, const uint32_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = (int)(byte_of(s, j) & 63);
        *mn = (int)(byte_of(s, j + 4) & 63);
    } else {
        *sc = (int)((byte_of(s, j + 4) & 0xF) | ((byte_of(s, j - 4) >> 6) << 4));
        *mn = (int)((byte_of(s, j + 4) >> 4) | ((byte_of(s, j) >> 6) << 4));
    }
}

/* Scale i of Q3_K's 12 packed bytes, unbiased (quants_ref.c, q3k_scales). */
CU_HD int q3k_sc(int i, const uint32_t *s) {
    int lo = i < 8 ? (int)(byte_of(s, i) & 0xF) : (int)(byte_of(s, i - 8) >> 4);
    int hi = (int)((byte_of(s, 8 + (i & 3)) >> (2 * (i >> 2))) & 3);
    return (lo | (hi << 4)) - 32;
}

template <int F>
CU_HD void dq32(const gw &w, size_t row, int c, float *o) {
    const uint8_t *qr = w.q + row * (size_t)w.q_row;
    if constexpr (F == G_F32 || F == G_F16 || F == G_BF16) {
        int e0 = c * 32;
        if (e0 + 32 <= w.cols) {
            if constexpr (F == G_F32) {
                const float4 *p = (const float4 *)(qr + (size_t)e0 * 4);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    float4 v = p[i];
                    o[4 * i] = v.x; o[4 * i + 1] = v.y; o[4 * i + 2] = v.z; o[4 * i + 3] = v.w;
                }
            } else {
                const uint4 *p = (const uint4 *)(qr + (size_t)e0 * 2);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    uint4 v = p[i];
                    uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        uint16_t lo = (uint16_t)(u[k] & 0xFFFF), hi = (uint16_t)(u[k] >> 16);
                        o[8 * i + 2 * k] = F == G_F16 ? h2f(lo) : bf2f(lo);
                        o[8 * i + 2 * k + 1] = F == G_F16 ? h2f(hi) : bf2f(hi);
                    }
                }
            }
        } else {
#pragma unroll
            for (int j = 0; j < 32; j++) {
                int e = e0 + j;
                float v = 0.0f;
                if (e < w.cols) {
                    if constexpr (F == G_F32) v = ((const float *)qr)[e];
                    else if constexpr (F == G_F16) v = h2f(((const uint16_t *)qr)[e]);
                    else v = bf2f(((const uint16_t *)qr)[e]);
                }
                o[j] = v;
            }
        }
    } else if constexpr (F == G_Q4_0 || F == G_Q4_1) {
        uint32_t u[4];
        ld16b(u, qr + (size_t)c * 16);
        if constexpr (F == G_Q4_0) {
            float d = h2f(ld16(w.s + row * (size_t)w.s_row + (size_t)c * 2));
#pragma unroll
            for (int j = 0; j < 16; j++) {
                uint32_t b = byte_of(u, j);
                o[j] = sif((int)(b & 0xF) - 8) * d;
                o[j + 16] = sif((int)(b >> 4) - 8) * d;
            }
        } else {
            const uint8_t *sp = w.s + row * (size_t)w.s_row + (size_t)c * 4;
            float d = h2f(ld16(sp)), m = h2f(ld16(sp + 2));
#pragma unroll
            for (int j = 0; j < 16; j++) {
                uint32_t b = byte_of(u, j);
                o[j] = sif((int)(b & 0xF)) * d + m;
                o[j + 16] = sif((int)(b >> 4)) * d + m;
            }
        }
    } else if constexpr (F == G_Q5_0 || F == G_Q5_1) {
        uint32_t u[4];
        ld16b(u, qr + (size_t)c * 16);
        const uint8_t *sp = w.s + row * (size_t)w.s_row + (size_t)c * 8;
        uint32_t qh = *(const uint32_t *)sp;
        float d = h2f(ld16(sp + 4));
        if constexpr (F == G_Q5_0) {
#pragma unroll
            for (int j = 0; j < 16; j++) {
                uint32_t b = byte_of(u, j);
                int lo = (int)((b & 0xF) | (((qh >> j) & 1) << 4));
                int hi = (int)((b >> 4) | (((qh >> (j + 16)) & 1) << 4));
                o[j] = sif(lo - 16) * d;
                o[j + 16] = sif(hi - 16) * d;
            }
        } else {
            float m = h2f(ld16(sp + 6));
#pragma unroll
            for (int j = 0; j < 16; j++) {
                uint32_t b = byte_of(u, j);
                int lo = (int)((b & 0xF) | (((qh >> j) & 1) << 4));
                int hi = (int)((b >> 4) | (((qh >> (j + 16)) & 1) << 4));
                o[j] = sif(lo) * d + m;
                o[j + 16] = sif(hi) * d + m;
            }
        }
    } else if constexpr (F == G_Q8_0) {
        uint32_t u[8];
        ld32b(u, qr + (size_t)c * 32);
        float d = h2f(ld16(w.s + row * (size_t)w.s_row + (size_t)c * 2));
#pragma unroll
        for (int j = 0; j < 32; j++) o[j] = sif((int)(int8_t)byte_of(u, j)) * d;
    } else if constexpr (F == G_Q2_K) {
        int blk = c >> 3, sub = c & 7, half = sub >> 2, si = sub & 3;
        const uint8_t *bq = qr + (size_t)blk * 80;
        uint32_t u[8];
        ld32b(u, bq + 16 + half * 32);
        const uint8_t *sp = w.s + row * (size_t)w.s_row + (size_t)blk * 4;
        float d = h2f(ld16(sp)), dmin = h2f(ld16(sp + 2));
        uint32_t sc0 = bq[half * 8 + si * 2], sc1 = bq[half * 8 + si * 2 + 1];
        float dl0 = d * sif((int)(sc0 & 0xF)), ml0 = dmin * sif((int)(sc0 >> 4));
        float dl1 = d * sif((int)(sc1 & 0xF)), ml1 = dmin * sif((int)(sc1 >> 4));
#pragma unroll
        for (int l = 0; l < 32; l++) {
            int q = (int)((byte_of(u, l) >> (2 * si)) & 3);
            o[l] = l < 16 ? dl0 * sif(q) - ml0 : dl1 * sif(q) - ml1;
        }
    } else if constexpr (F == G_Q3_K) {
        int blk = c >> 3, sub = c & 7, half = sub >> 2, si = sub & 3;
        const uint8_t *bq = qr + (size_t)blk * 112;
        uint32_t hm[8], qs[8], s12[3];
        ld32b(hm, bq);
        ld32b(qs, bq + 32 + half * 32);
        const uint32_t *sp = (const uint32_t *)(bq + 96);
        s12[0] = sp[0]; s12[1] = sp[1]; s12[2] = sp[2];
        float d = h2f(ld16(bq + 108));
        int is0 = half * 8 + si * 2;
        float dl0 = d * sif(q3k_sc(is0, s12)), dl1 = d * sif(q3k_sc(is0 + 1, s12));
        uint32_t m = 1u << (half * 4 + si);
#pragma unroll
        for (int l = 0; l < 32; l++) {
            int q = (int)((byte_of(qs, l) >> (2 * si)) & 3) - ((byte_of(hm, l) & m) ? 0 : 4);
            o[l] = (l < 16 ? dl0 : dl1) * sif(q);
        }
    } else if constexpr (F == G_Q4_K || F == G_Q5_K) {
        int blk = c >> 3, j = c & 7;
        const uint8_t *bq = qr + (size_t)blk * (F == G_Q4_K ? 144 : 176);
        uint32_t qs[8], s12[3];
        ld32b(qs, bq + (F == G_Q4_K ? 16 : 48) + (j >> 1) * 32);
        const uint32_t *sp = (const uint32_t *)(bq + 4);
        s12[0] = sp[0]; s12[1] = sp[1]; s12[2] = sp[2];
        float d = h2f(ld16(bq)), dmin = h2f(ld16(bq + 2));
        int sc, mn;
        k4_sm(j, s12, &sc, &mn);
        float d1 = d * sif(sc), m1 = dmin * sif(mn);
        if constexpr (F == G_Q4_K) {
#pragma unroll
            for (int l = 0; l < 32; l++) {
                uint32_t b = byte_of(qs, l);
                o[l] = d1 * sif((int)((j & 1) ? (b >> 4) : (b & 0xF))) - m1;
            }
        } else {
            uint32_t qh[8];
            ld32b(qh, bq + 16);
#pragma unroll
            for (int l = 0; l < 32; l++) {
                uint32_t b = byte_of(qs, l);
                uint32_t q = ((j & 1) ? (b >> 4) : (b & 0xF)) | (((byte_of(qh, l) >> j) & 1) << 4);
                o[l] = d1 * sif((int)q) - m1;
            }
        }
    } else if constexpr (F == G_Q6_K) {
        int blk = c >> 3, sub = c & 7, half = sub >> 2, k = sub & 3;
        const uint8_t *bq = qr + (size_t)blk * 208;
        uint32_t ql[8], qh[8];
        ld32b(ql, bq + half * 64 + 32 * (k & 1));
        ld32b(qh, bq + 128 + half * 32);
        uint2 sc8 = *(const uint2 *)(bq + 192 + half * 8);
        uint32_t scw[2] = {sc8.x, sc8.y};
        float d = h2f(ld16(w.s + row * (size_t)w.s_row + (size_t)blk * 2));
        float ds0 = d * sif((int)(int8_t)byte_of(scw, 2 * k)), ds1 = d * sif((int)(int8_t)byte_of(scw, 2 * k + 1));
#pragma unroll
        for (int l = 0; l < 32; l++) {
            uint32_t b = byte_of(ql, l);
            int q = (int)(((k >= 2) ? (b >> 4) : (b & 0xF)) | (((byte_of(qh, l) >> (2 * k)) & 3) << 4)) - 32;
            o[l] = (l < 16 ? ds0 : ds1) * sif(q);
        }
    } else if constexpr (F == G_Q8_K) {
        int blk = c >> 3, sub = c & 7;
        uint32_t u[8];
        ld32b(u, qr + (size_t)blk * 256 + sub * 32);
        float d = *(const float *)(w.s + row * (size_t)w.s_row + (size_t)blk * 4);
#pragma unroll
        for (int j = 0; j < 32; j++) o[j] = d * sif((int)(int8_t)byte_of(u, j));
    } else { /* MLX, bits = F - G_MLX2 + 2 */
        constexpr int B = F - G_MLX2 + 2;
        const uint32_t *p = (const uint32_t *)(qr + (size_t)c * 4 * B);
        uint32_t wd[B + 1];
#pragma unroll
        for (int i = 0; i < B; i++) wd[i] = p[i];
        wd[B] = 0;
        int ng = w.cols / w.gs;
        size_t gi = row * (size_t)ng + (size_t)(c * 32 / w.gs);
        float s = sb_at(w.s, gi, w.sb_type), bias = sb_at(w.b, gi, w.sb_type);
#pragma unroll
        for (int l = 0; l < 32; l++) {
            constexpr uint32_t mask = (1u << B) - 1;
            const int bit = l * B, wi = bit >> 5, sh = bit & 31;
            uint32_t v = wd[wi] >> sh;
            if (sh + B > 32) v |= wd[wi + 1] << (32 - sh);
            o[l] = s * sif((int)(v & mask)) + bias;
        }
    }
}

/* The formats every kernel is instantiated for; X(format) per line. */
#define CU_FORMATS(X) \
    X(G_F32) X(G_F16) X(G_BF16) X(G_Q4_0) X(G_Q4_1) X(G_Q5_0) X(G_Q5_1) X(G_Q8_0) X(G_Q2_K) X(G_Q3_K) \
    X(G_Q4_K) X(G_Q5_K) X(G_Q6_K) X(G_Q8_K) X(G_MLX2) X(G_MLX3) X(G_MLX4) X(G_MLX5) X(G_MLX6) X(G_MLX7) X(G_MLX8)

#endif /* LM_COMPUTE_CUDA_FMT_CUH */
