/* pipe.c — the two ZeroMQ sockets inside the libuv loop, and heartbeats.
 *
 * ZeroMQ integration: each socket's ZMQ_FD is watched with a uv_poll. That
 * fd is not the data socket but ZeroMQ's internal mailbox signaller, and it
 * behaves edge-triggered: it turns readable when the socket's state *may*
 * have changed and is cleared by any zmq call that processes the mailbox
 * (recv, send, getsockopt ZMQ_EVENTS). So:
 *   - PULL: every wake-up drains with ZMQ_DONTWAIT until EAGAIN. A drain
 *     that hits the batch bound (so other connections get their turn)
 *     continues from a uv_idle handle, never by waiting on the fd, which
 *     would not fire again for messages already queued.
 *   - PUSH: sends go straight out with ZMQ_DONTWAIT. Only when that says
 *     EAGAIN (no connected peer: ZMQ_IMMEDIATE is set, so nothing queues
 *     towards a dead glm-tokenize) do messages wait in our own queue; then
 *     the fd is watched, and after every send that returns EAGAIN
 *     ZMQ_EVENTS is read again, because that send may have consumed the
 *     very notification we would wait for.
 * Each socket has its own mailbox, so a send on PUSH cannot swallow a PULL
 * notification. The alternative, one I/O thread handing messages over with
 * uv_async_send, was measured against this (tests/bench/bench_gw_zmq.c,
 * docs/perf.md) and loses: a thread hop per batch and a lock.
 *
 * Liveness: a heartbeat `ping` travels the whole pipeline every
 * --ping-interval. One not back within --stage-timeout marks the pipeline
 * down: every request in flight is failed (503 / an error event, then
 * [DONE]), new ones get 503 at once, /health says 503, and a ping is sent
 * every interval until one comes back. A stage that dies and is restarted
 * quickly (before a heartbeat notices) has lost its requests' state: the
 * supervisor sends SIGUSR1 (glm-serve does; systemd units via ExecStopPost)
 * and every request in flight is failed the same way. */
#include "gw_int.h"
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_BATCH  2048             /* messages per wake-up before others get a turn */
#define OUTQ_MAX     (256u << 20)     /* bytes waiting for glm-tokenize */
#define MSG_MAX      (256u << 20)     /* largest message accepted (as every stage) */

struct gw_outmsg {
    gw_outmsg *next;
    bool       keep;                  /* an abort: kept when the pipeline goes down */
    size_t     len;
    char       data[];
};

static uint64_t ms_of(double s) { return s <= 0 ? 1 : (uint64_t)(s * 1000.0 + 0.5); }

/* ================================================================ sockets */

static int sock_open(gw_server *s, void **sock, int type, const char *ep, bool bind_default,
                     char *err, size_t errlen)
{
    bool bind = bind_default;
    if (ep[0] == '@') { bind = true; ep++; }
    else if (ep[0] == '>') { bind = false; ep++; }
    *sock = zmq_socket(s->zctx, type);
    if (!*sock) return pl_seterr(err, errlen, PL_ERR_IO, "zmq_socket: %s", zmq_strerror(errno));
    int linger = 1000, zero = 0, one = 1, ivl = 100, ivl_max = 1000;
    int64_t maxsz = MSG_MAX;
    zmq_setsockopt(*sock, ZMQ_LINGER, &linger, sizeof linger);   /* aborts queued at exit may leave */
    zmq_setsockopt(*sock, type == ZMQ_PUSH ? ZMQ_SNDHWM : ZMQ_RCVHWM, &zero, sizeof zero);
    if (type == ZMQ_PUSH) {
        zmq_setsockopt(*sock, ZMQ_IMMEDIATE, &one, sizeof one);
        zmq_setsockopt(*sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt(*sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    } else {
        zmq_setsockopt(*sock, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    }
    int rc = bind ? zmq_bind(*sock, ep) : zmq_connect(*sock, ep);
    if (rc) return pl_seterr(err, errlen, PL_ERR_IO, "zmq_%s %s: %s", bind ? "bind" : "connect", ep,
                             zmq_strerror(errno));
    return PL_OK;
}

static int sock_fd(void *sock)
{
    int fd = -1;
    size_t len = sizeof fd;
    zmq_getsockopt(sock, ZMQ_FD, &fd, &len);
    return fd;
}

static int sock_events(void *sock)
{
    int ev = 0;
    size_t len = sizeof ev;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &len)) return 0;
    return ev;
}

/* ================================================================ receiving */

static void pull_drain(gw_server *s);

static void on_pull_idle(uv_idle_t *h) { pull_drain(h->data); }
static void on_pull_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    pull_drain(h->data);
}

/* One ZeroMQ message from the last stage: framed and bounded as every stage
 * frames its input (common/wire.h), so a context nested deeper than
 * msgpack-c's 32 levels still decodes. A well-framed message that cannot be
 * taken (too large, too deep) fails its request with an error instead of
 * leaving the client waiting. */
static void pull_one(gw_server *s, const char *data, size_t len)
{
    msgpack_object obj;
    const char *why;
    int rc = pl_wire_take_frame(s->scan, s->dec, data, len, true, &obj, &why);
    if (!rc) {
        gw_api_on_msg(s, &obj);
        return;
    }
    const pl_wire_info *in = pl_wire_scan_info(s->scan);
    pl_log(PL_LOG_ERROR, in->has_id ? in->id : NULL, in->has_id ? in->idlen : 0,
           "dropped a %zu-byte message from the pipeline: %s", len, why);
    if (rc != PL_ERR_RANGE) return;
    /* answer the request it belonged to, as the stage that made it would have */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    char text[256];
    if (pl_wire_acceptable(in)) snprintf(text, sizeof text, "the pipeline's answer could not be read (%s)", why);
    else pl_wire_reject_text(in, s->max_msg, text, sizeof text);
    msgpack_pack_map(&pk, 5);
    pl_msg_pack_kv_cstr(&pk, "type", "error");
    pl_msg_pack_kv_str(&pk, "id", in->id, in->idlen);
    pl_msg_pack_kv_int(&pk, "code", 500);
    pl_msg_pack_kv_cstr(&pk, "err_type", "InternalServerError");
    pl_msg_pack_kv_cstr(&pk, "message", text);
    if (pl_wire_decode(s->dec, sb.data, sb.size, &obj) == PL_OK) gw_api_on_msg(s, &obj);
    msgpack_sbuffer_destroy(&sb);
}

static void pull_drain(gw_server *s)
{
    int n = 0;
    bool more = false;
    for (;;) {
        if (n >= DRAIN_BATCH) { more = true; break; }
        if (zmq_msg_recv(&s->zmsg, s->pull, ZMQ_DONTWAIT) < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) pl_log(PL_LOG_ERROR, NULL, 0, "zmq recv: %s", zmq_strerror(errno));
            break;
        }
        n++;
        pull_one(s, zmq_msg_data(&s->zmsg), zmq_msg_size(&s->zmsg));
    }
    /* a cut-short drain continues on the next loop turn, without the fd */
    if (more && !s->pull_idle_on) { uv_idle_start(&s->pull_idle, on_pull_idle); s->pull_idle_on = true; }
    if (!more && s->pull_idle_on) { uv_idle_stop(&s->pull_idle); s->pull_idle_on = false; }
    if (n) gw_api_after_batch(s);
}

/* ================================================================ sending */

static void push_flush(gw_server *s);

static void on_push_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    push_flush(h->data);
}

static void push_wait(gw_server *s, bool on)
{
    if (on == s->push_poll_on) return;
    if (on) uv_poll_start(&s->push_poll, UV_READABLE, on_push_poll);
    else uv_poll_stop(&s->push_poll);
    s->push_poll_on = on;
}

/* 0 sent, 1 would block, -1 failed (logged). */
static int push_try(gw_server *s, const char *data, size_t len)
{
    for (;;) {
        if (zmq_send(s->push, data, len, ZMQ_DONTWAIT) >= 0) return 0;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return 1;
        pl_log(PL_LOG_ERROR, NULL, 0, "zmq send: %s", zmq_strerror(errno));
        return -1;
    }
}

static void push_flush(gw_server *s)
{
    while (s->outq) {
        gw_outmsg *m = s->outq;
        int rc = push_try(s, m->data, m->len);
        if (rc == 1) {
            /* that send may have eaten the wake-up we are about to wait for */
            if (sock_events(s->push) & ZMQ_POLLOUT) continue;
            push_wait(s, true);
            return;
        }
        s->outq = m->next;
        if (!s->outq) s->outq_tail = NULL;
        s->outq_bytes -= m->len;
        s->outq_len--;
        free(m);
    }
    push_wait(s, false);
}

static int enqueue(gw_server *s, const char *data, size_t len, bool keep)
{
    if (!s->outq) {
        int rc = push_try(s, data, len);
        if (rc == 0) return PL_OK;
        if (rc < 0) return PL_ERR_IO;
    }
    if (s->outq_bytes + len > OUTQ_MAX && !keep) return PL_ERR_RANGE;
    gw_outmsg *m = malloc(sizeof *m + len);
    if (!m) return PL_ERR_NOMEM;
    m->next = NULL;
    m->keep = keep;
    m->len = len;
    memcpy(m->data, data, len);
    if (s->outq_tail) s->outq_tail->next = m;
    else s->outq = m;
    s->outq_tail = m;
    s->outq_bytes += len;
    s->outq_len++;
    push_flush(s);   /* re-reads ZMQ_EVENTS and arms the fd watch */
    return PL_OK;
}

int gw_pipe_send(gw_server *s, const char *data, size_t len) { return enqueue(s, data, len, false); }

void gw_pipe_send_abort(gw_server *s, const char *id, size_t idlen, int index)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, index >= 0 ? 3 : 2);
    pl_msg_pack_kv_cstr(&pk, "type", "abort");
    pl_msg_pack_kv_str(&pk, "id", id, idlen);
    if (index >= 0) pl_msg_pack_kv_int(&pk, "index", index);
    if (enqueue(s, sb.data, sb.size, true)) pl_log(PL_LOG_WARN, id, idlen, "abort could not be queued");
    msgpack_sbuffer_destroy(&sb);
}

void gw_pipe_send_ctl(gw_server *s, const char *type, const char *id, size_t idlen)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pl_msg_pack_kv_cstr(&pk, "type", type);
    pl_msg_pack_kv_str(&pk, "id", id, idlen);
    enqueue(s, sb.data, sb.size, false);
    msgpack_sbuffer_destroy(&sb);
}

/* Down: what waits for a dead glm-tokenize goes (its requests are failed),
 * aborts stay so a stage that was only stuck frees their state later. */
static void outq_purge(gw_server *s)
{
    gw_outmsg **pp = &s->outq, *m;
    s->outq_tail = NULL;
    while ((m = *pp)) {
        if (m->keep) { s->outq_tail = m; pp = &m->next; continue; }
        *pp = m->next;
        s->outq_bytes -= m->len;
        s->outq_len--;
        free(m);
    }
    if (!s->outq) push_wait(s, false);
}

/* ================================================================ heartbeats */

static void send_heartbeat(gw_server *s, uint64_t now)
{
    char id[48];
    int n = snprintf(id, sizeof id, "gw-hb-%llu", (unsigned long long)++s->hb_seq);
    gw_pipe_send_ctl(s, "ping", id, (size_t)n);
    if (!s->hb_sent || s->pstate != GW_PIPE_DOWN) s->hb_sent = now;
    s->hb_next = now + ms_of(s->o.ping_interval);
}

void gw_pipe_tick(gw_server *s, uint64_t now)
{
    if (s->pstate != GW_PIPE_DOWN && s->hb_sent && now - s->hb_sent > ms_of(s->o.stage_timeout)) {
        s->pstate = GW_PIPE_DOWN;
        pl_log(PL_LOG_ERROR, NULL, 0, "the pipeline has not answered a ping for %.1f s: failing %zu request(s) in flight",
               s->o.stage_timeout, gw_api_live(s));
        gw_api_fail_all(s, 503, "The server's pipeline did not answer in time (a stage is down or stuck); retry later.");
        outq_purge(s);
    }
    /* down: a ping per interval, but none piles up behind a peer that
     * takes nothing (the queue holds only aborts then) */
    if (now >= s->hb_next && (!s->hb_sent || (s->pstate == GW_PIPE_DOWN && !s->outq))) send_heartbeat(s, now);
}

/* Any ping that comes back proves every stage forwards again. */
void gw_pipe_on_pong(gw_server *s, bool heartbeat)
{
    uint64_t now = uv_now(s->loop);
    s->last_answer = now;
    if (heartbeat) s->hb_sent = 0;
    if (s->pstate != GW_PIPE_UP) {
        if (s->pstate == GW_PIPE_DOWN) pl_log(PL_LOG_INFO, NULL, 0, "the pipeline answers again");
        s->pstate = GW_PIPE_UP;
        s->hb_sent = 0;
    }
}

/* ================================================================ open/close */

int gw_pipe_open(gw_server *s, char *err, size_t errlen)
{
    zmq_msg_init(&s->zmsg);
    s->max_msg = PL_IO_MAX_MSG;
    if (pl_wire_scan_new(&s->scan, s->max_msg, true) || pl_wire_decoder_new(&s->dec))
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    if (!(s->zctx = zmq_ctx_new())) return pl_seterr(err, errlen, PL_ERR_IO, "zmq_ctx_new: %s", zmq_strerror(errno));
    int rc = sock_open(s, &s->pull, ZMQ_PULL, s->o.in_ep, true, err, errlen);
    if (!rc) rc = sock_open(s, &s->push, ZMQ_PUSH, s->o.out_ep, false, err, errlen);
    if (rc) return rc;
    uv_poll_init(s->loop, &s->pull_poll, sock_fd(s->pull));
    uv_poll_init(s->loop, &s->push_poll, sock_fd(s->push));
    uv_idle_init(s->loop, &s->pull_idle);
    s->pull_poll.data = s->push_poll.data = s->pull_idle.data = s;
    uv_poll_start(&s->pull_poll, UV_READABLE, on_pull_poll);
    pull_drain(s);   /* the fd may have fired before we watched it */
    s->pstate = GW_PIPE_UNKNOWN;
    s->hb_next = 0;
    return PL_OK;
}

void gw_pipe_stop_watching(gw_server *s)
{
    if (s->pull) {
        uv_close((uv_handle_t *)&s->pull_poll, NULL);
        uv_close((uv_handle_t *)&s->push_poll, NULL);
        uv_close((uv_handle_t *)&s->pull_idle, NULL);
    }
}

void gw_pipe_close(gw_server *s)
{
    push_flush(s);
    while (s->outq) {
        gw_outmsg *m = s->outq;
        s->outq = m->next;
        free(m);
    }
    if (s->pull) zmq_close(s->pull);
    if (s->push) zmq_close(s->push);
    if (s->zctx) zmq_ctx_term(s->zctx);
    zmq_msg_close(&s->zmsg);
    pl_wire_scan_free(s->scan);
    pl_wire_decoder_free(s->dec);
    s->scan = NULL;
    s->dec = NULL;
}
