/* The serving loop (engine/serve.h) on the test model of engine_testlm.h:
 * protocol messages in and out, continuous batching against a direct
 * reference, seeded batch invariance, n > 1, abort, bad input. */
#include "engine_fx.h"

#include <math.h>
#include <time.h>

#include "../../engine/sample.h"

/* ===== tests ===== */

/* Many greedy requests at once under tight budgets and a small cache (chunked
 * prefill, waiting, preemption): each equals the direct reference. */
TEST(serve_greedy_matches_reference_under_pressure)
{
    fx f;
    /* 40 blocks of 4 = 160 tokens for 12 requests of up to 60: forces waits and preemption */
    if (fx_open(&f, 6, 24, 64, 40, 4)) { CHECK(0); return; }
    enum { NR = 12 };
    int32_t prompts[NR][40], np[NR], want[NR][24];
    int nt[NR];
    char buf[2048], p[1024];
    for (int r = 0; r < NR; r++) {
        np[r] = 3 + (r * 7) % 37;
        nt[r] = 4 + (r * 5) % 20;
        for (int i = 0; i < np[r]; i++) prompts[r][i] = (r * 31 + i * 17) % 90;
        tlm_ref_greedy(TV, prompts[r], np[r], nt[r], want[r]);
        prompt_json(p, sizeof p, prompts[r], np[r]);
        snprintf(buf, sizeof buf,
                 "{\"type\":\"generate\",\"id\":\"g%d\",\"prompt_ids\":%s,\"sampling\":{\"temperature\":0,\"max_tokens\":%d,\"ignore_eos\":true}}",
                 r, p, nt[r]);
        feed(&f, buf);
        if (r % 3 == 2) { eng_serve_step(f.e); eng_serve_step(f.e); }   /* requests arrive while others run */
    }
    run_until_idle(&f, 1000);
    eng_serve_stats st;
    eng_serve_get_stats(f.e, &st);
    CHECK(st.preemptions > 0);
    CHECK_EQ_INT(st.free_blocks, 40);
    CHECK_EQ_INT(st.live_requests, 0);
    for (int r = 0; r < NR; r++) {
        char id[16];
        snprintf(id, sizeof id, "g%d", r);
        int32_t got[64];
        const char *fin;
        int n = tokens_of(&f, id, 0, got, 64, &fin);
        CHECK_EQ_INT(n, nt[r]);
        CHECK(n == nt[r] && !memcmp(got, want[r], sizeof(int32_t) * (size_t)n));
        CHECK(fin && !strcmp(fin, "length"));
        const cJSON *end = first_msg(&f, "end", id);
        CHECK(end != NULL);
        if (end) {
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(end, "usage");
            CHECK_EQ_INT(jint(u, "prompt_tokens", -1), np[r]);
            CHECK_EQ_INT(jint(u, "completion_tokens", -1), nt[r]);
        }
        CHECK(msg_pos(&f, first_msg(&f, "start", id)) < msg_pos(&f, first_msg(&f, "tokens", id)));
    }
    fx_close(&f);
}

/* A seeded request gives the same tokens alone and among 15 others. */
TEST(serve_seeded_batch_invariance)
{
    const char *req = "{\"type\":\"generate\",\"id\":\"s\",\"prompt_ids\":[5,6,7,8,9],"
                      "\"sampling\":{\"temperature\":0.8,\"top_p\":0.9,\"top_k\":30,\"seed\":4242,\"max_tokens\":20,"
                      "\"presence_penalty\":0.3,\"repetition_penalty\":1.1,\"ignore_eos\":true,\"logprobs\":2}}";
    int32_t alone[32], batched[32];
    int na, nb;
    fx f;
    if (fx_open(&f, 16, 64, 128, 256, 8)) { CHECK(0); return; }
    feed(&f, req);
    run_until_idle(&f, 100);
    na = tokens_of(&f, "s", 0, alone, 32, NULL);
    fx_close(&f);

    if (fx_open(&f, 16, 64, 128, 256, 8)) { CHECK(0); return; }
    char buf[512];
    for (int k = 0; k < 15; k++) {
        snprintf(buf, sizeof buf,
                 "{\"type\":\"generate\",\"id\":\"o%d\",\"prompt_ids\":[%d,%d,%d,%d,%d,%d,%d],\"sampling\":{\"temperature\":%g,"
                 "\"max_tokens\":%d,\"min_p\":0.05,\"frequency_penalty\":0.5%s}}",
                 k, k, k + 1, 3, 4, k * 2, 9, 11, 0.5 + 0.1 * k, 5 + k, k % 2 ? ",\"seed\":1" : "");
        feed(&f, buf);
        if (k == 7) { feed(&f, req); eng_serve_step(f.e); }   /* s joins mid-flight */
    }
    run_until_idle(&f, 200);
    nb = tokens_of(&f, "s", 0, batched, 32, NULL);
    CHECK_EQ_INT(na, 20);
    CHECK(na == nb && !memcmp(alone, batched, sizeof(int32_t) * (size_t)na));
    /* and the tokens are the sampler's own choice on the reference logits */
    eng_sampler *smp;
    char err[128];
    CHECK(eng_sampler_init(&smp, TV, err, sizeof err) == 0);
    eng_sampling sp;
    eng_sampling_defaults(&sp);
    sp.temperature = 0.8; sp.top_p = 0.9; sp.top_k = 30; sp.presence_penalty = 0.3; sp.repetition_penalty = 1.1;
    sp.has_seed = true; sp.seed = 4242; sp.logprobs = 2;
    int32_t seq[64] = {5, 6, 7, 8, 9};
    float l[TV];
    for (int t = 0; t < na; t++) {
        tlm_ref_logits(TV, seq, 5 + t, l);
        eng_sample_seq q = { .p = &sp, .prompt = seq, .n_prompt = 5, .output = seq + 5, .n_output = t,
                             .rng_key = eng_rng_key(4242, 0) };
        eng_sample_out o;
        CHECK(eng_sample(smp, &q, l, &o) == 0);
        CHECK_EQ_INT(alone[t], o.token);
        seq[5 + t] = o.token;
    }
    eng_sampler_free(smp);
    /* logprobs travel with each token */
    const cJSON *m = first_msg(&f, "tokens", "s");
    const cJSON *lp = m ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(m, "logprobs"), 0) : NULL;
    CHECK(lp && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(lp, "logprob")));
    CHECK(lp && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(lp, "top")) == 2);
    fx_close(&f);
}

/* Sampling runs on the model's threads (eng_lm.parallel), one sequence per
 * task with a sampler per thread: tasks run in reverse order on 3 "threads"
 * must give every request the tokens and logprobs of the serial loop. */
static void rev_parallel(void *par, void (*fn)(void *ctx, int task, int thread), void *ctx, int n)
{
    for (int i = n - 1; i >= 0; i--) fn(ctx, i, i % 3);
}

static int run_mixed_batch(int parallel, char out[16][2048])
{
    fx f;
    memset(&f, 0, sizeof f);
    tlm_init(&f.m, &f.lm, TV, 512, 96);
    f.lm.mtp_forward = NULL;
    if (parallel) { f.lm.parallel = rev_parallel; f.lm.n_threads = 3; }
    f.out.list = cJSON_CreateArray();
    eng_serve_cfg c;
    fx_cfg(&c, 16, 64, 128, 256, 8);
    char err[256], buf[512];
    if (eng_serve_init(&f.e, &f.lm, &c, (eng_serve_sink){ sink_collect, &f.out }, err, sizeof err)) return -1;
    for (int k = 0; k < 16; k++) {
        snprintf(buf, sizeof buf,
                 "{\"type\":\"generate\",\"id\":\"p%d\",\"prompt_ids\":[%d,%d,3,4,%d,9],\"sampling\":{\"temperature\":%g,"
                 "\"max_tokens\":12,\"top_p\":0.9,\"frequency_penalty\":0.5,\"logprobs\":3,\"ignore_eos\":true%s}}",
                 k, k, k + 1, k * 2, 0.5 + 0.1 * k, k % 2 ? ",\"seed\":7" : "");
        feed(&f, buf);
    }
    run_until_idle(&f, 200);
    for (int k = 0; k < 16; k++) {
        char id[16];
        snprintf(id, sizeof id, "p%d", k);
        out[k][0] = 0;
        size_t used = 0;
        for (int i = 0; i < cJSON_GetArraySize(f.out.list); i++) {
            const cJSON *m = cJSON_GetArrayItem(f.out.list, i);
            const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(m, "type");
            if (!cJSON_IsString(mid) || strcmp(mid->valuestring, id) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "tokens"))
                continue;
            char *txt = cJSON_PrintUnformatted(m);
            used += (size_t)snprintf(out[k] + used, used < 2048 ? 2048 - used : 0, "%s", txt);
            free(txt);
            if (used >= 2048) break;
        }
    }
    fx_close(&f);
    return 0;
}

TEST(serve_parallel_sampling_identical)
{
    static char serial[16][2048], par[16][2048];
    CHECK(run_mixed_batch(0, serial) == 0);
    CHECK(run_mixed_batch(1, par) == 0);
    int same = 0;
    for (int k = 0; k < 16; k++) same += serial[k][0] && !strcmp(serial[k], par[k]);
    CHECK_EQ_INT(same, 16);
}

/* n = 3: choices share the prompt's blocks, run side by side, and each is
 * its own seeded stream; one `end` with every choice's tokens counted. */
TEST(serve_n_choices)
{
    fx f;
    if (fx_open(&f, 8, 64, 128, 64, 4)) { CHECK(0); return; }
    feed(&f, "{\"type\":\"generate\",\"id\":\"n\",\"n\":3,\"prompt_ids\":[1,2,3,4,5,6,7,8,9,10,11],"
             "\"sampling\":{\"temperature\":1.0,\"seed\":9,\"max_tokens\":6,\"ignore_eos\":true},\"context\":{\"k\":\"v\"}}");
    run_until_idle(&f, 100);
    const cJSON *st = first_msg(&f, "start", "n");
    CHECK(st && jint(st, "n", 0) == 3 && jint(st, "prompt_tokens", 0) == 11);
    CHECK(st && !strcmp(jstr(cJSON_GetObjectItemCaseSensitive(st, "context"), "k"), "v"));
    int32_t t[3][8];
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(tokens_of(&f, "n", i, t[i], 8, NULL), 6);
    CHECK(memcmp(t[0], t[1], sizeof t[0]) || memcmp(t[1], t[2], sizeof t[0]));
    const cJSON *end = first_msg(&f, "end", "n");
    CHECK(end && jint(cJSON_GetObjectItemCaseSensitive(end, "usage"), "completion_tokens", 0) == 18);
    CHECK_EQ_INT(count_msgs(&f, "end", "n"), 1);
    /* greedy choices are identical, and equal the reference */
    feed(&f, "{\"type\":\"generate\",\"id\":\"g\",\"n\":2,\"prompt_ids\":[3,1,4,1,5,9,2,6],"
             "\"sampling\":{\"temperature\":0,\"max_tokens\":5,\"ignore_eos\":true}}");
    run_until_idle(&f, 100);
    int32_t want[5], g0[8], g1[8], pr[8] = {3, 1, 4, 1, 5, 9, 2, 6};
    tlm_ref_greedy(TV, pr, 8, 5, want);
    CHECK(tokens_of(&f, "g", 0, g0, 8, NULL) == 5 && !memcmp(g0, want, sizeof want));
    CHECK(tokens_of(&f, "g", 1, g1, 8, NULL) == 5 && !memcmp(g1, want, sizeof want));
    fx_close_idle(&f, 64);
}

TEST(serve_stop_ids_and_reasons)
{
    fx f;
    if (fx_open(&f, 8, 64, 128, 64, 4)) { CHECK(0); return; }
    int32_t pr[4] = {10, 20, 30, 40}, want[8];
    tlm_ref_greedy(TV, pr, 4, 8, want);
    char buf[512];
    /* the 3rd greedy token as a stop id: finish "stop" with stop_reason */
    snprintf(buf, sizeof buf, "{\"type\":\"generate\",\"id\":\"a\",\"prompt_ids\":[10,20,30,40],"
             "\"sampling\":{\"temperature\":0,\"max_tokens\":8,\"stop_token_ids\":[%d],\"eos_token_ids\":[96]}}", want[2]);
    feed(&f, buf);
    /* the same id as the eos: stop_reason stays null */
    snprintf(buf, sizeof buf, "{\"type\":\"generate\",\"id\":\"b\",\"prompt_ids\":[10,20,30,40],"
             "\"sampling\":{\"temperature\":0,\"max_tokens\":8,\"stop_token_ids\":[%d],\"eos_token_ids\":[%d]}}", want[2], want[2]);
    feed(&f, buf);
    /* min_tokens past it: the stop id cannot come before 4 tokens */
    snprintf(buf, sizeof buf, "{\"type\":\"generate\",\"id\":\"c\",\"prompt_ids\":[10,20,30,40],"
             "\"sampling\":{\"temperature\":0,\"max_tokens\":6,\"min_tokens\":4,\"stop_token_ids\":[%d]}}", want[2]);
    feed(&f, buf);
    run_until_idle(&f, 100);
    int32_t got[8];
    const char *fin;
    CHECK_EQ_INT(tokens_of(&f, "a", 0, got, 8, &fin), 3);
    CHECK(fin && !strcmp(fin, "stop"));
    const cJSON *m;
    int reason_a = -2, reason_b = -2;
    cJSON_ArrayForEach(m, f.out.list) {
        if (strcmp(jstr(m, "type"), "tokens") || !cJSON_GetObjectItemCaseSensitive(m, "finish_reason")) continue;
        if (!strcmp(jstr(m, "id"), "a")) reason_a = jint(m, "stop_reason", -1);
        if (!strcmp(jstr(m, "id"), "b")) reason_b = jint(m, "stop_reason", -1);
    }
    CHECK_EQ_INT(reason_a, want[2]);
    CHECK_EQ_INT(reason_b, -1);
    int nc = tokens_of(&f, "c", 0, got, 8, &fin);
    CHECK(nc >= 4);
    for (int i = 0; i < 3 && i < nc; i++) CHECK(got[i] != want[2]);
    /* no stop_token_ids: the model's eos (96) stops unless ignore_eos */
    feed(&f, "{\"type\":\"generate\",\"id\":\"d\",\"prompt_ids\":[1],\"sampling\":{\"temperature\":0,\"max_tokens\":2,\"min_tokens\":1}}");
    run_until_idle(&f, 100);
    CHECK(tokens_of(&f, "d", 0, got, 8, &fin) >= 1);
    fx_close(&f);
}

TEST(serve_prompt_logprobs_in_start)
{
    fx f;
    if (fx_open(&f, 8, 16, 128, 64, 4)) { CHECK(0); return; }
    /* 30 prompt tokens with a 16-token budget: prompt rows come over several steps */
    char buf[1024], p[512];
    int32_t pr[30];
    for (int i = 0; i < 30; i++) pr[i] = (i * 13) % 90;
    prompt_json(p, sizeof p, pr, 30);
    snprintf(buf, sizeof buf, "{\"type\":\"generate\",\"id\":\"p\",\"n\":2,\"prompt_ids\":%s,"
             "\"sampling\":{\"temperature\":0,\"max_tokens\":3,\"prompt_logprobs\":3}}", p);
    feed(&f, buf);
    run_until_idle(&f, 100);
    const cJSON *st = first_msg(&f, "start", "p");
    CHECK(st != NULL);
    if (!st) { fx_close(&f); return; }
    const cJSON *plp = cJSON_GetObjectItemCaseSensitive(st, "prompt_logprobs");
    CHECK_EQ_INT(cJSON_GetArraySize(plp), 30);
    CHECK(cJSON_IsNull(cJSON_GetArrayItem(plp, 0)));
    float l[TV];
    for (int i = 1; i < 30; i++) {
        const cJSON *e = cJSON_GetArrayItem(plp, i);
        tlm_ref_logits(TV, pr, i, l);
        double mx = -INFINITY, z = 0;
        for (int v = 0; v < TV; v++) if (l[v] > mx) mx = l[v];
        for (int v = 0; v < TV; v++) z += exp(l[v] - mx);
        double want = l[pr[i]] - mx - log(z);
        CHECK(fabs(cJSON_GetObjectItemCaseSensitive(e, "logprob")->valuedouble - want) < 1e-4);
        CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "top")), 3);
    }
    /* start precedes every tokens message of both choices */
    CHECK(msg_pos(&f, st) < msg_pos(&f, first_msg(&f, "tokens", "p")));
    int32_t t[4];
    CHECK_EQ_INT(tokens_of(&f, "p", 1, t, 4, NULL), 3);
    fx_close(&f);
}

TEST(serve_abort)
{
    fx f;
    if (fx_open(&f, 8, 64, 256, 64, 4)) { CHECK(0); return; }
    feed(&f, "{\"type\":\"generate\",\"id\":\"x\",\"prompt_ids\":[1,2,3,4,5,6,7,8,9],\"sampling\":{\"max_tokens\":100,\"ignore_eos\":true}}");
    feed(&f, "{\"type\":\"generate\",\"id\":\"y\",\"n\":2,\"prompt_ids\":[4,5,6],\"sampling\":{\"max_tokens\":100,\"ignore_eos\":true}}");
    for (int i = 0; i < 3; i++) eng_serve_step(f.e);
    eng_serve_stats s;
    eng_serve_get_stats(f.e, &s);
    CHECK(s.free_blocks < 64);
    feed(&f, "{\"type\":\"abort\",\"id\":\"x\"}");
    feed(&f, "{\"type\":\"abort\",\"id\":\"y\",\"index\":1}");
    eng_serve_get_stats(f.e, &s);
    CHECK_EQ_INT(s.running, 1);                           /* y#0 only */
    CHECK_EQ_INT(s.free_blocks, 64 - 2);                  /* y#0: 3 + 3 tokens in 2 blocks */
    int before = count_msgs(&f, "tokens", "x");
    feed(&f, "{\"type\":\"abort\",\"id\":\"nobody\"}");   /* forwarded, no error */
    feed(&f, "{\"type\":\"abort\",\"id\":\"y\",\"index\":0}");
    run_until_idle(&f, 50);
    CHECK_EQ_INT(count_msgs(&f, "tokens", "x"), before);  /* nothing more for x */
    CHECK_EQ_INT(count_msgs(&f, "abort", NULL), 4);       /* every abort forwarded */
    CHECK_EQ_INT(count_msgs(&f, "error", NULL), 0);
    CHECK(first_msg(&f, "end", "x") == NULL);             /* a whole-request abort has no end */
    CHECK(first_msg(&f, "end", "y") != NULL);             /* all choices aborted one by one: end (usage) */
    fx_close_idle(&f, 64);
}

static const char *error_text(const fx *f, const char *id)
{
    const cJSON *m = first_msg(f, "error", id);
    return m && jint(m, "code", 0) == 400 ? jstr(m, "message") : NULL;
}

TEST(serve_bad_input)
{
    fx f;
    if (fx_open(&f, 8, 64, 32, 64, 4)) { CHECK(0); return; }
    struct { const char *id, *body, *needle; } bad[] = {
        { "b1", "\"prompt_ids\":[1,2,97]", "vocabulary" },
        { "b2", "\"prompt_ids\":[1,-1]", "vocabulary" },
        { "b3", "\"prompt_ids\":\"hello\"", "prompt_ids" },
        { "b4", "\"prompt_ids\":[]", "empty" },
        { "b5", "\"prompt_ids\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32]", "context length" },
        { "b6", "\"prompt_ids\":[1],\"sampling\":{\"temperature\":-1}", "temperature" },
        { "b7", "\"prompt_ids\":[1],\"sampling\":{\"top_k\":98}", "top_k" },
        { "b8", "\"prompt_ids\":[1],\"sampling\":{\"top_p\":0}", "top_p" },
        { "b9", "\"prompt_ids\":[1],\"sampling\":{\"temperature\":\"hot\"}", "temperature" },
        { "b10", "\"prompt_ids\":[1],\"sampling\":{\"repetition_penalty\":0}", "repetition_penalty" },
        { "b11", "\"prompt_ids\":[1],\"sampling\":{\"logprobs\":21}", "logprobs" },
        { "b12", "\"prompt_ids\":[1],\"sampling\":{\"stop_token_ids\":[500]}", "stop_token_ids" },
        { "b13", "\"prompt_ids\":[1],\"n\":0", "n must" },
        { "b14", "\"prompt_ids\":[1],\"sampling\":{\"max_tokens\":0}", "max_tokens" },
        { "b15", "\"prompt_ids\":[1],\"sampling\":{\"min_tokens\":5,\"max_tokens\":2}", "min_tokens" },
        { "b16", "\"prompt_ids\":[1],\"sampling\":[1]", "sampling" },
        { "b17", "\"prompt_ids\":[1.5]", "integers" },
    };
    char buf[512];
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        snprintf(buf, sizeof buf, "{\"type\":\"generate\",\"id\":\"%s\",%s}", bad[i].id, bad[i].body);
        feed(&f, buf);
        const char *t = error_text(&f, bad[i].id);
        if (!t || !strstr(t, bad[i].needle)) fprintf(stderr, "  %s: %s\n", bad[i].id, t ? t : "(no error)");
        CHECK(t && strstr(t, bad[i].needle));
        CHECK(first_msg(&f, "start", bad[i].id) == NULL);
    }
    /* NaN from msgpack (JSON cannot say it): build it by hand */
    {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        pl_msg_pack_kv_cstr(&pk, "type", "generate");
        pl_msg_pack_kv_cstr(&pk, "id", "nan");
        pl_msg_pack_cstr(&pk, "prompt_ids");
        msgpack_pack_array(&pk, 1);
        msgpack_pack_int(&pk, 3);
        pl_msg_pack_cstr(&pk, "sampling");
        msgpack_pack_map(&pk, 1);
        pl_msg_pack_kv_double(&pk, "top_p", NAN);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        msgpack_unpack_next(&u, sb.data, sb.size, &off);
        eng_serve_on_msg(f.e, &u.data, "nan", 3);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
        CHECK(error_text(&f, "nan") != NULL);
    }
    /* the engine keeps serving: a good request still runs, max_tokens above
     * the room left is cut to max_model_len */
    feed(&f, "{\"type\":\"generate\",\"id\":\"ok\",\"prompt_ids\":[1,2,3],\"sampling\":{\"temperature\":0,\"max_tokens\":1000,\"ignore_eos\":true}}");
    /* a duplicate id while running: error, and both are dropped */
    feed(&f, "{\"type\":\"generate\",\"id\":\"dup\",\"prompt_ids\":[1,2,3]}");
    feed(&f, "{\"type\":\"generate\",\"id\":\"dup\",\"prompt_ids\":[1,2,3]}");
    CHECK(error_text(&f, "dup") != NULL);
    /* other message types pass through unchanged */
    feed(&f, "{\"type\":\"ping\",\"id\":\"p1\"}");
    feed(&f, "{\"type\":\"delta\",\"id\":\"zz\",\"text\":\"hi\"}");
    run_until_idle(&f, 100);
    int32_t t[64];
    const char *fin;
    CHECK_EQ_INT(tokens_of(&f, "ok", 0, t, 64, &fin), 29);
    CHECK(fin && !strcmp(fin, "length"));
    CHECK(first_msg(&f, "ping", "p1") && first_msg(&f, "delta", "zz"));
    CHECK_EQ_INT(count_msgs(&f, "tokens", "dup"), 0);
    fx_close_idle(&f, 64);
}

TEST(serve_model_failure)
{
    fx f;
    if (fx_open(&f, 8, 64, 64, 64, 4)) { CHECK(0); return; }
    feed(&f, "{\"type\":\"generate\",\"id\":\"f1\",\"prompt_ids\":[1,2],\"sampling\":{\"max_tokens\":4}}");
    feed(&f, "{\"type\":\"generate\",\"id\":\"f2\",\"prompt_ids\":[3,4],\"sampling\":{\"max_tokens\":4}}");
    f.m.fail_calls = 1;
    run_until_idle(&f, 20);
    const cJSON *e1 = first_msg(&f, "error", "f1"), *e2 = first_msg(&f, "error", "f2");
    CHECK(e1 && e2 && jint(e1, "code", 0) == 500 && strstr(jstr(e1, "message"), "test model told to fail"));
    /* and it keeps serving afterwards */
    feed(&f, "{\"type\":\"generate\",\"id\":\"f3\",\"prompt_ids\":[3,4],\"sampling\":{\"max_tokens\":4,\"ignore_eos\":true}}");
    run_until_idle(&f, 20);
    int32_t t[8];
    CHECK_EQ_INT(tokens_of(&f, "f3", 0, t, 8, NULL), 4);
    fx_close_idle(&f, 64);
}

TEST(serve_init_checks)
{
    tlm m;
    eng_lm lm;
    tlm_init(&m, &lm, TV, 100, 1);
    eng_serve_cfg c;
    eng_serve_cfg_defaults(&c);
    eng_serve *e = NULL;
    char err[256];
    out_msgs o = { cJSON_CreateArray() };
    eng_serve_sink sk = { sink_collect, &o };
    c.max_model_len = 101;                                /* beyond the model */
    CHECK(eng_serve_init(&e, &lm, &c, sk, err, sizeof err) != 0 && !e);
    c.max_model_len = 100;
    c.num_blocks = 6;
    c.block_size = 16;                                    /* 96 tokens < 100 */
    CHECK(eng_serve_init(&e, &lm, &c, sk, err, sizeof err) != 0 && strstr(err, "cannot hold"));
    c.num_blocks = 0;
    c.kv_cache_bytes = 4 * 16 * 10;                       /* budget: 10 blocks of 16 tokens x 4 bytes */
    CHECK(eng_serve_init(&e, &lm, &c, sk, err, sizeof err) == 0);
    CHECK_EQ_INT(eng_serve_num_blocks(e), 10);
    CHECK_EQ_INT(eng_serve_max_model_len(e), 100);
    eng_serve_free(e);
    /* max_position_embeddings 2^31-1: the blocks a sequence needs are
     * counted in 64 bits (this overflowed int), and the refusal says so
     * with a positive block count */
    e = NULL;
    lm.max_positions = INT32_MAX;
    c.max_model_len = 0;
    CHECK(eng_serve_init(&e, &lm, &c, sk, err, sizeof err) != 0 && !e);
    CHECK(strstr(err, "(10 blocks of 16 tokens) cannot hold one sequence of --max-model-len 2147483647") != NULL);
    lm.max_positions = 100;
    tlm_free(&m);
    cJSON_Delete(o.list);
}

/* `start` goes out when choice 0 is first scheduled (not at accept) with
 * arrival_time <= scheduled_time; `end` carries first_token_time and
 * finish_time; a stats answer counts what ran. */
TEST(serve_stats_and_times)
{
    fx f;
    if (fx_open(&f, 8, 64, 128, 64, 4)) { CHECK(0); return; }
    feed(&f, "{\"type\":\"generate\",\"id\":\"a\",\"prompt_ids\":[1,2,3,4,5],\"sampling\":{\"temperature\":0,\"max_tokens\":3,\"ignore_eos\":true}}");
    feed(&f, "{\"type\":\"generate\",\"id\":\"b\",\"n\":2,\"prompt_ids\":[7,8],\"sampling\":{\"max_tokens\":4,\"ignore_eos\":true}}");
    CHECK(first_msg(&f, "start", "a") == NULL);          /* not scheduled yet */
    feed(&f, "{\"type\":\"stats\",\"id\":\"s0\"}");
    const cJSON *s0 = first_msg(&f, "stats", "s0");
    CHECK(s0 && jint(s0, "num_requests_waiting", -1) == 2 && jint(s0, "num_requests_running", -1) == 0);
    CHECK(s0 && jint(s0, "kv_blocks_total", -1) == 64 && jint(s0, "kv_blocks_used", -1) == 0);
    eng_serve_step(f.e);
    const cJSON *st = first_msg(&f, "start", "a");
    CHECK(st != NULL);
    if (st) {
        CHECK(jnum(st, "arrival_time") > 1.7e9 && jnum(st, "arrival_time") <= jnum(st, "scheduled_time"));
        CHECK_EQ_INT(jint(st, "cached_tokens", -1), 0);
    }
    run_until_idle(&f, 100);
    const cJSON *end = first_msg(&f, "end", "a");
    CHECK(end && st && jnum(st, "scheduled_time") <= jnum(end, "first_token_time") &&
          jnum(end, "first_token_time") <= jnum(end, "finish_time"));
    feed(&f, "{\"type\":\"stats\",\"id\":\"s1\"}");
    const cJSON *s1 = first_msg(&f, "stats", "s1");
    CHECK(s1 != NULL);
    if (s1) {
        CHECK_EQ_INT(jint(s1, "prompt_tokens", -1), 5 + 2);             /* per request, not per choice */
        CHECK_EQ_INT(jint(s1, "generation_tokens", -1), 3 + 2 * 4);
        CHECK_EQ_INT(jint(s1, "kv_blocks_used", -1), 0);
        CHECK_EQ_INT(jint(s1, "num_requests_running", -1), 0);
        int steps = jint(s1, "steps", -1), hist = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(s1, "step_time_counts")) hist += (int)c->valuedouble;
        CHECK(steps > 0 && hist == steps);
    }
    /* periodic: answered now, again once the interval passed, stopped by 0 */
    CHECK_EQ_INT(eng_serve_wait_ms(f.e), -1);                           /* no timer: block on input */
    feed(&f, "{\"type\":\"stats\",\"id\":\"p\",\"interval\":0.05}");
    CHECK_EQ_INT(count_msgs(&f, "stats", "p"), 1);
    int w = eng_serve_wait_ms(f.e);
    CHECK(w >= 0 && w <= 60);
    eng_serve_tick(f.e);
    CHECK_EQ_INT(count_msgs(&f, "stats", "p"), 1);                      /* not due yet */
    struct timespec ts = { 0, 60 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    eng_serve_tick(f.e);
    CHECK_EQ_INT(count_msgs(&f, "stats", "p"), 2);
    feed(&f, "{\"type\":\"stats\",\"id\":\"p\",\"interval\":0}");
    CHECK_EQ_INT(count_msgs(&f, "stats", "p"), 3);
    nanosleep(&ts, NULL);
    eng_serve_tick(f.e);
    CHECK_EQ_INT(count_msgs(&f, "stats", "p"), 3);
    feed(&f, "{\"type\":\"stats\",\"id\":\"q\",\"interval\":\"often\"}");
    CHECK(first_msg(&f, "error", "q") != NULL && first_msg(&f, "stats", "q") == NULL);
    CHECK(last_msg(&f, "stats", "p") != NULL);
    fx_close_idle(&f, 64);
}

/* Prefix caching: requests sharing a 20-token prefix (greedy, seeded with
 * logprobs, n = 2, one aborted while running) give the same messages with
 * the cache on and off; later ones report cached_tokens; fewer positions are
 * computed; the pool ends all free or cached (16 blocks of 4 for requests of
 * up to 39 tokens: eviction and preemption happen). */
static int open_prefix_fx(fx *f, bool caching)
{
    eng_serve_cfg c;
    fx_cfg(&c, 6, 32, 64, 16, 4);
    c.prefix_caching = caching;
    return fx_open_cfg(f, &c, TLM_MTP_NONE);
}

static void feed_prefix_mix(fx *f)
{
    char buf[1024], p[512];
    int32_t pr[32];
    for (int r = 0; r < 8; r++) {
        int n = 20 + 3 + r % 4;
        for (int i = 0; i < n; i++) pr[i] = i < 20 ? (i * 7 + 3) % 90 : (r * 13 + i) % 90;
        prompt_json(p, sizeof p, pr, n);
        snprintf(buf, sizeof buf, "{\"type\":\"generate\",\"id\":\"c%d\",\"n\":%d,\"prompt_ids\":%s,"
                 "\"sampling\":{\"temperature\":%s,\"max_tokens\":%d,\"ignore_eos\":true%s}}",
                 r, r == 3 ? 2 : 1, p, r % 2 ? "0.9" : "0", 6 + r, r % 2 ? ",\"seed\":77,\"logprobs\":2" : "");
        feed(f, buf);
        if (r == 0) { eng_serve_step(f->e); eng_serve_step(f->e); }
        if (r == 5) { eng_serve_step(f->e); feed(f, "{\"type\":\"abort\",\"id\":\"c4\"}"); }
    }
    run_until_idle(f, 500);
}

TEST(serve_prefix_cache_on_off_identical)
{
    fx on, off;
    if (open_prefix_fx(&on, true) || open_prefix_fx(&off, false)) { CHECK(0); return; }
    feed_prefix_mix(&on);
    feed_prefix_mix(&off);
    for (int r = 0; r < 8; r++) {
        if (r == 4) continue;   /* aborted: how far it got depends on the step count */
        char id[16];
        snprintf(id, sizeof id, "c%d", r);
        for (int i = 0; i < (r == 3 ? 2 : 1); i++) {
            int32_t t[32];
            CHECK_EQ_INT(tokens_of(&on, id, i, t, 32, NULL), 6 + r);
            for (int k = 0;; k++) {          /* every message equal, logprobs bit for bit */
                char *a = nth_tokens(&on, id, i, k), *b = nth_tokens(&off, id, i, k);
                CHECK((a == NULL) == (b == NULL));
                int same = a && b && !strcmp(a, b);
                if (a && b && !same) fprintf(stderr, "  %s\n  %s\n", a, b);
                CHECK(!a || same);
                free(a);
                free(b);
                if (!a) break;
            }
        }
        const cJSON *st = first_msg(&on, "start", id), *st_off = first_msg(&off, "start", id);
        if (r >= 1) CHECK(st && jint(st, "cached_tokens", -1) >= 16);
        CHECK(st_off && jint(st_off, "cached_tokens", -1) == 0);
    }
    eng_serve_stats a, b;
    eng_serve_get_stats(on.e, &a);
    eng_serve_get_stats(off.e, &b);
    CHECK(a.tokens_computed < b.tokens_computed);
    CHECK(a.prefix_caching && a.prefix_hits > 0 && a.prefix_queries > a.prefix_hits);
    CHECK(!b.prefix_caching && b.cached_blocks == 0);
    CHECK(a.cached_blocks > 0);
    CHECK(a.preemptions > 0 && b.preemptions > 0);
    fx_close_idle(&on, 16);
    fx_close_idle(&off, 16);
}

int main(void)
{
    pl_log_init("test_engine_serve");
    pl_log_set_level(PL_LOG_ERROR);
    RUN(serve_greedy_matches_reference_under_pressure);
    RUN(serve_seeded_batch_invariance);
    RUN(serve_parallel_sampling_identical);
    RUN(serve_n_choices);
    RUN(serve_stop_ids_and_reasons);
    RUN(serve_prompt_logprobs_in_start);
    RUN(serve_abort);
    RUN(serve_bad_input);
    RUN(serve_model_failure);
    RUN(serve_init_checks);
    RUN(serve_stats_and_times);
    RUN(serve_prefix_cache_on_off_identical);
    return test_report();
}
