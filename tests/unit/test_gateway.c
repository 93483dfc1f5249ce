/* test_gateway.c — glm-gateway's response assembly (gen.c), metrics and JSON
 * writing, fed with pipeline messages written as JSON. The HTTP and ZeroMQ
 * sides are tested through real processes (tests/py/test_gateway_*.py). */
#include <math.h>

#include "test.h"
#include "test_msg.h"
#include "gateway/gw_int.h"

/* ================================================================ helpers */

typedef struct { int n; int sub[8], index[8]; } aborts;

static void on_abort(void *ud, int sub, int index)
{
    aborts *a = ud;
    if (a->n < 8) { a->sub[a->n] = sub; a->index[a->n] = index; }
    a->n++;
}

static gw_gen_cfg cfg_chat(bool stream, aborts *ab)
{
    gw_gen_cfg c = {.ep = GW_EP_CHAT, .id = "chatcmpl-x", .model = "m", .created = 7, .stream = stream,
                    .n = 1, .num_prompts = 1, .logprobs = -1, .max_tokens = -1, .abort = on_abort, .ud = ab};
    return c;
}

/* Feed one message written as JSON; returns gw_gen_msg's flags. */
static int feed(gw_gen *g, int sub, const char *json)
{
    test_msg m;
    const msgpack_object *o = test_msg_parse(&m, json);
    int f = o ? gw_gen_msg(g, sub, o, 1.0, 1.0) : -1;
    test_msg_free(&m);
    return f;
}

static cJSON *parse(const pl_buf *b)
{
    cJSON *v = NULL;
    char err[128];
    if (pl_json_parse(&v, b->data ? b->data : "", b->len, err, sizeof err)) {
        fprintf(stderr, "  bad JSON out (%s): %.*s\n", err, (int)b->len, b->data);
        return NULL;
    }
    return v;
}

static const cJSON *at(const cJSON *v, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, ".")) {
        if (*tok >= '0' && *tok <= '9') v = cJSON_GetArrayItem(v, atoi(tok));
        else v = cJSON_GetObjectItemCaseSensitive(v, tok);
    }
    return v;
}

static const char *str_at(const cJSON *v, const char *path)
{
    const cJSON *x = at(v, path);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static double num_at(const cJSON *v, const char *path)
{
    const cJSON *x = at(v, path);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* The SSE events of a stream buffer, parsed (the last [DONE] not included). */
static int events(const pl_buf *b, cJSON **out, int max, bool *done)
{
    int n = 0;
    *done = false;
    const char *p = b->data ? b->data : "", *end = p + b->len;
    while (p < end) {
        const char *nl = strstr(p, "\n\n");
        if (!nl) break;
        if (!strncmp(p, "data: [DONE]", 12)) *done = true;
        else if (!strncmp(p, "data: ", 6) && n < max) {
            char err[64];
            if (pl_json_parse(&out[n], p + 6, (size_t)(nl - p - 6), err, sizeof err)) out[n] = NULL;
            n++;
        }
        p = nl + 2;
    }
    return n;
}

static void free_events(cJSON **ev, int n)
{
    for (int i = 0; i < n; i++) cJSON_Delete(ev[i]);
}

/* ================================================================ chat */

TEST(chat_body_reasoning_content_usage)
{
    aborts ab = {0};
    gw_gen_cfg c = cfg_chat(false, &ab);
    gw_gen *g;
    CHECK(gw_gen_new(&g, &c) == 0);
    CHECK(feed(g, 0, "{\"type\":\"start\",\"id\":\"x\",\"n\":1,\"prompt_tokens\":9,\"cached_tokens\":4}") & GW_GEN_STARTED);
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[1,2],\"text\":\"\",\"reasoning\":\"thin\"}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[3],\"text\":\"Hi \\\"you\\\"\",\"reasoning\":\"k\"}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[4],\"text\":\"!\",\"finish_reason\":\"stop\"}");
    CHECK(feed(g, 0, "{\"type\":\"end\",\"id\":\"x\",\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}") & GW_GEN_DONE);
    CHECK_EQ_INT(ab.n, 0);   /* an engine finish (no stop string): nothing to abort */
    pl_buf b;
    pl_buf_init(&b);
    gw_gen_body(g, &b);
    cJSON *v = parse(&b);
    CHECK(v != NULL);
    CHECK_EQ_STR(str_at(v, "object"), "chat.completion");
    CHECK_EQ_STR(str_at(v, "id"), "chatcmpl-x");
    CHECK_EQ_STR(str_at(v, "choices.0.message.content"), "Hi \"you\"!");
    CHECK_EQ_STR(str_at(v, "choices.0.message.reasoning"), "think");
    CHECK_EQ_STR(str_at(v, "choices.0.message.reasoning_content"), "think");
    CHECK_EQ_STR(str_at(v, "choices.0.finish_reason"), "stop");
    CHECK(cJSON_IsNull(at(v, "choices.0.stop_reason")));
    CHECK(at(v, "choices.0.message.tool_calls") == NULL);   /* vLLM drops an empty list */
    CHECK_EQ_INT(num_at(v, "usage.prompt_tokens"), 9);
    CHECK_EQ_INT(num_at(v, "usage.completion_tokens"), 4);
    CHECK_EQ_INT(num_at(v, "usage.total_tokens"), 13);
    CHECK_EQ_INT(num_at(v, "usage.prompt_tokens_details.cached_tokens"), 4);
    cJSON_Delete(v);
    pl_buf_free(&b);
    gw_gen_free(g);
}

TEST(chat_stream_coalesces_and_orders)
{
    aborts ab = {0};
    gw_gen_cfg c = cfg_chat(true, &ab);
    c.n = 2;
    c.include_usage = true;
    gw_gen *g;
    gw_gen_new(&g, &c);
    pl_buf b;
    pl_buf_init(&b);
    feed(g, 0, "{\"type\":\"start\",\"id\":\"x\",\"n\":2,\"prompt_tokens\":5}");
    gw_gen_stream(g, &b);
    CHECK_EQ_INT(b.len, 0);   /* no role chunk before the first token */
    /* a slow reader: three steps arrive before the connection can take more */
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[1],\"text\":\"a\"}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":1,\"token_ids\":[1],\"text\":\"A\"}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[2],\"text\":\"b\","
               "\"tool_calls\":[{\"index\":0,\"id\":\"chatcmpl-tool-1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[3],\"text\":\"\","
               "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\": \"}}]}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[4],\"text\":\"\","
               "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]}");
    gw_gen_stream(g, &b);
    cJSON *ev[16];
    bool done;
    int n = events(&b, ev, 16, &done);
    CHECK_EQ_INT(n, 4);   /* two role chunks, one chunk per choice */
    CHECK(!done);
    if (n == 4) {
        CHECK_EQ_STR(str_at(ev[0], "choices.0.delta.role"), "assistant");
        CHECK_EQ_STR(str_at(ev[0], "choices.0.delta.content"), "");
        CHECK_EQ_INT(num_at(ev[1], "choices.0.index"), 1);
        CHECK_EQ_STR(str_at(ev[2], "choices.0.delta.content"), "ab");
        CHECK_EQ_STR(str_at(ev[2], "choices.0.delta.tool_calls.0.id"), "chatcmpl-tool-1");
        CHECK_EQ_STR(str_at(ev[2], "choices.0.delta.tool_calls.0.function.name"), "f");
        CHECK_EQ_STR(str_at(ev[2], "choices.0.delta.tool_calls.0.function.arguments"), "{\"a\": 1}");
        CHECK(at(ev[2], "choices.0.delta.tool_calls.1") == NULL);
        CHECK(cJSON_IsNull(at(ev[2], "choices.0.finish_reason")));
        CHECK_EQ_STR(str_at(ev[3], "choices.0.delta.content"), "A");
        CHECK_EQ_STR(str_at(ev[3], "object"), "chat.completion.chunk");
    }
    free_events(ev, n);
    pl_buf_reset(&b);
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[],\"text\":\"\",\"finish_reason\":\"tool_calls\"}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":1,\"token_ids\":[2],\"text\":\"B\",\"finish_reason\":\"length\"}");
    CHECK(feed(g, 0, "{\"type\":\"end\",\"id\":\"x\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}") & GW_GEN_DONE);
    gw_gen_stream(g, &b);
    n = events(&b, ev, 16, &done);
    CHECK(done);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_STR(str_at(ev[0], "choices.0.finish_reason"), "tool_calls");
        CHECK(at(ev[0], "choices.0.delta.content") == NULL);
        CHECK_EQ_STR(str_at(ev[1], "choices.0.finish_reason"), "length");
        CHECK_EQ_INT(cJSON_GetArraySize(at(ev[2], "choices")), 0);
        CHECK_EQ_INT(num_at(ev[2], "usage.completion_tokens"), 6);
    }
    free_events(ev, n);
    pl_buf_reset(&b);
    gw_gen_stream(g, &b);
    CHECK_EQ_INT(b.len, 0);   /* [DONE] only once */
    pl_buf_free(&b);
    gw_gen_free(g);
}

TEST(stop_string_decided_downstream_aborts_the_choice)
{
    aborts ab = {0};
    gw_gen_cfg c = cfg_chat(false, &ab);
    c.n = 2;
    gw_gen *g;
    gw_gen_new(&g, &c);
    feed(g, 0, "{\"type\":\"start\",\"id\":\"x\",\"n\":2,\"prompt_tokens\":5}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":1,\"token_ids\":[1],\"text\":\"a\",\"finish_reason\":\"stop\",\"stop_reason\":\"END\"}");
    CHECK_EQ_INT(ab.n, 1);
    CHECK_EQ_INT(ab.sub[0], 0);
    CHECK_EQ_INT(ab.index[0], 1);
    /* a stop token (int stop_reason) was the engine's own decision */
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[1],\"text\":\"a\",\"finish_reason\":\"stop\",\"stop_reason\":151336}");
    CHECK_EQ_INT(ab.n, 1);
    /* late deltas of a finished choice are dropped */
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":1,\"token_ids\":[9],\"text\":\"zzz\"}");
    feed(g, 0, "{\"type\":\"end\",\"id\":\"x\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}");
    pl_buf b;
    pl_buf_init(&b);
    gw_gen_body(g, &b);
    cJSON *v = parse(&b);
    CHECK_EQ_STR(str_at(v, "choices.1.message.content"), "a");
    CHECK_EQ_STR(str_at(v, "choices.1.stop_reason"), "END");
    CHECK_EQ_INT(num_at(v, "choices.0.stop_reason"), 151336);
    cJSON_Delete(v);
    pl_buf_free(&b);
    gw_gen_free(g);
}

TEST(errors_before_and_after_start)
{
    aborts ab = {0};
    gw_gen_cfg c = cfg_chat(false, &ab);
    gw_gen *g;
    gw_gen_new(&g, &c);
    CHECK(feed(g, -1, "{\"type\":\"error\",\"id\":\"x\",\"code\":400,\"err_type\":\"BadRequestError\","
                      "\"message\":\"too long\",\"param\":\"max_tokens\"}") & GW_GEN_FAILED);
    pl_buf b;
    pl_buf_init(&b);
    CHECK_EQ_INT(gw_gen_error(g, &b), 400);
    cJSON *v = parse(&b);
    CHECK_EQ_STR(str_at(v, "error.message"), "too long");
    CHECK_EQ_STR(str_at(v, "error.type"), "BadRequestError");
    CHECK_EQ_STR(str_at(v, "error.param"), "max_tokens");
    CHECK_EQ_INT(num_at(v, "error.code"), 400);
    cJSON_Delete(v);
    gw_gen_free(g);

    /* in a stream after start: an error event, then [DONE] */
    c = cfg_chat(true, &ab);
    gw_gen_new(&g, &c);
    feed(g, 0, "{\"type\":\"start\",\"id\":\"x\",\"n\":1,\"prompt_tokens\":5}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[1],\"text\":\"a\"}");
    pl_buf_reset(&b);
    gw_gen_stream(g, &b);
    pl_buf_reset(&b);
    CHECK(gw_gen_fail(g, 503, "ServiceUnavailableError", "down") & GW_GEN_FAILED);
    gw_gen_stream(g, &b);
    cJSON *ev[4];
    bool done;
    int n = events(&b, ev, 4, &done);
    CHECK(done && n == 1);
    if (n == 1) CHECK_EQ_INT(num_at(ev[0], "error.code"), 503);
    free_events(ev, n);
    pl_buf_free(&b);
    gw_gen_free(g);
}

/* ================================================================ completions */

TEST(completions_prompt_list_and_logprobs)
{
    aborts ab = {0};
    gw_gen_cfg c = {.ep = GW_EP_COMPLETIONS, .id = "cmpl-x", .model = "m", .created = 7, .n = 1, .num_prompts = 2,
                    .logprobs = 1, .echo = true, .max_tokens = -1, .abort = on_abort, .ud = &ab};
    gw_gen *g;
    gw_gen_new(&g, &c);
    feed(g, 1, "{\"type\":\"start\",\"id\":\"x#1\",\"n\":1,\"prompt_tokens\":2,\"context\":{\"prompt_text\":\"h\\u00e9\"}}");
    feed(g, 0, "{\"type\":\"start\",\"id\":\"x#0\",\"n\":1,\"prompt_tokens\":3,\"context\":{\"prompt_text\":\"p0\"}}");
    /* the sampled token is also in top: one key; a duplicate string keeps the later value */
    feed(g, 1, "{\"type\":\"delta\",\"id\":\"x#1\",\"index\":0,\"token_ids\":[5],\"text\":\"\\u4e16\","
               "\"logprobs\":[{\"token\":\"\\u4e16\",\"token_id\":5,\"logprob\":-0.5,"
               "\"top\":[{\"token\":\"\\u4e16\",\"token_id\":5,\"logprob\":-0.5},{\"token\":\"x\",\"token_id\":6,\"logprob\":-1.5}]}]}");
    feed(g, 1, "{\"type\":\"delta\",\"id\":\"x#1\",\"index\":0,\"token_ids\":[7],\"text\":\"y\",\"finish_reason\":\"length\","
               "\"logprobs\":[{\"token\":\"y\",\"token_id\":7,\"logprob\":-1e400,"
               "\"top\":[{\"token\":\"z\",\"token_id\":8,\"logprob\":-0.1},{\"token\":\"w\",\"token_id\":9,\"logprob\":-0.2}]}]}");
    CHECK(!(feed(g, 1, "{\"type\":\"end\",\"id\":\"x#1\",\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2}}") & GW_GEN_DONE));
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x#0\",\"index\":0,\"token_ids\":[1],\"text\":\"\",\"reasoning\":\"r\"}");
    feed(g, 0, "{\"type\":\"delta\",\"id\":\"x#0\",\"index\":0,\"token_ids\":[1],\"text\":\"q\",\"finish_reason\":\"stop\"}");
    CHECK(feed(g, 0, "{\"type\":\"end\",\"id\":\"x#0\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}") & GW_GEN_DONE);
    pl_buf b;
    pl_buf_init(&b);
    gw_gen_body(g, &b);
    cJSON *v = parse(&b);
    CHECK_EQ_STR(str_at(v, "object"), "text_completion");
    CHECK_EQ_STR(str_at(v, "choices.0.text"), "p0rq");   /* completions: no reasoning split */
    CHECK_EQ_STR(str_at(v, "choices.1.text"), "h\xc3\xa9\xe4\xb8\x96y");
    CHECK_EQ_INT(num_at(v, "choices.1.index"), 1);
    CHECK_EQ_INT(num_at(v, "choices.1.logprobs.text_offset.0"), 2);   /* after the echoed prompt, in code points */
    CHECK_EQ_INT(num_at(v, "choices.1.logprobs.text_offset.1"), 3);
    CHECK_EQ_INT(num_at(v, "choices.1.logprobs.token_logprobs.1"), -9999);   /* -inf clamped as vLLM */
    CHECK_EQ_INT(cJSON_GetArraySize(at(v, "choices.1.logprobs.top_logprobs.0")), 2);
    CHECK_EQ_INT(cJSON_GetArraySize(at(v, "choices.1.logprobs.top_logprobs.1")), 2);   /* logprobs + 1 */
    CHECK(at(v, "choices.1.logprobs.top_logprobs.1.y") != NULL);
    CHECK(at(v, "choices.1.logprobs.top_logprobs.1.w") == NULL);
    CHECK_EQ_INT(num_at(v, "usage.prompt_tokens"), 5);
    CHECK_EQ_INT(num_at(v, "usage.completion_tokens"), 4);
    cJSON_Delete(v);
    pl_buf_free(&b);
    gw_gen_free(g);
}

TEST(error_of_one_prompt_aborts_the_others)
{
    aborts ab = {0};
    gw_gen_cfg c = {.ep = GW_EP_COMPLETIONS, .id = "cmpl-x", .model = "m", .n = 1, .num_prompts = 3,
                    .logprobs = -1, .max_tokens = -1, .abort = on_abort, .ud = &ab};
    gw_gen *g;
    gw_gen_new(&g, &c);
    feed(g, 0, "{\"type\":\"start\",\"id\":\"x#0\",\"n\":1,\"prompt_tokens\":3}");
    feed(g, 2, "{\"type\":\"start\",\"id\":\"x#2\",\"n\":1,\"prompt_tokens\":3}");
    feed(g, 2, "{\"type\":\"end\",\"id\":\"x#2\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}");
    CHECK(feed(g, 1, "{\"type\":\"error\",\"id\":\"x#1\",\"code\":500,\"message\":\"boom\"}") & GW_GEN_FAILED);
    CHECK_EQ_INT(ab.n, 1);   /* only #0 still runs */
    CHECK_EQ_INT(ab.sub[0], 0);
    CHECK_EQ_INT(ab.index[0], -1);
    CHECK(!gw_gen_sub_live(g, 0));
    gw_gen_free(g);
}

/* ================================================================ metrics, JSON */

TEST(metrics_text)
{
    gw_metrics *m;
    CHECK(gw_metrics_init(&m, "a\"b", 4096) == 0);
    gw_metrics_ttft(m, 0.003);
    gw_metrics_ttft(m, 0.5);
    gw_req_stats st = {.e2e = 1.2, .queue = -1, .prefill = -1, .decode = 0.9, .inference = -1,
                       .prompt_tokens = 10, .completion_tokens = 20, .n = 1, .max_tokens = 100};
    st.n_finish[GW_FIN_LENGTH] = 1;
    gw_metrics_done(m, &st);
    pl_buf b;
    pl_buf_init(&b);
    test_msg tm;
    const msgpack_object *stats = test_msg_parse(&tm, "{\"type\":\"stats\",\"id\":\"s\",\"num_requests_running\":3,"
                                                      "\"num_requests_waiting\":1,\"kv_blocks_total\":8,\"kv_blocks_used\":2,"
                                                      "\"prefix_cache_hits\":5,\"spec_decode_num_accepted_tokens_per_pos\":[4,2]}");
    gw_metrics_render(m, stats, 0, 0, &b);
    const char *t = b.data;
    CHECK(strstr(t, "vllm:num_requests_running{model_name=\"a\\\"b\",engine=\"0\"} 3.0\n") != NULL);
    CHECK(strstr(t, "vllm:kv_cache_usage_perc{model_name=\"a\\\"b\",engine=\"0\"} 0.25\n") != NULL);
    CHECK(strstr(t, "vllm:prefix_cache_hits_total{") != NULL);
    CHECK(strstr(t, "vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name=\"a\\\"b\",engine=\"0\",position=\"1\"} 2.0") != NULL);
    CHECK(strstr(t, "vllm:time_to_first_token_seconds_bucket{model_name=\"a\\\"b\",engine=\"0\",le=\"0.005\"} 1.0\n") != NULL);
    CHECK(strstr(t, "vllm:time_to_first_token_seconds_bucket{model_name=\"a\\\"b\",engine=\"0\",le=\"0.5\"} 2.0\n") != NULL);
    CHECK(strstr(t, "vllm:time_to_first_token_seconds_count{model_name=\"a\\\"b\",engine=\"0\"} 2.0\n") != NULL);
    CHECK(strstr(t, "finished_reason=\"length\"} 1.0\n") != NULL);
    CHECK(strstr(t, "vllm:request_prompt_tokens_bucket{model_name=\"a\\\"b\",engine=\"0\",le=\"2000.0\"}") != NULL);
    CHECK(strstr(t, "le=\"5000.0\"") == NULL);   /* 1-2-5 buckets stop at max_model_len */
    CHECK(strstr(t, "vllm:request_queue_time_seconds_count{model_name=\"a\\\"b\",engine=\"0\"} 0.0\n") != NULL);
    test_msg_free(&tm);
    pl_buf_reset(&b);
    gw_metrics_render(m, NULL, 2, 5, &b);   /* no engine stats: the gateway's view, no engine gauges */
    CHECK(strstr(b.data, "vllm:num_requests_waiting{model_name=\"a\\\"b\",engine=\"0\"} 5.0\n") != NULL);
    CHECK(strstr(b.data, "kv_cache_usage_perc") == NULL);
    pl_buf_free(&b);
    gw_metrics_free(m);
}

TEST(json_from_msgpack)
{
    test_msg tm;
    const msgpack_object *o = test_msg_parse(&tm, "{\"a\":[1,-2,1.5,null,true,\"x\\ny\"],\"b\":{\"c\":\"\\u00e9\"}}");
    pl_buf b;
    pl_buf_init(&b);
    gw_jw_msgpack(&b, o);
    CHECK_EQ_STR(b.data, "{\"a\":[1,-2,1.5,null,true,\"x\\ny\"],\"b\":{\"c\":\"\xc3\xa9\"}}");
    CHECK_EQ_INT(gw_utf8_len("h\xc3\xa9\xe4\xb8\x96", 6), 3);
    pl_buf_reset(&b);
    gw_jw_double(&b, INFINITY);
    CHECK_EQ_STR(b.data, "null");
    pl_buf_free(&b);
    test_msg_free(&tm);
}

int main(void)
{
    RUN(chat_body_reasoning_content_usage);
    RUN(chat_stream_coalesces_and_orders);
    RUN(stop_string_decided_downstream_aborts_the_choice);
    RUN(errors_before_and_after_start);
    RUN(completions_prompt_list_and_logprobs);
    RUN(error_of_one_prompt_aborts_the_others);
    RUN(metrics_text);
    RUN(json_from_msgpack);
    return test_report();
}
