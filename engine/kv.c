/* kv.c — paged KV pool storage and block allocator. */
#include "kv.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct eng_kv_pool {
    eng_backend *be;
    int n_layers, n_blocks, block_size;
    float **mla, **idx;         /* [n_layers] */
    int32_t *refs;              /* [n_blocks] */
    int32_t *free_list;         /* stack of free block ids */
    int n_free;
};

size_t eng_kv_bytes_per_token(const eng_config *c)
{
    size_t n = 0;
    for (int l = 0; l < eng_config_n_layers_total(c); l++)
        n += (size_t)(c->kv_lora_rank + c->qk_rope_head_dim) +
             (c->layer_index_full[l] ? (size_t)c->index_head_dim : 0);
    return n * sizeof(float);
}

int eng_kv_pool_create(eng_backend *be, const eng_config *c, int n_blocks, int block_size,
                       eng_kv_pool **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_blocks < 1 || block_size < 1 || (int64_t)n_blocks * block_size > (1 << 30))
        return pl_seterr(err, errlen, PL_ERR_RANGE, "KV pool of %d blocks x %d tokens out of range",
                         n_blocks, block_size);
    eng_kv_pool *p = calloc(1, sizeof *p);
    if (!p) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    p->be = be;
    p->n_layers = eng_config_n_layers_total(c);
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->mla = calloc((size_t)p->n_layers, sizeof *p->mla);
    p->idx = calloc((size_t)p->n_layers, sizeof *p->idx);
    p->refs = calloc((size_t)n_blocks, sizeof *p->refs);
    p->free_list = malloc((size_t)n_blocks * sizeof *p->free_list);
    int ok = p->mla && p->idx && p->refs && p->free_list;
    size_t rows = (size_t)n_blocks * (size_t)block_size;
    for (int l = 0; ok && l < p->n_layers; l++) {
        p->mla[l] = eng_be_alloc(be, rows * (size_t)(c->kv_lora_rank + c->qk_rope_head_dim) * sizeof(float));
        ok = p->mla[l] != NULL;
        if (ok && c->layer_index_full[l]) {
            p->idx[l] = eng_be_alloc(be, rows * (size_t)c->index_head_dim * sizeof(float));
            ok = p->idx[l] != NULL;
        }
    }
    if (!ok) {
        eng_kv_pool_free(p);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "cannot allocate a KV pool of %d blocks x %d tokens (%zu MB)",
                         n_blocks, block_size, rows * eng_kv_bytes_per_token(c) >> 20);
    }
    /* Stack order: block 0 comes out first. */
    for (int b = 0; b < n_blocks; b++) p->free_list[b] = n_blocks - 1 - b;
    p->n_free = n_blocks;
    *out = p;
    return 0;
}

void eng_kv_pool_free(eng_kv_pool *p)
{
    if (!p) return;
    for (int l = 0; l < p->n_layers; l++) {
        if (p->mla) eng_be_dealloc(p->be, p->mla[l]);
        if (p->idx) eng_be_dealloc(p->be, p->idx[l]);
    }
    free(p->mla);
    free(p->idx);
    free(p->refs);
    free(p->free_list);
    free(p);
}

int eng_kv_block_size(const eng_kv_pool *p) { return p->block_size; }
int eng_kv_n_blocks(const eng_kv_pool *p) { return p->n_blocks; }
int eng_kv_n_free(const eng_kv_pool *p) { return p->n_free; }
int eng_kv_n_layers(const eng_kv_pool *p) { return p->n_layers; }

int eng_kv_block_alloc(eng_kv_pool *p)
{
    if (!p->n_free) return -1;
    int b = p->free_list[--p->n_free];
    p->refs[b] = 1;
    return b;
}

void eng_kv_block_ref(eng_kv_pool *p, int b)
{
    assert(b >= 0 && b < p->n_blocks && p->refs[b] > 0);
    p->refs[b]++;
}

void eng_kv_block_unref(eng_kv_pool *p, int b)
{
    assert(b >= 0 && b < p->n_blocks && p->refs[b] > 0);
    if (--p->refs[b] == 0) p->free_list[p->n_free++] = b;
}

float *eng_kv_layer_mla(eng_kv_pool *p, int layer) { return p->mla[layer]; }
float *eng_kv_layer_index(eng_kv_pool *p, int layer) { return p->idx[layer]; }
