/* gateway.h — glm-gateway: the OpenAI-compatible HTTP front of the pipeline.
 *
 *   gw_opts o;
 *   gw_opts_default(&o);               // then fill from the command line
 *   gw_server *s;
 *   gw_server_init(&s, uv_default_loop(), &o, err, sizeof err);
 *   gw_server_run(s);                  // until SIGTERM/SIGINT and the drain
 *   gw_server_free(s);
 *
 * One libuv loop runs everything: the listening socket, every HTTP
 * connection (parsed by http-parser), and both ZeroMQ sockets (PUSH to
 * glm-tokenize, PULL from the last parser), whose ZMQ_FD sit in the same
 * loop. docs/protocol.md §9 describes what the gateway sends and expects. */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "pl.h"

#define GW_MAX_NAMES 16      /* --served-model-name values */
#define GW_MAX_KEYS  16      /* --api-key values */

typedef struct gw_opts {
    const char *in_ep;                  /* PULL (binds): the last parser's --out connects here */
    const char *out_ep;                 /* PUSH (connects): glm-tokenize's --in */
    const char *host;
    int         port;                   /* 0: any free port (the ready line says which) */
    const char *names[GW_MAX_NAMES];    /* served model names; names[0] is reported */
    int         n_names;
    const char *model;                  /* --model: the default name, reported as `root` */
    int64_t     max_model_len;          /* 0: unknown (reported as null) */
    const char *keys[GW_MAX_KEYS];      /* --api-key / GLMPIPE_API_KEY */
    int         n_keys;
    int64_t     max_request_bytes;      /* body limit -> 413 */
    int64_t     max_header_bytes;       /* request line + headers -> 431 */
    int64_t     max_headers;            /* header count -> 431 */
    int64_t     max_connections;        /* beyond: 503 and close */
    double      header_timeout;         /* s: first byte of a request to the end of its headers */
    double      body_timeout;           /* s: longest silence while a body is arriving */
    double      keepalive_timeout;      /* s: an idle keep-alive connection is closed */
    double      write_timeout;          /* s: a response write that makes no progress */
    double      drain_timeout;          /* s: SIGTERM waits this long for open responses */
    double      ping_interval;          /* s: heartbeat ping through the pipeline */
    double      stage_timeout;          /* s: a heartbeat not back by then = pipeline down */
    double      health_timeout;         /* s: /health waits this long for its ping */
    bool        force_include_usage;    /* --enable-force-include-usage */
} gw_opts;

void gw_opts_default(gw_opts *o);

typedef struct gw_server gw_server;

int  gw_server_init(gw_server **out, uv_loop_t *loop, const gw_opts *o, char *err, size_t errlen);
/* Run the loop until a stop signal has been handled and every response
 * drained (or the drain timeout passed). 0, or a negative pl_err. */
int  gw_server_run(gw_server *s);
void gw_server_free(gw_server *s);

/* The port actually bound (useful with port 0). */
int  gw_server_port(const gw_server *s);

/* `glm-gateway --convert messages|messages-count|responses`: request bodies (JSON
 * Lines on stdin) -> the chat bodies the gateway sends (stdout). */
int  gw_convert_main(const char *api);

#endif
