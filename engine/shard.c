/* shard.c — a tensor-parallel rank's views of the weights (shard.h). */
#include "shard.h"

#include <stdlib.h>
#include <string.h>

struct eng_shard {
    int rank, size, ep, n_layers;
    eng_layer_weights *layers;      /* [n_layers]: sliced copies of the loader's tables */
    eng_tensor *experts;            /* [n_layers * n_routed_experts * ENG_EXP_COUNT] backing layers[].experts */
    eng_tensor embed, lm_head;
    eng_shard_range heads, vocab, exp;
    eng_shard_range kv_heads;       /* GQA: the KV heads this rank computes and caches; MLA: all (unused) */
    int64_t vocab_max;
    void **owned;                   /* column-slice copies */
    size_t n_owned, cap_owned;
    uint64_t bytes;
};

eng_shard_range eng_shard_split(int64_t n, int64_t gran, int rank, int size)
{
    int64_t units = (n + gran - 1) / gran;
    int64_t u0 = units * rank / size, u1 = units * (rank + 1) / size;
    int64_t b = u0 * gran, e = u1 * gran;
    return (eng_shard_range){ b < n ? b : n, e < n ? e : n };
}

static uint64_t view_bytes(const eng_tensor *t)
{
    if (!t->data) return 0;
    uint64_t b = (uint64_t)t->rows * (uint64_t)t->cols * eng_dtype_size(t->dtype);
    if (t->scale) b += (uint64_t)((t->rows + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK) * (uint64_t)t->scale_ld * 4;
    return b;
}

/* ===== slicing one tensor */

static int check_cut(const eng_shard *s, const eng_tensor *t, const char *what, int64_t b, int64_t e, int64_t n,
                     char *err, size_t errlen)
{
    if (b >= e)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED,
                         "%s: rank %d of %d would get none of its %lld %s%s: use a smaller "
                         "--tensor-parallel-size", t->name ? t->name : "?", s->rank, s->size, (long long)n, what,
                         t->dtype == ENG_DT_F8E4M3 ? ", FP8 widths are split in whole 128-wide blocks" : "");
    if (t->dtype == ENG_DT_F8E4M3 && b % ENG_FP8_BLOCK)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED,
                         "%s: rank %d of %d would take %s [%lld, %lld) of %lld, which starts inside a 128x128 FP8 "
                         "block (the block scales cannot be sliced there): use a tensor-parallel size that splits it "
                         "on multiples of 128", t->name ? t->name : "?", s->rank, s->size, what, (long long)b,
                         (long long)e, (long long)n);
    return 0;
}

/* Rows [b, e): a view into the same mapping (the FP8 scales start at the
 * block row b / 128). */
static int row_slice(eng_shard *s, eng_tensor *t, int64_t b, int64_t e, char *err, size_t errlen)
{
    if (!t->data) return 0;
    int rc = check_cut(s, t, "rows", b, e, t->rows, err, errlen);
    if (rc) return rc;
    t->data = (const char *)t->data + (size_t)b * (size_t)t->cols * eng_dtype_size(t->dtype);
    if (t->scale) t->scale += (b / ENG_FP8_BLOCK) * t->scale_ld;
    t->rows = e - b;
    return 0;
}

static void *own(eng_shard *s, size_t bytes)
{
    if (s->n_owned == s->cap_owned) {
        size_t cap = s->cap_owned ? 2 * s->cap_owned : 64;
        void **p = realloc(s->owned, cap * sizeof *p);
        if (!p) return NULL;
        s->owned = p;
        s->cap_owned = cap;
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    return s->owned[s->n_owned++] = p;
}

/* Elements [b, e) of a 1-D tensor (rows = 1: a bias): contiguous, so a
 * view. Biases are never FP8 (the catalogue keeps them BF16/F32). */
static int vec_slice(eng_shard *s, eng_tensor *t, int64_t b, int64_t e, char *err, size_t errlen)
{
    if (!t->data) return 0;
    int rc = check_cut(s, t, "values", b, e, t->cols, err, errlen);
    if (rc) return rc;
    t->data = (const char *)t->data + (size_t)b * eng_dtype_size(t->dtype);
    t->cols = e - b;
    return 0;
}

/* Columns [b, e): rows are not contiguous there, so the slice is copied
 * (with its block-scale columns) into memory this rank owns. */
static int col_slice(eng_shard *s, eng_tensor *t, int64_t b, int64_t e, char *err, size_t errlen)
{
    if (!t->data) return 0;
    int rc = check_cut(s, t, "columns", b, e, t->cols, err, errlen);
    if (rc) return rc;
    size_t es = eng_dtype_size(t->dtype), w = (size_t)(e - b);
    unsigned char *d = own(s, (size_t)t->rows * w * es);
    if (!d) return pl_seterr(err, errlen, PL_ERR_NOMEM, "%s: out of memory for rank %d's columns", t->name, s->rank);
    for (int64_t r = 0; r < t->rows; r++)
        memcpy(d + (size_t)r * w * es, (const unsigned char *)t->data + ((size_t)r * (size_t)t->cols + (size_t)b) * es, w * es);
    if (t->scale) {
        int64_t rb = (t->rows + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK, cb = ((int64_t)w + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK;
        float *sc = own(s, (size_t)(rb * cb) * sizeof(float));
        if (!sc) return pl_seterr(err, errlen, PL_ERR_NOMEM, "%s: out of memory for rank %d's scales", t->name, s->rank);
        for (int64_t i = 0; i < rb; i++)
            memcpy(sc + i * cb, t->scale + i * t->scale_ld + b / ENG_FP8_BLOCK, (size_t)cb * sizeof(float));
        t->scale = sc;
        t->scale_ld = cb;
    }
    t->data = d;
    t->cols = (int64_t)w;
    return 0;
}

/* A SwiGLU block split by width: gate/up rows and down columns [b, e) of
 * its intermediate size, in whole FP8 blocks when any of the three is FP8. */
static int ffn_slice(eng_shard *s, eng_tensor *g, eng_tensor *u, eng_tensor *d, char *err, size_t errlen)
{
    if (!g->data) return 0;
    int fp8 = g->dtype == ENG_DT_F8E4M3 || u->dtype == ENG_DT_F8E4M3 || d->dtype == ENG_DT_F8E4M3;
    eng_shard_range r = eng_shard_split(g->rows, fp8 ? ENG_FP8_BLOCK : 1, s->rank, s->size);
    int rc = row_slice(s, g, r.begin, r.end, err, errlen);
    if (!rc) rc = row_slice(s, u, r.begin, r.end, err, errlen);
    if (!rc) rc = col_slice(s, d, r.begin, r.end, err, errlen);
    return rc;
}

/* ===== the whole model */

/* MLA: q_b and kv_b rows and o_proj columns of this rank's heads; the
 * latent path (q_a, kv_a, their norms) and the indexer stay whole. */
static int attn_slice_mla(eng_shard *s, const eng_config *c, eng_layer_weights *lw, char *err, size_t errlen)
{
    int64_t h0 = s->heads.begin, h1 = s->heads.end, qk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    int64_t kvh = c->qk_nope_head_dim + c->v_head_dim, vd = c->v_head_dim;
    int rc = row_slice(s, &lw->w[ENG_W_Q_B], h0 * qk, h1 * qk, err, errlen);
    if (!rc) rc = row_slice(s, &lw->w[ENG_W_KV_B], h0 * kvh, h1 * kvh, err, errlen);
    if (!rc) rc = col_slice(s, &lw->w[ENG_W_O], h0 * vd, h1 * vd, err, errlen);
    return rc;
}

/* GQA: q_proj rows and bias of this rank's query heads, k/v_proj rows and
 * biases of the KV heads they read, o_proj columns of its query heads.
 * q_norm/k_norm act per head on head_dim values: whole on every rank. */
static int attn_slice_gqa(eng_shard *s, const eng_config *c, eng_layer_weights *lw, char *err, size_t errlen)
{
    int64_t hd = c->head_dim, q0 = s->heads.begin * hd, q1 = s->heads.end * hd;
    int64_t k0 = s->kv_heads.begin * hd, k1 = s->kv_heads.end * hd;
    int rc = row_slice(s, &lw->w[ENG_W_Q_PROJ], q0, q1, err, errlen);
    if (!rc) rc = vec_slice(s, &lw->w[ENG_W_Q_BIAS], q0, q1, err, errlen);
    if (!rc) rc = row_slice(s, &lw->w[ENG_W_K_PROJ], k0, k1, err, errlen);
    if (!rc) rc = vec_slice(s, &lw->w[ENG_W_K_BIAS], k0, k1, err, errlen);
    if (!rc) rc = row_slice(s, &lw->w[ENG_W_V_PROJ], k0, k1, err, errlen);
    if (!rc) rc = vec_slice(s, &lw->w[ENG_W_V_BIAS], k0, k1, err, errlen);
    if (!rc) rc = col_slice(s, &lw->w[ENG_W_O], q0, q1, err, errlen);
    return rc;
}

static int layer_slice(eng_shard *s, const eng_config *c, eng_layer_weights *lw, char *err, size_t errlen)
{
    int rc = c->attn_gqa ? attn_slice_gqa(s, c, lw, err, errlen) : attn_slice_mla(s, c, lw, err, errlen);
    if (!rc) rc = ffn_slice(s, &lw->w[ENG_W_MLP_GATE], &lw->w[ENG_W_MLP_UP], &lw->w[ENG_W_MLP_DOWN], err, errlen);
    if (!rc) rc = ffn_slice(s, &lw->w[ENG_W_SH_GATE], &lw->w[ENG_W_SH_UP], &lw->w[ENG_W_SH_DOWN], err, errlen);
    for (int e = 0; !rc && lw->experts && e < c->n_routed_experts; e++) {
        eng_tensor *ex = &lw->experts[e * ENG_EXP_COUNT];
        if (s->ep) {
            if (e < s->exp.begin || e >= s->exp.end) memset(ex, 0, ENG_EXP_COUNT * sizeof *ex);   /* another rank's */
        } else {
            rc = ffn_slice(s, &ex[ENG_EXP_GATE], &ex[ENG_EXP_UP], &ex[ENG_EXP_DOWN], err, errlen);
        }
    }
    for (int k = 0; k < ENG_W_LAYER_COUNT; k++) s->bytes += view_bytes(&lw->w[k]);
    for (int e = 0; lw->experts && e < c->n_routed_experts * ENG_EXP_COUNT; e++) s->bytes += view_bytes(&lw->experts[e]);
    return rc;
}

/* A rank's query heads and the KV heads they read. MLA: query heads in
 * ranges differing by at most one (the latent cache is whole on every
 * rank). GQA (group g = heads / kv_heads query heads per KV head):
 *  - size <= kv_heads: the KV heads are split (ranges differing by at most
 *    one) and a rank takes the query heads of its groups, whole groups;
 *  - size > kv_heads: size must be a multiple of kv_heads; the size /
 *    kv_heads ranks of one group share its g query heads (ranges differing by
 *    at most one) and each computes and caches that one KV head itself
 *    (replicated: a KV head's projection is cheap, an exchange would not be).
 * Either way a rank's query heads never straddle two groups. */
static int attn_heads(const eng_config *c, int rank, int size, eng_shard_range *heads, eng_shard_range *kvh,
                      char *err, size_t errlen)
{
    int nh = c->num_attention_heads, nkv = c->num_key_value_heads;
    if (!c->attn_gqa) {
        *heads = eng_shard_split(nh, 1, rank, size);
        *kvh = (eng_shard_range){ 0, nkv };
        return 0;
    }
    int g = nh / nkv;
    if (size <= nkv) {
        *kvh = eng_shard_split(nkv, 1, rank, size);
        *heads = (eng_shard_range){ kvh->begin * g, kvh->end * g };
        return 0;
    }
    int per = size / nkv;
    if (size % nkv)     /* (size <= nh was checked: a rank gets at least one head) */
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%d query heads in %d KV-head groups of %d cannot be split "
                         "over %d ranks without a rank's query heads straddling two groups: use a tensor-parallel "
                         "size up to %d that divides %d or is a multiple of it", nh, nkv, g, size, nh, nkv);
    int kv = rank / per;
    eng_shard_range q = eng_shard_split(g, 1, rank % per, per);
    *kvh = (eng_shard_range){ kv, kv + 1 };
    *heads = (eng_shard_range){ (int64_t)kv * g + q.begin, (int64_t)kv * g + q.end };
    return 0;
}

int eng_shard_create(const eng_weights *w, const eng_config *c, int rank, int size, int expert_parallel,
                     eng_shard **out, char *err, size_t errlen)
{
    *out = NULL;
    if (size < 1 || rank < 0 || rank >= size)
        return pl_seterr(err, errlen, PL_ERR_RANGE, "rank %d of a tensor-parallel group of %d", rank, size);
    /* The MLA architectures and GQA are sharded; any other attention kind
     * added later is refused here until it is (never silently computed whole). */
    if (c->arch != ENG_ARCH_GLM_MOE_DSA && c->arch != ENG_ARCH_GLM4_MOE_LITE && c->arch != ENG_ARCH_GLM4_MOE)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "tensor parallelism is not implemented for %s",
                         eng_arch_class(c->arch));
    if (c->num_attention_heads < size)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%d attention heads cannot be split over %d ranks",
                         c->num_attention_heads, size);
    eng_shard_range heads, kvh;
    int rc = attn_heads(c, rank, size, &heads, &kvh, err, errlen);
    if (rc) return rc;
    if (expert_parallel && c->n_routed_experts < size)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%d routed experts cannot be split over %d expert-parallel ranks",
                         c->n_routed_experts, size);
    eng_shard *s = calloc(1, sizeof *s);
    if (!s) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    s->rank = rank;
    s->size = size;
    s->ep = expert_parallel;
    s->n_layers = eng_config_n_layers_total(c);
    s->heads = heads;
    s->kv_heads = kvh;
    s->vocab = eng_shard_split(c->vocab_size, 1, rank, size);
    for (int r = 0; r < size; r++) {
        eng_shard_range v = eng_shard_split(c->vocab_size, 1, r, size);
        if (v.end - v.begin > s->vocab_max) s->vocab_max = v.end - v.begin;
    }
    s->exp = expert_parallel ? eng_shard_split(c->n_routed_experts, 1, rank, size)
                             : (eng_shard_range){ 0, c->n_routed_experts };
    size_t ne = (size_t)c->n_routed_experts * ENG_EXP_COUNT;
    s->layers = calloc((size_t)s->n_layers, sizeof *s->layers);
    s->experts = calloc((size_t)s->n_layers * (ne ? ne : 1), sizeof *s->experts);
    rc = s->layers && s->experts ? 0 : pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    for (int l = 0; !rc && l < s->n_layers; l++) {
        const eng_layer_weights *src = eng_weights_layer(w, l);
        s->layers[l] = *src;
        if (src->experts) {
            s->layers[l].experts = s->experts + (size_t)l * ne;
            memcpy(s->layers[l].experts, src->experts, ne * sizeof *src->experts);
        }
        rc = layer_slice(s, c, &s->layers[l], err, errlen);
    }
    if (!rc) {
        s->embed = *eng_weights_embed(w);
        s->lm_head = *eng_weights_lm_head(w);
        rc = row_slice(s, &s->embed, s->vocab.begin, s->vocab.end, err, errlen);
        if (!rc) rc = row_slice(s, &s->lm_head, s->vocab.begin, s->vocab.end, err, errlen);
        s->bytes += view_bytes(&s->embed) + view_bytes(&s->lm_head) + view_bytes(eng_weights_final_norm(w));
    }
    if (rc) { eng_shard_free(s); return rc; }
    *out = s;
    return 0;
}

void eng_shard_free(eng_shard *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_owned; i++) free(s->owned[i]);
    free(s->owned);
    free(s->layers);
    free(s->experts);
    free(s);
}

const eng_layer_weights *eng_shard_layer(const eng_shard *s, int layer) { return &s->layers[layer]; }
const eng_tensor *eng_shard_embed(const eng_shard *s) { return &s->embed; }
const eng_tensor *eng_shard_lm_head(const eng_shard *s) { return &s->lm_head; }
eng_shard_range eng_shard_heads(const eng_shard *s) { return s->heads; }
eng_shard_range eng_shard_kv_heads(const eng_shard *s) { return s->kv_heads; }
eng_shard_range eng_shard_vocab(const eng_shard *s) { return s->vocab; }
eng_shard_range eng_shard_experts(const eng_shard *s) { return s->exp; }
int64_t eng_shard_vocab_max(const eng_shard *s) { return s->vocab_max; }
uint64_t eng_shard_bytes(const eng_shard *s) { return s->bytes; }

static void touch(const eng_tensor *t)
{
    if (!t->data) return;
    size_t n = (size_t)t->rows * (size_t)t->cols * eng_dtype_size(t->dtype);
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < n; i += 4096) sink ^= ((const unsigned char *)t->data)[i];
    if (n) sink ^= ((const unsigned char *)t->data)[n - 1];
    (void)sink;
}

void eng_shard_prefault(const eng_shard *s)
{
    touch(&s->embed);
    touch(&s->lm_head);
    for (int l = 0; l < s->n_layers; l++) {
        const eng_layer_weights *lw = &s->layers[l];
        for (int k = 0; k < ENG_W_LAYER_COUNT; k++) touch(&lw->w[k]);
        if (lw->experts)
            for (int64_t e = s->exp.begin; e < s->exp.end; e++)
                for (int p = 0; p < ENG_EXP_COUNT; p++) touch(&lw->experts[e * ENG_EXP_COUNT + p]);
    }
}
