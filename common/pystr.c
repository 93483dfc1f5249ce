/* pystr.c — Python whitespace, UTF-8 boundaries, streaming rstrip. */
#include "pystr.h"

#include <utf8proc.h>

#include <string.h>

/* ================================================================ code points */

size_t pl_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len; uint32_t v, min;
    if ((c & 0xE0) == 0xC0) { len = 2; v = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; v = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

size_t pl_utf8_count(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t count = 0;
    for (size_t i = 0; i < n; count++) {
        uint32_t cp;
        size_t k = u[i] < 0x80 ? 1 : pl_utf8_decode(u + i, n - i, &cp);
        i += k ? k : 1;
    }
    return count;
}

size_t pl_utf8_encode(uint32_t cp, char *o)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool pl_py_isspace(uint32_t cp)
{
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int pl_py_decimal(uint32_t cp)
{
    if (cp < 0x80) return cp >= '0' && cp <= '9' ? (int)(cp - '0') : -1;
    if (cp > 0x10FFFF || utf8proc_category((utf8proc_int32_t)cp) != UTF8PROC_CATEGORY_ND) return -1;
    /* Nd code points come in whole runs of ten, 0 to 9, some runs back to
     * back (the mathematical digits: five): the value is the distance from
     * the start of the stretch, modulo 10. The longest stretch is 50. */
    uint32_t z = cp;
    while (z > 0 && cp - z < 64 && utf8proc_category((utf8proc_int32_t)(z - 1)) == UTF8PROC_CATEGORY_ND) z--;
    return (int)((cp - z) % 10);
}

/* Is there a whitespace character starting at s[i] (n bytes in all)?
 * Returns its length or 0. */
static size_t space_at(const unsigned char *s, size_t n, size_t i)
{
    uint32_t cp;
    if (s[i] < 0x80) return pl_py_isspace(s[i]) ? 1 : 0;
    size_t k = pl_utf8_decode(s + i, n - i, &cp);
    return k && pl_py_isspace(cp) ? k : 0;
}

size_t pl_py_lstrip_off(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, k;
    while (i < n && (k = space_at(s, n, i))) i += k;
    return i;
}

size_t pl_py_rstrip_len(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    while (n) {
        /* the last character starts at the nearest non-continuation byte */
        size_t start = n - 1;
        while (start > 0 && n - start < 4 && (s[start] & 0xC0) == 0x80) start--;
        if (space_at(s, n, start) != n - start) break;
        n = start;
    }
    return n;
}

bool pl_py_is_blank(const char *s, size_t n) { return pl_py_lstrip_off(s, n) == n; }

static size_t seq_len(unsigned c);

size_t pl_utf8_complete_len(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    /* look at most 3 bytes back for a lead byte whose sequence runs past n */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned c = s[n - back];
        if ((c & 0xC0) == 0x80) continue;             /* continuation: keep looking */
        return seq_len(c) > back ? n - back : n;
    }
    return n;
}

/* ================================================================ wshold */

void pl_wshold_init(pl_wshold *h)
{
    pl_buf_init(&h->ws);
    h->ntail = 0;
}

void pl_wshold_free(pl_wshold *h) { pl_buf_free(&h->ws); h->ntail = 0; }

void pl_wshold_clear(pl_wshold *h) { pl_buf_reset(&h->ws); h->ntail = 0; }

void pl_wshold_flush(pl_wshold *h, pl_buf *out)
{
    pl_buf_append(out, h->ws.data, h->ws.len);
    pl_buf_append(out, h->tail, h->ntail);
    pl_wshold_clear(h);
}

void pl_wshold_drop(pl_wshold *h, pl_buf *out)
{
    if (h->ntail) pl_wshold_flush(h, out);
    else pl_wshold_clear(h);
}

/* Handle s[0..n), which starts on a character boundary. */
static void push_whole(pl_wshold *h, const char *s, size_t n, pl_buf *out)
{
    size_t complete = pl_utf8_complete_len(s, n);
    size_t keep = pl_py_rstrip_len(s, complete);
    if (keep) {
        /* non-space text: what was held is not trailing after all */
        pl_buf_append(out, h->ws.data, h->ws.len);
        pl_buf_reset(&h->ws);
        pl_buf_append(out, s, keep);
    }
    pl_buf_append(&h->ws, s + keep, complete - keep);
    memcpy(h->tail, s + complete, n - complete);
    h->ntail = n - complete;
}

static size_t seq_len(unsigned c)
{
    return (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
}

void pl_wshold_push(pl_wshold *h, const char *s, size_t n, pl_buf *out)
{
    if (!n) return;
    if (h->ntail) {
        /* The held bytes start a character: complete it from s first. */
        char tmp[4];
        size_t used = h->ntail, need = seq_len((unsigned char)h->tail[0]), i = used;
        memcpy(tmp, h->tail, used);
        while (i < need && i - used < n && ((unsigned char)s[i - used] & 0xC0) == 0x80) {
            tmp[i] = s[i - used];
            i++;
        }
        if (i < need && i - used == n) {        /* still incomplete: hold all of it */
            memcpy(h->tail, tmp, i);
            h->ntail = i;
            return;
        }
        uint32_t cp;
        h->ntail = 0;
        if (i == need && pl_utf8_decode((const unsigned char *)tmp, i, &cp) == need) {
            push_whole(h, tmp, i, out);
            s += i - used;
            n -= i - used;
        } else {
            /* invalid bytes: not whitespace, pass them on as they are */
            pl_buf_append(out, h->ws.data, h->ws.len);
            pl_buf_reset(&h->ws);
            pl_buf_append(out, tmp, used);
        }
    }
    push_whole(h, s, n, out);
}
