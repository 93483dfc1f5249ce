/* pool.c — the CPU backend's worker threads.
 *
 * The caller publishes a run (fn, ctx, n tasks) and works on it itself;
 * workers join in as they wake. The caller waits only for tasks that were
 * actually claimed, never for a worker to check in, so a worker that the
 * OS has not scheduled (2 cores shared with other processes) costs nothing.
 * Idle workers spin briefly, then sleep on a futex. */
#include "cpu.h"
#include "pl.h"

#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Pauses a waiting thread spins before it sleeps (a worker) or yields (the
 * caller). GLM_ENGINE_SPIN=N overrides it: on a host where other processes
 * keep the cores busy, a spinning worker takes CPU time from the caller
 * (docs/perf.md "Grouped linears": batch-1 decode on 2 loaded cores was
 * faster with 100 than with 4000, and faster on 1 thread than on 2). */
#define SPIN_ITERS 4000
#define SPIN_ITERS_MAX 10000000
#define MAX_TASKS_PER_RUN 65535

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

static inline unsigned w_gen(uint64_t w) { return (unsigned)(w >> 32); }
static inline int w_n(uint64_t w) { return (int)((w >> 16) & 0xffff); }
static inline int w_idx(uint64_t w) { return (int)(w & 0xffff); }

/* Claim and run tasks of run `gen` until none is left. The slot desc[gen&1]
 * cannot be reused while we hold a claimed task: run gen completes only
 * when every claimed task is done, and the slot is rewritten two runs later. */
static void do_tasks(eng_backend *be, unsigned gen, int thread)
{
    for (;;) {
        uint64_t w = atomic_load(&be->word);
        if (w_gen(w) != gen || w_idx(w) >= w_n(w)) return;
        if (!atomic_compare_exchange_weak(&be->word, &w, w + 1)) continue;
        const eng_cpu_run_desc *d = &be->desc[gen & 1];
        d->fn(d->ctx, w_idx(w), thread);
        atomic_fetch_add(&be->done_tasks, 1);
    }
}

struct worker_arg { eng_backend *be; int id; };

static void *worker(void *p)
{
    struct worker_arg *a = p;
    eng_backend *be = a->be;
    int id = a->id;
    free(a);
    unsigned seen = 0;                  /* runs are numbered from 1 */
    for (;;) {
        unsigned g = w_gen(atomic_load(&be->word));
        for (int k = 0; k < be->spin_iters && g == seen && !atomic_load(&be->stop); k++) {
            cpu_relax();
            g = w_gen(atomic_load(&be->word));
        }
        if (g == seen && !atomic_load(&be->stop)) {
            atomic_fetch_add(&be->sleepers, 1);
            while (atomic_load(&be->wake) == seen && !atomic_load(&be->stop)) futex_wait(&be->wake, seen);
            atomic_fetch_sub(&be->sleepers, 1);
            g = w_gen(atomic_load(&be->word));
        }
        if (atomic_load(&be->stop)) return NULL;
        do_tasks(be, g, id);
        seen = g;
    }
}

static void run_some(eng_backend *be, eng_cpu_task fn, void *ctx, int n_tasks)
{
    unsigned g = ++be->gen;
    be->desc[g & 1] = (eng_cpu_run_desc){ fn, ctx };
    atomic_store(&be->done_tasks, 0);
    atomic_store(&be->word, ((uint64_t)g << 32) | ((uint64_t)n_tasks << 16));   /* publishes desc (seq_cst) */
    atomic_store(&be->wake, g);
    if (atomic_load(&be->sleepers) > 0) futex_wake_all(&be->wake);
    do_tasks(be, g, 0);
    for (unsigned k = 0; atomic_load(&be->done_tasks) < n_tasks; k++) {
        if ((int)k < be->spin_iters) cpu_relax();
        else sched_yield();             /* a worker holding a task was descheduled */
    }
}

/* Offsets tasks of a run that has more than MAX_TASKS_PER_RUN. */
struct big_ctx { eng_cpu_task fn; void *ctx; int base; };
static void big_task(void *p, int t, int thread)
{
    struct big_ctx *b = p;
    b->fn(b->ctx, b->base + t, thread);
}

void eng_cpu_run(eng_backend *be, eng_cpu_task fn, void *ctx, int n_tasks)
{
    if (n_tasks <= 0) return;
    if (be->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    if (n_tasks <= MAX_TASKS_PER_RUN) { run_some(be, fn, ctx, n_tasks); return; }
    for (int base = 0; base < n_tasks; base += MAX_TASKS_PER_RUN) {
        struct big_ctx b = { fn, ctx, base };
        run_some(be, big_task, &b, n_tasks - base < MAX_TASKS_PER_RUN ? n_tasks - base : MAX_TASKS_PER_RUN);
    }
}

int eng_cpu_pool_start(eng_backend *be)
{
    const char *sp = getenv("GLM_ENGINE_SPIN");
    int64_t v;
    be->spin_iters = sp && pl_parse_i64(sp, 0, SPIN_ITERS_MAX, &v) == 0 ? (int)v : SPIN_ITERS;
    be->threads = calloc((size_t)be->n_threads, sizeof *be->threads);
    if (!be->threads) return -1;
    for (int i = 1; i < be->n_threads; i++) {
        struct worker_arg *a = malloc(sizeof *a);
        if (a) { a->be = be; a->id = i; }
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
    atomic_fetch_add(&be->wake, 1);
    futex_wake_all(&be->wake);
    for (int i = 1; i < be->n_threads; i++) pthread_join(be->threads[i], NULL);
    free(be->threads);
    be->threads = NULL;
}
