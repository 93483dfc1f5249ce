/* Continuous batching (engine/scheduler.h): budgets, chunked prefill,
 * waiting for blocks, preemption, finish rules, abort, forked choices. */
#include "test.h"

#include "../../engine/scheduler.h"

typedef struct fx {
    eng_kv_pool *kv;
    eng_sched   *s;
} fx;

static int fx_open_cfg(fx *f, int n_blocks, int bs, int max_seqs, int max_tokens, int max_len, bool caching,
                      int key_extra)
{
    char err[256];
    memset(f, 0, sizeof *f);
    eng_sched_cfg c = { .max_num_seqs = max_seqs, .max_batched_tokens = max_tokens, .max_model_len = max_len,
                        .max_prompt_rows = 8, .prefix_caching = caching, .prefix_key_extra = key_extra };
    if (eng_kv_pool_create(NULL, NULL, ENG_CACHE_F32, n_blocks, bs, &f->kv, err, sizeof err) ||
        eng_sched_init(&f->s, &c, f->kv, err, sizeof err)) {
        fprintf(stderr, "  %s\n", err);
        return -1;
    }
    return 0;
}

static int fx_open(fx *f, int n_blocks, int bs, int max_seqs, int max_tokens, int max_len)
{
    return fx_open_cfg(f, n_blocks, bs, max_seqs, max_tokens, max_len, false, 0);
}

static void fx_close(fx *f)
{
    eng_sched_free(f->s);
    eng_kv_pool_free(f->kv);
}

static eng_sched_seq *add(fx *f, int n_prompt, int max_tokens)
{
    static int32_t prompt[4096];
    for (int i = 0; i < n_prompt; i++) prompt[i] = i % 50;
    eng_sched_params p = { .max_tokens = max_tokens };
    eng_sched_seq *q = NULL;
    char err[256];
    if (eng_sched_add(f->s, prompt, n_prompt, &p, NULL, 0, &q, err, sizeof err)) fprintf(stderr, "  %s\n", err);
    return q;
}

static const eng_sched_item *find(const eng_sched_batch *b, const eng_sched_seq *q)
{
    for (int i = 0; i < b->n_items; i++) if (b->items[i].seq == q) return &b->items[i];
    return NULL;
}

/* Commit every item, sampling token 7 where asked; returns finished count. */
static int commit_all(fx *f, const eng_sched_batch *b)
{
    int fin = 0;
    for (int i = 0; i < b->n_items; i++) fin += eng_sched_commit(f->s, &b->items[i], 7) != ENG_FINISH_NONE;
    return fin;
}

TEST(sched_join_and_leave_between_steps)
{
    fx f;
    if (fx_open(&f, 64, 4, 8, 64, 128)) { CHECK(0); return; }
    eng_sched_seq *a = add(&f, 5, 3), *b2 = add(&f, 3, 1);
    eng_sched_batch b;
    eng_sched_step(f.s, &b);
    CHECK_EQ_INT(b.n_items, 2);
    const eng_sched_item *ia = find(&b, a), *ib = find(&b, b2);
    CHECK(ia && ia->pos == 0 && ia->n == 5 && ia->sample && ia->n_logits == 1);
    CHECK(ib && ib->n == 3 && ib->sample);
    CHECK_EQ_INT(b.n_tokens, 8);
    CHECK_EQ_INT(commit_all(&f, &b), 1);               /* b2 had max_tokens 1 */
    CHECK(b2->state == ENG_SEQ_FINISHED && b2->finish == ENG_FINISH_LENGTH && b2->kv.n == 0);
    eng_sched_remove(f.s, b2);
    /* a newcomer's prefill shares the step with a's decode */
    eng_sched_seq *c = add(&f, 6, 2);
    eng_sched_step(f.s, &b);
    CHECK_EQ_INT(b.n_items, 2);
    CHECK(b.items[0].seq == a && b.items[0].n == 1 && b.items[0].pos == 5);
    CHECK(b.items[1].seq == c && b.items[1].n == 6);
    commit_all(&f, &b);
    CHECK_EQ_INT(eng_sched_seq_n_output(a), 2);
    CHECK_EQ_INT(a->tokens[5], 7);
    eng_sched_step(f.s, &b);
    CHECK_EQ_INT(commit_all(&f, &b), 2);               /* a: 3 tokens, c: 2 */
    CHECK(!eng_sched_has_work(f.s));
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 64);             /* finished sequences gave their blocks back */
    eng_sched_remove(f.s, a);
    eng_sched_remove(f.s, c);
    fx_close(&f);
}

TEST(sched_chunked_prefill_budget)
{
    fx f;
    if (fx_open(&f, 64, 4, 8, 10, 256)) { CHECK(0); return; }
    eng_sched_seq *d = add(&f, 4, 50);
    eng_sched_batch b;
    eng_sched_step(f.s, &b);
    commit_all(&f, &b);                                 /* d now decodes */
    eng_sched_seq *l = add(&f, 25, 5);
    int chunks[8], n = 0;
    while (l->n_computed < 25 && n < 8) {
        eng_sched_step(f.s, &b);
        CHECK(b.n_tokens <= 10);
        const eng_sched_item *id = find(&b, d), *il = find(&b, l);
        CHECK(id && id->n == 1);                        /* the decode always gets its token first */
        CHECK(il != NULL);
        if (!il) break;
        chunks[n++] = il->n;
        CHECK(il->sample == (il->pos + il->n == 25));
        CHECK_EQ_INT(il->n_logits, il->sample ? 1 : 0);
        commit_all(&f, &b);
    }
    CHECK_EQ_INT(n, 3);
    CHECK(chunks[0] == 9 && chunks[1] == 9 && chunks[2] == 7);
    CHECK_EQ_INT(eng_sched_seq_n_output(l), 1);
    fx_close(&f);
}

TEST(sched_max_num_seqs)
{
    fx f;
    if (fx_open(&f, 64, 4, 2, 100, 64)) { CHECK(0); return; }
    eng_sched_seq *q[3];
    for (int i = 0; i < 3; i++) q[i] = add(&f, 2, 2);
    eng_sched_batch b;
    eng_sched_step(f.s, &b);
    CHECK_EQ_INT(b.n_items, 2);
    CHECK(q[2]->state == ENG_SEQ_WAITING);
    CHECK_EQ_INT(eng_sched_n_running(f.s), 2);
    CHECK_EQ_INT(eng_sched_n_waiting(f.s), 1);
    commit_all(&f, &b);
    eng_sched_step(f.s, &b);
    CHECK_EQ_INT(b.n_items, 2);                          /* still full */
    CHECK_EQ_INT(commit_all(&f, &b), 2);
    eng_sched_step(f.s, &b);
    CHECK(b.n_items == 1 && b.items[0].seq == q[2]);     /* joins when a slot frees */
    fx_close(&f);
}

TEST(sched_waits_for_blocks_fcfs)
{
    fx f;
    /* 6 blocks of 4 = 24 tokens; max_model_len 16 */
    if (fx_open(&f, 6, 4, 8, 100, 16)) { CHECK(0); return; }
    eng_sched_seq *a = add(&f, 12, 2);   /* 3 blocks, then a 4th */
    eng_sched_seq *b2 = add(&f, 9, 2);   /* 3 blocks: only 3 left after a -> waits? 3 fit */
    eng_sched_seq *c = add(&f, 2, 1);    /* 1 block: fits only after others */
    eng_sched_batch b;
    eng_sched_step(f.s, &b);
    CHECK_EQ_INT(b.n_items, 2);
    CHECK(c->state == ENG_SEQ_WAITING);  /* no block left */
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 0);
    commit_all(&f, &b);
    /* a (13 tokens) needs a 4th block: b2, the latest admitted, is preempted */
    eng_sched_step(f.s, &b);
    CHECK_EQ_INT(b.n_preempted, 1);
    CHECK(b2->state == ENG_SEQ_WAITING && b2->n_computed == 0 && b2->kv.n == 0 && b2->n_preempted == 1);
    CHECK(b.n_items == 1 && b.items[0].seq == a);
    CHECK(f.s && eng_sched_n_waiting(f.s) == 2);
    CHECK_EQ_INT(commit_all(&f, &b), 1);                 /* a done: blocks back */
    /* the preempted one goes first again (queue front), recomputing prompt + its token */
    eng_sched_step(f.s, &b);
    CHECK(b.n_items == 2 && b.items[0].seq == b2 && b.items[0].n == 10 && b.items[0].sample);
    CHECK(b.items[1].seq == c);
    commit_all(&f, &b);
    CHECK(b2->state == ENG_SEQ_FINISHED && eng_sched_seq_n_output(b2) == 2);
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 6);
    fx_close(&f);
}

TEST(sched_fcfs_no_jumping)
{
    fx f;
    if (fx_open(&f, 4, 4, 8, 100, 16)) { CHECK(0); return; }
    eng_sched_seq *a = add(&f, 8, 8);    /* 2 blocks */
    eng_sched_batch b;
    eng_sched_step(f.s, &b);
    commit_all(&f, &b);
    eng_sched_seq *big = add(&f, 12, 1); /* 3 blocks: 2 free -> waits */
    eng_sched_seq *small = add(&f, 2, 1);/* would fit, but stays behind big */
    eng_sched_step(f.s, &b);
    CHECK(b.n_items == 1 && b.items[0].seq == a);
    CHECK(big->state == ENG_SEQ_WAITING && small->state == ENG_SEQ_WAITING);
    commit_all(&f, &b);
    /* abort a: its blocks are free at once, big runs next step */
    eng_sched_remove(f.s, a);
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 4);
    eng_sched_step(f.s, &b);
    CHECK(b.n_items == 2 && b.items[0].seq == big && b.items[1].seq == small);
    fx_close(&f);
}

TEST(sched_abort_frees_blocks)
{
    fx f;
    if (fx_open(&f, 16, 4, 8, 100, 64)) { CHECK(0); return; }
    eng_sched_seq *a = add(&f, 10, 5), *w = add(&f, 3, 5);
    eng_sched_batch b;
    eng_sched_step(f.s, &b);
    commit_all(&f, &b);
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 16 - 3 - 1);
    eng_sched_remove(f.s, a);                            /* running */
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 15);
    CHECK_EQ_INT(eng_sched_n_running(f.s), 1);
    eng_sched_seq *x = add(&f, 3, 5);
    eng_sched_remove(f.s, x);                            /* waiting */
    CHECK_EQ_INT(eng_sched_n_waiting(f.s), 0);
    eng_sched_remove(f.s, w);
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 16);
    CHECK(!eng_sched_has_work(f.s));
    eng_sched_step(f.s, &b);
    CHECK_EQ_INT(b.n_items, 0);
    fx_close(&f);
}

TEST(sched_finish_rules)
{
    fx f;
    if (fx_open(&f, 32, 4, 8, 100, 12)) { CHECK(0); return; }
    int32_t prompt[4] = {1, 2, 3, 4}, stop[2] = {9, 7};
    eng_sched_params p = { .max_tokens = 100, .min_tokens = 2, .stop_ids = stop, .n_stop = 2 };
    eng_sched_seq *q;
    char err[128];
    CHECK(eng_sched_add(f.s, prompt, 4, &p, NULL, 0, &q, err, sizeof err) == 0);
    CHECK_EQ_INT(q->max_tokens, 8);                      /* clamped to max_model_len - prompt */
    eng_sched_batch b;
    int32_t feed[3] = {7, 5, 7};                         /* stop id before min_tokens is kept */
    enum eng_finish fin = ENG_FINISH_NONE;
    for (int k = 0; k < 3 && fin == ENG_FINISH_NONE; k++) {
        eng_sched_step(f.s, &b);
        fin = eng_sched_commit(f.s, &b.items[0], feed[k]);
        if (k < 2) CHECK_EQ_INT(fin, ENG_FINISH_NONE);
    }
    CHECK_EQ_INT(fin, ENG_FINISH_STOP);
    CHECK_EQ_INT(q->stop_token, 7);
    CHECK_EQ_INT(eng_sched_seq_n_output(q), 3);
    eng_sched_remove(f.s, q);
    /* max_model_len: finishes with length when the context is full */
    p.min_tokens = 0;
    p.n_stop = 0;
    CHECK(eng_sched_add(f.s, prompt, 4, &p, NULL, 0, &q, err, sizeof err) == 0);
    int steps = 0;
    do { eng_sched_step(f.s, &b); steps++; } while ((fin = eng_sched_commit(f.s, &b.items[0], 1)) == ENG_FINISH_NONE && steps < 20);
    CHECK_EQ_INT(fin, ENG_FINISH_LENGTH);
    CHECK_EQ_INT(q->n_tokens, 12);
    eng_sched_remove(f.s, q);
    /* length wins over a stop id on the same token (vLLM's order) */
    p.max_tokens = 1;
    p.stop_ids = stop;
    p.n_stop = 2;
    CHECK(eng_sched_add(f.s, prompt, 4, &p, NULL, 0, &q, err, sizeof err) == 0);
    eng_sched_step(f.s, &b);
    CHECK_EQ_INT(eng_sched_commit(f.s, &b.items[0], 9), ENG_FINISH_LENGTH);
    eng_sched_remove(f.s, q);
    /* prompts that leave no room are refused */
    int32_t longp[12] = {0};
    CHECK_EQ_INT(eng_sched_add(f.s, longp, 12, &p, NULL, 0, &q, err, sizeof err), PL_ERR_TOOLONG);
    CHECK_EQ_INT(eng_sched_add(f.s, longp, 0, &p, NULL, 0, &q, err, sizeof err), PL_ERR_TOOLONG);
    fx_close(&f);
}

TEST(sched_fork_shares_prompt_blocks)
{
    fx f;
    if (fx_open(&f, 32, 4, 8, 100, 64)) { CHECK(0); return; }
    eng_sched_seq *p0 = add(&f, 10, 4);                  /* 3 blocks: 2 full + 2 tokens */
    eng_sched_batch b;
    eng_sched_step(f.s, &b);
    eng_sched_seq *c1, *c2;
    CHECK(eng_sched_fork(f.s, &b.items[0], NULL, 2, &c2) == 0);
    CHECK(eng_sched_fork(f.s, &b.items[0], NULL, 1, &c1) == 0);
    commit_all(&f, &b);
    CHECK(c1->kv.n == 2 && c1->kv.blocks[0] == p0->kv.blocks[0] && c1->kv.blocks[1] == p0->kv.blocks[1]);
    CHECK_EQ_INT(eng_kv_block_refcount(f.kv, p0->kv.blocks[0]), 3);
    CHECK_EQ_INT(c1->n_computed, 8);
    CHECK(c1->index == 1 && c1->n_prompt == 10 && !memcmp(c1->tokens, p0->tokens, 10 * sizeof(int32_t)));
    eng_sched_step(f.s, &b);
    /* the children run next, in index order, computing only the prompt's tail */
    CHECK_EQ_INT(b.n_items, 3);
    CHECK(b.items[1].seq == c1 && b.items[1].pos == 8 && b.items[1].n == 2 && b.items[1].sample);
    CHECK(b.items[2].seq == c2);
    CHECK(c1->kv.blocks[2] != p0->kv.blocks[2] && c1->kv.blocks[2] != c2->kv.blocks[2]);
    commit_all(&f, &b);
    /* block-aligned prompt: the last full block is not shared (the child writes its last token there) */
    eng_sched_seq *p8 = add(&f, 8, 2), *c8;
    eng_sched_step(f.s, &b);
    const eng_sched_item *i8 = find(&b, p8);
    CHECK(i8 && eng_sched_fork(f.s, i8, NULL, 1, &c8) == 0);
    CHECK(c8->kv.n == 1 && c8->n_computed == 4);
    commit_all(&f, &b);
    fx_close(&f);
}

TEST(sched_prompt_rows_budget)
{
    fx f;
    if (fx_open(&f, 32, 4, 8, 100, 64)) { CHECK(0); return; }   /* max_prompt_rows 8 */
    static int32_t prompt[20];
    eng_sched_params p = { .max_tokens = 2, .prompt_logits = true };
    eng_sched_seq *q;
    char err[128];
    CHECK(eng_sched_add(f.s, prompt, 20, &p, NULL, 0, &q, err, sizeof err) == 0);
    eng_sched_batch b;
    int rows = 0, steps = 0;
    while (eng_sched_seq_n_output(q) == 0 && steps < 10) {
        eng_sched_step(f.s, &b);
        const eng_sched_item *it = &b.items[0];
        CHECK_EQ_INT(it->n_logits, it->n);                /* every row of the prompt */
        CHECK(it->n_logits - it->sample <= 8);
        rows += it->n_logits;
        eng_sched_commit(f.s, it, 3);
        steps++;
    }
    CHECK_EQ_INT(rows, 20);                              /* 19 prompt rows + the sampling row */
    CHECK_EQ_INT(steps, 3);
    eng_sched_step(f.s, &b);                             /* decoding: one row again */
    CHECK(b.items[0].n == 1 && b.items[0].n_logits == 1);
    fx_close(&f);
}

TEST(sched_init_checks)
{
    eng_kv_pool *kv;
    eng_sched *s = NULL;
    char err[256];
    CHECK(eng_kv_pool_create(NULL, NULL, ENG_CACHE_F32, 3, 4, &kv, err, sizeof err) == 0);
    eng_sched_cfg c = { .max_num_seqs = 4, .max_batched_tokens = 16, .max_model_len = 13, .max_prompt_rows = 1 };
    CHECK(eng_sched_init(&s, &c, kv, err, sizeof err) != 0 && !s);   /* 12 tokens of cache < 13 */
    c.max_model_len = 12;
    CHECK(eng_sched_init(&s, &c, kv, err, sizeof err) == 0);
    eng_sched_free(s);
    c.max_num_seqs = 0;
    CHECK(eng_sched_init(&s, &c, kv, err, sizeof err) != 0);
    eng_kv_pool_free(kv);
}

/* ===== prefix caching ===== */

static eng_sched_seq *add_ids(fx *f, const int32_t *ids, int n, int max_tokens)
{
    eng_sched_params p = { .max_tokens = max_tokens };
    eng_sched_seq *q = NULL;
    char err[256];
    if (eng_sched_add(f->s, ids, n, &p, NULL, 0, &q, err, sizeof err)) fprintf(stderr, "  %s\n", err);
    return q;
}

/* Run one step and commit it; returns the item of q (copied) or pos -1. */
static eng_sched_item step_commit(fx *f, const eng_sched_seq *q)
{
    eng_sched_batch b;
    eng_sched_step(f->s, &b);
    eng_sched_item it = { .pos = -1 };
    const eng_sched_item *x = find(&b, q);
    if (x) it = *x;
    commit_all(f, &b);
    return it;
}

static void drain(fx *f, int max_steps)
{
    eng_sched_batch b;
    for (int i = 0; i < max_steps && eng_sched_has_work(f->s); i++) {
        eng_sched_step(f->s, &b);
        for (int k = 0; k < b.n_items; k++)
            if (eng_sched_commit(f->s, &b.items[k], 7) != ENG_FINISH_NONE) eng_sched_remove(f->s, b.items[k].seq);
    }
}

/* Hits are whole blocks of the same tokens from the start, never the last
 * token; the blocks are shared by reference count. */
TEST(sched_prefix_hits_on_block_boundaries)
{
    fx f;
    if (fx_open_cfg(&f, 32, 4, 8, 64, 64, true, 0)) { CHECK(0); return; }
    int32_t A[14], B[14], C[14];
    for (int i = 0; i < 14; i++) A[i] = B[i] = C[i] = 100 + i;
    B[13] = 1;                  /* differs in the last token only */
    C[10] = 1;                  /* differs inside block 2 */
    eng_sched_seq *a = add_ids(&f, A, 14, 2);
    CHECK_EQ_INT(step_commit(&f, a).n, 14);             /* nothing cached yet */
    CHECK_EQ_INT(a->n_cached, 0);
    CHECK_EQ_INT(a->n_hashed, 3);                       /* 3 full blocks registered */
    drain(&f, 10);
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 32);              /* all free or cached */
    CHECK_EQ_INT(eng_kv_n_cached(f.kv), 3);
    eng_sched_seq *b = add_ids(&f, B, 14, 2), *c = add_ids(&f, C, 14, 2), *d = add_ids(&f, A, 12, 2),
                  *e = add_ids(&f, A, 13, 2);
    eng_sched_batch bt;
    eng_sched_step(f.s, &bt);
    const eng_sched_item *ib = find(&bt, b), *ic = find(&bt, c), *id = find(&bt, d), *ie = find(&bt, e);
    CHECK(ib && ib->pos == 12 && ib->n == 2 && b->n_cached == 12);
    CHECK(ic && ic->pos == 8 && ic->n == 6 && c->n_cached == 8);
    CHECK(id && id->pos == 8 && id->n == 4 && d->n_cached == 8);   /* 12 tokens: block 2 holds the last */
    CHECK(ie && ie->pos == 12 && ie->n == 1 && e->n_cached == 12);
    CHECK(b->kv.blocks[0] == e->kv.blocks[0] && c->kv.blocks[1] == b->kv.blocks[1]);
    CHECK_EQ_INT(eng_kv_block_refcount(f.kv, b->kv.blocks[0]), 4);
    CHECK_EQ_INT(eng_kv_block_refcount(f.kv, b->kv.blocks[2]), 2);   /* b and e */
    uint64_t qn, hn;
    eng_sched_prefix_stats(f.s, &qn, &hn);
    CHECK_EQ_INT(qn, 14 + 14 + 14 + 12 + 13);
    CHECK_EQ_INT(hn, 12 + 8 + 8 + 12);
    for (int i = 0; i < bt.n_items; i++) eng_sched_commit(f.s, &bt.items[i], 7);
    drain(&f, 20);
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 32);
    fx_close(&f);
}

/* With an MTP layer a block's key also holds the next token (the MTP row of
 * its last position reads it): the same 12 tokens followed by another token
 * share only 2 blocks. Prompt-logprob sequences never read the cache. */
TEST(sched_prefix_key_extra_and_prompt_logprobs)
{
    fx f;
    if (fx_open_cfg(&f, 32, 4, 8, 64, 64, true, 1)) { CHECK(0); return; }
    int32_t A[14], B[14];
    for (int i = 0; i < 14; i++) A[i] = B[i] = 100 + i;
    B[12] = 1;
    eng_sched_seq *a = add_ids(&f, A, 14, 1);
    step_commit(&f, a);                                 /* finishes: its blocks stay cached */
    CHECK_EQ_INT(eng_kv_n_cached(f.kv), 3);             /* key of block 2 reads token 12 */
    drain(&f, 5);
    eng_sched_seq *b = add_ids(&f, B, 14, 1), *a2 = add_ids(&f, A, 14, 1);
    eng_sched_params pp = { .max_tokens = 1, .prompt_logits = true };
    eng_sched_seq *pl;
    char err[128];
    CHECK(eng_sched_add(f.s, A, 14, &pp, NULL, 0, &pl, err, sizeof err) == 0);
    eng_sched_batch bt;
    eng_sched_step(f.s, &bt);
    CHECK(find(&bt, b) && find(&bt, b)->pos == 8);
    CHECK(find(&bt, a2) && find(&bt, a2)->pos == 12);
    CHECK(find(&bt, pl) && find(&bt, pl)->pos == 0 && pl->n_cached == 0);
    uint64_t qn, hn;
    eng_sched_prefix_stats(f.s, &qn, &hn);
    CHECK_EQ_INT(qn, 14 + 14 + 14);                     /* the prompt-logprobs one is no query */
    for (int i = 0; i < bt.n_items; i++) eng_sched_commit(f.s, &bt.items[i], 7);
    drain(&f, 20);
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 32);
    fx_close(&f);
}

/* A preempted sequence finds its own registered blocks again (unless they
 * were evicted meanwhile); reference counts stay exact throughout. */
TEST(sched_prefix_preemption_and_fork)
{
    fx f;
    if (fx_open_cfg(&f, 10, 4, 8, 64, 40, true, 0)) { CHECK(0); return; }
    int32_t A[9], B[9];
    for (int i = 0; i < 9; i++) { A[i] = 10 + i; B[i] = 50 + i; }
    eng_sched_seq *a = add_ids(&f, A, 9, 24), *b = add_ids(&f, B, 9, 24);
    eng_sched_batch bt;
    int preempted = 0, steps = 0, readmit_pos = -1;
    while (eng_sched_has_work(f.s) && steps++ < 200) {
        eng_sched_step(f.s, &bt);
        preempted += bt.n_preempted;
        const eng_sched_item *ib = find(&bt, b);
        if (ib && b->n_preempted && readmit_pos < 0) readmit_pos = ib->pos;
        /* refcounts: every block a table holds is held exactly once per table */
        int held = 0;
        for (int k = 0; k < 10; k++) held += eng_kv_block_refcount(f.kv, k);
        CHECK_EQ_INT(held, a->kv.n * (a->state != ENG_SEQ_FINISHED) + b->kv.n * (b->state != ENG_SEQ_FINISHED));
        for (int k = 0; k < bt.n_items; k++) eng_sched_commit(f.s, &bt.items[k], 7);
    }
    CHECK(preempted > 0 && b->n_preempted > 0);
    CHECK(readmit_pos > 0 && readmit_pos % 4 == 0);     /* came back with cached blocks */
    CHECK_EQ_INT(eng_sched_seq_n_output(a), 24);
    CHECK_EQ_INT(eng_sched_seq_n_output(b), 24);
    eng_sched_remove(f.s, a);
    eng_sched_remove(f.s, b);
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 10);
    /* a fork shares the parent's prompt blocks, which the parent registers */
    eng_sched_seq *p0 = add_ids(&f, A, 9, 3), *c1;
    eng_sched_step(f.s, &bt);
    CHECK(eng_sched_fork(f.s, &bt.items[0], NULL, 1, &c1) == 0);
    commit_all(&f, &bt);
    CHECK(eng_kv_block_cached(f.kv, p0->kv.blocks[0]) && eng_kv_block_cached(f.kv, p0->kv.blocks[1]));
    CHECK_EQ_INT(eng_kv_block_refcount(f.kv, p0->kv.blocks[0]), 2);
    drain(&f, 40);
    CHECK_EQ_INT(eng_kv_n_free(f.kv), 10);
    CHECK(eng_kv_n_cached(f.kv) >= 2);
    fx_close(&f);
}

int main(void)
{
    RUN(sched_join_and_leave_between_steps);
    RUN(sched_chunked_prefill_budget);
    RUN(sched_max_num_seqs);
    RUN(sched_waits_for_blocks_fcfs);
    RUN(sched_fcfs_no_jumping);
    RUN(sched_abort_frees_blocks);
    RUN(sched_finish_rules);
    RUN(sched_fork_shares_prompt_blocks);
    RUN(sched_prompt_rows_budget);
    RUN(sched_init_checks);
    RUN(sched_prefix_hits_on_block_boundaries);
    RUN(sched_prefix_key_extra_and_prompt_logprobs);
    RUN(sched_prefix_preemption_and_fork);
    return test_report();
}
