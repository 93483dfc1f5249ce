/* kv.h — the paged KV pool: fixed-size blocks of cache rows, per layer.
 *
 * Per token and layer the pool holds the MLA entry [normalized kv latent
 * (kv_lora_rank) | RoPE'd k_pe (qk_rope_head_dim)] and, on layers that run
 * their own DSA indexer, the indexer key (index_head_dim). Block b covers
 * rows b*block_size .. b*block_size+block_size-1 of every layer, so one
 * block table per sequence serves all layers (the MTP layer included).
 *
 * Blocks carry reference counts so a scheduler can share prefix blocks; the
 * pool itself knows nothing of sequences or scheduling. Not thread-safe:
 * one owner (the step loop) allocates and frees. */
#ifndef ENG_KV_H
#define ENG_KV_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "loader.h"

typedef struct eng_kv_pool eng_kv_pool;

/* Layers: cfg->num_hidden_layers, + the MTP layer when cfg->has_mtp_weights. */
int  eng_kv_pool_create(eng_backend *be, const eng_config *cfg, int n_blocks, int block_size,
                        eng_kv_pool **out, char *err, size_t errlen);
void eng_kv_pool_free(eng_kv_pool *p);

int  eng_kv_block_size(const eng_kv_pool *p);
int  eng_kv_n_blocks(const eng_kv_pool *p);
int  eng_kv_n_free(const eng_kv_pool *p);
/* Bytes of cache one token uses across all layers. */
size_t eng_kv_bytes_per_token(const eng_config *cfg);

int  eng_kv_block_alloc(eng_kv_pool *p);             /* refcount 1; -1 when none is free */
void eng_kv_block_ref(eng_kv_pool *p, int block);
void eng_kv_block_unref(eng_kv_pool *p, int block);  /* back to the free list at 0 */

/* Cache rows of one layer (for model.c): [n_blocks*block_size, dim]. */
float *eng_kv_layer_mla(eng_kv_pool *p, int layer);
float *eng_kv_layer_index(eng_kv_pool *p, int layer);   /* NULL on shared-indexer layers */
int    eng_kv_n_layers(const eng_kv_pool *p);

#endif
