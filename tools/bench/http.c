/* http.c — the HTTP/1.1 client glm-bench drives its load with: libuv for
 * the sockets, http-parser (the gateway's parser library) for responses.
 *
 * One process holds thousands of concurrent streams: every connection is a
 * small struct (socket handle, parser, a few flags); all connections share
 * one read buffer, since a read callback consumes its bytes before the next
 * read can start; responses go to the caller chunk by chunk (de-chunked by
 * the parser), never accumulated here. Connections are kept alive and
 * reused, as aiohttp's connector does for vllm bench serve.
 *
 * Lifetimes: a request (bn_hreq) lives from bn_http_send until its on_done
 * has returned; a connection (bn_conn) until uv_close's callback. A request
 * sent on a reused keep-alive connection that the server closed in the
 * meantime (nothing received yet) is retried once on a fresh connection. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <http_parser.h>

typedef struct bn_hreq bn_hreq;

typedef struct bn_conn {
    uv_tcp_t        tcp;          /* first: the handle's address is the conn's */
    uv_connect_t    connect;
    uv_write_t      write;
    http_parser     parser;
    bn_http        *c;
    bn_hreq        *req;          /* in flight, NULL when idle */
    struct bn_conn *next_idle;
    bool            connected, reused, got_bytes, complete, closing;
} bn_conn;

struct bn_hreq {
    bn_http        *c;
    pl_buf          wire;         /* the serialized request (kept until written) */
    bn_http_cb      cb;
    void           *ud;
    bn_conn        *conn;
    pl_buf          reason;
    double          deadline;     /* monotonic seconds */
    bool            retried, aborted;
    int             abort_rc;
    char            abort_msg[256];
    bn_hreq        *prev, *next;  /* in-flight list, for the timeout sweep */
};

struct bn_http {
    uv_loop_t         *loop;
    struct sockaddr_storage addr;
    char               hostport[300];    /* for Host: and messages */
    char              *base_path;        /* path part of the base URL, no trailing '/' */
    bn_conn           *idle;             /* LIFO: the most recently used first */
    bn_hreq           *inflight;
    size_t             n_conns;
    uv_timer_t         sweep;
    bool               closing, sweep_closed;
    http_parser_settings settings;
    char               rbuf[64 * 1024];  /* shared by every connection's reads */
};

/* ================================================================ helpers */

double bn_now(void)
{
    return (double)uv_hrtime() * 1e-9;
}

/* The client goes when it was freed and every handle it owns has closed
 * (libuv runs close callbacks in no order we may rely on). */
static void maybe_free(bn_http *c)
{
    if (c->closing && c->sweep_closed && c->n_conns == 0) {
        free(c->base_path);
        free(c);
    }
}

static void conn_closed(uv_handle_t *h)
{
    bn_conn *k = (bn_conn *)h;
    bn_http *c = k->c;
    c->n_conns--;
    free(k);
    maybe_free(c);
}

static void conn_close(bn_conn *k)
{
    if (k->closing) return;
    k->closing = true;
    /* leave the idle list */
    for (bn_conn **p = &k->c->idle; *p; p = &(*p)->next_idle)
        if (*p == k) { *p = k->next_idle; break; }
    uv_close((uv_handle_t *)&k->tcp, conn_closed);
}

static void inflight_unlink(bn_http *c, bn_hreq *r)
{
    if (r->prev) r->prev->next = r->next;
    else if (c->inflight == r) c->inflight = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void req_free(bn_hreq *r)
{
    pl_buf_free(&r->wire);
    pl_buf_free(&r->reason);
    free(r);
}

static void conn_start(bn_http *c, bn_hreq *r);

/* The request is over. The connection goes back to the pool when the
 * response was complete and keep-alive, else it is closed. The callback runs
 * last: it may send the next request (and reuse this very connection). */
static void finish(bn_conn *k, int err, const char *msg)
{
    bn_hreq *r = k->req;
    bn_http *c = k->c;
    k->req = NULL;
    if (r) r->conn = NULL;
    if (!err && !k->closing && http_should_keep_alive(&k->parser) && !c->closing) {
        http_parser_init(&k->parser, HTTP_RESPONSE);
        k->parser.data = k;
        k->complete = k->got_bytes = false;
        k->reused = true;
        k->next_idle = c->idle;
        c->idle = k;
    } else conn_close(k);
    if (!r) return;
    inflight_unlink(c, r);
    if (r->cb.on_done) r->cb.on_done(r->ud, err, msg);
    req_free(r);
}

/* A reused connection died before answering: send again on a new one. */
static bool maybe_retry(bn_conn *k)
{
    bn_hreq *r = k->req;
    if (!r || !k->reused || k->got_bytes || r->retried || k->c->closing) return false;
    r->retried = true;
    k->req = NULL;
    r->conn = NULL;
    conn_close(k);
    conn_start(r->c, r);
    return true;
}

/* ================================================================ parser callbacks */

static int on_status(http_parser *p, const char *at, size_t n)
{
    bn_conn *k = p->data;
    if (k->req && k->req->reason.len + n <= 256) pl_buf_append(&k->req->reason, at, n);
    return 0;
}

static void abort_req(bn_conn *k, int rc, const char *msg)
{
    bn_hreq *r = k->req;
    r->aborted = true;
    r->abort_rc = rc;
    snprintf(r->abort_msg, sizeof r->abort_msg, "%s", msg);
    http_parser_pause(&k->parser, 1);
}

static int on_headers_complete(http_parser *p)
{
    bn_conn *k = p->data;
    bn_hreq *r = k->req;
    if (!r) return 0;
    if (r->cb.on_head && r->cb.on_head(r->ud, p->status_code, r->reason.data ? r->reason.data : ""))
        abort_req(k, PL_ERR_IO, "aborted by the client");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    bn_conn *k = p->data;
    bn_hreq *r = k->req;
    if (!r || r->aborted) return 0;
    int rc = r->cb.on_body ? r->cb.on_body(r->ud, at, n) : 0;
    if (rc) abort_req(k, rc, "response body rejected");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    bn_conn *k = p->data;
    k->complete = true;
    http_parser_pause(p, 1);   /* one response per request: stop here */
    return 0;
}

/* ================================================================ socket callbacks */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    bn_conn *k = (bn_conn *)h;
    *buf = uv_buf_init(k->c->rbuf, sizeof k->c->rbuf);
}

static void fail_or_retry(bn_conn *k, const char *what, int uverr)
{
    if (maybe_retry(k)) return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s (%s): %s", what, k->c->hostport, uverr ? uv_strerror(uverr) : "connection closed");
    finish(k, PL_ERR_IO, msg);
    conn_close(k);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bn_conn *k = (bn_conn *)s;
    if (nread == 0 || k->closing) return;
    if (!k->req) {                 /* idle: the server closed it, or sent stray bytes */
        conn_close(k);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF && k->got_bytes) {
            /* a body delimited by the end of the connection ends here */
            http_parser_execute(&k->parser, &k->c->settings, NULL, 0);
            if (k->complete) { finish(k, 0, NULL); conn_close(k); return; }
        }
        fail_or_retry(k, k->got_bytes ? "server disconnected mid-response" : "server disconnected",
                      nread == UV_EOF ? 0 : (int)nread);
        return;
    }
    k->got_bytes = true;
    size_t done = http_parser_execute(&k->parser, &k->c->settings, buf->base, (size_t)nread);
    bn_hreq *r = k->req;
    enum http_errno e = HTTP_PARSER_ERRNO(&k->parser);
    if (r->aborted) {
        char msg[256];
        memcpy(msg, r->abort_msg, sizeof msg);
        finish(k, r->abort_rc, msg);   /* an error: the connection is closed, not reused */
        return;
    }
    if (k->complete) {
        if (done < (size_t)nread) conn_close(k);   /* bytes after the response: do not reuse */
        finish(k, 0, NULL);
        return;
    }
    if (e != HPE_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "invalid HTTP response from %s: %s", k->c->hostport, http_errno_description(e));
        finish(k, PL_ERR_PARSE, msg);
        conn_close(k);
    }
}

static void on_write(uv_write_t *w, int status)
{
    bn_conn *k = w->data;
    if (status < 0 && !k->closing && k->req) fail_or_retry(k, "send failed", status);
}

static void conn_send(bn_conn *k)
{
    bn_hreq *r = k->req;
    uv_buf_t b = uv_buf_init(r->wire.data, (unsigned)r->wire.len);
    k->write.data = k;
    int rc = uv_write(&k->write, (uv_stream_t *)&k->tcp, &b, 1, on_write);
    if (rc) fail_or_retry(k, "send failed", rc);
}

static void on_connect(uv_connect_t *cr, int status)
{
    bn_conn *k = cr->data;
    if (k->closing) return;
    if (status < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "Cannot connect to host %s: %s", k->c->hostport, uv_strerror(status));
        finish(k, PL_ERR_IO, msg);
        conn_close(k);
        return;
    }
    k->connected = true;
    int rc = uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    if (rc) { fail_or_retry(k, "read failed", rc); return; }
    if (k->req) conn_send(k);
}

/* Put r on an idle connection, or on a new one. */
static void conn_start(bn_http *c, bn_hreq *r)
{
    bn_conn *k = c->idle;
    if (k) {
        c->idle = k->next_idle;
        k->next_idle = NULL;
        k->req = r;
        r->conn = k;
        conn_send(k);
        return;
    }
    k = calloc(1, sizeof *k);
    if (!k) {
        inflight_unlink(c, r);
        if (r->cb.on_done) r->cb.on_done(r->ud, PL_ERR_NOMEM, "out of memory");
        req_free(r);
        return;
    }
    k->c = c;
    k->req = r;
    r->conn = k;
    http_parser_init(&k->parser, HTTP_RESPONSE);
    k->parser.data = k;
    k->connect.data = k;
    int rc = uv_tcp_init(c->loop, &k->tcp);
    if (rc) {
        free(k);
        r->conn = NULL;
        inflight_unlink(c, r);
        char msg[200];
        snprintf(msg, sizeof msg, "socket: %s", uv_strerror(rc));
        if (r->cb.on_done) r->cb.on_done(r->ud, PL_ERR_IO, msg);
        req_free(r);
        return;
    }
    c->n_conns++;
    uv_tcp_nodelay(&k->tcp, 1);
    rc = uv_tcp_connect(&k->connect, &k->tcp, (const struct sockaddr *)&c->addr, on_connect);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "Cannot connect to host %s: %s", c->hostport, uv_strerror(rc));
        finish(k, PL_ERR_IO, msg);
        conn_close(k);
    }
}

/* ================================================================ timeouts */

static void on_sweep(uv_timer_t *t)
{
    bn_http *c = t->data;
    double now = bn_now();
    for (bn_hreq *r = c->inflight, *next; r; r = next) {
        next = r->next;
        if (r->deadline > now || !r->conn) continue;
        bn_conn *k = r->conn;
        finish(k, PL_ERR_IO, "timeout: no complete response in time");
        conn_close(k);
        next = c->inflight;   /* the callback may have changed the list: start over */
    }
}

/* ================================================================ API */

int bn_http_init(bn_http **out, uv_loop_t *loop, const char *base_url, char *err, size_t errlen)
{
    *out = NULL;
    struct http_parser_url u;
    http_parser_url_init(&u);
    size_t ulen = strlen(base_url);
    if (http_parser_parse_url(base_url, ulen, 0, &u) || !(u.field_set & (1 << UF_HOST)))
        return pl_seterr(err, errlen, PL_ERR_INVALID, "invalid base URL \"%s\"", base_url);
    if (u.field_set & (1 << UF_SCHEMA)) {
        const char *sch = base_url + u.field_data[UF_SCHEMA].off;
        size_t sl = u.field_data[UF_SCHEMA].len;
        if (sl == 5 && !strncasecmp(sch, "https", 5))
            return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "https is not supported (no TLS): %s", base_url);
        if (!(sl == 4 && !strncasecmp(sch, "http", 4)))
            return pl_seterr(err, errlen, PL_ERR_INVALID, "base URL scheme must be http: %s", base_url);
    }
    char host[256];
    size_t hl = u.field_data[UF_HOST].len;
    if (hl >= sizeof host) return pl_seterr(err, errlen, PL_ERR_INVALID, "host name too long");
    memcpy(host, base_url + u.field_data[UF_HOST].off, hl);
    host[hl] = 0;
    unsigned port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
    bn_http *c = calloc(1, sizeof *c);
    if (!c) return PL_ERR_NOMEM;
    c->loop = loop;
    int v6 = strchr(host, ':') != NULL;
    snprintf(c->hostport, sizeof c->hostport, v6 ? "[%s]:%u" : "%s:%u", host, port);
    if (u.field_set & (1 << UF_PATH)) {
        size_t pl = u.field_data[UF_PATH].len;
        const char *pp = base_url + u.field_data[UF_PATH].off;
        while (pl && pp[pl - 1] == '/') pl--;
        c->base_path = strndup(pp, pl);
    } else c->base_path = strdup("");
    if (!c->base_path) { free(c); return PL_ERR_NOMEM; }

    /* one blocking lookup at start-up; IPv4 first (vLLM's default host is 127.0.0.1) */
    struct addrinfo hints = {0};
    hints.ai_socktype = SOCK_STREAM;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    uv_getaddrinfo_t gai;
    int rc = uv_getaddrinfo(loop, &gai, NULL, host, portstr, &hints);
    if (rc) {
        pl_seterr(err, errlen, PL_ERR_IO, "cannot resolve %s: %s", host, uv_strerror(rc));
        free(c->base_path);
        free(c);
        return PL_ERR_IO;
    }
    struct addrinfo *pick = gai.addrinfo;
    for (struct addrinfo *a = gai.addrinfo; a; a = a->ai_next)
        if (a->ai_family == AF_INET) { pick = a; break; }
    memcpy(&c->addr, pick->ai_addr, pick->ai_addrlen);
    uv_freeaddrinfo(gai.addrinfo);

    http_parser_settings_init(&c->settings);
    c->settings.on_status = on_status;
    c->settings.on_headers_complete = on_headers_complete;
    c->settings.on_body = on_body;
    c->settings.on_message_complete = on_message_complete;
    uv_timer_init(loop, &c->sweep);
    c->sweep.data = c;
    uv_timer_start(&c->sweep, on_sweep, 1000, 1000);
    uv_unref((uv_handle_t *)&c->sweep);   /* never keeps the loop alive by itself */
    *out = c;
    return 0;
}

const char *bn_http_hostport(const bn_http *c) { return c->hostport; }

int bn_http_send(bn_http *c, const char *method, const char *path, const char *headers, const char *body,
                 size_t body_len, double timeout_s, const bn_http_cb *cb, void *ud)
{
    if (c->closing) return PL_ERR_INVALID;
    bn_hreq *r = calloc(1, sizeof *r);
    if (!r) return PL_ERR_NOMEM;
    r->c = c;
    r->cb = *cb;
    r->ud = ud;
    r->deadline = bn_now() + timeout_s;
    pl_buf_init(&r->wire);
    pl_buf_init(&r->reason);
    pl_buf_printf(&r->wire, "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: glm-bench\r\nAccept: */*\r\n", method,
                  c->base_path, path, c->hostport);
    if (body) pl_buf_printf(&r->wire, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
    if (headers) pl_buf_puts(&r->wire, headers);
    pl_buf_puts(&r->wire, "\r\n");
    if (body) pl_buf_append(&r->wire, body, body_len);
    if (!pl_buf_ok(&r->wire)) { req_free(r); return PL_ERR_NOMEM; }
    r->next = c->inflight;
    if (c->inflight) c->inflight->prev = r;
    c->inflight = r;
    conn_start(c, r);
    return 0;
}

size_t bn_http_connections(const bn_http *c) { return c->n_conns; }

static void sweep_closed(uv_handle_t *h)
{
    bn_http *c = h->data;
    c->sweep_closed = true;
    maybe_free(c);
}

void bn_http_free(bn_http *c)
{
    if (!c) return;
    c->closing = true;
    /* requests still in flight end now, as failures */
    while (c->inflight) {
        bn_hreq *r = c->inflight;
        if (r->conn) {
            bn_conn *k = r->conn;
            finish(k, PL_ERR_IO, "client shut down");
            conn_close(k);
        } else {
            inflight_unlink(c, r);
            req_free(r);
        }
    }
    while (c->idle) conn_close(c->idle);
    uv_timer_stop(&c->sweep);
    uv_close((uv_handle_t *)&c->sweep, sweep_closed);
}
