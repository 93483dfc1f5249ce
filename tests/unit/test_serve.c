/* glm-serve's command line and plan (tools/serve/flags.c): every vllm serve
 * flag reaches the stage that owns it and no other, glm-serve's own checks
 * name the flag, the wiring is a ring of ipc:// endpoints; vLLM's
 * human-readable integers (common/pl.c). Supervision runs through real
 * processes in tests/py/test_serve.py. */
#include "test.h"

#include <stdarg.h>
#include <unistd.h>
#include <sys/stat.h>

#include "tools/serve/serve.h"

static char g_model[64];   /* a model dir with only a config.json */
static char g_err[1024];

/* Parse a NULL-terminated list of words after "glm-serve". */
static int parse(srv_cfg *cfg, ...)
{
    char *argv[64] = {"glm-serve"};
    int argc = 1;
    va_list ap;
    va_start(ap, cfg);
    for (char *a; argc < 63 && (a = va_arg(ap, char *)); ) argv[argc++] = a;
    va_end(ap);
    g_err[0] = 0;
    FILE *devnull = fopen("/dev/null", "w");
    int rc = srv_cfg_parse(cfg, argc, argv, devnull, g_err, sizeof g_err);
    fclose(devnull);
    return rc;
}

/* The plan for a command line, with a fixed bindir and rundir. */
static int plan(srv_plan *p, srv_cfg *cfg)
{
    return srv_plan_build(p, cfg, "/opt/glm/bin", "/run/t", g_err, sizeof g_err);
}

/* Index of word w in a stage's arguments, or -1. */
static int arg_at(const srv_plan *p, int s, const char *w)
{
    for (int i = 0; i < p->st[s].args.n; i++)
        if (!strcmp(p->st[s].args.v[i], w)) return i;
    return -1;
}

/* The word after w in stage s's arguments, or NULL. */
static const char *arg_after(const srv_plan *p, int s, const char *w)
{
    int i = arg_at(p, s, w);
    return i >= 0 && i + 1 < p->st[s].args.n ? p->st[s].args.v[i + 1] : NULL;
}

/* w appears in stage `only`'s arguments and in no other stage's. */
static int only_in(const srv_plan *p, int only, const char *w)
{
    for (int s = 0; s < SRV_N_STAGES; s++)
        if ((arg_at(p, s, w) >= 0) != (s == only)) return 0;
    return 1;
}

TEST(flags_reach_their_stage)
{
    srv_cfg c;
    srv_plan p;
    int rc = parse(&c, g_model, "--max-num-seqs", "8", "--max-num-batched-tokens", "4k", "--block-size", "32",
                   "--gpu-memory-utilization", "0.9", "--kv-cache-memory-bytes", "1G", "--kv-cache-dtype", "fp8",
                   "--dtype", "bfloat16", "--enable-prefix-caching", "--no-weights-hugepages",
                   "--speculative-config", "{\"method\":\"mtp\"}",
                   "--speculative-config.method", "mtp", "--speculative-config.num_speculative_tokens", "3",
                   "-tp", "1", "--enable-expert-parallel", "--seed", "7", "--backend", "cpu",
                   "--chat-template", "t.jinja", "--default-chat-template-kwargs", "{\"enable_thinking\":false}",
                   "--generation-config", "vllm", "--enable-auto-tool-choice", "--tool-call-parser", "glm47",
                   "--reasoning-parser", "glm45", NULL);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    static const char *const engine[] = {"--max-num-seqs", "--max-num-batched-tokens", "--block-size",
        "--gpu-memory-utilization", "--kv-cache-memory-bytes", "--kv-cache-dtype", "--dtype", "--enable-prefix-caching",
        "--no-weights-hugepages",
        "--speculative-config", "--speculative-config.method", "--speculative-config.num_speculative_tokens",
        "--tensor-parallel-size", "--enable-expert-parallel", "--seed", "--backend"};
    for (size_t i = 0; i < PL_ARRAY_LEN(engine); i++) {
        if (!only_in(&p, SRV_ENGINE, engine[i])) fprintf(stderr, "  %s\n", engine[i]);
        CHECK(only_in(&p, SRV_ENGINE, engine[i]));
    }
    CHECK_EQ_STR(arg_after(&p, SRV_ENGINE, "--max-num-batched-tokens"), "4k");   /* the engine parses its own values */
    CHECK_EQ_STR(arg_after(&p, SRV_ENGINE, "--dtype"), "bfloat16");
    CHECK_EQ_STR(arg_after(&p, SRV_ENGINE, "--speculative-config.num_speculative_tokens"), "3");
    CHECK_EQ_STR(arg_after(&p, SRV_ENGINE, "--tensor-parallel-size"), "1");      /* -tp under its long name */
    static const char *const tok[] = {"--chat-template", "--default-chat-template-kwargs", "--generation-config",
                                      "--enable-auto-tool-choice"};
    for (size_t i = 0; i < PL_ARRAY_LEN(tok); i++) CHECK(only_in(&p, SRV_TOKENIZE, tok[i]));
    CHECK_EQ_STR(arg_after(&p, SRV_TOKENIZE, "--default-chat-template-kwargs"), "{\"enable_thinking\":false}");
    CHECK(only_in(&p, SRV_TOOLS, "--tool-call-parser"));
    CHECK_EQ_STR(arg_after(&p, SRV_TOOLS, "--tool-call-parser"), "glm47");
    CHECK(only_in(&p, SRV_REASONING, "--reasoning-parser"));
    /* the model: the stages that read its files, and the gateway (for its name) */
    CHECK_EQ_STR(arg_after(&p, SRV_TOKENIZE, "--model"), g_model);
    CHECK_EQ_STR(arg_after(&p, SRV_ENGINE, "--model"), g_model);
    CHECK_EQ_STR(arg_after(&p, SRV_DETOK, "--model"), g_model);
    CHECK_EQ_STR(arg_after(&p, SRV_GATEWAY, "--model"), g_model);
    CHECK_EQ_INT(arg_at(&p, SRV_REASONING, "--model"), -1);
    srv_plan_free(&p);
    srv_cfg_free(&c);
}

TEST(gateway_command_line)
{
    srv_cfg c;
    srv_plan p;
    CHECK_EQ_INT(parse(&c, "--model", g_model, "--host", "::1", "--port", "9000", "--served-model-name", "glm-5", "g5",
                       "--uvicorn-log-level", "warning", "--max-model-len", "32k", NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    CHECK_EQ_STR(arg_after(&p, SRV_GATEWAY, "--host"), "::1");
    CHECK_EQ_STR(arg_after(&p, SRV_GATEWAY, "--port"), "9000");
    CHECK_EQ_STR(p.url, "http://[::1]:9000/v1");
    int i = arg_at(&p, SRV_GATEWAY, "--served-model-name");
    CHECK(i >= 0 && i + 2 < p.st[SRV_GATEWAY].args.n);
    if (i >= 0 && i + 2 < p.st[SRV_GATEWAY].args.n) {
        CHECK_EQ_STR(p.st[SRV_GATEWAY].args.v[i + 1], "glm-5");
        CHECK_EQ_STR(p.st[SRV_GATEWAY].args.v[i + 2], "g5");
    }
    /* responses report the first name: glm-tokenize puts it in the context */
    CHECK_EQ_STR(arg_after(&p, SRV_TOKENIZE, "--served-model-name"), "glm-5");
    CHECK_EQ_INT(arg_at(&p, SRV_TOKENIZE, "g5"), -1);
    /* one integer everywhere (vLLM: 32k = 32000) */
    CHECK_EQ_STR(arg_after(&p, SRV_GATEWAY, "--max-model-len"), "32000");
    CHECK_EQ_STR(arg_after(&p, SRV_TOKENIZE, "--max-model-len"), "32000");
    CHECK_EQ_STR(arg_after(&p, SRV_ENGINE, "--max-model-len"), "32000");
    CHECK_EQ_INT(arg_at(&p, SRV_DETOK, "--max-model-len"), -1);
    CHECK_EQ_STR(arg_after(&p, SRV_GATEWAY, "--log-level"), "warn");
    CHECK_EQ_STR(p.log_level, "warn");
    srv_plan_free(&p);
    srv_cfg_free(&c);

    /* without --max-model-len the gateway still gets config.json's */
    CHECK_EQ_INT(parse(&c, g_model, "--max-model-len", "1K", "--max-model-len", "auto", NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    CHECK_EQ_STR(arg_after(&p, SRV_GATEWAY, "--max-model-len"), "4096");
    CHECK_EQ_INT(arg_at(&p, SRV_ENGINE, "--max-model-len"), -1);
    CHECK_EQ_STR(p.url, "http://127.0.0.1:8000/v1");   /* glm-serve's defaults */
    srv_plan_free(&p);
    srv_cfg_free(&c);
}

TEST(api_keys)
{
    srv_cfg c;
    srv_plan p;
    unsetenv("GLMPIPE_API_KEY");
    CHECK_EQ_INT(parse(&c, g_model, "--api-key", "k1", NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    CHECK_EQ_STR(p.api_key_env, "k1");                     /* one key: environment, not argv */
    CHECK_EQ_INT(arg_at(&p, SRV_GATEWAY, "k1"), -1);
    srv_plan_free(&p);
    srv_cfg_free(&c);
    CHECK_EQ_INT(parse(&c, g_model, "--api-key", "k1", "k2", "--port", "1", NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    CHECK(p.api_key_env == NULL);
    CHECK_EQ_STR(arg_after(&p, SRV_GATEWAY, "--api-key"), "k1");
    CHECK_EQ_INT(arg_at(&p, SRV_GATEWAY, "k2") - arg_at(&p, SRV_GATEWAY, "k1"), 2);   /* --api-key k1 --api-key k2 */
    for (int s = 1; s < SRV_N_STAGES; s++) CHECK_EQ_INT(arg_at(&p, s, "--api-key"), -1);
    srv_plan_free(&p);
    srv_cfg_free(&c);
    setenv("GLMPIPE_API_KEY", "from-env", 1);
    CHECK_EQ_INT(parse(&c, g_model, NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    CHECK_EQ_STR(p.api_key_env, "from-env");
    srv_plan_free(&p);
    srv_cfg_free(&c);
    unsetenv("GLMPIPE_API_KEY");
}

TEST(wiring_is_a_ring)
{
    srv_cfg c;
    srv_plan p;
    /* with the reasoning parser: gateway -> tokenize -> engine -> detok -> reasoning -> tools -> gateway */
    CHECK_EQ_INT(parse(&c, g_model, "--reasoning-parser", "glm45", NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    static const int order[] = {SRV_GATEWAY, SRV_TOKENIZE, SRV_ENGINE, SRV_DETOK, SRV_REASONING, SRV_TOOLS};
    for (int k = 0; k < 6; k++) {
        int s = order[k], next = order[(k + 1) % 6];
        CHECK_EQ_STR(arg_after(&p, s, "--in"), p.st[s].in_ep);
        CHECK_EQ_STR(arg_after(&p, s, "--out"), p.st[next].in_ep);
        CHECK(!strncmp(p.st[s].in_ep, "ipc:///run/t/", 13));
        CHECK(!strncmp(p.st[s].notify, "/run/t/notify.", 14));
    }
    CHECK_EQ_STR(p.st[SRV_ENGINE].prog, "/opt/glm/bin/glm-engine");
    srv_plan_free(&p);
    srv_cfg_free(&c);
    /* without it (vLLM: no reasoning parser, <think> stays in the content) the stage is left out */
    CHECK_EQ_INT(parse(&c, g_model, NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    CHECK(!p.st[SRV_REASONING].enabled);
    CHECK_EQ_STR(arg_after(&p, SRV_DETOK, "--out"), p.st[SRV_TOOLS].in_ep);
    CHECK(p.st[SRV_TOOLS].enabled);
    srv_plan_free(&p);
    srv_cfg_free(&c);
}

TEST(stage_replacement)
{
    srv_cfg c;
    srv_plan p;
    CHECK_EQ_INT(parse(&c, g_model, "--stage", "engine=glm-replay --script 's 1.jsonl'", "--stage", "tools=cat",
                       "--stage", "glm-gateway=gdb -batch -ex run --args glm-gateway", NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    CHECK(p.st[SRV_ENGINE].shell);
    CHECK_EQ_STR(p.st[SRV_ENGINE].prog, "glm-replay --script 's 1.jsonl'");
    CHECK_EQ_STR(arg_after(&p, SRV_ENGINE, "--model"), g_model);   /* the stage's arguments follow */
    CHECK_EQ_STR(p.st[SRV_TOOLS].prog, "cat");
    CHECK_EQ_STR(p.st[SRV_GATEWAY].prog, "gdb -batch -ex run --args glm-gateway");
    CHECK(!p.st[SRV_TOKENIZE].shell);
    srv_plan_free(&p);
    srv_cfg_free(&c);
}

TEST(argparse_spellings)
{
    srv_cfg c;
    srv_plan p;
    /* --flag=value, underscores, the last value of a setting wins (BooleanOptional pairs too) */
    CHECK_EQ_INT(parse(&c, g_model, "--max_num_seqs=4", "--max-num-seqs", "5", "--enable-prefix-caching",
                       "--no-enable-prefix-caching", "--speculative-config.num_speculative_tokens=2", NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    CHECK_EQ_STR(arg_after(&p, SRV_ENGINE, "--max-num-seqs"), "5");
    CHECK_EQ_INT(arg_at(&p, SRV_ENGINE, "4"), -1);
    CHECK_EQ_INT(arg_at(&p, SRV_ENGINE, "--enable-prefix-caching"), -1);
    CHECK(arg_at(&p, SRV_ENGINE, "--no-enable-prefix-caching") >= 0);
    CHECK_EQ_STR(arg_after(&p, SRV_ENGINE, "--speculative-config.num_speculative_tokens"), "2");
    srv_plan_free(&p);
    srv_cfg_free(&c);
}

/* A bad command line: parse fails with a message containing `want`. */
static int refused(const char *want, ...)
{
    char *argv[32] = {"glm-serve"};
    int argc = 1;
    va_list ap;
    va_start(ap, want);
    for (char *a; argc < 31 && (a = va_arg(ap, char *)); ) argv[argc++] = a;
    va_end(ap);
    srv_cfg c;
    g_err[0] = 0;
    int rc = srv_cfg_parse(&c, argc, argv, stdout, g_err, sizeof g_err);
    srv_cfg_free(&c);
    if (rc == PL_ERR_INVALID && strstr(g_err, want)) return 1;
    fprintf(stderr, "  rc %d, message '%s', expected '%s'\n", rc, g_err, want);
    return 0;
}

TEST(bad_command_lines_name_the_flag)
{
    CHECK(refused("'--trust-remote-code' is not a glm-serve option", g_model, "--trust-remote-code", NULL));
    CHECK(refused("'--max-num-seq' is not a glm-serve option", g_model, "--max-num-seq=3", NULL));
    CHECK(refused("--port needs a value", g_model, "--port", NULL));
    CHECK(refused("--port: expected a port number", g_model, "--port", "http", NULL));
    CHECK(refused("--port: expected a port number", g_model, "--port", "70000", NULL));
    CHECK(refused("--uvicorn-log-level: 'loud' is not one of", g_model, "--uvicorn-log-level", "loud", NULL));
    CHECK(refused("--enable-auto-tool-choice requires --tool-call-parser", g_model, "--enable-auto-tool-choice", NULL));
    CHECK(refused("--max-model-len: expected a positive number", g_model, "--max-model-len", "1.5K", NULL));
    CHECK(refused("--max-model-len: expected a positive number", g_model, "--max-model-len", "0", NULL));
    CHECK(refused("--stage parser=x: unknown stage 'parser'", g_model, "--stage", "parser=x", NULL));
    CHECK(refused("--stage engine: expected NAME=COMMAND", g_model, "--stage", "engine", NULL));
    CHECK(refused("--stage engine=: expected NAME=COMMAND", g_model, "--stage", "engine=", NULL));
    CHECK(refused("--enable-prefix-caching takes no value", g_model, "--enable-prefix-caching=1", NULL));
    CHECK(refused("--restart-delay: expected a number of seconds", g_model, "--restart-delay", "soon", NULL));
    CHECK(refused("no model", "--port", "1", NULL));
    CHECK(refused("unexpected argument 'other' (the model is already", g_model, "other", NULL));
    CHECK(refused("the model is already", g_model, "--model", "other", NULL));
    CHECK(refused("--chat-template: empty value", g_model, "--chat-template", "", NULL));
}

TEST(plan_errors)
{
    srv_cfg c;
    srv_plan p;
    CHECK_EQ_INT(parse(&c, "/nonexistent-model", NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), PL_ERR_INVALID);
    CHECK(strstr(g_err, "/nonexistent-model/config.json") != NULL);
    srv_plan_free(&p);
    CHECK_EQ_INT(srv_plan_build(&p, &c, "/b", "/tmp/a-runtime-directory-name-long-enough-that-a-unix-socket-path-in-it-cannot-fit-at-all",
                                g_err, sizeof g_err), PL_ERR_INVALID);
    CHECK(strstr(g_err, "too long for unix socket paths") != NULL);
    srv_plan_free(&p);
    srv_cfg_free(&c);
}

TEST(print_commands_quotes_and_hides)
{
    srv_cfg c;
    srv_plan p;
    unsetenv("GLMPIPE_API_KEY");
    CHECK_EQ_INT(parse(&c, g_model, "--api-key", "sekrit", "--default-chat-template-kwargs", "{\"a\": \"it's\"}", NULL), 0);
    CHECK_EQ_INT(plan(&p, &c), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    srv_plan_print(&p, f);
    fclose(f);
    CHECK(strstr(text, "sekrit") == NULL);
    CHECK(strstr(text, "gateway: NOTIFY_SOCKET=/run/t/notify.gateway GLMPIPE_API_KEY='<hidden>' /opt/glm/bin/glm-gateway ") != NULL);
    CHECK(strstr(text, "--default-chat-template-kwargs '{\"a\": \"it'\\''s\"}'") != NULL);
    CHECK(strstr(text, "parse-reasoning:") == NULL);   /* not in this pipeline */
    free(text);
    srv_plan_free(&p);
    srv_cfg_free(&c);
}

TEST(human_readable_ints)
{
    int64_t v = 0;
    CHECK(!pl_parse_human_i64("32768", 1, INT64_MAX, &v) && v == 32768);
    CHECK(!pl_parse_human_i64("1k", 1, INT64_MAX, &v) && v == 1000);
    CHECK(!pl_parse_human_i64("1K", 1, INT64_MAX, &v) && v == 1024);
    CHECK(!pl_parse_human_i64("25.6k", 1, INT64_MAX, &v) && v == 25600);
    CHECK(!pl_parse_human_i64("4G", 1, INT64_MAX, &v) && v == 4294967296LL);
    CHECK(!pl_parse_human_i64("2m", 1, INT64_MAX, &v) && v == 2000000);
    CHECK(!pl_parse_human_i64("1T", 1, INT64_MAX, &v) && v == 1099511627776LL);
    CHECK(pl_parse_human_i64("1.5K", 1, INT64_MAX, &v));     /* vLLM: no decimals with binary suffixes */
    CHECK(pl_parse_human_i64("k", 1, INT64_MAX, &v));
    CHECK(pl_parse_human_i64("1.k", 1, INT64_MAX, &v));
    CHECK(pl_parse_human_i64("1x", 1, INT64_MAX, &v));
    CHECK(pl_parse_human_i64("-1k", 1, INT64_MAX, &v));
    CHECK(pl_parse_human_i64("2k", 1, 1999, &v));            /* range after the multiplier */
    CHECK(pl_parse_human_i64("9000000000T", 1, INT64_MAX, &v));
    CHECK(pl_parse_human_i64("", 1, INT64_MAX, &v));
}

int main(void)
{
    snprintf(g_model, sizeof g_model, "/tmp/glm-serve-test-XXXXXX");
    if (!mkdtemp(g_model)) { printf("0 passed, 1 failed, 0 skipped\n"); return 1; }
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", g_model);
    FILE *f = fopen(path, "w");
    if (f) { fputs("{\"max_position_embeddings\": 4096}", f); fclose(f); }
    RUN(flags_reach_their_stage);
    RUN(gateway_command_line);
    RUN(api_keys);
    RUN(wiring_is_a_ring);
    RUN(stage_replacement);
    RUN(argparse_spellings);
    RUN(bad_command_lines_name_the_flag);
    RUN(plan_errors);
    RUN(print_commands_quotes_and_hides);
    RUN(human_readable_ints);
    unlink(path);
    rmdir(g_model);
    return test_report();
}
