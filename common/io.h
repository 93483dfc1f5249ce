/* io.h — one message input and one message output, over a pipe or ZeroMQ.
 *
 * Input: stdin (a stream of concatenated msgpack objects) or a ZeroMQ PULL
 * socket (one object per ZeroMQ message). Output: stdout or a PUSH socket.
 * Endpoint convention (docs/protocol.md §2): --in binds, --out connects; a
 * leading '@' forces bind, '>' forces connect.
 *
 * Output to stdout is buffered and flushed whenever the input would block, so
 * a stage in a pipe makes one write(2) per burst, not per message. */
#ifndef PL_IO_H
#define PL_IO_H

#include <stddef.h>
#include <msgpack.h>
#include "pl.h"

typedef struct pl_io pl_io;

/* in_ep / out_ep: NULL or "-" for stdin / stdout. */
int  pl_io_open(pl_io **out, const char *in_ep, const char *out_ep, char *err, size_t errlen);
void pl_io_close(pl_io *io);   /* flushes pending output */

/* Next message. timeout_ms < 0 blocks. Returns
 *   PL_OK          *msg valid until the next pl_io_recv on this io
 *   PL_ERR_AGAIN   nothing arrived within the timeout
 *   PL_ERR_EOF     input closed, or SIGINT/SIGTERM received
 *   PL_ERR_PARSE   unreadable bytes were discarded (already logged); call again
 *   PL_ERR_IO      the input failed */
int pl_io_recv(pl_io *io, msgpack_object *msg, int timeout_ms);

/* Queue one message (the bytes of one msgpack object). */
int pl_io_send(pl_io *io, const char *data, size_t len);
int pl_io_flush(pl_io *io);

/* Largest message accepted on input (bytes); larger ones are dropped with a log line. */
#define PL_IO_MAX_MSG (256u << 20)

/* Install SIGINT/SIGTERM handlers that make pl_io_recv return PL_ERR_EOF,
 * and ignore SIGPIPE (a closed downstream shows up as PL_ERR_IO). Called by
 * pl_io_open. */
void pl_io_install_signals(void);
int  pl_io_stopping(void);   /* a stop signal arrived */

#endif
