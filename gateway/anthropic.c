/* anthropic.c — the Anthropic Messages API (POST /v1/messages,
 * /v1/messages/count_tokens) on top of the chat pipeline.
 *
 * As vLLM 0.33 serves it (entrypoints/anthropic/serving.py): the request is
 * converted to the chat completions body glm-tokenize already takes (so
 * the same chat template, reasoning parser and tool parser run), and the
 * generation's block list (blocks.c: reasoning, text, tool calls in the
 * order they came) is rendered back as Anthropic content blocks — a full
 * message, or the stream's message_start / content_block_* / message_delta
 * / message_stop events (docs/protocol.md §9). */
#include "gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "json.h"
#include "pyjson.h"

/* ================================================================ errors */

const char *gw_ant_error_type(int code)
{
    switch (code) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default: return code >= 500 ? "api_error" : "invalid_request_error";
    }
}

void gw_ant_error_json(pl_buf *b, int code, const char *msg, size_t len)
{
    pl_buf_puts(b, "{\"type\":\"error\",\"error\":{\"type\":\"");
    pl_buf_puts(b, gw_ant_error_type(code));
    pl_buf_puts(b, "\",\"message\":");
    gw_jw_str(b, msg, len);
    pl_buf_puts(b, "}}");
}

/* ================================================================ request: Anthropic -> chat */

/* A string field that may be absent or null; anything else is refused. */
static int opt_str(const cJSON *o, const char *key, const char *where, const char **out, char *err, size_t errlen)
{
    const cJSON *v = gw_conv_get(o, key);
    *out = NULL;
    if (!v) return 0;
    if (!cJSON_IsString(v)) return gw_conv_bad(err, errlen, "%s.%s must be a string", where, key);
    *out = v->valuestring;
    return 0;
}

static const char billing_prefix[] = "x-anthropic-billing-header";
static bool is_billing(const char *s) { return !strncmp(s, billing_prefix, sizeof billing_prefix - 1); }

static const char *const block_types[] = {"text", "image", "tool_use", "tool_result", "tool_reference", "thinking",
                                          "redacted_thinking", "tool_addition", "tool_removal"};

static int check_tool(const cJSON *t, const char *where, char *err, size_t errlen);

/* A content block as pydantic's AnthropicContentBlock takes it; tool
 * changes (tool_addition / tool_removal) only in system messages. */
static int check_block(const cJSON *b, const char *where, bool in_system, char *err, size_t errlen)
{
    if (!cJSON_IsObject(b)) return gw_conv_bad(err, errlen, "%s: a content block must be an object", where);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "type");
    bool known = false;
    for (size_t i = 0; cJSON_IsString(t) && i < PL_ARRAY_LEN(block_types); i++) known |= !strcmp(t->valuestring, block_types[i]);
    if (!known) return gw_conv_bad(err, errlen, "%s: unknown content block type (expected one of text, image, tool_use, "
                           "tool_result, tool_reference, thinking, redacted_thinking)", where);
    if (gw_conv_str_is(t, "tool_addition") || gw_conv_str_is(t, "tool_removal")) {
        if (!in_system)
            return gw_conv_bad(err, errlen, "%s: %s blocks are only allowed in messages with role \"system\"", where, t->valuestring);
        const cJSON *tool = gw_conv_get(b, "tool"), *tt = gw_conv_get(tool, "type");
        if (!tool) return gw_conv_bad(err, errlen, "%s: tool is required for %s blocks", where, t->valuestring);
        if (gw_conv_str_is(tt, "tool_reference")) {
            if (!cJSON_IsString(gw_conv_get(tool, "name"))) return gw_conv_bad(err, errlen, "%s.tool.name: a string is required", where);
        } else if (gw_conv_str_is(tt, "tool_definition") && gw_conv_str_is(t, "tool_addition")) {
            char w[96];
            snprintf(w, sizeof w, "%s.tool.definition", where);
            if (check_tool(gw_conv_get(tool, "definition"), w, err, errlen)) return PL_ERR_INVALID;
        } else {
            return gw_conv_bad(err, errlen, "%s: %s", where, gw_conv_str_is(t, "tool_removal") ? "tool_removal only accepts a tool_reference"
                               : "tool must be a tool_reference or a tool_definition");
        }
    }
    static const char *const strs[] = {"text", "id", "tool_use_id", "name", "tool_name", "thinking", "signature", "data"};
    const char *s;
    for (size_t i = 0; i < PL_ARRAY_LEN(strs); i++)
        if (opt_str(b, strs[i], where, &s, err, errlen)) return PL_ERR_INVALID;
    const cJSON *in = gw_conv_get(b, "input"), *src = gw_conv_get(b, "source"), *c = gw_conv_get(b, "content"), *ie = gw_conv_get(b, "is_error");
    if (in && !cJSON_IsObject(in)) return gw_conv_bad(err, errlen, "%s.input must be an object", where);
    if (src && !cJSON_IsObject(src)) return gw_conv_bad(err, errlen, "%s.source must be an object", where);
    if (ie && !cJSON_IsBool(ie)) return gw_conv_bad(err, errlen, "%s.is_error must be a boolean", where);
    if (c && !cJSON_IsString(c) && !cJSON_IsArray(c)) return gw_conv_bad(err, errlen, "%s.content must be a string or a list", where);
    for (const cJSON *i = cJSON_IsArray(c) ? c->child : NULL; i; i = i->next)
        if (!cJSON_IsObject(i)) return gw_conv_bad(err, errlen, "%s.content: items must be objects", where);
    return 0;
}

static cJSON *text_part(const char *text)
{
    cJSON *p = cJSON_CreateObject();
    gw_conv_add_str(p, "type", "text");
    gw_conv_add_str(p, "text", text);
    return p;
}

/* An image source as the data: or https: URL vLLM makes of it. */
static cJSON *image_part(const cJSON *source)
{
    pl_buf u;
    pl_buf_init(&u);
    const cJSON *t = gw_conv_get(source, "type");
    if (gw_conv_str_is(t, "url")) {
        const cJSON *url = gw_conv_get(source, "url");
        pl_buf_puts(&u, cJSON_IsString(url) ? url->valuestring : "");
    } else {
        const cJSON *mt = gw_conv_get(source, "media_type"), *data = gw_conv_get(source, "data");
        pl_buf_printf(&u, "data:%s;base64,%s", cJSON_IsString(mt) ? mt->valuestring : "image/jpeg",
                      cJSON_IsString(data) ? data->valuestring : "");
    }
    cJSON *p = cJSON_CreateObject();
    gw_conv_add_str(p, "type", "image_url");
    cJSON *iu = cJSON_AddObjectToObject(p, "image_url");
    gw_conv_add_str(iu, "url", u.data ? u.data : "");
    pl_buf_free(&u);
    return p;
}

/* The text of a system message or the system field's blocks: non-empty
 * text blocks without Claude Code's billing header, joined with "". NULL
 * when nothing is left. */
static char *system_text(const cJSON *content, bool strip_string)
{
    if (cJSON_IsString(content)) {
        if (strip_string && is_billing(content->valuestring)) return NULL;
        return content->valuestring[0] || !strip_string ? strdup(content->valuestring) : NULL;
    }
    pl_buf b;
    pl_buf_init(&b);
    bool any = false;
    for (const cJSON *bl = cJSON_IsArray(content) ? content->child : NULL; bl; bl = bl->next) {
        const cJSON *t = gw_conv_get(bl, "text");
        if (!gw_conv_str_is(gw_conv_get(bl, "type"), "text") || !cJSON_IsString(t) || !t->valuestring[0] || is_billing(t->valuestring)) continue;
        pl_buf_puts(&b, t->valuestring);
        any = true;
    }
    char *s = any ? strndup(b.data ? b.data : "", b.len) : NULL;
    pl_buf_free(&b);
    return s;
}

/* A user turn's tool_result block becomes a tool message (appended before
 * the user message itself), images in it a user message after that. */
static void user_tool_result(const cJSON *block, cJSON *msgs)
{
    const cJSON *c = gw_conv_get(block, "content"), *id = gw_conv_get(block, "tool_use_id");
    pl_buf text;
    pl_buf_init(&text);
    cJSON *images = cJSON_CreateArray(), *refs = cJSON_CreateArray();
    if (cJSON_IsString(c)) pl_buf_puts(&text, c->valuestring);
    int k = 0;
    for (const cJSON *it = cJSON_IsArray(c) ? c->child : NULL; it; it = it->next) {
        const cJSON *t = gw_conv_get(it, "type");
        if (gw_conv_str_is(t, "text")) {
            const cJSON *tx = gw_conv_get(it, "text");
            if (k++) pl_buf_putc(&text, '\n');
            if (cJSON_IsString(tx)) pl_buf_puts(&text, tx->valuestring);
        } else if (gw_conv_str_is(t, "image")) {
            const cJSON *src = gw_conv_get(it, "source");
            static const cJSON empty = {0};
            cJSON_AddItemToArray(images, image_part(cJSON_IsObject(src) ? src : &empty));
        } else if (gw_conv_str_is(t, "tool_reference")) {
            const cJSON *n = gw_conv_get(it, "tool_name");
            if (!cJSON_IsString(n) || !n->valuestring[0]) n = gw_conv_get(it, "name");
            if (cJSON_IsString(n) && n->valuestring[0]) {
                cJSON *r = cJSON_CreateObject();
                gw_conv_add_str(r, "type", "tool_reference");
                gw_conv_add_str(r, "name", n->valuestring);
                cJSON_AddItemToArray(refs, r);
            }
        }
    }
    const char *tid = cJSON_IsString(id) ? id->valuestring : "";
    cJSON *m = cJSON_CreateObject();
    gw_conv_add_str(m, "role", "tool");
    gw_conv_add_str(m, "tool_call_id", tid);
    cJSON_AddItemToObject(m, "content", pl_json_string_new(text.data ? text.data : "", text.len));
    cJSON_AddItemToArray(msgs, m);
    if (images->child) {
        cJSON *u = cJSON_CreateObject();
        gw_conv_add_str(u, "role", "user");
        cJSON_AddItemToObject(u, "content", images);
        cJSON_AddItemToArray(msgs, u);
    } else {
        cJSON_Delete(images);
    }
    if (refs->child) {
        cJSON *r = cJSON_CreateObject();
        gw_conv_add_str(r, "role", "tool");
        gw_conv_add_str(r, "tool_call_id", tid);
        cJSON_AddItemToObject(r, "content", refs);
        cJSON_AddItemToArray(msgs, r);
    } else {
        cJSON_Delete(refs);
    }
    pl_buf_free(&text);
}

/* One user/assistant message with a block list (vLLM's
 * _convert_message_content): text and image parts, thinking -> reasoning,
 * tool_use -> tool_calls (arguments = json.dumps(input)), tool_result ->
 * tool messages (user) or "Tool result: ..." text (assistant). */
static int convert_blocks(const cJSON *content, const char *role, cJSON *msgs, char *err, size_t errlen)
{
    cJSON *parts = cJSON_CreateArray(), *calls = cJSON_CreateArray();
    pl_buf reasoning;
    pl_buf_init(&reasoning);
    bool has_reasoning = false, user = !strcmp(role, "user");
    for (const cJSON *b = content->child; b; b = b->next) {
        const char *t = gw_conv_get(b, "type")->valuestring;
        const cJSON *v;
        if (!strcmp(t, "text")) {
            v = gw_conv_get(b, "text");
            if (v && v->valuestring[0]) cJSON_AddItemToArray(parts, text_part(v->valuestring));
        } else if (!strcmp(t, "image")) {
            if ((v = gw_conv_get(b, "source")) && v->child) cJSON_AddItemToArray(parts, image_part(v));
        } else if (!strcmp(t, "thinking")) {
            if ((v = gw_conv_get(b, "thinking"))) { pl_buf_puts(&reasoning, v->valuestring); has_reasoning = true; }
        } else if (!strcmp(t, "tool_use")) {
            const cJSON *id = gw_conv_get(b, "id"), *name = gw_conv_get(b, "name"), *in = gw_conv_get(b, "input");
            cJSON *call = cJSON_CreateObject();
            if (id && id->valuestring[0]) gw_conv_add_str(call, "id", id->valuestring);
            else {
                char buf[40];
                snprintf(buf, sizeof buf, "call_%lld", (long long)time(NULL));
                gw_conv_add_str(call, "id", buf);
            }
            gw_conv_add_str(call, "type", "function");
            cJSON *fn = cJSON_AddObjectToObject(call, "function");
            gw_conv_add_str(fn, "name", name ? name->valuestring : "");
            pl_buf args;
            pl_buf_init(&args);
            /* json.dumps(input or {}): Python's default separators, ASCII */
            pl_pyjson_opts o = PL_PYJSON_DEFAULT;
            o.ensure_ascii = 1;
            if (in && in->child) pl_pyjson_dump(&args, in, &o);
            else pl_buf_puts(&args, "{}");
            cJSON_AddItemToObject(fn, "arguments", pl_json_string_new(args.data ? args.data : "", args.len));
            pl_buf_free(&args);
            cJSON_AddItemToArray(calls, call);
        } else if (!strcmp(t, "tool_result")) {
            if (user) {
                user_tool_result(b, msgs);
            } else {
                /* str(block.content) if block.content else "": Python's str
                 * of a list is its repr, which only a string has here */
                v = gw_conv_get(b, "content");
                if (cJSON_IsArray(v) && v->child) {
                    cJSON_Delete(parts);
                    cJSON_Delete(calls);
                    pl_buf_free(&reasoning);
                    return gw_conv_bad(err, errlen, "tool_result blocks with list content in an assistant turn are not supported");
                }
                pl_buf tr;
                pl_buf_init(&tr);
                pl_buf_puts(&tr, "Tool result: ");
                if (cJSON_IsString(v)) pl_buf_puts(&tr, v->valuestring);
                cJSON_AddItemToArray(parts, text_part(tr.data));
                pl_buf_free(&tr);
            }
        }
        /* redacted_thinking, tool_reference: nothing (vLLM accepts and skips them) */
    }
    cJSON *m = cJSON_CreateObject();
    gw_conv_add_str(m, "role", role);
    bool has_content = false;
    if (has_reasoning) cJSON_AddItemToObject(m, "reasoning", pl_json_string_new(reasoning.data ? reasoning.data : "", reasoning.len));
    if (calls->child) cJSON_AddItemToObject(m, "tool_calls", calls);
    else cJSON_Delete(calls);
    if (parts->child) {
        has_content = true;
        const cJSON *only = parts->child;
        if (!only->next && gw_conv_str_is(gw_conv_get(only, "type"), "text"))
            cJSON_AddItemToObject(m, "content", cJSON_Duplicate(gw_conv_get(only, "text"), 0));
        else {
            cJSON_AddItemToObject(m, "content", parts);
            parts = NULL;
        }
    }
    cJSON_Delete(parts);
    pl_buf_free(&reasoning);
    if (user && !has_content) cJSON_Delete(m);   /* a user turn of tool results only */
    else cJSON_AddItemToArray(msgs, m);
    return 0;
}

static int convert_messages(const cJSON *in, cJSON *msgs, char *err, size_t errlen)
{
    const cJSON *list = gw_conv_get(in, "messages");
    if (!cJSON_IsArray(list)) return gw_conv_bad(err, errlen, "messages: a list of messages is required");
    int i = 0;
    for (const cJSON *m = list->child; m; m = m->next, i++) {
        char where[48];
        snprintf(where, sizeof where, "messages[%d]", i);
        if (!cJSON_IsObject(m)) return gw_conv_bad(err, errlen, "%s must be an object", where);
        const cJSON *role = gw_conv_get(m, "role"), *content = gw_conv_get(m, "content");
        if (!gw_conv_str_is(role, "user") && !gw_conv_str_is(role, "assistant") && !gw_conv_str_is(role, "system"))
            return gw_conv_bad(err, errlen, "%s.role must be 'user', 'assistant' or 'system'", where);
        if (!cJSON_IsString(content) && !cJSON_IsArray(content))
            return gw_conv_bad(err, errlen, "%s.content must be a string or a list of content blocks", where);
        int j = 0;
        for (const cJSON *b = cJSON_IsArray(content) ? content->child : NULL; b; b = b->next, j++) {
            char w2[80];
            snprintf(w2, sizeof w2, "%s.content[%d]", where, j);
            if (check_block(b, w2, gw_conv_str_is(role, "system"), err, errlen)) return PL_ERR_INVALID;
        }
        if (gw_conv_str_is(role, "system")) {
            char *t = system_text(content, true);
            if (t) gw_conv_add_msg(msgs, "system", t);
            free(t);
            continue;
        }
        if (cJSON_IsString(content)) {
            cJSON *o = cJSON_CreateObject();
            gw_conv_add_str(o, "role", role->valuestring);
            cJSON_AddItemToObject(o, "content", cJSON_Duplicate(content, 0));
            cJSON_AddItemToArray(msgs, o);
        } else if (convert_blocks(content, role->valuestring, msgs, err, errlen)) {
            return PL_ERR_INVALID;
        }
    }
    return 0;
}

/* An Anthropic tool: name, input_schema, optional description/strict/defer_loading. */
static int check_tool(const cJSON *t, const char *where, char *err, size_t errlen)
{
    const cJSON *name = gw_conv_get(t, "name"), *schema = gw_conv_get(t, "input_schema"), *desc = gw_conv_get(t, "description");
    if (!cJSON_IsString(name)) return gw_conv_bad(err, errlen, "%s.name: a string is required", where);
    if (!cJSON_IsObject(schema)) return gw_conv_bad(err, errlen, "%s.input_schema: an object is required", where);
    if (desc && !cJSON_IsString(desc)) return gw_conv_bad(err, errlen, "%s.description must be a string", where);
    static const char *const flags[] = {"strict", "defer_loading"};
    for (size_t k = 0; k < PL_ARRAY_LEN(flags); k++) {
        const cJSON *f = gw_conv_get(t, flags[k]);
        if (f && !cJSON_IsBool(f)) return gw_conv_bad(err, errlen, "%s.%s must be a boolean", where, flags[k]);
    }
    return 0;
}

static bool is_tool_change(const cJSON *b)
{
    const cJSON *t = gw_conv_get(b, "type");
    return gw_conv_str_is(t, "tool_addition") || gw_conv_str_is(t, "tool_removal");
}

static bool has_tool_changes(const cJSON *in)
{
    for (const cJSON *m = cJSON_IsArray(gw_conv_get(in, "messages")) ? gw_conv_get(in, "messages")->child : NULL; m; m = m->next) {
        const cJSON *c = gw_conv_get(m, "content");
        for (const cJSON *b = cJSON_IsArray(c) ? c->child : NULL; b; b = b->next)
            if (is_tool_change(b)) return true;
    }
    return false;
}

static cJSON *tool_named(cJSON *list, const char *name)
{
    for (cJSON *t = list->child; t; t = t->next)
        if (gw_conv_str_is(gw_conv_get(t, "name"), name)) return t;
    return NULL;
}

/* vLLM's _resolve_tools: the tool_addition / tool_removal blocks of the
 * system messages, applied in order to `tools` (a dict by name: a repeated
 * name keeps its first place), give the tools in effect at the end of the
 * conversation. *out: that list, or NULL when there are no changes. */
static int resolve_tools(const cJSON *in, const cJSON *tools, cJSON **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!has_tool_changes(in)) return 0;
    cJSON *list = cJSON_CreateArray(), *removed = cJSON_CreateObject();
    for (const cJSON *t = tools ? tools->child : NULL; t; t = t->next) {
        cJSON *old = tool_named(list, gw_conv_get(t, "name")->valuestring);
        if (old) cJSON_ReplaceItemViaPointer(list, old, cJSON_Duplicate(t, 1));
        else cJSON_AddItemToArray(list, cJSON_Duplicate(t, 1));
    }
    for (const cJSON *m = gw_conv_get(in, "messages")->child; m; m = m->next) {
        const cJSON *c = gw_conv_get(m, "content");
        for (const cJSON *b = cJSON_IsArray(c) ? c->child : NULL; b; b = b->next) {
            if (!is_tool_change(b)) continue;
            bool removal = gw_conv_str_is(gw_conv_get(b, "type"), "tool_removal");
            const cJSON *tool = gw_conv_get(b, "tool"), *def = gw_conv_get(tool, "definition");
            const char *name;
            if (def) {
                name = gw_conv_get(def, "name")->valuestring;
                cJSON *old = tool_named(list, name);
                if (old) cJSON_ReplaceItemViaPointer(list, old, cJSON_Duplicate(def, 1));
                else cJSON_AddItemToArray(list, cJSON_Duplicate(def, 1));
            } else {
                name = gw_conv_get(tool, "name")->valuestring;
                cJSON *old = tool_named(list, name);
                if (!old) {
                    gw_conv_bad(err, errlen, "%s references tool '%s', which is not declared in tools",
                                removal ? "tool_removal" : "tool_addition", name);
                    cJSON_Delete(list);
                    cJSON_Delete(removed);
                    return PL_ERR_INVALID;
                }
                if (!removal) cJSON_DeleteItemFromObjectCaseSensitive(old, "defer_loading");   /* no longer deferred */
            }
            cJSON_DeleteItemFromObjectCaseSensitive(removed, name);
            if (removal) cJSON_AddTrueToObject(removed, name);
        }
    }
    for (cJSON *t = list->child, *next; t; t = next) {
        next = t->next;
        if (cJSON_GetObjectItemCaseSensitive(removed, gw_conv_get(t, "name")->valuestring))
            cJSON_Delete(cJSON_DetachItemViaPointer(list, t));
    }
    cJSON_Delete(removed);
    *out = list;
    return 0;
}

static int convert_tools(const cJSON *in, cJSON *chat, char *err, size_t errlen)
{
    const cJSON *tc = gw_conv_get(in, "tool_choice"), *tools = gw_conv_get(in, "tools");
    if (tc) {
        if (!cJSON_IsObject(tc)) return gw_conv_bad(err, errlen, "tool_choice must be an object");
        const cJSON *t = gw_conv_get(tc, "type"), *name = gw_conv_get(tc, "name"), *dp = gw_conv_get(tc, "disable_parallel_tool_use");
        if (name && !cJSON_IsString(name)) return gw_conv_bad(err, errlen, "tool_choice.name must be a string");
        if (dp && !cJSON_IsBool(dp)) return gw_conv_bad(err, errlen, "tool_choice.disable_parallel_tool_use must be a boolean");
        cJSON_AddBoolToObject(chat, "parallel_tool_calls", !cJSON_IsTrue(dp));
        if (gw_conv_str_is(t, "auto") || gw_conv_str_is(t, "none")) gw_conv_add_str(chat, "tool_choice", t->valuestring);
        else if (gw_conv_str_is(t, "any")) gw_conv_add_str(chat, "tool_choice", "required");
        else if (gw_conv_str_is(t, "tool")) {
            if (!name || !name->valuestring[0]) return gw_conv_bad(err, errlen, "tool_choice.name is required when type is 'tool'");
            cJSON *c = cJSON_CreateObject();
            gw_conv_add_str(c, "type", "function");
            gw_conv_add_str(cJSON_AddObjectToObject(c, "function"), "name", name->valuestring);
            cJSON_AddItemToObject(chat, "tool_choice", c);
        } else {
            return gw_conv_bad(err, errlen, "tool_choice.type must be 'auto', 'any', 'tool' or 'none'");
        }
    }
    if (!tools && !has_tool_changes(in)) return 0;
    if (tools && !cJSON_IsArray(tools)) return gw_conv_bad(err, errlen, "tools must be a list");
    int i = 0;
    for (const cJSON *t = tools ? tools->child : NULL; t; t = t->next, i++) {
        char w[32];
        snprintf(w, sizeof w, "tools[%d]", i);
        if (check_tool(t, w, err, errlen)) return PL_ERR_INVALID;
    }
    cJSON *eff = NULL;
    if (resolve_tools(in, tools, &eff, err, errlen)) return PL_ERR_INVALID;
    cJSON *out = cJSON_AddArrayToObject(chat, "tools");
    for (const cJSON *t = (eff ? eff : tools)->child; t; t = t->next) {
        cJSON *o = cJSON_CreateObject();
        gw_conv_add_str(o, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(o, "function");
        gw_conv_add_str(fn, "name", gw_conv_get(t, "name")->valuestring);
        const cJSON *desc = gw_conv_get(t, "description");
        if (desc) gw_conv_add_str(fn, "description", desc->valuestring);
        cJSON_AddItemToObject(fn, "parameters", cJSON_Duplicate(gw_conv_get(t, "input_schema"), 1));
        static const char *const flags[] = {"strict", "defer_loading"};
        for (size_t k = 0; k < PL_ARRAY_LEN(flags); k++) {
            const cJSON *f = gw_conv_get(t, flags[k]);
            if (f) cJSON_AddBoolToObject(fn, flags[k], cJSON_IsTrue(f));
        }
        cJSON_AddItemToArray(out, o);
    }
    cJSON_Delete(eff);
    if (!gw_conv_get(chat, "tool_choice")) gw_conv_add_str(chat, "tool_choice", "auto");
    return 0;
}

static const char *const efforts[] = {"low", "medium", "high", "xhigh", "max"};

/* output_config.effort, then thinking (which vLLM applies after it). */
static int convert_thinking(const cJSON *in, cJSON *chat, int64_t max_tokens, char *err, size_t errlen)
{
    const cJSON *oc = gw_conv_get(in, "output_config"), *th = gw_conv_get(in, "thinking");
    const char *effort = NULL;
    if (oc) {
        if (!cJSON_IsObject(oc)) return gw_conv_bad(err, errlen, "output_config must be an object");
        if (gw_conv_get(oc, "format"))
            return gw_conv_bad(err, errlen, "output_config.format needs structured outputs, which this server does not support");
        const cJSON *e = gw_conv_get(oc, "effort");
        for (size_t i = 0; e && i < PL_ARRAY_LEN(efforts); i++)
            if (gw_conv_str_is(e, efforts[i])) effort = efforts[i];
        if (e && !effort) return gw_conv_bad(err, errlen, "output_config.effort must be one of 'low', 'medium', 'high', 'xhigh', 'max'");
    }
    if (th) {
        const cJSON *t = cJSON_IsObject(th) ? gw_conv_get(th, "type") : NULL;
        if (gw_conv_str_is(t, "disabled")) {
            /* vLLM probes the template: "none" unless it renders like an
             * effort. Every GLM template honours enable_thinking = false. */
            effort = "none";
        } else if (gw_conv_str_is(t, "enabled")) {
            int64_t budget;
            const cJSON *bt = gw_conv_get(th, "budget_tokens");
            if (!bt || pl_json_get_i64(bt, &budget) || pl_json_is_float(bt))
                return gw_conv_bad(err, errlen, "thinking.budget_tokens: an integer is required");
            if (budget < 1024) return gw_conv_bad(err, errlen, "thinking.budget_tokens must be at least 1024");
            if (max_tokens >= 0 && budget >= max_tokens) return gw_conv_bad(err, errlen, "thinking.budget_tokens must be less than max_tokens");
            /* vLLM sets thinking_token_budget; glmpipe's engine has no
             * reasoning budget: thinking runs as with "adaptive" (§9) */
        } else if (!gw_conv_str_is(t, "adaptive")) {
            return gw_conv_bad(err, errlen, "thinking.type must be 'enabled', 'disabled' or 'adaptive'");
        }
    }
    if (effort) gw_conv_add_str(chat, "reasoning_effort", effort);
    return 0;
}

int gw_ant_to_chat(const cJSON *in, bool count_only, cJSON **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cJSON_IsObject(in)) return gw_conv_bad(err, errlen, "The request body must be a JSON object");
    const cJSON *model = gw_conv_get(in, "model");
    if (!cJSON_IsString(model) || !model->valuestring[0]) return gw_conv_bad(err, errlen, "model: a model name is required");
    int64_t max_tokens = -1;
    if (!count_only) {
        const cJSON *mt = gw_conv_get(in, "max_tokens");
        if (!mt || pl_json_get_i64(mt, &max_tokens) || pl_json_is_float(mt)) return gw_conv_bad(err, errlen, "max_tokens: an integer is required");
        if (max_tokens <= 0) return gw_conv_bad(err, errlen, "max_tokens must be positive");
    }
    cJSON *chat = cJSON_CreateObject(), *msgs = cJSON_CreateArray();
    if (!chat || !msgs) { cJSON_Delete(chat); cJSON_Delete(msgs); return gw_conv_bad(err, errlen, "out of memory"); }
    cJSON_AddItemToObject(chat, "model", cJSON_Duplicate(model, 0));
    cJSON_AddItemToObject(chat, "messages", msgs);
    int rc = 0;
    const cJSON *sys = gw_conv_get(in, "system");
    if (sys && !cJSON_IsString(sys) && !cJSON_IsArray(sys)) rc = gw_conv_bad(err, errlen, "system must be a string or a list of text blocks");
    for (const cJSON *b = cJSON_IsArray(sys) ? sys->child : NULL; !rc && b; b = b->next)
        rc = check_block(b, "system", false, err, errlen);
    if (!rc && sys) {
        char *t = cJSON_IsString(sys) ? (sys->valuestring[0] ? strdup(sys->valuestring) : NULL) : system_text(sys, true);
        if (t) gw_conv_add_msg(msgs, "system", t);
        free(t);
    }
    if (!rc) rc = convert_messages(in, msgs, err, errlen);
    if (!rc && !count_only) {
        cJSON_AddItemToObject(chat, "max_tokens", pl_json_int_new(max_tokens));
        const cJSON *ss = gw_conv_get(in, "stop_sequences");
        if (ss && !cJSON_IsArray(ss)) rc = gw_conv_bad(err, errlen, "stop_sequences must be a list of strings");
        for (const cJSON *s = ss ? ss->child : NULL; !rc && s; s = s->next)
            if (!cJSON_IsString(s)) rc = gw_conv_bad(err, errlen, "stop_sequences must be a list of strings");
        if (!rc && ss) cJSON_AddItemToObject(chat, "stop", cJSON_Duplicate(ss, 1));
        static const char *const nums[] = {"temperature", "top_p", "top_k"};
        for (size_t i = 0; !rc && i < PL_ARRAY_LEN(nums); i++) {
            const cJSON *v = gw_conv_get(in, nums[i]);
            if (v && !cJSON_IsNumber(v)) rc = gw_conv_bad(err, errlen, "%s must be a number", nums[i]);
            else if (v) cJSON_AddItemToObject(chat, nums[i], cJSON_Duplicate(v, 0));
        }
        const cJSON *st = gw_conv_get(in, "stream"), *md = gw_conv_get(in, "metadata");
        if (!rc && st && !cJSON_IsBool(st)) rc = gw_conv_bad(err, errlen, "stream must be a boolean");
        if (!rc && md && !cJSON_IsObject(md)) rc = gw_conv_bad(err, errlen, "metadata must be an object");
        if (!rc && cJSON_IsTrue(st)) cJSON_AddBoolToObject(chat, "stream", true);
    }
    if (!rc) rc = convert_thinking(in, chat, max_tokens, err, errlen);
    if (!rc) rc = convert_tools(in, chat, err, errlen);
    const cJSON *kw = gw_conv_get(in, "chat_template_kwargs");
    if (!rc && kw && !cJSON_IsObject(kw)) rc = gw_conv_bad(err, errlen, "chat_template_kwargs must be an object");
    if (!rc && kw) cJSON_AddItemToObject(chat, "chat_template_kwargs", cJSON_Duplicate(kw, 1));
    if (rc) { cJSON_Delete(chat); return rc; }
    *out = chat;
    return 0;
}

/* ================================================================ output: JSON */

/* vLLM's _to_anthropic_stop_reason: max_tokens wins; then tool_use when
 * the last call's arguments are complete JSON; then a stop string; then
 * tool_use for any call; else end_turn. */
static void stop_fields(const gw_blocks *a, pl_buf *b, bool with_null_seq)
{
    const char *reason = NULL;
    bool tool_used = false, tool_complete = false;
    for (size_t i = 0; i < a->n; i++) {
        if (a->b[i].kind != GW_BLK_TOOL) continue;
        tool_used = true;
        cJSON *j = NULL;
        char e[8];
        const pl_buf *args = &a->b[i].body;
        tool_complete = !pl_json_parse(&j, args->data ? args->data : "", args->len, e, sizeof e);
        cJSON_Delete(j);
    }
    bool seq = false;
    if (!strcmp(a->finish, "length")) reason = "max_tokens";
    else if (!strcmp(a->finish, "stop") || !strcmp(a->finish, "tool_calls")) {
        if (tool_complete) reason = "tool_use";
        else if (a->has_stop_str) { reason = "stop_sequence"; seq = true; }
        else if (tool_used || !strcmp(a->finish, "tool_calls")) reason = "tool_use";
        else reason = "end_turn";
    }
    pl_buf_puts(b, "\"stop_reason\":");
    if (reason) { pl_buf_putc(b, '"'); pl_buf_puts(b, reason); pl_buf_putc(b, '"'); }
    else pl_buf_puts(b, "null");
    if (seq) {
        pl_buf_puts(b, ",\"stop_sequence\":");
        gw_jw_str(b, a->stop_str.data, a->stop_str.len);
    } else if (with_null_seq) {
        pl_buf_puts(b, ",\"stop_sequence\":null");
    }
}

/* Anthropic usage: input_tokens excludes the prefix-cached part, reported
 * as cache_read_input_tokens when the engine says how much it was. */
static void usage_json(pl_buf *b, const gw_usage *u, int64_t completion)
{
    int64_t in = u->prompt - (u->has_cached ? u->cached : 0);
    pl_buf_printf(b, "{\"input_tokens\":%lld,\"output_tokens\":%lld", (long long)(in > 0 ? in : 0), (long long)completion);
    if (u->has_cached) pl_buf_printf(b, ",\"cache_read_input_tokens\":%lld", (long long)u->cached);
    pl_buf_putc(b, '}');
}

/* {"type":"tool_use","id":…,"name":…,"input": (the input follows) */
static void tool_use_head(const gw_blk *k, pl_buf *b)
{
    pl_buf_puts(b, "{\"type\":\"tool_use\",\"id\":");
    gw_jw_str(b, k->id.data, k->id.len);
    pl_buf_puts(b, ",\"name\":");
    gw_jw_str(b, k->name.data, k->name.len);
    pl_buf_puts(b, ",\"input\":");
}

/* A tool's input object: the arguments when they are a JSON object, else {}. */
static void input_json(const gw_blk *k, pl_buf *b)
{
    cJSON *j = NULL;
    char e[8];
    if (!pl_json_parse(&j, k->body.data ? k->body.data : "", k->body.len, e, sizeof e) && cJSON_IsObject(j))
        pl_buf_append(b, k->body.data, k->body.len);
    else
        pl_buf_puts(b, "{}");
    cJSON_Delete(j);
}

void gw_ant_body(gw_blocks *a, const char *id, const char *model, const gw_usage *u, pl_buf *b)
{
    gw_blocks_flush_held(a);
    pl_buf_puts(b, "{\"id\":");
    gw_jw_cstr(b, id);
    pl_buf_puts(b, ",\"type\":\"message\",\"role\":\"assistant\",\"content\":[");
    for (size_t i = 0; i < a->n; i++) {
        gw_blk *k = &a->b[i];
        if (i) pl_buf_putc(b, ',');
        switch (k->kind) {
        case GW_BLK_THINKING:
            pl_buf_puts(b, "{\"type\":\"thinking\",\"thinking\":");
            gw_jw_str(b, k->body.data, k->body.len);
            pl_buf_printf(b, ",\"signature\":\"%s\"}", k->sig);
            break;
        case GW_BLK_TEXT:
            pl_buf_puts(b, "{\"type\":\"text\",\"text\":");
            gw_jw_str(b, k->body.data, k->body.len);
            pl_buf_putc(b, '}');
            break;
        case GW_BLK_TOOL:
            tool_use_head(k, b);
            input_json(k, b);
            pl_buf_putc(b, '}');
            break;
        }
    }
    /* an empty completion is one empty text block (vLLM, Anthropic) */
    if (!a->n) pl_buf_puts(b, "{\"type\":\"text\",\"text\":\"\"}");
    pl_buf_puts(b, "],\"model\":");
    gw_jw_cstr(b, model);
    pl_buf_putc(b, ',');
    stop_fields(a, b, false);
    pl_buf_puts(b, ",\"usage\":");
    usage_json(b, u, u->completion);
    pl_buf_putc(b, '}');
}

/* ================================================================ output: stream */

static void event(pl_buf *b, const char *name)
{
    pl_buf_puts(b, "event: ");
    pl_buf_puts(b, name);
    pl_buf_puts(b, "\ndata: ");
}

static void block_start(const gw_blk *k, size_t index, pl_buf *b)
{
    event(b, "content_block_start");
    pl_buf_puts(b, "{\"type\":\"content_block_start\",\"content_block\":");
    switch (k->kind) {
    case GW_BLK_THINKING: pl_buf_puts(b, "{\"type\":\"thinking\",\"thinking\":\"\"}"); break;
    case GW_BLK_TEXT: pl_buf_puts(b, "{\"type\":\"text\",\"text\":\"\"}"); break;
    case GW_BLK_TOOL:
        tool_use_head(k, b);
        pl_buf_puts(b, "{}}");
        break;
    }
    pl_buf_printf(b, ",\"index\":%zu}\n\n", index);
}

static void block_delta(const gw_blk *k, size_t index, const char *s, size_t n, pl_buf *b)
{
    static const char *const kinds[][2] = {{"thinking_delta", "thinking"}, {"text_delta", "text"},
                                           {"input_json_delta", "partial_json"}};
    event(b, "content_block_delta");
    pl_buf_printf(b, "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"%s\",\"%s\":",
                  kinds[k->kind][0], kinds[k->kind][1]);
    gw_jw_str(b, s, n);
    pl_buf_printf(b, "},\"index\":%zu}\n\n", index);
}

static void block_stop(gw_blk *k, size_t index, pl_buf *b)
{
    if (k->kind == GW_BLK_THINKING) {
        event(b, "content_block_delta");
        pl_buf_printf(b, "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"signature_delta\",\"signature\":\"%s\"},"
                         "\"index\":%zu}\n\n", k->sig, index);
    }
    event(b, "content_block_stop");
    pl_buf_printf(b, "{\"type\":\"content_block_stop\",\"index\":%zu}\n\n", index);
    k->stopped = true;
}

void gw_ant_stream(gw_blocks *a, const char *id, const char *model, const gw_usage *u, bool done,
                   const char *err, size_t errlen, pl_buf *b)
{
    if (a->tail_sent) return;
    if (!a->head_sent) {
        event(b, "message_start");
        pl_buf_puts(b, "{\"type\":\"message_start\",\"message\":{\"id\":");
        gw_jw_cstr(b, id);
        pl_buf_puts(b, ",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":");
        gw_jw_cstr(b, model);
        pl_buf_puts(b, ",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
        usage_json(b, u, 0);
        pl_buf_puts(b, "}}\n\n");
        event(b, "ping");
        pl_buf_puts(b, "{\"type\":\"ping\"}\n\n");
        a->head_sent = true;
    }
    if (a->ping_due && !done && !err) {
        event(b, "ping");
        pl_buf_puts(b, "{\"type\":\"ping\"}\n\n");
    }
    a->ping_due = false;
    if (done || err) gw_blocks_flush_held(a);
    for (size_t i = 0; i < a->n; i++) {
        gw_blk *k = &a->b[i];
        if (k->stopped) continue;
        if (!k->started) { block_start(k, i, b); k->started = true; }
        if (k->body.len > k->sent) {
            block_delta(k, i, k->body.data + k->sent, k->body.len - k->sent, b);
            k->sent = k->body.len;
        }
        if (i + 1 < a->n || done || err) block_stop(k, i, b);
    }
    if (err) {
        event(b, "error");
        pl_buf_append(b, err, errlen);
        pl_buf_puts(b, "\n\n");
        a->tail_sent = true;
        return;
    }
    if (!done) return;
    event(b, "message_delta");
    pl_buf_puts(b, "{\"type\":\"message_delta\",\"delta\":{");
    stop_fields(a, b, true);
    pl_buf_puts(b, "},\"usage\":");
    usage_json(b, u, u->completion);
    pl_buf_puts(b, "}\n\n");
    event(b, "message_stop");
    pl_buf_puts(b, "{\"type\":\"message_stop\"}\n\n");
    a->tail_sent = true;
}

/* ================================================================ count_tokens */

/* The /tokenize body for a converted Messages request: its messages, tools
 * and template switches (the prompt it would generate from). */
int gw_ant_tokenize_body(const cJSON *chat, cJSON **out)
{
    cJSON *t = cJSON_CreateObject();
    if (!t) return PL_ERR_NOMEM;
    static const char *const keys[] = {"model", "messages", "tools", "reasoning_effort", "chat_template_kwargs"};
    for (size_t i = 0; i < PL_ARRAY_LEN(keys); i++) {
        const cJSON *v = gw_conv_get(chat, keys[i]);
        if (v) cJSON_AddItemToObject(t, keys[i], cJSON_Duplicate(v, 1));
    }
    *out = t;
    return PL_OK;
}

void gw_ant_count_json(int64_t count, pl_buf *b)
{
    pl_buf_printf(b, "{\"input_tokens\":%lld,\"context_management\":{\"original_input_tokens\":%lld}}",
                  (long long)count, (long long)count);
}
