/* sse.c — split a Server-Sent Events body into messages exactly the way
 * vllm bench serve's StreamedResponseHandler does, since which messages it
 * sees (and when) decides TTFT and ITL:
 *
 *   - the body is cut at every "\n\n"; each piece is stripped of Python
 *     whitespace and, when not empty, is one message;
 *   - what is left after the last "\n\n" is a message too, without waiting
 *     for its blank line, when it starts with "data: " and the rest, stripped,
 *     is "[DONE]" or a complete JSON value.
 *
 * (CRLF-framed streams are not split at "\r\n\r\n", as in vLLM; such a
 * stream still works message by message through the second rule.) The text
 * must be UTF-8: vLLM decodes strictly, so invalid bytes fail the request. */
#include "bench.h"

#include <string.h>
#include <cjson/cJSON.h>

#include "json.h"
#include "pystr.h"

void bn_sse_init(bn_sse *s, size_t max_bytes)
{
    memset(s, 0, sizeof *s);
    pl_buf_init(&s->buf);
    s->max = max_bytes;
}

void bn_sse_free(bn_sse *s)
{
    pl_buf_free(&s->buf);
}

static int utf8_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if ((unsigned char)p[i] < 0x80) { i++; continue; }
        size_t k = pl_utf8_decode((const unsigned char *)p + i, n - i, &cp);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* Emit p[0..n) stripped, when not empty. */
static int emit(const char *p, size_t n, bn_sse_fn fn, void *ud)
{
    size_t off = pl_py_lstrip_off(p, n);
    p += off;
    n = pl_py_rstrip_len(p, n - off);
    if (!n) return 0;
    if (!utf8_ok(p, n)) return PL_ERR_PARSE;
    return fn(ud, p, n);
}

/* The remainder rule: "data: " + "[DONE]" or a complete JSON value. An
 * incomplete UTF-8 sequence at the end is not part of the text yet (Python's
 * incremental decoder holds it back). */
static int tail_complete(const char *p, size_t n)
{
    if (n < 6 || memcmp(p, "data: ", 6)) return 0;
    n = pl_utf8_complete_len(p, n);
    const char *c = p + 6;
    size_t cn = n - 6, off = pl_py_lstrip_off(c, cn);
    c += off;
    cn = pl_py_rstrip_len(c, cn - off);
    if (!cn) return 0;
    if (cn == 6 && !memcmp(c, "[DONE]", 6)) return 1;
    cJSON *v = NULL;
    if (pl_json_parse(&v, c, cn, NULL, 0)) return 0;
    cJSON_Delete(v);
    return 1;
}

int bn_sse_feed(bn_sse *s, const char *p, size_t n, bn_sse_fn fn, void *ud)
{
    if (s->buf.len + n > s->max) return PL_ERR_TOOLONG;
    pl_buf_append(&s->buf, p, n);
    if (!pl_buf_ok(&s->buf)) return PL_ERR_NOMEM;
    char *b = s->buf.data;
    size_t len = s->buf.len, start = 0;
    /* resume the search one byte early: a "\n\n" may straddle two feeds */
    size_t from = s->scanned ? s->scanned - 1 : 0;
    int rc = 0;
    for (;;) {
        char *nl = memmem(b + from, len - from, "\n\n", 2);
        if (!nl) break;
        size_t end = (size_t)(nl - b);
        if ((rc = emit(b + start, end - start, fn, ud))) break;
        start = from = end + 2;
    }
    if (!rc && start < len && tail_complete(b + start, len - start)) {
        size_t n_tail = pl_utf8_complete_len(b + start, len - start);
        rc = emit(b + start, n_tail, fn, ud);
        start += n_tail;
    }
    pl_buf_consume(&s->buf, start);
    s->scanned = s->buf.len;
    return rc;
}
