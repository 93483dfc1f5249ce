/* dev.h — how a device backend plugs under backend.h (internal to the
 * engine's backends: model.c never includes it).
 *
 * The public eng_be_* functions (backend.c) run an op on the device when the
 * backend has one (be->dev_ops != NULL), else on the CPU (engine/cpu/). A
 * device implements every op of this table with the signature of its
 * backend.h twin, its own context first. Pointers an op receives are device
 * memory (eng_be_alloc), except eng_tensor views, which stay host views the
 * device maps to its copies (eng_be_tensor_upload). */
#ifndef ENG_DEV_H
#define ENG_DEV_H

#include "backend.h"

typedef struct eng_dev eng_dev;

typedef struct eng_dev_ops {
    void (*free)(eng_dev *d);
    const char *(*describe)(eng_dev *d);
    void *(*alloc)(eng_dev *d, size_t bytes);
    void (*dealloc)(eng_dev *d, void *p);
    void (*upload)(eng_dev *d, void *dst, const void *src, size_t bytes);
    void (*download)(eng_dev *d, void *dst, const void *src, size_t bytes);
    int  (*tensor_upload)(eng_dev *d, const eng_tensor *t, char *err, size_t errlen);
    void (*mem_info)(eng_dev *d, size_t *free_b, size_t *total_b);
    int  (*sync)(eng_dev *d, char *err, size_t errlen);
    int  (*step_upload)(eng_dev *d, const eng_be_step *host, eng_be_step *dev, char *err, size_t errlen);

    void (*embed)(eng_dev *d, const eng_tensor *emb, const int32_t *ids, int n, float *out, int64_t ldo);
    void (*linear)(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows,
                   const float *x, int n, int64_t ldx, float *y, int64_t ldy);
    void (*linear_group)(eng_dev *d, const eng_be_lin_out *outs, int n_outs, const float *x, int n, int64_t ldx);
    void (*linear_heads)(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows, const eng_be_heads *hs,
                         const float *x, int n, int64_t ldx, float *y, int64_t ldy);
    void (*linear_t_heads)(eng_dev *d, const eng_tensor *W, int64_t row0, int64_t nrows, const eng_be_heads *hs,
                           const float *x, int n, int64_t ldx, float *y, int64_t ldy);
    void (*rmsnorm)(eng_dev *d, const eng_tensor *w, const float *x, int n, int64_t ldx, int dim, float eps,
                    float *y, int64_t ldy);
    void (*layernorm)(eng_dev *d, const eng_tensor *w, const eng_tensor *b, float *x, int n, int64_t ldx,
                      int dim, float eps);
    void (*rope)(eng_dev *d, float *x, int n, int64_t ldx, int n_heads, int64_t hstride, int off, int dim,
                 const int32_t *pos, const float *inv_freq);
    void (*silu_mul)(eng_dev *d, const float *gate, int64_t ldg, const float *up, int64_t ldu, int n, int dim,
                     float *out, int64_t ldo);
    void (*add_scaled)(eng_dev *d, float *y, int64_t ldy, const float *x, int64_t ldx, const float *a, int n,
                       int dim);
    void (*gather_rows)(eng_dev *d, const float *x, int64_t ldx, const int32_t *rows, int n, int dim, float *out,
                        int64_t ldo);
    void (*scatter_add_rows)(eng_dev *d, float *y, int64_t ldy, const int32_t *rows, const float *a,
                             const float *x, int64_t ldx, int n, int dim);
    void (*scale)(eng_dev *d, float *x, int64_t n, float a);
    void (*route_topk)(eng_dev *d, const eng_be_route *r, const float *logits, int64_t ldl, const float *bias,
                       int n, int32_t *idx, float *wt);
    void (*moe_experts)(eng_dev *d, const eng_be_moe *a, int e0, int e1);
    void (*cache_store)(eng_dev *d, const eng_be_cache *c, const int64_t *slot, int n, const float *src,
                        int64_t lds);
    void (*cache_load)(eng_dev *d, const eng_be_cache *c, int64_t slot, float *out);
    void (*index_topk)(eng_dev *d, const float *q, int64_t ldq, const float *w, int64_t ldw, int n_heads,
                       const eng_be_cache *cache, const eng_be_keys *keys, int n, int topk, int32_t *out,
                       int *n_out);
    void (*keys_select)(eng_dev *d, eng_be_keys *keys, int n, const int32_t *sel, int64_t ld, const int *n_sel,
                        int topk);
    void (*mla_attend)(eng_dev *d, const float *q_lat, int64_t ldql, const float *q_pe, int64_t ldqp,
                       int64_t hsqp, const eng_be_cache *cache, int lat, int n_heads, float scale,
                       const eng_be_keys *keys, int n, float *o, int64_t ldo);
    /* GQA (GLM-4.5 family): no device implements these yet (NULL in the
     * CUDA table); eng_model_open refuses GQA models on a device backend. */
    void (*rope_neox)(eng_dev *d, float *x, int n, int64_t ldx, int n_heads, int64_t hstride, int off, int dim,
                      const int32_t *pos, const float *inv_freq);
    void (*add_bias)(eng_dev *d, float *y, int64_t ldy, const eng_tensor *b, int n, int dim);
    void (*gqa_attend)(eng_dev *d, const float *q, int64_t ldq, int n_heads, int n_kv_heads, int head_dim,
                       const eng_be_cache *kc, const eng_be_cache *vc, float scale, const eng_be_keys *keys,
                       int n, float *o, int64_t ldo);
} eng_dev_ops;

/* Number of usable devices (0 without a driver). */
int eng_cuda_count(void);
/* Open CUDA device `device`: its ops table and context. PL_ERR_UNSUPPORTED
 * when this build has no CUDA (engine/cuda/none.c) or there is no device. */
int eng_cuda_open(int device, const eng_dev_ops **ops, eng_dev **out, char *err, size_t errlen);

#endif
