/* tokenizer_int.h — internals shared by the tokenizer_*.c files. Not a
 * public header: callers use tokenizer.h.
 *
 * Layout of a loaded tokenizer:
 *   - every token's bytes live in one arena (tok->arena); tables hold offsets
 *   - the vocab is keyed by the token's RAW bytes (ByteLevel alphabet undone),
 *     so encode never builds the "Ġhello" spelling: pre-tokens are looked up
 *     and merged as the bytes they are
 *   - merges are a hash (left id, right id) -> (rank, merged id)
 *   - added tokens sit in two byte tries (raw / normalized matching) */
#ifndef PL_TOKENIZER_INT_H
#define PL_TOKENIZER_INT_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "pl.h"
#include "tokenizer.h"

/* Largest id space we accept (a guard against absurd ids in untrusted
 * files: per-id tables are allocated up front). */
#define TK_MAX_IDS (1 << 24)
/* Largest tokenizer.json we read (GLM's is 20 MB). */
#define TK_MAX_FILE ((size_t)1 << 30)
/* Longest single token string we accept, in bytes. */
#define TK_MAX_TOKEN_LEN (1u << 20)

/* ===== JSON reader (tokenizer_json.c) ===== */

/* A small DOM for the parts of tokenizer.json that are not the vocab or
 * merges. Strings are decoded (escapes resolved), may contain NUL, and are
 * NUL-terminated for convenience. All memory belongs to the tj_doc arena. */
enum tj_type { TJ_NULL, TJ_FALSE, TJ_TRUE, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ };

typedef struct tj_val tj_val;
struct tj_val {
    int         type;
    size_t      at;        /* byte offset in the source, for messages */
    const char *str;       /* TJ_STR: decoded bytes; TJ_NUM: source text */
    size_t      len;       /* length of str */
    size_t      n;         /* TJ_ARR / TJ_OBJ: number of items */
    tj_val     *items;     /* the items (object: values) */
    const char **keys;     /* TJ_OBJ: keys, NUL-terminated */
    size_t     *keylens;
};

typedef struct tj_block tj_block;
typedef struct tj_doc {
    const char *src;       /* the whole JSON text */
    size_t      srclen;
    tj_block   *blocks;    /* arena */
    char       *err;
    size_t      errlen;
    pl_buf      sbuf;      /* scratch for string decoding */
} tj_doc;

/* Fails (PL_ERR_PARSE) when src is not valid UTF-8. */
int  tj_init(tj_doc *d, const char *src, size_t len, char *err, size_t errlen);
void tj_free(tj_doc *d);
void *tj_alloc(tj_doc *d, size_t n);

/* Cursor helpers for streaming parses; *pos is a byte offset in d->src.
 * Every function returns 0 or a negative pl_err with d->err set. */
void tj_skip_ws(const tj_doc *d, size_t *pos);
int  tj_expect(tj_doc *d, size_t *pos, char c);          /* skip ws, then c */
int  tj_peek(const tj_doc *d, size_t *pos);              /* skip ws; next byte or -1 */
/* Decode the string at *pos into d->sbuf (reset first). */
int  tj_string(tj_doc *d, size_t *pos);
int  tj_skip_value(tj_doc *d, size_t *pos);
int  tj_value(tj_doc *d, size_t *pos, tj_val *out);
/* A non-negative integer < limit, written without fraction or exponent. */
int  tj_uint(tj_doc *d, size_t *pos, int64_t limit, int64_t *out);
/* After an item in an array/object: returns 1 when c2 (']' or '}') ends it,
 * 0 after a ',', negative on error. */
int  tj_next(tj_doc *d, size_t *pos, char close);

/* DOM helpers. */
const tj_val *tj_get(const tj_val *obj, const char *key);
const char *tj_typename(int type);
/* 1 if v is TJ_STR equal to s. */
int tj_is(const tj_val *v, const char *s);

/* ===== hash tables (tokenizer_load.c) ===== */

/* bytes -> id. Keys are (off, len) in the tokenizer arena. */
typedef struct tk_hslot {
    uint32_t hash;
    uint32_t off;
    uint32_t len;
    int32_t  id;              /* -1: empty slot */
} tk_hslot;

typedef struct tk_htab {
    tk_hslot *slots;
    uint32_t  mask;
    uint32_t  count;
} tk_htab;

/* (left, right) -> (rank, merged). key = left << 32 | right. */
typedef struct tk_mslot {
    uint64_t key;             /* TK_MKEY_EMPTY: empty */
    uint32_t rank;
    int32_t  merged;
} tk_mslot;
#define TK_MKEY_EMPTY UINT64_MAX

static inline uint64_t tk_hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8; n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t tk_mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* ===== pre-tokenizer / normalizer descriptions ===== */

enum tk_step_kind {
    TK_STEP_SPLIT,            /* regex split, Isolated */
    TK_STEP_DIGITS,           /* Digits pre-tokenizer */
    TK_STEP_PREFIX_SPACE,     /* ByteLevel add_prefix_space */
};

typedef struct tk_step {
    int          kind;
    pcre2_code  *re;          /* TK_STEP_SPLIT */
    int          jit;         /* JIT compiled */
    int          individual;  /* TK_STEP_DIGITS: individual_digits */
} tk_step;

#define TK_MAX_STEPS 16
#define TK_MAX_NORMS 8

/* One added token. content/ncontent are in the arena. */
typedef struct tk_added {
    int32_t  id;
    uint32_t off, len;        /* content as written */
    uint8_t  special, lstrip, rstrip, normalized;
} tk_added;

/* Byte trie over added-token strings, for leftmost-longest matching. */
typedef struct tk_tnode {
    int32_t child;            /* first child, -1 none */
    int32_t sibling;          /* next sibling, -1 none */
    int32_t tok;              /* index into tok->added, -1 if no token ends here */
    uint8_t byte;
} tk_tnode;

typedef struct tk_trie {
    tk_tnode *nodes;
    int32_t   n, cap;
    int32_t   root[256];      /* node of each first byte, -1 none */
} tk_trie;

/* A BPE result cache shared by all threads using one tokenizer: a
 * direct-mapped table of seqlocked entries (lock-free; a reader that races a
 * writer just misses). Pieces up to 24 bytes that became up to 8 ids. */
#define TK_CACHE_ENTRIES 8192
#define TK_CACHE_KEY 24
#define TK_CACHE_IDS 8
typedef struct tk_centry {
    _Atomic uint32_t seq;          /* odd while being written */
    _Atomic uint32_t meta;         /* key length | n ids << 8 */
    _Atomic uint64_t key[TK_CACHE_KEY / 8];
    _Atomic uint32_t ids[TK_CACHE_IDS];
} tk_centry;

/* per-id flags */
enum { TK_ID_PRESENT = 1, TK_ID_ADDED = 2, TK_ID_SPECIAL = 4 };

struct pl_tokenizer {
    /* arena of token bytes; everything below refers to it by offset */
    uint8_t  *arena;
    size_t    arena_len;

    int32_t   n_ids;          /* id space size */
    uint32_t *dec_off;        /* per id: decode bytes */
    uint32_t *dec_len;
    uint8_t  *id_flags;

    tk_htab   vocab;          /* model vocab, raw bytes -> id (encodable entries) */
    tk_htab   vocab_str;      /* model vocab entries whose string is not pure
                               * ByteLevel alphabet: string -> id (token_to_id) */
    tk_htab   added_str;      /* added token content -> id */
    int32_t   byte_id[256];   /* id of the single-byte token, -1 when absent */
    uint32_t  model_count;    /* number of vocab entries (HF model.get_vocab_size) */
    int       num_special_to_add;  /* ids the post-processor adds to one sequence */

    tk_mslot *merges;
    uint64_t  merges_mask;
    int       ignore_merges;

    int       n_norms;
    int       norms[TK_MAX_NORMS];   /* utf8proc option sets */

    int       n_steps;
    tk_step   steps[TK_MAX_STEPS];

    tk_added *added;
    int32_t   n_added;
    tk_trie   trie_raw;       /* normalized:false tokens */
    tk_trie   trie_norm;      /* normalized:true tokens, by normalized content */
    uint32_t *norm_off;       /* per added token: normalized content (arena) */
    uint32_t *norm_len;
    int32_t  *added_by_id;    /* [n_added] indices into added, sorted by (id, index) */

    pcre2_match_context *mctx;  /* the regex limits below, for the JIT and the interpreter */
    int64_t   encode_budget_ms;   /* TK_ENCODE_BUDGET_MS (tests lower it) */
    tk_centry *cache;           /* BPE results (mutable behind const: see above) */
};

/* Pre-tokenizer regex limits (docs/perf.md "Regex limits" has the
 * measurements). PCRE2's match limit counts backtracking steps at one start
 * position of a search (the JIT counts in its own unit; the one number bounds
 * both); the depth limit is the interpreter's. Real tokenizers need 2 steps
 * per character of their longest whitespace run (llama3's, qwen3's and
 * deepseek_v3's \s+(?!\S) family) and depth 1: 2^25 takes runs of 16M
 * characters, twice glm-gateway's default request size. A catastrophic
 * pattern hits the limit within ~0.1 s at one start; one that stays just
 * under it at every start hits the encode's time budget. Either way the
 * encode fails with PL_ERR_RANGE (the request gets a 400), not the stage. */
#define TK_MATCH_LIMIT (1u << 25)
#define TK_DEPTH_LIMIT 10000u
#define TK_HEAP_LIMIT_KIB (256u << 10)      /* the interpreter's backtracking frames: 256 MiB */
/* One encode's time budget: 10 s plus 2 s per MiB of input. The slowest
 * real input measured, llama3 on a run of spaces (one huge pre-token through
 * BPE), takes 0.6 s per MiB on the dev machine (16 MiB: 9.9 s). */
#define TK_ENCODE_BUDGET_MS 10000
#define TK_ENCODE_MS_PER_MIB 2000
void tk_set_regex_limits(pl_tokenizer *tok, uint32_t match_limit, uint32_t depth_limit);
int  tk_regex_callout(pcre2_callout_block *cb, void *ud);   /* the budget check every pattern starts with */

/* ===== shared helpers ===== */

/* ByteLevel alphabet (GPT-2 bytes_to_unicode): the byte a code point stands
 * for, or -1 when it is not in the alphabet. */
int tk_cp_to_byte(uint32_t cp);

/* Convert a token string (UTF-8) to the bytes it stands for. Returns 1 when
 * every character is in the ByteLevel alphabet (those bytes are in out), 0
 * otherwise (out holds the string itself): the rule HF's ByteLevel decoder
 * applies to each token. out is reset first. */
int tk_string_to_bytes(const uint8_t *s, size_t n, pl_buf *out);

/* Decode one UTF-8 code point from valid UTF-8; returns its length. */
static inline size_t tk_utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t c = s[0];
    if (c < 0x80 || n < 2) { *cp = c; return 1; }
    if (c < 0xE0) { *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (c < 0xF0 || n < 4) {
        if (n < 3) { *cp = c; return 1; }
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

/* Length of the valid UTF-8 prefix of s[0..n): n when all valid. */
size_t tk_utf8_valid_prefix(const uint8_t *s, size_t n);

/* Apply the normalizer sequence. Returns 0 and sets out and outlen; owned is
 * a malloc'd buffer to free (NULL when the input was returned unchanged). */
int tk_normalize(const pl_tokenizer *tok, const uint8_t *s, size_t n,
                 const uint8_t **out, size_t *outlen, uint8_t **owned);

/* Unicode White_Space (Rust's char::is_whitespace / regex \s). */
int tk_is_white_space(uint32_t cp);

/* Translate an Oniguruma (Ruby syntax) pattern to PCRE2 and compile it
 * (tokenizer_regex.c). literal: the pattern is a plain string. */
int tk_regex_compile(const char *pat, size_t len, int literal, pcre2_code **re,
                     int *jit, char *err, size_t errlen);

/* id for key p[0..n) or -1; the _in form takes the arena explicitly (the
 * loader's arena is still growing). */
int tk_htab_lookup(const pl_tokenizer *tok, const tk_htab *t, const uint8_t *p, size_t n);
int tk_htab_lookup_in(const tk_htab *t, const uint8_t *arena, const uint8_t *p, size_t n);

#endif
