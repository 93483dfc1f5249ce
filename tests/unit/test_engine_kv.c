/* Paged KV block accounting and block tables (engine/kv.h), no storage. */
#include "test.h"
#include "../../engine/kv.h"

static eng_kv_pool *mkpool(int n_blocks, int bs)
{
    eng_kv_pool *p = NULL;
    char err[256];
    if (eng_kv_pool_create(NULL, NULL, ENG_CACHE_F32, n_blocks, bs, &p, err, sizeof err)) fprintf(stderr, "  %s\n", err);
    return p;
}

TEST(kv_create_limits)
{
    eng_kv_pool *p = NULL;
    char err[256];
    CHECK(eng_kv_pool_create(NULL, NULL, ENG_CACHE_F32, 0, 16, &p, err, sizeof err) != 0 && !p);
    CHECK(eng_kv_pool_create(NULL, NULL, ENG_CACHE_F32, 4, 0, &p, err, sizeof err) != 0 && !p);
    p = mkpool(8, 4);
    CHECK(p && eng_kv_n_blocks(p) == 8 && eng_kv_n_free(p) == 8 && eng_kv_block_size(p) == 4);
    CHECK(eng_kv_n_layers(p) == 0 && eng_kv_layer_mla(p, 0) == NULL);
    CHECK_EQ_INT(eng_kv_blocks_for(p, 0), 0);
    CHECK_EQ_INT(eng_kv_blocks_for(p, 1), 1);
    CHECK_EQ_INT(eng_kv_blocks_for(p, 4), 1);
    CHECK_EQ_INT(eng_kv_blocks_for(p, 5), 2);
    eng_kv_pool_free(p);
}

TEST(kv_table_grows_on_demand)
{
    eng_kv_pool *p = mkpool(8, 4);
    eng_kv_table t;
    CHECK_EQ_INT(eng_kv_table_init(p, &t, 20), PL_OK);
    CHECK_EQ_INT(t.cap, 5);
    CHECK_EQ_INT(eng_kv_table_ensure(p, &t, 3), PL_OK);
    CHECK_EQ_INT(t.n, 1);
    CHECK_EQ_INT(t.blocks[0], 0);                 /* a fresh pool hands out block 0 first */
    CHECK_EQ_INT(eng_kv_table_ensure(p, &t, 4), PL_OK);
    CHECK_EQ_INT(t.n, 1);                         /* still inside the first block */
    CHECK_EQ_INT(eng_kv_table_ensure(p, &t, 9), PL_OK);
    CHECK_EQ_INT(t.n, 3);
    CHECK_EQ_INT(eng_kv_n_free(p), 5);
    CHECK_EQ_INT(eng_kv_table_ensure(p, &t, 21), PL_ERR_RANGE);   /* past capacity */
    CHECK_EQ_INT(t.n, 3);
    for (int i = 0; i < t.n; i++) CHECK_EQ_INT(eng_kv_block_refcount(p, t.blocks[i]), 1);
    eng_kv_table_free(p, &t);
    CHECK_EQ_INT(eng_kv_n_free(p), 8);
    eng_kv_pool_free(p);
}

TEST(kv_all_or_nothing)
{
    eng_kv_pool *p = mkpool(4, 2);
    eng_kv_table a, b;
    eng_kv_table_init(p, &a, 8);
    eng_kv_table_init(p, &b, 8);
    CHECK_EQ_INT(eng_kv_table_ensure(p, &a, 5), PL_OK);   /* 3 blocks */
    CHECK_EQ_INT(eng_kv_table_ensure(p, &b, 4), PL_ERR_AGAIN);   /* wants 2, 1 free */
    CHECK_EQ_INT(b.n, 0);
    CHECK_EQ_INT(eng_kv_n_free(p), 1);
    CHECK_EQ_INT(eng_kv_table_ensure(p, &b, 2), PL_OK);
    CHECK_EQ_INT(eng_kv_n_free(p), 0);
    eng_kv_table_release(p, &a);                          /* freed at once */
    CHECK_EQ_INT(a.n, 0);
    CHECK_EQ_INT(eng_kv_n_free(p), 3);
    CHECK_EQ_INT(eng_kv_table_ensure(p, &b, 8), PL_OK);
    CHECK_EQ_INT(eng_kv_n_free(p), 0);
    /* blocks of one table are distinct */
    for (int i = 0; i < b.n; i++)
        for (int j = i + 1; j < b.n; j++) CHECK(b.blocks[i] != b.blocks[j]);
    eng_kv_table_free(p, &a);
    eng_kv_table_free(p, &b);
    CHECK_EQ_INT(eng_kv_n_free(p), 4);
    eng_kv_pool_free(p);
}

TEST(kv_share_refcounts)
{
    eng_kv_pool *p = mkpool(6, 4);
    eng_kv_table a, b, c;
    eng_kv_table_init(p, &a, 16);
    eng_kv_table_init(p, &b, 16);
    eng_kv_table_init(p, &c, 16);
    eng_kv_table_ensure(p, &a, 10);                        /* 3 blocks */
    CHECK_EQ_INT(eng_kv_table_share(p, &a, 2, &b), PL_OK);
    CHECK_EQ_INT(eng_kv_table_share(p, &a, 4, &c), PL_ERR_RANGE);   /* a has only 3 */
    CHECK_EQ_INT(eng_kv_table_share(p, &a, 2, &b), PL_ERR_RANGE);   /* b not empty */
    CHECK_EQ_INT(eng_kv_block_refcount(p, a.blocks[0]), 2);
    CHECK_EQ_INT(eng_kv_block_refcount(p, a.blocks[1]), 2);
    CHECK_EQ_INT(eng_kv_block_refcount(p, a.blocks[2]), 1);
    CHECK_EQ_INT(eng_kv_table_ensure(p, &b, 12), PL_OK);  /* b grows past the shared part */
    CHECK(b.blocks[2] != a.blocks[2]);
    int32_t shared0 = a.blocks[0];
    eng_kv_table_release(p, &a);                           /* shared blocks stay with b */
    CHECK_EQ_INT(eng_kv_block_refcount(p, shared0), 1);
    CHECK_EQ_INT(eng_kv_n_free(p), 3);
    eng_kv_table_release(p, &b);
    CHECK_EQ_INT(eng_kv_block_refcount(p, shared0), 0);
    CHECK_EQ_INT(eng_kv_n_free(p), 6);
    eng_kv_table_free(p, &a);
    eng_kv_table_free(p, &b);
    eng_kv_table_free(p, &c);
    eng_kv_pool_free(p);
}

TEST(kv_block_api)
{
    eng_kv_pool *p = mkpool(2, 1);
    int x = eng_kv_block_alloc(p), y = eng_kv_block_alloc(p);
    CHECK(x >= 0 && y >= 0 && x != y);
    CHECK_EQ_INT(eng_kv_block_alloc(p), -1);
    eng_kv_block_ref(p, x);
    eng_kv_block_unref(p, x);
    CHECK_EQ_INT(eng_kv_n_free(p), 0);
    eng_kv_block_unref(p, x);
    CHECK_EQ_INT(eng_kv_n_free(p), 1);
    CHECK_EQ_INT(eng_kv_block_refcount(p, x), 0);
    CHECK_EQ_INT(eng_kv_block_refcount(p, 99), 0);
    eng_kv_block_unref(p, y);
    eng_kv_pool_free(p);
}

/* ===== prefix cache ===== */

TEST(kv_prefix_hash_chain)
{
    int32_t a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 5};
    uint64_t h0 = eng_kv_prefix_hash(ENG_KV_HASH_ROOT, a, 4);
    CHECK(h0 == eng_kv_prefix_hash(ENG_KV_HASH_ROOT, a, 4));               /* deterministic */
    CHECK(h0 != eng_kv_prefix_hash(ENG_KV_HASH_ROOT, b, 4));               /* every id counts */
    CHECK(h0 != eng_kv_prefix_hash(ENG_KV_HASH_ROOT, a, 3));               /* and the key length */
    /* the same block after another parent is another prefix */
    uint64_t h1 = eng_kv_prefix_hash(h0, a, 4), h1b = eng_kv_prefix_hash(eng_kv_prefix_hash(ENG_KV_HASH_ROOT, b, 4), a, 4);
    CHECK(h1 != h1b && h1 != h0);
}

TEST(kv_prefix_put_get_evict)
{
    eng_kv_pool *p = mkpool(4, 2);
    CHECK_EQ_INT(eng_kv_prefix_key_len(p), 0);
    int32_t k[3][2] = {{1, 2}, {3, 4}, {5, 6}};
    CHECK_EQ_INT(eng_kv_prefix_get(p, 1, 0, k[0]), -1);                    /* off: nothing found */
    CHECK_EQ_INT(eng_kv_prefix_enable(p, 2), PL_OK);
    uint64_t h[3];
    int blk[3];
    for (int i = 0; i < 3; i++) {
        h[i] = eng_kv_prefix_hash(i ? h[i - 1] : ENG_KV_HASH_ROOT, k[i], 2);
        blk[i] = eng_kv_block_alloc(p);
        eng_kv_prefix_put(p, blk[i], h[i], i ? h[i - 1] : ENG_KV_HASH_ROOT, k[i]);
        CHECK(eng_kv_block_cached(p, blk[i]));
    }
    /* a second block with the same content is not registered */
    int dup = eng_kv_block_alloc(p);
    eng_kv_prefix_put(p, dup, h[0], ENG_KV_HASH_ROOT, k[0]);
    CHECK(!eng_kv_block_cached(p, dup));
    /* held: found with a reference more */
    CHECK_EQ_INT(eng_kv_prefix_get(p, h[1], h[0], k[1]), blk[1]);
    CHECK_EQ_INT(eng_kv_block_refcount(p, blk[1]), 2);
    eng_kv_block_unref(p, blk[1]);
    /* wrong parent or key under the right hash: a collision, not a hit */
    CHECK_EQ_INT(eng_kv_prefix_get(p, h[1], ENG_KV_HASH_ROOT, k[1]), -1);
    CHECK_EQ_INT(eng_kv_prefix_get(p, h[1], h[0], k[2]), -1);
    /* released in order 2, 0, 1: evictable, still findable, counted free */
    eng_kv_block_unref(p, dup);                                            /* plain free */
    eng_kv_block_unref(p, blk[2]);
    eng_kv_block_unref(p, blk[0]);
    eng_kv_block_unref(p, blk[1]);
    CHECK_EQ_INT(eng_kv_n_free(p), 4);
    CHECK_EQ_INT(eng_kv_n_cached(p), 3);
    CHECK_EQ_INT(eng_kv_prefix_get(p, h[0], ENG_KV_HASH_ROOT, k[0]), blk[0]);   /* revived */
    CHECK_EQ_INT(eng_kv_n_cached(p), 2);
    CHECK_EQ_INT(eng_kv_n_free(p), 3);
    /* allocation takes the plain free block first, then evicts least
     * recently released: blk[2], then blk[1] */
    CHECK_EQ_INT(eng_kv_block_alloc(p), dup);
    CHECK_EQ_INT(eng_kv_n_cached(p), 2);
    CHECK_EQ_INT(eng_kv_block_alloc(p), blk[2]);
    CHECK(!eng_kv_block_cached(p, blk[2]));
    CHECK_EQ_INT(eng_kv_prefix_get(p, h[2], h[1], k[2]), -1);              /* evicted */
    CHECK_EQ_INT(eng_kv_prefix_get(p, h[1], h[0], k[1]), blk[1]);          /* still there */
    CHECK_EQ_INT(eng_kv_block_alloc(p), -1);                               /* all held */
    eng_kv_pool_free(p);
}

/* Tables release last block first: the tail of a chain is evicted before its head. */
TEST(kv_prefix_table_release_order)
{
    eng_kv_pool *p = mkpool(3, 1);
    eng_kv_prefix_enable(p, 1);
    eng_kv_table t;
    eng_kv_table_init(p, &t, 3);
    eng_kv_table_ensure(p, &t, 3);
    uint64_t h = ENG_KV_HASH_ROOT;
    for (int i = 0; i < 3; i++) {
        int32_t id = 10 + i;
        uint64_t nh = eng_kv_prefix_hash(h, &id, 1);
        eng_kv_prefix_put(p, t.blocks[i], nh, h, &id);
        h = nh;
    }
    int32_t first = t.blocks[0], last = t.blocks[2];
    eng_kv_table_release(p, &t);
    CHECK_EQ_INT(eng_kv_n_cached(p), 3);
    CHECK_EQ_INT(eng_kv_block_alloc(p), last);
    CHECK(eng_kv_block_cached(p, first));
    eng_kv_table_free(p, &t);
    eng_kv_pool_free(p);
}

int main(void)
{
    RUN(kv_create_limits);
    RUN(kv_table_grows_on_demand);
    RUN(kv_all_or_nothing);
    RUN(kv_share_refcounts);
    RUN(kv_block_api);
    RUN(kv_prefix_hash_chain);
    RUN(kv_prefix_put_get_evict);
    RUN(kv_prefix_table_release_order);
    return test_report();
}
