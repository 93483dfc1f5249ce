/* tokenizer_json.c — a strict JSON reader for tokenizer.json.
 *
 * Why not cJSON: a 20 MB tokenizer.json holds ~450k vocab/merge strings;
 * a node per string costs hundreds of MB and seconds. The loader streams the
 * vocab and merges straight into its tables with the cursor functions here,
 * and builds this small DOM only for the other (small) sections. Strings may
 * contain \u0000, which cJSON would truncate. The input is untrusted: every
 * read is bounds-checked, nesting depth is limited, UTF-8 is validated. */
#include "tokenizer_int.h"
#include "pystr.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TJ_MAX_DEPTH 128

/* ===== arena ===== */

struct tj_block {
    tj_block *next;
    size_t    used, cap;
    max_align_t data[];
};

int tj_init(tj_doc *d, const char *src, size_t len, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->src = src;
    d->srclen = len;
    d->err = err;
    d->errlen = errlen;
    pl_buf_init(&d->sbuf);
    /* JSON text is UTF-8: checking it once here lets tj_string copy string
     * runs without looking at each character again */
    size_t ok = tk_utf8_valid_prefix((const uint8_t *)src, len);
    if (ok != len) return pl_seterr(err, errlen, PL_ERR_PARSE, "JSON: invalid UTF-8 at byte %zu", ok);
    return 0;
}

void tj_free(tj_doc *d)
{
    tj_block *b = d->blocks;
    while (b) {
        tj_block *n = b->next;
        free(b);
        b = n;
    }
    d->blocks = NULL;
    pl_buf_free(&d->sbuf);
}

void *tj_alloc(tj_doc *d, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    tj_block *b = d->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = d->blocks;
        d->blocks = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

/* ===== errors ===== */

static int tj_fail(tj_doc *d, size_t pos, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int tj_fail(tj_doc *d, size_t pos, int code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (pos >= d->srclen)
        return pl_seterr(d->err, d->errlen, code, "JSON: %s at end of input (truncated file?)", msg);
    return pl_seterr(d->err, d->errlen, code, "JSON: %s at byte %zu", msg, pos);
}

/* ===== cursor ===== */

void tj_skip_ws(const tj_doc *d, size_t *pos)
{
    size_t p = *pos;
    while (p < d->srclen) {
        char c = d->src[p];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t') break;
        p++;
    }
    *pos = p;
}

int tj_peek(const tj_doc *d, size_t *pos)
{
    tj_skip_ws(d, pos);
    return *pos < d->srclen ? (unsigned char)d->src[*pos] : -1;
}

int tj_expect(tj_doc *d, size_t *pos, char c)
{
    if (tj_peek(d, pos) != (unsigned char)c)
        return tj_fail(d, *pos, PL_ERR_PARSE, "expected '%c'", c);
    (*pos)++;
    return 0;
}

int tj_next(tj_doc *d, size_t *pos, char close)
{
    int c = tj_peek(d, pos);
    if (c == ',') { (*pos)++; return 0; }
    if (c == (unsigned char)close) { (*pos)++; return 1; }
    return tj_fail(d, *pos, PL_ERR_PARSE, "expected ',' or '%c'", close);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(const tj_doc *d, size_t p, uint32_t *out)
{
    if (d->srclen - p < 4) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)d->src[p + i]);
        if (h < 0) return -1;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return 0;
}

int tj_string(tj_doc *d, size_t *pos)
{
    pl_buf *b = &d->sbuf;
    pl_buf_reset(b);
    pl_buf_reserve(b, 16);     /* data is never NULL, always NUL-terminated */
    if (tj_peek(d, pos) != '"') return tj_fail(d, *pos, PL_ERR_PARSE, "expected a string");
    size_t p = *pos + 1;
    const char *s = d->src;
    for (;;) {
        /* copy the plain run in one go */
        size_t q = p;
        while (q < d->srclen && s[q] != '"' && s[q] != '\\' && (unsigned char)s[q] >= 0x20) q++;
        if (q > p) pl_buf_append(b, s + p, q - p);
        p = q;
        if (p >= d->srclen) return tj_fail(d, p, PL_ERR_PARSE, "unterminated string");
        char c = s[p];
        if (c == '"') { p++; break; }
        if ((unsigned char)c < 0x20) return tj_fail(d, p, PL_ERR_PARSE, "control character in string");
        /* escape */
        if (p + 1 >= d->srclen) return tj_fail(d, p + 1, PL_ERR_PARSE, "unterminated escape");
        char e = s[p + 1];
        p += 2;
        switch (e) {
        case '"': pl_buf_putc(b, '"'); break;
        case '\\': pl_buf_putc(b, '\\'); break;
        case '/': pl_buf_putc(b, '/'); break;
        case 'b': pl_buf_putc(b, '\b'); break;
        case 'f': pl_buf_putc(b, '\f'); break;
        case 'n': pl_buf_putc(b, '\n'); break;
        case 'r': pl_buf_putc(b, '\r'); break;
        case 't': pl_buf_putc(b, '\t'); break;
        case 'u': {
            uint32_t cp;
            if (read_hex4(d, p, &cp)) return tj_fail(d, p, PL_ERR_PARSE, "bad \\u escape");
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                uint32_t lo;
                if (p + 6 > d->srclen || s[p] != '\\' || s[p + 1] != 'u' || read_hex4(d, p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return tj_fail(d, p, PL_ERR_PARSE, "lone surrogate in \\u escape");
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return tj_fail(d, p, PL_ERR_PARSE, "lone surrogate in \\u escape");
            }
            char u[4];
            pl_buf_append(b, u, pl_utf8_encode(cp, u));
            break;
        }
        default:
            return tj_fail(d, p - 1, PL_ERR_PARSE, "bad escape");
        }
    }
    if (!pl_buf_ok(b)) return pl_seterr(d->err, d->errlen, PL_ERR_NOMEM, "out of memory reading JSON");
    *pos = p;
    return 0;
}

/* Validate a JSON number at *pos and advance past it. */
static int scan_number(tj_doc *d, size_t *pos, int *is_plain_uint)
{
    size_t p = *pos;
    const char *s = d->src;
    size_t n = d->srclen;
    int plain = 1;
    if (p < n && s[p] == '-') { p++; plain = 0; }
    if (p >= n || s[p] < '0' || s[p] > '9') return tj_fail(d, p, PL_ERR_PARSE, "bad number");
    if (s[p] == '0') p++;
    else while (p < n && s[p] >= '0' && s[p] <= '9') p++;
    if (p < n && s[p] == '.') {
        plain = 0;
        p++;
        if (p >= n || s[p] < '0' || s[p] > '9') return tj_fail(d, p, PL_ERR_PARSE, "bad number");
        while (p < n && s[p] >= '0' && s[p] <= '9') p++;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        plain = 0;
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-')) p++;
        if (p >= n || s[p] < '0' || s[p] > '9') return tj_fail(d, p, PL_ERR_PARSE, "bad number");
        while (p < n && s[p] >= '0' && s[p] <= '9') p++;
    }
    *pos = p;
    if (is_plain_uint) *is_plain_uint = plain;
    return 0;
}

int tj_uint(tj_doc *d, size_t *pos, int64_t limit, int64_t *out)
{
    tj_skip_ws(d, pos);
    size_t start = *pos;
    int plain;
    int rc = scan_number(d, pos, &plain);
    if (rc) return rc;
    if (!plain) return tj_fail(d, start, PL_ERR_INVALID, "expected a non-negative integer");
    int64_t v = 0;
    for (size_t i = start; i < *pos; i++) {
        v = v * 10 + (d->src[i] - '0');
        if (v >= limit) return tj_fail(d, start, PL_ERR_RANGE, "integer too large (limit %lld)", (long long)limit);
    }
    *out = v;
    return 0;
}

static int scan_word(tj_doc *d, size_t *pos, const char *w)
{
    size_t n = strlen(w);
    if (d->srclen - *pos < n || memcmp(d->src + *pos, w, n))
        return tj_fail(d, *pos, PL_ERR_PARSE, "unexpected character");
    *pos += n;
    return 0;
}

/* Skip a string without decoding it (the text is known to be UTF-8). */
static int skip_string(tj_doc *d, size_t *pos)
{
    const char *s = d->src;
    size_t p = *pos + 1, n = d->srclen;
    const char *q = p < n ? memchr(s + p, '"', n - p) : NULL;
    if (!q) return tj_fail(d, n, PL_ERR_PARSE, "unterminated string");
    size_t end = (size_t)(q - s);
    /* escapes (the quote found may be escaped) and raw control characters
     * need the full decoder */
    for (size_t i = p; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c < 0x20) return tj_string(d, pos);
    }
    *pos = end + 1;
    return 0;
}

/* Iterative skip: a stack of open brackets (depth-limited). */
int tj_skip_value(tj_doc *d, size_t *pos)
{
    char stack[TJ_MAX_DEPTH];
    int depth = 0;
    int rc;
    for (;;) {
        int c = tj_peek(d, pos);
        /* a value */
        switch (c) {
        case '{': case '[':
            if (depth == TJ_MAX_DEPTH) return tj_fail(d, *pos, PL_ERR_PARSE, "nesting too deep");
            stack[depth++] = (char)(c == '{' ? '}' : ']');
            (*pos)++;
            if (tj_peek(d, pos) == stack[depth - 1]) { (*pos)++; depth--; goto after_value; }
            if (c == '{') {
                if ((rc = tj_string(d, pos)) || (rc = tj_expect(d, pos, ':'))) return rc;
            }
            continue;
        case '"':
            if ((rc = skip_string(d, pos))) return rc;
            break;
        case 't': if ((rc = scan_word(d, pos, "true"))) return rc; break;
        case 'f': if ((rc = scan_word(d, pos, "false"))) return rc; break;
        case 'n': if ((rc = scan_word(d, pos, "null"))) return rc; break;
        case -1: return tj_fail(d, *pos, PL_ERR_PARSE, "expected a value");
        default:
            if (c == '-' || (c >= '0' && c <= '9')) {
                if ((rc = scan_number(d, pos, NULL))) return rc;
                break;
            }
            return tj_fail(d, *pos, PL_ERR_PARSE, "unexpected character");
        }
    after_value:
        while (depth > 0) {
            rc = tj_next(d, pos, stack[depth - 1]);
            if (rc < 0) return rc;
            if (rc == 1) { depth--; continue; }
            if (stack[depth - 1] == '}') {
                if ((rc = tj_string(d, pos)) || (rc = tj_expect(d, pos, ':'))) return rc;
            }
            break;
        }
        if (depth == 0) return 0;
    }
}

/* ===== DOM ===== */

static char *dup_sbuf(tj_doc *d)
{
    char *s = tj_alloc(d, d->sbuf.len + 1);
    if (!s) return NULL;
    memcpy(s, d->sbuf.data ? d->sbuf.data : "", d->sbuf.len);
    s[d->sbuf.len] = 0;
    return s;
}

static int tj_value_depth(tj_doc *d, size_t *pos, tj_val *v, int depth);

/* Items are gathered in a temporary growable array, then copied to the arena. */
static int tj_container(tj_doc *d, size_t *pos, tj_val *v, int depth, int obj)
{
    char close = obj ? '}' : ']';
    size_t cap = 8, n = 0;
    tj_val *items = malloc(cap * sizeof *items);
    const char **keys = obj ? malloc(cap * sizeof *keys) : NULL;
    size_t *keylens = obj ? malloc(cap * sizeof *keylens) : NULL;
    int rc = 0;
    if (!items || (obj && (!keys || !keylens))) { rc = PL_ERR_NOMEM; goto out; }
    (*pos)++;
    if (tj_peek(d, pos) == (unsigned char)close) { (*pos)++; goto done; }
    for (;;) {
        if (n == cap) {
            cap *= 2;
            tj_val *ni = realloc(items, cap * sizeof *items);
            if (!ni) { rc = PL_ERR_NOMEM; goto out; }
            items = ni;
            if (obj) {
                const char **nk = realloc(keys, cap * sizeof *keys);
                if (nk) keys = nk;
                size_t *nl = realloc(keylens, cap * sizeof *keylens);
                if (nl) keylens = nl;
                if (!nk || !nl) { rc = PL_ERR_NOMEM; goto out; }
            }
        }
        if (obj) {
            if ((rc = tj_string(d, pos))) goto out;
            keys[n] = dup_sbuf(d);
            keylens[n] = d->sbuf.len;
            if (!keys[n]) { rc = PL_ERR_NOMEM; goto out; }
            if ((rc = tj_expect(d, pos, ':'))) goto out;
        }
        if ((rc = tj_value_depth(d, pos, &items[n], depth + 1))) goto out;
        n++;
        rc = tj_next(d, pos, close);
        if (rc < 0) goto out;
        if (rc == 1) { rc = 0; break; }
    }
done:
    v->n = n;
    v->items = tj_alloc(d, (n ? n : 1) * sizeof *items);
    if (!v->items) { rc = PL_ERR_NOMEM; goto out; }
    memcpy(v->items, items, n * sizeof *items);
    if (obj) {
        v->keys = tj_alloc(d, (n ? n : 1) * sizeof *keys);
        v->keylens = tj_alloc(d, (n ? n : 1) * sizeof *keylens);
        if (!v->keys || !v->keylens) { rc = PL_ERR_NOMEM; goto out; }
        memcpy(v->keys, keys, n * sizeof *keys);
        memcpy(v->keylens, keylens, n * sizeof *keylens);
    }
out:
    free(items);
    free(keys);
    free(keylens);
    if (rc == PL_ERR_NOMEM) pl_seterr(d->err, d->errlen, rc, "out of memory reading JSON");
    return rc;
}

static int tj_value_depth(tj_doc *d, size_t *pos, tj_val *v, int depth)
{
    memset(v, 0, sizeof *v);
    if (depth > TJ_MAX_DEPTH) return tj_fail(d, *pos, PL_ERR_PARSE, "nesting too deep");
    int c = tj_peek(d, pos);
    v->at = *pos;
    int rc;
    switch (c) {
    case '{': v->type = TJ_OBJ; return tj_container(d, pos, v, depth, 1);
    case '[': v->type = TJ_ARR; return tj_container(d, pos, v, depth, 0);
    case '"':
        if ((rc = tj_string(d, pos))) return rc;
        v->type = TJ_STR;
        v->len = d->sbuf.len;
        v->str = dup_sbuf(d);
        if (!v->str) return pl_seterr(d->err, d->errlen, PL_ERR_NOMEM, "out of memory reading JSON");
        return 0;
    case 't': v->type = TJ_TRUE; return scan_word(d, pos, "true");
    case 'f': v->type = TJ_FALSE; return scan_word(d, pos, "false");
    case 'n': v->type = TJ_NULL; return scan_word(d, pos, "null");
    case -1: return tj_fail(d, *pos, PL_ERR_PARSE, "expected a value");
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = *pos;
            if ((rc = scan_number(d, pos, NULL))) return rc;
            v->type = TJ_NUM;
            v->str = d->src + start;
            v->len = *pos - start;
            return 0;
        }
        return tj_fail(d, *pos, PL_ERR_PARSE, "unexpected character");
    }
}

int tj_value(tj_doc *d, size_t *pos, tj_val *out)
{
    return tj_value_depth(d, pos, out, 0);
}

const tj_val *tj_get(const tj_val *obj, const char *key)
{
    if (!obj || obj->type != TJ_OBJ) return NULL;
    size_t kl = strlen(key);
    /* HF (serde) takes the last of duplicate keys */
    for (size_t i = obj->n; i-- > 0;)
        if (obj->keylens[i] == kl && !memcmp(obj->keys[i], key, kl)) return &obj->items[i];
    return NULL;
}

const char *tj_typename(int type)
{
    switch (type) {
    case TJ_NULL: return "null";
    case TJ_FALSE: case TJ_TRUE: return "boolean";
    case TJ_NUM: return "number";
    case TJ_STR: return "string";
    case TJ_ARR: return "array";
    case TJ_OBJ: return "object";
    }
    return "?";
}

int tj_is(const tj_val *v, const char *s)
{
    return v && v->type == TJ_STR && v->len == strlen(s) && !memcmp(v->str, s, v->len);
}
