/* stage.c — receive, validate, dispatch, emit. */
#include "stage.h"
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct pl_stage {
    pl_io          *io;
    msgpack_sbuffer sbuf;   /* the message being built between begin and end */
    msgpack_packer  pk;
    bool            io_failed;
};

int pl_stage_open(pl_stage **out, const char *in_ep, const char *out_ep, char *err, size_t errlen)
{
    *out = NULL;
    pl_stage *st = calloc(1, sizeof *st);
    if (!st) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    int rc = pl_io_open(&st->io, in_ep, out_ep, err, errlen);
    if (rc) { free(st); return rc; }
    msgpack_sbuffer_init(&st->sbuf);
    msgpack_packer_init(&st->pk, &st->sbuf, msgpack_sbuffer_write);
    *out = st;
    return PL_OK;
}

void pl_stage_close(pl_stage *st)
{
    if (!st) return;
    pl_io_close(st->io);
    msgpack_sbuffer_destroy(&st->sbuf);
    free(st);
}

pl_io *pl_stage_io(pl_stage *st) { return st->io; }

msgpack_packer *pl_stage_begin(pl_stage *st)
{
    msgpack_sbuffer_clear(&st->sbuf);
    return &st->pk;
}

int pl_stage_end(pl_stage *st)
{
    int rc = pl_io_send(st->io, st->sbuf.data, st->sbuf.size);
    msgpack_sbuffer_clear(&st->sbuf);
    if (rc) st->io_failed = true;
    return rc;
}

int pl_stage_forward(pl_stage *st, const msgpack_object *msg)
{
    msgpack_pack_object(pl_stage_begin(st), *msg);
    return pl_stage_end(st);
}

int pl_stage_send_error(pl_stage *st, const char *id, size_t idlen, int code, const char *err_type,
                        const char *fmt, ...)
{
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    pl_log(code >= 500 ? PL_LOG_ERROR : PL_LOG_WARN, id, idlen, "error %d: %s", code, text);
    pl_msg_pack_error(pl_stage_begin(st), id, idlen, code, err_type, text);
    return pl_stage_end(st);
}

int pl_stage_poll(pl_stage *st, int timeout_ms, pl_stage_fn fn, void *ud)
{
    if (st->io_failed) return PL_ERR_IO;
    msgpack_object msg;
    int rc = pl_io_recv(st->io, &msg, timeout_ms);
    if (rc == PL_ERR_PARSE) return PL_OK;   /* bytes dropped and logged: keep going */
    if (rc) return rc;
    const char *id;
    size_t idlen;
    if (msg.type != MSGPACK_OBJECT_MAP) {
        pl_log(PL_LOG_ERROR, NULL, 0, "dropped a message that is not a map");
        return PL_OK;
    }
    int idrc = pl_msg_id(&msg, &id, &idlen);
    if (idrc) {
        pl_log(PL_LOG_ERROR, NULL, 0, "dropped a message with %s id",
               idrc == PL_ERR_NOTFOUND ? "no" : "an invalid (non-string, empty or over-long)");
        return PL_OK;
    }
    const msgpack_object *type = pl_msg_get(&msg, "type");
    if (!type || type->type != MSGPACK_OBJECT_STR) {
        pl_stage_send_error(st, id, idlen, 400, "BadRequestError", "message has no string 'type' field");
        return PL_OK;
    }
    fn(st, &msg, id, idlen, ud);
    return st->io_failed ? PL_ERR_IO : PL_OK;
}

int pl_stage_run(pl_stage *st, pl_stage_fn fn, pl_stage_drain_fn drain, void *ud)
{
    int rc = 0;
    pl_notify_ready();   /* input bound, model loaded by the caller: serving from here */
    while (!st->io_failed) {
        rc = pl_stage_poll(st, pl_notify_watchdog_ms(), fn, ud);
        pl_notify_watchdog();
        if (rc == PL_OK || rc == PL_ERR_AGAIN) { rc = 0; continue; }
        if (rc == PL_ERR_EOF) rc = 0;
        break;
    }
    pl_notify_stopping();
    if (drain) drain(st, ud);
    if (pl_io_flush(st->io) || st->io_failed) rc = PL_ERR_IO;
    return rc;
}
