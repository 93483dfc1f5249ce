/* api.c — routes, admission and the table of requests in the pipeline.
 *
 * A generation request is admitted here (key, JSON, model name, features
 * the pipeline lacks), sent as `request` to glm-tokenize, and kept in a
 * table by its pipeline id until its `end` or `error` comes back. The
 * answers of other endpoints travel the same way: /health sends a `ping`,
 * /metrics a `stats`, /tokenize and /detokenize a `tokenize`/`detokenize`
 * that glm-tokenize answers (docs/protocol.md §9).
 *
 * Lifetimes: a request is in the table while the pipeline owes it
 * messages, and attached to its connection while its response is being
 * written; it is freed when neither holds it. A stream whose client reads
 * slowly keeps its output in the generation state (coalesced) and is
 * flushed when the connection's write completes. */
#include "gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "json.h"

#define GW_VERSION      "0.1.0"
#define STATS_WAIT_S    1.0    /* /metrics waits this long for the engine's stats */
#define XRID_MAX        128

/* ================================================================ ids */

static uint64_t g_rng[2];

static uint64_t rng_next(void)
{
    if (!g_rng[0] && !g_rng[1]) {
        if (getrandom(g_rng, sizeof g_rng, 0) != sizeof g_rng) {
            g_rng[0] = (uint64_t)time(NULL) ^ 0x9E3779B97F4A7C15ull;
            g_rng[1] = (uint64_t)clock() ^ 0xD1B54A32D192ED03ull;
        }
        g_rng[0] |= 1;
    }
    /* xorshift128+: unique-enough ids, not secrets */
    uint64_t a = g_rng[0], b = g_rng[1];
    g_rng[0] = b;
    a ^= a << 23;
    g_rng[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return g_rng[1] + b;
}

static void hex32(char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)rng_next(), (unsigned long long)rng_next());
}

/* An X-Request-Id we can use as an id: visible ASCII without '#' (which
 * marks sub-request ids), at most XRID_MAX bytes. */
static bool xrid_ok(const pl_buf *b)
{
    if (!b->len || b->len > XRID_MAX) return false;
    for (size_t i = 0; i < b->len; i++) {
        unsigned char ch = (unsigned char)b->data[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '#' || ch == '"' || ch == '\\') return false;
    }
    return true;
}

/* ================================================================ request objects */

static gw_req *req_new(gw_server *s, enum gw_req_kind kind, const char *id, size_t idlen)
{
    gw_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->kind = kind;
    r->srv = s;
    if (idlen > PL_MSG_ID_MAX) idlen = PL_MSG_ID_MAX;
    memcpy(r->id, id, idlen);
    r->idlen = idlen;
    return r;
}

static void dirty_remove(gw_server *s, gw_req *r)
{
    if (!r->dirty) return;
    r->dirty = false;
    for (gw_req **pp = &s->dirty; *pp; pp = &(*pp)->dnext)
        if (*pp == r) { *pp = r->dnext; break; }
    r->dnext = NULL;
}

static void wait_remove(gw_server *s, gw_req *r)
{
    if (r->wprev) r->wprev->wnext = r->wnext;
    else if (s->waits == r) s->waits = r->wnext;
    if (r->wnext) r->wnext->wprev = r->wprev;
    r->wprev = r->wnext = NULL;
}

static bool in_table(gw_server *s, gw_req *r) { return pl_strmap_get(s->reqs, r->id, r->idlen) == r; }

static void table_remove(gw_server *s, gw_req *r)
{
    if (!in_table(s, r)) return;
    pl_strmap_take(s->reqs, r->id, r->idlen);
    if (r->kind == GW_REQ_GEN) s->n_gen--;
    wait_remove(s, r);
}

/* Free when neither the table nor a connection holds it any more. */
static void req_release(gw_server *s, gw_req *r)
{
    if (in_table(s, r) || r->conn) return;
    dirty_remove(s, r);
    if (r->gen) gw_gen_free(r->gen);
    free(r);
    gw_server_maybe_exit(s);
}

static void req_detach(gw_req *r)
{
    if (r->conn && r->conn->req == r) r->conn->req = NULL;
    r->conn = NULL;
}

/* ================================================================ small responses */

static void respond_json(gw_conn *c, int status, const pl_buf *b)
{
    gw_http_respond(c, status, "application/json", b->data ? b->data : "", b->len, NULL);
}

static void respond_empty(gw_conn *c, int status) { gw_http_respond(c, status, "application/json", "", 0, NULL); }

static void not_found(gw_conn *c) { gw_http_error(c, 404, "NotFoundError", NULL, "Not Found"); }

static void route_models(gw_server *s, gw_conn *c)
{
    pl_buf b;
    pl_buf_init(&b);
    long long now = (long long)time(NULL);
    pl_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < s->o.n_names; i++) {
        char perm[33];
        hex32(perm);
        pl_buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
        gw_jw_cstr(&b, s->o.names[i]);
        pl_buf_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"vllm\",\"root\":", now);
        gw_jw_cstr(&b, s->o.model ? s->o.model : s->o.names[0]);
        pl_buf_puts(&b, ",\"parent\":null,\"max_model_len\":");
        if (s->o.max_model_len > 0) gw_jw_int(&b, s->o.max_model_len);
        else pl_buf_puts(&b, "null");
        pl_buf_printf(&b, ",\"permission\":[{\"id\":\"modelperm-%s\",\"object\":\"model_permission\",\"created\":%lld,"
                          "\"allow_create_engine\":false,\"allow_sampling\":true,\"allow_logprobs\":true,"
                          "\"allow_search_indices\":false,\"allow_view\":true,\"allow_fine_tuning\":false,"
                          "\"organization\":\"*\",\"group\":null,\"is_blocking\":false}]}", perm, now);
    }
    pl_buf_puts(&b, "]}");
    respond_json(c, 200, &b);
    pl_buf_free(&b);
}

/* The gateway's own view of running/waiting, used when the engine gives
 * none: a generation whose `start` came back is running. */
static void count_gen(const char *key, size_t len, void *val, void *ud)
{
    (void)key;
    (void)len;
    gw_req *r = val;
    int64_t *k = ud;
    if (r->kind == GW_REQ_GEN) k[gw_gen_started(r->gen) ? 0 : 1]++;
}

static void respond_metrics(gw_server *s, gw_conn *c, const msgpack_object *stats)
{
    int64_t k[2] = {0, 0};
    pl_strmap_each(s->reqs, count_gen, k);
    pl_buf b;
    pl_buf_init(&b);
    gw_metrics_render(s->metrics, stats, k[0], k[1], &b);
    gw_http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len, NULL);
    pl_buf_free(&b);
}

/* ================================================================ auth */

/* Constant time in the key's content: every byte of every key is compared
 * and the lengths enter the result only at the end. */
static unsigned key_matches(const gw_server *s, const char *prefix, const pl_buf *got, bool has)
{
    size_t plen = strlen(prefix);
    const char *v = has ? got->data : "";
    size_t vlen = has ? got->len : 0;
    unsigned ok = 0;
    for (int k = 0; k < s->o.n_keys; k++) {
        const char *key = s->o.keys[k];
        size_t klen = strlen(key), want = plen + klen;
        unsigned diff = (unsigned)(vlen ^ want);
        for (size_t i = 0; i < want; i++) {
            unsigned char expect = i < plen ? (unsigned char)prefix[i] : (unsigned char)key[i - plen];
            unsigned char got = i < vlen ? (unsigned char)v[i] : 0;
            diff |= (unsigned)(expect ^ got);
        }
        ok |= (diff == 0);
    }
    return ok;
}

/* `Authorization: Bearer KEY` (vLLM) or `x-api-key: KEY` (Anthropic's
 * clients send only that one). */
static bool auth_ok(const gw_server *s, const gw_conn *c)
{
    if (!s->o.n_keys) return true;
    unsigned a = key_matches(s, "Bearer ", &c->auth, c->has_auth);
    unsigned b = key_matches(s, "", &c->xkey, c->has_xkey);
    return (a | b) != 0;
}

/* ================================================================ JSON body helpers */

static const cJSON *field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static bool body_true(const cJSON *o, const char *key) { return cJSON_IsTrue(field(o, key)); }

static int64_t body_int(const cJSON *o, const char *key, int64_t def)
{
    const cJSON *v = field(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble) return def;
    return (int64_t)v->valuedouble;
}

/* Parse the body as a JSON object, or answer 400. */
static cJSON *parse_body(gw_conn *c)
{
    cJSON *body = NULL;
    char err[256];
    if (pl_json_parse(&body, c->body.data ? c->body.data : "", c->body.len, err, sizeof err)) {
        gw_http_error(c, 400, "BadRequestError", NULL, "Invalid JSON in the request body: %s", err);
        return NULL;
    }
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        gw_http_error(c, 400, "BadRequestError", NULL, "The request body must be a JSON object");
        return NULL;
    }
    return body;
}

/* `model`: absent/null = the default; a string must be a served name. */
static bool model_ok(gw_server *s, gw_conn *c, const cJSON *body)
{
    const cJSON *m = field(body, "model");
    if (!m) return true;
    if (!cJSON_IsString(m)) {
        gw_http_error(c, 400, "BadRequestError", "model", "'model' must be a string");
        return false;
    }
    for (int i = 0; i < s->o.n_names; i++)
        if (!strcmp(m->valuestring, s->o.names[i])) return true;
    gw_http_error(c, 404, "NotFoundError", "model", "The model `%.900s` does not exist.", m->valuestring);
    return false;
}

/* vLLM request fields the pipeline cannot honour: a clear 400 instead of
 * silently ignoring them (docs/protocol.md §9 lists them). */
static bool features_ok(gw_conn *c, const cJSON *body, enum gw_endpoint ep)
{
    static const struct { const char *key, *what; } unsupported[] = {
        {"logit_bias", "logit_bias"},
        {"allowed_token_ids", "allowed_token_ids"},
        {"bad_words", "bad_words"},
        {"structured_outputs", "structured outputs (guided decoding)"},
        {"guided_json", "guided decoding"},
        {"guided_regex", "guided decoding"},
        {"guided_choice", "guided decoding"},
        {"guided_grammar", "guided decoding"},
        {"prompt_embeds", "prompt_embeds"},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(unsupported); i++) {
        const cJSON *v = field(body, unsupported[i].key);
        if (!v || ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child)) continue;
        gw_http_error(c, 400, "BadRequestError", unsupported[i].key,
                      "%s is not supported by this server (glmpipe's engine has no such feature)", unsupported[i].what);
        return false;
    }
    if (body_true(body, "use_beam_search")) {
        gw_http_error(c, 400, "BadRequestError", "use_beam_search", "beam search is not supported by this server");
        return false;
    }
    const cJSON *rf = field(body, "response_format");
    if (rf) {
        const cJSON *t = cJSON_IsObject(rf) ? field(rf, "type") : NULL;
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text")) {
            gw_http_error(c, 400, "BadRequestError", "response_format",
                          "response_format other than {\"type\": \"text\"} needs structured outputs, which this server does not support");
            return false;
        }
    }
    if (ep == GW_EP_COMPLETIONS && field(body, "suffix")) {
        gw_http_error(c, 400, "BadRequestError", "suffix", "suffix is not currently supported");
        return false;
    }
    return true;
}

/* A completions prompt list of k prompts becomes k sub-requests <id>#j
 * (docs/protocol.md §3 `request`); a list of token ids is one prompt. */
static int num_prompts(const cJSON *body)
{
    const cJSON *p = field(body, "prompt");
    if (!cJSON_IsArray(p) || !p->child) return 1;
    for (const cJSON *c = p->child; c; c = c->next)
        if (!cJSON_IsNumber(c)) return cJSON_GetArraySize(p);
    return 1;
}

/* Chat echo (vLLM): the last message's content when its role is the
 * response's role (assistant, or the last role without a generation prompt). */
static void chat_echo_text(const cJSON *body, pl_buf *out)
{
    const cJSON *msgs = field(body, "messages");
    if (!body_true(body, "echo") || !cJSON_IsArray(msgs) || !msgs->child) return;
    const cJSON *last = msgs->child;
    while (last->next) last = last->next;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(last, "role");
    const cJSON *agp = field(body, "add_generation_prompt");
    bool gen_prompt = !cJSON_IsFalse(agp);
    if (!cJSON_IsString(role) || (gen_prompt && strcmp(role->valuestring, "assistant"))) return;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
    if (cJSON_IsString(content)) { pl_buf_puts(out, content->valuestring); return; }
    int k = 0;
    for (const cJSON *p = cJSON_IsArray(content) ? content->child : NULL; p; p = p->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(t)) continue;
        if (k++) pl_buf_putc(out, '\n');
        pl_buf_puts(out, t->valuestring);
    }
}

/* ================================================================ generation */

typedef struct { gw_server *s; gw_req *r; } abort_ctx;

static void sub_id(const gw_req *r, int sub, char *out, size_t *len)
{
    memcpy(out, r->id, r->idlen);
    *len = r->idlen;
    if (gw_gen_num_subs(r->gen) > 1) *len += (size_t)snprintf(out + r->idlen, 24, "#%d", sub);
}

static void gen_abort_cb(void *ud, int sub, int index)
{
    gw_req *r = ud;
    char id[PL_MSG_ID_MAX + 24];
    size_t len;
    sub_id(r, sub, id, &len);
    gw_pipe_send_abort(r->srv, id, len, index);
}

/* Abort every sub-request the pipeline is still working on. */
static void abort_live(gw_req *r)
{
    for (int i = 0; i < gw_gen_num_subs(r->gen); i++)
        if (gw_gen_sub_live(r->gen, i)) gen_abort_cb(r, i, -1);
}

static void mark_dirty(gw_server *s, gw_req *r)
{
    if (r->dirty) return;
    r->dirty = true;
    r->dnext = s->dirty;
    s->dirty = r;
}

/* Write what a stream has pending, when the connection can take it; end
 * the response once the generation is over. */
static void stream_flush(gw_server *s, gw_req *r)
{
    gw_conn *c = r->conn;
    if (!c || !gw_http_writable(c)) return;   /* the write completion calls again */
    dirty_remove(s, r);
    pl_buf_reset(&s->scratch);
    gw_gen_stream(r->gen, &s->scratch);
    if (s->scratch.len) gw_http_stream_chunk(c, s->scratch.data, s->scratch.len);
    if (gw_gen_done(r->gen) && r->conn) {
        req_detach(r);
        gw_http_stream_end(c);
        req_release(s, r);
    }
}

/* The pipeline is finished with this generation (end or error). */
static void gen_over(gw_server *s, gw_req *r)
{
    table_remove(s, r);
    gw_gen_finish_metrics(r->gen, gw_now(), false);
    gw_conn *c = r->conn;
    if (!c) { req_release(s, r); return; }
    if (c->streaming) { mark_dirty(s, r); stream_flush(s, r); return; }
    int status = 200;
    pl_buf b;
    pl_buf_init(&b);
    int ec = gw_gen_error(r->gen, &b);
    if (b.len) status = ec;
    else gw_gen_body(r->gen, &b);
    req_detach(r);
    respond_json(c, status, &b);
    pl_buf_free(&b);
    req_release(s, r);
}

static void on_gen_msg(gw_server *s, gw_req *r, int sub, const msgpack_object *msg)
{
    int f = gw_gen_msg(r->gen, sub, msg, gw_now(), gw_wall());
    if ((f & GW_GEN_STARTED) && r->stream && r->conn && !r->conn->streaming && !(f & GW_GEN_FAILED)) {
        /* the engine accepted it: a stream's headers go now (errors before
         * this point are plain HTTP errors, as vLLM's validation errors) */
        gw_http_stream_begin(r->conn);
    }
    if (f & GW_GEN_DIRTY) mark_dirty(s, r);
    if (f & (GW_GEN_DONE | GW_GEN_FAILED)) gen_over(s, r);
}

/* Send a checked generation body down the pipeline (takes body). */
static void submit_generation(gw_server *s, gw_conn *c, cJSON *body, enum gw_endpoint ep, enum gw_api api,
                              const char *resp_echo)
{
    if (s->pstate == GW_PIPE_DOWN) {
        cJSON_Delete(body);
        gw_http_error(c, 503, "ServiceUnavailableError", NULL, "The server's pipeline is not answering; retry later.");
        return;
    }
    /* ids: chatcmpl-/cmpl- + X-Request-Id (or the body's request_id, or
     * random), made unique among the requests in flight */
    char base[XRID_MAX + 1], hex[33];
    const cJSON *rid = field(body, "request_id");
    if (c->has_xrid) snprintf(base, sizeof base, "%.*s", (int)c->xrid.len, c->xrid.data);
    else if (cJSON_IsString(rid) && strlen(rid->valuestring) <= XRID_MAX && !strchr(rid->valuestring, '#'))
        snprintf(base, sizeof base, "%s", rid->valuestring);
    else { hex32(hex); snprintf(base, sizeof base, "%s", hex); }
    char id[PL_MSG_ID_MAX + 1];
    const char *prefix = api == GW_API_ANTHROPIC ? "msg_" : api == GW_API_RESPONSES ? "resp_" : ep == GW_EP_CHAT ? "chatcmpl-" : "cmpl-";
    int idlen = snprintf(id, sizeof id, "%s%s", prefix, base);
    char pid[PL_MSG_ID_MAX + 1];
    int pidlen = idlen;
    memcpy(pid, id, (size_t)idlen + 1);
    while (pl_strmap_get(s->reqs, pid, (size_t)pidlen))
        pidlen = snprintf(pid, sizeof pid, "%s.%llu", id, (unsigned long long)++s->seq);

    gw_req *r = req_new(s, GW_REQ_GEN, pid, (size_t)pidlen);
    pl_buf echo;
    pl_buf_init(&echo);
    if (ep == GW_EP_CHAT) chat_echo_text(body, &echo);
    bool stream = body_true(body, "stream");
    const cJSON *so = field(body, "stream_options");
    gw_gen_cfg cfg = {
        .ep = ep, .id = id, .model = s->o.names[0], .created = (int64_t)time(NULL),
        .stream = stream,
        .n = (int)body_int(body, "n", 1),
        .num_prompts = ep == GW_EP_COMPLETIONS ? num_prompts(body) : 1,
        .logprobs = -1,
        .echo = body_true(body, "echo"),
        .chat_echo = echo.len ? echo.data : NULL, .chat_echo_len = echo.len,
        .return_token_ids = body_true(body, "return_token_ids"),
        .tokens_as_ids = body_true(body, "return_tokens_as_token_ids"),
        .max_tokens = body_int(body, ep == GW_EP_CHAT && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens", -1),
        .metrics = s->metrics,
        .api = api,
        .resp_echo = resp_echo,
        .abort = gen_abort_cb, .ud = r,
    };
    if (cfg.n < 1 || cfg.n > 4096) cfg.n = 1;   /* glm-tokenize answers the bad value */
    if (stream && cJSON_IsObject(so)) {
        const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
        cfg.include_usage = !cJSON_IsFalse(iu);   /* vLLM's StreamOptions default: true */
        cfg.continuous_usage = cfg.include_usage && body_true(so, "continuous_usage_stats");
    }
    if (stream && s->o.force_include_usage) cfg.include_usage = cfg.continuous_usage = true;
    if (ep == GW_EP_CHAT) {
        if (body_true(body, "logprobs")) cfg.logprobs = (int)body_int(body, "top_logprobs", 0);
    } else if (field(body, "logprobs")) {
        cfg.logprobs = (int)body_int(body, "logprobs", 0);
    }
    if (cfg.logprobs > 1000) cfg.logprobs = 1000;
    int rc = r ? gw_gen_new(&r->gen, &cfg) : PL_ERR_NOMEM;
    pl_buf_free(&echo);
    if (rc) {
        free(r);
        cJSON_Delete(body);
        gw_http_error(c, 500, "InternalServerError", NULL, "out of memory");
        return;
    }
    r->stream = stream;

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pl_msg_pack_kv_cstr(&pk, "type", "request");
    pl_msg_pack_kv_str(&pk, "id", pid, (size_t)pidlen);
    pl_msg_pack_kv_cstr(&pk, "endpoint", ep == GW_EP_CHAT ? "chat" : "completions");
    pl_msg_pack_cstr(&pk, "body");
    pl_json_pack(&pk, body);
    cJSON_Delete(body);
    rc = gw_pipe_send(s, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        gw_gen_free(r->gen);
        free(r);
        gw_http_error(c, 503, "ServiceUnavailableError", NULL, "The server is overloaded (its queue to the pipeline is full); retry later.");
        return;
    }
    pl_strmap_put(s->reqs, pid, (size_t)pidlen, r, NULL);
    s->n_gen++;
    r->conn = c;
    c->req = r;
}

static void admit_generation(gw_server *s, gw_conn *c, enum gw_endpoint ep)
{
    cJSON *body = parse_body(c);
    if (!body) return;
    if (!model_ok(s, c, body) || !features_ok(c, body, ep)) { cJSON_Delete(body); return; }
    submit_generation(s, c, body, ep, GW_API_OPENAI, NULL);
}

/* ================================================================ waits: health, stats, tokenize */

static gw_req *start_wait(gw_server *s, gw_conn *c, enum gw_req_kind kind, const char *prefix, double timeout)
{
    char id[64];
    int n = snprintf(id, sizeof id, "%s%llu", prefix, (unsigned long long)++s->seq);
    gw_req *r = req_new(s, kind, id, (size_t)n);
    if (!r) { gw_http_error(c, 500, "InternalServerError", NULL, "out of memory"); return NULL; }
    r->deadline = uv_now(s->loop) + (uint64_t)(timeout * 1000.0 + 0.5);
    r->wnext = s->waits;
    if (s->waits) s->waits->wprev = r;
    s->waits = r;
    pl_strmap_put(s->reqs, r->id, r->idlen, r, NULL);
    r->conn = c;
    c->req = r;
    return r;
}

static void route_health(gw_server *s, gw_conn *c)
{
    if (s->pstate == GW_PIPE_DOWN) { respond_empty(c, 503); return; }
    gw_req *r = start_wait(s, c, GW_REQ_HEALTH, "gw-health-", s->o.health_timeout);
    if (r) gw_pipe_send_ctl(s, "ping", r->id, r->idlen);
}

static void route_metrics(gw_server *s, gw_conn *c)
{
    if (s->pstate == GW_PIPE_DOWN) { respond_metrics(s, c, NULL); return; }
    double t = s->o.health_timeout < STATS_WAIT_S ? s->o.health_timeout : STATS_WAIT_S;
    gw_req *r = start_wait(s, c, GW_REQ_STATS, "gw-stats-", t);
    if (r) gw_pipe_send_ctl(s, "stats", r->id, r->idlen);
}

/* Send a /tokenize or /detokenize body (takes body). */
static void submit_tokenize(gw_server *s, gw_conn *c, cJSON *body, bool detok, enum gw_api api)
{
    if (s->pstate == GW_PIPE_DOWN) {
        cJSON_Delete(body);
        gw_http_error(c, 503, "ServiceUnavailableError", NULL, "The server's pipeline is not answering; retry later.");
        return;
    }
    gw_req *r = start_wait(s, c, GW_REQ_TOKENIZE, "tokenize-", s->o.stage_timeout);
    if (!r) { cJSON_Delete(body); return; }
    r->api = api;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pl_msg_pack_kv_cstr(&pk, "type", detok ? "detokenize" : "tokenize");
    pl_msg_pack_kv_str(&pk, "id", r->id, r->idlen);
    pl_msg_pack_cstr(&pk, "body");
    pl_json_pack(&pk, body);
    cJSON_Delete(body);
    if (gw_pipe_send(s, sb.data, sb.size)) {
        table_remove(s, r);
        req_detach(r);
        req_release(s, r);
        gw_http_error(c, 503, "ServiceUnavailableError", NULL, "The server is overloaded; retry later.");
    }
    msgpack_sbuffer_destroy(&sb);
}

static void route_tokenize(gw_server *s, gw_conn *c, bool detok)
{
    cJSON *body = parse_body(c);
    if (!body) return;
    if (!model_ok(s, c, body)) { cJSON_Delete(body); return; }
    submit_tokenize(s, c, body, detok, GW_API_OPENAI);
}

/* ================================================================ Anthropic Messages */

/* POST /v1/messages and /v1/messages/count_tokens: converted to the chat
 * body (anthropic.c) and served as chat is; errors in Anthropic's shape. */
static void route_messages(gw_server *s, gw_conn *c, bool count_only)
{
    cJSON *body = parse_body(c);
    if (!body) return;
    cJSON *chat = NULL;
    char err[512];
    if (gw_ant_to_chat(body, count_only, &chat, err, sizeof err)) {
        cJSON_Delete(body);
        gw_http_error(c, 400, "BadRequestError", NULL, "%s", err);
        return;
    }
    cJSON_Delete(body);
    if (!model_ok(s, c, chat)) { cJSON_Delete(chat); return; }
    if (!count_only) { submit_generation(s, c, chat, GW_EP_CHAT, GW_API_ANTHROPIC, NULL); return; }
    cJSON *tb = NULL;
    int rc = gw_ant_tokenize_body(chat, &tb);
    cJSON_Delete(chat);
    if (rc) { gw_http_error(c, 500, "InternalServerError", NULL, "out of memory"); return; }
    submit_tokenize(s, c, tb, false, GW_API_ANTHROPIC);
}

/* ================================================================ Responses */

/* POST /v1/responses: converted to the chat body (responses.c), stateless;
 * errors in OpenAI's shape, as vLLM's. */
static void route_responses(gw_server *s, gw_conn *c)
{
    cJSON *body = parse_body(c);
    if (!body) return;
    if (!model_ok(s, c, body)) { cJSON_Delete(body); return; }
    cJSON *chat = NULL;
    char err[512];
    if (gw_resp_to_chat(body, &chat, err, sizeof err)) {
        cJSON_Delete(body);
        gw_http_error(c, 400, "BadRequestError", NULL, "%s", err);
        return;
    }
    pl_buf echo;
    pl_buf_init(&echo);
    gw_resp_echo(body, &echo);
    cJSON_Delete(body);
    submit_generation(s, c, chat, GW_EP_CHAT, GW_API_RESPONSES, echo.data ? echo.data : "");
    pl_buf_free(&echo);
}

/* GET /v1/responses/{id}, POST /v1/responses/{id}/cancel: nothing is
 * stored, so every id is unknown — vLLM's answer without its store. */
static void route_stored_response(gw_server *s, gw_conn *c, const char *rest, size_t len)
{
    bool cancel = len > 7 && !memcmp(rest + len - 7, "/cancel", 7);
    size_t idlen = cancel ? len - 7 : len;
    if (c->method != (cancel ? HTTP_POST : HTTP_GET) && !(c->method == HTTP_HEAD && !cancel)) {
        gw_http_error(c, 405, "MethodNotAllowed", NULL, "Method Not Allowed");
        return;
    }
    if (!auth_ok(s, c)) { gw_http_error(c, 401, "AuthenticationError", NULL, "Unauthorized"); return; }
    gw_http_error(c, 404, "invalid_request_error", "response_id", "Response with id '%.*s' not found.",
                  (int)(idlen < 200 ? idlen : 200), rest);
}

/* An unanswered or refused count_tokens in Anthropic's shape; *code: its status. */
static void err_fields_json(const msgpack_object *msg, pl_buf *b, int64_t *code)
{
    const char *m = "The pipeline did not answer in time";
    size_t ml = strlen(m);
    *code = 503;
    if (msg && pl_msg_type_is(msg, "error")) {
        *code = 500;
        pl_msg_get_int(msg, "code", code);
        if (*code < 400 || *code > 599) *code = 500;
        const char *t = gw_mp_str(pl_msg_get(msg, "message"), &ml);
        m = t ? t : "error";
        if (!t) ml = 5;
    } else if (msg) {
        *code = 501;
        m = "No pipeline stage answered this endpoint (glm-tokenize too old?)";
        ml = strlen(m);
    }
    gw_ant_error_json(b, (int)*code, m, ml);
}

/* A wait is answered (msg) or timed out (msg NULL). */
static void wait_done(gw_server *s, gw_req *r, const msgpack_object *msg)
{
    table_remove(s, r);
    gw_conn *c = r->conn;
    req_detach(r);
    if (c) {
        switch (r->kind) {
        case GW_REQ_HEALTH:
            respond_empty(c, msg ? 200 : 503);
            break;
        case GW_REQ_STATS: {
            /* an engine that knows `stats` adds counters; one that forwards
             * it unchanged gives none (then only gateway-side metrics) */
            int64_t v;
            bool real = msg && pl_msg_type_is(msg, "stats") && pl_msg_get_int(msg, "num_requests_running", &v) == PL_OK;
            respond_metrics(s, c, real ? msg : NULL);
            break;
        }
        case GW_REQ_TOKENIZE: {
            pl_buf b;
            pl_buf_init(&b);
            const msgpack_object *res = msg ? pl_msg_get(msg, "result") : NULL;
            int64_t count;
            if (r->api == GW_API_ANTHROPIC) {
                /* count_tokens: the prompt's length, or the error in Anthropic's shape */
                if (msg && res && res->type == MSGPACK_OBJECT_MAP && !pl_msg_get_int(res, "count", &count)) {
                    gw_ant_count_json(count, &b);
                    respond_json(c, 200, &b);
                } else {
                    err_fields_json(msg, &b, &count);
                    respond_json(c, (int)count, &b);
                }
            } else if (!msg) {
                gw_jw_error(&b, 503, "ServiceUnavailableError", NULL, 0, "The pipeline did not answer in time", 35);
                respond_json(c, 503, &b);
            } else if (pl_msg_type_is(msg, "error")) {
                int code = gw_error_json(msg, &b);
                respond_json(c, code, &b);
            } else if (res && res->type == MSGPACK_OBJECT_MAP) {
                gw_jw_msgpack(&b, res);
                respond_json(c, 200, &b);
            } else {
                static const char m[] = "No pipeline stage answered this endpoint (glm-tokenize too old?)";
                gw_jw_error(&b, 501, "NotImplementedError", NULL, 0, m, sizeof m - 1);
                respond_json(c, 501, &b);
            }
            pl_buf_free(&b);
            break;
        }
        default: break;
        }
    }
    req_release(s, r);
}

/* Anthropic streams that had nothing to send for a while get a `ping`
 * event (Anthropic's keep-alive), e.g. during a long prefill. */
static void ping_idle_stream(const char *key, size_t len, void *val, void *ud)
{
    (void)key;
    (void)len;
    gw_req *r = val;
    gw_server *s = ud;
    if (r->kind == GW_REQ_GEN && r->stream && r->conn && r->conn->streaming && gw_gen_ping(r->gen, gw_now()))
        mark_dirty(s, r);
}

void gw_api_tick(gw_server *s, uint64_t now)
{
    for (gw_req *r = s->waits, *next; r; r = next) {
        next = r->wnext;
        if (now >= r->deadline) wait_done(s, r, NULL);
    }
    if (now - s->last_ping_sweep >= 1000) {   /* once a second is plenty for a 10 s keep-alive */
        s->last_ping_sweep = now;
        pl_strmap_each(s->reqs, ping_idle_stream, s);
        gw_api_after_batch(s);
    }
}

/* ================================================================ dispatch */

static bool path_is(const char *p, size_t n, const char *want)
{
    return strlen(want) == n && !memcmp(p, want, n);
}

void gw_api_dispatch(gw_conn *c)
{
    gw_server *s = c->srv;
    /* X-Request-Id: echoed when usable as an id, else one is made */
    if (!c->has_xrid || !xrid_ok(&c->xrid)) {
        char hex[33];
        hex32(hex);
        pl_buf_reset(&c->xrid);
        pl_buf_puts(&c->xrid, hex);
        c->has_xrid = false;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url.data ? c->url.data : "", c->url.len, c->method == HTTP_CONNECT, &u) ||
        !(u.field_set & (1 << UF_PATH))) {
        gw_http_error(c, 400, "BadRequestError", NULL, "malformed request target");
        return;
    }
    const char *path = c->url.data + u.field_data[UF_PATH].off;
    size_t plen = u.field_data[UF_PATH].len;
    if (s->draining) {
        c->keep_alive = false;
        gw_http_error(c, 503, "ServiceUnavailableError", NULL, "The server is shutting down");
        return;
    }
    static const struct { const char *path; unsigned method; int id; } routes[] = {
        {"/health", HTTP_GET, 1}, {"/ping", HTTP_GET, 1}, {"/version", HTTP_GET, 2},
        {"/v1/models", HTTP_GET, 3}, {"/metrics", HTTP_GET, 4},
        {"/v1/chat/completions", HTTP_POST, 5}, {"/v1/completions", HTTP_POST, 6},
        {"/tokenize", HTTP_POST, 7}, {"/detokenize", HTTP_POST, 8},
        {"/v1/messages", HTTP_POST, 9}, {"/v1/messages/count_tokens", HTTP_POST, 10},
        {"/v1/responses", HTTP_POST, 11},
    };
    c->handler = gw_metrics_handler(path, plen);
    if (path_is(path, plen, "/v1/messages") || path_is(path, plen, "/v1/messages/count_tokens"))
        c->api = GW_API_ANTHROPIC;   /* its errors (405, 401, 400...) in Anthropic's shape */
    int route = 0;
    for (size_t i = 0; i < PL_ARRAY_LEN(routes) && !route; i++) {
        if (!path_is(path, plen, routes[i].path)) continue;
        bool head_ok = routes[i].method == HTTP_GET && c->method == HTTP_HEAD;
        if (c->method != routes[i].method && !head_ok) {
            char allow[64];
            snprintf(allow, sizeof allow, "allow: %s\r\n", routes[i].method == HTTP_GET ? "GET, HEAD" : "POST");
            pl_buf b;
            pl_buf_init(&b);
            static const char m[] = "Method Not Allowed";
            if (c->api == GW_API_ANTHROPIC) gw_ant_error_json(&b, 405, m, sizeof m - 1);
            else gw_jw_error(&b, 405, "MethodNotAllowed", NULL, 0, m, sizeof m - 1);
            gw_http_respond(c, 405, "application/json", b.data, b.len, allow);
            pl_buf_free(&b);
            return;
        }
        route = routes[i].id;
    }
    if (!route && plen > 14 && !memcmp(path, "/v1/responses/", 14)) { route_stored_response(s, c, path + 14, plen - 14); return; }
    if (!route) { not_found(c); return; }
    if (plen >= 3 && !memcmp(path, "/v1", 3) && !auth_ok(s, c)) {
        gw_http_error(c, 401, "AuthenticationError", NULL, "Unauthorized");
        return;
    }
    switch (route) {
    case 1: route_health(s, c); break;
    case 2: {
        static const char v[] = "{\"version\":\"" GW_VERSION "\"}";
        gw_http_respond(c, 200, "application/json", v, sizeof v - 1, NULL);
        break;
    }
    case 3: route_models(s, c); break;
    case 4: route_metrics(s, c); break;
    case 5: admit_generation(s, c, GW_EP_CHAT); break;
    case 6: admit_generation(s, c, GW_EP_COMPLETIONS); break;
    case 7: route_tokenize(s, c, false); break;
    case 8: route_tokenize(s, c, true); break;
    case 9: route_messages(s, c, false); break;
    case 10: route_messages(s, c, true); break;
    case 11: route_responses(s, c); break;
    }
}

/* ================================================================ pipeline messages */

void gw_api_on_msg(gw_server *s, const msgpack_object *msg)
{
    const char *id;
    size_t idlen;
    if (pl_msg_id(msg, &id, &idlen)) {
        pl_log(PL_LOG_WARN, NULL, 0, "a message without a valid id came back from the pipeline: dropped");
        return;
    }
    if (pl_msg_type_is(msg, "ping") && idlen > 6 && !memcmp(id, "gw-hb-", 6)) {
        gw_pipe_on_pong(s, true);
        return;
    }
    if (pl_msg_type_is(msg, "abort") || pl_msg_type_is(msg, "request")) return;   /* our own, back */
    gw_req *r = pl_strmap_get(s->reqs, id, idlen);
    int sub = -1;
    if (!r) {
        /* <parent>#<j>: one prompt of a completions list */
        const char *hash = memrchr(id, '#', idlen);
        int64_t j;
        char num[24];
        size_t nl = hash ? idlen - (size_t)(hash - id) - 1 : 0;
        if (hash && nl && nl < sizeof num) {
            memcpy(num, hash + 1, nl);
            num[nl] = '\0';
            if (!pl_parse_i64(num, 0, 1 << 20, &j)) {
                r = pl_strmap_get(s->reqs, id, (size_t)(hash - id));
                sub = (int)j;
            }
        }
    }
    if (!r) {
        pl_log(PL_LOG_DEBUG, id, idlen, "message for a request no longer here: dropped");
        return;
    }
    if (r->kind == GW_REQ_GEN) {
        if (sub >= gw_gen_num_subs(r->gen)) return;
        if (sub < 0 && gw_gen_num_subs(r->gen) > 1 && !pl_msg_type_is(msg, "error")) return;
        on_gen_msg(s, r, sub < 0 && gw_gen_num_subs(r->gen) == 1 ? 0 : sub, msg);
        return;
    }
    if (r->kind == GW_REQ_HEALTH) {
        if (!pl_msg_type_is(msg, "ping")) return;
        gw_pipe_on_pong(s, false);
    }
    wait_done(s, r, msg);
}

void gw_api_after_batch(gw_server *s)
{
    gw_req *list = s->dirty;
    s->dirty = NULL;
    for (gw_req *r = list; r; r = r->dnext) r->dirty = false;
    while (list) {
        gw_req *r = list;
        list = r->dnext;
        r->dnext = NULL;
        if (r->conn) {
            /* re-mark so stream_flush's dirty_remove finds it, or it stays
             * pending until the connection's write completes */
            mark_dirty(s, r);
            stream_flush(s, r);
        }
    }
}

void gw_api_writable(gw_conn *c)
{
    gw_req *r = c->req;
    if (r && r->kind == GW_REQ_GEN && r->dirty) stream_flush(c->srv, r);
}

void gw_api_conn_gone(gw_conn *c)
{
    gw_server *s = c->srv;
    gw_req *r = c->req;
    req_detach(r);
    if (r->kind == GW_REQ_GEN) {
        if (in_table(s, r)) {
            pl_log(PL_LOG_INFO, r->id, r->idlen, "client disconnected: aborting");
            abort_live(r);
            gw_gen_finish_metrics(r->gen, gw_now(), true);
            table_remove(s, r);
        }
    }
    req_release(s, r);
}

typedef struct { gw_req **v; size_t n, cap; } req_vec;

static void collect(const char *key, size_t len, void *val, void *ud)
{
    (void)key;
    (void)len;
    req_vec *v = ud;
    if (v->n < v->cap) v->v[v->n++] = val;
}

void gw_api_fail_all(gw_server *s, int code, const char *msg)
{
    size_t n = pl_strmap_count(s->reqs);
    if (!n) return;
    req_vec v = {calloc(n, sizeof(gw_req *)), 0, n};
    if (!v.v) return;
    pl_strmap_each(s->reqs, collect, &v);
    for (size_t i = 0; i < v.n; i++) {
        gw_req *r = v.v[i];
        if (r->kind != GW_REQ_GEN) { wait_done(s, r, NULL); continue; }
        abort_live(r);
        gw_gen_fail(r->gen, code, code == 503 ? "ServiceUnavailableError" : "InternalServerError", msg);
        gen_over(s, r);
    }
    free(v.v);
}

size_t gw_api_live(const gw_server *s) { return s->n_gen; }
