/* engine_fx.h — unit-test fixture for the serving loop (engine/serve.h) on
 * the test model of engine_testlm.h: messages in as JSON text, every
 * message out collected as JSON, and lookups over them. Tests ONLY. */
#ifndef ENGINE_FX_H
#define ENGINE_FX_H

#include "test.h"
#include "test_msg.h"

#include <cjson/cJSON.h>

#include "engine_testlm.h"
#include "json.h"
#include "msg.h"

#define TV 97   /* test vocab */

typedef struct out_msgs {
    cJSON *list;                 /* array of every message emitted */
} out_msgs;

static inline int sink_collect(void *ud, const char *data, size_t len)
{
    out_msgs *o = ud;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int ok = msgpack_unpack_next(&u, data, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len;
    cJSON *j = NULL;
    char err[128];
    if (ok && pl_json_from_msgpack(&j, &u.data, err, sizeof err) == 0) cJSON_AddItemToArray(o->list, j);
    else fprintf(stderr, "  sink got an unreadable message\n");
    msgpack_unpacked_destroy(&u);
    return 0;
}

typedef struct fx {
    tlm       m;
    eng_lm    lm;
    eng_serve *e;
    out_msgs  out;
} fx;

/* The serve on a fresh test model with configuration c; mtp: the test
 * model's MTP mode (TLM_MTP_NONE: it has no MTP layer). */
static inline int fx_open_cfg(fx *f, const eng_serve_cfg *c, int mtp)
{
    memset(f, 0, sizeof *f);
    tlm_init(&f->m, &f->lm, TV, 512, 96);
    f->m.mtp = mtp;
    if (mtp == TLM_MTP_NONE) f->lm.mtp_forward = NULL;
    f->out.list = cJSON_CreateArray();
    char err[256];
    if (eng_serve_init(&f->e, &f->lm, c, (eng_serve_sink){ sink_collect, &f->out }, err, sizeof err)) {
        fprintf(stderr, "  %s\n", err);
        return -1;
    }
    return 0;
}

static inline void fx_cfg(eng_serve_cfg *c, int max_seqs, int max_tokens, int max_len, int n_blocks, int bs)
{
    eng_serve_cfg_defaults(c);
    c->max_num_seqs = max_seqs;
    c->max_num_batched_tokens = max_tokens;
    c->max_model_len = max_len;
    c->num_blocks = n_blocks;
    c->block_size = bs;
    c->log_stats_interval = 0;
}

static inline int fx_open(fx *f, int max_seqs, int max_tokens, int max_len, int n_blocks, int bs)
{
    eng_serve_cfg c;
    fx_cfg(&c, max_seqs, max_tokens, max_len, n_blocks, bs);
    return fx_open_cfg(f, &c, TLM_MTP_NONE);
}

static inline void fx_close(fx *f);

/* Nothing left running and every block back, then close. */
static inline void fx_close_idle(fx *f, int n_blocks)
{
    eng_serve_stats s;
    eng_serve_get_stats(f->e, &s);
    CHECK(!eng_serve_busy(f->e) && s.live_requests == 0);
    CHECK_EQ_INT(s.free_blocks, n_blocks);
    fx_close(f);
}

static inline void fx_close(fx *f)
{
    eng_serve_free(f->e);
    tlm_free(&f->m);
    cJSON_Delete(f->out.list);
}

/* Feed one message written as JSON. */
static inline void feed(fx *f, const char *json)
{
    test_msg m;
    const msgpack_object *o = test_msg_parse(&m, json);
    const char *id;
    size_t idlen;
    if (o && pl_msg_id(o, &id, &idlen) == 0) eng_serve_on_msg(f->e, o, id, idlen);
    test_msg_free(&m);
}

static inline int run_until_idle(fx *f, int max_steps)
{
    int n = 0;
    while (eng_serve_busy(f->e) && n < max_steps) { eng_serve_step(f->e); n++; }
    return n;
}

static inline const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static inline int jint(const cJSON *o, const char *k, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}

/* Tokens of (id, index) in order; returns count. finish: the finish_reason seen. */
static inline int tokens_of(const fx *f, const char *id, int index, int32_t *out, int max, const char **finish)
{
    int n = 0;
    if (finish) *finish = NULL;
    const cJSON *m;
    cJSON_ArrayForEach(m, f->out.list) {
        if (strcmp(jstr(m, "type"), "tokens") || strcmp(jstr(m, "id"), id) || jint(m, "index", -1) != index) continue;
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(m, "token_ids")) if (n < max) out[n++] = (int32_t)t->valuedouble;
        if (finish && cJSON_GetObjectItemCaseSensitive(m, "finish_reason")) *finish = jstr(m, "finish_reason");
    }
    return n;
}

static inline const cJSON *first_msg(const fx *f, const char *type, const char *id)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, f->out.list)
        if (!strcmp(jstr(m, "type"), type) && !strcmp(jstr(m, "id"), id)) return m;
    return NULL;
}

static inline int count_msgs(const fx *f, const char *type, const char *id)
{
    int n = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, f->out.list) n += !strcmp(jstr(m, "type"), type) && (!id || !strcmp(jstr(m, "id"), id));
    return n;
}

static inline int msg_pos(const fx *f, const cJSON *x)
{
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, f->out.list) { if (m == x) return i; i++; }
    return -1;
}

static inline void prompt_json(char *buf, size_t cap, const int32_t *p, int n)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n; i++) o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? "," : "", p[i]);
    snprintf(buf + o, cap - o, "]");
}

static inline double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static inline const cJSON *last_msg(const fx *f, const char *type, const char *id)
{
    const cJSON *m, *last = NULL;
    cJSON_ArrayForEach(m, f->out.list)
        if (!strcmp(jstr(m, "type"), type) && !strcmp(jstr(m, "id"), id)) last = m;
    return last;
}

/* The k-th `tokens` message of (id, index), printed. */
static inline char *nth_tokens(const fx *f, const char *id, int index, int k)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, f->out.list)
        if (!strcmp(jstr(m, "type"), "tokens") && !strcmp(jstr(m, "id"), id) && jint(m, "index", -1) == index && k-- == 0)
            return cJSON_PrintUnformatted(m);
    return NULL;
}

#endif
