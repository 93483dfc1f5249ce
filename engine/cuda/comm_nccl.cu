/* comm_nccl.cu — comm.h's collectives over NCCL (CUDA build only).
 *
 * One communicator per rank on its own device and stream. Every call is
 * synchronous for the caller (the interface returns when the result is in
 * place): it enqueues on the rank's stream and polls until the stream is
 * done, checking ncclCommGetAsyncError and the watched local processes
 * between polls, so a peer that died turns into PL_ERR_IO (and an aborted
 * communicator) instead of a hang. The caller orders the communicator's
 * stream with its own work: model.c synchronises the backend's stream
 * before each collective on device buffers, and the collective has finished
 * when it returns.
 *
 * all_reduce_sum = ncclAllGather of the partials + a kernel that adds them in
 * rank order: every element is ((p0 + p1) + p2) + ..., whatever the message
 * size, so the results stay batch invariant and equal to the shared-memory
 * implementation's order. It receives (N-1)x more bytes than a ring
 * all-reduce; for decode-sized messages (T x hidden floats) the cost is
 * latency, not bandwidth.
 *
 * libnccl is opened at run time (dlopen), not linked: it is ~200 MB, only
 * tensor-parallel GPU runs need it, and glm-engine must still start (CPU,
 * one GPU) on machines without it. nccl.h gives the types and signatures;
 * GLM_NCCL_LIBRARY names the library file (default libnccl.so.2, found
 * through the usual loader paths). */
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <errno.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern "C" {
#include "../comm.h"
#include "pl.h"
}

/* ===== the library ===== */

static struct nccl_api {
    int loaded;
    decltype(&ncclGetVersion) GetVersion;
    decltype(&ncclGetUniqueId) GetUniqueId;
    decltype(&ncclCommInitRank) CommInitRank;
    decltype(&ncclAllGather) AllGather;
    decltype(&ncclBroadcast) Broadcast;
    decltype(&ncclCommAbort) CommAbort;
    decltype(&ncclCommDestroy) CommDestroy;
    decltype(&ncclCommGetAsyncError) CommGetAsyncError;
    decltype(&ncclGetErrorString) GetErrorString;
    int version;
} api;

static int nccl_load(char *err, size_t errlen)
{
    if (api.loaded) return 0;
    const char *name = getenv("GLM_NCCL_LIBRARY");
    void *h = dlopen(name && *name ? name : "libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h && !(name && *name)) h = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "tensor parallelism on GPUs needs NCCL: cannot load %s (%s); "
                         "install libnccl2 or set GLM_NCCL_LIBRARY to its path", name && *name ? name : "libnccl.so.2",
                         dlerror());
    struct { void **fn; const char *sym; } syms[] = {
        { (void **)&api.GetVersion, "ncclGetVersion" }, { (void **)&api.GetUniqueId, "ncclGetUniqueId" },
        { (void **)&api.CommInitRank, "ncclCommInitRank" }, { (void **)&api.AllGather, "ncclAllGather" },
        { (void **)&api.Broadcast, "ncclBroadcast" }, { (void **)&api.CommAbort, "ncclCommAbort" },
        { (void **)&api.CommDestroy, "ncclCommDestroy" }, { (void **)&api.CommGetAsyncError, "ncclCommGetAsyncError" },
        { (void **)&api.GetErrorString, "ncclGetErrorString" },
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++)
        if (!(*syms[i].fn = dlsym(h, syms[i].sym))) {
            dlclose(h);
            return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "the NCCL library has no %s (too old?)", syms[i].sym);
        }
    /* The id and the calls above are NCCL 2's ABI; 2.x reports 2xxyy. */
    if (api.GetVersion(&api.version) != ncclSuccess || api.version < 20000 || api.version >= 30000) {
        dlclose(h);
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "NCCL version %d: NCCL 2 is needed", api.version);
    }
    api.loaded = 1;
    return 0;
}

typedef struct nccl_comm {
    ncclComm_t nc;
    cudaStream_t stream;
    int device;
    double timeout_s;
    int dead;
    void *scratch;          /* device: [size, cap] bytes for gathers and host staging */
    size_t cap;             /* bytes per rank in scratch */
    pid_t watch[64];        /* local processes whose exit fails a wait */
    int n_watch;
} nccl_comm;

/* Has a watched process exited? (WNOWAIT: the owner still reaps it.) */
static int watched_exit(nccl_comm *n)
{
    for (int i = 0; i < n->n_watch; i++) {
        siginfo_t si;
        si.si_pid = 0;
        int w = waitid(P_PID, (id_t)n->watch[i], &si, WEXITED | WNOHANG | WNOWAIT);
        if ((w == 0 && si.si_pid == n->watch[i]) || (w < 0 && errno == ECHILD)) return 1;   /* exited, or reaped */
    }
    return 0;
}

/* Wait for the stream, watching NCCL's asynchronous errors, the watched
 * processes and the clock. Polls every 50 us for the first 10 ms (a decode
 * step's collectives), then every millisecond (a follower waiting for the
 * next step while the engine is idle). */
static int nc_wait(eng_comm *c)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    double t0 = pl_mono_s();
    for (int i = 0;; i++) {
        cudaError_t q = cudaStreamQuery(n->stream);
        if (q == cudaSuccess) return 0;
        if (q != cudaErrorNotReady) break;
        ncclResult_t ar = ncclSuccess;
        if (api.CommGetAsyncError(n->nc, &ar) != ncclSuccess || (ar != ncclSuccess && ar != ncclInProgress)) break;
        double t = pl_mono_s() - t0;
        if (n->timeout_s > 0 && t > n->timeout_s) break;
        if ((i & 63) == 0 && watched_exit(n)) break;
        struct timespec ts = { 0, t < 0.01 ? 50 * 1000 : 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    n->dead = 1;
    api.CommAbort(n->nc);
    return PL_ERR_IO;
}

static int is_device(const void *p)
{
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) { cudaGetLastError(); return 0; }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/* scratch = size + 1 slots of cap bytes: [size] gathered parts, then one
 * staging slot for a host buffer. Always that many slots, whichever call
 * grows it (a broadcast needs one slot, but a later all-reduce of no more
 * bytes relies on the whole layout). */
static int ensure_scratch(nccl_comm *n, int size, size_t bytes)
{
    if (bytes <= n->cap) return 0;
    if (n->scratch) cudaFree(n->scratch);
    n->scratch = NULL;
    n->cap = 0;
    if (cudaMalloc(&n->scratch, bytes * (size_t)(size + 1)) != cudaSuccess) { (void)cudaGetLastError(); return PL_ERR_NOMEM; }
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
    if (api.AllGather(dsend, drecv, bytes, ncclChar, n->nc, n->stream) != ncclSuccess) return PL_ERR_IO;
    return 0;
}

static int nc_all_reduce(eng_comm *c, float *buf, size_t count)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    size_t bytes = count * sizeof(float);
    if (n->dead) return PL_ERR_IO;
    if (!count) return 0;
    /* scratch: [size] gathered partials, plus one more slot for a host buffer's staging copy */
    if (ensure_scratch(n, c->size, bytes)) return PL_ERR_NOMEM;
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
    if (ensure_scratch(n, c->size, bytes)) return PL_ERR_NOMEM;
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
        if (ensure_scratch(n, c->size, bytes)) return PL_ERR_NOMEM;
        d = n->scratch;
        if (c->rank == root && cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, n->stream) != cudaSuccess)
            return PL_ERR_IO;
    }
    if (api.Broadcast(d, d, bytes, ncclChar, root, n->nc, n->stream) != ncclSuccess) return PL_ERR_IO;
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
    if (!n->dead) api.CommAbort(n->nc);
    n->dead = 1;
}

static void nc_free(eng_comm *c)
{
    nccl_comm *n = (nccl_comm *)c->impl;
    if (!n->dead) api.CommDestroy(n->nc);
    if (n->scratch) cudaFree(n->scratch);
    cudaStreamDestroy(n->stream);
    free(n);
    free(c);
}

static const eng_comm_ops nccl_ops = { nc_all_reduce, nc_all_gather, nc_broadcast, nc_barrier, nc_abort, nc_free };

extern "C" int eng_comm_nccl_unique_id(unsigned char id[ENG_NCCL_ID_BYTES], char *err, size_t errlen)
{
    int rc = nccl_load(err, errlen);
    if (rc) return rc;
    ncclUniqueId u;
    ncclResult_t r = api.GetUniqueId(&u);
    if (r != ncclSuccess) return pl_seterr(err, errlen, PL_ERR_IO, "ncclGetUniqueId: %s", api.GetErrorString(r));
    memcpy(id, u.internal, ENG_NCCL_ID_BYTES);
    return 0;
}

extern "C" int eng_comm_nccl_create(const unsigned char id[ENG_NCCL_ID_BYTES], int rank, int size, int device,
                                    double timeout_s, eng_comm **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = nccl_load(err, errlen);
    if (rc) return rc;
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
    ncclResult_t r = api.CommInitRank(&n->nc, size, u, rank);
    if (r != ncclSuccess) {
        cudaStreamDestroy(n->stream);
        free(c); free(n);
        return pl_seterr(err, errlen, PL_ERR_IO, "rank %d of %d: ncclCommInitRank: %s", rank, size, api.GetErrorString(r));
    }
    c->ops = &nccl_ops;
    c->rank = rank;
    c->size = size;
    c->impl = n;
    *out = c;
    return 0;
}

extern "C" void eng_comm_nccl_watch(eng_comm *c, const pid_t *pids, int n)
{
    nccl_comm *nc = (nccl_comm *)c->impl;
    nc->n_watch = 0;
    for (int i = 0; i < n && nc->n_watch < 64; i++) if (pids[i] > 0) nc->watch[nc->n_watch++] = pids[i];
}

extern "C" void eng_comm_nccl_set_timeout(eng_comm *c, double timeout_s)
{
    ((nccl_comm *)c->impl)->timeout_s = timeout_s;
}

extern "C" int eng_comm_nccl_available(char *err, size_t errlen) { return nccl_load(err, errlen); }
