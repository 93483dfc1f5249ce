/* backend.h — the narrow set of operations the GLM-5 graph needs.
 *
 * model.c calls only these; engine/cpu/ implements them now, a CUDA backend
 * later. Nothing here knows about requests, sequences or scheduling: ops see
 * rows of activations, weight views (eng_tensor) and, for attention, the
 * cache rows each query token may read.
 *
 * Conventions: activations are f32, row-major, with explicit leading
 * dimensions (ld*) so ops can read/write column slices (one head of a
 * [tokens, heads*dim] buffer). Weights are eng_tensor views (BF16, F32 or
 * FP8 E4M3 with 128x128 block scales, dequantized on the fly). Buffers an op
 * touches come from eng_be_alloc (device memory on a GPU backend).
 *
 * Batch invariance: every op computes each token row with the same
 * arithmetic whatever the number of rows in the call, so a request gets the
 * same logits alone or inside a batch. */
#ifndef ENG_BACKEND_H
#define ENG_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "loader.h"

typedef struct eng_backend eng_backend;

/* n_threads <= 0: one per online CPU. */
int  eng_be_cpu_create(int n_threads, eng_backend **out, char *err, size_t errlen);
void eng_be_free(eng_backend *be);
int  eng_be_threads(const eng_backend *be);

/* Compute dtype of the linear products (glm-engine --dtype; docs/engine.md
 * "Compute dtype"). F32 (the default, --dtype auto/float32): activations
 * stay f32, every product is f32 (goldens at 1e-4). BF16 (--dtype
 * bfloat16): linears over BF16 and FP8 weights round each activation row
 * to BF16 (nearest even) and accumulate in f32, with vdpbf16ps where the
 * CPU has AVX512-BF16; attention, norms, the router, softmax and sampling
 * stay f32. Set before the first op. PL_ERR_UNSUPPORTED on device backends
 * (they compute in f32 only so far). */
enum eng_be_compute { ENG_BE_COMPUTE_F32 = 0, ENG_BE_COMPUTE_BF16 = 1 };
int  eng_be_set_compute(eng_backend *be, enum eng_be_compute c, char *err, size_t errlen);

/* ===== device backends (engine/cuda; docs/engine.md "Backends") =====
 *
 * A device backend is the CPU backend's host side (its threads serve
 * eng_be_parallel) plus a device that runs every op below. Its buffers
 * (eng_be_alloc) are device memory: the host reaches them only through
 * eng_be_upload/download. Weights stay host views (eng_tensor); the device
 * holds a copy of each tensor handed to eng_be_tensor_upload and ops find it
 * by the view's host address. The CUDA runtime is linked statically and
 * probed at run time, so a binary built with CUDA runs on a machine without
 * a driver (eng_be_cuda_available() == 0 there). */
enum eng_be_kind { ENG_BE_CPU = 0, ENG_BE_CUDA = 1, ENG_BE_AUTO = 2 };

/* Number of usable CUDA devices; 0 when built without CUDA or without a driver. */
int  eng_be_cuda_available(void);
/* CUDA device `device` with n_threads host threads. PL_ERR_UNSUPPORTED when
 * this build has no CUDA or no device is usable. */
int  eng_be_cuda_create(int n_threads, int device, eng_backend **out, char *err, size_t errlen);
/* kind ENG_BE_AUTO: CUDA when a device is present, else the CPU. */
int  eng_be_create(enum eng_be_kind kind, int n_threads, eng_backend **out, char *err, size_t errlen);
enum eng_be_kind eng_be_kind_of(const eng_backend *be);
const char *eng_be_describe(const eng_backend *be);   /* "cpu (8 threads)", "cuda:0 NVIDIA H200 ..." */
/* 1 when eng_be_alloc memory is host memory the caller may read and write
 * directly (the CPU backend): the model then skips staging copies. */
int  eng_be_host_memory(const eng_backend *be);
/* Copies between host memory and eng_be_alloc memory (memcpy on the CPU;
 * a no-op when dst == src). They order with the ops: a download returns
 * after every op before it has finished. */
void eng_be_upload(eng_backend *be, void *dst, const void *src, size_t bytes);
void eng_be_download(eng_backend *be, void *dst, const void *src, size_t bytes);
/* Make t's data (and FP8 scales) resident on the device (no-op on the
 * CPU). Views may share storage only if their byte ranges do not overlap. */
int  eng_be_tensor_upload(eng_backend *be, const eng_tensor *t, char *err, size_t errlen);
/* (free, total) device bytes; the CPU reports 0, 0. */
void eng_be_mem_info(eng_backend *be, size_t *free_b, size_t *total_b);
/* Wait for the device and report the first error since the last call
 * (file:line of the failed call in err); 0 on the CPU. */
int  eng_be_sync(eng_backend *be, char *err, size_t errlen);

/* fn(ctx, task, thread) for every task in [0, n_tasks) on the backend's
 * worker threads (thread < eng_be_threads), returning when all are done:
 * host work outside the model that splits by sequence (sampling a batch).
 * Not reentrant: never from inside another backend op. */
typedef void (*eng_be_task)(void *ctx, int task, int thread);
void eng_be_parallel(eng_backend *be, eng_be_task fn, void *ctx, int n_tasks);

/* 64-byte aligned, zeroed; NULL when out of memory. */
void *eng_be_alloc(eng_backend *be, size_t bytes);
void  eng_be_dealloc(eng_backend *be, void *p);

/* ===== dense ops ===== */

/* out[i] = f32(emb row ids[i]); ids were range-checked by the caller. */
void eng_be_embed(eng_backend *be, const eng_tensor *emb, const int32_t *ids, int n, float *out, int64_t ldo);

/* y[i][r] = sum_k W[row0 + r][k] * x[i][k]   (r < nrows, k < W->cols).
 * The compute dtype (eng_be_set_compute) decides the activations'
 * precision for BF16 and FP8 weights; F32 weights always multiply f32. */
void eng_be_linear(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                   const float *x, int n, int64_t ldx, float *y, int64_t ldy);
/* eng_be_linear with f32 activations whatever the compute dtype: the MoE
 * router, whose top-k must not move with the activations' rounding. */
void eng_be_linear_f32(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                       const float *x, int n, int64_t ldx, float *y, int64_t ldy);

/* Several products of one input x in one call: output j is
 * y_j[i][r] = sum_k W_j[row0_j + r][k] * x[i][k]  (r < nrows_j, every W_j
 * as wide as x), bit for bit what eng_be_linear gives for each (every output
 * element keeps its kernel and reduction order). The CPU splits the rows of
 * all of them over its threads in one pool run: one barrier instead of one
 * per weight (q_a + kv_a + the indexer's wk and weights_proj, router + shared
 * gate/up, GQA q/k/v), which at batch 1 is where the worker pool spent a
 * tenth of a decode step waiting. At most ENG_BE_LIN_GROUP_MAX outputs. */
#define ENG_BE_LIN_GROUP_MAX 8
typedef struct eng_be_lin_out {
    const eng_tensor *W;
    int64_t row0, nrows;
    float *y;                   /* [n, ldy] */
    int64_t ldy;
    int f32;                    /* 1: f32 activations whatever the compute dtype (eng_be_linear_f32: the router) */
} eng_be_lin_out;
void eng_be_linear_group(eng_backend *be, const eng_be_lin_out *outs, int n_outs, const float *x, int n,
                         int64_t ldx);

/* The same product for n_heads row blocks of one weight in one call (the
 * absorbed MLA's per-head slices of kv_b_proj): head h uses rows
 * row0 + h*hs->w .. +nrows, reads x + h*hs->x and writes y + h*hs->y. */
typedef struct eng_be_heads { int n; int64_t w, x, y; } eng_be_heads;
void eng_be_linear_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                         const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy);

/* Transposed, per head: y[i][c] = sum_r W[row0 + h*hs->w + r][c] * x[i][h*hs->x + r]
 * into y[i][h*hs->y + c]  (r < nrows, c < W->cols). The absorbed-MLA query:
 * q_lat[h] = W_UK[h]^T q_nope[h]. */
void eng_be_linear_t_heads(eng_backend *be, const eng_tensor *W, int64_t row0, int64_t nrows,
                           const eng_be_heads *hs, const float *x, int n, int64_t ldx, float *y, int64_t ldy);

/* RMSNorm over dim columns: y = w * (x * rsqrt(mean(x^2) + eps)); y may alias x. */
void eng_be_rmsnorm(eng_backend *be, const eng_tensor *w, const float *x, int n, int64_t ldx,
                    int dim, float eps, float *y, int64_t ldy);

/* LayerNorm with bias over dim columns, in place. */
void eng_be_layernorm(eng_backend *be, const eng_tensor *w, const eng_tensor *b, float *x, int n,
                      int64_t ldx, int dim, float eps);

/* Interleaved (GPT-J) RoPE in place: for token i, head h, the pairs
 * (2j, 2j+1) of x[i*ldx + h*hstride + off ...] rotate by pos[i]*inv_freq[j],
 * j < dim/2. */
void eng_be_rope(eng_backend *be, float *x, int n, int64_t ldx, int n_heads, int64_t hstride,
                 int off, int dim, const int32_t *pos, const float *inv_freq);

/* NeoX (rotate-half) RoPE in place, as transformers' apply_rotary_pos_emb
 * for GQA models: for token i, head h, with p = x + i*ldx + h*hstride + off,
 * the pairs (p[j], p[j + dim/2]) rotate by pos[i]*inv_freq[j], j < dim/2;
 * values past dim (partial rotary) are untouched. */
void eng_be_rope_neox(eng_backend *be, float *x, int n, int64_t ldx, int n_heads, int64_t hstride,
                      int off, int dim, const int32_t *pos, const float *inv_freq);

/* y[i][j] += b[j]  (j < dim; b a 1-D weight view: a projection's bias) */
void eng_be_add_bias(eng_backend *be, float *y, int64_t ldy, const eng_tensor *b, int n, int dim);

/* out[i][j] = silu(gate[i][j]) * up[i][j]   (j < dim) */
void eng_be_silu_mul(eng_backend *be, const float *gate, int64_t ldg, const float *up, int64_t ldu,
                     int n, int dim, float *out, int64_t ldo);

/* y[i][j] += a[i] * x[i][j]  (a NULL: 1) */
void eng_be_add_scaled(eng_backend *be, float *y, int64_t ldy, const float *x, int64_t ldx,
                       const float *a, int n, int dim);

/* Row gather/scatter for MoE: out[i] = x[rows[i]];  y[rows[i]] += a[i] * x[i]. */
void eng_be_gather_rows(eng_backend *be, const float *x, int64_t ldx, const int32_t *rows, int n,
                        int dim, float *out, int64_t ldo);
void eng_be_scatter_add_rows(eng_backend *be, float *y, int64_t ldy, const int32_t *rows, const float *a,
                             const float *x, int64_t ldx, int n, int dim);

/* x[i] *= a for i < n (n values of one buffer). */
void eng_be_scale(eng_backend *be, float *x, int64_t n, float a);

/* ===== routing ===== */

typedef struct eng_be_route {
    int n_experts, top_k, n_group, topk_group, norm_topk_prob;
    float routed_scaling;
} eng_be_route;

/* GLM-5 router per token: fp32 logits z (already computed), s = sigmoid(z),
 * choose with s + bias (group-limited: groups ranked by the sum of their
 * top-2, dropped groups masked to -inf), weights from unbiased s,
 * renormalised, times routed_scaling. idx/wt: [n, top_k], ascending expert id. */
void eng_be_route_topk(eng_backend *be, const eng_be_route *r, const float *logits, int64_t ldl,
                       const float *bias, int n, int32_t *idx, float *wt);

/* MoE over the routed tokens of experts [e0, e1) (expert parallelism runs
 * a rank's range; one process runs [0, n_experts)): out[i] = sum over k of
 * wt[i][k] * expert_{idx[i][k]}(x[i]) for the idx[i][k] in range, added in
 * ascending k (= ascending expert id), starting from 0. An expert is
 * down(silu(gate x) * up x). Tokens routed to no expert of the range get 0.
 * The work buffers are the CPU backend's (one expert's tokens at a time);
 * a device backend permutes tokens into per-expert segments on the device
 * in buffers of its own. */
typedef struct eng_be_moe {
    const eng_tensor *experts;  /* [n_experts * ENG_EXP_COUNT] views */
    int n_experts, top_k, hidden, inter;
    int n;                      /* tokens */
    const float *x;             /* [n, hidden] */
    const int32_t *idx;         /* [n, top_k] ascending per token (eng_be_route_topk) */
    const float *wt;            /* [n, top_k] */
    float *out;                 /* [n, hidden] */
    /* CPU work buffers, [cap, ...] from eng_be_alloc */
    int32_t *rows;              /* [cap] */
    float *rwt;                 /* [cap] */
    float *xg, *y;              /* [cap, hidden] */
    float *gate, *up, *act;     /* [cap, inter] */
    /* Rows the work buffers hold (>= n). When n * top_k <= cap and n is
     * small (decode, verification) the CPU runs all the routed experts in
     * two pool runs, one row per token slot (cpu/moe.c); 0: one expert at
     * a time (needs only n rows). */
    int cap;
    /* The shared expert, or NULL: [ENG_EXP_COUNT] views (gate, up: [sh_inter
     * <= inter, hidden]; down: [hidden, sh_inter]) run over all n tokens and
     * added to out after the routed experts, unscaled: the bits of separate
     * linear / silu_mul / add_scaled ops after this one. The CPU runs it in
     * the routed experts' pool runs (one barrier, the SiLU and the add
     * fewer, its compute beside their memory-bound reads); the work buffers
     * then need n rows more (the few-token path: cap >= n * (top_k + 1)).
     * CPU backend only: on a device backend it must be NULL (the model runs
     * the shared expert as those separate ops there). */
    const eng_tensor *shared;
} eng_be_moe;
void eng_be_moe_experts(eng_backend *be, const eng_be_moe *a, int e0, int e1);

/* ===== paged cache and attention ===== */

/* Where the cache rows a query token may read live. Position p is row
 * block_table[p / block_size] * block_size + p % block_size of the layer's
 * cache. Keys: positions [0, n_ctx), or only sel[0..n_sel) when sel != NULL
 * (already restricted to positions < n_ctx). */
typedef struct eng_be_keys {
    const int32_t *block_table;
    int block_size;
    int n_ctx;
    const int32_t *sel;
    int n_sel;
} eng_be_keys;

/* One layer's cache rows (a paged pool: row r = slot r). A row holds dim
 * values, stored as
 *  - ENG_CACHE_F32: dim floats;
 *  - ENG_CACHE_FP8: dim e4m3 bytes (float8_e4m3fn, padded to 4 bytes), then
 *    one f32 scale per tile: tiles of ENG_CACHE_FP8_TILE values over
 *    [0, split) and, separately, over [split, dim) (the MLA row tiles its
 *    latent and its RoPE key apart: different ranges). value = e4m3 * scale,
 *    scale = the tile's max |x| / 448, set when the row is written: each row
 *    is self-contained (dynamic, per token), so rows written at any time,
 *    shared or cached, decode alone.
 * Ops store f32 rows in and read f32 values out; the format is the
 * backend's business (a GPU backend may keep its own layout behind the same
 * size). */
enum eng_cache_dtype { ENG_CACHE_F32 = 0, ENG_CACHE_FP8 = 1 };
#define ENG_CACHE_FP8_TILE 128

typedef struct eng_be_cache {
    void  *data;                /* [rows, row_bytes] from eng_be_alloc */
    enum eng_cache_dtype dtype;
    int    dim;                 /* values per row */
    int    split;               /* FP8 tiling restarts here (0 < split <= dim) */
    size_t row_bytes;
    /* > 0 (with split == dim, dim a multiple): FP8 tiling restarts every head
     * values instead (GQA K/V rows: no tile spans two KV heads, so a
     * tensor-parallel rank's rows of its own heads quantize exactly as those
     * heads do in the whole row). 0: the two ranges above. CPU backend only
     * (GQA runs on the CPU). */
    int    head;
} eng_be_cache;

size_t eng_be_cache_row_bytes(enum eng_cache_dtype dt, int dim, int split);
size_t eng_be_cache_row_bytes_heads(enum eng_cache_dtype dt, int dim, int head);

/* Row slot[i] = src[i][0..dim) for each i (quantized for FP8). */
void eng_be_cache_store(eng_backend *be, const eng_be_cache *c, const int64_t *slot, int n,
                        const float *src, int64_t lds);
/* out[0..dim) = the values of row slot (dequantized for FP8). */
void eng_be_cache_load(eng_backend *be, const eng_be_cache *c, int64_t slot, float *out);

/* DSA lightning indexer: for query i, score every key position t < n_ctx:
 * I(t) = sum_h w[i][h] * relu(q[i][h] . k_t), k_t from the indexer cache
 * (rows of dim). Writes the min(topk, n_ctx) best positions to
 * out[i*topk ...] (ascending position order) and their count to n_out[i]. */
void eng_be_index_topk(eng_backend *be, const float *q, int64_t ldq, const float *w, int64_t ldw,
                       int n_heads, const eng_be_cache *cache, const eng_be_keys *keys, int n,
                       int topk, int32_t *out, int *n_out);

/* Point key set i at its indexer selection once its context outgrows it:
 * keys[i].sel = sel + i*ld and n_sel = n_sel_i[i] when keys[i].n_ctx > topk,
 * else sel = NULL (dense causal). keys live in step memory (below). */
void eng_be_keys_select(eng_backend *be, eng_be_keys *keys, int n, const int32_t *sel, int64_t ld,
                        const int *n_sel, int topk);

/* ===== step metadata =====
 * What a step's ops read besides activations, built on the host once per
 * step and uploaded in one copy: token ids, positions, cache slots, key sets
 * (their block_table pointers point into block_tables) and the rows whose
 * logits are wanted. eng_be_step_upload returns in *dev the same arrays as
 * the ops must see them: on the CPU the host arrays themselves, on a device
 * backend copies in its own memory (valid until the next upload) with every
 * block_table rebased. The host arrays may be reused once it returns. */
typedef struct eng_be_step {
    int n;                          /* tokens */
    const int32_t *ids, *pos;       /* [n] */
    const int64_t *slot;            /* [n] */
    eng_be_keys *keys;              /* [n] */
    const int32_t *block_tables;    /* every sequence's table, packed */
    int n_block_ints;
    const int32_t *lrows;           /* [n_lrows] */
    int n_lrows;
} eng_be_step;
int eng_be_step_upload(eng_backend *be, const eng_be_step *host, eng_be_step *dev, char *err, size_t errlen);

/* Absorbed MLA (MQA over the latent cache). Cache rows are [c (lat) | k_pe (rope)],
 * cache->dim = lat + rope.
 * For query i, head h: s_t = scale * (q_lat[i][h] . c_t + q_pe[i][h] . kpe_t) over the
 * keys of keys[i]; p = softmax(s); o[i][h] = sum_t p_t c_t. Head h of q_lat
 * starts at h*lat; of q_pe at h*hsqp (q_pe may sit inside the full q rows). */
void eng_be_mla_attend(eng_backend *be, const float *q_lat, int64_t ldql, const float *q_pe, int64_t ldqp,
                       int64_t hsqp, const eng_be_cache *cache, int lat, int n_heads, float scale,
                       const eng_be_keys *keys, int n, float *o, int64_t ldo);

/* Grouped-query attention over paged K and V rows (kc, vc: rows of
 * n_kv_heads * head_dim, the layout of eng_kv_layer_k/v). Query i's head h
 * (q + i*ldq + h*head_dim) reads KV head g = h / (n_heads / n_kv_heads):
 * s_t = scale * q[h] . K_t[g] over the keys of keys[i]; p = softmax(s);
 * o[i][h] = sum_t p_t V_t[g]  (o + i*ldo + h*head_dim). */
void eng_be_gqa_attend(eng_backend *be, const float *q, int64_t ldq, int n_heads, int n_kv_heads, int head_dim,
                       const eng_be_cache *kc, const eng_be_cache *vc, float scale, const eng_be_keys *keys,
                       int n, float *o, int64_t ldo);

#endif
