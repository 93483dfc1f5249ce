/* glm-engine-bench — CPU decode speed against the memory-bandwidth roofline.
 *
 *   glm-engine-bench --model DIR [--threads N] [--tokens N] [--prompt N] [--batch B]
 *                    [--kv-cache-dtype auto|fp8] [--dtype auto|float32|bfloat16]
 *                    [--mode decode|prefix|mtp|kverr|dtypeerr|sample|linear|attn|allreduce|tp]
 *                    [--ranks N (allreduce, tp)] [--weights-hugepages 1|0]
 *
 * Modes other than decode (the default, below) are in features.h; sample,
 * linear and attn need no --model (synthetic logits and weights); allreduce and tp are
 * in tp.c (allreduce needs no --model either).
 * 1. Streaming-read bandwidth of this machine: every thread sums its share
 *    of a buffer much larger than the caches (best of several passes).
 * 2. Decode: prefill a prompt (or, with --context N, write N synthetic
 *    cache rows), then time greedy single-token steps. The roofline is
 *    bandwidth / bytes one token reads: weights (embedding row, attention +
 *    indexer, dense MLP or top-k + shared experts and router, lm_head) and
 *    the cache rows attention reads (all of them without an indexer; the
 *    index keys + top-k rows with one); at batch 1 decode is bound by
 *    exactly that traffic.
 * Both use medians (of 9 bandwidth passes; of the decode step times), so a
 * moment of preemption by other work does not decide the number. With
 * --repeat N both are measured N times, interleaved (bandwidth, then
 * decode): each pair gives a fraction of roofline under the same load; the
 * median fraction is the headline number. On a machine shared with other
 * work single runs swing by 2x. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../engine/model.h"
#include "../../engine/sample.h"
#include "features.h"
#include "pl.h"


/* ===== bandwidth ===== */

struct bw_arg { const float *p; size_t n; float sum; };

__attribute__((target("avx2"))) static float sum_avx2(const float *p, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

static void *bw_worker(void *v)
{
    struct bw_arg *a = v;
    if (__builtin_cpu_supports("avx2")) a->sum = sum_avx2(a->p, a->n);
    else { float s = 0; for (size_t i = 0; i < a->n; i++) s += a->p[i]; a->sum = s; }
    return NULL;
}

/* Median of 9 passes: the machine's typical streaming rate right now. */
static double bandwidth_gbs(int threads, size_t bytes)
{
    size_t n = bytes / sizeof(float);
    float *buf;
    if (posix_memalign((void **)&buf, 64, n * sizeof *buf)) return 0;
    /* one per backend thread: up to 256 (eng_be_cpu_create's cap) */
    pthread_t *th = malloc((size_t)threads * sizeof *th);
    struct bw_arg *a = malloc((size_t)threads * sizeof *a);
    if (!th || !a) { free(th); free(a); free(buf); return 0; }
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 1023);
    double rate[9];
    float sink = 0;
    for (int pass = 0; pass < 9; pass++) {
        size_t per = (n / (size_t)threads) & ~(size_t)31;
        double t0 = bench_now();
        for (int t = 0; t < threads; t++) {
            a[t] = (struct bw_arg){ buf + (size_t)t * per, per, 0 };
            pthread_create(&th[t], NULL, bw_worker, &a[t]);
        }
        for (int t = 0; t < threads; t++) { pthread_join(th[t], NULL); sink += a[t].sum; }
        double gbs = (double)per * (size_t)threads * sizeof(float) / (bench_now() - t0) / 1e9;
        rate[pass] = gbs;
    }
    free(buf);
    free(th);
    free(a);
    if (sink == 12345.0f) puts("");     /* keep the sums alive */
    return bench_median(rate, 9);
}

/* ===== decode ===== */

/* --context N: cache rows for positions [0, N) of every sequence written
 * directly (pseudo-random values, through the backend's cache_store), so
 * decode at long context is timed without an N-token prefill that two
 * cores would need minutes for. Decode cost depends on how many rows each
 * step reads, not on their values (DSA selects top-k from any scores). */
static void fill_context(eng_backend *be, eng_kv_pool *kv, const int32_t *bt, int context)
{
    enum { CHUNK = 256 };
    int bs = eng_kv_block_size(kv);
    int64_t slot[CHUNK];
    for (int l = 0; l < eng_kv_n_layers(kv); l++)
        for (int which = 0; which < 4; which++) {      /* MLA, indexer; GQA: K, V */
            const eng_be_cache *c = which == 0 ? eng_kv_layer_mla(kv, l) : which == 1 ? eng_kv_layer_index(kv, l)
                                  : which == 2 ? eng_kv_layer_k(kv, l) : eng_kv_layer_v(kv, l);
            if (!c || !c->data) continue;
            float *rows = malloc((size_t)CHUNK * (size_t)c->dim * sizeof *rows);
            if (!rows) return;
            uint32_t x = 2463534242u + (uint32_t)l * 977u + (uint32_t)which;
            for (int p0 = 0; p0 < context; p0 += CHUNK) {
                int n = context - p0 < CHUNK ? context - p0 : CHUNK;
                for (int i = 0; i < n; i++) slot[i] = (int64_t)bt[(p0 + i) / bs] * bs + (p0 + i) % bs;
                for (size_t i = 0; i < (size_t)n * (size_t)c->dim; i++) {
                    x ^= x << 13; x ^= x >> 17; x ^= x << 5;            /* xorshift32 */
                    rows[i] = (float)(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
                }
                eng_be_cache_store(be, c, slot, n, rows, c->dim);
            }
            free(rows);
        }
}

/* Cache bytes one decode token at context n reads: every indexer key of
 * the full-indexer layers, and the MLA rows attention reads (all n without
 * an indexer; at most index_topk with one); GQA: all n K and V rows. The
 * MTP layer does not run. */
static uint64_t kv_read_bytes(eng_kv_pool *kv, const eng_config *c, int n)
{
    uint64_t b = 0;
    int sel = c->has_indexer && c->index_topk < n ? c->index_topk : n;
    if (c->attn_gqa) {
        for (int l = 0; l < c->num_hidden_layers; l++)
            b += (uint64_t)n * (eng_kv_layer_k(kv, l)->row_bytes + eng_kv_layer_v(kv, l)->row_bytes);
        return b;
    }
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const eng_be_cache *idx = eng_kv_layer_index(kv, l);
        b += (uint64_t)sel * eng_kv_layer_mla(kv, l)->row_bytes;
        if (idx) b += (uint64_t)n * idx->row_bytes;
    }
    return b;
}

int main(int argc, char **argv)
{
    pl_log_init("glm-engine-bench");
    pl_log_set_level(PL_LOG_WARN);
    const char *dir = NULL, *mode = "decode";
    int threads = 0, tokens = 64, prompt = 32, batch = 1, bw_mb = 1024, repeat = 1, cached = 0, context = 0, ranks = 2;
    enum eng_cache_dtype kvdt = ENG_CACHE_F32;
    int compute = ENG_BE_COMPUTE_F32, hugepages = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "glm-engine-bench: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--tokens")) tokens = atoi(v);
        else if (!strcmp(a, "--prompt")) prompt = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--bw-mb")) bw_mb = atoi(v);
        else if (!strcmp(a, "--repeat")) repeat = atoi(v);
        else if (!strcmp(a, "--mode")) mode = v;
        else if (!strcmp(a, "--cached")) cached = atoi(v);
        else if (!strcmp(a, "--context")) context = atoi(v);
        else if (!strcmp(a, "--ranks")) ranks = atoi(v);
        else if (!strcmp(a, "--weights-hugepages") && (!strcmp(v, "0") || !strcmp(v, "1"))) hugepages = atoi(v);
        else if (!strcmp(a, "--kv-cache-dtype") && (!strcmp(v, "auto") || !strcmp(v, "fp8")))
            kvdt = !strcmp(v, "fp8") ? ENG_CACHE_FP8 : ENG_CACHE_F32;
        else if (!strcmp(a, "--dtype") && (!strcmp(v, "auto") || !strcmp(v, "float32") || !strcmp(v, "bfloat16")))
            compute = !strcmp(v, "bfloat16") ? ENG_BE_COMPUTE_BF16 : ENG_BE_COMPUTE_F32;
        else { fprintf(stderr, "glm-engine-bench: unknown option %s\n", a); return 2; }
        i++;
    }
    if ((!dir && strcmp(mode, "sample") && strcmp(mode, "linear") && strcmp(mode, "attn") && strcmp(mode, "allreduce")) || tokens < 1 || prompt < 1 || batch < 1 ||
        batch > 64 || bw_mb < 64 || repeat < 1 || context < 0 || context > (1 << 20) || ranks < 1 || ranks > 64) {
        fputs("usage: glm-engine-bench --model DIR [--threads N] [--tokens N] [--prompt N] [--batch B<=64]\n"
              "                        [--repeat N] [--bw-mb MB] [--kv-cache-dtype auto|fp8]\n"
              "                        [--dtype auto|float32|bfloat16 (linear compute, as glm-engine)]\n"
              "                        [--context N (decode after N synthetic cache rows, no prefill)]\n"
              "                        [--mode decode|prefix|mtp|kverr|dtypeerr|sample|linear|attn|allreduce|tp]\n"
              "                        [--cached N (prefix)]\n"
              "                        [--ranks N (allreduce, tp; default 2)]\n"
              "                        [--weights-hugepages 1|0 (as glm-engine --[no-]weights-hugepages; default 1)]\n",
              stderr);
        return 2;
    }
    bench_opts bo = { dir, threads, tokens, prompt, repeat, cached, batch, ranks, compute, !hugepages };
    if (!strcmp(mode, "prefix")) return bench_prefix(&bo);
    if (!strcmp(mode, "mtp")) return bench_mtp(&bo);
    if (!strcmp(mode, "kverr")) return bench_kverr(&bo);
    if (!strcmp(mode, "dtypeerr")) return bench_dtypeerr(&bo);
    if (!strcmp(mode, "sample")) return bench_sample(&bo);
    if (!strcmp(mode, "linear")) return bench_linear(&bo);
    if (!strcmp(mode, "attn")) return bench_attn(&bo);
    if (!strcmp(mode, "allreduce")) return bench_allreduce(&bo);
    if (!strcmp(mode, "tp")) return bench_tp(&bo);
    if (strcmp(mode, "decode")) { fprintf(stderr, "glm-engine-bench: unknown mode %s\n", mode); return 2; }
    char err[512];
    eng_model *m;
    if (context) prompt = context;     /* the context takes the prompt's positions, without its prefill */
    eng_model_opts o = { .n_threads = threads, .compute_dtype = compute,
                         .max_batch_tokens = context ? 64 : prompt * batch > 64 ? prompt * batch : 64,
                         .max_model_len = prompt + tokens + 1,
                         .load = { .prefault = 1, .quiet = 1, .file_pages = bo.file_pages } };
    if (eng_model_open(dir, &o, &m, err, sizeof err)) { fprintf(stderr, "glm-engine-bench: %s\n", err); return 1; }
    const eng_config *c = eng_model_config(m);
    int nt = eng_be_threads(eng_model_backend(m));

    int bs = 16, per_seq = (prompt + tokens + bs) / bs;
    eng_kv_pool *kv;
    if (eng_kv_pool_create(eng_model_backend(m), c, kvdt, per_seq * batch, bs, &kv, err, sizeof err)) {
        fprintf(stderr, "glm-engine-bench: %s\n", err);
        return 1;
    }
    int32_t *bt = malloc((size_t)per_seq * batch * sizeof *bt);
    int32_t *ids = malloc((size_t)batch * (prompt + tokens + 1) * sizeof *ids);
    float *lg = malloc((size_t)batch * c->vocab_size * sizeof *lg);
    double *steps = malloc((size_t)tokens * sizeof *steps);
    eng_seq *s = malloc((size_t)batch * sizeof *s);
    if (!bt || !ids || !lg || !s || !steps) return 1;
    for (int i = 0; i < per_seq * batch; i++) bt[i] = eng_kv_block_alloc(kv);
    int L = prompt + tokens + 1;
    double bw = 0, t_prefill = 1e30, t_dec = 1e30, frac[64];
    if (context)
        for (int b = 0; b < batch; b++) fill_context(eng_model_backend(m), kv, bt + b * per_seq, context);
    /* weights plus the cache rows a step in the middle of the run reads */
    uint64_t w_act = eng_model_active_bytes(m), kv_act = kv_read_bytes(kv, c, prompt + tokens / 2);
    uint64_t act = w_act + kv_act;
    if (repeat > 64) repeat = 64;
    for (int rep = 0; rep < repeat; rep++) {
        double b1 = bandwidth_gbs(nt, (size_t)bw_mb << 20);
        if (b1 > bw) bw = b1;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < prompt; i++) ids[b * L + i] = (i * 7919 + b * 104729 + 13) % (c->vocab_size - 64);
        for (int b = 0; b < batch; b++)
            s[b] = (eng_seq){ ids + b * L, prompt, 0, bt + b * per_seq, per_seq, ENG_LOGITS_LAST };
        double t0 = bench_now();
        if (context) memset(lg, 0, (size_t)batch * c->vocab_size * sizeof *lg);   /* first token: id 0 */
        else if (eng_model_forward(m, kv, s, batch, lg, NULL, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        if (bench_now() - t0 < t_prefill) t_prefill = bench_now() - t0;
        t0 = bench_now();
        double *st = steps;
        for (int t = 0; t < tokens; t++) {
            double ts = bench_now();
            for (int b = 0; b < batch; b++) {
                int pos = prompt + t;
                ids[b * L + pos] = eng_sample_argmax(lg + (size_t)b * c->vocab_size, c->vocab_size);
                s[b] = (eng_seq){ ids + b * L + pos, 1, pos, bt + b * per_seq, per_seq, ENG_LOGITS_LAST };
            }
            if (eng_model_forward(m, kv, s, batch, lg, NULL, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
            st[t] = bench_now() - ts;
        }
        double d = bench_median(st, tokens) * tokens;       /* typical step, robust to preemption */
        if (d < t_dec) t_dec = d;
        frac[rep] = (double)tokens / d / (b1 * 1e9 / (double)act);
        if (repeat > 1 && batch == 1)
            printf("  pair %d: bandwidth %.2f GB/s, decode %.2f tokens/s, %.1f%% of roofline\n", rep + 1, b1,
                   tokens / d, 100.0 * frac[rep]);
        else if (repeat > 1)
            printf("  pair %d: bandwidth %.2f GB/s, decode %.2f tokens/s\n", rep + 1, b1, tokens * batch / d);
    }
    double fmed = bench_median(frac, repeat);
    double tps = (double)tokens * batch / t_dec;
    double roof = bw * 1e9 / (double)act;
    printf("model %s: %d layers, hidden %d, %d experts top-%d, %s weights\n", dir, c->num_hidden_layers,
           c->hidden_size, c->n_routed_experts, c->num_experts_per_tok, c->fp8 ? "fp8" : "bf16");
    printf("threads %d, KV cache %s, %s, best of %d medians: streaming read bandwidth %.2f GB/s\n", nt,
           kvdt == ENG_CACHE_FP8 ? "fp8" : "auto (f32)", eng_be_describe(eng_model_backend(m)), repeat, bw);
    if (context) printf("context %d synthetic cache rows per sequence (no prefill)\n", context);
    else printf("prefill %d x %d tokens: %.1f tokens/s\n", batch, prompt, prompt * batch / t_prefill);
    printf("decode batch %d, %d steps: %.2f tokens/s (median step %.2f ms)\n", batch, tokens, tps, t_dec / tokens * 1e3);
    if (batch == 1)
        printf("bytes read per token %.1f MB (weights %.1f MB, KV cache %.1f MB); best-bandwidth roofline "
               "%.2f tokens/s; median fraction of roofline over %d pairs: %.1f%%\n", act / 1e6, w_act / 1e6,
               kv_act / 1e6, roof, repeat, 100.0 * fmed);
    free(bt); free(ids); free(lg); free(s); free(steps);
    eng_kv_pool_free(kv);
    eng_model_close(m);
    return 0;
}
