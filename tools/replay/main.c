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
 * same output. A request no rule matches gets an `error`.
 *
 * Timing (for load tests with known token timing): "first_delay_ms" in a
 * rule (or --first-delay-ms) holds the first `tokens` message back that long
 * after the `generate` arrived (the prefill), "delay_ms" (--delay-ms) spaces
 * the following ones; `start` goes out at once, `end` with the last tokens.
 * Requests are timed independently — a timer queue, not a sleep — so many
 * run interleaved as in an engine. An `abort` drops what was still due for
 * its request (with `index`, for that choice). Without delays every message
 * is sent at once, as before. */
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
    double   first_delay;    /* seconds; < 0: the command-line default */
    double   delay;          /* seconds; < 0: the command-line default */
} rp_rule;

/* A request whose tokens are still due (only with delays). */
typedef struct rp_job {
    char          *id;
    size_t         idlen;
    const rp_rule *r;
    int64_t        n;
    size_t         total, off;
    int64_t        chunk;
    bool           truncated;
    int64_t        prompt_tokens;
    double         due, delay;   /* next message; gap between messages */
    uint64_t       seq;          /* FIFO among equal due times */
    bool          *dropped;      /* per choice, after an abort with index (or NULL) */
} rp_job;

typedef struct rp_app {
    pl_tokenizer *tk;
    rp_rule      *rules;
    size_t        n_rules;
    int64_t       chunk;
    double        first_delay, delay;   /* --first-delay-ms / --delay-ms, seconds */
    pl_buf        prompt;    /* scratch: decoded prompt */
    rp_job      **heap;      /* min-heap on (due, seq) */
    size_t        n_jobs, cap_jobs;
    uint64_t      seq;
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
    out->first_delay = out->delay = -1;
    static const char *const dkeys[] = {"first_delay_ms", "delay_ms"};
    for (int k = 0; k < 2; k++) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(r, dkeys[k]);
        if (!d) continue;
        if (!cJSON_IsNumber(d) || !(d->valuedouble >= 0 && d->valuedouble <= 3600e3))
            return pl_seterr(err, errlen, PL_ERR_INVALID, "\"%s\" must be a number of milliseconds from 0 to 3600000",
                             dkeys[k]);
        *(k ? &out->delay : &out->first_delay) = d->valuedouble / 1000.0;
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

/* ================================================================ rules */

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

/* ================================================================ timing */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool job_before(const rp_job *x, const rp_job *y)
{
    return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void job_swap(rp_app *a, size_t i, size_t k)
{
    rp_job *t = a->heap[i];
    a->heap[i] = a->heap[k];
    a->heap[k] = t;
}

static void job_down(rp_app *a, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < a->n_jobs && job_before(a->heap[l], a->heap[m])) m = l;
        if (l + 1 < a->n_jobs && job_before(a->heap[l + 1], a->heap[m])) m = l + 1;
        if (m == i) return;
        job_swap(a, i, m);
        i = m;
    }
}

static void job_up(rp_app *a, size_t i)
{
    while (i && job_before(a->heap[i], a->heap[(i - 1) / 2])) {
        job_swap(a, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void job_sift_all(rp_app *a)
{
    for (size_t i = a->n_jobs / 2 + 1; i-- > 0;) job_down(a, i);
}

static int job_push(rp_app *a, rp_job *j)
{
    if (a->n_jobs == a->cap_jobs) {
        size_t cap = a->cap_jobs ? 2 * a->cap_jobs : 64;
        rp_job **h = realloc(a->heap, cap * sizeof *h);
        if (!h) return PL_ERR_NOMEM;
        a->heap = h;
        a->cap_jobs = cap;
    }
    j->seq = a->seq++;
    a->heap[a->n_jobs++] = j;
    job_up(a, a->n_jobs - 1);
    return 0;
}

static void job_free(rp_job *j)
{
    free(j->id);
    free(j->dropped);
    free(j);
}

/* One step of a request: the next `tokens` message of every choice (the
 * last carrying the finish reason), then, after the last, `end`. Returns
 * true while more remains. */
static bool emit_step(pl_stage *st, rp_job *j)
{
    const rp_rule *r = j->r;
    if (j->off > j->total) return false;   /* aborted */
    size_t off = j->off, len = j->total - off < (size_t)j->chunk ? j->total - off : (size_t)j->chunk;
    bool last = off + len >= j->total;
    msgpack_packer *pk;
    for (int64_t c = 0; c < j->n; c++) {
        if (j->dropped && j->dropped[c]) continue;
        pk = pl_stage_begin(st);
        bool sr = last && !j->truncated && r->stop_reason >= 0;
        msgpack_pack_map(pk, 4 + (last ? 1 : 0) + sr);
        pl_msg_pack_kv_cstr(pk, "type", "tokens");
        pl_msg_pack_kv_str(pk, "id", j->id, j->idlen);
        pl_msg_pack_kv_int(pk, "index", c);
        pl_msg_pack_cstr(pk, "token_ids");
        msgpack_pack_array(pk, len);
        for (size_t i = 0; i < len; i++) msgpack_pack_int32(pk, r->ids[off + i]);
        if (last) pl_msg_pack_kv_cstr(pk, "finish_reason", j->truncated ? "length" : r->finish ? r->finish : "stop");
        if (sr) pl_msg_pack_kv_int(pk, "stop_reason", r->stop_reason);
        pl_stage_end(st);
    }
    j->off = off + len;
    if (!last) return true;
    pk = pl_stage_begin(st);
    msgpack_pack_map(pk, 3);
    pl_msg_pack_kv_cstr(pk, "type", "end");
    pl_msg_pack_kv_str(pk, "id", j->id, j->idlen);
    pl_msg_pack_cstr(pk, "usage");
    msgpack_pack_map(pk, 2);
    pl_msg_pack_kv_int(pk, "prompt_tokens", j->prompt_tokens);
    pl_msg_pack_kv_int(pk, "completion_tokens", (int64_t)j->total * j->n);
    pl_stage_end(st);
    j->off = j->total + 1;
    return false;
}

/* Send everything due by now; returns the milliseconds until the next job
 * is due (-1: none left). */
static int run_due(rp_app *a, pl_stage *st)
{
    double now = now_s();
    while (a->n_jobs && a->heap[0]->due <= now) {
        rp_job *j = a->heap[0];
        if (emit_step(st, j)) {
            j->due += j->delay;
            j->seq = a->seq++;
            job_down(a, 0);
        } else {
            a->heap[0] = a->heap[--a->n_jobs];
            job_down(a, 0);
            job_free(j);
        }
    }
    if (!a->n_jobs) return -1;
    double wait = a->heap[0]->due - now;
    return wait <= 0 ? 0 : (int)ceil(wait * 1000);
}

/* ================================================================ serving */

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
    rp_job j = {.id = (char *)id, .idlen = idlen, .r = r, .n = n, .total = total, .chunk = r->chunk ? r->chunk : a->chunk,
                .truncated = truncated, .prompt_tokens = prompt->size};

    msgpack_packer *pk = pl_stage_begin(st);
    msgpack_pack_map(pk, ctx ? 5 : 4);
    pl_msg_pack_kv_cstr(pk, "type", "start");
    pl_msg_pack_kv_str(pk, "id", id, idlen);
    pl_msg_pack_kv_int(pk, "n", n);
    pl_msg_pack_kv_int(pk, "prompt_tokens", prompt->size);
    if (ctx) pl_msg_pack_kv_obj(pk, "context", ctx);
    pl_stage_end(st);

    double first = r->first_delay >= 0 ? r->first_delay : a->first_delay;
    j.delay = r->delay >= 0 ? r->delay : a->delay;
    if (first <= 0 && j.delay <= 0) {
        while (emit_step(st, &j)) {}
        return;
    }
    /* timed: the job keeps its own copy of the id (msg goes away) */
    rp_job *q = malloc(sizeof *q);
    char *idc = malloc(idlen + 1);
    if (!q || !idc) {
        free(q);
        free(idc);
        pl_stage_send_error(st, id, idlen, 500, "InternalServerError", "glm-replay: out of memory");
        return;
    }
    memcpy(idc, id, idlen);
    idc[idlen] = 0;
    *q = j;
    q->id = idc;
    q->due = now_s() + first;
    if (job_push(a, q)) {
        free(idc);
        free(q);
        pl_stage_send_error(st, id, idlen, 500, "InternalServerError", "glm-replay: out of memory");
    }
}

/* An `abort` cancels what is still due: the whole request, or one choice. */
static void on_abort(rp_app *a, const msgpack_object *msg, const char *id, size_t idlen)
{
    int64_t index = -1;
    if (pl_msg_get_int(msg, "index", &index)) index = -1;
    for (size_t i = 0; i < a->n_jobs; i++) {
        rp_job *j = a->heap[i];
        if (j->idlen != idlen || memcmp(j->id, id, idlen)) continue;
        if (index < 0) {
            j->off = j->total + 1;   /* nothing more, not even `end` */
            j->due = 0;              /* retire it at the next turn */
        } else if (index < j->n) {
            if (!j->dropped) j->dropped = calloc((size_t)j->n, sizeof *j->dropped);
            if (j->dropped) j->dropped[index] = true;
        }
    }
    job_sift_all(a);
}

static void on_msg(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *ud)
{
    if (pl_msg_type_is(msg, "generate")) on_generate(ud, st, msg, id, idlen);
    else {
        if (pl_msg_type_is(msg, "abort")) on_abort(ud, msg, id, idlen);
        pl_stage_forward(st, msg);   /* abort, ping, ...: passed on */
    }
}

/* The stage loop with timers: wait for input no longer than until the next
 * message is due. At the end of the input, what is still due is sent at its
 * time before exiting (a stop signal ends at once). pl_io flushes queued
 * output whenever it would wait. */
static int serve(rp_app *a, pl_stage *st)
{
    int wait = -1, rc = 0;
    for (;;) {
        rc = pl_stage_poll(st, wait, on_msg, a);
        if (rc == PL_ERR_EOF) break;
        if (rc && rc != PL_ERR_AGAIN) return rc;
        wait = run_due(a, st);
    }
    while (!pl_io_stopping() && (wait = run_due(a, st)) >= 0) {
        if (pl_io_flush(pl_stage_io(st))) return PL_ERR_IO;
        struct timespec ts = {wait / 1000, (long)(wait % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return pl_io_flush(pl_stage_io(st)) ? PL_ERR_IO : 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: glm-replay --model DIR --script FILE [--chunk N] [--first-delay-ms MS] [--delay-ms MS]\n"
            "                  [--in EP] [--out EP]\n"
            "  --model DIR     model directory (its tokenizer.json tokenizes the outputs)\n"
            "  --script FILE   JSON Lines rules: {\"match\", \"output\" | \"output_ids\", \"chunk\",\n"
            "                  \"finish_reason\", \"stop_reason\"}; the first match wins\n"
            "  --chunk N       token ids per tokens message (default 1)\n"
            "  --first-delay-ms MS  hold the first tokens message this long (default 0)\n"
            "  --delay-ms MS   between tokens messages (default 0); rules may set both\n"
            PL_STAGE_IO_HELP);
}

int main(int argc, char **argv)
{
    pl_log_init("glm-replay");
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},
        {"script", required_argument, 0, 's'},
        {"chunk", required_argument, 0, 'c'},
        {"first-delay-ms", required_argument, 0, 'f'},
        {"delay-ms", required_argument, 0, 'd'},
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
        case 'f':
        case 'd': {
            char *end;
            double v = strtod(optarg, &end);
            if (end == optarg || *end || !(v >= 0 && v <= 3600e3)) {
                fprintf(stderr, "glm-replay: --%s must be a number of milliseconds from 0 to 3600000\n",
                        c == 'f' ? "first-delay-ms" : "delay-ms");
                return 2;
            }
            *(c == 'f' ? &a.first_delay : &a.delay) = v / 1000.0;
            break;
        }
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
    else rc = serve(&a, st);
    pl_stage_close(st);
    for (size_t i = 0; i < a.n_rules; i++) {
        free(a.rules[i].match);
        free(a.rules[i].ids);
        free(a.rules[i].finish);
    }
    free(a.rules);
    for (size_t i = 0; i < a.n_jobs; i++) job_free(a.heap[i]);
    free(a.heap);
    pl_buf_free(&a.prompt);
    pl_tokenizer_free(a.tk);
    return rc ? 1 : 0;
}
