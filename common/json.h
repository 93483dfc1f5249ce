/* json.h — JSON <-> msgpack and cJSON helpers, with Python's json semantics.
 *
 * cJSON is the project's JSON library. Three things it does not keep are
 * kept here, beside its tree, because Python (and so transformers' tojson,
 * vLLM's tool arguments and every client) keeps them:
 *
 * 1. Ints vs floats. cJSON keeps every number as a double. pl_json_parse
 *    marks numbers written with '.', 'e' or 'E' with PL_CJSON_FLOAT in
 *    cJSON's type bits (cJSON's own type tests mask the low byte, so the flag
 *    is invisible to it); msgpack floats get the same mark.
 *
 * 2. Exact integers. A double holds integers exactly only below 2^53. An
 *    integer whose magnitude is 2^53 or more keeps its decimal text (no sign
 *    when positive, no leading zeros: the form Python prints) in the number
 *    node's valuestring, which cJSON_Delete frees and cJSON_Duplicate copies
 *    and which cJSON itself never reads for numbers. This is how every
 *    integer passes exactly, at any size: msgpack packing writes int64 or
 *    uint64 from the text (and, beyond 64 bits, the text itself as an
 *    extension object, see PL_MSGPACK_EXT_BIGINT), pl_pyjson_dump prints the
 *    text, pl_json_get_i64 reads it. Why this and not another JSON library:
 *    cJSON stays the one JSON dependency of every stage, nothing changes for
 *    code that reads valuedouble of ordinary numbers, and the exact value
 *    costs one small allocation only for the rare integers that need it.
 *    (Templates get int64; beyond that a Jinja value is a float — see
 *    lib/jinja/jinja.h.)
 *
 * 3. NUL characters. cJSON strings end at their first NUL byte, so a U+0000
 *    inside a JSON string ("a\u0000b", or a 0 byte in a msgpack string) is
 *    kept as the two bytes C0 80 — an overlong encoding that valid UTF-8
 *    never contains (Java's "modified UTF-8" does the same). Everything that
 *    turns a cJSON string back into bytes (msgpack packing, pl_pyjson_dump,
 *    the Jinja conversion, pl_json_str_bytes) writes a real NUL again.
 *    JSON text that holds the raw bytes C0 80 is refused as invalid UTF-8.
 *
 * pl_json_parse is also as strict as Python's json.loads about raw control
 * characters inside strings, and keeps Python's dict semantics for
 * duplicate keys (first position, last value). */
#ifndef PL_JSON_H
#define PL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include <msgpack.h>
#include "pl.h"

#define PL_CJSON_FLOAT (1 << 12)

/* msgpack extension type for an integer beyond 64 bits: its payload is the
 * decimal text ("-123..."), as Python prints it. */
#define PL_MSGPACK_EXT_BIGINT 1

/* The stand-in for U+0000 inside cJSON strings. */
#define PL_JSON_NUL "\xC0\x80"

/* Parse JSON text (need not be NUL-terminated). Nesting deeper than
 * PL_JSON_MAX_DEPTH, trailing garbage, raw control characters inside
 * strings and the raw bytes C0 80 are errors.
 *
 * PL_JSON_MAX_DEPTH is the project's one nesting limit for client JSON
 * (docs/protocol.md §1): request bodies at glm-gateway, bodies converted
 * from messages at glm-tokenize, and (with a margin for the envelope,
 * PL_MSG_MAX_DEPTH in wire.h) every message on the wire. 128 levels holds
 * tool schemas nested far deeper than real ones (a schema level is two JSON
 * levels: properties, then the property). */
#define PL_JSON_MAX_DEPTH 128
int pl_json_parse(cJSON **out, const char *text, size_t len, char *err, size_t errlen);

/* ---------------------------------------------------------------- numbers */

/* A number that should print as a float (1.0) rather than an int (1). */
static inline bool pl_json_is_float(const cJSON *v) { return (v->type & PL_CJSON_FLOAT) != 0; }
cJSON *pl_json_float_new(double d);

/* An integer: parsed from an integer literal or a msgpack int, or made by
 * pl_json_int_new; a number made by cJSON_CreateNumber counts when it is
 * integral and below 2^53. */
bool pl_json_is_int(const cJSON *v);

/* The exact value of an integer node: 0; PL_ERR_INVALID when v is not an
 * integer (a float, not a number); PL_ERR_RANGE when it is an integer
 * outside int64. */
int pl_json_get_i64(const cJSON *v, int64_t *out);

cJSON *pl_json_int_new(int64_t v);

/* Decimal text of an integer node, as Python prints it. */
void pl_json_int_write(pl_buf *out, const cJSON *v);

/* Python's truthiness of the value json.loads would give (None, False, 0,
 * "", [], {} are false): what vLLM's validators test on raw request data. */
bool pl_json_truthy(const cJSON *v);

/* ---------------------------------------------------------------- strings */

/* A string node from bytes that may hold NUL. */
cJSON *pl_json_string_new(const char *s, size_t len);

/* The bytes of a cJSON string (v->valuestring or a member name): PL_JSON_NUL
 * becomes a real NUL again. Appended to out. */
void pl_json_str_bytes(pl_buf *out, const char *s);

/* ---------------------------------------------------------------- msgpack */

/* msgpack object -> cJSON tree (map keys must be strings; bin becomes a
 * string, PL_MSGPACK_EXT_BIGINT an integer, other ext null). Duplicate map
 * keys keep the first position and the last value, as in Python. */
int pl_json_from_msgpack(cJSON **out, const msgpack_object *o, char *err, size_t errlen);

/* cJSON tree -> msgpack. Integers go as int64/uint64 (or the bigint
 * extension), floats as float64, strings with their NULs. */
void pl_json_pack(msgpack_packer *pk, const cJSON *v);

#endif
