/* flags.c — glm-serve's command line and the plan it becomes: which stage
 * gets which `vllm serve` flag, the endpoints that wire the stages, and the
 * environment each one starts with. */
#include "serve.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "json.h"

/* ================================================================ srv_args */

void srv_args_push(srv_args *a, const char *s)
{
    if (a->oom) return;
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        char **v = realloc(a->v, sizeof *v * (size_t)cap);
        if (!v) { a->oom = 1; return; }
        a->v = v;
        a->cap = cap;
    }
    if (!(a->v[a->n] = strdup(s))) { a->oom = 1; return; }
    a->v[++a->n] = NULL;
}

void srv_args_free(srv_args *a)
{
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* ================================================================ stages */

static const struct {
    const char *name, *prog, *alias;
} STAGES[SRV_N_STAGES] = {
    [SRV_GATEWAY]   = {"gateway", "glm-gateway", NULL},
    [SRV_TOKENIZE]  = {"tokenize", "glm-tokenize", NULL},
    [SRV_ENGINE]    = {"engine", "glm-engine", NULL},
    [SRV_DETOK]     = {"detok", "glm-detok", NULL},
    [SRV_REASONING] = {"parse-reasoning", "glm-parse-reasoning", "reasoning"},
    [SRV_TOOLS]     = {"parse-tools", "glm-parse-tools", "tools"},
};

const char *srv_stage_name(enum srv_stage_id id) { return STAGES[id].name; }

static int stage_by_name(const char *s, size_t n)
{
    for (int i = 0; i < SRV_N_STAGES; i++) {
        const char *a = STAGES[i].alias, *p = STAGES[i].prog;
        if ((strlen(STAGES[i].name) == n && !memcmp(STAGES[i].name, s, n)) ||
            (a && strlen(a) == n && !memcmp(a, s, n)) || (strlen(p) == n && !memcmp(p, s, n)))
            return i;
    }
    return -1;
}

/* ================================================================ the flag table
 *
 * One row per flag glm-serve accepts. `to` lists the stages a pass-through
 * flag is handed to, under its canonical name; rows with a `special` are
 * read by glm-serve itself (and may be handed on too, see plan_build). Rows
 * sharing a `dest` are one setting (argparse: the last one given wins). */

#define TO(s) (1u << (s))

enum kind { K_VALUE, K_BOOL, K_LIST };
enum special {
    S_NONE, S_MODEL, S_HOST, S_PORT, S_NAMES, S_KEYS, S_MAXLEN, S_LOGLEVEL,
    S_REASONING, S_TOOLPARSER, S_AUTOTOOLS,
    /* glm-serve's own */
    S_STAGE, S_RUNDIR, S_PRINT, S_READY_TIMEOUT, S_STOP_TIMEOUT, S_RESTART_DELAY, S_RESTART_MAX, S_WATCHDOG, S_HELP,
};

typedef struct opt {
    const char  *name;      /* canonical, as handed on */
    const char  *alias;     /* short form, or NULL */
    enum kind    kind;
    unsigned     to;        /* stages it is handed to */
    enum special special;
    const char  *dest;      /* shared setting (BooleanOptional pairs), or NULL: its own */
    const char  *help;
} opt;

static const opt OPTS[] = {
    /* where the model and the server are */
    {"--model", NULL, K_VALUE, 0, S_MODEL, NULL, "model directory (also the first positional argument)"},
    {"--host", NULL, K_VALUE, 0, S_HOST, NULL, "address to listen on (default 127.0.0.1; vLLM's: every interface) [gateway]"},
    {"--port", NULL, K_VALUE, 0, S_PORT, NULL, "port (default 8000) [gateway]"},
    {"--served-model-name", NULL, K_LIST, 0, S_NAMES, NULL, "NAME [NAME ...]: names accepted; the first is reported [gateway, tokenize]"},
    {"--api-key", NULL, K_LIST, 0, S_KEYS, NULL, "KEY [KEY ...]: required on /v1 (or env GLMPIPE_API_KEY) [gateway]"},
    {"--max-model-len", NULL, K_VALUE, TO(SRV_TOKENIZE) | TO(SRV_ENGINE), S_MAXLEN, NULL,
     "prompt + output tokens (default: config.json's max_position_embeddings; 32k, 32K, auto), gateway too"},
    {"--uvicorn-log-level", NULL, K_VALUE, 0, S_LOGLEVEL, NULL,
     "critical|error|warning|info|debug|trace: GLM_LOG_LEVEL of every stage, gateway --log-level"},
    /* glm-engine */
    {"--max-num-seqs", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "sequences per step at most"},
    {"--max-num-batched-tokens", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "tokens per step at most"},
    {"--block-size", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "tokens per KV block"},
    {"--gpu-memory-utilization", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "GPU memory fraction (GPU backends)"},
    {"--kv-cache-memory-bytes", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "KV cache budget in bytes (4G, 512M ...)"},
    {"--dtype", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "auto | float32 | bfloat16: linear compute (auto = float32 here)"},
    {"--kv-cache-dtype", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "auto | fp8"},
    {"--enable-prefix-caching", NULL, K_BOOL, TO(SRV_ENGINE), S_NONE, "prefix-caching", "prefix caching on"},
    {"--no-enable-prefix-caching", NULL, K_BOOL, TO(SRV_ENGINE), S_NONE, "prefix-caching", "prefix caching off"},
    {"--weights-hugepages", NULL, K_BOOL, TO(SRV_ENGINE), S_NONE, "weights-hugepages",
     "cpu backend: weights copied into 2 MiB huge pages (default)"},
    {"--no-weights-hugepages", NULL, K_BOOL, TO(SRV_ENGINE), S_NONE, "weights-hugepages",
     "cpu backend: weights read from the file's shared page cache"},
    {"--speculative-config", "-sc", K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "JSON, e.g. '{\"method\":\"mtp\",\"num_speculative_tokens\":3}'"},
    {"--speculative-config.method", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "mtp"},
    {"--speculative-config.num_speculative_tokens", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "draft tokens per step"},
    {"--tensor-parallel-size", "-tp", K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "ranks per layer"},
    {"--enable-expert-parallel", "-ep", K_BOOL, TO(SRV_ENGINE), S_NONE, "expert-parallel", "experts spread over the ranks"},
    {"--no-enable-expert-parallel", NULL, K_BOOL, TO(SRV_ENGINE), S_NONE, "expert-parallel", "experts sliced per rank"},
    {"--nnodes", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "nodes of a multi-node group (cuda + NCCL; cpu: 1)"},
    {"--node-rank", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "this node's rank in a multi-node group"},
    {"--master-addr", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "multi-node rendezvous address (node 0)"},
    {"--master-port", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "multi-node rendezvous port"},
    {"--rendezvous-timeout", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "seconds for every node to arrive (glmpipe; default 300)"},
    {"--seed", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "RNG seed for requests without their own"},
    {"--backend", NULL, K_VALUE, TO(SRV_ENGINE), S_NONE, NULL, "glm-engine compute backend (glmpipe; default cpu)"},
    /* glm-tokenize */
    {"--chat-template", NULL, K_VALUE, TO(SRV_TOKENIZE), S_NONE, NULL, "Jinja template file instead of the model's"},
    {"--default-chat-template-kwargs", NULL, K_VALUE, TO(SRV_TOKENIZE), S_NONE, NULL, "JSON object of chat_template_kwargs defaults"},
    {"--generation-config", NULL, K_VALUE, TO(SRV_TOKENIZE), S_NONE, NULL, "auto | vllm | DIR: sampling defaults"},
    {"--enable-auto-tool-choice", NULL, K_BOOL, TO(SRV_TOKENIZE), S_AUTOTOOLS, NULL, "allow tool_choice auto (needs --tool-call-parser)"},
    /* the parsers */
    {"--tool-call-parser", NULL, K_VALUE, TO(SRV_TOOLS), S_TOOLPARSER, NULL, "glm47: tool calls become tool_calls"},
    {"--reasoning-parser", NULL, K_VALUE, TO(SRV_REASONING), S_REASONING, NULL, "glm45: <think> text becomes reasoning"},
    /* glm-serve's own */
    {"--stage", NULL, K_VALUE, 0, S_STAGE, NULL, "NAME=COMMAND: run COMMAND (shell words) instead of glm-NAME; it gets the stage's arguments"},
    {"--runtime-dir", NULL, K_VALUE, 0, S_RUNDIR, NULL, "directory for the ipc:// endpoints and notify sockets (default: a new private one)"},
    {"--print-commands", "--dry-run", K_BOOL, 0, S_PRINT, NULL, "print each stage's command line and exit"},
    {"--ready-timeout", NULL, K_VALUE, 0, S_READY_TIMEOUT, NULL, "seconds a stage may take to send READY=1 (default 600)"},
    {"--stop-timeout", NULL, K_VALUE, 0, S_STOP_TIMEOUT, NULL, "seconds a stage may take to stop before SIGKILL (default 60)"},
    {"--restart-delay", NULL, K_VALUE, 0, S_RESTART_DELAY, NULL, "first restart back-off in seconds, doubled per crash (default 1)"},
    {"--restart-delay-max", NULL, K_VALUE, 0, S_RESTART_MAX, NULL, "back-off cap in seconds (default 30)"},
    {"--watchdog-sec", NULL, K_VALUE, 0, S_WATCHDOG, NULL, "restart a stage silent this long (WATCHDOG=1 pings; default 0 = off)"},
    {"--help", "-h", K_BOOL, 0, S_HELP, NULL, "this text"},
};
#define N_OPTS ((int)PL_ARRAY_LEN(OPTS))

static void print_help(FILE *f)
{
    fputs("usage: glm-serve [MODEL_DIR] [--model MODEL_DIR] [vllm serve flags] [glm-serve flags]\n\n"
          "Starts glm-gateway, glm-tokenize, glm-engine, glm-detok, glm-parse-reasoning (with\n"
          "--reasoning-parser) and glm-parse-tools wired over ipc:// endpoints, supervises them and\n"
          "prints one line with the URL when every stage is ready. Each vllm serve flag goes to the\n"
          "stage that owns it, which refuses, by name, a feature it does not have yet.\n\n", f);
    for (int i = 0; i < N_OPTS; i++) {
        const opt *o = &OPTS[i];
        if (o->special == S_STAGE) fputs("\nglm-serve's own:\n", f);
        char name[96];
        snprintf(name, sizeof name, "%s%s%s", o->name, o->alias ? ", " : "", o->alias ? o->alias : "");
        char who[96] = "";
        for (int s = 0; s < SRV_N_STAGES; s++)
            if (o->to & TO(s)) snprintf(who + strlen(who), sizeof who - strlen(who), "%s%s", *who ? ", " : " [", STAGES[s].name);
        fprintf(f, "  %-44s %s%s%s\n", name, o->help, who, *who ? "]" : "");
    }
}

/* "--max_model_len" is "--max-model-len" to vLLM (argparse with
 * underscores turned to dashes before any '.'). */
static const opt *find_opt(const char *arg, size_t n, int *idx)
{
    char norm[96];
    if (n >= sizeof norm) return NULL;
    bool dotted = false;
    for (size_t i = 0; i < n; i++) {
        if (arg[i] == '.') dotted = true;
        norm[i] = arg[i] == '_' && !dotted && i > 1 ? '-' : arg[i];
    }
    norm[n] = 0;
    for (int i = 0; i < N_OPTS; i++) {
        if (!strcmp(OPTS[i].name, norm) || (OPTS[i].alias && !strcmp(OPTS[i].alias, norm))) {
            *idx = i;
            return &OPTS[i];
        }
    }
    return NULL;
}

/* ================================================================ parsing */

static int bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return PL_ERR_INVALID;
}

static int parse_seconds(const char *flag, const char *v, double lo, double *out, char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= lo && x <= 1e6))
        return bad(err, errlen, "%s: expected a number of seconds (at least %g), got '%s'", flag, lo, v);
    *out = x;
    return 0;
}

/* vLLM's --uvicorn-log-level names -> GLM_LOG_LEVEL */
static const char *log_level_of(const char *v)
{
    static const char *const map[][2] = {
        {"critical", "error"}, {"error", "error"}, {"warning", "warn"},
        {"info", "info"}, {"debug", "debug"}, {"trace", "debug"},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(map); i++)
        if (!strcmp(map[i][0], v)) return map[i][1];
    return NULL;
}

void srv_cfg_free(srv_cfg *cfg)
{
    srv_args_free(&cfg->served_names);
    srv_args_free(&cfg->api_keys);
    for (int i = 0; i < SRV_N_STAGES; i++) srv_args_free(&cfg->flags[i]);
}

int srv_cfg_parse(srv_cfg *cfg, int argc, char **argv, FILE *out, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 8000;
    cfg->ready_timeout = 600;
    cfg->stop_timeout = 60;
    cfg->restart_delay = 1;
    cfg->restart_delay_max = 30;
    /* per row: the value given last (NULL: not given); for a dest shared by
     * several rows, the row given last holds it and the others are cleared */
    const char *val[N_OPTS];
    bool given[N_OPTS];
    memset(val, 0, sizeof val);
    memset(given, 0, sizeof given);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {   /* the positional MODEL */
            if (cfg->model) return bad(err, errlen, "unexpected argument '%s' (the model is already '%s')", a, cfg->model);
            cfg->model = a;
            continue;
        }
        const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        int k;
        const opt *o = find_opt(a, n, &k);
        if (!o) return bad(err, errlen, "'%.*s' is not a glm-serve option (see glm-serve --help for the vllm serve flags it takes)", (int)n, a);
        const char *v = NULL;
        if (o->kind == K_BOOL) {
            if (eq) return bad(err, errlen, "%s takes no value", o->name);
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc && (o->kind != K_LIST || argv[i + 1][0] != '-')) {
            v = argv[++i];
        }
        if (o->kind != K_BOOL && !v) return bad(err, errlen, "%s needs a value", o->name);
        if (o->kind != K_BOOL && !*v) return bad(err, errlen, "%s: empty value", o->name);

        switch (o->special) {
        case S_HELP:
            print_help(out);
            return 1;
        case S_MODEL:
            if (cfg->model) return bad(err, errlen, "--model %s: the model is already '%s'", v, cfg->model);
            cfg->model = v;
            continue;
        case S_NAMES:
        case S_KEYS: {   /* nargs='+': the words up to the next flag; given again, replaced */
            srv_args *l = o->special == S_NAMES ? &cfg->served_names : &cfg->api_keys;
            srv_args_free(l);
            srv_args_push(l, v);
            while (!eq && i + 1 < argc && argv[i + 1][0] != '-') srv_args_push(l, argv[++i]);
            continue;
        }
        case S_STAGE: {
            const char *e = strchr(v, '=');
            int s = e ? stage_by_name(v, (size_t)(e - v)) : -1;
            if (!e || !e[1]) return bad(err, errlen, "--stage %s: expected NAME=COMMAND", v);
            if (s < 0)
                return bad(err, errlen, "--stage %s: unknown stage '%.*s' (gateway, tokenize, engine, detok, "
                           "parse-reasoning, parse-tools)", v, (int)(e - v), v);
            cfg->command[s] = e + 1;
            continue;
        }
        case S_RUNDIR: cfg->runtime_dir = v; continue;
        case S_PRINT: cfg->print_commands = true; continue;
        case S_READY_TIMEOUT: if (parse_seconds(o->name, v, 0.1, &cfg->ready_timeout, err, errlen)) return PL_ERR_INVALID; continue;
        case S_STOP_TIMEOUT: if (parse_seconds(o->name, v, 0.1, &cfg->stop_timeout, err, errlen)) return PL_ERR_INVALID; continue;
        case S_RESTART_DELAY: if (parse_seconds(o->name, v, 0.01, &cfg->restart_delay, err, errlen)) return PL_ERR_INVALID; continue;
        case S_RESTART_MAX: if (parse_seconds(o->name, v, 0.01, &cfg->restart_delay_max, err, errlen)) return PL_ERR_INVALID; continue;
        case S_WATCHDOG: if (parse_seconds(o->name, v, 0, &cfg->watchdog_sec, err, errlen)) return PL_ERR_INVALID; continue;
        case S_HOST: cfg->host = v; continue;
        case S_PORT: {
            int64_t p;
            if (pl_parse_i64(v, 0, 65535, &p)) return bad(err, errlen, "--port: expected a port number 0-65535, got '%s'", v);
            cfg->port = (int)p;
            continue;
        }
        case S_LOGLEVEL:
            if (!(cfg->log_level = log_level_of(v)))
                return bad(err, errlen, "--uvicorn-log-level: '%s' is not one of critical, error, warning, info, debug, trace", v);
            continue;
        case S_MAXLEN:   /* one integer for every stage and the gateway; auto: the model's */
            if (!strcmp(v, "auto") || !strcmp(v, "-1")) cfg->max_model_len = 0;
            else if (pl_parse_human_i64(v, 1, INT32_MAX, &cfg->max_model_len))
                return bad(err, errlen, "--max-model-len: expected a positive number of tokens (32768, 32k, 32K or auto), got '%s'", v);
            continue;
        case S_REASONING: cfg->reasoning = true; break;
        case S_TOOLPARSER: cfg->tool_parser = true; break;
        case S_AUTOTOOLS: cfg->auto_tools = true; break;
        default: break;
        }
        /* a pass-through flag: remember its last value (clearing its dest mates) */
        for (int j = 0; o->dest && j < N_OPTS; j++)
            if (OPTS[j].dest && !strcmp(OPTS[j].dest, o->dest)) given[j] = false, val[j] = NULL;
        given[k] = true;
        val[k] = v;
    }

    if (!cfg->model) return bad(err, errlen, "no model: glm-serve MODEL_DIR or --model MODEL_DIR");
    if (cfg->auto_tools && !cfg->tool_parser)   /* vLLM's own argument check, same words */
        return bad(err, errlen, "--enable-auto-tool-choice requires --tool-call-parser");
    if (cfg->restart_delay_max < cfg->restart_delay)
        return bad(err, errlen, "--restart-delay-max %g is below --restart-delay %g", cfg->restart_delay_max, cfg->restart_delay);
    if (!cfg->api_keys.n) {
        const char *e = getenv("GLMPIPE_API_KEY");
        if (e && *e) srv_args_push(&cfg->api_keys, e);
    }
    /* hand each flag to its stages, table order */
    for (int k = 0; k < N_OPTS; k++) {
        char num[32];
        bool maxlen = OPTS[k].special == S_MAXLEN && cfg->max_model_len > 0;
        if (!given[k] && !maxlen) continue;
        const char *v = val[k];
        if (maxlen) snprintf(num, sizeof num, "%lld", (long long)cfg->max_model_len), v = num;
        for (int s = 0; s < SRV_N_STAGES; s++) {
            if (!(OPTS[k].to & TO(s))) continue;
            srv_args_push(&cfg->flags[s], OPTS[k].name);
            if (v) srv_args_push(&cfg->flags[s], v);
        }
    }
    for (int s = 0; s < SRV_N_STAGES; s++)
        if (cfg->flags[s].oom) return bad(err, errlen, "out of memory");
    return 0;
}

/* ================================================================ the plan */

/* max_position_embeddings of MODEL/config.json (text_config's for a
 * multimodal config), as glm-tokenize and glm-engine take it: the gateway
 * reports it and reads no model file itself. */
static int config_max_len(const char *model, int64_t *out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", model);
    pl_buf b;
    pl_buf_init(&b);
    cJSON *cfg = NULL;
    char perr[256];
    int rc = pl_file_read(path, &b, 16u << 20, perr, sizeof perr);
    if (!rc) rc = pl_json_parse(&cfg, b.data, b.len, perr, sizeof perr);
    pl_buf_free(&b);
    if (rc) return bad(err, errlen, "%s (the model directory needs a config.json)", perr);
    const cJSON *mpe = cJSON_GetObjectItemCaseSensitive(cfg, "max_position_embeddings");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
    if (!mpe && cJSON_IsObject(tc)) mpe = cJSON_GetObjectItemCaseSensitive(tc, "max_position_embeddings");
    bool ok = cJSON_IsNumber(mpe) && mpe->valuedouble >= 1 && mpe->valuedouble <= INT32_MAX;
    if (ok) *out = (int64_t)mpe->valuedouble;
    cJSON_Delete(cfg);
    return ok ? 0 : bad(err, errlen, "%s has no usable max_position_embeddings: pass --max-model-len", path);
}

static void push2(srv_args *a, const char *k, const char *v)
{
    srv_args_push(a, k);
    srv_args_push(a, v);
}

static void push_all(srv_args *a, const srv_args *from)
{
    for (int i = 0; i < from->n; i++) srv_args_push(a, from->v[i]);
}

void srv_plan_free(srv_plan *p)
{
    for (int i = 0; i < SRV_N_STAGES; i++) srv_args_free(&p->st[i].args);
}

int srv_plan_build(srv_plan *p, const srv_cfg *cfg, const char *bindir, const char *rundir,
                   char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    /* the longest path made in rundir must fit a sockaddr_un */
    if (strlen(rundir) + sizeof "/notify.parse-reasoning" > SRV_PATH_MAX)
        return bad(err, errlen, "runtime directory '%s' is too long for unix socket paths (%d bytes at most with its file names)",
                   rundir, SRV_PATH_MAX);
    if (strlen(bindir) + 32 > sizeof p->bindir) return bad(err, errlen, "program directory path too long");
    snprintf(p->bindir, sizeof p->bindir, "%s", bindir);
    snprintf(p->rundir, sizeof p->rundir, "%s", rundir);
    p->model = cfg->model;
    p->log_level = cfg->log_level;
    p->ready_timeout = cfg->ready_timeout;
    p->stop_timeout = cfg->stop_timeout;
    p->restart_delay = cfg->restart_delay;
    p->restart_delay_max = cfg->restart_delay_max;
    p->watchdog_sec = cfg->watchdog_sec;
    bool v6 = strchr(cfg->host, ':') != NULL;
    snprintf(p->url, sizeof p->url, "http://%s%s%s:%d/v1", v6 ? "[" : "", cfg->host, v6 ? "]" : "", cfg->port);

    int64_t maxlen = cfg->max_model_len;
    if (!maxlen && config_max_len(cfg->model, &maxlen, err, errlen)) return PL_ERR_INVALID;
    char maxlen_s[32], port_s[16];
    snprintf(maxlen_s, sizeof maxlen_s, "%lld", (long long)maxlen);
    snprintf(port_s, sizeof port_s, "%d", cfg->port);

    for (int s = 0; s < SRV_N_STAGES; s++) {
        srv_stage *st = &p->st[s];
        st->enabled = s != SRV_REASONING || cfg->reasoning;
        snprintf(st->in_ep, sizeof st->in_ep, "ipc://%s/%s.in", rundir, STAGES[s].name);
        snprintf(st->notify, sizeof st->notify, "%s/notify.%s", rundir, STAGES[s].name);
        st->shell = cfg->command[s] != NULL;
        if (st->shell && strlen(cfg->command[s]) >= sizeof st->prog)
            return bad(err, errlen, "--stage %s: command too long", STAGES[s].name);
        snprintf(st->prog, sizeof st->prog, "%s%s%s", st->shell ? cfg->command[s] : bindir, st->shell ? "" : "/",
                 st->shell ? "" : STAGES[s].prog);
    }
    for (int s = 0; s < SRV_N_STAGES; s++) {
        srv_stage *st = &p->st[s];
        if (!st->enabled) continue;
        srv_args *a = &st->args;
        if (s == SRV_GATEWAY) {   /* docs/protocol.md: the glm-gateway command line */
            push2(a, "--host", cfg->host);
            push2(a, "--port", port_s);
            push2(a, "--model", cfg->model);
            push2(a, "--max-model-len", maxlen_s);
            if (cfg->served_names.n) {
                srv_args_push(a, "--served-model-name");
                push_all(a, &cfg->served_names);
            }
            /* one key travels in the environment, out of `ps`; several need the command line */
            if (cfg->api_keys.n == 1) p->api_key_env = cfg->api_keys.v[0];
            for (int i = 0; cfg->api_keys.n > 1 && i < cfg->api_keys.n; i++) push2(a, "--api-key", cfg->api_keys.v[i]);
            if (cfg->log_level) push2(a, "--log-level", cfg->log_level);
        }
        if (s == SRV_TOKENIZE || s == SRV_ENGINE || s == SRV_DETOK) push2(a, "--model", cfg->model);
        if (s == SRV_TOKENIZE && cfg->served_names.n) push2(a, "--served-model-name", cfg->served_names.v[0]);
        push_all(a, &cfg->flags[s]);
        int next = s + 1;
        while (next < SRV_N_STAGES && !p->st[next].enabled) next++;
        push2(a, "--in", st->in_ep);
        push2(a, "--out", next < SRV_N_STAGES ? p->st[next].in_ep : p->st[SRV_GATEWAY].in_ep);
        if (a->oom) return bad(err, errlen, "out of memory");
    }
    return 0;
}

/* ================================================================ printing */

static void put_quoted(FILE *f, const char *s)
{
    bool plain = *s != 0;
    for (const char *c = s; *c && plain; c++)
        plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=@%+,-", *c) != NULL;
    if (plain) { fputs(s, f); return; }
    fputc('\'', f);
    for (const char *c = s; *c; c++) {
        if (*c == '\'') fputs("'\\''", f);
        else fputc(*c, f);
    }
    fputc('\'', f);
}

void srv_plan_print(const srv_plan *p, FILE *f)
{
    for (int s = 0; s < SRV_N_STAGES; s++) {
        const srv_stage *st = &p->st[s];
        if (!st->enabled) continue;
        fprintf(f, "%s: NOTIFY_SOCKET=", STAGES[s].name);
        put_quoted(f, st->notify);
        if (p->log_level) fprintf(f, " GLM_LOG_LEVEL=%s", p->log_level);
        if (s == SRV_GATEWAY && p->api_key_env) fputs(" GLMPIPE_API_KEY='<hidden>'", f);
        fputc(' ', f);
        if (st->shell) fputs(st->prog, f);   /* shell text, shown as the user wrote it */
        else put_quoted(f, st->prog);
        for (int i = 0; i < st->args.n; i++) {
            fputc(' ', f);
            if (s == SRV_GATEWAY && i > 0 && !strcmp(st->args.v[i - 1], "--api-key")) fputs("'<hidden>'", f);
            else put_quoted(f, st->args.v[i]);
        }
        fputc('\n', f);
    }
}
