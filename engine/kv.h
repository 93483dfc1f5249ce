/* kv.h — the paged KV-cache block allocator (no tensors here).
 *
 * The cache is cut into num_blocks blocks of block_size token slots each.
 * Which bytes a slot holds (MLA latent + RoPE key + indexer key per layer for
 * GLM-5) is the model's business: the model owns the pool memory and finds
 * token position p of a sequence at slot
 *     table->blocks[p / block_size] * block_size + p % block_size.
 * This allocator only hands out block ids, keeps each sequence's block table
 * and counts references, so a block can be shared by several tables (forked
 * prompts today, prefix caching later) and returns to the free list when its
 * last reference goes.
 *
 * Allocation is all-or-nothing: eng_kv_table_ensure either grows a table to
 * cover the asked number of tokens or changes nothing and returns
 * PL_ERR_AGAIN (the scheduler then makes the sequence wait or preempts).
 * No allocation happens after init: tables have a fixed capacity set when
 * they are created. */
#ifndef ENG_KV_H
#define ENG_KV_H

#include <stdint.h>
#include "pl.h"

typedef struct eng_kv eng_kv;

/* One sequence's block table. blocks[0..n) cover positions
 * [0, n * block_size); cap is fixed at init. */
typedef struct eng_kv_table {
    int32_t *blocks;
    int      n;
    int      cap;
} eng_kv_table;

int  eng_kv_init(eng_kv **out, int num_blocks, int block_size, char *err, size_t errlen);
void eng_kv_free(eng_kv *kv);

int eng_kv_block_size(const eng_kv *kv);
int eng_kv_num_blocks(const eng_kv *kv);
int eng_kv_num_free(const eng_kv *kv);
int eng_kv_refcount(const eng_kv *kv, int32_t block);   /* 0 when free */

/* Blocks needed to hold n_tokens positions. */
int eng_kv_blocks_for(const eng_kv *kv, int64_t n_tokens);

/* A table able to hold max_tokens positions (memory allocated here, once). */
int  eng_kv_table_init(eng_kv *kv, eng_kv_table *t, int max_tokens);
void eng_kv_table_free(eng_kv *kv, eng_kv_table *t);   /* releases, then frees memory */

/* New blocks the table lacks to cover n_tokens positions (0 when it has them). */
int eng_kv_table_missing(const eng_kv *kv, const eng_kv_table *t, int n_tokens);

/* Grow t to cover n_tokens positions. PL_OK, PL_ERR_AGAIN (not enough free
 * blocks: nothing changed) or PL_ERR_RANGE (more than the table's capacity). */
int eng_kv_table_ensure(eng_kv *kv, eng_kv_table *t, int n_tokens);

/* Drop every reference the table holds; blocks nobody else holds are free
 * again at once. t->n becomes 0; the table can be reused. */
void eng_kv_table_release(eng_kv *kv, eng_kv_table *t);

/* dst (empty) shares src's first n_blocks blocks (reference counts go up).
 * Writers must only write to blocks whose refcount is 1: the caller shares
 * only full blocks it will never write again. */
int eng_kv_table_share(eng_kv *kv, const eng_kv_table *src, int n_blocks, eng_kv_table *dst);

#endif
