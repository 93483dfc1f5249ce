/* glm-mkmodel — write a GLM-5-, GLM-4.7-Flash- or GLM-4.5-architecture model directory with
 * deterministic random weights. See mkmodel.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mkmodel.h"
#include "pl.h"

static void usage(FILE *f)
{
    fputs("usage: glm-mkmodel [--arch glm-moe-dsa|glm4-moe-lite|glm4-moe] --preset tiny|small|uneven --out DIR\n"
          "                   [--seed N] [--dtype bf16|fp8]\n"
          "       glm-mkmodel [--arch A] --real-shapes --layers N --out DIR [--seed N] [--dtype bf16|fp8]\n"
          "         --arch glm4-moe (GLM-4.5 family, GQA): presets tiny, tiny-air, small; with --real-shapes\n"
          "         --preset air (GLM-4.5-Air, the default) or 355b (GLM-4.5/4.6/4.7); GLM-4.7's chat template\n"
          "options: --arch glm-moe-dsa (GLM-5, the default) or glm4-moe-lite (GLM-4.7-Flash: no indexer,\n"
          "         GLM-4.7's chat template; --real-shapes gives GLM-4.7-Flash's dimensions),\n"
          "         --no-mtp (omit the MTP layer), --fused-experts (transformers 5.x expert names),\n"
          "         --shard-mb N (split into shards of about N MiB with model.safetensors.index.json)\n", f);
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (!s || !*s) return -1;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || s[0] == '-') return -1;
    *v = x;
    return 0;
}

int main(int argc, char **argv)
{
    pl_log_init("glm-mkmodel");
    eng_mk_opts o = { .preset = NULL, .seed = 0, .mtp = 1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (!strcmp(a, "--preset") && v) { o.preset = v; i++; }
        else if (!strcmp(a, "--arch") && v && !eng_mk_arch_parse(v, &o.arch)) i++;
        else if (!strcmp(a, "--out") && v) { o.out_dir = v; i++; }
        else if (!strcmp(a, "--seed") && !parse_u64(v, &o.seed)) i++;
        else if (!strcmp(a, "--dtype") && v && (!strcmp(v, "bf16") || !strcmp(v, "fp8"))) { o.fp8 = !strcmp(v, "fp8"); i++; }
        else if (!strcmp(a, "--real-shapes")) o.real_shapes = 1;
        else if (!strcmp(a, "--layers") && !parse_u64(v, &n) && n >= 1 && n < ENG_MAX_LAYERS) { o.layers = (int)n; i++; }
        else if (!strcmp(a, "--no-mtp")) o.mtp = 0;
        else if (!strcmp(a, "--fused-experts")) o.fused_experts = 1;
        else if (!strcmp(a, "--shard-mb") && !parse_u64(v, &n) && n >= 1 && n < (1ull << 30)) { o.shard_bytes = n << 20; i++; }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { fprintf(stderr, "glm-mkmodel: bad argument %s\n", a); usage(stderr); return 2; }
    }
    if (!o.out_dir || (!o.preset && !o.real_shapes) || (o.real_shapes && (!o.layers || (o.preset && o.arch != ENG_ARCH_GLM4_MOE)))) {
        usage(stderr);
        return 2;
    }
    char err[512];
    int rc = eng_mk_write(&o, err, sizeof err);
    if (rc) {
        fprintf(stderr, "glm-mkmodel: %s\n", err);
        return 1;
    }
    return 0;
}
