/* mkmodel.h — write GLM-5- or GLM-4.7-Flash-architecture model directories with deterministic
 * random weights (glm-mkmodel; also used by the engine's tests to rebuild
 * the tiny checkpoint instead of committing it).
 *
 * Tensor names, shapes, dtypes and FP8 block scales are exactly what the
 * official checkpoints hold: the tensor list comes from the engine's own
 * catalogue (eng_config_foreach_tensor), so writer and loader cannot drift.
 * Each tensor's values depend only on (seed, tensor name), never on the
 * order of writing or on sharding. */
#ifndef ENG_MKMODEL_H
#define ENG_MKMODEL_H

#include <stddef.h>
#include <stdint.h>
#include "../../engine/loader.h"

typedef struct eng_mk_opts {
    enum eng_arch arch;         /* GLM-5 (default) or GLM-4.7-Flash (no indexer) */
    const char *preset;         /* "tiny", "small"; ignored with real_shapes */
    int real_shapes;            /* the arch's true dimensions (GLM-5.2 / GLM-4.7-Flash) ... */
    int layers;                 /* ... for this many layers (>= 1) */
    const char *out_dir;        /* created if missing */
    uint64_t seed;
    int fp8;                    /* FP8 e4m3 + 128x128 weight_scale_inv, as the -FP8 repos */
    int fused_experts;          /* transformers 5.x fused expert names instead of per expert */
    int mtp;                    /* write the MTP layer (default 1) */
    uint64_t shard_bytes;       /* split into model-0000k-of-0000n.safetensors above this (0: 4 GiB) */
    int quiet;
} eng_mk_opts;

/* Fill c with a preset's config of arch (real_layers > 0: the arch's real
 * shapes, GLM-5.2 or GLM-4.7-Flash, N layers). */
int eng_mk_preset(const char *name, int real_layers, enum eng_arch arch, eng_config *c,
                  char *err, size_t errlen);
/* --arch spelling: "glm-moe-dsa" (GLM-5), "glm4-moe-lite" (GLM-4.7-Flash). */
int eng_mk_arch_parse(const char *s, enum eng_arch *out);

/* Write config.json, generation_config.json and the safetensors files. */
int eng_mk_write(const eng_mk_opts *o, char *err, size_t errlen);

#endif
