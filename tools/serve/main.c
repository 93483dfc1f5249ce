/* glm-serve — one command for the whole server, with `vllm serve`'s flags:
 *
 *   glm-serve MODEL_DIR [--host H] [--port P] [--reasoning-parser glm45]
 *             [--tool-call-parser glm47 --enable-auto-tool-choice] [...]
 *
 * Starts every stage wired over ipc:// endpoints in a private runtime
 * directory, waits for each one's READY=1, prints one ready line with the
 * URL, restarts a crashed stage with back-off, and on SIGTERM/SIGINT stops
 * the stages head first and exits 0 (serve.h, flags.c, supervise.c). */
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve.h"

/* The directory glm-serve runs from: the other glm-* programs are there. */
static int own_dir(char *out, size_t n)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return -1;
    exe[len] = 0;
    snprintf(out, n, "%s", dirname(exe));
    return 0;
}

int main(int argc, char **argv)
{
    pl_log_init("glm-serve");
    srv_cfg cfg;
    char err[1024];
    int rc = srv_cfg_parse(&cfg, argc, argv, stdout, err, sizeof err);
    if (rc == 1) { srv_cfg_free(&cfg); return 0; }
    if (rc) {
        fprintf(stderr, "glm-serve: %s\n", err);
        srv_cfg_free(&cfg);
        return 2;
    }
    if (cfg.log_level) {   /* --uvicorn-log-level: glm-serve's own lines too */
        setenv("GLM_LOG_LEVEL", cfg.log_level, 1);
        pl_log_init("glm-serve");
    }
    char bindir[PATH_MAX];
    if (own_dir(bindir, sizeof bindir)) {
        fprintf(stderr, "glm-serve: cannot find its own directory: %s\n", strerror(errno));
        srv_cfg_free(&cfg);
        return 1;
    }

    /* The runtime directory: --runtime-dir (made if missing), else a new
     * private one (mode 0700) under $XDG_RUNTIME_DIR or /tmp. --print-commands
     * makes nothing and shows the template. */
    char rundir[SRV_PATH_MAX + 64];
    bool made = false;
    if (cfg.runtime_dir) {
        snprintf(rundir, sizeof rundir, "%s", cfg.runtime_dir);
        if (!cfg.print_commands) {
            if (mkdir(rundir, 0700) == 0) made = true;
            else if (errno != EEXIST) {
                fprintf(stderr, "glm-serve: --runtime-dir %s: %s\n", rundir, strerror(errno));
                srv_cfg_free(&cfg);
                return 1;
            }
        }
    } else {
        const char *base = getenv("XDG_RUNTIME_DIR");
        snprintf(rundir, sizeof rundir, "%s/glm-serve.XXXXXX", base && *base ? base : "/tmp");
        if (strlen(rundir) >= SRV_PATH_MAX - 32) snprintf(rundir, sizeof rundir, "/tmp/glm-serve.XXXXXX");
        if (!cfg.print_commands) {
            if (!mkdtemp(rundir)) {
                fprintf(stderr, "glm-serve: cannot make a runtime directory %s: %s\n", rundir, strerror(errno));
                srv_cfg_free(&cfg);
                return 1;
            }
            made = true;
        }
    }

    srv_plan plan;
    rc = srv_plan_build(&plan, &cfg, bindir, rundir, err, sizeof err);
    if (!rc && cfg.print_commands) srv_plan_print(&plan, stdout);
    /* every program must be there before anything starts */
    for (int s = 0; !rc && !cfg.print_commands && s < SRV_N_STAGES; s++) {
        const srv_stage *st = &plan.st[s];
        if (st->enabled && !st->shell && access(st->prog, X_OK) != 0) {
            snprintf(err, sizeof err, "%s: %s (not built?); --stage %s=COMMAND runs something else in its place",
                     st->prog, strerror(errno), srv_stage_name((enum srv_stage_id)s));
            rc = PL_ERR_NOTFOUND;
        }
    }
    if (rc) fprintf(stderr, "glm-serve: %s\n", err);
    int status = rc ? 2 : 0;
    if (!rc && !cfg.print_commands) status = srv_run(&plan, made);
    else if (made) rmdir(rundir);
    srv_plan_free(&plan);
    srv_cfg_free(&cfg);
    return status;
}
