/* Jinja interpreter: byte-for-byte against Python jinja2 goldens
 * (the JSON files in tests/data/jinja, made by tests/jinja/gen_goldens.py), plus error
 * reporting, safety limits on hostile templates and the value API. */
#include <sys/resource.h>
#include <time.h>

#include "test.h"
#include "jinja/jinja.h"

#include <pthread.h>
#include <cjson/cJSON.h>
#include "json.h"

/* ================================================================ helpers */

/* Whole file as a malloc'd NUL-terminated string (free() it), NULL if unreadable. */
static char *slurp(const char *path, size_t *len)
{
    pl_buf b;
    pl_buf_init(&b);
    if (pl_file_read(path, &b, 256u << 20, NULL, 0)) { pl_buf_free(&b); return NULL; }
    if (len) *len = b.len;
    return b.data;
}

/* Renders src with a JSON context; returns the rc of compile or render.
 * phase: 0 compile failed, 1 render ran. */
static int render(const char *src, size_t srclen, const char *ctx_json, const pl_jinja_limits *lim,
                  pl_buf *out, char *err, size_t errlen, int *phase)
{
    pl_jinja_template *t;
    *phase = 0;
    int rc = pl_jinja_compile(&t, src, srclen, err, errlen);
    if (rc) return rc;
    *phase = 1;
    if (lim) pl_jinja_template_set_limits(t, lim);
    pl_jinja_value *ctx = NULL;
    rc = pl_jinja_value_from_json(&ctx, ctx_json, strlen(ctx_json), err, errlen);
    if (!rc) rc = pl_jinja_render(t, ctx, out, err, errlen);
    pl_jinja_value_free(ctx);
    pl_jinja_template_free(t);
    return rc;
}

static int quick(const char *src, const char *ctx, const pl_jinja_limits *lim, pl_buf *out, char *err, size_t errlen)
{
    int phase;
    pl_buf_reset(out);
    return render(src, strlen(src), ctx ? ctx : "{}", lim, out, err, errlen, &phase);
}

/* The chat_template of a tokenizer_config.json in ../shared. */
static char *tokenizer_template(const char *tok)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data/tokenizers/%s/tokenizer_config.json", test_shared_dir(), tok);
    char *txt = slurp(path, NULL);
    if (!txt) return NULL;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    char *src = cJSON_IsString(ct) ? strdup(ct->valuestring) : NULL;
    cJSON_Delete(j);
    return src;
}

/* Does our error match the Python exception of the golden? */
static int error_matches(int rc, int phase, const char *err, const cJSON *want)
{
    const char *type = cJSON_GetObjectItemCaseSensitive(want, "type")->valuestring;
    const char *wphase = cJSON_GetObjectItemCaseSensitive(want, "phase")->valuestring;
    const char *msg = cJSON_GetObjectItemCaseSensitive(want, "message")->valuestring;
    if (!rc) return 0;
    if (!strcmp(wphase, "compile")) return phase == 0 && rc == PL_ERR_PARSE;
    if (phase != 1) return 0;
    if (!strcmp(type, "TemplateError")) return rc == PL_ERR_TEMPLATE && !strcmp(err, msg);
    size_t tl = strlen(type);
    return !strncmp(err, type, tl) && err[tl] == ':';
}

/* Every case of one golden file; returns 1 when shared data was missing. */
static int run_golden(const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "tests/data/jinja/%s", file);
    char *txt = slurp(path, NULL);
    CHECK(txt != NULL);
    if (!txt) return 0;
    cJSON *doc = cJSON_Parse(txt);
    free(txt);
    CHECK(doc != NULL);
    if (!doc) return 0;
    pl_jinja_limits lim;
    pl_jinja_limits_default(&lim);
    lim.fixed_time = (int64_t)cJSON_GetObjectItemCaseSensitive(doc, "fixed_time")->valuedouble;
    int total = 0, ok = 0, skipped = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "cases")) {
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        const cJSON *inl = cJSON_GetObjectItemCaseSensitive(c, "template");
        const cJSON *tpath = cJSON_GetObjectItemCaseSensitive(c, "template_path");
        const cJSON *ttok = cJSON_GetObjectItemCaseSensitive(c, "template_tokenizer");
        const cJSON *tref = cJSON_GetObjectItemCaseSensitive(c, "template_ref");
        if (cJSON_IsString(tref))
            inl = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "templates"), tref->valuestring);
        char *src = NULL;
        size_t srclen = 0;
        if (cJSON_IsString(inl)) {
            src = strdup(inl->valuestring);
            srclen = strlen(src);
        } else if (cJSON_IsString(tpath)) {
            char p[512];
            snprintf(p, sizeof p, "%s/%s", test_shared_dir(), tpath->valuestring);
            src = slurp(p, &srclen);
        } else if (cJSON_IsString(ttok)) {
            src = tokenizer_template(ttok->valuestring);
            if (src) srclen = strlen(src);
        }
        total++;
        if (!src) { skipped++; continue; }
        pl_buf out;
        pl_buf_init(&out);
        char err[1024] = "";
        int phase;
        const cJSON *cref = cJSON_GetObjectItemCaseSensitive(c, "context_ref");
        const char *ctx = cJSON_IsString(cref)
            ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "contexts"), cref->valuestring)->valuestring
            : cJSON_GetObjectItemCaseSensitive(c, "context")->valuestring;
        int rc = render(src, srclen, ctx, &lim, &out, err, sizeof err, &phase);
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "output");
        const cJSON *werr = cJSON_GetObjectItemCaseSensitive(c, "error");
        int good;
        if (cJSON_IsString(want)) {
            good = rc == 0 && out.len == strlen(want->valuestring) && !memcmp(out.data ? out.data : "", want->valuestring, out.len);
            if (!good) {
                fprintf(stderr, "  %s: %s\n", file, name);
                if (rc) fprintf(stderr, "    error %d: %s\n", rc, err);
                else fprintf(stderr, "    want: %s\n    got:  %s\n", want->valuestring, out.data ? out.data : "");
            }
        } else {
            good = error_matches(rc, phase, err, werr);
            if (!good) {
                fprintf(stderr, "  %s: %s\n    want %s error %s: %s\n    got rc %d phase %d: %s\n", file, name,
                        cJSON_GetObjectItemCaseSensitive(werr, "phase")->valuestring,
                        cJSON_GetObjectItemCaseSensitive(werr, "type")->valuestring,
                        cJSON_GetObjectItemCaseSensitive(werr, "message")->valuestring, rc, phase,
                        rc ? err : (out.data ? out.data : ""));
            }
        }
        ok += good;
        pl_buf_free(&out);
        free(src);
    }
    cJSON_Delete(doc);
    fprintf(stderr, "  %s: %d/%d cases match Python", file, ok, total - skipped);
    if (skipped) fprintf(stderr, " (%d skipped: %s/data absent)", skipped, test_shared_dir());
    fprintf(stderr, "\n");
    CHECK(ok == total - skipped);
    if (skipped == total) test_skip("shared data absent");
    return skipped;
}

/* ================================================================ goldens */

TEST(golden_features) { run_golden("features.json"); }
TEST(golden_glm_templates) { run_golden("glm.json"); }
TEST(golden_tokenizer_templates) { run_golden("tokenizers.json"); }
TEST(golden_template_idioms) { run_golden("idioms.json"); }

/* The reference renders shipped with the templates themselves. */
TEST(golden_shared_glm_renders)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data/templates/glm-render-goldens.json", test_shared_dir());
    char *txt = slurp(path, NULL);
    if (!txt) { test_skip("../shared/data/templates absent"); return; }
    cJSON *doc = cJSON_Parse(txt);
    free(txt);
    const cJSON *renders = cJSON_GetObjectItemCaseSensitive(doc, "renders"), *tr;
    int n = 0;
    cJSON_ArrayForEach(tr, renders) {
        snprintf(path, sizeof path, "%s/data/templates/%s", test_shared_dir(), tr->string);
        size_t len;
        char *src = slurp(path, &len);
        CHECK(src != NULL);
        if (!src) continue;
        pl_jinja_template *t;
        char err[512];
        CHECK_EQ_INT(pl_jinja_compile(&t, src, len, err, sizeof err), 0);
        const cJSON *cs;
        cJSON_ArrayForEach(cs, cJSON_GetObjectItemCaseSensitive(doc, "cases")) {
            const char *cname = cJSON_GetObjectItemCaseSensitive(cs, "name")->valuestring;
            cJSON *ctxj = cJSON_Duplicate(cs, 1);
            cJSON_DeleteItemFromObjectCaseSensitive(ctxj, "name");
            pl_jinja_value *ctx = pl_jinja_value_from_cjson(ctxj);
            cJSON_Delete(ctxj);
            pl_buf out;
            pl_buf_init(&out);
            int rc = pl_jinja_render(t, ctx, &out, err, sizeof err);
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(tr, cname);
            if (cJSON_IsString(want)) {
                CHECK_EQ_INT(rc, 0);
                if (rc || strcmp(out.data ? out.data : "", want->valuestring))
                    fprintf(stderr, "  %s %s mismatch (%s)\n", tr->string, cname, rc ? err : "output");
                else n++;
            } else {
                CHECK(rc != 0);
                n += rc != 0;
            }
            pl_buf_free(&out);
            pl_jinja_value_free(ctx);
        }
        pl_jinja_template_free(t);
        free(src);
    }
    cJSON_Delete(doc);
    fprintf(stderr, "  glm-render-goldens.json: %d renders match\n", n);
    CHECK(n > 0);
}

/* ================================================================ errors */

TEST(syntax_error_line_column)
{
    pl_jinja_template *t;
    char err[256];
    const char *src = "ok\n{{ 'fine' }}\n{% if x %}\n  {{ 1 +* 2 }}\n{% endif %}";
    CHECK_EQ_INT(pl_jinja_compile(&t, src, strlen(src), err, sizeof err), PL_ERR_PARSE);
    CHECK(strstr(err, "line 4, column 9") != NULL);
    src = "a\n\n  {% frobnicate %}";
    CHECK_EQ_INT(pl_jinja_compile(&t, src, strlen(src), err, sizeof err), PL_ERR_PARSE);
    CHECK(strstr(err, "line 3, column 6") != NULL);
    CHECK(strstr(err, "frobnicate") != NULL);
    src = "{% for x in y %}\nbody";
    CHECK_EQ_INT(pl_jinja_compile(&t, src, strlen(src), err, sizeof err), PL_ERR_PARSE);
    CHECK(strstr(err, "endfor") != NULL);
    src = "x {{ 'héllo' $ }}";     /* columns count characters */
    CHECK_EQ_INT(pl_jinja_compile(&t, src, strlen(src), err, sizeof err), PL_ERR_PARSE);
    CHECK(strstr(err, "line 1, column 14") != NULL);
    src = "{{ x | nosuch }}";
    CHECK_EQ_INT(pl_jinja_compile(&t, src, strlen(src), err, sizeof err), PL_ERR_PARSE);
    CHECK(strstr(err, "No filter named 'nosuch'") != NULL);
}

TEST(raise_exception_message)
{
    pl_buf out;
    pl_buf_init(&out);
    char err[256];
    int rc = quick("{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}"
                   "{{ raise_exception('Conversation roles must be user/assistant, got ' ~ m.role) }}"
                   "{% endif %}{% endfor %}", "{\"messages\":[{\"role\":\"user\"},{\"role\":\"tool\"}]}", NULL,
                   &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_TEMPLATE);
    CHECK_EQ_STR(err, "Conversation roles must be user/assistant, got tool");
    rc = quick("{{ x.y.z }}", "{\"x\":{}}", NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_INVALID);
    CHECK(!strncmp(err, "UndefinedError: 'dict object' has no attribute 'y'", 50));
    CHECK(strstr(err, "(line 1)") != NULL);
    rc = quick("\n\n{{ 'a' + 1 }}", NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_INVALID);
    CHECK(!strncmp(err, "TypeError:", 10) && strstr(err, "(line 3)"));
    pl_buf_free(&out);
}

/* int()/float() strip Unicode whitespace, not the bytes 0x85/0xA0
 * (expected output from Python jinja2). */
TEST(int_float_strip_unicode_space)
{
    pl_buf out;
    pl_buf_init(&out);
    char err[256];
    int rc = quick("{{ s|int }}|{{ s|float }}|{{ t|int }}|{{ u|float }}",
                   "{\"s\":\"\\u00a05\\u00a0\",\"t\":\"\\u20037\",\"u\":\"2.5\\u3000\"}", NULL, &out, err,
                   sizeof err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(out.data, "5|5.0|7|2.5");
    pl_buf_free(&out);
}

/* vLLM's content-format guess (expected values from vLLM 0.33's
 * _detect_content_format on the same templates). */
TEST(content_format_like_vllm)
{
    static const struct { const char *src; int openai; } cases[] = {
        {"{% for m in messages %}[{{ m.role }}]{{ m.content }}|{% endfor %}", 0},
        {"{% for m in messages %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endfor %}", 1},
        {"{% for m in messages %}{% for p in m[\"content\"] %}{{ p.text }}{% endfor %}{% endfor %}", 1},
        {"{% set msgs = messages[1:] %}{% for m in msgs %}{% for p in m.content | list %}{{ p }}{% endfor %}{% endfor %}", 1},
        {"{% set ns = namespace(rest=messages) %}{% for m in ns.rest %}{% for p in m.content %}{{ p }}{% endfor %}{% endfor %}", 1},
        {"{% set ns = namespace() %}{% set ns.rest = messages %}{% for m in ns.rest %}{% for p in m.content %}{% endfor %}{% endfor %}", 1},
        {"{% macro t(c) %}{% for x in c %}{{ x }}{% endfor %}{% endmacro %}{% for m in messages %}{{ t(m.content) }}{% endfor %}", 1},
        {"{% macro t(c) %}{% for x in c %}{{ x }}{% endfor %}{% endmacro %}{% for m in messages %}{{ t(m.role) }}{% endfor %}", 0},
        {"{% for m in messages %}{% set content = m.content %}{% for x in content %}{{ x }}{% endfor %}{% endfor %}", 1},
        {"{% macro t(content) %}{% for x in content %}{{ x }}{% endfor %}{% endmacro %}{{ t(messages[0].role) }}", 0},
        {"{% for m in messages|selectattr(\"role\") %}{% for p in m.content %}{% endfor %}{% endfor %}", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pl_jinja_template *t;
        char err[256];
        CHECK(pl_jinja_compile(&t, cases[i].src, strlen(cases[i].src), err, sizeof err) == 0);
        if (pl_jinja_template_iterates_content(t) != cases[i].openai) {
            fprintf(stderr, "  case %zu: expected %s\n", i, cases[i].openai ? "openai" : "string");
            CHECK(0);
        }
        pl_jinja_template_free(t);
    }
}

/* Integers beyond int64 from JSON keep their value (prints and tojson as
 * Python); arithmetic on them is an OverflowError like any int64 overflow. */
TEST(big_ints_from_cjson)
{
    static const char *src = "{{ v }}|{{ v | tojson }}|{{ v is integer }}|{{ v == w }}|{{ [v] | tojson }}";
    pl_jinja_template *t;
    char err[256];
    CHECK(pl_jinja_compile(&t, src, strlen(src), err, sizeof err) == 0);
    cJSON *j;
    const char *ctx = "{\"v\": 18446744073709551616, \"w\": 18446744073709551616}";
    CHECK(pl_json_parse(&j, ctx, strlen(ctx), err, sizeof err) == 0);
    pl_jinja_value *v = pl_jinja_value_from_cjson(j);
    pl_buf out;
    pl_buf_init(&out);
    CHECK(pl_jinja_render(t, v, &out, err, sizeof err) == 0);
    CHECK_EQ_STR(out.data, "18446744073709551616|18446744073709551616|True|True|[18446744073709551616]");
    pl_jinja_value_free(v);
    pl_jinja_template_free(t);
    CHECK(pl_jinja_compile(&t, "{{ v + 1 }}", 11, err, sizeof err) == 0);
    v = pl_jinja_value_from_cjson(j);
    pl_buf_reset(&out);
    CHECK_EQ_INT(pl_jinja_render(t, v, &out, err, sizeof err), PL_ERR_INVALID);
    CHECK(!strncmp(err, "OverflowError", 13));
    pl_jinja_value_free(v);
    pl_jinja_template_free(t);
    cJSON_Delete(j);
    pl_buf_free(&out);
}

/* ================================================================ hostile templates */

TEST(hostile_recursion)
{
    pl_buf out;
    pl_buf_init(&out);
    char err[256];
    int rc = quick("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    rc = quick("{% for x in t recursive %}{{ loop(t) }}{% endfor %}", "{\"t\":[1]}", NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    /* mutual recursion through call blocks */
    rc = quick("{% macro a() %}{% call a() %}x{% endcall %}{% endmacro %}{{ a() }}", NULL, NULL, &out, err, sizeof err);
    CHECK(rc == PL_ERR_RANGE || rc == PL_ERR_INVALID);
    pl_buf_free(&out);
}

/* Deep expressions inside deep recursion, on a 1 MiB thread stack: the
 * nesting limit must stop it before the stack runs out. */
static void *deep_thread(void *arg)
{
    pl_buf src, out;
    pl_buf_init(&src);
    pl_buf_init(&out);
    pl_buf_puts(&src, "{% macro f(n) %}{{ ");
    for (int i = 0; i < 60; i++) pl_buf_puts(&src, "-(");
    pl_buf_puts(&src, "[f(n + 1)] | length");
    for (int i = 0; i < 60; i++) pl_buf_puts(&src, ")");
    pl_buf_puts(&src, " }}{% endmacro %}{{ f(0) }}");
    char err[256];
    int *rc = arg;
    *rc = quick(src.data, NULL, NULL, &out, err, sizeof err);
    pl_buf_free(&src);
    pl_buf_free(&out);
    return NULL;
}

TEST(hostile_stack_depth)
{
    pthread_attr_t at;
    pthread_attr_init(&at);
#ifdef __SANITIZE_ADDRESS__
    pthread_attr_setstacksize(&at, 8 << 20);     /* ASan frames are several times larger */
#else
    pthread_attr_setstacksize(&at, 1 << 20);
#endif
    pthread_t th;
    int rc = 0;
    CHECK_EQ_INT(pthread_create(&th, &at, deep_thread, &rc), 0);
    pthread_join(th, NULL);
    pthread_attr_destroy(&at);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
}

TEST(hostile_loops_and_bombs)
{
    pl_buf out;
    pl_buf_init(&out);
    char err[256];
    pl_jinja_limits lim;
    pl_jinja_limits_default(&lim);
    lim.max_iterations = 1000000;
    int rc = quick("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", NULL, &lim,
                   &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    CHECK(strstr(err, "iterations") != NULL);
    rc = quick("{{ 'x' * 1000000000000 }}", NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    rc = quick("{{ ['x'] * 1000000000000 }}", NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    rc = quick("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
               NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    lim.max_output = 1 << 20;
    rc = quick("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", NULL, &lim, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    CHECK(strstr(err, "output") != NULL);
    rc = quick("{{ range(100001) | length }}", NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_INVALID);
    rc = quick("{{ 'ab' | replace('', 'xxxxxxxxxx') | replace('x', 'yyyyyyyyyyyyyyyyyyyy') * 10000 }}", NULL, &lim,
               &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    /* work budget: many big strings built and thrown away */
    lim.max_work = 100 << 20;
    lim.max_output = 64 << 20;
    rc = quick("{% for i in range(100000) %}{% set s = 'z' * 100000 %}{% endfor %}", NULL, &lim, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    pl_buf_free(&out);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long maxrss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static int g_interrupt_calls;
static int interrupt_after_100(void) { return ++g_interrupt_calls > 100; }

/* A result of unknown size (tojson, str(), print, join, %) stops growing at
 * the string limit while it is built: a 3 MB string listed 1000 times (3 GB
 * of JSON) fails at once, with memory near the limit, not at 3 GB. A render
 * stops at its time budget and when the caller interrupts it. */
TEST(hostile_time_and_size_bounded)
{
    pl_buf out;
    pl_buf_init(&out);
    char err[256];
    pl_jinja_limits lim;
    pl_jinja_limits_default(&lim);
    lim.max_output = 4 << 20;
    long rss0 = maxrss_mb();
    static const char *const bombs[] = {
        "{% set s = 'x' * 3000000 %}{{ ([s] * 1000) | tojson }}",
        "{% set s = 'x' * 3000000 %}{% set t = ([s] * 1000) | tojson %}",
        "{% set s = 'x' * 3000000 %}{{ ([s] * 1000) | string }}",
        "{% set s = 'x' * 3000000 %}{{ [s] * 1000 }}",
        "{% set s = 'x' * 3000000 %}{{ ([s] * 1000) | join }}",
        "{% set s = 'x' * 3000000 %}{{ '%s' % ([s] * 1000) }}",
        "{% set s = 'x' * 3000000 %}{{ '{}'.format([s] * 1000) }}",
        "{% set s = 'x' * 3000000 %}{{ s ~ ([s] * 1000) }}",
        "{% set s = 'x' * 3000000 %}{{ ([{'k': s}] * 1000) | tojson(indent=2) }}",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bombs); i++) {
        double t0 = now_s();
        int rc = quick(bombs[i], NULL, &lim, &out, err, sizeof err);
        CHECK_EQ_INT(rc, PL_ERR_RANGE);
        CHECK(strstr(err, "LimitError") != NULL);
        CHECK(now_s() - t0 < 2.0);
        if (rc != PL_ERR_RANGE || now_s() - t0 >= 2.0) fprintf(stderr, "  bomb %zu (%.1f s): %s\n", i, now_s() - t0, err);
    }
    CHECK(maxrss_mb() - rss0 < 200);   /* 3 GB if any result had been built whole */

    /* a minute of string scanning within every other limit: cut at the budget */
    pl_jinja_limits_default(&lim);
    lim.max_time_ms = 300;
    double t0 = now_s();
    int rc = quick("{% set s = 'a' * 4000000 %}{% for i in range(10000) %}{% for j in range(1000) %}{% set n = s.count('b') %}{% endfor %}{% endfor %}",
                   NULL, &lim, &out, err, sizeof err);
    double dt = now_s() - t0;
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    CHECK(strstr(err, "longer than 300 ms") != NULL);
    CHECK(dt >= 0.3 && dt < 2.0);
    /* the caller's interrupt (a stage told to stop now) */
    pl_jinja_limits_default(&lim);
    lim.interrupt = interrupt_after_100;
    rc = quick("{% for i in range(1000) %}{% for j in range(1000) %}{{ i | string }}{% endfor %}{% endfor %}", NULL, &lim, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_RANGE);
    CHECK(strstr(err, "interrupted") != NULL);
    pl_buf_free(&out);
}

TEST(hostile_parser)
{
    pl_jinja_template *t;
    char err[256];
    pl_buf deep;
    pl_buf_init(&deep);
    pl_buf_puts(&deep, "{{ ");
    for (int i = 0; i < 100000; i++) pl_buf_putc(&deep, '(');
    pl_buf_puts(&deep, "1 }}");
    CHECK_EQ_INT(pl_jinja_compile(&t, deep.data, deep.len, err, sizeof err), PL_ERR_PARSE);
    pl_buf_reset(&deep);
    pl_buf_puts(&deep, "{{ ");
    for (int i = 0; i < 50000; i++) pl_buf_puts(&deep, "not ");
    pl_buf_puts(&deep, "1 }}");
    CHECK_EQ_INT(pl_jinja_compile(&t, deep.data, deep.len, err, sizeof err), PL_ERR_PARSE);
    pl_buf_reset(&deep);
    for (int i = 0; i < 5000; i++) pl_buf_puts(&deep, "{% if true %}");
    CHECK_EQ_INT(pl_jinja_compile(&t, deep.data, deep.len, err, sizeof err), PL_ERR_PARSE);
    pl_buf_reset(&deep);
    pl_buf_puts(&deep, "{{ [");
    for (int i = 0; i < 50; i++) pl_buf_puts(&deep, "[");     /* Python itself stops near 70 */
    for (int i = 0; i < 50; i++) pl_buf_puts(&deep, "]");
    pl_buf_puts(&deep, "] }}");
    CHECK_EQ_INT(pl_jinja_compile(&t, deep.data, deep.len, err, sizeof err), 0);
    pl_jinja_template_free(t);
    /* binary junk */
    const char junk[] = "{{ \x01\xff\xfe }}{% \x80 %}";
    CHECK_EQ_INT(pl_jinja_compile(&t, junk, sizeof junk - 1, err, sizeof err), PL_ERR_PARSE);
    CHECK_EQ_INT(pl_jinja_compile(&t, "", 0, err, sizeof err), 0);
    pl_jinja_template_free(t);
    pl_buf_free(&deep);
}

TEST(hostile_cycles_freed)
{
    /* cycles through namespaces and macro closures must not leak (ASan) */
    pl_buf out;
    pl_buf_init(&out);
    char err[256];
    int rc = quick("{% set ns = namespace() %}{% set ns.me = ns %}{% set ns.l = [ns, ns] %}"
                   "{% for i in range(3) %}{% macro m() %}{{ i }}{% endmacro %}{% set ns2 = namespace(f=m) %}"
                   "{% set ns.keep = ns2 %}{% set ns2.back = ns %}{% endfor %}{{ ns.keep.f() }}",
                   NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(out.data, "2");
    rc = quick("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me.me is defined }}{{ nothing.x }}",
               NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, PL_ERR_INVALID);
    pl_buf_free(&out);
}

/* ================================================================ API */

TEST(value_api)
{
    pl_jinja_template *t;
    char err[256];
    const char *src = "{{ a }}|{{ b }}|{{ c }}|{{ d }}|{{ e }}|{{ f | tojson }}|{{ g }}|{{ h }}";
    CHECK_EQ_INT(pl_jinja_compile(&t, src, strlen(src), err, sizeof err), 0);
    pl_jinja_value *ctx = pl_jinja_value_dict();
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "a", pl_jinja_value_cstring("x")), 0);
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "b", pl_jinja_value_int(-3)), 0);
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "c", pl_jinja_value_float(1.0)), 0);
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "d", pl_jinja_value_bool(1)), 0);
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "e", pl_jinja_value_none()), 0);
    pl_jinja_value *l = pl_jinja_value_list();
    pl_jinja_value_list_append(l, pl_jinja_value_cstring("é"));
    pl_jinja_value_list_append(l, pl_jinja_value_int(2));
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "f", l), 0);
    cJSON *j = cJSON_Parse("{\"k\":[1,2.5,true,null,\"s\"],\"z\":{}}");
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "g", pl_jinja_value_from_cjson(j)), 0);
    cJSON_Delete(j);
    pl_jinja_value *kw = NULL;
    const char *kwj = "{\"h\": 1.0, \"a\": \"over\"}";
    CHECK_EQ_INT(pl_jinja_value_from_json(&kw, kwj, strlen(kwj), err, sizeof err), 0);
    CHECK_EQ_INT(pl_jinja_value_dict_update(ctx, kw), 0);
    pl_jinja_value_free(kw);
    CHECK(pl_jinja_value_dict_has(ctx, "h"));
    CHECK(!pl_jinja_value_dict_has(ctx, "zz"));
    pl_buf out;
    pl_buf_init(&out);
    CHECK_EQ_INT(pl_jinja_render(t, ctx, &out, err, sizeof err), 0);
    CHECK_EQ_STR(out.data, "over|-3|1.0|True|None|[\"é\", 2]|{'k': [1, 2.5, True, None, 's'], 'z': {}}|1.0");
    /* render many times: same output, context untouched */
    for (int i = 0; i < 3; i++) {
        pl_buf_reset(&out);
        CHECK_EQ_INT(pl_jinja_render(t, ctx, &out, err, sizeof err), 0);
    }
    CHECK_EQ_STR(out.data, "over|-3|1.0|True|None|[\"é\", 2]|{'k': [1, 2.5, True, None, 's'], 'z': {}}|1.0");
    /* misuse is reported, not crashed on */
    CHECK_EQ_INT(pl_jinja_value_dict_set(l = pl_jinja_value_list(), "x", pl_jinja_value_int(1)), PL_ERR_INVALID);
    pl_jinja_value_free(l);
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "x", NULL), PL_ERR_NOMEM);
    pl_jinja_value *bad;
    CHECK_EQ_INT(pl_jinja_value_from_json(&bad, "{\"a\": }", 7, err, sizeof err), PL_ERR_PARSE);
    CHECK_EQ_INT(pl_jinja_value_from_json(&bad, "[1] x", 5, err, sizeof err), PL_ERR_PARSE);
    pl_jinja_value *notdict = pl_jinja_value_int(1);
    CHECK_EQ_INT(pl_jinja_render(t, notdict, &out, err, sizeof err), PL_ERR_INVALID);
    pl_jinja_value_free(notdict);
    CHECK_EQ_INT(pl_jinja_render(t, NULL, &out, err, sizeof err), PL_ERR_INVALID);  /* undefined | tojson */
    CHECK(!strncmp(err, "TypeError: Object of type Undefined", 35));
    pl_buf_free(&out);
    pl_jinja_value_free(ctx);
    pl_jinja_template_free(t);
}

/* The tokenize stage's pattern: a whole request body parsed once, its
 * fields moved into the context, chat_template_kwargs merged in. */
TEST(request_to_context)
{
    const char *body = "{\"model\": \"glm\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}],"
                       " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\":"
                       " {\"default\": 1.0}}}], \"chat_template_kwargs\": {\"enable_thinking\": false}}";
    char err[256];
    pl_jinja_value *req;
    CHECK_EQ_INT(pl_jinja_value_from_json(&req, body, strlen(body), err, sizeof err), 0);
    CHECK_EQ_INT(pl_jinja_value_kind(req), PL_JINJA_DICT);
    pl_jinja_value *ctx = pl_jinja_value_dict();
    pl_jinja_value *msgs = pl_jinja_value_dict_get(req, "messages");
    CHECK(msgs && pl_jinja_value_kind(msgs) == PL_JINJA_LIST);
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "messages", msgs), 0);
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "tools", pl_jinja_value_dict_get(req, "tools")), 0);
    CHECK_EQ_INT(pl_jinja_value_dict_set(ctx, "add_generation_prompt", pl_jinja_value_bool(1)), 0);
    pl_jinja_value *kw = pl_jinja_value_dict_get(req, "chat_template_kwargs");
    CHECK_EQ_INT(pl_jinja_value_dict_update(ctx, kw), 0);
    pl_jinja_value_free(kw);
    CHECK(pl_jinja_value_dict_get(req, "nope") == NULL);
    pl_jinja_value *one = pl_jinja_value_int(1);
    CHECK(pl_jinja_value_dict_get(one, "x") == NULL);      /* not a dict */
    pl_jinja_value_free(one);
    pl_jinja_value_free(req);                              /* ctx keeps what it took */
    const char *src = "{{ messages[0].content }}|{{ tools | tojson }}|{{ enable_thinking }}|{{ add_generation_prompt }}"
                      "{% if false %}{% generation %}x{% endgeneration %}{% endif %}";
    pl_jinja_template *t;
    CHECK_EQ_INT(pl_jinja_compile(&t, src, strlen(src), err, sizeof err), 0);
    pl_buf out;
    pl_buf_init(&out);
    CHECK_EQ_INT(pl_jinja_render(t, ctx, &out, err, sizeof err), 0);
    CHECK_EQ_STR(out.data, "hi|[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"default\": 1.0}}}]|False|True");
    pl_buf_free(&out);
    pl_jinja_template_free(t);
    pl_jinja_value_free(ctx);
}

TEST(json_parse_like_python)
{
    pl_jinja_template *t;
    char err[256];
    const char *src = "{{ v }}";
    CHECK_EQ_INT(pl_jinja_compile(&t, src, strlen(src), err, sizeof err), 0);
    static const struct { const char *json, *want; } cases[] = {
        {"{\"v\": [1, 1.0, -0, 1e2, 2.5E-3, 9223372036854775807]}", "[1, 1.0, 0, 100.0, 0.0025, 9223372036854775807]"},
        {"{\"v\": \"\\u00e9\\ud83d\\ude00\\n\\\"\"}", "é😀\n\""},
        {"{\"v\": {\"a\": 1, \"b\": 2, \"a\": 3}}", "{'a': 3, 'b': 2}"},
        {" {\"v\" : [ true , false , null ] } ", "[True, False, None]"},
        {"{\"v\": [NaN, Infinity, -Infinity]}", "[nan, inf, -inf]"},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        pl_jinja_value *ctx;
        CHECK_EQ_INT(pl_jinja_value_from_json(&ctx, cases[i].json, strlen(cases[i].json), err, sizeof err), 0);
        pl_buf out;
        pl_buf_init(&out);
        CHECK_EQ_INT(pl_jinja_render(t, ctx, &out, err, sizeof err), 0);
        CHECK_EQ_STR(out.data, cases[i].want);
        pl_buf_free(&out);
        pl_jinja_value_free(ctx);
    }
    pl_jinja_template_free(t);
}

/* One compiled template rendered from several threads at once. */
static pl_jinja_template *g_tpl;
static void *render_thread(void *arg)
{
    long bad = 0;
    char err[256];
    for (int i = 0; i < 200; i++) {
        pl_jinja_value *ctx;
        char json[128];
        int n = snprintf(json, sizeof json, "{\"xs\": [%d, %d, %d], \"name\": \"t%ld\"}", i, i + 1, i + 2, (long)(intptr_t)arg);
        pl_jinja_value_from_json(&ctx, json, (size_t)n, err, sizeof err);
        pl_buf out;
        pl_buf_init(&out);
        if (pl_jinja_render(g_tpl, ctx, &out, err, sizeof err)) bad++;
        char want[128];
        snprintf(want, sizeof want, "t%ld:%d,%d,%d|CONST", (long)(intptr_t)arg, i, i + 1, i + 2);
        if (!out.data || strcmp(out.data, want)) bad++;
        pl_buf_free(&out);
        pl_jinja_value_free(ctx);
    }
    return (void *)bad;
}

TEST(concurrent_renders)
{
    char err[256];
    const char *src = "{% macro m(x) %}{{ x }}{% endmacro %}{{ name }}:{{ xs | join(',') }}|{{ m('const' | upper) }}";
    CHECK_EQ_INT(pl_jinja_compile(&g_tpl, src, strlen(src), err, sizeof err), 0);
    pthread_t th[4];
    for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, render_thread, (void *)(intptr_t)i);
    long bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        bad += (long)(intptr_t)r;
    }
    CHECK_EQ_INT(bad, 0);
    pl_jinja_template_free(g_tpl);
}

int main(void)
{
    RUN(golden_features);
    RUN(golden_glm_templates);
    RUN(golden_tokenizer_templates);
    RUN(golden_template_idioms);
    RUN(golden_shared_glm_renders);
    RUN(syntax_error_line_column);
    RUN(raise_exception_message);
    RUN(int_float_strip_unicode_space);
    RUN(content_format_like_vllm);
    RUN(big_ints_from_cjson);
    RUN(hostile_recursion);
    RUN(hostile_stack_depth);
    RUN(hostile_loops_and_bombs);
    RUN(hostile_time_and_size_bounded);
    RUN(hostile_parser);
    RUN(hostile_cycles_freed);
    RUN(value_api);
    RUN(request_to_context);
    RUN(json_parse_like_python);
    RUN(concurrent_renders);
    return test_report();
}
