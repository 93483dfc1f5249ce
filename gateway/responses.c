/* responses.c — the OpenAI Responses API (POST /v1/responses), stateless,
 * on top of the chat pipeline.
 *
 * As vLLM 0.33 serves it for a non-Harmony model (entrypoints/openai/
 * responses: construct_input_messages, construct_tool_dicts,
 * build_chat_params, build_response_output_items, streaming_events.py):
 * `instructions` + `input` items become chat messages, function tools chat
 * tools, reasoning.effort the template's reasoning switches; the output is
 * the generation's block list (blocks.c) rendered as output items —
 * reasoning, message (output_text), function_call — and, streaming, as the
 * response.* event sequence. Nothing is stored: previous_response_id and
 * background are refused with a 400 that names them (docs/protocol.md §9). */
#include "gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "pyjson.h"

/* ================================================================ request: Responses -> chat */

static cJSON *last_assistant(cJSON *msgs)
{
    cJSON *last = msgs->child;
    while (last && last->next) last = last->next;
    return last && gw_conv_str_is(gw_conv_get(last, "role"), "assistant") ? last : NULL;
}

/* The text of an output message item: content as a string, or its first part's text. */
static const cJSON *first_text(const cJSON *content)
{
    if (cJSON_IsString(content)) return content;
    const cJSON *p = cJSON_IsArray(content) ? content->child : NULL;
    const cJSON *t = p ? gw_conv_get(p, "text") : NULL;
    return cJSON_IsString(t) ? t : NULL;
}

/* One input item (vLLM's _construct_message_from_response_item): a call,
 * reasoning or assistant text joins the assistant message before it when
 * that one lacks it; tool outputs become tool messages; other role items
 * pass as chat messages. */
static int convert_item(const cJSON *item, int i, cJSON *msgs, char *err, size_t errlen)
{
    if (!cJSON_IsObject(item)) return gw_conv_bad(err, errlen, "input[%d] must be an object", i);
    const cJSON *type = gw_conv_get(item, "type"), *role = gw_conv_get(item, "role");
    cJSON *prev = last_assistant(msgs);
    if (gw_conv_str_is(type, "function_call")) {
        const cJSON *cid = gw_conv_get(item, "call_id"), *name = gw_conv_get(item, "name"), *args = gw_conv_get(item, "arguments");
        if (!cJSON_IsString(cid) || !cJSON_IsString(name) || !cJSON_IsString(args))
            return gw_conv_bad(err, errlen, "input[%d]: a function_call needs call_id, name and arguments (strings)", i);
        cJSON *call = cJSON_CreateObject();
        gw_conv_add_str(call, "id", cid->valuestring);
        cJSON *fn = cJSON_AddObjectToObject(call, "function");
        gw_conv_add_str(fn, "name", name->valuestring);
        gw_conv_add_str(fn, "arguments", args->valuestring);
        gw_conv_add_str(call, "type", "function");
        cJSON *calls = prev ? cJSON_GetObjectItemCaseSensitive(prev, "tool_calls") : NULL;
        if (prev && cJSON_IsArray(calls)) { cJSON_AddItemToArray(calls, call); return 0; }
        if (prev && !calls) { cJSON_AddItemToArray(cJSON_AddArrayToObject(prev, "tool_calls"), call); return 0; }
        cJSON *m = cJSON_CreateObject();
        gw_conv_add_str(m, "role", "assistant");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(m, "tool_calls"), call);
        cJSON_AddItemToArray(msgs, m);
        return 0;
    }
    if (gw_conv_str_is(type, "reasoning")) {
        if (gw_conv_get(item, "encrypted_content")) return gw_conv_bad(err, errlen, "Encrypted content is not supported.");
        const cJSON *c = gw_conv_get(item, "content"), *s = gw_conv_get(item, "summary");
        const cJSON *t = cJSON_IsArray(c) && c->child ? first_text(c) : cJSON_IsArray(s) && s->child ? first_text(s) : NULL;
        const char *text = t ? t->valuestring : "";
        if (prev && !cJSON_GetObjectItemCaseSensitive(prev, "reasoning")) { gw_conv_add_str(prev, "reasoning", text); return 0; }
        cJSON *m = cJSON_CreateObject();
        gw_conv_add_str(m, "role", "assistant");
        gw_conv_add_str(m, "reasoning", text);
        cJSON_AddItemToArray(msgs, m);
        return 0;
    }
    if (gw_conv_str_is(type, "function_call_output") || gw_conv_str_is(type, "custom_tool_call_output")) {
        const cJSON *out = gw_conv_get(item, "output"), *cid = gw_conv_get(item, "call_id");
        cJSON *m = cJSON_CreateObject();
        gw_conv_add_str(m, "role", "tool");
        cJSON_AddItemToObject(m, "content", out ? cJSON_Duplicate(out, 1) : cJSON_CreateNull());
        cJSON_AddItemToObject(m, "tool_call_id", cid ? cJSON_Duplicate(cid, 0) : cJSON_CreateNull());
        cJSON_AddItemToArray(msgs, m);
        return 0;
    }
    if (gw_conv_str_is(role, "assistant")) {
        const cJSON *t = first_text(gw_conv_get(item, "content"));
        if (t) {
            if (prev && !gw_conv_get(prev, "content")) {
                cJSON_DeleteItemFromObjectCaseSensitive(prev, "content");
                gw_conv_add_str(prev, "content", t->valuestring);
                return 0;
            }
            cJSON *m = cJSON_CreateObject();
            gw_conv_add_str(m, "role", "assistant");
            gw_conv_add_str(m, "content", t->valuestring);
            cJSON_AddItemToArray(msgs, m);
            return 0;
        }
    }
    if (role) {
        /* user / system / developer messages pass as they are, but for
         * their input_text parts: vLLM's renderer reads them as text parts,
         * which is what the chat body must say (glm-tokenize checks chat
         * bodies against OpenAI's chat part types) */
        cJSON *m = cJSON_Duplicate(item, 1);
        cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        for (cJSON *p = cJSON_IsArray(content) ? content->child : NULL; p; p = p->next) {
            cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
            if (gw_conv_str_is(t, "input_text") || gw_conv_str_is(t, "output_text")) cJSON_SetValuestring(t, "text");
        }
        cJSON_AddItemToArray(msgs, m);
        return 0;
    }
    return gw_conv_bad(err, errlen, "Unsupported input item type: %s", cJSON_IsString(type) ? type->valuestring : "None");
}

/* The last item a partial assistant message (status in_progress or
 * incomplete): the model continues it (vLLM's should_continue_final_message). */
static bool continue_final(const cJSON *input)
{
    const cJSON *last = cJSON_IsArray(input) ? input->child : NULL;
    while (last && last->next) last = last->next;
    if (!last) return false;
    const cJSON *type = gw_conv_get(last, "type"), *st = gw_conv_get(last, "status");
    if (type && !gw_conv_str_is(type, "message") && !gw_conv_str_is(type, "reasoning")) return false;
    return gw_conv_str_is(st, "in_progress") || gw_conv_str_is(st, "incomplete");
}

/* ResponsesRequest.check_tool_usage, then the chat tools. */
static int convert_tools(const cJSON *in, cJSON *chat, char *err, size_t errlen)
{
    const cJSON *tools = gw_conv_get(in, "tools"), *tc = gw_conv_get(in, "tool_choice");
    if (tools && !cJSON_IsArray(tools)) return gw_conv_bad(err, errlen, "tools must be a list");
    bool named = gw_conv_str_is(gw_conv_get(tc, "type"), "function");
    if (!tools || !tools->child) {
        if (gw_conv_str_is(tc, "required"))
            return gw_conv_bad(err, errlen, "Tool choice 'required' must be specified with 'tools' parameter.");
        if (named) return gw_conv_bad(err, errlen, "Tool choice 'function' not found in 'tools' parameter.");
        return 0;
    }
    if (named) {
        const cJSON *want = gw_conv_get(tc, "name");
        bool found = false;
        for (const cJSON *t = tools->child; t && cJSON_IsString(want); t = t->next)
            found |= gw_conv_str_is(gw_conv_get(t, "name"), want->valuestring);
        if (!found) return gw_conv_bad(err, errlen, "Tool choice 'function' not found in 'tools' parameter.");
    }
    cJSON *out = cJSON_AddArrayToObject(chat, "tools");
    int i = 0;
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        const cJSON *type = gw_conv_get(t, "type"), *name = gw_conv_get(t, "name");
        if (!gw_conv_str_is(type, "function"))
            return gw_conv_bad(err, errlen, "tools[%d]: only function tools are supported by this server (got %s)", i,
                       cJSON_IsString(type) ? type->valuestring : "no type");
        if (!cJSON_IsString(name)) return gw_conv_bad(err, errlen, "tools[%d].name: a string is required", i);
        cJSON *o = cJSON_CreateObject();
        gw_conv_add_str(o, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(o, "function");
        for (const cJSON *f = t->child; f; f = f->next)
            if (strcmp(f->string, "type") && !cJSON_IsNull(f)) cJSON_AddItemToObject(fn, f->string, cJSON_Duplicate(f, 1));
        cJSON_AddItemToArray(out, o);
    }
    if (!tc || gw_conv_str_is(tc, "auto") || gw_conv_str_is(tc, "none") || gw_conv_str_is(tc, "required")) {
        gw_conv_add_str(chat, "tool_choice", tc ? tc->valuestring : "auto");
    } else if (gw_conv_str_is(gw_conv_get(tc, "type"), "function") && cJSON_IsString(gw_conv_get(tc, "name"))) {
        cJSON *c = cJSON_CreateObject();
        gw_conv_add_str(c, "type", "function");
        gw_conv_add_str(cJSON_AddObjectToObject(c, "function"), "name", gw_conv_get(tc, "name")->valuestring);
        cJSON_AddItemToObject(chat, "tool_choice", c);
    } else {
        return gw_conv_bad(err, errlen, "tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}");
    }
    return 0;
}

int gw_resp_to_chat(const cJSON *in, cJSON **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cJSON_IsObject(in)) return gw_conv_bad(err, errlen, "The request body must be a JSON object");
    static const struct { const char *key, *why; } unsupported[] = {
        {"previous_response_id", "previous_response_id is not supported: this server stores no responses "
                                 "(send the whole conversation in `input`)"},
        {"conversation", "conversation is not supported: this server stores no conversations"},
        {"prompt", "prompt templates (`prompt`) are not supported by this server"},
        {"logit_bias", "logit_bias is not supported by this server (glmpipe's engine has no such feature)"},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(unsupported); i++)
        if (gw_conv_get(in, unsupported[i].key)) return gw_conv_bad(err, errlen, "%s", unsupported[i].why);
    if (cJSON_IsTrue(gw_conv_get(in, "background")))
        return gw_conv_bad(err, errlen, "background is not supported: this server stores no responses");
    const cJSON *text = gw_conv_get(in, "text"), *fmt = gw_conv_get(text, "format");
    if (fmt && !gw_conv_str_is(gw_conv_get(fmt, "type"), "text"))
        return gw_conv_bad(err, errlen, "text.format other than {\"type\": \"text\"} needs structured outputs, which this server does not support");
    const cJSON *tl = gw_conv_get(in, "top_logprobs");
    if (tl && !(cJSON_IsNumber(tl) && tl->valuedouble == 0))
        return gw_conv_bad(err, errlen, "top_logprobs is not supported on /v1/responses by this server");
    const cJSON *input = gw_conv_get(in, "input"), *instr = gw_conv_get(in, "instructions"), *model = gw_conv_get(in, "model");
    if (!cJSON_IsString(input) && !cJSON_IsArray(input)) return gw_conv_bad(err, errlen, "input: a string or a list of items is required");
    if (instr && !cJSON_IsString(instr)) return gw_conv_bad(err, errlen, "instructions must be a string");
    if (model && !cJSON_IsString(model)) return gw_conv_bad(err, errlen, "model must be a string");
    cJSON *chat = cJSON_CreateObject(), *msgs = cJSON_CreateArray();
    if (model) cJSON_AddItemToObject(chat, "model", cJSON_Duplicate(model, 0));
    cJSON_AddItemToObject(chat, "messages", msgs);
    int rc = 0;
    if (instr && instr->valuestring[0]) gw_conv_add_msg(msgs, "system", instr->valuestring);
    if (cJSON_IsString(input)) gw_conv_add_msg(msgs, "user", input->valuestring);
    int i = 0;
    for (const cJSON *it = cJSON_IsArray(input) ? input->child : NULL; !rc && it; it = it->next, i++)
        rc = convert_item(it, i, msgs, err, errlen);
    if (!rc && continue_final(input)) {
        cJSON_AddBoolToObject(chat, "add_generation_prompt", false);
        cJSON_AddBoolToObject(chat, "continue_final_message", true);
    }
    const cJSON *mot = gw_conv_get(in, "max_output_tokens");
    if (!rc && mot) cJSON_AddItemToObject(chat, "max_tokens", cJSON_Duplicate(mot, 0));
    static const char *const pass[] = {"temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                                       "repetition_penalty", "seed", "stop", "parallel_tool_calls", "chat_template_kwargs",
                                       "include_stop_str_in_output", "skip_special_tokens"};
    for (size_t k = 0; !rc && k < PL_ARRAY_LEN(pass); k++) {
        const cJSON *v = gw_conv_get(in, pass[k]);
        if (v) cJSON_AddItemToObject(chat, pass[k], cJSON_Duplicate(v, 1));
    }
    const cJSON *reasoning = gw_conv_get(in, "reasoning"), *effort = gw_conv_get(reasoning, "effort");
    if (!rc && reasoning && !cJSON_IsObject(reasoning)) rc = gw_conv_bad(err, errlen, "reasoning must be an object");
    if (!rc && effort) cJSON_AddItemToObject(chat, "reasoning_effort", cJSON_Duplicate(effort, 0));
    if (!rc) rc = convert_tools(in, chat, err, errlen);
    const cJSON *st = gw_conv_get(in, "stream");
    if (!rc && st && !cJSON_IsBool(st)) rc = gw_conv_bad(err, errlen, "stream must be a boolean");
    if (!rc && cJSON_IsTrue(st)) cJSON_AddBoolToObject(chat, "stream", true);
    if (rc) { cJSON_Delete(chat); return rc; }
    *out = chat;
    return 0;
}

/* What a response object repeats of its request (vLLM's from_request), as
 * JSON members in vLLM's field order, written once at admission: four runs
 * separated by ECHO_SEP (a byte JSON text never holds raw), which
 * response_json interleaves with what it knows only later (output, status,
 * usage). */
#define ECHO_SEP '\x01'

static void echo_member(pl_buf *b, const cJSON *in, const char *key, const char *def, bool first)
{
    pl_pyjson_opts o = PL_PYJSON_DEFAULT;
    o.item_sep = ",";
    o.key_sep = ":";
    const cJSON *v = gw_conv_get(in, key);
    pl_buf_printf(b, "%s\"%s\":", first ? "" : ",", key);
    if (v) pl_pyjson_dump(b, v, &o);
    else pl_buf_puts(b, def);
}

void gw_resp_echo(const cJSON *in, pl_buf *b)
{
    const cJSON *tools = gw_conv_get(in, "tools"), *tc = gw_conv_get(in, "tool_choice");
    bool has_tools = cJSON_IsArray(tools) && tools->child;
    echo_member(b, in, "instructions", "null", true);
    echo_member(b, in, "metadata", "null", false);
    pl_buf_putc(b, ECHO_SEP);
    echo_member(b, in, "parallel_tool_calls", "true", true);
    echo_member(b, in, "temperature", "1.0", false);
    /* check_tool_usage: without tools, "auto" (the default) reads "none" */
    if (!has_tools && (!tc || gw_conv_str_is(tc, "auto"))) pl_buf_puts(b, ",\"tool_choice\":\"none\"");
    else echo_member(b, in, "tool_choice", "\"auto\"", false);
    echo_member(b, in, "tools", "[]", false);
    echo_member(b, in, "top_p", "1.0", false);
    pl_buf_puts(b, ",\"background\":false");
    echo_member(b, in, "max_output_tokens", "null", false);
    pl_buf_puts(b, ",\"max_tool_calls\":null,\"previous_response_id\":null,\"prompt\":null,\"prompt_cache_options\":null");
    echo_member(b, in, "prompt_cache_key", "null", false);
    pl_buf_puts(b, ",\"prompt_cache_retention\":null");
    echo_member(b, in, "reasoning", "null", false);
    echo_member(b, in, "safety_identifier", "null", false);
    echo_member(b, in, "service_tier", "\"auto\"", false);
    pl_buf_putc(b, ECHO_SEP);
    echo_member(b, in, "text", "null", true);
    pl_buf_puts(b, ",\"top_logprobs\":null");
    echo_member(b, in, "truncation", "\"disabled\"", false);
    pl_buf_putc(b, ECHO_SEP);
    echo_member(b, in, "user", "null", true);
    echo_member(b, in, "presence_penalty", "0.0", false);
    echo_member(b, in, "frequency_penalty", "0.0", false);
    pl_buf_puts(b, ",\"kv_transfer_params\":null,\"ec_transfer_params\":null,\"input_messages\":null,\"output_messages\":null");
}

/* ================================================================ output */

static bool incomplete(const gw_blocks *a) { return !strcmp(a->finish, "length"); }

/* Item ids: the call's own id for calls; rs_/msg_ + a random hex (the
 * block's `sig`) for the others, the same in the stream and the body. */
static void item_json(const gw_blk *k, bool last, bool done, bool is_incomplete, pl_buf *b)
{
    const char *status = !done ? "in_progress" : last && is_incomplete ? "incomplete" : "completed";
    switch (k->kind) {
    case GW_BLK_THINKING:
        pl_buf_printf(b, "{\"id\":\"rs_%s\",\"summary\":[],\"type\":\"reasoning\",\"content\":", k->sig);
        if (done) {
            pl_buf_puts(b, "[{\"text\":");
            gw_jw_str(b, k->body.data, k->body.len);
            pl_buf_puts(b, ",\"type\":\"reasoning_text\"}]");
        } else {
            pl_buf_puts(b, "null");
        }
        pl_buf_printf(b, ",\"encrypted_content\":null,\"status\":%s}", done ? "null" : "\"in_progress\"");
        break;
    case GW_BLK_TEXT:
        pl_buf_printf(b, "{\"id\":\"msg_%s\",\"content\":[", k->sig);
        if (done) {
            pl_buf_puts(b, "{\"annotations\":[],\"text\":");
            gw_jw_str(b, k->body.data, k->body.len);
            pl_buf_puts(b, ",\"type\":\"output_text\",\"logprobs\":null}");
        }
        pl_buf_printf(b, "],\"role\":\"assistant\",\"status\":\"%s\",\"type\":\"message\",\"phase\":null}", status);
        break;
    case GW_BLK_TOOL:
        pl_buf_puts(b, "{\"arguments\":");
        if (done) gw_jw_str(b, k->body.data, k->body.len);
        else pl_buf_puts(b, "\"\"");
        pl_buf_puts(b, ",\"call_id\":");
        gw_jw_str(b, k->id.data, k->id.len);
        pl_buf_puts(b, ",\"name\":");
        gw_jw_str(b, k->name.data, k->name.len);
        pl_buf_printf(b, ",\"type\":\"function_call\",\"id\":\"fc_%.*s\",\"async\":null,\"caller\":null,"
                         "\"namespace\":null,\"status\":\"%s\"}", (int)k->id.len,
                      k->id.data ? k->id.data : "", status);
        break;
    }
}

static void usage_json(const gw_blocks *a, const gw_usage *u, pl_buf *b)
{
    /* vLLM's ResponseUsage for a single-turn (SimpleContext) request: the
     * per-turn lists stay empty there */
    pl_buf_printf(b, "{\"input_tokens\":%lld,\"input_tokens_details\":{\"cached_tokens\":%lld,\"cache_write_tokens\":0,"
                     "\"input_tokens_per_turn\":[],\"cached_tokens_per_turn\":[]},\"output_tokens\":%lld,"
                     "\"output_tokens_details\":{\"reasoning_tokens\":%lld,\"tool_output_tokens\":0,\"output_tokens_per_turn\":[],"
                     "\"tool_output_tokens_per_turn\":[]},\"total_tokens\":%lld}",
                  (long long)u->prompt, (long long)(u->has_cached ? u->cached : 0), (long long)u->completion,
                  (long long)a->reasoning_tokens, (long long)(u->prompt + u->completion));
}

/* The response object; done: with its output and usage. */
/* The next run of the request's echo (gw_resp_echo), after a comma; an
 * absent run (no echo) writes nothing, so the JSON stays valid. */
static const char *echo_run(const char *p, pl_buf *b)
{
    if (!p || !*p) return NULL;
    const char *end = strchr(p, ECHO_SEP);
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n) {
        pl_buf_putc(b, ',');
        pl_buf_append(b, p, n);
    }
    return end ? end + 1 : NULL;
}

static void response_json(const gw_blocks *a, const gw_resp_info *ri, const gw_usage *u, bool done, pl_buf *b)
{
    bool inc = done && incomplete(a);
    const char *e = ri->echo;
    pl_buf_puts(b, "{\"id\":");
    gw_jw_cstr(b, ri->id);
    pl_buf_printf(b, ",\"created_at\":%lld,\"incomplete_details\":%s", (long long)ri->created,
                  inc ? "{\"reason\":\"max_output_tokens\"}" : "null");
    e = echo_run(e, b);                       /* instructions, metadata */
    pl_buf_puts(b, ",\"model\":");
    gw_jw_cstr(b, ri->model);
    pl_buf_puts(b, ",\"object\":\"response\",\"output\":[");
    for (size_t i = 0; done && i < a->n; i++) {
        if (i) pl_buf_putc(b, ',');
        item_json(&a->b[i], i + 1 == a->n, true, inc, b);
    }
    pl_buf_putc(b, ']');
    e = echo_run(e, b);                       /* parallel_tool_calls ... service_tier */
    pl_buf_printf(b, ",\"status\":\"%s\"", !done ? "in_progress" : inc ? "incomplete" : "completed");
    e = echo_run(e, b);                       /* text, top_logprobs, truncation */
    pl_buf_puts(b, ",\"usage\":");
    if (done) usage_json(a, u, b);
    else pl_buf_puts(b, "null");
    echo_run(e, b);                           /* user ... output_messages */
    pl_buf_putc(b, '}');
}

void gw_resp_body(gw_blocks *a, const gw_resp_info *ri, const gw_usage *u, pl_buf *b)
{
    gw_blocks_flush_held(a);
    response_json(a, ri, u, true, b);
}

/* ---------------------------------------------------------------- stream */

static void ev(gw_blocks *a, pl_buf *b, const char *type)
{
    pl_buf_printf(b, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%lld", type, type, (long long)a->seq++);
}

static void ev_end(pl_buf *b) { pl_buf_puts(b, "}\n\n"); }

static void item_event(gw_blocks *a, pl_buf *b, const char *type, size_t i, bool done, bool inc)
{
    ev(a, b, type);
    pl_buf_printf(b, ",\"output_index\":%zu,\"item\":", i);
    item_json(&a->b[i], i + 1 == a->n, done, inc, b);
    ev_end(b);
}

static void item_ref(const gw_blk *k, size_t i, pl_buf *b, bool content_index)
{
    pl_buf_puts(b, ",\"item_id\":\"");
    if (k->kind == GW_BLK_TOOL) { pl_buf_puts(b, "fc_"); pl_buf_append(b, k->id.data, k->id.len); }
    else pl_buf_printf(b, "%s_%s", k->kind == GW_BLK_THINKING ? "rs" : "msg", k->sig);
    pl_buf_printf(b, "\",\"output_index\":%zu", i);
    if (content_index) pl_buf_puts(b, ",\"content_index\":0");
}

static void part_json(const gw_blk *k, bool done, pl_buf *b)
{
    if (k->kind == GW_BLK_THINKING) {
        pl_buf_puts(b, "{\"text\":");
        if (done) gw_jw_str(b, k->body.data, k->body.len);
        else pl_buf_puts(b, "\"\"");
        pl_buf_puts(b, ",\"type\":\"reasoning_text\"}");
    } else {
        pl_buf_puts(b, "{\"annotations\":[],\"text\":");
        if (done) gw_jw_str(b, k->body.data, k->body.len);
        else pl_buf_puts(b, "\"\"");
        pl_buf_puts(b, done ? ",\"type\":\"output_text\",\"logprobs\":null}" : ",\"type\":\"output_text\",\"logprobs\":[]}");
    }
}

static void block_open(gw_blocks *a, size_t i, pl_buf *b)
{
    gw_blk *k = &a->b[i];
    item_event(a, b, "response.output_item.added", i, false, false);
    if (k->kind != GW_BLK_TOOL) {
        ev(a, b, "response.content_part.added");
        item_ref(k, i, b, true);
        pl_buf_puts(b, ",\"part\":");
        part_json(k, false, b);
        ev_end(b);
    }
    k->started = true;
}

static void block_delta(gw_blocks *a, size_t i, pl_buf *b)
{
    gw_blk *k = &a->b[i];
    static const char *const types[] = {"response.reasoning_text.delta", "response.output_text.delta",
                                        "response.function_call_arguments.delta"};
    ev(a, b, types[k->kind]);
    item_ref(k, i, b, k->kind != GW_BLK_TOOL);
    pl_buf_puts(b, ",\"delta\":");
    gw_jw_str(b, k->body.data + k->sent, k->body.len - k->sent);
    if (k->kind == GW_BLK_TEXT) pl_buf_puts(b, ",\"logprobs\":[]");
    ev_end(b);
    k->sent = k->body.len;
}

static void block_close(gw_blocks *a, size_t i, bool inc, pl_buf *b)
{
    gw_blk *k = &a->b[i];
    if (k->kind == GW_BLK_TOOL) {
        ev(a, b, "response.function_call_arguments.done");
        item_ref(k, i, b, false);
        pl_buf_puts(b, ",\"arguments\":");
        gw_jw_str(b, k->body.data, k->body.len);
        pl_buf_puts(b, ",\"name\":");
        gw_jw_str(b, k->name.data, k->name.len);
        ev_end(b);
    } else {
        ev(a, b, k->kind == GW_BLK_THINKING ? "response.reasoning_text.done" : "response.output_text.done");
        item_ref(k, i, b, true);
        pl_buf_puts(b, ",\"text\":");
        gw_jw_str(b, k->body.data, k->body.len);
        if (k->kind == GW_BLK_TEXT) pl_buf_puts(b, ",\"logprobs\":[]");
        ev_end(b);
        ev(a, b, "response.content_part.done");
        item_ref(k, i, b, true);
        pl_buf_puts(b, ",\"part\":");
        part_json(k, true, b);
        ev_end(b);
    }
    item_event(a, b, "response.output_item.done", i, true, inc);
    k->stopped = true;
}

void gw_resp_stream(gw_blocks *a, const gw_resp_info *ri, const gw_usage *u, bool done, const char *err, size_t errlen,
                    pl_buf *b)
{
    if (a->tail_sent) return;
    if (!a->head_sent) {
        ev(a, b, "response.created");
        pl_buf_puts(b, ",\"response\":");
        response_json(a, ri, u, false, b);
        ev_end(b);
        ev(a, b, "response.in_progress");
        pl_buf_puts(b, ",\"response\":");
        response_json(a, ri, u, false, b);
        ev_end(b);
        a->head_sent = true;
    }
    if (done) gw_blocks_flush_held(a);
    bool inc = done && incomplete(a);
    for (size_t i = 0; i < a->n; i++) {
        gw_blk *k = &a->b[i];
        if (k->stopped) continue;
        if (!k->started) block_open(a, i, b);
        if (k->body.len > k->sent) block_delta(a, i, b);
        if (i + 1 < a->n || done) block_close(a, i, inc, b);
    }
    if (err) {
        /* err is the OpenAI error JSON {"error": {...}}: its object goes in the event */
        ev(a, b, "error");
        pl_buf_puts(b, ",\"error\":");
        const char *obj = memchr(err, ':', errlen);
        if (obj && errlen > 2) pl_buf_append(b, obj + 1, errlen - (size_t)(obj + 1 - err) - 1);
        else pl_buf_puts(b, "null");
        ev_end(b);
        a->tail_sent = true;
        return;
    }
    if (!done) return;
    ev(a, b, inc ? "response.incomplete" : "response.completed");   /* vLLM's terminal event by status */
    pl_buf_puts(b, ",\"response\":");
    response_json(a, ri, u, true, b);
    ev_end(b);
    a->tail_sent = true;
}
