/* glm-parse-reasoning — splits each choice's text deltas into content
 * (`text`) and `reasoning` (docs/protocol.md, parser glm45, vLLM Era C).
 *
 *   glm-parse-reasoning [--reasoning-parser glm45] [--in EP] [--out EP]
 *
 * Options come from the `start` message's context (reasoning.h). Deltas of
 * a request with thinking off are forwarded unchanged. */
#include <stdlib.h>

#include "chstage.h"
#include "reasoning.h"

typedef struct rreq { rsn_opts o; } rreq;

/* Scratch for one outgoing delta; the stage is single-threaded. */
static pl_buf g_content, g_reasoning;

/* Empty the scratch for the next delta. After a failed allocation start
 * afresh: pl_buf's oom flag is sticky and would fail every later request. */
static void scratch_reset(void)
{
    if (!pl_buf_ok(&g_content) || !pl_buf_ok(&g_reasoning)) {
        pl_buf_free(&g_content);
        pl_buf_free(&g_reasoning);
    }
    pl_buf_reset(&g_content);
    pl_buf_reset(&g_reasoning);
}

static int req_new(void **out, const msgpack_object *ctx, char *err, size_t errlen)
{
    rreq *r = calloc(1, sizeof *r);
    if (!r) return PL_ERR_NOMEM;
    int rc = rsn_opts_from_context(&r->o, ctx, err, errlen);
    if (rc) { free(r); return rc; }
    *out = r;
    return PL_OK;
}

static void req_free(void *r) { free(r); }

static int choice_new(void *req, void **ch)
{
    rreq *r = req;
    *ch = NULL;
    if (!r->o.thinking) return PL_OK;   /* pass-through: no parser */
    return rsn_parser_new((rsn_parser **)ch, &r->o);
}

static void choice_free(void *ch) { rsn_parser_free(ch); }

/* Pack the text/reasoning fields that follow a map header. */
static void pack_split(msgpack_packer *pk)
{
    pl_msg_pack_kv_str(pk, "text", g_content.data ? g_content.data : "", g_content.len);
    if (g_reasoning.len) pl_msg_pack_kv_str(pk, "reasoning", g_reasoning.data, g_reasoning.len);
}

static int on_input(pl_stage *st, void *req, void *ch, const msgpack_object *msg, bool final, char *err, size_t errlen)
{
    const char *text;
    size_t len;
    int rc = pl_chstage_delta_text(msg, &text, &len, err, errlen);
    if (rc) return rc;
    if (!ch) return pl_stage_forward(st, msg), PL_OK;
    scratch_reset();
    rc = rsn_parser_feed(ch, text, len, &g_content, &g_reasoning);
    if (!rc && final) rc = rsn_parser_finish(ch, &g_content, &g_reasoning);
    if (rc) return rc;
    static const char *const skip[] = {"text", "reasoning"};
    msgpack_packer *pk = pl_stage_begin(st);
    pl_msg_pack_map_except(pk, msg, skip, 2, 1 + (g_reasoning.len > 0));
    pack_split(pk);
    pl_stage_end(st);
    return PL_OK;
}

/* The request ended without finish_reason for this choice: emit what the
 * parser still holds as one more delta. */
static void on_flush(pl_stage *st, void *req, void *ch, const char *id, size_t idlen, uint32_t index)
{
    if (!ch) return;
    scratch_reset();
    if (rsn_parser_finish(ch, &g_content, &g_reasoning)) {
        pl_stage_send_error(st, id, idlen, 500, "InternalServerError", "out of memory");
        return;
    }
    if (!g_content.len && !g_reasoning.len) return;
    pack_split(pl_chstage_begin_delta(st, id, idlen, index, 1 + (g_reasoning.len > 0)));
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
    static const char *const parsers[] = {"glm45", NULL};
    int rc = pl_chstage_main(argc, argv, "glm-parse-reasoning", "--reasoning-parser", parsers, &ops);
    pl_buf_free(&g_content);
    pl_buf_free(&g_reasoning);
    return rc;
}
