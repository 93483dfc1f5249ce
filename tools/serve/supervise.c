/* supervise.c — start the stages, know when they are ready, restart the
 * ones that crash, stop them in order.
 *
 * One thread; every event comes through poll(2): a signalfd (SIGCHLD,
 * SIGTERM, SIGINT, SIGHUP) and one datagram socket per stage, the
 * NOTIFY_SOCKET that stage was started with. Stages report with sd_notify
 * (common/notify.h), as they do to systemd: READY=1 once they serve,
 * WATCHDOG=1 while they run, STOPPING=1 when they drain. A socket per stage
 * (not one socket and the sender's pid) lets a stage run under a wrapper
 * (gdb, valgrind, a shell) whose pid is not the one glm-serve forked.
 *
 * Lifecycle of a stage: DOWN -> STARTING (forked) -> READY (READY=1)
 *   - exits before it was ever READY while glm-serve starts up: a
 *     configuration error (a refused flag, a missing file): everything stops,
 *     exit status 1. The stage's own message is on stderr above.
 *   - exits (or misses READY/WATCHDOG deadlines and is killed) after it was
 *     READY once: restarted after a back-off that doubles per consecutive
 *     crash, from --restart-delay up to --restart-delay-max; a stage that ran
 *     SRV_STABLE_SEC before crashing starts again from the first delay.
 * SIGTERM/SIGINT/SIGHUP: stop the stages one at a time, head first (gateway,
 * tokenize, engine, detok, parse-reasoning, parse-tools): the gateway drains
 * its open streams while everything behind it still runs, and each later
 * stage gets its SIGTERM only when nothing upstream can send it more work.
 * SIGKILL after --stop-timeout. A second signal kills everything at once. */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"

#define SRV_STABLE_SEC 30.0   /* up this long before a crash: the back-off starts over */

enum pstate { P_DOWN, P_STARTING, P_READY, P_STOPPING };

typedef struct proc {
    enum pstate state;
    pid_t       pid;           /* 0 when not running */
    int         fd;            /* its notify socket, -1 for a disabled stage */
    bool        ever_ready;
    int         failures;      /* consecutive crashes: the back-off exponent */
    int         restarts;
    double      started;       /* monotonic seconds */
    double      last_ping;     /* READY=1 or WATCHDOG=1 */
    double      restart_at;    /* 0: no restart pending */
    double      kill_at;       /* 0: none; SIGKILL when reached */
} proc;

enum phase { PH_START, PH_RUN, PH_STOP };

typedef struct sup {
    const srv_plan *p;
    proc            pr[SRV_N_STAGES];
    int             sigfd;
    enum phase      phase;
    int             stop_next;   /* the stage stopped next, in pipeline order */
    int             rc;
    pid_t           self;
} sup;

static double now_s(void) { return pl_mono_s(); }

static const char *name_of(int i) { return srv_stage_name((enum srv_stage_id)i); }

/* ================================================================ processes */

/* In the child, between fork and exec: only async-signal-safe work would be
 * required if glm-serve had threads; it has one, so setenv is fine. */
static void child_exec(const sup *s, int i)
{
    const srv_plan *p = s->p;
    const srv_stage *st = &p->st[i];
    setpgid(0, 0);                       /* its own group: a terminal's ^C reaches glm-serve only */
    prctl(PR_SET_PDEATHSIG, SIGTERM);    /* glm-serve killed outright: the stages still stop */
    if (getppid() != s->self) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int dn = open("/dev/null", O_RDONLY);
    if (dn >= 0) { dup2(dn, STDIN_FILENO); close(dn); }
    dup2(STDERR_FILENO, STDOUT_FILENO);  /* glm-serve's stdout carries only its ready line */

    setenv("NOTIFY_SOCKET", st->notify, 1);
    unsetenv("WATCHDOG_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    if (p->watchdog_sec > 0) {
        char us[32];
        snprintf(us, sizeof us, "%llu", (unsigned long long)(p->watchdog_sec * 1e6));
        setenv("WATCHDOG_USEC", us, 1);
    } else {
        unsetenv("WATCHDOG_USEC");
    }
    if (p->log_level) setenv("GLM_LOG_LEVEL", p->log_level, 1);
    if (i == SRV_GATEWAY && p->api_key_env) setenv("GLMPIPE_API_KEY", p->api_key_env, 1);
    else unsetenv("GLMPIPE_API_KEY");   /* only the gateway checks keys */
    const char *path = getenv("PATH");
    char newpath[PATH_MAX * 2];
    snprintf(newpath, sizeof newpath, "%s%s%s", p->bindir, path ? ":" : "", path ? path : "");
    setenv("PATH", newpath, 1);          /* --stage COMMANDs find glm-replay & co. */

    int n = st->args.n;
    char **argv = calloc((size_t)n + 5, sizeof *argv);
    char *script = NULL;
    int k = 0;
    if (!argv) _exit(127);
    if (st->shell) {
        /* sh -c 'exec COMMAND "$@"' NAME ARGS...: the shell splits COMMAND
         * as the user wrote it, the stage's arguments come through intact */
        size_t len = strlen(st->prog) + 16;
        if (!(script = malloc(len))) _exit(127);
        snprintf(script, len, "exec %s \"$@\"", st->prog);
        argv[k++] = "/bin/sh";
        argv[k++] = "-c";
        argv[k++] = script;
        argv[k++] = (char *)name_of(i);
    } else {
        argv[k++] = (char *)st->prog;
    }
    for (int j = 0; j < n; j++) argv[k++] = st->args.v[j];
    argv[k] = NULL;
    execv(argv[0], argv);
    fprintf(stderr, "glm-serve: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int spawn(sup *s, int i)
{
    proc *pr = &s->pr[i];
    fflush(NULL);   /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        pl_log(PL_LOG_ERROR, NULL, 0, "fork for stage %s: %s", name_of(i), strerror(errno));
        return PL_ERR_IO;
    }
    if (pid == 0) child_exec(s, i);
    setpgid(pid, pid);   /* also here: whichever side runs first */
    pr->pid = pid;
    pr->state = P_STARTING;
    pr->started = now_s();
    pr->kill_at = 0;
    pr->restart_at = 0;
    pl_log(PL_LOG_INFO, NULL, 0, "stage %s started (pid %d)", name_of(i), (int)pid);
    return PL_OK;
}

/* The whole process group (a wrapper and what it runs), else the process. */
static void signal_stage(const proc *pr, int sig)
{
    if (pr->pid <= 0) return;
    if (kill(-pr->pid, sig) < 0 && errno == ESRCH) kill(pr->pid, sig);
}

static void describe(int status, char *buf, size_t n)
{
    if (WIFEXITED(status)) snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else snprintf(buf, n, "ended (status 0x%x)", status);
}

/* ================================================================ stopping */

static void advance_stop(sup *s)
{
    while (s->stop_next < SRV_N_STAGES) {
        proc *pr = &s->pr[s->stop_next];
        if (!pr->pid) { s->stop_next++; continue; }
        if (pr->state != P_STOPPING) {
            pl_log(PL_LOG_INFO, NULL, 0, "stopping stage %s (pid %d)", name_of(s->stop_next), (int)pr->pid);
            signal_stage(pr, SIGTERM);
            pr->state = P_STOPPING;
            pr->kill_at = now_s() + s->p->stop_timeout;
        }
        return;   /* the next one when this one is gone */
    }
}

static void begin_stop(sup *s, int rc, const char *why)
{
    if (rc) s->rc = rc;
    if (s->phase == PH_STOP) return;
    s->phase = PH_STOP;
    pl_log(PL_LOG_INFO, NULL, 0, "%s: stopping the stages head first", why);
    pl_notify_stopping();
    for (int i = 0; i < SRV_N_STAGES; i++) s->pr[i].restart_at = 0;
    s->stop_next = 0;
    advance_stop(s);
}

static void kill_all(sup *s)
{
    for (int i = 0; i < SRV_N_STAGES; i++) {
        proc *pr = &s->pr[i];
        if (!pr->pid) continue;
        pl_log(PL_LOG_WARN, NULL, 0, "killing stage %s (pid %d)", name_of(i), (int)pr->pid);
        signal_stage(pr, SIGKILL);
        pr->state = P_STOPPING;
        pr->kill_at = 0;
    }
    s->rc = 1;
}

/* ================================================================ events */

static bool all_ready(const sup *s)
{
    for (int i = 0; i < SRV_N_STAGES; i++)
        if (s->p->st[i].enabled && s->pr[i].state != P_READY) return false;
    return true;
}

static void on_ready(sup *s, int i)
{
    proc *pr = &s->pr[i];
    if (pr->state != P_STARTING) return;
    pr->state = P_READY;
    pr->last_ping = now_s();
    if (pr->ever_ready)
        pl_log(PL_LOG_INFO, NULL, 0, "stage %s ready again (pid %d, restart %d)", name_of(i), (int)pr->pid, pr->restarts);
    else
        pl_log(PL_LOG_INFO, NULL, 0, "stage %s ready (pid %d)", name_of(i), (int)pr->pid);
    pr->ever_ready = true;
    if (s->phase == PH_START && all_ready(s)) {
        s->phase = PH_RUN;
        int n = 0;
        for (int k = 0; k < SRV_N_STAGES; k++) n += s->p->st[k].enabled;
        printf("glm-serve: ready at %s (model %s, %d stages)\n", s->p->url, s->p->model, n);
        fflush(stdout);
        pl_notify_ready();
        pl_notify_status("serving %s at %s", s->p->model, s->p->url);
    }
}

/* One or more datagrams on stage i's socket: sd_notify "KEY=VALUE\n..." text. */
static void on_notify(sup *s, int i)
{
    proc *pr = &s->pr[i];
    char buf[4096];
    for (;;) {
        ssize_t n = recv(pr->fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (n < 0) return;   /* EAGAIN: drained */
        if (!pr->pid) continue;   /* sent by a process already reaped */
        buf[n] = 0;
        for (char *line = buf, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            if (!strcmp(line, "READY=1")) on_ready(s, i);
            else if (!strcmp(line, "WATCHDOG=1")) pr->last_ping = now_s();
            else if (!strcmp(line, "STOPPING=1")) pl_log(PL_LOG_DEBUG, NULL, 0, "stage %s is stopping", name_of(i));
            else if (!strncmp(line, "STATUS=", 7)) pl_log(PL_LOG_DEBUG, NULL, 0, "stage %s: %.300s", name_of(i), line + 7);
        }
    }
}

static void on_exit_of(sup *s, int i, int status)
{
    proc *pr = &s->pr[i];
    on_notify(s, i);   /* what it said before it exited is all in the socket now */
    char how[128];
    describe(status, how, sizeof how);
    int pid = (int)pr->pid;
    bool was_killed = pr->kill_at < 0;   /* glm-serve sent SIGKILL */
    pr->pid = 0;
    pr->state = P_DOWN;
    pr->kill_at = 0;
    if (s->phase == PH_STOP) {
        bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !was_killed;
        pl_log(clean ? PL_LOG_INFO : PL_LOG_WARN, NULL, 0, "stage %s (pid %d) stopped: %s", name_of(i), pid, how);
        if (!clean) s->rc = 1;
        if (i == s->stop_next) advance_stop(s);
        return;
    }
    if (!pr->ever_ready && s->phase == PH_START) {
        pl_log(PL_LOG_ERROR, NULL, 0, "stage %s (pid %d) %s before it was ready (its message is above)", name_of(i), pid, how);
        begin_stop(s, 1, "startup failed");
        return;
    }
    double t = now_s();
    if (t - pr->started >= SRV_STABLE_SEC) pr->failures = 0;
    pr->failures++;
    pr->restarts++;
    double d = s->p->restart_delay * pow(2.0, pr->failures - 1);
    if (d > s->p->restart_delay_max) d = s->p->restart_delay_max;
    pr->restart_at = t + d;
    pl_log(PL_LOG_WARN, NULL, 0, "stage %s (pid %d) %s; restart %d in %g s", name_of(i), pid, how, pr->restarts, d);
    /* What the stage held is gone: SIGUSR1 tells the gateway to answer its
     * requests in flight with an error now (they would never end). */
    proc *gw = &s->pr[SRV_GATEWAY];
    if (i != SRV_GATEWAY && gw->pid > 0 && kill(gw->pid, SIGUSR1) == 0)
        pl_log(PL_LOG_INFO, NULL, 0, "told the gateway (pid %d): requests in flight fail", (int)gw->pid);
}

static void on_signals(sup *s)
{
    struct signalfd_siginfo si;
    while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo != SIGCHLD) {
            if (s->phase != PH_STOP) begin_stop(s, 0, strsignal((int)si.ssi_signo));
            else { pl_log(PL_LOG_WARN, NULL, 0, "second stop signal"); kill_all(s); }
        }
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < SRV_N_STAGES; i++)
            if (s->pr[i].pid == pid) { on_exit_of(s, i, status); break; }
    }
}

static void kill_now(proc *pr)
{
    signal_stage(pr, SIGKILL);
    pr->kill_at = -1;   /* marks "killed by glm-serve" until it is reaped */
}

/* Deadlines: restarts, READY within --ready-timeout, WATCHDOG=1 within
 * --watchdog-sec, SIGKILL after --stop-timeout. */
static void on_timers(sup *s)
{
    const srv_plan *p = s->p;
    double t = now_s();
    for (int i = 0; i < SRV_N_STAGES; i++) {
        proc *pr = &s->pr[i];
        if (pr->restart_at > 0 && t >= pr->restart_at && s->phase != PH_STOP) {
            if (spawn(s, i)) begin_stop(s, 1, "cannot restart a stage");
            continue;
        }
        if (!pr->pid) continue;
        if (pr->kill_at > 0 && t >= pr->kill_at) {
            pl_log(PL_LOG_WARN, NULL, 0, "stage %s (pid %d) still running after %g s: SIGKILL", name_of(i), (int)pr->pid,
                   p->stop_timeout);
            kill_now(pr);
        } else if (pr->state == P_STARTING && pr->kill_at == 0 && t >= pr->started + p->ready_timeout) {
            pl_log(PL_LOG_ERROR, NULL, 0, "stage %s (pid %d) sent no READY=1 within %g s", name_of(i), (int)pr->pid,
                   p->ready_timeout);
            kill_now(pr);
            if (s->phase == PH_START && !pr->ever_ready) begin_stop(s, 1, "startup failed");
        } else if (pr->state == P_READY && p->watchdog_sec > 0 && pr->kill_at == 0 && t >= pr->last_ping + p->watchdog_sec) {
            pl_log(PL_LOG_ERROR, NULL, 0, "stage %s (pid %d) sent no WATCHDOG=1 for %g s: SIGABRT", name_of(i),
                   (int)pr->pid, p->watchdog_sec);
            signal_stage(pr, SIGABRT);   /* as systemd does: a core dump shows where it hung */
            pr->kill_at = t + p->stop_timeout;
        }
    }
}

static int next_timeout_ms(const sup *s)
{
    const srv_plan *p = s->p;
    double t = now_s(), best = INFINITY;
    for (int i = 0; i < SRV_N_STAGES; i++) {
        const proc *pr = &s->pr[i];
        if (pr->restart_at > 0 && s->phase != PH_STOP) best = fmin(best, pr->restart_at);
        if (!pr->pid) continue;
        if (pr->kill_at > 0) best = fmin(best, pr->kill_at);
        else if (pr->state == P_STARTING && pr->kill_at == 0) best = fmin(best, pr->started + p->ready_timeout);
        else if (pr->state == P_READY && p->watchdog_sec > 0) best = fmin(best, pr->last_ping + p->watchdog_sec);
    }
    int own = pl_notify_watchdog_ms();   /* glm-serve itself under a systemd watchdog */
    if (best == INFINITY) return own;
    double ms = ceil((best - t) * 1000.0);
    int v = ms < 0 ? 0 : ms > 3600000 ? 3600000 : (int)ms;
    return own >= 0 && own < v ? own : v;
}

/* ================================================================ setup */

static int notify_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    unlink(path);   /* left by an earlier run in the same --runtime-dir */
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { close(fd); return -1; }
    return fd;
}

/* Remove what glm-serve and the stages made in the runtime directory. */
static void cleanup(const srv_plan *p, const sup *s, bool remove_dir)
{
    for (int i = 0; i < SRV_N_STAGES; i++) {
        if (s->pr[i].fd >= 0) close(s->pr[i].fd);
        unlink(p->st[i].notify);
        unlink(p->st[i].in_ep + 6);   /* "ipc://" */
    }
    if (remove_dir && rmdir(p->rundir) < 0)
        pl_log(PL_LOG_WARN, NULL, 0, "could not remove %s: %s", p->rundir, strerror(errno));
}

int srv_run(const srv_plan *p, bool remove_rundir)
{
    sup s;
    memset(&s, 0, sizeof s);
    s.p = p;
    s.self = getpid();
    for (int i = 0; i < SRV_N_STAGES; i++) s.pr[i].fd = -1;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    s.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.sigfd < 0) {
        pl_log(PL_LOG_ERROR, NULL, 0, "signalfd: %s", strerror(errno));
        return 1;
    }
    for (int i = 0; i < SRV_N_STAGES; i++) {
        if (!p->st[i].enabled) continue;
        if ((s.pr[i].fd = notify_socket(p->st[i].notify)) < 0) {
            pl_log(PL_LOG_ERROR, NULL, 0, "notify socket %s: %s", p->st[i].notify, strerror(errno));
            cleanup(p, &s, remove_rundir);
            close(s.sigfd);
            return 1;
        }
    }
    pl_log(PL_LOG_INFO, NULL, 0, "starting the stages of %s in %s", p->model, p->rundir);
    /* any order works: each stage binds its input and connects its output */
    for (int i = SRV_N_STAGES - 1; i >= 0; i--)
        if (p->st[i].enabled && spawn(&s, i)) begin_stop(&s, 1, "cannot start a stage");

    for (;;) {
        bool any = false;
        for (int i = 0; i < SRV_N_STAGES; i++) any |= s.pr[i].pid != 0;
        if (s.phase == PH_STOP && !any) break;
        struct pollfd pf[SRV_N_STAGES + 1];
        int idx[SRV_N_STAGES + 1], n = 0;
        for (int i = 0; i < SRV_N_STAGES; i++)
            if (s.pr[i].fd >= 0) { pf[n] = (struct pollfd){ s.pr[i].fd, POLLIN, 0 }; idx[n++] = i; }
        pf[n] = (struct pollfd){ s.sigfd, POLLIN, 0 };
        int r = poll(pf, (nfds_t)n + 1, next_timeout_ms(&s));
        if (r < 0 && errno != EINTR) {
            pl_log(PL_LOG_ERROR, NULL, 0, "poll: %s", strerror(errno));
            kill_all(&s);
            break;
        }
        /* notify messages first (on_exit_of reads the rest): they belong to
         * the process that sent them, not to a successor */
        for (int k = 0; r > 0 && k < n; k++)
            if (pf[k].revents & POLLIN) on_notify(&s, idx[k]);
        on_signals(&s);
        on_timers(&s);
        pl_notify_watchdog();
    }
    /* after a forced kill or a poll failure, reap what is left */
    for (int i = 0; i < SRV_N_STAGES; i++)
        if (s.pr[i].pid) { int st; waitpid(s.pr[i].pid, &st, 0); }
    cleanup(p, &s, remove_rundir);
    close(s.sigfd);
    pl_log(PL_LOG_INFO, NULL, 0, "stopped (exit status %d)", s.rc);
    return s.rc;
}
