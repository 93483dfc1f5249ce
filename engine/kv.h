/* kv.h — the paged KV cache: block allocator, block tables, prefix cache,
 * pool storage.
 *
 * Two layers in one component:
 *  - Accounting (no tensors): n_blocks blocks of block_size token slots, a
 *    free list, reference counts per block (tables share prompt blocks of
 *    n > 1 choices and cached prefixes), per-sequence block tables, and the
 *    prefix cache: full blocks registered under a chained hash of their
 *    tokens, found again by later sequences.
 *    Position p of a sequence lives in slot
 *        table->blocks[p / block_size] * block_size + p % block_size.
 *    The scheduler uses only this layer; a pool created with no config has
 *    no storage at all (unit tests, test models that keep their own memory).
 *  - Storage (model-specific): per token and layer the MLA entry
 *    [normalized kv latent (kv_lora_rank) | RoPE'd k_pe (qk_rope_head_dim)]
 *    and, on layers that run their own DSA indexer, the indexer key
 *    (index_head_dim) — or, for GQA models (Glm4MoeForCausalLM), a K row and a
 *    V row of kv_heads * head_dim each (a tensor-parallel rank: its own KV
 *    heads) — as f32 rows or FP8 e4m3 rows with per-token tile
 *    scales (eng_be_cache, backend.h: --kv-cache-dtype fp8). Block b covers rows b*block_size .. +block_size-1 of
 *    every layer, so one block table per sequence serves all layers (the MTP
 *    layer included). model.c reads it through the layer accessors.
 *
 * Allocation through tables is all-or-nothing: eng_kv_table_ensure either
 * grows a table to the asked size or changes nothing (PL_ERR_AGAIN), and
 * tables have a fixed capacity set once, so the step loop never allocates.
 * Not thread-safe: one owner (the step loop) allocates and frees. */
#ifndef ENG_KV_H
#define ENG_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "loader.h"

typedef struct eng_kv_pool eng_kv_pool;

/* With cfg (and be): storage for cfg->num_hidden_layers layers, + the MTP
 * layer when cfg->has_mtp_weights, rows of dtype. cfg == NULL: accounting
 * only (dtype ignored). */
int  eng_kv_pool_create(eng_backend *be, const eng_config *cfg, enum eng_cache_dtype dtype, int n_blocks,
                        int block_size, eng_kv_pool **out, char *err, size_t errlen);
void eng_kv_pool_free(eng_kv_pool *p);

int  eng_kv_block_size(const eng_kv_pool *p);
int  eng_kv_n_blocks(const eng_kv_pool *p);
/* Blocks an allocation can take: never-used or released ones, plus cached
 * blocks nobody holds (evicted on demand). n_blocks - n_free are held. */
int  eng_kv_n_free(const eng_kv_pool *p);
/* Bytes of cache one token uses across all layers. */
size_t eng_kv_bytes_per_token(const eng_config *cfg, enum eng_cache_dtype dtype);

/* ===== blocks ===== */

/* refcount 1; -1 when none is free. A plain free block when there is one;
 * only when none is left the least recently released cached block is
 * evicted (its cache entry dropped). */
int  eng_kv_block_alloc(eng_kv_pool *p);
void eng_kv_block_ref(eng_kv_pool *p, int block);
/* At refcount 0 a cached block joins the eviction list (most recent last),
 * any other block the free list. */
void eng_kv_block_unref(eng_kv_pool *p, int block);
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

/* ===== prefix cache =====
 *
 * A full block whose cache rows are all computed can be registered under
 * the hash of its key chained onto its parent's hash (the block before it;
 * ENG_KV_HASH_ROOT for the first), so one hash names the whole prefix. The
 * key is the block's token ids plus whatever else its rows depend on (with
 * an MTP layer: the token after the block, which the MTP row of its last
 * position reads), key_len ids in all. Entries store parent hash and key and
 * a lookup compares both, so a 64-bit collision cannot return a wrong block.
 * Cached blocks stay registered while held and after their last reference
 * goes (then evictable, least recently released first). */

#define ENG_KV_HASH_ROOT 0x6c62272e07bb0142ull

/* Turn the prefix cache on (key_len ids per key, >= 1). PL_ERR_NOMEM. */
int      eng_kv_prefix_enable(eng_kv_pool *p, int key_len);
int      eng_kv_prefix_key_len(const eng_kv_pool *p);   /* 0: off */
uint64_t eng_kv_prefix_hash(uint64_t parent, const int32_t *key, int key_len);
/* The block cached under (hash, parent, key) with a reference taken (taken
 * off the eviction list when nobody held it), or -1. */
int      eng_kv_prefix_get(eng_kv_pool *p, uint64_t hash, uint64_t parent, const int32_t *key);
/* Register a held block. No-op when the block is already registered or
 * another block holds this hash (same content computed twice). */
void     eng_kv_prefix_put(eng_kv_pool *p, int block, uint64_t hash, uint64_t parent, const int32_t *key);
bool     eng_kv_block_cached(const eng_kv_pool *p, int block);   /* registered */
int      eng_kv_n_cached(const eng_kv_pool *p);                  /* registered and held by nobody */

/* ===== storage (model.c) ===== */

/* Cache rows of one layer: n_blocks*block_size rows. NULL without storage. */
const eng_be_cache *eng_kv_layer_mla(eng_kv_pool *p, int layer);     /* dim lat + rope, split lat */
const eng_be_cache *eng_kv_layer_index(eng_kv_pool *p, int layer);   /* NULL on shared-indexer layers */
/* GQA models (cfg->attn_gqa): the K and V rows, dim kv_heads * head_dim
 * (cfg->kv_heads_rank under tensor parallelism: the rank's own KV heads),
 * FP8 tiles restarting per head (head = head_dim); NULL for MLA models
 * (whose mla rows are then absent). */
const eng_be_cache *eng_kv_layer_k(eng_kv_pool *p, int layer);
const eng_be_cache *eng_kv_layer_v(eng_kv_pool *p, int layer);
int    eng_kv_n_layers(const eng_kv_pool *p);
enum eng_cache_dtype eng_kv_dtype(const eng_kv_pool *p);

/* KV pool budget on a device: util * total minus what is already in use
 * (total - free: weights, scratch, the runtime) minus reserve (the ops'
 * work buffers that grow during the first steps); 0 when nothing is left. */
#define ENG_KV_DEVICE_RESERVE ((size_t)1 << 30)
size_t eng_kv_device_budget(size_t free_b, size_t total_b, double util, size_t reserve);

#endif
