/* taglex.h — incremental lexer for literal tags in streamed model text.
 *
 * The GLM parsers are state machines over a few literal tags (`<think>`,
 * `</think>`, `<tool_call>`, `<arg_key>`, ...). Text arrives in arbitrary
 * pieces, so a tag may be cut across two deltas. The lexer turns the pushed
 * text into a sequence of TEXT and TAG events; a suffix that could still
 * become one of the active tags is held back (never reported as text) until
 * more input decides it, or until the caller says the input is final.
 *
 * Which tags are active depends on the caller's state, which may change after
 * every TAG event, so the mask is passed to each pl_taglex_next call. Every
 * tag must start with '<' (the lexer jumps between '<' with memchr, so work
 * per pushed byte is O(1) amortised) and no tag may be a prefix of another.
 *
 *   pl_taglex_push(&lx, text, len);
 *   while ((ev = pl_taglex_next(&lx, mask_for(state), final, &tag, &s, &n)) != PL_TAGLEX_NONE)
 *       ... TEXT: s[0..n) valid until the next push; TAG: tags[tag] ...
 */
#ifndef PL_TAGLEX_H
#define PL_TAGLEX_H

#include <stddef.h>
#include <stdint.h>
#include "pl.h"

#define PL_TAGLEX_MAX_TAGS 16

enum pl_taglex_event {
    PL_TAGLEX_NONE = 0,   /* nothing more now (a partial tag may be held) */
    PL_TAGLEX_TEXT,       /* plain text */
    PL_TAGLEX_TAG,        /* one whole active tag */
};

typedef struct pl_taglex {
    const char *const *tags;
    size_t ntags;
    size_t lens[PL_TAGLEX_MAX_TAGS];
    pl_buf pend;          /* pushed text not yet reported */
    size_t pos;           /* read position in pend */
} pl_taglex;

/* tags: an array that outlives the lexer. */
void pl_taglex_init(pl_taglex *lx, const char *const *tags, size_t ntags);
void pl_taglex_free(pl_taglex *lx);
void pl_taglex_push(pl_taglex *lx, const char *s, size_t n);
/* Next event for the active tags in mask (bit i = tags[i]). final: report a
 * held partial tag as text (end of input). */
int  pl_taglex_next(pl_taglex *lx, uint32_t mask, int final, int *tag, const char **s, size_t *n);
/* Bytes pushed but not reported yet. */
static inline size_t pl_taglex_pending(const pl_taglex *lx) { return lx->pend.len - lx->pos; }

#endif
