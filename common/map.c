/* map.c — open-addressing string map. */
#include "map.h"

#include <stdlib.h>
#include <string.h>
#include "pl.h"

static char tomb_marker;
#define PL_MAP_TOMB (&tomb_marker)

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 0x100000001b3ull; }
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33;
    return h;
}

void pl_map_init(pl_map *m) { memset(m, 0, sizeof *m); }

void pl_map_free(pl_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != PL_MAP_TOMB) free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static pl_map_slot *find(const pl_map *m, const char *key, size_t klen, uint64_t h)
{
    if (!m->cap) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        pl_map_slot *s = &m->slots[i];
        if (!s->key) return NULL;
        if (s->key != PL_MAP_TOMB && s->hash == h && s->klen == klen && !memcmp(s->key, key, klen)) return s;
    }
}

void *pl_map_get(const pl_map *m, const char *key, size_t klen)
{
    pl_map_slot *s = find(m, key, klen, hash_bytes(key, klen));
    return s ? s->val : NULL;
}

static int grow(pl_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    if (m->len * 4 < m->cap) cap = m->cap;   /* mostly tombstones: rehash in place size */
    pl_map_slot *slots = calloc(cap, sizeof *slots);
    if (!slots) return PL_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        pl_map_slot *s = &m->slots[i];
        if (!s->key || s->key == PL_MAP_TOMB) continue;
        size_t j = s->hash & (cap - 1);
        while (slots[j].key) j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->used = m->len;
    return PL_OK;
}

int pl_map_put(pl_map *m, const char *key, size_t klen, void *val)
{
    uint64_t h = hash_bytes(key, klen);
    pl_map_slot *s = find(m, key, klen, h);
    if (s) { s->val = val; return PL_OK; }
    if ((m->used + 1) * 4 > m->cap * 3 && grow(m)) return PL_ERR_NOMEM;
    char *k = malloc(klen + 1);
    if (!k) return PL_ERR_NOMEM;
    memcpy(k, key, klen);
    k[klen] = 0;
    size_t i = h & (m->cap - 1);
    while (m->slots[i].key && m->slots[i].key != PL_MAP_TOMB) i = (i + 1) & (m->cap - 1);
    if (!m->slots[i].key) m->used++;
    m->slots[i] = (pl_map_slot){k, klen, h, val};
    m->len++;
    return PL_OK;
}

void *pl_map_del(pl_map *m, const char *key, size_t klen)
{
    pl_map_slot *s = find(m, key, klen, hash_bytes(key, klen));
    if (!s) return NULL;
    void *v = s->val;
    free(s->key);
    s->key = PL_MAP_TOMB;
    s->val = NULL;
    m->len--;
    return v;
}

size_t pl_map_next(const pl_map *m, size_t pos, const char **key, size_t *klen, void **val)
{
    for (size_t i = pos; i < m->cap; i++) {
        const pl_map_slot *s = &m->slots[i];
        if (!s->key || s->key == PL_MAP_TOMB) continue;
        *key = s->key;
        *klen = s->klen;
        *val = s->val;
        return i + 1;
    }
    return 0;
}
