/* matmul.cu — the CUDA backend's products: linear (BF16 / F32 / FP8 e4m3
 * with 128x128 block scales dequantised in the kernel: W8A16-style, f32
 * activations and accumulation), the per-head forms of the absorbed MLA,
 * and MoE dispatch over only the routed tokens.
 *
 * The one product kernel: a warp per weight row, up to TOK tokens per warp
 * (the row is read once for all of them); lanes stride k, then a fixed
 * butterfly sum. A token's result depends only on its own row and the
 * weight, never on which other tokens share the warp, so results are batch
 * invariant (not bit-equal to the CPU's FMA chains: parity is checked with a
 * tolerance, tests/unit/test_cuda_parity.c). Decode-shaped (few tokens):
 * prefill re-reads each weight row once per TOK tokens; the tensor-core
 * paths (cuBLASLt, wgmma, native FP8) are not written (docs/engine.md). */
#include "cu.h"

#define WARPS 8
#define TOK 8

/* acc[t] = sum_k W[wrow][k] * x[t][k] over the warp (every lane ends with it). */
__device__ __forceinline__ void warp_row_dot(const cu_w &w, int64_t wrow, const float *x, int64_t ldx, int nt,
                                             float acc[TOK])
{
    int lane = threadIdx.x & 31;
    for (int t = 0; t < TOK; t++) acc[t] = 0;
    for (int64_t k = lane; k < w.cols; k += 32) {
        float wv = cu_wget(w, wrow, k);
#pragma unroll
        for (int t = 0; t < TOK; t++)
            if (t < nt) acc[t] = fmaf(wv, x[t * ldx + k], acc[t]);
    }
#pragma unroll
    for (int t = 0; t < TOK; t++) acc[t] = cu_warp_sum(acc[t]);
}

/* grid (row blocks, token tiles, heads) */
__global__ void k_linear(cu_w w, int64_t row0, int64_t nrows, eng_be_heads hs, const float *x, int n, int64_t ldx,
                         float *y, int64_t ldy)
{
    int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    int i0 = blockIdx.y * TOK, h = blockIdx.z;
    if (r >= nrows) return;
    int nt = n - i0 < TOK ? n - i0 : TOK;
    float acc[TOK];
    warp_row_dot(w, row0 + h * hs.w + r, x + i0 * ldx + h * hs.x, ldx, nt, acc);
    if ((threadIdx.x & 31) == 0)
        for (int t = 0; t < nt; t++) y[(i0 + t) * ldy + h * hs.y + r] = acc[t];
}

static void linear_heads(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows, eng_be_heads hs,
                         const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    cu_w w;
    if (d->failed || n <= 0 || nrows <= 0 || hs.n <= 0 || cu_weight(d, W, &w)) return;
    dim3 g(cu_blocks(nrows, WARPS), cu_blocks(n, TOK), (unsigned)hs.n);
    k_linear<<<g, WARPS * 32, 0, d->stream>>>(w, row0, nrows, hs, x, n, ldx, y, ldy);
    CU_LAUNCHED(d);
}

void cu_linear(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows, const float *x, int n, int64_t ldx,
               float *y, int64_t ldy)
{
    linear_heads(d, W, row0, nrows, eng_be_heads{ 1, 0, 0, 0 }, x, n, ldx, y, ldy);
}

/* One launch per output: on a stream the launches queue back to back (no
 * host barrier between them to save, unlike the CPU pool's runs). */
void cu_linear_group(eng_dev *d, const eng_be_lin_out *outs, int n_outs, const float *x, int n, int64_t ldx)
{
    for (int j = 0; j < n_outs; j++)
        linear_heads(d, outs[j].W, outs[j].row0, outs[j].nrows, eng_be_heads{ 1, 0, 0, 0 }, x, n, ldx, outs[j].y,
                     outs[j].ldy);
}

void cu_linear_heads(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows, const eng_be_heads *hs,
                     const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    linear_heads(d, W, row0, nrows, *hs, x, n, ldx, y, ldy);
}

/* Transposed per head: y[i][h*hs.y + c] = sum_r W[row0 + h*hs.w + r][c] x[i][h*hs.x + r].
 * A thread per column c (coalesced weight reads), r in order. grid (column
 * blocks, tokens, heads). */
__global__ void k_linear_t(cu_w w, int64_t row0, int64_t nrows, eng_be_heads hs, const float *x, int64_t ldx,
                           float *y, int64_t ldy)
{
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int i = blockIdx.y, h = blockIdx.z;
    if (c >= w.cols) return;
    const float *xi = x + i * ldx + h * hs.x;
    int64_t wr0 = row0 + h * hs.w;
    float acc = 0;
    for (int64_t r = 0; r < nrows; r++) acc = fmaf(cu_wget(w, wr0 + r, c), xi[r], acc);
    y[i * ldy + h * hs.y + c] = acc;
}

void cu_linear_t_heads(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows, const eng_be_heads *hs,
                       const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    cu_w w;
    if (d->failed || n <= 0 || hs->n <= 0 || cu_weight(d, W, &w)) return;
    dim3 g(cu_blocks(w.cols, 128), (unsigned)n, (unsigned)hs->n);
    k_linear_t<<<g, 128, 0, d->stream>>>(w, row0, nrows, *hs, x, ldx, y, ldy);
    CU_LAUNCHED(d);
}

/* ===== MoE dispatch =====
 *
 * All on the device, no host round trip (the routed counts never come back):
 *  1. plan: for experts [e0, e1), seg[e - e0] = start of its segment in a
 *     permuted list of (token, k) entries (token order inside a segment),
 *     seg[ne] = total; inv[i*K + k] = the entry's place or -1 (out of range).
 *  2. gather x rows into that order; 3. gate/up products per segment (grid
 *     sized for the worst case, blocks past their segment's count exit);
 *  4. SwiGLU; 5. down product; 6. combine: out[i] = sum over k ascending of
 *     wt[i][k] * y[inv[i][k]], from 0 — the CPU's order of experts per token. */

struct moe_plan {
    int32_t *seg;       /* [ne + 1] */
    int32_t *perm;      /* [n*K]: entry i*K + k */
    int32_t *inv;       /* [n*K] */
};

__global__ void k_moe_plan(const int32_t *idx, int nk, int e0, int ne, moe_plan p)
{
    /* Thread j < ne counts expert e0 + j; thread 0 scans the counts; then
     * each expert's thread lists its entries in token order. */
    __shared__ int32_t cnt[1024 + 1];
    for (int j = threadIdx.x; j < ne; j += blockDim.x) {
        int c = 0;
        for (int q = 0; q < nk; q++) c += idx[q] == e0 + j;
        cnt[j] = c;
    }
    for (int q = threadIdx.x; q < nk; q += blockDim.x) p.inv[q] = -1;
    __syncthreads();
    if (threadIdx.x == 0) {
        int s = 0;
        for (int j = 0; j < ne; j++) { int c = cnt[j]; cnt[j] = s; s += c; }
        cnt[ne] = s;
    }
    __syncthreads();
    for (int j = threadIdx.x; j <= ne; j += blockDim.x) p.seg[j] = cnt[j];
    for (int j = threadIdx.x; j < ne; j += blockDim.x) {
        int at = cnt[j];
        for (int q = 0; q < nk; q++)
            if (idx[q] == e0 + j) { p.perm[at] = q; p.inv[q] = at; at++; }
    }
}

/* Rows of the permuted list: xp[e] = x[perm[e] / K]. A block per row (grid.x:
 * n*K passes 65535 at 8192 tokens x top-8, too many for grid.y). */
__global__ void k_moe_gather(const float *x, int H, int K, moe_plan p, int ne, float *xp)
{
    int e = blockIdx.x;
    if (e >= p.seg[ne]) return;
    const float *src = x + (int64_t)(p.perm[e] / K) * H;
    for (int k = threadIdx.x; k < H; k += blockDim.x) xp[(int64_t)e * H + k] = src[k];
}

/* Per expert segment: y[s][r] = sum_k W_e[proj][r][k] * xin[s][k] for the
 * segment's rows s. grid (row blocks, experts in range, token tiles); wd:
 * the range's descriptors, [e1 - e0][ENG_EXP_COUNT]. */
__global__ void k_moe_linear(const cu_w *wd, int proj, moe_plan p, const float *xin, int64_t ldx, float *y,
                             int64_t ldy, int64_t nrows)
{
    int j = blockIdx.y;
    int s0 = p.seg[j], cnt = p.seg[j + 1] - s0, t0 = blockIdx.z * TOK;
    int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (t0 >= cnt || r >= nrows) return;
    const cu_w w = wd[(int64_t)j * ENG_EXP_COUNT + proj];
    int nt = cnt - t0 < TOK ? cnt - t0 : TOK;
    float acc[TOK];
    warp_row_dot(w, r, xin + (int64_t)(s0 + t0) * ldx, ldx, nt, acc);
    if ((threadIdx.x & 31) == 0)
        for (int t = 0; t < nt; t++) y[(int64_t)(s0 + t0 + t) * ldy + r] = acc[t];
}

__global__ void k_moe_swiglu(const float *g, const float *u, int I, moe_plan p, int ne, float *act)
{
    int e = blockIdx.x;
    if (e >= p.seg[ne]) return;
    for (int k = threadIdx.x; k < I; k += blockDim.x) {
        float gv = g[(int64_t)e * I + k];
        act[(int64_t)e * I + k] = gv / (1.0f + expf(-gv)) * u[(int64_t)e * I + k];
    }
}

__global__ void k_moe_combine(const float *y, int H, int K, const float *wt, moe_plan p, float *out)
{
    int i = blockIdx.y;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < H; c += gridDim.x * blockDim.x) {
        float acc = 0;
        for (int k = 0; k < K; k++) {
            int at = p.inv[i * K + k];
            if (at >= 0) acc = fmaf(wt[i * K + k], y[(int64_t)at * H + c], acc);
        }
        out[(int64_t)i * H + c] = acc;
    }
}

/* The device descriptors of one layer's experts, built on first use and
 * kept (the host views never move while the weights live). */
static const cu_w *moe_descs(eng_dev *d, const eng_tensor *ex, int n_experts)
{
    int n = n_experts * ENG_EXP_COUNT;
    for (size_t i = 0; i < d->n_moe_cache; i++)
        if (d->moe_cache[i].key == ex && d->moe_cache[i].n == n) return (const cu_w *)d->moe_cache[i].dev;
    cu_w *h = (cu_w *)malloc((size_t)n * sizeof *h);
    void *grown = realloc(d->moe_cache, (d->n_moe_cache + 1) * sizeof *d->moe_cache);
    if (!h || !grown) {
        free(h);
        if (grown) d->moe_cache = (eng_dev::cu_moe_cache *)grown;
        cu_fail(d, __FILE__, __LINE__, "out of host memory for expert descriptors", cudaSuccess);
        return NULL;
    }
    d->moe_cache = (eng_dev::cu_moe_cache *)grown;
    void *dev = NULL;
    for (int e = 0; e < n; e++)
        if (cu_weight(d, &ex[e], &h[e])) { free(h); return NULL; }
    /* Async on our stream: ordered before the kernels that read it; the
     * pageable source is staged before the call returns, so h may go. */
    if (!CU_OK(d, cudaMalloc(&dev, (size_t)n * sizeof *h)) ||
        !CU_OK(d, cudaMemcpyAsync(dev, h, (size_t)n * sizeof *h, cudaMemcpyHostToDevice, d->stream))) {
        free(h);
        if (dev) cudaFree(dev);
        return NULL;
    }
    free(h);
    d->moe_cache[d->n_moe_cache++] = eng_dev::cu_moe_cache{ ex, n, dev };
    return (const cu_w *)dev;
}

void cu_moe_experts(eng_dev *d, const eng_be_moe *a, int e0, int e1)
{
    int n = a->n, K = a->top_k, H = a->hidden, I = a->inter, ne = e1 - e0, nk = n * K;
    if (d->failed || n <= 0) return;
    if (ne <= 0) {
        CU_OK(d, cudaMemsetAsync(a->out, 0, (size_t)n * H * sizeof(float), d->stream));
        return;
    }
    if (ne > 1024 || e0 < 0 || e1 > a->n_experts) {
        cu_fail(d, __FILE__, __LINE__, "moe: expert range outside [0, n_experts) or over 1024", cudaSuccess);
        return;
    }
    /* Only the range's experts need be resident (an expert-parallel rank
     * uploads its own experts only). */
    const cu_w *wd = moe_descs(d, a->experts + (size_t)e0 * ENG_EXP_COUNT, ne);
    char *pl = (char *)cu_buf_get(d, &d->moe_perm, ((size_t)ne + 1 + 2 * (size_t)nk) * sizeof(int32_t));
    float *xp = (float *)cu_buf_get(d, &d->moe_x, (size_t)nk * H * sizeof(float));
    float *g = (float *)cu_buf_get(d, &d->moe_g, (size_t)nk * I * sizeof(float));
    float *u = (float *)cu_buf_get(d, &d->moe_u, (size_t)nk * I * sizeof(float));
    float *y = (float *)cu_buf_get(d, &d->moe_y, (size_t)nk * H * sizeof(float));
    if (!wd || !pl || !xp || !g || !u || !y) return;
    moe_plan p = { (int32_t *)pl, (int32_t *)pl + ne + 1, (int32_t *)pl + ne + 1 + nk };
    k_moe_plan<<<1, 1024, 0, d->stream>>>(a->idx, nk, e0, ne, p);
    k_moe_gather<<<(unsigned)nk, 256, 0, d->stream>>>(a->x, H, K, p, ne, xp);
    dim3 gi(cu_blocks(I, WARPS), (unsigned)ne, cu_blocks(n, TOK));
    k_moe_linear<<<gi, WARPS * 32, 0, d->stream>>>(wd, ENG_EXP_GATE, p, xp, H, g, I, I);
    k_moe_linear<<<gi, WARPS * 32, 0, d->stream>>>(wd, ENG_EXP_UP, p, xp, H, u, I, I);
    k_moe_swiglu<<<(unsigned)nk, 256, 0, d->stream>>>(g, u, I, p, ne, g);   /* act over gate, in place */
    dim3 gd(cu_blocks(H, WARPS), (unsigned)ne, cu_blocks(n, TOK));
    k_moe_linear<<<gd, WARPS * 32, 0, d->stream>>>(wd, ENG_EXP_DOWN, p, g, I, y, H, H);
    dim3 gc(cu_blocks(H, 256) < 16 ? cu_blocks(H, 256) : 16, (unsigned)n);
    k_moe_combine<<<gc, 256, 0, d->stream>>>(y, H, K, a->wt, p, a->out);
    CU_LAUNCHED(d);
}
