/* kv.c — free list, reference counts, block tables, and the pool's storage. */
#include "kv.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct eng_kv_pool {
    eng_backend *be;
    int n_layers, n_blocks, block_size;
    float **mla, **idx;         /* [n_layers]; n_layers is 0 without storage */
    int32_t *refs;              /* [n_blocks]; 0 = on the free list */
    int32_t *free_list;         /* stack of free block ids */
    int n_free;
};

/* ===== pool ===== */

size_t eng_kv_bytes_per_token(const eng_config *c)
{
    size_t n = 0;
    for (int l = 0; l < eng_config_n_layers_total(c); l++)
        n += (size_t)(c->kv_lora_rank + c->qk_rope_head_dim) +
             (c->layer_index_full[l] ? (size_t)c->index_head_dim : 0);
    return n * sizeof(float);
}

static int alloc_storage(eng_kv_pool *p, const eng_config *c)
{
    p->n_layers = eng_config_n_layers_total(c);
    p->mla = calloc((size_t)p->n_layers, sizeof *p->mla);
    p->idx = calloc((size_t)p->n_layers, sizeof *p->idx);
    if (!p->mla || !p->idx) return 0;
    size_t rows = (size_t)p->n_blocks * (size_t)p->block_size;
    for (int l = 0; l < p->n_layers; l++) {
        p->mla[l] = eng_be_alloc(p->be, rows * (size_t)(c->kv_lora_rank + c->qk_rope_head_dim) * sizeof(float));
        if (!p->mla[l]) return 0;
        if (c->layer_index_full[l] && !(p->idx[l] = eng_be_alloc(p->be, rows * (size_t)c->index_head_dim * sizeof(float))))
            return 0;
    }
    return 1;
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
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->refs = calloc((size_t)n_blocks, sizeof *p->refs);
    p->free_list = malloc((size_t)n_blocks * sizeof *p->free_list);
    if (!p->refs || !p->free_list || (c && !alloc_storage(p, c))) {
        eng_kv_pool_free(p);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "cannot allocate a KV pool of %d blocks x %d tokens (%zu MB)",
                         n_blocks, block_size, c ? (size_t)n_blocks * (size_t)block_size * eng_kv_bytes_per_token(c) >> 20 : 0);
    }
    /* Stack order: block 0 comes out first (a fresh cache fills from the start). */
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

float *eng_kv_layer_mla(eng_kv_pool *p, int layer) { return layer < p->n_layers ? p->mla[layer] : NULL; }
float *eng_kv_layer_index(eng_kv_pool *p, int layer) { return layer < p->n_layers ? p->idx[layer] : NULL; }

/* ===== blocks ===== */

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

int eng_kv_block_refcount(const eng_kv_pool *p, int b)
{
    return b >= 0 && b < p->n_blocks ? p->refs[b] : 0;
}

int eng_kv_blocks_for(const eng_kv_pool *p, int64_t n_tokens)
{
    return n_tokens <= 0 ? 0 : (int)((n_tokens + p->block_size - 1) / p->block_size);
}

/* ===== block tables ===== */

int eng_kv_table_init(eng_kv_pool *p, eng_kv_table *t, int max_tokens)
{
    t->n = 0;
    t->cap = eng_kv_blocks_for(p, max_tokens);
    t->blocks = malloc(sizeof *t->blocks * (size_t)(t->cap ? t->cap : 1));
    return t->blocks ? PL_OK : PL_ERR_NOMEM;
}

void eng_kv_table_free(eng_kv_pool *p, eng_kv_table *t)
{
    if (!t->blocks) return;
    eng_kv_table_release(p, t);
    free(t->blocks);
    t->blocks = NULL;
    t->cap = 0;
}

int eng_kv_table_ensure(eng_kv_pool *p, eng_kv_table *t, int n_tokens)
{
    int need = eng_kv_blocks_for(p, n_tokens);
    if (need <= t->n) return PL_OK;
    if (need > t->cap) return PL_ERR_RANGE;
    if (need - t->n > p->n_free) return PL_ERR_AGAIN;
    while (t->n < need) t->blocks[t->n++] = eng_kv_block_alloc(p);
    return PL_OK;
}

void eng_kv_table_release(eng_kv_pool *p, eng_kv_table *t)
{
    /* last first, so the blocks come back in the order they go out again */
    for (int i = t->n - 1; i >= 0; i--) eng_kv_block_unref(p, t->blocks[i]);
    t->n = 0;
}

int eng_kv_table_share(eng_kv_pool *p, const eng_kv_table *src, int n_blocks, eng_kv_table *dst)
{
    if (dst->n != 0 || n_blocks < 0 || n_blocks > src->n || n_blocks > dst->cap) return PL_ERR_RANGE;
    for (int i = 0; i < n_blocks; i++) {
        eng_kv_block_ref(p, src->blocks[i]);
        dst->blocks[i] = src->blocks[i];
    }
    dst->n = n_blocks;
    return PL_OK;
}
