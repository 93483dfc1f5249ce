/* mkmodel.c — presets, deterministic weights, safetensors writer. */
#include "mkmodel.h"
#include "tokenizer_train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ===== presets ===== */

/* GLM's 36 added tokens sit at the top of the trained vocabulary; we keep
 * the same relative ids (endoftext +0, user +7, observation +9) so the
 * eos/pad ids of config.json mean what they mean for the real models. */
static void set_special_ids(eng_config *c, int base)
{
    c->eos_token_id[0] = base; c->eos_token_id[1] = base + 7; c->eos_token_id[2] = base + 9;
    c->n_eos = 3;
    c->pad_token_id = base;
    c->bos_token_id = 0;
}

int eng_mk_arch_parse(const char *s, enum eng_arch *out)
{
    if (!strcmp(s, "glm-moe-dsa") || !strcmp(s, "glm5")) *out = ENG_ARCH_GLM_MOE_DSA;
    else if (!strcmp(s, "glm4-moe-lite") || !strcmp(s, "glm-4.7-flash")) *out = ENG_ARCH_GLM4_MOE_LITE;
    else if (!strcmp(s, "glm4-moe") || !strcmp(s, "glm-4.5")) *out = ENG_ARCH_GLM4_MOE;
    else return PL_ERR_INVALID;
    return 0;
}

/* The sizes a preset sets; the rest comes from the arch's defaults. Every
 * preset has one shared expert, as many KV heads as heads, its first layer
 * dense, and GLM's special ids at the top of its vocabulary. */
struct preset {
    const char *name;
    enum eng_arch arch;
    int vocab, hidden, inter, moe_inter, layers, heads, q_lora, kv_lora, nope, rope, v, experts, top_k, max_pos;
    int index_heads, index_dim, index_topk, index_freq, index_offset;   /* GLM-5 only */
};

static const struct preset k_presets[] = {
    /* GLM-5 tiny: small enough for a test in well under a second, yet every
     * path runs: index_topk 8 < prompt lengths (sparse attention),
     * IndexShare (full, full, shared, full, shared), dense + MoE layers,
     * partial FP8 blocks (80-row kv_a, 96-wide experts), the MTP layer. */
    { "tiny", ENG_ARCH_GLM_MOE_DSA, 1024, 256, 512, 96, 5, 4, 128, 64, 48, 16, 64, 8, 2, 4096, 8, 64, 8, 2, 2 },
    /* GLM-5 small: ~280M parameters, ~110M active per token: CPU speed work. */
    { "small", ENG_ARCH_GLM_MOE_DSA, 32768, 1024, 2816, 512, 8, 8, 512, 256, 64, 32, 64, 16, 4, 32768,
      8, 64, 256, 4, 3 },
    /* GLM-4.7-Flash tiny: 1 dense + 3 MoE layers + MTP, no indexer, head dims
     * unlike GLM-5's tiny, partial FP8 blocks (kv_a 64+16 = 80 rows). With
     * Flash's own routed_scaling_factor 1.8 and theta 1e6 (its defaults), a
     * value read from the wrong place shows in the goldens. */
    { "tiny", ENG_ARCH_GLM4_MOE_LITE, 1024, 256, 512, 96, 4, 4, 96, 64, 32, 16, 48, 8, 2, 4096, 0, 0, 0, 0, 0 },
    /* GLM-4.7-Flash small: GLM-5 small's sizes without the indexer. */
    { "small", ENG_ARCH_GLM4_MOE_LITE, 32768, 1024, 2816, 512, 8, 8, 384, 256, 64, 32, 64, 16, 4, 32768,
      0, 0, 0, 0, 0 },
    /* "uneven": tensor-parallel tests. Nothing divides evenly over 4 ranks
     * (6 heads, 6 experts, vocabulary 1003, FFN widths 510 and 90), so the
     * shards differ in size; 3 layers (dense, MoE, MoE) + MTP. */
    { "uneven", ENG_ARCH_GLM_MOE_DSA, 1003, 256, 510, 90, 3, 6, 128, 64, 48, 16, 64, 6, 2, 4096, 8, 64, 8, 2, 2 },
    { "uneven", ENG_ARCH_GLM4_MOE_LITE, 1003, 256, 510, 90, 3, 6, 96, 64, 32, 16, 48, 6, 2, 4096, 0, 0, 0, 0, 0 },
};

static void preset_apply(eng_config *c, const struct preset *p)
{
    c->vocab_size = p->vocab; c->hidden_size = p->hidden; c->intermediate_size = p->inter;
    c->moe_intermediate_size = p->moe_inter; c->num_hidden_layers = p->layers;
    c->num_attention_heads = c->num_key_value_heads = p->heads;
    c->q_lora_rank = p->q_lora; c->kv_lora_rank = p->kv_lora;
    c->qk_nope_head_dim = p->nope; c->qk_rope_head_dim = p->rope; c->v_head_dim = p->v;
    c->n_routed_experts = p->experts; c->num_experts_per_tok = p->top_k; c->n_shared_experts = 1;
    c->first_k_dense_replace = 1;
    c->max_position_embeddings = p->max_pos;
    if (c->has_indexer) {
        c->index_n_heads = p->index_heads; c->index_head_dim = p->index_dim; c->index_topk = p->index_topk;
        c->index_topk_freq = p->index_freq; c->index_skip_topk_offset = p->index_offset;
    }
    set_special_ids(c, p->vocab - 64);
}

/* GLM-4.5 family (Glm4MoeForCausalLM, GQA). Real shapes: GLM-4.5-Air
 * ("air", the default) and GLM-4.5/4.6/4.7 355B ("355b"), from their
 * config.json. Test presets: 1 dense + 3 MoE layers + MTP;
 * tiny has q/k norms and groups of 4 query heads per KV head, tiny-air none
 * and groups of 2, with a head_dim (40) whose K/V projections (80 rows) end
 * in a partial FP8 block; small is for CPU speed work. */
struct preset_gqa {
    const char *name;
    int real;
    int vocab, hidden, inter, moe_inter, layers, heads, kv_heads, head_dim, experts, top_k, dense;
    int qk_norm, max_pos;
    double scaling;
};

static const struct preset_gqa k_presets_gqa[] = {
    { "air", 1, 151552, 4096, 10944, 1408, 46, 96, 8, 128, 128, 8, 1, 0, 131072, 1.0 },
    { "355b", 1, 151552, 5120, 12288, 1536, 92, 96, 8, 128, 160, 8, 3, 1, 131072, 2.5 },
    { "tiny", 0, 1024, 256, 512, 96, 4, 8, 2, 32, 8, 2, 1, 1, 4096, 2.5 },
    { "tiny-air", 0, 1024, 256, 512, 96, 4, 4, 2, 40, 8, 2, 1, 0, 4096, 1.0 },
    { "small", 0, 32768, 1024, 2816, 512, 8, 16, 4, 64, 16, 4, 1, 1, 32768, 2.5 },
};

static int preset_gqa(const char *name, int real_layers, eng_config *c, char *err, size_t errlen)
{
    eng_config_defaults_arch(c, ENG_ARCH_GLM4_MOE);
    if (real_layers > 0 && !strcmp(name, "tiny")) name = "air";    /* --real-shapes without --preset */
    const struct preset_gqa *p = NULL;
    for (size_t i = 0; !p && i < PL_ARRAY_LEN(k_presets_gqa); i++)
        if (k_presets_gqa[i].real == (real_layers > 0) && !strcmp(k_presets_gqa[i].name, name)) p = &k_presets_gqa[i];
    if (!p)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "unknown %s \"%s\" for glm4-moe (%s)",
                         real_layers > 0 ? "real shape" : "preset", name,
                         real_layers > 0 ? "air, 355b" : "tiny, tiny-air, small");
    if (real_layers >= ENG_MAX_LAYERS)
        return pl_seterr(err, errlen, PL_ERR_RANGE, "--layers %d too large", real_layers);
    c->vocab_size = p->vocab; c->hidden_size = p->hidden; c->intermediate_size = p->inter;
    c->moe_intermediate_size = p->moe_inter;
    c->num_hidden_layers = real_layers > 0 ? real_layers : p->layers;
    c->num_attention_heads = p->heads; c->num_key_value_heads = p->kv_heads;
    c->head_dim = c->head_dim_key = c->v_head_dim = p->head_dim;
    c->qk_rope_head_dim = p->head_dim / 2;          /* partial_rotary_factor 0.5 */
    c->n_routed_experts = p->experts; c->num_experts_per_tok = p->top_k; c->n_shared_experts = 1;
    c->first_k_dense_replace = p->dense < c->num_hidden_layers ? p->dense : c->num_hidden_layers - 1;
    if (c->first_k_dense_replace < 0 || c->num_hidden_layers == 1) c->first_k_dense_replace = c->num_hidden_layers > 1 ? 1 : 0;
    c->use_qk_norm = p->qk_norm; c->attention_bias = 1;
    c->routed_scaling_factor = p->scaling;
    c->rope_theta = 1000000.0;
    c->max_position_embeddings = p->max_pos;
    c->num_nextn_predict_layers = 1;
    set_special_ids(c, real_layers > 0 ? 151329 : p->vocab - 64);
    return eng_config_finish(c, err, errlen);
}

int eng_mk_preset(const char *name, int real_layers, enum eng_arch arch, eng_config *c,
                  char *err, size_t errlen)
{
    if (arch == ENG_ARCH_GLM4_MOE) return preset_gqa(name, real_layers, c, err, errlen);
    eng_config_defaults_arch(c, arch);   /* the real shapes: GLM-5(.2) or GLM-4.7-Flash */
    c->num_nextn_predict_layers = 1;
    if (arch == ENG_ARCH_GLM_MOE_DSA) {
        c->rope_theta = 8000000.0;              /* GLM-5.2 values */
        c->max_position_embeddings = 1048576;
        c->index_share_for_mtp_iteration = 1;
    }
    if (real_layers > 0) {
        if (real_layers >= ENG_MAX_LAYERS)
            return pl_seterr(err, errlen, PL_ERR_RANGE, "--layers %d too large", real_layers);
        c->num_hidden_layers = real_layers;
        if (arch == ENG_ARCH_GLM_MOE_DSA) {     /* GLM-5.2: 3 dense layers, IndexShare freq 4 offset 3 */
            c->first_k_dense_replace = real_layers < 3 ? real_layers : 3;
            if (c->first_k_dense_replace == real_layers && real_layers > 1)
                c->first_k_dense_replace = real_layers - 1;
            c->index_topk_freq = 4;
            c->index_skip_topk_offset = 3;
        }
        set_special_ids(c, 154820);
    } else {
        const struct preset *p = NULL;
        for (size_t i = 0; !p && i < PL_ARRAY_LEN(k_presets); i++)
            if (k_presets[i].arch == arch && !strcmp(k_presets[i].name, name)) p = &k_presets[i];
        if (!p) return pl_seterr(err, errlen, PL_ERR_INVALID, "unknown preset \"%s\" (tiny, small, uneven)", name);
        preset_apply(c, p);
    }
    if (!c->has_indexer) c->head_dim_key = c->qk_rope_head_dim;
    return eng_config_finish(c, err, errlen);   /* also fills the per-layer tables */
}

/* ===== deterministic values ===== */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t seed_for(uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (const char *p = name; *p; p++) { h ^= (unsigned char)*p; h *= 1099511628211ull; }
    return h;
}

/* Uniform with unit variance: cheap (GLM-5.2 shapes write billions of
 * values) and bounded, which keeps random-model activations tame. */
static float unit_uniform(uint64_t *s)
{
    uint64_t r = splitmix64(s);
    float u = (float)(r >> 40) * (1.0f / 16777216.0f);   /* [0,1) */
    return (2.0f * u - 1.0f) * 1.7320508f;
}

/* How each class of tensor is initialised: value = mean + std * unit. */
static void class_init(const eng_tdesc *d, float *mean, float *std)
{
    int64_t in = d->ndim == 2 ? d->shape[1] : 1;
    *mean = 0.0f;
    switch (d->cls) {
    case ENG_TC_NORM:        *mean = 1.0f; *std = 0.1f; break;
    case ENG_TC_NORM_BIAS:   *std = 0.1f; break;
    case ENG_TC_BIAS_F32:    *std = 0.05f; break;
    case ENG_TC_LINEAR_BIAS: *std = 0.2f; break;
    case ENG_TC_EMBED:       *std = d->top == 0 ? 1.0f : 1.0f / sqrtf((float)in); break;
    default:                 *std = 1.0f / sqrtf((float)in); break;
    }
}

/* ===== safetensors writer ===== */

struct mk_tensor {
    eng_tdesc d;
    enum eng_dtype dt;
    int is_scale;           /* this entry is the weight_scale_inv of the previous one */
    uint64_t bytes;
    int shard;
};

struct mk_list {
    struct mk_tensor *v;
    size_t n, cap;
    const eng_mk_opts *o;
    const eng_config *c;
};

static int push(struct mk_list *l, const struct mk_tensor *t)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        struct mk_tensor *v = realloc(l->v, cap * sizeof *v);
        if (!v) return PL_ERR_NOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *t;
    return 0;
}

static uint64_t numel(const eng_tdesc *d)
{
    uint64_t n = 1;
    for (int i = 0; i < d->ndim; i++) n *= (uint64_t)d->shape[i];
    return n;
}

static int64_t nblk(int64_t n) { return (n + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK; }

static int collect(void *ctx, const eng_tdesc *d)
{
    struct mk_list *l = ctx;
    struct mk_tensor t = { .d = *d };
    t.dt = d->cls == ENG_TC_BIAS_F32 ? ENG_DT_F32 :
           (l->o->fp8 && d->cls == ENG_TC_LINEAR) ? ENG_DT_F8E4M3 : ENG_DT_BF16;
    t.bytes = numel(d) * eng_dtype_size(t.dt);
    int rc = push(l, &t);
    if (rc || t.dt != ENG_DT_F8E4M3) return rc;
    struct mk_tensor s = { .d = *d, .dt = ENG_DT_F32, .is_scale = 1 };
    if ((size_t)snprintf(s.d.name, sizeof s.d.name, "%.140s_scale_inv", d->name) >= sizeof s.d.name)
        return PL_ERR_INTERNAL;
    s.d.shape[0] = nblk(d->shape[0]);
    s.d.shape[1] = nblk(d->shape[1]);
    s.bytes = numel(&s.d) * 4;
    return push(l, &s);
}

/* Per-expert entries → transformers' fused layout [E, 2I, H] / [E, H, I]. */
static int fuse_experts(struct mk_list *l)
{
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        struct mk_tensor *t = &l->v[i];
        if (t->d.expert < 0) { l->v[w++] = *t; continue; }
        if (t->d.expert != 0 || t->d.proj == ENG_EXP_UP) continue;
        struct mk_tensor f = *t;
        int E = l->c->n_routed_experts;
        int down = t->d.proj == ENG_EXP_DOWN;
        snprintf(f.d.name, sizeof f.d.name, "model.layers.%d.mlp.experts.%s", t->d.layer,
                 down ? "down_proj" : "gate_up_proj");
        f.d.ndim = 3;
        f.d.shape[0] = E;
        f.d.shape[1] = down ? t->d.shape[0] : 2 * t->d.shape[0];
        f.d.shape[2] = t->d.shape[1];
        f.bytes = (uint64_t)E * (uint64_t)f.d.shape[1] * (uint64_t)f.d.shape[2] * eng_dtype_size(t->dt);
        l->v[w++] = f;
    }
    l->n = w;
    return 0;
}

/* Values of one catalogue tensor, rows [r0, r0+nr), as f32. */
static void gen_rows(const eng_mk_opts *o, const eng_tdesc *d, uint64_t *state, int64_t nr, float *out)
{
    float mean, std;
    class_init(d, &mean, &std);
    int64_t cols = d->ndim == 2 ? d->shape[1] : d->shape[0];
    for (int64_t i = 0; i < nr * cols; i++) out[i] = mean + std * unit_uniform(state);
    (void)o;
}

static int write_all(FILE *f, const void *p, size_t n, const char *path, char *err, size_t errlen)
{
    if (n && fwrite(p, 1, n, f) != n)
        return pl_seterr(err, errlen, PL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

/* Write one catalogue tensor (and for FP8 its scales into sbuf) in 128-row
 * chunks so GLM-5.2 shapes never need the whole tensor in memory. */
static int write_tensor(FILE *f, const char *path, const eng_mk_opts *o, const eng_tdesc *d,
                        enum eng_dtype dt, float *scales, char *err, size_t errlen)
{
    int64_t rows = d->ndim == 2 ? d->shape[0] : 1, cols = d->ndim == 2 ? d->shape[1] : d->shape[0];
    uint64_t state = seed_for(o->seed, d->name);
    size_t chunk = (size_t)(ENG_FP8_BLOCK * cols);
    float *v = malloc(chunk * sizeof *v);
    unsigned char *b = malloc(chunk * 4);
    int rc = v && b ? 0 : pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    for (int64_t r0 = 0; !rc && r0 < rows; r0 += ENG_FP8_BLOCK) {
        int64_t nr = rows - r0 < ENG_FP8_BLOCK ? rows - r0 : ENG_FP8_BLOCK;
        size_t n = (size_t)(nr * cols);
        gen_rows(o, d, &state, nr, v);
        if (dt == ENG_DT_F32) {
            memcpy(b, v, n * 4);
        } else if (dt == ENG_DT_BF16) {
            for (size_t i = 0; i < n; i++) {
                uint16_t h = eng_f32_to_bf16(v[i]);
                memcpy(b + 2 * i, &h, 2);
            }
        } else {
            /* One scale per 128x128 block: amax/448, as DeepSeek/GLM quantizers do. */
            for (int64_t cb = 0; cb < nblk(cols); cb++) {
                int64_t c0 = cb * ENG_FP8_BLOCK, c1 = c0 + ENG_FP8_BLOCK < cols ? c0 + ENG_FP8_BLOCK : cols;
                float amax = 0;
                for (int64_t i = 0; i < nr; i++)
                    for (int64_t j = c0; j < c1; j++) amax = fmaxf(amax, fabsf(v[i * cols + j]));
                float s = amax > 0 ? amax / 448.0f : 1.0f;
                scales[(r0 / ENG_FP8_BLOCK) * nblk(cols) + cb] = s;
                for (int64_t i = 0; i < nr; i++)
                    for (int64_t j = c0; j < c1; j++) b[i * cols + j] = eng_f32_to_fp8(v[i * cols + j] / s);
            }
        }
        rc = write_all(f, b, n * eng_dtype_size(dt), path, err, errlen);
    }
    free(v);
    free(b);
    return rc;
}

static void header_json(const struct mk_list *l, int shard, pl_buf *h)
{
    uint64_t off = 0;
    pl_buf_puts(h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < l->n; i++) {
        const struct mk_tensor *t = &l->v[i];
        if (t->shard != shard) continue;
        pl_buf_printf(h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->d.name, eng_dtype_name(t->dt));
        for (int k = 0; k < t->d.ndim; k++) pl_buf_printf(h, "%s%lld", k ? "," : "", (long long)t->d.shape[k]);
        pl_buf_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                      (unsigned long long)(off + t->bytes));
        off += t->bytes;
    }
    pl_buf_putc(h, '}');
    while ((h->len + 8) % 8) pl_buf_putc(h, ' ');       /* data starts 8-byte aligned */
}

/* A fused expert tensor is written expert by expert (gate rows, then up rows). */
static int write_entry(FILE *f, const char *path, const struct mk_list *l, size_t i,
                       float **scales, char *err, size_t errlen)
{
    const struct mk_tensor *t = &l->v[i];
    if (t->is_scale)        /* filled while writing the weight just before it */
        return write_all(f, *scales, t->bytes, path, err, errlen);
    if (t->d.ndim == 2 || t->d.ndim == 1) {
        free(*scales);
        *scales = NULL;
        if (t->dt == ENG_DT_F8E4M3) {
            *scales = calloc((size_t)(nblk(t->d.shape[0]) * nblk(t->d.shape[1])), sizeof **scales);
            if (!*scales) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
        }
        return write_tensor(f, path, l->o, &t->d, t->dt, *scales, err, errlen);
    }
    int down = strstr(t->d.name, "down_proj") != NULL;
    for (int e = 0; e < t->d.shape[0]; e++)
        for (int p = down ? ENG_EXP_DOWN : ENG_EXP_GATE; p <= (down ? ENG_EXP_DOWN : ENG_EXP_UP); p++) {
            eng_tdesc d = t->d;
            d.ndim = 2;
            d.expert = e;
            d.proj = p;
            d.shape[0] = down ? t->d.shape[1] : t->d.shape[1] / 2;
            d.shape[1] = t->d.shape[2];
            snprintf(d.name, sizeof d.name, "model.layers.%d.mlp.experts.%d.%s.weight", t->d.layer, e,
                     p == ENG_EXP_GATE ? "gate_proj" : p == ENG_EXP_UP ? "up_proj" : "down_proj");
            int rc = write_tensor(f, path, l->o, &d, t->dt, NULL, err, errlen);
            if (rc) return rc;
        }
    return 0;
}

static int write_shard(const struct mk_list *l, int shard, int n_shards, char *err, size_t errlen)
{
    char path[4096];
    if (n_shards == 1) snprintf(path, sizeof path, "%s/model.safetensors", l->o->out_dir);
    else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", l->o->out_dir, shard + 1, n_shards);
    pl_buf h;
    pl_buf_init(&h);
    header_json(l, shard, &h);
    FILE *f = fopen(path, "wb");
    if (!f) { pl_buf_free(&h); return pl_seterr(err, errlen, PL_ERR_IO, "%s: %s", path, strerror(errno)); }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    int rc = write_all(f, len8, 8, path, err, errlen);
    if (!rc) rc = write_all(f, h.data, h.len, path, err, errlen);
    pl_buf_free(&h);
    float *scales = NULL;
    for (size_t i = 0; !rc && i < l->n; i++)
        if (l->v[i].shard == shard) rc = write_entry(f, path, l, i, &scales, err, errlen);
    free(scales);
    if (fclose(f) && !rc) rc = pl_seterr(err, errlen, PL_ERR_IO, "%s: close failed", path);
    if (!rc && !l->o->quiet) pl_log(PL_LOG_INFO, NULL, 0, "wrote %s", path);
    return rc;
}

static int write_text(const char *dir, const char *name, const pl_buf *b, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return pl_seterr(err, errlen, PL_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = write_all(f, b->data, b->len, path, err, errlen);
    if (fclose(f) && !rc) rc = pl_seterr(err, errlen, PL_ERR_IO, "%s: close failed", path);
    return rc;
}

static int write_index(const struct mk_list *l, int n_shards, char *err, size_t errlen)
{
    pl_buf b;
    pl_buf_init(&b);
    uint64_t total = 0;
    for (size_t i = 0; i < l->n; i++) total += l->v[i].bytes;
    pl_buf_printf(&b, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {", (unsigned long long)total);
    for (size_t i = 0; i < l->n; i++)
        pl_buf_printf(&b, "%s\n    \"%s\": \"model-%05d-of-%05d.safetensors\"", i ? "," : "",
                      l->v[i].d.name, l->v[i].shard + 1, n_shards);
    pl_buf_puts(&b, "\n  }\n}\n");
    int rc = pl_buf_ok(&b) ? write_text(l->o->out_dir, "model.safetensors.index.json", &b, err, errlen)
                           : pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    pl_buf_free(&b);
    return rc;
}

static int write_configs(const eng_mk_opts *o, const eng_config *c, char *err, size_t errlen)
{
    pl_buf b;
    pl_buf_init(&b);
    eng_config_write_json(c, &b);
    int rc = write_text(o->out_dir, "config.json", &b, err, errlen);
    pl_buf_reset(&b);
    pl_buf_puts(&b, "{\n  \"_from_model_config\": true,\n  \"eos_token_id\": [");
    for (int i = 0; i < c->n_eos; i++) pl_buf_printf(&b, "%s%d", i ? ", " : "", c->eos_token_id[i]);
    /* sampling defaults as the official repos ship them: GLM-5 temperature
     * 1.0 + top_p 0.95, GLM-4.7-Flash temperature 1.0 only */
    pl_buf_printf(&b, "],\n  \"pad_token_id\": %d,\n  \"temperature\": 1.0,\n%s"
                  "  \"transformers_version\": \"5.12.0\"\n}\n", c->pad_token_id,
                  c->arch == ENG_ARCH_GLM4_MOE_LITE ? "" : "  \"top_p\": 0.95,\n");
    if (!rc) rc = write_text(o->out_dir, "generation_config.json", &b, err, errlen);
    pl_buf_free(&b);
    return rc;
}

/* mkdir -p: each missing parent in turn. */
static int mkdir_p(const char *dir)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) { errno = ENAMETOOLONG; return -1; }
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) && errno != EEXIST) return -1;
            *s = '/';
        }
    return mkdir(p, 0755) && errno != EEXIST ? -1 : 0;
}

int eng_mk_write(const eng_mk_opts *o, char *err, size_t errlen)
{
    eng_config c;
    int rc = eng_mk_preset(o->preset ? o->preset : "tiny", o->real_shapes ? o->layers : 0, o->arch, &c,
                           err, errlen);
    if (rc) return rc;
    c.fp8 = o->fp8;
    if (!o->mtp) c.num_nextn_predict_layers = 0;
    if (o->fused_experts && o->fp8)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "fused expert names are written in bf16 only");
    if (mkdir_p(o->out_dir))
        return pl_seterr(err, errlen, PL_ERR_IO, "%s: %s", o->out_dir, strerror(errno));
    struct mk_list l = { .o = o, .c = &c };
    rc = eng_config_foreach_tensor(&c, o->mtp, collect, &l);
    if (!rc && o->fused_experts) rc = fuse_experts(&l);
    /* Shards: fill each up to shard_bytes; a weight and its scales stay together. */
    uint64_t limit = o->shard_bytes ? o->shard_bytes : (4ull << 30), cur = 0;
    int shard = 0;
    for (size_t i = 0; !rc && i < l.n; i++) {
        if (!l.v[i].is_scale && cur > 0 && cur + l.v[i].bytes > limit) { shard++; cur = 0; }
        l.v[i].shard = shard;
        cur += l.v[i].bytes;
    }
    if (rc == PL_ERR_NOMEM) pl_seterr(err, errlen, rc, "out of memory");
    if (!rc) rc = write_configs(o, &c, err, errlen);
    /* tokenizer.json (trained here, GLM's 36 added tokens from the eos base
     * up), tokenizer_config.json and our chat template in the arch's
     * format (GLM-5.2's, or GLM-4.7's for GLM-4.7-Flash) */
    if (!rc) rc = eng_mk_text_files_write(o->out_dir, c.pad_token_id, c.arch, err, errlen);
    for (int s = 0; !rc && s <= shard; s++) rc = write_shard(&l, s, shard + 1, err, errlen);
    if (!rc && shard > 0) rc = write_index(&l, shard + 1, err, errlen);
    free(l.v);
    return rc;
}
