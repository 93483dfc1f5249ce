/* nccl_none.c — the NCCL communicator's entry points in a build without it
 * (no nvcc, or no nccl.h beside it; the Makefile compiles this file instead
 * of comm_nccl.cu): GPU tensor parallelism is unavailable, and says so. */
#include "../comm.h"
#include "pl.h"

static int none(char *err, size_t errlen)
{
    return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "this glm-engine was built without NCCL (no nvcc or nccl.h at "
                     "build time)");
}

int eng_comm_nccl_available(char *err, size_t errlen) { return none(err, errlen); }

int eng_comm_nccl_unique_id(unsigned char id[ENG_NCCL_ID_BYTES], char *err, size_t errlen)
{
    (void)id;
    return none(err, errlen);
}

int eng_comm_nccl_create(const unsigned char id[ENG_NCCL_ID_BYTES], int rank, int size, int device, double timeout_s,
                         eng_comm **out, char *err, size_t errlen)
{
    (void)id; (void)rank; (void)size; (void)device; (void)timeout_s;
    *out = NULL;
    return none(err, errlen);
}

/* Unreachable without a communicator; defined so that callers link. */
void eng_comm_nccl_watch(eng_comm *c, const pid_t *pids, int n) { (void)c; (void)pids; (void)n; }
void eng_comm_nccl_set_timeout(eng_comm *c, double timeout_s) { (void)c; (void)timeout_s; }
