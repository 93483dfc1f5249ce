/* jinja_value.c — the value model of the Jinja interpreter: objects and
 * reference counts, UTF-8 strings, insertion-ordered dicts, Python str() /
 * repr() / == / truthiness / json.dumps, and the public value API. */
#include "jinja_int.h"
#include "json.h"
#include "pyjson.h"
#include "pystr.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ================================================================ objects */

static void track_unlink(jtrack *t)
{
    if (!t->prev) return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

static void frame_clear_vars(jframe *f)
{
    uint32_t n = f->n;
    f->n = 0;      /* before the decrefs: freeing a value must not see stale slots */
    for (uint32_t i = 0; i < n; i++) jv_decref(f->vars[i].v);
}

void jobj_clear(jobj *o)
{
    if (o->type == JV_FRAME) {
        jframe *f = (jframe *)o;
        frame_clear_vars(f);
        if (f->parent) { jframe *p = f->parent; f->parent = NULL; jv_decref(jv_obj(p)); }
    } else if (o->type == JV_NS || o->type == JV_DICT) {
        jdict *d = (jdict *)o;
        size_t n = d->len;
        d->len = 0;
        free(d->idx);
        d->idx = NULL;
        d->idx_cap = 0;
        for (size_t i = 0; i < n; i++) { jv_decref(d->e[i].key); jv_decref(d->e[i].val); }
    }
}

void jobj_free(jobj *o)
{
    switch (o->type) {
    case JV_STR: case JV_BIGINT:
        break;
    case JV_LIST: {
        jlist *l = (jlist *)o;
        for (size_t i = 0; i < l->len; i++) jv_decref(l->v[i]);
        free(l->v);
        break;
    }
    case JV_DICT: case JV_NS: {
        jdict *d = (jdict *)o;
        track_unlink(&d->track);
        for (size_t i = 0; i < d->len; i++) { jv_decref(d->e[i].key); jv_decref(d->e[i].val); }
        free(d->e);
        free(d->idx);
        break;
    }
    case JV_MACRO: {
        jmacro *m = (jmacro *)o;
        if (m->closure) jv_decref(jv_obj(m->closure));
        break;
    }
    case JV_FUNC:
        jv_decref(((jfunc *)o)->self);
        break;
    case JV_LOOP: {
        jloop *l = (jloop *)o;
        if (l->items) jv_decref(jv_obj(l->items));
        jv_decref(l->changed_last);
        if (l->outer) jv_decref(jv_obj(l->outer));
        break;
    }
    case JV_FRAME: {
        jframe *f = (jframe *)o;
        track_unlink(&f->track);
        frame_clear_vars(f);
        if (f->vars != f->inl) free(f->vars);
        if (f->parent) jv_decref(jv_obj(f->parent));
        break;
    }
    }
    free(o);
}

static void *obj_alloc(size_t size, int type)
{
    jobj *o = calloc(1, size);
    if (!o) return NULL;
    o->rc = 1;
    o->type = (uint8_t)type;
    return o;
}

jstr *jstr_alloc(size_t len)
{
    if (len > SIZE_MAX / 2) return NULL;
    jstr *s = malloc(sizeof *s + len + 1);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->h.rc = 1;
    s->h.type = JV_STR;
    s->len = len;
    s->data[len] = 0;
    return s;
}

jstr *jstr_new(const char *p, size_t len)
{
    jstr *s = jstr_alloc(len);
    if (s && len) memcpy(s->data, p, len);
    return s;
}

jlist *jlist_new(size_t cap)
{
    jlist *l = obj_alloc(sizeof *l, JV_LIST);
    if (!l) return NULL;
    if (cap) {
        l->v = malloc(cap * sizeof *l->v);
        if (!l->v) { free(l); return NULL; }
        l->cap = cap;
    }
    return l;
}

int jlist_push(jlist *l, jv v)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) { jv_decref(v); return PL_ERR_NOMEM; }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->len++] = v;
    return 0;
}

jdict *jdict_new(int type)
{
    return obj_alloc(sizeof(jdict), type);
}

jmacro *jmacro_new(const jnode *def, jframe *closure, int flags)
{
    jmacro *m = obj_alloc(sizeof *m, JV_MACRO);
    if (!m) return NULL;
    m->def = def;
    m->closure = closure;
    if (closure) jv_incref(jv_obj(closure));
    m->h.flags = (uint16_t)flags;
    return m;
}

jfunc *jfunc_new(int id, jv self)
{
    jfunc *f = obj_alloc(sizeof *f, JV_FUNC);
    if (!f) { jv_decref(self); return NULL; }
    f->id = id;
    f->self = self;
    return f;
}

/* ================================================================ UTF-8 */

/* Lenient: an invalid byte is one character, U+FFFD. */
size_t utf8_dec(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    size_t k = pl_utf8_decode(s, n, cp);
    if (!k) { *cp = 0xFFFD; return 1; }
    return k;
}

/* One "character" is what utf8_dec consumes, so that counting, indexing and
 * iteration agree even on invalid bytes (each of those is one character). */
size_t utf8_count(const char *s, size_t len)
{
    size_t n = 0, i = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < len) {
        if (u[i] < 0x80) { i++; n++; continue; }
        uint32_t cp;
        i += utf8_dec(u + i, len - i, &cp);
        n++;
    }
    return n;
}

size_t utf8_advance(const char *s, size_t len, size_t pos, size_t ncp)
{
    const unsigned char *u = (const unsigned char *)s;
    while (ncp && pos < len) {
        uint32_t cp;
        pos += u[pos] < 0x80 ? 1 : utf8_dec(u + pos, len - pos, &cp);
        ncp--;
    }
    return pos;
}

int jstr_is_ascii(jstr *s)
{
    if (!(s->h.flags & STR_ASCII_KNOWN)) {
        int ascii = 1;
        for (size_t i = 0; i < s->len; i++)
            if ((unsigned char)s->data[i] >= 0x80) { ascii = 0; break; }
        /* immortal constants are classified at compile time: never written here */
        s->h.flags |= (uint16_t)(STR_ASCII_KNOWN | (ascii ? STR_ASCII : 0));
    }
    return (s->h.flags & STR_ASCII) != 0;
}

size_t jv_strlen_cp(jv v)
{
    jstr *s = JSTR(v);
    return jstr_is_ascii(s) ? s->len : utf8_count(s->data, s->len);
}

int py_isprintable(uint32_t c)
{
    if (c < 0x80) return c >= 0x20 && c < 0x7F;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return 0;
    default:
        return 1;
    }
}

/* ================================================================ hashing */

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)p[i]; h *= 1099511628211ULL; }
    return h ? h : 1;
}

uint64_t jstr_hash(jstr *s)
{
    if (!s->hash) s->hash = hash_bytes(s->data, s->len);
    return s->hash;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
    return x ? x : 2;
}

/* Equal values hash equal: 1 == 1.0 == True. Unhashable types hash by
 * identity (callers reject them as keys beforehand). */
uint64_t jv_hash(jv v)
{
    switch (v.t) {
    case JV_STR: case JV_BIGINT: return jstr_hash(JSTR(v));
    case JV_BOOL: case JV_INT: return mix64((uint64_t)v.u.i);
    case JV_FLOAT:
        if (v.u.f == floor(v.u.f) && fabs(v.u.f) < 9.2e18) return mix64((uint64_t)(int64_t)v.u.f);
        { uint64_t b; memcpy(&b, &v.u.f, 8); return mix64(b); }
    case JV_NONE: return 3;
    case JV_UNDEF: return 5;
    case JV_LIST: {
        uint64_t h = 7;
        for (size_t i = 0; i < JLIST(v)->len; i++) h = mix64(h * 31 + jv_hash(JLIST(v)->v[i]));
        return h;
    }
    default: return mix64((uint64_t)(uintptr_t)v.u.o);
    }
}

/* ================================================================ dicts */

#define DICT_SMALL 8

static int dict_reindex(jdict *d, size_t cap)
{
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx) return PL_ERR_NOMEM;
    for (size_t i = 0; i < d->len; i++) {
        size_t m = cap - 1, p = d->e[i].hash & m;
        while (idx[p]) p = (p + 1) & m;
        idx[p] = (uint32_t)i + 1;
    }
    free(d->idx);
    d->idx = idx;
    d->idx_cap = cap;
    return 0;
}

static jdent *dict_find(const jdict *d, jv key, uint64_t h)
{
    if (!d->idx) {
        for (size_t i = 0; i < d->len; i++)
            if (d->e[i].hash == h && jv_eq(d->e[i].key, key)) return &d->e[i];
        return NULL;
    }
    size_t m = d->idx_cap - 1, p = h & m;
    while (d->idx[p]) {
        jdent *e = &d->e[d->idx[p] - 1];
        if (e->hash == h && jv_eq(e->key, key)) return e;
        p = (p + 1) & m;
    }
    return NULL;
}

jv *jdict_get(const jdict *d, jv key)
{
    jdent *e = dict_find(d, key, jv_hash(key));
    return e ? &e->val : NULL;
}

jv *jdict_get_str(const jdict *d, const char *k, size_t len)
{
    uint64_t h = hash_bytes(k, len);
    if (!d->idx) {
        for (size_t i = 0; i < d->len; i++) {
            const jdent *e = &d->e[i];
            if (e->hash == h && e->key.t == JV_STR && JSTR(e->key)->len == len &&
                !memcmp(JSTR(e->key)->data, k, len))
                return (jv *)&e->val;
        }
        return NULL;
    }
    size_t m = d->idx_cap - 1, p = h & m;
    while (d->idx[p]) {
        jdent *e = &d->e[d->idx[p] - 1];
        if (e->hash == h && e->key.t == JV_STR && JSTR(e->key)->len == len &&
            !memcmp(JSTR(e->key)->data, k, len))
            return &e->val;
        p = (p + 1) & m;
    }
    return NULL;
}

int jdict_set(jdict *d, jv key, jv val)
{
    uint64_t h = jv_hash(key);
    jdent *e = dict_find(d, key, h);
    if (e) {                        /* Python keeps the first key and position */
        jv_decref(key);
        jv_decref(e->val);
        e->val = val;
        return 0;
    }
    if (d->len == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jdent *ne = realloc(d->e, cap * sizeof *ne);
        if (!ne) { jv_decref(key); jv_decref(val); return PL_ERR_NOMEM; }
        d->e = ne;
        d->cap = cap;
    }
    d->e[d->len].key = key;
    d->e[d->len].val = val;
    d->e[d->len].hash = h;
    d->len++;
    if (d->len > DICT_SMALL) {
        if (!d->idx || d->len * 2 > d->idx_cap) {
            size_t cap = d->idx_cap ? d->idx_cap : 16;
            while (d->len * 2 > cap) cap *= 2;
            if (dict_reindex(d, cap)) { /* stay correct without an index */
                free(d->idx); d->idx = NULL; d->idx_cap = 0;
                /* linear scans still work; only speed is lost */
            }
        } else {
            size_t m = d->idx_cap - 1, p = h & m;
            while (d->idx[p]) p = (p + 1) & m;
            d->idx[p] = (uint32_t)d->len;
        }
    }
    return 0;
}

/* ================================================================ Python semantics */

int jv_truthy(jv v)
{
    switch (v.t) {
    case JV_UNDEF: case JV_NONE: return 0;
    case JV_BOOL: case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return JSTR(v)->len != 0;
    case JV_LIST: return JLIST(v)->len != 0;
    case JV_DICT: return JDICT(v)->len != 0;
    default: return 1;
    }
}

static int is_num(jv v) { return v.t == JV_BOOL || v.t == JV_INT || v.t == JV_FLOAT; }

int jv_eq(jv a, jv b)
{
    if (is_num(a) && is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) return a.u.i == b.u.i;
        double x = a.t == JV_FLOAT ? a.u.f : (double)a.u.i;
        double y = b.t == JV_FLOAT ? b.u.f : (double)b.u.i;
        return x == y;
    }
    if (a.t != b.t) return 0;
    switch (a.t) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR: case JV_BIGINT: {   /* big ints: one canonical text per value */
        jstr *x = JSTR(a), *y = JSTR(b);
        return x == y || (x->len == y->len && !memcmp(x->data, y->data, x->len));
    }
    case JV_LIST: {
        jlist *x = JLIST(a), *y = JLIST(b);
        if ((x->h.flags & LIST_TUPLE) != (y->h.flags & LIST_TUPLE) || x->len != y->len) return 0;
        for (size_t i = 0; i < x->len; i++)
            if (!jv_eq(x->v[i], y->v[i])) return 0;
        return 1;
    }
    case JV_DICT: {
        jdict *x = JDICT(a), *y = JDICT(b);
        if (x->len != y->len) return 0;
        for (size_t i = 0; i < x->len; i++) {
            jv *o = jdict_get(y, x->e[i].key);
            if (!o || !jv_eq(x->e[i].val, *o)) return 0;
        }
        return 1;
    }
    default:
        return a.u.o == b.u.o;
    }
}

const char *jv_typename(jv v)
{
    switch (v.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: case JV_BIGINT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: {
        uint16_t f = JLIST(v)->h.flags;
        return (f & LIST_TUPLE) ? "tuple" : (f & LIST_VIEW_KEYS) ? "dict_keys" : (f & LIST_VIEW_VALUES) ? "dict_values"
             : (f & LIST_VIEW_ITEMS) ? "dict_items" : "list";
    }
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    default: return "object";
    }
}

/* ================================================================ str / repr */

void py_repr_string(pl_buf *b, const char *s, size_t len)
{
    char q = '\'';
    if (memchr(s, '\'', len) && !memchr(s, '"', len)) q = '"';
    pl_buf_putc(b, q);
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t j = i;      /* copy runs of plain printable ASCII at once */
        while (j < len && u[j] >= 0x20 && u[j] < 0x7F && u[j] != '\\' && u[j] != (unsigned char)q) j++;
        pl_buf_append(b, s + i, j - i);
        i = j;
        if (i >= len) break;
        uint32_t cp;
        size_t k = utf8_dec(u + i, len - i, &cp);
        if (cp == (uint32_t)q || cp == '\\') { pl_buf_putc(b, '\\'); pl_buf_putc(b, (char)cp); }
        else if (cp == '\t') pl_buf_puts(b, "\\t");
        else if (cp == '\n') pl_buf_puts(b, "\\n");
        else if (cp == '\r') pl_buf_puts(b, "\\r");
        else if (cp < 0x80 || (k == 1 && u[i] >= 0x80)) {
            /* control char, DEL, or an invalid byte (Python would have a
             * surrogate escape here; show the byte) */
            pl_buf_printf(b, "\\x%02x", cp < 0x80 ? cp : u[i]);
        } else if (py_isprintable(cp)) pl_buf_append(b, s + i, k);
        else if (cp <= 0xFF) pl_buf_printf(b, "\\x%02x", cp);
        else if (cp <= 0xFFFF) pl_buf_printf(b, "\\u%04x", cp);
        else pl_buf_printf(b, "\\U%08x", cp);
        i += k;
    }
    pl_buf_putc(b, q);
}

static void write_int(pl_buf *b, int64_t i)
{
    char tmp[24];
    size_t n = sizeof tmp;
    uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
    do { tmp[--n] = (char)('0' + u % 10); u /= 10; } while (u);
    if (i < 0) tmp[--n] = '-';
    jb_append(b, tmp + n, sizeof tmp - n);
}

int jv_write_str(pl_buf *b, jv v)
{
    switch (v.t) {
    case JV_UNDEF: return 0;
    case JV_STR: case JV_BIGINT: jb_append(b, JSTR(v)->data, JSTR(v)->len); return 0;
    case JV_INT: write_int(b, v.u.i); return 0;
    default: return jv_write_repr(b, v, 0);
    }
}

#define REPR_MAX_DEPTH 200

int jv_write_repr(pl_buf *b, jv v, int depth)
{
    if (depth > REPR_MAX_DEPTH) return PL_ERR_RANGE;
    if (!pl_buf_ok(b)) return PL_ERR_NOMEM;   /* full (or at its max): stop walking the value */
    switch (v.t) {
    case JV_UNDEF: pl_buf_puts(b, "Undefined"); return 0;
    case JV_NONE: pl_buf_puts(b, "None"); return 0;
    case JV_BOOL: pl_buf_puts(b, v.u.i ? "True" : "False"); return 0;
    case JV_INT: write_int(b, v.u.i); return 0;
    case JV_BIGINT: jb_append(b, JSTR(v)->data, JSTR(v)->len); return 0;
    case JV_FLOAT: pl_py_float_repr(b, v.u.f); return 0;
    case JV_STR: py_repr_string(b, JSTR(v)->data, JSTR(v)->len); return 0;
    case JV_LIST: {
        jlist *l = JLIST(v);
        int tuple = (l->h.flags & LIST_TUPLE) != 0, view = (l->h.flags & LIST_VIEWS) != 0;
        if (view) { pl_buf_puts(b, jv_typename(v)); pl_buf_putc(b, '('); }
        pl_buf_putc(b, tuple ? '(' : '[');
        for (size_t i = 0; i < l->len; i++) {
            if (i) pl_buf_puts(b, ", ");
            int rc = jv_write_repr(b, l->v[i], depth + 1);
            if (rc) return rc;
        }
        if (tuple && l->len == 1) pl_buf_putc(b, ',');
        pl_buf_putc(b, tuple ? ')' : ']');
        if (view) pl_buf_putc(b, ')');
        return 0;
    }
    case JV_DICT: case JV_NS: {
        jdict *d = JDICT(v);
        if (v.t == JV_NS) pl_buf_puts(b, "<Namespace ");
        pl_buf_putc(b, '{');
        for (size_t i = 0; i < d->len; i++) {
            if (i) pl_buf_puts(b, ", ");
            int rc = jv_write_repr(b, d->e[i].key, depth + 1);
            if (rc) return rc;
            pl_buf_puts(b, ": ");
            rc = jv_write_repr(b, d->e[i].val, depth + 1);
            if (rc) return rc;
        }
        pl_buf_putc(b, '}');
        if (v.t == JV_NS) pl_buf_putc(b, '>');
        return 0;
    }
    case JV_MACRO: {
        const jmacro *m = (const jmacro *)v.u.o;
        if (m->h.flags & MACRO_CALLER) { pl_buf_puts(b, "<Macro 'caller'>"); return 0; }
        pl_buf_puts(b, "<Macro ");
        py_repr_string(b, JSTR(m->def->val)->data, JSTR(m->def->val)->len);
        pl_buf_putc(b, '>');
        return 0;
    }
    case JV_LOOP: {
        const jloop *l = (const jloop *)v.u.o;
        pl_buf_printf(b, "<LoopContext %zu/%zu>", l->index0 + 1, l->items ? l->items->len : 0);
        return 0;
    }
    default:
        pl_buf_puts(b, "<built-in method>");
        return 0;
    }
}

/* ================================================================ json.dumps */

static void json_newline(pl_buf *b, const jjson_opts *o, int depth)
{
    jb_putc(b, '\n');
    for (int i = 0; i < depth; i++) {
        if (o->indent_str) pl_buf_puts(b, o->indent_str);
        else for (int k = 0; k < o->indent; k++) pl_buf_putc(b, ' ');
    }
}

static int json_key(pl_buf *b, jv k, const jjson_opts *o, char *err, size_t errlen)
{
    switch (k.t) {
    case JV_STR: pl_pyjson_write_string(b, JSTR(k)->data, JSTR(k)->len, o->ensure_ascii); return 0;
    case JV_INT: pl_buf_putc(b, '"'); write_int(b, k.u.i); pl_buf_putc(b, '"'); return 0;
    case JV_BOOL: pl_buf_puts(b, k.u.i ? "\"true\"" : "\"false\""); return 0;
    case JV_NONE: pl_buf_puts(b, "\"null\""); return 0;
    case JV_FLOAT: pl_buf_putc(b, '"'); pl_pyjson_write_double(b, k.u.f); pl_buf_putc(b, '"'); return 0;
    default:
        return pl_seterr(err, errlen, PL_ERR_INVALID,
                         "TypeError: keys must be str, int, float, bool or None, not %s", jv_typename(k));
    }
}

static int cmp_str_keys(const void *x, const void *y)
{
    const jdent *a = *(const jdent *const *)x, *b = *(const jdent *const *)y;
    jstr *p = JSTR(a->key), *q = JSTR(b->key);
    size_t n = p->len < q->len ? p->len : q->len;
    int c = memcmp(p->data, q->data, n);
    return c ? c : (p->len > q->len) - (p->len < q->len);
}

static int tojson_rec(pl_buf *b, jv v, const jjson_opts *o, int depth, char *err, size_t errlen)
{
    if (depth > REPR_MAX_DEPTH)
        return pl_seterr(err, errlen, PL_ERR_RANGE, "RecursionError: maximum recursion depth exceeded in tojson");
    if (!pl_buf_ok(b)) return PL_ERR_NOMEM;   /* full (or at its max): stop walking the value */
    int pretty = o->indent >= 0 || o->indent_str;
    const char *isep = o->item_sep ? o->item_sep : (pretty ? "," : ", ");
    const char *ksep = o->key_sep ? o->key_sep : ": ";
    size_t isl = strlen(isep), ksl = strlen(ksep);
    switch (v.t) {
    case JV_NONE: pl_buf_puts(b, "null"); return 0;
    case JV_BOOL: pl_buf_puts(b, v.u.i ? "true" : "false"); return 0;
    case JV_INT: write_int(b, v.u.i); return 0;
    case JV_BIGINT: pl_buf_append(b, JSTR(v)->data, JSTR(v)->len); return 0;
    case JV_FLOAT: pl_pyjson_write_double(b, v.u.f); return 0;
    case JV_STR: pl_pyjson_write_string(b, JSTR(v)->data, JSTR(v)->len, o->ensure_ascii); return 0;
    case JV_LIST: {
        jlist *l = JLIST(v);
        if (l->h.flags & LIST_VIEWS)
            return pl_seterr(err, errlen, PL_ERR_INVALID, "TypeError: Object of type %s is not JSON serializable", jv_typename(v));
        if (!l->len) { pl_buf_puts(b, "[]"); return 0; }
        pl_buf_putc(b, '[');
        for (size_t i = 0; i < l->len; i++) {
            if (i) jb_append(b, isep, isl);
            if (pretty) json_newline(b, o, depth + 1);
            int rc = tojson_rec(b, l->v[i], o, depth + 1, err, errlen);
            if (rc) return rc;
        }
        if (pretty) json_newline(b, o, depth);
        pl_buf_putc(b, ']');
        return 0;
    }
    case JV_DICT: {
        jdict *d = JDICT(v);
        if (!d->len) { pl_buf_puts(b, "{}"); return 0; }
        const jdent *small[16];
        const jdent **ents = d->len <= 16 ? small : malloc(d->len * sizeof *ents);
        if (!ents) return PL_ERR_NOMEM;
        int allstr = 1;
        for (size_t i = 0; i < d->len; i++) {
            ents[i] = &d->e[i];
            if (d->e[i].key.t != JV_STR) allstr = 0;
        }
        if (o->sort_keys && d->len > 1) {
            if (!allstr) {
                if (ents != small) free(ents);
                return pl_seterr(err, errlen, PL_ERR_INVALID,
                                 "TypeError: '<' not supported between dict keys of mixed types");
            }
            /* glibc qsort is a merge sort, and keys are unique anyway */
            qsort(ents, d->len, sizeof *ents, cmp_str_keys);
        }
        pl_buf_putc(b, '{');
        int rc = 0;
        for (size_t i = 0; i < d->len && !rc; i++) {
            if (i) jb_append(b, isep, isl);
            if (pretty) json_newline(b, o, depth + 1);
            rc = json_key(b, ents[i]->key, o, err, errlen);
            if (rc) break;
            jb_append(b, ksep, ksl);
            rc = tojson_rec(b, ents[i]->val, o, depth + 1, err, errlen);
        }
        if (ents != small) free(ents);
        if (rc) return rc;
        if (pretty) json_newline(b, o, depth);
        jb_putc(b, '}');
        return 0;
    }
    default:
        return pl_seterr(err, errlen, PL_ERR_INVALID,
                         "TypeError: Object of type %s is not JSON serializable", jv_typename(v));
    }
}

int jv_tojson(pl_buf *b, jv v, const jjson_opts *o, char *err, size_t errlen)
{
    int rc = tojson_rec(b, v, o, 0, err, errlen);
    if (!rc && !pl_buf_ok(b)) rc = PL_ERR_NOMEM;
    return rc;
}

/* ================================================================ public API */

struct pl_jinja_value { jv v; };

static pl_jinja_value *wrap(jv v)
{
    pl_jinja_value *h = malloc(sizeof *h);
    if (!h) { jv_decref(v); return NULL; }
    h->v = v;
    return h;
}

pl_jinja_value *pl_jinja_value_none(void) { return wrap(jv_none()); }
pl_jinja_value *pl_jinja_value_bool(int b) { return wrap(jv_bool(b)); }
pl_jinja_value *pl_jinja_value_int(int64_t i) { return wrap(jv_int(i)); }
pl_jinja_value *pl_jinja_value_float(double d) { return wrap(jv_float(d)); }

pl_jinja_value *pl_jinja_value_string(const char *s, size_t len)
{
    jstr *js = jstr_new(s, len);
    return js ? wrap(jv_obj(js)) : NULL;
}

pl_jinja_value *pl_jinja_value_cstring(const char *s) { return pl_jinja_value_string(s, strlen(s)); }

pl_jinja_value *pl_jinja_value_list(void)
{
    jlist *l = jlist_new(0);
    return l ? wrap(jv_obj(l)) : NULL;
}

pl_jinja_value *pl_jinja_value_dict(void)
{
    jdict *d = jdict_new(JV_DICT);
    return d ? wrap(jv_obj(d)) : NULL;
}

void pl_jinja_value_free(pl_jinja_value *v)
{
    if (!v) return;
    jv_decref(v->v);
    free(v);
}

int pl_jinja_value_list_append(pl_jinja_value *list, pl_jinja_value *item)
{
    if (!item) return PL_ERR_NOMEM;
    if (!list || list->v.t != JV_LIST) { pl_jinja_value_free(item); return PL_ERR_INVALID; }
    jv v = item->v;
    free(item);
    return jlist_push(JLIST(list->v), v);
}

int pl_jinja_value_dict_setn(pl_jinja_value *dict, const char *key, size_t keylen, pl_jinja_value *val)
{
    if (!val) return PL_ERR_NOMEM;
    if (!dict || dict->v.t != JV_DICT || !key) { pl_jinja_value_free(val); return PL_ERR_INVALID; }
    jstr *k = jstr_new(key, keylen);
    if (!k) { pl_jinja_value_free(val); return PL_ERR_NOMEM; }
    jv v = val->v;
    free(val);
    return jdict_set(JDICT(dict->v), jv_obj(k), v);
}

int pl_jinja_value_dict_set(pl_jinja_value *dict, const char *key, pl_jinja_value *val)
{
    return pl_jinja_value_dict_setn(dict, key, key ? strlen(key) : 0, val);
}

int pl_jinja_value_dict_update(pl_jinja_value *dict, const pl_jinja_value *src)
{
    if (!dict || dict->v.t != JV_DICT || !src || src->v.t != JV_DICT) return PL_ERR_INVALID;
    jdict *s = JDICT(src->v);
    for (size_t i = 0; i < s->len; i++) {
        int rc = jdict_set(JDICT(dict->v), jv_ref(s->e[i].key), jv_ref(s->e[i].val));
        if (rc) return rc;
    }
    return 0;
}

int pl_jinja_value_dict_has(const pl_jinja_value *dict, const char *key)
{
    if (!dict || dict->v.t != JV_DICT || !key) return 0;
    return jdict_get_str(JDICT(dict->v), key, strlen(key)) != NULL;
}

pl_jinja_value *pl_jinja_value_dict_get(const pl_jinja_value *dict, const char *key)
{
    if (!dict || dict->v.t != JV_DICT || !key) return NULL;
    jv *v = jdict_get_str(JDICT(dict->v), key, strlen(key));
    return v ? wrap(jv_ref(*v)) : NULL;
}

enum pl_jinja_kind pl_jinja_value_kind(const pl_jinja_value *v)
{
    switch (v ? v->v.t : JV_FRAME) {
    case JV_NONE: return PL_JINJA_NONE;
    case JV_BOOL: return PL_JINJA_BOOL;
    case JV_INT: case JV_BIGINT: return PL_JINJA_INT;
    case JV_FLOAT: return PL_JINJA_FLOAT;
    case JV_STR: return PL_JINJA_STRING;
    case JV_LIST: return PL_JINJA_LIST;
    case JV_DICT: return PL_JINJA_DICT;
    default: return PL_JINJA_OTHER;
    }
}

/* internal access for the renderer */
jv pl_jinja_value_jv(const pl_jinja_value *v);
jv pl_jinja_value_jv(const pl_jinja_value *v) { return v->v; }

/* ================================================================ from cJSON */

/* A cJSON string or member name as a Jinja string: PL_JSON_NUL stands for
 * U+0000 inside cJSON (common/json.h). */
static jstr *str_from_cjson(const char *s)
{
    if (!strstr(s, PL_JSON_NUL)) return jstr_new(s, strlen(s));
    pl_buf b;
    pl_buf_init(&b);
    pl_json_str_bytes(&b, s);
    jstr *r = pl_buf_ok(&b) ? jstr_new(b.data ? b.data : "", b.len) : NULL;
    pl_buf_free(&b);
    return r;
}

static int from_cjson(const cJSON *j, int depth, jv *out)
{
    if (depth > 1000) return PL_ERR_RANGE;
    if (cJSON_IsNull(j)) { *out = jv_none(); return 0; }
    if (cJSON_IsTrue(j)) { *out = jv_bool(1); return 0; }
    if (cJSON_IsFalse(j)) { *out = jv_bool(0); return 0; }
    if (cJSON_IsNumber(j)) {
        /* every int exact: int64 immediate, beyond it JV_BIGINT (its text) */
        int64_t i;
        int rc = pl_json_get_i64(j, &i);
        if (rc == PL_ERR_RANGE && j->valuestring) {
            jstr *big = jstr_new(j->valuestring, strlen(j->valuestring));
            if (!big) return PL_ERR_NOMEM;
            big->h.type = JV_BIGINT;
            *out = jv_obj(big);
            return 0;
        }
        *out = rc == 0 ? jv_int(i) : jv_float(j->valuedouble);
        return 0;
    }
    if (cJSON_IsString(j)) {
        jstr *s = str_from_cjson(j->valuestring);
        if (!s) return PL_ERR_NOMEM;
        *out = jv_obj(s);
        return 0;
    }
    if (cJSON_IsArray(j)) {
        jlist *l = jlist_new(0);
        if (!l) return PL_ERR_NOMEM;
        for (const cJSON *c = j->child; c; c = c->next) {
            jv e;
            int rc = from_cjson(c, depth + 1, &e);
            if (!rc) rc = jlist_push(l, e);
            if (rc) { jv_decref(jv_obj(l)); return rc; }
        }
        *out = jv_obj(l);
        return 0;
    }
    if (cJSON_IsObject(j)) {
        jdict *d = jdict_new(JV_DICT);
        if (!d) return PL_ERR_NOMEM;
        for (const cJSON *c = j->child; c; c = c->next) {
            jv e;
            jstr *k = str_from_cjson(c->string ? c->string : "");
            int rc = k ? from_cjson(c, depth + 1, &e) : PL_ERR_NOMEM;
            if (rc) { if (k) jv_decref(jv_obj(k)); jv_decref(jv_obj(d)); return rc; }
            rc = jdict_set(d, jv_obj(k), e);
            if (rc) { jv_decref(jv_obj(d)); return rc; }
        }
        *out = jv_obj(d);
        return 0;
    }
    *out = jv_none();   /* cJSON_Raw / invalid: nothing sensible; None */
    return 0;
}

pl_jinja_value *pl_jinja_value_from_cjson(const cJSON *j)
{
    jv v;
    if (!j || from_cjson(j, 0, &v)) return NULL;
    return wrap(v);
}

/* ================================================================ JSON text */

typedef struct jp { const char *s; size_t n, i; char *err; size_t errlen; } jp;

static void jp_ws(jp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int jp_fail(jp *p, const char *what)
{
    return pl_seterr(p->err, p->errlen, PL_ERR_PARSE, "JSON: %s at byte %zu", what, p->i);
}

static int jp_hex4(jp *p, uint32_t *out)
{
    if (p->n - p->i < 4) return -1;
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + (size_t)k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    p->i += 4;
    *out = v;
    return 0;
}

static int jp_string(jp *p, jv *out)
{
    pl_buf b;
    pl_buf_init(&b);
    p->i++;                               /* opening quote */
    for (;;) {
        size_t j = p->i;
        while (j < p->n && p->s[j] != '"' && p->s[j] != '\\' && (unsigned char)p->s[j] >= 0x20) j++;
        pl_buf_append(&b, p->s + p->i, j - p->i);
        p->i = j;
        if (p->i >= p->n) { pl_buf_free(&b); return jp_fail(p, "unterminated string"); }
        char c = p->s[p->i];
        if (c == '"') { p->i++; break; }
        if (c != '\\') { pl_buf_free(&b); return jp_fail(p, "invalid control character in string"); }
        if (++p->i >= p->n) { pl_buf_free(&b); return jp_fail(p, "unterminated string"); }
        c = p->s[p->i++];
        switch (c) {
        case '"': pl_buf_putc(&b, '"'); break;
        case '\\': pl_buf_putc(&b, '\\'); break;
        case '/': pl_buf_putc(&b, '/'); break;
        case 'b': pl_buf_putc(&b, '\b'); break;
        case 'f': pl_buf_putc(&b, '\f'); break;
        case 'n': pl_buf_putc(&b, '\n'); break;
        case 'r': pl_buf_putc(&b, '\r'); break;
        case 't': pl_buf_putc(&b, '\t'); break;
        case 'u': {
            uint32_t cp, lo;
            if (jp_hex4(p, &cp)) { pl_buf_free(&b); return jp_fail(p, "invalid \\u escape"); }
            if (cp >= 0xD800 && cp < 0xDC00 && p->n - p->i >= 6 && p->s[p->i] == '\\' &&
                p->s[p->i + 1] == 'u') {
                size_t save = p->i;
                p->i += 2;
                if (!jp_hex4(p, &lo) && lo >= 0xDC00 && lo < 0xE000)
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else
                    p->i = save;
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;   /* lone surrogate */
            char tmp[4];
            pl_buf_append(&b, tmp, pl_utf8_encode(cp, tmp));
            break;
        }
        default:
            pl_buf_free(&b);
            return jp_fail(p, "invalid escape");
        }
    }
    if (!pl_buf_ok(&b)) { pl_buf_free(&b); return PL_ERR_NOMEM; }
    jstr *s = jstr_new(b.data ? b.data : "", b.len);
    pl_buf_free(&b);
    if (!s) return PL_ERR_NOMEM;
    *out = jv_obj(s);
    return 0;
}

static int jp_number(jp *p, jv *out)
{
    size_t st = p->i;
    int isfloat = 0;
    if (p->s[p->i] == '-') p->i++;
    if (p->i < p->n && p->s[p->i] == '0') p->i++;
    else if (p->i < p->n && p->s[p->i] >= '1' && p->s[p->i] <= '9')
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    else return jp_fail(p, "invalid number");
    if (p->i < p->n && p->s[p->i] == '.' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9') {
        isfloat = 1;
        p->i++;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        size_t save = p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
            isfloat = 1;
            while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        } else {
            p->i = save;
        }
    }
    char tmp[64];
    size_t len = p->i - st;
    char *num = len < sizeof tmp ? tmp : malloc(len + 1);
    if (!num) return PL_ERR_NOMEM;
    memcpy(num, p->s + st, len);
    num[len] = 0;
    if (!isfloat) {
        errno = 0;
        char *end;
        long long v = strtoll(num, &end, 10);
        if (errno == 0) { *out = jv_int(v); if (num != tmp) free(num); return 0; }
        /* beyond int64: Python keeps a big int; we degrade to float */
    }
    *out = jv_float(strtod(num, NULL));
    if (num != tmp) free(num);
    return 0;
}

static int jp_value(jp *p, int depth, jv *out);

static int jp_container(jp *p, int depth, jv *out)
{
    int obj = p->s[p->i] == '{';
    char close = obj ? '}' : ']';
    p->i++;
    jlist *l = obj ? NULL : jlist_new(0);
    jdict *d = obj ? jdict_new(JV_DICT) : NULL;
    if (!l && !d) return PL_ERR_NOMEM;
    jv self = obj ? jv_obj(d) : jv_obj(l);
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == close) { p->i++; *out = self; return 0; }
    for (;;) {
        int rc;
        jv key = jv_none(), val;
        jp_ws(p);
        if (obj) {
            if (p->i >= p->n || p->s[p->i] != '"') { jv_decref(self); return jp_fail(p, "expected a key"); }
            if ((rc = jp_string(p, &key))) { jv_decref(self); return rc; }
            jp_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') { jv_decref(key); jv_decref(self); return jp_fail(p, "expected ':'"); }
            p->i++;
        }
        if ((rc = jp_value(p, depth + 1, &val))) { jv_decref(key); jv_decref(self); return rc; }
        rc = obj ? jdict_set(d, key, val) : jlist_push(l, val);
        if (rc) { jv_decref(self); return rc; }
        jp_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
        if (p->i < p->n && p->s[p->i] == close) { p->i++; break; }
        jv_decref(self);
        return jp_fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    *out = self;
    return 0;
}

static int jp_word(jp *p, const char *w)
{
    size_t n = strlen(w);
    if (p->n - p->i >= n && !memcmp(p->s + p->i, w, n)) { p->i += n; return 1; }
    return 0;
}

static int jp_value(jp *p, int depth, jv *out)
{
    if (depth > 1000) return jp_fail(p, "nesting too deep");
    jp_ws(p);
    if (p->i >= p->n) return jp_fail(p, "expected a value");
    char c = p->s[p->i];
    if (c == '{' || c == '[') return jp_container(p, depth, out);
    if (c == '"') return jp_string(p, out);
    if (c == '-' || (c >= '0' && c <= '9')) {
        if (jp_word(p, "-Infinity")) { *out = jv_float(-INFINITY); return 0; }
        return jp_number(p, out);
    }
    if (jp_word(p, "true")) { *out = jv_bool(1); return 0; }
    if (jp_word(p, "false")) { *out = jv_bool(0); return 0; }
    if (jp_word(p, "null")) { *out = jv_none(); return 0; }
    if (jp_word(p, "NaN")) { *out = jv_float(NAN); return 0; }
    if (jp_word(p, "Infinity")) { *out = jv_float(INFINITY); return 0; }
    return jp_fail(p, "expected a value");
}

int pl_jinja_value_from_json(pl_jinja_value **out, const char *text, size_t len, char *err, size_t errlen)
{
    *out = NULL;
    jp p = { text, len, 0, err, errlen };
    jv v;
    int rc = jp_value(&p, 0, &v);
    if (rc) return rc;
    jp_ws(&p);
    if (p.i != p.n) { jv_decref(v); return jp_fail(&p, "extra data"); }
    *out = wrap(v);
    return *out ? 0 : PL_ERR_NOMEM;
}
