/* model.c — GLM-5 / GLM-4.7-Flash / GLM-4.5 forward pass on backend ops (doc
 * glm5-architecture §3, §4.2). GLM-4.7-Flash is the same graph without the
 * DSA indexer: every layer (and the MTP layer) attends densely and causally.
 * GLM-4.5/4.6/4.7 (Glm4MoeForCausalLM) swap MLA for grouped-query attention
 * (attention_gqa) around the same MoE, norms and MTP layer. */
#include "model.h"

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
};

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

void eng_model_close(eng_model *m)
{
    if (!m) return;
    void *bufs[] = { m->inv_freq, m->h, m->x, m->qr, m->q, m->ckv, m->q_lat, m->o_lat, m->o_v, m->tmp_h,
                     m->qi, m->ki, m->iw, m->gate, m->up, m->act, m->rlogits, m->rwt, m->ridx, m->erows,
                     m->ewt, m->ex, m->eout, m->u, m->topk, m->n_topk, m->dlogits, m->dhin,
                     m->gq, m->gk, m->gv, m->go };
    for (size_t i = 0; i < PL_ARRAY_LEN(bufs); i++) if (m->be) eng_be_dealloc(m->be, bufs[i]);
    void *host[] = { m->pos, m->slot, m->keys, m->lrows, m->ids, m->bt };
    for (size_t i = 0; i < PL_ARRAY_LEN(host); i++) free(host[i]);
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

/* Every weight view onto the device (no-op on the CPU). */
static int upload_weights(eng_model *m, char *err, size_t errlen)
{
    const eng_config *c = &m->cfg;
    const eng_tensor *top[] = { eng_weights_embed(m->w), eng_weights_final_norm(m->w), eng_weights_lm_head(m->w) };
    int rc = 0;
    for (size_t i = 0; i < PL_ARRAY_LEN(top) && !rc; i++) if (top[i]->data) rc = eng_be_tensor_upload(m->be, top[i], err, errlen);
    for (int l = 0; l < eng_config_n_layers_total(c) && !rc; l++) {
        const eng_layer_weights *lw = eng_weights_layer(m->w, l);
        if (l == c->num_hidden_layers && !c->has_mtp_weights) break;
        for (int s = 0; s < ENG_W_LAYER_COUNT && !rc; s++)
            if (lw->w[s].data) rc = eng_be_tensor_upload(m->be, &lw->w[s], err, errlen);
        for (int e = 0; lw->experts && e < c->n_routed_experts * ENG_EXP_COUNT && !rc; e++)
            rc = eng_be_tensor_upload(m->be, &lw->experts[e], err, errlen);
    }
    return rc;
}

int eng_model_open(const char *dir, const eng_model_opts *o, eng_model **out, char *err, size_t errlen)
{
    *out = NULL;
    eng_model *m = calloc(1, sizeof *m);
    if (!m) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    int rc = eng_weights_load(dir, &o->load, &m->cfg, &m->w, err, errlen);
    if (!rc) rc = eng_be_create(o->backend, o->n_threads, &m->be, err, errlen);
    /* The GQA ops (eng_be_gqa_attend, _rope_neox, _add_bias) have CPU
     * bodies only so far: refuse rather than let a device run CPU code. */
    if (!rc && m->cfg.attn_gqa && eng_be_kind_of(m->be) != ENG_BE_CPU)
        rc = pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%s (grouped-query attention) runs on the CPU backend only "
                       "so far: no device kernels for its attention yet", eng_arch_class(m->cfg.arch));
    if (!rc) rc = upload_weights(m, err, errlen);
    if (!rc) {
        m->max_tokens = o->max_batch_tokens > 0 ? o->max_batch_tokens : 512;
        m->max_len = o->max_model_len > 0 ? o->max_model_len : m->cfg.max_position_embeddings;
        if (m->max_len > m->cfg.max_position_embeddings) m->max_len = m->cfg.max_position_embeddings;
        if (alloc_scratch(m))
            rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "cannot allocate scratch for %d tokens per step", m->max_tokens);
    }
    if (rc) { eng_model_close(m); return rc; }
    *out = m;
    return 0;
}

/* ===== one decoder layer ===== */

/* MLA (+ DSA when the model has an indexer; doc §3.4-3.7) on the normalized
 * input m->x; output in m->tmp_h. */
static void attention(eng_model *m, eng_kv_pool *kv, int l, int T)
{
    const eng_config *c = &m->cfg;
    const eng_layer_weights *lw = eng_weights_layer(m->w, l);
    eng_backend *be = m->be;
    int H = c->hidden_size, nh = c->num_attention_heads, nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim;
    int qk = nope + rope, lat = c->kv_lora_rank, vd = c->v_head_dim, ql = c->q_lora_rank;
    int kvw = lat + rope;
    float latent_eps = (float)c->latent_norm_eps;

    /* q path: qr = RMSNorm(x Wqa) (also the indexer's query input), q = qr Wqb. */
    eng_be_linear(be, &lw->w[ENG_W_Q_A], 0, ql, m->x, T, H, m->qr, ql);
    eng_be_rmsnorm(be, &lw->w[ENG_W_Q_A_NORM], m->qr, T, ql, ql, latent_eps, m->qr, ql);
    eng_be_linear(be, &lw->w[ENG_W_Q_B], 0, (int64_t)nh * qk, m->qr, T, ql, m->q, (int64_t)nh * qk);
    eng_be_rope(be, m->q, T, (int64_t)nh * qk, nh, qk, nope, rope, m->step.pos, m->inv_freq);

    /* kv path: [c | k_pe] = x Wkva; c normalized, k_pe roped (not normalized). */
    eng_be_linear(be, &lw->w[ENG_W_KV_A], 0, kvw, m->x, T, H, m->ckv, kvw);
    eng_be_rmsnorm(be, &lw->w[ENG_W_KV_A_NORM], m->ckv, T, kvw, lat, latent_eps, m->ckv, kvw);
    eng_be_rope(be, m->ckv, T, kvw, 1, 0, lat, rope, m->step.pos, m->inv_freq);
    const eng_be_cache *mla_cache = eng_kv_layer_mla(kv, l);
    eng_be_cache_store(be, mla_cache, m->step.slot, T, m->ckv, kvw);

    /* DSA indexer on full layers; shared layers keep the previous selection.
     * Without an indexer (GLM-4.7-Flash) no layer is full and every key set
     * keeps prepare()'s sel == NULL: dense causal attention. */
    if (c->layer_index_full[l]) {
        int ih = c->index_n_heads, id = c->index_head_dim;
        eng_be_linear(be, &lw->w[ENG_W_IDX_WQ_B], 0, (int64_t)ih * id, m->qr, T, ql, m->qi, (int64_t)ih * id);
        eng_be_rope(be, m->qi, T, (int64_t)ih * id, ih, id, 0, rope, m->step.pos, m->inv_freq);
        eng_be_linear(be, &lw->w[ENG_W_IDX_WK], 0, id, m->x, T, H, m->ki, id);
        eng_be_layernorm(be, &lw->w[ENG_W_IDX_KNORM_W], &lw->w[ENG_W_IDX_KNORM_B], m->ki, T, id, id,
                         (float)c->indexer_norm_eps);
        eng_be_rope(be, m->ki, T, id, 1, 0, 0, rope, m->step.pos, m->inv_freq);
        const eng_be_cache *icache = eng_kv_layer_index(kv, l);
        eng_be_cache_store(be, icache, m->step.slot, T, m->ki, id);
        /* Head weights in f32, with both scales folded in: relu(s*a) = s*relu(a). */
        eng_be_linear(be, &lw->w[ENG_W_IDX_WPROJ], 0, ih, m->x, T, H, m->iw, ih);
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
}

/* Grouped-query attention (Glm4MoeForCausalLM, transformers'
 * Glm4MoeAttention) on the normalized input m->x; output in m->tmp_h.
 * q/k/v = x W (+ bias); optional per-head RMSNorm on q and k; NeoX RoPE on
 * the first qk_rope_head_dim dims of each head; K and V rows into the
 * cache; each query head attends with its group's KV head; o_proj. */
static void attention_gqa(eng_model *m, eng_kv_pool *kv, int l, int T)
{
    const eng_config *c = &m->cfg;
    const eng_layer_weights *lw = eng_weights_layer(m->w, l);
    eng_backend *be = m->be;
    int H = c->hidden_size, nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    int64_t qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd;
    eng_be_linear(be, &lw->w[ENG_W_Q_PROJ], 0, qd, m->x, T, H, m->gq, qd);
    eng_be_linear(be, &lw->w[ENG_W_K_PROJ], 0, kvd, m->x, T, H, m->gk, kvd);
    eng_be_linear(be, &lw->w[ENG_W_V_PROJ], 0, kvd, m->x, T, H, m->gv, kvd);
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
}

/* SwiGLU: out[T, H] = down(silu(gate x) * up x). */
static void swiglu(eng_model *m, const eng_tensor *g, const eng_tensor *u, const eng_tensor *d,
                   const float *x, int T, float *out)
{
    int H = m->cfg.hidden_size, I = (int)g->rows;
    eng_be_linear(m->be, g, 0, I, x, T, H, m->gate, I);
    eng_be_linear(m->be, u, 0, I, x, T, H, m->up, I);
    eng_be_silu_mul(m->be, m->gate, I, m->up, I, T, I, m->act, I);
    eng_be_linear(m->be, d, 0, H, m->act, T, I, out, H);
}

/* MoE (doc §3.9) on m->x; output in m->tmp_h. Experts run in ascending id
 * over the tokens routed to them, so each token sums its experts in a fixed
 * order whatever else is in the batch. */
static void moe(eng_model *m, int l, int T)
{
    const eng_config *c = &m->cfg;
    const eng_layer_weights *lw = eng_weights_layer(m->w, l);
    eng_backend *be = m->be;
    int H = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok;
    eng_be_linear(be, &lw->w[ENG_W_ROUTER], 0, E, m->x, T, H, m->rlogits, E);
    eng_be_route r = { E, K, c->n_group, c->topk_group, c->norm_topk_prob, (float)c->routed_scaling_factor };
    eng_be_route_topk(be, &r, m->rlogits, E, (const float *)lw->w[ENG_W_ROUTER_BIAS].data, T, m->ridx, m->rwt);
    eng_be_moe a = { lw->experts, E, K, H, c->moe_intermediate_size, T, m->x, m->ridx, m->rwt, m->tmp_h,
                     m->erows, m->ewt, m->ex, m->eout, m->gate, m->up, m->act };
    eng_be_moe_experts(be, &a, 0, E);
    if (c->n_shared_experts > 0) {         /* shared expert: added unscaled */
        swiglu(m, &lw->w[ENG_W_SH_GATE], &lw->w[ENG_W_SH_UP], &lw->w[ENG_W_SH_DOWN], m->x, T, m->eout);
        eng_be_add_scaled(be, m->tmp_h, H, m->eout, H, NULL, T, H);
    }
}

/* Pre-norm residual block (doc §3.2) on hidden rows h. */
static void layer_forward(eng_model *m, eng_kv_pool *kv, int l, float *h, int T)
{
    const eng_config *c = &m->cfg;
    const eng_layer_weights *lw = eng_weights_layer(m->w, l);
    int H = c->hidden_size;
    float eps = (float)c->rms_norm_eps;
    eng_be_rmsnorm(m->be, &lw->w[ENG_W_INPUT_NORM], h, T, H, H, eps, m->x, H);
    if (c->attn_gqa) attention_gqa(m, kv, l, T);
    else attention(m, kv, l, T);
    eng_be_add_scaled(m->be, h, H, m->tmp_h, H, NULL, T, H);
    eng_be_rmsnorm(m->be, &lw->w[ENG_W_POST_NORM], h, T, H, H, eps, m->x, H);
    if (c->layer_dense[l])
        swiglu(m, &lw->w[ENG_W_MLP_GATE], &lw->w[ENG_W_MLP_UP], &lw->w[ENG_W_MLP_DOWN], m->x, T, m->tmp_h);
    else
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

/* Gather the asked rows of normalized hidden states and apply lm_head. */
static void head(eng_model *m, const float *hn, int nl, float *logits)
{
    const eng_config *c = &m->cfg;
    if (!nl || !logits) return;
    float *lo = m->dlogits ? m->dlogits : logits;
    eng_be_gather_rows(m->be, hn, c->hidden_size, m->step.lrows, nl, c->hidden_size, m->ex, c->hidden_size);
    eng_be_linear(m->be, eng_weights_lm_head(m->w), 0, c->vocab_size, m->ex, nl, c->hidden_size, lo, c->vocab_size);
    eng_be_download(m->be, logits, lo, (size_t)nl * (size_t)c->vocab_size * sizeof(float));
}

static void embed_tokens(eng_model *m, float *out)
{
    eng_be_embed(m->be, eng_weights_embed(m->w), m->step.ids, m->step.n, out, m->cfg.hidden_size);
}

int eng_model_forward(eng_model *m, eng_kv_pool *kv, const eng_seq *seqs, int n_seqs,
                      float *logits, float *hidden, char *err, size_t errlen)
{
    const eng_config *c = &m->cfg;
    int nl, T = prepare(m, kv, seqs, n_seqs, &nl, err, errlen);
    if (T < 0) return T;
    int H = c->hidden_size;
    embed_tokens(m, m->h);
    for (int l = 0; l < c->num_hidden_layers; l++) layer_forward(m, kv, l, m->h, T);
    /* Final norm on every row (in place): the MTP wants all of them. */
    eng_be_rmsnorm(m->be, eng_weights_final_norm(m->w), m->h, T, H, H, (float)c->rms_norm_eps, m->h, H);
    if (hidden) eng_be_download(m->be, hidden, m->h, (size_t)T * (size_t)H * sizeof(float));
    head(m, m->h, nl, logits);
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
    int H = c->hidden_size, L = c->num_hidden_layers;
    const eng_layer_weights *lw = eng_weights_layer(m->w, L);
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
    head(m, m->h, nl, logits);
    return eng_be_sync(m->be, err, errlen);
}
