/* io.h — one message input and one message output, over a pipe or ZeroMQ.
 *
 * Input: stdin (a stream of concatenated msgpack objects) or a ZeroMQ PULL
 * socket (one object per ZeroMQ message). Output: stdout or a PUSH socket.
 * Endpoint convention (docs/protocol.md §2): --in binds, --out connects; a
 * leading '@' forces bind, '>' forces connect.
 *
 * Input is framed and checked by wire.h before anything is decoded
 * (docs/protocol.md §2 "Bad input"):
 *   - a message larger than max_msg, or nested deeper than PL_MSG_MAX_DEPTH,
 *     is skipped whole (exactly its declared length: nothing inside it is
 *     ever read as a message) and, when its root map has an id, reported so
 *     the stage answers that request with an `error`;
 *   - bytes that cannot be a message (no map, no id, a byte msgpack never
 *     uses) are skipped one at a time until a message starts; every skip is
 *     logged with its byte offset on the stream;
 *   - a stdin message that stays incomplete for partial_ms while the stream
 *     goes on is given up: the reader resynchronises one byte after its start.
 *
 * Output to stdout is buffered and flushed whenever the input would block, so
 * a stage in a pipe makes one write(2) per burst, not per message. ZeroMQ
 * output that no downstream has taken is waited for up to linger_ms when the
 * stage closes, and what is still undelivered then is counted in a log line. */
#ifndef PL_IO_H
#define PL_IO_H

#include <stddef.h>
#include <msgpack.h>
#include "pl.h"
#include "wire.h"

typedef struct pl_io pl_io;

/* Largest message accepted on input by default (bytes). Every stage receives
 * the request's content (glm-tokenize the body, the others `context`), so one
 * default fits all: 4x glm-gateway's default --max-request-bytes (8 MiB). */
#define PL_IO_MAX_MSG (32u << 20)

typedef struct pl_io_opts {
    size_t  max_msg;      /* largest input message, bytes */
    int64_t partial_ms;   /* how long an incomplete stdin message may hold the stream */
    int64_t linger_ms;    /* on close: how long undelivered ZeroMQ output may wait */
    bool    raw;          /* any msgpack object, not only protocol messages (glm-msg) */
} pl_io_opts;

void pl_io_opts_default(pl_io_opts *o);   /* PL_IO_MAX_MSG, 5 s, 30 s */

/* in_ep / out_ep: NULL or "-" for stdin / stdout. o may be NULL (defaults). */
int  pl_io_open(pl_io **out, const char *in_ep, const char *out_ep, char *err, size_t errlen);
int  pl_io_open_opts(pl_io **out, const char *in_ep, const char *out_ep, const pl_io_opts *o,
                     char *err, size_t errlen);
void pl_io_close(pl_io *io);   /* flushes pending output; waits for ZeroMQ delivery (linger) */

/* Next message. timeout_ms < 0 blocks. Returns
 *   PL_OK          *msg valid until the next pl_io_recv on this io
 *   PL_ERR_AGAIN   nothing arrived within the timeout, or a stop signal arrived
 *                  (pl_io_stopping() tells)
 *   PL_ERR_EOF     input closed
 *   PL_ERR_PARSE   bytes were skipped (already logged); call again
 *   PL_ERR_RANGE   a message was rejected (oversized, too deep) and its id is
 *                  known: pl_io_rejected() describes it; call again
 *   PL_ERR_IO      the input failed */
int pl_io_recv(pl_io *io, msgpack_object *msg, int timeout_ms);

/* Bytes skipped or dropped on input since open (logged as they go). */
uint64_t pl_io_skipped(const pl_io *io);

/* The message behind the last PL_ERR_RANGE (has_id is true). */
const pl_wire_info *pl_io_rejected(const pl_io *io);
size_t pl_io_max_msg(const pl_io *io);

/* Queue one message (the bytes of one msgpack object). */
int pl_io_send(pl_io *io, const char *data, size_t len);
int pl_io_flush(pl_io *io);

/* Install SIGINT/SIGTERM handlers that make pl_io_recv return PL_ERR_AGAIN
 * at once, and ignore SIGPIPE (a closed downstream shows up as PL_ERR_IO).
 * Called by pl_io_open. */
void pl_io_install_signals(void);
int  pl_io_stopping(void);   /* stop signals received so far (0, 1: drain, 2+: stop now) */

#endif
