/* Paged KV block accounting and block tables (engine/kv.h), no storage. */
#include "test.h"
#include "../../engine/kv.h"

static eng_kv_pool *mkpool(int n_blocks, int bs)
{
    eng_kv_pool *p = NULL;
    char err[256];
    if (eng_kv_pool_create(NULL, NULL, n_blocks, bs, &p, err, sizeof err)) fprintf(stderr, "  %s\n", err);
    return p;
}

TEST(kv_create_limits)
{
    eng_kv_pool *p = NULL;
    char err[256];
    CHECK(eng_kv_pool_create(NULL, NULL, 0, 16, &p, err, sizeof err) != 0 && !p);
    CHECK(eng_kv_pool_create(NULL, NULL, 4, 0, &p, err, sizeof err) != 0 && !p);
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

int main(void)
{
    RUN(kv_create_limits);
    RUN(kv_table_grows_on_demand);
    RUN(kv_all_or_nothing);
    RUN(kv_share_refcounts);
    RUN(kv_block_api);
    return test_report();
}
