/* json.h — JSON <-> msgpack and cJSON helpers.
 *
 * cJSON keeps every number as a double, which loses the difference between
 * 1 and 1.0 that Python (and so the chat template's tojson and vLLM's tool
 * arguments) preserves. pl_json_parse marks numbers written with '.', 'e' or
 * 'E' with PL_CJSON_FLOAT in cJSON's type bits (cJSON's own type tests mask
 * the low byte, so the flag is invisible to it); msgpack floats get the same
 * mark. pl_pyjson_dump honours it. */
#ifndef PL_JSON_H
#define PL_JSON_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include <msgpack.h>
#include "pl.h"

#define PL_CJSON_FLOAT (1 << 12)

/* Parse JSON text (need not be NUL-terminated). Nesting deeper than
 * PL_JSON_MAX_DEPTH or trailing garbage is an error. */
#define PL_JSON_MAX_DEPTH 512
int pl_json_parse(cJSON **out, const char *text, size_t len, char *err, size_t errlen);

/* A number that should print as a float (1.0) rather than an int (1). */
static inline int pl_json_is_float(const cJSON *v) { return (v->type & PL_CJSON_FLOAT) != 0; }
cJSON *pl_json_float_new(double d);

/* msgpack object -> cJSON tree (map keys must be strings; bin/ext become
 * strings/null). NULL on allocation failure or a non-string map key. */
int pl_json_from_msgpack(cJSON **out, const msgpack_object *o, char *err, size_t errlen);

/* cJSON tree -> msgpack. */
void pl_json_pack(msgpack_packer *pk, const cJSON *v);

#endif
