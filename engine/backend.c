/* backend.c — backend.h's public ops: each runs on the backend's device
 * when it has one (dev.h), else on the CPU (engine/cpu/). The CPU path is a
 * plain call, so the CPU backend computes exactly what it did before
 * devices existed. */
#include "cpu/cpu.h"

#include <stdio.h>
#include <string.h>

/* ===== lifetime ===== */

int eng_be_cuda_available(void) { return eng_cuda_count(); }

int eng_be_cuda_create(int n_threads, int device, eng_backend **out, char *err, size_t errlen)
{
    *out = NULL;
    const eng_dev_ops *ops;
    eng_dev *d;
    int rc = eng_cuda_open(device, &ops, &d, err, errlen);
    if (rc) return rc;
    eng_backend *be;
    /* The host side: threads for eng_be_parallel (sampling a batch). */
    if ((rc = eng_be_cpu_create(n_threads, &be, err, errlen))) { ops->free(d); return rc; }
    be->dev_ops = ops;
    be->dev = d;
    *out = be;
    return 0;
}

int eng_be_create(enum eng_be_kind kind, int n_threads, eng_backend **out, char *err, size_t errlen)
{
    if (kind == ENG_BE_CUDA || (kind == ENG_BE_AUTO && eng_cuda_count() > 0))
        return eng_be_cuda_create(n_threads, 0, out, err, errlen);
    return eng_be_cpu_create(n_threads, out, err, errlen);
}

void eng_be_free(eng_backend *be)
{
    if (!be) return;
    if (be->dev_ops) be->dev_ops->free(be->dev);
    eng_cpu_free(be);
}

enum eng_be_kind eng_be_kind_of(const eng_backend *be) { return be->dev_ops ? ENG_BE_CUDA : ENG_BE_CPU; }

const char *eng_be_describe(const eng_backend *be)
{
    eng_backend *b = (eng_backend *)be;
    if (be->dev_ops) return be->dev_ops->describe(be->dev);
    snprintf(b->name_buf, sizeof b->name_buf, "cpu (%d threads%s%s)", be->n_threads, be->avx2 ? ", avx2" : "",
             !be->compute_bf16 ? "" : be->avx512bf16 ? ", bfloat16 compute: avx512bf16" : ", bfloat16 compute: portable");
    return be->name_buf;
}

int eng_be_host_memory(const eng_backend *be) { return !be->dev_ops; }

int eng_be_set_compute(eng_backend *be, enum eng_be_compute c, char *err, size_t errlen)
{
    if (c != ENG_BE_COMPUTE_F32 && c != ENG_BE_COMPUTE_BF16)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "unknown compute dtype %d", (int)c);
    if (c == ENG_BE_COMPUTE_BF16 && be->dev_ops)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "--dtype bfloat16 runs on the cpu backend only in this "
                         "build (the device kernels compute in float32)");
    be->compute_bf16 = c == ENG_BE_COMPUTE_BF16;
    return 0;
}

/* ===== memory ===== */

void *eng_be_alloc(eng_backend *be, size_t bytes)
{
    return be->dev_ops ? be->dev_ops->alloc(be->dev, bytes) : eng_cpu_alloc(be, bytes);
}

void eng_be_dealloc(eng_backend *be, void *p)
{
    if (be->dev_ops) be->dev_ops->dealloc(be->dev, p);
    else eng_cpu_dealloc(be, p);
}

void eng_be_upload(eng_backend *be, void *dst, const void *src, size_t bytes)
{
    if (be->dev_ops) be->dev_ops->upload(be->dev, dst, src, bytes);
    else if (dst != src && bytes) memcpy(dst, src, bytes);
}

void eng_be_download(eng_backend *be, void *dst, const void *src, size_t bytes)
{
    if (be->dev_ops) be->dev_ops->download(be->dev, dst, src, bytes);
    else if (dst != src && bytes) memcpy(dst, src, bytes);
}

int eng_be_tensor_upload(eng_backend *be, const eng_tensor *t, char *err, size_t errlen)
{
    return be->dev_ops ? be->dev_ops->tensor_upload(be->dev, t, err, errlen) : 0;
}

void eng_be_mem_info(eng_backend *be, size_t *free_b, size_t *total_b)
{
    *free_b = *total_b = 0;
    if (be->dev_ops) be->dev_ops->mem_info(be->dev, free_b, total_b);
}

int eng_be_sync(eng_backend *be, char *err, size_t errlen)
{
    return be->dev_ops ? be->dev_ops->sync(be->dev, err, errlen) : 0;
}

int eng_be_step_upload(eng_backend *be, const eng_be_step *host, eng_be_step *dev, char *err, size_t errlen)
{
    if (be->dev_ops) return be->dev_ops->step_upload(be->dev, host, dev, err, errlen);
    *dev = *host;
    return 0;
}

/* ===== ops ===== */

/* Run op on the device when there is one, else its CPU twin. */
#define DISPATCH(op, ...) do {                                              \
    if (be->dev_ops) be->dev_ops->op(be->dev, __VA_ARGS__);                 \
    else eng_cpu_##op(be, __VA_ARGS__);                                     \
} while (0)

void eng_be_embed(eng_backend *be, const eng_tensor *emb, const int32_t *ids, int n, float *out, int64_t ldo)
{
    DISPATCH(embed, emb, ids, n, out, ldo);
}

void eng_be_linear(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                   const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    DISPATCH(linear, W, row0, nrows, x, n, ldx, y, ldy);
}

/* Devices compute in f32 only (eng_be_set_compute refuses bfloat16 there). */
void eng_be_linear_f32(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                       const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    if (be->dev_ops) be->dev_ops->linear(be->dev, W, row0, nrows, x, n, ldx, y, ldy);
    else eng_cpu_linear_f32(be, W, row0, nrows, x, n, ldx, y, ldy);
}

void eng_be_linear_group(eng_backend *be, const eng_be_lin_out *outs, int n_outs, const float *x, int n,
                         int64_t ldx)
{
    DISPATCH(linear_group, outs, n_outs, x, n, ldx);
}

void eng_be_linear_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                         const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    DISPATCH(linear_heads, W, row0, nrows, hs, x, n, ldx, y, ldy);
}

void eng_be_linear_t_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                           const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy)
{
    DISPATCH(linear_t_heads, W, row0, nrows, hs, x, n, ldx, y, ldy);
}

void eng_be_rmsnorm(eng_backend *be, const eng_tensor *w, const float *x, int n, int64_t ldx,
                    int dim, float eps, float *y, int64_t ldy)
{
    DISPATCH(rmsnorm, w, x, n, ldx, dim, eps, y, ldy);
}

void eng_be_layernorm(eng_backend *be, const eng_tensor *w, const eng_tensor *b, float *x, int n,
                      int64_t ldx, int dim, float eps)
{
    DISPATCH(layernorm, w, b, x, n, ldx, dim, eps);
}

void eng_be_rope(eng_backend *be, float *x, int n, int64_t ldx, int n_heads, int64_t hstride,
                 int off, int dim, const int32_t *pos, const float *inv_freq)
{
    DISPATCH(rope, x, n, ldx, n_heads, hstride, off, dim, pos, inv_freq);
}

void eng_be_silu_mul(eng_backend *be, const float *gate, int64_t ldg, const float *up, int64_t ldu,
                     int n, int dim, float *out, int64_t ldo)
{
    DISPATCH(silu_mul, gate, ldg, up, ldu, n, dim, out, ldo);
}

void eng_be_add_scaled(eng_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                       const float *a, int n, int dim)
{
    DISPATCH(add_scaled, y, ldy, x, ldx, a, n, dim);
}

void eng_be_gather_rows(eng_backend *be, const float *x, int64_t ldx, const int32_t *rows, int n,
                        int dim, float *out, int64_t ldo)
{
    DISPATCH(gather_rows, x, ldx, rows, n, dim, out, ldo);
}

void eng_be_scatter_add_rows(eng_backend *be, float *y, int64_t ldy, const int32_t *rows, const float *a,
                             const float *x, int64_t ldx, int n, int dim)
{
    DISPATCH(scatter_add_rows, y, ldy, rows, a, x, ldx, n, dim);
}

void eng_be_scale(eng_backend *be, float *x, int64_t n, float a)
{
    DISPATCH(scale, x, n, a);
}

void eng_be_route_topk(eng_backend *be, const eng_be_route *r, const float *logits, int64_t ldl,
                       const float *bias, int n, int32_t *idx, float *wt)
{
    DISPATCH(route_topk, r, logits, ldl, bias, n, idx, wt);
}

void eng_be_moe_experts(eng_backend *be, const eng_be_moe *a, int e0, int e1)
{
    DISPATCH(moe_experts, a, e0, e1);
}

void eng_be_cache_store(eng_backend *be, const eng_be_cache *c, const int64_t *slot, int n,
                        const float *src, int64_t lds)
{
    DISPATCH(cache_store, c, slot, n, src, lds);
}

void eng_be_cache_load(eng_backend *be, const eng_be_cache *c, int64_t slot, float *out)
{
    DISPATCH(cache_load, c, slot, out);
}

void eng_be_index_topk(eng_backend *be, const float *q, int64_t ldq, const float *w, int64_t ldw,
                       int n_heads, const eng_be_cache *cache, const eng_be_keys *keys, int n,
                       int topk, int32_t *out, int *n_out)
{
    DISPATCH(index_topk, q, ldq, w, ldw, n_heads, cache, keys, n, topk, out, n_out);
}

void eng_be_keys_select(eng_backend *be, eng_be_keys *keys, int n, const int32_t *sel, int64_t ld,
                        const int *n_sel, int topk)
{
    DISPATCH(keys_select, keys, n, sel, ld, n_sel, topk);
}

void eng_be_mla_attend(eng_backend *be, const float *q_lat, int64_t ldql, const float *q_pe, int64_t ldqp,
                       int64_t hsqp, const eng_be_cache *cache, int lat, int n_heads, float scale,
                       const eng_be_keys *keys, int n, float *o, int64_t ldo)
{
    DISPATCH(mla_attend, q_lat, ldql, q_pe, ldqp, hsqp, cache, lat, n_heads, scale, keys, n, o, ldo);
}

/* ===== grouped-query attention (GLM-4.5 family) ===== */

void eng_be_rope_neox(eng_backend *be, float *x, int n, int64_t ldx, int n_heads, int64_t hstride,
                      int off, int dim, const int32_t *pos, const float *inv_freq)
{
    DISPATCH(rope_neox, x, n, ldx, n_heads, hstride, off, dim, pos, inv_freq);
}

void eng_be_add_bias(eng_backend *be, float *y, int64_t ldy, const eng_tensor *b, int n, int dim)
{
    DISPATCH(add_bias, y, ldy, b, n, dim);
}

void eng_be_gqa_attend(eng_backend *be, const float *q, int64_t ldq, int n_heads, int n_kv_heads, int head_dim,
                       const eng_be_cache *kc, const eng_be_cache *vc, float scale, const eng_be_keys *keys,
                       int n, float *o, int64_t ldo)
{
    DISPATCH(gqa_attend, q, ldq, n_heads, n_kv_heads, head_dim, kc, vc, scale, keys, n, o, ldo);
}
