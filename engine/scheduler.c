/* scheduler.c — running set, FCFS waiting queue, budgets, preemption, finish rules. */
#include "scheduler.h"

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
    if (!q->tokens || !q->stop_ids || eng_kv_table_init(s->kv, &q->kv, n_prompt + max_tokens)) {
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

/* Back to the queue front with nothing cached: recomputed from its tokens. */
static void preempt(eng_sched *s, eng_sched_seq *q)
{
    run_unlink(s, q);
    eng_kv_table_release(s->kv, &q->kv);
    q->n_computed = 0;
    q->n_preempted++;
    wait_push_front(s, q);
}

/* Tokens q may compute this step under the token budget and, when it wants
 * prompt rows, the prompt-row budget. *n_logits / *sample describe the rows. */
static int plan_chunk(const eng_sched_seq *q, int budget, int prow_left, int *n_logits, bool *sample)
{
    int n = q->n_tokens - q->n_computed;
    if (n > budget) n = budget;
    bool rows = q->prompt_logits && q->n_computed < q->n_prompt;
    if (rows) {
        bool ends = q->n_computed + n == q->n_tokens;
        /* every row of the chunk is a prompt row except the final one, which
         * samples; a chunk cut short by the row budget no longer samples */
        if ((ends ? n - 1 : n) > prow_left) n = prow_left;
    }
    *sample = n > 0 && q->n_computed + n == q->n_tokens;
    *n_logits = rows ? n : *sample;
    return n;
}

static void add_item(eng_sched_batch *b, eng_sched_seq *q, int n, int n_logits, bool sample)
{
    eng_sched_item *it = &b->items[b->n_items++];
    it->seq = q;
    it->pos = q->n_computed;
    it->n = n;
    it->n_logits = n_logits;
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
        int n_logits;
        bool sample;
        int n = plan_chunk(q, budget, prow, &n_logits, &sample);
        if (n <= 0) continue;
        int rc;
        while ((rc = eng_kv_table_ensure(s->kv, &q->kv, q->n_computed + n)) == PL_ERR_AGAIN) {
            eng_sched_seq *victim = s->run[s->n_run - 1];
            preempt(s, victim);
            b->n_preempted++;
            if (victim == q) break;
        }
        if (rc) continue;   /* q itself went back to the queue */
        add_item(b, q, n, n_logits, sample);
        budget -= n;
        prow -= n_logits - sample;
    }
    if (b->n_preempted) return;

    while (s->wait_head && budget > 0 && s->n_run < s->cfg.max_num_seqs) {
        eng_sched_seq *q = s->wait_head;
        int n_logits;
        bool sample;
        int n = plan_chunk(q, budget, prow, &n_logits, &sample);
        if (n <= 0 || eng_kv_table_ensure(s->kv, &q->kv, q->n_computed + n)) break;   /* waits */
        wait_unlink(s, q);
        q->state = ENG_SEQ_RUNNING;
        s->run[s->n_run++] = q;
        add_item(b, q, n, n_logits, sample);
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

enum eng_finish eng_sched_commit(eng_sched *s, const eng_sched_item *it, int32_t token)
{
    eng_sched_seq *q = it->seq;
    q->n_computed = it->pos + it->n;
    if (!it->sample) return ENG_FINISH_NONE;
    q->tokens[q->n_tokens++] = token;
    int n_out = eng_sched_seq_n_output(q);
    enum eng_finish f = ENG_FINISH_NONE;
    /* vLLM's order: the length cap wins over a stop id on the same token */
    if (n_out >= q->max_tokens || q->n_tokens >= s->cfg.max_model_len) {
        f = ENG_FINISH_LENGTH;
    } else if (n_out >= q->min_tokens && is_stop(q, token)) {
        f = ENG_FINISH_STOP;
        q->stop_token = token;
    }
    if (f != ENG_FINISH_NONE) {
        q->finish = f;
        run_unlink(s, q);
        eng_kv_table_release(s->kv, &q->kv);
        q->state = ENG_SEQ_FINISHED;
    }
    return f;
}

int  eng_sched_n_running(const eng_sched *s) { return s->n_run; }
int  eng_sched_n_waiting(const eng_sched *s) { return s->n_wait; }
bool eng_sched_has_work(const eng_sched *s) { return s->n_run > 0 || s->n_wait > 0; }
const eng_sched_cfg *eng_sched_config(const eng_sched *s) { return &s->cfg; }
