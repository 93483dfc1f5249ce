/* shard.h — one tensor-parallel rank's slice of the weights.
 *
 * Given the loaded (mapped, untouched) checkpoint, a rank's shard is a copy
 * of the per-layer weight table whose views cover only its part:
 *  - row slices (output features: q_b heads, kv_b heads, gate/up widths,
 *    vocabulary rows of embed_tokens and lm_head, whole experts under expert
 *    parallelism) are views into the same mapping: a rank faults in only
 *    those pages;
 *  - column slices (input features of o_proj and the down projections) are
 *    copied into memory the rank owns (the pages it touches first, on its
 *    own NUMA node once pinned); the mapping's pages are read once.
 * Everything else (norms, q_a/kv_a, the indexer, the router, eh_proj) is
 * replicated: the same views on every rank.
 *
 * Grouped-query attention (Glm4MoeForCausalLM): q_proj rows and bias and
 * o_proj columns by query head; k_proj/v_proj rows and biases by KV head.
 * When the size divides into the KV heads each rank holds whole groups (its
 * KV heads and their query heads); when it exceeds them (a multiple of
 * kv_heads) the ranks of one group split its query heads and each computes
 * that group's one KV head (replicated). A rank's KV cache rows hold only
 * its KV heads. q_norm/k_norm (per head_dim) are replicated. A split that
 * would put a rank's query heads in two groups is refused.
 *
 * Splits: heads, FFN widths, experts and the vocabulary are cut into
 * contiguous ranges that differ by at most one unit (uneven splits are
 * handled). FP8 weights are cut only on 128x128 block boundaries (a width is
 * split in whole blocks, a head range must start on a block); a split that
 * would break a block, or leave a rank with nothing, is refused with a
 * message naming the tensor and the sizes. */
#ifndef ENG_SHARD_H
#define ENG_SHARD_H

#include <stddef.h>
#include <stdint.h>
#include "loader.h"

typedef struct eng_shard eng_shard;

typedef struct eng_shard_range { int64_t begin, end; } eng_shard_range;

/* [begin, end) of n units for rank of size, in units of gran (the last range
 * ends at n). */
eng_shard_range eng_shard_split(int64_t n, int64_t gran, int rank, int size);

int  eng_shard_create(const eng_weights *w, const eng_config *c, int rank, int size, int expert_parallel,
                      eng_shard **out, char *err, size_t errlen);
void eng_shard_free(eng_shard *s);

const eng_layer_weights *eng_shard_layer(const eng_shard *s, int layer);
const eng_tensor        *eng_shard_embed(const eng_shard *s);     /* rows [vocab.begin, vocab.end) */
const eng_tensor        *eng_shard_lm_head(const eng_shard *s);   /* the same rows */
eng_shard_range eng_shard_heads(const eng_shard *s);            /* query heads */
eng_shard_range eng_shard_kv_heads(const eng_shard *s);         /* GQA: the KV heads those read; MLA: all */
eng_shard_range eng_shard_vocab(const eng_shard *s);
eng_shard_range eng_shard_experts(const eng_shard *s);          /* the routed experts this rank runs */
int64_t         eng_shard_vocab_max(const eng_shard *s);        /* widest rank's vocabulary range */
/* Bytes this rank's views and copies cover (what it reads per full pass). */
uint64_t eng_shard_bytes(const eng_shard *s);
/* Read every page of the rank's views once (progress-free). */
void eng_shard_prefault(const eng_shard *s);

#endif
