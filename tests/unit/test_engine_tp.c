/* test_engine_tp.c — tensor and expert parallelism (engine/comm.h,
 * engine/shard.h, model.h's follow protocol).
 *
 * The communicator: sums in rank order and bit-identical on every rank,
 * chunked collectives, a dead process peer fails the collective instead of
 * hanging. The model: ranks as threads over one shared-memory group; rank 0
 * runs the steps, the others follow. TP = 2 and 4, with and without expert
 * parallel, give the prompt logprobs of TP = 1 within 1e-4 relative and the
 * same greedy tokens (prefill, decode through the paged cache, the MTP
 * layer), on the tiny presets of both architectures, the small preset (TP 2)
 * and the "uneven" preset (6 heads, 6 experts, vocabulary 1003: handled);
 * on the GLM-4.5 family (GQA: KV heads split at TP 2, replicated at TP 4),
 * also with FP8 K/V rows. FP8 splits that break a 128x128 block, and GQA
 * splits that would straddle KV groups, are refused, naming the tensor. */
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../engine/comm.h"
#include "../../engine/model.h"
#include "../../engine/shard.h"
#include "../../tools/mkmodel/mkmodel.h"

static char g_dir[256];

/* ===== communicator */

typedef struct cargs {
    eng_comm *c;
    size_t n;
    float *out;     /* [n] result of the all-reduce */
    unsigned char *gath;
    int bcast_ok;
    int rc;
} cargs;

static float val(int rank, size_t i) { return (float)sin((double)(i * 7 + (size_t)rank * 13)) * (1.0f + (float)rank); }

static void *coll_rank(void *p)
{
    cargs *a = p;
    int r = eng_comm_rank(a->c), N = eng_comm_size(a->c);
    for (size_t i = 0; i < a->n; i++) a->out[i] = val(r, i);
    a->rc |= eng_comm_all_reduce_sum(a->c, a->out, a->n);
    unsigned char send[1000];
    for (int i = 0; i < 1000; i++) send[i] = (unsigned char)(i * 3 + r);
    a->rc |= eng_comm_all_gather(a->c, send, sizeof send, a->gath);
    char msg[5000] = { 0 };
    if (r == N - 1) for (int i = 0; i < 4999; i++) msg[i] = (char)('a' + i % 26);
    a->rc |= eng_comm_broadcast(a->c, msg, sizeof msg, N - 1);
    a->bcast_ok = msg[4998] == (char)('a' + 4998 % 26) && msg[0] == 'a';
    a->rc |= eng_comm_barrier(a->c);
    return NULL;
}

static void check_collectives(int N, size_t n, size_t slot)
{
    eng_shm_group *g;
    char err[256];
    CHECK(eng_shm_group_create(N, slot, &g, err, sizeof err) == 0);
    cargs a[8];
    pthread_t th[8];
    for (int r = 0; r < N; r++) {
        a[r] = (cargs){ .n = n, .out = malloc(n * sizeof(float)), .gath = malloc((size_t)N * 1000) };
        CHECK(eng_comm_shm_attach(g, r, &a[r].c, err, sizeof err) == 0);
    }
    for (int r = 0; r < N; r++) pthread_create(&th[r], NULL, coll_rank, &a[r]);
    for (int r = 0; r < N; r++) pthread_join(th[r], NULL);
    int sum_ok = 1, same = 1, gath_ok = 1;
    for (size_t i = 0; i < n; i++) {
        float s = val(0, i);
        for (int r = 1; r < N; r++) s += val(r, i);     /* rank order */
        sum_ok &= memcmp(&s, &a[0].out[i], sizeof s) == 0;
        for (int r = 1; r < N; r++) same &= memcmp(&a[r].out[i], &a[0].out[i], sizeof s) == 0;
    }
    for (int r = 0; r < N; r++)
        for (int q = 0; q < N; q++)
            for (int i = 0; i < 1000; i++) gath_ok &= a[r].gath[q * 1000 + i] == (unsigned char)(i * 3 + q);
    CHECK(sum_ok);
    CHECK(same);
    CHECK(gath_ok);
    for (int r = 0; r < N; r++) {
        CHECK_EQ_INT(a[r].rc, 0);
        CHECK(a[r].bcast_ok);
        eng_comm_free(a[r].c);
        free(a[r].out);
        free(a[r].gath);
    }
    eng_shm_group_free(g);
}

TEST(all_reduce_rank_order_bit_identical) { check_collectives(2, 1000, 1 << 16); check_collectives(4, 1000, 1 << 16); }
TEST(collectives_chunked_over_small_slots) { check_collectives(3, 100003, 4096); check_collectives(4, 70001, 1 << 20); }

/* A forked rank that dies (SIGKILL) while rank 0 waits in a collective:
 * the collective fails within a fraction of a second, and so does the next. */
TEST(dead_process_rank_fails_collectives)
{
    eng_shm_group *g;
    char err[256];
    CHECK(eng_shm_group_create(2, 4096, &g, err, sizeof err) == 0);
    eng_shm_group_set_pid(g, 0, getpid());
    pid_t pid = fork();
    if (pid == 0) {
        eng_comm *c;
        if (eng_comm_shm_attach(g, 1, &c, err, sizeof err)) _exit(3);
        eng_comm_barrier(c);    /* one good round, then hang until killed */
        pause();
        _exit(0);
    }
    eng_shm_group_set_pid(g, 1, pid);
    eng_comm *c;
    CHECK(eng_comm_shm_attach(g, 0, &c, err, sizeof err) == 0);
    CHECK_EQ_INT(eng_comm_barrier(c), 0);
    kill(pid, SIGKILL);
    double t0 = pl_mono_s();
    float x[16] = { 0 };
    CHECK_EQ_INT(eng_comm_all_reduce_sum(c, x, 16), PL_ERR_IO);
    CHECK(pl_mono_s() - t0 < 2.0);
    CHECK(eng_shm_group_dead(g));
    CHECK_EQ_INT(eng_comm_barrier(c), PL_ERR_IO);
    int st;
    waitpid(pid, &st, WNOHANG);
    eng_comm_free(c);
    eng_shm_group_free(g);
}

/* ===== models */

static int make_model(const char *name, enum eng_arch arch, const char *preset, int fp8)
{
    char out[512], err[256];
    snprintf(out, sizeof out, "%s/%s", g_dir, name);
    eng_mk_opts o = { .arch = arch, .preset = preset, .out_dir = out, .seed = 3, .fp8 = fp8, .mtp = 1, .quiet = 1 };
    if (eng_mk_write(&o, err, sizeof err)) { fprintf(stderr, "mkmodel: %s\n", err); return -1; }
    return 0;
}

#define PROMPT 70      /* > 64: the lm_head all-gather runs in two rounds */
#define DECODE 6
#define BS 16

/* What one run gives: every prompt row's log-softmax, the greedy tokens,
 * and one MTP draft row. */
typedef struct result {
    int vocab;
    float *lp;              /* [PROMPT, vocab] */
    int32_t greedy[DECODE];
    float *mtp;             /* [vocab] */
    int kv_dim;             /* GQA: rank 0's K row width (its KV heads x head_dim) */
    int ok;
} result;

static enum eng_cache_dtype g_kvdt = ENG_CACHE_F32;

static void log_softmax(float *row, int n)
{
    double mx = row[0], s = 0;
    for (int i = 1; i < n; i++) if (row[i] > mx) mx = row[i];
    for (int i = 0; i < n; i++) s += exp(row[i] - mx);
    double l = mx + log(s);
    for (int i = 0; i < n; i++) row[i] = (float)(row[i] - l);
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[b]) b = i;
    return b;
}

/* Rank 0's work: prefill (two chunks, all rows), greedy decode, one MTP pass. */
static void drive(eng_model *m, result *res)
{
    const eng_config *c = eng_model_config(m);
    int V = c->vocab_size, H = c->hidden_size;
    char err[256];
    eng_kv_pool *kv;
    if (eng_kv_pool_create(eng_model_backend(m), c, g_kvdt, 8, BS, &kv, err, sizeof err)) {
        fprintf(stderr, "kv: %s\n", err);
        return;
    }
    const eng_be_cache *kc = eng_kv_layer_k(kv, 0);
    res->kv_dim = kc ? kc->dim : 0;
    int32_t bt[8], ids[PROMPT + DECODE];
    for (int i = 0; i < 8; i++) bt[i] = 7 - i;  /* not in order: the tables travel as given */
    for (int i = 0; i < PROMPT; i++) ids[i] = (int32_t)((i * 131 + 7) % (V - 70));
    res->vocab = V;
    res->lp = calloc((size_t)PROMPT * (size_t)V, sizeof(float));
    res->mtp = calloc((size_t)V, sizeof(float));
    float *hid = calloc((size_t)PROMPT * (size_t)H, sizeof(float)), *row = calloc((size_t)V, sizeof(float));
    int rc = 0;
    eng_seq s1 = { ids, 5, 0, bt, 8, ENG_LOGITS_ALL }, s2 = { ids + 5, PROMPT - 5, 5, bt, 8, ENG_LOGITS_ALL };
    rc |= eng_model_forward(m, kv, &s1, 1, res->lp, NULL, err, sizeof err);
    rc |= eng_model_forward(m, kv, &s2, 1, res->lp + (size_t)5 * V, hid, err, sizeof err);
    /* MTP: token_{p+1} at position p for the last prompt position, with its hidden. */
    int32_t nxt = argmax(res->lp + (size_t)(PROMPT - 1) * V, V);
    eng_seq sm = { &nxt, 1, PROMPT - 1, bt, 8, ENG_LOGITS_LAST };
    if (!rc && eng_model_has_mtp(m))
        rc |= eng_model_mtp_forward(m, kv, &sm, 1, hid + (size_t)(PROMPT - 1) * H, res->mtp, NULL, err, sizeof err);
    ids[PROMPT] = nxt;
    for (int t = 0; !rc && t < DECODE; t++) {
        res->greedy[t] = ids[PROMPT + t];
        if (t == DECODE - 1) break;
        eng_seq sd = { ids + PROMPT + t, 1, PROMPT + t, bt, 8, ENG_LOGITS_LAST };
        rc |= eng_model_forward(m, kv, &sd, 1, row, NULL, err, sizeof err);
        ids[PROMPT + t + 1] = argmax(row, V);
    }
    if (rc) fprintf(stderr, "  step: %s\n", err);
    for (int i = 0; i < PROMPT; i++) log_softmax(res->lp + (size_t)i * V, V);
    res->ok = !rc;
    free(hid);
    free(row);
    eng_kv_pool_free(kv);
}

typedef struct rank_ctx {
    const char *dir;
    eng_shm_group *g;
    int rank, ep;
    result *res;    /* rank 0 */
    int rc;
} rank_ctx;

static void *rank_main(void *p)
{
    rank_ctx *a = p;
    char err[512];
    eng_comm *c = NULL;
    eng_model *m = NULL;
    if (a->g && eng_comm_shm_attach(a->g, a->rank, &c, err, sizeof err)) { a->rc = -1; return NULL; }
    eng_model_opts o = { .n_threads = 1, .max_batch_tokens = 128, .max_model_len = 128, .load = { .quiet = 1 },
                         .comm = c, .expert_parallel = a->ep };
    a->rc = eng_model_open(a->dir, &o, &m, err, sizeof err);
    if (a->rc) {
        fprintf(stderr, "  rank %d: %s\n", a->rank, err);
        eng_comm_abort(c);
    } else if (c && eng_comm_barrier(c)) {
        a->rc = -1;
    } else if (a->rank == 0) {
        drive(m, a->res);
    } else if ((a->rc = eng_model_follow(m, err, sizeof err))) {
        fprintf(stderr, "  rank %d: %s\n", a->rank, err);
    }
    eng_model_close(m);
    eng_comm_free(c);
    return NULL;
}

/* N = 0: the plain path (no communicator); N >= 1: N ranks. */
static void run_tp(const char *dir, int N, int ep, result *res)
{
    memset(res, 0, sizeof *res);
    eng_shm_group *g = NULL;
    char err[256];
    if (N >= 1 && eng_shm_group_create(N, 1 << 18, &g, err, sizeof err)) return;
    if (N == 0) N = 1;
    rank_ctx a[8];
    pthread_t th[8];
    for (int r = 0; r < N; r++) a[r] = (rank_ctx){ dir, g, r, ep, r == 0 ? res : NULL, 0 };
    for (int r = 1; r < N; r++) pthread_create(&th[r], NULL, rank_main, &a[r]);
    rank_main(&a[0]);
    for (int r = 1; r < N; r++) {
        pthread_join(th[r], NULL);
        if (a[r].rc) res->ok = 0;
    }
    eng_shm_group_free(g);
}

static double g_worst;
static int g_gqa_kv_heads = 2;      /* both GQA test presets */

/* max |a - b| / max |ref| per row, worst row. */
static double rows_rel(const float *got, const float *ref, int rows, int n)
{
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double md = 0, mr = 0;
        for (int i = 0; i < n; i++) {
            double d = fabs((double)got[(size_t)r * n + i] - ref[(size_t)r * n + i]);
            if (d > md) md = d;
            if (fabs(ref[(size_t)r * n + i]) > mr) mr = fabs(ref[(size_t)r * n + i]);
        }
        if (md / mr > worst) worst = md / mr;
    }
    return worst;
}

static void free_result(result *r)
{
    free(r->lp);
    free(r->mtp);
}

static void check_same_as_tp1(const char *name, const int (*cfgs)[2], int n_cfgs)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    result ref;
    run_tp(dir, 0, 0, &ref);
    CHECK(ref.ok);
    for (int k = 0; ref.ok && k < n_cfgs; k++) {
        result r;
        run_tp(dir, cfgs[k][0], cfgs[k][1], &r);
        CHECK(r.ok);
        if (!r.ok) { free_result(&r); continue; }
        double e = rows_rel(r.lp, ref.lp, PROMPT, ref.vocab), em = rows_rel(r.mtp, ref.mtp, 1, ref.vocab);
        if (e > g_worst) g_worst = e;
        if (em > g_worst) g_worst = em;
        printf("  %s TP=%d%s: prompt logprobs rel %.2e, MTP draft rel %.2e\n", name, cfgs[k][0],
               cfgs[k][1] ? " EP" : "", e, em);
        CHECK(e <= 1e-4);
        CHECK(em <= 1e-4);
        CHECK(memcmp(r.greedy, ref.greedy, sizeof r.greedy) == 0);
        if (ref.kv_dim) {   /* GQA: rank 0 caches its KV heads only (split, or one when replicated) */
            int N = cfgs[k][0], nkv = g_gqa_kv_heads, hd = ref.kv_dim / nkv;
            CHECK_EQ_INT(r.kv_dim, (N <= nkv ? nkv / N : 1) * hd);
        }
        free_result(&r);
    }
    free_result(&ref);
}

/* The weights of test model name (no model object: shard checks only). */
static int load(const char *name, eng_config *c, eng_weights **w)
{
    char dir[512], err[512];
    eng_load_opts lo = { .quiet = 1 };
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    int rc = eng_weights_load(dir, &lo, c, w, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    return rc;
}

static const int k_all[][2] = { { 2, 0 }, { 2, 1 }, { 4, 0 }, { 4, 1 } };
static const int k_two[][2] = { { 2, 0 }, { 2, 1 } };

TEST(glm5_tiny_tp2_tp4_ep_equal_tp1) { check_same_as_tp1("glm5-tiny", k_all, 4); }
TEST(flash_tiny_tp2_tp4_ep_equal_tp1) { check_same_as_tp1("flash-tiny", k_all, 4); }
TEST(uneven_heads_experts_vocab_handled) { check_same_as_tp1("glm5-uneven", k_all, 4); check_same_as_tp1("flash-uneven", k_two, 2); }
TEST(glm5_small_tp2_equal_tp1) { check_same_as_tp1("glm5-small", k_two, 2); }
TEST(glm5_small_fp8_tp2_equal_tp1) { check_same_as_tp1("glm5-small-fp8", k_two, 1); }

/* GLM-4.5 family (GQA): tiny has q/k norms and 4 query heads per KV head,
 * tiny-air no norms and groups of 2; both 2 KV heads, so TP = 2 splits them
 * and TP = 4 replicates each over 2 ranks. The MTP block is GQA too. */
TEST(gqa_tiny_tp2_tp4_ep_equal_tp1)
{
    static const int six[][2] = { { 6, 0 } };   /* each group's 4 query heads over 3 ranks: 1, 1, 2 */
    check_same_as_tp1("gqa-tiny", k_all, 4);
    check_same_as_tp1("gqa-tiny", six, 1);
}
TEST(gqa_tiny_air_tp2_tp4_ep_equal_tp1) { check_same_as_tp1("gqa-air", k_all, 4); }

/* FP8 K/V rows tile per head, so a rank's rows quantize as in TP = 1. */
TEST(gqa_fp8_kv_tp2_tp4_equal_tp1)
{
    static const int cfgs[][2] = { { 2, 0 }, { 4, 1 } };
    g_kvdt = ENG_CACHE_FP8;
    check_same_as_tp1("gqa-tiny", cfgs, 2);
    check_same_as_tp1("gqa-air", cfgs, 2);
    g_kvdt = ENG_CACHE_F32;
}

/* Query and KV head ranges per rank; splits whose query heads would
 * straddle two KV groups, leave a rank none, or break an FP8 block refused. */
TEST(gqa_head_ranges_and_refusals)
{
    char err[512];
    eng_config c;
    eng_weights *w;
    CHECK(load("gqa-tiny", &c, &w) == 0);
    CHECK_EQ_INT(c.num_attention_heads, 8);
    CHECK_EQ_INT(c.num_key_value_heads, 2);
    static const struct { int size, rank, h0, h1, k0, k1; } want[] = {
        { 2, 0, 0, 4, 0, 1 }, { 2, 1, 4, 8, 1, 2 },                          /* split: whole groups */
        { 4, 1, 2, 4, 0, 1 }, { 4, 2, 4, 6, 1, 2 },                          /* replicated over 2 ranks */
        { 6, 2, 2, 4, 0, 1 }, { 6, 3, 4, 5, 1, 2 },                          /* a group's 4 over 3: 1, 1, 2 */
        { 8, 5, 5, 6, 1, 2 },
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(want); i++) {
        eng_shard *s = NULL;
        CHECK(eng_shard_create(w, &c, want[i].rank, want[i].size, 0, &s, err, sizeof err) == 0);
        if (!s) { fprintf(stderr, "  %s\n", err); continue; }
        eng_shard_range h = eng_shard_heads(s), k = eng_shard_kv_heads(s);
        CHECK(h.begin == want[i].h0 && h.end == want[i].h1 && k.begin == want[i].k0 && k.end == want[i].k1);
        const eng_layer_weights *lw = eng_shard_layer(s, 0);
        int hd = c.head_dim;
        CHECK_EQ_INT(lw->w[ENG_W_Q_PROJ].rows, (want[i].h1 - want[i].h0) * hd);
        CHECK_EQ_INT(lw->w[ENG_W_Q_BIAS].cols, (want[i].h1 - want[i].h0) * hd);
        CHECK_EQ_INT(lw->w[ENG_W_K_PROJ].rows, (want[i].k1 - want[i].k0) * hd);
        CHECK_EQ_INT(lw->w[ENG_W_V_BIAS].cols, (want[i].k1 - want[i].k0) * hd);
        CHECK_EQ_INT(lw->w[ENG_W_O].cols, (want[i].h1 - want[i].h0) * hd);
        CHECK_EQ_INT(lw->w[ENG_W_Q_NORM].cols, hd);     /* replicated */
        eng_shard_free(s);
    }
    eng_shard *s = NULL;
    err[0] = 0;   /* 3 ranks over 2 groups of 4: rank 1 would hold heads of both */
    CHECK(eng_shard_create(w, &c, 1, 3, 0, &s, err, sizeof err) == PL_ERR_UNSUPPORTED);
    CHECK(strstr(err, "straddling") != NULL);
    printf("  %s\n", err);
    CHECK(eng_shard_create(w, &c, 0, 10, 0, &s, err, sizeof err) == PL_ERR_UNSUPPORTED);
    eng_weights_free(w);
    /* tiny-air (groups of 2) over 8: more ranks than query heads. */
    CHECK(load("gqa-air", &c, &w) == 0);
    CHECK(eng_shard_create(w, &c, 0, 8, 0, &s, err, sizeof err) == PL_ERR_UNSUPPORTED);
    eng_weights_free(w);
    /* tiny-air FP8: head_dim 40, so rank 1 of 2 starts q_proj at row 80, inside a block. */
    CHECK(load("gqa-air-fp8", &c, &w) == 0);
    err[0] = 0;
    CHECK(eng_shard_create(w, &c, 1, 2, 0, &s, err, sizeof err) == PL_ERR_UNSUPPORTED);
    CHECK(strstr(err, "q_proj") && strstr(err, "128x128 FP8 block"));
    printf("  %s\n", err);
    eng_weights_free(w);
}

/* FP8: a rank whose slice starts inside a 128x128 block is refused, naming
 * the tensor; a group too large for the heads or experts likewise. */
TEST(fp8_block_breaking_split_refused)
{
    char err[512];
    eng_config c;
    eng_weights *w;
    CHECK(load("glm5-tiny-fp8", &c, &w) == 0);
    eng_shard *s = NULL;
    /* tiny: kv_b has 48 + 64 = 112 rows per head: rank 1 of 2 would start at row 224. */
    err[0] = 0;
    CHECK(eng_shard_create(w, &c, 1, 2, 0, &s, err, sizeof err) == PL_ERR_UNSUPPORTED);
    CHECK(strstr(err, "kv_b_proj") && strstr(err, "128x128 FP8 block"));
    printf("  %s\n", err);
    CHECK(eng_shard_create(w, &c, 0, 8, 0, &s, err, sizeof err) == PL_ERR_UNSUPPORTED);
    CHECK(strstr(err, "attention heads"));
    CHECK(eng_shard_create(w, &c, 0, 16, 1, &s, err, sizeof err) == PL_ERR_UNSUPPORTED);
    eng_weights_free(w);
    /* small fp8, TP 4: 2 heads x 96 q_b rows = 192, inside a block. */
    CHECK(load("glm5-small-fp8", &c, &w) == 0);
    CHECK(eng_shard_create(w, &c, 1, 4, 0, &s, err, sizeof err) == PL_ERR_UNSUPPORTED);
    CHECK(strstr(err, "q_b_proj") != NULL);
    CHECK(eng_shard_create(w, &c, 1, 2, 0, &s, err, sizeof err) == 0);
    eng_shard_free(s);
    eng_weights_free(w);
}

/* TP = 1 through a communicator takes the sharded code path over one rank:
 * the same bits as the plain path. */
TEST(tp1_through_communicator_bit_identical)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/glm5-tiny", g_dir);
    result a, b;
    run_tp(dir, 0, 0, &a);
    run_tp(dir, 1, 0, &b);
    CHECK(a.ok && b.ok);
    if (a.ok && b.ok) {
        CHECK(memcmp(a.lp, b.lp, (size_t)PROMPT * (size_t)a.vocab * sizeof(float)) == 0);
        CHECK(memcmp(a.mtp, b.mtp, (size_t)a.vocab * sizeof(float)) == 0);
        CHECK(memcmp(a.greedy, b.greedy, sizeof a.greedy) == 0);
    }
    free_result(&a);
    free_result(&b);
}

TEST(split_ranges)
{
    /* 1003 over 4: 250, 251, 250, 252 -- contiguous, covering, differing by at most one. */
    int64_t at = 0;
    for (int r = 0; r < 4; r++) {
        eng_shard_range v = eng_shard_split(1003, 1, r, 4);
        CHECK_EQ_INT(v.begin, at);
        CHECK(v.end - v.begin >= 250 && v.end - v.begin <= 251);
        at = v.end;
    }
    CHECK_EQ_INT(at, 1003);
    /* FP8 widths in whole blocks: 2816 = 22 blocks over 4 -> 5, 6, 5, 6 blocks. */
    eng_shard_range a = eng_shard_split(2816, 128, 1, 4);
    CHECK_EQ_INT(a.begin, 640);
    CHECK_EQ_INT(a.end, 1408);
    eng_shard_range b = eng_shard_split(300, 128, 2, 3);   /* last: 256..300, a partial block */
    CHECK_EQ_INT(b.begin, 256);
    CHECK_EQ_INT(b.end, 300);
}

int main(void)
{
    RUN(all_reduce_rank_order_bit_identical);
    RUN(collectives_chunked_over_small_slots);
    RUN(dead_process_rank_fails_collectives);
    RUN(split_ranges);
    snprintf(g_dir, sizeof g_dir, "/tmp/glm-engine-tp-XXXXXX");
    if (!mkdtemp(g_dir) || make_model("glm5-tiny", ENG_ARCH_GLM_MOE_DSA, "tiny", 0) ||
        make_model("glm5-tiny-fp8", ENG_ARCH_GLM_MOE_DSA, "tiny", 1) ||
        make_model("flash-tiny", ENG_ARCH_GLM4_MOE_LITE, "tiny", 0) ||
        make_model("glm5-uneven", ENG_ARCH_GLM_MOE_DSA, "uneven", 0) ||
        make_model("flash-uneven", ENG_ARCH_GLM4_MOE_LITE, "uneven", 0) ||
        make_model("glm5-small", ENG_ARCH_GLM_MOE_DSA, "small", 0) ||
        make_model("glm5-small-fp8", ENG_ARCH_GLM_MOE_DSA, "small", 1) ||
        make_model("gqa-tiny", ENG_ARCH_GLM4_MOE, "tiny", 0) ||
        make_model("gqa-air", ENG_ARCH_GLM4_MOE, "tiny-air", 0) ||
        make_model("gqa-air-fp8", ENG_ARCH_GLM4_MOE, "tiny-air", 1)) {
        printf("FAIL could not write the test models\n");
        return 1;
    }
    RUN(tp1_through_communicator_bit_identical);
    RUN(glm5_tiny_tp2_tp4_ep_equal_tp1);
    RUN(flash_tiny_tp2_tp4_ep_equal_tp1);
    RUN(uneven_heads_experts_vocab_handled);
    RUN(glm5_small_tp2_equal_tp1);
    RUN(glm5_small_fp8_tp2_equal_tp1);
    RUN(fp8_block_breaking_split_refused);
    RUN(gqa_head_ranges_and_refusals);
    RUN(gqa_tiny_tp2_tp4_ep_equal_tp1);
    RUN(gqa_tiny_air_tp2_tp4_ep_equal_tp1);
    RUN(gqa_fp8_kv_tp2_tp4_equal_tp1);
    printf("  worst relative difference to TP=1: %.2e (limit 1e-4)\n", g_worst);
    test_rmtree(g_dir);
    return test_report();
}
