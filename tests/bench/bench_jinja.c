/* bench_jinja — chat-template render time of the C interpreter.
 *
 *   bench_jinja [template] [context.json] [renders] [output-file]
 *
 * Compiles the template once, then times `renders` renders of the same
 * context (the tokenize stage's pattern: compile at startup, render per
 * request). Defaults: ../shared/data/templates/glm-5.2.jinja,
 * tests/bench/jinja_context.json, 20000. tests/bench/bench_jinja.sh runs this
 * and the Python jinja2 equivalent (bench_jinja.py) on the same input. */
#include "jinja/jinja.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Whole file in memory (NUL-terminated); NULL with a message on failure. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long size = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    char *data = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (data && (fseek(f, 0, SEEK_SET) != 0 || fread(data, 1, (size_t)size, f) != (size_t)size)) {
        free(data);
        data = NULL;
    }
    if (f) fclose(f);
    if (!data) { perror(path); return NULL; }
    data[size] = 0;
    *len = (size_t)size;
    return data;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const char *tpath = argc > 1 ? argv[1] : "../shared/data/templates/glm-5.2.jinja";
    const char *cpath = argc > 2 ? argv[2] : "tests/bench/jinja_context.json";
    int n = argc > 3 ? atoi(argv[3]) : 20000;
    size_t tl, cl;
    char *src = slurp(tpath, &tl), *ctxj = slurp(cpath, &cl);
    if (!src || !ctxj) return 2;
    char err[512];
    pl_jinja_template *t;
    double t0 = now();
    if (pl_jinja_compile(&t, src, tl, err, sizeof err)) { fprintf(stderr, "compile: %s\n", err); return 1; }
    double tcomp = now() - t0;
    pl_jinja_value *ctx;
    t0 = now();
    if (pl_jinja_value_from_json(&ctx, ctxj, cl, err, sizeof err)) { fprintf(stderr, "context: %s\n", err); return 1; }
    double tctx = now() - t0;
    pl_buf out;
    pl_buf_init(&out);
    for (int i = 0; i < 100; i++) {      /* warm-up */
        pl_buf_reset(&out);
        if (pl_jinja_render(t, ctx, &out, err, sizeof err)) { fprintf(stderr, "render: %s\n", err); return 1; }
    }
    t0 = now();
    for (int i = 0; i < n; i++) {
        pl_buf_reset(&out);
        pl_jinja_render(t, ctx, &out, err, sizeof err);
    }
    double per = (now() - t0) / n;
    printf("C       render: %8.1f us/render  (%d renders, output %zu bytes; compile %.1f us, context from JSON %.1f us)\n",
           per * 1e6, n, out.len, tcomp * 1e6, tctx * 1e6);
    if (argc > 4) {
        FILE *f = fopen(argv[4], "wb");
        if (f) { fwrite(out.data, 1, out.len, f); fclose(f); }
    }
    pl_buf_free(&out);
    pl_jinja_value_free(ctx);
    pl_jinja_template_free(t);
    free(src);
    free(ctxj);
    return 0;
}
