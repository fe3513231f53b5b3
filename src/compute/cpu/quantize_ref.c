/* compute/cpu/quantize_ref.c: weight quantizers (compute/quantize.h), for `locallm convert`.
 * Owns: the searching K-quant quantizers (Q4_K, Q5_K, Q6_K) and MLX's affine group quantizer.
 * The legacy types (Q4_0 ... Q8_0) and the float types are cm_quantize_ref's, which already round
 * as ggml's reference quantizers do.
 * The scale searches follow llama.cpp's reference quantizers (ggml-quants.c, MIT): for Q4_K and
 * Q5_K each sub-block of 32 gets the scale and min minimizing the squared error weighted by
 * sqrt(mean x^2) + |x| over a sweep of candidate scales (make_qkx2_quants), then scales and mins
 * are quantized to 6 bits against the block's largest; Q6_K does the same for 16-element
 * sub-blocks with symmetric levels and x^2 weights (make_qx_quants, rmse_type 1) and int8
 * scales. The formats are GGML's (see quants_ref.c). */
#include "compute/quantize.h"

#include "compute/cpu/quants.h"

#include <math.h>

#define QK_K 256

static inline void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Round to nearest, ties to even (ggml's nearest_int); NaN gives 0 and huge values saturate, so
 * no float-to-int conversion is ever out of range. */
static inline int nint(float v) {
    if (!(v == v)) return 0;
    if (v > 1e6f) return 1000000;
    if (v < -1e6f) return -1000000;
    return (int)nearbyintf(v);
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Levels L[i] in [0, nmax] and (scale, -min) for x[0..n) minimizing sum w (scale L + min - x)^2
 * with min <= 0: a first guess from the range, then nstep + 1 candidate inverse scales
 * (rmin + rdelta * is + nmax) / (max - min), each followed by the least-squares scale and min
 * for its levels. Returns the scale; *neg_min gets -min (>= 0). */
static float search_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                              float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float mn = x[0], mx = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (!(mx > mn)) { /* constant (or NaN) block */
        for (int i = 0; i < n; i++) L[i] = 0;
        *neg_min = mn == mn ? -mn : 0.0f;
        return 0.0f;
    }
    float iscale = (float)nmax / (mx - mn), scale = 1.0f / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(nint(iscale * (x[i] - mn)), 0, nmax);
        float d = scale * L[i] + mn - x[i];
        best += w[i] * d * d;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (mx - mn);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nint(iscale * (x[i] - mn)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sl += w[i] * (float)l;
            sl2 += w[i] * (float)(l * l);
            sxl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sl2 - sl * sl;
        if (!(D > 0)) continue;
        float s = (sum_w * sxl - sum_x * sl) / D, m = (sl2 * sum_x - sl * sxl) / D;
        if (m > 0) {
            m = 0;
            s = sxl / sl2;
        }
        float e = 0;
        for (int i = 0; i < n; i++) {
            float d = s * Laux[i] + m - x[i];
            e += w[i] * d * d;
        }
        if (e < best) {
            for (int i = 0; i < n; i++) L[i] = Laux[i];
            best = e;
            scale = s;
            mn = m;
        }
    }
    *neg_min = -mn;
    return scale;
}

/* Q4_K and Q5_K share the sub-block search and the 12-byte scale/min packing. levels 15 or 31.
 * Fills the block's d, dmin and scales and returns each element's level in L[256]. */
static void k4_block(const float *x, uint8_t *b, int nmax, float rmin, int nstep, uint8_t *L) {
    float scales[8], mins[8], w[32], max_scale = 0, max_min = 0;
    uint8_t Laux[32];
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sx2 = 0;
        for (int l = 0; l < 32; l++) sx2 += xs[l] * xs[l];
        float av = sqrtf(sx2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
        scales[j] = search_scale_min(32, nmax, xs, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
        max_scale = fmaxf(max_scale, scales[j]);
        max_min = fmaxf(max_min, mins[j]);
    }
    float inv_s = max_scale > 0 ? 63.0f / max_scale : 0.0f, inv_m = max_min > 0 ? 63.0f / max_min : 0.0f;
    int ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = clampi(nint(inv_s * scales[j]), 0, 63);
        lm[j] = clampi(nint(inv_m * mins[j]), 0, 63);
    }
    cm_k4_pack_scales(b + 4, ls, lm);
    uint16_t hd = lm_f32_to_f16(max_scale / 63.0f), hm = lm_f32_to_f16(max_min / 63.0f);
    wr16(b, hd);
    wr16(b + 2, hm);
    float d = lm_f16_to_f32(hd), dmin = lm_f16_to_f32(hm);
    /* levels again against the quantized scales and mins */
    for (int j = 0; j < 8; j++) {
        float ds = d * (float)ls[j];
        if (ds == 0) continue;
        float dm = dmin * (float)lm[j];
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)clampi(nint((x[32 * j + l] + dm) / ds), 0, nmax);
    }
}

static void q4_k_block(const float *x, uint8_t *b) {
    uint8_t L[QK_K];
    k4_block(x, b, 15, -1.0f, 20, L);
    uint8_t *q = b + 16;
    for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static void q5_k_block(const float *x, uint8_t *b) {
    uint8_t L[QK_K];
    k4_block(x, b, 31, -0.5f, 15, L);
    uint8_t *qh = b + 16, *ql = b + 48;
    memset(qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK_K; n += 64, ql += 32, m1 = (uint8_t)(m1 << 2), m2 = (uint8_t)(m2 << 2)) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
    }
}

/* Symmetric scale for x[0..n) with levels in [-nmax, nmax - 1], weights x^2: start from
 * -nmax / (signed max), try 18 nearby inverse scales, keep the least-squares best. */
static float search_scale_sym(int n, int nmax, const float *x) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
            max = x[i];
        }
    }
    if (!(amax >= 1e-15f)) return 0.0f;
    float iscale = -(float)nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)(l * l);
    }
    float scale = suml2 > 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)(l * l);
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void q6_k_block(const float *x, uint8_t *b) {
    float scales[16], max_scale = 0, max_abs = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = search_scale_sym(16, 32, x + 16 * j);
        if (fabsf(scales[j]) > max_abs) {
            max_abs = fabsf(scales[j]);
            max_scale = scales[j];
        }
    }
    memset(b, 0, 210);
    if (!(max_abs >= 1e-15f)) return; /* all zero: d = 0 */
    float iscale = -128.0f / max_scale;
    uint16_t hd = lm_f32_to_f16(1.0f / iscale);
    wr16(b + 208, hd);
    float d = lm_f16_to_f32(hd);
    int8_t *sc = (int8_t *)(b + 192);
    uint8_t L[QK_K];
    memset(L, 32, sizeof L);
    for (int j = 0; j < 16; j++) {
        sc[j] = (int8_t)clampi(nint(iscale * scales[j]), -128, 127);
        float ds = d * (float)sc[j];
        if (ds == 0) continue;
        for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)(clampi(nint(x[16 * j + l] / ds), -32, 31) + 32);
    }
    uint8_t *ql = b, *qh = b + 128;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
            ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
            qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
    }
}

bool cm_quantize_weights(uint32_t type, const float *x, void *out, size_t n) {
    void (*fn)(const float *, uint8_t *);
    switch (type) {
    case CM_Q4_K: fn = q4_k_block; break;
    case CM_Q5_K: fn = q5_k_block; break;
    case CM_Q6_K: fn = q6_k_block; break;
    case CM_F32:
    case CM_F16:
    case CM_BF16:
    case CM_Q8_0:
    case CM_Q4_0:
    case CM_Q4_1:
    case CM_Q5_0:
    case CM_Q5_1: return cm_quantize_ref(type, x, out, n);
    default: return false;
    }
    const cm_type_info *t = cm_type_get(type);
    if (n % QK_K) return false;
    for (size_t i = 0; i < n / QK_K; i++) fn(x + i * QK_K, (uint8_t *)out + i * t->block_bytes);
    return true;
}

/* ---- MLX affine groups ---- */

/* v stored as sb_type at base[i], returning the value read back. */
static float put_sb(uint32_t sb_type, void *base, size_t i, float v) {
    uint8_t *p = base;
    if (sb_type == CM_F16) {
        uint16_t h = lm_f32_to_f16(v);
        wr16(p + 2 * i, h);
        return lm_f16_to_f32(h);
    }
    if (sb_type == CM_BF16) {
        uint16_t h = lm_f32_to_bf16(v);
        wr16(p + 2 * i, h);
        return lm_bf16_to_f32(h);
    }
    memcpy(p + 4 * i, &v, 4);
    return v;
}

void cm_mlx_quantize_row(const float *x, size_t cols, uint32_t bits, uint32_t group_size,
                         uint32_t sb_type, uint8_t *q, void *scales, void *biases) {
    const int n_bins = (1 << bits) - 1;
    memset(q, 0, cols * bits / 8);
    for (size_t g = 0; g < cols / group_size; g++) {
        const float *xg = x + g * group_size;
        float mn = xg[0], mx = xg[0];
        for (size_t k = 1; k < group_size; k++) {
            mn = fminf(mn, xg[k]);
            mx = fmaxf(mx, xg[k]);
        }
        bool neg = fabsf(mn) > fabsf(mx);
        float scale = fmaxf((mx - mn) / (float)n_bins, 1e-7f);
        if (!neg) scale = -scale;
        float edge = neg ? mn : mx;
        float q0 = nearbyintf(edge / scale);
        if (q0 != 0 && q0 == q0) scale = edge / q0;
        float bias = q0 == 0 ? 0.0f : edge;
        float s = put_sb(sb_type, scales, g, scale), b = put_sb(sb_type, biases, g, bias);
        float inv = s != 0 ? 1.0f / s : 0.0f;
        for (size_t k = 0; k < group_size; k++) {
            uint32_t v = (uint32_t)clampi(nint((xg[k] - b) * inv), 0, n_bins);
            size_t bit = (g * group_size + k) * bits;
            /* a field may straddle bytes (3, 5, 6 bits): spread it over up to two */
            uint32_t sh = (uint32_t)(bit % 8);
            q[bit / 8] |= (uint8_t)(v << sh);
            if (sh + bits > 8) q[bit / 8 + 1] |= (uint8_t)(v >> (8 - sh));
        }
    }
}
