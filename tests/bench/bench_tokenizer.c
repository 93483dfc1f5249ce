/* bench_tokenizer — one-thread encode throughput, load time and RSS of the
 * pl_tokenizer library. Driven by tests/bench/bench_tokenizer.sh, which runs
 * HF tokenizers on the same text right after (bench_hf.py).
 *
 *   bench_tokenizer TOKENIZER.json TEXT
 *   bench_tokenizer TOKENIZER.json -        load time and RSS only
 *
 * TEXT holds documents separated by \x1e; each document is one encode call
 * (as a prompt would be). Prints load time (best of 3), RSS after load,
 * encode MB/s (best of 3 passes), decode MB/s, and the id count + FNV hash
 * that bench_hf.py prints too, so the ids can be compared. Times are the
 * process's CPU time (one thread), so a busy shared machine skews them less
 * than wall time would; bench_hf.py measures the same way. */
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) v = atol(line + kl + 1);
    if (f) fclose(f);
    return v;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s TOKENIZER.json TEXT\n", argv[0]);
        return 2;
    }
    char err[512];
    long rss0 = status_kb("VmRSS:");
    pl_tokenizer *tok = NULL;
    double load_best = 1e9;
    long rss_load = 0;
    for (int i = 0; i < 3; i++) {
        double t0 = now();
        if (pl_tokenizer_load(&tok, argv[1], err, sizeof err)) {
            fprintf(stderr, "load: %s\n", err);
            return 1;
        }
        double dt = now() - t0;
        if (dt < load_best) load_best = dt;
        if (i == 0) rss_load = status_kb("VmRSS:") - rss0;
        if (i < 2) pl_tokenizer_free(tok);
    }
    size_t flen = 0, tlen = 0;
    free(slurp(argv[1], &flen));
    if (!strcmp(argv[2], "-")) {
        printf("pl_tokenizer:  load %.0f ms, RSS after load %.1f MB (%.1fx the %.1f MB file)\n", load_best * 1e3,
               rss_load / 1024.0, rss_load * 1024.0 / (double)flen, flen / 1e6);
        pl_tokenizer_free(tok);
        return 0;
    }
    char *text = slurp(argv[2], &tlen);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    /* split into documents */
    size_t ndoc = 1;
    for (size_t i = 0; i < tlen; i++) ndoc += text[i] == '\x1e';
    const char **doc = malloc(ndoc * sizeof *doc);
    size_t *dlen = malloc(ndoc * sizeof *dlen);
    size_t k = 0, start = 0, nbytes = 0;
    for (size_t i = 0; i <= tlen; i++)
        if (i == tlen || text[i] == '\x1e') {
            doc[k] = text + start;
            dlen[k++] = i - start;
            nbytes += i - start;
            start = i + 1;
        }
    pl_tokids v = {0};
    double enc_best = 1e9;
    uint64_t h = 0;
    size_t nids = 0;
    for (int pass = 0; pass < 3; pass++) {
        h = 0xcbf29ce484222325ull;
        nids = 0;
        double t0 = now();
        double hash_time = 0;
        for (size_t d = 0; d < ndoc; d++) {
            v.len = 0;
            if (pl_tokenizer_encode_ex(tok, doc[d], dlen[d], &v, err, sizeof err)) {
                fprintf(stderr, "encode: %s\n", err);
                return 1;
            }
            double th = now();
            const unsigned char *p = (const unsigned char *)v.ids;
            for (size_t i = 0; i < v.len * 4; i++) {
                h ^= p[i];
                h *= 0x100000001b3ull;
            }
            nids += v.len;
            hash_time += now() - th;
        }
        double dt = now() - t0 - hash_time;
        if (dt < enc_best) enc_best = dt;
    }
    /* decode everything back (ids of the last document set only would be too
     * little: re-encode per doc and decode it) */
    pl_buf out;
    pl_buf_init(&out);
    double dec_time = 0;
    size_t dec_bytes = 0;
    for (size_t d = 0; d < ndoc; d++) {
        v.len = 0;
        pl_tokenizer_encode_ex(tok, doc[d], dlen[d], &v, NULL, 0);
        pl_buf_reset(&out);
        double t0 = now();
        pl_tokenizer_decode(tok, v.ids, v.len, 0, &out);
        dec_time += now() - t0;
        dec_bytes += out.len;
    }
    printf("pl_tokenizer:  load %.0f ms, RSS after load %.1f MB (%.1fx the %.1f MB file), "
           "encode %.2f MB/s (%zu docs, %.1f MB, best of 3), ids %zu hash %016llx, decode %.0f MB/s\n",
           load_best * 1e3, rss_load / 1024.0, rss_load * 1024.0 / (double)flen, flen / 1e6,
           nbytes / enc_best / 1e6, ndoc, nbytes / 1e6, nids, (unsigned long long)h, dec_bytes / dec_time / 1e6);
    pl_buf_free(&out);
    pl_tokids_free(&v);
    pl_tokenizer_free(tok);
    free(doc);
    free(dlen);
    free(text);
    return 0;
}
