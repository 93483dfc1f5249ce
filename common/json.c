/* json.c — JSON <-> msgpack, with ints and floats kept apart. */
#include "json.h"

#include <math.h>
#include <string.h>

/* ================================================================ parse */

/* Walk the source text and the parsed tree in document order: the n-th
 * number literal in the text is the n-th number node in the tree. */
typedef struct {
    const char *s;
    size_t len, pos;
} num_scan;

/* Advance to the next number literal outside strings; return 1 if it has a
 * fraction or exponent, 0 if integral, -1 when none is left. */
static int next_number_is_float(num_scan *sc)
{
    const char *s = sc->s;
    size_t i = sc->pos;
    while (i < sc->len) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < sc->len && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            i++;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            int is_float = 0;
            while (i < sc->len && strchr("+-0123456789.eE", s[i]) && s[i]) {
                if (s[i] == '.' || s[i] == 'e' || s[i] == 'E') is_float = 1;
                i++;
            }
            sc->pos = i;
            return is_float;
        }
        i++;
    }
    sc->pos = i;
    return -1;
}

static int mark_floats(cJSON *v, num_scan *sc, int depth)
{
    if (depth > PL_JSON_MAX_DEPTH) return PL_ERR_RANGE;
    for (; v; v = v->next) {
        if (cJSON_IsNumber(v)) {
            if (next_number_is_float(sc) == 1) v->type |= PL_CJSON_FLOAT;
        } else if (v->child) {
            int rc = mark_floats(v->child, sc, depth + 1);
            if (rc) return rc;
        }
    }
    return 0;
}

/* cJSON recurses on nesting; refuse deep input before handing it over. */
static int too_deep(const char *s, size_t len)
{
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
        } else if (c == '[' || c == '{') {
            if (++depth > PL_JSON_MAX_DEPTH) return 1;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}

int pl_json_parse(cJSON **out, const char *text, size_t len, char *err, size_t errlen)
{
    *out = NULL;
    if (too_deep(text, len))
        return pl_seterr(err, errlen, PL_ERR_RANGE, "JSON nested deeper than %d levels", PL_JSON_MAX_DEPTH);
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!v) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        if (!end) {
            const char *e = cJSON_GetErrorPtr();
            if (e && e >= text && e <= text + len) off = (size_t)(e - text);
        }
        return pl_seterr(err, errlen, PL_ERR_PARSE, "invalid JSON at byte %zu", off);
    }
    /* trailing whitespace only */
    for (size_t i = (size_t)(end - text); i < len; i++) {
        if (!strchr(" \t\r\n", text[i]) || !text[i]) {
            cJSON_Delete(v);
            return pl_seterr(err, errlen, PL_ERR_PARSE, "unexpected data after JSON value at byte %zu", i);
        }
    }
    num_scan sc = {text, len, 0};
    int rc = mark_floats(v, &sc, 0);
    if (rc) { cJSON_Delete(v); return pl_seterr(err, errlen, rc, "JSON too deep"); }
    *out = v;
    return 0;
}

cJSON *pl_json_float_new(double d)
{
    cJSON *v = cJSON_CreateNumber(d);
    if (v) v->type |= PL_CJSON_FLOAT;
    return v;
}

/* ================================================================ msgpack -> JSON */

static cJSON *from_mp(const msgpack_object *o, int depth, char *err, size_t errlen)
{
    if (depth > PL_JSON_MAX_DEPTH) { pl_seterr(err, errlen, PL_ERR_RANGE, "message nested too deep"); return NULL; }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return cJSON_CreateNull();
    case MSGPACK_OBJECT_BOOLEAN: return cJSON_CreateBool(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return cJSON_CreateNumber((double)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return cJSON_CreateNumber((double)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return pl_json_float_new(o->via.f64);
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN: {
        /* cJSON strings are NUL-terminated: copy */
        const char *p = o->type == MSGPACK_OBJECT_STR ? o->via.str.ptr : o->via.bin.ptr;
        uint32_t n = o->type == MSGPACK_OBJECT_STR ? o->via.str.size : o->via.bin.size;
        char *tmp = malloc((size_t)n + 1);
        if (!tmp) return NULL;
        memcpy(tmp, p, n);
        tmp[n] = 0;
        cJSON *s = cJSON_CreateString(tmp);
        free(tmp);
        return s;
    }
    case MSGPACK_OBJECT_ARRAY: {
        cJSON *a = cJSON_CreateArray();
        for (uint32_t i = 0; a && i < o->via.array.size; i++) {
            cJSON *c = from_mp(&o->via.array.ptr[i], depth + 1, err, errlen);
            if (!c) { cJSON_Delete(a); return NULL; }
            cJSON_AddItemToArray(a, c);
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        cJSON *m = cJSON_CreateObject();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                pl_seterr(err, errlen, PL_ERR_INVALID, "map key is not a string");
                cJSON_Delete(m);
                return NULL;
            }
            cJSON *c = from_mp(&kv->val, depth + 1, err, errlen);
            char *k = c ? malloc((size_t)kv->key.via.str.size + 1) : NULL;
            if (!k) { cJSON_Delete(c); cJSON_Delete(m); return NULL; }
            memcpy(k, kv->key.via.str.ptr, kv->key.via.str.size);
            k[kv->key.via.str.size] = 0;
            cJSON_AddItemToObject(m, k, c);
            free(k);
        }
        return m;
    }
    case MSGPACK_OBJECT_EXT: return cJSON_CreateNull();
    }
    return NULL;
}

int pl_json_from_msgpack(cJSON **out, const msgpack_object *o, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    *out = from_mp(o, 0, err, errlen);
    if (*out) return 0;
    if (err && errlen && err[0]) return PL_ERR_INVALID;
    return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory converting message to JSON");
}

/* ================================================================ JSON -> msgpack */

void pl_json_pack(msgpack_packer *pk, const cJSON *v)
{
    if (cJSON_IsNull(v) || cJSON_IsInvalid(v) || cJSON_IsRaw(v)) { msgpack_pack_nil(pk); return; }
    if (cJSON_IsTrue(v)) { msgpack_pack_true(pk); return; }
    if (cJSON_IsFalse(v)) { msgpack_pack_false(pk); return; }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!pl_json_is_float(v) && d == floor(d) && fabs(d) < 9.2e18) msgpack_pack_int64(pk, (int64_t)d);
        else msgpack_pack_double(pk, d);
        return;
    }
    if (cJSON_IsString(v)) {
        size_t n = strlen(v->valuestring);
        msgpack_pack_str_with_body(pk, v->valuestring, n);
        return;
    }
    int n = cJSON_GetArraySize(v);
    if (cJSON_IsArray(v)) {
        msgpack_pack_array(pk, (size_t)n);
        for (const cJSON *c = v->child; c; c = c->next) pl_json_pack(pk, c);
        return;
    }
    msgpack_pack_map(pk, (size_t)n);
    for (const cJSON *c = v->child; c; c = c->next) {
        msgpack_pack_str_with_body(pk, c->string, strlen(c->string));
        pl_json_pack(pk, c);
    }
}
