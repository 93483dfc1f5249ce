/* moe.c — the CPU backend's composite ops: MoE dispatch over an expert
 * range (for many tokens the loop model.c ran before the op existed; for
 * few, a two-run form with the same bits), and the small ops that let a
 * step's buffers stay in backend memory (scale, key-set selection). */
#include "cpu.h"

#include <string.h>

/* ===== MoE dispatch =====
 *
 * Two ways to run the experts, with the same bits (each output element is
 * the same dot product, and each token adds its experts in ascending id):
 *  - many tokens (prefill): one expert at a time, each product spread over
 *    all threads (its rows split), the tokens through the wide tiles;
 *  - few tokens (decode, MTP verification: 1-2 tokens per expert): all the
 *    routed experts of the call in two runs of the pool. Run 1 computes
 *    act = silu(gate x) * up x for every (expert, slice of its rows); run 2
 *    splits the hidden dimension, and each task takes its column slice of
 *    every expert's down product and adds it into out in ascending expert
 *    id. One expert at a time costs three pool runs per expert, each only
 *    ~20-60 us of weights at 1-2 tokens, with serial gather/silu/scatter
 *    between them: a 4-position verification makes ~11 experts x 3 runs
 *    per layer. Measured (docs/perf.md): verification of 2-6 positions
 *    3-14 % faster, plain decode unchanged. Inside a task the products run
 *    on that thread alone (thread_view). */

/* The few-token path runs for up to MOE_FEW_TOKENS tokens and
 * MOE_FEW_SLOTS (token, expert) slots, which must fit the work buffers'
 * cap rows. */
#define MOE_FEW_TOKENS 16
#define MOE_FEW_SLOTS 256
/* Column slices of out in run 2 start at multiples of 8: eng_cpu_axpy then
 * treats every element as the whole-row call does (8-wide FMAs, the same
 * scalar tail), so slicing does not change a bit. */
#define MOE_COL_ALIGN 8

/* Columns per slice when H is cut into about `slices` slices. */
static int64_t moe_col_chunk(int H, int slices)
{
    return ((H + slices - 1) / slices + MOE_COL_ALIGN - 1) / MOE_COL_ALIGN * MOE_COL_ALIGN;
}

/* A one-thread view of be for ops called inside a pool task of thread t:
 * eng_cpu_run on it runs inline, and the kernels use thread t's scratch. */
static void thread_view(const eng_backend *be, int t, eng_backend *v)
{
    memset(v, 0, sizeof *v);
    v->n_threads = 1;
    v->scratch = &be->scratch[t];
    v->avx2 = be->avx2;
    v->avx512 = be->avx512;
    v->bf16dp = be->bf16dp;
    v->compute_bf16 = be->compute_bf16;
    v->avx512bf16 = be->avx512bf16;
}

struct moe_few {
    eng_backend *be;
    const eng_be_moe *a;
    int n_exp;                  /* distinct experts routed to; the shared expert (a->shared) is expert n_exp */
    int32_t *exp;               /* [n_exp] their ids, ascending */
    int32_t *slot0;             /* [n_exp + 1] their first slot; slot s: token a->rows[s], weight a->rwt[s] */
    int split;                  /* run 1: row slices per expert */
    int64_t rchunk, cchunk;     /* run 1 rows per slice, run 2 columns per slice */
};

/* Expert j of a run: its weights, its first work-buffer row *s0, token
 * count *n and input rows *x. j == n_exp is the shared expert: every token,
 * straight from a->x, in the rows after the routed experts' slots. */
static const eng_tensor *few_expert(const struct moe_few *f, int j, int *s0, int *n, const float **x)
{
    const eng_be_moe *a = f->a;
    *s0 = f->slot0[j];
    if (j == f->n_exp) {
        *n = a->n;
        *x = a->x;
        return a->shared;
    }
    *n = f->slot0[j + 1] - *s0;
    *x = a->xg + (int64_t)*s0 * a->hidden;
    return &a->experts[f->exp[j] * ENG_EXP_COUNT];
}

/* Run 1, task = (expert, row slice): gate and up rows [i0, i1) for the
 * expert's tokens (gathered into xg by the caller), act = silu(gate) * up. */
static void few_act(void *p, int task, int thread)
{
    struct moe_few *f = p;
    const eng_be_moe *a = f->a;
    int j = task / f->split, H = a->hidden, I = a->inter, s0, n;
    const float *xg;
    const eng_tensor *ex = few_expert(f, j, &s0, &n, &xg);
    int64_t rows = ex[ENG_EXP_GATE].rows;
    int64_t i0 = (int64_t)(task % f->split) * f->rchunk, i1 = i0 + f->rchunk < rows ? i0 + f->rchunk : rows;
    if (i0 >= i1) return;
    eng_backend v;
    thread_view(f->be, thread, &v);
    float *g = a->gate + (int64_t)s0 * I + i0, *u = a->up + (int64_t)s0 * I + i0;
    eng_cpu_linear(&v, &ex[ENG_EXP_GATE], i0, i1 - i0, xg, n, H, g, I);
    eng_cpu_linear(&v, &ex[ENG_EXP_UP], i0, i1 - i0, xg, n, H, u, I);
    eng_cpu_silu_mul(&v, g, I, u, I, n, (int)(i1 - i0), a->act + (int64_t)s0 * I + i0, I);
}

/* Run 2, task = column slice [c0, c1) of out: every expert's down rows
 * [c0, c1), added into out in ascending expert id. */
static void few_down(void *p, int task, int thread)
{
    struct moe_few *f = p;
    const eng_be_moe *a = f->a;
    int H = a->hidden, I = a->inter;
    int64_t c0 = (int64_t)task * f->cchunk, c1 = c0 + f->cchunk < H ? c0 + f->cchunk : H;
    if (c0 >= c1) return;
    eng_backend v;
    thread_view(f->be, thread, &v);
    for (int i = 0; i < a->n; i++) memset(a->out + (int64_t)i * H + c0, 0, (size_t)(c1 - c0) * sizeof(float));
    for (int j = 0; j < f->n_exp; j++) {
        int s0 = f->slot0[j], n = f->slot0[j + 1] - s0;
        const eng_tensor *ex = &a->experts[f->exp[j] * ENG_EXP_COUNT];
        float *y = a->y + (int64_t)s0 * H + c0;
        eng_cpu_linear(&v, &ex[ENG_EXP_DOWN], c0, c1 - c0, a->act + (int64_t)s0 * I, n, I, y, H);
        eng_cpu_scatter_add_rows(&v, a->out + c0, H, a->rows + s0, a->rwt + s0, y, H, n, (int)(c1 - c0));
    }
    if (a->shared) {            /* after the routed sum, as add_scaled after the op would */
        int s0 = f->slot0[f->n_exp];
        float *y = a->y + (int64_t)s0 * H + c0;
        eng_cpu_linear(&v, &a->shared[ENG_EXP_DOWN], c0, c1 - c0, a->act + (int64_t)s0 * I, a->n, I, y, H);
        eng_cpu_add_scaled(&v, a->out + c0, H, y, H, NULL, a->n, (int)(c1 - c0));
    }
}

/* Slots of expert e: tokens ascending (the order the gather tasks use). */
static int moe_slots(const eng_be_moe *a, int e, int32_t *rows, float *rwt)
{
    int n = 0, K = a->top_k;
    for (int i = 0; i < a->n; i++)
        for (int k = 0; k < K; k++)
            if (a->idx[i * K + k] == e) {
                if (rows) { rows[n] = i; rwt[n] = a->wt[i * K + k]; }
                n++;
            }
    return n;
}

static void moe_few(eng_backend *be, const eng_be_moe *a, int e0, int e1)
{
    int H = a->hidden, I = a->inter, nt = be->n_threads;
    int32_t exp[MOE_FEW_SLOTS], slot0[MOE_FEW_SLOTS + 1];   /* distinct experts <= slots */
    struct moe_few f = { be, a, 0, exp, slot0, 0, 0, 0 };
    /* Slots grouped by expert, ascending; within an expert, tokens ascending. */
    int ns = 0;
    for (int e = e0; e < e1; e++) {
        int n = moe_slots(a, e, a->rows + ns, a->rwt + ns);
        if (!n) continue;
        exp[f.n_exp] = e;
        slot0[f.n_exp++] = ns;
        ns += n;
    }
    slot0[f.n_exp] = ns;
    eng_cpu_gather_rows(be, a->x, H, a->rows, ns, H, a->xg, H);
    /* Run 1: each expert in nt row slices (at least 16 rows), so the
     * threads share every expert evenly whatever the token counts. */
    f.rchunk = (I + nt - 1) / nt;
    if (f.rchunk < 16) f.rchunk = 16;
    f.split = (int)((I + f.rchunk - 1) / f.rchunk);
    int nx = f.n_exp + (a->shared != NULL);
    if (nx) eng_cpu_run(be, few_act, &f, nx * f.split);
    /* Run 2: 2 slices per thread (a late thread's share is taken over). */
    int ncs = 2 * nt;
    f.cchunk = moe_col_chunk(H, ncs);
    eng_cpu_run(be, few_down, &f, (int)((H + f.cchunk - 1) / f.cchunk));
}

/* ===== many tokens: one expert at a time, two pool runs each =====
 *
 * Run A, task = row slice of the expert's inter rows: gate and up for all
 * its tokens, then act = silu(gate) * up for that slice (few_act over one
 * expert). Run B, task =
 * column slice of out (multiples of MOE_COL_ALIGN): the down rows of that
 * slice, scattered into out's slice (the first expert zeroes the slice
 * first); the run's last tasks gather the next expert's tokens into xg,
 * which run B does not read. Before, each expert took three pool runs with
 * a serial gather, silu and scatter between them (a 512-token prefill:
 * ~6 % of the main thread's time, docs/perf.md); each output element is
 * still the same dot product and each token still adds its experts in
 * ascending id, so the bits are unchanged. */
struct moe_many {
    eng_backend *be;
    const eng_be_moe *a;
    int e, n;                   /* the expert of this run pair, its slots (a->rows, a->rwt) */
    int next;                   /* run B gathers this expert's tokens into xg; -1: none */
    int zero;                   /* run B zeroes its slice of out first */
    int shared;                 /* this run pair is the shared expert's (all tokens, added unscaled) */
    int ncs, ngs;               /* run B: column slices, then gather tasks */
    int64_t cchunk;
};

static void many_down(void *p, int task, int thread)
{
    struct moe_many *f = p;
    const eng_be_moe *a = f->a;
    int H = a->hidden, I = a->inter, K = a->top_k;
    if (task >= f->ncs) {       /* gather task g: the next expert's slots j = g mod ngs */
        int g = task - f->ncs, j = 0;
        for (int i = 0; i < a->n; i++)
            for (int k = 0; k < K; k++)
                if (a->idx[i * K + k] == f->next) {
                    if (j % f->ngs == g) memcpy(a->xg + (int64_t)j * H, a->x + (int64_t)i * H, (size_t)H * sizeof(float));
                    j++;
                }
        return;
    }
    int64_t c0 = (int64_t)task * f->cchunk, c1 = c0 + f->cchunk < H ? c0 + f->cchunk : H;
    if (c0 >= c1) return;
    eng_backend v;
    thread_view(f->be, thread, &v);
    if (f->zero)
        for (int i = 0; i < a->n; i++) memset(a->out + (int64_t)i * H + c0, 0, (size_t)(c1 - c0) * sizeof(float));
    const eng_tensor *ex = f->shared ? a->shared : &a->experts[f->e * ENG_EXP_COUNT];
    eng_cpu_linear(&v, &ex[ENG_EXP_DOWN], c0, c1 - c0, a->act, f->n, I, a->y + c0, H);
    if (f->shared) eng_cpu_add_scaled(&v, a->out + c0, H, a->y + c0, H, NULL, f->n, (int)(c1 - c0));
    else eng_cpu_scatter_add_rows(&v, a->out + c0, H, a->rows, a->rwt, a->y + c0, H, f->n, (int)(c1 - c0));
}

static void moe_many(eng_backend *be, const eng_be_moe *a, int e0, int e1)
{
    int H = a->hidden, I = a->inter, nt = be->n_threads;
    struct moe_many f = { be, a, e0, 0, -1, 1, 0, 0, 0, 0 };
    /* Run A is the few-token path's run 1 over one expert whose slots
     * start at 0. 2 slices per thread in both runs (a late thread's share
     * is taken over); rows at least 16 per slice, columns multiples of 8. */
    int32_t slot0[2] = { 0, 0 };
    struct moe_few fa = { be, a, 1, &f.e, slot0, 0, (I + 2 * nt - 1) / (2 * nt), 0 };
    if (fa.rchunk < 16) fa.rchunk = 16;
    fa.split = (int)((I + fa.rchunk - 1) / fa.rchunk);
    f.cchunk = moe_col_chunk(H, 2 * nt);
    f.ncs = (int)((H + f.cchunk - 1) / f.cchunk);
    f.ngs = nt;
    while (f.e < e1 && !(f.n = moe_slots(a, f.e, a->rows, a->rwt))) f.e++;
    if (f.e >= e1 && !a->shared) {
        memset(a->out, 0, (size_t)a->n * (size_t)H * sizeof(float));
        return;
    }
    if (f.e < e1) eng_cpu_gather_rows(be, a->x, H, a->rows, f.n, H, a->xg, H);
    while (f.e < e1) {
        slot0[1] = f.n;
        eng_cpu_run(be, few_act, &fa, fa.split);
        f.next = f.e + 1;
        while (f.next < e1 && !moe_slots(a, f.next, NULL, NULL)) f.next++;
        int more = f.next < e1;
        eng_cpu_run(be, many_down, &f, f.ncs + (more ? f.ngs : 0));
        f.zero = 0;
        f.e = f.next;
        if (more) f.n = moe_slots(a, f.e, a->rows, a->rwt);
    }
    if (a->shared) {            /* the shared expert last: few_act's expert n_exp = 0, all tokens */
        struct moe_few fs = { be, a, 0, NULL, slot0, fa.split, fa.rchunk, 0 };
        slot0[0] = 0;
        eng_cpu_run(be, few_act, &fs, fs.split);
        f.shared = 1;
        f.n = a->n;
        eng_cpu_run(be, many_down, &f, f.ncs);
    }
}

/* Experts in ascending id over the tokens routed to them: each token sums
 * its experts in a fixed order whatever else is in the batch. */
void eng_cpu_moe_experts(eng_backend *be, const eng_be_moe *a, int e0, int e1)
{
    if (a->n <= MOE_FEW_TOKENS && a->n * a->top_k <= MOE_FEW_SLOTS &&
        a->n * a->top_k + (a->shared ? a->n : 0) <= a->cap)
        moe_few(be, a, e0, e1);
    else
        moe_many(be, a, e0, e1);
}

/* ===== small step ops ===== */

void eng_cpu_scale(eng_backend *be, float *x, int64_t n, float a)
{
    (void)be;
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}

void eng_cpu_keys_select(eng_backend *be, eng_be_keys *keys, int n, const int32_t *sel, int64_t ld,
                         const int *n_sel, int topk)
{
    (void)be;
    for (int i = 0; i < n; i++) {
        int sparse = keys[i].n_ctx > topk;
        keys[i].sel = sparse ? sel + (int64_t)i * ld : NULL;
        keys[i].n_sel = sparse ? n_sel[i] : 0;
    }
}
