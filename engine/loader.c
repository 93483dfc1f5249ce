/* loader.c — config.json, tensor catalogue, safetensors mmap + checks. */
#include "loader.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ===== dtypes ===== */

const char *eng_dtype_name(enum eng_dtype d)
{
    switch (d) {
    case ENG_DT_F32:    return "F32";
    case ENG_DT_BF16:   return "BF16";
    case ENG_DT_F8E4M3: return "F8_E4M3";
    case ENG_DT_OTHER:  break;
    }
    return "other";
}

size_t eng_dtype_size(enum eng_dtype d)
{
    switch (d) {
    case ENG_DT_F32:    return 4;
    case ENG_DT_BF16:   return 2;
    case ENG_DT_F8E4M3: return 1;
    case ENG_DT_OTHER:  break;
    }
    return 0;
}

float eng_fp8_to_f32(uint8_t v)
{
    int s = v >> 7, e = (v >> 3) & 15, m = v & 7;
    float r;
    if (e == 15 && m == 7) return NAN;                 /* e4m3fn: only NaN, no inf */
    if (e == 0) r = ldexpf((float)m, -9);              /* subnormal: m/8 * 2^-6 */
    else r = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -r : r;
}

uint8_t eng_f32_to_fp8(float f)
{
    if (isnan(f)) return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e;               /* saturate (torch clamps before casting) */
    if (a == 0.0f) return sign;
    /* Pick the exponent bucket, then round the mantissa to nearest even. */
    int e;
    frexpf(a, &e);                                     /* a = f * 2^e, f in [0.5,1) */
    int exp = e - 1;                                   /* a in [2^exp, 2^(exp+1)) */
    if (exp < -6) exp = -6;                            /* subnormal range: step 2^-9 */
    float step = ldexpf(1.0f, exp - 3);
    float q = a / step;                                /* exact: power-of-two step */
    float r = nearbyintf(q);                           /* default rounding: ties to even */
    int mant = (int)r;                                 /* 8..16 normal, 0..8 subnormal */
    if (exp == -6 && mant < 8) return sign | (uint8_t)mant;
    if (mant == 16) { mant = 8; exp++; }
    if (exp > 8) return sign | 0x7e;
    return sign | (uint8_t)(((exp + 7) << 3) | (mant - 8));
}

uint16_t eng_f32_to_bf16(float f)
{
    union { float f; uint32_t u; } x = { f };
    if (isnan(f)) return (uint16_t)((x.u >> 16) | 0x40);
    uint32_t lsb = (x.u >> 16) & 1;
    return (uint16_t)((x.u + 0x7fff + lsb) >> 16);
}

/* ===== config ===== */

void eng_config_defaults(eng_config *c)
{
    memset(c, 0, sizeof *c);
    c->vocab_size = 154880; c->hidden_size = 6144; c->intermediate_size = 12288;
    c->moe_intermediate_size = 2048; c->num_hidden_layers = 78;
    c->num_attention_heads = 64; c->num_key_value_heads = 64;
    c->q_lora_rank = 2048; c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 192; c->qk_rope_head_dim = 64; c->v_head_dim = 256;
    c->head_dim_key = 64;
    c->n_routed_experts = 256; c->num_experts_per_tok = 8; c->n_shared_experts = 1;
    c->first_k_dense_replace = 3; c->moe_layer_freq = 1;
    c->n_group = 1; c->topk_group = 1; c->norm_topk_prob = 1;
    c->routed_scaling_factor = 2.5;
    c->index_n_heads = 32; c->index_head_dim = 128; c->index_topk = 2048;
    c->index_topk_freq = 1; c->index_skip_topk_offset = 2;
    c->num_nextn_predict_layers = 1;
    c->rope_theta = 1000000.0; c->rope_interleave = 1; c->indexer_rope_interleave = 1;
    c->rms_norm_eps = 1e-5; c->latent_norm_eps = 1e-6; c->indexer_norm_eps = 1e-6;
    c->max_position_embeddings = 202752;
    c->eos_token_id[0] = 154820; c->eos_token_id[1] = 154827; c->eos_token_id[2] = 154829;
    c->n_eos = 3;
    c->pad_token_id = 154820; c->bos_token_id = -1;
    c->arch = ENG_ARCH_GLM_MOE_DSA;
    c->has_indexer = 1;
}

const char *eng_arch_class(enum eng_arch a)
{
    return a == ENG_ARCH_GLM4_MOE_LITE ? "Glm4MoeLiteForCausalLM" :
           a == ENG_ARCH_GLM4_MOE ? "Glm4MoeForCausalLM" : "GlmMoeDsaForCausalLM";
}

const char *eng_arch_model_type(enum eng_arch a)
{
    return a == ENG_ARCH_GLM4_MOE_LITE ? "glm4_moe_lite" : a == ENG_ARCH_GLM4_MOE ? "glm4_moe" : "glm_moe_dsa";
}

/* Architectures without a DSA indexer: no indexer keys, tensors or rows. */
static void defaults_no_indexer(eng_config *c)
{
    c->has_indexer = 0;
    c->index_n_heads = 0; c->index_head_dim = 0; c->index_topk = 0;
    c->index_share_for_mtp_iteration = 0;
    c->indexer_norm_eps = 0;
}

/* transformers' Glm4MoeConfig defaults (the GLM-4.5-Air shapes), written
 * over GLM-5's where they differ, with head_dim 128 (what every published
 * GLM-4.5/4.6/4.7 config sets; without "head_dim" transformers derives
 * hidden/heads, and so does eng_config_parse). MLA fields are 0;
 * qk_rope_head_dim holds the rotary width (head_dim x 0.5). */
static void defaults_glm4_moe(eng_config *c)
{
    c->arch = ENG_ARCH_GLM4_MOE;
    c->attn_gqa = 1;
    defaults_no_indexer(c);
    c->vocab_size = 151552; c->hidden_size = 4096; c->intermediate_size = 10944;
    c->moe_intermediate_size = 1408; c->num_hidden_layers = 46;
    c->num_attention_heads = 96; c->num_key_value_heads = 8;
    c->head_dim = 128; c->head_dim_key = 128; c->attention_bias = 0; c->use_qk_norm = 0;
    c->q_lora_rank = 0; c->kv_lora_rank = 0; c->qk_nope_head_dim = 0;
    c->qk_rope_head_dim = 64; c->v_head_dim = 128;
    c->n_routed_experts = 128; c->first_k_dense_replace = 1;
    c->routed_scaling_factor = 1.0;
    c->rope_theta = 10000.0; c->rope_interleave = 0; c->indexer_rope_interleave = 0;
    c->max_position_embeddings = 131072;
    c->eos_token_id[0] = 151329; c->eos_token_id[1] = 151336; c->eos_token_id[2] = 151338;
    c->pad_token_id = 151329;
}

void eng_config_defaults_arch(eng_config *c, enum eng_arch arch)
{
    eng_config_defaults(c);
    if (arch == ENG_ARCH_GLM4_MOE) {
        defaults_glm4_moe(c);
        return;
    }
    if (arch != ENG_ARCH_GLM4_MOE_LITE) return;
    /* transformers' Glm4MoeLiteConfig defaults (= GLM-4.7-Flash). Its
     * mlp_layer_types default, ["dense"] + ["sparse"] * (n - 1), is
     * first_k_dense_replace 1 (the key vLLM reads). The eos/pad ids stay
     * GLM-5's: the same tokenizer. Latent norms: transformers builds
     * q_a_layernorm/kv_a_layernorm with the RMSNorm default 1e-6 here too. */
    c->arch = ENG_ARCH_GLM4_MOE_LITE;
    defaults_no_indexer(c);
    c->hidden_size = 2048; c->intermediate_size = 10240; c->moe_intermediate_size = 1536;
    c->num_hidden_layers = 47; c->num_attention_heads = 20; c->num_key_value_heads = 20;
    c->q_lora_rank = 768; c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 192; c->qk_rope_head_dim = 64; c->v_head_dim = 256;
    c->head_dim_key = 64;
    c->n_routed_experts = 64; c->num_experts_per_tok = 4; c->n_shared_experts = 1;
    c->first_k_dense_replace = 1;
    c->routed_scaling_factor = 1.8;
}

int eng_config_n_layers_total(const eng_config *c)
{
    return c->num_hidden_layers + (c->has_mtp_weights ? 1 : 0);
}

/* transformers: layer i runs its indexer iff max(i - offset + 1, 0) % freq == 0. */
static int index_full_by_formula(const eng_config *c, int i)
{
    int v = i - c->index_skip_topk_offset + 1;
    if (v < 0) v = 0;
    return v % c->index_topk_freq == 0;
}

static int layer_dense_by_formula(const eng_config *c, int i)
{
    return i < c->first_k_dense_replace || (i - c->first_k_dense_replace) % c->moe_layer_freq != 0;
}

int eng_config_finish(eng_config *c, char *err, size_t errlen)
{
#define NEED(cond, ...) do { if (!(cond)) return pl_seterr(err, errlen, PL_ERR_INVALID, __VA_ARGS__); } while (0)
    NEED(c->num_hidden_layers >= 1 && c->num_hidden_layers < ENG_MAX_LAYERS,
         "num_hidden_layers %d out of range 1..%d", c->num_hidden_layers, ENG_MAX_LAYERS - 1);
    NEED(c->vocab_size >= 1 && c->vocab_size <= (1 << 24), "vocab_size %d out of range", c->vocab_size);
    NEED(c->hidden_size >= 1 && c->hidden_size <= 65536, "hidden_size %d out of range", c->hidden_size);
    NEED(c->num_attention_heads >= 1 && c->num_attention_heads <= 1024, "num_attention_heads out of range");
    if (c->attn_gqa) {
        NEED(c->num_key_value_heads >= 1 && c->num_attention_heads % c->num_key_value_heads == 0,
             "num_key_value_heads %d must divide num_attention_heads %d", c->num_key_value_heads,
             c->num_attention_heads);
        NEED(c->head_dim >= 2 && c->head_dim <= 4096, "head_dim %d out of range", c->head_dim);
        NEED(c->qk_rope_head_dim >= 2 && c->qk_rope_head_dim <= c->head_dim && c->qk_rope_head_dim % 2 == 0,
             "rotary dims %d (head_dim x partial_rotary_factor) must be even, 2..head_dim", c->qk_rope_head_dim);
        c->v_head_dim = c->head_dim;
    } else {
        NEED(c->q_lora_rank >= 1 && c->q_lora_rank <= 65536, "q_lora_rank %d out of range (q compression is required)", c->q_lora_rank);
        NEED(c->kv_lora_rank >= 1 && c->kv_lora_rank <= 65536, "kv_lora_rank out of range");
        NEED(c->qk_nope_head_dim >= 1 && c->qk_nope_head_dim <= 4096, "qk_nope_head_dim out of range");
        NEED(c->qk_rope_head_dim >= 2 && c->qk_rope_head_dim <= 4096 && c->qk_rope_head_dim % 2 == 0,
             "qk_rope_head_dim must be even and >= 2");
        NEED(c->v_head_dim >= 1 && c->v_head_dim <= 4096, "v_head_dim out of range");
    }
    NEED(c->intermediate_size >= 1 && c->intermediate_size <= 1 << 20, "intermediate_size out of range");
    NEED(c->moe_intermediate_size >= 1 && c->moe_intermediate_size <= 1 << 20, "moe_intermediate_size out of range");
    NEED(c->n_routed_experts >= 1 && c->n_routed_experts <= 4096, "n_routed_experts out of range");
    NEED(c->num_experts_per_tok >= 1 && c->num_experts_per_tok <= c->n_routed_experts,
         "num_experts_per_tok %d must be 1..n_routed_experts", c->num_experts_per_tok);
    NEED(c->n_shared_experts >= 0 && c->n_shared_experts <= 64, "n_shared_experts out of range");
    NEED(c->first_k_dense_replace >= 0, "first_k_dense_replace negative");
    NEED(c->moe_layer_freq >= 1, "moe_layer_freq must be >= 1");
    NEED(c->n_group >= 1 && c->n_routed_experts % c->n_group == 0,
         "n_group %d must divide n_routed_experts %d", c->n_group, c->n_routed_experts);
    NEED(c->topk_group >= 1 && c->topk_group <= c->n_group, "topk_group must be 1..n_group");
    NEED(c->n_group == 1 || c->n_routed_experts / c->n_group >= 2,
         "group-limited routing needs at least 2 experts per group");
    NEED(c->num_experts_per_tok <= c->topk_group * (c->n_routed_experts / c->n_group),
         "num_experts_per_tok exceeds the experts in topk_group groups");
    if (c->has_indexer) {
        NEED(c->index_n_heads >= 1 && c->index_n_heads <= 1024, "index_n_heads out of range");
        NEED(c->index_head_dim >= c->qk_rope_head_dim && c->index_head_dim <= 4096,
             "index_head_dim must be >= qk_rope_head_dim");
        NEED(c->index_topk >= 1, "index_topk must be >= 1");
        NEED(c->index_topk_freq >= 1, "index_topk_freq must be >= 1");
        NEED(c->index_skip_topk_offset >= 0, "index_skip_topk_offset negative");
    }
    NEED(c->num_nextn_predict_layers >= 0 && c->num_nextn_predict_layers <= 1,
         "num_nextn_predict_layers %d unsupported (0 or 1)", c->num_nextn_predict_layers);
    NEED(c->rope_theta > 0 && isfinite(c->rope_theta), "rope_theta must be positive");
    NEED(c->rms_norm_eps > 0 && c->rms_norm_eps < 1, "rms_norm_eps out of range");
    NEED(c->routed_scaling_factor > 0 && isfinite(c->routed_scaling_factor), "routed_scaling_factor out of range");
    NEED(c->max_position_embeddings >= 1, "max_position_embeddings must be >= 1");
    NEED(c->attn_gqa || (c->rope_interleave && (c->indexer_rope_interleave || !c->has_indexer)),
         "non-interleaved RoPE is not GLM (rope_interleave/indexer_rope_interleave must be true)");
#undef NEED
    int n = c->num_hidden_layers;
    for (int i = 0; i < n; i++) {
        c->layer_dense[i] = (unsigned char)layer_dense_by_formula(c, i);
        c->layer_index_full[i] = (unsigned char)(c->has_indexer && index_full_by_formula(c, i));
    }
    c->layer_dense[n] = 0;              /* MTP layer: always MoE, a full indexer when the model has one */
    c->layer_index_full[n] = (unsigned char)c->has_indexer;
    return PL_OK;
}

/* ---- JSON readers: a missing key keeps the default, a wrong type is an error */

struct cfgctx { const char *path; char *err; size_t errlen; };

/* A JSON number that converts to int exactly. */
static int json_is_int(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) <= 2147483647.0;
}

static int get_int(const cJSON *o, const char *key, int *dst, struct cfgctx *x)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsBool(v)) { *dst = cJSON_IsTrue(v); return 0; }
    if (!json_is_int(v))
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: \"%s\" must be an integer", x->path, key);
    *dst = (int)v->valuedouble;
    return 0;
}

static int get_dbl(const cJSON *o, const char *key, double *dst, struct cfgctx *x)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v))
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: \"%s\" must be a number", x->path, key);
    *dst = v->valuedouble;
    return 0;
}

/* A per-layer list of strings ("full"/"shared", "dense"/"sparse"). */
static int get_layer_list(const cJSON *o, const char *key, const char *yes, const char *no,
                          unsigned char *dst, int n, int *found, struct cfgctx *x)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *found = 0;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID,
                         "%s: \"%s\" must be a list of %d strings", x->path, key, n);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (cJSON_IsString(e) && !strcmp(e->valuestring, yes)) dst[i] = 1;
        else if (cJSON_IsString(e) && !strcmp(e->valuestring, no)) dst[i] = 0;
        else return pl_seterr(x->err, x->errlen, PL_ERR_INVALID,
                              "%s: \"%s\"[%d] must be \"%s\" or \"%s\"", x->path, key, i, yes, no);
        i++;
    }
    *found = 1;
    return 0;
}

static int parse_quant(eng_config *c, const cJSON *q, struct cfgctx *x)
{
    if (!q || cJSON_IsNull(q)) return 0;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(q, "fmt");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
    if (!cJSON_IsObject(q) || !cJSON_IsString(m) || strcmp(m->valuestring, "fp8"))
        return pl_seterr(x->err, x->errlen, PL_ERR_UNSUPPORTED,
                         "%s: quantization_config: only quant_method \"fp8\" is supported", x->path);
    if (fmt && (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "e4m3")))
        return pl_seterr(x->err, x->errlen, PL_ERR_UNSUPPORTED,
                         "%s: quantization_config: only fmt \"e4m3\" is supported", x->path);
    if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(bs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(bs, 1)) ||
        cJSON_GetArrayItem(bs, 0)->valuedouble != ENG_FP8_BLOCK ||
        cJSON_GetArrayItem(bs, 1)->valuedouble != ENG_FP8_BLOCK)
        return pl_seterr(x->err, x->errlen, PL_ERR_UNSUPPORTED,
                         "%s: quantization_config: weight_block_size must be [128, 128]", x->path);
    c->fp8 = 1;
    return 0;
}

static int parse_ids(const cJSON *o, const char *key, int *dst, int max, int *n, struct cfgctx *x)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    int k = 0;
    if (json_is_int(v)) { dst[k++] = (int)v->valuedouble; *n = k; return 0; }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > max)
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: \"%s\" must be an id or a list of at most %d ids",
                         x->path, key, max);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!json_is_int(e)) return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: \"%s\" holds a non-integer",
                                              x->path, key);
        dst[k++] = (int)e->valuedouble;
    }
    *n = k;
    return 0;
}

/* architectures (the HF class) decides; model_type must agree when both are
 * given; model_type alone is enough. */
static int parse_arch(const cJSON *root, enum eng_arch *out, struct cfgctx *x)
{
    static const enum eng_arch known[] = { ENG_ARCH_GLM_MOE_DSA, ENG_ARCH_GLM4_MOE_LITE, ENG_ARCH_GLM4_MOE };
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    int found = -1;
    const char *seen = "(none)";
    if (cJSON_IsArray(arch)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, arch) if (cJSON_IsString(e)) {
            seen = e->valuestring;
            for (size_t k = 0; found < 0 && k < PL_ARRAY_LEN(known); k++)
                if (!strcmp(e->valuestring, eng_arch_class(known[k]))) found = (int)k;
        }
    } else if (cJSON_IsString(mt)) {
        seen = mt->valuestring;
        for (size_t k = 0; found < 0 && k < PL_ARRAY_LEN(known); k++)
            if (!strcmp(mt->valuestring, eng_arch_model_type(known[k]))) found = (int)k;
    }
    if (found >= 0 && cJSON_IsString(mt) && strcmp(mt->valuestring, eng_arch_model_type(known[found]))) {
        found = -1;
        seen = mt->valuestring;
    }
    if (found < 0)
        return pl_seterr(x->err, x->errlen, PL_ERR_UNSUPPORTED,
                         "%s: unsupported architecture %s: glm-engine runs GlmMoeDsaForCausalLM "
                         "(model_type glm_moe_dsa: GLM-5, GLM-5.1, GLM-5.2), Glm4MoeLiteForCausalLM "
                         "(model_type glm4_moe_lite: GLM-4.7-Flash) and Glm4MoeForCausalLM "
                         "(model_type glm4_moe: GLM-4.5, GLM-4.5-Air, GLM-4.6, GLM-4.7)", x->path, seen);
    *out = known[found];
    return 0;
}

int eng_config_parse(eng_config *c, const char *json, size_t len, const char *path,
                     char *err, size_t errlen)
{
    struct cfgctx x = { path, err, errlen };
    eng_config_defaults(c);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pl_seterr(err, errlen, PL_ERR_PARSE, "%s: not a JSON object", path);
    }
    enum eng_arch arch = ENG_ARCH_GLM_MOE_DSA;
    int rc = parse_arch(root, &arch, &x);
    if (!rc) eng_config_defaults_arch(c, arch);
#define I(k) { #k, offsetof(eng_config, k) }
    static const struct { const char *key; size_t off; } ints[] = {
        I(vocab_size), I(hidden_size), I(intermediate_size), I(moe_intermediate_size),
        I(num_hidden_layers), I(num_attention_heads), I(num_key_value_heads),
        I(q_lora_rank), I(kv_lora_rank), I(qk_nope_head_dim), I(qk_rope_head_dim), I(v_head_dim),
        I(n_routed_experts), I(num_experts_per_tok), I(n_shared_experts),
        I(first_k_dense_replace), I(moe_layer_freq), I(n_group), I(topk_group), I(norm_topk_prob),
        I(num_nextn_predict_layers),
        I(rope_interleave), I(max_position_embeddings),
        I(tie_word_embeddings), I(pad_token_id), I(bos_token_id),
    };
    /* The indexer's keys mean something only to an architecture that has
     * one (Glm4MoeLiteConfig has none of them). */
    static const struct { const char *key; size_t off; } index_ints[] = {
        I(index_n_heads), I(index_head_dim), I(index_topk), I(index_topk_freq), I(index_skip_topk_offset),
        I(index_share_for_mtp_iteration), I(indexer_rope_interleave),
    };
#undef I
    for (size_t i = 0; !rc && i < PL_ARRAY_LEN(ints); i++)
        rc = get_int(root, ints[i].key, (int *)((char *)c + ints[i].off), &x);
    for (size_t i = 0; !rc && c->has_indexer && i < PL_ARRAY_LEN(index_ints); i++)
        rc = get_int(root, index_ints[i].key, (int *)((char *)c + index_ints[i].off), &x);
    if (!rc) rc = get_int(root, "num_experts", &c->n_routed_experts, &x);   /* alias */
    if (!rc) rc = get_int(root, "head_dim", &c->head_dim_key, &x);
    /* Glm4MoeLiteConfig maps "head_dim" onto qk_rope_head_dim (its
     * attribute_map): a different value would silently change the RoPE
     * width there, so refuse what we cannot read one way only. */
    if (!rc && !c->has_indexer && !c->attn_gqa && cJSON_GetObjectItemCaseSensitive(root, "head_dim") &&
        c->head_dim_key != c->qk_rope_head_dim)
        rc = pl_seterr(err, errlen, PL_ERR_UNSUPPORTED,
                       "%s: head_dim %d differs from qk_rope_head_dim %d (%s reads head_dim as qk_rope_head_dim)",
                       path, c->head_dim_key, c->qk_rope_head_dim, eng_arch_class(c->arch));
    /* Glm4MoeForCausalLM: head_dim as transformers reads it (getattr with
     * hidden/heads as fallback), q/k/v bias and q/k norms; rope_interleave,
     * moe_layer_freq and mlp_layer_types mean nothing to Glm4MoeConfig
     * (NeoX RoPE, MoE from first_k_dense_replace on), so they are ignored. */
    if (!rc && c->attn_gqa) {
        c->head_dim = cJSON_GetObjectItemCaseSensitive(root, "head_dim") ? c->head_dim_key
                      : c->hidden_size / (c->num_attention_heads > 0 ? c->num_attention_heads : 1);
        c->rope_interleave = 0;
        c->moe_layer_freq = 1;
        rc = get_int(root, "attention_bias", &c->attention_bias, &x);
        if (!rc) rc = get_int(root, "use_qk_norm", &c->use_qk_norm, &x);
    }
    double prf = c->attn_gqa ? 0.5 : 1.0;      /* Glm4MoeConfig's default 0.5 */
    if (!rc) rc = get_dbl(root, "partial_rotary_factor", &prf, &x);
    if (!rc) rc = get_dbl(root, "routed_scaling_factor", &c->routed_scaling_factor, &x);
    if (!rc) rc = get_dbl(root, "rms_norm_eps", &c->rms_norm_eps, &x);
    if (!rc) rc = get_dbl(root, "rope_theta", &c->rope_theta, &x);          /* v4 spelling */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    if (!rp || cJSON_IsNull(rp)) rp = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (!rc && rp && cJSON_IsObject(rp)) {
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
        if (!rt) rt = cJSON_GetObjectItemCaseSensitive(rp, "type");
        if (rt && (!cJSON_IsString(rt) || strcmp(rt->valuestring, "default")))
            rc = pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%s: rope_type %s unsupported (GLM-5 uses \"default\")",
                           path, cJSON_IsString(rt) ? rt->valuestring : "?");
        if (!rc) rc = get_dbl(rp, "rope_theta", &c->rope_theta, &x);
        if (!rc) rc = get_dbl(rp, "partial_rotary_factor", &prf, &x);
    }
    /* GQA: RoPE on the first int(head_dim * factor) dims of each head
     * (transformers' rotary embedding); eng_config_finish checks the width. */
    if (!rc && c->attn_gqa) {
        if (!(prf > 0 && prf <= 1))
            rc = pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%s: partial_rotary_factor %g out of (0, 1]", path, prf);
        else
            c->qk_rope_head_dim = (int)((double)c->head_dim * prf);
    }
    /* MLA: RoPE runs over all qk_rope_head_dim dims (transformers: head_dim * factor). */
    else if (!rc && prf != 1.0)
        rc = pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%s: partial_rotary_factor %g unsupported (GLM uses 1.0)",
                       path, prf);
    if (!rc) {
        const cJSON *sf = cJSON_GetObjectItemCaseSensitive(root, "scoring_func");
        if (sf && !(cJSON_IsString(sf) && !strcmp(sf->valuestring, "sigmoid")))
            rc = pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%s: scoring_func must be \"sigmoid\"", path);
    }
    if (!rc) rc = parse_ids(root, "eos_token_id", c->eos_token_id, ENG_MAX_EOS, &c->n_eos, &x);
    if (!rc) rc = parse_quant(c, cJSON_GetObjectItemCaseSensitive(root, "quantization_config"), &x);
    if (!rc) rc = eng_config_finish(c, err, errlen);
    if (!rc) {
        /* Explicit per-layer lists win over the formulas (filled by
         * eng_config_finish), as in transformers. */
        int n = c->num_hidden_layers, found = 0;
        unsigned char tmp[ENG_MAX_LAYERS];
        if (!c->attn_gqa) rc = get_layer_list(root, "mlp_layer_types", "dense", "sparse", tmp, n, &found, &x);
        if (!rc && found) memcpy(c->layer_dense, tmp, (size_t)n);
        found = 0;
        if (!rc && c->has_indexer) rc = get_layer_list(root, "indexer_types", "full", "shared", tmp, n, &found, &x);
        if (!rc && found) memcpy(c->layer_index_full, tmp, (size_t)n);
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(root, "index_topk_pattern");
        if (!rc && !found && c->has_indexer && cJSON_IsString(pat)) {
            if ((int)strlen(pat->valuestring) != n)
                rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s: index_topk_pattern must have %d letters", path, n);
            for (int i = 0; !rc && i < n; i++) {
                char ch = pat->valuestring[i];
                if (ch != 'F' && ch != 'S')
                    rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s: index_topk_pattern letters are F or S", path);
                c->layer_index_full[i] = ch == 'F';
            }
        }
        if (!rc && c->has_indexer && !c->layer_index_full[0])
            rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s: layer 0 must have a full indexer", path);
    }
    cJSON_Delete(root);
    return rc;
}

int eng_config_load(eng_config *c, const char *dir, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    pl_buf b;
    pl_buf_init(&b);
    int rc = pl_file_read(path, &b, 64u << 20, err, errlen);
    if (!rc) rc = eng_config_parse(c, b.data, b.len, path, err, errlen);
    pl_buf_free(&b);
    return rc;
}

static void put_layer_list(pl_buf *o, const char *key, const unsigned char *v, int n,
                           const char *yes, const char *no)
{
    pl_buf_printf(o, "  \"%s\": [", key);
    for (int i = 0; i < n; i++) pl_buf_printf(o, "%s\"%s\"", i ? ", " : "", v[i] ? yes : no);
    pl_buf_puts(o, "],\n");
}

/* The keys both architectures write the same way (sorted, as
 * save_pretrained writes them): the head up to eos_token_id ... */
static void put_json_head(const eng_config *c, pl_buf *o)
{
    pl_buf_printf(o, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n",
                  eng_arch_class(c->arch), eng_arch_model_type(c->arch));
    pl_buf_printf(o, "  \"attention_bias\": %s,\n  \"attention_dropout\": 0.0,\n",
                  c->attention_bias ? "true" : "false");
    pl_buf_printf(o, "  \"bos_token_id\": %d,\n", c->bos_token_id < 0 ? 0 : c->bos_token_id);
    pl_buf_puts(o, "  \"dtype\": \"bfloat16\",\n  \"eos_token_id\": [");
    for (int i = 0; i < c->n_eos; i++) pl_buf_printf(o, "%s%d", i ? ", " : "", c->eos_token_id[i]);
    pl_buf_puts(o, "],\n");
}

/* ... and the tail from quantization_config on. */
static void put_json_tail(const eng_config *c, pl_buf *o, const char *transformers_version)
{
    if (c->fp8)
        pl_buf_puts(o, "  \"quantization_config\": {\n    \"activation_scheme\": \"dynamic\",\n"
                       "    \"fmt\": \"e4m3\",\n    \"quant_method\": \"fp8\",\n"
                       "    \"weight_block_size\": [128, 128]\n  },\n");
    pl_buf_printf(o, "  \"rms_norm_eps\": %g,\n%s"
                  "  \"rope_parameters\": {\"rope_theta\": %.1f, \"rope_type\": \"default\"},\n",
                  c->rms_norm_eps, c->attn_gqa ? "" : "  \"rope_interleave\": true,\n", c->rope_theta);
    /* a float even when integral: transformers' strict configs refuse an int here */
    pl_buf_printf(o, c->routed_scaling_factor == floor(c->routed_scaling_factor)
                     ? "  \"routed_scaling_factor\": %.1f,\n  \"scoring_func\": \"sigmoid\",\n"
                     : "  \"routed_scaling_factor\": %g,\n  \"scoring_func\": \"sigmoid\",\n"
                  "  \"tie_word_embeddings\": %s,\n  \"topk_group\": %d,\n  \"topk_method\": \"noaux_tc\",\n",
                  c->routed_scaling_factor, c->tie_word_embeddings ? "true" : "false", c->topk_group);
    pl_buf_printf(o, "  \"transformers_version\": \"%s\",\n  \"use_cache\": true,\n", transformers_version);
    if (c->attn_gqa) pl_buf_printf(o, "  \"use_qk_norm\": %s,\n", c->use_qk_norm ? "true" : "false");
    else pl_buf_printf(o, "  \"v_head_dim\": %d,\n", c->v_head_dim);
    pl_buf_printf(o, "  \"vocab_size\": %d\n}\n", c->vocab_size);
}

/* moe_intermediate_size .. num_nextn_predict_layers, as GLM-4.7-Flash's
 * and GLM-4.5's configs write them (GLM-5's adds moe_layer_freq between). */
static void put_json_moe_heads(const eng_config *c, pl_buf *o)
{
    pl_buf_printf(o, "  \"moe_intermediate_size\": %d,\n  \"n_group\": %d,\n  \"n_routed_experts\": %d,\n"
                  "  \"n_shared_experts\": %d,\n  \"norm_topk_prob\": %s,\n  \"num_attention_heads\": %d,\n"
                  "  \"num_experts_per_tok\": %d,\n",
                  c->moe_intermediate_size, c->n_group, c->n_routed_experts, c->n_shared_experts,
                  c->norm_topk_prob ? "true" : "false", c->num_attention_heads, c->num_experts_per_tok);
    pl_buf_printf(o, "  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n  \"num_nextn_predict_layers\": %d,\n",
                  c->num_hidden_layers, c->num_key_value_heads, c->num_nextn_predict_layers);
}

/* GLM-4.7-Flash's config.json keys (no indexer keys, no head_dim: its
 * transformers config would read head_dim as qk_rope_head_dim), plus
 * mlp_layer_types so transformers and vLLM (first_k_dense_replace) agree
 * whatever first_k_dense_replace a preset uses. */
static void write_json_lite(const eng_config *c, pl_buf *o)
{
    int n = c->num_hidden_layers;
    put_json_head(c, o);
    pl_buf_printf(o, "  \"first_k_dense_replace\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n",
                  c->first_k_dense_replace, c->hidden_size);
    pl_buf_printf(o, "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n  \"kv_lora_rank\": %d,\n"
                  "  \"max_position_embeddings\": %d,\n",
                  c->intermediate_size, c->kv_lora_rank, c->max_position_embeddings);
    put_layer_list(o, "mlp_layer_types", c->layer_dense, n, "dense", "sparse");
    put_json_moe_heads(c, o);
    pl_buf_printf(o, "  \"pad_token_id\": %d,\n  \"partial_rotary_factor\": 1.0,\n  \"pretraining_tp\": 1,\n"
                  "  \"q_lora_rank\": %d,\n  \"qk_nope_head_dim\": %d,\n  \"qk_rope_head_dim\": %d,\n",
                  c->pad_token_id, c->q_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim);
    put_json_tail(c, o, "5.20.2");
}

/* GLM-4.5's config.json keys (Glm4MoeConfig: head_dim explicit, the
 * partial_rotary_factor top-level as the official repos write it). */
static void write_json_gqa(const eng_config *c, pl_buf *o)
{
    put_json_head(c, o);
    pl_buf_printf(o, "  \"first_k_dense_replace\": %d,\n  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n"
                  "  \"hidden_size\": %d,\n", c->first_k_dense_replace, c->head_dim, c->hidden_size);
    pl_buf_printf(o, "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n"
                  "  \"max_position_embeddings\": %d,\n", c->intermediate_size, c->max_position_embeddings);
    put_json_moe_heads(c, o);
    pl_buf_printf(o, "  \"pad_token_id\": %d,\n  \"partial_rotary_factor\": %.17g,\n",
                  c->pad_token_id, (double)c->qk_rope_head_dim / (double)c->head_dim);
    put_json_tail(c, o, "5.20.2");
}

void eng_config_write_json(const eng_config *c, pl_buf *o)
{
    int n = c->num_hidden_layers;
    if (c->attn_gqa) {
        write_json_gqa(c, o);
        return;
    }
    if (!c->has_indexer) {
        write_json_lite(c, o);
        return;
    }
    put_json_head(c, o);
    pl_buf_printf(o, "  \"ep_size\": 1,\n  \"first_k_dense_replace\": %d,\n", c->first_k_dense_replace);
    pl_buf_printf(o, "  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n",
                  c->qk_nope_head_dim, c->hidden_size);
    pl_buf_printf(o, "  \"index_head_dim\": %d,\n  \"index_n_heads\": %d,\n  \"index_share_for_mtp_iteration\": %s,\n",
                  c->index_head_dim, c->index_n_heads, c->index_share_for_mtp_iteration ? "true" : "false");
    pl_buf_printf(o, "  \"index_skip_topk_offset\": %d,\n  \"index_topk\": %d,\n  \"index_topk_freq\": %d,\n"
                  "  \"index_topk_pattern\": null,\n",
                  c->index_skip_topk_offset, c->index_topk, c->index_topk_freq);
    put_layer_list(o, "indexer_types", c->layer_index_full, n, "full", "shared");
    pl_buf_printf(o, "  \"indexer_rope_interleave\": true,\n  \"initializer_range\": 0.02,\n"
                  "  \"intermediate_size\": %d,\n  \"kv_lora_rank\": %d,\n  \"max_position_embeddings\": %d,\n",
                  c->intermediate_size, c->kv_lora_rank, c->max_position_embeddings);
    put_layer_list(o, "mlp_layer_types", c->layer_dense, n, "dense", "sparse");
    pl_buf_printf(o, "  \"moe_intermediate_size\": %d,\n  \"moe_layer_freq\": %d,\n  \"moe_router_dtype\": \"float32\",\n",
                  c->moe_intermediate_size, c->moe_layer_freq);
    pl_buf_printf(o, "  \"n_group\": %d,\n  \"n_routed_experts\": %d,\n  \"n_shared_experts\": %d,\n"
                  "  \"norm_topk_prob\": %s,\n  \"num_attention_heads\": %d,\n  \"num_experts_per_tok\": %d,\n",
                  c->n_group, c->n_routed_experts, c->n_shared_experts, c->norm_topk_prob ? "true" : "false",
                  c->num_attention_heads, c->num_experts_per_tok);
    pl_buf_printf(o, "  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n  \"num_nextn_predict_layers\": %d,\n",
                  n, c->num_key_value_heads, c->num_nextn_predict_layers);
    pl_buf_printf(o, "  \"pad_token_id\": %d,\n  \"pretraining_tp\": 1,\n  \"q_lora_rank\": %d,\n"
                  "  \"qk_head_dim\": %d,\n  \"qk_nope_head_dim\": %d,\n  \"qk_rope_head_dim\": %d,\n",
                  c->pad_token_id, c->q_lora_rank, c->qk_nope_head_dim + c->qk_rope_head_dim,
                  c->qk_nope_head_dim, c->qk_rope_head_dim);
    put_json_tail(c, o, "5.12.0");
}

/* ===== tensor catalogue ===== */

struct slotdef {
    int slot;
    const char *suffix;
    enum eng_tclass cls;
};

/* Attention (always), indexer (full layers), MLP (dense or MoE), MTP extras. */
static const struct slotdef k_attn[] = {
    { ENG_W_INPUT_NORM, "input_layernorm.weight", ENG_TC_NORM },
    { ENG_W_POST_NORM, "post_attention_layernorm.weight", ENG_TC_NORM },
    { ENG_W_Q_A, "self_attn.q_a_proj.weight", ENG_TC_LINEAR },
    { ENG_W_Q_A_NORM, "self_attn.q_a_layernorm.weight", ENG_TC_NORM },
    { ENG_W_Q_B, "self_attn.q_b_proj.weight", ENG_TC_LINEAR },
    { ENG_W_KV_A, "self_attn.kv_a_proj_with_mqa.weight", ENG_TC_LINEAR },
    { ENG_W_KV_A_NORM, "self_attn.kv_a_layernorm.weight", ENG_TC_NORM },
    { ENG_W_KV_B, "self_attn.kv_b_proj.weight", ENG_TC_LINEAR },
    { ENG_W_O, "self_attn.o_proj.weight", ENG_TC_LINEAR },
};
/* Glm4MoeForCausalLM's attention: biased q/k/v (attention_bias), plain o,
 * per-head q/k norms (use_qk_norm). */
static const struct slotdef k_gqa[] = {
    { ENG_W_INPUT_NORM, "input_layernorm.weight", ENG_TC_NORM },
    { ENG_W_POST_NORM, "post_attention_layernorm.weight", ENG_TC_NORM },
    { ENG_W_Q_PROJ, "self_attn.q_proj.weight", ENG_TC_LINEAR },
    { ENG_W_Q_BIAS, "self_attn.q_proj.bias", ENG_TC_LINEAR_BIAS },
    { ENG_W_K_PROJ, "self_attn.k_proj.weight", ENG_TC_LINEAR },
    { ENG_W_K_BIAS, "self_attn.k_proj.bias", ENG_TC_LINEAR_BIAS },
    { ENG_W_V_PROJ, "self_attn.v_proj.weight", ENG_TC_LINEAR },
    { ENG_W_V_BIAS, "self_attn.v_proj.bias", ENG_TC_LINEAR_BIAS },
    { ENG_W_O, "self_attn.o_proj.weight", ENG_TC_LINEAR },
    { ENG_W_Q_NORM, "self_attn.q_norm.weight", ENG_TC_NORM },
    { ENG_W_K_NORM, "self_attn.k_norm.weight", ENG_TC_NORM },
};
static const struct slotdef k_index[] = {
    { ENG_W_IDX_WQ_B, "self_attn.indexer.wq_b.weight", ENG_TC_LINEAR },
    { ENG_W_IDX_WK, "self_attn.indexer.wk.weight", ENG_TC_LINEAR },
    { ENG_W_IDX_KNORM_W, "self_attn.indexer.k_norm.weight", ENG_TC_NORM },
    { ENG_W_IDX_KNORM_B, "self_attn.indexer.k_norm.bias", ENG_TC_NORM_BIAS },
    { ENG_W_IDX_WPROJ, "self_attn.indexer.weights_proj.weight", ENG_TC_LINEAR_KEEP },
};
static const struct slotdef k_dense[] = {
    { ENG_W_MLP_GATE, "mlp.gate_proj.weight", ENG_TC_LINEAR },
    { ENG_W_MLP_UP, "mlp.up_proj.weight", ENG_TC_LINEAR },
    { ENG_W_MLP_DOWN, "mlp.down_proj.weight", ENG_TC_LINEAR },
};
static const struct slotdef k_moe[] = {
    { ENG_W_ROUTER, "mlp.gate.weight", ENG_TC_LINEAR_KEEP },
    { ENG_W_ROUTER_BIAS, "mlp.gate.e_score_correction_bias", ENG_TC_BIAS_F32 },
    { ENG_W_SH_GATE, "mlp.shared_experts.gate_proj.weight", ENG_TC_LINEAR },
    { ENG_W_SH_UP, "mlp.shared_experts.up_proj.weight", ENG_TC_LINEAR },
    { ENG_W_SH_DOWN, "mlp.shared_experts.down_proj.weight", ENG_TC_LINEAR },
};
static const struct slotdef k_mtp[] = {
    { ENG_W_MTP_ENORM, "enorm.weight", ENG_TC_NORM },
    { ENG_W_MTP_HNORM, "hnorm.weight", ENG_TC_NORM },
    { ENG_W_MTP_EH, "eh_proj.weight", ENG_TC_LINEAR_KEEP },
    { ENG_W_MTP_HEAD_NORM, "shared_head.norm.weight", ENG_TC_NORM },
};
static const char *const k_expert_proj[ENG_EXP_COUNT] = { "gate_proj", "up_proj", "down_proj" };

static void slot_shape(const eng_config *c, int slot, int64_t *r, int64_t *k)
{
    int64_t H = c->hidden_size, nh = c->num_attention_heads, qk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    int64_t sh = (int64_t)c->moe_intermediate_size * c->n_shared_experts;
    *r = 1;
    switch (slot) {
    case ENG_W_INPUT_NORM: case ENG_W_POST_NORM: case ENG_W_MTP_ENORM: case ENG_W_MTP_HNORM:
    case ENG_W_MTP_HEAD_NORM:                   *k = H; break;
    case ENG_W_Q_A:          *r = c->q_lora_rank; *k = H; break;
    case ENG_W_Q_A_NORM:     *k = c->q_lora_rank; break;
    case ENG_W_Q_B:          *r = nh * qk; *k = c->q_lora_rank; break;
    case ENG_W_KV_A:         *r = c->kv_lora_rank + c->qk_rope_head_dim; *k = H; break;
    case ENG_W_KV_A_NORM:    *k = c->kv_lora_rank; break;
    case ENG_W_KV_B:         *r = nh * (c->qk_nope_head_dim + c->v_head_dim); *k = c->kv_lora_rank; break;
    case ENG_W_O:            *r = H; *k = nh * (c->attn_gqa ? c->head_dim : c->v_head_dim); break;
    case ENG_W_IDX_WQ_B:     *r = (int64_t)c->index_n_heads * c->index_head_dim; *k = c->q_lora_rank; break;
    case ENG_W_IDX_WK:       *r = c->index_head_dim; *k = H; break;
    case ENG_W_IDX_KNORM_W: case ENG_W_IDX_KNORM_B: *k = c->index_head_dim; break;
    case ENG_W_IDX_WPROJ:    *r = c->index_n_heads; *k = H; break;
    case ENG_W_MLP_GATE: case ENG_W_MLP_UP: *r = c->intermediate_size; *k = H; break;
    case ENG_W_MLP_DOWN:     *r = H; *k = c->intermediate_size; break;
    case ENG_W_ROUTER:       *r = c->n_routed_experts; *k = H; break;
    case ENG_W_ROUTER_BIAS:  *k = c->n_routed_experts; break;
    case ENG_W_SH_GATE: case ENG_W_SH_UP: *r = sh; *k = H; break;
    case ENG_W_SH_DOWN:      *r = H; *k = sh; break;
    case ENG_W_MTP_EH:       *r = H; *k = 2 * H; break;
    case ENG_W_Q_PROJ:       *r = nh * c->head_dim; *k = H; break;
    case ENG_W_Q_BIAS:       *k = nh * c->head_dim; break;
    case ENG_W_K_PROJ: case ENG_W_V_PROJ: *r = (int64_t)c->num_key_value_heads * c->head_dim; *k = H; break;
    case ENG_W_K_BIAS: case ENG_W_V_BIAS: *k = (int64_t)c->num_key_value_heads * c->head_dim; break;
    case ENG_W_Q_NORM: case ENG_W_K_NORM: *k = c->head_dim; break;
    default:                 *k = 0; break;
    }
}

static int emit(const eng_tdesc *d, int (*fn)(void *, const eng_tdesc *), void *ctx)
{
    return fn(ctx, d);
}

static int emit_slots(const eng_config *c, int layer, const struct slotdef *defs, size_t n,
                      int (*fn)(void *, const eng_tdesc *), void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        if ((defs[i].slot == ENG_W_SH_GATE || defs[i].slot == ENG_W_SH_UP || defs[i].slot == ENG_W_SH_DOWN) &&
            c->n_shared_experts == 0)
            continue;
        if (((defs[i].slot == ENG_W_Q_BIAS || defs[i].slot == ENG_W_K_BIAS || defs[i].slot == ENG_W_V_BIAS) &&
             !c->attention_bias) ||
            ((defs[i].slot == ENG_W_Q_NORM || defs[i].slot == ENG_W_K_NORM) && !c->use_qk_norm))
            continue;
        eng_tdesc d = { .layer = layer, .slot = defs[i].slot, .expert = -1, .proj = -1, .top = -1,
                        .cls = defs[i].cls };
        snprintf(d.name, sizeof d.name, "model.layers.%d.%s", layer, defs[i].suffix);
        int64_t r, k;
        slot_shape(c, defs[i].slot, &r, &k);
        if (defs[i].cls == ENG_TC_NORM || defs[i].cls == ENG_TC_NORM_BIAS || defs[i].cls == ENG_TC_BIAS_F32 ||
            defs[i].cls == ENG_TC_LINEAR_BIAS) {
            d.ndim = 1; d.shape[0] = k;
        } else {
            d.ndim = 2; d.shape[0] = r; d.shape[1] = k;
        }
        int rc = emit(&d, fn, ctx);
        if (rc) return rc;
    }
    return 0;
}

int eng_config_foreach_tensor(const eng_config *c, int with_mtp,
                              int (*fn)(void *ctx, const eng_tdesc *d), void *ctx)
{
    static const char *const top_names[3] = { "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight" };
    for (int t = 0; t < 3; t++) {
        if (t == 2 && c->tie_word_embeddings) continue;
        eng_tdesc d = { .layer = -1, .slot = -1, .expert = -1, .proj = -1, .top = t,
                        .cls = t == 1 ? ENG_TC_NORM : ENG_TC_EMBED };
        snprintf(d.name, sizeof d.name, "%s", top_names[t]);
        if (t == 1) { d.ndim = 1; d.shape[0] = c->hidden_size; }
        else { d.ndim = 2; d.shape[0] = c->vocab_size; d.shape[1] = c->hidden_size; }
        int rc = emit(&d, fn, ctx);
        if (rc) return rc;
    }
    int nl = c->num_hidden_layers + (with_mtp ? 1 : 0);
    for (int l = 0; l < nl; l++) {
        int rc = c->attn_gqa ? emit_slots(c, l, k_gqa, PL_ARRAY_LEN(k_gqa), fn, ctx)
                             : emit_slots(c, l, k_attn, PL_ARRAY_LEN(k_attn), fn, ctx);
        if (!rc && c->layer_index_full[l]) rc = emit_slots(c, l, k_index, PL_ARRAY_LEN(k_index), fn, ctx);
        if (!rc && c->layer_dense[l]) rc = emit_slots(c, l, k_dense, PL_ARRAY_LEN(k_dense), fn, ctx);
        if (!rc && !c->layer_dense[l]) {
            rc = emit_slots(c, l, k_moe, PL_ARRAY_LEN(k_moe), fn, ctx);
            for (int e = 0; !rc && e < c->n_routed_experts; e++)
                for (int p = 0; !rc && p < ENG_EXP_COUNT; p++) {
                    eng_tdesc d = { .layer = l, .slot = -1, .expert = e, .proj = p, .top = -1,
                                    .cls = ENG_TC_LINEAR, .ndim = 2 };
                    snprintf(d.name, sizeof d.name, "model.layers.%d.mlp.experts.%d.%s.weight", l, e, k_expert_proj[p]);
                    d.shape[0] = p == ENG_EXP_DOWN ? c->hidden_size : c->moe_intermediate_size;
                    d.shape[1] = p == ENG_EXP_DOWN ? c->moe_intermediate_size : c->hidden_size;
                    rc = emit(&d, fn, ctx);
                }
        }
        if (!rc && l == c->num_hidden_layers) rc = emit_slots(c, l, k_mtp, PL_ARRAY_LEN(k_mtp), fn, ctx);
        if (rc) return rc;
    }
    return 0;
}

/* ===== safetensors header ===== */

static const struct { const char *name; enum eng_dtype dt; size_t size; } k_st_dtypes[] = {
    { "F32", ENG_DT_F32, 4 }, { "BF16", ENG_DT_BF16, 2 }, { "F8_E4M3", ENG_DT_F8E4M3, 1 },
    { "F64", ENG_DT_OTHER, 8 }, { "F16", ENG_DT_OTHER, 2 }, { "F8_E5M2", ENG_DT_OTHER, 1 },
    { "I64", ENG_DT_OTHER, 8 }, { "I32", ENG_DT_OTHER, 4 }, { "I16", ENG_DT_OTHER, 2 },
    { "I8", ENG_DT_OTHER, 1 }, { "U8", ENG_DT_OTHER, 1 }, { "BOOL", ENG_DT_OTHER, 1 },
    { "U16", ENG_DT_OTHER, 2 }, { "U32", ENG_DT_OTHER, 4 }, { "U64", ENG_DT_OTHER, 8 },
};

#define ST_MAX_HEADER (256ull << 20)

static int st_entry(const cJSON *e, const char *path, uint64_t data_len, uint64_t data_start,
                    eng_st_visit_fn fn, void *ctx, char *err, size_t errlen)
{
    const char *name = e->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) ||
        cJSON_GetArraySize(off) != 2)
        return pl_seterr(err, errlen, PL_ERR_PARSE, "%s: tensor %s: header entry needs dtype, shape, data_offsets",
                         path, name);
    size_t k = 0, esize = 0;
    for (; k < PL_ARRAY_LEN(k_st_dtypes); k++)
        if (!strcmp(dt->valuestring, k_st_dtypes[k].name)) { esize = k_st_dtypes[k].size; break; }
    if (!esize)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%s: tensor %s: unknown dtype %s", path, name, dt->valuestring);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > ENG_ST_MAX_DIM)
        return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "%s: tensor %s: %d dimensions (max %d)",
                         path, name, ndim, ENG_ST_MAX_DIM);
    int64_t shape[ENG_ST_MAX_DIM] = { 0 };
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(sh, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble != floor(d->valuedouble) ||
            d->valuedouble > 1e15)
            return pl_seterr(err, errlen, PL_ERR_PARSE, "%s: tensor %s: bad shape", path, name);
        shape[i] = (int64_t)d->valuedouble;
        if (shape[i] && numel > (1ull << 50) / (uint64_t)shape[i])
            return pl_seterr(err, errlen, PL_ERR_RANGE, "%s: tensor %s: shape too large", path, name);
        numel *= (uint64_t)shape[i];
    }
    double b0 = cJSON_GetArrayItem(off, 0)->valuedouble, b1 = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) ||
        b0 < 0 || b1 < b0 || b0 != floor(b0) || b1 != floor(b1))
        return pl_seterr(err, errlen, PL_ERR_PARSE, "%s: tensor %s: bad data_offsets", path, name);
    /* Compared as doubles first: converting one past 2^64 to uint64_t is undefined. */
    if (b1 > (double)data_len)
        return pl_seterr(err, errlen, PL_ERR_RANGE,
                         "%s: tensor %s: data_offsets [%.0f, %.0f) run past the end of the file "
                         "(%llu data bytes; truncated file?)", path, name, b0, b1, (unsigned long long)data_len);
    uint64_t begin = (uint64_t)b0, end = (uint64_t)b1;
    if (end - begin != numel * esize)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "%s: tensor %s: %llu bytes for %llu elements of %s",
                         path, name, (unsigned long long)(end - begin), (unsigned long long)numel, dt->valuestring);
    return fn(ctx, name, k_st_dtypes[k].dt, k_st_dtypes[k].name, ndim, shape,
              data_start + begin, data_start + end);
}

int eng_safetensors_parse(const unsigned char *file, uint64_t file_size, const char *path,
                          eng_st_visit_fn fn, void *ctx, char *err, size_t errlen)
{
    if (file_size < 8)
        return pl_seterr(err, errlen, PL_ERR_PARSE, "%s: %llu bytes: too short for a safetensors header",
                         path, (unsigned long long)file_size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | file[i];
    if (hlen > file_size - 8 || hlen > ST_MAX_HEADER || hlen < 2)
        return pl_seterr(err, errlen, PL_ERR_PARSE,
                         "%s: header length %llu does not fit the %llu-byte file", path,
                         (unsigned long long)hlen, (unsigned long long)file_size);
    cJSON *root = cJSON_ParseWithLength((const char *)file + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pl_seterr(err, errlen, PL_ERR_PARSE, "%s: safetensors header is not a JSON object", path);
    }
    int rc = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) continue;
        rc = st_entry(e, path, file_size - 8 - hlen, 8 + hlen, fn, ctx, err, errlen);
        if (rc) break;
    }
    cJSON_Delete(root);
    return rc;
}

/* ===== weights: files, index, binding ===== */

typedef struct st_entry_rec {
    char *name;
    int file;
    enum eng_dtype dt;
    char dtname[12];
    int ndim;
    int64_t shape[ENG_ST_MAX_DIM];
    uint64_t begin, end;
    int used;
} st_rec;

typedef struct st_file {
    char *path;
    unsigned char *map;
    uint64_t size;
} st_file;

struct eng_weights {
    st_file *files;
    int n_files;
    st_rec *recs;
    size_t n_recs, cap_recs;
    size_t *hash;           /* open addressing, index+1, 0 = empty */
    size_t hash_cap;
    eng_tensor embed, norm, lm_head;
    eng_layer_weights *layers;
    int n_layers;
    uint64_t bytes;
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) { h ^= (unsigned char)*s++; h *= 1099511628211ull; }
    return h;
}

static st_rec *find_rec(const eng_weights *w, const char *name)
{
    if (!w->hash_cap) return NULL;
    size_t m = w->hash_cap - 1;
    for (size_t i = name_hash(name) & m;; i = (i + 1) & m) {
        size_t v = w->hash[i];
        if (!v) return NULL;
        if (!strcmp(w->recs[v - 1].name, name)) return &w->recs[v - 1];
    }
}

static int hash_insert(eng_weights *w, size_t idx)
{
    if ((w->n_recs + 1) * 2 > w->hash_cap) {
        size_t cap = w->hash_cap ? w->hash_cap * 2 : 1024;
        size_t *h = calloc(cap, sizeof *h);
        if (!h) return PL_ERR_NOMEM;
        for (size_t i = 0; i < w->hash_cap; i++)
            if (w->hash[i]) {
                size_t j = name_hash(w->recs[w->hash[i] - 1].name) & (cap - 1);
                while (h[j]) j = (j + 1) & (cap - 1);
                h[j] = w->hash[i];
            }
        free(w->hash);
        w->hash = h;
        w->hash_cap = cap;
    }
    size_t j = name_hash(w->recs[idx].name) & (w->hash_cap - 1);
    while (w->hash[j]) j = (j + 1) & (w->hash_cap - 1);
    w->hash[j] = idx + 1;
    return 0;
}

struct addctx { eng_weights *w; int file; char *err; size_t errlen; };

static int add_rec(void *vctx, const char *name, enum eng_dtype dt, const char *dtname,
                   int ndim, const int64_t *shape, uint64_t begin, uint64_t end)
{
    struct addctx *x = vctx;
    eng_weights *w = x->w;
    st_rec *dup = find_rec(w, name);
    if (dup)
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: tensor %s also in %s",
                         w->files[x->file].path, name, w->files[dup->file].path);
    if (w->n_recs == w->cap_recs) {
        size_t cap = w->cap_recs ? w->cap_recs * 2 : 256;
        st_rec *r = realloc(w->recs, cap * sizeof *r);
        if (!r) return PL_ERR_NOMEM;
        w->recs = r;
        w->cap_recs = cap;
    }
    st_rec *r = &w->recs[w->n_recs];
    memset(r, 0, sizeof *r);
    r->name = strdup(name);
    if (!r->name) return PL_ERR_NOMEM;
    r->file = x->file; r->dt = dt; r->ndim = ndim;
    snprintf(r->dtname, sizeof r->dtname, "%s", dtname);
    memcpy(r->shape, shape, (size_t)ndim * sizeof *shape);
    r->begin = begin; r->end = end;
    int rc = hash_insert(w, w->n_recs);
    if (rc) { free(r->name); return rc; }
    w->n_recs++;
    return 0;
}

/* The huge page size the mappings are aligned to. */
#define HP_ALIGN ((size_t)2 << 20)

/* len bytes of anonymous memory (prot, extra mmap flags) at an address that
 * is a multiple of HP_ALIGN: one HP_ALIGN more is mapped, then the ends
 * trimmed (to whole pages). MAP_FAILED as mmap says. */
static unsigned char *map_hp_aligned(size_t len, int prot, int flags)
{
    unsigned char *r = mmap(NULL, len + HP_ALIGN, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    if (r == MAP_FAILED) return r;
    unsigned char *a = (unsigned char *)(((uintptr_t)r + HP_ALIGN - 1) & ~(uintptr_t)(HP_ALIGN - 1));
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), end = ((size_t)(a - r) + len + pg - 1) / pg * pg;
    if (a > r) munmap(r, (size_t)(a - r));
    if (end < len + HP_ALIGN) munmap(r + end, len + HP_ALIGN - end);
    return a;
}

/* The file mapped read-only over such a reservation, so file offset and
 * address agree modulo HP_ALIGN: a whole huge page of the file can later be
 * replaced by an anonymous huge page at the same address
 * (eng_weights_hugepages). */
static void *map_aligned(int fd, uint64_t size)
{
    size_t len = (size_t)size;
    unsigned char *a = map_hp_aligned(len, PROT_NONE, MAP_NORESERVE);
    if (a == MAP_FAILED) return mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    void *m = mmap(a, len, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (m == MAP_FAILED) munmap(a, len);
    return m;
}

static int map_file(eng_weights *w, const char *dir, const char *fname, char *err, size_t errlen)
{
    if (!*fname || strchr(fname, '/') || !strcmp(fname, "..") || !strcmp(fname, "."))
        return pl_seterr(err, errlen, PL_ERR_INVALID, "shard name \"%s\" is not a plain file name", fname);
    for (int i = 0; i < w->n_files; i++)
        if (!strcmp(strrchr(w->files[i].path, '/') + 1, fname)) return 0;
    st_file *nf = realloc(w->files, (size_t)(w->n_files + 1) * sizeof *nf);
    if (!nf) return PL_ERR_NOMEM;
    w->files = nf;
    st_file *f = &w->files[w->n_files];
    memset(f, 0, sizeof *f);
    size_t pl = strlen(dir) + strlen(fname) + 2;
    f->path = malloc(pl);
    if (!f->path) return PL_ERR_NOMEM;
    snprintf(f->path, pl, "%s/%s", dir, fname);
    w->n_files++;
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pl_seterr(err, errlen, errno == ENOENT ? PL_ERR_NOTFOUND : PL_ERR_IO,
                                 "%s: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return pl_seterr(err, errlen, PL_ERR_IO, "%s: not a regular file", f->path);
    }
    f->size = (uint64_t)st.st_size;
    if (f->size) {
        void *m = map_aligned(fd, f->size);
        if (m == MAP_FAILED) {
            close(fd);
            return pl_seterr(err, errlen, PL_ERR_IO, "%s: mmap: %s", f->path, strerror(errno));
        }
        f->map = m;
    }
    close(fd);
    struct addctx x = { w, w->n_files - 1, err, errlen };
    return eng_safetensors_parse(f->map, f->size, f->path, add_rec, &x, err, errlen);
}

/* model.safetensors.index.json: map every shard it names, then check that
 * each weight_map entry is in the shard it claims. */
static int map_index(eng_weights *w, const char *dir, const char *ipath, char *err, size_t errlen)
{
    pl_buf b;
    pl_buf_init(&b);
    int rc = pl_file_read(ipath, &b, 256u << 20, err, errlen);
    cJSON *root = rc ? NULL : cJSON_ParseWithLength(b.data, b.len);
    pl_buf_free(&b);
    if (rc) return rc;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        return pl_seterr(err, errlen, PL_ERR_PARSE, "%s: no \"weight_map\" object", ipath);
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e)) { rc = pl_seterr(err, errlen, PL_ERR_PARSE, "%s: weight_map[%s] is not a string",
                                                 ipath, e->string); break; }
        if ((rc = map_file(w, dir, e->valuestring, err, errlen))) break;
    }
    cJSON_ArrayForEach(e, wm) {
        if (rc) break;
        st_rec *r = find_rec(w, e->string);
        if (!r) rc = pl_seterr(err, errlen, PL_ERR_NOTFOUND, "%s/%s: tensor %s listed in %s is missing",
                               dir, e->valuestring, e->string, ipath);
        else if (strcmp(strrchr(w->files[r->file].path, '/') + 1, e->valuestring))
            rc = pl_seterr(err, errlen, PL_ERR_INVALID, "%s: tensor %s is in %s, not in %s as %s says",
                           dir, e->string, w->files[r->file].path, e->valuestring, ipath);
    }
    cJSON_Delete(root);
    return rc;
}

/* ---- binding catalogue entries to views */

struct bindctx {
    eng_weights *w;
    const char *dir;
    const eng_config *c;
    char *err;
    size_t errlen;
};

static const char *rec_path(const eng_weights *w, const st_rec *r) { return w->files[r->file].path; }

static int class_allows(enum eng_tclass cls, enum eng_dtype dt)
{
    switch (cls) {
    case ENG_TC_LINEAR:      return dt == ENG_DT_F32 || dt == ENG_DT_BF16 || dt == ENG_DT_F8E4M3;
    case ENG_TC_BIAS_F32:    return dt == ENG_DT_F32;
    default:                 return dt == ENG_DT_F32 || dt == ENG_DT_BF16;
    }
}

/* View rows [row0, row0+rows) of a record whose trailing dims are [*, cols]. */
static int make_view(struct bindctx *x, st_rec *r, uint64_t elem0, int64_t rows, int64_t cols,
                     int64_t row0_in_scale, eng_tensor *t)
{
    eng_weights *w = x->w;
    memset(t, 0, sizeof *t);
    t->dtype = r->dt;
    t->rows = rows;
    t->cols = cols;
    t->name = r->name;
    t->data = w->files[r->file].map + r->begin + elem0 * eng_dtype_size(r->dt);
    r->used = 1;
    char sname[200];
    size_t nl = strlen(r->name);
    snprintf(sname, sizeof sname, "%.*s_scale_inv", (int)nl, r->name);
    st_rec *s = find_rec(w, sname);
    if (r->dt != ENG_DT_F8E4M3) {
        if (s) return pl_seterr(x->err, x->errlen, PL_ERR_INVALID,
                                "%s: tensor %s is %s but has a weight_scale_inv", rec_path(w, r), r->name, r->dtname);
        return 0;
    }
    if (!s) return pl_seterr(x->err, x->errlen, PL_ERR_NOTFOUND,
                             "%s: tensor %s is F8_E4M3 but %s is missing", rec_path(w, r), r->name, sname);
    int64_t br = (r->shape[r->ndim - 2] + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK;
    int64_t bc = (cols + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK;
    int64_t lead = r->ndim == 3 ? r->shape[0] : 1;
    int ok = s->dt == ENG_DT_F32 && s->ndim == r->ndim && s->shape[s->ndim - 2] == br && s->shape[s->ndim - 1] == bc &&
             (r->ndim == 2 || s->shape[0] == lead);
    if (!ok) return pl_seterr(x->err, x->errlen, PL_ERR_INVALID,
                              "%s: tensor %s: expected F32 scales of %lld x %lld blocks",
                              rec_path(w, s), sname, (long long)br, (long long)bc);
    if (row0_in_scale % ENG_FP8_BLOCK)
        return pl_seterr(x->err, x->errlen, PL_ERR_UNSUPPORTED,
                         "%s: tensor %s: an FP8 slice must start on a 128-row block", rec_path(w, r), r->name);
    s->used = 1;
    t->scale = (const float *)(w->files[s->file].map + s->begin) + (row0_in_scale / ENG_FP8_BLOCK) * bc;
    t->scale_ld = bc;
    if (((uintptr_t)t->scale & 3))
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: tensor %s: misaligned F32 data",
                         rec_path(w, s), sname);
    return 0;
}

/* The kernels read F32/BF16 weights as float/uint16_t arrays (mappings are
 * page-aligned, so the file offset decides). */
static int check_align(struct bindctx *x, const st_rec *r)
{
    if (r->dt == ENG_DT_F32 && (r->begin & 3))
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: tensor %s: misaligned F32 data",
                         rec_path(x->w, r), r->name);
    if (r->dt == ENG_DT_BF16 && (r->begin & 1))
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: tensor %s: misaligned BF16 data",
                         rec_path(x->w, r), r->name);
    return 0;
}

static int check_rec(struct bindctx *x, st_rec *r, const eng_tdesc *d)
{
    eng_weights *w = x->w;
    if (!class_allows(d->cls, r->dt))
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: tensor %s: dtype %s not allowed here",
                         rec_path(w, r), r->name, r->dtname);
    int same = r->ndim == d->ndim;
    for (int i = 0; same && i < d->ndim; i++) same = r->shape[i] == d->shape[i];
    if (!same) {
        char got[96] = "", want[64];
        size_t n = 0;
        for (int i = 0; i < r->ndim && n < sizeof got - 24; i++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", i ? ", " : "", (long long)r->shape[i]);
        if (d->ndim == 1) snprintf(want, sizeof want, "%lld", (long long)d->shape[0]);
        else snprintf(want, sizeof want, "%lld, %lld", (long long)d->shape[0], (long long)d->shape[1]);
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID,
                         "%s: tensor %s: shape [%s] but config.json implies [%s]", rec_path(w, r), r->name, got, want);
    }
    return check_align(x, r);
}

/* transformers 5.x keeps experts fused: gate_up_proj [E, 2I, H] (gate rows
 * first) and down_proj [E, H, I]. Accept that layout as well. */
static int bind_fused_expert(struct bindctx *x, const eng_tdesc *d, eng_tensor *t)
{
    const eng_config *c = x->c;
    char name[160];
    int down = d->proj == ENG_EXP_DOWN;
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%s", d->layer, down ? "down_proj" : "gate_up_proj");
    st_rec *r = find_rec(x->w, name);
    if (!r) return 1;
    int64_t E = c->n_routed_experts, I = c->moe_intermediate_size, H = c->hidden_size;
    int64_t want1 = down ? H : 2 * I, want2 = down ? I : H;
    if (r->ndim != 3 || r->shape[0] != E || r->shape[1] != want1 || r->shape[2] != want2)
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID,
                         "%s: tensor %s: shape must be [%lld, %lld, %lld] for this config",
                         rec_path(x->w, r), name, (long long)E, (long long)want1, (long long)want2);
    if (!class_allows(ENG_TC_LINEAR, r->dt))
        return pl_seterr(x->err, x->errlen, PL_ERR_INVALID, "%s: tensor %s: dtype %s not allowed here",
                         rec_path(x->w, r), name, r->dtname);
    int rc = check_align(x, r);
    if (rc) return rc;
    int64_t row0 = d->proj == ENG_EXP_UP ? I : 0;
    uint64_t elem0 = (uint64_t)d->expert * (uint64_t)(want1 * want2) + (uint64_t)(row0 * want2);
    /* Scale rows of a 3-D scale tensor: expert e's table starts at e*ceil(want1/128). */
    rc = make_view(x, r, elem0, d->shape[0], d->shape[1], row0, t);
    if (!rc && t->scale) t->scale += (int64_t)d->expert * ((want1 + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK) * t->scale_ld;
    return rc;
}

static int bind_one(void *vctx, const eng_tdesc *d)
{
    struct bindctx *x = vctx;
    eng_weights *w = x->w;
    eng_tensor *t;
    if (d->top == 0) t = &w->embed;
    else if (d->top == 1) t = &w->norm;
    else if (d->top == 2) t = &w->lm_head;
    else if (d->expert >= 0) t = &w->layers[d->layer].experts[d->expert * ENG_EXP_COUNT + d->proj];
    else t = &w->layers[d->layer].w[d->slot];
    st_rec *r = find_rec(w, d->name);
    if (!r && d->expert >= 0) {
        int rc = bind_fused_expert(x, d, t);
        if (rc <= 0) return rc;
    }
    if (!r) return pl_seterr(x->err, x->errlen, PL_ERR_NOTFOUND, "%s: tensor %s is missing",
                             w->n_files == 1 ? w->files[0].path : x->dir, d->name);
    int rc = check_rec(x, r, d);
    if (rc) return rc;
    int64_t rows = d->ndim == 1 ? 1 : d->shape[0], cols = d->ndim == 1 ? d->shape[0] : d->shape[1];
    return make_view(x, r, 0, rows, cols, 0, t);
}

/* ---- progress: a bar on a terminal, a log line every few seconds otherwise */

struct progress {
    uint64_t total, done;
    double t0, last;
    int tty, quiet;
};

static double now_s(void) { return pl_mono_s(); }

static void progress_show(struct progress *p, int final)
{
    if (p->quiet) return;
    double t = now_s();
    if (!final && t - p->last < (p->tty ? 0.2 : 5.0)) return;
    p->last = t;
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    if (p->tty) {
        char bar[41];
        int k = (int)(frac * 40);
        for (int i = 0; i < 40; i++) bar[i] = i < k ? '#' : ' ';
        bar[40] = 0;
        fprintf(stderr, "\rloading weights [%s] %3d%% %.2f/%.2f GB %.0fs", bar, (int)(frac * 100),
                p->done / 1e9, p->total / 1e9, t - p->t0);
        if (final) fputc('\n', stderr);
    } else {
        pl_log(PL_LOG_INFO, NULL, 0, "loading weights: %d%% (%.2f of %.2f GB, %.0fs)", (int)(frac * 100),
               p->done / 1e9, p->total / 1e9, t - p->t0);
    }
}

/* Touch every page of every used tensor so the first forward pass does not
 * pay the disk reads (and the progress shown is the real loading time). */
static void prefault(eng_weights *w, const eng_load_opts *o)
{
    struct progress p = { .total = w->bytes, .t0 = now_s(), .last = now_s(), .tty = isatty(2), .quiet = o->quiet };
    volatile unsigned char sink = 0;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    for (size_t i = 0; i < w->n_recs; i++) {
        st_rec *r = &w->recs[i];
        if (!r->used) continue;
        const unsigned char *m = w->files[r->file].map;
        madvise((void *)((uintptr_t)(m + r->begin) & ~(uintptr_t)(pg - 1)), r->end - r->begin, MADV_WILLNEED);
        for (uint64_t o2 = r->begin; o2 < r->end; o2 += (uint64_t)pg) sink ^= m[o2];
        p.done += r->end - r->begin;
        progress_show(&p, 0);
    }
    (void)sink;
    progress_show(&p, 1);
}

int eng_weights_load(const char *dir, const eng_load_opts *opts, eng_config *cfg,
                     eng_weights **out, char *err, size_t errlen)
{
    static const eng_load_opts dflt = { 0, 0, 0 };
    if (!opts) opts = &dflt;
    *out = NULL;
    int rc = eng_config_load(cfg, dir, err, errlen);
    if (rc) return rc;
    eng_weights *w = calloc(1, sizeof *w);
    if (!w) return PL_ERR_NOMEM;
    char ipath[4096];
    snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", dir);
    if (access(ipath, F_OK) == 0) rc = map_index(w, dir, ipath, err, errlen);
    else rc = map_file(w, dir, "model.safetensors", err, errlen);
    /* The MTP layer is loaded when the config asks for one and its tensors exist. */
    char probe[128];
    snprintf(probe, sizeof probe, "model.layers.%d.eh_proj.weight", cfg->num_hidden_layers);
    cfg->has_mtp_weights = !rc && cfg->num_nextn_predict_layers > 0 && find_rec(w, probe) != NULL;
    if (!rc) {
        w->n_layers = eng_config_n_layers_total(cfg);
        w->layers = calloc((size_t)w->n_layers, sizeof *w->layers);
        if (!w->layers) rc = PL_ERR_NOMEM;
        for (int l = 0; !rc && l < w->n_layers; l++)
            if (!cfg->layer_dense[l]) {
                w->layers[l].experts = calloc((size_t)cfg->n_routed_experts * ENG_EXP_COUNT, sizeof(eng_tensor));
                if (!w->layers[l].experts) rc = PL_ERR_NOMEM;
            }
    }
    if (!rc) {
        struct bindctx x = { w, dir, cfg, err, errlen };
        rc = eng_config_foreach_tensor(cfg, cfg->has_mtp_weights, bind_one, &x);
    }
    if (rc == PL_ERR_NOMEM) pl_seterr(err, errlen, rc, "%s: out of memory while loading", dir);
    if (!rc) {
        if (cfg->tie_word_embeddings) w->lm_head = w->embed;
        size_t unused = 0;
        const char *first = NULL;
        for (size_t i = 0; i < w->n_recs; i++) {
            if (w->recs[i].used) { w->bytes += w->recs[i].end - w->recs[i].begin; continue; }
            unused++;
            if (!first) first = w->recs[i].name;
        }
        if (unused && !opts->quiet)
            pl_log(PL_LOG_WARN, NULL, 0, "%s: %zu tensors not used by %s (first: %s)", dir, unused,
                   eng_arch_class(cfg->arch), first);
        if (cfg->num_nextn_predict_layers > 0 && !cfg->has_mtp_weights && !opts->quiet)
            pl_log(PL_LOG_INFO, NULL, 0, "%s: no MTP layer %d in the checkpoint; speculative decoding unavailable",
                   dir, cfg->num_hidden_layers);
        if (opts->prefault) prefault(w, opts);
    }
    if (rc) { eng_weights_free(w); return rc; }
    *out = w;
    return 0;
}

void eng_weights_free(eng_weights *w)
{
    if (!w) return;
    for (int i = 0; i < w->n_files; i++) {
        if (w->files[i].map) munmap(w->files[i].map, w->files[i].size);
        free(w->files[i].path);
    }
    for (size_t i = 0; i < w->n_recs; i++) free(w->recs[i].name);
    for (int l = 0; l < w->n_layers; l++) free(w->layers[l].experts);
    free(w->layers);
    free(w->files);
    free(w->recs);
    free(w->hash);
    free(w);
}

/* ===== huge pages for the weights a process reads =====
 *
 * A batched decode step reads every expert of a layer once and multiplies
 * it by the tokens routed to it; over 4 KiB pages of the file mapping the
 * core's TLB misses on nearly every new page of those streams (and the
 * hardware prefetcher stops at each page's end). The same bytes in 2 MiB
 * anonymous pages: docs/perf.md "Weights in huge pages". The copy is
 * mremap()ed over the file pages at the same address, so every view (and
 * every pointer into a view) stays valid. */

/* A small kernel file (sysfs, procfs) as text in b: 0 or pl_file_read's error. */
static int read_text(const char *path, pl_buf *b) { return pl_file_read(path, b, 16u << 20, NULL, 0); }

/* 2: "always", 1: "madvise", 0: "never" or no THP in this kernel. */
static int thp_mode(void)
{
    pl_buf b;
    pl_buf_init(&b);
    int mode = read_text("/sys/kernel/mm/transparent_hugepage/enabled", &b) ? 0
               : strstr(b.data, "[always]") ? 2 : strstr(b.data, "[madvise]") ? 1 : 0;
    pl_buf_free(&b);
    return mode;
}

/* Moved runs this process may still add: each can split a file mapping in
 * three, so stay far below vm.max_map_count (a failed mremap would cost
 * the process its weights). */
static long map_budget(void)
{
    pl_buf b;
    pl_buf_init(&b);
    long max = 65530, maps = 0;         /* the kernel's default when the file says nothing */
    if (!read_text("/proc/sys/vm/max_map_count", &b)) {
        char *end;
        long v = strtol(b.data, &end, 10);
        if (end != b.data) max = v;
    }
    if (!read_text("/proc/self/maps", &b))
        for (size_t i = 0; i < b.len; i++) maps += b.data[i] == '\n';
    pl_buf_free(&b);
    return (max - maps) / 2 - 1024;
}

/* Mark the huge pages of file f that bytes [p, p + n) touch (whole ones
 * only: the file's last partial huge page stays a file page). */
static void hp_mark(const st_file *f, uint8_t *need, const void *p, size_t n)
{
    const unsigned char *b = p;
    if (!n || !f->map || b < f->map || b >= f->map + f->size) return;
    size_t full = (size_t)f->size / HP_ALIGN, c0 = (size_t)(b - f->map) / HP_ALIGN;
    size_t c1 = ((size_t)(b - f->map) + n - 1) / HP_ALIGN;
    for (size_t c = c0; c <= c1 && c < full; c++) need[c] = 1;
}

/* Bytes [off, off + len) of file f (huge-page aligned) replaced by an
 * anonymous copy. On a failed mremap the file is mapped there again. */
static int hp_move(const st_file *f, size_t off, size_t len, int madv, char *err, size_t errlen)
{
    unsigned char *dst = f->map + off, *a = map_hp_aligned(len, PROT_READ | PROT_WRITE, 0);
    if (a == MAP_FAILED) return pl_seterr(err, errlen, PL_ERR_NOMEM, "%s: %zu bytes for huge pages: %s", f->path, len,
                                          strerror(errno));
    if (madv) madvise(a, len, MADV_HUGEPAGE);
    memcpy(a, dst, len);
    mprotect(a, len, PROT_READ);
    if (mremap(a, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != MAP_FAILED) return 0;
    int e = errno;
    munmap(a, len);
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    void *m = fd < 0 ? MAP_FAILED : mmap(dst, len, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, (off_t)off);
    if (fd >= 0) close(fd);
    if (m == MAP_FAILED)        /* the range is unmapped now: the weights are unusable */
        return pl_seterr(err, errlen, PL_ERR_INTERNAL, "%s: mremap: %s, and mapping the file again failed",
                         f->path, strerror(e));
    return pl_seterr(err, errlen, PL_ERR_IO, "%s: mremap: %s (the rest stays in file pages)", f->path, strerror(e));
}

int eng_weights_hugepages(eng_weights *w, const eng_tensor *const *views, size_t n, uint64_t *bytes,
                          char *err, size_t errlen)
{
    *bytes = 0;
    int madv = thp_mode();
    if (!madv) return pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "transparent huge pages are off in this kernel "
                                "(/sys/kernel/mm/transparent_hugepage/enabled)");
    madv = madv == 1;
    long budget = map_budget();
    int rc = 0;
    for (int i = 0; i < w->n_files && !rc; i++) {
        const st_file *f = &w->files[i];
        size_t full = (size_t)f->size / HP_ALIGN;
        if (!full) continue;
        uint8_t *need = calloc(full, 1);
        if (!need) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
        for (size_t v = 0; v < n; v++) {
            const eng_tensor *t = views[v];
            if (!t || !t->data) continue;
            hp_mark(f, need, t->data, (size_t)t->rows * (size_t)t->cols * eng_dtype_size(t->dtype));
            if (t->scale)       /* FP8 block scales: a view off a block boundary spans one row more */
                hp_mark(f, need, t->scale, (size_t)((t->rows + ENG_FP8_BLOCK - 1) / ENG_FP8_BLOCK + 1) *
                                           (size_t)t->scale_ld * sizeof(float));
        }
        for (size_t c = 0; c < full && !rc;) {
            if (!need[c]) { c++; continue; }
            size_t e = c;
            while (e < full && need[e]) e++;
            if (budget-- <= 0) {
                rc = pl_seterr(err, errlen, PL_ERR_RANGE, "%s: too many separate ranges for vm.max_map_count "
                               "(the rest stays in file pages)", f->path);
                break;
            }
            rc = hp_move(f, c * HP_ALIGN, (e - c) * HP_ALIGN, madv, err, errlen);
            if (!rc) *bytes += (uint64_t)(e - c) * HP_ALIGN;
            c = e;
        }
        free(need);
    }
    return rc;
}

const eng_tensor *eng_weights_embed(const eng_weights *w) { return &w->embed; }
const eng_tensor *eng_weights_final_norm(const eng_weights *w) { return &w->norm; }
const eng_tensor *eng_weights_lm_head(const eng_weights *w) { return &w->lm_head; }
const eng_layer_weights *eng_weights_layer(const eng_weights *w, int layer)
{
    return layer >= 0 && layer < w->n_layers ? &w->layers[layer] : NULL;
}
uint64_t eng_weights_bytes(const eng_weights *w) { return w->bytes; }
