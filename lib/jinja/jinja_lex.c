/* jinja_lex.c — the Jinja2 lexer, with the whitespace rules of an environment
 * built with trim_blocks=True and lstrip_blocks=True.
 *
 * It mirrors jinja2/lexer.py rule for rule, because the output of a chat
 * template depends on every stripped space:
 *   - data before "{%-", "{{-", "{#-" loses all trailing whitespace;
 *   - data before "{%" / "{#" (not "{{", not "{%+") loses the spaces and tabs
 *     between the last newline (or the template start, or a tag that ended
 *     a line) and the tag (lstrip_blocks);
 *   - "-%}", "-}}", "-#}" eat all following whitespace; "%}" and "#}" eat one
 *     newline (trim_blocks); "+%}" eats nothing;
 *   - "{% raw %}" keeps its following newline, "{% endraw %}" trims it;
 *   - inside a tag, an end marker counts only when (), [], {} are balanced.
 * The source is first normalised as Jinja does: \r\n and \r become \n and
 * one trailing newline is dropped (keep_trailing_newline=False). */
#include "jinja_int.h"
#include "pystr.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lexer {
    pl_jinja_template *t;
    const char *s;
    size_t n;
    jtoks *out;
    char *err;
    size_t errlen;
    char bal[256];      /* open brackets inside the current tag */
    int nbal;
} lexer;

void jt_linecol(const pl_jinja_template *t, size_t pos, int *line, int *col)
{
    size_t lo = 0, hi = t->nlines;     /* last line start <= pos */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (t->lines[mid] <= pos) lo = mid; else hi = mid;
    }
    *line = (int)lo + 1;
    /* column in characters, 1-based */
    *col = (int)utf8_count(t->src + t->lines[lo], pos - t->lines[lo]) + 1;
}

static int lex_fail(lexer *L, size_t pos, const char *fmt, const char *arg)
{
    int line, col;
    jt_linecol(L->t, pos, &line, &col);
    char msg[200];
    snprintf(msg, sizeof msg, fmt, arg);
    return pl_seterr(L->err, L->errlen, PL_ERR_PARSE,
                     "TemplateSyntaxError: line %d, column %d: %s", line, col, msg);
}

static jtok *push(lexer *L, int type, size_t pos, size_t len)
{
    jtoks *o = L->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        jtok *v = realloc(o->v, cap * sizeof *v);
        if (!v) return NULL;
        o->v = v;
        o->cap = cap;
    }
    jtok *k = &o->v[o->n++];
    memset(k, 0, sizeof *k);
    k->type = (uint8_t)type;
    k->pos = pos;
    k->len = len;
    return k;
}

/* ================================================================ whitespace */

/* Past the Python whitespace (\s, str.isspace) starting at s[i]. */
static size_t skip_space(const char *s, size_t n, size_t i)
{
    return i + pl_py_lstrip_off(s + i, n - i);
}

/* Emit the data before a tag, stripped as the tag's sign asks. */
static int emit_data(lexer *L, size_t pos, size_t end, char sign, int lstrip, int line_starting)
{
    size_t len = end - pos;
    const char *text = L->s + pos;
    if (sign == '-') {
        len = pl_py_rstrip_len(text, len);
    } else if (sign != '+' && lstrip) {
        size_t lpos = len;
        while (lpos > 0 && text[lpos - 1] != '\n') lpos--;
        if ((lpos > 0 || line_starting) && lpos < len && skip_space(text, len, lpos) == len)
            len = lpos;
    }
    if (len && !push(L, T_DATA, pos, len)) return PL_ERR_NOMEM;
    return 0;
}

/* ================================================================ literals */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* (\d+_)*\d+ at i: end, or i when absent. */
static size_t digits_us(const char *s, size_t n, size_t i)
{
    size_t j = i;
    if (j >= n || !is_digit(s[j])) return i;
    while (j < n && is_digit(s[j])) j++;
    while (j + 1 < n && s[j] == '_' && is_digit(s[j + 1])) {
        j++;
        while (j < n && is_digit(s[j])) j++;
    }
    return j;
}

static size_t match_float(const char *s, size_t n, size_t i)
{
    if (i > 0 && s[i - 1] == '.') return 0;
    size_t j = digits_us(s, n, i);
    if (j == i) return 0;
    size_t k = j;
    if (k < n && s[k] == '.') {
        size_t f = digits_us(s, n, k + 1);
        if (f > k + 1) k = f;
    }
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        size_t e = k + 1;
        if (e < n && (s[e] == '+' || s[e] == '-')) e++;
        size_t x = digits_us(s, n, e);
        if (x > e) return x - i;
    }
    return k > j ? k - i : 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Integer literal at i: its length (0 = none); value in *v (errno ERANGE on
 * overflow). */
static size_t match_int(const char *s, size_t n, size_t i, int64_t *v, int *overflow)
{
    uint64_t acc = 0;
    *overflow = 0;
    int base = 10;
    size_t j = i;
    if (s[i] == '0' && i + 1 < n && strchr("bBoOxX", s[i + 1]) && s[i + 1]) {
        char b = (char)(s[i + 1] | 0x20);
        base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
        j = i + 2;
        size_t st = j;
        for (;;) {
            size_t k = j;
            if (k < n && s[k] == '_') k++;
            int d = k < n ? hexval(s[k]) : -1;
            if (d < 0 || d >= base) break;
            if (acc > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) *overflow = 1;
            acc = acc * (uint64_t)base + (uint64_t)d;
            j = k + 1;
        }
        if (j == st) { /* "0x" without digits: the decimal zero "0" */
            *v = 0;
            return 1;
        }
    } else if (s[i] >= '1' && s[i] <= '9') {
        for (;;) {
            size_t k = j;
            if (k > i && k < n && s[k] == '_') k++;
            if (k >= n || !is_digit(s[k])) break;
            int d = s[k] - '0';
            if (acc > (UINT64_MAX - (uint64_t)d) / 10) *overflow = 1;
            acc = acc * 10 + (uint64_t)d;
            j = k + 1;
        }
    } else if (s[i] == '0') {
        j = i + 1;
        for (;;) {
            size_t k = j;
            if (k < n && s[k] == '_') k++;
            if (k >= n || s[k] != '0') break;
            j = k + 1;
        }
    } else {
        return 0;
    }
    if (acc > INT64_MAX) *overflow = 1;
    *v = (int64_t)acc;
    return j - i;
}

/* Decode a string literal body as Python's unicode-escape codec does. */
static int decode_string(lexer *L, size_t pos, const char *s, size_t n, jtok *k)
{
    pl_buf b;
    pl_buf_init(&b);
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '\\') j++;
        pl_buf_append(&b, s + i, j - i);
        i = j;
        if (i >= n) break;
        if (i + 1 >= n) { pl_buf_putc(&b, '\\'); i++; break; }
        char c = s[i + 1];
        i += 2;
        uint32_t cp = 0;
        int ndig = 0;
        switch (c) {
        case '\n': continue;
        case '\\': pl_buf_putc(&b, '\\'); continue;
        case '\'': pl_buf_putc(&b, '\''); continue;
        case '"': pl_buf_putc(&b, '"'); continue;
        case 'a': pl_buf_putc(&b, '\a'); continue;
        case 'b': pl_buf_putc(&b, '\b'); continue;
        case 'f': pl_buf_putc(&b, '\f'); continue;
        case 'n': pl_buf_putc(&b, '\n'); continue;
        case 'r': pl_buf_putc(&b, '\r'); continue;
        case 't': pl_buf_putc(&b, '\t'); continue;
        case 'v': pl_buf_putc(&b, '\v'); continue;
        case 'x': ndig = 2; break;
        case 'u': ndig = 4; break;
        case 'U': ndig = 8; break;
        case 'N':
            pl_buf_free(&b);
            return lex_fail(L, pos, "%s", "\\N{...} escapes are not supported");
        default:
            if (c >= '0' && c <= '7') {
                cp = (uint32_t)(c - '0');
                for (int d = 0; d < 2 && i < n && s[i] >= '0' && s[i] <= '7'; d++, i++)
                    cp = cp * 8 + (uint32_t)(s[i] - '0');
                char tmp[4];
                pl_buf_append(&b, tmp, pl_utf8_encode(cp, tmp));
                continue;
            }
            pl_buf_putc(&b, '\\');      /* unknown escape: kept */
            i--;
            continue;
        }
        for (int d = 0; d < ndig; d++) {
            int h = i < n ? hexval(s[i]) : -1;
            if (h < 0) {
                pl_buf_free(&b);
                return lex_fail(L, pos, "%s", c == 'x' ? "truncated \\xXX escape" :
                                c == 'u' ? "truncated \\uXXXX escape" : "truncated \\UXXXXXXXX escape");
            }
            cp = cp * 16 + (uint32_t)h;
            i++;
        }
        if (cp > 0x10FFFF) { pl_buf_free(&b); return lex_fail(L, pos, "%s", "illegal Unicode character"); }
        if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;  /* no lone surrogates in UTF-8 */
        char tmp[4];
        pl_buf_append(&b, tmp, pl_utf8_encode(cp, tmp));
    }
    if (!pl_buf_ok(&b)) { pl_buf_free(&b); return PL_ERR_NOMEM; }
    k->slen = b.len;
    k->str = jt_alloc(L->t, b.len + 1);
    if (!k->str) { pl_buf_free(&b); return PL_ERR_NOMEM; }
    if (b.len) memcpy(k->str, b.data, b.len);
    pl_buf_free(&b);
    return 0;
}

/* ================================================================ tags */

static const struct { const char *s; uint8_t op; } ops2[] = {
    {"//", O_FLOORDIV}, {"**", O_POW}, {"==", O_EQ}, {"!=", O_NE}, {">=", O_GTEQ}, {"<=", O_LTEQ},
};
static const char ops1[] = "+-/*%~[](){}><=.:|,;";
static const uint8_t ops1v[] = {
    O_ADD, O_SUB, O_DIV, O_MUL, O_MOD, O_TILDE, O_LBRACKET, O_RBRACKET, O_LPAREN, O_RPAREN,
    O_LBRACE, O_RBRACE, O_GT, O_LT, O_ASSIGN, O_DOT, O_COLON, O_PIPE, O_COMMA, O_SEMICOLON,
};

static int is_name_start(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80; }
static int is_name_char(unsigned char c) { return is_name_start(c) || is_digit((char)c); }

/* Does the tag end at i? Returns the index after the end marker (and its
 * stripping), or 0. block: "%}" tags, else "}}". */
static size_t tag_end(lexer *L, size_t i, int block, int *line_starting)
{
    const char *s = L->s;
    size_t n = L->n;
    char c = block ? '%' : '}';
    size_t end = 0;
    if (block && i + 3 <= n && s[i] == '+' && s[i + 1] == '%' && s[i + 2] == '}') end = i + 3;
    else if (i + 3 <= n && s[i] == '-' && s[i + 1] == c && s[i + 2] == '}') end = skip_space(s, n, i + 3);
    else if (i + 2 <= n && s[i] == c && s[i + 1] == '}') {
        end = i + 2;
        if (block && end < n && s[end] == '\n') end++;
    }
    if (end) *line_starting = s[end - 1] == '\n';
    return end;
}

/* Tokens of one {{ }} or {% %} tag from i; returns the position after it. */
static int lex_tag(lexer *L, size_t i, int block, size_t *endpos, int *line_starting)
{
    const char *s = L->s;
    size_t n = L->n;
    L->nbal = 0;
    for (;;) {
        if (i >= n) { *endpos = n; return 0; }   /* the parser reports the missing end */
        size_t e;
        if (L->nbal == 0 && (e = tag_end(L, i, block, line_starting))) {
            if (!push(L, block ? T_BLOCK_END : T_VAR_END, i, e - i)) return PL_ERR_NOMEM;
            *endpos = e;
            return 0;
        }
        size_t k = skip_space(s, n, i);
        if (k > i) { i = k; continue; }
        unsigned char c = (unsigned char)s[i];
        if (is_digit((char)c)) {
            size_t fl = match_float(s, n, i);
            if (fl) {
                jtok *t = push(L, T_FLOAT, i, fl);
                if (!t) return PL_ERR_NOMEM;
                char tmp[128];
                size_t m = 0;
                for (size_t q = i; q < i + fl && m < sizeof tmp - 1; q++)
                    if (s[q] != '_') tmp[m++] = s[q];
                tmp[m] = 0;
                t->num.f = strtod(tmp, NULL);
                i += fl;
                continue;
            }
            int64_t v;
            int ovf;
            size_t il = match_int(s, n, i, &v, &ovf);
            if (ovf) return lex_fail(L, i, "%s", "integer literal too large (glmpipe ints are 64-bit)");
            jtok *t = push(L, T_INT, i, il);
            if (!t) return PL_ERR_NOMEM;
            t->num.i = v;
            i += il;
            continue;
        }
        if (is_name_start(c)) {
            size_t j = i;
            while (j < n && is_name_char((unsigned char)s[j]) && skip_space(s, n, j) == j) j++;
            if (!push(L, T_NAME, i, j - i)) return PL_ERR_NOMEM;
            i = j;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != (char)c) j += s[j] == '\\' ? 2 : 1;
            if (j >= n) return lex_fail(L, i, "%s", "unexpected end of string literal");
            jtok *t = push(L, T_STRING, i, j + 1 - i);
            if (!t) return PL_ERR_NOMEM;
            int rc = decode_string(L, i, s + i + 1, j - i - 1, t);
            if (rc) return rc;
            i = j + 1;
            continue;
        }
        int op = -1;
        size_t oplen = 1;
        for (size_t q = 0; q < PL_ARRAY_LEN(ops2); q++)
            if (i + 1 < n && s[i] == ops2[q].s[0] && s[i + 1] == ops2[q].s[1]) { op = ops2[q].op; oplen = 2; break; }
        if (op < 0) {
            const char *p = c ? strchr(ops1, c) : NULL;
            if (p) op = ops1v[p - ops1];
        }
        if (op < 0) {
            char ch[8];
            snprintf(ch, sizeof ch, c >= 0x20 && c < 0x7F ? "'%c'" : "'\\x%02x'", c);
            return lex_fail(L, i, "unexpected char %s", ch);
        }
        if (op == O_LBRACE || op == O_LPAREN || op == O_LBRACKET) {
            if (L->nbal >= (int)sizeof L->bal) return lex_fail(L, i, "%s", "brackets nested too deeply");
            L->bal[L->nbal++] = op == O_LBRACE ? '}' : op == O_LPAREN ? ')' : ']';
        } else if (op == O_RBRACE || op == O_RPAREN || op == O_RBRACKET) {
            char want[2] = { (char)c, 0 };
            if (!L->nbal) return lex_fail(L, i, "unexpected '%s'", want);
            if (L->bal[L->nbal - 1] != (char)c) {
                char m[64];
                snprintf(m, sizeof m, "unexpected '%c', expected '%c'", c, L->bal[L->nbal - 1]);
                return lex_fail(L, i, "%s", m);
            }
            L->nbal--;
        }
        jtok *t = push(L, T_OP, i, oplen);
        if (!t) return PL_ERR_NOMEM;
        t->op = (uint8_t)op;
        i += oplen;
    }
}

/* "{%" [-+] \s* "raw"/"endraw" \s* at i: index after the word, or 0. */
static size_t match_raw_word(const char *s, size_t n, size_t i, const char *word, char *sign)
{
    if (i + 2 > n || s[i] != '{' || s[i + 1] != '%') return 0;
    size_t j = i + 2;
    *sign = 0;
    if (j < n && (s[j] == '-' || s[j] == '+')) *sign = s[j++];
    j = skip_space(s, n, j);
    size_t wl = strlen(word);
    if (n - j < wl || memcmp(s + j, word, wl)) return 0;
    j = skip_space(s, n, j + wl);
    return j;
}

/* {% raw %}...{% endraw %} starting at q. */
static int lex_raw(lexer *L, size_t q, size_t after_word, size_t *endpos, int *line_starting)
{
    const char *s = L->s;
    size_t n = L->n;
    size_t i = after_word;
    /* raw_begin ends with "-%}\s*" or "%}" (no trim_blocks newline here) */
    if (i + 3 <= n && s[i] == '-' && s[i + 1] == '%' && s[i + 2] == '}') i = skip_space(s, n, i + 3);
    else i += 2;
    int ls = s[i - 1] == '\n';
    for (size_t p = i; p + 1 < n; p++) {
        char sign;
        size_t w;
        if (s[p] != '{' || !(w = match_raw_word(s, n, p, "endraw", &sign))) continue;
        size_t e = 0;
        if (w + 3 <= n && s[w] == '+' && s[w + 1] == '%' && s[w + 2] == '}') e = w + 3;
        else if (w + 3 <= n && s[w] == '-' && s[w + 1] == '%' && s[w + 2] == '}') e = skip_space(s, n, w + 3);
        else if (w + 2 <= n && s[w] == '%' && s[w + 1] == '}') { e = w + 2; if (e < n && s[e] == '\n') e++; }
        if (!e) continue;
        int rc = emit_data(L, i, p, sign, 1, ls);
        if (rc) return rc;
        *endpos = e;
        *line_starting = s[e - 1] == '\n';
        return 0;
    }
    return lex_fail(L, q, "%s", "Missing end of raw directive");
}

int jinja_lex(pl_jinja_template *t, jtoks *out, char *err, size_t errlen)
{
    lexer L = { .t = t, .s = t->src, .n = t->srclen, .out = out, .err = err, .errlen = errlen };
    const char *s = L.s;
    size_t n = L.n, pos = 0;
    int line_starting = 1, rc;
    while (pos < n) {
        /* the next "{{", "{%" or "{#" */
        size_t q = pos;
        const char *p;
        for (;;) {
            p = memchr(s + q, '{', n - q);
            if (!p) break;
            q = (size_t)(p - s);
            if (q + 1 < n && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#')) break;
            q++;
            if (q >= n) { p = NULL; break; }
        }
        if (!p) {
            if (!push(&L, T_DATA, pos, n - pos)) return PL_ERR_NOMEM;
            break;
        }
        char kind = s[q + 1];
        char sign = 0;
        size_t w;
        if (kind == '%' && (w = match_raw_word(s, n, q, "raw", &sign)) &&
            ((w + 3 <= n && s[w] == '-' && s[w + 1] == '%' && s[w + 2] == '}') ||
             (w + 2 <= n && s[w] == '%' && s[w + 1] == '}'))) {
            if ((rc = emit_data(&L, pos, q, sign, 1, line_starting))) return rc;
            if ((rc = lex_raw(&L, q, w, &pos, &line_starting))) return rc;
            continue;
        }
        size_t body = q + 2;
        if (body < n && (s[body] == '-' || s[body] == '+')) sign = s[body++];
        if ((rc = emit_data(&L, pos, q, sign, kind != '{', line_starting))) return rc;
        line_starting = 0;
        if (kind == '#') {
            if (body >= n) break;   /* "{#" ending the source: Jinja's lexer just stops */
            size_t k = body;
            for (;;) {
                const char *h = k < n ? memchr(s + k, '#', n - k) : NULL;
                if (!h) return lex_fail(&L, q, "%s", "Missing end of comment tag");
                k = (size_t)(h - s);
                if (k + 1 < n && s[k + 1] == '}') break;
                k++;
            }
            char es = k > body ? s[k - 1] : 0;
            size_t e = k + 2;
            if (es == '-') e = skip_space(s, n, e);
            else if (es != '+' && e < n && s[e] == '\n') e++;
            line_starting = s[e - 1] == '\n';
            pos = e;
            continue;
        }
        int block = kind == '%';
        if (!push(&L, block ? T_BLOCK_BEGIN : T_VAR_BEGIN, q, body - q)) return PL_ERR_NOMEM;
        if ((rc = lex_tag(&L, body, block, &pos, &line_starting))) return rc;
    }
    if (!push(&L, T_EOF, n, 0)) return PL_ERR_NOMEM;
    return 0;
}
