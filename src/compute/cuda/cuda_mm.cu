/* compute/cuda/cuda_mm.cu: matrix products of uploaded weights with activations.
 * Owns: the two product kernels and their epilogues (store, add to the residual stream, SwiGLU of
 * interleaved gate/up rows):
 *  - k_mmv, the float path: each warp a row, each lane whole 32-element chunks decoded by dq32
 *    and multiplied in FP32 with activations staged in shared memory (for decode: NT <= 4 tokens
 *    share each weight read; optionally the RMSNorm of the residual stream taken on the way in,
 *    which saves a kernel per norm). A token's sums are added in the same order whatever the other
 *    tokens of the pass, so batched and one-by-one decode agree to the bit.
 *  - k_mmq, the tensor-core path for many tokens: 128-row x 64-token tiles, weights decoded to
 *    FP16 in shared memory, activations rounded to FP16, mma.sync m16n8k16 with FP32 sums.
 * Does not own: the formats (cuda_fmt.cuh) or which path a product takes (cuda_backend.cu). */
#include "compute/cuda/cuda_fmt.cuh"

#include <math.h>

/* ---- the float path ---- */

#define MV_THREADS 256
#define MV_WARPS (MV_THREADS / 32)

/* Offset of element i in the staged activations: chunk c = i / 32 keeps its 8 float4 units
 * rotated by c, so 8 lanes reading unit u of 8 consecutive chunks hit 8 different bank groups. */
__device__ __forceinline__ int swz(int i) {
    int c = i >> 5, u = (i >> 2) & 7;
    return (c << 5) + (((u + c) & 7) << 2) + (i & 3);
}

template <int NT>
__device__ __forceinline__ void warp_sum(float *a) {
#pragma unroll
    for (int t = 0; t < NT; t++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) a[t] += __shfl_xor_sync(0xffffffffu, a[t], o);
}

template <int NT>
__device__ __forceinline__ void mv_dot(const float *wv, const float *xs, int cpad, int c, float *acc) {
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float *xc = xs + t * cpad + (c << 5);
#pragma unroll
        for (int u = 0; u < 8; u++) {
            float4 xv = *(const float4 *)(xc + (((u + c) & 7) << 2));
            acc[t] = fmaf(wv[4 * u], xv.x, acc[t]);
            acc[t] = fmaf(wv[4 * u + 1], xv.y, acc[t]);
            acc[t] = fmaf(wv[4 * u + 2], xv.z, acc[t]);
            acc[t] = fmaf(wv[4 * u + 3], xv.w, acc[t]);
        }
    }
}

/* One output row (two for PAIR) for NT tokens: lane L takes chunks L, L + 32, ... in that order,
 * then the warp sums the lanes, so the order of additions never depends on the other tokens. A
 * single row takes its chunks two at a time so that two loads are in flight per lane. */
template <int F, int NT, bool PAIR>
__device__ __forceinline__ void mv_row(const gw &w, size_t row, size_t row2, const float *xs, int cpad, int nch,
                                       int lane, float *acc, float *acc2) {
#pragma unroll
    for (int t = 0; t < NT; t++) {
        acc[t] = 0.0f;
        acc2[t] = 0.0f;
    }
    if (PAIR) {
        for (int c = lane; c < nch; c += 32) {
            float wv[32], wv2[32];
            dq32<F>(w, row, c, wv);
            dq32<F>(w, row2, c, wv2);
            mv_dot<NT>(wv, xs, cpad, c, acc);
            mv_dot<NT>(wv2, xs, cpad, c, acc2);
        }
        warp_sum<NT>(acc2);
    } else {
        for (int c = lane; c < nch; c += 64) {
            float wv[32], wv2[32];
            const int c2 = c + 32;
            dq32<F>(w, row, c, wv);
            if (c2 < nch) dq32<F>(w, row, c2, wv2);
            mv_dot<NT>(wv, xs, cpad, c, acc);
            if (c2 < nch) mv_dot<NT>(wv2, xs, cpad, c2, acc);
        }
    }
    warp_sum<NT>(acc);
}

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/* Block (rpb outputs, NT tokens from blockIdx.y * NT). Shared: NT * cpad floats. */
template <int F, int NT>
__global__ void __launch_bounds__(MV_THREADS) k_mmv(gw w, const float *__restrict__ x, int ldx,
                                                    const float *__restrict__ norm, float eps, int n,
                                                    float *__restrict__ y, int ldy, int mode, int rpb) {
    extern __shared__ float4 mv_smem[];
    float *xs = (float *)mv_smem;
    __shared__ double red[MV_WARPS];
    __shared__ float scl[NT];
    const int nch = (w.cols + 31) >> 5, cpad = nch << 5;
    const int t0 = blockIdx.y * NT, nt = min(NT, n - t0);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    if (norm) {
        /* rmsnorm as compute/cpu/attention.c: the sum of squares in double */
        for (int t = 0; t < nt; t++) {
            const float *xr = x + (size_t)(t0 + t) * ldx;
            double ss = 0;
            for (int i = tid; i < w.cols; i += MV_THREADS) ss += (double)xr[i] * (double)xr[i];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
            if (lane == 0) red[warp] = ss;
            __syncthreads();
            if (tid == 0) {
                double s = 0;
                for (int i = 0; i < MV_WARPS; i++) s += red[i];
                scl[t] = (float)(1.0 / sqrt(s / (double)w.cols + (double)eps));
            }
            __syncthreads();
        }
    }
    for (int t = 0; t < NT; t++) {
        const float *xr = x + (size_t)(t0 + t) * ldx;
        for (int i = tid; i < cpad; i += MV_THREADS) {
            float v = 0.0f;
            if (t < nt && i < w.cols) {
                v = xr[i];
                if (norm) v = __fmul_rn(__fmul_rn(v, scl[t]), norm[i]);
            }
            xs[t * cpad + swz(i)] = v;
        }
    }
    __syncthreads();
    const int n_out = mode == MM_SWIGLU ? w.rows / 2 : w.rows;
    const int r0 = blockIdx.x * rpb, r1 = min(r0 + rpb, n_out);
    for (int r = r0 + warp; r < r1; r += MV_WARPS) {
        float acc[NT], acc2[NT];
        if (mode == MM_SWIGLU) {
            size_t g = (size_t)(r >> 3) * 16 + (r & 7);
            mv_row<F, NT, true>(w, g, g + 8, xs, cpad, nch, lane, acc, acc2);
        } else {
            mv_row<F, NT, false>(w, (size_t)r, 0, xs, cpad, nch, lane, acc, acc2);
        }
        if (lane == 0) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= nt) break;
                float *yp = y + (size_t)(t0 + t) * ldy + r;
                if (mode == MM_SWIGLU) *yp = silu_mul(acc[t], acc2[t]);
                else if (mode == MM_ADD) *yp += acc[t];
                else *yp = acc[t];
            }
        }
    }
}

/* ---- the tensor-core path ---- */

#define MQ_BM 128
#define MQ_BN 64
#define MQ_BK 64
#define MQ_LD (MQ_BK + 8) /* halves per shared row: 144 bytes, so ldmatrix rows hit distinct banks */

__device__ __forceinline__ void ldsm_x4(uint32_t *r, const __half *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* FP16 keeps 11 bits; values past its range are clamped rather than made infinite. */
__device__ __forceinline__ __half2 to_h2(float a, float b) {
    a = fminf(fmaxf(a, -65504.0f), 65504.0f);
    b = fminf(fmaxf(b, -65504.0f), 65504.0f);
    return __floats2half2_rn(a, b);
}

__device__ __forceinline__ void mq_store(float *y, int ldy, int n, int rows, int mode, int row, int tok, float v) {
    if (row >= rows || tok >= n) return;
    float *p = y + (size_t)tok * ldy + row;
    if (mode == MM_ADD) *p += v;
    else *p = v;
}

/* Block: 256 threads, 8 warps as 4 (rows) x 2 (tokens), each a 32 x 32 tile of m16n8k16. */
template <int F>
__global__ void __launch_bounds__(256) k_mmq(gw w, const float *__restrict__ x, int ldx, int n, float *__restrict__ y,
                                             int ldy, int mode) {
    __shared__ __align__(16) __half Ws[MQ_BM * MQ_LD];
    __shared__ __align__(16) __half Xs[MQ_BN * MQ_LD];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp & 3, wn = warp >> 2;
    const int m0 = blockIdx.x * MQ_BM, n0 = blockIdx.y * MQ_BN;
    const int nch = w.cols >> 5;
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int k = 0; k < 4; k++) acc[i][j][k] = 0.0f;
    const int lr = tid >> 1, lc = tid & 1; /* weights: row lr, chunk lc of the tile */
    const int xt = tid >> 2, xq = tid & 3; /* activations: token xt, columns xq * 16 .. + 16 */
    for (int kc = 0; kc < nch; kc += 2) {
        {
            float v[32];
            int r = m0 + lr, c = kc + lc;
            if (r < w.rows && c < nch) {
                dq32<F>(w, (size_t)r, c, v);
            } else {
#pragma unroll
                for (int i = 0; i < 32; i++) v[i] = 0.0f;
            }
            uint4 *dst = (uint4 *)(Ws + lr * MQ_LD + lc * 32);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                __half2 h0 = to_h2(v[8 * i], v[8 * i + 1]), h1 = to_h2(v[8 * i + 2], v[8 * i + 3]);
                __half2 h2 = to_h2(v[8 * i + 4], v[8 * i + 5]), h3 = to_h2(v[8 * i + 6], v[8 * i + 7]);
                uint4 u;
                u.x = *(uint32_t *)&h0; u.y = *(uint32_t *)&h1; u.z = *(uint32_t *)&h2; u.w = *(uint32_t *)&h3;
                dst[i] = u;
            }
        }
        {
            int t = n0 + xt, col = kc * 32 + xq * 16;
            float f[16];
            if (t < n && col < w.cols) {
                const float4 *src = (const float4 *)(x + (size_t)t * ldx + col);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float4 v = src[i];
                    f[4 * i] = v.x; f[4 * i + 1] = v.y; f[4 * i + 2] = v.z; f[4 * i + 3] = v.w;
                }
            } else {
#pragma unroll
                for (int i = 0; i < 16; i++) f[i] = 0.0f;
            }
            uint4 *dst = (uint4 *)(Xs + xt * MQ_LD + xq * 16);
#pragma unroll
            for (int i = 0; i < 2; i++) {
                __half2 h0 = to_h2(f[8 * i], f[8 * i + 1]), h1 = to_h2(f[8 * i + 2], f[8 * i + 3]);
                __half2 h2 = to_h2(f[8 * i + 4], f[8 * i + 5]), h3 = to_h2(f[8 * i + 6], f[8 * i + 7]);
                uint4 u;
                u.x = *(uint32_t *)&h0; u.y = *(uint32_t *)&h1; u.z = *(uint32_t *)&h2; u.w = *(uint32_t *)&h3;
                dst[i] = u;
            }
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < MQ_BK; kk += 16) {
            uint32_t a[2][4], b[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) ldsm_x4(a[mi], Ws + (wm * 32 + mi * 16 + (lane & 15)) * MQ_LD + kk + (lane >> 4) * 8);
#pragma unroll
            for (int nj = 0; nj < 2; nj++) {
                uint32_t r[4];
                ldsm_x4(r, Xs + (wn * 32 + nj * 16 + (lane & 7) + (lane >> 4) * 8) * MQ_LD + kk + ((lane >> 3) & 1) * 8);
                b[2 * nj][0] = r[0];
                b[2 * nj][1] = r[1];
                b[2 * nj + 1][0] = r[2];
                b[2 * nj + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) mma16816(acc[mi][ni], a[mi], b[ni][0], b[ni][1]);
        }
        __syncthreads();
    }
    const int gid = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
        const int row = m0 + wm * 32 + mi * 16 + gid;
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
            const int tok = n0 + wn * 32 + ni * 8 + tig * 2;
            const float *c = acc[mi][ni];
            if (mode == MM_SWIGLU) {
                /* rows 16k..16k+7 are gate rows 8k.., rows 16k+8.. the matching up rows */
                if (row < w.rows) {
                    int p = (row >> 4) * 8 + (row & 7);
                    if (tok < n) y[(size_t)tok * ldy + p] = silu_mul(c[0], c[2]);
                    if (tok + 1 < n) y[(size_t)(tok + 1) * ldy + p] = silu_mul(c[1], c[3]);
                }
            } else {
                mq_store(y, ldy, n, w.rows, mode, row, tok, c[0]);
                mq_store(y, ldy, n, w.rows, mode, row, tok + 1, c[1]);
                mq_store(y, ldy, n, w.rows, mode, row + 8, tok, c[2]);
                mq_store(y, ldy, n, w.rows, mode, row + 8, tok + 1, c[3]);
            }
        }
    }
}

/* ---- launchers ---- */

typedef void (*mmv_fn)(gw, const float *, int, const float *, float, int, float *, int, int, int);
typedef void (*mmq_fn)(gw, const float *, int, int, float *, int, int);

struct mm_entry {
    mmv_fn v1, v2, v4;
    mmq_fn q;
};

#define MM_ENTRY(f) {k_mmv<f, 1>, k_mmv<f, 2>, k_mmv<f, 4>, k_mmq<f>},
static const mm_entry MM_TABLE[G_COUNT] = {CU_FORMATS(MM_ENTRY)};
#undef MM_ENTRY

/* Shared memory a float-path block may take: 200 KB, or less where the device allows less (H100:
 * 227 KB per block with the opt-in). A fact of the device, set once by cu_mm_init. */
static size_t g_mv_smem_max = 48 * 1024;
#define MV_SMEM_MAX g_mv_smem_max

int cu_has_mmq(int fmt) { return fmt != G_F32 && fmt != G_F16 && fmt != G_BF16; }

cudaError_t cu_mm_init(size_t smem_optin) {
    size_t lim = smem_optin > 1024 ? smem_optin - 1024 : smem_optin; /* the kernel's static shared memory */
    g_mv_smem_max = lim < 200 * 1024 ? lim : 200 * 1024;
    for (int f = 0; f < G_COUNT; f++) {
        const void *fns[4] = {(const void *)MM_TABLE[f].v1, (const void *)MM_TABLE[f].v2, (const void *)MM_TABLE[f].v4,
                              (const void *)MM_TABLE[f].q};
        for (int i = 0; i < 4; i++) {
            /* loads every kernel now: a first launch inside a graph capture would load it there */
            cudaFuncAttributes at;
            cudaError_t e = cudaFuncGetAttributes(&at, fns[i]);
            if (e == cudaSuccess && i < 3)
                e = cudaFuncSetAttribute(fns[i], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)g_mv_smem_max);
            if (e != cudaSuccess) return e;
        }
    }
    return cudaSuccess;
}

cudaError_t cu_mmv(const gw *w, const float *x, int ldx, const float *norm, float eps, int n, float *y, int ldy,
                   int mode, int n_sm, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    int cpad = (w->cols + 31) / 32 * 32;
    int nt = n >= 4 ? 4 : n >= 2 ? 2 : 1;
    while (nt > 1 && (size_t)nt * cpad * sizeof(float) > MV_SMEM_MAX) nt /= 2;
    size_t smem = (size_t)nt * cpad * sizeof(float);
    if (smem > MV_SMEM_MAX) return cudaErrorInvalidValue;
    int n_out = mode == MM_SWIGLU ? w->rows / 2 : w->rows;
    int gy = (n + nt - 1) / nt;
    /* about four blocks per multiprocessor over the whole grid, whole warps of rows */
    long target = (long)n_sm * 4 / gy;
    if (target < n_sm) target = n_sm;
    long rpb = (n_out + target - 1) / target;
    rpb = (rpb + MV_WARPS - 1) / MV_WARPS * MV_WARPS;
    if (rpb < MV_WARPS) rpb = MV_WARPS;
    dim3 grid((unsigned)((n_out + rpb - 1) / rpb), (unsigned)gy);
    const mm_entry &e = MM_TABLE[w->fmt];
    mmv_fn fn = nt == 4 ? e.v4 : nt == 2 ? e.v2 : e.v1;
    fn<<<grid, MV_THREADS, smem, st>>>(*w, x, ldx, norm, eps, n, y, ldy, mode, (int)rpb);
    return cudaGetLastError();
}

cudaError_t cu_mmq(const gw *w, const float *x, int ldx, int n, float *y, int ldy, int mode, cudaStream_t st) {
    if (n <= 0) return cudaSuccess;
    if (!cu_has_mmq(w->fmt) || w->cols % 32) return cudaErrorInvalidValue;
    dim3 grid((unsigned)((w->rows + MQ_BM - 1) / MQ_BM), (unsigned)((n + MQ_BN - 1) / MQ_BN));
    MM_TABLE[w->fmt].q<<<grid, 256, 0, st>>>(*w, x, ldx, n, y, ldy, mode);
    return cudaGetLastError();
}
