/* glm-detok — token ids -> text deltas, special-token skipping, stop strings,
 * logprob token strings, as vLLM's output processor makes them. Reads
 * `start`/`tokens`/`end`, writes `start`/`delta`/`end` (docs/protocol.md);
 * everything else passes through. */
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
    dtk_stops  stops;
    dtk_params params;
    int64_t    kept;       /* tokens delivered in deltas, all choices: end's completion_tokens */
} dtk_req;

static pl_tokenizer *g_tk;
static pl_buf        g_text;       /* scratch: one delta's text */
static pl_buf        g_tmp, g_tmp2; /* scratch: token strings */
static int32_t      *g_ids;        /* scratch: one message's ids */
static size_t        g_ids_cap;

static int ctx_bool(const msgpack_object *ctx, const char *key, bool *v, char *err, size_t errlen)
{
    int rc = ctx ? pl_msg_get_bool(ctx, key, v) : PL_ERR_NOTFOUND;   /* absent or nil: the default */
    return rc && rc != PL_ERR_NOTFOUND ? pl_seterr(err, errlen, PL_ERR_INVALID, "start: 'context.%s' must be a boolean", key) : 0;
}

static void req_free(void *p)
{
    dtk_req *r = p;
    if (!r) return;
    dtk_stops_free(&r->stops);
    free(r);
}

static int req_params(dtk_req *r, const msgpack_object *ctx, char *err, size_t errlen)
{
    dtk_params *p = &r->params;
    dtk_params_init(p);
    int rc = ctx_bool(ctx, "skip_special_tokens", &p->skip_special, err, errlen);
    if (!rc) rc = ctx_bool(ctx, "spaces_between_special_tokens", &p->spaces_between, err, errlen);
    if (!rc) rc = ctx_bool(ctx, "include_stop_str_in_output", &p->include_stop, err, errlen);
    if (rc) return rc;
    rc = ctx ? pl_msg_get_int(ctx, "min_tokens", &p->min_tokens) : PL_ERR_NOTFOUND;
    if ((rc && rc != PL_ERR_NOTFOUND) || p->min_tokens < 0)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "start: 'context.min_tokens' must be an integer >= 0");
    const msgpack_object_array *stop = NULL;
    rc = 0;
    if (ctx && pl_msg_get_array(ctx, "stop", &stop) == PL_ERR_INVALID)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "start: 'context.stop' must be a list of strings");
    for (uint32_t i = 0; stop && i < stop->size && !rc; i++) {
        const msgpack_object *s = &stop->ptr[i];
        rc = s->type != MSGPACK_OBJECT_STR ? PL_ERR_INVALID : dtk_stops_add(&r->stops, s->via.str.ptr, s->via.str.size);
    }
    if (rc)
        return pl_seterr(err, errlen, rc == PL_ERR_NOMEM ? rc : PL_ERR_INVALID,
                         "start: stop strings must be strings, at most %d of at most %d bytes", DTK_MAX_STOPS, DTK_MAX_STOP_BYTES);
    return 0;
}

static int req_new(void **out, const msgpack_object *ctx, char *err, size_t errlen)
{
    dtk_req *r = calloc(1, sizeof *r);
    if (!r) return PL_ERR_NOMEM;
    dtk_stops_init(&r->stops);
    int rc = req_params(r, ctx, err, errlen);
    if (rc) { req_free(r); return rc; }
    *out = r;
    return 0;
}

static int choice_new(void *req, void **out)
{
    dtk_req *r = req;
    dtk_choice *c = malloc(sizeof *c);
    if (!c) return PL_ERR_NOMEM;
    if (dtk_choice_init(c, &r->stops, &r->params)) { dtk_choice_free(c); free(c); return PL_ERR_NOMEM; }
    *out = c;
    return 0;
}

static void choice_free(void *ch)
{
    dtk_choice_free(ch);
    free(ch);
}

/* ================================================================ tokens */

/* One logprob entry: {token, bytes, token_id, logprob[, top]}; name: the
 * token string (dtk_token_text). */
static void pack_token_entry(msgpack_packer *pk, const pl_buf *name, int64_t id, const msgpack_object *lp,
                             bool with_top)
{
    msgpack_pack_map(pk, with_top ? 5 : 4);
    pl_msg_pack_kv_str(pk, "token", name->data ? name->data : "", name->len);
    pl_msg_pack_cstr(pk, "bytes");
    msgpack_pack_array(pk, name->len);
    for (size_t i = 0; i < name->len; i++) msgpack_pack_uint8(pk, (uint8_t)name->data[i]);
    pl_msg_pack_kv_int(pk, "token_id", id);
    pl_msg_pack_cstr(pk, "logprob");
    if (lp) msgpack_pack_object(pk, *lp);
    else msgpack_pack_nil(pk);
}

static int token_name(dtk_lpctx *ctx, int64_t id, pl_buf *name)
{
    pl_buf_reset(name);
    return id >= 0 && id <= INT32_MAX ? dtk_token_text(g_tk, ctx, (int32_t)id, name) : PL_OK;
}

/* One engine candidate [id, logprob]: true with both; false (*id -1, *lp
 * NULL) for anything else. */
static bool top_pair(const msgpack_object *pair, int64_t *id, const msgpack_object **lp)
{
    *id = -1;
    *lp = NULL;
    if (pair->type != MSGPACK_OBJECT_ARRAY || pair->via.array.size != 2 || pl_msg_as_int(&pair->via.array.ptr[0], id)) {
        *id = -1;
        return false;
    }
    *lp = &pair->via.array.ptr[1];
    return true;
}

/* Engine logprobs {logprob, top: [[id, lp], ...]} of the first n positions ->
 * {token, bytes, token_id, logprob, top: [{token, bytes, token_id, logprob}]}.
 * The context is the choice's sampled ids before each position; an
 * alternative that is the sampled id has the sampled token's name. */
static int pack_logprobs(msgpack_packer *pk, dtk_lpctx *ctx, const msgpack_object_array *lps, const int32_t *ids,
                         size_t n)
{
    int rc = 0;
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *e = &lps->ptr[i];
        const msgpack_object_array *top = NULL;
        pl_msg_get_array(e, "top", &top);
        rc |= token_name(ctx, ids[i], &g_tmp);
        pack_token_entry(pk, &g_tmp, ids[i], pl_msg_get(e, "logprob"), true);
        pl_msg_pack_cstr(pk, "top");
        uint32_t ntop = top ? top->size : 0;
        msgpack_pack_array(pk, ntop);
        for (uint32_t j = 0; j < ntop; j++) {
            int64_t tid;
            const msgpack_object *tlp;
            top_pair(&top->ptr[j], &tid, &tlp);
            if (tid != ids[i]) rc |= token_name(ctx, tid, &g_tmp2);
            pack_token_entry(pk, tid == ids[i] ? &g_tmp : &g_tmp2, tid, tlp, false);
        }
        dtk_lpctx_push(ctx, ids[i]);
    }
    return rc ? PL_ERR_NOMEM : PL_OK;
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
    const msgpack_object_array *arr = NULL, *lps = NULL;
    int rc = pl_msg_get_array(msg, "token_ids", &arr);
    if (!rc) rc = read_ids(arr);
    if (rc) return pl_seterr(err, errlen, rc == PL_ERR_NOMEM ? rc : PL_ERR_INVALID, "tokens: 'token_ids' must be a list of token ids");
    rc = pl_msg_get_array(msg, "logprobs", &lps);
    bool has_lp = rc == 0;
    if ((rc && rc != PL_ERR_NOTFOUND) || (has_lp && lps->size != arr->size))
        return pl_seterr(err, errlen, PL_ERR_INVALID, "tokens: 'logprobs' must be a list with one entry per token id");
    rc = 0;
    const msgpack_object *fr = pl_msg_get(msg, "finish_reason");
    unsigned flags = final ? DTK_FEED_FINAL : 0;
    if (final && pl_msg_str_eq(fr, "stop")) flags |= DTK_FEED_STOP_TOKEN;
    pl_buf_reset(&g_text);
    size_t kept;
    int hit;
    if (dtk_choice_feed(c, g_tk, g_ids, arr->size, flags, &g_text, &kept, &hit))
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    r->kept += (int64_t)kept;

    static const char *const skip[] = {"type", "token_ids", "logprobs", "finish_reason", "stop_reason"};
    bool finished = hit >= 0 || final;
    msgpack_packer *pk = pl_stage_begin(st);
    pl_msg_pack_map_except(pk, msg, skip, PL_ARRAY_LEN(skip), 3 + has_lp + (finished ? 2 : 0));
    pl_msg_pack_kv_cstr(pk, "type", "delta");
    pl_msg_pack_kv_str(pk, "text", g_text.data ? g_text.data : "", g_text.len);
    pl_msg_pack_cstr(pk, "token_ids");   /* without the tokens a stop string cut off */
    msgpack_pack_array(pk, kept);
    for (size_t i = 0; i < kept; i++) msgpack_pack_int32(pk, g_ids[i]);
    if (has_lp) {
        pl_msg_pack_cstr(pk, "logprobs");
        if (pack_logprobs(pk, &c->lp, lps, g_ids, kept)) rc = PL_ERR_NOMEM;
    }
    if (hit >= 0) {
        pl_msg_pack_kv_cstr(pk, "finish_reason", "stop");
        pl_msg_pack_kv_str(pk, "stop_reason", r->stops.str[hit], r->stops.len[hit]);
    } else if (final) {
        pl_msg_pack_kv_obj(pk, "finish_reason", fr);
        const msgpack_object *sr = pl_msg_get(msg, "stop_reason");
        if (sr) pl_msg_pack_kv_obj(pk, "stop_reason", sr);
        else pl_msg_pack_kv_nil(pk, "stop_reason");
    }
    pl_stage_end(st);
    return rc ? pl_seterr(err, errlen, rc, "out of memory") : 0;
}

/* end arrived while a choice never got its finish (engine gone, say): let
 * out the text it holds back so none is lost. */
static void on_flush(pl_stage *st, void *req, void *ch, const char *id, size_t idlen, uint32_t index)
{
    dtk_choice *c = ch;
    pl_buf_reset(&g_text);
    dtk_choice_flush(c, &g_text);
    if (!g_text.len) return;
    msgpack_packer *pk = pl_chstage_begin_delta(st, id, idlen, index, 1);
    pl_msg_pack_kv_str(pk, "text", g_text.data, g_text.len);
    pl_stage_end(st);
}

/* end: usage.completion_tokens counts only the tokens that reached a delta.
 * The engine counts every token it made, including those after a stop string
 * detok found (trimmed from their step, or sent before the gateway's abort
 * reached the engine); vLLM counts none of them. total_tokens follows. */
static void on_end(pl_stage *st, void *req, const msgpack_object *msg)
{
    dtk_req *r = req;
    const msgpack_object *usage = NULL;
    int64_t ct, pt;
    if (pl_msg_get_map(msg, "usage", &usage) || pl_msg_get_int(usage, "completion_tokens", &ct) || ct <= r->kept) {
        pl_stage_forward(st, msg);
        return;
    }
    static const char *const skip_end[] = {"usage"};
    static const char *const skip_usage[] = {"completion_tokens", "total_tokens"};
    bool has_total = pl_msg_get(usage, "total_tokens") && !pl_msg_get_int(usage, "prompt_tokens", &pt);
    msgpack_packer *pk = pl_stage_begin(st);
    pl_msg_pack_map_except(pk, msg, skip_end, PL_ARRAY_LEN(skip_end), 1);
    pl_msg_pack_cstr(pk, "usage");
    pl_msg_pack_map_except(pk, usage, skip_usage, PL_ARRAY_LEN(skip_usage), 1 + has_total);
    pl_msg_pack_kv_int(pk, "completion_tokens", r->kept);
    if (has_total) pl_msg_pack_kv_int(pk, "total_tokens", pt + r->kept);
    pl_stage_end(st);
}

/* A prompt logprobs token string, as vLLM's convert_ids_list_to_tokens
 * makes it: the token decoded alone (special tokens kept, a piece of a
 * character as U+FFFD, unknown ids ""), no look-back. */
static void prompt_token_name(int64_t id, pl_buf *name)
{
    size_t len = 0;
    const uint8_t *b = id >= 0 && id <= INT32_MAX ? pl_tokenizer_token_bytes(g_tk, (int32_t)id, &len) : NULL;
    pl_buf_reset(name);
    if (b) pl_tokenizer_utf8_lossy(b, len, name);
}

/* `start` with prompt_logprobs: each entry {token_id, rank, logprob, top:
 * [[id, lp]...]} gains the token strings vLLM reports as decoded_token:
 * {token_id, rank, logprob, token, top: [{token_id, logprob, token}]}. */
static void on_start(pl_stage *st, void *req, const msgpack_object *msg)
{
    (void)req;
    const msgpack_object_array *plp = NULL;
    if (pl_msg_get_array(msg, "prompt_logprobs", &plp)) { pl_stage_forward(st, msg); return; }
    static const char *const skip[] = {"prompt_logprobs"};
    msgpack_packer *pk = pl_stage_begin(st);
    pl_msg_pack_map_except(pk, msg, skip, PL_ARRAY_LEN(skip), 1);
    pl_msg_pack_cstr(pk, "prompt_logprobs");
    msgpack_pack_array(pk, plp->size);
    for (uint32_t i = 0; i < plp->size; i++) {
        const msgpack_object *e = &plp->ptr[i];
        int64_t tid = -1, rank = 0;
        if (e->type != MSGPACK_OBJECT_MAP || pl_msg_get_int(e, "token_id", &tid)) { msgpack_pack_object(pk, *e); continue; }
        const msgpack_object_array *top = NULL;
        pl_msg_get_array(e, "top", &top);
        bool has_rank = !pl_msg_get_int(e, "rank", &rank);
        const msgpack_object *lp = pl_msg_get(e, "logprob");
        msgpack_pack_map(pk, 4 + has_rank);
        pl_msg_pack_kv_int(pk, "token_id", tid);
        if (has_rank) pl_msg_pack_kv_int(pk, "rank", rank);
        pl_msg_pack_cstr(pk, "logprob");
        if (lp) msgpack_pack_object(pk, *lp);
        else msgpack_pack_nil(pk);
        prompt_token_name(tid, &g_tmp);
        pl_msg_pack_kv_str(pk, "token", g_tmp.data ? g_tmp.data : "", g_tmp.len);
        pl_msg_pack_cstr(pk, "top");
        uint32_t ntop = top ? top->size : 0;
        msgpack_pack_array(pk, ntop);
        for (uint32_t j = 0; j < ntop; j++) {
            int64_t cid;
            const msgpack_object *clp;
            if (!top_pair(&top->ptr[j], &cid, &clp)) {
                msgpack_pack_object(pk, top->ptr[j]);
                continue;
            }
            msgpack_pack_map(pk, 3);
            pl_msg_pack_kv_int(pk, "token_id", cid);
            pl_msg_pack_cstr(pk, "logprob");
            msgpack_pack_object(pk, *clp);
            prompt_token_name(cid, &g_tmp2);
            pl_msg_pack_kv_str(pk, "token", g_tmp2.data ? g_tmp2.data : "", g_tmp2.len);
        }
    }
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
    pl_stage_opts so;
    pl_stage_opts_default(&so);
    if (pl_stage_opts_take(&so, "glm-detok", &argc, argv)) return 2;
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"tokenizer", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *dir = NULL, *tfile = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 't': tfile = optarg; break;
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
        .on_end = on_end,
        .on_start = on_start,
    };
    pl_chstage *cs = NULL;
    pl_stage *st = NULL;
    int rc = pl_chstage_new(&cs, &ops) ? PL_ERR_NOMEM : pl_stage_open_opts(&st, &so, err, sizeof err);
    if (rc) fprintf(stderr, "glm-detok: %s\n", rc == PL_ERR_NOMEM ? "out of memory" : err);
    else rc = pl_chstage_run(cs, st);
    pl_stage_close(st);
    pl_chstage_free(cs);
    pl_buf_free(&g_text);
    pl_buf_free(&g_tmp);
    pl_buf_free(&g_tmp2);
    free(g_ids);
    pl_tokenizer_free(g_tk);
    return rc ? 1 : 0;
}
