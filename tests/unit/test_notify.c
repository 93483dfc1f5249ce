/* common/notify: the sd_notify datagrams a stage sends to the NOTIFY_SOCKET
 * its supervisor gave it, and the watchdog's pacing. (Each real stage is
 * tested end to end in tests/py/test_notify.py.) */
#include "test.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"

static int  g_fd = -1;
static char g_path[108];

/* The next datagram, or "" when none is waiting. */
static const char *next_msg(void)
{
    static char buf[600];
    ssize_t n = recv(g_fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

TEST(no_socket_is_a_no_op)
{
    unsetenv("NOTIFY_SOCKET");
    CHECK_EQ_INT(pl_notify_ready(), 0);
    CHECK_EQ_INT(pl_notify_stopping(), 0);
}

TEST(states_reach_the_socket)
{
    setenv("NOTIFY_SOCKET", g_path, 1);
    CHECK_EQ_INT(pl_notify_ready(), 0);
    CHECK_EQ_STR(next_msg(), "READY=1");
    CHECK_EQ_INT(pl_notify_status("model %s\nloaded", "m"), 0);
    CHECK_EQ_STR(next_msg(), "STATUS=model m loaded");   /* one line: a newline would start a new assignment */
    CHECK_EQ_INT(pl_notify_stopping(), 0);
    CHECK_EQ_STR(next_msg(), "STOPPING=1");
    CHECK_EQ_STR(next_msg(), "");
}

TEST(watchdog_pacing)
{
    /* read once, on first use: set before */
    setenv("WATCHDOG_USEC", "400000", 1);
    unsetenv("WATCHDOG_PID");
    CHECK_EQ_INT(pl_notify_watchdog_ms(), 100);    /* a quarter of the interval */
    CHECK_EQ_INT(pl_notify_watchdog(), 0);
    CHECK_EQ_STR(next_msg(), "WATCHDOG=1");
    CHECK_EQ_INT(pl_notify_watchdog(), 0);          /* not due yet: nothing sent */
    CHECK_EQ_STR(next_msg(), "");
    usleep(120 * 1000);
    CHECK_EQ_INT(pl_notify_watchdog(), 0);
    CHECK_EQ_STR(next_msg(), "WATCHDOG=1");
}

TEST(a_gone_supervisor_is_reported_not_fatal)
{
    setenv("NOTIFY_SOCKET", "/nonexistent-dir/notify", 1);
    CHECK_EQ_INT(pl_notify_ready(), PL_ERR_IO);
    setenv("NOTIFY_SOCKET", g_path, 1);
}

int main(void)
{
    snprintf(g_path, sizeof g_path, "/tmp/glm-notify-test-%ld", (long)getpid());
    g_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", g_path);
    unlink(g_path);
    if (g_fd < 0 || bind(g_fd, (struct sockaddr *)&a, sizeof a) < 0) {
        printf("0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    pl_log_set_level(PL_LOG_ERROR);   /* the expected send failure's warning */
    RUN(no_socket_is_a_no_op);
    RUN(states_reach_the_socket);
    RUN(watchdog_pacing);
    RUN(a_gone_supervisor_is_reported_not_fatal);
    close(g_fd);
    unlink(g_path);
    return test_report();
}
