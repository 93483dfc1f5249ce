/* stage.c — receive, validate, dispatch, emit; stop gracefully. */
#include "stage.h"
#include "notify.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pl_stage {
    pl_io          *io;
    msgpack_sbuffer sbuf;   /* the message being built between begin and end */
    msgpack_packer  pk;
    bool            io_failed;
    bool            draining;
    const char     *intake;  /* refused while draining */
    int64_t         drain_ms;
};

/* ================================================================ options */

void pl_stage_opts_default(pl_stage_opts *o)
{
    memset(o, 0, sizeof *o);
    pl_io_opts_default(&o->io);
    o->drain_ms = 25000;
}

int pl_stage_opts_take(pl_stage_opts *o, const char *prog, int *argc, char **argv)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = i + 1 < *argc ? argv[i + 1] : NULL;
        static const char *const names[] = {"--in", "--out", "--max-message-bytes", "--partial-timeout",
                                            "--linger", "--drain-timeout"};
        int k = -1;
        for (int j = 0; j < (int)PL_ARRAY_LEN(names); j++)
            if (!strcmp(a, names[j])) k = j;
        if (!strcmp(a, "--")) {   /* the rest is not ours */
            while (i < *argc) argv[out++] = argv[i++];
            break;
        }
        if (k < 0) { argv[out++] = argv[i]; continue; }
        int64_t n = 0;
        int bad = !v;
        if (!bad && k == 0) o->in = v;
        else if (!bad && k == 1) o->out = v;
        else if (!bad && k == 2) { bad = pl_parse_i64(v, 1024, INT64_MAX / 8, &n); o->io.max_msg = (size_t)n; }
        else if (!bad && k == 3) bad = pl_parse_seconds_ms(v, 86400000, &o->io.partial_ms);
        else if (!bad && k == 4) bad = pl_parse_seconds_ms(v, 86400000, &o->io.linger_ms);
        else if (!bad && k == 5) bad = pl_parse_seconds_ms(v, 86400000, &o->drain_ms);
        if (bad) {
            fprintf(stderr, "%s: %s needs %s\n", prog, a,
                    k <= 1 ? "an endpoint" : k == 2 ? "a number of bytes (at least 1024)" : "a number of seconds");
            return -1;
        }
        i++;
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

/* ================================================================ open/close */

int pl_stage_open_opts(pl_stage **out, const pl_stage_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    pl_stage *st = calloc(1, sizeof *st);
    if (!st) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    int rc = pl_io_open_opts(&st->io, o->in, o->out, &o->io, err, errlen);
    if (rc) { free(st); return rc; }
    st->drain_ms = o->drain_ms;
    msgpack_sbuffer_init(&st->sbuf);
    msgpack_packer_init(&st->pk, &st->sbuf, msgpack_sbuffer_write);
    *out = st;
    return PL_OK;
}

int pl_stage_open(pl_stage **out, const char *in_ep, const char *out_ep, char *err, size_t errlen)
{
    pl_stage_opts o;
    pl_stage_opts_default(&o);
    o.in = in_ep;
    o.out = out_ep;
    return pl_stage_open_opts(out, &o, err, errlen);
}

void pl_stage_close(pl_stage *st)
{
    if (!st) return;
    pl_io_close(st->io);
    msgpack_sbuffer_destroy(&st->sbuf);
    free(st);
}

pl_io *pl_stage_io(pl_stage *st) { return st->io; }
bool pl_stage_draining(const pl_stage *st) { return st->draining; }

/* ================================================================ emit */

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

/* ================================================================ receive */

/* A message the input rejected (too large, too deep) is answered by the
 * `error` it would have caused: handed to fn like an error from upstream,
 * so the stage also forgets the request and forwards the error. */
static void dispatch_rejected(pl_stage *st, pl_stage_fn fn, void *ud)
{
    const pl_wire_info *in = pl_io_rejected(st->io);
    char why[256];
    pl_wire_reject_text(in, pl_io_max_msg(st->io), why, sizeof why);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pl_msg_pack_error(&pk, in->id, in->idlen, in->oversized || in->too_deep ? 400 : 500,
                      in->oversized || in->too_deep ? "BadRequestError" : "InternalServerError",
                      in->oversized || in->too_deep ? why : "out of memory reading the message");
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (sb.data && msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS) {
        const char *id;
        size_t idlen;
        if (pl_msg_id(&u.data, &id, &idlen) == PL_OK) fn(st, &u.data, id, idlen, ud);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

int pl_stage_poll(pl_stage *st, int timeout_ms, pl_stage_fn fn, void *ud)
{
    if (st->io_failed) return PL_ERR_IO;
    msgpack_object msg;
    int rc = pl_io_recv(st->io, &msg, timeout_ms);
    if (rc == PL_ERR_PARSE) return PL_OK;   /* bytes dropped and logged: keep going */
    if (rc == PL_ERR_RANGE) {
        dispatch_rejected(st, fn, ud);
        return st->io_failed ? PL_ERR_IO : PL_OK;
    }
    if (rc) return rc;
    const char *id;
    size_t idlen;
    if (msg.type != MSGPACK_OBJECT_MAP || pl_msg_id(&msg, &id, &idlen)) {   /* io.h lets none of these through */
        pl_log(PL_LOG_ERROR, NULL, 0, "dropped a message without a valid id");
        return PL_OK;
    }
    const msgpack_object *type = pl_msg_get(&msg, "type");
    if (!type || type->type != MSGPACK_OBJECT_STR) {
        pl_stage_send_error(st, id, idlen, 400, "BadRequestError", "message has no string 'type' field");
        return PL_OK;
    }
    if (st->draining && st->intake && pl_msg_str_eq(type, st->intake)) {
        pl_stage_send_error(st, id, idlen, 503, "ServiceUnavailableError", "%s: the stage is shutting down", st->intake);
        return PL_OK;
    }
    fn(st, &msg, id, idlen, ud);
    return st->io_failed ? PL_ERR_IO : PL_OK;
}

/* ================================================================ the loop */

#define MSGS_PER_ROUND 256   /* messages taken between two steps at most: steps keep flowing under a flood */

static size_t live_count(const pl_stage_ops *ops, void *ud) { return ops->live ? ops->live(ud) : 0; }
static int step_due(const pl_stage_ops *ops, void *ud)
{
    int ms = ops->step_wait_ms ? ops->step_wait_ms(ud) : 0;
    return ms < 0 ? 0 : ms;
}

static void fail_live(pl_stage *st, const pl_stage_ops *ops, void *ud, const char *why)
{
    if (ops->drain) ops->drain(st, ud);
    size_t n = live_count(ops, ud);
    if (!n || !ops->fail) return;
    pl_log(PL_LOG_WARN, NULL, 0, "%zu request%s still in flight: answered with an error (%s)", n, n == 1 ? "" : "s", why);
    ops->fail(st, ud, 503, "ServiceUnavailableError", why);
}

int pl_stage_serve(pl_stage *st, const pl_stage_ops *ops, void *ud)
{
    bool input_open = true, told_stopping = false;
    int64_t deadline = 0, last_input = pl_now_ms();
    int rc = PL_OK;
    st->intake = ops->intake;
    pl_notify_ready();   /* input bound, model loaded by the caller: serving from here */
    while (!st->io_failed) {
        int stops = pl_io_stopping();
        int64_t now = pl_now_ms();
        if (stops && !st->draining) {
            st->draining = true;
            if (!told_stopping) { told_stopping = true; pl_notify_stopping(); }
            deadline = now + st->drain_ms;
            size_t n = live_count(ops, ud);
            pl_log(PL_LOG_INFO, NULL, 0, "stop signal: draining (%zu request%s in flight, up to %" PRId64 " ms)", n,
                   n == 1 ? "" : "s", st->drain_ms);
        }
        if (st->draining && (stops >= 2 || now >= deadline)) {
            fail_live(st, ops, ud, stops >= 2 ? "the stage was stopped" : "the stage stopped before the request finished (--drain-timeout)");
            break;
        }
        size_t live = live_count(ops, ud);
        if (!input_open) {
            if (!told_stopping) { told_stopping = true; pl_notify_stopping(); }
            if (!live || !ops->step) {
                fail_live(st, ops, ud, "the input ended before the request finished");
                break;
            }
        } else if (st->draining && !live && now - last_input >= PL_STAGE_QUIET_MS) {
            if (ops->drain) ops->drain(st, ud);
            break;
        }
        /* Take what has arrived: wait only when nothing else can move. */
        int timeout = -1, due = live && ops->step ? step_due(ops, ud) : -1;
        if (due == 0) timeout = 0;
        else if (st->draining || due > 0) {
            int64_t t = !st->draining ? due : live ? deadline - now : PL_STAGE_QUIET_MS - (now - last_input);
            if (st->draining && t > deadline - now) t = deadline - now;
            if (due > 0 && t > due) t = due;
            timeout = t < 0 ? 0 : t > INT32_MAX ? INT32_MAX : (int)t;
        }
        int tw = ops->wait_ms ? ops->wait_ms(ud) : -1;   /* wake for the stage's own timers */
        if (tw >= 0 && (timeout < 0 || timeout > tw)) timeout = tw;
        int wd = pl_notify_watchdog_ms();   /* wake in time for the supervisor's watchdog */
        if (wd >= 0 && (timeout < 0 || timeout > wd)) timeout = wd;
        for (int i = 0; input_open && i < MSGS_PER_ROUND; i++) {
            int prc = pl_stage_poll(st, i ? 0 : timeout, ops->on_msg, ud);
            if (prc == PL_ERR_AGAIN) break;
            if (prc == PL_ERR_EOF) { input_open = false; break; }
            if (prc) { rc = prc; break; }
            last_input = pl_now_ms();
        }
        if (rc) break;
        if (!input_open && due > 0 && timeout > 0) {   /* nothing to read any more: wait for the step here */
            struct timespec ts = {timeout / 1000, (long)(timeout % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        pl_notify_watchdog();
        if (ops->step && live_count(ops, ud) && step_due(ops, ud) == 0 && (rc = ops->step(st, ud))) break;
        if (ops->tick) ops->tick(st, ud);
        if ((rc = pl_io_flush(st->io))) break;
    }
    if (pl_io_flush(st->io) || st->io_failed) rc = PL_ERR_IO;
    return rc;
}

int pl_stage_run(pl_stage *st, pl_stage_fn fn, pl_stage_drain_fn drain, void *ud)
{
    pl_stage_ops ops = {.on_msg = fn, .drain = drain};
    return pl_stage_serve(st, &ops, ud);
}
