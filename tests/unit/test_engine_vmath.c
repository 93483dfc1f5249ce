/* test_engine_vmath.c — the CPU backend's FP32 exp (engine/cpu/vmath.h)
 * and the ops built on it: the portable, AVX2 and AVX-512 bodies give the
 * same bits for inputs spread over the whole float range and the special
 * values; the error against double exp stays within 1 ulp; silu_mul gives
 * the same bits on 1 and 2 threads, in every kernel, and for every row /
 * column cut of a call; the router's sigmoid weights are the same function. */
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/cpu/cpu.h"
#include "../../engine/cpu/vmath.h"

static float f_of(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static uint32_t u_of(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }

static int has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

static int has_avx512(void)
{
    return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

/* Whole arrays through each body (n a multiple of 16). */
static void exp_ref(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = eng_vm_exp(x[i]);
}

ENG_VM_AVX2 static void exp_avx2(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i += 8) _mm256_storeu_ps(y + i, eng_vm_exp8(_mm256_loadu_ps(x + i)));
}

ENG_VM_AVX512 static void exp_avx512(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i += 16) _mm512_storeu_ps(y + i, eng_vm_exp16(_mm512_loadu_ps(x + i)));
}

/* Special and boundary inputs. */
static const uint32_t k_special[] = {
    0x00000000u, 0x80000000u,               /* +-0 */
    0x7f800000u, 0xff800000u,               /* +-inf */
    0x7fc00000u, 0xffc00000u, 0x7fa00001u, 0x7f800001u, 0xffbfffffu,   /* quiet / signalling NaNs */
    0x7f7fffffu, 0xff7fffffu,               /* +-FLT_MAX */
    0x00800000u, 0x80800000u, 0x00000001u, 0x80000001u, 0x007fffffu,   /* normal / subnormal edges */
    0x42b17217u, 0x42b17218u,               /* 88.7228: the last finite exp and the first inf */
    0x42b20000u, 0x42b20001u, 0x42b1ffffu,  /* 89 = EXP_HI, its neighbours */
    0xc2aeac4fu, 0xc2aeac50u,               /* -87.336: the normal / subnormal edge */
    0xc2cff1b4u, 0xc2cff1b5u, 0xc2cff1b3u,  /* -103.972: the last non-zero result */
    0xc2d00000u, 0xc2d00001u, 0xc2cfffffu,  /* -104 = EXP_LO, its neighbours */
    0x3eb17218u, 0xbeb17218u,               /* +-ln2/2: where k changes */
    0x3f317218u, 0xbf317218u, 0x3f800000u, 0xbf800000u,
    0x33800000u, 0xb3800000u,               /* +-2^-24 */
};

/* Inputs spread over all 2^32 patterns: pattern i * 256 plus a scrambled
 * low byte, then the specials; n_out: a multiple of 16. */
static float *spread_inputs(size_t *n_out)
{
    size_t ns = sizeof k_special / sizeof k_special[0], n = ((size_t)1 << 24) + ns;
    n = (n + 15) / 16 * 16;
    float *x = malloc(n * sizeof *x);
    if (!x) return NULL;
    for (uint32_t i = 0; i < (1u << 24); i++) x[i] = f_of(i << 8 | ((i * 2654435761u) >> 24));
    for (size_t i = 0; i < n - ((size_t)1 << 24); i++) x[((size_t)1 << 24) + i] = f_of(k_special[i % ns]);
    *n_out = n;
    return x;
}

TEST(vmath_bodies_same_bits)
{
    size_t n;
    float *x = spread_inputs(&n), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    CHECK(x && a && b);
    if (!x || !a || !b) { free(x); free(a); free(b); return; }
    exp_ref(x, a, n);
    int bodies = 0;
    for (int v = 0; v < 2; v++) {
        if (v == 0 ? !has_avx2() : !has_avx512()) {
            fprintf(stderr, "  note: no %s here: that body not compared\n", v ? "AVX-512" : "AVX2");
            continue;
        }
        if (v == 0) exp_avx2(x, b, n);
        else exp_avx512(x, b, n);
        bodies++;
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            if (u_of(a[i]) != u_of(b[i]) && bad++ < 5)
                fprintf(stderr, "  %s exp(%a = 0x%08x) = 0x%08x, scalar 0x%08x\n", v ? "avx512" : "avx2", x[i],
                        u_of(x[i]), u_of(b[i]), u_of(a[i]));
        CHECK(bad == 0);
    }
    if (!bodies) test_skip("no AVX2 or AVX-512: only the portable body exists here");
    free(x); free(a); free(b);
}

/* |y - exp(x)| in units of the float ulp at exp(x) (2^-149 in the
 * subnormal range); +inf counts 0 where exp(x) rounds past FLT_MAX and
 * 1e9 otherwise. */
static double ulp_err(float y, double d)
{
    if (d >= 0x1.ffffffp127) return isinf(y) && y > 0 ? 0 : 1e9;
    if (!isfinite(y)) return 1e9;
    int e;
    frexp(d, &e);
    double u = e - 24 < -149 ? 0x1p-149 : ldexp(1.0, e - 24);
    return fabs((double)y - d) / u;
}

TEST(vmath_exp_within_1_ulp)
{
    size_t n;
    float *x = spread_inputs(&n);
    CHECK(x != NULL);
    if (!x) return;
    double worst = 0;
    float wx = 0;
    size_t checked = 0;
    /* every spread input in the useful range, and 2^22 evenly spaced points of it */
    for (size_t i = 0; i < n + ((size_t)1 << 22); i++) {
        float xi = i < n ? x[i] : ENG_VM_EXP_LO + (ENG_VM_EXP_HI - ENG_VM_EXP_LO) * (float)(i - n) / 0x1p22f;
        if (!(xi >= ENG_VM_EXP_LO && xi <= ENG_VM_EXP_HI)) continue;
        double e = ulp_err(eng_vm_exp(xi), exp((double)xi));
        checked++;
        if (e > worst) { worst = e; wx = xi; }
    }
    fprintf(stderr, "  %zu inputs in [-104, 89]: max error %.4f ulp at x = %a\n", checked, worst, wx);
    CHECK(worst <= 1.0);
    /* the special values */
    CHECK(eng_vm_exp(0.0f) == 1.0f && eng_vm_exp(-0.0f) == 1.0f);
    CHECK(isinf(eng_vm_exp(INFINITY)) && eng_vm_exp(INFINITY) > 0);
    CHECK(u_of(eng_vm_exp(-INFINITY)) == 0);                    /* +0 */
    CHECK(isnan(eng_vm_exp(NAN)) && isnan(eng_vm_exp(-NAN)) && isnan(eng_vm_exp(f_of(0x7fa00001u))));
    CHECK(isinf(eng_vm_exp(FLT_MAX)) && isinf(eng_vm_exp(89.0f)) && isinf(eng_vm_exp(f_of(0x42b17218u))));
    CHECK(isfinite(eng_vm_exp(f_of(0x42b17217u))));
    CHECK(u_of(eng_vm_exp(-FLT_MAX)) == 0 && u_of(eng_vm_exp(-104.0f)) == 0 && u_of(eng_vm_exp(-200.0f)) == 0);
    CHECK(eng_vm_exp(-100.0f) > 0 && eng_vm_exp(-100.0f) < FLT_MIN);   /* subnormal, not flushed */
    CHECK(eng_vm_exp(f_of(0xc2cff1b4u)) == f_of(1));                  /* the smallest subnormal */
    CHECK(u_of(eng_vm_exp(f_of(0xc2cff1b5u))) == 0);                  /* just below half of it */
    CHECK(eng_vm_exp(f_of(0x00000001u)) == 1.0f && eng_vm_exp(f_of(0x80000001u)) == 1.0f);
    free(x);
}

/* A backend of t threads with the kernel set chosen by env (NULL: the default). */
static eng_backend *backend(int t, const char *env)
{
    eng_backend *be = NULL;
    char err[256];
    if (env) setenv(env, "1", 1);
    int rc = eng_be_cpu_create(t, &be, err, sizeof err);
    if (env) unsetenv(env);
    CHECK(rc == 0);
    return rc ? NULL : be;
}

static void fill(float *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = ((float)(seed >> 8) / 0x1p24f - 0.5f) * 24.0f;       /* [-12, 12) */
    }
}

static int expect_silu(const float *g, int64_t ldg, const float *u, int64_t ldu, int n, int dim,
                       const float *o, int64_t ldo)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < dim; k++) {
            float gv = g[i * ldg + k], want = gv / (1.0f + eng_vm_exp(-gv)) * u[i * ldu + k];
            if (u_of(o[i * ldo + k]) != u_of(want) && bad++ < 5)
                fprintf(stderr, "  silu_mul[%d][%d]: 0x%08x, want 0x%08x\n", i, k, u_of(o[i * ldo + k]), u_of(want));
        }
    return bad;
}

/* Every kernel and 1 or 2 threads (large calls split over the pool, with a
 * row block and a column block cut) give each element g / (1 + exp(-g)) * u
 * with eng_vm_exp's bits; the values also match double SiLU closely. */
TEST(silu_mul_threads_and_kernels)
{
    static const struct { int n, dim; } shapes[] = { { 37, 1000 }, { 5, 9001 }, { 3, 21 }, { 64, 512 } };
    struct { int t; const char *env; int need; } bes[] = {
        { 1, NULL, 0 }, { 2, NULL, 0 }, { 2, "GLM_ENGINE_PORTABLE", 0 }, { 2, "GLM_ENGINE_AVX512", 1 },
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int n = shapes[s].n, dim = shapes[s].dim;
        int64_t ld = dim + 7;
        float *g = malloc((size_t)n * ld * sizeof *g), *u = malloc((size_t)n * ld * sizeof *u);
        float *o = malloc((size_t)n * ld * sizeof *o);
        CHECK(g && u && o);
        if (!g || !u || !o) { free(g); free(u); free(o); return; }
        fill(g, (size_t)n * ld, 1u + (uint32_t)s);
        fill(u, (size_t)n * ld, 77u + (uint32_t)s);
        /* specials and far values among the gates */
        static const float sp[] = { 0.0f, -0.0f, INFINITY, -INFINITY, 100.0f, -100.0f, 88.8f, -88.8f, 1e-30f };
        for (size_t j = 0; j < sizeof sp / sizeof sp[0] && j < (size_t)dim; j++) g[(j % n) * ld + j] = sp[j];
        for (size_t b = 0; b < sizeof bes / sizeof bes[0]; b++) {
            if (bes[b].need && !has_avx512()) continue;
            eng_backend *be = backend(bes[b].t, bes[b].env);
            if (!be) continue;
            for (size_t j = 0; j < (size_t)n * ld; j++) o[j] = -1.0f;
            eng_cpu_silu_mul(be, g, ld, u, ld, n, dim, o, ld);
            int bad = expect_silu(g, ld, u, ld, n, dim, o, ld);
            if (bad) fprintf(stderr, "  shape %dx%d, %d threads, %s: %d wrong\n", n, dim, bes[b].t,
                             bes[b].env ? bes[b].env : "default kernels", bad);
            CHECK(bad == 0);
            /* untouched padding */
            for (int i = 0; i < n; i++) for (int64_t k = dim; k < ld; k++) CHECK(o[i * ld + k] == -1.0f);
            eng_be_free(be);
        }
        /* the function itself: within a few ulps of double SiLU for finite gates */
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < dim; k++) {
                double gv = g[i * ld + k], want = gv / (1.0 + exp(-gv)) * u[i * ld + k];
                if (!isfinite(gv) || fabs(gv) > 80) continue;
                double e = fabs(o[i * ld + k] - want) / (fabs(want) + 1e-30);
                if (e > worst) worst = e;
            }
        CHECK(worst < 1e-6);
        free(g); free(u); free(o);
    }
}

/* Any cut of a call (rows [r0, r0 + nr), columns [c0, c0 + w)) computes
 * the same bits as the whole call: the vector bodies' tails and any column
 * offset agree with the lanes. */
TEST(silu_mul_every_cut)
{
    enum { N = 6, D = 53, LD = 61 };
    float g[N * LD], u[N * LD], whole[N * LD], part[N * LD];
    fill(g, N * LD, 5);
    fill(u, N * LD, 6);
    const char *envs[] = { NULL, "GLM_ENGINE_PORTABLE", "GLM_ENGINE_AVX512" };
    for (int e = 0; e < 3; e++) {
        if (e == 2 && !has_avx512()) continue;
        eng_backend *be = backend(1, envs[e]);
        if (!be) continue;
        eng_cpu_silu_mul(be, g, LD, u, LD, N, D, whole, LD);
        CHECK(expect_silu(g, LD, u, LD, N, D, whole, LD) == 0);
        int bad = 0;
        for (int r0 = 0; r0 < N; r0++)
            for (int nr = 1; r0 + nr <= N; nr += 2)
                for (int c0 = 0; c0 < D; c0++)
                    for (int w = 1; c0 + w <= D; w++) {
                        eng_cpu_silu_mul(be, g + r0 * LD + c0, LD, u + r0 * LD + c0, LD, nr, w, part + r0 * LD + c0, LD);
                        for (int i = r0; i < r0 + nr; i++)
                            bad += memcmp(part + i * LD + c0, whole + i * LD + c0, (size_t)w * sizeof(float)) != 0;
                    }
        CHECK(bad == 0);
        eng_be_free(be);
    }
}

/* The router's weights are the unbiased sigmoid 1 / (1 + exp(-z)) with
 * eng_vm_exp's bits (an expert count with a vector tail). */
TEST(route_sigmoid_same_function)
{
    enum { E = 21, K = 5, N = 3 };
    float logits[N * E], bias[E], wt[N * K];
    int32_t idx[N * K];
    fill(logits, N * E, 9);
    fill(bias, E, 10);
    for (int e = 0; e < E; e++) bias[e] *= 0.01f;
    logits[3] = 95.0f;
    logits[4] = -95.0f;
    eng_be_route r = { E, K, 1, 1, 0, 1.0f };
    const char *envs[] = { NULL, "GLM_ENGINE_PORTABLE" };
    for (int v = 0; v < 2; v++) {
        eng_backend *be = backend(1, envs[v]);
        if (!be) continue;
        eng_cpu_route_topk(be, &r, logits, E, bias, N, idx, wt);
        for (int i = 0; i < N; i++)
            for (int k = 0; k < K; k++) {
                float z = logits[i * E + idx[i * K + k]];
                CHECK(u_of(wt[i * K + k]) == u_of(1.0f / (1.0f + eng_vm_exp(-z))));
            }
        eng_be_free(be);
    }
}

/* Attention's softmax numerators: every element exp(s - mx) with
 * eng_vm_exp's bits in the vector body, its tail and the portable path,
 * the sum in element order; lengths across the 8-wide blocks. */
TEST(softmax_num_same_function)
{
    enum { N = 67 };
    float s0[N], s[N];
    fill(s0, N, 11);
    s0[5] = -INFINITY;
    const char *envs[] = { NULL, "GLM_ENGINE_PORTABLE" };
    for (int v = 0; v < 2; v++) {
        eng_backend *be = backend(1, envs[v]);
        if (!be) continue;
        for (int n = 0; n <= N; n += (n < 20 ? 1 : 7)) {
            float mx = -INFINITY;
            for (int j = 0; j < n; j++) if (s0[j] > mx) mx = s0[j];
            memcpy(s, s0, sizeof s);
            float sum = eng_cpu_softmax_num(be, s, n, mx), want = 0;
            for (int j = 0; j < n; j++) {
                float e = eng_vm_exp(s0[j] - mx);
                want += e;
                CHECK(u_of(s[j]) == u_of(e));
            }
            CHECK(u_of(sum) == u_of(want));
            if (n > 5) CHECK(s[5] == 0.0f);
        }
        eng_be_free(be);
    }
}

int main(void)
{
    RUN(vmath_bodies_same_bits);
    RUN(vmath_exp_within_1_ulp);
    RUN(silu_mul_threads_and_kernels);
    RUN(silu_mul_every_cut);
    RUN(route_sigmoid_same_function);
    RUN(softmax_num_same_function);
    return test_report();
}
