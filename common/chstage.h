/* chstage.h — the request/choice bookkeeping every text-side stage shares.
 *
 * A stage downstream of the engine keeps state per request (made from the
 * `start` message's context) and per choice (made when the first message of
 * that `index` arrives). This module owns that bookkeeping and the protocol
 * rules around it (docs/protocol.md §1, §3):
 *
 *   start        -> ops.req_new(context); forwarded (by ops.on_start when set; an
 *                   error instead when req_new fails)
 *   INPUT type   -> checks `index` (0 <= index < n) and `finish_reason`;
 *                   ops.on_input for a live choice; the choice is freed after
 *                   the message that carries finish_reason
 *   end          -> ops.on_flush for choices that never got finish_reason,
 *                   then the request is freed; forwarded (by ops.on_end when set)
 *   abort        -> frees the request (or the one choice with `index`); forwarded
 *   error        -> frees the request; forwarded
 *   anything else is forwarded unchanged. INPUT and end for unknown ids (and
 *   INPUT for a finished choice) are dropped quietly.
 *   EOF, or the end of a drain after SIGTERM (pl_chstage_run): every live
 *                   choice lets out what it holds, then every live request
 *                   gets an `error` 503 (it can never finish here)
 *
 * A callback that finds a bad field returns an error code with text; the
 * request then gets an `error` message and its state is dropped. */
#ifndef PL_CHSTAGE_H
#define PL_CHSTAGE_H

#include <stdbool.h>
#include <stdint.h>
#include "stage.h"

#define PL_CHSTAGE_MAX_N 4096   /* largest accepted `n` */

typedef struct pl_chstage_ops {
    const char *input_type;     /* the per-choice message this stage consumes: "delta" or "tokens" */
    /* ctx: the start message's context map (NULL when absent). */
    int  (*req_new)(void **req, const msgpack_object *ctx, char *err, size_t errlen);
    void (*req_free)(void *req);
    int  (*choice_new)(void *req, void **ch);
    void (*choice_free)(void *ch);
    /* One INPUT message for a live choice; final: it carries finish_reason. */
    int  (*on_input)(pl_stage *st, void *req, void *ch, const msgpack_object *msg, bool final,
                     char *err, size_t errlen);
    /* The request ended (end or EOF) while this choice had no finish_reason:
     * emit whatever it still holds. May be NULL. */
    void (*on_flush)(pl_stage *st, void *req, void *ch, const char *id, size_t idlen, uint32_t index);
    /* The request's `end` (after on_flush): the callback sends it on, changed
     * or not. May be NULL: end is forwarded unchanged. */
    void (*on_end)(pl_stage *st, void *req, const msgpack_object *msg);
    /* The request's `start` (after req_new): the callback sends it on,
     * changed or not. May be NULL: start is forwarded unchanged. */
    void (*on_start)(pl_stage *st, void *req, const msgpack_object *msg);
} pl_chstage_ops;

typedef struct pl_chstage pl_chstage;

int  pl_chstage_new(pl_chstage **out, const pl_chstage_ops *ops);
void pl_chstage_free(pl_chstage *cs);
/* pl_stage_serve with this bookkeeping: `start` is the intake refused while
 * the stage drains; at EOF or at the end of a drain every live choice lets
 * out what it holds (ops.on_flush) and every live request is answered with
 * an `error` 503 (stage.h "Stopping"). */
int  pl_chstage_run(pl_chstage *cs, pl_stage *st);
/* pl_stage_fn / pl_stage_drain_fn shaped, for tests: cs as ud. */
void pl_chstage_on_msg(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *cs);
void pl_chstage_on_drain(pl_stage *st, void *cs);
size_t pl_chstage_live(const pl_chstage *cs);   /* requests with state */

/* Read the `text` field of a delta: PL_OK (absent = ""), or PL_ERR_INVALID. */
int pl_chstage_delta_text(const msgpack_object *msg, const char **s, size_t *n, char *err, size_t errlen);

/* Start a new `delta` message {type, id, index, + extra pairs the caller
 * packs next}; finish with pl_stage_end. For on_flush callbacks. */
msgpack_packer *pl_chstage_begin_delta(pl_stage *st, const char *id, size_t idlen, uint32_t index, uint32_t extra);

/* The whole main() of a text stage: `PROG [OPT NAME] [--in EP] [--out EP]`.
 * values: the accepted NAMEs, NULL-terminated, the first is the default.
 * Returns the process exit status. */
int pl_chstage_main(int argc, char **argv, const char *prog, const char *opt, const char *const *values,
                    const pl_chstage_ops *ops);

#endif
