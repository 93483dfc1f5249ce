/* split.h — the split-point property for streaming parsers.
 *
 * A streaming parser must give the same final result however its input is
 * cut into deltas. for_each_split() calls run(ud, cuts, ncuts) with the
 * boundaries cuts[0] = 0 < ... < cuts[ncuts-1] = len of many cuttings:
 *
 *   - the whole text in one piece;
 *   - one piece per character (code point), and every cut into two pieces
 *     at a character boundary;
 *   - "tokens" — we have no tokenizer here, so text is cut approximately
 *     like one: each tag `<...>` alone, runs of letters/digits, runs of
 *     spaces, single other characters (multi-byte characters whole) — then
 *     grouped 1..6 tokens per delta (MTP delivers up to 6): every fixed group
 *     size, and `samples` pseudo-random groupings with sizes in 1..6;
 *   - `samples` random cuts into three pieces at character boundaries.
 *
 * Deterministic: the same text and seed give the same cuttings. */
#ifndef TEST_SPLIT_H
#define TEST_SPLIT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void (*split_run_fn)(void *ud, const size_t *cuts, size_t ncuts);

static uint32_t split_rand(uint64_t *st)
{
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*st >> 33);
}

/* Character boundaries (0 and len included) into b; returns the count. */
static size_t split_chars(const char *s, size_t len, size_t *b)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) b[n++] = i;
    b[n++] = len;
    return n;
}

static int split_alnum(unsigned char c) { return c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_'; }

/* Approximate token boundaries (0 and len included). */
static size_t split_tokens(const char *s, size_t len, size_t *b)
{
    size_t n = 0, i = 0;
    while (i < len) {
        b[n++] = i;
        unsigned char c = (unsigned char)s[i];
        const char *gt = c == '<' ? memchr(s + i, '>', len - i) : NULL;
        if (gt && gt - (s + i) < 16) { i = (size_t)(gt - s) + 1; continue; }
        if (split_alnum(c) && c < 0x80) { while (i < len && split_alnum((unsigned char)s[i]) && (unsigned char)s[i] < 0x80) i++; continue; }
        if (c == ' ') { while (i < len && s[i] == ' ') i++; continue; }
        i++;
        while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80) i++;   /* whole character */
    }
    b[n++] = len;
    return n;
}

/* Group token boundaries tb[0..nt) into pieces of `size` tokens (0: random 1..6). */
static size_t split_group(const size_t *tb, size_t nt, int size, uint64_t *rng, size_t *out)
{
    size_t n = 0, i = 0;
    out[n++] = 0;
    while (i + 1 < nt) {
        size_t g = size ? (size_t)size : 1 + split_rand(rng) % 6;
        i = i + g < nt - 1 ? i + g : nt - 1;
        out[n++] = tb[i];
    }
    return n;
}

static void for_each_split(const char *s, size_t len, unsigned samples, uint64_t seed, split_run_fn run, void *ud)
{
    size_t *cb = malloc((len + 2) * sizeof *cb), *tb = malloc((len + 2) * sizeof *tb);
    size_t *cuts = malloc((len + 2) * sizeof *cuts);
    if (!cb || !tb || !cuts) { free(cb); free(tb); free(cuts); abort(); }
    uint64_t rng = seed * 2654435761u + len;
    size_t nc = split_chars(s, len, cb), nt = split_tokens(s, len, tb);

    size_t whole[2] = {0, len};
    run(ud, whole, 2);
    run(ud, cb, nc);                                   /* one character per delta */
    for (size_t i = 1; i + 1 < nc; i++) {              /* every two-piece cut */
        size_t two[3] = {0, cb[i], len};
        run(ud, two, 3);
    }
    for (int g = 1; g <= 6; g++) run(ud, cuts, split_group(tb, nt, g, &rng, cuts));
    for (unsigned k = 0; k < samples; k++) run(ud, cuts, split_group(tb, nt, 0, &rng, cuts));
    for (unsigned k = 0; k < samples && nc > 3; k++) {  /* random three-piece cuts */
        size_t a = 1 + split_rand(&rng) % (nc - 2), b = 1 + split_rand(&rng) % (nc - 2);
        if (a > b) { size_t t = a; a = b; b = t; }
        if (a == b) continue;
        size_t three[4] = {0, cb[a], cb[b], len};
        run(ud, three, 4);
    }
    free(cb);
    free(tb);
    free(cuts);
}

#endif
