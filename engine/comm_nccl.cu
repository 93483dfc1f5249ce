/* comm_nccl.cu — comm.h's collectives over NCCL (CUDA build only).
 *
 * One communicator per rank on its own device and stream. Every call is
 * synchronous for the caller (the interface returns when the result is in
 * place): it enqueues on the rank's stream and polls until the stream is
 * done, checking ncclCommGetAsyncError between polls, so a peer that died
 * turns into PL_ERR_IO (and an aborted communicator) instead of a hang.
 *
 * all_reduce_sum = ncclAllGather of the partials + a kernel that adds them in
 * rank order: every element is ((p0 + p1) + p2) + ..., whatever the message
 * size, so the results stay batch invariant and equal to the shared-memory
 * implementation's order. It receives (N-1)x more bytes than a ring
 * all-reduce; for decode-sized messages (T x hidden floats) the cost is
 * latency, not bandwidth. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern "C" {
#include "comm.h"
#include "pl.h"
}

typedef struct nccl_comm {
    ncclComm_t nc;
    cudaStream_t stream;
    int device;
    double timeout_s;
    int dead;
    void *scratch;          /* device: [size, cap] bytes for gathers and host staging */
    size_t cap;             /* bytes per rank in scratch */
} nccl_comm;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Wait for the stream, watching NCCL's asynchronous errors and the clock. */
static int nc_wait(eng_comm *c)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    double t0 = now_s();
    for (;;) {
        cudaError_t q = cudaStreamQuery(n->stream);
        if (q == cudaSuccess) return 0;
        if (q != cudaErrorNotReady) break;
        ncclResult_t ar = ncclSuccess;
        if (ncclCommGetAsyncError(n->nc, &ar) != ncclSuccess || (ar != ncclSuccess && ar != ncclInProgress)) break;
        if (n->timeout_s > 0 && now_s() - t0 > n->timeout_s) break;
        struct timespec ts = { 0, 50 * 1000 };
        nanosleep(&ts, NULL);
    }
    n->dead = 1;
    ncclCommAbort(n->nc);
    return PL_ERR_IO;
}

static int is_device(const void *p)
{
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) { cudaGetLastError(); return 0; }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

static int ensure_scratch(nccl_comm *n, int size, size_t bytes)
{
    if (bytes <= n->cap) return 0;
    if (n->scratch) cudaFree(n->scratch);
    n->scratch = NULL;
    n->cap = 0;
    if (cudaMalloc(&n->scratch, bytes * (size_t)size) != cudaSuccess) return PL_ERR_NOMEM;
    n->cap = bytes;
    return 0;
}

/* out[i] = ((parts[0][i] + parts[1][i]) + ...) */
__global__ static void sum_rank_order(const float *parts, size_t n, int size, float *out)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float s = parts[i];
        for (int r = 1; r < size; r++) s += parts[(size_t)r * n + i];
        out[i] = s;
    }
}

static int nc_gather_dev(eng_comm *c, const void *dsend, size_t bytes, void *drecv)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (ncclAllGather(dsend, drecv, bytes, ncclChar, n->nc, n->stream) != ncclSuccess) return PL_ERR_IO;
    return 0;
}

static int nc_all_reduce(eng_comm *c, float *buf, size_t count)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    size_t bytes = count * sizeof(float);
    if (n->dead) return PL_ERR_IO;
    if (!count) return 0;
    /* scratch: [size] gathered partials, plus one more slot for a host buffer's staging copy */
    if (ensure_scratch(n, c->size + 1, bytes)) return PL_ERR_NOMEM;
    char *parts = (char *)n->scratch, *stage = parts + (size_t)c->size * n->cap;
    int dev = is_device(buf);
    float *dbuf = dev ? buf : (float *)stage;
    if (!dev && cudaMemcpyAsync(dbuf, buf, bytes, cudaMemcpyHostToDevice, n->stream) != cudaSuccess) return PL_ERR_IO;
    /* gather into [size][count]: ncclAllGather packs rank r's bytes at r * bytes */
    if (nc_gather_dev(c, dbuf, bytes, parts)) return PL_ERR_IO;
    int threads = 256, blocks = (int)((count + threads - 1) / threads);
    if (blocks > 1024) blocks = 1024;
    sum_rank_order<<<blocks, threads, 0, n->stream>>>((const float *)parts, count, c->size, dbuf);
    if (!dev && cudaMemcpyAsync(buf, dbuf, bytes, cudaMemcpyDeviceToHost, n->stream) != cudaSuccess) return PL_ERR_IO;
    return nc_wait(c);
}

static int nc_all_gather(eng_comm *c, const void *send, size_t bytes, void *recv)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (n->dead) return PL_ERR_IO;
    if (!bytes) return 0;
    int dev = is_device(send) && is_device(recv);
    if (dev) {
        if (nc_gather_dev(c, send, bytes, recv)) return PL_ERR_IO;
        return nc_wait(c);
    }
    if (ensure_scratch(n, c->size + 1, bytes)) return PL_ERR_NOMEM;
    char *parts = (char *)n->scratch, *stage = parts + (size_t)c->size * n->cap;
    if (cudaMemcpyAsync(stage, send, bytes, cudaMemcpyDefault, n->stream) != cudaSuccess) return PL_ERR_IO;
    if (nc_gather_dev(c, stage, bytes, parts)) return PL_ERR_IO;
    if (cudaMemcpyAsync(recv, parts, bytes * (size_t)c->size, cudaMemcpyDefault, n->stream) != cudaSuccess)
        return PL_ERR_IO;
    return nc_wait(c);
}

static int nc_broadcast(eng_comm *c, void *buf, size_t bytes, int root)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (n->dead) return PL_ERR_IO;
    if (root < 0 || root >= c->size) return PL_ERR_RANGE;
    if (!bytes) return 0;
    int dev = is_device(buf);
    void *d = buf;
    if (!dev) {
        if (ensure_scratch(n, 1, bytes)) return PL_ERR_NOMEM;
        d = n->scratch;
        if (c->rank == root && cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, n->stream) != cudaSuccess)
            return PL_ERR_IO;
    }
    if (ncclBroadcast(d, d, bytes, ncclChar, root, n->nc, n->stream) != ncclSuccess) return PL_ERR_IO;
    if (!dev && cudaMemcpyAsync(buf, d, bytes, cudaMemcpyDeviceToHost, n->stream) != cudaSuccess) return PL_ERR_IO;
    return nc_wait(c);
}

static int nc_barrier(eng_comm *c)
{
    float one = 1.0f;
    return nc_all_reduce(c, &one, 1);
}

static void nc_abort(eng_comm *c)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (!n->dead) ncclCommAbort(n->nc);
    n->dead = 1;
}

static void nc_free(eng_comm *c)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (!n->dead) ncclCommDestroy(n->nc);
    if (n->scratch) cudaFree(n->scratch);
    cudaStreamDestroy(n->stream);
    free(n);
    free(c);
}

static const eng_comm_ops nccl_ops = { nc_all_reduce, nc_all_gather, nc_broadcast, nc_barrier, nc_abort, nc_free };

extern "C" int eng_comm_nccl_unique_id(unsigned char id[ENG_NCCL_ID_BYTES], char *err, size_t errlen)
{
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) return pl_seterr(err, errlen, PL_ERR_IO, "ncclGetUniqueId: %s", ncclGetErrorString(r));
    memcpy(id, u.internal, ENG_NCCL_ID_BYTES);
    return 0;
}

extern "C" int eng_comm_nccl_create(const unsigned char id[ENG_NCCL_ID_BYTES], int rank, int size, int device,
                                    double timeout_s, eng_comm **out, char *err, size_t errlen)
{
    *out = NULL;
    cudaError_t ce = cudaSetDevice(device);
    if (ce != cudaSuccess)
        return pl_seterr(err, errlen, PL_ERR_IO, "rank %d: cudaSetDevice(%d): %s", rank, device, cudaGetErrorString(ce));
    eng_comm *c = (eng_comm *)calloc(1, sizeof *c);
    nccl_comm *n = (nccl_comm *)calloc(1, sizeof *n);
    if (!c || !n) { free(c); free(n); return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory"); }
    n->device = device;
    n->timeout_s = timeout_s;
    if ((ce = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        free(c); free(n);
        return pl_seterr(err, errlen, PL_ERR_IO, "rank %d: cudaStreamCreate: %s", rank, cudaGetErrorString(ce));
    }
    ncclUniqueId u;
    memcpy(u.internal, id, ENG_NCCL_ID_BYTES);
    ncclResult_t r = ncclCommInitRank(&n->nc, size, u, rank);
    if (r != ncclSuccess) {
        cudaStreamDestroy(n->stream);
        free(c); free(n);
        return pl_seterr(err, errlen, PL_ERR_IO, "rank %d of %d: ncclCommInitRank: %s", rank, size, ncclGetErrorString(r));
    }
    c->ops = &nccl_ops;
    c->rank = rank;
    c->size = size;
    c->impl = n;
    *out = c;
    return 0;
}
