/* scheduler.h — who runs in the next engine step (continuous batching).
 *
 * Sequences (one per choice of a request) join and leave between steps.
 * Each step gets a token budget (--max-num-batched-tokens) and a sequence
 * budget (--max-num-seqs), filled in this order:
 *   1. running sequences, oldest first: a decoding one takes 1 token, one
 *      still prefilling takes the next chunk of its prompt (chunked prefill:
 *      what the budget allows), so prefill and decode share steps;
 *   2. waiting sequences, first come first served, while budgets and KV
 *      blocks allow. A sequence whose blocks cannot be had stops admission:
 *      it waits (nobody behind it jumps the queue).
 * With prefix caching on, a sequence admitted with nothing computed first
 * takes the longest run of its leading full blocks that the KV pool has
 * cached (kv.h), and computes only the rest; after each commit the blocks
 * it completed are registered for others. A hit never covers the last
 * token: its logits are needed.
 * Speculative decoding (num_spec_tokens K > 0): after a step the caller
 * may give a decoding sequence up to K draft tokens (eng_sched_set_drafts);
 * the next step verifies them: the item covers [last token, d_1..d_k] and
 * asks logits for all k+1 rows, and eng_sched_commit_n takes the accepted
 * drafts plus the token after them. Items that sample also reserve blocks
 * for K positions more, where the next drafts' MTP rows go (vLLM's
 * lookahead slots).
 * When a running sequence needs a block and none is free, the most recently
 * admitted running sequence is preempted: its blocks are freed and it goes
 * back to the front of the queue to be recomputed from its tokens later
 * (vLLM's recompute preemption). No admission happens in a step that
 * preempted.
 *
 * The scheduler decides; it computes nothing. The caller runs the model on
 * the planned batch, samples where asked, then reports each item back with
 * eng_sched_commit, which appends the sampled token and applies the finish
 * rules (stop ids after min_tokens, max_tokens, max_model_len). A finished
 * or removed sequence gives its KV blocks back at once. */
#ifndef ENG_SCHEDULER_H
#define ENG_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>
#include "kv.h"

typedef struct eng_sched eng_sched;

typedef struct eng_sched_cfg {
    int max_num_seqs;          /* running sequences at most */
    int max_batched_tokens;    /* tokens computed per step at most */
    int max_model_len;         /* prompt + output positions at most */
    int max_prompt_rows;       /* logits rows per step for prompt logprobs (>= 1) */
    bool prefix_caching;       /* look up and register full blocks (kv.h prefix cache) */
    int prefix_key_extra;      /* ids after a block its rows depend on (1 with an MTP layer) */
    int num_spec_tokens;       /* K: drafts per sequence and step at most (0: off) */
} eng_sched_cfg;

enum eng_seq_state { ENG_SEQ_WAITING, ENG_SEQ_RUNNING, ENG_SEQ_FINISHED };
enum eng_finish { ENG_FINISH_NONE, ENG_FINISH_STOP, ENG_FINISH_LENGTH };

/* What a sequence is asked to do. */
typedef struct eng_sched_params {
    int max_tokens;            /* output tokens; clamped to max_model_len - prompt */
    int min_tokens;            /* stop ids do not finish it before this many */
    const int32_t *stop_ids;   /* copied */
    int n_stop;
    bool prompt_logits;        /* want a logits row for every prompt position */
} eng_sched_params;

/* A sequence. Fields are read-only outside scheduler.c. */
typedef struct eng_sched_seq {
    void    *owner;            /* the caller's (the request) */
    int      index;            /* choice index */
    int32_t *tokens;           /* prompt, output, then n_draft drafts; capacity n_prompt + max_tokens */
    int      n_prompt, n_tokens;
    int      n_computed;       /* positions whose KV is in the cache */
    int      n_draft;          /* draft tokens at tokens[n_tokens ...] awaiting verification */
    int      max_tokens, min_tokens;
    int32_t *stop_ids;
    int      n_stop;
    bool     prompt_logits;
    enum eng_seq_state state;
    enum eng_finish finish;
    int32_t  stop_token;       /* the id that finished it with STOP, else -1 */
    int      n_preempted;      /* times it was preempted (stats, tests) */
    int      n_cached;         /* positions found in the prefix cache at first admission */
    bool     looked_up;        /* its first prefix-cache lookup happened */
    uint64_t *bhash;           /* [kv.cap] chained hash of blocks [0, n_hashed) */
    int      n_hashed;         /* leading blocks registered (or found) in the prefix cache */
    eng_kv_table kv;
    struct eng_sched_seq *prev, *next;   /* waiting queue links */
    struct eng_sched_seq *all_prev, *all_next;   /* every sequence the scheduler holds */
} eng_sched_seq;

static inline int eng_sched_seq_n_output(const eng_sched_seq *q) { return q->n_tokens - q->n_prompt; }

/* One sequence's share of a step: compute positions [pos, pos + n) whose ids
 * are seq->tokens[pos ...]; the model returns logits for the last n_logits of
 * them. sample: the last committed token is among them, so the caller
 * samples the next one from its row. n_draft: the last n_draft ids are
 * drafts to verify (then n_logits = 1 + n_draft: the row of the newest
 * token, then one per draft). */
typedef struct eng_sched_item {
    eng_sched_seq *seq;
    int      pos, n, n_logits, n_draft;
    bool     sample;
} eng_sched_item;

typedef struct eng_sched_batch {
    eng_sched_item *items;     /* owned by the scheduler; valid until the next step */
    int n_items;
    int n_tokens;              /* sum of n */
    int n_logit_rows;          /* sum of n_logits */
    int n_preempted;           /* sequences preempted while planning this step */
} eng_sched_batch;

/* kv must hold at least max_model_len positions (one sequence always fits). */
int  eng_sched_init(eng_sched **out, const eng_sched_cfg *cfg, eng_kv_pool *kv, char *err, size_t errlen);
void eng_sched_free(eng_sched *s);   /* frees every sequence left, finished ones too */

/* A new sequence at the back of the queue. PL_ERR_TOOLONG when the prompt is
 * empty or leaves no room for one token under max_model_len. */
int eng_sched_add(eng_sched *s, const int32_t *prompt, int n_prompt, const eng_sched_params *p,
                  void *owner, int index, eng_sched_seq **out, char *err, size_t errlen);

/* A sibling of from->seq (same prompt and params, another choice) at the
 * FRONT of the queue: it shares the parent's full prompt blocks (their
 * reference counts go up) and computes only the prompt's tail itself. Call
 * it with the item of the step that completed the parent's prompt, after
 * the forward and before committing that item (a commit that finishes the
 * parent releases its blocks). */
int eng_sched_fork(eng_sched *s, const eng_sched_item *from, void *owner, int index, eng_sched_seq **out);

/* Take a sequence out in any state and free it: blocks go back at once. */
void eng_sched_remove(eng_sched *s, eng_sched_seq *q);

/* Plan the next step. batch->n_items == 0 when nothing can run. */
void eng_sched_step(eng_sched *s, eng_sched_batch *batch);

/* Report one planned item as computed. tokens[0..n): when item->sample, the
 * new tokens: the drafts the caller accepted (tokens[j] == draft j+1 for
 * j < n-1, so n - 1 <= item->n_draft) and the token after them; they are
 * appended one by one under the finish rules (length first, then stop ids
 * after min_tokens), so a finish inside the run cuts it: *n_taken says how
 * many were kept (may be NULL). Ignored for items that do not sample.
 * Returns how the sequence finished (ENG_FINISH_NONE while it goes on); a
 * finished sequence has released its blocks and left the running set, and
 * stays readable until removed. Drafts not accepted are dropped; the cache
 * rows the step wrote for them lie past n_computed and are overwritten. */
enum eng_finish eng_sched_commit_n(eng_sched *s, const eng_sched_item *item, const int32_t *tokens, int n,
                                   int *n_taken);
/* One token: eng_sched_commit_n(s, item, &token, 1, NULL). */
enum eng_finish eng_sched_commit(eng_sched *s, const eng_sched_item *item, int32_t token);

/* Drafts a running, decoding sequence can use next step: min(K, tokens it
 * may still produce - 1) (verification yields up to drafts + 1); 0 when it
 * is not decoding. */
int  eng_sched_spec_room(const eng_sched *s, const eng_sched_seq *q);
/* Give q drafts d[0..n) (n cut to eng_sched_spec_room) for the next step. */
void eng_sched_set_drafts(eng_sched *s, eng_sched_seq *q, const int32_t *d, int n);

/* Prefix cache counters (tokens), vLLM's: queries = tokens of sequences
 * looked up at their first admission, hits = tokens found. */
void eng_sched_prefix_stats(const eng_sched *s, uint64_t *queries, uint64_t *hits);

int  eng_sched_n_running(const eng_sched *s);
int  eng_sched_n_waiting(const eng_sched *s);
bool eng_sched_has_work(const eng_sched *s);
const eng_sched_cfg *eng_sched_config(const eng_sched *s);

#endif
