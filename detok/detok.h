/* detok.h — incremental detokenization and stop strings for one choice.
 *
 * dtk_stops holds a request's stop strings with their KMP failure tables;
 * dtk_choice turns a stream of token ids into text deltas:
 *   - work per call is proportional to the new tokens (never a re-decode);
 *   - bytes of an incomplete UTF-8 sequence are held until it completes;
 *   - special tokens are dropped when skip_special is set (HF semantics:
 *     only added tokens marked special; <think>, <tool_call>... stay);
 *   - text that could still become a stop string is held until decided; a
 *     match ends the choice (vLLM: the first stop string in list order that
 *     occurs, excluded unless include_stop). */
#ifndef DTK_DETOK_H
#define DTK_DETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pl.h"
#include "tokenizer/tokenizer.h"

#define DTK_MAX_STOPS      64
#define DTK_MAX_STOP_BYTES 4096

typedef struct dtk_stops {
    size_t  n;
    char   *str[DTK_MAX_STOPS];
    size_t  len[DTK_MAX_STOPS];
    int32_t *fail[DTK_MAX_STOPS];   /* KMP failure function, [len] */
} dtk_stops;

void dtk_stops_init(dtk_stops *s);
int  dtk_stops_add(dtk_stops *s, const char *str, size_t len);   /* empty strings are ignored */
void dtk_stops_free(dtk_stops *s);

typedef struct dtk_choice {
    const dtk_stops *stops;
    bool     skip_special;
    bool     include_stop;
    bool     done;          /* finished: further tokens are ignored */
    uint8_t  utf8[4];       /* bytes of an incomplete UTF-8 sequence */
    size_t   n_utf8;
    pl_buf   held;          /* decoded text that may be the start of a stop string */
    int32_t *state;         /* [stops->n] KMP state: matched prefix length */
    size_t   n_tokens;      /* tokens fed so far */
} dtk_choice;

int  dtk_choice_init(dtk_choice *c, const dtk_stops *stops, bool skip_special, bool include_stop);
void dtk_choice_free(dtk_choice *c);

/* Feed n token ids. Appends the text that is now final to out. When a stop
 * string matched, *stop_hit is its index (else -1) and the choice is done.
 * PL_ERR_RANGE for an id outside the vocabulary (nothing appended). */
int dtk_choice_feed(dtk_choice *c, const pl_tokenizer *tk, const int32_t *ids, size_t n,
                    pl_buf *out, int *stop_hit);

/* The choice ends: append everything held back (an incomplete UTF-8 tail as
 * U+FFFD, as HF decode would) and mark it done. */
void dtk_choice_flush(dtk_choice *c, pl_buf *out);

/* One token's text as vLLM reports it in logprobs: its bytes decoded alone,
 * invalid UTF-8 replaced by U+FFFD. */
void dtk_token_text(const pl_tokenizer *tk, int32_t id, pl_buf *out);

#endif
