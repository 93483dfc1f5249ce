/* kv.c — free list, reference counts, block tables, prefix cache, and the
 * pool's storage. */
#include "kv.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct eng_kv_pool {
    eng_backend *be;
    int n_layers, n_blocks, block_size;
    enum eng_cache_dtype dtype;
    eng_be_cache *mla, *idx;    /* [n_layers]; n_layers is 0 without storage; idx data NULL on shared layers */
    eng_be_cache *k, *v;        /* [n_layers], GQA models only (then mla data is NULL) */
    int32_t *refs;              /* [n_blocks]; 0 = free or evictable */
    int32_t *free_list;         /* stack of free blocks that hold no cache entry */
    int n_free;
    /* prefix cache; all NULL / 0 while off */
    int key_len;
    uint64_t *hash, *parent;    /* [n_blocks] entry of a registered block */
    int32_t *key;               /* [n_blocks * key_len] */
    unsigned char *reg;         /* [n_blocks] registered */
    int32_t *hnext;             /* [n_blocks] next block in the same hash bucket */
    int32_t *bucket;            /* [mask + 1] first block per bucket, -1 none */
    uint64_t mask;
    /* eviction list: registered blocks with refcount 0, least recently
     * released first (doubly linked through the blocks, O(1) unlink when a
     * cached block is hit again) */
    int32_t *lprev, *lnext;
    int lhead, ltail, n_lru;
};

/* ===== pool ===== */

/* The MLA row tiles latent and RoPE key apart (split = kv_lora_rank); the
 * indexer row is one range. */
static eng_be_cache mla_desc(const eng_config *c, enum eng_cache_dtype dt)
{
    int dim = c->kv_lora_rank + c->qk_rope_head_dim;
    return (eng_be_cache){ NULL, dt, dim, c->kv_lora_rank, eng_be_cache_row_bytes(dt, dim, c->kv_lora_rank), 0 };
}

static eng_be_cache idx_desc(const eng_config *c, enum eng_cache_dtype dt)
{
    int dim = c->index_head_dim;
    return (eng_be_cache){ NULL, dt, dim, dim, eng_be_cache_row_bytes(dt, dim, dim), 0 };
}

/* GQA: one K and one V row per token and layer, [kv_heads * head_dim]
 * each (a tensor-parallel rank's own KV heads only: kv_heads_rank), FP8
 * tiles of up to 128 restarting at every head (one tile per head at
 * head_dim 128): a rank's rows quantize as the whole row would. */
static eng_be_cache gqa_desc(const eng_config *c, enum eng_cache_dtype dt)
{
    int dim = (c->kv_heads_rank > 0 ? c->kv_heads_rank : c->num_key_value_heads) * c->head_dim;
    return (eng_be_cache){ NULL, dt, dim, dim, eng_be_cache_row_bytes_heads(dt, dim, c->head_dim), c->head_dim };
}

size_t eng_kv_bytes_per_token(const eng_config *c, enum eng_cache_dtype dt)
{
    size_t n = 0;
    if (c->attn_gqa) return (size_t)eng_config_n_layers_total(c) * 2 * gqa_desc(c, dt).row_bytes;
    for (int l = 0; l < eng_config_n_layers_total(c); l++)
        n += mla_desc(c, dt).row_bytes + (c->layer_index_full[l] ? idx_desc(c, dt).row_bytes : 0);
    return n;
}

static int alloc_storage(eng_kv_pool *p, const eng_config *c)
{
    p->n_layers = eng_config_n_layers_total(c);
    p->mla = calloc((size_t)p->n_layers, sizeof *p->mla);
    p->idx = calloc((size_t)p->n_layers, sizeof *p->idx);
    if (!p->mla || !p->idx) return 0;
    size_t rows = (size_t)p->n_blocks * (size_t)p->block_size;
    if (c->attn_gqa) {
        p->k = calloc((size_t)p->n_layers, sizeof *p->k);
        p->v = calloc((size_t)p->n_layers, sizeof *p->v);
        if (!p->k || !p->v) return 0;
        for (int l = 0; l < p->n_layers; l++) {
            p->k[l] = p->v[l] = gqa_desc(c, p->dtype);
            if (!(p->k[l].data = eng_be_alloc(p->be, rows * p->k[l].row_bytes))) return 0;
            if (!(p->v[l].data = eng_be_alloc(p->be, rows * p->v[l].row_bytes))) return 0;
        }
        return 1;
    }
    for (int l = 0; l < p->n_layers; l++) {
        p->mla[l] = mla_desc(c, p->dtype);
        if (!(p->mla[l].data = eng_be_alloc(p->be, rows * p->mla[l].row_bytes))) return 0;
        if (!c->layer_index_full[l]) continue;
        p->idx[l] = idx_desc(c, p->dtype);
        if (!(p->idx[l].data = eng_be_alloc(p->be, rows * p->idx[l].row_bytes))) return 0;
    }
    return 1;
}

int eng_kv_pool_create(eng_backend *be, const eng_config *c, enum eng_cache_dtype dtype, int n_blocks,
                       int block_size, eng_kv_pool **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_blocks < 1 || block_size < 1 || (int64_t)n_blocks * block_size > (1 << 30))
        return pl_seterr(err, errlen, PL_ERR_RANGE, "KV pool of %d blocks x %d tokens out of range",
                         n_blocks, block_size);
    eng_kv_pool *p = calloc(1, sizeof *p);
    if (!p) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    p->be = be;
    p->dtype = dtype;
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->refs = calloc((size_t)n_blocks, sizeof *p->refs);
    p->free_list = malloc((size_t)n_blocks * sizeof *p->free_list);
    if (!p->refs || !p->free_list || (c && !alloc_storage(p, c))) {
        eng_kv_pool_free(p);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "cannot allocate a KV pool of %d blocks x %d tokens (%zu MB)",
                         n_blocks, block_size, c ? (size_t)n_blocks * (size_t)block_size * eng_kv_bytes_per_token(c, dtype) >> 20 : 0);
    }
    /* Stack order: block 0 comes out first (a fresh cache fills from the start). */
    for (int b = 0; b < n_blocks; b++) p->free_list[b] = n_blocks - 1 - b;
    p->n_free = n_blocks;
    *out = p;
    return 0;
}

void eng_kv_pool_free(eng_kv_pool *p)
{
    if (!p) return;
    for (int l = 0; l < p->n_layers; l++) {
        if (p->mla) eng_be_dealloc(p->be, p->mla[l].data);
        if (p->idx) eng_be_dealloc(p->be, p->idx[l].data);
        if (p->k) eng_be_dealloc(p->be, p->k[l].data);
        if (p->v) eng_be_dealloc(p->be, p->v[l].data);
    }
    free(p->k);
    free(p->v);
    free(p->mla);
    free(p->idx);
    free(p->refs);
    free(p->free_list);
    free(p->hash);
    free(p->parent);
    free(p->key);
    free(p->reg);
    free(p->hnext);
    free(p->bucket);
    free(p->lprev);
    free(p->lnext);
    free(p);
}

int eng_kv_block_size(const eng_kv_pool *p) { return p->block_size; }
int eng_kv_n_blocks(const eng_kv_pool *p) { return p->n_blocks; }
int eng_kv_n_free(const eng_kv_pool *p) { return p->n_free + p->n_lru; }
int eng_kv_n_layers(const eng_kv_pool *p) { return p->n_layers; }

const eng_be_cache *eng_kv_layer_mla(eng_kv_pool *p, int layer)
{
    return layer < p->n_layers ? &p->mla[layer] : NULL;
}

const eng_be_cache *eng_kv_layer_index(eng_kv_pool *p, int layer)
{
    return layer < p->n_layers && p->idx[layer].data ? &p->idx[layer] : NULL;
}

const eng_be_cache *eng_kv_layer_k(eng_kv_pool *p, int layer)
{
    return p->k && layer < p->n_layers ? &p->k[layer] : NULL;
}

const eng_be_cache *eng_kv_layer_v(eng_kv_pool *p, int layer)
{
    return p->v && layer < p->n_layers ? &p->v[layer] : NULL;
}

enum eng_cache_dtype eng_kv_dtype(const eng_kv_pool *p) { return p->dtype; }

/* ===== eviction list ===== */

static void lru_unlink(eng_kv_pool *p, int b)
{
    int a = p->lprev[b], c = p->lnext[b];
    if (a >= 0) p->lnext[a] = c;
    else p->lhead = c;
    if (c >= 0) p->lprev[c] = a;
    else p->ltail = a;
    p->lprev[b] = p->lnext[b] = -1;
    p->n_lru--;
}

static void lru_push_back(eng_kv_pool *p, int b)
{
    p->lprev[b] = p->ltail;
    p->lnext[b] = -1;
    if (p->ltail >= 0) p->lnext[p->ltail] = b;
    else p->lhead = b;
    p->ltail = b;
    p->n_lru++;
}

/* Drop b's cache entry (it is being reused for other content). */
static void unregister(eng_kv_pool *p, int b)
{
    int32_t *q = &p->bucket[p->hash[b] & p->mask];
    while (*q != b) q = &p->hnext[*q];
    *q = p->hnext[b];
    p->reg[b] = 0;
}

/* ===== blocks ===== */

int eng_kv_block_alloc(eng_kv_pool *p)
{
    int b;
    if (p->n_free) b = p->free_list[--p->n_free];
    else if (p->n_lru) {
        b = p->lhead;
        lru_unlink(p, b);
        unregister(p, b);
    } else return -1;
    p->refs[b] = 1;
    return b;
}

void eng_kv_block_ref(eng_kv_pool *p, int b)
{
    assert(b >= 0 && b < p->n_blocks && p->refs[b] > 0);
    p->refs[b]++;
}

void eng_kv_block_unref(eng_kv_pool *p, int b)
{
    assert(b >= 0 && b < p->n_blocks && p->refs[b] > 0);
    if (--p->refs[b] > 0) return;
    if (p->reg && p->reg[b]) lru_push_back(p, b);
    else p->free_list[p->n_free++] = b;
}

int eng_kv_block_refcount(const eng_kv_pool *p, int b)
{
    return b >= 0 && b < p->n_blocks ? p->refs[b] : 0;
}

int eng_kv_blocks_for(const eng_kv_pool *p, int64_t n_tokens)
{
    return n_tokens <= 0 ? 0 : (int)((n_tokens + p->block_size - 1) / p->block_size);
}

/* ===== prefix cache ===== */

int eng_kv_prefix_enable(eng_kv_pool *p, int key_len)
{
    if (key_len < 1) return PL_ERR_INVALID;
    if (p->key_len) return p->key_len == key_len ? PL_OK : PL_ERR_INVALID;
    size_t n = (size_t)p->n_blocks, nb = 1;
    while (nb < n) nb <<= 1;
    p->hash = malloc(n * sizeof *p->hash);
    p->parent = malloc(n * sizeof *p->parent);
    p->key = malloc(n * (size_t)key_len * sizeof *p->key);
    p->reg = calloc(n, 1);
    p->hnext = malloc(n * sizeof *p->hnext);
    p->bucket = malloc(nb * sizeof *p->bucket);
    p->lprev = malloc(n * sizeof *p->lprev);
    p->lnext = malloc(n * sizeof *p->lnext);
    if (!p->hash || !p->parent || !p->key || !p->reg || !p->hnext || !p->bucket || !p->lprev || !p->lnext)
        return PL_ERR_NOMEM;
    for (size_t i = 0; i < nb; i++) p->bucket[i] = -1;
    for (size_t i = 0; i < n; i++) p->lprev[i] = p->lnext[i] = -1;
    p->mask = nb - 1;
    p->lhead = p->ltail = -1;
    p->key_len = key_len;
    return PL_OK;
}

int eng_kv_prefix_key_len(const eng_kv_pool *p) { return p->key_len; }

/* splitmix64's finaliser over (parent, ids): chaining makes the hash of a
 * block name its whole prefix; the entry check makes collisions harmless. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t eng_kv_prefix_hash(uint64_t parent, const int32_t *key, int key_len)
{
    uint64_t h = mix64(parent ^ (uint64_t)key_len);
    for (int i = 0; i < key_len; i++) h = mix64(h ^ (uint64_t)(uint32_t)key[i]);
    return h;
}

static int find(const eng_kv_pool *p, uint64_t hash, uint64_t parent, const int32_t *key)
{
    for (int b = p->bucket[hash & p->mask]; b >= 0; b = p->hnext[b])
        if (p->hash[b] == hash && p->parent[b] == parent &&
            !memcmp(p->key + (size_t)b * (size_t)p->key_len, key, (size_t)p->key_len * sizeof *key))
            return b;
    return -1;
}

int eng_kv_prefix_get(eng_kv_pool *p, uint64_t hash, uint64_t parent, const int32_t *key)
{
    if (!p->key_len) return -1;
    int b = find(p, hash, parent, key);
    if (b < 0) return -1;
    if (p->refs[b] == 0) lru_unlink(p, b);
    p->refs[b]++;
    return b;
}

void eng_kv_prefix_put(eng_kv_pool *p, int b, uint64_t hash, uint64_t parent, const int32_t *key)
{
    assert(b >= 0 && b < p->n_blocks && p->refs[b] > 0);
    if (!p->key_len || p->reg[b] || find(p, hash, parent, key) >= 0) return;
    p->hash[b] = hash;
    p->parent[b] = parent;
    memcpy(p->key + (size_t)b * (size_t)p->key_len, key, (size_t)p->key_len * sizeof *key);
    int32_t *head = &p->bucket[hash & p->mask];
    p->hnext[b] = *head;
    *head = b;
    p->reg[b] = 1;
}

bool eng_kv_block_cached(const eng_kv_pool *p, int b)
{
    return p->reg && b >= 0 && b < p->n_blocks && p->reg[b];
}

int eng_kv_n_cached(const eng_kv_pool *p) { return p->n_lru; }

/* ===== block tables ===== */

int eng_kv_table_init(eng_kv_pool *p, eng_kv_table *t, int max_tokens)
{
    t->n = 0;
    t->cap = eng_kv_blocks_for(p, max_tokens);
    t->blocks = malloc(sizeof *t->blocks * (size_t)(t->cap ? t->cap : 1));
    return t->blocks ? PL_OK : PL_ERR_NOMEM;
}

void eng_kv_table_free(eng_kv_pool *p, eng_kv_table *t)
{
    if (!t->blocks) return;
    eng_kv_table_release(p, t);
    free(t->blocks);
    t->blocks = NULL;
    t->cap = 0;
}

int eng_kv_table_ensure(eng_kv_pool *p, eng_kv_table *t, int n_tokens)
{
    int need = eng_kv_blocks_for(p, n_tokens);
    if (need <= t->n) return PL_OK;
    if (need > t->cap) return PL_ERR_RANGE;
    if (need - t->n > eng_kv_n_free(p)) return PL_ERR_AGAIN;
    while (t->n < need) t->blocks[t->n++] = eng_kv_block_alloc(p);
    return PL_OK;
}

void eng_kv_table_release(eng_kv_pool *p, eng_kv_table *t)
{
    /* last first, so the blocks come back in the order they go out again */
    for (int i = t->n - 1; i >= 0; i--) eng_kv_block_unref(p, t->blocks[i]);
    t->n = 0;
}

int eng_kv_table_share(eng_kv_pool *p, const eng_kv_table *src, int n_blocks, eng_kv_table *dst)
{
    if (dst->n != 0 || n_blocks < 0 || n_blocks > src->n || n_blocks > dst->cap) return PL_ERR_RANGE;
    for (int i = 0; i < n_blocks; i++) {
        eng_kv_block_ref(p, src->blocks[i]);
        dst->blocks[i] = src->blocks[i];
    }
    dst->n = n_blocks;
    return PL_OK;
}

/* ===== device sizing ===== */

size_t eng_kv_device_budget(size_t free_b, size_t total_b, double util, size_t reserve)
{
    if (free_b > total_b || !(util > 0 && util <= 1)) return 0;
    double target = util * (double)total_b, used = (double)(total_b - free_b) + (double)reserve;
    return target > used ? (size_t)(target - used) : 0;
}
