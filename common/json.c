/* json.c — JSON <-> msgpack with Python's number, string and key semantics
 * kept beside cJSON's tree (json.h says what and why). */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TWO53 9007199254740992.0
#define TWO63 9223372036854775808.0

/* ================================================================ strings */

/* s[0..len) with each real NUL written as PL_JSON_NUL; malloc'ed, NULL on OOM. */
static char *nul_encode(const char *s, size_t len)
{
    size_t nuls = 0;
    for (size_t i = 0; i < len; i++) nuls += s[i] == 0;
    char *out = malloc(len + nuls + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i]) { *o++ = s[i]; continue; }
        *o++ = '\xC0';
        *o++ = '\x80';
    }
    *o = 0;
    return out;
}

cJSON *pl_json_string_new(const char *s, size_t len)
{
    char *tmp = nul_encode(len ? s : "", len);
    cJSON *v = tmp ? cJSON_CreateString(tmp) : NULL;
    free(tmp);
    return v;
}

void pl_json_str_bytes(pl_buf *out, const char *s)
{
    const char *p;
    while ((p = strstr(s, PL_JSON_NUL))) {
        pl_buf_append(out, s, (size_t)(p - s));
        pl_buf_putc(out, 0);
        s = p + 2;
    }
    pl_buf_puts(out, s);
}

/* ================================================================ numbers */

bool pl_json_is_int(const cJSON *v)
{
    if (!cJSON_IsNumber(v) || pl_json_is_float(v)) return false;
    if (v->valuestring) return true;
    double d = v->valuedouble;
    return d == floor(d) && fabs(d) < TWO63;
}

int pl_json_get_i64(const cJSON *v, int64_t *out)
{
    if (!pl_json_is_int(v)) {
        double d = cJSON_IsNumber(v) ? v->valuedouble : 0.5;
        return !pl_json_is_float(v) && d == floor(d) ? PL_ERR_RANGE : PL_ERR_INVALID;
    }
    if (v->valuestring) {
        errno = 0;
        char *end;
        long long x = strtoll(v->valuestring, &end, 10);
        if (errno || *end) return PL_ERR_RANGE;
        *out = x;
        return 0;
    }
    *out = (int64_t)v->valuedouble;
    return 0;
}

cJSON *pl_json_int_new(int64_t x)
{
    cJSON *v = cJSON_CreateNumber((double)x);
    if (v && (x >= (int64_t)TWO53 || x <= -(int64_t)TWO53)) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%lld", (long long)x);
        if (!(v->valuestring = strdup(tmp))) { cJSON_Delete(v); return NULL; }
    }
    return v;
}

void pl_json_int_write(pl_buf *out, const cJSON *v)
{
    if (v->valuestring) pl_buf_puts(out, v->valuestring);
    else pl_buf_printf(out, "%lld", (long long)v->valuedouble);
}

bool pl_json_truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return false;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0 || v->valuestring;
    if (cJSON_IsString(v)) return v->valuestring[0] != 0;
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child != NULL;
    return true;
}

cJSON *pl_json_float_new(double d)
{
    cJSON *v = cJSON_CreateNumber(d);
    if (v) v->type |= PL_CJSON_FLOAT;
    return v;
}

/* A number node for an integer written as decimal text (an optional '-',
 * digits): exact text kept when the double cannot hold it. */
static cJSON *int_from_text(const char *s, size_t len)
{
    char buf[64];
    char *t = len < sizeof buf ? buf : malloc(len + 1);
    if (!t) return NULL;
    /* canonical form: '-' only when nonzero, no leading zeros */
    size_t k = 0, i = 0;
    bool neg = len && s[0] == '-';
    if (neg) i = 1;
    while (i + 1 < len && s[i] == '0') i++;
    if (neg && !(len - i == 1 && s[i] == '0')) t[k++] = '-';
    memcpy(t + k, s + i, len - i);
    k += len - i;
    t[k] = 0;
    double d = strtod(t, NULL);
    cJSON *v = cJSON_CreateNumber(d == 0 ? 0.0 : d);
    if (v && fabs(d) >= TWO53 && !(v->valuestring = strdup(t))) { cJSON_Delete(v); v = NULL; }
    if (t != buf) free(t);
    return v;
}

/* ================================================================ duplicate keys */

typedef struct { cJSON *node; size_t pos; } keyed;

static int keyed_cmp(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    int c = strcmp(x->node->string, y->node->string);
    return c ? c : (x->pos < y->pos ? -1 : 1);
}

/* Python's dict from pairs: a repeated key keeps its first position and
 * takes its last value. Sorting keeps this O(n log n) for huge objects. */
static int dedupe_object(cJSON *obj)
{
    size_t n = 0;
    for (cJSON *c = obj->child; c; c = c->next) n++;
    if (n < 2) return 0;
    keyed *k = malloc(sizeof *k * n);
    if (!k) return PL_ERR_NOMEM;
    size_t i = 0;
    for (cJSON *c = obj->child; c; c = c->next, i++) k[i] = (keyed){c, i};
    qsort(k, n, sizeof *k, keyed_cmp);
    for (i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && !strcmp(k[j].node->string, k[i].node->string)) j++;
        if (j - i > 1) {
            cJSON *last = cJSON_DetachItemViaPointer(obj, k[j - 1].node);
            for (size_t m = i + 1; m + 1 < j; m++) cJSON_Delete(cJSON_DetachItemViaPointer(obj, k[m].node));
            cJSON_ReplaceItemViaPointer(obj, k[i].node, last);   /* frees the first */
        }
        i = j;
    }
    free(k);
    return 0;
}

static int dedupe_tree(cJSON *v, int depth)
{
    if (depth > PL_JSON_MAX_DEPTH) return PL_ERR_RANGE;
    for (cJSON *c = v; c; c = c->next) {
        if (cJSON_IsObject(c)) {
            int rc = dedupe_object(c);
            if (rc) return rc;
        }
        if (c->child) {
            int rc = dedupe_tree(c->child, depth + 1);
            if (rc) return rc;
        }
    }
    return 0;
}

/* ================================================================ parse */

/* One pass over the text before cJSON sees it: nesting depth (cJSON
 * recurses), what Python's json.loads refuses inside strings (raw control
 * characters) and what we refuse (raw C0 80, our NUL stand-in), and how
 * many \u0000 escapes need the stand-in. */
static int prescan(const char *s, size_t len, size_t *nul_escapes, char *err, size_t errlen)
{
    int depth = 0;
    *nul_escapes = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++) {
                unsigned char b = (unsigned char)s[i];
                if (b < 0x20)
                    return pl_seterr(err, errlen, PL_ERR_PARSE, "invalid control character in string at byte %zu", i);
                if (b == 0xC0 && i + 1 < len && (unsigned char)s[i + 1] == 0x80)
                    return pl_seterr(err, errlen, PL_ERR_PARSE, "invalid UTF-8 at byte %zu", i);
                if (b == '\\') {
                    if (i + 5 < len && !memcmp(s + i + 1, "u0000", 5)) (*nul_escapes)++;
                    i++;
                }
            }
        } else if (c == '[' || c == '{') {
            if (++depth > PL_JSON_MAX_DEPTH)
                return pl_seterr(err, errlen, PL_ERR_RANGE, "JSON nested deeper than %d levels", PL_JSON_MAX_DEPTH);
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}

/* The text with every \u0000 escape inside strings replaced by the raw
 * stand-in bytes, which cJSON copies verbatim. */
static char *replace_nul_escapes(const char *s, size_t len, size_t *outlen)
{
    char *out = malloc(len + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len; i++) {
        *o++ = s[i];
        if (s[i] != '"') continue;
        for (i++; i < len && s[i] != '"'; i++) {
            if (s[i] == '\\' && i + 5 < len && !memcmp(s + i + 1, "u0000", 5)) {
                *o++ = '\xC0';
                *o++ = '\x80';
                i += 5;
            } else if (s[i] == '\\' && i + 1 < len) {
                *o++ = s[i++];
                *o++ = s[i];
            } else {
                *o++ = s[i];
            }
        }
        if (i < len) *o++ = s[i];
    }
    *outlen = (size_t)(o - out);
    return out;
}

/* Walk the source text and the parsed tree in document order: the n-th
 * number literal in the text is the n-th number node in the tree. */
typedef struct {
    const char *s;
    size_t len, pos;
} num_scan;

/* The next number literal outside strings: its span; 0 when none is left. */
static int next_number(num_scan *sc, size_t *start, size_t *n)
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
            *start = i;
            while (i < sc->len && s[i] && strchr("+-0123456789.eE", s[i])) i++;
            *n = i - *start;
            sc->pos = i;
            return 1;
        }
        i++;
    }
    sc->pos = i;
    return 0;
}

static int mark_numbers(cJSON *v, num_scan *sc, int depth)
{
    if (depth > PL_JSON_MAX_DEPTH) return PL_ERR_RANGE;
    for (; v; v = v->next) {
        if (cJSON_IsNumber(v)) {
            size_t st, n;
            if (!next_number(sc, &st, &n)) return PL_ERR_INTERNAL;
            const char *lit = sc->s + st;
            if (memchr(lit, '.', n) || memchr(lit, 'e', n) || memchr(lit, 'E', n)) {
                v->type |= PL_CJSON_FLOAT;
            } else if (v->valuedouble == 0) {
                v->valuedouble = 0.0;     /* "-0" is the int 0 */
            } else if (fabs(v->valuedouble) >= TWO53) {
                cJSON *exact = int_from_text(lit, n);
                if (!exact) return PL_ERR_NOMEM;
                v->valuestring = exact->valuestring;
                exact->valuestring = NULL;
                cJSON_Delete(exact);
            }
        } else if (v->child) {
            int rc = mark_numbers(v->child, sc, depth + 1);
            if (rc) return rc;
        }
    }
    return 0;
}

int pl_json_parse(cJSON **out, const char *text, size_t len, char *err, size_t errlen)
{
    *out = NULL;
    size_t nul_escapes;
    int rc = prescan(text, len, &nul_escapes, err, errlen);
    if (rc) return rc;
    char *copy = NULL;
    if (nul_escapes) {
        if (!(copy = replace_nul_escapes(text, len, &len))) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
        text = copy;
    }
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!v) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        if (!end) {
            const char *e = cJSON_GetErrorPtr();
            if (e && e >= text && e <= text + len) off = (size_t)(e - text);
        }
        free(copy);
        return pl_seterr(err, errlen, PL_ERR_PARSE, "invalid JSON at byte %zu", off);
    }
    /* trailing whitespace only */
    for (size_t i = (size_t)(end - text); i < len; i++) {
        if (!strchr(" \t\r\n", text[i]) || !text[i]) {
            cJSON_Delete(v);
            free(copy);
            return pl_seterr(err, errlen, PL_ERR_PARSE, "unexpected data after JSON value at byte %zu", i);
        }
    }
    num_scan sc = {text, len, 0};
    rc = mark_numbers(v, &sc, 0);
    if (!rc) rc = dedupe_tree(v, 0);
    free(copy);
    if (rc) {
        cJSON_Delete(v);
        return pl_seterr(err, errlen, rc, rc == PL_ERR_NOMEM ? "out of memory" : "JSON too deep");
    }
    *out = v;
    return 0;
}

/* ================================================================ msgpack -> JSON */

/* The decimal text of a bigint extension, canonical or rejected. */
static bool bigint_text_ok(const char *p, uint32_t n)
{
    uint32_t i = n && p[0] == '-';
    if (i >= n || (p[i] == '0' && n - i > 1)) return false;
    for (; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return false;
    return true;
}

static cJSON *from_mp(const msgpack_object *o, int depth, char *err, size_t errlen)
{
    if (depth >= PL_JSON_MAX_DEPTH && (o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_MAP)) {
        pl_seterr(err, errlen, PL_ERR_RANGE, "JSON nested deeper than %d levels", PL_JSON_MAX_DEPTH);   /* as pl_json_parse counts */
        return NULL;
    }
    char num[32];
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return cJSON_CreateNull();
    case MSGPACK_OBJECT_BOOLEAN: return cJSON_CreateBool(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 < (uint64_t)TWO53) return cJSON_CreateNumber((double)o->via.u64);
        snprintf(num, sizeof num, "%llu", (unsigned long long)o->via.u64);
        return int_from_text(num, strlen(num));
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        if (o->via.i64 > -(int64_t)TWO53) return cJSON_CreateNumber((double)o->via.i64);
        snprintf(num, sizeof num, "%lld", (long long)o->via.i64);
        return int_from_text(num, strlen(num));
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return pl_json_float_new(o->via.f64);
    case MSGPACK_OBJECT_STR: return pl_json_string_new(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: return pl_json_string_new(o->via.bin.ptr, o->via.bin.size);
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
            char *k = c ? nul_encode(kv->key.via.str.size ? kv->key.via.str.ptr : "", kv->key.via.str.size) : NULL;
            if (!k) { cJSON_Delete(c); cJSON_Delete(m); return NULL; }
            cJSON_AddItemToObject(m, k, c);
            free(k);
        }
        if (m && dedupe_object(m)) { cJSON_Delete(m); return NULL; }
        return m;
    }
    case MSGPACK_OBJECT_EXT:
        if (o->via.ext.type == PL_MSGPACK_EXT_BIGINT && bigint_text_ok(o->via.ext.ptr, o->via.ext.size))
            return int_from_text(o->via.ext.ptr, o->via.ext.size);
        return cJSON_CreateNull();
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

static void pack_text(msgpack_packer *pk, const char *s)
{
    if (!strstr(s, PL_JSON_NUL)) {
        msgpack_pack_str_with_body(pk, s, strlen(s));
        return;
    }
    pl_buf b;
    pl_buf_init(&b);
    pl_json_str_bytes(&b, s);
    msgpack_pack_str_with_body(pk, b.data ? b.data : "", b.len);
    pl_buf_free(&b);
}

static void pack_int(msgpack_packer *pk, const cJSON *v)
{
    if (!v->valuestring) { msgpack_pack_int64(pk, (int64_t)v->valuedouble); return; }
    const char *t = v->valuestring;
    char *end;
    errno = 0;
    long long s = strtoll(t, &end, 10);
    if (!errno && !*end) { msgpack_pack_int64(pk, s); return; }
    errno = 0;
    unsigned long long u = t[0] != '-' ? strtoull(t, &end, 10) : 0;
    if (t[0] != '-' && !errno && !*end) { msgpack_pack_uint64(pk, u); return; }
    size_t n = strlen(t);
    msgpack_pack_ext_with_body(pk, t, n, PL_MSGPACK_EXT_BIGINT);
}

void pl_json_pack(msgpack_packer *pk, const cJSON *v)
{
    if (cJSON_IsNull(v) || cJSON_IsInvalid(v) || cJSON_IsRaw(v)) { msgpack_pack_nil(pk); return; }
    if (cJSON_IsTrue(v)) { msgpack_pack_true(pk); return; }
    if (cJSON_IsFalse(v)) { msgpack_pack_false(pk); return; }
    if (cJSON_IsNumber(v)) {
        if (pl_json_is_int(v)) pack_int(pk, v);
        else msgpack_pack_double(pk, v->valuedouble);
        return;
    }
    if (cJSON_IsString(v)) { pack_text(pk, v->valuestring); return; }
    int n = cJSON_GetArraySize(v);
    if (cJSON_IsArray(v)) {
        msgpack_pack_array(pk, (size_t)n);
        for (const cJSON *c = v->child; c; c = c->next) pl_json_pack(pk, c);
        return;
    }
    msgpack_pack_map(pk, (size_t)n);
    for (const cJSON *c = v->child; c; c = c->next) {
        pack_text(pk, c->string);
        pl_json_pack(pk, c);
    }
}
