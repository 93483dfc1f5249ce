/* test_cuda.c — the device backend against the CPU backend.
 *
 * Always (any machine): the host side of the backend reshape — backend
 * choice without a device, the CPU's new ops (scale, keys_select, step
 * upload, up/download), MoE dispatch over expert ranges (the EP mapping:
 * ranges that tile [0, E) sum to the whole), the KV device budget.
 *
 * With a CUDA device: every CUDA op against its CPU twin on random inputs
 * (exact where the arithmetic is the same: routing choices, FP8 cache bytes,
 * indexer selections; a relative tolerance elsewhere). With GLM_GPU_CHECK=1
 * as well (make gpu-check): whole steps of the tiny and small presets (BF16
 * and FP8 weights, F32 and FP8 KV) — prompt logits error, teacher-forced
 * greedy agreement, free-running greedy continuations — and a short decode
 * benchmark. Without a device those tests print SKIP: nothing here passes
 * by not running. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../engine/backend.h"
#include "../../engine/kv.h"
#include "../../engine/model.h"
#include "../../tools/mkmodel/mkmodel.h"

static eng_backend *g_cpu, *g_gpu;
static uint64_t g_rng = 12345;

static float rnd(void)      /* uniform in [-1, 1) */
{
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(g_rng >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static void fill(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = rnd() * scale;
}

/* max |a - b| / max |a| (a: the CPU's reference). */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) d = e;            /* NaN counts as worst */
        if (fabs(a[i]) > m) m = fabs(a[i]);
    }
    return d / m;
}

static int need_gpu(void)
{
    if (g_gpu) return 1;
    test_skip("no CUDA device on this machine (make gpu-check on a GPU machine runs this)");
    return 0;
}

/* ===== device buffers ===== */

static void *dput(const void *h, size_t bytes)
{
    void *p = eng_be_alloc(g_gpu, bytes);
    if (p && h) eng_be_upload(g_gpu, p, h, bytes);
    return p;
}

static void dget(void *h, const void *d, size_t bytes) { eng_be_download(g_gpu, h, d, bytes); }

static int gpu_ok(void)
{
    char err[512];
    if (eng_be_sync(g_gpu, err, sizeof err)) { fprintf(stderr, "  device: %s\n", err); return 0; }
    return 1;
}

#define OP_TOL 1e-4
#define REPORT(name, e) fprintf(stderr, "  %-28s rel err %.2e\n", name, e)

/* ===== random weights ===== */

typedef struct wbuf {
    eng_tensor t;
    void *data;
    float *scale;
} wbuf;

static void wmake(wbuf *w, enum eng_dtype dt, int64_t rows, int64_t cols, const char *name)
{
    memset(w, 0, sizeof *w);
    size_t n = (size_t)rows * (size_t)cols;
    w->data = malloc(n * eng_dtype_size(dt));
    int64_t sld = (cols + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK;
    for (size_t i = 0; i < n; i++) {
        float v = rnd();
        if (dt == ENG_DT_F32) ((float *)w->data)[i] = v;
        else if (dt == ENG_DT_BF16) ((uint16_t *)w->data)[i] = eng_f32_to_bf16(v);
        else ((uint8_t *)w->data)[i] = eng_f32_to_fp8(v * 200.0f);
    }
    if (dt == ENG_DT_F8E4M3) {
        size_t ns = (size_t)((rows + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK) * (size_t)sld;
        w->scale = malloc(ns * sizeof(float));
        for (size_t i = 0; i < ns; i++) w->scale[i] = 0.002f + 0.001f * (float)(i % 7);
    }
    w->t = (eng_tensor){ dt, rows, cols, w->data, w->scale, dt == ENG_DT_F8E4M3 ? sld : 0, name };
    if (g_gpu) {
        char err[256];
        if (eng_be_tensor_upload(g_gpu, &w->t, err, sizeof err)) fprintf(stderr, "  upload: %s\n", err);
    }
}

/* Host memory a device has seen as a weight (its view or its data) is kept
 * until the end: the device maps weights by host address, and a freed then
 * reused address would find the old copy (in the engine, weights and
 * backend die together). */
static void **g_keep;
static size_t g_n_keep;

static void keep(void *p)
{
    void **k = realloc(g_keep, (g_n_keep + 1) * sizeof *k);
    if (!k) { free(p); return; }
    g_keep = k;
    g_keep[g_n_keep++] = p;
}

static void keep_free_all(void)
{
    for (size_t i = 0; i < g_n_keep; i++) free(g_keep[i]);
    free(g_keep);
}

static void wfree(wbuf *w)
{
    keep(w->data);
    keep(w->scale);
}

/* ===== host side (every machine) ===== */

TEST(backend_choice_without_device)
{
    eng_backend *be = NULL;
    char err[256] = "";
    CHECK(eng_be_create(ENG_BE_AUTO, 1, &be, err, sizeof err) == 0);
    if (!be) return;
    CHECK_EQ_INT(eng_be_kind_of(be), g_gpu ? ENG_BE_CUDA : ENG_BE_CPU);
    CHECK(eng_be_host_memory(be) == !g_gpu);
    CHECK(strlen(eng_be_describe(be)) > 0);
    eng_be_free(be);
    if (!g_gpu) {
        be = NULL;
        CHECK(eng_be_cuda_create(1, 0, &be, err, sizeof err) == PL_ERR_UNSUPPORTED);
        CHECK(be == NULL && strlen(err) > 0);
        CHECK_EQ_INT(eng_be_cuda_available(), 0);
    }
}

TEST(cpu_step_ops)
{
    float x[5] = { 1, -2, 3, 0.5f, 8 };
    eng_be_scale(g_cpu, x, 5, 0.5f);
    CHECK(x[0] == 0.5f && x[1] == -1 && x[4] == 4);
    int32_t bt[4] = { 3, 1, 2, 0 }, sel[2 * 4] = { 0 };
    int nsel[2] = { 4, 2 };
    eng_be_keys k[2] = { { bt, 16, 50, NULL, 0 }, { bt, 16, 3, NULL, 0 } };
    eng_be_keys_select(g_cpu, k, 2, sel, 4, nsel, 4);
    CHECK(k[0].sel == sel && k[0].n_sel == 4);
    CHECK(k[1].sel == NULL && k[1].n_sel == 0);      /* 3 <= topk: dense */
    int32_t ids[2] = { 7, 8 }, pos[2] = { 49, 2 }, lr[1] = { 1 };
    int64_t slot[2] = { 0, 1 };
    eng_be_step h = { 2, ids, pos, slot, k, bt, 4, lr, 1 }, d;
    char err[128];
    CHECK(eng_be_step_upload(g_cpu, &h, &d, err, sizeof err) == 0);
    CHECK(d.ids == ids && d.keys == k && d.lrows == lr && d.n_lrows == 1);   /* the CPU reads the host arrays */
    float a[3] = { 1, 2, 3 }, b[3] = { 0 };
    eng_be_upload(g_cpu, b, a, sizeof a);
    CHECK(b[2] == 3);
    eng_be_download(g_cpu, a, a, sizeof a);                               /* dst == src: nothing */
    CHECK(eng_be_sync(g_cpu, err, sizeof err) == 0);
    size_t fr = 1, tot = 1;
    eng_be_mem_info(g_cpu, &fr, &tot);
    CHECK(fr == 0 && tot == 0);
}

TEST(kv_device_budget)
{
    size_t G = (size_t)1 << 30;
    /* 80 GiB card, 30 GiB in use: 0.9 * 80 - 30 - 1 = 41 GiB */
    CHECK_EQ_INT(eng_kv_device_budget(50 * G, 80 * G, 0.9, G), 41 * G);
    CHECK_EQ_INT(eng_kv_device_budget(5 * G, 80 * G, 0.9, G), 0);        /* nothing left */
    CHECK_EQ_INT(eng_kv_device_budget(90 * G, 80 * G, 0.9, G), 0);       /* nonsense report */
    CHECK_EQ_INT(eng_kv_device_budget(50 * G, 80 * G, 0.0, G), 0);
    CHECK_EQ_INT(eng_kv_device_budget(80 * G, 80 * G, 1.0, 0), 80 * G);
}

/* MoE inputs: E experts of [I, H] / [H, I], n tokens each routed to K
 * distinct experts (ascending), weights in (0, 1]. */
typedef struct moe_fx {
    int E, K, H, I, n;
    wbuf *w;                  /* [E * 3] */
    eng_tensor *views;        /* [E * 3] */
    float *x, *wt, *out;
    int32_t *idx;
    /* CPU work buffers */
    int32_t *rows;
    float *rwt, *xg, *y, *gate, *up, *act;
} moe_fx;

static void moe_make(moe_fx *f, enum eng_dtype dt, int E, int K, int H, int I, int n)
{
    memset(f, 0, sizeof *f);
    f->E = E; f->K = K; f->H = H; f->I = I; f->n = n;
    f->w = calloc((size_t)E * 3, sizeof *f->w);
    f->views = calloc((size_t)E * 3, sizeof *f->views);
    /* One allocation per projection kind would be closer to a checkpoint;
     * separate ones are just as valid views. */
    for (int e = 0; e < E; e++) {
        wmake(&f->w[e * 3 + ENG_EXP_GATE], dt, I, H, "gate");
        wmake(&f->w[e * 3 + ENG_EXP_UP], dt, I, H, "up");
        wmake(&f->w[e * 3 + ENG_EXP_DOWN], dt, H, I, "down");
        for (int p = 0; p < 3; p++) f->views[e * 3 + p] = f->w[e * 3 + p].t;
    }
    f->x = malloc(sizeof(float) * (size_t)n * H);
    fill(f->x, (size_t)n * H, 1.0f);
    f->idx = malloc(sizeof(int32_t) * (size_t)n * K);
    f->wt = malloc(sizeof(float) * (size_t)n * K);
    for (int i = 0; i < n; i++) {
        unsigned char taken[256] = { 0 };
        for (int k = 0; k < K; k++) {
            int e;
            do e = (int)((rnd() + 1) * 0.5f * (float)E) % E; while (taken[e]);
            taken[e] = 1;
        }
        int k = 0;
        for (int e = 0; e < E; e++)
            if (taken[e]) { f->idx[i * K + k] = e; f->wt[i * K + k] = 0.1f + 0.45f * (rnd() + 1); k++; }
    }
    f->out = malloc(sizeof(float) * (size_t)n * H);
    f->rows = malloc(sizeof(int32_t) * (size_t)n);
    f->rwt = malloc(sizeof(float) * (size_t)n);
    f->xg = malloc(sizeof(float) * (size_t)n * H);
    f->y = malloc(sizeof(float) * (size_t)n * H);
    f->gate = malloc(sizeof(float) * (size_t)n * I);
    f->up = malloc(sizeof(float) * (size_t)n * I);
    f->act = malloc(sizeof(float) * (size_t)n * I);
}

static eng_be_moe moe_args(const moe_fx *f, const float *x, const int32_t *idx, const float *wt, float *out)
{
    return (eng_be_moe){ f->views, f->E, f->K, f->H, f->I, f->n, x, idx, wt, out,
                         f->rows, f->rwt, f->xg, f->y, f->gate, f->up, f->act, 0, NULL };
}

static void moe_free(moe_fx *f)
{
    for (int e = 0; e < f->E * 3; e++) wfree(&f->w[e]);
    keep(f->views);                 /* the device caches descriptors by this address */
    void *p[] = { f->w, f->x, f->wt, f->out, f->idx, f->rows, f->rwt, f->xg, f->y, f->gate, f->up, f->act };
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
}

/* Expert parallelism = each rank runs a range; the ranges' outputs summed
 * must be the whole (up to the order of the additions). */
TEST(cpu_moe_ranges_tile_the_whole)
{
    moe_fx f;
    moe_make(&f, ENG_DT_BF16, 16, 4, 64, 96, 13);
    size_t nh = (size_t)f.n * f.H;
    float *whole = malloc(nh * sizeof(float)), *sum = calloc(nh, sizeof(float));
    eng_be_moe a = moe_args(&f, f.x, f.idx, f.wt, whole);
    eng_be_moe_experts(g_cpu, &a, 0, f.E);
    const int cut[] = { 0, 5, 6, 11, 16 };
    for (int r = 0; r + 1 < 5; r++) {
        a.out = f.out;
        eng_be_moe_experts(g_cpu, &a, cut[r], cut[r + 1]);
        for (size_t i = 0; i < nh; i++) sum[i] += f.out[i];
    }
    double e = rel_err(whole, sum, nh);
    CHECK(e < 1e-5);
    /* A range no token routes to gives zeros. */
    int32_t *none = malloc(sizeof(int32_t) * (size_t)f.n * f.K);
    for (int i = 0; i < f.n * f.K; i++) none[i] = i % f.K;     /* experts 0..K-1 only */
    a.idx = none;
    a.out = f.out;
    eng_be_moe_experts(g_cpu, &a, f.K, f.E);
    int nz = 0;
    for (size_t i = 0; i < nh; i++) nz += f.out[i] != 0;
    CHECK_EQ_INT(nz, 0);
    free(none);
    free(whole);
    free(sum);
    moe_free(&f);
}

/* ===== CUDA ops vs CPU ===== */

/* One per-head product (linear_heads or linear_t_heads) on both sides:
 * x [n, ldx] random, y [n, ldy]; 1 when within OP_TOL. */
typedef void (*heads_fn)(eng_backend *, const eng_tensor *, int64_t, int64_t, const eng_be_heads *, const float *,
                         int, int64_t, float *, int64_t);
static int heads_parity(heads_fn fn, const char *name, const eng_tensor *W, int64_t row0, int64_t nrows,
                        const eng_be_heads *hs, int n, int64_t ldx, int64_t ldy)
{
    size_t nx = (size_t)n * ldx, ny = (size_t)n * ldy;
    float *x = malloc(nx * 4), *yc = calloc(ny, 4), *yg = calloc(ny, 4);
    fill(x, nx, 1);
    fn(g_cpu, W, row0, nrows, hs, x, n, ldx, yc, ldy);
    float *dx = dput(x, nx * 4), *dy = dput(yg, ny * 4);
    fn(g_gpu, W, row0, nrows, hs, dx, n, ldx, dy, ldy);
    dget(yg, dy, ny * 4);
    int ok = gpu_ok();
    double e = rel_err(yc, yg, ny);
    REPORT(name, e);
    eng_be_dealloc(g_gpu, dx);
    eng_be_dealloc(g_gpu, dy);
    free(x); free(yc); free(yg);
    return ok && e < OP_TOL;
}

/* y = op on the CPU and on the device from the same inputs. */
TEST(cuda_linear)
{
    if (!need_gpu()) return;
    enum eng_dtype dts[3] = { ENG_DT_F32, ENG_DT_BF16, ENG_DT_F8E4M3 };
    for (int d = 0; d < 3; d++) {
        wbuf w;
        wmake(&w, dts[d], 300, 320, "lin");
        int n = 11;
        int64_t ldx = 323, ldy = 281;
        size_t nx = (size_t)n * ldx, ny = (size_t)n * ldy;
        float *x = malloc(nx * 4), *yc = calloc(ny, 4), *yg = calloc(ny, 4);
        fill(x, nx, 1);
        eng_be_linear(g_cpu, &w.t, 5, 280, x, n, ldx, yc, ldy);
        float *dx = dput(x, nx * 4), *dy = dput(yg, ny * 4);
        eng_be_linear(g_gpu, &w.t, 5, 280, dx, n, ldx, dy, ldy);
        dget(yg, dy, ny * 4);
        CHECK(gpu_ok());
        double e = rel_err(yc, yg, ny);
        REPORT(eng_dtype_name(dts[d]), e);
        CHECK(e < OP_TOL);

        /* two products of x in one linear_group call: each equals its CPU twin */
        float *yc2 = calloc((size_t)n * 17, 4), *yg2 = calloc((size_t)n * 17, 4), *dy2 = dput(yg2, (size_t)n * 17 * 4);
        eng_be_lin_out oc[2] = { { &w.t, 5, 280, yc, ldy, 0 }, { &w.t, 0, 17, yc2, 17, 0 } };
        eng_be_lin_out og[2] = { { &w.t, 5, 280, dy, ldy, 0 }, { &w.t, 0, 17, dy2, 17, 0 } };
        eng_be_linear_group(g_cpu, oc, 2, x, n, ldx);
        eng_be_linear_group(g_gpu, og, 2, dx, n, ldx);
        dget(yg, dy, ny * 4);
        dget(yg2, dy2, (size_t)n * 17 * 4);
        CHECK(gpu_ok());
        double eg = rel_err(yc, yg, ny), eg2 = rel_err(yc2, yg2, (size_t)n * 17);
        REPORT("linear_group", eg > eg2 ? eg : eg2);
        CHECK(eg < OP_TOL && eg2 < OP_TOL);
        eng_be_dealloc(g_gpu, dy2);
        free(yc2); free(yg2);

        /* per head, and transposed per head (the absorbed MLA's shapes) */
        wbuf wh;
        wmake(&wh, dts[d], 300, 64, "heads");
        eng_be_heads hs = { 3, 100, 64, 90 }, ht = { 3, 100, 70, 64 };
        CHECK(heads_parity(eng_be_linear_heads, "linear_heads", &wh.t, 10, 90, &hs, n, 192, 270));
        CHECK(heads_parity(eng_be_linear_t_heads, "linear_t_heads", &wh.t, 5, 70, &ht, n, 210, 192));
        eng_be_dealloc(g_gpu, dx);
        eng_be_dealloc(g_gpu, dy);
        free(x); free(yc); free(yg);
        wfree(&w);
        wfree(&wh);
    }
}

TEST(cuda_norms_rope_elementwise)
{
    if (!need_gpu()) return;
    enum { N = 9, D = 200, LD = 211 };
    size_t nb = (size_t)N * LD * 4;
    float *x = malloc(nb), *c = malloc(nb), *g = malloc(nb);
    fill(x, (size_t)N * LD, 3);
    wbuf w, b;
    wmake(&w, ENG_DT_BF16, 1, D, "norm_w");
    wmake(&b, ENG_DT_F32, 1, D, "norm_b");
    float *dx = dput(x, nb), *dy = dput(NULL, nb);
    double e = 0;

    memcpy(c, x, nb);
    eng_be_rmsnorm(g_cpu, &w.t, x, N, LD, D, 1e-6f, c, LD);
    eng_be_upload(g_gpu, dy, x, nb);
    eng_be_rmsnorm(g_gpu, &w.t, dx, N, LD, D, 1e-6f, dy, LD);
    dget(g, dy, nb);
    CHECK(gpu_ok() && (e = rel_err(c, g, (size_t)N * LD)) < OP_TOL);
    REPORT("rmsnorm", e);

    memcpy(c, x, nb);
    eng_be_layernorm(g_cpu, &w.t, &b.t, c, N, LD, D, 1e-6f);
    eng_be_upload(g_gpu, dy, x, nb);
    eng_be_layernorm(g_gpu, &w.t, &b.t, dy, N, LD, D, 1e-6f);
    dget(g, dy, nb);
    CHECK(gpu_ok() && (e = rel_err(c, g, (size_t)N * LD)) < OP_TOL);
    REPORT("layernorm", e);

    /* RoPE: 4 heads of 48 with the rotated 32 values at offset 16 */
    int32_t pos[N];
    float inv[16];
    for (int i = 0; i < N; i++) pos[i] = (int)((rnd() + 1) * 2500);
    for (int j = 0; j < 16; j++) inv[j] = 1.0f / powf(10000.0f, (float)(2 * j) / 32.0f);
    int32_t *dpos = dput(pos, sizeof pos);
    float *dinv = dput(inv, sizeof inv);
    memcpy(c, x, nb);
    eng_be_rope(g_cpu, c, N, LD, 4, 48, 16, 32, pos, inv);
    eng_be_upload(g_gpu, dy, x, nb);
    eng_be_rope(g_gpu, dy, N, LD, 4, 48, 16, 32, dpos, dinv);
    dget(g, dy, nb);
    CHECK(gpu_ok() && (e = rel_err(c, g, (size_t)N * LD)) < OP_TOL);
    REPORT("rope", e);

    /* silu_mul, add_scaled (with and without a), gather, scatter_add, scale */
    float a[N];
    int32_t rows[N];
    for (int i = 0; i < N; i++) { a[i] = rnd(); rows[i] = (i * 5 + 3) % N; }   /* a permutation */
    float *da = dput(a, sizeof a);
    int32_t *drows = dput(rows, sizeof rows);
    float *dz = dput(NULL, nb);

    eng_be_silu_mul(g_cpu, x, LD, x + 5, LD, N, D, c, LD);
    eng_be_silu_mul(g_gpu, dx, LD, dx + 5, LD, N, D, dz, LD);
    float *tmp = calloc((size_t)N * LD, 4);
    dget(g, dz, nb);
    for (int i = 0; i < N; i++) memcpy(tmp + i * LD, g + i * LD, D * 4);
    for (int i = 0; i < N; i++) memset(c + i * LD + D, 0, (LD - D) * 4), memset(tmp + i * LD + D, 0, (LD - D) * 4);
    CHECK(gpu_ok() && (e = rel_err(c, tmp, (size_t)N * LD)) < OP_TOL);
    REPORT("silu_mul", e);

    const float *as[2] = { a, NULL };
    for (int v = 0; v < 2; v++) {
        memcpy(c, x, nb);
        eng_be_add_scaled(g_cpu, c, LD, x + 1, LD, as[v], N, D);
        eng_be_upload(g_gpu, dy, x, nb);
        eng_be_add_scaled(g_gpu, dy, LD, dx + 1, LD, v ? NULL : da, N, D);
        dget(g, dy, nb);
        CHECK(gpu_ok() && (e = rel_err(c, g, (size_t)N * LD)) < OP_TOL);
        REPORT("add_scaled", e);
    }
    memcpy(c, x, nb);
    eng_be_scatter_add_rows(g_cpu, c, LD, rows, a, x + 2, LD, N, D);
    eng_be_upload(g_gpu, dy, x, nb);
    eng_be_scatter_add_rows(g_gpu, dy, LD, drows, da, dx + 2, LD, N, D);
    dget(g, dy, nb);
    CHECK(gpu_ok() && (e = rel_err(c, g, (size_t)N * LD)) < OP_TOL);
    REPORT("scatter_add_rows", e);

    memcpy(c, x, nb);
    eng_be_gather_rows(g_cpu, x, LD, rows, N, D, c, LD);
    eng_be_upload(g_gpu, dy, x, nb);
    eng_be_gather_rows(g_gpu, dx, LD, drows, N, D, dy, LD);
    dget(g, dy, nb);
    CHECK(gpu_ok() && memcmp(c, g, nb) == 0);

    memcpy(c, x, nb);
    eng_be_scale(g_cpu, c, (int64_t)N * LD, 0.37f);
    eng_be_upload(g_gpu, dy, x, nb);
    eng_be_scale(g_gpu, dy, (int64_t)N * LD, 0.37f);
    dget(g, dy, nb);
    CHECK(gpu_ok() && memcmp(c, g, nb) == 0);

    /* embedding rows of a BF16 table */
    wbuf emb;
    wmake(&emb, ENG_DT_BF16, 50, D, "emb");
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (i * 7) % 50;
    int32_t *dids = dput(ids, sizeof ids);
    eng_be_embed(g_cpu, &emb.t, ids, N, c, LD);
    eng_be_embed(g_gpu, &emb.t, dids, N, dy, LD);
    dget(g, dy, nb);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += memcmp(c + i * LD, g + i * LD, D * 4) != 0;
    CHECK(gpu_ok() && bad == 0);

    void *dv[] = { dx, dy, dpos, dinv, da, drows, dz, dids };
    for (size_t i = 0; i < sizeof dv / sizeof *dv; i++) eng_be_dealloc(g_gpu, dv[i]);
    free(x); free(c); free(g); free(tmp);
    wfree(&w); wfree(&b); wfree(&emb);
}

TEST(cuda_route_and_moe)
{
    if (!need_gpu()) return;
    enum { E = 64, K = 6, N = 37 };
    float logits[N * E], wc[N * K], wg[N * K], *bias = malloc(E * sizeof(float));
    keep(bias);
    int32_t ic[N * K], ig[N * K];
    fill(logits, N * E, 4);
    fill(bias, E, 0.1f);
    eng_be_route r = { E, K, 8, 3, 1, 2.5f };
    eng_be_route_topk(g_cpu, &r, logits, E, bias, N, ic, wc);
    /* the device finds the bias as a resident weight, as the model's is */
    eng_tensor bt = { ENG_DT_F32, 1, E, bias, NULL, 0, "bias" };
    char err[256];
    CHECK(eng_be_tensor_upload(g_gpu, &bt, err, sizeof err) == 0);
    float *dl = dput(logits, sizeof logits), *dw = dput(NULL, sizeof wg);
    int32_t *di = dput(NULL, sizeof ig);
    eng_be_route_topk(g_gpu, &r, dl, E, bias, N, di, dw);
    dget(ig, di, sizeof ig);
    dget(wg, dw, sizeof wg);
    CHECK(gpu_ok());
    CHECK(memcmp(ic, ig, sizeof ic) == 0);
    double e = rel_err(wc, wg, N * K);
    REPORT("route_topk weights", e);
    CHECK(e < OP_TOL);

    enum eng_dtype dts[2] = { ENG_DT_BF16, ENG_DT_F8E4M3 };
    for (int d = 0; d < 2; d++) {
        moe_fx f;
        moe_make(&f, dts[d], 16, 4, 64, 96, 13);
        size_t nh = (size_t)f.n * f.H;
        float *outg = malloc(nh * 4);
        float *dx = dput(f.x, nh * 4), *dwt = dput(f.wt, (size_t)f.n * f.K * 4), *dout = dput(NULL, nh * 4);
        int32_t *didx = dput(f.idx, (size_t)f.n * f.K * 4);
        const int ranges[2][2] = { { 0, 16 }, { 3, 11 } };
        for (int q = 0; q < 2; q++) {
            eng_be_moe a = moe_args(&f, f.x, f.idx, f.wt, f.out);
            eng_be_moe_experts(g_cpu, &a, ranges[q][0], ranges[q][1]);
            eng_be_moe ag = moe_args(&f, dx, didx, dwt, dout);
            ag.rows = NULL; ag.rwt = ag.xg = ag.y = ag.gate = ag.up = ag.act = NULL;   /* the device uses its own */
            eng_be_moe_experts(g_gpu, &ag, ranges[q][0], ranges[q][1]);
            dget(outg, dout, nh * 4);
            CHECK(gpu_ok());
            e = rel_err(f.out, outg, nh);
            REPORT(q ? "moe_experts [3,11)" : "moe_experts [0,16)", e);
            CHECK(e < OP_TOL);
        }
        void *dv[] = { dx, dwt, dout, didx };
        for (size_t i = 0; i < 4; i++) eng_be_dealloc(g_gpu, dv[i]);
        free(outg);
        moe_free(&f);
    }
    eng_be_dealloc(g_gpu, dl);
    eng_be_dealloc(g_gpu, dw);
    eng_be_dealloc(g_gpu, di);
}

/* A paged context of `rows` positions over permuted blocks of 16. */
enum { BS = 16, CTX = 600, NBLK = CTX / BS + 2 };

typedef struct att_fx {
    eng_be_cache c, g;          /* the CPU's and the device's cache (same format) */
    int32_t bt[NBLK];
    int64_t slot[CTX];
} att_fx;

static void att_make(att_fx *f, enum eng_cache_dtype dt, int dim, int split)
{
    for (int b = 0; b < NBLK; b++) f->bt[b] = (b * 7 + 3) % NBLK;   /* a permutation (NBLK = 39) */
    for (int p = 0; p < CTX; p++) f->slot[p] = (int64_t)f->bt[p / BS] * BS + p % BS;
    size_t rb = eng_be_cache_row_bytes(dt, dim, split), bytes = (size_t)NBLK * BS * rb;
    f->c = (eng_be_cache){ eng_be_alloc(g_cpu, bytes), dt, dim, split, rb, 0 };
    f->g = (eng_be_cache){ eng_be_alloc(g_gpu, bytes), dt, dim, split, rb, 0 };
    float *rowsrc = malloc((size_t)CTX * dim * 4);
    fill(rowsrc, (size_t)CTX * dim, 2);
    eng_be_cache_store(g_cpu, &f->c, f->slot, CTX, rowsrc, dim);
    float *dsrc = dput(rowsrc, (size_t)CTX * dim * 4);
    int64_t *dslot = dput(f->slot, sizeof f->slot);
    eng_be_cache_store(g_gpu, &f->g, dslot, CTX, dsrc, dim);
    eng_be_dealloc(g_gpu, dsrc);
    eng_be_dealloc(g_gpu, dslot);
    free(rowsrc);
}

static void att_free(att_fx *f)
{
    eng_be_dealloc(g_cpu, f->c.data);
    eng_be_dealloc(g_gpu, f->g.data);
}

/* Key sets of the queries on both sides: the device's through a step upload
 * (as the model does), which also bounds the device's attention grids. */
static void keys_both(att_fx *f, const int *n_ctx, int n, eng_be_keys *kc, eng_be_step *ds, int32_t *ids,
                      int32_t *pos, int32_t *lr)
{
    for (int i = 0; i < n; i++) {
        kc[i] = (eng_be_keys){ f->bt, BS, n_ctx[i], NULL, 0 };
        ids[i] = 0;
        pos[i] = n_ctx[i] - 1;
        lr[i] = i;
    }
    eng_be_step h = { n, ids, pos, f->slot, kc, f->bt, NBLK, lr, n };
    char err[256];
    if (eng_be_step_upload(g_gpu, &h, ds, err, sizeof err)) fprintf(stderr, "  step upload: %s\n", err);
}

TEST(cuda_cache_index_attention)
{
    if (!need_gpu()) return;
    enum { LAT = 128, ROPE = 32, DIM = LAT + ROPE, NH = 4, QK = 48, NQ = 5, TOPK = 64, ID = 64, IH = 4 };
    const enum eng_cache_dtype dts[2] = { ENG_CACHE_F32, ENG_CACHE_FP8 };
    for (int d = 0; d < 2; d++) {
        att_fx m, ix;
        att_make(&m, dts[d], DIM, LAT);
        att_make(&ix, dts[d], ID, ID);
        /* cache rows: the same bytes on both sides (FP8: the same rounding) */
        size_t bytes = (size_t)NBLK * BS * m.c.row_bytes;
        unsigned char *gb = malloc(bytes);
        dget(gb, m.g.data, bytes);
        CHECK(gpu_ok() && memcmp(gb, m.c.data, bytes) == 0);
        float lc[DIM], lg[DIM], *dlg = dput(NULL, sizeof lg);
        eng_be_cache_load(g_cpu, &m.c, m.slot[77], lc);
        eng_be_cache_load(g_gpu, &m.g, m.slot[77], dlg);
        dget(lg, dlg, sizeof lg);
        CHECK(gpu_ok() && memcmp(lc, lg, sizeof lc) == 0);
        eng_be_dealloc(g_gpu, dlg);
        free(gb);

        const int n_ctx[NQ] = { 600, 300, 40, 257, 1 };
        eng_be_keys kc[NQ];
        eng_be_step ds;
        int32_t ids[NQ], pos[NQ], lr[NQ];
        keys_both(&ix, n_ctx, NQ, kc, &ds, ids, pos, lr);

        /* indexer: same selections */
        float q[NQ * IH * ID], w[NQ * IH];
        fill(q, NQ * IH * ID, 1);
        fill(w, NQ * IH, 1);
        int32_t oc[NQ * TOPK], og[NQ * TOPK];
        int nc[NQ], ng[NQ];
        eng_be_index_topk(g_cpu, q, IH * ID, w, IH, IH, &ix.c, kc, NQ, TOPK, oc, nc);
        float *dq = dput(q, sizeof q), *dw = dput(w, sizeof w);
        int32_t *dsel = dput(NULL, sizeof og);
        int *dn = dput(NULL, sizeof ng);
        eng_be_index_topk(g_gpu, dq, IH * ID, dw, IH, IH, &ix.g, ds.keys, NQ, TOPK, dsel, dn);
        dget(og, dsel, sizeof og);
        dget(ng, dn, sizeof ng);
        CHECK(gpu_ok());
        int bad = 0;
        for (int i = 0; i < NQ; i++) {
            bad += nc[i] != ng[i];
            for (int k = 0; k < nc[i] && k < TOPK; k++) bad += oc[i * TOPK + k] != og[i * TOPK + k];
        }
        fprintf(stderr, "  index_topk (%s): %d mismatches\n", d ? "fp8" : "f32", bad);
        CHECK_EQ_INT(bad, 0);

        /* MLA: dense, then over the selections (keys_select on both) */
        eng_be_keys km[NQ];
        eng_be_step dm;
        keys_both(&m, n_ctx, NQ, km, &dm, ids, pos, lr);
        float ql[NQ * NH * LAT], qf[NQ * NH * QK], oc2[NQ * NH * LAT], og2[NQ * NH * LAT];
        fill(ql, NQ * NH * LAT, 0.3f);
        fill(qf, NQ * NH * QK, 0.3f);
        float *dql = dput(ql, sizeof ql), *dqf = dput(qf, sizeof qf), *dout = dput(NULL, sizeof og2);
        for (int sparse = 0; sparse < 2; sparse++) {
            if (sparse) {
                eng_be_keys_select(g_cpu, km, NQ, oc, TOPK, nc, TOPK);
                eng_be_keys_select(g_gpu, dm.keys, NQ, dsel, TOPK, dn, TOPK);
            }
            eng_be_mla_attend(g_cpu, ql, NH * LAT, qf + 16, NH * QK, QK, &m.c, LAT, NH, 0.12f, km, NQ, oc2, NH * LAT);
            eng_be_mla_attend(g_gpu, dql, NH * LAT, dqf + 16, NH * QK, QK, &m.g, LAT, NH, 0.12f, dm.keys, NQ, dout,
                              NH * LAT);
            dget(og2, dout, sizeof og2);
            CHECK(gpu_ok());
            double e = rel_err(oc2, og2, NQ * NH * LAT);
            fprintf(stderr, "  mla_attend (%s, %s) rel err %.2e\n", d ? "fp8" : "f32", sparse ? "selected" : "dense", e);
            CHECK(e < OP_TOL);
        }
        void *dv[] = { dq, dw, dsel, dn, dql, dqf, dout };
        for (size_t i = 0; i < sizeof dv / sizeof *dv; i++) eng_be_dealloc(g_gpu, dv[i]);
        att_free(&m);
        att_free(&ix);
    }
}

/* ===== whole steps (GLM_GPU_CHECK=1) ===== */

static char g_dir[256];

static int gpu_check_mode(void)
{
    const char *e = getenv("GLM_GPU_CHECK");
    if (!g_gpu) { test_skip("no CUDA device on this machine"); return 0; }
    if (!e || strcmp(e, "1")) { test_skip("whole-step parity runs under make gpu-check (GLM_GPU_CHECK=1)"); return 0; }
    return 1;
}

typedef struct side {
    eng_model *m;
    eng_kv_pool *kv;
} side;

static int side_open(side *s, const char *dir, enum eng_be_kind kind, enum eng_cache_dtype kvdt, int n_blocks)
{
    char err[512];
    eng_model_opts o = { .n_threads = 0, .backend = kind, .max_batch_tokens = 256, .max_model_len = 2048,
                         .load = { .quiet = 1 } };
    memset(s, 0, sizeof *s);
    if (eng_model_open(dir, &o, &s->m, err, sizeof err)) { fprintf(stderr, "  open: %s\n", err); return -1; }
    if (eng_kv_pool_create(eng_model_backend(s->m), eng_model_config(s->m), kvdt, n_blocks, 16, &s->kv, err,
                           sizeof err)) {
        fprintf(stderr, "  kv: %s\n", err);
        return -1;
    }
    return 0;
}

static void side_close(side *s)
{
    eng_kv_pool_free(s->kv);
    eng_model_close(s->m);
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[b]) b = i;
    return b;
}

enum { NSEQ = 8, PROMPT = 24, GEN = 64 };

/* NSEQ sequences in one batch: a prompt step with every row's logits, then
 * GEN decode steps. Teacher forcing: both sides are fed the CPU's greedy
 * token, and agree[] counts positions where the device's argmax is the
 * same; free[] runs each side on its own tokens and counts whole
 * continuations that match. */
static int parity_case(const char *dir, enum eng_cache_dtype kvdt, double *logit_err, double *agree, int *free_same)
{
    side c, g;
    int blocks_per = (PROMPT + GEN + 15) / 16 + 1;
    if (side_open(&c, dir, ENG_BE_CPU, kvdt, NSEQ * blocks_per) ||
        side_open(&g, dir, ENG_BE_CUDA, kvdt, NSEQ * blocks_per))
        return -1;
    int V = eng_model_config(c.m)->vocab_size;
    int32_t bt[NSEQ][16], toks[NSEQ][PROMPT + GEN], gtoks[NSEQ][PROMPT + GEN];
    for (int s = 0; s < NSEQ; s++)
        for (int b = 0; b < blocks_per; b++) bt[s][b] = s * blocks_per + b;
    for (int s = 0; s < NSEQ; s++)
        for (int i = 0; i < PROMPT; i++) toks[s][i] = gtoks[s][i] = (int)((rnd() + 1) * 0.5f * (float)(V - 1));
    size_t nl = (size_t)NSEQ * PROMPT * V;
    float *lc = malloc(nl * 4), *lg = malloc(nl * 4), *lp = malloc(nl * 4);   /* lp: the CPU's prompt logits */
    eng_seq sq[NSEQ];
    char err[512];
    int rc = 0;
    *logit_err = 0;
    long agree_n = 0, total = 0;
    /* pass 0: the CPU's greedy run, then the device teacher-forced on its
     * tokens; pass 1: the device free running on its own tokens. */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        side *sd[2] = { &c, &g };
        for (int k = pass; k < 2 && !rc; k++) {
            int32_t (*tk)[PROMPT + GEN] = pass == 1 && k == 1 ? gtoks : toks;
            for (int step = 0; step <= GEN && !rc; step++) {
                for (int s = 0; s < NSEQ; s++)
                    sq[s] = step ? (eng_seq){ &tk[s][PROMPT + step - 1], 1, PROMPT + step - 1, bt[s], blocks_per,
                                              ENG_LOGITS_LAST }
                                 : (eng_seq){ tk[s], PROMPT, 0, bt[s], blocks_per, ENG_LOGITS_ALL };
                float *lo = k ? lg : lc;
                if ((rc = eng_model_forward(sd[k]->m, sd[k]->kv, sq, NSEQ, lo, NULL, err, sizeof err))) {
                    fprintf(stderr, "  forward (%s): %s\n", k ? "cuda" : "cpu", err);
                    break;
                }
                if (step == 0 && pass == 0 && k == 0) memcpy(lp, lc, nl * 4);
                if (step == 0 && pass == 0 && k == 1) *logit_err = rel_err(lp, lg, nl);
                if (step == GEN) break;
                for (int s = 0; s < NSEQ; s++) {
                    const float *row = lo + (size_t)(step ? s : s * PROMPT + PROMPT - 1) * V;
                    int t = argmax(row, V);
                    if (pass == 0 && k == 0) toks[s][PROMPT + step] = t;
                    if (pass == 1 && k == 1) gtoks[s][PROMPT + step] = t;
                    if (pass == 0 && k == 1) { agree_n += t == toks[s][PROMPT + step]; total++; }
                }
            }
        }
    }
    *agree = total ? (double)agree_n / (double)total : 0;
    *free_same = 0;
    for (int s = 0; s < NSEQ; s++) *free_same += !memcmp(toks[s], gtoks[s], sizeof toks[s]);
    free(lc);
    free(lg);
    free(lp);
    side_close(&c);
    side_close(&g);
    return rc;
}

static int make_model(const char *preset, int fp8, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s-%s", g_dir, preset, fp8 ? "fp8" : "bf16");
    if (access(out, F_OK) == 0) return 0;
    eng_mk_opts o = { .arch = ENG_ARCH_GLM_MOE_DSA, .preset = preset, .out_dir = out, .seed = 1, .fp8 = fp8,
                      .mtp = 1, .quiet = 1 };
    char err[256];
    if (eng_mk_write(&o, err, sizeof err)) { fprintf(stderr, "  mkmodel: %s\n", err); return -1; }
    return 0;
}

TEST(gpu_step_parity)
{
    if (!gpu_check_mode()) return;
    const char *presets[2] = { "tiny", "small" };
    printf("| preset | weights | kv | max rel logit err | greedy agree (teacher-forced) | free runs identical |\n");
    printf("|---|---|---|---|---|---|\n");
    for (int p = 0; p < 2; p++)
        for (int fp8 = 0; fp8 < 2; fp8++)
            for (int kv = 0; kv < 2; kv++) {
                char dir[512];
                if (make_model(presets[p], fp8, dir, sizeof dir)) { CHECK(0); return; }
                double e, agree;
                int same;
                int rc = parity_case(dir, kv ? ENG_CACHE_FP8 : ENG_CACHE_F32, &e, &agree, &same);
                CHECK(rc == 0);
                if (rc) continue;
                printf("| %s | %s | %s | %.2e | %.1f%% | %d/%d |\n", presets[p], fp8 ? "fp8" : "bf16",
                       kv ? "fp8" : "f32", e, 100 * agree, same, NSEQ);
                fflush(stdout);
                CHECK(isfinite(e));
                if (!fp8 && !kv) {          /* the bar for BF16; FP8 is reported */
                    CHECK(e <= 1e-2);
                    CHECK(agree >= 0.95);
                }
            }
}


static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Bytes per second our own row-copy kernel (gather_rows over 1 GiB, read +
 * write counted) reaches: the bandwidth a step's achieved rate is put
 * against. */
static double copy_bw(void)
{
    enum { DIM = 1 << 14 };
    int rows = (1 << 30) / (DIM * 4) / 2;            /* two 512 MiB buffers */
    float *a = eng_be_alloc(g_gpu, (size_t)rows * DIM * 4), *b = eng_be_alloc(g_gpu, (size_t)rows * DIM * 4);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)rows), *didx;
    for (int i = 0; i < rows; i++) idx[i] = i;
    didx = dput(idx, sizeof(int32_t) * (size_t)rows);
    double best = 0;
    for (int r = 0; r < 6 && a && b && didx; r++) {
        double t = now_s();
        eng_be_gather_rows(g_gpu, a, DIM, didx, rows, DIM, b, DIM);
        if (!gpu_ok()) break;
        double bw = 2.0 * rows * DIM * 4 / (now_s() - t);
        if (r && bw > best) best = bw;               /* the first run warms up */
    }
    eng_be_dealloc(g_gpu, a);
    eng_be_dealloc(g_gpu, b);
    eng_be_dealloc(g_gpu, didx);
    free(idx);
    return best;
}

TEST(gpu_decode_bench)
{
    if (!gpu_check_mode()) return;
    char dir[512];
    const char *bm = getenv("GLM_GPU_BENCH_MODEL");   /* e.g. a --real-shapes checkpoint */
    if (bm && *bm) snprintf(dir, sizeof dir, "%s", bm);
    else if (make_model("small", 1, dir, sizeof dir)) { CHECK(0); return; }
    double cbw = copy_bw();
    printf("copy bandwidth (gather_rows kernel, 1 GiB, read + write): %.0f GB/s\n", cbw / 1e9);
    const int batches[3] = { 1, 8, 64 };
    printf("| model | batch | ms/step | tokens/s | active weight bytes / step time, GB/s | fraction of copy bw |\n"
           "|---|---|---|---|---|---|\n");
    for (int bi = 0; bi < 3; bi++) {
        int B = batches[bi], steps = 32, ctx = 128, per = (ctx + steps + 15) / 16 + 1;
        side g;
        if (side_open(&g, dir, ENG_BE_CUDA, ENG_CACHE_FP8, B * per)) { CHECK(0); return; }
        int V = eng_model_config(g.m)->vocab_size;
        int32_t *bt = malloc(sizeof(int32_t) * (size_t)B * per), *tk = malloc(sizeof(int32_t) * (size_t)B * ctx);
        eng_seq *sq = malloc(sizeof *sq * (size_t)B);
        float *lo = malloc((size_t)B * V * 4);
        for (int i = 0; i < B * per; i++) bt[i] = i;
        for (int i = 0; i < B * ctx; i++) tk[i] = i % (V - 1);
        char err[512];
        int rc = 0;
        /* prompts one sequence per step (max_batch_tokens 256) */
        for (int s = 0; s < B && !rc; s++) {
            eng_seq one = { tk + s * ctx, ctx, 0, bt + s * per, per, ENG_LOGITS_LAST };
            rc = eng_model_forward(g.m, g.kv, &one, 1, lo, NULL, err, sizeof err);
        }
        double t0 = 0;
        for (int st = 0; st < steps && !rc; st++) {
            if (st == 4) t0 = now_s();      /* 4 warm-up steps */
            for (int s = 0; s < B; s++)
                sq[s] = (eng_seq){ tk + s * ctx + st % ctx, 1, ctx + st, bt + s * per, per, ENG_LOGITS_LAST };
            rc = eng_model_forward(g.m, g.kv, sq, B, lo, NULL, err, sizeof err);
        }
        if (rc) fprintf(stderr, "  bench: %s\n", err);
        CHECK(rc == 0);
        if (!rc) {
            double dt = (now_s() - t0) / (steps - 4);
            double gbs = (double)eng_model_active_bytes(g.m) / dt / 1e9;
            printf("| %s | %d | %.2f | %.0f | %.1f | %.2f |\n", bm && *bm ? bm : "small fp8", B, 1e3 * dt, B / dt, gbs,
                   cbw > 0 ? gbs * 1e9 / cbw : 0);
            fflush(stdout);
        }
        free(bt); free(tk); free(sq); free(lo);
        side_close(&g);
    }
}

int main(void)
{
    char err[256];
    if (eng_be_cpu_create(0, &g_cpu, err, sizeof err)) { fprintf(stderr, "cpu backend: %s\n", err); return 1; }
    if (eng_be_cuda_available() > 0) {
        if (eng_be_cuda_create(1, 0, &g_gpu, err, sizeof err)) fprintf(stderr, "cuda backend: %s\n", err);
        else fprintf(stderr, "device: %s\n", eng_be_describe(g_gpu));
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/glm-cuda-test-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    RUN(backend_choice_without_device);
    RUN(cpu_step_ops);
    RUN(kv_device_budget);
    RUN(cpu_moe_ranges_tile_the_whole);
    RUN(cuda_linear);
    RUN(cuda_norms_rope_elementwise);
    RUN(cuda_route_and_moe);
    RUN(cuda_cache_index_attention);
    RUN(gpu_step_parity);
    RUN(gpu_decode_bench);
    test_rmtree(g_dir);
    eng_be_free(g_gpu);
    eng_be_free(g_cpu);
    keep_free_all();
    return test_report();
}
