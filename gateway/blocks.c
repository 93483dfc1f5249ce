/* blocks.c — the output of one generation as an ordered list of blocks
 * (reasoning, text, tool calls), built from the chat-shaped `delta`
 * messages in the order they arrive. The Anthropic Messages API
 * (anthropic.c) and the Responses API (responses.c) render it: a full body
 * from the whole list, a stream from what each block gained since the last
 * flush, so a stream assembles to exactly the body (docs/protocol.md §9).
 *
 * Text that arrives while a tool call is the open block is held and becomes
 * a text block of its own when that call's block closes (vLLM's Anthropic
 * stream converter does the same); arguments go to the open call only. */
#include "gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int gw_blocks_new(gw_blocks **out)
{
    gw_blocks *a = calloc(1, sizeof *a);
    if (!a) return PL_ERR_NOMEM;
    pl_buf_init(&a->held);
    pl_buf_init(&a->stop_str);
    *out = a;
    return PL_OK;
}

void gw_blocks_free(gw_blocks *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        pl_buf_free(&a->b[i].body);
        pl_buf_free(&a->b[i].id);
        pl_buf_free(&a->b[i].name);
    }
    free(a->b);
    pl_buf_free(&a->held);
    pl_buf_free(&a->stop_str);
    free(a);
}

static gw_blk *last_block(gw_blocks *a) { return a->n ? &a->b[a->n - 1] : NULL; }

static gw_blk *push_block(gw_blocks *a, enum gw_blk_kind kind)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        gw_blk *nb = realloc(a->b, cap * sizeof *nb);
        if (!nb) return NULL;
        a->b = nb;
        a->cap = cap;
    }
    gw_blk *b = &a->b[a->n++];
    memset(b, 0, sizeof *b);
    b->kind = kind;
    pl_buf_init(&b->body);
    pl_buf_init(&b->id);
    pl_buf_init(&b->name);
    if (kind != GW_BLK_TOOL) {   /* a thinking block's signature, an output item's id */
        uint64_t r[2];
        if (getrandom(r, sizeof r, 0) != sizeof r) { r[0] = (uint64_t)time(NULL); r[1] = (uint64_t)(uintptr_t)b; }
        snprintf(b->sig, sizeof b->sig, "%016llx%016llx", (unsigned long long)r[0], (unsigned long long)r[1]);
    }
    return b;
}

/* Text held while a tool_use block was open becomes a text block. */
void gw_blocks_flush_held(gw_blocks *a)
{
    if (!a->held.len) return;
    gw_blk *b = push_block(a, GW_BLK_TEXT);
    if (b) pl_buf_append(&b->body, a->held.data, a->held.len);
    pl_buf_reset(&a->held);
}

/* Text or reasoning for a block of this kind: appended to the open one or
 * to a new one. */
static void add_text(gw_blocks *a, enum gw_blk_kind kind, const char *s, size_t n)
{
    if (!n) return;
    gw_blk *b = last_block(a);
    if (kind == GW_BLK_TEXT && b && b->kind == GW_BLK_TOOL) { pl_buf_append(&a->held, s, n); return; }
    if (!b || b->kind != kind) {
        gw_blocks_flush_held(a);
        if (!(b = push_block(a, kind))) return;
    }
    pl_buf_append(&b->body, s, n);
}

static void add_tool_delta(gw_blocks *a, const msgpack_object *d)
{
    int64_t index = 0;
    pl_msg_get_int(d, "index", &index);
    const msgpack_object *fn = pl_msg_get(d, "function");
    size_t idn = 0, nn = 0, an = 0;
    const char *id = gw_mp_str(pl_msg_get(d, "id"), &idn);
    const char *name = fn ? gw_mp_str(pl_msg_get(fn, "name"), &nn) : NULL;
    const char *args = fn ? gw_mp_str(pl_msg_get(fn, "arguments"), &an) : NULL;
    gw_blk *b = last_block(a);
    bool same = b && b->kind == GW_BLK_TOOL && b->call_index == index;
    if (id && name && !(same && b->id.len == idn && !memcmp(b->id.data, id, idn))) {
        gw_blocks_flush_held(a);
        if (!(b = push_block(a, GW_BLK_TOOL))) return;
        b->call_index = index;
        pl_buf_append(&b->id, id, idn);
        pl_buf_append(&b->name, name, nn);
        same = true;
    }
    /* arguments only for the open tool_use block (vLLM drops the rest) */
    if (same && args) pl_buf_append(&b->body, args, an);
}

void gw_blocks_delta(gw_blocks *a, const msgpack_object *msg)
{
    size_t n;
    const char *s = gw_mp_str(pl_msg_get(msg, "reasoning"), &n);
    if (s) add_text(a, GW_BLK_THINKING, s, n);
    const msgpack_object_array *ids = NULL;
    if (s && n && pl_msg_get_array(msg, "token_ids", &ids) == PL_OK) a->reasoning_tokens += ids->size;
    if ((s = gw_mp_str(pl_msg_get(msg, "text"), &n))) add_text(a, GW_BLK_TEXT, s, n);
    const msgpack_object_array *tc = NULL;
    if (pl_msg_get_array(msg, "tool_calls", &tc) == PL_OK)
        for (uint32_t i = 0; i < tc->size; i++)
            if (tc->ptr[i].type == MSGPACK_OBJECT_MAP) add_tool_delta(a, &tc->ptr[i]);
    if ((s = gw_mp_str(pl_msg_get(msg, "finish_reason"), &n)) && !a->finish[0]) {
        snprintf(a->finish, sizeof a->finish, "%.*s", (int)(n < sizeof a->finish ? n : sizeof a->finish - 1), s);
        const msgpack_object *sr = pl_msg_get(msg, "stop_reason");
        size_t sl;
        const char *ss = gw_mp_str(sr, &sl);
        if (ss) { pl_buf_append(&a->stop_str, ss, sl); a->has_stop_str = true; }
    }
}

