/* libFuzzer target: the Jinja parser and interpreter (lib/jinja). Input:
 * template source, optionally followed by \x00 and a JSON context. Renders
 * run under tight limits (1 MiB strings, 100k iterations, 1 s). */
#include <stdint.h>
#include <string.h>

#include "jinja/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    const char *nul = memchr(src, 0, size);
    size_t srclen = nul ? (size_t)(nul - src) : size;
    pl_jinja_template *t;
    char err[512];
    if (pl_jinja_compile(&t, src, srclen, err, sizeof err)) return 0;
    pl_jinja_limits lim;
    pl_jinja_limits_default(&lim);
    lim.max_output = 1 << 20;
    lim.max_iterations = 100000;
    lim.max_work = 64 << 20;
    lim.max_time_ms = 1000;
    lim.fixed_time = 1700000000;
    pl_jinja_template_set_limits(t, &lim);
    pl_jinja_value *ctx = NULL;
    if (nul && pl_jinja_value_from_json(&ctx, nul + 1, size - srclen - 1, err, sizeof err)) ctx = NULL;
    if (!ctx) ctx = pl_jinja_value_dict();
    if (pl_jinja_value_kind(ctx) == PL_JINJA_DICT) {
        pl_buf out;
        pl_buf_init(&out);
        pl_jinja_render(t, ctx, &out, err, sizeof err);
        pl_buf_free(&out);
    }
    pl_jinja_value_free(ctx);
    pl_jinja_template_free(t);
    return 0;
}
