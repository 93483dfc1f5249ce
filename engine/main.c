/* glm-engine — until the serving loop (scheduler, sampling, protocol I/O)
 * lands here, a by-hand front end to the model: load a checkpoint, report
 * it, and optionally run greedy decoding on prompt ids.
 *
 *   glm-engine --model DIR [--prompt-ids 1,2,3 --max-tokens N] [--threads N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "pl.h"

static int parse_ids(const char *s, int32_t *ids, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 0x7fffffff) return -1;
        ids[n++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *s ? -1 : n;
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[b]) b = i;
    return b;
}

int main(int argc, char **argv)
{
    pl_log_init("glm-engine");
    const char *dir = NULL, *prompt = NULL;
    int max_tokens = 16, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) { dir = v; i++; }
        else if (!strcmp(a, "--prompt-ids") && v) { prompt = v; i++; }
        else if (!strcmp(a, "--max-tokens") && v) { max_tokens = atoi(v); i++; }
        else if (!strcmp(a, "--threads") && v) { threads = atoi(v); i++; }
        else { fprintf(stderr, "glm-engine: bad argument %s\n", a); dir = NULL; break; }
    }
    if (!dir || max_tokens < 1 || max_tokens > 4096) {
        fputs("usage: glm-engine --model DIR [--prompt-ids 1,2,3 --max-tokens N] [--threads N]\n", stderr);
        return 2;
    }
    int32_t ids[4096 + 8192];
    int n = prompt ? parse_ids(prompt, ids, 4096) : 0;
    if (n < 0 || (prompt && n == 0)) { fputs("glm-engine: --prompt-ids wants comma-separated ids\n", stderr); return 2; }
    char err[512];
    eng_model *m;
    eng_model_opts o = { .n_threads = threads, .max_batch_tokens = n > 64 ? n : 64, .max_model_len = n + max_tokens,
                         .load = { .prefault = 1 } };
    if (eng_model_open(dir, &o, &m, err, sizeof err)) { fprintf(stderr, "glm-engine: %s\n", err); return 1; }
    const eng_config *c = eng_model_config(m);
    fprintf(stderr, "%s: %d layers%s, vocab %d, %.1f MB read per decode token\n", dir, c->num_hidden_layers,
            eng_model_has_mtp(m) ? " + MTP" : "", c->vocab_size, eng_model_active_bytes(m) / 1e6);
    int rc = 0;
    if (n > 0) {
        int bs = 16, nb = (n + max_tokens + bs - 1) / bs;
        eng_kv_pool *kv = NULL;
        int32_t *bt = malloc((size_t)nb * sizeof *bt);
        float *lg = malloc((size_t)c->vocab_size * sizeof *lg);
        rc = !bt || !lg || eng_kv_pool_create(eng_model_backend(m), c, nb, bs, &kv, err, sizeof err);
        for (int b = 0; !rc && b < nb; b++) bt[b] = eng_kv_block_alloc(kv);
        eng_seq s = { ids, n, 0, bt, nb, ENG_LOGITS_LAST };
        for (int t = 0; !rc && t < max_tokens; t++) {
            if ((rc = eng_model_forward(m, kv, &s, 1, lg, NULL, err, sizeof err))) break;
            ids[n + t] = argmax(lg, c->vocab_size);
            printf("%s%d", t ? "," : "", ids[n + t]);
            s = (eng_seq){ &ids[n + t], 1, n + t, bt, nb, ENG_LOGITS_LAST };
        }
        printf("\n");
        if (rc) fprintf(stderr, "glm-engine: %s\n", err);
        eng_kv_pool_free(kv);
        free(bt);
        free(lg);
    }
    eng_model_close(m);
    return rc ? 1 : 0;
}
