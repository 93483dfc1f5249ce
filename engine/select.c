/* select.c — the k-th largest of a float array (select.h). */
#include "select.h"

#include <stdlib.h>

static int desc_f32(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

float eng_kth_largest_rounds(float *v, int n, int k, int max_rounds)
{
    int lo = 0, hi = n - 1, want = k - 1;
    for (int round = 0; lo < hi; round++) {
        if (round == max_rounds) {          /* [lo, hi] holds ranks lo..hi: sort it */
            qsort(v + lo, (size_t)(hi - lo + 1), sizeof *v, desc_f32);
            return v[want];
        }
        float a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi];
        float p = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int i = lo, j = hi;
        while (i <= j) {        /* descending: [lo, j] >= p, [i, hi] <= p, between: == p */
            while (v[i] > p) i++;
            while (v[j] < p) j--;
            if (i <= j) { float t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return p;
    }
    return v[want];
}

float eng_kth_largest(float *v, int n, int k) { return eng_kth_largest_rounds(v, n, k, ENG_KTH_ROUNDS); }
