/* serve.h — the engine's serving loop: protocol messages in, steps, messages out.
 *
 *   generate ─▶ validate ─▶ scheduler (one sequence per choice) ─┐
 *   abort    ─▶ remove sequences, free KV blocks at once          │ per step:
 *                                                                  ▼
 *   start / tokens / end ◀── sample (sample.h) ◀── model forward (eng_lm)
 *
 * The model is reached only through eng_lm, a narrow table of functions:
 * the serving loop knows nothing of layers or kernels, the model nothing of
 * requests. The model owns the KV pool memory (its bytes per token are
 * model-specific); the serving loop owns the block allocator (kv.h) and hands
 * the model, per sequence, the block table that maps positions to slots.
 *
 * Output goes through eng_serve_sink (bytes of one msgpack message per call),
 * so the loop runs the same on a pl_stage and inside a unit test. */
#ifndef ENG_SERVE_H
#define ENG_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "kv.h"
#include "model.h"
#include "pl.h"

/* ===== the model, as the serving loop sees it ===== */

/* A forward call takes eng_seq entries (model.h): per sequence its new token
 * ids, the position of the first, its block table into the pool and which
 * logits rows it wants (none, the last, or all: prompt logprobs). */
typedef struct eng_lm {
    void *impl;
    int vocab;                    /* logits row length */
    int max_positions;            /* longest context the model supports */
    const int32_t *eos_ids;       /* the model's eos ids (stop unless ignore_eos) */
    int n_eos;
    /* Bytes of cache per token, all layers, rows of dtype: sizes the pool. */
    size_t (*kv_bytes_per_token)(void *impl, enum eng_cache_dtype dtype);
    /* Create the pool (block accounting + the model's storage). The serving
     * loop owns it afterwards (eng_kv_pool_free). */
    int  (*kv_create)(void *impl, int num_blocks, int block_size, enum eng_cache_dtype dtype, eng_kv_pool **out,
                      char *err, size_t errlen);
    /* Run one step. logits: rows in seqs order, vocab floats each. Must give
     * each row the same values whatever else is in the batch. hidden (may be
     * NULL): [new tokens, hidden_size], each token's final hidden state (the
     * MTP layer's input). */
    int  (*forward)(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, float *logits, float *hidden,
                    char *err, size_t errlen);
    /* The MTP layer (model.h eng_model_mtp_forward), NULL when the model has
     * none: token i is token_{p+1} at position p with hidden_in row i = g_p;
     * writes the MTP cache rows at those positions, draft logits rows as
     * forward does, and hidden_out (may be NULL) to recycle. */
    int  (*mtp_forward)(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, const float *hidden_in,
                        float *logits, float *hidden_out, char *err, size_t errlen);
    int hidden_size;              /* floats per hidden row */
    /* Host threads for per-sequence work (sampling a batch): run fn for
     * every task on n_threads threads (thread < n_threads). NULL / 0: the
     * serving loop runs the tasks itself, one after another. par is its
     * first argument, apart from impl so that a wrapper model that copies
     * this struct and swaps impl keeps a valid one. */
    void (*parallel)(void *par, void (*fn)(void *ctx, int task, int thread), void *ctx, int n_tasks);
    void *par;
    int n_threads;
} eng_lm;

/* The GLM-5 model (model.h) behind eng_lm; m must outlive lm. */
void eng_lm_from_model(eng_lm *lm, eng_model *m);

/* ===== the serving loop ===== */

typedef struct eng_serve_cfg {
    int      max_num_seqs;            /* vLLM --max-num-seqs */
    int      max_model_len;           /* 0: the model's max_positions */
    int      max_num_batched_tokens;  /* vLLM --max-num-batched-tokens */
    int      block_size;              /* tokens per KV block */
    int      num_blocks;              /* 0: from kv_cache_bytes */
    size_t   kv_cache_bytes;          /* pool budget when num_blocks is 0 */
    uint64_t seed;                    /* draws of requests without a seed */
    double   log_stats_interval;      /* seconds between stats log lines; 0: none */
    bool     prefix_caching;          /* vLLM --enable-prefix-caching (default on) */
    enum eng_cache_dtype kv_cache_dtype;   /* vLLM --kv-cache-dtype: auto (f32 here) or fp8 (e4m3) */
    int      num_spec_tokens;         /* MTP drafts per step, 0..ENG_SPEC_MAX (0: off) */
} eng_serve_cfg;

void eng_serve_cfg_defaults(eng_serve_cfg *c);

/* Where finished messages go: one complete msgpack object per call. */
typedef struct eng_serve_sink {
    int (*send)(void *ud, const char *data, size_t len);
    void *ud;
} eng_serve_sink;

typedef struct eng_serve eng_serve;

/* lm must outlive the serve. Sizes the KV pool (lm->kv_create), the
 * scheduler and the sampler's scratch; no allocation per token afterwards
 * except per request. */
int  eng_serve_init(eng_serve **out, const eng_lm *lm, const eng_serve_cfg *cfg, eng_serve_sink sink,
                    char *err, size_t errlen);
void eng_serve_free(eng_serve *e);

/* Handle one well-formed message (a map with string type and valid id):
 * generate → accepted (`start` follows when choice 0 is first scheduled) or
 * an error message; abort → state dropped and the abort forwarded; stats →
 * answered (and, with `interval`, again on a timer); anything else forwarded. */
void eng_serve_on_msg(eng_serve *e, const msgpack_object *msg, const char *id, size_t idlen);

/* Run one engine step if there is work: plan, forward, sample, emit.
 * Returns PL_OK (including when idle) or PL_ERR_IO when the sink failed. */
int  eng_serve_step(eng_serve *e);

/* Timers: periodic `stats` answers and the stats log line. eng_serve_tick
 * emits whatever is due (call it every loop round); eng_serve_wait_ms is how
 * long the loop may block on input before the next one is due (-1: none). */
void eng_serve_tick(eng_serve *e);
int  eng_serve_wait_ms(const eng_serve *e);

bool eng_serve_busy(const eng_serve *e);         /* sequences waiting or running */
/* Answer every live request with an `error` (code, text) and drop it: the
 * stage is stopping before they could finish. */
void eng_serve_fail_all(eng_serve *e, int code, const char *text);
int  eng_serve_max_model_len(const eng_serve *e);
int  eng_serve_num_blocks(const eng_serve *e);

/* Most drafts verified per step: a `tokens` message carries at most 6 ids. */
#define ENG_SPEC_MAX 5

/* Step wall-time histogram: upper bounds in seconds, then +Inf. */
#define ENG_STEP_BUCKETS 14
extern const double eng_step_time_buckets[ENG_STEP_BUCKETS];

/* Counters are cumulative since start; the rest is the state right now. */
typedef struct eng_serve_stats {
    uint64_t steps, tokens_computed, preemptions;
    uint64_t prompt_tokens;        /* prompt length of each request, counted at its first token */
    uint64_t generation_tokens;    /* tokens emitted */
    uint64_t step_hist[ENG_STEP_BUCKETS + 1];
    double   step_time_sum;        /* seconds */
    int      running, waiting, live_requests;
    int      total_blocks, free_blocks, used_blocks;
    int      cached_blocks;        /* free blocks holding cached prefixes (part of free_blocks) */
    bool     prefix_caching;
    uint64_t prefix_queries, prefix_hits;   /* tokens */
    int      num_spec_tokens;      /* K; the spec_* counters are meaningful when > 0 */
    uint64_t spec_drafts;          /* verification steps of a sequence with >= 1 draft */
    uint64_t spec_draft_tokens, spec_accepted;
    uint64_t spec_accepted_pos[ENG_SPEC_MAX];   /* draft j accepted (j < K) */
} eng_serve_stats;
void eng_serve_get_stats(const eng_serve *e, eng_serve_stats *st);

#endif
