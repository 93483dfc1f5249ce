/* pool.c — the CPU backend's worker threads. */
#include "cpu.h"

#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPIN_ITERS 20000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(_Atomic unsigned *addr, unsigned val)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic unsigned *addr)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void do_tasks(eng_backend *be, int thread)
{
    int t;
    while ((t = atomic_fetch_add(&be->next_task, 1)) < be->n_tasks) be->fn(be->ctx, t, thread);
}

/* gen0: the generation when the worker was created. Reading be->gen in the
 * new thread instead would race with a run started before it got going. */
struct worker_arg { eng_backend *be; int id; unsigned gen0; };

static void *worker(void *p)
{
    struct worker_arg *a = p;
    eng_backend *be = a->be;
    int id = a->id;
    unsigned seen = a->gen0;
    free(a);
    for (;;) {
        for (int k = 0; k < SPIN_ITERS && atomic_load(&be->gen) == seen; k++) cpu_relax();
        if (atomic_load(&be->gen) == seen) {
            atomic_fetch_add(&be->sleepers, 1);
            while (atomic_load(&be->gen) == seen) futex_wait(&be->gen, seen);
            atomic_fetch_sub(&be->sleepers, 1);
        }
        seen = atomic_load(&be->gen);
        if (atomic_load(&be->stop)) return NULL;
        do_tasks(be, id);
        atomic_fetch_add(&be->done_workers, 1);
    }
}

void eng_cpu_run(eng_backend *be, eng_cpu_task fn, void *ctx, int n_tasks)
{
    if (n_tasks <= 0) return;
    if (be->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    be->fn = fn;
    be->ctx = ctx;
    be->n_tasks = n_tasks;
    atomic_store(&be->next_task, 0);
    atomic_store(&be->done_workers, 0);
    atomic_fetch_add(&be->gen, 1);               /* publishes fn/ctx/n_tasks (seq_cst) */
    if (atomic_load(&be->sleepers) > 0) futex_wake_all(&be->gen);
    do_tasks(be, 0);
    int workers = be->n_threads - 1;
    for (unsigned k = 0; atomic_load(&be->done_workers) < workers; k++) {
        if (k < SPIN_ITERS) cpu_relax();
        else sched_yield();
    }
}

int eng_cpu_pool_start(eng_backend *be)
{
    be->threads = calloc((size_t)be->n_threads, sizeof *be->threads);
    if (!be->threads) return -1;
    for (int i = 1; i < be->n_threads; i++) {
        struct worker_arg *a = malloc(sizeof *a);
        if (a) { a->be = be; a->id = i; a->gen0 = atomic_load(&be->gen); }
        if (!a || pthread_create(&be->threads[i], NULL, worker, a)) {
            free(a);
            be->n_threads = i;          /* run with the threads we got */
            break;
        }
    }
    return 0;
}

void eng_cpu_pool_stop(eng_backend *be)
{
    if (!be->threads) return;
    atomic_store(&be->stop, 1);
    atomic_fetch_add(&be->gen, 1);
    futex_wake_all(&be->gen);
    for (int i = 1; i < be->n_threads; i++) pthread_join(be->threads[i], NULL);
    free(be->threads);
    be->threads = NULL;
}
