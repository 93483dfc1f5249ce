/* glm-bench against vLLM 0.33.0's own benchmark code (goldens in
 * tests/data/glmbench, written by tests/glmbench/gen_goldens.py), plus
 * hand-computed metric cases.
 *
 *   rng        numpy PCG64 integers, legacy gamma, Python shuffle/choice: equal
 *   stats      np.mean/std/median/percentile: bit for bit
 *   arrivals   get_request's send times: bit for bit
 *   stream     SSE chunks through vLLM's request functions with a scripted
 *              clock: the same messages, TTFT, ITL, latency, usage, text
 *   payload    the request bodies: byte for byte
 *   report     outputs through benchmark(): the same table text and the
 *              same json.dumps of the result dict
 *   datasets   RandomDataset / ShareGPT / custom samples for the real
 *              tokenizers (skipped without ../shared) */
#include <math.h>
#include <unistd.h>

#include "test.h"
#include "json.h"
#include "pyjson.h"
#include "pystr.h"
#include "tokenizer/tokenizer.h"
#include "tools/bench/bench.h"

static const char *data_dir(void)
{
    const char *e = getenv("GLM_BENCH_DATA");
    return e ? e : "tests/data/glmbench";
}

static cJSON *load(const char *name)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", data_dir(), name);
    pl_buf b;
    pl_buf_init(&b);
    cJSON *j = NULL;
    if (pl_file_read(path, &b, 64u << 20, err, sizeof err) || pl_json_parse(&j, b.data, b.len, err, sizeof err))
        fprintf(stderr, "  cannot load %s: %s\n", path, err);
    pl_buf_free(&b);
    return j;
}

static const cJSON *G(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static double num(const cJSON *o, const char *k) { return G(o, k) ? G(o, k)->valuedouble : NAN; }

/* A JSON number or the string "inf". */
static double num_inf(const cJSON *v)
{
    return cJSON_IsString(v) && !strcmp(v->valuestring, "inf") ? INFINITY : v->valuedouble;
}

#define CHECK_EQ_DBL(a, b) do { double _a = (a), _b = (b); \
    if (!(_a == _b || (isnan(_a) && isnan(_b)))) { fprintf(stderr, "  %s:%d: %s == %.17g, expected %.17g\n", \
        __FILE__, __LINE__, #a, _a, _b); t_cur_failed = 1; } } while (0)

/* ================================================================ rng */

TEST(rng_numpy_and_python)
{
    cJSON *j = load("rng.json");
    CHECK(j);
    if (!j) return;
    const cJSON *c;
    cJSON_ArrayForEach(c, G(j, "pcg64")) {
        bn_pcg64 g;
        bn_pcg64_seed(&g, (uint64_t)num(c, "seed"));
        const cJSON *call;
        cJSON_ArrayForEach(call, G(c, "calls")) {
            int64_t lo = (int64_t)num(call, "low"), hi = (int64_t)num(call, "high");
            const cJSON *v;
            int bad = 0;
            cJSON_ArrayForEach(v, G(call, "values")) bad |= bn_pcg64_integers(&g, lo, hi) != (int64_t)v->valuedouble;
            if (bad) fprintf(stderr, "  pcg64 seed %g integers(%lld, %lld) differ\n", num(c, "seed"), (long long)lo, (long long)hi);
            CHECK(!bad);
        }
    }
    cJSON_ArrayForEach(c, G(j, "legacy_gamma")) {
        bn_mt m;
        bn_mt_seed_numpy(&m, (uint32_t)num(c, "seed"));
        const cJSON *call;
        cJSON_ArrayForEach(call, G(c, "calls")) {
            const cJSON *v;
            cJSON_ArrayForEach(v, G(call, "values")) CHECK_EQ_DBL(bn_mt_gamma(&m, num(call, "shape"), num(call, "scale")), v->valuedouble);
        }
    }
    cJSON_ArrayForEach(c, G(j, "python")) {
        bn_mt m;
        bn_mt_seed_python(&m, (int64_t)num(c, "seed"));
        const cJSON *call;
        cJSON_ArrayForEach(call, G(c, "calls")) {
            if (G(call, "shuffle")) {
                size_t n = (size_t)num(call, "shuffle");
                int *x = malloc(n * sizeof *x);
                for (size_t i = 0; i < n; i++) x[i] = (int)i;
                bn_mt_shuffle(&m, x, n, sizeof *x);
                size_t k = 0, nv = (size_t)cJSON_GetArraySize(G(call, "values"));
                const cJSON *v;
                int bad = 0;
                cJSON_ArrayForEach(v, G(call, "values")) {
                    size_t at = n <= 1000 ? k : (k < 50 ? k : n - (nv - k));
                    bad |= x[at] != (int)v->valuedouble;
                    k++;
                }
                CHECK(!bad);
                free(x);
            } else {
                const cJSON *v;
                uint64_t n = (uint64_t)num(call, "choice");
                cJSON_ArrayForEach(v, G(call, "values")) CHECK_EQ_INT(bn_mt_randbelow(&m, n), v->valuedouble);
            }
        }
    }
    cJSON_Delete(j);
}

/* ================================================================ stats */

static double *doubles(const cJSON *arr, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(arr);
    double *a = malloc((*n ? *n : 1) * sizeof *a);
    size_t k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) a[k++] = v->valuedouble;
    return a;
}

TEST(stats_numpy_bit_exact)
{
    cJSON *j = load("stats.json");
    CHECK(j);
    const cJSON *c;
    cJSON_ArrayForEach(c, j) {
        size_t n;
        double *a = doubles(G(c, "values"), &n);
        CHECK_EQ_DBL(bn_np_mean(a, n), num(c, "mean"));
        CHECK_EQ_DBL(bn_np_std(a, n), num(c, "std"));
        CHECK_EQ_DBL(bn_np_median(a, n), num(c, "median"));
        const cJSON *p = G(c, "percentiles")->child, *e = G(c, "pct")->child;
        for (; p && e; p = p->next, e = e->next) CHECK_EQ_DBL(bn_np_percentile(a, n, p->valuedouble), e->valuedouble);
        free(a);
    }
    cJSON_Delete(j);
    /* vLLM passes `xs or 0`: an empty list reads as 0 */
    CHECK_EQ_DBL(bn_np_mean(NULL, 0), 0.0);
    CHECK_EQ_DBL(bn_np_percentile(NULL, 0, 99), 0.0);
}

/* ================================================================ arrivals */

TEST(arrivals_like_get_request)
{
    cJSON *j = load("arrivals.json");
    CHECK(j);
    const cJSON *c;
    cJSON_ArrayForEach(c, j) {
        size_t n = (size_t)num(c, "n");
        bn_run_cfg cfg = {0};
        cfg.request_rate = num_inf(G(c, "rate"));
        cfg.burstiness = num_inf(G(c, "burstiness"));
        const cJSON *ramp = G(c, "ramp");
        if (cJSON_IsString(ramp)) {
            cfg.ramp = !strcmp(ramp->valuestring, "linear") ? BN_RAMP_LINEAR : BN_RAMP_EXPONENTIAL;
            cfg.ramp_start = num(c, "ramp_start");
            cfg.ramp_end = num(c, "ramp_end");
        }
        bn_mt m;
        bn_mt_seed_numpy(&m, (uint32_t)num(c, "seed"));
        double *d = calloc(n, sizeof *d), *r = calloc(n, sizeof *r);
        CHECK_EQ_INT(bn_arrivals(d, r, n, &cfg, &m), 0);
        /* vLLM sleeps for each positive delay (the clock stood still) */
        const cJSON *s = G(c, "sleeps")->child;
        for (size_t i = 0; i < n; i++) {
            if (!(d[i] > 0)) continue;
            CHECK(s != NULL);
            if (!s) break;
            CHECK_EQ_DBL(d[i], s->valuedouble);
            s = s->next;
        }
        CHECK(s == NULL);
        size_t i = 0;
        const cJSON *rv;
        cJSON_ArrayForEach(rv, G(c, "rates")) CHECK_EQ_DBL(r[i++], num_inf(rv));
        free(d);
        free(r);
    }
    cJSON_Delete(j);
}

/* ================================================================ stream rules */

static int clock_k;
static double fake_clock(void)
{
    clock_k++;
    double x = 0.001 * clock_k;
    return 100.0 + 0.0125 * clock_k + x * x;
}

typedef struct feed_ctx {
    bn_stream  *st;
    const cJSON *expect;    /* next expected message */
    int         bad_msgs;
    bool        failed;
} feed_ctx;

static int on_msg(void *ud, const char *msg, size_t len)
{
    feed_ctx *f = ud;
    if (!f->expect || strlen(f->expect->valuestring) != len || memcmp(f->expect->valuestring, msg, len)) {
        fprintf(stderr, "  message differs: got \"%.*s\"\n", (int)len, msg);
        f->bad_msgs++;
    }
    if (f->expect) f->expect = f->expect->next;
    if (f->failed) return 0;   /* vLLM stopped at the failing message; splitting goes on for the check */
    char err[256];
    if (bn_stream_message(f->st, msg, len, err, sizeof err)) {
        bn_stream_fail(f->st, err);
        f->failed = true;
    }
    return 0;
}

/* latin-1 string -> bytes (the golden stores raw bytes that way) */
static size_t latin1_bytes(const char *s, char *out)
{
    size_t n = 0, len = strlen(s);
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t k = pl_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        out[n++] = (char)cp;
        i += k ? k : 1;
    }
    return n;
}

TEST(stream_rules_like_vllm)
{
    cJSON *j = load("stream.json");
    CHECK(j);
    const cJSON *c;
    cJSON_ArrayForEach(c, j) {
        const char *name = G(c, "name")->valuestring;
        bool chat = !strcmp(G(c, "endpoint")->valuestring, "chat");
        bn_output o;
        bn_output_init(&o);
        o.prompt_len = 17;
        clock_k = 0;
        bn_stream st;
        bn_stream_init(&st, chat ? BN_BACKEND_CHAT : BN_BACKEND_COMPLETIONS, &o, fake_clock());
        st.now = fake_clock;
        bn_sse sse;
        bn_sse_init(&sse, 1 << 20);
        feed_ctx f = {.st = &st, .expect = G(c, "messages")->child};
        const cJSON *ch = G(c, "chunks")->child, *l1 = G(c, "latin1")->child;
        for (; ch; ch = ch->next, l1 = l1->next) {
            char buf[4096];
            size_t n = cJSON_IsTrue(l1) ? latin1_bytes(ch->valuestring, buf) : strlen(ch->valuestring);
            CHECK_EQ_INT(bn_sse_feed(&sse, cJSON_IsTrue(l1) ? buf : ch->valuestring, n, on_msg, &f), 0);
        }
        if (!f.failed) bn_stream_finish(&st);
        if (f.bad_msgs || f.expect) fprintf(stderr, "  case \"%s\": messages differ\n", name);
        CHECK(f.bad_msgs == 0 && f.expect == NULL);
        const cJSON *e = G(c, "out");
        bool ok = cJSON_IsTrue(G(e, "success"));
        if (o.success != ok) fprintf(stderr, "  case \"%s\": success %d\n", name, o.success);
        CHECK(o.success == ok);
        if (cJSON_IsString(G(e, "error"))) CHECK_EQ_STR(o.error, G(e, "error")->valuestring);
        CHECK_EQ_DBL(o.start_time, num(e, "start_time"));
        CHECK_EQ_DBL(o.ttft, num(e, "ttft"));
        CHECK_EQ_DBL(o.latency, num(e, "latency"));
        CHECK_EQ_INT(o.n_itl, cJSON_GetArraySize(G(e, "itl")));
        size_t k = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, G(e, "itl")) if (k < o.n_itl) CHECK_EQ_DBL(o.itl[k++], v->valuedouble);
        CHECK_EQ_INT(o.output_tokens, num(e, "output_tokens"));
        CHECK_EQ_INT(o.prompt_len, num(e, "prompt_len"));
        CHECK_EQ_STR(o.text.data ? o.text.data : "", G(e, "generated_text")->valuestring);
        CHECK(o.has_server_queue_time == cJSON_IsNumber(G(e, "server_queue_time")));
        if (o.has_server_queue_time) CHECK_EQ_DBL(o.server_queue_time, num(e, "server_queue_time"));
        if (o.has_server_ttft) CHECK_EQ_DBL(o.server_ttft, num(e, "server_ttft"));
        if (t_cur_failed) fprintf(stderr, "  (case \"%s\")\n", name);
        bn_sse_free(&sse);
        bn_output_free(&o);
    }
    cJSON_Delete(j);
}

/* The splitter by hand: a stream cut at every byte gives the same messages. */
static int collect(void *ud, const char *msg, size_t len)
{
    pl_buf *b = ud;
    pl_buf_append(b, msg, len);
    pl_buf_putc(b, '|');
    return 0;
}

TEST(sse_split_anywhere)
{
    const char *stream = ": hi\n\ndata: {\"a\": 1}\n\n\n\n  data: {\"b\": \"x\\n\\ny \u00e9\"}\n\ndata: [DONE]\n\n";
    const char *want = ": hi|data: {\"a\": 1}|data: {\"b\": \"x\\n\\ny \u00e9\"}|data: [DONE]|";
    size_t n = strlen(stream);
    for (size_t cut = 0; cut <= n; cut++) {
        bn_sse s;
        bn_sse_init(&s, 1024);
        pl_buf got;
        pl_buf_init(&got);
        CHECK_EQ_INT(bn_sse_feed(&s, stream, cut, collect, &got), 0);
        CHECK_EQ_INT(bn_sse_feed(&s, stream + cut, n - cut, collect, &got), 0);
        if (strcmp(got.data, want)) {
            fprintf(stderr, "  cut at %zu: %s\n", cut, got.data);
            t_cur_failed = 1;
        }
        bn_sse_free(&s);
        pl_buf_free(&got);
    }
    /* bounds: a message larger than the limit, invalid UTF-8 */
    bn_sse s;
    bn_sse_init(&s, 16);
    pl_buf got;
    pl_buf_init(&got);
    CHECK_EQ_INT(bn_sse_feed(&s, "data: {\"long\": \"xxxxxxxx\"", 27, collect, &got), PL_ERR_TOOLONG);
    bn_sse_free(&s);
    bn_sse_init(&s, 1024);
    CHECK_EQ_INT(bn_sse_feed(&s, "data: \"\xff\"\n\n", 11, collect, &got), PL_ERR_PARSE);
    bn_sse_free(&s);
    pl_buf_free(&got);
}

/* ================================================================ payload */

TEST(payload_like_vllm)
{
    cJSON *j = load("payload.json");
    CHECK(j);
    const cJSON *c;
    cJSON_ArrayForEach(c, j) {
        bn_run_cfg cfg = {0};
        cfg.backend = !strcmp(G(c, "endpoint")->valuestring, "chat") ? BN_BACKEND_CHAT : BN_BACKEND_COMPLETIONS;
        cfg.model = G(c, "model")->valuestring;
        cfg.ignore_eos = cJSON_IsTrue(G(c, "ignore_eos"));
        cfg.has_logprobs = cJSON_IsNumber(G(c, "logprobs"));
        cfg.logprobs = cfg.has_logprobs ? (int64_t)num(c, "logprobs") : 0;
        /* load() parsed with pl_json_parse: 0.0 keeps its float mark */
        cfg.extra_body = cJSON_IsObject(G(c, "extra_body")) ? G(c, "extra_body") : NULL;
        pl_buf text;   /* the prompt's real bytes (a NUL is C0 80 inside cJSON) */
        pl_buf_init(&text);
        pl_json_str_bytes(&text, G(c, "prompt")->valuestring);
        pl_buf_putc(&text, 0);
        bn_sample s = {.prompt = text.data, .prompt_bytes = text.len - 1, .output_len = (int64_t)num(c, "output_len")};
        pl_buf b;
        pl_buf_init(&b);
        CHECK_EQ_INT(bn_request_body(&b, &cfg, &s), 0);
        CHECK_EQ_STR(b.data, G(c, "body")->valuestring);
        pl_buf_free(&b);
        pl_buf_free(&text);
    }
    cJSON_Delete(j);
    /* a random-dataset prompt can decode to text holding NUL (token 0 of a
     * byte-level vocabulary): json.dumps writes it as \u0000, never cuts there */
    bn_run_cfg cfg = {.backend = BN_BACKEND_COMPLETIONS, .model = "m"};
    bn_sample s = {.prompt = "a\0b", .prompt_bytes = 3, .output_len = 1};
    pl_buf b;
    pl_buf_init(&b);
    CHECK_EQ_INT(bn_request_body(&b, &cfg, &s), 0);
    CHECK_EQ_STR(b.data, "{\"model\": \"m\", \"prompt\": \"a\\u0000b\", \"repetition_penalty\": 1.0, \"max_tokens\": 1, "
                         "\"logprobs\": null, \"stream\": true, \"stream_options\": {\"include_usage\": true}}");
    pl_buf_free(&b);
}

/* ================================================================ report */

static bool load_outputs(const cJSON *arr, bn_output **outs, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(arr);
    *outs = calloc(*n ? *n : 1, sizeof **outs);
    size_t i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        bn_output *x = &(*outs)[i++];
        bn_output_init(x);
        x->success = cJSON_IsTrue(G(o, "success"));
        x->start_time = num(o, "start_time");
        x->ttft = num(o, "ttft");
        x->latency = num(o, "latency");
        const cJSON *v;
        cJSON_ArrayForEach(v, G(o, "itl")) bn_output_add_itl(x, v->valuedouble);
        x->output_tokens = (int64_t)num(o, "output_tokens");
        x->prompt_len = (int64_t)num(o, "prompt_len");
        pl_buf_puts(&x->text, G(o, "generated_text")->valuestring);
        if (!x->success) x->error = strdup(G(o, "error")->valuestring);
        x->client_queue_time = num(o, "client_queue_time");
        x->has_server_queue_time = cJSON_IsNumber(G(o, "server_queue_time"));
        x->server_queue_time = x->has_server_queue_time ? num(o, "server_queue_time") : 0;
        x->has_server_ttft = cJSON_IsNumber(G(o, "server_ttft"));
        x->server_ttft = x->has_server_ttft ? num(o, "server_ttft") : 0;
    }
    return true;
}

static size_t split_list(const char *s, const char **items, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s", s);
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t && n < 32; t = strtok_r(NULL, ",", &save)) items[n++] = t;
    return n;
}

static pl_tokenizer *shared_tokenizer(const char *name)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/data/tokenizers/%s/tokenizer.json", test_shared_dir(), name);
    pl_tokenizer *t = NULL;
    if (pl_tokenizer_load(&t, path, err, sizeof err)) return NULL;
    return t;
}

TEST(report_like_vllm)
{
    cJSON *j = load("report.json");
    CHECK(j);
    const cJSON *c;
    cJSON_ArrayForEach(c, j) {
        const char *name = G(c, "name")->valuestring;
        pl_tokenizer *tk = NULL;
        if (cJSON_IsString(G(c, "tokenizer"))) {
            tk = shared_tokenizer(G(c, "tokenizer")->valuestring);
            if (!tk) { test_skip("shared tokenizer absent: one report case not checked"); continue; }
        }
        bn_output *outs;
        size_t n;
        load_outputs(G(c, "outputs"), &outs, &n);
        const char *metrics[32];
        char mbuf[256], pbuf[256];
        size_t nm = split_list(G(c, "percentile_metrics")->valuestring, metrics, mbuf, sizeof mbuf);
        const char *pstr[32];
        size_t np = split_list(G(c, "metric_percentiles")->valuestring, pstr, pbuf, sizeof pbuf);
        double pcts[32];
        for (size_t i = 0; i < np; i++) pcts[i] = strtod(pstr[i], NULL);
        bn_goodput slo = {0};
        const cJSON *g;
        cJSON_ArrayForEach(g, G(c, "goodput")) {
            const char *s = g->valuestring;
            double v = strtod(s + 5, NULL);
            if (!strncmp(s, "ttft", 4)) { slo.has_ttft = true; slo.ttft_ms = v; }
            if (!strncmp(s, "tpot", 4)) { slo.has_tpot = true; slo.tpot_ms = v; }
            if (!strncmp(s, "e2el", 4)) { slo.has_e2el = true; slo.e2el_ms = v; }
        }
        double dur = num(c, "duration");
        bn_metrics m;
        CHECK_EQ_INT(bn_metrics_compute(&m, outs, n, dur, tk, pcts, np, &slo), 0);
        bn_report_cfg cfg = {.has_max_concurrency = cJSON_IsNumber(G(c, "max_concurrency")),
                             .max_concurrency = (int64_t)num(c, "max_concurrency"),
                             .request_rate = num_inf(G(c, "request_rate")),
                             .has_tokenizer = cJSON_IsTrue(G(c, "has_tokenizer")),
                             .goodput = slo.has_ttft || slo.has_tpot || slo.has_e2el,
                             .metrics = metrics, .n_metrics = nm, .pcts = pcts, .npct = np};
        pl_buf text, js;
        pl_buf_init(&text);
        pl_buf_init(&js);
        cJSON *r = cJSON_CreateObject();
        CHECK_EQ_INT(bn_report(&text, r, &m, outs, n, dur, &cfg), 0);
        /* ours adds a count per distinct failure after vLLM's capped list */
        char *ours = text.data, *extra = strstr(ours, "Failure reasons (count: error):\n");
        if (extra) {
            char *table = strstr(extra, "============ Serving");
            memmove(extra, table, strlen(table) + 1);
        }
        CHECK_EQ_STR(ours, G(c, "table")->valuestring);
        const cJSON *drop;
        cJSON_ArrayForEach(drop, G(c, "dropped_keys")) cJSON_DeleteItemFromObjectCaseSensitive(r, drop->valuestring);
        pl_pyjson_opts o = PL_PYJSON_DEFAULT;
        o.ensure_ascii = 1;
        pl_pyjson_dump(&js, r, &o);
        const char *want = G(c, "result_json")->valuestring;
        if (strcmp(js.data, want)) {
            size_t k = 0;
            while (js.data[k] && js.data[k] == want[k]) k++;
            fprintf(stderr, "  case %s: result JSON differs at %zu: ...%.80s\n  expected ...%.80s\n", name, k,
                    js.data + (k > 20 ? k - 20 : 0), want + (k > 20 ? k - 20 : 0));
            t_cur_failed = 1;
        }
        cJSON_Delete(r);
        pl_buf_free(&text);
        pl_buf_free(&js);
        bn_metrics_free(&m);
        for (size_t i = 0; i < n; i++) bn_output_free(&outs[i]);
        free(outs);
        pl_tokenizer_free(tk);
    }
    cJSON_Delete(j);
}

/* Hand-computed: two requests, fixed timestamps. */
TEST(metrics_hand_computed)
{
    bn_output o[3];
    for (int i = 0; i < 3; i++) bn_output_init(&o[i]);
    /* r0: sent at 10.0, first token +0.5, then 3 gaps of 0.1 -> 4 tokens, E2EL 0.8 */
    o[0].success = true; o[0].start_time = 10.0; o[0].ttft = 0.5; o[0].latency = 0.8;
    o[0].output_tokens = 4; o[0].prompt_len = 100;
    bn_output_add_itl(&o[0], 0.1); bn_output_add_itl(&o[0], 0.1); bn_output_add_itl(&o[0], 0.1);
    /* r1: sent at 11.5, first token +0.25, one gap 0.25 -> 2 tokens, E2EL 0.5 */
    o[1].success = true; o[1].start_time = 11.5; o[1].ttft = 0.25; o[1].latency = 0.5;
    o[1].output_tokens = 2; o[1].prompt_len = 50;
    bn_output_add_itl(&o[1], 0.25);
    /* r2 failed: counts nowhere but in `failed` */
    bn_output_set_error(&o[2], "HTTP 500 Internal Server Error");
    double pcts[] = {50, 100};
    bn_goodput slo = {.has_ttft = true, .ttft_ms = 300};
    bn_metrics m;
    CHECK_EQ_INT(bn_metrics_compute(&m, o, 3, 2.0, NULL, pcts, 2, &slo), 0);
    CHECK_EQ_INT(m.completed, 2);
    CHECK_EQ_INT(m.failed, 1);
    CHECK_EQ_INT(m.total_input, 150);
    CHECK_EQ_INT(m.total_output, 6);
    CHECK(fabs(m.request_throughput - 1.0) < 1e-12);
    CHECK(fabs(m.output_throughput - 3.0) < 1e-12);
    CHECK(fabs(m.total_token_throughput - 78.0) < 1e-12);
    CHECK(fabs(m.request_goodput - 0.5) < 1e-12);          /* only r1's TTFT (250 ms) meets 300 ms */
    CHECK(fabs(m.ttft.mean - 375.0) < 1e-9);               /* (500 + 250) / 2 */
    CHECK(fabs(m.ttft.pct[1] - 500.0) < 1e-9);
    /* TPOT: r0 (0.8-0.5)/3 = 100 ms, r1 (0.5-0.25)/1 = 250 ms */
    CHECK(fabs(m.tpot.mean - 175.0) < 1e-9);
    CHECK(fabs(m.tpot.std - 75.0) < 1e-9);
    /* ITL pooled: 100, 100, 100, 250 -> mean 137.5, median 100 */
    CHECK(fabs(m.itl.mean - 137.5) < 1e-9);
    CHECK(fabs(m.itl.median - 100.0) < 1e-9);
    CHECK(fabs(m.e2el.median - 650.0) < 1e-9);
    /* buckets from 10.0: r0's tokens at 10.5, 10.6, 10.7, 10.8 -> bucket 0 (4);
     * r1's at 11.75, 12.0 -> buckets 1 and 2; r0 active in 0, r1 in 1..2 */
    CHECK_EQ_INT((int64_t)m.max_output_tokens_per_s, 4);
    CHECK_EQ_INT(m.max_concurrent_requests, 1);
    /* the table's value column: ints and two-decimal floats padded to 10 */
    const char *met[] = {"ttft", "tpot", "itl", "e2el"};
    bn_report_cfg cfg = {.request_rate = 2.0, .has_tokenizer = true, .goodput = true, .metrics = met, .n_metrics = 4,
                         .pcts = pcts, .npct = 2};
    pl_buf t;
    pl_buf_init(&t);
    cJSON *r = cJSON_CreateObject();
    CHECK_EQ_INT(bn_report(&t, r, &m, o, 3, 2.0, &cfg), 0);
    CHECK(strstr(t.data, "Error 0: HTTP 500 Internal Server Error\n") != NULL);
    CHECK(strstr(t.data, "  1: HTTP 500 Internal Server Error\n") != NULL);
    CHECK(strstr(t.data, "Request rate configured (RPS):           2.00      \n") != NULL);
    CHECK(strstr(t.data, "Request goodput (req/s):                 0.50      \n") != NULL);
    CHECK(strstr(t.data, "Mean TTFT (ms):                          375.00    \n") != NULL);
    CHECK(strstr(t.data, "P100 TTFT (ms):                          500.00    \n") != NULL);
    CHECK(strstr(t.data, "P50 ITL (ms):                            100.00    \n") != NULL);
    CHECK(strstr(t.data, "----------------End-to-end Latency----------------\n") != NULL);
    CHECK_EQ_DBL(G(r, "p50_e2el_ms")->valuedouble, 650.0);
    CHECK(cJSON_IsNull(G(r, "request_goodput")) == false);
    cJSON_Delete(r);
    pl_buf_free(&t);
    bn_metrics_free(&m);
    for (int i = 0; i < 3; i++) bn_output_free(&o[i]);
}

/* ================================================================ datasets */

TEST(datasets_like_vllm)
{
    cJSON *j = load("datasets.json");
    CHECK(j);
    const cJSON *c;
    int checked = 0;
    cJSON_ArrayForEach(c, j) {
        const char *kind = G(c, "kind")->valuestring, *tname = G(c, "tokenizer")->valuestring;
        bool custom_tpl = !strcmp(kind, "custom") && !cJSON_IsTrue(G(c, "skip_chat_template"));
        char dir[512], err[512], path[600];
        snprintf(dir, sizeof dir, "%s/data/tokenizers/%s", test_shared_dir(), tname);
        bn_tok t;
        if (bn_tok_load(&t, dir, custom_tpl, err, sizeof err)) {
            test_skip("shared tokenizers absent: dataset goldens not checked");
            break;
        }
        bn_dataset d;
        int rc;
        if (!strcmp(kind, "random")) {
            CHECK_EQ_INT(t.vocab, num(c, "vocab_size"));
            CHECK_EQ_INT(t.num_special, num(c, "num_special"));
            bn_random_opts o = {.seed = (uint64_t)num(c, "seed"), .num_prompts = (int64_t)num(c, "num_prompts"),
                                .input_len = (int64_t)num(c, "input_len"), .output_len = (int64_t)num(c, "output_len"),
                                .prefix_len = (int64_t)num(c, "prefix_len"), .id_prefix = "rnd-"};
            const cJSON *rr = G(c, "range_ratio");
            o.range_in = cJSON_IsObject(rr) ? num(rr, "input") : rr->valuedouble;
            o.range_out = cJSON_IsObject(rr) ? num(rr, "output") : rr->valuedouble;
            rc = bn_dataset_random(&d, &t, &o, err, sizeof err);
        } else {
            snprintf(path, sizeof path, "%s/%s", data_dir(), G(c, "path")->valuestring);
            const cJSON *ol = G(c, "output_len");
            bn_file_opts o = {.path = path, .seed = (int64_t)num(c, "seed"), .num_prompts = (int64_t)num(c, "num_prompts"),
                              .has_output_len = cJSON_IsNumber(ol) && ol->valuedouble != -1,
                              .output_len = cJSON_IsNumber(ol) ? (int64_t)ol->valuedouble : 0,
                              .no_shuffle = cJSON_IsTrue(G(c, "disable_shuffle")),
                              .no_oversample = cJSON_IsTrue(G(c, "no_oversample")),
                              .skip_chat_template = !custom_tpl, .max_bytes = 1 << 24};
            o.id_prefix = !strcmp(kind, "sharegpt") ? "sg-" : "cu-";
            rc = !strcmp(kind, "sharegpt") ? bn_dataset_sharegpt(&d, &t, &o, err, sizeof err)
                                           : bn_dataset_custom(&d, &t, &o, err, sizeof err);
        }
        if (rc) fprintf(stderr, "  %s/%s: %s\n", kind, tname, err);
        CHECK_EQ_INT(rc, 0);
        if (!rc) {
            CHECK_EQ_INT(d.n, cJSON_GetArraySize(G(c, "samples")));
            size_t i = 0;
            const cJSON *s;
            cJSON_ArrayForEach(s, G(c, "samples")) {
                if (i >= d.n) break;
                int bad = strcmp(d.s[i].prompt, G(s, "prompt")->valuestring) != 0 ||
                          d.s[i].prompt_len != (int64_t)num(s, "prompt_len") ||
                          d.s[i].output_len != (int64_t)num(s, "output_len") ||
                          strcmp(d.s[i].request_id, G(s, "request_id")->valuestring) != 0;
                if (bad)
                    fprintf(stderr, "  %s/%s seed %g sample %zu: len %lld/%lld out %lld/%lld id %s\n", kind, tname,
                            num(c, "seed"), i, (long long)d.s[i].prompt_len, (long long)num(s, "prompt_len"),
                            (long long)d.s[i].output_len, (long long)num(s, "output_len"), d.s[i].request_id);
                CHECK(!bad);
                i++;
            }
            bn_dataset_free(&d);
            checked++;
        }
        bn_tok_free(&t);
    }
    cJSON_Delete(j);
}

/* A prompt that holds NUL (JSON "\u0000") keeps every byte: the dataset
 * carries the real bytes, and the request body writes \u0000 again. */
TEST(dataset_prompt_with_nul)
{
    char path[] = "/tmp/test_bench_nulXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *rows = "{\"prompt\": \"a\\u0000b\", \"output_tokens\": 3}\n";
    CHECK(write(fd, rows, strlen(rows)) == (ssize_t)strlen(rows));
    close(fd);
    bn_file_opts o = {.path = path, .num_prompts = 1, .no_shuffle = true, .no_oversample = true,
                      .skip_chat_template = true, .max_bytes = 1 << 20, .id_prefix = "cu-"};
    bn_dataset d;
    char err[256];
    int rc = bn_dataset_custom(&d, NULL, &o, err, sizeof err);
    unlink(path);
    CHECK_EQ_INT(rc, 0);
    if (rc) return;
    CHECK_EQ_INT((int)d.n, 1);
    CHECK_EQ_INT((int)d.s[0].prompt_bytes, 3);
    CHECK(!memcmp(d.s[0].prompt, "a\0b", 3));
    bn_run_cfg cfg = {.backend = BN_BACKEND_COMPLETIONS, .model = "m"};
    pl_buf b;
    pl_buf_init(&b);
    CHECK_EQ_INT(bn_request_body(&b, &cfg, &d.s[0]), 0);
    CHECK(strstr(b.data, "\"prompt\": \"a\\u0000b\"") != NULL);
    pl_buf_free(&b);
    bn_dataset_free(&d);
}

int main(void)
{
    RUN(rng_numpy_and_python);
    RUN(stats_numpy_bit_exact);
    RUN(arrivals_like_get_request);
    RUN(stream_rules_like_vllm);
    RUN(sse_split_anywhere);
    RUN(payload_like_vllm);
    RUN(report_like_vllm);
    RUN(metrics_hand_computed);
    RUN(datasets_like_vllm);
    RUN(dataset_prompt_with_nul);
    return test_report();
}
