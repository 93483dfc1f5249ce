/* rendezvous.c — the multi-node id exchange (rendezvous.h). */
#include "rendezvous.h"
#include "pl.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define RDZV_MAGIC      0x474C4D52u     /* "GLMR" */
#define HELLO_BYTES     48
#define REPLY_BYTES     336
#define REPLY_ID_OFF    16
#define REPLY_MSG_OFF   (REPLY_ID_OFF + ENG_RDZV_ID_BYTES)
#define REPLY_MSG_BYTES (REPLY_BYTES - REPLY_MSG_OFF)
#define MAX_PENDING     64              /* connections still sending their hello */

enum { ST_OK = 0, ST_MISMATCH = 1, ST_DUPLICATE = 2, ST_ABORT = 3 };

/* ===== encoding ===== */

static void put32(unsigned char *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }
static void put64(unsigned char *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static void hello_encode(const eng_rdzv_info *i, unsigned char h[HELLO_BYTES])
{
    memset(h, 0, HELLO_BYTES);
    uint32_t f[8] = { RDZV_MAGIC, ENG_RDZV_VERSION, i->nnodes, i->node_rank, i->local_ranks, i->expert_parallel,
                      i->max_batch_tokens, i->max_model_len };
    for (int k = 0; k < 8; k++) put32(h + 4 * k, f[k]);
    put64(h + 32, i->fingerprint);
}

static void hello_decode(const unsigned char h[HELLO_BYTES], uint32_t *magic, uint32_t *version, eng_rdzv_info *i)
{
    *magic = get32(h);
    *version = get32(h + 4);
    i->nnodes = get32(h + 8);
    i->node_rank = get32(h + 12);
    i->local_ranks = get32(h + 16);
    i->expert_parallel = get32(h + 20);
    i->max_batch_tokens = get32(h + 24);
    i->max_model_len = get32(h + 28);
    i->fingerprint = get64(h + 32);
}

static void reply_encode(unsigned char r[REPLY_BYTES], uint32_t status, const unsigned char *id, const char *msg)
{
    memset(r, 0, REPLY_BYTES);
    put32(r, RDZV_MAGIC);
    put32(r + 4, ENG_RDZV_VERSION);
    put32(r + 8, status);
    if (id) memcpy(r + REPLY_ID_OFF, id, ENG_RDZV_ID_BYTES);
    if (msg) memcpy(r + REPLY_MSG_OFF, msg, strnlen(msg, REPLY_MSG_BYTES - 1));    /* cut; r is zeroed: NUL-ended */
}

/* ===== sockets with deadlines ===== */

static int remaining_ms(double deadline)
{
    double left = deadline - pl_mono_s();
    return left <= 0 ? 0 : left > 1e6 ? 1000000000 : (int)(left * 1000) + 1;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Write all n bytes by the deadline (the socket is non-blocking). */
static int send_all(int fd, const unsigned char *p, size_t n, double deadline)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) { p += w; n -= (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return PL_ERR_IO;
        struct pollfd pf = { fd, POLLOUT, 0 };
        int ms = remaining_ms(deadline);
        if (!ms || (poll(&pf, 1, ms) < 0 && errno != EINTR)) return PL_ERR_IO;
    }
    return 0;
}

static int resolve(const char *addr, int port, int passive, struct addrinfo **res, char *err, size_t errlen)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = passive ? AI_PASSIVE : 0 };
    int g = getaddrinfo(addr, ps, &hints, res);
    if (g) return pl_seterr(err, errlen, PL_ERR_INVALID, "rendezvous: cannot resolve %s: %s", addr, gai_strerror(g));
    return 0;
}

/* ===== node 0 ===== */

struct eng_rdzv_server {
    int fd, port;
    char where[300];            /* "addr:port" for messages */
    eng_rdzv_info me;
};

int eng_rdzv_listen(const char *addr, int port, const eng_rdzv_info *me, eng_rdzv_server **out, char *err, size_t errlen)
{
    *out = NULL;
    if (me->node_rank != 0 || me->nnodes < 1)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "rendezvous: only node 0 listens");
    if (port < 0 || port > 65535) return pl_seterr(err, errlen, PL_ERR_RANGE, "rendezvous: port %d", port);
    struct addrinfo *res;
    int rc = resolve(addr, port, 1, &res, err, errlen);
    if (rc) return rc;
    int fd = -1, e = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) { e = errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);     /* a restart within TIME_WAIT */
        if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, MAX_PENDING) || set_nonblock(fd)) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return pl_seterr(err, errlen, PL_ERR_IO, "rendezvous: cannot listen on %s:%d: %s (--master-addr must be an "
                         "address of node 0, --master-port a free port)", addr, port, strerror(e));
    eng_rdzv_server *s = calloc(1, sizeof *s);
    if (!s) { close(fd); return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory"); }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    s->fd = fd;
    s->port = port;
    if (!getsockname(fd, (struct sockaddr *)&ss, &sl))
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    snprintf(s->where, sizeof s->where, "%s:%d", addr, s->port);
    s->me = *me;
    *out = s;
    return 0;
}

int eng_rdzv_port(const eng_rdzv_server *s) { return s->port; }

void eng_rdzv_server_free(eng_rdzv_server *s)
{
    if (!s) return;
    close(s->fd);
    free(s);
}

typedef struct pending {
    int fd;
    size_t got;
    double deadline;            /* its hello must be complete by then */
    unsigned char h[HELLO_BYTES];
    char peer[64];
} pending;

static void peer_name(int fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (!getpeername(fd, (struct sockaddr *)&ss, &sl)) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    snprintf(out, n, "%s:%d", host, port);
}

/* Best effort, bounded: a reply to a peer that will be closed anyway. */
static void reply_send(int fd, uint32_t status, const unsigned char *id, const char *msg, double deadline)
{
    unsigned char r[REPLY_BYTES];
    reply_encode(r, status, id, msg);
    send_all(fd, r, sizeof r, deadline);
}

/* Compare a hello with node 0's own launch: "" when it matches. */
static void hello_check(const eng_rdzv_info *me, const eng_rdzv_info *p, char *why, size_t n)
{
    why[0] = 0;
    if (p->nnodes != me->nnodes)
        snprintf(why, n, "--nnodes %u, node 0 has %u", p->nnodes, me->nnodes);
    else if (p->node_rank < 1 || p->node_rank >= me->nnodes)
        snprintf(why, n, "--node-rank %u is outside 1..%u", p->node_rank, me->nnodes - 1);
    else if (p->local_ranks != me->local_ranks)
        snprintf(why, n, "%u ranks per node (--tensor-parallel-size / --nnodes), node 0 has %u", p->local_ranks,
                 me->local_ranks);
    else if (p->expert_parallel != me->expert_parallel)
        snprintf(why, n, "expert parallel %s, node 0 %s", p->expert_parallel ? "on" : "off",
                 me->expert_parallel ? "on" : "off");
    else if (p->max_batch_tokens != me->max_batch_tokens)
        snprintf(why, n, "--max-num-batched-tokens %u, node 0 has %u", p->max_batch_tokens, me->max_batch_tokens);
    else if (p->max_model_len != me->max_model_len)
        snprintf(why, n, "--max-model-len %u, node 0 has %u", p->max_model_len, me->max_model_len);
    else if (p->fingerprint != me->fingerprint)
        snprintf(why, n, "another model (fingerprint %016llx, node 0 has %016llx: config.json or the safetensors "
                 "files differ)", (unsigned long long)p->fingerprint, (unsigned long long)me->fingerprint);
}

int eng_rdzv_serve(eng_rdzv_server *s, const unsigned char id[ENG_RDZV_ID_BYTES], double timeout_s,
                   double peer_timeout_s, char *err, size_t errlen)
{
    uint32_t N = s->me.nnodes;
    if (N > 4096) return pl_seterr(err, errlen, PL_ERR_RANGE, "rendezvous: %u nodes", N);
    if (peer_timeout_s <= 0) peer_timeout_s = 5;
    int *joined = malloc((size_t)N * sizeof *joined);
    if (!joined) return pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory");
    for (uint32_t k = 0; k < N; k++) joined[k] = -1;
    pending pend[MAX_PENDING];
    int np = 0, rc = 0;
    uint32_t have = 1;          /* node 0 itself */
    double deadline = pl_mono_s() + timeout_s;
    char why[256];
    while (have < N && !rc) {
        struct pollfd pf[MAX_PENDING + 1];
        pf[0] = (struct pollfd){ s->fd, np < MAX_PENDING ? POLLIN : 0, 0 };
        double wake = deadline;
        for (int k = 0; k < np; k++) {
            pf[k + 1] = (struct pollfd){ pend[k].fd, POLLIN, 0 };
            if (pend[k].deadline < wake) wake = pend[k].deadline;
        }
        if (pl_mono_s() >= deadline) {
            char missing[128] = "";
            size_t ml = 0;
            for (uint32_t k = 1; k < N && ml + 12 < sizeof missing; k++)
                if (joined[k] < 0) ml += (size_t)snprintf(missing + ml, sizeof missing - ml, "%s%u", ml ? ", " : "", k);
            rc = pl_seterr(err, errlen, PL_ERR_IO, "rendezvous on %s: timed out after %.0f s waiting for node(s) %s "
                           "of %u (started with the same --master-addr/--master-port?)", s->where, timeout_s, missing, N);
            break;
        }
        if (poll(pf, (nfds_t)np + 1, remaining_ms(wake)) < 0 && errno != EINTR) {
            rc = pl_seterr(err, errlen, PL_ERR_IO, "rendezvous: poll: %s", strerror(errno));
            break;
        }
        double now = pl_mono_s();
        /* Hellos in progress: complete, closed early, or out of time. */
        for (int k = 0; k < np && !rc; k++) {
            pending *p = &pend[k];
            int drop = 0;
            if (pf[k + 1].revents) {
                ssize_t r = recv(p->fd, p->h + p->got, HELLO_BYTES - p->got, 0);
                if (r > 0) p->got += (size_t)r;
                else if (r == 0 || (errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK)) {
                    pl_log(PL_LOG_WARN, NULL, 0, "rendezvous: %s closed after %zu of %d hello bytes: ignored",
                           p->peer, p->got, HELLO_BYTES);
                    drop = 1;
                }
            }
            if (!drop && p->got < HELLO_BYTES && now >= p->deadline) {
                pl_log(PL_LOG_WARN, NULL, 0, "rendezvous: %s sent %zu of %d hello bytes in %.0f s: dropped", p->peer,
                       p->got, HELLO_BYTES, peer_timeout_s);
                drop = 1;
            }
            if (!drop && p->got == HELLO_BYTES) {
                uint32_t magic, version;
                eng_rdzv_info pi;
                hello_decode(p->h, &magic, &version, &pi);
                drop = 1;
                if (magic != RDZV_MAGIC) {
                    pl_log(PL_LOG_WARN, NULL, 0, "rendezvous: %s is not a glm-engine node (bad magic): dropped", p->peer);
                } else if (version != ENG_RDZV_VERSION) {
                    snprintf(why, sizeof why, "node at %s speaks rendezvous version %u, node 0 version %u", p->peer,
                             version, ENG_RDZV_VERSION);
                    reply_send(p->fd, ST_MISMATCH, NULL, why, now + 1);
                    rc = pl_seterr(err, errlen, PL_ERR_INVALID, "rendezvous: %s", why);
                } else if (hello_check(&s->me, &pi, why, sizeof why), why[0]) {
                    char msg[512];      /* the reply carries its first 191 bytes */
                    snprintf(msg, sizeof msg, "node %u (%s) was launched with %s", pi.node_rank, p->peer, why);
                    reply_send(p->fd, ST_MISMATCH, NULL, msg, now + 1);
                    rc = pl_seterr(err, errlen, PL_ERR_INVALID, "rendezvous: %s", msg);
                } else if (joined[pi.node_rank] >= 0) {
                    snprintf(why, sizeof why, "node rank %u has already joined; %s is refused (two nodes with the "
                             "same --node-rank?)", pi.node_rank, p->peer);
                    reply_send(p->fd, ST_DUPLICATE, NULL, why, now + 1);
                    pl_log(PL_LOG_WARN, NULL, 0, "rendezvous: %s", why);
                } else {
                    joined[pi.node_rank] = p->fd;
                    have++;
                    pl_log(PL_LOG_INFO, NULL, 0, "rendezvous: node %u joined from %s (%u of %u)", pi.node_rank,
                           p->peer, have, N);
                    p->fd = -1;     /* kept in joined[] */
                }
            }
            if (drop) {
                if (p->fd >= 0) close(p->fd);
                p->fd = -1;
            }
        }
        int kept = 0;           /* compact after the scan: pf[] indexes the old order */
        for (int k = 0; k < np; k++) if (pend[k].fd >= 0) pend[kept++] = pend[k];
        np = kept;
        /* New connections. */
        while (!rc && np < MAX_PENDING && (pf[0].revents & POLLIN)) {
            int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (c < 0) break;
            pend[np] = (pending){ .fd = c, .deadline = now + peer_timeout_s };
            if (pend[np].deadline > deadline) pend[np].deadline = deadline;
            peer_name(c, pend[np].peer, sizeof pend[np].peer);
            np++;
        }
    }
    /* Answer the joined nodes: the id, or why the launch failed. */
    double d = pl_mono_s() + 5;
    for (uint32_t k = 1; k < N; k++) {
        if (joined[k] < 0) continue;
        if (!rc) {
            unsigned char r[REPLY_BYTES];
            reply_encode(r, ST_OK, id, NULL);
            if (send_all(joined[k], r, sizeof r, d))
                rc = pl_seterr(err, errlen, PL_ERR_IO, "rendezvous: sending the id to node %u failed", k);
        } else {
            char msg[512];
            snprintf(msg, sizeof msg, "node 0 gave up: %s", err ? err : "");
            reply_send(joined[k], ST_ABORT, NULL, msg, d);
        }
        close(joined[k]);
    }
    for (int k = 0; k < np; k++) close(pend[k].fd);
    free(joined);
    return rc;
}

/* ===== nodes 1..N-1 ===== */

/* One connection attempt, bounded by the deadline: fd or -1 (errno set). */
static int connect_once(const struct addrinfo *a, double deadline)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) return -1;
    if (connect(fd, a->ai_addr, a->ai_addrlen) && errno != EINPROGRESS) goto fail;
    struct pollfd pf = { fd, POLLOUT, 0 };
    int ms = remaining_ms(deadline);
    if (ms > 2000) ms = 2000;
    int pr = poll(&pf, 1, ms);
    if (pr <= 0) { errno = pr ? errno : ETIMEDOUT; goto fail; }
    int e = 0;
    socklen_t el = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) || e) { errno = e ? e : errno; goto fail; }
    return fd;
fail:;
    int keep = errno;
    close(fd);
    errno = keep;
    return -1;
}

int eng_rdzv_join(const char *addr, int port, const eng_rdzv_info *me, double timeout_s,
                  unsigned char id[ENG_RDZV_ID_BYTES], char *err, size_t errlen)
{
    if (me->node_rank < 1 || me->node_rank >= me->nnodes)
        return pl_seterr(err, errlen, PL_ERR_INVALID, "rendezvous: node rank %u of %u cannot join", me->node_rank,
                         me->nnodes);
    struct addrinfo *res;
    int rc = resolve(addr, port, 0, &res, err, errlen);
    if (rc) return rc;
    double deadline = pl_mono_s() + timeout_s;
    int fd = -1, e = 0;
    /* Node 0 may start after us: retry refused connections until the deadline. */
    while (fd < 0 && pl_mono_s() < deadline) {
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next)
            if ((fd = connect_once(a, deadline)) < 0) e = errno;
        if (fd < 0 && remaining_ms(deadline)) poll(NULL, 0, remaining_ms(deadline) < 200 ? remaining_ms(deadline) : 200);
    }
    freeaddrinfo(res);
    if (fd < 0)
        return pl_seterr(err, errlen, PL_ERR_IO, "rendezvous: could not reach node 0 at %s:%d within %.0f s (%s)", addr,
                         port, timeout_s, strerror(e ? e : ETIMEDOUT));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    unsigned char h[HELLO_BYTES], r[REPLY_BYTES];
    hello_encode(me, h);
    rc = send_all(fd, h, sizeof h, deadline);
    if (!rc) rc = pl_fd_read_exact(fd, r, sizeof r, deadline);
    close(fd);
    if (rc == PL_ERR_AGAIN)
        return pl_seterr(err, errlen, PL_ERR_IO, "rendezvous: node 0 at %s:%d did not send the id within %.0f s "
                         "(waiting for other nodes?)", addr, port, timeout_s);
    if (rc == PL_ERR_EOF)
        return pl_seterr(err, errlen, PL_ERR_IO, "rendezvous: node 0 at %s:%d closed the connection without an "
                         "answer (it dropped this node or stopped)", addr, port);
    if (rc) return pl_seterr(err, errlen, PL_ERR_IO, "rendezvous: talking to node 0 at %s:%d failed", addr, port);
    if (get32(r) != RDZV_MAGIC || get32(r + 4) != ENG_RDZV_VERSION)
        return pl_seterr(err, errlen, PL_ERR_PARSE, "rendezvous: %s:%d is not a glm-engine node 0 of this version "
                         "(bad reply header)", addr, port);
    uint32_t st = get32(r + 8);
    if (st != ST_OK) {
        char msg[REPLY_MSG_BYTES];
        memcpy(msg, r + REPLY_MSG_OFF, sizeof msg);
        msg[sizeof msg - 1] = 0;
        for (char *c = msg; *c; c++) if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        return pl_seterr(err, errlen, st == ST_DUPLICATE ? PL_ERR_INVALID : st == ST_MISMATCH ? PL_ERR_INVALID : PL_ERR_IO,
                         "rendezvous: node 0 refused this node: %s", msg);
    }
    memcpy(id, r + REPLY_ID_OFF, ENG_RDZV_ID_BYTES);
    return 0;
}

/* ===== model fingerprint ===== */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int eng_rdzv_fingerprint(const char *dir, uint64_t *out, char *err, size_t errlen)
{
    char path[4096];
    pl_buf b;
    pl_buf_init(&b);
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = pl_file_read(path, &b, 16 << 20, err, errlen);
    if (rc) return rc;
    uint64_t h = fnv1a(0xcbf29ce484222325ull, b.data, b.len);
    pl_buf_free(&b);
    DIR *d = opendir(dir);
    if (!d) return pl_seterr(err, errlen, PL_ERR_IO, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
        if (n == 100000) { rc = pl_seterr(err, errlen, PL_ERR_RANGE, "%s: too many safetensors files", dir); break; }
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *nn);
            if (!nn) { rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory"); break; }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) { rc = pl_seterr(err, errlen, PL_ERR_NOMEM, "out of memory"); break; }
        n++;
    }
    closedir(d);
    if (!rc && n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; !rc && i < n; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &st)) { rc = pl_seterr(err, errlen, PL_ERR_IO, "%s: %s", path, strerror(errno)); break; }
        uint64_t sz = (uint64_t)st.st_size;
        h = fnv1a(h, names[i], strlen(names[i]) + 1);
        h = fnv1a(h, &sz, sizeof sz);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (!rc) *out = h;
    return rc;
}
