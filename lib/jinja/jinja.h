/* jinja.h — a Jinja2 interpreter for chat templates.
 *
 * Renders byte for byte what Python jinja2 renders when configured the way
 * Hugging Face transformers' apply_chat_template configures it:
 *
 *   ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
 *                                 extensions=[loopcontrols])
 *   filters["tojson"]  = json.dumps(x, ensure_ascii=False, indent=None,
 *                                   separators=None, sort_keys=False)
 *   globals: raise_exception(msg), strftime_now(fmt), plus Jinja's range,
 *            namespace, dict, cycler, joiner
 *
 * Usage (compile once, render many; a compiled template is immutable and may
 * be rendered from several threads at once):
 *
 *   pl_jinja_template *t;
 *   if (pl_jinja_compile(&t, src, len, err, sizeof err)) ... // "line 3, column 7: ..."
 *   pl_jinja_value *ctx = pl_jinja_value_dict();
 *   pl_jinja_value_dict_set(ctx, "messages", pl_jinja_value_from_cjson(req_messages));
 *   pl_jinja_value_dict_set(ctx, "add_generation_prompt", pl_jinja_value_bool(1));
 *   pl_buf out; pl_buf_init(&out);
 *   int rc = pl_jinja_render(t, ctx, &out, err, sizeof err);
 *   pl_jinja_value_free(ctx);
 *
 * Ownership: every constructor returns a handle the caller owns and must
 * release with pl_jinja_value_free(), EXCEPT when the handle is passed to a
 * function documented as "consumes": then that function owns it (even when it
 * fails). Values are reference counted internally; a value placed in two
 * containers is shared, not copied. Values must not be mutated (dict_set,
 * list_append) while a render that sees them is running, and one context
 * must not be rendered by two threads at the same time (reference counts are
 * not atomic); build one context per request.
 *
 * Errors: compile returns PL_ERR_PARSE (syntax errors, unknown filters/tests
 * outside conditionals) with "line L, column C: ..." in err. render returns
 *   PL_ERR_TEMPLATE  the template called raise_exception(msg); err = msg exactly
 *   PL_ERR_INVALID   a runtime error Python would raise (type errors, undefined
 *                    values used, unsafe calls); err starts with the Python
 *                    exception name, e.g. "UndefinedError: 'x' is undefined (line 4)"
 *   PL_ERR_RANGE     a safety limit was hit (output size, recursion depth,
 *                    loop iterations, work budget)
 *   PL_ERR_NOMEM     allocation failed
 * On error, out holds partial output (callers discard it).
 *
 * Stack: rendering recurses; the nesting limits keep it under about 1 MiB
 * (tested on a 1 MiB thread stack with a hostile template).
 *
 * Supported: the whole statement set chat templates use (if/elif/else, for
 * with else/filter/recursive/loop.*, set and set blocks, namespace, macro
 * with defaults/varargs/kwargs/caller, call, filter and with blocks, raw,
 * break/continue, transformers' {% generation %}), Jinja's scoping rules
 * (including its compile-time "assigned later in this frame" rule), all
 * expression operators with Python semantics, Jinja's tests, most filters
 * and the str/dict/list methods templates call. Unknown filters/tests fail
 * at compile time except inside if/conditional expressions, like Jinja.
 *
 * Known differences from Python (deliberate, documented):
 *   - ints are int64: results that overflow raise OverflowError instead of
 *     becoming Python big ints; an integer beyond int64 in the input (cJSON
 *     from common/json.h) is kept exactly — it prints, compares equal and
 *     serialises as Python's would — but arithmetic on it raises
 *     OverflowError; complex results (negative ** fraction) raise;
 *   - Markup (from |safe, |escape) is a plain string: no auto-escaping on
 *     concatenation;
 *   - generators (select, map, reject, unique, reverse, items...) and range()
 *     are lists: they print as lists and have a length; |items on a
 *     non-mapping fails at once instead of when iterated;
 *   - case mapping is per code point (utf8proc) plus Python's special cases
 *     for ß, ŉ, the fi/fl ligatures and İ;
 *   - str.format supports {} {0} {name} without format specs;
 *   - Jinja's optimizer folds literal-only subscripts like {{ 3[1:] }} to
 *     undefined; here they raise like any runtime slice of an int;
 *   - filters filesizeformat, groupby, pprint, random, slice, striptags,
 *     urlencode, urlize, wordwrap, xmlattr and globals cycler, joiner, lipsum
 *     raise when used; the autoescape tag is a compile error; extends/
 *     include/import fail at render ("no loader"), as under transformers.
 */
#ifndef PL_JINJA_H
#define PL_JINJA_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "pl.h"

typedef struct pl_jinja_template pl_jinja_template;
typedef struct pl_jinja_value pl_jinja_value;

/* ================================================================ values */

pl_jinja_value *pl_jinja_value_none(void);
pl_jinja_value *pl_jinja_value_bool(int b);
pl_jinja_value *pl_jinja_value_int(int64_t i);
pl_jinja_value *pl_jinja_value_float(double d);
/* UTF-8 bytes, copied. len() and slicing count code points like Python. */
pl_jinja_value *pl_jinja_value_string(const char *s, size_t len);
pl_jinja_value *pl_jinja_value_cstring(const char *s);
pl_jinja_value *pl_jinja_value_list(void);
pl_jinja_value *pl_jinja_value_dict(void);        /* keeps insertion order */

/* A deep conversion of a cJSON tree made by common/json.h (pl_json_parse,
 * pl_json_from_msgpack): its ints stay ints, exact at any size (see the
 * int64 note below), its floats floats, and U+0000 inside its strings a
 * real NUL. Returns NULL on allocation failure or nesting deeper than 1000. */
pl_jinja_value *pl_jinja_value_from_cjson(const cJSON *j);

/* Parse JSON text as Python's json.loads would: "1" is an int, "1.0" a
 * float, duplicate keys keep the first position and the last value. */
int pl_jinja_value_from_json(pl_jinja_value **out, const char *text, size_t len,
                             char *err, size_t errlen);

/* Append to a list; consumes item. */
int pl_jinja_value_list_append(pl_jinja_value *list, pl_jinja_value *item);

/* Set key in a dict (replaces the value in place when the key exists, as
 * Python does); consumes val. key is UTF-8, copied. */
int pl_jinja_value_dict_set(pl_jinja_value *dict, const char *key, pl_jinja_value *val);
int pl_jinja_value_dict_setn(pl_jinja_value *dict, const char *key, size_t keylen,
                             pl_jinja_value *val);

/* dict.update(src): every key of src set into dict (chat_template_kwargs).
 * src is not consumed. */
int pl_jinja_value_dict_update(pl_jinja_value *dict, const pl_jinja_value *src);

/* 1 when dict has key (UTF-8, NUL-terminated). */
int pl_jinja_value_dict_has(const pl_jinja_value *dict, const char *key);

/* dict[key] as a new handle (shares the value; free it), NULL when absent
 * or when dict is not a dict. With pl_jinja_value_from_json on a whole
 * request body this gives messages/tools/chat_template_kwargs exactly as
 * Python's json.loads would (1.0 stays a float). */
pl_jinja_value *pl_jinja_value_dict_get(const pl_jinja_value *dict, const char *key);

enum pl_jinja_kind {
    PL_JINJA_NONE, PL_JINJA_BOOL, PL_JINJA_INT, PL_JINJA_FLOAT, PL_JINJA_STRING,
    PL_JINJA_LIST, PL_JINJA_DICT, PL_JINJA_OTHER,
};
enum pl_jinja_kind pl_jinja_value_kind(const pl_jinja_value *v);

void pl_jinja_value_free(pl_jinja_value *v);

/* ================================================================ templates */

/* Safety limits of one render. A hostile template hits one of them and fails
 * with PL_ERR_RANGE instead of exhausting memory, stack or time. */
typedef struct pl_jinja_limits {
    size_t   max_output;      /* bytes of output, and of any one string value */
    int      max_depth;       /* nested macro / recursive-loop calls */
    uint64_t max_iterations;  /* loop iterations in one render, all loops */
    uint64_t max_work;        /* bytes of strings/lists built in one render */
    int64_t  fixed_time;      /* >0: strftime_now uses this Unix time (UTC)
                                 instead of the local clock (tests) */
    int64_t  max_time_ms;     /* wall time of one render (0: none); checked between steps */
    int    (*interrupt)(void);/* non-zero: cut the render now (a stage told to stop); may be NULL */
} pl_jinja_limits;

/* 64 MiB output, depth 100, 10M iterations, 2 GiB work, 10 s, real clock, no interrupt.
 * A render cut by a limit, the time budget or the interrupt fails with
 * PL_ERR_RANGE and "LimitError: ..." in err. Strings (tojson, str(), joins,
 * string methods) stop growing at max_output while they are built. */
void pl_jinja_limits_default(pl_jinja_limits *l);

/* Compile src[0..len). Syntax errors: PL_ERR_PARSE, err = "line L, column C: msg". */
int pl_jinja_compile(pl_jinja_template **out, const char *src, size_t len,
                     char *err, size_t errlen);

void pl_jinja_template_set_limits(pl_jinja_template *t, const pl_jinja_limits *l);

/* Render with the variables of context_dict (a dict; not modified). Output is
 * appended to out. See the top of this file for error codes. */
int pl_jinja_render(const pl_jinja_template *t, const pl_jinja_value *context_dict,
                    pl_buf *out, char *err, size_t errlen);

void pl_jinja_template_free(pl_jinja_template *t);

/* How the template reads message content, guessed as vLLM guesses it
 * (renderers/hf.py _detect_content_format): 1 when it loops over a
 * message's content, so vLLM hands content over as a list of
 * {"type": "text", "text": ...} parts ("openai" format); 0 when it uses
 * content as a string ("string" format). */
int pl_jinja_template_iterates_content(const pl_jinja_template *t);

#endif
