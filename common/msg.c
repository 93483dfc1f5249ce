/* msg.c — msgpack message helpers. */
#include "msg.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* ================================================================ reading */

static bool key_eq(const msgpack_object *k, const char *key, size_t klen)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen && memcmp(k->via.str.ptr, key, klen) == 0;
}

const msgpack_object *pl_msg_get(const msgpack_object *m, const char *key)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (key_eq(&m->via.map.ptr[i].key, key, klen)) return &m->via.map.ptr[i].val;
    return NULL;
}

static const msgpack_object *get_present(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = pl_msg_get(m, key);
    return v && v->type != MSGPACK_OBJECT_NIL ? v : NULL;
}

int pl_msg_get_str(const msgpack_object *m, const char *key, const char **s, size_t *len)
{
    const msgpack_object *v = get_present(m, key);
    if (!v) return PL_ERR_NOTFOUND;
    if (v->type != MSGPACK_OBJECT_STR) return PL_ERR_INVALID;
    *s = v->via.str.ptr;
    *len = v->via.str.size;
    return PL_OK;
}

int pl_msg_as_int(const msgpack_object *o, int64_t *v)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX) return PL_ERR_RANGE;
        *v = (int64_t)o->via.u64;
        return PL_OK;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *v = o->via.i64;
        return PL_OK;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64) || o->via.f64 != floor(o->via.f64) || fabs(o->via.f64) > 9.2e18)
            return PL_ERR_INVALID;
        *v = (int64_t)o->via.f64;
        return PL_OK;
    default:
        return PL_ERR_INVALID;
    }
}

int pl_msg_as_num(const msgpack_object *o, double *v)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *v = (double)o->via.u64; return PL_OK;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *v = (double)o->via.i64; return PL_OK;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *v = o->via.f64; return PL_OK;
    default: return PL_ERR_INVALID;
    }
}

int pl_msg_get_int(const msgpack_object *m, const char *key, int64_t *v)
{
    const msgpack_object *o = get_present(m, key);
    return o ? pl_msg_as_int(o, v) : PL_ERR_NOTFOUND;
}

int pl_msg_get_int_in(const msgpack_object *m, const char *key, int64_t lo, int64_t hi, int64_t *v)
{
    int64_t x;
    int rc = pl_msg_get_int(m, key, &x);
    if (rc) return rc;   /* NOTFOUND, INVALID, or RANGE beyond int64 */
    if (x < lo || x > hi) return PL_ERR_RANGE;
    *v = x;
    return PL_OK;
}

int pl_msg_get_num(const msgpack_object *m, const char *key, double *v)
{
    const msgpack_object *o = get_present(m, key);
    return o ? pl_msg_as_num(o, v) : PL_ERR_NOTFOUND;
}

int pl_msg_get_bool(const msgpack_object *m, const char *key, bool *v)
{
    const msgpack_object *o = get_present(m, key);
    if (!o) return PL_ERR_NOTFOUND;
    if (o->type != MSGPACK_OBJECT_BOOLEAN) return PL_ERR_INVALID;
    *v = o->via.boolean;
    return PL_OK;
}

int pl_msg_get_array(const msgpack_object *m, const char *key, const msgpack_object_array **a)
{
    const msgpack_object *o = get_present(m, key);
    if (!o) return PL_ERR_NOTFOUND;
    if (o->type != MSGPACK_OBJECT_ARRAY) return PL_ERR_INVALID;
    *a = &o->via.array;
    return PL_OK;
}

int pl_msg_get_map(const msgpack_object *m, const char *key, const msgpack_object **map)
{
    const msgpack_object *o = get_present(m, key);
    if (!o) return PL_ERR_NOTFOUND;
    if (o->type != MSGPACK_OBJECT_MAP) return PL_ERR_INVALID;
    *map = o;
    return PL_OK;
}

bool pl_msg_str_eq(const msgpack_object *o, const char *s)
{
    return o && key_eq(o, s, strlen(s));
}

bool pl_msg_type_is(const msgpack_object *m, const char *type)
{
    return pl_msg_str_eq(pl_msg_get(m, "type"), type);
}

int pl_msg_id(const msgpack_object *m, const char **id, size_t *len)
{
    int rc = pl_msg_get_str(m, "id", id, len);
    if (rc) return rc;
    if (*len == 0 || *len > PL_MSG_ID_MAX) return PL_ERR_INVALID;
    return PL_OK;
}

int pl_msg_id_derive(char *out, const char *id, size_t idlen, size_t k, size_t *outlen)
{
    char suffix[32];
    int n = snprintf(suffix, sizeof suffix, "#%zu", k);
    if (idlen > PL_MSG_ID_MAX || (size_t)n > PL_MSG_ID_MAX - idlen) return PL_ERR_TOOLONG;
    memcpy(out, id, idlen);
    memcpy(out + idlen, suffix, (size_t)n);
    *outlen = idlen + (size_t)n;
    return PL_OK;
}

/* ================================================================ writing */

void pl_msg_pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str_with_body(pk, s, n);
}

void pl_msg_pack_cstr(msgpack_packer *pk, const char *s) { pl_msg_pack_str(pk, s, strlen(s)); }

void pl_msg_pack_kv_str(msgpack_packer *pk, const char *key, const char *s, size_t n)
{
    pl_msg_pack_cstr(pk, key);
    pl_msg_pack_str(pk, s, n);
}

void pl_msg_pack_kv_cstr(msgpack_packer *pk, const char *key, const char *s)
{
    pl_msg_pack_kv_str(pk, key, s, strlen(s));
}

void pl_msg_pack_kv_int(msgpack_packer *pk, const char *key, int64_t v)
{
    pl_msg_pack_cstr(pk, key);
    msgpack_pack_int64(pk, v);
}

void pl_msg_pack_kv_double(msgpack_packer *pk, const char *key, double v)
{
    pl_msg_pack_cstr(pk, key);
    msgpack_pack_double(pk, v);
}

void pl_msg_pack_kv_bool(msgpack_packer *pk, const char *key, bool v)
{
    pl_msg_pack_cstr(pk, key);
    if (v) msgpack_pack_true(pk);
    else msgpack_pack_false(pk);
}

void pl_msg_pack_kv_nil(msgpack_packer *pk, const char *key)
{
    pl_msg_pack_cstr(pk, key);
    msgpack_pack_nil(pk);
}

void pl_msg_pack_kv_obj(msgpack_packer *pk, const char *key, const msgpack_object *v)
{
    pl_msg_pack_cstr(pk, key);
    msgpack_pack_object(pk, *v);
}

/* Which pairs of m survive: one pass over the keys, comparing lengths first
 * (skip lists are short; key lengths are computed once per call). */
#define SKIP_MAX 32
static bool skipped(const msgpack_object *k, const char *const *skip, const size_t *lens, size_t nskip)
{
    if (k->type != MSGPACK_OBJECT_STR) return false;
    for (size_t i = 0; i < nskip; i++)
        if (k->via.str.size == lens[i] && !memcmp(k->via.str.ptr, skip[i], lens[i])) return true;
    return false;
}

void pl_msg_pack_map_except(msgpack_packer *pk, const msgpack_object *m,
                            const char *const *skip, size_t nskip, uint32_t extra)
{
    size_t lens[SKIP_MAX];
    assert(nskip <= SKIP_MAX);   /* callers skip a handful of keys */
    for (size_t i = 0; i < nskip; i++) lens[i] = strlen(skip[i]);
    bool is_map = m && m->type == MSGPACK_OBJECT_MAP;
    uint32_t keep = 0;
    for (uint32_t i = 0; is_map && i < m->via.map.size; i++)
        keep += !skipped(&m->via.map.ptr[i].key, skip, lens, nskip);
    msgpack_pack_map(pk, keep + extra);
    for (uint32_t i = 0; keep && i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (skipped(&kv->key, skip, lens, nskip)) continue;
        msgpack_pack_object(pk, kv->key);
        msgpack_pack_object(pk, kv->val);
    }
}

void pl_msg_pack_error(msgpack_packer *pk, const char *id, size_t idlen, int code,
                       const char *err_type, const char *message)
{
    msgpack_pack_map(pk, 5);
    pl_msg_pack_kv_cstr(pk, "type", "error");
    pl_msg_pack_kv_str(pk, "id", id, idlen);
    pl_msg_pack_kv_int(pk, "code", code);
    pl_msg_pack_kv_cstr(pk, "err_type", err_type);
    pl_msg_pack_kv_cstr(pk, "message", message);
}
