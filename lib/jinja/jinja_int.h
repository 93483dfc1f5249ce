/* jinja_int.h — internals shared by the jinja_*.c files (not a public API).
 *
 * Values (jv) are 16-byte tagged unions passed by value. Scalars are
 * immediate; strings, lists, dicts, namespaces, macros, bound functions,
 * loop objects and scope frames are reference-counted heap objects (jobj).
 * Objects owned by a compiled template (constants) are immortal so that
 * concurrent renders never write to them.
 *
 * Lists and dicts are never mutated once a render can see them (the
 * ImmutableSandboxedEnvironment forbids it), so they can be shared freely.
 * The only mutable containers are frames and namespaces, which is why only
 * they can close a reference cycle; the render registers them and clears
 * the survivors when it ends (see jinja_eval.c). */
#ifndef PL_JINJA_INT_H
#define PL_JINJA_INT_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "jinja.h"

/* ================================================================ values */

enum jtype {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT,                 /* immediate */
    JV_STR, JV_LIST, JV_DICT, JV_NS, JV_MACRO, JV_FUNC, JV_LOOP,  /* objects */
    JV_BIGINT,  /* an input int beyond int64: a jstr of its decimal text; Python
                   type int; prints, compares equal and serialises exactly,
                   arithmetic on it raises OverflowError like any int64 overflow */
    JV_FRAME,                                                     /* not a value */
};
#define JV_IS_OBJ(t) ((t) >= JV_STR)

/* How an undefined value came to be, for the error raised when it is used. */
enum undef_kind {
    U_NAME,      /* name: variable name */
    U_ATTR,      /* name: attribute; aux: type of the object */
    U_ITEM,      /* no key shown (computed subscript); aux: type of the object */
    U_UNSAFE,    /* name: attribute; raises SecurityError when used */
    U_HINT,      /* name: a full message */
};

typedef struct jobj {
    int32_t rc;
    uint8_t type;       /* enum jtype */
    uint8_t pad8;
    uint16_t flags;     /* per type */
} jobj;
#define RC_IMMORTAL INT32_MAX

/* Intrusive list of the frames and namespaces alive in a render. */
typedef struct jtrack { struct jtrack *prev, *next; struct jobj *owner; } jtrack;

typedef struct jv {
    uint8_t t;          /* enum jtype */
    uint8_t ukind;      /* JV_UNDEF: enum undef_kind */
    uint16_t pad;
    uint32_t aux;       /* JV_UNDEF: type for the message */
    union {
        int64_t i;      /* JV_INT, JV_BOOL (0/1) */
        double f;
        jobj *o;
        const char *name; /* JV_UNDEF: borrowed from the template or static */
    } u;
} jv;

typedef struct jstr {
    jobj h;             /* flags: STR_ASCII_KNOWN | STR_ASCII */
    size_t len;         /* bytes */
    uint64_t hash;      /* 0 = not computed yet */
    char data[];        /* NUL-terminated */
} jstr;
#define STR_ASCII_KNOWN 1
#define STR_ASCII 2

typedef struct jlist {
    jobj h;             /* flags: LIST_TUPLE */
    size_t len, cap;
    jv *v;
} jlist;
#define LIST_TUPLE 1
/* dict.keys()/values()/items(): lists that print as dict_keys([...]) etc. and
 * refuse indexing, like Python's views */
#define LIST_VIEW_KEYS 2
#define LIST_VIEW_VALUES 4
#define LIST_VIEW_ITEMS 8
#define LIST_VIEWS (LIST_VIEW_KEYS | LIST_VIEW_VALUES | LIST_VIEW_ITEMS)

typedef struct jdent { jv key; jv val; uint64_t hash; } jdent;
typedef struct jdict {  /* also the attribute store of a namespace (JV_NS) */
    jobj h;
    size_t len, cap;
    jdent *e;
    uint32_t *idx;      /* open addressing over e, 1-based; NULL while small */
    size_t idx_cap;     /* power of two */
    jtrack track;       /* namespaces: render's tracking list */
} jdict;

struct jnode;
struct jframe;

typedef struct jmacro {
    jobj h;             /* flags: MACRO_CALLER (a call block's caller) */
    const struct jnode *def;
    struct jframe *closure;
} jmacro;
#define MACRO_CALLER 1

typedef struct jfunc {  /* builtin global or bound method */
    jobj h;
    int id;             /* enum fn_id (jinja_builtins.c) */
    jv self;
} jfunc;

typedef struct jloop {
    jobj h;
    jlist *items;       /* what is iterated (after the `if` filter) */
    size_t index0;
    int depth0;
    jv changed_last;    /* loop.changed() state; JV_UNDEF = never called */
    const struct jnode *fornode; /* for `recursive` loops */
    struct jframe *outer;       /* frame the loop runs in (recursive calls) */
} jloop;

typedef struct jfvar { uint32_t sym; jv v; } jfvar;
typedef struct jframe {
    jobj h;
    struct jframe *parent;
    uint32_t n, cap;
    jfvar *vars;
    jfvar inl[4];       /* most frames hold a loop variable and `loop` */
    jtrack track;
} jframe;

static inline jv jv_undef_name(const char *name) { jv v = {0}; v.t = JV_UNDEF; v.ukind = U_NAME; v.u.name = name; return v; }
/* An undefined value whose use raises "UndefinedError: <msg>" (msg static). */
static inline jv jv_undef_hint(const char *msg) { jv v = {0}; v.t = JV_UNDEF; v.ukind = U_HINT; v.u.name = msg; return v; }
static inline jv jv_none(void) { jv v = {0}; v.t = JV_NONE; return v; }
static inline jv jv_bool(int b) { jv v = {0}; v.t = JV_BOOL; v.u.i = b ? 1 : 0; return v; }
static inline jv jv_int(int64_t i) { jv v = {0}; v.t = JV_INT; v.u.i = i; return v; }
static inline jv jv_float(double f) { jv v = {0}; v.t = JV_FLOAT; v.u.f = f; return v; }
static inline jv jv_obj(void *o) { jv v = {0}; v.t = ((jobj *)o)->type; v.u.o = o; return v; }
#define JSTR(v) ((jstr *)(v).u.o)
#define JLIST(v) ((jlist *)(v).u.o)
#define JDICT(v) ((jdict *)(v).u.o)

void jobj_free(jobj *o);
void jobj_clear(jobj *o);   /* frames/namespaces: drop contents (cycle breaking) */
static inline void jv_incref(jv v)
{
    if (JV_IS_OBJ(v.t) && v.u.o->rc != RC_IMMORTAL) v.u.o->rc++;
}
static inline void jv_decref(jv v)
{
    if (JV_IS_OBJ(v.t) && v.u.o->rc != RC_IMMORTAL && --v.u.o->rc == 0) jobj_free(v.u.o);
}
static inline jv jv_ref(jv v) { jv_incref(v); return v; }

/* pl_buf_append without the call when the bytes fit (hot output path). */
static inline void jb_append(pl_buf *b, const char *p, size_t n)
{
    if (b->len + n < b->cap) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
    } else {
        pl_buf_append(b, p, n);
    }
}
static inline void jb_putc(pl_buf *b, char c)
{
    if (b->len + 1 < b->cap) { b->data[b->len++] = c; b->data[b->len] = 0; }
    else pl_buf_append(b, &c, 1);
}

/* Allocation: NULL on failure. New objects have rc 1. */
jstr *jstr_new(const char *s, size_t len);
jstr *jstr_alloc(size_t len);           /* data uninitialised, NUL set */
jlist *jlist_new(size_t cap);
int jlist_push(jlist *l, jv v);         /* consumes v (also on failure) */
jdict *jdict_new(int type);             /* JV_DICT or JV_NS */
int jdict_set(jdict *d, jv key, jv val); /* consumes key and val */
jv *jdict_get(const jdict *d, jv key);   /* borrowed, NULL when absent */
jv *jdict_get_str(const jdict *d, const char *k, size_t len);
jmacro *jmacro_new(const struct jnode *def, struct jframe *closure, int flags);
jfunc *jfunc_new(int id, jv self);      /* consumes self */

/* Strings. */
uint64_t jstr_hash(jstr *s);
int jstr_is_ascii(jstr *s);
size_t utf8_count(const char *s, size_t len);
size_t utf8_advance(const char *s, size_t len, size_t pos, size_t ncp); /* byte offset */
size_t utf8_dec(const unsigned char *s, size_t n, uint32_t *cp); size_t jv_strlen_cp(jv v);              /* code points of a JV_STR */

/* Python semantics. */
int jv_truthy(jv v);
int jv_eq(jv a, jv b);                  /* a == b */
uint64_t jv_hash(jv v);
const char *jv_typename(jv v);          /* Python type name: 'str', 'int', ... */
/* str(v) appended to b; rc != 0 only on depth overflow. */
int jv_write_str(pl_buf *b, jv v);
int jv_write_repr(pl_buf *b, jv v, int depth);
void py_repr_string(pl_buf *b, const char *s, size_t len);

/* Python json.dumps of v. Returns 0, or PL_ERR_INVALID with a TypeError
 * message in err. indent < 0: None. */
typedef struct jjson_opts {
    int ensure_ascii, indent, sort_keys;
    const char *item_sep, *key_sep;
    const char *indent_str;  /* indent given as a string */
} jjson_opts;
int jv_tojson(pl_buf *b, jv v, const jjson_opts *o, char *err, size_t errlen);

/* Unicode helpers (Python rules; str.isspace is pl_py_isspace in pystr.h). */
int py_isprintable(uint32_t cp);

/* ================================================================ tokens */

enum ttype { T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
             T_NAME, T_STRING, T_INT, T_FLOAT, T_OP };
enum topk { O_ADD, O_SUB, O_DIV, O_FLOORDIV, O_MUL, O_MOD, O_POW, O_TILDE,
            O_LBRACKET, O_RBRACKET, O_LPAREN, O_RPAREN, O_LBRACE, O_RBRACE,
            O_EQ, O_NE, O_GT, O_GTEQ, O_LT, O_LTEQ, O_ASSIGN, O_DOT, O_COLON,
            O_PIPE, O_COMMA, O_SEMICOLON };

typedef struct jtok {
    uint8_t type;       /* enum ttype */
    uint8_t op;         /* T_OP: enum topk */
    size_t pos, len;    /* bytes of the (normalised) source; T_DATA: the kept text */
    union { int64_t i; double f; } num;
    char *str; size_t slen; /* T_STRING: decoded, in the template arena */
} jtok;

typedef struct jtoks { jtok *v; size_t n, cap; } jtoks;

/* Tokenise t->src. On error: PL_ERR_PARSE with "line L, column C: msg". */
int jinja_lex(pl_jinja_template *t, jtoks *out, char *err, size_t errlen);
void jt_linecol(const pl_jinja_template *t, size_t pos, int *line, int *col);

/* ================================================================ AST */

enum nkind {
    /* statements */
    N_TEXT, N_PRINT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK,
    N_FILTERBLOCK, N_WITH, N_BREAK, N_CONTINUE, N_BODY, N_NOLOADER,
    /* expressions */
    N_CONST, N_NAME, N_NSREF, N_GETATTR, N_GETITEM, N_SLICE, N_CALL, N_FILTER,
    N_TEST, N_NOT, N_NEG, N_POS, N_BINOP, N_AND, N_OR, N_COMPARE, N_CONCAT,
    N_CONDEXPR, N_LIST, N_TUPLE, N_DICT,
};

enum binop { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW };
enum cmpop { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN };

/* Call-like nodes (N_CALL, N_FILTER, N_TEST, macro signatures) keep their
 * arguments here. */
typedef struct jargs {
    struct jnode **pos; int npos;
    uint32_t *kwsym; struct jnode **kwval; int nkw;
    struct jnode *dyn_args, *dyn_kwargs;   /* *args, **kwargs */
} jargs;

typedef struct jnode {
    uint8_t kind;       /* enum nkind */
    uint8_t op;         /* binop / unary; N_FOR: recursive */
    uint16_t flags;
    int line, col;
    struct jnode *a, *b, *c, *d;  /* children (see parser for each kind) */
    struct jnode **kids; int nkids;   /* body / items / compare operands */
    struct jnode **kids2; int nkids2; /* else body / dict values */
    uint8_t *ops;       /* N_COMPARE: one cmpop per operand */
    jargs args;
    uint32_t sym;       /* N_NAME, N_NSREF (namespace), N_MACRO name, N_GETATTR attr */
    uint32_t sym2;      /* N_NSREF attribute */
    int fid;            /* filter/test id; -1: unknown (raises at runtime) */
    jv val;             /* N_CONST, N_TEXT, N_GETATTR: attribute name as string */
    int16_t meth[4];    /* N_GETATTR: method id for str, dict, list, loop (-1 none) */
    uint8_t unsafe;     /* N_GETATTR: bit per meth[] slot: mutating method */
    uint32_t *params; struct jnode **defaults; int nparams, ndefaults; /* macros */
    /* Frames (root, loop body, macro, with, set/filter block): names that
     * Jinja's compiler initialises to "missing" when the frame starts, because
     * the frame assigns them before anything reads them there (jinja_scope.c).
     * undef2: the for loop's else frame. */
    uint32_t *undef, *undef2; int nundef, nundef2;
} jnode;

/* N_MACRO / N_CALLBLOCK flags: which implicit names the body reads. */
#define MF_VARARGS 1
#define MF_KWARGS 2
#define MF_CALLER 4
/* N_FILTER/N_TEST: flag set when an unknown name is allowed (soft frame). */

/* Interned identifiers of a template. */
typedef struct jsyms {
    char **names; uint32_t *lens; int *builtin; /* global function id or -1 */
    uint32_t n, cap;
} jsyms;

struct pl_jinja_template {
    jnode *root;            /* N_BODY */
    jsyms syms;
    pl_jinja_limits limits;
    /* arenas */
    struct arena_chunk *arena;
    jobj **consts; size_t nconsts, capconsts;
    char *src; size_t srclen;
    size_t *lines; size_t nlines;  /* offsets of line starts */
};

/* Well-known symbols, interned first by the parser in this order. */
enum { SYM_LOOP, SYM_VARARGS, SYM_KWARGS, SYM_CALLER, SYM__COUNT };

void *jt_alloc(pl_jinja_template *t, size_t n);        /* zeroed, NULL on OOM */
int jt_intern(pl_jinja_template *t, const char *s, size_t len, uint32_t *sym);
jv jt_const_str(pl_jinja_template *t, const char *s, size_t len, int *ok);
int jinja_parse(pl_jinja_template *t, char *err, size_t errlen);
/* Jinja's idtracking over the parsed tree: fills the undef lists. */
int jinja_scope_analyze(pl_jinja_template *t);

/* ================================================================ builtins */

typedef struct jrender jrender;

/* Evaluated call arguments (borrowed by the callee). */
typedef struct jkw { const char *name; size_t len; jv v; } jkw;
typedef struct jcall {
    jv *pos; int npos;
    jkw *kw; int nkw;
    int line;
} jcall;

int builtin_filter_id(const char *name, size_t len);
int builtin_test_id(const char *name, size_t len);
int builtin_global_id(const char *name, size_t len);
/* Method of a str/dict/list/loop value by attribute name, -1 if none;
 * *unsafe set when the attribute exists but is a mutating method. */
int builtin_method_id(int type, const char *name, size_t len, int *unsafe);

int builtin_filter(jrender *R, int id, jv in, jcall *c, jv *out);
/* {{ x | f }}: filters that can write straight into the output do so and set
 * *done; others leave it 0 (the caller then prints builtin_filter's value). */
int builtin_filter_print(jrender *R, int id, jv in, jcall *c, pl_buf *out, int *done);
int builtin_test(jrender *R, int id, jv in, jcall *c, int *out);
int builtin_call(jrender *R, int id, jv self, jcall *c, jv *out);
/* loop.<attr> for a loop attribute/method id from builtin_method_id(JV_LOOP) */
int builtin_loop_attr(jrender *R, jloop *l, int id, jv *out);
jv builtin_global_value(int gid);        /* immortal function object */

/* ================================================================ render */

/* Render-time services used by the builtins (jinja_eval.c). */
int jr_error(jrender *R, int code, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int jr_raise_user(jrender *R, const char *msg, size_t len);
int jr_undef_error(jrender *R, jv u, int line);
int jr_work(jrender *R, size_t bytes);          /* account bytes built */
int jr_check_size(jrender *R, size_t len);      /* one string's size limit + work */
int jr_binop(jrender *R, int op, jv a, jv b, int line, jv *out);
int jr_new_str(jrender *R, const char *s, size_t len, jv *out);
int jr_buf_to_str(jrender *R, pl_buf *b, jv *out);  /* takes b's bytes */
/* A buffer a string value is built in: it stops growing at the string limit
 * (max_output) while being written, so a result is never built whole before
 * its size is checked (jr_buf_to_str then answers the LimitError). */
void jr_buf_init(jrender *R, pl_buf *b);
/* str(v) / repr(v) appended to b, capped the same way: b never grows by more
 * than max_output here; LimitError (b cut back) or RecursionError. */
int jr_write_str(jrender *R, pl_buf *b, jv v, int line);
int jr_write_repr(jrender *R, pl_buf *b, jv v, int line);
/* The per-render time budget and the caller's interrupt: checked at every
 * builtin call, loop iteration and every few hundred evaluations. */
int jr_tick(jrender *R, int line);
int jr_to_str(jrender *R, jv v, jv *out);       /* str(v) */
int jr_call_value(jrender *R, jv callee, jcall *c, jv *out);
int jr_getattr(jrender *R, jv obj, const char *name, size_t len, int line, jv *out);
int jr_getitem(jrender *R, jv obj, jv key, int line, jv *out);
int jr_compare(jrender *R, int op, jv a, jv b, int line, int *out);
int jr_iter_list(jrender *R, jv v, int line, jlist **out); /* list(v), new ref */
jdict *jr_new_ns(jrender *R);
int64_t jr_fixed_time(jrender *R);
jframe *jr_frame_new(jrender *R, jframe *parent);
const pl_jinja_limits *jr_limits(jrender *R);

#endif
