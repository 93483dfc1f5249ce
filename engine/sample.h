/* sample.h — choosing the next token from one row of logits.
 *
 * Order (vLLM V1's sampler, so results compare with it):
 *   1. raw logprobs: log_softmax of the model's logits, before anything
 *      below (vLLM's default --logprobs-mode raw_logprobs). The chosen token's
 *      logprob and the top-N alternatives come from these.
 *   2. min_tokens: stop ids get -inf while fewer than min_tokens were output.
 *   3. repetition_penalty (HF: over prompt + output tokens; positive logits
 *      divided, negative multiplied), then frequency_penalty * count and
 *      presence_penalty (OpenAI: over output tokens only) subtracted.
 *   4. temperature < ENG_GREEDY_EPS: greedy argmax (lowest id on ties); done.
 *   5. divide by temperature; min_p: drop tokens whose probability is below
 *      min_p * the top probability; top_k: keep logits >= the k-th largest;
 *      top_p: keep the smallest set of most likely tokens whose mass reaches
 *      top_p (the token that crosses it is kept).
 *   6. draw: inverse CDF over the kept tokens in id order with one uniform
 *      number u = f(rng key, output index). The key comes from the request's
 *      seed and choice index, so a seeded choice draws the same u for its
 *      k-th token whatever else is in the batch.
 *
 * The sampler holds vocab-sized scratch allocated once; eng_sample does not
 * allocate. One sampler per thread. */
#ifndef ENG_SAMPLE_H
#define ENG_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>
#include "pl.h"

#define ENG_MAX_LOGPROBS 20      /* vLLM's default --max-logprobs */
#define ENG_GREEDY_EPS   1e-5    /* temperatures below this sample greedily (vLLM's _SAMPLING_EPS) */

/* Per-request sampling parameters (docs/protocol.md `sampling`). */
typedef struct eng_sampling {
    double  temperature;
    double  top_p;
    int     top_k;               /* <= 0: off (the wire's -1 and 0) */
    double  min_p;
    double  presence_penalty, frequency_penalty;
    double  repetition_penalty;
    int     min_tokens;
    int     logprobs;            /* -1: none; else top-N alternatives per token */
    int     prompt_logprobs;     /* -1: none; else top-N per prompt token */
    bool    has_seed;
    int64_t seed;
} eng_sampling;

void eng_sampling_defaults(eng_sampling *p);

/* Reject what cannot be sampled: NaN or infinite values, temperature < 0,
 * top_p outside (0, 1], min_p outside [0, 1], presence/frequency outside
 * [-2, 2] (OpenAI's range), repetition_penalty <= 0, min_tokens < 0,
 * logprobs/prompt_logprobs outside [0, ENG_MAX_LOGPROBS], and top_k > vocab
 * (an error rather than a silent clamp: the request asked for something this
 * model cannot mean). PL_ERR_INVALID with a message naming the field. */
int eng_sampling_check(const eng_sampling *p, int vocab, char *err, size_t errlen);

static inline bool eng_sampling_greedy(const eng_sampling *p) { return p->temperature < ENG_GREEDY_EPS; }

/* ===== counter-based RNG ===== */

/* The key of one choice's stream: a hash of (seed, choice index). */
uint64_t eng_rng_key(uint64_t seed, uint64_t stream);
/* Uniform in [0, 1) for draw number `counter` of the stream: a pure function,
 * so the k-th draw never depends on what was drawn before or elsewhere. */
double eng_rng_uniform(uint64_t key, uint64_t counter);

/* ===== sampling ===== */

/* What the sampler reads about one sequence. Token ids must be < vocab. */
typedef struct eng_sample_seq {
    const eng_sampling *p;
    const int32_t *prompt;   int n_prompt;
    const int32_t *output;   int n_output;  /* tokens generated so far */
    const int32_t *stop_ids; int n_stop;    /* masked while n_output < min_tokens */
    uint64_t rng_key;                        /* eng_rng_key(...) */
} eng_sample_seq;

typedef struct eng_logprob {
    int32_t id;
    float   logprob;
} eng_logprob;

typedef struct eng_sample_out {
    int32_t     token;
    float       logprob;                  /* raw logprob of token (set when asked) */
    int         n_top;
    eng_logprob top[ENG_MAX_LOGPROBS];    /* best first; equal values: lower id first */
} eng_sample_out;

typedef struct eng_sampler eng_sampler;

int  eng_sampler_init(eng_sampler **out, int vocab, char *err, size_t errlen);
void eng_sampler_free(eng_sampler *s);
int  eng_sampler_vocab(const eng_sampler *s);

/* Choose the next token for q from logits[0..vocab). Fills out->token, and
 * out->logprob / out->top when q->p->logprobs >= 0. PL_ERR_INVALID when no
 * token can be chosen (every logit NaN or masked). */
int eng_sample(eng_sampler *s, const eng_sample_seq *q, const float *logits, eng_sample_out *out);

/* Raw logprob of `token` and the n_top best alternatives (prompt logprobs). */
void eng_sample_logprobs(eng_sampler *s, const float *logits, int32_t token, int n_top, eng_sample_out *out);

/* Index of the largest finite value, lowest on ties; -1 when none (greedy
 * drafting: argmax of the draft logits, vLLM's default draft sampling). */
int32_t eng_sample_argmax(const float *logits, int n);

/* ===== speculative verification (doc glm5-architecture §4.4) =====
 *
 * k drafts d_1..d_k sit right after q's output (q->output[q->n_output + j]
 * = d_{j+1}); rows + j*vocab (j = 0..k) is the target's logits row that
 * scores the token after the j-th of them (row 0: after the last committed
 * token). For j = 0, 1, ...: x_j = eng_sample of row j with the output
 * extended by d_1..d_j (penalties, min_tokens and the draw counter see the
 * drafts exactly as if they had been generated); x_j is emitted; the run
 * stops at the first x_j != d_{j+1} (x_j is the correction) or after x_k
 * (the bonus token). Returns the number emitted (1..k+1) in out[0..), or 0
 * when a row has nothing to sample (PL_ERR_INVALID from eng_sample).
 *
 * At temperature 0 this is vLLM's greedy acceptance (exact match). Above 0
 * it is rejection sampling with greedy drafts (q = one-hot on d_j): accept
 * d_j with probability p(d_j), else emit a token drawn from p with d_j
 * removed and renormalised. Drawing x_j ~ p by inverse CDF with the
 * position's own uniform and accepting iff x_j == d_j realises exactly
 * that: P(accept) = p(d_j), and a rejected x_j is distributed as p over the
 * other tokens, renormalised. So emitted tokens have the target
 * distribution, and — since the uniform is the one non-speculative decoding
 * draws for that output index — a seeded request gives the same tokens with
 * and without speculation. */
int eng_sample_verify(eng_sampler *s, const eng_sample_seq *q, const float *rows, int k, eng_sample_out *out);

#endif
