/* reasoning.c — glm45 reasoning/content split as an incremental state machine. */
#include "reasoning.h"

#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "pystr.h"
#include "taglex.h"

/* ===== tags and states ===== */

enum { T_THINK, T_THINK_END, T_TOOL, T_TOOL_END };
static const char *const k_tags[] = {"<think>", "</think>", "<tool_call>", "</tool_call>"};

enum rsn_state { RSN_REASONING, RSN_CONTENT, RSN_TOOL };

/* Tags that mean something in each state; others are plain text there. */
static uint32_t state_mask(enum rsn_state s)
{
    if (s == RSN_TOOL) return 1u << T_TOOL_END;
    return 1u << T_THINK | 1u << T_THINK_END | 1u << T_TOOL;
}

struct rsn_parser {
    rsn_opts       o;
    enum rsn_state state;
    pl_taglex      lx;
    pl_wshold      rws;       /* trailing whitespace of reasoning, held */
    pl_buf         discard;   /* reasoning when include_reasoning is off */
};

/* ===== options ===== */

/* Python bool(x) for a msgpack value. */
static bool truthy(const msgpack_object *v)
{
    switch (v->type) {
    case MSGPACK_OBJECT_NIL: return false;
    case MSGPACK_OBJECT_BOOLEAN: return v->via.boolean;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return v->via.u64 != 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return v->via.f64 != 0;
    case MSGPACK_OBJECT_STR: return v->via.str.size != 0;
    case MSGPACK_OBJECT_BIN: return v->via.bin.size != 0;
    case MSGPACK_OBJECT_ARRAY: return v->via.array.size != 0;
    case MSGPACK_OBJECT_MAP: return v->via.map.size != 0;
    default: return true;
    }
}

static int get_opt_bool(const msgpack_object *ctx, const char *key, bool *v, char *err, size_t errlen)
{
    int rc = pl_msg_get_bool(ctx, key, v);
    if (rc == PL_ERR_INVALID)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "context.%s must be a boolean", key);
    return rc;   /* PL_OK or PL_ERR_NOTFOUND */
}

int rsn_opts_from_context(rsn_opts *o, const msgpack_object *ctx, char *err, size_t errlen)
{
    o->thinking = true;
    o->include_reasoning = true;
    if (!ctx) return PL_OK;
    if (ctx->type != MSGPACK_OBJECT_MAP)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "context must be a map");
    const msgpack_object *ep = pl_msg_get(ctx, "endpoint");
    if (ep && ep->type != MSGPACK_OBJECT_NIL && !pl_msg_str_eq(ep, "chat")) {
        o->thinking = false;   /* /v1/completions: vLLM runs no parser */
        return PL_OK;
    }
    int rc = get_opt_bool(ctx, "thinking", &o->thinking, err, errlen);
    if (rc == PL_ERR_INVALID) return rc;
    if (rc == PL_ERR_NOTFOUND) {
        /* vLLM: both keys absent (or None) -> on, else bool(thinking) or bool(enable_thinking) */
        const msgpack_object *kw;
        int krc = pl_msg_get_map(ctx, "chat_template_kwargs", &kw);
        if (krc == PL_ERR_INVALID)
            return pl_seterr(err, errlen, PL_ERR_INVALID, "context.chat_template_kwargs must be a map");
        if (krc == PL_OK) {
            const msgpack_object *t = pl_msg_get(kw, "thinking"), *e = pl_msg_get(kw, "enable_thinking");
            bool t_set = t && t->type != MSGPACK_OBJECT_NIL, e_set = e && e->type != MSGPACK_OBJECT_NIL;
            if (t_set || e_set) o->thinking = (t_set && truthy(t)) || (e_set && truthy(e));
        }
    }
    bool ends_in_think = false;
    if (get_opt_bool(ctx, "prompt_ends_in_think", &ends_in_think, err, errlen) == PL_ERR_INVALID) return PL_ERR_INVALID;
    if (ends_in_think) o->thinking = true;   /* the model is inside a think block, whatever the flag says */
    if (get_opt_bool(ctx, "include_reasoning", &o->include_reasoning, err, errlen) == PL_ERR_INVALID)
        return PL_ERR_INVALID;
    return PL_OK;
}

/* ===== parser ===== */

int rsn_parser_new(rsn_parser **out, const rsn_opts *o)
{
    rsn_parser *p = calloc(1, sizeof *p);
    if (!p) return PL_ERR_NOMEM;
    p->o = *o;
    p->state = o->thinking ? RSN_REASONING : RSN_CONTENT;
    pl_taglex_init(&p->lx, k_tags, PL_ARRAY_LEN(k_tags));
    pl_wshold_init(&p->rws);
    pl_buf_init(&p->discard);
    *out = p;
    return PL_OK;
}

void rsn_parser_free(rsn_parser *p)
{
    if (!p) return;
    pl_taglex_free(&p->lx);
    pl_wshold_free(&p->rws);
    pl_buf_free(&p->discard);
    free(p);
}

static void on_tag(rsn_parser *p, int tag, pl_buf *content, pl_buf *rsn)
{
    switch (p->state) {
    case RSN_REASONING:
        if (tag == T_THINK) return;                 /* extra <think>: swallowed */
        pl_wshold_drop(&p->rws, rsn);               /* reasoning ends: rstrip */
        if (tag == T_TOOL) {                        /* a call inside thinking ends it */
            pl_buf_puts(content, k_tags[T_TOOL]);
            p->state = RSN_TOOL;
        } else {
            p->state = RSN_CONTENT;
        }
        return;
    case RSN_CONTENT:
        if (tag == T_THINK) p->state = RSN_REASONING;
        else if (tag == T_TOOL) { pl_buf_puts(content, k_tags[T_TOOL]); p->state = RSN_TOOL; }
        /* stray </think> in content: dropped */
        return;
    case RSN_TOOL:
        pl_buf_puts(content, k_tags[T_TOOL_END]);
        p->state = RSN_CONTENT;
        return;
    }
}

static int run(rsn_parser *p, int final, pl_buf *content, pl_buf *reasoning)
{
    pl_buf *rsn = p->o.include_reasoning ? reasoning : &p->discard;
    int ev, tag;
    const char *s;
    size_t n;
    while ((ev = pl_taglex_next(&p->lx, state_mask(p->state), final, &tag, &s, &n)) != PL_TAGLEX_NONE) {
        if (ev == PL_TAGLEX_TAG) on_tag(p, tag, content, rsn);
        else if (p->state == RSN_REASONING) pl_wshold_push(&p->rws, s, n, rsn);
        else pl_buf_append(content, s, n);
    }
    if (final) pl_wshold_drop(&p->rws, rsn);
    bool ok = pl_buf_ok(content) && pl_buf_ok(rsn) && pl_buf_ok(&p->lx.pend) && pl_buf_ok(&p->rws.ws);
    pl_buf_reset(&p->discard);
    return ok ? PL_OK : PL_ERR_NOMEM;
}

int rsn_parser_feed(rsn_parser *p, const char *text, size_t len, pl_buf *content, pl_buf *reasoning)
{
    if (!p->o.thinking) {               /* no reasoning parsing at all */
        pl_buf_append(content, text, len);
        return pl_buf_ok(content) ? PL_OK : PL_ERR_NOMEM;
    }
    pl_taglex_push(&p->lx, text, len);
    return run(p, 0, content, reasoning);
}

int rsn_parser_finish(rsn_parser *p, pl_buf *content, pl_buf *reasoning)
{
    return p->o.thinking ? run(p, 1, content, reasoning) : PL_OK;
}
