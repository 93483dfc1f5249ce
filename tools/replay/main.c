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
 * the model's tokenizer and, when it finishes with "stop", followed by the
 * token the model stops on, as a real engine sends it: the rule's
 * "stop_reason" id, else the first of the request's sampling.eos_token_ids
 * (glm-detok does not output that token's text, and it is counted, as in
 * vLLM). "output_ids" are sent as they are (a finishing "stop" means their
 * last id is the stop token). max_tokens truncates (finish_reason
 * "length"); every one of the n choices gets the same output. A request no
 * rule matches gets an `error`. With
 * sampling.logprobs set, each token carries logprobs as a model that is
 * certain of its script would give them: logprob 0.0, and the scripted
 * token as the only top candidate (every other token has probability 0). */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    bool     text;           /* from "output": the stop token is added when it finishes with "stop" */
} rp_rule;

typedef struct rp_req rp_req;

typedef struct rp_app {
    pl_tokenizer *tk;
    rp_rule      *rules;
    size_t        n_rules;
    int64_t       chunk;
    int64_t       max_model_len;   /* 0: none; else prompt + output stay within it, as in the engine */
    double        step_ms;   /* 0: every output at once */
    double        next_step; /* paced: monotonic ms of the next step while requests are live */
    rp_req       *live;      /* paced requests still running */
    FILE         *emit_log;  /* --emit-log: "id index tokens_sent unix_time" per tokens message */
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
    out->text = cJSON_IsString(text);
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

/* One request being replayed: its rule, where each choice is, which
 * choices an abort stopped. */
typedef struct rp_req {
    struct rp_req *next;
    char          *id;
    size_t         idlen;
    const rp_rule *rule;
    int64_t        n, logprobs, chunk;
    size_t         total, off;       /* tokens to send per choice, sent so far */
    int32_t        stop_tok;         /* sent after the rule's ids (-1: none), see the header */
    bool           truncated;
    int64_t        prompt_tokens, sent;
    unsigned char *stopped;          /* [n] */
    int64_t        n_stopped;
} rp_req;

static void req_free(rp_req *q)
{
    free(q->id);
    free(q->stopped);
    free(q);
}

static void emit_end(pl_stage *st, const rp_req *q)
{
    msgpack_packer *pk = pl_stage_begin(st);
    msgpack_pack_map(pk, 3);
    pl_msg_pack_kv_cstr(pk, "type", "end");
    pl_msg_pack_kv_str(pk, "id", q->id, q->idlen);
    pl_msg_pack_cstr(pk, "usage");
    msgpack_pack_map(pk, 2);
    pl_msg_pack_kv_int(pk, "prompt_tokens", q->prompt_tokens);
    pl_msg_pack_kv_int(pk, "completion_tokens", q->sent);
    pl_stage_end(st);
}

/* The i-th id of the output: the rule's, then the stop token. */
static int32_t req_id(const rp_req *q, size_t i) { return i < q->rule->n_ids ? q->rule->ids[i] : q->stop_tok; }

/* One step: the next chunk of every choice still running, as an engine
 * step would deliver them. True when the request is over (end sent). */
static bool req_step(rp_app *a, pl_stage *st, rp_req *q)
{
    const rp_rule *r = q->rule;
    size_t len = q->total - q->off < (size_t)q->chunk ? q->total - q->off : (size_t)q->chunk;
    bool last = q->off + len >= q->total;
    double t = a->emit_log ? pl_wall_s() : 0;
    for (int64_t c = 0; c < q->n; c++) {
        if (q->stopped[c]) continue;
        msgpack_packer *pk = pl_stage_begin(st);
        bool sr = last && !q->truncated && r->stop_reason >= 0;
        msgpack_pack_map(pk, 4 + (last ? 1 : 0) + sr + (q->logprobs >= 0));
        pl_msg_pack_kv_cstr(pk, "type", "tokens");
        pl_msg_pack_kv_str(pk, "id", q->id, q->idlen);
        pl_msg_pack_kv_int(pk, "index", c);
        pl_msg_pack_cstr(pk, "token_ids");
        msgpack_pack_array(pk, len);
        for (size_t i = q->off; i < q->off + len; i++) msgpack_pack_int32(pk, req_id(q, i));
        if (q->logprobs >= 0) {
            pl_msg_pack_cstr(pk, "logprobs");
            msgpack_pack_array(pk, len);
            for (size_t i = 0; i < len; i++) {
                msgpack_pack_map(pk, 2);
                pl_msg_pack_kv_double(pk, "logprob", 0.0);
                pl_msg_pack_cstr(pk, "top");
                msgpack_pack_array(pk, q->logprobs > 0);
                if (q->logprobs > 0) {
                    msgpack_pack_array(pk, 2);
                    msgpack_pack_int32(pk, req_id(q, q->off + i));
                    msgpack_pack_double(pk, 0.0);
                }
            }
        }
        if (last) pl_msg_pack_kv_cstr(pk, "finish_reason", q->truncated ? "length" : r->finish ? r->finish : "stop");
        if (sr) pl_msg_pack_kv_int(pk, "stop_reason", r->stop_reason);
        pl_stage_end(st);
        q->sent += (int64_t)len;
        if (a->emit_log)
            fprintf(a->emit_log, "%.*s %lld %lld %.6f\n", (int)q->idlen, q->id, (long long)c,
                    (long long)(q->off + len), t);
    }
    q->off += len;
    if (!last) return false;
    emit_end(st, q);
    return true;
}

static void on_generate(rp_app *a, pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen)
{
    const msgpack_object_array *prompt;
    const msgpack_object *sampling = NULL, *ctx = pl_msg_get(msg, "context");
    int64_t n = 1, max_tokens = INT64_MAX, logprobs = -1;
    if (pl_msg_get_array(msg, "prompt_ids", &prompt)) {
        pl_stage_bad_request(st, id, idlen, "generate: 'prompt_ids' must be a list of token ids");
        return;
    }
    if (a->max_model_len && (int64_t)prompt->size >= a->max_model_len) {
        pl_stage_bad_request(st, id, idlen, "generate: the prompt (%u tokens) leaves no room under --max-model-len %lld",
                             prompt->size, (long long)a->max_model_len);
        return;
    }
    int nrc = pl_msg_get_int_in(msg, "n", 1, 4096, &n);
    if (nrc && nrc != PL_ERR_NOTFOUND) {
        pl_stage_bad_request(st, id, idlen, "generate: 'n' must be an integer from 1 to 4096");
        return;
    }
    if (pl_msg_get_map(msg, "sampling", &sampling) == PL_ERR_INVALID) {
        pl_stage_bad_request(st, id, idlen, "generate: 'sampling' must be a map");
        return;
    }
    /* a negative max_tokens would make the output length wrap around */
    int mrc = sampling ? pl_msg_get_int_in(sampling, "max_tokens", 0, INT64_MAX, &max_tokens) : PL_ERR_NOTFOUND;
    if (mrc && mrc != PL_ERR_NOTFOUND) {
        pl_stage_bad_request(st, id, idlen, "generate: 'sampling.max_tokens' must be a non-negative integer");
        return;
    }
    int lrc = sampling ? pl_msg_get_int(sampling, "logprobs", &logprobs) : PL_ERR_NOTFOUND;
    if (lrc == PL_ERR_INVALID || (lrc == PL_OK && logprobs < 0)) {
        pl_stage_bad_request(st, id, idlen, "generate: 'sampling.logprobs' must be a non-negative integer");
        return;
    }
    int bad;
    const rp_rule *r = pick_rule(a, prompt, &bad);
    if (!r) {
        if (bad) pl_stage_bad_request(st, id, idlen, "generate: prompt ids are not valid token ids");
        else pl_stage_bad_request(st, id, idlen, "glm-replay: no script rule matches this prompt");
        return;
    }
    /* the token an "output" rule stops on (see the header) */
    int64_t stop_tok = -1;
    if (r->text && !strcmp(r->finish ? r->finish : "stop", "stop")) {
        const msgpack_object_array *eos = NULL;
        stop_tok = r->stop_reason;
        if (stop_tok < 0 && sampling && !pl_msg_get_array(sampling, "eos_token_ids", &eos) && eos->size &&
            (pl_msg_as_int(&eos->ptr[0], &stop_tok) || stop_tok < 0 || stop_tok > INT32_MAX))
            stop_tok = -1;
        if (stop_tok < 0 || stop_tok > INT32_MAX) {
            pl_stage_bad_request(st, id, idlen, "glm-replay: an \"output\" rule that finishes with \"stop\" needs "
                                 "the model's eos id (sampling.eos_token_ids) or a \"stop_reason\"");
            return;
        }
    }
    rp_req *q = calloc(1, sizeof *q);
    if (q) { q->id = malloc(idlen); q->stopped = calloc((size_t)n, 1); }
    if (!q || !q->id || !q->stopped) {
        if (q) req_free(q);
        pl_stage_send_error(st, id, idlen, 500, "InternalServerError", "out of memory");
        return;
    }
    memcpy(q->id, id, idlen);
    q->idlen = idlen;
    q->rule = r;
    q->n = n;
    q->logprobs = logprobs;
    q->chunk = r->chunk ? r->chunk : a->chunk;
    q->stop_tok = (int32_t)stop_tok;
    q->total = r->n_ids + (stop_tok >= 0);
    if (a->max_model_len && max_tokens > a->max_model_len - (int64_t)prompt->size)
        max_tokens = a->max_model_len - (int64_t)prompt->size;   /* the engine stops there too ("length") */
    q->truncated = (int64_t)q->total > max_tokens;
    if (q->truncated) q->total = (size_t)max_tokens;
    q->prompt_tokens = prompt->size;

    msgpack_packer *pk = pl_stage_begin(st);
    msgpack_pack_map(pk, ctx ? 5 : 4);
    pl_msg_pack_kv_cstr(pk, "type", "start");
    pl_msg_pack_kv_str(pk, "id", id, idlen);
    pl_msg_pack_kv_int(pk, "n", n);
    pl_msg_pack_kv_int(pk, "prompt_tokens", prompt->size);
    if (ctx) pl_msg_pack_kv_obj(pk, "context", ctx);
    pl_stage_end(st);
    if (a->step_ms <= 0) {   /* no pacing: the whole output now */
        while (!req_step(a, st, q)) {}
        req_free(q);
        return;
    }
    if (!a->live) a->next_step = pl_mono_s() * 1e3 + a->step_ms;   /* a busy period starts: its first step */
    q->next = a->live;
    a->live = q;
}

/* abort {id}: the request is dropped without `end` (as the engine does);
 * abort {id, index}: that choice stops; the last one stopping ends it. */
static void on_abort(rp_app *a, pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen)
{
    pl_stage_forward(st, msg);
    for (rp_req **pp = &a->live, *q; (q = *pp); pp = &q->next) {
        if (q->idlen != idlen || memcmp(q->id, id, idlen)) continue;
        int64_t index;
        int rc = pl_msg_get_int(msg, "index", &index);
        if (rc == PL_OK && index >= 0 && index < q->n) {
            if (!q->stopped[index]) { q->stopped[index] = 1; q->n_stopped++; }
            if (q->n_stopped < q->n) return;
            emit_end(st, q);
        } else if (rc != PL_ERR_NOTFOUND) {
            return;
        }
        *pp = q->next;
        req_free(q);
        return;
    }
}

static void on_msg(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *ud)
{
    if (pl_msg_type_is(msg, "generate")) on_generate(ud, st, msg, id, idlen);
    else if (pl_msg_type_is(msg, "abort")) on_abort(ud, st, msg, id, idlen);
    else pl_stage_forward(st, msg);   /* ping, ...: not ours */
}

static double mono_ms(void) { return pl_mono_s() * 1e3; }

/* ================================================================ the loop
 *
 * common/stage.h's loop. Paced (--step-ms): one step every MS milliseconds,
 * every live request advancing one chunk, input read in between (how an
 * engine's step loop looks from outside). Unpaced, on_generate answers at
 * once and nothing stays live. */

static size_t loop_live(void *ud)
{
    size_t n = 0;
    for (const rp_req *q = ((rp_app *)ud)->live; q; q = q->next) n++;
    return n;
}

static int loop_step_wait_ms(void *ud)
{
    rp_app *a = ud;
    double now = mono_ms();
    return now >= a->next_step ? 0 : (int)(a->next_step - now) + 1;
}

static int loop_step(pl_stage *st, void *ud)
{
    rp_app *a = ud;
    double now = mono_ms();
    a->next_step += a->step_ms;
    if (a->next_step < now) a->next_step = now + a->step_ms;   /* fell behind: do not burst */
    for (rp_req **pp = &a->live, *q; (q = *pp);) {
        if (req_step(a, st, q)) { *pp = q->next; req_free(q); }
        else pp = &q->next;
    }
    if (a->emit_log) fflush(a->emit_log);   /* readable while we run */
    return PL_OK;
}

static void loop_fail(pl_stage *st, void *ud, int code, const char *err_type, const char *why)
{
    rp_app *a = ud;
    while (a->live) {
        rp_req *q = a->live;
        a->live = q->next;
        pl_stage_send_error(st, q->id, q->idlen, code, err_type, "%s", why);
        req_free(q);
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: glm-replay --model DIR --script FILE [--chunk N] [--in EP] [--out EP]\n"
            "  --model DIR     model directory (its tokenizer.json tokenizes the outputs)\n"
            "  --script FILE   JSON Lines rules: {\"match\", \"output\" | \"output_ids\", \"chunk\",\n"
            "                  \"finish_reason\", \"stop_reason\"}; the first match wins\n"
            "  --chunk N       token ids per tokens message (default 1)\n"
            "  --max-model-len L  as glm-engine's: longer prompts are refused, outputs stop at L (\"length\")\n"
            "  --step-ms MS    pace the output like an engine: one step every MS milliseconds,\n"
            "                  each live request advancing one chunk (default 0: all at once)\n"
            "  --emit-log FILE append 'id index tokens_sent unix_time' per tokens message (benchmarks)\n"
            PL_STAGE_IO_HELP);
}

int main(int argc, char **argv)
{
    pl_log_init("glm-replay");
    pl_stage_opts so;
    pl_stage_opts_default(&so);
    if (pl_stage_opts_take(&so, "glm-replay", &argc, argv)) return 2;
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"script", required_argument, 0, 's'},
        {"chunk", required_argument, 0, 'c'},
        {"max-model-len", required_argument, 0, 'L'},
        {"step-ms", required_argument, 0, 'S'},
        {"emit-log", required_argument, 0, 'E'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *dir = NULL, *script = NULL, *emit_log = NULL;
    rp_app a;
    memset(&a, 0, sizeof a);
    a.chunk = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 's': script = optarg; break;
        case 'L':
            if (pl_parse_human_i64(optarg, 2, 1 << 30, &a.max_model_len)) {
                fprintf(stderr, "glm-replay: --max-model-len must be an integer from 2 to 2^30\n");
                return 2;
            }
            break;
        case 'c':
            if (pl_parse_i64(optarg, 1, 1000000, &a.chunk)) {
                fprintf(stderr, "glm-replay: --chunk must be an integer from 1 to 1000000\n");
                return 2;
            }
            break;
        case 'S': {
            char *end;
            a.step_ms = strtod(optarg, &end);
            if (*end || !(a.step_ms >= 0) || a.step_ms > 60000) {
                fprintf(stderr, "glm-replay: --step-ms must be 0..60000\n");
                return 2;
            }
            break;
        }
        case 'E': emit_log = optarg; break;
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
    if (!rc && emit_log && !(a.emit_log = fopen(emit_log, "a")))
        rc = pl_seterr(err, sizeof err, PL_ERR_IO, "%s: cannot open", emit_log);
    if (!rc) rc = pl_stage_open_opts(&st, &so, err, sizeof err);
    if (rc) fprintf(stderr, "glm-replay: %s\n", err);
    else {
        static const pl_stage_ops ops = {
            .on_msg = on_msg, .intake = "generate", .live = loop_live, .step = loop_step,
            .step_wait_ms = loop_step_wait_ms, .fail = loop_fail,
        };
        rc = pl_stage_serve(st, &ops, &a);
    }
    pl_stage_close(st);
    while (a.live) {
        rp_req *q = a.live;
        a.live = q->next;
        req_free(q);
    }
    if (a.emit_log) fclose(a.emit_log);
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
