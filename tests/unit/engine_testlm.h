/* engine_testlm.h — a tiny deterministic language model for the engine's
 * unit tests ONLY (never linked into a binary).
 *
 * Its "KV cache" stores the token id at each slot of the pool; a logits row
 * for position p is a hash of the tokens it reads back at positions 0..p
 * through the sequence's block table. So the logits are right only if the
 * scheduler's block tables are: a wrong, stale or overwritten block changes
 * the context and so the output. Writing into a block held by more than one
 * table (a shared prompt block) or reading a never-written slot fails the
 * step. tlm_ref_logits computes the same rows straight from a token list. */
#ifndef ENGINE_TESTLM_H
#define ENGINE_TESTLM_H

#include <stdlib.h>
#include <string.h>

#include "../../engine/serve.h"

typedef struct tlm {
    int       vocab, max_pos;
    eng_kv_pool *kv;            /* created by kv_create; freed by the serve */
    int32_t  *slots;            /* token per slot; -1 never written */
    int       bs, n_slots;
    int32_t  *ctx;              /* [max_pos] */
    int32_t   eos[1];
    int       fail_calls;       /* > 0: this many forward calls fail */
    long      forward_calls, rows_out;
} tlm;

static uint64_t tlm_mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Logits after context ctx[0..n): values in [-4, 4). */
static void tlm_ref_logits(int vocab, const int32_t *ctx, int n, float *out)
{
    uint64_t h = 0x5EEDull;
    for (int i = 0; i < n; i++) h = tlm_mix(h ^ ((uint64_t)(uint32_t)ctx[i] * 0x100000001B3ull));
    for (int v = 0; v < vocab; v++) out[v] = (float)((double)(tlm_mix(h + (uint64_t)v) >> 40) / (double)(1 << 24) * 8.0 - 4.0);
}

static size_t tlm_kv_bytes(void *impl, enum eng_cache_dtype dtype)
{
    (void)impl;
    (void)dtype;
    return 4;
}

static int tlm_kv_create(void *impl, int num_blocks, int block_size, enum eng_cache_dtype dtype, eng_kv_pool **out,
                         char *err, size_t errlen)
{
    tlm *m = impl;
    int rc = eng_kv_pool_create(NULL, NULL, dtype, num_blocks, block_size, out, err, errlen);
    if (rc) return rc;
    free(m->slots);
    m->bs = block_size;
    m->n_slots = num_blocks * block_size;
    m->slots = malloc(sizeof *m->slots * (size_t)m->n_slots);
    for (int i = 0; i < m->n_slots; i++) m->slots[i] = -1;
    m->kv = *out;
    return 0;
}

static int tlm_slot(const tlm *m, const eng_seq *q, int p)
{
    return q->block_table[p / m->bs] * m->bs + p % m->bs;
}

static int tlm_forward(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, float *logits,
                       char *err, size_t errlen)
{
    tlm *m = impl;
    m->forward_calls++;
    if (m->fail_calls > 0) { m->fail_calls--; return pl_seterr(err, errlen, PL_ERR_INTERNAL, "test model told to fail"); }
    for (int s = 0; s < n_seqs; s++) {
        const eng_seq *q = &seqs[s];
        if ((int64_t)q->n_blocks * m->bs < q->pos0 + q->n_tokens)
            return pl_seterr(err, errlen, PL_ERR_RANGE, "seq %d: block table too short", s);
        for (int i = 0; i < q->n_tokens; i++) {
            int p = q->pos0 + i, b = q->block_table[p / m->bs];
            if (eng_kv_block_refcount(kv, b) != 1)
                return pl_seterr(err, errlen, PL_ERR_INTERNAL, "seq %d writes position %d into block %d held %d times",
                                 s, p, b, eng_kv_block_refcount(kv, b));
            if (eng_kv_block_cached(kv, b))   /* a registered prefix block is immutable */
                return pl_seterr(err, errlen, PL_ERR_INTERNAL, "seq %d writes position %d into cached block %d", s, p, b);
            m->slots[tlm_slot(m, q, p)] = q->tokens[i];
        }
    }
    float *row = logits;
    for (int s = 0; s < n_seqs; s++) {
        const eng_seq *q = &seqs[s];
        int first = q->logits == ENG_LOGITS_ALL ? 0 : q->logits == ENG_LOGITS_LAST ? q->n_tokens - 1 : q->n_tokens;
        for (int i = first; i < q->n_tokens; i++) {
            int p = q->pos0 + i;
            for (int t = 0; t <= p; t++) {
                m->ctx[t] = m->slots[tlm_slot(m, q, t)];
                if (m->ctx[t] < 0) return pl_seterr(err, errlen, PL_ERR_INTERNAL, "seq %d reads unwritten position %d", s, t);
            }
            tlm_ref_logits(m->vocab, m->ctx, p + 1, row);
            row += m->vocab;
            m->rows_out++;
        }
    }
    return 0;
}

static void tlm_init(tlm *m, eng_lm *lm, int vocab, int max_pos, int32_t eos)
{
    memset(m, 0, sizeof *m);
    m->vocab = vocab;
    m->max_pos = max_pos;
    m->ctx = malloc(sizeof *m->ctx * (size_t)max_pos);
    m->eos[0] = eos;
    *lm = (eng_lm){
        .impl = m, .vocab = vocab, .max_positions = max_pos, .eos_ids = m->eos, .n_eos = 1,
        .kv_bytes_per_token = tlm_kv_bytes, .kv_create = tlm_kv_create, .forward = tlm_forward,
    };
}

static void tlm_free(tlm *m)
{
    free(m->slots);
    free(m->ctx);
}

/* Greedy continuation of prompt for n tokens, straight from the reference. */
static void tlm_ref_greedy(int vocab, const int32_t *prompt, int np, int n, int32_t *out)
{
    int32_t *seq = malloc(sizeof *seq * (size_t)(np + n));
    float *l = malloc(sizeof *l * (size_t)vocab);
    memcpy(seq, prompt, sizeof *seq * (size_t)np);
    for (int k = 0; k < n; k++) {
        tlm_ref_logits(vocab, seq, np + k, l);
        int b = 0;
        for (int v = 1; v < vocab; v++) if (l[v] > l[b]) b = v;
        out[k] = seq[np + k] = b;
    }
    free(seq);
    free(l);
}

#endif
