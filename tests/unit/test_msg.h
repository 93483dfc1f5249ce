/* test_msg.h — unit-test helper: a message written as JSON text, turned
 * into the msgpack object a stage would receive. The object points into
 * the message's own buffer, so it lives until test_msg_free. Also a JSON
 * file reader for goldens. */
#ifndef TEST_MSG_H
#define TEST_MSG_H

#include <string.h>
#include <msgpack.h>
#include "json.h"

typedef struct test_msg {
    msgpack_sbuffer  sb;
    msgpack_unpacked u;
} test_msg;

/* NULL (and a message on stderr) when json is not valid JSON. */
static inline const msgpack_object *test_msg_parse(test_msg *m, const char *json)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_unpacked_init(&m->u);
    cJSON *v;
    char err[128];
    if (pl_json_parse(&v, json, strlen(json), err, sizeof err)) {
        fprintf(stderr, "  bad test JSON: %s\n", err);
        return NULL;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &m->sb, msgpack_sbuffer_write);
    pl_json_pack(&pk, v);
    cJSON_Delete(v);
    if (msgpack_unpack_next(&m->u, m->sb.data, m->sb.size, NULL) != MSGPACK_UNPACK_SUCCESS) return NULL;
    return &m->u.data;
}

/* A JSON file (goldens) parsed, or NULL. */
static inline cJSON *test_json_file(const char *path)
{
    pl_buf b;
    pl_buf_init(&b);
    cJSON *j = pl_file_read(path, &b, 256u << 20, NULL, 0) ? NULL : cJSON_ParseWithLength(b.data, b.len);
    pl_buf_free(&b);
    return j;
}

static inline void test_msg_free(test_msg *m)
{
    msgpack_unpacked_destroy(&m->u);
    msgpack_sbuffer_destroy(&m->sb);
}

#endif
