/* cu.h — internals shared by the CUDA backend's files (not a public API).
 *
 * One device, one stream: every op enqueues its kernels on d->stream in
 * call order, so ops need no events between them. Errors are sticky: the
 * first failed CUDA call or launch records "file:line: what" in d->err and
 * later ops of the step do nothing; eng_be_sync reports it (the model fails
 * that step's requests). A kernel fault leaves the context unusable (CUDA's
 * rule), so after one every later step fails too, with the same message.
 *
 * Memory: eng_be_alloc is cudaMalloc (zeroed). Weights are copied once per
 * view at start-up (eng_be_tensor_upload) into a table of host ranges
 * sorted by address; an op maps a view's host pointer to its device copy
 * with a binary search (dev_ptr). Work buffers of the ops themselves (the
 * MoE permutation, indexer scores, attention partials) grow on demand and
 * are kept: a step never allocates once sizes have been seen. */
#ifndef ENG_CUDA_CU_H
#define ENG_CUDA_CU_H

#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "../dev.h"
}

/* A weight view as kernels read it: device pointers, shapes, dtype. */
struct cu_w {
    const void *data;       /* [rows, cols] of dtype */
    const float *scale;     /* FP8: [ceil(rows/128), scale_ld]; else NULL */
    int64_t rows, cols, scale_ld;
    int dtype;              /* enum eng_dtype */
};

struct cu_range {
    uintptr_t lo, hi;       /* host [lo, hi) */
    char *dev;              /* device copy of lo */
};

/* A grow-on-demand device buffer. */
struct cu_buf {
    void *p;
    size_t cap;
};

struct eng_dev {
    int device;
    cudaStream_t stream;
    char name[256];
    char err[512];          /* first error, sticky */
    int failed;
    /* weights */
    cu_range *ranges;
    size_t n_ranges, cap_ranges;
    int ranges_sorted;
    uint64_t weight_bytes;
    /* step metadata: a pinned host staging area and its device twin */
    void *stage_host;
    size_t stage_cap;
    cu_buf stage_dev;
    cudaEvent_t staged;     /* the last staging copy has been read */
    int step_max_ctx;       /* longest key set of the step (bounds the attention grids) */
    /* op work buffers */
    cu_buf moe_perm, moe_x, moe_g, moe_u, moe_y, route_s, idx_scores, att_part;
    /* the MoE descriptor tables already on the device, by host experts pointer */
    struct cu_moe_cache { const eng_tensor *key; int n; void *dev; } *moe_cache;
    size_t n_moe_cache;
};

/* Record the first error (file:line). Returns 1 when d has failed (now or before). */
int cu_fail(eng_dev *d, const char *file, int line, const char *what, cudaError_t e);
#define CU_OK(d, call) (!(d)->failed && cu_check_((d), (call), __FILE__, __LINE__, #call))
static inline int cu_check_(eng_dev *d, cudaError_t e, const char *file, int line, const char *what)
{
    if (e == cudaSuccess) return 1;
    cu_fail(d, file, line, what, e);
    return 0;
}
/* After a kernel launch: a bad configuration shows up here, a fault at sync. */
#define CU_LAUNCHED(d) cu_check_((d), cudaGetLastError(), __FILE__, __LINE__, "kernel launch")

/* Device copy of host address p (a weight view's data or scale); NULL
 * (and d failed) when no uploaded view covers it. */
const void *cu_dev_ptr(eng_dev *d, const void *p, const char *what);
/* The view as a kernel reads it; 0 ok, -1 when not resident (d failed). */
int cu_weight(eng_dev *d, const eng_tensor *t, cu_w *out);
/* b grown to hold bytes (contents lost); NULL when d failed. */
void *cu_buf_get(eng_dev *d, cu_buf *b, size_t bytes);

static inline unsigned cu_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

/* ===== device helpers (inline in every .cu) ===== */

/* float8_e4m3fn → f32, exact. */
__device__ __forceinline__ float cu_e4m3(uint8_t v)
{
    uint32_t s = (uint32_t)(v >> 7) << 31, e = (v >> 3) & 15, m = v & 7;
    if (e == 15 && m == 7) return __int_as_float((int)(s | 0x7fc00000u));
    if (e == 0) { float r = (float)m * 0.001953125f; return s ? -r : r; }     /* m * 2^-9 */
    return __uint_as_float(s | ((e + 120u) << 23) | (m << 20));
}

__device__ __forceinline__ float cu_bf16(uint16_t v) { return __uint_as_float((uint32_t)v << 16); }

/* f32 → e4m3 byte, round to nearest even, saturating at 448: the same
 * result as the loader's eng_f32_to_fp8 (the CPU's FP8 KV cache). */
__device__ __forceinline__ uint8_t cu_to_e4m3(float f)
{
    if (isnan(f)) return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e;
    if (a == 0.0f) return sign;
    int e;
    frexpf(a, &e);
    int ex = e - 1;
    if (ex < -6) ex = -6;
    float step = ldexpf(1.0f, ex - 3);
    int mant = (int)rintf(a / step);
    if (ex == -6 && mant < 8) return sign | (uint8_t)mant;
    if (mant == 16) { mant = 8; ex++; }
    if (ex > 8) return sign | 0x7e;
    return sign | (uint8_t)(((ex + 7) << 3) | (mant - 8));
}

/* Element (r, k) of a weight view, block scale applied. */
__device__ __forceinline__ float cu_wget(const cu_w &w, int64_t r, int64_t k)
{
    int64_t i = r * w.cols + k;
    switch (w.dtype) {
    case ENG_DT_BF16: return cu_bf16(((const uint16_t *)w.data)[i]);
    case ENG_DT_F8E4M3:
        return cu_e4m3(((const uint8_t *)w.data)[i]) * w.scale[(r / ENG_FP8_BLOCK) * w.scale_ld + k / ENG_FP8_BLOCK];
    default: return ((const float *)w.data)[i];
    }
}

__device__ __forceinline__ float cu_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float cu_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide reduction (blockDim.x a multiple of 32, <= 1024) combining
 * the warps' results in warp order, so every thread gets the same value. */
struct cu_op_add { __device__ float operator()(float a, float b) const { return a + b; } };
struct cu_op_max { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };

template <class Op>
__device__ __forceinline__ float cu_block_reduce(float v, float init, Op op)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();                /* the previous reduction's readers are done with part */
    if (lane == 0) part[w] = v;
    __syncthreads();
    float t = init;
    for (int i = 0; i < nw; i++) t = op(t, part[i]);
    return t;
}

__device__ __forceinline__ float cu_block_sum(float v) { return cu_block_reduce(v, 0.0f, cu_op_add()); }
__device__ __forceinline__ float cu_block_max(float v) { return cu_block_reduce(v, -INFINITY, cu_op_max()); }

/* Cache slot of position p of key set k. */
__device__ __forceinline__ int64_t cu_slot(const eng_be_keys &k, int p)
{
    return (int64_t)k.block_table[p / k.block_size] * k.block_size + p % k.block_size;
}

/* Values [a, b) of one cache row into out (dequantized for FP8): the tile
 * layout of backend.h (values, padded to 4 bytes, then one f32 scale per
 * 128-value tile over [0, split) and over [split, dim)). */
__device__ __forceinline__ float cu_cache_val(const eng_be_cache &c, const unsigned char *row, int j)
{
    if (c.dtype != ENG_CACHE_FP8) return ((const float *)row)[j];
    int tiles_lo = (c.split + ENG_CACHE_FP8_TILE - 1) / ENG_CACHE_FP8_TILE;
    int t = j < c.split ? j / ENG_CACHE_FP8_TILE : tiles_lo + (j - c.split) / ENG_CACHE_FP8_TILE;
    const float *sc = (const float *)(row + (((size_t)c.dim + 3) & ~(size_t)3));
    return cu_e4m3(row[j]) * sc[t];
}

/* ===== op entry points by file (the ops table is in dev.cu) ===== */
/* ops.cu */
void cu_embed(eng_dev *d, const eng_tensor *emb, const int32_t *ids, int n, float *out, int64_t ldo);
void cu_rmsnorm(eng_dev *d, const eng_tensor *w, const float *x, int n, int64_t ldx, int dim, float eps,
                float *y, int64_t ldy);
void cu_layernorm(eng_dev *d, const eng_tensor *w, const eng_tensor *b, float *x, int n, int64_t ldx,
                  int dim, float eps);
void cu_rope(eng_dev *d, float *x, int n, int64_t ldx, int n_heads, int64_t hstride, int off, int dim,
             const int32_t *pos, const float *inv_freq);
void cu_silu_mul(eng_dev *d, const float *gate, int64_t ldg, const float *up, int64_t ldu, int n, int dim,
                 float *out, int64_t ldo);
void cu_add_scaled(eng_dev *d, float *y, int64_t ldy, const float *x, int64_t ldx, const float *a, int n, int dim);
void cu_gather_rows(eng_dev *d, const float *x, int64_t ldx, const int32_t *rows, int n, int dim, float *out,
                    int64_t ldo);
void cu_scatter_add_rows(eng_dev *d, float *y, int64_t ldy, const int32_t *rows, const float *a,
                         const float *x, int64_t ldx, int n, int dim);
void cu_scale(eng_dev *d, float *x, int64_t n, float a);
void cu_route_topk(eng_dev *d, const eng_be_route *r, const float *logits, int64_t ldl, const float *bias,
                   int n, int32_t *idx, float *wt);
void cu_cache_store(eng_dev *d, const eng_be_cache *c, const int64_t *slot, int n, const float *src, int64_t lds);
void cu_cache_load(eng_dev *d, const eng_be_cache *c, int64_t slot, float *out);
/* matmul.cu */
void cu_linear(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows,
               const float *x, int n, int64_t ldx, float *y, int64_t ldy);
void cu_linear_group(eng_dev *d, const eng_be_lin_out *outs, int n_outs, const float *x, int n, int64_t ldx);
void cu_linear_heads(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows, const eng_be_heads *hs,
                     const float *x, int n, int64_t ldx, float *y, int64_t ldy);
void cu_linear_t_heads(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows, const eng_be_heads *hs,
                       const float *x, int n, int64_t ldx, float *y, int64_t ldy);
void cu_moe_experts(eng_dev *d, const eng_be_moe *a, int e0, int e1);
/* attn.cu */
void cu_index_topk(eng_dev *d, const float *q, int64_t ldq, const float *w, int64_t ldw, int n_heads,
                   const eng_be_cache *cache, const eng_be_keys *keys, int n, int topk, int32_t *out, int *n_out);
void cu_keys_select(eng_dev *d, eng_be_keys *keys, int n, const int32_t *sel, int64_t ld, const int *n_sel, int topk);
void cu_mla_attend(eng_dev *d, const float *q_lat, int64_t ldql, const float *q_pe, int64_t ldqp, int64_t hsqp,
                   const eng_be_cache *cache, int lat, int n_heads, float scale, const eng_be_keys *keys, int n,
                   float *o, int64_t ldo);

#endif
