/* glm-bench — `vllm bench serve` in C: load any OpenAI-compatible server
 * and report what vLLM 0.33.0's client reports, in its layout.
 *
 *   glm-bench --base-url http://127.0.0.1:8000 --model NAME --tokenizer DIR \
 *       --dataset-name random --random-input-len 512 --random-output-len 128 \
 *       --request-rate 2 --num-prompts 32 [--save-result]
 *
 * Flags carry vLLM's names, defaults and meanings (vllm/benchmarks/serve.py,
 * datasets.py); the differences are listed in usage() and README.md. The
 * steps follow main_async() and benchmark(): model name (from /v1/models when
 * not given), tokenizer, dataset, prompt alignment against the server's
 * /tokenize (random dataset), optional ready check and warm-ups, the timed
 * run, the /metrics speculative-decoding counters around it, the table, the
 * JSON file. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bench.h"
#include "json.h"
#include "pyjson.h"
#include "tokenizer/tokenizer.h"

/* ================================================================ options */

typedef struct opt_i64 { bool set; int64_t v; } opt_i64;
typedef struct opt_f64 { bool set; double v; } opt_f64;
typedef struct opt_list { const char **v; size_t n; bool set; } opt_list;

typedef struct bn_args {
    const char *backend, *base_url, *host, *endpoint, *model, *served_model_name, *tokenizer;
    const char *dataset_name, *dataset_path, *label, *result_dir, *result_filename;
    const char *percentile_metrics, *metric_percentiles, *request_id_prefix, *ramp_up_strategy;
    const char *random_range_ratio, *extra_body, *chat_template_kwargs, *api_key, *tokenizer_mode;
    opt_i64 port, max_concurrency, input_len, output_len, num_prompts, seed, num_warmups, logprobs;
    opt_i64 random_input_len, random_output_len, random_prefix_len, sharegpt_output_len, custom_output_len;
    opt_i64 ramp_up_start_rps, ramp_up_end_rps, ready_check_timeout_sec, top_k;
    opt_f64 request_rate, burstiness, top_p, min_p, temperature, frequency_penalty, presence_penalty,
        repetition_penalty, request_timeout;
    opt_list header, goodput, metadata;
    bool ignore_eos, save_result, save_detailed, append_result, disable_tqdm, quiet, skip_tokenizer_init;
    bool no_oversample, disable_shuffle, skip_chat_template, trust_remote_code;
} bn_args;

enum kind { K_FLAG, K_STR, K_INT, K_FLOAT, K_LIST };

typedef struct opt_def {
    const char *name;
    enum kind   kind;
    size_t      off;
    const char *help;
} opt_def;

#define O(n, k, f, h) {n, k, offsetof(bn_args, f), h}
static const opt_def OPTS[] = {
    O("base-url", K_STR, base_url, "server base URL (default http://HOST:PORT)"),
    O("host", K_STR, host, "server host (default 127.0.0.1)"),
    O("port", K_INT, port, "server port (default 8000)"),
    O("endpoint", K_STR, endpoint, "API path (default /v1/completions)"),
    O("backend", K_STR, backend, "openai | vllm (completions) | openai-chat; default: from --endpoint"),
    O("model", K_STR, model, "model id (default: the first of GET /v1/models)"),
    O("served-model-name", K_STR, served_model_name, "name sent as \"model\" (default: --model)"),
    O("tokenizer", K_STR, tokenizer, "model directory with tokenizer.json (default: --model)"),
    O("skip-tokenizer-init", K_FLAG, skip_tokenizer_init, "no tokenizer (custom dataset only; no token metrics)"),
    O("tokenizer-mode", K_STR, tokenizer_mode, "auto or hf (accepted for vLLM command lines; tokenizer.json is used)"),
    O("trust-remote-code", K_FLAG, trust_remote_code, "accepted for vLLM command lines (no code is ever run)"),
    O("dataset-name", K_STR, dataset_name, "random (default) | sharegpt | custom"),
    O("dataset-path", K_STR, dataset_path, "ShareGPT .json or custom .jsonl file"),
    O("num-prompts", K_INT, num_prompts, "number of requests (default 1000)"),
    O("seed", K_INT, seed, "seed of every random choice (default 0)"),
    O("input-len", K_INT, input_len, "= --random-input-len"),
    O("output-len", K_INT, output_len, "= the dataset's output length option"),
    O("random-input-len", K_INT, random_input_len, "prompt tokens (default 1024)"),
    O("random-output-len", K_INT, random_output_len, "max_tokens (default 128)"),
    O("random-range-ratio", K_STR, random_range_ratio, "R or {\"input\":R,\"output\":R}: lengths uniform in L*(1+-R)"),
    O("random-prefix-len", K_INT, random_prefix_len, "tokens of a prefix shared by all prompts (default 0)"),
    O("sharegpt-output-len", K_INT, sharegpt_output_len, "override the ShareGPT completion lengths"),
    O("custom-output-len", K_INT, custom_output_len, "max_tokens for custom (default 256; -1: the file's output_tokens)"),
    O("skip-chat-template", K_FLAG, skip_chat_template, "custom: send prompts as they are"),
    O("chat-template-kwargs", K_STR, chat_template_kwargs, "custom: JSON kwargs for the chat template"),
    O("no-oversample", K_FLAG, no_oversample, "do not repeat samples to reach --num-prompts"),
    O("disable-shuffle", K_FLAG, disable_shuffle, "keep the file's order"),
    O("request-rate", K_FLOAT, request_rate, "requests/s, or inf (default: all at once)"),
    O("burstiness", K_FLOAT, burstiness, "gamma shape of the gaps; 1 = Poisson (default)"),
    O("max-concurrency", K_INT, max_concurrency, "at most this many requests in flight"),
    O("ramp-up-strategy", K_STR, ramp_up_strategy, "linear | exponential (with the two rps options)"),
    O("ramp-up-start-rps", K_INT, ramp_up_start_rps, "ramp-up start rate"),
    O("ramp-up-end-rps", K_INT, ramp_up_end_rps, "ramp-up end rate"),
    O("ignore-eos", K_FLAG, ignore_eos, "send ignore_eos (always on for the random dataset)"),
    O("logprobs", K_INT, logprobs, "completions: logprobs"),
    O("temperature", K_FLOAT, temperature, "sampling parameter (default: the server's)"),
    O("top-p", K_FLOAT, top_p, "sampling parameter"),
    O("top-k", K_INT, top_k, "sampling parameter"),
    O("min-p", K_FLOAT, min_p, "sampling parameter"),
    O("frequency-penalty", K_FLOAT, frequency_penalty, "sampling parameter"),
    O("presence-penalty", K_FLOAT, presence_penalty, "sampling parameter"),
    O("repetition-penalty", K_FLOAT, repetition_penalty, "sampling parameter"),
    O("extra-body", K_STR, extra_body, "JSON object merged into every request"),
    O("header", K_LIST, header, "KEY=VALUE ... extra request headers"),
    O("api-key", K_STR, api_key, "bearer token (default: $OPENAI_API_KEY)"),
    O("request-id-prefix", K_STR, request_id_prefix, "x-request-id prefix (default bench-<8 hex>-)"),
    O("goodput", K_LIST, goodput, "ttft:MS tpot:MS e2el:MS  SLOs for goodput"),
    O("percentile-metrics", K_STR, percentile_metrics, "ttft,tpot,itl,e2el,client_queue_time,... (default ttft,tpot,itl)"),
    O("metric-percentiles", K_STR, metric_percentiles, "e.g. 50,90,99 (default 99)"),
    O("num-warmups", K_INT, num_warmups, "warm-up requests before the run (default 0)"),
    O("ready-check-timeout-sec", K_INT, ready_check_timeout_sec, "retry a test request this long first (default 0: skip)"),
    O("request-timeout", K_FLOAT, request_timeout, "seconds per request (default 21600, aiohttp's)"),
    O("save-result", K_FLAG, save_result, "write the result JSON"),
    O("save-detailed", K_FLAG, save_detailed, "keep per-request lists in it"),
    O("append-result", K_FLAG, append_result, "append to the JSON file"),
    O("result-dir", K_STR, result_dir, "folder for the JSON file"),
    O("result-filename", K_STR, result_filename, "name of the JSON file"),
    O("label", K_STR, label, "label in the file name (default: --backend)"),
    O("metadata", K_LIST, metadata, "KEY=VALUE ... saved in the JSON"),
    O("disable-tqdm", K_FLAG, disable_tqdm, "no progress output"),
    O("quiet", K_FLAG, quiet, "only the result: no progress, no preamble"),
};
#undef O

static void usage(FILE *f)
{
    fprintf(f, "usage: glm-bench [options]   (vllm bench serve's flags; --name=value or --name value)\n");
    for (size_t i = 0; i < PL_ARRAY_LEN(OPTS); i++)
        fprintf(f, "  --%-26s %s\n", OPTS[i].name, OPTS[i].help);
    fprintf(f,
            "Differences from vLLM: --tokenizer must be a local directory (nothing is downloaded); datasets\n"
            "random, sharegpt and custom only; backends openai/vllm/openai-chat; no TLS; --quiet and\n"
            "--api-key and --request-timeout are glm-bench's own.\n");
}

static bool opt_named(const char *arg, size_t len, const char *name)
{
    /* FlexibleArgumentParser: --random_input_len == --random-input-len */
    if (strlen(name) != len) return false;
    for (size_t i = 0; i < len; i++)
        if ((arg[i] == '_' ? '-' : arg[i]) != name[i]) return false;
    return true;
}

static bool parse_f64(const char *s, double *v)
{
    char *end;
    errno = 0;
    while (*s == ' ') s++;
    double d = strtod(s, &end);
    while (*end == ' ') end++;
    if (end == s || *end || isnan(d)) return false;
    *v = d;
    return true;
}

static int parse_args(bn_args *a, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) { usage(stdout); exit(0); }
        if (strncmp(arg, "--", 2)) { fprintf(stderr, "glm-bench: unexpected argument \"%s\"\n", arg); return -1; }
        arg += 2;
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const opt_def *o = NULL;
        for (size_t k = 0; k < PL_ARRAY_LEN(OPTS) && !o; k++)
            if (opt_named(arg, len, OPTS[k].name)) o = &OPTS[k];
        if (!o) { fprintf(stderr, "glm-bench: unknown option --%.*s (see --help)\n", (int)len, arg); return -1; }
        void *field = (char *)a + o->off;
        if (o->kind == K_FLAG) {
            if (eq) { fprintf(stderr, "glm-bench: --%s takes no value\n", o->name); return -1; }
            *(bool *)field = true;
            continue;
        }
        if (o->kind == K_LIST) {
            opt_list *l = field;
            l->set = true;
            l->n = 0;
            free(l->v);
            l->v = calloc((size_t)argc, sizeof *l->v);
            if (!l->v) return -1;
            if (eq) l->v[l->n++] = eq + 1;
            else
                while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) l->v[l->n++] = argv[++i];
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) { fprintf(stderr, "glm-bench: --%s needs a value\n", o->name); return -1; }
        if (o->kind == K_STR) {
            *(const char **)field = val;
        } else if (o->kind == K_INT) {
            opt_i64 *p = field;
            if (pl_parse_i64(val, INT64_MIN, INT64_MAX, &p->v)) {
                fprintf(stderr, "glm-bench: --%s: invalid int value '%s'\n", o->name, val);
                return -1;
            }
            p->set = true;
        } else {
            opt_f64 *p = field;
            if (!parse_f64(val, &p->v)) {
                fprintf(stderr, "glm-bench: --%s: invalid float value '%s'\n", o->name, val);
                return -1;
            }
            p->set = true;
        }
    }
    return 0;
}

/* ================================================================ helpers */

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("glm-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* Python's str() of a float for messages: "inf", "10.0". */
static const char *pyfloat(pl_buf *b, double d)
{
    pl_buf_reset(b);
    pl_py_float_repr(b, d);
    return b->data;
}

static bool header_safe(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n') return false;
    return true;
}

/* Python str.strip() on ASCII whitespace (enough for KEY=VALUE pieces). */
static char *strip_dup(const char *s, size_t n)
{
    while (n && strchr(" \t\r\n\v\f", *s)) { s++; n--; }
    while (n && strchr(" \t\r\n\v\f", s[n - 1])) n--;
    return strndup(s, n);
}

static bool is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

/* The fd limit bounds the number of connections: take the hard limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ================================================================ server side */

/* GET /v1/models: the first model's id and root (vLLM: name and id). */
static int first_model(uv_loop_t *loop, bn_http *h, const char *hdr, char **name, char **id, char *err, size_t errlen)
{
    pl_buf b;
    pl_buf_init(&b);
    int status = 0;
    int rc = bn_fetch(loop, h, "GET", "/v1/models", hdr, NULL, 0, 16u << 20, &status, &b, err, errlen);
    cJSON *j = NULL;
    if (!rc && status != 200) rc = pl_seterr(err, errlen, PL_ERR_IO, "GET /v1/models: HTTP %d", status);
    if (!rc && pl_json_parse(&j, b.data, b.len, NULL, 0))
        rc = pl_seterr(err, errlen, PL_ERR_PARSE, "GET /v1/models: not JSON");
    const cJSON *d0 = j ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0) : NULL;
    const cJSON *mid = cJSON_GetObjectItemCaseSensitive(d0, "id"), *root = cJSON_GetObjectItemCaseSensitive(d0, "root");
    if (!rc && !cJSON_IsString(mid))
        rc = pl_seterr(err, errlen, PL_ERR_NOTFOUND, "no models found on the server (GET /v1/models)");
    if (!rc) {
        *name = strdup(mid->valuestring);
        *id = strdup(cJSON_IsString(root) ? root->valuestring : mid->valuestring);
    }
    cJSON_Delete(j);
    pl_buf_free(&b);
    return rc;
}

/* POST /tokenize: the server's token count of prompt (-1 and *status on failure). */
static int server_tokenize(uv_loop_t *loop, bn_http *h, const char *hdr, const char *model_id, const char *prompt,
                           size_t prompt_bytes, cJSON **tokens, int *status, char *err, size_t errlen)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "model", model_id);
    cJSON_AddItemToObject(body, "prompt", pl_json_string_new(prompt, prompt_bytes));   /* may hold NUL */
    cJSON_AddFalseToObject(body, "add_special_tokens");
    pl_buf req, resp;
    pl_buf_init(&req);
    pl_buf_init(&resp);
    pl_pyjson_dump(&req, body, NULL);
    cJSON_Delete(body);
    int rc = bn_fetch(loop, h, "POST", "/tokenize", hdr, req.data, req.len, 256u << 20, status, &resp, err, errlen);
    *tokens = NULL;
    if (!rc && *status == 200) {
        cJSON *j = NULL;
        if (pl_json_parse(&j, resp.data, resp.len, NULL, 0) ||
            !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "tokens")))
            rc = pl_seterr(err, errlen, PL_ERR_PARSE, "/tokenize answered without a token list");
        else *tokens = cJSON_DetachItemFromObjectCaseSensitive(j, "tokens");
        cJSON_Delete(j);
    }
    pl_buf_free(&req);
    pl_buf_free(&resp);
    return rc;
}

/* vLLM's _align_prompts_to_server_tokenizer: when the server's tokenizer
 * counts the first prompt differently, every prompt longer than its target
 * is cut to the target with the server's own /tokenize and /detokenize. */
static void align_prompts(uv_loop_t *loop, bn_http *h, const char *hdr, const char *base_url, const char *model_id,
                          bn_dataset *d)
{
    if (!d->n) return;
    char err[512] = "";
    int status = 0;
    cJSON *toks = NULL;
    int rc = server_tokenize(loop, h, hdr, model_id, d->s[0].prompt, d->s[0].prompt_bytes, &toks, &status, err, sizeof err);
    if (rc == PL_ERR_IO) {
        printf("WARNING: %s unreachable (%s), skipping alignment.\n", base_url, err);
        return;
    }
    if (!rc && status == 404) {
        printf("WARNING: /tokenize unavailable (404 Not Found: either this server has no /tokenize route, or it does "
               "not serve a model named `%s` (its served names are listed by GET /v1/models)), skipping alignment.\n",
               model_id);
        return;
    }
    if (!rc && status != 200) {
        printf("WARNING: /tokenize unavailable (HTTP %d), skipping alignment.\n", status);
        return;
    }
    if (rc) {
        printf("WARNING: /tokenize probe failed (%s), skipping alignment.\n", err);
        return;
    }
    int64_t got = cJSON_GetArraySize(toks), expected = d->s[0].prompt_len;
    cJSON_Delete(toks);
    if (got == expected) return;
    printf("WARNING: tokenizer mismatch (server=%lld, expected=%lld), re-aligning prompts.\n", (long long)got,
           (long long)expected);
    pl_buf req, resp;
    pl_buf_init(&req);
    pl_buf_init(&resp);
    for (size_t i = 0; i < d->n; i++) {
        bn_sample *s = &d->s[i];
        if (server_tokenize(loop, h, hdr, model_id, s->prompt, s->prompt_bytes, &toks, &status, err, sizeof err) || status != 200) {
            cJSON_Delete(toks);
            continue;   /* vLLM keeps the original on any failure */
        }
        if (cJSON_GetArraySize(toks) <= s->prompt_len) { cJSON_Delete(toks); continue; }
        while (cJSON_GetArraySize(toks) > s->prompt_len) cJSON_DeleteItemFromArray(toks, cJSON_GetArraySize(toks) - 1);
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "model", model_id);
        cJSON_AddItemToObject(body, "tokens", toks);
        pl_buf_reset(&req);
        pl_pyjson_dump(&req, body, NULL);
        cJSON_Delete(body);
        if (bn_fetch(loop, h, "POST", "/detokenize", hdr, req.data, req.len, 256u << 20, &status, &resp, err,
                     sizeof err) || status != 200)
            continue;
        cJSON *j = NULL;
        if (!pl_json_parse(&j, resp.data, resp.len, NULL, 0)) {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
            if (cJSON_IsString(p)) {
                pl_buf nb;   /* the text's real bytes: a NUL comes back as itself */
                pl_buf_init(&nb);
                pl_json_str_bytes(&nb, p->valuestring);
                pl_buf_putc(&nb, 0);
                if (pl_buf_ok(&nb)) {
                    free(s->prompt);
                    s->prompt_bytes = nb.len - 1;
                    s->prompt = nb.data;   /* taken over */
                } else {
                    pl_buf_free(&nb);
                }
            }
        }
        cJSON_Delete(j);
    }
    pl_buf_free(&req);
    pl_buf_free(&resp);
}

/* The vllm:spec_decode_* counters of GET /metrics, summed over labels, read
 * line by line exactly as vLLM's fetch_spec_decode_metrics does. */
typedef struct spec_counts {
    bool    found;
    int64_t drafts, draft_tokens, accepted;
    int64_t per_pos[64];
    bool    has_pos[64];
} spec_counts;

static bool fetch_spec(uv_loop_t *loop, bn_http *h, const char *hdr, spec_counts *sc)
{
    memset(sc, 0, sizeof *sc);
    pl_buf b;
    pl_buf_init(&b);
    char err[256];
    int status = 0;
    if (bn_fetch(loop, h, "GET", "/metrics", hdr, NULL, 0, 64u << 20, &status, &b, err, sizeof err) || status != 200) {
        pl_buf_free(&b);
        return false;
    }
    for (char *line = b.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *s = strip_dup(line, strlen(line));
        if (!s) break;
        if (!*s || *s == '#' || strncmp(s, "vllm:spec_decode", 16)) { free(s); continue; }
        size_t nl = strcspn(s, " \t");
        char *rest = s + nl;
        while (*rest == ' ' || *rest == '\t') rest++;
        const char *value = *rest ? rest : s;   /* parts[-1] */
        size_t namelen = strcspn(s, "{");
        if (namelen > nl) namelen = nl;
        if (namelen < 6 || strncmp(s + namelen - 6, "_total", 6)) { free(s); continue; }
        sc->found = true;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)namelen, s);
        double v;
        if (parse_f64(value, &v) && isfinite(v)) {
            int64_t iv = (int64_t)v;
            if (strstr(name, "num_drafts")) sc->drafts += iv;
            else if (strstr(name, "num_draft_tokens")) sc->draft_tokens += iv;
            else if (strstr(name, "num_accepted_tokens_per_pos")) {
                const char *p = strstr(s, "position=\"");
                int64_t pos;
                char num[24];
                if (p) {
                    p += 10;
                    size_t q = strcspn(p, "\"");
                    snprintf(num, sizeof num, "%.*s", (int)(q < 23 ? q : 23), p);
                    if (!pl_parse_i64(num, 0, 63, &pos)) {
                        sc->per_pos[pos] += iv;
                        sc->has_pos[pos] = true;
                    }
                }
            } else if (strstr(name, "num_accepted_tokens")) sc->accepted += iv;
        }
        free(s);
    }
    pl_buf_free(&b);
    return sc->found;
}

static bool spec_delta(const spec_counts *a, const spec_counts *b, bn_spec_stats *st, double *pos_buf)
{
    int64_t drafts = b->drafts - a->drafts, dt = b->draft_tokens - a->draft_tokens, acc = b->accepted - a->accepted;
    if (dt <= 0) return false;
    memset(st, 0, sizeof *st);
    st->num_drafts = drafts;
    st->draft_tokens = dt;
    st->accepted_tokens = acc;
    st->acceptance_rate = (double)acc / (double)dt * 100;
    st->acceptance_length = drafts > 0 ? 1 + (double)acc / (double)drafts : 0.0;
    st->per_pos = pos_buf;
    if (drafts > 0)
        for (int p = 0; p < 64; p++) {
            if (!a->has_pos[p] && !b->has_pos[p]) continue;
            int64_t before = a->per_pos[p], after = b->has_pos[p] ? b->per_pos[p] : before;
            pos_buf[st->n_pos++] = (double)(after - before) / (double)drafts;
        }
    return true;
}

/* ================================================================ result file */

static int save_json(const char *path, const cJSON *r, bool append)
{
    pl_buf b;
    pl_buf_init(&b);
    pl_pyjson_opts o = PL_PYJSON_DEFAULT;
    o.ensure_ascii = 1;
    int rc = pl_pyjson_dump(&b, r, &o);
    FILE *f = rc ? NULL : fopen(path, append ? "a+" : "w");
    if (!f) { pl_buf_free(&b); return -1; }
    if (append) {
        fseek(f, 0, SEEK_END);
        if (ftell(f) > 0) fputc('\n', f);
    }
    size_t w = fwrite(b.data, 1, b.len, f);
    rc = (w == b.len && !fclose(f)) ? 0 : -1;
    pl_buf_free(&b);
    return rc;
}

/* ================================================================ main */

int main(int argc, char **argv)
{
    pl_log_init("glm-bench");
    bn_args a;
    memset(&a, 0, sizeof a);
    if (parse_args(&a, argc, argv)) return 2;

    /* defaults, as vLLM's argparse has them */
    const char *host = a.host ? a.host : "127.0.0.1";
    int64_t port = a.port.set ? a.port.v : 8000;
    const char *endpoint = a.endpoint ? a.endpoint : "/v1/completions";
    size_t el = strlen(endpoint);
    const char *backend = a.backend;
    if (!backend) backend = el >= 16 && !strcmp(endpoint + el - 16, "chat/completions") ? "openai-chat" : "openai";
    enum bn_backend be;
    if (!strcmp(backend, "openai") || !strcmp(backend, "vllm")) be = BN_BACKEND_COMPLETIONS;
    else if (!strcmp(backend, "openai-chat")) be = BN_BACKEND_CHAT;
    else return die("--backend %s is not supported (openai, vllm, openai-chat)", backend);
    if (be == BN_BACKEND_COMPLETIONS && (el < 11 || strcmp(endpoint + el - 11, "completions")))
        return die("OpenAI Completions API URL must end with one of: {'completions'}.");
    if (be == BN_BACKEND_CHAT && (el < 16 || strcmp(endpoint + el - 16, "chat/completions")))
        return die("OpenAI Chat Completions API URL must end with one of: {'chat/completions'}.");
    if (a.tokenizer_mode && strcmp(a.tokenizer_mode, "auto") && strcmp(a.tokenizer_mode, "hf"))
        return die("--tokenizer-mode %s is not supported (auto, hf: the model's tokenizer.json)", a.tokenizer_mode);
    const char *dataset = a.dataset_name ? a.dataset_name : "random";
    int64_t num_prompts = a.num_prompts.set ? a.num_prompts.v : 1000;
    int64_t seed = a.seed.set ? a.seed.v : 0;
    double rate = a.request_rate.set ? a.request_rate.v : INFINITY;
    double burst = a.burstiness.set ? a.burstiness.v : 1.0;
    int64_t warmups = a.num_warmups.set ? a.num_warmups.v : 0;
    bool quiet = a.quiet;
    if (a.max_concurrency.set && a.max_concurrency.v <= 0) return die("--max-concurrency must be greater than 0");
    if (seed < 0 || seed > UINT32_MAX) return die("--seed must be between 0 and 2**32 - 1");
    if (!(burst > 0)) return die("A positive burstiness factor is expected, but given %g.", burst);
    if (!(rate > 0)) return die("--request-rate must be positive (or inf)");
    if (num_prompts < 0 || num_prompts > 100000000) return die("--num-prompts must be 0..100000000");
    enum bn_ramp ramp = BN_RAMP_NONE;
    if (a.ramp_up_strategy) {
        if (!strcmp(a.ramp_up_strategy, "linear")) ramp = BN_RAMP_LINEAR;
        else if (!strcmp(a.ramp_up_strategy, "exponential")) ramp = BN_RAMP_EXPONENTIAL;
        else return die("--ramp-up-strategy must be linear or exponential");
        if (!isinf(rate))
            return die("When using ramp-up, do not specify --request-rate. The request rate will be controlled by "
                       "ramp-up parameters. Please remove the --request-rate argument.");
        if (!a.ramp_up_start_rps.set || !a.ramp_up_end_rps.set)
            return die("When using --ramp-up-strategy, both --ramp-up-start-rps and --ramp-up-end-rps must be specified");
        if (a.ramp_up_start_rps.v < 0 || a.ramp_up_end_rps.v < 0) return die("Ramp-up start and end RPS must be non-negative");
        if (a.ramp_up_start_rps.v > a.ramp_up_end_rps.v) return die("Ramp-up start RPS must be less than end RPS");
        if (ramp == BN_RAMP_EXPONENTIAL && a.ramp_up_start_rps.v == 0)
            return die("For exponential ramp-up, the start RPS cannot be 0.");
    }
    pl_buf fb;   /* scratch for Python float spellings */
    pl_buf_init(&fb);

    /* URLs and headers */
    char base_url[600];
    if (a.base_url) snprintf(base_url, sizeof base_url, "%s", a.base_url);
    else snprintf(base_url, sizeof base_url, strchr(host, ':') ? "http://[%s]:%lld" : "http://%s:%lld", host,
                  (long long)port);
    pl_buf hdr;
    pl_buf_init(&hdr);
    const char *key = a.api_key ? a.api_key : getenv("OPENAI_API_KEY");
    if (key && *key) {
        if (!header_safe(key)) return die("the API key must not contain line breaks");
        pl_buf_printf(&hdr, "Authorization: Bearer %s\r\n", key);
    }
    for (size_t i = 0; i < a.header.n; i++) {
        const char *kv = a.header.v[i], *eq = strchr(kv, '=');
        if (!eq) return die("Invalid header format. Please use KEY=VALUE format.");
        char *k = strip_dup(kv, (size_t)(eq - kv)), *v = strip_dup(eq + 1, strlen(eq + 1));
        if (!k || !v || !*k || !header_safe(k) || !header_safe(v) || strchr(k, ':'))
            return die("invalid --header %s", kv);
        pl_buf_printf(&hdr, "%s: %s\r\n", k, v);
        free(k);
        free(v);
    }

    /* request id prefix: bench-<8 hex>- like vLLM's uuid4().hex[:8] */
    char idpfx[32];
    if (!a.request_id_prefix) {
        unsigned char rb[4] = {0};
        if (getrandom(rb, sizeof rb, 0) != (ssize_t)sizeof rb) {
            uint32_t t = (uint32_t)time(NULL) ^ (uint32_t)getpid();
            memcpy(rb, &t, 4);
        }
        snprintf(idpfx, sizeof idpfx, "bench-%02x%02x%02x%02x-", rb[0], rb[1], rb[2], rb[3]);
        a.request_id_prefix = idpfx;
    }

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);   /* a server closing a socket we write to is an error, not death */
    uv_loop_t *loop = uv_default_loop();
    bn_http *http = NULL;
    char err[1024];
    if (bn_http_init(&http, loop, base_url, err, sizeof err)) return die("%s", err);

    /* model */
    char *model_name = NULL, *model_id = NULL;
    if (!a.model) {
        if (!quiet) printf("Model not specified, fetching first model from server...\n");
        if (first_model(loop, http, hdr.data, &model_name, &model_id, err, sizeof err))
            return die("Failed to fetch models from server at %s/v1/models: %s", base_url, err);
        if (!quiet) printf("First model name: %s, first model id: %s\n", model_name, model_id);
    } else {
        model_name = a.served_model_name ? strdup(a.served_model_name) : NULL;
        model_id = strdup(a.model);
    }

    /* tokenizer */
    bool custom = !strcmp(dataset, "custom"), sharegpt = !strcmp(dataset, "sharegpt"), random = !strcmp(dataset, "random");
    if (!custom && !sharegpt && !random)
        return die("--dataset-name %s is not supported (random, sharegpt, custom)", dataset);
    bn_tok tok;
    memset(&tok, 0, sizeof tok);
    bool have_tok = !a.skip_tokenizer_init;
    const char *tokenizer_id = a.tokenizer ? a.tokenizer : model_id;
    if (have_tok) {
        if (!is_dir(tokenizer_id))
            return die("--tokenizer %s: not a local directory (glm-bench reads tokenizer.json from a model directory; "
                       "it downloads nothing)", tokenizer_id);
        if (bn_tok_load(&tok, tokenizer_id, custom && !a.skip_chat_template, err, sizeof err))
            return die("tokenizer: %s", err);
    } else if (!custom) {
        return die("--skip-tokenizer-init works with the custom dataset only");
    }

    /* dataset */
    if (random && a.dataset_path)
        return die("Cannot use 'random' dataset with --dataset-path. Please specify the appropriate --dataset-name "
                   "(e.g., 'sharegpt', 'custom') for your dataset file: %s", a.dataset_path);
    if ((sharegpt || custom) && !a.dataset_path) return die("dataset_path must be provided for loading data.");
    if (a.input_len.set) a.random_input_len = a.input_len;
    if (a.output_len.set) {
        a.random_output_len = a.output_len;
        a.sharegpt_output_len = a.output_len;
        a.custom_output_len = a.output_len;
    }
    bool ignore_eos = a.ignore_eos || random;   /* vLLM: random datasets always ignore EOS */
    bn_dataset ds;
    memset(&ds, 0, sizeof ds);
    int rc;
    if (random) {
        bn_random_opts ro = {.seed = (uint64_t)seed, .num_prompts = num_prompts, .id_prefix = a.request_id_prefix};
        ro.input_len = a.random_input_len.set ? a.random_input_len.v : 1024;
        ro.output_len = a.random_output_len.set ? a.random_output_len.v : 128;
        ro.prefix_len = a.random_prefix_len.set ? a.random_prefix_len.v : 0;
        const char *rr = a.random_range_ratio ? a.random_range_ratio : "0.0";
        double r1;
        if (parse_f64(rr, &r1)) ro.range_in = ro.range_out = r1;
        else {
            cJSON *j = NULL;
            const cJSON *ri, *rout;
            if (pl_json_parse(&j, rr, strlen(rr), NULL, 0) || !cJSON_IsNumber(ri = cJSON_GetObjectItemCaseSensitive(j, "input")) ||
                !cJSON_IsNumber(rout = cJSON_GetObjectItemCaseSensitive(j, "output"))) {
                cJSON_Delete(j);
                return die("--random-range-ratio must be a number or {\"input\": R, \"output\": R}");
            }
            ro.range_in = ri->valuedouble;
            ro.range_out = rout->valuedouble;
            cJSON_Delete(j);
        }
        rc = bn_dataset_random(&ds, &tok, &ro, err, sizeof err);
        if (!rc && ds.token_mismatch)
            fprintf(stderr,
                    "WARNING: Across all generated prompts, there were %lld %s tokens than expected after decoding and "
                    "re-encoding. This is expected due to the imperfect nature of the sampling procedure.\n",
                    (long long)llabs(ds.token_mismatch), ds.token_mismatch > 0 ? "more" : "fewer");
    } else {
        cJSON *ctk = NULL;
        if (a.chat_template_kwargs &&
            (pl_json_parse(&ctk, a.chat_template_kwargs, strlen(a.chat_template_kwargs), NULL, 0) || !cJSON_IsObject(ctk)))
            return die("--chat-template-kwargs must be a JSON object");
        bn_file_opts fo = {.path = a.dataset_path, .seed = seed, .num_prompts = num_prompts,
                           .no_shuffle = a.disable_shuffle, .no_oversample = a.no_oversample,
                           .skip_chat_template = a.skip_chat_template, .chat_template_kwargs = ctk,
                           .id_prefix = a.request_id_prefix, .max_bytes = (size_t)4 << 30};
        if (sharegpt) {
            fo.has_output_len = a.sharegpt_output_len.set;
            fo.output_len = a.sharegpt_output_len.v;
            rc = bn_dataset_sharegpt(&ds, &tok, &fo, err, sizeof err);
        } else {
            int64_t col = a.custom_output_len.set ? a.custom_output_len.v : 256;
            fo.has_output_len = col != -1;
            fo.output_len = col;
            rc = bn_dataset_custom(&ds, have_tok ? &tok : NULL, &fo, err, sizeof err);
        }
        cJSON_Delete(ctk);
    }
    if (rc) return die("dataset: %s", err);
    if (!ds.n) return die("the dataset is empty (--num-prompts %lld)", (long long)num_prompts);
    if (random) align_prompts(loop, http, hdr.data, base_url, model_id, &ds);

    /* goodput SLOs */
    bn_goodput slo = {0};
    for (size_t i = 0; i < a.goodput.n; i++) {
        const char *s = a.goodput.v[i], *colon = strchr(s, ':');
        double v;
        if (!colon || strchr(colon + 1, ':') || !parse_f64(colon + 1, &v))
            return die("Invalid format found for service level objectives. Specify service level objectives for "
                       "goodput as \"KEY:VALUE\" pairs, where the key is a metric name, and the value is a number in "
                       "milliseconds.");
        size_t kl = (size_t)(colon - s);
        if (v < 0) return die("Invalid value found, %.*s: %s. The service level objective value should be non-negative.",
                              (int)kl, s, colon + 1);
        if (kl == 4 && !strncmp(s, "ttft", 4)) { slo.has_ttft = true; slo.ttft_ms = v; }
        else if (kl == 4 && !strncmp(s, "tpot", 4)) { slo.has_tpot = true; slo.tpot_ms = v; }
        else if (kl == 4 && !strncmp(s, "e2el", 4)) { slo.has_e2el = true; slo.e2el_ms = v; }
        else return die("Invalid metric name found, %.*s: %s. The service level objective name should be one of "
                        "['ttft', 'tpot', 'e2el']. ", (int)kl, s, colon + 1);
    }
    bool goodput = slo.has_ttft || slo.has_tpot || slo.has_e2el;

    /* sampling parameters (only those given) and --extra-body over them */
    cJSON *extra = cJSON_CreateObject();
    if (a.top_p.set) cJSON_AddItemToObject(extra, "top_p", pl_json_float_new(a.top_p.v));
    if (a.top_k.set) cJSON_AddNumberToObject(extra, "top_k", (double)a.top_k.v);
    if (a.min_p.set) cJSON_AddItemToObject(extra, "min_p", pl_json_float_new(a.min_p.v));
    if (a.temperature.set) cJSON_AddItemToObject(extra, "temperature", pl_json_float_new(a.temperature.v));
    if (a.frequency_penalty.set) cJSON_AddItemToObject(extra, "frequency_penalty", pl_json_float_new(a.frequency_penalty.v));
    if (a.presence_penalty.set) cJSON_AddItemToObject(extra, "presence_penalty", pl_json_float_new(a.presence_penalty.v));
    if (a.repetition_penalty.set) cJSON_AddItemToObject(extra, "repetition_penalty", pl_json_float_new(a.repetition_penalty.v));
    if (!a.temperature.set && !quiet)
        printf("WARNING: vllm bench serve no longer sets temperature==0 (greedy) in requests by default. The default "
               "will be determined on the server side and can be model/API specific. For the old behavior, include "
               "--temperature=0.\n");
    if (a.extra_body) {
        cJSON *eb = NULL;
        if (pl_json_parse(&eb, a.extra_body, strlen(a.extra_body), NULL, 0) || !cJSON_IsObject(eb))
            return die("--extra-body must be a JSON object");
        for (cJSON *e = eb->child; e; e = e->next) {
            cJSON_DeleteItemFromObjectCaseSensitive(extra, e->string);
            cJSON_AddItemToObject(extra, e->string, cJSON_Duplicate(e, 1));
        }
        cJSON_Delete(eb);
    }

    /* percentiles */
    const char *pm = a.percentile_metrics ? a.percentile_metrics : "ttft,tpot,itl";
    char *pm_copy = strdup(pm), *save = NULL;
    const char *metrics[64];
    size_t n_metrics = 0;
    for (char *t = strtok_r(pm_copy, ",", &save); t && n_metrics < 64; t = strtok_r(NULL, ",", &save)) metrics[n_metrics++] = t;
    const char *mp = a.metric_percentiles ? a.metric_percentiles : "99";
    double pcts[64];
    size_t npct = 0;
    char *mp_copy = strdup(mp);
    save = NULL;
    for (char *t = strtok_r(mp_copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (npct == 64 || !parse_f64(t, &pcts[npct]) || !(pcts[npct] >= 0 && pcts[npct] <= 100))
            return die("--metric-percentiles: each value must be a number from 0 to 100");
        npct++;
    }

    bn_run_cfg rc_cfg = {
        .backend = be, .path = endpoint, .model = model_name ? model_name : model_id, .ignore_eos = ignore_eos,
        .has_logprobs = a.logprobs.set, .logprobs = a.logprobs.v, .extra_body = extra, .headers = hdr.data,
        .request_rate = rate, .burstiness = burst, .ramp = ramp, .ramp_start = (double)a.ramp_up_start_rps.v,
        .ramp_end = (double)a.ramp_up_end_rps.v, .max_concurrency = a.max_concurrency.set ? a.max_concurrency.v : 0,
        .timeout_s = a.request_timeout.set ? a.request_timeout.v : 6 * 60 * 60,
    };
    rc_cfg.progress = quiet || a.disable_tqdm ? BN_PROGRESS_NONE : isatty(2) ? BN_PROGRESS_BAR : BN_PROGRESS_LINES;
    if (!(rc_cfg.timeout_s > 0)) return die("--request-timeout must be positive");

    /* ready check and warm-ups: the first sample, results thrown away */
    if (!quiet) printf("Starting initial single prompt test run...\n");
    int64_t ready = a.ready_check_timeout_sec.set ? a.ready_check_timeout_sec.v : 0;
    bn_dataset one = {.s = ds.s, .n = 1};
    double zero = 0, dur;
    if (ready > 0) {
        if (!quiet) printf("Waiting for endpoint to become up in %lld seconds\n", (long long)ready);
        double deadline = bn_now() + (double)ready;
        bn_run_cfg tc = rc_cfg;
        tc.progress = BN_PROGRESS_NONE;
        bool ok = false;
        bn_output o;
        bn_output_init(&o);
        for (;;) {
            bn_output_free(&o);
            bn_output_init(&o);
            if (bn_run(loop, http, &one, &zero, &tc, &o, &dur, err, sizeof err)) return die("%s", err);
            ok = o.success;
            if (!ok) fprintf(stderr, "glm-bench: endpoint is not ready: %s\n", o.error ? o.error : "");
            if (ok || bn_now() >= deadline) break;
            double left = deadline - bn_now();
            usleep((useconds_t)((left < 5 ? left : 5) * 1e6));
        }
        if (!ok) return die("Initial test run failed - Please make sure benchmark arguments are correctly specified. "
                            "Error: %s", o.error ? o.error : "");
        bn_output_free(&o);
        if (!quiet) printf("Initial test run completed.\n");
    } else if (!quiet) {
        printf("Skipping endpoint ready check.\n");
    }
    if (warmups > 0) {
        if (!quiet) printf("Warming up with %lld requests...\n", (long long)warmups);
        bn_dataset w = {.n = (size_t)warmups};
        w.s = malloc(w.n * sizeof *w.s);
        double *wd = calloc(w.n, sizeof *wd);
        bn_output *wo = calloc(w.n, sizeof *wo);
        if (!w.s || !wd || !wo) return die("out of memory");
        for (size_t i = 0; i < w.n; i++) {
            w.s[i] = ds.s[0];
            bn_output_init(&wo[i]);
        }
        bn_run_cfg wc = rc_cfg;
        wc.request_rate = INFINITY;
        wc.ramp = BN_RAMP_NONE;
        if (!quiet && !a.disable_tqdm) wc.progress = rc_cfg.progress;
        if (bn_run(loop, http, &w, wd, &wc, wo, &dur, err, sizeof err)) return die("%s", err);
        for (size_t i = 0; i < w.n; i++) bn_output_free(&wo[i]);
        free(w.s);
        free(wd);
        free(wo);
        if (!quiet) printf("Warmup run completed.\n");
    }

    if (!quiet) printf("Starting main benchmark run...\n");
    if (!quiet) {
        if (ramp != BN_RAMP_NONE) {
            printf("Traffic ramp-up strategy: %s.\n", a.ramp_up_strategy);
            printf("Will increase RPS from %lld to %lld RPS over the duration of the benchmark.\n",
                   (long long)a.ramp_up_start_rps.v, (long long)a.ramp_up_end_rps.v);
        } else {
            printf("Traffic request rate: %s\n", pyfloat(&fb, rate));
        }
        printf("Burstiness factor: %s (%s)\n", pyfloat(&fb, burst), burst == 1.0 ? "Poisson process" : "Gamma distribution");
        if (a.max_concurrency.set) printf("Maximum request concurrency: %lld\n", (long long)a.max_concurrency.v);
        else printf("Maximum request concurrency: None\n");
    }
    fflush(stdout);

    spec_counts sp_before, sp_after;
    bool have_sp = fetch_spec(loop, http, hdr.data, &sp_before);

    /* the timed run: arrivals from the global numpy RandomState (np.random.seed(seed)) */
    bn_mt np_rng;
    bn_mt_seed_numpy(&np_rng, (uint32_t)seed);
    double *delay = calloc(ds.n, sizeof *delay), *rates = calloc(ds.n, sizeof *rates);
    bn_output *outs = calloc(ds.n, sizeof *outs);
    if (!delay || !rates || !outs) return die("out of memory");
    if (bn_arrivals(delay, rates, ds.n, &rc_cfg, &np_rng)) return die("invalid request rate schedule");
    for (size_t i = 0; i < ds.n; i++) bn_output_init(&outs[i]);
    if (bn_run(loop, http, &ds, delay, &rc_cfg, outs, &dur, err, sizeof err)) return die("%s", err);

    bn_spec_stats spec, *specp = NULL;
    double pos_buf[64];
    if (have_sp && fetch_spec(loop, http, hdr.data, &sp_after) && spec_delta(&sp_before, &sp_after, &spec, pos_buf))
        specp = &spec;

    /* metrics, table, JSON */
    bn_metrics m;
    if (bn_metrics_compute(&m, outs, ds.n, dur, have_tok ? tok.tk : NULL, pcts, npct, &slo))
        return die("computing the metrics failed (out of memory?)");
    if (!quiet && m.completed == 0)
        fprintf(stderr, "WARNING: All requests failed. This is likely due to a misconfiguration on the benchmark arguments.\n");
    bn_report_cfg rep = {.has_max_concurrency = a.max_concurrency.set, .max_concurrency = a.max_concurrency.v,
                         .request_rate = ramp != BN_RAMP_NONE ? INFINITY : rate, .has_tokenizer = have_tok,
                         .goodput = goodput, .metrics = metrics, .n_metrics = n_metrics, .pcts = pcts, .npct = npct,
                         .spec = specp};
    pl_buf text;
    pl_buf_init(&text);
    cJSON *result = cJSON_CreateObject();
    char dt[32];
    time_t now = time(NULL);
    strftime(dt, sizeof dt, "%Y%m%d-%H%M%S", localtime(&now));
    cJSON_AddStringToObject(result, "date", dt);
    cJSON_AddStringToObject(result, "endpoint_type", backend);
    cJSON_AddStringToObject(result, "backend", backend);
    if (a.label) cJSON_AddStringToObject(result, "label", a.label);
    else cJSON_AddNullToObject(result, "label");
    cJSON_AddStringToObject(result, "model_id", model_id);
    if (have_tok) cJSON_AddStringToObject(result, "tokenizer_id", tokenizer_id);
    else cJSON_AddNullToObject(result, "tokenizer_id");
    cJSON_AddNumberToObject(result, "num_prompts", (double)num_prompts);
    for (size_t i = 0; i < a.metadata.n; i++) {
        const char *kv = a.metadata.v[i], *eq = strchr(kv, '=');
        if (!eq) return die("Invalid metadata format. Please use KEY=VALUE format.");
        char *k = strip_dup(kv, (size_t)(eq - kv)), *v = strip_dup(eq + 1, strlen(eq + 1));
        cJSON_DeleteItemFromObjectCaseSensitive(result, k);
        cJSON_AddStringToObject(result, k, v);
        free(k);
        free(v);
    }
    if (isinf(rate)) cJSON_AddStringToObject(result, "request_rate", "inf");
    else cJSON_AddItemToObject(result, "request_rate", pl_json_float_new(rate));
    cJSON_AddItemToObject(result, "burstiness", pl_json_float_new(burst));
    if (a.max_concurrency.set) cJSON_AddNumberToObject(result, "max_concurrency", (double)a.max_concurrency.v);
    else cJSON_AddNullToObject(result, "max_concurrency");
    if (ramp != BN_RAMP_NONE) {
        cJSON_AddStringToObject(result, "ramp_up_strategy", a.ramp_up_strategy);
        cJSON_AddNumberToObject(result, "ramp_up_start_rps", (double)a.ramp_up_start_rps.v);
        cJSON_AddNumberToObject(result, "ramp_up_end_rps", (double)a.ramp_up_end_rps.v);
    }
    if (bn_report(&text, result, &m, outs, ds.n, dur, &rep)) return die("building the report failed (out of memory?)");
    fwrite(text.data, 1, text.len, stdout);
    fflush(stdout);
    if (!a.save_detailed) {
        static const char *const drop[] = {"input_lens", "output_lens", "start_times", "ttfts", "itls",
                                           "generated_texts", "errors", "server_queue_times", "server_ttfts"};
        for (size_t i = 0; i < PL_ARRAY_LEN(drop); i++) cJSON_DeleteItemFromObjectCaseSensitive(result, drop[i]);
    }
    int exit_code = 0;
    if (a.save_result || a.append_result) {
        char name[PATH_MAX], mc[48] = "";
        const char *base_model = strrchr(model_id, '/') ? strrchr(model_id, '/') + 1 : model_id;
        const char *label = a.label ? a.label : backend;
        if (a.max_concurrency.set) snprintf(mc, sizeof mc, "-concurrency%lld", (long long)a.max_concurrency.v);
        if (a.result_filename) snprintf(name, sizeof name, "%s", a.result_filename);
        else if (ramp != BN_RAMP_NONE)
            snprintf(name, sizeof name, "%s-ramp-up-%s-%lldqps-%lldqps%s-%s-%s.json", label, a.ramp_up_strategy,
                     (long long)a.ramp_up_start_rps.v, (long long)a.ramp_up_end_rps.v, mc, base_model, dt);
        else snprintf(name, sizeof name, "%s-%sqps%s-%s-%s.json", label, pyfloat(&fb, rate), mc, base_model, dt);
        pl_buf path;
        pl_buf_init(&path);
        if (a.result_dir) {
            mkdir(a.result_dir, 0777);
            pl_buf_printf(&path, "%s/", a.result_dir);
        }
        pl_buf_puts(&path, name);
        if (save_json(path.data, result, a.append_result))
            exit_code = die("cannot write %s: %s", path.data, strerror(errno));
        pl_buf_free(&path);
    }

    cJSON_Delete(result);
    pl_buf_free(&text);
    bn_metrics_free(&m);
    for (size_t i = 0; i < ds.n; i++) bn_output_free(&outs[i]);
    free(outs);
    free(delay);
    free(rates);
    bn_http_free(http);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    bn_dataset_free(&ds);
    bn_tok_free(&tok);
    cJSON_Delete(extra);
    free(pm_copy);
    free(mp_copy);
    free(model_name);
    free(model_id);
    free(a.header.v);
    free(a.goodput.v);
    free(a.metadata.v);
    pl_buf_free(&hdr);
    pl_buf_free(&fb);
    return exit_code;
}
