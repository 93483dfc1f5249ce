/* features.c — benchmarks of prefix caching, MTP and the FP8 KV cache
 * (features.h). The serving-loop benchmarks drive eng_serve in-process with
 * the GLM-5 model, so they time exactly what glm-engine runs, minus pipes. */
#include "features.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "../../engine/model.h"
#include "../../engine/sample.h"
#include "../../engine/serve.h"
#include "../mkmodel/tokenizer_train.h"
#include "oracle.h"
#include "msg.h"
#include "tokenizer/tokenizer.h"

double bench_now(void) { return pl_mono_s(); }

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static eng_model *open_model(const bench_opts *o, int max_tokens, int max_len)
{
    char err[512];
    eng_model *m = NULL;
    eng_model_opts mo = { .n_threads = o->threads, .compute_dtype = o->compute, .max_batch_tokens = max_tokens,
                          .max_model_len = max_len, .load = { .prefault = 1, .quiet = 1, .file_pages = o->file_pages } };
    if (eng_model_open(o->dir, &mo, &m, err, sizeof err)) fprintf(stderr, "glm-engine-bench: %s\n", err);
    return m;
}

/* ===== a serving loop in-process ===== */

/* One request at a time: the sink notes when tokens arrive and keeps them. */
typedef struct drv {
    eng_serve *e;
    double t_first, t_last;
    int32_t got[4096];
    int n_got;
    int ended;
} drv;

static int drv_sink(void *ud, const char *data, size_t len)
{
    drv *d = ud;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, data, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *m = &u.data;
        const msgpack_object_array *a;
        if (pl_msg_type_is(m, "tokens") && pl_msg_get_array(m, "token_ids", &a) == PL_OK) {
            double t = bench_now();
            if (!d->n_got) d->t_first = t;
            d->t_last = t;
            for (uint32_t i = 0; i < a->size && d->n_got < 4096; i++) d->got[d->n_got++] = (int32_t)a->ptr[i].via.i64;
        } else if (pl_msg_type_is(m, "end")) d->ended = 1;
        else if (pl_msg_type_is(m, "error")) { d->ended = 1; fprintf(stderr, "glm-engine-bench: the engine answered an error\n"); }
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}

static int drv_open(drv *d, const eng_lm *lm, int max_len, int blocks, int K, bool caching)
{
    memset(d, 0, sizeof *d);
    eng_serve_cfg c;
    eng_serve_cfg_defaults(&c);
    c.max_num_seqs = 4;
    c.max_model_len = max_len;
    c.num_blocks = blocks;
    c.num_spec_tokens = K;
    c.prefix_caching = caching;
    c.log_stats_interval = 0;
    char err[512];
    if (eng_serve_init(&d->e, lm, &c, (eng_serve_sink){ drv_sink, d }, err, sizeof err)) {
        fprintf(stderr, "glm-engine-bench: %s\n", err);
        return -1;
    }
    return 0;
}

/* Greedy generate of max_tokens, run to its end; returns seconds from the
 * feed to the first token. */
static double drv_run(drv *d, const char *id, const int32_t *prompt, int n, int max_tokens)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pl_msg_pack_kv_cstr(&pk, "type", "generate");
    pl_msg_pack_kv_cstr(&pk, "id", id);
    pl_msg_pack_cstr(&pk, "prompt_ids");
    msgpack_pack_array(&pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_int32(&pk, prompt[i]);
    pl_msg_pack_cstr(&pk, "sampling");
    msgpack_pack_map(&pk, 3);
    pl_msg_pack_kv_int(&pk, "temperature", 0);
    pl_msg_pack_kv_int(&pk, "max_tokens", max_tokens);
    pl_msg_pack_kv_bool(&pk, "ignore_eos", true);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    msgpack_unpack_next(&u, sb.data, sb.size, NULL);
    d->n_got = 0;
    d->ended = 0;
    double t0 = bench_now();
    eng_serve_on_msg(d->e, &u.data, id, strlen(id));
    while (!d->ended && eng_serve_busy(d->e)) eng_serve_step(d->e);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return d->t_first - t0;
}

static void fill_prompt(int32_t *p, int n, int vocab, int salt)
{
    for (int i = 0; i < n; i++) p[i] = (int32_t)(((int64_t)i * 7919 + (int64_t)salt * 104729 + 13) % (vocab - 64));
}

/* ===== prefix caching: TTFT ===== */

int bench_prefix(const bench_opts *o)
{
    int P = o->prompt, C = o->cached, bs = 16;
    if (C >= P) { fprintf(stderr, "glm-engine-bench: --cached must be below --prompt\n"); return 2; }
    eng_model *m = open_model(o, 2048, P + 8);
    if (!m) return 1;
    const eng_config *c = eng_model_config(m);
    eng_lm lm;
    eng_lm_from_model(&lm, m);
    int32_t *warm = malloc(sizeof *warm * (size_t)P), *ask = malloc(sizeof *ask * (size_t)P);
    fill_prompt(warm, P, c->vocab_size, 1);
    memcpy(ask, warm, sizeof *ask * (size_t)C);           /* the same first C tokens, then others */
    fill_prompt(ask + C, P - C, c->vocab_size, 2);
    double t[2][16];
    int reps = o->repeat > 16 ? 16 : o->repeat;
    for (int on = 0; on < 2; on++)
        for (int r = 0; r < reps; r++) {
            drv d;
            if (drv_open(&d, &lm, P + 8, 4 * (P / bs + 2), 0, on)) return 1;
            drv_run(&d, "warm", warm, P, 1);               /* fills the cache (when on) */
            t[on][r] = drv_run(&d, "ask", ask, P, 1);
            eng_serve_stats st;
            eng_serve_get_stats(d.e, &st);
            printf("  cache %s, run %d: TTFT %.3f s (prefix cache hits %llu tokens)\n", on ? "on " : "off", r + 1,
                   t[on][r], (unsigned long long)st.prefix_hits);
            eng_serve_free(d.e);
        }
    double off = bench_median(t[0], reps), on = bench_median(t[1], reps);
    printf("prompt %d tokens, first %d shared (%d cached: whole blocks of %d): TTFT uncached %.3f s, cached %.3f s, "
           "ratio %.1fx (medians of %d)\n", P, C, C / bs * bs, bs, off, on, off / on, reps);
    free(warm);
    free(ask);
    eng_model_close(m);
    return 0;
}

/* ===== MTP ===== */

/* Median seconds of f over reps calls. */
#define TIME_MEDIAN(out, reps, call) do {                                     \
    double ts_[32];                                                          \
    for (int r_ = 0; r_ < (reps); r_++) { double t0_ = bench_now(); call; ts_[r_] = bench_now() - t0_; } \
    (out) = bench_median(ts_, (reps));                                       \
} while (0)

int bench_mtp(const bench_opts *o)
{
    int P = o->prompt, N = o->tokens, reps = o->repeat < 3 ? 9 : o->repeat > 32 ? 32 : o->repeat;
    eng_model *m = open_model(o, 512, P + N + 16);
    if (!m) return 1;
    const eng_config *c = eng_model_config(m);
    if (!eng_model_has_mtp(m)) { fprintf(stderr, "glm-engine-bench: the checkpoint has no MTP layer\n"); return 1; }
    int V = c->vocab_size, H = c->hidden_size;
    char err[512];

    /* 1. Model calls after a P-token prefill: a plain decode step, a
     * verification of K drafts (K+1 positions, all rows' logits), one MTP
     * draft step (1 position, last row). */
    eng_kv_pool *kv;
    int nb = (P + N + 16) / 16 + 1;
    if (eng_kv_pool_create(eng_model_backend(m), c, ENG_CACHE_F32, nb, 16, &kv, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int32_t *bt = malloc(sizeof *bt * (size_t)nb), *ids = malloc(sizeof *ids * (size_t)(P + 8));
    for (int i = 0; i < nb; i++) bt[i] = eng_kv_block_alloc(kv);
    fill_prompt(ids, P + 8, V, 3);
    float *lg = malloc(sizeof *lg * (size_t)8 * V), *hid = malloc(sizeof *hid * (size_t)P * H),
          *hn = malloc(sizeof *hn * (size_t)8 * H);
    eng_seq pre = { ids, P, 0, bt, nb, ENG_LOGITS_LAST };
    int rc = eng_model_forward(m, kv, &pre, 1, lg, hid, err, sizeof err);
    if (rc) { fprintf(stderr, "%s\n", err); return 1; }
    /* interleaved: each round times every call once, so load changes hit
     * all alike; reported: medians, and medians of the per-round ratios */
    enum { C_DEC, C_VER, C_FIRST = C_VER + ENG_SPEC_MAX, C_MTP = C_FIRST + ENG_SPEC_MAX, C_N };
    static double t[C_N][32];
    uint64_t moe_calls[ENG_SPEC_MAX] = { 0 }, moe_exp[ENG_SPEC_MAX] = { 0 };  /* verification's routed-expert reads */
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        eng_seq d1 = { ids + P, 1, P, bt, nb, ENG_LOGITS_LAST };
        rc |= eng_model_forward(m, kv, &d1, 1, lg, NULL, err, sizeof err);
        t[C_DEC][r] = bench_now() - t0;
        for (int k = 1; k <= ENG_SPEC_MAX; k++) {
            eng_seq v = { ids + P, k + 1, P, bt, nb, ENG_LOGITS_ALL };
            uint64_t c0, e0, c1, e1;
            eng_model_moe_reads(m, &c0, &e0);
            t0 = bench_now();
            rc |= eng_model_forward(m, kv, &v, 1, lg, NULL, err, sizeof err);
            t[C_VER + k - 1][r] = bench_now() - t0;
            eng_model_moe_reads(m, &c1, &e1);
            moe_calls[k - 1] += c1 - c0;
            moe_exp[k - 1] += e1 - e0;
            /* the first pass after a verification that accepted k - 1 drafts: k positions */
            eng_seq f = { ids + P, k, P - k, bt, nb, ENG_LOGITS_LAST };
            t0 = bench_now();
            rc |= eng_model_mtp_forward(m, kv, &f, 1, hid + (size_t)(P - k) * H, lg, hn, err, sizeof err);
            t[C_FIRST + k - 1][r] = bench_now() - t0;
        }
        eng_seq ms = { ids + P, 1, P, bt, nb, ENG_LOGITS_LAST };
        t0 = bench_now();
        rc |= eng_model_mtp_forward(m, kv, &ms, 1, hn, lg, hn + H, err, sizeof err);
        t[C_MTP][r] = bench_now() - t0;
    }
    if (rc) { fprintf(stderr, "%s\n", err); return 1; }
    static double rto[C_N][32], med[C_N], rat[C_N];
    for (int c = 0; c < C_N; c++) {
        for (int r = 0; r < reps; r++) rto[c][r] = t[c][r] / t[C_DEC][r];
        rat[c] = bench_median(rto[c], reps);
        med[c] = bench_median(t[c], reps);
    }
    printf("model calls at context %d (medians of %d interleaved rounds; x = median ratio to the decode step):\n", P, reps);
    printf("  plain decode step (1 position): %.2f ms\n", med[C_DEC] * 1e3);
    for (int k = 1; k <= ENG_SPEC_MAX; k++)
        printf("  K=%d: verification (%d positions, all rows' logits) %.2f ms = %.2fx, %.2f distinct routed experts "
               "per MoE layer (top-%d of %d); MTP first pass over %d position%s %.2f ms = %.2fx\n", k, k + 1,
               med[C_VER + k - 1] * 1e3, rat[C_VER + k - 1],
               moe_calls[k - 1] ? (double)moe_exp[k - 1] / (double)moe_calls[k - 1] : 0.0, c->num_experts_per_tok,
               c->n_routed_experts, k, k > 1 ? "s" : "", med[C_FIRST + k - 1] * 1e3, rat[C_FIRST + k - 1]);
    printf("  one chained MTP draft step (1 position): %.2f ms = %.2fx; drafting K tokens costs one first pass + "
           "K-1 chained steps\n", med[C_MTP] * 1e3, rat[C_MTP]);
    /* The read bound (docs/perf.md): every weight once per step, routed
     * experts once per distinct expert; a plain step reads top_k per layer. */
    double act = (double)eng_model_active_bytes(m), eb = (double)eng_model_expert_bytes(m);
    double moe_layers = reps ? (double)moe_calls[0] / reps : 0;
    printf("weights read per step (plain %.1f MB; verification: distinct routed experts as measured), the bound if "
           "reads were all that counted:\n", act / 1e6);
    for (int k = 1; k <= ENG_SPEC_MAX && moe_layers > 0; k++) {
        double b = act + eb * ((double)moe_exp[k - 1] / reps - moe_layers * c->num_experts_per_tok);
        printf("  K=%d: %.1f MB = %.2fx plain -> oracle speedup <= %.2fx\n", k, b / 1e6, b / act, (k + 1) / (b / act));
    }
    eng_kv_pool_free(kv);

    /* 2. The serving loop, batch 1, greedy: plain, then oracle drafts (free,
     * and paying the real MTP layer), K = 1..5, interleaved in rounds so a
     * change of machine load hits all alike. Decode tokens/s = tokens after
     * the first / time from the first to the last; medians over the rounds
     * (the ratio: median of the per-round ratios). */
    eng_lm base;
    eng_lm_from_model(&base, m);
    int32_t *ref = malloc(sizeof *ref * (size_t)(P + N + 1));
    fill_prompt(ref, P, V, 4);
    int blocks = 4 * ((P + N + 16) / 16 + 2), rounds = reps < 5 ? reps : 5;
    drv d;
    if (drv_open(&d, &base, P + N + 8, blocks, 0, false)) return 1;
    drv_run(&d, "plain", ref, P, N + 1);
    memcpy(ref + P, d.got, sizeof *ref * (size_t)(N + 1));
    eng_serve_free(d.e);
    enum { CFGS = 1 + 2 * ENG_SPEC_MAX };
    double tps[CFGS][16], ratio[CFGS][16];
    int same[CFGS] = { 0 };
    double acc[CFGS] = { 0 };
    for (int r = 0; r < rounds; r++)
        for (int c = 0; c < CFGS; c++) {
            int k = c == 0 ? 0 : (c - 1) % ENG_SPEC_MAX + 1, pay = c > ENG_SPEC_MAX;
            eng_oracle orc;
            eng_lm lm;
            eng_oracle_lm(&orc, &lm, &base, ref, P + N + 1, pay);
            if (drv_open(&d, k ? &lm : &base, P + N + 8, blocks, k, false)) return 1;
            drv_run(&d, "oracle", ref, P, N + 1);
            same[c] += d.n_got == N + 1 && !memcmp(d.got, ref + P, sizeof *ref * (size_t)(N + 1));
            tps[c][r] = N / (d.t_last - d.t_first);
            ratio[c][r] = tps[c][r] / tps[0][r];
            eng_serve_stats st;
            eng_serve_get_stats(d.e, &st);
            acc[c] = st.spec_draft_tokens ? (double)st.spec_accepted / (double)st.spec_draft_tokens : 0;
            eng_serve_free(d.e);
        }
    printf("serving loop, batch 1, %d-token prompt, %d decode tokens (medians of %d interleaved rounds):\n", P, N, rounds);
    printf("  plain decode: %.2f tokens/s\n", bench_median(tps[0], rounds));
    for (int c = 1; c < CFGS; c++)
        printf("  oracle drafts%s, K=%d: %.2f tokens/s = %.2fx plain (acceptance %.0f%%, tokens %s)\n",
               c > ENG_SPEC_MAX ? " + real MTP cost" : " (free)", (c - 1) % ENG_SPEC_MAX + 1, bench_median(tps[c], rounds),
               bench_median(ratio[c], rounds), 100.0 * acc[c], same[c] == rounds ? "identical to plain" : "DIFFER");
    double plain_tps = bench_median(tps[0], rounds);
    /* 3. The checkpoint's own MTP layer (random weights: acceptance near 0). */
    for (int k = 1; k <= ENG_SPEC_MAX; k += 2) {
        if (drv_open(&d, &base, P + N + 8, blocks, k, false)) return 1;
        drv_run(&d, "mtp", ref, P, N + 1);
        eng_serve_stats st;
        eng_serve_get_stats(d.e, &st);
        printf("  the checkpoint's MTP, K=%d: %.2f tokens/s = %.2fx plain, acceptance %.1f%% (%llu of %llu drafts)\n",
               k, N / (d.t_last - d.t_first), N / (d.t_last - d.t_first) / plain_tps,
               st.spec_draft_tokens ? 100.0 * (double)st.spec_accepted / (double)st.spec_draft_tokens : 0.0,
               (unsigned long long)st.spec_accepted, (unsigned long long)st.spec_draft_tokens);
        eng_serve_free(d.e);
    }
    free(ref); free(bt); free(ids); free(lg); free(hid); free(hn);
    eng_model_close(m);
    return 0;
}

/* ===== FP8 KV: error against f32 KV ===== */

/* log_softmax in place over V values. */
static void log_softmax(float *row, int V)
{
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = fmaxf(mx, row[v]);
    double z = 0;
    for (int v = 0; v < V; v++) z += exp((double)row[v] - mx);
    for (int v = 0; v < V; v++) row[v] = (float)((double)row[v] - mx - log(z));
}

/* Teacher-forced logprobs of text[1..n) through a pool of dtype dt (chunks
 * of 128 positions), into lp[n-1][V]. */
static int teacher_forced(eng_model *m, enum eng_cache_dtype dt, const int32_t *text, int n, float *lp, float *raw)
{
    const eng_config *c = eng_model_config(m);
    char err[512];
    int nb = n / 16 + 2;
    eng_kv_pool *kv;
    if (eng_kv_pool_create(eng_model_backend(m), c, dt, nb, 16, &kv, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    int32_t *bt = malloc(sizeof *bt * (size_t)nb);
    for (int i = 0; i < nb; i++) bt[i] = eng_kv_block_alloc(kv);
    float *buf = malloc(sizeof *buf * (size_t)128 * c->vocab_size);
    int rc = 0;
    for (int p = 0; p < n - 1 && !rc; p += 128) {
        int k = n - 1 - p < 128 ? n - 1 - p : 128;
        eng_seq s = { text + p, k, p, bt, nb, ENG_LOGITS_ALL };
        if ((rc = eng_model_forward(m, kv, &s, 1, buf, NULL, err, sizeof err))) fprintf(stderr, "%s\n", err);
        for (int i = 0; i < k && !rc; i++) {
            if (raw) memcpy(raw + (size_t)(p + i) * c->vocab_size, buf + (size_t)i * c->vocab_size, sizeof *buf * (size_t)c->vocab_size);
            log_softmax(buf + (size_t)i * c->vocab_size, c->vocab_size);
            memcpy(lp + (size_t)(p + i) * c->vocab_size, buf + (size_t)i * c->vocab_size, sizeof *buf * (size_t)c->vocab_size);
        }
    }
    free(buf);
    free(bt);
    eng_kv_pool_free(kv);
    return rc;
}

/* Greedy continuation of n tokens after prompt through a pool of dtype dt. */
static int greedy(eng_model *m, enum eng_cache_dtype dt, const int32_t *prompt, int np, int n, int32_t *out)
{
    const eng_config *c = eng_model_config(m);
    char err[512];
    int nb = (np + n) / 16 + 2;
    eng_kv_pool *kv;
    if (eng_kv_pool_create(eng_model_backend(m), c, dt, nb, 16, &kv, err, sizeof err)) return -1;
    int32_t *bt = malloc(sizeof *bt * (size_t)nb), *seq = malloc(sizeof *seq * (size_t)(np + n));
    for (int i = 0; i < nb; i++) bt[i] = eng_kv_block_alloc(kv);
    memcpy(seq, prompt, sizeof *seq * (size_t)np);
    float *lg = malloc(sizeof *lg * (size_t)c->vocab_size);
    eng_seq s = { seq, np, 0, bt, nb, ENG_LOGITS_LAST };
    int rc = eng_model_forward(m, kv, &s, 1, lg, NULL, err, sizeof err);
    for (int t = 0; t < n && !rc; t++) {
        seq[np + t] = out[t] = eng_sample_argmax(lg, c->vocab_size);
        eng_seq d = { seq + np + t, 1, np + t, bt, nb, ENG_LOGITS_LAST };
        if (t + 1 < n) rc = eng_model_forward(m, kv, &d, 1, lg, NULL, err, sizeof err);
    }
    free(lg); free(bt); free(seq);
    eng_kv_pool_free(kv);
    return rc;
}

/* Greedy agreement of (a, KV dtype da) and (b, db): 8 prompts of 64 corpus
 * tokens, G tokens each; one line after indent. */
static int greedy_agreement(eng_model *a, enum eng_cache_dtype da, eng_model *b, enum eng_cache_dtype db,
                            const int32_t *ids, int G, const char *indent)
{
    int agree_pos = 0, prefix_sum = 0, rc = 0;
    int32_t *ga = malloc(sizeof *ga * (size_t)G), *gb = malloc(sizeof *gb * (size_t)G);
    for (int k = 0; k < 8 && !rc; k++) {
        const int32_t *pr = ids + (size_t)k * 64;
        if (!ga || !gb || greedy(a, da, pr, 64, G, ga) || greedy(b, db, pr, 64, G, gb)) { rc = -1; break; }
        int pre = 0;
        while (pre < G && ga[pre] == gb[pre]) pre++;
        for (int t = 0; t < G; t++) agree_pos += ga[t] == gb[t];
        prefix_sum += pre;
    }
    if (!rc)
        printf("%sgreedy over 8 prompts x %d tokens: identical prefix %.1f tokens on average, %d of %d positions equal\n",
               indent, G, prefix_sum / 8.0, agree_pos, 8 * G);
    free(ga);
    free(gb);
    return rc;
}

/* The text: the project's own corpus (tools/mkmodel/corpus.c) through the
 * model's tokenizer, at least n + 8 * 64 ids (free them); NULL on error. */
static int32_t *corpus_ids(const bench_opts *o, int n)
{
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", o->dir);
    pl_tokenizer *tok;
    if (pl_tokenizer_load(&tok, path, err, sizeof err)) { fprintf(stderr, "glm-engine-bench: %s\n", err); return NULL; }
    size_t clen, nids;
    const char *corpus = eng_mk_corpus(&clen);
    int32_t *ids = NULL;
    int rc = pl_tokenizer_encode(tok, corpus, clen, &ids, &nids);
    pl_tokenizer_free(tok);
    if (rc || nids < (size_t)n + 8 * 64) {
        fprintf(stderr, "glm-engine-bench: cannot encode enough corpus text\n");
        free(ids);
        return NULL;
    }
    return ids;
}

int bench_kverr(const bench_opts *o)
{
    int n = o->prompt + 1, G = o->tokens;
    eng_model *m = open_model(o, 256, n + G + 64);
    if (!m) return 1;
    const eng_config *c = eng_model_config(m);
    int V = c->vocab_size;
    int32_t *ids = corpus_ids(o, n);
    if (!ids) return 1;
    float *la = malloc(sizeof *la * (size_t)(n - 1) * V), *lq = malloc(sizeof *lq * (size_t)(n - 1) * V);
    if (teacher_forced(m, ENG_CACHE_F32, ids, n, la, NULL) || teacher_forced(m, ENG_CACHE_FP8, ids, n, lq, NULL)) return 1;
    double mx = 0, mean = 0, mx_all = 0;
    int top1 = 0;
    for (int p = 0; p < n - 1; p++) {
        const float *a = la + (size_t)p * V, *q = lq + (size_t)p * V;
        double d = fabs(a[ids[p + 1]] - q[ids[p + 1]]);
        mean += d / (n - 1);
        if (d > mx) mx = d;
        for (int v = 0; v < V; v++) if (fabs(a[v] - q[v]) > mx_all && a[v] > -30) mx_all = fabs(a[v] - q[v]);
        top1 += eng_sample_argmax(a, V) == eng_sample_argmax(q, V);
    }
    printf("teacher-forced %d tokens of corpus text: |delta logprob| of the next token max %.4f, mean %.4f; "
           "max over all tokens with logprob > -30: %.4f; same argmax at %d of %d positions\n",
           n - 1, mx, mean, mx_all, top1, n - 1);
    if (greedy_agreement(m, ENG_CACHE_F32, m, ENG_CACHE_FP8, ids, G, "")) return 1;
    printf("KV bytes per token (all layers): auto (f32) %zu, fp8 %zu: %.2fx the tokens per GiB\n",
           eng_kv_bytes_per_token(c, ENG_CACHE_F32), eng_kv_bytes_per_token(c, ENG_CACHE_FP8),
           (double)eng_kv_bytes_per_token(c, ENG_CACHE_F32) / (double)eng_kv_bytes_per_token(c, ENG_CACHE_FP8));
    free(la); free(lq); free(ids);
    eng_model_close(m);
    return 0;
}

/* ===== --dtype bfloat16 against float32 compute =====
 *
 * The same text teacher-forced through two models of one checkpoint, one
 * per compute dtype (o->compute against float32): max and mean relative
 * logit error per position (max |a - b| / max |a| over the vocabulary),
 * |delta logprob| of the next token, argmax agreement; then greedy
 * agreement over 8 prompts. */
int bench_dtypeerr(const bench_opts *o)
{
    int n = o->prompt + 1, G = o->tokens;
    bench_opts of = *o;
    of.compute = ENG_BE_COMPUTE_F32;
    eng_model *m = open_model(&of, 256, n + G + 64), *q = open_model(o, 256, n + G + 64);
    if (!m || !q) return 1;
    int V = eng_model_config(m)->vocab_size;
    int32_t *ids = corpus_ids(o, n);
    if (!ids) return 1;
    size_t nv = (size_t)(n - 1) * V;
    float *la = malloc(sizeof *la * nv), *lq = malloc(sizeof *lq * nv), *ra = malloc(sizeof *ra * nv),
          *rq = malloc(sizeof *rq * nv);
    if (!la || !lq || !ra || !rq) { fprintf(stderr, "out of memory\n"); return 1; }
    if (teacher_forced(m, ENG_CACHE_F32, ids, n, la, ra) || teacher_forced(q, ENG_CACHE_F32, ids, n, lq, rq)) return 1;
    double rmax = 0, rmean = 0, dmax = 0, dmean = 0;
    int top1 = 0;
    for (int p = 0; p < n - 1; p++) {
        const float *a = ra + (size_t)p * V, *b = rq + (size_t)p * V;
        double md = 0, ma = 0;
        for (int v = 0; v < V; v++) {
            if (fabs(a[v]) > ma) ma = fabs(a[v]);
            if (fabs(a[v] - b[v]) > md) md = fabs(a[v] - b[v]);
        }
        double r = ma > 0 ? md / ma : 0, d = fabs(la[(size_t)p * V + ids[p + 1]] - lq[(size_t)p * V + ids[p + 1]]);
        rmean += r / (n - 1);
        if (r > rmax) rmax = r;
        dmean += d / (n - 1);
        if (d > dmax) dmax = d;
        top1 += eng_sample_argmax(a, V) == eng_sample_argmax(b, V);
    }
    printf("%s vs %s, teacher-forced %d tokens of corpus text:\n", eng_be_describe(eng_model_backend(q)),
           eng_be_describe(eng_model_backend(m)), n - 1);
    printf("  relative logit error (max |d| / max |logit| per position): max %.3g, mean %.3g\n", rmax, rmean);
    printf("  |delta logprob| of the next token: max %.4f, mean %.4f; same argmax at %d of %d positions\n", dmax,
           dmean, top1, n - 1);
    if (greedy_agreement(m, ENG_CACHE_F32, q, ENG_CACHE_F32, ids, G, "  ")) return 1;
    free(la); free(lq); free(ra); free(rq); free(ids);
    eng_model_close(m);
    eng_model_close(q);
    return 0;
}

/* ===== sample: a step's sampling, serial against the backend's threads =====
 *
 * `batch` sequences of GLM-5's 154,880-entry vocabulary (synthetic flat
 * logits, the worst case for top_p), sampled one after another on one thread
 * and as one task per sequence through eng_be_parallel with a sampler per
 * thread, as the serving loop does; medians of `repeat` interleaved rounds.
 * The two must pick the same tokens. */
#define BENCH_SAMPLE_VOCAB 154880

struct sample_bench {
    const float *logits;
    eng_sampler **smp;
    const eng_sampling *sp;
    eng_sample_out *out;
    int32_t prompt[4];
};

static void sample_bench_task(void *p, int i, int thread)
{
    struct sample_bench *c = p;
    eng_sample_seq q = { .p = c->sp, .prompt = c->prompt, .n_prompt = 4, .output = c->prompt, .n_output = 0,
                         .rng_key = eng_rng_key(1, (uint64_t)i) };
    eng_sample(c->smp[thread], &q, c->logits + (size_t)i * BENCH_SAMPLE_VOCAB, &c->out[i]);
}

int bench_sample(const bench_opts *o)
{
    char err[256];
    eng_backend *be;
    if (eng_be_cpu_create(o->threads, &be, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    int B = o->batch, nt = eng_be_threads(be), R = o->repeat < 3 ? 3 : o->repeat, rc = 0;
    float *lg = malloc(sizeof *lg * (size_t)B * BENCH_SAMPLE_VOCAB);
    eng_sample_out *o1 = calloc((size_t)B, sizeof *o1), *o2 = calloc((size_t)B, sizeof *o2);
    eng_sampler **smp = calloc((size_t)nt, sizeof *smp);
    double *ts = malloc(sizeof *ts * (size_t)R), *tp = malloc(sizeof *tp * (size_t)R);
    if (!lg || !o1 || !o2 || !smp || !ts || !tp) { fprintf(stderr, "out of memory\n"); rc = 1; goto done; }
    for (int i = 0; i < nt && !rc; i++) rc = eng_sampler_init(&smp[i], BENCH_SAMPLE_VOCAB, err, sizeof err);
    if (rc) { fprintf(stderr, "%s\n", err); goto done; }
    uint64_t z = 1;
    for (size_t i = 0; i < (size_t)B * BENCH_SAMPLE_VOCAB; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        lg[i] = (float)(z >> 40) / (float)(1 << 24) * 4.0f;
    }
    static const char *names[] = { "greedy", "T=0.8, top_p 0.95", "T=0.8, top_p 0.9, top_k 50, penalties", "T=0.8, logprobs 5" };
    printf("sampling %d sequences, vocab %d, %d threads (medians of %d interleaved rounds):\n", B, BENCH_SAMPLE_VOCAB, nt, R);
    for (int m = 0; m < 4; m++) {
        eng_sampling sp;
        eng_sampling_defaults(&sp);
        if (m == 0) sp.temperature = 0;
        else sp.temperature = 0.8;
        if (m == 1) sp.top_p = 0.95;
        if (m == 2) { sp.top_p = 0.9; sp.top_k = 50; sp.presence_penalty = 0.3; sp.repetition_penalty = 1.1; }
        if (m == 3) sp.logprobs = 5;
        struct sample_bench c1 = { lg, smp, &sp, o1, { 1, 2, 3, 4 } }, c2 = c1;
        c2.out = o2;
        for (int r = 0; r < R; r++) {
            double t = bench_now();
            for (int i = 0; i < B; i++) sample_bench_task(&c1, i, 0);
            ts[r] = bench_now() - t;
            t = bench_now();
            eng_be_parallel(be, sample_bench_task, &c2, B);
            tp[r] = bench_now() - t;
            for (int i = 0; i < B; i++)
                if (o1[i].token != o2[i].token) { fprintf(stderr, "glm-engine-bench: threads changed a token\n"); rc = 1; goto done; }
        }
        double a = bench_median(ts, R), b = bench_median(tp, R);
        printf("  %-40s serial %6.2f ms, on the pool %6.2f ms (%.2fx)\n", names[m], a * 1e3, b * 1e3, a / b);
    }
done:
    for (int i = 0; smp && i < nt; i++) eng_sampler_free(smp[i]);
    free(smp); free(lg); free(o1); free(o2); free(ts); free(tp);
    eng_be_free(be);
    return rc;
}

/* Register-only peaks of one core: 24 independent accumulators, no loads,
 * so the loop is bound by the arithmetic units alone (the ceiling the
 * kernels are measured against). 8-wide FP32 FMA: 16 FLOP/instruction;
 * vdpbf16ps on zmm: 32 products + 32 adds = 64 FLOP/instruction. */
#define PEAK_ITERS 10000000
#define PEAK_ACC 24
#define PEAK_UNROLL _Pragma("GCC unroll 24")
__attribute__((target("avx2,fma"))) static double peak_fma(void)
{
    __m256 a[PEAK_ACC], m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
    for (int j = 0; j < PEAK_ACC; j++) a[j] = _mm256_set1_ps((float)j);
    double t = bench_now();
    for (int i = 0; i < PEAK_ITERS; i++)
        PEAK_UNROLL for (int j = 0; j < PEAK_ACC; j++) a[j] = _mm256_fmadd_ps(a[j], m, c);
    t = bench_now() - t;
    float s = 0, v[8];
    for (int j = 0; j < PEAK_ACC; j++) { _mm256_storeu_ps(v, a[j]); s += v[0]; }
    if (s == 12345.0f) puts("");        /* keep the results live */
    return 16.0 * PEAK_ACC * PEAK_ITERS / t / 1e9;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static double peak_dpbf16(void)
{
    __m512 a[PEAK_ACC];
    __m512bh w = (__m512bh)_mm512_set1_epi16(0x3f80), x = (__m512bh)_mm512_set1_epi16(0x3a80);
    for (int j = 0; j < PEAK_ACC; j++) a[j] = _mm512_set1_ps((float)j);
    double t = bench_now();
    for (int i = 0; i < PEAK_ITERS; i++)
        PEAK_UNROLL for (int j = 0; j < PEAK_ACC; j++) a[j] = _mm512_dpbf16_ps(a[j], w, x);
    t = bench_now() - t;
    float s = 0, v[16];
    for (int j = 0; j < PEAK_ACC; j++) { _mm512_storeu_ps(v, a[j]); s += v[0]; }
    if (s == 12345.0f) puts("");
    return 64.0 * PEAK_ACC * PEAK_ITERS / t / 1e9;
}

/* The linears of the small preset's 8 attention layers at batched-decode
 * shapes, in the model's calls (attention(): the group of x's products,
 * the group of q_b and the indexer's wq_b, linear_t_heads over W_UK,
 * linear_heads over W_UV, o_proj), each layer its own weights (8 x 4.7 MB,
 * more than the L3: they come from memory as in a decode step, where the
 * MoE evicts them), and layer 0's dense SwiGLU (2816 x 1024 gate/up, down)
 * once per pass. Per product kind: the best of R passes (2 cores shared
 * with other work: the best shows what the kernels do, not the neighbours);
 * GFLOP/s counts multiply-adds x 2. */
enum { BL_L = 8, BL_H = 1024, BL_QL = 512, BL_KVW = 288, BL_ID = 64, BL_IH = 8, BL_NH = 8, BL_QK = 96,
       BL_NOPE = 64, BL_LAT = 256, BL_VD = 64, BL_I = 2816, BL_N = 16 };
static int bench_linear_layers(eng_backend *be, int R)
{
    static const char *kinds[] = { "x group (q_a, kv_a, idx wk, wproj)", "q_b group (q_b, idx wq_b)",
                                   "t_heads (W_UK)", "heads (W_UV)", "o_proj", "dense gate/up group", "dense down" };
    enum { NK = 7 };
    size_t per = (size_t)BL_QL * BL_H + (size_t)BL_KVW * BL_H + (size_t)BL_ID * BL_H + (size_t)BL_IH * BL_H +
                 (size_t)BL_NH * BL_QK * BL_QL + (size_t)BL_IH * BL_ID * BL_QL + (size_t)BL_NH * (BL_NOPE + BL_VD) * BL_LAT +
                 (size_t)BL_H * BL_NH * BL_VD;
    size_t nw = per * BL_L + 3 * (size_t)BL_I * BL_H;
    /* 2 MiB pages, as the model's weights (eng_weights_hugepages) */
    size_t wbytes = (nw * sizeof(uint16_t) + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
    uint16_t *w = aligned_alloc(2u << 20, wbytes);
    if (w) madvise(w, wbytes, MADV_HUGEPAGE);
    float *x = malloc(sizeof *x * BL_N * BL_I), *y = malloc(sizeof *y * BL_N * BL_I * 2);
    double *ts = malloc(sizeof *ts * NK * (size_t)R);
    int rc = 0;
    if (!w || !x || !y || !ts) { fprintf(stderr, "out of memory\n"); rc = 1; goto done; }
    uint64_t z = 7;
    for (size_t i = 0; i < nw; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (uint16_t)(0x3c00 | (z >> 56)) ^ (uint16_t)((z >> 40) & 0x8000);
    }
    for (size_t i = 0; i < (size_t)BL_N * BL_I; i++) x[i] = (float)(i % 31) * 0.02f - 0.3f;
    double flop[NK] = { 0 };
    static const int ns[] = { 1, 6, BL_N };
    printf("attention linears of %d layers (weights from memory) + the dense SwiGLU, BF16 weights, best of %d passes:\n",
           BL_L, R);
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
        int n = ns[a];
        for (int r = 0; r < R; r++) {
            double t[NK] = { 0 };
            uint16_t *p = w;
            for (int l = 0; l < BL_L; l++) {
                eng_tensor qa = { ENG_DT_BF16, BL_QL, BL_H, p, NULL, 0, "q_a" };
                p += (size_t)BL_QL * BL_H;
                eng_tensor kva = { ENG_DT_BF16, BL_KVW, BL_H, p, NULL, 0, "kv_a" };
                p += (size_t)BL_KVW * BL_H;
                eng_tensor wk = { ENG_DT_BF16, BL_ID, BL_H, p, NULL, 0, "wk" };
                p += (size_t)BL_ID * BL_H;
                eng_tensor wp = { ENG_DT_BF16, BL_IH, BL_H, p, NULL, 0, "wproj" };
                p += (size_t)BL_IH * BL_H;
                eng_tensor qb = { ENG_DT_BF16, BL_NH * BL_QK, BL_QL, p, NULL, 0, "q_b" };
                p += (size_t)BL_NH * BL_QK * BL_QL;
                eng_tensor wqb = { ENG_DT_BF16, BL_IH * BL_ID, BL_QL, p, NULL, 0, "wq_b" };
                p += (size_t)BL_IH * BL_ID * BL_QL;
                eng_tensor kvb = { ENG_DT_BF16, BL_NH * (BL_NOPE + BL_VD), BL_LAT, p, NULL, 0, "kv_b" };
                p += (size_t)BL_NH * (BL_NOPE + BL_VD) * BL_LAT;
                eng_tensor wo = { ENG_DT_BF16, BL_H, BL_NH * BL_VD, p, NULL, 0, "o" };
                p += (size_t)BL_H * BL_NH * BL_VD;
                int full = l % 2 == 0;          /* 4 of the 8 layers run the indexer */
                float *y1 = y, *y2 = y + BL_N * BL_QL, *y3 = y2 + BL_N * BL_KVW, *y4 = y3 + BL_N * BL_ID;
                eng_be_lin_out xw[4] = { { &qa, 0, BL_QL, y1, BL_QL, 0 }, { &kva, 0, BL_KVW, y2, BL_KVW, 0 },
                                         { &wk, 0, BL_ID, y3, BL_ID, 0 }, { &wp, 0, BL_IH, y4, BL_IH, 0 } };
                double t0 = bench_now();
                eng_be_linear_group(be, xw, full ? 4 : 2, x, n, BL_H);
                double t1 = bench_now();
                eng_be_lin_out qw[2] = { { &qb, 0, BL_NH * BL_QK, y, BL_NH * BL_QK, 0 },
                                         { &wqb, 0, BL_IH * BL_ID, y + BL_N * BL_NH * BL_QK, BL_IH * BL_ID, 0 } };
                eng_be_linear_group(be, qw, full ? 2 : 1, x, n, BL_QL);
                double t2 = bench_now();
                eng_be_heads hq = { BL_NH, BL_NOPE + BL_VD, BL_QK, BL_LAT };
                eng_be_linear_t_heads(be, &kvb, 0, BL_NOPE, &hq, x, n, BL_NH * BL_QK, y, BL_NH * BL_LAT);
                double t3 = bench_now();
                eng_be_heads ho = { BL_NH, BL_NOPE + BL_VD, BL_LAT, BL_VD };
                eng_be_linear_heads(be, &kvb, BL_NOPE, BL_VD, &ho, x, n, BL_NH * BL_LAT, y, BL_NH * BL_VD);
                double t4 = bench_now();
                eng_be_linear(be, &wo, 0, BL_H, x, n, BL_NH * BL_VD, y, BL_H);
                double t5 = bench_now();
                t[0] += t1 - t0; t[1] += t2 - t1; t[2] += t3 - t2; t[3] += t4 - t3; t[4] += t5 - t4;
                if (r == 0 && a == 0) {
                    flop[0] += (double)(BL_QL + BL_KVW + (full ? BL_ID + BL_IH : 0)) * BL_H;
                    flop[1] += (double)(BL_NH * BL_QK + (full ? BL_IH * BL_ID : 0)) * BL_QL;
                    flop[2] += (double)BL_NH * BL_NOPE * BL_LAT;
                    flop[3] += (double)BL_NH * BL_VD * BL_LAT;
                    flop[4] += (double)BL_H * BL_NH * BL_VD;
                }
            }
            eng_tensor g = { ENG_DT_BF16, BL_I, BL_H, p, NULL, 0, "gate" };
            eng_tensor u = { ENG_DT_BF16, BL_I, BL_H, p + (size_t)BL_I * BL_H, NULL, 0, "up" };
            eng_tensor d = { ENG_DT_BF16, BL_H, BL_I, p + 2 * (size_t)BL_I * BL_H, NULL, 0, "down" };
            eng_be_lin_out gu[2] = { { &g, 0, BL_I, y, BL_I, 0 }, { &u, 0, BL_I, y + BL_N * BL_I, BL_I, 0 } };
            double t0 = bench_now();
            eng_be_linear_group(be, gu, 2, x, n, BL_H);
            double t1 = bench_now();
            eng_be_linear(be, &d, 0, BL_H, x, n, BL_I, y, BL_H);
            double t2 = bench_now();
            t[5] = t1 - t0;
            t[6] = t2 - t1;
            if (r == 0 && a == 0) { flop[5] = 2.0 * BL_I * BL_H; flop[6] = (double)BL_I * BL_H; }
            for (int k = 0; k < NK; k++) ts[k * R + r] = t[k];
        }
        double tot = 0, ftot = 0;
        printf("  %2d token%s:\n", n, n > 1 ? "s" : " ");
        for (int k = 0; k < NK; k++) {
            double m = ts[k * R];
            for (int r = 1; r < R; r++) m = ts[k * R + r] < m ? ts[k * R + r] : m;
            tot += m;
            ftot += flop[k];
            printf("    %-36s %7.3f ms  %6.1f GFLOP/s\n", kinds[k], m * 1e3, 2.0 * flop[k] * n / m / 1e9);
        }
        printf("    %-36s %7.3f ms  %6.1f GFLOP/s\n", "sum", tot * 1e3, 2.0 * ftot * n / tot / 1e9);
    }
done:
    free(w); free(x); free(y); free(ts);
    return rc;
}

/* ===== linear: the CPU linear kernels alone =====
 *
 * eng_be_linear over a BF16 weight of the small preset's shapes (512 x 1024,
 * 1024 x 512: attention and expert projections) for 1 to 512 token rows
 * (activations [n, cols] packed, as the model passes them); best of
 * `repeat` (at least 5) calls, so a preempted call does not decide it.
 * Then the attention input's four products as separate calls and as one
 * eng_be_linear_group (the pool runs it saves). */
int bench_linear(const bench_opts *o)
{
    char err[256];
    eng_backend *be;
    if (eng_be_cpu_create(o->threads, &be, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    if (eng_be_set_compute(be, (enum eng_be_compute)o->compute, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        eng_be_free(be);
        return 1;
    }
    __builtin_cpu_init();
    printf("register-only peak, one core (best of 3): FP32 FMA ");
    double pf = 0, pd = 0;
    for (int r = 0; r < 3; r++) { double v = peak_fma(); if (v > pf) pf = v; }
    printf("%.1f GFLOP/s", pf);
    if (__builtin_cpu_supports("avx512bf16")) {
        for (int r = 0; r < 3; r++) { double v = peak_dpbf16(); if (v > pd) pd = v; }
        printf(", vdpbf16ps %.1f GFLOP/s (%.2fx)", pd, pd / pf);
    }
    printf("\n");
    /* 32768 x 1024: the small preset's LM head, 64 MiB of BF16: from memory, not the caches */
    static const int shapes[][2] = { { 512, 1024 }, { 1024, 512 }, { 2048, 1024 }, { 32768, 1024 } };
    static const int ns[] = { 1, 2, 3, 4, 6, 16, 128, 512 };
    int R = o->repeat < 5 ? 5 : o->repeat, rc = 0;
    size_t maxw = 32768 * 1024;
    /* 2 MiB pages, as glm-engine's weights (eng_weights_hugepages) */
    uint16_t *w = aligned_alloc((size_t)2 << 20, sizeof *w * maxw);
    if (w) madvise(w, sizeof *w * maxw, MADV_HUGEPAGE);
    float *x = malloc(sizeof *x * 512 * 1024), *y = malloc(sizeof *y * 512 * 2048);
    if (!w || !x || !y) { fprintf(stderr, "out of memory\n"); rc = 1; goto done; }
    uint64_t z = 3;
    for (size_t i = 0; i < maxw; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (uint16_t)(0x3c00 | (z >> 56)) ^ (uint16_t)((z >> 40) & 0x8000);
    }
    for (size_t i = 0; i < 512 * 1024; i++) x[i] = (float)(i % 29) * 0.03f - 0.4f;
    printf("eng_be_linear, BF16 weights, %s (best of %d calls):\n", eng_be_describe(be), R);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        eng_tensor W = { ENG_DT_BF16, rows, cols, w, NULL, 0, "w" };
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
            int n = ns[a];
            if (rows > 2048 && n > 16) continue;        /* the LM head: decode batches only */
            double best = 1e9;
            for (int r = 0; r < R; r++) {
                double t = bench_now();
                eng_be_linear(be, &W, 0, rows, x, n, cols, y, rows);
                t = bench_now() - t;
                if (t < best) best = t;
            }
            printf("  %4d x %4d, %3d tokens: %8.3f ms  %7.4f ms/token  %6.1f GFLOP/s\n", rows, cols, n, best * 1e3,
                   best * 1e3 / n, 2.0 * rows * cols * n / best / 1e9);
        }
    }
    /* The products of one input a GLM-5 small-preset layer makes (q_a 512,
     * kv_a 288, the indexer's wk 64 and weights_proj 8 rows, all x 1024),
     * as four eng_be_linear calls (four pool runs) and as one
     * eng_be_linear_group call, alternating; best of R each. */
    static const int grows[] = { 512, 288, 64, 8 };
    printf("4 products of one input (%d+%d+%d+%d) x 1024, separate calls vs eng_be_linear_group:\n", grows[0],
           grows[1], grows[2], grows[3]);
    for (int n = 1; n <= 3; n += 2) {
        eng_tensor Ws[4];
        eng_be_lin_out outs[4];
        int64_t off = 0;
        for (int j = 0; j < 4; j++) {
            Ws[j] = (eng_tensor){ ENG_DT_BF16, grows[j], 1024, w + off * 1024, NULL, 0, "w" };
            outs[j] = (eng_be_lin_out){ &Ws[j], 0, grows[j], y + off * n, grows[j], 0 };
            off += grows[j];
        }
        double *ts = malloc(sizeof *ts * 2 * (size_t)R);
        if (!ts) { fprintf(stderr, "out of memory\n"); rc = 1; goto done; }
        for (int r = 0; r < R; r++) {
            double t = bench_now();
            for (int j = 0; j < 4; j++) eng_be_linear(be, &Ws[j], 0, grows[j], x, n, 1024, outs[j].y, grows[j]);
            ts[r] = bench_now() - t;
            t = bench_now();
            eng_be_linear_group(be, outs, 4, x, n, 1024);
            ts[R + r] = bench_now() - t;
        }
        qsort(ts, (size_t)R, sizeof *ts, cmp_d);
        qsort(ts + R, (size_t)R, sizeof *ts, cmp_d);
        printf("  %d token%s: best separate %6.1f us, grouped %6.1f us (%.2fx); median %6.1f vs %6.1f us (%.2fx)\n",
               n, n > 1 ? "s" : "", ts[0] * 1e6, ts[R] * 1e6, ts[0] / ts[R], ts[R / 2] * 1e6, ts[R + R / 2] * 1e6,
               ts[R / 2] / ts[R + R / 2]);
        free(ts);
    }
    if (rc == 0) rc = bench_linear_layers(be, R);
done:
    free(w); free(x); free(y);
    eng_be_free(be);
    return rc;
}

/* ===== attention ops =====
 *
 * The three attention ops of one layer's prefill at the GLM-5 small
 * preset's shapes (8 heads, latent 256 + rope 32, kv_b 8 x (64 + 64) rows,
 * indexer 8 x 64, top-256, blocks of 16), synthetic values, --prompt
 * tokens of one sequence (query i sees keys 0..i; past 256 keys the
 * indexer's selection): linear_t_heads (the absorbed query), index_topk,
 * mla_attend. Best and median of --repeat (at least 5) calls each. */
/* --mode attn --batch B (B > 1): mla_attend shaped like one layer of
 * batched decode: B queries, each over its own sequence's --prompt cache
 * rows (no indexer selection below its top-k), the rows evicted from the
 * caches before every call by streaming a 64 MiB buffer (in the model the
 * MoE weights of the other layers pass through between two visits of a
 * layer's rows). Timed: mla_attend alone. */
static int bench_attn_decode(const bench_opts *o)
{
    enum { NH = 8, LAT = 256, ROPE = 32, BS = 16 };
    int B = o->batch, T = o->prompt, R = o->repeat < 5 ? 5 : o->repeat, nb = (T + BS - 1) / BS, rc = 1;
    size_t nflush = (size_t)16 << 20;
    char err[256];
    eng_backend *be;
    if (eng_be_cpu_create(o->threads, &be, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    eng_be_cache mc = { NULL, ENG_CACHE_F32, LAT + ROPE, LAT, eng_be_cache_row_bytes(ENG_CACHE_F32, LAT + ROPE, LAT), 0 };
    size_t nrows = (size_t)B * nb * BS;
    float *ql = malloc(sizeof *ql * (size_t)B * NH * LAT), *qp = malloc(sizeof *qp * (size_t)B * NH * ROPE);
    float *out = malloc(sizeof *out * (size_t)B * NH * LAT), *rows = malloc(sizeof *rows * nrows * (LAT + ROPE));
    float *flush = malloc(sizeof *flush * nflush);
    int64_t *slot = malloc(sizeof *slot * nrows);
    int32_t *bt = malloc(sizeof *bt * (size_t)B * nb);
    eng_be_keys *keys = malloc(sizeof *keys * (size_t)B);
    double *ts = malloc(sizeof *ts * (size_t)R);
    mc.data = eng_be_alloc(be, nrows * mc.row_bytes);
    if (!ql || !qp || !out || !rows || !flush || !slot || !bt || !keys || !ts || !mc.data) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    uint64_t z = 3;
#define RND() ((float)((z = z * 6364136223846793005ull + 1) >> 40) / (1 << 24) * 2 - 1)
    for (size_t i = 0; i < (size_t)B * NH * LAT; i++) ql[i] = RND();
    for (size_t i = 0; i < (size_t)B * NH * ROPE; i++) qp[i] = RND();
    for (size_t i = 0; i < nrows * (LAT + ROPE); i++) rows[i] = RND();
#undef RND
    for (size_t i = 0; i < nflush; i++) flush[i] = (float)(i & 7);
    for (size_t i = 0; i < nrows; i++) slot[i] = (int64_t)i;
    eng_be_cache_store(be, &mc, slot, (int)nrows, rows, LAT + ROPE);
    for (int b = 0; b < B; b++) {           /* sequences' blocks interleaved, as a pool fills */
        for (int k = 0; k < nb; k++) bt[b * nb + k] = k * B + b;
        keys[b] = (eng_be_keys){ bt + b * nb, BS, T, NULL, 0 };
    }
    volatile float sink = 0;
    for (int r = 0; r < R; r++) {
        float s = 0;
        for (size_t i = 0; i < nflush; i += 16) s += flush[i];
        sink += s;
        double t0 = bench_now();
        eng_be_mla_attend(be, ql, NH * LAT, qp, NH * ROPE, ROPE, &mc, LAT, NH, 0.102f, keys, B, out, NH * LAT);
        ts[r] = bench_now() - t0;
    }
    (void)sink;
    qsort(ts, (size_t)R, sizeof *ts, cmp_d);
    printf("mla_attend of one layer, decode batch %d over %d keys each, rows evicted, small-preset shapes, %s "
           "(best / median of %d calls):\n  %-28s %8.1f us  %8.1f us\n", B, T, eng_be_describe(be), R, "mla_attend",
           ts[0] * 1e6, ts[R / 2] * 1e6);
    rc = 0;
done:
    free(ql); free(qp); free(out); free(rows); free(flush); free(slot); free(bt); free(keys); free(ts);
    eng_be_dealloc(be, mc.data);
    eng_be_free(be);
    return rc;
}

int bench_attn(const bench_opts *o)
{
    enum { NH = 8, NOPE = 64, VD = 64, LAT = 256, ROPE = 32, IH = 8, ID = 64, TOPK = 256, BS = 16 };
    if (o->batch > 1) return bench_attn_decode(o);
    int T = o->prompt, R = o->repeat < 5 ? 5 : o->repeat, nb = (T + BS - 1) / BS, rc = 1;
    char err[256];
    eng_backend *be;
    if (eng_be_cpu_create(o->threads, &be, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    eng_be_cache mc = { NULL, ENG_CACHE_F32, LAT + ROPE, LAT, eng_be_cache_row_bytes(ENG_CACHE_F32, LAT + ROPE, LAT), 0 };
    eng_be_cache ic = { NULL, ENG_CACHE_F32, ID, ID, eng_be_cache_row_bytes(ENG_CACHE_F32, ID, ID), 0 };
    size_t nq = (size_t)T * NH * (NOPE + ROPE), nl = (size_t)T * NH * LAT, niq = (size_t)T * IH * ID;
    uint16_t *kvb = malloc(sizeof *kvb * NH * (NOPE + VD) * LAT);
    float *q = malloc(sizeof *q * nq), *ql = malloc(sizeof *ql * nl), *out = malloc(sizeof *out * nl);
    float *iq = malloc(sizeof *iq * niq), *iw = malloc(sizeof *iw * (size_t)T * IH);
    float *rows = malloc(sizeof *rows * (size_t)T * (LAT + ROPE)), *irows = malloc(sizeof *irows * (size_t)T * ID);
    int64_t *slot = malloc(sizeof *slot * (size_t)T);
    int32_t *bt = malloc(sizeof *bt * (size_t)nb), *sel = malloc(sizeof *sel * (size_t)T * TOPK);
    int *nsel = malloc(sizeof *nsel * (size_t)T);
    eng_be_keys *keys = malloc(sizeof *keys * (size_t)T);
    double *ts = malloc(sizeof *ts * 3 * (size_t)R);
    mc.data = eng_be_alloc(be, (size_t)T * mc.row_bytes);
    ic.data = eng_be_alloc(be, (size_t)T * ic.row_bytes);
    if (!kvb || !q || !ql || !out || !iq || !iw || !rows || !irows || !slot || !bt || !sel || !nsel || !keys || !ts ||
        !mc.data || !ic.data) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    uint64_t z = 1;
#define RND() ((float)((z = z * 6364136223846793005ull + 1) >> 40) / (1 << 24) * 2 - 1)
    for (int i = 0; i < NH * (NOPE + VD) * LAT; i++) kvb[i] = eng_f32_to_bf16(RND() * 0.1f);
    for (size_t i = 0; i < nq; i++) q[i] = RND();
    for (size_t i = 0; i < niq; i++) iq[i] = RND();
    for (size_t i = 0; i < (size_t)T * IH; i++) iw[i] = RND() + 1.0f;
    for (size_t i = 0; i < (size_t)T * (LAT + ROPE); i++) rows[i] = RND();
    for (size_t i = 0; i < (size_t)T * ID; i++) irows[i] = RND();
#undef RND
    for (int i = 0; i < T; i++) slot[i] = i;
    for (int i = 0; i < nb; i++) bt[i] = i;
    eng_be_cache_store(be, &mc, slot, T, rows, LAT + ROPE);
    eng_be_cache_store(be, &ic, slot, T, irows, ID);
    eng_tensor W = { ENG_DT_BF16, NH * (NOPE + VD), LAT, kvb, NULL, 0, "kv_b" };
    eng_be_heads hq = { NH, NOPE + VD, NOPE + ROPE, LAT };
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < T; i++) keys[i] = (eng_be_keys){ bt, BS, i + 1, NULL, 0 };
        double t0 = bench_now();
        eng_be_linear_t_heads(be, &W, 0, NOPE, &hq, q, T, NH * (NOPE + ROPE), ql, NH * LAT);
        double t1 = bench_now();
        eng_be_index_topk(be, iq, IH * ID, iw, IH, IH, &ic, keys, T, TOPK, sel, nsel);
        double t2 = bench_now();
        for (int i = 0; i < T; i++)
            if (nsel[i] == TOPK) { keys[i].sel = sel + (size_t)i * TOPK; keys[i].n_sel = TOPK; }
        eng_be_mla_attend(be, ql, NH * LAT, q + NOPE, NH * (NOPE + ROPE), NOPE + ROPE, &mc, LAT, NH, 0.102f, keys, T,
                          out, NH * LAT);
        double t3 = bench_now();
        ts[r] = t1 - t0;
        ts[R + r] = t2 - t1;
        ts[2 * R + r] = t3 - t2;
    }
    printf("attention ops of one layer, %d-token prefill, small-preset shapes, %s (best / median of %d calls):\n", T,
           eng_be_describe(be), R);
    static const char *names[3] = { "linear_t_heads (absorbed q)", "index_topk (DSA, top-256)", "mla_attend" };
    for (int k = 0; k < 3; k++) {
        qsort(ts + k * R, (size_t)R, sizeof *ts, cmp_d);
        printf("  %-28s %8.3f ms  %8.3f ms\n", names[k], ts[k * R] * 1e3, ts[k * R + R / 2] * 1e3);
    }
    rc = 0;
done:
    free(kvb); free(q); free(ql); free(out); free(iq); free(iw); free(rows); free(irows); free(slot); free(bt);
    free(sel); free(nsel); free(keys); free(ts);
    eng_be_dealloc(be, mc.data);
    eng_be_dealloc(be, ic.data);
    eng_be_free(be);
    return rc;
}
