/* tools.h — the glm47 tool-call parser (vLLM 0.33 semantics).
 *
 * GLM-4.5 … 5.x write tool calls into the content as
 *
 *   <tool_call>NAME[\n]<arg_key>K</arg_key>[ws]<arg_value>V</arg_value>…</tool_call>
 *
 * (zero-argument calls: <tool_call>NAME</tool_call>). The parser turns one
 * choice's streamed content into OpenAI streaming tool-call deltas:
 *
 *   - NAME is the stripped text before the first <arg_key> (or </tool_call>);
 *     a call whose name is not one of the request's tools is dropped whole.
 *     The name is sent once, complete, with a fresh id and type "function".
 *   - `arguments` is the JSON object of the pairs, serialised as Python's
 *     json.dumps(..., ensure_ascii=False). Values are typed with the tool's
 *     JSON schema (tcl_value_to_json). The pieces are stable prefixes: their
 *     concatenation is exactly the final arguments. A repeated key replaces
 *     the last pair's value while that pair is still open (tools.c), else
 *     the first value stays; a value still open when its call ends is kept.
 *   - Content is all text outside calls; call markup never reaches it, also
 *     when no call is reported (TCL_MODE_NO_TOOLS, TCL_MODE_SUPPRESS). When
 *     calls were made its trailing whitespace is dropped, and its leading
 *     whitespace too when a call came before any text.
 *   - An unterminated call is closed at the end.
 *
 * Work per feed is proportional to the fed text; results do not depend on how
 * the text is cut into pieces. Where vLLM's streaming and non-streaming
 * paths disagree, the choices are in docs/protocol.md ("Parsers and vLLM"). */
#ifndef TCL_TOOLS_H
#define TCL_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include <msgpack.h>
#include "pl.h"

/* ===== the request's tools ===== */

typedef struct tcl_tools tcl_tools;

/* From the request's `tools` list (OpenAI shape: {type, function: {name,
 * parameters}}). Entries that are not maps or lack a string function.name
 * are ignored; a `parameters` or `properties` that is not an object means
 * "no schema" (values stay strings). A non-list is PL_ERR_INVALID. */
int  tcl_tools_from_msgpack(tcl_tools **out, const msgpack_object *tools, char *err, size_t errlen);
int  tcl_tools_from_json(tcl_tools **out, const char *json, size_t len, char *err, size_t errlen);
void tcl_tools_free(tcl_tools *t);
size_t tcl_tools_count(const tcl_tools *t);
bool tcl_tools_has(const tcl_tools *t, const char *name, size_t len);
/* Index of the tool called name, or -1. */
int  tcl_tools_find(const tcl_tools *t, const char *name, size_t len);
/* Allowed types (enum tcl_type bits) of argument key of tool index `tool`:
 * TCL_T_STRING when the tool has no properties or the key is not among them. */
unsigned tcl_tools_arg_types(const tcl_tools *t, int tool, const char *key, size_t klen);
/* Whether a value of key is streamed as it arrives (vLLM streams a string
 * before it closes only then): the tool has no properties, or the key's
 * schema names no type but "string". Other values go out once the next key
 * begins or the call ends, when their JSON can no longer change. */
bool tcl_tools_arg_streams(const tcl_tools *t, int tool, const char *key, size_t klen);

/* ===== schema typing (vLLM tool_parsers/utils.py coerce_to_schema_type) ===== */

enum tcl_type {
    TCL_T_NULL = 1, TCL_T_INTEGER = 2, TCL_T_NUMBER = 4, TCL_T_BOOLEAN = 8,
    TCL_T_OBJECT = 16, TCL_T_ARRAY = 32, TCL_T_STRING = 64,
    TCL_T_OTHER = 128,   /* a type name we do not know: no candidate, JSON fallback */
};

/* The types a property schema allows: `type` (string or list, aliases such
 * as int/float/bool/dict/list/str folded), `enum` member kinds, anyOf/oneOf/
 * allOf recursively; nothing (or not an object) means string. */
unsigned tcl_schema_types(const cJSON *schema);

/* Append the JSON for raw value text given the allowed types: tries null,
 * integer, number, boolean, object, array, string in that order, first
 * success wins; none → the text parsed as JSON if it is valid finite JSON,
 * else the text as a string. */
void tcl_value_to_json(pl_buf *out, const char *raw, size_t len, unsigned types);

/* ===== one choice's parser ===== */

/* One entry of `tool_calls` in a delta. first: the call's first entry, with
 * id, type and name. */
typedef struct tcl_call_delta {
    uint32_t index;
    bool     first;
    char     id[48];
    pl_buf   name;
    pl_buf   args;        /* the next piece of the arguments JSON text */
} tcl_call_delta;

/* What one feed produced. Reused across feeds (tcl_delta_reset). */
typedef struct tcl_delta {
    pl_buf          content;
    tcl_call_delta *calls;    /* at most one entry per call index */
    size_t          ncalls, cap;
    bool            oom;      /* an entry, or the parser's own state, could not be allocated */
} tcl_delta;

void tcl_delta_init(tcl_delta *d);
/* Empty it for the next feed; a delta that failed starts afresh (pl_buf's
 * oom flag is sticky, and must not fail every later feed). */
void tcl_delta_reset(tcl_delta *d);
void tcl_delta_free(tcl_delta *d);
/* No allocation failed: the delta is complete. When false, the choice has
 * lost text and must be failed (its parser is not usable any more). */
bool tcl_delta_ok(const tcl_delta *d);

typedef struct tcl_parser tcl_parser;

/* What the request asked for. */
enum tcl_mode {
    TCL_MODE_CALLS,      /* tools given, tool_choice not "none": calls are parsed and reported */
    TCL_MODE_NO_TOOLS,   /* no tools: markup is removed, no calls */
    TCL_MODE_SUPPRESS,   /* tools with tool_choice "none": the same, and no whitespace rule */
};

/* tools: borrowed, must outlive the parser (may be NULL unless TCL_MODE_CALLS). */
int  tcl_parser_new(tcl_parser **out, const tcl_tools *tools, enum tcl_mode mode);
void tcl_parser_free(tcl_parser *p);
void tcl_parser_feed(tcl_parser *p, const char *text, size_t len, tcl_delta *out);
/* End of this choice's text: close an open call, release held text. */
void tcl_parser_finish(tcl_parser *p, tcl_delta *out);
/* Calls produced so far. */
uint32_t tcl_parser_calls(const tcl_parser *p);

#endif
