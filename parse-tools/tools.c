/* tools.c — glm47 tool calls from streamed content, as OpenAI deltas.
 *
 * Two nested state machines driven by pl_taglex events:
 *
 *   CONTENT --<tool_call>--> NAME --<arg_key>--> ARGS --</tool_call>--> CONTENT
 *                             \------------</tool_call>------------/
 *
 * and, inside ARGS, one that reproduces vLLM's pair regex
 * `<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>` (DOTALL, left to
 * right) incrementally: IDLE (text between pairs is ignored) -> KEY ->
 * AFTER_KEY (`</arg_key>` plus whitespace, held: anything but <arg_value>
 * turns it back into key text, as the lazy regex would extend the key) ->
 * VALUE (everything up to the first </arg_value>). Tags that mean nothing in
 * a state are plain text of that state.
 *
 * Arguments go out as vLLM's streaming path sends them, so that its results
 * are reproduced wherever its streaming and non-streaming paths agree: the
 * last pair stays open until the next new key begins or the call ends (a
 * streamed string keeps its closing quote; other values their whole JSON).
 * While it is open a repeated key may still replace it; once it is sent the
 * first value stays. */
#include "tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "pyjson.h"
#include "pystr.h"
#include "strmap.h"
#include "taglex.h"

/* ===== tags and states ===== */

enum { T_CALL, T_CALL_END, T_KEY, T_KEY_END, T_VAL, T_VAL_END };
static const char *const k_tags[] = {
    "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>",
};

enum tcl_state { S_CONTENT, S_NAME, S_ARGS };
enum tcl_arg { A_IDLE, A_KEY, A_AFTER_KEY, A_VALUE };

#define NAME_MAX_BYTES (64u << 10)   /* a longer "name" cannot be a tool's: stop buffering it */

static uint32_t state_mask(enum tcl_state s)
{
    switch (s) {
    case S_CONTENT: return 1u << T_CALL;
    case S_NAME:    return 1u << T_CALL_END | 1u << T_KEY;
    default:        return 1u << T_CALL_END | 1u << T_KEY | 1u << T_KEY_END | 1u << T_VAL | 1u << T_VAL_END;
    }
}

/* How the value being read is handled. */
enum tcl_val {
    V_STREAM,    /* a string value of a new key: streamed as it arrives */
    V_BUFFER,    /* a new key's other value: typed when it closes */
    V_REPLACE,   /* the open pair's key again, a buffered value: replaces it if it closes */
    V_EXTEND,    /* the open pair's key again, a streamed value: only its growth is sent */
    V_SKIP,      /* a key whose value was sent already: the first value stays */
};

struct tcl_parser {
    const tcl_tools *tools;
    enum tcl_mode    mode;
    enum tcl_state   state;
    pl_taglex        lx;
    /* content */
    pl_wshold        cws;           /* trailing whitespace of content, held */
    bool             content_started;   /* non-space content went out */
    bool             markup;        /* a <tool_call> was seen */
    pl_buf           lead;          /* scratch: content after a call, before any text */
    uint32_t         ncalls;
    /* the call being read */
    pl_buf           name;
    bool             name_overflow;
    bool             live;          /* a valid call: its deltas go out */
    int              tool;          /* index in tools */
    uint32_t         index;         /* its index in tool_calls */
    uint32_t         npairs;        /* pairs written into its arguments */
    enum tcl_arg     arg;
    pl_buf           key, after, val;
    enum tcl_val     vmode;
    unsigned         val_types;
    pl_strmap       *keys;          /* keys seen in this call */
    /* the open (last) pair: not finished in the arguments yet */
    bool             open;
    bool             open_stream;   /* streamed string: only its closing quote is due */
    pl_buf           open_key;      /* its key (stripped) */
    pl_buf           open_json;     /* buffered: `"key": value` */
    pl_buf           open_raw;      /* streamed: the raw text sent so far */
    pl_buf           esc;           /* scratch for escaping */
};

/* ===== deltas ===== */

void tcl_delta_init(tcl_delta *d) { memset(d, 0, sizeof *d); }

void tcl_delta_reset(tcl_delta *d)
{
    if (!tcl_delta_ok(d)) { tcl_delta_free(d); return; }
    pl_buf_reset(&d->content);
    d->ncalls = 0;
}

void tcl_delta_free(tcl_delta *d)
{
    pl_buf_free(&d->content);
    for (size_t i = 0; i < d->cap; i++) {
        pl_buf_free(&d->calls[i].name);
        pl_buf_free(&d->calls[i].args);
    }
    free(d->calls);
    memset(d, 0, sizeof *d);
}

bool tcl_delta_ok(const tcl_delta *d)
{
    if (d->oom || !pl_buf_ok(&d->content)) return false;
    for (size_t i = 0; i < d->ncalls; i++)
        if (!pl_buf_ok(&d->calls[i].name) || !pl_buf_ok(&d->calls[i].args)) return false;
    return true;
}

/* The entry for call `index` in this delta (calls arrive in order, so it is
 * the last one or a new one). NULL when out of memory. */
static tcl_call_delta *out_call(tcl_delta *d, uint32_t index)
{
    if (d->ncalls && d->calls[d->ncalls - 1].index == index) return &d->calls[d->ncalls - 1];
    if (d->ncalls == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        tcl_call_delta *c = realloc(d->calls, cap * sizeof *c);
        if (!c) { d->oom = true; return NULL; }
        memset(c + d->cap, 0, (cap - d->cap) * sizeof *c);
        d->calls = c;
        d->cap = cap;
    }
    tcl_call_delta *c = &d->calls[d->ncalls++];
    c->index = index;
    c->first = false;
    c->id[0] = 0;
    pl_buf_reset(&c->name);
    pl_buf_reset(&c->args);
    return c;
}

static pl_buf *out_args(tcl_parser *p, tcl_delta *d)
{
    static pl_buf sink;   /* absorbs output when out of memory (oom is sticky there; d->oom is set) */
    tcl_call_delta *c = out_call(d, p->index);
    if (c) return &c->args;
    sink.oom = 1;
    return &sink;
}

/* ===== ids ===== */

/* "chatcmpl-tool-" + 16 hex digits, as vLLM 0.33: the low 64 bits of a
 * random UUID4 (so the first digit carries the RFC 4122 variant, 8-b). */
static void make_id(char out[48])
{
    unsigned char b[8];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        /* no entropy source: a counter mixed with time and pid still differs per call */
        static uint64_t ctr;
        uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (++ctr * 0x9E3779B97F4A7C15ull);
        for (int i = 0; i < 8; i++) {
            x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 29;
            b[i] = (unsigned char)x;
        }
    }
    b[0] = (unsigned char)((b[0] & 0x3F) | 0x80);   /* RFC 4122 variant */
    memcpy(out, "chatcmpl-tool-", 14);
    for (int i = 0; i < 8; i++) snprintf(out + 14 + 2 * i, 3, "%02x", b[i]);
}

/* ===== parser ===== */

int tcl_parser_new(tcl_parser **out, const tcl_tools *tools, enum tcl_mode mode)
{
    tcl_parser *p = calloc(1, sizeof *p);
    if (!p) return PL_ERR_NOMEM;
    if (pl_strmap_new(&p->keys)) { free(p); return PL_ERR_NOMEM; }
    p->tools = tools;
    p->mode = mode;
    p->state = S_CONTENT;
    pl_taglex_init(&p->lx, k_tags, PL_ARRAY_LEN(k_tags));
    pl_wshold_init(&p->cws);
    *out = p;
    return PL_OK;
}

void tcl_parser_free(tcl_parser *p)
{
    if (!p) return;
    pl_taglex_free(&p->lx);
    pl_wshold_free(&p->cws);
    pl_buf_free(&p->name);
    pl_buf_free(&p->key);
    pl_buf_free(&p->after);
    pl_buf_free(&p->val);
    pl_buf_free(&p->lead);
    pl_buf_free(&p->open_key);
    pl_buf_free(&p->open_json);
    pl_buf_free(&p->open_raw);
    pl_buf_free(&p->esc);
    pl_strmap_free(p->keys, NULL);
    free(p);
}

uint32_t tcl_parser_calls(const tcl_parser *p) { return p->ncalls; }

/* ===== content ===== */

static void content_text(tcl_parser *p, const char *s, size_t n, tcl_delta *d)
{
    if (!p->content_started && p->ncalls) {
        /* a call came before any text: the whitespace up to the text is
         * next to a call at the start, and dropped */
        pl_buf_reset(&p->lead);
        pl_wshold_push(&p->cws, s, n, &p->lead);
        if (!p->lead.len) return;
        size_t off = pl_py_lstrip_off(p->lead.data, p->lead.len);
        pl_buf_append(&d->content, p->lead.data + off, p->lead.len - off);
        p->content_started = true;
        return;
    }
    size_t before = d->content.len;
    pl_wshold_push(&p->cws, s, n, &d->content);
    if (d->content.len > before) p->content_started = true;
}

/* Python strip() of a buffer: *s, *n = the stripped part. */
static void stripped(const pl_buf *b, const char **s, size_t *n)
{
    const char *d = b->data ? b->data : "";
    size_t off = pl_py_lstrip_off(d, b->len), end = pl_py_rstrip_len(d, b->len);
    *s = d + off;
    *n = end > off ? end - off : 0;
}

/* ===== calls ===== */

/* The name is complete (<arg_key> or </tool_call> seen): validate it and,
 * when it names a tool, send the call's first delta. */
static void call_begin(tcl_parser *p, tcl_delta *d)
{
    const char *nm;
    size_t nlen;
    stripped(&p->name, &nm, &nlen);
    p->tool = p->name_overflow || !nlen || p->mode != TCL_MODE_CALLS ? -1 : tcl_tools_find(p->tools, nm, nlen);
    p->live = p->tool >= 0;
    p->arg = A_IDLE;
    p->npairs = 0;
    p->open = false;
    pl_strmap_clear(p->keys, NULL);
    if (!p->live) return;
    /* whitespace-only content before the first call is not content */
    if (!p->content_started) pl_wshold_drop(&p->cws, &d->content);
    p->index = p->ncalls++;
    tcl_call_delta *c = out_call(d, p->index);
    if (!c) return;
    c->first = true;
    make_id(c->id);
    pl_buf_append(&c->name, nm, nlen);
    pl_buf_putc(&c->args, '{');
}

/* Escape s[0..n) as JSON string content (no quotes) onto the arguments. */
static void put_escaped(tcl_parser *p, const char *s, size_t n, tcl_delta *d)
{
    if (!n) return;
    pl_buf_reset(&p->esc);
    pl_pyjson_write_string(&p->esc, s, n, 0);
    if (!pl_buf_ok(&p->esc)) { d->oom = true; return; }   /* esc.len may be < 2 */
    pl_buf_append(out_args(p, d), p->esc.data + 1, p->esc.len - 2);
}

/* Stream value text of a string-typed pair, holding an incomplete UTF-8
 * sequence back (p->val holds at most those few bytes). */
static void stream_value(tcl_parser *p, const char *s, size_t n, tcl_delta *d)
{
    pl_buf_append(&p->open_raw, s, n);
    if (p->val.len) {
        pl_buf_append(&p->val, s, n);
        s = p->val.data;
        n = p->val.len;
    }
    size_t c = pl_utf8_complete_len(s, n);
    put_escaped(p, s, c, d);
    /* keep the tail; s may point into val itself, so move through a copy */
    char tail[4];
    size_t nt = n - c;
    memcpy(tail, s + c, nt);
    pl_buf_reset(&p->val);
    pl_buf_append(&p->val, tail, nt);
}

static void pair_separator(tcl_parser *p, pl_buf *a)
{
    if (p->npairs++) pl_buf_puts(a, ", ");
}

/* The open pair is final: write what is still due. */
static void open_finish(tcl_parser *p, tcl_delta *d)
{
    if (!p->open) return;
    pl_buf *a = out_args(p, d);
    if (p->open_stream) {
        pl_buf_putc(a, '"');
    } else {
        pair_separator(p, a);
        pl_buf_append(a, p->open_json.data, p->open_json.len);
    }
    p->open = false;
}

/* <arg_value> after a complete key: decide how the value is written. */
static void value_begin(tcl_parser *p, tcl_delta *d)
{
    const char *k;
    size_t klen;
    stripped(&p->key, &k, &klen);
    p->arg = A_VALUE;
    pl_buf_reset(&p->val);
    if (pl_strmap_get(p->keys, k, klen)) {
        bool is_open = p->open && p->open_key.len == klen && !memcmp(p->open_key.data, k, klen);
        p->vmode = !is_open ? V_SKIP : p->open_stream ? V_EXTEND : V_REPLACE;
        return;
    }
    if (pl_strmap_put(p->keys, k, klen, p, NULL)) d->oom = true;
    open_finish(p, d);   /* a new key: the previous pair can no longer change */
    p->open = true;
    pl_buf_reset(&p->open_key);
    pl_buf_append(&p->open_key, k, klen);
    p->val_types = tcl_tools_arg_types(p->tools, p->tool, k, klen);
    p->open_stream = tcl_tools_arg_streams(p->tools, p->tool, k, klen) && p->val_types == TCL_T_STRING;
    p->vmode = p->open_stream ? V_STREAM : V_BUFFER;
    if (p->open_stream) {   /* the key goes out now, and the value as it comes */
        pl_buf *a = out_args(p, d);
        pair_separator(p, a);
        pl_pyjson_write_string(a, k, klen, 0);
        pl_buf_puts(a, ": \"");
        pl_buf_reset(&p->open_raw);
    }
}

static void value_text(tcl_parser *p, const char *s, size_t n, tcl_delta *d)
{
    if (p->vmode == V_SKIP) return;
    if (p->vmode == V_STREAM) stream_value(p, s, n, d);
    else pl_buf_append(&p->val, s, n);
}

/* The open pair's `"key": value` JSON from the buffered raw value. */
static void open_set_json(tcl_parser *p)
{
    pl_buf_reset(&p->open_json);
    pl_pyjson_write_string(&p->open_json, p->open_key.data ? p->open_key.data : "", p->open_key.len, 0);
    pl_buf_puts(&p->open_json, ": ");
    tcl_value_to_json(&p->open_json, p->val.data ? p->val.data : "", p->val.len, p->val_types);
}

/* </arg_value> (closed), or the end of the call while a value is open. */
static void value_end(tcl_parser *p, bool closed, tcl_delta *d)
{
    p->arg = A_IDLE;
    switch (p->vmode) {
    case V_SKIP: break;
    case V_STREAM:    /* a held incomplete tail goes out as U+FFFD; the quote stays due */
        put_escaped(p, p->val.data, p->val.len, d);
        break;
    case V_BUFFER:    /* an unterminated value of a new key is kept */
        open_set_json(p);
        break;
    case V_REPLACE:   /* ... but never replaces a complete one */
        if (closed) open_set_json(p);
        break;
    case V_EXTEND:
        /* a streamed string can only grow: the new value must extend it */
        if (closed && p->val.len > p->open_raw.len &&
            (!p->open_raw.len || !memcmp(p->val.data, p->open_raw.data, p->open_raw.len))) {
            size_t had = p->open_raw.len, grown = p->val.len - had;
            put_escaped(p, p->val.data + had, grown, d);
            pl_buf_append(&p->open_raw, p->val.data + had, grown);
        }
        break;
    }
    pl_buf_reset(&p->val);
}

static void call_end(tcl_parser *p, tcl_delta *d)
{
    if (p->arg == A_VALUE) value_end(p, false, d);   /* unterminated value */
    if (p->live) {
        open_finish(p, d);
        pl_buf_putc(out_args(p, d), '}');
    }
    p->live = false;
    p->open = false;
    p->arg = A_IDLE;
    pl_buf_reset(&p->name);
    pl_buf_reset(&p->key);
    pl_buf_reset(&p->after);
    pl_buf_reset(&p->val);
    p->name_overflow = false;
    p->state = S_CONTENT;
}

/* ===== argument pairs ===== */

/* AFTER_KEY turned out not to be followed by <arg_value>: the lazy key
 * extends over the held `</arg_key>` and whitespace. */
static void key_resume(tcl_parser *p)
{
    pl_buf_append(&p->key, p->after.data, p->after.len);
    pl_buf_reset(&p->after);
    p->arg = A_KEY;
}

static void args_text(tcl_parser *p, const char *s, size_t n, tcl_delta *d)
{
    switch (p->arg) {
    case A_IDLE: return;   /* between pairs: ignored, as by the regex */
    case A_KEY: pl_buf_append(&p->key, s, n); return;
    case A_AFTER_KEY:
        if (pl_py_is_blank(s, n)) { pl_buf_append(&p->after, s, n); return; }
        key_resume(p);
        pl_buf_append(&p->key, s, n);
        return;
    case A_VALUE: value_text(p, s, n, d); return;
    }
}

static void args_tag(tcl_parser *p, int tag, tcl_delta *d)
{
    const char *t = k_tags[tag];
    switch (p->arg) {
    case A_IDLE:
        if (tag == T_KEY) { pl_buf_reset(&p->key); p->arg = A_KEY; }
        return;
    case A_KEY:
        if (tag == T_KEY_END) { pl_buf_reset(&p->after); pl_buf_puts(&p->after, t); p->arg = A_AFTER_KEY; }
        else pl_buf_puts(&p->key, t);
        return;
    case A_AFTER_KEY:
        if (tag == T_VAL) { value_begin(p, d); return; }
        key_resume(p);
        if (tag == T_KEY_END) { pl_buf_reset(&p->after); pl_buf_puts(&p->after, t); p->arg = A_AFTER_KEY; }
        else pl_buf_puts(&p->key, t);
        return;
    case A_VALUE:
        if (tag == T_VAL_END) value_end(p, true, d);
        else value_text(p, t, strlen(t), d);
        return;
    }
}

/* ===== driver ===== */

static void on_text(tcl_parser *p, const char *s, size_t n, tcl_delta *d)
{
    switch (p->state) {
    case S_CONTENT: content_text(p, s, n, d); return;
    case S_NAME:
        if (p->name.len + n > NAME_MAX_BYTES) p->name_overflow = true;
        else pl_buf_append(&p->name, s, n);
        return;
    case S_ARGS: args_text(p, s, n, d); return;
    }
}

static void on_tag(tcl_parser *p, int tag, tcl_delta *d)
{
    switch (p->state) {
    case S_CONTENT:   /* only <tool_call> is active here */
        p->markup = true;
        pl_buf_reset(&p->name);
        p->state = S_NAME;
        return;
    case S_NAME:
        call_begin(p, d);
        if (tag == T_CALL_END) { call_end(p, d); return; }
        p->state = S_ARGS;
        /* a dropped call's pairs stay A_IDLE: its body is skipped, not buffered */
        if (p->live) args_tag(p, T_KEY, d);
        return;
    case S_ARGS:
        if (tag == T_CALL_END) call_end(p, d);
        else if (p->live) args_tag(p, tag, d);
        return;
    }
}

/* Text the parser held was lost to a failed allocation. */
static bool parser_oom(const tcl_parser *p)
{
    return !pl_buf_ok(&p->lx.pend) || !pl_buf_ok(&p->cws.ws) || !pl_buf_ok(&p->name) || !pl_buf_ok(&p->key) ||
           !pl_buf_ok(&p->after) || !pl_buf_ok(&p->val) || !pl_buf_ok(&p->lead) || !pl_buf_ok(&p->open_key) ||
           !pl_buf_ok(&p->open_json) || !pl_buf_ok(&p->open_raw);
}

static void run(tcl_parser *p, int final, tcl_delta *d)
{
    int ev, tag;
    const char *s;
    size_t n;
    while ((ev = pl_taglex_next(&p->lx, state_mask(p->state), final, &tag, &s, &n)) != PL_TAGLEX_NONE) {
        if (ev == PL_TAGLEX_TAG) on_tag(p, tag, d);
        else on_text(p, s, n, d);
    }
    if (parser_oom(p)) d->oom = true;
}

void tcl_parser_feed(tcl_parser *p, const char *text, size_t len, tcl_delta *d)
{
    pl_taglex_push(&p->lx, text, len);
    run(p, 0, d);
}

void tcl_parser_finish(tcl_parser *p, tcl_delta *d)
{
    run(p, 1, d);
    if (p->state == S_NAME) call_begin(p, d);
    if (p->state != S_CONTENT) call_end(p, d);
    /* trailing whitespace is dropped when calls were made; content that is
     * only whitespace around call markup is none (vLLM drops it, except for
     * tool_choice "none", where it parses no calls at all) */
    if (p->ncalls || (p->markup && !p->content_started && p->mode != TCL_MODE_SUPPRESS))
        pl_wshold_drop(&p->cws, &d->content);
    else
        pl_wshold_flush(&p->cws, &d->content);
}
