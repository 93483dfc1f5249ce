/* glm-detok — token ids -> text deltas, special-token skipping, stop strings,
 * logprob token strings. Reads `start`/`tokens`/`end`, writes `start`/`delta`/
 * `end` (docs/protocol.md); everything else passes through. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detok.h"
#include "map.h"
#include "stage.h"

#define DTK_MAX_N 4096

/* ================================================================ state */

typedef struct dtk_req {
    dtk_stops   stops;
    size_t      n;
    dtk_choice *choices;   /* [n] */
} dtk_req;

typedef struct dtk_app {
    pl_tokenizer *tk;
    pl_map        reqs;    /* id -> dtk_req */
    pl_buf        text;    /* scratch: the delta's text */
    pl_buf        tmp;     /* scratch: token strings */
    int32_t      *ids;     /* scratch: token ids of one message */
    size_t        ids_cap;
} dtk_app;

static void req_free(dtk_req *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) dtk_choice_free(&r->choices[i]);
    free(r->choices);
    dtk_stops_free(&r->stops);
    free(r);
}

static void req_drop(dtk_app *a, const char *id, size_t idlen)
{
    req_free(pl_map_del(&a->reqs, id, idlen));
}

/* ================================================================ start */

static bool ctx_bool(const msgpack_object *ctx, const char *key, bool def)
{
    bool v;
    return pl_msg_get_bool(ctx, key, &v) == 0 ? v : def;
}

static void on_start(dtk_app *a, pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen)
{
    int64_t n = 1;
    const msgpack_object *ctx = NULL;
    const msgpack_object_array *stop = NULL;
    int rc = pl_msg_get_int(msg, "n", &n);
    if (rc == PL_ERR_NOTFOUND) rc = 0, n = 1;
    if (!rc && (n < 1 || n > DTK_MAX_N)) rc = PL_ERR_RANGE;
    if (!rc && pl_msg_get_map(msg, "context", &ctx) == PL_ERR_INVALID) rc = PL_ERR_INVALID;
    if (!rc && ctx && pl_msg_get_array(ctx, "stop", &stop) == PL_ERR_INVALID) rc = PL_ERR_INVALID;
    if (rc) {
        pl_stage_bad_request(st, id, idlen, "start: 'n' must be 1..%d and 'context.stop' a list of strings", DTK_MAX_N);
        return;
    }
    req_drop(a, id, idlen);   /* a reused id starts afresh */
    dtk_req *r = calloc(1, sizeof *r);
    if (!r || !(r->choices = calloc((size_t)n, sizeof *r->choices))) {
        free(r);
        pl_stage_send_error(st, id, idlen, 500, "InternalServerError", "out of memory");
        return;
    }
    r->n = (size_t)n;
    dtk_stops_init(&r->stops);
    for (uint32_t i = 0; stop && i < stop->size && !rc; i++) {
        const msgpack_object *s = &stop->ptr[i];
        if (s->type != MSGPACK_OBJECT_STR) rc = PL_ERR_INVALID;
        else rc = dtk_stops_add(&r->stops, s->via.str.ptr, s->via.str.size);
    }
    bool skip = ctx_bool(ctx, "skip_special_tokens", true);
    bool incl = ctx_bool(ctx, "include_stop_str_in_output", false);
    for (size_t i = 0; !rc && i < r->n; i++) rc = dtk_choice_init(&r->choices[i], &r->stops, skip, incl);
    if (!rc) rc = pl_map_put(&a->reqs, id, idlen, r);
    if (rc) {
        req_free(r);
        pl_stage_bad_request(st, id, idlen, "bad stop strings (at most %d, each at most %d bytes): %s",
                             DTK_MAX_STOPS, DTK_MAX_STOP_BYTES, pl_strerror(rc));
        return;
    }
    pl_stage_forward(st, msg);
}

/* ================================================================ tokens */

/* Engine logprobs {logprob, top: [[id, lp], ...]} -> {token, bytes, logprob, top: [{token, bytes, logprob}]} */
static void pack_token_entry(dtk_app *a, msgpack_packer *pk, int64_t id, const msgpack_object *lp, bool with_top)
{
    pl_buf_reset(&a->tmp);
    dtk_token_text(a->tk, (int32_t)id, &a->tmp);
    msgpack_pack_map(pk, with_top ? 5 : 4);
    pl_msg_pack_kv_str(pk, "token", a->tmp.data ? a->tmp.data : "", a->tmp.len);
    pl_msg_pack_cstr(pk, "bytes");
    msgpack_pack_array(pk, a->tmp.len);
    for (size_t i = 0; i < a->tmp.len; i++) msgpack_pack_uint8(pk, (uint8_t)a->tmp.data[i]);
    pl_msg_pack_kv_int(pk, "token_id", id);
    pl_msg_pack_cstr(pk, "logprob");
    if (lp) msgpack_pack_object(pk, *lp);
    else msgpack_pack_nil(pk);
}

static void pack_logprobs(dtk_app *a, msgpack_packer *pk, const msgpack_object_array *lps, const int32_t *ids, size_t n)
{
    msgpack_pack_array(pk, lps->size);
    for (uint32_t i = 0; i < lps->size; i++) {
        const msgpack_object *e = &lps->ptr[i];
        const msgpack_object_array *top = NULL;
        pl_msg_get_array(e, "top", &top);
        pack_token_entry(a, pk, i < n ? ids[i] : -1, pl_msg_get(e, "logprob"), true);
        pl_msg_pack_cstr(pk, "top");
        uint32_t ntop = top ? top->size : 0;
        msgpack_pack_array(pk, ntop);
        for (uint32_t j = 0; j < ntop; j++) {
            const msgpack_object *pair = &top->ptr[j];
            int64_t tid = -1;
            const msgpack_object *tlp = NULL;
            if (pair->type == MSGPACK_OBJECT_ARRAY && pair->via.array.size == 2) {
                pl_msg_as_int(&pair->via.array.ptr[0], &tid);
                tlp = &pair->via.array.ptr[1];
            }
            pack_token_entry(a, pk, tid, tlp, false);
        }
    }
}

static int read_ids(dtk_app *a, const msgpack_object_array *arr)
{
    if (arr->size > a->ids_cap) {
        int32_t *p = realloc(a->ids, sizeof *p * arr->size);
        if (!p) return PL_ERR_NOMEM;
        a->ids = p;
        a->ids_cap = arr->size;
    }
    for (uint32_t i = 0; i < arr->size; i++) {
        int64_t v;
        if (pl_msg_as_int(&arr->ptr[i], &v) || v < 0 || v > INT32_MAX) return PL_ERR_INVALID;
        a->ids[i] = (int32_t)v;
    }
    return PL_OK;
}

static void on_tokens(dtk_app *a, pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen)
{
    dtk_req *r = pl_map_get(&a->reqs, id, idlen);
    if (!r) {
        pl_log(PL_LOG_DEBUG, id, idlen, "tokens for an unknown request: dropped");
        return;
    }
    int64_t index = 0;
    const msgpack_object_array *arr = NULL;
    int rc = pl_msg_get_int(msg, "index", &index);
    if (rc == PL_ERR_NOTFOUND) rc = 0;
    if (!rc && (index < 0 || (size_t)index >= r->n)) rc = PL_ERR_RANGE;
    if (!rc) rc = pl_msg_get_array(msg, "token_ids", &arr);
    if (!rc) rc = read_ids(a, arr);
    if (rc) {
        pl_stage_send_error(st, id, idlen, 500, "InternalServerError", "malformed tokens message: %s", pl_strerror(rc));
        req_drop(a, id, idlen);
        return;
    }
    dtk_choice *c = &r->choices[index];
    if (c->done) return;   /* finished here by a stop string; the engine has not heard yet */

    const char *finish = NULL;
    size_t finish_len = 0;
    pl_msg_get_str(msg, "finish_reason", &finish, &finish_len);
    pl_buf_reset(&a->text);
    int hit = -1;
    rc = dtk_choice_feed(c, a->tk, a->ids, arr->size, &a->text, &hit);
    if (rc) {
        pl_stage_send_error(st, id, idlen, 500, "InternalServerError",
                            rc == PL_ERR_RANGE ? "token id outside the vocabulary" : "detokenization failed");
        req_drop(a, id, idlen);
        return;
    }
    if (hit < 0 && finish) dtk_choice_flush(c, &a->text);

    static const char *const skip[] = {"type", "logprobs", "finish_reason", "stop_reason"};
    const msgpack_object_array *lps = NULL;
    bool has_lp = pl_msg_get_array(msg, "logprobs", &lps) == 0;
    bool finished = hit >= 0 || finish;
    msgpack_packer *pk = pl_stage_begin(st);
    pl_msg_pack_map_except(pk, msg, skip, PL_ARRAY_LEN(skip), 2 + has_lp + (finished ? 2 : 0));
    pl_msg_pack_kv_cstr(pk, "type", "delta");
    pl_msg_pack_kv_str(pk, "text", a->text.data ? a->text.data : "", a->text.len);
    if (has_lp) {
        pl_msg_pack_cstr(pk, "logprobs");
        pack_logprobs(a, pk, lps, a->ids, arr->size);
    }
    if (hit >= 0) {
        pl_msg_pack_kv_cstr(pk, "finish_reason", "stop");
        pl_msg_pack_kv_str(pk, "stop_reason", r->stops.str[hit], r->stops.len[hit]);
    } else if (finish) {
        pl_msg_pack_kv_str(pk, "finish_reason", finish, finish_len);
        const msgpack_object *sr = pl_msg_get(msg, "stop_reason");
        if (sr) pl_msg_pack_kv_obj(pk, "stop_reason", sr);
        else pl_msg_pack_kv_nil(pk, "stop_reason");
    }
    pl_stage_end(st);
}

/* ================================================================ dispatch */

static void on_msg(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *ud)
{
    dtk_app *a = ud;
    if (pl_msg_type_is(msg, "tokens")) { on_tokens(a, st, msg, id, idlen); return; }
    if (pl_msg_type_is(msg, "start")) { on_start(a, st, msg, id, idlen); return; }
    if (pl_msg_type_is(msg, "abort")) {
        int64_t index;
        dtk_req *r = pl_map_get(&a->reqs, id, idlen);
        if (r && pl_msg_get_int(msg, "index", &index) == 0) {
            if (index >= 0 && (size_t)index < r->n) r->choices[index].done = true;
        } else {
            req_drop(a, id, idlen);
        }
    } else if (pl_msg_type_is(msg, "end") || pl_msg_type_is(msg, "error")) {
        req_drop(a, id, idlen);
    }
    pl_stage_forward(st, msg);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: glm-detok --model DIR [--in EP] [--out EP]\n"
            "  --model DIR      model directory holding tokenizer.json (or --tokenizer FILE)\n"
            PL_STAGE_IO_HELP);
}

int main(int argc, char **argv)
{
    pl_log_init("glm-detok");
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"tokenizer", required_argument, 0, 't'},
        {"in", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *dir = NULL, *tfile = NULL, *in = NULL, *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 't': tfile = optarg; break;
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if ((!dir && !tfile) || optind != argc) { usage(stderr); return 2; }
    char path[PATH_MAX], err[1024];
    if (!tfile) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        tfile = path;
    }
    dtk_app a;
    memset(&a, 0, sizeof a);
    pl_map_init(&a.reqs);
    if (pl_tokenizer_load(&a.tk, tfile, err, sizeof err)) {
        fprintf(stderr, "glm-detok: %s\n", err);
        return 1;
    }
    pl_stage *st;
    if (pl_stage_open(&st, in, out, err, sizeof err)) {
        fprintf(stderr, "glm-detok: %s\n", err);
        pl_tokenizer_free(a.tk);
        return 1;
    }
    int rc = pl_stage_run(st, on_msg, NULL, &a);
    pl_stage_close(st);
    const char *k;
    size_t kl, pos = 0;
    void *v;
    while ((pos = pl_map_next(&a.reqs, pos, &k, &kl, &v))) req_free(v);
    pl_map_free(&a.reqs);
    pl_buf_free(&a.text);
    pl_buf_free(&a.tmp);
    free(a.ids);
    pl_tokenizer_free(a.tk);
    return rc ? 1 : 0;
}
