/* toolchoice.c — the server-side half of tool_choice: what this server was
 * started to allow.
 *
 * vLLM 0.33.0 builds a tool parser only when it runs with both
 * --enable-auto-tool-choice and --tool-call-parser (glm-serve refuses the
 * first without the second, as vLLM's argument check does). Without one the
 * chat renderer (vllm/renderers/online_renderer.py) answers 400 to every
 * tool_choice but "none"; with tools and no tool_choice the request's
 * validator has already made it "auto". */
#include "tokenize.h"

#include <stdio.h>
#include <string.h>

#define AUTO_NEEDS "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"

/* what: the choice as vLLM quotes it: "required" or function "NAME" */
static int refuse(tok_error *e, const char *what)
{
    e->code = 400;
    e->type = "BadRequestError";
    e->param = NULL;   /* vLLM names no param here */
    if (what) snprintf(e->message, sizeof e->message, "tool_choice=%s requires --tool-call-parser to be set", what);
    else snprintf(e->message, sizeof e->message, "%s", AUTO_NEEDS);
    return PL_ERR_INVALID;
}

int tok_tool_choice_check(const tok_model *m, const cJSON *body, tok_error *e)
{
    if (tok_model_auto_tools(m)) return 0;
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(body, "tool_choice");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
    if (!tc || cJSON_IsNull(tc)) {
        if (cJSON_GetArraySize(tools) == 0) return 0;   /* no tools: nothing to choose */
        return refuse(e, NULL);
    }
    char what[300];
    if (cJSON_IsString(tc)) {
        if (!strcmp(tc->valuestring, "none")) return 0;
        if (!strcmp(tc->valuestring, "auto")) return refuse(e, NULL);
        snprintf(what, sizeof what, "\"%.200s\"", tc->valuestring);
        return refuse(e, what);
    }
    /* a named choice; its shape was checked by the request validation */
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    snprintf(what, sizeof what, "function \"%.200s\"", cJSON_IsString(name) ? name->valuestring : "");
    return refuse(e, what);
}
