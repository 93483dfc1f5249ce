/* glm-engine — the model stage: `generate` in; `start`, `tokens`, `end` out
 * (docs/protocol.md). Loads the checkpoint, then runs the serving loop
 * (serve.h): read every message that is already there, run one step, flush,
 * repeat; block on the input only while nothing is running. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "model.h"
#include "notify.h"
#include "pl.h"
#include "serve.h"
#include "stage.h"

static void usage(FILE *f)
{
    fputs("usage: glm-engine --model DIR [options]\n"
          "  --backend cpu|cuda|auto           compute backend (default auto: cuda when a CUDA device is present)\n"
          "  --max-num-seqs N                  sequences in a step at most (default 256)\n"
          "  --max-model-len L                 prompt + output tokens (default: the model's max_position_embeddings)\n"
          "  --max-num-batched-tokens T        tokens computed per step at most (default 2048; 2k, 2K accepted)\n"
          "  --block-size N                    tokens per KV block (default 16)\n"
          "  --kv-cache-memory-bytes B         KV pool budget; vLLM's suffixes: k/m/g = 1000^n, K/M/G = 1024^n (default 4G)\n"
          "  --num-gpu-blocks-override N       exact number of KV blocks (overrides the budget)\n"
          "  --seed S                          RNG seed for requests without their own (default 0)\n"
          "  --threads N                       CPU threads (default: all online CPUs)\n"
          "  --log-stats-interval S            seconds between stats log lines (default 10)\n"
          "  --disable-log-stats               no stats log lines\n"
          "  --[no-]enable-prefix-caching      reuse cached KV blocks of shared prefixes (default on)\n"
          "  --kv-cache-dtype auto|fp8         KV cache rows in f32 (auto) or FP8 e4m3 with per-token scales (fp8 = fp8_e4m3)\n"
          "  --speculative-config JSON         e.g. '{\"method\":\"mtp\",\"num_speculative_tokens\":3}' (K = 1..5)\n"
          "  --speculative-config.method mtp   the same, dotted (vLLM's form)\n"
          "  --speculative-config.num_speculative_tokens K\n"
          "  --tensor-parallel-size N, -tp N   1 only in this build (larger sizes are refused by name)\n"
          "  --[no-]enable-expert-parallel     accepted: one rank holds every expert\n"
          "  --gpu-memory-utilization F        cuda: fraction of device memory for weights + KV pool (default 0.9);\n"
          "                                    refused with the cpu backend (size its pool with --kv-cache-memory-bytes)\n"
          PL_STAGE_IO_HELP, f);
}

/* ================================================================ vLLM feature flags
 *
 * glm-serve hands each vLLM engine flag to glm-engine under its own name, so
 * the engine is the one place that knows which features it has: what this
 * build cannot honour is refused here, naming the flag, never ignored. */

typedef struct feat_flags {
    const char *gpu_util;   /* --gpu-memory-utilization, checked against the backend */
} feat_flags;

static int refuse(const char *flag, const char *why)
{
    fprintf(stderr, "glm-engine: %s: %s\n", flag, why);
    return -1;
}

/* Returns the number of arguments consumed (1 or 2), 0 when a is not one of
 * these flags, -1 when it is refused (message printed). */
static int feature_flag(const char *a, const char *v, feat_flags *ff)
{
    int64_t n;
    if (!strcmp(a, "--enable-expert-parallel") || !strcmp(a, "--no-enable-expert-parallel"))
        return 1;   /* expert parallelism over one rank is the whole model */
    if (!strcmp(a, "--tensor-parallel-size") || !strcmp(a, "-tp")) {
        if (pl_parse_i64(v, 1, 1 << 16, &n)) return refuse(a, "expected a positive integer");
        if (n > 1) return refuse(a, "tensor parallelism is not implemented in this glm-engine yet (1 only)");
        return 2;
    }
    if (!strcmp(a, "--gpu-memory-utilization")) {
        char *end = NULL;
        double f = v ? strtod(v, &end) : 0;
        if (!v || end == v || *end || !(f > 0 && f <= 1)) return refuse(a, "expected a fraction in (0, 1]");
        ff->gpu_util = v;
        return 2;
    }
    return 0;
}

/* ===== --speculative-config ===== */

/* vLLM's --speculative-config, as JSON or as dotted flags. Only the MTP
 * method (vLLM's model-specific MTP names are its deprecated aliases) and
 * num_speculative_tokens (default: the checkpoint's num_nextn_predict_layers,
 * as vLLM) are meaningful here; any other key is refused rather than
 * silently ignored. */
typedef struct spec_opts {
    bool    set;
    char    method[32];
    int64_t k;                  /* -1: not given */
} spec_opts;

static int spec_set(spec_opts *o, const char *key, const char *sval, const cJSON *jval, char *err, size_t errlen)
{
    o->set = true;
    if (!strcmp(key, "method")) {
        const char *v = jval ? (cJSON_IsString(jval) ? jval->valuestring : NULL) : sval;
        if (!v || strlen(v) >= sizeof o->method)
            return pl_seterr(err, errlen, PL_ERR_INVALID, "speculative-config.method must be a string");
        strcpy(o->method, v);
        return 0;
    }
    if (!strcmp(key, "num_speculative_tokens")) {
        if (jval && cJSON_IsNull(jval)) { o->k = -1; return 0; }
        bool ok = jval ? cJSON_IsNumber(jval) && !pl_json_is_float(jval) && jval->valuedouble >= 0 &&
                         jval->valuedouble <= 1e6 && (o->k = (int64_t)jval->valuedouble, 1)
                       : pl_parse_i64(sval, 0, 1000000, &o->k) == 0;
        if (!ok) return pl_seterr(err, errlen, PL_ERR_INVALID, "speculative-config.num_speculative_tokens must be an integer");
        return 0;
    }
    return pl_seterr(err, errlen, PL_ERR_INVALID,
                     "speculative-config.%s is not supported (this engine knows method and num_speculative_tokens)", key);
}

static int spec_parse_json(spec_opts *o, const char *text, char *err, size_t errlen)
{
    cJSON *j;
    char e2[256];
    if (pl_json_parse(&j, text, strlen(text), e2, sizeof e2))
        return pl_seterr(err, errlen, PL_ERR_INVALID, "--speculative-config is not JSON: %s", e2);
    int rc = cJSON_IsObject(j) ? 0 : pl_seterr(err, errlen, PL_ERR_INVALID, "--speculative-config must be a JSON object");
    o->set = true;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, j) if (!rc) rc = spec_set(o, kv->string, NULL, kv, err, errlen);
    cJSON_Delete(j);
    return rc;
}

/* The number of drafts per step, or -1 with err set. */
static int spec_resolve(const spec_opts *o, const eng_model *m, char *err, size_t errlen)
{
    static const char *const mtp_names[] = {"mtp", "deepseek_mtp", "glm4_moe_mtp", "glm4_moe_lite_mtp", "glm5_next_mtp"};
    bool mtp = false;
    for (size_t i = 0; i < PL_ARRAY_LEN(mtp_names); i++) mtp |= !strcmp(o->method, mtp_names[i]);
    if (!o->method[0]) { pl_seterr(err, errlen, PL_ERR_INVALID, "--speculative-config needs a method (mtp)"); return -1; }
    if (!mtp) {
        pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "speculative method '%s' is not supported: only mtp (the model's own "
                  "multi-token-prediction layer)", o->method);
        return -1;
    }
    const eng_config *c = eng_model_config(m);
    if (!eng_model_has_mtp(m) || c->num_nextn_predict_layers < 1) {
        pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "speculative method mtp needs the checkpoint's MTP layer "
                  "(model.layers.%d.*, num_nextn_predict_layers >= 1), and this checkpoint has none", c->num_hidden_layers);
        return -1;
    }
    int64_t k = o->k < 0 ? c->num_nextn_predict_layers : o->k;
    if (k < 1 || k > ENG_SPEC_MAX) {
        pl_seterr(err, errlen, PL_ERR_RANGE, "num_speculative_tokens %lld is not supported: 1 to %d (one MTP layer "
                  "chained; a step emits at most %d tokens)", (long long)k, ENG_SPEC_MAX, ENG_SPEC_MAX + 1);
        return -1;
    }
    return (int)k;
}

typedef struct {
    eng_serve *serve;
    pl_stage  *st;
} loop_ctx;

static void on_msg(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *ud)
{
    (void)st;
    eng_serve_on_msg(((loop_ctx *)ud)->serve, msg, id, idlen);
}

static int sink_send(void *ud, const char *data, size_t len)
{
    return pl_io_send(pl_stage_io(((loop_ctx *)ud)->st), data, len);
}

/* The serving loop is common/stage.h's: take what has arrived (waiting only
 * when idle), step, flush; after EOF finish what runs; after a stop signal
 * also refuse new `generate`s and answer what is unfinished at
 * --drain-timeout with an error. */
static size_t loop_live(void *ud) { return eng_serve_busy(((loop_ctx *)ud)->serve); }
static int loop_step(pl_stage *st, void *ud) { (void)st; return eng_serve_step(((loop_ctx *)ud)->serve); }
static int loop_wait_ms(void *ud) { return eng_serve_wait_ms(((loop_ctx *)ud)->serve); }   /* next stats beat */
static void loop_tick(pl_stage *st, void *ud) { (void)st; eng_serve_tick(((loop_ctx *)ud)->serve); }
static void loop_fail(pl_stage *st, void *ud, int code, const char *err_type, const char *why)
{
    (void)st; (void)err_type;
    eng_serve_fail_all(((loop_ctx *)ud)->serve, code, why);
}

int main(int argc, char **argv)
{
    pl_log_init("glm-engine");
    pl_stage_opts so;
    pl_stage_opts_default(&so);
    so.drain_ms = 20000;   /* before the text stages' 25 s: its errors still get through them */
    if (pl_stage_opts_take(&so, "glm-engine", &argc, argv)) return 2;
    const char *dir = NULL, *backend = "auto";
    int kv_sized = 0;       /* --kv-cache-memory-bytes or --num-gpu-blocks-override given */
    eng_serve_cfg cfg;
    eng_serve_cfg_defaults(&cfg);
    int64_t threads = 0;
    feat_flags ff = { 0 };
    spec_opts spec = { .k = -1 };
    char err[1024];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        int used = feature_flag(a, v, &ff);
        if (used < 0) return 2;
        if (used) { i += used - 1; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--disable-log-stats")) { cfg.log_stats_interval = 0; continue; }
        else if (!strcmp(a, "--enable-prefix-caching")) { cfg.prefix_caching = true; continue; }
        else if (!strcmp(a, "--no-enable-prefix-caching")) { cfg.prefix_caching = false; continue; }
        else if (!strcmp(a, "--model") && v) dir = v;
        else if (!strcmp(a, "--backend") && v) backend = v;
        else if (!strcmp(a, "--max-num-seqs") && !pl_parse_i64(v, 1, 1 << 16, &n)) cfg.max_num_seqs = (int)n;
        else if (!strcmp(a, "--max-model-len") && !pl_parse_i64(v, 2, 1 << 30, &n)) cfg.max_model_len = (int)n;
        else if (!strcmp(a, "--max-num-batched-tokens") && !pl_parse_human_i64(v, 1, 1 << 24, &n)) cfg.max_num_batched_tokens = (int)n;
        else if (!strcmp(a, "--block-size") && !pl_parse_i64(v, 1, 1 << 16, &n)) cfg.block_size = (int)n;
        else if (!strcmp(a, "--num-gpu-blocks-override") && !pl_parse_i64(v, 1, INT32_MAX, &n)) cfg.num_blocks = (int)n, kv_sized = 1;
        else if (!strcmp(a, "--kv-cache-memory-bytes") && !pl_parse_human_i64(v, 1, INT64_MAX, &n)) cfg.kv_cache_bytes = (size_t)n, kv_sized = 1;
        else if (!strcmp(a, "--speculative-config") && v) {
            if (spec_parse_json(&spec, v, err, sizeof err)) { fprintf(stderr, "glm-engine: %s\n", err); return 2; }
        } else if (!strncmp(a, "--speculative-config.", 21) && v) {
            if (spec_set(&spec, a + 21, v, NULL, err, sizeof err)) { fprintf(stderr, "glm-engine: %s\n", err); return 2; }
        }
        else if (!strcmp(a, "--kv-cache-dtype") && v) {
            if (!strcmp(v, "auto")) cfg.kv_cache_dtype = ENG_CACHE_F32;
            else if (!strcmp(v, "fp8") || !strcmp(v, "fp8_e4m3")) cfg.kv_cache_dtype = ENG_CACHE_FP8;
            else {
                fprintf(stderr, "glm-engine: --kv-cache-dtype %s is not supported (auto, fp8, fp8_e4m3)\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--seed") && !pl_parse_i64(v, INT64_MIN, INT64_MAX, &n)) cfg.seed = (uint64_t)n;
        else if (!strcmp(a, "--threads") && !pl_parse_i64(v, 1, 4096, &n)) threads = n;
        else if (!strcmp(a, "--log-stats-interval") && !pl_parse_i64(v, 0, 86400, &n)) cfg.log_stats_interval = (double)n;
        else { fprintf(stderr, "glm-engine: bad argument %s%s%s\n", a, v ? " " : "", v ? v : ""); usage(stderr); return 2; }
        i++;
    }
    if (!dir) { usage(stderr); return 2; }
    enum eng_be_kind kind;
    if (!strcmp(backend, "cpu")) kind = ENG_BE_CPU;
    else if (!strcmp(backend, "cuda")) kind = ENG_BE_CUDA;
    else if (!strcmp(backend, "auto")) kind = eng_be_cuda_available() > 0 ? ENG_BE_CUDA : ENG_BE_CPU;
    else {
        fprintf(stderr, "glm-engine: --backend %s: expected cpu, cuda or auto\n", backend);
        return 2;
    }
    if (kind == ENG_BE_CUDA && !eng_be_cuda_available()) {
        fprintf(stderr, "glm-engine: --backend cuda: no usable CUDA device (or this build has no CUDA)\n");
        return 2;
    }
    if (ff.gpu_util && kind == ENG_BE_CPU) {
        refuse("--gpu-memory-utilization", "needs a GPU backend; the cpu backend sizes its KV cache with --kv-cache-memory-bytes");
        return 2;
    }

    eng_model_opts mo = {
        .n_threads = (int)threads,
        .backend = kind,
        .max_batch_tokens = cfg.max_num_batched_tokens,
        .max_model_len = cfg.max_model_len,
        .load = { .prefault = 1 },
    };
    eng_model *model = NULL;
    if (eng_model_open(dir, &mo, &model, err, sizeof err)) {
        pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
        return 1;
    }
    const eng_config *mc = eng_model_config(model);
    eng_backend *be = eng_model_backend(model);
    pl_log(PL_LOG_INFO, NULL, 0, "backend %s", eng_be_describe(be));
    if (kind == ENG_BE_CUDA && !kv_sized) {
        /* Weights and scratch are resident now: the pool gets what the
         * utilisation target leaves after them and the ops' work buffers. */
        size_t fr, tot;
        eng_be_mem_info(be, &fr, &tot);
        cfg.kv_cache_bytes = eng_kv_device_budget(fr, tot, ff.gpu_util ? strtod(ff.gpu_util, NULL) : 0.9,
                                                  ENG_KV_DEVICE_RESERVE);
        pl_log(PL_LOG_INFO, NULL, 0, "device memory: %.1f GiB total, %.1f GiB free after weights; KV pool %.2f GiB",
               (double)tot / (1 << 30), (double)fr / (1 << 30), (double)cfg.kv_cache_bytes / (1 << 30));
    }
    pl_log(PL_LOG_INFO, NULL, 0, "model %s: %s, %d layers%s, %s attention, %s weights", dir, eng_arch_class(mc->arch),
           mc->num_hidden_layers, eng_model_has_mtp(model) ? " + MTP" : "",
           mc->attn_gqa ? (mc->use_qk_norm ? "GQA (q/k norm)" : "GQA") : mc->has_indexer ? "MLA + DSA indexer" : "dense MLA",
           mc->fp8 ? "fp8" : "bf16");
    if (spec.set) {
        int k = spec_resolve(&spec, model, err, sizeof err);
        if (k < 0) {
            pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
            eng_model_close(model);
            return 2;
        }
        cfg.num_spec_tokens = k;
    }
    eng_lm lm;
    eng_lm_from_model(&lm, model);
    loop_ctx c = { 0 };
    int rc = pl_stage_open_opts(&c.st, &so, err, sizeof err);
    if (!rc) rc = eng_serve_init(&c.serve, &lm, &cfg, (eng_serve_sink){ sink_send, &c }, err, sizeof err);
    if (rc) {
        pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
        pl_stage_close(c.st);
        eng_model_close(model);
        return 1;
    }
    static const pl_stage_ops ops = {
        .on_msg = on_msg, .intake = "generate", .live = loop_live, .step = loop_step, .fail = loop_fail,
        .wait_ms = loop_wait_ms, .tick = loop_tick,
    };
    rc = pl_stage_serve(c.st, &ops, &c);
    eng_serve_stats s;
    eng_serve_get_stats(c.serve, &s);
    pl_log(PL_LOG_INFO, NULL, 0, "done: %llu steps, %llu tokens computed, %llu generated, %llu preemptions",
           (unsigned long long)s.steps, (unsigned long long)s.tokens_computed, (unsigned long long)s.generation_tokens,
           (unsigned long long)s.preemptions);
    eng_serve_free(c.serve);
    pl_stage_close(c.st);
    eng_model_close(model);
    if (rc) pl_log(PL_LOG_ERROR, NULL, 0, "output failed: %s", pl_strerror(rc));
    return rc ? 1 : 0;
}
