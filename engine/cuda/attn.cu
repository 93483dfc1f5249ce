/* attn.cu — the CUDA backend's attention: absorbed MLA over the paged
 * latent cache (split-K over the context, then a combine), the DSA
 * indexer's scores and top-k, and the key sets' switch to the selection.
 *
 * Sizes the host does not know (each query's context lives in device key
 * sets) are bounded by the step's longest context, which eng_be_step_upload
 * records (d->step_max_ctx); blocks past their own query's keys exit. Work
 * buffers are processed in query chunks so they stay under CHUNK_BYTES.
 * Simple, correctness-first kernels; never run on a GPU yet. */
#include "cu.h"

#define CH 256                      /* keys per attention split */
#define CHUNK_BYTES (256u << 20)
#define MAX_LAT 1024
#define MAX_ROPE 256

/* ===== key sets ===== */

__global__ void k_keys_select(eng_be_keys *keys, int n, const int32_t *sel, int64_t ld, const int *n_sel, int topk)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int sparse = keys[i].n_ctx > topk;
    keys[i].sel = sparse ? sel + (int64_t)i * ld : NULL;
    keys[i].n_sel = sparse ? n_sel[i] : 0;
}

void cu_keys_select(eng_dev *d, eng_be_keys *keys, int n, const int32_t *sel, int64_t ld, const int *n_sel, int topk)
{
    if (d->failed || n <= 0) return;
    k_keys_select<<<cu_blocks(n, 128), 128, 0, d->stream>>>(keys, n, sel, ld, n_sel, topk);
    CU_LAUNCHED(d);
}

/* ===== DSA indexer ===== */

/* Scores of query i0 + blockIdx.z over positions t < n_ctx: a warp per
 * position, I(t) = sum_h w[h] * relu(q[h] . k_t), heads in order. */
__global__ void k_index_scores(const float *q, int64_t ldq, const float *w, int64_t ldw, int n_heads,
                               eng_be_cache c, const eng_be_keys *keys, int i0, float *sc, int64_t lds)
{
    int i = i0 + blockIdx.y, lane = threadIdx.x & 31;
    const eng_be_keys k = keys[i];
    int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (t >= k.n_ctx || k.n_ctx <= 0) return;
    const unsigned char *row = (const unsigned char *)c.data + (size_t)cu_slot(k, t) * c.row_bytes;
    const float *qi = q + i * ldq, *wi = w + i * ldw;
    float s = 0;
    for (int h = 0; h < n_heads; h++) {
        float dot = 0;
        for (int j = lane; j < c.dim; j += 32) dot = fmaf(qi[h * c.dim + j], cu_cache_val(c, row, j), dot);
        dot = cu_warp_sum(dot);
        if (dot > 0) s += wi[h] * dot;
    }
    if (lane == 0) sc[(int64_t)blockIdx.y * lds + t] = s;
}

/* Order-preserving uint32 of a float: larger float, larger key; -0 and +0
 * the same key (equal scores: a tie, as on the CPU). */
__device__ __forceinline__ uint32_t fkey(float f)
{
    uint32_t u = __float_as_uint(f == 0.0f ? 0.0f : f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Exclusive prefix sum of v over the block (blockDim.x == 1024); *total gets the sum. */
__device__ int block_scan(int v, int *total)
{
    __shared__ int ws[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int x = v;
    for (int o = 1; o < 32; o <<= 1) {
        int y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    __syncthreads();
    if (lane == 31) ws[w] = x;
    __syncthreads();
    int before = 0, all = 0;
    for (int j = 0; j < 32; j++) { if (j < w) before += ws[j]; all += ws[j]; }
    *total = all;
    return before + x - v;
}

/* One block (1024 threads) per query: the topk best positions (ties: the
 * earlier position, the CPU's rule), written in ascending order. The k-th
 * best key is found bit by bit (32 counting passes), then one ordered
 * compaction keeps everything above it and the earliest ties. */
__global__ void k_index_topk(const float *sc, int64_t lds, const eng_be_keys *keys, int i0, int topk, int32_t *out,
                             int *n_out)
{
    int i = i0 + blockIdx.x, n = keys[i].n_ctx;
    const float *s = sc + (int64_t)blockIdx.x * lds;
    int32_t *o = out + (int64_t)i * topk;
    if (n <= topk) {
        for (int t = threadIdx.x; t < n; t += blockDim.x) o[t] = t;
        if (threadIdx.x == 0) n_out[i] = n < 0 ? 0 : n;
        return;
    }
    uint32_t thr = 0;
    for (int bit = 31; bit >= 0; bit--) {
        uint32_t cand = thr | (1u << bit);
        int c = 0;
        for (int t = threadIdx.x; t < n; t += blockDim.x) c += fkey(s[t]) >= cand;
        int tot;
        block_scan(c, &tot);
        if (tot >= topk) thr = cand;
    }
    int gt = 0;
    for (int t = threadIdx.x; t < n; t += blockDim.x) gt += fkey(s[t]) > thr;
    int n_gt;
    block_scan(gt, &n_gt);
    int need_eq = topk - n_gt, eq_seen = 0, written = 0;
    for (int base = 0; base < n; base += blockDim.x) {
        int t = base + threadIdx.x;
        uint32_t kk = t < n ? fkey(s[t]) : 0;
        int is_eq = t < n && kk == thr, eq_tot;
        int eq_before = block_scan(is_eq, &eq_tot) + eq_seen;
        int keep = t < n && (kk > thr || (is_eq && eq_before < need_eq));
        int kept_tot;
        int at = block_scan(keep, &kept_tot) + written;
        if (keep) o[at] = t;
        eq_seen += eq_tot;
        written += kept_tot;
    }
    if (threadIdx.x == 0) n_out[i] = topk;
}

void cu_index_topk(eng_dev *d, const float *q, int64_t ldq, const float *w, int64_t ldw, int n_heads,
                   const eng_be_cache *cache, const eng_be_keys *keys, int n, int topk, int32_t *out, int *n_out)
{
    if (d->failed || n <= 0) return;
    int64_t lds = d->step_max_ctx > 0 ? d->step_max_ctx : 1;
    int qc = (int)(CHUNK_BYTES / ((size_t)lds * sizeof(float)));
    if (qc < 1) qc = 1;
    if (qc > 65535) qc = 65535;
    float *sc = (float *)cu_buf_get(d, &d->idx_scores, (size_t)(n < qc ? n : qc) * (size_t)lds * sizeof(float));
    if (!sc) return;
    for (int i0 = 0; i0 < n; i0 += qc) {
        int m = n - i0 < qc ? n - i0 : qc;
        dim3 g(cu_blocks(lds, 8), (unsigned)m);
        k_index_scores<<<g, 256, 0, d->stream>>>(q, ldq, w, ldw, n_heads, *cache, keys, i0, sc, lds);
        k_index_topk<<<(unsigned)m, 1024, 0, d->stream>>>(sc, lds, keys, i0, topk, out, n_out);
        if (!CU_LAUNCHED(d)) return;
    }
}

/* ===== absorbed MLA ===== */

/* Split s of query i0 + blockIdx.z, head blockIdx.y: keys [s*CH, s*CH + CH)
 * of the query's key list. Writes the split's max score m, sum of
 * exp(score - m) l and unnormalised o[lat] into part. */
__global__ void k_mla_split(const float *q_lat, int64_t ldql, const float *q_pe, int64_t ldqp, int64_t hsqp,
                            eng_be_cache c, int lat, float scale, const eng_be_keys *keys, int i0, int n_heads,
                            int n_split, float *part)
{
    __shared__ float qs[MAX_LAT + MAX_ROPE];
    __shared__ float ps[CH];
    int i = i0 + blockIdx.z, h = blockIdx.y, s = blockIdx.x, rope = c.dim - lat;
    const eng_be_keys k = keys[i];
    int nk = k.sel ? k.n_sel : k.n_ctx, j0 = s * CH;
    float *pp = part + (((int64_t)blockIdx.z * n_heads + h) * n_split + s) * (lat + 2);
    if (j0 >= nk) {
        if (threadIdx.x == 0) { pp[0] = -INFINITY; pp[1] = 0; }
        return;
    }
    int j1 = j0 + CH < nk ? j0 + CH : nk;
    for (int x = threadIdx.x; x < lat; x += blockDim.x) qs[x] = q_lat[i * ldql + h * lat + x];
    for (int x = threadIdx.x; x < rope; x += blockDim.x) qs[lat + x] = q_pe[i * ldqp + h * hsqp + x];
    __syncthreads();
    int lane = threadIdx.x & 31, wp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int j = j0 + wp; j < j1; j += nw) {
        int pos = k.sel ? k.sel[j] : j;
        const unsigned char *row = (const unsigned char *)c.data + (size_t)cu_slot(k, pos) * c.row_bytes;
        float dl = 0, dr = 0;
        for (int x = lane; x < lat; x += 32) dl = fmaf(qs[x], cu_cache_val(c, row, x), dl);
        for (int x = lane; x < rope; x += 32) dr = fmaf(qs[lat + x], cu_cache_val(c, row, lat + x), dr);
        dl = cu_warp_sum(dl);
        dr = cu_warp_sum(dr);
        if (lane == 0) ps[j - j0] = scale * (dl + dr);
    }
    __syncthreads();
    float m = -INFINITY;
    for (int j = threadIdx.x; j < j1 - j0; j += blockDim.x) m = fmaxf(m, ps[j]);
    m = cu_block_max(m);
    __syncthreads();
    for (int j = threadIdx.x; j < j1 - j0; j += blockDim.x) ps[j] = expf(ps[j] - m);
    __syncthreads();
    float l = 0;
    for (int j = 0; j < j1 - j0; j++) l += ps[j];        /* every thread, same order */
    for (int x = threadIdx.x; x < lat; x += blockDim.x) {
        float acc = 0;
        for (int j = j0; j < j1; j++) {
            int pos = k.sel ? k.sel[j] : j;
            const unsigned char *row = (const unsigned char *)c.data + (size_t)cu_slot(k, pos) * c.row_bytes;
            acc = fmaf(ps[j - j0], cu_cache_val(c, row, x), acc);
        }
        pp[2 + x] = acc;
    }
    if (threadIdx.x == 0) { pp[0] = m; pp[1] = l; }
}

/* o[i][h] = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s; 0 without keys. */
__global__ void k_mla_combine(const float *part, int lat, int n_heads, int n_split, int i0, float *o, int64_t ldo)
{
    int h = blockIdx.x, iz = blockIdx.y;
    const float *pp = part + ((int64_t)iz * n_heads + h) * n_split * (lat + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, pp[(int64_t)s * (lat + 2)]);
    float L = 0;
    for (int s = 0; s < n_split; s++)
        if (pp[(int64_t)s * (lat + 2)] > -INFINITY) L += expf(pp[(int64_t)s * (lat + 2)] - M) * pp[(int64_t)s * (lat + 2) + 1];
    float *oi = o + (int64_t)(i0 + iz) * ldo + (int64_t)h * lat;
    for (int x = threadIdx.x; x < lat; x += blockDim.x) {
        float acc = 0;
        for (int s = 0; s < n_split; s++) {
            float ms = pp[(int64_t)s * (lat + 2)];
            if (ms > -INFINITY) acc += expf(ms - M) * pp[(int64_t)s * (lat + 2) + 2 + x];
        }
        oi[x] = L > 0 ? acc / L : 0.0f;
    }
}

void cu_mla_attend(eng_dev *d, const float *q_lat, int64_t ldql, const float *q_pe, int64_t ldqp, int64_t hsqp,
                   const eng_be_cache *cache, int lat, int n_heads, float scale, const eng_be_keys *keys, int n,
                   float *o, int64_t ldo)
{
    if (d->failed || n <= 0) return;
    if (lat > MAX_LAT || cache->dim - lat > MAX_ROPE || lat <= 0) {
        cu_fail(d, __FILE__, __LINE__, "mla: latent over 1024 or rope over 256 values", cudaSuccess);
        return;
    }
    int n_split = (int)cu_blocks(d->step_max_ctx > 0 ? d->step_max_ctx : 1, CH);
    size_t per_q = (size_t)n_heads * (size_t)n_split * (size_t)(lat + 2) * sizeof(float);
    int qc = (int)(CHUNK_BYTES / per_q);
    if (qc < 1) qc = 1;
    if (qc > 65535) qc = 65535;
    float *part = (float *)cu_buf_get(d, &d->att_part, (size_t)(n < qc ? n : qc) * per_q);
    if (!part) return;
    for (int i0 = 0; i0 < n; i0 += qc) {
        int m = n - i0 < qc ? n - i0 : qc;
        k_mla_split<<<dim3((unsigned)n_split, (unsigned)n_heads, (unsigned)m), 256, 0, d->stream>>>(
            q_lat, ldql, q_pe, ldqp, hsqp, *cache, lat, scale, keys, i0, n_heads, n_split, part);
        k_mla_combine<<<dim3((unsigned)n_heads, (unsigned)m), 256, 0, d->stream>>>(part, lat, n_heads, n_split, i0,
                                                                                  o, ldo);
        if (!CU_LAUNCHED(d)) return;
    }
}
