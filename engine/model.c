/* model.c — GLM-5 / GLM-4.7-Flash / GLM-4.5 forward pass on backend ops (doc
 * glm5-architecture §3, §4.2). GLM-4.7-Flash is the same graph without the
 * DSA indexer: every layer (and the MTP layer) attends densely and causally.
 * GLM-4.5/4.6/4.7 (Glm4MoeForCausalLM) swap MLA for grouped-query attention
 * (attention_gqa) around the same MoE, norms and MTP layer. */
#include "model.h"
#include "shard.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct eng_model {
    eng_config cfg;
    eng_weights *w;
    eng_backend *be;
    int max_tokens, max_len;
    float *inv_freq;            /* [rope/2], shared by MLA and the indexer */

    /* scratch, [max_tokens, ...] each */
    float *h, *x, *qr, *q, *ckv, *q_lat, *o_lat, *o_v, *tmp_h;
    float *qi, *ki, *iw;
    float *gate, *up, *act;     /* [max_tokens, max(intermediate, moe*shared)] */
    float *rlogits, *rwt;       /* router [T, E], weights [T, top_k] */
    int32_t *ridx;              /* [T, top_k] */
    int32_t *erows;             /* tokens routed to one expert */
    float *ewt, *ex, *eout;     /* their weights, gathered inputs, outputs */
    float *shx;                 /* [T, H] the shared expert's output, made before the routed experts */
    float *u;                   /* MTP [T, 2H] */
    int32_t *topk;              /* [T, index_topk]: the last full layer's selection */
    int *n_topk;
    int32_t *pos;
    int64_t *slot;
    eng_be_keys *keys;
    int32_t *lrows;             /* rows whose logits are asked for */
    /* Step metadata: pos, slot, keys, lrows above and ids, bt here are host
     * arrays (malloc) that prepare() fills; step holds what the ops read
     * (eng_be_step_upload: the same arrays on the CPU, device copies else). */
    int32_t *ids;               /* [T] */
    int32_t *bt;                /* every sequence's block table, packed; [bt_cap] */
    int bt_cap;
    eng_be_step step;
    float *dlogits, *dhin;      /* device backends only: logits rows, MTP hidden_in */
    /* GQA (Glm4MoeForCausalLM) scratch: q and attention output [T, heads *
     * head_dim], k and v [T, kv_heads * head_dim]; zero-sized for MLA models */
    float *gq, *gk, *gv, *go;

    /* tensor parallelism (NULL comm: one rank, the whole model) */
    eng_comm *comm;
    eng_shard *shard;           /* this rank's views of the weights */
    int comm_rc;                /* first failed collective (sticky) */
    /* lm_head (eng_be_alloc): [TP_HEAD_ROWS, vocab_max], [size, TP_HEAD_ROWS, vocab_max];
     * lgat_h: lgat's host copy on a device backend (NULL on the CPU) */
    float *lloc, *lgat, *lgat_h;
    /* vocab-parallel embedding: [max_tokens + 1, hidden] rows (the last one
     * stays zero), and per token its local id and the row it takes;
     * device (eng_be_alloc) and host twins */
    float *temb;
    int32_t *tlid, *trow, *tlid_h, *trow_h;
    unsigned char *meta;        /* step metadata as received (followers), grows */
    size_t meta_cap;
    eng_kv_pool *fkv;           /* a follower's own KV pool */
    int opened;                 /* eng_model_open succeeded: rank 0's close tells the followers to stop */
    uint64_t moe_calls, moe_experts;    /* eng_model_moe_reads */
};

#define TP_HEAD_ROWS 64         /* lm_head rows gathered at a time */

/* The layer's weights as this rank holds them. */
static const eng_layer_weights *layer_w(const eng_model *m, int l)
{
    return m->shard ? eng_shard_layer(m->shard, l) : eng_weights_layer(m->w, l);
}

/* Sum partial rows over the ranks (no-op on one rank); a failure sticks and
 * fails the step. */
static void tp_sum(eng_model *m, float *x, size_t n)
{
    if (!m->comm || m->comm_rc) return;
    /* A device buffer must be complete before the communicator (its own
     * stream) reads it; the collective has finished when it returns, so
     * the ops enqueued after it see the sum. A failed op shows up in the
     * step's final eng_be_sync. */
    if (!eng_be_host_memory(m->be)) eng_be_sync(m->be, NULL, 0);
    m->comm_rc = eng_comm_all_reduce_sum(m->comm, x, n);
}

/* ===== open / close ===== */

const eng_config *eng_model_config(const eng_model *m) { return &m->cfg; }
eng_backend *eng_model_backend(eng_model *m) { return m->be; }
int eng_model_has_mtp(const eng_model *m) { return m->cfg.has_mtp_weights; }

static uint64_t tensor_bytes(const eng_tensor *t)
{
    if (!t->data) return 0;
    uint64_t b = (uint64_t)t->rows * (uint64_t)t->cols * eng_dtype_size(t->dtype);
    if (t->scale) b += (uint64_t)((t->rows + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK) * (uint64_t)t->scale_ld * 4;
    return b;
}

uint64_t eng_model_active_bytes(const eng_model *m)
{
    const eng_config *c = &m->cfg;
    const eng_tensor *emb = eng_weights_embed(m->w);
    uint64_t b = (uint64_t)emb->cols * eng_dtype_size(emb->dtype);     /* one embedding row */
    b += tensor_bytes(eng_weights_final_norm(m->w)) + tensor_bytes(eng_weights_lm_head(m->w));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const eng_layer_weights *lw = eng_weights_layer(m->w, l);
        for (int s = 0; s < ENG_W_LAYER_COUNT; s++) b += tensor_bytes(&lw->w[s]);
        if (lw->experts)     /* top-k experts: the tiny/small experts are all the same size */
            for (int p = 0; p < ENG_EXP_COUNT; p++)
                b += (uint64_t)c->num_experts_per_tok * tensor_bytes(&lw->experts[p]);
    }
    return b;
}

void eng_model_moe_reads(const eng_model *m, uint64_t *calls, uint64_t *experts)
{
    *calls = m->moe_calls;
    *experts = m->moe_experts;
}

uint64_t eng_model_expert_bytes(const eng_model *m)
{
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        const eng_layer_weights *lw = eng_weights_layer(m->w, l);
        if (!lw->experts) continue;
        uint64_t b = 0;
        for (int p = 0; p < ENG_EXP_COUNT; p++) b += tensor_bytes(&lw->experts[p]);
        return b;
    }
    return 0;
}

static void tp_stop(eng_model *m);

void eng_model_close(eng_model *m)
{
    if (!m) return;
    void *bufs[] = { m->inv_freq, m->h, m->x, m->qr, m->q, m->ckv, m->q_lat, m->o_lat, m->o_v, m->tmp_h,
                     m->qi, m->ki, m->iw, m->gate, m->up, m->act, m->rlogits, m->rwt, m->ridx, m->erows,
                     m->ewt, m->ex, m->eout, m->shx, m->u, m->topk, m->n_topk, m->dlogits, m->dhin,
                     m->gq, m->gk, m->gv, m->go, m->lloc, m->lgat, m->temb, m->tlid, m->trow };
    for (size_t i = 0; i < PL_ARRAY_LEN(bufs); i++) if (m->be) eng_be_dealloc(m->be, bufs[i]);
    void *host[] = { m->pos, m->slot, m->keys, m->lrows, m->ids, m->bt };
    for (size_t i = 0; i < PL_ARRAY_LEN(host); i++) free(host[i]);
    tp_stop(m);
    eng_kv_pool_free(m->fkv);
    free(m->meta);
    free(m->lgat_h);
    free(m->tlid_h);
    free(m->trow_h);
    eng_shard_free(m->shard);
    eng_be_free(m->be);
    eng_weights_free(m->w);
    free(m);
}

static int alloc_scratch(eng_model *m)
{
    const eng_config *c = &m->cfg;
    size_t T = (size_t)m->max_tokens, H = (size_t)c->hidden_size, nh = (size_t)c->num_attention_heads;
    size_t qk = (size_t)(c->qk_nope_head_dim + c->qk_rope_head_dim);
    size_t inter = (size_t)c->intermediate_size, sh = (size_t)c->moe_intermediate_size * (size_t)c->n_shared_experts;
    if (sh > inter) inter = sh;
    if ((size_t)c->moe_intermediate_size > inter) inter = (size_t)c->moe_intermediate_size;
    size_t F = sizeof(float);
    size_t gqd = c->attn_gqa ? nh * (size_t)c->head_dim : 0;
    size_t gkvd = c->attn_gqa ? (size_t)c->num_key_value_heads * (size_t)c->head_dim : 0;
    struct { void **p; size_t bytes; } a[] = {
        { (void **)&m->inv_freq, (size_t)c->qk_rope_head_dim / 2 * F },
        { (void **)&m->h, T * H * F }, { (void **)&m->x, T * H * F }, { (void **)&m->tmp_h, T * H * F },
        { (void **)&m->qr, T * (size_t)c->q_lora_rank * F }, { (void **)&m->q, T * nh * qk * F },
        { (void **)&m->ckv, T * (size_t)(c->kv_lora_rank + c->qk_rope_head_dim) * F },
        { (void **)&m->q_lat, T * nh * (size_t)c->kv_lora_rank * F },
        { (void **)&m->o_lat, T * nh * (size_t)c->kv_lora_rank * F },
        { (void **)&m->o_v, T * nh * (size_t)c->v_head_dim * F },
        { (void **)&m->qi, T * (size_t)c->index_n_heads * (size_t)c->index_head_dim * F },
        { (void **)&m->ki, T * (size_t)c->index_head_dim * F }, { (void **)&m->iw, T * (size_t)c->index_n_heads * F },
        { (void **)&m->gate, T * inter * F }, { (void **)&m->up, T * inter * F }, { (void **)&m->act, T * inter * F },
        { (void **)&m->rlogits, T * (size_t)c->n_routed_experts * F },
        { (void **)&m->rwt, T * (size_t)c->num_experts_per_tok * F },
        { (void **)&m->ridx, T * (size_t)c->num_experts_per_tok * sizeof(int32_t) },
        { (void **)&m->erows, T * sizeof(int32_t) }, { (void **)&m->ewt, T * F },
        { (void **)&m->ex, T * H * F }, { (void **)&m->eout, T * H * F }, { (void **)&m->u, T * 2 * H * F },
        { (void **)&m->shx, T * H * F },
        { (void **)&m->topk, T * (size_t)c->index_topk * sizeof(int32_t) }, { (void **)&m->n_topk, T * sizeof(int) },
        { (void **)&m->gq, T * gqd * F }, { (void **)&m->go, T * gqd * F },
        { (void **)&m->gk, T * gkvd * F }, { (void **)&m->gv, T * gkvd * F },
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(a); i++)
        if (!(*a[i].p = eng_be_alloc(m->be, a[i].bytes))) return PL_ERR_NOMEM;
    if (!eng_be_host_memory(m->be)) {   /* staging for the caller's host buffers */
        if (!(m->dlogits = eng_be_alloc(m->be, T * (size_t)c->vocab_size * F))) return PL_ERR_NOMEM;
        if (!(m->dhin = eng_be_alloc(m->be, T * H * F))) return PL_ERR_NOMEM;
    }
    if (m->shard) {     /* tensor parallel: lm_head pieces, vocab-parallel embedding */
        int N = eng_comm_size(m->comm);
        size_t vm = (size_t)eng_shard_vocab_max(m->shard) * TP_HEAD_ROWS;
        if (!(m->lloc = eng_be_alloc(m->be, vm * F)) || !(m->lgat = eng_be_alloc(m->be, vm * (size_t)N * F)) ||
            !(m->temb = eng_be_alloc(m->be, (T + 1) * H * F)) || !(m->tlid = eng_be_alloc(m->be, T * 4)) ||
            !(m->trow = eng_be_alloc(m->be, T * 4)) || !(m->tlid_h = malloc(T * 4)) || !(m->trow_h = malloc(T * 4)))
            return PL_ERR_NOMEM;
        if (!eng_be_host_memory(m->be) && !(m->lgat_h = malloc(vm * (size_t)N * F))) return PL_ERR_NOMEM;
    }
    if (!(m->pos = calloc(T, sizeof *m->pos)) || !(m->slot = calloc(T, sizeof *m->slot)) ||
        !(m->keys = calloc(T, sizeof *m->keys)) || !(m->lrows = calloc(T, sizeof *m->lrows)) ||
        !(m->ids = calloc(T, sizeof *m->ids)))
        return PL_ERR_NOMEM;
    /* inv_freq[j] = theta^(-2j/rope), computed as transformers does, in f32. */
    float *inv = malloc((size_t)c->qk_rope_head_dim / 2 * F + F);
    if (!inv) return PL_ERR_NOMEM;
    for (int j = 0; j < c->qk_rope_head_dim / 2; j++) {
        float e = (float)(2 * j) / (float)c->qk_rope_head_dim;
        inv[j] = 1.0f / powf((float)c->rope_theta, e);
    }
    eng_be_upload(m->be, m->inv_freq, inv, (size_t)c->qk_rope_head_dim / 2 * F);
    free(inv);
    return 0;
}

/* fn on every weight view this rank uses: the whole model, or a
 * tensor-parallel rank's shard (its slices, the replicated tensors, and
 * under expert parallelism its experts only). Stops at fn's first nonzero. */
static int for_each_weight(eng_model *m, int (*fn)(void *ctx, const eng_tensor *t), void *ctx)
{
    const eng_config *c = &m->cfg;
    const eng_tensor *top[] = { m->shard ? eng_shard_embed(m->shard) : eng_weights_embed(m->w),
                                eng_weights_final_norm(m->w),
                                m->shard ? eng_shard_lm_head(m->shard) : eng_weights_lm_head(m->w) };
    eng_shard_range er = m->shard ? eng_shard_experts(m->shard) : (eng_shard_range){ 0, c->n_routed_experts };
    int rc = 0;
    for (size_t i = 0; i < PL_ARRAY_LEN(top) && !rc; i++) if (top[i]->data) rc = fn(ctx, top[i]);
    for (int l = 0; l < eng_config_n_layers_total(c) && !rc; l++) {
        const eng_layer_weights *lw = layer_w(m, l);
        if (l == c->num_hidden_layers && !c->has_mtp_weights) break;
        for (int s = 0; s < ENG_W_LAYER_COUNT && !rc; s++)
            if (lw->w[s].data) rc = fn(ctx, &lw->w[s]);
        for (int64_t e = er.begin * ENG_EXP_COUNT; lw->experts && e < er.end * ENG_EXP_COUNT && !rc; e++)
            rc = fn(ctx, &lw->experts[e]);
    }
    return rc;
}

struct upload_ctx { eng_backend *be; char *err; size_t errlen; };
static int upload_one(void *p, const eng_tensor *t)
{
    struct upload_ctx *u = p;
    return eng_be_tensor_upload(u->be, t, u->err, u->errlen);
}

/* Every weight view this rank uses onto the device (no-op on the CPU). */
static int upload_weights(eng_model *m, char *err, size_t errlen)
{
    struct upload_ctx u = { m->be, err, errlen };
    return for_each_weight(m, upload_one, &u);
}

struct views_ctx { const eng_tensor **v; size_t n; };  /* v NULL: count only */
static int collect_one(void *p, const eng_tensor *t)
{
    struct views_ctx *c = p;
    if (c->v) c->v[c->n] = t;
    c->n++;
    return 0;
}

/* The CPU reads the weights straight from host memory: those this rank
 * uses into huge pages (eng_weights_hugepages), unless the caller keeps
 * the file pages. Not being able to is no error (the file pages work):
 * it is said once, unless quiet; only a range left unmapped fails. */
static int hugepage_weights(eng_model *m, const eng_model_opts *o, char *err, size_t errlen)
{
    if (o->load.file_pages || eng_be_kind_of(m->be) != ENG_BE_CPU) return 0;
    struct views_ctx c = { NULL, 0 };
    for_each_weight(m, collect_one, &c);
    c.v = malloc((c.n ? c.n : 1) * sizeof *c.v);
    if (!c.v) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    c.n = 0;
    for_each_weight(m, collect_one, &c);
    uint64_t bytes = 0;
    char why[256] = "";
    int rc = eng_weights_hugepages(m->w, c.v, c.n, &bytes, why, sizeof why);
    free(c.v);
    if (rc == PL_ERR_INTERNAL) return pl_seterr(err, errlen, rc, "%s", why);
    if (!o->load.quiet) {
        if (rc) pl_log(PL_LOG_INFO, NULL, 0, "weights stay in 4 KiB file pages: %s", why);
        else pl_log(PL_LOG_INFO, NULL, 0, "weights: %.1f MB in 2 MiB huge pages", (double)bytes / 1e6);
    }
    return 0;
}

int eng_model_open(const char *dir, const eng_model_opts *o, eng_model **out, char *err, size_t errlen)
{
    *out = NULL;
    eng_model *m = calloc(1, sizeof *m);
    if (!m) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    /* A communicator of size 1 still takes the sharded path (whole-range
     * views, one-rank collectives): TP = 1 through a communicator must
     * equal the plain path bit for bit (the NCCL check on one GPU). */
    int tp = o->comm != NULL;
    eng_load_opts lo = o->load;
    if (tp) lo.prefault = 0;    /* a rank touches only its shard, below */
    int rc = eng_weights_load(dir, &lo, &m->cfg, &m->w, err, errlen);
    if (!rc && tp) {
        m->comm = o->comm;
        /* Every rank must shard the same way: a mismatch would give wrong
         * numbers, not an error, so it is checked here. */
        int32_t mine[2] = { o->expert_parallel != 0, eng_comm_size(o->comm) }, all[2 * 64];
        if (eng_comm_size(o->comm) > 64 || eng_comm_all_gather(o->comm, mine, sizeof mine, all))
            rc = pl_seterr(err, errlen, PL_ERR_IO, "tensor-parallel ranks could not meet (a rank failed)");
        for (int r = 0; !rc && r < eng_comm_size(o->comm); r++)
            if (all[2 * r] != mine[0] || all[2 * r + 1] != mine[1])
                rc = pl_seterr(err, errlen, PL_ERR_INVALID, "tensor-parallel rank %d was started with other sharding "
                               "options (expert parallel %d, size %d) than rank %d", r, all[2 * r], all[2 * r + 1],
                               eng_comm_rank(o->comm));
        if (!rc)
            rc = eng_shard_create(m->w, &m->cfg, eng_comm_rank(o->comm), eng_comm_size(o->comm), o->expert_parallel,
                                  &m->shard, err, errlen);
        if (!rc && o->load.prefault) eng_shard_prefault(m->shard);
        if (!rc && m->cfg.attn_gqa) {   /* this rank's pools hold its KV heads only */
            eng_shard_range kvh = eng_shard_kv_heads(m->shard);
            m->cfg.kv_heads_rank = (int)(kvh.end - kvh.begin);
        }
    }
    if (!rc)
        rc = o->backend == ENG_BE_CUDA ? eng_be_cuda_create(o->n_threads, o->device, &m->be, err, errlen)
                                       : eng_be_create(o->backend, o->n_threads, &m->be, err, errlen);
    if (!rc) rc = eng_be_set_compute(m->be, (enum eng_be_compute)o->compute_dtype, err, errlen);
    /* The GQA ops (eng_be_gqa_attend, _rope_neox, _add_bias) have CPU
     * bodies only so far: refuse rather than let a device run CPU code. */
    if (!rc && m->cfg.attn_gqa && eng_be_kind_of(m->be) != ENG_BE_CPU)
        rc = pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%s (grouped-query attention) runs on the CPU backend only "
                       "so far: no device kernels for its attention yet", eng_arch_class(m->cfg.arch));
    /* A rank's views (shard.c) are host slices and copies like the whole
     * model's: a device backend uploads those this rank uses. */
    if (!rc) rc = upload_weights(m, err, errlen);
    if (!rc) rc = hugepage_weights(m, o, err, errlen);
    if (!rc) {
        m->max_tokens = o->max_batch_tokens > 0 ? o->max_batch_tokens : 512;
        m->max_len = o->max_model_len > 0 ? o->max_model_len : m->cfg.max_position_embeddings;
        if (m->max_len > m->cfg.max_position_embeddings) m->max_len = m->cfg.max_position_embeddings;
        if (alloc_scratch(m))
            rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "cannot allocate scratch for %d tokens per step", m->max_tokens);
    }
    if (rc) { eng_model_close(m); return rc; }
    m->opened = 1;
    *out = m;
    return 0;
}

/* ===== one decoder layer ===== */

/* MLA (+ DSA when the model has an indexer; doc §3.4-3.7) on the normalized
 * input m->x; output in m->tmp_h. */
static void attention(eng_model *m, eng_kv_pool *kv, int l, int T)
{
    const eng_config *c = &m->cfg;
    const eng_layer_weights *lw = layer_w(m, l);
    eng_backend *be = m->be;
    /* Tensor parallel: this rank's heads only (q_b, kv_b rows and o_proj
     * columns sliced); the latent path and the indexer are replicated. */
    eng_shard_range hr = m->shard ? eng_shard_heads(m->shard) : (eng_shard_range){ 0, c->num_attention_heads };
    int H = c->hidden_size, nh = (int)(hr.end - hr.begin), nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim;
    int qk = nope + rope, lat = c->kv_lora_rank, vd = c->v_head_dim, ql = c->q_lora_rank;
    int kvw = lat + rope;
    float latent_eps = (float)c->latent_norm_eps;

    /* Every product of x in one call (eng_be_linear_group: one pool run, the
     * same bits as one call each): q_a, kv_a and, on full layers, the
     * indexer's key and head-weight projections. */
    int full = c->layer_index_full[l], ih = c->index_n_heads, id = c->index_head_dim;
    eng_be_lin_out xw[4] = {
        { &lw->w[ENG_W_Q_A], 0, ql, m->qr, ql, 0 },
        { &lw->w[ENG_W_KV_A], 0, kvw, m->ckv, kvw, 0 },
        { &lw->w[ENG_W_IDX_WK], 0, id, m->ki, id, 0 },
        { &lw->w[ENG_W_IDX_WPROJ], 0, ih, m->iw, ih, 0 },
    };
    eng_be_linear_group(be, xw, full ? 4 : 2, m->x, T, H);

    /* q path: qr = RMSNorm(x Wqa) (also the indexer's query input), q = qr Wqb
     * (with the indexer's query qi = qr Wq_b' on full layers: one call). */
    eng_be_rmsnorm(be, &lw->w[ENG_W_Q_A_NORM], m->qr, T, ql, ql, latent_eps, m->qr, ql);
    eng_be_lin_out qw[2] = {
        { &lw->w[ENG_W_Q_B], 0, (int64_t)nh * qk, m->q, (int64_t)nh * qk, 0 },
        { &lw->w[ENG_W_IDX_WQ_B], 0, (int64_t)ih * id, m->qi, (int64_t)ih * id, 0 },
    };
    eng_be_linear_group(be, qw, full ? 2 : 1, m->qr, T, ql);
    eng_be_rope(be, m->q, T, (int64_t)nh * qk, nh, qk, nope, rope, m->step.pos, m->inv_freq);

    /* kv path: [c | k_pe] = x Wkva; c normalized, k_pe roped (not normalized). */
    eng_be_rmsnorm(be, &lw->w[ENG_W_KV_A_NORM], m->ckv, T, kvw, lat, latent_eps, m->ckv, kvw);
    eng_be_rope(be, m->ckv, T, kvw, 1, 0, lat, rope, m->step.pos, m->inv_freq);
    const eng_be_cache *mla_cache = eng_kv_layer_mla(kv, l);
    eng_be_cache_store(be, mla_cache, m->step.slot, T, m->ckv, kvw);

    /* DSA indexer on full layers; shared layers keep the previous selection.
     * Without an indexer (GLM-4.7-Flash) no layer is full and every key set
     * keeps prepare()'s sel == NULL: dense causal attention. */
    if (full) {
        eng_be_rope(be, m->qi, T, (int64_t)ih * id, ih, id, 0, rope, m->step.pos, m->inv_freq);
        eng_be_layernorm(be, &lw->w[ENG_W_IDX_KNORM_W], &lw->w[ENG_W_IDX_KNORM_B], m->ki, T, id, id,
                         (float)c->indexer_norm_eps);
        eng_be_rope(be, m->ki, T, id, 1, 0, 0, rope, m->step.pos, m->inv_freq);
        const eng_be_cache *icache = eng_kv_layer_index(kv, l);
        eng_be_cache_store(be, icache, m->step.slot, T, m->ki, id);
        /* Head weights (x Wproj, above) in f32, with both scales folded in:
         * relu(s*a) = s*relu(a). */
        float ws = 1.0f / sqrtf((float)ih) / sqrtf((float)id);
        eng_be_scale(be, m->iw, (int64_t)T * ih, ws);
        eng_be_index_topk(be, m->qi, (int64_t)ih * id, m->iw, ih, ih, icache, m->step.keys, T, c->index_topk,
                          m->topk, m->n_topk);
        eng_be_keys_select(be, m->step.keys, T, m->topk, c->index_topk, m->n_topk, c->index_topk);
    }

    /* Absorbed attention: q_lat[h] = W_UK[h]^T q_nope[h]; attend over [c | k_pe];
     * o[h] = W_UV[h] o_lat[h]. kv_b rows per head: [W_UK (nope) ; W_UV (v)]. */
    const eng_tensor *kvb = &lw->w[ENG_W_KV_B];
    eng_be_heads hq = { nh, nope + vd, qk, lat };
    eng_be_linear_t_heads(be, kvb, 0, nope, &hq, m->q, T, (int64_t)nh * qk, m->q_lat, (int64_t)nh * lat);
    eng_be_mla_attend(be, m->q_lat, (int64_t)nh * lat, m->q + nope, (int64_t)nh * qk, qk, mla_cache, lat, nh,
                      1.0f / sqrtf((float)qk), m->step.keys, T, m->o_lat, (int64_t)nh * lat);
    eng_be_heads ho = { nh, nope + vd, lat, vd };
    eng_be_linear_heads(be, kvb, nope, vd, &ho, m->o_lat, T, (int64_t)nh * lat, m->o_v, (int64_t)nh * vd);
    eng_be_linear(be, &lw->w[ENG_W_O], 0, H, m->o_v, T, (int64_t)nh * vd, m->tmp_h, H);
    tp_sum(m, m->tmp_h, (size_t)T * (size_t)H);
}

/* Grouped-query attention (Glm4MoeForCausalLM, transformers'
 * Glm4MoeAttention) on the normalized input m->x; output in m->tmp_h.
 * q/k/v = x W (+ bias); optional per-head RMSNorm on q and k; NeoX RoPE on
 * the first qk_rope_head_dim dims of each head; K and V rows into the
 * cache; each query head attends with its group's KV head; o_proj. */
static void attention_gqa(eng_model *m, eng_kv_pool *kv, int l, int T)
{
    const eng_config *c = &m->cfg;
    const eng_layer_weights *lw = layer_w(m, l);
    eng_backend *be = m->be;
    /* Tensor parallel: this rank's query heads and the KV heads they read
     * (shard.c: whole groups, or one group's KV head replicated), so the
     * local heads are again nh / nkv per KV head; o_proj columns sliced,
     * partial sums added over the ranks. */
    eng_shard_range hr = m->shard ? eng_shard_heads(m->shard) : (eng_shard_range){ 0, c->num_attention_heads };
    eng_shard_range kr = m->shard ? eng_shard_kv_heads(m->shard) : (eng_shard_range){ 0, c->num_key_value_heads };
    int H = c->hidden_size, nh = (int)(hr.end - hr.begin), nkv = (int)(kr.end - kr.begin), hd = c->head_dim;
    int64_t qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd;
    eng_be_lin_out qkv[3] = {
        { &lw->w[ENG_W_Q_PROJ], 0, qd, m->gq, qd, 0 },
        { &lw->w[ENG_W_K_PROJ], 0, kvd, m->gk, kvd, 0 },
        { &lw->w[ENG_W_V_PROJ], 0, kvd, m->gv, kvd, 0 },
    };
    eng_be_linear_group(be, qkv, 3, m->x, T, H);
    if (c->attention_bias) {
        eng_be_add_bias(be, m->gq, qd, &lw->w[ENG_W_Q_BIAS], T, (int)qd);
        eng_be_add_bias(be, m->gk, kvd, &lw->w[ENG_W_K_BIAS], T, (int)kvd);
        eng_be_add_bias(be, m->gv, kvd, &lw->w[ENG_W_V_BIAS], T, (int)kvd);
    }
    float eps = (float)c->rms_norm_eps;
    if (c->use_qk_norm) {   /* rows of one head: [T * heads, head_dim] */
        eng_be_rmsnorm(be, &lw->w[ENG_W_Q_NORM], m->gq, T * nh, hd, hd, eps, m->gq, hd);
        eng_be_rmsnorm(be, &lw->w[ENG_W_K_NORM], m->gk, T * nkv, hd, hd, eps, m->gk, hd);
    }
    eng_be_rope_neox(be, m->gq, T, qd, nh, hd, 0, c->qk_rope_head_dim, m->step.pos, m->inv_freq);
    eng_be_rope_neox(be, m->gk, T, kvd, nkv, hd, 0, c->qk_rope_head_dim, m->step.pos, m->inv_freq);
    const eng_be_cache *kc = eng_kv_layer_k(kv, l), *vc = eng_kv_layer_v(kv, l);
    eng_be_cache_store(be, kc, m->step.slot, T, m->gk, kvd);
    eng_be_cache_store(be, vc, m->step.slot, T, m->gv, kvd);
    eng_be_gqa_attend(be, m->gq, qd, nh, nkv, hd, kc, vc, 1.0f / sqrtf((float)hd), m->step.keys, T, m->go, qd);
    eng_be_linear(be, &lw->w[ENG_W_O], 0, H, m->go, T, qd, m->tmp_h, H);
    tp_sum(m, m->tmp_h, (size_t)T * (size_t)H);
}

/* SwiGLU: out[T, H] = down(silu(gate x) * up x). extra: one more product
 * of x to run with gate and up (the MoE router), or NULL. */
static void swiglu(eng_model *m, const eng_tensor *g, const eng_tensor *u, const eng_tensor *d,
                   const float *x, int T, float *out, const eng_be_lin_out *extra)
{
    int H = m->cfg.hidden_size, I = (int)g->rows;
    eng_be_lin_out gu[3] = { { g, 0, I, m->gate, I, 0 }, { u, 0, I, m->up, I, 0 } };
    if (extra) gu[2] = *extra;
    eng_be_linear_group(m->be, gu, extra ? 3 : 2, x, T, H);
    eng_be_silu_mul(m->be, m->gate, I, m->up, I, T, I, m->act, I);
    eng_be_linear(m->be, d, 0, H, m->act, T, I, out, H);
}

/* MoE (doc §3.9) on m->x; output in m->tmp_h. Experts run in ascending id
 * over the tokens routed to them, so each token sums its experts in a fixed
 * order whatever else is in the batch. */
static void moe(eng_model *m, int l, int T)
{
    const eng_config *c = &m->cfg;
    const eng_layer_weights *lw = layer_w(m, l);
    eng_backend *be = m->be;
    int H = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok;
    eng_be_lin_out router = { &lw->w[ENG_W_ROUTER], 0, E, m->rlogits, E, 1 };   /* f32 in any --dtype */
    eng_shard_range er = m->shard ? eng_shard_experts(m->shard) : (eng_shard_range){ 0, E };
    int inter = er.end > er.begin ? (int)lw->experts[er.begin * ENG_EXP_COUNT + ENG_EXP_GATE].rows : 0;
    /* On the CPU the shared expert runs inside the MoE op when its rows fit
     * the op's work buffers (GLM-5: one shared expert as wide as a routed
     * one), in the routed experts' pool runs. Else (wider, or a device
     * backend) it runs first, into its own buffer (the routed experts use
     * gate/up/act/eout as work space), its gate and up in one call with the
     * router, and is added after the routed sum. The same bits either way. */
    const eng_tensor *sh = c->n_shared_experts > 0 ? &lw->w[ENG_W_SH_GATE] : NULL;
    int sh_in_op = sh && sh[ENG_EXP_GATE].rows <= inter && eng_be_host_memory(be);
    if (sh && !sh_in_op)
        swiglu(m, &sh[ENG_EXP_GATE], &sh[ENG_EXP_UP], &sh[ENG_EXP_DOWN], m->x, T, m->shx, &router);
    else
        eng_be_linear_group(be, &router, 1, m->x, T, H);
    eng_be_route r = { E, K, c->n_group, c->topk_group, c->norm_topk_prob, (float)c->routed_scaling_factor };
    eng_be_route_topk(be, &r, m->rlogits, E, (const float *)lw->w[ENG_W_ROUTER_BIAS].data, T, m->ridx, m->rwt);
    if (eng_be_host_memory(be)) {       /* eng_model_moe_reads; E <= 4096 (loader) */
        uint8_t seen[4096 / 8] = { 0 };
        for (int i = 0; i < T * K; i++) {
            int e = m->ridx[i];
            m->moe_experts += !(seen[e >> 3] >> (e & 7) & 1);
            seen[e >> 3] |= (uint8_t)(1u << (e & 7));
        }
        m->moe_calls++;
    }
    /* Expert parallel: this rank's experts [e0, e1), whole; otherwise every
     * expert, each sliced by FFN width (inter: this rank's width). Either way
     * the partial sums (with the shared expert's) are added over the ranks
     * once, below. */
    eng_be_moe a = { lw->experts, E, K, H, inter, T, m->x, m->ridx, m->rwt, m->tmp_h,
                     m->erows, m->ewt, m->ex, m->eout, m->gate, m->up, m->act, m->max_tokens,
                     sh_in_op ? sh : NULL };
    eng_be_moe_experts(be, &a, (int)er.begin, (int)er.end);
    if (sh && !sh_in_op)                    /* shared expert: added unscaled */
        eng_be_add_scaled(be, m->tmp_h, H, m->shx, H, NULL, T, H);
    tp_sum(m, m->tmp_h, (size_t)T * (size_t)H);
}

/* Pre-norm residual block (doc §3.2) on hidden rows h. */
static void layer_forward(eng_model *m, eng_kv_pool *kv, int l, float *h, int T)
{
    const eng_config *c = &m->cfg;
    const eng_layer_weights *lw = layer_w(m, l);
    int H = c->hidden_size;
    float eps = (float)c->rms_norm_eps;
    eng_be_rmsnorm(m->be, &lw->w[ENG_W_INPUT_NORM], h, T, H, H, eps, m->x, H);
    if (c->attn_gqa) attention_gqa(m, kv, l, T);
    else attention(m, kv, l, T);
    eng_be_add_scaled(m->be, h, H, m->tmp_h, H, NULL, T, H);
    eng_be_rmsnorm(m->be, &lw->w[ENG_W_POST_NORM], h, T, H, H, eps, m->x, H);
    if (c->layer_dense[l]) {
        swiglu(m, &lw->w[ENG_W_MLP_GATE], &lw->w[ENG_W_MLP_UP], &lw->w[ENG_W_MLP_DOWN], m->x, T, m->tmp_h, NULL);
        tp_sum(m, m->tmp_h, (size_t)T * (size_t)H);
    } else
        moe(m, l, T);
    eng_be_add_scaled(m->be, h, H, m->tmp_h, H, NULL, T, H);
}

/* ===== steps ===== */

int eng_model_logits_rows(const eng_seq *seqs, int n_seqs)
{
    int n = 0;
    for (int s = 0; s < n_seqs; s++)
        n += seqs[s].logits == ENG_LOGITS_ALL ? seqs[s].n_tokens : seqs[s].logits == ENG_LOGITS_LAST ? 1 : 0;
    return n;
}

/* Check the batch and lay out per-token positions, cache slots and key sets.
 * Returns the token count (> 0) or a negative error. */
static int prepare(eng_model *m, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, int *n_lrows,
                   char *err, size_t errlen)
{
    const eng_config *c = &m->cfg;
    int bs = eng_kv_block_size(kv), nb = eng_kv_n_blocks(kv), T = 0, nl = 0, nbt = 0;
    if (n_seqs < 1) return pl_seterr(err, errlen, PL_ERR_INVALID, "empty batch");
    if (eng_kv_n_layers(kv) < eng_config_n_layers_total(c))
        return pl_seterr(err, errlen, PL_ERR_INVALID, "KV pool has %d layers, the model %d",
                         eng_kv_n_layers(kv), eng_config_n_layers_total(c));
    for (int s = 0; s < n_seqs; s++) {
        const eng_seq *q = &seqs[s];
        if (q->n_tokens < 1 || q->pos0 < 0)
            return pl_seterr(err, errlen, PL_ERR_INVALID, "sequence %d: %d tokens at position %d", s, q->n_tokens, q->pos0);
        if (q->n_tokens > m->max_tokens - T)
            return pl_seterr(err, errlen, PL_ERR_RANGE, "step has more than %d tokens", m->max_tokens);
        if ((int64_t)q->pos0 + q->n_tokens > m->max_len)
            return pl_seterr(err, errlen, PL_ERR_TOOLONG, "sequence %d: position %lld past max_model_len %d", s,
                             (long long)q->pos0 + q->n_tokens - 1, m->max_len);
        if ((int64_t)q->n_blocks * bs < (int64_t)q->pos0 + q->n_tokens)
            return pl_seterr(err, errlen, PL_ERR_RANGE, "sequence %d: %d blocks of %d do not cover %d positions",
                             s, q->n_blocks, bs, q->pos0 + q->n_tokens);
        int used = (q->pos0 + q->n_tokens + bs - 1) / bs;
        for (int b = 0; b < used; b++)
            if (q->block_table[b] < 0 || q->block_table[b] >= nb)
                return pl_seterr(err, errlen, PL_ERR_RANGE, "sequence %d: block %d outside the pool", s, q->block_table[b]);
        if (used > m->bt_cap - nbt) {   /* grows only when a step needs more than ever before */
            int cap = nbt + used + 1024;
            int32_t *bt = realloc(m->bt, (size_t)cap * sizeof *bt);
            if (!bt) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory for block tables");
            for (int k = 0; k < T; k++) m->keys[k].block_table = bt + (m->keys[k].block_table - m->bt);
            m->bt = bt;
            m->bt_cap = cap;
        }
        int32_t *btab = m->bt + nbt;
        memcpy(btab, q->block_table, (size_t)used * sizeof *btab);
        nbt += used;
        for (int i = 0; i < q->n_tokens; i++) {
            if (q->tokens[i] < 0 || q->tokens[i] >= c->vocab_size)
                return pl_seterr(err, errlen, PL_ERR_RANGE, "sequence %d: token id %d outside the vocabulary (%d)",
                                 s, q->tokens[i], c->vocab_size);
            int p = q->pos0 + i;
            m->ids[T] = q->tokens[i];
            m->pos[T] = p;
            m->slot[T] = (int64_t)btab[p / bs] * bs + p % bs;
            m->keys[T] = (eng_be_keys){ btab, bs, p + 1, NULL, 0 };
            if (q->logits == ENG_LOGITS_ALL || (q->logits == ENG_LOGITS_LAST && i == q->n_tokens - 1))
                m->lrows[nl++] = T;
            T++;
        }
    }
    *n_lrows = nl;
    eng_be_step host = { T, m->ids, m->pos, m->slot, m->keys, m->bt, nbt, m->lrows, nl };
    int rc = eng_be_step_upload(m->be, &host, &m->step, err, errlen);
    return rc ? rc : T;
}

/* Gather the asked rows of normalized hidden states and apply lm_head.
 * Tensor parallel: each rank scores its vocabulary rows, TP_HEAD_ROWS rows
 * at a time padded to the widest rank's range, and an all-gather puts the
 * pieces side by side (want: the logits are asked for; logits is NULL on
 * the followers, which only contribute). */
static void head(eng_model *m, const float *hn, int nl, int want, float *logits)
{
    const eng_config *c = &m->cfg;
    int H = c->hidden_size, V = c->vocab_size;
    if (!nl || !want) return;
    eng_be_gather_rows(m->be, hn, H, m->step.lrows, nl, H, m->ex, H);
    if (!m->shard) {
        float *lo = m->dlogits ? m->dlogits : logits;
        eng_be_linear(m->be, eng_weights_lm_head(m->w), 0, V, m->ex, nl, H, lo, V);
        eng_be_download(m->be, logits, lo, (size_t)nl * (size_t)V * sizeof(float));
        return;
    }
    /* Sharded: lloc and lgat are backend memory; the pieces are laid side
     * by side on the host (rank 0 only: the followers pass logits NULL). */
    int N = eng_comm_size(m->comm);
    eng_shard_range v = eng_shard_vocab(m->shard);
    int64_t vm = eng_shard_vocab_max(m->shard);
    for (int r0 = 0; r0 < nl && !m->comm_rc; r0 += TP_HEAD_ROWS) {
        int rows = nl - r0 < TP_HEAD_ROWS ? nl - r0 : TP_HEAD_ROWS;
        size_t bytes = (size_t)rows * (size_t)vm * sizeof(float);
        eng_be_linear(m->be, eng_shard_lm_head(m->shard), 0, v.end - v.begin, m->ex + (int64_t)r0 * H, rows, H,
                      m->lloc, vm);
        if (!eng_be_host_memory(m->be)) eng_be_sync(m->be, NULL, 0);   /* lloc complete: see tp_sum */
        m->comm_rc = eng_comm_all_gather(m->comm, m->lloc, bytes, m->lgat);
        if (!logits || m->comm_rc) continue;
        const float *g = m->lgat;
        if (m->lgat_h) {
            eng_be_download(m->be, m->lgat_h, m->lgat, bytes * (size_t)N);
            g = m->lgat_h;
        }
        for (int q = 0; q < N; q++) {
            eng_shard_range vq = eng_shard_split(V, 1, q, N);
            for (int i = 0; i < rows; i++)
                memcpy(logits + (int64_t)(r0 + i) * V + vq.begin, g + ((int64_t)q * rows + i) * vm,
                       (size_t)(vq.end - vq.begin) * sizeof(float));
        }
    }
}

/* Tensor parallel (vocab-parallel embedding): a rank embeds the tokens of
 * its vocabulary range, zeros elsewhere, and the sum over ranks is exact
 * (one non-zero term per element). As backend ops, so that it runs on a
 * device too: embed every token with its local id (0 for the others) into
 * temb, then gather each token's row, or temb's last row (never written,
 * zero from eng_be_alloc) for a token another rank holds. */
static void embed_tokens(eng_model *m, float *out)
{
    int H = m->cfg.hidden_size, T = m->step.n;
    if (!m->shard) {
        eng_be_embed(m->be, eng_weights_embed(m->w), m->step.ids, T, out, H);
        return;
    }
    eng_shard_range v = eng_shard_vocab(m->shard);
    for (int t = 0; t < T; t++) {       /* m->ids: the step's token ids on the host (prepare) */
        int in = m->ids[t] >= v.begin && m->ids[t] < v.end;
        m->tlid_h[t] = in ? m->ids[t] - (int32_t)v.begin : 0;
        m->trow_h[t] = in ? t : m->max_tokens;
    }
    eng_be_upload(m->be, m->tlid, m->tlid_h, (size_t)T * sizeof(int32_t));
    eng_be_upload(m->be, m->trow, m->trow_h, (size_t)T * sizeof(int32_t));
    eng_be_embed(m->be, eng_shard_embed(m->shard), m->tlid, T, m->temb, H);
    eng_be_gather_rows(m->be, m->temb, H, m->trow, T, H, out, H);
    tp_sum(m, out, (size_t)T * (size_t)H);
}

/* The step after prepare(), on every rank. */
static int forward_local(eng_model *m, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, int T, int nl,
                         int want_logits, float *logits, float *hidden)
{
    const eng_config *c = &m->cfg;
    int H = c->hidden_size;
    embed_tokens(m, m->h);
    for (int l = 0; l < c->num_hidden_layers && !m->comm_rc; l++) layer_forward(m, kv, l, m->h, T);
    /* Final norm on every row (in place): the MTP wants all of them. */
    eng_be_rmsnorm(m->be, eng_weights_final_norm(m->w), m->h, T, H, H, (float)c->rms_norm_eps, m->h, H);
    if (hidden) eng_be_download(m->be, hidden, m->h, (size_t)T * (size_t)H * sizeof(float));
    head(m, m->h, nl, want_logits, logits);
    return m->comm_rc;
}

static int mtp_local(eng_model *m, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs, int T, int nl,
                     const float *hidden_in, int want_logits, float *logits, float *hidden_out)
{
    const eng_config *c = &m->cfg;
    int H = c->hidden_size, L = c->num_hidden_layers;
    const eng_layer_weights *lw = layer_w(m, L);
    float eps = (float)c->rms_norm_eps;
    /* u = [RMSNorm(embed(token_{p+1}); enorm) | RMSNorm(g_p; hnorm)] — embedding first. */
    embed_tokens(m, m->x);
    eng_be_rmsnorm(m->be, &lw->w[ENG_W_MTP_ENORM], m->x, T, H, H, eps, m->u, 2 * H);
    if (m->dhin) {                  /* the caller's rows onto the device */
        eng_be_upload(m->be, m->dhin, hidden_in, (size_t)T * (size_t)H * sizeof(float));
        hidden_in = m->dhin;
    }
    eng_be_rmsnorm(m->be, &lw->w[ENG_W_MTP_HNORM], hidden_in, T, H, H, eps, m->u + H, 2 * H);
    eng_be_linear(m->be, &lw->w[ENG_W_MTP_EH], 0, H, m->u, T, 2 * H, m->h, H);
    layer_forward(m, kv, L, m->h, T);
    eng_be_rmsnorm(m->be, &lw->w[ENG_W_MTP_HEAD_NORM], m->h, T, H, H, eps, m->h, H);
    if (hidden_out) eng_be_download(m->be, hidden_out, m->h, (size_t)T * (size_t)H * sizeof(float));
    head(m, m->h, nl, want_logits, logits);
    return m->comm_rc;
}

/* ===== tensor parallel: step metadata
 *
 * Rank 0 broadcasts a fixed header, then the payload: per sequence
 * {n_tokens, pos0, n_blocks, logits}, every token, the block tables (only
 * the blocks the step covers) and, for the MTP, hidden_in. The followers
 * rebuild the eng_seq batch from it: every rank runs the same batch. */

enum { TP_OP_FORWARD = 1, TP_OP_MTP = 2, TP_OP_STOP = 3 };

typedef struct tp_meta {
    int32_t op, n_seqs, n_tokens, n_table, want_logits;
    int32_t kv_blocks, kv_block_size, kv_dtype;     /* rank 0's pool geometry */
    uint64_t payload_bytes;
} tp_meta;

static int comm_error(eng_model *m, char *err, size_t errlen)
{
    return pl_seterr(err, errlen, PL_ERR_IO, "tensor-parallel rank %d: a collective failed (a rank died or gave up)",
                     m->comm ? eng_comm_rank(m->comm) : 0);
}

static int tp_send(eng_model *m, eng_kv_pool *kv, int op, const eng_seq *seqs, int n_seqs, int T,
                   const float *hidden_in, int want_logits, char *err, size_t errlen)
{
    int bs = eng_kv_block_size(kv), H = m->cfg.hidden_size;
    tp_meta h = { op, n_seqs, T, 0, want_logits, eng_kv_n_blocks(kv), bs, (int32_t)eng_kv_dtype(kv), 0 };
    for (int s = 0; s < n_seqs; s++) h.n_table += (seqs[s].pos0 + seqs[s].n_tokens + bs - 1) / bs;
    size_t bytes = ((size_t)n_seqs * 4 + (size_t)T + (size_t)h.n_table) * sizeof(int32_t);
    if (hidden_in) bytes += (size_t)T * (size_t)H * sizeof(float);
    h.payload_bytes = bytes;
    if (bytes > m->meta_cap) {
        unsigned char *p = realloc(m->meta, bytes);
        if (!p) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory for the step metadata");
        m->meta = p;
        m->meta_cap = bytes;
    }
    int32_t *q = (int32_t *)m->meta;
    for (int s = 0; s < n_seqs; s++) {
        *q++ = seqs[s].n_tokens; *q++ = seqs[s].pos0;
        *q++ = (seqs[s].pos0 + seqs[s].n_tokens + bs - 1) / bs; *q++ = seqs[s].logits;
    }
    for (int s = 0; s < n_seqs; s++) { memcpy(q, seqs[s].tokens, (size_t)seqs[s].n_tokens * 4); q += seqs[s].n_tokens; }
    for (int s = 0; s < n_seqs; s++) {
        int nb = (seqs[s].pos0 + seqs[s].n_tokens + bs - 1) / bs;
        memcpy(q, seqs[s].block_table, (size_t)nb * 4);
        q += nb;
    }
    if (hidden_in) memcpy(q, hidden_in, (size_t)T * (size_t)H * sizeof(float));
    if (eng_comm_broadcast(m->comm, &h, sizeof h, 0) || eng_comm_broadcast(m->comm, m->meta, bytes, 0)) {
        m->comm_rc = PL_ERR_IO;
        return comm_error(m, err, errlen);
    }
    return 0;
}

static void tp_stop(eng_model *m)
{
    if (!m->comm || !m->opened || eng_comm_rank(m->comm) != 0 || m->comm_rc) return;
    tp_meta h = { .op = TP_OP_STOP };
    if (eng_comm_broadcast(m->comm, &h, sizeof h, 0)) m->comm_rc = PL_ERR_IO;
}

int eng_model_comm_failed(const eng_model *m) { return m->comm_rc != 0; }
int eng_model_tp_size(const eng_model *m) { return m->comm ? eng_comm_size(m->comm) : 1; }

int eng_model_follow(eng_model *m, char *err, size_t errlen)
{
    if (!m->comm || eng_comm_rank(m->comm) == 0)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "eng_model_follow is for tensor-parallel ranks above 0");
    eng_seq *seqs = NULL;
    int cap_seqs = 0, rc = 0;
    for (;;) {
        tp_meta h;
        if (eng_comm_broadcast(m->comm, &h, sizeof h, 0)) { rc = PL_ERR_IO; break; }
        if (h.op == TP_OP_STOP) break;
        /* The header comes from rank 0 of the same binary: a mismatch is a bug, and the group gives up. */
        int H = m->cfg.hidden_size;
        uint64_t need = ((uint64_t)h.n_seqs * 4 + (uint64_t)h.n_tokens + (uint64_t)h.n_table) * 4 +
                        (h.op == TP_OP_MTP ? (uint64_t)h.n_tokens * (uint64_t)H * 4 : 0);
        if ((h.op != TP_OP_FORWARD && h.op != TP_OP_MTP) || h.n_seqs < 1 || h.n_tokens < 1 ||
            h.n_tokens > m->max_tokens || h.n_table < 0 || need != h.payload_bytes) {
            rc = pl_seterr(err, errlen, PL_ERR_INTERNAL, "tensor-parallel rank %d: bad step metadata", eng_comm_rank(m->comm));
            break;
        }
        if (need > m->meta_cap) {
            unsigned char *p = realloc(m->meta, need);
            if (!p) { rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory for the step metadata"); break; }
            m->meta = p;
            m->meta_cap = need;
        }
        if (h.n_seqs > cap_seqs) {
            eng_seq *p = realloc(seqs, (size_t)h.n_seqs * sizeof *p);
            if (!p) { rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory"); break; }
            seqs = p;
            cap_seqs = h.n_seqs;
        }
        if (eng_comm_broadcast(m->comm, m->meta, need, 0)) { rc = PL_ERR_IO; break; }
        if (!m->fkv || eng_kv_n_blocks(m->fkv) != h.kv_blocks || eng_kv_block_size(m->fkv) != h.kv_block_size ||
            (int)eng_kv_dtype(m->fkv) != h.kv_dtype) {
            eng_kv_pool_free(m->fkv);
            m->fkv = NULL;
            if ((rc = eng_kv_pool_create(m->be, &m->cfg, (enum eng_cache_dtype)h.kv_dtype, h.kv_blocks, h.kv_block_size,
                                         &m->fkv, err, errlen)))
                break;
        }
        const int32_t *q = (const int32_t *)m->meta, *tok = q + 4 * h.n_seqs, *tab = tok + h.n_tokens;
        int64_t tt = 0, tb = 0;
        for (int s = 0; s < h.n_seqs; s++) {
            seqs[s] = (eng_seq){ tok + tt, q[4 * s], q[4 * s + 1], tab + tb, q[4 * s + 2], q[4 * s + 3] };
            tt += q[4 * s];
            tb += q[4 * s + 2];
        }
        if (tt != h.n_tokens || tb != h.n_table) {
            rc = pl_seterr(err, errlen, PL_ERR_INTERNAL, "tensor-parallel rank %d: bad step metadata", eng_comm_rank(m->comm));
            break;
        }
        int nl, T = prepare(m, m->fkv, seqs, h.n_seqs, &nl, err, errlen);
        if (T < 0) { rc = T; break; }
        rc = h.op == TP_OP_FORWARD ? forward_local(m, m->fkv, seqs, h.n_seqs, T, nl, h.want_logits, NULL, NULL)
                                   : mtp_local(m, m->fkv, seqs, h.n_seqs, T, nl, (const float *)(tab + tb),
                                               h.want_logits, NULL, NULL);
        if (rc) { comm_error(m, err, errlen); break; }
    }
    /* A follower that leaves on its own (not at rank 0's stop) takes the group down with it. */
    if (rc && rc != PL_ERR_IO) eng_comm_abort(m->comm);
    if (rc) m->comm_rc = m->comm_rc ? m->comm_rc : rc;
    free(seqs);
    return rc;
}

int eng_model_forward(eng_model *m, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs,
                      float *logits, float *hidden, char *err, size_t errlen)
{
    int nl, T = prepare(m, kv, seqs, n_seqs, &nl, err, errlen);
    if (T < 0) return T;
    if (m->comm_rc) return comm_error(m, err, errlen);
    if (m->comm && tp_send(m, kv, TP_OP_FORWARD, seqs, n_seqs, T, NULL, logits != NULL, err, errlen)) return PL_ERR_IO;
    if (forward_local(m, kv, seqs, n_seqs, T, nl, logits != NULL, logits, hidden)) return comm_error(m, err, errlen);
    return eng_be_sync(m->be, err, errlen);
}

int eng_model_mtp_forward(eng_model *m, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs,
                          const float *hidden_in, float *logits, float *hidden_out,
                          char *err, size_t errlen)
{
    const eng_config *c = &m->cfg;
    if (!c->has_mtp_weights) return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "the checkpoint has no MTP layer");
    int nl, T = prepare(m, kv, seqs, n_seqs, &nl, err, errlen);
    if (T < 0) return T;
    if (m->comm_rc) return comm_error(m, err, errlen);
    if (m->comm && tp_send(m, kv, TP_OP_MTP, seqs, n_seqs, T, hidden_in, logits != NULL, err, errlen)) return PL_ERR_IO;
    if (mtp_local(m, kv, seqs, n_seqs, T, nl, hidden_in, logits != NULL, logits, hidden_out))
        return comm_error(m, err, errlen);
    return eng_be_sync(m->be, err, errlen);
}
