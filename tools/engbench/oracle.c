/* oracle.c — one-hot draft logits from a known continuation (oracle.h). */
#include "oracle.h"

#include <string.h>

static int oracle_mtp(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, const float *hidden_in,
                      float *logits, float *hidden_out, char *err, size_t errlen)
{
    eng_oracle *o = impl;
    if (o->run_mtp) {
        int rc = o->inner.mtp_forward(o->inner.impl, kv, seqs, n_seqs, hidden_in, logits, hidden_out, err, errlen);
        if (rc) return rc;
    } else if (hidden_out) {
        int T = 0;
        for (int s = 0; s < n_seqs; s++) T += seqs[s].n_tokens;
        memset(hidden_out, 0, sizeof *hidden_out * (size_t)T * (size_t)o->inner.hidden_size);
    }
    int V = o->inner.vocab;
    float *row = logits;
    for (int s = 0; s < n_seqs; s++) {
        const eng_seq *q = &seqs[s];
        int first = q->logits == ENG_LOGITS_ALL ? 0 : q->logits == ENG_LOGITS_LAST ? q->n_tokens - 1 : q->n_tokens;
        for (int i = first; i < q->n_tokens; i++, row += V) {
            int p = q->pos0 + i;
            memset(row, 0, sizeof *row * (size_t)V);
            row[p + 2 < o->n_ref ? o->ref[p + 2] : 0] = 1.0f;
            o->rows++;
        }
    }
    return 0;
}

static int oracle_forward(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, float *logits, float *hidden,
                          char *err, size_t errlen)
{
    eng_oracle *o = impl;
    return o->inner.forward(o->inner.impl, kv, seqs, n_seqs, logits, hidden, err, errlen);
}

static size_t oracle_kv_bytes(void *impl, enum eng_cache_dtype dt)
{
    eng_oracle *o = impl;
    return o->inner.kv_bytes_per_token(o->inner.impl, dt);
}

static int oracle_kv_create(void *impl, int num_blocks, int block_size, enum eng_cache_dtype dt, eng_kv_pool **out,
                            char *err, size_t errlen)
{
    eng_oracle *o = impl;
    return o->inner.kv_create(o->inner.impl, num_blocks, block_size, dt, out, err, errlen);
}

void eng_oracle_lm(eng_oracle *o, eng_lm *out, const eng_lm *inner, const int32_t *ref, int n_ref, bool run_mtp)
{
    o->inner = *inner;
    o->ref = ref;
    o->n_ref = n_ref;
    o->run_mtp = run_mtp && inner->mtp_forward;
    o->rows = 0;
    *out = *inner;
    out->impl = o;
    out->forward = oracle_forward;
    out->kv_bytes_per_token = oracle_kv_bytes;
    out->kv_create = oracle_kv_create;
    out->mtp_forward = oracle_mtp;
    if (out->hidden_size < 1) out->hidden_size = 1;
}
