/* tokenizer_regex.c — Split patterns: Oniguruma (Ruby syntax, as HF
 * tokenizers compiles them) translated to PCRE2.
 *
 * The translation keeps PCRE2 from silently disagreeing with HF:
 *   \s  Oniguruma: U+0009-000D, U+0085, Zs/Zl/Zp. PCRE2 10.42 with UCP also
 *       takes U+180E (via \h) and misses nothing else — so we spell the set
 *       out instead of trusting either engine's \s.
 *   \w  Oniguruma: Letter|Mark|Decimal_Number|Connector_Punctuation; PCRE2:
 *       L, N, underscore. Spelled out.
 *   \d  Decimal_Number in both; spelled out for clarity.
 *   \v \a \e \b(in class)  single characters in Ruby syntax (\v is a class
 *       in PCRE2).
 *   \uHHHH  Ruby syntax; PCRE2 wants \x{HHHH}.
 *   {,n}  Ruby: {0,n}; PCRE2 10.42: literal text.
 *   a literal { } ]  escaped so PCRE2 cannot read a quantifier into it.
 * Refused (load fails with the construct named): ^ $ (line anchors in Ruby,
 * string anchors in PCRE2), \A \z \Z \G \b \B \h \H \K \R \X \k \g \1..,
 * \S \W \D inside a class, nested classes and &&, {n,m}+ (possessive in PCRE2,
 * not in Ruby), inline option groups other than i, and isolated (?i) after
 * the start of the pattern (Onig scopes it over the following alternatives
 * differently). */
#include "tokenizer_int.h"

#include <stdio.h>
#include <string.h>

#define WS_SET "\\t-\\r\\x{85}\\p{Z}"
#define WORD_SET "\\p{L}\\p{M}\\p{Nd}\\p{Pc}"

typedef struct rx {
    const char *p;
    size_t      n, i;
    pl_buf     *out;
    char       *err;
    size_t      errlen;
} rx;

static int rx_fail(rx *r, const char *what)
{
    return pl_seterr(r->err, r->errlen, PL_ERR_UNSUPPORTED,
                     "regex construct %s at offset %zu of pattern is not supported "
                     "(Oniguruma and PCRE2 may differ)", what, r->i);
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Copy one UTF-8 character verbatim. */
static void rx_copy_char(rx *r)
{
    size_t k = 1;
    unsigned char c = (unsigned char)r->p[r->i];
    if (c >= 0xF0) k = 4; else if (c >= 0xE0) k = 3; else if (c >= 0xC0) k = 2;
    if (k > r->n - r->i) k = r->n - r->i;
    pl_buf_append(r->out, r->p + r->i, k);
    r->i += k;
}

/* \p{...} / \P{...} / \pL: copied as is (PCRE2 reads the same names). */
static int rx_property(rx *r)
{
    size_t start = r->i;          /* at the backslash */
    r->i += 2;
    if (r->i < r->n && r->p[r->i] == '{') {
        while (r->i < r->n && r->p[r->i] != '}') r->i++;
        if (r->i >= r->n) return rx_fail(r, "unterminated \\p{");
        r->i++;
    } else if (r->i < r->n) {
        r->i++;
    } else {
        return rx_fail(r, "\\p at end");
    }
    pl_buf_append(r->out, r->p + start, r->i - start);
    return 0;
}

/* An escape; in_class selects the class spelling. */
static int rx_escape(rx *r, int in_class)
{
    if (r->i + 1 >= r->n) return rx_fail(r, "trailing backslash");
    char e = r->p[r->i + 1];
    char what[8];
    snprintf(what, sizeof what, "\\%c", e);
    switch (e) {
    case 's': pl_buf_puts(r->out, in_class ? WS_SET : "[" WS_SET "]"); break;
    case 'S': if (in_class) return rx_fail(r, "\\S in a class");
              pl_buf_puts(r->out, "[^" WS_SET "]"); break;
    case 'w': pl_buf_puts(r->out, in_class ? WORD_SET : "[" WORD_SET "]"); break;
    case 'W': if (in_class) return rx_fail(r, "\\W in a class");
              pl_buf_puts(r->out, "[^" WORD_SET "]"); break;
    case 'd': pl_buf_puts(r->out, "\\p{Nd}"); break;
    case 'D': if (in_class) return rx_fail(r, "\\D in a class");
              pl_buf_puts(r->out, "\\P{Nd}"); break;
    case 'p': case 'P': return rx_property(r);
    case 't': case 'n': case 'r': case 'f': pl_buf_append(r->out, r->p + r->i, 2); break;
    case 'v': pl_buf_puts(r->out, "\\x{0B}"); break;
    case 'a': pl_buf_puts(r->out, "\\x{07}"); break;
    case 'e': pl_buf_puts(r->out, "\\x{1B}"); break;
    case 'b':
        if (!in_class) return rx_fail(r, what);
        pl_buf_puts(r->out, "\\x{08}");
        break;
    case 'u': {
        if (r->i + 6 > r->n || !is_hex(r->p[r->i + 2]) || !is_hex(r->p[r->i + 3]) ||
            !is_hex(r->p[r->i + 4]) || !is_hex(r->p[r->i + 5]))
            return rx_fail(r, "\\u without 4 hex digits");
        pl_buf_puts(r->out, "\\x{");
        pl_buf_append(r->out, r->p + r->i + 2, 4);
        pl_buf_putc(r->out, '}');
        r->i += 6;
        return 0;
    }
    case 'x': {
        size_t j = r->i + 2;
        if (j < r->n && r->p[j] == '{') {
            size_t k = j + 1;
            while (k < r->n && is_hex(r->p[k])) k++;
            if (k >= r->n || r->p[k] != '}' || k == j + 1) return rx_fail(r, "malformed \\x{}");
            pl_buf_append(r->out, r->p + r->i, k + 1 - r->i);
            r->i = k + 1;
            return 0;
        }
        /* \xHH: one or two hex digits in both engines */
        size_t k = j;
        while (k < r->n && k < j + 2 && is_hex(r->p[k])) k++;
        if (k == j) return rx_fail(r, "\\x without hex digits");
        pl_buf_puts(r->out, "\\x{");
        pl_buf_append(r->out, r->p + j, k - j);
        pl_buf_putc(r->out, '}');
        r->i = k;
        return 0;
    }
    default:
        if (is_alnum(e)) return rx_fail(r, what);
        if ((unsigned char)e >= 0x80) return rx_fail(r, "backslash before a non-ASCII character");
        /* an escaped punctuation or space character is that literal character */
        pl_buf_append(r->out, r->p + r->i, 2);
        break;
    }
    r->i += 2;
    return 0;
}

static int rx_class(rx *r)
{
    pl_buf_putc(r->out, '[');
    r->i++;
    if (r->i < r->n && r->p[r->i] == '^') { pl_buf_putc(r->out, '^'); r->i++; }
    if (r->i < r->n && r->p[r->i] == ']') return rx_fail(r, "']' first in a class");
    while (r->i < r->n) {
        char c = r->p[r->i];
        int rc;
        if (c == ']') { pl_buf_putc(r->out, ']'); r->i++; return 0; }
        if (c == '[') return rx_fail(r, "'[' inside a class (nested class or POSIX bracket)");
        if (c == '&' && r->i + 1 < r->n && r->p[r->i + 1] == '&') return rx_fail(r, "'&&' in a class");
        if (c == '\\') {
            if ((rc = rx_escape(r, 1))) return rc;
            continue;
        }
        rx_copy_char(r);
    }
    return rx_fail(r, "unterminated class");
}

/* At '{': a quantifier {n} {n,} {n,m} {,m}, or a literal brace. */
static int rx_brace(rx *r)
{
    size_t j = r->i + 1, a = j;
    while (j < r->n && r->p[j] >= '0' && r->p[j] <= '9') j++;
    size_t alen = j - a;
    int comma = 0;
    size_t blen = 0, b = 0;
    if (j < r->n && r->p[j] == ',') {
        comma = 1;
        b = ++j;
        while (j < r->n && r->p[j] >= '0' && r->p[j] <= '9') j++;
        blen = j - b;
    }
    int valid = j < r->n && r->p[j] == '}' && (alen > 0 || (comma && blen > 0));
    if (!valid) {
        pl_buf_puts(r->out, "\\{");
        r->i++;
        return 0;
    }
    if (j + 1 < r->n && r->p[j + 1] == '+') return rx_fail(r, "'+' after a {n,m} quantifier");
    pl_buf_putc(r->out, '{');
    if (alen == 0) pl_buf_putc(r->out, '0');
    else pl_buf_append(r->out, r->p + a, alen);
    if (comma) {
        pl_buf_putc(r->out, ',');
        pl_buf_append(r->out, r->p + b, blen);
    }
    pl_buf_putc(r->out, '}');
    r->i = j + 1;
    return 0;
}

/* At '(' */
static int rx_group(rx *r)
{
    const char *p = r->p + r->i;
    size_t left = r->n - r->i;
    if (left < 2 || p[1] != '?') { pl_buf_putc(r->out, '('); r->i++; return 0; }
    static const char *const ok[] = {"(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>", "(?i:", "(?-i:"};
    for (size_t k = 0; k < PL_ARRAY_LEN(ok); k++) {
        size_t kl = strlen(ok[k]);
        if (left >= kl && !memcmp(p, ok[k], kl)) {
            pl_buf_append(r->out, p, kl);
            r->i += kl;
            return 0;
        }
    }
    if (left >= 4 && !memcmp(p, "(?i)", 4)) {
        if (r->i != 0) return rx_fail(r, "(?i) after the start of the pattern");
        pl_buf_puts(r->out, "(?i)");
        r->i += 4;
        return 0;
    }
    if (left >= 3 && p[2] == '<') {
        /* named group (?<name>...) — harmless without backreferences */
        size_t k = 3;
        while (k < left && (is_alnum(p[k]) || p[k] == '_')) k++;
        if (k < left && p[k] == '>' && k > 3) {
            pl_buf_append(r->out, p, k + 1);
            r->i += k + 1;
            return 0;
        }
    }
    return rx_fail(r, "group '(?' with flags other than i");
}

static int rx_translate(rx *r)
{
    int rc;
    while (r->i < r->n) {
        char c = r->p[r->i];
        switch (c) {
        case '\\': rc = rx_escape(r, 0); break;
        case '[':  rc = rx_class(r); break;
        case '(':  rc = rx_group(r); break;
        case '{':  rc = rx_brace(r); break;
        case '}':  pl_buf_puts(r->out, "\\}"); r->i++; rc = 0; break;
        case ']':  pl_buf_puts(r->out, "\\]"); r->i++; rc = 0; break;
        case '.':  pl_buf_puts(r->out, "[^\\n]"); r->i++; rc = 0; break;
        case '^':  return rx_fail(r, "'^'");
        case '$':  return rx_fail(r, "'$'");
        default:   rx_copy_char(r); rc = 0; break;
        }
        if (rc) return rc;
    }
    return 0;
}

int tk_regex_compile(const char *pat, size_t len, int literal, pcre2_code **re,
                     int *jit, char *err, size_t errlen)
{
    pl_buf out;
    pl_buf_init(&out);
    *re = NULL;
    *jit = 0;
    if (len == 0) return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "empty Split pattern");
    if (tk_utf8_valid_prefix((const uint8_t *)pat, len) != len)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "Split pattern is not valid UTF-8");
    uint32_t opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK;
    if (literal) {
        opts |= PCRE2_LITERAL;          /* PCRE2 refuses UCP with LITERAL */
        pl_buf_append(&out, pat, len);
    } else {
        opts |= PCRE2_UCP;
        /* A callout before each start position the search tries: how the
         * encode's time budget reaches inside one pcre2_match, whose match
         * limit counts per start position (tokenizer.c, tk_regex_callout). */
        pl_buf_puts(&out, "(?C1)(?:");
        rx r = {pat, len, 0, &out, err, errlen};
        int rc = rx_translate(&r);
        if (rc) { pl_buf_free(&out); return rc; }
        pl_buf_putc(&out, ')');
    }
    if (!pl_buf_ok(&out)) { pl_buf_free(&out); return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory"); }
    int ecode;
    PCRE2_SIZE eoff;
    *re = pcre2_compile((PCRE2_SPTR)out.data, out.len, opts, &ecode, &eoff, NULL);
    if (!*re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        int rc = pl_seterr(err, errlen, PL_ERR_UNSUPPORTED,
                           "Split regex does not compile in PCRE2 (%s at offset %zu of \"%.200s\")",
                           (const char *)msg, (size_t)eoff, out.data);
        pl_buf_free(&out);
        return rc;
    }
    pl_buf_free(&out);
    /* JIT is an optimisation: without it (no JIT support on this CPU) the
     * interpreter gives the same results. */
    *jit = pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}
