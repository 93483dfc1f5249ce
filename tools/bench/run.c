/* run.c — sending the workload and measuring each stream as vLLM does.
 *
 * Arrivals: vLLM's get_request — gamma(shape=burstiness, scale=1/(rate*
 * burstiness)) gaps from the legacy numpy RandomState (Poisson for
 * burstiness 1), cumulated, then rescaled so the last arrival falls at
 * num_prompts/rate; ramp-up varies the rate per request instead.
 *
 * Per message (vllm/benchmarks/lib/endpoint_request_func.py):
 *   completions: a message with a non-empty `choices` counts (its text may
 *                be empty); the latency ends at the last such message.
 *   chat:        a message counts when choices[0].delta carries output
 *                (content, reasoning, tool_calls or function_call; or an
 *                empty content without a role); the opening role chunk does
 *                not count; the latency ends at the last counted message.
 *   both:        the first counted message gives TTFT, each later one an ITL
 *                sample; a `usage` object (on a message without choices)
 *                gives output_tokens and replaces prompt_len with
 *                prompt_tokens; SSE comments (":...") and [DONE] are skipped;
 *                a message that is not JSON fails the request.
 *
 * Concurrency: requests that arrive while max_concurrency are in flight wait
 * in arrival order (asyncio's semaphore); client_queue_time is that wait. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "json.h"
#include "pyjson.h"

/* ================================================================ arrivals */

int bn_arrivals(double *delay, double *rate, size_t n, const bn_run_cfg *c, bn_mt *m)
{
    if (!(c->burstiness > 0)) return PL_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        double r = c->request_rate;
        if (c->ramp != BN_RAMP_NONE) {
            double progress = (double)i / (double)(n > 1 ? n - 1 : 1);
            if (c->ramp == BN_RAMP_LINEAR) r = c->ramp_start + (c->ramp_end - c->ramp_start) * progress;
            else r = c->ramp_start * pow(c->ramp_end / c->ramp_start, progress);
        }
        if (!(r > 0)) return PL_ERR_INVALID;
        rate[i] = r;
        if (isinf(r)) delay[i] = 0;
        else if (isinf(c->burstiness)) delay[i] = 1.0 / r;
        else delay[i] = bn_mt_gamma(m, c->burstiness, 1.0 / (r * c->burstiness));
    }
    for (size_t i = 1; i < n; i++) delay[i] += delay[i - 1];
    if (c->ramp == BN_RAMP_NONE && n && delay[n - 1] != 0) {
        /* fixed rate: the last request goes out at exactly n / rate */
        double factor = ((double)n / c->request_rate) / delay[n - 1];
        for (size_t i = 0; i < n; i++) delay[i] = delay[i] * factor;
    }
    return 0;
}

/* ================================================================ payload */

/* dict.update: an existing key keeps its place, a new one goes last. */
static void merge_into(cJSON *obj, const cJSON *extra)
{
    for (const cJSON *e = extra ? extra->child : NULL; e; e = e->next) {
        cJSON *dup = cJSON_Duplicate(e, 1);
        if (cJSON_GetObjectItemCaseSensitive(obj, e->string)) cJSON_ReplaceItemInObjectCaseSensitive(obj, e->string, dup);
        else cJSON_AddItemToObject(obj, e->string, dup);
    }
}

int bn_request_body(pl_buf *out, const bn_run_cfg *c, const bn_sample *s)
{
    cJSON *p = cJSON_CreateObject();
    if (!p) return PL_ERR_NOMEM;
    cJSON_AddStringToObject(p, "model", c->model);
    if (c->backend == BN_BACKEND_COMPLETIONS) {
        cJSON_AddItemToObject(p, "prompt", pl_json_string_new(s->prompt, s->prompt_bytes));   /* may hold NUL */
        cJSON_AddItemToObject(p, "repetition_penalty", pl_json_float_new(1.0));
        cJSON_AddNumberToObject(p, "max_tokens", (double)s->output_len);
        if (c->has_logprobs) cJSON_AddNumberToObject(p, "logprobs", (double)c->logprobs);
        else cJSON_AddNullToObject(p, "logprobs");
    } else {
        cJSON *msgs = cJSON_AddArrayToObject(p, "messages"), *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON *content = cJSON_AddArrayToObject(m, "content"), *part = cJSON_CreateObject();
        cJSON_AddStringToObject(part, "type", "text");
        cJSON_AddItemToObject(part, "text", pl_json_string_new(s->prompt, s->prompt_bytes));
        cJSON_AddItemToArray(content, part);
        cJSON_AddItemToArray(msgs, m);
        cJSON_AddNumberToObject(p, "max_completion_tokens", (double)s->output_len);
    }
    cJSON_AddTrueToObject(p, "stream");
    cJSON *so = cJSON_AddObjectToObject(p, "stream_options");
    cJSON_AddTrueToObject(so, "include_usage");
    if (c->ignore_eos) cJSON_AddTrueToObject(p, "ignore_eos");
    merge_into(p, c->extra_body);
    /* aiohttp's json= is json.dumps: ASCII-escaped, ", " and ": " separators */
    pl_pyjson_opts o = PL_PYJSON_DEFAULT;
    o.ensure_ascii = 1;
    pl_buf_reset(out);
    int rc = pl_pyjson_dump(out, p, &o);
    cJSON_Delete(p);
    return rc ? rc : pl_buf_ok(out) ? 0 : PL_ERR_NOMEM;
}

/* ================================================================ stream rules */

void bn_stream_init(bn_stream *s, enum bn_backend b, bn_output *out, double st)
{
    memset(s, 0, sizeof *s);
    s->backend = b;
    s->out = out;
    s->st = s->recent = st;
    s->now = bn_now;
    out->start_time = st;
}

/* Python truthiness of a JSON value. */
static bool truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return false;
    if (cJSON_IsTrue(v)) return true;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring[0] != 0;
    return v->child != NULL;   /* array / object */
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

/* _choice_has_streamed_output */
static bool chat_has_output(const cJSON *choice)
{
    const cJSON *d = get(choice, "delta");
    if (!cJSON_IsObject(d)) return false;
    const cJSON *content = get(d, "content");
    if (truthy(content) || truthy(get(d, "reasoning")) || truthy(get(d, "tool_calls")) ||
        truthy(get(d, "function_call")))
        return true;
    /* a token that decodes to "" (a skipped special token) still counts; the
     * opening chunk carries the role */
    return cJSON_IsString(content) && !content->valuestring[0] && !get(d, "role");
}

static void server_metrics(bn_output *o, const cJSON *data)
{
    const cJSON *m = get(data, "metrics");
    if (!cJSON_IsObject(m)) return;
    const cJSON *q = get(m, "queue_time_ms"), *t = get(m, "time_to_first_token_ms");
    o->has_server_queue_time = cJSON_IsNumber(q);
    if (o->has_server_queue_time) o->server_queue_time = q->valuedouble / 1000.0;
    o->has_server_ttft = cJSON_IsNumber(t);
    if (o->has_server_ttft) o->server_ttft = t->valuedouble / 1000.0;
}

static int count_message(bn_stream *s, double ts, const cJSON *text)
{
    bn_output *o = s->out;
    if (!s->first) {
        s->first = true;
        o->ttft = ts - s->st;
    } else if (bn_output_add_itl(o, ts - s->recent)) {
        return PL_ERR_NOMEM;
    }
    s->recent = ts;
    s->counted++;
    if (cJSON_IsString(text)) {
        /* bounded: a server that never stops must not take all memory */
        size_t n = strlen(text->valuestring);
        if (o->text.len + n > BN_MAX_TEXT) return PL_ERR_TOOLONG;
        pl_buf_append(&o->text, text->valuestring, n);
        if (!pl_buf_ok(&o->text)) return PL_ERR_NOMEM;
    }
    return 0;
}

int bn_stream_message(bn_stream *s, const char *msg, size_t len, char *err, size_t errlen)
{
    if (len && msg[0] == ':') return 0;   /* SSE comment (keep-alive ping) */
    if (len >= 6 && !memcmp(msg, "data: ", 6)) { msg += 6; len -= 6; }
    if (len == 6 && !memcmp(msg, "[DONE]", 6)) return 0;
    /* the chat client reads the clock before parsing, for every message */
    double ts = s->backend == BN_BACKEND_CHAT ? s->now() : 0;
    cJSON *data = NULL;
    char perr[160];
    int rc = pl_json_parse(&data, msg, len, perr, sizeof perr);
    if (rc) return pl_seterr(err, errlen, PL_ERR_PARSE, "invalid JSON in the event stream: %s", perr);
    if (!cJSON_IsObject(data)) {
        cJSON_Delete(data);
        return pl_seterr(err, errlen, PL_ERR_PARSE, "an event-stream message is not a JSON object");
    }
    bn_output *o = s->out;
    server_metrics(o, data);
    const cJSON *choices = get(data, "choices"), *usage = get(data, "usage");
    bool counted = false;
    if (truthy(choices)) {
        const cJSON *c0 = cJSON_IsArray(choices) ? choices->child : NULL;
        if (!cJSON_IsObject(c0)) {
            cJSON_Delete(data);
            return pl_seterr(err, errlen, PL_ERR_PARSE, "'choices' is not a list of objects");
        }
        if (s->backend == BN_BACKEND_COMPLETIONS) {
            /* the completions client reads the clock after parsing, only here */
            rc = count_message(s, s->now(), get(c0, "text"));
            counted = true;
        } else if (chat_has_output(c0)) {
            rc = count_message(s, ts, get(get(c0, "delta"), "content"));
            counted = true;
        }
    }
    if (!rc && !counted && truthy(usage)) {
        if (!cJSON_IsObject(usage)) {
            cJSON_Delete(data);
            return pl_seterr(err, errlen, PL_ERR_PARSE, "'usage' is not an object");
        }
        const cJSON *ct = get(usage, "completion_tokens"), *pt = get(usage, "prompt_tokens");
        o->output_tokens = cJSON_IsNumber(ct) && ct->valuedouble >= 0 && ct->valuedouble < 1e15 ? (int64_t)ct->valuedouble : 0;
        if (cJSON_IsNumber(pt) && pt->valuedouble >= 0 && pt->valuedouble < 1e15) o->prompt_len = (int64_t)pt->valuedouble;
    }
    cJSON_Delete(data);
    if (rc == PL_ERR_NOMEM) return pl_seterr(err, errlen, rc, "out of memory");
    if (rc == PL_ERR_TOOLONG) return pl_seterr(err, errlen, rc, "generated text exceeds %d MiB", BN_MAX_TEXT >> 20);
    return rc;
}

void bn_stream_finish(bn_stream *s)
{
    bn_output *o = s->out;
    o->latency = s->recent - s->st;
    if (s->first) {
        o->success = true;
    } else {
        bn_output_set_error(o, "Never received a valid chunk to calculate TTFT.This response will be marked as failed!");
    }
}

void bn_stream_fail(bn_stream *s, const char *msg)
{
    /* vLLM: an exception keeps ttft and itl but sets no latency and no text */
    bn_output_set_error(s->out, "%s", msg);
    s->out->latency = 0;
    pl_buf_reset(&s->out->text);
}

/* ================================================================ runner */

typedef struct bn_runner bn_runner;

typedef struct bn_flight {        /* one request on the wire */
    bn_runner *r;
    size_t     idx;
    bn_stream  st;
    bn_sse     sse;
    int        status;
    pl_buf     errbody;           /* a non-200 answer, for the error message */
    char       reason[64];
    char       err[256];
} bn_flight;

struct bn_runner {
    uv_loop_t         *loop;
    bn_http           *http;
    const bn_dataset  *d;
    const double      *delay;
    const bn_run_cfg  *c;
    bn_output         *outs;
    size_t             n, next_arrival, done, in_flight;
    size_t            *queue;     /* arrived, waiting for a slot: ring of n */
    size_t             q_head, q_len;
    double            *arrival;
    double             t0, t_end;
    bool               pumping, finished;
    uv_timer_t         arrive_timer, progress_timer;
    pl_buf             body, headers;
    size_t             counted, counted_last;
    double             progress_last;
    int                fatal;
    char              *errp;
    size_t             errlen;
};

static void progress_draw(bn_runner *r, bool final);

static int sse_cb(void *ud, const char *msg, size_t len)
{
    bn_flight *f = ud;
    size_t before = f->st.counted;
    int rc = bn_stream_message(&f->st, msg, len, f->err, sizeof f->err);
    f->r->counted += f->st.counted - before;
    return rc;
}

static int on_head(void *ud, int status, const char *reason)
{
    bn_flight *f = ud;
    f->status = status;
    snprintf(f->reason, sizeof f->reason, "%s", reason);
    return 0;
}

static int on_body(void *ud, const char *p, size_t n)
{
    bn_flight *f = ud;
    if (f->status != 200) {
        size_t room = f->errbody.len < 4096 ? 4096 - f->errbody.len : 0;
        pl_buf_append(&f->errbody, p, n < room ? n : room);
        return 0;
    }
    int rc = bn_sse_feed(&f->sse, p, n, sse_cb, f);
    if (rc && !f->err[0]) {
        if (rc == PL_ERR_TOOLONG) snprintf(f->err, sizeof f->err, "an event-stream message exceeds %zu bytes", f->sse.max);
        else if (rc == PL_ERR_PARSE) snprintf(f->err, sizeof f->err, "invalid UTF-8 in the event stream");
        else snprintf(f->err, sizeof f->err, "%s", pl_strerror(rc));
    }
    return rc;
}

/* "HTTP 400 Bad Request: <error.message>" from an OpenAI-style error body. */
static void http_error(bn_flight *f)
{
    const char *msg = NULL;
    cJSON *j = NULL;
    if (f->errbody.len && !pl_json_parse(&j, f->errbody.data, f->errbody.len, NULL, 0)) {
        const cJSON *e = get(j, "error");
        const cJSON *m = get(e, "message");
        if (!cJSON_IsString(m)) m = get(j, "message");
        if (!cJSON_IsString(m) && cJSON_IsString(e)) m = e;
        if (!cJSON_IsString(m)) m = get(j, "detail");
        if (cJSON_IsString(m)) msg = m->valuestring;
    }
    bn_output *o = &f->r->outs[f->idx];
    if (msg) bn_output_set_error(o, "HTTP %d %s: %.300s", f->status, f->reason, msg);
    else bn_output_set_error(o, "HTTP %d %s", f->status, f->reason);
    cJSON_Delete(j);
}

static void pump(bn_runner *r);

static void run_finish(bn_runner *r)
{
    r->finished = true;
    r->t_end = bn_now();
    uv_timer_stop(&r->arrive_timer);
    if (r->c->progress != BN_PROGRESS_NONE) {
        uv_timer_stop(&r->progress_timer);
        progress_draw(r, true);
    }
    uv_stop(r->loop);
}

static void on_done(void *ud, int err, const char *msg)
{
    bn_flight *f = ud;
    bn_runner *r = f->r;
    if (err) bn_stream_fail(&f->st, f->err[0] ? f->err : msg ? msg : pl_strerror(err));
    else if (f->status != 200) http_error(f);
    else bn_stream_finish(&f->st);
    bn_sse_free(&f->sse);
    pl_buf_free(&f->errbody);
    free(f);
    r->in_flight--;
    r->done++;
    if (r->done == r->n) run_finish(r);
    else pump(r);
}

static void start(bn_runner *r, size_t i)
{
    const bn_sample *s = &r->d->s[i];
    bn_output *o = &r->outs[i];
    o->prompt_len = s->prompt_len;
    bn_flight *f = calloc(1, sizeof *f);
    int rc = f ? bn_request_body(&r->body, r->c, s) : PL_ERR_NOMEM;
    pl_buf_reset(&r->headers);
    if (r->c->headers) pl_buf_puts(&r->headers, r->c->headers);
    pl_buf_printf(&r->headers, "x-request-id: %s\r\n", s->request_id);
    r->in_flight++;
    if (rc || !pl_buf_ok(&r->headers)) {
        free(f);
        bn_output_set_error(o, "cannot build the request: %s", pl_strerror(rc ? rc : PL_ERR_NOMEM));
        r->in_flight--;
        r->done++;
        if (r->done == r->n) run_finish(r);
        return;
    }
    f->r = r;
    f->idx = i;
    bn_sse_init(&f->sse, 64u << 20);
    pl_buf_init(&f->errbody);
    double st = bn_now();
    bn_stream_init(&f->st, r->c->backend, o, st);
    o->client_queue_time = st - r->arrival[i];
    static const bn_http_cb cb = {on_head, on_body, on_done};
    rc = bn_http_send(r->http, "POST", r->c->path, r->headers.data, r->body.data, r->body.len, r->c->timeout_s, &cb, f);
    if (rc) on_done(f, rc, "cannot send the request");
}

/* Start waiting requests while slots are free. A request that fails at once
 * calls on_done (and so pump) from inside start: the flag keeps that from
 * recursing; this loop picks the work up. */
static void pump(bn_runner *r)
{
    if (r->pumping) return;
    r->pumping = true;
    while (r->q_len && (!r->c->max_concurrency || r->in_flight < (size_t)r->c->max_concurrency)) {
        size_t i = r->queue[r->q_head];
        r->q_head = (r->q_head + 1) % r->n;
        r->q_len--;
        start(r, i);
    }
    r->pumping = false;
}

static void on_arrive(uv_timer_t *t)
{
    bn_runner *r = t->data;
    double now = bn_now();
    /* everything due (within half a millisecond: the timer's resolution) */
    while (r->next_arrival < r->n && r->t0 + r->delay[r->next_arrival] <= now + 0.0005) {
        size_t i = r->next_arrival++;
        r->arrival[i] = now;
        r->queue[(r->q_head + r->q_len) % r->n] = i;
        r->q_len++;
        pump(r);
        now = bn_now();
    }
    if (r->next_arrival < r->n && !r->finished) {
        uv_update_time(r->loop);
        double wait = r->t0 + r->delay[r->next_arrival] - bn_now();
        uint64_t ms = wait > 0 ? (uint64_t)ceil(wait * 1000) : 0;
        uv_timer_start(&r->arrive_timer, on_arrive, ms, 0);
    }
}

/* ================================================================ progress */

static void fmt_hms(char *b, size_t n, double s)
{
    long t = s > 0 ? (long)s : 0;
    if (t >= 3600) snprintf(b, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(b, n, "%02ld:%02ld", t / 60, t % 60);
}

static void progress_draw(bn_runner *r, bool final)
{
    double now = final ? r->t_end : bn_now(), el = now - r->t0;
    double dt = now - r->progress_last;
    double tok_rate = dt > 0 ? (double)(r->counted - r->counted_last) / dt : 0;
    if (final) tok_rate = el > 0 ? (double)r->counted / el : 0;
    r->progress_last = now;
    r->counted_last = r->counted;
    double req_rate = el > 0 ? (double)r->done / el : 0;
    char e[64];
    fmt_hms(e, sizeof e, el);
    if (r->c->progress == BN_PROGRESS_BAR) {
        int width = 30, fill = r->n ? (int)((double)r->done / (double)r->n * width) : width;
        char bar[3 * 30 + 1], *p = bar;
        for (int i = 0; i < width; i++) p += i < fill ? sprintf(p, "\xe2\x96\x88") : sprintf(p, " ");
        fprintf(stderr, "\r%3d%%|%s| %zu/%zu [%s, %.2f req/s, %.0f tok/s, %zu running]\x1b[K%s",
                r->n ? (int)(100.0 * (double)r->done / (double)r->n) : 100, bar, r->done, r->n, e, req_rate, tok_rate,
                r->in_flight, final ? "\n" : "");
    } else {
        fprintf(stderr, "glm-bench: %zu/%zu requests done, %zu running, %s elapsed, %.2f req/s, %.0f tok/s%s\n", r->done,
                r->n, r->in_flight, e, req_rate, tok_rate, final ? " (whole run)" : "");
    }
    fflush(stderr);
}

static void on_progress(uv_timer_t *t)
{
    progress_draw(t->data, false);
}

int bn_run(uv_loop_t *loop, bn_http *http, const bn_dataset *d, const double *delay, const bn_run_cfg *c,
           bn_output *outs, double *dur_s, char *err, size_t errlen)
{
    bn_runner r;
    memset(&r, 0, sizeof r);
    r.loop = loop;
    r.http = http;
    r.d = d;
    r.delay = delay;
    r.c = c;
    r.outs = outs;
    r.n = d->n;
    r.errp = err;
    r.errlen = errlen;
    *dur_s = 0;
    if (!r.n) return 0;
    r.queue = malloc(r.n * sizeof *r.queue);
    r.arrival = calloc(r.n, sizeof *r.arrival);
    if (!r.queue || !r.arrival) {
        free(r.queue);
        free(r.arrival);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    pl_buf_init(&r.body);
    pl_buf_init(&r.headers);
    uv_timer_init(loop, &r.arrive_timer);
    r.arrive_timer.data = &r;
    uv_timer_init(loop, &r.progress_timer);
    r.progress_timer.data = &r;
    uv_update_time(loop);
    r.t0 = r.progress_last = bn_now();
    if (c->progress != BN_PROGRESS_NONE) {
        uint64_t every = c->progress == BN_PROGRESS_BAR ? 200 : 10000;
        uv_timer_start(&r.progress_timer, on_progress, every, every);
    }
    on_arrive(&r.arrive_timer);
    /* uv_run also returns for a uv_stop left over from an earlier phase */
    while (!r.finished && uv_run(loop, UV_RUN_DEFAULT)) {}
    if (!r.finished) r.t_end = bn_now();   /* the loop ran dry: should not happen */
    *dur_s = r.t_end - r.t0;
    uv_timer_stop(&r.arrive_timer);
    uv_timer_stop(&r.progress_timer);
    uv_close((uv_handle_t *)&r.arrive_timer, NULL);
    uv_close((uv_handle_t *)&r.progress_timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT);   /* run the close callbacks: r lives on this stack */
    free(r.queue);
    free(r.arrival);
    pl_buf_free(&r.body);
    pl_buf_free(&r.headers);
    if (r.done != r.n) return pl_seterr(err, errlen, PL_ERR_INTERNAL, "the event loop stopped with requests in flight");
    return 0;
}

/* ================================================================ plain fetch */

typedef struct bn_fetcher {
    uv_loop_t *loop;
    pl_buf    *resp;
    size_t     max;
    int        status, err;
    bool       done, too_big;
    char       msg[256];
} bn_fetcher;

static int f_head(void *ud, int status, const char *reason)
{
    ((bn_fetcher *)ud)->status = status;
    return 0;
}

static int f_body(void *ud, const char *p, size_t n)
{
    bn_fetcher *f = ud;
    if (f->resp->len + n > f->max) { f->too_big = true; return PL_ERR_TOOLONG; }
    pl_buf_append(f->resp, p, n);
    return pl_buf_ok(f->resp) ? 0 : PL_ERR_NOMEM;
}

static void f_done(void *ud, int err, const char *msg)
{
    bn_fetcher *f = ud;
    f->done = true;
    f->err = err;
    if (err) snprintf(f->msg, sizeof f->msg, "%s", f->too_big ? "response too large" : msg ? msg : pl_strerror(err));
    uv_stop(f->loop);
}

int bn_fetch(uv_loop_t *loop, bn_http *http, const char *method, const char *path, const char *headers,
             const char *body, size_t body_len, size_t max, int *status, pl_buf *resp, char *err, size_t errlen)
{
    bn_fetcher f = {.loop = loop, .resp = resp, .max = max};
    pl_buf_reset(resp);
    static const bn_http_cb cb = {f_head, f_body, f_done};
    int rc = bn_http_send(http, method, path, headers, body, body_len, 600, &cb, &f);
    if (rc) return pl_seterr(err, errlen, rc, "%s %s: cannot send", method, path);
    while (!f.done && uv_run(loop, UV_RUN_DEFAULT)) {}
    if (!f.done) return pl_seterr(err, errlen, PL_ERR_INTERNAL, "%s %s: the event loop ran dry", method, path);
    *status = f.status;
    if (f.err) return pl_seterr(err, errlen, f.err, "%s %s: %s", method, path, f.msg);
    return 0;
}
