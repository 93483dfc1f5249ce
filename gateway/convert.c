/* convert.c — what the request conversions of the other APIs (anthropic.c,
 * responses.c) share, and `glm-gateway --convert API`: those conversions
 * offline. The command reads JSON Lines of request bodies on stdin and
 * writes, one line each, the chat completions body the gateway would send
 * down the pipeline, or {"error": "..."}. Used by the prompt-equality tests
 * (tests/py/test_agent_api_goldens.py) and to see what a client's request
 * becomes. */
#include "gw_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "pyjson.h"

#define CONVERT_MAX_BYTES ((size_t)256 << 20)

/* ================================================================ shared helpers */

int gw_conv_bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return PL_ERR_INVALID;
}

const cJSON *gw_conv_get(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

bool gw_conv_str_is(const cJSON *v, const char *s) { return cJSON_IsString(v) && !strcmp(v->valuestring, s); }

void gw_conv_add_str(cJSON *o, const char *key, const char *s) { cJSON_AddItemToObject(o, key, cJSON_CreateString(s)); }

void gw_conv_add_msg(cJSON *msgs, const char *role, const char *content)
{
    cJSON *m = cJSON_CreateObject();
    gw_conv_add_str(m, "role", role);
    gw_conv_add_str(m, "content", content);
    cJSON_AddItemToArray(msgs, m);
}

/* ================================================================ --convert */

int gw_convert_main(const char *api)
{
    bool count = !strcmp(api, "messages-count"), resp = !strcmp(api, "responses");
    if (strcmp(api, "messages") && !count && !resp) {
        fprintf(stderr, "glm-gateway: --convert takes messages, messages-count or responses\n");
        return 2;
    }
    pl_buf in, out;
    pl_buf_init(&in);
    pl_buf_init(&out);
    char err[512];
    if (pl_stream_read(stdin, "stdin", &in, CONVERT_MAX_BYTES, err, sizeof err)) {
        fprintf(stderr, "glm-gateway: %s\n", err);
        pl_buf_free(&in);
        return 1;
    }
    const char *p = in.data ? in.data : "", *end = p + in.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        cJSON *body = NULL, *chat = NULL;
        pl_buf_reset(&out);
        if (len && !pl_json_parse(&body, p, len, err, sizeof err) && !(resp ? gw_resp_to_chat(body, &chat, err, sizeof err) : gw_ant_to_chat(body, count, &chat, err, sizeof err))) {
            pl_pyjson_dump(&out, chat, &PL_PYJSON_DEFAULT);
        } else if (len) {
            pl_buf_puts(&out, "{\"error\": ");
            pl_pyjson_write_string(&out, err, strlen(err), 0);
            pl_buf_putc(&out, '}');
        }
        if (out.len) {
            fwrite(out.data, 1, out.len, stdout);
            fputc('\n', stdout);
        }
        cJSON_Delete(body);
        cJSON_Delete(chat);
        p += len + (nl ? 1 : 0);
    }
    pl_buf_free(&in);
    pl_buf_free(&out);
    return fflush(stdout) ? 1 : 0;
}
