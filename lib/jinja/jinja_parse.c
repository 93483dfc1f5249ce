/* jinja_parse.c — tokens to AST, following jinja2/parser.py production by
 * production (precedence, tuple rules, test arguments without parentheses,
 * filter/test lookup errors), plus compile/free of templates. */
#include "jinja_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ arena */

struct arena_chunk { struct arena_chunk *next; size_t used, cap; char data[]; };

void *jt_alloc(pl_jinja_template *t, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct arena_chunk *c = t->arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = t->arena;
        c->used = 0;
        c->cap = cap;
        t->arena = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

static int add_const(pl_jinja_template *t, jobj *o)
{
    if (t->nconsts == t->capconsts) {
        size_t cap = t->capconsts ? t->capconsts * 2 : 64;
        jobj **v = realloc(t->consts, cap * sizeof *v);
        if (!v) return PL_ERR_NOMEM;
        t->consts = v;
        t->capconsts = cap;
    }
    o->rc = RC_IMMORTAL;
    t->consts[t->nconsts++] = o;
    return 0;
}

/* An immortal string owned by the template; hash and ASCII flag are
 * computed now so renders never write to it. */
jv jt_const_str(pl_jinja_template *t, const char *s, size_t len, int *ok)
{
    jstr *js = jstr_new(s, len);
    if (!js || add_const(t, &js->h)) { free(js); *ok = 0; return jv_none(); }
    jstr_hash(js);
    jstr_is_ascii(js);
    *ok = 1;
    return jv_obj(js);
}

int jt_intern(pl_jinja_template *t, const char *s, size_t len, uint32_t *sym)
{
    jsyms *y = &t->syms;
    for (uint32_t i = 0; i < y->n; i++)
        if (y->lens[i] == len && !memcmp(y->names[i], s, len)) { *sym = i; return 0; }
    if (y->n == y->cap) {
        uint32_t cap = y->cap ? y->cap * 2 : 64;
        char **nm = realloc(y->names, cap * sizeof *nm);
        if (!nm) return PL_ERR_NOMEM;
        y->names = nm;
        uint32_t *ln = realloc(y->lens, cap * sizeof *ln);
        if (!ln) return PL_ERR_NOMEM;
        y->lens = ln;
        int *bi = realloc(y->builtin, cap * sizeof *bi);
        if (!bi) return PL_ERR_NOMEM;
        y->builtin = bi;
        y->cap = cap;
    }
    char *c = jt_alloc(t, len + 1);
    if (!c) return PL_ERR_NOMEM;
    memcpy(c, s, len);
    y->names[y->n] = c;
    y->lens[y->n] = (uint32_t)len;
    y->builtin[y->n] = builtin_global_id(s, len);
    *sym = y->n++;
    return 0;
}

/* ================================================================ parser state */

typedef struct parser {
    pl_jinja_template *t;
    jtok *tk;
    size_t n, i;
    char *err;
    size_t errlen;
    int rc;             /* first error */
    int depth;          /* recursion guard */
    int loops;          /* enclosing for loops (break/continue) */
} parser;

#define MAX_PARSE_DEPTH 200

static jtok *cur(parser *P) { return &P->tk[P->i]; }
static jtok *look(parser *P) { return &P->tk[P->i + 1 < P->n ? P->i + 1 : P->i]; }
static jtok *advance(parser *P) { jtok *k = &P->tk[P->i]; if (P->i + 1 < P->n) P->i++; return k; }

static void *fail_at(parser *P, const jtok *k, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void *fail_at(parser *P, const jtok *k, const char *kind, const char *fmt, ...)
{
    if (P->rc) return NULL;
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    jt_linecol(P->t, k->pos, &line, &col);
    P->rc = pl_seterr(P->err, P->errlen, PL_ERR_PARSE, "%s: line %d, column %d: %s", kind, line, col, msg);
    return NULL;
}
#define FAIL(P, ...) fail_at((P), cur(P), "TemplateSyntaxError", __VA_ARGS__)

static void *oom(parser *P)
{
    if (!P->rc) P->rc = pl_seterr(P->err, P->errlen, PL_ERR_NOMEM, "out of memory");
    return NULL;
}

static const char *describe(parser *P, const jtok *k, char *buf, size_t n)
{
    switch (k->type) {
    case T_EOF: return "end of template";
    case T_DATA: return "template data";
    case T_VAR_BEGIN: return "begin of print statement";
    case T_VAR_END: return "end of print statement";
    case T_BLOCK_BEGIN: return "begin of statement block";
    case T_BLOCK_END: return "end of statement block";
    default:
        snprintf(buf, n, "%.*s", (int)(k->len < 40 ? k->len : 40), P->t->src + k->pos);
        return buf;
    }
}

static jnode *new_node(parser *P, int kind, const jtok *at)
{
    jnode *nd = jt_alloc(P->t, sizeof *nd);
    if (!nd) return oom(P);
    nd->kind = (uint8_t)kind;
    int col;
    jt_linecol(P->t, at->pos, &nd->line, &col);
    nd->col = col;
    nd->fid = -1;
    return nd;
}

/* growable node list, copied into the arena when done */
typedef struct nvec { jnode **v; int n, cap; } nvec;

static int nv_push(parser *P, nvec *v, jnode *x)
{
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 8;
        jnode **nv = realloc(v->v, (size_t)cap * sizeof *nv);
        if (!nv) { oom(P); return -1; }
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return 0;
}

static jnode **nv_done(parser *P, nvec *v, int *count)
{
    *count = v->n;
    jnode **out = NULL;
    if (v->n) {
        out = jt_alloc(P->t, (size_t)v->n * sizeof *out);
        if (out) memcpy(out, v->v, (size_t)v->n * sizeof *out);
        else oom(P);
    }
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
    return out;
}

static int tok_is_name(parser *P, const jtok *k, const char *name)
{
    size_t l = strlen(name);
    return k->type == T_NAME && k->len == l && !memcmp(P->t->src + k->pos, name, l);
}
#define AT_NAME(P, nm) tok_is_name((P), cur(P), (nm))
#define AT_OP(P, o) (cur(P)->type == T_OP && cur(P)->op == (o))

static int skip_name(parser *P, const char *name)
{
    if (AT_NAME(P, name)) { advance(P); return 1; }
    return 0;
}

static int skip_op(parser *P, int op)
{
    if (AT_OP(P, op)) { advance(P); return 1; }
    return 0;
}

static const char *op_text(int op)
{
    static const char *t[] = { "+", "-", "/", "//", "*", "%", "**", "~", "[", "]", "(", ")", "{", "}",
                               "==", "!=", ">", ">=", "<", "<=", "=", ".", ":", "|", ",", ";" };
    return t[op];
}

static int expect_op(parser *P, int op)
{
    if (skip_op(P, op)) return 0;
    char b[64];
    FAIL(P, "expected token '%s', got '%s'", op_text(op), describe(P, cur(P), b, sizeof b));
    return -1;
}

static int expect_type(parser *P, int type, const char *what)
{
    if (cur(P)->type == type) { advance(P); return 0; }
    char b[64];
    FAIL(P, "expected token '%s', got '%s'", what, describe(P, cur(P), b, sizeof b));
    return -1;
}

static int expect_name(parser *P, const char *name)
{
    if (skip_name(P, name)) return 0;
    char b[64];
    FAIL(P, "expected token 'name:%s', got '%s'", name, describe(P, cur(P), b, sizeof b));
    return -1;
}

static int intern_tok(parser *P, const jtok *k, uint32_t *sym)
{
    if (jt_intern(P->t, P->t->src + k->pos, k->len, sym)) { oom(P); return -1; }
    return 0;
}

static jv const_str(parser *P, const char *s, size_t len)
{
    int ok;
    jv v = jt_const_str(P->t, s, len, &ok);
    if (!ok) oom(P);
    return v;
}

/* ================================================================ expressions */

static jnode *parse_expression(parser *P, int with_condexpr);
static jnode *parse_tuple(parser *P, int simplified, int with_condexpr, const char *end_name,
                          int explicit_parens, int with_namespace);
static jnode *parse_unary(parser *P, int with_filter);
static jnode *parse_primary(parser *P, int with_namespace);
static jnode *parse_postfix(parser *P, jnode *node);
static jnode *parse_filter(parser *P, jnode *node, int start_inline);
static int parse_call_args(parser *P, jargs *a);

static jnode *parse_or(parser *P);

static jnode *parse_condexpr(parser *P)
{
    jnode *e1 = parse_or(P);
    while (e1 && AT_NAME(P, "if")) {
        jtok *at = advance(P);
        jnode *n = new_node(P, N_CONDEXPR, at);
        if (!n) return NULL;
        n->b = e1;
        n->a = parse_or(P);
        if (!n->a) return NULL;
        if (skip_name(P, "else")) {
            n->c = parse_condexpr(P);
            if (!n->c) return NULL;
        }
        e1 = n;
    }
    return e1;
}

static jnode *parse_binary_chain(parser *P, int kind, const char *kw, jnode *(*sub)(parser *))
{
    jnode *left = sub(P);
    while (left && AT_NAME(P, kw)) {
        jtok *at = advance(P);
        jnode *n = new_node(P, kind, at);
        if (!n) return NULL;
        n->a = left;
        n->b = sub(P);
        if (!n->b) return NULL;
        left = n;
    }
    return left;
}

static jnode *parse_not(parser *P);
static jnode *parse_and(parser *P) { return parse_binary_chain(P, N_AND, "and", parse_not); }
static jnode *parse_or(parser *P) { return parse_binary_chain(P, N_OR, "or", parse_and); }

static jnode *parse_compare(parser *P);
static jnode *parse_not(parser *P)
{
    if (AT_NAME(P, "not")) {
        jtok *at = advance(P);
        jnode *n = new_node(P, N_NOT, at);
        if (!n) return NULL;
        if (++P->depth > MAX_PARSE_DEPTH) return FAIL(P, "expression nested too deeply");
        n->a = parse_not(P);
        P->depth--;
        return n->a ? n : NULL;
    }
    return parse_compare(P);
}

static jnode *parse_math1(parser *P);
static jnode *parse_compare(parser *P)
{
    jtok *at = cur(P);
    jnode *expr = parse_math1(P);
    if (!expr) return NULL;
    nvec ops = {0};
    uint8_t opv[64];
    for (;;) {
        int op = -1;
        jtok *k = cur(P);
        if (k->type == T_OP) {
            switch (k->op) {
            case O_EQ: op = CMP_EQ; break;
            case O_NE: op = CMP_NE; break;
            case O_LT: op = CMP_LT; break;
            case O_LTEQ: op = CMP_LE; break;
            case O_GT: op = CMP_GT; break;
            case O_GTEQ: op = CMP_GE; break;
            }
            if (op >= 0) advance(P);
        } else if (AT_NAME(P, "in")) {
            advance(P);
            op = CMP_IN;
        } else if (AT_NAME(P, "not") && tok_is_name(P, look(P), "in")) {
            advance(P);
            advance(P);
            op = CMP_NOTIN;
        }
        if (op < 0) break;
        if (ops.n >= (int)sizeof opv) { free(ops.v); return FAIL(P, "too many chained comparisons"); }
        jnode *r = parse_math1(P);
        if (!r || nv_push(P, &ops, r)) { free(ops.v); return NULL; }
        opv[ops.n - 1] = (uint8_t)op;
    }
    if (!ops.n) return expr;
    jnode *n = new_node(P, N_COMPARE, at);
    if (!n) { free(ops.v); return NULL; }
    n->a = expr;
    n->ops = jt_alloc(P->t, (size_t)ops.n);
    if (!n->ops) { free(ops.v); return oom(P); }
    memcpy(n->ops, opv, (size_t)ops.n);
    n->kids = nv_done(P, &ops, &n->nkids);
    return P->rc ? NULL : n;
}

static jnode *binop_node(parser *P, jtok *at, int op, jnode *l, jnode *r)
{
    if (!r) return NULL;
    jnode *n = new_node(P, N_BINOP, at);
    if (!n) return NULL;
    n->op = (uint8_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_concat(parser *P);
static jnode *parse_math1(parser *P)
{
    jnode *left = parse_concat(P);
    while (left && (AT_OP(P, O_ADD) || AT_OP(P, O_SUB))) {
        jtok *at = advance(P);
        left = binop_node(P, at, at->op == O_ADD ? OP_ADD : OP_SUB, left, parse_concat(P));
    }
    return left;
}

static jnode *parse_math2(parser *P);
static jnode *parse_concat(parser *P)
{
    jtok *at = cur(P);
    jnode *first = parse_math2(P);
    if (!first || !AT_OP(P, O_TILDE)) return first;
    nvec v = {0};
    if (nv_push(P, &v, first)) return NULL;
    while (AT_OP(P, O_TILDE)) {
        advance(P);
        jnode *x = parse_math2(P);
        if (!x || nv_push(P, &v, x)) { free(v.v); return NULL; }
    }
    jnode *n = new_node(P, N_CONCAT, at);
    if (!n) { free(v.v); return NULL; }
    n->kids = nv_done(P, &v, &n->nkids);
    return P->rc ? NULL : n;
}

static jnode *parse_pow(parser *P);
static jnode *parse_math2(parser *P)
{
    jnode *left = parse_pow(P);
    while (left && cur(P)->type == T_OP &&
           (cur(P)->op == O_MUL || cur(P)->op == O_DIV || cur(P)->op == O_FLOORDIV || cur(P)->op == O_MOD)) {
        jtok *at = advance(P);
        int op = at->op == O_MUL ? OP_MUL : at->op == O_DIV ? OP_DIV : at->op == O_FLOORDIV ? OP_FLOORDIV : OP_MOD;
        left = binop_node(P, at, op, left, parse_pow(P));
    }
    return left;
}

static jnode *parse_pow(parser *P)
{
    jnode *left = parse_unary(P, 1);
    while (left && AT_OP(P, O_POW)) {
        jtok *at = advance(P);
        left = binop_node(P, at, OP_POW, left, parse_unary(P, 1));
    }
    return left;
}

static jnode *parse_filter_expr(parser *P, jnode *node);

static jnode *parse_unary(parser *P, int with_filter)
{
    if (++P->depth > MAX_PARSE_DEPTH) return FAIL(P, "expression nested too deeply");
    jnode *node;
    if (AT_OP(P, O_SUB) || AT_OP(P, O_ADD)) {
        jtok *at = advance(P);
        node = new_node(P, at->op == O_SUB ? N_NEG : N_POS, at);
        if (node && !(node->a = parse_unary(P, 0))) node = NULL;
    } else {
        node = parse_primary(P, 0);
    }
    if (node) node = parse_postfix(P, node);
    if (node && with_filter) node = parse_filter_expr(P, node);
    P->depth--;
    return node;
}

static jnode *parse_list_or_dict(parser *P, int dict)
{
    jtok *at = advance(P);
    int close = dict ? O_RBRACE : O_RBRACKET;
    nvec keys = {0}, vals = {0};
    while (!AT_OP(P, close)) {
        if (keys.n && expect_op(P, O_COMMA)) goto bad;
        if (AT_OP(P, close)) break;
        jnode *k = parse_expression(P, 1);
        if (!k || nv_push(P, &keys, k)) goto bad;
        if (dict) {
            if (expect_op(P, O_COLON)) goto bad;
            jnode *v = parse_expression(P, 1);
            if (!v || nv_push(P, &vals, v)) goto bad;
        }
    }
    if (expect_op(P, close)) goto bad;
    jnode *n = new_node(P, dict ? N_DICT : N_LIST, at);
    if (!n) goto bad;
    n->kids = nv_done(P, &keys, &n->nkids);
    n->kids2 = nv_done(P, &vals, &n->nkids2);
    return P->rc ? NULL : n;
bad:
    free(keys.v);
    free(vals.v);
    return NULL;
}

static jnode *parse_primary(parser *P, int with_namespace)
{
    jtok *k = cur(P);
    jnode *n;
    char b[64];
    switch (k->type) {
    case T_NAME: {
        advance(P);
        n = new_node(P, N_CONST, k);
        if (!n) return NULL;
        if (tok_is_name(P, k, "true") || tok_is_name(P, k, "True")) { n->val = jv_bool(1); return n; }
        if (tok_is_name(P, k, "false") || tok_is_name(P, k, "False")) { n->val = jv_bool(0); return n; }
        if (tok_is_name(P, k, "none") || tok_is_name(P, k, "None")) { n->val = jv_none(); return n; }
        if (with_namespace && AT_OP(P, O_DOT)) {
            advance(P);
            jtok *attr = cur(P);
            if (expect_type(P, T_NAME, "name")) return NULL;
            n->kind = N_NSREF;
            if (intern_tok(P, k, &n->sym) || intern_tok(P, attr, &n->sym2)) return NULL;
            n->val = const_str(P, P->t->src + attr->pos, attr->len);
            return P->rc ? NULL : n;
        }
        n->kind = N_NAME;
        if (intern_tok(P, k, &n->sym)) return NULL;
        return n;
    }
    case T_STRING: {
        advance(P);
        n = new_node(P, N_CONST, k);
        if (!n) return NULL;
        if (cur(P)->type != T_STRING) {
            n->val = const_str(P, k->str, k->slen);
            return P->rc ? NULL : n;
        }
        pl_buf b2;                       /* adjacent literals concatenate */
        pl_buf_init(&b2);
        pl_buf_append(&b2, k->str, k->slen);
        while (cur(P)->type == T_STRING) {
            jtok *x = advance(P);
            pl_buf_append(&b2, x->str, x->slen);
        }
        if (!pl_buf_ok(&b2)) { pl_buf_free(&b2); return oom(P); }
        n->val = const_str(P, b2.data, b2.len);
        pl_buf_free(&b2);
        return P->rc ? NULL : n;
    }
    case T_INT: case T_FLOAT:
        advance(P);
        n = new_node(P, N_CONST, k);
        if (!n) return NULL;
        n->val = k->type == T_INT ? jv_int(k->num.i) : jv_float(k->num.f);
        return n;
    case T_OP:
        if (k->op == O_LPAREN) {
            advance(P);
            n = parse_tuple(P, 0, 1, NULL, 1, 0);
            if (!n || expect_op(P, O_RPAREN)) return NULL;
            return n;
        }
        if (k->op == O_LBRACKET) return parse_list_or_dict(P, 0);
        if (k->op == O_LBRACE) return parse_list_or_dict(P, 1);
        break;
    }
    return FAIL(P, "unexpected '%s'", describe(P, k, b, sizeof b));
}

static int is_tuple_end(parser *P, const char *end_name)
{
    jtok *k = cur(P);
    if (k->type == T_VAR_END || k->type == T_BLOCK_END || k->type == T_EOF || AT_OP(P, O_RPAREN)) return 1;
    return end_name && tok_is_name(P, k, end_name);
}

static jnode *parse_tuple(parser *P, int simplified, int with_condexpr, const char *end_name,
                          int explicit_parens, int with_namespace)
{
    jtok *at = cur(P);
    nvec v = {0};
    int is_tuple = 0;
    for (;;) {
        if (v.n && expect_op(P, O_COMMA)) goto bad;
        if (is_tuple_end(P, end_name)) break;
        jnode *x = simplified ? parse_primary(P, with_namespace) : parse_expression(P, with_condexpr);
        if (!x || nv_push(P, &v, x)) goto bad;
        if (AT_OP(P, O_COMMA)) is_tuple = 1;
        else break;
    }
    if (!is_tuple) {
        if (v.n) { jnode *x = v.v[0]; free(v.v); return x; }
        if (!explicit_parens) {
            char b[64];
            FAIL(P, "Expected an expression, got '%s'", describe(P, cur(P), b, sizeof b));
            goto bad;
        }
    }
    jnode *n = new_node(P, N_TUPLE, at);
    if (!n) goto bad;
    n->kids = nv_done(P, &v, &n->nkids);
    return P->rc ? NULL : n;
bad:
    free(v.v);
    return NULL;
}

static jnode *parse_expression(parser *P, int with_condexpr)
{
    if (++P->depth > MAX_PARSE_DEPTH) return FAIL(P, "expression nested too deeply");
    jnode *n = with_condexpr ? parse_condexpr(P) : parse_or(P);
    P->depth--;
    return n;
}

static jnode *parse_subscribed(parser *P)
{
    jtok *at = cur(P);
    jnode *parts[3] = { NULL, NULL, NULL };
    if (AT_OP(P, O_COLON)) {
        advance(P);
    } else {
        jnode *e = parse_expression(P, 1);
        if (!e || !AT_OP(P, O_COLON)) return e;
        advance(P);
        parts[0] = e;
    }
    if (!AT_OP(P, O_COLON) && !AT_OP(P, O_RBRACKET) && !AT_OP(P, O_COMMA)) {
        if (!(parts[1] = parse_expression(P, 1))) return NULL;
    }
    if (AT_OP(P, O_COLON)) {
        advance(P);
        if (!AT_OP(P, O_RBRACKET) && !AT_OP(P, O_COMMA) && !(parts[2] = parse_expression(P, 1))) return NULL;
    }
    jnode *n = new_node(P, N_SLICE, at);
    if (!n) return NULL;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    n->flags = 1;   /* marks a bare slice until attached to its object */
    return n;
}

static int attr_setup(parser *P, jnode *n, const char *name, size_t len)
{
    n->val = const_str(P, name, len);
    if (P->rc) return -1;
    static const int types[4] = { JV_STR, JV_DICT, JV_LIST, JV_LOOP };
    for (int i = 0; i < 4; i++) {
        int unsafe = 0;
        n->meth[i] = (int16_t)builtin_method_id(types[i], name, len, &unsafe);
        if (unsafe) n->unsafe |= (uint8_t)(1 << i);
    }
    return 0;
}

static jnode *parse_subscript(parser *P, jnode *node)
{
    jtok *at = advance(P);
    if (at->op == O_DOT) {
        jtok *k = advance(P);
        if (k->type == T_NAME) {
            jnode *n = new_node(P, N_GETATTR, at);
            if (!n) return NULL;
            n->a = node;
            if (attr_setup(P, n, P->t->src + k->pos, k->len)) return NULL;
            return n;
        }
        if (k->type != T_INT) return fail_at(P, k, "TemplateSyntaxError", "expected name or number");
        jnode *c = new_node(P, N_CONST, k);
        jnode *n = new_node(P, N_GETITEM, at);
        if (!c || !n) return NULL;
        c->val = jv_int(k->num.i);
        n->a = node;
        n->b = c;
        return n;
    }
    /* "[" */
    nvec args = {0};
    while (!AT_OP(P, O_RBRACKET)) {
        if (args.n && expect_op(P, O_COMMA)) { free(args.v); return NULL; }
        jnode *x = parse_subscribed(P);
        if (!x || nv_push(P, &args, x)) { free(args.v); return NULL; }
    }
    if (expect_op(P, O_RBRACKET)) { free(args.v); return NULL; }
    if (args.n == 1 && args.v[0]->kind == N_SLICE && args.v[0]->flags == 1) {
        jnode *s = args.v[0];
        free(args.v);
        s->flags = 0;
        s->a = node;
        return s;
    }
    if (!args.n) { free(args.v); return fail_at(P, at, "TemplateSyntaxError", "expected subscript expression"); }
    jnode *n = new_node(P, N_GETITEM, at);
    if (!n) { free(args.v); return NULL; }
    n->a = node;
    if (args.n == 1) {
        n->b = args.v[0];
        free(args.v);
    } else {
        for (int i = 0; i < args.n; i++)
            if (args.v[i]->kind == N_SLICE && args.v[i]->flags == 1) {
                free(args.v);
                return fail_at(P, at, "TemplateSyntaxError", "slices inside tuple subscripts are not supported");
            }
        jnode *t = new_node(P, N_TUPLE, at);
        if (!t) { free(args.v); return NULL; }
        t->kids = nv_done(P, &args, &t->nkids);
        n->b = t;
    }
    return P->rc ? NULL : n;
}

static jnode *parse_call(parser *P, jnode *callee)
{
    jnode *n = new_node(P, N_CALL, cur(P));
    if (!n) return NULL;
    n->a = callee;
    if (parse_call_args(P, &n->args)) return NULL;
    return n;
}

static jnode *parse_postfix(parser *P, jnode *node)
{
    while (node) {
        if (AT_OP(P, O_DOT) || AT_OP(P, O_LBRACKET)) node = parse_subscript(P, node);
        else if (AT_OP(P, O_LPAREN)) node = parse_call(P, node);
        else break;
    }
    return node;
}

static int parse_call_args(parser *P, jargs *a)
{
    jtok *open = cur(P);
    if (expect_op(P, O_LPAREN)) return -1;
    nvec pos = {0}, kwv = {0};
    uint32_t kws[64];
    int require_comma = 0;
    while (!AT_OP(P, O_RPAREN)) {
        if (require_comma) {
            if (expect_op(P, O_COMMA)) goto bad;
            if (AT_OP(P, O_RPAREN)) break;
        }
        if (AT_OP(P, O_MUL)) {
            if (a->dyn_args || a->dyn_kwargs) goto invalid;
            advance(P);
            if (!(a->dyn_args = parse_expression(P, 1))) goto bad;
        } else if (AT_OP(P, O_POW)) {
            if (a->dyn_kwargs) goto invalid;
            advance(P);
            if (!(a->dyn_kwargs = parse_expression(P, 1))) goto bad;
        } else if (cur(P)->type == T_NAME && look(P)->type == T_OP && look(P)->op == O_ASSIGN) {
            if (a->dyn_kwargs) goto invalid;
            if (kwv.n >= (int)PL_ARRAY_LEN(kws)) { FAIL(P, "too many keyword arguments"); goto bad; }
            jtok *k = advance(P);
            advance(P);
            if (intern_tok(P, k, &kws[kwv.n])) goto bad;
            jnode *v = parse_expression(P, 1);
            if (!v || nv_push(P, &kwv, v)) goto bad;
        } else {
            if (a->dyn_args || a->dyn_kwargs || kwv.n) goto invalid;
            jnode *v = parse_expression(P, 1);
            if (!v || nv_push(P, &pos, v)) goto bad;
        }
        require_comma = 1;
    }
    if (expect_op(P, O_RPAREN)) goto bad;
    a->pos = nv_done(P, &pos, &a->npos);
    if (kwv.n) {
        a->kwsym = jt_alloc(P->t, (size_t)kwv.n * sizeof *a->kwsym);
        if (!a->kwsym) { oom(P); goto bad; }
        memcpy(a->kwsym, kws, (size_t)kwv.n * sizeof *kws);
    }
    a->kwval = nv_done(P, &kwv, &a->nkw);
    return P->rc ? -1 : 0;
invalid:
    fail_at(P, open, "TemplateSyntaxError", "invalid syntax for function call expression");
bad:
    free(pos.v);
    free(kwv.v);
    return -1;
}

/* filter/test name with optional dots: returns the id or -1 (unknown). */
static int parse_dotted_name(parser *P, pl_buf *name)
{
    jtok *k = cur(P);
    if (expect_type(P, T_NAME, "name")) return -1;
    pl_buf_append(name, P->t->src + k->pos, k->len);
    while (AT_OP(P, O_DOT)) {
        advance(P);
        k = cur(P);
        if (expect_type(P, T_NAME, "name")) return -1;
        pl_buf_putc(name, '.');
        pl_buf_append(name, P->t->src + k->pos, k->len);
    }
    return pl_buf_ok(name) ? 0 : -1;
}

static int resolve_ft(parser *P, jnode *n, const jtok *at, pl_buf *name, int is_filter)
{
    n->fid = is_filter ? builtin_filter_id(name->data, name->len) : builtin_test_id(name->data, name->len);
    n->val = const_str(P, name->data, name->len);
    (void)at;
    return P->rc ? -1 : 0;
}

/* Jinja fails at compile time on an unknown filter or test, except inside
 * an if statement or a conditional expression (a "soft" frame), where the
 * error waits until the call runs. Loop, macro and block bodies are new
 * frames and not soft again. Checked after parsing because the first branch
 * of "a|f if c" is parsed before the "if" is seen. */
static int check_unknown(parser *P, const jnode *n, int soft)
{
    if (!n || P->rc) return P->rc;
    if ((n->kind == N_FILTER || n->kind == N_TEST) && n->fid < 0 && !soft) {
        P->rc = pl_seterr(P->err, P->errlen, PL_ERR_PARSE,
                          "TemplateAssertionError: line %d, column %d: No %s named '%s'.", n->line, n->col,
                          n->kind == N_FILTER ? "filter" : "test", JSTR(n->val)->data);
        return P->rc;
    }
    int inner = soft;
    switch (n->kind) {
    case N_IF: case N_CONDEXPR: soft = inner = 1; break;
    case N_FOR: case N_MACRO: case N_CALLBLOCK: case N_SETBLOCK: case N_FILTERBLOCK: case N_WITH:
        inner = 0; break;
    }
    /* expressions of a statement run in the outer frame, bodies in `inner` */
    check_unknown(P, n->a, soft);
    check_unknown(P, n->b, soft);
    check_unknown(P, n->c, soft);
    check_unknown(P, n->d, soft);
    for (int i = 0; i < n->args.npos; i++) check_unknown(P, n->args.pos[i], soft);
    for (int i = 0; i < n->args.nkw; i++) check_unknown(P, n->args.kwval[i], soft);
    check_unknown(P, n->args.dyn_args, soft);
    check_unknown(P, n->args.dyn_kwargs, soft);
    int body_is_expr = n->kind == N_COMPARE || n->kind == N_CONCAT || n->kind == N_LIST ||
                       n->kind == N_TUPLE || n->kind == N_DICT || n->kind == N_PRINT;
    for (int i = 0; i < n->nkids; i++) check_unknown(P, n->kids[i], body_is_expr ? soft : inner);
    for (int i = 0; i < n->nkids2; i++) check_unknown(P, n->kids2[i], body_is_expr ? soft : inner);
    for (int i = 0; i < n->ndefaults; i++) check_unknown(P, n->defaults[i], inner);
    return P->rc;
}

static jnode *parse_filter(parser *P, jnode *node, int start_inline)
{
    while (AT_OP(P, O_PIPE) || start_inline) {
        if (!start_inline) advance(P);
        start_inline = 0;
        jtok *at = cur(P);
        pl_buf name;
        pl_buf_init(&name);
        jnode *n = new_node(P, N_FILTER, at);
        if (!n || parse_dotted_name(P, &name) || resolve_ft(P, n, at, &name, 1)) { pl_buf_free(&name); return NULL; }
        pl_buf_free(&name);
        n->a = node;
        if (AT_OP(P, O_LPAREN) && parse_call_args(P, &n->args)) return NULL;
        node = n;
    }
    return node;
}

static jnode *parse_test(parser *P, jnode *node)
{
    jtok *is = advance(P);
    int negated = skip_name(P, "not");
    jtok *at = cur(P);
    pl_buf name;
    pl_buf_init(&name);
    jnode *n = new_node(P, N_TEST, is);
    if (!n || parse_dotted_name(P, &name) || resolve_ft(P, n, at, &name, 0)) { pl_buf_free(&name); return NULL; }
    pl_buf_free(&name);
    n->a = node;
    jtok *k = cur(P);
    if (AT_OP(P, O_LPAREN)) {
        if (parse_call_args(P, &n->args)) return NULL;
    } else if ((k->type == T_NAME || k->type == T_STRING || k->type == T_INT || k->type == T_FLOAT ||
                (k->type == T_OP && (k->op == O_LPAREN || k->op == O_LBRACKET || k->op == O_LBRACE))) &&
               !AT_NAME(P, "else") && !AT_NAME(P, "or") && !AT_NAME(P, "and")) {
        if (AT_NAME(P, "is")) return FAIL(P, "You cannot chain multiple tests with is");
        jnode *arg = parse_primary(P, 0);
        if (arg) arg = parse_postfix(P, arg);
        if (!arg) return NULL;
        n->args.pos = jt_alloc(P->t, sizeof(jnode *));
        if (!n->args.pos) return oom(P);
        n->args.pos[0] = arg;
        n->args.npos = 1;
    }
    if (!negated) return n;
    jnode *nt = new_node(P, N_NOT, is);
    if (!nt) return NULL;
    nt->a = n;
    return nt;
}

static jnode *parse_filter_expr(parser *P, jnode *node)
{
    while (node) {
        if (AT_OP(P, O_PIPE)) node = parse_filter(P, node, 0);
        else if (AT_NAME(P, "is")) node = parse_test(P, node);
        else if (AT_OP(P, O_LPAREN)) node = parse_call(P, node);
        else break;
    }
    return node;
}

/* ================================================================ statements */

static jnode **subparse(parser *P, const char *const *end_names, int *count);

/* "name:x" end tokens of the enclosing statement */
static jnode **parse_statements(parser *P, const char *const *end_names, int drop_needle, int *count)
{
    skip_op(P, O_COLON);
    if (expect_type(P, T_BLOCK_END, "end of statement block")) return NULL;
    jnode **body = subparse(P, end_names, count);
    if (P->rc) return NULL;
    if (cur(P)->type == T_EOF) {
        char want[200] = "";
        for (int i = 0; end_names[i]; i++) {
            size_t l = strlen(want);
            snprintf(want + l, sizeof want - l, "%s'%s'", i ? " or " : "", end_names[i]);
        }
        FAIL(P, "Unexpected end of template. Jinja was looking for the following tags: %s.", want);
        return NULL;
    }
    if (drop_needle) advance(P);
    return body;
}

static int can_assign(const jnode *n)
{
    if (n->kind == N_NAME || n->kind == N_NSREF) return 1;
    if (n->kind != N_TUPLE) return 0;
    for (int i = 0; i < n->nkids; i++)
        if (!can_assign(n->kids[i])) return 0;
    return 1;
}

static jnode *parse_assign_target(parser *P, int name_only, const char *end_name, int with_namespace)
{
    jtok *at = cur(P);
    jnode *t;
    if (name_only) {
        if (at->type != T_NAME) { expect_type(P, T_NAME, "name"); return NULL; }
        t = parse_primary(P, 0);
    } else {
        t = parse_tuple(P, 1, 1, end_name, 0, with_namespace);
    }
    if (!t) return NULL;
    if (!can_assign(t)) {
        const char *what = t->kind == N_CONST ? "const" : t->kind == N_TUPLE ? "tuple" : "expression";
        return fail_at(P, at, "TemplateSyntaxError", "can't assign to '%s'", what);
    }
    return t;
}

static int parse_signature(parser *P, jnode *n)
{
    if (expect_op(P, O_LPAREN)) return -1;
    nvec defs = {0};
    uint32_t params[64];
    int np = 0;
    while (!AT_OP(P, O_RPAREN)) {
        if (np && expect_op(P, O_COMMA)) goto bad;
        jtok *k = cur(P);
        if (expect_type(P, T_NAME, "name")) goto bad;
        if (np >= (int)PL_ARRAY_LEN(params)) { FAIL(P, "too many macro parameters"); goto bad; }
        if (intern_tok(P, k, &params[np])) goto bad;
        np++;
        if (skip_op(P, O_ASSIGN)) {
            jnode *d = parse_expression(P, 1);
            if (!d || nv_push(P, &defs, d)) goto bad;
        } else if (defs.n) {
            FAIL(P, "non-default argument follows default argument");
            goto bad;
        }
    }
    if (expect_op(P, O_RPAREN)) goto bad;
    n->nparams = np;
    if (np) {
        n->params = jt_alloc(P->t, (size_t)np * sizeof *params);
        if (!n->params) { oom(P); goto bad; }
        memcpy(n->params, params, (size_t)np * sizeof *params);
    }
    n->defaults = nv_done(P, &defs, &n->ndefaults);
    return P->rc ? -1 : 0;
bad:
    free(defs.v);
    return -1;
}

/* Which of varargs/kwargs/caller a macro body reads (Jinja only accepts
 * extra arguments when the body uses them). */
static int scan_implicit(const jnode *n)
{
    if (!n) return 0;
    int f = 0;
    if (n->kind == N_NAME) {
        if (n->sym == SYM_VARARGS) f |= MF_VARARGS;
        if (n->sym == SYM_KWARGS) f |= MF_KWARGS;
        if (n->sym == SYM_CALLER) f |= MF_CALLER;
    }
    f |= scan_implicit(n->a) | scan_implicit(n->b) | scan_implicit(n->c) | scan_implicit(n->d);
    for (int i = 0; i < n->nkids; i++) f |= scan_implicit(n->kids[i]);
    for (int i = 0; i < n->nkids2; i++) f |= scan_implicit(n->kids2[i]);
    for (int i = 0; i < n->args.npos; i++) f |= scan_implicit(n->args.pos[i]);
    for (int i = 0; i < n->args.nkw; i++) f |= scan_implicit(n->args.kwval[i]);
    f |= scan_implicit(n->args.dyn_args) | scan_implicit(n->args.dyn_kwargs);
    for (int i = 0; i < n->ndefaults; i++) f |= scan_implicit(n->defaults[i]);
    return f;
}

static const char *const END_FOR[] = { "endfor", "else", NULL };
static const char *const END_FOR2[] = { "endfor", NULL };
static const char *const END_IF[] = { "elif", "else", "endif", NULL };
static const char *const END_IF2[] = { "endif", NULL };
static const char *const END_SET[] = { "endset", NULL };
static const char *const END_MACRO[] = { "endmacro", NULL };
static const char *const END_CALL[] = { "endcall", NULL };
static const char *const END_FILTER[] = { "endfilter", NULL };
static const char *const END_WITH[] = { "endwith", NULL };
static const char *const END_GEN[] = { "endgeneration", NULL };

static jnode *parse_for(parser *P, jtok *at)
{
    jnode *n = new_node(P, N_FOR, at);
    if (!n) return NULL;
    if (!(n->a = parse_assign_target(P, 0, "in", 0))) return NULL;
    const jnode *tg = n->a;
    for (int i = 0; i < (tg->kind == N_TUPLE ? tg->nkids : 1); i++) {
        const jnode *x = tg->kind == N_TUPLE ? tg->kids[i] : tg;
        if (x->kind == N_NAME && x->sym == SYM_LOOP)
            return fail_at(P, at, "TemplateAssertionError", "Can't assign to special loop variable in for-loop target");
    }
    if (expect_name(P, "in")) return NULL;
    if (!(n->b = parse_tuple(P, 0, 0, "recursive", 0, 0))) return NULL;
    if (skip_name(P, "if") && !(n->c = parse_expression(P, 1))) return NULL;
    n->op = (uint8_t)skip_name(P, "recursive");
    P->loops++;
    n->kids = parse_statements(P, END_FOR, 0, &n->nkids);
    P->loops--;
    if (P->rc) return NULL;
    jtok *e = advance(P);
    if (tok_is_name(P, e, "else")) {
        n->kids2 = parse_statements(P, END_FOR2, 1, &n->nkids2);
        if (P->rc) return NULL;
    }
    return n;
}

static jnode *parse_if(parser *P, jtok *at)
{
    jnode *root = new_node(P, N_IF, at), *node = root;
    if (!root) return NULL;
    for (;;) {
        if (!(node->a = parse_tuple(P, 0, 0, NULL, 0, 0))) return NULL;
        node->kids = parse_statements(P, END_IF, 0, &node->nkids);
        if (P->rc) return NULL;
        jtok *k = advance(P);
        if (tok_is_name(P, k, "elif")) {
            jnode *e = new_node(P, N_IF, k);
            if (!e) return NULL;
            node->kids2 = jt_alloc(P->t, sizeof(jnode *));
            if (!node->kids2) return oom(P);
            node->kids2[0] = e;
            node->nkids2 = 1;
            node = e;
            continue;
        }
        if (tok_is_name(P, k, "else")) {
            node->kids2 = parse_statements(P, END_IF2, 1, &node->nkids2);
            if (P->rc) return NULL;
        }
        break;
    }
    return root;
}

static jnode *parse_set(parser *P, jtok *at)
{
    jnode *target = parse_assign_target(P, 0, NULL, 1);
    if (!target) return NULL;
    if (skip_op(P, O_ASSIGN)) {
        jnode *n = new_node(P, N_SET, at);
        if (!n) return NULL;
        n->a = target;
        n->b = parse_tuple(P, 0, 1, NULL, 0, 0);
        return n->b ? n : NULL;
    }
    jnode *n = new_node(P, N_SETBLOCK, at);
    if (!n) return NULL;
    n->a = target;
    if (AT_OP(P, O_PIPE) && !(n->b = parse_filter(P, NULL, 0))) return NULL;
    n->kids = parse_statements(P, END_SET, 1, &n->nkids);
    return P->rc ? NULL : n;
}

static jnode *parse_macro_like(parser *P, jtok *at, int kind)
{
    jnode *n = new_node(P, kind, at);
    if (!n) return NULL;
    if (kind == N_MACRO) {
        jtok *k = cur(P);
        if (expect_type(P, T_NAME, "name")) return NULL;
        if (intern_tok(P, k, &n->sym)) return NULL;
        n->val = const_str(P, P->t->src + k->pos, k->len);
        if (P->rc || parse_signature(P, n)) return NULL;
    } else {
        if (AT_OP(P, O_LPAREN) && parse_signature(P, n)) return NULL;
        jnode *call = parse_expression(P, 1);
        if (!call) return NULL;
        if (call->kind != N_CALL) return fail_at(P, at, "TemplateSyntaxError", "expected call");
        n->a = call;
    }
    int was_loops = P->loops;
    P->loops = 0;
    n->kids = parse_statements(P, kind == N_MACRO ? END_MACRO : END_CALL, 1, &n->nkids);
    P->loops = was_loops;
    if (P->rc) return NULL;
    for (int i = 0; i < n->nkids; i++) n->flags |= (uint16_t)scan_implicit(n->kids[i]);
    return n;
}

static jnode *parse_with(parser *P, jtok *at)
{
    jnode *n = new_node(P, N_WITH, at);
    if (!n) return NULL;
    nvec targets = {0}, values = {0};
    while (cur(P)->type != T_BLOCK_END) {
        if (targets.n && expect_op(P, O_COMMA)) goto bad;
        jnode *t = parse_assign_target(P, 0, NULL, 0);
        if (!t || nv_push(P, &targets, t) || expect_op(P, O_ASSIGN)) goto bad;
        jnode *v = parse_expression(P, 1);
        if (!v || nv_push(P, &values, v)) goto bad;
    }
    n->kids2 = nv_done(P, &targets, &n->nkids2);
    n->args.pos = nv_done(P, &values, &n->args.npos);
    if (P->rc) return NULL;
    n->kids = parse_statements(P, END_WITH, 1, &n->nkids);
    return P->rc ? NULL : n;
bad:
    free(targets.v);
    free(values.v);
    return NULL;
}

static jnode *parse_statement(parser *P)
{
    jtok *k = cur(P);
    if (k->type != T_NAME) return FAIL(P, "tag name expected");
    if (++P->depth > MAX_PARSE_DEPTH) return FAIL(P, "statements nested too deeply");
    jnode *n = NULL;
    advance(P);
    if (tok_is_name(P, k, "for")) n = parse_for(P, k);
    else if (tok_is_name(P, k, "if")) n = parse_if(P, k);
    else if (tok_is_name(P, k, "set")) n = parse_set(P, k);
    else if (tok_is_name(P, k, "macro")) n = parse_macro_like(P, k, N_MACRO);
    else if (tok_is_name(P, k, "call")) n = parse_macro_like(P, k, N_CALLBLOCK);
    else if (tok_is_name(P, k, "with")) n = parse_with(P, k);
    else if (tok_is_name(P, k, "print")) {
        n = new_node(P, N_PRINT, k);
        nvec v = {0};
        while (n && cur(P)->type != T_BLOCK_END) {
            if (v.n && expect_op(P, O_COMMA)) { n = NULL; break; }
            jnode *e = parse_expression(P, 1);
            if (!e || nv_push(P, &v, e)) { n = NULL; break; }
        }
        if (n) n->kids = nv_done(P, &v, &n->nkids); else free(v.v);
    } else if (tok_is_name(P, k, "filter")) {
        n = new_node(P, N_FILTERBLOCK, k);
        if (n && !(n->b = parse_filter(P, NULL, 1))) n = NULL;
        if (n) n->kids = parse_statements(P, END_FILTER, 1, &n->nkids);
    } else if (tok_is_name(P, k, "break") || tok_is_name(P, k, "continue")) {
        if (!P->loops) { P->depth--; return fail_at(P, k, "TemplateSyntaxError", "'%.*s' outside loop", (int)k->len, P->t->src + k->pos); }
        n = new_node(P, tok_is_name(P, k, "break") ? N_BREAK : N_CONTINUE, k);
    } else if (tok_is_name(P, k, "generation")) {
        /* transformers' AssistantTracker: renders its body unchanged */
        n = new_node(P, N_BODY, k);
        if (n) n->kids = parse_statements(P, END_GEN, 1, &n->nkids);
    } else if (tok_is_name(P, k, "block")) {
        /* without inheritance a block renders in place, in its own scope */
        jtok *name = cur(P);
        n = new_node(P, N_WITH, k);
        if (n && !expect_type(P, T_NAME, "name")) {
            skip_name(P, "scoped");
            skip_name(P, "required");
            static const char *const end_block[] = { "endblock", NULL };
            n->kids = parse_statements(P, end_block, 1, &n->nkids);
            if (!P->rc && cur(P)->type == T_NAME && cur(P)->len == name->len &&
                !memcmp(P->t->src + cur(P)->pos, P->t->src + name->pos, name->len))
                advance(P);
        }
    } else if (tok_is_name(P, k, "extends") || tok_is_name(P, k, "include") ||
               tok_is_name(P, k, "import") || tok_is_name(P, k, "from")) {
        /* transformers gives Jinja no loader: these fail when they run */
        n = new_node(P, N_NOLOADER, k);
        while (n && cur(P)->type != T_BLOCK_END && cur(P)->type != T_EOF) advance(P);
    } else {
        if (tok_is_name(P, k, "autoescape")) {
            P->depth--;
            return fail_at(P, k, "TemplateSyntaxError", "tag 'autoescape' is not supported in chat templates");
        }
        P->depth--;
        return fail_at(P, k, "TemplateSyntaxError", "Encountered unknown tag '%.*s'.", (int)k->len, P->t->src + k->pos);
    }
    P->depth--;
    return P->rc ? NULL : n;
}

static int flush_text(parser *P, nvec *body, pl_buf *text, const jtok *at)
{
    if (!text->len) return 0;
    if (!pl_buf_ok(text)) { oom(P); return -1; }
    jnode *n = new_node(P, N_TEXT, at);
    if (!n) return -1;
    n->val = const_str(P, text->data, text->len);
    pl_buf_reset(text);
    if (P->rc) return -1;
    return nv_push(P, body, n);
}

static jnode **subparse(parser *P, const char *const *end_names, int *count)
{
    nvec body = {0};
    pl_buf text;
    pl_buf_init(&text);
    const jtok *text_at = NULL;
    *count = 0;
    while (!P->rc) {
        jtok *k = cur(P);
        if (k->type == T_EOF) break;
        if (k->type == T_DATA) {
            /* adjacent data pieces (split by comments) become one node */
            if (!text.len) text_at = k;
            pl_buf_append(&text, P->t->src + k->pos, k->len);
            advance(P);
        } else if (k->type == T_VAR_BEGIN) {
            if (flush_text(P, &body, &text, text_at)) break;
            advance(P);
            jnode *n = new_node(P, N_PRINT, k);
            if (!n) break;
            n->a = parse_tuple(P, 0, 1, NULL, 0, 0);
            if (!n->a) break;
            if (expect_type(P, T_VAR_END, "end of print statement")) break;
            if (nv_push(P, &body, n)) break;
        } else if (k->type == T_BLOCK_BEGIN) {
            if (flush_text(P, &body, &text, text_at)) break;
            advance(P);
            int is_end = 0;
            for (int i = 0; end_names && end_names[i]; i++)
                if (AT_NAME(P, end_names[i])) is_end = 1;
            if (is_end) break;
            jnode *n = parse_statement(P);
            if (!n) break;
            if (expect_type(P, T_BLOCK_END, "end of statement block")) break;
            if (nv_push(P, &body, n)) break;
        } else {
            char b[64];
            FAIL(P, "unexpected '%s'", describe(P, k, b, sizeof b));
        }
    }
    if (!P->rc) flush_text(P, &body, &text, text_at);
    pl_buf_free(&text);
    if (P->rc) { free(body.v); return NULL; }
    return nv_done(P, &body, count);
}

int jinja_parse(pl_jinja_template *t, char *err, size_t errlen)
{
    jtoks toks = {0};
    int rc = jinja_lex(t, &toks, err, errlen);
    if (rc) { free(toks.v); return rc; }
    parser P = { .t = t, .tk = toks.v, .n = toks.n, .err = err, .errlen = errlen };
    jnode *root = jt_alloc(t, sizeof *root);
    if (!root) { free(toks.v); return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory"); }
    root->kind = N_BODY;
    root->line = 1;
    root->kids = subparse(&P, NULL, &root->nkids);
    if (!P.rc && cur(&P)->type != T_EOF) {
        char b[64];
        FAIL(&P, "unexpected '%s'", describe(&P, cur(&P), b, sizeof b));
    }
    if (!P.rc) check_unknown(&P, root, 0);
    free(toks.v);
    if (P.rc) return P.rc;
    t->root = root;
    return 0;
}

/* ================================================================ compile / free */

void pl_jinja_limits_default(pl_jinja_limits *l)
{
    l->max_output = (size_t)64 << 20;
    l->max_depth = 100;
    l->max_iterations = 10000000;
    l->max_work = (uint64_t)2 << 30;
    l->fixed_time = 0;
    l->max_time_ms = 10000;
    l->interrupt = NULL;
}

void pl_jinja_template_set_limits(pl_jinja_template *t, const pl_jinja_limits *l) { t->limits = *l; }

/* Jinja's own source preparation: every line break becomes \n and one
 * trailing newline is removed. */
static int normalise_source(pl_jinja_template *t, const char *src, size_t len)
{
    t->src = malloc(len + 1);
    if (!t->src) return PL_ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            if (i + 1 < len && src[i + 1] == '\n') i++;
            t->src[o++] = '\n';
        } else {
            t->src[o++] = src[i];
        }
    }
    if (o && t->src[o - 1] == '\n') o--;
    t->src[o] = 0;
    t->srclen = o;
    size_t nl = 1;
    for (size_t i = 0; i < o; i++) nl += t->src[i] == '\n';
    t->lines = malloc(nl * sizeof *t->lines);
    if (!t->lines) return PL_ERR_NOMEM;
    t->lines[0] = 0;
    t->nlines = 1;
    for (size_t i = 0; i < o; i++)
        if (t->src[i] == '\n') t->lines[t->nlines++] = i + 1;
    return 0;
}

int pl_jinja_compile(pl_jinja_template **out, const char *src, size_t len, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = 0;
    pl_jinja_template *t = calloc(1, sizeof *t);
    if (!t) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    pl_jinja_limits_default(&t->limits);
    int rc = normalise_source(t, src ? src : "", src ? len : 0);
    static const char *const wk[SYM__COUNT] = { "loop", "varargs", "kwargs", "caller" };
    for (int i = 0; !rc && i < SYM__COUNT; i++) {
        uint32_t s;
        rc = jt_intern(t, wk[i], strlen(wk[i]), &s);
    }
    if (rc) {
        pl_jinja_template_free(t);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    rc = jinja_parse(t, err, errlen);
    if (!rc && jinja_scope_analyze(t)) rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    if (rc) { pl_jinja_template_free(t); return rc; }
    *out = t;
    return 0;
}

void pl_jinja_template_free(pl_jinja_template *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->nconsts; i++) free(t->consts[i]);
    free(t->consts);
    struct arena_chunk *c = t->arena;
    while (c) { struct arena_chunk *nx = c->next; free(c); c = nx; }
    free(t->syms.names);
    free(t->syms.lens);
    free(t->syms.builtin);
    free(t->src);
    free(t->lines);
    free(t);
}
