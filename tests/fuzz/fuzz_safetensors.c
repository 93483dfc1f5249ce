/* libFuzzer target: the safetensors header parser (engine/loader.h). Every
 * tensor it reports must lie inside the file. */
#include <assert.h>
#include <stdint.h>

#include "engine/loader.h"

static int visit(void *ctx, const char *name, enum eng_dtype dt, const char *dtname, int ndim, const int64_t *shape,
                 uint64_t begin, uint64_t end)
{
    (void)name; (void)dt; (void)dtname; (void)shape;
    uint64_t size = *(const uint64_t *)ctx;
    assert(begin <= end && end <= size && ndim >= 0 && ndim <= ENG_ST_MAX_DIM);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    uint64_t n = size;
    eng_safetensors_parse(data, n, "fuzz.safetensors", visit, &n, err, sizeof err);
    return 0;
}
