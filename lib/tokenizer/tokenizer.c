/* tokenizer.c — encode and decode for a loaded pl_tokenizer (see
 * tokenizer.h for the contract, tokenizer_load.c for how tables are built).
 *
 * Encode follows HF tokenizers' pipeline step by step:
 *   1. added tokens with normalized:false are cut out of the raw text
 *      (leftmost-longest, lstrip/rstrip);
 *   2. each remaining piece is normalized, then added tokens with
 *      normalized:true are cut out of it;
 *   3. each remaining piece runs through the pre-tokenizer steps (regex
 *      splits, digits, ByteLevel prefix space), recursively, one piece at a
 *      time — no intermediate lists;
 *   4. each final pre-token goes to BPE as raw bytes (the ByteLevel alphabet
 *      is a bijection, so working on bytes is the same as HF working on
 *      "Ġ"-spelled strings).
 * The handle is read-only; all scratch lives in a per-call `enc`. */
#include "tokenizer_int.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ===== helpers: UTF-8, Unicode classes, ByteLevel alphabet ===== */

size_t tk_utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return i;
        if (n - i <= k) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return i;
        i += k + 1;
    }
    return n;
}

int tk_is_white_space(uint32_t cp)
{
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Rust char::is_numeric: general categories Nd, Nl, No. */
static int is_numeric(uint32_t cp)
{
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes stand for themselves; the
 * 68 others (0-32, 127-160, 173) map in order to U+0100..U+0143. */
static int byte_is_printable(uint32_t b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

int tk_cp_to_byte(uint32_t cp)
{
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(127 + cp - (256 + 33));
    if (cp == 256 + 67) return 173;
    return -1;
}

int tk_string_to_bytes(const uint8_t *s, size_t n, pl_buf *out)
{
    pl_buf_reset(out);
    if (pl_buf_reserve(out, n)) return 0;
    /* at most one byte per character: write straight into the buffer */
    uint8_t *o = (uint8_t *)out->data;
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp = s[i];
        size_t len = 1;
        if (cp >= 0x80) len = tk_utf8_next(s + i, n - i, &cp);
        int b = tk_cp_to_byte(cp);
        if (b < 0) {
            memcpy(o, s, n);
            out->len = n;
            out->data[n] = 0;
            return 0;
        }
        o[k++] = (uint8_t)b;
        i += len;
    }
    out->len = k;
    out->data[k] = 0;
    return 1;
}

static int all_ascii(const uint8_t *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) return 0;
    }
    for (; i < n; i++) if (s[i] & 0x80) return 0;
    return 1;
}

int tk_normalize(const pl_tokenizer *tok, const uint8_t *s, size_t n,
                 const uint8_t **out, size_t *outlen, uint8_t **owned)
{
    *out = s;
    *outlen = n;
    *owned = NULL;
    /* ASCII is invariant under NFC/NFD/NFKC/NFKD */
    if (!tok->n_norms || n == 0 || all_ascii(s, n)) return 0;
    for (int i = 0; i < tok->n_norms; i++) {
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map(*out, (utf8proc_ssize_t)*outlen, &dst, (utf8proc_option_t)tok->norms[i]);
        if (r < 0) {
            free(*owned);
            *owned = NULL;
            return r == UTF8PROC_ERROR_NOMEM ? PL_ERR_NOMEM : PL_ERR_INVALID;
        }
        free(*owned);
        *owned = dst;
        *out = dst;
        *outlen = (size_t)r;
    }
    return 0;
}

/* ===== encode context ===== */

typedef struct bsym {             /* a BPE symbol (HF Word's Symbol) */
    int32_t id;
    int32_t prev, next;
    int32_t alive;
} bsym;

typedef struct bmerge {           /* a heap entry (HF Merge) */
    uint32_t rank;
    uint32_t pos;
    int32_t  merged;
    int32_t  left, right;         /* the pair when pushed: a cheap staleness test */
} bmerge;

typedef struct enc {
    const pl_tokenizer *tok;
    pl_tokids          *out;
    pcre2_match_data   *md;
    uint8_t            *pfx;      /* prefix-space copy of a piece */
    size_t              pfx_cap;
    bsym               *syms;
    bmerge             *heap;
    size_t              syms_cap, heap_cap;
    char               *err;
    size_t              errlen;
    int64_t             deadline;  /* monotonic ms: the encode's time budget */
} enc;

static int push_id(enc *e, int32_t id)
{
    pl_tokids *v = e->out;
    if (v->len == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 256;
        int32_t *n = realloc(v->ids, nc * sizeof *n);
        if (!n) return PL_ERR_NOMEM;
        v->ids = n;
        v->cap = nc;
    }
    v->ids[v->len++] = id;
    return 0;
}

/* ===== BPE ===== */

static inline int merge_get(const pl_tokenizer *tok, int32_t a, int32_t b, uint32_t *rank, int32_t *merged)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t j = tk_mix64(key) & tok->merges_mask;
    for (;;) {
        const tk_mslot *s = &tok->merges[j];
        if (s->key == key) { *rank = s->rank; *merged = s->merged; return 1; }
        if (s->key == TK_MKEY_EMPTY) return 0;
        j = (j + 1) & tok->merges_mask;
    }
}

/* min-heap on (rank, pos), as HF's BinaryHeap<Merge> with reversed Ord */
static inline int bm_less(const bmerge *x, const bmerge *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(bmerge *h, size_t *n, bmerge m)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bm_less(&m, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static bmerge heap_pop(bmerge *h, size_t *n)
{
    bmerge top = h[0];
    bmerge last = h[--(*n)];
    size_t i = 0, len = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= len) break;
        if (c + 1 < len && bm_less(&h[c + 1], &h[c])) c++;
        if (!bm_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (len) h[i] = last;
    return top;
}

static int ensure_bpe_scratch(enc *e, size_t n)
{
    if (n > e->syms_cap) {
        bsym *s = realloc(e->syms, n * sizeof *s);
        if (!s) return PL_ERR_NOMEM;
        e->syms = s;
        e->syms_cap = n;
    }
    /* each merge pushes at most two new pairs: n-1 initial + 2 per merge */
    size_t hn = 3 * n + 4;
    if (hn > e->heap_cap) {
        bmerge *h = realloc(e->heap, hn * sizeof *h);
        if (!h) return PL_ERR_NOMEM;
        e->heap = h;
        e->heap_cap = hn;
    }
    return 0;
}

/* HF BPE::merge_word + Word::merge_all, on bytes. */
static int bpe_merge(enc *e, const uint8_t *s, size_t n)
{
    const pl_tokenizer *tok = e->tok;
    if (ensure_bpe_scratch(e, n)) return PL_ERR_NOMEM;
    bsym *sy = e->syms;
    bmerge *h = e->heap;
    size_t ns = 0, nh = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_id[s[i]];
        if (id < 0) continue;           /* no unk token: HF drops the character */
        sy[ns] = (bsym){id, ns ? (int32_t)ns - 1 : -1, -1, 1};
        if (ns) sy[ns - 1].next = (int32_t)ns;
        ns++;
    }
    /* the initial pairs are independent: touch all their slots first so the
     * cache misses overlap (long pieces, e.g. CJK runs, are miss-bound) */
    for (size_t i = 0; i + 1 < ns; i++) {
        uint64_t key = (uint64_t)(uint32_t)sy[i].id << 32 | (uint32_t)sy[i + 1].id;
        __builtin_prefetch(&tok->merges[tk_mix64(key) & tok->merges_mask]);
    }
    for (size_t i = 0; i + 1 < ns; i++) {
        uint32_t rank;
        int32_t m;
        if (merge_get(tok, sy[i].id, sy[i + 1].id, &rank, &m))
            heap_push(h, &nh, (bmerge){rank, (uint32_t)i, m, sy[i].id, sy[i + 1].id});
    }
    while (nh) {
        bmerge top = heap_pop(h, &nh);
        bsym *cur = &sy[top.pos];
        if (!cur->alive || cur->next < 0) continue;
        bsym *right = &sy[cur->next];
        uint32_t rank;
        int32_t m;
        /* stale entry: HF skips it when the pair now at pos does not merge
         * into the same token. Unchanged pair: valid without a lookup. */
        if ((cur->id != top.left || right->id != top.right) &&
            (!merge_get(tok, cur->id, right->id, &rank, &m) || m != top.merged))
            continue;
        cur->id = top.merged;
        cur->next = right->next;
        right->alive = 0;
        if (right->next >= 0) sy[right->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0 && merge_get(tok, sy[cur->prev].id, cur->id, &rank, &m))
            heap_push(h, &nh, (bmerge){rank, (uint32_t)cur->prev, m, sy[cur->prev].id, cur->id});
        if (cur->next >= 0 && merge_get(tok, cur->id, sy[cur->next].id, &rank, &m))
            heap_push(h, &nh, (bmerge){rank, top.pos, m, cur->id, sy[cur->next].id});
    }
    for (size_t i = 0; i < ns; i++)
        if (sy[i].alive && push_id(e, sy[i].id)) return PL_ERR_NOMEM;
    return 0;
}

/* ===== BPE cache (seqlock entries, see tokenizer_int.h) ===== */

static void key_words(const uint8_t *s, size_t n, uint64_t w[TK_CACHE_KEY / 8])
{
    uint8_t k[TK_CACHE_KEY] = {0};
    memcpy(k, s, n);
    memcpy(w, k, sizeof k);
}

/* Append the cached ids of s[0..n) to out; 1 on a hit. */
static int cache_get(enc *e, tk_centry *c, const uint8_t *s, size_t n)
{
    uint64_t w[TK_CACHE_KEY / 8];
    uint32_t ids[TK_CACHE_IDS];
    uint32_t s1 = atomic_load_explicit(&c->seq, memory_order_acquire);
    if (s1 & 1) return 0;
    uint32_t meta = atomic_load_explicit(&c->meta, memory_order_relaxed);
    if ((meta & 0xFF) != n) return 0;
    key_words(s, n, w);
    for (int i = 0; i < TK_CACHE_KEY / 8; i++)
        if (atomic_load_explicit(&c->key[i], memory_order_relaxed) != w[i]) return 0;
    uint32_t nid = meta >> 8;
    for (uint32_t i = 0; i < nid; i++) ids[i] = atomic_load_explicit(&c->ids[i], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&c->seq, memory_order_relaxed) != s1) return 0;
    for (uint32_t i = 0; i < nid; i++)
        if (push_id(e, (int32_t)ids[i])) return -1;
    return 1;
}

static void cache_put(tk_centry *c, const uint8_t *s, size_t n, const int32_t *ids, size_t nid)
{
    uint32_t s0 = atomic_load_explicit(&c->seq, memory_order_relaxed);
    if ((s0 & 1) || !atomic_compare_exchange_strong_explicit(&c->seq, &s0, s0 + 1, memory_order_acquire,
                                                             memory_order_relaxed))
        return;                                  /* another writer has it: skip */
    atomic_thread_fence(memory_order_release);
    uint64_t w[TK_CACHE_KEY / 8];
    key_words(s, n, w);
    atomic_store_explicit(&c->meta, (uint32_t)n | (uint32_t)nid << 8, memory_order_relaxed);
    for (int i = 0; i < TK_CACHE_KEY / 8; i++) atomic_store_explicit(&c->key[i], w[i], memory_order_relaxed);
    for (size_t i = 0; i < nid; i++) atomic_store_explicit(&c->ids[i], (uint32_t)ids[i], memory_order_relaxed);
    atomic_store_explicit(&c->seq, s0 + 2, memory_order_release);
}

/* HF BPE::tokenize for one pre-token. */
static int bpe(enc *e, const uint8_t *s, size_t n)
{
    const pl_tokenizer *tok = e->tok;
    if (n == 1) {
        int32_t id = tok->byte_id[s[0]];
        return id >= 0 ? push_id(e, id) : 0;
    }
    if (tok->ignore_merges) {
        int32_t id = tk_htab_lookup(tok, &tok->vocab, s, n);
        if (id >= 0) return push_id(e, id);
    }
    tk_centry *c = NULL;
    if (n <= TK_CACHE_KEY && tok->cache) {
        c = &tok->cache[tk_hash_bytes(s, n) & (TK_CACHE_ENTRIES - 1)];
        int hit = cache_get(e, c, s, n);
        if (hit) return hit < 0 ? PL_ERR_NOMEM : 0;
    }
    size_t before = e->out->len;
    int rc = bpe_merge(e, s, n);
    if (!rc && c && e->out->len - before <= TK_CACHE_IDS)
        cache_put(c, s, n, e->out->ids + before, e->out->len - before);
    return rc;
}

/* ===== pre-tokenizer steps ===== */

static int run_steps(enc *e, int k, const uint8_t *s, size_t n);

/* The running encode's deadline, for the callout every compiled pattern
 * starts with: the match context is shared by every thread using the
 * tokenizer, so per-encode data cannot travel in it. */
static _Thread_local int64_t tk_deadline_ms;

static int64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);   /* a few ns: read at every start position */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every 16th start position reads the clock: the match limit keeps each
 * start under about 0.1 s, so a budget overrun is noticed within ~2 s. */
static _Thread_local unsigned tk_callouts;

int tk_regex_callout(pcre2_callout_block *cb, void *ud)
{
    (void)cb; (void)ud;
    if ((++tk_callouts & 15) || !tk_deadline_ms) return 0;
    return coarse_ms() > tk_deadline_ms ? PCRE2_ERROR_CALLOUT : 0;
}

void tk_set_regex_limits(pl_tokenizer *tok, uint32_t match_limit, uint32_t depth_limit)
{
    pcre2_set_callout(tok->mctx, tk_regex_callout, NULL);
    pcre2_set_match_limit(tok->mctx, match_limit);
    pcre2_set_depth_limit(tok->mctx, depth_limit);
    pcre2_set_heap_limit(tok->mctx, TK_HEAP_LIMIT_KIB);
}

/* A limit hit is this input's fault (the request fails, the stage goes on);
 * anything else would be a bug. */
static int regex_fail(enc *e, int rc)
{
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
        return pl_seterr(e->err, e->errlen, PL_ERR_RANGE, "the pre-tokenizer regex gave up on this input (%s)",
                         (const char *)msg);
    return pl_seterr(e->err, e->errlen, PL_ERR_INTERNAL, "pre-tokenizer regex failed: %s", (const char *)msg);
}

/* Next match at or after `start` in s[0..n): 1 found, 0 none, <0 error. */
static int rx_find(enc *e, const tk_step *st, const uint8_t *s, size_t n, size_t start, size_t *ms, size_t *me)
{
    int rc;
    /* The match limit bounds the work at one start position; a hostile
     * pattern can still take just under it at every position, so the whole
     * encode has a time budget, checked by the pattern's callout. */
    tk_deadline_ms = e->deadline;
    if (st->jit) {
        rc = pcre2_jit_match(st->re, s, n, start, 0, e->md, e->tok->mctx);
        /* the JIT's small default stack ran out: the interpreter keeps its
         * frames on the heap and gives the same answer */
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(st->re, s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, e->md, e->tok->mctx);
    } else {
        rc = pcre2_match(st->re, s, n, start, PCRE2_NO_UTF_CHECK, e->md, e->tok->mctx);
    }
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc == PCRE2_ERROR_CALLOUT)
        return pl_seterr(e->err, e->errlen, PL_ERR_RANGE, "the pre-tokenizer ran past its time budget (%lld ms + %d ms per MiB) on this input",
                         (long long)e->tok->encode_budget_ms, TK_ENCODE_MS_PER_MIB);
    if (rc < 0) return regex_fail(e, rc);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

static size_t utf8_len_at(const uint8_t *s, size_t n, size_t i)
{
    uint32_t cp;
    return i < n ? tk_utf8_next(s + i, n - i, &cp) : 1;
}

/* Split Isolated: every match and every gap between matches is a piece.
 * Iteration follows the onig crate's find_iter (used by HF): an empty match
 * right where the previous match ended is skipped by advancing one char. */
static int step_split(enc *e, int k, const tk_step *st, const uint8_t *s, size_t n)
{
    size_t last_end = 0, prev = 0, ms = 0, me = 0;
    size_t last_match_end = (size_t)-1;
    int rc;
    while (last_end <= n) {
        rc = rx_find(e, st, s, n, last_end, &ms, &me);
        if (rc < 0) return rc;
        if (rc == 0) break;
        if (ms == me && last_match_end == me) {
            last_end += utf8_len_at(s, n, last_end);
            continue;
        }
        last_end = me;
        last_match_end = me;
        if (prev != ms && (rc = run_steps(e, k + 1, s + prev, ms - prev))) return rc;
        if ((rc = run_steps(e, k + 1, s + ms, me - ms))) return rc;
        prev = me;
    }
    if (prev != n) return run_steps(e, k + 1, s + prev, n - prev);
    return 0;
}

/* Digits: numeric characters (Nd, Nl, No) split off, one by one
 * (individual_digits) or as runs. */
static int step_digits(enc *e, int k, const tk_step *st, const uint8_t *s, size_t n)
{
    size_t i = 0, run = 0;
    int run_digit = -1, rc;
    while (i < n) {
        uint32_t cp;
        size_t len = tk_utf8_next(s + i, n - i, &cp);
        int d = is_numeric(cp);
        if (st->individual) {
            if (d) {
                if (i > run && (rc = run_steps(e, k + 1, s + run, i - run))) return rc;
                if ((rc = run_steps(e, k + 1, s + i, len))) return rc;
                run = i + len;
            }
        } else if (run_digit != d) {
            if (i > run && (rc = run_steps(e, k + 1, s + run, i - run))) return rc;
            run = i;
            run_digit = d;
        }
        i += len;
    }
    return n > run ? run_steps(e, k + 1, s + run, n - run) : 0;
}

static int step_prefix(enc *e, int k, const uint8_t *s, size_t n)
{
    if (s[0] == ' ') return run_steps(e, k + 1, s, n);
    if (n + 1 > e->pfx_cap) {
        size_t nc = n + 1 > 256 ? n + 1 : 256;
        uint8_t *p = realloc(e->pfx, nc);
        if (!p) return PL_ERR_NOMEM;
        e->pfx = p;
        e->pfx_cap = nc;
    }
    /* only one ByteLevel step exists, so pfx is not reused while the later
     * steps are still reading it */
    e->pfx[0] = ' ';
    memcpy(e->pfx + 1, s, n);
    return run_steps(e, k + 1, e->pfx, n + 1);
}

static int run_steps(enc *e, int k, const uint8_t *s, size_t n)
{
    if (n == 0) return 0;                  /* HF drops empty splits */
    const pl_tokenizer *tok = e->tok;
    if (k == tok->n_steps) return bpe(e, s, n);
    const tk_step *st = &tok->steps[k];
    switch (st->kind) {
    case TK_STEP_SPLIT: return step_split(e, k, st, s, n);
    case TK_STEP_DIGITS: return step_digits(e, k, st, s, n);
    case TK_STEP_PREFIX_SPACE: return step_prefix(e, k, s, n);
    }
    return PL_ERR_INTERNAL;
}

/* ===== added tokens ===== */

/* Length of the longest added token starting at s[p], 0 if none. */
static size_t trie_longest(const tk_trie *t, const uint8_t *s, size_t n, size_t p, int32_t *tokidx)
{
    int32_t node = t->root[s[p]];
    size_t best = 0, i = p;
    while (node >= 0) {
        const tk_tnode *nd = &t->nodes[node];
        i++;
        if (nd->tok >= 0) { best = i - p; *tokidx = nd->tok; }
        if (i >= n) break;
        int32_t c = nd->child;
        while (c >= 0 && t->nodes[c].byte != s[i]) c = t->nodes[c].sibling;
        node = c;
    }
    return best;
}

/* Start of the run of White_Space characters that ends at s[end]. */
static size_t ws_run_start(const uint8_t *s, size_t end)
{
    size_t i = end;
    while (i > 0) {
        size_t j = i - 1;
        while (j > 0 && (s[j] & 0xC0) == 0x80) j--;
        uint32_t cp;
        tk_utf8_next(s + j, i - j, &cp);
        if (!tk_is_white_space(cp)) break;
        i = j;
    }
    return i;
}

static size_t ws_run_len(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = tk_utf8_next(s + i, n - i, &cp);
        if (!tk_is_white_space(cp)) break;
        i += k;
    }
    return i;
}

typedef int (*gap_fn)(enc *e, const uint8_t *s, size_t n);

/* HF AddedVocabulary::find_matches over s[0..n): tokens become ids, the
 * text between them goes to gap(). */
static int split_added(enc *e, const tk_trie *t, const uint8_t *s, size_t n, gap_fn gap)
{
    const pl_tokenizer *tok = e->tok;
    size_t start_offset = 0, pos = 0;
    int rc;
    if (!t->n) return gap(e, s, n);
    while (pos < n) {
        size_t p = pos, m = 0;
        int32_t ti = -1;
        for (; p < n; p++) {
            if (t->root[s[p]] < 0) continue;
            if ((m = trie_longest(t, s, n, p, &ti))) break;
        }
        if (!m) break;
        const tk_added *a = &tok->added[ti];
        size_t start = p, stop = p + m;
        pos = stop;                        /* the matcher resumes after the match itself */
        if (a->lstrip) {
            size_t ns = ws_run_start(s, start);
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) stop += ws_run_len(s + stop, n - stop);
        if (start_offset < start && (rc = gap(e, s + start_offset, start - start_offset))) return rc;
        if ((rc = push_id(e, a->id))) return rc;
        start_offset = stop;
    }
    if (start_offset < n) return gap(e, s + start_offset, n - start_offset);
    return 0;
}

static int gap_pretokenize(enc *e, const uint8_t *s, size_t n)
{
    return run_steps(e, 0, s, n);
}

static int gap_normalize(enc *e, const uint8_t *s, size_t n)
{
    const uint8_t *ns;
    size_t nn;
    uint8_t *owned;
    int rc = tk_normalize(e->tok, s, n, &ns, &nn, &owned);
    if (rc) return rc == PL_ERR_NOMEM ? rc : pl_seterr(e->err, e->errlen, rc, "normalizer failed");
    rc = split_added(e, &e->tok->trie_norm, ns, nn, gap_pretokenize);
    free(owned);
    return rc;
}

/* ===== encode API ===== */

void pl_tokids_free(pl_tokids *v)
{
    free(v->ids);
    v->ids = NULL;
    v->len = v->cap = 0;
}

int pl_tokenizer_encode_ex(const pl_tokenizer *tok, const char *text, size_t len,
                           pl_tokids *out, char *err, size_t errlen)
{
    if (!tok || !out || (!text && len)) return pl_seterr(err, errlen, PL_ERR_INVALID, "bad arguments");
    size_t ok = tk_utf8_valid_prefix((const uint8_t *)text, len);
    if (ok != len) return pl_seterr(err, errlen, PL_ERR_INVALID, "text is not valid UTF-8 (byte %zu)", ok);
    size_t entry_len = out->len;
    if (len == 0) return 0;
    enc e = {.tok = tok, .out = out, .err = err, .errlen = errlen,
             .deadline = coarse_ms() + tok->encode_budget_ms + (int64_t)(len >> 20) * TK_ENCODE_MS_PER_MIB};
    int rc = 0;
    if (tok->n_steps) {
        e.md = pcre2_match_data_create(1, NULL);
        if (!e.md) rc = PL_ERR_NOMEM;
    }
    if (!rc) rc = split_added(&e, &tok->trie_raw, (const uint8_t *)text, len, gap_normalize);
    if (e.md) pcre2_match_data_free(e.md);
    free(e.pfx);
    free(e.syms);
    free(e.heap);
    if (rc) {
        out->len = entry_len;
        if (rc == PL_ERR_NOMEM) pl_seterr(err, errlen, rc, "out of memory while encoding");
    }
    return rc;
}

int pl_tokenizer_encode(const pl_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n_ids)
{
    pl_tokids v = {0};
    *ids = NULL;
    *n_ids = 0;
    int rc = pl_tokenizer_encode_ex(tok, text, len, &v, NULL, 0);
    if (rc) { pl_tokids_free(&v); return rc; }
    *ids = v.ids;
    *n_ids = v.len;
    return 0;
}

/* ===== decode and per-token API ===== */

static int id_known(const pl_tokenizer *tok, int32_t id)
{
    return tok && id >= 0 && id < tok->n_ids && (tok->id_flags[id] & TK_ID_PRESENT);
}

void pl_tokenizer_utf8_lossy(const uint8_t *s, size_t n, pl_buf *out)
{
    static const char REPL[] = "\xEF\xBF\xBD";
    size_t i = 0;
    while (i < n) {
        size_t ok = tk_utf8_valid_prefix(s + i, n - i);
        pl_buf_append(out, s + i, ok);
        i += ok;
        if (i >= n) break;
        /* one U+FFFD per maximal subpart of an ill-formed sequence */
        uint8_t c = s[i];
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else k = 0;
        size_t j = 1;
        if (k && j < n - i && s[i + j] >= lo && s[i + j] <= hi) {
            j++;
            while (j <= k && j < n - i && (s[i + j] & 0xC0) == 0x80) j++;
        }
        pl_buf_append(out, REPL, 3);
        i += j;
    }
}

int pl_tokenizer_decode(const pl_tokenizer *tok, const int32_t *ids, size_t n, int skip_special, pl_buf *out)
{
    for (size_t i = 0; i < n; i++)
        if (!id_known(tok, ids[i])) return PL_ERR_RANGE;
    pl_buf bytes;
    pl_buf_init(&bytes);
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (skip_special && (tok->id_flags[id] & TK_ID_SPECIAL)) continue;
        pl_buf_append(&bytes, tok->arena + tok->dec_off[id], tok->dec_len[id]);
    }
    int rc = pl_buf_ok(&bytes) ? 0 : PL_ERR_NOMEM;
    if (!rc) {
        pl_tokenizer_utf8_lossy((const uint8_t *)bytes.data, bytes.len, out);
        if (!pl_buf_ok(out)) rc = PL_ERR_NOMEM;
    }
    pl_buf_free(&bytes);
    return rc;
}

const uint8_t *pl_tokenizer_token_bytes(const pl_tokenizer *tok, int32_t id, size_t *len)
{
    if (!id_known(tok, id)) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = tok->dec_len[id];
    return tok->arena + tok->dec_off[id];
}

int pl_tokenizer_is_special(const pl_tokenizer *tok, int32_t id)
{
    return id_known(tok, id) && (tok->id_flags[id] & TK_ID_SPECIAL);
}

int pl_tokenizer_is_added(const pl_tokenizer *tok, int32_t id)
{
    return id_known(tok, id) && (tok->id_flags[id] & TK_ID_ADDED);
}

const char *pl_tokenizer_added_content(const pl_tokenizer *tok, int32_t id, size_t *len)
{
    *len = 0;
    if (!pl_tokenizer_is_added(tok, id)) return NULL;
    size_t lo = 0, hi = (size_t)tok->n_added;   /* first entry with added[..].id >= id */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tok->added[tok->added_by_id[mid]].id < id) lo = mid + 1;
        else hi = mid;
    }
    const tk_added *a = &tok->added[tok->added_by_id[lo]];
    *len = a->len;
    return (const char *)tok->arena + a->off;
}

int32_t pl_tokenizer_vocab_size(const pl_tokenizer *tok)
{
    return tok ? tok->n_ids : 0;
}

int32_t pl_tokenizer_model_vocab_size(const pl_tokenizer *tok)
{
    return tok ? (int32_t)tok->model_count : 0;
}

int pl_tokenizer_num_special_to_add(const pl_tokenizer *tok)
{
    return tok ? tok->num_special_to_add : 0;
}

int32_t pl_tokenizer_token_to_id(const pl_tokenizer *tok, const char *str, size_t len)
{
    if (!tok || (!str && len)) return PL_ERR_NOTFOUND;
    const uint8_t *s = (const uint8_t *)str;
    int32_t id = tk_htab_lookup(tok, &tok->added_str, s, len);
    if (id >= 0) return id;
    if (tk_utf8_valid_prefix(s, len) != len) return PL_ERR_NOTFOUND;
    pl_buf b;
    pl_buf_init(&b);
    int mapped = tk_string_to_bytes(s, len, &b);
    id = pl_buf_ok(&b) ? tk_htab_lookup(tok, mapped ? &tok->vocab : &tok->vocab_str,
                                        (const uint8_t *)(b.data ? b.data : ""), b.len) : -1;
    pl_buf_free(&b);
    return id >= 0 ? id : PL_ERR_NOTFOUND;
}
