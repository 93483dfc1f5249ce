/* bench.h — glm-bench internals (tools/bench): one header for the tool's
 * modules and its unit tests. */
#ifndef BN_BENCH_H
#define BN_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "pl.h"

typedef struct pl_tokenizer pl_tokenizer;

/* ================================================================ rng.c */

typedef struct bn_pcg64 {          /* numpy.random.default_rng(seed) */
    unsigned __int128 state, inc;
    int               has_u32;     /* numpy splits a 64-bit draw into two 32-bit ones */
    uint32_t          u32;
} bn_pcg64;

void     bn_pcg64_seed(bn_pcg64 *g, uint64_t seed);
uint64_t bn_pcg64_next64(bn_pcg64 *g);
uint32_t bn_pcg64_next32(bn_pcg64 *g);
/* One element of Generator.integers(low, high, size=...) (high exclusive). */
int64_t  bn_pcg64_integers(bn_pcg64 *g, int64_t low, int64_t high);

typedef struct bn_mt {             /* MT19937 as numpy's legacy RandomState and Python's random */
    uint32_t key[624];
    int      pos;
    int      has_gauss;
    double   gauss;
} bn_mt;

void     bn_mt_seed_numpy(bn_mt *m, uint32_t seed);   /* np.random.seed(seed) */
void     bn_mt_seed_python(bn_mt *m, int64_t seed);   /* random.seed(seed) */
uint32_t bn_mt_next32(bn_mt *m);
double   bn_mt_double(bn_mt *m);                      /* RandomState.random_sample() */
double   bn_mt_gamma(bn_mt *m, double shape, double scale);   /* np.random.gamma */
uint64_t bn_mt_randbelow(bn_mt *m, uint64_t n);       /* random._randbelow (n >= 1) */
void     bn_mt_shuffle(bn_mt *m, void *base, size_t n, size_t size);  /* random.shuffle */

/* ================================================================ stats.c */

/* numpy float64 reductions with numpy's summation order, so results agree
 * to the last bit. Empty input gives 0 (vLLM passes `xs or 0`). */
double bn_np_sum(const double *a, size_t n);
double bn_np_mean(const double *a, size_t n);
double bn_np_std(const double *a, size_t n);          /* ddof=0 */
double bn_np_median(const double *a, size_t n);
double bn_np_percentile(const double *a, size_t n, double p);   /* method='linear' */

/* ================================================================ sse.c */

/* Server-Sent Events framing as vllm bench serve splits it (see sse.c). */
typedef struct bn_sse {
    pl_buf buf;        /* bytes not yet part of a message */
    size_t scanned;    /* buf[0..scanned) holds no "\n\n" */
    size_t max;        /* bound on buf: one message may not exceed it */
} bn_sse;

/* One message, stripped (e.g. "data: {...}"); a non-zero return stops the feed. */
typedef int (*bn_sse_fn)(void *ud, const char *msg, size_t len);

void bn_sse_init(bn_sse *s, size_t max_bytes);
void bn_sse_free(bn_sse *s);
/* Append body bytes and hand every complete message to fn. Returns 0,
 * PL_ERR_TOOLONG (a message over max), PL_ERR_PARSE (invalid UTF-8),
 * PL_ERR_NOMEM, or fn's non-zero value. */
int  bn_sse_feed(bn_sse *s, const char *p, size_t n, bn_sse_fn fn, void *ud);

/* ================================================================ metrics.c */

/* What one request measured (vLLM's RequestFuncOutput). Times are seconds
 * on the monotonic clock; start_time is when the request was sent. */
typedef struct bn_output {
    bool    success;
    double  start_time;
    double  ttft;               /* first counted SSE message - start */
    double  latency;            /* last counted message - start (E2EL) */
    double *itl;                /* gaps between counted messages */
    size_t  n_itl, cap_itl;
    int64_t output_tokens;      /* usage.completion_tokens; 0 = absent (recounted) */
    int64_t prompt_len;         /* the dataset's, replaced by usage.prompt_tokens */
    double  client_queue_time;  /* waited for a --max-concurrency slot */
    pl_buf  text;               /* generated text (content / text) */
    char   *error;              /* NULL on success */
    bool    has_server_queue_time, has_server_ttft;
    double  server_queue_time, server_ttft;   /* from a `metrics` object, seconds */
} bn_output;

void bn_output_init(bn_output *o);
void bn_output_free(bn_output *o);
int  bn_output_add_itl(bn_output *o, double gap);
void bn_output_set_error(bn_output *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Summary of one metric, in milliseconds. */
typedef struct bn_dist {
    double  mean, median, std;
    double *pct;                /* one per requested percentile */
} bn_dist;

typedef struct bn_goodput {     /* --goodput SLOs in ms; has_* = given */
    bool   has_ttft, has_tpot, has_e2el;
    double ttft_ms, tpot_ms, e2el_ms;
} bn_goodput;

typedef struct bn_metrics {
    int64_t  completed, failed, total_input, total_output;
    double   request_throughput, request_goodput, output_throughput, total_token_throughput;
    bn_dist  ttft, tpot, itl, e2el;
    double   max_output_tokens_per_s;
    int64_t  max_concurrent_requests;
    int64_t *output_lens;       /* per request; 0 for failures */
    size_t   n;
} bn_metrics;

/* vLLM's calculate_metrics. tok (may be NULL) recounts outputs without a
 * usage count; pcts are percentiles such as 99. */
int  bn_metrics_compute(bn_metrics *m, const bn_output *o, size_t n, double dur_s, const pl_tokenizer *tok,
                        const double *pcts, size_t npct, const bn_goodput *slo);
void bn_metrics_free(bn_metrics *m);

/* Speculative decoding over the run, from the server's /metrics counters
 * (vLLM's spec_decode_stats). */
typedef struct bn_spec_stats {
    double   acceptance_rate;       /* percent */
    double   acceptance_length;
    int64_t  num_drafts, draft_tokens, accepted_tokens;
    double  *per_pos;               /* acceptance per draft position, fraction */
    size_t   n_pos;
} bn_spec_stats;

/* How the result is reported (vLLM's printing conditions). */
typedef struct bn_report_cfg {
    bool          has_max_concurrency;
    int64_t       max_concurrency;
    double        request_rate;         /* INFINITY: all at once */
    bool          has_tokenizer;        /* without one vLLM prints no token lines */
    bool          goodput;
    const char  **metrics;              /* --percentile-metrics names */
    size_t        n_metrics;
    const double *pcts;
    size_t        npct;
    const bn_spec_stats *spec;          /* or NULL */
} bn_report_cfg;

/* The "Failed requests ... detected" lines (and a count per distinct
 * error), then the result table in vLLM's exact layout, into text; the same
 * numbers with vLLM's key names appended to result (an object) in vLLM's
 * key order. */
int bn_report(pl_buf *text, cJSON *result, const bn_metrics *m, const bn_output *o, size_t n, double dur_s,
              const bn_report_cfg *c);

/* Python's "{s:{c}^{n}}" centring and the percentile label str(p) rule. */
void bn_center(pl_buf *out, const char *s, char fill, int width);
void bn_pct_word(pl_buf *out, double p);

/* ================================================================ http.c */

typedef struct uv_loop_s uv_loop_t;
typedef struct bn_http bn_http;

/* Callbacks of one request. on_head: status line and headers are in;
 * on_body: a piece of the (de-chunked) body. A non-zero return from either
 * aborts the request. on_done: it is over — err 0 for a complete response,
 * else a PL_ERR_* with a message (connect failure, disconnect, timeout, bad
 * HTTP, or the code the callback returned). */
typedef struct bn_http_cb {
    int  (*on_head)(void *ud, int status, const char *reason);
    int  (*on_body)(void *ud, const char *p, size_t n);
    void (*on_done)(void *ud, int err, const char *msg);
} bn_http_cb;

double bn_now(void);   /* monotonic seconds */

/* A client for base_url ("http://host:port[/prefix]"); the host is resolved here. */
int  bn_http_init(bn_http **out, uv_loop_t *loop, const char *base_url, char *err, size_t errlen);
/* Ends requests still in flight (as failures) and closes every connection;
 * the memory goes when the loop has run the close callbacks. */
void bn_http_free(bn_http *c);
/* Send method path (appended to the base URL's path). headers: extra
 * "Name: value\r\n" lines or NULL; body: JSON or NULL. */
int  bn_http_send(bn_http *c, const char *method, const char *path, const char *headers, const char *body,
                  size_t body_len, double timeout_s, const bn_http_cb *cb, void *ud);
const char *bn_http_hostport(const bn_http *c);
size_t      bn_http_connections(const bn_http *c);

/* ================================================================ dataset.c */

typedef struct tok_model tok_model;

/* The tokenizer side of a model directory, as vLLM's client sees it. */
typedef struct bn_tok {
    const pl_tokenizer *tk;        /* tokenizer.json (owned by own_tk or tm) */
    pl_tokenizer       *own_tk;
    tok_model          *tm;        /* with the chat template, when one is needed */
    int32_t             vocab;     /* tokenizer.vocab_size (without added tokens) */
    int                 num_special;   /* num_special_tokens_to_add() */
    int32_t            *special;   /* all_special_ids (tokenizer_config.json) */
    size_t              n_special;
} bn_tok;

/* dir: a model directory (tokenizer.json, tokenizer_config.json). With
 * need_template the chat template is loaded too (custom dataset). */
int  bn_tok_load(bn_tok *t, const char *dir, bool need_template, char *err, size_t errlen);
void bn_tok_free(bn_tok *t);

/* One request of the workload (vLLM's SampleRequest). */
typedef struct bn_sample {
    char   *prompt;                /* NUL-terminated text */
    size_t  prompt_bytes;
    int64_t prompt_len;            /* tokens, as the dataset counts them */
    int64_t output_len;            /* max_tokens to ask for */
    char   *request_id;
} bn_sample;

typedef struct bn_dataset {
    bn_sample *s;
    size_t     n;
    int64_t    token_mismatch;     /* random: tokens off target after the retries */
} bn_dataset;

void bn_dataset_free(bn_dataset *d);

typedef struct bn_random_opts {
    uint64_t    seed;
    int64_t     num_prompts;
    int64_t     input_len, output_len, prefix_len;
    double      range_in, range_out;   /* --random-range-ratio (input, output) */
    const char *id_prefix;
} bn_random_opts;

/* vLLM's RandomDataset: per-request lengths from numpy's default_rng(seed),
 * tokens (offset + i + arange(len)) over the non-special vocabulary, decoded
 * and re-encoded until the prompt has the target token count. */
int bn_dataset_random(bn_dataset *d, const bn_tok *t, const bn_random_opts *o, char *err, size_t errlen);

typedef struct bn_file_opts {
    const char *path;
    int64_t     seed;
    int64_t     num_prompts;
    bool        has_output_len;    /* --sharegpt-output-len / --custom-output-len != -1 */
    int64_t     output_len;
    bool        no_shuffle, no_oversample, skip_chat_template;
    const cJSON *chat_template_kwargs;   /* or NULL */
    const char *id_prefix;
    size_t      max_bytes;         /* bound on the file */
} bn_file_opts;

/* ShareGPT JSON: [{"conversations": [{"value": prompt}, {"value": completion}, ...]}, ...] */
int bn_dataset_sharegpt(bn_dataset *d, const bn_tok *t, const bn_file_opts *o, char *err, size_t errlen);
/* JSON Lines: {"prompt": "...", "output_tokens": N} per line. t may be NULL
 * (--skip-tokenizer-init: every length counts 1). */
int bn_dataset_custom(bn_dataset *d, const bn_tok *t, const bn_file_opts *o, char *err, size_t errlen);

/* ================================================================ run.c */

enum bn_backend {
    BN_BACKEND_COMPLETIONS,   /* vLLM --backend openai / vllm: /v1/completions */
    BN_BACKEND_CHAT,          /* --backend openai-chat: /v1/chat/completions */
};

enum bn_ramp { BN_RAMP_NONE, BN_RAMP_LINEAR, BN_RAMP_EXPONENTIAL };

enum bn_progress { BN_PROGRESS_NONE, BN_PROGRESS_BAR, BN_PROGRESS_LINES };

typedef struct bn_run_cfg {
    enum bn_backend backend;
    const char     *path;            /* endpoint path, e.g. "/v1/completions" */
    const char     *model;           /* the request's "model" */
    bool            ignore_eos;
    bool            has_logprobs;
    int64_t         logprobs;
    const cJSON    *extra_body;      /* sampling parameters and --extra-body, merged over the payload */
    const char     *headers;         /* extra "Name: value\r\n" lines (Authorization, --header) */
    double          request_rate;    /* INFINITY: all at t=0 */
    double          burstiness;
    enum bn_ramp    ramp;
    double          ramp_start, ramp_end;
    int64_t         max_concurrency; /* 0: no limit */
    enum bn_progress progress;
    double          timeout_s;       /* per request (aiohttp's total timeout: 6 h) */
} bn_run_cfg;

/* vLLM's get_request schedule: delay[i] = seconds after the start at which
 * request i is sent; rate[i] = the rate in force. m is the global numpy
 * RandomState (np.random.seed(--seed)). */
int bn_arrivals(double *delay, double *rate, size_t n, const bn_run_cfg *c, bn_mt *m);

/* The JSON body vLLM's request function posts for sample s. */
int bn_request_body(pl_buf *out, const bn_run_cfg *c, const bn_sample *s);

/* vLLM's per-message rules for one endpoint: a stripped SSE message in, the
 * output updated (first token, ITL, usage, text). ts is the message's time. */
typedef struct bn_stream {
    enum bn_backend backend;
    bn_output      *out;
    double          st, recent;      /* request start; last counted message */
    bool            first;           /* a counted message arrived */
    size_t          counted;         /* counted messages (progress) */
    double        (*now)(void);      /* the clock (bn_now; tests script it) */
} bn_stream;

#define BN_MAX_TEXT (256 << 20)    /* generated text kept per request */

void bn_stream_init(bn_stream *s, enum bn_backend b, bn_output *out, double st);
/* Returns 0, or PL_ERR_PARSE (not JSON, wrong shapes) / PL_ERR_TOOLONG /
 * PL_ERR_NOMEM with err set; vLLM fails such a request too. */
int  bn_stream_message(bn_stream *s, const char *msg, size_t len, char *err, size_t errlen);
/* The response ended normally: success, latency and text as vLLM sets them. */
void bn_stream_finish(bn_stream *s);
/* The request failed (transport, HTTP framing, a bad message): msg is the error. */
void bn_stream_fail(bn_stream *s, const char *msg);

/* Run the whole workload: requests sent at their arrival times, at most
 * max_concurrency in flight, each streamed to the end. outs[i] belongs to
 * d->s[i]; *dur_s is vLLM's benchmark duration. */
int bn_run(uv_loop_t *loop, bn_http *http, const bn_dataset *d, const double *delay, const bn_run_cfg *c,
           bn_output *outs, double *dur_s, char *err, size_t errlen);

/* One plain request, the loop run until it ends: the body (at most max
 * bytes) into resp, the status into *status. */
int bn_fetch(uv_loop_t *loop, bn_http *http, const char *method, const char *path, const char *headers,
             const char *body, size_t body_len, size_t max, int *status, pl_buf *resp, char *err, size_t errlen);

#endif
