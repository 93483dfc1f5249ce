/* tokenizer_load.c — tokenizer.json -> pl_tokenizer.
 *
 * Order of work: the top-level object is scanned once; the model's "vocab"
 * and "merges" are only located (and syntax-checked) on that pass, then
 * streamed into hash tables — vocab first, since merges refer to it, whatever
 * their order in the file. The other sections are small and read through the
 * tj DOM. Anything we do not implement is refused with its name. */
#include "tokenizer_int.h"

#include <errno.h>
#include <stddef.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* GPT-2's pattern, applied by ByteLevel when use_regex is true. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct vent {            /* a vocab entry while loading */
    int32_t  id;
    uint32_t off, len;
} vent;

typedef struct loader {
    pl_tokenizer *tok;
    tj_doc        d;
    char         *err;
    size_t        errlen;
    pl_buf        arena;         /* becomes tok->arena */
    vent         *vents;
    size_t        n_vents, cap_vents;
    size_t        vocab_pos, merges_pos;   /* where the values start */
    size_t        vocab_len, merges_len;   /* their length in bytes (for table sizes) */
    int           have_vocab, have_merges;
    tj_val        model_fields;  /* TJ_OBJ of the model's other keys */
    tj_val        added, normalizer, pre_tokenizer, post_processor, decoder, truncation, padding, version;
    int           have_added, have_normalizer, have_pre, have_post, have_decoder, have_truncation,
                  have_padding, have_version;
    pl_buf        tmp, cat;      /* scratch */
    pl_buf        mstr, mbytes;  /* the merge batch's strings and bytes */
} loader;

static int oom(loader *L)
{
    return pl_seterr(L->err, L->errlen, PL_ERR_NOMEM, "out of memory loading tokenizer");
}

/* ===== hash tables ===== */

static int htab_init(tk_htab *t, uint32_t cap)
{
    t->slots = malloc((size_t)cap * sizeof *t->slots);
    if (!t->slots) return PL_ERR_NOMEM;
    for (uint32_t i = 0; i < cap; i++) t->slots[i].id = -1;
    t->mask = cap - 1;
    t->count = 0;
    return 0;
}

static void htab_place(tk_htab *t, tk_hslot s)
{
    uint32_t i = s.hash & t->mask;
    while (t->slots[i].id >= 0) i = (i + 1) & t->mask;
    t->slots[i] = s;
}

static int htab_grow(tk_htab *t)
{
    tk_htab nt;
    if (htab_init(&nt, (t->mask + 1) * 2)) return PL_ERR_NOMEM;
    for (uint32_t i = 0; i <= t->mask; i++)
        if (t->slots[i].id >= 0) htab_place(&nt, t->slots[i]);
    nt.count = t->count;
    free(t->slots);
    *t = nt;
    return 0;
}

int tk_htab_lookup(const pl_tokenizer *tok, const tk_htab *t, const uint8_t *p, size_t n)
{
    return tk_htab_lookup_in(t, tok->arena, p, n);
}

int tk_htab_lookup_in(const tk_htab *t, const uint8_t *arena, const uint8_t *p, size_t n)
{
    if (!t->slots) return -1;
    uint32_t h = (uint32_t)tk_hash_bytes(p, n);
    uint32_t i = h & t->mask;
    for (;;) {
        const tk_hslot *s = &t->slots[i];
        if (s->id < 0) return -1;
        if (s->hash == h && s->len == n && !memcmp(arena + s->off, p, n)) return s->id;
        i = (i + 1) & t->mask;
    }
}

/* Insert arena[off..off+len) -> id: 0 inserted, 1 when the key is already
 * present (nothing inserted), PL_ERR_NOMEM. The arena may still be the
 * loader's growing buffer, hence `base`. */
static int htab_insert(tk_htab *t, const uint8_t *base, uint32_t off, uint32_t len, int32_t id)
{
    if ((t->count + 1) * 4 > (t->mask + 1) * 3 && htab_grow(t)) return PL_ERR_NOMEM;
    uint32_t h = (uint32_t)tk_hash_bytes(base + off, len);
    uint32_t i = h & t->mask;
    for (;;) {
        tk_hslot *s = &t->slots[i];
        if (s->id < 0) break;
        if (s->hash == h && s->len == len && !memcmp(base + s->off, base + off, len)) return 1;
        i = (i + 1) & t->mask;
    }
    t->slots[i] = (tk_hslot){h, off, len, id};
    t->count++;
    return 0;
}

static int merges_grow(pl_tokenizer *tok, uint64_t want)
{
    uint64_t ncap = tok->merges ? (tok->merges_mask + 1) * 2 : want;
    tk_mslot *ns = malloc(ncap * sizeof *ns);
    if (!ns) return PL_ERR_NOMEM;
    for (uint64_t i = 0; i < ncap; i++) ns[i].key = TK_MKEY_EMPTY;
    if (tok->merges) {
        for (uint64_t i = 0; i <= tok->merges_mask; i++) {
            if (tok->merges[i].key == TK_MKEY_EMPTY) continue;
            uint64_t j = tk_mix64(tok->merges[i].key) & (ncap - 1);
            while (ns[j].key != TK_MKEY_EMPTY) j = (j + 1) & (ncap - 1);
            ns[j] = tok->merges[i];
        }
        free(tok->merges);
    }
    tok->merges = ns;
    tok->merges_mask = ncap - 1;
    return 0;
}

/* HF builds a HashMap: a repeated pair keeps the LAST rank. */
static int merges_put(pl_tokenizer *tok, uint64_t *count, int32_t a, int32_t b, uint32_t rank, int32_t merged)
{
    if (!tok->merges || (*count + 1) * 10 > (tok->merges_mask + 1) * 7) {   /* load <= 0.7 */
        if (merges_grow(tok, 0)) return PL_ERR_NOMEM;
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t j = tk_mix64(key) & tok->merges_mask;
    while (tok->merges[j].key != TK_MKEY_EMPTY && tok->merges[j].key != key) j = (j + 1) & tok->merges_mask;
    if (tok->merges[j].key == TK_MKEY_EMPTY) (*count)++;
    tok->merges[j] = (tk_mslot){key, rank, merged};
    return 0;
}

/* ===== strings and the ByteLevel alphabet ===== */

/* HF model.token_to_id(string) during loading (arena still growing). */
static int32_t model_lookup(loader *L, const uint8_t *s, size_t n)
{
    pl_tokenizer *tok = L->tok;
    int mapped = tk_string_to_bytes(s, n, &L->tmp);
    return tk_htab_lookup_in(mapped ? &tok->vocab : &tok->vocab_str, (const uint8_t *)L->arena.data,
                             (const uint8_t *)(L->tmp.data ? L->tmp.data : ""), L->tmp.len);
}

static int arena_add(loader *L, const void *p, size_t n, uint32_t *off)
{
    if (L->arena.len + n > UINT32_MAX - 1) return pl_seterr(L->err, L->errlen, PL_ERR_RANGE, "tokenizer too large");
    *off = (uint32_t)L->arena.len;
    pl_buf_append(&L->arena, p, n);
    return pl_buf_ok(&L->arena) ? 0 : oom(L);
}

/* ===== top level ===== */

static int read_model_object(loader *L, size_t *pos)
{
    tj_doc *d = &L->d;
    int rc;
    /* collect the small fields into a TJ_OBJ we build by hand */
    size_t cap = 16, n = 0;
    tj_val *items = tj_alloc(d, cap * sizeof *items);
    const char **keys = tj_alloc(d, cap * sizeof *keys);
    size_t *keylens = tj_alloc(d, cap * sizeof *keylens);
    if (!items || !keys || !keylens) return oom(L);
    if ((rc = tj_expect(d, pos, '{'))) return rc;
    if (tj_peek(d, pos) == '}') { (*pos)++; goto done; }
    for (;;) {
        if ((rc = tj_string(d, pos))) return rc;
        if ((rc = tj_expect(d, pos, ':'))) return rc;
        tj_skip_ws(d, pos);
        if (!strcmp(d->sbuf.data, "vocab") && d->sbuf.len == 5) {
            L->vocab_pos = *pos;
            L->have_vocab = 1;
            if ((rc = tj_skip_value(d, pos))) return rc;
            L->vocab_len = *pos - L->vocab_pos;
        } else if (!strcmp(d->sbuf.data, "merges") && d->sbuf.len == 6) {
            L->merges_pos = *pos;
            L->have_merges = 1;
            if ((rc = tj_skip_value(d, pos))) return rc;
            L->merges_len = *pos - L->merges_pos;
        } else {
            if (n == cap) return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "model has too many fields");
            char *k = tj_alloc(d, d->sbuf.len + 1);
            if (!k) return oom(L);
            memcpy(k, d->sbuf.data, d->sbuf.len + 1);
            keys[n] = k;
            keylens[n] = d->sbuf.len;
            if ((rc = tj_value(d, pos, &items[n]))) return rc;
            n++;
        }
        rc = tj_next(d, pos, '}');
        if (rc < 0) return rc;
        if (rc == 1) break;
    }
done:
    L->model_fields = (tj_val){.type = TJ_OBJ, .n = n, .items = items, .keys = keys, .keylens = keylens};
    return 0;
}

/* Top-level keys other than "model", and where their DOM goes. */
typedef struct section {
    const char *key;
    size_t      val, have;        /* offsets of the tj_val and its flag in loader */
} section;

static const section SECTIONS[] = {
    {"added_tokens", offsetof(loader, added), offsetof(loader, have_added)},
    {"normalizer", offsetof(loader, normalizer), offsetof(loader, have_normalizer)},
    {"pre_tokenizer", offsetof(loader, pre_tokenizer), offsetof(loader, have_pre)},
    {"post_processor", offsetof(loader, post_processor), offsetof(loader, have_post)},
    {"decoder", offsetof(loader, decoder), offsetof(loader, have_decoder)},
    {"truncation", offsetof(loader, truncation), offsetof(loader, have_truncation)},
    {"padding", offsetof(loader, padding), offsetof(loader, have_padding)},
    {"version", offsetof(loader, version), offsetof(loader, have_version)},
};

static int read_top(loader *L)
{
    tj_doc *d = &L->d;
    size_t pos = 0;
    int rc, have_model = 0;
    if ((rc = tj_expect(d, &pos, '{'))) return rc;
    if (tj_peek(d, &pos) == '}') return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "tokenizer.json is an empty object");
    for (;;) {
        if ((rc = tj_string(d, &pos))) return rc;
        const section *sec = NULL;
        int is_model = d->sbuf.len == 5 && !memcmp(d->sbuf.data, "model", 5);
        for (size_t i = 0; !is_model && i < PL_ARRAY_LEN(SECTIONS); i++)
            if (d->sbuf.len == strlen(SECTIONS[i].key) && !memcmp(d->sbuf.data, SECTIONS[i].key, d->sbuf.len))
                sec = &SECTIONS[i];
        if (!is_model && !sec)
            return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED,
                             "unknown top-level key \"%.40s\" in tokenizer.json", d->sbuf.data);
        if ((rc = tj_expect(d, &pos, ':'))) return rc;
        if (is_model) {
            if ((rc = read_model_object(L, &pos))) return rc;
            have_model = 1;
        } else {
            if ((rc = tj_value(d, &pos, (tj_val *)((char *)L + sec->val)))) return rc;
            *(int *)((char *)L + sec->have) = 1;
        }
        rc = tj_next(d, &pos, '}');
        if (rc < 0) return rc;
        if (rc == 1) break;
    }
    tj_skip_ws(d, &pos);
    if (pos != d->srclen)
        return pl_seterr(L->err, L->errlen, PL_ERR_PARSE, "JSON: trailing data after the top-level object at byte %zu", pos);
    if (!have_model) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "tokenizer.json has no \"model\"");
    return 0;
}

/* ===== field checks ===== */

/* Fail if obj has a key not in the NULL-terminated list. */
static int only_keys(loader *L, const tj_val *obj, const char *what, const char *const *allowed)
{
    for (size_t i = 0; i < obj->n; i++) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(obj->keys[i], *a)) { ok = 1; break; }
        if (!ok)
            return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "%s: unsupported field \"%.60s\"",
                             what, obj->keys[i]);
    }
    return 0;
}

/* A boolean field; def when absent (def < 0: required). */
static int get_bool(loader *L, const tj_val *obj, const char *key, const char *what, int def, int *out)
{
    const tj_val *v = tj_get(obj, key);
    if (!v) {
        if (def < 0) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "%s: missing \"%s\"", what, key);
        *out = def;
        return 0;
    }
    if (v->type != TJ_TRUE && v->type != TJ_FALSE)
        return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "%s: \"%s\" must be a boolean, not %s",
                         what, key, tj_typename(v->type));
    *out = v->type == TJ_TRUE;
    return 0;
}

static const char *type_of(const tj_val *obj)
{
    const tj_val *t = tj_get(obj, "type");
    return t && t->type == TJ_STR ? t->str : NULL;
}

/* ===== model ===== */

static int check_model_fields(loader *L)
{
    const tj_val *m = &L->model_fields;
    static const char *const allowed[] = {"type", "dropout", "unk_token", "continuing_subword_prefix",
                                          "end_of_word_suffix", "fuse_unk", "byte_fallback",
                                          "ignore_merges", NULL};
    int rc = only_keys(L, m, "model", allowed);
    if (rc) return rc;
    const tj_val *t = tj_get(m, "type");
    if (t && !tj_is(t, "BPE"))
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "model type \"%.40s\" is not supported (only BPE)",
                         t->type == TJ_STR ? t->str : tj_typename(t->type));
    if (!L->have_vocab || !L->have_merges)
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED,
                         "model has no %s (only BPE models are supported)", L->have_vocab ? "merges" : "vocab");
    const tj_val *v = tj_get(m, "dropout");
    if (v && v->type != TJ_NULL && !(v->type == TJ_NUM && strtod(v->str, NULL) == 0.0))
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "BPE dropout is not supported");
    v = tj_get(m, "unk_token");
    if (v && v->type != TJ_NULL)
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "BPE unk_token is not supported");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = tj_get(m, affixes[i]);
        if (v && v->type != TJ_NULL && !(v->type == TJ_STR && v->len == 0))
            return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "BPE %s is not supported", affixes[i]);
    }
    int b;
    if ((rc = get_bool(L, m, "byte_fallback", "model", 0, &b))) return rc;
    if (b) return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "BPE byte_fallback is not supported");
    if ((rc = get_bool(L, m, "fuse_unk", "model", 0, &b))) return rc;   /* no effect without unk */
    return get_bool(L, m, "ignore_merges", "model", 0, &L->tok->ignore_merges);
}

static int read_vocab(loader *L)
{
    tj_doc *d = &L->d;
    pl_tokenizer *tok = L->tok;
    size_t pos = L->vocab_pos;
    int rc;
    if (tj_peek(d, &pos) != '{') return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "model.vocab must be an object");
    pos++;
    /* a vocab entry takes >= 6 bytes of JSON ("x":1,), typical files ~17 B:
     * aim at a load of ~1/2 (the table grows past 0.75 anyway) */
    uint32_t cap = 1 << 10;
    while (cap < (1u << 26) && (size_t)cap < L->vocab_len / 9) cap <<= 1;
    if (htab_init(&tok->vocab, cap) || htab_init(&tok->vocab_str, 1 << 8)) return oom(L);
    if (tj_peek(d, &pos) == '}') goto done;   /* byte_id must still be filled (all -1) */
    for (;;) {
        if ((rc = tj_string(d, &pos))) return rc;
        if (d->sbuf.len == 0) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "empty token string in vocab");
        if (d->sbuf.len > TK_MAX_TOKEN_LEN)
            return pl_seterr(L->err, L->errlen, PL_ERR_RANGE, "vocab token longer than %u bytes", TK_MAX_TOKEN_LEN);
        int mapped = tk_string_to_bytes((const uint8_t *)d->sbuf.data, d->sbuf.len, &L->tmp);
        if (!pl_buf_ok(&L->tmp)) return oom(L);
        size_t kpos = pos;
        if ((rc = tj_expect(d, &pos, ':'))) return rc;
        int64_t id;
        if ((rc = tj_uint(d, &pos, TK_MAX_IDS, &id))) return rc;
        uint32_t off;
        if ((rc = arena_add(L, L->tmp.data, L->tmp.len, &off))) return rc;
        rc = htab_insert(mapped ? &tok->vocab : &tok->vocab_str, (const uint8_t *)L->arena.data, off,
                         (uint32_t)L->tmp.len, (int32_t)id);
        if (rc < 0) return oom(L);
        if (rc == 1)
            return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "duplicate vocab entry \"%.80s\" near byte %zu",
                             d->sbuf.data, kpos);
        if (L->n_vents == L->cap_vents) {
            size_t nc = L->cap_vents ? L->cap_vents * 2 : 1 << 16;
            vent *nv = realloc(L->vents, nc * sizeof *nv);
            if (!nv) return oom(L);
            L->vents = nv;
            L->cap_vents = nc;
        }
        L->vents[L->n_vents++] = (vent){(int32_t)id, off, (uint32_t)L->tmp.len};
        rc = tj_next(d, &pos, '}');
        if (rc < 0) return rc;
        if (rc == 1) break;
    }
done:
    tok->model_count = (uint32_t)L->n_vents;
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        tok->byte_id[b] = tk_htab_lookup_in(&tok->vocab, (const uint8_t *)L->arena.data, &c, 1);
    }
    return 0;
}

/* Merges are resolved in batches: three vocab lookups per merge (left,
 * right, merged) plus an insert are each a cache miss in tables of several
 * MB, so a batch first computes every hash and prefetches the slots, then
 * the arena entries, and only then compares — the misses overlap instead of
 * queueing. Inserts stay in file order (a repeated pair keeps the last rank). */
#define MERGE_BATCH 64

typedef struct mq {
    uint32_t rank;
    uint32_t so, al, bl;          /* strings a, b back to back in L->mstr */
    uint32_t bo, abl, bbl;        /* their bytes back to back in L->mbytes */
    int      mapped;              /* both sides pure ByteLevel alphabet */
    uint32_t h[3];                /* hashes of a, b, ab */
    int32_t  slot[3];
    int32_t  id[3];
} mq;

static int merge_error(loader *L, const mq *m, int which)
{
    const char *a = L->mstr.data + m->so, *b = a + m->al;
    if (which < 2) {
        int bad_b = which == 1;
        int n = (int)(bad_b ? m->bl : m->al);
        return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "merge %u: token \"%.*s\" is not in the vocab",
                         m->rank + 1, n > 80 ? 80 : n, bad_b ? b : a);
    }
    return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "merge %u: merged token \"%.*s%.*s\" is not in the vocab",
                     m->rank + 1, (int)(m->al > 40 ? 40 : m->al), a, (int)(m->bl > 40 ? 40 : m->bl), b);
}

static int flush_merges(loader *L, mq *q, int n, uint64_t *count)
{
    const tk_htab *t = &L->tok->vocab;
    const uint8_t *arena = (const uint8_t *)L->arena.data;
    const uint8_t *mb = (const uint8_t *)L->mbytes.data;
    for (int i = 0; i < n; i++) {
        mq *m = &q[i];
        if (!m->mapped) continue;
        const uint8_t *kp[3] = {mb + m->bo, mb + m->bo + m->abl, mb + m->bo};
        uint32_t kl[3] = {m->abl, m->bbl, m->abl + m->bbl};
        for (int k = 0; k < 3; k++) {
            m->h[k] = (uint32_t)tk_hash_bytes(kp[k], kl[k]);
            __builtin_prefetch(&t->slots[m->h[k] & t->mask]);
        }
    }
    for (int i = 0; i < n; i++) {
        mq *m = &q[i];
        if (!m->mapped) continue;
        uint32_t kl[3] = {m->abl, m->bbl, m->abl + m->bbl};
        for (int k = 0; k < 3; k++) {
            m->slot[k] = -1;
            for (uint32_t j = m->h[k] & t->mask; t->slots[j].id >= 0; j = (j + 1) & t->mask) {
                if (t->slots[j].hash == m->h[k] && t->slots[j].len == kl[k]) {
                    m->slot[k] = (int32_t)j;
                    __builtin_prefetch(arena + t->slots[j].off);
                    break;
                }
            }
        }
    }
    for (int i = 0; i < n; i++) {
        mq *m = &q[i];
        const char *sa = L->mstr.data + m->so;
        if (m->mapped) {
            const uint8_t *kp[3] = {mb + m->bo, mb + m->bo + m->abl, mb + m->bo};
            uint32_t kl[3] = {m->abl, m->bbl, m->abl + m->bbl};
            for (int k = 0; k < 3; k++) {
                const tk_hslot *sl = m->slot[k] >= 0 ? &t->slots[m->slot[k]] : NULL;
                if (sl && !memcmp(arena + sl->off, kp[k], kl[k])) m->id[k] = sl->id;
                else if (!sl) m->id[k] = -1;
                else m->id[k] = tk_htab_lookup_in(t, arena, kp[k], kl[k]);   /* 32-bit hash collision */
            }
        } else {
            /* a side outside the ByteLevel alphabet: string lookups */
            m->id[0] = model_lookup(L, (const uint8_t *)sa, m->al);
            m->id[1] = model_lookup(L, (const uint8_t *)sa + m->al, m->bl);
            pl_buf_reset(&L->cat);
            pl_buf_append(&L->cat, sa, m->al + m->bl);
            if (!pl_buf_ok(&L->cat)) return oom(L);
            m->id[2] = model_lookup(L, (const uint8_t *)L->cat.data, L->cat.len);
        }
        for (int k = 0; k < 3; k++)
            if (m->id[k] < 0) return merge_error(L, m, k);
        uint64_t key = (uint64_t)(uint32_t)m->id[0] << 32 | (uint32_t)m->id[1];
        __builtin_prefetch(&L->tok->merges[tk_mix64(key) & L->tok->merges_mask]);
    }
    for (int i = 0; i < n; i++)
        if (merges_put(L->tok, count, q[i].id[0], q[i].id[1], q[i].rank, q[i].id[2])) return oom(L);
    return 0;
}

/* Queue merge (a, b) of the given rank; flushes full batches. */
static int queue_merge(loader *L, mq *q, int *n, uint64_t *count, uint32_t rank,
                       const char *a, size_t alen, const char *b, size_t blen)
{
    if (*n == 0) {
        pl_buf_reset(&L->mstr);
        pl_buf_reset(&L->mbytes);
    }
    mq *m = &q[(*n)++];
    m->rank = rank;
    m->so = (uint32_t)L->mstr.len;
    m->al = (uint32_t)alen;
    m->bl = (uint32_t)blen;
    pl_buf_append(&L->mstr, a, alen);
    pl_buf_append(&L->mstr, b, blen);
    m->bo = (uint32_t)L->mbytes.len;
    int ma = tk_string_to_bytes((const uint8_t *)a, alen, &L->tmp);
    m->abl = (uint32_t)L->tmp.len;
    pl_buf_append(&L->mbytes, L->tmp.data, L->tmp.len);
    int mbm = tk_string_to_bytes((const uint8_t *)b, blen, &L->tmp);
    m->bbl = (uint32_t)L->tmp.len;
    pl_buf_append(&L->mbytes, L->tmp.data, L->tmp.len);
    m->mapped = ma && mbm;
    if (!pl_buf_ok(&L->mstr) || !pl_buf_ok(&L->mbytes) || !pl_buf_ok(&L->tmp)) return oom(L);
    if (*n < MERGE_BATCH) return 0;
    int rc = flush_merges(L, q, *n, count);
    *n = 0;
    return rc;
}

static int read_merges(loader *L)
{
    tj_doc *d = &L->d;
    size_t pos = L->merges_pos;
    int rc;
    uint64_t count = 0;
    uint32_t rank = 0;
    int form = 0;                /* 1: "a b" strings, 2: ["a","b"] pairs */
    pl_buf first;
    pl_buf_init(&first);
    mq q[MERGE_BATCH];
    int nq = 0;
    if (tj_peek(d, &pos) != '[') return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "model.merges must be an array");
    pos++;
    /* a merge takes >= 6 bytes of JSON ("a b",), typical files ~17 B:
     * aim at a load of ~1/2 (the table grows past 0.7 anyway) */
    uint64_t cap = 1 << 10;
    while (cap < (1ull << 28) && cap < L->merges_len / 9) cap <<= 1;
    if (merges_grow(L->tok, cap)) return oom(L);
    if (tj_peek(d, &pos) == ']') return 0;
    for (;;) {
        int c = tj_peek(d, &pos);
        int f = c == '"' ? 1 : c == '[' ? 2 : 0;
        if (!f || (form && f != form)) {
            rc = pl_seterr(L->err, L->errlen, PL_ERR_INVALID,
                           "model.merges[%u]: expected %s near byte %zu", rank,
                           form == 2 ? "a [\"a\", \"b\"] pair like the others" :
                           form == 1 ? "an \"a b\" string like the others" : "a string or a pair", pos);
            goto out;
        }
        form = f;
        if (f == 1) {
            if ((rc = tj_string(d, &pos))) goto out;
            const char *s = d->sbuf.data;
            size_t n = d->sbuf.len;
            /* HF skips "#version" header lines of merges.txt here too */
            if (!(n >= 8 && !memcmp(s, "#version", 8))) {
                const char *sp = memchr(s, ' ', n);
                if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) {
                    rc = pl_seterr(L->err, L->errlen, PL_ERR_INVALID,
                                   "model.merges[%u] \"%.60s\" is not two tokens separated by one space", rank, s);
                    goto out;
                }
                size_t la = (size_t)(sp - s);
                if ((rc = queue_merge(L, q, &nq, &count, rank, s, la, sp + 1, n - la - 1))) goto out;
                rank++;
            }
        } else {
            pos++;
            if ((rc = tj_string(d, &pos))) goto out;
            pl_buf_reset(&first);
            pl_buf_append(&first, d->sbuf.data, d->sbuf.len);
            if (!pl_buf_ok(&first)) { rc = oom(L); goto out; }
            if ((rc = tj_expect(d, &pos, ','))) goto out;
            if ((rc = tj_string(d, &pos))) goto out;
            if ((rc = tj_expect(d, &pos, ']'))) goto out;
            if ((rc = queue_merge(L, q, &nq, &count, rank, first.data, first.len, d->sbuf.data, d->sbuf.len))) goto out;
            rank++;
        }
        rc = tj_next(d, &pos, ']');
        if (rc < 0) goto out;
        if (rc == 1) { rc = 0; break; }
    }
    if (nq) rc = flush_merges(L, q, nq, &count);
out:
    pl_buf_free(&first);
    return rc;
}

/* ===== normalizer ===== */

static int add_normalizer(loader *L, const tj_val *n, int depth)
{
    pl_tokenizer *tok = L->tok;
    if (n->type == TJ_NULL) return 0;
    if (n->type != TJ_OBJ) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "normalizer must be an object or null");
    const char *t = type_of(n);
    if (!t) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "normalizer without a \"type\"");
    if (!strcmp(t, "Sequence")) {
        static const char *const allowed[] = {"type", "normalizers", NULL};
        int rc = only_keys(L, n, "normalizer Sequence", allowed);
        if (rc) return rc;
        const tj_val *list = tj_get(n, "normalizers");
        if (!list || list->type != TJ_ARR)
            return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "normalizer Sequence needs a \"normalizers\" array");
        if (depth > 8) return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "normalizer Sequences nested too deep");
        for (size_t i = 0; i < list->n; i++)
            if ((rc = add_normalizer(L, &list->items[i], depth + 1))) return rc;
        return 0;
    }
    int opts;
    if (!strcmp(t, "NFC")) opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    else if (!strcmp(t, "NFD")) opts = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    else if (!strcmp(t, "NFKC")) opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(t, "NFKD")) opts = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "normalizer type \"%.40s\" is not supported", t);
    static const char *const allowed[] = {"type", NULL};
    int rc = only_keys(L, n, t, allowed);
    if (rc) return rc;
    if (tok->n_norms == TK_MAX_NORMS) return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "too many normalizers");
    tok->norms[tok->n_norms++] = opts;
    return 0;
}

/* ===== pre-tokenizer ===== */

static int add_step(loader *L, tk_step s)
{
    pl_tokenizer *tok = L->tok;
    if (tok->n_steps == TK_MAX_STEPS) {
        if (s.re) pcre2_code_free(s.re);
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "too many pre-tokenizers");
    }
    tok->steps[tok->n_steps++] = s;
    return 0;
}

static int add_split_regex(loader *L, const char *pat, size_t len, int literal)
{
    tk_step s = {.kind = TK_STEP_SPLIT};
    int rc = tk_regex_compile(pat, len, literal, &s.re, &s.jit, L->err, L->errlen);
    if (rc) return rc;
    return add_step(L, s);
}

static int add_pretok(loader *L, const tj_val *p, int depth, int *seen_bytelevel)
{
    int rc;
    if (p->type != TJ_OBJ) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "pre_tokenizer must be an object");
    const char *t = type_of(p);
    if (!t) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "pre_tokenizer without a \"type\"");
    if (*seen_bytelevel)
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED,
                         "pre_tokenizer %.40s after ByteLevel is not supported (ByteLevel must come last)", t);
    if (!strcmp(t, "Sequence")) {
        static const char *const allowed[] = {"type", "pretokenizers", NULL};
        if ((rc = only_keys(L, p, "pre_tokenizer Sequence", allowed))) return rc;
        const tj_val *list = tj_get(p, "pretokenizers");
        if (!list || list->type != TJ_ARR)
            return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "pre_tokenizer Sequence needs a \"pretokenizers\" array");
        if (depth > 8) return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "pre_tokenizer Sequences nested too deep");
        for (size_t i = 0; i < list->n; i++)
            if ((rc = add_pretok(L, &list->items[i], depth + 1, seen_bytelevel))) return rc;
        return 0;
    }
    if (!strcmp(t, "Split")) {
        static const char *const allowed[] = {"type", "pattern", "behavior", "invert", NULL};
        if ((rc = only_keys(L, p, "Split", allowed))) return rc;
        const tj_val *beh = tj_get(p, "behavior");
        if (!tj_is(beh, "Isolated"))
            return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "Split behavior \"%.40s\" is not supported (only Isolated)",
                             beh && beh->type == TJ_STR ? beh->str : "(missing)");
        int invert;   /* Isolated keeps every piece either way: invert changes nothing */
        if ((rc = get_bool(L, p, "invert", "Split", 0, &invert))) return rc;
        const tj_val *pat = tj_get(p, "pattern");
        if (!pat || pat->type != TJ_OBJ || pat->n != 1 || pat->items[0].type != TJ_STR)
            return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "Split pattern must be {\"Regex\": ...} or {\"String\": ...}");
        int literal;
        if (!strcmp(pat->keys[0], "Regex")) literal = 0;
        else if (!strcmp(pat->keys[0], "String")) literal = 1;
        else return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "Split pattern kind \"%.40s\" is not supported", pat->keys[0]);
        return add_split_regex(L, pat->items[0].str, pat->items[0].len, literal);
    }
    if (!strcmp(t, "Digits")) {
        static const char *const allowed[] = {"type", "individual_digits", NULL};
        if ((rc = only_keys(L, p, "Digits", allowed))) return rc;
        tk_step s = {.kind = TK_STEP_DIGITS};
        if ((rc = get_bool(L, p, "individual_digits", "Digits", 0, &s.individual))) return rc;
        return add_step(L, s);
    }
    if (!strcmp(t, "ByteLevel")) {
        static const char *const allowed[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
        if ((rc = only_keys(L, p, "ByteLevel", allowed))) return rc;
        int aps, trim, use_regex;
        if ((rc = get_bool(L, p, "add_prefix_space", "ByteLevel", 1, &aps)) ||
            (rc = get_bool(L, p, "trim_offsets", "ByteLevel", 1, &trim)) ||   /* offsets only */
            (rc = get_bool(L, p, "use_regex", "ByteLevel", 1, &use_regex)))
            return rc;
        *seen_bytelevel = 1;
        /* HF order: prefix space first, then the GPT-2 split */
        if (aps && (rc = add_step(L, (tk_step){.kind = TK_STEP_PREFIX_SPACE}))) return rc;
        if (use_regex) return add_split_regex(L, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0);
        return 0;
    }
    return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "pre_tokenizer type \"%.40s\" is not supported", t);
}

/* ===== decoder, post-processor, misc ===== */

/* How many ids the post-processor adds to a single sequence (HF's
 * num_special_tokens_to_add(pair=False)): TemplateProcessing counts the ids
 * of each SpecialToken piece of "single", Roberta/Bert add two (cls, sep),
 * ByteLevel none, a Sequence the sum of its processors. Encoding itself never
 * adds them (add_special_tokens=False); callers that count like
 * transformers' tokenizer(text) add this number. */
static int post_added_single(const tj_val *pp, int depth)
{
    const char *t = pp->type == TJ_OBJ ? type_of(pp) : NULL;
    if (!t || depth > 8) return 0;
    if (!strcmp(t, "RobertaProcessing") || !strcmp(t, "BertProcessing")) return 2;
    int n = 0;
    if (!strcmp(t, "Sequence")) {
        const tj_val *ps = tj_get(pp, "processors");
        for (size_t i = 0; ps && ps->type == TJ_ARR && i < ps->n; i++) n += post_added_single(&ps->items[i], depth + 1);
        return n;
    }
    if (strcmp(t, "TemplateProcessing")) return 0;
    const tj_val *single = tj_get(pp, "single"), *sp = tj_get(pp, "special_tokens");
    for (size_t i = 0; single && single->type == TJ_ARR && i < single->n; i++) {
        const tj_val *st = tj_get(&single->items[i], "SpecialToken");
        const tj_val *id = st ? tj_get(st, "id") : NULL;
        if (!id || id->type != TJ_STR) continue;
        const tj_val *ent = sp && sp->type == TJ_OBJ ? tj_get(sp, id->str) : NULL;
        const tj_val *ids = ent ? tj_get(ent, "ids") : NULL;
        n += ids && ids->type == TJ_ARR ? (int)ids->n : 0;
    }
    return n;
}

static int check_other_sections(loader *L)
{
    if (!L->have_decoder || L->decoder.type == TJ_NULL)
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED,
                         "decoder null is not supported (byte-level BPE needs the ByteLevel decoder)");
    const char *t = L->decoder.type == TJ_OBJ ? type_of(&L->decoder) : NULL;
    if (!t || strcmp(t, "ByteLevel"))
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "decoder type \"%.40s\" is not supported (only ByteLevel)",
                         t ? t : "(missing)");
    if (L->have_post && L->post_processor.type != TJ_NULL) {
        static const char *const known[] = {"ByteLevel", "TemplateProcessing", "RobertaProcessing",
                                            "BertProcessing", "Sequence", NULL};
        t = L->post_processor.type == TJ_OBJ ? type_of(&L->post_processor) : NULL;
        int ok = 0;
        for (const char *const *k = known; t && *k; k++) ok |= !strcmp(t, *k);
        if (!ok)
            return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "post_processor type \"%.40s\" is not supported",
                             t ? t : "(missing)");
        L->tok->num_special_to_add = post_added_single(&L->post_processor, 0);
    }
    if (L->truncation.type != TJ_NULL)
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "truncation is not supported (must be null)");
    if (L->padding.type != TJ_NULL)
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "padding is not supported (must be null)");
    return 0;
}

/* ===== added tokens ===== */

static int trie_insert(tk_trie *t, const uint8_t *s, size_t n, int32_t tokidx)
{
    int32_t *link = &t->root[s[0]];
    int32_t node = -1;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            link = &t->nodes[node].child;
        }
        int32_t c = *link;
        while (c >= 0 && t->nodes[c].byte != s[i]) c = t->nodes[c].sibling;
        if (c < 0) {
            if (t->n == t->cap) {
                int32_t nc = t->cap ? t->cap * 2 : 256;
                tk_tnode *nn = realloc(t->nodes, (size_t)nc * sizeof *nn);
                if (!nn) return PL_ERR_NOMEM;
                t->nodes = nn;
                t->cap = nc;
                if (i > 0) link = &t->nodes[node].child;   /* realloc moved it */
            }
            c = t->n++;
            t->nodes[c] = (tk_tnode){.child = -1, .sibling = *link, .tok = -1, .byte = s[i]};
            *link = c;
        }
        node = c;
    }
    t->nodes[node].tok = tokidx;
    return 0;
}

static int read_added(loader *L)
{
    pl_tokenizer *tok = L->tok;
    const tj_val *a = &L->added;
    int rc;
    if (!L->have_added || a->type == TJ_NULL) return 0;
    if (a->type != TJ_ARR) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "added_tokens must be an array");
    tok->added = calloc(a->n ? a->n : 1, sizeof *tok->added);
    if (!tok->added) return oom(L);
    if (htab_init(&tok->added_str, 64)) return oom(L);
    int32_t max_added = -1;
    for (size_t i = 0; i < a->n; i++) {
        const tj_val *e = &a->items[i];
        char what[48];
        snprintf(what, sizeof what, "added_tokens[%zu]", i);
        if (e->type != TJ_OBJ) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "%s must be an object", what);
        static const char *const allowed[] = {"id", "content", "single_word", "lstrip", "rstrip",
                                              "normalized", "special", NULL};
        if ((rc = only_keys(L, e, what, allowed))) return rc;
        const tj_val *c = tj_get(e, "content");
        const tj_val *idv = tj_get(e, "id");
        if (!c || c->type != TJ_STR) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "%s: \"content\" must be a string", what);
        if (c->len == 0) return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "%s: empty content", what);
        if (c->len > TK_MAX_TOKEN_LEN) return pl_seterr(L->err, L->errlen, PL_ERR_RANGE, "%s: content too long", what);
        int64_t id = -1;
        if (idv && idv->type == TJ_NUM) {
            size_t p = idv->at;
            if ((rc = tj_uint(&L->d, &p, TK_MAX_IDS, &id))) return rc;
        } else {
            return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "%s: \"id\" must be an integer", what);
        }
        int sw, ls, rs, norm, sp;
        if ((rc = get_bool(L, e, "single_word", what, 0, &sw)) || (rc = get_bool(L, e, "lstrip", what, 0, &ls)) ||
            (rc = get_bool(L, e, "rstrip", what, 0, &rs)) || (rc = get_bool(L, e, "normalized", what, -1, &norm)) ||
            (rc = get_bool(L, e, "special", what, -1, &sp)))
            return rc;
        if (sw)
            return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "%s (\"%.60s\"): single_word is not supported",
                             what, c->str);
        /* HF ignores "id" and numbers the tokens itself, in file order: the
         * vocab id if the content is a vocab token, else the next id after
         * the vocab / the largest added id. We require the file to agree. */
        int32_t expect = model_lookup(L, (const uint8_t *)c->str, c->len);
        if (expect < 0) {
            if (max_added < 0) expect = (int32_t)tok->model_count;
            else expect = (max_added >= (int32_t)tok->model_count || tok->model_count == 0) ? max_added + 1
                                                                                         : (int32_t)tok->model_count;
        }
        if (expect != id)
            return pl_seterr(L->err, L->errlen, PL_ERR_INVALID,
                             "%s (\"%.60s\") has id %lld but HF tokenizers would give it id %d", what, c->str,
                             (long long)id, expect);
        if (id >= TK_MAX_IDS) return pl_seterr(L->err, L->errlen, PL_ERR_RANGE, "%s: id too large", what);
        uint32_t off;
        if ((rc = arena_add(L, c->str, c->len, &off))) return rc;
        rc = htab_insert(&tok->added_str, (const uint8_t *)L->arena.data, off, (uint32_t)c->len, (int32_t)id);
        if (rc < 0) return oom(L);
        if (rc == 1)
            return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED, "%s: content \"%.60s\" appears twice", what, c->str);
        if ((int32_t)id > max_added) max_added = (int32_t)id;
        tok->added[tok->n_added++] = (tk_added){(int32_t)id, off, (uint32_t)c->len, (uint8_t)sp, (uint8_t)ls,
                                                (uint8_t)rs, (uint8_t)norm};
    }
    return 0;
}

/* Tries need the final arena (normalized contents are appended to it). */
static int build_tries(loader *L)
{
    pl_tokenizer *tok = L->tok;
    for (int k = 0; k < 256; k++) tok->trie_raw.root[k] = tok->trie_norm.root[k] = -1;
    if (!tok->n_added) return 0;
    tok->norm_off = calloc((size_t)tok->n_added, sizeof *tok->norm_off);
    tok->norm_len = calloc((size_t)tok->n_added, sizeof *tok->norm_len);
    if (!tok->norm_off || !tok->norm_len) return oom(L);
    /* HF builds the tries from special tokens first, then the others; with
     * distinct contents the order cannot change a leftmost-longest match. */
    for (int32_t i = 0; i < tok->n_added; i++) {
        tk_added *a = &tok->added[i];
        const uint8_t *s = (const uint8_t *)L->arena.data + a->off;
        size_t n = a->len;
        uint8_t *owned = NULL;
        int rc;
        if (a->normalized) {
            /* matched against normalized text, so by its normalized form */
            const uint8_t *ns;
            size_t nn;
            if (tk_normalize(tok, s, n, &ns, &nn, &owned)) return oom(L);
            pl_buf_reset(&L->tmp);
            pl_buf_append(&L->tmp, ns, nn);    /* ns may point into the arena */
            free(owned);
            if (!pl_buf_ok(&L->tmp)) return oom(L);
            if (nn == 0) continue;             /* cannot match anything */
            uint32_t off;
            if ((rc = arena_add(L, L->tmp.data, nn, &off))) return rc;
            tok->norm_off[i] = off;
            tok->norm_len[i] = (uint32_t)nn;
            s = (const uint8_t *)L->arena.data + off;
            n = nn;
        }
        if (trie_insert(a->normalized ? &tok->trie_norm : &tok->trie_raw, s, n, i)) return oom(L);
    }
    return 0;
}

/* ===== per-id tables ===== */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* added_by_id: the added tokens ordered by (id, position in the file), for
 * pl_tokenizer_added_content's binary search. Sorted as packed
 * id << 32 | index keys (ids are non-negative), so qsort needs no context. */
static int index_added(loader *L)
{
    pl_tokenizer *tok = L->tok;
    size_t n = (size_t)tok->n_added;
    uint64_t *keys = malloc((n ? n : 1) * sizeof *keys);
    tok->added_by_id = malloc((n ? n : 1) * sizeof *tok->added_by_id);
    if (!keys || !tok->added_by_id) { free(keys); return oom(L); }
    for (size_t i = 0; i < n; i++) keys[i] = (uint64_t)(uint32_t)tok->added[i].id << 32 | (uint32_t)i;
    qsort(keys, n, sizeof *keys, cmp_u64);
    for (size_t i = 0; i < n; i++) tok->added_by_id[i] = (int32_t)(uint32_t)keys[i];
    free(keys);
    return 0;
}

static int build_ids(loader *L)
{
    pl_tokenizer *tok = L->tok;
    int32_t n = 0;
    for (size_t i = 0; i < L->n_vents; i++) if (L->vents[i].id + 1 > n) n = L->vents[i].id + 1;
    for (int32_t i = 0; i < tok->n_added; i++) if (tok->added[i].id + 1 > n) n = tok->added[i].id + 1;
    tok->n_ids = n;
    tok->dec_off = malloc((size_t)(n ? n : 1) * sizeof *tok->dec_off);
    tok->dec_len = calloc((size_t)(n ? n : 1), sizeof *tok->dec_len);
    tok->id_flags = calloc((size_t)(n ? n : 1), 1);
    if (!tok->dec_off || !tok->dec_len || !tok->id_flags) return oom(L);
    for (size_t i = 0; i < L->n_vents; i++) {
        const vent *v = &L->vents[i];
        if (tok->id_flags[v->id])
            return pl_seterr(L->err, L->errlen, PL_ERR_INVALID, "vocab id %d is used by two tokens", v->id);
        tok->id_flags[v->id] = TK_ID_PRESENT;
        tok->dec_off[v->id] = v->off;
        tok->dec_len[v->id] = v->len;
    }
    /* Added tokens take precedence for decoding (HF id_to_token looks at
     * the added vocabulary first). HF's id_to_token gives a normalized:true
     * token in its NORMALIZED form ("\u2460" -> "1" under NFKC), and decode
     * skips a token when that string is the content of a special token —
     * so such a token may decode differently from its content and not be
     * skipped. Bytes follow the ByteLevel decoder rule. */
    /* special flag of the added token with each id (filled backwards: the
     * first token with an id wins), so that finding the owner's flag is not
     * a scan of all added tokens per token (quadratic in the file) */
    uint8_t *id_special = calloc((size_t)(n ? n : 1), 1);
    if (!id_special) return oom(L);
    for (int32_t i = tok->n_added; i-- > 0;) id_special[tok->added[i].id] = tok->added[i].special;
    int rc = 0;
    for (int32_t i = 0; i < tok->n_added && !rc; i++) {
        const tk_added *a = &tok->added[i];
        uint32_t so = a->normalized ? tok->norm_off[i] : a->off;
        uint32_t sl = a->normalized ? tok->norm_len[i] : a->len;
        int32_t owner = tk_htab_lookup_in(&tok->added_str, (const uint8_t *)L->arena.data,
                                          (const uint8_t *)L->arena.data + so, sl);
        int special = owner >= 0 && id_special[owner];
        tk_string_to_bytes((const uint8_t *)L->arena.data + so, sl, &L->tmp);
        uint32_t off;
        if ((rc = arena_add(L, L->tmp.data, L->tmp.len, &off))) break;
        tok->dec_off[a->id] = off;
        tok->dec_len[a->id] = (uint32_t)L->tmp.len;
        tok->id_flags[a->id] = TK_ID_PRESENT | TK_ID_ADDED | (special ? TK_ID_SPECIAL : 0);
    }
    free(id_special);
    return rc ? rc : index_added(L);
}

/* ===== entry points ===== */

static int load_json(loader *L, const char *json, size_t len)
{
    int rc;
    pl_tokenizer *tok = L->tok;
    if ((rc = tj_init(&L->d, json, len, L->err, L->errlen))) return rc;
    L->truncation.type = TJ_NULL;
    L->padding.type = TJ_NULL;
    if ((rc = read_top(L))) return rc;
    if ((rc = check_model_fields(L))) return rc;
    if ((rc = check_other_sections(L))) return rc;
    if (L->have_normalizer && (rc = add_normalizer(L, &L->normalizer, 0))) return rc;
    int seen_bl = 0;
    if (L->have_pre && L->pre_tokenizer.type != TJ_NULL && (rc = add_pretok(L, &L->pre_tokenizer, 0, &seen_bl)))
        return rc;
    if (!seen_bl)
        return pl_seterr(L->err, L->errlen, PL_ERR_UNSUPPORTED,
                         "pre_tokenizer has no ByteLevel (only byte-level BPE tokenizers are supported)");
    if ((rc = read_vocab(L))) return rc;
    if ((rc = read_merges(L))) return rc;
    if ((rc = read_added(L))) return rc;
    if ((rc = build_tries(L))) return rc;   /* before build_ids: normalized contents */
    if ((rc = build_ids(L))) return rc;
    /* zeroed entries read as empty (key length 0 never matches: pieces
     * that reach the cache have 2+ bytes) */
    tok->cache = calloc(TK_CACHE_ENTRIES, sizeof *tok->cache);
    if (!tok->cache) return oom(L);
    tok->mctx = pcre2_match_context_create(NULL);
    if (!tok->mctx) return oom(L);
    tk_set_regex_limits(tok, TK_MATCH_LIMIT, TK_DEPTH_LIMIT);
    tok->encode_budget_ms = TK_ENCODE_BUDGET_MS;
    return 0;
}

int pl_tokenizer_load_mem(pl_tokenizer **out, const char *json, size_t len, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = 0;
    loader L;
    memset(&L, 0, sizeof L);
    L.err = err;
    L.errlen = errlen;
    pl_buf_init(&L.arena);
    pl_buf_init(&L.tmp);
    L.tok = calloc(1, sizeof *L.tok);
    if (!L.tok) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory loading tokenizer");
    int rc = json ? load_json(&L, json, len) : pl_seterr(err, errlen, PL_ERR_INVALID, "no JSON given");
    /* the arena is final now: hand it over */
    L.tok->arena = (uint8_t *)L.arena.data;
    L.tok->arena_len = L.arena.len;
    L.arena.data = NULL;
    tj_free(&L.d);
    pl_buf_free(&L.tmp);
    pl_buf_free(&L.cat);
    pl_buf_free(&L.mstr);
    pl_buf_free(&L.mbytes);
    free(L.vents);
    if (rc) {
        if (err && errlen && !err[0]) pl_seterr(err, errlen, rc, "%s", pl_strerror(rc));
        pl_tokenizer_free(L.tok);
        return rc;
    }
    *out = L.tok;
    return 0;
}

int pl_tokenizer_load(pl_tokenizer **out, const char *path, char *err, size_t errlen)
{
    *out = NULL;
    /* only regular files: a FIFO or device could block or never end */
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return pl_seterr(err, errlen, e == ENOENT ? PL_ERR_NOTFOUND : PL_ERR_IO, "cannot open %s: %s", path,
                         strerror(e));
    }
    if (!S_ISREG(st.st_mode)) return pl_seterr(err, errlen, PL_ERR_IO, "%s is not a regular file", path);
    if ((uint64_t)st.st_size > TK_MAX_FILE)
        return pl_seterr(err, errlen, PL_ERR_RANGE, "%s is too large (%lld bytes)", path, (long long)st.st_size);
    pl_buf buf;
    pl_buf_init(&buf);
    pl_buf_reserve(&buf, (size_t)st.st_size);    /* one allocation (pl_file_read keeps it) */
    int rc = pl_file_read(path, &buf, TK_MAX_FILE, err, errlen);
    if (!rc) {
        if (buf.len == 0) rc = pl_seterr(err, errlen, PL_ERR_PARSE, "%s is empty", path);
        else {
            rc = pl_tokenizer_load_mem(out, buf.data, buf.len, err, errlen);
            if (rc && err && errlen) {
                /* prefix the file name */
                char tmp[512];
                snprintf(tmp, sizeof tmp, "%s", err);
                snprintf(err, errlen, "%s: %s", path, tmp);
            }
        }
    }
    pl_buf_free(&buf);
    return rc;
}

void pl_tokenizer_free(pl_tokenizer *tok)
{
    if (!tok) return;
    free(tok->arena);
    free(tok->dec_off);
    free(tok->dec_len);
    free(tok->id_flags);
    free(tok->vocab.slots);
    free(tok->vocab_str.slots);
    free(tok->added_str.slots);
    free(tok->merges);
    for (int i = 0; i < tok->n_steps; i++)
        if (tok->steps[i].re) pcre2_code_free(tok->steps[i].re);
    free(tok->added);
    free(tok->trie_raw.nodes);
    free(tok->trie_norm.nodes);
    free(tok->norm_off);
    free(tok->norm_len);
    free(tok->added_by_id);
    if (tok->mctx) pcre2_match_context_free(tok->mctx);
    free(tok->cache);
    free(tok);
}
