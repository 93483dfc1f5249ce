/* wire.c — message framing (a header walk) and decoding (msgpack-c's parser
 * with a deeper stack). See wire.h for why both exist. */

/* The decoder's stack: must be set before msgpack/unpack_define.h is read. */
#include "json.h"
#define MSGPACK_EMBED_STACK_SIZE (PL_JSON_MAX_DEPTH + 8)
#include <msgpack/unpack_define.h>

#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(MSGPACK_EMBED_STACK_SIZE == PL_MSG_MAX_DEPTH, "decoder stack = message depth limit");

/* ================================================================ scan */

struct pl_wire_scan {
    size_t       max_bytes;
    bool         messages;    /* protocol messages only (root map, string keys) */
    uint64_t     payload;     /* str/bin/ext body bytes still to pass */
    uint8_t      hdr[9];      /* a header being gathered (split across feeds) */
    uint8_t      hn, hneed;
    uint32_t     cur;         /* open containers; left[cur] is the level being read */
    uint64_t     left[PL_WIRE_HARD_DEPTH + 1];   /* items still to come per level; left[0]: the root */
    uint64_t     root_items;  /* items of the root container (2 * pairs of a map) */
    uint8_t      root_hdr;    /* its first byte */
    /* root-map capture: the key being read, then the "id" value */
    enum { CAP_NONE, CAP_KEY, CAP_ID } cap;
    char         key[3];      /* enough to recognise "id" */
    uint64_t     keylen, caplen;
    bool         key_is_id, id_seen;
    pl_wire_info info;
};

int pl_wire_scan_new(pl_wire_scan **out, size_t max_bytes, bool messages)
{
    pl_wire_scan *s = calloc(1, sizeof *s);
    if (!s) return PL_ERR_NOMEM;
    s->max_bytes = max_bytes;
    s->messages = messages;
    pl_wire_scan_reset(s);
    *out = s;
    return PL_OK;
}

void pl_wire_scan_free(pl_wire_scan *s) { free(s); }

void pl_wire_scan_reset(pl_wire_scan *s)
{
    s->payload = 0;
    s->hn = s->hneed = 0;
    s->cur = 0;
    s->left[0] = 1;
    s->root_items = 0;
    s->root_hdr = 0;
    s->cap = CAP_NONE;
    s->keylen = s->caplen = 0;
    s->key_is_id = s->id_seen = false;
    memset(&s->info, 0, sizeof s->info);
}

const pl_wire_info *pl_wire_scan_info(const pl_wire_scan *s) { return &s->info; }

/* Header length from its first byte (msgpack spec "formats"); 0 for 0xc1. */
static uint8_t header_len(uint8_t b)
{
    if (b <= 0xbf || b >= 0xe0) return 1;   /* fixint, fixmap, fixarray, fixstr, negative fixint */
    static const uint8_t len[32] = {
        /* c0 nil */ 1, /* c1 */ 0, /* c2 c3 bool */ 1, 1,
        /* c4-c6 bin 8/16/32 */ 2, 3, 5, /* c7-c9 ext 8/16/32 (+type) */ 3, 4, 6,
        /* ca cb float */ 5, 9, /* cc-cf uint */ 2, 3, 5, 9, /* d0-d3 int */ 2, 3, 5, 9,
        /* d4-d8 fixext (marker + type) */ 2, 2, 2, 2, 2, /* d9-db str */ 2, 3, 5,
        /* dc dd array */ 3, 5, /* de df map */ 3, 5,
    };
    return len[b - 0xc0];
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static bool is_map(uint8_t b) { return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf; }
static bool is_str(uint8_t b) { return (b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb); }

/* Objects still to be read beyond the ones open now would need at least
 * one byte each: a declared count that cannot fit marks the message
 * oversized at once (a 5-byte header may claim 2^32 elements). */
static void check_size(pl_wire_scan *s, uint64_t more)
{
    if (s->info.len + more > s->max_bytes) s->info.oversized = true;
}

/* One object of the current level is complete: close every container it
 * completes. */
static void item_done(pl_wire_scan *s, int *status)
{
    if (s->cap == CAP_KEY) s->key_is_id = s->keylen == 2 && !memcmp(s->key, "id", 2);
    else if (s->cur == 1) s->key_is_id = false;   /* a root value (or a key that is not a string) ended */
    if (s->cap == CAP_ID) s->info.has_id = s->caplen >= 1 && s->caplen <= PL_MSG_ID_MAX;
    s->cap = CAP_NONE;
    while (--s->left[s->cur] == 0) {
        if (s->cur == 0) { *status = PL_WIRE_DONE; return; }
        s->cur--;
    }
}

/* A complete header in s->hdr. */
static int on_header(pl_wire_scan *s, int *status)
{
    const uint8_t *h = s->hdr;
    uint8_t b = h[0];
    bool in_root_map = s->cur == 1 && is_map(s->root_hdr);
    bool root_key = in_root_map && (s->root_items - s->left[1]) % 2 == 0;
    bool root_val = in_root_map && !root_key;
    if (s->cur == 0) s->root_hdr = b;
    if (s->messages && s->cur == 0 && !is_map(b)) { s->info.bad = "not a map"; return PL_WIRE_BAD; }
    if (s->messages && root_key && !is_str(b)) { s->info.bad = "a key of the message is not a string"; return PL_WIRE_BAD; }
    bool first_id = root_val && s->key_is_id && !s->id_seen;   /* the first "id" counts, as pl_msg_get finds it */
    if (first_id) s->id_seen = s->info.id_key = true;

    uint64_t count = 0, body = 0;
    bool container = false, map = false;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3 || (b >= 0xca && b <= 0xd3)) {
        item_done(s, status);   /* scalars: the header is everything */
        return PL_WIRE_MORE;
    } else if (b <= 0x8f) { container = map = true; count = b & 0x0f; }
    else if (b <= 0x9f) { container = true; count = b & 0x0f; }
    else if (b <= 0xbf) body = b & 0x1f;
    else if (b >= 0xc4 && b <= 0xc6) body = be(h + 1, s->hneed - 1);
    else if (b >= 0xc7 && b <= 0xc9) body = be(h + 1, s->hneed - 2);
    else if (b >= 0xd4 && b <= 0xd8) body = 1u << (b - 0xd4);
    else if (b >= 0xd9 && b <= 0xdb) body = be(h + 1, s->hneed - 1);
    else if (b == 0xdc || b == 0xdd) { container = true; count = be(h + 1, s->hneed - 1); }
    else { container = map = true; count = be(h + 1, s->hneed - 1); }   /* de, df */

    if (container) {
        uint64_t items = map ? 2 * count : count;
        check_size(s, items);
        /* an empty container is a level too (as msgpack-c's stack and JSON count it) */
        if (s->cur + 1 > PL_WIRE_HARD_DEPTH) { s->info.bad = "nested beyond the framing limit"; return PL_WIRE_BAD; }
        if (s->cur + 1 > s->info.depth) s->info.depth = s->cur + 1;
        if (s->cur + 1 > PL_MSG_MAX_DEPTH) s->info.too_deep = true;
        if (items == 0) { item_done(s, status); return PL_WIRE_MORE; }
        s->cur++;
        s->left[s->cur] = items;
        if (s->cur == 1) s->root_items = items;
        return PL_WIRE_MORE;
    }
    check_size(s, body);
    if (root_key) { s->cap = CAP_KEY; s->keylen = body; }
    else if (first_id && is_str(b)) { s->cap = CAP_ID; s->caplen = body; }
    s->payload = body;
    if (!body) item_done(s, status);
    return PL_WIRE_MORE;
}

int pl_wire_scan_feed(pl_wire_scan *s, const char *p, size_t n, size_t *used)
{
    const uint8_t *u = (const uint8_t *)p;
    size_t i = 0;
    int status = PL_WIRE_MORE;
    while (i < n && status == PL_WIRE_MORE) {
        if (s->payload) {
            size_t k = s->payload < n - i ? (size_t)s->payload : n - i;
            uint64_t at = (s->cap == CAP_KEY ? s->keylen : s->caplen) - s->payload;   /* offset in the body */
            if (s->cap == CAP_KEY && at < sizeof s->key)
                memcpy(s->key + at, p + i, k < sizeof s->key - at ? k : sizeof s->key - at);
            else if (s->cap == CAP_ID && at < sizeof s->info.id)
                memcpy(s->info.id + at, p + i, k < sizeof s->info.id - at ? k : sizeof s->info.id - at);
            s->payload -= k;
            s->info.len += k;
            i += k;
            if (!s->payload) {
                if (s->cap == CAP_ID) s->info.idlen = s->caplen <= PL_MSG_ID_MAX ? (size_t)s->caplen : 0;
                item_done(s, &status);
            }
            continue;
        }
        uint8_t b = u[i];
        if (s->hn == 0) {
            s->hneed = header_len(b);
            if (!s->hneed) {
                s->info.bad = "byte 0xc1 (never used by msgpack)";
                *used = i + 1;
                s->info.len++;
                return PL_WIRE_BAD;
            }
            if (n - i >= s->hneed) {   /* the whole header is here: take it at once */
                memcpy(s->hdr, p + i, s->hneed);
                s->info.len += s->hneed;
                i += s->hneed;
                int rc = on_header(s, &status);
                if (rc == PL_WIRE_BAD) { *used = i; return rc; }
                continue;
            }
        }
        s->hdr[s->hn++] = b;
        s->info.len++;
        i++;
        if (s->hn == s->hneed) {
            s->hn = 0;
            int rc = on_header(s, &status);
            if (rc == PL_WIRE_BAD) { *used = i; return rc; }
        }
    }
    *used = i;
    return status;
}

void pl_wire_reject_text(const pl_wire_info *i, size_t max_bytes, char *out, size_t outlen)
{
    if (i->oversized)
        snprintf(out, outlen, "message larger than this stage's limit of %zu bytes (--max-message-bytes)", max_bytes);
    else
        snprintf(out, outlen, "message nested deeper than %d levels (request bodies may nest at most %d levels of JSON)",
                 PL_MSG_MAX_DEPTH, PL_JSON_MAX_DEPTH);
}

/* ================================================================ decode */

/* msgpack-c's parser state machine, instantiated with our callbacks. The
 * callbacks build msgpack_objects in a zone the way libmsgpackc's own do,
 * with one more guard: a container's declared count is checked against the
 * bytes the message really has left before its slots are allocated. */

typedef struct {
    msgpack_zone *z;
    size_t        len;        /* message length: no container can hold more items */
} wire_user;

#define msgpack_unpack_struct(name)      struct wire_unpack##name
#define msgpack_unpack_func(ret, name)   static ret wire_unpack##name
#define msgpack_unpack_callback(name)    wire_cb##name
#define msgpack_unpack_object            msgpack_object
#define msgpack_unpack_user              wire_user

static inline msgpack_object wire_cb_root(wire_user *u) { (void)u; msgpack_object o = {0}; o.type = MSGPACK_OBJECT_NIL; return o; }

static inline int wire_cb_uint64(wire_user *u, uint64_t d, msgpack_object *o)
{
    (void)u;
    o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    o->via.u64 = d;
    return 0;
}
static inline int wire_cb_uint8(wire_user *u, uint8_t d, msgpack_object *o) { return wire_cb_uint64(u, d, o); }
static inline int wire_cb_uint16(wire_user *u, uint16_t d, msgpack_object *o) { return wire_cb_uint64(u, d, o); }
static inline int wire_cb_uint32(wire_user *u, uint32_t d, msgpack_object *o) { return wire_cb_uint64(u, d, o); }

/* Non-negative values of signed formats are POSITIVE_INTEGER, as msgpack-c
 * reports them (readers test the type, not the wire format). */
static inline int wire_cb_int64(wire_user *u, int64_t d, msgpack_object *o)
{
    (void)u;
    if (d >= 0) { o->type = MSGPACK_OBJECT_POSITIVE_INTEGER; o->via.u64 = (uint64_t)d; }
    else { o->type = MSGPACK_OBJECT_NEGATIVE_INTEGER; o->via.i64 = d; }
    return 0;
}
static inline int wire_cb_int8(wire_user *u, int8_t d, msgpack_object *o) { return wire_cb_int64(u, d, o); }
static inline int wire_cb_int16(wire_user *u, int16_t d, msgpack_object *o) { return wire_cb_int64(u, d, o); }
static inline int wire_cb_int32(wire_user *u, int32_t d, msgpack_object *o) { return wire_cb_int64(u, d, o); }

static inline int wire_float(msgpack_object *o, msgpack_object_type t, double d)
{
    o->type = t;
    o->via.f64 = d;
    return 0;
}
static inline int wire_cb_float(wire_user *u, float d, msgpack_object *o) { (void)u; return wire_float(o, MSGPACK_OBJECT_FLOAT32, d); }
static inline int wire_cb_double(wire_user *u, double d, msgpack_object *o) { (void)u; return wire_float(o, MSGPACK_OBJECT_FLOAT64, d); }
static inline int wire_cb_nil(wire_user *u, msgpack_object *o) { (void)u; o->type = MSGPACK_OBJECT_NIL; return 0; }
static inline int wire_bool(msgpack_object *o, bool v)
{
    o->type = MSGPACK_OBJECT_BOOLEAN;
    o->via.boolean = v;
    return 0;
}
static inline int wire_cb_true(wire_user *u, msgpack_object *o) { (void)u; return wire_bool(o, true); }
static inline int wire_cb_false(wire_user *u, msgpack_object *o) { (void)u; return wire_bool(o, false); }

static inline int wire_cb_array(wire_user *u, unsigned int n, msgpack_object *o)
{
    o->type = MSGPACK_OBJECT_ARRAY;
    o->via.array.size = 0;
    o->via.array.ptr = NULL;
    if (!n) return 0;
    if (n > u->len) return MSGPACK_UNPACK_PARSE_ERROR;   /* each element is at least one byte */
    o->via.array.ptr = msgpack_zone_malloc(u->z, (size_t)n * sizeof(msgpack_object));
    return o->via.array.ptr ? 0 : MSGPACK_UNPACK_NOMEM_ERROR;
}
static inline int wire_cb_array_item(wire_user *u, msgpack_object *c, msgpack_object o)
{
    (void)u;
    c->via.array.ptr[c->via.array.size++] = o;
    return 0;
}

static inline int wire_cb_map(wire_user *u, unsigned int n, msgpack_object *o)
{
    o->type = MSGPACK_OBJECT_MAP;
    o->via.map.size = 0;
    o->via.map.ptr = NULL;
    if (!n) return 0;
    if (n > u->len / 2) return MSGPACK_UNPACK_PARSE_ERROR;
    o->via.map.ptr = msgpack_zone_malloc(u->z, (size_t)n * sizeof(msgpack_object_kv));
    return o->via.map.ptr ? 0 : MSGPACK_UNPACK_NOMEM_ERROR;
}
static inline int wire_cb_map_item(wire_user *u, msgpack_object *c, msgpack_object k, msgpack_object v)
{
    (void)u;
    c->via.map.ptr[c->via.map.size].key = k;
    c->via.map.ptr[c->via.map.size].val = v;
    c->via.map.size++;
    return 0;
}

/* Bodies point into the message (never NULL, even when empty). */
static inline int wire_body(msgpack_object *o, msgpack_object_type t, const char *p, unsigned int l)
{
    o->type = t;
    if (t == MSGPACK_OBJECT_STR) { o->via.str.ptr = p; o->via.str.size = l; }
    else { o->via.bin.ptr = p; o->via.bin.size = l; }
    return 0;
}
static inline int wire_cb_str(wire_user *u, const char *b, const char *p, unsigned int l, msgpack_object *o)
{
    (void)u; (void)b;
    return wire_body(o, MSGPACK_OBJECT_STR, p, l);
}
static inline int wire_cb_bin(wire_user *u, const char *b, const char *p, unsigned int l, msgpack_object *o)
{
    (void)u; (void)b;
    return wire_body(o, MSGPACK_OBJECT_BIN, p, l);
}
static inline int wire_cb_ext(wire_user *u, const char *b, const char *p, unsigned int l, msgpack_object *o)
{
    (void)u; (void)b;
    if (l == 0) return MSGPACK_UNPACK_PARSE_ERROR;   /* the type byte is part of l */
    o->type = MSGPACK_OBJECT_EXT;
    o->via.ext.type = (int8_t)p[0];
    o->via.ext.ptr = p + 1;
    o->via.ext.size = l - 1;
    return 0;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <msgpack/unpack_template.h>
#pragma GCC diagnostic pop

struct pl_wire_decoder {
    msgpack_zone z;
    struct wire_unpack_context ctx;
};

int pl_wire_decoder_new(pl_wire_decoder **out)
{
    pl_wire_decoder *d = calloc(1, sizeof *d);
    if (!d) return PL_ERR_NOMEM;
    if (!msgpack_zone_init(&d->z, 64 * 1024)) { free(d); return PL_ERR_NOMEM; }
    *out = d;
    return PL_OK;
}

void pl_wire_decoder_free(pl_wire_decoder *d)
{
    if (!d) return;
    msgpack_zone_destroy(&d->z);
    free(d);
}

int pl_wire_decode(pl_wire_decoder *d, const char *data, size_t len, msgpack_object *obj)
{
    msgpack_zone_clear(&d->z);
    wire_unpack_init(&d->ctx);
    d->ctx.user.z = &d->z;
    d->ctx.user.len = len;
    size_t off = 0;
    int rc = wire_unpack_execute(&d->ctx, data, len, &off);
    if (rc == 1 && off == len) {
        *obj = wire_unpack_data(&d->ctx);
        return PL_OK;
    }
    return rc == MSGPACK_UNPACK_NOMEM_ERROR ? PL_ERR_NOMEM : PL_ERR_PARSE;
}

/* ================================================================ whole frames */

int pl_wire_take_frame(pl_wire_scan *s, pl_wire_decoder *d, const char *data, size_t len, bool require_id,
                       msgpack_object *obj, const char **why)
{
    size_t used = 0;
    pl_wire_scan_reset(s);
    int st = pl_wire_scan_feed(s, data, len, &used);
    const pl_wire_info *in = pl_wire_scan_info(s);
    bool whole = st == PL_WIRE_DONE && used == len;
    *why = NULL;
    if (whole && (in->has_id || !require_id) && pl_wire_acceptable(in) && pl_wire_decode(d, data, len, obj) == PL_OK)
        return PL_OK;
    *why = st == PL_WIRE_BAD ? in->bad : st == PL_WIRE_MORE ? "truncated"
         : used != len ? "trailing bytes after the message" : !in->has_id ? "no string id"
         : in->oversized ? "too large" : in->too_deep ? "nested too deep" : "out of memory";
    return in->has_id && (!pl_wire_acceptable(in) || whole) ? PL_ERR_RANGE : PL_ERR_PARSE;
}
