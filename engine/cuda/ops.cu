/* ops.cu — the CUDA backend's row-wise ops: embedding, norms, RoPE, SwiGLU,
 * adds, gather/scatter, the MoE router, and the paged cache's store/load.
 * Simple kernels (one block per row or a grid-stride loop) written to match
 * the CPU's arithmetic order where that is cheap; never run on a GPU yet
 * (docs/engine.md). */
#include "cu.h"

#include <math.h>

#define THREADS 256

/* ===== element-wise ===== */

/* Norm / embedding vectors: BF16 or F32, one row. */
__device__ __forceinline__ float vec_get(const void *p, int dtype, int64_t k)
{
    return dtype == ENG_DT_BF16 ? cu_bf16(((const uint16_t *)p)[k]) : ((const float *)p)[k];
}

__global__ void k_embed(const void *emb, int dtype, int64_t cols, const int32_t *ids, int n, float *out, int64_t ldo)
{
    int i = blockIdx.x;
    const int64_t base = (int64_t)ids[i] * cols;
    for (int64_t k = threadIdx.x; k < cols; k += blockDim.x) out[i * ldo + k] = vec_get(emb, dtype, base + k);
}

void cu_embed(eng_dev *d, const eng_tensor *emb, const int32_t *ids, int n, float *out, int64_t ldo)
{
    cu_w w;
    if (d->failed || n <= 0 || cu_weight(d, emb, &w)) return;
    k_embed<<<n, THREADS, 0, d->stream>>>(w.data, w.dtype, w.cols, ids, n, out, ldo);
    CU_LAUNCHED(d);
}

/* One block per row: y = w * (x * rsqrt(mean(x^2) + eps)). */
__global__ void k_rmsnorm(const void *w, int dtype, const float *x, int64_t ldx, int dim, float eps, float *y,
                          int64_t ldy)
{
    const float *xi = x + blockIdx.x * ldx;
    float ss = 0;
    for (int k = threadIdx.x; k < dim; k += blockDim.x) ss += xi[k] * xi[k];
    ss = cu_block_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)dim + eps);
    /* y may alias x: every read of x above finished before the block sum's barrier. */
    for (int k = threadIdx.x; k < dim; k += blockDim.x) y[blockIdx.x * ldy + k] = vec_get(w, dtype, k) * (xi[k] * r);
}

void cu_rmsnorm(eng_dev *d, const eng_tensor *w, const float *x, int n, int64_t ldx, int dim, float eps,
                float *y, int64_t ldy)
{
    cu_w cw;
    if (d->failed || n <= 0 || cu_weight(d, w, &cw)) return;
    k_rmsnorm<<<n, THREADS, 0, d->stream>>>(cw.data, cw.dtype, x, ldx, dim, eps, y, ldy);
    CU_LAUNCHED(d);
}

__global__ void k_layernorm(const void *w, int wdt, const void *b, int bdt, float *x, int64_t ldx, int dim, float eps)
{
    float *xi = x + blockIdx.x * ldx;
    float s = 0;
    for (int k = threadIdx.x; k < dim; k += blockDim.x) s += xi[k];
    float mean = cu_block_sum(s) / (float)dim;
    float v = 0;
    for (int k = threadIdx.x; k < dim; k += blockDim.x) v += (xi[k] - mean) * (xi[k] - mean);
    float r = 1.0f / sqrtf(cu_block_sum(v) / (float)dim + eps);
    for (int k = threadIdx.x; k < dim; k += blockDim.x)
        xi[k] = (xi[k] - mean) * r * vec_get(w, wdt, k) + vec_get(b, bdt, k);
}

void cu_layernorm(eng_dev *d, const eng_tensor *w, const eng_tensor *b, float *x, int n, int64_t ldx, int dim,
                  float eps)
{
    cu_w cw, cb;
    if (d->failed || n <= 0 || cu_weight(d, w, &cw) || cu_weight(d, b, &cb)) return;
    k_layernorm<<<n, THREADS, 0, d->stream>>>(cw.data, cw.dtype, cb.data, cb.dtype, x, ldx, dim, eps);
    CU_LAUNCHED(d);
}

/* Token per block, (head, pair) per thread. Angle in f32 as the CPU:
 * pos * inv_freq, then cosf/sinf (full-precision, not the fast intrinsics). */
__global__ void k_rope(float *x, int64_t ldx, int n_heads, int64_t hstride, int off, int half, const int32_t *pos,
                       const float *inv_freq)
{
    int i = blockIdx.x;
    for (int t = threadIdx.x; t < n_heads * half; t += blockDim.x) {
        int h = t / half, j = t % half;
        float ang = (float)pos[i] * inv_freq[j];
        float c = cosf(ang), s = sinf(ang);
        float *p = x + i * ldx + h * hstride + off + 2 * j;
        float a = p[0], b = p[1];
        p[0] = a * c - b * s;
        p[1] = b * c + a * s;
    }
}

void cu_rope(eng_dev *d, float *x, int n, int64_t ldx, int n_heads, int64_t hstride, int off, int dim,
             const int32_t *pos, const float *inv_freq)
{
    if (d->failed || n <= 0 || dim < 2) return;
    k_rope<<<n, THREADS, 0, d->stream>>>(x, ldx, n_heads, hstride, off, dim / 2, pos, inv_freq);
    CU_LAUNCHED(d);
}

__global__ void k_silu_mul(const float *gate, int64_t ldg, const float *up, int64_t ldu, int dim, float *out,
                           int64_t ldo)
{
    int i = blockIdx.y;
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < dim; k += gridDim.x * blockDim.x) {
        float g = gate[i * ldg + k];
        out[i * ldo + k] = g / (1.0f + expf(-g)) * up[i * ldu + k];
    }
}

void cu_silu_mul(eng_dev *d, const float *gate, int64_t ldg, const float *up, int64_t ldu, int n, int dim,
                 float *out, int64_t ldo)
{
    if (d->failed || n <= 0 || dim <= 0) return;
    dim3 g(cu_blocks(dim, THREADS) < 64 ? cu_blocks(dim, THREADS) : 64, (unsigned)n);
    k_silu_mul<<<g, THREADS, 0, d->stream>>>(gate, ldg, up, ldu, dim, out, ldo);
    CU_LAUNCHED(d);
}

/* y[rows ? rows[i] : i] += (a ? a[i] : 1) * x[i]: add_scaled and scatter_add
 * (rows of one call are distinct, so no two threads add to one element). */
__global__ void k_axpy_rows(float *y, int64_t ldy, const int32_t *rows, const float *a, const float *x, int64_t ldx,
                            int dim)
{
    int i = blockIdx.y;
    int64_t r = rows ? rows[i] : i;
    float s = a ? a[i] : 1.0f;
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < dim; k += gridDim.x * blockDim.x)
        y[r * ldy + k] = fmaf(s, x[i * ldx + k], y[r * ldy + k]);
}

static void axpy_rows(eng_dev *d, float *y, int64_t ldy, const int32_t *rows, const float *a, const float *x,
                      int64_t ldx, int n, int dim)
{
    if (d->failed || n <= 0 || dim <= 0) return;
    dim3 g(cu_blocks(dim, THREADS) < 64 ? cu_blocks(dim, THREADS) : 64, (unsigned)n);
    k_axpy_rows<<<g, THREADS, 0, d->stream>>>(y, ldy, rows, a, x, ldx, dim);
    CU_LAUNCHED(d);
}

void cu_add_scaled(eng_dev *d, float *y, int64_t ldy, const float *x, int64_t ldx, const float *a, int n, int dim)
{
    axpy_rows(d, y, ldy, NULL, a, x, ldx, n, dim);
}

void cu_scatter_add_rows(eng_dev *d, float *y, int64_t ldy, const int32_t *rows, const float *a, const float *x,
                         int64_t ldx, int n, int dim)
{
    axpy_rows(d, y, ldy, rows, a, x, ldx, n, dim);
}

__global__ void k_gather(const float *x, int64_t ldx, const int32_t *rows, int dim, float *out, int64_t ldo)
{
    int i = blockIdx.y;
    const float *src = x + (int64_t)rows[i] * ldx;
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < dim; k += gridDim.x * blockDim.x)
        out[i * ldo + k] = src[k];
}

void cu_gather_rows(eng_dev *d, const float *x, int64_t ldx, const int32_t *rows, int n, int dim, float *out,
                    int64_t ldo)
{
    if (d->failed || n <= 0 || dim <= 0) return;
    dim3 g(cu_blocks(dim, THREADS) < 64 ? cu_blocks(dim, THREADS) : 64, (unsigned)n);
    k_gather<<<g, THREADS, 0, d->stream>>>(x, ldx, rows, dim, out, ldo);
    CU_LAUNCHED(d);
}

__global__ void k_scale(float *x, int64_t n, float a)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= a;
}

void cu_scale(eng_dev *d, float *x, int64_t n, float a)
{
    if (d->failed || n <= 0) return;
    unsigned g = cu_blocks(n, THREADS) < 1024 ? cu_blocks(n, THREADS) : 1024;
    k_scale<<<g, THREADS, 0, d->stream>>>(x, n, a);
    CU_LAUNCHED(d);
}

/* ===== routing ===== */

/* The CPU's router, one thread per token (E <= 1024 values in local
 * scratch of the block's shared memory): sigmoid scores, choice scores with
 * the bias, group-limited selection by the sum of each group's top 2,
 * top_k by choice score (ties: lowest id), weights from the unbiased
 * scores, renormalised and scaled. Output in ascending expert id. A serial
 * loop per token: 256 experts x 8 picks is a few thousand compares. */
#define ROUTE_MAX_E 1024
#define ROUTE_MAX_G 64

__device__ static int argmax_free(const float *v, const unsigned char *taken, int n)
{
    int best = -1;
    for (int k = 0; k < n; k++)
        if (!taken[k] && (best < 0 || v[k] > v[best])) best = k;
    return best;
}

__global__ void k_route(eng_be_route r, const float *logits, int64_t ldl, const float *bias, int n, int32_t *idx,
                        float *wt, float *scratch)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int E = r.n_experts, G = r.n_group, per = E / G;
    float *s = scratch + (int64_t)i * 2 * E, *c = s + E;
    unsigned char taken[ROUTE_MAX_E];
    float gs[ROUTE_MAX_G];
    for (int e = 0; e < E; e++) {
        s[e] = 1.0f / (1.0f + expf(-logits[i * ldl + e]));
        c[e] = s[e] + bias[e];
    }
    if (G > 1) {
        for (int g = 0; g < G; g++) {
            for (int e = 0; e < per; e++) taken[e] = 0;
            int a = argmax_free(c + g * per, taken, per);
            if (a >= 0) taken[a] = 1;
            int b = argmax_free(c + g * per, taken, per);
            gs[g] = (a < 0 || b < 0) ? -INFINITY : c[g * per + a] + c[g * per + b];
        }
        for (int g = 0; g < G; g++) taken[g] = 0;
        for (int k = 0; k < r.topk_group; k++) {
            int g = argmax_free(gs, taken, G);
            if (g >= 0) taken[g] = 1;
        }
        for (int g = 0; g < G; g++)
            if (!taken[g])
                for (int e = 0; e < per; e++) c[g * per + e] = -INFINITY;
    }
    for (int e = 0; e < E; e++) taken[e] = 0;
    for (int k = 0; k < r.top_k; k++) {
        int e = argmax_free(c, taken, E);
        if (e >= 0) taken[e] = 1;
    }
    float sum = 0;
    int k = 0;
    for (int e = 0; e < E; e++)
        if (taken[e]) { idx[i * r.top_k + k] = e; wt[i * r.top_k + k] = s[e]; sum += s[e]; k++; }
    for (k = 0; k < r.top_k; k++) {
        if (r.norm_topk_prob) wt[i * r.top_k + k] /= sum + 1e-20f;
        wt[i * r.top_k + k] *= r.routed_scaling;
    }
}

void cu_route_topk(eng_dev *d, const eng_be_route *r, const float *logits, int64_t ldl, const float *bias, int n,
                   int32_t *idx, float *wt)
{
    if (d->failed || n <= 0) return;
    if (r->n_experts > ROUTE_MAX_E || r->n_group > ROUTE_MAX_G || r->n_group < 1) {
        cu_fail(d, __FILE__, __LINE__, "router: more than 1024 experts or 64 groups", cudaSuccess);
        return;
    }
    const float *db = (const float *)cu_dev_ptr(d, bias, "e_score_correction_bias");
    float *scratch = (float *)cu_buf_get(d, &d->route_s, (size_t)n * 2 * (size_t)r->n_experts * sizeof(float));
    if (!db || !scratch) return;
    k_route<<<cu_blocks(n, 64), 64, 0, d->stream>>>(*r, logits, ldl, db, n, idx, wt, scratch);
    CU_LAUNCHED(d);
}

/* ===== paged cache ===== */

/* One block per row, one warp per 128-value tile (tiles over [0, split) then
 * [split, dim)): scale = amax / 448, values rounded as eng_f32_to_fp8. */
__global__ void k_cache_store_fp8(eng_be_cache c, const int64_t *slot, const float *src, int64_t lds)
{
    int i = blockIdx.x, lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    unsigned char *row = (unsigned char *)c.data + (size_t)slot[i] * c.row_bytes;
    float *sc = (float *)(row + (((size_t)c.dim + 3) & ~(size_t)3));
    const float *x = src + i * lds;
    int tiles_lo = (c.split + ENG_CACHE_FP8_TILE - 1) / ENG_CACHE_FP8_TILE;
    int tiles = tiles_lo + (c.dim - c.split + ENG_CACHE_FP8_TILE - 1) / ENG_CACHE_FP8_TILE;
    for (int t = w; t < tiles; t += nw) {
        int a = t < tiles_lo ? t * ENG_CACHE_FP8_TILE : c.split + (t - tiles_lo) * ENG_CACHE_FP8_TILE;
        int hi = t < tiles_lo ? c.split : c.dim;
        int b = a + ENG_CACHE_FP8_TILE < hi ? a + ENG_CACHE_FP8_TILE : hi;
        float amax = 0;
        for (int k = a + lane; k < b; k += 32) amax = fmaxf(amax, fabsf(x[k]));
        amax = cu_warp_max(amax);
        float s = amax > 0 && isfinite(amax) ? amax / 448.0f : 1.0f;
        if (lane == 0) sc[t] = s;
        for (int k = a + lane; k < b; k += 32) row[k] = cu_to_e4m3(x[k] / s);
    }
}

__global__ void k_cache_store_f32(eng_be_cache c, const int64_t *slot, const float *src, int64_t lds)
{
    float *row = (float *)((unsigned char *)c.data + (size_t)slot[blockIdx.x] * c.row_bytes);
    for (int k = threadIdx.x; k < c.dim; k += blockDim.x) row[k] = src[blockIdx.x * lds + k];
}

void cu_cache_store(eng_dev *d, const eng_be_cache *c, const int64_t *slot, int n, const float *src, int64_t lds)
{
    if (d->failed || n <= 0) return;
    if (c->dtype == ENG_CACHE_FP8) k_cache_store_fp8<<<n, THREADS, 0, d->stream>>>(*c, slot, src, lds);
    else k_cache_store_f32<<<n, THREADS, 0, d->stream>>>(*c, slot, src, lds);
    CU_LAUNCHED(d);
}

__global__ void k_cache_load(eng_be_cache c, int64_t slot, float *out)
{
    const unsigned char *row = (const unsigned char *)c.data + (size_t)slot * c.row_bytes;
    for (int k = threadIdx.x; k < c.dim; k += blockDim.x) out[k] = cu_cache_val(c, row, k);
}

void cu_cache_load(eng_dev *d, const eng_be_cache *c, int64_t slot, float *out)
{
    if (d->failed) return;
    k_cache_load<<<1, THREADS, 0, d->stream>>>(*c, slot, out);
    CU_LAUNCHED(d);
}
