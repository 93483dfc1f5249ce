/* loader.h — GLM checkpoints: config.json, the tensor catalogue the
 * architecture implies, and memory-mapped safetensors. Three architectures:
 * GLM-5 (GlmMoeDsaForCausalLM: MLA + DSA indexer), GLM-4.7-Flash
 * (Glm4MoeLiteForCausalLM: the same MLA + MoE network without an indexer,
 * dense causal attention on every layer) and GLM-4.5/4.6/4.7
 * (Glm4MoeForCausalLM: grouped-query attention with biased q/k/v, optional
 * q/k norms and partial NeoX RoPE, the same MoE).
 *
 * One table (eng_config_foreach_tensor) says which tensors a config implies,
 * with their shapes and allowed dtypes. The loader checks a checkpoint
 * against it and glm-mkmodel writes checkpoints from it, so the two can never
 * disagree about names or shapes.
 *
 * Weights stay in the page cache (mmap, read-only); an eng_tensor is a view:
 * a 2-D row-major matrix [rows, cols] plus, for FP8, its 128x128 block
 * scales. Views of slices (one expert of a fused tensor) point into the same
 * mapping. Lifetime: every view dies with its eng_weights. */
#ifndef ENG_LOADER_H
#define ENG_LOADER_H

#include <stddef.h>
#include <stdint.h>
#include "pl.h"

#define ENG_MAX_LAYERS 512      /* num_hidden_layers + MTP must fit */
#define ENG_MAX_EOS    8
#define ENG_FP8_BLOCK  128      /* weight_block_size of the -FP8 repos */

/* ===== config ===== */

/* The architectures config.json may name. */
enum eng_arch {
    ENG_ARCH_GLM_MOE_DSA = 0,       /* GlmMoeDsaForCausalLM, glm_moe_dsa: GLM-5, 5.1, 5.2 */
    ENG_ARCH_GLM4_MOE_LITE = 1,     /* Glm4MoeLiteForCausalLM, glm4_moe_lite: GLM-4.7-Flash */
    ENG_ARCH_GLM4_MOE = 2,          /* Glm4MoeForCausalLM, glm4_moe: GLM-4.5, 4.5-Air, 4.6, 4.7 (GQA) */
};
/* Spellings: HF class name, model_type, glm-mkmodel's --arch. */
const char *eng_arch_class(enum eng_arch a);
const char *eng_arch_model_type(enum eng_arch a);

typedef struct eng_config {
    enum eng_arch arch;
    int has_indexer;                /* DSA indexer tensors and cache (GLM-5); 0: dense MLA everywhere */
    int vocab_size, hidden_size, intermediate_size, moe_intermediate_size;
    int num_hidden_layers, num_attention_heads, num_key_value_heads;
    int q_lora_rank, kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int head_dim_key;               /* config "head_dim": recorded, never used (doc §8.3) */
    int n_routed_experts, num_experts_per_tok, n_shared_experts;
    int first_k_dense_replace, moe_layer_freq;
    int n_group, topk_group, norm_topk_prob;
    double routed_scaling_factor;
    int index_n_heads, index_head_dim, index_topk;   /* 0 without an indexer */
    int index_topk_freq, index_skip_topk_offset;   /* defaults 1 and 2 as transformers */
    int index_share_for_mtp_iteration;
    int num_nextn_predict_layers;   /* 0 or 1 */
    double rope_theta;
    int rope_interleave, indexer_rope_interleave;
    double rms_norm_eps;            /* input/post/final/MTP norms */
    /* q_a_layernorm / kv_a_layernorm eps: transformers builds them with the
     * class default 1e-6 (no eps passed), vLLM/llama.cpp use rms_norm_eps.
     * We follow transformers, the reference our goldens come from (doc §3.3). */
    double latent_norm_eps;
    double indexer_norm_eps;        /* indexer k_norm LayerNorm: 1e-6 */
    int max_position_embeddings;
    int tie_word_embeddings;
    int eos_token_id[ENG_MAX_EOS], n_eos;
    int pad_token_id, bos_token_id; /* -1 when absent */
    int fp8;                        /* quantization_config fp8 e4m3 128x128 present */
    int has_mtp_weights;            /* set by the loader: layer num_hidden_layers exists */
    /* per layer, index 0..num_hidden_layers (the last is the MTP layer) */
    unsigned char layer_dense[ENG_MAX_LAYERS];     /* dense MLP (else MoE) */
    unsigned char layer_index_full[ENG_MAX_LAYERS];/* runs its own DSA indexer (all 0 without one) */
    /* Grouped-query attention (Glm4MoeForCausalLM) instead of MLA: q/k/v
     * projections of num_attention_heads / num_key_value_heads heads of
     * head_dim, NeoX (rotate-half) RoPE on the first qk_rope_head_dim dims of
     * each head (= int(head_dim * partial_rotary_factor)); the MLA fields
     * (q_lora_rank, kv_lora_rank, qk_nope_head_dim) are 0, v_head_dim =
     * head_dim. */
    int attn_gqa;
    int head_dim;                   /* config "head_dim" (transformers: hidden/heads when absent) */
    int attention_bias;             /* q/k/v projections carry a bias (o_proj never) */
    int use_qk_norm;                /* per-head RMSNorm on q and k before RoPE */
    /* Not from config.json: the KV heads one tensor-parallel rank computes
     * and caches (eng_model_open sets it on the model's copy, so a pool made
     * from eng_model_config holds that rank's K/V rows only); 0 = all
     * num_key_value_heads. */
    int kv_heads_rank;
} eng_config;

/* Defaults = GLM-5's values (transformers' GlmMoeDsaConfig defaults). */
void eng_config_defaults(eng_config *c);
/* Defaults of one architecture: GLM-5's above, or transformers'
 * Glm4MoeLiteConfig defaults (the GLM-4.7-Flash shapes, no indexer). */
void eng_config_defaults_arch(eng_config *c, enum eng_arch arch);
/* Check every value is usable, then fill the per-layer tables (MTP layer
 * included) from first_k_dense_replace/moe_layer_freq and
 * index_topk_freq/index_skip_topk_offset. */
int  eng_config_finish(eng_config *c, char *err, size_t errlen);
/* Parse config.json text (path only names the file in errors). */
int  eng_config_parse(eng_config *c, const char *json, size_t len, const char *path,
                      char *err, size_t errlen);
int  eng_config_load(eng_config *c, const char *dir, char *err, size_t errlen);
/* config.json as the HF repos write it (used by glm-mkmodel). */
void eng_config_write_json(const eng_config *c, pl_buf *out);
int  eng_config_n_layers_total(const eng_config *c);   /* + MTP layer when present */

/* ===== tensor catalogue ===== */

/* ENG_DT_OTHER: a dtype safetensors allows that no GLM tensor uses (F16,
 * I64, ...): accepted in a file, refused when a needed tensor has it. */
enum eng_dtype { ENG_DT_F32 = 0, ENG_DT_BF16 = 1, ENG_DT_F8E4M3 = 2, ENG_DT_OTHER = 3 };
const char *eng_dtype_name(enum eng_dtype d);          /* safetensors spelling */
size_t eng_dtype_size(enum eng_dtype d);

/* Per-layer weight slots (index into eng_layer_weights.w). */
enum eng_wslot {
    ENG_W_INPUT_NORM, ENG_W_POST_NORM,
    ENG_W_Q_A, ENG_W_Q_A_NORM, ENG_W_Q_B,
    ENG_W_KV_A, ENG_W_KV_A_NORM, ENG_W_KV_B, ENG_W_O,
    ENG_W_IDX_WQ_B, ENG_W_IDX_WK, ENG_W_IDX_KNORM_W, ENG_W_IDX_KNORM_B, ENG_W_IDX_WPROJ,
    ENG_W_MLP_GATE, ENG_W_MLP_UP, ENG_W_MLP_DOWN,          /* dense layers */
    ENG_W_ROUTER, ENG_W_ROUTER_BIAS,
    ENG_W_SH_GATE, ENG_W_SH_UP, ENG_W_SH_DOWN,              /* shared expert */
    ENG_W_MTP_ENORM, ENG_W_MTP_HNORM, ENG_W_MTP_EH, ENG_W_MTP_HEAD_NORM,
    ENG_W_Q_PROJ, ENG_W_Q_BIAS, ENG_W_K_PROJ, ENG_W_K_BIAS, ENG_W_V_PROJ, ENG_W_V_BIAS,   /* GQA */
    ENG_W_Q_NORM, ENG_W_K_NORM,                             /* GQA with use_qk_norm: [head_dim] */
    ENG_W_LAYER_COUNT
};
enum eng_expert_proj { ENG_EXP_GATE, ENG_EXP_UP, ENG_EXP_DOWN, ENG_EXP_COUNT };

/* What a tensor is, for dtype rules and for glm-mkmodel's initialisation. */
enum eng_tclass {
    ENG_TC_NORM,        /* RMSNorm/LayerNorm weight: BF16 or F32 */
    ENG_TC_NORM_BIAS,   /* LayerNorm bias */
    ENG_TC_LINEAR,      /* projection; FP8 + weight_scale_inv allowed */
    ENG_TC_LINEAR_KEEP, /* projection kept in BF16 even in FP8 repos (router, weights_proj, eh_proj) */
    ENG_TC_EMBED,       /* embed_tokens, lm_head */
    ENG_TC_BIAS_F32,    /* e_score_correction_bias: F32 only */
    ENG_TC_LINEAR_BIAS, /* q/k/v_proj.bias (GQA): BF16 or F32, kept unquantized in FP8 repos */
};

typedef struct eng_tdesc {
    char name[160];
    int layer;              /* -1 for top-level tensors */
    int slot;               /* enum eng_wslot, or -1 (top level / expert) */
    int expert;             /* >= 0 for routed experts */
    int proj;               /* enum eng_expert_proj for experts */
    int top;                /* 0 embed, 1 final norm, 2 lm_head; -1 otherwise */
    enum eng_tclass cls;
    int ndim;
    int64_t shape[3];       /* 3-D only for glm-mkmodel's fused expert layout */
} eng_tdesc;

/* Call fn for every tensor the config implies, in a fixed order (top level,
 * then layer by layer, MTP layer last when with_mtp). Stops at the first
 * non-zero return and returns it. Routed experts are listed per expert,
 * as the official checkpoints store them. */
int eng_config_foreach_tensor(const eng_config *c, int with_mtp,
                              int (*fn)(void *ctx, const eng_tdesc *d), void *ctx);

/* ===== weights ===== */

/* A 2-D matrix view. For FP8, scale points at the [ceil(rows/128),
 * ceil(cols/128)] block scales (multiply: W = fp8 * scale), already offset to
 * this view's first row block; scale_ld is that table's row length. */
typedef struct eng_tensor {
    enum eng_dtype dtype;
    int64_t rows, cols;     /* 1-D tensors: rows = 1 */
    const void *data;
    const float *scale;
    int64_t scale_ld;
    const char *name;       /* for messages; lives as long as the weights */
} eng_tensor;

typedef struct eng_layer_weights {
    eng_tensor w[ENG_W_LAYER_COUNT];
    eng_tensor *experts;    /* [n_routed_experts * ENG_EXP_COUNT], NULL on dense layers */
} eng_layer_weights;

typedef struct eng_weights eng_weights;   /* opaque: mappings + tensor index */

typedef struct eng_load_opts {
    int prefault;           /* read every mapped page once (progress shown) */
    int quiet;              /* no progress output */
    /* CPU backend: read the weights from the file mapping (4 KiB page-cache
     * pages, shared with other processes) instead of eng_weights_hugepages
     * copies of those this process reads (eng_model_open, the default). */
    int file_pages;
} eng_load_opts;

/* Load dir/config.json and the safetensors it points at. On success *out
 * owns the mappings; cfg is filled (has_mtp_weights set). Every failure
 * names the file and, where there is one, the tensor. */
int  eng_weights_load(const char *dir, const eng_load_opts *opts, eng_config *cfg,
                      eng_weights **out, char *err, size_t errlen);
void eng_weights_free(eng_weights *w);

const eng_tensor        *eng_weights_embed(const eng_weights *w);
const eng_tensor        *eng_weights_final_norm(const eng_weights *w);
const eng_tensor        *eng_weights_lm_head(const eng_weights *w);
const eng_layer_weights *eng_weights_layer(const eng_weights *w, int layer);
/* Bytes of all mapped tensor data. */
uint64_t eng_weights_bytes(const eng_weights *w);
/* The file pages under views[0..n) (data and FP8 scales; views outside the
 * mappings, such as a shard's copied slices, are skipped) replaced by an
 * anonymous copy in transparent huge pages at the same addresses: every
 * view stays valid, and a core reading the weights takes a TLB entry per
 * 2 MiB instead of per 4 KiB. Whole 2 MiB pages: the ones a view touches
 * are copied whole, a file's last partial one stays a file page. The copy
 * is this process's memory, no longer page cache shared with others.
 * *bytes: what was copied. Errors leave the rest in file pages and say why:
 * PL_ERR_UNSUPPORTED (huge pages off in the kernel), PL_ERR_RANGE (too many
 * separate ranges for vm.max_map_count), PL_ERR_NOMEM, PL_ERR_IO; only
 * PL_ERR_INTERNAL (a range could be neither moved nor mapped again) leaves
 * the weights unusable. */
int eng_weights_hugepages(eng_weights *w, const eng_tensor *const *views, size_t n, uint64_t *bytes,
                          char *err, size_t errlen);

/* ===== safetensors (shared with glm-mkmodel and tests) ===== */

/* Checked parse of one safetensors header. Calls fn for each tensor with its
 * name, dtype, shape and absolute byte range in the file. file_size bounds
 * every offset. Returns the header's total size (8 + json) via *data_start. */
#define ENG_ST_MAX_DIM 4
typedef int (*eng_st_visit_fn)(void *ctx, const char *name, enum eng_dtype dt,
                               const char *dtname, int ndim, const int64_t *shape,
                               uint64_t begin, uint64_t end);
int eng_safetensors_parse(const unsigned char *file, uint64_t file_size, const char *path,
                          eng_st_visit_fn fn, void *ctx, char *err, size_t errlen);

/* FP8 E4M3 (float8_e4m3fn) conversions. */
float   eng_fp8_to_f32(uint8_t v);
uint8_t eng_f32_to_fp8(float f);     /* round to nearest even, saturate to +-448 */
static inline float eng_bf16_to_f32(uint16_t v)
{
    union { uint32_t u; float f; } x = { (uint32_t)v << 16 };
    return x.f;
}
uint16_t eng_f32_to_bf16(float f);   /* round to nearest even */

#endif
