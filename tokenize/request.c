/* request.c — one OpenAI request body -> `generate` message(s).
 *
 * Validation follows vLLM's wording where clients may match on it (context
 * length, max_tokens, tool_choice, stream_options, top_logprobs). Everything
 * in the body is untrusted: every field is type-checked before use. */
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

static int fail(tok_error *e, int code, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(tok_error *e, int code, const char *type, const char *param, const char *fmt, ...)
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

#define BAD(e, param, ...) fail((e), 400, "BadRequestError", (param), __VA_ARGS__)

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

static int get_int(const cJSON *obj, const char *key, bool *present, int64_t *out, tok_error *e)
{
    const cJSON *v = field(obj, key);
    *present = v != NULL;
    if (!v) return 0;
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(d) || d != floor(d) || fabs(d) > 9.2e18)
        return BAD(e, key, "'%s' must be an integer", key);
    *out = (int64_t)d;
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

/* ================================================================ chat messages */

/* A content part list: each part an object with a string type (text parts
 * need a string text) or a bare string. */
static int check_content(const cJSON *content, size_t mi, tok_error *e)
{
    if (!content || cJSON_IsNull(content) || cJSON_IsString(content)) return 0;
    if (!cJSON_IsArray(content))
        return BAD(e, "messages", "messages[%zu].content must be a string, a list of content parts or null", mi);
    size_t pi = 0;
    for (const cJSON *p = content->child; p; p = p->next, pi++) {
        if (cJSON_IsString(p)) continue;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (!cJSON_IsObject(p) || !cJSON_IsString(type))
            return BAD(e, "messages", "messages[%zu].content[%zu] must be an object with a string 'type'", mi, pi);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!strcmp(type->valuestring, "text") && !cJSON_IsString(text))
            return BAD(e, "messages", "messages[%zu].content[%zu].text must be a string", mi, pi);
    }
    return 0;
}

/* OpenAI clients send tool_calls[].function.arguments as a JSON string (some
 * as an object); GLM templates iterate it as a mapping, so a string is parsed
 * here, as vLLM does. */
static int fix_tool_calls(cJSON *msg, size_t mi, tok_error *e)
{
    cJSON *tcs = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    if (!tcs || cJSON_IsNull(tcs)) return 0;
    if (!cJSON_IsArray(tcs)) return BAD(e, "messages", "messages[%zu].tool_calls must be a list", mi);
    size_t ti = 0;
    for (cJSON *tc = tcs->child; tc; tc = tc->next, ti++) {
        if (!cJSON_IsObject(tc)) return BAD(e, "messages", "messages[%zu].tool_calls[%zu] must be an object", mi, ti);
        cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        cJSON *holder = cJSON_IsObject(fn) ? fn : tc;   /* flat {name, arguments} also seen */
        if (fn && !cJSON_IsObject(fn))
            return BAD(e, "messages", "messages[%zu].tool_calls[%zu].function must be an object", mi, ti);
        cJSON *name = cJSON_GetObjectItemCaseSensitive(holder, "name");
        if (!cJSON_IsString(name))
            return BAD(e, "messages", "messages[%zu].tool_calls[%zu].function.name must be a string", mi, ti);
        cJSON *args = cJSON_GetObjectItemCaseSensitive(holder, "arguments");
        if (!args || cJSON_IsObject(args)) continue;
        if (!cJSON_IsString(args))
            return BAD(e, "messages", "messages[%zu].tool_calls[%zu].function.arguments must be a JSON string or an object", mi, ti);
        cJSON *parsed;
        char perr[128];
        if (pl_json_parse(&parsed, args->valuestring, strlen(args->valuestring), perr, sizeof perr))
            return BAD(e, "messages", "messages[%zu].tool_calls[%zu].function.arguments is not valid JSON: %s", mi, ti, perr);
        if (!cJSON_ReplaceItemInObjectCaseSensitive(holder, "arguments", parsed)) {
            cJSON_Delete(parsed);
            return fail(e, 500, "InternalServerError", NULL, "out of memory");
        }
    }
    return 0;
}

static int check_messages(cJSON *msgs, tok_error *e)
{
    if (!msgs) return BAD(e, "messages", "'messages' is required");
    if (!cJSON_IsArray(msgs)) return BAD(e, "messages", "'messages' must be a list");
    size_t mi = 0;
    for (cJSON *m = msgs->child; m; m = m->next, mi++) {
        if (!cJSON_IsObject(m)) return BAD(e, "messages", "messages[%zu] must be an object", mi);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) return BAD(e, "messages", "messages[%zu].role must be a string", mi);
        int rc = check_content(cJSON_GetObjectItemCaseSensitive(m, "content"), mi, e);
        if (!rc) rc = fix_tool_calls(m, mi, e);
        if (rc) return rc;
        static const char *const str_fields[] = {"name", "tool_call_id", "reasoning_content", "reasoning"};
        for (size_t i = 0; i < PL_ARRAY_LEN(str_fields); i++) {
            const cJSON *v = field(m, str_fields[i]);
            if (v && !cJSON_IsString(v))
                return BAD(e, "messages", "messages[%zu].%s must be a string", mi, str_fields[i]);
        }
    }
    return 0;
}

/* Merged chat_template_kwargs: server defaults, then the request's, then the
 * top-level reasoning_effort (vLLM copies it in). */
static int merged_kwargs(const tok_model *m, const cJSON *body, cJSON **out, tok_error *e)
{
    cJSON *kw = cJSON_Duplicate(tok_model_default_kwargs(m), 1);
    if (!kw) return fail(e, 500, "InternalServerError", NULL, "out of memory");
    const cJSON *req = field(body, "chat_template_kwargs");
    if (req && !cJSON_IsObject(req)) { cJSON_Delete(kw); return BAD(e, "chat_template_kwargs", "'chat_template_kwargs' must be an object"); }
    for (const cJSON *c = req ? req->child : NULL; c; c = c->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(kw, c->string);
        cJSON_AddItemToObject(kw, c->string, cJSON_Duplicate(c, 1));
    }
    const cJSON *effort = field(body, "reasoning_effort");
    if (effort) {
        if (!cJSON_IsString(effort)) { cJSON_Delete(kw); return BAD(e, "reasoning_effort", "'reasoning_effort' must be a string"); }
        cJSON_DeleteItemFromObjectCaseSensitive(kw, "reasoning_effort");
        cJSON_AddItemToObject(kw, "reasoning_effort", cJSON_Duplicate(effort, 1));
    }
    *out = kw;
    return 0;
}

/* Thinking is on unless enable_thinking or thinking is false (vLLM glm45, Era C). */
static bool thinking_on(const cJSON *kw)
{
    return !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(kw, "enable_thinking")) &&
           !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(kw, "thinking"));
}

/* The text of the final message, for continue_final_message (transformers:
 * the last text part of a list content). */
static const char *final_message_text(const cJSON *msgs)
{
    const cJSON *last = NULL;
    for (const cJSON *c = msgs->child; c; c = c->next) last = c;
    const cJSON *content = last ? cJSON_GetObjectItemCaseSensitive(last, "content") : NULL;
    if (cJSON_IsString(content)) return content->valuestring;
    const char *text = NULL;
    for (const cJSON *p = content && cJSON_IsArray(content) ? content->child : NULL; p; p = p->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (cJSON_IsString(t)) text = t->valuestring;
    }
    return text;
}

/* transformers' continue_final_message: cut the render right after the final
 * message's text so generation continues it. */
static int cut_after_final(pl_buf *prompt, const cJSON *msgs, tok_error *e)
{
    const char *fm = final_message_text(msgs);
    if (!fm) return BAD(e, "continue_final_message", "continue_final_message is set but we could not find any text to continue in the final message!");
    size_t len = strlen(fm), a = pl_py_lstrip_off(fm, len);
    const char *stripped = fm + a;
    size_t slen = pl_py_rstrip_len(stripped, len - a);
    if (!slen) return 0;   /* Python finds "" at the very end: nothing is cut */
    /* rindex of the stripped text */
    const char *loc = NULL;
    for (const char *p = prompt->data; p && (p = memmem(p, prompt->len - (size_t)(p - prompt->data), stripped, slen)); p++)
        loc = p;
    if (!loc) return BAD(e, "continue_final_message", "continue_final_message is set but the final message does not appear in the chat after applying the chat template! This can happen if the chat template deletes portions of the final message. Please verify the chat template and final message in your chat to ensure the final message is unmodified.");
    /* transformers keeps the trailing whitespace only when the render has the
     * message unchanged at loc: rendered[loc:loc + len(lstripped)] == final
     * can hold only when there was no leading whitespace. */
    size_t off = (size_t)(loc - prompt->data);
    size_t keep = (a == 0 && off + len <= prompt->len && !memcmp(loc, fm, len)) ? len : slen;
    prompt->len = off + keep;
    prompt->data[prompt->len] = 0;
    return 0;
}

int tok_request_render_chat(const tok_model *m, const cJSON *body, pl_buf *prompt, tok_error *e)
{
    if (!cJSON_IsObject(body)) return BAD(e, NULL, "request body must be a JSON object");
    if (!tok_model_has_template(m))
        return BAD(e, NULL, "this model has no chat template; pass --chat-template or use /v1/completions");
    cJSON *ctx = cJSON_CreateObject();
    cJSON *msgs = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(body, "messages"), 1);
    cJSON *kw = NULL;
    int rc = check_messages(msgs, e);
    bool add_gen = true, cont = false;
    if (!rc) rc = get_bool(body, "add_generation_prompt", true, &add_gen, e);
    if (!rc) rc = get_bool(body, "continue_final_message", false, &cont, e);
    if (!rc && add_gen && cont && field(body, "add_generation_prompt"))
        rc = BAD(e, NULL, "Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
    if (cont) add_gen = false;   /* add_generation_prompt defaults off when continuing */
    const cJSON *tools = field(body, "tools");
    if (!rc && tools && !cJSON_IsArray(tools)) rc = BAD(e, "tools", "'tools' must be a list");
    for (const cJSON *t = tools && !rc ? tools->child : NULL; t && !rc; t = t->next)
        if (!cJSON_IsObject(t)) rc = BAD(e, "tools", "each entry of 'tools' must be an object");
    if (!rc) rc = merged_kwargs(m, body, &kw, e);
    if (rc) { cJSON_Delete(msgs); cJSON_Delete(ctx); return rc; }

    /* transformers: special tokens first, then kwargs (which may override
     * them), and the named arguments. */
    tok_model_add_special_vars(m, ctx);
    for (cJSON *c = kw->child; c; c = c->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(ctx, c->string);
        cJSON_AddItemToObject(ctx, c->string, cJSON_Duplicate(c, 1));
    }
    cJSON_DeleteItemFromObjectCaseSensitive(ctx, "messages");
    cJSON_AddItemToObject(ctx, "messages", msgs);
    cJSON_DeleteItemFromObjectCaseSensitive(ctx, "tools");
    cJSON_AddItemToObject(ctx, "tools", tools ? cJSON_Duplicate(tools, 1) : cJSON_CreateNull());
    cJSON_DeleteItemFromObjectCaseSensitive(ctx, "documents");
    cJSON_AddItemToObject(ctx, "documents", cJSON_CreateNull());
    cJSON_DeleteItemFromObjectCaseSensitive(ctx, "add_generation_prompt");
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", add_gen);
    cJSON_Delete(kw);

    char err[512];
    pl_buf_reset(prompt);
    rc = tok_model_render(m, ctx, prompt, err, sizeof err);
    if (rc) rc = BAD(e, NULL, "chat template error: %s", err);
    else if (cont) rc = cut_after_final(prompt, msgs, e);
    cJSON_Delete(ctx);
    return rc;
}

/* ================================================================ tool_choice */

/* vLLM protocol.py rules (docs §2.10). *choice_out is a new cJSON value. */
static int resolve_tool_choice(const cJSON *body, cJSON **choice_out, tok_error *e)
{
    const cJSON *tools = field(body, "tools");
    const cJSON *tc = field(body, "tool_choice");
    bool have_tools = tools && cJSON_GetArraySize(tools) > 0;
    if (!tc) {
        *choice_out = cJSON_CreateString(have_tools ? "auto" : "none");
        return 0;
    }
    if (cJSON_IsString(tc)) {
        const char *s = tc->valuestring;
        if (strcmp(s, "none") && strcmp(s, "auto") && strcmp(s, "required"))
            return BAD(e, "tool_choice", "Invalid value for `tool_choice`: %s. Expected one of 'none', 'auto', 'required' or a named function.", s);
        if (strcmp(s, "none") && !tools)
            return BAD(e, "tool_choice", "When using `tool_choice`, `tools` must be set.");
        /* "required" with an empty tools list is treated as "none" */
        *choice_out = cJSON_CreateString(!strcmp(s, "required") && !have_tools ? "none" : s);
        return 0;
    }
    const cJSON *fn = cJSON_IsObject(tc) ? cJSON_GetObjectItemCaseSensitive(tc, "function") : NULL;
    const cJSON *name = cJSON_IsObject(fn) ? cJSON_GetObjectItemCaseSensitive(fn, "name") : NULL;
    if (!cJSON_IsString(name))
        return BAD(e, "tool_choice", "Invalid value for `tool_choice`: a named tool choice must be {\"type\": \"function\", \"function\": {\"name\": ...}}.");
    if (!tools) return BAD(e, "tool_choice", "When using `tool_choice`, `tools` must be set.");
    for (const cJSON *t = tools->child; t; t = t->next) {
        const cJSON *tf = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *tn = cJSON_IsObject(tf) ? cJSON_GetObjectItemCaseSensitive(tf, "name") : NULL;
        if (cJSON_IsString(tn) && !strcmp(tn->valuestring, name->valuestring)) {
            *choice_out = cJSON_Duplicate(tc, 1);
            return 0;
        }
    }
    return BAD(e, "tool_choice", "Tool '%s' has not been passed in `tools`.", name->valuestring);
}

/* ================================================================ sampling */

typedef struct {
    int64_t n, max_tokens, min_tokens, top_k, seed, logprobs, prompt_logprobs;
    bool    has_max_tokens, has_seed, has_logprobs, has_prompt_logprobs, ignore_eos;
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

    if (s->temperature < 0) return BAD(e, "temperature", "temperature must be non-negative, got %s.", pyf(s->temperature, f, sizeof f));
    if (s->top_p <= 0 || s->top_p > 1) return BAD(e, "top_p", "top_p must be in (0, 1], got %s.", pyf(s->top_p, f, sizeof f));
    if (s->top_k < -1) return BAD(e, "top_k", "top_k must be 0 (disable), or at least 1, got %lld.", (long long)s->top_k);
    if (s->min_p < 0 || s->min_p > 1) return BAD(e, "min_p", "min_p must be in [0, 1], got %s.", pyf(s->min_p, f, sizeof f));
    if (s->presence < -2 || s->presence > 2) return BAD(e, "presence_penalty", "presence_penalty must be in [-2, 2], got %s.", pyf(s->presence, f, sizeof f));
    if (s->frequency < -2 || s->frequency > 2) return BAD(e, "frequency_penalty", "frequency_penalty must be in [-2, 2], got %s.", pyf(s->frequency, f, sizeof f));
    if (s->repetition <= 0) return BAD(e, "repetition_penalty", "repetition_penalty must be greater than zero, got %s.", pyf(s->repetition, f, sizeof f));

    /* max_completion_tokens wins over max_tokens (chat) */
    int64_t mt = 0;
    if (ep == TOK_ENDPOINT_CHAT && (rc = get_int(body, "max_completion_tokens", &present, &mt, e))) return rc;
    if (!present && (rc = get_int(body, "max_tokens", &present, &mt, e))) return rc;
    if (present) {
        if (mt < 1) return BAD(e, "max_tokens", "max_tokens must be at least 1, got %lld.", (long long)mt);
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
        if (present && top != 0 && !lp) return BAD(e, "top_logprobs", "when using `top_logprobs`, `logprobs` must be set to true.");
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
    char    *text;      /* prompt text (for echo), may be NULL */
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
    if (rc) return fail(e, rc == PL_ERR_NOMEM ? 500 : 400, rc == PL_ERR_NOMEM ? "InternalServerError" : "BadRequestError",
                        NULL, "could not tokenize the prompt: %s", err);
    return 0;
}

/* A JSON list of ints as token ids, each inside the vocabulary. */
static int ids_from_json(const tok_model *m, const cJSON *arr, prompt *p, tok_error *e)
{
    int n = cJSON_GetArraySize(arr);
    p->ids = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!p->ids) return fail(e, 500, "InternalServerError", NULL, "out of memory");
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
    if (!ps) return fail(e, 500, "InternalServerError", NULL, "out of memory");
    int rc = 0;
    size_t i = 0;
    for (const cJSON *c = single ? single : pr->child; c && i < n && !rc; c = single ? NULL : c->next, i++) {
        if (cJSON_IsString(c)) {
            rc = encode_into(m, c->valuestring, strlen(c->valuestring), &ps[i], e);
            if (!rc && echo && !(ps[i].text = strdup(c->valuestring))) rc = fail(e, 500, "InternalServerError", NULL, "out of memory");
        } else if (is_id_list(c)) {
            rc = ids_from_json(m, c, &ps[i], e);
            if (!rc && echo) {
                pl_buf t;
                pl_buf_init(&t);
                char err[128];
                if (tok_model_decode(m, ps[i].ids, ps[i].n, false, &t, err, sizeof err) == 0) ps[i].text = t.data;
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

/* vLLM's _validate_input wording, so clients that parse it keep working. */
static int check_length(const tok_model *m, enum tok_endpoint ep, size_t plen, sampling *s, tok_error *e)
{
    int64_t max_len = tok_model_max_len(m);
    if (plen == 0) return BAD(e, "prompt", "The decoder prompt cannot be empty");
    if ((int64_t)plen >= max_len)
        return BAD(e, "input_tokens", "This model's maximum context length is %lld tokens. However, your request has %zu input tokens. Please reduce the length of the input %s.",
                   (long long)max_len, plen, ep == TOK_ENDPOINT_CHAT ? "messages" : "prompt");
    if (!s->has_max_tokens) {
        s->max_tokens = max_len - (int64_t)plen;
        const cJSON *mnt = tok_model_gen_defaults(m) ? field(tok_model_gen_defaults(m), "max_new_tokens") : NULL;
        if (cJSON_IsNumber(mnt) && mnt->valuedouble >= 1 && mnt->valuedouble < (double)s->max_tokens)
            s->max_tokens = (int64_t)mnt->valuedouble;
        return 0;
    }
    if (s->max_tokens > max_len - (int64_t)plen)
        return BAD(e, "max_tokens", "'max_tokens' or 'max_completion_tokens' is too large: %lld. This model's maximum context length is %lld tokens and your request has %zu input tokens (%lld > %lld - %zu).",
                   (long long)s->max_tokens, (long long)max_len, plen, (long long)s->max_tokens, (long long)max_len, plen);
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

static int build_context(const tok_model *m, enum tok_endpoint ep, const cJSON *body, const sampling *s,
                         cJSON **out, tok_error *e)
{
    cJSON *ctx = cJSON_CreateObject();
    int rc = 0;
    bool b;
    cJSON_AddStringToObject(ctx, "endpoint", ep == TOK_ENDPOINT_CHAT ? "chat" : "completions");
    const cJSON *model = field(body, "model");
    if (model && !cJSON_IsString(model)) rc = BAD(e, "model", "'model' must be a string");
    cJSON_AddStringToObject(ctx, "model", model && cJSON_IsString(model) ? model->valuestring : tok_model_name(m));

    bool stream = false;
    if (!rc) rc = get_bool(body, "stream", false, &stream, e);
    cJSON_AddBoolToObject(ctx, "stream", stream);
    const cJSON *so = field(body, "stream_options");
    if (!rc && so && !stream) rc = BAD(e, "stream_options", "Stream options can only be defined when `stream=True`.");
    if (!rc && so && !cJSON_IsObject(so)) rc = BAD(e, "stream_options", "'stream_options' must be an object");
    if (!rc) ctx_copy(ctx, body, "stream_options");

    if (!rc) rc = check_stop(body, e);
    if (!rc) {
        const cJSON *stop = field(body, "stop");
        cJSON *list = cJSON_IsString(stop) ? cJSON_CreateArray() : cJSON_Duplicate(stop ? stop : NULL, 1);
        if (!list) list = cJSON_CreateArray();
        if (cJSON_IsString(stop)) cJSON_AddItemToArray(list, cJSON_CreateString(stop->valuestring));
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
            cJSON_AddNumberToObject(ctx, "top_logprobs", (double)s->logprobs);
        } else if (s->has_logprobs) {
            cJSON_AddNumberToObject(ctx, "logprobs", (double)s->logprobs);
        }
        cJSON_AddNumberToObject(ctx, "n", (double)s->n);
    }
    if (!rc && ep == TOK_ENDPOINT_CHAT) {
        cJSON *kw = NULL, *choice = NULL;
        rc = merged_kwargs(m, body, &kw, e);
        if (!rc) cJSON_AddBoolToObject(ctx, "thinking", thinking_on(kw));
        if (!rc) cJSON_AddItemToObject(ctx, "chat_template_kwargs", kw);
        else cJSON_Delete(kw);
        if (!rc) rc = resolve_tool_choice(body, &choice, e);
        if (!rc && (rc = tok_tool_choice_check(m, body, e))) cJSON_Delete(choice);
        if (!rc) {
            cJSON_AddItemToObject(ctx, "tool_choice", choice);
            const cJSON *tools = field(body, "tools");
            cJSON_AddItemToObject(ctx, "tools", tools ? cJSON_Duplicate(tools, 1) : cJSON_CreateNull());
        }
    }
    if (rc) { cJSON_Delete(ctx); return rc; }
    *out = ctx;
    return 0;
}

/* ================================================================ entry */

static const char *const consumed_keys[] = {"type", "id", "endpoint", "body"};

int tok_request_process(const tok_model *m, enum tok_endpoint ep, const cJSON *body,
                        const msgpack_object *orig, const char *id, size_t idlen,
                        msgpack_packer *pk, tok_emit_fn emit, void *ud, tok_error *e)
{
    if (!cJSON_IsObject(body)) return BAD(e, NULL, "request body must be a JSON object");
    sampling s;
    int rc = parse_sampling(m, ep, body, &s, e);
    if (!rc) rc = check_stop_ids(m, body, e);
    if (rc) return rc;

    prompt *ps = NULL;
    size_t nps = 0;
    pl_buf text;
    pl_buf_init(&text);
    bool echo = cJSON_IsTrue(field(body, "echo"));
    if (ep == TOK_ENDPOINT_CHAT) {
        rc = tok_request_render_chat(m, body, &text, e);
        if (!rc && !(ps = calloc(1, sizeof *ps))) rc = fail(e, 500, "InternalServerError", NULL, "out of memory");
        if (!rc) { nps = 1; rc = encode_into(m, text.data ? text.data : "", text.len, &ps[0], e); }
    } else {
        rc = completion_prompts(m, body, echo, &ps, &nps, e);
    }
    cJSON *ctx = NULL;
    if (!rc) rc = build_context(m, ep, body, &s, &ctx, e);
    if (!rc && ep == TOK_ENDPOINT_CHAT) {
        /* GLM-4.7/5.x prompts end with an open <think>: the reasoning parser
         * must treat the output as reasoning from its first byte. */
        const char *tail = "<think>";
        size_t tl = strlen(tail), end = pl_py_rstrip_len(text.data, text.len);
        cJSON_AddBoolToObject(ctx, "prompt_ends_in_think", end >= tl && !memcmp(text.data + end - tl, tail, tl));
        if (echo) cJSON_AddStringToObject(ctx, "prompt_text", text.data ? text.data : "");
    }
    /* all prompts are checked before anything is emitted */
    sampling *per = NULL;
    if (!rc && !(per = calloc(nps, sizeof *per))) rc = fail(e, 500, "InternalServerError", NULL, "out of memory");
    for (size_t j = 0; !rc && j < nps; j++) {
        per[j] = s;
        rc = check_length(m, ep, ps[j].n, &per[j], e);
    }
    for (size_t j = 0; !rc && j < nps; j++) {
        char sub[PL_MSG_ID_MAX + 32];
        size_t sublen = idlen;
        memcpy(sub, id, idlen);
        if (nps > 1) sublen += (size_t)snprintf(sub + idlen, sizeof sub - idlen, "#%zu", j);
        pl_msg_pack_map_except(pk, orig, consumed_keys, PL_ARRAY_LEN(consumed_keys), 6);
        pl_msg_pack_kv_cstr(pk, "type", "generate");
        pl_msg_pack_kv_str(pk, "id", sub, sublen);
        pack_key(pk, "prompt_ids");
        pack_ids(pk, ps[j].ids, ps[j].n);
        pl_msg_pack_kv_int(pk, "n", s.n);
        pack_key(pk, "sampling");
        pack_sampling(pk, m, body, &per[j]);
        pack_key(pk, "context");
        if (nps > 1) {
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, "parent_id");
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, "prompt_index");
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, "num_prompts");
            char *pid = strndup(id, idlen);
            cJSON_AddStringToObject(ctx, "parent_id", pid ? pid : "");
            free(pid);
            cJSON_AddNumberToObject(ctx, "prompt_index", (double)j);
            cJSON_AddNumberToObject(ctx, "num_prompts", (double)nps);
        }
        if (ep == TOK_ENDPOINT_COMPLETIONS && echo) {
            cJSON_DeleteItemFromObjectCaseSensitive(ctx, "prompt_text");
            cJSON_AddStringToObject(ctx, "prompt_text", ps[j].text ? ps[j].text : "");
        }
        pl_json_pack(pk, ctx);
        rc = emit(ud);
    }
    free(per);
    cJSON_Delete(ctx);
    prompts_free(ps, nps);
    pl_buf_free(&text);
    return rc;
}
