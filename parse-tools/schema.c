/* schema.c — the request's tools, and argument typing by JSON schema.
 *
 * Mirrors vLLM's Era C rules (tool_parsers/utils.py extract_types_from_schema,
 * coerce_to_schema_type; parser_engine.py _fix_arg_types): every value starts
 * as raw text and is converted by what the tool's `parameters.properties`
 * says about its key. Python's parsing functions (int(), float(),
 * json.loads) are reproduced closely enough that the JSON we write is what
 * json.dumps would write for the value vLLM computes. */
#include "tools.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "pyjson.h"
#include "pystr.h"
#include "strmap.h"

/* ===== tools ===== */

typedef struct tcl_tool {
    const char  *name;      /* points into root */
    size_t       len;
    const cJSON *props;     /* parameters.properties when a non-empty object, else NULL */
} tcl_tool;

struct tcl_tools {
    cJSON    *root;
    tcl_tool *v;
    size_t    n;
};

static int tools_index(tcl_tools **out, cJSON *root, char *err, size_t errlen)
{
    *out = NULL;
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return pl_seterr(err, errlen, PL_ERR_INVALID, "context.tools must be a list");
    }
    tcl_tools *t = calloc(1, sizeof *t);
    int n = cJSON_GetArraySize(root);
    if (!t || !(t->v = calloc((size_t)n + 1, sizeof *t->v))) {
        free(t);
        cJSON_Delete(root);
        return PL_ERR_NOMEM;
    }
    t->root = root;
    const cJSON *tool;
    cJSON_ArrayForEach(tool, root) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tool, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsObject(tool) || !cJSON_IsObject(fn) || !cJSON_IsString(name)) continue;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        const cJSON *props = cJSON_IsObject(params) ? cJSON_GetObjectItemCaseSensitive(params, "properties") : NULL;
        tcl_tool *d = &t->v[t->n++];
        d->name = name->valuestring;
        d->len = strlen(name->valuestring);
        d->props = cJSON_IsObject(props) && props->child ? props : NULL;
    }
    *out = t;
    return PL_OK;
}

int tcl_tools_from_msgpack(tcl_tools **out, const msgpack_object *tools, char *err, size_t errlen)
{
    cJSON *root;
    *out = NULL;
    if (tools->type != MSGPACK_OBJECT_ARRAY)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "context.tools must be a list");
    int rc = pl_json_from_msgpack(&root, tools, err, errlen);
    if (rc) return rc;
    return tools_index(out, root, err, errlen);
}

int tcl_tools_from_json(tcl_tools **out, const char *json, size_t len, char *err, size_t errlen)
{
    cJSON *root;
    *out = NULL;
    int rc = pl_json_parse(&root, json, len, err, errlen);
    if (rc) return rc;
    return tools_index(out, root, err, errlen);
}

void tcl_tools_free(tcl_tools *t)
{
    if (!t) return;
    cJSON_Delete(t->root);
    free(t->v);
    free(t);
}

size_t tcl_tools_count(const tcl_tools *t) { return t ? t->n : 0; }

int tcl_tools_find(const tcl_tools *t, const char *name, size_t len)
{
    for (size_t i = 0; t && i < t->n; i++)
        if (t->v[i].len == len && memcmp(t->v[i].name, name, len) == 0) return (int)i;
    return -1;
}

bool tcl_tools_has(const tcl_tools *t, const char *name, size_t len) { return tcl_tools_find(t, name, len) >= 0; }

static unsigned schema_types(const cJSON *s, int depth, bool exact);

/* The property schema of key, or NULL; *has_props: the tool has any. */
static const cJSON *arg_schema(const tcl_tools *t, int tool, const char *key, size_t klen, bool *has_props)
{
    *has_props = t && tool >= 0 && (size_t)tool < t->n && t->v[tool].props;
    if (!*has_props) return NULL;
    const cJSON *prop;
    cJSON_ArrayForEach(prop, t->v[tool].props)
        if (prop->string && strlen(prop->string) == klen && memcmp(prop->string, key, klen) == 0) return prop;
    return NULL;
}

unsigned tcl_tools_arg_types(const tcl_tools *t, int tool, const char *key, size_t klen)
{
    bool has_props;
    const cJSON *prop = arg_schema(t, tool, key, klen, &has_props);
    /* no schema, keys outside it, and non-object schemas: strings */
    return cJSON_IsObject(prop) ? tcl_schema_types(prop) : TCL_T_STRING;
}

bool tcl_tools_arg_streams(const tcl_tools *t, int tool, const char *key, size_t klen)
{
    bool has_props;
    const cJSON *prop = arg_schema(t, tool, key, klen, &has_props);
    if (!has_props) return true;
    if (!prop) return false;
    return schema_types(prop, 0, true) == TCL_T_STRING;
}

/* ===== schema types ===== */

static const struct { const char *name; unsigned type; } k_type_names[] = {
    {"null", TCL_T_NULL}, {"integer", TCL_T_INTEGER}, {"number", TCL_T_NUMBER},
    {"boolean", TCL_T_BOOLEAN}, {"object", TCL_T_OBJECT}, {"array", TCL_T_ARRAY}, {"string", TCL_T_STRING},
    /* vLLM's _TYPE_ALIASES */
    {"str", TCL_T_STRING}, {"text", TCL_T_STRING}, {"varchar", TCL_T_STRING}, {"char", TCL_T_STRING},
    {"enum", TCL_T_STRING}, {"int", TCL_T_INTEGER}, {"int32", TCL_T_INTEGER}, {"int64", TCL_T_INTEGER},
    {"uint", TCL_T_INTEGER}, {"uint32", TCL_T_INTEGER}, {"uint64", TCL_T_INTEGER}, {"long", TCL_T_INTEGER},
    {"short", TCL_T_INTEGER}, {"unsigned", TCL_T_INTEGER}, {"float", TCL_T_NUMBER}, {"float32", TCL_T_NUMBER},
    {"float64", TCL_T_NUMBER}, {"double", TCL_T_NUMBER}, {"bool", TCL_T_BOOLEAN}, {"dict", TCL_T_OBJECT},
    {"arr", TCL_T_ARRAY}, {"list", TCL_T_ARRAY}, {"sequence", TCL_T_ARRAY},
};

/* t.strip().lower() looked up in the names and aliases. */
static unsigned type_name(const char *s)
{
    size_t n = strlen(s), off = pl_py_lstrip_off(s, n);
    n = pl_py_rstrip_len(s, n);
    for (size_t i = 0; i < PL_ARRAY_LEN(k_type_names); i++) {
        const char *k = k_type_names[i].name;
        if (strlen(k) == n - off && strncasecmp(s + off, k, n - off) == 0) return k_type_names[i].type;
    }
    return TCL_T_OTHER;
}

static unsigned value_kind(const cJSON *v)
{
    if (cJSON_IsNull(v)) return TCL_T_NULL;
    if (cJSON_IsBool(v)) return TCL_T_BOOLEAN;
    if (cJSON_IsNumber(v)) return pl_json_is_float(v) ? TCL_T_NUMBER : TCL_T_INTEGER;
    if (cJSON_IsString(v)) return TCL_T_STRING;
    if (cJSON_IsArray(v)) return TCL_T_ARRAY;
    if (cJSON_IsObject(v)) return TCL_T_OBJECT;
    return 0;
}

/* exact: the type names as written, only "string" itself counting as a
 * string (vLLM's test for a value it may stream before it closes), instead
 * of folded to the type coercion tries. */
static unsigned schema_types(const cJSON *s, int depth, bool exact)
{
    if (!cJSON_IsObject(s) || depth > 64) return TCL_T_STRING;
    unsigned t = 0;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(s, "type"), *e;
#define NAME_TYPE(str) (exact ? (strcmp((str), "string") ? TCL_T_OTHER : TCL_T_STRING) : type_name(str))
    if (cJSON_IsString(ty)) t |= NAME_TYPE(ty->valuestring);
    else if (cJSON_IsArray(ty))
        cJSON_ArrayForEach(e, ty) if (cJSON_IsString(e)) t |= NAME_TYPE(e->valuestring);
#undef NAME_TYPE
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    if (cJSON_IsArray(en)) cJSON_ArrayForEach(e, en) t |= value_kind(e);
    static const char *const choices[] = {"anyOf", "oneOf", "allOf"};
    for (size_t i = 0; i < PL_ARRAY_LEN(choices); i++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(s, choices[i]);
        if (cJSON_IsArray(c)) cJSON_ArrayForEach(e, c) t |= schema_types(e, depth + 1, exact);
    }
    return t ? t : TCL_T_STRING;
}

unsigned tcl_schema_types(const cJSON *schema) { return schema_types(schema, 0, false); }

/* ===== Python int() and float() ===== */

/* The decimal digit starting at s[k] (any script, as Python's int() takes
 * them): its value, with its byte length in *len; -1 when there is none. */
static int digit_at(const char *s, size_t n, size_t k, size_t *len)
{
    uint32_t cp;
    if (k >= n) return -1;
    if ((unsigned char)s[k] < 0x80) {
        *len = 1;
        return s[k] >= '0' && s[k] <= '9' ? s[k] - '0' : -1;
    }
    if (!(*len = pl_utf8_decode((const unsigned char *)s + k, n - k, &cp))) return -1;
    return pl_py_decimal(cp);
}

/* Digits with single '_' between them (Python numeric literal rules) from
 * s[*i]; copies them to out as ASCII digits (no '_'). Returns the count. */
static size_t digit_part(const char *s, size_t n, size_t *i, pl_buf *out)
{
    size_t k = *i, nd = 0, len;
    int v;
    while (k < n) {
        if ((v = digit_at(s, n, k, &len)) >= 0) { pl_buf_putc(out, (char)('0' + v)); k += len; nd++; continue; }
        if (s[k] == '_' && nd && digit_at(s, n, k + 1, &len) >= 0) { k++; continue; }
        break;
    }
    *i = k;
    return nd;
}

/* int(text): JSON integer text into out, or false. */
static bool py_int(pl_buf *out, const char *s, size_t n)
{
    size_t i = pl_py_lstrip_off(s, n);
    n = pl_py_rstrip_len(s, n);
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    pl_buf d;
    pl_buf_init(&d);
    bool ok = digit_part(s, n, &i, &d) > 0 && i == n && pl_buf_ok(&d);
    if (ok) {
        size_t z = 0;
        while (z + 1 < d.len && d.data[z] == '0') z++;
        if (neg && !(d.len - z == 1 && d.data[z] == '0')) pl_buf_putc(out, '-');
        pl_buf_append(out, d.data + z, d.len - z);
    }
    pl_buf_free(&d);
    return ok;
}

/* float(text), finite only: JSON text into out (a whole value as an integer,
 * as vLLM's `val if val != int(val) else int(val)`), or false. */
static bool py_float(pl_buf *out, const char *s, size_t n)
{
    size_t i = pl_py_lstrip_off(s, n);
    n = pl_py_rstrip_len(s, n);
    pl_buf c;
    pl_buf_init(&c);
    if (i < n && (s[i] == '+' || s[i] == '-')) pl_buf_putc(&c, s[i++]);
    size_t nd = digit_part(s, n, &i, &c);
    if (i < n && s[i] == '.') {
        pl_buf_putc(&c, s[i++]);
        nd += digit_part(s, n, &i, &c);
    }
    bool ok = nd > 0;
    if (ok && i < n && (s[i] == 'e' || s[i] == 'E')) {
        pl_buf_putc(&c, s[i++]);
        if (i < n && (s[i] == '+' || s[i] == '-')) pl_buf_putc(&c, s[i++]);
        ok = digit_part(s, n, &i, &c) > 0;
    }
    ok = ok && i == n && pl_buf_ok(&c);   /* inf/nan spellings end here too: not finite anyway */
    double v = ok ? strtod(c.data, NULL) : 0;
    pl_buf_free(&c);
    if (!ok || !isfinite(v)) return false;
    if (v == floor(v)) pl_buf_printf(out, "%.0f", v == 0 ? 0.0 : v);   /* exact digits, like int(v) */
    else pl_pyjson_write_double(out, v);
    return true;
}

/* ===== json.loads, strictly ===== */

/* A strict scan: exactly the grammar json.loads accepts. */
typedef struct jscan { const char *s; size_t n, i; int depth; } jscan;

static void jws(jscan *j)
{
    while (j->i < j->n && strchr(" \t\r\n", j->s[j->i]) && j->s[j->i]) j->i++;
}

static bool jlit(jscan *j, const char *lit)
{
    size_t L = strlen(lit);
    if (j->n - j->i < L || memcmp(j->s + j->i, lit, L)) return false;
    j->i += L;
    return true;
}

static bool jdigits(jscan *j)
{
    size_t st = j->i;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') j->i++;
    return j->i > st;
}

static bool jnumber_text(jscan *j, bool *is_int)
{
    if (j->i < j->n && j->s[j->i] == '-') j->i++;
    if (j->i < j->n && j->s[j->i] == '0') j->i++;
    else if (!jdigits(j)) return false;
    *is_int = true;
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        if (!jdigits(j)) return false;
        *is_int = false;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-')) j->i++;
        if (!jdigits(j)) return false;
        *is_int = false;
    }
    return true;
}

static bool jstring(jscan *j)
{
    j->i++;   /* opening quote */
    while (j->i < j->n) {
        unsigned char c = (unsigned char)j->s[j->i++];
        if (c == '"') return true;
        if (c < 0x20) return false;   /* json.loads(strict=True) refuses raw control characters */
        if (c != '\\') continue;
        if (j->i >= j->n) return false;
        c = (unsigned char)j->s[j->i++];
        if (c == 'u') {
            for (int k = 0; k < 4; k++, j->i++)
                if (j->i >= j->n || !strchr("0123456789abcdefABCDEF", j->s[j->i]) || !j->s[j->i]) return false;
        } else if (!strchr("\"\\/bfnrt", c) || !c) {
            return false;
        }
    }
    return false;
}

static bool jvalue(jscan *j, bool *is_int);

static bool jcontainer(jscan *j, char close, bool keyed)
{
    bool dummy;
    if (++j->depth > PL_JSON_MAX_DEPTH) return false;
    j->i++;
    jws(j);
    if (j->i < j->n && j->s[j->i] == close) { j->i++; j->depth--; return true; }
    for (;;) {
        if (keyed) {
            if (j->i >= j->n || j->s[j->i] != '"' || !jstring(j)) return false;
            jws(j);
            if (j->i >= j->n || j->s[j->i++] != ':') return false;
            jws(j);
        }
        if (!jvalue(j, &dummy)) return false;
        jws(j);
        if (j->i >= j->n) return false;
        char c = j->s[j->i++];
        if (c == close) { j->depth--; return true; }
        if (c != ',') return false;
        jws(j);
    }
}

static bool jvalue(jscan *j, bool *is_int)
{
    *is_int = false;
    if (j->i >= j->n) return false;
    switch (j->s[j->i]) {
    case '{': return jcontainer(j, '}', true);
    case '[': return jcontainer(j, ']', false);
    case '"': return jstring(j);
    case 't': return jlit(j, "true");
    case 'f': return jlit(j, "false");
    case 'n': return jlit(j, "null");
    default:  return jnumber_text(j, is_int);   /* NaN/Infinity: not finite, refused like vLLM */
    }
}

static bool all_finite(const cJSON *v)
{
    for (; v; v = v->next) {
        if (cJSON_IsNumber(v) && !isfinite(v->valuedouble)) return false;
        if (v->child && !all_finite(v->child)) return false;
    }
    return true;
}

/* json.loads(text) that is finite, written back as json.dumps would. The
 * scan holds the grammar to exactly what json.loads accepts (cJSON is
 * laxer: leading zeros, "1."); pl_json_parse then keeps every integer exact
 * and repeated keys as a Python dict does (common/json.h). */
static bool py_json(pl_buf *out, const char *s, size_t n)
{
    jscan j = {s, n, 0, 0};
    bool is_int;
    jws(&j);
    size_t start = j.i;
    if (!jvalue(&j, &is_int)) return false;
    size_t stop = j.i;
    jws(&j);
    if (j.i != n) return false;
    cJSON *v;
    if (pl_json_parse(&v, s + start, stop - start, NULL, 0)) return false;
    bool ok = all_finite(v) && pl_pyjson_dump(out, v, NULL) == PL_OK;
    cJSON_Delete(v);
    return ok;
}

/* ===== coercion ===== */

static bool ascii_ieq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

void tcl_value_to_json(pl_buf *out, const char *s, size_t n, unsigned types)
{
    size_t mark = out->len;
    if ((types & TCL_T_NULL) && ascii_ieq(s, n, "null")) { pl_buf_puts(out, "null"); return; }
    /* vLLM's "number" tries int() first too: a big integer stays exact */
    if ((types & (TCL_T_INTEGER | TCL_T_NUMBER)) && py_int(out, s, n)) return;
    if ((types & TCL_T_NUMBER) && py_float(out, s, n)) return;
    if (types & TCL_T_BOOLEAN) {
        size_t off = pl_py_lstrip_off(s, n), end = pl_py_rstrip_len(s, n);
        const char *b = s + off;
        size_t bn = end > off ? end - off : 0;
        if (ascii_ieq(b, bn, "true") || ascii_ieq(b, bn, "1")) { pl_buf_puts(out, "true"); return; }
        if (ascii_ieq(b, bn, "false") || ascii_ieq(b, bn, "0")) { pl_buf_puts(out, "false"); return; }
    }
    if ((types & (TCL_T_OBJECT | TCL_T_ARRAY)) && py_json(out, s, n)) return;
    out->len = mark;   /* a failed attempt may have written part of a value */
    if (!(types & TCL_T_STRING) && py_json(out, s, n)) return;
    out->len = mark;
    if (out->data) out->data[mark] = 0;
    pl_pyjson_write_string(out, s, n, 0);
}
