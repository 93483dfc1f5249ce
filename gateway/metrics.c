/* metrics.c — /metrics in the Prometheus text format, with vLLM's names.
 *
 * Request-level histograms are measured here, in the gateway, from the
 * message stream (TTFT at the first token, inter-token gaps, end-to-end);
 * queue/prefill/decode use the engine's timestamps from `start`/`end` when
 * they are there. Engine gauges and counters (KV usage, prefix cache,
 * preemptions, speculative decoding) come from the engine's `stats` answer
 * (docs/protocol.md `stats`) and are left out when it gives none. Bucket
 * bounds are vLLM 0.33's (vllm/v1/metrics/buckets.py). */
#include "gw_int.h"

#include <stdlib.h>
#include <string.h>

static const double LATENCY_B[] = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                                   50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
static const double TTFT_B[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double ITL_B[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
                               2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
static const double N_B[] = {1, 2, 5, 10, 20};

#define GW_HIST_MAX_B 48

typedef struct gw_hist {
    const char *name, *help;
    const double *b;               /* [nb] upper bounds */
    size_t nb;
    uint64_t counts[GW_HIST_MAX_B + 1];   /* per bucket, not cumulative; [nb] = +Inf */
    double sum;
    uint64_t count;
} gw_hist;

enum {
    H_TTFT, H_ITL, H_E2E, H_QUEUE, H_PREFILL, H_DECODE, H_INFER,
    H_PROMPT, H_GEN, H_N, H_MAXTOK, H_COUNT
};

/* HTTP requests by route, as vLLM's prometheus-fastapi-instrumentator
 * counts them (http_requests_total{handler,method,status="2xx"},
 * http_request_duration_seconds{handler,method}); /metrics, /health,
 * /ping and /version are excluded there too, unknown paths are "none". */
static const char *const HANDLERS[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/tokenize",
                                       "/detokenize", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses",
                                       "/v1/responses/{response_id}", "/v1/responses/{response_id}/cancel", "none"};
#define GW_NH ((int)PL_ARRAY_LEN(HANDLERS))
static const char *const METHODS[] = {"GET", "POST", "other"};
static const double HTTP_B[] = {0.1, 0.5, 1.0};

typedef struct gw_http_stat {
    uint64_t by_class[5];          /* 1xx..5xx */
    uint64_t dur[PL_ARRAY_LEN(HTTP_B) + 1];
    double   dur_sum;
    uint64_t dur_count;
} gw_http_stat;

struct gw_metrics {
    char    *label;                /* model_name="...",engine="0" escaped */
    double   tok_b[GW_HIST_MAX_B]; /* 1-2-5 series up to max_model_len */
    size_t   tok_nb;
    gw_hist  h[H_COUNT];
    uint64_t success[5];
    uint64_t prompt_tokens, generation_tokens;
    gw_http_stat http[GW_NH][3];       /* [handler][method] */
};

static const char *const FIN_NAMES[5] = {"stop", "length", "abort", "error", "repetition"};


/* vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to max. */
static size_t buckets_125(double max, double *out)
{
    size_t n = 0;
    for (double mag = 1; n < GW_HIST_MAX_B; mag *= 10)
        for (int k = 0; k < 3 && n < GW_HIST_MAX_B; k++) {
            double v = mag * (k == 0 ? 1 : k == 1 ? 2 : 5);
            if (v > max) return n;
            out[n++] = v;
        }
    return n;
}

static void hist_set(gw_hist *h, const char *name, const char *help, const double *b, size_t nb)
{
    h->name = name;
    h->help = help;
    h->b = b;
    h->nb = nb;
}

static void hist_observe(gw_hist *h, double v)
{
    size_t i = 0;
    while (i < h->nb && v > h->b[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

static void label_escape(pl_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\') pl_buf_puts(b, "\\\\");
        else if (*s == '"') pl_buf_puts(b, "\\\"");
        else if (*s == '\n') pl_buf_puts(b, "\\n");
        else pl_buf_putc(b, *s);
    }
}

int gw_metrics_init(gw_metrics **out, const char *model_name, int64_t max_model_len)
{
    gw_metrics *m = calloc(1, sizeof *m);
    if (!m) return PL_ERR_NOMEM;
    pl_buf l;
    pl_buf_init(&l);
    pl_buf_puts(&l, "model_name=\"");
    label_escape(&l, model_name ? model_name : "");
    pl_buf_puts(&l, "\",engine=\"0\"");
    if (!pl_buf_ok(&l)) { free(m); return PL_ERR_NOMEM; }
    m->label = l.data;
    m->tok_nb = buckets_125(max_model_len > 0 ? (double)max_model_len : 1e6, m->tok_b);
    hist_set(&m->h[H_TTFT], "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_B, PL_ARRAY_LEN(TTFT_B));
    hist_set(&m->h[H_ITL], "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_B, PL_ARRAY_LEN(ITL_B));
    hist_set(&m->h[H_E2E], "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", LATENCY_B, PL_ARRAY_LEN(LATENCY_B));
    hist_set(&m->h[H_QUEUE], "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", LATENCY_B, PL_ARRAY_LEN(LATENCY_B));
    hist_set(&m->h[H_PREFILL], "vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", LATENCY_B, PL_ARRAY_LEN(LATENCY_B));
    hist_set(&m->h[H_DECODE], "vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", LATENCY_B, PL_ARRAY_LEN(LATENCY_B));
    hist_set(&m->h[H_INFER], "vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", LATENCY_B, PL_ARRAY_LEN(LATENCY_B));
    hist_set(&m->h[H_PROMPT], "vllm:request_prompt_tokens", "Number of prefill tokens processed.", m->tok_b, m->tok_nb);
    hist_set(&m->h[H_GEN], "vllm:request_generation_tokens", "Number of generation tokens processed.", m->tok_b, m->tok_nb);
    hist_set(&m->h[H_N], "vllm:request_params_n", "Histogram of the n request parameter.", N_B, PL_ARRAY_LEN(N_B));
    hist_set(&m->h[H_MAXTOK], "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", m->tok_b, m->tok_nb);
    *out = m;
    return PL_OK;
}

void gw_metrics_free(gw_metrics *m)
{
    if (!m) return;
    free(m->label);
    free(m);
}

void gw_metrics_ttft(gw_metrics *m, double s) { if (m && s >= 0) hist_observe(&m->h[H_TTFT], s); }
void gw_metrics_itl(gw_metrics *m, double s) { if (m && s >= 0) hist_observe(&m->h[H_ITL], s); }

void gw_metrics_done(gw_metrics *m, const gw_req_stats *st)
{
    if (!m) return;
    const double t[] = {st->e2e, st->queue, st->prefill, st->decode, st->inference};
    for (int i = 0; i < 5; i++)
        if (t[i] >= 0) hist_observe(&m->h[H_E2E + i], t[i]);
    hist_observe(&m->h[H_PROMPT], (double)st->prompt_tokens);
    hist_observe(&m->h[H_GEN], (double)st->completion_tokens);
    hist_observe(&m->h[H_N], (double)st->n);
    if (st->max_tokens >= 0) hist_observe(&m->h[H_MAXTOK], (double)st->max_tokens);
    for (int i = 0; i < 5; i++) m->success[i] += (uint64_t)st->n_finish[i];
    m->prompt_tokens += (uint64_t)st->prompt_tokens;
    m->generation_tokens += (uint64_t)st->completion_tokens;
}

/* ================================================================ render */

static void head(pl_buf *b, const char *name, const char *type, const char *help)
{
    pl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(pl_buf *b, const gw_metrics *m, const char *name, const char *extra, double v)
{
    pl_buf_printf(b, "%s{%s%s%s} ", name, m->label, extra ? "," : "", extra ? extra : "");
    gw_jw_double(b, v);   /* Python float repr, as prometheus_client prints */
    pl_buf_putc(b, '\n');
}

static void gauge(pl_buf *b, const gw_metrics *m, const char *name, const char *help, double v)
{
    head(b, name, "gauge", help);
    sample(b, m, name, NULL, v);
}

static void counter(pl_buf *b, const gw_metrics *m, const char *name, const char *help, double v)
{
    char full[128];
    snprintf(full, sizeof full, "%s_total", name);
    head(b, name, "counter", help);
    sample(b, m, full, NULL, v);
}

static void hist_render(pl_buf *b, const gw_metrics *m, const gw_hist *h)
{
    head(b, h->name, "histogram", h->help);
    char nm[128], le[64];
    snprintf(nm, sizeof nm, "%s_bucket", h->name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->nb; i++) {
        cum += h->counts[i];
        if (i < h->nb) {
            pl_buf tmp;
            pl_buf_init(&tmp);
            gw_jw_double(&tmp, h->b[i]);
            snprintf(le, sizeof le, "le=\"%s\"", tmp.data ? tmp.data : "0");
            pl_buf_free(&tmp);
        } else {
            snprintf(le, sizeof le, "le=\"+Inf\"");
        }
        sample(b, m, nm, le, (double)cum);
    }
    snprintf(nm, sizeof nm, "%s_count", h->name);
    sample(b, m, nm, NULL, (double)h->count);
    snprintf(nm, sizeof nm, "%s_sum", h->name);
    sample(b, m, nm, NULL, h->sum);
}

static bool stat_int(const msgpack_object *st, const char *key, int64_t *v)
{
    return st && pl_msg_get_int(st, key, v) == PL_OK;
}

int gw_metrics_handler(const char *path, size_t len)
{
    static const char *const excluded[] = {"/metrics", "/health", "/ping", "/version"};
    for (size_t i = 0; i < PL_ARRAY_LEN(excluded); i++)
        if (strlen(excluded[i]) == len && !memcmp(path, excluded[i], len)) return -1;
    for (int i = 0; i < GW_NH - 3; i++)
        if (strlen(HANDLERS[i]) == len && !memcmp(path, HANDLERS[i], len)) return i;
    if (len > 14 && !memcmp(path, "/v1/responses/", 14))   /* the templated routes, as FastAPI names them */
        return len > 21 && !memcmp(path + len - 7, "/cancel", 7) ? GW_NH - 2 : GW_NH - 3;
    return GW_NH - 1;
}

void gw_metrics_http(gw_metrics *m, int handler, const char *method, int status, double seconds)
{
    if (!m || handler < 0 || handler >= GW_NH || status < 100 || status > 599) return;
    int mi = !strcmp(method, "GET") ? 0 : !strcmp(method, "POST") ? 1 : 2;
    gw_http_stat *h = &m->http[handler][mi];
    h->by_class[status / 100 - 1]++;
    size_t k = 0;
    while (k < PL_ARRAY_LEN(HTTP_B) && seconds > HTTP_B[k]) k++;
    h->dur[k]++;
    h->dur_sum += seconds;
    h->dur_count++;
}

static void http_render(pl_buf *b, const gw_metrics *m)
{
    head(b, "http_requests_total", "counter", "Total number of requests by method, status and handler.");
    for (int i = 0; i < GW_NH; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 5; k++)
                if (m->http[i][j].by_class[k])
                    pl_buf_printf(b, "http_requests_total{handler=\"%s\",method=\"%s\",status=\"%dxx\"} %llu.0\n",
                                  HANDLERS[i], METHODS[j], k + 1, (unsigned long long)m->http[i][j].by_class[k]);
    head(b, "http_request_duration_seconds", "histogram",
         "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important.");
    for (int i = 0; i < GW_NH; i++)
        for (int j = 0; j < 3; j++) {
            const gw_http_stat *h = &m->http[i][j];
            if (!h->dur_count) continue;
            uint64_t cum = 0;
            for (size_t k = 0; k <= PL_ARRAY_LEN(HTTP_B); k++) {
                cum += h->dur[k];
                pl_buf_printf(b, "http_request_duration_seconds_bucket{handler=\"%s\",le=\"", HANDLERS[i]);
                if (k < PL_ARRAY_LEN(HTTP_B)) gw_jw_double(b, HTTP_B[k]);
                else pl_buf_puts(b, "+Inf");
                pl_buf_printf(b, "\",method=\"%s\"} %llu.0\n", METHODS[j], (unsigned long long)cum);
            }
            pl_buf_printf(b, "http_request_duration_seconds_count{handler=\"%s\",method=\"%s\"} %llu.0\n",
                          HANDLERS[i], METHODS[j], (unsigned long long)h->dur_count);
            pl_buf_printf(b, "http_request_duration_seconds_sum{handler=\"%s\",method=\"%s\"} ", HANDLERS[i], METHODS[j]);
            gw_jw_double(b, h->dur_sum);
            pl_buf_putc(b, '\n');
        }
}

void gw_metrics_render(const gw_metrics *m, const msgpack_object *st, int64_t running, int64_t waiting, pl_buf *b)
{
    int64_t v, total, used;
    if (stat_int(st, "num_requests_running", &v)) running = v;
    if (stat_int(st, "num_requests_waiting", &v)) waiting = v;
    gauge(b, m, "vllm:num_requests_running", "Number of requests in model execution batches.", (double)running);
    gauge(b, m, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", (double)waiting);
    if (stat_int(st, "kv_blocks_total", &total) && stat_int(st, "kv_blocks_used", &used) && total > 0)
        gauge(b, m, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", (double)used / (double)total);

    static const struct { const char *key, *name, *help; } engine_counters[] = {
        {"prefix_cache_queries", "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."},
        {"prefix_cache_hits", "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."},
        {"num_preemptions", "vllm:num_preemptions", "Cumulative number of preemption from the engine."},
        {"spec_decode_num_drafts", "vllm:spec_decode_num_drafts", "Number of spec decoding drafts."},
        {"spec_decode_num_draft_tokens", "vllm:spec_decode_num_draft_tokens", "Number of draft tokens."},
        {"spec_decode_num_accepted_tokens", "vllm:spec_decode_num_accepted_tokens", "Number of accepted tokens."},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(engine_counters); i++)
        if (stat_int(st, engine_counters[i].key, &v))
            counter(b, m, engine_counters[i].name, engine_counters[i].help, (double)v);
    const msgpack_object_array *pos;
    if (st && pl_msg_get_array(st, "spec_decode_num_accepted_tokens_per_pos", &pos) == PL_OK) {
        head(b, "vllm:spec_decode_num_accepted_tokens_per_pos", "counter", "Accepted tokens per draft position.");
        for (uint32_t i = 0; i < pos->size; i++) {
            int64_t c;
            char lbl[32];
            if (pl_msg_as_int(&pos->ptr[i], &c)) continue;
            snprintf(lbl, sizeof lbl, "position=\"%u\"", i);
            sample(b, m, "vllm:spec_decode_num_accepted_tokens_per_pos_total", lbl, (double)c);
        }
    }
    /* token counters: the engine's own when it reports them (they include
     * aborted requests' work), else what the `end` messages said */
    int64_t pt = (int64_t)m->prompt_tokens, gt = (int64_t)m->generation_tokens;
    stat_int(st, "prompt_tokens", &pt);
    stat_int(st, "generation_tokens", &gt);
    counter(b, m, "vllm:prompt_tokens", "Number of prefill tokens processed.", (double)pt);
    counter(b, m, "vllm:generation_tokens", "Number of generation tokens processed.", (double)gt);
    head(b, "vllm:request_success", "counter", "Count of successfully processed requests.");
    for (int i = 0; i < 5; i++) {
        char lbl[48];
        snprintf(lbl, sizeof lbl, "finished_reason=\"%s\"", FIN_NAMES[i]);
        sample(b, m, "vllm:request_success_total", lbl, (double)m->success[i]);
    }
    for (int i = 0; i < H_COUNT; i++) hist_render(b, m, &m->h[i]);
    http_render(b, m);
}
