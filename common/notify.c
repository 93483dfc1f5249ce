/* notify.c — sd_notify messages to systemd or glm-serve. */
#include "notify.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <systemd/sd-daemon.h>

/* sd_notify: > 0 sent, 0 no NOTIFY_SOCKET, < 0 failed. A failure is worth a
 * log line (a supervisor that never hears READY=1 restarts the stage) but
 * never stops the stage. */
static int send_state(const char *state)
{
    int r = sd_notify(0, state);
    if (r >= 0) return PL_OK;
    pl_log(PL_LOG_WARN, NULL, 0, "sd_notify(%.40s): %s", state, strerror(-r));
    return PL_ERR_IO;
}

int pl_notify_ready(void) { return send_state("READY=1"); }

int pl_notify_stopping(void) { return send_state("STOPPING=1"); }

int pl_notify_status(const char *fmt, ...)
{
    char msg[512] = "STATUS=";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + 7, sizeof msg - 7, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';   /* one assignment per line in the protocol */
    return send_state(msg);
}

/* ================================================================ watchdog */

/* The interval is read from the environment once (WATCHDOG_USEC does not
 * change while the process runs). */
static int      g_wd_init;
static uint64_t g_wd_usec;       /* 0: no watchdog */
static uint64_t g_wd_last_us;    /* monotonic time of the last ping */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t wd_usec(void)
{
    if (!g_wd_init) {
        uint64_t usec = 0;
        g_wd_usec = sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
        g_wd_init = 1;
    }
    return g_wd_usec;
}

int pl_notify_watchdog_ms(void)
{
    uint64_t us = wd_usec();
    if (!us) return -1;
    uint64_t ms = us / 4000u;
    return ms < 1 ? 1 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int pl_notify_watchdog(void)
{
    uint64_t us = wd_usec();
    if (!us) return PL_OK;
    uint64_t t = now_us();
    if (g_wd_last_us && t - g_wd_last_us < us / 4) return PL_OK;
    g_wd_last_us = t;
    return send_state("WATCHDOG=1");
}
