/* cpu.h — internals shared by the CPU backend's files (not a public API). */
#ifndef ENG_CPU_H
#define ENG_CPU_H

#include <stdatomic.h>
#include <pthread.h>
#include "../backend.h"
#include "../dev.h"

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
    int spin_iters;                 /* pauses before a waiting thread sleeps or yields (pool.c) */
    eng_cpu_run_desc desc[2];       /* [gen & 1] */
    eng_cpu_scratch *scratch;       /* [n_threads] */
    int avx2;                       /* AVX2 + FMA + F16C kernels usable */
    int avx512;                     /* AVX-512F+BW+VL row tiles (GLM_ENGINE_AVX512=1) */
    int bf16dp;                     /* BF16 linears with AVX512-BF16 hi/lo products (GLM_ENGINE_BF16DP=1) */
    int compute_bf16;               /* --dtype bfloat16 (eng_be_set_compute): BF16 / FP8 linears on BF16 activations */
    int avx512bf16;                 /* ... through vdpbf16ps (the CPU has it and GLM_ENGINE_NO_AVX512BF16 is unset) */
    /* Scratch shared by all threads of one run (split attention partials,
     * split indexer scores): grown on the caller's thread between runs. */
    float *shared_f;
    size_t cap_shared_f;
    /* A device backend (dev.h): ops run there, these threads only serve
     * eng_be_parallel. NULL: the CPU runs every op. */
    const eng_dev_ops *dev_ops;
    eng_dev *dev;
    char name_buf[160];             /* eng_be_describe */
};

/* Attention and the indexer split one query's keys across threads only
 * for batches of fewer queries than threads, at most this many. */
#define ENG_CPU_SPLIT_MAX_Q 64

/* The CPU implementations of backend.h's ops (backend.c dispatches). */
void  eng_cpu_free(eng_backend *be);
void *eng_cpu_alloc(eng_backend *be, size_t bytes);
void  eng_cpu_dealloc(eng_backend *be, void *p);
void eng_cpu_embed(eng_backend *be, const eng_tensor *emb, const int32_t *ids, int n, float *out, int64_t ldo);
void eng_cpu_linear(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                    const float *x, int n, int64_t ldx, float *y, int64_t ldy);
void eng_cpu_linear_f32(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                        const float *x, int n, int64_t ldx, float *y, int64_t ldy);
/* f32 -> bf16 bits, round to nearest even with vcvtneps2bf16's rules:
 * denormals become a signed zero, NaN stays a (quiet) NaN, inf stays inf,
 * finite values past the bf16 range become inf. */
uint16_t eng_cpu_bf16_round(float f);
void eng_cpu_linear_group(eng_backend *be, const eng_be_lin_out *outs, int n_outs, const float *x, int n,
                          int64_t ldx);
void eng_cpu_linear_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                          const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy);
void eng_cpu_linear_t_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                            const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy);
void eng_cpu_rmsnorm(eng_backend *be, const eng_tensor *w, const float *x, int n, int64_t ldx,
                     int dim, float eps, float *y, int64_t ldy);
void eng_cpu_layernorm(eng_backend *be, const eng_tensor *w, const eng_tensor *b, float *x, int n,
                       int64_t ldx, int dim, float eps);
void eng_cpu_rope(eng_backend *be, float *x, int n, int64_t ldx, int n_heads, int64_t hstride,
                  int off, int dim, const int32_t *pos, const float *inv_freq);
/* s[j] = exp(s[j] - mx) for j < n (vmath.h's exp, the same bits in every
 * kernel); returns their sum in j order. */
float eng_cpu_softmax_num(const eng_backend *be, float *s, int n, float mx);
void eng_cpu_silu_mul(eng_backend *be, const float *gate, int64_t ldg, const float *up, int64_t ldu,
                      int n, int dim, float *out, int64_t ldo);
void eng_cpu_add_scaled(eng_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                        const float *a, int n, int dim);
void eng_cpu_gather_rows(eng_backend *be, const float *x, int64_t ldx, const int32_t *rows, int n,
                         int dim, float *out, int64_t ldo);
void eng_cpu_scatter_add_rows(eng_backend *be, float *y, int64_t ldy, const int32_t *rows, const float *a,
                              const float *x, int64_t ldx, int n, int dim);
void eng_cpu_scale(eng_backend *be, float *x, int64_t n, float a);
void eng_cpu_route_topk(eng_backend *be, const eng_be_route *r, const float *logits, int64_t ldl,
                        const float *bias, int n, int32_t *idx, float *wt);
void eng_cpu_moe_experts(eng_backend *be, const eng_be_moe *a, int e0, int e1);
void eng_cpu_cache_store(eng_backend *be, const eng_be_cache *c, const int64_t *slot, int n,
                         const float *src, int64_t lds);
void eng_cpu_cache_load(eng_backend *be, const eng_be_cache *c, int64_t slot, float *out);
void eng_cpu_index_topk(eng_backend *be, const float *q, int64_t ldq, const float *w, int64_t ldw,
                        int n_heads, const eng_be_cache *cache, const eng_be_keys *keys, int n,
                        int topk, int32_t *out, int *n_out);
void eng_cpu_keys_select(eng_backend *be, eng_be_keys *keys, int n, const int32_t *sel, int64_t ld,
                         const int *n_sel, int topk);
void eng_cpu_mla_attend(eng_backend *be, const float *q_lat, int64_t ldql, const float *q_pe, int64_t ldqp,
                        int64_t hsqp, const eng_be_cache *cache, int lat, int n_heads, float scale,
                        const eng_be_keys *keys, int n, float *o, int64_t ldo);

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
/* out[h * ldo + j] = scale * (eng_cpu_dot(ql + h * ldql, rows[j], lat) +
 * eng_cpu_dot(qp + h * ldqp, rows[j] + lat, rope)) for h < nh, j < nr, bit
 * for bit (the MLA scores over [c | k_pe] rows; dots_rows' tiles). */
void  eng_cpu_mla_scores(const eng_backend *be, const float *ql, int64_t ldql, const float *qp, int64_t ldqp, int nh,
                         const float *const *rows, int nr, int lat, int rope, float scale, float *out, int64_t ldo);
/* u[h][0..n) = sum_j p[h * ldp + j] * rows[j][0..n) for h < nh, bit for bit
 * what zeroing u and eng_cpu_axpy per row in j order give (register-blocked). */
void  eng_cpu_wsum(const eng_backend *be, const float *p, int64_t ldp, int nh, const float *const *rows, int nr,
                   int n, float *u, int64_t ldu);
/* s[j] = sum over h < nh in order of (d[h * ldd + j] > 0 ? w[h] * d[h * ldd + j] : 0)
 * for j < n, multiply then add (the DSA indexer's ReLU-weighted head sum):
 * the same bits vectorized over j or not. */
void  eng_cpu_relu_wsum(const eng_backend *be, const float *w, int nh, const float *d, int64_t ldd, int n,
                        float *s);
/* GQA ops (gqa.c): the CPU bodies of backend.h's eng_be_rope_neox,
 * eng_be_add_bias, eng_be_gqa_attend. */
void eng_cpu_rope_neox(eng_backend *be, float *x, int n, int64_t ldx, int n_heads, int64_t hstride,
                       int off, int dim, const int32_t *pos, const float *inv_freq);
void eng_cpu_add_bias(eng_backend *be, float *y, int64_t ldy, const eng_tensor *b, int n, int dim);
void eng_cpu_gqa_attend(eng_backend *be, const float *q, int64_t ldq, int n_heads, int n_kv_heads, int head_dim,
                        const eng_be_cache *kc, const eng_be_cache *vc, float scale, const eng_be_keys *keys,
                        int n, float *o, int64_t ldo);
/* The e4m3 table eng_cpu_cache_span reads: call once before a run. */
void  eng_cpu_fp8_init(void);
/* Values [a, b) of cache row slot: a pointer into an F32 row, or buf
 * (b - a floats) filled from an FP8 row (each value times its tile's scale). */
const float *eng_cpu_cache_span(const eng_be_cache *c, int64_t slot, int a, int b, float *buf);
/* y += a * x */
void  eng_cpu_axpy(const eng_backend *be, float *y, float a, const float *x, int n);

#endif
