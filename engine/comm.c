/* comm.c — the shared-memory communicator (CPU ranks on one host) and the
 * dispatch of comm.h's calls to an implementation.
 *
 * The group is one MAP_SHARED region: a header (barrier words, the dead
 * flag, the ranks' pids) and, per parity p in {0, 1}, one slot per rank plus
 * one result slot, slot_bytes each. A collective runs in rounds of at most a
 * slot; rounds alternate the parity. A rank writes only its own slot of the
 * round's parity, so round k+2 (same parity) may overwrite it only after
 * every rank passed round k+1's barrier, that is, after every rank finished
 * reading round k: one barrier per round suffices, except for the large
 * all-reduce (reduce-scatter: each rank sums a slice into the result slot, a
 * second barrier, every rank copies the result).
 *
 * The barrier is a central counter with a generation word: the last rank in
 * bumps the generation and wakes the others with a shared futex; waiters spin
 * briefly (a step's collectives are microseconds apart), then sleep on the
 * futex for at most 20 ms at a time and check between sleeps that every peer
 * process is still alive. A dead peer sets the dead flag: every waiting and
 * later collective fails with PL_ERR_IO instead of hanging. */
#include "comm.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include "pl.h"

/* ===== dispatch */

int eng_comm_rank(const eng_comm *c) { return c->rank; }
int eng_comm_size(const eng_comm *c) { return c->size; }
int eng_comm_all_reduce_sum(eng_comm *c, float *buf, size_t n) { return c->ops->all_reduce_sum(c, buf, n); }
int eng_comm_all_gather(eng_comm *c, const void *send, size_t bytes, void *recv)
{
    return c->ops->all_gather(c, send, bytes, recv);
}
int eng_comm_broadcast(eng_comm *c, void *buf, size_t bytes, int root) { return c->ops->broadcast(c, buf, bytes, root); }
int eng_comm_barrier(eng_comm *c) { return c->ops->barrier(c); }
void eng_comm_abort(eng_comm *c) { if (c) c->ops->abort(c); }
void eng_comm_free(eng_comm *c) { if (c) c->ops->free(c); }

/* ===== the shared region */

#define SHM_MAX_RANKS 64
#define CL 64

typedef struct shm_hdr {
    _Alignas(CL) _Atomic uint32_t arrive;   /* ranks in the current barrier */
    _Alignas(CL) _Atomic uint32_t gen;      /* barrier generation: the futex word */
    _Alignas(CL) _Atomic int dead;
    int size;
    size_t slot_bytes;
    _Atomic int pids[SHM_MAX_RANKS];        /* 0: a thread, nothing to watch */
} shm_hdr;

struct eng_shm_group {
    shm_hdr *hdr;
    unsigned char *data;                    /* [2][size + 1][slot_bytes] */
    size_t map_bytes;
};

typedef struct shm_comm {
    eng_shm_group *g;
    int parity;
} shm_comm;

int eng_shm_group_create(int size, size_t slot_bytes, eng_shm_group **out, char *err, size_t errlen)
{
    *out = NULL;
    if (size < 1 || size > SHM_MAX_RANKS)
        return pl_seterr(err, errlen, PL_ERR_RANGE, "%d ranks: 1 to %d on one host", size, SHM_MAX_RANKS);
    slot_bytes = (slot_bytes + CL - 1) / CL * CL;
    if (slot_bytes < CL) slot_bytes = CL;
    size_t hdr = (sizeof(shm_hdr) + 4095) / 4096 * 4096;
    size_t bytes = hdr + 2 * (size_t)(size + 1) * slot_bytes;
    eng_shm_group *g = calloc(1, sizeof *g);
    void *p = MAP_FAILED;
    if (g) p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        free(g);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "cannot map %zu bytes of shared memory for %d ranks", bytes, size);
    }
    g->hdr = p;
    g->data = (unsigned char *)p + hdr;
    g->map_bytes = bytes;
    g->hdr->size = size;
    g->hdr->slot_bytes = slot_bytes;
    *out = g;
    return 0;
}

void eng_shm_group_free(eng_shm_group *g)
{
    if (!g) return;
    munmap(g->hdr, g->map_bytes);
    free(g);
}

void eng_shm_group_set_pid(eng_shm_group *g, int rank, pid_t pid)
{
    if (rank >= 0 && rank < g->hdr->size) atomic_store(&g->hdr->pids[rank], (int)pid);
}

int eng_shm_group_dead(const eng_shm_group *g) { return atomic_load(&((shm_hdr *)g->hdr)->dead); }

static void futex_wake_all(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void group_kill(shm_hdr *h)
{
    atomic_store(&h->dead, 1);
    atomic_fetch_add(&h->gen, 1u << 31);    /* changes the futex word: sleepers wake and see dead */
    futex_wake_all(&h->gen);
}

/* A peer process gone? Rank 0 forked the others: it reaps them (a dead
 * child stays a zombie, which kill(pid, 0) would call alive). The others
 * watch rank 0 (their parent) and any peer that no longer exists. */
static int peers_alive(shm_hdr *h, int rank)
{
    for (int r = 0; r < h->size; r++) {
        pid_t p = atomic_load(&h->pids[r]);
        if (!p || r == rank) continue;
        if (rank == 0) {
            int st;
            pid_t w = waitpid(p, &st, WNOHANG);
            if (w == p || (w < 0 && errno == ECHILD && kill(p, 0) < 0)) return 0;
        } else if (kill(p, 0) < 0 && errno == ESRCH) {
            return 0;
        } else if (r == 0 && getppid() != p) {
            return 0;
        }
    }
    return 1;
}

/* The generation's low 31 bits count completed barriers; group_kill adds
 * 1 << 31 (wakes sleepers without completing anything). A barrier that
 * completed returns 0 even if the group died just after: the collective's
 * data is there, and the next call fails. */
static int shm_barrier_impl(eng_comm *c)
{
    shm_comm *s = c->impl;
    shm_hdr *h = s->g->hdr;
    if (atomic_load(&h->dead)) return PL_ERR_IO;
    uint32_t g0 = atomic_load(&h->gen);
    if (atomic_fetch_add(&h->arrive, 1) == (uint32_t)h->size - 1) {
        atomic_store(&h->arrive, 0);
        atomic_fetch_add(&h->gen, 1);
        futex_wake_all(&h->gen);
        return 0;
    }
    for (int spin = 0; ((atomic_load(&h->gen) - g0) & 0x7fffffffu) == 0; spin++) {
        if (atomic_load(&h->dead)) return PL_ERR_IO;
        if (spin < 4000) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        syscall(SYS_futex, (uint32_t *)&h->gen, FUTEX_WAIT, g0, &ts, NULL, 0);
        if (atomic_load(&h->gen) == g0 && !peers_alive(h, c->rank)) {
            group_kill(h);
            return PL_ERR_IO;
        }
    }
    return 0;
}

static unsigned char *slot(shm_comm *s, int r)
{
    return s->g->data + ((size_t)s->parity * (size_t)(s->g->hdr->size + 1) + (size_t)r) * s->g->hdr->slot_bytes;
}

/* ===== collectives */

/* Element i of the sum: ((slot0[i] + slot1[i]) + slot2[i]) + ..., the same
 * order whichever rank computes it. */
static void sum_slots(shm_comm *s, size_t i0, size_t i1, float *out)
{
    int n = s->g->hdr->size;
    const float *s0 = (const float *)slot(s, 0);
    for (size_t i = i0; i < i1; i++) out[i - i0] = s0[i];
    for (int r = 1; r < n; r++) {
        const float *sr = (const float *)slot(s, r);
        for (size_t i = i0; i < i1; i++) out[i - i0] += sr[i];
    }
}

#define SMALL_REDUCE 16384      /* floats: below, every rank sums everything (one barrier) */

static int shm_all_reduce(eng_comm *c, float *buf, size_t n)
{
    shm_comm *s = c->impl;
    size_t per = s->g->hdr->slot_bytes / sizeof(float);
    int N = c->size;
    for (size_t off = 0; off < n; off += per) {
        size_t m = n - off < per ? n - off : per;
        memcpy(slot(s, c->rank), buf + off, m * sizeof(float));
        int rc = shm_barrier_impl(c);
        if (rc) return rc;
        if (m <= SMALL_REDUCE) {
            sum_slots(s, 0, m, buf + off);
        } else {
            size_t i0 = m * (size_t)c->rank / (size_t)N, i1 = m * (size_t)(c->rank + 1) / (size_t)N;
            float *res = (float *)slot(s, N);
            sum_slots(s, i0, i1, res + i0);
            if ((rc = shm_barrier_impl(c))) return rc;
            memcpy(buf + off, res, m * sizeof(float));
        }
        s->parity ^= 1;
    }
    return 0;
}

static int shm_all_gather(eng_comm *c, const void *send, size_t bytes, void *recv)
{
    shm_comm *s = c->impl;
    size_t per = s->g->hdr->slot_bytes;
    for (size_t off = 0; off < bytes || (off == 0 && bytes == 0); off += per) {
        size_t m = bytes - off < per ? bytes - off : per;
        if (m) memcpy(slot(s, c->rank), (const unsigned char *)send + off, m);
        int rc = shm_barrier_impl(c);
        if (rc) return rc;
        for (int r = 0; r < c->size && m; r++) memcpy((unsigned char *)recv + (size_t)r * bytes + off, slot(s, r), m);
        s->parity ^= 1;
        if (!bytes) break;
    }
    return 0;
}

static int shm_broadcast(eng_comm *c, void *buf, size_t bytes, int root)
{
    shm_comm *s = c->impl;
    size_t per = s->g->hdr->slot_bytes;
    if (root < 0 || root >= c->size) return PL_ERR_RANGE;
    for (size_t off = 0; off < bytes; off += per) {
        size_t m = bytes - off < per ? bytes - off : per;
        if (c->rank == root) memcpy(slot(s, root), (unsigned char *)buf + off, m);
        int rc = shm_barrier_impl(c);
        if (rc) return rc;
        if (c->rank != root) memcpy((unsigned char *)buf + off, slot(s, root), m);
        s->parity ^= 1;
    }
    return 0;
}

static int shm_barrier(eng_comm *c) { return shm_barrier_impl(c); }

static void shm_abort(eng_comm *c) { group_kill(((shm_comm *)c->impl)->g->hdr); }

static void shm_free(eng_comm *c)
{
    free(c->impl);
    free(c);
}

static const eng_comm_ops shm_ops = {
    shm_all_reduce, shm_all_gather, shm_broadcast, shm_barrier, shm_abort, shm_free,
};

int eng_comm_shm_attach(eng_shm_group *g, int rank, eng_comm **out, char *err, size_t errlen)
{
    *out = NULL;
    if (rank < 0 || rank >= g->hdr->size)
        return pl_seterr(err, errlen, PL_ERR_RANGE, "rank %d outside a group of %d", rank, g->hdr->size);
    eng_comm *c = calloc(1, sizeof *c);
    shm_comm *s = calloc(1, sizeof *s);
    if (!c || !s) {
        free(c);
        free(s);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    s->g = g;
    *c = (eng_comm){ &shm_ops, rank, g->hdr->size, s };
    *out = c;
    return 0;
}

/* ===== micro-benchmark */

typedef struct bench_arg {
    eng_comm *c;
    size_t n;
    int iters;
    double *times;
} bench_arg;

static void *bench_rank(void *p)
{
    bench_arg *a = p;
    float *buf = calloc(a->n ? a->n : 1, sizeof(float));
    if (!buf) return NULL;
    for (int i = 0; i < a->iters; i++) {
        for (size_t k = 0; k < a->n; k++) buf[k] = (float)(k + (size_t)a->c->rank);
        eng_comm_barrier(a->c);
        double t0 = pl_mono_s();
        eng_comm_all_reduce_sum(a->c, buf, a->n);
        if (a->times) a->times[i] = pl_mono_s() - t0;
    }
    free(buf);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double eng_comm_shm_bench(int size, size_t n, int iters)
{
    eng_shm_group *g;
    char err[128];
    if (size < 1 || iters < 1 || eng_shm_group_create(size, 1 << 20, &g, err, sizeof err)) return -1;
    eng_comm *cs[SHM_MAX_RANKS] = { 0 };
    bench_arg args[SHM_MAX_RANKS];
    pthread_t th[SHM_MAX_RANKS];
    double *times = calloc((size_t)iters, sizeof *times), med = -1;
    int ok = times != NULL;
    for (int r = 0; r < size && ok; r++) ok = !eng_comm_shm_attach(g, r, &cs[r], err, sizeof err);
    if (ok) {
        for (int r = 0; r < size; r++) {
            args[r] = (bench_arg){ cs[r], n, iters, r == 0 ? times : NULL };
            if (r) pthread_create(&th[r], NULL, bench_rank, &args[r]);
        }
        bench_rank(&args[0]);
        for (int r = 1; r < size; r++) pthread_join(th[r], NULL);
        qsort(times, (size_t)iters, sizeof *times, cmp_d);
        med = times[iters / 2];
    }
    for (int r = 0; r < size; r++) eng_comm_free(cs[r]);
    eng_shm_group_free(g);
    free(times);
    return med;
}
