/* detok.c — incremental detokenization and stop strings. */
#include "detok.h"

#include <stdlib.h>
#include <string.h>

/* ================================================================ stop strings */

void dtk_stops_init(dtk_stops *s) { memset(s, 0, sizeof *s); }

int dtk_stops_add(dtk_stops *s, const char *str, size_t len)
{
    if (!len) return PL_OK;
    if (s->n == DTK_MAX_STOPS || len > DTK_MAX_STOP_BYTES) return PL_ERR_RANGE;
    char *copy = malloc(len);
    int32_t *fail = malloc(sizeof *fail * len);
    if (!copy || !fail) { free(copy); free(fail); return PL_ERR_NOMEM; }
    memcpy(copy, str, len);
    /* fail[i]: length of the longest proper border of str[0..i] */
    fail[0] = 0;
    for (size_t i = 1, k = 0; i < len; i++) {
        while (k && str[i] != str[k]) k = (size_t)fail[k - 1];
        if (str[i] == str[k]) k++;
        fail[i] = (int32_t)k;
    }
    s->str[s->n] = copy;
    s->len[s->n] = len;
    s->fail[s->n] = fail;
    s->n++;
    return PL_OK;
}

void dtk_stops_free(dtk_stops *s)
{
    for (size_t i = 0; i < s->n; i++) { free(s->str[i]); free(s->fail[i]); }
    memset(s, 0, sizeof *s);
}

/* ================================================================ UTF-8 */

/* Length a sequence starting with lead byte b must have; 0 if b cannot lead. */
static size_t utf8_need(uint8_t b)
{
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Is p[0..n) (n < need) a prefix of some valid sequence? Checks the
 * restricted second-byte ranges too (E0 A0.., ED ..9F, F0 90.., F4 ..8F). */
static bool utf8_valid_prefix(const uint8_t *p, size_t n)
{
    size_t need = utf8_need(p[0]);
    if (need < 2 || n >= need) return false;
    for (size_t i = 1; i < n; i++) {
        uint8_t lo = 0x80, hi = 0xBF;
        if (i == 1) {
            if (p[0] == 0xE0) lo = 0xA0;
            else if (p[0] == 0xED) hi = 0x9F;
            else if (p[0] == 0xF0) lo = 0x90;
            else if (p[0] == 0xF4) hi = 0x8F;
        }
        if (p[i] < lo || p[i] > hi) return false;
    }
    return true;
}

/* Length of the tail of b[0..n) that is an incomplete but still valid UTF-8
 * sequence (0..3): those bytes must wait for the next token. */
static size_t incomplete_tail(const uint8_t *b, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        uint8_t c = b[n - k];
        if ((c & 0xC0) == 0x80) continue;   /* continuation: look further back */
        return utf8_valid_prefix(b + n - k, k) ? k : 0;
    }
    return 0;
}

void dtk_token_text(const pl_tokenizer *tk, int32_t id, pl_buf *out)
{
    size_t len;
    const uint8_t *b = pl_tokenizer_token_bytes(tk, id, &len);
    if (b) pl_tokenizer_utf8_lossy(b, len, out);
}

/* ================================================================ choice */

int dtk_choice_init(dtk_choice *c, const dtk_stops *stops, bool skip_special, bool include_stop)
{
    memset(c, 0, sizeof *c);
    c->stops = stops;
    c->skip_special = skip_special;
    c->include_stop = include_stop;
    pl_buf_init(&c->held);
    if (stops->n && !(c->state = calloc(stops->n, sizeof *c->state))) return PL_ERR_NOMEM;
    return PL_OK;
}

void dtk_choice_free(dtk_choice *c)
{
    pl_buf_free(&c->held);
    free(c->state);
    c->state = NULL;
}

/* Run the stop automata over held[from..]. Returns the index of the first
 * stop string (list order) that completed, with *end its end offset in
 * held; -1 if none. States advance only up to the earliest completed match
 * of each string, which is all a decision needs. */
static int scan_stops(dtk_choice *c, size_t from, size_t *end)
{
    const dtk_stops *s = c->stops;
    const char *t = c->held.data;
    int hit = -1;
    for (size_t k = 0; k < s->n; k++) {
        size_t st = (size_t)c->state[k];
        const char *p = s->str[k];
        for (size_t i = from; i < c->held.len; i++) {
            while (st && t[i] != p[st]) st = (size_t)s->fail[k][st - 1];
            if (t[i] == p[st]) st++;
            if (st == s->len[k]) {
                if (hit < 0) { hit = (int)k; *end = i + 1; }
                break;
            }
        }
        c->state[k] = (int32_t)st;
        if (hit >= 0) return hit;   /* list order: the first string that occurs wins */
    }
    return hit;
}

/* Longest matched prefix over all stop strings: that much of held's tail
 * might still become a stop string. */
static size_t hold_len(const dtk_choice *c)
{
    size_t h = 0;
    for (size_t k = 0; k < c->stops->n; k++)
        if ((size_t)c->state[k] > h) h = (size_t)c->state[k];
    return h;
}

int dtk_choice_feed(dtk_choice *c, const pl_tokenizer *tk, const int32_t *ids, size_t n,
                    pl_buf *out, int *stop_hit)
{
    *stop_hit = -1;
    if (c->done) return PL_OK;
    for (size_t i = 0; i < n; i++)
        if (!pl_tokenizer_token_bytes(tk, ids[i], &(size_t){0})) return PL_ERR_RANGE;
    c->n_tokens += n;

    /* 1. token bytes -> newly complete text, appended to held */
    size_t from = c->held.len;
    uint8_t tmp[512];
    size_t nt = 0;
    memcpy(tmp, c->utf8, c->n_utf8);
    nt = c->n_utf8;
    c->n_utf8 = 0;
    for (size_t i = 0; i < n; i++) {
        if (c->skip_special && pl_tokenizer_is_special(tk, ids[i])) continue;
        size_t len;
        const uint8_t *b = pl_tokenizer_token_bytes(tk, ids[i], &len);
        while (len) {   /* stream through tmp so long added tokens need no allocation */
            if (nt == sizeof tmp) {
                size_t keep = incomplete_tail(tmp, nt);
                pl_tokenizer_utf8_lossy(tmp, nt - keep, &c->held);
                memmove(tmp, tmp + nt - keep, keep);
                nt = keep;
            }
            size_t take = len < sizeof tmp - nt ? len : sizeof tmp - nt;
            memcpy(tmp + nt, b, take);
            nt += take;
            b += take;
            len -= take;
        }
    }
    size_t keep = incomplete_tail(tmp, nt);
    pl_tokenizer_utf8_lossy(tmp, nt - keep, &c->held);
    memcpy(c->utf8, tmp + nt - keep, keep);
    c->n_utf8 = keep;
    if (!pl_buf_ok(&c->held)) return PL_ERR_NOMEM;

    /* 2. stop strings */
    if (c->stops->n) {
        size_t end = 0;
        int hit = scan_stops(c, from, &end);
        if (hit >= 0) {
            size_t cut = c->include_stop ? end : end - c->stops->len[hit];
            pl_buf_append(out, c->held.data, cut);
            pl_buf_reset(&c->held);
            c->n_utf8 = 0;
            c->done = true;
            *stop_hit = hit;
            return PL_OK;
        }
    }
    /* 3. release all but what may still start a stop string */
    size_t h = hold_len(c);
    if (h > c->held.len) h = c->held.len;
    pl_buf_append(out, c->held.data, c->held.len - h);
    pl_buf_consume(&c->held, c->held.len - h);
    return pl_buf_ok(out) ? PL_OK : PL_ERR_NOMEM;
}

void dtk_choice_flush(dtk_choice *c, pl_buf *out)
{
    if (c->done) return;
    pl_buf_append(out, c->held.data, c->held.len);
    pl_buf_reset(&c->held);
    pl_tokenizer_utf8_lossy(c->utf8, c->n_utf8, out);
    c->n_utf8 = 0;
    c->done = true;
}
