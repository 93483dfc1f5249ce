/* wire.h — one pipeline message off the wire: framing, limits, decoding.
 *
 * msgpack-c 4.0 (Debian 12's libmsgpack-dev 4.0.0) cannot tell where a
 * message ends without decoding all of it, decodes at most 32 levels of
 * nesting (MSGPACK_EMBED_STACK_SIZE is compiled into libmsgpackc.so; a
 * deeper message fails as if memory ran out) and allocates a container's
 * slots from its declared count before the elements arrive. A stage reading
 * an unframed byte stream needs all three handled, so reading a message is
 * two steps:
 *
 *   1. pl_wire_scan walks the msgpack headers of one message as its bytes
 *      arrive. It builds no values and holds O(depth) state, so it also walks
 *      messages that are too large to hold: it knows from the declared
 *      lengths that a message is oversized, where it ends (skip exactly that
 *      many bytes: nothing inside is ever read as a message of its own), how
 *      deep it nests, and the `id` of its root map (so the request can be
 *      answered with an error). It fails on bytes no writer of this protocol
 *      produces: a root that is not a map, a root key that is not a string,
 *      the never-used byte 0xc1, nesting beyond PL_WIRE_HARD_DEPTH.
 *   2. pl_wire_decode turns a complete, accepted message into a
 *      msgpack_object with msgpack-c's own parser: msgpack/unpack_template.h
 *      (installed by libmsgpack-dev for this purpose) instantiated here with
 *      a PL_MSG_MAX_DEPTH-level stack. Strings point into the message bytes.
 *
 * Nesting (docs/protocol.md §1): a request body may nest PL_JSON_MAX_DEPTH
 * levels (the gateway's JSON parser and glm-tokenize enforce it); a message
 * may nest PL_MSG_MAX_DEPTH = PL_JSON_MAX_DEPTH + 8 levels, room for the
 * envelope around client JSON (request → body is one level, start → context
 * → tools two). */
#ifndef PL_WIRE_H
#define PL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "json.h"
#include "msg.h"

#define PL_MSG_MAX_DEPTH   (PL_JSON_MAX_DEPTH + 8)   /* containers, the root map counts as 1 */
#define PL_WIRE_HARD_DEPTH 1024                     /* framing is tracked this deep; deeper is not a message */

enum pl_wire_status {
    PL_WIRE_MORE = 0,   /* every byte given was consumed; the message continues */
    PL_WIRE_DONE = 1,   /* the message ended; *used bytes were consumed */
    PL_WIRE_BAD  = 2,   /* not a message of this protocol (info.bad says why) */
};

typedef struct pl_wire_info {
    uint64_t    len;        /* bytes consumed so far (the whole message once DONE) */
    uint32_t    depth;      /* deepest nesting seen (root map = 1) */
    bool        oversized;  /* declared lengths exceed max_bytes (known before the bytes arrive) */
    bool        too_deep;   /* nests deeper than PL_MSG_MAX_DEPTH */
    bool        id_key;     /* the root map has an "id" key: a message (framing trusted), valid or not */
    bool        has_id;     /* ... and its value is a string of 1..PL_MSG_ID_MAX bytes */
    char        id[PL_MSG_ID_MAX];
    size_t      idlen;
    const char *bad;        /* PL_WIRE_BAD: a static reason */
} pl_wire_info;

typedef struct pl_wire_scan pl_wire_scan;

/* messages: check what the protocol requires of a message (a root map with
 * string keys); false frames any msgpack object (glm-msg unpack). */
int  pl_wire_scan_new(pl_wire_scan **out, size_t max_bytes, bool messages);
void pl_wire_scan_free(pl_wire_scan *s);
/* Start a new message. */
void pl_wire_scan_reset(pl_wire_scan *s);
/* Feed the next bytes of the current message; *used says how many were
 * taken (all of them for MORE; up to the message's end for DONE; up to and
 * including the offending byte for BAD). After DONE or BAD, reset. */
int  pl_wire_scan_feed(pl_wire_scan *s, const char *p, size_t n, size_t *used);
const pl_wire_info *pl_wire_scan_info(const pl_wire_scan *s);

/* A message is accepted (decoded and handed to the stage) when it is DONE,
 * neither oversized nor too deep. */
static inline bool pl_wire_acceptable(const pl_wire_info *i) { return !i->oversized && !i->too_deep; }

/* Human text for a rejected message (oversized or too deep) whose id is
 * known: what the `error` answer says. */
void pl_wire_reject_text(const pl_wire_info *i, size_t max_bytes, char *out, size_t outlen);

typedef struct pl_wire_decoder pl_wire_decoder;

int  pl_wire_decoder_new(pl_wire_decoder **out);
void pl_wire_decoder_free(pl_wire_decoder *d);
/* Decode one complete message of len bytes (scanned DONE and acceptable).
 * *obj stays valid until the next decode, and as long as data does. */
int  pl_wire_decode(pl_wire_decoder *d, const char *data, size_t len, msgpack_object *obj);

/* A message that arrives whole (one ZeroMQ frame), scanned with s and
 * decoded with d in one call. PL_OK with *obj. Otherwise *why is a static
 * reason for the log and pl_wire_scan_info(s) tells the rest:
 * PL_ERR_RANGE when the message's id is known and it could be answered
 * (too large or too deep: pl_wire_acceptable is false; else well framed
 * but out of memory), PL_ERR_PARSE when the bytes are not a message of
 * this protocol (or carry no string id while require_id). */
int  pl_wire_take_frame(pl_wire_scan *s, pl_wire_decoder *d, const char *data, size_t len, bool require_id,
                        msgpack_object *obj, const char **why);

#endif
