/* gqa.c — the CPU bodies of the grouped-query attention ops
 * (Glm4MoeForCausalLM; backend.c dispatches eng_be_* to them): NeoX partial
 * RoPE, projection bias, and attention over paged K/V rows. */
#include "cpu.h"

#include <math.h>
#include <string.h>

/* ===== element-wise ===== */

void eng_cpu_rope_neox(eng_backend *be, float *x, int n, int64_t ldx, int n_heads, int64_t hstride,
                       int off, int dim, const int32_t *pos, const float *inv_freq)
{
    (void)be;
    int half = dim / 2;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < half; j++) {
            /* Angle in f32 as transformers: position * inv_freq (cos/sin of
             * cat(freqs, freqs), so both halves of a pair share one angle). */
            float ang = (float)pos[i] * inv_freq[j];
            float c = cosf(ang), s = sinf(ang);
            for (int h = 0; h < n_heads; h++) {
                float *p = x + i * ldx + h * hstride + off;
                float a = p[j], b = p[j + half];
                p[j] = a * c - b * s;
                p[j + half] = b * c + a * s;
            }
        }
}

void eng_cpu_add_bias(eng_backend *be, float *y, int64_t ldy, const eng_tensor *b, int n, int dim)
{
    (void)be;
    for (int i = 0; i < n; i++) {
        float *yi = y + i * ldy;
        if (b->dtype == ENG_DT_BF16)
            for (int j = 0; j < dim; j++) yi[j] += eng_bf16_to_f32(((const uint16_t *)b->data)[j]);
        else
            for (int j = 0; j < dim; j++) yi[j] += ((const float *)b->data)[j];
    }
}

/* ===== attention ===== */

struct gqa_ctx {
    eng_backend *be;
    const float *q;
    int64_t ldq, ldo;
    int n_heads, n_kv, hd, group;
    const eng_be_cache *kc, *vc;
    float scale;
    const eng_be_keys *keys;
    float *o;
};

static inline int64_t pos_slot(const eng_be_keys *k, int j)
{
    int p = k->sel ? k->sel[j] : j;
    return (int64_t)k->block_table[p / k->block_size] * k->block_size + p % k->block_size;
}

#define GQA_BLOCK 256     /* rows per register-tiled pass */

/* The K or V spans [a, b) of keys [j0, j1) of k: pointers into F32 rows,
 * or FP8 spans dequantized into buf ((j1 - j0) x (b - a) floats). */
static void gqa_spans(const eng_be_cache *c, const eng_be_keys *k, int j0, int j1, int a, int b, float *buf,
                      const float **rows)
{
    for (int j = j0; j < j1; j++) rows[j - j0] = eng_cpu_cache_span(c, pos_slot(k, j), a, b, buf + (size_t)(j - j0) * (size_t)(b - a));
}

/* Query token i, KV head g: the group's G query heads against blocks of
 * GQA_BLOCK rows of the head's K span (register tiles of heads x rows,
 * eng_cpu_dots_rows), softmax per head in f32 over all keys, then the V
 * spans summed block by block (eng_cpu_wsum) and the blocks added in
 * order. Every head's arithmetic is fixed by its own keys, whatever the
 * batch or the thread: batch invariant. */
static void gqa_task(void *p, int task, int thread)
{
    struct gqa_ctx *c = p;
    int i = task / c->n_kv, g = task % c->n_kv, hd = c->hd, G = c->group;
    const eng_be_keys *k = &c->keys[i];
    int nk = k->sel ? k->n_sel : k->n_ctx;
    float *o = c->o + i * c->ldo + (int64_t)g * G * hd;
    memset(o, 0, (size_t)G * (size_t)hd * sizeof(float));
    if (nk <= 0) return;
    /* scores [G, nk], one block of dequantized spans, one block's sums [G, hd] */
    size_t blk = (size_t)GQA_BLOCK * (size_t)hd;
    float *sc = eng_cpu_scratch_f(c->be, thread, (size_t)nk * (size_t)G + blk + (size_t)G * (size_t)hd);
    if (!sc) return;
    float *buf = sc + (size_t)nk * (size_t)G, *u = buf + blk;
    const float *rows[GQA_BLOCK];
    const float *q = c->q + i * c->ldq + (int64_t)g * G * hd;
    int a = g * hd, b = a + hd;
    for (int j0 = 0; j0 < nk; j0 += GQA_BLOCK) {
        int j1 = j0 + GQA_BLOCK < nk ? j0 + GQA_BLOCK : nk;
        gqa_spans(c->kc, k, j0, j1, a, b, buf, rows);
        eng_cpu_dots_rows(c->be, q, hd, G, rows, j1 - j0, hd, sc + j0, nk);
    }
    for (int h = 0; h < G; h++) {                   /* softmax per head, in f32 */
        float *s_h = sc + (size_t)h * nk, mx = -INFINITY;
        for (int j = 0; j < nk; j++) { s_h[j] *= c->scale; if (s_h[j] > mx) mx = s_h[j]; }
        float inv = 1.0f / eng_cpu_softmax_num(c->be, s_h, nk, mx);
        for (int j = 0; j < nk; j++) s_h[j] *= inv;
    }
    for (int j0 = 0; j0 < nk; j0 += GQA_BLOCK) {
        int j1 = j0 + GQA_BLOCK < nk ? j0 + GQA_BLOCK : nk;
        gqa_spans(c->vc, k, j0, j1, a, b, buf, rows);
        eng_cpu_wsum(c->be, sc + j0, nk, G, rows, j1 - j0, hd, j0 ? u : o, hd);
        if (j0) for (int h = 0; h < G; h++) eng_cpu_axpy(c->be, o + (int64_t)h * hd, 1.0f, u + (int64_t)h * hd, hd);
    }
}

void eng_cpu_gqa_attend(eng_backend *be, const float *q, int64_t ldq, int n_heads, int n_kv_heads, int head_dim,
                        const eng_be_cache *kc, const eng_be_cache *vc, float scale, const eng_be_keys *keys,
                        int n, float *o, int64_t ldo)
{
    eng_cpu_fp8_init();
    struct gqa_ctx c = { be, q, ldq, ldo, n_heads, n_kv_heads, head_dim, n_heads / n_kv_heads, kc, vc, scale,
                         keys, o };
    eng_cpu_run(be, gqa_task, &c, n * n_kv_heads);
}
