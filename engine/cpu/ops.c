/* ops.c — the CPU backend: lifetime, memory, element-wise ops, routing,
 * paged-cache attention and the DSA indexer. */
#include "cpu.h"
#include "vmath.h"
#include "../select.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ===== lifetime and memory ===== */

int eng_be_cpu_create(int n_threads, eng_backend **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256) n_threads = 256;
    eng_backend *be = calloc(1, sizeof *be);
    if (!be) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    be->n_threads = n_threads;
    __builtin_cpu_init();
    /* GLM_ENGINE_PORTABLE=1 forces the plain-C kernels (tests run both). */
    const char *portable = getenv("GLM_ENGINE_PORTABLE");
    be->avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c") && !(portable && *portable == '1');
    /* AVX-512VL row tiles (same bits as AVX2, see matmul.c): opt-in with GLM_ENGINE_AVX512=1,
     * they measured no faster than AVX2 on this Zen 4 VM (docs/perf.md). */
    const char *a512 = getenv("GLM_ENGINE_AVX512");
    be->avx512 = be->avx2 && a512 && *a512 == '1' && __builtin_cpu_supports("avx512f") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    /* BF16 weights through vdpbf16ps with split activations (matmul.c): opt-in with
     * GLM_ENGINE_BF16DP=1 until it is measured on a quiet machine (docs/perf.md). */
    const char *dp = getenv("GLM_ENGINE_BF16DP");
    be->bf16dp = be->avx2 && dp && *dp == '1' && __builtin_cpu_supports("avx512f") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512bf16");
    /* vdpbf16ps for --dtype bfloat16; GLM_ENGINE_NO_AVX512BF16=1 forces the
     * portable path (BF16-rounded activations through the FP32 tiles). */
    const char *nobf = getenv("GLM_ENGINE_NO_AVX512BF16");
    be->avx512bf16 = be->avx2 && !(nobf && *nobf == '1') && __builtin_cpu_supports("avx512f") &&
                     __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                     __builtin_cpu_supports("avx512bf16");
    be->scratch = calloc((size_t)n_threads, sizeof *be->scratch);
    if (!be->scratch || eng_cpu_pool_start(be)) {
        eng_cpu_free(be);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "cannot start %d CPU threads", n_threads);
    }
    *out = be;
    return 0;
}

void eng_cpu_free(eng_backend *be)
{
    if (!be) return;
    eng_cpu_pool_stop(be);
    if (be->scratch)
        for (int i = 0; i < be->n_threads; i++) { free(be->scratch[i].f); free(be->scratch[i].i); }
    free(be->scratch);
    free(be->shared_f);
    free(be);
}

int eng_be_threads(const eng_backend *be) { return be->n_threads; }

void eng_be_parallel(eng_backend *be, eng_be_task fn, void *ctx, int n_tasks) { eng_cpu_run(be, fn, ctx, n_tasks); }

/* Zeroed, 64-byte aligned memory. Large buffers (the KV pool: gigabytes of
 * which a run may touch little) come from anonymous mappings, which the
 * kernel zeroes page by page on first touch, so start-up does not commit the
 * whole pool. A 64-byte header before the returned pointer records how the
 * block was made, for eng_be_dealloc. */
#define BE_ALLOC_HDR  64
#define BE_MMAP_BYTES (1u << 20)

void *eng_cpu_alloc(eng_backend *be, size_t bytes)
{
    (void)be;
    size_t n = ((bytes ? bytes : 1) + 63) & ~(size_t)63;
    if (n > SIZE_MAX - BE_ALLOC_HDR) return NULL;
    size_t total = n + BE_ALLOC_HDR;
    unsigned char *base;
    if (total >= BE_MMAP_BYTES) {
        base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) return NULL;
    } else {
        void *p = NULL;
        if (posix_memalign(&p, 64, total)) return NULL;
        memset(p, 0, total);
        base = p;
    }
    ((size_t *)base)[0] = total;
    return base + BE_ALLOC_HDR;
}

void eng_cpu_dealloc(eng_backend *be, void *p)
{
    (void)be;
    if (!p) return;
    unsigned char *base = (unsigned char *)p - BE_ALLOC_HDR;
    size_t total = ((size_t *)base)[0];
    if (total >= BE_MMAP_BYTES) munmap(base, total);
    else free(base);
}

/* p (holding *cap elements of size el) grown to hold n: p itself when it
 * does, else a reallocation half as large again (at least 1024); NULL on OOM,
 * p then unchanged. */
static void *scratch_grow(void *p, size_t *cap, size_t n, size_t el)
{
    if (n <= *cap) return p;
    size_t c = n < 1024 ? 1024 : n + n / 2;
    void *q = realloc(p, c * el);
    if (q) *cap = c;
    return q;
}

float *eng_cpu_scratch_f(eng_backend *be, int t, size_t nf)
{
    eng_cpu_scratch *s = &be->scratch[t];
    float *p = scratch_grow(s->f, &s->cap_f, nf, sizeof *p);
    if (p) s->f = p;
    return p;
}

int32_t *eng_cpu_scratch_i(eng_backend *be, int t, size_t ni)
{
    eng_cpu_scratch *s = &be->scratch[t];
    int32_t *p = scratch_grow(s->i, &s->cap_i, ni, sizeof *p);
    if (p) s->i = p;
    return p;
}

/* ===== element-wise ===== */

static float vec_elem(const eng_tensor *t, int64_t k)
{
    if (t->dtype == ENG_DT_BF16) return eng_bf16_to_f32(((const uint16_t *)t->data)[k]);
    return ((const float *)t->data)[k];
}

/* out[k] = t's elements [off, off + n) as f32: one loop per dtype, which
 * the compiler vectorizes (vec_elem's per-element dtype test kept a
 * 16-row RMSNorm at ~20 us, ~1.5 % of a batch-16 decode step). */
static void vec_load(const eng_tensor *t, int64_t off, int64_t n, float *out)
{
    if (t->dtype == ENG_DT_BF16) {
        const uint16_t *b = (const uint16_t *)t->data + off;
        for (int64_t k = 0; k < n; k++) out[k] = eng_bf16_to_f32(b[k]);
    } else
        memcpy(out, (const float *)t->data + off, (size_t)n * sizeof *out);
}

void eng_cpu_embed(eng_backend *be, const eng_tensor *emb, const int32_t *ids, int n, float *out, int64_t ldo)
{
    (void)be;
    for (int i = 0; i < n; i++) vec_load(emb, (int64_t)ids[i] * emb->cols, emb->cols, out + i * ldo);
}

/* Weights of a norm: f32 on the stack up to this many, else per element. */
#define NORM_STACK 8192

void eng_cpu_rmsnorm(eng_backend *be, const eng_tensor *w, const float *x, int n, int64_t ldx,
                    int dim, float eps, float *y, int64_t ldy)
{
    float wf[NORM_STACK];
    int conv = dim <= NORM_STACK;
    if (conv) vec_load(w, 0, dim, wf);
    for (int i = 0; i < n; i++) {
        const float *xi = x + i * ldx;
        float ss = eng_cpu_dot(be, xi, xi, dim), *yi = y + i * ldy;
        float r = 1.0f / sqrtf(ss / (float)dim + eps);
        if (conv) for (int k = 0; k < dim; k++) yi[k] = wf[k] * (xi[k] * r);
        else for (int k = 0; k < dim; k++) yi[k] = vec_elem(w, k) * (xi[k] * r);
    }
}

void eng_cpu_layernorm(eng_backend *be, const eng_tensor *w, const eng_tensor *b, float *x, int n,
                      int64_t ldx, int dim, float eps)
{
    (void)be;
    for (int i = 0; i < n; i++) {
        float *xi = x + i * ldx;
        float mean = 0, var = 0;
        for (int k = 0; k < dim; k++) mean += xi[k];
        mean /= (float)dim;
        for (int k = 0; k < dim; k++) var += (xi[k] - mean) * (xi[k] - mean);
        var /= (float)dim;
        float r = 1.0f / sqrtf(var + eps);
        for (int k = 0; k < dim; k++) xi[k] = (xi[k] - mean) * r * vec_elem(w, k) + vec_elem(b, k);
    }
}

void eng_cpu_rope(eng_backend *be, float *x, int n, int64_t ldx, int n_heads, int64_t hstride,
                 int off, int dim, const int32_t *pos, const float *inv_freq)
{
    (void)be;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim / 2; j++) {
            /* Angle in f32 exactly as transformers: position * inv_freq. */
            float ang = (float)pos[i] * inv_freq[j];
            float c = cosf(ang), s = sinf(ang);
            for (int h = 0; h < n_heads; h++) {
                float *p = x + i * ldx + h * hstride + off + 2 * j;
                float a = p[0], b = p[1];
                p[0] = a * c - b * s;
                p[1] = b * c + a * s;
            }
        }
}

/* ===== SiLU and sigmoid (vmath.h's exp) =====
 *
 * silu_mul: out = g / (1 + exp(-g)) * up, evaluated in that order (exp,
 * add, divide, multiply: each an IEEE operation with one rounding) by the
 * same element-wise function in every body: the AVX-512 and AVX2 loops run
 * vmath.h's vector exp, their tails and the portable path eng_vm_exp, all
 * with the same bits. So an element's value depends on nothing but its
 * g and up: not on the kernel, the row count, the column offset or the
 * split over threads below. */

static inline float silu_mul1(float g, float u) { return g / (1.0f + eng_vm_exp(-g)) * u; }
static inline float sigmoid1(float x) { return 1.0f / (1.0f + eng_vm_exp(-x)); }

static void silu_row_ref(const float *g, const float *u, float *o, int n)
{
    for (int k = 0; k < n; k++) o[k] = silu_mul1(g[k], u[k]);
}

static void sigmoid_row_ref(const float *x, float *o, int n)
{
    for (int k = 0; k < n; k++) o[k] = sigmoid1(x[k]);
}

#ifdef ENG_VM_X86
ENG_VM_AVX2 static void silu_row_avx2(const float *g, const float *u, float *o, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 gv = _mm256_loadu_ps(g + k);
        __m256 e = eng_vm_exp8(_mm256_xor_ps(gv, neg));
        _mm256_storeu_ps(o + k, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + k)));
    }
    for (; k < n; k++) o[k] = silu_mul1(g[k], u[k]);       /* the same bits as a lane */
}

ENG_VM_AVX512 static void silu_row_avx512(const float *g, const float *u, float *o, int n)
{
    const __m512 one = _mm512_set1_ps(1.0f), neg = _mm512_set1_ps(-0.0f);
    int k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 gv = _mm512_loadu_ps(g + k);
        __m512 e = eng_vm_exp16(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(gv), _mm512_castps_si512(neg))));
        _mm512_storeu_ps(o + k, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + k)));
    }
    for (; k < n; k++) o[k] = silu_mul1(g[k], u[k]);
}

ENG_VM_AVX2 static void sigmoid_row_avx2(const float *x, float *o, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int k = 0;
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(o + k, _mm256_div_ps(one, _mm256_add_ps(one, eng_vm_exp8(_mm256_xor_ps(_mm256_loadu_ps(x + k), neg)))));
    for (; k < n; k++) o[k] = sigmoid1(x[k]);
}
ENG_VM_AVX2 static void exp_shift_avx2(float *s, int n, float mx)
{
    const __m256 m = _mm256_set1_ps(mx);
    int j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, eng_vm_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), m)));
    for (; j < n; j++) s[j] = eng_vm_exp(s[j] - mx);      /* the same bits as a lane */
}
#endif

/* One row's [0, n) by the kernel the backend's ISA flags select. */
static void silu_row(const eng_backend *be, const float *g, const float *u, float *o, int n)
{
#ifdef ENG_VM_X86
    if (be->avx512) { silu_row_avx512(g, u, o, n); return; }
    if (be->avx2) { silu_row_avx2(g, u, o, n); return; }
#endif
    silu_row_ref(g, u, o, n);
}

/* The router's scores (a few hundred experts: AVX2 at most). */
static void sigmoid_row(const eng_backend *be, const float *x, float *o, int n)
{
#ifdef ENG_VM_X86
    if (be->avx2) { sigmoid_row_avx2(x, o, n); return; }
#endif
    sigmoid_row_ref(x, o, n);
}

/* Softmax numerators: s[j] = exp(s[j] - mx) for j < n, returned summed in
 * j order (attention's softmax, MLA and GQA). Each element by vmath.h's
 * exp, whatever the kernel: the same bits in every body and every tail, so
 * a score's weight depends only on the score and its chunk's maximum. */
float eng_cpu_softmax_num(const eng_backend *be, float *s, int n, float mx)
{
#ifdef ENG_VM_X86
    if (be->avx2) exp_shift_avx2(s, n, mx);
    else
#endif
        for (int j = 0; j < n; j++) s[j] = eng_vm_exp(s[j] - mx);
    float sum = 0;
    for (int j = 0; j < n; j++) sum += s[j];
    return sum;
}

/* Calls of at least SILU_PAR_MIN elements on a backend of several threads
 * (prefill: the dense/shared SwiGLU and the many-token MoE path, which
 * otherwise ran this serially between pool runs) are cut into tasks of
 * whole rows' column blocks: SILU_TASK_COLS columns (a multiple of 16) of
 * SILU_TASK_COLS / dim rows (at least one). The cut depends only on n and
 * dim, not on the thread count (and, element-wise, the bits depend on
 * neither). Below the minimum a pool run costs more than it saves. */
#define SILU_PAR_MIN (1 << 14)
#define SILU_TASK_COLS 4096

struct silu_ctx {
    const eng_backend *be;
    const float *g, *u;
    float *o;
    int64_t ldg, ldu, ldo;
    int n, dim, rows, cblocks;  /* rows per task, column blocks per row */
};

static void silu_task(void *p, int task, int thread)
{
    (void)thread;
    const struct silu_ctx *c = p;
    int i0 = task / c->cblocks * c->rows, c0 = task % c->cblocks * SILU_TASK_COLS;
    int i1 = i0 + c->rows < c->n ? i0 + c->rows : c->n, w = c->dim - c0 < SILU_TASK_COLS ? c->dim - c0 : SILU_TASK_COLS;
    for (int i = i0; i < i1; i++)
        silu_row(c->be, c->g + i * c->ldg + c0, c->u + i * c->ldu + c0, c->o + i * c->ldo + c0, w);
}

void eng_cpu_silu_mul(eng_backend *be, const float *gate, int64_t ldg, const float *up, int64_t ldu,
                     int n, int dim, float *out, int64_t ldo)
{
    if (n <= 0 || dim <= 0) return;
    struct silu_ctx c = { be, gate, up, out, ldg, ldu, ldo, n, dim, 1, 1 };
    if (be->n_threads > 1 && (int64_t)n * dim >= SILU_PAR_MIN) {
        c.cblocks = (dim + SILU_TASK_COLS - 1) / SILU_TASK_COLS;
        c.rows = dim < SILU_TASK_COLS ? SILU_TASK_COLS / dim : 1;
        eng_cpu_run(be, silu_task, &c, c.cblocks * ((n + c.rows - 1) / c.rows));
        return;
    }
    for (int i = 0; i < n; i++) silu_row(be, gate + i * ldg, up + i * ldu, out + i * ldo, dim);
}

void eng_cpu_add_scaled(eng_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                       const float *a, int n, int dim)
{
    for (int i = 0; i < n; i++) eng_cpu_axpy(be, y + i * ldy, a ? a[i] : 1.0f, x + i * ldx, dim);
}

struct gather_ctx {
    const float *x;
    int64_t ldx, ldo;
    const int32_t *rows;
    int n, dim, per;
    float *out;
};

static void gather_task(void *p, int task, int thread)
{
    (void)thread;
    const struct gather_ctx *g = p;
    int i1 = (task + 1) * g->per < g->n ? (task + 1) * g->per : g->n;
    for (int i = task * g->per; i < i1; i++)
        memcpy(g->out + i * g->ldo, g->x + g->rows[i] * g->ldx, (size_t)g->dim * sizeof *g->out);
}

/* Split over the pool from this many floats: the MoE's gather of a batch-16
 * decode step (64 rows x 1024) took ~40 us on the main thread alone, its
 * destination cold after the experts streamed through the caches. */
#define GATHER_POOL_MIN 16384

void eng_cpu_gather_rows(eng_backend *be, const float *x, int64_t ldx, const int32_t *rows, int n,
                        int dim, float *out, int64_t ldo)
{
    struct gather_ctx g = { x, ldx, ldo, rows, n, dim, n, out };
    if ((int64_t)n * dim >= GATHER_POOL_MIN && be->n_threads > 1 && n > 1) {
        g.per = (n + be->n_threads - 1) / be->n_threads;
        eng_cpu_run(be, gather_task, &g, (n + g.per - 1) / g.per);
        return;
    }
    gather_task(&g, 0, 0);
}

void eng_cpu_scatter_add_rows(eng_backend *be, float *y, int64_t ldy, const int32_t *rows, const float *a,
                             const float *x, int64_t ldx, int n, int dim)
{
    for (int i = 0; i < n; i++) eng_cpu_axpy(be, y + rows[i] * ldy, a ? a[i] : 1.0f, x + i * ldx, dim);
}

/* ===== routing ===== */

/* Index of the largest v[k] over k < n with !taken[k]; ties → lowest index. */
static int argmax_free(const float *v, const unsigned char *taken, int n)
{
    int best = -1;
    for (int k = 0; k < n; k++)
        if (!taken[k] && (best < 0 || v[k] > v[best])) best = k;
    return best;
}

void eng_cpu_route_topk(eng_backend *be, const eng_be_route *r, const float *logits, int64_t ldl,
                       const float *bias, int n, int32_t *idx, float *wt)
{
    int E = r->n_experts, G = r->n_group, per = E / G;
    float *s = eng_cpu_scratch_f(be, 0, (size_t)(2 * E + G));
    unsigned char taken[4096 + 64];
    if (!s) return;
    float *c = s + E, *gs = s + 2 * E;
    for (int i = 0; i < n; i++) {
        sigmoid_row(be, logits + i * ldl, s, E);          /* s[e] = 1 / (1 + exp(-logit)) */
        for (int e = 0; e < E; e++) c[e] = s[e] + bias[e];
        if (G > 1) {
            /* Group score = sum of its two best choice scores; keep topk_group groups. */
            for (int g = 0; g < G; g++) {
                memset(taken, 0, (size_t)per);
                int a = argmax_free(c + g * per, taken, per);
                if (a >= 0) taken[a] = 1;
                int b = argmax_free(c + g * per, taken, per);
                if (a < 0 || b < 0) { gs[g] = -INFINITY; continue; }
                gs[g] = c[g * per + a] + c[g * per + b];
            }
            memset(taken, 0, (size_t)G);
            for (int k = 0; k < r->topk_group; k++) {
                int g = argmax_free(gs, taken, G);
                if (g >= 0) taken[g] = 1;
            }
            for (int g = 0; g < G; g++)
                if (!taken[g])
                    for (int e = 0; e < per; e++) c[g * per + e] = -INFINITY;
        }
        memset(taken, 0, (size_t)E);
        for (int k = 0; k < r->top_k; k++) {
            int e = argmax_free(c, taken, E);
            if (e >= 0) taken[e] = 1;
        }
        float sum = 0;
        int k = 0;
        for (int e = 0; e < E; e++)         /* ascending expert id */
            if (taken[e]) { idx[i * r->top_k + k] = e; wt[i * r->top_k + k] = s[e]; sum += s[e]; k++; }
        for (k = 0; k < r->top_k; k++) {
            if (r->norm_topk_prob) wt[i * r->top_k + k] /= sum + 1e-20f;
            wt[i * r->top_k + k] *= r->routed_scaling;
        }
    }
}

/* ===== paged cache ===== */

/* e4m3 byte → value, built once. */
static float g_e4m3[256];
static pthread_once_t g_e4m3_once = PTHREAD_ONCE_INIT;
static void e4m3_init(void)
{
    for (int i = 0; i < 256; i++) g_e4m3[i] = eng_fp8_to_f32((uint8_t)i);
}

/* A row's tiling ranges: [0, split) and [split, dim) or, with head > 0,
 * every [j * head, (j + 1) * head); tiles of ENG_CACHE_FP8_TILE restart at
 * each range. */
static int tiles_in(int n) { return (n + ENG_CACHE_FP8_TILE - 1) / ENG_CACHE_FP8_TILE; }

static int fp8_tiles(int dim, int split, int head)
{
    return head > 0 ? dim / head * tiles_in(head) : tiles_in(split) + tiles_in(dim - split);
}

static int n_ranges(const eng_be_cache *c) { return c->head > 0 ? c->dim / c->head : 2; }

/* Range r: [*lo, *hi), its first tile's index returned. */
static int range_at(const eng_be_cache *c, int r, int *lo, int *hi)
{
    if (c->head > 0) {
        *lo = r * c->head;
        *hi = *lo + c->head;
        return r * tiles_in(c->head);
    }
    *lo = r ? c->split : 0;
    *hi = r ? c->dim : c->split;
    return r ? tiles_in(c->split) : 0;
}

static size_t fp8_scales_at(int dim) { return ((size_t)dim + 3) & ~(size_t)3; }

size_t eng_be_cache_row_bytes(enum eng_cache_dtype dt, int dim, int split)
{
    if (dt == ENG_CACHE_FP8) return fp8_scales_at(dim) + 4 * (size_t)fp8_tiles(dim, split, 0);
    return (size_t)dim * sizeof(float);
}

size_t eng_be_cache_row_bytes_heads(enum eng_cache_dtype dt, int dim, int head)
{
    if (dt == ENG_CACHE_FP8) return fp8_scales_at(dim) + 4 * (size_t)fp8_tiles(dim, dim, head);
    return (size_t)dim * sizeof(float);
}

/* Tiles [a, b) range by range; t: the tile's index. */
#define FOR_TILES(c, a, b, t, body) do {                                                    \
    int t = 0;                                                                              \
    for (int r_ = 0; r_ < n_ranges(c); r_++) {                                              \
        int lo_, hi_;                                                                       \
        range_at((c), r_, &lo_, &hi_);                                                      \
        for (int a = lo_; a < hi_; a += ENG_CACHE_FP8_TILE, t++) {                          \
            int b = a + ENG_CACHE_FP8_TILE < hi_ ? a + ENG_CACHE_FP8_TILE : hi_;            \
            body                                                                            \
        }                                                                                   \
    }                                                                                       \
} while (0)

/* Per tile: scale = amax / 448 (the largest e4m3), each value rounded to
 * the nearest e4m3 of x / scale (ties to even). A zero tile keeps scale 1. */
static void fp8_row_store(const eng_be_cache *c, uint8_t *row, const float *x)
{
    float *sc = (float *)(row + fp8_scales_at(c->dim));
    FOR_TILES(c, a, b, t, {
        float amax = 0;
        for (int k = a; k < b; k++) amax = fmaxf(amax, fabsf(x[k]));
        float s = amax > 0 && isfinite(amax) ? amax / 448.0f : 1.0f;
        sc[t] = s;
        for (int k = a; k < b; k++) row[k] = eng_f32_to_fp8(x[k] / s);
    });
}

static void fp8_row_load(const eng_be_cache *c, const uint8_t *row, float *out)
{
    const float *sc = (const float *)(row + fp8_scales_at(c->dim));
    FOR_TILES(c, a, b, t, {
        float s = sc[t];
        for (int k = a; k < b; k++) out[k] = g_e4m3[row[k]] * s;
    });
}

static inline const unsigned char *cache_row(const eng_be_cache *c, int64_t slot)
{
    return (const unsigned char *)c->data + (size_t)slot * c->row_bytes;
}

void eng_cpu_cache_store(eng_backend *be, const eng_be_cache *c, const int64_t *slot, int n,
                        const float *src, int64_t lds)
{
    (void)be;
    for (int i = 0; i < n; i++) {
        unsigned char *row = (unsigned char *)c->data + (size_t)slot[i] * c->row_bytes;
        if (c->dtype == ENG_CACHE_FP8) fp8_row_store(c, row, src + i * lds);
        else memcpy(row, src + i * lds, (size_t)c->dim * sizeof *src);
    }
}

void eng_cpu_cache_load(eng_backend *be, const eng_be_cache *c, int64_t slot, float *out)
{
    (void)be;
    pthread_once(&g_e4m3_once, e4m3_init);
    if (c->dtype == ENG_CACHE_FP8) fp8_row_load(c, cache_row(c, slot), out);
    else memcpy(out, cache_row(c, slot), (size_t)c->dim * sizeof *out);
}

static inline int64_t key_slot(const eng_be_keys *k, int pos)
{
    return (int64_t)k->block_table[pos / k->block_size] * k->block_size + pos % k->block_size;
}

/* The values of position pos: a pointer into an F32 cache, or buf filled
 * from an FP8 row. */
static inline const float *key_row(const eng_be_cache *c, const eng_be_keys *k, int pos, float *buf)
{
    const unsigned char *row = cache_row(c, key_slot(k, pos));
    if (c->dtype != ENG_CACHE_FP8) return (const float *)row;
    fp8_row_load(c, row, buf);
    return buf;
}

void eng_cpu_fp8_init(void) { pthread_once(&g_e4m3_once, e4m3_init); }

const float *eng_cpu_cache_span(const eng_be_cache *c, int64_t slot, int a, int b, float *buf)
{
    const unsigned char *row = cache_row(c, slot);
    if (c->dtype != ENG_CACHE_FP8) return (const float *)row + a;
    const float *sc = (const float *)(row + fp8_scales_at(c->dim));
    const int T = ENG_CACHE_FP8_TILE;
    for (int k = a; k < b;) {           /* tile by tile: one scale per run of values */
        int lo, hi, t0 = range_at(c, c->head > 0 ? k / c->head : k >= c->split, &lo, &hi);
        int t = (k - lo) / T, end = lo + (t + 1) * T;
        if (end > hi) end = hi;
        if (end > b) end = b;
        float s = sc[t0 + t];
        for (; k < end; k++) buf[k - a] = g_e4m3[row[k]] * s;
    }
    return buf;
}

/* ===== DSA indexer ===== */

/* Keys per scoring task when one query's keys are split across threads. */
#define IDX_CHUNK 512

struct idx_ctx {
    eng_backend *be;
    const float *q, *w;
    const eng_be_cache *cache;
    int64_t ldq, ldw;
    int n_heads, topk;
    const eng_be_keys *keys;
    int32_t *out;
    int *n_out;
    /* Split mode (few queries, long contexts): phase 1 scores key chunks
     * into scores[i * ld_scores ...], phase 2 selects per query. */
    float *scores;
    int64_t ld_scores;
    int *chunk0;                /* [n + 1]: first chunk task of query i */
};

/* Keys per scoring tile: one eng_cpu_dots_rows call scores the heads x
 * IDX_TILE keys from registers (tiles of 4 heads x 3 keys), each key read
 * from L1 by every head group instead of one head group at a time. */
#define IDX_TILE 48

/* Floats of idx_score's buf: an FP8 tile's dequantized keys and the dots. */
static size_t idx_ws(const struct idx_ctx *c)
{
    return (size_t)IDX_TILE * ((c->cache->dtype == ENG_CACHE_FP8 ? (size_t)c->cache->dim : 0) + (size_t)c->n_heads);
}

/* Heap order: "a before b" when a is the worse candidate (lower score;
 * on a tie the later position), so the root is the one to evict. */
static int worse(const float *sc, int a, int b) { return sc[a] < sc[b] || (sc[a] == sc[b] && a > b); }

static void sift_down(int32_t *h, int n, int i, const float *sc)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(sc, h[l], h[m])) m = l;
        if (r < n && worse(sc, h[r], h[m])) m = r;
        if (m == i) return;
        int32_t t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* sc[t - t0] = I(t) for keys [t0, t1) of query i. Each key's score is a
 * function of that key alone (each head's dot bit-identical to
 * eng_cpu_dot, heads summed in head order), so any split of the keys
 * across tasks or tiles gives the same scores bit for bit. buf: idx_ws. */
static void idx_score(const struct idx_ctx *c, int i, int t0, int t1, float *sc, float *buf)
{
    const eng_be_keys *k = &c->keys[i];
    int dim = c->cache->dim, nh = c->n_heads;
    bool fp8 = c->cache->dtype == ENG_CACHE_FP8;
    float *d = buf + (fp8 ? (size_t)IDX_TILE * dim : 0);
    const float *q = c->q + i * c->ldq, *w = c->w + i * c->ldw;
    const float *rows[IDX_TILE];
    for (int ta = t0; ta < t1; ta += IDX_TILE) {
        int nr = t1 - ta < IDX_TILE ? t1 - ta : IDX_TILE;
        for (int j = 0; j < nr; j++) rows[j] = key_row(c->cache, k, ta + j, fp8 ? buf + (size_t)j * dim : buf);
        eng_cpu_dots_rows(c->be, q, dim, nh, rows, nr, dim, d, IDX_TILE);
        eng_cpu_relu_wsum(c->be, w, nh, d, IDX_TILE, nr, sc + ta - t0);
    }
}

/* The K best of sc[0..n) by the heap: the reference order (higher score
 * first, on a tie the earlier position), also right with NaN scores
 * (idx_select's path when a score is NaN). */
static void idx_select_heap(const float *sc, int n, int K, int32_t *out)
{
    /* Keep the K best in a heap whose root is the worst kept. */
    for (int t = 0; t < K; t++) out[t] = t;
    for (int j = K / 2 - 1; j >= 0; j--) sift_down(out, K, j, sc);
    for (int t = K; t < n; t++)
        if (worse(sc, out[0], t)) { out[0] = t; sift_down(out, K, 0, sc); }
    qsort(out, (size_t)K, sizeof *out, cmp_i32);
}

/* The K best of sc[0..n) into out (ascending positions), the heap's set:
 * with v the K-th largest score, every key scoring above v and the
 * earliest of those scoring v, in one ascending scan (no sort). tmp: n
 * floats. */
static void idx_select(const float *sc, int n, int K, int32_t *out, float *tmp)
{
    for (int t = 0; t < n; t++) {
        if (isnan(sc[t])) { idx_select_heap(sc, n, K, out); return; }
        tmp[t] = sc[t];
    }
    float v = eng_kth_largest(tmp, n, K);
    int above = 0;
    for (int t = 0; t < n; t++) above += sc[t] > v;
    int ties = K - above, m = 0;
    for (int t = 0; t < n; t++)
        if (sc[t] > v || (sc[t] == v && ties-- > 0)) out[m++] = t;
}

static void idx_task(void *p, int i, int thread)
{
    struct idx_ctx *c = p;
    const eng_be_keys *k = &c->keys[i];
    int n = k->n_ctx, K = c->topk;
    int32_t *out = c->out + (int64_t)i * K;
    if (n <= K) {                       /* every causal key is selected */
        for (int t = 0; t < n; t++) out[t] = t;
        c->n_out[i] = n;
        return;
    }
    /* [scores if unsplit: n][select's copy: n][idx_score's buf] */
    float *ws = eng_cpu_scratch_f(c->be, thread, 2 * (size_t)n + (c->scores ? 0 : idx_ws(c)));
    if (!ws) { c->n_out[i] = 0; return; }
    float *sc, *tmp = ws;
    if (c->scores) sc = c->scores + i * c->ld_scores;       /* scored by idx_chunk_task */
    else {
        sc = ws + n;
        idx_score(c, i, 0, n, sc, sc + n);
    }
    idx_select(sc, n, K, out, tmp);
    c->n_out[i] = K;
}

static void idx_chunk_task(void *p, int task, int thread)
{
    struct idx_ctx *c = p;
    int i = 0;
    while (task >= c->chunk0[i + 1]) i++;
    int t0 = (task - c->chunk0[i]) * IDX_CHUNK, t1 = t0 + IDX_CHUNK;
    if (t1 > c->keys[i].n_ctx) t1 = c->keys[i].n_ctx;
    float *buf = eng_cpu_scratch_f(c->be, thread, idx_ws(c));
    if (!buf) { for (int t = t0; t < t1; t++) c->scores[i * c->ld_scores + t] = -INFINITY; return; }
    idx_score(c, i, t0, t1, c->scores + i * c->ld_scores + t0, buf);
}

/* Shared (not per-thread) scratch of the split modes, grown on the
 * caller's thread before a run; NULL on OOM (callers then run unsplit,
 * which gives the same bits). */
static float *shared_f(eng_backend *be, size_t nf)
{
    float *p = scratch_grow(be->shared_f, &be->cap_shared_f, nf, sizeof *p);
    if (p) be->shared_f = p;
    return p;
}

void eng_cpu_index_topk(eng_backend *be, const float *q, int64_t ldq, const float *w, int64_t ldw,
                       int n_heads, const eng_be_cache *cache, const eng_be_keys *keys, int n,
                       int topk, int32_t *out, int *n_out)
{
    pthread_once(&g_e4m3_once, e4m3_init);
    struct idx_ctx c = { be, q, w, cache, ldq, ldw, n_heads, topk, keys, out, n_out, NULL, 0, NULL };
    /* Fewer queries than threads (decode): one query per task would leave
     * threads idle while the indexer scores every key of a long context,
     * so the keys are scored in chunks across threads first. */
    int max_ctx = 0;
    for (int i = 0; i < n; i++) if (keys[i].n_ctx > max_ctx) max_ctx = keys[i].n_ctx;
    int chunk0[ENG_CPU_SPLIT_MAX_Q + 1];
    if (n < be->n_threads && n <= ENG_CPU_SPLIT_MAX_Q && max_ctx > topk && max_ctx > IDX_CHUNK &&
        (c.scores = shared_f(be, (size_t)n * (size_t)max_ctx)) != NULL) {
        c.ld_scores = max_ctx;
        c.chunk0 = chunk0;
        chunk0[0] = 0;
        for (int i = 0; i < n; i++)
            chunk0[i + 1] = chunk0[i] + (keys[i].n_ctx > topk ? (keys[i].n_ctx + IDX_CHUNK - 1) / IDX_CHUNK : 0);
        eng_cpu_run(be, idx_chunk_task, &c, chunk0[n]);
    }
    eng_cpu_run(be, idx_task, &c, n);
}

/* ===== absorbed MLA attention =====
 *
 * Keys are cut into fixed chunks of ATT_CHUNK positions (position j of
 * the query's key list, whatever the batch). Per head and chunk: scores,
 * m = their max, p = exp(s - m), l = sum p, u = sum p * c (row order):
 * a partial. Partials are folded in chunk order, (M, L, U) ⊕ (m, l, u) =
 * (max, L a + l b, U a + u b) with a = exp(M - max), b = exp(m - max),
 * and o = U / L. A chunk's partial depends only on the query and the
 * chunk's rows, and the fold always runs chunk 0, 1, 2, ... with the same
 * code, so computing the chunks in one task or in many (decode at batch 1:
 * chunks spread over the threads, partials kept, then folded) gives the
 * same bits: batch invariance holds whatever the grouping. */
#define ATT_CHUNK 256

struct att_ctx {
    eng_backend *be;
    const float *q_lat, *q_pe;
    const eng_be_cache *cache;
    int64_t ldql, ldqp, hsqp, ldo;
    int lat, rope, n_heads, heads_per_task, tasks_per_token;
    float scale;
    const eng_be_keys *keys;
    float *o;
    /* Split mode: part[((chunk0[i] + ch) * n_heads + h) * (lat + 2) ...] =
     * (m, l, u[lat]) of chunk ch of query i, head h. */
    float *part;
    int *chunk0;                /* [n + 1] */
};

static inline int att_nk(const eng_be_keys *k) { return k->sel ? k->n_sel : k->n_ctx; }

/* Partials of heads [h0, h0 + nh) of query i over keys [j0, j1):
 * m[h], l[h], u[h * ldu ...]. The chunk's rows (FP8: dequantized once
 * into the chunk buffer) are scored in register tiles of heads x rows,
 * then summed in the value pass, blocked by eng_cpu_wsum: every row is
 * read from L1/L2 a few times instead of each head re-reading it, and
 * every per-head dot and sum keeps the one order it has alone.
 * ws: att_ws(c, nh) floats. */
static void att_chunk(const struct att_ctx *c, int i, int h0, int nh, int j0, int j1, float *ws,
                      float *m, float *l, float *u, int64_t ldu)
{
    const eng_be_keys *k = &c->keys[i];
    const eng_be_cache *cache = c->cache;
    int nj = j1 - j0, dim = c->lat + c->rope;
    bool fp8 = cache->dtype == ENG_CACHE_FP8;
    float *sc = ws, *rbuf = sc + (size_t)nh * ATT_CHUNK;
    const float *rows[ATT_CHUNK];
    const float *ql0 = c->q_lat + i * c->ldql + h0 * c->lat, *qp0 = c->q_pe + i * c->ldqp + h0 * c->hsqp;
    for (int j = j0; j < j1; j++) {
        const unsigned char *raw = cache_row(cache, key_slot(k, k->sel ? k->sel[j] : j));
        const float *row = (const float *)raw;
        if (fp8) {              /* dequantized once, kept for the value pass */
            float *b = rbuf + (size_t)(j - j0) * dim;
            fp8_row_load(cache, raw, b);
            row = b;
        }
        rows[j - j0] = row;
    }
    /* s = scale * (q_lat . c + q_pe . k_pe), each dot bit-identical to eng_cpu_dot */
    eng_cpu_mla_scores(c->be, ql0, c->lat, qp0, c->hsqp, nh, rows, nj, c->lat, c->rope, c->scale, sc, ATT_CHUNK);
    for (int h = 0; h < nh; h++) {                  /* the chunk's softmax numerators per head, in f32 */
        float *s_h = sc + h * ATT_CHUNK, mx = -INFINITY;
        for (int j = 0; j < nj; j++) if (s_h[j] > mx) mx = s_h[j];
        m[h] = mx;
        l[h] = eng_cpu_softmax_num(c->be, s_h, nj, mx);
    }
    eng_cpu_wsum(c->be, sc, ATT_CHUNK, nh, rows, nj, c->lat, u, ldu);
}

/* Floats of att_chunk's ws for nh heads. */
static size_t att_ws(const struct att_ctx *c, int nh)
{
    size_t dim = (size_t)(c->lat + c->rope);
    return (size_t)nh * ATT_CHUNK + (c->cache->dtype == ENG_CACHE_FP8 ? ATT_CHUNK * dim : 0);
}

#ifdef ENG_VM_X86
/* The loops of att_fold and att_finish 8 lanes at a time: products and
 * sums as the scalar loops round them (no FMA), so the same bits. */
ENG_VM_AVX2 static void att_mix_avx2(float *U, float a, const float *u, float b, int n)
{
    const __m256 av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
    int k = 0;
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(U + k, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(U + k), av),
                                              _mm256_mul_ps(_mm256_loadu_ps(u + k), bv)));
    for (; k < n; k++) U[k] = U[k] * a + u[k] * b;
}
ENG_VM_AVX2 static void att_scale_avx2(float *U, float s, int n)
{
    const __m256 sv = _mm256_set1_ps(s);
    int k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(U + k, _mm256_mul_ps(_mm256_loadu_ps(U + k), sv));
    for (; k < n; k++) U[k] *= s;
}
#endif

/* (M, L, U) ⊕= (m, l, u) for one head; first: the state is empty. */
static void att_fold(const eng_backend *be, float *M, float *L, float *U, float m, float l, const float *u, int lat,
                     bool first)
{
    if (first) {
        *M = m;
        *L = l;
        memcpy(U, u, (size_t)lat * sizeof *U);
        return;
    }
    float mx = m > *M ? m : *M, a = eng_vm_exp(*M - mx), b = eng_vm_exp(m - mx);
    *L = *L * a + l * b;
#ifdef ENG_VM_X86
    if (be->avx2) att_mix_avx2(U, a, u, b, lat);
    else
#endif
        for (int k = 0; k < lat; k++) U[k] = U[k] * a + u[k] * b;
    *M = mx;
}

static void att_finish(const eng_backend *be, float *U, float L, int lat)
{
    float inv = 1.0f / L;
#ifdef ENG_VM_X86
    if (be->avx2) { att_scale_avx2(U, inv, lat); return; }
#endif
    for (int k = 0; k < lat; k++) U[k] *= inv;
}

/* Heads [h0, h1) of query i, every chunk in order, folded as they come
 * (U accumulates in o itself). */
static void att_task(void *p, int task, int thread)
{
    struct att_ctx *c = p;
    int i = task / c->tasks_per_token, h0 = task % c->tasks_per_token * c->heads_per_task;
    int h1 = h0 + c->heads_per_task < c->n_heads ? h0 + c->heads_per_task : c->n_heads;
    int nk = att_nk(&c->keys[i]), nh = h1 - h0;
    float *o = c->o + i * c->ldo + h0 * c->lat;
    if (nk <= 0) { memset(o, 0, (size_t)nh * c->lat * sizeof *o); return; }
    size_t nws = att_ws(c, nh);
    float *ws = eng_cpu_scratch_f(c->be, thread, nws + (size_t)nh * (c->lat + 4));
    if (!ws) { memset(o, 0, (size_t)nh * c->lat * sizeof *o); return; }
    float *m = ws + nws, *l = m + nh, *M = l + nh, *L = M + nh, *u = L + nh;
    if (nk <= ATT_CHUNK) {      /* one chunk (decode): its u summed into o, the fold's copy skipped */
        att_chunk(c, i, h0, nh, 0, nk, ws, m, l, o, c->lat);
        for (int h = 0; h < nh; h++) att_finish(c->be, o + h * c->lat, l[h], c->lat);
        return;
    }
    for (int j0 = 0; j0 < nk; j0 += ATT_CHUNK) {
        int j1 = j0 + ATT_CHUNK < nk ? j0 + ATT_CHUNK : nk;
        att_chunk(c, i, h0, nh, j0, j1, ws, m, l, u, c->lat);
        for (int h = 0; h < nh; h++)
            att_fold(c->be, &M[h], &L[h], o + h * c->lat, m[h], l[h], u + h * c->lat, c->lat, j0 == 0);
    }
    for (int h = 0; h < nh; h++) att_finish(c->be, o + h * c->lat, L[h], c->lat);
}

/* Split mode, phase 1: one chunk of one query, all heads. */
static void att_chunk_task(void *p, int task, int thread)
{
    struct att_ctx *c = p;
    int i = 0;
    while (task >= c->chunk0[i + 1]) i++;
    int nk = att_nk(&c->keys[i]), j0 = (task - c->chunk0[i]) * ATT_CHUNK;
    int j1 = j0 + ATT_CHUNK < nk ? j0 + ATT_CHUNK : nk, nh = c->n_heads, st = c->lat + 2;
    float *pt = c->part + (size_t)task * nh * st;
    float *ws = eng_cpu_scratch_f(c->be, thread, att_ws(c, nh) + 2 * (size_t)nh);
    if (!ws) {                      /* OOM: a partial that contributes nothing */
        for (int h = 0; h < nh; h++) { pt[h * st] = -INFINITY; pt[h * st + 1] = 0; memset(pt + h * st + 2, 0, (size_t)c->lat * sizeof *pt); }
        return;
    }
    float *m = ws + att_ws(c, nh), *l = m + nh;
    att_chunk(c, i, 0, nh, j0, j1, ws, m, l, pt + 2, st);
    for (int h = 0; h < nh; h++) { pt[h * st] = m[h]; pt[h * st + 1] = l[h]; }
}

/* Split mode, phase 2: query i's partials folded in chunk order. */
static void att_fold_task(void *p, int i, int thread)
{
    struct att_ctx *c = p;
    int nh = c->n_heads, st = c->lat + 2, nch = c->chunk0[i + 1] - c->chunk0[i];
    float *o = c->o + i * c->ldo;
    if (nch == 0) { memset(o, 0, (size_t)nh * c->lat * sizeof *o); return; }
    for (int h = 0; h < nh; h++) {
        float M = 0, L = 0, *U = o + h * c->lat;
        for (int ch = 0; ch < nch; ch++) {
            const float *pt = c->part + ((size_t)(c->chunk0[i] + ch) * nh + h) * st;
            att_fold(c->be, &M, &L, U, pt[0], pt[1], pt + 2, c->lat, ch == 0);
        }
        att_finish(c->be, U, L, c->lat);
    }
}

void eng_cpu_mla_attend(eng_backend *be, const float *q_lat, int64_t ldql, const float *q_pe, int64_t ldqp,
                       int64_t hsqp, const eng_be_cache *cache, int lat, int n_heads, float scale,
                       const eng_be_keys *keys, int n, float *o, int64_t ldo)
{
    pthread_once(&g_e4m3_once, e4m3_init);
    struct att_ctx c = { be, q_lat, q_pe, cache, ldql, ldqp, hsqp, ldo, lat, cache->dim - lat, n_heads, n_heads, 1,
                         scale, keys, o, NULL, NULL };
    /* Fewer queries than threads with long key lists (decode at batch 1):
     * chunks across the threads, all heads per task (each row read once). */
    int max_nk = 0;
    for (int i = 0; i < n; i++) if (att_nk(&keys[i]) > max_nk) max_nk = att_nk(&keys[i]);
    if (n < be->n_threads && n <= ENG_CPU_SPLIT_MAX_Q && max_nk > ATT_CHUNK) {
        int chunk0[ENG_CPU_SPLIT_MAX_Q + 1];
        chunk0[0] = 0;
        for (int i = 0; i < n; i++) chunk0[i + 1] = chunk0[i] + (att_nk(&keys[i]) + ATT_CHUNK - 1) / ATT_CHUNK;
        c.part = shared_f(be, (size_t)chunk0[n] * (size_t)n_heads * (size_t)(lat + 2));
        if (c.part) {
            c.chunk0 = chunk0;
            eng_cpu_run(be, att_chunk_task, &c, chunk0[n]);
            eng_cpu_run(be, att_fold_task, &c, n);
            return;
        }
    }
    /* Otherwise heads grouped so each task reads its rows once for all its
     * heads, with enough tasks to keep every thread busy. */
    int groups = (be->n_threads + n - 1) / n;
    if (groups > n_heads) groups = n_heads;
    if (groups < 1) groups = 1;
    c.heads_per_task = (n_heads + groups - 1) / groups;
    c.tasks_per_token = (n_heads + c.heads_per_task - 1) / c.heads_per_task;
    eng_cpu_run(be, att_task, &c, n * c.tasks_per_token);
}
