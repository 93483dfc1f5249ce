/* nccl_check.c — the NCCL communicator on a GPU machine (make nccl-check
 * builds it, make nccl-run runs it; it needs a CUDA device, so it is not
 * part of make test).
 *
 * One card: a group of one rank through NCCL. The collectives give back
 * what they were given (device and host buffers), and the tiny model (CPU
 * backend, host activations staged through the device) run through the
 * NCCL communicator equals the plain path bit for bit. With GLM_NCCL_RANKS=N
 * (N cards, N processes forked here, the id passed over a pipe) the model's
 * logits at TP = N are compared with TP = 1 (1e-4 relative). Prints
 * "N passed, N failed". */
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
#define EXPECT(c, what) do { if (c) g_pass++; else { g_fail++; fprintf(stderr, "FAIL %s\n", what); } } while (0)

#define PROMPT 16

/* Logits of every prompt row; comm may be NULL (plain path). */
static int run_model(const char *dir, eng_comm *comm, float *out)
{
    char err[512];
    eng_model *m;
    eng_model_opts o = { .n_threads = 2, .max_batch_tokens = 64, .max_model_len = 128, .load = { .quiet = 1 }, .comm = comm };
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

int main(void)
{
    char err[512], dir[] = "/tmp/glm-nccl-check-XXXXXX";
    int dev = 0;
    if (cudaGetDeviceCount(&dev) != cudaSuccess || dev < 1) {
        printf("no CUDA device: nothing checked\n0 passed, 1 failed\n");
        return 1;
    }
    eng_mk_opts mo = { .preset = "tiny", .out_dir = mkdtemp(dir), .seed = 1, .mtp = 1, .quiet = 1 };
    if (!mo.out_dir || eng_mk_write(&mo, err, sizeof err)) { fprintf(stderr, "mkmodel: %s\n", err); return 1; }
    size_t V = 1024;
    float *plain = calloc(PROMPT * V, sizeof(float)), *got = calloc(PROMPT * V, sizeof(float));
    EXPECT(run_model(dir, NULL, plain) == 0, "plain path");

    unsigned char id[ENG_NCCL_ID_BYTES];
    eng_comm *c = NULL;
    EXPECT(eng_comm_nccl_unique_id(id, err, sizeof err) == 0, "ncclGetUniqueId");
    EXPECT(eng_comm_nccl_create(id, 0, 1, 0, 60, &c, err, sizeof err) == 0, "ncclCommInitRank, one rank");
    if (c) {
        collectives_one_rank(c);
        EXPECT(run_model(dir, c, got) == 0, "model through NCCL, TP = 1");
        EXPECT(!memcmp(plain, got, PROMPT * V * sizeof(float)), "TP = 1 through NCCL equals the plain path bit for bit");
        eng_comm_free(c);
    }

    const char *ns = getenv("GLM_NCCL_RANKS");
    int N = ns ? atoi(ns) : 0;
    if (N > 1 && N <= dev && eng_comm_nccl_unique_id(id, err, sizeof err) == 0) {
        fflush(NULL);
        for (int r = 1; r < N; r++)
            if (fork() == 0) {
                eng_comm *cr;
                int rc = eng_comm_nccl_create(id, r, N, r, 120, &cr, err, sizeof err);
                _exit(rc || run_model(dir, cr, NULL) ? 1 : 0);
            }
        EXPECT(eng_comm_nccl_create(id, 0, N, 0, 120, &c, err, sizeof err) == 0, "ncclCommInitRank, N ranks");
        if (c) {
            memset(got, 0, PROMPT * V * sizeof(float));
            EXPECT(run_model(dir, c, got) == 0, "model through NCCL, TP = N");
            double md = 0, mr = 0;
            for (size_t i = 0; i < PROMPT * V; i++) {
                md = fmax(md, fabs((double)got[i] - plain[i]));
                mr = fmax(mr, fabs((double)plain[i]));
            }
            printf("TP = %d through NCCL: max |d| / max |ref| = %.2e\n", N, md / mr);
            EXPECT(md / mr <= 1e-4, "TP = N through NCCL within 1e-4 of TP = 1");
            eng_comm_free(c);
        }
        for (int r = 1; r < N; r++) {
            int st;
            wait(&st);
            EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "follower rank");
        }
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    free(plain);
    free(got);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
