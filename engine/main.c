/* glm-engine — the model stage: `generate` in; `start`, `tokens`, `end` out
 * (docs/protocol.md). Loads the checkpoint, then runs the serving loop
 * (serve.h): read every message that is already there, run one step, flush,
 * repeat; block on the input only while nothing is running. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "model.h"
#include "notify.h"
#include "pl.h"
#include "rendezvous.h"
#include "serve.h"
#include "stage.h"

static void usage(FILE *f)
{
    fputs("usage: glm-engine --model DIR [options]\n"
          "  --backend cpu|cuda|auto           compute backend (default auto: cuda when a CUDA device is present)\n"
          "  --max-num-seqs N                  sequences in a step at most (default 256)\n"
          "  --max-model-len L                 prompt + output tokens (default: the model's max_position_embeddings)\n"
          "  --max-num-batched-tokens T        tokens computed per step at most (default 2048; 2k, 2K accepted)\n"
          "  --block-size N                    tokens per KV block (default 16)\n"
          "  --kv-cache-memory-bytes B         KV pool budget; vLLM's suffixes: k/m/g = 1000^n, K/M/G = 1024^n (default 4G)\n"
          "  --num-gpu-blocks-override N       exact number of KV blocks (overrides the budget)\n"
          "  --seed S                          RNG seed for requests without their own (default 0)\n"
          "  --threads N                       CPU threads (default: all online CPUs)\n"
          "  --log-stats-interval S            seconds between stats log lines (default 10)\n"
          "  --disable-log-stats               no stats log lines\n"
          "  --[no-]enable-prefix-caching      reuse cached KV blocks of shared prefixes (default on)\n"
          "  --[no-]weights-hugepages          cpu backend: copy the weights a rank reads into 2 MiB transparent huge\n"
          "                                    pages (default on); off: read the file's shared 4 KiB page-cache pages\n"
          "  --dtype auto|float32|bfloat16     linear-layer compute: auto = float32 (FP32 activations; not vLLM's\n"
          "                                    checkpoint dtype), bfloat16 = activations rounded to BF16 (vdpbf16ps)\n"
          "  --kv-cache-dtype auto|fp8         KV cache rows in f32 (auto) or FP8 e4m3 with per-token scales (fp8 = fp8_e4m3)\n"
          "  --speculative-config JSON         e.g. '{\"method\":\"mtp\",\"num_speculative_tokens\":3}' (K = 1..5)\n"
          "  --speculative-config.method mtp   the same, dotted (vLLM's form)\n"
          "  --speculative-config.num_speculative_tokens K\n"
          "  --tensor-parallel-size N, -tp N   engine ranks in all (default 1): processes, one per GPU with cuda (NCCL),\n"
          "                                    pinned to cores/NUMA nodes with cpu (shared memory)\n"
          "  --[no-]enable-expert-parallel     routed experts split whole across the ranks (default: each expert by FFN width)\n"
          "  --nnodes N, --node-rank R         multi-node groups (cuda + NCCL only): N hosts, this one is R (default 1, 0);\n"
          "                                    each runs N/nnodes ranks; nodes above 0 only compute\n"
          "  --master-addr A, --master-port P  node 0's rendezvous address (default 127.0.0.1, 29501)\n"
          "  --rendezvous-timeout S            seconds for every node to arrive (default 300)\n"
          "  --gpu-memory-utilization F        cuda: fraction of device memory for weights + KV pool (default 0.9);\n"
          "                                    refused with the cpu backend (size its pool with --kv-cache-memory-bytes)\n"
          PL_STAGE_IO_HELP, f);
}

/* ================================================================ vLLM feature flags
 *
 * glm-serve hands each vLLM engine flag to glm-engine under its own name, so
 * the engine is the one place that knows which features it has: what this
 * build cannot honour is refused here, naming the flag, never ignored. */

typedef struct feat_flags {
    const char *gpu_util;   /* --gpu-memory-utilization, checked against the backend */
    int tp, ep;             /* --tensor-parallel-size, --enable-expert-parallel */
    int64_t nnodes, node_rank;
    const char *master_addr;
    int64_t master_port;
    double rdzv_timeout;
} feat_flags;

static int refuse(const char *flag, const char *why)
{
    fprintf(stderr, "glm-engine: %s: %s\n", flag, why);
    return -1;
}

/* Returns the number of arguments consumed (1 or 2), 0 when a is not one of
 * these flags, -1 when it is refused (message printed). */
static int feature_flag(const char *a, const char *v, feat_flags *ff)
{
    int64_t n;
    if (!strcmp(a, "--enable-expert-parallel") || !strcmp(a, "--no-enable-expert-parallel")) {
        ff->ep = !strcmp(a, "--enable-expert-parallel");
        return 1;
    }
    if (!strcmp(a, "--tensor-parallel-size") || !strcmp(a, "-tp")) {
        if (pl_parse_i64(v, 1, 1 << 16, &n)) return refuse(a, "expected a positive integer");
        if (n > 4096) return refuse(a, "at most 4096 ranks (64 on one host)");
        ff->tp = (int)n;
        return 2;
    }
    if (!strcmp(a, "--nnodes") || !strcmp(a, "--node-rank") || !strcmp(a, "--master-port")) {
        if (pl_parse_i64(v, !strcmp(a, "--node-rank") ? 0 : 1, !strcmp(a, "--master-port") ? 65535 : 1 << 16, &n))
            return refuse(a, "expected an integer in range");
        *(!strcmp(a, "--nnodes") ? &ff->nnodes : !strcmp(a, "--node-rank") ? &ff->node_rank : &ff->master_port) = n;
        return 2;
    }
    if (!strcmp(a, "--rendezvous-timeout")) {
        if (pl_parse_i64(v, 1, 86400, &n)) return refuse(a, "expected seconds (1 to 86400)");
        ff->rdzv_timeout = (double)n;
        return 2;
    }
    if (!strcmp(a, "--master-addr")) {
        if (!v || !*v) return refuse(a, "expected an address");
        ff->master_addr = v;
        return 2;
    }
    if (!strcmp(a, "--gpu-memory-utilization")) {
        char *end = NULL;
        double f = v ? strtod(v, &end) : 0;
        if (!v || end == v || *end || !(f > 0 && f <= 1)) return refuse(a, "expected a fraction in (0, 1]");
        ff->gpu_util = v;
        return 2;
    }
    return 0;
}

/* ===== --speculative-config ===== */

/* vLLM's --speculative-config, as JSON or as dotted flags. Only the MTP
 * method (vLLM's model-specific MTP names are its deprecated aliases) and
 * num_speculative_tokens (default: the checkpoint's num_nextn_predict_layers,
 * as vLLM) are meaningful here; any other key is refused rather than
 * silently ignored. */
typedef struct spec_opts {
    bool    set;
    char    method[32];
    int64_t k;                  /* -1: not given */
} spec_opts;

static int spec_set(spec_opts *o, const char *key, const char *sval, const cJSON *jval, char *err, size_t errlen)
{
    o->set = true;
    if (!strcmp(key, "method")) {
        const char *v = jval ? (cJSON_IsString(jval) ? jval->valuestring : NULL) : sval;
        if (!v || strlen(v) >= sizeof o->method)
            return pl_seterr(err, errlen, PL_ERR_INVALID, "speculative-config.method must be a string");
        strcpy(o->method, v);
        return 0;
    }
    if (!strcmp(key, "num_speculative_tokens")) {
        if (jval && cJSON_IsNull(jval)) { o->k = -1; return 0; }
        bool ok = jval ? cJSON_IsNumber(jval) && !pl_json_is_float(jval) && jval->valuedouble >= 0 &&
                         jval->valuedouble <= 1e6 && (o->k = (int64_t)jval->valuedouble, 1)
                       : pl_parse_i64(sval, 0, 1000000, &o->k) == 0;
        if (!ok) return pl_seterr(err, errlen, PL_ERR_INVALID, "speculative-config.num_speculative_tokens must be an integer");
        return 0;
    }
    return pl_seterr(err, errlen, PL_ERR_INVALID,
                     "speculative-config.%s is not supported (this engine knows method and num_speculative_tokens)", key);
}

static int spec_parse_json(spec_opts *o, const char *text, char *err, size_t errlen)
{
    cJSON *j;
    char e2[256];
    if (pl_json_parse(&j, text, strlen(text), e2, sizeof e2))
        return pl_seterr(err, errlen, PL_ERR_INVALID, "--speculative-config is not JSON: %s", e2);
    int rc = cJSON_IsObject(j) ? 0 : pl_seterr(err, errlen, PL_ERR_INVALID, "--speculative-config must be a JSON object");
    o->set = true;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, j) if (!rc) rc = spec_set(o, kv->string, NULL, kv, err, errlen);
    cJSON_Delete(j);
    return rc;
}

/* The number of drafts per step, or -1 with err set. */
static int spec_resolve(const spec_opts *o, const eng_model *m, char *err, size_t errlen)
{
    static const char *const mtp_names[] = {"mtp", "deepseek_mtp", "glm4_moe_mtp", "glm4_moe_lite_mtp", "glm5_next_mtp"};
    bool mtp = false;
    for (size_t i = 0; i < PL_ARRAY_LEN(mtp_names); i++) mtp |= !strcmp(o->method, mtp_names[i]);
    if (!o->method[0]) { pl_seterr(err, errlen, PL_ERR_INVALID, "--speculative-config needs a method (mtp)"); return -1; }
    if (!mtp) {
        pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "speculative method '%s' is not supported: only mtp (the model's own "
                  "multi-token-prediction layer)", o->method);
        return -1;
    }
    const eng_config *c = eng_model_config(m);
    if (!eng_model_has_mtp(m) || c->num_nextn_predict_layers < 1) {
        pl_seterr(err, errlen, PL_ERR_UNSUPPORTED, "speculative method mtp needs the checkpoint's MTP layer "
                  "(model.layers.%d.*, num_nextn_predict_layers >= 1), and this checkpoint has none", c->num_hidden_layers);
        return -1;
    }
    int64_t k = o->k < 0 ? c->num_nextn_predict_layers : o->k;
    if (k < 1 || k > ENG_SPEC_MAX) {
        pl_seterr(err, errlen, PL_ERR_RANGE, "num_speculative_tokens %lld is not supported: 1 to %d (one MTP layer "
                  "chained; a step emits at most %d tokens)", (long long)k, ENG_SPEC_MAX, ENG_SPEC_MAX + 1);
        return -1;
    }
    return (int)k;
}

/* ================================================================ tensor-parallel ranks
 *
 * Ranks are processes (docs/engine.md, "Tensor and expert parallelism"):
 * rank 0 is this process and runs the serving loop; ranks 1..N-1 are
 * forked before anything else starts (no threads, no ZeroMQ context yet),
 * share one MAP_SHARED region for the collectives (comm.h), and each loads
 * only its shard. A follower dies with rank 0 (PR_SET_PDEATHSIG); rank 0
 * notices a dead follower in the next collective, or between steps through
 * waitpid, fails what is in flight and exits 1 for the supervisor to restart
 * the engine. */

typedef struct tp_ranks {
    int n;                  /* ranks on this host (local ranks) */
    int gpu;                /* NCCL ranks, local rank r on CUDA device r; else shared memory */
    int nnodes, node_rank;  /* gpu: global rank = node_rank * n + local rank */
    eng_shm_group *g;
    eng_comm *comm;         /* this process's: local rank 0 */
    pid_t pid[64];          /* [0] unused: local rank 0 is this process */
    int died;               /* a follower is gone */
} tp_ranks;

/* How a GPU group meets: the rendezvous with other nodes (rendezvous.h). */
typedef struct tp_launch {
    int gpu;
    const char *addr;
    int port;
    double timeout_s;       /* every node arrives within it */
    eng_rdzv_info info;     /* this node's launch, as node 0 checks it */
} tp_launch;

/* Node 0 waits this long in a collective before it calls the group dead
 * (once every rank has loaded: loading has no limit). A step's collectives
 * wait for the slowest rank's share of the step, never for a request. */
#define TP_GPU_COMM_TIMEOUT_S 300.0

/* This host's CPUs in NUMA-node order (node 0's allowed CPUs, then node
 * 1's, ...; the plain allowed list without node information). Returns the
 * count. */
static int cpus_by_node(int *out, int max)
{
    cpu_set_t allowed;
    int n = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed)) return 0;
    cpu_set_t seen;
    CPU_ZERO(&seen);
    for (int node = 0; node < 1024 && n < max; node++) {
        char path[96], buf[4096];
        snprintf(path, sizeof path, "/sys/devices/system/node/node%d/cpulist", node);
        FILE *f = fopen(path, "r");
        if (!f) { if (node > 0) break; else continue; }
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        for (char *p = buf; *p && n < max;) {       /* "0-3,8-11\n" */
            char *e;
            long a = strtol(p, &e, 10), b = a;
            if (e == p) break;
            if (*e == '-') { p = e + 1; b = strtol(p, &e, 10); }
            for (long c = a; c <= b && c < CPU_SETSIZE && n < max; c++)
                if (CPU_ISSET(c, &allowed) && !CPU_ISSET(c, &seen)) { CPU_SET(c, &seen); out[n++] = (int)c; }
            p = *e == ',' ? e + 1 : e;
            if (*p == '\n') break;
        }
    }
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)     /* CPUs no node listed (or no /sys) */
        if (CPU_ISSET(c, &allowed) && !CPU_ISSET(c, &seen)) out[n++] = c;
    return n;
}

/* Pin the calling process to its contiguous share of the node-ordered CPUs:
 * with N a multiple of the node count every rank stays on one node, and the
 * weight pages it faults in (and the column slices it copies) are allocated
 * there. Returns the number of CPUs it got (0: not pinned). */
static int tp_pin(int rank, int n)
{
    static int cpus[CPU_SETSIZE];
    const char *pin = getenv("GLM_ENGINE_TP_PIN");
    if (pin && !strcmp(pin, "0")) return 0;     /* a shared machine: let the scheduler move ranks */
    int nc = cpus_by_node(cpus, CPU_SETSIZE);
    if (nc < n) return 0;   /* fewer CPUs than ranks: leave the scheduler to it */
    cpu_set_t set;
    CPU_ZERO(&set);
    int b = nc * rank / n, e = nc * (rank + 1) / n;
    for (int i = b; i < e; i++) CPU_SET(cpus[i], &set);
    return sched_setaffinity(0, sizeof set, &set) ? 0 : e - b;
}

static int rank_threads(int64_t threads, int rank, int n, int pinned)
{
    if (threads > 0) return (int)(threads / n > 0 ? threads / n : 1);
    (void)rank;
    return pinned > 0 ? pinned : 0;
}

/* Can this host run n GPU ranks? Asked in a forked child, which may
 * initialise CUDA (this process must not: it forks the ranks). 0, or -1
 * with the reason in why. */
static int gpu_probe(int n, char *why, size_t whylen)
{
    struct { int count, nccl; char err[500]; } r = { 0, 0, "" };
    int pp[2];
    if (pipe(pp)) return snprintf(why, whylen, "pipe: %s", strerror(errno)), -1;
    fflush(NULL);
    pid_t p = fork();
    if (p < 0) {
        close(pp[0]); close(pp[1]);
        return snprintf(why, whylen, "fork: %s", strerror(errno)), -1;
    }
    if (p == 0) {
        close(pp[0]);
        r.count = eng_be_cuda_available();
        if (r.count > 0) r.nccl = eng_comm_nccl_available(r.err, sizeof r.err);
        _exit(write(pp[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(pp[1]);
    struct pollfd pf = { pp[0], POLLIN, 0 };
    ssize_t got = poll(&pf, 1, 60000) > 0 ? read(pp[0], &r, sizeof r) : -1;
    close(pp[0]);
    if (got != (ssize_t)sizeof r) kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    r.err[sizeof r.err - 1] = 0;
    if (got != (ssize_t)sizeof r) return snprintf(why, whylen, "probing the CUDA devices failed"), -1;
    if (r.count < n)
        return snprintf(why, whylen, "needs %d CUDA device%s on this host (one per rank), found %d", n, n > 1 ? "s" : "",
                        r.count), -1;
    if (r.nccl) return snprintf(why, whylen, "%s", r.err), -1;
    return 0;
}

/* A follower's life once it has its communicator: pin, load its shard,
 * meet the others, follow rank 0's steps. Returns the exit status. */
static int tp_follow(tp_ranks *t, int lr, eng_comm *c, const char *dir, eng_model_opts mo, int64_t threads)
{
    char err[1024];
    eng_model *m = NULL;
    int rank = eng_comm_rank(c);
    mo.n_threads = rank_threads(threads, lr, t->n, tp_pin(lr, t->n));
    mo.comm = c;
    mo.device = t->gpu ? lr : 0;
    mo.load.prefault = 1;
    mo.load.quiet = 1;
    int rc = eng_model_open(dir, &mo, &m, err, sizeof err);
    if (rc) pl_log(PL_LOG_ERROR, NULL, 0, "tensor-parallel rank %d: %s", rank, err);
    if (rc) eng_comm_abort(c);
    else if ((rc = eng_comm_barrier(c)) == 0 && (rc = eng_model_follow(m, err, sizeof err)))
        pl_log(PL_LOG_ERROR, NULL, 0, "tensor-parallel rank %d: %s", rank, err);
    eng_model_close(m);
    return rc ? 1 : 0;
}

/* A GPU rank's NCCL id, from local rank 0 over the pipe fd (EOF: local
 * rank 0 gave up), then its communicator on CUDA device lr. */
static int gpu_comm_join(const tp_ranks *t, int lr, int fd, double wait_s, eng_comm **c, char *err, size_t errlen)
{
    unsigned char id[ENG_NCCL_ID_BYTES];
    int rank = t->node_rank * t->n + lr;
    int rc = pl_fd_read_exact(fd, id, sizeof id, pl_mono_s() + wait_s);
    if (rc == PL_ERR_AGAIN)
        return pl_seterr(err, errlen, PL_ERR_IO, "tensor-parallel rank %d: no NCCL id within %.0f s", rank, wait_s);
    if (rc == PL_ERR_EOF) return pl_seterr(err, errlen, PL_ERR_EOF, "tensor-parallel rank %d: the group was not formed", rank);
    if (rc) return pl_seterr(err, errlen, PL_ERR_IO, "tensor-parallel rank %d: reading the NCCL id: %s", rank, strerror(errno));
    close(fd);
    return eng_comm_nccl_create(id, rank, t->n * t->nnodes, lr, 0, c, err, errlen);
}

/* A follower's whole life, in the forked child. */
static int tp_follower(tp_ranks *t, int lr, const char *dir, eng_model_opts mo, int64_t threads, int idfd, double wait_s)
{
    signal(SIGINT, SIG_IGN);     /* rank 0 drains and tells us to stop */
    signal(SIGTERM, SIG_IGN);
    /* The pipeline's stdin/stdout are rank 0's: a follower holding the
     * write end would keep the next stage from seeing EOF. */
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) { dup2(null, 0); dup2(null, 1); if (null > 1) close(null); }
    char err[1024];
    eng_comm *c = NULL;
    int rc;
    if (t->gpu) {
        rc = gpu_comm_join(t, lr, idfd, wait_s, &c, err, sizeof err);
        if (rc == PL_ERR_EOF) return 1;     /* local rank 0 says why */
    } else {
        eng_shm_group_set_pid(t->g, lr, getpid());
        rc = eng_comm_shm_attach(t->g, lr, &c, err, sizeof err);
    }
    if (rc) {
        pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
        return 1;
    }
    rc = tp_follow(t, lr, c, dir, mo, threads);
    eng_comm_free(c);
    return rc;
}

/* The NCCL id for this node's ranks: made here on node 0 (after the fork:
 * ncclGetUniqueId may initialise CUDA, which a forked rank could not use
 * then), given to the other nodes through the rendezvous; fetched from
 * node 0 elsewhere. */
static int gpu_group_id(const tp_ranks *t, const tp_launch *L, unsigned char id[ENG_NCCL_ID_BYTES], char *err,
                        size_t errlen)
{
    if (t->node_rank > 0) {
        pl_log(PL_LOG_INFO, NULL, 0, "node %d of %d: joining node 0 at %s:%d", t->node_rank, t->nnodes, L->addr, L->port);
        return eng_rdzv_join(L->addr, L->port, &L->info, L->timeout_s, id, err, errlen);
    }
    int rc = eng_comm_nccl_unique_id(id, err, errlen);
    if (rc || t->nnodes == 1) return rc;
    eng_rdzv_server *srv;
    if ((rc = eng_rdzv_listen(L->addr, L->port, &L->info, &srv, err, errlen))) return rc;
    pl_log(PL_LOG_INFO, NULL, 0, "node 0 of %d: waiting up to %.0f s on %s:%d for the other nodes", t->nnodes,
           L->timeout_s, L->addr, eng_rdzv_port(srv));
    rc = eng_rdzv_serve(srv, id, L->timeout_s, 0, err, errlen);
    eng_rdzv_server_free(srv);
    return rc;
}

/* Fork local ranks 1..n-1 (each returns through _exit, never here), then
 * give this process its communicator. */
static int tp_start(tp_ranks *t, int n, const char *dir, const eng_model_opts *mo, int64_t threads,
                    const tp_launch *L, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->gpu = L->gpu;
    t->nnodes = L->gpu ? (int)L->info.nnodes : 1;
    t->node_rank = L->gpu ? (int)L->info.node_rank : 0;
    if (n * t->nnodes <= 1) return 0;
    int rc = 0, idfd[64];
    for (int r = 0; r < 64; r++) idfd[r] = -1;
    if (!t->gpu) {
        if ((rc = eng_shm_group_create(n, 1 << 20, &t->g, err, errlen))) return rc;
        eng_shm_group_set_pid(t->g, 0, getpid());
    }
    fflush(NULL);
    pid_t parent = getpid();
    for (int r = 1; r < n; r++) {
        int pp[2] = { -1, -1 };
        if (t->gpu && pipe2(pp, O_CLOEXEC))
            return pl_seterr(err, errlen, PL_ERR_IO, "pipe for tensor-parallel rank %d: %s", r, strerror(errno));
        pid_t p = fork();
        if (p < 0) return pl_seterr(err, errlen, PL_ERR_IO, "fork for tensor-parallel rank %d: %s", r, strerror(errno));
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1);     /* rank 0 died before the line above */
            for (int q = 1; q < r && t->gpu; q++) close(idfd[q]);     /* only local rank 0 writes ids */
            if (t->gpu) close(pp[1]);
            _exit(tp_follower(t, r, dir, *mo, threads, pp[0], L->timeout_s + 60));
        }
        t->pid[r] = p;
        if (t->gpu) {
            close(pp[0]);
            idfd[r] = pp[1];
        } else {
            eng_shm_group_set_pid(t->g, r, p);
        }
    }
    if (!t->gpu) return eng_comm_shm_attach(t->g, 0, &t->comm, err, errlen);
    unsigned char id[ENG_NCCL_ID_BYTES];
    rc = gpu_group_id(t, L, id, err, errlen);
    /* The ranks get the id, or EOF (the group is not formed: they exit). */
    for (int r = 1; r < n; r++) {
        if (!rc && write(idfd[r], id, sizeof id) != (ssize_t)sizeof id)
            rc = pl_seterr(err, errlen, PL_ERR_IO, "handing the NCCL id to local rank %d: %s", r, strerror(errno));
        close(idfd[r]);
    }
    if (!rc) rc = eng_comm_nccl_create(id, t->node_rank * n, n * t->nnodes, 0, 0, &t->comm, err, errlen);
    if (!rc) eng_comm_nccl_watch(t->comm, t->pid + 1, n - 1);
    return rc;
}

/* Between steps: has a follower exited? (The collectives see it too; this
 * catches it while idle, so the engine does not wait for a request.) */
static int tp_check(tp_ranks *t)
{
    for (int r = 1; r < t->n && !t->died; r++) {
        int st;
        if (t->pid[r] > 0 && waitpid(t->pid[r], &st, WNOHANG) == t->pid[r]) {
            pl_log(PL_LOG_ERROR, NULL, 0, "tensor-parallel rank %d (pid %d) %s %d", r, (int)t->pid[r],
                   WIFSIGNALED(st) ? "was killed by signal" : "exited with status",
                   WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            t->pid[r] = 0;
            t->died = 1;
            eng_comm_abort(t->comm);
        }
    }
    return t->died;
}

/* After rank 0 closed its model (which told the followers to stop): reap
 * them. After a failure they get 2 s to notice the dead group and say why
 * (a rank that is still loading does not look), then SIGKILL. Returns
 * nonzero when one failed. */
static int tp_finish(tp_ranks *t)
{
    int bad = t->died;
    for (int r = 1; r < t->n; r++) {
        int st;
        if (t->pid[r] <= 0) continue;
        pid_t w = 0;
        for (int i = 0; bad && i < 200 && (w = waitpid(t->pid[r], &st, WNOHANG)) == 0; i++) usleep(10000);
        if (bad && w == 0) kill(t->pid[r], SIGKILL);
        if (w != t->pid[r]) w = waitpid(t->pid[r], &st, 0);
        if (w == t->pid[r] && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) bad = 1;
    }
    eng_comm_free(t->comm);
    eng_shm_group_free(t->g);
    return bad;
}

typedef struct {
    eng_serve *serve;
    pl_stage  *st;
    tp_ranks  *tp;
    eng_model *model;
} loop_ctx;

static void on_msg(pl_stage *st, const msgpack_object *msg, const char *id, size_t idlen, void *ud)
{
    (void)st;
    eng_serve_on_msg(((loop_ctx *)ud)->serve, msg, id, idlen);
}

static int sink_send(void *ud, const char *data, size_t len)
{
    return pl_io_send(pl_stage_io(((loop_ctx *)ud)->st), data, len);
}

/* The serving loop is common/stage.h's: take what has arrived (waiting only
 * when idle), step, flush; after EOF finish what runs; after a stop signal
 * also refuse new `generate`s and answer what is unfinished at
 * --drain-timeout with an error. */
/* A dead rank counts as live work, so the loop steps once more: that step
 * fails everything in flight and ends the loop with an error. */
static size_t loop_live(void *ud)
{
    loop_ctx *c = ud;
    return eng_serve_busy(c->serve) + (c->tp->died || eng_model_comm_failed(c->model));
}
static int loop_step(pl_stage *st, void *ud)
{
    (void)st;
    loop_ctx *c = ud;
    int rc = c->tp->died || eng_model_comm_failed(c->model) ? 0 : eng_serve_step(c->serve);
    if (!rc && (tp_check(c->tp) || eng_model_comm_failed(c->model))) {
        eng_serve_fail_all(c->serve, 500, "a tensor-parallel engine rank died: the engine restarts");
        pl_log(PL_LOG_ERROR, NULL, 0, "a tensor-parallel rank died: failing every request, exiting");
        c->tp->died = 1;
        rc = PL_ERR_IO;
    }
    return rc;
}
static int loop_wait_ms(void *ud)   /* next stats beat; with followers, look at them every 200 ms */
{
    loop_ctx *c = ud;
    int ms = eng_serve_wait_ms(c->serve);
    return c->tp->n > 1 && (ms < 0 || ms > 200) ? 200 : ms;
}
static void loop_tick(pl_stage *st, void *ud)
{
    (void)st;
    loop_ctx *c = ud;
    eng_serve_tick(c->serve);
    if (c->tp->n > 1) tp_check(c->tp);
}
static void loop_fail(pl_stage *st, void *ud, int code, const char *err_type, const char *why)
{
    (void)st; (void)err_type;
    eng_serve_fail_all(((loop_ctx *)ud)->serve, code, why);
}

int main(int argc, char **argv)
{
    pl_log_init("glm-engine");
    pl_stage_opts so;
    pl_stage_opts_default(&so);
    so.drain_ms = 20000;   /* before the text stages' 25 s: its errors still get through them */
    if (pl_stage_opts_take(&so, "glm-engine", &argc, argv)) return 2;
    const char *dir = NULL, *backend = "auto";
    int kv_sized = 0;       /* --kv-cache-memory-bytes or --num-gpu-blocks-override given */
    eng_serve_cfg cfg;
    eng_serve_cfg_defaults(&cfg);
    int64_t threads = 0;
    int compute = ENG_BE_COMPUTE_F32;
    int file_pages = 0;     /* --no-weights-hugepages */
    feat_flags ff = { 0 };
    spec_opts spec = { .k = -1 };
    char err[1024];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        int used = feature_flag(a, v, &ff);
        if (used < 0) return 2;
        if (used) { i += used - 1; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--disable-log-stats")) { cfg.log_stats_interval = 0; continue; }
        else if (!strcmp(a, "--enable-prefix-caching")) { cfg.prefix_caching = true; continue; }
        else if (!strcmp(a, "--no-enable-prefix-caching")) { cfg.prefix_caching = false; continue; }
        else if (!strcmp(a, "--weights-hugepages")) { file_pages = 0; continue; }
        else if (!strcmp(a, "--no-weights-hugepages")) { file_pages = 1; continue; }
        else if (!strcmp(a, "--model") && v) dir = v;
        else if (!strcmp(a, "--backend") && v) backend = v;
        else if (!strcmp(a, "--max-num-seqs") && !pl_parse_i64(v, 1, 1 << 16, &n)) cfg.max_num_seqs = (int)n;
        else if (!strcmp(a, "--max-model-len") && !pl_parse_i64(v, 2, 1 << 30, &n)) cfg.max_model_len = (int)n;
        else if (!strcmp(a, "--max-num-batched-tokens") && !pl_parse_human_i64(v, 1, 1 << 24, &n)) cfg.max_num_batched_tokens = (int)n;
        else if (!strcmp(a, "--block-size") && !pl_parse_i64(v, 1, 1 << 16, &n)) cfg.block_size = (int)n;
        else if (!strcmp(a, "--num-gpu-blocks-override") && !pl_parse_i64(v, 1, INT32_MAX, &n)) cfg.num_blocks = (int)n, kv_sized = 1;
        else if (!strcmp(a, "--kv-cache-memory-bytes") && !pl_parse_human_i64(v, 1, INT64_MAX, &n)) cfg.kv_cache_bytes = (size_t)n, kv_sized = 1;
        else if (!strcmp(a, "--speculative-config") && v) {
            if (spec_parse_json(&spec, v, err, sizeof err)) { fprintf(stderr, "glm-engine: %s\n", err); return 2; }
        } else if (!strncmp(a, "--speculative-config.", 21) && v) {
            if (spec_set(&spec, a + 21, v, NULL, err, sizeof err)) { fprintf(stderr, "glm-engine: %s\n", err); return 2; }
        }
        else if (!strcmp(a, "--dtype") && v) {
            /* vLLM's flag; auto = float32 here, not the checkpoint's dtype:
             * the CPU engine keeps FP32-class logits unless asked. */
            if (!strcmp(v, "auto") || !strcmp(v, "float32") || !strcmp(v, "float")) compute = ENG_BE_COMPUTE_F32;
            else if (!strcmp(v, "bfloat16")) compute = ENG_BE_COMPUTE_BF16;
            else {
                fprintf(stderr, "glm-engine: --dtype %s is not supported (auto, float32, bfloat16)\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--kv-cache-dtype") && v) {
            if (!strcmp(v, "auto")) cfg.kv_cache_dtype = ENG_CACHE_F32;
            else if (!strcmp(v, "fp8") || !strcmp(v, "fp8_e4m3")) cfg.kv_cache_dtype = ENG_CACHE_FP8;
            else {
                fprintf(stderr, "glm-engine: --kv-cache-dtype %s is not supported (auto, fp8, fp8_e4m3)\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--seed") && !pl_parse_i64(v, INT64_MIN, INT64_MAX, &n)) cfg.seed = (uint64_t)n;
        else if (!strcmp(a, "--threads") && !pl_parse_i64(v, 1, 4096, &n)) threads = n;
        else if (!strcmp(a, "--log-stats-interval") && !pl_parse_i64(v, 0, 86400, &n)) cfg.log_stats_interval = (double)n;
        else { fprintf(stderr, "glm-engine: bad argument %s%s%s\n", a, v ? " " : "", v ? v : ""); usage(stderr); return 2; }
        i++;
    }
    if (!dir) { usage(stderr); return 2; }
    enum eng_be_kind kind;
    if (!strcmp(backend, "cpu")) kind = ENG_BE_CPU;
    else if (!strcmp(backend, "cuda")) kind = ENG_BE_CUDA;
    else if (!strcmp(backend, "auto")) kind = ENG_BE_AUTO;
    else {
        fprintf(stderr, "glm-engine: --backend %s: expected cpu, cuda or auto\n", backend);
        return 2;
    }
    if (!ff.tp) ff.tp = 1;
    if (!ff.nnodes) ff.nnodes = 1;
    int multi = ff.nnodes > 1 || ff.node_rank > 0;
    if (multi && kind == ENG_BE_CPU) {
        refuse(ff.nnodes > 1 ? "--nnodes" : "--node-rank", "multi-node groups need the NCCL communicator of the CUDA "
               "build; the cpu backend runs every tensor-parallel rank on this host (--nnodes 1)");
        return 2;
    }
    if (ff.node_rank >= ff.nnodes) { refuse("--node-rank", "must be below --nnodes (nodes are 0 .. N-1)"); return 2; }
    if (ff.tp % ff.nnodes) {
        refuse("--tensor-parallel-size", "must be a multiple of --nnodes (every node runs the same number of ranks)");
        return 2;
    }
    int local = (int)(ff.tp / ff.nnodes);
    if (local > 64) { refuse("--tensor-parallel-size", "at most 64 ranks on one host"); return 2; }
    int gpu_ranks = 0;
    if (kind != ENG_BE_CPU && (local > 1 || multi)) {
        /* GPU ranks: one process per device, NCCL between them. This
         * process forks them, so it must not initialise CUDA first (a
         * forked child cannot use its parent's CUDA state): a child counts
         * the devices and tries libnccl. */
        char why[600];
        if (gpu_probe(local, why, sizeof why) == 0) {
            kind = ENG_BE_CUDA;
            gpu_ranks = 1;
        } else if (kind == ENG_BE_AUTO && !multi) {
            pl_log(PL_LOG_INFO, NULL, 0, "--backend auto: tensor-parallel ranks on the cpu backend (%s)", why);
            kind = ENG_BE_CPU;
        } else if (multi) {
            char m[700];
            snprintf(m, sizeof m, "multi-node groups need the NCCL communicator on CUDA devices: %s", why);
            refuse(ff.nnodes > 1 ? "--nnodes" : "--node-rank", m);
            return 2;
        } else {
            refuse("--tensor-parallel-size", why);
            return 2;
        }
    } else if (kind == ENG_BE_AUTO) {
        kind = eng_be_cuda_available() > 0 ? ENG_BE_CUDA : ENG_BE_CPU;
    }
    if (kind == ENG_BE_CUDA && !gpu_ranks && !eng_be_cuda_available()) {
        fprintf(stderr, "glm-engine: --backend cuda: no usable CUDA device (or this build has no CUDA)\n");
        return 2;
    }
    if (ff.gpu_util && kind == ENG_BE_CPU) {
        refuse("--gpu-memory-utilization", "needs a GPU backend; the cpu backend sizes its KV cache with --kv-cache-memory-bytes");
        return 2;
    }

    eng_model_opts mo = {
        .n_threads = (int)threads,
        .backend = kind,
        .compute_dtype = compute,
        .max_batch_tokens = cfg.max_num_batched_tokens,
        .max_model_len = cfg.max_model_len,
        .load = { .prefault = 1, .file_pages = file_pages },
    };
    tp_ranks tp;
    mo.expert_parallel = ff.ep;     /* before the fork: every rank must agree */
    tp_launch L = {
        .gpu = gpu_ranks, .addr = ff.master_addr ? ff.master_addr : "127.0.0.1",
        .port = ff.master_port ? (int)ff.master_port : 29501, .timeout_s = ff.rdzv_timeout > 0 ? ff.rdzv_timeout : 300,
        .info = { .nnodes = (uint32_t)ff.nnodes, .node_rank = (uint32_t)ff.node_rank, .local_ranks = (uint32_t)local,
                  .expert_parallel = (uint32_t)ff.ep, .max_batch_tokens = (uint32_t)cfg.max_num_batched_tokens,
                  .max_model_len = (uint32_t)cfg.max_model_len },
    };
    if (ff.nnodes > 1 && !ff.master_addr)
        pl_log(PL_LOG_WARN, NULL, 0, "--nnodes %d without --master-addr: node 0 is 127.0.0.1, which other hosts cannot "
               "reach", (int)ff.nnodes);
    if (ff.nnodes > 1 && eng_rdzv_fingerprint(dir, &L.info.fingerprint, err, sizeof err)) {
        pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
        return 1;
    }
    if (tp_start(&tp, local, dir, &mo, threads, &L, err, sizeof err)) {
        pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
        tp.died = 1;    /* kill the ranks already forked */
        tp_finish(&tp);
        return 1;
    }
    if (ff.node_rank > 0) {
        /* Nodes above 0 only compute: this process is one more follower
         * (no pipeline stage, no serving loop). */
        pl_log(PL_LOG_INFO, NULL, 0, "node %d of %d: ranks %d..%d of %d on this host's GPUs", (int)ff.node_rank,
               (int)ff.nnodes, (int)ff.node_rank * local, (int)ff.node_rank * local + local - 1, (int)ff.tp);
        int bad = tp_follow(&tp, 0, tp.comm, dir, mo, threads);
        tp.died |= bad;
        return tp_finish(&tp) || bad ? 1 : 0;
    }
    if (tp.comm) {
        int pinned = tp_pin(0, tp.n);
        mo.n_threads = rank_threads(threads, 0, tp.n, pinned);
        mo.comm = tp.comm;
        pl_log(PL_LOG_INFO, NULL, 0, "tensor parallel: %d ranks (processes%s%s)%s, %s; rank 0 on %d CPUs",
               eng_comm_size(tp.comm), tp.gpu ? ", one per GPU, NCCL" : ", shared memory",
               tp.nnodes > 1 ? ", over several nodes" : "", ff.ep ? ", expert parallel" : "",
               pinned ? "pinned by NUMA node order" : "not pinned (fewer CPUs than ranks)", pinned);
    }
    eng_model *model = NULL;
    int orc = eng_model_open(dir, &mo, &model, err, sizeof err);
    if (orc) pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
    if (orc && tp.comm) eng_comm_abort(tp.comm);
    if (!orc && tp.comm && eng_comm_barrier(tp.comm)) {   /* every rank loaded its shard */
        pl_log(PL_LOG_ERROR, NULL, 0, "a tensor-parallel rank failed to load its shard (see its message above)");
        orc = PL_ERR_IO;
    }
    if (!orc && tp.gpu) eng_comm_nccl_set_timeout(tp.comm, TP_GPU_COMM_TIMEOUT_S);
    if (orc) {
        eng_model_close(model);
        tp.died = tp.comm != NULL;
        tp_finish(&tp);
        return 1;
    }
    const eng_config *mc = eng_model_config(model);
    eng_backend *be = eng_model_backend(model);
    pl_log(PL_LOG_INFO, NULL, 0, "backend %s", eng_be_describe(be));
    if (kind == ENG_BE_CUDA && !kv_sized) {
        /* Weights and scratch are resident now: the pool gets what the
         * utilisation target leaves after them and the ops' work buffers. */
        size_t fr, tot;
        eng_be_mem_info(be, &fr, &tot);
        cfg.kv_cache_bytes = eng_kv_device_budget(fr, tot, ff.gpu_util ? strtod(ff.gpu_util, NULL) : 0.9,
                                                  ENG_KV_DEVICE_RESERVE);
        pl_log(PL_LOG_INFO, NULL, 0, "device memory: %.1f GiB total, %.1f GiB free after weights; KV pool %.2f GiB",
               (double)tot / (1 << 30), (double)fr / (1 << 30), (double)cfg.kv_cache_bytes / (1 << 30));
    }
    pl_log(PL_LOG_INFO, NULL, 0, "model %s: %s, %d layers%s, %s attention, %s weights", dir, eng_arch_class(mc->arch),
           mc->num_hidden_layers, eng_model_has_mtp(model) ? " + MTP" : "",
           mc->attn_gqa ? (mc->use_qk_norm ? "GQA (q/k norm)" : "GQA") : mc->has_indexer ? "MLA + DSA indexer" : "dense MLA",
           mc->fp8 ? "fp8" : "bf16");
    if (spec.set) {
        int k = spec_resolve(&spec, model, err, sizeof err);
        if (k < 0) {
            pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
            eng_model_close(model);
            tp_finish(&tp);
            return 2;
        }
        cfg.num_spec_tokens = k;
    }
    eng_lm lm;
    eng_lm_from_model(&lm, model);
    loop_ctx c = { .tp = &tp, .model = model };
    int rc = pl_stage_open_opts(&c.st, &so, err, sizeof err);
    if (!rc) rc = eng_serve_init(&c.serve, &lm, &cfg, (eng_serve_sink){ sink_send, &c }, err, sizeof err);
    if (rc) {
        pl_log(PL_LOG_ERROR, NULL, 0, "%s", err);
        pl_stage_close(c.st);
        eng_model_close(model);
        tp_finish(&tp);
        return 1;
    }
    static const pl_stage_ops ops = {
        .on_msg = on_msg, .intake = "generate", .live = loop_live, .step = loop_step, .fail = loop_fail,
        .wait_ms = loop_wait_ms, .tick = loop_tick,
    };
    rc = pl_stage_serve(c.st, &ops, &c);
    eng_serve_stats s;
    eng_serve_get_stats(c.serve, &s);
    pl_log(PL_LOG_INFO, NULL, 0, "done: %llu steps, %llu tokens computed, %llu generated, %llu preemptions",
           (unsigned long long)s.steps, (unsigned long long)s.tokens_computed, (unsigned long long)s.generation_tokens,
           (unsigned long long)s.preemptions);
    eng_serve_free(c.serve);
    pl_stage_close(c.st);
    int dead = tp.died || eng_model_comm_failed(model);
    eng_model_close(model);
    if (tp_finish(&tp) && !dead) {
        pl_log(PL_LOG_ERROR, NULL, 0, "a tensor-parallel rank failed");
        dead = 1;
    }
    if (dead) return 1;
    if (rc) pl_log(PL_LOG_ERROR, NULL, 0, "output failed: %s", pl_strerror(rc));
    return rc ? 1 : 0;
}
