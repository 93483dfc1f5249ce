/* test_tools.c — glm47 tool-call parser (parse-tools/tools.h).
 *
 * Every case runs one-shot and under the split-point property
 * (tests/unit/split.h): every cutting must give the same content and calls,
 * each call's name must arrive once, whole, in its first entry (with a
 * chatcmpl-tool-<16 hex> id, as vLLM 0.33), indexes must count up from 0, and the streamed
 * argument pieces must concatenate to exactly the expected arguments text.
 *
 * Cases of ../shared/data/parser-cases.json for the glm47/glm45 tool parsers
 * run against vLLM 0.33 (its parser engine, "Era C" in the shared notes).
 * Where the listed expectation (Era B) differs, the table k_era_c below
 * gives the vLLM 0.33 result and the reason; it is printed. The full
 * comparison with vLLM 0.33 itself is tests/py/test_parsers_conformance.py
 * (goldens from vLLM's own code).
 *
 * Our choices where vLLM 0.33's streaming and non-streaming paths disagree
 * (docs/protocol.md, "Parsers and vLLM"; each tested below):
 *   1. A repeated argument key replaces the value of the last pair while
 *      that pair is open (not followed by a new key; a streamed string only
 *      by a value that extends it), as both vLLM paths do; after that the
 *      FIRST value stays (vLLM non-streaming: the last value; streaming:
 *      broken JSON). Streamed text cannot be taken back.
 *   2. An argument value still open when its call ends (</tool_call> or end
 *      of output) is kept (vLLM's final regex drops the pair, after its
 *      streaming path may already have sent part of it).
 *   3. Content is all text outside calls (vLLM non-streaming keeps only the
 *      text before the first call). Its leading whitespace before text that
 *      precedes the first call is kept (it was streamed before any call was
 *      known; vLLM's streaming path does the same, its non-streaming path
 *      strips it).
 *   4. `index` counts produced calls only (vLLM 0.33 streams the slot index,
 *      which counts dropped calls with unknown names too, leaving gaps).
 * Rechecked against 0.33: integers with non-ASCII decimal digits and big
 * integers inside object/array values now follow Python exactly (they were
 * deviations before). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "pyjson.h"
#include "../../parse-reasoning/reasoning.h"
#include "../../parse-tools/tools.h"
#include "cases.h"
#include "split.h"
#include "test.h"

/* ===== harness ===== */

#define MAX_CALLS 32

/* Feed text cut at cuts[] (optionally through the reasoning parser first)
 * and write a canonical form of the result into canon:
 *   content \x1e name \x1f args \x1e name \x1f args ...
 * Stream-shape violations are written into canon as "!problem". */
static void parse_cuts(const tcl_tools *tools, const rsn_opts *rsn, const char *text, const size_t *cuts,
                       size_t ncuts, pl_buf *canon, unsigned *arg_pieces)
{
    tcl_parser *p;
    rsn_parser *r = NULL;
    if (tcl_parser_new(&p, tools, TCL_MODE_CALLS)) abort();
    if (rsn && rsn_parser_new(&r, rsn)) abort();
    tcl_delta d;
    tcl_delta_init(&d);
    pl_buf content, names[MAX_CALLS], args[MAX_CALLS], rc, rr;
    pl_buf_init(&content);
    pl_buf_init(&rc);
    pl_buf_init(&rr);
    for (int i = 0; i < MAX_CALLS; i++) { pl_buf_init(&names[i]); pl_buf_init(&args[i]); }
    uint32_t ncalls = 0;
    const char *problem = NULL;
    for (size_t i = 0; i + 1 < ncuts + 1; i++) {
        bool last = i + 1 == ncuts;
        tcl_delta_reset(&d);
        const char *s = last ? "" : text + cuts[i];
        size_t n = last ? 0 : cuts[i + 1] - cuts[i];
        if (r) {   /* reasoning first: its content is the tool parser's input */
            pl_buf_reset(&rc);
            if (last) rsn_parser_finish(r, &rc, &rr);
            else rsn_parser_feed(r, s, n, &rc, &rr);
            s = rc.data ? rc.data : "";
            n = rc.len;
        }
        tcl_parser_feed(p, s, n, &d);
        if (last) tcl_parser_finish(p, &d);
        if (!tcl_delta_ok(&d)) problem = "!oom";
        pl_buf_append(&content, d.content.data, d.content.len);
        for (size_t k = 0; k < d.ncalls; k++) {
            const tcl_call_delta *c = &d.calls[k];
            if (c->first) {
                if (c->index != ncalls || ncalls >= MAX_CALLS) { problem = "!index not next"; continue; }
                if (strlen(c->id) != 30 || strncmp(c->id, "chatcmpl-tool-", 14) ||
                    strspn(c->id + 14, "0123456789abcdef") != 16) problem = "!bad id";
                pl_buf_append(&names[ncalls], c->name.data, c->name.len);
                ncalls++;
            } else if (c->index + 1 != ncalls) {
                problem = "!args for a call that is not the open one";
                continue;
            }
            if (c->args.len && arg_pieces) (*arg_pieces)++;
            pl_buf_append(&args[c->index], c->args.data, c->args.len);
        }
    }
    pl_buf_reset(canon);
    pl_buf_append(canon, content.data, content.len);
    for (uint32_t i = 0; i < ncalls; i++) {
        pl_buf_putc(canon, 0x1e);
        pl_buf_append(canon, names[i].data, names[i].len);
        pl_buf_putc(canon, 0x1f);
        pl_buf_append(canon, args[i].data, args[i].len);
    }
    if (problem) pl_buf_puts(canon, problem);
    for (int i = 0; i < MAX_CALLS; i++) { pl_buf_free(&names[i]); pl_buf_free(&args[i]); }
    pl_buf_free(&content);
    pl_buf_free(&rc);
    pl_buf_free(&rr);
    tcl_delta_free(&d);
    tcl_parser_free(p);
    rsn_parser_free(r);
}

typedef struct tcase {
    const char      *name, *text;
    size_t           len;
    const tcl_tools *tools;
    const rsn_opts  *rsn;
    pl_buf           want;
    int              reported;
} tcase;

static void show(const char *label, const pl_buf *b)
{
    fprintf(stderr, "    %s: ", label);
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];
        if (c == 0x1e) fputs(" || ", stderr);
        else if (c == 0x1f) fputs(" -> ", stderr);
        else if (c == '\n') fputs("\\n", stderr);
        else fputc(c, stderr);
    }
    fputc('\n', stderr);
}

static void run_cuts(void *ud, const size_t *cuts, size_t ncuts)
{
    tcase *k = ud;
    pl_buf got;
    pl_buf_init(&got);
    parse_cuts(k->tools, k->rsn, k->text, cuts, ncuts, &got, NULL);
    if ((got.len != k->want.len || memcmp(got.data, k->want.data, got.len)) && !k->reported++) {
        fprintf(stderr, "  %s: wrong result with %zu pieces (first cut at %zu)\n", k->name, ncuts - 1,
                ncuts > 2 ? cuts[1] : k->len);
        show("got ", &got);
        show("want", &k->want);
        t_cur_failed = 1;
    }
    pl_buf_free(&got);
}

static tcl_tools *tools_json(const char *json)
{
    tcl_tools *t;
    char err[256];
    if (tcl_tools_from_json(&t, json, strlen(json), err, sizeof err)) { fprintf(stderr, "tools: %s\n", err); abort(); }
    return t;
}

/* want: content, then name/args pairs, NULL-terminated. */
static void check_tools_v(const char *name, const tcl_tools *tools, const rsn_opts *rsn, const char *text,
                          const size_t *extra_cuts, size_t nextra, const char *content, const char *const *calls)
{
    tcase k = {name, text, strlen(text), tools, rsn, {0}, 0};
    pl_buf_init(&k.want);
    pl_buf_puts(&k.want, content ? content : "");
    for (size_t i = 0; calls && calls[i]; i += 2) {
        pl_buf_putc(&k.want, 0x1e);
        pl_buf_puts(&k.want, calls[i]);
        pl_buf_putc(&k.want, 0x1f);
        pl_buf_puts(&k.want, calls[i + 1]);
    }
    for_each_split(text, k.len, 40, k.len, run_cuts, &k);
    if (nextra) run_cuts(&k, extra_cuts, nextra);
    pl_buf_free(&k.want);
}

#define CALLS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NOCALLS ((const char *const *)NULL)
#define CHECK_TOOLS(tools, text, content, calls) check_tools_v(#text, tools, NULL, text, NULL, 0, content, calls)

static const char *k_weather_tools =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_current_date\", \"parameters\": {}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\","
    "  \"properties\": {\"city\": {\"type\": \"string\"}, \"date\": {\"type\": \"string\"},"
    "                  \"days\": {\"type\": \"integer\"}, \"metric\": {\"type\": \"boolean\"}}}}}]";

/* ===== shared cases ===== */

/* vLLM 0.33 results where a shared case lists an Era B expectation. */
static const struct {
    const char *id, *content;
    const char *const *calls;
    const char *reason;
} k_era_c[] = {
    {"glm45-single_tool_call_indented", "", NULL,
     "get_current_weather is not among the request's tools: Era C drops the call"},
    {"glm45-content_before", "I'll help you check the weather. ", NULL,
     "get_current_weather is not a request tool: dropped; with no call, content is not stripped"},
    {"glm45-with_thinking_tags_toolparser_only", "<think>I want to get the weather.</think>\n\nI will help you get the weather.",
     (const char *const[]){"get_weather", "{\"city\": \"Beijing\", \"date\": \"2025-08-01\"}", NULL},
     "Era C strips content when calls were made (Era B kept the trailing newline)"},
    {"glm45-mixed_content_two_calls",
     "I will help you get the weather info.\n\n\n\nmeaningwhile, I will also check the weather in Shanghai.",
     (const char *const[]){"get_weather", "{\"city\": \"Beijing\", \"date\": \"2025-08-01\"}",
                           "get_weather", "{\"city\": \"Shanghai\", \"date\": \"2025-08-01\"}", NULL},
     "Era C content is all text outside calls, stripped (Era B: text before the first call)"},
    {"glm45-incomplete_tool_call", "",
     (const char *const[]){"get_weather", "{\"city\": \"Beijing\", \"date\": \"2025-08-01\"}", NULL},
     "Era C closes an unterminated call at the end of the output"},
    {"glm45-only_open_tag", "", NULL, "Era C: an open call without a name makes no call, and its text is not content"},
    {"glm45-stream-json_escape", "", NULL,
     "send_message is not among the request's tools (only get_weather): dropped in Era C; "
     "test_json_escape checks the same text with the tool declared"},
};

static void dump_json(pl_buf *out, const cJSON *v)
{
    if (cJSON_IsString(v)) pl_buf_puts(out, v->valuestring);
    else pl_pyjson_dump(out, v, NULL);
}

static void run_shared_case(const cJSON *c, int *ran)
{
    const char *id = cJSON_GetObjectItemCaseSensitive(c, "id")->valuestring;
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(c, "input");
    const cJSON *chunks = cJSON_GetObjectItemCaseSensitive(c, "chunks");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    if (!input && !chunks) {
        printf("  own test %s: only described in the file (chunks_description); see test_long_string_incremental\n", id);
        return;
    }
    /* text and the case's own cutting */
    pl_buf text;
    pl_buf_init(&text);
    size_t cuts[64], ncuts = 0;
    if (input) pl_buf_puts(&text, input->valuestring);
    else {
        const cJSON *ch;
        cuts[ncuts++] = 0;
        cJSON_ArrayForEach(ch, chunks) { pl_buf_puts(&text, ch->valuestring); if (ncuts < 64) cuts[ncuts++] = text.len; }
    }
    char *tj = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(c, "tools"));
    tcl_tools *tools = tools_json(tj);
    free(tj);
    /* expectation: Era C table, else the listed one */
    const char *content = NULL;
    const char *const *calls = NULL;
    const char *list[2 * MAX_CALLS + 1];
    pl_buf argbufs[MAX_CALLS];
    size_t nargs = 0;
    for (size_t i = 0; i < PL_ARRAY_LEN(k_era_c); i++)
        if (!strcmp(k_era_c[i].id, id)) {
            content = k_era_c[i].content;
            calls = k_era_c[i].calls;
            printf("  deviation %s: %s\n", id, k_era_c[i].reason);
            goto have;
        }
    const cJSON *cv = cJSON_GetObjectItemCaseSensitive(exp, "content");
    if (!cv) cv = cJSON_GetObjectItemCaseSensitive(exp, "normal_text");
    content = cJSON_IsString(cv) ? cv->valuestring : "";
    const cJSON *tc;
    size_t nl = 0;
    cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(exp, "tool_calls")) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(tc, "arguments");
        if (!a) a = cJSON_GetObjectItemCaseSensitive(tc, "arguments_exact");
        if (!a) a = cJSON_GetObjectItemCaseSensitive(tc, "arguments_concat");
        pl_buf_init(&argbufs[nargs]);
        dump_json(&argbufs[nargs], a);
        list[nl++] = cJSON_GetObjectItemCaseSensitive(tc, "name")->valuestring;
        list[nl++] = argbufs[nargs++].data;
    }
    list[nl] = NULL;
    calls = list;
have:
    check_tools_v(id, tools, NULL, text.data, cuts, ncuts, content, calls);
    (*ran)++;
    for (size_t i = 0; i < nargs; i++) pl_buf_free(&argbufs[i]);
    tcl_tools_free(tools);
    pl_buf_free(&text);
}

TEST(test_shared_cases)
{
    cJSON *root = parser_cases_load();
    if (!root) return;
    int ran = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases")) {
        const cJSON *parser = cJSON_GetObjectItemCaseSensitive(c, "parser");
        if (!cJSON_IsString(parser) || !strstr(parser->valuestring, "glm47")) continue;
        run_shared_case(c, &ran);
    }
    cJSON_Delete(root);
    printf("  shared tool cases run: %d\n", ran);
    CHECK(ran >= 17);
}

/* ===== formats ===== */

TEST(test_glm5_formats)
{
    tcl_tools *t = tools_json(k_weather_tools);
    /* GLM-4.7/5 compact form, several calls, content around */
    CHECK_TOOLS(t, "Checking both.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>"
                   "<arg_key>days</arg_key><arg_value>3</arg_value></tool_call><tool_call>get_current_date</tool_call>",
                "Checking both.",
                CALLS("get_weather", "{\"city\": \"Paris\", \"days\": 3}", "get_current_date", "{}"));
    /* GLM-4.5 form with newlines and indentation */
    CHECK_TOOLS(t, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
                   "<arg_key>metric</arg_key>\n<arg_value>true</arg_value>\n</tool_call>\n",
                "", CALLS("get_weather", "{\"city\": \"Paris\", \"metric\": true}"));
    /* zero-argument calls, with and without whitespace */
    CHECK_TOOLS(t, "<tool_call>get_current_date</tool_call>", "", CALLS("get_current_date", "{}"));
    CHECK_TOOLS(t, "<tool_call>\n  get_current_date \n</tool_call>", "", CALLS("get_current_date", "{}"));
    /* content between and after calls is kept; ends stripped when calls exist */
    CHECK_TOOLS(t, "  A  <tool_call>get_current_date</tool_call>  B \n", "  A    B",
                CALLS("get_current_date", "{}"));
    /* whitespace after a call that came before any text is next to it: dropped */
    CHECK_TOOLS(t, "\n\n<tool_call>get_current_date</tool_call>\n\nDone.\n", "Done.",
                CALLS("get_current_date", "{}"));
    /* no call: content untouched */
    CHECK_TOOLS(t, "  plain answer \n", "  plain answer \n", NOCALLS);
    CHECK_TOOLS(t, "a < b, c > d, <b>bold</b> <tool_call", "a < b, c > d, <b>bold</b> <tool_call", NOCALLS);
    tcl_tools_free(t);
}

TEST(test_unknown_and_malformed)
{
    tcl_tools *t = tools_json(k_weather_tools);
    /* unknown name: dropped whole; later calls count from 0 */
    CHECK_TOOLS(t, "x<tool_call>get_time<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>"
                   "<tool_call>get_current_date</tool_call>", "x", CALLS("get_current_date", "{}"));
    /* a name that is only a prefix of a tool is not that tool */
    CHECK_TOOLS(t, "<tool_call>get_weat</tool_call>", "", NOCALLS);
    CHECK_TOOLS(t, "<tool_call></tool_call>rest", "rest", NOCALLS);
    /* key without </arg_key>: no pair; text between pairs ignored */
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>city<arg_value>x</arg_value></tool_call>", "",
                CALLS("get_weather", "{}"));
    CHECK_TOOLS(t, "<tool_call>get_weather junk<arg_key>city</arg_key><arg_value>A</arg_value></tool_call>", "", NOCALLS);
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>city</arg_key> <arg_value>A</arg_value> junk "
                   "<arg_value>B</arg_value><arg_key>date</arg_key><arg_value>D</arg_value></tool_call>", "",
                CALLS("get_weather", "{\"city\": \"A\", \"date\": \"D\"}"));
    /* the lazy key regex: `</arg_key>` not followed by <arg_value> belongs to the key */
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>k</arg_key>junk<arg_value>v</arg_value><arg_key>b</arg_key>"
                   "<arg_value>w</arg_value></tool_call>", "",
                CALLS("get_weather", "{\"k</arg_key>junk<arg_value>v</arg_value><arg_key>b\": \"w\"}"));
    /* tags inside a value are value text */
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>city</arg_key><arg_value><tool_call>a<arg_key>b</arg_key></arg_value>"
                   "</tool_call>", "",
                CALLS("get_weather", "{\"city\": \"<tool_call>a<arg_key>b</arg_key>\"}"));
    /* stray closing tags in content are content */
    CHECK_TOOLS(t, "a</tool_call>b</arg_value>", "a</tool_call>b</arg_value>", NOCALLS);
    /* choice 1: a repeated key keeps its first value once it was sent (a streamed string) ... */
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>A</arg_value>"
                   "<arg_key> city </arg_key><arg_value>B</arg_value></tool_call>", "",
                CALLS("get_weather", "{\"city\": \"A\"}"));
    /* ... or once a new key followed it */
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>days</arg_key><arg_value>1</arg_value><arg_key>city</arg_key>"
                   "<arg_value>A</arg_value><arg_key>days</arg_key><arg_value>2</arg_value></tool_call>", "",
                CALLS("get_weather", "{\"days\": 1, \"city\": \"A\"}"));
    /* while the pair is open it is replaced, as both vLLM paths do: a held value ... */
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>A</arg_value><arg_key>days</arg_key>"
                   "<arg_value>1</arg_value><arg_key>days</arg_key>\n<arg_value>2</arg_value></tool_call>", "",
                CALLS("get_weather", "{\"city\": \"A\", \"days\": 2}"));
    /* ... a streamed string that the new value extends, but not by an unterminated one */
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>city</arg_key><arg_value></arg_value><arg_key>city</arg_key>"
                   "<arg_value>Ro\"me</arg_value></tool_call>", "", CALLS("get_weather", "{\"city\": \"Ro\\\"me\"}"));
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>days</arg_key><arg_value>1</arg_value><arg_key>days</arg_key>"
                   "<arg_value>2", "", CALLS("get_weather", "{\"days\": 1}"));
    tcl_tools_free(t);
}

TEST(test_stream_ends_mid_call)
{
    tcl_tools *t = tools_json(k_weather_tools);
    /* choice 2: an open value at the end is kept, the call closed */
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Par", "",
                CALLS("get_weather", "{\"city\": \"Par\"}"));
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>days</arg_key><arg_value>12</arg_val", "",
                CALLS("get_weather", "{\"days\": \"12</arg_val\"}"));
    CHECK_TOOLS(t, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value><arg_key>da", "",
                CALLS("get_weather", "{\"city\": \"Rome\"}"));
    CHECK_TOOLS(t, "<tool_call>get_current_date", "", CALLS("get_current_date", "{}"));
    CHECK_TOOLS(t, "Hi <tool_call>get_curr", "Hi ", NOCALLS);
    CHECK_TOOLS(t, "Hi <tool_ca", "Hi <tool_ca", NOCALLS);
    /* a partial close tag at the end is text of the name: no such tool */
    CHECK_TOOLS(t, "<tool_call>get_current_date</tool_ca", "", NOCALLS);
    tcl_tools_free(t);
}

/* ===== typing ===== */

static void check_value(const char *raw, unsigned types, const char *want)
{
    pl_buf b;
    pl_buf_init(&b);
    tcl_value_to_json(&b, raw, strlen(raw), types);
    if (strcmp(b.data ? b.data : "", want)) {
        fprintf(stderr, "  value \"%s\" types %#x -> %s, want %s\n", raw, types, b.data, want);
        t_cur_failed = 1;
    }
    pl_buf_free(&b);
}

TEST(test_value_coercion)
{
    enum { N = TCL_T_NULL, I = TCL_T_INTEGER, F = TCL_T_NUMBER, B = TCL_T_BOOLEAN, O = TCL_T_OBJECT,
           A = TCL_T_ARRAY, S = TCL_T_STRING, X = TCL_T_OTHER };
    check_value("  raw \"text\"\n", S, "\"  raw \\\"text\\\"\\n\"");   /* strings raw, unstripped */
    check_value("42", S, "\"42\"");
    check_value(" 42 ", I, "42");
    check_value("-0", I, "0");
    check_value("+007", I, "7");
    check_value("1_000", I, "1000");
    check_value("1__0", I, "\"1__0\"");        /* int() refuses; no fallback parse either */
    check_value("123456789012345678901234567890", I, "123456789012345678901234567890");
    check_value("3.0", I, "3.0");              /* int() fails, JSON fallback keeps the float */
    check_value("3.0", I | F, "3");            /* number: whole values become integers */
    check_value("2.5", F, "2.5");
    check_value("1e2", F, "100");
    check_value("1e20", F, "100000000000000000000");
    check_value("-0.0", F, "0");
    check_value(".5", F, "0.5");
    check_value("1e-7", F, "1e-07");
    check_value("inf", F, "\"inf\"");          /* not finite */
    check_value("nan", F | S, "\"nan\"");
    check_value("1e400", F, "\"1e400\"");
    check_value("abc", F, "\"abc\"");
    check_value("True", B, "true");
    check_value(" 0 ", B, "false");
    check_value("yes", B, "\"yes\"");
    check_value("NULL", N | S, "null");        /* null before string */
    check_value("null ", N | S, "\"null \"");  /* no strip for null */
    check_value("test message", N | S, "\"test message\"");
    check_value("{\"a\":1.0,\"b\":[1,2,{\"c\":null}],\"a\":2}", O, "{\"a\": 2, \"b\": [1, 2, {\"c\": null}]}");
    check_value("[1, \"北京\"]", A, "[1, \"北京\"]");
    check_value("{\"a\": 1,}", O, "\"{\\\"a\\\": 1,}\"");   /* invalid JSON: kept as string */
    check_value("[1e999]", A, "\"[1e999]\"");
    check_value("[NaN]", A, "\"[NaN]\"");
    check_value("42", O, "42");                 /* object candidate: any JSON value (vLLM) */
    check_value("+1", O, "\"+1\"");             /* json.loads refuses +1, 01, .5 */
    check_value("01", A, "\"01\"");
    check_value("\"q\"", X, "\"q\"");           /* unknown type: JSON fallback */
    check_value("{\"k\": \"\\u00e9\\n\"}", X, "{\"k\": \"é\\n\"}");
    check_value("not json", X, "\"not json\"");
    check_value("\"a\tb\"", X, "\"\\\"a\\tb\\\"\"");   /* raw tab inside a JSON string: refused */
    check_value("99999999999999999999", O, "99999999999999999999");
    /* Python's int() and float() take decimal digits of any script */
    check_value("٣", I, "3");
    check_value(" -１_２ ", I, "-12");
    check_value("٣.٥", F, "3.5");
    check_value("𝟗", I, "9");                   /* U+1D7D7: the mathematical digits run 50 long */
    check_value("Ⅻ", I, "\"Ⅻ\"");              /* a number, not a decimal digit */
    check_value("123456789012345678901", F, "123456789012345678901");   /* number: int() first, exact */
    /* integers inside objects and arrays stay exact, as json.loads/dumps keep them */
    check_value("{\"big\": 123456789012345678901234567890, \"n\": [-0, 1.50, -12345678901234567890]}", O,
                "{\"big\": 123456789012345678901234567890, \"n\": [0, 1.5, -12345678901234567890]}");
    check_value("{\"a\": 18446744073709551616, \"a\": 9007199254740993}", O, "{\"a\": 9007199254740993}");
}

TEST(test_schema_types)
{
    const char *schemas[] = {
        "{\"type\": \"string\"}", "{\"type\": [\"string\", \"null\"]}", "{\"type\": \" INT \"}",
        "{\"enum\": [1, 2.5, \"a\", true, null]}", "{\"anyOf\": [{\"type\": \"integer\"}, {\"description\": \"x\"}]}",
        "{\"type\": \"foo\"}", "{}", "\"string\"", "{\"type\": 5}", "{\"oneOf\": [{\"allOf\": [{\"type\": \"dict\"}]}]}",
    };
    const unsigned want[] = {
        TCL_T_STRING, TCL_T_STRING | TCL_T_NULL, TCL_T_INTEGER,
        TCL_T_INTEGER | TCL_T_NUMBER | TCL_T_STRING | TCL_T_BOOLEAN | TCL_T_NULL, TCL_T_INTEGER | TCL_T_STRING,
        TCL_T_OTHER, TCL_T_STRING, TCL_T_STRING, TCL_T_STRING, TCL_T_OBJECT,
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(schemas); i++) {
        cJSON *v;
        CHECK(pl_json_parse(&v, schemas[i], strlen(schemas[i]), NULL, 0) == 0);
        CHECK_EQ_INT(tcl_schema_types(v), want[i]);
        cJSON_Delete(v);
    }
}

TEST(test_typed_arguments)
{
    tcl_tools *t = tools_json(
        "[{\"type\": \"function\", \"function\": {\"name\": \"calc\", \"parameters\": {\"type\": \"object\", \"properties\": {"
        " \"op\": {\"type\": \"string\", \"enum\": [\"add\", \"mul\"]}, \"a\": {\"type\": \"number\"}, \"b\": {\"type\": \"int\"},"
        " \"exact\": {\"type\": \"boolean\"}, \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"
        " \"opt\": {\"type\": \"object\"}, \"note\": {\"type\": [\"string\", \"null\"]}, \"free\": {}}}}},"
        " {\"type\": \"function\", \"function\": {\"name\": \"noschema\"}},"
        " {\"type\": \"function\", \"function\": {\"name\": \"badschema\", \"parameters\": \"object\"}},"
        " {\"type\": \"function\", \"function\": {\"name\": \"badprops\", \"parameters\": {\"properties\": [1]}}}]");
    CHECK_TOOLS(t, "<tool_call>calc<arg_key>op</arg_key><arg_value> add </arg_value><arg_key>a</arg_key><arg_value>1.50</arg_value>"
                   "<arg_key>b</arg_key><arg_value>7</arg_value><arg_key>exact</arg_key><arg_value>False</arg_value>"
                   "<arg_key>tags</arg_key><arg_value>[\"x\", \"y\"]</arg_value><arg_key>opt</arg_key><arg_value>{\"k\":[1,2.0]}</arg_value>"
                   "<arg_key>note</arg_key><arg_value>null</arg_value><arg_key>free</arg_key><arg_value>42</arg_value>"
                   "<arg_key>extra</arg_key><arg_value>true</arg_value></tool_call>", "",
                CALLS("calc", "{\"op\": \" add \", \"a\": 1.5, \"b\": 7, \"exact\": false, \"tags\": [\"x\", \"y\"], "
                              "\"opt\": {\"k\": [1, 2.0]}, \"note\": null, \"free\": \"42\", \"extra\": \"true\"}"));
    /* no schema / schema that is not an object: every value stays a string */
    CHECK_TOOLS(t, "<tool_call>noschema<arg_key>n</arg_key><arg_value>42</arg_value></tool_call>", "",
                CALLS("noschema", "{\"n\": \"42\"}"));
    CHECK_TOOLS(t, "<tool_call>badschema<arg_key>n</arg_key><arg_value>[1]</arg_value></tool_call>", "",
                CALLS("badschema", "{\"n\": \"[1]\"}"));
    CHECK_TOOLS(t, "<tool_call>badprops<arg_key>n</arg_key><arg_value>true</arg_value></tool_call>", "",
                CALLS("badprops", "{\"n\": \"true\"}"));
    /* invalid JSON for an object value: a string */
    CHECK_TOOLS(t, "<tool_call>calc<arg_key>opt</arg_key><arg_value>{not json</arg_value></tool_call>", "",
                CALLS("calc", "{\"opt\": \"{not json\"}"));
    tcl_tools_free(t);
}

TEST(test_tools_list)
{
    tcl_tools *t = tools_json("[1, {\"type\": \"function\"}, {\"function\": {\"name\": 5}}, {\"function\": []},"
                              " {\"type\": \"function\", \"function\": {\"name\": \"ok\"}}]");
    CHECK_EQ_INT(tcl_tools_count(t), 1);
    CHECK(tcl_tools_has(t, "ok", 2));
    CHECK(!tcl_tools_has(t, "o", 1));
    CHECK_EQ_INT(tcl_tools_arg_types(t, 0, "x", 1), TCL_T_STRING);
    CHECK_EQ_INT(tcl_tools_arg_types(t, 7, "x", 1), TCL_T_STRING);
    tcl_tools_free(t);
    tcl_tools *bad;
    char err[128];
    CHECK_EQ_INT(tcl_tools_from_json(&bad, "{\"a\": 1}", 8, err, sizeof err), PL_ERR_INVALID);
    CHECK_EQ_INT(tcl_tools_from_json(&bad, "[", 1, err, sizeof err), PL_ERR_PARSE);
    CHECK(bad == NULL);
}

/* ===== text ===== */

TEST(test_json_escape)
{
    tcl_tools *t = tools_json("[{\"type\": \"function\", \"function\": {\"name\": \"send_message\", \"parameters\": "
                              "{\"type\": \"object\", \"properties\": {\"message\": {\"type\": \"string\"}}}}}]");
    CHECK_TOOLS(t, "<tool_call>send_message\n<arg_key>message</arg_key><arg_value>Hello \"world\"\nNew line\\ \t\x01"
                   "</arg_value></tool_call>", "",
                CALLS("send_message", "{\"message\": \"Hello \\\"world\\\"\\nNew line\\\\ \\t\\u0001\"}"));
    tcl_tools_free(t);
}

TEST(test_unicode)
{
    tcl_tools *t = tools_json("[{\"type\": \"function\", \"function\": {\"name\": \"获取天气\", \"parameters\": "
                              "{\"type\": \"object\", \"properties\": {\"城市\": {\"type\": \"string\"}, \"n\": {\"type\": \"integer\"}}}}}]");
    CHECK_TOOLS(t, "好的。<tool_call>获取天气<arg_key>城市</arg_key><arg_value>北京 🌧</arg_value>"
                   "<arg_key>n</arg_key><arg_value>２</arg_value><arg_key>注</arg_key><arg_value>é</arg_value></tool_call>\u3000",
                "好的。", CALLS("获取天气", "{\"城市\": \"北京 🌧\", \"n\": 2, \"注\": \"é\"}"));   /* int("２") == 2 */
    tcl_tools_free(t);
}

TEST(test_calls_inside_thinking)
{
    /* reasoning parser first, as in the pipeline: a call before </think> ends reasoning and is parsed */
    tcl_tools *t = tools_json(k_weather_tools);
    rsn_opts on = {true, true};
    check_tools_v("call inside thinking", t, &on,
                  "I need the weather. <tool_call>get_weather<arg_key>city</arg_key><arg_value>Oslo</arg_value></tool_call>",
                  NULL, 0, "", CALLS("get_weather", "{\"city\": \"Oslo\"}"));
    check_tools_v("multi-turn style", t, &on,
                  "plan</think>\nLet me look.<tool_call>get_current_date</tool_call><think>got it</think>Now: "
                  "<tool_call>get_weather<arg_key>days</arg_key><arg_value>2</arg_value></tool_call>",
                  NULL, 0, "\nLet me look.Now:",
                  CALLS("get_current_date", "{}", "get_weather", "{\"days\": 2}"));
    tcl_tools_free(t);
}

TEST(test_long_string_incremental)
{
    /* the shared case glm45-stream-long_string_incremental, built as described there */
    tcl_tools *t = tools_json("[{\"type\": \"function\", \"function\": {\"name\": \"write_to_file\", \"parameters\": "
                              "{\"type\": \"object\", \"properties\": {\"file_path\": {\"type\": \"string\"}, "
                              "\"content\": {\"type\": \"string\"}}}}}]");
    pl_buf text, file, want;
    pl_buf_init(&text);
    pl_buf_init(&file);
    pl_buf_init(&want);
    size_t cuts[64], n = 0;
    cuts[n++] = 0;
    const char *head[] = {"<tool_call>", "write_to_file\n", "<arg_key>file_path</arg_key>",
                          "<arg_value>/tmp/bubble_sort.py</arg_value>", "<arg_key>content</arg_key>", "<arg_value>"};
    for (size_t i = 0; i < 6; i++) { pl_buf_puts(&text, head[i]); cuts[n++] = text.len; }
    for (int i = 0; i < 25; i++) {
        char line[96];
        snprintf(line, sizeof line, i == 0 ? "def bubble_sort(arr):\n" : "    # step %d: swap \"a\" and 'b' if needed\n", i);
        pl_buf_puts(&file, line);
        pl_buf_puts(&text, line);
        cuts[n++] = text.len;
    }
    pl_buf_puts(&text, "</arg_value>");
    cuts[n++] = text.len;
    pl_buf_puts(&text, "</tool_call>");
    cuts[n++] = text.len;
    pl_buf canon;
    pl_buf_init(&canon);
    unsigned pieces = 0;
    parse_cuts(t, NULL, text.data, cuts, n, &canon, &pieces);
    CHECK(pieces >= 10);   /* the file streams line by line */
    pl_buf_puts(&want, "{\"file_path\": \"/tmp/bubble_sort.py\", \"content\": ");
    pl_pyjson_write_string(&want, file.data, file.len, 0);
    pl_buf_putc(&want, '}');
    const char *args = memchr(canon.data, 0x1f, canon.len);
    CHECK(args && !strcmp(args + 1, want.data));
    CHECK(strstr(canon.data, "def bubble_sort"));
    check_tools_v("long_string_incremental", t, NULL, text.data, cuts, n, "",
                  CALLS("write_to_file", want.data));
    pl_buf_free(&canon);
    pl_buf_free(&text);
    pl_buf_free(&file);
    pl_buf_free(&want);
    tcl_tools_free(t);
}

TEST(test_one_megabyte_argument)
{
    tcl_tools *t = tools_json(k_weather_tools);
    size_t big = 1u << 20;
    pl_buf text, val, want, canon;
    pl_buf_init(&text);
    pl_buf_init(&val);
    pl_buf_init(&want);
    pl_buf_init(&canon);
    for (size_t i = 0; i < big; i++) pl_buf_putc(&val, "ab\"\\\n é"[i % 8]);
    /* cut the value in the middle of 'é' sometimes: held back, never split */
    pl_buf_puts(&text, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>");
    pl_buf_append(&text, val.data, val.len);
    pl_buf_puts(&text, "</arg_value><arg_key>days</arg_key><arg_value>");
    for (int i = 0; i < 1000; i++) pl_buf_putc(&text, '7');   /* a 1000-digit integer, held to the end */
    pl_buf_puts(&text, "</arg_value></tool_call>");
    size_t ncuts = 0, *cuts = malloc((text.len / 7 + 3) * sizeof *cuts);
    for (size_t i = 0; i < text.len; i += 7) cuts[ncuts++] = i;
    cuts[ncuts++] = text.len;
    unsigned pieces = 0;
    parse_cuts(t, NULL, text.data, cuts, ncuts, &canon, &pieces);
    pl_buf_puts(&want, "\x1eget_weather\x1f{\"city\": ");
    pl_pyjson_write_string(&want, val.data, val.len, 0);
    pl_buf_puts(&want, ", \"days\": ");
    for (int i = 0; i < 1000; i++) pl_buf_putc(&want, '7');
    pl_buf_puts(&want, "}");
    CHECK(canon.len == want.len && !memcmp(canon.data, want.data, want.len));
    CHECK(pieces > 100000);   /* streamed as it came */
    /* one piece */
    size_t whole[2] = {0, text.len};
    parse_cuts(t, NULL, text.data, whole, 2, &canon, NULL);
    CHECK(canon.len == want.len && !memcmp(canon.data, want.data, want.len));
    free(cuts);
    pl_buf_free(&text);
    pl_buf_free(&val);
    pl_buf_free(&want);
    pl_buf_free(&canon);
    tcl_tools_free(t);
}

TEST(test_delta_after_oom)
{
    /* a failed delta is reported, and the next reset makes the scratch usable again */
    tcl_tools *t = tools_json(k_weather_tools);
    tcl_parser *p;
    CHECK(tcl_parser_new(&p, t, TCL_MODE_CALLS) == 0);
    tcl_delta d;
    tcl_delta_init(&d);
    tcl_parser_feed(p, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Pa", 58, &d);
    CHECK(tcl_delta_ok(&d) && d.ncalls == 1);
    d.calls[0].args.oom = 1;
    CHECK(!tcl_delta_ok(&d));
    tcl_delta_reset(&d);
    CHECK(tcl_delta_ok(&d) && d.ncalls == 0);
    tcl_parser_feed(p, "ris</arg_value></tool_call>", 27, &d);
    CHECK(tcl_delta_ok(&d) && d.ncalls == 1);
    CHECK_EQ_STR(d.calls[0].args.data, "ris\"}");
    tcl_delta_free(&d);
    tcl_parser_free(p);
    tcl_tools_free(t);
}

TEST(test_byte_splits)
{
    /* detok never splits a character, but a split must not corrupt one */
    tcl_tools *t = tools_json(k_weather_tools);
    const char *text = "北<tool_call>get_weather<arg_key>city</arg_key><arg_value>é北🌧</arg_value></tool_call>\u3000";
    size_t n = strlen(text);
    pl_buf canon;
    pl_buf_init(&canon);
    for (size_t cut = 0; cut <= n; cut++) {
        size_t cuts[3] = {0, cut, n};
        parse_cuts(t, NULL, text, cuts, 3, &canon, NULL);
        CHECK_EQ_STR(canon.data, "北\x1eget_weather\x1f{\"city\": \"é北🌧\"}");
    }
    pl_buf_free(&canon);
    tcl_tools_free(t);
}

/* Random text from tag pieces, partial tags and awkward characters: any
 * cutting gives the one-shot result, and every call's arguments parse as a
 * JSON object (pl_json_parse is strict enough for that). */
TEST(test_random_markup)
{
    static const char *const pieces[] = {
        "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "<think>",
        "</think>", "<tool_", "</arg", "<", ">", "get_weather", "get_current_date", "city", "days", "metric",
        " ", "\n", "\n", "a", "é", "北", "🌧", "\"", "\\", "{", "}", "[1, 2]", "12", "3.5", "true", "null", "\t",
    };
    tcl_tools *t = tools_json(k_weather_tools);
    rsn_opts on = {true, true};
    uint64_t rng = 12345;
    pl_buf text, one, many;
    pl_buf_init(&text);
    pl_buf_init(&one);
    pl_buf_init(&many);
    int bad = 0, calls = 0;
    for (int iter = 0; iter < 3000; iter++) {
        pl_buf_reset(&text);
        int n = 1 + (int)(split_rand(&rng) % 40);
        for (int i = 0; i < n; i++) {
            if (iter % 3 == 0 && split_rand(&rng) % 3 == 0) {   /* mostly well-formed calls in a third */
                static const char *const skel[] = {"<tool_call>get_weather<arg_key>city</arg_key><arg_value>",
                                                   "</arg_value><arg_key>days</arg_key><arg_value>",
                                                   "</arg_value></tool_call>", "<tool_call>get_current_date</tool_call>"};
                pl_buf_puts(&text, skel[split_rand(&rng) % 4]);
            }
            pl_buf_puts(&text, pieces[split_rand(&rng) % PL_ARRAY_LEN(pieces)]);
        }
        size_t b[4096];
        size_t nc = split_chars(text.data, text.len, b), cuts[64], k = 0;
        cuts[k++] = 0;
        for (size_t i = 1; i + 1 < nc && k < 62; i++)
            if (split_rand(&rng) % 4 == 0) cuts[k++] = b[i];
        cuts[k++] = text.len;
        size_t whole[2] = {0, text.len};
        const rsn_opts *r = iter % 2 ? &on : NULL;
        parse_cuts(t, r, text.data, whole, 2, &one, NULL);
        parse_cuts(t, r, text.data, cuts, k, &many, NULL);
        if (one.len != many.len || memcmp(one.data, many.data, one.len)) {
            if (!bad++) { fprintf(stderr, "  split differs for: %s\n", text.data); show("one ", &one); show("many", &many); }
        }
        /* every call's arguments: a JSON object */
        for (char *c = memchr(one.data, 0x1f, one.len); c; c = memchr(c + 1, 0x1f, one.data + one.len - c - 1)) {
            char *e = memchr(c + 1, 0x1e, one.data + one.len - c - 1);
            size_t len = e ? (size_t)(e - c - 1) : (size_t)(one.data + one.len - c - 1);
            cJSON *v = NULL;
            if (pl_json_parse(&v, c + 1, len, NULL, 0) || !cJSON_IsObject(v)) {
                if (!bad++) fprintf(stderr, "  arguments not a JSON object: %.*s\n", (int)len, c + 1);
            }
            cJSON_Delete(v);
            calls++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(calls > 50);
    printf("  3000 random texts, %d calls\n", calls);
    pl_buf_free(&text);
    pl_buf_free(&one);
    pl_buf_free(&many);
    tcl_tools_free(t);
}

int main(void)
{
    RUN(test_shared_cases);
    RUN(test_glm5_formats);
    RUN(test_unknown_and_malformed);
    RUN(test_stream_ends_mid_call);
    RUN(test_value_coercion);
    RUN(test_schema_types);
    RUN(test_typed_arguments);
    RUN(test_tools_list);
    RUN(test_json_escape);
    RUN(test_unicode);
    RUN(test_calls_inside_thinking);
    RUN(test_long_string_incremental);
    RUN(test_one_megabyte_argument);
    RUN(test_delta_after_oom);
    RUN(test_byte_splits);
    RUN(test_random_markup);
    return test_report();
}
