/* oracle.h — an "oracle" MTP for benchmarks and tests (never in the engine).
 *
 * Wraps an eng_lm (serve.h) so that its drafts are the tokens the target
 * will produce: the draft logits row at MTP position p is one-hot on
 * ref[p + 2] (the MTP at p reads token p+1 and predicts token p+2), where ref
 * is the whole sequence, prompt then the target's own greedy continuation.
 * Every draft is then accepted at temperature 0, which measures what
 * verification alone costs and gains: the speedup a perfectly predicting
 * MTP would give. All sequences of a run share ref (one prompt).
 * With run_mtp the real MTP layer still runs first (its cost is paid, its
 * cache rows written), else drafts are free and the MTP rows unwritten (do
 * not combine that with prefix caching across requests). */
#ifndef ENG_ORACLE_H
#define ENG_ORACLE_H

#include <stdbool.h>
#include "../../engine/serve.h"

typedef struct eng_oracle {
    eng_lm inner;
    const int32_t *ref;
    int n_ref;
    bool run_mtp;
    long rows;                  /* draft rows produced */
} eng_oracle;

/* out: inner with mtp_forward replaced; o must outlive out. */
void eng_oracle_lm(eng_oracle *o, eng_lm *out, const eng_lm *inner, const int32_t *ref, int n_ref, bool run_mtp);

#endif
