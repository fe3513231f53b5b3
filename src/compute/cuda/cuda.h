/* compute/cuda/cuda.h: hooks of the CUDA backend for its tests and benchmarks (tests/cuda/), in
 * C. The backend itself is reached through compute/backend.h (cm_backend_device_new); nothing in
 * the library includes this header.
 * Owns: running one matrix product on either path, switching CUDA graphs off, the device memory
 * the backend holds, and the device-to-device copy bandwidth of the card. */
#ifndef LM_COMPUTE_CUDA_H
#define LM_COMPUTE_CUDA_H

#include "compute/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Y (n, rows) = X (n, cols) . W^T for a host matrix w (as a model binds it), on the device of be
 * (a CUDA backend): path 0 the float path (FP32, at most four tokens per weight read), 1 the
 * tensor-core path (FP16 operands). The matrix is uploaded for the call and freed after.
 * LM_ERR_UNSUPPORTED when the format has no such path. */
lm_status cm_cuda_matmul(const cm_backend *be, const cm_matrix *w, const float *x, size_t n, float *y, int path,
                         lm_error *err);
/* Passes of c that are decode steps (every sequence one token) are captured as CUDA graphs and
 * replayed (the default), or run kernel by kernel. */
void cm_cuda_set_graphs(cm_ctx *c, bool on);
/* Device bytes the backend holds now: weights (every model prepared on it), compute contexts and
 * KV caches. */
void cm_cuda_mem(const cm_backend *be, size_t *weights, size_t *ctx, size_t *kv);
/* Starts or stops the profiler's collection (ncu --profile-from-start off). */
void cm_cuda_profiler(bool on);
/* Takes device memory until about leave_free bytes are free (for out-of-memory tests); *hold is
 * given back with cm_cuda_unhold. */
lm_status cm_cuda_hold(const cm_backend *be, size_t leave_free, void **hold, lm_error *err);
void cm_cuda_unhold(const cm_backend *be, void *hold);
/* A device-to-device copy of bytes, timed: GB/s counting bytes read and written (median of 10). */
lm_status cm_cuda_copy_bandwidth(const cm_backend *be, size_t bytes, double *gbs, lm_error *err);

#ifdef __cplusplus
}
#endif

#endif /* LM_COMPUTE_CUDA_H */
