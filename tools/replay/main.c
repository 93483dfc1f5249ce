/* glm-replay — an engine stand-in for debugging and tests.
 *
 * Answers every `generate` with a scripted model output instead of running a
 * model: `start`, then the output's token ids in `tokens` messages of
 * --chunk ids each (as MTP delivers 1-6 per step), the last one carrying the
 * finish reason, then `end` with usage. This is how the text side, the
 * gateway and clients are tested with exact model outputs, and how a parser
 * bug is reproduced from a logged raw output.
 *
 * Script (JSON Lines, one rule per line; the first rule that matches wins):
 *   {"match": "weather", "output": "<think>..</think>..", "chunk": 3,
 *    "finish_reason": "stop", "stop_reason": 154827}
 *   {"output_ids": [1, 2, 3]}                      a rule without "match" matches all
 * "match" is a substring of the decoded prompt. "output" is tokenized with
 * the model's tokenizer; "output_ids" are sent as they are. max_tokens
 * truncates (finish_reason "length"); every one of the n choices gets the
 * same output. A request no rule matches gets an `error`. */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "stage.h"
#include "tokenizer/tokenizer.h"

typedef struct rp_rule {
    char    *match;          /* NULL: matches every prompt */
    int32_t *ids;
    size_t   n_ids;
    int64_t  chunk;          /* 0: the command-line default */
    char    *finish;         /* NULL: "stop" */
    int64_t  stop_reason;    /* -1: none */
} rp_rule;

typedef struct rp_app {
    pl_tokenizer *tk;
    rp_rule      *rules;
    size_t        n_rules;
    int64_t       chunk;
    pl_buf        prompt;    /* scratch: decoded prompt */
} rp_app;

/* ================================================================ script */

/* An integral number inside the vocabulary (so the cast to int32_t is exact). */
static bool is_token_id(const rp_app *a, const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= 0 &&
           v->valuedouble < pl_tokenizer_vocab_size(a->tk);
}

static int parse_rule(rp_app *a, const cJSON *r, rp_rule *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->stop_reason = -1;
    if (!cJSON_IsObject(r)) return pl_seterr(err, errlen, PL_ERR_INVALID, "a rule must be a JSON object");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(r, "match");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(r, "output");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(r, "output_ids");
    const cJSON *chunk = cJSON_GetObjectItemCaseSensitive(r, "chunk");
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(r, "finish_reason");
    const cJSON *sr = cJSON_GetObjectItemCaseSensitive(r, "stop_reason");
    if (m && !cJSON_IsString(m)) return pl_seterr(err, errlen, PL_ERR_INVALID, "\"match\" must be a string");
    if (!!cJSON_IsString(text) == !!cJSON_IsArray(ids))
        return pl_seterr(err, errlen, PL_ERR_INVALID, "a rule needs exactly one of \"output\" (string) or \"output_ids\" (list)");
    if (chunk && (!cJSON_IsNumber(chunk) || chunk->valuedouble < 1 || chunk->valuedouble > 1e6))
        return pl_seterr(err, errlen, PL_ERR_INVALID, "\"chunk\" must be a positive integer");
    if (fin && !cJSON_IsString(fin)) return pl_seterr(err, errlen, PL_ERR_INVALID, "\"finish_reason\" must be a string");
    if (sr && !is_token_id(a, sr)) return pl_seterr(err, errlen, PL_ERR_INVALID, "\"stop_reason\" must be a token id");
    if (cJSON_IsString(text)) {
        pl_tokids v = {0};
        int rc = pl_tokenizer_encode_ex(a->tk, text->valuestring, strlen(text->valuestring), &v, err, errlen);
        if (rc) { pl_tokids_free(&v); return rc; }
        out->ids = v.ids;
        out->n_ids = v.len;
    } else {
        size_t n = (size_t)cJSON_GetArraySize(ids), k = 0;
        out->ids = malloc(sizeof *out->ids * (n ? n : 1));
        if (!out->ids) return PL_ERR_NOMEM;
        for (const cJSON *c = ids->child; c; c = c->next) {
            if (!is_token_id(a, c)) {
                free(out->ids);
                out->ids = NULL;
                return pl_seterr(err, errlen, PL_ERR_INVALID, "\"output_ids\" must be token ids inside the vocabulary");
            }
            out->ids[k++] = (int32_t)c->valuedouble;
        }
        out->n_ids = k;
    }
    out->match = m ? strdup(m->valuestring) : NULL;
    out->chunk = chunk ? (int64_t)chunk->valuedouble : 0;
    out->finish = fin ? strdup(fin->valuestring) : NULL;
    out->stop_reason = sr ? (int64_t)sr->valuedouble : -1;
    return PL_OK;
}

static int load_script(rp_app *a, const char *path, char *err, size_t errlen)
{
    pl_buf b;
    pl_buf_init(&b);
    int rc = pl_file_read(path, &b, 256u << 20, err, errlen);
    size_t lineno = 0;
    for (char *line = b.data, *next; !rc && line && *line; line = next) {
        next = strchr(line, '\n');
        size_t len = next ? (size_t)(next - line) : strlen(line);
        if (next) next++;
        lineno++;
        while (len && strchr(" \t\r", line[len - 1])) len--;
        if (!len) continue;
        cJSON *r;
        char perr[256];
        rc = pl_json_parse(&r, line, len, perr, sizeof perr);
        if (rc) { pl_seterr(err, errlen, rc, "%s:%zu: %s", path, lineno, perr); break; }
        rp_rule *rules = realloc(a->rules, sizeof *rules * (a->n_rules + 1));
        if (!rules) { cJSON_Delete(r); rc = PL_ERR_NOMEM; break; }
        a->rules = rules;
        rc = parse_rule(a, r, &a->rules[a->n_rules], perr, sizeof perr);
        cJSON_Delete(r);
        if (rc) { pl_seterr(err, errlen, rc, "%s:%zu: %s", path, lineno, perr); break; }
        a->n_rules++;
    }
    if (!rc && !a->n_rules) rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s: no rules", path);
    pl_buf_free(&b);
    return rc;
}

/* ================================================================ serving */

static const rp_rule *pick_rule(rp_app *a, const msgpack_object_array *prompt, int *bad)
{
    *bad = 0;
    pl_buf_reset(&a->prompt);
    int32_t *ids = malloc(sizeof *ids * (prompt->size ? prompt->size : 1));
    if (!ids) { *bad = PL_ERR_NOMEM; return NULL; }
    for (uint32_t i = 0; i < prompt->size; i++) {
        int64_t v;
        if (pl_msg_as_int(&prompt->ptr[i], &v) || v < 0 || v > INT32_MAX) { free(ids); *bad = PL_ERR_INVALID; return NULL; }
        ids[i] = (int32_t)v;
    }
    int rc = pl_tokenizer_decode(a->tk, ids, prompt->size, 0, &a->prompt);
    free(ids);
    if (rc) { *bad = rc; return NULL; }
    for (size_t i = 0; i < a->n_rules; i++)
        if (!a->rules[i].match || (a->prompt.data && strstr(a->prompt.data, a->rules[i].match)))
            return &a->rules[i];
    return NULL;
}

static void on_generate(rp_app *a, pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen)
{
    const msgpack_object_array *prompt;
    const msgpack_object *sampling = NULL, *ctx = pl_msg_get(msg, "context");
    int64_t n = 1, max_tokens = INT64_MAX;
    if (pl_msg_get_array(msg, "prompt_ids", &prompt)) {
        pl_stage_bad_request(st, id, idlen, "generate: 'prompt_ids' must be a list of token ids");
        return;
    }
    if (pl_msg_get_int(msg, "n", &n) == PL_ERR_INVALID || n < 1 || n > 4096) {
        pl_stage_bad_request(st, id, idlen, "generate: 'n' must be 1..4096");
        return;
    }
    if (pl_msg_get_map(msg, "sampling", &sampling) == PL_ERR_INVALID) {
        pl_stage_bad_request(st, id, idlen, "generate: 'sampling' must be a map");
        return;
    }
    /* a negative max_tokens would make the output length wrap around */
    int mrc = sampling ? pl_msg_get_int(sampling, "max_tokens", &max_tokens) : PL_ERR_NOTFOUND;
    if (mrc != PL_ERR_NOTFOUND && (mrc || max_tokens < 0)) {
        pl_stage_bad_request(st, id, idlen, "generate: 'sampling.max_tokens' must be a non-negative integer");
        return;
    }
    int bad;
    const rp_rule *r = pick_rule(a, prompt, &bad);
    if (!r) {
        if (bad) pl_stage_bad_request(st, id, idlen, "generate: prompt ids are not valid token ids");
        else pl_stage_bad_request(st, id, idlen, "glm-replay: no script rule matches this prompt");
        return;
    }
    size_t total = r->n_ids;
    bool truncated = (int64_t)total > max_tokens;
    if (truncated) total = (size_t)max_tokens;
    int64_t chunk = r->chunk ? r->chunk : a->chunk;

    msgpack_packer *pk = pl_stage_begin(st);
    msgpack_pack_map(pk, ctx ? 5 : 4);
    pl_msg_pack_kv_cstr(pk, "type", "start");
    pl_msg_pack_kv_str(pk, "id", id, idlen);
    pl_msg_pack_kv_int(pk, "n", n);
    pl_msg_pack_kv_int(pk, "prompt_tokens", prompt->size);
    if (ctx) pl_msg_pack_kv_obj(pk, "context", ctx);
    pl_stage_end(st);
    /* choices interleaved step by step, as the engine would send them */
    for (size_t off = 0; off < total || (total == 0 && off == 0); off += (size_t)chunk) {
        size_t len = total - off < (size_t)chunk ? total - off : (size_t)chunk;
        bool last = off + len >= total;
        for (int64_t c = 0; c < n; c++) {
            pk = pl_stage_begin(st);
            bool sr = last && !truncated && r->stop_reason >= 0;
            msgpack_pack_map(pk, 4 + (last ? 1 : 0) + sr);
            pl_msg_pack_kv_cstr(pk, "type", "tokens");
            pl_msg_pack_kv_str(pk, "id", id, idlen);
            pl_msg_pack_kv_int(pk, "index", c);
            pl_msg_pack_cstr(pk, "token_ids");
            msgpack_pack_array(pk, len);
            for (size_t i = 0; i < len; i++) msgpack_pack_int32(pk, r->ids[off + i]);
            if (last) pl_msg_pack_kv_cstr(pk, "finish_reason", truncated ? "length" : r->finish ? r->finish : "stop");
            if (sr) pl_msg_pack_kv_int(pk, "stop_reason", r->stop_reason);
            pl_stage_end(st);
        }
        if (total == 0) break;
    }
    pk = pl_stage_begin(st);
    msgpack_pack_map(pk, 3);
    pl_msg_pack_kv_cstr(pk, "type", "end");
    pl_msg_pack_kv_str(pk, "id", id, idlen);
    pl_msg_pack_cstr(pk, "usage");
    msgpack_pack_map(pk, 2);
    pl_msg_pack_kv_int(pk, "prompt_tokens", prompt->size);
    pl_msg_pack_kv_int(pk, "completion_tokens", (int64_t)total * n);
    pl_stage_end(st);
}

static void on_msg(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *ud)
{
    if (pl_msg_type_is(msg, "generate")) on_generate(ud, st, msg, id, idlen);
    else pl_stage_forward(st, msg);   /* abort, ping, ...: nothing in flight to cancel */
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: glm-replay --model DIR --script FILE [--chunk N] [--in EP] [--out EP]\n"
            "  --model DIR     model directory (its tokenizer.json tokenizes the outputs)\n"
            "  --script FILE   JSON Lines rules: {\"match\", \"output\" | \"output_ids\", \"chunk\",\n"
            "                  \"finish_reason\", \"stop_reason\"}; the first match wins\n"
            "  --chunk N       token ids per tokens message (default 1)\n"
            PL_STAGE_IO_HELP);
}

int main(int argc, char **argv)
{
    pl_log_init("glm-replay");
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"script", required_argument, 0, 's'},
        {"chunk", required_argument, 0, 'c'},
        {"in", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *dir = NULL, *script = NULL, *in = NULL, *out = NULL;
    rp_app a;
    memset(&a, 0, sizeof a);
    a.chunk = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 's': script = optarg; break;
        case 'c':
            if (pl_parse_i64(optarg, 1, 1000000, &a.chunk)) {
                fprintf(stderr, "glm-replay: --chunk must be an integer from 1 to 1000000\n");
                return 2;
            }
            break;
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!dir || !script || optind != argc) { usage(stderr); return 2; }
    char path[PATH_MAX], err[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    pl_stage *st = NULL;
    int rc = pl_tokenizer_load(&a.tk, path, err, sizeof err);
    if (!rc) rc = load_script(&a, script, err, sizeof err);
    if (!rc) rc = pl_stage_open(&st, in, out, err, sizeof err);
    if (rc) fprintf(stderr, "glm-replay: %s\n", err);
    else rc = pl_stage_run(st, on_msg, NULL, &a);
    pl_stage_close(st);
    for (size_t i = 0; i < a.n_rules; i++) {
        free(a.rules[i].match);
        free(a.rules[i].ids);
        free(a.rules[i].finish);
    }
    free(a.rules);
    pl_buf_free(&a.prompt);
    pl_tokenizer_free(a.tk);
    return rc ? 1 : 0;
}
