/* jinja_detect.c — how a chat template reads message content, guessed from
 * its syntax tree the way vLLM guesses it (vllm/renderers/hf.py,
 * _detect_content_format and the _iter_nodes_* helpers it uses).
 *
 * vLLM hands a template that loops over a message's content the content as
 * a list of parts ({"type": "text", "text": ...}: "openai" format) and any
 * other template a plain string ("string" format); the two render
 * differently, so glm-tokenize must make the same guess:
 *   1. names that hold the messages: "messages", and every variable assigned
 *      from it (or from its items, a slice, a filter or test of it), also
 *      through namespace(x=messages) and ns.x = messages;
 *   2. loop variables of `for m in <messages name>`;
 *   3. "openai" when some loop iterates `<loop var>.content` (or
 *      ['content']), a macro parameter that a call passes such content to,
 *      or, outside macros, a plain name `content`.
 * vLLM's walk asserts that loop targets are plain names; a template where
 * that fails while it gathers (1)-(2) is "string", as vLLM's fallback is. */
#include "jinja_int.h"

#include <stdlib.h>
#include <string.h>

/* ================================================================ names */

typedef struct { char **v; size_t n, cap; } names;

static int names_has(const names *ns, const char *s)
{
    for (size_t i = 0; i < ns->n; i++)
        if (!strcmp(ns->v[i], s)) return 1;
    return 0;
}

/* Adds a copy; 0 when it was new, 1 when already there, -1 on OOM. */
static int names_add(names *ns, const char *s)
{
    if (names_has(ns, s)) return 1;
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 8;
        char **v = realloc(ns->v, cap * sizeof *v);
        if (!v) return -1;
        ns->v = v;
        ns->cap = cap;
    }
    if (!(ns->v[ns->n] = strdup(s))) return -1;
    ns->n++;
    return 0;
}

static void names_free(names *ns)
{
    for (size_t i = 0; i < ns->n; i++) free(ns->v[i]);
    free(ns->v);
}

static const char *sym_name(const pl_jinja_template *t, uint32_t sym) { return t->syms.names[sym]; }

/* ================================================================ tree walk */

/* Every node below n (not n itself) in pre-order, as Jinja's find_all. */
typedef int (*visit_fn)(const pl_jinja_template *t, const jnode *n, void *ud);

static int walk(const pl_jinja_template *t, const jnode *n, visit_fn f, void *ud, int depth)
{
    if (!n || depth > 10000) return 0;
    const jnode *kids[] = {n->a, n->b, n->c, n->d, n->args.dyn_args, n->args.dyn_kwargs};
    int rc;
#define VISIT(x) do { if ((x) && ((rc = f(t, (x), ud)) || (rc = walk(t, (x), f, ud, depth + 1)))) return rc; } while (0)
    for (size_t i = 0; i < PL_ARRAY_LEN(kids); i++) VISIT(kids[i]);
    for (int i = 0; i < n->nkids; i++) VISIT(n->kids[i]);
    for (int i = 0; i < n->nkids2; i++) VISIT(n->kids2[i]);
    for (int i = 0; i < n->args.npos; i++) VISIT(n->args.pos[i]);
    for (int i = 0; i < n->args.nkw; i++) VISIT(n->args.kwval[i]);
    for (int i = 0; i < n->ndefaults; i++) VISIT(n->defaults[i]);
#undef VISIT
    return 0;
}

/* ================================================================ vLLM's predicates */

/* _is_var_access: a load of varname; "ns.rest" also matches ns.rest. */
static int is_var_access(const pl_jinja_template *t, const jnode *n, const char *var)
{
    if (n->kind == N_NAME) return !strcmp(sym_name(t, n->sym), var);
    const char *dot = strrchr(var, '.');
    if (n->kind == N_GETATTR && dot) {
        const char *attr = JSTR(n->val)->data;
        if (strcmp(attr, dot + 1)) return 0;
        char base[256];
        size_t bl = (size_t)(dot - var);
        if (bl >= sizeof base) return 0;
        memcpy(base, var, bl);
        base[bl] = 0;
        return n->a && is_var_access(t, n->a, base);
    }
    return 0;
}

/* _is_attr_access: var[key] with a constant key, or var.key */
static int is_attr_access(const pl_jinja_template *t, const jnode *n, const char *var, const char *key)
{
    if (n->kind == N_GETITEM)
        return n->a && is_var_access(t, n->a, var) && n->b && n->b->kind == N_CONST &&
               n->b->val.t == JV_STR && !strcmp(JSTR(n->b->val)->data, key);
    if (n->kind == N_GETATTR) return n->a && is_var_access(t, n->a, var) && !strcmp(JSTR(n->val)->data, key);
    return 0;
}

/* _is_var_or_elems_access: through filters, tests and slices */
static int is_var_or_elems(const pl_jinja_template *t, const jnode *n, const char *var, const char *key)
{
    if (!n) return 0;
    if (n->kind == N_FILTER || n->kind == N_TEST || n->kind == N_SLICE) return is_var_or_elems(t, n->a, var, key);
    return key ? is_attr_access(t, n, var, key) : is_var_access(t, n, var);
}

static int any_var_or_elems(const pl_jinja_template *t, const jnode *n, const names *vars, const char *key)
{
    for (size_t i = 0; i < vars->n; i++)
        if (is_var_or_elems(t, n, vars->v[i], key)) return 1;
    return 0;
}

/* ================================================================ 1. names holding the messages */

typedef struct { names *vars; const char *related; int added; } alias_scan;

/* The dotted name of an assignment target like ns.rest. */
static int dotted_target(const pl_jinja_template *t, const jnode *n, char *buf, size_t len)
{
    if (n->kind == N_NSREF) {
        snprintf(buf, len, "%s.%s", sym_name(t, n->sym), sym_name(t, n->sym2));
        return 1;
    }
    return 0;
}

static int visit_assign(const pl_jinja_template *t, const jnode *n, void *ud)
{
    alias_scan *s = ud;
    if (n->kind != N_SET || !n->a || !n->b) return 0;
    const jnode *lhs = n->a, *rhs = n->b;
    char dotted[512];
    if (lhs->kind == N_NAME && is_var_or_elems(t, rhs, s->related, NULL)) {
        int r = names_add(s->vars, sym_name(t, lhs->sym));
        if (r < 0) return PL_ERR_NOMEM;
        s->added |= r == 0;
    } else if (lhs->kind == N_NAME && rhs->kind == N_CALL && rhs->a && rhs->a->kind == N_NAME &&
               !strcmp(sym_name(t, rhs->a->sym), "namespace")) {
        for (int i = 0; i < rhs->args.nkw; i++) {
            if (!is_var_or_elems(t, rhs->args.kwval[i], s->related, NULL)) continue;
            snprintf(dotted, sizeof dotted, "%s.%s", sym_name(t, lhs->sym), sym_name(t, rhs->args.kwsym[i]));
            int r = names_add(s->vars, dotted);
            if (r < 0) return PL_ERR_NOMEM;
            s->added |= r == 0;
        }
    } else if (dotted_target(t, lhs, dotted, sizeof dotted) && is_var_or_elems(t, rhs, s->related, NULL)) {
        int r = names_add(s->vars, dotted);
        if (r < 0) return PL_ERR_NOMEM;
        s->added |= r == 0;
    }
    return 0;
}

/* _iter_nodes_assign_var_or_elems(root, "messages"): a breadth-first
 * closure over assignments. */
static int messages_names(const pl_jinja_template *t, names *vars)
{
    if (names_add(vars, "messages") < 0) return PL_ERR_NOMEM;
    for (size_t i = 0; i < vars->n; i++) {
        char *related = strdup(vars->v[i]);
        if (!related) return PL_ERR_NOMEM;
        alias_scan s = {vars, related, 0};
        int rc = walk(t, t->root, visit_assign, &s, 0);
        free(related);
        if (rc) return rc;
    }
    return 0;
}

/* ================================================================ 2. message loop variables */

typedef struct { const names *msgs; names *items; int bad; } loop_scan;

static int visit_message_loop(const pl_jinja_template *t, const jnode *n, void *ud)
{
    loop_scan *s = ud;
    if (n->kind != N_FOR || !n->b || !any_var_or_elems(t, n->b, s->msgs, NULL)) return 0;
    if (!n->a || n->a->kind != N_NAME) { s->bad = 1; return 1; }   /* vLLM's assert fails */
    return names_add(s->items, sym_name(t, n->a->sym)) < 0 ? PL_ERR_NOMEM : 0;
}

/* ================================================================ 3. loops over content */

typedef struct {
    const names *items;
    const jnode *macro;     /* the macro being scanned for calls */
    names params;           /* its parameters that receive message content */
} macro_scan;

static int visit_macro_call(const pl_jinja_template *t, const jnode *n, void *ud)
{
    macro_scan *s = ud;
    const jnode *m = s->macro;
    if (n->kind != N_CALL || !n->a || n->a->kind != N_NAME || n->a->sym != m->sym) return 0;
    for (int i = 0; i < n->args.npos && i < m->nparams; i++)
        if (any_var_or_elems(t, n->args.pos[i], s->items, "content") &&
            names_add(&s->params, sym_name(t, m->params[i])) < 0) return PL_ERR_NOMEM;
    for (int i = 0; i < n->args.nkw; i++) {
        int is_param = 0;
        for (int k = 0; k < m->nparams; k++) is_param |= m->params[k] == n->args.kwsym[i];
        if (is_param && any_var_or_elems(t, n->args.kwval[i], s->items, "content") &&
            names_add(&s->params, sym_name(t, n->args.kwsym[i])) < 0) return PL_ERR_NOMEM;
    }
    return 0;
}

typedef struct {
    const names *items;
    const jnode *macro;         /* innermost macro around the loop, or NULL */
    const names *macro_params;  /* its content parameters (may be empty) */
    int found;
} content_scan;

static int visit_content_loop(const pl_jinja_template *t, const jnode *n, void *ud);
static int walk_content(const pl_jinja_template *t, const jnode *n, content_scan *s, int depth);

/* Loops directly in a macro body are judged with that macro's parameters. */
static int scan_macro_body(const pl_jinja_template *t, const jnode *macro, content_scan *outer)
{
    macro_scan ms = {outer->items, macro, {0}};
    int rc = walk(t, t->root, visit_macro_call, &ms, 0);
    content_scan in = {outer->items, macro, &ms.params, 0};
    if (!rc) rc = walk_content(t, macro, &in, 0);
    names_free(&ms.params);
    outer->found |= in.found;
    return rc < 0 ? rc : in.found;
}

static int visit_content_loop(const pl_jinja_template *t, const jnode *n, void *ud)
{
    content_scan *s = ud;
    if (n->kind == N_MACRO && n != s->macro) {
        int rc = scan_macro_body(t, n, s);
        return rc ? rc : -2;   /* -2: handled, don't descend again */
    }
    if (n->kind != N_FOR || !n->b) return 0;
    const jnode *it = n->b;
    int hit = any_var_or_elems(t, it, s->items, "content");
    if (!hit && it->kind == N_NAME) {
        const char *nm = sym_name(t, it->sym);
        if (s->macro) hit = s->macro_params && names_has(s->macro_params, nm);
        else hit = !strcmp(nm, "content");
    }
    if (hit) { s->found = 1; return 1; }
    return 0;
}


/* One child: a macro is judged by scan_macro_body (visit returns -2) and
 * not walked again as outside code. */
static int step_content(const pl_jinja_template *t, const jnode *x, content_scan *s, int depth)
{
    if (!x) return 0;
    int rc = visit_content_loop(t, x, s);
    if (rc == -2) return 0;
    if (rc) return rc;
    return walk_content(t, x, s, depth + 1);
}

static int walk_content(const pl_jinja_template *t, const jnode *n, content_scan *s, int depth)
{
    if (!n || depth > 10000) return 0;
    const jnode *kids[] = {n->a, n->b, n->c, n->d, n->args.dyn_args, n->args.dyn_kwargs};
    int rc = 0;
    for (size_t i = 0; !rc && i < PL_ARRAY_LEN(kids); i++) rc = step_content(t, kids[i], s, depth);
    for (int i = 0; !rc && i < n->nkids; i++) rc = step_content(t, n->kids[i], s, depth);
    for (int i = 0; !rc && i < n->nkids2; i++) rc = step_content(t, n->kids2[i], s, depth);
    for (int i = 0; !rc && i < n->args.npos; i++) rc = step_content(t, n->args.pos[i], s, depth);
    for (int i = 0; !rc && i < n->args.nkw; i++) rc = step_content(t, n->args.kwval[i], s, depth);
    for (int i = 0; !rc && i < n->ndefaults; i++) rc = step_content(t, n->defaults[i], s, depth);
    return rc ? rc : s->found;
}

int pl_jinja_template_iterates_content(const pl_jinja_template *t)
{
    names msgs = {0}, items = {0};
    int rc = messages_names(t, &msgs);
    loop_scan ls = {&msgs, &items, 0};
    if (!rc) rc = walk(t, t->root, visit_message_loop, &ls, 0);
    int found = 0;
    if (rc >= 0 && !ls.bad) {
        content_scan cs = {&items, NULL, NULL, 0};
        found = walk_content(t, t->root, &cs, 0) > 0 || cs.found;
    }
    names_free(&msgs);
    names_free(&items);
    return found;
}
