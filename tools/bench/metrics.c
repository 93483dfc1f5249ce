/* metrics.c — vllm bench serve's calculate_metrics and its report.
 *
 * Everything here follows vllm/benchmarks/serve.py (0.33.0) step by step:
 * which requests count, TPOT = (latency - ttft) / (output_len - 1) for
 * outputs longer than one token, ITL pooled over all requests, goodput
 * against the SLOs, the peak output rate and peak concurrency over 1-second
 * buckets from the first start, then the table (Python's "{:<40} {:<10}"
 * padding, trailing spaces included) and the result dict with vLLM's keys in
 * vLLM's order. The statistics are numpy's to the last bit (stats.c), so
 * the same per-request timings give the same table and the same JSON. */
#include "bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "pyjson.h"
#include "tokenizer/tokenizer.h"

/* ================================================================ outputs */

void bn_output_init(bn_output *o)
{
    memset(o, 0, sizeof *o);
    pl_buf_init(&o->text);
}

void bn_output_free(bn_output *o)
{
    free(o->itl);
    free(o->error);
    pl_buf_free(&o->text);
    memset(o, 0, sizeof *o);
}

/* Append x to a growable array of doubles. */
static int dbl_push(double **v, size_t *n, size_t *cap, double x)
{
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        double *p = realloc(*v, nc * sizeof *p);
        if (!p) return PL_ERR_NOMEM;
        *v = p;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return 0;
}

int bn_output_add_itl(bn_output *o, double gap)
{
    return dbl_push(&o->itl, &o->n_itl, &o->cap_itl, gap);
}

void bn_output_set_error(bn_output *o, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(o->error);
    o->error = strdup(msg);
    o->success = false;
}

/* ================================================================ metrics */

typedef struct dvec { double *v; size_t n, cap; } dvec;

static int dvec_push(dvec *d, double x)
{
    return dbl_push(&d->v, &d->n, &d->cap, x);
}

/* mean/std/median/percentiles of xs (seconds), each * 1000 as vLLM does. */
static int dist_fill(bn_dist *d, const double *xs, size_t n, const double *pcts, size_t npct)
{
    d->pct = calloc(npct ? npct : 1, sizeof *d->pct);
    if (!d->pct) return PL_ERR_NOMEM;
    d->mean = bn_np_mean(xs, n) * 1000;
    d->std = bn_np_std(xs, n) * 1000;
    d->median = bn_np_median(xs, n) * 1000;
    for (size_t i = 0; i < npct; i++) d->pct[i] = bn_np_percentile(xs, n, pcts[i]) * 1000;
    return 0;
}

void bn_metrics_free(bn_metrics *m)
{
    free(m->ttft.pct);
    free(m->tpot.pct);
    free(m->itl.pct);
    free(m->e2el.pct);
    free(m->output_lens);
    memset(m, 0, sizeof *m);
}

/* Tokens per 1-second bucket and requests active per bucket, from the
 * earliest start of a successful request (vLLM's max_output_tokens_per_s and
 * max_concurrent_requests). */
static int peaks(bn_metrics *m, const bn_output *o, size_t n)
{
    double min_start = INFINITY, max_end = -INFINITY;
    size_t n_ok = 0;
    for (size_t i = 0; i < n; i++) {
        if (!o[i].success) continue;
        n_ok++;
        if (o[i].start_time < min_start) min_start = o[i].start_time;
        if (o[i].start_time + o[i].latency > max_end) max_end = o[i].start_time + o[i].latency;
    }
    if (!n_ok) return 0;
    double span = ceil(max_end - min_start);
    if (!(span >= 0) || span > 1e8) return PL_ERR_RANGE;   /* a clock gone wrong: ~3 years */
    size_t nb = (size_t)span + 1;
    double *tok = calloc(nb, sizeof *tok), *conc = calloc(nb, sizeof *conc);
    if (!tok || !conc) { free(tok); free(conc); return PL_ERR_NOMEM; }
    for (size_t i = 0; i < n; i++) {
        if (!o[i].success) continue;
        double t = o[i].start_time + o[i].ttft;
        for (size_t k = 0;; k++) {
            double b = trunc(t - min_start);    /* Python int() */
            if (b >= 0 && b < (double)nb) tok[(size_t)b] += 1;
            if (k == o[i].n_itl) break;
            t += o[i].itl[k];
        }
        double s0 = trunc(o[i].start_time - min_start), s1 = trunc((o[i].start_time + o[i].latency) - min_start);
        for (double s = s0 < 0 ? 0 : s0; s <= s1 && s < (double)nb; s++) conc[(size_t)s] += 1;
    }
    double mt = tok[0], mc = conc[0];
    for (size_t b = 1; b < nb; b++) {
        if (tok[b] > mt) mt = tok[b];
        if (conc[b] > mc) mc = conc[b];
    }
    m->max_output_tokens_per_s = mt;
    m->max_concurrent_requests = (int64_t)mc;
    free(tok);
    free(conc);
    return 0;
}

int bn_metrics_compute(bn_metrics *m, const bn_output *o, size_t n, double dur_s, const pl_tokenizer *tok,
                       const double *pcts, size_t npct, const bn_goodput *slo)
{
    memset(m, 0, sizeof *m);
    m->n = n;
    m->output_lens = calloc(n ? n : 1, sizeof *m->output_lens);
    dvec itls = {0}, tpots = {0}, all_tpots = {0}, ttfts = {0}, e2els = {0};
    int rc = m->output_lens ? 0 : PL_ERR_NOMEM;
    pl_tokids ids = {0};
    for (size_t i = 0; !rc && i < n; i++) {
        if (!o[i].success) continue;
        int64_t len = o[i].output_tokens;
        if (!len) {
            /* no usage count: vLLM re-tokenizes the text (or counts 1 without a tokenizer) */
            if (!tok) len = 1;
            else {
                ids.len = 0;
                if (pl_tokenizer_encode_ex(tok, o[i].text.data ? o[i].text.data : "", o[i].text.len, &ids, NULL, 0))
                    len = 0;
                else len = (int64_t)ids.len;
            }
        }
        m->output_lens[i] = len;
        m->total_output += len;
        m->total_input += o[i].prompt_len;
        double tpot = 0.0;
        if (len > 1) {
            tpot = (o[i].latency - o[i].ttft) / (double)(len - 1);
            rc |= dvec_push(&tpots, tpot);
        }
        rc |= dvec_push(&all_tpots, tpot);
        for (size_t k = 0; k < o[i].n_itl; k++) rc |= dvec_push(&itls, o[i].itl[k]);
        rc |= dvec_push(&ttfts, o[i].ttft);
        rc |= dvec_push(&e2els, o[i].latency);
        m->completed++;
    }
    pl_tokids_free(&ids);
    m->failed = (int64_t)n - m->completed;
    int64_t good = 0;
    if (!rc && slo && (slo->has_ttft || slo->has_tpot || slo->has_e2el)) {
        for (size_t k = 0; k < ttfts.n; k++) {
            bool ok = true;
            if (slo->has_ttft) ok &= slo->ttft_ms / 1000 >= ttfts.v[k];
            if (slo->has_tpot) ok &= slo->tpot_ms / 1000 >= all_tpots.v[k];
            if (slo->has_e2el) ok &= slo->e2el_ms / 1000 >= e2els.v[k];
            good += ok;
        }
    }
    if (!rc) rc = peaks(m, o, n);
    if (!rc) {
        m->request_throughput = (double)m->completed / dur_s;
        m->request_goodput = (double)good / dur_s;
        m->output_throughput = (double)m->total_output / dur_s;
        m->total_token_throughput = (double)(m->total_input + m->total_output) / dur_s;
        rc = dist_fill(&m->ttft, ttfts.v, ttfts.n, pcts, npct);
        if (!rc) rc = dist_fill(&m->tpot, tpots.v, tpots.n, pcts, npct);
        if (!rc) rc = dist_fill(&m->itl, itls.v, itls.n, pcts, npct);
        if (!rc) rc = dist_fill(&m->e2el, e2els.v, e2els.n, pcts, npct);
    }
    free(itls.v);
    free(tpots.v);
    free(all_tpots.v);
    free(ttfts.v);
    free(e2els.v);
    if (rc) bn_metrics_free(m);
    return rc;
}

/* ================================================================ report */

void bn_center(pl_buf *out, const char *s, char fill, int width)
{
    int len = (int)strlen(s), pad = width > len ? width - len : 0;
    for (int i = 0; i < pad / 2; i++) pl_buf_putc(out, fill);
    pl_buf_puts(out, s);
    for (int i = 0; i < pad - pad / 2; i++) pl_buf_putc(out, fill);
    pl_buf_putc(out, '\n');
}

void bn_pct_word(pl_buf *out, double p)
{
    if (p == floor(p) && fabs(p) < 1e18) pl_buf_printf(out, "%lld", (long long)p);
    else pl_py_float_repr(out, p);
}

static void line_int(pl_buf *t, const char *label, int64_t v)
{
    pl_buf_printf(t, "%-40s %-10lld\n", label, (long long)v);
}

static void line_f(pl_buf *t, const char *label, double v)
{
    pl_buf_printf(t, "%-40s %-10.2f\n", label, v);
}

static void put_f(cJSON *r, const char *k, double v) { cJSON_AddItemToObject(r, k, pl_json_float_new(v)); }
static void put_i(cJSON *r, const char *k, int64_t v) { cJSON_AddNumberToObject(r, k, (double)v); }

static bool selected(const bn_report_cfg *c, const char *name)
{
    for (size_t i = 0; i < c->n_metrics; i++)
        if (!strcmp(c->metrics[i], name)) return true;
    return false;
}

/* vLLM's process_one_metric: a section of the table and its keys. */
static int one_metric(pl_buf *t, cJSON *r, const bn_report_cfg *c, const char *attr, const char *name,
                      const char *header, const bn_dist *d)
{
    if (!selected(c, attr)) return 0;
    char label[128], key[96];
    pl_buf w;
    pl_buf_init(&w);
    bn_center(t, header, '-', 50);
    snprintf(label, sizeof label, "Mean %s (ms):", name);
    line_f(t, label, d->mean);
    snprintf(label, sizeof label, "Median %s (ms):", name);
    line_f(t, label, d->median);
    snprintf(key, sizeof key, "mean_%s_ms", attr);
    put_f(r, key, d->mean);
    snprintf(key, sizeof key, "median_%s_ms", attr);
    put_f(r, key, d->median);
    snprintf(key, sizeof key, "std_%s_ms", attr);
    put_f(r, key, d->std);
    for (size_t i = 0; i < c->npct; i++) {
        pl_buf_reset(&w);
        bn_pct_word(&w, c->pcts[i]);
        snprintf(label, sizeof label, "P%s %s (ms):", w.data, name);
        line_f(t, label, d->pct[i]);
        snprintf(key, sizeof key, "p%s_%s_ms", w.data, attr);
        /* a repeated percentile replaces its key in place, as a dict would */
        if (cJSON_GetObjectItemCaseSensitive(r, key))
            cJSON_ReplaceItemInObjectCaseSensitive(r, key, pl_json_float_new(d->pct[i]));
        else put_f(r, key, d->pct[i]);
    }
    pl_buf_free(&w);
    return 0;
}

/* A distribution of values computed on the spot (vLLM's `values=` form). */
static int list_metric(pl_buf *t, cJSON *r, const bn_report_cfg *c, const char *attr, const char *name,
                       const char *header, const double *xs, size_t nx)
{
    if (!selected(c, attr)) return 0;
    bn_dist d;
    int rc = dist_fill(&d, xs, nx, c->pcts, c->npct);
    if (!rc) rc = one_metric(t, r, c, attr, name, header, &d);
    free(d.pct);
    return rc;
}

static cJSON *float_list(const bn_output *o, size_t n, size_t off)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, pl_json_float_new(*(const double *)((const char *)&o[i] + off)));
    return a;
}

int bn_report(pl_buf *t, cJSON *r, const bn_metrics *m, const bn_output *o, size_t n, double dur_s,
              const bn_report_cfg *c)
{
    if (m->failed > 0) {
        pl_buf_puts(t, "Failed requests during benchmark run detected (capping to 10):\n");
        size_t shown = 0;
        for (size_t i = 0; i < n && shown < 10; i++)
            if (!o[i].success) pl_buf_printf(t, "Error %zu: %s\n", shown++, o[i].error ? o[i].error : "");
        /* ours: every distinct reason with its count, in order of first
         * appearance (few distinct reasons: a linear list is enough) */
        const char **why = malloc((size_t)m->failed * sizeof *why);
        size_t *cnt = calloc((size_t)m->failed, sizeof *cnt), nd = 0;
        if (why && cnt) {
            for (size_t i = 0; i < n; i++) {
                if (o[i].success) continue;
                const char *e = o[i].error ? o[i].error : "";
                size_t k = 0;
                while (k < nd && strcmp(why[k], e)) k++;
                if (k == nd) why[nd++] = e;
                cnt[k]++;
            }
            pl_buf_puts(t, "Failure reasons (count: error):\n");
            for (size_t k = 0; k < nd; k++) pl_buf_printf(t, "  %zu: %s\n", cnt[k], why[k]);
        }
        free(why);
        free(cnt);
    }
    bn_center(t, " Serving Benchmark Result ", '=', 50);
    line_int(t, "Successful requests:", m->completed);
    line_int(t, "Failed requests:", m->failed);
    if (c->has_max_concurrency) line_int(t, "Maximum request concurrency:", c->max_concurrency);
    if (!isinf(c->request_rate)) line_f(t, "Request rate configured (RPS):", c->request_rate);
    line_f(t, "Benchmark duration (s):", dur_s);
    line_int(t, "Total input tokens:", m->total_input);
    if (c->has_tokenizer) line_int(t, "Total generated tokens:", m->total_output);
    line_f(t, "Request throughput (req/s):", m->request_throughput);
    if (c->goodput) line_f(t, "Request goodput (req/s):", m->request_goodput);
    if (c->has_tokenizer) {
        line_f(t, "Output token throughput (tok/s):", m->output_throughput);
        line_f(t, "Peak output token throughput (tok/s):", m->max_output_tokens_per_s);
    }
    line_f(t, "Peak concurrent requests:", (double)m->max_concurrent_requests);
    if (c->has_tokenizer) line_f(t, "Total token throughput (tok/s):", m->total_token_throughput);

    put_f(r, "duration", dur_s);
    put_i(r, "completed", m->completed);
    put_i(r, "failed", m->failed);
    put_i(r, "total_input_tokens", m->total_input);
    put_i(r, "total_output_tokens", m->total_output);
    put_f(r, "request_throughput", m->request_throughput);
    if (c->goodput) put_f(r, "request_goodput", m->request_goodput);
    else cJSON_AddNullToObject(r, "request_goodput");
    put_f(r, "output_throughput", m->output_throughput);
    put_f(r, "total_token_throughput", m->total_token_throughput);
    /* per-request lists (main() drops all but latencies/queue_times unless --save-detailed) */
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)o[i].prompt_len));
    cJSON_AddItemToObject(r, "input_lens", a);
    a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)m->output_lens[i]));
    cJSON_AddItemToObject(r, "output_lens", a);
    cJSON_AddItemToObject(r, "ttfts", float_list(o, n, offsetof(bn_output, ttft)));
    a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *b = cJSON_CreateArray();
        for (size_t k = 0; b && k < o[i].n_itl; k++) cJSON_AddItemToArray(b, pl_json_float_new(o[i].itl[k]));
        cJSON_AddItemToArray(a, b);
    }
    cJSON_AddItemToObject(r, "itls", a);
    cJSON_AddItemToObject(r, "latencies", float_list(o, n, offsetof(bn_output, latency)));
    cJSON_AddItemToObject(r, "start_times", float_list(o, n, offsetof(bn_output, start_time)));
    cJSON_AddItemToObject(r, "queue_times", float_list(o, n, offsetof(bn_output, client_queue_time)));
    a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(o[i].text.data ? o[i].text.data : ""));
    cJSON_AddItemToObject(r, "generated_texts", a);
    a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(o[i].error ? o[i].error : ""));
    cJSON_AddItemToObject(r, "errors", a);
    put_f(r, "max_output_tokens_per_s", m->max_output_tokens_per_s);
    put_i(r, "max_concurrent_requests", m->max_concurrent_requests);
    put_f(r, "rtfx", 0.0);
    bool any_server = false;
    for (size_t i = 0; i < n; i++) any_server |= o[i].has_server_queue_time || o[i].has_server_ttft;
    if (any_server) {
        cJSON *q = cJSON_CreateArray(), *f = cJSON_CreateArray();
        for (size_t i = 0; q && f && i < n; i++) {
            cJSON_AddItemToArray(q, o[i].has_server_queue_time ? pl_json_float_new(o[i].server_queue_time) : cJSON_CreateNull());
            cJSON_AddItemToArray(f, o[i].has_server_ttft ? pl_json_float_new(o[i].server_ttft) : cJSON_CreateNull());
        }
        cJSON_AddItemToObject(r, "server_queue_times", q);
        cJSON_AddItemToObject(r, "server_ttfts", f);
    }
    const bn_spec_stats *sp = c->spec;
    if (sp) {
        put_f(r, "spec_decode_acceptance_rate", sp->acceptance_rate);
        put_f(r, "spec_decode_acceptance_length", sp->acceptance_length);
        put_i(r, "spec_decode_num_drafts", sp->num_drafts);
        put_i(r, "spec_decode_draft_tokens", sp->draft_tokens);
        put_i(r, "spec_decode_accepted_tokens", sp->accepted_tokens);
        a = cJSON_CreateArray();
        for (size_t i = 0; a && i < sp->n_pos; i++) cJSON_AddItemToArray(a, pl_json_float_new(sp->per_pos[i]));
        cJSON_AddItemToObject(r, "spec_decode_per_position_acceptance_rates", a);
    }

    int rc = 0;
    if (c->has_tokenizer) {
        rc |= one_metric(t, r, c, "ttft", "TTFT", "Time to First Token", &m->ttft);
        rc |= one_metric(t, r, c, "tpot", "TPOT", "Time per Output Token (excl. 1st token)", &m->tpot);
        rc |= one_metric(t, r, c, "itl", "ITL", "Inter-token Latency", &m->itl);
    }
    rc |= one_metric(t, r, c, "e2el", "E2EL", "End-to-end Latency", &m->e2el);
    if (c->has_max_concurrency) {
        /* client-side queueing: only successful requests */
        double *q = malloc((n ? n : 1) * sizeof *q), *e = malloc((n ? n : 1) * sizeof *e);
        size_t k = 0;
        if (!q || !e) rc = PL_ERR_NOMEM;
        for (size_t i = 0; !rc && i < n; i++)
            if (o[i].success) {
                q[k] = o[i].client_queue_time;
                e[k] = o[i].latency + o[i].client_queue_time;
                k++;
            }
        if (!rc) rc = list_metric(t, r, c, "client_queue_time", "Client Queue Time", "Client-side Queueing", q, k);
        if (!rc && !isinf(c->request_rate))
            rc = list_metric(t, r, c, "e2el_including_client_queue", "E2EL incl. Client Queue",
                             "Queue-inclusive End-to-end Latency", e, k);
        free(q);
        free(e);
    }
    if (sp) {
        bn_center(t, "Speculative Decoding", '-', 50);
        line_f(t, "Acceptance rate (%):", sp->acceptance_rate);
        line_f(t, "Acceptance length:", sp->acceptance_length);
        line_int(t, "Drafts:", sp->num_drafts);
        line_int(t, "Draft tokens:", sp->draft_tokens);
        line_int(t, "Accepted tokens:", sp->accepted_tokens);
        if (sp->n_pos) {
            pl_buf_puts(t, "Per-position acceptance (%):\n");
            for (size_t i = 0; i < sp->n_pos; i++) {
                char label[48];
                snprintf(label, sizeof label, "  Position %zu:", i);
                line_f(t, label, sp->per_pos[i] * 100);
            }
        }
    }
    pl_buf_puts(t, "==================================================\n");
    if (!pl_buf_ok(t)) rc = PL_ERR_NOMEM;
    return rc;
}
