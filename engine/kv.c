/* kv.c — free list + reference counts + per-sequence block tables. */
#include "kv.h"

#include <stdlib.h>

struct eng_kv {
    int       num_blocks, block_size;
    int32_t  *free_list;   /* stack of free block ids; top at free_list[n_free-1] */
    int       n_free;
    uint32_t *ref;         /* references per block; 0 = on the free list */
};

int eng_kv_init(eng_kv **out, int num_blocks, int block_size, char *err, size_t errlen)
{
    *out = NULL;
    if (num_blocks < 1 || block_size < 1)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "KV cache needs at least one block of one token (got %d blocks of %d)",
                         num_blocks, block_size);
    eng_kv *kv = calloc(1, sizeof *kv);
    if (kv) {
        kv->free_list = malloc(sizeof *kv->free_list * (size_t)num_blocks);
        kv->ref = calloc((size_t)num_blocks, sizeof *kv->ref);
    }
    if (!kv || !kv->free_list || !kv->ref) {
        eng_kv_free(kv);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory for %d KV blocks", num_blocks);
    }
    kv->num_blocks = num_blocks;
    kv->block_size = block_size;
    /* Pushed in reverse so block 0 is handed out first: a fresh cache fills
     * from the start of the pool (easier to read in dumps and tests). */
    for (int i = 0; i < num_blocks; i++) kv->free_list[i] = num_blocks - 1 - i;
    kv->n_free = num_blocks;
    *out = kv;
    return PL_OK;
}

void eng_kv_free(eng_kv *kv)
{
    if (!kv) return;
    free(kv->free_list);
    free(kv->ref);
    free(kv);
}

int eng_kv_block_size(const eng_kv *kv) { return kv->block_size; }
int eng_kv_num_blocks(const eng_kv *kv) { return kv->num_blocks; }
int eng_kv_num_free(const eng_kv *kv) { return kv->n_free; }

int eng_kv_refcount(const eng_kv *kv, int32_t block)
{
    return block >= 0 && block < kv->num_blocks ? (int)kv->ref[block] : 0;
}

int eng_kv_blocks_for(const eng_kv *kv, int64_t n_tokens)
{
    if (n_tokens <= 0) return 0;
    return (int)((n_tokens + kv->block_size - 1) / kv->block_size);
}

int eng_kv_table_init(eng_kv *kv, eng_kv_table *t, int max_tokens)
{
    t->n = 0;
    t->cap = eng_kv_blocks_for(kv, max_tokens);
    t->blocks = malloc(sizeof *t->blocks * (size_t)(t->cap ? t->cap : 1));
    return t->blocks ? PL_OK : PL_ERR_NOMEM;
}

void eng_kv_table_free(eng_kv *kv, eng_kv_table *t)
{
    if (!t->blocks) return;
    eng_kv_table_release(kv, t);
    free(t->blocks);
    t->blocks = NULL;
    t->cap = 0;
}

int eng_kv_table_missing(const eng_kv *kv, const eng_kv_table *t, int n_tokens)
{
    int need = eng_kv_blocks_for(kv, n_tokens);
    return need > t->n ? need - t->n : 0;
}

int eng_kv_table_ensure(eng_kv *kv, eng_kv_table *t, int n_tokens)
{
    int need = eng_kv_blocks_for(kv, n_tokens);
    if (need <= t->n) return PL_OK;
    if (need > t->cap) return PL_ERR_RANGE;
    if (need - t->n > kv->n_free) return PL_ERR_AGAIN;
    while (t->n < need) {
        int32_t b = kv->free_list[--kv->n_free];
        kv->ref[b] = 1;
        t->blocks[t->n++] = b;
    }
    return PL_OK;
}

void eng_kv_table_release(eng_kv *kv, eng_kv_table *t)
{
    /* Released last-first so a sequence's blocks come back in the order they
     * would be handed out again. */
    for (int i = t->n - 1; i >= 0; i--) {
        int32_t b = t->blocks[i];
        if (--kv->ref[b] == 0) kv->free_list[kv->n_free++] = b;
    }
    t->n = 0;
}

int eng_kv_table_share(eng_kv *kv, const eng_kv_table *src, int n_blocks, eng_kv_table *dst)
{
    if (dst->n != 0 || n_blocks < 0 || n_blocks > src->n || n_blocks > dst->cap) return PL_ERR_RANGE;
    for (int i = 0; i < n_blocks; i++) {
        int32_t b = src->blocks[i];
        kv->ref[b]++;
        dst->blocks[i] = b;
    }
    dst->n = n_blocks;
    return PL_OK;
}
