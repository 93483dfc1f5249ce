/* notify.h — tell the supervisor how a process is doing (the sd_notify
 * protocol, through libsystemd).
 *
 * The supervisor is systemd (a Type=notify unit, systemd/) or glm-serve,
 * which gives each stage a NOTIFY_SOCKET of its own. Without NOTIFY_SOCKET
 * in the environment every call does nothing and returns 0, so a stage runs
 * the same from a shell pipe.
 *
 *   pl_notify_ready();                  // once: input bound, model loaded
 *   for (;;) {
 *       wait for work at most pl_notify_watchdog_ms() ms (-1: no limit);
 *       pl_notify_watchdog();           // WATCHDOG=1 when one is due
 *       ...
 *   }
 *   pl_notify_stopping();               // a stop was asked: draining now
 *
 * The watchdog is on when the supervisor set WATCHDOG_USEC (systemd's
 * WatchdogSec=, glm-serve --watchdog-sec); pings go out every quarter of
 * that interval. Not thread-safe: call from the thread that runs the loop. */
#ifndef PL_NOTIFY_H
#define PL_NOTIFY_H

#include "pl.h"

/* READY=1. Returns 0 (sent, or no supervisor) or PL_ERR_IO. */
int pl_notify_ready(void);

/* STOPPING=1. */
int pl_notify_stopping(void);

/* STATUS=<text>: one line shown by `systemctl status` (newlines become spaces). */
int pl_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* WATCHDOG=1 when the watchdog is on and a quarter of its interval has
 * passed since the last ping; otherwise nothing. Cheap: call every loop turn. */
int pl_notify_watchdog(void);

/* The longest a loop may block between two pl_notify_watchdog calls, in
 * milliseconds: -1 when there is no watchdog. */
int pl_notify_watchdog_ms(void);

#endif
