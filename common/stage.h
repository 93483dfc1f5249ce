/* stage.h — the loop every pipeline stage runs.
 *
 *   pl_stage *st;
 *   pl_stage_open(&st, in_ep, out_ep, err, sizeof err);
 *   pl_stage_run(st, on_msg, ctx);     // until EOF or SIGINT/SIGTERM
 *   pl_stage_close(st);                // flushes
 *
 * pl_stage_run checks the envelope (a map with a string `type` and a valid
 * `id`) before calling the handler: a message without an id is logged and
 * dropped, one with an id but a bad type gets an `error` message. The handler
 * then emits zero or more messages with begin/end, forward or send_error. */
#ifndef PL_STAGE_H
#define PL_STAGE_H

#include <stdbool.h>
#include <msgpack.h>
#include "io.h"
#include "msg.h"

typedef struct pl_stage pl_stage;

/* Called once per well-formed message. id/idlen point into msg. */
typedef void (*pl_stage_fn)(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *ud);
/* Called once at EOF/stop, before the output is flushed (may emit). */
typedef void (*pl_stage_drain_fn)(pl_stage *st, void *ud);

int  pl_stage_open(pl_stage **out, const char *in_ep, const char *out_ep, char *err, size_t errlen);
void pl_stage_close(pl_stage *st);

/* Run until the input ends or a stop signal arrives. Returns 0, or PL_ERR_IO
 * when the input or output failed. drain may be NULL. Tells the supervisor
 * (notify.h) READY=1 on entry, WATCHDOG=1 while it runs, STOPPING=1 when the
 * input ends: call it once the stage can serve. */
int pl_stage_run(pl_stage *st, pl_stage_fn fn, pl_stage_drain_fn drain, void *ud);

/* One round of the loop, for stages that do work between messages (the
 * engine steps while requests run): wait up to timeout_ms (0: just look,
 * < 0: block) for one message, check its envelope like pl_stage_run and call
 * fn. Returns PL_OK when a message was consumed (handled or dropped),
 * PL_ERR_AGAIN when none came, PL_ERR_EOF at end of input or on a stop
 * signal, PL_ERR_IO when the input or output failed. Does not flush. */
int pl_stage_poll(pl_stage *st, int timeout_ms, pl_stage_fn fn, void *ud);

/* Build one outgoing message: pack a single object with the returned packer,
 * then call pl_stage_end to queue it. */
msgpack_packer *pl_stage_begin(pl_stage *st);
int pl_stage_end(pl_stage *st);

/* Forward a message unchanged. */
int pl_stage_forward(pl_stage *st, const msgpack_object *msg);

/* Emit an `error` message (docs/protocol.md). code: HTTP status
 * (400 bad request, 500 internal). err_type: OpenAI error type. */
int pl_stage_send_error(pl_stage *st, const char *id, size_t idlen, int code, const char *err_type,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Shorthand for a client error (400, BadRequestError). */
#define pl_stage_bad_request(st, id, idlen, ...) \
    pl_stage_send_error((st), (id), (idlen), 400, "BadRequestError", __VA_ARGS__)

pl_io *pl_stage_io(pl_stage *st);

/* Stage command lines share --in/--out; this prints their help text. */
#define PL_STAGE_IO_HELP \
    "  --in ENDPOINT    read messages from a ZeroMQ PULL socket (binds; '>' prefix connects)\n" \
    "  --out ENDPOINT   write messages to a ZeroMQ PUSH socket (connects; '@' prefix binds)\n" \
    "                   default for both: stdin/stdout as a msgpack stream\n"

#endif
