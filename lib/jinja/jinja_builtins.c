/* jinja_builtins.c — Jinja2's filters, tests and globals, transformers'
 * additions (tojson, raise_exception, strftime_now), and the Python str /
 * dict / list methods templates call, with Python semantics (code point
 * indexing, Python whitespace, stable sorts, sandbox rules). */
#include "jinja_int.h"
#include "pystr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ================================================================ ids */

enum fn_id {
    /* globals */
    G_RANGE, G_DICT, G_NAMESPACE, G_RAISE, G_STRFTIME, G_UNSUPPORTED_GLOBAL,
    /* str methods */
    M_S_CAPITALIZE, M_S_CASEFOLD, M_S_CENTER, M_S_COUNT, M_S_ENDSWITH, M_S_FIND, M_S_FORMAT, M_S_INDEX,
    M_S_ISALNUM, M_S_ISALPHA, M_S_ISDECIMAL, M_S_ISDIGIT, M_S_ISLOWER, M_S_ISNUMERIC, M_S_ISSPACE,
    M_S_ISTITLE, M_S_ISUPPER, M_S_JOIN, M_S_LJUST, M_S_LOWER, M_S_LSTRIP, M_S_PARTITION,
    M_S_REMOVEPREFIX, M_S_REMOVESUFFIX, M_S_REPLACE, M_S_RFIND, M_S_RINDEX, M_S_RJUST, M_S_RPARTITION,
    M_S_RSPLIT, M_S_RSTRIP, M_S_SPLIT, M_S_SPLITLINES, M_S_STARTSWITH, M_S_STRIP, M_S_SWAPCASE,
    M_S_TITLE, M_S_UPPER, M_S_ZFILL,
    /* dict methods */
    M_D_GET, M_D_ITEMS, M_D_KEYS, M_D_VALUES, M_D_COPY,
    /* list methods */
    M_L_INDEX, M_L_COUNT, M_L_COPY,
    /* loop */
    L_INDEX, L_INDEX0, L_REVINDEX, L_REVINDEX0, L_FIRST, L_LAST, L_LENGTH, L_DEPTH, L_DEPTH0,
    L_PREVITEM, L_NEXTITEM, L_CYCLE, L_CHANGED,
};

enum filter_id {
    F_ABS, F_ATTR, F_BATCH, F_CAPITALIZE, F_CENTER, F_COUNT, F_D, F_DEFAULT, F_DICTSORT, F_E,
    F_ESCAPE, F_FIRST, F_FLOAT, F_FORCEESCAPE, F_FORMAT, F_INDENT, F_INT, F_ITEMS, F_JOIN, F_LAST,
    F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX, F_MIN, F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE,
    F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR, F_SORT, F_STRING, F_SUM, F_TITLE, F_TOJSON, F_TRIM,
    F_TRUNCATE, F_UNIQUE, F_UPPER, F_WORDCOUNT,
    /* exist in Jinja, not implemented here: raise when used */
    F_UNSUPPORTED,
};

enum test_id {
    TT_ODD, TT_EVEN, TT_DIVISIBLEBY, TT_DEFINED, TT_UNDEFINED, TT_NONE, TT_BOOLEAN, TT_FALSE, TT_TRUE,
    TT_INTEGER, TT_FLOAT, TT_LOWER, TT_UPPER, TT_STRING, TT_MAPPING, TT_NUMBER, TT_SEQUENCE, TT_ITERABLE,
    TT_CALLABLE, TT_SAMEAS, TT_ESCAPED, TT_IN, TT_EQ, TT_NE, TT_GT, TT_GE, TT_LT, TT_LE, TT_FILTER, TT_TEST,
};

typedef struct name_id { const char *name; int id; } name_id;

static const name_id FILTERS[] = {
    {"abs", F_ABS}, {"attr", F_ATTR}, {"batch", F_BATCH}, {"capitalize", F_CAPITALIZE},
    {"center", F_CENTER}, {"count", F_COUNT}, {"d", F_D}, {"default", F_DEFAULT},
    {"dictsort", F_DICTSORT}, {"e", F_E}, {"escape", F_ESCAPE}, {"first", F_FIRST},
    {"float", F_FLOAT}, {"forceescape", F_FORCEESCAPE}, {"format", F_FORMAT}, {"indent", F_INDENT},
    {"int", F_INT}, {"items", F_ITEMS}, {"join", F_JOIN}, {"last", F_LAST}, {"length", F_LENGTH},
    {"list", F_LIST}, {"lower", F_LOWER}, {"map", F_MAP}, {"max", F_MAX}, {"min", F_MIN},
    {"reject", F_REJECT}, {"rejectattr", F_REJECTATTR}, {"replace", F_REPLACE},
    {"reverse", F_REVERSE}, {"round", F_ROUND}, {"safe", F_SAFE}, {"select", F_SELECT},
    {"selectattr", F_SELECTATTR}, {"sort", F_SORT}, {"string", F_STRING}, {"sum", F_SUM},
    {"title", F_TITLE}, {"tojson", F_TOJSON}, {"trim", F_TRIM}, {"truncate", F_TRUNCATE},
    {"unique", F_UNIQUE}, {"upper", F_UPPER}, {"wordcount", F_WORDCOUNT},
    {"filesizeformat", F_UNSUPPORTED}, {"groupby", F_UNSUPPORTED}, {"pprint", F_UNSUPPORTED},
    {"random", F_UNSUPPORTED}, {"slice", F_UNSUPPORTED}, {"striptags", F_UNSUPPORTED},
    {"urlencode", F_UNSUPPORTED}, {"urlize", F_UNSUPPORTED}, {"wordwrap", F_UNSUPPORTED},
    {"xmlattr", F_UNSUPPORTED},
};

static const name_id TESTS[] = {
    {"odd", TT_ODD}, {"even", TT_EVEN}, {"divisibleby", TT_DIVISIBLEBY}, {"defined", TT_DEFINED},
    {"undefined", TT_UNDEFINED}, {"none", TT_NONE}, {"boolean", TT_BOOLEAN}, {"false", TT_FALSE},
    {"true", TT_TRUE}, {"integer", TT_INTEGER}, {"float", TT_FLOAT}, {"lower", TT_LOWER},
    {"upper", TT_UPPER}, {"string", TT_STRING}, {"mapping", TT_MAPPING}, {"number", TT_NUMBER},
    {"sequence", TT_SEQUENCE}, {"iterable", TT_ITERABLE}, {"callable", TT_CALLABLE},
    {"sameas", TT_SAMEAS}, {"escaped", TT_ESCAPED}, {"in", TT_IN}, {"==", TT_EQ}, {"eq", TT_EQ},
    {"equalto", TT_EQ}, {"!=", TT_NE}, {"ne", TT_NE}, {">", TT_GT}, {"gt", TT_GT},
    {"greaterthan", TT_GT}, {"ge", TT_GE}, {">=", TT_GE}, {"<", TT_LT}, {"lt", TT_LT},
    {"lessthan", TT_LT}, {"<=", TT_LE}, {"le", TT_LE}, {"filter", TT_FILTER}, {"test", TT_TEST},
};

static const name_id GLOBALS[] = {
    {"range", G_RANGE}, {"dict", G_DICT}, {"namespace", G_NAMESPACE},
    {"raise_exception", G_RAISE}, {"strftime_now", G_STRFTIME},
    {"cycler", G_UNSUPPORTED_GLOBAL}, {"joiner", G_UNSUPPORTED_GLOBAL}, {"lipsum", G_UNSUPPORTED_GLOBAL},
};

static const name_id STR_METHODS[] = {
    {"capitalize", M_S_CAPITALIZE}, {"casefold", M_S_CASEFOLD}, {"center", M_S_CENTER},
    {"count", M_S_COUNT}, {"endswith", M_S_ENDSWITH}, {"find", M_S_FIND}, {"format", M_S_FORMAT},
    {"index", M_S_INDEX}, {"isalnum", M_S_ISALNUM}, {"isalpha", M_S_ISALPHA},
    {"isdecimal", M_S_ISDECIMAL}, {"isdigit", M_S_ISDIGIT}, {"islower", M_S_ISLOWER},
    {"isnumeric", M_S_ISNUMERIC}, {"isspace", M_S_ISSPACE}, {"istitle", M_S_ISTITLE},
    {"isupper", M_S_ISUPPER}, {"join", M_S_JOIN}, {"ljust", M_S_LJUST}, {"lower", M_S_LOWER},
    {"lstrip", M_S_LSTRIP}, {"partition", M_S_PARTITION}, {"removeprefix", M_S_REMOVEPREFIX},
    {"removesuffix", M_S_REMOVESUFFIX}, {"replace", M_S_REPLACE}, {"rfind", M_S_RFIND},
    {"rindex", M_S_RINDEX}, {"rjust", M_S_RJUST}, {"rpartition", M_S_RPARTITION},
    {"rsplit", M_S_RSPLIT}, {"rstrip", M_S_RSTRIP}, {"split", M_S_SPLIT},
    {"splitlines", M_S_SPLITLINES}, {"startswith", M_S_STARTSWITH}, {"strip", M_S_STRIP},
    {"swapcase", M_S_SWAPCASE}, {"title", M_S_TITLE}, {"upper", M_S_UPPER}, {"zfill", M_S_ZFILL},
};
static const name_id DICT_METHODS[] = {
    {"get", M_D_GET}, {"items", M_D_ITEMS}, {"keys", M_D_KEYS}, {"values", M_D_VALUES}, {"copy", M_D_COPY},
};
static const char *const DICT_UNSAFE[] = { "clear", "pop", "popitem", "setdefault", "update", "fromkeys" };
static const name_id LIST_METHODS[] = { {"index", M_L_INDEX}, {"count", M_L_COUNT}, {"copy", M_L_COPY} };
static const char *const LIST_UNSAFE[] = { "append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort" };
static const name_id LOOP_ATTRS[] = {
    {"index", L_INDEX}, {"index0", L_INDEX0}, {"revindex", L_REVINDEX}, {"revindex0", L_REVINDEX0},
    {"first", L_FIRST}, {"last", L_LAST}, {"length", L_LENGTH}, {"depth", L_DEPTH},
    {"depth0", L_DEPTH0}, {"previtem", L_PREVITEM}, {"nextitem", L_NEXTITEM}, {"cycle", L_CYCLE},
    {"changed", L_CHANGED},
};

static int find_id(const name_id *t, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(t[i].name) == len && !memcmp(t[i].name, s, len)) return t[i].id;
    return -1;
}

static int in_list(const char *const *t, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(t[i]) == len && !memcmp(t[i], s, len)) return 1;
    return 0;
}

int builtin_filter_id(const char *s, size_t len) { return find_id(FILTERS, PL_ARRAY_LEN(FILTERS), s, len); }
int builtin_test_id(const char *s, size_t len) { return find_id(TESTS, PL_ARRAY_LEN(TESTS), s, len); }
int builtin_global_id(const char *s, size_t len) { return find_id(GLOBALS, PL_ARRAY_LEN(GLOBALS), s, len); }

int builtin_method_id(int type, const char *s, size_t len, int *unsafe)
{
    *unsafe = 0;
    switch (type) {
    case JV_STR: return find_id(STR_METHODS, PL_ARRAY_LEN(STR_METHODS), s, len);
    case JV_DICT:
        if (in_list(DICT_UNSAFE, PL_ARRAY_LEN(DICT_UNSAFE), s, len)) { *unsafe = 1; return -1; }
        return find_id(DICT_METHODS, PL_ARRAY_LEN(DICT_METHODS), s, len);
    case JV_LIST:
        if (in_list(LIST_UNSAFE, PL_ARRAY_LEN(LIST_UNSAFE), s, len)) { *unsafe = 1; return -1; }
        return find_id(LIST_METHODS, PL_ARRAY_LEN(LIST_METHODS), s, len);
    case JV_LOOP: return find_id(LOOP_ATTRS, PL_ARRAY_LEN(LOOP_ATTRS), s, len);
    default: return -1;
    }
}

/* Immortal and never written: safe to share between concurrent renders. */
#define GLOBAL_FN(gid) { .h = { .rc = RC_IMMORTAL, .type = JV_FUNC }, .id = (gid), .self = { .t = JV_NONE } }
static jfunc GLOBAL_FUNCS[] = {
    GLOBAL_FN(G_RANGE), GLOBAL_FN(G_DICT), GLOBAL_FN(G_NAMESPACE), GLOBAL_FN(G_RAISE),
    GLOBAL_FN(G_STRFTIME), GLOBAL_FN(G_UNSUPPORTED_GLOBAL),
};

jv builtin_global_value(int gid)
{
    jfunc *f = &GLOBAL_FUNCS[gid];
    jv v = {0};
    v.t = JV_FUNC;
    v.u.o = &f->h;
    return v;
}

/* ================================================================ argument binding */

#define MISSING_T JV_FRAME
static jv missing(void) { jv v = {0}; v.t = MISSING_T; return v; }
static int is_missing(jv v) { return v.t == MISSING_T; }

/* Map c's arguments onto the parameters names[0..n) (positional first, then
 * by keyword). out[i] is borrowed, or missing(). */
static int bind(jrender *R, const jcall *c, const char *what, const char *const *names, int n, jv *out)
{
    for (int i = 0; i < n; i++) out[i] = missing();
    if (c->npos > n)
        return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: %s() takes at most %d argument(s) (%d given)", what, n, c->npos);
    for (int i = 0; i < c->npos; i++) out[i] = c->pos[i];
    for (int k = 0; k < c->nkw; k++) {
        int i;
        for (i = 0; i < n; i++)
            if (strlen(names[i]) == c->kw[k].len && !memcmp(names[i], c->kw[k].name, c->kw[k].len)) break;
        if (i == n)
            return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: %s() got an unexpected keyword argument '%s'", what, c->kw[k].name);
        if (!is_missing(out[i]))
            return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: %s() got multiple values for argument '%s'", what, names[i]);
        out[i] = c->kw[k].v;
    }
    return 0;
}

static int need_type(jrender *R, jv v, int t, const char *what, int line)
{
    if (v.t == t || (t == JV_INT && v.t == JV_BOOL)) return 0;
    if (v.t == JV_UNDEF) return jr_undef_error(R, v, line);
    return jr_error(R, PL_ERR_INVALID, line, "TypeError: %s must be %s, not %s", what,
                    t == JV_STR ? "str" : t == JV_INT ? "int" : "a value", jv_typename(v));
}

static int nomem(jrender *R, int line) { return jr_error(R, PL_ERR_NOMEM, line, "out of memory"); }

static int opt_bool(jv v, int def) { return is_missing(v) ? def : jv_truthy(v); }

/* ================================================================ string helpers */

typedef struct cpbuf { uint32_t *cp; size_t *off; size_t n; } cpbuf;   /* code points of a string */

static int decode_all(const jstr *s, cpbuf *o)
{
    o->cp = malloc((s->len + 1) * sizeof *o->cp);
    o->off = malloc((s->len + 1) * sizeof *o->off);
    o->n = 0;
    if (!o->cp || !o->off) { free(o->cp); free(o->off); return -1; }
    size_t i = 0;
    while (i < s->len) {
        uint32_t cp;
        size_t k = utf8_dec((const unsigned char *)s->data + i, s->len - i, &cp);
        o->off[o->n] = i;
        o->cp[o->n++] = cp;
        i += k;
    }
    o->off[o->n] = s->len;
    return 0;
}

static void cp_free(cpbuf *o) { free(o->cp); free(o->off); }

static void put_cp(pl_buf *b, uint32_t cp)
{
    char tmp[4];
    pl_buf_append(b, tmp, pl_utf8_encode(cp, tmp));
}

static uint32_t cp_upper(uint32_t c) { return c < 0x80 ? (uint32_t)((c >= 'a' && c <= 'z') ? c - 32 : c) : (uint32_t)utf8proc_toupper((utf8proc_int32_t)c); }
static uint32_t cp_lower(uint32_t c) { return c < 0x80 ? (uint32_t)((c >= 'A' && c <= 'Z') ? c + 32 : c) : (uint32_t)utf8proc_tolower((utf8proc_int32_t)c); }
static uint32_t cp_title(uint32_t c) { return c < 0x80 ? cp_upper(c) : (uint32_t)utf8proc_totitle((utf8proc_int32_t)c); }

static int cat_of(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c); }
static int is_cased(uint32_t c)
{
    int k = cat_of(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}
static int is_alpha(uint32_t c)
{
    int k = cat_of(c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}
static int is_decimal(uint32_t c) { return cat_of(c) == UTF8PROC_CATEGORY_ND; }
static int is_numeric(uint32_t c)
{
    int k = cat_of(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* Python's full case mappings that are not one code point to one
 * (SpecialCasing.txt), for the characters real text uses. */
static const char *special_upper(uint32_t c)
{
    switch (c) {
    case 0xDF: return "SS";
    case 0x149: return "\xCA\xBCN";
    case 0xFB00: return "FF";
    case 0xFB01: return "FI";
    case 0xFB02: return "FL";
    case 0xFB03: return "FFI";
    case 0xFB04: return "FFL";
    case 0xFB05: case 0xFB06: return "ST";
    default: return NULL;
    }
}

static const char *special_title(uint32_t c)
{
    switch (c) {
    case 0xDF: return "Ss";
    case 0x149: return "\xCA\xBCN";
    case 0xFB00: return "Ff";
    case 0xFB01: return "Fi";
    case 0xFB02: return "Fl";
    case 0xFB03: return "Ffi";
    case 0xFB04: return "Ffl";
    case 0xFB05: case 0xFB06: return "St";
    default: return NULL;
    }
}

/* Apply a per-code-point mapping. mode: 0 upper, 1 lower, 2 capitalize,
 * 3 title (str.title), 4 swapcase, 5 Jinja's |title filter. */
static int case_map(jrender *R, jv in, int mode, int line, jv *out)
{
    jstr *s = JSTR(in);
    pl_buf b;
    jr_buf_init(R, &b);
    pl_buf_reserve(&b, s->len);
    int prev_cased = 0, first = 1, word_start = 1;
    size_t i = 0;
    while (i < s->len) {
        uint32_t c;
        size_t k = utf8_dec((const unsigned char *)s->data + i, s->len - i, &c);
        uint32_t r = c;
        /* does this character get lower-cased? (for the İ special case) */
        int prev_cased_in = prev_cased, lowering = mode == 1 || (mode == 2 && !first) || (mode == 3 && prev_cased) ||
                                                  (mode == 5 && !word_start);
        switch (mode) {
        case 0: r = cp_upper(c); break;
        case 1: r = cp_lower(c); break;
        case 2: r = first ? cp_title(c) : cp_lower(c); break;
        case 3: r = prev_cased ? cp_lower(c) : cp_title(c); prev_cased = is_cased(c); break;
        case 4: r = cat_of(c) == UTF8PROC_CATEGORY_LU ? cp_lower(c) : cat_of(c) == UTF8PROC_CATEGORY_LL ? cp_upper(c) : c; break;
        case 5: {
            int sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || pl_py_isspace(c);
            r = sep ? c : word_start ? cp_upper(c) : cp_lower(c);
            word_start = sep;
            break;
        }
        }
        const char *full = NULL;
        int titling = (mode == 2 && first) || (mode == 3 && !prev_cased_in);
        if (c >= 0xDF && (mode == 0 || (mode == 5 && !lowering) || (mode == 4 && cat_of(c) == UTF8PROC_CATEGORY_LL)))
            full = special_upper(c);
        else if (c >= 0xDF && titling) full = special_title(c);
        else if (c == 0x130 && lowering) full = "i\xCC\x87";
        if (full) pl_buf_puts(&b, full);
        else if (r == c) pl_buf_append(&b, s->data + i, k);
        else put_cp(&b, r);
        first = 0;
        i += k;
    }
    (void)line;
    return jr_buf_to_str(R, &b, out);
}

/* Strip: which = 1 left, 2 right, 3 both. chars: NULL = Python whitespace. */
static int strip(jrender *R, jv in, jv chars, int which, int line, jv *out)
{
    jstr *s = JSTR(in);
    cpbuf set = {0};
    if (!is_missing(chars) && chars.t != JV_NONE) {
        int rc = need_type(R, chars, JV_STR, "strip arg", line);
        if (rc) return rc;
        if (decode_all(JSTR(chars), &set)) return nomem(R, line);
    }
    size_t a = 0, b = s->len;
    int use_set = set.cp != NULL;
    if (which & 1) {
        while (a < b) {
            uint32_t c;
            size_t k = utf8_dec((const unsigned char *)s->data + a, b - a, &c);
            int hit = 0;
            if (use_set) { for (size_t q = 0; q < set.n; q++) if (set.cp[q] == c) { hit = 1; break; } }
            else hit = pl_py_isspace(c);
            if (!hit) break;
            a += k;
        }
    }
    if (which & 2) {
        while (b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)s->data[st] & 0xC0) == 0x80 && b - st < 4) st--;
            uint32_t c;
            size_t k = utf8_dec((const unsigned char *)s->data + st, b - st, &c);
            if (st + k != b) { st = b - 1; c = 0xFFFD; }
            int hit = 0;
            if (use_set) { for (size_t q = 0; q < set.n; q++) if (set.cp[q] == c) { hit = 1; break; } }
            else hit = pl_py_isspace(c);
            if (!hit) break;
            b = st;
        }
    }
    cp_free(&set);
    if (a == 0 && b == s->len) { *out = jv_ref(in); return 0; }
    return jr_new_str(R, s->data + a, b - a, out);
}

static const char *find_bytes(const char *h, size_t hn, const char *n, size_t nn)
{
    if (!nn) return h;
    return memmem(h, hn, n, nn);
}

static const char *rfind_bytes(const char *h, size_t hn, const char *n, size_t nn)
{
    if (nn > hn) return NULL;
    for (size_t i = hn - nn + 1; i-- > 0;)
        if (!memcmp(h + i, n, nn)) return h + i;
    return NULL;
}

static int push_str(jrender *R, jlist *l, const char *s, size_t n, int line)
{
    jv v;
    int rc = jr_new_str(R, s, n, &v);
    if (rc) return rc;
    if (jlist_push(l, v)) return nomem(R, line);
    return 0;
}

/* str.split / str.rsplit */
static int split(jrender *R, jv in, jv sepv, jv maxv, int right, int line, jv *out)
{
    jstr *s = JSTR(in);
    int64_t maxsplit = -1;
    if (!is_missing(maxv)) {
        int rc = need_type(R, maxv, JV_INT, "maxsplit", line);
        if (rc) return rc;
        maxsplit = maxv.u.i;
    }
    jlist *l = jlist_new(0);
    if (!l) return nomem(R, line);
    int rc = jr_work(R, s->len);
    if (rc) { jv_decref(jv_obj(l)); return rc; }
    if (is_missing(sepv) || sepv.t == JV_NONE) {
        /* runs of whitespace; empty strings never appear */
        cpbuf cp;
        if (decode_all(s, &cp)) { jv_decref(jv_obj(l)); return nomem(R, line); }
        jlist *parts = l;
        if (!right) {
            size_t i = 0;
            while (i < cp.n && !rc) {
                while (i < cp.n && pl_py_isspace(cp.cp[i])) i++;
                if (i >= cp.n) break;
                if (maxsplit >= 0 && (int64_t)parts->len == maxsplit) {   /* the rest, as is */
                    rc = push_str(R, parts, s->data + cp.off[i], s->len - cp.off[i], line);
                    break;
                }
                size_t j = i;
                while (j < cp.n && !pl_py_isspace(cp.cp[j])) j++;
                rc = push_str(R, parts, s->data + cp.off[i], cp.off[j] - cp.off[i], line);
                i = j;
            }
        } else {
            size_t i = cp.n;
            while (i > 0 && !rc) {
                while (i > 0 && pl_py_isspace(cp.cp[i - 1])) i--;
                if (!i) break;
                if (maxsplit >= 0 && (int64_t)parts->len == maxsplit) {
                    rc = push_str(R, parts, s->data, cp.off[i], line);
                    break;
                }
                size_t j = i;
                while (j > 0 && !pl_py_isspace(cp.cp[j - 1])) j--;
                rc = push_str(R, parts, s->data + cp.off[j], cp.off[i] - cp.off[j], line);
                i = j;
            }
        }
        cp_free(&cp);
    } else {
        if ((rc = need_type(R, sepv, JV_STR, "separator", line))) { jv_decref(jv_obj(l)); return rc; }
        jstr *sep = JSTR(sepv);
        if (!sep->len) { jv_decref(jv_obj(l)); return jr_error(R, PL_ERR_INVALID, line, "ValueError: empty separator"); }
        if (!right) {
            const char *p = s->data, *end = s->data + s->len;
            while (!rc) {
                const char *q = (maxsplit < 0 || (int64_t)l->len < maxsplit) ? find_bytes(p, (size_t)(end - p), sep->data, sep->len) : NULL;
                if (!q) { rc = push_str(R, l, p, (size_t)(end - p), line); break; }
                rc = push_str(R, l, p, (size_t)(q - p), line);
                p = q + sep->len;
            }
        } else {
            size_t e = s->len;
            while (!rc) {
                const char *q = (maxsplit < 0 || (int64_t)l->len < maxsplit) ? rfind_bytes(s->data, e, sep->data, sep->len) : NULL;
                if (!q) { rc = push_str(R, l, s->data, e, line); break; }
                size_t qi = (size_t)(q - s->data);
                rc = push_str(R, l, q + sep->len, e - qi - sep->len, line);
                e = qi;
            }
        }
    }
    if (rc) { jv_decref(jv_obj(l)); return rc; }
    if (right) {   /* collected right to left */
        for (size_t i = 0; i < l->len / 2; i++) { jv t = l->v[i]; l->v[i] = l->v[l->len - 1 - i]; l->v[l->len - 1 - i] = t; }
    }
    *out = jv_obj(l);
    return 0;
}

static int is_line_break(uint32_t c)
{
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
           c == 0x85 || c == 0x2028 || c == 0x2029;
}

static int splitlines(jrender *R, jv in, int keepends, int line, jlist **out)
{
    jstr *s = JSTR(in);
    cpbuf cp;
    if (decode_all(s, &cp)) return nomem(R, line);
    jlist *l = jlist_new(0);
    int rc = l ? 0 : nomem(R, line);
    size_t i = 0, st = 0;
    while (!rc && i < cp.n) {
        if (!is_line_break(cp.cp[i])) { i++; continue; }
        size_t eol = i + 1;
        if (cp.cp[i] == '\r' && eol < cp.n && cp.cp[eol] == '\n') eol++;
        rc = push_str(R, l, s->data + cp.off[st], cp.off[keepends ? eol : i] - cp.off[st], line);
        st = i = eol;
    }
    if (!rc && st < cp.n) rc = push_str(R, l, s->data + cp.off[st], cp.off[cp.n] - cp.off[st], line);
    cp_free(&cp);
    if (rc) { if (l) jv_decref(jv_obj(l)); return rc; }
    *out = l;
    return 0;
}

static int replace(jrender *R, jv in, jv oldv, jv newv, jv countv, int line, jv *out)
{
    int rc;
    if ((rc = need_type(R, oldv, JV_STR, "replace() argument 1", line)) ||
        (rc = need_type(R, newv, JV_STR, "replace() argument 2", line)))
        return rc;
    int64_t count = -1;
    if (!is_missing(countv) && countv.t != JV_NONE) {
        if ((rc = need_type(R, countv, JV_INT, "count", line))) return rc;
        count = countv.u.i;
    }
    jstr *s = JSTR(in), *o = JSTR(oldv), *n = JSTR(newv);
    pl_buf b;
    jr_buf_init(R, &b);
    if (!o->len) {   /* inserts `new` before every character and at the end */
        size_t i = 0;
        int64_t done = 0;
        while (i <= s->len) {
            if (count < 0 || done < count) { pl_buf_append(&b, n->data, n->len); done++; }
            if (i == s->len) break;
            size_t j = utf8_advance(s->data, s->len, i, 1);
            pl_buf_append(&b, s->data + i, j - i);
            i = j;
            if (b.len > jr_limits(R)->max_output) break;
        }
    } else {
        const char *p = s->data, *end = s->data + s->len;
        int64_t done = 0;
        while (count < 0 || done < count) {
            const char *q = memmem(p, (size_t)(end - p), o->data, o->len);
            if (!q) break;
            pl_buf_append(&b, p, (size_t)(q - p));
            pl_buf_append(&b, n->data, n->len);
            p = q + o->len;
            done++;
            if (b.len > jr_limits(R)->max_output) break;
        }
        pl_buf_append(&b, p, (size_t)(end - p));
    }
    return jr_buf_to_str(R, &b, out);
}

/* code point index of byte offset off */
static int64_t cp_index(jstr *s, size_t off)
{
    return jstr_is_ascii(s) ? (int64_t)off : (int64_t)utf8_count(s->data, off);
}

static int pad(jrender *R, jv in, jv widthv, jv fillv, int how, int line, jv *out)
{
    int rc = need_type(R, widthv, JV_INT, "width", line);
    if (rc) return rc;
    const char *fill = " ";
    size_t fl = 1;
    if (!is_missing(fillv)) {
        if ((rc = need_type(R, fillv, JV_STR, "fillchar", line))) return rc;
        if (jv_strlen_cp(fillv) != 1)
            return jr_error(R, PL_ERR_INVALID, line, "TypeError: The fill character must be exactly one character long");
        fill = JSTR(fillv)->data;
        fl = JSTR(fillv)->len;
    }
    int64_t len = (int64_t)jv_strlen_cp(in), w = widthv.u.i;
    if (w <= len) { *out = jv_ref(in); return 0; }
    if ((uint64_t)(w - len) > jr_limits(R)->max_output / fl) return jr_check_size(R, SIZE_MAX);
    int64_t total = w - len, left;
    if (how == 0) left = 0;                      /* ljust */
    else if (how == 1) left = total;             /* rjust */
    else left = total / 2 + (total & w & 1);     /* center, as CPython */
    pl_buf b;
    jr_buf_init(R, &b);
    for (int64_t i = 0; i < left; i++) pl_buf_append(&b, fill, fl);
    pl_buf_append(&b, JSTR(in)->data, JSTR(in)->len);
    for (int64_t i = left; i < total; i++) pl_buf_append(&b, fill, fl);
    return jr_buf_to_str(R, &b, out);
}

/* "{} {0} {name}" formatting (no format specs). */
static int str_dot_format(jrender *R, jv fmt, jcall *c, jv *out)
{
    jstr *f = JSTR(fmt);
    pl_buf b;
    jr_buf_init(R, &b);
    int auto_idx = 0;
    for (size_t i = 0; i < f->len; i++) {
        char ch = f->data[i];
        if (ch == '}' ) {
            if (i + 1 < f->len && f->data[i + 1] == '}') i++;
            pl_buf_putc(&b, '}');
            continue;
        }
        if (ch != '{') { pl_buf_putc(&b, ch); continue; }
        if (i + 1 < f->len && f->data[i + 1] == '{') { pl_buf_putc(&b, '{'); i++; continue; }
        size_t j = i + 1;
        while (j < f->len && f->data[j] != '}') j++;
        if (j >= f->len) { pl_buf_free(&b); return jr_error(R, PL_ERR_INVALID, c->line, "ValueError: Single '{' encountered in format string"); }
        const char *field = f->data + i + 1;
        size_t fl = j - i - 1;
        if (memchr(field, ':', fl) || memchr(field, '!', fl) || memchr(field, '.', fl) || memchr(field, '[', fl)) {
            pl_buf_free(&b);
            return jr_error(R, PL_ERR_UNSUPPORTED, c->line, "str.format specs/attributes are not supported");
        }
        jv v = missing();
        if (fl == 0 || (field[0] >= '0' && field[0] <= '9')) {
            int idx = fl == 0 ? auto_idx++ : atoi(field);
            if (idx < c->npos) v = c->pos[idx];
        } else {
            for (int k = 0; k < c->nkw; k++)
                if (c->kw[k].len == fl && !memcmp(c->kw[k].name, field, fl)) v = c->kw[k].v;
        }
        if (is_missing(v)) {
            pl_buf_free(&b);
            return jr_error(R, PL_ERR_INVALID, c->line, "IndexError: Replacement index %.*s out of range", (int)fl, field);
        }
        int rc = jr_write_str(R, &b, v, c->line);
        if (rc) { pl_buf_free(&b); return rc; }
        i = j;
    }
    return jr_buf_to_str(R, &b, out);
}

/* ================================================================ sorting */

/* Stable merge sort of idx[0..n) by keys, using only "<" as Python does. */
static int merge_sort(jrender *R, size_t *idx, size_t n, const jv *keys, int reverse, int line)
{
    if (n < 2) return 0;
    size_t *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return nomem(R, line);
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int lt;
                /* take the right one only when strictly before the left one */
                int rc = reverse ? jr_compare(R, CMP_LT, keys[idx[i]], keys[idx[j]], line, &lt)
                                 : jr_compare(R, CMP_LT, keys[idx[j]], keys[idx[i]], line, &lt);
                if (rc) { free(tmp); return rc; }
                tmp[k++] = lt ? idx[j++] : idx[i++];
            }
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
    free(tmp);
    return 0;
}

/* environment.getitem for each dotted part of attribute ("a.0.b"). New ref. */
static int attr_path(jrender *R, jv item, const char *path, size_t len, int line, jv *out)
{
    jv cur = jv_ref(item);
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && path[j] != '.') j++;
        const char *p = path + i;
        size_t pl = j - i;
        int digits = pl > 0;
        for (size_t q = 0; q < pl; q++) if (p[q] < '0' || p[q] > '9') digits = 0;
        jv key, next;
        int rc;
        if (digits) key = jv_int(strtoll(p, NULL, 10));
        else if ((rc = jr_new_str(R, p, pl, &key))) { jv_decref(cur); return rc; }
        rc = jr_getitem(R, cur, key, line, &next);
        jv_decref(key);
        jv_decref(cur);
        if (rc) return rc;
        cur = next;
        i = j + 1;
    }
    *out = cur;
    return 0;
}

/* Sort key of an item: attribute path, then lower() for strings when not
 * case sensitive. New ref. */
static int sort_key(jrender *R, jv item, jv attr, int case_sensitive, int line, jv *out)
{
    jv k;
    int rc;
    if (!is_missing(attr) && attr.t != JV_NONE) {
        if (attr.t == JV_STR) rc = attr_path(R, item, JSTR(attr)->data, JSTR(attr)->len, line, &k);
        else rc = jr_getitem(R, item, attr, line, &k);
        if (rc) return rc;
    } else {
        k = jv_ref(item);
    }
    if (!case_sensitive && k.t == JV_STR) {
        jv low;
        rc = case_map(R, k, 1, line, &low);
        jv_decref(k);
        if (rc) return rc;
        k = low;
    }
    *out = k;
    return 0;
}

static int sorted_list(jrender *R, jlist *src, const jv *keys, int reverse, int line, jlist **out)
{
    size_t n = src->len;
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return nomem(R, line);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    int rc = merge_sort(R, idx, n, keys, reverse, line);
    if (rc) { free(idx); return rc; }
    jlist *l = jlist_new(n);
    if (!l) { free(idx); return nomem(R, line); }
    for (size_t i = 0; i < n; i++) l->v[l->len++] = jv_ref(src->v[idx[i]]);
    free(idx);
    *out = l;
    return 0;
}

static void free_keys(jv *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) jv_decref(keys[i]);
    free(keys);
}

/* keys for every item of l; multi: attribute may be "a,b" (a tuple key) */
static int make_keys(jrender *R, jlist *l, jv attr, int case_sensitive, int multi, int line, jv **out)
{
    jv *keys = calloc(l->len ? l->len : 1, sizeof *keys);
    if (!keys) return nomem(R, line);
    int rc = 0;
    const char *comma = (multi && attr.t == JV_STR) ? memchr(JSTR(attr)->data, ',', JSTR(attr)->len) : NULL;
    for (size_t i = 0; i < l->len && !rc; i++) {
        if (!comma) { rc = sort_key(R, l->v[i], attr, case_sensitive, line, &keys[i]); continue; }
        jlist *t = jlist_new(0);
        if (!t) { rc = nomem(R, line); break; }
        t->h.flags |= LIST_TUPLE;
        const char *p = JSTR(attr)->data, *end = p + JSTR(attr)->len;
        while (!rc && p <= end) {
            const char *q = memchr(p, ',', (size_t)(end - p));
            if (!q) q = end;
            jv part, k;
            if (!(rc = jr_new_str(R, p, (size_t)(q - p), &part))) {
                rc = sort_key(R, l->v[i], part, case_sensitive, line, &k);
                jv_decref(part);
                if (!rc) rc = jlist_push(t, k);
            }
            p = q + 1;
        }
        keys[i] = jv_obj(t);
    }
    if (rc) { free_keys(keys, l->len); return rc; }
    *out = keys;
    return 0;
}

/* ================================================================ helpers */

static int iter_list(jrender *R, jv v, int line, jlist **out) { return jr_iter_list(R, v, line, out); }

static int to_str(jrender *R, jv v, jv *out) { return jr_to_str(R, v, out); }

/* Python int(str) */
static int parse_int(const char *s, size_t n, int base, int64_t *out)
{
    /* Python strips Unicode whitespace (U+00A0, U+3000, ...), not bytes */
    size_t i = pl_py_lstrip_off(s, n);
    n = i + pl_py_rstrip_len(s + i, n - i);
    int neg = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (base == 0 || base == 16 || base == 8 || base == 2) {
        if (i + 1 < n && s[i] == '0') {
            char p = (char)(s[i + 1] | 0x20);
            int pb = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
            if (pb && (base == 0 || base == pb)) { base = pb; i += 2; if (i < n && s[i] == '_') i++; }
        }
        if (base == 0) base = 10;
    }
    if (i >= n) return -1;
    uint64_t acc = 0;
    int prev_us = 1;
    for (; i < n; i++) {
        if (s[i] == '_') { if (prev_us) return -1; prev_us = 1; continue; }
        int d = s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : (s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z' ? (s[i] | 0x20) - 'a' + 10 : 99;
        if (d >= base) return -1;
        if (acc > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return -2;
        acc = acc * (uint64_t)base + (uint64_t)d;
        prev_us = 0;
    }
    if (prev_us) return -1;
    if (acc > (uint64_t)INT64_MAX + (uint64_t)neg) return -2;
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

static int is_digit_c(char c) { return c >= '0' && c <= '9'; }

/* Python float(str) */
static int parse_float(const char *s, size_t n, double *out)
{
    char tmp[128];
    size_t i = pl_py_lstrip_off(s, n), m = 0;
    n = i + pl_py_rstrip_len(s + i, n - i);
    if (i >= n || n - i >= sizeof tmp) return -1;
    for (; i < n; i++) {
        if (s[i] == '_') {     /* only single underscores between digits */
            if (!m || !is_digit_c(tmp[m - 1]) || i + 1 >= n || !is_digit_c(s[i + 1])) return -1;
            continue;
        }
        tmp[m++] = s[i];
    }
    tmp[m] = 0;
    const char *t = tmp + (tmp[0] == '+' || tmp[0] == '-');
    if (!strcasecmp(t, "inf") || !strcasecmp(t, "infinity") || !strcasecmp(t, "nan")) {
        *out = strtod(tmp, NULL);
        return 0;
    }
    for (const char *p = t; *p; p++)
        if (!strchr("0123456789.eE+-", *p)) return -1;
    char *end;
    *out = strtod(tmp, &end);
    return *end ? -1 : 0;
}

static int html_escape(jrender *R, jv in, jv *out)
{
    jv s;
    int rc = to_str(R, in, &s);
    if (rc) return rc;
    pl_buf b;
    jr_buf_init(R, &b);
    for (size_t i = 0; i < JSTR(s)->len; i++) {
        char c = JSTR(s)->data[i];
        switch (c) {
        case '&': pl_buf_puts(&b, "&amp;"); break;
        case '<': pl_buf_puts(&b, "&lt;"); break;
        case '>': pl_buf_puts(&b, "&gt;"); break;
        case '"': pl_buf_puts(&b, "&#34;"); break;
        case '\'': pl_buf_puts(&b, "&#39;"); break;
        default: pl_buf_putc(&b, c);
        }
    }
    jv_decref(s);
    return jr_buf_to_str(R, &b, out);
}

static int do_round(jrender *R, jv v, jv precv, jv methodv, int line, jv *out)
{
    int64_t prec = 0;
    int rc;
    if (!is_missing(precv)) { if ((rc = need_type(R, precv, JV_INT, "precision", line))) return rc; prec = precv.u.i; }
    const char *method = "common";
    if (!is_missing(methodv)) { if ((rc = need_type(R, methodv, JV_STR, "method", line))) return rc; method = JSTR(methodv)->data; }
    if (strcmp(method, "common") && strcmp(method, "ceil") && strcmp(method, "floor"))
        return jr_error(R, PL_ERR_INVALID, line, "FilterArgumentError: method must be common, ceil or floor");
    if (v.t != JV_INT && v.t != JV_BOOL && v.t != JV_FLOAT) {
        if (v.t == JV_UNDEF && strcmp(method, "common")) return jr_undef_error(R, v, line);  /* value * 10**p */
        if (strcmp(method, "common"))
            return jr_error(R, PL_ERR_INVALID, line, "TypeError: unsupported operand type(s) for *: '%s' and 'int'", jv_typename(v));
        return jr_error(R, PL_ERR_INVALID, line, "TypeError: type %s doesn't define __round__ method", jv_typename(v));
    }
    if (!strcmp(method, "common")) {
        if (v.t != JV_FLOAT) { *out = jv_int(v.u.i); return 0; }   /* round(int, n) stays int */
        double d = v.u.f;
        if (!isfinite(d)) { *out = v; return 0; }
        if (prec > 300) { *out = v; return 0; }
        char tmp[400];
        if (prec >= 0) {
            snprintf(tmp, sizeof tmp, "%.*f", (int)prec, d);   /* correctly rounded, ties to even */
            *out = jv_float(strtod(tmp, NULL));
        } else {
            double p = pow(10.0, (double)-prec);
            double y = d / p, r = nearbyint(y);
            *out = jv_float(r * p);
        }
        return 0;
    }
    double p = pow(10.0, (double)prec), d = v.t == JV_FLOAT ? v.u.f : (double)v.u.i;
    *out = jv_float((!strcmp(method, "ceil") ? ceil(d * p) : floor(d * p)) / p);
    return 0;
}

static int to_int(jrender *R, jv v, jv defv, jv basev, int line, jv *out)
{
    int64_t base = 10;
    if (!is_missing(basev)) { int rc = need_type(R, basev, JV_INT, "base", line); if (rc) return rc; base = basev.u.i; }
    jv def = is_missing(defv) ? jv_int(0) : defv;
    int64_t r;
    switch (v.t) {
    case JV_INT: case JV_BOOL: *out = jv_int(v.u.i); return 0;
    case JV_FLOAT:
        if (!isfinite(v.u.f)) return jr_error(R, PL_ERR_INVALID, line, "OverflowError: cannot convert float infinity or NaN to integer");
        if (fabs(v.u.f) >= 9.2e18) return jr_error(R, PL_ERR_INVALID, line, "OverflowError: integer too large");
        *out = jv_int((int64_t)v.u.f);
        return 0;
    case JV_STR: {
        int prc = parse_int(JSTR(v)->data, JSTR(v)->len, (int)base, &r);
        if (prc == 0) { *out = jv_int(r); return 0; }
        if (prc == -2) return jr_error(R, PL_ERR_INVALID, line, "OverflowError: integer too large");
        double d;   /* int(float(s)); its OverflowError gives the default too */
        if (!parse_float(JSTR(v)->data, JSTR(v)->len, &d) && isfinite(d) && fabs(d) < 9.2e18) {
            *out = jv_int((int64_t)d);
            return 0;
        }
        break;
    }
    case JV_UNDEF:
        if (v.ukind == U_UNSAFE) return jr_undef_error(R, v, line);
        return jr_undef_error(R, v, line);
    default:
        break;
    }
    *out = jv_ref(def);
    return 0;
}

static int to_float(jrender *R, jv v, jv defv, int line, jv *out)
{
    jv def = is_missing(defv) ? jv_float(0.0) : defv;
    double d;
    switch (v.t) {
    case JV_INT: case JV_BOOL: *out = jv_float((double)v.u.i); return 0;
    case JV_FLOAT: *out = v; return 0;
    case JV_STR:
        if (!parse_float(JSTR(v)->data, JSTR(v)->len, &d)) { *out = jv_float(d); return 0; }
        break;
    case JV_UNDEF:
        return jr_undef_error(R, v, line);
    default:
        break;
    }
    *out = jv_ref(def);
    return 0;
}

static int length_of(jrender *R, jv v, int line, int64_t *n)
{
    switch (v.t) {
    case JV_STR: *n = (int64_t)jv_strlen_cp(v); return 0;
    case JV_LIST: *n = (int64_t)JLIST(v)->len; return 0;
    case JV_DICT: *n = (int64_t)JDICT(v)->len; return 0;
    case JV_UNDEF: *n = 0; return 0;
    case JV_LOOP: *n = (int64_t)((jloop *)v.u.o)->items->len; return 0;
    default:
        return jr_error(R, PL_ERR_INVALID, line, "TypeError: object of type '%s' has no len()", jv_typename(v));
    }
}

/* ================================================================ tojson */

static int tojson_opts(jrender *R, jcall *c, jjson_opts *o, char *ind, size_t indlen);

/* tojson into `into` when given, else into a new string *out. */
static int tojson_to(jrender *R, jv v, jcall *c, pl_buf *into, jv *out)
{
    jjson_opts o;
    char ind[64];
    int rc = tojson_opts(R, c, &o, ind, sizeof ind);
    if (rc) return rc;
    pl_buf b;
    jr_buf_init(R, &b);
    pl_buf *dst = into ? into : &b;
    /* json.dumps of a value of unknown size: the buffer stops growing at the
     * string limit while it is written (a shared 60 MB string listed 1000
     * times is not built to be measured afterwards) */
    size_t mark = dst->len, max = dst->max, cap = mark + jr_limits(R)->max_output;
    int oom = dst->oom, over = dst->over;
    if (!max || cap < max) dst->max = cap;
    char err[200];
    rc = jv_tojson(dst, v, &o, err, sizeof err);
    int hit = dst->over && !over;
    dst->max = max;
    if (rc || hit) {
        dst->len = mark;
        if (dst->data) dst->data[mark] = 0;
        dst->over = over;
        dst->oom = oom;
        pl_buf_free(&b);
        if (hit) return jr_error(R, PL_ERR_RANGE, c->line, "LimitError: tojson result exceeds the %zu-byte limit",
                                 jr_limits(R)->max_output);
        if (rc == PL_ERR_NOMEM) return nomem(R, c->line);
        return jr_error(R, rc, c->line, "%s", err);
    }
    if (into) return jr_work(R, into->len - mark);
    return jr_buf_to_str(R, &b, out);
}

static int do_tojson(jrender *R, jv v, jcall *c, jv *out) { return tojson_to(R, v, c, NULL, out); }

int builtin_filter_print(jrender *R, int id, jv in, jcall *c, pl_buf *out, int *done)
{
    *done = 0;
    if (id != F_TOJSON) return 0;
    *done = 1;
    return tojson_to(R, in, c, out, NULL);
}

static int tojson_opts(jrender *R, jcall *c, jjson_opts *o, char *ind, size_t indlen)
{
    static const char *const names[] = { "ensure_ascii", "indent", "separators", "sort_keys" };
    jv a[4];
    int rc = bind(R, c, "tojson", names, 4, a);
    if (rc) return rc;
    *o = (jjson_opts){ 0, -1, 0, NULL, NULL, NULL };
    o->ensure_ascii = opt_bool(a[0], 0);
    o->sort_keys = opt_bool(a[3], 0);
    if (!is_missing(a[1]) && a[1].t != JV_NONE) {
        if (a[1].t == JV_INT || a[1].t == JV_BOOL) o->indent = a[1].u.i < 0 ? 0 : a[1].u.i > 64 ? 64 : (int)a[1].u.i;
        else if (a[1].t == JV_STR) { snprintf(ind, indlen, "%s", JSTR(a[1])->data); o->indent_str = ind; o->indent = 0; }
        else return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: indent must be an int or a string");
    }
    if (!is_missing(a[2]) && a[2].t != JV_NONE) {
        jv s = a[2];
        if (s.t != JV_LIST || JLIST(s)->len != 2 || JLIST(s)->v[0].t != JV_STR || JLIST(s)->v[1].t != JV_STR)
            return jr_error(R, PL_ERR_INVALID, c->line, "ValueError: separators must be a pair of strings");
        o->item_sep = JSTR(JLIST(s)->v[0])->data;
        o->key_sep = JSTR(JLIST(s)->v[1])->data;
    }
    return 0;
}

/* ================================================================ select / map */

/* Calls test `tid` (or truthiness when tid < 0) on v with extra args. */
static int run_test(jrender *R, int tid, jv v, jv *args, int nargs, int line, int *res)
{
    if (tid < 0) { *res = jv_truthy(v); return 0; }
    jcall c = { args, nargs, NULL, 0, line };
    return builtin_test(R, tid, v, &c, res);
}

/* select/reject/selectattr/rejectattr */
static int do_select(jrender *R, jv seq, jcall *c, int attr, int keep, jv *out)
{
    int line = c->line, ai = 0, rc;
    jv attrv = missing();
    if (attr) {
        if (c->npos < 1) return jr_error(R, PL_ERR_INVALID, line, "TypeError: Missing parameter for attribute name");
        attrv = c->pos[ai++];
    }
    int tid = -1;
    if (ai < c->npos) {
        if ((rc = need_type(R, c->pos[ai], JV_STR, "test name", line))) return rc;
        tid = builtin_test_id(JSTR(c->pos[ai])->data, JSTR(c->pos[ai])->len);
        if (tid < 0) return jr_error(R, PL_ERR_INVALID, line, "TemplateRuntimeError: No test named '%s'.", JSTR(c->pos[ai])->data);
        ai++;
    }
    jlist *src;
    /* Jinja's _select_or_reject starts with `if value:` */
    if ((rc = jv_truthy(seq) ? iter_list(R, seq, line, &src) : ((src = jlist_new(0)) ? 0 : nomem(R, line)))) return rc;
    jlist *l = jlist_new(0);
    if (!l) { jv_decref(jv_obj(src)); return nomem(R, line); }
    for (size_t i = 0; i < src->len && !rc; i++) {
        jv v = jv_ref(src->v[i]);
        if (attr) {
            jv a;
            rc = attrv.t == JV_STR ? attr_path(R, v, JSTR(attrv)->data, JSTR(attrv)->len, line, &a)
                                   : jr_getitem(R, v, attrv, line, &a);
            jv_decref(v);
            if (rc) break;
            v = a;
        }
        int res;
        rc = run_test(R, tid, v, c->pos + ai, c->npos - ai, line, &res);
        jv_decref(v);
        if (!rc && res == keep) rc = jlist_push(l, jv_ref(src->v[i]));
    }
    jv_decref(jv_obj(src));
    if (rc) { jv_decref(jv_obj(l)); return rc; }
    *out = jv_obj(l);
    return 0;
}

static int do_map(jrender *R, jv seq, jcall *c, jv *out)
{
    int line = c->line, rc;
    jlist *src;
    /* like select: `if value:` before iterating */
    if ((rc = jv_truthy(seq) ? iter_list(R, seq, line, &src) : ((src = jlist_new(0)) ? 0 : nomem(R, line)))) return rc;
    jlist *l = jlist_new(src->len);
    if (!l) { jv_decref(jv_obj(src)); return nomem(R, line); }
    jv attr = missing(), def = missing();
    for (int k = 0; k < c->nkw; k++) {
        if (c->kw[k].len == 9 && !memcmp(c->kw[k].name, "attribute", 9)) attr = c->kw[k].v;
        else if (c->kw[k].len == 7 && !memcmp(c->kw[k].name, "default", 7)) def = c->kw[k].v;
    }
    if (!c->npos && is_missing(attr)) {
        jv_decref(jv_obj(src));
        jv_decref(jv_obj(l));
        return jr_error(R, PL_ERR_INVALID, line, "FilterArgumentError: map requires a filter argument");
    }
    int fid = -1;
    if (is_missing(attr)) {
        if ((rc = need_type(R, c->pos[0], JV_STR, "filter name", line))) goto fail;
        fid = builtin_filter_id(JSTR(c->pos[0])->data, JSTR(c->pos[0])->len);
        if (fid < 0) { rc = jr_error(R, PL_ERR_INVALID, line, "TemplateRuntimeError: No filter named '%s'.", JSTR(c->pos[0])->data); goto fail; }
    }
    for (size_t i = 0; i < src->len && !rc; i++) {
        jv r;
        if (fid >= 0) {
            jcall fc = { c->pos + 1, c->npos - 1, c->kw, c->nkw, line };
            rc = builtin_filter(R, fid, src->v[i], &fc, &r);
        } else {
            rc = attr.t == JV_STR ? attr_path(R, src->v[i], JSTR(attr)->data, JSTR(attr)->len, line, &r)
                                  : jr_getitem(R, src->v[i], attr, line, &r);
            if (!rc && r.t == JV_UNDEF && !is_missing(def)) r = jv_ref(def);
        }
        if (!rc) rc = jlist_push(l, r);
    }
fail:
    jv_decref(jv_obj(src));
    if (rc) { jv_decref(jv_obj(l)); return rc; }
    *out = jv_obj(l);
    return 0;
}

static int do_minmax(jrender *R, jv seq, jcall *c, int want_max, jv *out)
{
    static const char *const names[] = { "case_sensitive", "attribute" };
    jv a[2];
    int rc = bind(R, c, want_max ? "max" : "min", names, 2, a);
    if (rc) return rc;
    jlist *l;
    if ((rc = iter_list(R, seq, c->line, &l))) return rc;
    if (!l->len) {
        jv_decref(jv_obj(l));
        *out = jv_undef_hint("No aggregated item, sequence was empty.");
        return 0;
    }
    jv *keys;
    if ((rc = make_keys(R, l, a[1], opt_bool(a[0], 0), 0, c->line, &keys))) { jv_decref(jv_obj(l)); return rc; }
    size_t best = 0;
    for (size_t i = 1; i < l->len && !rc; i++) {
        int lt;
        rc = want_max ? jr_compare(R, CMP_LT, keys[best], keys[i], c->line, &lt)
                      : jr_compare(R, CMP_LT, keys[i], keys[best], c->line, &lt);
        if (!rc && lt) best = i;
    }
    if (!rc) *out = jv_ref(l->v[best]);
    free_keys(keys, l->len);
    jv_decref(jv_obj(l));
    return rc;
}

static int do_unique(jrender *R, jv seq, jcall *c, jv *out)
{
    static const char *const names[] = { "case_sensitive", "attribute" };
    jv a[2];
    int rc = bind(R, c, "unique", names, 2, a);
    if (rc) return rc;
    jlist *l;
    if ((rc = iter_list(R, seq, c->line, &l))) return rc;
    jv *keys;
    if ((rc = make_keys(R, l, a[1], opt_bool(a[0], 0), 0, c->line, &keys))) { jv_decref(jv_obj(l)); return rc; }
    jdict *seen = jdict_new(JV_DICT);
    jlist *r = jlist_new(0);
    if (!seen || !r) rc = nomem(R, c->line);
    for (size_t i = 0; i < l->len && !rc; i++) {
        jv k = keys[i];
        if ((k.t == JV_LIST && !(JLIST(k)->h.flags & LIST_TUPLE)) || k.t == JV_DICT) {
            rc = jr_error(R, PL_ERR_INVALID, c->line, "TypeError: unhashable type: '%s'", jv_typename(k));
            break;
        }
        if (jdict_get(seen, k)) continue;
        if (jdict_set(seen, jv_ref(k), jv_none()) || jlist_push(r, jv_ref(l->v[i]))) rc = nomem(R, c->line);
    }
    free_keys(keys, l->len);
    jv_decref(jv_obj(l));
    if (seen) jv_decref(jv_obj(seen));
    if (rc) { if (r) jv_decref(jv_obj(r)); return rc; }
    *out = jv_obj(r);
    return 0;
}

static int do_indent(jrender *R, jv in, jcall *c, jv *out)
{
    static const char *const names[] = { "width", "first", "blank" };
    jv a[3];
    int rc = bind(R, c, "indent", names, 3, a);
    if (rc) return rc;
    pl_buf ind;
    jr_buf_init(R, &ind);
    if (is_missing(a[0])) pl_buf_puts(&ind, "    ");
    else if (a[0].t == JV_STR) pl_buf_append(&ind, JSTR(a[0])->data, JSTR(a[0])->len);
    else if (a[0].t == JV_INT || a[0].t == JV_BOOL) { for (int64_t i = 0; i < a[0].u.i && i < 1024; i++) pl_buf_putc(&ind, ' '); }
    else return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: indent width must be int or str");
    if (in.t != JV_STR) {     /* do_indent does s += "\n" first */
        pl_buf_free(&ind);
        if (in.t == JV_UNDEF) return jr_undef_error(R, in, c->line);
        if (in.t == JV_LIST && !(JLIST(in)->h.flags & LIST_TUPLE))
            return jr_error(R, PL_ERR_INVALID, c->line, "AttributeError: 'list' object has no attribute 'splitlines'");
        return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: unsupported operand type(s) for +=: '%s' and 'str'", jv_typename(in));
    }
    jv s = jv_ref(in);
    /* s += "\n"; then splitlines: a trailing line break gives no extra line */
    jv s2;
    pl_buf t;
    jr_buf_init(R, &t);
    pl_buf_append(&t, JSTR(s)->data, JSTR(s)->len);
    pl_buf_putc(&t, '\n');
    jv_decref(s);
    if ((rc = jr_buf_to_str(R, &t, &s2))) { pl_buf_free(&ind); return rc; }
    jlist *lines;
    rc = splitlines(R, s2, 0, c->line, &lines);
    jv_decref(s2);
    if (rc) { pl_buf_free(&ind); return rc; }
    pl_buf b;
    jr_buf_init(R, &b);
    int blank = opt_bool(a[2], 0), first = opt_bool(a[1], 0);
    if (first) pl_buf_append(&b, ind.data ? ind.data : "", ind.len);
    for (size_t i = 0; i < lines->len; i++) {
        jstr *ln = JSTR(lines->v[i]);
        if (i) {
            pl_buf_putc(&b, '\n');
            if (blank || ln->len) pl_buf_append(&b, ind.data ? ind.data : "", ind.len);
        }
        pl_buf_append(&b, ln->data, ln->len);
    }
    jv_decref(jv_obj(lines));
    pl_buf_free(&ind);
    return jr_buf_to_str(R, &b, out);
}

static int do_truncate(jrender *R, jv in, jcall *c, jv *out)
{
    static const char *const names[] = { "length", "killwords", "end", "leeway" };
    jv a[4];
    int rc = bind(R, c, "truncate", names, 4, a);
    if (rc) return rc;
    int64_t length = 255, leeway = 5;
    if (!is_missing(a[0])) { if ((rc = need_type(R, a[0], JV_INT, "length", c->line))) return rc; length = a[0].u.i; }
    if (!is_missing(a[3]) && a[3].t != JV_NONE) { if ((rc = need_type(R, a[3], JV_INT, "leeway", c->line))) return rc; leeway = a[3].u.i; }
    if (in.t != JV_STR) {      /* do_truncate calls len(s), then slices */
        int64_t n;
        if ((rc = length_of(R, in, c->line, &n))) return rc;
        if (n <= length + leeway) { *out = jv_ref(in); return 0; }
        if (opt_bool(a[1], 0))
            return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: can only concatenate %s (not \"str\") to %s",
                            jv_typename(in), jv_typename(in));
        return jr_error(R, PL_ERR_INVALID, c->line, "AttributeError: '%s' object has no attribute 'rsplit'", jv_typename(in));
    }
    jv s = jv_ref(in);
    const char *end = "...";
    size_t endl = 3;
    if (!is_missing(a[2])) {
        if ((rc = need_type(R, a[2], JV_STR, "end", c->line))) { jv_decref(s); return rc; }
        end = JSTR(a[2])->data;
        endl = JSTR(a[2])->len;
    }
    int64_t endcp = (int64_t)utf8_count(end, endl), len = (int64_t)jv_strlen_cp(s);
    if (length < endcp || leeway < 0) {
        jv_decref(s);
        return jr_error(R, PL_ERR_INVALID, c->line, "AssertionError: expected length >= %lld, got %lld",
                        (long long)endcp, (long long)length);
    }
    if (len <= length + leeway) { *out = s; return 0; }
    jstr *str = JSTR(s);
    size_t cut = utf8_advance(str->data, str->len, 0, (size_t)(length - endcp));
    if (!opt_bool(a[1], 0)) {   /* s[:n].rsplit(" ", 1)[0] */
        const char *sp = rfind_bytes(str->data, cut, " ", 1);
        if (sp) cut = (size_t)(sp - str->data);
    }
    pl_buf b;
    jr_buf_init(R, &b);
    pl_buf_append(&b, str->data, cut);
    pl_buf_append(&b, end, endl);
    jv_decref(s);
    return jr_buf_to_str(R, &b, out);
}

static int do_join(jrender *R, jv seq, jcall *c, jv *out)
{
    static const char *const names[] = { "d", "attribute" };
    jv a[2];
    int rc = bind(R, c, "join", names, 2, a);
    if (rc) return rc;
    jv sep = jv_none();
    if (!is_missing(a[0]) && (rc = to_str(R, a[0], &sep))) return rc;
    jlist *l;
    if ((rc = iter_list(R, seq, c->line, &l))) { jv_decref(sep); return rc; }
    pl_buf b;
    jr_buf_init(R, &b);
    for (size_t i = 0; i < l->len && !rc; i++) {
        if (i && sep.t == JV_STR) pl_buf_append(&b, JSTR(sep)->data, JSTR(sep)->len);
        jv v = jv_ref(l->v[i]);
        if (!is_missing(a[1]) && a[1].t != JV_NONE) {
            jv x;
            rc = a[1].t == JV_STR ? attr_path(R, v, JSTR(a[1])->data, JSTR(a[1])->len, c->line, &x)
                                  : jr_getitem(R, v, a[1], c->line, &x);
            jv_decref(v);
            if (rc) break;
            v = x;
        }
        rc = jr_write_str(R, &b, v, c->line);
        jv_decref(v);
    }
    jv_decref(jv_obj(l));
    jv_decref(sep);
    if (rc) { pl_buf_free(&b); return rc; }
    return jr_buf_to_str(R, &b, out);
}

/* ================================================================ filters */

int builtin_filter(jrender *R, int id, jv in, jcall *c, jv *out)
{
    int line = c->line, rc;
    jv a[4];
    if ((rc = jr_tick(R, line))) return rc;   /* one builtin may scan a long string: look at the clock */
    switch (id) {
    case F_TOJSON:
        return do_tojson(R, in, c, out);
    case F_TRIM: {
        static const char *const n[] = { "chars" };
        if ((rc = bind(R, c, "trim", n, 1, a))) return rc;
        jv s;
        if ((rc = to_str(R, in, &s))) return rc;
        rc = strip(R, s, a[0], 3, line, out);
        jv_decref(s);
        return rc;
    }
    case F_LENGTH: case F_COUNT: {
        int64_t n = 0;
        if ((rc = length_of(R, in, line, &n))) return rc;
        *out = jv_int(n);
        return 0;
    }
    case F_D: case F_DEFAULT: {
        static const char *const n[] = { "default_value", "boolean" };
        if ((rc = bind(R, c, "default", n, 2, a))) return rc;
        int use_default = in.t == JV_UNDEF || (opt_bool(a[1], 0) && !jv_truthy(in));
        if (!use_default) { *out = jv_ref(in); return 0; }
        if (is_missing(a[0])) return jr_new_str(R, "", 0, out);
        *out = jv_ref(a[0]);
        return 0;
    }
    case F_UPPER: case F_LOWER: case F_CAPITALIZE: case F_TITLE: {
        if (c->npos || c->nkw) return jr_error(R, PL_ERR_INVALID, line, "TypeError: filter takes no arguments");
        jv s;
        if ((rc = to_str(R, in, &s))) return rc;
        rc = case_map(R, s, id == F_UPPER ? 0 : id == F_LOWER ? 1 : id == F_CAPITALIZE ? 2 : 5, line, out);
        jv_decref(s);
        return rc;
    }
    case F_FIRST: case F_LAST: {
        jlist *l;
        if (in.t == JV_STR) {
            jstr *s = JSTR(in);
            if (!s->len) { *out = jv_undef_hint(id == F_FIRST ? "No first item, sequence was empty." : "No last item, sequence was empty."); return 0; }
            if (id == F_FIRST) return jr_new_str(R, s->data, utf8_advance(s->data, s->len, 0, 1), out);
            size_t st = s->len - 1;
            while (st > 0 && ((unsigned char)s->data[st] & 0xC0) == 0x80 && s->len - st < 4) st--;
            return jr_new_str(R, s->data + st, s->len - st, out);
        }
        if ((rc = iter_list(R, in, line, &l))) return rc;
        if (!l->len) *out = jv_undef_hint(id == F_FIRST ? "No first item, sequence was empty." : "No last item, sequence was empty.");
        else *out = jv_ref(l->v[id == F_FIRST ? 0 : l->len - 1]);
        jv_decref(jv_obj(l));
        return 0;
    }
    case F_JOIN:
        return do_join(R, in, c, out);
    case F_REPLACE: {
        static const char *const n[] = { "old", "new", "count" };
        if ((rc = bind(R, c, "replace", n, 3, a))) return rc;
        if (is_missing(a[0]) || is_missing(a[1])) return jr_error(R, PL_ERR_INVALID, line, "TypeError: replace() missing required argument");
        jv s;
        if ((rc = to_str(R, in, &s))) return rc;
        rc = replace(R, s, a[0], a[1], a[2], line, out);
        jv_decref(s);
        return rc;
    }
    case F_LIST: {
        jlist *l;
        if ((rc = iter_list(R, in, line, &l))) return rc;
        if (l->h.flags & (LIST_TUPLE | LIST_VIEWS) || (in.t == JV_LIST && l == JLIST(in))) {   /* a new plain list */
            jlist *cp = jlist_new(l->len);
            if (!cp) { jv_decref(jv_obj(l)); return nomem(R, line); }
            for (size_t i = 0; i < l->len; i++) cp->v[cp->len++] = jv_ref(l->v[i]);
            jv_decref(jv_obj(l));
            l = cp;
        }
        *out = jv_obj(l);
        return 0;
    }
    case F_STRING:
        return to_str(R, in, out);
    case F_SAFE:
        return to_str(R, in, out);
    case F_E: case F_ESCAPE: case F_FORCEESCAPE:
        return html_escape(R, in, out);
    case F_INT: {
        static const char *const n[] = { "default", "base" };
        if ((rc = bind(R, c, "int", n, 2, a))) return rc;
        return to_int(R, in, a[0], a[1], line, out);
    }
    case F_FLOAT: {
        static const char *const n[] = { "default" };
        if ((rc = bind(R, c, "float", n, 1, a))) return rc;
        return to_float(R, in, a[0], line, out);
    }
    case F_ABS:
        if (in.t == JV_INT || in.t == JV_BOOL) {
            if (in.u.i == INT64_MIN) return jr_error(R, PL_ERR_INVALID, line, "OverflowError: integer result does not fit in 64 bits");
            *out = jv_int(in.u.i < 0 ? -in.u.i : in.u.i);
            return 0;
        }
        if (in.t == JV_FLOAT) { *out = jv_float(fabs(in.u.f)); return 0; }
        return jr_error(R, PL_ERR_INVALID, line, "TypeError: bad operand type for abs(): '%s'", jv_typename(in));
    case F_ROUND: {
        static const char *const n[] = { "precision", "method" };
        if ((rc = bind(R, c, "round", n, 2, a))) return rc;
        return do_round(R, in, a[0], a[1], line, out);
    }
    case F_ITEMS: {
        if (in.t == JV_UNDEF) { jlist *l = jlist_new(0); if (!l) return nomem(R, line); *out = jv_obj(l); return 0; }
        if (in.t != JV_DICT) return jr_error(R, PL_ERR_INVALID, line, "TypeError: Can only get item pairs from a mapping.");
        if ((rc = builtin_call(R, M_D_ITEMS, in, c, out))) return rc;
        JLIST(*out)->h.flags &= (uint16_t)~LIST_VIEWS;
        return 0;
    }
    case F_DICTSORT: {
        static const char *const n[] = { "case_sensitive", "by", "reverse" };
        if ((rc = bind(R, c, "dictsort", n, 3, a))) return rc;
        if (in.t == JV_UNDEF) return jr_undef_error(R, in, line);
        if (in.t != JV_DICT) return jr_error(R, PL_ERR_INVALID, line, "AttributeError: '%s' object has no attribute 'items'", jv_typename(in));
        int pos = 0;
        if (!is_missing(a[1])) {
            if (a[1].t == JV_STR && !strcmp(JSTR(a[1])->data, "value")) pos = 1;
            else if (!(a[1].t == JV_STR && !strcmp(JSTR(a[1])->data, "key")))
                return jr_error(R, PL_ERR_INVALID, line, "FilterArgumentError: You can only sort by either \"key\" or \"value\"");
        }
        jcall none = { NULL, 0, NULL, 0, line };
        jv items;
        if ((rc = builtin_call(R, M_D_ITEMS, in, &none, &items))) return rc;
        jlist *il = JLIST(items);
        jv *keys = calloc(il->len ? il->len : 1, sizeof *keys);
        if (!keys) { jv_decref(items); return nomem(R, line); }
        for (size_t i = 0; i < il->len && !rc; i++)
            rc = sort_key(R, JLIST(il->v[i])->v[pos], missing(), opt_bool(a[0], 0), line, &keys[i]);
        jlist *sorted = NULL;
        if (!rc) rc = sorted_list(R, il, keys, opt_bool(a[2], 0), line, &sorted);
        free_keys(keys, il->len);
        jv_decref(items);
        if (rc) return rc;
        *out = jv_obj(sorted);
        return 0;
    }
    case F_SORT: {
        static const char *const n[] = { "reverse", "case_sensitive", "attribute" };
        if ((rc = bind(R, c, "sort", n, 3, a))) return rc;
        jlist *l;
        if ((rc = iter_list(R, in, line, &l))) return rc;
        jv *keys;
        if ((rc = make_keys(R, l, a[2], opt_bool(a[1], 0), 1, line, &keys))) { jv_decref(jv_obj(l)); return rc; }
        jlist *sorted = NULL;
        rc = sorted_list(R, l, keys, opt_bool(a[0], 0), line, &sorted);
        free_keys(keys, l->len);
        jv_decref(jv_obj(l));
        if (rc) return rc;
        *out = jv_obj(sorted);
        return 0;
    }
    case F_REVERSE: {
        if (in.t == JV_STR) {
            jstr *s = JSTR(in);
            pl_buf b;
            jr_buf_init(R, &b);
            size_t e = s->len;
            while (e > 0) {
                size_t st = e - 1;
                while (st > 0 && ((unsigned char)s->data[st] & 0xC0) == 0x80 && e - st < 4) st--;
                pl_buf_append(&b, s->data + st, e - st);
                e = st;
            }
            return jr_buf_to_str(R, &b, out);
        }
        jlist *l;
        if (in.t != JV_LIST && in.t != JV_DICT && in.t != JV_UNDEF)
            return jr_error(R, PL_ERR_INVALID, line, "FilterArgumentError: argument must be iterable");
        if ((rc = iter_list(R, in, line, &l))) return rc;
        jlist *r = jlist_new(l->len);
        if (!r) { jv_decref(jv_obj(l)); return nomem(R, line); }
        for (size_t i = l->len; i-- > 0;) r->v[r->len++] = jv_ref(l->v[i]);
        jv_decref(jv_obj(l));
        *out = jv_obj(r);
        return 0;
    }
    case F_UNIQUE:
        return do_unique(R, in, c, out);
    case F_MAX: case F_MIN:
        return do_minmax(R, in, c, id == F_MAX, out);
    case F_SUM: {
        static const char *const n[] = { "attribute", "start" };
        if ((rc = bind(R, c, "sum", n, 2, a))) return rc;
        jlist *l;
        if ((rc = iter_list(R, in, line, &l))) return rc;
        jv acc = is_missing(a[1]) ? jv_int(0) : jv_ref(a[1]);
        for (size_t i = 0; i < l->len && !rc; i++) {
            jv v = jv_ref(l->v[i]), r;
            if (!is_missing(a[0]) && a[0].t != JV_NONE) {
                jv x;
                rc = a[0].t == JV_STR ? attr_path(R, v, JSTR(a[0])->data, JSTR(a[0])->len, line, &x)
                                      : jr_getitem(R, v, a[0], line, &x);
                jv_decref(v);
                if (rc) break;
                v = x;
            }
            /* sum() refuses strings even though + would concatenate them */
            if (acc.t == JV_STR) {
                rc = jr_error(R, PL_ERR_INVALID, line, "TypeError: sum() can't sum strings [use ''.join(seq) instead]");
            } else if (!(rc = jr_binop(R, OP_ADD, acc, v, line, &r))) {
                jv_decref(acc);
                acc = r;
            }
            jv_decref(v);
        }
        jv_decref(jv_obj(l));
        if (rc) { jv_decref(acc); return rc; }
        *out = acc;
        return 0;
    }
    case F_MAP:
        return do_map(R, in, c, out);
    case F_SELECT: case F_REJECT:
        return do_select(R, in, c, 0, id == F_SELECT, out);
    case F_SELECTATTR: case F_REJECTATTR:
        return do_select(R, in, c, 1, id == F_SELECTATTR, out);
    case F_ATTR: {
        static const char *const n[] = { "name" };
        if ((rc = bind(R, c, "attr", n, 1, a))) return rc;
        if (is_missing(a[0])) return jr_error(R, PL_ERR_INVALID, line, "TypeError: attr() missing 1 required argument: 'name'");
        jv name;
        if ((rc = to_str(R, a[0], &name))) return rc;
        /* attributes only: a dict key is not an attribute */
        jv r;
        if (in.t == JV_DICT) {
            int unsafe;
            int mid = builtin_method_id(JV_DICT, JSTR(name)->data, JSTR(name)->len, &unsafe);
            if (mid >= 0 || unsafe) rc = jr_getattr(R, in, JSTR(name)->data, JSTR(name)->len, line, &r);
            else { r = jv_undef_hint("no such attribute"); }
        } else {
            rc = jr_getattr(R, in, JSTR(name)->data, JSTR(name)->len, line, &r);
        }
        jv_decref(name);
        if (!rc) *out = r;
        return rc;
    }
    case F_BATCH: {
        static const char *const n[] = { "linecount", "fill_with" };
        if ((rc = bind(R, c, "batch", n, 2, a))) return rc;
        if (is_missing(a[0]) || (rc = need_type(R, a[0], JV_INT, "linecount", line))) return rc ? rc : jr_error(R, PL_ERR_INVALID, line, "TypeError: batch() missing linecount");
        int64_t cnt = a[0].u.i;
        if (cnt <= 0) return jr_error(R, PL_ERR_INVALID, line, "ValueError: linecount must be positive");
        jlist *l;
        if ((rc = iter_list(R, in, line, &l))) return rc;
        jlist *r = jlist_new(0), *cur = NULL;
        if (!r) { jv_decref(jv_obj(l)); return nomem(R, line); }
        for (size_t i = 0; i < l->len && !rc; i++) {
            if (!cur && !(cur = jlist_new((size_t)cnt))) { rc = nomem(R, line); break; }
            cur->v[cur->len++] = jv_ref(l->v[i]);
            if ((int64_t)cur->len == cnt) { rc = jlist_push(r, jv_obj(cur)); cur = NULL; }
        }
        if (!rc && cur) {
            if (!is_missing(a[1])) while ((int64_t)cur->len < cnt) cur->v[cur->len++] = jv_ref(a[1]);
            rc = jlist_push(r, jv_obj(cur));
            cur = NULL;
        }
        if (cur) jv_decref(jv_obj(cur));
        jv_decref(jv_obj(l));
        if (rc) { jv_decref(jv_obj(r)); return rc < 0 && rc != PL_ERR_NOMEM ? rc : nomem(R, line); }
        *out = jv_obj(r);
        return 0;
    }
    case F_CENTER: {
        static const char *const n[] = { "width" };
        if ((rc = bind(R, c, "center", n, 1, a))) return rc;
        jv s;
        if ((rc = to_str(R, in, &s))) return rc;
        rc = pad(R, s, is_missing(a[0]) ? jv_int(80) : a[0], missing(), 2, line, out);
        jv_decref(s);
        return rc;
    }
    case F_FORMAT: {
        jv s;
        if ((rc = to_str(R, in, &s))) return rc;
        jlist *t = jlist_new((size_t)c->npos);
        if (!t) { jv_decref(s); return nomem(R, line); }
        t->h.flags |= LIST_TUPLE;
        for (int i = 0; i < c->npos; i++) t->v[t->len++] = jv_ref(c->pos[i]);
        jv args = jv_obj(t);
        if (c->nkw) {
            jv_decref(args);
            jv_decref(s);
            return jr_error(R, PL_ERR_UNSUPPORTED, line, "format filter with keyword arguments is not supported");
        }
        rc = jr_binop(R, OP_MOD, s, args, line, out);
        jv_decref(args);
        jv_decref(s);
        return rc;
    }
    case F_INDENT:
        return do_indent(R, in, c, out);
    case F_TRUNCATE:
        return do_truncate(R, in, c, out);
    case F_WORDCOUNT: {
        jv s;
        if ((rc = to_str(R, in, &s))) return rc;
        jstr *str = JSTR(s);
        int64_t words = 0;
        int inword = 0;
        size_t i = 0;
        while (i < str->len) {
            uint32_t cp;
            i += utf8_dec((const unsigned char *)str->data + i, str->len - i, &cp);
            int w = cp == '_' || is_alpha(cp) || is_numeric(cp);
            if (w && !inword) words++;
            inword = w;
        }
        jv_decref(s);
        *out = jv_int(words);
        return 0;
    }
    default:
        return jr_error(R, PL_ERR_UNSUPPORTED, line, "TemplateRuntimeError: this filter is not supported by glmpipe");
    }
}

/* ================================================================ tests */

int builtin_test(jrender *R, int id, jv v, jcall *c, int *out)
{
    int line = c->line, rc;
    jv arg = c->npos ? c->pos[0] : (c->nkw ? c->kw[0].v : missing());
    switch (id) {
    case TT_DEFINED: *out = v.t != JV_UNDEF; return 0;
    case TT_UNDEFINED: *out = v.t == JV_UNDEF; return 0;
    case TT_NONE: *out = v.t == JV_NONE; return 0;
    case TT_BOOLEAN: *out = v.t == JV_BOOL; return 0;
    case TT_FALSE: *out = v.t == JV_BOOL && !v.u.i; return 0;
    case TT_TRUE: *out = v.t == JV_BOOL && v.u.i; return 0;
    case TT_INTEGER: *out = v.t == JV_INT || v.t == JV_BIGINT; return 0;
    case TT_FLOAT: *out = v.t == JV_FLOAT; return 0;
    case TT_NUMBER: *out = v.t == JV_INT || v.t == JV_BOOL || v.t == JV_FLOAT || v.t == JV_BIGINT; return 0;
    case TT_STRING: *out = v.t == JV_STR; return 0;
    case TT_MAPPING: *out = v.t == JV_DICT; return 0;
    case TT_SEQUENCE: *out = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF; return 0;
    case TT_ITERABLE: *out = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF || v.t == JV_LOOP; return 0;
    case TT_CALLABLE: *out = v.t == JV_MACRO || v.t == JV_FUNC || v.t == JV_LOOP || v.t == JV_UNDEF; return 0;
    case TT_ESCAPED: *out = 0; return 0;
    case TT_SAMEAS:
        if (is_missing(arg)) return jr_error(R, PL_ERR_INVALID, line, "TypeError: sameas() missing argument");
        if (JV_IS_OBJ(v.t) || JV_IS_OBJ(arg.t)) *out = v.t == arg.t && v.u.o == arg.u.o;
        else if (v.t == JV_INT && arg.t == JV_INT) *out = v.u.i == arg.u.i && v.u.i >= -5 && v.u.i <= 256; /* CPython small ints */
        else *out = v.t == arg.t && (v.t == JV_NONE || v.t == JV_UNDEF ? 0 : v.u.i == arg.u.i) + (v.t == JV_NONE);
        return 0;
    case TT_LOWER: case TT_UPPER: {
        jv s;
        if ((rc = jr_to_str(R, v, &s))) return rc;
        int cased = 0, bad = 0;
        size_t i = 0;
        while (i < JSTR(s)->len) {
            uint32_t cp;
            i += utf8_dec((const unsigned char *)JSTR(s)->data + i, JSTR(s)->len - i, &cp);
            int k = cat_of(cp);
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) { if (id == TT_LOWER) bad = 1; else cased = 1; }
            if (k == UTF8PROC_CATEGORY_LL) { if (id == TT_UPPER) bad = 1; else cased = 1; }
        }
        jv_decref(s);
        *out = cased && !bad;
        return 0;
    }
    case TT_ODD: case TT_EVEN: case TT_DIVISIBLEBY: {
        jv d = id == TT_DIVISIBLEBY ? arg : jv_int(2);
        if (is_missing(d)) return jr_error(R, PL_ERR_INVALID, line, "TypeError: divisibleby() missing argument");
        if (v.t == JV_UNDEF) return jr_undef_error(R, v, line);
        int num = (v.t == JV_INT || v.t == JV_BOOL || v.t == JV_FLOAT) && (d.t == JV_INT || d.t == JV_BOOL || d.t == JV_FLOAT);
        if (!num) return jr_error(R, PL_ERR_INVALID, line, "TypeError: unsupported operand type(s) for %%: '%s' and '%s'", jv_typename(v), jv_typename(d));
        if (v.t != JV_FLOAT && d.t != JV_FLOAT) {
            if (d.u.i == 0) return jr_error(R, PL_ERR_INVALID, line, "ZeroDivisionError: integer division or modulo by zero");
            int64_t m = v.u.i % d.u.i;
            if (m && ((m < 0) != (d.u.i < 0))) m += d.u.i;
            *out = id == TT_ODD ? m == 1 : m == 0;
        } else {
            double x = v.t == JV_FLOAT ? v.u.f : (double)v.u.i, y = d.t == JV_FLOAT ? d.u.f : (double)d.u.i;
            if (y == 0) return jr_error(R, PL_ERR_INVALID, line, "ZeroDivisionError: float modulo");
            double m = fmod(x, y);
            if (m && ((m < 0) != (y < 0))) m += y;
            *out = id == TT_ODD ? m == 1 : m == 0;
        }
        return 0;
    }
    case TT_IN: case TT_EQ: case TT_NE: case TT_GT: case TT_GE: case TT_LT: case TT_LE: {
        if (is_missing(arg)) return jr_error(R, PL_ERR_INVALID, line, "TypeError: test missing its argument");
        static const int ops[] = { CMP_IN, CMP_EQ, CMP_NE, CMP_GT, CMP_GE, CMP_LT, CMP_LE };
        return jr_compare(R, ops[id - TT_IN], v, arg, line, out);
    }
    case TT_FILTER: case TT_TEST:
        if (v.t != JV_STR) { *out = 0; return 0; }
        *out = (id == TT_FILTER ? builtin_filter_id(JSTR(v)->data, JSTR(v)->len)
                               : builtin_test_id(JSTR(v)->data, JSTR(v)->len)) >= 0;
        return 0;
    default:
        return jr_error(R, PL_ERR_INTERNAL, line, "internal error: test %d", id);
    }
}

/* ================================================================ loop */

int builtin_loop_attr(jrender *R, jloop *l, int id, jv *out)
{
    size_t n = l->items->len, i = l->index0;
    switch (id) {
    case L_INDEX: *out = jv_int((int64_t)i + 1); return 0;
    case L_INDEX0: *out = jv_int((int64_t)i); return 0;
    case L_REVINDEX: *out = jv_int((int64_t)(n - i)); return 0;
    case L_REVINDEX0: *out = jv_int((int64_t)(n - i) - 1); return 0;
    case L_FIRST: *out = jv_bool(i == 0); return 0;
    case L_LAST: *out = jv_bool(i + 1 == n); return 0;
    case L_LENGTH: *out = jv_int((int64_t)n); return 0;
    case L_DEPTH: *out = jv_int(l->depth0 + 1); return 0;
    case L_DEPTH0: *out = jv_int(l->depth0); return 0;
    case L_PREVITEM:
        *out = i > 0 ? jv_ref(l->items->v[i - 1]) : jv_undef_hint("there is no previous item");
        return 0;
    case L_NEXTITEM:
        *out = i + 1 < n ? jv_ref(l->items->v[i + 1]) : jv_undef_hint("there is no next item");
        return 0;
    default: {
        jfunc *f = jfunc_new(id, jv_ref(jv_obj(l)));
        if (!f) return nomem(R, 0);
        *out = jv_obj(f);
        return 0;
    }
    }
}

/* ================================================================ calls */

static int global_range(jrender *R, jcall *c, jv *out)
{
    if (c->nkw) return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: range() takes no keyword arguments");
    if (c->npos < 1 || c->npos > 3)
        return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: range expected at most 3 arguments, got %d", c->npos);
    int64_t x[3] = { 0, 0, 1 };
    for (int i = 0; i < c->npos; i++) {
        if (c->pos[i].t != JV_INT && c->pos[i].t != JV_BOOL) {
            if (c->pos[i].t == JV_UNDEF) return jr_undef_error(R, c->pos[i], c->line);
            return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: '%s' object cannot be interpreted as an integer", jv_typename(c->pos[i]));
        }
    }
    if (c->npos == 1) x[1] = c->pos[0].u.i;
    else { x[0] = c->pos[0].u.i; x[1] = c->pos[1].u.i; if (c->npos == 3) x[2] = c->pos[2].u.i; }
    if (x[2] == 0) return jr_error(R, PL_ERR_INVALID, c->line, "ValueError: range() arg 3 must not be zero");
    uint64_t n = 0;
    if (x[2] > 0 && x[0] < x[1]) n = ((uint64_t)x[1] - (uint64_t)x[0] - 1) / (uint64_t)x[2] + 1;
    if (x[2] < 0 && x[0] > x[1]) n = ((uint64_t)x[0] - (uint64_t)x[1] - 1) / (uint64_t)(-(x[2] + 1) + 1) + 1;
    if (n > 100000)    /* the sandbox's MAX_RANGE */
        return jr_error(R, PL_ERR_INVALID, c->line, "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    int rc = jr_work(R, n * sizeof(jv));
    if (rc) return rc;
    jlist *l = jlist_new((size_t)n);
    if (!l) return nomem(R, c->line);
    for (uint64_t i = 0; i < n; i++) l->v[l->len++] = jv_int(x[0] + (int64_t)i * x[2]);
    *out = jv_obj(l);
    return 0;
}

/* dict(...) and namespace(...): dict(*args, **kwargs) */
static int build_dict(jrender *R, jcall *c, jdict *d)
{
    if (c->npos > 1) return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: dict expected at most 1 argument, got %d", c->npos);
    if (c->npos == 1) {
        jv src = c->pos[0];
        if (src.t == JV_DICT || src.t == JV_NS) {
            for (size_t i = 0; i < JDICT(src)->len; i++)
                if (jdict_set(d, jv_ref(JDICT(src)->e[i].key), jv_ref(JDICT(src)->e[i].val))) return nomem(R, c->line);
        } else {
            jlist *l;
            int rc = jr_iter_list(R, src, c->line, &l);
            if (rc) return rc;
            for (size_t i = 0; i < l->len; i++) {
                jv p = l->v[i];
                if (p.t != JV_LIST || JLIST(p)->len != 2) {
                    jv_decref(jv_obj(l));
                    return jr_error(R, PL_ERR_INVALID, c->line, "ValueError: dictionary update sequence element #%zu has wrong length", i);
                }
                if (jdict_set(d, jv_ref(JLIST(p)->v[0]), jv_ref(JLIST(p)->v[1]))) { jv_decref(jv_obj(l)); return nomem(R, c->line); }
            }
            jv_decref(jv_obj(l));
        }
    }
    for (int k = 0; k < c->nkw; k++) {
        jv key;
        int rc = jr_new_str(R, c->kw[k].name, c->kw[k].len, &key);
        if (rc) return rc;
        if (jdict_set(d, key, jv_ref(c->kw[k].v))) return nomem(R, c->line);
    }
    return 0;
}

static int strftime_now(jrender *R, jcall *c, jv *out)
{
    static const char *const n[] = { "format" };
    jv a[1];
    int rc = bind(R, c, "strftime_now", n, 1, a);
    if (rc) return rc;
    if (is_missing(a[0])) return jr_error(R, PL_ERR_INVALID, c->line, "TypeError: strftime_now() missing argument 'format'");
    if ((rc = need_type(R, a[0], JV_STR, "format", c->line))) return rc;
    time_t now = jr_fixed_time(R) > 0 ? (time_t)jr_fixed_time(R) : time(NULL);
    struct tm tm;
    if (jr_fixed_time(R) > 0) gmtime_r(&now, &tm);
    else localtime_r(&now, &tm);
    char buf[512];
    size_t len = JSTR(a[0])->len ? strftime(buf, sizeof buf, JSTR(a[0])->data, &tm) : 0;
    if (JSTR(a[0])->len && !len) return jr_error(R, PL_ERR_INVALID, c->line, "ValueError: strftime result too long or empty");
    return jr_new_str(R, buf, len, out);
}

static int str_method(jrender *R, int id, jv self, jcall *c, jv *out);

int builtin_call(jrender *R, int id, jv self, jcall *c, jv *out)
{
    int line = c->line, rc;
    jv a[3];
    if ((rc = jr_tick(R, line))) return rc;   /* one builtin may scan a long string: look at the clock */
    switch (id) {
    case G_RANGE: return global_range(R, c, out);
    case G_DICT: case G_NAMESPACE: {
        jdict *d = id == G_DICT ? jdict_new(JV_DICT) : jr_new_ns(R);
        if (!d) return nomem(R, line);
        rc = build_dict(R, c, d);
        if (rc) { jv_decref(jv_obj(d)); return rc; }
        *out = jv_obj(d);
        return 0;
    }
    case G_RAISE: {
        jv msg = c->npos ? c->pos[0] : (c->nkw ? c->kw[0].v : jv_none());
        jv s;
        if ((rc = jr_to_str(R, msg, &s))) return rc;
        rc = jr_raise_user(R, JSTR(s)->data, JSTR(s)->len);
        jv_decref(s);
        return rc;
    }
    case G_STRFTIME: return strftime_now(R, c, out);
    case G_UNSUPPORTED_GLOBAL:
        return jr_error(R, PL_ERR_UNSUPPORTED, line, "TemplateRuntimeError: cycler/joiner/lipsum are not supported by glmpipe");
    case M_D_GET: {
        static const char *const n[] = { "key", "default" };
        if ((rc = bind(R, c, "get", n, 2, a))) return rc;
        if (is_missing(a[0])) return jr_error(R, PL_ERR_INVALID, line, "TypeError: get expected at least 1 argument, got 0");
        if ((a[0].t == JV_LIST && !(JLIST(a[0])->h.flags & LIST_TUPLE)) || a[0].t == JV_DICT)
            return jr_error(R, PL_ERR_INVALID, line, "TypeError: unhashable type: '%s'", jv_typename(a[0]));
        jv *v = jdict_get(JDICT(self), a[0]);
        *out = v ? jv_ref(*v) : is_missing(a[1]) ? jv_none() : jv_ref(a[1]);
        return 0;
    }
    case M_D_ITEMS: case M_D_KEYS: case M_D_VALUES: case M_D_COPY: {
        if (c->npos || c->nkw) return jr_error(R, PL_ERR_INVALID, line, "TypeError: method takes no arguments");
        jdict *d = JDICT(self);
        if (id == M_D_COPY) {
            jdict *cp = jdict_new(JV_DICT);
            if (!cp) return nomem(R, line);
            for (size_t i = 0; i < d->len; i++)
                if (jdict_set(cp, jv_ref(d->e[i].key), jv_ref(d->e[i].val))) { jv_decref(jv_obj(cp)); return nomem(R, line); }
            *out = jv_obj(cp);
            return 0;
        }
        if ((rc = jr_work(R, d->len * 64))) return rc;
        jlist *l = jlist_new(d->len);
        if (!l) return nomem(R, line);
        l->h.flags |= id == M_D_KEYS ? LIST_VIEW_KEYS : id == M_D_VALUES ? LIST_VIEW_VALUES : LIST_VIEW_ITEMS;
        for (size_t i = 0; i < d->len; i++) {
            if (id == M_D_KEYS) { l->v[l->len++] = jv_ref(d->e[i].key); continue; }
            if (id == M_D_VALUES) { l->v[l->len++] = jv_ref(d->e[i].val); continue; }
            jlist *p = jlist_new(2);
            if (!p) { jv_decref(jv_obj(l)); return nomem(R, line); }
            p->h.flags |= LIST_TUPLE;
            p->v[0] = jv_ref(d->e[i].key);
            p->v[1] = jv_ref(d->e[i].val);
            p->len = 2;
            l->v[l->len++] = jv_obj(p);
        }
        *out = jv_obj(l);
        return 0;
    }
    case M_L_COPY: {
        jlist *s = JLIST(self), *l = jlist_new(s->len);
        if (!l) return nomem(R, line);
        for (size_t i = 0; i < s->len; i++) l->v[l->len++] = jv_ref(s->v[i]);
        *out = jv_obj(l);
        return 0;
    }
    case M_L_COUNT: case M_L_INDEX: {
        if (c->npos < 1) return jr_error(R, PL_ERR_INVALID, line, "TypeError: method expected 1 argument");
        jlist *s = JLIST(self);
        int64_t cnt = 0;
        for (size_t i = 0; i < s->len; i++)
            if (jv_eq(s->v[i], c->pos[0])) {
                if (id == M_L_INDEX) { *out = jv_int((int64_t)i); return 0; }
                cnt++;
            }
        if (id == M_L_INDEX) return jr_error(R, PL_ERR_INVALID, line, "ValueError: value is not in list");
        *out = jv_int(cnt);
        return 0;
    }
    case L_CYCLE: {
        jloop *l = (jloop *)self.u.o;
        if (!c->npos) return jr_error(R, PL_ERR_INVALID, line, "TypeError: no items for cycling given");
        *out = jv_ref(c->pos[l->index0 % (size_t)c->npos]);
        return 0;
    }
    case L_CHANGED: {
        jloop *l = (jloop *)self.u.o;
        jlist *t = jlist_new((size_t)c->npos);
        if (!t) return nomem(R, line);
        t->h.flags |= LIST_TUPLE;
        for (int i = 0; i < c->npos; i++) t->v[t->len++] = jv_ref(c->pos[i]);
        jv now = jv_obj(t);
        int changed = l->changed_last.t == JV_UNDEF || !jv_eq(l->changed_last, now);
        jv_decref(l->changed_last);
        l->changed_last = now;
        *out = jv_bool(changed);
        return 0;
    }
    default:
        if (id >= M_S_CAPITALIZE && id <= M_S_ZFILL) return str_method(R, id, self, c, out);
        return jr_error(R, PL_ERR_INTERNAL, line, "internal error: function %d", id);
    }
}

/* ================================================================ str methods */

static int str_pred(jstr *s, int id)
{
    if (!s->len) return 0;
    int cased = 0, prev_cased = 0;
    size_t i = 0;
    while (i < s->len) {
        uint32_t c;
        i += utf8_dec((const unsigned char *)s->data + i, s->len - i, &c);
        int k = cat_of(c);
        switch (id) {
        case M_S_ISALNUM: if (!is_alpha(c) && !is_numeric(c)) return 0; break;
        case M_S_ISALPHA: if (!is_alpha(c)) return 0; break;
        case M_S_ISDECIMAL: case M_S_ISDIGIT: if (!is_decimal(c) && !(id == M_S_ISDIGIT && k == UTF8PROC_CATEGORY_NO)) return 0; break;
        case M_S_ISNUMERIC: if (!is_numeric(c)) return 0; break;
        case M_S_ISSPACE: if (!pl_py_isspace(c)) return 0; break;
        case M_S_ISLOWER:
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) return 0;
            if (k == UTF8PROC_CATEGORY_LL) cased = 1;
            break;
        case M_S_ISUPPER:
            if (k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return 0;
            if (k == UTF8PROC_CATEGORY_LU) cased = 1;
            break;
        case M_S_ISTITLE:
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) { if (prev_cased) return 0; prev_cased = cased = 1; }
            else if (k == UTF8PROC_CATEGORY_LL) { if (!prev_cased) return 0; prev_cased = 1; }
            else prev_cased = 0;
            break;
        }
    }
    if (id == M_S_ISLOWER || id == M_S_ISUPPER || id == M_S_ISTITLE) return cased;
    return 1;
}

/* startswith/endswith with a str or a tuple of str */
static int affix(jrender *R, jstr *s, jv arg, int end, int line, int *out)
{
    jv one[1] = { arg };
    jv *cands = one;
    size_t n = 1;
    if (arg.t == JV_LIST && (JLIST(arg)->h.flags & LIST_TUPLE)) { cands = JLIST(arg)->v; n = JLIST(arg)->len; }
    *out = 0;
    for (size_t i = 0; i < n; i++) {
        if (cands[i].t != JV_STR) {
            if (cands[i].t == JV_UNDEF) return jr_undef_error(R, cands[i], line);
            return jr_error(R, PL_ERR_INVALID, line, "TypeError: %s first arg must be str or a tuple of str, not %s",
                            end ? "endswith" : "startswith", jv_typename(cands[i]));
        }
        jstr *p = JSTR(cands[i]);
        if (p->len <= s->len && !memcmp(end ? s->data + s->len - p->len : s->data, p->data, p->len)) { *out = 1; return 0; }
    }
    return 0;
}

static int str_method(jrender *R, int id, jv self, jcall *c, jv *out)
{
    int line = c->line, rc;
    jstr *s = JSTR(self);
    jv a[3];
    switch (id) {
    case M_S_UPPER: case M_S_LOWER: case M_S_TITLE: case M_S_SWAPCASE: case M_S_CASEFOLD:
        return case_map(R, self, id == M_S_UPPER ? 0 : id == M_S_TITLE ? 3 : id == M_S_SWAPCASE ? 4 : 1, line, out);
    case M_S_CAPITALIZE:
        return case_map(R, self, 2, line, out);
    case M_S_STRIP: case M_S_LSTRIP: case M_S_RSTRIP: {
        static const char *const n[] = { "chars" };
        if ((rc = bind(R, c, "strip", n, 1, a))) return rc;
        return strip(R, self, a[0], id == M_S_STRIP ? 3 : id == M_S_LSTRIP ? 1 : 2, line, out);
    }
    case M_S_SPLIT: case M_S_RSPLIT: {
        static const char *const n[] = { "sep", "maxsplit" };
        if ((rc = bind(R, c, "split", n, 2, a))) return rc;
        return split(R, self, a[0], a[1], id == M_S_RSPLIT, line, out);
    }
    case M_S_SPLITLINES: {
        static const char *const n[] = { "keepends" };
        if ((rc = bind(R, c, "splitlines", n, 1, a))) return rc;
        jlist *l;
        if ((rc = splitlines(R, self, opt_bool(a[0], 0), line, &l))) return rc;
        *out = jv_obj(l);
        return 0;
    }
    case M_S_STARTSWITH: case M_S_ENDSWITH: {
        if (c->npos < 1) return jr_error(R, PL_ERR_INVALID, line, "TypeError: startswith/endswith takes at least 1 argument");
        jv sub = self;
        int own = 0;
        if (c->npos > 1) {      /* s[start:end] */
            int64_t len = (int64_t)jv_strlen_cp(self), st = 0, en = len;
            if (c->pos[1].t == JV_INT) st = c->pos[1].u.i;
            if (c->npos > 2 && c->pos[2].t == JV_INT) en = c->pos[2].u.i;
            if (st < 0) st = st + len < 0 ? 0 : st + len;
            if (en < 0) en = en + len < 0 ? 0 : en + len;
            if (st > len) { *out = jv_bool(0); return 0; }
            if (en > len) en = len;
            if (en < st) en = st;
            size_t bs = utf8_advance(s->data, s->len, 0, (size_t)st), be = utf8_advance(s->data, s->len, bs, (size_t)(en - st));
            if ((rc = jr_new_str(R, s->data + bs, be - bs, &sub))) return rc;
            own = 1;
        }
        int res;
        rc = affix(R, JSTR(sub), c->pos[0], id == M_S_ENDSWITH, line, &res);
        if (own) jv_decref(sub);
        if (!rc) *out = jv_bool(res);
        return rc;
    }
    case M_S_REPLACE: {
        static const char *const n[] = { "old", "new", "count" };
        if ((rc = bind(R, c, "replace", n, 3, a))) return rc;
        if (is_missing(a[0]) || is_missing(a[1])) return jr_error(R, PL_ERR_INVALID, line, "TypeError: replace expected at least 2 arguments");
        return replace(R, self, a[0], a[1], a[2], line, out);
    }
    case M_S_FIND: case M_S_RFIND: case M_S_INDEX: case M_S_RINDEX: case M_S_COUNT: {
        if (c->npos < 1) return jr_error(R, PL_ERR_INVALID, line, "TypeError: method takes at least 1 argument");
        if ((rc = need_type(R, c->pos[0], JV_STR, "substring", line))) return rc;
        jstr *sub = JSTR(c->pos[0]);
        int64_t len = (int64_t)jv_strlen_cp(self), st = 0, en = len;
        if (c->npos > 1 && c->pos[1].t == JV_INT) st = c->pos[1].u.i;
        if (c->npos > 2 && c->pos[2].t == JV_INT) en = c->pos[2].u.i;
        if (st < 0) st = st + len < 0 ? 0 : st + len;
        if (en < 0) en = en + len < 0 ? 0 : en + len;
        if (en > len) en = len;
        size_t bs = utf8_advance(s->data, s->len, 0, (size_t)(st < len ? st : len));
        size_t be = en > st ? utf8_advance(s->data, s->len, bs, (size_t)(en - st)) : bs;
        if (id == M_S_COUNT) {
            int64_t cnt = 0;
            if (st > len) { *out = jv_int(0); return 0; }
            if (!sub->len) { *out = jv_int(en >= st ? en - st + 1 : 0); return 0; }
            const char *p = s->data + bs, *e = s->data + be;
            while ((p = memmem(p, (size_t)(e - p), sub->data, sub->len))) { cnt++; p += sub->len; }
            *out = jv_int(cnt);
            return 0;
        }
        const char *hit = NULL;
        if (st <= len && en - st >= 0) {
            hit = (id == M_S_FIND || id == M_S_INDEX) ? find_bytes(s->data + bs, be - bs, sub->data, sub->len)
                                                      : rfind_bytes(s->data + bs, be - bs, sub->data, sub->len);
            if (!sub->len && (id == M_S_RFIND || id == M_S_RINDEX)) hit = s->data + be;
        }
        if (!hit) {
            if (id == M_S_INDEX || id == M_S_RINDEX) return jr_error(R, PL_ERR_INVALID, line, "ValueError: substring not found");
            *out = jv_int(-1);
            return 0;
        }
        *out = jv_int(cp_index(s, (size_t)(hit - s->data)));
        return 0;
    }
    case M_S_JOIN: {
        if (c->npos != 1) return jr_error(R, PL_ERR_INVALID, line, "TypeError: join() takes exactly one argument");
        jlist *l;
        if ((rc = jr_iter_list(R, c->pos[0], line, &l))) return rc;
        pl_buf b;
        jr_buf_init(R, &b);
        for (size_t i = 0; i < l->len; i++) {
            if (l->v[i].t != JV_STR) {
                pl_buf_free(&b);
                rc = jr_error(R, PL_ERR_INVALID, line, "TypeError: sequence item %zu: expected str instance, %s found", i, jv_typename(l->v[i]));
                jv_decref(jv_obj(l));
                return rc;
            }
            if (i) pl_buf_append(&b, s->data, s->len);
            pl_buf_append(&b, JSTR(l->v[i])->data, JSTR(l->v[i])->len);
            if (b.len > jr_limits(R)->max_output) break;
        }
        jv_decref(jv_obj(l));
        return jr_buf_to_str(R, &b, out);
    }
    case M_S_CENTER: case M_S_LJUST: case M_S_RJUST: {
        static const char *const n[] = { "width", "fillchar" };
        if ((rc = bind(R, c, "just", n, 2, a))) return rc;
        if (is_missing(a[0])) return jr_error(R, PL_ERR_INVALID, line, "TypeError: missing width");
        return pad(R, self, a[0], a[1], id == M_S_LJUST ? 0 : id == M_S_RJUST ? 1 : 2, line, out);
    }
    case M_S_ZFILL: {
        if (c->npos != 1 || (rc = need_type(R, c->pos[0], JV_INT, "width", line))) return c->npos != 1 ? jr_error(R, PL_ERR_INVALID, line, "TypeError: zfill() takes exactly one argument") : rc;
        int64_t len = (int64_t)jv_strlen_cp(self), w = c->pos[0].u.i;
        if (w <= len) { *out = jv_ref(self); return 0; }
        if ((uint64_t)w > jr_limits(R)->max_output) return jr_check_size(R, SIZE_MAX);
        pl_buf b;
        jr_buf_init(R, &b);
        size_t st = 0;
        if (s->len && (s->data[0] == '+' || s->data[0] == '-')) { pl_buf_putc(&b, s->data[0]); st = 1; }
        for (int64_t i = 0; i < w - len; i++) pl_buf_putc(&b, '0');
        pl_buf_append(&b, s->data + st, s->len - st);
        return jr_buf_to_str(R, &b, out);
    }
    case M_S_PARTITION: case M_S_RPARTITION: {
        if (c->npos != 1 || (rc = need_type(R, c->pos[0], JV_STR, "separator", line))) return c->npos != 1 ? jr_error(R, PL_ERR_INVALID, line, "TypeError: partition() takes exactly one argument") : rc;
        jstr *sep = JSTR(c->pos[0]);
        if (!sep->len) return jr_error(R, PL_ERR_INVALID, line, "ValueError: empty separator");
        const char *hit = id == M_S_PARTITION ? find_bytes(s->data, s->len, sep->data, sep->len) : rfind_bytes(s->data, s->len, sep->data, sep->len);
        jlist *t = jlist_new(3);
        if (!t) return nomem(R, line);
        t->h.flags |= LIST_TUPLE;
        rc = 0;
        if (!hit) {
            jv e1, e2;
            if ((rc = jr_new_str(R, "", 0, &e1)) == 0 && (rc = jr_new_str(R, "", 0, &e2)) == 0) {
                if (id == M_S_PARTITION) { t->v[0] = jv_ref(self); t->v[1] = e1; t->v[2] = e2; }
                else { t->v[0] = e1; t->v[1] = e2; t->v[2] = jv_ref(self); }
                t->len = 3;
            }
        } else {
            size_t p = (size_t)(hit - s->data);
            rc = push_str(R, t, s->data, p, line);
            if (!rc) rc = push_str(R, t, sep->data, sep->len, line);
            if (!rc) rc = push_str(R, t, hit + sep->len, s->len - p - sep->len, line);
        }
        if (rc) { jv_decref(jv_obj(t)); return rc; }
        *out = jv_obj(t);
        return 0;
    }
    case M_S_REMOVEPREFIX: case M_S_REMOVESUFFIX: {
        if (c->npos != 1 || (rc = need_type(R, c->pos[0], JV_STR, "affix", line))) return c->npos != 1 ? jr_error(R, PL_ERR_INVALID, line, "TypeError: takes exactly one argument") : rc;
        jstr *p = JSTR(c->pos[0]);
        int hit = 0;
        rc = affix(R, s, c->pos[0], id == M_S_REMOVESUFFIX, line, &hit);
        if (rc) return rc;
        if (!hit || !p->len) { *out = jv_ref(self); return 0; }
        return jr_new_str(R, id == M_S_REMOVEPREFIX ? s->data + p->len : s->data, s->len - p->len, out);
    }
    case M_S_FORMAT:
        return str_dot_format(R, self, c, out);
    case M_S_ISALNUM: case M_S_ISALPHA: case M_S_ISDECIMAL: case M_S_ISDIGIT: case M_S_ISLOWER:
    case M_S_ISNUMERIC: case M_S_ISSPACE: case M_S_ISTITLE: case M_S_ISUPPER:
        *out = jv_bool(str_pred(s, id));
        return 0;
    default:
        return jr_error(R, PL_ERR_INTERNAL, line, "internal error: str method %d", id);
    }
}
