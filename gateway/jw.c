/* jw.c — JSON writing straight into byte buffers. */
#include "gw_int.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "pyjson.h"

void gw_jw_str(pl_buf *b, const char *s, size_t n) { pl_pyjson_write_string(b, s ? s : "", s ? n : 0, 0); }

void gw_jw_cstr(pl_buf *b, const char *s) { gw_jw_str(b, s, s ? strlen(s) : 0); }

void gw_jw_int(pl_buf *b, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%" PRId64, v);
    pl_buf_append(b, t, (size_t)n);
}

void gw_jw_double(pl_buf *b, double d)
{
    if (!isfinite(d)) pl_buf_puts(b, "null");   /* not JSON; vLLM clamps the -inf logprobs before */
    else pl_pyjson_write_double(b, d);
}

const char *gw_mp_str(const msgpack_object *o, size_t *len)
{
    if (!o || o->type != MSGPACK_OBJECT_STR) { *len = 0; return NULL; }
    *len = o->via.str.size;
    return o->via.str.ptr;
}

/* Depth is bounded by the msgpack reader (its own limit) and by the stages
 * that made the message; recursion mirrors that structure. */
void gw_jw_msgpack(pl_buf *b, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: pl_buf_puts(b, "null"); break;
    case MSGPACK_OBJECT_BOOLEAN: pl_buf_puts(b, o->via.boolean ? "true" : "false"); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: {
        char t[24];
        int n = snprintf(t, sizeof t, "%" PRIu64, o->via.u64);
        pl_buf_append(b, t, (size_t)n);
        break;
    }
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: gw_jw_int(b, o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: gw_jw_double(b, o->via.f64); break;
    case MSGPACK_OBJECT_STR: gw_jw_str(b, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: gw_jw_str(b, o->via.bin.ptr, o->via.bin.size); break;
    case MSGPACK_OBJECT_ARRAY:
        pl_buf_putc(b, '[');
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) pl_buf_putc(b, ',');
            gw_jw_msgpack(b, &o->via.array.ptr[i]);
        }
        pl_buf_putc(b, ']');
        break;
    case MSGPACK_OBJECT_MAP:
        pl_buf_putc(b, '{');
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i) pl_buf_putc(b, ',');
            if (kv->key.type == MSGPACK_OBJECT_STR) gw_jw_msgpack(b, &kv->key);
            else {   /* JSON keys are strings: write the key's JSON text as one */
                pl_buf k;
                pl_buf_init(&k);
                gw_jw_msgpack(&k, &kv->key);
                gw_jw_str(b, k.data, k.len);
                pl_buf_free(&k);
            }
            pl_buf_putc(b, ':');
            gw_jw_msgpack(b, &kv->val);
        }
        pl_buf_putc(b, '}');
        break;
    default: pl_buf_puts(b, "null"); break;   /* ext */
    }
}

size_t gw_utf8_len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
    return k;
}

void gw_jw_error(pl_buf *b, int code, const char *type, const char *param, size_t paramlen,
                 const char *msg, size_t msglen)
{
    pl_buf_puts(b, "{\"error\":{\"message\":");
    gw_jw_str(b, msg, msglen);
    pl_buf_puts(b, ",\"type\":");
    gw_jw_cstr(b, type);
    pl_buf_puts(b, ",\"param\":");
    if (param) gw_jw_str(b, param, paramlen);
    else pl_buf_puts(b, "null");
    pl_buf_puts(b, ",\"code\":");
    gw_jw_int(b, code);
    pl_buf_puts(b, "}}");
}
