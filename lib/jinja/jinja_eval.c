/* jinja_eval.c — the tree-walking evaluator: scopes, statements,
 * expressions, macros, loops, limits.
 *
 * Scopes follow Jinja2's compiled code, observed behaviour included:
 *   - the template top level is one frame over the render context;
 *   - each iteration of a for loop gets a fresh frame (a `set` inside the
 *     body is gone at the next iteration and after the loop);
 *   - `if` opens no scope;
 *   - a macro body runs in a new frame whose parent is the frame the macro
 *     was defined in (a closure, read at call time), so macros see top-level
 *     names but not their caller's locals;
 *   - namespace objects are the only way to carry values out of a loop.
 * Frames and namespaces are the only mutable objects; every one created in a
 * render is linked in R->tracked and cleared at the end, which breaks the
 * reference cycles a macro stored in its own frame creates. */
#include "jinja_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jrender {
    const pl_jinja_template *t;
    const pl_jinja_limits *lim;
    const jdict *ctx;
    jv *cache;              /* per symbol: the context's value (borrowed) */
    uint8_t *cstate;        /* per symbol: 0 not looked up, 1 in context, 2 absent */
    jtrack tracked;
    int nest;               /* current eval/exec recursion depth */
    const pl_buf *out;      /* the caller's buffer, which may hold earlier bytes */
    size_t out_base;
    jframe *spare;          /* released frames for reuse, linked by parent */
    int depth;
    uint64_t iters, work;
    unsigned ticks;         /* evaluations since the clock was last read */
    int64_t t_end;          /* monotonic ms at which the render is cut (0: never) */
    char *err;
    size_t errlen;
};

enum { EXEC_BREAK = 1, EXEC_CONTINUE = 2 };

/* Functions with big locals (argument arrays) stay out of eval()'s frame:
 * eval recurses once per expression level, so its frame must stay small. */
#define NOINLINE __attribute__((noinline))
/* eval() + exec_stmt() nesting, all macro levels together: bounds the C
 * stack (about 2 MB at this limit) whatever the template's shape. */
#define MAX_NEST 3000
#define MAX_ARGS 32

jv pl_jinja_value_jv(const pl_jinja_value *v);

/* ================================================================ errors */

int jr_error(jrender *R, int code, int line, const char *fmt, ...)
{
    if (R->err && R->errlen) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(R->err, R->errlen, fmt, ap);
        va_end(ap);
        if (line > 0 && n >= 0 && (size_t)n < R->errlen)
            snprintf(R->err + n, R->errlen - (size_t)n, " (line %d)", line);
    }
    return code;
}

int jr_raise_user(jrender *R, const char *msg, size_t len)
{
    if (R->err && R->errlen) {
        size_t n = len < R->errlen - 1 ? len : R->errlen - 1;
        memcpy(R->err, msg, n);
        R->err[n] = 0;
    }
    return PL_ERR_TEMPLATE;
}

static const char *type_repr(uint32_t t)
{
    switch (t) {
    case JV_NONE: return "None";
    case JV_BOOL: return "bool object";
    case JV_INT: case JV_BIGINT: return "int object";
    case JV_FLOAT: return "float object";
    case JV_STR: return "str object";
    case JV_LIST: return "list object";
    case JV_DICT: return "dict object";
    case JV_NS: return "Namespace object";
    case JV_LOOP: return "LoopContext object";
    default: return "object";
    }
}

int jr_undef_error(jrender *R, jv u, int line)
{
    const char *name = u.u.name ? u.u.name : "?";
    if (!u.u.name && (u.ukind == U_ATTR || u.ukind == U_UNSAFE)) u.ukind = U_ITEM;
    switch (u.ukind) {
    case U_ATTR:
        return jr_error(R, PL_ERR_INVALID, line, "UndefinedError: '%s' has no attribute '%s'", type_repr(u.aux), name);
    case U_ITEM:
        return jr_error(R, PL_ERR_INVALID, line, "UndefinedError: %s has no such element", type_repr(u.aux));
    case U_UNSAFE:
        return jr_error(R, PL_ERR_INVALID, line, "SecurityError: access to attribute '%s' of '%s' object is unsafe.",
                        name, type_repr(u.aux));
    case U_HINT:
        return jr_error(R, PL_ERR_INVALID, line, "UndefinedError: %s", name);
    default:
        return jr_error(R, PL_ERR_INVALID, line, "UndefinedError: '%s' is undefined", name);
    }
}

static jv undef_attr(const char *name, jv obj, int kind)
{
    jv u = {0};
    u.t = JV_UNDEF;
    u.ukind = (uint8_t)kind;
    u.aux = obj.t;
    u.u.name = name;
    return u;
}

/* ================================================================ services */

const pl_jinja_limits *jr_limits(jrender *R) { return R->lim; }
int64_t jr_fixed_time(jrender *R) { return R->lim->fixed_time; }

int jr_work(jrender *R, size_t bytes)
{
    R->work += bytes;
    if (R->work > R->lim->max_work)
        return jr_error(R, PL_ERR_RANGE, 0, "LimitError: render work exceeds %llu bytes",
                        (unsigned long long)R->lim->max_work);
    return 0;
}

int jr_check_size(jrender *R, size_t len)
{
    if (len > R->lim->max_output)
        return jr_error(R, PL_ERR_RANGE, 0, "LimitError: string of %zu bytes exceeds the %zu-byte limit",
                        len, R->lim->max_output);
    return jr_work(R, len);
}

int jr_tick(jrender *R, int line)
{
    R->ticks = 0;
    if (R->lim->interrupt && R->lim->interrupt())
        return jr_error(R, PL_ERR_RANGE, line, "LimitError: render interrupted (the stage is stopping)");
    if (R->t_end && pl_now_ms() > R->t_end)
        return jr_error(R, PL_ERR_RANGE, line, "LimitError: render took longer than %lld ms",
                        (long long)R->lim->max_time_ms);
    return 0;
}

/* Evaluations between two looks at the clock: cheap steps only; builtins
 * and loop iterations, which may be slow one by one, look every time. */
#define TICKS_PER_CHECK 256

void jr_buf_init(jrender *R, pl_buf *b)
{
    pl_buf_init(b);
    b->max = R->lim->max_output;
}

/* Append str(v)/repr(v) to b, which grows by max_output bytes at most here
 * (b's own max, when lower, holds too): the writer stops at the cap. */
static int write_capped(jrender *R, pl_buf *b, jv v, int line, int repr)
{
    size_t mark = b->len, max = b->max, cap = mark + R->lim->max_output;
    int oom = b->oom, over = b->over;
    if (!max || cap < max) b->max = cap;
    int rc = repr ? jv_write_repr(b, v, 0) : jv_write_str(b, v);
    int hit = b->over && !over;
    b->max = max;
    if (hit || rc) {
        b->over = over;
        b->oom = oom;
        b->len = mark;
        if (b->data) b->data[mark] = 0;
    }
    if (hit) return jr_error(R, PL_ERR_RANGE, line, "LimitError: value printed exceeds the %zu-byte limit", R->lim->max_output);
    if (rc) return jr_error(R, PL_ERR_RANGE, line, "RecursionError: value nested too deeply to print");
    return jr_tick(R, line);
}

int jr_write_str(jrender *R, pl_buf *b, jv v, int line) { return write_capped(R, b, v, line, 0); }
int jr_write_repr(jrender *R, pl_buf *b, jv v, int line) { return write_capped(R, b, v, line, 1); }

int jr_new_str(jrender *R, const char *s, size_t len, jv *out)
{
    int rc = jr_check_size(R, len);
    if (rc) return rc;
    jstr *js = jstr_new(s, len);
    if (!js) return jr_error(R, PL_ERR_NOMEM, 0, "out of memory");
    *out = jv_obj(js);
    return 0;
}

int jr_buf_to_str(jrender *R, pl_buf *b, jv *out)
{
    if (b->over) {
        pl_buf_free(b);
        return jr_error(R, PL_ERR_RANGE, 0, "LimitError: string exceeds the %zu-byte limit", R->lim->max_output);
    }
    if (!pl_buf_ok(b)) { pl_buf_free(b); return jr_error(R, PL_ERR_NOMEM, 0, "out of memory"); }
    int rc = jr_new_str(R, b->data ? b->data : "", b->len, out);
    pl_buf_free(b);
    return rc;
}

int jr_to_str(jrender *R, jv v, jv *out)
{
    if (v.t == JV_STR) { *out = jv_ref(v); return 0; }
    pl_buf b;
    jr_buf_init(R, &b);
    int rc = jr_write_str(R, &b, v, 0);
    if (rc) { pl_buf_free(&b); return rc; }
    return jr_buf_to_str(R, &b, out);
}

static void track(jrender *R, jtrack *t, jobj *owner)
{
    t->owner = owner;
    t->prev = &R->tracked;
    t->next = R->tracked.next;
    R->tracked.next->prev = t;
    R->tracked.next = t;
}

jframe *jr_frame_new(jrender *R, jframe *parent)
{
    jframe *f = R->spare;
    if (f) {
        R->spare = f->parent;
        memset(f, 0, sizeof *f);
    } else if (!(f = calloc(1, sizeof *f))) {
        return NULL;
    }
    f->h.rc = 1;
    f->h.type = JV_FRAME;
    f->vars = f->inl;
    f->cap = (uint32_t)PL_ARRAY_LEN(f->inl);
    f->parent = parent;
    if (parent) jv_incref(jv_obj(parent));
    track(R, &f->track, &f->h);
    return f;
}

jdict *jr_new_ns(jrender *R)
{
    jdict *d = jdict_new(JV_NS);
    if (d) track(R, &d->track, &d->h);
    return d;
}

/* Drops the caller's reference to f; a frame nobody else holds (no macro
 * closure, no loop object) goes to the spare list instead of free(). */
static void frame_drop(jrender *R, jframe *f)
{
    if (f->h.rc != 1) { jv_decref(jv_obj(f)); return; }
    uint32_t n = f->n;
    f->n = 0;
    for (uint32_t i = 0; i < n; i++) jv_decref(f->vars[i].v);
    if (f->vars != f->inl) free(f->vars);
    if (f->track.prev) {
        f->track.prev->next = f->track.next;
        f->track.next->prev = f->track.prev;
    }
    if (f->parent) jv_decref(jv_obj(f->parent));
    f->parent = R->spare;
    R->spare = f;
}

/* Consumes v. */
static int frame_set(jframe *f, uint32_t sym, jv v)
{
    for (uint32_t i = 0; i < f->n; i++)
        if (f->vars[i].sym == sym) {
            jv old = f->vars[i].v;
            f->vars[i].v = v;
            jv_decref(old);
            return 0;
        }
    if (f->n == f->cap) {
        uint32_t cap = f->cap * 2;
        jfvar *nv = f->vars == f->inl ? malloc(cap * sizeof *nv) : realloc(f->vars, cap * sizeof *nv);
        if (!nv) { jv_decref(v); return PL_ERR_NOMEM; }
        if (f->vars == f->inl) memcpy(nv, f->inl, sizeof f->inl);
        f->vars = nv;
        f->cap = cap;
    }
    f->vars[f->n].sym = sym;
    f->vars[f->n].v = v;
    f->n++;
    return 0;
}

/* Names the frame starts with as "missing" (see jinja_scope.c). */
static int bind_missing(jrender *R, jframe *f, const uint32_t *syms, int n, int line)
{
    for (int i = 0; i < n; i++)
        if (frame_set(f, syms[i], jv_undef_name(R->t->syms.names[syms[i]])))
            return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
    return 0;
}

/* Borrowed value of a name: frames, then the context, then globals. */
static jv lookup(jrender *R, jframe *f, uint32_t sym)
{
    for (; f; f = f->parent)
        for (uint32_t i = 0; i < f->n; i++)
            if (f->vars[i].sym == sym) return f->vars[i].v;
    if (!R->cstate[sym]) {
        const jv *p = R->ctx ? jdict_get_str(R->ctx, R->t->syms.names[sym], R->t->syms.lens[sym]) : NULL;
        R->cstate[sym] = p ? 1 : 2;
        if (p) R->cache[sym] = *p;
    }
    if (R->cstate[sym] == 1) return R->cache[sym];
    int g = R->t->syms.builtin[sym];
    if (g >= 0) return builtin_global_value(g);
    return jv_undef_name(R->t->syms.names[sym]);
}

/* ================================================================ iteration */

/* list(v) as a new reference: the list itself, dict keys, string chars. */
int jr_iter_list(jrender *R, jv v, int line, jlist **out)
{
    switch (v.t) {
    case JV_LIST:
        jv_incref(v);
        *out = JLIST(v);
        return 0;
    case JV_UNDEF:
        if (v.ukind == U_UNSAFE) return jr_undef_error(R, v, line);
        *out = jlist_new(0);
        break;
    case JV_DICT: {
        jdict *d = JDICT(v);
        *out = jlist_new(d->len);
        if (*out) for (size_t i = 0; i < d->len; i++) (*out)->v[(*out)->len++] = jv_ref(d->e[i].key);
        break;
    }
    case JV_STR: {
        jstr *s = JSTR(v);
        int rc = jr_work(R, s->len * 24);
        if (rc) return rc;
        *out = jlist_new(s->len);
        if (!*out) break;
        size_t i = 0;
        while (i < s->len) {
            size_t j = utf8_advance(s->data, s->len, i, 1);
            jstr *c = jstr_new(s->data + i, j - i);
            if (!c) { jv_decref(jv_obj(*out)); *out = NULL; break; }
            (*out)->v[(*out)->len++] = jv_obj(c);
            i = j;
        }
        break;
    }
    default:
        return jr_error(R, PL_ERR_INVALID, line, "TypeError: '%s' object is not iterable", jv_typename(v));
    }
    if (!*out) return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
    return 0;
}

/* ================================================================ forward */

static int eval(jrender *R, const jnode *n, jframe *f, jv *out);
static int exec_body(jrender *R, jnode *const *kids, int n, jframe *f, pl_buf *out);
static int call_value(jrender *R, jv callee, jcall *c, pl_buf *into, jv *out);
static int apply_filters(jrender *R, const jnode *chain, jframe *f, jv input, jv *out);

static int check_output(jrender *R, pl_buf *out, int line)
{
    if (!pl_buf_ok(out)) return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
    if (out->len - (out == R->out ? R->out_base : 0) > R->lim->max_output)
        return jr_error(R, PL_ERR_RANGE, line, "LimitError: output exceeds %zu bytes", R->lim->max_output);
    return 0;
}

/* ================================================================ calls */

/* Evaluated arguments of a call site; owns its values. */
typedef struct argv_ {
    jv pos[MAX_ARGS];
    jkw kw[MAX_ARGS];
    jv keep[2];         /* **kwargs dicts whose keys name kw[] */
    int nkeep;
    jcall c;
} argv_;

static void args_release(argv_ *a)
{
    for (int i = 0; i < a->c.npos; i++) jv_decref(a->pos[i]);
    for (int i = 0; i < a->c.nkw; i++) jv_decref(a->kw[i].v);
    for (int i = 0; i < a->nkeep; i++) jv_decref(a->keep[i]);
    a->c.npos = a->c.nkw = a->nkeep = 0;
}

static int args_eval(jrender *R, const jargs *ja, jframe *f, int line, argv_ *a)
{
    a->c.pos = a->pos;
    a->c.kw = a->kw;
    a->c.npos = a->c.nkw = 0;
    a->nkeep = 0;
    a->c.line = line;
    int rc;
    if (ja->npos > MAX_ARGS || ja->nkw > MAX_ARGS)
        return jr_error(R, PL_ERR_INVALID, line, "TypeError: too many arguments");
    for (int i = 0; i < ja->npos; i++) {
        if ((rc = eval(R, ja->pos[i], f, &a->pos[a->c.npos]))) return rc;
        a->c.npos++;
    }
    if (ja->dyn_args) {
        jv d;
        if ((rc = eval(R, ja->dyn_args, f, &d))) return rc;
        jlist *l;
        rc = jr_iter_list(R, d, line, &l);
        jv_decref(d);
        if (rc) return rc;
        for (size_t i = 0; i < l->len; i++) {
            if (a->c.npos >= MAX_ARGS) { jv_decref(jv_obj(l)); return jr_error(R, PL_ERR_INVALID, line, "TypeError: too many arguments"); }
            a->pos[a->c.npos++] = jv_ref(l->v[i]);
        }
        jv_decref(jv_obj(l));
    }
    for (int i = 0; i < ja->nkw; i++) {
        uint32_t s = ja->kwsym[i];
        a->kw[a->c.nkw].name = R->t->syms.names[s];
        a->kw[a->c.nkw].len = R->t->syms.lens[s];
        if ((rc = eval(R, ja->kwval[i], f, &a->kw[a->c.nkw].v))) return rc;
        a->c.nkw++;
    }
    if (ja->dyn_kwargs) {
        jv d;
        if ((rc = eval(R, ja->dyn_kwargs, f, &d))) return rc;
        if (d.t != JV_DICT) {
            jv_decref(d);
            return jr_error(R, PL_ERR_INVALID, line, "TypeError: argument after ** must be a mapping");
        }
        /* the keyword names are borrowed from d's keys: keep d alive */
        if (a->nkeep >= (int)PL_ARRAY_LEN(a->keep)) { jv_decref(d); return jr_error(R, PL_ERR_INVALID, line, "TypeError: too many ** arguments"); }
        a->keep[a->nkeep++] = d;
        jdict *dd = JDICT(d);
        for (size_t i = 0; i < dd->len; i++) {
            if (dd->e[i].key.t != JV_STR) return jr_error(R, PL_ERR_INVALID, line, "TypeError: keywords must be strings");
            if (a->c.nkw >= MAX_ARGS) return jr_error(R, PL_ERR_INVALID, line, "TypeError: too many arguments");
            a->kw[a->c.nkw].name = JSTR(dd->e[i].key)->data;
            a->kw[a->c.nkw].len = JSTR(dd->e[i].key)->len;
            a->kw[a->c.nkw].v = jv_ref(dd->e[i].val);
            a->c.nkw++;
        }
    }
    return 0;
}

static int macro_arg_error(jrender *R, const jnode *def, int line, const char *fmt, const char *arg)
{
    char msg[200];
    snprintf(msg, sizeof msg, fmt, arg);
    const char *name = def->kind == N_MACRO ? JSTR(def->val)->data : "caller";
    return jr_error(R, PL_ERR_INVALID, line, "TypeError: macro '%s' %s", name, msg);
}

/* Runs a macro with evaluated arguments; output appended to into. */
NOINLINE static int call_macro(jrender *R, jmacro *m, jcall *c, pl_buf *into)
{
    const jnode *def = m->def;
    const jsyms *y = &R->t->syms;
    if (R->depth >= R->lim->max_depth)
        return jr_error(R, PL_ERR_RANGE, c->line, "LimitError: macro calls nested deeper than %d", R->lim->max_depth);
    jframe *f = jr_frame_new(R, m->closure);
    if (!f) return jr_error(R, PL_ERR_NOMEM, c->line, "out of memory");
    int rc = bind_missing(R, f, def->undef, def->nundef, c->line), np = def->nparams;
    uint8_t bound[64] = {0};
    if (rc) goto done;
    for (int i = 0; i < c->npos && i < np; i++) {
        if ((rc = frame_set(f, def->params[i], jv_ref(c->pos[i])))) goto done;
        bound[i] = 1;
    }
    if (c->npos > np && !(def->flags & MF_VARARGS)) {
        char num[24];
        snprintf(num, sizeof num, "%d", np);
        rc = macro_arg_error(R, def, c->line, "takes not more than %s argument(s)", num);
        goto done;
    }
    jdict *kwargs = NULL;
    jv caller = jv_undef_name("caller");
    for (int k = 0; k < c->nkw; k++) {
        int i;
        for (i = 0; i < np; i++)
            if (y->lens[def->params[i]] == c->kw[k].len && !memcmp(y->names[def->params[i]], c->kw[k].name, c->kw[k].len)) break;
        if (i < np) {
            if (bound[i]) { rc = macro_arg_error(R, def, c->line, "got multiple values for argument '%s'", y->names[def->params[i]]); goto done_kw; }
            if ((rc = frame_set(f, def->params[i], jv_ref(c->kw[k].v)))) goto done_kw;
            bound[i] = 1;
        } else if (c->kw[k].len == 6 && !memcmp(c->kw[k].name, "caller", 6) && (def->flags & MF_CALLER)) {
            caller = c->kw[k].v;
        } else if (def->flags & MF_KWARGS) {
            if (!kwargs && !(kwargs = jdict_new(JV_DICT))) { rc = jr_error(R, PL_ERR_NOMEM, c->line, "out of memory"); goto done_kw; }
            jv key;
            if ((rc = jr_new_str(R, c->kw[k].name, c->kw[k].len, &key))) goto done_kw;
            if ((rc = jdict_set(kwargs, key, jv_ref(c->kw[k].v)))) goto done_kw;
        } else {
            rc = macro_arg_error(R, def, c->line, "takes no keyword argument '%s'", c->kw[k].name);
            goto done_kw;
        }
    }
    /* defaults run in the macro frame, seeing the parameters before them */
    for (int i = 0; i < np; i++) {
        if (bound[i]) continue;
        int di = i - (np - def->ndefaults);
        jv v = jv_undef_name(y->names[def->params[i]]);
        if (di >= 0 && (rc = eval(R, def->defaults[di], f, &v))) goto done_kw;
        if ((rc = frame_set(f, def->params[i], v))) goto done_kw;
    }
    if (def->flags & MF_VARARGS) {
        jlist *va = jlist_new(0);
        if (!va) { rc = PL_ERR_NOMEM; goto done_kw; }
        va->h.flags |= LIST_TUPLE;
        for (int i = np; i < c->npos; i++) jlist_push(va, jv_ref(c->pos[i]));
        if ((rc = frame_set(f, SYM_VARARGS, jv_obj(va)))) goto done_kw;
    }
    if (def->flags & MF_KWARGS) {
        if (!kwargs && !(kwargs = jdict_new(JV_DICT))) { rc = PL_ERR_NOMEM; goto done_kw; }
        rc = frame_set(f, SYM_KWARGS, jv_obj(kwargs));
        kwargs = NULL;
        if (rc) goto done_kw;
    }
    if ((def->flags & MF_CALLER) && (rc = frame_set(f, SYM_CALLER, jv_ref(caller)))) goto done_kw;
    R->depth++;
    rc = exec_body(R, def->kids, def->nkids, f, into);
    R->depth--;
    if (rc > 0) rc = 0;     /* break/continue cannot cross a macro (parser) */
done_kw:
    if (kwargs) jv_decref(jv_obj(kwargs));
done:
    if (rc == PL_ERR_NOMEM) rc = jr_error(R, PL_ERR_NOMEM, c->line, "out of memory");
    frame_drop(R, f);
    return rc;
}

static int run_for(jrender *R, const jnode *n, jframe *f, jv iterable, int depth0, pl_buf *out);

/* Call any callable. When into is given and the callee renders text (macro,
 * recursive loop), the text goes straight there and *out is not set. */
static int call_value(jrender *R, jv callee, jcall *c, pl_buf *into, jv *out)
{
    switch (callee.t) {
    case JV_MACRO: {
        if (into) return call_macro(R, (jmacro *)callee.u.o, c, into);
        pl_buf b;
        pl_buf_init(&b);
        int rc = call_macro(R, (jmacro *)callee.u.o, c, &b);
        if (rc) { pl_buf_free(&b); return rc; }
        return jr_buf_to_str(R, &b, out);
    }
    case JV_FUNC: {
        jfunc *fn = (jfunc *)callee.u.o;
        int rc = builtin_call(R, fn->id, fn->self, c, out);
        if (!rc && into) {
            rc = jr_write_str(R, into, *out, c->line);
            jv_decref(*out);
        }
        return rc;
    }
    case JV_LOOP: {
        jloop *l = (jloop *)callee.u.o;
        if (!l->fornode || !l->fornode->op)
            return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: Tried to call non recursive loop.  Maybe you forgot the 'recursive' modifier.");
        if (c->npos != 1 || c->nkw)
            return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: loop() takes exactly one argument");
        if (R->depth >= R->lim->max_depth)
            return jr_error(R, PL_ERR_RANGE, c->line, "LimitError: recursive loops nested deeper than %d", R->lim->max_depth);
        pl_buf b;
        pl_buf_init(&b);
        R->depth++;
        int rc = run_for(R, l->fornode, l->outer, c->pos[0], l->depth0 + 1, into ? into : &b);
        R->depth--;
        if (rc || into) { pl_buf_free(&b); return rc; }
        return jr_buf_to_str(R, &b, out);
    }
    case JV_UNDEF:
        return jr_undef_error(R, callee, c->line);
    default:
        return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: '%s' object is not callable", jv_typename(callee));
    }
}

int jr_call_value(jrender *R, jv callee, jcall *c, jv *out)
{
    return call_value(R, callee, c, NULL, out);
}

/* ================================================================ attributes and items */

static int method_slot(int t)
{
    switch (t) {
    case JV_STR: return 0;
    case JV_DICT: return 1;
    case JV_LIST: return 2;
    case JV_LOOP: return 3;
    default: return -1;
    }
}

static int bound_method(jrender *R, int id, jv obj, int line, jv *out)
{
    jfunc *fn = jfunc_new(id, jv_ref(obj));
    if (!fn) return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
    *out = jv_obj(fn);
    return 0;
}

/* obj.name, Jinja's sandboxed getattr: attribute (method) first, then item. */
static int getattr_impl(jrender *R, jv obj, const char *name, size_t len, jv namev, int mid, int unsafe, int line, jv *out)
{
    switch (obj.t) {
    case JV_UNDEF:
        return jr_undef_error(R, obj, line);
    case JV_DICT: case JV_STR: case JV_LIST:
        if (unsafe) { *out = undef_attr(name, obj, U_UNSAFE); return 0; }
        if (mid >= 0) return bound_method(R, mid, obj, line, out);
        if (obj.t == JV_DICT) {
            jv *v = namev.t == JV_STR ? jdict_get(JDICT(obj), namev) : jdict_get_str(JDICT(obj), name, len);
            if (v) { *out = jv_ref(*v); return 0; }
        }
        break;
    case JV_LOOP:
        if (mid >= 0) return builtin_loop_attr(R, (jloop *)obj.u.o, mid, out);
        break;
    case JV_NS: {
        jv *v = namev.t == JV_STR ? jdict_get(JDICT(obj), namev) : jdict_get_str(JDICT(obj), name, len);
        if (v) { *out = jv_ref(*v); return 0; }
        break;
    }
    default:
        break;
    }
    *out = undef_attr(name, obj, U_ATTR);
    return 0;
}

/* getattr for builtins (attr filter, map(attribute=...)): the name is a
 * runtime string, so an undefined result does not keep it. */
int jr_getattr(jrender *R, jv obj, const char *name, size_t len, int line, jv *out)
{
    int slot = method_slot(obj.t), unsafe = 0, mid = -1;
    if (slot >= 0) mid = builtin_method_id(obj.t, name, len, &unsafe);
    int rc = getattr_impl(R, obj, name, len, jv_none(), mid, unsafe, line, out);
    if (!rc && out->t == JV_UNDEF) out->u.name = NULL;
    return rc;
}

/* Python index of a sequence of n items; -1 when out of range. */
static int64_t norm_index(int64_t i, size_t n)
{
    if (i < 0) i += (int64_t)n;
    return (i < 0 || (uint64_t)i >= n) ? -1 : i;
}

int jr_getitem(jrender *R, jv obj, jv key, int line, jv *out)
{
    switch (obj.t) {
    case JV_UNDEF:
        return jr_undef_error(R, obj, line);
    case JV_DICT: {
        if (key.t == JV_LIST && !(JLIST(key)->h.flags & LIST_TUPLE)) break;
        if (key.t == JV_DICT) break;
        jv *v = jdict_get(JDICT(obj), key);
        if (v) { *out = jv_ref(*v); return 0; }
        break;
    }
    case JV_LIST: {
        if ((key.t != JV_INT && key.t != JV_BOOL) || (JLIST(obj)->h.flags & LIST_VIEWS)) break;
        int64_t i = norm_index(key.u.i, JLIST(obj)->len);
        if (i < 0) break;
        *out = jv_ref(JLIST(obj)->v[i]);
        return 0;
    }
    case JV_STR: {
        if (key.t != JV_INT && key.t != JV_BOOL) break;
        jstr *s = JSTR(obj);
        int ascii = jstr_is_ascii(s);
        int64_t i = norm_index(key.u.i, ascii ? s->len : utf8_count(s->data, s->len));
        if (i < 0) break;
        size_t b = ascii ? (size_t)i : utf8_advance(s->data, s->len, 0, (size_t)i);
        size_t e = ascii ? b + 1 : utf8_advance(s->data, s->len, b, 1);
        return jr_new_str(R, s->data + b, e - b, out);
    }
    default:
        break;
    }
    /* obj[key] failed: a string key falls back to the attribute */
    if (key.t == JV_STR && obj.t != JV_NONE) return jr_getattr(R, obj, JSTR(key)->data, JSTR(key)->len, line, out);
    *out = undef_attr(NULL, obj, U_ITEM);
    return 0;
}

/* Python slice bounds: start/stop/step after PySlice_AdjustIndices. */
static int slice_bounds(jrender *R, const jnode *n, jframe *f, size_t len, int64_t *st, int64_t *sp, int64_t *step,
                        size_t *count, int *bad)
{
    jv v[3];
    const jnode *parts[3] = { n->b, n->c, n->d };
    int64_t x[3] = {0, 0, 1};
    int given[3] = {0, 0, 0};
    *bad = 0;
    for (int i = 0; i < 3; i++) {
        if (!parts[i]) continue;
        int rc = eval(R, parts[i], f, &v[i]);
        if (rc) return rc;
        if (v[i].t == JV_INT || v[i].t == JV_BOOL) { x[i] = v[i].u.i; given[i] = 1; }
        else if (v[i].t != JV_NONE) *bad = 1;
        jv_decref(v[i]);
    }
    if (*bad) return jr_error(R, PL_ERR_INVALID, n->line, "TypeError: slice indices must be integers or None or have an __index__ method");
    if (x[2] == 0) return jr_error(R, PL_ERR_INVALID, n->line, "ValueError: slice step cannot be zero");
    int64_t L = (int64_t)len, s = x[2];
    int64_t lower = s > 0 ? 0 : -1, upper = s > 0 ? L : L - 1;
    int64_t a = given[0] ? x[0] : (s < 0 ? upper : lower);
    int64_t b = given[1] ? x[1] : (s < 0 ? lower : upper);
    if (given[0]) { if (a < 0) { a += L; if (a < lower) a = lower; } else if (a > upper) a = upper; }
    if (given[1]) { if (b < 0) { b += L; if (b < lower) b = lower; } else if (b > upper) b = upper; }
    *st = a;
    *sp = b;
    *step = s;
    if (s > 0) *count = a < b ? (size_t)((b - a - 1) / s + 1) : 0;
    else *count = b < a ? (size_t)((a - b - 1) / (-s) + 1) : 0;
    return 0;
}

NOINLINE static int eval_slice(jrender *R, const jnode *n, jframe *f, jv *out)
{
    jv obj;
    int rc = eval(R, n->a, f, &obj);
    if (rc) return rc;
    /* Jinja compiles slices to plain Python subscripts (no sandbox getitem,
     * no undefined fallback): anything but a sequence is a TypeError.
     * (Jinja's optimizer folds subscripts of literal constants through
     * getitem instead; only literal-only expressions like 3[1:] differ.) */
    if (obj.t == JV_UNDEF) { rc = jr_undef_error(R, obj, n->line); return rc; }
    if ((obj.t != JV_LIST && obj.t != JV_STR) || (obj.t == JV_LIST && (JLIST(obj)->h.flags & LIST_VIEWS))) {
        rc = obj.t == JV_DICT ? jr_error(R, PL_ERR_INVALID, n->line, "TypeError: unhashable type: 'slice'")
                              : jr_error(R, PL_ERR_INVALID, n->line, "TypeError: '%s' object is not subscriptable", jv_typename(obj));
        jv_decref(obj);
        return rc;
    }
    size_t len;
    int ascii = 1;
    if (obj.t == JV_LIST) len = JLIST(obj)->len;
    else { ascii = jstr_is_ascii(JSTR(obj)); len = ascii ? JSTR(obj)->len : utf8_count(JSTR(obj)->data, JSTR(obj)->len); }
    int64_t a = 0, b = 0, s = 1;
    size_t cnt = 0;
    int bad = 0;
    if ((rc = slice_bounds(R, n, f, len, &a, &b, &s, &cnt, &bad))) { jv_decref(obj); return rc; }
    if (obj.t == JV_LIST) {
        jlist *src = JLIST(obj);
        if ((rc = jr_work(R, cnt * sizeof(jv)))) { jv_decref(obj); return rc; }
        jlist *l = jlist_new(cnt);
        if (!l) { jv_decref(obj); return jr_error(R, PL_ERR_NOMEM, n->line, "out of memory"); }
        l->h.flags = src->h.flags & LIST_TUPLE;   /* views were refused above */
        for (size_t i = 0; i < cnt; i++) l->v[l->len++] = jv_ref(src->v[a + (int64_t)i * s]);
        jv_decref(obj);
        *out = jv_obj(l);
        return 0;
    }
    jstr *str = JSTR(obj);
    if (s == 1) {
        size_t bs = ascii ? (size_t)a : utf8_advance(str->data, str->len, 0, (size_t)a);
        size_t be = ascii ? bs + cnt : utf8_advance(str->data, str->len, bs, cnt);
        rc = jr_new_str(R, str->data + bs, be - bs, out);
        jv_decref(obj);
        return rc;
    }
    /* general step: index the character starts once */
    size_t *offs = malloc((len + 1) * sizeof *offs);
    if (!offs) { jv_decref(obj); return jr_error(R, PL_ERR_NOMEM, n->line, "out of memory"); }
    for (size_t i = 0, p = 0; i <= len; i++) { offs[i] = p; if (i < len) p = ascii ? p + 1 : utf8_advance(str->data, str->len, p, 1); }
    pl_buf b2;
    pl_buf_init(&b2);
    for (size_t i = 0; i < cnt; i++) {
        size_t k = (size_t)(a + (int64_t)i * s);
        pl_buf_append(&b2, str->data + offs[k], offs[k + 1] - offs[k]);
    }
    free(offs);
    jv_decref(obj);
    return jr_buf_to_str(R, &b2, out);
}

/* ================================================================ arithmetic */

static int is_num(jv v) { return v.t == JV_INT || v.t == JV_BOOL || v.t == JV_FLOAT; }
static double as_f(jv v) { return v.t == JV_FLOAT ? v.u.f : (double)v.u.i; }

static const char *op_sym(int op)
{
    static const char *s[] = { "+", "-", "*", "/", "//", "%", "** or pow()" };
    return s[op];
}

static int type_error_binop(jrender *R, int op, jv a, jv b, int line)
{
    if (a.t == JV_UNDEF) return jr_undef_error(R, a, line);
    if (b.t == JV_UNDEF) return jr_undef_error(R, b, line);
    if (op == OP_ADD && a.t == JV_STR)
        return jr_error(R, PL_ERR_INVALID, line, "TypeError: can only concatenate str (not \"%s\") to str", jv_typename(b));
    if (op == OP_ADD && a.t == JV_LIST && !(JLIST(a)->h.flags & LIST_TUPLE))
        return jr_error(R, PL_ERR_INVALID, line, "TypeError: can only concatenate list (not \"%s\") to list", jv_typename(b));
    return jr_error(R, PL_ERR_INVALID, line, "TypeError: unsupported operand type(s) for %s: '%s' and '%s'",
                    op_sym(op), jv_typename(a), jv_typename(b));
}

static int overflow(jrender *R, int line)
{
    return jr_error(R, PL_ERR_INVALID, line, "OverflowError: integer result does not fit in 64 bits");
}

/* Python's float floor division and modulo (float_divmod). */
static void py_fdivmod(double v, double w, double *div, double *mod)
{
    double m = fmod(v, w);
    double d = (v - m) / w;
    if (m) {
        if ((w < 0) != (m < 0)) { m += w; d -= 1.0; }
    } else {
        m = copysign(0.0, w);
    }
    double fd;
    if (d) {
        fd = floor(d);
        if (d - fd > 0.5) fd += 1.0;
    } else {
        fd = copysign(0.0, v / w);
    }
    *div = fd;
    *mod = m;
}

static int repeat(jrender *R, jv seq, int64_t times, int line, jv *out)
{
    if (times < 0) times = 0;
    if (seq.t == JV_STR) {
        jstr *s = JSTR(seq);
        if (s->len && (uint64_t)times > R->lim->max_output / s->len)
            return jr_error(R, PL_ERR_RANGE, line, "LimitError: string repetition exceeds %zu bytes", R->lim->max_output);
        size_t total = s->len * (size_t)times;
        int rc = jr_check_size(R, total);
        if (rc) return rc;
        jstr *r = jstr_alloc(total);
        if (!r) return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
        for (int64_t i = 0; i < times; i++) memcpy(r->data + (size_t)i * s->len, s->data, s->len);
        *out = jv_obj(r);
        return 0;
    }
    jlist *l = JLIST(seq);
    if (l->len && (uint64_t)times > (R->lim->max_output / 16) / l->len)
        return jr_error(R, PL_ERR_RANGE, line, "LimitError: list repetition too large");
    size_t total = l->len * (size_t)times;
    int rc = jr_work(R, total * sizeof(jv));
    if (rc) return rc;
    jlist *r = jlist_new(total);
    if (!r) return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
    r->h.flags = l->h.flags & LIST_TUPLE;
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < l->len; k++) r->v[r->len++] = jv_ref(l->v[k]);
    *out = jv_obj(r);
    return 0;
}

static int str_format(jrender *R, jv fmt, jv args, int line, jv *out);

int jr_binop(jrender *R, int op, jv a, jv b, int line, jv *out)
{
    if ((a.t == JV_BIGINT && (is_num(b) || b.t == JV_BIGINT)) || (b.t == JV_BIGINT && is_num(a)))
        return overflow(R, line);   /* ints are int64 here (jinja.h) */
    if (is_num(a) && is_num(b)) {
        int ints = a.t != JV_FLOAT && b.t != JV_FLOAT;
        int64_t x = a.u.i, y = b.u.i, r;
        double fx = as_f(a), fy = as_f(b);
        switch (op) {
        case OP_ADD:
            if (!ints) { *out = jv_float(fx + fy); return 0; }
            if (__builtin_add_overflow(x, y, &r)) return overflow(R, line);
            *out = jv_int(r); return 0;
        case OP_SUB:
            if (!ints) { *out = jv_float(fx - fy); return 0; }
            if (__builtin_sub_overflow(x, y, &r)) return overflow(R, line);
            *out = jv_int(r); return 0;
        case OP_MUL:
            if (!ints) { *out = jv_float(fx * fy); return 0; }
            if (__builtin_mul_overflow(x, y, &r)) return overflow(R, line);
            *out = jv_int(r); return 0;
        case OP_DIV:
            if (fy == 0) return jr_error(R, PL_ERR_INVALID, line, "ZeroDivisionError: division by zero");
            *out = jv_float(fx / fy); return 0;
        case OP_FLOORDIV: case OP_MOD:
            if (ints) {
                if (y == 0) return jr_error(R, PL_ERR_INVALID, line, "ZeroDivisionError: integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) return overflow(R, line);
                int64_t q = x / y, m = x % y;
                if (m && ((m < 0) != (y < 0))) { q--; m += y; }
                *out = jv_int(op == OP_FLOORDIV ? q : m);
                return 0;
            } else {
                if (fy == 0) return jr_error(R, PL_ERR_INVALID, line, "ZeroDivisionError: float %s",
                                             op == OP_MOD ? "modulo" : "floor division by zero");
                double d, m;
                py_fdivmod(fx, fy, &d, &m);
                *out = jv_float(op == OP_FLOORDIV ? d : m);
                return 0;
            }
        case OP_POW:
            if (ints && y >= 0) {
                int64_t acc = 1, base = x;
                int64_t e = y;
                while (e) {
                    if (e & 1) { if (__builtin_mul_overflow(acc, base, &acc)) return overflow(R, line); }
                    e >>= 1;
                    if (e && __builtin_mul_overflow(base, base, &base)) return overflow(R, line);
                }
                *out = jv_int(acc);
                return 0;
            }
            if (fx == 0 && fy < 0)
                return jr_error(R, PL_ERR_INVALID, line, "ZeroDivisionError: 0.0 cannot be raised to a negative power");
            if (fx < 0 && fy != floor(fy))
                return jr_error(R, PL_ERR_INVALID, line, "ValueError: complex results are not supported");
            *out = jv_float(pow(fx, fy));
            if (isinf(out->u.f) && isfinite(fx) && isfinite(fy))   /* Python's float pow refuses to overflow */
                return jr_error(R, PL_ERR_INVALID, line, "OverflowError: (34, 'Numerical result out of range')");
            return 0;
        }
    }
    switch (op) {
    case OP_ADD:
        if (a.t == JV_STR && b.t == JV_STR) {
            jstr *x = JSTR(a), *y = JSTR(b);
            if (!y->len) { *out = jv_ref(a); return 0; }
            if (!x->len) { *out = jv_ref(b); return 0; }
            int rc = jr_check_size(R, x->len + y->len);
            if (rc) return rc;
            jstr *r = jstr_alloc(x->len + y->len);
            if (!r) return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
            memcpy(r->data, x->data, x->len);
            memcpy(r->data + x->len, y->data, y->len);
            *out = jv_obj(r);
            return 0;
        }
        if (a.t == JV_LIST && b.t == JV_LIST && !((JLIST(a)->h.flags | JLIST(b)->h.flags) & LIST_VIEWS) &&
            (JLIST(a)->h.flags & LIST_TUPLE) == (JLIST(b)->h.flags & LIST_TUPLE)) {
            jlist *x = JLIST(a), *y = JLIST(b);
            int rc = jr_work(R, (x->len + y->len) * sizeof(jv));
            if (rc) return rc;
            jlist *r = jlist_new(x->len + y->len);
            if (!r) return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
            r->h.flags = x->h.flags & LIST_TUPLE;
            for (size_t i = 0; i < x->len; i++) r->v[r->len++] = jv_ref(x->v[i]);
            for (size_t i = 0; i < y->len; i++) r->v[r->len++] = jv_ref(y->v[i]);
            *out = jv_obj(r);
            return 0;
        }
        break;
    case OP_MUL:
        if ((a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL)) return repeat(R, a, b.u.i, line, out);
        if ((b.t == JV_STR || b.t == JV_LIST) && (a.t == JV_INT || a.t == JV_BOOL)) return repeat(R, b, a.u.i, line, out);
        break;
    case OP_MOD:
        if (a.t == JV_STR) return str_format(R, a, b, line, out);
        break;
    }
    return type_error_binop(R, op, a, b, line);
}

static jv missing_fmt(void) { jv v = {0}; v.t = JV_FRAME; return v; }

/* printf-style "fmt % args" for the common conversions. */
static int str_format(jrender *R, jv fmt, jv args, int line, jv *out)
{
    jstr *f = JSTR(fmt);
    jv one[1] = { args };
    jv *av = one;
    size_t na = 1, ai = 0;
    if (args.t == JV_LIST && (JLIST(args)->h.flags & LIST_TUPLE)) { av = JLIST(args)->v; na = JLIST(args)->len; }
    pl_buf b;
    pl_buf_init(&b);
    for (size_t i = 0; i < f->len; i++) {
        char c = f->data[i];
        if (c != '%') { pl_buf_putc(&b, c); continue; }
        if (++i >= f->len) { pl_buf_free(&b); return jr_error(R, PL_ERR_INVALID, line, "ValueError: incomplete format"); }
        jv named = missing_fmt();
        if (f->data[i] == '(') {            /* %(key)s takes the value from a dict */
            size_t e = i + 1;
            while (e < f->len && f->data[e] != ')') e++;
            if (e >= f->len || args.t != JV_DICT) {
                pl_buf_free(&b);
                return jr_error(R, PL_ERR_INVALID, line, e >= f->len ? "ValueError: incomplete format key"
                                                                     : "TypeError: format requires a mapping");
            }
            jv *hit = jdict_get_str(JDICT(args), f->data + i + 1, e - i - 1);
            if (!hit) {
                pl_buf_free(&b);
                return jr_error(R, PL_ERR_INVALID, line, "KeyError: '%.*s'", (int)(e - i - 1), f->data + i + 1);
            }
            named = *hit;
            i = e + 1;
        }
        char spec[32] = "%";
        size_t sl = 1;
        while (i < f->len && strchr("-+ #0123456789.", f->data[i]) && sl < sizeof spec - 4) spec[sl++] = f->data[i++];
        if (i >= f->len) { pl_buf_free(&b); return jr_error(R, PL_ERR_INVALID, line, "ValueError: incomplete format"); }
        c = f->data[i];
        if (c == '%') { pl_buf_putc(&b, '%'); continue; }
        if (named.t == JV_FRAME && ai >= na) { pl_buf_free(&b); return jr_error(R, PL_ERR_INVALID, line, "TypeError: not enough arguments for format string"); }
        jv v = named.t != JV_FRAME ? named : av[ai++];
        if (named.t != JV_FRAME) ai = na;   /* a mapping is consumed whole */
        if (c == 's' || c == 'r') {
            pl_buf tmp;
            jr_buf_init(R, &tmp);
            int wrc = c == 's' ? jr_write_str(R, &tmp, v, line) : jr_write_repr(R, &tmp, v, line);
            if (wrc) { pl_buf_free(&tmp); pl_buf_free(&b); return wrc; }
            spec[sl++] = 's';
            spec[sl] = 0;
            pl_buf_printf(&b, spec, tmp.data ? tmp.data : "");
            pl_buf_free(&tmp);
        } else if (strchr("dixXo", c) && is_num(v)) {
            spec[sl++] = 'l';
            spec[sl++] = 'l';
            spec[sl++] = c == 'i' ? 'd' : c;
            spec[sl] = 0;
            pl_buf_printf(&b, spec, (long long)(v.t == JV_FLOAT ? (int64_t)v.u.f : v.u.i));
        } else if (strchr("feEgG", c) && is_num(v)) {
            spec[sl++] = c;
            spec[sl] = 0;
            pl_buf_printf(&b, spec, as_f(v));
        } else {
            pl_buf_free(&b);
            return jr_error(R, PL_ERR_INVALID, line, "TypeError: unsupported format %%%c for %s", c, jv_typename(v));
        }
    }
    /* Python never complains about an unused argument that supports
     * __getitem__ (dict, list) */
    if (ai < na && args.t != JV_DICT && !(args.t == JV_LIST && !(JLIST(args)->h.flags & LIST_TUPLE)))
        { pl_buf_free(&b); return jr_error(R, PL_ERR_INVALID, line, "TypeError: not all arguments converted during string formatting"); }
    return jr_buf_to_str(R, &b, out);
}

/* ================================================================ comparisons */

static int order(jrender *R, jv a, jv b, int line, int *cmp)
{
    if (is_num(a) && is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) *cmp = (a.u.i > b.u.i) - (a.u.i < b.u.i);
        else { double x = as_f(a), y = as_f(b); *cmp = x < y ? -1 : x > y ? 1 : (x == y ? 0 : 2); }
        return 0;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        jstr *x = JSTR(a), *y = JSTR(b);
        size_t n = x->len < y->len ? x->len : y->len;
        int c = memcmp(x->data, y->data, n);
        *cmp = c ? (c > 0) - (c < 0) : (x->len > y->len) - (x->len < y->len);
        return 0;
    }
    if (a.t == JV_LIST && b.t == JV_LIST && (JLIST(a)->h.flags & LIST_TUPLE) == (JLIST(b)->h.flags & LIST_TUPLE)) {
        jlist *x = JLIST(a), *y = JLIST(b);
        for (size_t i = 0; i < x->len && i < y->len; i++)
            if (!jv_eq(x->v[i], y->v[i])) return order(R, x->v[i], y->v[i], line, cmp);
        *cmp = (x->len > y->len) - (x->len < y->len);
        return 0;
    }
    if (a.t == JV_UNDEF) return jr_undef_error(R, a, line);
    if (b.t == JV_UNDEF) return jr_undef_error(R, b, line);
    return jr_error(R, PL_ERR_INVALID, line, "TypeError: '<' not supported between instances of '%s' and '%s'",
                    jv_typename(a), jv_typename(b));
}

static int contains(jrender *R, jv needle, jv hay, int line, int *out)
{
    switch (hay.t) {
    case JV_STR:
        if (needle.t != JV_STR) {
            if (needle.t == JV_UNDEF && needle.ukind == U_UNSAFE) return jr_undef_error(R, needle, line);
            return jr_error(R, PL_ERR_INVALID, line, "TypeError: 'in <string>' requires string as left operand, not %s",
                            jv_typename(needle));
        }
        *out = JSTR(needle)->len == 0 ||
               memmem(JSTR(hay)->data, JSTR(hay)->len, JSTR(needle)->data, JSTR(needle)->len) != NULL;
        return 0;
    case JV_LIST:
        *out = 0;
        for (size_t i = 0; i < JLIST(hay)->len; i++)
            if (jv_eq(needle, JLIST(hay)->v[i])) { *out = 1; break; }
        return 0;
    case JV_DICT:
        if ((needle.t == JV_LIST && !(JLIST(needle)->h.flags & LIST_TUPLE)) || needle.t == JV_DICT)
            return jr_error(R, PL_ERR_INVALID, line, "TypeError: unhashable type: '%s'", jv_typename(needle));
        *out = jdict_get(JDICT(hay), needle) != NULL;
        return 0;
    case JV_UNDEF:
        if (hay.ukind == U_UNSAFE) return jr_undef_error(R, hay, line);
        *out = 0;
        return 0;
    default:
        return jr_error(R, PL_ERR_INVALID, line, "TypeError: argument of type '%s' is not iterable", jv_typename(hay));
    }
}

int jr_compare(jrender *R, int op, jv a, jv b, int line, int *out)
{
    int c, rc;
    switch (op) {
    case CMP_EQ: *out = jv_eq(a, b); return 0;
    case CMP_NE: *out = !jv_eq(a, b); return 0;
    case CMP_IN: return contains(R, a, b, line, out);
    case CMP_NOTIN: rc = contains(R, a, b, line, out); *out = !*out; return rc;
    }
    if ((rc = order(R, a, b, line, &c))) return rc;
    switch (op) {
    case CMP_LT: *out = c == -1; break;
    case CMP_LE: *out = c == -1 || c == 0; break;
    case CMP_GT: *out = c == 1; break;
    default: *out = c == 1 || c == 0; break;
    }
    return 0;
}

/* ================================================================ expressions */

NOINLINE static int eval_call(jrender *R, const jnode *n, jframe *f, pl_buf *into, jv *out)
{
    const jnode *cal = n->a;
    argv_ A;
    int rc;
    if (cal->kind == N_GETATTR) {
        jv obj;
        if ((rc = eval(R, cal->a, f, &obj))) return rc;
        int slot = method_slot(obj.t);
        if (slot >= 0 && slot != 3 && cal->meth[slot] >= 0 && !(cal->unsafe & (1 << slot))) {
            /* obj.method(...): no bound-method object */
            rc = args_eval(R, &n->args, f, n->line, &A);
            if (!rc) rc = builtin_call(R, cal->meth[slot], obj, &A.c, out);
            args_release(&A);
            jv_decref(obj);
            if (!rc && into) {
                rc = jr_write_str(R, into, *out, n->line);
                jv_decref(*out);
            }
            return rc;
        }
        jv callee;
        rc = getattr_impl(R, obj, JSTR(cal->val)->data, JSTR(cal->val)->len, cal->val,
                          slot >= 0 ? cal->meth[slot] : -1, slot >= 0 && (cal->unsafe & (1 << slot)), n->line, &callee);
        jv_decref(obj);
        if (rc) return rc;
        rc = args_eval(R, &n->args, f, n->line, &A);
        if (!rc) rc = call_value(R, callee, &A.c, into, out);
        args_release(&A);
        jv_decref(callee);
        return rc;
    }
    jv callee;
    if (cal->kind == N_NAME) callee = jv_ref(lookup(R, f, cal->sym));
    else if ((rc = eval(R, cal, f, &callee))) return rc;
    rc = args_eval(R, &n->args, f, n->line, &A);
    if (!rc) rc = call_value(R, callee, &A.c, into, out);
    args_release(&A);
    jv_decref(callee);
    return rc;
}

NOINLINE static int eval_filter(jrender *R, const jnode *n, jframe *f, jv input, jv *out)
{
    if (n->fid < 0) {
        jv_decref(input);
        return jr_error(R, PL_ERR_INVALID, n->line, "TemplateRuntimeError: No filter named '%s' found.", JSTR(n->val)->data);
    }
    argv_ A;
    int rc = args_eval(R, &n->args, f, n->line, &A);
    if (!rc) rc = builtin_filter(R, n->fid, input, &A.c, out);
    args_release(&A);
    jv_decref(input);
    return rc;
}

NOINLINE static int print_filter(jrender *R, const jnode *n, jframe *f, pl_buf *out)
{
    jv in, v;
    int rc = eval(R, n->a, f, &in);
    if (rc) return rc;
    argv_ A;
    int done = 0;
    rc = args_eval(R, &n->args, f, n->line, &A);
    if (!rc) rc = builtin_filter_print(R, n->fid, in, &A.c, out, &done);
    if (!rc && !done) {
        rc = builtin_filter(R, n->fid, in, &A.c, &v);
        if (!rc) {
            rc = jr_write_str(R, out, v, n->line);
            jv_decref(v);
        }
    }
    args_release(&A);
    jv_decref(in);
    return rc;
}

/* A filter chain whose innermost input is NULL (set/filter blocks). */
static int apply_filters(jrender *R, const jnode *chain, jframe *f, jv input, jv *out)
{
    if (!chain) { *out = input; return 0; }
    jv in;
    int rc = chain->a ? apply_filters(R, chain->a, f, input, &in) : (in = input, 0);
    if (rc) return rc;
    return eval_filter(R, chain, f, in, out);
}

static int eval_list(jrender *R, jnode *const *kids, int n, jframe *f, int tuple, jv *out)
{
    jlist *l = jlist_new((size_t)n);
    if (!l) return jr_error(R, PL_ERR_NOMEM, 0, "out of memory");
    if (tuple) l->h.flags |= LIST_TUPLE;
    for (int i = 0; i < n; i++) {
        int rc = eval(R, kids[i], f, &l->v[i]);
        if (rc) { jv_decref(jv_obj(l)); return rc; }
        l->len++;
    }
    *out = jv_obj(l);
    return 0;
}

NOINLINE static int eval_test(jrender *R, const jnode *n, jframe *f, jv *out)
{
    if (n->fid < 0) return jr_error(R, PL_ERR_INVALID, n->line, "TemplateRuntimeError: No test named '%s' found.", JSTR(n->val)->data);
    jv a;
    int rc = eval(R, n->a, f, &a);
    if (rc) return rc;
    argv_ A;
    int res = 0;
    rc = args_eval(R, &n->args, f, n->line, &A);
    if (!rc) rc = builtin_test(R, n->fid, a, &A.c, &res);
    args_release(&A);
    jv_decref(a);
    if (!rc) *out = jv_bool(res);
    return rc;
}

static int eval_node(jrender *R, const jnode *n, jframe *f, jv *out);

static int eval(jrender *R, const jnode *n, jframe *f, jv *out)
{
    if (n->kind == N_CONST) { *out = n->val; return 0; }   /* immortal */
    if (++R->ticks >= TICKS_PER_CHECK) {
        int rc = jr_tick(R, n->line);
        if (rc) return rc;
    }
    if (++R->nest > MAX_NEST) {
        R->nest--;
        return jr_error(R, PL_ERR_RANGE, n->line, "LimitError: expressions and statements nested deeper than %d", MAX_NEST);
    }
    int rc = eval_node(R, n, f, out);
    R->nest--;
    return rc;
}

static int eval_node(jrender *R, const jnode *n, jframe *f, jv *out)
{
    int rc;
    jv a, b;
    switch (n->kind) {
    case N_CONST:
        *out = n->val;      /* immortal */
        return 0;
    case N_NAME:
        *out = jv_ref(lookup(R, f, n->sym));
        return 0;
    case N_GETATTR: {
        if ((rc = eval(R, n->a, f, &a))) return rc;
        int slot = method_slot(a.t);
        rc = getattr_impl(R, a, JSTR(n->val)->data, JSTR(n->val)->len, n->val,
                          slot >= 0 ? n->meth[slot] : -1, slot >= 0 && (n->unsafe & (1 << slot)), n->line, out);
        jv_decref(a);
        return rc;
    }
    case N_GETITEM:
        if ((rc = eval(R, n->a, f, &a))) return rc;
        if ((rc = eval(R, n->b, f, &b))) { jv_decref(a); return rc; }
        if ((b.t == JV_LIST && !(JLIST(b)->h.flags & LIST_TUPLE)) || b.t == JV_DICT) {
            if (a.t == JV_UNDEF) rc = jr_undef_error(R, a, n->line);
            else *out = undef_attr(NULL, a, U_ITEM);
        } else {
            rc = jr_getitem(R, a, b, n->line, out);
        }
        jv_decref(a);
        jv_decref(b);
        return rc;
    case N_SLICE:
        return eval_slice(R, n, f, out);
    case N_CALL:
        return eval_call(R, n, f, NULL, out);
    case N_FILTER:
        if ((rc = eval(R, n->a, f, &a))) return rc;
        return eval_filter(R, n, f, a, out);
    case N_TEST:
        return eval_test(R, n, f, out);
    case N_NOT:
        if ((rc = eval(R, n->a, f, &a))) return rc;
        *out = jv_bool(!jv_truthy(a));
        jv_decref(a);
        return 0;
    case N_NEG: case N_POS:
        if ((rc = eval(R, n->a, f, &a))) return rc;
        if (a.t == JV_INT || a.t == JV_BOOL) {
            if (n->kind == N_NEG && a.u.i == INT64_MIN) return overflow(R, n->line);
            *out = jv_int(n->kind == N_NEG ? -a.u.i : a.u.i);
        } else if (a.t == JV_FLOAT) {
            *out = jv_float(n->kind == N_NEG ? -a.u.f : a.u.f);
        } else {
            rc = a.t == JV_UNDEF ? jr_undef_error(R, a, n->line)
                                 : jr_error(R, PL_ERR_INVALID, n->line, "TypeError: bad operand type for unary %c: '%s'",
                                            n->kind == N_NEG ? '-' : '+', jv_typename(a));
        }
        jv_decref(a);
        return rc;
    case N_BINOP:
        if ((rc = eval(R, n->a, f, &a))) return rc;
        if ((rc = eval(R, n->b, f, &b))) { jv_decref(a); return rc; }
        rc = jr_binop(R, n->op, a, b, n->line, out);
        jv_decref(a);
        jv_decref(b);
        return rc;
    case N_AND: case N_OR:
        if ((rc = eval(R, n->a, f, &a))) return rc;
        if (jv_truthy(a) == (n->kind == N_OR)) { *out = a; return 0; }
        jv_decref(a);
        return eval(R, n->b, f, out);
    case N_COMPARE: {
        if ((rc = eval(R, n->a, f, &a))) return rc;
        int res = 1;
        for (int i = 0; i < n->nkids && res; i++) {
            if ((rc = eval(R, n->kids[i], f, &b))) { jv_decref(a); return rc; }
            rc = jr_compare(R, n->ops[i], a, b, n->line, &res);
            jv_decref(a);
            a = b;
            if (rc) { jv_decref(a); return rc; }
        }
        jv_decref(a);
        *out = jv_bool(res);
        return 0;
    }
    case N_CONCAT: {
        pl_buf buf;
        pl_buf_init(&buf);
        for (int i = 0; i < n->nkids; i++) {
            if ((rc = eval(R, n->kids[i], f, &a))) { pl_buf_free(&buf); return rc; }
            rc = jr_write_str(R, &buf, a, n->line);
            jv_decref(a);
            if (rc) { pl_buf_free(&buf); return rc; }
            if (buf.len > R->lim->max_output) {
                size_t len = buf.len;
                pl_buf_free(&buf);
                return jr_check_size(R, len);
            }
        }
        return jr_buf_to_str(R, &buf, out);
    }
    case N_CONDEXPR:
        if ((rc = eval(R, n->a, f, &a))) return rc;
        {
            int t = jv_truthy(a);
            jv_decref(a);
            if (t) return eval(R, n->b, f, out);
            if (n->c) return eval(R, n->c, f, out);
            *out = jv_undef_hint("the inline if-expression evaluated to false and no else section was defined.");
            return 0;
        }
    case N_LIST: case N_TUPLE:
        return eval_list(R, n->kids, n->nkids, f, n->kind == N_TUPLE, out);
    case N_DICT: {
        jdict *d = jdict_new(JV_DICT);
        if (!d) return jr_error(R, PL_ERR_NOMEM, n->line, "out of memory");
        for (int i = 0; i < n->nkids; i++) {
            if ((rc = eval(R, n->kids[i], f, &a))) { jv_decref(jv_obj(d)); return rc; }
            if ((a.t == JV_LIST && !(JLIST(a)->h.flags & LIST_TUPLE)) || a.t == JV_DICT || a.t == JV_NS) {
                rc = jr_error(R, PL_ERR_INVALID, n->line, "TypeError: unhashable type: '%s'", jv_typename(a));
                jv_decref(a);
                jv_decref(jv_obj(d));
                return rc;
            }
            if ((rc = eval(R, n->kids2[i], f, &b))) { jv_decref(a); jv_decref(jv_obj(d)); return rc; }
            if (jdict_set(d, a, b)) { jv_decref(jv_obj(d)); return jr_error(R, PL_ERR_NOMEM, n->line, "out of memory"); }
        }
        *out = jv_obj(d);
        return 0;
    }
    default:
        return jr_error(R, PL_ERR_INTERNAL, n->line, "internal error: node %d is not an expression", n->kind);
    }
}

/* ================================================================ statements */

static int assign(jrender *R, jframe *f, const jnode *target, jv v, int line)
{
    if (target->kind == N_NAME) {
        if (frame_set(f, target->sym, v)) return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
        return 0;
    }
    if (target->kind == N_NSREF) {
        jv ns = lookup(R, f, target->sym);
        if (ns.t != JV_NS) {
            jv_decref(v);
            return jr_error(R, PL_ERR_INVALID, line, "TemplateRuntimeError: cannot assign attribute on non-namespace object");
        }
        if (jdict_set(JDICT(ns), target->val, v)) return jr_error(R, PL_ERR_NOMEM, line, "out of memory");
        return 0;
    }
    /* tuple unpacking */
    jlist *l;
    int rc = jr_iter_list(R, v, line, &l);
    jv_decref(v);
    if (rc) return rc;
    if (l->len != (size_t)target->nkids) {
        rc = l->len < (size_t)target->nkids
            ? jr_error(R, PL_ERR_INVALID, line, "ValueError: not enough values to unpack (expected %d, got %zu)", target->nkids, l->len)
            : jr_error(R, PL_ERR_INVALID, line, "ValueError: too many values to unpack (expected %d)", target->nkids);
        jv_decref(jv_obj(l));
        return rc;
    }
    for (int i = 0; i < target->nkids && !rc; i++) rc = assign(R, f, target->kids[i], jv_ref(l->v[i]), line);
    jv_decref(jv_obj(l));
    return rc;
}

static int bind_iteration(jrender *R, jframe *it, const jnode *n, jv item, jloop *loop, int line)
{
    const jnode *target = n->a;
    int rc = loop ? bind_missing(R, it, n->undef, n->nundef, line) : 0;
    if (!rc) rc = assign(R, it, target, jv_ref(item), line);
    if (!rc && loop) {
        jv_incref(jv_obj(loop));
        if (frame_set(it, SYM_LOOP, jv_obj(loop))) rc = jr_error(R, PL_ERR_NOMEM, line, "out of memory");
    }
    return rc;
}

/* A frame for the next iteration: the previous one when nothing captured it. */
static jframe *iteration_frame(jrender *R, jframe *prev, jframe *parent)
{
    if (prev && prev->h.rc == 1) {
        uint32_t n = prev->n;
        prev->n = 0;
        for (uint32_t i = 0; i < n; i++) jv_decref(prev->vars[i].v);
        return prev;
    }
    if (prev) frame_drop(R, prev);
    return jr_frame_new(R, parent);
}

/* Jinja's filtered loops re-pack an unpacked target as a tuple (what
 * loop.previtem/nextitem then show). The target already unpacked `item`,
 * so its length matches. */
static jv filtered_item(jrender *R, const jnode *target, jv item)
{
    if (target->kind != N_TUPLE || item.t != JV_LIST || (JLIST(item)->h.flags & LIST_TUPLE)) return jv_ref(item);
    jlist *src = JLIST(item), *t = jlist_new(src->len);
    if (!t) return jv_ref(item);
    (void)R;
    t->h.flags |= LIST_TUPLE;
    for (size_t i = 0; i < src->len; i++) t->v[t->len++] = jv_ref(src->v[i]);
    return jv_obj(t);
}

static int run_for(jrender *R, const jnode *n, jframe *f, jv iterable, int depth0, pl_buf *out)
{
    jlist *items;
    int rc = jr_iter_list(R, iterable, n->line, &items);
    if (rc) return rc;
    jframe *it = NULL;
    if (n->c) {     /* `for x in xs if cond`: filtered first, so loop.length/last know */
        jlist *kept = jlist_new(0);
        if (!kept) { jv_decref(jv_obj(items)); return jr_error(R, PL_ERR_NOMEM, n->line, "out of memory"); }
        for (size_t i = 0; i < items->len && !rc; i++) {
            if (!(it = iteration_frame(R, it, f))) { rc = jr_error(R, PL_ERR_NOMEM, n->line, "out of memory"); break; }
            if ((rc = bind_iteration(R, it, n, items->v[i], NULL, n->line))) break;
            jv c;
            if ((rc = eval(R, n->c, it, &c))) break;
            if (jv_truthy(c)) rc = jlist_push(kept, filtered_item(R, n->a, items->v[i]));
            jv_decref(c);
            if (++R->iters > R->lim->max_iterations)
                rc = jr_error(R, PL_ERR_RANGE, n->line, "LimitError: more than %llu loop iterations",
                              (unsigned long long)R->lim->max_iterations);
            else if ((R->ticks += 16) >= TICKS_PER_CHECK)
                rc = jr_tick(R, n->line);
        }
        jv_decref(jv_obj(items));
        items = kept;
        if (rc) goto done;
    }
    jloop *loop = calloc(1, sizeof *loop);
    if (!loop) { rc = jr_error(R, PL_ERR_NOMEM, n->line, "out of memory"); goto done; }
    loop->h.rc = 1;
    loop->h.type = JV_LOOP;
    loop->items = items;
    jv_incref(jv_obj(items));
    loop->depth0 = depth0;
    loop->changed_last = jv_undef_name(NULL);
    loop->fornode = n;
    loop->outer = f;
    jv_incref(jv_obj(f));
    for (size_t i = 0; i < items->len; i++) {
        if (++R->iters > R->lim->max_iterations) {
            rc = jr_error(R, PL_ERR_RANGE, n->line, "LimitError: more than %llu loop iterations",
                          (unsigned long long)R->lim->max_iterations);
            break;
        }
        if ((R->ticks += 16) >= TICKS_PER_CHECK && (rc = jr_tick(R, n->line))) break;
        loop->index0 = i;
        if (!(it = iteration_frame(R, it, f))) { rc = jr_error(R, PL_ERR_NOMEM, n->line, "out of memory"); break; }
        if ((rc = bind_iteration(R, it, n, items->v[i], loop, n->line))) break;
        rc = exec_body(R, n->kids, n->nkids, it, out);
        if (rc == EXEC_CONTINUE) rc = 0;
        if (rc) break;
    }
    if (rc == EXEC_BREAK) rc = 0;
    jv_decref(jv_obj(loop));
    if (!rc && items->len == 0 && n->nkids2) {
        if (!(it = iteration_frame(R, it, f))) rc = jr_error(R, PL_ERR_NOMEM, n->line, "out of memory");
        else if (!(rc = bind_missing(R, it, n->undef2, n->nundef2, n->line))) rc = exec_body(R, n->kids2, n->nkids2, it, out);
    }
done:
    if (it) frame_drop(R, it);
    jv_decref(jv_obj(items));
    return rc;
}

/* Renders a body into a fresh string, in a child frame (set/filter blocks). */
static int render_block(jrender *R, const jnode *n, jframe *f, jv *out)
{
    jframe *inner = jr_frame_new(R, f);
    if (!inner) return jr_error(R, PL_ERR_NOMEM, n->line, "out of memory");
    pl_buf b;
    pl_buf_init(&b);
    int rc = bind_missing(R, inner, n->undef, n->nundef, n->line);
    if (!rc) rc = exec_body(R, n->kids, n->nkids, inner, &b);
    frame_drop(R, inner);
    if (rc > 0) rc = 0;
    if (rc) { pl_buf_free(&b); return rc; }
    return jr_buf_to_str(R, &b, out);
}

static int exec_node(jrender *R, const jnode *n, jframe *f, pl_buf *out);

static int exec_stmt(jrender *R, const jnode *n, jframe *f, pl_buf *out)
{
    if (n->kind == N_TEXT) {
        jb_append(out, JSTR(n->val)->data, JSTR(n->val)->len);
        return check_output(R, out, n->line);
    }
    if (++R->nest > MAX_NEST) {
        R->nest--;
        return jr_error(R, PL_ERR_RANGE, n->line, "LimitError: expressions and statements nested deeper than %d", MAX_NEST);
    }
    int rc = exec_node(R, n, f, out);
    R->nest--;
    return rc;
}

static int exec_node(jrender *R, const jnode *n, jframe *f, pl_buf *out)
{
    int rc;
    jv v;
    switch (n->kind) {
    case N_TEXT:
        jb_append(out, JSTR(n->val)->data, JSTR(n->val)->len);
        return check_output(R, out, n->line);
    case N_PRINT:
        if (n->a) {
            /* {{ macro(...) }} and {{ x | tojson }} render straight into the output */
            if (n->a->kind == N_CALL) rc = eval_call(R, n->a, f, out, &v);
            else if (n->a->kind == N_FILTER && n->a->fid >= 0) rc = print_filter(R, n->a, f, out);
            else if ((rc = eval(R, n->a, f, &v)) == 0) {
                rc = jr_write_str(R, out, v, n->line);
                jv_decref(v);
            }
            if (rc) return rc;
            return check_output(R, out, n->line);
        }
        for (int i = 0; i < n->nkids; i++) {
            if ((rc = eval(R, n->kids[i], f, &v))) return rc;
            rc = jr_write_str(R, out, v, n->line);
            jv_decref(v);
            if (rc) return rc;
            if ((rc = check_output(R, out, n->line))) return rc;
        }
        return 0;
    case N_IF:
        if ((rc = eval(R, n->a, f, &v))) return rc;
        {
            int t = jv_truthy(v);
            jv_decref(v);
            return t ? exec_body(R, n->kids, n->nkids, f, out) : exec_body(R, n->kids2, n->nkids2, f, out);
        }
    case N_FOR:
        if ((rc = eval(R, n->b, f, &v))) return rc;
        rc = run_for(R, n, f, v, 0, out);
        jv_decref(v);
        return rc;
    case N_SET:
        if ((rc = eval(R, n->b, f, &v))) return rc;
        return assign(R, f, n->a, v, n->line);
    case N_SETBLOCK:
        if ((rc = render_block(R, n, f, &v))) return rc;
        if ((rc = apply_filters(R, n->b, f, v, &v))) return rc;
        return assign(R, f, n->a, v, n->line);
    case N_FILTERBLOCK:
        if ((rc = render_block(R, n, f, &v))) return rc;
        if ((rc = apply_filters(R, n->b, f, v, &v))) return rc;
        rc = jr_write_str(R, out, v, n->line);
        jv_decref(v);
        if (rc) return rc;
        return check_output(R, out, n->line);
    case N_MACRO: {
        jmacro *m = jmacro_new(n, f, 0);
        if (!m || frame_set(f, n->sym, jv_obj(m))) return jr_error(R, PL_ERR_NOMEM, n->line, "out of memory");
        return 0;
    }
    case N_CALLBLOCK: {
        jmacro *caller = jmacro_new(n, f, MACRO_CALLER);
        if (!caller) return jr_error(R, PL_ERR_NOMEM, n->line, "out of memory");
        const jnode *call = n->a;
        jv callee;
        if ((rc = eval(R, call->a, f, &callee))) { jv_decref(jv_obj(caller)); return rc; }
        argv_ A;
        rc = args_eval(R, &call->args, f, n->line, &A);
        if (!rc && A.c.nkw >= MAX_ARGS) rc = jr_error(R, PL_ERR_INVALID, n->line, "TypeError: too many arguments");
        if (!rc) {
            A.kw[A.c.nkw].name = "caller";
            A.kw[A.c.nkw].len = 6;
            A.kw[A.c.nkw].v = jv_obj(caller);
            A.c.nkw++;
            caller = NULL;
            rc = call_value(R, callee, &A.c, out, &v);
        }
        args_release(&A);
        if (caller) jv_decref(jv_obj(caller));
        jv_decref(callee);
        if (rc) return rc;
        return check_output(R, out, n->line);
    }
    case N_WITH: {
        jv vals[MAX_ARGS];
        if (n->args.npos > MAX_ARGS) return jr_error(R, PL_ERR_INVALID, n->line, "too many with targets");
        for (int i = 0; i < n->args.npos; i++)
            if ((rc = eval(R, n->args.pos[i], f, &vals[i]))) {
                while (i--) jv_decref(vals[i]);
                return rc;
            }
        jframe *inner = jr_frame_new(R, f);
        if (!inner) {
            for (int i = 0; i < n->args.npos; i++) jv_decref(vals[i]);
            return jr_error(R, PL_ERR_NOMEM, n->line, "out of memory");
        }
        rc = bind_missing(R, inner, n->undef, n->nundef, n->line);
        for (int i = 0; i < n->args.npos; i++) {
            if (!rc) rc = assign(R, inner, n->kids2[i], vals[i], n->line);
            else jv_decref(vals[i]);
        }
        if (!rc) rc = exec_body(R, n->kids, n->nkids, inner, out);
        frame_drop(R, inner);
        return rc;
    }
    case N_BREAK: return EXEC_BREAK;
    case N_CONTINUE: return EXEC_CONTINUE;
    case N_BODY: return exec_body(R, n->kids, n->nkids, f, out);
    case N_NOLOADER: return jr_error(R, PL_ERR_INVALID, n->line, "TypeError: no loader for this environment specified");
    default:
        return jr_error(R, PL_ERR_INTERNAL, n->line, "internal error: node %d is not a statement", n->kind);
    }
}

static int exec_body(jrender *R, jnode *const *kids, int n, jframe *f, pl_buf *out)
{
    for (int i = 0; i < n; i++) {
        int rc = exec_stmt(R, kids[i], f, out);
        if (rc) return rc;
    }
    return 0;
}

/* ================================================================ render */

int pl_jinja_render(const pl_jinja_template *t, const pl_jinja_value *context_dict, pl_buf *out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!t || !out) return pl_seterr(err, errlen, PL_ERR_INVALID, "no template or output buffer");
    jrender R;
    memset(&R, 0, sizeof R);
    R.t = t;
    R.lim = &t->limits;
    R.err = err;
    R.errlen = errlen;
    R.tracked.prev = R.tracked.next = &R.tracked;
    R.out = out;
    R.out_base = out->len;
    if (t->limits.max_time_ms > 0) R.t_end = pl_now_ms() + t->limits.max_time_ms;
    if (context_dict) {
        jv c = pl_jinja_value_jv(context_dict);
        if (c.t != JV_DICT) return pl_seterr(err, errlen, PL_ERR_INVALID, "the context must be a dict");
        R.ctx = JDICT(c);
    }
    R.cache = calloc(t->syms.n ? t->syms.n : 1, sizeof *R.cache);
    R.cstate = calloc(t->syms.n ? t->syms.n : 1, 1);
    if (!R.cache || !R.cstate) {
        free(R.cache);
        free(R.cstate);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    int rc;
    jframe *root = jr_frame_new(&R, NULL);
    if (!root) rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    else {
        rc = bind_missing(&R, root, t->root->undef, t->root->nundef, 1);
        if (!rc) rc = exec_body(&R, t->root->kids, t->root->nkids, root, out);
        if (rc > 0) rc = 0;
        if (!rc && !pl_buf_ok(out)) rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
        jv_decref(jv_obj(root));
    }
    /* break the cycles (macro <-> defining frame, namespaces holding
     * themselves) that reference counting alone cannot free */
    while (R.tracked.next != &R.tracked) {
        jtrack *tr = R.tracked.next;
        jobj *o = tr->owner;
        o->rc++;
        tr->prev->next = tr->next;
        tr->next->prev = tr->prev;
        tr->prev = tr->next = NULL;
        jobj_clear(o);
        jv_decref(jv_obj(o));
    }
    while (R.spare) {
        jframe *nx = R.spare->parent;
        free(R.spare);
        R.spare = nx;
    }
    free(R.cache);
    free(R.cstate);
    return rc;
}
