/* serve.h — glm-serve: the whole pipeline from one `vllm serve`-style
 * command line.
 *
 *   srv_cfg_parse    argv (vllm serve flags + glm-serve's own) -> srv_cfg
 *   srv_plan_build   srv_cfg -> srv_plan: each stage's program, arguments,
 *                    endpoints and environment (flags.c)
 *   srv_plan_print   the plan as shell command lines (--print-commands)
 *   srv_run          start the stages, wait for READY=1 from each, print the
 *                    ready line, restart crashed stages with back-off, stop
 *                    them head first on SIGTERM/SIGINT (supervise.c)
 *
 * Every vLLM flag is handed, under its own name, to the stage that owns it
 * (the table in flags.c); a stage refuses what it cannot do yet, so the
 * stages stay the one place that knows their features. glm-serve checks only
 * what it uses itself (port, log level, flag combinations vLLM refuses). */
#ifndef SRV_SERVE_H
#define SRV_SERVE_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include "pl.h"

/* The stages in pipeline order, head first: also the order they are stopped in. */
enum srv_stage_id {
    SRV_GATEWAY,
    SRV_TOKENIZE,
    SRV_ENGINE,
    SRV_DETOK,
    SRV_REASONING,
    SRV_TOOLS,
    SRV_N_STAGES,
};

/* A growable NULL-terminated list of owned strings (an argv tail). */
typedef struct srv_args {
    char **v;
    int    n, cap;
    int    oom;   /* sticky, like pl_buf */
} srv_args;

void srv_args_push(srv_args *a, const char *s);
void srv_args_free(srv_args *a);

typedef struct srv_cfg {
    const char *model;                    /* --model DIR or the positional DIR */
    const char *host;                     /* default 127.0.0.1 (vLLM: every interface) */
    int         port;                     /* default 8000 */
    srv_args    served_names;             /* --served-model-name N [N ...] */
    srv_args    api_keys;                 /* --api-key K [K ...], also GLMPIPE_API_KEY */
    int64_t     max_model_len;            /* --max-model-len, or 0: config.json's */
    const char *log_level;                /* GLM_LOG_LEVEL for every stage (from --uvicorn-log-level), or NULL */
    srv_args    flags[SRV_N_STAGES];      /* vLLM flags handed to each stage, in the order given */
    const char *command[SRV_N_STAGES];    /* --stage NAME=COMMAND, or NULL */
    bool        reasoning;                /* --reasoning-parser given: glm-parse-reasoning runs */
    bool        tool_parser;              /* --tool-call-parser given */
    bool        auto_tools;               /* --enable-auto-tool-choice */
    const char *runtime_dir;              /* --runtime-dir, or NULL: a private new one */
    bool        print_commands;           /* --print-commands / --dry-run */
    /* supervision, seconds */
    double      ready_timeout;            /* a stage must send READY=1 within this (default 600) */
    double      stop_timeout;             /* after SIGTERM, SIGKILL after this (default 60) */
    double      restart_delay;            /* first back-off (default 1) */
    double      restart_delay_max;        /* back-off cap (default 30) */
    double      watchdog_sec;             /* WATCHDOG_USEC handed to the stages; 0 = off */
} srv_cfg;

/* Parse a glm-serve command line (argv[0] skipped). Returns 0; 1 when help
 * was printed to `out`; PL_ERR_INVALID with a message naming the flag.
 * Strings in cfg point into argv. */
int  srv_cfg_parse(srv_cfg *cfg, int argc, char **argv, FILE *out, char *err, size_t errlen);
void srv_cfg_free(srv_cfg *cfg);

const char *srv_stage_name(enum srv_stage_id id);   /* "engine" */

/* Endpoint and socket paths must fit a sockaddr_un (108 bytes with "ipc://" gone). */
#define SRV_PATH_MAX 108

typedef struct srv_stage {
    bool     enabled;
    char     prog[PATH_MAX];          /* BINDIR/glm-X, or the --stage COMMAND (shell text) */
    bool     shell;                   /* prog is a --stage COMMAND: run as sh -c 'exec COMMAND "$@"' */
    srv_args args;                    /* arguments after the program */
    char     in_ep[SRV_PATH_MAX + 8]; /* ipc://RUNDIR/NAME.in (binds) */
    char     notify[SRV_PATH_MAX];    /* RUNDIR/notify.NAME: its NOTIFY_SOCKET */
} srv_stage;

typedef struct srv_plan {
    srv_stage   st[SRV_N_STAGES];
    char        bindir[PATH_MAX];     /* where the glm-* programs are */
    char        rundir[SRV_PATH_MAX];
    char        url[300];             /* http://HOST:PORT/v1 */
    const char *model;
    const char *log_level;            /* GLM_LOG_LEVEL, or NULL: inherited */
    const char *api_key_env;          /* the one key handed to the gateway as GLMPIPE_API_KEY, or NULL */
    double      ready_timeout, stop_timeout, restart_delay, restart_delay_max, watchdog_sec;
} srv_plan;

/* rundir: the runtime directory the endpoints live in (need not exist yet).
 * bindir: where glm-* programs are. Reads MODEL/config.json when
 * --max-model-len is absent (the gateway reports it). */
int  srv_plan_build(srv_plan *p, const srv_cfg *cfg, const char *bindir, const char *rundir,
                    char *err, size_t errlen);
void srv_plan_free(srv_plan *p);

/* One line per enabled stage, "NAME: [ENV=VALUE ...] PROGRAM ARGS", arguments
 * shell-quoted (an API key is shown as <hidden>). */
void srv_plan_print(const srv_plan *p, FILE *f);

/* Run the plan until a stop signal (returns 0 when every stage stopped
 * cleanly, 1 otherwise) or until a stage fails before it was ever ready
 * (returns 1). The runtime directory is created when missing and the files
 * glm-serve made in it are removed at the end. */
int srv_run(const srv_plan *p, bool created_rundir);

#endif
