/* pystr.h — Python string semantics the text-side parsers must match.
 *
 * vLLM strips names, keys, reasoning and content with Python's str.strip(),
 * whose idea of whitespace is Unicode's (str.isspace), not C's isspace. The
 * streaming parsers also see text cut at arbitrary byte positions, so they
 * need to hold back a UTF-8 sequence that is not complete yet.
 *
 * pl_wshold is the streaming form of rstrip(): text goes in, everything but
 * the trailing whitespace (and an incomplete UTF-8 tail) comes out at once;
 * the held part is released when more text follows, or dropped at the end.
 * Work per push is proportional to the pushed text, even across long runs
 * of whitespace. */
#ifndef PL_PYSTR_H
#define PL_PYSTR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pl.h"

/* Decode one UTF-8 scalar at s (n bytes left). Returns its length, or 0 for
 * an invalid sequence (overlong, surrogate, > U+10FFFF, truncated). */
size_t pl_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Encode code point cp (<= U+10FFFF) as UTF-8 into out[0..4); returns the length. */
size_t pl_utf8_encode(uint32_t cp, char *out);

/* Characters in s[0..n) as Python's len() counts them (an invalid byte
 * counts as one). */
size_t pl_utf8_count(const char *s, size_t n);

/* Python's str.isspace() for one code point. */
bool pl_py_isspace(uint32_t cp);

/* The value 0-9 of a Unicode decimal digit (category Nd, what Python's
 * int() and float() accept in any script: '٣', '３', '९'), or -1. */
int pl_py_decimal(uint32_t cp);

/* Length of s[0..n) without its trailing / offset past its leading Python
 * whitespace (invalid UTF-8 counts as non-space). */
size_t pl_py_rstrip_len(const char *s, size_t n);
size_t pl_py_lstrip_off(const char *s, size_t n);

/* True when s[0..n) is empty or only Python whitespace. */
bool pl_py_is_blank(const char *s, size_t n);

/* Length of s[0..n) without a trailing incomplete (but so far valid) UTF-8
 * sequence: what can be handed on without splitting a character. */
size_t pl_utf8_complete_len(const char *s, size_t n);

/* ---------------------------------------------------------------- wshold */

typedef struct pl_wshold {
    pl_buf ws;          /* held trailing whitespace */
    char   tail[4];     /* held incomplete UTF-8 sequence (after ws) */
    size_t ntail;
} pl_wshold;

void pl_wshold_init(pl_wshold *h);
void pl_wshold_free(pl_wshold *h);
/* Append s; everything up to the trailing whitespace goes to out. */
void pl_wshold_push(pl_wshold *h, const char *s, size_t n, pl_buf *out);
/* Release everything held (the text continues or ends unstripped). */
void pl_wshold_flush(pl_wshold *h, pl_buf *out);
/* End of the text: drop the held whitespace (rstrip). An incomplete UTF-8
 * tail is not whitespace, so when there is one nothing is dropped. */
void pl_wshold_drop(pl_wshold *h, pl_buf *out);
/* Forget everything held (leading whitespace that turned out unwanted). */
void pl_wshold_clear(pl_wshold *h);
static inline bool pl_wshold_empty(const pl_wshold *h) { return h->ws.len == 0 && h->ntail == 0; }

#endif
