/* Python json.dumps / repr(float) conformance; expectations written from
 * CPython 3.11 output. */
#include "test.h"
#include "pyjson.h"

static const char *repr(double d)
{
    static pl_buf b;
    pl_buf_reset(&b);
    pl_py_float_repr(&b, d);
    return b.data;
}

TEST(float_repr)
{
    CHECK_EQ_STR(repr(1.0), "1.0");
    CHECK_EQ_STR(repr(0.1), "0.1");
    CHECK_EQ_STR(repr(-2.5), "-2.5");
    CHECK_EQ_STR(repr(1e16), "1e+16");
    CHECK_EQ_STR(repr(1e15), "1000000000000000.0");
    CHECK_EQ_STR(repr(123456789012345678.0), "1.2345678901234568e+17");
    CHECK_EQ_STR(repr(0.0001), "0.0001");
    CHECK_EQ_STR(repr(0.00001), "1e-05");
    CHECK_EQ_STR(repr(1.5e-07), "1.5e-07");
    CHECK_EQ_STR(repr(0.1 + 0.2), "0.30000000000000004");
    CHECK_EQ_STR(repr(-0.0), "-0.0");
    CHECK_EQ_STR(repr(1e300), "1e+300");
    CHECK_EQ_STR(repr(3.14159), "3.14159");
    CHECK_EQ_STR(repr(100.5), "100.5");
}

static const char *dumps(const char *json, int ensure_ascii)
{
    static pl_buf b;
    pl_buf_reset(&b);
    cJSON *v = cJSON_Parse(json);
    if (!v) return NULL;
    pl_pyjson_opts o = PL_PYJSON_DEFAULT;
    o.ensure_ascii = ensure_ascii;
    int rc = pl_pyjson_dump(&b, v, &o);
    cJSON_Delete(v);
    return rc ? NULL : b.data;
}

TEST(dumps_basic)
{
    CHECK_EQ_STR(dumps("{\"b\":1,\"a\":[true,false,null,1.5,\"x\"]}", 0),
                 "{\"b\": 1, \"a\": [true, false, null, 1.5, \"x\"]}");
    CHECK_EQ_STR(dumps("{}", 0), "{}");
    CHECK_EQ_STR(dumps("[]", 0), "[]");
    CHECK_EQ_STR(dumps("\"\\u00e9\\u4e2d\\ud83d\\ude00\"", 0), "\"é中😀\"");
    CHECK_EQ_STR(dumps("\"\\u00e9\\u4e2d\\ud83d\\ude00\"", 1), "\"\\u00e9\\u4e2d\\ud83d\\ude00\"");
    CHECK_EQ_STR(dumps("\"a\\\"b\\\\c\\n\\t\\u0001\\u007f/\"", 0), "\"a\\\"b\\\\c\\n\\t\\u0001\x7f/\"");
    CHECK_EQ_STR(dumps("-12", 0), "-12");
}

TEST(dumps_indent)
{
    pl_buf b; pl_buf_init(&b);
    cJSON *v = cJSON_Parse("{\"a\":[1,2],\"b\":{}}");
    pl_pyjson_opts o = PL_PYJSON_DEFAULT;
    o.indent = 2;
    CHECK(pl_pyjson_dump(&b, v, &o) == 0);
    CHECK_EQ_STR(b.data, "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {}\n}");
    cJSON_Delete(v);
    pl_buf_free(&b);
}

int main(void)
{
    RUN(float_repr);
    RUN(dumps_basic);
    RUN(dumps_indent);
    return test_report();
}
