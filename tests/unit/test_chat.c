/* tokenize/chat.c: request messages and tools as vLLM 0.33 hands them to the
 * chat template. Each expected conversation is what vLLM's
 * parse_chat_messages + _postprocess_messages produce (json.dumps of them);
 * the whole request path is checked against vLLM itself in
 * tests/py/test_request_goldens.py. */
#include "test.h"
#include "json.h"
#include "pyjson.h"
#include "tokenize/tokenize.h"

static const tok_chat_opts OPENAI = {true, false, "glm"};
static const tok_chat_opts STRING = {false, false, "glm"};

/* What a conversion gave: out as compact JSON, or "<code>: <message>".
 * in and out are freed. */
static const char *outcome(int rc, const tok_error *e, cJSON *in, cJSON *out)
{
    static pl_buf b;
    pl_buf_reset(&b);
    if (rc) pl_buf_printf(&b, "%d: %s", e->code, e->message);
    else pl_pyjson_dump(&b, out, &(pl_pyjson_opts){0, -1, 0, ",", ":"});
    cJSON_Delete(in);
    cJSON_Delete(out);
    return b.data;
}

/* messages JSON -> the converted conversation */
static const char *conv(const char *messages, const tok_chat_opts *o)
{
    cJSON *m, *out = NULL;
    if (pl_json_parse(&m, messages, strlen(messages), NULL, 0)) return "bad test JSON";
    tok_error e = {0};
    int rc = tok_messages_check(m, &e);
    if (!rc) rc = tok_messages_convert(m, o, &out, &e);
    return outcome(rc, &e, m, out);
}

/* tools JSON -> the tools the template gets */
static const char *tools(const char *tools_json)
{
    cJSON *t, *out = NULL;
    if (pl_json_parse(&t, tools_json, strlen(tools_json), NULL, 0)) return "bad test JSON";
    tok_error e = {0};
    int rc = tok_tools_convert(t, &out, &e);
    return outcome(rc, &e, t, out);
}

TEST(content_null_and_parts)
{
    /* the OpenAI SDK's assistant turn: content null -> no parts, never "None" */
    CHECK_EQ_STR(conv("[{\"role\":\"assistant\",\"content\":null,\"refusal\":null,\"audio\":null}]", &OPENAI),
                 "[{\"role\":\"assistant\",\"content\":[]}]");
    CHECK_EQ_STR(conv("[{\"role\":\"assistant\",\"content\":null}]", &STRING),
                 "[{\"role\":\"assistant\",\"content\":\"\"}]");
    /* strings become a text part; unknown keys of text parts stay */
    CHECK_EQ_STR(conv("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"cache_control\":{\"t\":1}},"
                      "\"b\"]}]", &OPENAI),
                 "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"cache_control\":{\"t\":1}},"
                 "{\"type\":\"text\",\"text\":\"b\"}]}]");
    /* string format: texts joined by newlines, empty ones dropped */
    CHECK_EQ_STR(conv("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"\"},"
                      "{\"type\":\"refusal\",\"refusal\":\"r\"}]}]", &STRING),
                 "[{\"role\":\"user\",\"content\":\"a\\nr\"}]");
    /* text null is skipped when another part makes vLLM's own type win */
    CHECK_EQ_STR(conv("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":null},{\"type\":\"text\",\"text\":\"k\"}]}]",
                      &OPENAI), "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"k\"}]}]");
    /* ... and refused when OpenAI's type wins and validates the part */
    CHECK(!strncmp(conv("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":null}]}]", &OPENAI), "400: ", 5));
    CHECK(!strncmp(conv("[{\"role\":\"system\",\"content\":[\"bare\"]}]", &OPENAI), "400: ", 5));
    /* content null is for assistants only */
    CHECK(!strncmp(conv("[{\"role\":\"user\",\"content\":null}]", &OPENAI), "400: ", 5));
    /* media on a text-only model */
    CHECK_EQ_STR(conv("[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]", &OPENAI),
                 "400: glm is not a multimodal model");
}

TEST(tool_results_reasoning_and_billing)
{
    /* Claude Code / Cursor tool results: text parts joined */
    CHECK_EQ_STR(conv("[{\"role\":\"tool\",\"tool_call_id\":\"t\",\"content\":[{\"type\":\"text\",\"text\":\"A\"},"
                      "{\"type\":\"text\",\"text\":\"B\"}]}]", &OPENAI),
                 "[{\"role\":\"tool\",\"content\":\"A\\nB\",\"tool_call_id\":\"t\"}]");
    /* reasoning_content is vLLM's reasoning; reasoning wins when both are set */
    CHECK_EQ_STR(conv("[{\"role\":\"assistant\",\"content\":\"x\",\"reasoning_content\":\"old\",\"reasoning\":\"new\"}]", &STRING),
                 "[{\"role\":\"assistant\",\"content\":\"x\",\"reasoning\":\"new\",\"reasoning_content\":\"new\"}]");
    CHECK_EQ_STR(conv("[{\"role\":\"assistant\",\"content\":\"x\",\"reasoning_content\":\"old\",\"reasoning\":null}]", &STRING),
                 "[{\"role\":\"assistant\",\"content\":\"x\",\"reasoning\":\"old\",\"reasoning_content\":\"old\"}]");
    /* the billing header line leaves system text; alone, the part goes */
    CHECK_EQ_STR(conv("[{\"role\":\"system\",\"content\":\"x-anthropic-billing-header: cch=1;\\nYou are\"}]", &STRING),
                 "[{\"role\":\"system\",\"content\":\"You are\"}]");
    CHECK_EQ_STR(conv("[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"x-anthropic-billing-header: a\"},"
                      "{\"type\":\"text\",\"text\":\"S\"}]}]", &OPENAI),
                 "[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"S\"}]}]");
    CHECK_EQ_STR(conv("[{\"role\":\"user\",\"content\":\"x-anthropic-billing-header: a\\nU\"}]", &STRING),
                 "[{\"role\":\"user\",\"content\":\"x-anthropic-billing-header: a\\nU\"}]");
}

TEST(tool_call_arguments)
{
    static const char *fmt = "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
                             "\"function\":{\"name\":\"f\",\"arguments\":%s}}]}]";
    static const struct { const char *args, *want; } cases[] = {
        {"\"{\\\"a\\\": 1.0, \\\"b\\\": 9007199254740993}\"", "{\"a\":1.0,\"b\":9007199254740993}"},
        {"\"\"", "{}"}, {"\"{not json\"", "{}"}, {"\"[1, 2]\"", "{}"}, {"\"42\"", "{}"}, {"\"null\"", "{}"},
        {"\"{\\\"k\\\\u0000\\\": \\\"v\\\\u0000\\\"}\"", "{\"k\\u0000\":\"v\\u0000\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msgs[512], want[512];
        snprintf(msgs, sizeof msgs, fmt, cases[i].args);
        snprintf(want, sizeof want, "[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                 "\"function\",\"function\":{\"name\":\"f\",\"arguments\":%s}}]}]", cases[i].want);
        CHECK_EQ_STR(conv(msgs, &STRING), want);
    }
    /* arguments must be a string, and a tool call needs id and type */
    char msgs[512];
    snprintf(msgs, sizeof msgs, fmt, "{\"a\":1}");
    CHECK(!strncmp(conv(msgs, &STRING), "400: messages[0].tool_calls[0]", 30));
    CHECK(!strncmp(conv("[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]",
                        &STRING), "400: ", 5));
    /* an empty tool_calls list is dropped */
    CHECK_EQ_STR(conv("[{\"role\":\"assistant\",\"content\":\"x\",\"tool_calls\":[]}]", &STRING),
                 "[{\"role\":\"assistant\",\"content\":\"x\"}]");
}

TEST(developer_role)
{
    /* a template that never names "developer": system turns merged at the front */
    CHECK_EQ_STR(conv("[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"developer\",\"content\":\"D\"},"
                      "{\"role\":\"user\",\"content\":\"u\"}]", &OPENAI),
                 "[{\"role\":\"system\",\"content\":\"S\\n\\nD\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"u\"}]}]");
    /* a lone developer turn first: renamed, nothing merged */
    CHECK_EQ_STR(conv("[{\"role\":\"developer\",\"content\":\"D\"}]", &STRING), "[{\"role\":\"system\",\"content\":\"D\"}]");
    /* a template that does name it gets it unchanged (with vLLM's tools key) */
    tok_chat_opts dev = {false, true, "glm"};
    CHECK_EQ_STR(conv("[{\"role\":\"developer\",\"content\":\"D\"}]", &dev),
                 "[{\"role\":\"developer\",\"content\":\"D\",\"tools\":null}]");
}

TEST(tools_as_model_dump)
{
    CHECK_EQ_STR(tools("[{\"function\":{\"parameters\":{\"type\":\"object\"},\"name\":\"f\",\"x\":1},\"cache_control\":{}}]"),
                 "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":null,\"parameters\":{\"type\":\"object\"}}}]");
    CHECK_EQ_STR(tools("[{\"type\":\"function\",\"defer_loading\":true,\"function\":{\"name\":\"f\",\"strict\":false}}]"),
                 "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":null,\"parameters\":null,"
                 "\"strict\":false,\"defer_loading\":true},\"defer_loading\":true}]");
    CHECK_EQ_STR(tools("[]"), "400: `tools` must not be an empty array. Either provide at least one tool or omit the "
                              "field entirely. (parameter=tools)");
    CHECK(!strncmp(tools("[{\"type\":\"custom\",\"function\":{\"name\":\"f\"}}]"), "400: tools[0]", 13));
    CHECK(!strncmp(tools("[{\"function\":{\"description\":\"no name\"}}]"), "400: tools[0]", 13));
}

int main(void)
{
    RUN(content_null_and_parts);
    RUN(tool_results_reasoning_and_billing);
    RUN(tool_call_arguments);
    RUN(developer_role);
    RUN(tools_as_model_dump);
    return test_report();
}
