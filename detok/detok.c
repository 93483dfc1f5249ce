/* detok.c — incremental detokenization, stop strings, logprob token strings
 * (vLLM 0.33.0's V1 output processor; see detok.h and docs/protocol.md). */
#include "detok.h"

#include <stdlib.h>
#include <string.h>

static const char REPL[] = "\xEF\xBF\xBD";   /* U+FFFD */

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

/* Are p[1..n) the continuation bytes a sequence led by p[0] allows there
 * (n <= its length)? Checks the restricted second-byte ranges too
 * (E0 A0.., ED ..9F, F0 90.., F4 ..8F). */
static bool utf8_cont_ok(const uint8_t *p, size_t n)
{
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
        size_t need = utf8_need(c);
        return need > k && utf8_cont_ok(b + n - k, k) ? k : 0;
    }
    return 0;
}

static bool ends_in_repl(const char *s, size_t n)
{
    return n >= 3 && !memcmp(s + n - 3, REPL, 3);
}

/* Characters (code points) in valid UTF-8 s[0..n): the bytes that are not continuations. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((uint8_t)s[i] & 0xC0) != 0x80;
    return k;
}

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
    size_t chars = utf8_chars(str, len);
    if (chars > s->max_chars) s->max_chars = chars;
    return PL_OK;
}

void dtk_stops_free(dtk_stops *s)
{
    for (size_t i = 0; i < s->n; i++) { free(s->str[i]); free(s->fail[i]); }
    memset(s, 0, sizeof *s);
}

void dtk_params_init(dtk_params *p)
{
    p->skip_special = true;
    p->spaces_between = true;
    p->include_stop = false;
    p->min_tokens = 0;
}

/* ================================================================ choice */

int dtk_choice_init(dtk_choice *c, const dtk_stops *stops, const dtk_params *params)
{
    memset(c, 0, sizeof *c);
    c->stops = stops;
    c->params = params;
    pl_buf_init(&c->text);
    dtk_lpctx_init(&c->lp);
    if (stops->n && !(c->state = calloc(stops->n, sizeof *c->state))) return PL_ERR_NOMEM;
    return PL_OK;
}

void dtk_choice_free(dtk_choice *c)
{
    pl_buf_free(&c->text);
    dtk_lpctx_free(&c->lp);
    free(c->state);
    free(c->offs);
    c->state = NULL;
    c->offs = NULL;
}

/* ---------------------------------------------------------------- decode stream */

/* tokenizers' DecodeStream as vLLM steps it, on bytes: it decodes the bytes
 * of the tokens since its last output (Rust's from_utf8_lossy) and outputs
 * them when the result is not empty and does not end in U+FFFD. Kept
 * decoded: text[out..] is the lossy text of all but an incomplete UTF-8
 * sequence at the end, which waits in utf8[] (its U+FFFD is implied). */
static void stream_bytes(dtk_choice *c, const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (c->n_utf8 && i < n) {   /* continue the pending sequence */
        uint8_t t[4];
        memcpy(t, c->utf8, c->n_utf8);
        t[c->n_utf8] = b[i];
        size_t k = c->n_utf8 + 1, need = utf8_need(t[0]);
        if (!utf8_cont_ok(t, k)) {                    /* broken: its valid prefix is one U+FFFD */
            pl_buf_append(&c->text, REPL, 3);
            c->n_utf8 = 0;                            /* b[i] starts afresh below */
        } else if (k == need) {
            pl_buf_append(&c->text, t, k);
            c->n_utf8 = 0;
            i++;
        } else {
            c->utf8[c->n_utf8++] = b[i++];
        }
    }
    if (i == n) return;
    size_t keep = incomplete_tail(b + i, n - i);
    pl_tokenizer_utf8_lossy(b + i, n - i - keep, &c->text);
    memcpy(c->utf8, b + n - keep, keep);
    c->n_utf8 = keep;
}

/* One token through the stream, then vLLM's spaces_between_special_tokens
 * rule; its output (if any) becomes output text at c->out. */
static void decode_next(dtk_choice *c, const pl_tokenizer *tk, int32_t id)
{
    const dtk_params *p = c->params;
    size_t len = 0, old_out = c->out;
    const uint8_t *b = pl_tokenizer_token_bytes(tk, id, &len);   /* NULL: unknown id, nothing */
    if (b && !(p->skip_special && pl_tokenizer_is_special(tk, id))) stream_bytes(c, b, len);
    bool emitted = false;
    if (!c->n_utf8 && c->text.len > c->out && !ends_in_repl(c->text.data, c->text.len)) {
        c->out = c->text.len;
        emitted = true;
    }
    if (p->skip_special || p->spaces_between) return;
    /* FastIncrementalDetokenizer with both false: an added token right after
     * another added token outputs its content as written instead of what
     * the stream gave (nothing, or pending bytes + its text); the stream's
     * own state is not touched, so what it held comes out again later. */
    bool added = pl_tokenizer_is_added(tk, id);
    if (added && c->last_added) {
        size_t clen;
        const char *content = pl_tokenizer_added_content(tk, id, &clen);
        if (emitted) {
            c->text.len = old_out;
            pl_buf_append(&c->text, content, clen);
            c->out = c->text.len;
        } else {
            size_t pend = c->text.len - c->out;
            pl_buf_append(&c->text, content, clen);   /* grow, then open the gap at out */
            if (pl_buf_ok(&c->text)) {
                memmove(c->text.data + c->out + clen, c->text.data + c->out, pend);
                memcpy(c->text.data + c->out, content, clen);
                c->out += clen;
            }
        }
    }
    c->last_added = added;
}

/* ---------------------------------------------------------------- stop strings */

/* vLLM's check_stop_strings over the step's output text[from..to): for each
 * stop string the first match that ends after check (earlier matches were
 * before min_tokens), the one ending earliest wins, ties by list order.
 * The KMP states run over all output text, so a match may begin in earlier
 * steps (vLLM searches from stop_len - 1 characters before the new text).
 * Returns the stop index and *end, or -1. */
static int scan_stops(dtk_choice *c, size_t from, size_t to, size_t check, size_t *end)
{
    const dtk_stops *s = c->stops;
    const char *t = c->text.data;
    int best = -1;
    size_t best_end = to + 1;
    for (size_t k = 0; k < s->n; k++) {
        size_t st = (size_t)c->state[k];
        const char *p = s->str[k];
        const int32_t *fail = s->fail[k];
        for (size_t i = from; i < to && i + 1 < best_end; i++) {   /* only an earlier end can win */
            while (st && t[i] != p[st]) st = (size_t)fail[st - 1];
            if (t[i] == p[st]) st++;
            if (st == s->len[k]) {
                if (i + 1 > check) {
                    best = (int)k;
                    best_end = i + 1;
                    break;
                }
                st = (size_t)fail[st - 1];
            }
        }
        c->state[k] = (int32_t)st;
    }
    if (best >= 0) *end = best_end;
    return best;
}

/* ---------------------------------------------------------------- feed */

static void release(dtk_choice *c, size_t upto, pl_buf *out)
{
    pl_buf_append(out, c->text.data, upto);
    pl_buf_consume(&c->text, upto);
    c->out -= upto;
}

/* The choice finished: everything output so far goes out; what the decode
 * stream still holds (text[out..] and an incomplete sequence) is dropped —
 * vLLM never flushes its DecodeStream. */
static void finish(dtk_choice *c, size_t upto, pl_buf *out)
{
    c->text.len = c->out;
    release(c, upto, out);
    pl_buf_reset(&c->text);
    c->out = c->held_chars = c->n_utf8 = 0;
    c->done = true;
}

static int grow_offs(dtk_choice *c, size_t n)
{
    if (n <= c->offs_cap) return PL_OK;
    size_t cap = c->offs_cap ? c->offs_cap : 8;
    while (cap < n) cap *= 2;
    size_t *p = realloc(c->offs, cap * sizeof *p);
    if (!p) return PL_ERR_NOMEM;
    c->offs = p;
    c->offs_cap = cap;
    return PL_OK;
}

int dtk_choice_feed(dtk_choice *c, const pl_tokenizer *tk, const int32_t *ids, size_t n, unsigned flags,
                    pl_buf *out, size_t *n_kept, int *stop_hit)
{
    const dtk_params *p = c->params;
    *stop_hit = -1;
    *n_kept = 0;
    if (c->done) return PL_OK;
    if (grow_offs(c, n + 1)) return PL_ERR_NOMEM;

    /* 1. decode; offs[k] = output text length after k tokens of the step.
     * A finishing stop token is counted but not decoded (vLLM skips it
     * unless include_stop_str_in_output). */
    size_t ndec = n && (flags & DTK_FEED_STOP_TOKEN) && !p->include_stop ? n - 1 : n;
    size_t from = c->out;
    c->offs[0] = from;
    for (size_t i = 0; i < n; i++) {
        if (i < ndec) decode_next(c, tk, ids[i]);
        c->offs[i + 1] = c->out;
    }
    if (!pl_buf_ok(&c->text)) return PL_ERR_NOMEM;

    /* 2. stop strings, once the choice has more than min_tokens tokens,
     * over the text of the tokens past min_tokens */
    *n_kept = n;
    if (c->stops->n) {
        bool gate = c->n_tokens + (int64_t)n > p->min_tokens;
        size_t m = 0;
        if (gate && p->min_tokens > c->n_tokens) m = (size_t)(p->min_tokens - c->n_tokens);
        size_t end = 0;
        int hit = scan_stops(c, from, c->out, gate ? c->offs[m] : c->out, &end);
        if (hit >= 0) {
            size_t k = 1;   /* the token whose text completes the match stands; later ones go */
            while (k < n && c->offs[k] < end) k++;
            *n_kept = k;
            *stop_hit = hit;
            c->n_tokens += (int64_t)k;
            /* the match lies in text not yet released: the hold-back keeps
             * (longest stop - 1) characters before the step's text */
            size_t len = c->stops->len[hit];
            size_t cut = p->include_stop ? end : end >= len ? end - len : 0;
            finish(c, cut, out);
            return pl_buf_ok(out) ? PL_OK : PL_ERR_NOMEM;
        }
    }
    c->n_tokens += (int64_t)n;
    if (flags & DTK_FEED_FINAL) {
        finish(c, c->out, out);
        return pl_buf_ok(out) ? PL_OK : PL_ERR_NOMEM;
    }

    /* 3. release all but the last (longest stop - 1) characters */
    if (c->out > from) c->held_chars += utf8_chars(c->text.data + from, c->out - from);
    size_t keep = c->stops->n && !p->include_stop ? c->stops->max_chars - 1 : 0;
    if (c->held_chars > keep) {
        size_t drop = c->held_chars - keep, i = 0;
        while (drop) {   /* past `drop` characters */
            i++;
            while (i < c->out && ((uint8_t)c->text.data[i] & 0xC0) == 0x80) i++;
            drop--;
        }
        release(c, i, out);
        c->held_chars = keep;
    }
    return pl_buf_ok(out) ? PL_OK : PL_ERR_NOMEM;
}

void dtk_choice_flush(dtk_choice *c, pl_buf *out)
{
    if (c->done) return;
    finish(c, c->out, out);
}

/* ================================================================ logprob token strings */

void dtk_lpctx_init(dtk_lpctx *x)
{
    x->n = 0;
    pl_buf_init(&x->full);
    pl_buf_init(&x->pre);
    pl_buf_init(&x->bytes);
}

void dtk_lpctx_free(dtk_lpctx *x)
{
    pl_buf_free(&x->full);
    pl_buf_free(&x->pre);
    pl_buf_free(&x->bytes);
}

void dtk_lpctx_push(dtk_lpctx *x, int32_t id)
{
    if (x->n == DTK_LP_CONTEXT) {
        memmove(x->id, x->id + 1, (DTK_LP_CONTEXT - 1) * sizeof *x->id);
        x->n--;
    }
    x->id[x->n++] = id;
}

/* Does the lossy decoding of b[0..n) end in U+FFFD? Without decoding: the
 * last character is whatever starts at the last non-continuation byte of
 * the final four (a lead byte always starts afresh), and it is U+FFFD unless
 * it is a complete valid sequence — or the character U+FFFD itself. */
static bool bytes_end_in_repl(const uint8_t *b, size_t n)
{
    if (!n) return false;
    size_t k = 1;
    while (k <= n && k <= 4 && (b[n - k] & 0xC0) == 0x80) k++;
    if (k > n || k > 4) return true;            /* continuation bytes with no lead */
    const uint8_t *p = b + n - k;
    size_t need = utf8_need(p[0]);
    if (k != need || !utf8_cont_ok(p, k)) return true;   /* cut, overlong, or an invalid lead */
    return k == 3 && !memcmp(p, REPL, 3);
}

/* The bytes transformers' tokenizer.decode(ids) decodes (special tokens
 * kept, unknown ids dropped), into bytes (reset first). */
static void ids_bytes(const pl_tokenizer *tk, const int32_t *ids, size_t n, pl_buf *bytes)
{
    pl_buf_reset(bytes);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *b = pl_tokenizer_token_bytes(tk, ids[i], &len);
        if (b) pl_buf_append(bytes, b, len);
    }
}

static bool token_ends_in_repl(const pl_tokenizer *tk, int32_t id)
{
    size_t len;
    const uint8_t *b = pl_tokenizer_token_bytes(tk, id, &len);
    return b && bytes_end_in_repl(b, len);
}

/* LogprobsProcessor._correct_decoded_token: appends the corrected text. */
static void correct_token(const pl_tokenizer *tk, dtk_lpctx *ctx, int32_t id, pl_buf *out)
{
    int32_t run[DTK_LP_CONTEXT + 1];
    for (size_t num = 1; num <= ctx->n; num++) {
        const int32_t *cx = ctx->id + ctx->n - num;   /* the last num context ids */
        memcpy(run, cx, num * sizeof *run);
        run[num] = id;
        ids_bytes(tk, run, num + 1, &ctx->bytes);
        if (bytes_end_in_repl((const uint8_t *)ctx->bytes.data, ctx->bytes.len)) continue;
        pl_buf_reset(&ctx->full);
        pl_tokenizer_utf8_lossy((const uint8_t *)ctx->bytes.data, ctx->bytes.len, &ctx->full);
        /* context ids at the end that are pieces themselves were reported
         * as ""; their share of the text belongs to this token */
        size_t clean = num;
        while (clean > 0 && token_ends_in_repl(tk, cx[clean - 1])) clean--;
        ids_bytes(tk, cx, clean, &ctx->bytes);
        pl_buf_reset(&ctx->pre);
        pl_tokenizer_utf8_lossy((const uint8_t *)ctx->bytes.data, ctx->bytes.len, &ctx->pre);
        const pl_buf *full = &ctx->full, *pre = &ctx->pre;
        size_t k = 0;   /* common prefix in whole characters (Python compares code points) */
        while (k < pre->len && k < full->len && pre->data[k] == full->data[k]) k++;
        if (k < pre->len && k < full->len)
            while (k > 0 && ((uint8_t)full->data[k] & 0xC0) == 0x80) k--;
        pl_buf_append(out, full->data + k, full->len - k);
        return;
    }
}

int dtk_token_text(const pl_tokenizer *tk, dtk_lpctx *ctx, int32_t id, pl_buf *out)
{
    size_t len;
    const uint8_t *b = pl_tokenizer_token_bytes(tk, id, &len);
    if (b && bytes_end_in_repl(b, len)) correct_token(tk, ctx, id, out);
    else if (b) pl_tokenizer_utf8_lossy(b, len, out);
    return pl_buf_ok(out) && pl_buf_ok(&ctx->full) && pl_buf_ok(&ctx->pre) && pl_buf_ok(&ctx->bytes) ? PL_OK
                                                                                                   : PL_ERR_NOMEM;
}
