/* detok.h — incremental detokenization, stop strings and logprob token
 * strings for one choice, exactly as vLLM 0.33.0's V1 output processor does
 * them (FastIncrementalDetokenizer over tokenizers' DecodeStream,
 * check_stop_strings, LogprobsProcessor). docs/protocol.md lists the rules.
 *
 * dtk_stops holds a request's stop strings with their KMP failure tables;
 * dtk_choice turns a stream of token ids into text deltas:
 *   - work per call is proportional to the new tokens (never a re-decode);
 *   - the decode stream releases text only when it does not end in U+FFFD
 *     (an incomplete character, or a real U+FFFD, waits for the next token);
 *     what it still holds when the choice finishes is dropped (vLLM);
 *   - unknown ids (a padded vocabulary) decode to nothing;
 *   - special tokens are dropped when skip_special is set (HF semantics:
 *     only added tokens marked special; <think>, <tool_call>... stay);
 *   - stop strings are searched once the choice has more than min_tokens
 *     tokens, in the text of the tokens past min_tokens; of the stop strings
 *     found in one step, the one whose match ENDS earliest wins, ties by list
 *     order; the tokens after the one that completes it are dropped;
 *   - with stop strings and !include_stop, the last (longest stop - 1)
 *     characters are held back until the choice finishes (vLLM's fixed
 *     hold-back, so deltas split where vLLM's do). */
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
    size_t  len[DTK_MAX_STOPS];     /* bytes */
    int32_t *fail[DTK_MAX_STOPS];   /* KMP failure function, [len] */
    size_t  max_chars;              /* the longest stop string, in characters (code points) */
} dtk_stops;

void dtk_stops_init(dtk_stops *s);
int  dtk_stops_add(dtk_stops *s, const char *str, size_t len);   /* empty strings are ignored */
void dtk_stops_free(dtk_stops *s);

/* A request's detokenization parameters (vLLM SamplingParams names). */
typedef struct dtk_params {
    bool    skip_special;     /* skip_special_tokens, default true */
    bool    spaces_between;   /* spaces_between_special_tokens, default true */
    bool    include_stop;     /* include_stop_str_in_output, default false */
    int64_t min_tokens;       /* stop strings count only in text of tokens past this many, default 0 */
} dtk_params;

void dtk_params_init(dtk_params *p);   /* the defaults */

/* The sampled ids of the last DTK_LP_CONTEXT positions that had logprobs:
 * vLLM's context for naming a token that is part of a character. */
#define DTK_LP_CONTEXT 4
typedef struct dtk_lpctx {
    int32_t id[DTK_LP_CONTEXT];   /* oldest first */
    size_t  n;
    pl_buf  full, pre, bytes;     /* scratch for dtk_token_text */
} dtk_lpctx;

void dtk_lpctx_init(dtk_lpctx *x);
void dtk_lpctx_free(dtk_lpctx *x);
void dtk_lpctx_push(dtk_lpctx *x, int32_t id);

typedef struct dtk_choice {
    const dtk_stops  *stops;
    const dtk_params *params;
    bool     done;          /* finished: further tokens are ignored */
    bool     last_added;    /* previous decoded token was an added token (spaces_between_special_tokens=false) */
    uint8_t  utf8[4];       /* the decode stream's incomplete UTF-8 sequence, after text[out..] */
    size_t   n_utf8;
    pl_buf   text;          /* [0, out): output text not yet released (hold-back); [out, len): the
                             * decode stream's pending text, not yet output (ends in U+FFFD or empty) */
    size_t   out;
    size_t   held_chars;    /* characters in text[0, out) */
    int32_t *state;         /* [stops->n] KMP state: matched prefix length */
    size_t  *offs;          /* [offs_cap] scratch: output length after each token of a step */
    size_t   offs_cap;
    int64_t  n_tokens;      /* output tokens so far (kept ones) */
    dtk_lpctx lp;           /* logprob context */
} dtk_choice;

int  dtk_choice_init(dtk_choice *c, const dtk_stops *stops, const dtk_params *params);
void dtk_choice_free(dtk_choice *c);

/* flags for dtk_choice_feed */
enum {
    DTK_FEED_FINAL      = 1,   /* the engine finished the choice with this step */
    DTK_FEED_STOP_TOKEN = 2,   /* ... with finish_reason "stop": the last id is an eos/stop_token_ids
                                * token, whose text is not output unless include_stop */
};

/* Feed one engine step of n token ids. Appends the text that is now final
 * to out; *n_kept is how many of the n ids stand (fewer when a stop string
 * completed before the last: the rest are dropped, as vLLM drops them from
 * text, token_ids, logprobs and the token count); *stop_hit is the index of
 * the stop string that finished the choice, else -1. With DTK_FEED_FINAL or
 * a stop string the choice is done and everything held back is out. Ids
 * the tokenizer does not know decode to nothing. A done choice takes no
 * more tokens (*n_kept 0). PL_ERR_NOMEM only. */
int dtk_choice_feed(dtk_choice *c, const pl_tokenizer *tk, const int32_t *ids, size_t n, unsigned flags,
                    pl_buf *out, size_t *n_kept, int *stop_hit);

/* The choice ends without a finish from the engine (the request's end came
 * first): append the held-back output text and mark it done. The decode
 * stream's incomplete tail is dropped, as at a finish. */
void dtk_choice_flush(dtk_choice *c, pl_buf *out);

/* A logprob entry's token string as vLLM reports it: the token decoded alone
 * (special tokens kept, unknown ids ""); when that ends in U+FFFD (a piece
 * of a character), vLLM's look-back: the shortest run of the last 1..4
 * context ids after which the token completes a character gives the text
 * the token completes (the earlier pieces' share included), and "" when
 * none does. Appends to out. PL_ERR_NOMEM only. */
int dtk_token_text(const pl_tokenizer *tk, dtk_lpctx *ctx, int32_t id, pl_buf *out);

#endif
