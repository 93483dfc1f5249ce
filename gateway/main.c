/* glm-gateway — the OpenAI-compatible HTTP server in front of the pipeline.
 *
 *   glm-gateway --in ipc:///run/glmpipe/gw.in --out ipc:///run/glmpipe/tok.in \
 *               --port 8000 --served-model-name glm-5 --model /models/GLM-5
 *
 * --out connects a PUSH to glm-tokenize's --in; --in binds the PULL the
 * last parser's --out connects to (docs/protocol.md §2). The ready line on
 * stderr names the URL (useful with --port 0). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "gateway.h"
#include "notify.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: glm-gateway --in EP --out EP (--served-model-name NAME [NAME...] | --model DIR) [options]\n"
            "  --in EP                     PULL socket the last parser's --out connects to (binds)\n"
            "  --out EP                    PUSH socket to glm-tokenize's --in (connects)\n"
            "  --host H                    listen address (default 0.0.0.0)\n"
            "  --port P                    listen port (default 8000; 0 = any free port)\n"
            "  --served-model-name N [N..] names clients may use; the first is reported (default: --model)\n"
            "  --model DIR                 the model path: the default name, reported as `root`\n"
            "                              (the gateway never reads the model's files)\n"
            "  --max-model-len N           reported by /v1/models and used for metric buckets\n"
            "  --api-key K                 require 'Authorization: Bearer K' on /v1/* (repeatable;\n"
            "                              env GLMPIPE_API_KEY adds one)\n"
            "  --max-request-bytes N       request body limit (default 8388608) -> 413\n"
            "  --max-header-bytes N        request line + headers limit (default 32768) -> 431\n"
            "  --max-headers N             header count limit (default 100) -> 431\n"
            "  --max-connections N         open connections (default 10000); beyond: 503 and close\n"
            "  --header-timeout S          seconds for a request's headers to arrive (default 10)\n"
            "  --body-timeout S            longest pause inside a request body (default 30)\n"
            "  --keepalive-timeout S       idle keep-alive connections close after S (default 5)\n"
            "  --write-timeout S           a client that reads nothing for S is dropped (default 60)\n"
            "  --drain-timeout S           on SIGTERM, wait S for open responses (default 30)\n"
            "  --ping-interval S           heartbeat through the pipeline every S (default 1)\n"
            "  --stage-timeout S           a heartbeat not back after S = pipeline down (default 60)\n"
            "  --health-timeout S          /health waits S for its ping (default 5)\n"
            "  --enable-force-include-usage  usage chunks in every stream (as vLLM's flag)\n"
            "  --log-level LEVEL           debug|info|warning|error (default info)\n"
            "glm-gateway --convert messages|messages-count|responses: request bodies (JSON Lines, stdin)\n"
            "  -> the chat bodies sent down the pipeline (stdout)\n"
            "Signals: SIGTERM/SIGINT drain and exit 0; SIGUSR1 = a stage restarted (fail what is in flight).\n");
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v > 1e6) return -1;
    *out = v;
    return 0;
}

/* `--served-model-name a b c` takes several values, as vLLM's does:
 * rewrite it into one `--served-model-name` per value for getopt. */
static char **expand_names(int argc, char **argv, int *out_argc)
{
    char **v = calloc((size_t)argc * 2 + 1, sizeof *v);
    if (!v) return NULL;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        v[n++] = argv[i];
        if (strcmp(argv[i], "--served-model-name") || i + 1 >= argc) continue;
        v[n++] = argv[++i];
        while (i + 1 < argc && argv[i + 1][0] != '-') {
            v[n++] = "--served-model-name";
            v[n++] = argv[++i];
        }
    }
    *out_argc = n;
    return v;
}

int main(int argc, char **argv)
{
    pl_log_init("glm-gateway");
    if (argc == 3 && !strcmp(argv[1], "--convert")) return gw_convert_main(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    gw_opts o;
    gw_opts_default(&o);
    static const struct option longopts[] = {
        {"in", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},
        {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},
        {"served-model-name", required_argument, 0, 'n'},
        {"model", required_argument, 0, 'm'},
        {"max-model-len", required_argument, 0, 'L'},
        {"api-key", required_argument, 0, 'k'},
        {"max-request-bytes", required_argument, 0, 'B'},
        {"max-header-bytes", required_argument, 0, 'E'},
        {"max-headers", required_argument, 0, 'N'},
        {"max-connections", required_argument, 0, 'C'},
        {"header-timeout", required_argument, 0, 1},
        {"body-timeout", required_argument, 0, 2},
        {"keepalive-timeout", required_argument, 0, 3},
        {"write-timeout", required_argument, 0, 4},
        {"drain-timeout", required_argument, 0, 5},
        {"ping-interval", required_argument, 0, 6},
        {"stage-timeout", required_argument, 0, 7},
        {"health-timeout", required_argument, 0, 8},
        {"enable-force-include-usage", no_argument, 0, 9},
        {"log-level", required_argument, 0, 'l'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int xargc;
    char **xargv = expand_names(argc, argv, &xargc);
    if (!xargv) return 1;
    int c, bad = 0;
    int64_t v;
    while (!bad && (c = getopt_long(xargc, xargv, "h", longopts, NULL)) != -1) {
        double *secs = NULL;
        switch (c) {
        case 'i': o.in_ep = optarg; break;
        case 'o': o.out_ep = optarg; break;
        case 'H': o.host = optarg; break;
        case 'p':
            if (pl_parse_i64(optarg, 0, 65535, &v)) { fprintf(stderr, "glm-gateway: --port must be 0..65535\n"); bad = 1; }
            o.port = (int)v;
            break;
        case 'n':
            if (o.n_names >= GW_MAX_NAMES) { fprintf(stderr, "glm-gateway: at most %d served model names\n", GW_MAX_NAMES); bad = 1; }
            else o.names[o.n_names++] = optarg;
            break;
        case 'm': o.model = optarg; break;
        case 'L':
            if (pl_parse_i64(optarg, 1, INT64_MAX, &o.max_model_len)) { fprintf(stderr, "glm-gateway: --max-model-len must be a positive integer\n"); bad = 1; }
            break;
        case 'k':
            if (o.n_keys >= GW_MAX_KEYS) { fprintf(stderr, "glm-gateway: at most %d API keys\n", GW_MAX_KEYS); bad = 1; }
            else o.keys[o.n_keys++] = optarg;
            break;
        case 'B':
            if (pl_parse_i64(optarg, 1, (int64_t)1 << 32, &o.max_request_bytes)) { fprintf(stderr, "glm-gateway: --max-request-bytes must be 1..4294967296\n"); bad = 1; }
            break;
        case 'E':
            if (pl_parse_i64(optarg, 1024, 1 << 24, &o.max_header_bytes)) { fprintf(stderr, "glm-gateway: --max-header-bytes must be 1024..16777216\n"); bad = 1; }
            break;
        case 'N':
            if (pl_parse_i64(optarg, 1, 100000, &o.max_headers)) { fprintf(stderr, "glm-gateway: --max-headers must be 1..100000\n"); bad = 1; }
            break;
        case 'C':
            if (pl_parse_i64(optarg, 1, 10000000, &o.max_connections)) { fprintf(stderr, "glm-gateway: --max-connections must be 1..10000000\n"); bad = 1; }
            break;
        case 1: secs = &o.header_timeout; break;
        case 2: secs = &o.body_timeout; break;
        case 3: secs = &o.keepalive_timeout; break;
        case 4: secs = &o.write_timeout; break;
        case 5: secs = &o.drain_timeout; break;
        case 6: secs = &o.ping_interval; break;
        case 7: secs = &o.stage_timeout; break;
        case 8: secs = &o.health_timeout; break;
        case 9: o.force_include_usage = true; break;
        case 'l':
            if (!strcmp(optarg, "debug") || !strcmp(optarg, "trace")) pl_log_set_level(PL_LOG_DEBUG);
            else if (!strcmp(optarg, "info")) pl_log_set_level(PL_LOG_INFO);
            else if (!strcmp(optarg, "warning") || !strcmp(optarg, "warn")) pl_log_set_level(PL_LOG_WARN);
            else if (!strcmp(optarg, "error") || !strcmp(optarg, "critical")) pl_log_set_level(PL_LOG_ERROR);
            else { fprintf(stderr, "glm-gateway: --log-level must be debug, info, warning or error\n"); bad = 1; }
            break;
        case 'h': usage(stdout); free(xargv); return 0;
        default: bad = 1; break;
        }
        if (secs && parse_seconds(optarg, secs)) {
            fprintf(stderr, "glm-gateway: %s takes a number of seconds\n", xargv[optind - 2]);
            bad = 1;
        }
    }
    if (!bad && optind != xargc) { fprintf(stderr, "glm-gateway: unexpected argument '%s'\n", xargv[optind]); bad = 1; }
    const char *envkey = getenv("GLMPIPE_API_KEY");
    if (envkey && *envkey && o.n_keys < GW_MAX_KEYS) o.keys[o.n_keys++] = envkey;
    if (!o.n_names && o.model) o.names[o.n_names++] = o.model;
    if (!bad && (!o.in_ep || !o.out_ep || !o.n_names)) bad = 1;
    if (bad) { usage(stderr); free(xargv); return 2; }

    /* one descriptor per connection: take what the hard limit allows */
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char err[512];
    gw_server *s;
    uv_loop_t *loop = uv_default_loop();
    if (gw_server_init(&s, loop, &o, err, sizeof err)) {
        fprintf(stderr, "glm-gateway: %s\n", err);
        free(xargv);
        return 1;
    }
    pl_log(PL_LOG_INFO, NULL, 0, "ready: http://%s:%d (model %s; pipeline out %s, in %s)",
           o.host, gw_server_port(s), o.names[0], o.out_ep, o.in_ep);
    pl_notify_ready();   /* listening and wired: the supervisor (glm-serve, systemd) may route traffic */
    int rc = gw_server_run(s);
    gw_server_free(s);
    uv_loop_close(loop);
    free(xargv);
    return rc ? 1 : 0;
}
