/* nccl_check.c — the NCCL communicator on a GPU machine (make nccl-check
 * builds it, make nccl-run and tests/gpu/gpu_check.sh run it; it needs a
 * CUDA device and libnccl, so it is not part of make test).
 *
 * One card: a group of one rank through NCCL. The collectives give back
 * what they were given (device and host buffers); the tiny model run
 * through the NCCL communicator equals the plain path bit for bit, on the
 * CPU backend (host activations staged through the device) and on the CUDA
 * backend (device activations: glm-engine's --backend cuda -tp path: the
 * shard's weights uploaded, collectives on device buffers after the
 * backend's stream is synchronised). With GLM_NCCL_RANKS=N (N cards) N-1
 * processes are forked before this process touches CUDA (a forked child
 * cannot use its parent's CUDA state), get the id over a pipe, and the
 * CUDA backend's logits at TP = N are compared with the plain path's
 * (1e-4 relative). Prints "N passed, N failed, N skipped"; exit 2 when
 * there is no device or no libnccl (nothing checked). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../engine/comm.h"
#include "../../engine/model.h"
#include "../../tools/mkmodel/mkmodel.h"

static int g_pass, g_fail;
#define EXPECT(c, what) do { if (c) { g_pass++; printf("ok   %s\n", what); } \
                             else { g_fail++; printf("FAIL %s\n", what); } fflush(stdout); } while (0)

#define PROMPT 16
#define VOCAB  1024     /* the tiny preset's */

/* Logits of every prompt row; comm may be NULL (plain path). */
static int run_model(const char *dir, int backend, int device, eng_comm *comm, float *out)
{
    char err[512];
    eng_model *m;
    eng_model_opts o = { .n_threads = 2, .backend = backend, .device = device, .max_batch_tokens = 64,
                         .max_model_len = 128, .load = { .quiet = 1 }, .comm = comm };
    if (eng_model_open(dir, &o, &m, err, sizeof err)) { fprintf(stderr, "open: %s\n", err); return -1; }
    const eng_config *c = eng_model_config(m);
    eng_kv_pool *kv;
    int rc = eng_kv_pool_create(eng_model_backend(m), c, ENG_CACHE_F32, 8, 16, &kv, err, sizeof err);
    int32_t ids[PROMPT], bt[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
    for (int i = 0; i < PROMPT; i++) ids[i] = (i * 97 + 11) % 900;
    eng_seq s = { ids, PROMPT, 0, bt, 8, ENG_LOGITS_ALL };
    if (!rc && comm && eng_comm_rank(comm) > 0) rc = eng_model_follow(m, err, sizeof err);
    else if (!rc) rc = eng_model_forward(m, kv, &s, 1, out, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "step: %s\n", err);
    eng_kv_pool_free(kv);
    eng_model_close(m);
    return rc;
}

static void collectives_one_rank(eng_comm *c)
{
    float h[1000], *d;
    for (int i = 0; i < 1000; i++) h[i] = (float)i * 0.5f;
    EXPECT(eng_comm_all_reduce_sum(c, h, 1000) == 0 && h[999] == 499.5f, "host all-reduce over one rank");
    cudaMalloc((void **)&d, sizeof h);
    cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice);
    float back[1000];
    EXPECT(eng_comm_all_reduce_sum(c, d, 1000) == 0, "device all-reduce");
    cudaMemcpy(back, d, sizeof back, cudaMemcpyDeviceToHost);
    EXPECT(!memcmp(back, h, sizeof h), "device all-reduce over one rank is the identity");
    unsigned char g[64];
    EXPECT(eng_comm_all_gather(c, "0123456789", 10, g) == 0 && !memcmp(g, "0123456789", 10), "all-gather");
    char msg[32] = "step metadata";
    EXPECT(eng_comm_broadcast(c, msg, sizeof msg, 0) == 0 && !strcmp(msg, "step metadata"), "broadcast");
    EXPECT(eng_comm_barrier(c) == 0, "barrier");
    cudaFree(d);
}

static double rel_diff(const float *a, const float *ref, size_t n)
{
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - ref[i]));
        mr = fmax(mr, fabs((double)ref[i]));
    }
    return mr > 0 ? md / mr : md;
}

/* Rank r of n (r >= 1), forked before the parent touched CUDA. */
static int follower(const char *dir, int r, int n, int fd)
{
    unsigned char id[ENG_NCCL_ID_BYTES];
    size_t got = 0;
    while (got < sizeof id) {
        ssize_t k = read(fd, id + got, sizeof id - got);
        if (k <= 0) return 3;       /* the parent gave up */
        got += (size_t)k;
    }
    char err[512];
    eng_comm *c;
    if (eng_comm_nccl_create(id, r, n, r, 120, &c, err, sizeof err)) { fprintf(stderr, "rank %d: %s\n", r, err); return 1; }
    int rc = run_model(dir, ENG_BE_CUDA, r, c, NULL);
    eng_comm_free(c);
    return rc ? 1 : 0;
}

int main(void)
{
    char err[512], dir[] = "/tmp/glm-nccl-check-XXXXXX";
    const char *ns = getenv("GLM_NCCL_RANKS");
    int N = ns ? atoi(ns) : 0;
    if (N > 64) N = 64;
    eng_mk_opts mo = { .preset = "tiny", .out_dir = mkdtemp(dir), .seed = 1, .mtp = 1, .quiet = 1 };
    if (!mo.out_dir || eng_mk_write(&mo, err, sizeof err)) { fprintf(stderr, "mkmodel: %s\n", err); return 1; }
    /* The TP = N ranks first: no CUDA call has been made in this process yet. */
    int wfd[64];
    pid_t kids[64];
    fflush(NULL);
    for (int r = 1; r < N; r++) {
        int pp[2];
        if (pipe(pp)) return 1;
        if ((kids[r] = fork()) == 0) {
            close(pp[1]);
            for (int q = 1; q < r; q++) close(wfd[q]);
            _exit(follower(dir, r, N, pp[0]));
        }
        close(pp[0]);
        wfd[r] = pp[1];
    }
    int dev = 0;
    if (cudaGetDeviceCount(&dev) != cudaSuccess || dev < 1) {
        printf("no CUDA device: nothing checked\n");
        return 2;
    }
    if (eng_comm_nccl_available(err, sizeof err)) {
        printf("NCCL unavailable: %s\nnothing checked\n", err);
        return 2;
    }
    size_t n = (size_t)PROMPT * VOCAB;
    float *cpu = calloc(n, sizeof(float)), *cuda = calloc(n, sizeof(float)), *got = calloc(n, sizeof(float));
    EXPECT(run_model(dir, ENG_BE_CPU, 0, NULL, cpu) == 0, "plain path, cpu backend");
    EXPECT(run_model(dir, ENG_BE_CUDA, 0, NULL, cuda) == 0, "plain path, cuda backend");
    printf("cuda vs cpu backend (plain): max |d| / max |ref| = %.2e\n", rel_diff(cuda, cpu, n));

    unsigned char id[ENG_NCCL_ID_BYTES];
    eng_comm *c = NULL;
    EXPECT(eng_comm_nccl_unique_id(id, err, sizeof err) == 0, "ncclGetUniqueId");
    EXPECT(eng_comm_nccl_create(id, 0, 1, 0, 60, &c, err, sizeof err) == 0, "ncclCommInitRank, one rank");
    if (c) {
        collectives_one_rank(c);
        EXPECT(run_model(dir, ENG_BE_CPU, 0, c, got) == 0, "cpu backend through NCCL, TP = 1");
        EXPECT(!memcmp(cpu, got, n * sizeof(float)), "cpu backend: TP = 1 through NCCL equals the plain path bit for bit");
        memset(got, 0, n * sizeof(float));
        EXPECT(run_model(dir, ENG_BE_CUDA, 0, c, got) == 0, "cuda backend through NCCL, TP = 1");
        EXPECT(!memcmp(cuda, got, n * sizeof(float)), "cuda backend: TP = 1 through NCCL equals the plain path bit for bit");
        printf("cuda backend, TP = 1 through NCCL vs plain: max |d| / max |ref| = %.2e\n", rel_diff(got, cuda, n));
        eng_comm_free(c);
    }

    if (N > 1) {
        int ok = N <= dev && eng_comm_nccl_unique_id(id, err, sizeof err) == 0;
        if (N > dev) printf("GLM_NCCL_RANKS=%d but %d devices\n", N, dev);
        for (int r = 1; r < N; r++) {
            if (ok && write(wfd[r], id, sizeof id) != (ssize_t)sizeof id) ok = 0;
            close(wfd[r]);
        }
        c = NULL;
        EXPECT(ok && eng_comm_nccl_create(id, 0, N, 0, 120, &c, err, sizeof err) == 0, "ncclCommInitRank, N ranks");
        if (c) {
            memset(got, 0, n * sizeof(float));
            EXPECT(run_model(dir, ENG_BE_CUDA, 0, c, got) == 0, "cuda backend through NCCL, TP = N");
            double d = rel_diff(got, cuda, n);
            printf("cuda backend, TP = %d through NCCL vs TP = 1: max |d| / max |ref| = %.2e\n", N, d);
            EXPECT(d <= 1e-4, "TP = N through NCCL within 1e-4 of TP = 1");
            eng_comm_free(c);
        }
        for (int r = 1; r < N; r++) {
            int st;
            waitpid(kids[r], &st, 0);
            EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "follower rank");
        }
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    free(cpu);
    free(cuda);
    free(got);
    printf("%d passed, %d failed, 0 skipped\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
