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
#include "pl.h"
#include "serve.h"
#include "stage.h"

#define MSGS_PER_STEP 256   /* messages taken between two steps at most: steps keep flowing under a flood */

static void usage(FILE *f)
{
    fputs("usage: glm-engine --model DIR [options]\n"
          "  --backend cpu                     compute backend (only cpu in this build)\n"
          "  --max-num-seqs N                  sequences in a step at most (default 256)\n"
          "  --max-model-len L                 prompt + output tokens (default: the model's max_position_embeddings)\n"
          "  --max-num-batched-tokens T        tokens computed per step at most (default 2048)\n"
          "  --block-size N                    tokens per KV block (default 16)\n"
          "  --kv-cache-memory-bytes B         KV pool budget, suffix K/M/G allowed (default 4G)\n"
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
          PL_STAGE_IO_HELP, f);
}

static int parse_bytes(const char *s, size_t *v)
{
    if (!s || !*s || *s == '-') return -1;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024.0, end++;
    else if (*end == 'M' || *end == 'm') mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g') mul = 1024.0 * 1024 * 1024, end++;
    if (errno || *end || !(x > 0) || x * mul > 1e18) return -1;
    *v = (size_t)(x * mul);
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

/* Until the input ends: take what has arrived (waiting only when idle), step.
 * After EOF or a stop signal: finish what runs, then return. */
static int serve_loop(loop_ctx *c)
{
    int input_open = 1, rc = PL_OK;
    while (rc == PL_OK && (input_open || eng_serve_busy(c->serve))) {
        for (int i = 0; input_open && i < MSGS_PER_STEP; i++) {
            int prc = pl_stage_poll(c->st, eng_serve_busy(c->serve) ? 0 : eng_serve_wait_ms(c->serve), on_msg, c);
            if (prc == PL_ERR_AGAIN) break;
            if (prc == PL_ERR_EOF) input_open = 0;
            else if (prc) { rc = prc; break; }
        }
        if (rc == PL_OK) rc = eng_serve_step(c->serve);
        if (rc == PL_OK) eng_serve_tick(c->serve);
        if (rc == PL_OK) rc = pl_io_flush(pl_stage_io(c->st));
    }
    return rc;
}

int main(int argc, char **argv)
{
    pl_log_init("glm-engine");
    const char *dir = NULL, *in_ep = NULL, *out_ep = NULL, *backend = "cpu";
    eng_serve_cfg cfg;
    eng_serve_cfg_defaults(&cfg);
    int64_t threads = 0;
    spec_opts spec = { .k = -1 };
    char err[1024];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--disable-log-stats")) { cfg.log_stats_interval = 0; continue; }
        else if (!strcmp(a, "--enable-prefix-caching")) { cfg.prefix_caching = true; continue; }
        else if (!strcmp(a, "--no-enable-prefix-caching")) { cfg.prefix_caching = false; continue; }
        else if (!strcmp(a, "--model") && v) dir = v;
        else if (!strcmp(a, "--backend") && v) backend = v;
        else if (!strcmp(a, "--in") && v) in_ep = v;
        else if (!strcmp(a, "--out") && v) out_ep = v;
        else if (!strcmp(a, "--max-num-seqs") && !pl_parse_i64(v, 1, 1 << 16, &n)) cfg.max_num_seqs = (int)n;
        else if (!strcmp(a, "--max-model-len") && !pl_parse_i64(v, 2, 1 << 30, &n)) cfg.max_model_len = (int)n;
        else if (!strcmp(a, "--max-num-batched-tokens") && !pl_parse_i64(v, 1, 1 << 24, &n)) cfg.max_num_batched_tokens = (int)n;
        else if (!strcmp(a, "--block-size") && !pl_parse_i64(v, 1, 1 << 16, &n)) cfg.block_size = (int)n;
        else if (!strcmp(a, "--num-gpu-blocks-override") && !pl_parse_i64(v, 1, INT32_MAX, &n)) cfg.num_blocks = (int)n;
        else if (!strcmp(a, "--kv-cache-memory-bytes") && !parse_bytes(v, &cfg.kv_cache_bytes)) ;
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
    if (strcmp(backend, "cpu")) {
        fprintf(stderr, "glm-engine: backend '%s' is not in this build (cpu only)\n", backend);
        return 2;
    }

    eng_model_opts mo = {
        .n_threads = (int)threads,
        .max_batch_tokens = cfg.max_num_batched_tokens,
        .max_model_len = cfg.max_model_len,
        .load = { .prefault = 1 },
    };
    eng_model *model = NULL;
    if (eng_model_open(dir, &mo, &model, err, sizeof err)) {
        pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
        return 1;
    }
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
    int rc = pl_stage_open(&c.st, in_ep, out_ep, err, sizeof err);
    if (!rc) rc = eng_serve_init(&c.serve, &lm, &cfg, (eng_serve_sink){ sink_send, &c }, err, sizeof err);
    if (rc) {
        pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
        pl_stage_close(c.st);
        eng_model_close(model);
        return 1;
    }
    rc = serve_loop(&c);
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
