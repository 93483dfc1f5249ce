/* taglex.c — tag events from streamed text, holding back partial tags. */
#include "taglex.h"

#include <assert.h>
#include <string.h>

void pl_taglex_init(pl_taglex *lx, const char *const *tags, size_t ntags)
{
    assert(ntags <= PL_TAGLEX_MAX_TAGS);
    lx->tags = tags;
    lx->ntags = ntags;
    for (size_t i = 0; i < ntags; i++) {
        assert(tags[i][0] == '<');
        lx->lens[i] = strlen(tags[i]);
    }
    pl_buf_init(&lx->pend);
    lx->pos = 0;
}

void pl_taglex_free(pl_taglex *lx) { pl_buf_free(&lx->pend); lx->pos = 0; }

void pl_taglex_push(pl_taglex *lx, const char *s, size_t n)
{
    /* Drop what was reported; what is left is at most a partial tag. */
    if (lx->pos) {
        pl_buf_consume(&lx->pend, lx->pos);
        lx->pos = 0;
    }
    pl_buf_append(&lx->pend, s, n);
}

/* At p (a '<', avail bytes left): 1 = whole tag *tag, 0 = cannot be a tag,
 * -1 = a proper prefix of an active tag (undecided). */
static int match_at(const pl_taglex *lx, const char *p, size_t avail, uint32_t mask, int *tag)
{
    int partial = 0;
    for (size_t i = 0; i < lx->ntags; i++) {
        if (!(mask & (1u << i))) continue;
        size_t L = lx->lens[i];
        if (avail >= L) {
            if (memcmp(p, lx->tags[i], L) == 0) { *tag = (int)i; return 1; }
        } else if (memcmp(p, lx->tags[i], avail) == 0) {
            partial = 1;
        }
    }
    return partial ? -1 : 0;
}

int pl_taglex_next(pl_taglex *lx, uint32_t mask, int final, int *tag, const char **s, size_t *n)
{
    const char *base = lx->pend.data;
    size_t end = lx->pend.len, pos = lx->pos;
    if (pos >= end) return PL_TAGLEX_NONE;
    const char *p = base + pos;
    if (*p == '<') {
        int m = match_at(lx, p, end - pos, mask, tag);
        if (m == 1) {
            lx->pos = pos + lx->lens[*tag];
            return PL_TAGLEX_TAG;
        }
        if (m == -1 && !final) return PL_TAGLEX_NONE;
        p++;   /* this '<' is plain text */
    }
    const char *lt = memchr(p, '<', (size_t)(base + end - p));
    size_t stop = lt ? (size_t)(lt - base) : end;
    *s = base + pos;
    *n = stop - pos;
    lx->pos = stop;
    return PL_TAGLEX_TEXT;
}
