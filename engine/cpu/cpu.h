/* cpu.h — internals shared by the CPU backend's files (not a public API). */
#ifndef ENG_CPU_H
#define ENG_CPU_H

#include <stdatomic.h>
#include <pthread.h>
#include "../backend.h"

/* A persistent worker pool. eng_cpu_run(be, fn, ctx, n) runs fn(ctx, task,
 * thread) for task = 0..n-1 on all threads (the caller is thread 0) and
 * returns when every task is done. Tasks write disjoint outputs, so results
 * never depend on which thread ran what. Idle workers spin briefly, then
 * sleep on a futex: no CPU burnt between steps. */
typedef void (*eng_cpu_task)(void *ctx, int task, int thread);

/* Per-thread scratch that grows on demand (never per token: only when a
 * longer context than ever before shows up). */
typedef struct eng_cpu_scratch {
    float *f;
    size_t cap_f;
    int32_t *i;
    size_t cap_i;
} eng_cpu_scratch;

/* One run's description; runs alternate between two slots (see pool.c). */
typedef struct eng_cpu_run_desc {
    eng_cpu_task fn;
    void *ctx;
} eng_cpu_run_desc;

struct eng_backend {
    int n_threads;
    pthread_t *threads;
    /* Task claims: gen (32 bits) | n_tasks (16) | next index (16). A thread
     * runs task i of run g only by CAS-ing this word from (g, n, i) to
     * (g, n, i+1), so a late worker can never take a task of a newer run. */
    _Atomic uint64_t word;
    _Atomic unsigned wake;          /* futex word: the latest gen */
    atomic_int done_tasks;
    atomic_int sleepers;
    atomic_int stop;
    unsigned gen;                   /* caller side */
    eng_cpu_run_desc desc[2];       /* [gen & 1] */
    eng_cpu_scratch *scratch;       /* [n_threads] */
    int avx2;                       /* AVX2 + FMA + F16C kernels usable */
    int avx512;                     /* AVX-512F+BW+VL row tiles (GLM_ENGINE_AVX512=1) */
    int bf16dp;                     /* BF16 linears with AVX512-BF16 hi/lo products (GLM_ENGINE_BF16DP=1) */
    /* Scratch shared by all threads of one run (split attention partials,
     * split indexer scores): grown on the caller's thread between runs. */
    float *shared_f;
    size_t cap_shared_f;
};

/* Attention and the indexer split one query's keys across threads only
 * for batches of fewer queries than threads, at most this many. */
#define ENG_CPU_SPLIT_MAX_Q 64

void eng_cpu_run(eng_backend *be, eng_cpu_task fn, void *ctx, int n_tasks);
int  eng_cpu_pool_start(eng_backend *be);
void eng_cpu_pool_stop(eng_backend *be);

/* Grow thread t's scratch to hold nf floats / ni ints; NULL on OOM. */
float   *eng_cpu_scratch_f(eng_backend *be, int t, size_t nf);
int32_t *eng_cpu_scratch_i(eng_backend *be, int t, size_t ni);

/* f32 dot product (vectorized when available). */
float eng_cpu_dot(const eng_backend *be, const float *a, const float *b, int n);
/* out[h] = eng_cpu_dot(a + h * lda, b, n) for h < na, bit for bit, with the
 * heads' FMA chains interleaved (one load of b serves up to 8 of them). */
void  eng_cpu_dots(const eng_backend *be, const float *a, int64_t lda, int na, const float *b, int n, float *out);
/* out[h * ldo + j] = eng_cpu_dot(a + h * lda, rows[j], n) for h < na, j < nr,
 * bit for bit (register tiles over heads x rows). */
void  eng_cpu_dots_rows(const eng_backend *be, const float *a, int64_t lda, int na, const float *const *rows,
                        int nr, int n, float *out, int64_t ldo);
/* u[h][0..n) = sum_j p[h * ldp + j] * rows[j][0..n) for h < nh, bit for bit
 * what zeroing u and eng_cpu_axpy per row in j order give (register-blocked). */
void  eng_cpu_wsum(const eng_backend *be, const float *p, int64_t ldp, int nh, const float *const *rows, int nr,
                   int n, float *u, int64_t ldu);
/* y += a * x */
void  eng_cpu_axpy(const eng_backend *be, float *y, float a, const float *x, int n);

#endif
