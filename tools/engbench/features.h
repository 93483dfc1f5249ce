/* features.h — glm-engine-bench modes for the serving features (docs/perf.md):
 *
 *   --mode prefix   time to first token of a long prompt whose leading part
 *                   is in the prefix cache, against the cache off
 *   --mode mtp      verification and draft cost against a plain decode step,
 *                   the distinct routed experts a verification reads and
 *                   the read bound they set, and decode tokens/s with
 *                   oracle drafts at K = 1..5
 *   --mode kverr    FP8 KV against f32 KV: |delta logprob| over a
 *                   teacher-forced text and greedy agreement
 *   --mode dtypeerr --dtype bfloat16 against float32 compute: relative
 *                   logit error and |delta logprob| over the same text,
 *                   greedy agreement
 * (the default mode, decode against the roofline, is in main.c; its
 * --kv-cache-dtype option gives the FP8 decode speed at long context). */
#ifndef ENG_BENCH_FEATURES_H
#define ENG_BENCH_FEATURES_H

typedef struct bench_opts {
    const char *dir;
    int threads, tokens, prompt, repeat;
    int cached;                 /* prefix: leading tokens cached */
    int batch;                  /* sample: sequences per step */
    int ranks;                  /* allreduce, tp: tensor-parallel ranks */
    int compute;                /* enum eng_be_compute (--dtype) */
    int file_pages;             /* --weights-hugepages 0: eng_load_opts.file_pages */
} bench_opts;

double bench_now(void);
double bench_median(double *v, int n);

int bench_prefix(const bench_opts *o);
int bench_mtp(const bench_opts *o);
int bench_kverr(const bench_opts *o);
int bench_dtypeerr(const bench_opts *o);
int bench_sample(const bench_opts *o);
int bench_linear(const bench_opts *o);
int bench_attn(const bench_opts *o);
int bench_allreduce(const bench_opts *o);     /* tp.c */
int bench_tp(const bench_opts *o);

#endif
