/* test_rendezvous.c — the multi-node id exchange (engine/rendezvous.h) over
 * 127.0.0.1: node 0 listens on a free port, other nodes join as threads or
 * forked processes with a fake 128-byte id; bad peers (wrong magic, short
 * hellos, silent connections, other launches, duplicate node ranks) and
 * nodes that never come. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "pl.h"
#include "../../engine/rendezvous.h"

static unsigned char g_id[ENG_RDZV_ID_BYTES];

static eng_rdzv_info info(uint32_t nnodes, uint32_t node_rank)
{
    return (eng_rdzv_info){ .nnodes = nnodes, .node_rank = node_rank, .local_ranks = 2, .expert_parallel = 0,
                            .max_batch_tokens = 2048, .max_model_len = 4096, .fingerprint = 0x1234abcdULL };
}

typedef struct serve_arg {
    eng_rdzv_server *s;
    double timeout, peer_timeout;
    int rc;
    char err[512];
} serve_arg;

static void *serve_main(void *p)
{
    serve_arg *a = p;
    a->rc = eng_rdzv_serve(a->s, g_id, a->timeout, a->peer_timeout, a->err, sizeof a->err);
    return NULL;
}

typedef struct join_arg {
    int port;
    eng_rdzv_info me;
    double timeout, delay;      /* delay: seconds before joining */
    int rc;
    unsigned char id[ENG_RDZV_ID_BYTES];
    char err[512];
} join_arg;

static void *join_main(void *p)
{
    join_arg *a = p;
    if (a->delay > 0) usleep((useconds_t)(a->delay * 1e6));
    a->rc = eng_rdzv_join("127.0.0.1", a->port, &a->me, a->timeout, a->id, a->err, sizeof a->err);
    return NULL;
}

/* A node that got node 0's id. */
static void expect_id(const join_arg *ja)
{
    CHECK_EQ_INT(ja->rc, 0);
    CHECK(!memcmp(ja->id, g_id, sizeof g_id));
}

static int start_server(uint32_t nnodes, serve_arg *sa, pthread_t *th, double timeout)
{
    eng_rdzv_info me = info(nnodes, 0);
    char err[256];
    sa->timeout = timeout;
    if (!sa->peer_timeout) sa->peer_timeout = 2;
    if (eng_rdzv_listen("127.0.0.1", 0, &me, &sa->s, err, sizeof err)) {
        fprintf(stderr, "  listen: %s\n", err);
        return -1;
    }
    pthread_create(th, NULL, serve_main, sa);
    return eng_rdzv_port(sa->s);
}

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return -1; }
    return fd;
}

/* A hello as rendezvous.c encodes it, written by hand (the wire format in rendezvous.h). */
static void raw_hello(unsigned char h[48], uint32_t magic, uint32_t version, const eng_rdzv_info *i)
{
    uint32_t f[8] = { magic, version, i->nnodes, i->node_rank, i->local_ranks, i->expert_parallel,
                      i->max_batch_tokens, i->max_model_len };
    memset(h, 0, 48);
    for (int k = 0; k < 8; k++) { uint32_t v = htonl(f[k]); memcpy(h + 4 * k, &v, 4); }
    uint32_t hi = htonl((uint32_t)(i->fingerprint >> 32)), lo = htonl((uint32_t)i->fingerprint);
    memcpy(h + 32, &hi, 4);
    memcpy(h + 36, &lo, 4);
}

/* 1 when the peer closed the connection (reading what it sent first). */
static int closed_by_peer(int fd)
{
    struct timeval tv = { 3, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[512];
    ssize_t r;
    while ((r = recv(fd, buf, sizeof buf, 0)) > 0) {}
    return r == 0;
}

TEST(three_nodes_get_the_id)
{
    for (int i = 0; i < ENG_RDZV_ID_BYTES; i++) g_id[i] = (unsigned char)(i * 7 + 3);
    serve_arg sa = { 0 };
    pthread_t ts, tj[2];
    int port = start_server(3, &sa, &ts, 10);
    CHECK(port > 0);
    if (port <= 0) return;
    join_arg ja[2];
    for (int k = 0; k < 2; k++) {
        ja[k] = (join_arg){ .port = port, .me = info(3, (uint32_t)(2 - k)), .timeout = 10, .delay = 0.05 * k };
        pthread_create(&tj[k], NULL, join_main, &ja[k]);
    }
    for (int k = 0; k < 2; k++) pthread_join(tj[k], NULL);
    pthread_join(ts, NULL);
    CHECK_EQ_INT(sa.rc, 0);
    for (int k = 0; k < 2; k++) expect_id(&ja[k]);
    eng_rdzv_server_free(sa.s);
}

/* Processes, as real nodes are: node 0 in this process, nodes 1 and 2
 * forked, joining before node 0 serves (their connections wait in the
 * backlog) and reporting the id through their exit status. */
TEST(nodes_as_processes)
{
    for (int i = 0; i < ENG_RDZV_ID_BYTES; i++) g_id[i] = (unsigned char)(255 - i);
    eng_rdzv_info me = info(3, 0);
    eng_rdzv_server *s;
    char err[512];
    CHECK_EQ_INT(eng_rdzv_listen("127.0.0.1", 0, &me, &s, err, sizeof err), 0);
    int port = eng_rdzv_port(s);
    fflush(NULL);
    pid_t pid[2];
    for (int k = 0; k < 2; k++)
        if ((pid[k] = fork()) == 0) {
            eng_rdzv_info mine = info(3, (uint32_t)k + 1);
            unsigned char id[ENG_RDZV_ID_BYTES];
            char e2[512];
            int rc = eng_rdzv_join("127.0.0.1", port, &mine, 10, id, e2, sizeof e2);
            _exit(rc ? 2 : memcmp(id, g_id, sizeof id) ? 3 : 0);
        }
    CHECK_EQ_INT(eng_rdzv_serve(s, g_id, 10, 2, err, sizeof err), 0);
    for (int k = 0; k < 2; k++) {
        int st = -1;
        waitpid(pid[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    eng_rdzv_server_free(s);
}

TEST(node_that_starts_first_retries_until_node0_listens)
{
    /* A port nobody listens on yet: take a free one, close it, join (it
     * retries refused connections), then listen on it. */
    eng_rdzv_info me = info(2, 0);
    eng_rdzv_server *s;
    char err[512];
    CHECK_EQ_INT(eng_rdzv_listen("127.0.0.1", 0, &me, &s, err, sizeof err), 0);
    int port = eng_rdzv_port(s);
    eng_rdzv_server_free(s);
    join_arg ja = { .port = port, .me = info(2, 1), .timeout = 10 };
    pthread_t tj;
    pthread_create(&tj, NULL, join_main, &ja);
    usleep(400000);
    int lrc = eng_rdzv_listen("127.0.0.1", port, &me, &s, err, sizeof err);
    CHECK_EQ_INT(lrc, 0);
    if (!lrc) CHECK_EQ_INT(eng_rdzv_serve(s, g_id, 10, 2, err, sizeof err), 0);
    pthread_join(tj, NULL);
    expect_id(&ja);
    if (!lrc) eng_rdzv_server_free(s);
}

TEST(other_model_is_refused_on_both_sides)
{
    serve_arg sa = { 0 };
    pthread_t ts, t1, t2;
    int port = start_server(3, &sa, &ts, 10);
    if (port <= 0) { CHECK(0); return; }
    join_arg good = { .port = port, .me = info(3, 1), .timeout = 10 };
    join_arg bad = { .port = port, .me = info(3, 2), .timeout = 10, .delay = 0.2 };
    bad.me.fingerprint ^= 1;
    pthread_create(&t1, NULL, join_main, &good);
    pthread_create(&t2, NULL, join_main, &bad);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_join(ts, NULL);
    CHECK_EQ_INT(sa.rc, PL_ERR_INVALID);
    CHECK(strstr(sa.err, "node 2") && strstr(sa.err, "another model"));
    CHECK_EQ_INT(bad.rc, PL_ERR_INVALID);
    CHECK(strstr(bad.err, "refused this node") && strstr(bad.err, "fingerprint"));
    /* The node that had joined is told, not left to time out. */
    CHECK_EQ_INT(good.rc, PL_ERR_IO);
    CHECK(strstr(good.err, "node 0 gave up"));
    eng_rdzv_server_free(sa.s);
}

TEST(other_sizes_are_refused_with_the_flag)
{
    static const struct { int field; const char *flag; } cases[] = {
        { 0, "--nnodes" }, { 1, "ranks per node" }, { 2, "expert parallel" }, { 3, "--max-num-batched-tokens" },
        { 4, "--max-model-len" }, { 5, "outside 1..1" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        serve_arg sa = { 0 };
        pthread_t ts, tj;
        int port = start_server(2, &sa, &ts, 10);
        if (port <= 0) { CHECK(0); return; }
        join_arg ja = { .port = port, .me = info(2, 1), .timeout = 10 };
        switch (cases[c].field) {
        case 0: ja.me.nnodes = 3; break;
        case 1: ja.me.local_ranks = 4; break;
        case 2: ja.me.expert_parallel = 1; break;
        case 3: ja.me.max_batch_tokens = 512; break;
        case 4: ja.me.max_model_len = 8192; break;
        case 5: ja.me.node_rank = 0; break;     /* rejected by join itself, sent raw below */
        }
        if (cases[c].field == 5) {
            int fd = raw_connect(port);
            unsigned char h[48];
            raw_hello(h, 0x474C4D52u, ENG_RDZV_VERSION, &ja.me);
            CHECK(fd >= 0 && send(fd, h, sizeof h, 0) == 48);
            CHECK(closed_by_peer(fd));
            close(fd);
        } else {
            pthread_create(&tj, NULL, join_main, &ja);
            pthread_join(tj, NULL);
            CHECK_EQ_INT(ja.rc, PL_ERR_INVALID);
            CHECK(strstr(ja.err, cases[c].flag) != NULL);
        }
        pthread_join(ts, NULL);
        CHECK_EQ_INT(sa.rc, PL_ERR_INVALID);
        if (!strstr(sa.err, cases[c].flag)) fprintf(stderr, "  case %zu: %s\n", c, sa.err);
        CHECK(strstr(sa.err, cases[c].flag) != NULL);
        eng_rdzv_server_free(sa.s);
    }
}

TEST(version_mismatch_is_refused)
{
    serve_arg sa = { 0 };
    pthread_t ts;
    int port = start_server(2, &sa, &ts, 10);
    if (port <= 0) { CHECK(0); return; }
    eng_rdzv_info i = info(2, 1);
    unsigned char h[48], r[336];
    raw_hello(h, 0x474C4D52u, ENG_RDZV_VERSION + 1, &i);
    int fd = raw_connect(port);
    CHECK(fd >= 0 && send(fd, h, sizeof h, 0) == 48);
    CHECK(fd >= 0 && recv(fd, r, sizeof r, MSG_WAITALL) == (ssize_t)sizeof r);
    uint32_t st;
    memcpy(&st, r + 8, 4);
    CHECK(ntohl(st) != 0);
    CHECK(strstr((const char *)r + 144, "version") != NULL);
    close(fd);
    pthread_join(ts, NULL);
    CHECK_EQ_INT(sa.rc, PL_ERR_INVALID);
    CHECK(strstr(sa.err, "version"));
    eng_rdzv_server_free(sa.s);
}

/* Not glmpipe nodes: wrong magic, a short hello then close, a connection
 * that says nothing. Each is dropped; node 0 keeps waiting and the real
 * node still gets the id. */
TEST(bad_peers_are_dropped_and_the_real_node_joins)
{
    serve_arg sa = { .peer_timeout = 0.3 };
    pthread_t ts, tj;
    int port = start_server(2, &sa, &ts, 10);
    if (port <= 0) { CHECK(0); return; }
    eng_rdzv_info i = info(2, 1);
    unsigned char h[48];
    raw_hello(h, 0x47455420u /* "GET " */, ENG_RDZV_VERSION, &i);
    int magic = raw_connect(port), shortc = raw_connect(port), silent = raw_connect(port);
    CHECK(magic >= 0 && shortc >= 0 && silent >= 0);
    CHECK(send(magic, h, sizeof h, 0) == 48);
    raw_hello(h, 0x474C4D52u, ENG_RDZV_VERSION, &i);
    CHECK(send(shortc, h, 20, 0) == 20);
    shutdown(shortc, SHUT_WR);
    CHECK(closed_by_peer(magic));       /* dropped without an answer */
    CHECK(closed_by_peer(shortc));
    CHECK(closed_by_peer(silent));      /* after the 0.3 s hello limit */
    close(magic);
    close(shortc);
    close(silent);
    join_arg ja = { .port = port, .me = info(2, 1), .timeout = 10 };
    pthread_create(&tj, NULL, join_main, &ja);
    pthread_join(tj, NULL);
    pthread_join(ts, NULL);
    CHECK_EQ_INT(sa.rc, 0);
    expect_id(&ja);
    eng_rdzv_server_free(sa.s);
}

TEST(duplicate_node_rank_is_refused)
{
    serve_arg sa = { 0 };
    pthread_t ts, t1, t2, t3;
    int port = start_server(3, &sa, &ts, 10);
    if (port <= 0) { CHECK(0); return; }
    join_arg first = { .port = port, .me = info(3, 1), .timeout = 10 };
    join_arg dup = { .port = port, .me = info(3, 1), .timeout = 10, .delay = 0.2 };
    join_arg two = { .port = port, .me = info(3, 2), .timeout = 10, .delay = 0.6 };
    pthread_create(&t1, NULL, join_main, &first);
    pthread_create(&t2, NULL, join_main, &dup);
    pthread_join(t2, NULL);
    CHECK_EQ_INT(dup.rc, PL_ERR_INVALID);
    CHECK(strstr(dup.err, "node rank 1 has already joined"));
    pthread_create(&t3, NULL, join_main, &two);
    pthread_join(t1, NULL);
    pthread_join(t3, NULL);
    pthread_join(ts, NULL);
    CHECK_EQ_INT(sa.rc, 0);
    CHECK_EQ_INT(first.rc, 0);
    expect_id(&two);
    eng_rdzv_server_free(sa.s);
}

TEST(node_that_never_comes_times_out_on_both_sides)
{
    serve_arg sa = { 0 };
    pthread_t ts, tj;
    double t0 = pl_mono_s();
    int port = start_server(3, &sa, &ts, 0.8);
    if (port <= 0) { CHECK(0); return; }
    join_arg ja = { .port = port, .me = info(3, 2), .timeout = 10 };
    pthread_create(&tj, NULL, join_main, &ja);
    pthread_join(ts, NULL);
    pthread_join(tj, NULL);
    double took = pl_mono_s() - t0;
    CHECK_EQ_INT(sa.rc, PL_ERR_IO);
    CHECK(strstr(sa.err, "timed out") && strstr(sa.err, "node(s) 1 of 3"));
    CHECK(took < 5);
    CHECK_EQ_INT(ja.rc, PL_ERR_IO);     /* told by node 0, long before its own 10 s */
    CHECK(strstr(ja.err, "node 0 gave up") && strstr(ja.err, "timed out"));
    eng_rdzv_server_free(sa.s);
}

TEST(join_times_out_without_node0)
{
    eng_rdzv_info me = info(2, 0);
    eng_rdzv_server *s;
    char err[512];
    unsigned char id[ENG_RDZV_ID_BYTES];
    CHECK_EQ_INT(eng_rdzv_listen("127.0.0.1", 0, &me, &s, err, sizeof err), 0);
    int port = eng_rdzv_port(s);
    eng_rdzv_server_free(s);    /* nobody listens there now */
    eng_rdzv_info j = info(2, 1);
    double t0 = pl_mono_s();
    CHECK_EQ_INT(eng_rdzv_join("127.0.0.1", port, &j, 0.6, id, err, sizeof err), PL_ERR_IO);
    CHECK(strstr(err, "could not reach node 0"));
    CHECK(pl_mono_s() - t0 < 3);
    /* Node 0 listening but never answering (it waits for other nodes). */
    CHECK_EQ_INT(eng_rdzv_listen("127.0.0.1", 0, &me, &s, err, sizeof err), 0);
    t0 = pl_mono_s();
    CHECK_EQ_INT(eng_rdzv_join("127.0.0.1", eng_rdzv_port(s), &j, 0.6, id, err, sizeof err), PL_ERR_IO);
    CHECK(strstr(err, "did not send the id"));
    CHECK(pl_mono_s() - t0 < 3);
    eng_rdzv_server_free(s);
}

TEST(bad_arguments)
{
    eng_rdzv_info me = info(2, 1);
    eng_rdzv_server *s;
    char err[512];
    unsigned char id[ENG_RDZV_ID_BYTES];
    CHECK_EQ_INT(eng_rdzv_listen("127.0.0.1", 0, &me, &s, err, sizeof err), PL_ERR_INVALID);
    me.node_rank = 0;
    CHECK_EQ_INT(eng_rdzv_join("127.0.0.1", 1, &me, 1, id, err, sizeof err), PL_ERR_INVALID);
    CHECK_EQ_INT(eng_rdzv_listen("no-such-host.invalid", 0, &me, &s, err, sizeof err), PL_ERR_INVALID);
    CHECK(strstr(err, "cannot resolve"));
    /* 192.0.2.1 (TEST-NET-1) is no address of this machine. */
    CHECK_EQ_INT(eng_rdzv_listen("192.0.2.1", 0, &me, &s, err, sizeof err), PL_ERR_IO);
    CHECK(strstr(err, "cannot listen") && strstr(err, "--master-addr"));
}

static void write_file(const char *dir, const char *name, const char *text, size_t n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) { fwrite(text, 1, n, f); fclose(f); }
}

TEST(fingerprint_follows_config_and_files)
{
    char dir[] = "/tmp/glm-rdzv-XXXXXX", err[512];
    if (!mkdtemp(dir)) { CHECK(0); return; }
    uint64_t a, b, c, d, e;
    CHECK_EQ_INT(eng_rdzv_fingerprint(dir, &a, err, sizeof err), PL_ERR_NOTFOUND);
    write_file(dir, "config.json", "{\"hidden_size\": 64}", 19);
    write_file(dir, "model-00002.safetensors", "xxxx", 4);
    write_file(dir, "model-00001.safetensors", "yy", 2);
    write_file(dir, "notes.txt", "ignored", 7);
    CHECK_EQ_INT(eng_rdzv_fingerprint(dir, &a, err, sizeof err), 0);
    CHECK_EQ_INT(eng_rdzv_fingerprint(dir, &b, err, sizeof err), 0);
    CHECK(a == b);
    write_file(dir, "notes.txt", "other text", 10);
    CHECK_EQ_INT(eng_rdzv_fingerprint(dir, &b, err, sizeof err), 0);
    CHECK(a == b);                                      /* only config.json and weights count */
    write_file(dir, "model-00001.safetensors", "yyy", 3);
    CHECK_EQ_INT(eng_rdzv_fingerprint(dir, &c, err, sizeof err), 0);
    CHECK(c != a);                                      /* a weight file's size */
    write_file(dir, "config.json", "{\"hidden_size\": 65}", 19);
    CHECK_EQ_INT(eng_rdzv_fingerprint(dir, &d, err, sizeof err), 0);
    CHECK(d != c);                                      /* the config */
    write_file(dir, "model-00003.safetensors", "", 0);
    CHECK_EQ_INT(eng_rdzv_fingerprint(dir, &e, err, sizeof err), 0);
    CHECK(e != d);                                      /* one more file */
    test_rmtree(dir);
}

int main(void)
{
    pl_log_set_level(PL_LOG_ERROR);     /* the dropped peers' warnings are expected */
    RUN(three_nodes_get_the_id);
    RUN(nodes_as_processes);
    RUN(node_that_starts_first_retries_until_node0_listens);
    RUN(other_model_is_refused_on_both_sides);
    RUN(other_sizes_are_refused_with_the_flag);
    RUN(version_mismatch_is_refused);
    RUN(bad_peers_are_dropped_and_the_real_node_joins);
    RUN(duplicate_node_rank_is_refused);
    RUN(node_that_never_comes_times_out_on_both_sides);
    RUN(join_times_out_without_node0);
    RUN(bad_arguments);
    RUN(fingerprint_follows_config_and_files);
    return test_report();
}
