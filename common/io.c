/* io.c — stdin/stdout and ZeroMQ message transports. */
#include "io.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

struct pl_io {
    /* input */
    void            *zctx;
    void            *zin, *zout;      /* NULL when on stdin / stdout */
    int              in_fd, out_fd;
    int              in_eof;
    msgpack_unpacker unp;              /* stdin stream parser */
    msgpack_unpacked res;              /* the message handed out last */
    zmq_msg_t        zmsg;             /* backing store of a ZeroMQ message */
    int              zmsg_live;
    /* output */
    pl_buf           obuf;             /* pending bytes for stdout */
};

/* ================================================================ signals */

static volatile sig_atomic_t g_stop;

static void on_stop(int sig) { (void)sig; g_stop = 1; }

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

int pl_io_stopping(void) { return g_stop != 0; }

/* ================================================================ open/close */

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
    int linger = 2000;   /* on close, give queued output 2 s to leave */
    zmq_setsockopt(*sock, ZMQ_LINGER, &linger, sizeof linger);
    int hwm = 0;         /* never drop: back-pressure instead */
    zmq_setsockopt(*sock, type == ZMQ_PUSH ? ZMQ_SNDHWM : ZMQ_RCVHWM, &hwm, sizeof hwm);
    int64_t maxsz = PL_IO_MAX_MSG;
    if (type == ZMQ_PULL) zmq_setsockopt(*sock, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
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

/* A wait is cut into slices so a stop signal that another thread received
 * (a compute thread of the engine, say) is still noticed promptly. */
#define STOP_CHECK_MS 250
static int wait_slice(int timeout_ms) { return timeout_ms < 0 || timeout_ms > STOP_CHECK_MS ? STOP_CHECK_MS : timeout_ms; }

/* Wait until the input is readable: 1, or PL_ERR_AGAIN when *timeout_ms ran
 * out (it is decremented by the time waited), PL_ERR_EOF on a stop signal,
 * PL_ERR_IO. zmq_poll serves both inputs: it takes a plain fd too. Pending
 * output is flushed before any wait. */
static int wait_input(pl_io *io, int *timeout_ms)
{
    for (;;) {
        if (g_stop) return PL_ERR_EOF;
        if (*timeout_ms != 0) pl_io_flush(io);   /* about to wait: let the output go */
        zmq_pollitem_t it = {io->zin, io->zin ? 0 : io->in_fd, ZMQ_POLLIN, 0};
        int slice = wait_slice(*timeout_ms);
        int pr = zmq_poll(&it, 1, slice);
        if (pr < 0) {
            if (errno == EINTR) continue;
            return PL_ERR_IO;
        }
        if (pr > 0) return 1;
        if (*timeout_ms >= 0 && (*timeout_ms -= slice) <= 0) return PL_ERR_AGAIN;
    }
}

int pl_io_open(pl_io **out, const char *in_ep, const char *out_ep, char *err, size_t errlen)
{
    *out = NULL;
    pl_io *io = calloc(1, sizeof *io);
    if (!io) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    io->in_fd = STDIN_FILENO;
    io->out_fd = STDOUT_FILENO;
    pl_buf_init(&io->obuf);
    if (!msgpack_unpacker_init(&io->unp, 64 * 1024)) {
        free(io);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    msgpack_unpacked_init(&io->res);
    pl_io_install_signals();
    int rc = 0;
    if (!is_stdio(in_ep)) rc = zsock_open_masked(io, &io->zin, ZMQ_PULL, in_ep, 1, err, errlen);
    if (!rc && !is_stdio(out_ep)) rc = zsock_open_masked(io, &io->zout, ZMQ_PUSH, out_ep, 0, err, errlen);
    if (rc) { pl_io_close(io); return rc; }
    *out = io;
    return PL_OK;
}

void pl_io_close(pl_io *io)
{
    if (!io) return;
    pl_io_flush(io);
    if (io->zmsg_live) zmq_msg_close(&io->zmsg);
    if (io->zin) zmq_close(io->zin);
    if (io->zout) zmq_close(io->zout);
    if (io->zctx) zmq_ctx_term(io->zctx);
    msgpack_unpacked_destroy(&io->res);
    msgpack_unpacker_destroy(&io->unp);
    pl_buf_free(&io->obuf);
    free(io);
}

/* ================================================================ input */

static int recv_stdin(pl_io *io, msgpack_object *msg, int timeout_ms)
{
    for (;;) {
        msgpack_unpack_return r = msgpack_unpacker_next(&io->unp, &io->res);
        if (r == MSGPACK_UNPACK_SUCCESS) { *msg = io->res.data; return PL_OK; }
        if (r == MSGPACK_UNPACK_PARSE_ERROR || r == MSGPACK_UNPACK_NOMEM_ERROR) {
            /* No framing to resynchronise on: drop what is buffered. */
            pl_log(PL_LOG_ERROR, NULL, 0, "malformed msgpack on input (%s): discarding buffered bytes",
                   r == MSGPACK_UNPACK_PARSE_ERROR ? "parse error" : "too large");
            msgpack_unpacker_destroy(&io->unp);
            if (!msgpack_unpacker_init(&io->unp, 64 * 1024)) return PL_ERR_NOMEM;
            return PL_ERR_PARSE;
        }
        /* CONTINUE: need more bytes */
        if (io->in_eof) {
            size_t left = msgpack_unpacker_message_size(&io->unp);
            if (left) pl_log(PL_LOG_ERROR, NULL, 0, "input ended inside a message (%zu bytes dropped)", left);
            return PL_ERR_EOF;
        }
        if (msgpack_unpacker_message_size(&io->unp) > PL_IO_MAX_MSG) {
            pl_log(PL_LOG_ERROR, NULL, 0, "message larger than %u bytes: discarding", PL_IO_MAX_MSG);
            msgpack_unpacker_destroy(&io->unp);
            if (!msgpack_unpacker_init(&io->unp, 64 * 1024)) return PL_ERR_NOMEM;
            return PL_ERR_PARSE;
        }
        int w = wait_input(io, &timeout_ms);
        if (w < 0) return w;
        if (!msgpack_unpacker_reserve_buffer(&io->unp, 64 * 1024)) return PL_ERR_NOMEM;
        ssize_t n = read(io->in_fd, msgpack_unpacker_buffer(&io->unp), msgpack_unpacker_buffer_capacity(&io->unp));
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return PL_ERR_IO;
        }
        if (n == 0) { io->in_eof = 1; continue; }
        msgpack_unpacker_buffer_consumed(&io->unp, (size_t)n);
    }
}

static int recv_zmq(pl_io *io, msgpack_object *msg, int timeout_ms)
{
    for (;;) {
        int w = wait_input(io, &timeout_ms);
        if (w < 0) return w;
        if (io->zmsg_live) zmq_msg_close(&io->zmsg);
        zmq_msg_init(&io->zmsg);
        io->zmsg_live = 1;
        if (zmq_msg_recv(&io->zmsg, io->zin, ZMQ_DONTWAIT) < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return PL_ERR_IO;
        }
        size_t off = 0;
        msgpack_unpack_return r = msgpack_unpack_next(&io->res, zmq_msg_data(&io->zmsg), zmq_msg_size(&io->zmsg), &off);
        if (r == MSGPACK_UNPACK_SUCCESS && off == zmq_msg_size(&io->zmsg)) {
            *msg = io->res.data;
            return PL_OK;
        }
        pl_log(PL_LOG_ERROR, NULL, 0, "malformed msgpack in a %zu-byte ZeroMQ message: dropped", zmq_msg_size(&io->zmsg));
        return PL_ERR_PARSE;
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
            if (zmq_send(io->zout, data, len, 0) >= 0) return PL_OK;
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
