/* serve.c — requests ⇄ sequences, the step, and the protocol messages. */
#include "serve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.h"
#include "msg.h"
#include "sample.h"
#include "scheduler.h"

#define ENG_MAX_N          128     /* choices per request (as glm-tokenize) */
#define ENG_MAX_STOP_IDS   1024
#define ENG_PROMPT_ROWS    128     /* logits rows per step for prompt logprobs */
#define ENG_REQ_BUCKETS    1024    /* request id hash table */
#define ENG_STATS_SUBS     16      /* periodic `stats` subscriptions at most */
#define ENG_STATS_MIN_S    0.05    /* shortest `stats` interval */

/* One generate request: n choices, each a scheduler sequence. Choice 0 is
 * scheduled at once; choices 1..n-1 are forked from it once its prompt is in
 * the cache (sharing its full prompt blocks), which also keeps every `tokens`
 * behind the `start` that may wait for prompt logprobs. */
typedef struct eng_req {
    char           id[PL_MSG_ID_MAX];
    size_t         idlen;
    struct eng_req *hnext;          /* hash chain */
    struct eng_req *dead_next;      /* freed after the step that ended it */
    uint64_t       serial;          /* arrival number (unseeded RNG streams) */
    int            n, n_done;
    eng_sched_seq **seqs;           /* [n]; NULL before fork or once finished */
    unsigned char *done;            /* [n]: finished, aborted or failed */
    eng_sampling   sp;
    int32_t       *stop_ids, *eos_ids;
    int            n_stop, n_eos;
    int            n_prompt;
    int64_t        completion_tokens;
    bool           forked, failed, dead;
    /* `start`: opened at accept (the generate's fields, type, id, n,
     * prompt_tokens, arrival_time), closed when choice 0 is first scheduled
     * (cached_tokens, scheduled_time, the prompt_logprobs header) and sent
     * then, or once the prompt logprobs appended to it are complete
     * (plp_next reaches n_prompt) */
    msgpack_sbuffer start;
    bool           scheduled, start_sent;
    int            plp_next;        /* next prompt position whose entry is due */
    double         t_arrival, t_sched, t_first;   /* engine wall clock, Unix seconds */
} eng_req;

/* A `stats` asked with an interval: answered again every interval seconds. */
typedef struct eng_stats_sub {
    char   id[PL_MSG_ID_MAX];
    size_t idlen;
    double interval, next;          /* seconds; next on the monotonic clock */
} eng_stats_sub;

/* What one planned item produced in the current step. */
typedef struct step_res {
    eng_req *r;                     /* its request (valid all step, even if ended) */
    int      hrow;                  /* first row of its tokens in the target's hidden */
    int      n_em;                  /* tokens sampled: accepted drafts + 1; 0 if none */
    eng_sample_out *out;            /* [ENG_SPEC_MAX + 1] their ids and logprobs */
    int      mrow;                  /* its row in the MTP first pass's logits, -1 none */
    int      mlast;                 /* its last row in the MTP first pass's hidden_out */
    const float *rows;              /* its logits rows in this step's e->logits */
} step_res;

/* A sequence getting drafts at the end of a step. */
typedef struct draft_job {
    eng_sched_seq *q;
    int      k;                     /* drafts to make */
    int      hrow;                  /* row of e->hn holding the hidden to recycle */
    int32_t  d[ENG_SPEC_MAX];
} draft_job;

struct eng_serve {
    const eng_lm   *lm;
    eng_serve_cfg   cfg;
    eng_serve_sink  sink;
    int             vocab, max_model_len;
    eng_kv_pool    *kv;
    eng_sched      *sched;
    eng_sampler    *sampler;        /* = samplers[0]: prompt logprobs, on the step loop's thread */
    eng_sampler   **samplers;       /* [n_samplers] one per host thread that samples (lm->parallel) */
    int             n_samplers;
    float          *logits;         /* [max rows][vocab] */
    eng_seq        *lmseqs;         /* [max_num_seqs] */
    step_res       *res;            /* [max_num_seqs] */
    eng_sample_out *outs;           /* [max_num_seqs * (ENG_SPEC_MAX + 1)] */
    /* speculative decoding (num_spec_tokens > 0), rows: T = max batched tokens, S = max_num_seqs */
    int             spec_k;
    float          *hidden;         /* [T, H] target hidden; compacted in place for the MTP */
    float          *hn;             /* [T, H] the MTP's post-norm hidden (recycled) */
    float          *hbuf;           /* [S, H] draft-step hidden inputs */
    float          *mlogits;        /* [S, vocab] draft logits */
    int32_t        *mtok;           /* [T] MTP input ids */
    eng_seq        *mseqs;          /* [S] */
    draft_job      *jobs;           /* [S] */
    eng_req        *buckets[ENG_REQ_BUCKETS];
    int             n_live;
    uint64_t        serial;
    eng_req        *dead;           /* requests ended during the current step */
    msgpack_sbuffer sbuf;           /* the message being built */
    msgpack_packer  pk;
    bool            sink_failed;
    eng_serve_stats stats;
    eng_stats_sub   subs[ENG_STATS_SUBS];
    int             n_subs;
    double          log_next;       /* monotonic: next stats log line */
    eng_serve_stats log_prev;       /* counters at the previous log line */
};

/* ===== clocks ===== */

/* Timestamps in messages: the wall clock, so a gateway on the same host can
 * compare them with its own. Timers and durations: the monotonic clock. */
static double wall_now(void) { return pl_wall_s(); }
static double mono_now(void) { return pl_mono_s(); }

const double eng_step_time_buckets[ENG_STEP_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
};

/* ===== config ===== */

void eng_serve_cfg_defaults(eng_serve_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->max_num_seqs = 256;
    c->max_num_batched_tokens = 2048;
    c->block_size = 16;
    c->kv_cache_bytes = (size_t)4 << 30;
    c->log_stats_interval = 10.0;
    c->prefix_caching = true;
}

/* ===== output ===== */

static msgpack_packer *out_begin(eng_serve *e)
{
    msgpack_sbuffer_clear(&e->sbuf);
    return &e->pk;
}

static void out_send(eng_serve *e, const char *data, size_t len)
{
    if (!e->sink_failed && e->sink.send(e->sink.ud, data, len)) e->sink_failed = true;
}

static void out_end(eng_serve *e)
{
    out_send(e, e->sbuf.data, e->sbuf.size);
    msgpack_sbuffer_clear(&e->sbuf);
}

static void send_error(eng_serve *e, const char *id, size_t idlen, int code, const char *text)
{
    pl_log(code >= 500 ? PL_LOG_ERROR : PL_LOG_WARN, id, idlen, "error %d: %s", code, text);
    pl_msg_pack_error(out_begin(e), id, idlen, code, code >= 500 ? "InternalServerError" : "BadRequestError", text);
    out_end(e);
}

/* {logprob, top: [[id, logprob], ...]} */
/* "logprob" and "top" of a logprobs entry (two map pairs). */
static void pack_logprob_fields(msgpack_packer *pk, const eng_sample_out *o)
{
    pl_msg_pack_kv_double(pk, "logprob", o->logprob);
    pl_msg_pack_cstr(pk, "top");
    msgpack_pack_array(pk, (size_t)o->n_top);
    for (int i = 0; i < o->n_top; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_int32(pk, o->top[i].id);
        msgpack_pack_double(pk, o->top[i].logprob);
    }
}

static void pack_logprob_entry(msgpack_packer *pk, const eng_sample_out *o)
{
    msgpack_pack_map(pk, 2);
    pack_logprob_fields(pk, o);
}

/* One `tokens` message with the n tokens a step produced for choice q. */
static void emit_tokens(eng_serve *e, const eng_req *r, const eng_sched_seq *q, const eng_sample_out *o, int n,
                        enum eng_finish f)
{
    bool lp = r->sp.logprobs >= 0;
    bool stop_reason = f == ENG_FINISH_STOP;
    for (int i = 0; stop_reason && i < r->n_eos; i++)
        if (r->eos_ids[i] == q->stop_token) stop_reason = false;   /* eos: stop_reason stays null (vLLM) */
    msgpack_packer *pk = out_begin(e);
    msgpack_pack_map(pk, 4 + lp + (f != ENG_FINISH_NONE) + stop_reason);
    pl_msg_pack_kv_cstr(pk, "type", "tokens");
    pl_msg_pack_kv_str(pk, "id", r->id, r->idlen);
    pl_msg_pack_kv_int(pk, "index", q->index);
    pl_msg_pack_cstr(pk, "token_ids");
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_int32(pk, o[i].token);
    if (lp) {
        pl_msg_pack_cstr(pk, "logprobs");
        msgpack_pack_array(pk, (size_t)n);
        for (int i = 0; i < n; i++) pack_logprob_entry(pk, &o[i]);
    }
    if (f != ENG_FINISH_NONE) pl_msg_pack_kv_cstr(pk, "finish_reason", f == ENG_FINISH_STOP ? "stop" : "length");
    if (stop_reason) pl_msg_pack_kv_int(pk, "stop_reason", q->stop_token);
    out_end(e);
}

static void send_start(eng_serve *e, eng_req *r)
{
    out_send(e, r->start.data, r->start.size);
    msgpack_sbuffer_destroy(&r->start);
    msgpack_sbuffer_init(&r->start);
    r->start_sent = true;
}

/* Close `start` (choice 0 scheduled now, cached_tokens of its prompt served
 * from the prefix cache) and send it unless prompt logprobs are still due. */
static void start_close(eng_serve *e, eng_req *r, int cached_tokens)
{
    bool plp = r->sp.prompt_logprobs >= 0;
    r->scheduled = true;
    r->t_sched = wall_now();
    msgpack_packer pk;
    msgpack_packer_init(&pk, &r->start, msgpack_sbuffer_write);
    pl_msg_pack_kv_int(&pk, "cached_tokens", cached_tokens);
    pl_msg_pack_kv_double(&pk, "scheduled_time", r->t_sched);
    if (plp) {
        /* entries for positions 1..n_prompt-1 are appended as their rows come */
        pl_msg_pack_cstr(&pk, "prompt_logprobs");
        msgpack_pack_array(&pk, (size_t)r->n_prompt);
        msgpack_pack_nil(&pk);
    }
    if (!plp || r->n_prompt == 1) send_start(e, r);
}

/* `end`: usage and the request's engine timestamps. A request ended before
 * its `start` went out (aborted choice by choice while queued, or before its
 * prompt logprobs were complete) sends it first, so no stage sees an `end`
 * for a request it never started; missing prompt logprobs entries are nil. */
static void emit_end(eng_serve *e, eng_req *r)
{
    if (!r->scheduled) start_close(e, r, 0);
    if (!r->start_sent) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &r->start, msgpack_sbuffer_write);
        for (; r->plp_next < r->n_prompt; r->plp_next++) msgpack_pack_nil(&pk);
        send_start(e, r);
    }
    msgpack_packer *pk = out_begin(e);
    msgpack_pack_map(pk, 4 + (r->t_first > 0));
    pl_msg_pack_kv_cstr(pk, "type", "end");
    pl_msg_pack_kv_str(pk, "id", r->id, r->idlen);
    pl_msg_pack_cstr(pk, "usage");
    msgpack_pack_map(pk, 2);
    pl_msg_pack_kv_int(pk, "prompt_tokens", r->n_prompt);
    pl_msg_pack_kv_int(pk, "completion_tokens", r->completion_tokens);
    if (r->t_first > 0) pl_msg_pack_kv_double(pk, "first_token_time", r->t_first);
    pl_msg_pack_kv_double(pk, "finish_time", wall_now());
    out_end(e);
}

/* ===== requests ===== */

static uint64_t id_hash(const char *id, size_t len)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
    return h;
}

static eng_req **req_slot(eng_serve *e, const char *id, size_t idlen)
{
    eng_req **p = &e->buckets[id_hash(id, idlen) % ENG_REQ_BUCKETS];
    while (*p && !((*p)->idlen == idlen && !memcmp((*p)->id, id, idlen))) p = &(*p)->hnext;
    return p;
}

static void req_free(eng_req *r)
{
    free(r->seqs);
    free(r->done);
    free(r->stop_ids);
    free(r->eos_ids);
    msgpack_sbuffer_destroy(&r->start);
    free(r);
}

/* Unlink r from the table and free its sequences (their blocks go back at
 * once). The struct itself is freed after the current step, since planned
 * items of this step may still point at it. */
static void req_end(eng_serve *e, eng_req *r)
{
    if (r->dead) return;
    eng_req **p = req_slot(e, r->id, r->idlen);
    if (*p == r) *p = r->hnext;
    for (int i = 0; i < r->n; i++) {
        eng_sched_remove(e->sched, r->seqs[i]);
        r->seqs[i] = NULL;
    }
    r->dead = true;
    r->dead_next = e->dead;
    e->dead = r;
    e->n_live--;
}

static void reap(eng_serve *e)
{
    while (e->dead) {
        eng_req *r = e->dead;
        e->dead = r->dead_next;
        req_free(r);
    }
}

/* A choice is over (finished, aborted): when it was the last, `end`. */
static void choice_done(eng_serve *e, eng_req *r, int index)
{
    if (r->done[index]) return;
    r->done[index] = 1;
    eng_sched_remove(e->sched, r->seqs[index]);
    r->seqs[index] = NULL;
    if (++r->n_done == r->n) {
        emit_end(e, r);
        req_end(e, r);
    }
}

static void req_fail(eng_serve *e, eng_req *r, int code, const char *text)
{
    if (r->dead) return;
    r->failed = true;
    send_error(e, r->id, r->idlen, code, text);
    req_end(e, r);
}

/* ===== generate: parsing and validation ===== */

typedef struct gen_parse {
    int32_t *prompt;
    int      n_prompt;
    int64_t  n, max_tokens;
    bool     has_max_tokens, ignore_eos, has_stop, has_eos;
    int32_t *stop_ids, *eos_ids;
    int      n_stop, n_eos;
    eng_sampling sp;
} gen_parse;

static void gen_parse_free(gen_parse *g)
{
    free(g->prompt);
    free(g->stop_ids);
    free(g->eos_ids);
}

/* An array of token ids, each in [0, vocab). */
static int parse_ids(const msgpack_object_array *a, int vocab, size_t max, const char *what,
                     int32_t **out, int *n, char *err, size_t errlen)
{
    if (a->size > max) return pl_seterr(err, errlen, PL_ERR_RANGE, "%s has %u ids, more than %zu", what, a->size, max);
    *out = malloc(sizeof **out * (a->size ? a->size : 1));
    if (!*out) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < a->size; i++) {
        int64_t v;
        if (pl_msg_as_int(&a->ptr[i], &v))
            return pl_seterr(err, errlen, PL_ERR_INVALID, "%s must be a list of integers (item %u is not)", what, i);
        if (v < 0 || v >= vocab)
            return pl_seterr(err, errlen, PL_ERR_RANGE, "%s: token id %lld is out of the vocabulary (size %d)", what,
                             (long long)v, vocab);
        (*out)[i] = (int32_t)v;
    }
    *n = (int)a->size;
    return PL_OK;
}

/* Absent or nil keeps *v; a wrong type is an error naming the key. */
static int opt_num(const msgpack_object *m, const char *key, double *v, char *err, size_t errlen)
{
    int rc = pl_msg_get_num(m, key, v);
    if (rc == PL_ERR_INVALID) return pl_seterr(err, errlen, rc, "sampling.%s must be a number", key);
    return PL_OK;
}

static int opt_int(const msgpack_object *m, const char *key, int64_t lo, int64_t hi, int64_t *v, bool *present,
                   char *err, size_t errlen)
{
    int rc = pl_msg_get_int_in(m, key, lo, hi, v);
    if (present) *present = rc == PL_OK;
    if (rc == PL_ERR_NOTFOUND) return PL_OK;
    if (rc == PL_ERR_RANGE)
        return pl_seterr(err, errlen, rc, "sampling.%s must be between %lld and %lld", key, (long long)lo, (long long)hi);
    if (rc) return pl_seterr(err, errlen, rc, "sampling.%s must be an integer", key);
    return PL_OK;
}

static int opt_ids(const msgpack_object *m, const char *key, int vocab, int32_t **ids, int *n, bool *present,
                   char *err, size_t errlen)
{
    const msgpack_object_array *a;
    int rc = pl_msg_get_array(m, key, &a);
    *present = rc == PL_OK;
    if (rc == PL_ERR_NOTFOUND) return PL_OK;
    char what[48];
    snprintf(what, sizeof what, "sampling.%s", key);
    if (rc) return pl_seterr(err, errlen, rc, "%s must be a list of token ids", what);
    return parse_ids(a, vocab, ENG_MAX_STOP_IDS, what, ids, n, err, errlen);
}

static int parse_sampling(const msgpack_object *s, int vocab, gen_parse *g, char *err, size_t errlen)
{
    eng_sampling *p = &g->sp;
    int64_t v;
    bool present;
    int rc;
    if ((rc = opt_num(s, "temperature", &p->temperature, err, errlen)) ||
        (rc = opt_num(s, "top_p", &p->top_p, err, errlen)) ||
        (rc = opt_num(s, "min_p", &p->min_p, err, errlen)) ||
        (rc = opt_num(s, "presence_penalty", &p->presence_penalty, err, errlen)) ||
        (rc = opt_num(s, "frequency_penalty", &p->frequency_penalty, err, errlen)) ||
        (rc = opt_num(s, "repetition_penalty", &p->repetition_penalty, err, errlen)))
        return rc;
    v = -1;
    if ((rc = opt_int(s, "top_k", -1, INT32_MAX, &v, NULL, err, errlen))) return rc;
    p->top_k = (int)v;
    if ((rc = opt_int(s, "max_tokens", 1, INT32_MAX, &g->max_tokens, &g->has_max_tokens, err, errlen))) return rc;
    v = 0;
    if ((rc = opt_int(s, "min_tokens", 0, INT32_MAX, &v, NULL, err, errlen))) return rc;
    p->min_tokens = (int)v;
    v = -1;
    if ((rc = opt_int(s, "logprobs", 0, ENG_MAX_LOGPROBS, &v, NULL, err, errlen))) return rc;
    p->logprobs = (int)v;
    v = -1;
    if ((rc = opt_int(s, "prompt_logprobs", 0, ENG_MAX_LOGPROBS, &v, NULL, err, errlen))) return rc;
    p->prompt_logprobs = (int)v;
    if ((rc = opt_int(s, "seed", INT64_MIN, INT64_MAX, &p->seed, &present, err, errlen))) return rc;
    p->has_seed = present;
    rc = pl_msg_get_bool(s, "ignore_eos", &g->ignore_eos);
    if (rc == PL_ERR_INVALID) return pl_seterr(err, errlen, rc, "sampling.ignore_eos must be a boolean");
    if ((rc = opt_ids(s, "stop_token_ids", vocab, &g->stop_ids, &g->n_stop, &g->has_stop, err, errlen)) ||
        (rc = opt_ids(s, "eos_token_ids", vocab, &g->eos_ids, &g->n_eos, &g->has_eos, err, errlen)))
        return rc;
    if (g->has_max_tokens && p->min_tokens > g->max_tokens)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "min_tokens must be less than or equal to max_tokens=%lld, got %d",
                         (long long)g->max_tokens, p->min_tokens);
    return PL_OK;   /* parse_generate runs eng_sampling_check on the result */
}

static int parse_generate(const eng_serve *e, const msgpack_object *msg, gen_parse *g, char *err, size_t errlen)
{
    memset(g, 0, sizeof *g);
    eng_sampling_defaults(&g->sp);
    g->n = 1;
    const msgpack_object_array *ids;
    int rc = pl_msg_get_array(msg, "prompt_ids", &ids);
    if (rc) return pl_seterr(err, errlen, PL_ERR_INVALID, "generate needs 'prompt_ids', a list of token ids");
    if ((rc = parse_ids(ids, e->vocab, (size_t)e->max_model_len, "prompt_ids", &g->prompt, &g->n_prompt, err, errlen))) {
        if (rc == PL_ERR_RANGE && ids->size > (uint32_t)e->max_model_len) rc = PL_ERR_TOOLONG;
        return rc;
    }
    rc = pl_msg_get_int_in(msg, "n", 1, ENG_MAX_N, &g->n);
    if (rc && rc != PL_ERR_NOTFOUND)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "n must be an integer between 1 and %d", ENG_MAX_N);
    const msgpack_object *s;
    rc = pl_msg_get_map(msg, "sampling", &s);
    if (rc == PL_ERR_INVALID) return pl_seterr(err, errlen, rc, "'sampling' must be a map");
    if (rc == PL_OK && (rc = parse_sampling(s, e->vocab, g, err, errlen))) return rc;
    return eng_sampling_check(&g->sp, e->vocab, err, errlen);
}

/* ===== generate: accept ===== */

static int32_t *dup_ids(const int32_t *a, int n)
{
    int32_t *c = malloc(sizeof *c * (size_t)(n ? n : 1));
    if (c && n) memcpy(c, a, sizeof *c * (size_t)n);
    return c;
}

/* Open `start` in r->start: generate's fields minus what the engine
 * consumed or sets, plus type, id, n, prompt_tokens, arrival_time; the map
 * header already counts what start_close appends (cached_tokens,
 * scheduled_time, prompt_logprobs). */
static void start_open(eng_req *r, const msgpack_object *msg)
{
    static const char *const skip[] = {"type", "id", "prompt_ids", "n", "sampling", "prompt_tokens",
                                       "prompt_logprobs", "cached_tokens", "arrival_time", "scheduled_time"};
    bool plp = r->sp.prompt_logprobs >= 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &r->start, msgpack_sbuffer_write);
    pl_msg_pack_map_except(&pk, msg, skip, PL_ARRAY_LEN(skip), 7 + plp);
    pl_msg_pack_kv_cstr(&pk, "type", "start");
    pl_msg_pack_kv_str(&pk, "id", r->id, r->idlen);
    pl_msg_pack_kv_int(&pk, "n", r->n);
    pl_msg_pack_kv_int(&pk, "prompt_tokens", r->n_prompt);
    pl_msg_pack_kv_double(&pk, "arrival_time", r->t_arrival);
}

static void on_generate(eng_serve *e, const msgpack_object *msg, const char *id, size_t idlen)
{
    eng_req **slot = req_slot(e, id, idlen);
    if (*slot) {
        /* The error ends the request downstream, so the older one is dropped too. */
        req_fail(e, *slot, 400, "a request with this id is already running");
        reap(e);
        return;
    }
    char err[512];
    gen_parse g;
    int rc = parse_generate(e, msg, &g, err, sizeof err);
    eng_req *r = NULL;
    if (!rc && !(r = calloc(1, sizeof *r))) rc = pl_seterr(err, sizeof err, PL_ERR_NOMEM, "out of memory");
    if (rc) {
        send_error(e, id, idlen, rc == PL_ERR_NOMEM ? 500 : 400, err);
        gen_parse_free(&g);
        free(r);
        return;
    }
    memcpy(r->id, id, idlen);
    r->idlen = idlen;
    r->t_arrival = wall_now();
    r->serial = ++e->serial;
    r->n = (int)g.n;
    r->sp = g.sp;
    r->n_prompt = g.n_prompt;
    r->plp_next = 1;
    msgpack_sbuffer_init(&r->start);
    /* stop ids: as given (glm-tokenize already merged the eos list unless
     * ignore_eos); a hand-written generate without them stops on the
     * model's eos unless ignore_eos */
    if (g.has_stop) { r->stop_ids = g.stop_ids; r->n_stop = g.n_stop; g.stop_ids = NULL; }
    else if (!g.ignore_eos) { r->stop_ids = dup_ids(e->lm->eos_ids, e->lm->n_eos); r->n_stop = e->lm->n_eos; }
    if (g.has_eos) { r->eos_ids = g.eos_ids; r->n_eos = g.n_eos; g.eos_ids = NULL; }
    else { r->eos_ids = dup_ids(e->lm->eos_ids, e->lm->n_eos); r->n_eos = e->lm->n_eos; }
    r->seqs = calloc((size_t)r->n, sizeof *r->seqs);
    r->done = calloc((size_t)r->n, 1);
    if (!r->seqs || !r->done || (!r->stop_ids && r->n_stop) || !r->eos_ids)
        rc = pl_seterr(err, sizeof err, PL_ERR_NOMEM, "out of memory");
    eng_sched_params sp = {
        .max_tokens = g.has_max_tokens ? (int)g.max_tokens : e->max_model_len,
        .min_tokens = r->sp.min_tokens,
        .stop_ids = r->stop_ids, .n_stop = r->n_stop,
        .prompt_logits = r->sp.prompt_logprobs >= 0,
    };
    if (!rc) rc = eng_sched_add(e->sched, g.prompt, g.n_prompt, &sp, r, 0, &r->seqs[0], err, sizeof err);
    gen_parse_free(&g);
    if (rc) {
        send_error(e, id, idlen, rc == PL_ERR_NOMEM ? 500 : 400, err);
        req_free(r);
        return;
    }
    r->hnext = *slot;
    *slot = r;
    e->n_live++;
    start_open(r, msg);
}

/* ===== abort ===== */

static void on_abort(eng_serve *e, const msgpack_object *msg, const char *id, size_t idlen)
{
    msgpack_pack_object(out_begin(e), *msg);   /* every stage forwards it */
    out_end(e);
    eng_req *r = *req_slot(e, id, idlen);
    if (!r) {
        /* It may have just finished here while still in flight downstream:
         * not an error, and an `error` message would wrongly end it there. */
        pl_log(PL_LOG_INFO, id, idlen, "abort for a request this engine does not hold");
        return;
    }
    int64_t index;
    int rc = pl_msg_get_int(msg, "index", &index);
    if (rc == PL_ERR_NOTFOUND) {
        pl_log(PL_LOG_DEBUG, id, idlen, "aborted");
        req_end(e, r);
    } else if (rc || index < 0 || index >= r->n) {
        pl_log(PL_LOG_WARN, id, idlen, "abort with an invalid index ignored (request has %d choices)", r->n);
    } else {
        pl_log(PL_LOG_DEBUG, id, idlen, "choice %lld aborted", (long long)index);
        choice_done(e, r, (int)index);
    }
    reap(e);
}

static void on_stats(eng_serve *e, const msgpack_object *msg, const char *id, size_t idlen);

void eng_serve_on_msg(eng_serve *e, const msgpack_object *msg, const char *id, size_t idlen)
{
    if (pl_msg_type_is(msg, "generate")) on_generate(e, msg, id, idlen);
    else if (pl_msg_type_is(msg, "abort")) on_abort(e, msg, id, idlen);
    else if (pl_msg_type_is(msg, "stats")) on_stats(e, msg, id, idlen);
    else { msgpack_pack_object(out_begin(e), *msg); out_end(e); }
}

/* ===== the step ===== */

/* Prompt logprobs from the rows of one item: the row of position p scores
 * the prompt token at p + 1. Rows recomputed after a preemption are skipped
 * (plp_next only moves forward). */
static void take_prompt_rows(eng_serve *e, eng_req *r, const eng_sched_item *it, const float *rows)
{
    if (r->start_sent) return;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &r->start, msgpack_sbuffer_write);
    int first = it->pos + it->n - it->n_logits;
    for (int j = 0; j < it->n_logits; j++) {
        int target = first + j + 1;
        if (target != r->plp_next || target >= r->n_prompt) continue;
        eng_sample_out o;
        const float *row = rows + (size_t)j * e->vocab;
        int32_t tok = it->seq->tokens[target];
        eng_sample_logprobs(e->sampler, row, tok, r->sp.prompt_logprobs, &o);
        /* the prompt token's own entry, as vLLM lists it: its id and its rank
         * (1 + the ids with a strictly higher logit), then the candidates */
        int64_t rank = 1;
        for (int k = 0; k < e->vocab; k++) rank += row[k] > row[tok];
        msgpack_pack_map(&pk, 4);
        pl_msg_pack_kv_int(&pk, "token_id", tok);
        pl_msg_pack_kv_int(&pk, "rank", rank);
        pack_logprob_fields(&pk, &o);
        r->plp_next++;
    }
    if (r->plp_next >= r->n_prompt) send_start(e, r);
}

/* Choices 1..n-1 join once choice 0's prompt is cached. Pushed to the queue
 * front in reverse so they run in index order, ahead of newer requests. */
static void fork_choices(eng_serve *e, eng_req *r, const eng_sched_item *it)
{
    r->forked = true;
    for (int i = r->n - 1; i >= 1; i--) {
        if (r->done[i]) continue;
        if (eng_sched_fork(e->sched, it, r, i, &r->seqs[i])) {
            req_fail(e, r, 500, "out of memory for a choice");
            return;
        }
    }
}

/* Sample the token after the item's newest committed one, verifying its
 * drafts first (eng_sample_verify): the row of the newest token is the
 * item's (n_logits - 1 - n_draft)-th. Results in res (n_em 0: nothing could
 * be sampled). Touches nothing but res and sampler s, so the items of a step
 * run on the model's threads (sample_task); a draw depends only on the
 * request's seed, the sequence and its output count, never on the thread. */
static void sample_item(eng_serve *e, eng_sampler *s, eng_req *r, const eng_sched_item *it, const float *rows,
                        step_res *res)
{
    eng_sched_seq *q = it->seq;
    uint64_t key = r->sp.has_seed ? eng_rng_key((uint64_t)r->sp.seed, (uint64_t)q->index)
                                  : eng_rng_key(e->cfg.seed, r->serial << 8 | (uint64_t)q->index);
    eng_sample_seq ss = {
        .p = &r->sp,
        .prompt = q->tokens, .n_prompt = q->n_prompt,
        .output = q->tokens + q->n_prompt, .n_output = eng_sched_seq_n_output(q),
        .stop_ids = r->stop_ids, .n_stop = r->n_stop,
        .rng_key = key,
    };
    const float *row0 = rows + (size_t)(it->n_logits - 1 - it->n_draft) * e->vocab;
    res->n_em = eng_sample_verify(s, &ss, row0, it->n_draft, res->out);
}

struct sample_ctx { eng_serve *e; const eng_sched_batch *b; };

static void sample_task(void *p, int i, int thread)
{
    struct sample_ctx *c = p;
    eng_serve *e = c->e;
    const eng_sched_item *it = &c->b->items[i];
    step_res *res = &e->res[i];
    if (!it->sample || res->r->dead) return;
    sample_item(e, e->samplers[thread < e->n_samplers ? thread : 0], res->r, it, res->rows, res);
}

/* After the parallel sampling, on the step loop's thread: failures and the
 * speculative-decoding counters, in item order. */
static void sample_done(eng_serve *e, eng_req *r, const eng_sched_item *it, step_res *res)
{
    if (!res->n_em) {
        req_fail(e, r, 500, "no token could be sampled (the model returned no finite logits)");
        return;
    }
    if (it->n_draft) {
        int acc = res->n_em - 1;
        e->stats.spec_drafts++;
        e->stats.spec_draft_tokens += (uint64_t)it->n_draft;
        e->stats.spec_accepted += (uint64_t)acc;
        for (int j = 0; j < acc; j++) e->stats.spec_accepted_pos[j]++;
    }
}

/* Commit what sample_item produced (a finish inside the accepted run cuts
 * it), emit it, and queue the sequence for drafts when it goes on. Choices
 * 1..n-1 are forked first: before the commit (a finishing choice 0 frees its
 * blocks) and after the MTP pass (which writes choice 0's MTP rows into the
 * prompt blocks they are about to share). */
static void commit_item(eng_serve *e, const eng_sched_item *it, const step_res *res, int *n_jobs)
{
    eng_req *r = res->r;
    eng_sched_seq *q = it->seq;
    if (!r->forked && r->n > 1) {
        fork_choices(e, r, it);
        if (r->dead) return;
    }
    int32_t tok[ENG_SPEC_MAX + 1];
    for (int j = 0; j < res->n_em; j++) tok[j] = res->out[j].token;
    int taken;
    enum eng_finish f = eng_sched_commit_n(e->sched, it, tok, res->n_em, &taken);
    if (r->t_first == 0) {
        r->t_first = wall_now();
        e->stats.prompt_tokens += (uint64_t)r->n_prompt;
    }
    r->completion_tokens += taken;
    e->stats.generation_tokens += (uint64_t)taken;
    emit_tokens(e, r, q, res->out, taken, f);
    if (f != ENG_FINISH_NONE) {
        choice_done(e, r, q->index);
        return;
    }
    int k = e->spec_k ? eng_sched_spec_room(e->sched, q) : 0;
    if (k <= 0 || res->mrow < 0) return;
    draft_job *j = &e->jobs[(*n_jobs)++];
    j->q = q;
    j->k = k;
    j->hrow = res->mlast;
    j->d[0] = eng_sample_argmax(e->mlogits + (size_t)res->mrow * e->vocab, e->vocab);
}

/* ===== speculative decoding: the MTP passes (doc glm5-architecture §4.3) ===== */

/* First pass, after the target forward: every live item's valid positions
 * [pos, pos + v) — its committed inputs and the drafts it accepted — get
 * their MTP cache rows from ids shifted by one (the next prompt id for a
 * prefill chunk, the newly sampled token last) and the target's hidden
 * states. Items that sampled ask the last row's logits: draft 1. Rows past
 * what the commit keeps are overwritten later, like rejected target rows.
 * Returns 0, or the error (every request of the step then fails). */
static int mtp_first_pass(eng_serve *e, const eng_sched_batch *b, char *err, size_t errlen)
{
    int H = e->lm->hidden_size, m = 0, off = 0, nl = 0;
    for (int i = 0; i < b->n_items; i++) {
        const eng_sched_item *it = &b->items[i];
        step_res *res = &e->res[i];
        res->mrow = -1;
        if (res->r->dead || (it->sample && !res->n_em)) continue;
        eng_sched_seq *q = it->seq;
        int acc = it->sample ? res->n_em - 1 : 0, v = it->n - it->n_draft + acc;
        /* ids at pos+1 .. pos+v-1 are in q->tokens (committed, or the accepted drafts) */
        memcpy(e->mtok + off, q->tokens + it->pos + 1, sizeof *e->mtok * (size_t)(v - 1));
        e->mtok[off + v - 1] = it->sample ? res->out[acc].token : q->tokens[it->pos + it->n];
        if (off != res->hrow)    /* compact: the item's first v rows, in order (off <= hrow) */
            memmove(e->hidden + (size_t)off * H, e->hidden + (size_t)res->hrow * H, sizeof *e->hidden * (size_t)v * H);
        e->mseqs[m++] = (eng_seq){ .tokens = e->mtok + off, .n_tokens = v, .pos0 = it->pos,
                                   .block_table = q->kv.blocks, .n_blocks = q->kv.n,
                                   .logits = it->sample ? ENG_LOGITS_LAST : ENG_LOGITS_NONE };
        if (it->sample) res->mrow = nl++;
        res->mlast = off + v - 1;
        off += v;
    }
    if (!m) return 0;
    return e->lm->mtp_forward(e->lm->impl, e->kv, e->mseqs, m, e->hidden, e->mlogits, e->hn, err, errlen);
}

/* Draft steps 2..k: each job's previous draft at the next position, with the
 * MTP's own recycled post-norm hidden; greedy (argmax) drafting. A failure
 * drops the drafts (the sequences decode on without them). */
static void mtp_draft_chain(eng_serve *e, int n_jobs)
{
    int H = e->lm->hidden_size, kmax = 0;
    for (int j = 0; j < n_jobs; j++) if (e->jobs[j].k > kmax) kmax = e->jobs[j].k;
    for (int step = 1; step < kmax; step++) {
        int m = 0;
        for (int j = 0; j < n_jobs; j++) {
            draft_job *jb = &e->jobs[j];
            if (jb->k <= step) continue;
            memcpy(e->hbuf + (size_t)m * H, e->hn + (size_t)jb->hrow * H, sizeof *e->hbuf * (size_t)H);
            e->mseqs[m] = (eng_seq){ .tokens = &jb->d[step - 1], .n_tokens = 1, .pos0 = jb->q->n_computed + step - 1,
                                     .block_table = jb->q->kv.blocks, .n_blocks = jb->q->kv.n,
                                     .logits = ENG_LOGITS_LAST };
            jb->hrow = m++;
        }
        char err[512] = "";
        if (e->lm->mtp_forward(e->lm->impl, e->kv, e->mseqs, m, e->hbuf, e->mlogits, e->hn, err, sizeof err)) {
            pl_log(PL_LOG_ERROR, NULL, 0, "MTP draft step failed, drafts dropped: %s", err);
            for (int j = 0; j < n_jobs; j++) e->jobs[j].k = 0;
            return;
        }
        for (int j = 0; j < n_jobs; j++) {
            draft_job *jb = &e->jobs[j];
            if (jb->k > step) jb->d[step] = eng_sample_argmax(e->mlogits + (size_t)jb->hrow * e->vocab, e->vocab);
        }
    }
    for (int j = 0; j < n_jobs; j++) eng_sched_set_drafts(e->sched, e->jobs[j].q, e->jobs[j].d, e->jobs[j].k);
}

/* ===== the step ===== */

static void step_time(eng_serve *e, double dt)
{
    int k = 0;
    while (k < ENG_STEP_BUCKETS && dt > eng_step_time_buckets[k]) k++;
    e->stats.step_hist[k]++;
    e->stats.step_time_sum += dt;
}

static void fail_step(eng_serve *e, const eng_sched_batch *b, const char *what, const char *err)
{
    char text[600];
    snprintf(text, sizeof text, "%s failed: %s", what, err);
    for (int i = 0; i < b->n_items; i++) req_fail(e, e->res[i].r, 500, text);
}

/* One step: plan; the target forward over every item (prefill chunks,
 * decodes, verifications); per item prompt logprobs and the sampled or
 * verified tokens; with MTP the first pass over the valid positions; commit
 * and emit; then the draft chain for the next step. A request ended during
 * the step keeps its eng_req until reap(), but its sequences are gone, so
 * every phase checks r->dead before touching an item's sequence. */
int eng_serve_step(eng_serve *e)
{
    double t0 = mono_now();
    eng_sched_batch b;
    eng_sched_step(e->sched, &b);
    e->stats.preemptions += (uint64_t)b.n_preempted;
    if (!b.n_items) return e->sink_failed ? PL_ERR_IO : PL_OK;
    int tok = 0;
    for (int i = 0; i < b.n_items; i++) {
        const eng_sched_item *it = &b.items[i];
        eng_req *r = it->seq->owner;
        e->res[i] = (step_res){ .r = r, .hrow = tok, .out = e->outs + (size_t)i * (ENG_SPEC_MAX + 1), .mrow = -1 };
        tok += it->n;
        if (!r->scheduled && it->seq->index == 0) start_close(e, r, it->seq->n_cached);
        e->lmseqs[i] = (eng_seq){
            .tokens = it->seq->tokens + it->pos, .n_tokens = it->n, .pos0 = it->pos,
            .block_table = it->seq->kv.blocks, .n_blocks = it->seq->kv.n,
            .logits = it->n_logits == 0 ? ENG_LOGITS_NONE : it->n_logits == 1 ? ENG_LOGITS_LAST : ENG_LOGITS_ALL,
        };
    }
    char err[512] = "";
    int rc = e->lm->forward(e->lm->impl, e->kv, e->lmseqs, b.n_items, e->logits, e->spec_k ? e->hidden : NULL,
                            err, sizeof err);
    e->stats.steps++;
    e->stats.tokens_computed += (uint64_t)b.n_tokens;
    if (rc) fail_step(e, &b, "model forward", err);
    const float *row = e->logits;
    for (int i = 0; !rc && i < b.n_items; i++) {
        const eng_sched_item *it = &b.items[i];
        eng_req *r = e->res[i].r;
        const float *rows = row;
        row += (size_t)it->n_logits * e->vocab;
        if (r->dead) continue;
        e->res[i].rows = rows;
        if (!it->n_draft && it->n_logits > it->sample) take_prompt_rows(e, r, it, rows);
    }
    if (!rc) {
        /* one sequence per task; the model's threads are idle between passes */
        struct sample_ctx sc = { e, &b };
        if (e->lm->parallel && e->n_samplers > 1) e->lm->parallel(e->lm->par, sample_task, &sc, b.n_items);
        else for (int i = 0; i < b.n_items; i++) sample_task(&sc, i, 0);
    }
    for (int i = 0; !rc && i < b.n_items; i++) {
        const eng_sched_item *it = &b.items[i];
        eng_req *r = e->res[i].r;
        if (!r->dead && it->sample) sample_done(e, r, it, &e->res[i]);
    }
    if (!rc && e->spec_k && (rc = mtp_first_pass(e, &b, err, sizeof err))) fail_step(e, &b, "MTP forward", err);
    int n_jobs = 0;
    for (int i = 0; !rc && i < b.n_items; i++) {
        const eng_sched_item *it = &b.items[i];
        if (e->res[i].r->dead) continue;
        if (it->sample) commit_item(e, it, &e->res[i], &n_jobs);
        else eng_sched_commit(e->sched, it, -1);
    }
    if (n_jobs) mtp_draft_chain(e, n_jobs);
    reap(e);
    step_time(e, mono_now() - t0);
    return e->sink_failed ? PL_ERR_IO : PL_OK;
}

/* ===== statistics ===== */

static void pack_stats(eng_serve *e, const char *id, size_t idlen)
{
    eng_serve_stats st;
    eng_serve_get_stats(e, &st);
    msgpack_packer *pk = out_begin(e);
    msgpack_pack_map(pk, 18 + 2 * st.prefix_caching + 4 * (st.num_spec_tokens > 0));
    pl_msg_pack_kv_cstr(pk, "type", "stats");
    pl_msg_pack_kv_str(pk, "id", id, idlen);
    pl_msg_pack_kv_int(pk, "num_requests_running", st.running);
    pl_msg_pack_kv_int(pk, "num_requests_waiting", st.waiting);
    pl_msg_pack_kv_int(pk, "num_requests_live", st.live_requests);
    pl_msg_pack_kv_int(pk, "kv_blocks_total", st.total_blocks);
    pl_msg_pack_kv_int(pk, "kv_blocks_used", st.used_blocks);
    pl_msg_pack_kv_int(pk, "kv_blocks_free", st.free_blocks);
    pl_msg_pack_kv_int(pk, "kv_blocks_cached", st.cached_blocks);
    if (st.prefix_caching) {
        pl_msg_pack_kv_int(pk, "prefix_cache_queries", (int64_t)st.prefix_queries);
        pl_msg_pack_kv_int(pk, "prefix_cache_hits", (int64_t)st.prefix_hits);
    }
    if (st.num_spec_tokens > 0) {
        pl_msg_pack_kv_int(pk, "spec_decode_num_drafts", (int64_t)st.spec_drafts);
        pl_msg_pack_kv_int(pk, "spec_decode_num_draft_tokens", (int64_t)st.spec_draft_tokens);
        pl_msg_pack_kv_int(pk, "spec_decode_num_accepted_tokens", (int64_t)st.spec_accepted);
        pl_msg_pack_cstr(pk, "spec_decode_num_accepted_tokens_per_pos");
        msgpack_pack_array(pk, (size_t)st.num_spec_tokens);
        for (int j = 0; j < st.num_spec_tokens; j++) msgpack_pack_uint64(pk, st.spec_accepted_pos[j]);
    }
    pl_msg_pack_kv_int(pk, "num_preemptions", (int64_t)st.preemptions);
    pl_msg_pack_kv_int(pk, "prompt_tokens", (int64_t)st.prompt_tokens);
    pl_msg_pack_kv_int(pk, "generation_tokens", (int64_t)st.generation_tokens);
    pl_msg_pack_kv_int(pk, "tokens_computed", (int64_t)st.tokens_computed);
    pl_msg_pack_kv_int(pk, "steps", (int64_t)st.steps);
    pl_msg_pack_cstr(pk, "step_time_buckets");
    msgpack_pack_array(pk, ENG_STEP_BUCKETS);
    for (int i = 0; i < ENG_STEP_BUCKETS; i++) msgpack_pack_double(pk, eng_step_time_buckets[i]);
    pl_msg_pack_cstr(pk, "step_time_counts");
    msgpack_pack_array(pk, ENG_STEP_BUCKETS + 1);
    for (int i = 0; i <= ENG_STEP_BUCKETS; i++) msgpack_pack_uint64(pk, st.step_hist[i]);
    pl_msg_pack_kv_double(pk, "step_time_sum", st.step_time_sum);
    pl_msg_pack_kv_double(pk, "time", wall_now());
    out_end(e);
}

/* {type:"stats", id[, interval]}: answered at once; with interval > 0 the
 * same id is answered again every interval seconds (a newer stats with that
 * id replaces the interval; interval 0 stops it). */
static void on_stats(eng_serve *e, const msgpack_object *msg, const char *id, size_t idlen)
{
    double iv = 0;
    int rc = pl_msg_get_num(msg, "interval", &iv);
    if (rc == PL_ERR_INVALID || (rc == PL_OK && !(iv == 0 || (iv >= ENG_STATS_MIN_S && iv <= 86400)))) {
        char text[128];
        snprintf(text, sizeof text, "stats interval must be 0 or a number of seconds in [%g, 86400]", ENG_STATS_MIN_S);
        send_error(e, id, idlen, 400, text);
        return;
    }
    int k = 0;
    while (k < e->n_subs && !(e->subs[k].idlen == idlen && !memcmp(e->subs[k].id, id, idlen))) k++;
    if (k < e->n_subs && iv == 0) e->subs[k] = e->subs[--e->n_subs];
    else if (iv > 0) {
        if (k == e->n_subs && e->n_subs == ENG_STATS_SUBS) {
            send_error(e, id, idlen, 400, "too many periodic stats subscriptions");
            return;
        }
        if (k == e->n_subs) e->n_subs++;
        memcpy(e->subs[k].id, id, idlen);
        e->subs[k].idlen = idlen;
        e->subs[k].interval = iv;
        e->subs[k].next = mono_now() + iv;
    }
    pack_stats(e, id, idlen);
}

/* vLLM's periodic "Engine" log line: throughput since the previous line,
 * queue sizes, KV usage. */
static void log_stats(eng_serve *e, double dt)
{
    eng_serve_stats st;
    eng_serve_get_stats(e, &st);
    const eng_serve_stats *p = &e->log_prev;
    if (st.steps != p->steps || st.running || st.waiting)
        pl_log(PL_LOG_INFO, NULL, 0,
               "Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s, "
               "Running: %d reqs, Waiting: %d reqs, KV cache usage: %.1f%%, Prefix cache hit rate: %.1f%%",
               (double)(st.prompt_tokens - p->prompt_tokens) / dt, (double)(st.generation_tokens - p->generation_tokens) / dt,
               st.running, st.waiting, st.total_blocks ? 100.0 * st.used_blocks / st.total_blocks : 0.0,
               st.prefix_queries ? 100.0 * (double)st.prefix_hits / (double)st.prefix_queries : 0.0);
    uint64_t drafts = st.spec_drafts - p->spec_drafts, dt_tok = st.spec_draft_tokens - p->spec_draft_tokens;
    uint64_t acc = st.spec_accepted - p->spec_accepted;
    if (st.num_spec_tokens > 0 && drafts) {
        /* vLLM's SpecDecoding metrics line, over the interval */
        char pos[ENG_SPEC_MAX * 8 + 1] = "";
        size_t o = 0;
        for (int j = 0; j < st.num_spec_tokens; j++)
            o += (size_t)snprintf(pos + o, sizeof pos - o, "%s%.3f", j ? ", " : "",
                                  (double)(st.spec_accepted_pos[j] - p->spec_accepted_pos[j]) / (double)drafts);
        pl_log(PL_LOG_INFO, NULL, 0,
               "SpecDecoding metrics: Mean acceptance length: %.2f, Accepted throughput: %.2f tokens/s, "
               "Drafted throughput: %.2f tokens/s, Accepted: %llu tokens, Drafted: %llu tokens, "
               "Per-position acceptance rate: %s, Avg Draft acceptance rate: %.1f%%",
               1.0 + (double)acc / (double)drafts, (double)acc / dt, (double)dt_tok / dt, (unsigned long long)acc,
               (unsigned long long)dt_tok, pos, 100.0 * (double)acc / (double)dt_tok);
    }
    e->log_prev = st;
}

void eng_serve_tick(eng_serve *e)
{
    double now = mono_now();
    for (int k = 0; k < e->n_subs; k++)
        if (now >= e->subs[k].next) {
            /* skip missed beats rather than answering them in a burst */
            while (e->subs[k].next <= now) e->subs[k].next += e->subs[k].interval;
            pack_stats(e, e->subs[k].id, e->subs[k].idlen);
        }
    if (e->cfg.log_stats_interval > 0 && now >= e->log_next) {
        log_stats(e, e->cfg.log_stats_interval);
        e->log_next = now + e->cfg.log_stats_interval;
    }
}

int eng_serve_wait_ms(const eng_serve *e)
{
    double next = e->cfg.log_stats_interval > 0 ? e->log_next : INFINITY;
    for (int k = 0; k < e->n_subs; k++)
        if (e->subs[k].next < next) next = e->subs[k].next;
    if (next == INFINITY) return -1;
    double ms = (next - mono_now()) * 1000.0;
    return ms <= 0 ? 0 : ms > 3600e3 ? 3600000 : (int)ms + 1;
}

/* ===== lifecycle ===== */

int eng_serve_init(eng_serve **out, const eng_lm *lm, const eng_serve_cfg *cfg, eng_serve_sink sink,
                   char *err, size_t errlen)
{
    *out = NULL;
    if (lm->vocab < 1 || lm->max_positions < 2 || !lm->forward || !lm->kv_create)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "model interface incomplete");
    int mml = cfg->max_model_len ? cfg->max_model_len : lm->max_positions;
    if (mml < 2 || mml > lm->max_positions)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "--max-model-len %d must be between 2 and the model's %d positions",
                         mml, lm->max_positions);
    if (cfg->max_num_seqs < 1 || cfg->max_num_batched_tokens < 1 || cfg->block_size < 1)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "--max-num-seqs, --max-num-batched-tokens and --block-size must be positive");
    int K = cfg->num_spec_tokens;
    if (K < 0 || K > ENG_SPEC_MAX)
        return pl_seterr(err, errlen, PL_ERR_INVALID,
                         "num_speculative_tokens %d is out of range: this engine verifies 1 to %d drafts per step "
                         "(a tokens message carries at most %d tokens)", K, ENG_SPEC_MAX, ENG_SPEC_MAX + 1);
    if (K && (!lm->mtp_forward || lm->hidden_size < 1))
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED,
                         "speculative decoding with method mtp needs the checkpoint's MTP layer, and this model has none");
    int64_t blocks = cfg->num_blocks;
    if (blocks <= 0) {
        size_t bpt = lm->kv_bytes_per_token(lm->impl, cfg->kv_cache_dtype);
        size_t per_block = (bpt ? bpt : 1) * (size_t)cfg->block_size;
        int64_t need = (int64_t)cfg->max_num_seqs * (((int64_t)mml + cfg->block_size - 1) / cfg->block_size);
        blocks = (int64_t)(cfg->kv_cache_bytes / per_block);
        if (blocks > need) blocks = need;   /* more could never be used at once */
        if (blocks > INT32_MAX) blocks = INT32_MAX;
    }
    if (blocks * cfg->block_size < mml)
        return pl_seterr(err, errlen, PL_ERR_INVALID,
                         "the KV cache (%lld blocks of %d tokens) cannot hold one sequence of --max-model-len %d: "
                         "lower --max-model-len or raise --kv-cache-memory-bytes",
                         (long long)blocks, cfg->block_size, mml);
    eng_serve *e = calloc(1, sizeof *e);
    if (!e) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    e->lm = lm;
    e->cfg = *cfg;
    e->sink = sink;
    e->vocab = lm->vocab;
    e->max_model_len = mml;
    msgpack_sbuffer_init(&e->sbuf);
    msgpack_packer_init(&e->pk, &e->sbuf, msgpack_sbuffer_write);
    eng_sched_cfg sc = {
        .max_num_seqs = cfg->max_num_seqs, .max_batched_tokens = cfg->max_num_batched_tokens,
        .max_model_len = mml, .max_prompt_rows = ENG_PROMPT_ROWS,
        .prefix_caching = cfg->prefix_caching,
        .prefix_key_extra = K ? 1 : 0,       /* the MTP row of a block's last position reads the next token */
        .num_spec_tokens = K,
    };
    e->spec_k = K;
    size_t S = (size_t)cfg->max_num_seqs, T = (size_t)cfg->max_num_batched_tokens, H = (size_t)lm->hidden_size;
    size_t rows = S * (size_t)(1 + K) + ENG_PROMPT_ROWS;
    int rc = lm->kv_create(lm->impl, (int)blocks, cfg->block_size, cfg->kv_cache_dtype, &e->kv, err, errlen);
    if (!rc) rc = eng_sched_init(&e->sched, &sc, e->kv, err, errlen);
    e->n_samplers = lm->parallel && lm->n_threads > 1 ? lm->n_threads : 1;
    e->samplers = calloc((size_t)e->n_samplers, sizeof *e->samplers);
    if (!rc && !e->samplers) rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory for the samplers");
    for (int i = 0; !rc && i < e->n_samplers; i++) rc = eng_sampler_init(&e->samplers[i], lm->vocab, err, errlen);
    if (!rc) e->sampler = e->samplers[0];
    if (!rc) {
        e->logits = malloc(sizeof *e->logits * rows * (size_t)lm->vocab);
        e->lmseqs = calloc(S, sizeof *e->lmseqs);
        e->res = calloc(S, sizeof *e->res);
        e->outs = calloc(S * (ENG_SPEC_MAX + 1), sizeof *e->outs);
        if (!e->logits || !e->lmseqs || !e->res || !e->outs)
            rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory for %zu logits rows of %d", rows, lm->vocab);
    }
    if (!rc && K) {
        e->hidden = malloc(sizeof *e->hidden * T * H);
        e->hn = malloc(sizeof *e->hn * T * H);
        e->hbuf = malloc(sizeof *e->hbuf * S * H);
        e->mlogits = malloc(sizeof *e->mlogits * S * (size_t)lm->vocab);
        e->mtok = malloc(sizeof *e->mtok * T);
        e->mseqs = calloc(S, sizeof *e->mseqs);
        e->jobs = calloc(S, sizeof *e->jobs);
        if (!e->hidden || !e->hn || !e->hbuf || !e->mlogits || !e->mtok || !e->mseqs || !e->jobs)
            rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory for the MTP buffers");
    }
    if (rc) { eng_serve_free(e); return rc; }
    e->log_next = mono_now() + cfg->log_stats_interval;
    pl_log(PL_LOG_INFO, NULL, 0, "KV cache: %lld blocks of %d tokens (%.1f MB, %s), max_model_len %d, max_num_seqs %d, "
           "max_num_batched_tokens %d, prefix caching %s", (long long)blocks, cfg->block_size,
           (double)blocks * cfg->block_size * (double)lm->kv_bytes_per_token(lm->impl, cfg->kv_cache_dtype) / 1e6,
           cfg->kv_cache_dtype == ENG_CACHE_FP8 ? "fp8_e4m3" : "auto", mml, cfg->max_num_seqs,
           cfg->max_num_batched_tokens, cfg->prefix_caching ? "on" : "off");
    if (K) pl_log(PL_LOG_INFO, NULL, 0, "speculative decoding: method mtp, %d draft tokens per step", K);
    *out = e;
    return PL_OK;
}

void eng_serve_free(eng_serve *e)
{
    if (!e) return;
    for (int i = 0; i < ENG_REQ_BUCKETS; i++)
        while (e->buckets[i]) req_end(e, e->buckets[i]);
    reap(e);
    eng_sched_free(e->sched);
    eng_kv_pool_free(e->kv);
    for (int i = 0; e->samplers && i < e->n_samplers; i++) eng_sampler_free(e->samplers[i]);
    free(e->samplers);
    free(e->logits);
    free(e->lmseqs);
    free(e->res);
    free(e->outs);
    free(e->hidden);
    free(e->hn);
    free(e->hbuf);
    free(e->mlogits);
    free(e->mtok);
    free(e->mseqs);
    free(e->jobs);
    msgpack_sbuffer_destroy(&e->sbuf);
    free(e);
}

bool eng_serve_busy(const eng_serve *e) { return eng_sched_has_work(e->sched); }

void eng_serve_fail_all(eng_serve *e, int code, const char *text)
{
    for (int i = 0; i < ENG_REQ_BUCKETS; i++)
        while (e->buckets[i]) req_fail(e, e->buckets[i], code, text);
    reap(e);
}
int  eng_serve_max_model_len(const eng_serve *e) { return e->max_model_len; }
int  eng_serve_num_blocks(const eng_serve *e) { return eng_kv_n_blocks(e->kv); }

void eng_serve_get_stats(const eng_serve *e, eng_serve_stats *st)
{
    *st = e->stats;
    st->running = eng_sched_n_running(e->sched);
    st->waiting = eng_sched_n_waiting(e->sched);
    st->total_blocks = eng_kv_n_blocks(e->kv);
    st->free_blocks = eng_kv_n_free(e->kv);
    st->used_blocks = st->total_blocks - st->free_blocks;
    st->cached_blocks = eng_kv_n_cached(e->kv);
    st->prefix_caching = e->cfg.prefix_caching;
    st->num_spec_tokens = e->spec_k;
    eng_sched_prefix_stats(e->sched, &st->prefix_queries, &st->prefix_hits);
    st->live_requests = e->n_live;
}

/* ===== the GLM-5 model behind eng_lm ===== */

static size_t glm_kv_bytes(void *impl, enum eng_cache_dtype dtype)
{
    return eng_kv_bytes_per_token(eng_model_config(impl), dtype);
}

static int glm_kv_create(void *impl, int num_blocks, int block_size, enum eng_cache_dtype dtype, eng_kv_pool **out,
                         char *err, size_t errlen)
{
    eng_model *m = impl;
    return eng_kv_pool_create(eng_model_backend(m), eng_model_config(m), dtype, num_blocks, block_size, out, err, errlen);
}

static int glm_forward(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, float *logits, float *hidden,
                       char *err, size_t errlen)
{
    return eng_model_forward(impl, kv, seqs, n_seqs, logits, hidden, err, errlen);
}

static int glm_mtp_forward(void *impl, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, const float *hidden_in,
                           float *logits, float *hidden_out, char *err, size_t errlen)
{
    return eng_model_mtp_forward(impl, kv, seqs, n_seqs, hidden_in, logits, hidden_out, err, errlen);
}

static void glm_parallel(void *par, void (*fn)(void *ctx, int task, int thread), void *ctx, int n_tasks)
{
    eng_be_parallel(par, fn, ctx, n_tasks);
}

void eng_lm_from_model(eng_lm *lm, eng_model *m)
{
    const eng_config *c = eng_model_config(m);
    *lm = (eng_lm){
        .impl = m,
        .vocab = c->vocab_size,
        .max_positions = c->max_position_embeddings,
        .eos_ids = c->eos_token_id, .n_eos = c->n_eos,
        .kv_bytes_per_token = glm_kv_bytes,
        .kv_create = glm_kv_create,
        .forward = glm_forward,
        .mtp_forward = eng_model_has_mtp(m) ? glm_mtp_forward : NULL,
        .hidden_size = c->hidden_size,
        .parallel = glm_parallel,
        .par = eng_model_backend(m),
        .n_threads = eng_be_threads(eng_model_backend(m)),
    };
}
