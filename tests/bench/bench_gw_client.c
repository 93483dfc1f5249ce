/* bench_gw_client.c — a load generator for glm-gateway's streams, in C so
 * the client is not what the benchmark measures.
 *
 *   bench_gw_client --port P --conns N [--requests R] [--max-tokens T]
 *                   [--prompt TEXT] [--samples FILE] [--ramp-ms MS]
 *                   [--api completions|chat|messages|responses]
 *
 * N connections (opened over --ramp-ms), each sending R streaming
 * /v1/completions requests one after another on keep-alive, with
 * stream_options.continuous_usage_stats so every chunk says how many tokens
 * it completes. Responses are parsed by http-parser (chunked decoding); the
 * SSE events are split on blank lines and `"completion_tokens":N` read from
 * each. With --samples, every chunk writes "request_id tokens unix_time"
 * (the request id is cmpl-b<conn>-<k>, matching glm-replay --emit-log).
 * --api chat streams /v1/chat/completions (usage in the last chunk only),
 * --api messages streams Anthropic's /v1/messages (the token count is the
 * final message_delta's output_tokens), --api responses /v1/responses (the
 * count is response.completed's output_tokens): to compare the gateway's
 * cost per token between APIs (docs/perf.md).
 * Prints one summary line: requests ok/failed, tokens, seconds, tokens/s,
 * peak concurrent streams. */
#include <getopt.h>
#include <http_parser.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

typedef struct bc_conn {
    uv_tcp_t      tcp;
    uv_connect_t  creq;
    uv_write_t    wreq;
    http_parser   hp;
    int           idx, done_reqs;
    char          rid[64];
    char         *ev;              /* SSE bytes not yet split into events */
    size_t        evlen, evcap;
    long          last_tokens;
    int           status;
    char          req[1024];
} bc_conn;

static struct {
    uv_loop_t *loop;
    int        port, conns, requests, max_tokens, ramp_ms;
    const char *prompt, *api;
    FILE      *samples;
    long       ok, failed, tokens, open_streams, peak_streams, started;
    double     t0, t_end;
    uv_timer_t ramp;
} B;

static http_parser_settings g_set;

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void send_request(bc_conn *c);

static void on_closed(uv_handle_t *h) { (void)h; }

static void finish_conn(bc_conn *c, bool failed)
{
    if (failed) B.failed += B.requests - c->done_reqs;
    if (B.open_streams > 0 && failed) B.open_streams--;
    B.t_end = wall();
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void event(bc_conn *c, const char *e, size_t n)
{
    if (n >= 12 && !memcmp(e, "data: [DONE]", 12)) return;
    const char *k = memmem(e, n, "\"completion_tokens\":", 20);
    long t;
    if (k) t = strtol(k + 20, NULL, 10);
    else if ((k = memmem(e, n, "\"output_tokens\":", 16))) t = strtol(k + 16, NULL, 10);
    else return;
    if (B.samples && t > c->last_tokens) fprintf(B.samples, "%s %ld %.6f\n", c->rid, t, wall());
    c->last_tokens = t;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    bc_conn *c = p->data;
    if (c->evlen + len > c->evcap) {
        c->evcap = (c->evlen + len) * 2;
        c->ev = realloc(c->ev, c->evcap);
    }
    memcpy(c->ev + c->evlen, at, len);
    c->evlen += len;
    size_t off = 0;
    for (;;) {
        char *sep = memmem(c->ev + off, c->evlen - off, "\n\n", 2);
        if (!sep) break;
        event(c, c->ev + off, (size_t)(sep - (c->ev + off)));
        off = (size_t)(sep - c->ev) + 2;
    }
    memmove(c->ev, c->ev + off, c->evlen - off);
    c->evlen -= off;
    return 0;
}

static int on_headers(http_parser *p)
{
    bc_conn *c = p->data;
    c->status = p->status_code;
    return 0;
}

static int on_complete(http_parser *p)
{
    bc_conn *c = p->data;
    B.open_streams--;
    if (c->status == 200) { B.ok++; B.tokens += c->last_tokens; }
    else B.failed++;
    c->done_reqs++;
    if (c->done_reqs < B.requests) send_request(c);
    else finish_conn(c, false);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t sug, uv_buf_t *buf)
{
    (void)h;
    static char slab[65536];
    (void)sug;
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    bc_conn *c = s->data;
    if (n < 0) { finish_conn(c, c->done_reqs < B.requests); return; }
    size_t k = http_parser_execute(&c->hp, &g_set, buf->base, (size_t)n);
    if (HTTP_PARSER_ERRNO(&c->hp) != HPE_OK || k != (size_t)n) finish_conn(c, true);
}

static void on_written(uv_write_t *w, int status)
{
    if (status < 0) finish_conn(w->data, true);
}

static void send_request(bc_conn *c)
{
    snprintf(c->rid, sizeof c->rid, "cmpl-b%d-%d", c->idx, c->done_reqs);
    char body[512];
    const char *path = "/v1/completions";
    int bl;
    if (!strcmp(B.api, "chat")) {
        path = "/v1/chat/completions";
        bl = snprintf(body, sizeof body,
                      "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true}}", B.prompt, B.max_tokens);
    } else if (!strcmp(B.api, "messages")) {
        path = "/v1/messages";
        bl = snprintf(body, sizeof body,
                      "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,"
                      "\"stream\":true}", B.prompt, B.max_tokens);
    } else if (!strcmp(B.api, "responses")) {
        path = "/v1/responses";
        bl = snprintf(body, sizeof body, "{\"model\":\"tiny\",\"input\":\"%s\",\"max_output_tokens\":%d,\"stream\":true}",
                      B.prompt, B.max_tokens);
    } else {
        bl = snprintf(body, sizeof body,
                      "{\"prompt\":\"%s\",\"max_tokens\":%d,\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true,\"continuous_usage_stats\":true}}",
                      B.prompt, B.max_tokens);
    }
    int n = snprintf(c->req, sizeof c->req,
                     "POST %s HTTP/1.1\r\nHost: bench\r\nX-Request-Id: b%d-%d\r\n"
                     "content-type: application/json\r\ncontent-length: %d\r\n\r\n%s",
                     path, c->idx, c->done_reqs, bl, body);
    c->last_tokens = 0;
    c->evlen = 0;
    http_parser_init(&c->hp, HTTP_RESPONSE);
    c->hp.data = c;
    uv_buf_t b = uv_buf_init(c->req, (unsigned)n);
    c->wreq.data = c;
    B.open_streams++;
    if (B.open_streams > B.peak_streams) B.peak_streams = B.open_streams;
    uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
}

static void on_connect(uv_connect_t *r, int status)
{
    bc_conn *c = r->data;
    if (status < 0) {
        fprintf(stderr, "connect %d: %s\n", c->idx, uv_strerror(status));
        B.failed += B.requests;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    send_request(c);
}

static bc_conn *g_conns;

static void open_one(int i)
{
    bc_conn *c = &g_conns[i];
    c->idx = i;
    uv_tcp_init(B.loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", B.port, &a);
    uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&a, on_connect);
}

static void on_ramp(uv_timer_t *t)
{
    /* open connections in even slices over ramp_ms */
    double frac = (wall() - B.t0) * 1000.0 / (B.ramp_ms > 0 ? B.ramp_ms : 1);
    long want = frac >= 1 ? B.conns : (long)(frac * B.conns);
    while (B.started < want) open_one((int)B.started++);
    if (B.started >= B.conns) uv_timer_stop(t);
}

int main(int argc, char **argv)
{
    B.conns = 64;
    B.requests = 1;
    B.max_tokens = 100;
    B.prompt = "bench";
    B.api = "completions";
    static const struct option o[] = {
        {"port", 1, 0, 'p'}, {"conns", 1, 0, 'c'}, {"requests", 1, 0, 'r'}, {"max-tokens", 1, 0, 't'},
        {"prompt", 1, 0, 'P'}, {"samples", 1, 0, 's'}, {"ramp-ms", 1, 0, 'R'}, {"api", 1, 0, 'A'}, {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
        switch (ch) {
        case 'p': B.port = atoi(optarg); break;
        case 'c': B.conns = atoi(optarg); break;
        case 'r': B.requests = atoi(optarg); break;
        case 't': B.max_tokens = atoi(optarg); break;
        case 'P': B.prompt = optarg; break;
        case 's': B.samples = fopen(optarg, "w"); break;
        case 'R': B.ramp_ms = atoi(optarg); break;
        case 'A': B.api = optarg; break;
        default: return 2;
        }
    }
    if (!B.port || B.conns < 1) { fprintf(stderr, "usage: bench_gw_client --port P --conns N ...\n"); return 2; }
    http_parser_settings_init(&g_set);
    g_set.on_body = on_body;
    g_set.on_headers_complete = on_headers;
    g_set.on_message_complete = on_complete;
    B.loop = uv_default_loop();
    g_conns = calloc((size_t)B.conns, sizeof *g_conns);
    B.t0 = wall();
    uv_timer_init(B.loop, &B.ramp);
    uv_timer_start(&B.ramp, on_ramp, 0, 5);
    uv_run(B.loop, UV_RUN_DEFAULT);
    double secs = B.t_end - B.t0;
    printf("requests_ok %ld requests_failed %ld tokens %ld seconds %.3f tokens_per_s %.0f peak_streams %ld\n",
           B.ok, B.failed, B.tokens, secs, secs > 0 ? (double)B.tokens / secs : 0.0, B.peak_streams);
    if (B.samples) fclose(B.samples);
    for (int i = 0; i < B.conns; i++) free(g_conns[i].ev);
    free(g_conns);
    return B.failed ? 1 : 0;
}
