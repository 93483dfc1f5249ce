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
};

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
/* The e4m3 table eng_cpu_cache_span reads: call once before a run. */
void  eng_cpu_fp8_init(void);
/* Values [a, b) of cache row slot: a pointer into an F32 row, or buf
 * (b - a floats) filled from an FP8 row (each value times its tile's scale). */
const float *eng_cpu_cache_span(const eng_be_cache *c, int64_t slot, int a, int b, float *buf);
/* y += a * x */
void  eng_cpu_axpy(const eng_backend *be, float *y, float a, const float *x, int n);

#endif
