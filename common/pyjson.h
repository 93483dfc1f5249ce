/* pyjson.h — JSON text exactly as Python's json.dumps writes it.
 *
 * GLM chat templates (transformers' tojson) and vLLM's tool-call `arguments`
 * are both produced by json.dumps(..., ensure_ascii=False) with the default
 * separators ", " and ": ". Matching that byte for byte matters: the prompt
 * the model sees and the arguments a client parses must be what vLLM makes. */
#ifndef PL_PYJSON_H
#define PL_PYJSON_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "pl.h"

/* Options of json.dumps that the templates use. indent < 0 = None. With an
 * indent, separators default to "," / ": " as in Python. */
typedef struct pl_pyjson_opts {
    int         ensure_ascii;   /* escape non-ASCII as \uXXXX (surrogate pairs) */
    int         indent;         /* -1: single line */
    int         sort_keys;
    const char *item_sep;       /* NULL: ", " (or "," with indent) */
    const char *key_sep;        /* NULL: ": " */
} pl_pyjson_opts;

#define PL_PYJSON_DEFAULT ((pl_pyjson_opts){0, -1, 0, NULL, NULL})

/* A JSON string literal of s[0..len) with quotes. Invalid UTF-8 bytes are
 * written as U+FFFD (Python would have failed earlier, at decode), except
 * the pair C0 80, which is how cJSON strings hold U+0000 (json.h). */
void pl_pyjson_write_string(pl_buf *out, const char *s, size_t len, int ensure_ascii);

/* A float as Python's repr(): shortest round-trip digits, "1.0", "1e-05",
 * "1e+16", "inf"->"Infinity", nan->"NaN" (json.dumps spelling). */
void pl_pyjson_write_double(pl_buf *out, double d);

/* Python repr() of a float for str()/print: same as above except inf/nan
 * print as "inf"/"nan". */
void pl_py_float_repr(pl_buf *out, double d);

/* json.dumps of a cJSON tree. Integers (pl_json_is_int, json.h) print
 * exactly, at any size; strings print their NULs (PL_JSON_NUL) as \u0000.
 * A Raw item prints verbatim (a number's exact text). */
int pl_pyjson_dump(pl_buf *out, const cJSON *v, const pl_pyjson_opts *o);

/* The same test as pl_json_is_int. */
int pl_pyjson_is_int(const cJSON *v);

#endif
