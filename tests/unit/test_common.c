/* common/: JSON <-> msgpack, message helpers, buffer, file reads. */
#include "test.h"
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

static const char *roundtrip(const char *json)
{
    static pl_buf b;
    msgpack_object o = to_obj(json);
    cJSON *v;
    if (pl_json_from_msgpack(&v, &o, NULL, 0)) return NULL;
    pl_buf_reset(&b);
    pl_pyjson_opts opts = {0, -1, 0, ",", ":"};
    pl_pyjson_dump(&b, v, &opts);
    cJSON_Delete(v);
    return b.data;
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
    RUN(msg_getters);
    RUN(msg_bad_ids);
    RUN(msg_map_except_keeps_unknown_fields);
    RUN(buf_and_files);
    RUN(parse_i64_whole_string_in_range);
    RUN(strmap_put_get_take_many);
    test_msg_free(&g_msg);
    return test_report();
}
