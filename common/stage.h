/* stage.h — the loop every pipeline stage runs.
 *
 *   pl_stage_opts so;
 *   pl_stage_opts_default(&so);
 *   pl_stage_opts_take(&so, "glm-x", &argc, argv);   // --in, --out, limits, timeouts
 *   pl_stage *st;
 *   pl_stage_open_opts(&st, &so, err, sizeof err);
 *   pl_stage_serve(st, &ops, ctx);     // until EOF or a stop signal, then drains
 *   pl_stage_close(st);                // flushes, waits for ZeroMQ delivery
 *
 * The loop checks the envelope (a map with a string `type` and a valid `id`)
 * before calling the handler: a message without an id never reaches it
 * (io.h skips it as bytes that are not a message), one with an id but a bad
 * type gets an `error` message. A message io.h rejected (too large, nested
 * too deep) reaches the handler as the `error` that answers it, so the stage
 * drops that request's state like for any upstream error and forwards it.
 * The handler emits zero or more messages with begin/end, forward or
 * send_error.
 *
 * Stopping (docs/protocol.md §1 "Shutdown"):
 *   - EOF on the input: ops.drain lets out what is held; a stage whose work
 *     still moves without input (ops.step: the engine) finishes it; the
 *     requests that cannot finish any more (ops.live of a text stage, whose
 *     upstream is gone) get an `error` (503) from ops.fail.
 *   - SIGTERM/SIGINT: the stage drains. It keeps reading and handling
 *     messages, so in-flight requests finish and aborts still arrive; a
 *     message that would start new work (ops.intake) is answered `error`
 *     503; it exits once nothing is live and the input has been quiet for
 *     PL_STAGE_QUIET_MS, or at EOF. What is still live after --drain-timeout
 *     (or at a second signal) gets an `error` 503 from ops.fail.
 *   Then the output is flushed and the stage exits 0. */
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

/* What a stage tells the loop about its work. Only on_msg is required. */
typedef struct pl_stage_ops {
    pl_stage_fn on_msg;
    const char *intake;                    /* type that starts new work: refused (503) while draining */
    size_t (*live)(void *ud);              /* requests in flight (NULL: none outlive on_msg) */
    int    (*step)(pl_stage *st, void *ud);   /* work that moves without input, run while live > 0 */
    int    (*step_wait_ms)(void *ud);      /* ms until step can move (0: now); NULL: always now */
    /* Answer every live request with an `error` of this code and forget it. */
    void   (*fail)(pl_stage *st, void *ud, int code, const char *err_type, const char *why);
    pl_stage_drain_fn drain;               /* at EOF and at the end of a drain: let out what is held */
    int    (*wait_ms)(void *ud);           /* longest idle wait before tick is due (-1: none; NULL: no timers) */
    void   (*tick)(pl_stage *st, void *ud);   /* every round, idle or not: timers (may emit) */
} pl_stage_ops;

#define PL_STAGE_QUIET_MS 200   /* draining with nothing live: exit after this long without input */

/* Options every stage takes on its command line. */
typedef struct pl_stage_opts {
    const char *in, *out;     /* endpoints; NULL: stdin / stdout */
    pl_io_opts  io;
    int64_t     drain_ms;     /* after a stop signal: how long in-flight work may still take */
} pl_stage_opts;

void pl_stage_opts_default(pl_stage_opts *o);   /* stdio, io defaults, 25 s drain */
/* Take the stage options out of argv (compacting it, so a getopt loop that
 * follows never sees them): --in, --out, --max-message-bytes N,
 * --partial-timeout S, --linger S, --drain-timeout S. Returns 0, or -1 after
 * printing what is wrong with a value. */
int  pl_stage_opts_take(pl_stage_opts *o, const char *prog, int *argc, char **argv);

int  pl_stage_open(pl_stage **out, const char *in_ep, const char *out_ep, char *err, size_t errlen);
int  pl_stage_open_opts(pl_stage **out, const pl_stage_opts *o, char *err, size_t errlen);
void pl_stage_close(pl_stage *st);

/* Run until the input ends or a stop signal arrives, then stop as described
 * above. Returns 0, or PL_ERR_IO when the input or output failed. Tells the
 * supervisor (notify.h) READY=1 on entry, WATCHDOG=1 while it runs,
 * STOPPING=1 when it starts to drain or the input ends: call it once the
 * stage can serve. */
int pl_stage_serve(pl_stage *st, const pl_stage_ops *ops, void *ud);

/* pl_stage_serve for a stage whose every request ends inside fn. drain may be NULL. */
int pl_stage_run(pl_stage *st, pl_stage_fn fn, pl_stage_drain_fn drain, void *ud);

/* One round of the loop, for tests and tools: wait up to timeout_ms (0: just
 * look, < 0: block) for one message, check its envelope like pl_stage_serve
 * and call fn. Returns PL_OK when a message was consumed (handled or
 * dropped), PL_ERR_AGAIN when none came (or a stop signal arrived),
 * PL_ERR_EOF at end of input, PL_ERR_IO when the input or output failed.
 * Does not flush. */
int pl_stage_poll(pl_stage *st, int timeout_ms, pl_stage_fn fn, void *ud);

bool pl_stage_draining(const pl_stage *st);

/* Build one outgoing message: pack a single object with the returned packer,
 * then call pl_stage_end to queue it. */
msgpack_packer *pl_stage_begin(pl_stage *st);
int pl_stage_end(pl_stage *st);

/* Forward a message unchanged. */
int pl_stage_forward(pl_stage *st, const msgpack_object *msg);

/* Emit an `error` message (docs/protocol.md). code: HTTP status
 * (400 bad request, 500 internal, 503 stopping). err_type: OpenAI error type. */
int pl_stage_send_error(pl_stage *st, const char *id, size_t idlen, int code, const char *err_type,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Shorthand for a client error (400, BadRequestError). */
#define pl_stage_bad_request(st, id, idlen, ...) \
    pl_stage_send_error((st), (id), (idlen), 400, "BadRequestError", __VA_ARGS__)

pl_io *pl_stage_io(pl_stage *st);

/* Stage command lines share these options; this prints their help text. */
#define PL_STAGE_IO_HELP \
    "  --in ENDPOINT    read messages from a ZeroMQ PULL socket (binds; '>' prefix connects)\n" \
    "  --out ENDPOINT   write messages to a ZeroMQ PUSH socket (connects; '@' prefix binds)\n" \
    "                   default for both: stdin/stdout as a msgpack stream\n" \
    "  --max-message-bytes N  largest input message (default 33554432); larger ones are\n" \
    "                   skipped whole and their request answered with an error\n" \
    "  --partial-timeout S    seconds an incomplete stdin message may hold the stream (default 5)\n" \
    "  --drain-timeout S      after SIGTERM: seconds in-flight requests may take (default 25)\n" \
    "  --linger S             at exit: seconds undelivered ZeroMQ output may wait (default 30)\n"

#endif
