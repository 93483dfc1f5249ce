/* http.c — HTTP/1.1 connections on libuv, parsed by http-parser.
 *
 * One request at a time per connection: when a request is complete the
 * parser is paused and the bytes after it (pipelined requests) wait in
 * `in` until the response is finished, so responses leave in request order.
 * While a request is answered the connection keeps reading (a closed socket
 * is how a client's disconnect shows), up to a bound on buffered input.
 *
 * Writes: at most one uv_write in flight. New bytes collect in `out`; when
 * nothing is in flight they go out with uv_try_write, and what the kernel
 * does not take becomes the next uv_write. A write in flight is the
 * back-pressure signal api.c uses to hold stream output (coalescing it)
 * until the client has read what it was sent.
 *
 * Timeouts (one timer per connection): an idle keep-alive connection is
 * closed after --keepalive-timeout; a request's headers must be complete
 * within --header-timeout of its first byte (a slowloris client cannot keep
 * a connection by trickling bytes); a body may not pause longer than
 * --body-timeout; a write that makes no progress for --write-timeout drops
 * the connection (checked by gw_http_sweep). */
#include "gw_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define READ_CHUNK     (64u * 1024)
#define IN_BACKLOG_MAX (1u << 20)   /* pipelined bytes buffered while busy */

static http_parser_settings g_settings;

/* ================================================================ helpers */

static uint64_t ms_of(double s) { return s <= 0 ? 0 : (uint64_t)(s * 1000.0 + 0.5); }

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Request Entity Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return http_status_str((enum http_status)status);
    }
}

static void conn_flush(gw_conn *c);
static void conn_parse(gw_conn *c);
static void conn_arm(gw_conn *c);
static void count_response(gw_conn *c);
static void read_start(gw_conn *c);

/* ================================================================ closing */

static void conn_free(gw_conn *c)
{
    gw_server *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    pl_buf *bufs[] = {&c->in, &c->url, &c->hname, &c->hval, &c->auth, &c->xrid, &c->xkey, &c->body, &c->out, &c->wbuf};
    for (size_t i = 0; i < PL_ARRAY_LEN(bufs); i++) pl_buf_free(bufs[i]);
    free(c);
    gw_server_maybe_exit(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    gw_conn *c = h->data;
    if (--c->open_handles == 0) conn_free(c);
}

void gw_http_close(gw_conn *c)
{
    if (c->state == GW_CONN_CLOSING) return;
    c->state = GW_CONN_CLOSING;
    if (c->streaming) count_response(c);   /* a stream cut short still counts, as its head went */
    if (c->req) gw_api_conn_gone(c);   /* aborts the request downstream */
    uv_timer_stop(&c->timer);
    if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* ================================================================ writing */

static void on_linger_timer(uv_timer_t *t) { gw_http_close(t->data); }

static void on_write(uv_write_t *w, int status)
{
    gw_conn *c = w->data;
    c->writing = false;
    pl_buf_reset(&c->wbuf);
    if (c->state == GW_CONN_CLOSING) return;
    if (status < 0) {
        pl_log(PL_LOG_DEBUG, NULL, 0, "write failed: %s", uv_strerror(status));
        gw_http_close(c);
        return;
    }
    if (c->req) gw_api_writable(c);   /* pending stream output may go now */
    if (c->state != GW_CONN_CLOSING) conn_flush(c);
}

static void conn_flush(gw_conn *c)
{
    if (c->state == GW_CONN_CLOSING || c->writing) return;
    if (c->out.len) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
        if (n < 0) {
            pl_log(PL_LOG_DEBUG, NULL, 0, "write failed: %s", uv_strerror(n));
            gw_http_close(c);
            return;
        }
        pl_buf_consume(&c->out, (size_t)n);
        if (c->out.len) {
            /* the kernel is full: hand the rest to libuv, collect anew */
            pl_buf tmp = c->wbuf;
            c->wbuf = c->out;
            c->out = tmp;
            pl_buf_reset(&c->out);
            uv_buf_t wb = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
            c->wreq.data = c;
            int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &wb, 1, on_write);
            if (rc) { gw_http_close(c); return; }
            c->writing = true;
            c->write_since = uv_now(c->srv->loop);
            return;
        }
    }
    if (c->close_after) {
        if (!c->linger || c->eof) { gw_http_close(c); return; }
        /* Closing with unread input makes the kernel send a reset, which can
         * destroy the response before the client reads it: shut our side,
         * discard what still arrives, close at EOF or after a short wait. */
        c->close_after = false;
        c->state = GW_CONN_LINGER;
        c->sreq.data = c;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, NULL)) { gw_http_close(c); return; }
        if (!c->reading) read_start(c);
        uv_timer_start(&c->timer, on_linger_timer, 2000, 0);
    }
}

bool gw_http_writable(const gw_conn *c) { return !c->writing && c->state != GW_CONN_CLOSING; }

void gw_http_sweep(gw_server *s, uint64_t now)
{
    uint64_t lim = ms_of(s->o.write_timeout);
    for (gw_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->writing && lim && now - c->write_since > lim && c->state != GW_CONN_CLOSING) {
            pl_log(PL_LOG_INFO, NULL, 0, "closing a connection whose client has read nothing for %.0f s",
                   s->o.write_timeout);
            gw_http_close(c);
        }
    }
}

/* ================================================================ responses */

/* The request is answered: serve the next pipelined one, or idle. */
/* The response for the request being answered is complete (or given up):
 * count it by route. */
static void count_response(gw_conn *c)
{
    if (c->handler < 0 || !c->resp_status) return;
    double secs = (double)(uv_now(c->srv->loop) - c->t_begin) / 1000.0;
    gw_metrics_http(c->srv->metrics, c->handler, http_method_str((enum http_method)c->method), c->resp_status, secs);
    c->handler = -1;
}

static void response_done(gw_conn *c)
{
    count_response(c);
    c->req = NULL;
    c->streaming = false;
    if (!c->keep_alive || c->srv->draining) c->close_after = true;
    conn_flush(c);
    if (c->state == GW_CONN_CLOSING || c->state == GW_CONN_LINGER || c->close_after) return;
    c->state = GW_CONN_IDLE;
    if (HTTP_PARSER_ERRNO(&c->hp) == HPE_PAUSED) http_parser_pause(&c->hp, 0);
    conn_arm(c);
    if (!c->reading && !c->eof) read_start(c);
    if (!c->parsing) conn_parse(c);   /* pipelined requests already buffered */
}

static void head_common(gw_conn *c, int status)
{
    pl_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, reason(status));
    c->resp_status = status;
    if (c->xrid.len) {
        pl_buf_puts(&c->out, "x-request-id: ");
        pl_buf_append(&c->out, c->xrid.data, c->xrid.len);
        pl_buf_puts(&c->out, "\r\n");
    }
    if (!c->keep_alive || c->srv->draining) pl_buf_puts(&c->out, "connection: close\r\n");
}

void gw_http_respond(gw_conn *c, int status, const char *ctype, const char *body, size_t len,
                     const char *extra_headers)
{
    if (c->state == GW_CONN_CLOSING) return;
    head_common(c, status);
    pl_buf_printf(&c->out, "content-type: %s\r\ncontent-length: %zu\r\n%s\r\n", ctype, len,
                  extra_headers ? extra_headers : "");
    if (c->method != HTTP_HEAD) pl_buf_append(&c->out, body, len);
    if (!pl_buf_ok(&c->out)) { gw_http_close(c); return; }
    response_done(c);
}

void gw_http_error(gw_conn *c, int status, const char *type, const char *param, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pl_buf b;
    pl_buf_init(&b);
    /* the route decides the shape: Anthropic clients get Anthropic's */
    if (c->api == GW_API_ANTHROPIC) gw_ant_error_json(&b, status, msg, strlen(msg));
    else gw_jw_error(&b, status, type, param, param ? strlen(param) : 0, msg, strlen(msg));
    gw_http_respond(c, status, "application/json", b.data ? b.data : "", b.len, NULL);
    pl_buf_free(&b);
}

static bool http10(const gw_conn *c) { return c->hp.http_major == 1 && c->hp.http_minor == 0; }

void gw_http_stream_begin(gw_conn *c)
{
    if (c->state == GW_CONN_CLOSING) return;
    if (http10(c)) c->keep_alive = false;   /* no chunked encoding: the close ends the body */
    head_common(c, 200);
    pl_buf_puts(&c->out, "content-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n");
    if (!http10(c)) pl_buf_puts(&c->out, "transfer-encoding: chunked\r\n");
    pl_buf_puts(&c->out, "\r\n");
    c->streaming = true;
    conn_flush(c);
}

void gw_http_stream_chunk(gw_conn *c, const char *data, size_t n)
{
    if (c->state == GW_CONN_CLOSING || !n) return;
    if (http10(c)) pl_buf_append(&c->out, data, n);
    else {
        pl_buf_printf(&c->out, "%zx\r\n", n);
        pl_buf_append(&c->out, data, n);
        pl_buf_puts(&c->out, "\r\n");
    }
    if (!pl_buf_ok(&c->out)) { gw_http_close(c); return; }
    conn_flush(c);
}

void gw_http_stream_end(gw_conn *c)
{
    if (c->state == GW_CONN_CLOSING) return;
    if (!http10(c)) pl_buf_puts(&c->out, "0\r\n\r\n");
    response_done(c);
}

/* A failure while reading a request: answer it (when nothing of a response
 * was sent yet) and close. */
static void fail_close(gw_conn *c, int status, const char *msg)
{
    c->keep_alive = false;
    c->linger = true;
    if (c->streaming || c->req) { gw_http_close(c); return; }
    c->state = GW_CONN_BUSY;
    gw_http_error(c, status, status == 431 ? "RequestHeaderFieldsTooLarge" :
                             status == 413 ? "RequestEntityTooLarge" :
                             status == 408 ? "RequestTimeout" :
                             status == 505 ? "HTTPVersionNotSupported" : "BadRequestError", NULL, "%s", msg);
}

/* ================================================================ timers */

static void on_timer(uv_timer_t *t)
{
    gw_conn *c = t->data;
    switch (c->state) {
    case GW_CONN_IDLE:
        gw_http_close(c);   /* keep-alive ran out */
        break;
    case GW_CONN_HEAD:
        pl_log(PL_LOG_INFO, NULL, 0, "request headers not complete after %.1f s: closing", c->srv->o.header_timeout);
        fail_close(c, 408, "request headers took too long");
        break;
    case GW_CONN_BODY:
        pl_log(PL_LOG_INFO, NULL, 0, "request body stalled for %.1f s: closing", c->srv->o.body_timeout);
        fail_close(c, 408, "request body stalled");
        break;
    default: break;
    }
}

static void conn_arm(gw_conn *c)
{
    gw_server *s = c->srv;
    uint64_t now = uv_now(s->loop), ms = 0;
    switch (c->state) {
    case GW_CONN_IDLE: ms = ms_of(s->o.keepalive_timeout); if (!ms) ms = 1; break;
    case GW_CONN_HEAD: {
        uint64_t lim = ms_of(s->o.header_timeout), spent = now - c->t_begin;
        ms = spent >= lim ? 1 : lim - spent;
        break;
    }
    case GW_CONN_BODY: ms = ms_of(s->o.body_timeout); break;
    default: uv_timer_stop(&c->timer); return;
    }
    uv_timer_start(&c->timer, on_timer, ms ? ms : 1, 0);
}

/* ================================================================ parser callbacks */

static bool hname_is(const gw_conn *c, const char *name)
{
    size_t n = strlen(name);
    return c->hname.len == n && !strncasecmp(c->hname.data, name, n);
}

static void header_commit(gw_conn *c)
{
    if (!c->hval_open) return;
    c->hval_open = false;
    c->nheaders++;
    if (hname_is(c, "authorization")) {
        pl_buf_reset(&c->auth);
        pl_buf_append(&c->auth, c->hval.data, c->hval.len);
        c->has_auth = true;
    } else if (hname_is(c, "x-api-key")) {
        pl_buf_reset(&c->xkey);
        pl_buf_append(&c->xkey, c->hval.data, c->hval.len);
        c->has_xkey = true;
    } else if (hname_is(c, "x-request-id")) {
        pl_buf_reset(&c->xrid);
        pl_buf_append(&c->xrid, c->hval.data, c->hval.len);
        c->has_xrid = true;
    } else if (hname_is(c, "expect")) {
        c->expect_continue = c->hval.len == 12 && !strncasecmp(c->hval.data, "100-continue", 12);
    }
    pl_buf_reset(&c->hname);
    pl_buf_reset(&c->hval);
}

static int reject(http_parser *p, int status)
{
    gw_conn *c = p->data;
    if (!c->reject) c->reject = status;
    http_parser_pause(p, 1);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    gw_conn *c = p->data;
    pl_buf *bufs[] = {&c->url, &c->hname, &c->hval, &c->auth, &c->xrid, &c->xkey, &c->body};
    for (size_t i = 0; i < PL_ARRAY_LEN(bufs); i++) pl_buf_reset(bufs[i]);
    c->hval_open = c->has_auth = c->has_xrid = c->has_xkey = c->expect_continue = false;
    c->api = GW_API_OPENAI;
    c->handler = -1;
    c->resp_status = 0;
    c->nheaders = 0;
    c->reject = 0;
    c->state = GW_CONN_HEAD;
    c->t_begin = uv_now(c->srv->loop);
    conn_arm(c);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    pl_buf_append(&((gw_conn *)p->data)->url, at, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    gw_conn *c = p->data;
    header_commit(c);
    if (c->nheaders >= (size_t)c->srv->o.max_headers) return reject(p, 431);
    pl_buf_append(&c->hname, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    gw_conn *c = p->data;
    pl_buf_append(&c->hval, at, len);
    c->hval_open = true;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    gw_conn *c = p->data;
    header_commit(c);
    if (p->http_major != 1 || p->http_minor > 1) return reject(p, 505);
    if (c->nheaders > (size_t)c->srv->o.max_headers) return reject(p, 431);
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > (uint64_t)c->srv->o.max_request_bytes)
        return reject(p, 413);
    if (c->expect_continue && p->http_major == 1 && p->http_minor >= 1) {
        pl_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        conn_flush(c);
    }
    c->state = GW_CONN_BODY;
    conn_arm(c);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    gw_conn *c = p->data;
    if (c->body.len + len > (size_t)c->srv->o.max_request_bytes) return reject(p, 413);
    pl_buf_append(&c->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    gw_conn *c = p->data;
    c->keep_alive = http_should_keep_alive(p) != 0;
    c->method = p->method;
    c->state = GW_CONN_BUSY;
    uv_timer_stop(&c->timer);
    http_parser_pause(p, 1);   /* the next pipelined request waits for this response */
    return 0;
}

/* ================================================================ reading */

static void conn_parse(gw_conn *c)
{
    c->parsing = true;
    while (c->state != GW_CONN_BUSY && c->state != GW_CONN_CLOSING && c->in.len) {
        size_t n = http_parser_execute(&c->hp, &g_settings, c->in.data, c->in.len);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->hp);
        pl_buf_consume(&c->in, n < c->in.len ? n : c->in.len);
        if (!pl_buf_ok(&c->body) || !pl_buf_ok(&c->url) || !pl_buf_ok(&c->hval)) {
            fail_close(c, 500, "out of memory");
            break;
        }
        if (e == HPE_PAUSED && c->reject) {
            fail_close(c, c->reject, c->reject == 413 ? "request body too large" :
                                     c->reject == 505 ? "only HTTP/1.0 and HTTP/1.1 are served" :
                                     "request headers too large or too many");
            break;
        }
        if (e == HPE_PAUSED && c->state == GW_CONN_BUSY) {
            gw_api_dispatch(c);
            continue;   /* answered at once: the loop serves the next request */
        }
        if (e == HPE_HEADER_OVERFLOW) {
            fail_close(c, 431, "request headers too large");
            break;
        }
        if (e != HPE_OK) {
            pl_log(PL_LOG_DEBUG, NULL, 0, "malformed request: %s", http_errno_description(e));
            fail_close(c, 400, http_errno_description(e));
            break;
        }
    }
    c->parsing = false;
    if (c->state == GW_CONN_CLOSING) return;
    if (c->state == GW_CONN_BUSY && c->in.len > IN_BACKLOG_MAX && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);   /* enough pipelined input: resume when answered */
        c->reading = false;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    gw_conn *c = h->data;
    if (pl_buf_reserve(&c->in, READ_CHUNK)) { *buf = uv_buf_init(NULL, 0); return; }
    *buf = uv_buf_init(c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len - 1));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    gw_conn *c = st->data;
    if (nread == 0 || c->state == GW_CONN_CLOSING) return;
    if (c->state == GW_CONN_LINGER && nread > 0) return;   /* discarded */
    if (nread < 0) {
        /* EOF or error: the client is gone. A response in progress is
         * aborted downstream (gw_http_close -> gw_api_conn_gone). */
        c->eof = true;
        gw_http_close(c);
        return;
    }
    c->in.len += (size_t)nread;
    c->in.data[c->in.len] = '\0';
    if (c->state == GW_CONN_BODY) conn_arm(c);   /* the body moved: its timer restarts */
    conn_parse(c);
}

/* uv_read_start needs the callbacks each time. */
static void read_start(gw_conn *c)
{
    c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
}

/* ================================================================ accepting */

typedef struct gw_refused { uv_tcp_t tcp; } gw_refused;

static void on_refused_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status)
{
    gw_server *s = server->data;
    if (status < 0) { pl_log(PL_LOG_WARN, NULL, 0, "accept: %s", uv_strerror(status)); return; }
    if (s->nconns >= (size_t)s->o.max_connections || s->draining) {
        /* over the limit: a short 503 and close, so clients see why */
        gw_refused *r = malloc(sizeof *r);
        if (!r) return;
        uv_tcp_init(s->loop, &r->tcp);
        if (uv_accept(server, (uv_stream_t *)&r->tcp) == 0) {
            static const char body[] = "{\"error\":{\"message\":\"too many connections\","
                                       "\"type\":\"ServiceUnavailableError\",\"param\":null,\"code\":503}}";
            char resp[512];
            int n = snprintf(resp, sizeof resp, "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                             "connection: close\r\ncontent-length: %zu\r\n\r\n%s", sizeof body - 1, body);
            uv_buf_t b = uv_buf_init(resp, (unsigned)n);
            uv_try_write((uv_stream_t *)&r->tcp, &b, 1);
        }
        uv_close((uv_handle_t *)&r->tcp, on_refused_closed);
        return;
    }
    gw_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = s;
    c->handler = -1;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    pl_buf *bufs[] = {&c->in, &c->url, &c->hname, &c->hval, &c->auth, &c->xrid, &c->xkey, &c->body, &c->out, &c->wbuf};
    for (size_t i = 0; i < PL_ARRAY_LEN(bufs); i++) pl_buf_init(bufs[i]);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) { gw_http_close(c); return; }
    uv_tcp_nodelay(&c->tcp, 1);   /* SSE chunks are small: no Nagle delay */
    http_parser_init(&c->hp, HTTP_REQUEST);
    c->hp.data = c;
    c->state = GW_CONN_IDLE;
    c->keep_alive = true;
    conn_arm(c);
    read_start(c);
}

int gw_http_listen(gw_server *s, char *err, size_t errlen)
{
    http_parser_settings_init(&g_settings);
    g_settings.on_message_begin = on_message_begin;
    g_settings.on_url = on_url;
    g_settings.on_header_field = on_header_field;
    g_settings.on_header_value = on_header_value;
    g_settings.on_headers_complete = on_headers_complete;
    g_settings.on_body = on_body;
    g_settings.on_message_complete = on_message_complete;
    http_parser_set_max_header_size((uint32_t)s->o.max_header_bytes);

    struct sockaddr_storage addr;
    const char *host = s->o.host && *s->o.host ? s->o.host : "0.0.0.0";
    int rc = strchr(host, ':') ? uv_ip6_addr(host, s->o.port, (struct sockaddr_in6 *)&addr)
                               : uv_ip4_addr(host, s->o.port, (struct sockaddr_in *)&addr);
    if (rc) return pl_seterr(err, errlen, PL_ERR_INVALID, "--host %s: %s", host, uv_strerror(rc));
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    if ((rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0)) ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection)))
        return pl_seterr(err, errlen, PL_ERR_IO, "listen on %s:%d: %s", host, s->o.port, uv_strerror(rc));
    s->listening = true;
    struct sockaddr_storage got;
    int len = sizeof got;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len);
    s->port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                              : ((struct sockaddr_in *)&got)->sin_port);
    return PL_OK;
}

void gw_http_stop_listening(gw_server *s)
{
    if (!s->listening) return;
    s->listening = false;
    uv_close((uv_handle_t *)&s->listener, NULL);
}

/* Draining: connections that are not answering anything close now. */
void gw_http_close_idle(gw_server *s)
{
    for (gw_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == GW_CONN_IDLE && !c->writing && !c->out.len) gw_http_close(c);
    }
}
