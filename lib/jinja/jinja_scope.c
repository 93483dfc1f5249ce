/* jinja_scope.c — Jinja2's compile-time symbol analysis (idtracking.py),
 * reduced to the one fact the evaluator cannot get dynamically.
 *
 * Jinja compiles every frame (template, loop body, macro, with, set/filter
 * block) to a Python function whose local variables are fixed at compile
 * time. A name the frame assigns before anything in that frame (or an
 * enclosing frame's analysis) refers to it starts as "missing": reading it
 * before the assignment runs gives undefined, even if the context or an
 * outer frame has a value with that name. Example:
 *
 *   {% for i in [1] %}{{ x }}{% endfor %}{% set x = 1 %}   with x="ctx"
 *
 * prints "" in Jinja (the top level assigns x, so x is a top-level local,
 * missing until the set runs), while a plain scope chain would print "ctx".
 * Every other case (names read first, names assigned in if branches, loop
 * targets, macro parameters) behaves like the evaluator's scope chain, so
 * only these "undefined at start" names are computed here and pre-bound by
 * the evaluator when it creates the frame.
 *
 * Analysis order follows FrameSymbolVisitor: an assignment visits its value
 * before its target; for loops, macros, call/filter/set blocks and with
 * blocks contribute only the parts evaluated in the outer frame; if
 * branches are analysed on copies and merged (a name assigned only in a
 * branch is resolved from outside, never "missing"). */
#include "jinja_int.h"

#include <stdlib.h>
#include <string.h>

enum { K_RESOLVE = 1, K_UNDEF, K_ALIAS, K_PARAM };

typedef struct symtab {
    const struct symtab *parent;
    uint32_t *sym;
    uint8_t *kind;
    int n, cap;
    uint32_t *stores;
    int nstores, capstores;
    int oom;
} symtab;

static void st_free(symtab *st)
{
    free(st->sym);
    free(st->kind);
    free(st->stores);
}

static int st_local(const symtab *st, uint32_t sym)
{
    for (int i = 0; i < st->n; i++)
        if (st->sym[i] == sym) return i;
    return -1;
}

static int st_has_ref(const symtab *st, uint32_t sym)
{
    for (; st; st = st->parent)
        if (st_local(st, sym) >= 0) return 1;
    return 0;
}

static int grow(void **p, int *cap, int n, size_t elem)
{
    if (n < *cap) return 0;
    int nc = *cap ? *cap * 2 : 16;
    void *np = realloc(*p, (size_t)nc * elem);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static void st_define(symtab *st, uint32_t sym, int kind)
{
    int i = st_local(st, sym);
    if (i >= 0) { st->kind[i] = (uint8_t)kind; return; }
    int cap = st->cap;
    if (grow((void **)&st->sym, &cap, st->n, sizeof *st->sym)) { st->oom = 1; return; }
    cap = st->cap;
    if (grow((void **)&st->kind, &cap, st->n, sizeof *st->kind)) { st->oom = 1; return; }
    st->cap = cap;
    st->sym[st->n] = sym;
    st->kind[st->n] = (uint8_t)kind;
    st->n++;
}

static int st_stored(const symtab *st, uint32_t sym)
{
    for (int i = 0; i < st->nstores; i++)
        if (st->stores[i] == sym) return 1;
    return 0;
}

static void st_add_store(symtab *st, uint32_t sym)
{
    if (st_stored(st, sym)) return;
    if (grow((void **)&st->stores, &st->capstores, st->nstores, sizeof *st->stores)) { st->oom = 1; return; }
    st->stores[st->nstores++] = sym;
}

static void st_load(symtab *st, uint32_t sym)
{
    if (!st_has_ref(st, sym)) st_define(st, sym, K_RESOLVE);
}

static void st_store(symtab *st, uint32_t sym)
{
    st_add_store(st, sym);
    if (st_local(st, sym) >= 0) return;
    st_define(st, sym, st->parent && st_has_ref(st->parent, sym) ? K_ALIAS : K_UNDEF);
}

static void st_param(symtab *st, uint32_t sym)
{
    st_add_store(st, sym);
    st_define(st, sym, K_PARAM);
}

static int st_copy(symtab *dst, const symtab *src)
{
    memset(dst, 0, sizeof *dst);
    dst->parent = src->parent;
    for (int i = 0; i < src->n; i++) st_define(dst, src->sym[i], src->kind[i]);
    for (int i = 0; i < src->nstores; i++) st_add_store(dst, src->stores[i]);
    return dst->oom ? -1 : 0;
}

/* ================================================================ visitor */

static void visit(symtab *st, const jnode *n);

static void visit_list(symtab *st, jnode *const *v, int n)
{
    for (int i = 0; i < n; i++) visit(st, v[i]);
}

static void visit_target(symtab *st, const jnode *t, int as_param)
{
    if (!t) return;
    if (t->kind == N_NAME) { if (as_param) st_param(st, t->sym); else st_store(st, t->sym); }
    else if (t->kind == N_NSREF) st_load(st, t->sym);
    else if (t->kind == N_TUPLE) for (int i = 0; i < t->nkids; i++) visit_target(st, t->kids[i], as_param);
}

static void visit_args(symtab *st, const jargs *a)
{
    visit_list(st, a->pos, a->npos);
    visit_list(st, a->kwval, a->nkw);
    if (a->dyn_args) visit(st, a->dyn_args);
    if (a->dyn_kwargs) visit(st, a->dyn_kwargs);
}

/* Jinja's branch_update after an if: names stored in a branch but not
 * before resolve from outside. */
static void visit_if(symtab *st, const jnode *n)
{
    visit(st, n->a);
    symtab br[2];
    int nb = 0;
    for (int b = 0; b < 2; b++) {
        if (st_copy(&br[b], st)) { st->oom = 1; st_free(&br[b]); for (int k = 0; k < b; k++) st_free(&br[k]); return; }
        nb++;
        if (b == 0) visit_list(&br[b], n->kids, n->nkids);
        else visit_list(&br[b], n->kids2, n->nkids2);
    }
    uint32_t *newstores = NULL;
    int nnew = 0, capnew = 0;
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < br[b].nstores; i++) {
            uint32_t s = br[b].stores[i];
            int dup = st_stored(st, s);
            for (int k = 0; k < nnew && !dup; k++) dup = newstores[k] == s;
            if (dup) continue;
            if (grow((void **)&newstores, &capnew, nnew, sizeof *newstores)) { st->oom = 1; break; }
            newstores[nnew++] = s;
        }
    for (int b = 0; b < nb; b++) {
        for (int i = 0; i < br[b].n; i++) st_define(st, br[b].sym[i], br[b].kind[i]);
        for (int i = 0; i < br[b].nstores; i++) st_add_store(st, br[b].stores[i]);
        if (br[b].oom) st->oom = 1;
        st_free(&br[b]);
    }
    for (int k = 0; k < nnew; k++)
        st_define(st, newstores[k], st->parent && st_has_ref(st->parent, newstores[k]) ? K_ALIAS : K_RESOLVE);
    free(newstores);
}

static void visit(symtab *st, const jnode *n)
{
    if (!n) return;
    switch (n->kind) {
    case N_NAME: st_load(st, n->sym); return;
    case N_NSREF: st_load(st, n->sym); return;
    case N_IF: visit_if(st, n); return;
    case N_MACRO: st_store(st, n->sym); return;
    case N_SET: visit(st, n->b); visit_target(st, n->a, 0); return;
    case N_FOR: visit(st, n->b); return;                  /* the iterable only */
    case N_CALLBLOCK: visit(st, n->a); return;            /* the call only */
    case N_FILTERBLOCK: visit(st, n->b); return;          /* the filter only */
    case N_WITH: visit_args(st, &n->args); return;        /* the values only */
    case N_SETBLOCK: visit_target(st, n->a, 0); return;   /* the target only */
    case N_TEXT: case N_BREAK: case N_CONTINUE: case N_NOLOADER: case N_CONST: return;
    default:
        visit(st, n->a);
        visit(st, n->b);
        visit(st, n->c);
        visit(st, n->d);
        visit_list(st, n->kids, n->nkids);
        visit_list(st, n->kids2, n->nkids2);
        visit_args(st, &n->args);
        return;
    }
}

/* ================================================================ frames */

static int analyze_frame(pl_jinja_template *t, const symtab *parent, jnode *frame, int which);

/* Child frames among the statements of a frame (through if branches and
 * generation bodies), analysed with this frame's finished table. */
static int analyze_children(pl_jinja_template *t, const symtab *st, jnode *const *v, int n)
{
    for (int i = 0; i < n; i++) {
        jnode *x = v[i];
        int rc = 0;
        switch (x->kind) {
        case N_IF:
            rc = analyze_children(t, st, x->kids, x->nkids);
            if (!rc) rc = analyze_children(t, st, x->kids2, x->nkids2);
            break;
        case N_BODY:
            rc = analyze_children(t, st, x->kids, x->nkids);
            break;
        case N_FOR:
            rc = analyze_frame(t, st, x, 0);
            if (!rc && x->nkids2) rc = analyze_frame(t, st, x, 1);
            break;
        case N_MACRO: case N_CALLBLOCK: case N_WITH: case N_SETBLOCK: case N_FILTERBLOCK:
            rc = analyze_frame(t, st, x, 0);
            break;
        }
        if (rc) return rc;
    }
    return 0;
}

/* which: 0 the frame's body, 1 a for loop's else. */
static int analyze_frame(pl_jinja_template *t, const symtab *parent, jnode *f, int which)
{
    symtab st;
    memset(&st, 0, sizeof st);
    st.parent = parent;
    jnode *const *body = f->kids;
    int nbody = f->nkids;
    switch (f->kind) {
    case N_FOR:
        if (which) { body = f->kids2; nbody = f->nkids2; }
        else visit_target(&st, f->a, 1);
        break;
    case N_MACRO: case N_CALLBLOCK:
        for (int i = 0; i < f->nparams; i++) st_param(&st, f->params[i]);
        visit_list(&st, f->defaults, f->ndefaults);
        break;
    case N_WITH:
        for (int i = 0; i < f->nkids2; i++) visit_target(&st, f->kids2[i], 1);
        break;
    case N_FILTERBLOCK:
        visit(&st, f->b);
        break;
    default:
        break;
    }
    visit_list(&st, body, nbody);
    int rc = st.oom ? PL_ERR_NOMEM : 0;
    int nu = 0;
    for (int i = 0; i < st.n; i++) nu += st.kind[i] == K_UNDEF;
    if (!rc && nu) {
        uint32_t *u = jt_alloc(t, (size_t)nu * sizeof *u);
        if (!u) rc = PL_ERR_NOMEM;
        else {
            int k = 0;
            for (int i = 0; i < st.n; i++) if (st.kind[i] == K_UNDEF) u[k++] = st.sym[i];
            if (which) { f->undef2 = u; f->nundef2 = nu; }
            else { f->undef = u; f->nundef = nu; }
        }
    }
    if (!rc) rc = analyze_children(t, &st, body, nbody);
    st_free(&st);
    return rc;
}

int jinja_scope_analyze(pl_jinja_template *t)
{
    return analyze_frame(t, NULL, t->root, 0);
}
