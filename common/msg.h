/* msg.h — reading and writing pipeline messages (msgpack maps, docs/protocol.md).
 *
 * Readers take a `const msgpack_object *` that stays valid until the next
 * receive on the same pl_io; copy what must outlive it. */
#ifndef PL_MSG_H
#define PL_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "pl.h"

#define PL_MSG_ID_MAX 256     /* longest accepted request id, bytes */

/* ---------------------------------------------------------------- reading */

/* Value for key in a map, NULL when absent or when m is not a map. */
const msgpack_object *pl_msg_get(const msgpack_object *m, const char *key);

/* Typed getters: PL_OK, PL_ERR_NOTFOUND (absent or nil), PL_ERR_INVALID (wrong type). */
int pl_msg_get_str(const msgpack_object *m, const char *key, const char **s, size_t *len);
int pl_msg_get_int(const msgpack_object *m, const char *key, int64_t *v);   /* ints, integral floats */
int pl_msg_get_num(const msgpack_object *m, const char *key, double *v);    /* ints or floats */
int pl_msg_get_bool(const msgpack_object *m, const char *key, bool *v);
int pl_msg_get_array(const msgpack_object *m, const char *key, const msgpack_object_array **a);
int pl_msg_get_map(const msgpack_object *m, const char *key, const msgpack_object **map);

/* An integer field that must lie in [lo, hi]: PL_OK, PL_ERR_NOTFOUND (absent
 * or nil; *v untouched), PL_ERR_INVALID (not an integer), PL_ERR_RANGE
 * (outside [lo, hi], 2^64-1 included). The one way protocol integers with
 * bounds are read: a caller cannot mistake an out-of-range value for absent. */
int pl_msg_get_int_in(const msgpack_object *m, const char *key, int64_t lo, int64_t hi, int64_t *v);

/* The same conversions for a bare object. */
int pl_msg_as_int(const msgpack_object *o, int64_t *v);
int pl_msg_as_num(const msgpack_object *o, double *v);

bool pl_msg_str_eq(const msgpack_object *o, const char *s);     /* o is a str equal to s */
bool pl_msg_type_is(const msgpack_object *m, const char *type); /* m.type == type */

/* Request id of a message: PL_OK with a pointer into m, or an error when it
 * is missing, not a string, empty or longer than PL_MSG_ID_MAX. */
int pl_msg_id(const msgpack_object *m, const char **id, size_t *len);

/* The id of part k of a request split in several (`<id>#<k>`, protocol §3)
 * into out[PL_MSG_ID_MAX]: PL_OK, or PL_ERR_TOOLONG when it would be longer
 * than PL_MSG_ID_MAX (the maker answers the request with an error then:
 * every stage drops a message whose id is too long). */
int pl_msg_id_derive(char *out, const char *id, size_t idlen, size_t k, size_t *outlen);

/* ---------------------------------------------------------------- writing */

void pl_msg_pack_str(msgpack_packer *pk, const char *s, size_t n);
void pl_msg_pack_cstr(msgpack_packer *pk, const char *s);
/* "key": value pairs (caller has packed the map header) */
void pl_msg_pack_kv_str(msgpack_packer *pk, const char *key, const char *s, size_t n);
void pl_msg_pack_kv_cstr(msgpack_packer *pk, const char *key, const char *s);
void pl_msg_pack_kv_int(msgpack_packer *pk, const char *key, int64_t v);
void pl_msg_pack_kv_double(msgpack_packer *pk, const char *key, double v);
void pl_msg_pack_kv_bool(msgpack_packer *pk, const char *key, bool v);
void pl_msg_pack_kv_nil(msgpack_packer *pk, const char *key);
void pl_msg_pack_kv_obj(msgpack_packer *pk, const char *key, const msgpack_object *v);

/* Start a map that copies every pair of `m` whose key is not in skip[0..nskip)
 * and leaves room for `extra` more pairs, which the caller packs next. This is
 * how a stage rewrites a message while forwarding fields it does not know. */
void pl_msg_pack_map_except(msgpack_packer *pk, const msgpack_object *m,
                            const char *const *skip, size_t nskip, uint32_t extra);

/* An error message (protocol §3 `error`). */
void pl_msg_pack_error(msgpack_packer *pk, const char *id, size_t idlen, int code,
                       const char *err_type, const char *message);

#endif
