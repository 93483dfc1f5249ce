/* chat.c — the `messages` and `tools` of a chat request as vLLM 0.33 hands
 * them to the chat template.
 *
 * Three stages of vLLM's request path, in its order:
 *   tok_messages_check  ChatCompletionRequest validation: every message must
 *                       validate as one of the pydantic types of its union
 *                       (OpenAI's developer/system/user/assistant/tool/
 *                       function messages, or vLLM's custom message), and
 *                       pydantic's choice between them decides whether the
 *                       content parts are checked now (custom) or when the
 *                       renderer iterates them (OpenAI's lazy Iterable).
 *   tok_messages_convert parse_chat_messages + _postprocess_messages
 *                       (vllm/renderers/chat_utils/chat_message.py): content
 *                       parts, the Claude Code billing header, tool results
 *                       joined, reasoning, tool-call arguments; then the
 *                       developer-role conversion of safe_apply_chat_template
 *                       (vllm/renderers/hf.py).
 *   tok_tools_convert   ChatCompletionToolsParam validation + model_dump().
 * Refusals carry vLLM's status and, where vLLM wrote the sentence, its
 * words; where pydantic refuses a type (vLLM then lists every union branch
 * it tried) the message is ours and says what is wrong. */
#include "tokenize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define BAD(e, param, ...) tok_fail((e), 400, "BadRequestError", (param), __VA_ARGS__)

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static bool is_null(const cJSON *v) { return v && cJSON_IsNull(v); }
static bool str_eq(const cJSON *v, const char *s) { return cJSON_IsString(v) && !strcmp(v->valuestring, s); }

/* ================================================================ pydantic's choice of message type */

enum msg_kind { MK_DEVELOPER, MK_SYSTEM, MK_USER, MK_ASSISTANT, MK_TOOL, MK_FUNCTION, MK_CUSTOM };
static const char *const openai_roles[] = {"developer", "system", "user", "assistant", "tool", "function"};

/* What pydantic made of one message: which type validated it, and whether
 * its content parts / tool calls are still to be validated (OpenAI's types
 * declare them Iterable, which pydantic checks only when iterated). */
typedef struct {
    enum msg_kind kind;
    bool lazy_content;
} msg_type;

/* Pydantic's smart union takes the member that validates with the most
 * fields set, nested fields included; the leftmost wins a tie. These count
 * the fields the way pydantic does; -1 when the member does not validate. */

/* One content part against vLLM's ChatCompletionContentPartParam union:
 * every dict validates (several members have only optional keys); the
 * count is that of the best member. */
static int part_fields(const cJSON *p)
{
    if (cJSON_IsString(p)) return 0;
    if (!cJSON_IsObject(p)) return -1;
    const cJSON *type = get(p, "type");
    int best = 0;
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if ((!strcmp(t, "text") && cJSON_IsString(get(p, "text"))) ||
        (!strcmp(t, "refusal") && cJSON_IsString(get(p, "refusal"))) ||
        (!strcmp(t, "prompt_embeds") && cJSON_IsString(get(p, "data"))))
        best = 2;
    if (!strcmp(t, "thinking") && cJSON_IsString(get(p, "thinking"))) best = 2 + cJSON_IsBool(get(p, "closed"));
    for (size_t i = 0; i < 3; i++) {   /* {"type": "image_url", "image_url": {"url": ...}} and kin */
        static const char *const media[] = {"image_url", "audio_url", "video_url"};
        const cJSON *m = get(p, media[i]);
        if (!strcmp(t, media[i]) && cJSON_IsObject(m) && cJSON_IsString(get(m, "url")))
            best = best > 3 ? best : 3 + (i == 0 && cJSON_IsString(get(m, "detail")));
    }
    const cJSON *ia = get(p, "input_audio");
    if (!strcmp(t, "input_audio") && cJSON_IsObject(ia) && cJSON_IsString(get(ia, "data")) && cJSON_IsString(get(ia, "format")))
        best = best > 4 ? best : 4;
    if (!strcmp(t, "tool_reference") || !type) {   /* tool reference: name and type, both optional */
        int n = (type != NULL) + cJSON_IsString(get(p, "name"));
        best = best > n ? best : n;
    }
    return best;
}

/* ChatCompletionMessageToolCallParam: {id, type: "function", function:
 * {name, arguments}} (strings) or {id, type: "custom", custom: {name, input}}. */
static int tool_call_fields(const cJSON *tc)
{
    if (!cJSON_IsObject(tc) || !cJSON_IsString(get(tc, "id"))) return -1;
    const cJSON *type = get(tc, "type");
    if (str_eq(type, "function")) {
        const cJSON *fn = get(tc, "function");
        return cJSON_IsObject(fn) && cJSON_IsString(get(fn, "name")) && cJSON_IsString(get(fn, "arguments")) ? 5 : -1;
    }
    if (str_eq(type, "custom")) {
        const cJSON *c = get(tc, "custom");
        return cJSON_IsObject(c) && cJSON_IsString(get(c, "name")) && cJSON_IsString(get(c, "input")) ? 5 : -1;
    }
    return -1;
}

/* OpenAI's message type for the role (role already matches). */
static int openai_fields(const cJSON *m, enum msg_kind k)
{
    int n = 1;
    const cJSON *content = get(m, "content"), *name = get(m, "name");
    if (name) {
        if (!cJSON_IsString(name)) return -1;
        n++;
    }
    bool content_ok = cJSON_IsString(content) || cJSON_IsArray(content);
    switch (k) {
    case MK_DEVELOPER: case MK_SYSTEM: case MK_USER:
        return content_ok ? n + 1 : -1;
    case MK_TOOL:
        return content_ok && cJSON_IsString(get(m, "tool_call_id")) ? n + 2 : -1;
    case MK_FUNCTION:
        return content && (is_null(content) || cJSON_IsString(content)) && cJSON_IsString(name) ? n + 1 : -1;
    case MK_ASSISTANT: {
        if (content) {
            if (!content_ok && !is_null(content)) return -1;
            n++;
        }
        const cJSON *refusal = get(m, "refusal"), *audio = get(m, "audio"), *fc = get(m, "function_call"),
                    *tcs = get(m, "tool_calls");
        if (refusal) {
            if (!is_null(refusal) && !cJSON_IsString(refusal)) return -1;
            n++;
        }
        if (audio) {
            if (cJSON_IsObject(audio) && cJSON_IsString(get(audio, "id"))) n += 2;
            else if (is_null(audio)) n++;
            else return -1;
        }
        if (fc) {
            if (cJSON_IsObject(fc) && cJSON_IsString(get(fc, "name")) && cJSON_IsString(get(fc, "arguments"))) n += 3;
            else if (is_null(fc)) n++;
            else return -1;
        }
        if (tcs) {
            if (!cJSON_IsArray(tcs)) return -1;   /* Iterable: null does not validate */
            n++;
        }
        return n;
    }
    default:
        return -1;
    }
}

/* vLLM's CustomChatCompletionMessageParam: any role; content a string or a
 * list of parts (not null); optional name, tool_call_id, tool_calls,
 * reasoning, tools, task. */
static int custom_fields(const cJSON *m)
{
    int n = 1;
    const cJSON *content = get(m, "content");
    if (content) {
        if (cJSON_IsArray(content)) {
            for (const cJSON *p = content->child; p; p = p->next) {
                int k = part_fields(p);
                if (k < 0) return -1;
                n += k;
            }
        } else if (!cJSON_IsString(content)) {
            return -1;
        }
        n++;
    }
    const cJSON *v;
    if ((v = get(m, "name"))) {
        if (!cJSON_IsString(v)) return -1;
        n++;
    }
    static const char *const opt_str[] = {"tool_call_id", "task"};
    for (size_t i = 0; i < PL_ARRAY_LEN(opt_str); i++) {
        if (!(v = get(m, opt_str[i]))) continue;
        if (!is_null(v) && !cJSON_IsString(v)) return -1;
        n++;
    }
    if ((v = get(m, "tool_calls"))) {
        if (cJSON_IsArray(v)) {
            for (const cJSON *tc = v->child; tc; tc = tc->next) {
                int k = tool_call_fields(tc);
                if (k < 0) return -1;
                n += k;
            }
        } else if (!is_null(v)) {
            return -1;
        }
        n++;
    }
    if ((v = get(m, "reasoning"))) {
        if (cJSON_IsObject(v) && str_eq(get(v, "type"), "prompt_embeds") && cJSON_IsString(get(v, "data"))) n += 2;
        else if (!is_null(v) && !cJSON_IsString(v)) return -1;
        n++;
    }
    if ((v = get(m, "tools"))) {
        if (cJSON_IsArray(v)) {
            for (const cJSON *t = v->child; t; t = t->next) {
                const cJSON *fn = cJSON_IsObject(t) ? get(t, "function") : NULL;
                if (!str_eq(get(t, "type"), "function") || !cJSON_IsObject(fn) || !cJSON_IsString(get(fn, "name")))
                    return -1;
                n += 3;
            }
        } else if (!is_null(v)) {
            return -1;
        }
        n++;
    }
    return n;
}

/* A clear sentence for a message no member of the union accepts. */
static int message_refused(const cJSON *m, size_t mi, tok_error *e)
{
    const cJSON *role = get(m, "role"), *content = get(m, "content"), *tcs = get(m, "tool_calls");
    const char *r = role->valuestring;
    if (content && !cJSON_IsString(content) && !cJSON_IsArray(content) && !is_null(content))
        return BAD(e, "messages", "messages[%zu].content must be a string or a list of content parts", mi);
    if (is_null(content) && strcmp(r, "assistant") && strcmp(r, "function"))
        return BAD(e, "messages", "messages[%zu].content is null: only assistant messages may have null content "
                   "(send a string, a list of parts, or leave it out)", mi);
    if (is_null(content) && is_null(tcs))
        return BAD(e, "messages", "messages[%zu]: an assistant message with null content must not have "
                   "'tool_calls': null (leave tool_calls out or send a list)", mi);
    if (tcs && cJSON_IsArray(tcs)) {
        size_t ti = 0;
        for (const cJSON *tc = tcs->child; tc; tc = tc->next, ti++)
            if (tool_call_fields(tc) < 0)
                return BAD(e, "messages", "messages[%zu].tool_calls[%zu] must be {\"id\": str, \"type\": \"function\", "
                           "\"function\": {\"name\": str, \"arguments\": str}}", mi, ti);
    }
    if (!strcmp(r, "tool") && !cJSON_IsString(get(m, "tool_call_id")) && get(m, "tool_call_id") && !is_null(get(m, "tool_call_id")))
        return BAD(e, "messages", "messages[%zu].tool_call_id must be a string", mi);
    return BAD(e, "messages", "messages[%zu] is not a valid %s message (check the types of its fields)", mi, r);
}

static int choose_type(const cJSON *m, size_t mi, msg_type *t, tok_error *e)
{
    if (!cJSON_IsObject(m)) return BAD(e, "messages", "messages[%zu] must be an object", mi);
    const cJSON *role = get(m, "role");
    if (!cJSON_IsString(role)) return BAD(e, "messages", "messages[%zu].role is required and must be a string", mi);
    int ok_kind = -1;
    for (int k = 0; k < (int)PL_ARRAY_LEN(openai_roles); k++)
        if (!strcmp(role->valuestring, openai_roles[k])) ok_kind = k;
    int no = ok_kind >= 0 ? openai_fields(m, (enum msg_kind)ok_kind) : -1;
    int nc = custom_fields(m);
    if (no < 0 && nc < 0) return message_refused(m, mi, e);
    bool custom = nc > no;
    t->kind = custom ? MK_CUSTOM : (enum msg_kind)ok_kind;
    t->lazy_content = !custom && cJSON_IsArray(get(m, "content"));
    /* OpenAI's assistant type: vLLM's after-validator lists tool_calls, so
     * they are checked with the request, not later */
    const cJSON *tcs = get(m, "tool_calls");
    if (!custom && t->kind == MK_ASSISTANT && cJSON_IsArray(tcs)) {
        size_t ti = 0;
        for (const cJSON *tc = tcs->child; tc; tc = tc->next, ti++)
            if (tool_call_fields(tc) < 0)
                return BAD(e, "messages", "messages[%zu].tool_calls[%zu] must be {\"id\": str, \"type\": \"function\", "
                           "\"function\": {\"name\": str, \"arguments\": str}}", mi, ti);
    }
    return 0;
}

/* ChatCompletionRequest's before-validator, which runs ahead of all type
 * checks: reasoning_content is dropped, its value moving to reasoning
 * unless that is set. messages: a copy the caller owns. */
static void rename_reasoning(cJSON *messages)
{
    for (cJSON *m = messages->child; m; m = m->next) {
        if (!cJSON_IsObject(m)) continue;
        cJSON *rc = cJSON_DetachItemFromObjectCaseSensitive(m, "reasoning_content");
        const cJSON *r = get(m, "reasoning");
        if (rc && !is_null(rc) && (!r || is_null(r))) {
            cJSON_DeleteItemFromObjectCaseSensitive(m, "reasoning");
            cJSON_AddItemToObject(m, "reasoning", rc);
        } else {
            cJSON_Delete(rc);
        }
    }
}

int tok_messages_check(const cJSON *messages, tok_error *e)
{
    if (!messages) return BAD(e, "messages", "'messages' is required");
    if (!cJSON_IsArray(messages)) return BAD(e, "messages", "'messages' must be a list");
    cJSON *copy = cJSON_Duplicate(messages, 1);
    if (!copy) return tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
    rename_reasoning(copy);
    size_t mi = 0;
    int rc = 0;
    for (const cJSON *m = copy->child; m && !rc; m = m->next, mi++) {
        msg_type t;
        rc = choose_type(m, mi, &t, e);
    }
    cJSON_Delete(copy);
    return rc;
}

/* The parts OpenAI's types accept, checked when vLLM iterates them. */
static int lazy_part_check(const cJSON *p, enum msg_kind k, size_t mi, size_t pi, tok_error *e)
{
    const cJSON *type = cJSON_IsObject(p) ? get(p, "type") : NULL;
    if (str_eq(type, "text") && cJSON_IsString(get(p, "text"))) return 0;
    if (k == MK_ASSISTANT && str_eq(type, "refusal") && cJSON_IsString(get(p, "refusal"))) return 0;
    if (k == MK_USER) {
        const cJSON *iu = get(p, "image_url"), *ia = get(p, "input_audio");
        if (str_eq(type, "image_url") && cJSON_IsObject(iu) && cJSON_IsString(get(iu, "url"))) return 0;
        if (str_eq(type, "input_audio") && cJSON_IsObject(ia) && cJSON_IsString(get(ia, "data")) &&
            (str_eq(get(ia, "format"), "wav") || str_eq(get(ia, "format"), "mp3"))) return 0;
        if (str_eq(type, "file") && cJSON_IsObject(get(p, "file"))) return 0;
    }
    static const char *const allowed[] = {
        [MK_DEVELOPER] = "{\"type\": \"text\", \"text\": str}", [MK_SYSTEM] = "{\"type\": \"text\", \"text\": str}",
        [MK_TOOL] = "{\"type\": \"text\", \"text\": str}",
        [MK_USER] = "text, image_url, input_audio or file parts",
        [MK_ASSISTANT] = "{\"type\": \"text\", \"text\": str} or {\"type\": \"refusal\", \"refusal\": str}",
    };
    return BAD(e, NULL, "messages[%zu].content[%zu]: the parts of a %s message must be %s", mi, pi,
               openai_roles[k], allowed[k] ? allowed[k] : "text parts");
}

/* ================================================================ content parts */

#define BILLING_HEADER "x-anthropic-billing-header"

/* Keys vLLM's part types know (_KNOWN_CONTENT_PART_FIELDS); a text part
 * keeps every other key (cache_control, ...) when handed to the template. */
static bool known_part_field(const char *k)
{
    static const char *const known[] = {
        "audio_embeds", "audio_url", "closed", "data", "file", "image_embeds", "image_pil", "image_url",
        "input_audio", "name", "prompt_cache_breakpoint", "refusal", "text", "thinking", "type", "uuid",
        "video_embeds", "video_url",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(known); i++)
        if (!strcmp(k, known[i])) return true;
    return false;
}

enum part_class { PC_SKIP, PC_TEXT, PC_TOOL_REF, PC_MEDIA };

/* Media reaches vLLM's multimodal registry, which refuses text-only models. */
static int fail_media(const char *model, tok_error *e)
{
    return tok_fail(e, 400, "BadRequestError", NULL, "%s is not a multimodal model", model);
}

/* parse_chat_message_content_mm_part + the checks after it: what kind of
 * part this is and its value (a borrowed node, NULL for a missing key). */
static int classify_part(const cJSON *p, enum part_class *cls, const cJSON **value, const char *model, tok_error *e)
{
    static const char *const text_types[] = {"text", "input_text", "output_text"};
    static const char *const media_types[] = {
        "input_image", "image_url", "image_embeds", "audio_embeds", "video_embeds", "prompt_embeds",
        "image_pil", "audio_url", "input_audio", "video_url",
    };
    const cJSON *type = get(p, "type"), *uuid = get(p, "uuid");
    bool have_uuid = uuid && !is_null(uuid);
    const char *t = cJSON_IsString(type) ? type->valuestring : NULL;
    *value = NULL;
    if (t && !have_uuid) {
        for (size_t i = 0; i < PL_ARRAY_LEN(text_types); i++)
            if (!strcmp(t, text_types[i])) { *value = get(p, "text"); goto text; }
        if (!strcmp(t, "thinking")) { *value = get(p, "thinking"); goto text; }
        if (!strcmp(t, "refusal")) { *value = get(p, "refusal"); goto text; }
        if (!strcmp(t, "tool_reference")) {
            *value = get(p, "name");
            *cls = PC_TOOL_REF;
            return 0;
        }
        for (size_t i = 0; i < PL_ARRAY_LEN(media_types); i++)
            if (!strcmp(t, media_types[i])) goto media;
        *cls = PC_SKIP;
        return BAD(e, "type", "Unsupported chat content part type: '%s'. Supported types: audio_embeds, audio_url, "
                   "image_embeds, image_pil, image_url, input_audio, input_image, input_text, output_text, "
                   "prompt_embeds, refusal, text, thinking, tool_reference, video_embeds, video_url. "
                   "(parameter=type, value=%s)", t, t);
    }
    if (!type || is_null(type) || have_uuid) {
        static const char *const keys[] = {"image_url", "image_pil", "image_embeds", "audio_embeds", "video_embeds",
                                           "prompt_embeds", "audio_url", "input_audio", "video_url"};
        for (size_t i = 0; i < PL_ARRAY_LEN(keys); i++)
            if (get(p, keys[i])) goto media;
        if (get(p, "tool_reference")) {
            *value = get(p, "name");
            *cls = PC_TOOL_REF;
            return 0;
        }
        return BAD(e, "type", "Missing 'type' field in multimodal part. (parameter=type)");
    }
    return BAD(e, "type", "Invalid 'type' field in multimodal part. (parameter=type)");
text:
    /* text and refusal parts whose value is null are skipped */
    *cls = (!*value || is_null(*value)) && (!strcmp(t, "text") || !strcmp(t, "refusal")) ? PC_SKIP : PC_TEXT;
    return 0;
media:
    *cls = PC_MEDIA;
    return fail_media(model, e);
}

/* _strip_claude_code_billing_header: a system text part that starts with
 * Claude Code's attribution header loses its first line (the part goes when
 * nothing is left). Its value changes every request; keeping it would miss
 * the prefix cache. parts: a list of parts (a new list is returned). */
static cJSON *strip_billing(const cJSON *parts)
{
    cJSON *out = cJSON_CreateArray();
    for (const cJSON *p = parts->child; out && p; p = p->next) {
        const cJSON *text = cJSON_IsString(p) ? p : cJSON_IsObject(p) && str_eq(get(p, "type"), "text") ? get(p, "text") : NULL;
        const char *s = cJSON_IsString(text) ? text->valuestring : NULL;
        if (!s || strncmp(s, BILLING_HEADER, strlen(BILLING_HEADER))) {
            cJSON_AddItemToArray(out, cJSON_Duplicate(p, 1));
            continue;
        }
        const char *nl = strchr(s, '\n');
        if (!nl || !nl[1]) continue;
        if (cJSON_IsString(p)) {
            cJSON_AddItemToArray(out, cJSON_CreateString(nl + 1));
        } else {
            cJSON *q = cJSON_Duplicate(p, 1);
            if (q) cJSON_ReplaceItemInObjectCaseSensitive(q, "text", cJSON_CreateString(nl + 1));
            cJSON_AddItemToArray(out, q);
        }
    }
    return out;
}

/* {"type": "text", "text": value} plus the part's unknown keys. */
static cJSON *text_part(const cJSON *p, const cJSON *value)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "type", "text");
    cJSON_AddItemToObject(r, "text", value ? cJSON_Duplicate(value, 1) : cJSON_CreateNull());
    for (const cJSON *c = p && cJSON_IsObject(p) ? p->child : NULL; c; c = c->next)
        if (!known_part_field(c->string)) cJSON_AddItemToObject(r, c->string, cJSON_Duplicate(c, 1));
    return r;
}

/* parse_chat_message_content_parts: the content list as the template sees
 * it — a list of parts (openai format) or the texts joined by newlines
 * (string format). */
static int convert_parts(const cJSON *parts, const tok_chat_opts *o, cJSON **out, tok_error *e)
{
    cJSON *list = cJSON_CreateArray();
    pl_buf joined;
    pl_buf_init(&joined);
    size_t ntexts = 0;
    int rc = 0;
    for (const cJSON *p = parts->child; p && !rc; p = p->next) {
        cJSON *item = NULL;
        const char *text = NULL;
        if (cJSON_IsString(p)) {
            item = text_part(NULL, p);
            text = p->valuestring;
        } else {
            enum part_class cls = PC_SKIP;
            const cJSON *value;
            if ((rc = classify_part(p, &cls, &value, o->model_name, e))) break;
            if (cls == PC_SKIP) continue;
            if (cls == PC_TEXT) {
                item = text_part(p, value);
                text = cJSON_IsString(value) ? value->valuestring : NULL;
                if (!o->openai_format && value && !cJSON_IsString(value) && !is_null(value)) {
                    rc = tok_fail(e, 400, "BadRequestError", NULL, "sequence item %zu: expected str instance", ntexts);
                    break;
                }
            } else {   /* tool reference: kept for the template to expand */
                item = cJSON_CreateObject();
                cJSON_AddStringToObject(item, "type", "tool_reference");
                cJSON_AddItemToObject(item, "name", value ? cJSON_Duplicate(value, 1) : cJSON_CreateNull());
                text = cJSON_IsString(value) ? value->valuestring : NULL;
            }
        }
        if (o->openai_format) {
            cJSON_AddItemToArray(list, item);
        } else {
            cJSON_Delete(item);
            if (text && *text) {   /* empty strings are dropped (`if parse_res`) */
                if (ntexts++) pl_buf_putc(&joined, '\n');
                pl_buf_puts(&joined, text);
            }
        }
    }
    if (!rc && !o->openai_format) {
        cJSON_Delete(list);
        list = cJSON_CreateString(joined.data ? joined.data : "");
    }
    pl_buf_free(&joined);
    if (rc || !list) {
        cJSON_Delete(list);
        return rc ? rc : tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
    }
    *out = list;
    return 0;
}

/* ================================================================ one message */

/* A tool result given as parts: texts joined by newlines, unless a part is
 * not text (a tool_reference), which keeps the list. */
static cJSON *tool_content(cJSON *list)
{
    if (!cJSON_IsArray(list)) return list;
    for (const cJSON *p = list->child; p; p = p->next)
        if (cJSON_IsObject(p) && !str_eq(get(p, "type"), "text")) return list;
    pl_buf b;
    pl_buf_init(&b);
    size_t n = 0;
    for (const cJSON *p = list->child; p; p = p->next) {
        if (!cJSON_IsObject(p)) continue;
        const cJSON *t = get(p, "text");
        if (n++) pl_buf_putc(&b, '\n');
        if (cJSON_IsString(t)) pl_buf_puts(&b, t->valuestring);
    }
    cJSON *s = cJSON_CreateString(b.data ? b.data : "");
    pl_buf_free(&b);
    cJSON_Delete(list);
    return s;
}

/* parse_chat_message_content for one message (renamed by
 * rename_reasoning). */
static int convert_message(const cJSON *m, const tok_chat_opts *o, size_t mi, cJSON **out, tok_error *e)
{
    msg_type t;
    int rc = choose_type(m, mi, &t, e);
    if (rc) return rc;
    const char *role = get(m, "role")->valuestring;
    const cJSON *content = get(m, "content");
    const cJSON *reasoning = get(m, "reasoning");
    if (is_null(reasoning)) reasoning = NULL;
    /* parts OpenAI's types left unchecked are validated as they are read */
    size_t pi = 0;
    for (const cJSON *p = t.lazy_content ? content->child : NULL; p; p = p->next, pi++)
        if ((rc = lazy_part_check(p, t.kind, mi, pi, e))) return rc;

    cJSON *parts;
    if (!content || is_null(content)) {
        parts = cJSON_CreateArray();
    } else if (cJSON_IsString(content)) {
        parts = cJSON_CreateArray();
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "text");
        cJSON_AddItemToObject(p, "text", cJSON_Duplicate(content, 0));
        cJSON_AddItemToArray(parts, p);
    } else {
        parts = cJSON_Duplicate(content, 1);
    }
    if (parts && !strcmp(role, "system")) {
        cJSON *s = strip_billing(parts);
        cJSON_Delete(parts);
        parts = s;
    }
    if (!parts) return tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
    cJSON *conv = NULL;
    rc = convert_parts(parts, o, &conv, e);
    cJSON_Delete(parts);
    if (rc) return rc;

    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "role", role);
    if (!strcmp(role, "tool")) conv = tool_content(conv);
    cJSON_AddItemToObject(r, "content", conv);
    if (!strcmp(role, "assistant")) {
        const cJSON *tcs = get(m, "tool_calls");
        if (tcs && !is_null(tcs)) cJSON_AddItemToObject(r, "tool_calls", cJSON_Duplicate(tcs, 1));
        if (reasoning) {
            cJSON_AddItemToObject(r, "reasoning", cJSON_Duplicate(reasoning, 1));
            cJSON_AddItemToObject(r, "reasoning_content", cJSON_Duplicate(reasoning, 1));
        }
    } else if (!strcmp(role, "tool")) {
        const cJSON *id = get(m, "tool_call_id");
        if (id) cJSON_AddItemToObject(r, "tool_call_id", cJSON_Duplicate(id, 1));
    }
    static const char *const str_keys[] = {"name", "task"};
    for (size_t i = 0; i < PL_ARRAY_LEN(str_keys); i++) {
        const cJSON *v = get(m, str_keys[i]);
        if (cJSON_IsString(v)) cJSON_AddItemToObject(r, str_keys[i], cJSON_Duplicate(v, 0));
    }
    if (!strcmp(role, "developer")) {
        const cJSON *tools = get(m, "tools");
        cJSON_AddItemToObject(r, "tools", tools ? cJSON_Duplicate(tools, 1) : cJSON_CreateNull());
    }
    *out = r;
    return 0;
}

/* ================================================================ tool-call arguments */

/* _postprocess_messages: templates iterate arguments as a mapping, so the
 * JSON string clients send is parsed; arguments that are empty, not valid
 * JSON, or not an object become {} (a bad turn in the history must not make
 * every later request fail). */
static int fix_tool_calls(cJSON *msg, tok_error *e)
{
    cJSON *tcs = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    if (!cJSON_IsArray(tcs)) return 0;
    if (!tcs->child) {
        cJSON_DeleteItemFromObjectCaseSensitive(msg, "tool_calls");
        return 0;
    }
    for (cJSON *tc = tcs->child; tc; tc = tc->next) {
        if (!cJSON_IsObject(tc)) return BAD(e, "tool_calls", "assistant tool_calls entries must be objects. (parameter=tool_calls)");
        const cJSON *type = get(tc, "type");
        cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        if ((type && !str_eq(type, "function")) || !cJSON_IsObject(fn))
            return BAD(e, "tool_calls", "chat completions only support assistant tool_calls of type 'function'. "
                       "(parameter=tool_calls)");
        cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        cJSON *parsed = NULL;
        if (pl_json_truthy(args) && cJSON_IsObject(args)) continue;
        if (pl_json_truthy(args) && cJSON_IsString(args)) {
            pl_buf b;
            pl_buf_init(&b);
            pl_json_str_bytes(&b, args->valuestring);
            if (pl_json_parse(&parsed, b.data ? b.data : "", b.len, NULL, 0) == 0 && !cJSON_IsObject(parsed)) {
                cJSON_Delete(parsed);
                parsed = NULL;
            }
            pl_buf_free(&b);
        }
        if (!parsed) parsed = cJSON_CreateObject();
        if (!parsed) return tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
        if (args) cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", parsed);
        else cJSON_AddItemToObject(fn, "arguments", parsed);
    }
    return 0;
}

/* ================================================================ developer role */

/* The text of a system message's content for merging: parts' texts joined
 * by newlines. */
static void system_text(const cJSON *content, pl_buf *out)
{
    if (cJSON_IsString(content)) { pl_buf_puts(out, content->valuestring); return; }
    size_t n = 0;
    for (const cJSON *p = cJSON_IsArray(content) ? content->child : NULL; p; p = p->next) {
        const cJSON *t = cJSON_IsObject(p) ? get(p, "text") : cJSON_IsString(p) ? p : NULL;
        if (!t) continue;
        if (n++) pl_buf_putc(out, '\n');
        if (cJSON_IsString(t)) pl_buf_puts(out, t->valuestring);
    }
}

/* A template that never names the developer role gets developer messages
 * as system messages, and then every system message merged into one at the
 * front (non-empty texts joined by blank lines), as vLLM does. */
static int developer_to_system(cJSON **conv)
{
    bool any = false;
    for (cJSON *m = (*conv)->child; m; m = m->next) any |= str_eq(get(m, "role"), "developer");
    if (!any) return 0;
    for (cJSON *m = (*conv)->child; m; m = m->next) {
        if (!str_eq(get(m, "role"), "developer")) continue;
        cJSON_ReplaceItemInObjectCaseSensitive(m, "role", cJSON_CreateString("system"));
        cJSON_DeleteItemFromObjectCaseSensitive(m, "tools");
    }
    bool needs = false;
    size_t i = 0, nsys = 0;
    pl_buf merged;
    pl_buf_init(&merged);
    for (cJSON *m = (*conv)->child; m; m = m->next, i++) {
        if (!str_eq(get(m, "role"), "system")) continue;
        if (i > 0 || nsys) needs = true;
        pl_buf text;
        pl_buf_init(&text);
        system_text(get(m, "content"), &text);
        if (text.len) {
            if (nsys++) pl_buf_puts(&merged, "\n\n");
            pl_buf_append(&merged, text.data, text.len);
        }
        pl_buf_free(&text);
    }
    if (needs) {
        cJSON *out = cJSON_CreateArray();
        cJSON *sys = cJSON_CreateObject();
        cJSON_AddStringToObject(sys, "role", "system");
        cJSON_AddStringToObject(sys, "content", merged.data ? merged.data : "");
        cJSON_AddItemToArray(out, sys);
        for (cJSON *m = (*conv)->child; m; m = m->next)
            if (!str_eq(get(m, "role"), "system")) cJSON_AddItemToArray(out, cJSON_Duplicate(m, 1));
        cJSON_Delete(*conv);
        *conv = out;
    }
    pl_buf_free(&merged);
    return *conv ? 0 : PL_ERR_NOMEM;
}

int tok_messages_convert(const cJSON *messages, const tok_chat_opts *o, cJSON **out, tok_error *e)
{
    cJSON *conv = cJSON_CreateArray(), *copy = cJSON_Duplicate(messages, 1);
    if (!conv || !copy) {
        cJSON_Delete(conv);
        cJSON_Delete(copy);
        return tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
    }
    rename_reasoning(copy);
    size_t mi = 0;
    int rc = 0;
    for (const cJSON *m = copy->child; m && !rc; m = m->next, mi++) {
        cJSON *r = NULL;
        if (!(rc = convert_message(m, o, mi, &r, e))) cJSON_AddItemToArray(conv, r);
    }
    cJSON_Delete(copy);
    for (cJSON *m = conv->child; m && !rc; m = m->next)
        if (str_eq(get(m, "role"), "assistant")) rc = fix_tool_calls(m, e);
    if (!rc && !o->template_has_developer && developer_to_system(&conv))
        rc = tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
    if (rc) { cJSON_Delete(conv); return rc; }
    *out = conv;
    return 0;
}

/* ================================================================ tools */

/* ChatCompletionToolsParam, validated and dumped as model_dump() gives it to
 * the template: {"type", "function": {"name", "description", "parameters",
 * ["strict"], ["defer_loading"]}, ["defer_loading"]} in that order, null
 * for a missing description/parameters, strict/defer_loading only when set,
 * unknown keys dropped; a tool's defer_loading is copied into its function
 * when the function has none. */
int tok_tools_convert(const cJSON *tools, cJSON **out, tok_error *e)
{
    *out = NULL;
    if (!tools || is_null(tools)) return 0;
    if (!cJSON_IsArray(tools)) return BAD(e, "tools", "'tools' must be a list");
    if (!tools->child)
        return BAD(e, "tools", "`tools` must not be an empty array. Either provide at least one tool or omit the "
                   "field entirely. (parameter=tools)");
    cJSON *list = cJSON_CreateArray();
    size_t ti = 0;
    for (const cJSON *t = tools->child; t; t = t->next, ti++) {
        const cJSON *type = cJSON_IsObject(t) ? get(t, "type") : NULL, *fn = cJSON_IsObject(t) ? get(t, "function") : NULL;
        const cJSON *tdefer = cJSON_IsObject(t) ? get(t, "defer_loading") : NULL;
        const char *bad = NULL;
        if (!cJSON_IsObject(t)) bad = "must be an object";
        else if (type && !str_eq(type, "function")) bad = ".type must be \"function\"";
        else if (!cJSON_IsObject(fn)) bad = ".function must be an object";
        else if (!cJSON_IsString(get(fn, "name"))) bad = ".function.name is required and must be a string";
        else if (get(fn, "description") && !is_null(get(fn, "description")) && !cJSON_IsString(get(fn, "description")))
            bad = ".function.description must be a string";
        else if (get(fn, "parameters") && !is_null(get(fn, "parameters")) && !cJSON_IsObject(get(fn, "parameters")))
            bad = ".function.parameters must be an object";
        else if (get(fn, "strict") && !is_null(get(fn, "strict")) && !cJSON_IsBool(get(fn, "strict")))
            bad = ".function.strict must be a boolean";
        else if (get(fn, "defer_loading") && !is_null(get(fn, "defer_loading")) && !cJSON_IsBool(get(fn, "defer_loading")))
            bad = ".function.defer_loading must be a boolean";
        else if (tdefer && !is_null(tdefer) && !cJSON_IsBool(tdefer))
            bad = ".defer_loading must be a boolean";
        if (bad) {
            cJSON_Delete(list);
            return BAD(e, "tools", "tools[%zu]%s%s", ti, bad[0] == '.' ? "" : " ", bad);
        }
        cJSON *d = cJSON_CreateObject(), *f = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "type", "function");
        cJSON_AddItemToObject(f, "name", cJSON_Duplicate(get(fn, "name"), 0));
        static const char *const opt[] = {"description", "parameters"};
        for (size_t i = 0; i < PL_ARRAY_LEN(opt); i++) {
            const cJSON *v = get(fn, opt[i]);
            cJSON_AddItemToObject(f, opt[i], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
        }
        const cJSON *strict = get(fn, "strict"), *fdefer = get(fn, "defer_loading");
        if (strict && !is_null(strict)) cJSON_AddItemToObject(f, "strict", cJSON_Duplicate(strict, 0));
        if (fdefer && !is_null(fdefer)) cJSON_AddItemToObject(f, "defer_loading", cJSON_Duplicate(fdefer, 0));
        else if (tdefer && !is_null(tdefer)) cJSON_AddItemToObject(f, "defer_loading", cJSON_Duplicate(tdefer, 0));
        cJSON_AddItemToObject(d, "function", f);
        if (tdefer && !is_null(tdefer)) cJSON_AddItemToObject(d, "defer_loading", cJSON_Duplicate(tdefer, 0));
        cJSON_AddItemToArray(list, d);
    }
    *out = list;
    return 0;
}
