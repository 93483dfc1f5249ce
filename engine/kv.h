/* kv.h — the paged KV cache: block allocator, block tables, pool storage.
 *
 * Two layers in one component:
 *  - Accounting (no tensors): n_blocks blocks of block_size token slots, a
 *    free list, reference counts per block (so tables can share prompt
 *    blocks now and prefix caching can later), and per-sequence block tables.
 *    Position p of a sequence lives in slot
 *        table->blocks[p / block_size] * block_size + p % block_size.
 *    The scheduler uses only this layer; a pool created with no config has
 *    no storage at all (unit tests, test models that keep their own memory).
 *  - Storage (model-specific): per token and layer the MLA entry
 *    [normalized kv latent (kv_lora_rank) | RoPE'd k_pe (qk_rope_head_dim)]
 *    and, on layers that run their own DSA indexer, the indexer key
 *    (index_head_dim). Block b covers rows b*block_size .. +block_size-1 of
 *    every layer, so one block table per sequence serves all layers (the MTP
 *    layer included). model.c reads it through the layer accessors.
 *
 * Allocation through tables is all-or-nothing: eng_kv_table_ensure either
 * grows a table to the asked size or changes nothing (PL_ERR_AGAIN), and
 * tables have a fixed capacity set once, so the step loop never allocates.
 * Not thread-safe: one owner (the step loop) allocates and frees. */
#ifndef ENG_KV_H
#define ENG_KV_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "loader.h"

typedef struct eng_kv_pool eng_kv_pool;

/* With cfg (and be): storage for cfg->num_hidden_layers layers, + the MTP
 * layer when cfg->has_mtp_weights. cfg == NULL: accounting only. */
int  eng_kv_pool_create(eng_backend *be, const eng_config *cfg, int n_blocks, int block_size,
                        eng_kv_pool **out, char *err, size_t errlen);
void eng_kv_pool_free(eng_kv_pool *p);

int  eng_kv_block_size(const eng_kv_pool *p);
int  eng_kv_n_blocks(const eng_kv_pool *p);
int  eng_kv_n_free(const eng_kv_pool *p);
/* Bytes of cache one token uses across all layers. */
size_t eng_kv_bytes_per_token(const eng_config *cfg);

/* ===== blocks ===== */

int  eng_kv_block_alloc(eng_kv_pool *p);             /* refcount 1; -1 when none is free */
void eng_kv_block_ref(eng_kv_pool *p, int block);
void eng_kv_block_unref(eng_kv_pool *p, int block);  /* back to the free list at 0 */
int  eng_kv_block_refcount(const eng_kv_pool *p, int block);   /* 0 when free */

/* Blocks needed to hold n_tokens positions. */
int  eng_kv_blocks_for(const eng_kv_pool *p, int64_t n_tokens);

/* ===== block tables ===== */

/* One sequence's table: blocks[0..n) cover positions [0, n * block_size). */
typedef struct eng_kv_table {
    int32_t *blocks;
    int      n;
    int      cap;       /* fixed at init */
} eng_kv_table;

/* A table able to hold max_tokens positions (its memory allocated here, once). */
int  eng_kv_table_init(eng_kv_pool *p, eng_kv_table *t, int max_tokens);
void eng_kv_table_free(eng_kv_pool *p, eng_kv_table *t);   /* releases, then frees memory */

/* Grow t to cover n_tokens positions. PL_OK, PL_ERR_AGAIN (not enough free
 * blocks: nothing changed) or PL_ERR_RANGE (beyond the table's capacity). */
int  eng_kv_table_ensure(eng_kv_pool *p, eng_kv_table *t, int n_tokens);

/* Drop every reference the table holds: blocks nobody else holds are free at
 * once. t->n becomes 0; the table can be reused. */
void eng_kv_table_release(eng_kv_pool *p, eng_kv_table *t);

/* dst (empty) shares src's first n_blocks blocks (reference counts go up).
 * Only blocks nobody writes again may be shared: full prompt blocks. */
int  eng_kv_table_share(eng_kv_pool *p, const eng_kv_table *src, int n_blocks, eng_kv_table *dst);

/* ===== storage (model.c) ===== */

/* Cache rows of one layer: [n_blocks*block_size, dim]. NULL without storage. */
float *eng_kv_layer_mla(eng_kv_pool *p, int layer);
float *eng_kv_layer_index(eng_kv_pool *p, int layer);   /* NULL on shared-indexer layers */
int    eng_kv_n_layers(const eng_kv_pool *p);

#endif
