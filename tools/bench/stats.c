/* stats.c — numpy's float64 reductions, to the last bit.
 *
 * vllm bench serve reports np.mean / np.std / np.median / np.percentile of
 * Python lists of floats. The saved JSON carries full doubles, so to give
 * the same numbers the summation order must be numpy's (2.x): add.reduce
 * of a contiguous array is one pairwise sum (blocks of up to 128 summed with
 * 8 accumulators, larger ranges halved on a multiple of 8); percentiles use
 * the 'linear' method with numpy's two-sided lerp. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double pairwise_sum(const double *a, size_t n)
{
    if (n < 8) {
        double r = -0.0;
        for (size_t i = 0; i < n; i++) r += a[i];
        return r;
    }
    if (n <= 128) {
        double r[8];
        size_t i;
        for (int k = 0; k < 8; k++) r[k] = a[k];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + k];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

double bn_np_sum(const double *a, size_t n)
{
    return n ? pairwise_sum(a, n) : 0.0;
}

/* vLLM writes np.mean(xs or 0): an empty list becomes the scalar 0. */
double bn_np_mean(const double *a, size_t n)
{
    return n ? bn_np_sum(a, n) / (double)n : 0.0;
}

double bn_np_std(const double *a, size_t n)
{
    if (n == 0) return 0.0;
    double mean = bn_np_sum(a, n) / (double)n;
    double *d = malloc(n * sizeof *d);
    if (!d) return NAN;
    for (size_t i = 0; i < n; i++) {
        double x = a[i] - mean;
        d[i] = x * x;
    }
    double v = bn_np_sum(d, n) / (double)n;
    free(d);
    return sqrt(v);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double *sorted_copy(const double *a, size_t n)
{
    double *s = malloc((n ? n : 1) * sizeof *s);
    if (!s) return NULL;
    memcpy(s, a, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    return s;
}

double bn_np_median(const double *a, size_t n)
{
    if (n == 0) return 0.0;
    double *s = sorted_copy(a, n);
    if (!s) return NAN;
    double r = n % 2 ? s[n / 2] : bn_np_mean(s + n / 2 - 1, 2);
    free(s);
    return r;
}

/* np.percentile(a, p, method='linear') on a sorted array. */
static double percentile_sorted(const double *s, size_t n, double p)
{
    double q = p / 100.0;
    double vi = (double)(n - 1) * q;
    double prev = floor(vi);
    size_t lo, hi;
    if (vi >= (double)(n - 1)) {
        lo = hi = n - 1;
        prev = -1;            /* numpy clamps the index to -1 before taking gamma */
    } else if (vi < 0) {
        lo = hi = 0;
        prev = 0;
    } else {
        lo = (size_t)prev;
        hi = lo + 1;
    }
    double t = vi - prev, a = s[lo], b = s[hi], diff = b - a;
    return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

double bn_np_percentile(const double *a, size_t n, double p)
{
    if (n == 0) return 0.0;
    double *s = sorted_copy(a, n);
    if (!s) return NAN;
    double r = percentile_sorted(s, n, p);
    free(s);
    return r;
}
