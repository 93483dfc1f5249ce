/* Sampling (engine/sample.h): each logits processor, seeded draws, logprobs. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/sample.h"
#include "../../engine/select.h"

#define V 64

static eng_sampler *S;

/* Deterministic, distinct logits in about [-4, 4]. */
static void fill_logits(float *l, int n, uint32_t salt)
{
    for (int i = 0; i < n; i++) {
        uint32_t h = (uint32_t)i * 2654435761u ^ salt * 40503u;
        h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
        l[i] = (float)((h % 80000) / 10000.0 - 4.0);
    }
}

static eng_sample_seq seq_for(const eng_sampling *p, uint64_t key, int n_output)
{
    static const int32_t none[1] = {0};
    eng_sample_seq q = { .p = p, .prompt = none, .n_prompt = 0, .output = none, .n_output = n_output, .rng_key = key };
    return q;
}

static int draw(const eng_sampling *p, const float *l, uint64_t key, int counter)
{
    eng_sample_seq q = seq_for(p, key, 0);
    q.n_output = counter;
    /* output tokens are only read for penalties; none set here */
    static int32_t zeros[4096];
    q.output = zeros;
    eng_sample_out o;
    return eng_sample(S, &q, l, &o) ? -1 : o.token;
}

static int argmax_f(const float *l, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) if (l[i] > l[b]) b = i;
    return b;
}

TEST(sample_greedy_is_argmax)
{
    float l[V];
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.temperature = 0;
    for (uint32_t s = 0; s < 20; s++) {
        fill_logits(l, V, s);
        CHECK_EQ_INT(draw(&p, l, 1, (int)s), argmax_f(l, V));
    }
    /* ties: the lowest id */
    for (int i = 0; i < V; i++) l[i] = 0;
    l[7] = l[3] = 1;
    CHECK_EQ_INT(draw(&p, l, 1, 0), 3);
    /* temperatures under the epsilon are greedy too */
    p.temperature = 1e-7;
    CHECK_EQ_INT(draw(&p, l, 99, 5), 3);
}

/* eng_sample_argmax (vectorised where the CPU allows) against its
 * definition: the first index of a value > -inf greater than every earlier
 * one. Lengths around the 8- and 32-wide blocks, NaN and -inf anywhere, ties
 * (the lowest index), zeros of both signs, +inf, a row of nothing valid. */
static int32_t argmax_def(const float *l, int n)
{
    int32_t b = -1;
    for (int i = 0; i < n; i++)
        if (l[i] > -INFINITY && (b < 0 || l[i] > l[b])) b = i;
    return b;
}

TEST(sample_argmax_matches_definition)
{
    enum { N = 200 };
    float l[N];
    uint32_t r = 12345;
    int bad = 0;
    for (int iter = 0; iter < 4000; iter++) {
        int n = iter % 80 + (iter % 7 == 0 ? 120 : 0);
        for (int i = 0; i < n; i++) {
            r = r * 1664525u + 1013904223u;
            int k = (int)(r >> 24) % 16;
            /* few distinct values so ties are common */
            l[i] = k == 0 ? NAN : k == 1 ? -INFINITY : k == 2 ? 0.0f : k == 3 ? -0.0f
                 : (float)((int)(r >> 8) % 9 - 4);
            if (iter % 13 == 0 && k == 4) l[i] = INFINITY;
        }
        if (iter % 11 == 0)     /* nothing valid */
            for (int i = 0; i < n; i++) l[i] = i % 2 ? NAN : -INFINITY;
        if (eng_sample_argmax(l, n) != argmax_def(l, n)) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* the maximum as the very last element, after a full 32-wide block */
    for (int i = 0; i < 33; i++) l[i] = (float)i * 0.5f - 20.0f;
    CHECK_EQ_INT(eng_sample_argmax(l, 33), 32);
    l[5] = l[32];
    CHECK_EQ_INT(eng_sample_argmax(l, 33), 5);
    CHECK_EQ_INT(eng_sample_argmax(l, 0), -1);
}

/* eng_kth_largest (select.h: the sampler's top_k threshold and the DSA
 * indexer's top-k) against a sorted copy: many ties, every k, and with the
 * partition limit 0 and 1 so the sort that bounds adversarial orders runs. */
static int desc_cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

TEST(kth_largest_matches_sort)
{
    enum { N = 97 };
    float v[N], w[N], sorted[N];
    uint32_t r = 777;
    int bad = 0;
    const int limits[] = { ENG_KTH_ROUNDS, 0, 1 };
    for (int iter = 0; iter < 60; iter++) {
        int n = 1 + iter * 7 % N;
        for (int i = 0; i < n; i++) {
            r = r * 1664525u + 1013904223u;
            v[i] = iter % 3 ? (float)((int)(r >> 24) % 11 - 5) : (float)(r >> 8) / 1e6f;
            if (iter % 5 == 0 && i % 9 == 0) v[i] = i % 2 ? INFINITY : -INFINITY;
        }
        memcpy(sorted, v, sizeof(float) * (size_t)n);
        qsort(sorted, (size_t)n, sizeof *sorted, desc_cmp);
        for (int li = 0; li < 3; li++)
            for (int k = 1; k <= n; k++) {
                memcpy(w, v, sizeof(float) * (size_t)n);
                if (eng_kth_largest_rounds(w, n, k, limits[li]) != sorted[k - 1]) bad++;
            }
    }
    CHECK_EQ_INT(bad, 0);
}

/* Empirical frequencies over many counters vs softmax(l / T). */
TEST(sample_temperature_distribution)
{
    float l[8] = {1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 2.0f, 0.2f, -3.0f};
    eng_sampler *s8;
    char err[128];
    CHECK(eng_sampler_init(&s8, 8, err, sizeof err) == 0);
    for (int ti = 0; ti < 2; ti++) {
        double T = ti ? 0.5 : 1.0;
        eng_sampling p;
        eng_sampling_defaults(&p);
        p.temperature = T;
        double z = 0, pr[8];
        for (int i = 0; i < 8; i++) z += exp(l[i] / T);
        for (int i = 0; i < 8; i++) pr[i] = exp(l[i] / T) / z;
        int cnt[8] = {0}, N = 40000;
        static int32_t none[1];
        for (int c = 0; c < N; c++) {
            eng_sample_seq q = { .p = &p, .prompt = none, .output = none, .n_output = c, .rng_key = eng_rng_key(42, 0) };
            eng_sample_out o;
            CHECK(eng_sample(s8, &q, l, &o) == 0);
            cnt[o.token]++;
        }
        for (int i = 0; i < 8; i++) {
            double sd = sqrt(pr[i] * (1 - pr[i]) / N);
            if (fabs(cnt[i] / (double)N - pr[i]) > 5 * sd + 1e-4)
                fprintf(stderr, "  T=%g token %d: %.4f vs %.4f\n", T, i, cnt[i] / (double)N, pr[i]);
            CHECK(fabs(cnt[i] / (double)N - pr[i]) <= 5 * sd + 1e-4);
        }
    }
    eng_sampler_free(s8);
}

/* Token ids by logit, best first. */
static void order_desc(const float *l, int *order)
{
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++)
        for (int j = i + 1; j < V; j++)
            if (l[order[j]] > l[order[i]]) { int t = order[i]; order[i] = order[j]; order[j] = t; }
}

/* Draw many times: every token must be allowed; returns how many distinct came. */
static int support(const eng_sampling *p, const float *l, uint64_t key, int draws, const int *allowed)
{
    int seen[V] = {0}, n = 0;
    for (int c = 0; c < draws; c++) {
        int t = draw(p, l, key, c);
        CHECK(t >= 0 && allowed[t]);
        if (t >= 0 && !seen[t]) { seen[t] = 1; n++; }
    }
    return n;
}

TEST(sample_top_k)
{
    float l[V];
    fill_logits(l, V, 7);
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.top_k = 5;
    p.temperature = 3.0;   /* flat: without top_k many tokens would appear */
    int order[V], in[V] = {0};
    order_desc(l, order);
    for (int i = 0; i < 5; i++) in[order[i]] = 1;
    CHECK_EQ_INT(support(&p, l, 5, 3000, in), 5);
    p.top_k = 1;
    CHECK_EQ_INT(draw(&p, l, 5, 1), order[0]);
}

TEST(sample_top_p)
{
    float l[V];
    fill_logits(l, V, 11);
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.top_p = 0.6;
    /* the nucleus, directly: most likely first, keep while the mass before < top_p */
    int order[V];
    order_desc(l, order);
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(l[i]);
    int in[V] = {0}, n_in = 0;
    double acc = 0;
    for (int i = 0; i < V && acc < p.top_p; i++) { in[order[i]] = 1; n_in++; acc += exp(l[order[i]]) / z; }
    CHECK_EQ_INT(support(&p, l, 9, 4000, in), n_in);
    CHECK(n_in > 2 && n_in < V);
    /* a tiny top_p leaves only the best token */
    p.top_p = 1e-6;
    for (int c = 0; c < 50; c++) CHECK_EQ_INT(draw(&p, l, 9, c), order[0]);
}

TEST(sample_min_p)
{
    float l[V];
    fill_logits(l, V, 13);
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.min_p = 0.2;
    float mx = l[argmax_f(l, V)];
    int seen_low = 0, n_ok = 0;
    for (int c = 0; c < 3000; c++) {
        int t = draw(&p, l, 3, c);
        if (t < 0 || exp(l[t] - mx) < 0.2) seen_low = 1;
        else n_ok++;
    }
    CHECK(!seen_low && n_ok == 3000);
    /* min_p is judged after temperature: at T=0.25 fewer tokens survive */
    p.temperature = 0.25;
    for (int c = 0; c < 1000; c++) {
        int t = draw(&p, l, 3, c);
        CHECK(t >= 0 && exp((l[t] - mx) / 0.25) >= 0.2);
    }
}

static int greedy_with(const eng_sampling *p, const float *l, const int32_t *prompt, int np, const int32_t *out, int no)
{
    eng_sample_seq q = { .p = p, .prompt = prompt, .n_prompt = np, .output = out, .n_output = no, .rng_key = 1 };
    eng_sample_out o;
    return eng_sample(S, &q, l, &o) ? -1 : o.token;
}

TEST(sample_penalties)
{
    float l[V];
    for (int i = 0; i < V; i++) l[i] = -5;
    l[0] = 2.0f; l[1] = 1.9f;
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.temperature = 0;
    int32_t out2[2] = {0, 0};
    /* frequency: 2.0 - 2 * 0.1 = 1.8 < 1.9; 2.0 - 2 * 0.04 = 1.92 > 1.9 */
    p.frequency_penalty = 0.1;
    CHECK_EQ_INT(greedy_with(&p, l, NULL, 0, out2, 2), 1);
    p.frequency_penalty = 0.04;
    CHECK_EQ_INT(greedy_with(&p, l, NULL, 0, out2, 2), 0);
    p.frequency_penalty = 0;
    /* presence: once, however often: 2.0 - 0.15 = 1.85 */
    p.presence_penalty = 0.15;
    CHECK_EQ_INT(greedy_with(&p, l, NULL, 0, out2, 2), 1);
    p.presence_penalty = 0.05;
    CHECK_EQ_INT(greedy_with(&p, l, NULL, 0, out2, 2), 0);
    /* OpenAI penalties ignore the prompt */
    p.presence_penalty = 1.0;
    CHECK_EQ_INT(greedy_with(&p, l, out2, 2, NULL, 0), 0);
    /* negative penalties encourage */
    p.presence_penalty = -0.2;
    int32_t one[1] = {1};
    l[1] = 1.9f;
    CHECK_EQ_INT(greedy_with(&p, l, NULL, 0, one, 1), 1);
    p.presence_penalty = 0;
    /* repetition (HF): over prompt and output; positive logits divided */
    p.repetition_penalty = 1.5;   /* 2.0 / 1.5 = 1.33 < 1.9 */
    int32_t zero[1] = {0};
    CHECK_EQ_INT(greedy_with(&p, l, zero, 1, NULL, 0), 1);
    CHECK_EQ_INT(greedy_with(&p, l, NULL, 0, zero, 1), 1);
    /* ... negative logits multiplied: -1.0 * 1.5 = -1.5 < -1.4 */
    l[0] = -1.0f; l[1] = -1.4f;
    CHECK_EQ_INT(greedy_with(&p, l, zero, 1, NULL, 0), 1);
    p.repetition_penalty = 1.2;   /* -1.2 > -1.4 */
    CHECK_EQ_INT(greedy_with(&p, l, zero, 1, NULL, 0), 0);
    /* a token repeated in prompt and output is penalised once */
    l[0] = 2.0f; l[1] = 1.5f;
    p.repetition_penalty = 1.25;  /* once: 1.6 > 1.5; twice would be 1.28 */
    int32_t zz[3] = {0, 0, 0};
    CHECK_EQ_INT(greedy_with(&p, l, zz, 3, zz, 3), 0);
    /* the scratch counts are clean afterwards: same call, same answer */
    p.repetition_penalty = 1;
    p.frequency_penalty = 0.3;
    int a = greedy_with(&p, l, NULL, 0, zz, 3), b = greedy_with(&p, l, NULL, 0, zz, 3);
    CHECK_EQ_INT(a, 1);
    CHECK_EQ_INT(a, b);
}

TEST(sample_min_tokens_masks_stop)
{
    float l[V];
    fill_logits(l, V, 17);
    int best = argmax_f(l, V);
    int32_t stop[2] = {best, 63};
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.temperature = 0;
    p.min_tokens = 3;
    int32_t out[8] = {0};
    eng_sample_seq q = { .p = &p, .output = out, .n_output = 2, .stop_ids = stop, .n_stop = 2, .rng_key = 1 };
    eng_sample_out o;
    CHECK(eng_sample(S, &q, l, &o) == 0 && o.token != best && o.token != 63);
    q.n_output = 3;
    CHECK(eng_sample(S, &q, l, &o) == 0 && o.token == best);
    /* sampled (not greedy) too */
    p.temperature = 1.0;
    l[best] = 50;
    q.n_output = 0;
    for (int c = 0; c < 100; c++) {
        q.rng_key = (uint64_t)c;
        CHECK(eng_sample(S, &q, l, &o) == 0 && o.token != best);
    }
}

/* Same key, same counter, same logits: same token, whatever was sampled
 * before, for other sequences with other parameters, in between. */
TEST(sample_seed_batch_independent)
{
    float rows[16][V];
    for (int r = 0; r < 16; r++) fill_logits(rows[r], V, 100 + (uint32_t)r);
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.temperature = 0.9;
    p.top_p = 0.95;
    p.top_k = 40;
    uint64_t key = eng_rng_key(1234, 0);
    int alone[16];
    for (int t = 0; t < 16; t++) alone[t] = draw(&p, rows[t], key, t);
    /* the same steps, each between draws of 7 other sequences */
    eng_sampling other[7];
    for (int k = 0; k < 7; k++) {
        eng_sampling_defaults(&other[k]);
        other[k].temperature = 0.3 + 0.2 * k;
        other[k].min_p = 0.01 * k;
        other[k].repetition_penalty = 1.0 + 0.1 * k;
        other[k].top_k = k ? 3 * k : -1;
    }
    int batched[16];
    for (int t = 0; t < 16; t++) {
        for (int k = 0; k < 4; k++) draw(&other[k], rows[(t + k) % 16], eng_rng_key((uint64_t)k, 0), t);
        batched[t] = draw(&p, rows[t], key, t);
        for (int k = 4; k < 7; k++) draw(&other[k], rows[(t + k) % 16], eng_rng_key((uint64_t)k, 0), t);
    }
    for (int t = 0; t < 16; t++) CHECK_EQ_INT(batched[t], alone[t]);
    /* another seed or choice index draws differently somewhere */
    int diff_seed = 0, diff_index = 0;
    for (int t = 0; t < 16; t++) {
        diff_seed += draw(&p, rows[t], eng_rng_key(1235, 0), t) != alone[t];
        diff_index += draw(&p, rows[t], eng_rng_key(1234, 1), t) != alone[t];
    }
    CHECK(diff_seed > 0 && diff_index > 0);
}

TEST(sample_rng_uniform)
{
    double sum = 0, mn = 1, mx = 0;
    int N = 100000;
    for (int i = 0; i < N; i++) {
        double u = eng_rng_uniform(eng_rng_key(7, 3), (uint64_t)i);
        sum += u;
        if (u < mn) mn = u;
        if (u > mx) mx = u;
    }
    CHECK(fabs(sum / N - 0.5) < 0.005);
    CHECK(mn >= 0 && mn < 0.001 && mx < 1 && mx > 0.999);
    CHECK(eng_rng_uniform(5, 9) == eng_rng_uniform(5, 9));
    CHECK(eng_rng_key(1, 0) != eng_rng_key(0, 1));
}

/* Raw logprobs: log_softmax of the logits before penalties and temperature. */
TEST(sample_logprobs_match_direct)
{
    float l[V];
    fill_logits(l, V, 23);
    double mx = l[argmax_f(l, V)], z = 0;
    for (int i = 0; i < V; i++) z += exp(l[i] - mx);
    double lse = mx + log(z);
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.logprobs = 5;
    p.temperature = 0.7;
    p.repetition_penalty = 1.3;
    p.presence_penalty = 0.5;
    int32_t out[3] = {1, 2, 3};
    eng_sample_seq q = { .p = &p, .output = out, .n_output = 3, .rng_key = eng_rng_key(3, 0) };
    eng_sample_out o;
    CHECK(eng_sample(S, &q, l, &o) == 0);
    CHECK(fabs(o.logprob - (l[o.token] - lse)) < 1e-5);
    CHECK_EQ_INT(o.n_top, 5);
    /* the top 5 by raw logit, best first */
    float prev = INFINITY;
    for (int k = 0; k < o.n_top; k++) {
        int id = o.top[k].id, higher = 0;
        for (int i = 0; i < V; i++) higher += l[i] > l[id];
        CHECK_EQ_INT(higher, k);
        CHECK(fabs(o.top[k].logprob - (l[id] - lse)) < 1e-5);
        CHECK(o.top[k].logprob <= prev);
        prev = o.top[k].logprob;
    }
    /* logprobs 0: only the chosen token */
    p.logprobs = 0;
    CHECK(eng_sample(S, &q, l, &o) == 0 && o.n_top == 0 && fabs(o.logprob - (l[o.token] - lse)) < 1e-5);
    /* prompt logprobs helper: any token, ties in the top list by lower id */
    float flat[V];
    for (int i = 0; i < V; i++) flat[i] = 1.0f;
    eng_sample_logprobs(S, flat, 9, 3, &o);
    CHECK(fabs(o.logprob + log((double)V)) < 1e-5);
    CHECK(o.n_top == 3 && o.top[0].id == 0 && o.top[1].id == 1 && o.top[2].id == 2);
}

TEST(sample_bad_logits)
{
    float l[V];
    for (int i = 0; i < V; i++) l[i] = NAN;
    eng_sampling p;
    eng_sampling_defaults(&p);
    CHECK(draw(&p, l, 1, 0) == -1);
    p.temperature = 0;
    CHECK(draw(&p, l, 1, 0) == -1);
    l[17] = 0.5f;   /* NaN entries are never chosen */
    CHECK_EQ_INT(draw(&p, l, 1, 0), 17);
    p.temperature = 1;
    CHECK_EQ_INT(draw(&p, l, 1, 3), 17);
}

TEST(sample_check_params)
{
    char err[256];
    eng_sampling p;
    struct { double *f; double v; } bad[] = {
        { &p.temperature, -0.1 }, { &p.temperature, NAN }, { &p.temperature, INFINITY },
        { &p.top_p, 0 }, { &p.top_p, 1.01 }, { &p.top_p, NAN },
        { &p.min_p, -0.1 }, { &p.min_p, 1.5 },
        { &p.presence_penalty, 2.5 }, { &p.frequency_penalty, -2.5 }, { &p.frequency_penalty, NAN },
        { &p.repetition_penalty, 0 }, { &p.repetition_penalty, -1 }, { &p.repetition_penalty, NAN },
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        eng_sampling_defaults(&p);
        *bad[i].f = bad[i].v;
        err[0] = 0;
        CHECK_EQ_INT(eng_sampling_check(&p, V, err, sizeof err), PL_ERR_INVALID);
        CHECK(err[0] != 0);
    }
    eng_sampling_defaults(&p);
    CHECK_EQ_INT(eng_sampling_check(&p, V, err, sizeof err), PL_OK);
    p.top_k = V;
    CHECK_EQ_INT(eng_sampling_check(&p, V, err, sizeof err), PL_OK);
    p.top_k = V + 1;
    CHECK_EQ_INT(eng_sampling_check(&p, V, err, sizeof err), PL_ERR_INVALID);
    CHECK(strstr(err, "top_k") != NULL);
    eng_sampling_defaults(&p);
    p.logprobs = ENG_MAX_LOGPROBS + 1;
    CHECK_EQ_INT(eng_sampling_check(&p, V, err, sizeof err), PL_ERR_INVALID);
    eng_sampling_defaults(&p);
    p.prompt_logprobs = -2;
    CHECK_EQ_INT(eng_sampling_check(&p, V, err, sizeof err), PL_ERR_INVALID);
    eng_sampling_defaults(&p);
    p.min_tokens = -1;
    CHECK_EQ_INT(eng_sampling_check(&p, V, err, sizeof err), PL_ERR_INVALID);
}

int main(void)
{
    char err[128];
    if (eng_sampler_init(&S, V, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    RUN(sample_greedy_is_argmax);
    RUN(sample_argmax_matches_definition);
    RUN(kth_largest_matches_sort);
    RUN(sample_temperature_distribution);
    RUN(sample_top_k);
    RUN(sample_top_p);
    RUN(sample_min_p);
    RUN(sample_penalties);
    RUN(sample_min_tokens_masks_stop);
    RUN(sample_seed_batch_independent);
    RUN(sample_rng_uniform);
    RUN(sample_logprobs_match_direct);
    RUN(sample_bad_logits);
    RUN(sample_check_params);
    eng_sampler_free(S);
    return test_report();
}
