/* glm-parse-tools — turns glm47 tool-call markup in each choice's content
 * (`text`) into OpenAI streaming `tool_calls` deltas (docs/protocol.md).
 *
 *   glm-parse-tools [--tool-call-parser glm47] [--in EP] [--out EP]
 *
 * Per request, from the start message's context: `tools` and `tool_choice`
 * ("auto"; "required" or {type:"function", function:{name}}: parsed the same
 * way, and the final delta gets `tool_choice_unmet` when the choice was not
 * honoured; "none", or no tools: no calls, but the call markup is still
 * removed from the content, as vLLM does) and `parallel_tool_calls` (false:
 * only the first call is reported). Requests whose context has an
 * `endpoint` other than "chat" pass through. On the final delta
 * finish_reason "stop" becomes "tool_calls" when calls were made (a named
 * choice keeps "stop", as OpenAI does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chstage.h"
#include "tools.h"

/* ===== per request / choice ===== */

enum tchoice { TC_NONE, TC_AUTO, TC_REQUIRED, TC_NAMED };

typedef struct treq {
    bool         pass;       /* not a chat request: forwarded unchanged */
    enum tchoice choice;
    bool         parallel;   /* parallel_tool_calls: false reports only call 0 */
    tcl_tools   *tools;      /* NULL: no calls (markup is still removed) */
    char        *named;      /* TC_NAMED: the function's name */
    size_t       named_len;
} treq;

typedef struct tch {
    tcl_parser *p;
    bool        named_called;
} tch;

static tcl_delta g_out;   /* scratch for one outgoing delta (single-threaded stage) */

static void req_free(void *v)
{
    treq *r = v;
    if (!r) return;
    tcl_tools_free(r->tools);
    free(r->named);
    free(r);
}

static int parse_choice(treq *r, const msgpack_object *tc, char *err, size_t errlen)
{
    if (!tc || tc->type == MSGPACK_OBJECT_NIL) { r->choice = r->tools ? TC_AUTO : TC_NONE; return PL_OK; }
    if (pl_msg_str_eq(tc, "none")) r->choice = TC_NONE;
    else if (pl_msg_str_eq(tc, "auto")) r->choice = TC_AUTO;
    else if (pl_msg_str_eq(tc, "required")) r->choice = TC_REQUIRED;
    else if (tc->type == MSGPACK_OBJECT_MAP) {
        const msgpack_object *fn;
        const char *name;
        size_t len;
        if (pl_msg_get_map(tc, "function", &fn) || pl_msg_get_str(fn, "name", &name, &len))
            return pl_seterr(err, errlen, PL_ERR_INVALID, "context.tool_choice: a named choice needs function.name");
        if (!(r->named = malloc(len + 1))) return PL_ERR_NOMEM;
        memcpy(r->named, name, len);
        r->named[len] = 0;
        r->named_len = len;
        r->choice = TC_NAMED;
    } else {
        return pl_seterr(err, errlen, PL_ERR_INVALID,
                         "context.tool_choice must be \"none\", \"auto\", \"required\" or a named function");
    }
    return PL_OK;
}

static int req_new(void **out, const msgpack_object *ctx, char *err, size_t errlen)
{
    treq *r = calloc(1, sizeof *r);
    if (!r) return PL_ERR_NOMEM;
    r->parallel = true;
    const msgpack_object *tools = pl_msg_get(ctx, "tools"), *ep = pl_msg_get(ctx, "endpoint");
    int rc = PL_OK;
    if (ctx && ctx->type != MSGPACK_OBJECT_MAP) rc = pl_seterr(err, errlen, PL_ERR_INVALID, "context must be a map");
    else if (tools && tools->type != MSGPACK_OBJECT_NIL) rc = tcl_tools_from_msgpack(&r->tools, tools, err, errlen);
    if (!rc) rc = parse_choice(r, pl_msg_get(ctx, "tool_choice"), err, errlen);
    if (!rc && pl_msg_get_bool(ctx, "parallel_tool_calls", &r->parallel) == PL_ERR_INVALID)
        rc = pl_seterr(err, errlen, PL_ERR_INVALID, "context.parallel_tool_calls must be a boolean");
    if (rc) { req_free(r); return rc; }
    r->pass = ep && ep->type != MSGPACK_OBJECT_NIL && !pl_msg_str_eq(ep, "chat");
    if (r->choice == TC_NONE || !tcl_tools_count(r->tools)) r->choice = TC_NONE;   /* nothing to call */
    *out = r;
    return PL_OK;
}

static int choice_new(void *req, void **out)
{
    treq *r = req;
    *out = NULL;
    if (r->pass) return PL_OK;
    tch *c = calloc(1, sizeof *c);
    if (!c) return PL_ERR_NOMEM;
    enum tcl_mode mode = r->choice != TC_NONE ? TCL_MODE_CALLS : tcl_tools_count(r->tools) ? TCL_MODE_SUPPRESS
                                                                                      : TCL_MODE_NO_TOOLS;
    int rc = tcl_parser_new(&c->p, r->tools, mode);
    if (rc) { free(c); return rc; }
    *out = c;
    return PL_OK;
}

static void choice_free(void *v)
{
    tch *c = v;
    if (!c) return;
    tcl_parser_free(c->p);
    free(c);
}

/* ===== output ===== */

/* An entry of this delta goes out: it carries something, and it is the
 * first call or parallel calls are allowed. */
static bool sends(const treq *r, const tcl_call_delta *c)
{
    return (c->first || c->args.len) && (r->parallel || c->index == 0);
}

static size_t calls_to_send(const treq *r)
{
    size_t k = 0;
    for (size_t i = 0; i < g_out.ncalls; i++) k += sends(r, &g_out.calls[i]);
    return k;
}

static void pack_calls(msgpack_packer *pk, const treq *r)
{
    pl_msg_pack_cstr(pk, "tool_calls");
    msgpack_pack_array(pk, (uint32_t)calls_to_send(r));
    for (size_t i = 0; i < g_out.ncalls; i++) {
        const tcl_call_delta *c = &g_out.calls[i];
        if (!sends(r, c)) continue;
        msgpack_pack_map(pk, c->first ? 4 : 2);
        pl_msg_pack_kv_int(pk, "index", c->index);
        if (c->first) {
            pl_msg_pack_kv_cstr(pk, "id", c->id);
            pl_msg_pack_kv_cstr(pk, "type", "function");
        }
        pl_msg_pack_cstr(pk, "function");
        msgpack_pack_map(pk, c->first ? 2 : 1);
        if (c->first) pl_msg_pack_kv_str(pk, "name", c->name.data ? c->name.data : "", c->name.len);
        pl_msg_pack_kv_str(pk, "arguments", c->args.data ? c->args.data : "", c->args.len);
    }
}

/* Note calls to the named function (tool_choice bookkeeping). */
static void track_named(const treq *r, tch *c)
{
    for (size_t i = 0; r->choice == TC_NAMED && i < g_out.ncalls; i++) {
        const tcl_call_delta *d = &g_out.calls[i];
        if (d->first && d->name.len == r->named_len && !memcmp(d->name.data, r->named, r->named_len))
            c->named_called = true;
    }
}

/* Why tool_choice was not honoured, or NULL. */
static const char *unmet(const treq *r, const tch *c, char *buf, size_t n)
{
    if (r->choice == TC_REQUIRED && !tcl_parser_calls(c->p)) return "tool_choice is required but the model made no tool call";
    if (r->choice == TC_NAMED && !c->named_called) {
        snprintf(buf, n, "tool_choice names function '%.200s' but the model %s", r->named,
                 tcl_parser_calls(c->p) ? "called other functions" : "made no tool call");
        return buf;
    }
    return NULL;
}

static int on_input(pl_stage *st, void *req, void *ch, const msgpack_object *msg, bool final, char *err, size_t errlen)
{
    treq *r = req;
    tch *c = ch;
    const char *text;
    size_t len;
    int rc = pl_chstage_delta_text(msg, &text, &len, err, errlen);
    if (rc) return rc;
    if (!c) return pl_stage_forward(st, msg), PL_OK;
    tcl_delta_reset(&g_out);
    tcl_parser_feed(c->p, text, len, &g_out);
    if (final) tcl_parser_finish(c->p, &g_out);
    if (!tcl_delta_ok(&g_out)) return PL_ERR_NOMEM;
    track_named(r, c);

    const msgpack_object *fr = pl_msg_get(msg, "finish_reason");
    char why[320];
    const char *unmet_text = final ? unmet(r, c, why, sizeof why) : NULL;
    bool has_calls = calls_to_send(r) > 0;
    static const char *const skip[] = {"text", "tool_calls", "finish_reason", "tool_choice_unmet"};
    msgpack_packer *pk = pl_stage_begin(st);
    pl_msg_pack_map_except(pk, msg, skip, 4, 1 + has_calls + final + (unmet_text != NULL));
    pl_msg_pack_kv_str(pk, "text", g_out.content.data ? g_out.content.data : "", g_out.content.len);
    if (has_calls) pack_calls(pk, r);
    if (final) {
        if (tcl_parser_calls(c->p) && r->choice != TC_NAMED && pl_msg_str_eq(fr, "stop"))
            pl_msg_pack_kv_cstr(pk, "finish_reason", "tool_calls");
        else
            pl_msg_pack_kv_obj(pk, "finish_reason", fr);
    }
    if (unmet_text) pl_msg_pack_kv_cstr(pk, "tool_choice_unmet", unmet_text);
    pl_stage_end(st);
    return PL_OK;
}

/* The request ended without finish_reason for this choice: emit what is held. */
static void on_flush(pl_stage *st, void *req, void *ch, const char *id, size_t idlen, uint32_t index)
{
    const treq *r = req;
    tch *c = ch;
    if (!c) return;
    tcl_delta_reset(&g_out);
    tcl_parser_finish(c->p, &g_out);
    if (!tcl_delta_ok(&g_out)) {   /* a partial delta would break the arguments' concatenation */
        pl_stage_send_error(st, id, idlen, 500, "InternalServerError", "out of memory");
        return;
    }
    bool has_calls = calls_to_send(r) > 0;
    if (!g_out.content.len && !has_calls) return;
    msgpack_packer *pk = pl_chstage_begin_delta(st, id, idlen, index, 1 + has_calls);
    pl_msg_pack_kv_str(pk, "text", g_out.content.data ? g_out.content.data : "", g_out.content.len);
    if (has_calls) pack_calls(pk, r);
    pl_stage_end(st);
}

int main(int argc, char **argv)
{
    static const pl_chstage_ops ops = {
        .input_type = "delta",
        .req_new = req_new, .req_free = req_free,
        .choice_new = choice_new, .choice_free = choice_free,
        .on_input = on_input, .on_flush = on_flush,
    };
    /* vLLM 0.33 maps both names to one class (Glm47MoeModelToolParser):
     * GLM-4.5/4.6 deployments pass glm45. */
    static const char *const parsers[] = {"glm47", "glm45", NULL};
    tcl_delta_init(&g_out);
    int rc = pl_chstage_main(argc, argv, "glm-parse-tools", "--tool-call-parser", parsers, &ops);
    tcl_delta_free(&g_out);
    return rc;
}
