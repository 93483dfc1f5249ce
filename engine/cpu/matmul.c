/* matmul.c — weight x activation products over BF16 / F32 / FP8 weights.
 *
 * Decode at batch 1 is a stream of matrix-vector products: memory bound, so
 * the kernels read each weight byte once, convert in registers (BF16: shift;
 * FP8 E4M3: re-bias into an F16 and convert with F16C, the 2^8 exponent
 * difference folded into the block scale) and accumulate in f32. Up to 3
 * token rows share each converted weight vector (the tiles), 4-6 with the
 * wide tiles used for calls of WIDE_MIN_N rows or more (prefill chunks).
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
/* 16 weights as two vectors (the value of ld8 at p and at p + 8). FP8
 * converts the 16 bytes with one 256-bit sign extension to 16-bit lanes
 * (s s eeee mmm... after << 7: the sign lands in bits 15 and 14), one
 * shift and one AND that clears bit 14, then F16C per half: the integer
 * work of two ld8_fp8 in half the instructions. Measured alone (one
 * thread, a 2048-wide row dot from L2, 2026-12-04): 16.3 G weights/s
 * against 14.0 for two ld8_fp8, 14.4 for 128-bit unpack lo/hi, 3.0 for a
 * 256-entry table with vpgatherdd; same values for all 256 bytes. */
AVX2 INL void ld16_f32(const float *p, __m256 *a, __m256 *b) { *a = ld8_f32(p); *b = ld8_f32(p + 8); }
AVX2 INL void ld16_bf16(const uint16_t *p, __m256 *a, __m256 *b) { *a = ld8_bf16(p); *b = ld8_bf16(p + 8); }
AVX2 INL void ld16_fp8(const uint8_t *p, __m256 *a, __m256 *b)
{
    __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
    w = _mm256_and_si256(_mm256_slli_epi16(w, 7), _mm256_set1_epi16((short)0xbfff));
    *a = _mm256_cvtph_ps(_mm256_castsi256_si128(w));
    *b = _mm256_cvtph_ps(_mm256_extracti128_si256(w, 1));
}
AVX2 INL float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* The one combine order of a dot's four FMA chains: every kernel finishes
 * with it, so a token's bits do not depend on which kernel ran it. */
AVX2 INL float sum_chains(__m256 c0, __m256 c1, __m256 c2, __m256 c3)
{
    return hsum8(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
}

#ifndef TASKS_PER_THREAD
#define TASKS_PER_THREAD 1
#endif

/* ===== kernels, one set per weight dtype =====
 *
 * tile:   y[t] = W_row . x[t] for NT (1 or TILE_NT) tokens. Each dot runs four
 *         FMA chains (column vector j of every 32 goes to chain j; one chain
 *         would leave a core latency-bound below its share of the bandwidth),
 *         then sums them, a horizontal sum and a scalar tail, in the same
 *         order whatever NT is: a token gets the same bits alone or in a
 *         group, and each converted weight vector serves TILE_NT tokens.
 *         FP8 block scales are folded into x beforehand (see lin_task), so
 *         FP8 rows are plain dots too.
 * colacc: y[0..nc) = sum_r x[r] * W[r][c0..c0+nc) (transposed product) with
 *         per-row multipliers xm[r] (FP8 block scale; 1 otherwise). */
/* Tokens per weight pass in batches: 3 x 4 accumulators + weight + x fit the 16 AVX registers. */
#define TILE_NT 3
#define UNROLL _Pragma("GCC unroll 4")
/* The row tile, instantiated for AVX2 (16 registers: up to TILE_NT tokens)
 * and for AVX-512VL (32 registers: up to TILE512_NT, below) with the same
 * FMA chains, combine and tails, so both give a token the same bits. */
#define DEF_TILE_N(NAME, ATTR, SUF, T, MAXNT)                                                    \
ATTR INL void NAME(const T *w, int64_t cols, const float *x, int64_t ldx, float *y, int64_t ldy,  \
                   const int NT)                                                                \
{                                                                                               \
    __m256 acc[MAXNT][4];                                                                       \
    UNROLL_NT for (int t = 0; t < NT; t++) UNROLL for (int j = 0; j < 4; j++) acc[t][j] = _mm256_setzero_ps(); \
    int64_t c32 = cols & ~(int64_t)31, c8 = cols & ~(int64_t)7, k = 0;                          \
    for (; k < c32; k += 32)                                                                    \
        UNROLL for (int j = 0; j < 4; j += 2) {                                                 \
            __m256 w0, w1;                                                                      \
            ld16_##SUF(w + k + 8 * j, &w0, &w1);                                                \
            UNROLL_NT for (int t = 0; t < NT; t++) {                                            \
                acc[t][j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * ldx + k + 8 * j), acc[t][j]); \
                acc[t][j + 1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + t * ldx + k + 8 * j + 8), acc[t][j + 1]); \
            }                                                                                   \
        }                                                                                       \
    for (; k < c8; k += 8) {                                                                    \
        __m256 wv = ld8_##SUF(w + k);                                                           \
        UNROLL_NT for (int t = 0; t < NT; t++)                                                  \
            acc[t][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * ldx + k), acc[t][0]);       \
    }                                                                                           \
    for (int t = 0; t < NT; t++) {                                                              \
        float s = sum_chains(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);                       \
        for (k = c8; k < cols; k++) s += ld1_##SUF(w, k) * x[t * ldx + k];                      \
        y[t * ldy] = s;                                                                         \
    }                                                                                           \
}
#define UNROLL_NT _Pragma("GCC unroll 8")
#define DEF_KERNELS(SUF, T)                                                                        \
DEF_TILE_N(tile_avx_##SUF##_n, AVX2, SUF, T, TILE_NT)                                             \
AVX2 static void tile_avx_##SUF(const void *w, int64_t cols, const float *x, int64_t ldx,       \
                                float *y, int64_t ldy, int nt)                                  \
{                                                                                               \
    if (nt == TILE_NT) tile_avx_##SUF##_n(w, cols, x, ldx, y, ldy, TILE_NT);                    \
    else tile_avx_##SUF##_n(w, cols, x, ldx, y, ldy, 1);                                        \
}                                                                                               \
static void tile_ref_##SUF(const void *wv, int64_t cols, const float *x, int64_t ldx,           \
                           float *y, int64_t ldy, int nt)                                       \
{                                                                                               \
    const T *w = wv;                                                                            \
    for (int t = 0; t < nt; t++) {                                                              \
        float s = 0;                                                                            \
        for (int64_t k = 0; k < cols; k++) s += ld1_##SUF(w, k) * x[t * ldx + k];               \
        y[t * ldy] = s;                                                                         \
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

/* ===== wide tiles: many tokens per converted weight vector =====
 *
 * The 3-token tile is bound by the 16 AVX registers: four chains per token.
 * The wide tile runs the four chains one after another instead of side by
 * side: for a K block it sweeps chain j (weight vectors j, j+4, j+8, ... of
 * each 32) for NT tokens at once (NT accumulators + the weight vector), keeps
 * the chains' partial sums in L1 between sweeps, and finishes exactly as
 * tile_avx does. Each chain still sees its vectors in ascending K order and
 * the chains are combined in the same tree, so a token's bits are those of
 * the 1-token tile: batch invariance holds whatever the token grouping. Each
 * weight vector is converted once per NT tokens (NT up to WIDE_MAX: wider
 * groups measured slower, 12 tokens by 2x, from register and load pressure). */
#define WIDE_MAX 6     /* measured best on Zen 3 (n=6: 0.041 ms/token vs 8: 0.052, 12: 0.088 on 2048x1024) */
/* Calls with fewer token rows (decode batches up to 16, MTP verification)
 * keep the 3-token tiles: batch-16 decode measured ~4 % slower wide. The
 * kernels give the same bits either way, so this only moves time. */
#define WIDE_MIN_N 24
#define WIDE_KB  256    /* K block: WIDE_MAX tokens x 256 floats = 6 KiB of x per sweep, L1-resident */
#define UNROLL_ALL _Pragma("GCC unroll 16")
#define DEF_WIDE(SUF, T)                                                                           \
AVX2 INL void wide_avx_##SUF##_n(const T *w, int64_t cols, const float *x, int64_t ldx,         \
                                 float *y, int64_t ldy, const int NT)                           \
{                                                                                               \
    float accm[4][WIDE_MAX][8] __attribute__((aligned(32)));                                    \
    memset(accm, 0, sizeof accm);                                                               \
    int64_t c32 = cols & ~(int64_t)31, c8 = cols & ~(int64_t)7;                                 \
    for (int64_t kb = 0; kb < c32; kb += WIDE_KB) {                                             \
        int64_t ke = kb + WIDE_KB < c32 ? kb + WIDE_KB : c32;                                   \
        for (int j = 0; j < 4; j++) {                                                           \
            __m256 a[WIDE_MAX];                                                                 \
            UNROLL_ALL for (int t = 0; t < NT; t++) a[t] = _mm256_load_ps(accm[j][t]);              \
            for (int64_t k = kb + 8 * j; k < ke; k += 32) {                                     \
                __m256 wv = ld8_##SUF(w + k);                                                   \
                UNROLL_ALL for (int t = 0; t < NT; t++)                                             \
                    a[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * ldx + k), a[t]);         \
            }                                                                                   \
            UNROLL_ALL for (int t = 0; t < NT; t++) _mm256_store_ps(accm[j][t], a[t]);              \
        }                                                                                       \
    }                                                                                           \
    if (c8 > c32) {                                                                             \
        __m256 a[WIDE_MAX];                                                                     \
        UNROLL_ALL for (int t = 0; t < NT; t++) a[t] = _mm256_load_ps(accm[0][t]);                  \
        for (int64_t k = c32; k < c8; k += 8) {                                                 \
            __m256 wv = ld8_##SUF(w + k);                                                       \
            UNROLL_ALL for (int t = 0; t < NT; t++)                                                 \
                a[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * ldx + k), a[t]);             \
        }                                                                                       \
        UNROLL_ALL for (int t = 0; t < NT; t++) _mm256_store_ps(accm[0][t], a[t]);                  \
    }                                                                                           \
    for (int t = 0; t < NT; t++) {                                                              \
        float s = sum_chains(_mm256_load_ps(accm[0][t]), _mm256_load_ps(accm[1][t]),            \
                             _mm256_load_ps(accm[2][t]), _mm256_load_ps(accm[3][t]));           \
        for (int64_t k = c8; k < cols; k++) s += ld1_##SUF(w, k) * x[t * ldx + k];              \
        y[t * ldy] = s;                                                                         \
    }                                                                                           \
}                                                                                               \
/* nt is 6 or 4: the groups lin_row_tokens hands out. */                                        \
AVX2 static void wide_avx_##SUF(const void *w, int64_t cols, const float *x, int64_t ldx,       \
                                float *y, int64_t ldy, int nt)                                  \
{                                                                                               \
    if (nt == 6) wide_avx_##SUF##_n(w, cols, x, ldx, y, ldy, 6);                                \
    else wide_avx_##SUF##_n(w, cols, x, ldx, y, ldy, 4);                                        \
}

DEF_KERNELS(f32, float)
DEF_KERNELS(bf16, uint16_t)
DEF_KERNELS(fp8, uint8_t)
DEF_WIDE(f32, float)
DEF_WIDE(bf16, uint16_t)
DEF_WIDE(fp8, uint8_t)

/* ===== AVX-512VL tiles: the AVX2 tile's arithmetic in 32 registers =====
 *
 * The 3-token tile stops at 3 because four chains per token fill the 16
 * AVX2 registers. With AVX-512VL the same 8-wide FMAs can use 32 ymm
 * registers, so this tile runs up to 6 tokens per converted weight vector
 * (24 accumulators) with exactly the AVX2 tile's FMA chains, chain combine
 * and tails: a token gets the same bits from either kernel and in any
 * group, so batch invariance does not depend on the CPU or the grouping
 * (DEF_TILE_N above is the one body of both). Opt-in (GLM_ENGINE_AVX512=1, and the
 * CPU has AVX-512F+BW+VL): on the Zen 4 VM it was built on it measured no
 * faster than the AVX2 tiles at batch 1 or 16 (docs/perf.md), so it is not
 * the default; test_engine_model compares it with the AVX2 tile bit for bit
 * (and skips visibly on CPUs without AVX-512). */
#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))
#define TILE512_NT 6
#define DEF_TILE512(SUF, T)                                                                       \
DEF_TILE_N(tile512_##SUF##_n, AVX512, SUF, T, TILE512_NT)                                         \
/* Any nt from 1 to TILE512_NT. */                                                                \
AVX512 static void tile512_##SUF(const void *w, int64_t cols, const float *x, int64_t ldx,        \
                                 float *y, int64_t ldy, int nt)                                   \
{                                                                                                 \
    switch (nt) {                                                                                 \
    case 6: tile512_##SUF##_n(w, cols, x, ldx, y, ldy, 6); break;                                 \
    case 5: tile512_##SUF##_n(w, cols, x, ldx, y, ldy, 5); break;                                 \
    case 4: tile512_##SUF##_n(w, cols, x, ldx, y, ldy, 4); break;                                 \
    case 3: tile512_##SUF##_n(w, cols, x, ldx, y, ldy, 3); break;                                 \
    case 2: tile512_##SUF##_n(w, cols, x, ldx, y, ldy, 2); break;                                 \
    default: tile512_##SUF##_n(w, cols, x, ldx, y, ldy, 1); break;                                \
    }                                                                                             \
}
DEF_TILE512(f32, float)
DEF_TILE512(bf16, uint16_t)
DEF_TILE512(fp8, uint8_t)

/* ===== BF16 weights with AVX512-BF16: exact-class dot products =====
 *
 * vdpbf16ps multiplies BF16 pairs exactly and accumulates in f32, twice the
 * work of an 8-wide FP32 FMA per instruction slot and without converting
 * the weights. llama.cpp feeds it activations rounded to BF16 (~1e-3
 * relative error); here each activation is split x = hi + lo, both BF16
 * (lo = the rounding error of hi, so hi + lo carries 16 significant bits),
 * and every weight pair is multiplied by both: error ~2e-6 relative, the
 * FP32 path's class, measured 1.3x faster per core (docs/perf.md).
 *
 * One kernel for every token count (1 to DP_NT per call, decode and
 * prefill alike): per token four chains (32-weight block b goes to chain
 * b % 4; hi then lo into the same accumulator), combined (c0+c1)+(c2+c3),
 * the 512-bit sum folded to 256 and hsum8, then the columns past the last
 * 32 in FP32 with the exact x. So a token's bits never depend on the
 * grouping: batch invariance holds. Results differ from the AVX2 path's by
 * rounding only (goldens: 1e-4). Opt-in (GLM_ENGINE_BF16DP=1): the model
 * A/B could not be measured on a quiet machine yet (docs/perf.md). */
#define BF16DP __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")))
#define DP_NT 6
#define DP_PAD 32      /* bf16 between rows: rows 2 KiB multiples apart alias in L1 otherwise */

/* x[0..n) → hi[0..n), lo[0..n) (n a multiple of 16; callers pass cols & ~31). */
BF16DP static void dp_split(const float *x, int64_t n, uint16_t *hi, uint16_t *lo)
{
    for (int64_t k = 0; k < n; k += 16) {
        __m512 v = _mm512_loadu_ps(x + k);
        __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
        __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        __m256i l = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, hf));
        _mm256_storeu_si256((__m256i *)(hi + k), h);
        _mm256_storeu_si256((__m256i *)(lo + k), l);
    }
}

/* y[t] for NT tokens: xb + t * 2 * ldb holds token t's hi, + ldb its lo. */
BF16DP INL void dp_tile_n(const uint16_t *w, int64_t cols, const uint16_t *xb, int64_t ldb, const float *x,
                          int64_t ldx, float *y, int64_t ldy, const int NT)
{
    __m512 acc[DP_NT][4];
    UNROLL_NT for (int t = 0; t < NT; t++) UNROLL for (int j = 0; j < 4; j++) acc[t][j] = _mm512_setzero_ps();
    int64_t c128 = cols & ~(int64_t)127, c32 = cols & ~(int64_t)31, k = 0;
/* block k + OFF into chain J */
#define DP_STEP(J, OFF)                                                                                   \
    do {                                                                                                  \
        __m512bh wv = (__m512bh)_mm512_loadu_si512(w + k + (OFF));                                        \
        UNROLL_NT for (int t = 0; t < NT; t++) {                                                          \
            const uint16_t *xh = xb + 2 * t * ldb + k + (OFF);                                            \
            acc[t][J] = _mm512_dpbf16_ps(acc[t][J], wv, (__m512bh)_mm512_loadu_si512(xh));                 \
            acc[t][J] = _mm512_dpbf16_ps(acc[t][J], wv, (__m512bh)_mm512_loadu_si512(xh + ldb));           \
        }                                                                                                 \
    } while (0)
    for (; k < c128; k += 128) { DP_STEP(0, 0); DP_STEP(1, 32); DP_STEP(2, 64); DP_STEP(3, 96); }
    if (k < c32) { DP_STEP(0, 0); k += 32; }
    if (k < c32) { DP_STEP(1, 0); k += 32; }
    if (k < c32) { DP_STEP(2, 0); k += 32; }
#undef DP_STEP
    for (int t = 0; t < NT; t++) {
        __m512 s = _mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]), _mm512_add_ps(acc[t][2], acc[t][3]));
        __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
        float r = hsum8(h);
        for (k = c32; k < cols; k++) r += ld1_bf16(w, k) * x[t * ldx + k];
        y[t * ldy] = r;
    }
}

BF16DP static void dp_tile(const uint16_t *w, int64_t cols, const uint16_t *xb, int64_t ldb, const float *x,
                           int64_t ldx, float *y, int64_t ldy, int nt)
{
    switch (nt) {
    case 6: dp_tile_n(w, cols, xb, ldb, x, ldx, y, ldy, 6); break;
    case 5: dp_tile_n(w, cols, xb, ldb, x, ldx, y, ldy, 5); break;
    case 4: dp_tile_n(w, cols, xb, ldb, x, ldx, y, ldy, 4); break;
    case 3: dp_tile_n(w, cols, xb, ldb, x, ldx, y, ldy, 3); break;
    case 2: dp_tile_n(w, cols, xb, ldb, x, ldx, y, ldy, 2); break;
    default: dp_tile_n(w, cols, xb, ldb, x, ldx, y, ldy, 1); break;
    }
}

/* ===== --dtype bfloat16: activations rounded to BF16, vdpbf16ps =====
 *
 * The reduced-precision compute mode (docs/engine.md "Compute dtype"):
 * linears over BF16 and FP8 weights round each activation row to BF16 once
 * (round to nearest even, vcvtneps2bf16's rules, as llama.cpp's conversion)
 * and multiply with vdpbf16ps, accumulating in FP32. FP8 E4M3 weights
 * become BF16 exactly (3 mantissa bits): their F16 decoding (value / 256,
 * see ld16_fp8) converted once per weight block; the block scales (x 256)
 * are folded into the activations before they are rounded.
 *
 * Register tile: MR weight rows x NT tokens, one 16-lane accumulator per
 * output. Each output is one chain over K in 32-column blocks, ascending
 * (the last block masked to zero past the row), then the same 16 -> 8 -> 1
 * sum: its bits do not depend on MR, NT, the token grouping or the thread,
 * so batch invariance holds and K is never split. MR x NT accumulators +
 * NT activation vectors + a weight vector stay within the 32 zmm
 * registers; MR per NT was measured (below). */
#define BX_NT 6
/* Rows per tile for 1..6 tokens (measured on the Zen 4 VM, one core: for
 * 1 token, decode of the small preset from DRAM, 4 rows 79-87 tokens/s,
 * 2 rows 79-80, 6 rows 74-80, 8 rows 74; for 2 tokens 4 rows 126-135 GFLOP/s,
 * 6 rows 110-141, 8 rows 89-137; for 3 tokens 4 rows 157-172 against
 * 125-152 for 8). */
#define BX_MR1 4
#define BX_MR2 4
#define BX_MR3 4
#define BX_MR4 6
#define BX_MR5 4
#define BX_MR6 4
static const int k_bx_mr[BX_NT + 1] = { 0, BX_MR1, BX_MR2, BX_MR3, BX_MR4, BX_MR5, BX_MR6 };
#define BX_MR 6
/* Weight prefetch (see bx_tile_n): on/off, distance in tiles, hint; -D at
 * build time for measurements. */
#ifndef BX_PREFETCH
#define BX_PREFETCH 1
#endif
#ifndef BX_PF_TILES
#define BX_PF_TILES 2
#endif
#ifndef BX_PF_HINT
#define BX_PF_HINT _MM_HINT_T1
#endif
#define BX_PAD 32       /* bf16 between activation rows: rows 2 KiB multiples apart alias in L1 */

uint16_t eng_cpu_bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u)           /* inf stays inf; NaN quiet, top payload kept */
        return (uint16_t)((u >> 16) | ((u & 0x007fffffu) ? 0x40u : 0u));
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);  /* zero, denormal: signed zero */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);          /* RNE; past the range: inf */
}

/* bf16 bits of 16 floats (vcvtneps2bf16). */
BF16DP INL __m256i bx_round16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }

/* x[0..cols) times m (1, or an FP8 block's scale x 256 per 128 columns) rounded
 * into xb[0..kp), zeros past cols (kp: cols rounded up to 32). */
BF16DP static void bx_round_row(const float *x, int64_t cols, const float *sc, int64_t kp, uint16_t *xb)
{
    int64_t k = 0, c16 = cols & ~(int64_t)15;
    for (; k < c16; k += 16) {
        __m512 v = _mm512_loadu_ps(x + k);
        if (sc) v = _mm512_mul_ps(v, _mm512_set1_ps(sc[k / ENG_FP8_BLOCK] * 256.0f));
        _mm256_storeu_si256((__m256i *)(xb + k), bx_round16(v));
    }
    if (k < cols) {
        __mmask16 m = (__mmask16)((1u << (cols - k)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + k);
        if (sc) v = _mm512_mul_ps(v, _mm512_set1_ps(sc[k / ENG_FP8_BLOCK] * 256.0f));
        _mm256_storeu_si256((__m256i *)(xb + k), bx_round16(v));
        k += 16;
    }
    for (; k < kp; k++) xb[k] = 0;
}

/* The fixed 16 -> 8 -> 1 sum of an output's accumulator. */
BF16DP INL float bx_hsum(__m512 s)
{
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(s), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1))));
}

/* bx_hsum of up to 16 accumulators at once: the same pairs added in the
 * same tree (a[i] + a[i+8], then + 4, + 2, + 1 lanes apart), but four
 * accumulators' partial sums share each vector, so 16 outputs cost 15
 * shuffle pairs and adds instead of 16 separate 16 -> 1 folds (the fold was
 * ~5 cycles per output: 20 % of a 16-token tile over K = 512). IEEE
 * addition is commutative, so every output keeps bx_hsum's bits. out[i] =
 * bx_hsum(a[i]) for i < N; a[N..16) are not read. */
BF16DP INL void bx_hsum16(const __m512 *a, const int N, float *out)
{
    __m512 b[8], c[4], d[2], z = _mm512_setzero_ps();
    /* b[p]: quarters [a[2p] lanes i + i+8 (i < 4), (4 <= i < 8), a[2p+1] the same] */
    UNROLL_NT for (int p = 0; p < 8; p++) {
        if (2 * p >= N) { b[p] = z; continue; }
        __m512 u = a[2 * p], v = 2 * p + 1 < N ? a[2 * p + 1] : z;
        b[p] = _mm512_add_ps(_mm512_shuffle_f32x4(u, v, 0x44), _mm512_shuffle_f32x4(u, v, 0xee));
    }
    /* c[q]: quarter j = accumulator 4q + j, lanes i + i+4 (i < 4) */
    UNROLL_NT for (int q = 0; q < 4; q++)
        c[q] = 4 * q >= N ? z : _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * q], b[2 * q + 1], 0x88),
                                             _mm512_shuffle_f32x4(b[2 * q], b[2 * q + 1], 0xdd));
    /* d[h]: quarter j = [acc 8h + j: lanes 0+2, 1+3; acc 8h + 4 + j: the same] */
    UNROLL_NT for (int h = 0; h < 2; h++)
        d[h] = 8 * h >= N ? z : _mm512_add_ps(_mm512_shuffle_ps(c[2 * h], c[2 * h + 1], 0x44),
                                             _mm512_shuffle_ps(c[2 * h], c[2 * h + 1], 0xee));
    /* quarter j, slot s: accumulator 4s + j */
    __m512 r = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xdd));
    float tmp[16] __attribute__((aligned(64)));
    _mm512_store_ps(tmp, r);
    UNROLL_NT for (int i = 0; i < N; i++) out[i] = tmp[4 * (i % 4) + i / 4];
}

/* 32 FP8 weights → BF16 bits of value / 256 (exact): ld16_fp8's F16 route. */
BF16DP INL __m512i bx_fp8_32v(__m256i bytes)
{
    __m512i w = _mm512_cvtepi8_epi16(bytes);
    w = _mm512_and_si512(_mm512_slli_epi16(w, 7), _mm512_set1_epi16((short)0xbfff));
    __m512 lo = _mm512_cvtph_ps(_mm512_castsi512_si256(w)), hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(w, 1));
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

BF16DP INL __m512i bx_fp8_32(const uint8_t *p) { return bx_fp8_32v(_mm256_loadu_si256((const __m256i *)p)); }

/* One FP8 row (cols bytes) → BF16 (value / 256) into wb. */
BF16DP static void bx_fp8_row(const uint8_t *w, int64_t cols, uint16_t *wb)
{
    int64_t k = 0, c32 = cols & ~(int64_t)31;
    for (; k < c32; k += 32) _mm512_storeu_si512(wb + k, bx_fp8_32(w + k));
    if (k < cols) {             /* the tail as bx8_tile_1 converts it: zero bytes past the row */
        __mmask32 m = (__mmask32)((1ull << (cols - k)) - 1);
        _mm512_mask_storeu_epi16(wb + k, m, bx_fp8_32v(_mm256_maskz_loadu_epi8(m, w + k)));
    }
}

/* One token against FP8 rows converted in registers (decode): the bits of
 * bx_tile_n(MR = BX_MR1, NT = 1) over bx_fp8_row's rows (the same BF16
 * weights, the same chain), without the pass through a converted block,
 * which cost ~30 % of decode throughput on FP8 weights. */
BF16DP static void bx8_tile_1(const uint8_t *w, int64_t ldw, int mr, int64_t cols, const uint16_t *xb, float *y)
{
    const uint8_t *wr[BX_MR1];
    __m512 acc[BX_MR1];
    UNROLL_NT for (int r = 0; r < BX_MR1; r++) {
        wr[r] = w + (r < mr ? r : mr - 1) * ldw;
        acc[r] = _mm512_setzero_ps();
    }
    int64_t c32 = cols & ~(int64_t)31, k = 0;
    for (; k < c32; k += 32) {
        __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + k);
        UNROLL_NT for (int r = 0; r < BX_MR1; r++) {
            if (BX_PREFETCH) _mm_prefetch((const char *)(wr[r] + k + BX_PF_TILES * BX_MR1 * ldw), BX_PF_HINT);
            acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)bx_fp8_32(wr[r] + k), xv);
        }
    }
    if (k < cols) {
        __mmask32 m = (__mmask32)((1ull << (cols - k)) - 1);
        __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + k);
        UNROLL_NT for (int r = 0; r < BX_MR1; r++)
            acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_maskz_mov_epi16(m, bx_fp8_32v(_mm256_maskz_loadu_epi8(m, wr[r] + k))), xv);
    }
    UNROLL_NT for (int r = 0; r < BX_MR1; r++)
        if (r < mr) y[r] = bx_hsum(acc[r]);
}

/* y[t * ldy + r] = W row r . xb row t for r < mr (rows ldw apart), t < NT;
 * rows past mr repeat row mr - 1 (computed, not stored). */
BF16DP INL void bx_tile_n(const uint16_t *w, int64_t ldw, int mr, int64_t cols, const uint16_t *xb, int64_t ldb,
                          float *y, int64_t ldy, const int MR, const int NT)
{
    const uint16_t *wr[BX_MR];
    __m512 acc[BX_MR * BX_NT];         /* [MR][NT]: output (r, t) at r * NT + t */
    UNROLL_NT for (int r = 0; r < MR; r++) {
        wr[r] = w + (r < mr ? r : mr - 1) * ldw;
        UNROLL_NT for (int t = 0; t < NT; t++) acc[r * NT + t] = _mm512_setzero_ps();
    }
    int64_t c32 = cols & ~(int64_t)31, k = 0;
    for (; k < c32; k += 32) {
        __m512bh xv[BX_NT];
        UNROLL_NT for (int t = 0; t < NT; t++) xv[t] = (__m512bh)_mm512_loadu_si512(xb + t * ldb + k);
        UNROLL_NT for (int r = 0; r < MR; r++) {
            __m512bh wv = (__m512bh)_mm512_loadu_si512(wr[r] + k);
            /* The same line two tiles ahead (rows follow each other in
             * memory), into L2: MR interleaved row streams from DRAM are
             * more than the hardware prefetcher keeps up with. One-core
             * decode of the small preset: 44-53 tokens/s without, the
             * same with a T0 prefetch one tile ahead, 76-84 with T1 one
             * to eight tiles ahead (FP32 path: 80-91). A prefetch past
             * the tensor never faults. */
            if (BX_PREFETCH) _mm_prefetch((const char *)(wr[r] + k + BX_PF_TILES * MR * ldw), BX_PF_HINT);
            UNROLL_NT for (int t = 0; t < NT; t++) acc[r * NT + t] = _mm512_dpbf16_ps(acc[r * NT + t], wv, xv[t]);
        }
    }
    if (k < cols) {             /* the last block: weights masked to zero past the row */
        __mmask32 m = (__mmask32)((1ull << (cols - k)) - 1);
        __m512bh xv[BX_NT];
        UNROLL_NT for (int t = 0; t < NT; t++) xv[t] = (__m512bh)_mm512_loadu_si512(xb + t * ldb + k);
        UNROLL_NT for (int r = 0; r < MR; r++) {
            __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, wr[r] + k);
            UNROLL_NT for (int t = 0; t < NT; t++) acc[r * NT + t] = _mm512_dpbf16_ps(acc[r * NT + t], wv, xv[t]);
        }
    }
    /* the outputs 16 at a time */
    float s[BX_MR * BX_NT];
    UNROLL_NT for (int i = 0; i < MR * NT; i += 16)
        bx_hsum16(acc + i, MR * NT - i < 16 ? MR * NT - i : 16, s + i);
    UNROLL_NT for (int r = 0; r < MR; r++)
        if (r < mr) UNROLL_NT for (int t = 0; t < NT; t++) y[t * ldy + r] = s[r * NT + t];
}

BF16DP static void bx_tile(const uint16_t *w, int64_t ldw, int mr, int64_t cols, const uint16_t *xb, int64_t ldb,
                           float *y, int64_t ldy, int nt)
{
    switch (nt) {
    case 6: bx_tile_n(w, ldw, mr, cols, xb, ldb, y, ldy, BX_MR6, 6); break;
    case 5: bx_tile_n(w, ldw, mr, cols, xb, ldb, y, ldy, BX_MR5, 5); break;
    case 4: bx_tile_n(w, ldw, mr, cols, xb, ldb, y, ldy, BX_MR4, 4); break;
    case 3: bx_tile_n(w, ldw, mr, cols, xb, ldb, y, ldy, BX_MR3, 3); break;
    case 2: bx_tile_n(w, ldw, mr, cols, xb, ldb, y, ldy, BX_MR2, 2); break;
    default: bx_tile_n(w, ldw, mr, cols, xb, ldb, y, ldy, BX_MR1, 1); break;
    }
}

typedef void (*tile_fn)(const void *, int64_t, const float *, int64_t, float *, int64_t, int);
typedef void (*colacc_fn)(const void *, int64_t, int64_t, const float *, const float *, int64_t, int, float *);

static tile_fn pick_tile(const eng_backend *be, enum eng_dtype dt)
{
    if (be->avx512)
        switch (dt) {
        case ENG_DT_BF16:   return tile512_bf16;
        case ENG_DT_F8E4M3: return tile512_fp8;
        default:            return tile512_f32;
        }
    switch (dt) {
    case ENG_DT_BF16:   return be->avx2 ? tile_avx_bf16 : tile_ref_bf16;
    case ENG_DT_F8E4M3: return be->avx2 ? tile_avx_fp8 : tile_ref_fp8;
    default:            return be->avx2 ? tile_avx_f32 : tile_ref_f32;
    }
}

/* NULL: no wide kernel (portable path); tokens then go by TILE_NT and 1. */
static tile_fn pick_wide(const eng_backend *be, enum eng_dtype dt)
{
    if (!be->avx2) return NULL;
    switch (dt) {
    case ENG_DT_BF16:   return wide_avx_bf16;
    case ENG_DT_F8E4M3: return wide_avx_fp8;
    default:            return wide_avx_f32;
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
    tile_fn tile;
    tile_fn wide;               /* NULL without AVX2 */
    int tile_nt;                /* tokens per tile call: TILE512_NT (any count up to it) or TILE_NT */
    int bf16dp;                 /* BF16 weights through dp_tile (AVX512-BF16) */
    int bf16;                   /* --dtype bfloat16: activations rounded to BF16 (BF16 / FP8 weights) */
    int bx;                     /* ... multiplied by bx_tile (AVX512-BF16); else the FP32 tiles */
    eng_backend *be;
};

/* Tokens [t0, t1) against one weight row: wide groups (6, then 4 if that
 * many are left), then TILE_NT, then single tokens. The grouping only
 * decides which kernel a token goes through; every kernel gives it the same
 * bits. */
static void lin_row_tokens(const struct lin_ctx *c, const char *w, int64_t i, int t0, int t1,
                           const float *x, int64_t ldx, float *y)
{
    int64_t cols = c->W->cols;
    int t = t0;
    if (c->wide && c->n >= WIDE_MIN_N) {
        for (; t + WIDE_MAX <= t1; t += WIDE_MAX)
            c->wide(w, cols, x + t * ldx, ldx, y + t * c->ldy + i, c->ldy, WIDE_MAX);
        if (t1 - t >= 4) { c->wide(w, cols, x + t * ldx, ldx, y + t * c->ldy + i, c->ldy, 4); t += 4; }
    }
    for (; t + c->tile_nt <= t1; t += c->tile_nt)
        c->tile(w, cols, x + t * ldx, ldx, y + t * c->ldy + i, c->ldy, c->tile_nt);
    if (c->tile_nt == TILE512_NT && t < t1) {       /* the AVX-512 tile takes any remainder at once */
        c->tile(w, cols, x + t * ldx, ldx, y + t * c->ldy + i, c->ldy, t1 - t);
        t = t1;
    }
    for (; t < t1; t++)
        c->tile(w, cols, x + t * ldx, ldx, y + t * c->ldy + i, c->ldy, 1);
}

/* Cache blocks for many tokens: a block of weight rows (~128 KiB) is read
 * from memory once and reused from L2 by every block of tokens (~192 KiB of
 * x), so neither the weights nor the activations stream from DRAM/L3 once
 * per row or per token. */
#define LIN_WBLOCK_BYTES (128 * 1024)
#define LIN_XBLOCK_BYTES (24 * 1024)
#define X_PAD 16        /* floats: one cache line between packed activation rows */

/* Rows [r, r1) of one weight-row block. Few tokens: one row at a time, a
 * single sequential weight stream per thread, which prefetches best. */
static void lin_rows(const struct lin_ctx *c, const char *w0, int64_t r, int64_t r1, const float *x,
                     int64_t ldx, float *y)
{
    const eng_tensor *W = c->W;
    size_t rb = (size_t)W->cols * eng_dtype_size(W->dtype);
    if (!c->wide || c->n < WIDE_MIN_N) {
        for (int64_t i = r; i < r1; i++)
            lin_row_tokens(c, w0 + (size_t)(i - r) * rb, i, 0, c->n, x, ldx, y);
        return;
    }
    int64_t rblk = (int64_t)(LIN_WBLOCK_BYTES / rb);
    if (rblk < 1) rblk = 1;
    int tblk = (int)(LIN_XBLOCK_BYTES / ((size_t)W->cols * sizeof(float))) / WIDE_MAX * WIDE_MAX;
    if (tblk < WIDE_MAX) tblk = WIDE_MAX;
    for (int64_t rr = r; rr < r1; rr += rblk) {
        int64_t re = rr + rblk < r1 ? rr + rblk : r1;
        for (int tb = 0; tb < c->n; tb += tblk) {
            int te = tb + tblk < c->n ? tb + tblk : c->n;
            for (int64_t i = rr; i < re; i++)
                lin_row_tokens(c, w0 + (size_t)(i - r) * rb, i, tb, te, x, ldx, y);
        }
    }
}

/* Rows [r0, r1) of a BF16 weight through dp_tile: every token's x split
 * into BF16 hi/lo once per task, then blocks of ~128 KiB of weight rows,
 * each run over the tokens in groups of DP_NT (then the remainder at once),
 * token blocks of ~24 KiB of hi/lo kept in L1/L2. */
static void lin_task_dp(const struct lin_ctx *c, const void *wdata, int64_t base, int64_t r0, int64_t r1,
                        const float *x, int thread, float *y)
{
    const eng_tensor *W = c->W;
    int64_t cols = W->cols, c32 = cols & ~(int64_t)31, ldb = c32 + DP_PAD;
    uint16_t *xb = (uint16_t *)eng_cpu_scratch_f(c->be, thread, (size_t)c->n * (size_t)ldb);
    if (!xb) return;
    for (int t = 0; t < c->n; t++) dp_split(x + t * c->ldx, c32, xb + 2 * t * ldb, xb + 2 * t * ldb + ldb);
    const uint16_t *w0 = (const uint16_t *)wdata + base * cols;
    int64_t rblk = (int64_t)(LIN_WBLOCK_BYTES / ((size_t)cols * 2));
    if (rblk < 1) rblk = 1;
    int tblk = (int)(LIN_XBLOCK_BYTES / ((size_t)ldb * 4)) / DP_NT * DP_NT;
    if (tblk < DP_NT) tblk = DP_NT;
    for (int64_t rr = r0; rr < r1; rr += rblk) {
        int64_t re = rr + rblk < r1 ? rr + rblk : r1;
        for (int tb = 0; tb < c->n; tb += tblk) {
            int te = tb + tblk < c->n ? tb + tblk : c->n;
            for (int64_t i = rr; i < re; i++)
                for (int t = tb; t < te; t += DP_NT)
                    dp_tile(w0 + i * cols, cols, xb + 2 * t * ldb, ldb, x + t * c->ldx, c->ldx, y + t * c->ldy + i,
                            c->ldy, te - t < DP_NT ? te - t : DP_NT);
        }
    }
}

/* Rows per strip in bx_rows' few-token order: a multiple of every
 * k_bx_mr (4 and 6). */
#define BX_STRIP 12
/* Up to this many token groups (BX_NT tokens each) bx_rows runs strip by
 * strip; their rounded activations (<= 24 tokens x ~2 KiB for K = 1024)
 * stay in L2 meanwhile. */
#define BX_STRIP_GROUPS 4

/* Token group g of ng (BX_NT tokens each, the remainder last): its first
 * token *t and size *nt. A last group of 1 or 2 tokens (a batch of 7, 8,
 * 13, 14, ...; an expert's 7 tokens) would run the weights again at a
 * third of the tile's rate: then the last two groups share their tokens
 * (6 + 1 -> 4 + 3, 6 + 2 -> 4 + 4). Which group a token is in never
 * changes its bits. */
static void bx_group(int n, int g, int ng, int *t, int *nt)
{
    int rem = n % BX_NT, pair = n > BX_NT && rem > 0 && rem <= 2 ? (BX_NT + rem + 1) / 2 : 0;
    *t = g * BX_NT;
    *nt = n - *t < BX_NT ? n - *t : BX_NT;
    if (pair && g >= ng - 2) {          /* the last two groups: 4 + 3 or 4 + 4 tokens */
        *t = (ng - 2) * BX_NT + (g == ng - 1 ? pair : 0);
        *nt = g == ng - 1 ? n - *t : pair;
    }
}

/* Token groups [g0, g1) of ng over weight rows [rr, re) (w holds row r on). */
static void bx_groups(const struct lin_ctx *c, const uint16_t *w, int64_t ldw, int64_t r, int64_t rr, int64_t re,
                      int g0, int g1, int ng, const uint16_t *xb, int64_t ldb, float *y)
{
    for (int g = g0; g < g1; g++) {
        int t, nt;
        bx_group(c->n, g, ng, &t, &nt);
        int mr = k_bx_mr[nt];
        for (int64_t i = rr; i < re; i += mr)
            bx_tile(w + (i - r) * ldw, ldw, re - i < mr ? (int)(re - i) : mr, c->W->cols, xb + t * ldb, ldb,
                    y + t * c->ldy + i, c->ldy, nt);
    }
}

/* Rows [r, r1) of W (ldw elements apart, BF16) against the rounded
 * activations xb (n rows, ldb apart), groups of BX_NT tokens (the
 * remainder at once) against k_bx_mr[nt] rows at a time. Every output
 * element is one tile's accumulator over all of K, so the order of the
 * tiles never changes a bit; it only decides what comes from where:
 *  - few groups (batched decode, an expert's tokens): strips of BX_STRIP
 *    rows, each run by every group before the next strip. The weights
 *    stream from memory once while all the groups compute on them (the
 *    tiles' prefetch reaches into the next strip). Group by group over a
 *    128 KiB block instead, the first group's pass waits on memory and
 *    the others compute alone: an LM head at 16 tokens ran at ~70 % of
 *    the tile's in-cache rate (docs/perf.md "Batched decode: weight
 *    strips");
 *  - many tokens (prefill): weight-row blocks of ~128 KiB reused from L2
 *    by token blocks of ~24 KiB of xb. */
static void bx_rows(const struct lin_ctx *c, const uint16_t *w, int64_t ldw, int64_t r, int64_t r1,
                    const uint16_t *xb, int64_t ldb, float *y)
{
    int ng = (c->n + BX_NT - 1) / BX_NT;
    if (ng <= BX_STRIP_GROUPS) {
        for (int64_t rr = r; rr < r1; rr += BX_STRIP)
            bx_groups(c, w, ldw, r, rr, rr + BX_STRIP < r1 ? rr + BX_STRIP : r1, 0, ng, ng, xb, ldb, y);
        return;
    }
    int64_t rblk = (int64_t)(LIN_WBLOCK_BYTES / ((size_t)c->W->cols * 2)) / BX_MR * BX_MR;
    if (rblk < BX_MR) rblk = BX_MR;
    int tblk = (int)(LIN_XBLOCK_BYTES / ((size_t)ldb * 2)) / BX_NT * BX_NT;
    if (tblk < BX_NT) tblk = BX_NT;
    for (int64_t rr = r; rr < r1; rr += rblk)
        for (int gb = 0; gb < ng; gb += tblk / BX_NT)
            bx_groups(c, w, ldw, r, rr, rr + rblk < r1 ? rr + rblk : r1, gb,
                      gb + tblk / BX_NT < ng ? gb + tblk / BX_NT : ng, ng, xb, ldb, y);
}

/* Rows [r0, r1) in bfloat16 mode through vdpbf16ps. BF16 weights: every
 * token rounded once, then the rows straight from the weights. FP8: per
 * 128-row scale block, the tokens scaled and rounded, then sub-blocks of
 * rows converted to BF16 (~128 KiB) and run over all tokens; one token
 * converts in registers instead (bx8_tile_1, the same bits). */
static void lin_task_bx(const struct lin_ctx *c, int64_t base, int64_t r0, int64_t r1, const float *x, int thread,
                        float *y)
{
    const eng_tensor *W = c->W;
    int64_t cols = W->cols, kp = (cols + 31) & ~(int64_t)31, ldb = kp + BX_PAD;
    int64_t wrows = W->scale ? (int64_t)(LIN_WBLOCK_BYTES / ((size_t)kp * 2)) / BX_MR * BX_MR : 0;
    if (W->scale && wrows < BX_MR) wrows = BX_MR;
    size_t nxb = (size_t)c->n * (size_t)ldb, nwb = (size_t)wrows * (size_t)kp;
    uint16_t *xb = (uint16_t *)eng_cpu_scratch_f(c->be, thread, (nxb + nwb + 1) / 2 + 16);
    if (!xb) return;
    uint16_t *wb = xb + ((nxb + 31) & ~(size_t)31);
    if (!W->scale) {
        for (int t = 0; t < c->n; t++) bx_round_row(x + t * c->ldx, cols, NULL, kp, xb + t * ldb);
        bx_rows(c, (const uint16_t *)W->data + (size_t)(base + r0) * (size_t)cols, cols, r0, r1, xb, ldb, y);
        return;
    }
    const uint8_t *w8 = W->data;
    for (int64_t r = r0; r < r1;) {
        int64_t wr = base + r, rend = r + (ENG_FP8_BLOCK - wr % ENG_FP8_BLOCK);
        if (rend > r1) rend = r1;
        const float *sc = W->scale + (wr / ENG_FP8_BLOCK) * W->scale_ld;
        for (int t = 0; t < c->n; t++) bx_round_row(x + t * c->ldx, cols, sc, kp, xb + t * ldb);
        if (c->n == 1) {        /* decode: convert in registers (same bits) */
            for (int64_t i = r; i < rend; i += BX_MR1)
                bx8_tile_1(w8 + (size_t)(base + i) * (size_t)cols, cols, rend - i < BX_MR1 ? (int)(rend - i) : BX_MR1,
                           cols, xb, y + i);
            r = rend;
            continue;
        }
        for (int64_t s = r; s < rend; s += wrows) {
            int64_t se = s + wrows < rend ? s + wrows : rend;
            for (int64_t i = s; i < se; i++) bx_fp8_row(w8 + (size_t)(base + i) * (size_t)cols, cols, wb + (i - s) * kp);
            bx_rows(c, wb, kp, s, se, xb, ldb, y);
        }
        r = rend;
    }
}

/* The portable bfloat16 path: x (times the FP8 scales) rounded to BF16
 * values kept as floats, for the FP32 tiles. */
static void bx_round_portable(const float *x, int64_t cols, const float *sc, float *xr)
{
    for (int64_t k = 0; k < cols; k++) {
        float v = sc ? x[k] * (sc[k / ENG_FP8_BLOCK] * 256.0f) : x[k];
        xr[k] = eng_bf16_to_f32(eng_cpu_bf16_round(v));
    }
}

static void lin_task(void *p, int task, int thread)
{
    struct lin_ctx *c = p;
    const eng_tensor *W = c->W;
    size_t rb = (size_t)W->cols * eng_dtype_size(W->dtype);
    int h = task / c->chunks;
    const float *x = c->x + h * c->hs.x;
    float *y = c->y + h * c->hs.y;
    int64_t r0 = (int64_t)(task % c->chunks) * c->chunk, r1 = r0 + c->chunk < c->nrows ? r0 + c->chunk : c->nrows;
    int64_t base = c->row0 + h * c->hs.w;          /* weight row of output row 0 */
    /* Many tokens: activation rows are copied to a stride of cols + X_PAD
     * floats. Rows a multiple of 4 KiB apart (hidden 1024, 6144, ...) all map
     * to the same L1 sets, and a wide tile's 12 rows then evict each other
     * (measured: 3-4x slower from 12 tokens on). A copy is exact. */
    if (c->bf16dp) { lin_task_dp(c, W->data, base, r0, r1, x, thread, y); return; }
    if (c->bx) { lin_task_bx(c, base, r0, r1, x, thread, y); return; }
    int pack = c->bf16 || (c->wide && c->n >= WIDE_MIN_N);
    int64_t lds = pack ? W->cols + X_PAD : W->cols;
    if (!W->scale) {
        const float *xr = x;
        int64_t ldr = c->ldx;
        if (pack) {
            float *xp = eng_cpu_scratch_f(c->be, thread, (size_t)c->n * (size_t)lds);
            if (!xp) return;
            for (int t = 0; t < c->n; t++)
                if (c->bf16) bx_round_portable(x + t * c->ldx, W->cols, NULL, xp + t * lds);
                else memcpy(xp + t * lds, x + t * c->ldx, (size_t)W->cols * sizeof *xp);
            xr = xp;
            ldr = lds;
        }
        lin_rows(c, (const char *)W->data + (size_t)(base + r0) * rb, r0, r1, xr, ldr, y);
        return;
    }
    /* FP8: per 128-row block, x times that block row's scales (x 256 for the
     * F16 decoding), so the tiles run plain dots over the raw FP8 values. */
    float *xs = eng_cpu_scratch_f(c->be, thread, (size_t)c->n * (size_t)lds);
    if (!xs) return;
    for (int64_t r = r0; r < r1;) {
        int64_t wr = base + r, rend = r + (ENG_FP8_BLOCK - wr % ENG_FP8_BLOCK);
        if (rend > r1) rend = r1;
        const float *sc = W->scale + (wr / ENG_FP8_BLOCK) * W->scale_ld;
        for (int t = 0; t < c->n; t++)
            if (c->bf16) bx_round_portable(x + t * c->ldx, W->cols, sc, xs + t * lds);
            else
                for (int64_t k = 0; k < W->cols; k++)
                    xs[t * lds + k] = x[t * c->ldx + k] * (sc[k / ENG_FP8_BLOCK] * 256.0f);
        lin_rows(c, (const char *)W->data + (size_t)wr * rb, r, rend, xs, lds, y);
        r = rend;
    }
}

/* One product's run description; returns its number of lin_task tasks
 * (0: nothing to compute). f32: FP32 activations whatever the compute
 * dtype (eng_be_linear_f32, a group output marked f32: the router). */
static int lin_ctx_init(struct lin_ctx *c, eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                        const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy, int f32)
{
    pthread_once(&g_lut_once, lut_init);
    if (n <= 0 || nrows <= 0 || hs->n <= 0) return 0;
    /* One contiguous row range per thread streams best (prefetchers); at
     * least 16 rows per task. */
    int64_t total = nrows * hs->n;
    int64_t chunk = (total + TASKS_PER_THREAD * be->n_threads - 1) / (TASKS_PER_THREAD * be->n_threads);
    if (chunk < 16) chunk = 16;
    if (chunk > nrows) chunk = nrows;
    int chunks = (int)((nrows + chunk - 1) / chunk);
    int bf16 = !f32 && be->compute_bf16 && (W->dtype == ENG_DT_BF16 || W->dtype == ENG_DT_F8E4M3);
    *c = (struct lin_ctx){ W, *hs, chunks, row0, nrows, chunk, x, n, ldx, y, ldy, pick_tile(be, W->dtype),
                           pick_wide(be, W->dtype), be->avx512 ? TILE512_NT : TILE_NT,
                           !bf16 && be->bf16dp && W->dtype == ENG_DT_BF16 && !W->scale, bf16,
                           bf16 && be->avx512bf16, be };
    return chunks * hs->n;
}

static void lin_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows, const eng_be_heads *hs,
                      const float *x, int n, int64_t ldx, float *y, int64_t ldy, int f32)
{
    struct lin_ctx c;
    int tasks = lin_ctx_init(&c, be, W, row0, nrows, hs, x, n, ldx, y, ldy, f32);
    eng_cpu_run(be, lin_task, &c, tasks);
}

void eng_cpu_linear_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                         const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    lin_heads(be, W, row0, nrows, hs, x, n, ldx, y, ldy, 0);
}

void eng_cpu_linear(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                   const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    eng_be_heads one = { 1, 0, 0, 0 };
    lin_heads(be, W, row0, nrows, &one, x, n, ldx, y, ldy, 0);
}

void eng_cpu_linear_f32(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                       const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    eng_be_heads one = { 1, 0, 0, 0 };
    lin_heads(be, W, row0, nrows, &one, x, n, ldx, y, ldy, 1);
}

/* ===== linear_group: several weights over one input, one pool run =====
 *
 * Each output gets the very tasks eng_cpu_linear would give it (same row
 * chunks, kernels, FP8 scaling per task), numbered one after another in a
 * single run: the same bits, one barrier. Tasks claim in order, so the
 * threads work through the outputs together and the uneven sizes (q_a's
 * rows against the indexer's 32) balance without planning. */
struct lin_group_ctx {
    struct lin_ctx c[ENG_BE_LIN_GROUP_MAX];
    int first[ENG_BE_LIN_GROUP_MAX + 1];    /* output j's tasks: [first[j], first[j+1]) */
    int n;
};

static void lin_group_task(void *p, int task, int thread)
{
    struct lin_group_ctx *g = p;
    int j = 0;
    while (task >= g->first[j + 1]) j++;
    lin_task(&g->c[j], task - g->first[j], thread);
}

void eng_cpu_linear_group(eng_backend *be, const eng_be_lin_out *outs, int n_outs, const float *x, int n,
                          int64_t ldx)
{
    struct lin_group_ctx g;
    eng_be_heads one = { 1, 0, 0, 0 };
    g.n = 0;
    g.first[0] = 0;
    for (int j = 0; j < n_outs; j++) {
        if (g.n == ENG_BE_LIN_GROUP_MAX) {          /* more than the header allows: run what we have */
            eng_cpu_run(be, lin_group_task, &g, g.first[g.n]);
            g.n = 0;
        }
        int tasks = lin_ctx_init(&g.c[g.n], be, outs[j].W, outs[j].row0, outs[j].nrows, &one, x, n, ldx, outs[j].y,
                                 outs[j].ldy, outs[j].f32);
        if (tasks == 0) continue;
        g.first[g.n + 1] = g.first[g.n] + tasks;
        g.n++;
    }
    eng_cpu_run(be, lin_group_task, &g, g.first[g.n]);
}

/* ===== linear_t: y = x W[rows] (transposed) ===== */

#define COL_CHUNK 64    /* 8 AVX accumulators; stays inside one 128-wide FP8 block */

/* Token tiles of the transposed product: y[t][c0..c0+nc) for nt tokens,
 * COLT_NT tokens x COLT_NV column vectors held in registers while the
 * weight rows stream by, so each converted weight vector serves COLT_NT
 * tokens (colacc converts it again for every token). a[t * lda + r]: the
 * row multipliers x[r] * xm[r] of token t. Every y[t][c] is the one chain
 * colacc runs for that token alone (vector columns: FMAs over r in order
 * from zero; the scalar tail: multiply then add), so the bits do not
 * depend on how tokens are tiled or how many share the call. */
#define COLT_NT 6       /* 6 x 2 accumulators + 2 weight vectors + a broadcast: 15 of the 16 AVX registers */
#define COLT_NV 2
typedef void (*colt_fn)(const void *, int64_t, int64_t, const float *, int64_t, int, int, float *, int64_t);

#define DEF_COLT(SUF, T)                                                                           \
AVX2 INL void colt_blk_##SUF(const T *w, int64_t ld, int64_t nr, const float *a, int64_t lda,    \
                              float *y, int64_t ldy, const int NT, const int NV)                 \
{                                                                                                \
    __m256 acc[COLT_NT][COLT_NV];                                                                \
    UNROLL_NT for (int t = 0; t < NT; t++) UNROLL for (int v = 0; v < NV; v++) acc[t][v] = _mm256_setzero_ps(); \
    for (int64_t r = 0; r < nr; r++) {                                                           \
        __m256 wv[COLT_NV];                                                                      \
        UNROLL for (int v = 0; v < NV; v++) wv[v] = ld8_##SUF(w + r * ld + 8 * v);               \
        UNROLL_NT for (int t = 0; t < NT; t++) {                                                 \
            __m256 av = _mm256_broadcast_ss(a + t * lda + r);                                    \
            UNROLL for (int v = 0; v < NV; v++) acc[t][v] = _mm256_fmadd_ps(wv[v], av, acc[t][v]); \
        }                                                                                        \
    }                                                                                            \
    UNROLL_NT for (int t = 0; t < NT; t++)                                                       \
        UNROLL for (int v = 0; v < NV; v++) _mm256_storeu_ps(y + t * ldy + 8 * v, acc[t][v]);     \
}                                                                                                \
AVX2 INL void colt_cols_##SUF(const T *w, int64_t ld, int64_t nr, const float *a, int64_t lda,   \
                               int nc, float *y, int64_t ldy, const int NT)                      \
{                                                                                                \
    int c = 0;                                                                                   \
    for (; c + 16 <= nc; c += 16) colt_blk_##SUF(w + c, ld, nr, a, lda, y + c, ldy, NT, 2);      \
    if (c + 8 <= nc) { colt_blk_##SUF(w + c, ld, nr, a, lda, y + c, ldy, NT, 1); c += 8; }       \
    for (int t = 0; t < NT; t++)                                                                 \
        for (int cc = c; cc < nc; cc++) {                                                        \
            float s = 0;                                                                         \
            for (int64_t r = 0; r < nr; r++) s += ld1_##SUF(w + r * ld, cc) * a[t * lda + r];    \
            y[t * ldy + cc] = s;                                                                 \
        }                                                                                        \
}                                                                                                \
AVX2 static void colt_avx_##SUF(const void *wv, int64_t ld, int64_t nr, const float *a, int64_t lda, \
                                int nt, int nc, float *y, int64_t ldy)                           \
{                                                                                                \
    const T *w = wv;                                                                             \
    int t = 0;                                                                                   \
    for (; t + COLT_NT <= nt; t += COLT_NT) colt_cols_##SUF(w, ld, nr, a + t * lda, lda, nc, y + t * ldy, ldy, COLT_NT); \
    switch (nt - t) {                                                                            \
    case 5: colt_cols_##SUF(w, ld, nr, a + t * lda, lda, nc, y + t * ldy, ldy, 5); break;       \
    case 4: colt_cols_##SUF(w, ld, nr, a + t * lda, lda, nc, y + t * ldy, ldy, 4); break;       \
    case 3: colt_cols_##SUF(w, ld, nr, a + t * lda, lda, nc, y + t * ldy, ldy, 3); break;       \
    case 2: colt_cols_##SUF(w, ld, nr, a + t * lda, lda, nc, y + t * ldy, ldy, 2); break;       \
    case 1: colt_cols_##SUF(w, ld, nr, a + t * lda, lda, nc, y + t * ldy, ldy, 1); break;       \
    default: break;                                                                              \
    }                                                                                            \
}
DEF_COLT(f32, float)
DEF_COLT(bf16, uint16_t)
DEF_COLT(fp8, uint8_t)
#undef DEF_COLT

/* NULL: the portable path (colacc per token). */
static colt_fn pick_colt(const eng_backend *be, enum eng_dtype dt)
{
    if (!be->avx2) return NULL;
    switch (dt) {
    case ENG_DT_BF16:   return colt_avx_bf16;
    case ENG_DT_F8E4M3: return colt_avx_fp8;
    default:            return colt_avx_f32;
    }
}

/* ===== bfloat16 mode's transposed product through vdpbf16ps =====
 *
 * y[t][c] = sum_r a[t][r] W[r][c] with a = bf16(x x xm) (--dtype bfloat16,
 * as the row products round theirs; FP8 weights as BF16 value / 256, the
 * block scale x 256 folded into xm). vdpbf16ps sums pairs along K, and K
 * is the weight's row index here: each weight vector is 16 columns of rows
 * r and r + 1 interleaved in registers ([W[r][c], W[r+1][c]] per 32-bit
 * lane; a missing row r + 1 past nrows is zeros against a zero activation),
 * and each token's pair (a[r], a[r+1]) is broadcast. Every output is one
 * lane of one accumulator fed the pairs in ascending r: no horizontal sum,
 * and its bits depend on nothing but nrows, so tiling tokens (BXT_NT at a
 * time, then the rest at once) and columns (masked 16-column vectors) never
 * changes them. One core, 16 tokens, the small preset's W_UK from L3: 97
 * GFLOP/s through the AVX2 colt tile (FP32 FMAs, 6 tokens x 16 columns),
 * 163 through this one (6 tokens x 64 columns, 32 products per
 * instruction; docs/perf.md). */
#define BXT_NT 6
#define BXT_NV 4        /* 16-column vectors: COL_CHUNK columns; 24 accumulators + 4 weight vectors */

/* Rows r, r + 1 of columns [c, c + 16) (mask m; mb: row r + 1's, 0 past the
 * rows) as 16 interleaved BF16 pairs. */
BF16DP INL __m512bh bxt_wv(const void *w, const int FP8, int64_t ld, int64_t r, int64_t c, __mmask16 m, __mmask16 mb,
                           __m512i idx)
{
    __m512i v;
    if (FP8) {
        const uint8_t *p = (const uint8_t *)w + r * ld + c;
        __m128i a = _mm_maskz_loadu_epi8(m, p), b = _mm_maskz_loadu_epi8(mb, mb ? p + ld : p);
        v = bx_fp8_32v(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
    } else {
        const uint16_t *p = (const uint16_t *)w + r * ld + c;
        v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_maskz_loadu_epi16(m, p)),
                               _mm256_maskz_loadu_epi16(mb, mb ? p + ld : p), 1);
    }
    return (__m512bh)_mm512_permutexvar_epi16(idx, v);
}

/* NT tokens (xb + t * ldb: a[t][0..nr), even-padded with a zero) x
 * columns [0, nc) (nc <= 16 * BXT_NV) of w (rows ld apart). */
BF16DP INL void bxt_blk(const void *w, const int FP8, int64_t ld, int64_t nr, const uint16_t *xb, int64_t ldb, int nc,
                        float *y, int64_t ldy, const int NT)
{
    __m512 acc[BXT_NT][BXT_NV];
    __mmask16 m[BXT_NV];
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    UNROLL for (int v = 0; v < BXT_NV; v++) {
        int k = nc - 16 * v;
        m[v] = k >= 16 ? (__mmask16)0xffff : k > 0 ? (__mmask16)((1u << k) - 1) : 0;
        UNROLL_NT for (int t = 0; t < NT; t++) acc[t][v] = _mm512_setzero_ps();
    }
    for (int64_t r = 0; r < nr; r += 2) {
        __m512bh wv[BXT_NV];
        UNROLL for (int v = 0; v < BXT_NV; v++)
            wv[v] = bxt_wv(w, FP8, ld, r, 16 * v, m[v], r + 1 < nr ? m[v] : 0, idx);
        UNROLL_NT for (int t = 0; t < NT; t++) {
            uint32_t pr;
            memcpy(&pr, xb + t * ldb + r, sizeof pr);
            __m512bh xv = (__m512bh)_mm512_set1_epi32((int)pr);
            UNROLL for (int v = 0; v < BXT_NV; v++) acc[t][v] = _mm512_dpbf16_ps(acc[t][v], wv[v], xv);
        }
    }
    UNROLL_NT for (int t = 0; t < NT; t++)
        UNROLL for (int v = 0; v < BXT_NV; v++) _mm512_mask_storeu_ps(y + t * ldy + 16 * v, m[v], acc[t][v]);
}

#define DEF_BXT(NAME, FP8)                                                                          \
BF16DP static void NAME(const void *w, int64_t ld, int64_t nr, const uint16_t *xb, int64_t ldb, int n, int nc, \
                        float *y, int64_t ldy)                                                       \
{                                                                                                    \
    for (int t = 0; t < n; t += BXT_NT) {                                                            \
        const uint16_t *xt = xb + t * ldb;                                                           \
        float *yt = y + t * ldy;                                                                     \
        switch (n - t < BXT_NT ? n - t : BXT_NT) {                                                   \
        case 6: bxt_blk(w, FP8, ld, nr, xt, ldb, nc, yt, ldy, 6); break;                             \
        case 5: bxt_blk(w, FP8, ld, nr, xt, ldb, nc, yt, ldy, 5); break;                             \
        case 4: bxt_blk(w, FP8, ld, nr, xt, ldb, nc, yt, ldy, 4); break;                             \
        case 3: bxt_blk(w, FP8, ld, nr, xt, ldb, nc, yt, ldy, 3); break;                             \
        case 2: bxt_blk(w, FP8, ld, nr, xt, ldb, nc, yt, ldy, 2); break;                             \
        default: bxt_blk(w, FP8, ld, nr, xt, ldb, nc, yt, ldy, 1); break;                            \
        }                                                                                            \
    }                                                                                                \
}
DEF_BXT(bxt_bf16, 0)
DEF_BXT(bxt_fp8, 1)
#undef DEF_BXT

/* a[0..nr) = bf16(x[r] * xm[r]) (the rounding of bx_round_row), a zero at nr. */
BF16DP static void bxt_round(const float *x, const float *xm, int64_t nr, uint16_t *a)
{
    int64_t r = 0;
    for (; r < nr; r += 16) {
        __mmask16 m = nr - r >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nr - r)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + r), _mm512_maskz_loadu_ps(m, xm + r));
        _mm256_mask_storeu_epi16(a + r, m, bx_round16(v));
    }
    a[nr] = 0;
}

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
    colt_fn tile;               /* NULL: acc per token */
    int bf16;                   /* --dtype bfloat16: activations (x xm) rounded to BF16 (BF16 / FP8 weights) */
    int bx;                     /* ... multiplied by bxt_* (AVX512-BF16); else acc / tile over the rounded values */
    int hpt;                    /* bx: heads per task */
    eng_backend *be;
};

/* Prefetch (into L2) columns [c, c + nc) of rows [0, nr), rows rb bytes
 * apart: the tile reads a head's block COL_CHUNK columns x nr rows at a
 * time, rows rb apart, which the hardware prefetcher leaves to latency. */
static void lint_prefetch(const char *w, size_t rb, int64_t nr, size_t c, size_t nc)
{
    for (size_t off = c; off < c + nc; off += 64)
        for (int64_t r = 0; r < nr; r++) _mm_prefetch(w + (size_t)r * rb + off, _MM_HINT_T1);
    if (nc % 64)
        for (int64_t r = 0; r < nr; r++) _mm_prefetch(w + (size_t)r * rb + c + nc - 1, _MM_HINT_T1);
}

/* bxt: task = heads [task * hpt, +hpt), each head's whole row block (every
 * column chunk); while a head computes, the next head's block streams in
 * chunk by chunk. */
static void lint_task_bx(const struct lint_ctx *c, int task, int thread)
{
    const eng_tensor *W = c->W;
    size_t es = eng_dtype_size(W->dtype), rb = (size_t)W->cols * es;
    int64_t ldb = (c->nrows + 2) & ~(int64_t)1;
    float *xm = eng_cpu_scratch_f(c->be, thread, (size_t)c->nrows + ((size_t)c->n * (size_t)ldb + 1) / 2);
    if (!xm) return;
    uint16_t *xb = (uint16_t *)(xm + c->nrows);
    int h0 = task * c->hpt, h1 = h0 + c->hpt < c->hs.n ? h0 + c->hpt : c->hs.n;
    for (int h = h0; h < h1; h++) {
        int64_t row0 = c->row0 + h * c->hs.w;
        const char *base = (const char *)W->data + (size_t)row0 * rb;
        const char *next = h + 1 < h1 ? base + (size_t)c->hs.w * rb : NULL;
        if (h == h0) lint_prefetch(base, rb, c->nrows, 0, rb);
        const float *x = c->x + h * c->hs.x;
        float *y = c->y + h * c->hs.y;
        for (int64_t cc = 0; cc < W->cols; cc += COL_CHUNK) {
            int ncc = (int)(W->cols - cc < COL_CHUNK ? W->cols - cc : COL_CHUNK);
            if (next) lint_prefetch(next, rb, c->nrows, (size_t)cc * es, (size_t)ncc * es);
            if (cc == 0 || (W->scale && cc % ENG_FP8_BLOCK == 0)) {     /* FP8: this column block's scales */
                for (int64_t r = 0; r < c->nrows; r++) {
                    int64_t wr = row0 + r;
                    xm[r] = W->scale ? W->scale[(wr / ENG_FP8_BLOCK) * W->scale_ld + cc / ENG_FP8_BLOCK] * 256.0f : 1.0f;
                }
                for (int i = 0; i < c->n; i++) bxt_round(x + i * c->ldx, xm, c->nrows, xb + i * ldb);
            }
            (W->scale ? bxt_fp8 : bxt_bf16)(base + (size_t)cc * es, W->cols, c->nrows, xb, ldb, c->n, ncc, y + cc,
                                            c->ldy);
        }
    }
}

static void lint_task(void *p, int task, int thread)
{
    struct lint_ctx *c = p;
    const eng_tensor *W = c->W;
    size_t es = eng_dtype_size(W->dtype);
    int h = task / c->chunks;
    int64_t c0 = (int64_t)(task % c->chunks) * COL_CHUNK, row0 = c->row0 + h * c->hs.w;
    int nc = (int)(W->cols - c0 < COL_CHUNK ? W->cols - c0 : COL_CHUNK);
    /* FP8 tiles take x pre-multiplied by the scales, bfloat16 mode x rounded:
     * nrows per token more. */
    size_t nxa = c->bf16 || (c->tile && W->scale) ? (size_t)c->n * (size_t)c->nrows : 0;
    float *xm = eng_cpu_scratch_f(c->be, thread, (size_t)c->nrows + nxa);
    if (!xm) return;
    /* Row multipliers: the FP8 block scale of (row, this column chunk). */
    for (int64_t r = 0; r < c->nrows; r++) {
        int64_t wr = row0 + r;
        xm[r] = W->scale ? W->scale[(wr / ENG_FP8_BLOCK) * W->scale_ld + c0 / ENG_FP8_BLOCK] * 256.0f : 1.0f;
    }
    const char *base = (const char *)W->data + (size_t)row0 * (size_t)W->cols * es;
    const float *x = c->x + h * c->hs.x;
    float *y = c->y + h * c->hs.y + c0;
    if (c->bx) { lint_task_bx(c, task, thread); return; }
    if (!c->tile && !c->bf16) {
        for (int i = 0; i < c->n; i++) c->acc(base, W->cols, c->nrows, x + i * c->ldx, xm, c0, nc, y + i * c->ldy);
        return;
    }
    const float *a = x;         /* x[r] * 1.0f is x[r]: unscaled weights use x as it is */
    int64_t lda = c->ldx;
    if (nxa) {
        float *xa = xm + c->nrows;
        for (int i = 0; i < c->n; i++)
            for (int64_t r = 0; r < c->nrows; r++) {
                float v = x[i * c->ldx + r] * xm[r];
                xa[i * c->nrows + r] = c->bf16 ? eng_bf16_to_f32(eng_cpu_bf16_round(v)) : v;
            }
        a = xa;
        lda = c->nrows;
    }
    if (!c->tile) {             /* portable bfloat16: the rounded a[r] times 1 */
        for (int64_t r = 0; r < c->nrows; r++) xm[r] = 1.0f;
        for (int i = 0; i < c->n; i++) c->acc(base, W->cols, c->nrows, a + i * lda, xm, c0, nc, y + i * c->ldy);
        return;
    }
    c->tile(base + (size_t)c0 * es, W->cols, c->nrows, a, lda, c->n, nc, y, c->ldy);
}

void eng_cpu_linear_t_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                           const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    pthread_once(&g_lut_once, lut_init);
    if (n <= 0 || nrows <= 0 || hs->n <= 0) return;
    int chunks = (int)((W->cols + COL_CHUNK - 1) / COL_CHUNK);
    int bf16 = be->compute_bf16 && (W->dtype == ENG_DT_BF16 || W->dtype == ENG_DT_F8E4M3);
    int bx = bf16 && be->avx512bf16;
    /* bxt: a run of whole heads per thread (lint_task_bx) */
    int hpt = (hs->n + be->n_threads - 1) / be->n_threads;
    struct lint_ctx c = { W, *hs, chunks, row0, nrows, x, n, ldx, y, ldy, pick_colacc(be, W->dtype),
                          pick_colt(be, W->dtype), bf16, bx, hpt, be };
    eng_cpu_run(be, lint_task, &c, bx ? (hs->n + hpt - 1) / hpt : chunks * hs->n);
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

/* W heads at once: W independent FMA chains over one shared b (the dot
 * above is one chain, bound by FMA latency). Each chain is exactly dot_avx's
 * for its head, so every out[h] is bit-identical to eng_cpu_dot. */
#define DOTS_AVX(W)                                                                              \
AVX2 static void dots##W##_avx(const float *a, int64_t lda, const float *b, int n, float *out)   \
{                                                                                                \
    __m256 acc[W];                                                                               \
    for (int h = 0; h < W; h++) acc[h] = _mm256_setzero_ps();                                    \
    int k = 0;                                                                                   \
    for (; k + 8 <= n; k += 8) {                                                                 \
        __m256 bv = _mm256_loadu_ps(b + k);                                                      \
        for (int h = 0; h < W; h++)                                                              \
            acc[h] = _mm256_fmadd_ps(_mm256_loadu_ps(a + h * lda + k), bv, acc[h]);              \
    }                                                                                            \
    for (int h = 0; h < W; h++) {                                                                \
        float s = hsum8(acc[h]);                                                                 \
        for (int kk = k; kk < n; kk++) s += a[h * lda + kk] * b[kk];                             \
        out[h] = s;                                                                              \
    }                                                                                            \
}
DOTS_AVX(8)
DOTS_AVX(4)
DOTS_AVX(2)
#undef DOTS_AVX

void eng_cpu_dots(const eng_backend *be, const float *a, int64_t lda, int na, const float *b, int n, float *out)
{
    int h = 0;
    if (be->avx2) {
        for (; h + 8 <= na; h += 8) dots8_avx(a + h * lda, lda, b, n, out + h);
        if (h + 4 <= na) { dots4_avx(a + h * lda, lda, b, n, out + h); h += 4; }
        if (h + 2 <= na) { dots2_avx(a + h * lda, lda, b, n, out + h); h += 2; }
    }
    for (; h < na; h++) out[h] = eng_cpu_dot(be, a + h * lda, b, n);
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

/* u[h][0..n) = sum over j < nr of p[h * ldp + j] * rows[j][0..n), for
 * h < nh: the value pass of attention. Each element is one FMA chain over
 * j in order starting from 0 (the scalar tail: multiply then add), exactly
 * what zeroing u and calling eng_cpu_axpy once per row in j order gives,
 * so the bits are those of that loop; but blocks of heads x columns stay
 * in registers while the rows stream by, instead of every row's axpy
 * loading and storing all of u (nh x n floats, more than L1 holds). */
#define WSUM_NH 4
#define WSUM_NV 3
AVX2 INL void wsum_blk(const float *p, int64_t ldp, const float *const *rows, int nr, int64_t c,
                       float *u, int64_t ldu, const int NH, const int NV)
{
    __m256 acc[WSUM_NH][WSUM_NV];
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int v = 0; v < NV; v++) acc[h][v] = _mm256_setzero_ps();
    for (int j = 0; j < nr; j++) {
        __m256 x[WSUM_NV];
        UNROLL for (int v = 0; v < NV; v++) x[v] = _mm256_loadu_ps(rows[j] + c + 8 * v);
        UNROLL for (int h = 0; h < NH; h++) {
            __m256 a = _mm256_broadcast_ss(p + h * ldp + j);
            UNROLL for (int v = 0; v < NV; v++) acc[h][v] = _mm256_fmadd_ps(a, x[v], acc[h][v]);
        }
    }
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int v = 0; v < NV; v++) _mm256_storeu_ps(u + h * ldu + c + 8 * v, acc[h][v]);
}

#define WSUM_NVS(NH_)                                                                            \
    do {                                                                                         \
        int64_t c = 0;                                                                           \
        for (; c + 24 <= n8; c += 24) wsum_blk(ph, ldp, rows, nr, c, uh, ldu, NH_, 3);           \
        if (c + 16 <= n8) { wsum_blk(ph, ldp, rows, nr, c, uh, ldu, NH_, 2); c += 16; }          \
        if (c + 8 <= n8) wsum_blk(ph, ldp, rows, nr, c, uh, ldu, NH_, 1);                        \
    } while (0)

AVX2 static void wsum_avx(const float *p, int64_t ldp, int nh, const float *const *rows, int nr, int n,
                          float *u, int64_t ldu)
{
    int64_t n8 = n & ~7;
    for (int h0 = 0; h0 < nh; h0 += WSUM_NH) {
        const float *ph = p + h0 * ldp;
        float *uh = u + h0 * ldu;
        switch (nh - h0 < WSUM_NH ? nh - h0 : WSUM_NH) {
        case 4: WSUM_NVS(4); break;
        case 3: WSUM_NVS(3); break;
        case 2: WSUM_NVS(2); break;
        default: WSUM_NVS(1); break;
        }
    }
    for (int h = 0; h < nh; h++)
        for (int64_t k = n8; k < n; k++) {
            float y = 0;
            for (int j = 0; j < nr; j++) y += p[h * ldp + j] * rows[j][k];
            u[h * ldu + k] = y;
        }
}
#undef WSUM_NVS

void eng_cpu_wsum(const eng_backend *be, const float *p, int64_t ldp, int nh, const float *const *rows, int nr,
                  int n, float *u, int64_t ldu)
{
    if (be->avx2) { wsum_avx(p, ldp, nh, rows, nr, n, u, ldu); return; }
    for (int h = 0; h < nh; h++) {
        memset(u + h * ldu, 0, (size_t)n * sizeof *u);
        for (int j = 0; j < nr; j++) eng_cpu_axpy(be, u + h * ldu, p[h * ldp + j], rows[j], n);
    }
}

/* s[0..4) = hsum8(a), hsum8(b), hsum8(c), hsum8(d) bit for bit (each lane
 * pair added in hsum8's order: lo + hi, then lanes 0 + 2 and 1 + 3, then
 * those two), the four reductions side by side in 11 instructions instead
 * of four dependent chains of 6: a short dot's tile is mostly reductions. */
AVX2 INL void hsum8x4(__m256 a, __m256 b, __m256 c, __m256 d, float *s)
{
    __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    /* lanes [a0+a2, a1+a3, c0+c2, c1+c3 | b.., d..] of the 4-lane halves */
    __m256 x = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 y = _mm256_add_ps(x, _mm256_shuffle_ps(x, x, _MM_SHUFFLE(2, 3, 0, 1)));   /* [a, ., c, . | b, ., d, .] */
    __m128 lo = _mm256_castps256_ps128(y), hi = _mm256_extractf128_ps(y, 1);
    _mm_storeu_ps(s, _mm_movelh_ps(_mm_unpacklo_ps(lo, hi), _mm_unpackhi_ps(lo, hi)));
}

/* out[h * ldo + j] = eng_cpu_dot(a + h * lda, rows[j], n) for h < na, j < nr,
 * bit for bit (each pair is one FMA chain over k, then hsum8 and the scalar
 * tail, as dot_avx), in tiles of 4 heads x 3 rows: 7 loads per 12 FMAs
 * instead of the 9 per 8 of eng_cpu_dots over one row. pf[0, npf): rows
 * whose [off, off + n) to prefetch, one line each per 16 floats of k. */
#define DR_NH 4
#define DR_NR 3
AVX2 INL void dots_rows_blk(const float *a, int64_t lda, const float *const *rows, int off, int n, float *out,
                            int64_t ldo, const int NH, const int NR, const float *const *pf, int npf)
{
    __m256 acc[DR_NH][DR_NR];
    UNROLL for (int h = 0; h < NH; h++) UNROLL for (int r = 0; r < NR; r++) acc[h][r] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        if (npf > 0 && !(k & 8)) {
            _mm_prefetch((const char *)(pf[0] + off + k), _MM_HINT_T0);
            if (npf > 1) _mm_prefetch((const char *)(pf[1] + off + k), _MM_HINT_T0);
            if (npf > 2) _mm_prefetch((const char *)(pf[2] + off + k), _MM_HINT_T0);
        }
        __m256 x[DR_NR];
        UNROLL for (int r = 0; r < NR; r++) x[r] = _mm256_loadu_ps(rows[r] + off + k);
        UNROLL for (int h = 0; h < NH; h++) {
            __m256 av = _mm256_loadu_ps(a + h * lda + k);
            UNROLL for (int r = 0; r < NR; r++) acc[h][r] = _mm256_fmadd_ps(av, x[r], acc[h][r]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++) {
        const __m256 z = _mm256_setzero_ps();
        float s[4];
        hsum8x4(acc[0][r], NH > 1 ? acc[1][r] : z, NH > 2 ? acc[2][r] : z, NH > 3 ? acc[3][r] : z, s);
        for (int h = 0; h < NH; h++) {
            for (int kk = k; kk < n; kk++) s[h] += a[h * lda + kk] * rows[r][off + kk];
            out[h * ldo + r] = s[h];
        }
    }
}

#define DR_ROWS(NH_)                                                                             \
    do {                                                                                         \
        int j = 0;                                                                               \
        for (; j + 3 <= nr; j += 3) dots_rows_blk(ah, lda, rows + j, 0, n, oh + j, ldo, NH_, 3, NULL, 0); \
        if (j + 2 <= nr) { dots_rows_blk(ah, lda, rows + j, 0, n, oh + j, ldo, NH_, 2, NULL, 0); j += 2; } \
        if (j < nr) dots_rows_blk(ah, lda, rows + j, 0, n, oh + j, ldo, NH_, 1, NULL, 0);                 \
    } while (0)

AVX2 static void dots_rows_avx(const float *a, int64_t lda, int na, const float *const *rows, int nr, int n,
                               float *out, int64_t ldo)
{
    for (int h0 = 0; h0 < na; h0 += DR_NH) {
        const float *ah = a + h0 * lda;
        float *oh = out + h0 * ldo;
        switch (na - h0 < DR_NH ? na - h0 : DR_NH) {
        case 4: DR_ROWS(4); break;
        case 3: DR_ROWS(3); break;
        case 2: DR_ROWS(2); break;
        default: DR_ROWS(1); break;
        }
    }
}
#undef DR_ROWS

void eng_cpu_dots_rows(const eng_backend *be, const float *a, int64_t lda, int na, const float *const *rows, int nr,
                       int n, float *out, int64_t ldo)
{
    if (be->avx2) { dots_rows_avx(a, lda, na, rows, nr, n, out, ldo); return; }
    for (int h = 0; h < na; h++)
        for (int j = 0; j < nr; j++) out[h * ldo + j] = eng_cpu_dot(be, a + h * lda, rows[j], n);
}

/* The MLA scores of one tile of NH heads x NR rows: the latent dots, then
 * the rope dots over the same rows (still in L1), each a dot_avx chain
 * (hsum8 order, scalar tail), then scale * (lat + rope) as two roundings:
 * one call and one pass instead of two dots_rows calls and a third pass. */
AVX2 INL void mla_scores_blk(const float *ql, int64_t ldql, const float *qp, int64_t ldqp, const float *const *rows,
                             int lat, int rope, float scale, float *out, int64_t ldo, const int NH, const int NR,
                             const float *const *pf, int npf)
{
    float sl[DR_NH * DR_NR], sp[DR_NH * DR_NR];
    dots_rows_blk(ql, ldql, rows, 0, lat, sl, DR_NR, NH, NR, pf, npf);
    dots_rows_blk(qp, ldqp, rows, lat, rope, sp, DR_NR, NH, NR, pf, npf);
    for (int h = 0; h < NH; h++)
        for (int r = 0; r < NR; r++) out[h * ldo + r] = scale * (sl[h * DR_NR + r] + sp[h * DR_NR + r]);
}

/* Row tiles outer, head groups inner, and the rows of the tile MS_PFD rows
 * ahead prefetched during this tile. In batched decode the cache rows are
 * cold (the MoE weights stream through the caches between two visits of a
 * layer), and the tile's loads, three rows read side by side 32 bytes at a
 * time, are a pattern the hardware prefetchers do not follow: in a
 * microbenchmark (2026-12-04, one core, 1.4 MB of rows flushed) that pass
 * read 14 GB/s from DRAM against 38-42 for a sequential read or for the
 * same pass prefetching the next rows one line per line read. The head groups share the tile's
 * prefetches (group g: rows [3g / ng, 3(g + 1) / ng) of the next tile),
 * so the rate stays near one line per FMA step: a burst of prefetches
 * beyond the core's outstanding misses is dropped (measured: 54 lines at
 * the start of each tile, or all rows ahead of time, changed nothing).
 * The first group's tile leaves the rows in L1 for the others. Neither
 * the order of tiles nor the prefetches change a bit of any score. */
#define MS_PFD 6
#define MS_HEADS(NR_)                                                                                        \
    do {                                                                                                     \
        for (int h0 = 0, g = 0; h0 < nh; h0 += DR_NH, g++) {                                                 \
            const float *qlh = ql + h0 * ldql, *qph = qp + h0 * ldqp, *const *pg = pfr + g * DR_NR / ng;     \
            float *oh = out + h0 * ldo + j;                                                                  \
            int npg = pf ? (g + 1) * DR_NR / ng - g * DR_NR / ng : 0;                                        \
            switch (nh - h0 < DR_NH ? nh - h0 : DR_NH) {                                                     \
            case 4: mla_scores_blk(qlh, ldql, qph, ldqp, rows + j, lat, rope, scale, oh, ldo, 4, NR_, pg, npg); break; \
            case 3: mla_scores_blk(qlh, ldql, qph, ldqp, rows + j, lat, rope, scale, oh, ldo, 3, NR_, pg, npg); break; \
            case 2: mla_scores_blk(qlh, ldql, qph, ldqp, rows + j, lat, rope, scale, oh, ldo, 2, NR_, pg, npg); break; \
            default: mla_scores_blk(qlh, ldql, qph, ldqp, rows + j, lat, rope, scale, oh, ldo, 1, NR_, pg, npg); break; \
            }                                                                                                \
        }                                                                                                    \
    } while (0)

AVX2 static void mla_scores_avx(const float *ql, int64_t ldql, const float *qp, int64_t ldqp, int nh,
                                const float *const *rows, int nr, int lat, int rope, float scale, float *out,
                                int64_t ldo)
{
    const float *pfr[DR_NR];
    int j = 0, ng = (nh + DR_NH - 1) / DR_NH, pf;
    for (; j + DR_NR <= nr; j += DR_NR) {
        pf = j + MS_PFD < nr;       /* (the last row again for rows past the end) */
        for (int r = 0; r < DR_NR; r++) pfr[r] = rows[j + MS_PFD + r < nr ? j + MS_PFD + r : nr - 1];
        MS_HEADS(3);
    }
    pf = 0;
    if (j + 2 <= nr) { MS_HEADS(2); j += 2; }
    if (j < nr) MS_HEADS(1);
}
#undef MS_HEADS

void eng_cpu_mla_scores(const eng_backend *be, const float *ql, int64_t ldql, const float *qp, int64_t ldqp, int nh,
                        const float *const *rows, int nr, int lat, int rope, float scale, float *out, int64_t ldo)
{
    if (be->avx2) { mla_scores_avx(ql, ldql, qp, ldqp, nh, rows, nr, lat, rope, scale, out, ldo); return; }
    for (int h = 0; h < nh; h++)
        for (int j = 0; j < nr; j++)
            out[h * ldo + j] = scale * (eng_cpu_dot(be, ql + h * ldql, rows[j], lat) +
                                        eng_cpu_dot(be, qp + h * ldqp, rows[j] + lat, rope));
}

/* Adding +0 where d <= 0 (or NaN) leaves s as it is, bit for bit: s
 * starts at +0 and a sum of +0 and -0 is +0, so s is never -0. */
AVX2 static void relu_wsum_avx(const float *w, int nh, const float *d, int64_t ldd, int n, float *s)
{
    int j = 0;
    const __m256 z = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 acc = z;
        for (int h = 0; h < nh; h++) {
            __m256 dv = _mm256_loadu_ps(d + h * ldd + j);
            __m256 p = _mm256_mul_ps(_mm256_set1_ps(w[h]), dv);
            acc = _mm256_add_ps(acc, _mm256_and_ps(p, _mm256_cmp_ps(dv, z, _CMP_GT_OQ)));
        }
        _mm256_storeu_ps(s + j, acc);
    }
    for (; j < n; j++) {
        float a = 0;
        for (int h = 0; h < nh; h++)
            if (d[h * ldd + j] > 0) a += w[h] * d[h * ldd + j];
        s[j] = a;
    }
}

void eng_cpu_relu_wsum(const eng_backend *be, const float *w, int nh, const float *d, int64_t ldd, int n, float *s)
{
    if (be->avx2) { relu_wsum_avx(w, nh, d, ldd, n, s); return; }
    for (int j = 0; j < n; j++) {
        float a = 0;
        for (int h = 0; h < nh; h++)
            if (d[h * ldd + j] > 0) a += w[h] * d[h * ldd + j];
        s[j] = a;
    }
}
