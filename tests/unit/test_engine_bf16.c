/* test_engine_bf16.c — the bfloat16 compute mode's kernels (glm-engine
 * --dtype bfloat16; docs/engine.md "Compute dtype"): the f32 -> bf16
 * rounding, the vdpbf16ps register tiles and the portable path against a
 * double-precision reference of the same math, and batch invariance of
 * both paths over every token grouping. The model-level checks (goldens
 * within the bf16 tolerance, batch invariance through the forward pass)
 * are in test_engine_model.c. */
#include "test.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/cpu/cpu.h"
#include "pl.h"

static float f_of(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static uint32_t u_of(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }

static int has_avx512bf16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

/* Round to nearest even, with vcvtneps2bf16's rules for the special cases. */
TEST(bf16_round_nearest_even)
{
    static const struct { uint32_t in; uint16_t out; } k[] = {
        { 0x3f800000u, 0x3f80 },    /* 1.0 exact */
        { 0x3f808000u, 0x3f80 },    /* halfway, even below: down */
        { 0x3f818000u, 0x3f82 },    /* halfway, odd below: up to even */
        { 0x3f808001u, 0x3f81 },    /* past halfway: up */
        { 0x3f807fffu, 0x3f80 },    /* below halfway: down */
        { 0xbf818000u, 0xbf82 },    /* sign kept, ties the same */
        { 0x3fff8000u, 0x4000 },    /* mantissa carry into the exponent */
        { 0x7f7fffffu, 0x7f80 },    /* largest float: rounds past the bf16 range to inf */
        { 0x7f7f7fffu, 0x7f7f },    /* largest bf16 */
        { 0x7f800000u, 0x7f80 },    /* inf */
        { 0xff800000u, 0xff80 },    /* -inf */
        { 0x7fc00000u, 0x7fc0 },    /* quiet NaN */
        { 0x7f800001u, 0x7fc0 },    /* signalling NaN (payload only in the low bits): quiet, not inf */
        { 0xffa12345u, 0xffe1 },    /* NaN: sign and top payload kept, quiet bit set */
        { 0x00000001u, 0x0000 },    /* denormals become a signed zero */
        { 0x807fffffu, 0x8000 },
        { 0x00800000u, 0x0080 },    /* smallest normal */
        { 0x00000000u, 0x0000 },
        { 0x80000000u, 0x8000 },
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(k); i++) {
        uint16_t got = eng_cpu_bf16_round(f_of(k[i].in));
        if (got != k[i].out) fprintf(stderr, "  %08x -> %04x, expected %04x\n", k[i].in, got, k[i].out);
        CHECK_EQ_INT(got, k[i].out);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void cvtne16(const float *in, uint16_t *out)
{
    _mm256_storeu_si256((__m256i *)out, (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(in)));
}

/* The scalar rounding (the portable path's) is vcvtneps2bf16 bit for bit:
 * every exponent with random mantissas, ties forced, specials. */
TEST(bf16_round_equals_vcvtneps2bf16)
{
    if (!has_avx512bf16()) { test_skip("no AVX512-BF16 on this CPU: cannot compare with vcvtneps2bf16"); return; }
    enum { N = 1 << 20 };
    static float in[N];
    static uint16_t hw[N];
    uint64_t z = 11;
    for (int i = 0; i < N; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(z >> 32);
        if (i % 4 == 1) u = (u & 0xffff0000u) | 0x8000u;           /* exact ties */
        if (i % 4 == 2) u = (u & 0x807fffffu) | ((uint32_t)(i >> 2) % 256u) << 23;  /* every exponent */
        in[i] = f_of(u);
    }
    for (int i = 0; i < N; i += 16) cvtne16(in + i, hw + i);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (eng_cpu_bf16_round(in[i]) != hw[i]) {
            if (bad++ < 5) fprintf(stderr, "  %08x: scalar %04x, vcvtneps2bf16 %04x\n", u_of(in[i]), eng_cpu_bf16_round(in[i]), hw[i]);
        }
    CHECK_EQ_INT(bad, 0);
}

/* ===== the linear kernels against a reference of the same math ===== */

enum { ROWS = 70, COLS = 2093, NMAX = 40, SLD = (COLS + 127) / 128 };
static uint16_t g_wb[ROWS * COLS];
static uint8_t g_w8[ROWS * COLS];
static float g_wf[ROWS * COLS], g_sc[SLD], g_x[NMAX * COLS];

static void fill(void)
{
    uint64_t z = 5;
#define RND() ((float)((z = z * 6364136223846793005ull + 1) >> 40) / (1 << 24) * 2 - 1)
    for (int i = 0; i < ROWS * COLS; i++) {
        g_wf[i] = RND();
        g_wb[i] = (uint16_t)(u_of(g_wf[i]) >> 16);
        g_w8[i] = (uint8_t)((z >> 30) & 0x7f) | (uint8_t)(z >> 63 << 7);
        if ((g_w8[i] & 0x7f) == 0x7f) g_w8[i] ^= 1;    /* no NaN */
    }
    for (int i = 0; i < SLD; i++) g_sc[i] = 0.01f + 0.001f * (float)i;
    for (int i = 0; i < NMAX * COLS; i++) g_x[i] = RND() * (1.0f + (float)(i % 7));
#undef RND
}

/* Reference in double: y = sum_k w[k] * bf16(x[k] * m_k) with w the BF16
 * weight (FP8: its value / 256, m_k = block scale x 256), and the f32-
 * activation value for comparison; *mag = sum |terms| (the error scale). */
static void reference(const eng_tensor *W, int r, const float *x, int cols, double *ybf, double *yf, double *mag)
{
    *ybf = *yf = *mag = 0;
    for (int k = 0; k < cols; k++) {
        double w;
        float xs = x[k];
        if (W->dtype == ENG_DT_BF16) w = eng_bf16_to_f32(((const uint16_t *)W->data)[(size_t)r * W->cols + k]);
        else {
            w = eng_fp8_to_f32(((const uint8_t *)W->data)[(size_t)r * W->cols + k]) / 256.0;
            xs = x[k] * (W->scale[(r / ENG_FP8_BLOCK) * W->scale_ld + k / ENG_FP8_BLOCK] * 256.0f);
        }
        double xb = eng_bf16_to_f32(eng_cpu_bf16_round(xs));
        *ybf += w * xb;
        *yf += w * (double)xs;
        *mag += fabs(w * xb);
    }
}

static eng_backend *bf16_backend(int threads, int portable)
{
    eng_backend *be = NULL;
    char err[256];
    if (portable) setenv("GLM_ENGINE_NO_AVX512BF16", "1", 1);
    int rc = eng_be_cpu_create(threads, &be, err, sizeof err);
    unsetenv("GLM_ENGINE_NO_AVX512BF16");
    if (rc || eng_be_set_compute(be, ENG_BE_COMPUTE_BF16, err, sizeof err)) {
        fprintf(stderr, "  backend: %s\n", err);
        eng_be_free(be);
        return NULL;
    }
    return be;
}

/* Outputs against the reference: the worst error in units of the bound,
 * how many exceed it, how many the rounding visibly moved. */
typedef struct err_tally { double worst; int bad, rounded; } err_tally;

static void tally_add(err_tally *a, double y, double ybf, double yf, double bound)
{
    double e = fabs(y - ybf) / bound;
    if (e > a->worst) a->worst = e;
    a->bad += e > 1;
    a->rounded += fabs(yf - ybf) > 4 * bound;
}

static void tally_check(const err_tally *a, int portable)
{
    printf("     %s: worst error %.3f of the bound; %d outputs visibly moved by the rounding\n",
           portable ? "portable" : "vdpbf16ps", a->worst, a->rounded);
    CHECK_EQ_INT(a->bad, 0);
    CHECK(a->rounded > 100);
}

/* Every output within the f32 accumulation bound of the reference
 * ((cols/16 + 16) roundings of at most 2^-24 of the running |sum|), and
 * far enough from the f32-activation product somewhere that the rounding
 * is shown to happen. Column counts cover every K tail (1, 31, 32, 33,
 * one FP8 block boundary, 2093) and more than one weight block. */
static void check_against_reference(int portable)
{
    eng_backend *be = bf16_backend(2, portable);
    if (!be) { CHECK(0); return; }
    static const int colsv[] = { 1, 31, 32, 33, 129, 1000, COLS };
    static float y[NMAX * ROWS];
    err_tally tl = { 0, 0, 0 };
    for (size_t ci = 0; ci < PL_ARRAY_LEN(colsv); ci++) {
        int cols = colsv[ci];
        eng_tensor ws[2] = { { ENG_DT_BF16, ROWS, cols, g_wb, NULL, 0, "wb" },
                             { ENG_DT_F8E4M3, ROWS, cols, g_w8, g_sc, SLD, "w8" } };
        for (int d = 0; d < 4; d++) {       /* each weight with one token (decode tiles) and with several */
            int n = d < 2 ? 1 : 1 + (int)(ci * 5 % 17);
            eng_be_linear(be, &ws[d % 2], 0, ROWS, g_x, n, COLS, y, ROWS);
            for (int t = 0; t < n; t++)
                for (int r = 0; r < ROWS; r++) {
                    double ybf, yf, mag;
                    reference(&ws[d % 2], r, g_x + (size_t)t * COLS, cols, &ybf, &yf, &mag);
                    tally_add(&tl, y[t * ROWS + r], ybf, yf, (cols / 16.0 + 16) * ldexp(mag, -24) + 1e-30);
                }
        }
    }
    tally_check(&tl, portable);
    eng_be_free(be);
}

/* 1: the vdpbf16ps tiles can run here; 0: the test is skipped, visibly. */
static int vdp_or_skip(void)
{
    if (has_avx512bf16()) return 1;
    test_skip("no AVX512-BF16 on this CPU: the vdpbf16ps tiles cannot run here");
    return 0;
}

TEST(vdpbf16ps_tiles_match_reference) { if (vdp_or_skip()) check_against_reference(0); }

TEST(portable_bf16_path_matches_reference) { check_against_reference(1); }

/* A token's outputs are its bits alone whatever the token grouping (1..40
 * rows: every tile width and remainder, the shared last two groups, several
 * token blocks), the thread
 * count, and for FP8 whatever the row range (a 128-row scale block split). */
static void check_grouping(int portable)
{
    eng_backend *b2 = bf16_backend(2, portable), *b1 = bf16_backend(1, portable);
    if (!b2 || !b1) { CHECK(0); eng_be_free(b2); eng_be_free(b1); return; }
    eng_tensor ws[2] = { { ENG_DT_BF16, ROWS, COLS, g_wb, NULL, 0, "wb" },
                         { ENG_DT_F8E4M3, ROWS, COLS, g_w8, g_sc, SLD, "w8" } };
    static float yn[NMAX * ROWS], y1[ROWS], yt[NMAX * ROWS];
    /* 7, 8, 13, 14, 20: the last two token groups share 6 + 1 or 6 + 2 tokens */
    static const int ns[] = { 1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 20, 22, 29, 36, NMAX };
    int bad = 0;
    for (int d = 0; d < 2; d++)
        for (size_t a = 0; a < PL_ARRAY_LEN(ns); a++) {
            int n = ns[a];
            eng_be_linear(b2, &ws[d], 0, ROWS, g_x, n, COLS, yn, ROWS);
            eng_be_linear(b1, &ws[d], 0, ROWS, g_x, n, COLS, yt, ROWS);
            bad += memcmp(yn, yt, sizeof(float) * (size_t)n * ROWS) != 0;
            for (int t = 0; t < n; t++) {
                eng_be_linear(b2, &ws[d], 0, ROWS, g_x + (size_t)t * COLS, 1, COLS, y1, ROWS);
                bad += memcmp(y1, yn + (size_t)t * ROWS, sizeof y1) != 0;
            }
            /* rows [5, 70) alone: the same bits as inside the whole range */
            eng_be_linear(b2, &ws[d], 5, ROWS - 5, g_x, n, COLS, yt, ROWS - 5);
            for (int t = 0; t < n; t++) bad += memcmp(yt + t * (ROWS - 5), yn + t * ROWS + 5, sizeof(float) * (ROWS - 5)) != 0;
        }
    CHECK_EQ_INT(bad, 0);
    eng_be_free(b2);
    eng_be_free(b1);
}

TEST(vdpbf16ps_tokens_bit_identical_alone_or_grouped) { if (vdp_or_skip()) check_grouping(0); }

TEST(portable_bf16_tokens_bit_identical_alone_or_grouped) { check_grouping(1); }

/* The two paths agree within twice the bound (same math, other orders). */
TEST(vdpbf16ps_and_portable_agree)
{
    if (!has_avx512bf16()) { test_skip("no AVX512-BF16 on this CPU: only the portable path runs here"); return; }
    eng_backend *a = bf16_backend(2, 0), *p = bf16_backend(2, 1);
    if (!a || !p) { CHECK(0); eng_be_free(a); eng_be_free(p); return; }
    static float ya[16 * ROWS], yp[16 * ROWS];
    eng_tensor W = { ENG_DT_BF16, ROWS, COLS, g_wb, NULL, 0, "wb" };
    eng_be_linear(a, &W, 0, ROWS, g_x, 16, COLS, ya, ROWS);
    eng_be_linear(p, &W, 0, ROWS, g_x, 16, COLS, yp, ROWS);
    int bad = 0, differ = 0;
    for (int t = 0; t < 16; t++)
        for (int r = 0; r < ROWS; r++) {
            double ybf, yf, mag;
            reference(&W, r, g_x + (size_t)t * COLS, COLS, &ybf, &yf, &mag);
            bad += fabs(ya[t * ROWS + r] - yp[t * ROWS + r]) > 2 * (COLS / 16.0 + 16) * ldexp(mag, -24);
            differ += ya[t * ROWS + r] != yp[t * ROWS + r];
        }
    printf("     %d of %d outputs differ in their last bits between the paths\n", differ, 16 * ROWS);
    CHECK_EQ_INT(bad, 0);
    eng_be_free(a);
    eng_be_free(p);
}

/* ===== linear_t_heads (the absorbed MLA query) in bfloat16 mode =====
 *
 * y[t][h][c] = sum_r W[row0 + h*TW + r][c] * bf16(x[t][h][r] * m) (FP8: W
 * as value / 256, m = its block scale x 256; BF16: m = 1), for both paths
 * against a double reference within the f32 accumulation bound, and each
 * token's bits alone or in any group, on 1 or 2 threads. 3 heads of 71 rows
 * (odd: the last vdpbf16ps pair is half zero) at row stride 75 from row 60
 * (FP8 heads cross a 128-row scale block) x 141 columns (two column scale
 * blocks, a 13-column tail). */
enum { TNH = 3, TW = 75, TNR = 71, TR0 = 60, TC = 141, TROWS = 1000, TSLD = (TC + 127) / 128, TNMAX = 19 };

static void t_heads_reference(const eng_tensor *W, int t, int h, int c, double *ybf, double *yf, double *mag)
{
    *ybf = *yf = *mag = 0;
    for (int r = 0; r < TNR; r++) {
        int64_t wr = TR0 + h * TW + r, k = wr * TC + c;
        float xs = g_x[(size_t)t * TNH * TNR + h * TNR + r];
        double w;
        if (W->dtype == ENG_DT_BF16) w = eng_bf16_to_f32(((const uint16_t *)W->data)[k]);
        else {
            w = eng_fp8_to_f32(((const uint8_t *)W->data)[k]) / 256.0;
            xs = xs * (W->scale[(wr / ENG_FP8_BLOCK) * W->scale_ld + c / ENG_FP8_BLOCK] * 256.0f);
        }
        double xb = eng_bf16_to_f32(eng_cpu_bf16_round(xs));
        *ybf += w * xb;
        *yf += w * (double)xs;
        *mag += fabs(w * xb);
    }
}

static void check_t_heads(int portable)
{
    eng_backend *b2 = bf16_backend(2, portable), *b1 = bf16_backend(1, portable);
    if (!b2 || !b1) { CHECK(0); eng_be_free(b2); eng_be_free(b1); return; }
    eng_tensor ws[2] = { { ENG_DT_BF16, TROWS, TC, g_wb, NULL, 0, "wb" },
                         { ENG_DT_F8E4M3, TROWS, TC, g_w8, g_sc, TSLD, "w8" } };
    eng_be_heads hs = { TNH, TW, TNR, TC };
    static float yn[TNMAX * TNH * TC], y1[TNH * TC], yt[TNMAX * TNH * TC];
    static const int ns[] = { 1, 2, 5, 6, 7, 12, 13, 16, TNMAX };
    int diff = 0;
    err_tally tl = { 0, 0, 0 };
    for (int d = 0; d < 2; d++)
        for (size_t a = 0; a < PL_ARRAY_LEN(ns); a++) {
            int n = ns[a];
            eng_be_linear_t_heads(b2, &ws[d], TR0, TNR, &hs, g_x, n, TNH * TNR, yn, TNH * TC);
            eng_be_linear_t_heads(b1, &ws[d], TR0, TNR, &hs, g_x, n, TNH * TNR, yt, TNH * TC);
            diff += memcmp(yn, yt, sizeof(float) * (size_t)n * TNH * TC) != 0;
            for (int t = 0; t < n; t++) {
                eng_be_linear_t_heads(b2, &ws[d], TR0, TNR, &hs, g_x + (size_t)t * TNH * TNR, 1, TNH * TNR, y1, TNH * TC);
                diff += memcmp(y1, yn + (size_t)t * TNH * TC, sizeof y1) != 0;
            }
            if (n != TNMAX) continue;
            for (int t = 0; t < n; t++)
                for (int h = 0; h < TNH; h++)
                    for (int c = 0; c < TC; c++) {
                        double ybf, yf, mag;
                        t_heads_reference(&ws[d], t, h, c, &ybf, &yf, &mag);
                        tally_add(&tl, yn[(size_t)t * TNH * TC + h * TC + c], ybf, yf,
                                  (TNR + 16) * ldexp(mag, -24) + 1e-30);
                    }
        }
    tally_check(&tl, portable);
    CHECK_EQ_INT(diff, 0);
    eng_be_free(b2);
    eng_be_free(b1);
}

TEST(vdpbf16ps_t_heads_match_reference_and_group_invariant) { if (vdp_or_skip()) check_t_heads(0); }

TEST(portable_bf16_t_heads_match_reference_and_group_invariant) { check_t_heads(1); }

/* F32 weights, eng_be_linear_f32 on any weight and group outputs marked
 * f32 keep f32 activations in bfloat16 mode: the float32 mode's bits. */
TEST(f32_products_unchanged_in_bf16_mode)
{
    eng_backend *f = NULL, *b = bf16_backend(2, 0);
    char err[256];
    CHECK(eng_be_cpu_create(2, &f, err, sizeof err) == 0);
    if (!f || !b) { CHECK(0); eng_be_free(f); eng_be_free(b); return; }
    static float ya[8 * ROWS], yb[8 * ROWS];
    eng_tensor wf = { ENG_DT_F32, ROWS, COLS, g_wf, NULL, 0, "wf" }, wb = { ENG_DT_BF16, ROWS, COLS, g_wb, NULL, 0, "wb" };
    eng_be_linear(f, &wf, 0, ROWS, g_x, 8, COLS, ya, ROWS);
    eng_be_linear(b, &wf, 0, ROWS, g_x, 8, COLS, yb, ROWS);
    CHECK(memcmp(ya, yb, sizeof ya) == 0);
    eng_be_linear(f, &wb, 0, ROWS, g_x, 8, COLS, ya, ROWS);
    eng_be_linear_f32(b, &wb, 0, ROWS, g_x, 8, COLS, yb, ROWS);
    CHECK(memcmp(ya, yb, sizeof ya) == 0);
    eng_be_linear(b, &wb, 0, ROWS, g_x, 8, COLS, yb, ROWS);
    CHECK(memcmp(ya, yb, sizeof ya) != 0);          /* and the mode is on for BF16 */
    /* a group output marked f32 (the router beside the shared expert) keeps
     * the float32 bits, its neighbours get the mode's */
    static float yg[8 * ROWS], yh[8 * ROWS];
    eng_be_lin_out g[2] = { { &wb, 0, ROWS, yg, ROWS, 1 }, { &wb, 0, ROWS, yh, ROWS, 0 } };
    eng_be_linear_group(b, g, 2, g_x, 8, COLS);
    CHECK(memcmp(yg, ya, sizeof ya) == 0);
    CHECK(memcmp(yh, yb, sizeof yb) == 0);
    /* linear_t_heads over F32 weights: the float32 mode's bits */
    eng_be_heads hs = { 2, 30, 25, ROWS };
    eng_tensor wt = { ENG_DT_F32, 60, ROWS, g_wf, NULL, 0, "wt" };
    eng_be_linear_t_heads(f, &wt, 0, 25, &hs, g_x, 4, 50, ya, 2 * ROWS);     /* [4, 2 * ROWS] */
    eng_be_linear_t_heads(b, &wt, 0, 25, &hs, g_x, 4, 50, yb, 2 * ROWS);
    CHECK(memcmp(ya, yb, sizeof(float) * 4 * 2 * ROWS) == 0);
    CHECK(eng_be_set_compute(f, (enum eng_be_compute)7, err, sizeof err) == PL_ERR_INVALID);
    CHECK(strstr(eng_be_describe(b), "bfloat16") != NULL);
    eng_be_free(f);
    eng_be_free(b);
}

int main(void)
{
    pl_log_init("test_engine_bf16");
    fill();
    RUN(bf16_round_nearest_even);
    RUN(bf16_round_equals_vcvtneps2bf16);
    RUN(vdpbf16ps_tiles_match_reference);
    RUN(portable_bf16_path_matches_reference);
    RUN(vdpbf16ps_tokens_bit_identical_alone_or_grouped);
    RUN(portable_bf16_tokens_bit_identical_alone_or_grouped);
    RUN(vdpbf16ps_and_portable_agree);
    RUN(vdpbf16ps_t_heads_match_reference_and_group_invariant);
    RUN(portable_bf16_t_heads_match_reference_and_group_invariant);
    RUN(f32_products_unchanged_in_bf16_mode);
    return test_report();
}
