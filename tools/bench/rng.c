/* rng.c — the random number generators vllm bench serve draws from, bit for
 * bit, so that one seed gives the same prompts, lengths and arrival times in
 * glm-bench as in `vllm bench serve`:
 *
 *   numpy.random.default_rng(seed)   PCG64 seeded through SeedSequence;
 *                                    Generator.integers (Lemire's bounded ints)
 *                                    -> the random dataset
 *   numpy.random.seed(seed)          the legacy MT19937 RandomState;
 *                                    np.random.gamma -> inter-arrival gaps
 *   random.seed(seed)                Python's MT19937 (init_by_array);
 *                                    random.shuffle / random.choice
 *                                    -> ShareGPT / custom dataset order
 *
 * The algorithms are the published ones (O'Neill's PCG XSL-RR 128/64,
 * Matsumoto-Nishimura MT19937, numpy's SeedSequence hash mixing, Marsaglia-
 * Tsang gamma as numpy's legacy code orders its draws); tests compare every
 * stream with numpy/Python output (tests/data/bench/rng.json). */
#include "bench.h"

#include <math.h>
#include <string.h>

/* ================================================================ numpy SeedSequence */

#define SS_INIT_A 0x43b0d7e5u
#define SS_MULT_A 0x931e8875u
#define SS_INIT_B 0x8b51f9ddu
#define SS_MULT_B 0x58f38dedu
#define SS_MIX_L  0xca01f9ddu
#define SS_MIX_R  0x4973f715u
#define SS_POOL   4

static uint32_t ss_hashmix(uint32_t v, uint32_t *hc)
{
    v ^= *hc;
    *hc *= SS_MULT_A;
    v *= *hc;
    v ^= v >> 16;
    return v;
}

static uint32_t ss_mix(uint32_t x, uint32_t y)
{
    uint32_t r = SS_MIX_L * x - SS_MIX_R * y;
    return r ^ (r >> 16);
}

/* SeedSequence(seed).generate_state(n64, np.uint64) for a non-negative int
 * seed: the entropy is the seed's 32-bit words, least significant first
 * ([0] for 0). */
static void ss_generate(uint64_t seed, uint64_t *out, int n64)
{
    uint32_t ent[2];
    int n_ent = 0;
    do { ent[n_ent++] = (uint32_t)seed; seed >>= 32; } while (seed);
    uint32_t pool[SS_POOL], hc = SS_INIT_A;
    for (int i = 0; i < SS_POOL; i++) pool[i] = ss_hashmix(i < n_ent ? ent[i] : 0, &hc);
    for (int s = 0; s < SS_POOL; s++)
        for (int d = 0; d < SS_POOL; d++)
            if (s != d) pool[d] = ss_mix(pool[d], ss_hashmix(pool[s], &hc));
    /* (entropy longer than the pool would be mixed in here; a 64-bit seed never is) */
    uint32_t hb = SS_INIT_B;
    for (int i = 0; i < 2 * n64; i++) {
        uint32_t v = pool[i % SS_POOL];
        v ^= hb;
        hb *= SS_MULT_B;
        v *= hb;
        v ^= v >> 16;
        if (i % 2 == 0) out[i / 2] = v;
        else out[i / 2] |= (uint64_t)v << 32;   /* uint32 pairs viewed as little-endian uint64 */
    }
}

/* ================================================================ PCG64 */

#define PCG_MULT (((unsigned __int128)0x2360ED051FC65DA4ull << 64) | 0x4385DF649FCCF645ull)

static void pcg_step(bn_pcg64 *g) { g->state = g->state * PCG_MULT + g->inc; }

void bn_pcg64_seed(bn_pcg64 *g, uint64_t seed)
{
    uint64_t v[4];
    ss_generate(seed, v, 4);
    unsigned __int128 s = ((unsigned __int128)v[0] << 64) | v[1];
    unsigned __int128 i = ((unsigned __int128)v[2] << 64) | v[3];
    g->state = 0;
    g->inc = (i << 1) | 1;
    pcg_step(g);
    g->state += s;
    pcg_step(g);
    g->has_u32 = 0;
    g->u32 = 0;
}

uint64_t bn_pcg64_next64(bn_pcg64 *g)
{
    pcg_step(g);
    uint64_t x = (uint64_t)(g->state >> 64) ^ (uint64_t)g->state;
    unsigned rot = (unsigned)(g->state >> 122);
    return (x >> rot) | (x << ((64 - rot) & 63));
}

/* numpy hands out the two halves of one 64-bit draw, low half first. */
uint32_t bn_pcg64_next32(bn_pcg64 *g)
{
    if (g->has_u32) { g->has_u32 = 0; return g->u32; }
    uint64_t x = bn_pcg64_next64(g);
    g->has_u32 = 1;
    g->u32 = (uint32_t)(x >> 32);
    return (uint32_t)x;
}

/* Lemire's nearly-divisionless bounded draws, as numpy's
 * random_bounded_uint64_fill does them (use_masked=False). */
static uint32_t lemire32(bn_pcg64 *g, uint32_t rng)
{
    uint32_t excl = rng + 1;
    uint64_t m = (uint64_t)bn_pcg64_next32(g) * excl;
    uint32_t left = (uint32_t)m;
    if (left < excl) {
        uint32_t threshold = (UINT32_MAX - rng) % excl;
        while (left < threshold) {
            m = (uint64_t)bn_pcg64_next32(g) * excl;
            left = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

static uint64_t lemire64(bn_pcg64 *g, uint64_t rng)
{
    uint64_t excl = rng + 1;
    unsigned __int128 m = (unsigned __int128)bn_pcg64_next64(g) * excl;
    uint64_t left = (uint64_t)m;
    if (left < excl) {
        uint64_t threshold = (UINT64_MAX - rng) % excl;
        while (left < threshold) {
            m = (unsigned __int128)bn_pcg64_next64(g) * excl;
            left = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

int64_t bn_pcg64_integers(bn_pcg64 *g, int64_t low, int64_t high)
{
    uint64_t rng = (uint64_t)(high - 1) - (uint64_t)low;   /* inclusive span */
    if (rng == 0) return low;
    if (rng <= 0xFFFFFFFFull)
        return low + (int64_t)(rng == 0xFFFFFFFFull ? bn_pcg64_next32(g) : lemire32(g, (uint32_t)rng));
    if (rng == UINT64_MAX) return (int64_t)((uint64_t)low + bn_pcg64_next64(g));
    return (int64_t)((uint64_t)low + lemire64(g, rng));
}

/* ================================================================ MT19937 */

#define MT_N 624
#define MT_M 397

static void mt_init_genrand(bn_mt *m, uint32_t s)
{
    m->key[0] = s;
    for (int i = 1; i < MT_N; i++)
        m->key[i] = 1812433253u * (m->key[i - 1] ^ (m->key[i - 1] >> 30)) + (uint32_t)i;
    m->pos = MT_N;
    m->has_gauss = 0;
    m->gauss = 0;
}

void bn_mt_seed_numpy(bn_mt *m, uint32_t seed) { mt_init_genrand(m, seed); }

/* Python's random.seed(int): init_by_array over |seed|'s 32-bit words. */
void bn_mt_seed_python(bn_mt *m, int64_t seed)
{
    uint64_t a = seed < 0 ? (uint64_t)0 - (uint64_t)seed : (uint64_t)seed;
    uint32_t key[2];
    int klen = 0;
    do { key[klen++] = (uint32_t)a; a >>= 32; } while (a);
    mt_init_genrand(m, 19650218u);
    int i = 1, j = 0;
    for (int k = MT_N > klen ? MT_N : klen; k; k--) {
        m->key[i] = (m->key[i] ^ ((m->key[i - 1] ^ (m->key[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++; j++;
        if (i >= MT_N) { m->key[0] = m->key[MT_N - 1]; i = 1; }
        if (j >= klen) j = 0;
    }
    for (int k = MT_N - 1; k; k--) {
        m->key[i] = (m->key[i] ^ ((m->key[i - 1] ^ (m->key[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= MT_N) { m->key[0] = m->key[MT_N - 1]; i = 1; }
    }
    m->key[0] = 0x80000000u;
}

uint32_t bn_mt_next32(bn_mt *m)
{
    if (m->pos >= MT_N) {
        int k;
        uint32_t y;
        for (k = 0; k < MT_N - MT_M; k++) {
            y = (m->key[k] & 0x80000000u) | (m->key[k + 1] & 0x7fffffffu);
            m->key[k] = m->key[k + MT_M] ^ (y >> 1) ^ ((y & 1) ? 0x9908b0dfu : 0);
        }
        for (; k < MT_N - 1; k++) {
            y = (m->key[k] & 0x80000000u) | (m->key[k + 1] & 0x7fffffffu);
            m->key[k] = m->key[k + (MT_M - MT_N)] ^ (y >> 1) ^ ((y & 1) ? 0x9908b0dfu : 0);
        }
        y = (m->key[MT_N - 1] & 0x80000000u) | (m->key[0] & 0x7fffffffu);
        m->key[MT_N - 1] = m->key[MT_M - 1] ^ (y >> 1) ^ ((y & 1) ? 0x9908b0dfu : 0);
        m->pos = 0;
    }
    uint32_t y = m->key[m->pos++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

double bn_mt_double(bn_mt *m)
{
    uint32_t a = bn_mt_next32(m) >> 5, b = bn_mt_next32(m) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
}

/* numpy's legacy_gauss: the polar method, the second value kept for the next call. */
static double mt_gauss(bn_mt *m)
{
    if (m->has_gauss) {
        m->has_gauss = 0;
        double t = m->gauss;
        m->gauss = 0;
        return t;
    }
    double x1, x2, r2;
    do {
        x1 = 2.0 * bn_mt_double(m) - 1.0;
        x2 = 2.0 * bn_mt_double(m) - 1.0;
        r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    double f = sqrt(-2.0 * log(r2) / r2);
    m->gauss = f * x1;
    m->has_gauss = 1;
    return f * x2;
}

static double mt_std_exponential(bn_mt *m) { return -log(1.0 - bn_mt_double(m)); }

static double mt_std_gamma(bn_mt *m, double shape)
{
    if (shape == 1.0) return mt_std_exponential(m);
    if (shape == 0.0) return 0.0;
    if (shape < 1.0) {
        for (;;) {
            double U = bn_mt_double(m), V = mt_std_exponential(m), X, Y;
            if (U <= 1.0 - shape) {
                X = pow(U, 1. / shape);
                if (X <= V) return X;
            } else {
                Y = -log((1 - U) / shape);
                X = pow(1.0 - shape + shape * Y, 1. / shape);
                if (X <= V + Y) return X;
            }
        }
    }
    double b = shape - 1. / 3., c = 1. / sqrt(9 * b);
    for (;;) {
        double X, V;
        do {
            X = mt_gauss(m);
            V = 1.0 + c * X;
        } while (V <= 0.0);
        V = V * V * V;
        double U = bn_mt_double(m);
        if (U < 1.0 - 0.0331 * (X * X) * (X * X)) return b * V;
        if (log(U) < 0.5 * X * X + b * (1. - V + log(V))) return b * V;
    }
}

double bn_mt_gamma(bn_mt *m, double shape, double scale) { return scale * mt_std_gamma(m, shape); }

/* Python's getrandbits(k) for k <= 64: 32-bit words, least significant
 * first, the last one shifted down to the bits still wanted. */
static uint64_t mt_getrandbits(bn_mt *m, int k)
{
    uint64_t r = 0;
    for (int sh = 0; k > 0; sh += 32, k -= 32) {
        uint32_t w = bn_mt_next32(m);
        if (k < 32) w >>= 32 - k;
        r |= (uint64_t)w << sh;
    }
    return r;
}

uint64_t bn_mt_randbelow(bn_mt *m, uint64_t n)
{
    if (n == 0) return 0;
    int k = 64 - __builtin_clzll(n);   /* n.bit_length() */
    uint64_t r = mt_getrandbits(m, k);
    while (r >= n) r = mt_getrandbits(m, k);
    return r;
}

void bn_mt_shuffle(bn_mt *m, void *base, size_t n, size_t size)
{
    char tmp[256], *b = base;
    if (size > sizeof tmp) return;   /* callers shuffle pointers and small structs */
    for (size_t i = n ? n - 1 : 0; i >= 1; i--) {
        size_t j = (size_t)bn_mt_randbelow(m, i + 1);
        memcpy(tmp, b + i * size, size);
        memcpy(b + i * size, b + j * size, size);
        memcpy(b + j * size, tmp, size);
    }
}
