/* test_gateway_agent.c — the Anthropic Messages API (anthropic.c) and the
 * Responses API (responses.c) of glm-gateway: request conversion to the chat
 * body, and content blocks / output items / stream events made from
 * pipeline messages (through gen.c and blocks.c, as the server runs them).
 * End to end with the SDKs: tests/py/test_gateway_anthropic.py,
 * tests/py/test_gateway_responses.py. */
#include "test.h"
#include "test_msg.h"
#include "gateway/gw_int.h"
#include "json.h"
#include "pyjson.h"

/* ================================================================ helpers */

/* Convert a Messages body; the chat body as Python's json.dumps prints it,
 * or "ERROR: <message>". */
static char *conv_api(const char *json, bool count, bool responses)
{
    cJSON *in = NULL, *out = NULL;
    char err[512];
    pl_buf b;
    pl_buf_init(&b);
    if (pl_json_parse(&in, json, strlen(json), err, sizeof err)) return strdup("BAD TEST JSON");
    int rc = responses ? gw_resp_to_chat(in, &out, err, sizeof err) : gw_ant_to_chat(in, count, &out, err, sizeof err);
    if (rc) pl_buf_printf(&b, "ERROR: %s", err);
    else pl_pyjson_dump(&b, out, &PL_PYJSON_DEFAULT);
    cJSON_Delete(in);
    cJSON_Delete(out);
    char *s = strndup(b.data ? b.data : "", b.len);
    pl_buf_free(&b);
    return s;
}

static char *conv(const char *json, bool count) { return conv_api(json, count, false); }

#define CHECK_RESP(json, want) do { char *_s = conv_api(json, false, true); CHECK_EQ_STR(_s, want); free(_s); } while (0)
#define CHECK_CONV(json, count, want) do { char *_s = conv(json, count); CHECK_EQ_STR(_s, want); free(_s); } while (0)

static int feed(gw_gen *g, const char *json)
{
    test_msg m;
    const msgpack_object *o = test_msg_parse(&m, json);
    int f = o ? gw_gen_msg(g, 0, o, 1.0, 1.0) : -1;
    test_msg_free(&m);
    return f;
}

static gw_gen *new_gen_api(bool stream, enum gw_api api)
{
    gw_gen_cfg c = {.ep = GW_EP_CHAT, .id = api == GW_API_RESPONSES ? "resp_x" : "msg_x", .model = "m", .created = 7,
                    .stream = stream, .n = 1, .num_prompts = 1, .logprobs = -1, .max_tokens = -1, .api = api,
                    .resp_echo = "\"instructions\":null\x01\"tools\":[]\x01\"text\":null\x01\"user\":null"};
    gw_gen *g = NULL;
    gw_gen_new(&g, &c);
    return g;
}

static gw_gen *new_gen(bool stream) { return new_gen_api(stream, GW_API_ANTHROPIC); }

/* Event names of a stream buffer joined by spaces, each delta with its
 * type (text_delta...), the data lines checked to be JSON of that type. */
static void event_names(const pl_buf *b, pl_buf *out)
{
    const char *p = b->data ? b->data : "", *end = p + b->len;
    while (p < end) {
        const char *nl = strstr(p, "\n\n");
        if (!nl || strncmp(p, "event: ", 7)) { pl_buf_puts(out, " BAD"); return; }
        const char *dl = strstr(p, "\ndata: ");
        cJSON *v = NULL;
        char err[64];
        if (!dl || dl > nl || pl_json_parse(&v, dl + 7, (size_t)(nl - dl - 7), err, sizeof err)) { pl_buf_puts(out, " BADJSON"); return; }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
        size_t nlen = (size_t)(dl - p - 7);
        if (!cJSON_IsString(t) || strlen(t->valuestring) != nlen || memcmp(t->valuestring, p + 7, nlen)) pl_buf_puts(out, " MISMATCH");
        if (out->len) pl_buf_putc(out, ' ');
        pl_buf_append(out, p + 7, nlen);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "delta");
        const cJSON *dt = d ? cJSON_GetObjectItemCaseSensitive(d, "type") : NULL;
        if (cJSON_IsString(dt)) pl_buf_printf(out, ":%s", dt->valuestring);
        cJSON_Delete(v);
        p = nl + 2;
    }
}

/* ================================================================ conversion */

TEST(convert_system_and_text)
{
    CHECK_CONV("{\"model\":\"m\",\"max_tokens\":5,\"system\":[{\"type\":\"text\",\"text\":\"x-anthropic-billing-header: h\"},"
               "{\"type\":\"text\",\"text\":\"A\"},{\"type\":\"text\",\"text\":\"\"},{\"type\":\"text\",\"text\":\"B\"}],"
               "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one\"}]},"
               "{\"role\":\"assistant\",\"content\":\"ok\"},"
               "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"p\"},{\"type\":\"text\",\"text\":\"q\"}]}],"
               "\"stop_sequences\":[\"END\"],\"temperature\":0.5,\"top_k\":3,\"stream\":true,\"metadata\":{\"user_id\":\"u\"}}",
               false,
               "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"AB\"}, {\"role\": \"user\", \"content\": \"one\"}, "
               "{\"role\": \"assistant\", \"content\": \"ok\"}, {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"p\"}, "
               "{\"type\": \"text\", \"text\": \"q\"}]}], \"max_tokens\": 5, \"stop\": [\"END\"], \"temperature\": 0.5, \"top_k\": 3, "
               "\"stream\": true}");
    /* a string system is kept as given (vLLM strips the header only from blocks); "" is dropped */
    CHECK_CONV("{\"model\":\"m\",\"system\":\"\",\"messages\":[{\"role\":\"system\",\"content\":\"x-anthropic-billing-header\"},"
               "{\"role\":\"user\",\"content\":\"hi\"}]}", true,
               "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
}

TEST(convert_tools_and_results)
{
    /* tool_use -> tool_calls with json.dumps(input); tool results -> tool
     * messages before the user's own text; is_error is not shown (vLLM) */
    CHECK_CONV("{\"model\":\"m\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},"
               "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"t\",\"signature\":\"s\"},"
               "{\"type\":\"redacted_thinking\",\"data\":\"d\"},{\"type\":\"text\",\"text\":\"Let me\"},"
               "{\"type\":\"tool_use\",\"id\":\"tu1\",\"name\":\"f\",\"input\":{\"x\":1.0,\"y\":\"\\u00e9\",\"z\":[1,null]}}]},"
               "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"tu1\",\"is_error\":true,"
               "\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},{\"type\":\"text\",\"text\":\"go\"}]},"
               "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"tu1\",\"content\":\"only\"}]}],"
               "\"tools\":[{\"name\":\"f\",\"description\":\"F\",\"input_schema\":{\"type\":\"object\"},\"strict\":true}],"
               "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true}}", false,
               "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"w?\"}, {\"role\": \"assistant\", \"reasoning\": \"t\", "
               "\"tool_calls\": [{\"id\": \"tu1\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": "
               "\"{\\\"x\\\": 1.0, \\\"y\\\": \\\"\\\\u00e9\\\", \\\"z\\\": [1, null]}\"}}], \"content\": \"Let me\"}, "
               "{\"role\": \"tool\", \"tool_call_id\": \"tu1\", \"content\": \"a\\nb\"}, {\"role\": \"user\", \"content\": \"go\"}, "
               "{\"role\": \"tool\", \"tool_call_id\": \"tu1\", \"content\": \"only\"}], \"max_tokens\": 9, \"parallel_tool_calls\": false, "
               "\"tool_choice\": \"required\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"F\", "
               "\"parameters\": {\"type\": \"object\"}, \"strict\": true}}]}");
    CHECK_CONV("{\"model\":\"m\",\"messages\":[],\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],"
               "\"tool_choice\":{\"type\":\"tool\",\"name\":\"f\"}}", true,
               "{\"model\": \"m\", \"messages\": [], \"parallel_tool_calls\": true, \"tool_choice\": {\"type\": \"function\", "
               "\"function\": {\"name\": \"f\"}}, \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}]}");
    /* tools without tool_choice: "auto" */
    CHECK_CONV("{\"model\":\"m\",\"messages\":[],\"tools\":[{\"name\":\"f\",\"input_schema\":{}}]}", true,
               "{\"model\": \"m\", \"messages\": [], \"tools\": [{\"type\": \"function\", "
               "\"function\": {\"name\": \"f\", \"parameters\": {}}}], \"tool_choice\": \"auto\"}");
}

TEST(convert_thinking)
{
    CHECK_CONV("{\"model\":\"m\",\"messages\":[],\"output_config\":{\"effort\":\"max\"},\"thinking\":{\"type\":\"disabled\"}}", true,
               "{\"model\": \"m\", \"messages\": [], \"reasoning_effort\": \"none\"}");
    CHECK_CONV("{\"model\":\"m\",\"messages\":[],\"output_config\":{\"effort\":\"low\"},\"thinking\":{\"type\":\"adaptive\"}}", true,
               "{\"model\": \"m\", \"messages\": [], \"reasoning_effort\": \"low\"}");
    CHECK_CONV("{\"model\":\"m\",\"max_tokens\":4096,\"messages\":[],\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2048}}", false,
               "{\"model\": \"m\", \"messages\": [], \"max_tokens\": 4096}");
}

TEST(convert_refusals)
{
    static const char *const bad[] = {
        "{\"model\":\"m\",\"messages\":[]}",                                             /* no max_tokens */
        "{\"model\":\"m\",\"max_tokens\":0,\"messages\":[]}",
        "{\"model\":\"m\",\"max_tokens\":1.5,\"messages\":[]}",
        "{\"max_tokens\":5,\"messages\":[]}",                                            /* no model */
        "{\"model\":\"m\",\"max_tokens\":5}",                                            /* no messages */
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}]}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[\"text\"]}]}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\",\"input\":[]}]}]}",
        "{\"model\":\"m\",\"max_tokens\":5000,\"messages\":[],\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":100}}",
        "{\"model\":\"m\",\"max_tokens\":2000,\"messages\":[],\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":4000}}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"thinking\":{\"type\":\"sometimes\"}}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"tool_choice\":{\"type\":\"tool\"},\"tools\":[]}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"tools\":[{\"name\":\"f\"}]}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"output_config\":{\"format\":{\"type\":\"json_schema\"}}}",
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"stop_sequences\":[1]}",
        "[]",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        char *s = conv(bad[i], false);
        if (strncmp(s, "ERROR: ", 7)) { fprintf(stderr, "  accepted: %s -> %s\n", bad[i], s); CHECK(0); }
        free(s);
    }
}

/* ================================================================ output */

TEST(body_blocks_stop_reason_usage)
{
    gw_gen *g = new_gen(false);
    feed(g, "{\"type\":\"start\",\"id\":\"x\",\"n\":1,\"prompt_tokens\":20,\"cached_tokens\":16}");
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[1],\"reasoning\":\"hm\"}");
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[2],\"text\":\"Go.\"}");
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[3],\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\","
            "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\": \"}}]}");
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[4],\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}],"
            "\"finish_reason\":\"tool_calls\"}");
    CHECK(feed(g, "{\"type\":\"end\",\"id\":\"x\",\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":4}}") & GW_GEN_DONE);
    pl_buf b;
    pl_buf_init(&b);
    gw_gen_body(g, &b);
    /* the signature is random: cut it out */
    char *sig = strstr(b.data, "\"signature\":\"");
    CHECK(sig && strlen(sig) > 46);
    if (sig) memmove(sig + 13, sig + 45, strlen(sig + 45) + 1);
    CHECK_EQ_STR(b.data, "{\"id\":\"msg_x\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hm\","
                         "\"signature\":\"\"},{\"type\":\"text\",\"text\":\"Go.\"},{\"type\":\"tool_use\",\"id\":\"c1\",\"name\":\"f\","
                         "\"input\":{\"a\": 1}}],\"model\":\"m\",\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":4,"
                         "\"output_tokens\":4,\"cache_read_input_tokens\":16}}");
    pl_buf_free(&b);
    gw_gen_free(g);

    /* nothing generated: one empty text block; a stop string: stop_sequence */
    g = new_gen(false);
    feed(g, "{\"type\":\"start\",\"id\":\"x\",\"n\":1,\"prompt_tokens\":3}");
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[1],\"text\":\"\",\"finish_reason\":\"stop\",\"stop_reason\":\"END\"}");
    feed(g, "{\"type\":\"end\",\"id\":\"x\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}");
    pl_buf_init(&b);
    gw_gen_body(g, &b);
    CHECK_EQ_STR(b.data, "{\"id\":\"msg_x\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"\"}],"
                         "\"model\":\"m\",\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}");
    pl_buf_free(&b);
    gw_gen_free(g);
}

TEST(stream_events_in_order)
{
    gw_gen *g = new_gen(true);
    pl_buf b, names;
    pl_buf_init(&b);
    pl_buf_init(&names);
    CHECK(feed(g, "{\"type\":\"start\",\"id\":\"x\",\"n\":1,\"prompt_tokens\":5}") & GW_GEN_DIRTY);   /* message_start at once */
    gw_gen_stream(g, &b);
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[1],\"reasoning\":\"a\"}");
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[2],\"reasoning\":\"b\"}");   /* coalesced */
    gw_gen_stream(g, &b);
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[3],\"text\":\"T\",\"tool_calls\":[{\"index\":0,\"id\":\"c1\","
            "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}");
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[4],\"text\":\"after\"}");   /* held: a tool is open */
    gw_gen_stream(g, &b);
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[5],\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"}\"}}],"
            "\"finish_reason\":\"length\"}");
    feed(g, "{\"type\":\"end\",\"id\":\"x\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":5}}");
    gw_gen_stream(g, &b);
    event_names(&b, &names);
    CHECK_EQ_STR(names.data, "message_start ping content_block_start content_block_delta:thinking_delta "
                             "content_block_delta:signature_delta content_block_stop content_block_start content_block_delta:text_delta "
                             "content_block_stop content_block_start content_block_delta:input_json_delta content_block_delta:input_json_delta "
                             "content_block_stop content_block_start content_block_delta:text_delta content_block_stop "
                             "message_delta message_stop");
    CHECK(strstr(b.data, "\"thinking\":\"ab\"") != NULL);
    CHECK(strstr(b.data, "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"after\"},\"index\":3}") != NULL);
    CHECK(strstr(b.data, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},"
                         "\"usage\":{\"input_tokens\":5,\"output_tokens\":5}}") != NULL);
    CHECK(strstr(b.data, "[DONE]") == NULL);
    /* nothing more once over */
    size_t len = b.len;
    gw_gen_stream(g, &b);
    CHECK_EQ_INT(b.len, len);
    pl_buf_free(&names);
    pl_buf_free(&b);
    gw_gen_free(g);
}

TEST(stream_error_closes_block)
{
    gw_gen *g = new_gen(true);
    pl_buf b, names;
    pl_buf_init(&b);
    pl_buf_init(&names);
    feed(g, "{\"type\":\"start\",\"id\":\"x\",\"n\":1,\"prompt_tokens\":5}");
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[3],\"text\":\"par\"}");
    gw_gen_stream(g, &b);
    CHECK(feed(g, "{\"type\":\"error\",\"id\":\"x\",\"code\":503,\"message\":\"engine gone\"}") & GW_GEN_FAILED);
    gw_gen_stream(g, &b);
    event_names(&b, &names);
    CHECK_EQ_STR(names.data, "message_start ping content_block_start content_block_delta:text_delta content_block_stop error");
    CHECK(strstr(b.data, "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"engine gone\"}}\n\n") != NULL);
    pl_buf_free(&names);
    pl_buf_free(&b);
    gw_gen_free(g);
    /* an error before start: the HTTP error body, Anthropic's shape */
    g = new_gen(false);
    feed(g, "{\"type\":\"error\",\"id\":\"x\",\"code\":400,\"message\":\"too long\"}");
    pl_buf_init(&b);
    CHECK_EQ_INT(gw_gen_error(g, &b), 400);
    CHECK_EQ_STR(b.data, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"too long\"}}");
    pl_buf_free(&b);
    gw_gen_free(g);
    CHECK_EQ_STR(gw_ant_error_type(401), "authentication_error");
    CHECK_EQ_STR(gw_ant_error_type(500), "api_error");
    CHECK_EQ_STR(gw_ant_error_type(422), "invalid_request_error");
}

TEST(stream_keepalive_ping)
{
    gw_gen *g = new_gen(true);
    pl_buf b, names;
    pl_buf_init(&b);
    pl_buf_init(&names);
    CHECK(!gw_gen_ping(g, gw_now() + 100));   /* nothing sent yet: no ping */
    feed(g, "{\"type\":\"start\",\"id\":\"x\",\"n\":1,\"prompt_tokens\":5}");
    gw_gen_stream(g, &b);
    CHECK(!gw_gen_ping(g, gw_now()));          /* just wrote */
    CHECK(gw_gen_ping(g, gw_now() + GW_ANT_PING_S + 1));
    gw_gen_stream(g, &b);
    feed(g, "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[1],\"text\":\"a\",\"finish_reason\":\"stop\"}");
    feed(g, "{\"type\":\"end\",\"id\":\"x\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}");
    CHECK(!gw_gen_ping(g, gw_now() + 100));   /* over */
    gw_gen_stream(g, &b);
    event_names(&b, &names);
    CHECK_EQ_STR(names.data, "message_start ping ping content_block_start content_block_delta:text_delta content_block_stop "
                             "message_delta message_stop");
    pl_buf_free(&names);
    pl_buf_free(&b);
    gw_gen_free(g);
}

/* ================================================================ Responses */

TEST(responses_convert)
{
    /* a call joins the assistant message before it; reasoning too; input_text -> text */
    CHECK_RESP("{\"model\":\"m\",\"instructions\":\"Be nice\",\"max_output_tokens\":50,\"reasoning\":{\"effort\":\"low\"},"
               "\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"w?\"}]},"
               "{\"type\":\"reasoning\",\"id\":\"r\",\"summary\":[],\"content\":[{\"type\":\"reasoning_text\",\"text\":\"t\"}]},"
               "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{}\"},"
               "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"},"
               "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"r1\"}],"
               "\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"parameters\":{},\"strict\":null}],"
               "\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"},\"store\":true}",
               "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"Be nice\"}, {\"role\": \"user\", "
               "\"content\": [{\"type\": \"text\", \"text\": \"w?\"}]}, {\"role\": \"assistant\", \"reasoning\": \"t\", \"tool_calls\": "
               "[{\"id\": \"c1\", \"function\": {\"name\": \"f\", \"arguments\": \"{}\"}, \"type\": \"function\"}, {\"id\": \"c2\", "
               "\"function\": {\"name\": \"f\", \"arguments\": \"{\\\"a\\\":1}\"}, \"type\": \"function\"}]}, {\"role\": \"tool\", "
               "\"content\": \"r1\", \"tool_call_id\": \"c1\"}], \"max_tokens\": 50, \"reasoning_effort\": \"low\", \"tools\": "
               "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}], \"tool_choice\": {\"type\": "
               "\"function\", \"function\": {\"name\": \"f\"}}}");
    /* a string input; a partial last assistant message is continued */
    CHECK_RESP("{\"input\":[{\"role\":\"user\",\"content\":\"q\"},{\"type\":\"message\",\"role\":\"assistant\",\"status\":"
               "\"incomplete\",\"content\":[{\"type\":\"output_text\",\"text\":\"{\"}]}]}",
               "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"{\"}], "
               "\"add_generation_prompt\": false, \"continue_final_message\": true}");
    CHECK_RESP("{\"input\":\"hi\",\"stream\":true}",
               "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream\": true}");
    static const char *const bad[] = {
        "{\"input\":\"x\",\"previous_response_id\":\"resp_1\"}",
        "{\"input\":\"x\",\"background\":true}",
        "{\"input\":\"x\",\"tools\":[{\"type\":\"web_search_preview\"}]}",
        "{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\"}}}",
        "{\"input\":[{\"type\":\"mystery\"}]}",
        "{\"input\":[{\"type\":\"reasoning\",\"summary\":[],\"encrypted_content\":\"x\"}]}",
        "{\"input\":[{\"type\":\"function_call\",\"name\":\"f\"}]}",
        "{\"input\":5}",
        "{}",
        "{\"input\":\"x\",\"tool_choice\":\"required\"}",
        "{\"input\":\"x\",\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"}}",
        "{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"g\"}],\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"}}",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        char *s = conv_api(bad[i], false, true);
        if (strncmp(s, "ERROR: ", 7)) { fprintf(stderr, "  accepted: %s -> %s\n", bad[i], s); CHECK(0); }
        free(s);
    }
}

TEST(responses_body_and_stream_agree)
{
    const char *msgs[] = {
        "{\"type\":\"start\",\"id\":\"x\",\"n\":1,\"prompt_tokens\":7}",
        "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[1,2],\"reasoning\":\"r\"}",
        "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[3],\"text\":\"Hi\"}",
        "{\"type\":\"delta\",\"id\":\"x\",\"index\":0,\"token_ids\":[4],\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}],\"finish_reason\":\"length\"}",
        "{\"type\":\"end\",\"id\":\"x\",\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4}}",
    };
    gw_gen *full = new_gen_api(false, GW_API_RESPONSES), *st = new_gen_api(true, GW_API_RESPONSES);
    pl_buf b, s, names;
    pl_buf_init(&b);
    pl_buf_init(&s);
    pl_buf_init(&names);
    for (size_t i = 0; i < PL_ARRAY_LEN(msgs); i++) {
        feed(full, msgs[i]);
        feed(st, msgs[i]);
        gw_gen_stream(st, &s);
    }
    gw_gen_body(full, &b);
    cJSON *v = NULL;
    char err[64];
    CHECK(!pl_json_parse(&v, b.data, b.len, err, sizeof err));
    CHECK_EQ_STR(cJSON_GetObjectItem(v, "status")->valuestring, "incomplete");
    CHECK_EQ_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(v, "incomplete_details"), "reason")->valuestring, "max_output_tokens");
    const cJSON *out = cJSON_GetObjectItem(v, "output");
    CHECK_EQ_INT(cJSON_GetArraySize(out), 3);
    CHECK_EQ_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 0), "type")->valuestring, "reasoning");
    CHECK_EQ_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 1), "status")->valuestring, "completed");
    CHECK_EQ_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 2), "status")->valuestring, "incomplete");   /* the last item was cut */
    CHECK_EQ_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 2), "call_id")->valuestring, "c1");
    const cJSON *u = cJSON_GetObjectItem(v, "usage");
    CHECK_EQ_INT(cJSON_GetObjectItem(u, "total_tokens")->valuedouble, 11);
    CHECK_EQ_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(u, "output_tokens_details"), "reasoning_tokens")->valuedouble, 2);
    cJSON_Delete(v);
    /* the stream: event names in order, the completed response carries the same output */
    const char *p = s.data;
    int seq = 0;
    while ((p = strstr(p, "\"sequence_number\":"))) {
        CHECK_EQ_INT(atoi(p + 18), seq);
        seq++;
        p += 18;
    }
    /* created, in_progress; reasoning and message: added, part added, delta, done, part done, item done;
     * the call: added, delta, arguments done, item done; completed */
    CHECK_EQ_INT(seq, 2 + 6 + 6 + 4 + 1);
    const char *done = strstr(s.data, "event: response.incomplete\ndata: ");
    CHECK(done != NULL);
    if (done) {
        cJSON *e = NULL;
        done += strlen("event: response.incomplete\ndata: ");
        CHECK(!pl_json_parse(&e, done, strlen(done) - 2, err, sizeof err));
        const cJSON *r = cJSON_GetObjectItem(e, "response");
        char *a = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "output"));
        cJSON *fv = NULL;
        pl_json_parse(&fv, b.data, b.len, err, sizeof err);
        char *bo = cJSON_PrintUnformatted(cJSON_GetObjectItem(fv, "output"));
        /* the same items (their random ids differ between the two requests, not their length) */
        CHECK(a && bo && strlen(a) == strlen(bo));
        free(a);
        free(bo);
        cJSON_Delete(fv);
        cJSON_Delete(e);
    }
    pl_buf_free(&b);
    pl_buf_free(&s);
    pl_buf_free(&names);
    gw_gen_free(full);
    gw_gen_free(st);
}

int main(void)
{
    RUN(convert_system_and_text);
    RUN(convert_tools_and_results);
    RUN(convert_thinking);
    RUN(convert_refusals);
    RUN(body_blocks_stop_reason_usage);
    RUN(stream_events_in_order);
    RUN(stream_error_closes_block);
    RUN(stream_keepalive_ping);
    RUN(responses_convert);
    RUN(responses_body_and_stream_agree);
    return test_report();
}
