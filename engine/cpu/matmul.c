/* matmul.c — weight x activation products over BF16 / F32 / FP8 weights.
 *
 * Decode at batch 1 is a stream of matrix-vector products: memory bound, so
 * the kernels read each weight byte once, convert in registers (BF16: shift;
 * FP8 E4M3: re-bias into an F16 and convert with F16C, the 2^8 exponent
 * difference folded into the block scale) and accumulate in f32. Two token
 * rows share each weight row load (prefill, batches).
 *
 * Batch invariance: a token's result is computed by the same sequence of
 * vector FMAs whether it is processed in a pair or alone. */
#include "cpu.h"

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INL __attribute__((always_inline)) static inline

/* ===== scalar element loads (tails and the portable path) ===== */

static inline float ld1_f32(const float *p, int64_t k) { return p[k]; }
static inline float ld1_bf16(const uint16_t *p, int64_t k) { return eng_bf16_to_f32(p[k]); }
/* FP8 scaled like the vector path: the table holds value / 256. */
static float g_fp8_lut[256];
static pthread_once_t g_lut_once = PTHREAD_ONCE_INIT;
static void lut_init(void)
{
    for (int i = 0; i < 256; i++) g_fp8_lut[i] = eng_fp8_to_f32((uint8_t)i) / 256.0f;
}
static inline float ld1_fp8(const uint8_t *p, int64_t k) { return g_fp8_lut[p[k]]; }

/* ===== AVX2 loads ===== */

AVX2 INL __m256 ld8_f32(const float *p) { return _mm256_loadu_ps(p); }
AVX2 INL __m256 ld8_bf16(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
/* e4m3 bits s eeee mmm → f16 bits s 0eeee mmm0000000: the same value / 2^8
 * (F16 exponent bias 15 vs 7), subnormals included. Byte into the high half
 * of a 16-bit lane (unpack with zero), arithmetic shift right by one, clear
 * the copied sign bit 14: three cheap ops per 8 weights before F16C. */
AVX2 INL __m256 ld8_fp8(const uint8_t *p)
{
    __m128i b = _mm_unpacklo_epi8(_mm_setzero_si128(), _mm_loadl_epi64((const __m128i *)p));
    __m128i h = _mm_and_si128(_mm_srai_epi16(b, 1), _mm_set1_epi16((short)0xbfff));
    return _mm256_cvtph_ps(h);
}
/* Four vectors (32 weights) at once. FP8 converts 16 lanes per integer op. */
#define LD32(SUF, p, w0, w1, w2, w3) do { w0 = ld8_##SUF(p); w1 = ld8_##SUF((p) + 8);     \
    w2 = ld8_##SUF((p) + 16); w3 = ld8_##SUF((p) + 24); } while (0)
AVX2 INL __m256i fp8x16_to_f16(const uint8_t *p)
{
    __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(v, 8), 1), _mm256_set1_epi16((short)0xbfff));
}
#define LD32_fp8(p, w0, w1, w2, w3) do { __m256i a_ = fp8x16_to_f16(p), b_ = fp8x16_to_f16((p) + 16); \
    w0 = _mm256_cvtph_ps(_mm256_castsi256_si128(a_)); w1 = _mm256_cvtph_ps(_mm256_extracti128_si256(a_, 1)); \
    w2 = _mm256_cvtph_ps(_mm256_castsi256_si128(b_)); w3 = _mm256_cvtph_ps(_mm256_extracti128_si256(b_, 1)); } while (0)
#define LD32_f32(p, w0, w1, w2, w3) LD32(f32, p, w0, w1, w2, w3)
#define LD32_bf16(p, w0, w1, w2, w3) LD32(bf16, p, w0, w1, w2, w3)

AVX2 INL float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Tokens sharing one weight-row pass (registers: 2 tokens x 4 chains). */
#define ROW_NT 2
#ifndef TASKS_PER_THREAD
#define TASKS_PER_THREAD 1
#endif

/* ===== kernels, one set per weight dtype =====
 *
 * rowdot: out[t] = W_row . x[t] for NT (1 or ROW_NT) tokens. FP8 rows are summed
 *         per 128-column block, each block sum times its scale (sc[block]).
 * colacc: y[0..nc) = sum_r x[r] * W[r][c0..c0+nc) (transposed product) with
 *         per-row multipliers xm[r] (FP8 block scale; 1 otherwise). */
#define DEF_KERNELS(SUF, T, BLOCKED)                                                            \
AVX2 INL void rowdot_avx_##SUF##_n(const T *w, const float *sc, int64_t cols,                   \
                                   const float *const *x, const int NT, float *out)             \
{                                                                                               \
    /* Four independent chains per token hide the FMA latency (one chain                  */  \
    /* would cap a core at ~2 floats/cycle, below its share of the bandwidth).            */  \
    __m256 acc[ROW_NT][4], bacc[ROW_NT][4];                                                     \
    float tail[ROW_NT] = { 0 };                                                                 \
    for (int t = 0; t < NT; t++) for (int j = 0; j < 4; j++) acc[t][j] = _mm256_setzero_ps();  \
    int64_t bw = BLOCKED ? ENG_FP8_BLOCK : cols;                                                \
    for (int64_t c0 = 0; c0 < cols; c0 += bw) {                                                 \
        int64_t c1 = c0 + bw < cols ? c0 + bw : cols, c8 = c0 + ((c1 - c0) & ~(int64_t)7);      \
        int64_t c32 = c0 + ((c1 - c0) & ~(int64_t)31);                                          \
        for (int t = 0; t < NT; t++) for (int j = 0; j < 4; j++) bacc[t][j] = _mm256_setzero_ps(); \
        for (int64_t k = c0; k < c32; k += 32) {                                                \
            __m256 w0, w1, w2, w3;                                                              \
            LD32_##SUF(w + k, w0, w1, w2, w3);                                                  \
            for (int t = 0; t < NT; t++) {                                                      \
                bacc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + k), bacc[t][0]);        \
                bacc[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[t] + k + 8), bacc[t][1]);    \
                bacc[t][2] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x[t] + k + 16), bacc[t][2]);   \
                bacc[t][3] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x[t] + k + 24), bacc[t][3]);   \
            }                                                                                   \
        }                                                                                       \
        for (int64_t k = c32; k < c8; k += 8) {                                                 \
            __m256 wv = ld8_##SUF(w + k);                                                       \
            for (int t = 0; t < NT; t++)                                                        \
                bacc[t][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[t] + k), bacc[t][0]);        \
        }                                                                                       \
        float s = BLOCKED ? sc[c0 / ENG_FP8_BLOCK] * 256.0f : 1.0f;                             \
        for (int t = 0; t < NT; t++) {                                                          \
            for (int j = 0; j < 4; j++)                                                         \
                acc[t][j] = BLOCKED ? _mm256_fmadd_ps(bacc[t][j], _mm256_set1_ps(s), acc[t][j]) \
                                    : _mm256_add_ps(acc[t][j], bacc[t][j]);                     \
            for (int64_t k = c8; k < c1; k++) tail[t] += ld1_##SUF(w, k) * x[t][k] * s;         \
        }                                                                                       \
    }                                                                                           \
    for (int t = 0; t < NT; t++)                                                                \
        out[t] = hsum8(_mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]),                       \
                                     _mm256_add_ps(acc[t][2], acc[t][3]))) + tail[t];           \
}                                                                                               \
AVX2 static void rowdot_avx_##SUF(const void *w, const float *sc, int64_t cols,                 \
                                  const float *const *x, int nt, float *out)                    \
{                                                                                               \
    if (nt == ROW_NT) rowdot_avx_##SUF##_n(w, sc, cols, x, ROW_NT, out);                        \
    else rowdot_avx_##SUF##_n(w, sc, cols, x, 1, out);                                          \
}                                                                                               \
static void rowdot_ref_##SUF(const void *wv, const float *sc, int64_t cols,                     \
                             const float *const *x, int nt, float *out)                         \
{                                                                                               \
    const T *w = wv;                                                                            \
    int64_t bw = BLOCKED ? ENG_FP8_BLOCK : cols;                                                \
    for (int t = 0; t < nt; t++) {                                                              \
        float acc = 0;                                                                          \
        for (int64_t c0 = 0; c0 < cols; c0 += bw) {                                             \
            int64_t c1 = c0 + bw < cols ? c0 + bw : cols;                                       \
            float b = 0;                                                                        \
            for (int64_t k = c0; k < c1; k++) b += ld1_##SUF(w, k) * x[t][k];                   \
            acc += b * (BLOCKED ? sc[c0 / ENG_FP8_BLOCK] * 256.0f : 1.0f);                      \
        }                                                                                       \
        out[t] = acc;                                                                           \
    }                                                                                           \
}                                                                                               \
AVX2 static void colacc_avx_##SUF(const void *wv, int64_t ld, int64_t nr, const float *x,       \
                                  const float *xm, int64_t c0, int nc, float *y)                \
{                                                                                               \
    const T *w = wv;                                                                            \
    __m256 acc[8];                                                                              \
    int nv = nc / 8;                                                                            \
    for (int j = 0; j < nv; j++) acc[j] = _mm256_setzero_ps();                                  \
    float tail[8] = { 0 };                                                                      \
    for (int64_t r = 0; r < nr; r++) {                                                          \
        float a = x[r] * xm[r];                                                                 \
        __m256 av = _mm256_set1_ps(a);                                                          \
        const T *row = w + r * ld + c0;                                                         \
        for (int j = 0; j < nv; j++) acc[j] = _mm256_fmadd_ps(ld8_##SUF(row + 8 * j), av, acc[j]); \
        for (int c = nv * 8; c < nc; c++) tail[c - nv * 8] += ld1_##SUF(row, c) * a;            \
    }                                                                                           \
    for (int j = 0; j < nv; j++) _mm256_storeu_ps(y + 8 * j, acc[j]);                           \
    for (int c = nv * 8; c < nc; c++) y[c] = tail[c - nv * 8];                                  \
}                                                                                               \
static void colacc_ref_##SUF(const void *wv, int64_t ld, int64_t nr, const float *x,            \
                             const float *xm, int64_t c0, int nc, float *y)                     \
{                                                                                               \
    const T *w = wv;                                                                            \
    for (int c = 0; c < nc; c++) y[c] = 0;                                                      \
    for (int64_t r = 0; r < nr; r++) {                                                          \
        float a = x[r] * xm[r];                                                                 \
        for (int c = 0; c < nc; c++) y[c] += ld1_##SUF(w + r * ld + c0, c) * a;                 \
    }                                                                                           \
}

DEF_KERNELS(f32, float, 0)
DEF_KERNELS(bf16, uint16_t, 0)
DEF_KERNELS(fp8, uint8_t, 1)

typedef void (*rowdot_fn)(const void *, const float *, int64_t, const float *const *, int, float *);
typedef void (*colacc_fn)(const void *, int64_t, int64_t, const float *, const float *, int64_t, int, float *);

static rowdot_fn pick_rowdot(const eng_backend *be, enum eng_dtype dt)
{
    switch (dt) {
    case ENG_DT_BF16:   return be->avx2 ? rowdot_avx_bf16 : rowdot_ref_bf16;
    case ENG_DT_F8E4M3: return be->avx2 ? rowdot_avx_fp8 : rowdot_ref_fp8;
    default:            return be->avx2 ? rowdot_avx_f32 : rowdot_ref_f32;
    }
}

static colacc_fn pick_colacc(const eng_backend *be, enum eng_dtype dt)
{
    switch (dt) {
    case ENG_DT_BF16:   return be->avx2 ? colacc_avx_bf16 : colacc_ref_bf16;
    case ENG_DT_F8E4M3: return be->avx2 ? colacc_avx_fp8 : colacc_ref_fp8;
    default:            return be->avx2 ? colacc_avx_f32 : colacc_ref_f32;
    }
}

/* ===== linear: y = x W^T over a row range ===== */

struct lin_ctx {
    const eng_tensor *W;
    eng_be_heads hs;
    int chunks;                 /* tasks per head */
    int64_t row0, nrows, chunk;
    const float *x;
    int n;
    int64_t ldx;
    float *y;
    int64_t ldy;
    rowdot_fn dot;
};

static void lin_task(void *p, int task, int thread)
{
    struct lin_ctx *c = p;
    const eng_tensor *W = c->W;
    size_t es = eng_dtype_size(W->dtype);
    int h = task / c->chunks;
    const float *x = c->x + h * c->hs.x;
    float *y = c->y + h * c->hs.y;
    int64_t r0 = (int64_t)(task % c->chunks) * c->chunk, r1 = r0 + c->chunk < c->nrows ? r0 + c->chunk : c->nrows;
    for (int64_t r = r0; r < r1; r++) {
        int64_t wr = c->row0 + h * c->hs.w + r;
        const void *row = (const char *)W->data + (size_t)wr * (size_t)W->cols * es;
        const float *sc = W->scale ? W->scale + (wr / ENG_FP8_BLOCK) * W->scale_ld : NULL;
        int i = 0;
        for (; i + ROW_NT <= c->n; i += ROW_NT) {
            const float *xs[ROW_NT];
            float o[ROW_NT];
            for (int t = 0; t < ROW_NT; t++) xs[t] = x + (i + t) * c->ldx;
            c->dot(row, sc, W->cols, xs, ROW_NT, o);
            for (int t = 0; t < ROW_NT; t++) y[(i + t) * c->ldy + r] = o[t];
        }
        for (; i < c->n; i++) {
            const float *xs[1] = { x + i * c->ldx };
            c->dot(row, sc, W->cols, xs, 1, &y[i * c->ldy + r]);
        }
    }
    (void)thread;
}

void eng_be_linear_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                         const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    pthread_once(&g_lut_once, lut_init);
    if (n <= 0 || nrows <= 0 || hs->n <= 0) return;
    /* ~4 tasks per thread balances uneven progress; at least 16 rows each. */
    int64_t total = nrows * hs->n;
    int64_t chunk = (total + TASKS_PER_THREAD * be->n_threads - 1) / (TASKS_PER_THREAD * be->n_threads);
    if (chunk < 16) chunk = 16;
    if (chunk > nrows) chunk = nrows;
    int chunks = (int)((nrows + chunk - 1) / chunk);
    struct lin_ctx c = { W, *hs, chunks, row0, nrows, chunk, x, n, ldx, y, ldy, pick_rowdot(be, W->dtype) };
    eng_cpu_run(be, lin_task, &c, chunks * hs->n);
}

void eng_be_linear(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                   const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    eng_be_heads one = { 1, 0, 0, 0 };
    eng_be_linear_heads(be, W, row0, nrows, &one, x, n, ldx, y, ldy);
}

/* ===== linear_t: y = x W[rows] (transposed) ===== */

#define COL_CHUNK 64    /* 8 AVX accumulators; stays inside one 128-wide FP8 block */

struct lint_ctx {
    const eng_tensor *W;
    eng_be_heads hs;
    int chunks;                 /* column chunks per head */
    int64_t row0, nrows;
    const float *x;
    int n;
    int64_t ldx;
    float *y;
    int64_t ldy;
    colacc_fn acc;
    eng_backend *be;
};

static void lint_task(void *p, int task, int thread)
{
    struct lint_ctx *c = p;
    const eng_tensor *W = c->W;
    size_t es = eng_dtype_size(W->dtype);
    int h = task / c->chunks;
    int64_t c0 = (int64_t)(task % c->chunks) * COL_CHUNK, row0 = c->row0 + h * c->hs.w;
    int nc = (int)(W->cols - c0 < COL_CHUNK ? W->cols - c0 : COL_CHUNK);
    float *xm = eng_cpu_scratch_f(c->be, thread, (size_t)c->nrows);
    if (!xm) return;
    /* Row multipliers: the FP8 block scale of (row, this column chunk). */
    for (int64_t r = 0; r < c->nrows; r++) {
        int64_t wr = row0 + r;
        xm[r] = W->scale ? W->scale[(wr / ENG_FP8_BLOCK) * W->scale_ld + c0 / ENG_FP8_BLOCK] * 256.0f : 1.0f;
    }
    const char *base = (const char *)W->data + (size_t)row0 * (size_t)W->cols * es;
    for (int i = 0; i < c->n; i++)
        c->acc(base, W->cols, c->nrows, c->x + h * c->hs.x + i * c->ldx, xm, c0, nc,
               c->y + h * c->hs.y + i * c->ldy + c0);
}

void eng_be_linear_t_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                           const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    pthread_once(&g_lut_once, lut_init);
    if (n <= 0 || nrows <= 0 || hs->n <= 0) return;
    int chunks = (int)((W->cols + COL_CHUNK - 1) / COL_CHUNK);
    struct lint_ctx c = { W, *hs, chunks, row0, nrows, x, n, ldx, y, ldy, pick_colacc(be, W->dtype), be };
    eng_cpu_run(be, lint_task, &c, chunks * hs->n);
}

/* ===== small f32 helpers for the other ops ===== */

AVX2 static float dot_avx(const float *a, const float *b, int n)
{
    __m256 acc = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= n; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc);
    float s = hsum8(acc);
    for (; k < n; k++) s += a[k] * b[k];
    return s;
}

float eng_cpu_dot(const eng_backend *be, const float *a, const float *b, int n)
{
    if (be->avx2) return dot_avx(a, b, n);
    float s = 0;
    for (int k = 0; k < n; k++) s += a[k] * b[k];
    return s;
}

AVX2 static void axpy_avx(float *y, float a, const float *x, int n)
{
    __m256 av = _mm256_set1_ps(a);
    int k = 0;
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(y + k, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k)));
    for (; k < n; k++) y[k] += a * x[k];
}

void eng_cpu_axpy(const eng_backend *be, float *y, float a, const float *x, int n)
{
    if (be->avx2) { axpy_avx(y, a, x, n); return; }
    for (int k = 0; k < n; k++) y[k] += a * x[k];
}
