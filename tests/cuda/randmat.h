/* tests/cuda/randmat.h: random weight matrices of every type for the CUDA tests (lmcuda.c and
 * formats.cu): random bytes with every scale field set to a sane value, so every bit pattern of
 * the quants is exercised while the products stay finite. Header-only, static. */
#ifndef LM_TESTS_CUDA_RANDMAT_H
#define LM_TESTS_CUDA_RANDMAT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/backend.h"

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static float frand(lm_rng *r, float lo, float hi) { return lo + (hi - lo) * (float)lm_rng_uniform(r); }

static void put_f16(uint8_t *p, float v) {
    uint16_t h = lm_f32_to_f16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* A random matrix of a GGML type: random bytes with every scale field set to a sane half. */
static uint8_t *random_matrix(uint32_t type, size_t rows, size_t cols, lm_rng *r, size_t *row_bytes) {
    const cm_type_info *ti = cm_type_get(type);
    uint64_t rb = 0;
    cm_type_row_bytes(type, cols, &rb);
    *row_bytes = (size_t)rb;
    uint8_t *d = (uint8_t *)xmalloc(rows * rb);
    if (type == CM_F32 || type == CM_F16 || type == CM_BF16) {
        for (size_t i = 0; i < rows * cols; i++) {
            float v = frand(r, -1, 1);
            if (type == CM_F32) memcpy(d + 4 * i, &v, 4);
            else {
                uint16_t h = type == CM_F16 ? lm_f32_to_f16(v) : lm_f32_to_bf16(v);
                d[2 * i] = (uint8_t)h;
                d[2 * i + 1] = (uint8_t)(h >> 8);
            }
        }
        return d;
    }
    for (size_t i = 0; i < rows * rb; i++) d[i] = (uint8_t)lm_rng_next(r);
    size_t nb = rows * cols / ti->block_size;
    for (size_t b = 0; b < nb; b++) {
        uint8_t *p = d + b * ti->block_bytes;
        switch (type) {
        case CM_Q4_0: case CM_Q5_0: case CM_Q8_0: put_f16(p, frand(r, 0.002f, 0.02f)); break;
        case CM_Q4_1: case CM_Q5_1: case CM_Q8_1:
            put_f16(p, frand(r, 0.002f, 0.02f));
            put_f16(p + 2, frand(r, -0.05f, 0.05f));
            break;
        case CM_Q2_K: put_f16(p + 80, frand(r, 0.002f, 0.02f)); put_f16(p + 82, frand(r, 0.001f, 0.01f)); break;
        case CM_Q3_K: put_f16(p + 108, frand(r, 0.002f, 0.02f)); break;
        case CM_Q4_K: case CM_Q5_K: put_f16(p, frand(r, 0.0005f, 0.005f)); put_f16(p + 2, frand(r, 0.0005f, 0.005f)); break;
        case CM_Q6_K: put_f16(p + 208, frand(r, 0.0005f, 0.005f)); break;
        case CM_Q8_K: {
            float v = frand(r, 0.002f, 0.02f);
            memcpy(p, &v, 4);
            break;
        }
        default: break;
        }
    }
    return d;
}

/* An MLX matrix: random packed bits, scales and biases of sb_type; *scales and *biases are the
 * caller's to free. */
static uint8_t *random_mlx(size_t rows, size_t cols, uint32_t bits, uint32_t gs, uint32_t sb_type, lm_rng *r,
                           uint8_t **scales, uint8_t **biases) {
    size_t rb = cols * bits / 8, ng = rows * cols / gs, es = sb_type == CM_F32 ? 4 : 2;
    uint8_t *data = (uint8_t *)xmalloc(rows * rb), *sc = (uint8_t *)xmalloc(ng * es), *bi = (uint8_t *)xmalloc(ng * es);
    for (size_t i = 0; i < rows * rb; i++) data[i] = (uint8_t)lm_rng_next(r);
    for (size_t g = 0; g < ng; g++) {
        float s = frand(r, 0.001f, 0.02f), b = frand(r, -0.05f, 0.05f);
        if (es == 4) {
            memcpy(sc + 4 * g, &s, 4);
            memcpy(bi + 4 * g, &b, 4);
        } else {
            uint16_t hs = sb_type == CM_F16 ? lm_f32_to_f16(s) : lm_f32_to_bf16(s);
            uint16_t hb = sb_type == CM_F16 ? lm_f32_to_f16(b) : lm_f32_to_bf16(b);
            memcpy(sc + 2 * g, &hs, 2);
            memcpy(bi + 2 * g, &hb, 2);
        }
    }
    *scales = sc;
    *biases = bi;
    return data;
}

#endif
