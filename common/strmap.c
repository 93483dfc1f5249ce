/* strmap.c — chained hash table with a power-of-two bucket array. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

typedef struct node {
    struct node *next;
    uint64_t     hash;
    void        *val;
    size_t       len;
    char         key[];     /* len bytes, copied */
} node;

struct pl_strmap {
    node  **b;
    size_t  nb;             /* buckets, a power of two */
    size_t  count;
};

/* FNV-1a: request ids and argument keys are short; good enough spread. */
static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

int pl_strmap_new(pl_strmap **out)
{
    pl_strmap *m = calloc(1, sizeof *m);
    if (!m) return PL_ERR_NOMEM;
    m->nb = 16;
    m->b = calloc(m->nb, sizeof *m->b);
    if (!m->b) { free(m); return PL_ERR_NOMEM; }
    *out = m;
    return PL_OK;
}

void pl_strmap_clear(pl_strmap *m, void (*free_val)(void *))
{
    for (size_t i = 0; i < m->nb; i++) {
        node *n = m->b[i];
        while (n) {
            node *next = n->next;
            if (free_val) free_val(n->val);
            free(n);
            n = next;
        }
        m->b[i] = NULL;
    }
    m->count = 0;
}

void pl_strmap_free(pl_strmap *m, void (*free_val)(void *))
{
    if (!m) return;
    pl_strmap_clear(m, free_val);
    free(m->b);
    free(m);
}

static node **slot(const pl_strmap *m, const char *key, size_t len, uint64_t h)
{
    node **p = &m->b[h & (m->nb - 1)];
    while (*p && !((*p)->hash == h && (*p)->len == len && memcmp((*p)->key, key, len) == 0)) p = &(*p)->next;
    return p;
}

void *pl_strmap_get(const pl_strmap *m, const char *key, size_t len)
{
    node *n = *slot(m, key, len, hash_bytes(key, len));
    return n ? n->val : NULL;
}

static void grow(pl_strmap *m)
{
    size_t nb = m->nb * 2;
    node **b = calloc(nb, sizeof *b);
    if (!b) return;     /* keep the old table: slower, still correct */
    for (size_t i = 0; i < m->nb; i++) {
        node *n = m->b[i];
        while (n) {
            node *next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

int pl_strmap_put(pl_strmap *m, const char *key, size_t len, void *val, void **old)
{
    uint64_t h = hash_bytes(key, len);
    node **p = slot(m, key, len, h);
    if (old) *old = NULL;
    if (*p) {
        if (old) *old = (*p)->val;
        (*p)->val = val;
        return PL_OK;
    }
    node *n = malloc(sizeof *n + len);
    if (!n) return PL_ERR_NOMEM;
    n->next = NULL;
    n->hash = h;
    n->val = val;
    n->len = len;
    memcpy(n->key, key, len);
    *p = n;
    if (++m->count > m->nb) grow(m);
    return PL_OK;
}

void *pl_strmap_take(pl_strmap *m, const char *key, size_t len)
{
    node **p = slot(m, key, len, hash_bytes(key, len));
    node *n = *p;
    if (!n) return NULL;
    *p = n->next;
    void *v = n->val;
    free(n);
    m->count--;
    return v;
}

size_t pl_strmap_count(const pl_strmap *m) { return m->count; }

void pl_strmap_each(const pl_strmap *m, void (*fn)(const char *key, size_t len, void *val, void *ud), void *ud)
{
    for (size_t i = 0; i < m->nb; i++)
        for (node *n = m->b[i]; n; n = n->next) fn(n->key, n->len, n->val, ud);
}
