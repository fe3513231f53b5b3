/* compute/cuda/cuda_ops.cu: the kernels of a layer other than matrix products.
 * Owns: embedding (+ the first norm + each token's RoPE sines), RMSNorm, the Q/K/V epilogue
 * (biases, q/k norms, RoPE, the KV cache write), attention and the element-wise helpers.
 * Attention works on items (cuda_int.h, cu_item): up to CU_ATT_ROWS query rows (token, head) of
 * one KV head, over key tiles of 32 positions aligned to multiples of 32 from 0 with an online
 * softmax (as compute/cpu/attention.c, so a query's numbers do not depend on which queries share
 * its block); a decode query's keys are split into ranges (flash-decoding) whose partial sums a
 * second kernel combines. Numerics follow the CPU: sums of squares in double, expf, products
 * rounded as the CPU rounds them where that is free.
 * Does not own: which items a pass has (cuda_backend.cu). */
#include "compute/cuda/cuda_fmt.cuh"

#include <math.h>

/* ---- embedding ---- */

__device__ __forceinline__ double block_sum_d(double v, double *red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    double s = 0;
    for (int i = 0; i < nw; i++) s += red[i];
    return s;
}

__device__ __forceinline__ void norm_row(const float *x, const float *w, float *y, int n, float eps, double *red) {
    double ss = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)x[i] * (double)x[i];
    ss = block_sum_d(ss, red);
    float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = __fmul_rn(__fmul_rn(x[i], scale), w[i]);
}

template <int F>
__global__ void __launch_bounds__(256) k_embed(gw emb, const int *ids, const int *pos, const int *seq_of,
                                               const cu_seq *seqs, const float *inv, const float *inv_long,
                                               const float *norm, cu_dims d, float *x, float *xb, float *cs) {
    __shared__ double red[8];
    const int t = blockIdx.x, E = d.n_embd;
    int id = ids[t];
    if (id < 0 || id >= emb.rows) id = 0; /* callers validate; never read out of bounds */
    float *xr = x + (size_t)t * E;
    const int nch = (E + 31) / 32;
    for (int c = threadIdx.x; c < nch; c += blockDim.x) {
        float v[32];
        dq32<F>(emb, (size_t)id, c, v);
#pragma unroll
        for (int j = 0; j < 32; j++)
            if (c * 32 + j < E) xr[c * 32 + j] = v[j];
    }
    __syncthreads();
    norm_row(xr, norm, xb + (size_t)t * E, E, d.eps, red);
    const int R = d.n_rot > 2 ? d.n_rot : 2;
    const float *iv = seqs[seq_of[t]].use_long && inv_long ? inv_long : inv;
    for (int i = threadIdx.x; i < d.n_rot / 2; i += blockDim.x) {
        float ang = (float)pos[t] * iv[i];
        cs[(size_t)t * R + 2 * i] = cosf(ang) * d.attn_factor;
        cs[(size_t)t * R + 2 * i + 1] = sinf(ang) * d.attn_factor;
    }
}

__global__ void k_rmsnorm(const float *x, const float *w, float *y, int n, float eps) {
    __shared__ double red[8];
    norm_row(x + (size_t)blockIdx.x * n, w, y + (size_t)blockIdx.x * n, n, eps, red);
}

/* ---- Q/K/V epilogue ---- */

/* Block (token, group of 4 heads), a warp per head: Q heads, then K heads, then V heads. */
__global__ void __launch_bounds__(128) k_qkv_post(const float *qkv, float *q, const float *cs, const int *pos,
                                                  const int *seq_of, const cu_seq *seqs, const float *bq,
                                                  const float *bk, const float *bv, const float *qn,
                                                  const float *kn, cu_dims d, int l) {
    __shared__ float hv[4][256];
    const int t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int D = d.head_dim, H = d.n_head, HKV = d.n_head_kv, Qw = H * D, KVw = HKV * D;
    const int R = d.n_rot > 2 ? d.n_rot : 2, half = d.n_rot / 2;
    const cu_seq sq = seqs[seq_of[t]];
    const int p = pos[t];
    float *v = hv[warp];
    for (int h = blockIdx.y * 4 + warp; h < H + 2 * HKV && h < (int)blockIdx.y * 4 + 4; h += 4) {
        int kind = h < H ? 0 : h < H + HKV ? 1 : 2, hh = kind == 0 ? h : kind == 1 ? h - H : h - H - HKV;
        const float *src = qkv + (size_t)t * (Qw + 2 * KVw) + (kind == 0 ? 0 : kind == 1 ? Qw : Qw + KVw) + hh * D;
        const float *bias = kind == 0 ? bq : kind == 1 ? bk : bv;
        const float *nw = kind == 0 ? qn : kind == 1 ? kn : NULL;
        for (int i = lane; i < D; i += 32) v[i] = bias ? src[i] + bias[hh * D + i] : src[i];
        __syncwarp();
        if (nw) {
            double ss = 0;
            for (int i = lane; i < D; i += 32) ss += (double)v[i] * (double)v[i];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
            float scale = (float)(1.0 / sqrt(ss / (double)D + (double)d.eps));
            for (int i = lane; i < D; i += 32) v[i] = __fmul_rn(__fmul_rn(v[i], scale), nw[i]);
            __syncwarp();
        }
        if (kind != 2) {
            const float *c = cs + (size_t)t * R;
            for (int i = lane; i < half; i += 32) {
                float co = c[2 * i], si = c[2 * i + 1];
                int a = d.interleaved ? 2 * i : i, b = d.interleaved ? 2 * i + 1 : i + half;
                float x0 = v[a], x1 = v[b];
                v[a] = __fsub_rn(__fmul_rn(x0, co), __fmul_rn(x1, si));
                v[b] = __fadd_rn(__fmul_rn(x0, si), __fmul_rn(x1, co));
            }
            __syncwarp();
        }
        if (kind == 0) {
            for (int i = lane; i < D; i += 32) q[(size_t)t * Qw + hh * D + i] = v[i];
        } else {
            size_t off = (((size_t)l * HKV + hh) * sq.n_ctx + p) * D;
            void *base = kind == 1 ? sq.k : sq.v;
            if (sq.f16)
                for (int i = lane; i < D; i += 32) ((__half *)base)[off + i] = __float2half_rn(v[i]);
            else
                for (int i = lane; i < D; i += 32) ((float *)base)[off + i] = v[i];
        }
        __syncwarp();
    }
}

/* ---- attention ---- */

#define AT_THREADS 128
#define AT_KT 32

__device__ __forceinline__ int first_key(int pos, int window) { return window && pos + 1 > window ? pos + 1 - window : 0; }

/* Shared: K tile 32 x (hd + 1) (odd stride: lane = key reads conflict-free), V tile 32 x hd, the
 * block's queries CU_ATT_ROWS x hd, each warp's probabilities 32. */
static size_t attn_smem(int hd) { return (size_t)(AT_KT * (hd + 1) + AT_KT * hd + CU_ATT_ROWS * hd + 4 * AT_KT) * sizeof(float); }

template <int DPL>
__global__ void __launch_bounds__(AT_THREADS) k_attn(const cu_item *items, const int *n_items, const cu_seq *seqs,
                                                     const float *q, float *out, float *part, cu_dims d, int l,
                                                     float scale) {
    extern __shared__ float at_smem[];
    if ((int)blockIdx.x >= *n_items) return;
    const cu_item it = items[blockIdx.x];
    if (it.nt == 0) return;
    const cu_seq sq = seqs[it.seq];
    const int ns = sq.n_splits;
    if (it.split >= ns) return;
    const int hd = d.head_dim, ldk = hd + 1, G = d.n_head / d.n_head_kv, Qw = d.n_head * hd;
    float *Ks = at_smem, *Vs = Ks + AT_KT * ldk, *Qs = Vs + AT_KT * hd, *Ps = Qs + CU_ATT_ROWS * hd;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int rows = it.nt * it.nh;
    for (int i = tid; i < rows * hd; i += AT_THREADS) {
        int r = i / hd, dd = i % hd, ti = r / it.nh, h = it.kvh * G + it.h0 + r % it.nh;
        Qs[i] = q[(size_t)(it.q_row + ti) * Qw + h * hd + dd];
    }
    int lo = first_key(it.pos0, d.window), hi = it.pos0 + it.nt;
    int slo = 0, shi = 0x7fffffff;
    if (ns > 1) {
        slo = it.split * sq.split_len;
        shi = slo + sq.split_len;
        lo = max(lo, slo);
        hi = min(hi, shi);
    }
    float m[4], ls[4], acc[4][DPL];
#pragma unroll
    for (int rr = 0; rr < 4; rr++) {
        m[rr] = -INFINITY;
        ls[rr] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[rr][i] = 0.0f;
    }
    const size_t lay = ((size_t)l * d.n_head_kv + it.kvh) * (size_t)sq.n_ctx * hd;
    __syncthreads();
    for (int j0 = lo / AT_KT * AT_KT; j0 < hi; j0 += AT_KT) {
        for (int i = tid; i < AT_KT * hd; i += AT_THREADS) {
            int kj = i / hd, dd = i % hd, key = j0 + kj;
            float kv = 0.0f, vv = 0.0f;
            if (key < hi) {
                size_t o = lay + (size_t)key * hd + dd;
                if (sq.f16) {
                    kv = __half2float(((const __half *)sq.k)[o]);
                    vv = __half2float(((const __half *)sq.v)[o]);
                } else {
                    kv = ((const float *)sq.k)[o];
                    vv = ((const float *)sq.v)[o];
                }
            }
            Ks[kj * ldk + dd] = kv;
            Vs[kj * hd + dd] = vv;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < 4; rr++) {
            const int r = warp + 4 * rr;
            if (r >= rows) break;
            const int pos = it.pos0 + r / it.nh, key = j0 + lane;
            const bool valid = key >= first_key(pos, d.window) && key <= pos && key >= slo && key < shi;
            float s = -INFINITY;
            if (valid) {
                const float *qr = Qs + r * hd, *kr = Ks + lane * ldk;
                float a = 0.0f;
                for (int dd = 0; dd < hd; dd++) a = fmaf(qr[dd], kr[dd], a);
                s = scale * a;
            }
            float mt = s;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
            if (mt == -INFINITY) continue;
            const float mn = fmaxf(m[rr], mt);
            const float corr = m[rr] == -INFINITY ? 0.0f : expf(m[rr] - mn);
            const float p = valid ? expf(s - mn) : 0.0f;
            float ps = p;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
            ls[rr] = ls[rr] * corr + ps;
#pragma unroll
            for (int i = 0; i < DPL; i++) acc[rr][i] *= corr;
            Ps[warp * AT_KT + lane] = p;
            __syncwarp();
            for (int jj = 0; jj < AT_KT; jj++) {
                const float pj = Ps[warp * AT_KT + jj];
                const float *vr = Vs + jj * hd;
#pragma unroll
                for (int i = 0; i < DPL; i++) {
                    const int dd = lane + 32 * i;
                    if (dd < hd) acc[rr][i] = fmaf(pj, vr[dd], acc[rr][i]);
                }
            }
            __syncwarp();
            m[rr] = mn;
        }
        __syncthreads();
    }
#pragma unroll
    for (int rr = 0; rr < 4; rr++) {
        const int r = warp + 4 * rr;
        if (r >= rows) break;
        const int ti = r / it.nh, h = it.kvh * G + it.h0 + r % it.nh;
        if (ns == 1) {
            const float inv = ls[rr] > 0.0f ? 1.0f / ls[rr] : 0.0f;
            float *o = out + (size_t)(it.o_row + ti) * Qw + h * hd;
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                const int dd = lane + 32 * i;
                if (dd < hd) o[dd] = acc[rr][i] * inv;
            }
        } else {
            float *pp = part + ((size_t)(sq.part + h) * CU_MAX_SPLITS + it.split) * (hd + 2);
            if (lane == 0) {
                pp[0] = m[rr];
                pp[1] = ls[rr];
            }
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                const int dd = lane + 32 * i;
                if (dd < hd) pp[2 + dd] = acc[rr][i];
            }
        }
    }
}

/* A warp per (sequence, head) row of split sequences: the partial sums weighted by exp(m - M). */
__global__ void k_attn_combine(const cu_seq *seqs, int n_seq, float *out, const float *part, cu_dims d,
                               int logits_only) {
    const int lane = threadIdx.x & 31, ri = blockIdx.x * 4 + (threadIdx.x >> 5);
    const int s = ri / d.n_head, h = ri % d.n_head, hd = d.head_dim;
    if (s >= n_seq) return;
    const cu_seq sq = seqs[s];
    const int ns = sq.n_splits, orow = logits_only ? sq.o_row_l : sq.o_row;
    if (ns <= 1 || orow < 0) return;
    const float *pp = part + (size_t)(sq.part + h) * CU_MAX_SPLITS * (hd + 2);
    float M = -INFINITY;
    for (int p = 0; p < ns; p++) M = fmaxf(M, pp[p * (hd + 2)]);
    float L = 0.0f;
    for (int p = 0; p < ns; p++) {
        float mp = pp[p * (hd + 2)];
        if (mp != -INFINITY) L += pp[p * (hd + 2) + 1] * expf(mp - M);
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    float *o = out + (size_t)orow * d.n_head * hd + h * hd;
    for (int dd = lane; dd < hd; dd += 32) {
        float a = 0.0f;
        for (int p = 0; p < ns; p++) {
            float mp = pp[p * (hd + 2)];
            if (mp != -INFINITY) a += pp[p * (hd + 2) + 2 + dd] * expf(mp - M);
        }
        o[dd] = a * inv;
    }
}

/* ---- element-wise ---- */

__global__ void k_gather(float *dst, const float *src, const int *map, int n, int width) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n * width; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = src[(size_t)map[i / width] * width + i % width];
}

__global__ void k_swiglu(float *h, const float *g, const float *u, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = g[i];
        h[i] = x / (1.0f + expf(-x)) * u[i];
    }
}

/* ---- launchers ---- */

typedef void (*embed_fn)(gw, const int *, const int *, const int *, const cu_seq *, const float *, const float *,
                         const float *, cu_dims, float *, float *, float *);
#define EMBED_ENTRY(f) k_embed<f>,
static const embed_fn EMBED_TABLE[G_COUNT] = {CU_FORMATS(EMBED_ENTRY)};
#undef EMBED_ENTRY

cudaError_t cu_embed(const gw *emb, const int *ids, const int *pos, const int *seq_of, const cu_seq *seqs,
                     const float *inv, const float *inv_long, const float *norm, cu_dims d, int n, float *x,
                     float *xb, float *cs, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    EMBED_TABLE[emb->fmt]<<<n, 256, 0, st>>>(*emb, ids, pos, seq_of, seqs, inv, inv_long, norm, d, x, xb, cs);
    return cudaGetLastError();
}

cudaError_t cu_rmsnorm(const float *x, const float *norm, float *xb, int n, int width, float eps, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    k_rmsnorm<<<n, 256, 0, st>>>(x, norm, xb, width, eps);
    return cudaGetLastError();
}

cudaError_t cu_qkv_post(const float *qkv, float *q, const float *cs, const int *pos, const int *seq_of,
                        const cu_seq *seqs, const float *bq, const float *bk, const float *bv, const float *qn,
                        const float *kn, cu_dims d, int l, int n, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    dim3 grid((unsigned)n, (unsigned)((d.n_head + 2 * d.n_head_kv + 3) / 4));
    k_qkv_post<<<grid, 128, 0, st>>>(qkv, q, cs, pos, seq_of, seqs, bq, bk, bv, qn, kn, d, l);
    return cudaGetLastError();
}

typedef void (*attn_fn)(const cu_item *, const int *, const cu_seq *, const float *, float *, float *, cu_dims, int,
                        float);

static attn_fn attn_pick(int hd) {
    if (hd <= 32) return k_attn<1>;
    if (hd <= 64) return k_attn<2>;
    if (hd <= 96) return k_attn<3>;
    if (hd <= 128) return k_attn<4>;
    return k_attn<8>;
}

cudaError_t cu_ops_init(int head_dim) {
    /* loads every kernel now: a first launch inside a graph capture would load it there */
    const void *fns[] = {(const void *)k_attn<1>, (const void *)k_attn<2>, (const void *)k_attn<3>,
                         (const void *)k_attn<4>, (const void *)k_attn<8>, (const void *)k_attn_combine,
                         (const void *)k_rmsnorm, (const void *)k_qkv_post, (const void *)k_gather,
                         (const void *)k_swiglu};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        cudaFuncAttributes at;
        cudaError_t e = cudaFuncGetAttributes(&at, fns[i]);
        if (e != cudaSuccess) return e;
    }
    for (int f = 0; f < G_COUNT; f++) {
        cudaFuncAttributes at;
        cudaError_t e = cudaFuncGetAttributes(&at, (const void *)EMBED_TABLE[f]);
        if (e != cudaSuccess) return e;
    }
    size_t smem = attn_smem(head_dim);
    if (smem <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute((const void *)attn_pick(head_dim), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem);
}

cudaError_t cu_attention(const cu_item *items, const int *n_items, int grid, const cu_seq *seqs, int n_seq,
                         const float *q, float *out, float *part, cu_dims d, int l, int logits_only,
                         cudaStream_t st) {
    if (grid <= 0) return cudaSuccess;
    float scale = 1.0f / sqrtf((float)d.head_dim);
    attn_pick(d.head_dim)<<<grid, AT_THREADS, attn_smem(d.head_dim), st>>>(items, n_items, seqs, q, out, part, d, l,
                                                                         scale);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess || n_seq <= 0) return e;
    int rows = n_seq * d.n_head;
    k_attn_combine<<<(rows + 3) / 4, 128, 0, st>>>(seqs, n_seq, out, part, d, logits_only);
    return cudaGetLastError();
}

cudaError_t cu_gather(float *dst, const float *src, const int *map, int n, int width, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    size_t total = (size_t)n * width;
    int blocks = (int)((total + 255) / 256);
    if (blocks > 1024) blocks = 1024;
    k_gather<<<blocks, 256, 0, st>>>(dst, src, map, n, width);
    return cudaGetLastError();
}

cudaError_t cu_copy_rows(float *dst, const float *src, int n, int width, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    return cudaMemcpyAsync(dst, src, (size_t)n * width * sizeof(float), cudaMemcpyDeviceToDevice, st);
}

cudaError_t cu_swiglu(float *h, const float *g, const float *u, size_t n, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    size_t blocks = (n + 255) / 256;
    if (blocks > 4096) blocks = 4096;
    k_swiglu<<<(unsigned)blocks, 256, 0, st>>>(h, g, u, n);
    return cudaGetLastError();
}
