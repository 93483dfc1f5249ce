/* chstage.c — per-request, per-choice state of a text-side stage. */
#include "chstage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

/* ===== state ===== */

enum { CH_NEW = 0, CH_LIVE, CH_DONE };

typedef struct creq {
    const pl_chstage_ops *ops;
    void     *user;
    uint32_t  n;            /* choices announced in start */
    uint32_t  cap;          /* slots allocated (grows to the highest index seen) */
    void    **ch;
    uint8_t  *st;
} creq;

struct pl_chstage {
    const pl_chstage_ops *ops;
    pl_strmap *reqs;
};

static void choice_drop(creq *r, uint32_t i)
{
    if (i >= r->cap) return;
    if (r->st[i] == CH_LIVE && r->ops->choice_free) r->ops->choice_free(r->ch[i]);
    r->ch[i] = NULL;
    r->st[i] = CH_DONE;
}

static void creq_free(void *p)
{
    creq *r = p;
    if (!r) return;
    for (uint32_t i = 0; i < r->cap; i++) choice_drop(r, i);
    if (r->ops->req_free) r->ops->req_free(r->user);
    free(r->ch);
    free(r->st);
    free(r);
}

int pl_chstage_new(pl_chstage **out, const pl_chstage_ops *ops)
{
    pl_chstage *cs = calloc(1, sizeof *cs);
    if (!cs) return PL_ERR_NOMEM;
    cs->ops = ops;
    if (pl_strmap_new(&cs->reqs)) { free(cs); return PL_ERR_NOMEM; }
    *out = cs;
    return PL_OK;
}

void pl_chstage_free(pl_chstage *cs)
{
    if (!cs) return;
    pl_strmap_free(cs->reqs, creq_free);
    free(cs);
}

size_t pl_chstage_live(const pl_chstage *cs) { return pl_strmap_count(cs->reqs); }

/* Slot for choice i, growing the arrays; NULL on allocation failure. */
static int slot_reserve(creq *r, uint32_t i)
{
    if (i < r->cap) return PL_OK;
    uint32_t cap = r->cap ? r->cap : 1;
    while (cap <= i) cap *= 2;
    if (cap > r->n) cap = r->n;
    void **ch = realloc(r->ch, cap * sizeof *ch);
    if (!ch) return PL_ERR_NOMEM;
    r->ch = ch;
    uint8_t *st = realloc(r->st, cap);
    if (!st) return PL_ERR_NOMEM;
    r->st = st;
    memset(r->ch + r->cap, 0, (cap - r->cap) * sizeof *ch);
    memset(r->st + r->cap, 0, cap - r->cap);
    r->cap = cap;
    return PL_OK;
}

/* ===== messages ===== */

/* Send an error for the request and forget it. */
static void fail(pl_chstage *cs, pl_stage *st, const char *id, size_t idlen, int rc, const char *text)
{
    if (rc == PL_ERR_NOMEM) pl_stage_send_error(st, id, idlen, 500, "InternalServerError", "out of memory");
    else pl_stage_bad_request(st, id, idlen, "%s", text);
    creq_free(pl_strmap_take(cs->reqs, id, idlen));
}

static void on_start(pl_chstage *cs, pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen)
{
    char err[512] = "";
    int64_t n = 1;
    int rc = pl_msg_get_int_in(msg, "n", 1, PL_CHSTAGE_MAX_N, &n);
    if (rc == PL_ERR_NOTFOUND) rc = PL_OK;
    if (rc) {
        creq_free(pl_strmap_take(cs->reqs, id, idlen));   /* a repeated start replaces */
        fail(cs, st, id, idlen, PL_ERR_INVALID, "start: 'n' must be an integer from 1 to 4096");
        return;
    }
    const msgpack_object *ctx = pl_msg_get(msg, "context");
    if (ctx && ctx->type == MSGPACK_OBJECT_NIL) ctx = NULL;
    creq *r = calloc(1, sizeof *r);
    if (!r) { fail(cs, st, id, idlen, PL_ERR_NOMEM, ""); return; }
    r->ops = cs->ops;
    r->n = (uint32_t)n;
    rc = cs->ops->req_new(&r->user, ctx, err, sizeof err);
    if (rc) {
        free(r);
        creq_free(pl_strmap_take(cs->reqs, id, idlen));
        fail(cs, st, id, idlen, rc, err);
        return;
    }
    void *old = NULL;
    if (pl_strmap_put(cs->reqs, id, idlen, r, &old)) { creq_free(r); fail(cs, st, id, idlen, PL_ERR_NOMEM, ""); return; }
    if (old) {
        pl_log(PL_LOG_WARN, id, idlen, "second start for a live request: state reset");
        creq_free(old);
    }
    if (cs->ops->on_start) cs->ops->on_start(st, r->user, msg);
    else pl_stage_forward(st, msg);
}

static void on_input(pl_chstage *cs, pl_stage *st, creq *r, const msgpack_object *msg, const char *id, size_t idlen)
{
    char err[512] = "";
    int64_t idx = 0;
    int rc = pl_msg_get_int_in(msg, "index", 0, (int64_t)r->n - 1, &idx);
    if (rc == PL_ERR_NOTFOUND) rc = PL_OK;
    if (rc) {
        snprintf(err, sizeof err, "%s: 'index' must be an integer from 0 to n-1 (%u)", cs->ops->input_type, r->n - 1);
        fail(cs, st, id, idlen, PL_ERR_INVALID, err);
        return;
    }
    const msgpack_object *fr = pl_msg_get(msg, "finish_reason");
    if (fr && fr->type != MSGPACK_OBJECT_NIL && fr->type != MSGPACK_OBJECT_STR) {
        snprintf(err, sizeof err, "%s: 'finish_reason' must be a string", cs->ops->input_type);
        fail(cs, st, id, idlen, PL_ERR_INVALID, err);
        return;
    }
    bool final = fr && fr->type == MSGPACK_OBJECT_STR;
    uint32_t i = (uint32_t)idx;
    if (slot_reserve(r, i)) { fail(cs, st, id, idlen, PL_ERR_NOMEM, ""); return; }
    if (r->st[i] == CH_DONE) {
        pl_log(PL_LOG_DEBUG, id, idlen, "%s for finished choice %u dropped", cs->ops->input_type, i);
        return;
    }
    if (r->st[i] == CH_NEW) {
        r->ch[i] = NULL;
        if (cs->ops->choice_new && (rc = cs->ops->choice_new(r->user, &r->ch[i]))) { fail(cs, st, id, idlen, rc, ""); return; }
        r->st[i] = CH_LIVE;
    }
    rc = cs->ops->on_input(st, r->user, r->ch[i], msg, final, err, sizeof err);
    if (rc) { fail(cs, st, id, idlen, rc, err); return; }
    if (final) choice_drop(r, i);
}

/* Let every live choice emit what it holds back (end of the request). */
static void flush_all(pl_chstage *cs, pl_stage *st, creq *r, const char *id, size_t idlen)
{
    if (!cs->ops->on_flush) return;
    for (uint32_t i = 0; i < r->cap; i++)
        if (r->st[i] == CH_LIVE) cs->ops->on_flush(st, r->user, r->ch[i], id, idlen, i);
}

void pl_chstage_on_msg(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *ud)
{
    pl_chstage *cs = ud;
    const msgpack_object *type = pl_msg_get(msg, "type");
    creq *r = pl_strmap_get(cs->reqs, id, idlen);
    if (pl_msg_str_eq(type, "start")) {
        on_start(cs, st, msg, id, idlen);
    } else if (pl_msg_str_eq(type, cs->ops->input_type)) {
        if (r) on_input(cs, st, r, msg, id, idlen);
        else pl_log(PL_LOG_DEBUG, id, idlen, "%s for an unknown request dropped", cs->ops->input_type);
    } else if (pl_msg_str_eq(type, "end")) {
        if (!r) { pl_log(PL_LOG_DEBUG, id, idlen, "end for an unknown request dropped"); return; }
        flush_all(cs, st, r, id, idlen);
        if (cs->ops->on_end) cs->ops->on_end(st, r->user, msg);
        else pl_stage_forward(st, msg);
        creq_free(pl_strmap_take(cs->reqs, id, idlen));
    } else if (pl_msg_str_eq(type, "abort")) {
        int64_t idx;
        int irc = r ? pl_msg_get_int_in(msg, "index", 0, (int64_t)r->n - 1, &idx) : PL_ERR_NOTFOUND;
        if (irc == PL_OK) {
            if (!slot_reserve(r, (uint32_t)idx)) choice_drop(r, (uint32_t)idx);
        } else if (r && irc == PL_ERR_NOTFOUND) {
            creq_free(pl_strmap_take(cs->reqs, id, idlen));
        }
        pl_stage_forward(st, msg);
    } else {
        if (pl_msg_str_eq(type, "error")) creq_free(pl_strmap_take(cs->reqs, id, idlen));
        pl_stage_forward(st, msg);
    }
}

/* Let out what every live choice holds; the choices end there (nothing
 * more can come for them), the requests stay until fail answers them. */
static void drain_one(const char *key, size_t len, void *val, void *ud)
{
    void **a = ud;
    creq *r = val;
    flush_all(a[0], a[1], r, key, len);
    for (uint32_t i = 0; i < r->cap; i++) choice_drop(r, i);
}

void pl_chstage_on_drain(pl_stage *st, void *ud)
{
    pl_chstage *cs = ud;
    void *a[2] = {cs, st};
    pl_strmap_each(cs->reqs, drain_one, a);
}

typedef struct {
    pl_stage   *st;
    int         code;
    const char *type, *why;
} fail_args;

static void fail_one(const char *key, size_t len, void *val, void *ud)
{
    (void)val;
    fail_args *f = ud;
    pl_stage_send_error(f->st, key, len, f->code, f->type, "%s", f->why);
}

static void on_fail(pl_stage *st, void *ud, int code, const char *err_type, const char *why)
{
    pl_chstage *cs = ud;
    fail_args f = {st, code, err_type, why};
    pl_strmap_each(cs->reqs, fail_one, &f);
    pl_strmap_clear(cs->reqs, creq_free);
}

static size_t on_live(void *ud) { return pl_chstage_live(ud); }

int pl_chstage_run(pl_chstage *cs, pl_stage *st)
{
    static const pl_stage_ops ops = {
        .on_msg = pl_chstage_on_msg, .intake = "start", .live = on_live, .fail = on_fail,
        .drain = pl_chstage_on_drain,
    };
    return pl_stage_serve(st, &ops, cs);
}

int pl_chstage_delta_text(const msgpack_object *msg, const char **s, size_t *n, char *err, size_t errlen)
{
    int rc = pl_msg_get_str(msg, "text", s, n);
    if (rc == PL_ERR_NOTFOUND) { *s = ""; *n = 0; return PL_OK; }
    if (rc) return pl_seterr(err, errlen, PL_ERR_INVALID, "delta: 'text' must be a string");
    return PL_OK;
}

msgpack_packer *pl_chstage_begin_delta(pl_stage *st, const char *id, size_t idlen, uint32_t index, uint32_t extra)
{
    msgpack_packer *pk = pl_stage_begin(st);
    msgpack_pack_map(pk, 3 + extra);
    pl_msg_pack_kv_cstr(pk, "type", "delta");
    pl_msg_pack_kv_str(pk, "id", id, idlen);
    pl_msg_pack_kv_int(pk, "index", index);
    return pk;
}

/* ===== command line ===== */

int pl_chstage_main(int argc, char **argv, const char *prog, const char *opt, const char *const *values,
                    const pl_chstage_ops *ops)
{
    pl_log_init(prog);
    pl_stage_opts so;
    pl_stage_opts_default(&so);
    if (pl_stage_opts_take(&so, prog, &argc, argv)) return 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: %s [%s NAME] [--in ENDPOINT] [--out ENDPOINT]\n  %s NAME       one of:", prog, opt, opt);
            for (const char *const *v = values; *v; v++) printf(" %s", *v);
            printf(" (default %s)\n" PL_STAGE_IO_HELP, values[0]);
            return 0;
        }
        if (i + 1 >= argc) { fprintf(stderr, "%s: %s needs a value (see --help)\n", prog, a); return 2; }
        const char *v = argv[++i];
        if (!strcmp(a, opt)) {
            const char *const *k = values;
            while (*k && strcmp(*k, v)) k++;
            if (!*k) { fprintf(stderr, "%s: unknown %s '%s'\n", prog, opt, v); return 2; }
        } else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
            return 2;
        }
    }
    char err[512];
    pl_stage *st;
    pl_chstage *cs;
    if (pl_stage_open_opts(&st, &so, err, sizeof err)) { fprintf(stderr, "%s: %s\n", prog, err); return 1; }
    if (pl_chstage_new(&cs, ops)) { pl_stage_close(st); fprintf(stderr, "%s: out of memory\n", prog); return 1; }
    int rc = pl_chstage_run(cs, st);
    pl_stage_close(st);
    pl_chstage_free(cs);
    return rc ? 1 : 0;
}
