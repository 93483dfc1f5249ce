/* none.c — the CUDA entry points of a build without nvcc (the Makefile
 * compiles this file instead of the .cu files there): no device, ever. */
#include "../dev.h"

int eng_cuda_count(void) { return 0; }

int eng_cuda_open(int device, const eng_dev_ops **ops, eng_dev **out, char *err, size_t errlen)
{
    (void)device;
    *ops = NULL;
    *out = NULL;
    return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "this glm-engine was built without CUDA (no nvcc at build time)");
}
