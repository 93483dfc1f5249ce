/* scheduler.c — running set, FCFS waiting queue, budgets, preemption, finish rules. */
#include "scheduler.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct eng_sched {
    eng_sched_cfg   cfg;
    eng_kv_pool    *kv;
    eng_sched_seq **run;         /* running, in admission order */
    int             n_run;
    eng_sched_seq  *wait_head, *wait_tail;
    int             n_wait;
    eng_sched_seq  *all;         /* every sequence, any state (freed with the scheduler) */
    eng_sched_item *items;       /* the plan: at most max_num_seqs items */
    uint64_t        pc_queries, pc_hits;
};

/* ===== queue ===== */

static void wait_push_back(eng_sched *s, eng_sched_seq *q)
{
    q->next = NULL;
    q->prev = s->wait_tail;
    if (s->wait_tail) s->wait_tail->next = q;
    else s->wait_head = q;
    s->wait_tail = q;
    s->n_wait++;
    q->state = ENG_SEQ_WAITING;
}

static void wait_push_front(eng_sched *s, eng_sched_seq *q)
{
    q->prev = NULL;
    q->next = s->wait_head;
    if (s->wait_head) s->wait_head->prev = q;
    else s->wait_tail = q;
    s->wait_head = q;
    s->n_wait++;
    q->state = ENG_SEQ_WAITING;
}

static void wait_unlink(eng_sched *s, eng_sched_seq *q)
{
    if (q->prev) q->prev->next = q->next;
    else s->wait_head = q->next;
    if (q->next) q->next->prev = q->prev;
    else s->wait_tail = q->prev;
    q->prev = q->next = NULL;
    s->n_wait--;
}

static void run_unlink(eng_sched *s, eng_sched_seq *q)
{
    for (int i = 0; i < s->n_run; i++) {
        if (s->run[i] != q) continue;
        memmove(&s->run[i], &s->run[i + 1], sizeof *s->run * (size_t)(s->n_run - i - 1));
        s->n_run--;
        return;
    }
}

/* ===== lifecycle ===== */

int eng_sched_init(eng_sched **out, const eng_sched_cfg *cfg, eng_kv_pool *kv, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->max_num_seqs < 1 || cfg->max_batched_tokens < 1 || cfg->max_model_len < 2 || cfg->max_prompt_rows < 1)
        return pl_seterr(err, errlen, PL_ERR_INVALID,
                         "scheduler limits must be positive (max_num_seqs %d, max_num_batched_tokens %d, max_model_len %d)",
                         cfg->max_num_seqs, cfg->max_batched_tokens, cfg->max_model_len);
    if ((int64_t)eng_kv_n_blocks(kv) * eng_kv_block_size(kv) < cfg->max_model_len)
        return pl_seterr(err, errlen, PL_ERR_INVALID,
                         "KV cache holds %lld tokens, less than max_model_len %d: one sequence could never finish",
                         (long long)eng_kv_n_blocks(kv) * eng_kv_block_size(kv), cfg->max_model_len);
    int bs = eng_kv_block_size(kv);
    if (cfg->prefix_caching && (cfg->prefix_key_extra < 0 || eng_kv_prefix_enable(kv, bs + cfg->prefix_key_extra)))
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "cannot set up the prefix cache for %d blocks", eng_kv_n_blocks(kv));
    eng_sched *s = calloc(1, sizeof *s);
    if (s) {
        s->run = calloc((size_t)cfg->max_num_seqs, sizeof *s->run);
        s->items = calloc((size_t)cfg->max_num_seqs, sizeof *s->items);
    }
    if (!s || !s->run || !s->items) {
        if (s) { free(s->run); free(s->items); free(s); }
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    s->cfg = *cfg;
    s->kv = kv;
    *out = s;
    return PL_OK;
}

static void seq_free(eng_sched *s, eng_sched_seq *q)
{
    if (q->all_prev) q->all_prev->all_next = q->all_next;
    else if (s->all == q) s->all = q->all_next;
    if (q->all_next) q->all_next->all_prev = q->all_prev;
    eng_kv_table_free(s->kv, &q->kv);
    free(q->bhash);
    free(q->tokens);
    free(q->stop_ids);
    free(q);
}

void eng_sched_free(eng_sched *s)
{
    if (!s) return;
    while (s->all) eng_sched_remove(s, s->all);
    free(s->run);
    free(s->items);
    free(s);
}

/* Allocate a sequence holding prompt and room for max_tokens outputs. */
static eng_sched_seq *seq_new(eng_sched *s, const int32_t *prompt, int n_prompt, int max_tokens, int min_tokens,
                        const int32_t *stop_ids, int n_stop, bool prompt_logits, void *owner, int index)
{
    eng_sched_seq *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->owner = owner;
    q->index = index;
    q->n_prompt = q->n_tokens = n_prompt;
    q->max_tokens = max_tokens;
    q->min_tokens = min_tokens;
    q->prompt_logits = prompt_logits;
    q->stop_token = -1;
    q->tokens = malloc(sizeof *q->tokens * (size_t)(n_prompt + max_tokens));
    q->stop_ids = malloc(sizeof *q->stop_ids * (size_t)(n_stop ? n_stop : 1));
    if (!q->tokens || !q->stop_ids || eng_kv_table_init(s->kv, &q->kv, n_prompt + max_tokens) ||
        !(q->bhash = malloc(sizeof *q->bhash * (size_t)(q->kv.cap ? q->kv.cap : 1)))) {
        seq_free(s, q);
        return NULL;
    }
    q->all_next = s->all;
    if (s->all) s->all->all_prev = q;
    s->all = q;
    memcpy(q->tokens, prompt, sizeof *prompt * (size_t)n_prompt);
    if (n_stop) memcpy(q->stop_ids, stop_ids, sizeof *stop_ids * (size_t)n_stop);
    q->n_stop = n_stop;
    return q;
}

int eng_sched_add(eng_sched *s, const int32_t *prompt, int n_prompt, const eng_sched_params *p,
                  void *owner, int index, eng_sched_seq **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_prompt < 1) return pl_seterr(err, errlen, PL_ERR_TOOLONG, "the prompt is empty");
    if (n_prompt >= s->cfg.max_model_len)
        return pl_seterr(err, errlen, PL_ERR_TOOLONG,
                         "This model's maximum context length is %d tokens. However, your request has %d input tokens.",
                         s->cfg.max_model_len, n_prompt);
    if (p->max_tokens < 1 || p->min_tokens < 0 || p->n_stop < 0)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "max_tokens must be at least 1");
    int max_tokens = p->max_tokens;
    if (max_tokens > s->cfg.max_model_len - n_prompt) max_tokens = s->cfg.max_model_len - n_prompt;
    eng_sched_seq *q = seq_new(s, prompt, n_prompt, max_tokens, p->min_tokens, p->stop_ids, p->n_stop, p->prompt_logits,
                         owner, index);
    if (!q) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory for a sequence of %d tokens", n_prompt + max_tokens);
    wait_push_back(s, q);
    *out = q;
    return PL_OK;
}

int eng_sched_fork(eng_sched *s, const eng_sched_item *from, void *owner, int index, eng_sched_seq **out)
{
    *out = NULL;
    const eng_sched_seq *parent = from->seq;
    eng_sched_seq *q = seq_new(s, parent->tokens, parent->n_prompt, parent->max_tokens, parent->min_tokens,
                         parent->stop_ids, parent->n_stop, false, owner, index);
    if (!q) return PL_ERR_NOMEM;
    int bs = eng_kv_block_size(s->kv);
    int share = (parent->n_prompt - 1) / bs;
    if (share > parent->kv.n || from->pos + from->n < share * bs) share = 0;  /* parent's KV not there */
    if (share && eng_kv_table_share(s->kv, &parent->kv, share, &q->kv)) share = 0;
    q->n_computed = share * bs;
    wait_push_front(s, q);
    *out = q;
    return PL_OK;
}

void eng_sched_remove(eng_sched *s, eng_sched_seq *q)
{
    if (!q) return;
    if (q->state == ENG_SEQ_WAITING) wait_unlink(s, q);
    else if (q->state == ENG_SEQ_RUNNING) run_unlink(s, q);
    seq_free(s, q);
}

/* ===== planning ===== */

/* ===== prefix cache ===== */

static bool caching(const eng_sched *s) { return s->cfg.prefix_caching; }

/* Key of block b: its ids and prefix_key_extra more (they exist whenever
 * the block is registered or looked up: see the bounds below). */
static uint64_t block_hash(const eng_sched *s, const eng_sched_seq *q, int b)
{
    int bs = eng_kv_block_size(s->kv);
    return eng_kv_prefix_hash(b ? q->bhash[b - 1] : ENG_KV_HASH_ROOT, q->tokens + (size_t)b * bs,
                              bs + s->cfg.prefix_key_extra);
}

/* A sequence with nothing computed takes its cached leading blocks. A hit
 * must leave the last token to compute (its logits are needed), and the key
 * of block b reads ids up to (b+1)*bs + extra - 1: b+1 <= (n_tokens -
 * max(1, extra)) / bs bounds both. Sequences that want prompt logprobs compute every row
 * (vLLM skips the cache for them too). */
static void prefix_lookup(eng_sched *s, eng_sched_seq *q)
{
    if (!caching(s) || q->kv.n || q->n_computed || q->prompt_logits) return;
    int bs = eng_kv_block_size(s->kv), extra = s->cfg.prefix_key_extra;
    int max_b = (q->n_tokens - (extra > 1 ? extra : 1)) / bs;
    if (max_b > q->kv.cap) max_b = q->kv.cap;
    while (q->kv.n < max_b) {
        int b = q->kv.n;
        uint64_t h = block_hash(s, q, b);
        int blk = eng_kv_prefix_get(s->kv, h, b ? q->bhash[b - 1] : ENG_KV_HASH_ROOT, q->tokens + (size_t)b * bs);
        if (blk < 0) break;
        q->bhash[b] = h;
        q->kv.blocks[q->kv.n++] = blk;
    }
    q->n_hashed = q->kv.n;
    q->n_computed = q->kv.n * bs;
}

/* Register the blocks q completed. A block qualifies once every row of it
 * is computed and its key's ids exist: (b+1)*bs <= n_computed and
 * (b+1)*bs + extra <= n_tokens. Blocks found in the cache or shared from a
 * parent are registered already (eng_kv_prefix_put is then a no-op). */
static void prefix_register(eng_sched *s, eng_sched_seq *q)
{
    if (!caching(s)) return;
    int bs = eng_kv_block_size(s->kv), bound = q->n_computed;
    if (bound > q->n_tokens - s->cfg.prefix_key_extra) bound = q->n_tokens - s->cfg.prefix_key_extra;
    int nb = bound / bs;
    if (nb > q->kv.n) nb = q->kv.n;
    for (int b = q->n_hashed; b < nb; b++) {
        q->bhash[b] = block_hash(s, q, b);
        eng_kv_prefix_put(s->kv, q->kv.blocks[b], q->bhash[b], b ? q->bhash[b - 1] : ENG_KV_HASH_ROOT,
                          q->tokens + (size_t)b * bs);
    }
    if (nb > q->n_hashed) q->n_hashed = nb;
}

/* Drop every block (they stay findable while cached) and the work done. */
static void seq_release(eng_sched *s, eng_sched_seq *q)
{
    eng_kv_table_release(s->kv, &q->kv);
    q->n_computed = 0;
    q->n_hashed = 0;
    q->n_draft = 0;
}

void eng_sched_prefix_stats(const eng_sched *s, uint64_t *queries, uint64_t *hits)
{
    *queries = s->pc_queries;
    *hits = s->pc_hits;
}

/* Back to the queue front with nothing cached: recomputed from its tokens
 * (its registered blocks may still be found in the prefix cache). */
static void preempt(eng_sched *s, eng_sched_seq *q)
{
    run_unlink(s, q);
    seq_release(s, q);
    q->n_preempted++;
    wait_push_front(s, q);
}

/* Tokens q may compute this step under the token budget and, when it wants
 * prompt rows, the prompt-row budget. *n_logits / *sample / *n_draft
 * describe the rows; drafts that do not fit the budget are dropped. */
static int plan_chunk(const eng_sched_seq *q, int budget, int prow_left, int *n_logits, bool *sample, int *n_draft)
{
    int n = q->n_tokens + q->n_draft - q->n_computed;
    if (n > budget) n = budget;
    bool rows = q->prompt_logits && q->n_computed < q->n_prompt;
    if (rows) {
        bool ends = q->n_computed + n == q->n_tokens;
        /* every row of the chunk is a prompt row except the final one, which
         * samples; a chunk cut short by the row budget no longer samples */
        if ((ends ? n - 1 : n) > prow_left) n = prow_left;
    }
    *sample = n > 0 && q->n_computed + n >= q->n_tokens;
    *n_draft = *sample ? q->n_computed + n - q->n_tokens : 0;
    *n_logits = rows ? n : *sample ? 1 + *n_draft : 0;
    return n;
}

/* Positions q's table must cover for an item of n tokens: with speculative
 * decoding an item that samples reserves K more, for the MTP rows of the
 * drafts made after it (never past the sequence's last possible position). */
static int need_tokens(const eng_sched *s, const eng_sched_seq *q, int n, bool sample)
{
    int want = q->n_computed + n, cap = q->n_prompt + q->max_tokens;
    if (sample && s->cfg.num_spec_tokens > 0) {
        int ahead = want + s->cfg.num_spec_tokens;
        want = ahead < cap ? ahead : cap > want ? cap : want;
    }
    return want;
}

static void add_item(eng_sched_batch *b, eng_sched_seq *q, int n, int n_logits, bool sample, int n_draft)
{
    eng_sched_item *it = &b->items[b->n_items++];
    it->seq = q;
    it->pos = q->n_computed;
    it->n = n;
    it->n_logits = n_logits;
    it->n_draft = n_draft;
    it->sample = sample;
    b->n_tokens += n;
    b->n_logit_rows += n_logits;
}

void eng_sched_step(eng_sched *s, eng_sched_batch *b)
{
    memset(b, 0, sizeof *b);
    b->items = s->items;
    int budget = s->cfg.max_batched_tokens, prow = s->cfg.max_prompt_rows;

    for (int i = 0; i < s->n_run && budget > 0; i++) {
        eng_sched_seq *q = s->run[i];
        int n_logits, n_draft;
        bool sample;
        int n = plan_chunk(q, budget, prow, &n_logits, &sample, &n_draft);
        if (n <= 0) continue;
        int rc;
        while ((rc = eng_kv_table_ensure(s->kv, &q->kv, need_tokens(s, q, n, sample))) == PL_ERR_AGAIN) {
            eng_sched_seq *victim = s->run[s->n_run - 1];
            preempt(s, victim);
            b->n_preempted++;
            if (victim == q) break;
        }
        if (rc) continue;   /* q itself went back to the queue */
        add_item(b, q, n, n_logits, sample, n_draft);
        budget -= n;
        prow -= n_logits - sample;
    }
    if (b->n_preempted) return;

    while (s->wait_head && budget > 0 && s->n_run < s->cfg.max_num_seqs) {
        eng_sched_seq *q = s->wait_head;
        int n_logits, n_draft;
        bool sample;
        bool fresh = !q->kv.n && !q->n_computed;
        prefix_lookup(s, q);
        int n = plan_chunk(q, budget, prow, &n_logits, &sample, &n_draft);
        if (n <= 0 || eng_kv_table_ensure(s->kv, &q->kv, need_tokens(s, q, n, sample))) {
            if (fresh) seq_release(s, q);   /* gives the hits back: it waits with nothing held */
            break;
        }
        if (!q->looked_up) {
            q->looked_up = true;
            q->n_cached = q->n_computed;
            if (caching(s) && fresh && !q->prompt_logits) {
                s->pc_queries += (uint64_t)q->n_tokens;
                s->pc_hits += (uint64_t)q->n_computed;
            }
        }
        wait_unlink(s, q);
        q->state = ENG_SEQ_RUNNING;
        s->run[s->n_run++] = q;
        add_item(b, q, n, n_logits, sample, n_draft);
        budget -= n;
        prow -= n_logits - sample;
    }
}

/* ===== results ===== */

static bool is_stop(const eng_sched_seq *q, int32_t t)
{
    for (int i = 0; i < q->n_stop; i++)
        if (q->stop_ids[i] == t) return true;
    return false;
}

enum eng_finish eng_sched_commit_n(eng_sched *s, const eng_sched_item *it, const int32_t *tokens, int n,
                                   int *n_taken)
{
    eng_sched_seq *q = it->seq;
    if (n_taken) *n_taken = 0;
    if (!it->sample) {
        q->n_computed = it->pos + it->n;
        prefix_register(s, q);
        return ENG_FINISH_NONE;
    }
    /* Inputs before the drafts were committed tokens; of the drafts, those
     * kept (accepted, and not cut by a finish) are committed now, so their
     * rows are valid too. The rows of the rest are not. */
    int base = it->pos + it->n - it->n_draft, taken = 0;
    enum eng_finish f = ENG_FINISH_NONE;
    while (taken < n && f == ENG_FINISH_NONE) {
        int32_t token = tokens[taken++];
        assert(taken == n || (taken <= it->n_draft && token == q->tokens[q->n_tokens]));   /* an accepted draft */
        q->tokens[q->n_tokens++] = token;
        int n_out = eng_sched_seq_n_output(q);
        /* vLLM's order: the length cap wins over a stop id on the same token */
        if (n_out >= q->max_tokens || q->n_tokens >= s->cfg.max_model_len) {
            f = ENG_FINISH_LENGTH;
        } else if (n_out >= q->min_tokens && is_stop(q, token)) {
            f = ENG_FINISH_STOP;
            q->stop_token = token;
        }
    }
    q->n_computed = base + (taken < n - 1 ? taken : n - 1);
    q->n_draft = 0;
    if (n_taken) *n_taken = taken;
    prefix_register(s, q);
    if (f != ENG_FINISH_NONE) {
        q->finish = f;
        run_unlink(s, q);
        seq_release(s, q);
        q->state = ENG_SEQ_FINISHED;
    }
    return f;
}

enum eng_finish eng_sched_commit(eng_sched *s, const eng_sched_item *it, int32_t token)
{
    return eng_sched_commit_n(s, it, &token, 1, NULL);
}

int eng_sched_spec_room(const eng_sched *s, const eng_sched_seq *q)
{
    if (q->state != ENG_SEQ_RUNNING || q->n_computed != q->n_tokens - 1) return 0;
    int room = q->max_tokens - eng_sched_seq_n_output(q) - 1;
    return room < s->cfg.num_spec_tokens ? (room > 0 ? room : 0) : s->cfg.num_spec_tokens;
}

void eng_sched_set_drafts(eng_sched *s, eng_sched_seq *q, const int32_t *d, int n)
{
    int room = eng_sched_spec_room(s, q);
    if (n > room) n = room;
    if (n < 0) n = 0;
    memcpy(q->tokens + q->n_tokens, d, sizeof *d * (size_t)n);
    q->n_draft = n;
}

int  eng_sched_n_running(const eng_sched *s) { return s->n_run; }
int  eng_sched_n_waiting(const eng_sched *s) { return s->n_wait; }
bool eng_sched_has_work(const eng_sched *s) { return s->n_run > 0 || s->n_wait > 0; }
const eng_sched_cfg *eng_sched_config(const eng_sched *s) { return &s->cfg; }
