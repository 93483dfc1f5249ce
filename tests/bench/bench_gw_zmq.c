/* bench_gw_zmq.c — how should ZeroMQ sit in the gateway's libuv loop?
 *
 *   poll:   the PULL socket's ZMQ_FD in a uv_poll, drained with ZMQ_DONTWAIT
 *           until EAGAIN on every wake-up (what glm-gateway does)
 *   thread: an I/O thread blocks in zmq_msg_recv, appends each message to a
 *           locked queue and wakes the loop with uv_async_send; the loop
 *           takes the whole queue per wake-up
 *
 * A sender thread PUSHes messages shaped like the pipeline's deltas
 * (~180 bytes) over ipc://, each stamped with its send time. Two runs per
 * mode: flat out (throughput, CPU per message of the whole process) and
 * paced at a fixed rate (latency send -> loop callback, p50/p99).
 *
 *   build/bench/bench_gw_zmq [messages] [paced_rate]
 * Numbers go to docs/perf.md. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "bench_util.h"
#include "pl.h"

#define MSG_BYTES 180

typedef struct {
    void   *zctx;
    char    ep[128];
    long    n;
    double  rate;           /* messages/s, 0 = flat out */
    double  cpu;            /* the sender thread's own CPU seconds */
} sender_cfg;

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *sender(void *arg)
{
    sender_cfg *c = arg;
    void *s = zmq_socket(c->zctx, ZMQ_PUSH);
    int hwm = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_connect(s, c->ep);
    char buf[MSG_BYTES];
    memset(buf, 'x', sizeof buf);
    double t0 = pl_mono_s();
    for (long i = 0; i < c->n; i++) {
        if (c->rate > 0) {   /* sleep, not spin: the receiver needs the cores */
            double wait = t0 + (double)i / c->rate - pl_mono_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        double t = pl_mono_s();
        memcpy(buf, &t, sizeof t);
        memcpy(buf + 8, &i, sizeof i);
        zmq_send(s, buf, sizeof buf, 0);
    }
    c->cpu = thread_cpu_s();
    int linger = 5000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(s);
    return NULL;
}

typedef struct {
    uv_loop_t  *loop;
    void       *pull;
    long        want, got;
    double     *lat;          /* [want] seconds */
    /* thread mode */
    uv_async_t  async;
    pthread_mutex_t mu;
    char       *q;            /* queued messages, MSG_BYTES each */
    long        qn, qcap;
    uv_poll_t   poll;
    int         done;
} recv_ctx;

static void take(recv_ctx *r, const char *data)
{
    double t;
    memcpy(&t, data, sizeof t);
    if (r->got < r->want) r->lat[r->got] = pl_mono_s() - t;
    r->got++;
}

/* ---- poll mode */
static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    recv_ctx *r = h->data;
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, r->pull, ZMQ_DONTWAIT) >= 0) take(r, zmq_msg_data(&m));
    zmq_msg_close(&m);
    if (r->got >= r->want) uv_poll_stop(&r->poll);
}

/* ---- thread mode */
static void *io_thread(void *arg)
{
    recv_ctx *r = arg;
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (long i = 0; i < r->want; i++) {
        if (zmq_msg_recv(&m, r->pull, 0) < 0) break;
        pthread_mutex_lock(&r->mu);
        if (r->qn == r->qcap) {
            r->qcap = r->qcap ? r->qcap * 2 : 1024;
            r->q = realloc(r->q, (size_t)r->qcap * MSG_BYTES);
        }
        memcpy(r->q + (size_t)r->qn * MSG_BYTES, zmq_msg_data(&m), MSG_BYTES);
        r->qn++;
        pthread_mutex_unlock(&r->mu);
        uv_async_send(&r->async);
    }
    zmq_msg_close(&m);
    return NULL;
}

static void on_async(uv_async_t *h)
{
    recv_ctx *r = h->data;
    static char *local;
    static long lcap;
    pthread_mutex_lock(&r->mu);
    long n = r->qn;
    if (n > lcap) { lcap = n; local = realloc(local, (size_t)lcap * MSG_BYTES); }
    memcpy(local, r->q, (size_t)n * MSG_BYTES);
    r->qn = 0;
    pthread_mutex_unlock(&r->mu);
    for (long i = 0; i < n; i++) take(r, local + (size_t)i * MSG_BYTES);
    if (r->got >= r->want) uv_close((uv_handle_t *)&r->async, NULL);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run(const char *mode, long n, double rate)
{
    void *zctx = zmq_ctx_new();
    recv_ctx r;
    memset(&r, 0, sizeof r);
    r.loop = uv_loop_new();
    r.want = n;
    r.lat = calloc((size_t)n, sizeof *r.lat);
    pthread_mutex_init(&r.mu, NULL);
    r.pull = zmq_socket(zctx, ZMQ_PULL);
    int hwm = 0;
    zmq_setsockopt(r.pull, ZMQ_RCVHWM, &hwm, sizeof hwm);
    sender_cfg sc = {zctx, "", n, rate, 0};
    snprintf(sc.ep, sizeof sc.ep, "ipc:///tmp/bench_gw_zmq_%d", (int)getpid());
    zmq_bind(r.pull, sc.ep);
    pthread_t io = 0, snd;
    bool poll_mode = !strcmp(mode, "poll");
    if (poll_mode) {
        int fd;
        size_t len = sizeof fd;
        zmq_getsockopt(r.pull, ZMQ_FD, &fd, &len);
        uv_poll_init(r.loop, &r.poll, fd);
        r.poll.data = &r;
        uv_poll_start(&r.poll, UV_READABLE, on_poll);
    } else {
        uv_async_init(r.loop, &r.async, on_async);
        r.async.data = &r;
        pthread_create(&io, NULL, io_thread, &r);
    }
    double c0 = bench_cpu_s(), t0 = pl_mono_s();
    pthread_create(&snd, NULL, sender, &sc);
    if (poll_mode) on_poll(&r.poll, 0, 0);   /* messages may be queued before the first wake-up */
    uv_run(r.loop, UV_RUN_DEFAULT);
    double t1 = pl_mono_s(), c1 = bench_cpu_s();
    pthread_join(snd, NULL);
    if (io) pthread_join(io, NULL);
    if (poll_mode) { uv_close((uv_handle_t *)&r.poll, NULL); uv_run(r.loop, UV_RUN_DEFAULT); }
    qsort(r.lat, (size_t)n, sizeof *r.lat, cmp);
    /* receiving CPU: the process (loop thread, I/O thread, ZeroMQ's own
     * thread) without the sender thread */
    printf("%-6s %-9s %9ld msgs %8.3f s %10.0f msg/s  p50 %7.1f us  p99 %8.1f us  recv cpu/msg %6.2f us\n",
           mode, rate > 0 ? "paced" : "flat-out", n, t1 - t0, (double)n / (t1 - t0),
           r.lat[n / 2] * 1e6, r.lat[(size_t)(n * 0.99)] * 1e6, (c1 - c0 - sc.cpu) / (double)n * 1e6);
    zmq_close(r.pull);
    zmq_ctx_term(zctx);
    uv_loop_delete(r.loop);
    free(r.lat);
    free(r.q);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    double rate = argc > 2 ? atof(argv[2]) : 100000;
    for (int rep = 0; rep < 2; rep++) {
        run("poll", n, 0);
        run("thread", n, 0);
    }
    run("poll", n / 5, rate);
    run("thread", n / 5, rate);
    return 0;
}
