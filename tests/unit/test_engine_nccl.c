/* test_engine_nccl.c — what of the NCCL communicator runs without a GPU:
 * loading libnccl at run time (engine/cuda/comm_nccl.cu opens it with
 * dlopen) and its refusal when the library is missing; making a group id
 * (ncclGetUniqueId starts NCCL's bootstrap listener, no device needed).
 * Joining a group needs a device: tests/gpu/nccl_check.c. Skipped visibly
 * in builds without NCCL (nccl_none.c's stubs), and where no libnccl is
 * found (GLM_NCCL_LIBRARY, the loader's paths, then the CUDA toolkit's). */
#include <stdlib.h>
#include <unistd.h>

#include "test.h"
#include "pl.h"
#include "../../engine/comm.h"

static int stub_build(void)
{
    char err[256];
    return eng_comm_nccl_available(err, sizeof err) && strstr(err, "built without NCCL");
}

TEST(missing_library_is_a_clear_refusal)
{
    /* First of all (the loader keeps the first library it opened), and
     * telling the stub build apart without loading anything. */
    char err[512];
    setenv("GLM_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
    CHECK_EQ_INT(eng_comm_nccl_available(err, sizeof err), PL_ERR_UNSUPPORTED);
    if (strstr(err, "built without NCCL")) {
        unsetenv("GLM_NCCL_LIBRARY");
        test_skip("this build has no NCCL communicator (no nvcc or nccl.h)");
        return;
    }
    CHECK(strstr(err, "tensor parallelism on GPUs needs NCCL: cannot load /nonexistent/libnccl.so.2"));
    unsigned char id[ENG_NCCL_ID_BYTES];
    CHECK_EQ_INT(eng_comm_nccl_unique_id(id, err, sizeof err), PL_ERR_UNSUPPORTED);
    eng_comm *c = NULL;
    CHECK_EQ_INT(eng_comm_nccl_create(id, 0, 1, 0, 1, &c, err, sizeof err), PL_ERR_UNSUPPORTED);
    CHECK(c == NULL);
    unsetenv("GLM_NCCL_LIBRARY");
}

/* The library this machine has, if any. */
static const char *find_nccl(void)
{
    static const char *paths[] = { "/usr/local/cuda/lib64/libnccl.so.2", "/usr/local/cuda/lib/libnccl.so.2",
                                   "/usr/lib/x86_64-linux-gnu/libnccl.so.2" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) if (!access(paths[i], R_OK)) return paths[i];
    return NULL;
}

TEST(library_loads_and_makes_ids)
{
    if (stub_build()) { test_skip("this build has no NCCL communicator (no nvcc or nccl.h)"); return; }
    const char *lib = find_nccl();
    if (!lib) { test_skip("no libnccl.so.2 on this machine"); return; }
    setenv("GLM_NCCL_LIBRARY", lib, 1);
    char err[512];
    int rc = eng_comm_nccl_available(err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(rc, 0);
    unsigned char a[ENG_NCCL_ID_BYTES], b[ENG_NCCL_ID_BYTES];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    rc = eng_comm_nccl_unique_id(a, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(eng_comm_nccl_unique_id(b, err, sizeof err), 0);
    unsigned char zero[ENG_NCCL_ID_BYTES] = { 0 };
    CHECK(memcmp(a, zero, sizeof a) != 0);
    CHECK(memcmp(a, b, sizeof a) != 0);      /* each id names its own bootstrap root */
    /* Joining needs a device: without one, a clear error, never a crash. */
    eng_comm *c = NULL;
    rc = eng_comm_nccl_create(a, 0, 1, 0, 1, &c, err, sizeof err);
    if (rc == 0) eng_comm_free(c);          /* a machine with a GPU: a group of one */
    else CHECK(rc == PL_ERR_IO && strstr(err, "rank 0: cudaSetDevice(0)") && c == NULL);
    unsetenv("GLM_NCCL_LIBRARY");
}

int main(void)
{
    RUN(missing_library_is_a_clear_refusal);
    RUN(library_loads_and_makes_ids);
    return test_report();
}
