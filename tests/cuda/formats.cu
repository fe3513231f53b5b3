/* tests/cuda/formats.cu: the CUDA backend's device weight formats, checked on the host (no GPU
 * needed, so CI runs it in the CUDA build): every type the CPU runs is repacked as the backend
 * uploads it (repack_row) and decoded by the kernels' own decoder (dq32, compiled for the host
 * too), row by row, and must equal the CPU reference dequantizer (cm_dequant_ref,
 * cm_mlx_dequant_row) bit for bit: the decoder does the reference's products in its order.
 * Random blocks of every type (random bytes, sane scales), float rows whose length is not a
 * multiple of 32, and MLX of every width 2..8, group 32/64/128 and scale type. */
extern "C" {
#include "compute/backend.h"
}
#include "compute/cuda/cuda_fmt.cuh"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "randmat.h"
}

template <int F>
static void decode(const gw &w, size_t row, float *out) {
    float tmp[32];
    int nch = (w.cols + 31) / 32;
    for (int c = 0; c < nch; c++) {
        dq32<F>(w, row, c, tmp);
        for (int j = 0; j < 32 && c * 32 + j < w.cols; j++) out[c * 32 + j] = tmp[j];
    }
}

typedef void (*decode_fn)(const gw &, size_t, float *);
#define DEC_ENTRY(f) decode<f>,
static const decode_fn DECODE[G_COUNT] = {CU_FORMATS(DEC_ENTRY)};

static int g_fail;

/* Repacks every row of m and compares the decoded rows with the reference. */
static void check(const cm_matrix *m, const char *name) {
    finfo f;
    if (!finfo_of(m, &f)) {
        printf("FAIL: %s: no device format\n", name);
        g_fail++;
        return;
    }
    /* 16 bytes of slack: the decoders read whole 16-byte units */
    uint8_t *q = (uint8_t *)xmalloc(m->rows * f.q_row + 16), *s = (uint8_t *)xmalloc(m->rows * f.s_row + 16);
    uint8_t *b = (uint8_t *)xmalloc(m->rows * f.s_row + 16);
    /* the arrays must be 16-byte aligned, as cudaMalloc's are */
    if (((uintptr_t)q & 15) || ((uintptr_t)s & 15)) {
        printf("FAIL: host buffers not aligned\n");
        exit(1);
    }
    for (size_t r = 0; r < m->rows; r++) repack_row(m, r, &f, q + r * f.q_row, s + r * f.s_row, b + r * f.s_row);
    gw w;
    memset(&w, 0, sizeof w);
    w.q = q;
    w.s = s;
    w.b = b;
    w.fmt = f.g;
    w.rows = (int)m->rows;
    w.cols = (int)m->cols;
    w.q_row = (int)f.q_row;
    w.s_row = (int)f.s_row;
    w.sb_type = m->sb_type == CM_F16 ? 1 : m->sb_type == CM_BF16 ? 2 : 0;
    w.gs = (int)m->group_size;
    float *got = (float *)xmalloc(m->cols * sizeof(float)), *want = (float *)xmalloc(m->cols * sizeof(float));
    size_t bad = 0;
    double worst = 0;
    for (size_t r = 0; r < m->rows; r++) {
        DECODE[f.g](w, r, got);
        if (m->type == CM_MLX) cm_mlx_dequant_row(m, r, want);
        else cm_dequant_ref(m->type, (const uint8_t *)m->data + r * m->row_bytes, want, m->cols);
        for (size_t i = 0; i < m->cols; i++)
            if (memcmp(&got[i], &want[i], 4)) {
                bad++;
                double d = fabs((double)got[i] - want[i]);
                worst = d > worst ? d : worst;
            }
    }
    printf("  %-20s %zux%-4zu %s", name, m->rows, m->cols, bad ? "FAIL" : "ok");
    if (bad) printf(" (%zu values differ, largest by %.3g)", bad, worst);
    printf("\n");
    if (bad) g_fail++;
    free(q);
    free(s);
    free(b);
    free(got);
    free(want);
}

int main(void) {
    lm_rng r;
    lm_rng_seed(&r, 7);
    static const uint32_t types[] = {CM_F32, CM_F16, CM_BF16, CM_Q4_0, CM_Q4_1, CM_Q5_0, CM_Q5_1, CM_Q8_0,
                                     CM_Q8_1, CM_Q2_K, CM_Q3_K, CM_Q4_K, CM_Q5_K, CM_Q6_K, CM_Q8_K};
    int n = 0;
    printf("device formats decoded on the host against the CPU reference (bit for bit)\n");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        for (int k = 0; k < 2; k++) {
            size_t cols = k == 0 ? 512 : 100;
            if (k == 1 && types[i] != CM_F32 && types[i] != CM_F16 && types[i] != CM_BF16) continue;
            cm_matrix m;
            memset(&m, 0, sizeof m);
            m.type = types[i];
            m.rows = 9;
            m.cols = cols;
            uint8_t *data = random_matrix(types[i], m.rows, cols, &r, &m.row_bytes);
            m.data = data;
            check(&m, cm_type_get(types[i])->name);
            free(data);
            n++;
        }
    }
    static const uint32_t sbt[3] = {CM_F16, CM_BF16, CM_F32};
    for (uint32_t bits = 2; bits <= 8; bits++)
        for (uint32_t gs = 32; gs <= 128; gs *= 2)
            for (int k = 0; k < 3; k++) {
                cm_matrix m;
                memset(&m, 0, sizeof m);
                m.type = CM_MLX;
                m.rows = 9;
                m.cols = 384;
                m.bits = bits;
                m.group_size = gs;
                m.sb_type = sbt[k];
                m.row_bytes = m.cols * bits / 8;
                uint8_t *sc, *bi;
                uint8_t *data = random_mlx(m.rows, m.cols, bits, gs, sbt[k], &r, &sc, &bi);
                m.data = data;
                m.scales = sc;
                m.biases = bi;
                char name[48];
                snprintf(name, sizeof name, "MLX %u-bit g%u %s", bits, gs, k == 0 ? "f16" : k == 1 ? "bf16" : "f32");
                check(&m, name);
                free(data);
                free(sc);
                free(bi);
                n++;
            }
    printf("formats: %d matrices, %s\n", n, g_fail ? "FAILED" : "all equal");
    return g_fail ? 1 : 0;
}
