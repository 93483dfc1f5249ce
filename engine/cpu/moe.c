/* moe.c — the CPU backend's composite ops: MoE dispatch over an expert
 * range (the loop model.c ran before the op existed, unchanged, so results
 * are bit-identical), and the small ops that let a step's buffers stay in
 * backend memory (scale, key-set selection). */
#include "cpu.h"

#include <string.h>

/* ===== MoE dispatch ===== */

/* Experts in ascending id over the tokens routed to them: each token sums
 * its experts in a fixed order whatever else is in the batch. */
void eng_cpu_moe_experts(eng_backend *be, const eng_be_moe *a, int e0, int e1)
{
    int H = a->hidden, I = a->inter, K = a->top_k;
    memset(a->out, 0, (size_t)a->n * (size_t)H * sizeof(float));
    for (int e = e0; e < e1; e++) {
        int n = 0;
        for (int i = 0; i < a->n; i++)
            for (int k = 0; k < K; k++)
                if (a->idx[i * K + k] == e) { a->rows[n] = i; a->rwt[n] = a->wt[i * K + k]; n++; }
        if (!n) continue;
        const eng_tensor *ex = &a->experts[e * ENG_EXP_COUNT];
        eng_cpu_gather_rows(be, a->x, H, a->rows, n, H, a->xg, H);
        eng_cpu_linear(be, &ex[ENG_EXP_GATE], 0, I, a->xg, n, H, a->gate, I);
        eng_cpu_linear(be, &ex[ENG_EXP_UP], 0, I, a->xg, n, H, a->up, I);
        eng_cpu_silu_mul(be, a->gate, I, a->up, I, n, I, a->act, I);
        eng_cpu_linear(be, &ex[ENG_EXP_DOWN], 0, H, a->act, n, I, a->y, H);
        eng_cpu_scatter_add_rows(be, a->out, H, a->rows, a->rwt, a->y, H, n, H);
    }
}

/* ===== small step ops ===== */

void eng_cpu_scale(eng_backend *be, float *x, int64_t n, float a)
{
    (void)be;
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}

void eng_cpu_keys_select(eng_backend *be, eng_be_keys *keys, int n, const int32_t *sel, int64_t ld,
                         const int *n_sel, int topk)
{
    (void)be;
    for (int i = 0; i < n; i++) {
        int sparse = keys[i].n_ctx > topk;
        keys[i].sel = sparse ? sel + (int64_t)i * ld : NULL;
        keys[i].n_sel = sparse ? n_sel[i] : 0;
    }
}
