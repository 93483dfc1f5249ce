/* model.h — the GLM-5 graph (GlmMoeDsaForCausalLM; GLM-4.7-Flash,
 * Glm4MoeLiteForCausalLM, is the same graph without the indexer) over a paged KV pool.
 *
 * A step runs a batch of sequences; each brings its new tokens (a prefill
 * chunk or one decode token), the position of the first one, and its block
 * table into the KV pool (kv.h). The model writes the new tokens' cache rows
 * and returns logits for the rows asked for. It never allocates per step:
 * scratch is sized once by max_batch_tokens / max_model_len.
 *
 * Direction of dependencies: scheduler → kv (blocks), main → model → backend.
 * The model knows nothing of requests or sampling; the scheduler knows
 * nothing of kernels. */
#ifndef ENG_MODEL_H
#define ENG_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "comm.h"
#include "kv.h"
#include "loader.h"

typedef struct eng_model eng_model;

typedef struct eng_model_opts {
    int n_threads;          /* CPU threads (<= 0: all online CPUs) */
    int backend;            /* enum eng_be_kind: ENG_BE_CPU (0, the default), ENG_BE_CUDA, ENG_BE_AUTO */
    int device;             /* ENG_BE_CUDA: the CUDA device (a tensor-parallel rank's local rank); default 0 */
    int compute_dtype;      /* enum eng_be_compute: ENG_BE_COMPUTE_F32 (0, the default) or _BF16 (--dtype) */
    int max_batch_tokens;   /* most new tokens in one step (all sequences) */
    int max_model_len;      /* longest sequence (positions); <= 0: max_position_embeddings */
    eng_load_opts load;
    /* Tensor parallelism: this model is rank eng_comm_rank(comm) of
     * eng_comm_size(comm) (NULL or size 1: the whole model). The model keeps
     * the pointer, the caller frees it after eng_model_close. */
    eng_comm *comm;
    int expert_parallel;    /* routed experts split whole across ranks instead of by FFN width */
} eng_model_opts;

int  eng_model_open(const char *dir, const eng_model_opts *o, eng_model **out, char *err, size_t errlen);
void eng_model_close(eng_model *m);

const eng_config *eng_model_config(const eng_model *m);
eng_backend      *eng_model_backend(eng_model *m);
int               eng_model_has_mtp(const eng_model *m);
/* Bytes of weights one decode token reads at batch 1 (embedding row, the
 * attention/indexer/dense weights, top-k + shared experts, router, lm_head). */
uint64_t          eng_model_active_bytes(const eng_model *m);
/* Routed-expert reads since open: MoE layer calls and, summed over them,
 * the distinct experts their tokens were routed to (each is read once per
 * call, whatever its token count). What a multi-token step (MTP
 * verification) really reads; counted on backends with host memory only
 * (0 and 0 on a device). */
void              eng_model_moe_reads(const eng_model *m, uint64_t *calls, uint64_t *experts);
/* Bytes of one routed expert (gate, up, down, FP8 scales included; the
 * first MoE layer's expert 0: all are the same size); 0 without MoE. */
uint64_t          eng_model_expert_bytes(const eng_model *m);

enum eng_logits_mode { ENG_LOGITS_NONE = 0, ENG_LOGITS_LAST = 1, ENG_LOGITS_ALL = 2 };

typedef struct eng_seq {
    const int32_t *tokens;      /* new token ids */
    int n_tokens;               /* >= 1 */
    int pos0;                   /* position of tokens[0]; the cache holds [0, pos0) */
    const int32_t *block_table; /* blocks covering positions [0, pos0 + n_tokens) */
    int n_blocks;
    int logits;                 /* enum eng_logits_mode */
} eng_seq;

/* Rows of logits a batch asks for (sum over sequences: 1 for LAST, n_tokens for ALL). */
int eng_model_logits_rows(const eng_seq *seqs, int n_seqs);

/* One step. logits: [eng_model_logits_rows, vocab_size] in sequence order
 * (may be NULL when no rows are asked). hidden (optional): [total new tokens,
 * hidden_size] final post-norm hidden states, the MTP layer's input.
 * Bad input (token out of vocab, position past max_model_len, too short a
 * block table, a block id outside the pool) fails the whole step, touching
 * no cache row. */
int eng_model_forward(eng_model *m, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs,
                      float *logits, float *hidden, char *err, size_t errlen);

/* The MTP layer (doc §4.2): token i of the batch is token_{p+1} at position
 * p, hidden_in row i is g_p (the target's post-norm hidden for step 0, the
 * MTP's own hidden_out afterwards). Writes the MTP layer's cache rows at
 * those positions; logits as above; hidden_out (optional) = the
 * post-shared_head.norm hidden for the next draft step. */
int eng_model_mtp_forward(eng_model *m, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs,
                          const float *hidden_in, float *logits, float *hidden_out,
                          char *err, size_t errlen);

/* ===== tensor parallelism (docs/engine.md)
 *
 * Rank 0 runs the serving loop: its eng_model_forward / _mtp_forward
 * check the batch, broadcast it (the step metadata) and compute their
 * share; every other rank sits in eng_model_follow, which receives each
 * step, computes its share on its own KV pool (created at the first step
 * with rank 0's pool geometry; block ids are rank 0's) and takes part in
 * the collectives. eng_model_close on rank 0 tells the followers to stop. */

/* Follow rank 0's steps until it stops (0) or the group dies (PL_ERR_IO). */
int eng_model_follow(eng_model *m, char *err, size_t errlen);
/* Nonzero once a collective failed: a rank died; the engine must exit. */
int eng_model_comm_failed(const eng_model *m);
int eng_model_tp_size(const eng_model *m);

#endif
