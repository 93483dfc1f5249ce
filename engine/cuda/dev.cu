/* dev.cu — the CUDA backend's host side: device and stream, errors, memory,
 * resident weights, the step metadata upload, and the ops table (dev.h).
 * Compile-checked in CI; see docs/engine.md for what has run on a GPU. */
#include "cu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===== errors ===== */

int cu_fail(eng_dev *d, const char *file, int line, const char *what, cudaError_t e)
{
    if (!d->failed) {
        const char *base = strrchr(file, '/');
        snprintf(d->err, sizeof d->err, "cuda: %s:%d: %s: %s", base ? base + 1 : file, line, what,
                 e == cudaSuccess ? "failed" : cudaGetErrorString(e));
        d->failed = 1;
    }
    return 1;
}

static int dev_sync(eng_dev *d, char *err, size_t errlen)
{
    if (!d->failed) CU_OK(d, cudaStreamSynchronize(d->stream));
    if (!d->failed) return 0;
    return pl_seterr(err, errlen, PL_ERR_IO, "%s", d->err);
}

/* ===== lifetime ===== */

extern "C" int eng_cuda_count(void)
{
    int n = 0;
    /* No driver, or a driver older than this runtime: no device. */
    if (cudaGetDeviceCount(&n) != cudaSuccess) { (void)cudaGetLastError(); return 0; }
    return n;
}

static void dev_free(eng_dev *d)
{
    if (!d) return;
    cudaSetDevice(d->device);
    cudaStreamSynchronize(d->stream);
    for (size_t i = 0; i < d->n_ranges; i++) cudaFree(d->ranges[i].dev);
    cu_buf *bufs[] = { &d->stage_dev, &d->moe_perm, &d->moe_x, &d->moe_g, &d->moe_u, &d->moe_y, &d->route_s,
                       &d->idx_scores, &d->att_part };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]->p);
    for (size_t i = 0; i < d->n_moe_cache; i++) cudaFree(d->moe_cache[i].dev);
    if (d->stage_host) cudaFreeHost(d->stage_host);
    if (d->staged) cudaEventDestroy(d->staged);
    if (d->stream) cudaStreamDestroy(d->stream);
    free(d->ranges);
    free(d->moe_cache);
    free(d);
}

static const char *dev_describe(eng_dev *d) { return d->name; }

/* ===== memory ===== */

static void *dev_alloc(eng_dev *d, size_t bytes)
{
    void *p = NULL;
    if (!bytes) bytes = 1;
    if (cudaMalloc(&p, bytes) != cudaSuccess) { (void)cudaGetLastError(); return NULL; }
    /* On our stream (non-blocking: it does not wait for the legacy default
     * stream), so the zeroing is ordered before every op that uses p. */
    if (cudaMemsetAsync(p, 0, bytes, d->stream) != cudaSuccess || cudaStreamSynchronize(d->stream) != cudaSuccess) {
        (void)cudaGetLastError();
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void dev_dealloc(eng_dev *d, void *p)
{
    if (!p) return;
    cudaStreamSynchronize(d->stream);     /* no op of the stream may still use it */
    cudaFree(p);
}

static void dev_upload(eng_dev *d, void *dst, const void *src, size_t bytes)
{
    if (!bytes || dst == src) return;
    CU_OK(d, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, d->stream)) &&
        CU_OK(d, cudaStreamSynchronize(d->stream));   /* src may be reused as soon as we return */
}

static void dev_download(eng_dev *d, void *dst, const void *src, size_t bytes)
{
    if (!bytes || dst == src) return;
    CU_OK(d, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, d->stream)) &&
        CU_OK(d, cudaStreamSynchronize(d->stream));
}

static void dev_mem_info(eng_dev *d, size_t *free_b, size_t *total_b)
{
    if (cudaMemGetInfo(free_b, total_b) != cudaSuccess) { (void)cudaGetLastError(); *free_b = *total_b = 0; }
}

void *cu_buf_get(eng_dev *d, cu_buf *b, size_t bytes)
{
    if (d->failed) return NULL;
    if (bytes <= b->cap && b->p) return b->p;
    size_t cap = bytes + bytes / 2 + 4096;
    if (b->p) { CU_OK(d, cudaStreamSynchronize(d->stream)); cudaFree(b->p); b->p = NULL; b->cap = 0; }
    if (!CU_OK(d, cudaMalloc(&b->p, cap))) return NULL;
    b->cap = cap;
    return b->p;
}

/* ===== resident weights ===== */

static int range_cmp(const void *a, const void *b)
{
    uintptr_t x = ((const cu_range *)a)->lo, y = ((const cu_range *)b)->lo;
    return (x > y) - (x < y);
}

/* Sorted by host address once the uploads are done (at the first lookup
 * after them: O(n log n) for a whole model, not per upload). A range inside
 * another (a view handed twice, a tied embedding) then drops its own copy
 * for the outer one's; ranges that partly overlap would have two copies of
 * the shared bytes, which is refused (the device fails, naming them). */
static void ranges_sort(eng_dev *d)
{
    if (d->ranges_sorted) return;
    qsort(d->ranges, d->n_ranges, sizeof *d->ranges, range_cmp);
    size_t k = 0;
    for (size_t i = 0; i < d->n_ranges; i++) {
        cu_range *r = &d->ranges[i];
        if (k && r->lo < d->ranges[k - 1].hi) {
            if (r->hi <= d->ranges[k - 1].hi) {         /* inside the previous one */
                cudaFree(r->dev);
                d->weight_bytes -= r->hi - r->lo;
                continue;
            }
            if (!d->failed) {
                snprintf(d->err, sizeof d->err, "cuda: two weight views partly overlap (host bytes %#lx..%#lx)",
                         (unsigned long)r->lo, (unsigned long)d->ranges[k - 1].hi);
                d->failed = 1;
            }
        }
        d->ranges[k++] = *r;
    }
    d->n_ranges = k;
    d->ranges_sorted = 1;
}

/* The range holding host address p, or NULL. */
static cu_range *range_find(eng_dev *d, uintptr_t p)
{
    ranges_sort(d);
    size_t lo = 0, hi = d->n_ranges;
    while (lo < hi) {                       /* first range with lo > p */
        size_t mid = (lo + hi) / 2;
        if (d->ranges[mid].lo <= p) lo = mid + 1; else hi = mid;
    }
    if (!lo) return NULL;
    cu_range *r = &d->ranges[lo - 1];
    return p < r->hi ? r : NULL;
}

const void *cu_dev_ptr(eng_dev *d, const void *p, const char *what)
{
    if (!p) return NULL;
    cu_range *r = range_find(d, (uintptr_t)p);
    if (r) return r->dev + ((uintptr_t)p - r->lo);
    if (!d->failed) {
        snprintf(d->err, sizeof d->err, "cuda: weight %s is not resident on the device", what ? what : "?");
        d->failed = 1;
    }
    return NULL;
}

/* Copy host bytes [p, p + n) to the device (duplicates are folded by
 * ranges_sort). The last range is checked for the common repeat: the same
 * view handed again. */
static int upload_range(eng_dev *d, const void *p, size_t n, const char *name, char *err, size_t errlen)
{
    uintptr_t lo = (uintptr_t)p, hi = lo + n;
    if (d->n_ranges && d->ranges[d->n_ranges - 1].lo <= lo && hi <= d->ranges[d->n_ranges - 1].hi) return 0;
    if (d->n_ranges == d->cap_ranges) {
        size_t cap = d->cap_ranges ? 2 * d->cap_ranges : 1024;
        cu_range *nr = (cu_range *)realloc(d->ranges, cap * sizeof *nr);
        if (!nr) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
        d->ranges = nr;
        d->cap_ranges = cap;
    }
    char *dev = NULL;
    cudaError_t e = cudaMalloc((void **)&dev, n ? n : 1);
    /* A pageable-memory copy may return before its DMA lands: wait for it,
     * since the ops run on a stream that does not wait for this one. */
    if (e == cudaSuccess) e = cudaMemcpy(dev, p, n, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (dev) cudaFree(dev);
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return pl_seterr(err, errlen, e == cudaErrorMemoryAllocation ? PL_ERR_NOMEM : PL_ERR_INTERNAL,
                         "cuda: uploading %s (%zu bytes, %.1f GiB resident, %.1f GiB free): %s", name, n,
                         (double)d->weight_bytes / (1 << 30), (double)fr / (1 << 30), cudaGetErrorString(e));
    }
    d->ranges[d->n_ranges++] = cu_range{ lo, hi, dev };
    d->ranges_sorted = 0;
    d->weight_bytes += n;
    return 0;
}

static int dev_tensor_upload(eng_dev *d, const eng_tensor *t, char *err, size_t errlen)
{
    if (!t->data) return 0;
    size_t bytes = (size_t)t->rows * (size_t)t->cols * eng_dtype_size(t->dtype);
    int rc = upload_range(d, t->data, bytes, t->name, err, errlen);
    if (!rc && t->scale) {
        size_t sb = (size_t)((t->rows + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK) * (size_t)t->scale_ld * sizeof(float);
        rc = upload_range(d, t->scale, sb, t->name, err, errlen);
    }
    return rc;
}

int cu_weight(eng_dev *d, const eng_tensor *t, cu_w *out)
{
    out->data = cu_dev_ptr(d, t->data, t->name);
    out->scale = t->scale ? (const float *)cu_dev_ptr(d, t->scale, t->name) : NULL;
    out->rows = t->rows;
    out->cols = t->cols;
    out->scale_ld = t->scale_ld;
    out->dtype = (int)t->dtype;
    if (!out->data || (t->scale && !out->scale)) return -1;
    if (t->dtype == ENG_DT_F8E4M3 && !t->scale) {
        cu_fail(d, __FILE__, __LINE__, "FP8 weight without block scales", cudaSuccess);
        return -1;
    }
    return 0;
}

/* ===== step metadata ===== */

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Pack ids, pos, slot, keys, block tables, lrows into the pinned staging
 * area with the key sets' block_table pointers rebased onto the device
 * copy, then one host→device copy. */
static int dev_step_upload(eng_dev *d, const eng_be_step *h, eng_be_step *o, char *err, size_t errlen)
{
    size_t n = (size_t)h->n;
    size_t off_ids = 0, off_pos = align16(off_ids + 4 * n), off_slot = align16(off_pos + 4 * n);
    size_t off_keys = align16(off_slot + 8 * n), off_bt = align16(off_keys + n * sizeof(eng_be_keys));
    size_t off_lr = align16(off_bt + 4 * (size_t)h->n_block_ints), total = align16(off_lr + 4 * (size_t)h->n_lrows);
    if (d->failed) return pl_seterr(err, errlen, PL_ERR_IO, "%s", d->err);
    /* The previous step's copy must be done before the staging area is rewritten. */
    if (d->staged && !CU_OK(d, cudaEventSynchronize(d->staged))) return dev_sync(d, err, errlen);
    if (total > d->stage_cap) {
        if (d->stage_host) cudaFreeHost(d->stage_host);
        d->stage_host = NULL;
        d->stage_cap = 0;
        size_t cap = total + total / 2 + 4096;
        if (!CU_OK(d, cudaMallocHost(&d->stage_host, cap))) return dev_sync(d, err, errlen);
        d->stage_cap = cap;
    }
    char *dev = (char *)cu_buf_get(d, &d->stage_dev, total);
    if (!dev) return dev_sync(d, err, errlen);
    char *st = (char *)d->stage_host;
    memcpy(st + off_ids, h->ids, 4 * n);
    memcpy(st + off_pos, h->pos, 4 * n);
    memcpy(st + off_slot, h->slot, 8 * n);
    memcpy(st + off_bt, h->block_tables, 4 * (size_t)h->n_block_ints);
    memcpy(st + off_lr, h->lrows, 4 * (size_t)h->n_lrows);
    eng_be_keys *k = (eng_be_keys *)(st + off_keys);
    const int32_t *dbt = (const int32_t *)(dev + off_bt);
    d->step_max_ctx = 0;
    for (size_t i = 0; i < n; i++) {
        if (h->keys[i].n_ctx > d->step_max_ctx) d->step_max_ctx = h->keys[i].n_ctx;
        k[i] = h->keys[i];
        k[i].block_table = dbt + (h->keys[i].block_table - h->block_tables);
        k[i].sel = NULL;                    /* set on the device by keys_select */
        k[i].n_sel = 0;
    }
    if (!CU_OK(d, cudaMemcpyAsync(dev, st, total, cudaMemcpyHostToDevice, d->stream)) ||
        !CU_OK(d, cudaEventRecord(d->staged, d->stream)))
        return dev_sync(d, err, errlen);
    *o = *h;
    o->ids = (const int32_t *)(dev + off_ids);
    o->pos = (const int32_t *)(dev + off_pos);
    o->slot = (const int64_t *)(dev + off_slot);
    o->keys = (eng_be_keys *)(dev + off_keys);
    o->block_tables = dbt;
    o->lrows = (const int32_t *)(dev + off_lr);
    return 0;
}

/* ===== ops table ===== */

static const eng_dev_ops k_ops = {
    dev_free, dev_describe, dev_alloc, dev_dealloc, dev_upload, dev_download, dev_tensor_upload, dev_mem_info,
    dev_sync, dev_step_upload,
    cu_embed, cu_linear, cu_linear_group, cu_linear_heads, cu_linear_t_heads, cu_rmsnorm, cu_layernorm, cu_rope,
    cu_silu_mul, cu_add_scaled, cu_gather_rows, cu_scatter_add_rows, cu_scale, cu_route_topk, cu_moe_experts, cu_cache_store,
    cu_cache_load, cu_index_topk, cu_keys_select, cu_mla_attend,
    nullptr, nullptr, nullptr,      /* GQA ops: no kernels yet (eng_model_open refuses GQA models here) */
};

extern "C" int eng_cuda_open(int device, const eng_dev_ops **ops, eng_dev **out, char *err, size_t errlen)
{
    *ops = NULL;
    *out = NULL;
    int n = eng_cuda_count();
    if (n <= 0) return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "no CUDA device (or no driver) on this machine");
    if (device < 0 || device >= n)
        return pl_seterr(err, errlen, PL_ERR_RANGE, "CUDA device %d does not exist (%d present)", device, n);
    eng_dev *d = (eng_dev *)calloc(1, sizeof *d);
    if (!d) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    d->device = device;
    cudaDeviceProp p;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&p, device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&d->staged, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        dev_free(d);
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "cuda device %d: %s", device, cudaGetErrorString(e));
    }
    snprintf(d->name, sizeof d->name, "cuda:%d %.200s (sm_%d%d, %.0f GiB)", device, p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1 << 30));
    if (p.major < 9) {
        /* The build carries sm_90a code and compute_90 PTX: older cards cannot run either. */
        dev_free(d);
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%s: this build needs compute capability 9.0 or newer",
                         d->name);
    }
    *ops = &k_ops;
    *out = d;
    return 0;
}
