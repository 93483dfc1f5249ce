/* engine_testlm.h — a tiny deterministic language model for the engine's
 * unit tests ONLY (never linked into a binary).
 *
 * Its "KV cache" stores the token id at each slot of the pool; a logits row
 * for position p is a hash of the tokens it reads back at positions 0..p
 * through the sequence's block table. So the logits are right only if the
 * scheduler's block tables are: a wrong, stale or overwritten block changes
 * the context and so the output. Writing into a block held by more than one
 * table (a shared prompt block) or reading a never-written slot fails the
 * step. tlm_ref_logits computes the same rows straight from a token list.
 *
 * Its MTP layer (mode TLM_MTP_ORACLE or TLM_MTP_NOISY) keeps its own slot
 * per position (token_{p+1} at position p, as the real MTP cache rows) and
 * drafts from the context it reads back: slot 0 of the target, then its
 * own slots 0..p. ORACLE drafts the target's greedy token for that context
 * (always accepted at temperature 0); NOISY drafts token + 1 instead for
 * about a third of the contexts (a hash decides), so rejections happen.
 * Hidden rows are {position, token} from the target and {position + 1, -1}
 * from the MTP; the MTP fails the step when a hidden row belongs to another
 * position, and a first pass (target hidden) fails it when an MTP slot below
 * its first position differs from the target's next token (a draft row that
 * was never rolled back). tlm_ref_spec replays speculative greedy decoding
 * from the same functions: the tokens and every acceptance counter the
 * engine must report. */
#ifndef ENGINE_TESTLM_H
#define ENGINE_TESTLM_H

#include <stdbool.h>
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
    long      forward_calls, rows_out, mtp_calls;
    int       mtp;              /* enum below */
    int32_t  *mslots;           /* MTP token per slot; -1 never written */
} tlm;

enum { TLM_MTP_NONE, TLM_MTP_ORACLE, TLM_MTP_NOISY };

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
    free(m->mslots);
    m->bs = block_size;
    m->n_slots = num_blocks * block_size;
    m->slots = malloc(sizeof *m->slots * (size_t)m->n_slots);
    m->mslots = malloc(sizeof *m->mslots * (size_t)m->n_slots);
    for (int i = 0; i < m->n_slots; i++) m->slots[i] = m->mslots[i] = -1;
    m->kv = *out;
    return 0;
}

static int tlm_slot(const tlm *m, const eng_seq *q, int p)
{
    return q->block_table[p / m->bs] * m->bs + p % m->bs;
}

/* Writes of a step go only to blocks this sequence holds alone and that
 * no prefix-cache entry names. */
static int tlm_check_writes(const tlm *m, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, char *err, size_t errlen)
{
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
        }
    }
    return 0;
}

static int tlm_forward(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, float *logits, float *hidden,
                       char *err, size_t errlen)
{
    tlm *m = impl;
    m->forward_calls++;
    if (m->fail_calls > 0) { m->fail_calls--; return pl_seterr(err, errlen, PL_ERR_INTERNAL, "test model told to fail"); }
    int rc = tlm_check_writes(m, kv, seqs, n_seqs, err, errlen);
    if (rc) return rc;
    for (int s = 0, t = 0; s < n_seqs; s++) {
        const eng_seq *q = &seqs[s];
        for (int i = 0; i < q->n_tokens; i++, t++) {
            int p = q->pos0 + i;
            m->slots[tlm_slot(m, q, p)] = q->tokens[i];
            if (hidden) { hidden[2 * t] = (float)p; hidden[2 * t + 1] = (float)q->tokens[i]; }
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

/* The MTP's draft after context c[0..n): the target's greedy token, or
 * (NOISY, a third of the contexts) the token after it. */
static int32_t tlm_draft(int vocab, int mode, const int32_t *c, int n, float *scratch)
{
    tlm_ref_logits(vocab, c, n, scratch);
    int32_t b = 0;
    for (int v = 1; v < vocab; v++) if (scratch[v] > scratch[b]) b = v;
    uint64_t h = 0x77;
    for (int i = 0; i < n; i++) h = tlm_mix(h ^ (uint64_t)(uint32_t)c[i]);
    return mode == TLM_MTP_NOISY && h % 3 == 0 ? (b + 1) % vocab : b;
}

static int tlm_mtp_forward(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, const float *hidden_in,
                           float *logits, float *hidden_out, char *err, size_t errlen)
{
    tlm *m = impl;
    m->mtp_calls++;
    int rc = tlm_check_writes(m, kv, seqs, n_seqs, err, errlen);
    if (rc) return rc;
    float *scratch = malloc(sizeof *scratch * (size_t)m->vocab), *row = logits;
    for (int s = 0, t = 0; s < n_seqs && !rc; s++) {
        const eng_seq *q = &seqs[s];
        bool first_pass = hidden_in[2 * t + 1] >= 0;
        if (first_pass)   /* rows below pos0 were computed by earlier first passes: canonical */
            for (int p = 0; p < q->pos0 && !rc; p++)
                if (m->mslots[tlm_slot(m, q, p)] != m->slots[tlm_slot(m, q, p + 1)])
                    rc = pl_seterr(err, errlen, PL_ERR_INTERNAL, "seq %d: MTP row %d holds %d, the target's token %d "
                                   "(a draft row not rolled back)", s, p, m->mslots[tlm_slot(m, q, p)],
                                   m->slots[tlm_slot(m, q, p + 1)]);
        for (int i = 0; i < q->n_tokens && !rc; i++, t++) {
            int p = q->pos0 + i;
            const float *h = hidden_in + 2 * t;
            if (h[0] != (float)p || (h[1] >= 0 && h[1] != (float)m->slots[tlm_slot(m, q, p)]))
                rc = pl_seterr(err, errlen, PL_ERR_INTERNAL, "seq %d position %d got the hidden of position %g", s, p, h[0]);
            m->mslots[tlm_slot(m, q, p)] = q->tokens[i];
            if (hidden_out) { hidden_out[2 * t] = (float)(p + 1); hidden_out[2 * t + 1] = -1; }
        }
        int first = q->logits == ENG_LOGITS_ALL ? 0 : q->logits == ENG_LOGITS_LAST ? q->n_tokens - 1 : q->n_tokens;
        for (int i = first; i < q->n_tokens && !rc; i++) {
            int p = q->pos0 + i;
            m->ctx[0] = m->slots[tlm_slot(m, q, 0)];
            for (int j = 0; j <= p; j++) m->ctx[j + 1] = m->mslots[tlm_slot(m, q, j)];
            for (int j = 0; j <= p + 1; j++)
                if (m->ctx[j] < 0) rc = pl_seterr(err, errlen, PL_ERR_INTERNAL, "seq %d: MTP reads unwritten position", s);
            if (rc) break;
            int32_t d = tlm_draft(m->vocab, m->mtp, m->ctx, p + 2, scratch);
            for (int v = 0; v < m->vocab; v++) row[v] = v == d ? 1.0f : 0.0f;
            row += m->vocab;
        }
    }
    free(scratch);
    return rc;
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
        .mtp_forward = tlm_mtp_forward, .hidden_size = 2,
    };
}

static void tlm_free(tlm *m)
{
    free(m->slots);
    free(m->mslots);
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

/* Acceptance counters of speculative decoding. */
typedef struct tlm_spec_stats {
    long drafts, draft_tokens, accepted, pos[8];
} tlm_spec_stats;

/* Speculative greedy decoding of n tokens with K drafts, replayed from the
 * reference functions: first token by greedy prefill, then rounds of
 * min(K, tokens left - 1) drafts (chained: each drafted from the context
 * extended by the previous ones) verified by exact match, correction or
 * bonus appended. The tokens must equal tlm_ref_greedy's. */
static inline void tlm_ref_spec(int vocab, int mode, const int32_t *prompt, int np, int n, int K, int32_t *out,
                         tlm_spec_stats *st)
{
    int32_t *seq = malloc(sizeof *seq * (size_t)(np + n + K + 1)), d[8];
    float *l = malloc(sizeof *l * (size_t)vocab);
    memcpy(seq, prompt, sizeof *seq * (size_t)np);
    int len = np, k = 0;
    while (len < np + n) {
        int a = 0;
        for (int j = 0; j <= k; j++) {                   /* verify d[0..k), then the bonus */
            tlm_ref_logits(vocab, seq, len, l);
            int32_t b = 0;
            for (int v = 1; v < vocab; v++) if (l[v] > l[b]) b = v;
            seq[len++] = b;
            if (len == np + n) break;
            if (j == k || b != d[j]) break;
            a++;
        }
        if (k) {
            st->drafts++;
            st->draft_tokens += k;
            st->accepted += a;
            for (int j = 0; j < a; j++) st->pos[j]++;
        }
        k = np + n - len - 1;
        if (k > K) k = K;
        for (int j = 0; j < k; j++) {
            seq[len + j] = d[j] = tlm_draft(vocab, mode, seq, len + j, l);
        }
    }
    memcpy(out, seq + np, sizeof *out * (size_t)n);
    free(seq);
    free(l);
}
