/* io.c — stdin/stdout and ZeroMQ message transports. */
#include "io.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

enum { R_IDLE, R_SCAN, R_SKIP };   /* stdin reader: between messages, in one, skipping an oversized one */

struct pl_io {
    pl_io_opts       o;
    void            *zctx;
    void            *zin, *zout;      /* NULL when on stdin / stdout */
    int              in_fd, out_fd;
    int              in_eof;
    unsigned         stop_seen;       /* stop signals already reported by pl_io_recv */
    pl_wire_scan    *scan;
    pl_wire_decoder *dec;
    pl_wire_info     rejected;        /* the message behind the last PL_ERR_RANGE */
    /* stdin framing: ibuf[rpos..spos) is the message being scanned */
    pl_buf           ibuf;
    size_t           rpos, spos;
    size_t           held;            /* bytes of the message handed out last, consumed at the next recv */
    uint64_t         base;            /* stream offset of ibuf.data[0] */
    int              mode;
    uint64_t         cand_off;        /* stream offset where the current message started */
    int64_t          cand_wait_ms;    /* time the reader has waited on it */
    uint64_t         skip_dropped;    /* R_SKIP: bytes dropped so far */
    uint64_t         junk_off, junk_len;   /* a run of skipped bytes, logged when it ends */
    const char      *junk_why;
    uint64_t         skipped;         /* bytes skipped or dropped in all */
    /* ZeroMQ input */
    zmq_msg_t        zmsg;            /* backing store of a ZeroMQ message */
    int              zmsg_live;
    /* output */
    pl_buf           obuf;            /* pending bytes for stdout */
    void            *zmon;            /* PAIR socket receiving zout's connection events */
    const char      *out_ep;
    int              peers;           /* connected downstream peers */
    uint64_t         queued_unconnected;   /* messages sent while no peer was connected */
};

/* ================================================================ signals */

static volatile sig_atomic_t g_stop;

static void on_stop(int sig) { (void)sig; if (g_stop < 100) g_stop++; }

void pl_io_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;   /* no SA_RESTART: poll/zmq_poll return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int pl_io_stopping(void) { return g_stop; }

/* ================================================================ open/close */

void pl_io_opts_default(pl_io_opts *o)
{
    o->max_msg = PL_IO_MAX_MSG;
    o->partial_ms = 5000;
    o->linger_ms = 30000;
}

/* '@' bind, '>' connect, otherwise the side's default. */
static int zsock_open(pl_io *io, void **sock, int type, const char *ep, int bind_default,
                      char *err, size_t errlen)
{
    int bind = bind_default;
    if (ep[0] == '@') { bind = 1; ep++; }
    else if (ep[0] == '>') { bind = 0; ep++; }
    if (!io->zctx && !(io->zctx = zmq_ctx_new()))
        return pl_seterr(err, errlen, PL_ERR_IO, "zmq_ctx_new: %s", zmq_strerror(errno));
    *sock = zmq_socket(io->zctx, type);
    if (!*sock) return pl_seterr(err, errlen, PL_ERR_IO, "zmq_socket: %s", zmq_strerror(errno));
    int linger = io->o.linger_ms > INT32_MAX ? INT32_MAX : (int)io->o.linger_ms;
    zmq_setsockopt(*sock, ZMQ_LINGER, &linger, sizeof linger);
    int hwm = 0;         /* never drop: back-pressure instead */
    zmq_setsockopt(*sock, type == ZMQ_PUSH ? ZMQ_SNDHWM : ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* The stage skips (and answers) messages over its limit itself; ZeroMQ's
     * own cap, which drops the connection, only guards memory far above it. */
    int64_t maxsz = io->o.max_msg > (size_t)INT64_MAX / 4 ? INT64_MAX : (int64_t)io->o.max_msg * 4;
    if (type == ZMQ_PULL) zmq_setsockopt(*sock, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    if (type == ZMQ_PUSH) {
        /* Connection events tell close() whether queued output has anyone to go to. */
        char mon[64];
        snprintf(mon, sizeof mon, "inproc://pl-io-monitor-%p", (void *)io);
        if (zmq_socket_monitor(*sock, mon, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) == 0 &&
            (io->zmon = zmq_socket(io->zctx, ZMQ_PAIR)) && zmq_connect(io->zmon, mon) != 0) {
            zmq_close(io->zmon);
            io->zmon = NULL;
        }
        io->out_ep = ep;
    }
    int rc = bind ? zmq_bind(*sock, ep) : zmq_connect(*sock, ep);
    if (rc) return pl_seterr(err, errlen, PL_ERR_IO, "zmq_%s %s: %s", bind ? "bind" : "connect", ep,
                             zmq_strerror(errno));
    return PL_OK;
}

static int is_stdio(const char *ep) { return !ep || !*ep || !strcmp(ep, "-"); }

/* ZeroMQ starts I/O threads when the first socket is made; they inherit the
 * signal mask, so blocking SIGINT/SIGTERM around socket creation keeps the
 * stop signals for our own threads. */
static int zsock_open_masked(pl_io *io, void **sock, int type, const char *ep, int bind_default,
                             char *err, size_t errlen)
{
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    int rc = zsock_open(io, sock, type, ep, bind_default, err, errlen);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Take the monitor's pending events: the count of connected downstream peers. */
static void monitor_poll(pl_io *io, int timeout_ms)
{
    if (!io->zmon) return;
    zmq_pollitem_t it = {io->zmon, 0, ZMQ_POLLIN, 0};
    while (zmq_poll(&it, 1, timeout_ms) > 0) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        zmq_msg_init(&addr);
        if (zmq_msg_recv(&ev, io->zmon, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&ev) &&
            zmq_msg_recv(&addr, io->zmon, ZMQ_DONTWAIT) >= 0 && zmq_msg_size(&ev) >= 2) {
            uint16_t e;
            memcpy(&e, zmq_msg_data(&ev), 2);
            if (e == ZMQ_EVENT_CONNECTED || e == ZMQ_EVENT_ACCEPTED) {
                io->peers++;
                io->queued_unconnected = 0;   /* the peer takes the queue */
            } else if (e == ZMQ_EVENT_DISCONNECTED && io->peers > 0) {
                io->peers--;
            }
        }
        zmq_msg_close(&ev);
        zmq_msg_close(&addr);
        timeout_ms = 0;
    }
}

int pl_io_open(pl_io **out, const char *in_ep, const char *out_ep, char *err, size_t errlen)
{
    return pl_io_open_opts(out, in_ep, out_ep, NULL, err, errlen);
}

int pl_io_open_opts(pl_io **out, const char *in_ep, const char *out_ep, const pl_io_opts *o,
                    char *err, size_t errlen)
{
    *out = NULL;
    pl_io *io = calloc(1, sizeof *io);
    if (!io) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    if (o) io->o = *o;
    else pl_io_opts_default(&io->o);
    io->in_fd = STDIN_FILENO;
    io->out_fd = STDOUT_FILENO;
    pl_buf_init(&io->obuf);
    pl_buf_init(&io->ibuf);
    if (pl_wire_scan_new(&io->scan, io->o.max_msg, !io->o.raw) || pl_wire_decoder_new(&io->dec)) {
        pl_io_close(io);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    pl_io_install_signals();
    int rc = 0;
    if (!is_stdio(in_ep)) rc = zsock_open_masked(io, &io->zin, ZMQ_PULL, in_ep, 1, err, errlen);
    if (!rc && !is_stdio(out_ep)) rc = zsock_open_masked(io, &io->zout, ZMQ_PUSH, out_ep, 0, err, errlen);
    if (rc) { pl_io_close(io); return rc; }
    *out = io;
    return PL_OK;
}

/* Messages a stage produced must reach its downstream or be reported: with
 * no downstream connected, wait up to the linger time for one; whatever is
 * still queued for nobody then is counted in the log. */
static void close_output(pl_io *io)
{
    if (!io->zout) return;
    int64_t t0 = pl_now_ms(), left = io->o.linger_ms;
    monitor_poll(io, 0);
    if (io->zmon && io->peers == 0 && io->queued_unconnected) {
        pl_log(PL_LOG_WARN, NULL, 0, "%" PRIu64 " messages wait for downstream %s: lingering up to %" PRId64 " ms",
               io->queued_unconnected, io->out_ep, left);
        while (io->peers == 0 && (left = io->o.linger_ms - (pl_now_ms() - t0)) > 0 && pl_io_stopping() < 2)
            monitor_poll(io, left > 100 ? 100 : (int)left);
        if (io->peers == 0) {
            pl_log(PL_LOG_ERROR, NULL, 0, "%" PRIu64 " messages not delivered: downstream %s never connected",
                   io->queued_unconnected, io->out_ep);
            left = 0;
        }
    }
    if (left < 0) left = 0;
    int linger = left > INT32_MAX ? INT32_MAX : (int)left;
    zmq_setsockopt(io->zout, ZMQ_LINGER, &linger, sizeof linger);
    if (io->zmon) { zmq_socket_monitor(io->zout, NULL, 0); zmq_close(io->zmon); io->zmon = NULL; }
    zmq_close(io->zout);
    io->zout = NULL;
}

void pl_io_close(pl_io *io)
{
    if (!io) return;
    pl_io_flush(io);
    if (io->zmsg_live) zmq_msg_close(&io->zmsg);
    if (io->zin) zmq_close(io->zin);
    close_output(io);
    if (io->zctx) {
        int64_t t0 = pl_now_ms();
        zmq_ctx_term(io->zctx);   /* returns when the output is delivered or the linger ran out */
        if (io->o.linger_ms > 0 && pl_now_ms() - t0 >= io->o.linger_ms)
            pl_log(PL_LOG_ERROR, NULL, 0, "output may be incomplete: the %" PRId64 " ms linger ran out", io->o.linger_ms);
    }
    pl_wire_scan_free(io->scan);
    pl_wire_decoder_free(io->dec);
    pl_buf_free(&io->ibuf);
    pl_buf_free(&io->obuf);
    free(io);
}

size_t pl_io_max_msg(const pl_io *io) { return io->o.max_msg; }
uint64_t pl_io_skipped(const pl_io *io) { return io->skipped; }
const pl_wire_info *pl_io_rejected(const pl_io *io) { return &io->rejected; }

/* ================================================================ waiting */

/* A wait is cut into slices so a stop signal that another thread received
 * (a compute thread of the engine, say) is still noticed promptly. */
#define STOP_CHECK_MS 250
static int wait_slice(int timeout_ms) { return timeout_ms < 0 || timeout_ms > STOP_CHECK_MS ? STOP_CHECK_MS : timeout_ms; }

/* A stop signal the caller has not heard of yet. */
static int new_stop(pl_io *io)
{
    if ((unsigned)g_stop == io->stop_seen) return 0;
    io->stop_seen = (unsigned)g_stop;
    return 1;
}

/* Wait until the input is readable. Returns WAIT_READY, WAIT_TIMEOUT when
 * *timeout_ms ran out (it is decremented by the time waited), WAIT_STOP when
 * a stop signal arrived, or PL_ERR_IO. zmq_poll serves both inputs: it takes
 * a plain fd too. Pending output is flushed before any wait. */
enum { WAIT_TIMEOUT = 0, WAIT_READY = 1, WAIT_STOP = 2 };
static int wait_input(pl_io *io, int *timeout_ms)
{
    for (;;) {
        if (new_stop(io)) return WAIT_STOP;
        if (*timeout_ms != 0) pl_io_flush(io);   /* about to wait: let the output go */
        monitor_poll(io, 0);
        zmq_pollitem_t it = {io->zin, io->zin ? 0 : io->in_fd, ZMQ_POLLIN, 0};
        int slice = wait_slice(*timeout_ms);
        int pr = zmq_poll(&it, 1, slice);
        if (pr < 0) {
            if (errno == EINTR) continue;
            return PL_ERR_IO;
        }
        if (pr > 0) return WAIT_READY;
        if (*timeout_ms >= 0 && (*timeout_ms -= slice) <= 0) { *timeout_ms = 0; return WAIT_TIMEOUT; }
    }
}

/* ================================================================ stdin framing */

/* Skipped bytes are logged once per contiguous run, with its offset. */
static void junk_flush(pl_io *io)
{
    if (!io->junk_len) return;
    pl_log(PL_LOG_ERROR, NULL, 0, "skipped %" PRIu64 " byte%s at input offset %" PRIu64 " (%s)", io->junk_len,
           io->junk_len == 1 ? "" : "s", io->junk_off, io->junk_why);
    io->junk_len = 0;
}

static void junk_add(pl_io *io, uint64_t off, uint64_t n, const char *why)
{
    io->skipped += n;
    if (io->junk_len && io->junk_off + io->junk_len == off && io->junk_why == why && io->junk_len < (1u << 20)) {
        io->junk_len += n;
        return;
    }
    junk_flush(io);
    io->junk_off = off;
    io->junk_len = n;
    io->junk_why = why;
}

/* Forget ibuf[0..rpos): keep the buffer from growing with consumed bytes. */
static void compact(pl_io *io)
{
    if (!io->rpos || (io->rpos < io->ibuf.len && io->rpos < (1u << 20))) return;
    pl_buf_consume(&io->ibuf, io->rpos);
    io->base += io->rpos;
    io->spos -= io->rpos;
    io->rpos = 0;
}

/* The current message was not one: skip its first byte and look again from
 * the next (every byte after it may start a message of its own). */
static void resync(pl_io *io, const char *why)
{
    junk_add(io, io->cand_off, 1, why);
    io->rpos++;
    io->spos = io->rpos;
    io->mode = R_IDLE;
}

static void reject(pl_io *io, const pl_wire_info *in, uint64_t len)
{
    char why[160];
    pl_wire_reject_text(in, io->o.max_msg, why, sizeof why);
    pl_log(PL_LOG_ERROR, in->has_id ? in->id : NULL, in->idlen, "skipped a %" PRIu64 "-byte message at input offset %" PRIu64 ": %s",
           len, io->cand_off, why);
    io->rejected = *in;
}

/* Scan the buffered bytes: PL_OK with *msg, PL_ERR_RANGE (a rejected message
 * with an id), or PL_ERR_AGAIN when more bytes are needed. */
static int scan_buffered(pl_io *io, msgpack_object *msg)
{
    while (io->spos < io->ibuf.len) {
        if (io->mode == R_IDLE) {
            pl_wire_scan_reset(io->scan);
            io->mode = R_SCAN;
            io->spos = io->rpos;
            io->cand_off = io->base + io->rpos;
            io->cand_wait_ms = 0;
            io->skip_dropped = 0;
        }
        size_t used;
        int st = pl_wire_scan_feed(io->scan, io->ibuf.data + io->spos, io->ibuf.len - io->spos, &used);
        io->spos += used;
        const pl_wire_info *in = pl_wire_scan_info(io->scan);
        if (st == PL_WIRE_MORE) {
            if (in->oversized && io->mode == R_SCAN) {
                junk_flush(io);
                io->mode = R_SKIP;
                pl_log(PL_LOG_WARN, NULL, 0, "message at input offset %" PRIu64 " is larger than %zu bytes: skipping it whole",
                       io->cand_off, io->o.max_msg);
            }
            /* An oversized message is held only up to the limit: then, if its
             * declared length was a lie (a corrupt header swallowing the
             * traffic behind it), the reader can still give it up at the
             * partial timeout and look again one byte after its start. Past
             * the limit its bytes are dropped as they stream. */
            if (io->mode == R_SKIP && (io->skip_dropped || io->spos - io->rpos > io->o.max_msg)) {
                io->skip_dropped += io->spos - io->rpos;
                io->rpos = io->spos;
                compact(io);
            }
            return PL_ERR_AGAIN;
        }
        if (io->mode == R_SKIP) {   /* skipped whole: nothing in it is read again */
            io->rpos = io->spos;
            io->mode = R_IDLE;
            compact(io);
            io->skipped += in->len;
            if (st == PL_WIRE_BAD || !in->has_id) {
                pl_log(PL_LOG_ERROR, NULL, 0, "skipped %" PRIu64 " bytes at input offset %" PRIu64 " (an oversized message, %s)",
                       in->len, io->cand_off, st == PL_WIRE_BAD ? in->bad : "without a valid id");
                continue;
            }
            reject(io, in, in->len);
            return PL_ERR_RANGE;
        }
        if (st == PL_WIRE_BAD) { resync(io, in->bad); continue; }
        if (!in->id_key && !io->o.raw) { resync(io, "a map without an id is not a message"); continue; }
        /* A message of this protocol starts here: the bytes skipped before it are done. */
        junk_flush(io);
        size_t len = io->spos - io->rpos;
        io->mode = R_IDLE;
        if (!in->has_id && !io->o.raw) {   /* a message, but nobody to answer: skipped whole */
            io->skipped += len;
            pl_log(PL_LOG_ERROR, NULL, 0, "skipped a %zu-byte message at input offset %" PRIu64 ": its id is not a string of 1 to %d bytes",
                   len, io->cand_off, PL_MSG_ID_MAX);
            io->rpos = io->spos;
            compact(io);
            continue;
        }
        if (!pl_wire_acceptable(in)) {
            io->skipped += len;
            reject(io, in, len);
            io->rpos = io->spos;
            compact(io);
            if (!in->has_id) continue;   /* raw mode: nobody to answer */
            return PL_ERR_RANGE;
        }
        int rc = pl_wire_decode(io->dec, io->ibuf.data + io->rpos, len, msg);
        if (rc) {   /* the scan accepted it, so only memory can fail here */
            pl_log(PL_LOG_ERROR, in->id, in->idlen, "out of memory decoding a %zu-byte message", len);
            io->rejected = *in;
            io->rpos = io->spos;
            return PL_ERR_RANGE;
        }
        io->held = len;
        return PL_OK;
    }
    return PL_ERR_AGAIN;
}

static int recv_stdin(pl_io *io, msgpack_object *msg, int timeout_ms)
{
    if (io->held) {
        io->rpos += io->held;
        io->held = 0;
        compact(io);
    }
    for (;;) {
        int rc = scan_buffered(io, msg);
        if (rc != PL_ERR_AGAIN) return rc;
        if (io->in_eof) {
            junk_flush(io);
            if (io->mode != R_IDLE) {
                /* The writer went away mid-message: its rest never comes. Its
                 * bytes are not scanned again, so nothing inside it is ever
                 * taken for a message. */
                uint64_t n = io->skip_dropped + (io->ibuf.len - io->rpos);
                pl_log(PL_LOG_ERROR, NULL, 0, "input ended inside a message at offset %" PRIu64 " (%" PRIu64 " bytes dropped)",
                       io->cand_off, n);
                io->skipped += n;
                io->mode = R_IDLE;
                io->rpos = io->spos = io->ibuf.len;
            }
            return PL_ERR_EOF;
        }
        /* A message may hold the stream only so long (counted while this
         * reader waits for it, not while the stage is busy elsewhere). */
        if (io->mode != R_IDLE && io->cand_wait_ms > io->o.partial_ms) {
            if (io->mode == R_SKIP && !io->skip_dropped) {
                pl_log(PL_LOG_ERROR, NULL, 0, "oversized message at input offset %" PRIu64 " still incomplete after %" PRId64
                       " ms (%zu bytes held): resynchronising", io->cand_off, io->o.partial_ms, io->ibuf.len - io->rpos);
                resync(io, "an oversized message timed out");
            } else if (io->mode == R_SKIP) {
                io->skipped += io->skip_dropped;
                pl_log(PL_LOG_ERROR, NULL, 0, "oversized message at input offset %" PRIu64 " still incomplete after %" PRId64
                       " ms: %" PRIu64 " bytes dropped, reading on at offset %" PRIu64, io->cand_off, io->o.partial_ms,
                       io->skip_dropped, io->base + io->rpos);
                io->mode = R_IDLE;
            } else {
                pl_log(PL_LOG_ERROR, NULL, 0, "message at input offset %" PRIu64 " still incomplete after %" PRId64
                       " ms (%zu bytes held): resynchronising", io->cand_off, io->o.partial_ms, io->ibuf.len - io->rpos);
                resync(io, "an incomplete message timed out");
            }
            continue;
        }
        int wait = timeout_ms;
        if (io->mode != R_IDLE) {
            int64_t left = io->o.partial_ms - io->cand_wait_ms + 1;
            if (wait < 0 || wait > left) wait = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        int64_t t0 = pl_now_ms();
        int w = wait_input(io, &wait);
        int64_t waited = pl_now_ms() - t0;
        if (io->mode != R_IDLE) io->cand_wait_ms += waited;
        if (timeout_ms > 0) timeout_ms = waited >= timeout_ms ? 0 : timeout_ms - (int)waited;
        if (w < 0) return w;
        if (w == WAIT_STOP) return PL_ERR_AGAIN;
        if (w == WAIT_TIMEOUT) {
            if (timeout_ms == 0) return PL_ERR_AGAIN;
            continue;   /* the partial-message clock ran out first */
        }
        if (pl_buf_reserve(&io->ibuf, 64 * 1024)) return PL_ERR_NOMEM;
        ssize_t n = read(io->in_fd, io->ibuf.data + io->ibuf.len, io->ibuf.cap - io->ibuf.len - 1);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return PL_ERR_IO;
        }
        if (n == 0) { io->in_eof = 1; continue; }
        io->ibuf.len += (size_t)n;
        io->ibuf.data[io->ibuf.len] = 0;
    }
}

/* ================================================================ ZeroMQ input */

/* ZeroMQ frames each message, so a bad one never costs its neighbours:
 * it is dropped whole, and answered when its id can be read. */
static int recv_zmq(pl_io *io, msgpack_object *msg, int timeout_ms)
{
    for (;;) {
        int w = wait_input(io, &timeout_ms);
        if (w < 0) return w;
        if (w != WAIT_READY) return PL_ERR_AGAIN;
        if (io->zmsg_live) zmq_msg_close(&io->zmsg);
        zmq_msg_init(&io->zmsg);
        io->zmsg_live = 1;
        if (zmq_msg_recv(&io->zmsg, io->zin, ZMQ_DONTWAIT) < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return PL_ERR_IO;
        }
        size_t len = zmq_msg_size(&io->zmsg);
        const char *why;
        io->cand_off = 0;
        int rc = pl_wire_take_frame(io->scan, io->dec, zmq_msg_data(&io->zmsg), len, !io->o.raw, msg, &why);
        if (!rc) return PL_OK;
        const pl_wire_info *in = pl_wire_scan_info(io->scan);
        io->skipped += len;
        if (rc == PL_ERR_RANGE && !pl_wire_acceptable(in)) {
            reject(io, in, len);
            return PL_ERR_RANGE;
        }
        pl_log(PL_LOG_ERROR, in->has_id ? in->id : NULL, in->idlen, "dropped a %zu-byte ZeroMQ message: %s", len, why);
        if (rc == PL_ERR_RANGE) io->rejected = *in;   /* well framed, only memory failed */
        return rc;
    }
}

int pl_io_recv(pl_io *io, msgpack_object *msg, int timeout_ms)
{
    return io->zin ? recv_zmq(io, msg, timeout_ms) : recv_stdin(io, msg, timeout_ms);
}

/* ================================================================ output */

int pl_io_send(pl_io *io, const char *data, size_t len)
{
    if (io->zout) {
        for (;;) {
            if (zmq_send(io->zout, data, len, 0) >= 0) {
                if (io->peers == 0) io->queued_unconnected++;
                return PL_OK;
            }
            if (errno == EINTR && !g_stop) continue;
            return PL_ERR_IO;
        }
    }
    pl_buf_append(&io->obuf, data, len);
    if (!pl_buf_ok(&io->obuf)) return PL_ERR_NOMEM;
    return io->obuf.len >= 256 * 1024 ? pl_io_flush(io) : PL_OK;
}

int pl_io_flush(pl_io *io)
{
    monitor_poll(io, 0);
    size_t off = 0;
    while (off < io->obuf.len) {
        ssize_t n = write(io->out_fd, io->obuf.data + off, io->obuf.len - off);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            pl_buf_reset(&io->obuf);
            return PL_ERR_IO;
        }
        off += (size_t)n;
    }
    pl_buf_reset(&io->obuf);
    return PL_OK;
}
