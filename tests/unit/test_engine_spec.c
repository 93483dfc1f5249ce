/* Speculative decoding bookkeeping (engine/serve.c + scheduler.c) on the
 * test model of engine_testlm.h, whose MTP layer drafts from its own cache
 * rows and checks that rows of rejected drafts were rolled back: tokens
 * equal plain greedy decoding for K = 1..5 alone and mixed, acceptance
 * counters equal a replay of the same drafting, oracle drafts are all
 * accepted, a stop or min_tokens inside an accepted run, seeded sampling
 * identical with and without speculation, n > 1, abort, preemption. */
#include "engine_fx.h"

#include <math.h>
#include <unistd.h>

#include "../../engine/model.h"
#include "../../engine/sample.h"
#include "../../tools/engbench/oracle.h"
#include "../../tools/mkmodel/mkmodel.h"

static int open_spec(fx *f, int K, int mtp, int max_seqs, int budget, int n_blocks)
{
    eng_serve_cfg c;
    fx_cfg(&c, max_seqs, budget, 128, n_blocks, 4);
    c.num_spec_tokens = K;
    return fx_open_cfg(f, &c, mtp);
}

static void gen_json(char *buf, size_t cap, const char *id, const int32_t *p, int np, const char *sampling)
{
    char ids[1024];
    prompt_json(ids, sizeof ids, p, np);
    snprintf(buf, cap, "{\"type\":\"generate\",\"id\":\"%s\",\"prompt_ids\":%s,\"sampling\":{%s}}", id, ids, sampling);
}

/* Eight greedy requests of different prompt and output lengths: for each K
 * the tokens equal plain greedy decoding and the engine's counters equal
 * the replay's, request by request summed (a big pool and budget: nothing
 * preempted or cut, so every round drafts as the replay does). */
TEST(spec_greedy_equals_plain_and_counters_match)
{
    for (int K = 1; K <= ENG_SPEC_MAX; K++) {
        fx f;
        if (open_spec(&f, K, TLM_MTP_NOISY, 16, 512, 512)) { CHECK(0); return; }
        tlm_spec_stats want = { 0 };
        int32_t pr[8][40], np[8], nt[8];
        char buf[2048], id[16], smp[128];
        for (int r = 0; r < 8; r++) {
            np[r] = 1 + (r * 5) % 30;
            nt[r] = 1 + (r * 7 + K) % 24;
            for (int i = 0; i < np[r]; i++) pr[r][i] = (r * 31 + i * 13 + K) % 90;
            snprintf(id, sizeof id, "g%d", r);
            snprintf(smp, sizeof smp, "\"temperature\":0,\"max_tokens\":%d,\"ignore_eos\":true", nt[r]);
            gen_json(buf, sizeof buf, id, pr[r], np[r], smp);
            feed(&f, buf);
            int32_t tmp[32];
            tlm_ref_spec(TV, TLM_MTP_NOISY, pr[r], np[r], nt[r], K, tmp, &want);
        }
        run_until_idle(&f, 500);
        int multi = 0;
        for (int r = 0; r < 8; r++) {
            snprintf(id, sizeof id, "g%d", r);
            int32_t got[32], ref[32];
            tlm_ref_greedy(TV, pr[r], np[r], nt[r], ref);
            int n = tokens_of(&f, id, 0, got, 32, NULL);
            CHECK_EQ_INT(n, nt[r]);
            CHECK(n == nt[r] && !memcmp(got, ref, sizeof(int32_t) * (size_t)n));
            CHECK(count_msgs(&f, "tokens", id) <= nt[r]);
            multi += count_msgs(&f, "tokens", id) < nt[r];
        }
        CHECK(multi > 0);                                  /* several tokens in one message happened */
        eng_serve_stats st;
        eng_serve_get_stats(f.e, &st);
        CHECK_EQ_INT(st.spec_drafts, want.drafts);
        CHECK_EQ_INT(st.spec_draft_tokens, want.draft_tokens);
        CHECK_EQ_INT(st.spec_accepted, want.accepted);
        for (int j = 0; j < K; j++) CHECK_EQ_INT(st.spec_accepted_pos[j], want.pos[j]);
        CHECK(want.accepted > 0 && want.accepted < want.draft_tokens);   /* both outcomes exercised */
        if (t_cur_failed) fprintf(stderr, "  (K = %d)\n", K);
        fx_close_idle(&f, 512);
    }
}

/* Oracle drafts (the target's own greedy tokens) are all accepted: with K
 * drafts every step yields K + 1 tokens until the end. */
TEST(spec_oracle_all_accepted)
{
    fx f;
    if (open_spec(&f, 3, TLM_MTP_ORACLE, 8, 256, 128)) { CHECK(0); return; }
    feed(&f, "{\"type\":\"generate\",\"id\":\"o\",\"prompt_ids\":[5,6,7],\"sampling\":{\"temperature\":0,\"max_tokens\":21,\"ignore_eos\":true}}");
    run_until_idle(&f, 100);
    int32_t got[32], ref[32] = {0}, pr[3] = {5, 6, 7};
    tlm_ref_greedy(TV, pr, 3, 21, ref);
    CHECK(tokens_of(&f, "o", 0, got, 32, NULL) == 21 && !memcmp(got, ref, sizeof(int32_t) * 21));
    eng_serve_stats st;
    eng_serve_get_stats(f.e, &st);
    CHECK(st.spec_draft_tokens > 0 && st.spec_accepted == st.spec_draft_tokens);
    for (int j = 0; j < 3; j++) CHECK_EQ_INT(st.spec_accepted_pos[j], st.spec_drafts);
    /* 1 prefill token, then rounds of 4: 1 + 4 * 5 = 21 in 6 messages */
    CHECK_EQ_INT(count_msgs(&f, "tokens", "o"), 6);
    fx_close_idle(&f, 128);
}

/* A stop id inside an accepted run cuts it there (finish stop, stop_reason,
 * usage counts only what was emitted); min_tokens masks the stop id inside
 * a run exactly as plain decoding does; max_tokens is never overrun. */
TEST(spec_stop_and_limits_inside_runs)
{
    int32_t pr[4] = {10, 20, 30, 40}, ref[16];
    tlm_ref_greedy(TV, pr, 4, 16, ref);
    char a[512], b[512], c[512];
    snprintf(a, sizeof a, "\"temperature\":0,\"max_tokens\":16,\"stop_token_ids\":[%d],\"eos_token_ids\":[96]", ref[6]);
    snprintf(b, sizeof b, "\"temperature\":0,\"max_tokens\":16,\"min_tokens\":9,\"stop_token_ids\":[%d]", ref[6]);
    snprintf(c, sizeof c, "\"temperature\":0,\"max_tokens\":7,\"ignore_eos\":true");
    fx plain, spec;
    if (open_spec(&plain, 0, TLM_MTP_NONE, 8, 256, 128) || open_spec(&spec, 5, TLM_MTP_ORACLE, 8, 256, 128)) {
        CHECK(0);
        return;
    }
    for (int k = 0; k < 2; k++) {
        fx *f = k ? &spec : &plain;
        char buf[1024];
        gen_json(buf, sizeof buf, "a", pr, 4, a);
        feed(f, buf);
        gen_json(buf, sizeof buf, "b", pr, 4, b);
        feed(f, buf);
        gen_json(buf, sizeof buf, "c", pr, 4, c);
        feed(f, buf);
        run_until_idle(f, 200);
    }
    int32_t x[32], y[32];
    const char *fx_, *fy;
    int nx = tokens_of(&spec, "a", 0, x, 32, &fx_), ny = tokens_of(&plain, "a", 0, y, 32, &fy);
    CHECK_EQ_INT(nx, 7);
    CHECK(nx == ny && !memcmp(x, y, sizeof(int32_t) * (size_t)nx) && fx_ && !strcmp(fx_, "stop"));
    CHECK_EQ_INT(jint(last_msg(&spec, "tokens", "a"), "stop_reason", -1), ref[6]);
    CHECK(count_msgs(&spec, "tokens", "a") < 7);          /* the stop came inside a run */
    CHECK_EQ_INT(jint(cJSON_GetObjectItemCaseSensitive(first_msg(&spec, "end", "a"), "usage"), "completion_tokens", -1), 7);
    nx = tokens_of(&spec, "b", 0, x, 32, NULL);
    ny = tokens_of(&plain, "b", 0, y, 32, NULL);
    CHECK(nx == ny && nx >= 9 && !memcmp(x, y, sizeof(int32_t) * (size_t)nx));
    nx = tokens_of(&spec, "c", 0, x, 32, &fx_);
    CHECK(nx == 7 && fx_ && !strcmp(fx_, "length") && !memcmp(x, ref, sizeof(int32_t) * 7));
    fx_close_idle(&plain, 128);
    fx_close_idle(&spec, 128);
}

/* Seeded sampling above temperature 0, with penalties, top_p and logprobs,
 * n = 2: every tokens message's ids and logprobs are the same with and
 * without speculation, for each K (the verification draws each position's
 * token with the same uniform as plain decoding, doc in sample.h). */
TEST(spec_seeded_identical_to_plain)
{
    const char *reqs[] = {
        "{\"type\":\"generate\",\"id\":\"s\",\"n\":2,\"prompt_ids\":[3,1,4,1,5,9,2,6],\"sampling\":{\"temperature\":0.7,"
        "\"top_p\":0.9,\"seed\":11,\"max_tokens\":18,\"ignore_eos\":true,\"logprobs\":2,\"repetition_penalty\":1.2,"
        "\"frequency_penalty\":0.4}}",
        "{\"type\":\"generate\",\"id\":\"u\",\"prompt_ids\":[8,8,8],\"sampling\":{\"temperature\":0.3,\"max_tokens\":15,"
        "\"min_tokens\":3,\"top_k\":5}}",
    };
    fx plain;
    if (open_spec(&plain, 0, TLM_MTP_NONE, 8, 64, 128)) { CHECK(0); return; }
    for (size_t i = 0; i < PL_ARRAY_LEN(reqs); i++) feed(&plain, reqs[i]);
    run_until_idle(&plain, 200);
    for (int K = 1; K <= ENG_SPEC_MAX; K += 2) {
        fx spec;
        if (open_spec(&spec, K, TLM_MTP_NOISY, 8, 64, 128)) { CHECK(0); return; }
        for (size_t i = 0; i < PL_ARRAY_LEN(reqs); i++) feed(&spec, reqs[i]);
        run_until_idle(&spec, 200);
        const char *ids[3][2] = { { "s", "0" }, { "s", "1" }, { "u", "0" } };
        for (int c = 0; c < 3; c++) {
            int32_t x[32], y[32];
            int nx = tokens_of(&spec, ids[c][0], atoi(ids[c][1]), x, 32, NULL);
            int ny = tokens_of(&plain, ids[c][0], atoi(ids[c][1]), y, 32, NULL);
            CHECK(nx == ny && nx > 0 && !memcmp(x, y, sizeof(int32_t) * (size_t)nx));
        }
        /* logprobs: the k-th entry of choice s#0 equal across the runs */
        cJSON *lx = cJSON_CreateArray(), *ly = cJSON_CreateArray();
        for (int run = 0; run < 2; run++) {
            const cJSON *m;
            cJSON_ArrayForEach(m, (run ? &plain : &spec)->out.list) {
                if (strcmp(jstr(m, "type"), "tokens") || strcmp(jstr(m, "id"), "s") || jint(m, "index", -1)) continue;
                const cJSON *e;
                cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(m, "logprobs"))
                    cJSON_AddItemToArray(run ? ly : lx, cJSON_Duplicate(e, 1));
            }
        }
        CHECK(cJSON_GetArraySize(lx) == 18 && cJSON_Compare(lx, ly, 1));
        cJSON_Delete(lx);
        cJSON_Delete(ly);
        eng_serve_stats st;
        eng_serve_get_stats(spec.e, &st);
        CHECK(st.spec_drafts > 0);
        fx_close_idle(&spec, 128);
    }
    fx_close_idle(&plain, 128);
}

/* Under pressure (16 blocks of 4 for 10 requests, chunked prefill, the
 * prefix cache, n = 2, an abort): every finished request equals plain
 * greedy decoding, drafts survive nothing they should not (preemption drops
 * them), and the pool ends all free or cached. */
TEST(spec_under_pressure)
{
    fx f;
    eng_serve_cfg c;
    fx_cfg(&c, 6, 24, 64, 16, 4);
    c.num_spec_tokens = 4;
    if (fx_open_cfg(&f, &c, TLM_MTP_NOISY)) { CHECK(0); return; }
    int32_t pr[10][32], np[10], nt[10];
    char buf[2048], id[16], smp[128];
    for (int r = 0; r < 10; r++) {
        np[r] = 3 + (r * 7) % 25;
        nt[r] = 4 + (r * 5) % 20;
        for (int i = 0; i < np[r]; i++) pr[r][i] = i < 8 ? (i * 11) % 90 : (r * 31 + i * 17) % 90;   /* shared start */
        snprintf(id, sizeof id, "p%d", r);
        snprintf(smp, sizeof smp, "\"temperature\":0,\"max_tokens\":%d,\"ignore_eos\":true", nt[r]);
        gen_json(buf, sizeof buf, id, pr[r], np[r], smp);
        if (r == 4) buf[strlen(buf) - 1] = 0, strcat(buf, ",\"n\":2}");
        feed(&f, buf);
        if (r % 3 == 2) { eng_serve_step(f.e); eng_serve_step(f.e); }
        if (r == 7) feed(&f, "{\"type\":\"abort\",\"id\":\"p6\"}");
    }
    run_until_idle(&f, 2000);
    eng_serve_stats st;
    eng_serve_get_stats(f.e, &st);
    CHECK(st.preemptions > 0 && st.spec_accepted > 0);
    for (int r = 0; r < 10; r++) {
        if (r == 6) continue;
        snprintf(id, sizeof id, "p%d", r);
        int32_t ref[32], got[32];
        tlm_ref_greedy(TV, pr[r], np[r], nt[r], ref);
        for (int i = 0; i < (r == 4 ? 2 : 1); i++)
            CHECK(tokens_of(&f, id, i, got, 32, NULL) == nt[r] && !memcmp(got, ref, sizeof(int32_t) * (size_t)nt[r]));
        CHECK_EQ_INT(count_msgs(&f, "end", id), 1);
    }
    CHECK_EQ_INT(count_msgs(&f, "error", NULL), 0);
    fx_close_idle(&f, 16);
}

TEST(spec_config_checks)
{
    fx f;
    eng_serve_cfg c;
    fx_cfg(&c, 4, 64, 64, 32, 4);
    c.num_spec_tokens = ENG_SPEC_MAX + 1;
    CHECK(fx_open_cfg(&f, &c, TLM_MTP_ORACLE) != 0);       /* more drafts than a message carries */
    fx_close(&f);
    c.num_spec_tokens = 2;
    CHECK(fx_open_cfg(&f, &c, TLM_MTP_NONE) != 0);         /* no MTP layer */
    fx_close(&f);
    c.num_spec_tokens = 2;
    CHECK(fx_open_cfg(&f, &c, TLM_MTP_ORACLE) == 0);
    feed(&f, "{\"type\":\"stats\",\"id\":\"st\"}");
    const cJSON *s = first_msg(&f, "stats", "st");
    CHECK(s && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "spec_decode_num_accepted_tokens_per_pos")) == 2);
    CHECK(s && jint(s, "spec_decode_num_drafts", -1) == 0);
    fx_close(&f);
}

/* ===== the real tiny model (glm-mkmodel --preset tiny --seed 1) ===== */

#define GOLDENS "tests/reference/goldens/glm5_tiny.json"

static char g_dir[256];
static cJSON *g_gold;

static eng_model *tiny_open(void)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/glm-spec-test-XXXXXX");
        char err[256];
        eng_mk_opts o = { .preset = "tiny", .out_dir = g_dir, .seed = 1, .mtp = 1, .quiet = 1 };
        if (!mkdtemp(g_dir) || eng_mk_write(&o, err, sizeof err)) { fprintf(stderr, "  mkmodel: %s\n", err); return NULL; }
    }
    eng_model_opts mo = { .n_threads = 2, .max_batch_tokens = 256, .max_model_len = 256, .load = { .quiet = 1 } };
    eng_model *m = NULL;
    char err[256];
    if (eng_model_open(g_dir, &mo, &m, err, sizeof err)) fprintf(stderr, "  open: %s\n", err);
    return m;
}

static int json_ints(const cJSON *a, int32_t *out, int max)
{
    int n = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) if (n < max) out[n++] = (int32_t)v->valuedouble;
    return n;
}

static int open_lm(fx *f, const eng_lm *lm, int K)
{
    memset(f, 0, sizeof *f);
    f->out.list = cJSON_CreateArray();
    eng_serve_cfg c;
    fx_cfg(&c, 8, 256, 256, 64, 16);
    c.num_spec_tokens = K;
    char err[256];
    int rc = eng_serve_init(&f->e, lm, &c, (eng_serve_sink){ sink_collect, &f->out }, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    return rc;
}

static void close_lm(fx *f)
{
    eng_serve_free(f->e);
    cJSON_Delete(f->out.list);
}

/* Oracle drafts on the real model: the golden greedy continuation
 * (transformers) is produced with every draft accepted, K + 1 tokens a step. */
TEST(spec_real_oracle_accepts_all)
{
    eng_model *m = tiny_open();
    if (!m || !g_gold) { CHECK(0); return; }
    const cJSON *g = cJSON_GetObjectItem(g_gold, "greedy");
    int32_t ref[256], want[64];
    int np = json_ints(cJSON_GetObjectItem(g, "prompt"), ref, 256);
    int nt = json_ints(cJSON_GetObjectItem(g, "tokens"), want, 64);
    memcpy(ref + np, want, sizeof(int32_t) * (size_t)nt);
    eng_lm base, lm;
    eng_lm_from_model(&base, m);
    eng_oracle o;
    eng_oracle_lm(&o, &lm, &base, ref, np + nt, true);
    fx f;
    if (open_lm(&f, &lm, 3)) { CHECK(0); eng_model_close(m); return; }
    char buf[4096];
    char smp[96];
    snprintf(smp, sizeof smp, "\"temperature\":0,\"max_tokens\":%d,\"ignore_eos\":true", nt);
    gen_json(buf, sizeof buf, "o", ref, np, smp);
    feed(&f, buf);
    run_until_idle(&f, 100);
    int32_t got[64];
    CHECK(tokens_of(&f, "o", 0, got, 64, NULL) == nt && !memcmp(got, want, sizeof(int32_t) * (size_t)nt));
    eng_serve_stats st;
    eng_serve_get_stats(f.e, &st);
    CHECK(st.spec_draft_tokens > 0 && st.spec_accepted == st.spec_draft_tokens);
    CHECK_EQ_INT(st.spec_accepted_pos[0], st.spec_drafts);
    CHECK_EQ_INT(count_msgs(&f, "tokens", "o"), 1 + (nt - 1 + 3) / 4);
    close_lm(&f);
    eng_model_close(m);
}

/* The serving loop's draft chain on the real model against the torch
 * reference of doc §4.2 (tests/reference/glm5_reference.py): after the
 * prompt's prefill the first pass (shifted ids, the target's hidden states)
 * drafts the golden draft1 at the prompt's last position, and the second
 * step (draft1 at the next position, the MTP's recycled post-norm hidden)
 * gives the golden logits2. */
typedef struct rec_lm {
    eng_lm inner;
    int n;
    int pos[8];
    int32_t arg[8];
    float *row2;                /* logits of the second call's last row */
} rec_lm;

static int rec_mtp(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, const float *hidden_in,
                   float *logits, float *hidden_out, char *err, size_t errlen)
{
    rec_lm *r = impl;
    int rc = r->inner.mtp_forward(r->inner.impl, kv, seqs, n_seqs, hidden_in, logits, hidden_out, err, errlen);
    if (!rc && n_seqs == 1 && seqs[0].logits == ENG_LOGITS_LAST && r->n < 8) {
        if (r->n == 1) memcpy(r->row2, logits, sizeof *logits * (size_t)r->inner.vocab);
        r->pos[r->n] = seqs[0].pos0 + seqs[0].n_tokens - 1;
        r->arg[r->n++] = eng_sample_argmax(logits, r->inner.vocab);
    }
    return rc;
}

static int rec_forward(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, float *logits, float *hidden,
                       char *err, size_t errlen)
{
    rec_lm *r = impl;
    return r->inner.forward(r->inner.impl, kv, seqs, n_seqs, logits, hidden, err, errlen);
}

static size_t rec_kv_bytes(void *impl, enum eng_cache_dtype dt)
{
    rec_lm *r = impl;
    return r->inner.kv_bytes_per_token(r->inner.impl, dt);
}

static int rec_kv_create(void *impl, int nb, int bs, enum eng_cache_dtype dt, eng_kv_pool **out, char *err, size_t errlen)
{
    rec_lm *r = impl;
    return r->inner.kv_create(r->inner.impl, nb, bs, dt, out, err, errlen);
}

TEST(spec_real_chain_matches_reference)
{
    eng_model *m = tiny_open();
    if (!m || !g_gold) { CHECK(0); return; }
    const cJSON *mt = cJSON_GetObjectItem(g_gold, "mtp");
    int32_t pr[256];
    int np = json_ints(cJSON_GetObjectItem(mt, "prompt"), pr, 256);
    rec_lm r = { 0 };
    eng_lm_from_model(&r.inner, m);
    r.row2 = malloc(sizeof *r.row2 * (size_t)r.inner.vocab);
    eng_lm lm = r.inner;
    lm.impl = &r;
    lm.forward = rec_forward;
    lm.mtp_forward = rec_mtp;
    lm.kv_bytes_per_token = rec_kv_bytes;
    lm.kv_create = rec_kv_create;
    fx f;
    if (open_lm(&f, &lm, 2)) { CHECK(0); eng_model_close(m); free(r.row2); return; }
    char buf[4096];
    gen_json(buf, sizeof buf, "c", pr, np, "\"temperature\":0,\"max_tokens\":4,\"ignore_eos\":true");
    feed(&f, buf);
    eng_serve_step(f.e);                                  /* prefill, first pass, chain step 2 */
    CHECK(r.n >= 2);
    CHECK_EQ_INT(r.pos[0], np - 1);
    CHECK_EQ_INT(r.arg[0], cJSON_GetObjectItem(mt, "draft1")->valueint);
    CHECK_EQ_INT(r.pos[1], np);
    const cJSON *l2 = cJSON_GetObjectItem(mt, "logits2");
    double md = 0, mr = 0;
    int k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, l2) {
        md = fmax(md, fabs(r.row2[k] - v->valuedouble));
        mr = fmax(mr, fabs(v->valuedouble));
        k++;
    }
    CHECK(k == r.inner.vocab && md / mr < 1e-4);
    run_until_idle(&f, 20);
    close_lm(&f);
    eng_model_close(m);
    free(r.row2);
}


int main(void)
{
    pl_log_init("test_engine_spec");
    pl_log_set_level(PL_LOG_ERROR);
    RUN(spec_greedy_equals_plain_and_counters_match);
    RUN(spec_oracle_all_accepted);
    RUN(spec_stop_and_limits_inside_runs);
    RUN(spec_seeded_identical_to_plain);
    RUN(spec_under_pressure);
    RUN(spec_config_checks);
    g_gold = test_json_file(GOLDENS);
    RUN(spec_real_oracle_accepts_all);
    RUN(spec_real_chain_matches_reference);
    test_rmtree(g_dir);
    cJSON_Delete(g_gold);
    return test_report();
}
