/* select.h — the k-th largest of a float array (quickselect), shared by the
 * sampler's top_k threshold and the CPU backend's DSA indexer top-k. */
#ifndef ENG_SELECT_H
#define ENG_SELECT_H

/* Partitions before eng_kth_largest stops selecting and sorts what is left
 * (an adversarial order would otherwise cost quadratic time). */
#define ENG_KTH_ROUNDS 64

/* The k-th largest (1 <= k <= n) of v[0..n), reordering v. v holds no NaN.
 * The value is exact whatever the pivots: quickselect with median-of-three
 * pivots for up to ENG_KTH_ROUNDS partitions, then the remaining range
 * sorted (O(n log n) at worst). */
float eng_kth_largest(float *v, int n, int k);
/* The same with the partition limit given (tests pass 0 to reach the sort). */
float eng_kth_largest_rounds(float *v, int n, int k, int max_rounds);

#endif
