/* glm-detok — token ids -> text deltas, special-token skipping, stop strings,
 * logprob token strings. Reads `start`/`tokens`/`end`, writes `start`/`delta`/
 * `end` (docs/protocol.md); everything else passes through. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detok.h"
#include "chstage.h"
#include "stage.h"

/* ================================================================ state */

/* Per request (made from start's context) and per choice (a dtk_choice). The
 * request/choice bookkeeping and the protocol rules around it (unknown ids,
 * abort, end, error) are common/chstage's. */
typedef struct dtk_req {
    dtk_stops stops;
    bool      skip_special, include_stop;
} dtk_req;

static pl_tokenizer *g_tk;
static pl_buf        g_text;       /* scratch: one delta's text */
static pl_buf        g_tmp;        /* scratch: token strings */
static int32_t      *g_ids;        /* scratch: one message's ids */
static size_t        g_ids_cap;

static bool ctx_bool(const msgpack_object *ctx, const char *key, bool def)
{
    bool v;
    return pl_msg_get_bool(ctx, key, &v) == 0 ? v : def;
}

static void req_free(void *p)
{
    dtk_req *r = p;
    if (!r) return;
    dtk_stops_free(&r->stops);
    free(r);
}

static int req_new(void **out, const msgpack_object *ctx, char *err, size_t errlen)
{
    const msgpack_object_array *stop = NULL;
    if (ctx && pl_msg_get_array(ctx, "stop", &stop) == PL_ERR_INVALID)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "start: 'context.stop' must be a list of strings");
    dtk_req *r = calloc(1, sizeof *r);
    if (!r) return PL_ERR_NOMEM;
    dtk_stops_init(&r->stops);
    r->skip_special = ctx_bool(ctx, "skip_special_tokens", true);
    r->include_stop = ctx_bool(ctx, "include_stop_str_in_output", false);
    int rc = 0;
    for (uint32_t i = 0; stop && i < stop->size && !rc; i++) {
        const msgpack_object *s = &stop->ptr[i];
        rc = s->type != MSGPACK_OBJECT_STR ? PL_ERR_INVALID : dtk_stops_add(&r->stops, s->via.str.ptr, s->via.str.size);
    }
    if (rc) {
        req_free(r);
        return pl_seterr(err, errlen, rc == PL_ERR_NOMEM ? rc : PL_ERR_INVALID,
                         "start: stop strings must be strings, at most %d of at most %d bytes", DTK_MAX_STOPS, DTK_MAX_STOP_BYTES);
    }
    *out = r;
    return 0;
}

static int choice_new(void *req, void **out)
{
    dtk_req *r = req;
    dtk_choice *c = malloc(sizeof *c);
    if (!c) return PL_ERR_NOMEM;
    if (dtk_choice_init(c, &r->stops, r->skip_special, r->include_stop)) { free(c); return PL_ERR_NOMEM; }
    *out = c;
    return 0;
}

static void choice_free(void *ch)
{
    dtk_choice_free(ch);
    free(ch);
}

/* ================================================================ tokens */

/* Engine logprobs {logprob, top: [[id, lp], ...]} -> {token, bytes, token_id, logprob, top: [{token, bytes, token_id, logprob}]} */
static void pack_token_entry(msgpack_packer *pk, int64_t id, const msgpack_object *lp, bool with_top)
{
    pl_buf_reset(&g_tmp);
    dtk_token_text(g_tk, (int32_t)id, &g_tmp);
    msgpack_pack_map(pk, with_top ? 5 : 4);
    pl_msg_pack_kv_str(pk, "token", g_tmp.data ? g_tmp.data : "", g_tmp.len);
    pl_msg_pack_cstr(pk, "bytes");
    msgpack_pack_array(pk, g_tmp.len);
    for (size_t i = 0; i < g_tmp.len; i++) msgpack_pack_uint8(pk, (uint8_t)g_tmp.data[i]);
    pl_msg_pack_kv_int(pk, "token_id", id);
    pl_msg_pack_cstr(pk, "logprob");
    if (lp) msgpack_pack_object(pk, *lp);
    else msgpack_pack_nil(pk);
}

static void pack_logprobs(msgpack_packer *pk, const msgpack_object_array *lps, const int32_t *ids, size_t n)
{
    msgpack_pack_array(pk, lps->size);
    for (uint32_t i = 0; i < lps->size; i++) {
        const msgpack_object *e = &lps->ptr[i];
        const msgpack_object_array *top = NULL;
        pl_msg_get_array(e, "top", &top);
        pack_token_entry(pk, i < n ? ids[i] : -1, pl_msg_get(e, "logprob"), true);
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
            pack_token_entry(pk, tid, tlp, false);
        }
    }
}

static int read_ids(const msgpack_object_array *arr)
{
    if (arr->size > g_ids_cap) {
        int32_t *p = realloc(g_ids, sizeof *p * arr->size);
        if (!p) return PL_ERR_NOMEM;
        g_ids = p;
        g_ids_cap = arr->size;
    }
    for (uint32_t i = 0; i < arr->size; i++) {
        int64_t v;
        if (pl_msg_as_int(&arr->ptr[i], &v) || v < 0 || v > INT32_MAX) return PL_ERR_INVALID;
        g_ids[i] = (int32_t)v;
    }
    return PL_OK;
}

static int on_tokens(pl_stage *st, void *req, void *ch, const msgpack_object *msg, bool final,
                     char *err, size_t errlen)
{
    dtk_req *r = req;
    dtk_choice *c = ch;
    if (c->done) return 0;   /* finished here by a stop string; the engine has not heard yet */
    const msgpack_object_array *arr = NULL;
    int rc = pl_msg_get_array(msg, "token_ids", &arr);
    if (!rc) rc = read_ids(arr);
    if (rc) return pl_seterr(err, errlen, rc == PL_ERR_NOMEM ? rc : PL_ERR_INVALID, "tokens: 'token_ids' must be a list of token ids");
    pl_buf_reset(&g_text);
    int hit = -1;
    rc = dtk_choice_feed(c, g_tk, g_ids, arr->size, &g_text, &hit);
    if (rc) return pl_seterr(err, errlen, rc, rc == PL_ERR_RANGE ? "tokens: token id outside the vocabulary" : "detokenization failed");
    if (hit < 0 && final) dtk_choice_flush(c, &g_text);

    static const char *const skip[] = {"type", "logprobs", "finish_reason", "stop_reason"};
    const msgpack_object_array *lps = NULL;
    bool has_lp = pl_msg_get_array(msg, "logprobs", &lps) == 0;
    bool finished = hit >= 0 || final;
    msgpack_packer *pk = pl_stage_begin(st);
    pl_msg_pack_map_except(pk, msg, skip, PL_ARRAY_LEN(skip), 2 + has_lp + (finished ? 2 : 0));
    pl_msg_pack_kv_cstr(pk, "type", "delta");
    pl_msg_pack_kv_str(pk, "text", g_text.data ? g_text.data : "", g_text.len);
    if (has_lp) {
        pl_msg_pack_cstr(pk, "logprobs");
        pack_logprobs(pk, lps, g_ids, arr->size);
    }
    if (hit >= 0) {
        pl_msg_pack_kv_cstr(pk, "finish_reason", "stop");
        pl_msg_pack_kv_str(pk, "stop_reason", r->stops.str[hit], r->stops.len[hit]);
    } else if (final) {
        pl_msg_pack_kv_obj(pk, "finish_reason", pl_msg_get(msg, "finish_reason"));
        const msgpack_object *sr = pl_msg_get(msg, "stop_reason");
        if (sr) pl_msg_pack_kv_obj(pk, "stop_reason", sr);
        else pl_msg_pack_kv_nil(pk, "stop_reason");
    }
    pl_stage_end(st);
    return 0;
}

/* end arrived while a choice never got its finish (engine gone, say): let
 * out what it holds so no text is lost. */
static void on_flush(pl_stage *st, void *req, void *ch, const char *id, size_t idlen, uint32_t index)
{
    dtk_choice *c = ch;
    pl_buf_reset(&g_text);
    dtk_choice_flush(c, &g_text);
    if (!g_text.len) return;
    msgpack_packer *pk = pl_stage_begin(st);
    msgpack_pack_map(pk, 4);
    pl_msg_pack_kv_cstr(pk, "type", "delta");
    pl_msg_pack_kv_str(pk, "id", id, idlen);
    pl_msg_pack_kv_int(pk, "index", index);
    pl_msg_pack_kv_str(pk, "text", g_text.data, g_text.len);
    pl_stage_end(st);
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
    if (pl_tokenizer_load(&g_tk, tfile, err, sizeof err)) {
        fprintf(stderr, "glm-detok: %s\n", err);
        return 1;
    }
    static const pl_chstage_ops ops = {
        .input_type = "tokens", .req_new = req_new, .req_free = req_free,
        .choice_new = choice_new, .choice_free = choice_free, .on_input = on_tokens, .on_flush = on_flush,
    };
    pl_chstage *cs = NULL;
    pl_stage *st = NULL;
    int rc = pl_chstage_new(&cs, &ops) ? PL_ERR_NOMEM : pl_stage_open(&st, in, out, err, sizeof err);
    if (rc) fprintf(stderr, "glm-detok: %s\n", rc == PL_ERR_NOMEM ? "out of memory" : err);
    else rc = pl_stage_run(st, pl_chstage_on_msg, pl_chstage_on_drain, cs);
    pl_stage_close(st);
    pl_chstage_free(cs);
    pl_buf_free(&g_text);
    pl_buf_free(&g_tmp);
    free(g_ids);
    pl_tokenizer_free(g_tk);
    return rc ? 1 : 0;
}
