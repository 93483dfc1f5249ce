/* common/: JSON <-> msgpack, message helpers, buffer, file reads. */
#include "test.h"

#include <unistd.h>
#include "json.h"
#include "msg.h"
#include "pyjson.h"
#include "strmap.h"
#include "test_msg.h"

static test_msg g_msg;

/* JSON text -> msgpack_object (valid until the next call) */
static msgpack_object to_obj(const char *json)
{
    test_msg_free(&g_msg);
    const msgpack_object *o = test_msg_parse(&g_msg, json);
    msgpack_object none;
    memset(&none, 0, sizeof none);
    return o ? *o : none;
}

/* v as compact Python JSON (static buffer); v is freed. */
static const char *compact(cJSON *v)
{
    static pl_buf b;
    pl_buf_reset(&b);
    pl_pyjson_opts opts = {0, -1, 0, ",", ":"};
    pl_pyjson_dump(&b, v, &opts);
    cJSON_Delete(v);
    return b.data;
}

/* JSON text -> msgpack -> cJSON -> Python JSON */
static const char *roundtrip(const char *json)
{
    msgpack_object o = to_obj(json);
    cJSON *v;
    return pl_json_from_msgpack(&v, &o, NULL, 0) ? NULL : compact(v);
}

TEST(json_int_float_kept_apart)
{
    CHECK_EQ_STR(roundtrip("{\"a\":1,\"b\":1.0,\"c\":1e3,\"d\":-0.5,\"e\":[2,2.5]}"),
                 "{\"a\":1,\"b\":1.0,\"c\":1000.0,\"d\":-0.5,\"e\":[2,2.5]}");
    CHECK_EQ_STR(roundtrip("\"x\\\"1.0\""), "\"x\\\"1.0\"");   /* numbers inside strings don't count */
    CHECK_EQ_STR(roundtrip("[\"1.5\",3]"), "[\"1.5\",3]");
    CHECK_EQ_STR(roundtrip("{\"k\":\"é\",\"n\":null,\"t\":true}"), "{\"k\":\"é\",\"n\":null,\"t\":true}");
}

TEST(json_parse_errors)
{
    cJSON *v;
    char err[128];
    CHECK(pl_json_parse(&v, "{\"a\":", 5, err, sizeof err) == PL_ERR_PARSE);
    CHECK(pl_json_parse(&v, "{} x", 4, err, sizeof err) == PL_ERR_PARSE);
    CHECK(pl_json_parse(&v, "", 0, err, sizeof err) == PL_ERR_PARSE);
    /* deep nesting is refused before cJSON recurses */
    char deep[2100];
    memset(deep, '[', 1050);
    memset(deep + 1050, ']', 1050);
    deep[2100 - 1] = 0;
    CHECK(pl_json_parse(&v, deep, 2099, err, sizeof err) == PL_ERR_RANGE);
    CHECK(pl_json_parse(&v, " {\"a\" : [1] } \n", 15, err, sizeof err) == 0);
    cJSON_Delete(v);
}

/* JSON text -> pl_json_parse -> pl_pyjson_dump (compact), or NULL. */
static const char *dumps(const char *json)
{
    cJSON *v;
    return pl_json_parse(&v, json, strlen(json), NULL, 0) ? NULL : compact(v);
}

TEST(json_integers_exact_at_any_size)
{
    /* through the parser and Python-exact dumps */
    CHECK_EQ_STR(dumps("[9007199254740993,-9007199254740993,9223372036854775807,-9223372036854775808]"),
                 "[9007199254740993,-9007199254740993,9223372036854775807,-9223372036854775808]");
    CHECK_EQ_STR(dumps("[18446744073709551615,123456789012345678901234567890,-0,0,-0.0,1E2]"),
                 "[18446744073709551615,123456789012345678901234567890,0,0,-0.0,100.0]");
    /* exact values */
    cJSON *v;
    const char *src = "[9007199254740993,9223372036854775808,2.0,\"7\",12]";
    CHECK(pl_json_parse(&v, src, strlen(src), NULL, 0) == 0);
    int64_t x = 0;
    CHECK(pl_json_get_i64(cJSON_GetArrayItem(v, 0), &x) == 0 && x == 9007199254740993LL);
    CHECK(pl_json_get_i64(cJSON_GetArrayItem(v, 1), &x) == PL_ERR_RANGE);
    CHECK(pl_json_get_i64(cJSON_GetArrayItem(v, 2), &x) == PL_ERR_INVALID);   /* a float */
    CHECK(pl_json_get_i64(cJSON_GetArrayItem(v, 3), &x) == PL_ERR_INVALID);   /* a string */
    CHECK(pl_json_get_i64(cJSON_GetArrayItem(v, 4), &x) == 0 && x == 12);
    /* duplicates keep the exact text */
    cJSON *d = cJSON_Duplicate(v, 1);
    CHECK(pl_json_get_i64(cJSON_GetArrayItem(d, 0), &x) == 0 && x == 9007199254740993LL);
    cJSON_Delete(d);
    cJSON_Delete(v);
    cJSON *n = pl_json_int_new(INT64_MIN);
    pl_buf b;
    pl_buf_init(&b);
    pl_json_int_write(&b, n);
    CHECK_EQ_STR(b.data, "-9223372036854775808");
    pl_buf_free(&b);
    cJSON_Delete(n);
}

TEST(json_integers_through_msgpack)
{
    /* int64 and uint64 as msgpack ints, beyond as the bigint extension */
    msgpack_object o = to_obj("[9007199254740993,-9223372036854775808,18446744073709551615,18446744073709551616,"
                              "-9223372036854775809,1.0]");
    CHECK(o.type == MSGPACK_OBJECT_ARRAY && o.via.array.size == 6);
    const msgpack_object *a = o.via.array.ptr;
    CHECK(a[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[0].via.u64 == 9007199254740993ULL);
    CHECK(a[1].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && a[1].via.i64 == INT64_MIN);
    CHECK(a[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[2].via.u64 == UINT64_MAX);
    CHECK(a[3].type == MSGPACK_OBJECT_EXT && a[3].via.ext.type == PL_MSGPACK_EXT_BIGINT &&
          a[3].via.ext.size == 20 && !memcmp(a[3].via.ext.ptr, "18446744073709551616", 20));
    CHECK(a[4].type == MSGPACK_OBJECT_EXT);
    CHECK(a[5].type == MSGPACK_OBJECT_FLOAT64);
    /* and back, exactly */
    CHECK_EQ_STR(roundtrip("[9007199254740993,-9223372036854775808,18446744073709551615,18446744073709551616,"
                           "-9223372036854775809,1.0]"),
                 "[9007199254740993,-9223372036854775808,18446744073709551615,18446744073709551616,"
                 "-9223372036854775809,1.0]");
}

TEST(json_nul_characters_kept)
{
    /* \u0000 in strings and keys survives parse, msgpack and dumps */
    CHECK_EQ_STR(roundtrip("{\"a\\u0000b\":\"x\\u0000y\",\"e\":\"\\u0000\"}"),
                 "{\"a\\u0000b\":\"x\\u0000y\",\"e\":\"\\u0000\"}");
    msgpack_object o = to_obj("[\"x\\u0000y\"]");
    CHECK(o.via.array.ptr[0].type == MSGPACK_OBJECT_STR && o.via.array.ptr[0].via.str.size == 3 &&
          !memcmp(o.via.array.ptr[0].via.str.ptr, "x\0y", 3));
    cJSON *s = pl_json_string_new("a\0b", 3);
    pl_buf b;
    pl_buf_init(&b);
    pl_json_str_bytes(&b, s->valuestring);
    CHECK(b.len == 3 && !memcmp(b.data, "a\0b", 3));
    pl_buf_free(&b);
    cJSON_Delete(s);
    /* an escaped backslash before u0000 is no NUL */
    CHECK_EQ_STR(dumps("\"\\\\u0000\""), "\"\\\\u0000\"");
}

TEST(json_python_strictness)
{
    cJSON *v;
    char err[128];
    /* raw control characters inside strings (Python: Invalid control character) */
    CHECK(pl_json_parse(&v, "\"a\nb\"", 5, err, sizeof err) == PL_ERR_PARSE);
    CHECK(pl_json_parse(&v, "\"a\tb\"", 5, err, sizeof err) == PL_ERR_PARSE);
    CHECK(pl_json_parse(&v, "\"a\0b\"", 5, err, sizeof err) == PL_ERR_PARSE);
    /* the NUL stand-in never comes from text */
    CHECK(pl_json_parse(&v, "\"a\xC0\x80\"", 5, err, sizeof err) == PL_ERR_PARSE);
    /* whitespace between tokens is fine */
    CHECK(pl_json_parse(&v, "{\n\t\"a\" : 1\r\n}", 13, err, sizeof err) == 0);
    cJSON_Delete(v);
    /* duplicate keys: first position, last value (Python's dict) */
    CHECK_EQ_STR(dumps("{\"a\":1,\"b\":2,\"a\":3,\"c\":{\"x\":1,\"x\":[2]}}"), "{\"a\":3,\"b\":2,\"c\":{\"x\":[2]}}");
    /* and for many keys (sorted path) */
    pl_buf big;
    pl_buf_init(&big);
    pl_buf_putc(&big, '{');
    for (int i = 0; i < 300; i++) pl_buf_printf(&big, "%s\"k%d\":%d", i ? "," : "", i % 100, i);
    pl_buf_putc(&big, '}');
    CHECK(pl_json_parse(&v, big.data, big.len, err, sizeof err) == 0);
    CHECK_EQ_INT(cJSON_GetArraySize(v), 100);
    CHECK_EQ_STR(v->child->string, "k0");
    CHECK_EQ_INT(v->child->valuedouble, 200);
    cJSON_Delete(v);
    pl_buf_free(&big);
}

TEST(json_empty_msgpack_strings)
{
    /* msgpack-c hands empty strings as a NULL pointer with size 0 */
    msgpack_object_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.key.type = MSGPACK_OBJECT_STR;
    kv.val.type = MSGPACK_OBJECT_STR;
    msgpack_object m;
    memset(&m, 0, sizeof m);
    m.type = MSGPACK_OBJECT_MAP;
    m.via.map.size = 1;
    m.via.map.ptr = &kv;
    cJSON *v;
    CHECK(pl_json_from_msgpack(&v, &m, NULL, 0) == 0);
    CHECK(v && v->child && !strcmp(v->child->string, "") && !strcmp(v->child->valuestring, ""));
    cJSON_Delete(v);
}

TEST(msg_getters)
{
    msgpack_object o = to_obj("{\"type\":\"tokens\",\"id\":\"r1\",\"n\":3,\"f\":2.0,\"g\":2.5,\"b\":true,\"s\":\"x\",\"z\":null,\"a\":[1],\"m\":{}}");
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t len;
    CHECK(pl_msg_type_is(&o, "tokens"));
    CHECK(!pl_msg_type_is(&o, "token"));
    CHECK(pl_msg_id(&o, &s, &len) == 0 && len == 2 && !memcmp(s, "r1", 2));
    CHECK(pl_msg_get_int(&o, "n", &i) == 0 && i == 3);
    CHECK(pl_msg_get_int(&o, "f", &i) == 0 && i == 2);          /* integral float accepted */
    CHECK(pl_msg_get_int(&o, "g", &i) == PL_ERR_INVALID);
    CHECK(pl_msg_get_num(&o, "n", &d) == 0 && d == 3.0);
    CHECK(pl_msg_get_bool(&o, "b", &b) == 0 && b);
    CHECK(pl_msg_get_bool(&o, "s", &b) == PL_ERR_INVALID);
    CHECK(pl_msg_get_str(&o, "z", &s, &len) == PL_ERR_NOTFOUND); /* nil = absent */
    CHECK(pl_msg_get_str(&o, "missing", &s, &len) == PL_ERR_NOTFOUND);
    const msgpack_object_array *a;
    const msgpack_object *m;
    CHECK(pl_msg_get_array(&o, "a", &a) == 0 && a->size == 1);
    CHECK(pl_msg_get_map(&o, "m", &m) == 0);
    CHECK(pl_msg_get_map(&o, "a", &m) == PL_ERR_INVALID);
}

TEST(msg_bad_ids)
{
    const char *s;
    size_t len;
    msgpack_object o = to_obj("{\"id\":\"\"}");
    CHECK(pl_msg_id(&o, &s, &len) == PL_ERR_INVALID);
    o = to_obj("{\"id\":5}");
    CHECK(pl_msg_id(&o, &s, &len) == PL_ERR_INVALID);
    o = to_obj("[1,2]");
    CHECK(pl_msg_id(&o, &s, &len) == PL_ERR_NOTFOUND);
}

TEST(msg_map_except_keeps_unknown_fields)
{
    msgpack_object o = to_obj("{\"type\":\"tokens\",\"id\":\"r\",\"x_trace\":[1,2],\"token_ids\":[5]}");
    /* copy, dropping token_ids and type, adding two fields */
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    static const char *const skip[] = {"type", "token_ids"};
    pl_msg_pack_map_except(&pk, &o, skip, 2, 2);
    pl_msg_pack_kv_cstr(&pk, "type", "delta");
    pl_msg_pack_kv_cstr(&pk, "text", "hi");
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    msgpack_object r;
    CHECK(msgpack_unpack(out.data, out.size, NULL, &z, &r) == MSGPACK_UNPACK_SUCCESS);
    CHECK(r.type == MSGPACK_OBJECT_MAP && r.via.map.size == 4);
    CHECK(pl_msg_type_is(&r, "delta"));
    CHECK(pl_msg_get(&r, "x_trace") != NULL);
    CHECK(pl_msg_get(&r, "token_ids") == NULL);
    msgpack_zone_destroy(&z);
    msgpack_sbuffer_destroy(&out);
}

TEST(buf_and_files)
{
    pl_buf b;
    pl_buf_init(&b);
    pl_buf_printf(&b, "%d-%s", 42, "x");
    pl_buf_puts(&b, "yz");
    CHECK_EQ_STR(b.data, "42-xyz");
    pl_buf_consume(&b, 3);
    CHECK_EQ_STR(b.data, "xyz");
    char err[256];
    CHECK(pl_file_read("/nonexistent/file", &b, 100, err, sizeof err) == PL_ERR_NOTFOUND);
    CHECK(strstr(err, "/nonexistent/file") != NULL);
    CHECK(pl_file_read("Makefile", &b, 10, err, sizeof err) == PL_ERR_RANGE);
    CHECK(pl_file_read("Makefile", &b, 1 << 20, err, sizeof err) == 0 && b.len > 100);
    pl_buf_free(&b);
}

TEST(parse_i64_whole_string_in_range)
{
    int64_t v = 0;
    CHECK(pl_parse_i64("42", 1, 100, &v) == 0 && v == 42);
    CHECK(pl_parse_i64("-5", -10, 10, &v) == 0 && v == -5);
    v = 7;
    CHECK(pl_parse_i64("", 1, 100, &v) == -1);
    CHECK(pl_parse_i64(NULL, 1, 100, &v) == -1);
    CHECK(pl_parse_i64("3x", 1, 100, &v) == -1);
    CHECK(pl_parse_i64("0", 1, 100, &v) == -1);
    CHECK(pl_parse_i64("101", 1, 100, &v) == -1);
    CHECK(pl_parse_i64("99999999999999999999", 1, INT64_MAX, &v) == -1);
    CHECK(v == 7);   /* untouched on failure */
}

static void count_one(const char *k, size_t kl, void *v, void *ud) { (void)k; (void)kl; (void)v; (*(size_t *)ud)++; }

/* pl_fd_read_exact: bytes in pieces, early EOF, a deadline on a blocking
 * pipe that never gets its bytes, and bytes already there past the deadline. */
TEST(fd_read_exact_pieces_eof_deadline)
{
    int pp[2];
    unsigned char got[8];
    CHECK(pipe(pp) == 0);
    CHECK(write(pp[1], "abc", 3) == 3);
    CHECK(write(pp[1], "defgh", 5) == 5);
    CHECK_EQ_INT(pl_fd_read_exact(pp[0], got, 8, pl_mono_s() + 5), 0);
    CHECK(memcmp(got, "abcdefgh", 8) == 0);
    double t0 = pl_mono_s();
    CHECK(write(pp[1], "xy", 2) == 2);
    CHECK_EQ_INT(pl_fd_read_exact(pp[0], got, 4, t0 + 0.2), PL_ERR_AGAIN);
    CHECK(pl_mono_s() - t0 >= 0.19 && pl_mono_s() - t0 < 3);
    CHECK(write(pp[1], "zw", 2) == 2);
    CHECK_EQ_INT(pl_fd_read_exact(pp[0], got, 2, t0 - 1), 0);      /* already there: taken */
    CHECK(memcmp(got, "zw", 2) == 0);
    CHECK(write(pp[1], "q", 1) == 1);
    close(pp[1]);
    CHECK_EQ_INT(pl_fd_read_exact(pp[0], got, 4, pl_mono_s() + 5), PL_ERR_EOF);
    close(pp[0]);
}

TEST(strmap_put_get_take_many)
{
    pl_strmap *m;
    CHECK(pl_strmap_new(&m) == 0);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "req-%d", i);
        CHECK(pl_strmap_put(m, key, (size_t)n, (void *)(intptr_t)(i + 1), NULL) == 0);
    }
    CHECK_EQ_INT(pl_strmap_count(m), 5000);
    for (int i = 0; i < 5000; i += 2) {
        int n = snprintf(key, sizeof key, "req-%d", i);
        CHECK(pl_strmap_take(m, key, (size_t)n) == (void *)(intptr_t)(i + 1));
    }
    int bad = 0;
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "req-%d", i);
        void *v = pl_strmap_get(m, key, (size_t)n);
        if (v != (i % 2 ? (void *)(intptr_t)(i + 1) : NULL)) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* churn: deleted slots must not fill the table */
    for (int r = 0; r < 20000; r++) {
        int n = snprintf(key, sizeof key, "tmp-%d", r);
        CHECK(pl_strmap_put(m, key, (size_t)n, m, NULL) == 0);
        CHECK(pl_strmap_take(m, key, (size_t)n) == m);
    }
    size_t count = 0;
    pl_strmap_each(m, count_one, &count);
    CHECK_EQ_INT(count, 2500);
    CHECK(pl_strmap_get(m, "req-1", 5) != NULL);
    CHECK(pl_strmap_get(m, "req-", 4) == NULL);
    pl_strmap_free(m, NULL);
}

int main(void)
{
    RUN(json_int_float_kept_apart);
    RUN(json_parse_errors);
    RUN(json_integers_exact_at_any_size);
    RUN(json_integers_through_msgpack);
    RUN(json_nul_characters_kept);
    RUN(json_python_strictness);
    RUN(json_empty_msgpack_strings);
    RUN(msg_getters);
    RUN(msg_bad_ids);
    RUN(msg_map_except_keeps_unknown_fields);
    RUN(buf_and_files);
    RUN(parse_i64_whole_string_in_range);
    RUN(strmap_put_get_take_many);
    RUN(fd_read_exact_pieces_eof_deadline);
    test_msg_free(&g_msg);
    return test_report();
}
