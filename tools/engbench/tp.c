/* tp.c — glm-engine-bench modes for tensor parallelism (docs/perf.md):
 *
 *   --mode allreduce  the shared-memory all-reduce's median latency and
 *                     bandwidth over --ranks ranks (threads) for the sizes
 *                     a step sends: tokens x hidden floats
 *   --mode tp         decode tokens/s at TP = 1 (plain path) and TP =
 *                     --ranks: ranks are threads here (glm-engine forks
 *                     processes; the collectives are the same code), each
 *                     with --threads / ranks compute threads */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/comm.h"
#include "../../engine/model.h"
#include "features.h"

int bench_allreduce(const bench_opts *o)
{
    int N = o->ranks > 1 ? o->ranks : 2;
    static const int hidden[] = { 1024, 6144 };    /* small preset, GLM-5 */
    static const int tokens[] = { 1, 4, 16, 64, 256, 2048 };
    printf("shared-memory all-reduce, %d ranks (threads), median of %d rounds\n", N, o->repeat > 1 ? o->repeat : 200);
    printf("%8s %8s %12s %12s %14s\n", "hidden", "tokens", "bytes", "latency us", "bus GB/s");
    for (size_t h = 0; h < sizeof hidden / sizeof *hidden; h++)
        for (size_t t = 0; t < sizeof tokens / sizeof *tokens; t++) {
            size_t n = (size_t)hidden[h] * (size_t)tokens[t];
            int iters = n > (1u << 20) ? 30 : o->repeat > 1 ? o->repeat : 200;
            double s = eng_comm_shm_bench(N, n, iters);
            if (s < 0) { fprintf(stderr, "glm-engine-bench: all-reduce bench failed\n"); return 1; }
            /* bus bandwidth as NCCL counts it: 2 (N-1)/N x bytes / time */
            double bus = 2.0 * (N - 1) / N * (double)n * 4 / s / 1e9;
            printf("%8d %8d %12zu %12.1f %14.2f\n", hidden[h], tokens[t], n * 4, s * 1e6, bus);
        }
    return 0;
}

typedef struct tp_rank {
    const bench_opts *o;
    eng_shm_group *g;
    int rank, n, threads;
    double tok_s;
    int rc;
} tp_rank;

static void *tp_rank_main(void *p)
{
    tp_rank *a = p;
    const bench_opts *o = a->o;
    char err[512];
    eng_comm *c = NULL;
    eng_model *m = NULL;
    eng_kv_pool *kv = NULL;
    if (a->g && eng_comm_shm_attach(a->g, a->rank, &c, err, sizeof err)) { a->rc = 1; return NULL; }
    eng_model_opts mo = { .n_threads = a->threads, .max_batch_tokens = o->prompt > 64 ? o->prompt : 64,
                          .max_model_len = o->prompt + o->tokens + 1, .load = { .prefault = 1, .quiet = 1, .file_pages = o->file_pages },
                          .comm = c };
    if ((a->rc = eng_model_open(o->dir, &mo, &m, err, sizeof err))) {
        fprintf(stderr, "glm-engine-bench: rank %d: %s\n", a->rank, err);
        eng_comm_abort(c);
        eng_comm_free(c);
        return NULL;
    }
    if (c && eng_comm_barrier(c)) a->rc = 1;
    else if (a->rank > 0) a->rc = eng_model_follow(m, err, sizeof err);
    else {
        const eng_config *cf = eng_model_config(m);
        int bs = 16, nb = (o->prompt + o->tokens + bs) / bs, V = cf->vocab_size;
        int32_t *bt = calloc((size_t)nb, sizeof *bt), *ids = calloc((size_t)o->prompt + 1, sizeof *ids);
        float *lg = calloc((size_t)V, sizeof *lg);
        double *dt = calloc((size_t)o->tokens, sizeof *dt);
        a->rc = eng_kv_pool_create(eng_model_backend(m), cf, ENG_CACHE_F32, nb, bs, &kv, err, sizeof err);
        for (int i = 0; i < nb; i++) bt[i] = i;
        for (int i = 0; i < o->prompt; i++) ids[i] = (i * 131 + 7) % (V - 70);
        eng_seq s = { ids, o->prompt, 0, bt, nb, ENG_LOGITS_LAST };
        if (!a->rc) a->rc = eng_model_forward(m, kv, &s, 1, lg, NULL, err, sizeof err);
        for (int t = 0; !a->rc && t < o->tokens; t++) {
            int32_t tok = 0;
            for (int i = 1; i < V; i++) if (lg[i] > lg[tok]) tok = i;
            eng_seq d = { &tok, 1, o->prompt + t, bt, nb, ENG_LOGITS_LAST };
            double t0 = bench_now();
            a->rc = eng_model_forward(m, kv, &d, 1, lg, NULL, err, sizeof err);
            dt[t] = bench_now() - t0;
        }
        if (a->rc) fprintf(stderr, "glm-engine-bench: %s\n", err);
        else a->tok_s = 1.0 / bench_median(dt, o->tokens);
        free(bt); free(ids); free(lg); free(dt);
    }
    eng_kv_pool_free(kv);
    eng_model_close(m);
    eng_comm_free(c);
    return NULL;
}

static double run_tp(const bench_opts *o, int n, int threads)
{
    eng_shm_group *g = NULL;
    char err[256];
    if (n > 1 && eng_shm_group_create(n, 1 << 20, &g, err, sizeof err)) return -1;
    tp_rank r[64];
    pthread_t th[64];
    for (int i = 0; i < n; i++) r[i] = (tp_rank){ o, g, i, n, threads, 0, 0 };
    for (int i = 1; i < n; i++) pthread_create(&th[i], NULL, tp_rank_main, &r[i]);
    tp_rank_main(&r[0]);
    int bad = r[0].rc;
    for (int i = 1; i < n; i++) { pthread_join(th[i], NULL); bad |= r[i].rc; }
    eng_shm_group_free(g);
    return bad ? -1 : r[0].tok_s;
}

int bench_tp(const bench_opts *o)
{
    int N = o->ranks > 1 ? o->ranks : 2, T = o->threads > 0 ? o->threads : N;
    if (N > 64) return 2;
    int per = T / N > 0 ? T / N : 1;
    printf("decode, prompt %d, %d steps (median step), %d threads in all\n", o->prompt, o->tokens, T);
    for (int rep = 0; rep < (o->repeat > 1 ? o->repeat : 1); rep++) {
        double a = run_tp(o, 1, T), b = run_tp(o, N, per);
        if (a < 0 || b < 0) return 1;
        printf("TP=1 (%d threads): %.2f tok/s   TP=%d (%d x %d threads): %.2f tok/s   ratio %.2f\n", T, a, N, N, per, b,
               b / a);
    }
    return 0;
}
