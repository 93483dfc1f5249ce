/* gen.c — one generation request: `start`/`delta`/`end`/`error` messages in,
 * an OpenAI chat.completion / text_completion body or SSE chunks out.
 *
 * Shapes follow vLLM 0.33 (entrypoints/openai/chat_completion/serving.py,
 * completion/serving.py); docs/protocol.md §9 lists where we differ.
 *
 * Streams are coalesced: a delta only updates the choice's pending state
 * (text, reasoning, tool-call arguments, logprobs appended), and
 * gw_gen_stream turns whatever is pending into one chunk per choice. The
 * caller calls it when the connection can take more bytes, so a slow reader
 * gets fewer, larger chunks instead of a queue with one entry per token. */
#include "gw_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ state */

typedef struct gw_call {         /* one tool call: assembled, or pending in a stream */
    int64_t index;
    pl_buf  id, type, name, args;
    bool    has_id, has_type, has_name, has_args;
} gw_call;

typedef struct gw_choice {
    /* non-stream: the whole output; stream: what is pending since the last chunk */
    pl_buf   text, reasoning;
    gw_call *calls;
    size_t   ncalls, capcalls;
    pl_buf   lp;                 /* chat: logprobs content entries, comma-joined */
    pl_buf   lp_tok, lp_val, lp_top, lp_off;   /* completions: the four parallel lists */
    size_t   n_lp;               /* entries in the lists above */
    pl_buf   tok_ids;            /* return_token_ids: comma-joined ids */
    size_t   n_tok_ids;
    int64_t  ntokens;            /* completion tokens so far */
    int64_t  text_offset;        /* completions logprobs: code points reported so far */
    bool     offset_set;         /* text_offset starts after the echoed prompt */
    char     finish[16];         /* "" until the choice finished */
    pl_buf   stop_reason;        /* JSON text; empty = null */
    bool     fin_sent;           /* stream: the finishing chunk is out */
    bool     pending;            /* stream: a chunk is due */
    bool     echoed;             /* completions echo prefix handled */
    double   t_last;             /* last token's time (inter-token latency) */
} gw_choice;

typedef struct gw_sub {          /* one prompt of the request (completions lists) */
    bool     started, ended, failed;
    int64_t  prompt_tokens, completion_tokens, cached_tokens;
    bool     has_cached, has_usage;
    pl_buf   prompt_text;        /* completions echo */
    pl_buf   plp;                /* prompt_logprobs as JSON; empty = null */
    double   t_start;            /* monotonic: `start` arrived */
    double   e_arrival, e_sched, e_first, e_finish;   /* engine stamps (Unix s), < 0 unknown */
} gw_sub;

struct gw_gen {
    gw_gen_cfg cfg;
    char      *id, *model, *resp_echo;
    pl_buf     echo;             /* chat echo text */
    int        nsub, nch;
    gw_sub    *subs;
    gw_choice *ch;
    bool       started, got_delta, role_sent, done, failed, final_sent, metrics_done;
    int        err_code;
    pl_buf     err;              /* the error object JSON */
    double     t_arrival, t_first, t_end;
    gw_blocks *ant;              /* Anthropic / Responses output (cfg.api != OpenAI), or NULL */
};

/* ================================================================ life */

int gw_gen_new(gw_gen **out, const gw_gen_cfg *cfg)
{
    gw_gen *g = calloc(1, sizeof *g);
    if (!g) return PL_ERR_NOMEM;
    g->cfg = *cfg;
    if (g->cfg.n < 1) g->cfg.n = 1;
    g->nsub = cfg->num_prompts > 1 ? cfg->num_prompts : 1;
    g->nch = g->nsub * g->cfg.n;
    g->id = strdup(cfg->id ? cfg->id : "");
    g->model = strdup(cfg->model ? cfg->model : "");
    g->subs = calloc((size_t)g->nsub, sizeof *g->subs);
    g->ch = calloc((size_t)g->nch, sizeof *g->ch);
    pl_buf_init(&g->echo);
    pl_buf_init(&g->err);
    if (cfg->chat_echo) pl_buf_append(&g->echo, cfg->chat_echo, cfg->chat_echo_len);
    if (cfg->api != GW_API_OPENAI && gw_blocks_new(&g->ant)) { gw_gen_free(g); return PL_ERR_NOMEM; }
    if (cfg->resp_echo && !(g->resp_echo = strdup(cfg->resp_echo))) { gw_gen_free(g); return PL_ERR_NOMEM; }
    if (!g->id || !g->model || !g->subs || !g->ch) { gw_gen_free(g); return PL_ERR_NOMEM; }
    for (int i = 0; i < g->nsub; i++) {
        gw_sub *s = &g->subs[i];
        pl_buf_init(&s->prompt_text);
        pl_buf_init(&s->plp);
        s->e_arrival = s->e_sched = s->e_first = s->e_finish = -1;
    }
    for (int i = 0; i < g->nch; i++) {
        gw_choice *c = &g->ch[i];
        pl_buf *bufs[] = {&c->text, &c->reasoning, &c->lp, &c->lp_tok, &c->lp_val, &c->lp_top, &c->lp_off,
                          &c->tok_ids, &c->stop_reason};
        for (size_t k = 0; k < PL_ARRAY_LEN(bufs); k++) pl_buf_init(bufs[k]);
        c->t_last = -1;
    }
    g->t_arrival = gw_now();
    g->t_first = g->t_end = -1;
    *out = g;
    return PL_OK;
}

static void calls_clear(gw_choice *c)
{
    for (size_t i = 0; i < c->ncalls; i++) {
        pl_buf_free(&c->calls[i].id);
        pl_buf_free(&c->calls[i].type);
        pl_buf_free(&c->calls[i].name);
        pl_buf_free(&c->calls[i].args);
    }
    c->ncalls = 0;
}

void gw_gen_free(gw_gen *g)
{
    if (!g) return;
    for (int i = 0; g->ch && i < g->nch; i++) {
        gw_choice *c = &g->ch[i];
        pl_buf *bufs[] = {&c->text, &c->reasoning, &c->lp, &c->lp_tok, &c->lp_val, &c->lp_top, &c->lp_off,
                          &c->tok_ids, &c->stop_reason};
        for (size_t k = 0; k < PL_ARRAY_LEN(bufs); k++) pl_buf_free(bufs[k]);
        calls_clear(c);
        free(c->calls);
    }
    for (int i = 0; g->subs && i < g->nsub; i++) {
        pl_buf_free(&g->subs[i].prompt_text);
        pl_buf_free(&g->subs[i].plp);
    }
    pl_buf_free(&g->echo);
    pl_buf_free(&g->err);
    gw_blocks_free(g->ant);
    free(g->resp_echo);
    free(g->subs);
    free(g->ch);
    free(g->id);
    free(g->model);
    free(g);
}

bool gw_gen_started(const gw_gen *g) { return g->started; }

bool gw_gen_ping(gw_gen *g, double now)
{
    if (!g->ant || g->cfg.api != GW_API_ANTHROPIC || !g->cfg.stream || !g->ant->head_sent || g->done || g->failed)
        return false;
    if (now - g->ant->t_last_out < GW_ANT_PING_S) return false;
    g->ant->ping_due = true;
    return true;
}
bool gw_gen_done(const gw_gen *g) { return g->done || g->failed; }
int  gw_gen_num_subs(const gw_gen *g) { return g->nsub; }
bool gw_gen_sub_live(const gw_gen *g, int sub)
{
    return sub >= 0 && sub < g->nsub && !g->subs[sub].ended && !g->subs[sub].failed && !g->failed;
}

/* ================================================================ logprobs */

/* A token string as the response reports it: the decoded token, or
 * "token_id:N" with return_tokens_as_token_ids. */
static void token_str(const gw_gen *g, const msgpack_object *e, pl_buf *out)
{
    int64_t tid = -1;
    pl_msg_get_int(e, "token_id", &tid);
    if (g->cfg.tokens_as_ids) {
        pl_buf_printf(out, "token_id:%lld", (long long)tid);
        return;
    }
    size_t n;
    const char *s = gw_mp_str(pl_msg_get(e, "token"), &n);
    pl_buf_append(out, s ? s : "", n);
}

static double clamp_lp(const msgpack_object *e)
{
    double v = -9999.0;
    if (pl_msg_get_num(e, "logprob", &v) || !(v >= -9999.0)) v = -9999.0;   /* -inf and NaN too */
    return v;
}

/* {"token","logprob","bytes"} of one candidate (chat). */
static void chat_candidate(const gw_gen *g, const msgpack_object *e, pl_buf *b, bool with_top)
{
    pl_buf t;
    pl_buf_init(&t);
    token_str(g, e, &t);
    pl_buf_puts(b, "{\"token\":");
    gw_jw_str(b, t.data, t.len);
    pl_buf_puts(b, ",\"logprob\":");
    gw_jw_double(b, clamp_lp(e));
    pl_buf_puts(b, ",\"bytes\":[");
    for (size_t i = 0; i < t.len; i++) pl_buf_printf(b, "%s%u", i ? "," : "", (unsigned char)t.data[i]);
    pl_buf_putc(b, ']');
    pl_buf_free(&t);
    if (!with_top) { pl_buf_putc(b, '}'); return; }
    /* vLLM's order: the sampled token first, then the top-k without it
     * (a dict keyed by token id), cut to top_logprobs entries */
    pl_buf_puts(b, ",\"top_logprobs\":[");
    int limit = g->cfg.logprobs, k = 0;
    int64_t sid = -1;
    pl_msg_get_int(e, "token_id", &sid);
    const msgpack_object_array *top = NULL;
    pl_msg_get_array(e, "top", &top);
    if (limit > 0) {
        chat_candidate(g, e, b, false);
        k++;
    }
    for (uint32_t i = 0; top && i < top->size && k < limit; i++) {
        int64_t tid = -2;
        pl_msg_get_int(&top->ptr[i], "token_id", &tid);
        if (tid == sid) continue;
        pl_buf_putc(b, ',');
        chat_candidate(g, &top->ptr[i], b, false);
        k++;
    }
    pl_buf_puts(b, "]}");
}

/* Completions: token, its logprob, {token: logprob} for the sampled token
 * and the top `logprobs` (vLLM returns logprobs + 1 entries, sampled first,
 * keys deduplicated), text offset in code points. */
static void completion_lp(gw_gen *g, gw_choice *c, const gw_sub *s, const msgpack_object *e)
{
    const char *sep = c->n_lp ? "," : "";
    if (!c->offset_set) {
        /* with echo the text starts with the prompt; the prompt's own tokens
         * are not listed (no prompt ids reach the gateway), so the offsets
         * of the generated tokens start after it */
        c->offset_set = true;
        if (g->cfg.echo) c->text_offset = (int64_t)gw_utf8_len(s->prompt_text.data ? s->prompt_text.data : "", s->prompt_text.len);
    }
    pl_buf t;
    pl_buf_init(&t);
    token_str(g, e, &t);
    pl_buf_puts(&c->lp_tok, sep);
    gw_jw_str(&c->lp_tok, t.data, t.len);
    pl_buf_puts(&c->lp_val, sep);
    gw_jw_double(&c->lp_val, clamp_lp(e));
    pl_buf_printf(&c->lp_off, "%s%lld", sep, (long long)c->text_offset);
    c->text_offset += (int64_t)gw_utf8_len(t.data ? t.data : "", t.len);
    pl_buf_puts(&c->lp_top, sep);
    pl_buf_putc(&c->lp_top, '{');
    /* keys: sampled + top, distinct ids, then distinct strings (a later
     * equal string would overwrite the value in Python's dict, in place) */
    const msgpack_object_array *top = NULL;
    pl_msg_get_array(e, "top", &top);
    size_t ncand = 1 + (top ? top->size : 0), limit = (size_t)g->cfg.logprobs + 1, used = 0;
    const msgpack_object **keep = calloc(ncand, sizeof *keep);
    pl_buf *strs = calloc(ncand, sizeof *strs);
    if (keep && strs) {
        for (size_t i = 0; i < ncand && used < limit; i++) {
            const msgpack_object *cand = i == 0 ? e : &top->ptr[i - 1];
            int64_t tid = -1, other;
            pl_msg_get_int(cand, "token_id", &tid);
            bool dup = false;
            for (size_t j = 0; j < used && !dup; j++) dup = !pl_msg_get_int(keep[j], "token_id", &other) && other == tid;
            if (dup) continue;
            keep[used++] = cand;
        }
        size_t w = 0;
        for (size_t i = 0; i < used; i++) {
            pl_buf_init(&strs[i]);
            token_str(g, keep[i], &strs[i]);
            size_t first = i;
            for (size_t j = 0; j < i; j++)
                if (strs[j].len == strs[i].len && !memcmp(strs[j].data ? strs[j].data : "", strs[i].data ? strs[i].data : "", strs[i].len)) { first = j; break; }
            if (first != i) continue;
            /* the value of the last candidate with this string */
            const msgpack_object *val = keep[i];
            for (size_t j = i + 1; j < used; j++) {
                pl_buf tj;
                pl_buf_init(&tj);
                token_str(g, keep[j], &tj);
                if (tj.len == strs[i].len && !memcmp(tj.data ? tj.data : "", strs[i].data ? strs[i].data : "", tj.len)) val = keep[j];
                pl_buf_free(&tj);
            }
            if (w++) pl_buf_putc(&c->lp_top, ',');
            gw_jw_str(&c->lp_top, strs[i].data, strs[i].len);
            pl_buf_putc(&c->lp_top, ':');
            gw_jw_double(&c->lp_top, clamp_lp(val));
        }
        for (size_t i = 0; i < used; i++) pl_buf_free(&strs[i]);
    }
    free(keep);
    free(strs);
    pl_buf_putc(&c->lp_top, '}');
    pl_buf_free(&t);
    c->n_lp++;
}

/* `prompt_logprobs` of `start` -> vLLM's list of {token_id: {logprob, rank,
 * decoded_token}} (first entry null). Entries give the prompt token's
 * logprob and `top` as [id, logprob] pairs or candidate maps; the prompt
 * token's own id and string appear when the engine/detok provide them. */
static void prompt_logprobs_json(const msgpack_object_array *a, pl_buf *b)
{
    pl_buf_putc(b, '[');
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *e = &a->ptr[i];
        if (i) pl_buf_putc(b, ',');
        if (e->type != MSGPACK_OBJECT_MAP) { pl_buf_puts(b, "null"); continue; }
        pl_buf_putc(b, '{');
        int w = 0;
        int64_t tid, rank;
        int64_t seen[64];
        int nseen = 0;
        if (!pl_msg_get_int(e, "token_id", &tid)) {
            pl_buf_printf(b, "\"%lld\":{\"logprob\":", (long long)tid);
            gw_jw_double(b, clamp_lp(e));
            pl_buf_puts(b, ",\"rank\":");
            if (!pl_msg_get_int(e, "rank", &rank)) gw_jw_int(b, rank);
            else pl_buf_puts(b, "null");
            pl_buf_puts(b, ",\"decoded_token\":");
            const msgpack_object *tok = pl_msg_get(e, "token");
            if (tok && tok->type == MSGPACK_OBJECT_STR) gw_jw_msgpack(b, tok);
            else pl_buf_puts(b, "null");
            pl_buf_putc(b, '}');
            seen[nseen++] = tid;
            w++;
        }
        const msgpack_object_array *top = NULL;
        pl_msg_get_array(e, "top", &top);
        for (uint32_t j = 0; top && j < top->size; j++) {
            const msgpack_object *t = &top->ptr[j];
            double lp = -9999.0;
            const msgpack_object *tok = NULL;
            if (t->type == MSGPACK_OBJECT_ARRAY && t->via.array.size == 2) {
                if (pl_msg_as_int(&t->via.array.ptr[0], &tid)) continue;
                pl_msg_as_num(&t->via.array.ptr[1], &lp);
            } else if (t->type == MSGPACK_OBJECT_MAP) {
                if (pl_msg_get_int(t, "token_id", &tid)) continue;
                lp = clamp_lp(t);
                tok = pl_msg_get(t, "token");
            } else {
                continue;
            }
            bool dup = false;
            for (int k = 0; k < nseen && !dup; k++) dup = seen[k] == tid;
            if (dup) continue;
            if (nseen < (int)PL_ARRAY_LEN(seen)) seen[nseen++] = tid;
            if (!(lp >= -9999.0)) lp = -9999.0;
            pl_buf_printf(b, "%s\"%lld\":{\"logprob\":", w++ ? "," : "", (long long)tid);
            gw_jw_double(b, lp);
            pl_buf_printf(b, ",\"rank\":%u,\"decoded_token\":", j + 1);
            if (tok && tok->type == MSGPACK_OBJECT_STR) gw_jw_msgpack(b, tok);
            else pl_buf_puts(b, "null");
            pl_buf_putc(b, '}');
        }
        pl_buf_putc(b, '}');
    }
    pl_buf_putc(b, ']');
}

/* ================================================================ messages */

static double stamp(const msgpack_object *m, const char *key)
{
    double v;
    return pl_msg_get_num(m, key, &v) == PL_OK && v > 0 ? v : -1;
}

static int on_start(gw_gen *g, gw_sub *s, const msgpack_object *msg, double now)
{
    int r = g->started ? 0 : GW_GEN_STARTED;
    g->started = true;
    s->started = true;
    s->t_start = now;
    pl_msg_get_int(msg, "prompt_tokens", &s->prompt_tokens);
    if (pl_msg_get_int(msg, "cached_tokens", &s->cached_tokens) == PL_OK) s->has_cached = true;
    s->e_arrival = stamp(msg, "arrival_time");
    s->e_sched = stamp(msg, "scheduled_time");
    const msgpack_object *ctx = pl_msg_get(msg, "context");
    size_t n;
    const char *pt = ctx ? gw_mp_str(pl_msg_get(ctx, "prompt_text"), &n) : NULL;
    if (pt) {
        pl_buf_reset(&s->prompt_text);
        pl_buf_append(&s->prompt_text, pt, n);
    }
    const msgpack_object_array *plp;
    if (pl_msg_get_array(msg, "prompt_logprobs", &plp) == PL_OK) {
        pl_buf_reset(&s->plp);
        prompt_logprobs_json(plp, &s->plp);
    }
    if (g->ant && g->cfg.stream) r |= GW_GEN_DIRTY;   /* message_start goes out at once */
    return r;
}

static gw_call *call_push(gw_choice *c, int64_t index)
{
    if (c->ncalls == c->capcalls) {
        size_t cap = c->capcalls ? c->capcalls * 2 : 4;
        gw_call *nc = realloc(c->calls, cap * sizeof *nc);
        if (!nc) return NULL;
        c->calls = nc;
        c->capcalls = cap;
    }
    gw_call *k = &c->calls[c->ncalls++];
    memset(k, 0, sizeof *k);
    k->index = index;
    pl_buf_init(&k->id);
    pl_buf_init(&k->type);
    pl_buf_init(&k->name);
    pl_buf_init(&k->args);
    return k;
}

static void set_str(pl_buf *b, bool *has, const msgpack_object *o, bool append)
{
    size_t n;
    const char *s = gw_mp_str(o, &n);
    if (!s) return;
    if (!append) pl_buf_reset(b);
    pl_buf_append(b, s, n);
    *has = true;
}

/* One streaming tool-call delta {index, id?, type?, function:{name?, arguments?}}.
 * Non-stream: merged into the call with that index. Stream: merged into the
 * last pending entry when it is the same call and brings no new id/name
 * (the usual arguments-only continuation), else a new entry. */
static void add_tool_delta(gw_gen *g, gw_choice *c, const msgpack_object *d)
{
    int64_t index = 0;
    pl_msg_get_int(d, "index", &index);
    const msgpack_object *fn = pl_msg_get(d, "function");
    const msgpack_object *id = pl_msg_get(d, "id"), *type = pl_msg_get(d, "type");
    const msgpack_object *name = fn ? pl_msg_get(fn, "name") : NULL, *args = fn ? pl_msg_get(fn, "arguments") : NULL;
    bool head = (id && id->type == MSGPACK_OBJECT_STR) || (name && name->type == MSGPACK_OBJECT_STR);
    gw_call *k = NULL;
    if (!g->cfg.stream) {
        for (size_t i = 0; i < c->ncalls && !k; i++)
            if (c->calls[i].index == index) k = &c->calls[i];
    } else if (c->ncalls && c->calls[c->ncalls - 1].index == index && !head) {
        k = &c->calls[c->ncalls - 1];
    }
    if (!k && !(k = call_push(c, index))) return;
    set_str(&k->id, &k->has_id, id, false);
    set_str(&k->type, &k->has_type, type, false);
    set_str(&k->name, &k->has_name, name, false);
    set_str(&k->args, &k->has_args, args, true);
}

static void append_str_field(pl_buf *b, const msgpack_object *m, const char *key)
{
    size_t n;
    const char *s = gw_mp_str(pl_msg_get(m, key), &n);
    if (s) pl_buf_append(b, s, n);
}

static int on_delta(gw_gen *g, int sub, const msgpack_object *msg, double now)
{
    int64_t index = 0;
    pl_msg_get_int(msg, "index", &index);
    if (index < 0 || index >= g->cfg.n) return 0;
    gw_choice *c = &g->ch[sub * g->cfg.n + index];
    if (c->finish[0]) return 0;   /* a late delta after the choice finished */
    g->got_delta = true;
    if (g->ant) {
        /* Anthropic / Responses: the block list holds the output (the
         * choice keeps only counts, finish and timing) */
        gw_blocks_delta(g->ant, msg);
    } else if (g->cfg.ep == GW_EP_COMPLETIONS) {
        /* completions have no reasoning/content split (vLLM runs no parser
         * there): reasoning a parser reported is text, and it comes first */
        append_str_field(&c->text, msg, "reasoning");
        append_str_field(&c->text, msg, "text");
    } else {
        append_str_field(&c->text, msg, "text");
        append_str_field(&c->reasoning, msg, "reasoning");
    }
    const msgpack_object_array *tc = NULL;
    if (!g->ant && g->cfg.ep == GW_EP_CHAT && pl_msg_get_array(msg, "tool_calls", &tc) == PL_OK)
        for (uint32_t i = 0; i < tc->size; i++)
            if (tc->ptr[i].type == MSGPACK_OBJECT_MAP) add_tool_delta(g, c, &tc->ptr[i]);
    const msgpack_object_array *ids = NULL, *lps = NULL;
    pl_msg_get_array(msg, "token_ids", &ids);
    if (g->cfg.logprobs >= 0 && pl_msg_get_array(msg, "logprobs", &lps) == PL_OK) {
        for (uint32_t i = 0; i < lps->size; i++) {
            const msgpack_object *e = &lps->ptr[i];
            if (e->type != MSGPACK_OBJECT_MAP) continue;
            if (g->cfg.ep == GW_EP_CHAT) {
                if (c->n_lp++) pl_buf_putc(&c->lp, ',');
                chat_candidate(g, e, &c->lp, true);
            } else {
                completion_lp(g, c, &g->subs[sub], e);
            }
        }
    }
    if (ids && ids->size) {
        if (g->cfg.return_token_ids)
            for (uint32_t i = 0; i < ids->size; i++) {
                int64_t v = 0;
                pl_msg_as_int(&ids->ptr[i], &v);
                pl_buf_printf(&c->tok_ids, "%s%lld", c->n_tok_ids++ ? "," : "", (long long)v);
            }
        c->ntokens += ids->size;
        if (g->t_first < 0) {
            g->t_first = now;
            gw_metrics_ttft(g->cfg.metrics, now - g->t_arrival);
        } else if (c->t_last >= 0) {
            gw_metrics_itl(g->cfg.metrics, now - c->t_last);
        }
        c->t_last = now;
    }
    size_t n;
    const char *fin = gw_mp_str(pl_msg_get(msg, "finish_reason"), &n);
    if (fin) {
        snprintf(c->finish, sizeof c->finish, "%.*s", (int)(n < sizeof c->finish ? n : sizeof c->finish - 1), fin);
        if (!c->finish[0]) snprintf(c->finish, sizeof c->finish, "stop");
        const msgpack_object *sr = pl_msg_get(msg, "stop_reason");
        pl_buf_reset(&c->stop_reason);
        if (sr && sr->type != MSGPACK_OBJECT_NIL) gw_jw_msgpack(&c->stop_reason, sr);
        /* A stop string is decided in glm-detok (stop_reason is the string):
         * the engine may still be generating this choice. Cancel it there
         * (docs/protocol.md `abort`). */
        if (sr && sr->type == MSGPACK_OBJECT_STR && !g->subs[sub].ended && g->cfg.abort)
            g->cfg.abort(g->cfg.ud, g->nsub > 1 ? sub : 0, (int)index);
    }
    c->pending = true;
    return g->cfg.stream ? GW_GEN_DIRTY : 0;
}

static int on_end(gw_gen *g, int sub, const msgpack_object *msg, double now)
{
    gw_sub *s = &g->subs[sub];
    if (s->ended) return 0;
    s->ended = true;
    const msgpack_object *u = pl_msg_get(msg, "usage");
    int64_t v;
    if (u && pl_msg_get_int(u, "prompt_tokens", &v) == PL_OK) s->prompt_tokens = v;
    if (u && pl_msg_get_int(u, "completion_tokens", &v) == PL_OK) { s->completion_tokens = v; s->has_usage = true; }
    if (!s->has_cached && pl_msg_get_int(msg, "cached_tokens", &v) == PL_OK) { s->cached_tokens = v; s->has_cached = true; }
    s->e_first = stamp(msg, "first_token_time");
    s->e_finish = stamp(msg, "finish_time");
    for (int i = 0; i < g->cfg.n; i++) {
        gw_choice *c = &g->ch[sub * g->cfg.n + i];
        if (!s->has_usage) s->completion_tokens += c->ntokens;
        if (!c->finish[0]) {          /* ended without a finish reason: cut short */
            snprintf(c->finish, sizeof c->finish, "abort");
            c->pending = true;
        }
    }
    for (int i = 0; i < g->nsub; i++)
        if (!g->subs[i].ended) return g->cfg.stream ? GW_GEN_DIRTY : 0;
    g->done = true;
    g->t_end = now;
    return GW_GEN_DONE | (g->cfg.stream ? GW_GEN_DIRTY : 0);
}

static int fail(gw_gen *g, int code, const char *type, const char *param, size_t paramlen,
                const char *msg, size_t msglen)
{
    if (g->failed || g->done) return 0;
    g->failed = true;
    g->err_code = code >= 400 && code <= 599 ? code : 500;
    g->t_end = gw_now();
    pl_buf_reset(&g->err);
    if (g->ant && g->cfg.api == GW_API_ANTHROPIC) gw_ant_error_json(&g->err, g->err_code, msg, msglen);
    else gw_jw_error(&g->err, g->err_code, type, param, paramlen, msg, msglen);
    return GW_GEN_FAILED | (g->cfg.stream ? GW_GEN_DIRTY : 0);
}

int gw_gen_fail(gw_gen *g, int code, const char *type, const char *msg)
{
    return fail(g, code, type, NULL, 0, msg, strlen(msg));
}

/* An `error` message's code, type, param and message. */
typedef struct {
    int64_t     code;
    char        type[64];
    const char *msg, *param;
    size_t      msglen, paramlen;
} err_fields;

static void err_read(const msgpack_object *msg, err_fields *f)
{
    f->code = 500;
    pl_msg_get_int(msg, "code", &f->code);
    if (f->code < 400 || f->code > 599) f->code = 500;
    size_t tl;
    const char *type = gw_mp_str(pl_msg_get(msg, "err_type"), &tl);
    snprintf(f->type, sizeof f->type, "%.*s", (int)(tl < 63 ? tl : 63), type ? type : "");
    if (!f->type[0]) snprintf(f->type, sizeof f->type, f->code >= 500 ? "InternalServerError" : "BadRequestError");
    f->msg = gw_mp_str(pl_msg_get(msg, "message"), &f->msglen);
    if (!f->msg) { f->msg = "error"; f->msglen = 5; }
    f->param = gw_mp_str(pl_msg_get(msg, "param"), &f->paramlen);
}

int gw_error_json(const msgpack_object *msg, pl_buf *out)
{
    err_fields f;
    err_read(msg, &f);
    gw_jw_error(out, (int)f.code, f.type, f.param, f.paramlen, f.msg, f.msglen);
    return (int)f.code;
}

static int on_error(gw_gen *g, int sub, const msgpack_object *msg)
{
    err_fields f;
    err_read(msg, &f);
    if (sub >= 0) g->subs[sub].failed = true;
    else for (int i = 0; i < g->nsub; i++) g->subs[i].failed = true;
    /* the other prompts of a list are still running: stop them */
    for (int i = 0; g->cfg.abort && i < g->nsub; i++)
        if (i != sub && g->subs[i].started && !g->subs[i].ended && sub >= 0) g->cfg.abort(g->cfg.ud, i, -1);
    return fail(g, (int)f.code, f.type, f.param, f.paramlen, f.msg, f.msglen);
}

int gw_gen_msg(gw_gen *g, int sub, const msgpack_object *msg, double now, double wall)
{
    (void)wall;
    if (g->failed || sub >= g->nsub) return 0;
    if (pl_msg_type_is(msg, "error")) return on_error(g, sub, msg);
    if (sub < 0) sub = 0;
    if (g->done) return 0;
    if (pl_msg_type_is(msg, "delta")) return on_delta(g, sub, msg, now);
    if (pl_msg_type_is(msg, "start")) return on_start(g, &g->subs[sub], msg, now);
    if (pl_msg_type_is(msg, "end")) return on_end(g, sub, msg, now);
    return 0;
}

/* ================================================================ output pieces */

static int64_t total_prompt(const gw_gen *g)
{
    int64_t p = 0;
    for (int i = 0; i < g->nsub; i++) p += g->subs[i].prompt_tokens;
    return p;
}

static int64_t total_completion(const gw_gen *g)
{
    int64_t c = 0;
    for (int i = 0; i < g->nsub; i++) c += g->subs[i].completion_tokens;
    return c;
}

static void usage_json(const gw_gen *g, pl_buf *b, int64_t p, int64_t c, bool details_null)
{
    pl_buf_printf(b, "{\"prompt_tokens\":%lld,\"total_tokens\":%lld,\"completion_tokens\":%lld",
                  (long long)p, (long long)(p + c), (long long)c);
    int64_t cached = 0;
    bool has = false;
    for (int i = 0; i < g->nsub; i++)
        if (g->subs[i].has_cached) { has = true; cached += g->subs[i].cached_tokens; }
    if (has) pl_buf_printf(b, ",\"prompt_tokens_details\":{\"cached_tokens\":%lld}", (long long)cached);
    else if (details_null) pl_buf_puts(b, ",\"prompt_tokens_details\":null");
    pl_buf_putc(b, '}');
}

static void head_json(const gw_gen *g, pl_buf *b, const char *object)
{
    pl_buf_puts(b, "{\"id\":");
    gw_jw_cstr(b, g->id);
    pl_buf_printf(b, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, (long long)g->cfg.created);
    gw_jw_cstr(b, g->model);
}

static void finish_json(const char *finish, pl_buf *b)
{
    pl_buf_puts(b, ",\"finish_reason\":");
    if (finish && finish[0]) gw_jw_cstr(b, finish);
    else pl_buf_puts(b, "null");
}

static void stop_reason_json(const gw_choice *c, pl_buf *b)
{
    pl_buf_puts(b, ",\"stop_reason\":");
    if (c->stop_reason.len) pl_buf_append(b, c->stop_reason.data, c->stop_reason.len);
    else pl_buf_puts(b, "null");
}

static void tool_call_json(const gw_call *k, pl_buf *b, bool stream)
{
    pl_buf_putc(b, '{');
    if (stream) pl_buf_printf(b, "\"index\":%lld,", (long long)k->index);
    if (k->has_id) { pl_buf_puts(b, "\"id\":"); gw_jw_str(b, k->id.data, k->id.len); pl_buf_putc(b, ','); }
    if (k->has_type || !stream) {
        pl_buf_puts(b, "\"type\":");
        if (k->has_type) gw_jw_str(b, k->type.data, k->type.len);
        else pl_buf_puts(b, "\"function\"");
        pl_buf_putc(b, ',');
    }
    pl_buf_puts(b, "\"function\":{");
    bool comma = false;
    if (k->has_name || !stream) {
        pl_buf_puts(b, "\"name\":");
        gw_jw_str(b, k->name.data, k->name.len);
        comma = true;
    }
    if (k->has_args || !stream) {
        pl_buf_puts(b, comma ? ",\"arguments\":" : "\"arguments\":");
        gw_jw_str(b, k->args.data, k->args.len);
    }
    pl_buf_puts(b, "}}");
}

static void logprobs_json(const gw_gen *g, const gw_choice *c, pl_buf *b)
{
    pl_buf_puts(b, ",\"logprobs\":");
    if (g->cfg.logprobs < 0) { pl_buf_puts(b, "null"); return; }
    if (g->cfg.ep == GW_EP_CHAT) {
        pl_buf_puts(b, "{\"content\":[");
        pl_buf_append(b, c->lp.data ? c->lp.data : "", c->lp.len);
        pl_buf_puts(b, "]}");
        return;
    }
    pl_buf_puts(b, "{\"text_offset\":[");
    pl_buf_append(b, c->lp_off.data ? c->lp_off.data : "", c->lp_off.len);
    pl_buf_puts(b, "],\"token_logprobs\":[");
    pl_buf_append(b, c->lp_val.data ? c->lp_val.data : "", c->lp_val.len);
    pl_buf_puts(b, "],\"tokens\":[");
    pl_buf_append(b, c->lp_tok.data ? c->lp_tok.data : "", c->lp_tok.len);
    pl_buf_puts(b, "],\"top_logprobs\":[");
    pl_buf_append(b, c->lp_top.data ? c->lp_top.data : "", c->lp_top.len);
    pl_buf_puts(b, "]}");
}

static void token_ids_json(const gw_gen *g, const gw_choice *c, pl_buf *b)
{
    if (!g->cfg.return_token_ids) return;
    pl_buf_puts(b, ",\"token_ids\":[");
    pl_buf_append(b, c->tok_ids.data ? c->tok_ids.data : "", c->tok_ids.len);
    pl_buf_putc(b, ']');
}

/* Clear what a stream chunk has reported. */
static void choice_drain(gw_choice *c)
{
    pl_buf *bufs[] = {&c->text, &c->reasoning, &c->lp, &c->lp_tok, &c->lp_val, &c->lp_top, &c->lp_off, &c->tok_ids};
    for (size_t k = 0; k < PL_ARRAY_LEN(bufs); k++) pl_buf_reset(bufs[k]);
    calls_clear(c);
    c->n_lp = 0;
    c->n_tok_ids = 0;
    c->pending = false;
}

/* ================================================================ stream */

/* One JSON string of two texts (an echoed prompt and the output). */
static void jw_str_pair(pl_buf *b, const pl_buf *first, const pl_buf *second)
{
    pl_buf t;
    pl_buf_init(&t);
    pl_buf_append(&t, first->data ? first->data : "", first->len);
    pl_buf_append(&t, second->data ? second->data : "", second->len);
    gw_jw_str(b, t.data, t.len);
    pl_buf_free(&t);
}

static void sse_begin(pl_buf *b) { pl_buf_puts(b, "data: "); }
static void sse_end(pl_buf *b) { pl_buf_puts(b, "\n\n"); }

static void stream_role_chunks(gw_gen *g, pl_buf *b)
{
    for (int i = 0; i < g->cfg.n; i++) {
        sse_begin(b);
        head_json(g, b, "chat.completion.chunk");
        pl_buf_printf(b, ",\"choices\":[{\"index\":%d,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                         "\"logprobs\":null,\"finish_reason\":null}]", i);
        if (g->cfg.continuous_usage) {
            pl_buf_puts(b, ",\"usage\":");
            usage_json(g, b, g->subs[0].prompt_tokens, 0, false);
        }
        pl_buf_putc(b, '}');
        sse_end(b);
    }
    if (!g->echo.len) return;
    for (int i = 0; i < g->cfg.n; i++) {
        sse_begin(b);
        head_json(g, b, "chat.completion.chunk");
        pl_buf_printf(b, ",\"choices\":[{\"index\":%d,\"delta\":{\"content\":", i);
        gw_jw_str(b, g->echo.data, g->echo.len);
        pl_buf_puts(b, "},\"logprobs\":null,\"finish_reason\":null}]}");
        sse_end(b);
    }
}

static void stream_chat_chunk(gw_gen *g, int ci, pl_buf *b)
{
    gw_choice *c = &g->ch[ci];
    bool fin = c->finish[0] && !c->fin_sent;
    sse_begin(b);
    head_json(g, b, "chat.completion.chunk");
    pl_buf_printf(b, ",\"choices\":[{\"index\":%d,\"delta\":{", ci);
    bool comma = false;
    if (c->reasoning.len) {
        pl_buf_puts(b, "\"reasoning\":");
        gw_jw_str(b, c->reasoning.data, c->reasoning.len);
        pl_buf_puts(b, ",\"reasoning_content\":");
        gw_jw_str(b, c->reasoning.data, c->reasoning.len);
        comma = true;
    }
    if (c->text.len) {
        pl_buf_puts(b, comma ? ",\"content\":" : "\"content\":");
        gw_jw_str(b, c->text.data, c->text.len);
        comma = true;
    }
    if (c->ncalls) {
        pl_buf_puts(b, comma ? ",\"tool_calls\":[" : "\"tool_calls\":[");
        for (size_t k = 0; k < c->ncalls; k++) {
            if (k) pl_buf_putc(b, ',');
            tool_call_json(&c->calls[k], b, true);
        }
        pl_buf_putc(b, ']');
    }
    pl_buf_putc(b, '}');
    if (g->cfg.logprobs >= 0 && c->n_lp) logprobs_json(g, c, b);
    else pl_buf_puts(b, ",\"logprobs\":null");
    finish_json(fin ? c->finish : NULL, b);
    if (fin) stop_reason_json(c, b);
    token_ids_json(g, c, b);
    pl_buf_puts(b, "}]");
    if (g->cfg.continuous_usage) {
        pl_buf_puts(b, ",\"usage\":");
        usage_json(g, b, g->subs[0].prompt_tokens, c->ntokens, false);
    }
    pl_buf_putc(b, '}');
    sse_end(b);
    if (fin) c->fin_sent = true;
}

static void stream_completion_chunk(gw_gen *g, int ci, pl_buf *b)
{
    gw_choice *c = &g->ch[ci];
    gw_sub *s = &g->subs[ci / g->cfg.n];
    bool fin = c->finish[0] && !c->fin_sent;
    sse_begin(b);
    head_json(g, b, "text_completion");
    pl_buf_printf(b, ",\"choices\":[{\"index\":%d,\"text\":", ci);
    if (g->cfg.echo && !c->echoed) {
        jw_str_pair(b, &s->prompt_text, &c->text);
        c->echoed = true;
    } else {
        gw_jw_str(b, c->text.data, c->text.len);
    }
    if (g->cfg.logprobs >= 0 && c->n_lp) logprobs_json(g, c, b);
    else pl_buf_puts(b, ",\"logprobs\":null");
    finish_json(fin ? c->finish : NULL, b);
    if (fin) stop_reason_json(c, b);
    else pl_buf_puts(b, ",\"stop_reason\":null");
    token_ids_json(g, c, b);
    pl_buf_puts(b, "}]");
    if (g->cfg.continuous_usage) {
        pl_buf_puts(b, ",\"usage\":");
        usage_json(g, b, s->prompt_tokens, c->ntokens, false);
    }
    pl_buf_putc(b, '}');
    sse_end(b);
    if (fin) c->fin_sent = true;
}

static void usage_of(const gw_gen *g, gw_usage *u)
{
    u->prompt = total_prompt(g);
    u->completion = total_completion(g);
    u->cached = 0;
    u->has_cached = false;
    for (int i = 0; i < g->nsub; i++)
        if (g->subs[i].has_cached) { u->has_cached = true; u->cached += g->subs[i].cached_tokens; }
}

void gw_gen_stream(gw_gen *g, pl_buf *b)
{
    if (g->final_sent) return;
    if (g->ant) {
        gw_usage u;
        usage_of(g, &u);
        gw_resp_info ri = {g->id, g->model, g->resp_echo, g->cfg.created};
        size_t before = b->len;
        if (g->cfg.api == GW_API_RESPONSES)
            gw_resp_stream(g->ant, &ri, &u, g->done, g->failed ? g->err.data : NULL, g->err.len, b);
        else
            gw_ant_stream(g->ant, g->id, g->model, &u, g->done, g->failed ? g->err.data : NULL, g->err.len, b);
        if (b->len > before) g->ant->t_last_out = gw_now();
        for (int i = 0; i < g->nch; i++) choice_drain(&g->ch[i]);
        g->final_sent = g->done || g->failed;
        return;
    }
    if (g->failed) {
        /* in-stream error (vLLM): the status is already 200 */
        sse_begin(b);
        pl_buf_append(b, g->err.data, g->err.len);
        sse_end(b);
        pl_buf_puts(b, "data: [DONE]\n\n");
        g->final_sent = true;
        return;
    }
    if (g->cfg.ep == GW_EP_CHAT && g->got_delta && !g->role_sent) {
        stream_role_chunks(g, b);   /* when the first token is ready, as vLLM */
        g->role_sent = true;
    }
    for (int i = 0; i < g->nch; i++) {
        gw_choice *c = &g->ch[i];
        if (!c->pending || c->fin_sent) continue;
        bool fin = c->finish[0] != 0;
        bool any = c->text.len || c->reasoning.len || c->ncalls || c->n_lp || fin ||
                   (g->cfg.echo && g->cfg.ep == GW_EP_COMPLETIONS && !c->echoed);
        if (any) {
            if (g->cfg.ep == GW_EP_CHAT) stream_chat_chunk(g, i, b);
            else stream_completion_chunk(g, i, b);
        }
        choice_drain(c);
    }
    if (!g->done) return;
    if (g->cfg.include_usage) {
        sse_begin(b);
        head_json(g, b, g->cfg.ep == GW_EP_CHAT ? "chat.completion.chunk" : "text_completion");
        pl_buf_puts(b, ",\"choices\":[],\"usage\":");
        usage_json(g, b, total_prompt(g), total_completion(g), false);
        pl_buf_putc(b, '}');
        sse_end(b);
    }
    pl_buf_puts(b, "data: [DONE]\n\n");
    g->final_sent = true;
}

/* ================================================================ full bodies */

static void json_or_null(pl_buf *b, const pl_buf *v)
{
    if (v->len) pl_buf_append(b, v->data, v->len);
    else pl_buf_puts(b, "null");
}

/* A full body's choice after its message/text: logprobs, finish_reason,
 * stop_reason, (completions) prompt_logprobs, token ids; closes the choice. */
static void choice_tail(const gw_gen *g, const gw_choice *c, pl_buf *b, const pl_buf *plp)
{
    logprobs_json(g, c, b);
    finish_json(c->finish, b);
    stop_reason_json(c, b);
    if (plp) {
        pl_buf_puts(b, ",\"prompt_logprobs\":");
        json_or_null(b, plp);
        pl_buf_puts(b, ",\"prompt_token_ids\":null");
    }
    if (g->cfg.return_token_ids) token_ids_json(g, c, b);
    else pl_buf_puts(b, ",\"token_ids\":null");
    pl_buf_putc(b, '}');
}

/* Closes the choices and writes what every full body has after them. */
static void body_tail(const gw_gen *g, pl_buf *b)
{
    pl_buf_puts(b, "],\"service_tier\":null,\"system_fingerprint\":null,\"usage\":");
    usage_json(g, b, total_prompt(g), total_completion(g), true);
}

static void chat_body(gw_gen *g, pl_buf *b)
{
    head_json(g, b, "chat.completion");
    pl_buf_puts(b, ",\"choices\":[");
    for (int i = 0; i < g->nch; i++) {
        gw_choice *c = &g->ch[i];
        if (i) pl_buf_putc(b, ',');
        pl_buf_printf(b, "{\"index\":%d,\"message\":{\"role\":\"assistant\",\"content\":", i);
        if (g->echo.len || c->text.len) {
            jw_str_pair(b, &g->echo, &c->text);
        } else {
            pl_buf_puts(b, "null");
        }
        pl_buf_puts(b, ",\"refusal\":null,\"annotations\":null,\"audio\":null,\"function_call\":null");
        if (c->ncalls) {
            pl_buf_puts(b, ",\"tool_calls\":[");
            for (size_t k = 0; k < c->ncalls; k++) {
                if (k) pl_buf_putc(b, ',');
                tool_call_json(&c->calls[k], b, false);
            }
            pl_buf_putc(b, ']');
        }
        for (int k = 0; k < 2; k++) {
            pl_buf_puts(b, k ? ",\"reasoning_content\":" : ",\"reasoning\":");
            if (c->reasoning.len) gw_jw_str(b, c->reasoning.data, c->reasoning.len);
            else pl_buf_puts(b, "null");
        }
        pl_buf_putc(b, '}');
        choice_tail(g, c, b, NULL);
    }
    body_tail(g, b);
    pl_buf_puts(b, ",\"prompt_logprobs\":");
    json_or_null(b, &g->subs[0].plp);
    pl_buf_puts(b, ",\"prompt_token_ids\":null,\"kv_transfer_params\":null}");
}

static void completion_body(gw_gen *g, pl_buf *b)
{
    head_json(g, b, "text_completion");
    pl_buf_puts(b, ",\"choices\":[");
    for (int i = 0; i < g->nch; i++) {
        gw_choice *c = &g->ch[i];
        gw_sub *s = &g->subs[i / g->cfg.n];
        if (i) pl_buf_putc(b, ',');
        pl_buf_printf(b, "{\"index\":%d,\"text\":", i);
        static const pl_buf none = {0};
        jw_str_pair(b, g->cfg.echo ? &s->prompt_text : &none, &c->text);
        choice_tail(g, c, b, &s->plp);
    }
    body_tail(g, b);
    pl_buf_puts(b, ",\"kv_transfer_params\":null}");
}

void gw_gen_body(gw_gen *g, pl_buf *b)
{
    if (g->ant) {
        gw_usage u;
        usage_of(g, &u);
        gw_resp_info ri = {g->id, g->model, g->resp_echo, g->cfg.created};
        if (g->cfg.api == GW_API_RESPONSES) gw_resp_body(g->ant, &ri, &u, b);
        else gw_ant_body(g->ant, g->id, g->model, &u, b);
        return;
    }
    if (g->cfg.ep == GW_EP_CHAT) chat_body(g, b);
    else completion_body(g, b);
}

int gw_gen_error(const gw_gen *g, pl_buf *out)
{
    pl_buf_append(out, g->err.data ? g->err.data : "", g->err.len);
    return g->err_code;
}

/* ================================================================ metrics */

static int fin_class(const char *f)
{
    if (!strcmp(f, "length")) return GW_FIN_LENGTH;
    if (!strcmp(f, "abort")) return GW_FIN_ABORT;
    if (!strcmp(f, "error")) return GW_FIN_ERROR;
    if (!strcmp(f, "repetition")) return GW_FIN_REPETITION;
    return GW_FIN_STOP;   /* stop, tool_calls */
}

void gw_gen_finish_metrics(gw_gen *g, double now, bool aborted)
{
    if (g->metrics_done || !g->cfg.metrics) return;
    g->metrics_done = true;
    gw_req_stats st = {.e2e = -1, .queue = -1, .prefill = -1, .decode = -1, .inference = -1};
    double end = g->t_end >= 0 ? g->t_end : now;
    st.e2e = end - g->t_arrival;
    const gw_sub *s = &g->subs[0];
    if (s->e_arrival > 0 && s->e_sched > 0) st.queue = s->e_sched - s->e_arrival;
    if (s->e_sched > 0 && s->e_first > 0) st.prefill = s->e_first - s->e_sched;
    if (s->e_first > 0 && s->e_finish > 0) st.decode = s->e_finish - s->e_first;
    else if (g->t_first >= 0) st.decode = end - g->t_first;
    if (s->e_sched > 0 && s->e_finish > 0) st.inference = s->e_finish - s->e_sched;
    st.prompt_tokens = total_prompt(g);
    st.completion_tokens = total_completion(g);
    st.n = g->cfg.n;
    st.max_tokens = g->cfg.max_tokens;
    for (int i = 0; i < g->nch; i++) {
        const char *f = g->ch[i].finish;
        st.n_finish[aborted || g->failed ? (g->failed && !aborted ? GW_FIN_ERROR : GW_FIN_ABORT)
                                          : fin_class(f[0] ? f : "abort")]++;
    }
    gw_metrics_done(g->cfg.metrics, &st);
}
