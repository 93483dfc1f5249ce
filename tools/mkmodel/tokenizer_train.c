/* tokenizer_train.c — deterministic byte-level BPE training and the GLM-shaped
 * tokenizer files of glm-mkmodel's model directories. See tokenizer_train.h.
 *
 * Training is the classic incremental algorithm: the text is cut into
 * pre-tokens with GLM's regex (PCRE2, UTF+UCP), identical pre-tokens are
 * counted once (the word table), and every adjacent symbol pair keeps a
 * count and the list of words it occurs in. A max-heap with lazy deletion
 * yields the most frequent pair; merging it touches only the words in its
 * list and updates the counts of the neighbouring pairs. Ties break on the
 * smaller (left, right) symbol ids, so the result never depends on hash
 * order.
 *
 * A merge whose result would spell a string that is already a token, or one
 * of GLM's added tokens ("/nothink" is one pre-token), is banned: every
 * vocabulary entry is then reachable by exactly one merge and the
 * vocabulary has exactly 256 + merges entries.
 *
 * When the pairs run out before the vocabulary is full, synthetic text is
 * generated from the corpus by character Markov chains (orders 1-3, fixed
 * seed), pre-tokenized, segmented with the merges learnt so far, and training
 * goes on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "strmap.h"
#include "pystr.h"
#include "pl.h"
#include "pyjson.h"
#include "tokenizer_train.h"

const char *const eng_mk_added_tokens[ENG_MK_N_ADDED] = {
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
    "<|begin_of_video|>", "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>",
    "<|begin_of_transcription|>", "<|end_of_transcription|>", "<|code_prefix|>",
    "<|code_middle|>", "<|code_suffix|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<tool_response>", "</tool_response>", "<arg_key>", "</arg_key>", "<arg_value>",
    "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>", "<|image|>", "<|video|>",
};

/* GLM's pre-tokenizer regex exactly as tokenizer.json carries it (§2.3). */
static const char GLM_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* The same for PCRE2 during training: \s and \S spelled as Oniguruma's
 * whitespace set (what HF's engine uses), so training sees the pieces that
 * encoding will. */
#define WS "\\t-\\r\\x{85}\\p{Z}"
static const char TRAIN_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";
#undef WS

/* Synthetic text comes in chunks of this many bytes. A text whose chain
 * cannot make anything new (a tiny or repetitive one) would never fill the
 * vocabulary: after this many chunks in a row without a merge, give up with
 * an error instead of looping. */
#define SYNTH_CHUNK      (32 * 1024)
#define SYNTH_MAX_STALLS 32
#define MARKOV_ORDER    3
#define TRAIN_SEED      0x676c6d7069706531ull

/* ===== growable arrays ===== */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return PL_ERR_NOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

#define PUSH(arr, n, cap, val) \
    (grow((void **)&(arr), &(cap), (n) + 1, sizeof *(arr)) ? PL_ERR_NOMEM : ((arr)[(n)++] = (val), 0))

/* ===== trainer state ===== */

typedef struct mk_word {
    uint32_t off, len;       /* symbols at syms[off .. off+len); len shrinks as merges apply */
    int64_t  count;
} mk_word;

typedef struct mk_pair {
    int32_t  a, b;
    int64_t  count;
    int32_t  merged;         /* token id made from this pair, or -1 */
    uint8_t  banned, dirty;
    uint32_t *words;         /* words it occurs in (may hold stale entries) */
    size_t   nw, capw;
} mk_pair;

typedef struct mk_tok {
    uint32_t off, len;
} mk_tok;

typedef struct mk_heap_ent {
    int64_t count;
    int32_t pair;
} mk_heap_ent;

struct eng_mk_bpe {
    int       target;                    /* base_vocab */
    /* tokens: id -> bytes in tok_bytes */
    mk_tok   *toks;
    size_t    n_tok, cap_tok;
    pl_buf    tok_bytes;
    pl_strmap *tok_ids;                  /* bytes -> (id + 1) */
    /* words */
    mk_word  *words;
    size_t    n_words, cap_words;
    int32_t  *syms;
    size_t    n_syms, cap_syms;
    pl_strmap *word_ids;                 /* bytes -> (index + 1) */
    /* pairs */
    mk_pair  *pairs;
    size_t    n_pairs, cap_pairs;
    uint64_t *pm_keys;                   /* open addressing: (a<<32|b)+1, 0 = empty */
    uint32_t *pm_vals;
    size_t    pm_cap;
    uint32_t *dirty;
    size_t    n_dirty, cap_dirty;
    mk_heap_ent *heap;
    size_t    n_heap, cap_heap;
    /* the pre-tokenizer */
    pcre2_code       *re;
    pcre2_match_data *md;
    eng_mk_bpe_stats stats;
};

/* ===== pair map ===== */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static uint64_t pair_key(int32_t a, int32_t b)
{
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

static int pm_rehash(eng_mk_bpe *t)
{
    size_t nc = t->pm_cap ? t->pm_cap * 2 : 1024;
    uint64_t *k = calloc(nc, sizeof *k);
    uint32_t *v = calloc(nc, sizeof *v);
    if (!k || !v) { free(k); free(v); return PL_ERR_NOMEM; }
    for (size_t i = 0; i < t->pm_cap; i++) {
        if (!t->pm_keys[i]) continue;
        size_t j = mix64(t->pm_keys[i]) & (nc - 1);
        while (k[j]) j = (j + 1) & (nc - 1);
        k[j] = t->pm_keys[i];
        v[j] = t->pm_vals[i];
    }
    free(t->pm_keys); free(t->pm_vals);
    t->pm_keys = k; t->pm_vals = v; t->pm_cap = nc;
    return 0;
}

/* Index of pair (a,b); creates it when create is set. -1: absent (or OOM
 * with create, reported as -2). */
static int64_t pair_find(eng_mk_bpe *t, int32_t a, int32_t b, int create)
{
    uint64_t key = pair_key(a, b);
    if (t->pm_cap) {
        size_t j = mix64(key) & (t->pm_cap - 1);
        while (t->pm_keys[j]) {
            if (t->pm_keys[j] == key) return t->pm_vals[j];
            j = (j + 1) & (t->pm_cap - 1);
        }
    }
    if (!create) return -1;
    if ((t->n_pairs + 1) * 2 > t->pm_cap && pm_rehash(t)) return -2;
    mk_pair p = { .a = a, .b = b, .merged = -1 };
    if (PUSH(t->pairs, t->n_pairs, t->cap_pairs, p)) return -2;
    size_t j = mix64(key) & (t->pm_cap - 1);
    while (t->pm_keys[j]) j = (j + 1) & (t->pm_cap - 1);
    t->pm_keys[j] = key;
    t->pm_vals[j] = (uint32_t)(t->n_pairs - 1);
    return (int64_t)t->n_pairs - 1;
}

/* ===== heap (max count, then smaller (a, b)) ===== */

static int heap_before(const eng_mk_bpe *t, const mk_heap_ent *x, const mk_heap_ent *y)
{
    if (x->count != y->count) return x->count > y->count;
    const mk_pair *p = &t->pairs[x->pair], *q = &t->pairs[y->pair];
    if (p->a != q->a) return p->a < q->a;
    return p->b < q->b;
}

static int heap_push(eng_mk_bpe *t, int32_t pair)
{
    mk_heap_ent e = { t->pairs[pair].count, pair };
    if (PUSH(t->heap, t->n_heap, t->cap_heap, e)) return PL_ERR_NOMEM;
    size_t i = t->n_heap - 1;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_before(t, &t->heap[i], &t->heap[up])) break;
        mk_heap_ent tmp = t->heap[i]; t->heap[i] = t->heap[up]; t->heap[up] = tmp;
        i = up;
    }
    return 0;
}

static mk_heap_ent heap_pop(eng_mk_bpe *t)
{
    mk_heap_ent top = t->heap[0];
    t->heap[0] = t->heap[--t->n_heap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < t->n_heap && heap_before(t, &t->heap[l], &t->heap[best])) best = l;
        if (r < t->n_heap && heap_before(t, &t->heap[r], &t->heap[best])) best = r;
        if (best == i) break;
        mk_heap_ent tmp = t->heap[i]; t->heap[i] = t->heap[best]; t->heap[best] = tmp;
        i = best;
    }
    return top;
}

/* ===== pair counts ===== */

/* Add d to the count of (a,b) as seen in word w; a positive change records
 * w in the pair's word list. The pair is queued for a heap push. */
static int pair_add(eng_mk_bpe *t, int32_t a, int32_t b, int64_t d, uint32_t w)
{
    int64_t pi = pair_find(t, a, b, d > 0);
    if (pi == -2) return PL_ERR_NOMEM;
    if (pi < 0) return PL_ERR_INTERNAL;      /* a decrement of a pair never counted */
    mk_pair *p = &t->pairs[pi];
    p->count += d;
    if (d > 0 && (p->nw == 0 || p->words[p->nw - 1] != w)
        && PUSH(p->words, p->nw, p->capw, w)) return PL_ERR_NOMEM;
    if (!p->dirty) {
        p->dirty = 1;
        if (PUSH(t->dirty, t->n_dirty, t->cap_dirty, (uint32_t)pi)) return PL_ERR_NOMEM;
    }
    return 0;
}

/* Push every pair whose count changed (once, with its final count). */
static int flush_dirty(eng_mk_bpe *t)
{
    for (size_t i = 0; i < t->n_dirty; i++) {
        mk_pair *p = &t->pairs[t->dirty[i]];
        p->dirty = 0;
        if (p->count > 0 && !p->banned && p->merged < 0 && heap_push(t, (int32_t)t->dirty[i]))
            return PL_ERR_NOMEM;
    }
    t->n_dirty = 0;
    return 0;
}

/* ===== tokens ===== */

static int tok_add(eng_mk_bpe *t, const void *bytes, size_t len)
{
    size_t id = t->n_tok;
    mk_tok tk = { (uint32_t)t->tok_bytes.len, (uint32_t)len };
    if (PUSH(t->toks, t->n_tok, t->cap_tok, tk)) return PL_ERR_NOMEM;
    t->n_tok--;                          /* counted below, once the name is stored */
    pl_buf_append(&t->tok_bytes, bytes, len);
    if (!pl_buf_ok(&t->tok_bytes)) return PL_ERR_NOMEM;
    if (pl_strmap_put(t->tok_ids, bytes, len, (void *)(uintptr_t)(id + 1), NULL)) return PL_ERR_NOMEM;
    t->n_tok++;
    return 0;
}

static const char *tok_str(const eng_mk_bpe *t, int32_t id, size_t *len)
{
    *len = t->toks[id].len;
    return t->tok_bytes.data + t->toks[id].off;
}

/* ===== words ===== */

/* Segment a new word with the merges learnt so far, lowest token id (= merge
 * rank) first, as a BPE encoder would. Words are short; quadratic is fine. */
static void segment(eng_mk_bpe *t, int32_t *s, uint32_t *len)
{
    for (;;) {
        int32_t best = -1;
        uint32_t at = 0;
        for (uint32_t i = 0; i + 1 < *len; i++) {
            int64_t pi = pair_find(t, s[i], s[i + 1], 0);
            if (pi >= 0 && t->pairs[pi].merged >= 0 && (best < 0 || t->pairs[pi].merged < best)) {
                best = t->pairs[pi].merged;
                at = i;
            }
        }
        if (best < 0) return;
        const mk_pair *p = &t->pairs[pair_find(t, s[at], s[at + 1], 0)];
        uint32_t o = 0;
        for (uint32_t r = 0; r < *len; ) {
            if (r + 1 < *len && s[r] == p->a && s[r + 1] == p->b) { s[o++] = best; r += 2; }
            else s[o++] = s[r++];
        }
        *len = o;
    }
}

/* Count one more occurrence (count times) of the pre-token bytes[0..len). */
static int word_add(eng_mk_bpe *t, const char *bytes, size_t len, int64_t count)
{
    if (len == 0) return 0;
    uintptr_t v = (uintptr_t)pl_strmap_get(t->word_ids, bytes, len);
    uint32_t w;
    if (v) {
        w = (uint32_t)(v - 1);
        t->words[w].count += count;
    } else {
        if (grow((void **)&t->syms, &t->cap_syms, t->n_syms + len, sizeof *t->syms)) return PL_ERR_NOMEM;
        mk_word nw = { (uint32_t)t->n_syms, (uint32_t)len, count };
        for (size_t i = 0; i < len; i++) t->syms[t->n_syms + i] = (uint8_t)bytes[i];
        segment(t, t->syms + nw.off, &nw.len);
        t->n_syms += nw.len;
        if (PUSH(t->words, t->n_words, t->cap_words, nw)) return PL_ERR_NOMEM;
        w = (uint32_t)(t->n_words - 1);
        if (pl_strmap_put(t->word_ids, bytes, len, (void *)(uintptr_t)(w + 1), NULL)) return PL_ERR_NOMEM;
    }
    const int32_t *s = t->syms + t->words[w].off;
    for (uint32_t i = 0; i + 1 < t->words[w].len; i++) {
        int rc = pair_add(t, s[i], s[i + 1], count, w);
        if (rc) return rc;
    }
    return 0;
}

/* ===== pre-tokenizer ===== */

static int pretok_init(eng_mk_bpe *t, char *err, size_t errlen)
{
    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)TRAIN_REGEX, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &ec, &eo, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return pl_seterr(err, errlen, PL_ERR_INTERNAL, "pre-tokenizer regex at %zu: %s", (size_t)eo, msg);
    }
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);   /* optional: falls back to the interpreter */
    t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    return t->md ? 0 : pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
}

/* Cut text into pieces (matches and the gaps between them, as HF's Split
 * with behavior Isolated does) and count each as a word. */
static int count_text(eng_mk_bpe *t, const char *text, size_t len, char *err, size_t errlen)
{
    size_t pos = 0, gap = 0;
    while (pos < len) {
        /* The first call validates the whole text as UTF-8; later ones skip
         * that check, which would otherwise make the loop quadratic. */
        int m = pcre2_match(t->re, (PCRE2_SPTR)text, len, pos, pos ? PCRE2_NO_UTF_CHECK : 0, t->md, NULL);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if (m < 0) return pl_seterr(err, errlen, PL_ERR_INVALID, "pre-tokenizer failed at byte %zu (%d)", pos, m);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        size_t s = ov[0], e = ov[1];
        if (e == s) {                   /* cannot happen with this regex; never loop on it */
            pos = s + 1;
            while (pos < len && ((uint8_t)text[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        int rc = word_add(t, text + gap, s - gap, 1);
        if (!rc) rc = word_add(t, text + s, e - s, 1);
        if (rc) return pl_seterr(err, errlen, rc, "out of memory");
        pos = gap = e;
    }
    int rc = word_add(t, text + gap, len - gap, 1);
    return rc ? pl_seterr(err, errlen, rc, "out of memory") : 0;
}

/* ===== merging ===== */

static int is_added_token(const char *s, size_t len)
{
    for (int i = 0; i < ENG_MK_N_ADDED; i++)
        if (strlen(eng_mk_added_tokens[i]) == len && !memcmp(eng_mk_added_tokens[i], s, len)) return 1;
    return 0;
}

/* Replace every (a,b) in the words that hold it by n, adjusting the counts
 * of the neighbouring pairs (left-to-right, as BPE merges apply). */
static int apply_merge(eng_mk_bpe *t, int32_t pi, int32_t n)
{
    int32_t a = t->pairs[pi].a, b = t->pairs[pi].b;
    uint32_t *list = t->pairs[pi].words;   /* stable: no pair touched below equals (a,b) */
    size_t nlist = t->pairs[pi].nw;
    for (size_t k = 0; k < nlist; k++) {
        uint32_t w = list[k];
        if (k > 0 && list[k - 1] == w) continue;
        int32_t *s = t->syms + t->words[w].off;
        uint32_t len = t->words[w].len, o = 0;
        int64_t c = t->words[w].count;
        int rc = 0;
        for (uint32_t r = 0; r < len && !rc; ) {
            if (r + 1 < len && s[r] == a && s[r + 1] == b) {
                if (o > 0) {
                    rc = pair_add(t, s[o - 1], a, -c, w);
                    if (!rc) rc = pair_add(t, s[o - 1], n, c, w);
                }
                if (r + 2 < len && !rc) {
                    rc = pair_add(t, b, s[r + 2], -c, w);
                    if (!rc) rc = pair_add(t, n, s[r + 2], c, w);
                }
                s[o++] = n;
                r += 2;
            } else {
                s[o++] = s[r++];
            }
        }
        if (rc) return rc;
        t->words[w].len = o;
    }
    mk_pair *p = &t->pairs[pi];
    p->count = 0;
    p->merged = n;
    free(p->words);
    p->words = NULL;
    p->nw = p->capw = 0;
    return flush_dirty(t);
}

/* Pop pairs until one can be merged; merge it. 1: merged, 0: no pair left. */
static int merge_once(eng_mk_bpe *t, pl_buf *scratch)
{
    while (t->n_heap) {
        mk_heap_ent e = heap_pop(t);
        mk_pair *p = &t->pairs[e.pair];
        if (e.count != p->count || p->banned || p->merged >= 0 || p->count <= 0) continue;
        size_t la, lb;
        const char *sa = tok_str(t, p->a, &la), *sb = tok_str(t, p->b, &lb);
        pl_buf_reset(scratch);
        pl_buf_append(scratch, sa, la);
        pl_buf_append(scratch, sb, lb);
        if (!pl_buf_ok(scratch)) return PL_ERR_NOMEM;
        if (pl_strmap_get(t->tok_ids, scratch->data, scratch->len) || is_added_token(scratch->data, scratch->len)) {
            p->banned = 1;
            continue;
        }
        int32_t n = (int32_t)t->n_tok;
        int rc = tok_add(t, scratch->data, scratch->len);
        if (!rc) rc = apply_merge(t, e.pair, n);
        return rc ? rc : 1;
    }
    return 0;
}

/* ===== synthetic text: character Markov chains of order 1 to 3 ===== */

/* Each next character is drawn from the chain of a randomly chosen order:
 * order 3 keeps the corpus's word shapes, orders 2 and 1 make the new
 * character sequences that new pairs come from. With order 3 alone the
 * chain mostly re-spells corpus words and a large vocabulary would need
 * hundreds of MB of text. Percentages of draws per order: */
static const int ORDER_PCT[MARKOV_ORDER] = { 10, 30, 60 };    /* orders 1, 2, 3 */

typedef struct mk_markov {
    uint32_t *cps;                     /* the corpus as code points */
    size_t    n;
    /* per order k (index k-1): every context of k code points, sorted, and
     * the position of the code point that follows it */
    uint64_t *idx[MARKOV_ORDER];
    uint32_t *next[MARKOV_ORDER];
    size_t    n_idx;
    uint64_t  rng;
    uint32_t  ctx[MARKOV_ORDER];       /* the last code points generated */
} mk_markov;

static uint64_t rng_next(uint64_t *s)      /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Up to three 21-bit code points pack into 63 bits: contexts compare exactly. */
static uint64_t ctx_pack(const uint32_t *c, int k)
{
    uint64_t v = 0;
    for (int i = 0; i < k; i++) v = (v << 21) | c[i];
    return v;
}

static size_t utf8_decode(const uint8_t *s, size_t len, uint32_t *cp)
{
    uint8_t c = s[0];
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n > len) { *cp = 0xFFFD; return 1; }
    uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t i = 1; i < n; i++) v = (v << 6) | (s[i] & 0x3F);
    *cp = v;
    return n;
}

/* qsort has no context argument; training is single-threaded. */
static const uint32_t *sort_cps;
static int sort_k;
static int cmp_ctx(const void *x, const void *y)
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    uint64_t a = ctx_pack(sort_cps + i, sort_k), b = ctx_pack(sort_cps + j, sort_k);
    if (a != b) return a < b ? -1 : 1;
    return i < j ? -1 : i > j;           /* total order: qsort stays deterministic */
}

static void markov_free(mk_markov *m)
{
    free(m->cps);
    for (int k = 0; k < MARKOV_ORDER; k++) { free(m->idx[k]); free(m->next[k]); }
    memset(m, 0, sizeof *m);
}

static void markov_restart(mk_markov *m)
{
    size_t at = rng_next(&m->rng) % (m->n - MARKOV_ORDER);
    memcpy(m->ctx, m->cps + at, sizeof m->ctx);
}

static int markov_init(mk_markov *m, const char *text, size_t len)
{
    memset(m, 0, sizeof *m);
    m->cps = malloc((len + 1) * sizeof *m->cps);
    if (!m->cps) return PL_ERR_NOMEM;
    for (size_t i = 0; i < len; ) i += utf8_decode((const uint8_t *)text + i, len - i, &m->cps[m->n++]);
    if (m->n <= MARKOV_ORDER + 1) { markov_free(m); return PL_ERR_INVALID; }
    /* every order indexes the same positions: contexts ending before the
     * last code point, starting at least MARKOV_ORDER in */
    m->n_idx = m->n - MARKOV_ORDER;
    for (int k = 1; k <= MARKOV_ORDER; k++) {
        uint32_t *nx = m->next[k - 1] = malloc(m->n_idx * sizeof *nx);
        uint64_t *ix = m->idx[k - 1] = malloc(m->n_idx * sizeof *ix);
        if (!nx || !ix) { markov_free(m); return PL_ERR_NOMEM; }
        for (size_t i = 0; i < m->n_idx; i++) nx[i] = (uint32_t)(i + MARKOV_ORDER - k);
        sort_cps = m->cps;
        sort_k = k;
        qsort(nx, m->n_idx, sizeof *nx, cmp_ctx);
        sort_cps = NULL;
        for (size_t i = 0; i < m->n_idx; i++) {
            ix[i] = ctx_pack(m->cps + nx[i], k);
            nx[i] += (uint32_t)k;
        }
    }
    m->rng = TRAIN_SEED;
    markov_restart(m);
    return 0;
}

/* Append about `bytes` bytes of generated text to out: each next character
 * is the one following a uniformly chosen occurrence of the current context
 * (of the chosen order), i.e. drawn with its corpus frequency. */
static void markov_generate(mk_markov *m, size_t bytes, pl_buf *out)
{
    size_t start = out->len;
    while (out->len - start < bytes && pl_buf_ok(out)) {
        int pct = (int)(rng_next(&m->rng) % 100), k = 1;
        for (int acc = ORDER_PCT[0]; pct >= acc && k < MARKOV_ORDER; acc += ORDER_PCT[k++]) {}
        const uint64_t *ix = m->idx[k - 1];
        uint64_t key = ctx_pack(m->ctx + MARKOV_ORDER - k, k);
        size_t lo = 0, hi = m->n_idx;
        while (lo < hi) { size_t mid = (lo + hi) / 2; if (ix[mid] < key) lo = mid + 1; else hi = mid; }
        size_t end = lo;
        while (end < m->n_idx && ix[end] == key) end++;
        if (end == lo) { markov_restart(m); continue; }     /* the context ends the corpus */
        uint32_t cp = m->cps[m->next[k - 1][lo + rng_next(&m->rng) % (end - lo)]];
        char enc[4];
        pl_buf_append(out, enc, pl_utf8_encode(cp, enc));
        memmove(m->ctx, m->ctx + 1, (MARKOV_ORDER - 1) * sizeof *m->ctx);
        m->ctx[MARKOV_ORDER - 1] = cp;
    }
}

/* ===== training ===== */

void eng_mk_bpe_free(eng_mk_bpe *t)
{
    if (!t) return;
    free(t->toks);
    pl_buf_free(&t->tok_bytes);
    pl_strmap_free(t->tok_ids, NULL);
    free(t->words); free(t->syms);
    pl_strmap_free(t->word_ids, NULL);
    for (size_t i = 0; i < t->n_pairs; i++) free(t->pairs[i].words);
    free(t->pairs); free(t->pm_keys); free(t->pm_vals); free(t->dirty); free(t->heap);
    pcre2_match_data_free(t->md);
    pcre2_code_free(t->re);
    free(t);
}

void eng_mk_bpe_get_stats(const eng_mk_bpe *t, eng_mk_bpe_stats *st)
{
    *st = t->stats;
    st->n_merges = (int)t->n_tok - 256;
    st->n_words = t->n_words;
}

static int train(eng_mk_bpe *t, const char *text, size_t len, char *err, size_t errlen)
{
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if (tok_add(t, &c, 1)) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    int rc = pretok_init(t, err, errlen);
    if (!rc) rc = count_text(t, text, len, err, errlen);
    if (!rc && flush_dirty(t)) rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    if (rc) return rc;
    t->stats.corpus_bytes = len;

    pl_buf scratch, synth;
    pl_buf_init(&scratch);
    pl_buf_init(&synth);
    mk_markov mk = {0};
    int have_markov = 0, stalls = 0;
    while (!rc && (int)t->n_tok < t->target) {
        int m = merge_once(t, &scratch);
        if (m < 0) { rc = pl_seterr(err, errlen, m, "out of memory while training"); break; }
        if (m == 1) { stalls = 0; continue; }
        /* The text has no mergeable pair left: feed it more. */
        if (!have_markov) {
            int mr = markov_init(&mk, text, len);
            if (mr) { rc = pl_seterr(err, errlen, mr, "corpus too small for synthetic text"); break; }
            have_markov = 1;
        }
        if (++stalls > SYNTH_MAX_STALLS) {
            rc = pl_seterr(err, errlen, PL_ERR_INVALID,
                           "training text too poor: no new pair in %d synthetic chunks (%d of %d tokens)",
                           SYNTH_MAX_STALLS, (int)t->n_tok, t->target);
            break;
        }
        pl_buf_reset(&synth);
        markov_generate(&mk, SYNTH_CHUNK, &synth);
        if (!pl_buf_ok(&synth)) { rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory"); break; }
        t->stats.synthetic_bytes += synth.len;
        rc = count_text(t, synth.data, synth.len, err, errlen);
        if (!rc && flush_dirty(t)) rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    if (have_markov) markov_free(&mk);
    pl_buf_free(&scratch);
    pl_buf_free(&synth);
    return rc;
}

int eng_mk_bpe_train(eng_mk_bpe **out, int base_vocab, const char *text, size_t len,
                     char *err, size_t errlen)
{
    *out = NULL;
    if (base_vocab < ENG_MK_MIN_VOCAB || base_vocab > ENG_MK_MAX_VOCAB)
        return pl_seterr(err, errlen, PL_ERR_RANGE, "base vocabulary %d outside [%d, %d]",
                         base_vocab, ENG_MK_MIN_VOCAB, ENG_MK_MAX_VOCAB);
    if (len > ((size_t)1 << 30))
        return pl_seterr(err, errlen, PL_ERR_RANGE, "training text of %zu bytes is too large", len);
    eng_mk_bpe *t = calloc(1, sizeof *t);
    if (!t) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    t->target = base_vocab;
    pl_buf_init(&t->tok_bytes);
    if (pl_strmap_new(&t->tok_ids) || pl_strmap_new(&t->word_ids)) {
        eng_mk_bpe_free(t);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    }
    int rc = train(t, text, len, err, errlen);
    if (rc) { eng_mk_bpe_free(t); return rc; }
    *out = t;
    return 0;
}

/* ===== tokenizer.json ===== */

/* GPT-2's ByteLevel alphabet: printable Latin-1 bytes stand for themselves,
 * the other 68 bytes map in order to U+0100 upwards. */
static uint32_t byte_level_cp(uint8_t b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    uint32_t k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) k++;
    return 256 + k;
}

static void put_token(pl_buf *out, const eng_mk_bpe *t, int32_t id, pl_buf *scratch)
{
    size_t len;
    const char *s = tok_str(t, id, &len);
    pl_buf_reset(scratch);
    for (size_t i = 0; i < len; i++) {
        char enc[4];
        pl_buf_append(scratch, enc, pl_utf8_encode(byte_level_cp((uint8_t)s[i]), enc));
    }
    pl_pyjson_write_string(out, scratch->data, scratch->len, 0);
}

static void put_added_token(pl_buf *out, int id, int off)
{
    pl_buf_printf(out, "{\"id\": %d, \"content\": ", id);
    pl_pyjson_write_string(out, eng_mk_added_tokens[off], strlen(eng_mk_added_tokens[off]), 0);
    pl_buf_printf(out, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                  "\"normalized\": false, \"special\": %s}", off < ENG_MK_N_SPECIAL ? "true" : "false");
}

int eng_mk_tokenizer_json(const eng_mk_bpe *t, pl_buf *out)
{
    pl_buf scratch;
    pl_buf_init(&scratch);
    pl_buf_puts(out, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                     "  \"added_tokens\": [\n");
    for (int i = 0; i < ENG_MK_N_ADDED; i++) {
        pl_buf_puts(out, "    ");
        put_added_token(out, (int)t->n_tok + i, i);
        pl_buf_puts(out, i + 1 < ENG_MK_N_ADDED ? ",\n" : "\n");
    }
    pl_buf_puts(out, "  ],\n  \"normalizer\": null,\n"
                     "  \"pre_tokenizer\": {\n    \"type\": \"Sequence\",\n    \"pretokenizers\": [\n"
                     "      {\n        \"type\": \"Split\",\n        \"pattern\": {\n          \"Regex\": ");
    pl_pyjson_write_string(out, GLM_REGEX, strlen(GLM_REGEX), 0);
    pl_buf_puts(out, "\n        },\n        \"behavior\": \"Isolated\",\n        \"invert\": false\n      },\n"
                     "      {\n        \"type\": \"ByteLevel\",\n        \"add_prefix_space\": false,\n"
                     "        \"trim_offsets\": true,\n        \"use_regex\": false\n      }\n    ]\n  },\n"
                     "  \"post_processor\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
                     "    \"trim_offsets\": false,\n    \"use_regex\": true\n  },\n"
                     "  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
                     "    \"trim_offsets\": true,\n    \"use_regex\": true\n  },\n"
                     "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
                     "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
                     "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": true,\n"
                     "    \"vocab\": {\n");
    for (size_t id = 0; id < t->n_tok; id++) {
        pl_buf_puts(out, "      ");
        put_token(out, t, (int32_t)id, &scratch);
        pl_buf_printf(out, ": %zu%s", id, id + 1 < t->n_tok ? ",\n" : "\n");
    }
    pl_buf_puts(out, "    },\n    \"merges\": [\n");
    /* Token 256 + r was made by merge r: walk the pairs in token order. */
    int32_t *by_tok = calloc(t->n_tok, sizeof *by_tok);
    if (!by_tok) { pl_buf_free(&scratch); return PL_ERR_NOMEM; }
    for (size_t i = 0; i < t->n_pairs; i++)
        if (t->pairs[i].merged >= 0) by_tok[t->pairs[i].merged] = (int32_t)i;
    for (size_t id = 256; id < t->n_tok; id++) {
        const mk_pair *p = &t->pairs[by_tok[id]];
        pl_buf_puts(out, "      [");
        put_token(out, t, p->a, &scratch);
        pl_buf_puts(out, ", ");
        put_token(out, t, p->b, &scratch);
        pl_buf_puts(out, id + 1 < t->n_tok ? "],\n" : "]\n");
    }
    pl_buf_puts(out, "    ]\n  }\n}\n");
    free(by_tok);
    int ok = pl_buf_ok(&scratch) && pl_buf_ok(out);
    pl_buf_free(&scratch);
    return ok ? 0 : PL_ERR_NOMEM;
}

/* ===== tokenizer_config.json ===== */

/* The GLM-4.7-Flash / GLM-5 form (tokenizer_class PreTrainedTokenizer,
 * added_tokens_decoder, additional_special_tokens = the 18 specials), keys
 * sorted and indented as transformers' save_pretrained writes them. The
 * chat template lives in chat_template.jinja, as in GLM's repos. */
int eng_mk_tokenizer_config_json(int base_vocab, pl_buf *out)
{
    pl_buf_puts(out, "{\n  \"added_tokens_decoder\": {\n");
    for (int i = 0; i < ENG_MK_N_ADDED; i++) {
        pl_buf_printf(out, "    \"%d\": {\n      \"content\": ", base_vocab + i);
        pl_pyjson_write_string(out, eng_mk_added_tokens[i], strlen(eng_mk_added_tokens[i]), 0);
        pl_buf_printf(out, ",\n      \"lstrip\": false,\n      \"normalized\": false,\n      \"rstrip\": false,\n"
                      "      \"single_word\": false,\n      \"special\": %s\n    }%s\n",
                      i < ENG_MK_N_SPECIAL ? "true" : "false", i + 1 < ENG_MK_N_ADDED ? "," : "");
    }
    pl_buf_puts(out, "  },\n  \"additional_special_tokens\": [\n");
    for (int i = 0; i < ENG_MK_N_SPECIAL; i++) {
        pl_buf_puts(out, "    ");
        pl_pyjson_write_string(out, eng_mk_added_tokens[i], strlen(eng_mk_added_tokens[i]), 0);
        pl_buf_puts(out, i + 1 < ENG_MK_N_SPECIAL ? ",\n" : "\n");
    }
    pl_buf_puts(out, "  ],\n  \"clean_up_tokenization_spaces\": false,\n  \"do_lower_case\": false,\n"
                     "  \"eos_token\": \"<|endoftext|>\",\n  \"extra_special_tokens\": {},\n"
                     "  \"model_max_length\": 128000,\n  \"pad_token\": \"<|endoftext|>\",\n"
                     "  \"padding_side\": \"left\",\n  \"remove_space\": false,\n"
                     "  \"tokenizer_class\": \"PreTrainedTokenizer\"\n}\n");
    return pl_buf_ok(out) ? 0 : PL_ERR_NOMEM;
}

/* ===== writing the model directory's text files ===== */

static int write_file(const char *dir, const char *name, const char *data, size_t len,
                      char *err, size_t errlen)
{
    char path[4096], tmp[4200];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return pl_seterr(err, errlen, PL_ERR_RANGE, "path too long: %s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return pl_seterr(err, errlen, PL_ERR_IO, "%s: %s", tmp, strerror(errno));
    int bad = fwrite(data, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return pl_seterr(err, errlen, PL_ERR_IO, "%s: %s", path, strerror(e));
    }
    return 0;
}

int eng_mk_text_files_write(const char *dir, int base_vocab, enum eng_arch arch, char *err, size_t errlen)
{
    size_t clen, tlen;
    const char *corpus = eng_mk_corpus(&clen);
    /* GLM-4.7-Flash's own repo ships GLM-4.7's template: its format, not GLM-5.2's */
    const char *tpl = arch != ENG_ARCH_GLM_MOE_DSA ? eng_mk_chat_template_glm47(&tlen) : eng_mk_chat_template(&tlen);
    eng_mk_bpe *bpe;
    int rc = eng_mk_bpe_train(&bpe, base_vocab, corpus, clen, err, errlen);
    if (rc) return rc;
    pl_buf b;
    pl_buf_init(&b);
    rc = eng_mk_tokenizer_json(bpe, &b);
    eng_mk_bpe_free(bpe);
    if (rc) rc = pl_seterr(err, errlen, rc, "out of memory");
    if (!rc) rc = write_file(dir, "tokenizer.json", b.data, b.len, err, errlen);
    pl_buf_reset(&b);
    if (!rc && (rc = eng_mk_tokenizer_config_json(base_vocab, &b)))
        rc = pl_seterr(err, errlen, rc, "out of memory");
    if (!rc) rc = write_file(dir, "tokenizer_config.json", b.data, b.len, err, errlen);
    if (!rc) rc = write_file(dir, "chat_template.jinja", tpl, tlen, err, errlen);
    pl_buf_free(&b);
    return rc;
}
