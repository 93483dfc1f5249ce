/* gw_int.h — the pieces of glm-gateway and how they talk to each other.
 *
 *   http.c     connections: http-parser, limits, timeouts, the write path
 *   pipe.c     the two ZeroMQ sockets inside the libuv loop, heartbeats
 *   api.c      routes, admission (auth, JSON, model), the request table
 *   gen.c      one generation: pipeline messages in, OpenAI JSON / SSE out
 *   metrics.c  Prometheus text: counters and histograms measured here
 *   blocks.c   a generation's output as ordered blocks (reasoning, text, calls)
 *   anthropic.c the Anthropic Messages API: request -> chat body, blocks out
 *   responses.c the OpenAI Responses API: the same, as output items / events
 *   convert.c  what the conversions share; `glm-gateway --convert`
 *   jw.c       JSON writing helpers shared by the above
 *
 * Everything runs on one thread (the libuv loop), so nothing here locks. */
#ifndef GW_INT_H
#define GW_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include <http_parser.h>
#include <msgpack.h>
#include <uv.h>
#include <zmq.h>

#include "gateway.h"
#include "wire.h"
#include "msg.h"
#include "strmap.h"

typedef struct gw_conn gw_conn;
typedef struct gw_req gw_req;
typedef struct gw_gen gw_gen;
typedef struct gw_metrics gw_metrics;

/* ================================================================ jw.c */

/* JSON output is written straight into byte buffers: the hot path (one SSE
 * chunk per token) cannot afford a tree per chunk. Input JSON is parsed
 * with cJSON (common/json.h); strings are escaped by pl_pyjson_write_string. */
void gw_jw_str(pl_buf *b, const char *s, size_t n);
void gw_jw_cstr(pl_buf *b, const char *s);
void gw_jw_int(pl_buf *b, int64_t v);
/* A finite double as Python's repr (json.dumps); NaN/inf become null. */
void gw_jw_double(pl_buf *b, double d);
/* Any msgpack value as JSON (map keys written as strings). */
void gw_jw_msgpack(pl_buf *b, const msgpack_object *o);
/* A msgpack string's bytes, or NULL/0 when o is not a string. */
const char *gw_mp_str(const msgpack_object *o, size_t *len);
/* Python len() of UTF-8 text: code points. */
size_t gw_utf8_len(const char *s, size_t n);
/* OpenAI error JSON: {"error":{"message","type","param","code"}}. */
int  gw_error_json(const msgpack_object *error_msg, pl_buf *out);   /* from an `error` message; returns its code */
void gw_jw_error(pl_buf *b, int code, const char *type, const char *param, size_t paramlen,
                 const char *msg, size_t msglen);

/* ================================================================ anthropic.c */

/* Which API a request speaks: its response shapes and error shapes. */
enum gw_api { GW_API_OPENAI, GW_API_ANTHROPIC, GW_API_RESPONSES };

/* ---------------------------------------------------------------- convert.c */

/* Helpers of the request conversions: a formatted refusal (PL_ERR_INVALID),
 * an object's field unless absent or null, string tests and builders. */
int  gw_conv_bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const cJSON *gw_conv_get(const cJSON *o, const char *key);
bool gw_conv_str_is(const cJSON *v, const char *s);
void gw_conv_add_str(cJSON *o, const char *key, const char *s);
void gw_conv_add_msg(cJSON *msgs, const char *role, const char *content);   /* {role, content} appended */

/* ---------------------------------------------------------------- blocks.c */

enum gw_blk_kind { GW_BLK_THINKING, GW_BLK_TEXT, GW_BLK_TOOL };

typedef struct gw_blk {
    enum gw_blk_kind kind;
    pl_buf  body;               /* reasoning / text / the call's argument JSON */
    pl_buf  id, name;           /* tool call */
    int64_t call_index;         /* tool call: its index in the deltas */
    char    sig[33];            /* reasoning: a random id (signature, item id) */
    size_t  sent;               /* stream: bytes of body already sent */
    bool    started, stopped;   /* stream: opening / closing events out */
} gw_blk;

typedef struct gw_blocks {
    gw_blk  *b;
    size_t   n, cap;
    pl_buf   held;              /* text that came while a tool call was open */
    char     finish[16];        /* the choice's finish_reason, "" until then */
    pl_buf   stop_str;          /* the stop string that ended it, when one did */
    bool     has_stop_str;
    bool     head_sent, tail_sent;   /* stream: first / last events out */
    int64_t  seq;               /* stream: events sent (Responses sequence_number) */
    int64_t  reasoning_tokens;  /* tokens of deltas that carried reasoning */
    bool     ping_due;          /* stream: a keep-alive ping goes with the next flush */
    double   t_last_out;        /* stream: monotonic time of the last flush that wrote */
} gw_blocks;

int  gw_blocks_new(gw_blocks **out);
void gw_blocks_free(gw_blocks *a);
/* One `delta` message of the (single) choice, in order. */
void gw_blocks_delta(gw_blocks *a, const msgpack_object *msg);
/* Held text becomes a text block (at the end, or before a stream closes). */
void gw_blocks_flush_held(gw_blocks *a);

/* ---------------------------------------------------------------- anthropic.c */

typedef struct gw_usage {           /* what a response reports as usage */
    int64_t prompt, completion, cached;
    bool    has_cached;
} gw_usage;

/* A Messages (or count_tokens) request body -> the chat completions body
 * glm-tokenize takes, as vLLM's to_chat_completion_request converts it.
 * PL_ERR_INVALID with err when the body is not a valid Messages request. */
int  gw_ant_to_chat(const cJSON *in, bool count_only, cJSON **out, char *err, size_t errlen);
/* count_tokens: the /tokenize chat-form body of a converted request; the answer. */
int  gw_ant_tokenize_body(const cJSON *chat, cJSON **out);
void gw_ant_count_json(int64_t count, pl_buf *b);
/* Anthropic's error JSON and its `type` for an HTTP status. */
void gw_ant_error_json(pl_buf *b, int code, const char *msg, size_t len);
const char *gw_ant_error_type(int code);

/* The full message body. */
void gw_ant_body(gw_blocks *a, const char *id, const char *model, const gw_usage *u, pl_buf *b);
/* Stream events pending since the last call: message_start (+ ping) first,
 * then block events; when done, message_delta + message_stop; err (Anthropic
 * error JSON) closes the open block and ends the stream with an error event. */
void gw_ant_stream(gw_blocks *a, const char *id, const char *model, const gw_usage *u, bool done,
                   const char *err, size_t errlen, pl_buf *b);

/* ---------------------------------------------------------------- responses.c */

typedef struct gw_resp_info {       /* what a response object says besides its output */
    const char *id, *model, *echo;  /* echo: gw_resp_echo's members */
    int64_t     created;
} gw_resp_info;

/* A Responses request body -> the chat completions body (PL_ERR_INVALID
 * with err for bodies it refuses, unsupported features named). */
int  gw_resp_to_chat(const cJSON *in, cJSON **out, char *err, size_t errlen);
/* The request fields a response object repeats, as JSON members. */
void gw_resp_echo(const cJSON *in, pl_buf *b);
void gw_resp_body(gw_blocks *a, const gw_resp_info *ri, const gw_usage *u, pl_buf *b);
/* Stream events pending: response.created + in_progress first, item events,
 * response.completed when done; err (OpenAI error JSON) ends with `error`. */
void gw_resp_stream(gw_blocks *a, const gw_resp_info *ri, const gw_usage *u, bool done, const char *err, size_t errlen,
                    pl_buf *b);

/* ================================================================ metrics.c */

/* What one finished generation contributes (times in seconds). Negative
 * times are unknown and not observed. */
typedef struct gw_req_stats {
    double  e2e, queue, prefill, decode, inference;
    int64_t prompt_tokens, completion_tokens;
    int64_t n, max_tokens;              /* max_tokens < 0: not given */
    int     n_finish[5];                /* by GW_FIN_* */
} gw_req_stats;

enum { GW_FIN_STOP, GW_FIN_LENGTH, GW_FIN_ABORT, GW_FIN_ERROR, GW_FIN_REPETITION };   /* vLLM's FinishReason */

int  gw_metrics_init(gw_metrics **out, const char *model_name, int64_t max_model_len);
void gw_metrics_free(gw_metrics *m);
void gw_metrics_ttft(gw_metrics *m, double s);
void gw_metrics_itl(gw_metrics *m, double s);
void gw_metrics_done(gw_metrics *m, const gw_req_stats *st);
/* HTTP requests by route (vLLM's instrumentator metrics): the handler index
 * of a path (-1: not counted), and one finished response. */
int  gw_metrics_handler(const char *path, size_t len);
void gw_metrics_http(gw_metrics *m, int handler, const char *method, int status, double seconds);
/* Prometheus text. stats: the engine's `stats` answer or NULL; running and
 * waiting: the gateway's own view, used when the engine gives none. */
void gw_metrics_render(const gw_metrics *m, const msgpack_object *stats, int64_t running, int64_t waiting,
                       pl_buf *out);

/* ================================================================ gen.c */

enum gw_endpoint { GW_EP_CHAT, GW_EP_COMPLETIONS };

typedef struct gw_gen_cfg {
    enum gw_endpoint ep;
    const char *id;                 /* response id (chatcmpl-… / cmpl-…) */
    const char *model;              /* reported model name */
    int64_t     created;            /* Unix seconds */
    bool        stream, include_usage, continuous_usage;
    int         n;                  /* choices per prompt */
    int         num_prompts;        /* completions: prompts in the list */
    int         logprobs;           /* -1 off; chat: top_logprobs; completions: logprobs */
    bool        echo;
    const char *chat_echo;          /* chat echo: the last assistant message, or NULL */
    size_t      chat_echo_len;
    bool        return_token_ids;
    bool        tokens_as_ids;      /* return_tokens_as_token_ids */
    int64_t     max_tokens;         /* as requested (metrics), -1 absent */
    gw_metrics *metrics;            /* may be NULL */
    enum gw_api api;                /* response shapes: OpenAI chat/completions, Anthropic, Responses */
    const char *resp_echo;          /* Responses: gw_resp_echo of the request (copied) */
    /* send abort{id of sub, index} downstream (index -1: the whole sub-request) */
    void      (*abort)(void *ud, int sub, int index);
    void       *ud;
} gw_gen_cfg;

/* gw_gen_msg result bits */
#define GW_GEN_STARTED 1   /* the first `start`: a stream may send its headers */
#define GW_GEN_DIRTY   2   /* stream output is pending (gw_gen_stream) */
#define GW_GEN_DONE    4   /* every sub-request ended: the response is complete */
#define GW_GEN_FAILED  8   /* an `error` ended the request (gw_gen_error) */

int  gw_gen_new(gw_gen **out, const gw_gen_cfg *cfg);
void gw_gen_free(gw_gen *g);
/* One pipeline message for sub-request `sub` (0 unless a prompt list). now:
 * a monotonic clock in seconds, wall: Unix time (for the engine's stamps). */
int  gw_gen_msg(gw_gen *g, int sub, const msgpack_object *msg, double now, double wall);
/* Fail the request from outside (pipeline down, server stopping). */
int  gw_gen_fail(gw_gen *g, int code, const char *type, const char *msg);
/* Stream: append the SSE events pending since the last call. After the
 * request is done or failed this ends with `data: [DONE]`. */
void gw_gen_stream(gw_gen *g, pl_buf *out);
/* Non-stream: the whole response body. */
void gw_gen_body(gw_gen *g, pl_buf *out);
/* The error that ended the request: HTTP status and its JSON body. */
int  gw_gen_error(const gw_gen *g, pl_buf *out);
bool gw_gen_started(const gw_gen *g);
/* An Anthropic stream with no output for GW_ANT_PING_S: queue a `ping`
 * event; true when the stream has output pending now. */
#define GW_ANT_PING_S 10.0
bool gw_gen_ping(gw_gen *g, double now);
bool gw_gen_done(const gw_gen *g);
/* Sub-requests still running in the pipeline (not ended, not failed). */
bool gw_gen_sub_live(const gw_gen *g, int sub);
int  gw_gen_num_subs(const gw_gen *g);
/* Stamp the request's arrival (defaults to creation) and report metrics
 * when it is over: called once by the owner when it drops the request. */
void gw_gen_finish_metrics(gw_gen *g, double now, bool aborted);

/* ================================================================ http.c */

enum gw_conn_state {
    GW_CONN_IDLE,       /* between requests (keep-alive timeout runs) */
    GW_CONN_HEAD,       /* request line / headers arriving (header timeout) */
    GW_CONN_BODY,       /* body arriving (body timeout between reads) */
    GW_CONN_BUSY,       /* a request is being answered; parsing paused */
    GW_CONN_LINGER,     /* refused mid-request: our side shut, unread input discarded */
    GW_CONN_CLOSING,
};

struct gw_conn {
    uv_tcp_t            tcp;            /* first: handles point back to the conn */
    uv_timer_t          timer;
    gw_server          *srv;
    gw_conn            *prev, *next;    /* the server's list */
    int                 open_handles;   /* freed when both handles closed */
    enum gw_conn_state  state;
    http_parser         hp;
    bool                reading;        /* uv_read_start active */
    bool                parsing;        /* inside conn_parse (no re-entry) */
    bool                eof;            /* the client closed its side */
    pl_buf              in;             /* received, not yet parsed */
    /* the request being parsed */
    pl_buf              url;
    pl_buf              hname, hval;
    bool                hval_open;      /* a header value is being assembled */
    size_t              nheaders;
    pl_buf              auth, xrid;     /* Authorization, X-Request-Id */
    pl_buf              xkey;           /* x-api-key (Anthropic clients) */
    bool                has_auth, has_xrid, has_xkey, expect_continue;
    enum gw_api         api;            /* the route's error shape */
    int                 handler;        /* metrics: the route (gw_metrics_handler), -1 none */
    int                 resp_status;    /* status of the response being sent */
    pl_buf              body;
    int                 reject;         /* a status decided while parsing (413) */
    uint64_t            t_begin;        /* loop ms at the request's first byte */
    unsigned            method;
    bool                keep_alive;     /* for the response being sent */
    /* the response */
    gw_req             *req;            /* pipeline request answering now, or NULL */
    bool                streaming;      /* chunked SSE response in progress */
    pl_buf              out;            /* bytes not yet handed to the kernel */
    pl_buf              wbuf;           /* bytes of the uv_write in flight */
    uv_write_t          wreq;
    bool                writing;
    uint64_t            write_since;    /* loop ms the write in flight started */
    bool                close_after;    /* close once out and wbuf are empty */
    bool                linger;         /* ... via shutdown + discard (input may be unread) */
    uv_shutdown_t       sreq;
};

/* Responses. Each queues bytes and flushes; a complete response ends the
 * request: the connection then serves the next pipelined one or idles. */
void gw_http_respond(gw_conn *c, int status, const char *ctype, const char *body, size_t len,
                     const char *extra_headers);
void gw_http_error(gw_conn *c, int status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void gw_http_stream_begin(gw_conn *c);
void gw_http_stream_chunk(gw_conn *c, const char *data, size_t n);
void gw_http_stream_end(gw_conn *c);
/* No write in flight: new stream output can go now (back-pressure otherwise). */
bool gw_http_writable(const gw_conn *c);

int  gw_http_listen(gw_server *s, char *err, size_t errlen);
void gw_http_stop_listening(gw_server *s);
void gw_http_close_idle(gw_server *s);
void gw_http_close(gw_conn *c);
void gw_http_sweep(gw_server *s, uint64_t now);   /* write stalls */

/* ================================================================ pipe.c */

enum gw_pipe_state { GW_PIPE_UNKNOWN, GW_PIPE_UP, GW_PIPE_DOWN };

int  gw_pipe_open(gw_server *s, char *err, size_t errlen);
void gw_pipe_close(gw_server *s);
/* Queue one message for glm-tokenize. PL_ERR_RANGE when the queue is over
 * its bound (the caller answers 503). */
int  gw_pipe_send(gw_server *s, const char *data, size_t len);
void gw_pipe_send_abort(gw_server *s, const char *id, size_t idlen, int index);
/* Send a control message {type, id} (ping, stats). */
void gw_pipe_send_ctl(gw_server *s, const char *type, const char *id, size_t idlen);
void gw_pipe_tick(gw_server *s, uint64_t now);
void gw_pipe_on_pong(gw_server *s, bool heartbeat);   /* a ping came back */
void gw_pipe_stop_watching(gw_server *s);            /* close the uv handles */

/* ================================================================ api.c */

enum gw_req_kind { GW_REQ_GEN, GW_REQ_TOKENIZE, GW_REQ_HEALTH, GW_REQ_STATS };

struct gw_req {
    enum gw_req_kind kind;
    gw_server  *srv;
    gw_conn    *conn;               /* NULL once the client has gone */
    char        id[PL_MSG_ID_MAX + 1];
    size_t      idlen;
    uint64_t    deadline;           /* loop ms (not GEN) */
    gw_req     *wprev, *wnext;      /* the server's list of timed waits */
    gw_req     *dnext;              /* the dirty list (streams with output pending) */
    bool        dirty;
    gw_gen     *gen;                /* GEN */
    bool        stream;             /* GEN: an SSE response */
    enum gw_api api;                /* TOKENIZE: answer as count_tokens when Anthropic */
};

void gw_api_dispatch(gw_conn *c);
void gw_api_on_msg(gw_server *s, const msgpack_object *msg);
void gw_api_after_batch(gw_server *s);             /* flush streams made dirty */
void gw_api_conn_gone(gw_conn *c);                 /* the client left with c->req open */
void gw_api_writable(gw_conn *c);                  /* a write finished */
void gw_api_fail_all(gw_server *s, int code, const char *msg);
void gw_api_tick(gw_server *s, uint64_t now);      /* timed waits */
size_t gw_api_live(const gw_server *s);

/* ================================================================ the server */

typedef struct gw_outmsg gw_outmsg;

struct gw_server {
    uv_loop_t         *loop;
    gw_opts            o;
    int                port;
    uv_tcp_t           listener;
    bool               listening;
    uv_signal_t        sig_term, sig_int, sig_usr1;
    uv_timer_t         tick;            /* housekeeping, every 100 ms */
    bool               draining;        /* SIGTERM: finish what is open, then exit */
    uint64_t           drain_deadline;
    int                exit_code;
    /* connections */
    gw_conn           *conns;
    size_t             nconns;
    /* pipeline (pipe.c) */
    void              *zctx, *push, *pull;
    uv_poll_t          push_poll, pull_poll;
    uv_idle_t          pull_idle;       /* a drain cut short continues here */
    bool               pull_idle_on, push_poll_on;
    gw_outmsg         *outq, *outq_tail;
    size_t             outq_bytes, outq_len;
    zmq_msg_t          zmsg;
    pl_wire_scan      *scan;        /* frames and bounds each pipeline message (common/wire.h) */
    pl_wire_decoder   *dec;         /* decodes PL_MSG_MAX_DEPTH levels (msgpack-c's own stops at 32) */
    size_t             max_msg;     /* largest message taken from the pipeline (PL_IO_MAX_MSG) */
    enum gw_pipe_state pstate;
    uint64_t           hb_seq;
    uint64_t           hb_sent;         /* loop ms of the outstanding heartbeat, 0 none */
    uint64_t           hb_next;         /* loop ms the next heartbeat is due */
    uint64_t           last_answer;     /* loop ms a ping last came back */
    /* requests (api.c) */
    pl_strmap         *reqs;            /* pipeline id -> gw_req */
    gw_req            *waits;           /* timed waits (health, stats, tokenize) */
    gw_req            *dirty;
    uint64_t           seq;             /* for generated ids */
    size_t             n_gen;           /* generation requests in the table */
    gw_metrics        *metrics;
    pl_buf             scratch;
    bool               closed;          /* every handle closed: the loop ends */
    int                drain_rounds;
    uint64_t           last_sweep;
    uint64_t           last_ping_sweep;  /* loop ms of the last idle-stream ping sweep (api.c) */
};

/* Clocks: monotonic seconds and Unix seconds (engine stamps are Unix). */
double gw_now(void);
double gw_wall(void);

/* Begin the stop: called on SIGTERM/SIGINT; exits the loop when drained. */
void gw_server_stop(gw_server *s);
void gw_server_maybe_exit(gw_server *s);

#endif
