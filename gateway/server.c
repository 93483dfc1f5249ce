/* server.c — the gateway's life: start, housekeeping, graceful stop.
 *
 * SIGTERM/SIGINT: stop accepting, close idle keep-alive connections, let
 * open responses finish (each then closes its connection), exit 0 when the
 * last one is done or --drain-timeout has passed (what is left then gets a
 * 503 / an error event). A second signal stops at once.
 * SIGUSR1: a supervisor's notice that a stage restarted, so every request
 * in flight lost its state somewhere: each is failed now (pipe.c). */
#include "gw_int.h"
#include "notify.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS 100

double gw_now(void) { return pl_mono_s(); }
double gw_wall(void) { return pl_wall_s(); }

void gw_opts_default(gw_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = "0.0.0.0";
    o->port = 8000;
    o->max_request_bytes = 8 << 20;
    o->max_header_bytes = 32 << 10;
    o->max_headers = 100;
    o->max_connections = 10000;
    o->header_timeout = 10;
    o->body_timeout = 30;
    o->keepalive_timeout = 5;     /* uvicorn's default */
    o->write_timeout = 60;
    o->drain_timeout = 30;
    o->ping_interval = 1;
    o->stage_timeout = 60;   /* longer than the longest engine step: the engine answers a ping between steps */
    o->health_timeout = 5;
}

/* ================================================================ housekeeping */

static void close_everything(gw_server *s)
{
    uv_timer_stop(&s->tick);
    uv_close((uv_handle_t *)&s->tick, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_usr1, NULL);
    gw_pipe_stop_watching(s);
    gw_http_stop_listening(s);
    for (gw_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        gw_http_close(c);
    }
}

void gw_server_maybe_exit(gw_server *s)
{
    if (!s->draining || s->closed || s->nconns || pl_strmap_count(s->reqs)) return;
    s->closed = true;
    pl_log(PL_LOG_INFO, NULL, 0, "drained: exiting");
    close_everything(s);
}

static void on_tick(uv_timer_t *t)
{
    gw_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    pl_notify_watchdog();   /* WATCHDOG=1 when due: a stuck loop stops the pings (notify.h) */
    gw_pipe_tick(s, now);
    gw_api_tick(s, now);
    if (now - s->last_sweep >= 1000) { gw_http_sweep(s, now); s->last_sweep = now; }
    if (s->draining && !s->closed && now >= s->drain_deadline) {
        pl_log(PL_LOG_WARN, NULL, 0, "drain timeout: failing %zu request(s) still open", gw_api_live(s));
        gw_api_fail_all(s, 503, "The server is shutting down");
        for (gw_conn *c = s->conns, *next; c; c = next) {
            next = c->next;
            if (c->state != GW_CONN_CLOSING && !c->out.len && !c->writing) gw_http_close(c);
        }
        s->drain_deadline = now + 1000;   /* what is still writing gets one more second */
        if (++s->drain_rounds > 1 && !s->closed) { s->closed = true; close_everything(s); }
    }
}

void gw_server_stop(gw_server *s)
{
    if (s->draining) {
        pl_log(PL_LOG_WARN, NULL, 0, "second stop signal: exiting now");
        gw_api_fail_all(s, 503, "The server is shutting down");
        if (!s->closed) { s->closed = true; close_everything(s); }
        return;
    }
    s->draining = true;
    pl_notify_stopping();
    s->drain_deadline = uv_now(s->loop) + (uint64_t)(s->o.drain_timeout * 1000.0 + 0.5);
    pl_log(PL_LOG_INFO, NULL, 0, "stopping: %zu request(s) and %zu connection(s) open", gw_api_live(s), s->nconns);
    gw_http_stop_listening(s);
    gw_http_close_idle(s);
    gw_server_maybe_exit(s);
}

static void on_signal(uv_signal_t *h, int sig)
{
    gw_server *s = h->data;
    if (sig == SIGUSR1) {
        pl_log(PL_LOG_WARN, NULL, 0, "SIGUSR1: a pipeline stage restarted; failing %zu request(s) in flight", gw_api_live(s));
        gw_api_fail_all(s, 503, "A pipeline stage restarted while this request was in flight; retry.");
        return;
    }
    gw_server_stop(s);
}

/* ================================================================ life */

int gw_server_init(gw_server **out, uv_loop_t *loop, const gw_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!o->in_ep || !o->out_ep) return pl_seterr(err, errlen, PL_ERR_INVALID, "--in and --out are required");
    if (o->n_names < 1) return pl_seterr(err, errlen, PL_ERR_INVALID, "a served model name is required");
    gw_server *s = calloc(1, sizeof *s);
    if (!s) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    s->loop = loop;
    s->o = *o;
    pl_buf_init(&s->scratch);
    int rc = pl_strmap_new(&s->reqs);
    if (!rc) rc = gw_metrics_init(&s->metrics, o->names[0], o->max_model_len);
    if (rc) { gw_server_free(s); return pl_seterr(err, errlen, rc, "out of memory"); }
    if ((rc = gw_pipe_open(s, err, errlen)) || (rc = gw_http_listen(s, err, errlen))) {
        gw_server_free(s);
        return rc;
    }
    uv_timer_init(loop, &s->tick);
    s->tick.data = s;
    /* the tick also pings the supervisor's watchdog: never slower than its quarter interval */
    int wd = pl_notify_watchdog_ms();
    uint64_t period = wd > 0 && wd < TICK_MS ? (uint64_t)wd : TICK_MS;
    uv_timer_start(&s->tick, on_tick, period, period);
    uv_signal_init(loop, &s->sig_term);
    uv_signal_init(loop, &s->sig_int);
    uv_signal_init(loop, &s->sig_usr1);
    s->sig_term.data = s->sig_int.data = s->sig_usr1.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_usr1, on_signal, SIGUSR1);
    gw_pipe_tick(s, uv_now(loop));   /* the first heartbeat goes now */
    *out = s;
    return PL_OK;
}

int gw_server_run(gw_server *s)
{
    uv_run(s->loop, UV_RUN_DEFAULT);
    return s->exit_code;
}

int gw_server_port(const gw_server *s) { return s->port; }

void gw_server_free(gw_server *s)
{
    if (!s) return;
    if (s->zctx) gw_pipe_close(s);
    if (s->reqs) pl_strmap_free(s->reqs, NULL);
    gw_metrics_free(s->metrics);
    pl_buf_free(&s->scratch);
    free(s);
}
