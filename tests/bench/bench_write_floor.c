/* bench_write_floor.c — what one streamed token costs the kernel, whatever
 * the gateway does around it.
 *
 * glm-gateway sends each SSE chunk with one write() per connection per loop
 * turn. With N streams that each get a token per engine step, a step is a
 * burst of N writes. This program does nothing but those writes: it opens N
 * loopback TCP connections (TCP_NODELAY, as the gateway sets), a child
 * process reads them all with epoll, and the parent writes one 200-byte
 * chunk (the size of a delta chunk) to every connection per round, a round
 * every 50 ms. It prints the time a burst takes (the last connection of a
 * burst waits that long even with zero user-space work) and the writer's
 * CPU per write (user + system).
 *
 *   build/bench/bench_write_floor [streams] [rounds]
 * Numbers go to docs/perf.md (glm-gateway). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "pl.h"

#define CHUNK_BYTES 200
#define ROUND_US    50000

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The reading side: connect n sockets to addr, then drain whatever arrives
 * until nothing has come for 3 s or a peer closes. Runs in the child. */
static int reader_run(const struct sockaddr_in *addr, int n)
{
    int ep = epoll_create1(0);
    if (ep < 0) return perror("epoll_create1"), 1;
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (const struct sockaddr *)addr, sizeof *addr)) return perror("connect"), 1;
        struct epoll_event e = { .events = EPOLLIN, .data.fd = s };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &e)) return perror("epoll_ctl"), 1;
    }
    struct epoll_event ev[256];
    static char buf[65536];
    for (;;) {
        int k = epoll_wait(ep, ev, 256, 3000);
        if (k <= 0) return 0;
        for (int i = 0; i < k; i++)
            if (read(ev[i].data.fd, buf, sizeof buf) <= 0) return 0;
    }
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000, rounds = argc > 2 ? atoi(argv[2]) : 40;
    if (n < 1 || n > 60000 || rounds < 1 || rounds > 100000) {
        fprintf(stderr, "usage: bench_write_floor [streams 1..60000] [rounds]\n");
        return 2;
    }
    struct rlimit rl = { (rlim_t)n + 64, (rlim_t)n + 64 };
    if (setrlimit(RLIMIT_NOFILE, &rl)) return perror("setrlimit (need streams + 64 descriptors)"), 1;

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof addr;
    if (ls < 0 || bind(ls, (struct sockaddr *)&addr, sizeof addr) || listen(ls, 4096) ||
        getsockname(ls, (struct sockaddr *)&addr, &alen))
        return perror("listen"), 1;

    pid_t pid = fork();
    if (pid < 0) return perror("fork"), 1;
    if (pid == 0) _exit(reader_run(&addr, n));

    int *fd = malloc((size_t)n * sizeof *fd);
    double *burst = malloc((size_t)rounds * sizeof *burst);
    if (!fd || !burst) return fprintf(stderr, "out of memory\n"), 1;
    for (int i = 0; i < n; i++) {
        int one = 1;
        fd[i] = accept(ls, NULL, NULL);
        if (fd[i] < 0 || setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one)) return perror("accept"), 1;
    }
    char chunk[CHUNK_BYTES];
    memset(chunk, 'x', sizeof chunk);
    chunk[CHUNK_BYTES - 2] = chunk[CHUNK_BYTES - 1] = '\n';

    double cpu0 = bench_cpu_s();
    for (int r = 0; r < rounds; r++) {
        double t0 = pl_mono_s();
        for (int i = 0; i < n; i++)
            if (write(fd[i], chunk, sizeof chunk) != (ssize_t)sizeof chunk) return perror("write"), 1;
        burst[r] = pl_mono_s() - t0;
        usleep(ROUND_US);
    }
    double cpu = bench_cpu_s() - cpu0;   /* the sleeps cost no CPU */
    qsort(burst, (size_t)rounds, sizeof *burst, cmp_double);
    printf("streams %d, rounds %d: a burst of %d writes takes p50 %.2f ms, p90 %.2f ms, max %.2f ms; "
           "writer CPU %.2f us per write\n", n, rounds, n, burst[rounds / 2] * 1e3, burst[rounds * 9 / 10] * 1e3,
           burst[rounds - 1] * 1e3, cpu / ((double)n * rounds) * 1e6);
    for (int i = 0; i < n; i++) close(fd[i]);
    waitpid(pid, NULL, 0);
    free(fd);
    free(burst);
    return 0;
}
