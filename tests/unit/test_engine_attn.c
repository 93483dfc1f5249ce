/* test_engine_attn.c — the CPU backend's attention and indexer kernels
 * (engine/cpu/matmul.c): the register-tiled scores (eng_cpu_dots_rows,
 * eng_cpu_mla_scores) must give every (head, row) exactly eng_cpu_dot's
 * bits whatever the tile it lands in (4 heads x 3 rows, and every
 * remainder), and the indexer's ReLU-weighted head sum (eng_cpu_relu_wsum)
 * the scalar loop's bits, vectorized or not; all of them against a
 * double-precision reference of the same math. The model-level checks
 * (goldens, batch invariance) are in test_engine_model.c. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/cpu/cpu.h"
#include "pl.h"

enum { NHMAX = 9, NRMAX = 8, DMAX = 300 };

static float g_q[NHMAX][DMAX], g_p[NHMAX][DMAX], g_rows[NRMAX][DMAX];

static void fill(uint64_t z)
{
#define RND() ((float)((z = z * 6364136223846793005ull + 1) >> 40) / (1 << 24) * 2 - 1)
    for (int h = 0; h < NHMAX; h++)
        for (int k = 0; k < DMAX; k++) { g_q[h][k] = RND(); g_p[h][k] = RND(); }
    for (int j = 0; j < NRMAX; j++)
        for (int k = 0; k < DMAX; k++) g_rows[j][k] = RND();
#undef RND
}

/* The AVX2 backend and the portable one (GLM_ENGINE_PORTABLE=1). */
static int open_both(eng_backend **be)
{
    char err[256];
    be[0] = be[1] = NULL;
    if (eng_be_cpu_create(1, &be[0], err, sizeof err)) return -1;
    setenv("GLM_ENGINE_PORTABLE", "1", 1);
    int rc = eng_be_cpu_create(1, &be[1], err, sizeof err);
    unsetenv("GLM_ENGINE_PORTABLE");
    return rc;
}

/* Every head count 1..9 (two full 4-head groups and each remainder), row
 * count 1..8 (3-row tiles and both remainders) and latent/rope widths with
 * and without 8-wide tails: each score is bit for bit scale * (dot + dot)
 * of eng_cpu_dot, and each dots_rows entry eng_cpu_dot; both within 1e-5
 * of the double-precision scores. */
TEST(scores_bit_identical_to_dot)
{
    eng_backend *be[2];
    if (open_both(be)) { CHECK(0); eng_be_free(be[0]); return; }
    static const int shapes[][2] = { { 256, 32 }, { 61, 19 }, { 8, 3 }, { 5, 16 } };
    const float scale = 0.1020620726f;
    int bad = 0, cases = 0;
    double worst = 0;
    for (int b = 0; b < 2; b++)
        for (size_t s = 0; s < PL_ARRAY_LEN(shapes); s++) {
            int lat = shapes[s][0], rope = shapes[s][1];
            for (int nh = 1; nh <= NHMAX; nh++)
                for (int nr = 1; nr <= NRMAX; nr++) {
                    const float *rows[NRMAX];
                    float out[NHMAX * NRMAX], dr[NHMAX * NRMAX];
                    for (int j = 0; j < nr; j++) rows[j] = g_rows[(j * 5 + nh) % NRMAX];
                    eng_cpu_mla_scores(be[b], g_q[0], DMAX, g_p[0], DMAX, nh, rows, nr, lat, rope, scale, out, NRMAX);
                    eng_cpu_dots_rows(be[b], g_q[0], DMAX, nh, rows, nr, lat + rope, dr, NRMAX);
                    for (int h = 0; h < nh; h++)
                        for (int j = 0; j < nr; j++) {
                            float want = scale * (eng_cpu_dot(be[b], g_q[h], rows[j], lat) +
                                                  eng_cpu_dot(be[b], g_p[h], rows[j] + lat, rope));
                            float want_dr = eng_cpu_dot(be[b], g_q[h], rows[j], lat + rope);
                            bad += memcmp(&want, &out[h * NRMAX + j], sizeof want) != 0;
                            bad += memcmp(&want_dr, &dr[h * NRMAX + j], sizeof want) != 0;
                            double ref = 0;
                            for (int k = 0; k < lat; k++) ref += (double)g_q[h][k] * rows[j][k];
                            for (int k = 0; k < rope; k++) ref += (double)g_p[h][k] * rows[j][lat + k];
                            double e = fabs(ref * scale - out[h * NRMAX + j]);
                            if (e > worst) worst = e;
                            cases++;
                        }
                }
        }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(cases, 2 * 4 * 45 * 36);
    CHECK(worst < 1e-5);
    eng_be_free(be[0]);
    eng_be_free(be[1]);
}

/* s[j] = sum over heads in order of w[h] * d[h][j] where d > 0: the AVX2
 * path (8 keys at a time, +0 added for the others) equals the portable
 * scalar loop bit for bit, for dots that are negative, +0, -0, NaN, -inf
 * or +inf and key counts with and without an 8-wide tail; and equals the
 * double-precision sum within rounding. */
TEST(relu_wsum_bit_identical_to_scalar)
{
    eng_backend *be[2];
    if (open_both(be)) { CHECK(0); eng_be_free(be[0]); return; }
    enum { NK = 37, LDD = 40 };
    static float d[NHMAX * LDD], w[NHMAX], s0[NK], s1[NK];
    for (int h = 0; h < NHMAX; h++) {
        w[h] = g_q[h][0] * 3;
        for (int j = 0; j < LDD; j++) d[h * LDD + j] = g_rows[h % NRMAX][j * 7 % DMAX] * 10;
    }
    d[0 * LDD + 1] = 0.0f;
    d[1 * LDD + 2] = -0.0f;
    d[2 * LDD + 3] = NAN;
    d[3 * LDD + 4] = -INFINITY;
    d[4 * LDD + 5] = INFINITY;          /* its key scores +-inf: the same in both */
    int bad = 0;
    double worst = 0;
    for (int nh = 1; nh <= NHMAX; nh++)
        for (int n = 1; n <= NK; n += n < 9 ? 1 : 7) {
            eng_cpu_relu_wsum(be[0], w, nh, d, LDD, n, s0);
            eng_cpu_relu_wsum(be[1], w, nh, d, LDD, n, s1);
            bad += memcmp(s0, s1, (size_t)n * sizeof *s0) != 0;
            for (int j = 0; j < n; j++) {
                double ref = 0;
                for (int h = 0; h < nh; h++)
                    if (d[h * LDD + j] > 0) ref += (double)w[h] * d[h * LDD + j];
                if (isinf(ref)) { bad += !(isinf(s0[j]) && (s0[j] > 0) == (ref > 0)); continue; }
                double e = fabs(ref - s0[j]);
                if (e > worst) worst = e;
                bad += signbit(s0[j]) && s0[j] == 0;        /* never -0 */
            }
        }
    CHECK_EQ_INT(bad, 0);
    CHECK(worst < 1e-4);
    eng_be_free(be[0]);
    eng_be_free(be[1]);
}

int main(void)
{
    pl_log_init("test_engine_attn");
    fill(17);
    RUN(scores_bit_identical_to_dot);
    RUN(relu_wsum_bit_identical_to_scalar);
    return test_report();
}
