/* pyjson.c — Python json.dumps-compatible serialisation. */
#include "pyjson.h"
#include "json.h"
#include "pystr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ strings */

void pl_pyjson_write_string(pl_buf *out, const char *str, size_t len, int ensure_ascii)
{
    const unsigned char *s = (const unsigned char *)str;
    pl_buf_reserve(out, len + 2);
    pl_buf_putc(out, '"');
    size_t i = 0;
    while (i < len) {
        /* copy the longest run that needs no escaping in one append */
        size_t j = i;
        while (j < len && s[j] >= 0x20 && s[j] != '"' && s[j] != '\\' &&
               (s[j] < 0x7F || !ensure_ascii)) {   /* ensure_ascii escapes DEL too, as Python does */
            if (s[j] >= 0x80) {
                uint32_t cp;
                size_t k = pl_utf8_decode(s + j, len - j, &cp);
                if (!k) break;
                j += k;
            } else {
                j++;
            }
        }
        pl_buf_append(out, s + i, j - i);
        i = j;
        if (i >= len) break;
        unsigned c = s[i];
        switch (c) {
        case '"':  pl_buf_puts(out, "\\\""); i++; continue;
        case '\\': pl_buf_puts(out, "\\\\"); i++; continue;
        case '\n': pl_buf_puts(out, "\\n"); i++; continue;
        case '\r': pl_buf_puts(out, "\\r"); i++; continue;
        case '\t': pl_buf_puts(out, "\\t"); i++; continue;
        case '\b': pl_buf_puts(out, "\\b"); i++; continue;
        case '\f': pl_buf_puts(out, "\\f"); i++; continue;
        }
        if (c < 0x20) { pl_buf_printf(out, "\\u%04x", c); i++; continue; }
        uint32_t cp;
        size_t k = pl_utf8_decode(s + i, len - i, &cp);
        if (!k && c == 0xC0 && i + 1 < len && s[i + 1] == 0x80) {   /* PL_JSON_NUL: a cJSON string's U+0000 */
            pl_buf_puts(out, "\\u0000");
            i += 2;
            continue;
        }
        if (!k) { cp = 0xFFFD; k = 1; }
        if (!ensure_ascii) {
            pl_buf_append(out, "\xEF\xBF\xBD", 3);   /* only reached for invalid bytes */
        } else if (cp >= 0x10000) {
            uint32_t v = cp - 0x10000;
            pl_buf_printf(out, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
        } else {
            pl_buf_printf(out, "\\u%04x", cp);
        }
        i += k;
    }
    pl_buf_putc(out, '"');
}

/* ================================================================ floats */

/* Python's float repr: the shortest digit string that round-trips, written
 * in fixed notation when the decimal exponent is in [-4, 16), else as
 * d.ddde[+-]XX. */
void pl_py_float_repr(pl_buf *out, double d)
{
    if (isnan(d)) { pl_buf_puts(out, "nan"); return; }
    if (isinf(d)) { pl_buf_puts(out, d < 0 ? "-inf" : "inf"); return; }
    if (d == 0) { pl_buf_puts(out, signbit(d) ? "-0.0" : "0.0"); return; }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    /* tmp = [-]D[.DDD]e[+-]XX: split into digits and exponent */
    const char *p = tmp;
    int neg = 0;
    if (*p == '-') { neg = 1; p++; }
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;   /* strip trailing zeros */
    if (neg) pl_buf_putc(out, '-');
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            pl_buf_puts(out, "0.");
            for (int i = 0; i < -exp - 1; i++) pl_buf_putc(out, '0');
            pl_buf_append(out, digits, (size_t)nd);
        } else if (nd <= exp + 1) {
            pl_buf_append(out, digits, (size_t)nd);
            for (int i = nd; i < exp + 1; i++) pl_buf_putc(out, '0');
            pl_buf_puts(out, ".0");
        } else {
            pl_buf_append(out, digits, (size_t)exp + 1);
            pl_buf_putc(out, '.');
            pl_buf_append(out, digits + exp + 1, (size_t)(nd - exp - 1));
        }
    } else {
        pl_buf_putc(out, digits[0]);
        if (nd > 1) {
            pl_buf_putc(out, '.');
            pl_buf_append(out, digits + 1, (size_t)nd - 1);
        }
        pl_buf_printf(out, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

void pl_pyjson_write_double(pl_buf *out, double d)
{
    if (isnan(d)) pl_buf_puts(out, "NaN");
    else if (isinf(d)) pl_buf_puts(out, d < 0 ? "-Infinity" : "Infinity");
    else pl_py_float_repr(out, d);
}

/* ================================================================ trees */

int pl_pyjson_is_int(const cJSON *v) { return pl_json_is_int(v); }

static void newline_indent(pl_buf *out, const pl_pyjson_opts *o, int depth)
{
    pl_buf_putc(out, '\n');
    for (int i = 0; i < o->indent * depth; i++) pl_buf_putc(out, ' ');
}

static int cmp_keys(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

static int dump(pl_buf *out, const cJSON *v, const pl_pyjson_opts *o, int depth)
{
    if (depth > PL_JSON_MAX_DEPTH) return PL_ERR_RANGE;
    const char *isep = o->item_sep ? o->item_sep : (o->indent >= 0 ? "," : ", ");
    const char *ksep = o->key_sep ? o->key_sep : ": ";
    if (cJSON_IsNull(v)) { pl_buf_puts(out, "null"); return 0; }
    if (cJSON_IsTrue(v)) { pl_buf_puts(out, "true"); return 0; }
    if (cJSON_IsFalse(v)) { pl_buf_puts(out, "false"); return 0; }
    if (cJSON_IsRaw(v)) { pl_buf_puts(out, v->valuestring); return 0; }   /* exact number text */
    if (cJSON_IsNumber(v)) {
        if (pl_json_is_int(v)) pl_json_int_write(out, v);
        else pl_pyjson_write_double(out, v->valuedouble);
        return 0;
    }
    if (cJSON_IsString(v)) {
        pl_pyjson_write_string(out, v->valuestring, strlen(v->valuestring), o->ensure_ascii);
        return 0;
    }
    int is_obj = cJSON_IsObject(v);
    if (!is_obj && !cJSON_IsArray(v)) return PL_ERR_INVALID;
    int n = cJSON_GetArraySize(v);
    if (n == 0) { pl_buf_puts(out, is_obj ? "{}" : "[]"); return 0; }
    const cJSON **items = malloc(sizeof *items * (size_t)n);
    if (!items) return PL_ERR_NOMEM;
    int k = 0;
    for (const cJSON *c = v->child; c && k < n; c = c->next) items[k++] = c;
    if (is_obj && o->sort_keys) qsort(items, (size_t)k, sizeof *items, cmp_keys);
    pl_buf_putc(out, is_obj ? '{' : '[');
    int rc = 0;
    for (int i = 0; i < k && !rc; i++) {
        if (i) pl_buf_puts(out, isep);
        if (o->indent >= 0) newline_indent(out, o, depth + 1);
        if (is_obj) {
            pl_pyjson_write_string(out, items[i]->string, strlen(items[i]->string), o->ensure_ascii);
            pl_buf_puts(out, ksep);
        }
        rc = dump(out, items[i], o, depth + 1);
    }
    free(items);
    if (o->indent >= 0) newline_indent(out, o, depth);
    pl_buf_putc(out, is_obj ? '}' : ']');
    return rc;
}

int pl_pyjson_dump(pl_buf *out, const cJSON *v, const pl_pyjson_opts *o)
{
    pl_pyjson_opts def = PL_PYJSON_DEFAULT;
    int rc = dump(out, v, o ? o : &def, 0);
    if (!rc && !pl_buf_ok(out)) rc = PL_ERR_NOMEM;
    return rc;
}
