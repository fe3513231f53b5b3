/* compute/backend.c: choosing a backend by device name, and freeing one.
 * Owns: the device names ("cpu", "cuda", "cuda:N") and what a build without a device backend
 * answers for them. Does not own: any backend's operations (compute/cpu/, compute/cuda/). */
#include "compute/backend.h"

#include <stdlib.h>

#ifdef LM_HAVE_CUDA
/* compute/cuda/cuda_backend.cu */
lm_status cm_backend_cuda_new(int device, cm_backend **out, lm_error *err);
#endif

lm_status cm_backend_device_new(const char *device, cm_backend **out, lm_error *err) {
    *out = NULL;
    if (!device || strncmp(device, "cuda", 4) != 0 || (device[4] != 0 && device[4] != ':'))
        return lm_fail(err, LM_ERR_MISUSE, "unknown device '%s' (expected auto, cpu, cuda or cuda:N)",
                       device ? device : "(null)");
    long idx = 0;
    if (device[4] == ':') {
        char *end = NULL;
        idx = strtol(device + 5, &end, 10);
        if (end == device + 5 || *end || idx < 0 || idx > 255)
            return lm_fail(err, LM_ERR_MISUSE, "device '%s': expected cuda:N with N a GPU index", device);
    }
#ifdef LM_HAVE_CUDA
    return cm_backend_cuda_new((int)idx, out, err);
#else
    return lm_fail(err, LM_ERR_UNSUPPORTED, "device '%s': this build has no CUDA backend (build with make CUDA=1)",
                   device);
#endif
}

void cm_backend_free(cm_backend *be) {
    if (be) be->ops->free(be);
}
