/* request.c — one OpenAI request body -> `generate` message(s).
 *
 * A chat body takes vLLM 0.33's request path in vLLM's order: validation as
 * ChatCompletionRequest does it (messages and tools in chat.c), the chat
 * template kwargs as build_chat_params resolves them, rendering as
 * safe_apply_chat_template + transformers' apply_chat_template do it, then
 * tokenization and vLLM's length rules. Refusals carry vLLM's status and,
 * where vLLM wrote the sentence, its words (docs/protocol.md, "Request
 * conformance"). Everything in the body is untrusted: every field is
 * type-checked before use. */
#include "tokenize.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "msg.h"
#include "pyjson.h"
#include "pystr.h"

#define TOK_MAX_N         128   /* choices per request */
#define TOK_MAX_LOGPROBS  20    /* vLLM's default --max-logprobs */
#define TOK_MAX_STOP      64    /* stop strings per request */

/* ================================================================ errors */

int tok_fail(tok_error *e, int code, const char *type, const char *param, const char *fmt, ...)
{
    e->code = code;
    e->type = type;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return code >= 500 ? PL_ERR_INTERNAL : PL_ERR_INVALID;
}

#define BAD(e, param, ...) tok_fail((e), 400, "BadRequestError", (param), __VA_ARGS__)

/* Python's repr of a float, for messages that quote a value as vLLM does. */
static const char *pyf(double d, char *buf, size_t n)
{
    pl_buf b;
    pl_buf_init(&b);
    pl_py_float_repr(&b, d);
    snprintf(buf, n, "%s", b.data ? b.data : "?");
    pl_buf_free(&b);
    return buf;
}

/* ================================================================ typed field access */

/* Absent and null are the same for every optional OpenAI field. */
static const cJSON *field(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_bool(const cJSON *obj, const char *key, bool def, bool *out, tok_error *e)
{
    const cJSON *v = field(obj, key);
    if (!v) { *out = def; return 0; }
    if (!cJSON_IsBool(v)) return BAD(e, key, "'%s' must be a boolean", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static bool str_is(const cJSON *v, const char *s) { return cJSON_IsString(v) && !strcmp(v->valuestring, s); }

/* An int field: exact at any size (json.h); an integral float (5.0) counts,
 * as pydantic's lax ints do. */
static int get_int(const cJSON *obj, const char *key, bool *present, int64_t *out, tok_error *e)
{
    const cJSON *v = field(obj, key);
    *present = v != NULL;
    if (!v) return 0;
    int rc = cJSON_IsNumber(v) ? pl_json_get_i64(v, out) : PL_ERR_INVALID;
    if (rc == PL_ERR_INVALID && cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
        fabs(v->valuedouble) < 9.2e18) {
        *out = (int64_t)v->valuedouble;
        rc = 0;
    }
    if (rc == PL_ERR_RANGE)
        return BAD(e, key, "'%s' must be an integer between -9223372036854775808 and 9223372036854775807", key);
    if (rc) return BAD(e, key, "'%s' must be an integer", key);
    return 0;
}

static int get_num(const cJSON *obj, const char *key, bool *present, double *out, tok_error *e)
{
    const cJSON *v = field(obj, key);
    *present = v != NULL;
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return BAD(e, key, "'%s' must be a number", key);
    *out = v->valuedouble;
    if (!isfinite(*out)) return BAD(e, key, "'%s' must be a finite number", key);
    return 0;
}

/* ================================================================ chat request validation */

static const char *const efforts[] = {"none", "minimal", "low", "medium", "high", "xhigh", "max"};

/* A chat request as ChatCompletionRequest validates it (pydantic and the
 * model validators of vllm/entrypoints/openai/chat_completion/protocol.py),
 * before anything is rendered. */
typedef struct chat_req {
    const cJSON *messages;
    cJSON       *tools;      /* as the template gets them (tok_tools_convert), or NULL */
    const char  *effort;     /* reasoning_effort, or NULL */
    bool         add_gen, cont;
} chat_req;

static void chat_req_free(chat_req *cr) { cJSON_Delete(cr->tools); }

static int check_chat_request(const cJSON *body, chat_req *cr, tok_error *e)
{
    memset(cr, 0, sizeof *cr);
    cr->messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
    int rc = tok_messages_check(cr->messages, e);
    if (rc) return rc;
    if (pl_json_truthy(cJSON_GetObjectItemCaseSensitive(body, "continue_final_message")) &&
        pl_json_truthy(cJSON_GetObjectItemCaseSensitive(body, "add_generation_prompt")))
        return BAD(e, NULL, "Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
    if ((rc = get_bool(body, "add_generation_prompt", true, &cr->add_gen, e))) return rc;
    if ((rc = get_bool(body, "continue_final_message", false, &cr->cont, e))) return rc;
    const cJSON *kw = field(body, "chat_template_kwargs");
    if (kw && !cJSON_IsObject(kw)) return BAD(e, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
    const cJSON *ct = field(body, "chat_template");
    if (ct && !cJSON_IsString(ct)) return BAD(e, "chat_template", "'chat_template' must be a string");
    const cJSON *docs = field(body, "documents");
    if (docs && !cJSON_IsArray(docs)) return BAD(e, "documents", "'documents' must be a list of objects");
    for (const cJSON *d = docs ? docs->child : NULL; d; d = d->next) {
        if (!cJSON_IsObject(d)) return BAD(e, "documents", "'documents' must be a list of objects");
        for (const cJSON *v = d->child; v; v = v->next)
            if (!cJSON_IsString(v)) return BAD(e, "documents", "the values of a document must be strings");
    }
    const cJSON *eff = field(body, "reasoning_effort");
    if (eff) {
        for (size_t i = 0; cJSON_IsString(eff) && i < PL_ARRAY_LEN(efforts); i++)
            if (!strcmp(eff->valuestring, efforts[i])) cr->effort = efforts[i];
        if (!cr->effort)
            return BAD(e, "reasoning_effort", "'reasoning_effort' must be one of 'none', 'minimal', 'low', 'medium', "
                       "'high', 'xhigh' or 'max'");
    }
    return tok_tools_convert(cJSON_GetObjectItemCaseSensitive(body, "tools"), &cr->tools, e);
}

/* ================================================================ chat template kwargs */

/* merge_kwargs (vllm/renderers/params.py): overrides whose value is None or
 * "auto" do not count. */
static bool unset_value(const cJSON *v) { return !v || cJSON_IsNull(v) || (cJSON_IsString(v) && !strcmp(v->valuestring, "auto")); }

static void kw_set(cJSON *kw, const char *key, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(kw, key);
    cJSON_AddItemToObject(kw, key, v);
}

/* The chat_template_kwargs vLLM works with: ChatCompletionRequest.
 * build_chat_params (the request's own kwargs, then add_generation_prompt,
 * continue_final_message, documents and reasoning_effort from the body, and
 * enable_thinking = effort != "none" when an effort is given and the kwargs
 * do not set enable_thinking), then with_defaults over the server's
 * --default-chat-template-kwargs. What the reasoning parser gets too. */
static int chat_kwargs(const tok_model *m, const cJSON *body, const chat_req *cr, cJSON **out, tok_error *e)
{
    const cJSON *user = field(body, "chat_template_kwargs");
    cJSON *ck = user ? cJSON_Duplicate(user, 1) : cJSON_CreateObject();
    kw_set(ck, "add_generation_prompt", cJSON_CreateBool(cr->add_gen));
    kw_set(ck, "continue_final_message", cJSON_CreateBool(cr->cont));
    const cJSON *docs = field(body, "documents");
    if (docs) kw_set(ck, "documents", cJSON_Duplicate(docs, 1));
    if (cr->effort) {
        kw_set(ck, "reasoning_effort", cJSON_CreateString(cr->effort));
        if (!user || !cJSON_GetObjectItemCaseSensitive(user, "enable_thinking"))
            kw_set(ck, "enable_thinking", cJSON_CreateBool(strcmp(cr->effort, "none") != 0));
    }
    cJSON *kw = cJSON_Duplicate(tok_model_default_kwargs(m), 1);
    for (const cJSON *c = ck ? ck->child : NULL; kw && c; c = c->next)
        if (!unset_value(c)) kw_set(kw, c->string, cJSON_Duplicate(c, 1));
    cJSON_Delete(ck);
    if (!kw) return tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
    *out = kw;
    return 0;
}

/* Thinking is on unless enable_thinking or thinking is false (vLLM glm45). */
/* Whether the reasoning parser starts in reasoning, as vLLM 0.33's glm45
 * parser decides it (parser/glm47_moe.py): on when neither `thinking` nor
 * `enable_thinking` is given (or both are null); otherwise Python's
 * bool(thinking) or bool(enable_thinking); a template without a switch
 * (tok_model_always_thinks) ignores "off". */
static bool thinking_on(const tok_model *m, const cJSON *kw)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(kw, "thinking");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(kw, "enable_thinking");
    bool t_none = !t || cJSON_IsNull(t), et_none = !et || cJSON_IsNull(et);
    if (t_none && et_none) return true;
    bool on = (!t_none && pl_json_truthy(t)) || (!et_none && pl_json_truthy(et));
    if (!on && tok_model_always_thinks(m) && (cJSON_IsFalse(t) || cJSON_IsFalse(et))) return true;
    return on;
}

/* Parameters of transformers' apply_chat_template (and vLLM's
 * safe_apply_chat_template): consumed there, never template variables. */
static bool apply_param(const char *k)
{
    static const char *const named[] = {
        "conversation", "tools", "documents", "chat_template", "add_generation_prompt", "continue_final_message",
        "tokenize", "sanitize_control_tokens", "padding", "truncation", "max_length", "return_tensors",
        "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(named); i++)
        if (!strcmp(k, named[i])) return true;
    return false;
}

/* ================================================================ continue_final_message */

/* transformers 5.x: a tag is appended to the final message's text (its last
 * text part), the chat is rendered, and the render is cut at the tag. */
#define CFM_TAG "CONTINUE_FINAL_MESSAGE_TAG "

static int cfm_mark(const tok_model *m, cJSON *conv, pl_buf *final, tok_error *e)
{
    cJSON *last = conv->child;
    while (last && last->next) last = last->next;
    cJSON *content = last ? cJSON_GetObjectItemCaseSensitive(last, "content") : NULL;
    if (!content || cJSON_IsNull(content))
        return BAD(e, NULL, "continue_final_message is set but the final message has no \"content\" to continue!");
    if (!tok_model_mentions_content(m))
        return BAD(e, NULL, "continue_final_message is set to \"content\" but this is not an accepted field in the chat_template");
    cJSON *holder = last, *text = content;
    if (cJSON_IsArray(content)) {
        text = NULL;
        for (cJSON *b = content->child; b; b = b->next) {   /* the last block with a text */
            cJSON *t = cJSON_IsObject(b) ? cJSON_GetObjectItemCaseSensitive(b, "text") : NULL;
            if (t) { holder = b; text = t; }
        }
        if (!text)
            return BAD(e, NULL, "continue_final_message is set but we could not find any text to continue in the final message!");
    }
    if (!cJSON_IsString(text)) return BAD(e, NULL, "continue_final_message: the final message's text is not a string");
    pl_buf_puts(final, text->valuestring);
    pl_buf tagged;
    pl_buf_init(&tagged);
    pl_buf_puts(&tagged, text->valuestring);
    pl_buf_puts(&tagged, CFM_TAG);
    cJSON_ReplaceItemInObjectCaseSensitive(holder, text->string, cJSON_CreateString(tagged.data ? tagged.data : ""));
    pl_buf_free(&tagged);
    return 0;
}

static int cfm_cut(pl_buf *prompt, const pl_buf *final, tok_error *e)
{
    pl_buf fb;
    pl_buf_init(&fb);
    pl_json_str_bytes(&fb, final->data ? final->data : "");
    size_t a = pl_py_lstrip_off(fb.data ? fb.data : "", fb.len);
    size_t slen = pl_py_rstrip_len(fb.data ? fb.data + a : "", fb.len - a);
    const char *tag = CFM_TAG;
    size_t taglen = strlen(tag) - 1;   /* the tag without its space */
    bool found = (!slen || memmem(prompt->data, prompt->len, fb.data + a, slen)) &&
                 memmem(prompt->data, prompt->len, tag, taglen);
    if (!found) {
        int rc = BAD(e, NULL, "continue_final_message is set but the final message does not appear in the chat after "
                     "applying the chat template! This can happen if the chat template deletes portions of the final "
                     "message. Please verify the chat template and final message in your chat to ensure they are "
                     "compatible.Final message to continue: %.*s\nRendered chat:\n%s", (int)slen, fb.data + a,
                     prompt->data ? prompt->data : "");
        pl_buf_free(&fb);
        return rc;
    }
    pl_buf_free(&fb);
    const char *loc = NULL;
    for (const char *p = prompt->data; (p = memmem(p, prompt->len - (size_t)(p - prompt->data), tag, taglen)); p++)
        loc = p;
    size_t off = (size_t)(loc - prompt->data);
    if (off + taglen + 1 <= prompt->len && loc[taglen] == ' ') prompt->len = off;
    else prompt->len = pl_py_rstrip_len(prompt->data, off);
    prompt->data[prompt->len] = 0;
    return 0;
}

/* ================================================================ rendering */

/* safe_apply_chat_template + transformers' apply_chat_template: the
 * conversation, the template variables (special tokens, then the kwargs
 * that are not apply_chat_template parameters, then messages, tools,
 * documents, add_generation_prompt) and the render. kw: chat_kwargs. */
/* A template in the request is untrusted code: refused, as vLLM refuses it
 * without --trust-request-chat-template (glm-tokenize has no such flag). */
static int check_template_trust(const cJSON *body, tok_error *e)
{
    const cJSON *user_kw = field(body, "chat_template_kwargs");
    if (field(body, "chat_template") || (user_kw && field(user_kw, "chat_template")))
        return BAD(e, NULL, "Chat template is passed with request, but --trust-request-chat-template is not set. "
                   "Refused request with untrusted chat template.");
    return 0;
}

static int render_chat(const tok_model *m, const chat_req *cr, const cJSON *kw, pl_buf *prompt, tok_error *e)
{
    if (!tok_model_has_template(m))
        return BAD(e, NULL, "this model has no chat template; pass --chat-template or use /v1/completions");
    tok_chat_opts o = {tok_model_openai_content(m), tok_model_names_developer(m), tok_model_name(m)};
    cJSON *conv = NULL;
    int rc = tok_messages_convert(cr->messages, &o, &conv, e);
    if (rc) return rc;
    bool add_gen = pl_json_truthy(cJSON_GetObjectItemCaseSensitive(kw, "add_generation_prompt"));
    bool cont = pl_json_truthy(cJSON_GetObjectItemCaseSensitive(kw, "continue_final_message"));
    pl_buf final;
    pl_buf_init(&final);
    if (!conv->child)
        rc = BAD(e, NULL, "Cannot apply chat template to an empty conversation. Provide at least one message.");
    else if (cont && add_gen)
        rc = BAD(e, NULL, "continue_final_message and add_generation_prompt are not compatible. Use "
                 "continue_final_message when you want the model to continue the final message, and "
                 "add_generation_prompt when you want to add a header that will prompt it to start a new assistant "
                 "message instead.");
    else if (cont)
        rc = cfm_mark(m, conv, &final, e);
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(kw, "tools");   /* the kwargs' own tools win */
    if (!tools) tools = cr->tools;
    const cJSON *docs = cJSON_GetObjectItemCaseSensitive(kw, "documents");
    for (const cJSON *d = docs && cJSON_IsArray(docs) ? docs->child : NULL; !rc && d; d = d->next)
        if (!cJSON_IsObject(d)) rc = BAD(e, NULL, "Documents should be a list of dicts with 'title' and 'text' keys!");
    if (rc) { cJSON_Delete(conv); pl_buf_free(&final); return rc; }

    cJSON *ctx = cJSON_CreateObject();
    tok_model_add_special_vars(m, ctx);
    for (const cJSON *c = kw->child; c; c = c->next)
        if (!apply_param(c->string)) kw_set(ctx, c->string, cJSON_Duplicate(c, 1));
    kw_set(ctx, "messages", conv);
    kw_set(ctx, "tools", tools ? cJSON_Duplicate(tools, 1) : cJSON_CreateNull());
    kw_set(ctx, "documents", docs ? cJSON_Duplicate(docs, 1) : cJSON_CreateNull());
    kw_set(ctx, "add_generation_prompt", cJSON_CreateBool(add_gen));

    char err[512];
    pl_buf_reset(prompt);
    rc = tok_model_render(m, ctx, prompt, err, sizeof err);
    cJSON_Delete(ctx);
    if (rc == PL_ERR_NOMEM) rc = tok_fail(e, 500, "InternalServerError", NULL, "out of memory rendering the chat template");
    else if (rc) rc = BAD(e, NULL, "%s", err);   /* vLLM: the template's own reason, 400 */
    else if (cont) rc = cfm_cut(prompt, &final, e);
    pl_buf_free(&final);
    return rc;
}

/* ================================================================ tool_choice */

#define TC_USAGE "Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`"

/* Python's str() of a JSON value, for messages that quote one. */
static void py_str(pl_buf *b, const cJSON *v)
{
    if (cJSON_IsString(v)) pl_json_str_bytes(b, v->valuestring);
    else if (!v || cJSON_IsNull(v)) pl_buf_puts(b, "None");
    else if (cJSON_IsBool(v)) pl_buf_puts(b, cJSON_IsTrue(v) ? "True" : "False");
    else pl_pyjson_dump(b, v, NULL);
}

/* A refusal that quotes a value as Python's str() shows it; fmt has one %s. */
static int bad_quoting(tok_error *e, const char *param, const char *fmt, const cJSON *v)
{
    pl_buf b;
    pl_buf_init(&b);
    py_str(&b, v);
    int rc = BAD(e, param, fmt, b.data ? b.data : "");
    pl_buf_free(&b);
    return rc;
}

/* ChatCompletionRequest.check_tool_usage. *choice_out: what parse-tools
 * follows ("none", "auto", "required" or the named choice). */
static int resolve_tool_choice(const cJSON *body, cJSON **choice_out, tok_error *e)
{
    const cJSON *tools = field(body, "tools");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(body, "tool_choice");
    bool have_tools = tools && cJSON_GetArraySize(tools) > 0;
    if (!tc || cJSON_IsNull(tc)) {
        *choice_out = cJSON_CreateString(have_tools ? "auto" : "none");
        return 0;
    }
    if (str_is(tc, "none")) { *choice_out = cJSON_CreateString("none"); return 0; }
    if (!tools) return BAD(e, "tool_choice", "When using `tool_choice`, `tools` must be set. (parameter=tool_choice)");
    if (!str_is(tc, "auto") && !str_is(tc, "required") && !cJSON_IsObject(tc))
        return bad_quoting(e, "tool_choice", "Invalid value for `tool_choice`: %s! Only named tools, \"none\", \"auto\" "
                           "or \"required\" are supported. (parameter=tool_choice)", tc);
    if (cJSON_IsString(tc)) { *choice_out = cJSON_CreateString(tc->valuestring); return 0; }
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    if (!cJSON_IsObject(fn))
        return bad_quoting(e, "tool_choice.function", "Invalid value for `function`: `%s` in `tool_choice`! " TC_USAGE
                           " (parameter=tool_choice.function)", fn);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!name)
        return BAD(e, "tool_choice.function.name", "Expected field `name` in `function` in `tool_choice`! " TC_USAGE
                   " (parameter=tool_choice.function.name)");
    if (!cJSON_IsString(name) || !name->valuestring[0])
        return bad_quoting(e, "tool_choice.function.name", "Invalid `name` in `function`: `%s` in `tool_choice`! "
                           TC_USAGE " (parameter=tool_choice.function.name)", name);
    for (const cJSON *t = cJSON_IsArray(tools) ? tools->child : NULL; t; t = t->next) {
        const cJSON *tf = cJSON_IsObject(t) ? cJSON_GetObjectItemCaseSensitive(t, "function") : NULL;
        const cJSON *tn = cJSON_IsObject(tf) ? cJSON_GetObjectItemCaseSensitive(tf, "name") : NULL;
        if (cJSON_IsString(tn) && !strcmp(tn->valuestring, name->valuestring)) {
            cJSON *choice = cJSON_CreateObject();
            cJSON_AddStringToObject(choice, "type", "function");
            cJSON *f = cJSON_AddObjectToObject(choice, "function");
            cJSON_AddItemToObject(f, "name", cJSON_Duplicate(name, 0));
            *choice_out = choice;
            return 0;
        }
    }
    return BAD(e, "tool_choice", "The tool specified in `tool_choice` does not match any of the specified `tools` "
               "(parameter=tool_choice)");
}

/* ================================================================ sampling */

typedef struct {
    int64_t n, max_tokens, min_tokens, top_k, seed, logprobs, prompt_logprobs;
    bool    has_max_tokens, has_seed, has_logprobs, has_prompt_logprobs, ignore_eos;
    const char *max_param;  /* the field max_tokens came from */
    double  temperature, top_p, min_p, presence, frequency, repetition;
} sampling;

/* A value from the request, else generation_config.json, else vLLM's default. */
static int num_with_default(const cJSON *body, const cJSON *gen, const char *key, double def, double *out, tok_error *e)
{
    bool present;
    int rc = get_num(body, key, &present, out, e);
    if (rc || present) return rc;
    const cJSON *g = gen ? field(gen, key) : NULL;
    *out = cJSON_IsNumber(g) ? g->valuedouble : def;
    return 0;
}

static int parse_sampling(const tok_model *m, enum tok_endpoint ep, const cJSON *body, sampling *s, tok_error *e)
{
    const cJSON *gen = tok_model_gen_defaults(m);
    char f[40];
    bool present;
    int rc;
    memset(s, 0, sizeof *s);
    s->n = 1;
    if ((rc = get_int(body, "n", &present, &s->n, e))) return rc;
    if (s->n < 1) return BAD(e, "n", "n must be at least 1, got %lld.", (long long)s->n);
    if (s->n > TOK_MAX_N) return BAD(e, "n", "n must be at most %d, got %lld.", TOK_MAX_N, (long long)s->n);

    if ((rc = num_with_default(body, gen, "temperature", 1.0, &s->temperature, e))) return rc;
    if ((rc = num_with_default(body, gen, "top_p", 1.0, &s->top_p, e))) return rc;
    if ((rc = num_with_default(body, gen, "min_p", 0.0, &s->min_p, e))) return rc;
    if ((rc = num_with_default(body, gen, "repetition_penalty", 1.0, &s->repetition, e))) return rc;
    if ((rc = get_num(body, "presence_penalty", &present, &s->presence, e))) return rc;
    if ((rc = get_num(body, "frequency_penalty", &present, &s->frequency, e))) return rc;
    double topk = -1;
    if ((rc = num_with_default(body, gen, "top_k", -1, &topk, e))) return rc;
    if (topk != floor(topk) || fabs(topk) > 9.2e18) return BAD(e, "top_k", "'top_k' must be an integer");
    s->top_k = topk == 0 ? -1 : (int64_t)topk;   /* 0 and -1 both disable */

    /* SamplingParams._verify_args wording, with VLLMValidationError's
     * "(parameter=..., value=...)" where vLLM names them */
    if (s->temperature < 0)
        return BAD(e, "temperature", "temperature must be non-negative, got %s. (parameter=temperature, value=%s)",
                   pyf(s->temperature, f, sizeof f), f);
    if (s->temperature > 2)
        return BAD(e, "temperature", "temperature must be in [0, 2], got %s. (parameter=temperature, value=%s)",
                   pyf(s->temperature, f, sizeof f), f);
    if (s->top_p <= 0 || s->top_p > 1)
        return BAD(e, "top_p", "top_p must be in (0, 1], got %s. (parameter=top_p, value=%s)", pyf(s->top_p, f, sizeof f), f);
    if (s->top_k < -1) return BAD(e, "top_k", "top_k must be 0 (disable), or at least 1, got %lld.", (long long)s->top_k);
    if (s->min_p < 0 || s->min_p > 1) return BAD(e, "min_p", "min_p must be in [0, 1], got %s.", pyf(s->min_p, f, sizeof f));
    if (s->presence < -2 || s->presence > 2) return BAD(e, "presence_penalty", "presence_penalty must be in [-2, 2], got %s.", pyf(s->presence, f, sizeof f));
    if (s->frequency < -2 || s->frequency > 2) return BAD(e, "frequency_penalty", "frequency_penalty must be in [-2, 2], got %s.", pyf(s->frequency, f, sizeof f));
    if (s->repetition <= 0) return BAD(e, "repetition_penalty", "repetition_penalty must be greater than zero, got %s.", pyf(s->repetition, f, sizeof f));

    /* max_completion_tokens wins over max_tokens (chat) */
    int64_t mt = 0;
    s->max_param = "max_tokens";
    if (ep == TOK_ENDPOINT_CHAT && (rc = get_int(body, "max_completion_tokens", &present, &mt, e))) return rc;
    if (present) s->max_param = "max_completion_tokens";
    if (!present && (rc = get_int(body, "max_tokens", &present, &mt, e))) return rc;
    if (present) {
        if (mt < 1)
            return BAD(e, "max_tokens", "max_tokens must be at least 1, got %lld. (parameter=max_tokens, value=%lld)",
                       (long long)mt, (long long)mt);
        s->max_tokens = mt;
        s->has_max_tokens = true;
    } else if (ep == TOK_ENDPOINT_COMPLETIONS) {
        s->max_tokens = 16;       /* the OpenAI/vLLM default for completions */
        s->has_max_tokens = true;
    }
    if ((rc = get_int(body, "min_tokens", &present, &s->min_tokens, e))) return rc;
    if (s->min_tokens < 0) return BAD(e, "min_tokens", "min_tokens must be greater than or equal to 0, got %lld.", (long long)s->min_tokens);
    if (s->has_max_tokens && s->min_tokens > s->max_tokens)
        return BAD(e, "min_tokens", "min_tokens must be less than or equal to max_tokens=%lld, got %lld.", (long long)s->max_tokens, (long long)s->min_tokens);
    if ((rc = get_int(body, "seed", &s->has_seed, &s->seed, e))) return rc;
    if ((rc = get_bool(body, "ignore_eos", false, &s->ignore_eos, e))) return rc;

    if (ep == TOK_ENDPOINT_CHAT) {
        bool lp;
        int64_t top = 0;
        if ((rc = get_bool(body, "logprobs", false, &lp, e))) return rc;
        if ((rc = get_int(body, "top_logprobs", &present, &top, e))) return rc;
        if (present && top != 0 && !lp)
            return BAD(e, "top_logprobs", "when using `top_logprobs`, `logprobs` must be set to true. (parameter=top_logprobs)");
        if (top < 0 || top > TOK_MAX_LOGPROBS)
            return BAD(e, "top_logprobs", "top_logprobs must be between 0 and %d, got %lld.", TOK_MAX_LOGPROBS, (long long)top);
        s->has_logprobs = lp;
        s->logprobs = top;
    } else {
        if ((rc = get_int(body, "logprobs", &s->has_logprobs, &s->logprobs, e))) return rc;
        if (s->has_logprobs && (s->logprobs < 0 || s->logprobs > TOK_MAX_LOGPROBS))
            return BAD(e, "logprobs", "logprobs must be between 0 and %d, got %lld.", TOK_MAX_LOGPROBS, (long long)s->logprobs);
    }
    if ((rc = get_int(body, "prompt_logprobs", &s->has_prompt_logprobs, &s->prompt_logprobs, e))) return rc;
    if (s->has_prompt_logprobs && (s->prompt_logprobs < 0 || s->prompt_logprobs > TOK_MAX_LOGPROBS))
        return BAD(e, "prompt_logprobs", "prompt_logprobs must be between 0 and %d, got %lld.", TOK_MAX_LOGPROBS, (long long)s->prompt_logprobs);
    return 0;
}

/* ================================================================ prompts */

typedef struct {
    int32_t *ids;
    size_t   n;
    char    *text;      /* prompt text (for echo), may be NULL; may hold NULs */
    size_t   textlen;
} prompt;

static void prompts_free(prompt *p, size_t n)
{
    for (size_t i = 0; i < n; i++) { free(p[i].ids); free(p[i].text); }
    free(p);
}

static int encode_into(const tok_model *m, const char *text, size_t len, prompt *p, tok_error *e)
{
    char err[256];
    int rc = tok_model_encode(m, text, len, &p->ids, &p->n, err, sizeof err);
    if (rc) return tok_fail(e, rc == PL_ERR_NOMEM ? 500 : 400, rc == PL_ERR_NOMEM ? "InternalServerError" : "BadRequestError",
                        NULL, "could not tokenize the prompt: %s", err);
    return 0;
}

/* A JSON list of ints as token ids, each inside the vocabulary. */
static int ids_from_json(const tok_model *m, const cJSON *arr, prompt *p, tok_error *e)
{
    int n = cJSON_GetArraySize(arr);
    p->ids = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!p->ids) return tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
    int32_t vocab = tok_model_vocab_size(m);
    for (const cJSON *c = arr->child; c; c = c->next) {
        double d = c->valuedouble;
        if (!cJSON_IsNumber(c) || d != floor(d)) return BAD(e, "prompt", "prompt token ids must be integers");
        if (d < 0 || d >= vocab) return BAD(e, "prompt", "Token id %.0f is out of vocabulary", d);
        p->ids[p->n++] = (int32_t)d;
    }
    return 0;
}

static bool is_id_list(const cJSON *v)
{
    if (!cJSON_IsArray(v) || !v->child) return false;
    for (const cJSON *c = v->child; c; c = c->next)
        if (!cJSON_IsNumber(c)) return false;
    return true;
}

/* /v1/completions `prompt`: a string, a list of ids, or a list of either. */
static int completion_prompts(const tok_model *m, const cJSON *body, bool echo, prompt **out, size_t *nout, tok_error *e)
{
    const cJSON *pr = field(body, "prompt");
    if (!pr) return BAD(e, "prompt", "'prompt' is required");
    const cJSON *single = cJSON_IsString(pr) || is_id_list(pr) ? pr : NULL;
    if (!single && (!cJSON_IsArray(pr) || !pr->child))
        return BAD(e, "prompt", "'prompt' must be a string, a list of token ids, or a non-empty list of either");
    size_t n = single ? 1 : (size_t)cJSON_GetArraySize(pr);
    prompt *ps = calloc(n, sizeof *ps);
    if (!ps) return tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
    int rc = 0;
    size_t i = 0;
    for (const cJSON *c = single ? single : pr->child; c && i < n && !rc; c = single ? NULL : c->next, i++) {
        if (cJSON_IsString(c)) {
            pl_buf t;
            pl_buf_init(&t);
            pl_json_str_bytes(&t, c->valuestring);
            rc = pl_buf_ok(&t) ? encode_into(m, t.data ? t.data : "", t.len, &ps[i], e)
                               : tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
            if (!rc && echo) { ps[i].text = t.data; ps[i].textlen = t.len; }
            else pl_buf_free(&t);
        } else if (is_id_list(c)) {
            rc = ids_from_json(m, c, &ps[i], e);
            if (!rc && echo) {
                pl_buf t;
                pl_buf_init(&t);
                char err[128];
                if (tok_model_decode(m, ps[i].ids, ps[i].n, false, &t, err, sizeof err) == 0) { ps[i].text = t.data; ps[i].textlen = t.len; }
                else pl_buf_free(&t);
            }
        } else {
            rc = BAD(e, "prompt", "each prompt must be a string or a list of token ids");
        }
    }
    if (rc) { prompts_free(ps, n); return rc; }
    *out = ps;
    *nout = n;
    return 0;
}

/* ================================================================ context checks */

/* vLLM's TokenizeParams: a request may not ask for more new tokens than the
 * context holds, whatever its prompt (checked before rendering). */
static int check_max_tokens(const tok_model *m, const sampling *s, tok_error *e)
{
    int64_t max_len = tok_model_max_len(m);
    if (s->has_max_tokens && s->max_tokens > max_len)
        return BAD(e, s->max_param, "%s=%lld cannot be greater than max_model_len=%lld. Please request fewer output "
                   "tokens. (parameter=%s, value=%lld)", s->max_param, (long long)s->max_tokens, (long long)max_len,
                   s->max_param, (long long)s->max_tokens);
    return 0;
}

/* TokenizeParams._text_len_check: a prompt with more characters than the
 * context could hold in tokens is refused before it is tokenized. */
static int check_chars(const tok_model *m, const char *text, size_t len, tok_error *e)
{
    int64_t max_len = tok_model_max_len(m), per = tok_model_max_chars_per_token(m);
    size_t chars = pl_utf8_count(text, len);
    if (per > 0 && max_len <= INT64_MAX / per && (int64_t)chars > max_len * per)
        return BAD(e, "input_text", "This model's maximum context length is %lld tokens. However, your prompt contains "
                   "%zu characters (more than %lld characters, which is the upper bound for %lld input tokens). Please "
                   "reduce the length of the input prompt. (parameter=input_text, value=%zu)", (long long)max_len, chars,
                   (long long)(max_len * per), (long long)max_len, chars);
    return 0;
}

/* The prompt's length (TokenizeParams._token_len_check: vLLM tokenizes at
 * most max_model_len + 1 tokens, hence "at least") and the new-token budget
 * (get_max_tokens: what fits, the request's max_tokens, generation_config's
 * max_new_tokens — the smallest; none left is SamplingParams' error). */
static int check_length(const tok_model *m, enum tok_endpoint ep, size_t plen, sampling *s, tok_error *e)
{
    (void)ep;
    int64_t max_len = tok_model_max_len(m);
    if (plen == 0) return BAD(e, "prompt", "The decoder prompt cannot be empty");
    if ((int64_t)plen > max_len)
        return BAD(e, "input_tokens", "This model's maximum context length is %lld tokens. However, your prompt contains "
                   "at least %lld input tokens, which exceeds this limit even without any output tokens. Please reduce "
                   "the length of the input prompt. (parameter=input_tokens, value=%lld)", (long long)max_len,
                   (long long)max_len + 1, (long long)max_len + 1);
    int64_t room = max_len - (int64_t)plen;
    if (!s->has_max_tokens) {
        s->max_tokens = room;
        const cJSON *mnt = tok_model_gen_defaults(m) ? field(tok_model_gen_defaults(m), "max_new_tokens") : NULL;
        if (cJSON_IsNumber(mnt) && mnt->valuedouble >= 1 && mnt->valuedouble < (double)s->max_tokens)
            s->max_tokens = (int64_t)mnt->valuedouble;
    } else if (s->max_tokens > room) {
        s->max_tokens = room;
    }
    if (s->max_tokens < 1)
        return BAD(e, "max_tokens", "max_tokens must be at least 1, got %lld. (parameter=max_tokens, value=%lld)",
                   (long long)s->max_tokens, (long long)s->max_tokens);
    return 0;
}

static int check_stop(const cJSON *body, tok_error *e)
{
    const cJSON *stop = field(body, "stop");
    if (!stop || cJSON_IsString(stop)) return 0;
    if (!cJSON_IsArray(stop)) return BAD(e, "stop", "'stop' must be a string or a list of strings");
    if (cJSON_GetArraySize(stop) > TOK_MAX_STOP) return BAD(e, "stop", "at most %d stop strings are allowed", TOK_MAX_STOP);
    for (const cJSON *c = stop->child; c; c = c->next)
        if (!cJSON_IsString(c)) return BAD(e, "stop", "'stop' must be a string or a list of strings");
    return 0;
}

static int check_stop_ids(const tok_model *m, const cJSON *body, tok_error *e)
{
    const cJSON *ids = field(body, "stop_token_ids");
    if (!ids) return 0;
    if (!cJSON_IsArray(ids)) return BAD(e, "stop_token_ids", "'stop_token_ids' must be a list of integers");
    for (const cJSON *c = ids->child; c; c = c->next)
        if (!cJSON_IsNumber(c) || c->valuedouble != floor(c->valuedouble) || c->valuedouble < 0 ||
            c->valuedouble >= tok_model_vocab_size(m))
            return BAD(e, "stop_token_ids", "'stop_token_ids' must be token ids inside the vocabulary");
    return 0;
}

/* ================================================================ packing */

static void pack_key(msgpack_packer *pk, const char *k) { pl_msg_pack_cstr(pk, k); }

static void pack_ids(msgpack_packer *pk, const int32_t *ids, size_t n)
{
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) msgpack_pack_int32(pk, ids[i]);
}

static void pack_sampling(msgpack_packer *pk, const tok_model *m, const cJSON *body, const sampling *s)
{
    size_t neos;
    const int32_t *eos = tok_model_eos_ids(m, &neos);
    const cJSON *extra = field(body, "stop_token_ids");
    uint32_t nfields = 14 + s->has_seed + s->has_logprobs + s->has_prompt_logprobs;
    msgpack_pack_map(pk, nfields);
    pl_msg_pack_kv_int(pk, "max_tokens", s->max_tokens);
    pl_msg_pack_kv_int(pk, "min_tokens", s->min_tokens);
    pl_msg_pack_kv_double(pk, "temperature", s->temperature);
    pl_msg_pack_kv_double(pk, "top_p", s->top_p);
    pl_msg_pack_kv_int(pk, "top_k", s->top_k);
    pl_msg_pack_kv_double(pk, "min_p", s->min_p);
    pl_msg_pack_kv_double(pk, "presence_penalty", s->presence);
    pl_msg_pack_kv_double(pk, "frequency_penalty", s->frequency);
    pl_msg_pack_kv_double(pk, "repetition_penalty", s->repetition);
    pl_msg_pack_kv_bool(pk, "ignore_eos", s->ignore_eos);
    /* stop_token_ids: the eos list (unless ignore_eos) plus the request's;
     * eos_token_ids tells which of them report stop_reason null. */
    pack_key(pk, "stop_token_ids");
    size_t nextra = extra ? (size_t)cJSON_GetArraySize(extra) : 0;
    msgpack_pack_array(pk, (s->ignore_eos ? 0 : neos) + nextra);
    for (size_t i = 0; !s->ignore_eos && i < neos; i++) msgpack_pack_int32(pk, eos[i]);
    for (const cJSON *c = extra ? extra->child : NULL; c; c = c->next) msgpack_pack_int32(pk, (int32_t)c->valuedouble);
    pack_key(pk, "eos_token_ids");
    pack_ids(pk, eos, neos);
    pl_msg_pack_kv_bool(pk, "logprobs_enabled", s->has_logprobs);
    pl_msg_pack_kv_bool(pk, "greedy", s->temperature == 0);
    if (s->has_seed) pl_msg_pack_kv_int(pk, "seed", s->seed);
    if (s->has_logprobs) pl_msg_pack_kv_int(pk, "logprobs", s->logprobs);
    if (s->has_prompt_logprobs) pl_msg_pack_kv_int(pk, "prompt_logprobs", s->prompt_logprobs);
}

/* Copy body[key] into the context when present (null stays absent). */
static void ctx_copy(cJSON *ctx, const cJSON *body, const char *key)
{
    const cJSON *v = field(body, key);
    if (v) cJSON_AddItemToObject(ctx, key, cJSON_Duplicate(v, 1));
}

/* The context later stages read (docs/protocol.md). For chat, kw is the
 * request's chat_template_kwargs as vLLM resolved them and tools the tools
 * as the template got them. */
static int build_context(const tok_model *m, enum tok_endpoint ep, const cJSON *body, const sampling *s,
                         const cJSON *kw, const cJSON *tools, cJSON **out, tok_error *e)
{
    cJSON *ctx = cJSON_CreateObject();
    int rc = 0;
    bool b;
    cJSON_AddStringToObject(ctx, "endpoint", ep == TOK_ENDPOINT_CHAT ? "chat" : "completions");
    const cJSON *model = field(body, "model");
    if (model && !cJSON_IsString(model)) rc = BAD(e, "model", "'model' must be a string");
    if (model && cJSON_IsString(model)) cJSON_AddItemToObject(ctx, "model", cJSON_Duplicate(model, 0));
    else cJSON_AddStringToObject(ctx, "model", tok_model_name(m));

    bool stream = false;
    if (!rc) rc = get_bool(body, "stream", false, &stream, e);
    cJSON_AddBoolToObject(ctx, "stream", stream);
    const cJSON *so = field(body, "stream_options");
    if (!rc && so && !cJSON_IsObject(so)) rc = BAD(e, "stream_options", "'stream_options' must be an object");
    if (!rc && pl_json_truthy(so) && !stream)
        rc = BAD(e, "stream_options", "Stream options can only be defined when `stream=True`. (parameter=stream_options)");
    if (!rc) ctx_copy(ctx, body, "stream_options");

    if (!rc) rc = check_stop(body, e);
    if (!rc) {
        const cJSON *stop = field(body, "stop");
        cJSON *list = cJSON_IsString(stop) ? cJSON_CreateArray() : cJSON_Duplicate(stop ? stop : NULL, 1);
        if (!list) list = cJSON_CreateArray();
        if (cJSON_IsString(stop)) cJSON_AddItemToArray(list, cJSON_Duplicate(stop, 0));
        cJSON_AddItemToObject(ctx, "stop", list);
    }
    static const struct { const char *key; bool def; } bools[] = {
        {"include_stop_str_in_output", false}, {"skip_special_tokens", true},
        {"spaces_between_special_tokens", true}, {"echo", false}, {"include_reasoning", true},
        {"parallel_tool_calls", true}, {"return_token_ids", false},
    };
    for (size_t i = 0; !rc && i < PL_ARRAY_LEN(bools); i++) {
        rc = get_bool(body, bools[i].key, bools[i].def, &b, e);
        if (!rc) cJSON_AddBoolToObject(ctx, bools[i].key, b);
    }
    if (!rc) {
        /* logprobs as the gateway must report them: chat bool + top_logprobs, completions int */
        if (ep == TOK_ENDPOINT_CHAT) {
            cJSON_AddBoolToObject(ctx, "logprobs", s->has_logprobs);
            cJSON_AddItemToObject(ctx, "top_logprobs", pl_json_int_new(s->logprobs));
        } else if (s->has_logprobs) {
            cJSON_AddItemToObject(ctx, "logprobs", pl_json_int_new(s->logprobs));
        }
        cJSON_AddItemToObject(ctx, "n", pl_json_int_new(s->n));
        cJSON_AddItemToObject(ctx, "min_tokens", pl_json_int_new(s->min_tokens));   /* glm-detok: stop strings wait for it */
    }
    if (!rc && ep == TOK_ENDPOINT_CHAT) {
        cJSON *choice = NULL;
        cJSON_AddBoolToObject(ctx, "thinking", thinking_on(m, kw));
        cJSON_AddItemToObject(ctx, "chat_template_kwargs", cJSON_Duplicate(kw, 1));
        rc = resolve_tool_choice(body, &choice, e);
        if (!rc && (rc = tok_tool_choice_check(m, body, e))) cJSON_Delete(choice);
        if (!rc) {
            cJSON_AddItemToObject(ctx, "tool_choice", choice);
            cJSON_AddItemToObject(ctx, "tools", tools ? cJSON_Duplicate(tools, 1) : cJSON_CreateNull());
        }
    }
    if (rc) { cJSON_Delete(ctx); return rc; }
    *out = ctx;
    return 0;
}

/* ================================================================ entry */

static const char *const consumed_keys[] = {"type", "id", "endpoint", "body"};

/* One request checked, rendered and tokenized: what tok_request_process
 * packs and tok_request_render prints. */
typedef struct prepared {
    sampling s;
    sampling *per;      /* [nps]: max_tokens per prompt */
    prompt  *ps;
    size_t   nps;
    pl_buf   text;      /* chat: the rendered prompt */
    cJSON   *ctx;
} prepared;

static void prepared_free(prepared *p)
{
    free(p->per);
    prompts_free(p->ps, p->nps);
    pl_buf_free(&p->text);
    cJSON_Delete(p->ctx);
}

/* vLLM's order: the request is validated (pydantic, its validators), then
 * rendered, then tokenized and its length checked. */
static int prepare(const tok_model *m, enum tok_endpoint ep, const cJSON *body, prepared *p, tok_error *e)
{
    memset(p, 0, sizeof *p);
    pl_buf_init(&p->text);
    if (!cJSON_IsObject(body)) return BAD(e, NULL, "request body must be a JSON object");
    chat_req cr = {0};
    cJSON *kw = NULL;
    int rc = ep == TOK_ENDPOINT_CHAT ? check_chat_request(body, &cr, e) : 0;
    if (!rc) rc = parse_sampling(m, ep, body, &p->s, e);
    if (!rc) rc = check_stop_ids(m, body, e);
    if (!rc && ep == TOK_ENDPOINT_CHAT) rc = chat_kwargs(m, body, &cr, &kw, e);
    if (!rc) rc = build_context(m, ep, body, &p->s, kw, cr.tools, &p->ctx, e);
    if (!rc && ep == TOK_ENDPOINT_CHAT) rc = check_template_trust(body, e);
    if (!rc) rc = check_max_tokens(m, &p->s, e);
    bool echo = cJSON_IsTrue(field(body, "echo"));
    if (!rc && ep == TOK_ENDPOINT_CHAT) {
        rc = render_chat(m, &cr, kw, &p->text, e);
        if (!rc) rc = check_chars(m, p->text.data ? p->text.data : "", p->text.len, e);
        if (!rc && !(p->ps = calloc(1, sizeof *p->ps))) rc = tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
        if (!rc) { p->nps = 1; rc = encode_into(m, p->text.data ? p->text.data : "", p->text.len, &p->ps[0], e); }
        if (!rc) {
            /* GLM-4.7/5.x prompts end with an open <think>: the reasoning parser
             * must treat the output as reasoning from its first byte. */
            const char *tail = "<think>";
            size_t tl = strlen(tail), end = pl_py_rstrip_len(p->text.data, p->text.len);
            cJSON_AddBoolToObject(p->ctx, "prompt_ends_in_think", end >= tl && !memcmp(p->text.data + end - tl, tail, tl));
            if (echo) cJSON_AddItemToObject(p->ctx, "prompt_text", pl_json_string_new(p->text.data, p->text.len));
        }
    } else if (!rc) {
        rc = completion_prompts(m, body, echo, &p->ps, &p->nps, e);
    }
    chat_req_free(&cr);
    cJSON_Delete(kw);
    /* all prompts are checked before anything is emitted */
    if (!rc && !(p->per = calloc(p->nps, sizeof *p->per))) rc = tok_fail(e, 500, "InternalServerError", NULL, "out of memory");
    for (size_t j = 0; !rc && j < p->nps; j++) {
        p->per[j] = p->s;
        rc = check_length(m, ep, p->ps[j].n, &p->per[j], e);
    }
    return rc;
}

int tok_request_render(const tok_model *m, const cJSON *body, pl_buf *prompt, tok_error *e)
{
    prepared p;
    int rc = prepare(m, TOK_ENDPOINT_CHAT, body, &p, e);
    if (!rc) pl_buf_append(prompt, p.text.data ? p.text.data : "", p.text.len);
    prepared_free(&p);
    return rc;
}

int tok_request_process(const tok_model *m, enum tok_endpoint ep, const cJSON *body,
                        const msgpack_object *orig, const char *id, size_t idlen,
                        msgpack_packer *pk, tok_emit_fn emit, void *ud, tok_error *e)
{
    prepared p;
    int rc = prepare(m, ep, body, &p, e);
    cJSON *ctx = p.ctx;
    char sub[PL_MSG_ID_MAX];
    size_t sublen = idlen;
    if (!rc && p.nps > 1 && pl_msg_id_derive(sub, id, idlen, p.nps - 1, &sublen))   /* the longest derived id */
        rc = BAD(e, "prompt", "request id too long for %zu prompts: the ids '<id>#<k>' of the prompts must fit in %d bytes",
                 p.nps, PL_MSG_ID_MAX);
    for (size_t j = 0; !rc && j < p.nps; j++) {
        memcpy(sub, id, sublen = idlen);
        if (p.nps > 1) pl_msg_id_derive(sub, id, idlen, j, &sublen);
        pl_msg_pack_map_except(pk, orig, consumed_keys, PL_ARRAY_LEN(consumed_keys), 6);
        pl_msg_pack_kv_cstr(pk, "type", "generate");
        pl_msg_pack_kv_str(pk, "id", sub, sublen);
        pack_key(pk, "prompt_ids");
        pack_ids(pk, p.ps[j].ids, p.ps[j].n);
        pl_msg_pack_kv_int(pk, "n", p.s.n);
        pack_key(pk, "sampling");
        pack_sampling(pk, m, body, &p.per[j]);
        pack_key(pk, "context");
        if (p.nps > 1) {
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, "parent_id");
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, "prompt_index");
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, "num_prompts");
            cJSON_AddItemToObject(ctx, "parent_id", pl_json_string_new(id, idlen));
            cJSON_AddItemToObject(ctx, "prompt_index", pl_json_int_new((int64_t)j));
            cJSON_AddItemToObject(ctx, "num_prompts", pl_json_int_new((int64_t)p.nps));
        }
        if (ep == TOK_ENDPOINT_COMPLETIONS && cJSON_IsTrue(field(body, "echo"))) {
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, "prompt_text");
            cJSON_AddItemToObject(ctx, "prompt_text", pl_json_string_new(p.ps[j].text ? p.ps[j].text : "",
                                                                        p.ps[j].text ? p.ps[j].textlen : 0));
        }
        pl_json_pack(pk, ctx);
        rc = emit(ud);
    }
    prepared_free(&p);
    return rc;
}
