/* bench_regex_limits — how much of PCRE2's match and depth limits the real
 * tokenizers' pre-tokenizer regexes need, on the inputs that stress them
 * most, against what a catastrophic pattern needs. Sets TK_MATCH_LIMIT and
 * TK_DEPTH_LIMIT (lib/tokenizer/tokenizer_int.h); numbers in docs/perf.md.
 *
 *   bench_regex_limits [KiB] TOKENIZER.json...     (default 1024 KiB per input)
 *
 * For each tokenizer and each input shape (runs of spaces, newlines, digits,
 * letters, CJK, emoji, punctuation, contractions, mixed text), finds the
 * smallest match limit (doubling from 1) under which every encode succeeds,
 * once with the JIT and once with the interpreter (the JIT falls back to it
 * when its stack runs out), then the interpreter's smallest depth limit.
 * Encode failures at a limit come back as PL_ERR_RANGE, which is what the
 * bench looks for. */
#include "tokenizer/tokenizer_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct { const char *name; pl_buf text; } input;

static void repeat(pl_buf *b, const char *unit, size_t bytes)
{
    size_t n = strlen(unit);
    while (b->len + n <= bytes) pl_buf_append(b, unit, n);
}

/* Deterministic mixed text: words, numbers, punctuation, newlines, CJK. */
static void mixed(pl_buf *b, size_t bytes)
{
    static const char *const parts[] = {"the ", "Quick ", "1234567 ", "brown's ", "fox,", " \n", "jumps!!! ",
                                        "中文字符 ", "🚀🔥 ", "  \t ", "x=y+z; ", "'ll ", "\r\n", "ÄÖÜ ", "...? "};
    uint64_t x = 88172645463325252ull;
    while (b->len < bytes) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        pl_buf_puts(b, parts[x % PL_ARRAY_LEN(parts)]);
    }
}

static int encode_all(pl_tokenizer *t, input *in, size_t n, int *failed)
{
    char err[256];
    for (size_t i = 0; i < n; i++) {
        pl_tokids ids = {0};
        int rc = pl_tokenizer_encode_ex(t, in[i].text.data, in[i].text.len, &ids, err, sizeof err);
        pl_tokids_free(&ids);
        if (rc) { *failed = (int)i; return rc; }
    }
    return 0;
}

/* Smallest power of two for which every input encodes. */
static uint64_t smallest(pl_tokenizer *t, input *in, size_t n, int depth, const char **worst)
{
    for (uint64_t lim = 1; lim <= UINT32_MAX; lim *= 2) {
        if (depth) tk_set_regex_limits(t, UINT32_MAX, (uint32_t)lim);
        else tk_set_regex_limits(t, (uint32_t)lim, UINT32_MAX);
        int failed = -1;
        int rc = encode_all(t, in, n, &failed);
        if (!rc) return lim;
        if (rc != PL_ERR_RANGE) { fprintf(stderr, "encode failed: %d\n", rc); return 0; }
        *worst = in[failed].name;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int a = 1;
    size_t kib = 1024;
    if (a < argc && argv[a][0] >= '0' && argv[a][0] <= '9') kib = (size_t)atol(argv[a++]);
    size_t bytes = kib * 1024;
    input in[] = {
        {"spaces", {0}}, {"newlines", {0}}, {"space-newline", {0}}, {"tabs-cr", {0}}, {"digits", {0}},
        {"letters", {0}}, {"cjk", {0}}, {"emoji", {0}}, {"punct", {0}}, {"contractions", {0}}, {"mixed", {0}},
    };
    repeat(&in[0].text, " ", bytes);
    repeat(&in[1].text, "\n", bytes);
    repeat(&in[2].text, " \n", bytes);
    repeat(&in[3].text, "\t\r \r\n", bytes);
    repeat(&in[4].text, "7", bytes);
    repeat(&in[5].text, "a", bytes);
    repeat(&in[6].text, "字", bytes);
    repeat(&in[7].text, "🚀", bytes);
    repeat(&in[8].text, "!?", bytes);
    repeat(&in[9].text, "'s'll've", bytes);
    mixed(&in[10].text, bytes);
    size_t n = PL_ARRAY_LEN(in);
    printf("inputs: %zu shapes of %zu KiB each\n", n, kib);
    printf("%-40s %-6s %14s %-14s %10s\n", "tokenizer", "path", "match limit", "(worst input)", "seconds");
    for (; a < argc; a++) {
        char err[512];
        pl_tokenizer *t;
        if (pl_tokenizer_load(&t, argv[a], err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        int jit[TK_MAX_STEPS];
        for (int s = 0; s < t->n_steps; s++) jit[s] = t->steps[s].jit;
        for (int mode = 0; mode < 2; mode++) {   /* 0: as loaded (JIT), 1: interpreter */
            for (int s = 0; s < t->n_steps; s++) t->steps[s].jit = mode ? 0 : jit[s];
            const char *worst = "-";
            double t0 = now();
            uint64_t m = smallest(t, in, n, 0, &worst);
            printf("%-40s %-6s %14llu %-14s %10.1f\n", argv[a], mode ? "interp" : "jit", (unsigned long long)m, worst,
                   now() - t0);
            if (mode) {
                worst = "-";
                t0 = now();
                uint64_t d = smallest(t, in, n, 1, &worst);
                printf("%-40s %-6s %14llu %-14s %10.1f  (depth limit)\n", argv[a], "interp", (unsigned long long)d, worst,
                       now() - t0);
            }
        }
        pl_tokenizer_free(t);
    }
    for (size_t i = 0; i < n; i++) pl_buf_free(&in[i].text);
    return 0;
}
