/* sample.c — penalties, temperature, min_p/top_k/top_p, seeded draws, logprobs. */
#include "sample.h"
#include "select.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* top_p buckets tokens by w - max in [-ENG_TOP_P_RANGE, 0]: all but the
 * boundary bucket are kept or dropped whole, only that one is sorted. */
#define ENG_TOP_P_BINS  1024
#define ENG_TOP_P_RANGE 40.0f

struct eng_sampler {
    int       vocab;
    float    *w;       /* working copy of the row being sampled */
    float    *sel;     /* quickselect scratch (top_k threshold) */
    int32_t  *cnt;     /* output-token counts; all zero between calls */
    uint32_t *stamp;   /* "seen in this call" marks, compared with gen */
    uint32_t  gen;
    float    *e;       /* exp(w - max) of the kept tokens, 0 for dropped ones */
    struct cand { float e; int32_t id; } *cand;   /* top_p boundary candidates */
    double    bin_mass[ENG_TOP_P_BINS];
};

/* ===== parameters ===== */

void eng_sampling_defaults(eng_sampling *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0;
    p->top_p = 1.0;
    p->top_k = -1;
    p->repetition_penalty = 1.0;
    p->logprobs = -1;
    p->prompt_logprobs = -1;
}

static int bad_range(char *err, size_t errlen, const char *name, double v, const char *want)
{
    return pl_seterr(err, errlen, PL_ERR_INVALID, "%s must be %s, got %g", name, want, v);
}

int eng_sampling_check(const eng_sampling *p, int vocab, char *err, size_t errlen)
{
    const struct { const char *name; double v, lo, hi; int lo_open; const char *want; } r[] = {
        { "temperature", p->temperature, 0, INFINITY, 0, "a non-negative number" },
        { "top_p", p->top_p, 0, 1, 1, "in (0, 1]" },
        { "min_p", p->min_p, 0, 1, 0, "in [0, 1]" },
        { "presence_penalty", p->presence_penalty, -2, 2, 0, "in [-2, 2]" },
        { "frequency_penalty", p->frequency_penalty, -2, 2, 0, "in [-2, 2]" },
        { "repetition_penalty", p->repetition_penalty, 0, INFINITY, 1, "greater than zero" },
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(r); i++) {
        double v = r[i].v;
        if (isnan(v) || isinf(v) || v < r[i].lo || v > r[i].hi || (r[i].lo_open && v == r[i].lo))
            return bad_range(err, errlen, r[i].name, v, r[i].want);
    }
    if (p->top_k > vocab)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "top_k must be at most the vocabulary size %d, got %d", vocab, p->top_k);
    if (p->min_tokens < 0)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "min_tokens must be non-negative, got %d", p->min_tokens);
    if (p->logprobs < -1 || p->logprobs > ENG_MAX_LOGPROBS)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "logprobs must be between 0 and %d, got %d", ENG_MAX_LOGPROBS, p->logprobs);
    if (p->prompt_logprobs < -1 || p->prompt_logprobs > ENG_MAX_LOGPROBS)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "prompt_logprobs must be between 0 and %d, got %d", ENG_MAX_LOGPROBS,
                         p->prompt_logprobs);
    return PL_OK;
}

/* ===== RNG ===== */

/* splitmix64's finaliser: a bijective 64-bit mixer. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t eng_rng_key(uint64_t seed, uint64_t stream)
{
    return mix64(mix64(seed) ^ mix64(stream ^ 0x632BE59BD9B4E019ull));
}

double eng_rng_uniform(uint64_t key, uint64_t counter)
{
    /* Two rounds keep neighbouring counters of one key uncorrelated. */
    return (double)(mix64(key ^ mix64(counter)) >> 11) * 0x1p-53;
}

/* ===== sampler ===== */

int eng_sampler_init(eng_sampler **out, int vocab, char *err, size_t errlen)
{
    *out = NULL;
    if (vocab < 1) return pl_seterr(err, errlen, PL_ERR_INVALID, "vocabulary size %d", vocab);
    eng_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->vocab = vocab;
        s->w = malloc(sizeof *s->w * (size_t)vocab);
        s->sel = malloc(sizeof *s->sel * (size_t)vocab);
        s->cnt = calloc((size_t)vocab, sizeof *s->cnt);
        s->stamp = calloc((size_t)vocab, sizeof *s->stamp);
        s->cand = malloc(sizeof *s->cand * (size_t)vocab);
        s->e = malloc(sizeof *s->e * (size_t)vocab);
    }
    if (!s || !s->w || !s->sel || !s->cnt || !s->stamp || !s->cand || !s->e) {
        eng_sampler_free(s);
        return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory for the sampler (vocab %d)", vocab);
    }
    *out = s;
    return PL_OK;
}

void eng_sampler_free(eng_sampler *s)
{
    if (!s) return;
    free(s->w);
    free(s->sel);
    free(s->cnt);
    free(s->stamp);
    free(s->cand);
    free(s->e);
    free(s);
}

int eng_sampler_vocab(const eng_sampler *s) { return s->vocab; }

/* A fresh generation of stamps: marks from earlier calls no longer count. */
static uint32_t next_gen(eng_sampler *s)
{
    if (++s->gen == 0) {   /* wrapped: old marks could collide, clear them */
        memset(s->stamp, 0, sizeof *s->stamp * (size_t)s->vocab);
        s->gen = 1;
    }
    return s->gen;
}

/* ===== logprobs ===== */

/* log(sum(exp(x))) over the finite entries (NaN counts as -inf). */
static double logsumexp(const float *x, int n)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY || isinf(mx)) return mx;
    double sum = 0;
    for (int i = 0; i < n; i++)
        if (x[i] > -INFINITY) sum += expf(x[i] - mx);
    return mx + log(sum);
}

/* The n best entries of x, best first; ties keep the lower id first. */
static int top_n(const float *x, int vocab, int n, eng_logprob *top)
{
    int k = 0;
    for (int i = 0; i < vocab && n > 0; i++) {
        float v = x[i];
        if (isnan(v) || (k == n && !(v > top[k - 1].logprob))) continue;
        int j = k < n ? k++ : n - 1;   /* slot freed at the end, then bubble up */
        while (j > 0 && v > top[j - 1].logprob) { top[j] = top[j - 1]; j--; }
        top[j].id = i;
        top[j].logprob = v;
    }
    return k;
}

void eng_sample_logprobs(eng_sampler *s, const float *logits, int32_t token, int n_top, eng_sample_out *out)
{
    double lse = logsumexp(logits, s->vocab);
    if (n_top > ENG_MAX_LOGPROBS) n_top = ENG_MAX_LOGPROBS;
    out->token = token;
    out->logprob = token >= 0 && token < s->vocab ? (float)((double)logits[token] - lse) : -INFINITY;
    out->n_top = top_n(logits, s->vocab, n_top < 0 ? 0 : n_top, out->top);
    for (int i = 0; i < out->n_top; i++) out->top[i].logprob = (float)((double)out->top[i].logprob - lse);
}

/* ===== logits processors ===== */

static void apply_penalties(eng_sampler *s, const eng_sample_seq *q, float *w)
{
    const eng_sampling *p = q->p;
    int V = s->vocab;
    if (q->n_output < p->min_tokens)
        for (int i = 0; i < q->n_stop; i++)
            if (q->stop_ids[i] >= 0 && q->stop_ids[i] < V) w[q->stop_ids[i]] = -INFINITY;

    if (p->repetition_penalty != 1.0) {
        float rp = (float)p->repetition_penalty;
        uint32_t g = next_gen(s);
        for (int pass = 0; pass < 2; pass++) {
            const int32_t *t = pass ? q->output : q->prompt;
            int n = pass ? q->n_output : q->n_prompt;
            for (int i = 0; i < n; i++) {
                int32_t id = t[i];
                if (id < 0 || id >= V || s->stamp[id] == g) continue;
                s->stamp[id] = g;
                w[id] = w[id] > 0 ? w[id] / rp : w[id] * rp;
            }
        }
    }
    if (p->frequency_penalty != 0 || p->presence_penalty != 0) {
        for (int i = 0; i < q->n_output; i++)
            if (q->output[i] >= 0 && q->output[i] < V) s->cnt[q->output[i]]++;
        /* second pass applies once per distinct token and zeroes the counts
         * again, so the scratch is clean for the next call */
        for (int i = 0; i < q->n_output; i++) {
            int32_t id = q->output[i];
            if (id < 0 || id >= V || !s->cnt[id]) continue;
            w[id] -= (float)(p->frequency_penalty * s->cnt[id] + p->presence_penalty);
            s->cnt[id] = 0;
        }
    }
}

/* ===== greedy argmax =====
 *
 * The definition (portable body): the first index whose value is greater
 * than -inf and than every earlier one; NaN is never chosen. With AVX2 the
 * same index in two passes over the row: the maximum (vmaxps returns its
 * second operand when the first is NaN, so NaN is skipped), then the first
 * index equal to it (-0 == +0, as the strict > of the definition keeps the
 * first of two zeros). A row of 154,880 logits is 605 KiB: the scalar loop's
 * compare-and-branch chain cost ~0.1 ms per sequence, i.e. milliseconds per
 * batch step, on the step's critical path. */
static int32_t argmax_portable(const float *w, int n)
{
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (w[i] > -INFINITY && (best < 0 || w[i] > w[best])) best = i;
    return best;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx2"))) static int32_t argmax_avx2(const float *w, int n)
{
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(w + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(w + i + 8), m1);
        m2 = _mm256_max_ps(_mm256_loadu_ps(w + i + 16), m2);
        m3 = _mm256_max_ps(_mm256_loadu_ps(w + i + 24), m3);
    }
    for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(w + i), m0);
    float lane[8], mx = -INFINITY;
    _mm256_storeu_ps(lane, _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    for (int k = 0; k < 8; k++) if (lane[k] > mx) mx = lane[k];
    for (; i < n; i++) if (w[i] > mx) mx = w[i];
    if (!(mx > -INFINITY)) return -1;
    __m256 mv = _mm256_set1_ps(mx);
    for (i = 0; i + 8 <= n; i += 8) {
        int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(w + i), mv, _CMP_EQ_OQ));
        if (hit) return i + __builtin_ctz((unsigned)hit);
    }
    for (; i < n; i++) if (w[i] == mx) return i;
    return -1;                  /* not reached: mx is one of the values */
}

int32_t eng_sample_argmax(const float *w, int n)
{
    return __builtin_cpu_supports("avx2") ? argmax_avx2(w, n) : argmax_portable(w, n);
}
#else
int32_t eng_sample_argmax(const float *w, int n) { return argmax_portable(w, n); }
#endif

static void apply_top_k(eng_sampler *s, float *w, int k)
{
    int n = 0;
    for (int i = 0; i < s->vocab; i++)
        if (w[i] > -INFINITY) s->sel[n++] = w[i];
    if (k >= n) return;
    float thr = eng_kth_largest(s->sel, n, k);   /* sel: no NaN (mapped to -inf above) */
    for (int i = 0; i < s->vocab; i++)
        if (w[i] < thr) w[i] = -INFINITY;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->e != y->e) return x->e > y->e ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* e[i] = exp(w[i] - mx) for kept tokens, 0 for the rest; returns the sum. */
static double fill_exp(eng_sampler *s, const float *w, float mx)
{
    double total = 0;
    for (int i = 0; i < s->vocab; i++) {
        float e = w[i] > -INFINITY ? expf(w[i] - mx) : 0.0f;
        s->e[i] = e;
        total += e;
    }
    return total;
}

/* Keep the nucleus: the most likely tokens, in descending order, while the
 * mass before a token is below top_p of the total (so the token that crosses
 * it is kept). Instead of sorting the vocabulary, tokens go to buckets by
 * mx - w (monotone in probability): buckets before the one where the running
 * mass crosses top_p are kept whole, those after it dropped, and only the
 * crossing bucket is sorted (probability descending, then id). Returns the
 * kept mass. */
static double apply_top_p(eng_sampler *s, const float *w, float mx, double total, double top_p)
{
    int V = s->vocab;
    const float scale = ENG_TOP_P_BINS / ENG_TOP_P_RANGE;
    memset(s->bin_mass, 0, sizeof s->bin_mass);
    for (int i = 0; i < V; i++) {
        if (s->e[i] == 0.0f) continue;
        float d = (mx - w[i]) * scale;
        int b = d < ENG_TOP_P_BINS - 1 ? (int)d : ENG_TOP_P_BINS - 1;
        s->bin_mass[b] += s->e[i];
    }
    double want = top_p * total, before = 0;
    int cut = 0;
    while (cut < ENG_TOP_P_BINS - 1 && before + s->bin_mass[cut] < want) before += s->bin_mass[cut++];
    int n = 0;
    for (int i = 0; i < V; i++) {
        if (s->e[i] == 0.0f) continue;
        float d = (mx - w[i]) * scale;
        int b = d < ENG_TOP_P_BINS - 1 ? (int)d : ENG_TOP_P_BINS - 1;
        if (b == cut) { s->cand[n].e = s->e[i]; s->cand[n].id = i; n++; }
        else if (b > cut) s->e[i] = 0.0f;
    }
    qsort(s->cand, (size_t)n, sizeof *s->cand, cand_cmp);
    double kept = before;
    int k = 0;
    for (; k < n && kept < want; k++) kept += s->cand[k].e;
    for (; k < n; k++) s->e[s->cand[k].id] = 0.0f;
    return kept;
}

/* ===== sampling ===== */

int eng_sample(eng_sampler *s, const eng_sample_seq *q, const float *logits, eng_sample_out *out)
{
    const eng_sampling *p = q->p;
    int V = s->vocab;
    float *w = s->w;
    for (int i = 0; i < V; i++) w[i] = isnan(logits[i]) ? -INFINITY : logits[i];
    apply_penalties(s, q, w);

    int32_t tok;
    if (eng_sampling_greedy(p)) {
        tok = eng_sample_argmax(w, V);
    } else {
        float inv_t = (float)(1.0 / p->temperature);
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) {
            w[i] *= inv_t;
            if (w[i] > mx) mx = w[i];
        }
        if (mx == -INFINITY) return PL_ERR_INVALID;
        if (p->min_p > 0) {
            /* p_i < min_p * p_max  <=>  w_i - mx < log(min_p) */
            float cut = (float)log(p->min_p);
            for (int i = 0; i < V; i++)
                if (w[i] - mx < cut) w[i] = -INFINITY;
        }
        if (p->top_k > 0) apply_top_k(s, w, p->top_k);
        double total = fill_exp(s, w, mx);
        if (p->top_p < 1.0) total = apply_top_p(s, w, mx, total, p->top_p);
        double target = eng_rng_uniform(q->rng_key, (uint64_t)q->n_output) * total, acc = 0;
        tok = -1;
        for (int i = 0; i < V; i++) {
            if (s->e[i] == 0.0f) continue;
            tok = i;   /* the last kept token absorbs rounding at the top end */
            acc += s->e[i];
            if (acc > target) break;
        }
    }
    if (tok < 0) return PL_ERR_INVALID;
    if (p->logprobs >= 0) eng_sample_logprobs(s, logits, tok, p->logprobs, out);
    out->token = tok;
    if (p->logprobs < 0) { out->logprob = 0; out->n_top = 0; }
    return PL_OK;
}

/* ===== speculative verification ===== */

int eng_sample_verify(eng_sampler *s, const eng_sample_seq *q, const float *rows, int k, eng_sample_out *out)
{
    eng_sample_seq at = *q;
    for (int j = 0; j <= k; j++) {
        at.n_output = q->n_output + j;      /* d_1..d_j count as output */
        if (eng_sample(s, &at, rows + (size_t)j * (size_t)s->vocab, &out[j])) return 0;
        if (j == k || out[j].token != q->output[q->n_output + j]) return j + 1;
    }
    return k + 1;
}
