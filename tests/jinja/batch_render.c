/* batch_render — renders many (template, context-JSON) pairs in one process
 * for the differential fuzzer (tests/jinja/fuzz_diff.py).
 *
 *   batch_render cases.json > results.json
 *
 * cases.json is a JSON array of [template, context_json_text]; the output is
 * a JSON array with, per case, the rendered text or "ERR <message>". */
#include "jinja/jinja.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

static char *read_all(FILE *f)
{
    pl_buf b;
    pl_buf_init(&b);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) pl_buf_append(&b, tmp, n);
    return b.data;
}

static cJSON *render_one(const char *src, const char *ctx_json)
{
    char err[1024];
    pl_jinja_template *t;
    pl_buf out;
    pl_buf_init(&out);
    int rc = pl_jinja_compile(&t, src, strlen(src), err, sizeof err);
    if (!rc) {
        pl_jinja_value *ctx = NULL;
        rc = pl_jinja_value_from_json(&ctx, ctx_json, strlen(ctx_json), err, sizeof err);
        if (!rc) rc = pl_jinja_render(t, ctx, &out, err, sizeof err);
        pl_jinja_value_free(ctx);
        pl_jinja_template_free(t);
    }
    cJSON *r;
    if (rc) {
        char msg[1100];
        snprintf(msg, sizeof msg, "ERR %s", err);
        r = cJSON_CreateString(msg);
    } else {
        r = cJSON_CreateString(out.data ? out.data : "");
    }
    pl_buf_free(&out);
    return r;
}

int main(int argc, char **argv)
{
    FILE *f = argc > 1 ? fopen(argv[1], "rb") : stdin;
    if (!f) { perror(argv[1]); return 2; }
    char *txt = read_all(f);
    if (f != stdin) fclose(f);
    cJSON *cases = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    if (!cJSON_IsArray(cases)) { fprintf(stderr, "batch_render: expected a JSON array\n"); return 2; }
    cJSON *results = cJSON_CreateArray();
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *src = cJSON_GetArrayItem(c, 0), *ctx = cJSON_GetArrayItem(c, 1);
        if (!cJSON_IsString(src) || !cJSON_IsString(ctx)) { cJSON_AddItemToArray(results, cJSON_CreateString("ERR bad case")); continue; }
        cJSON_AddItemToArray(results, render_one(src->valuestring, ctx->valuestring));
    }
    char *s = cJSON_PrintUnformatted(results);
    if (s) { fputs(s, stdout); putchar('\n'); }
    free(s);
    cJSON_Delete(results);
    cJSON_Delete(cases);
    return 0;
}
