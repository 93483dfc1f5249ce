"""Request bodies for the vLLM request-path goldens (gen_request_goldens.py).

Each body is written the way a real client writes it: the OpenAI Python SDK
(an assistant turn echoed back from a response object carries "content": null,
"refusal": null, "audio": null, "function_call": null and vLLM's "reasoning"),
LangChain's ChatOpenAI (content null beside tool_calls, arguments as
json.dumps), Claude Code through an Anthropic-to-OpenAI proxy (system and user
content as lists of text parts with cache_control, the billing header block,
tool results as lists of text parts) and Cursor-style agents (developer role,
tool results as text-part lists, strict tools, reasoning_effort). Then the
edge cases the request path must get right: content null everywhere, refusal
parts, text parts with text null, reasoning/reasoning_content, every
reasoning_effort value with chat_template_kwargs/enable_thinking, tools as
vLLM's model_dump passes them, tool-call arguments that are empty, invalid or
not an object, exact 64-bit (and larger) integers, NUL characters, and the
requests vLLM refuses.

bodies() returns [(name, client, body)]; names are unique and stable (the
goldens are keyed by them).
"""

MODEL = "glm"

# ---------------------------------------------------------------- tools

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}

SEARCH = {"type": "function", "function": {
    "name": "web_search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "max_results": {"type": "integer", "default": 5}},
        "required": ["query"]}}}

# LangChain convert_to_openai_tool: name, description, parameters (properties first)
LC_MULTIPLY = {"type": "function", "function": {
    "name": "multiply", "description": "Multiply two integers.",
    "parameters": {"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"], "type": "object"}}}
LC_MULTIPLY_STRICT = {"type": "function", "function": {
    "name": "multiply", "description": "Multiply two integers.",
    "parameters": {"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"], "type": "object", "additionalProperties": False},
    "strict": True}}

SCHEMA = "http://json-schema.org/draft-07/schema#"
CC_BASH = {"type": "function", "function": {
    "name": "Bash",
    "description": "Executes a given bash command in a persistent shell session with optional timeout.",
    "parameters": {"type": "object", "properties": {
        "command": {"type": "string", "description": "The command to execute"},
        "timeout": {"type": "number", "description": "Optional timeout in milliseconds (max 600000)"},
        "description": {"type": "string", "description": "Clear, concise description of what this command does in 5-10 words."}},
        "required": ["command"], "additionalProperties": False, "$schema": SCHEMA}}}
CC_READ = {"type": "function", "function": {
    "name": "Read", "description": "Reads a file from the local filesystem.",
    "parameters": {"type": "object", "properties": {
        "file_path": {"type": "string", "description": "The absolute path to the file to read"},
        "offset": {"type": "number"}, "limit": {"type": "number"}},
        "required": ["file_path"], "additionalProperties": False, "$schema": SCHEMA}}}
CC_EDIT = {"type": "function", "function": {
    "name": "Edit", "description": "Performs exact string replacements in files.",
    "parameters": {"type": "object", "properties": {
        "file_path": {"type": "string"}, "old_string": {"type": "string"},
        "new_string": {"type": "string"}, "replace_all": {"type": "boolean", "default": False}},
        "required": ["file_path", "old_string", "new_string"], "additionalProperties": False,
        "$schema": SCHEMA}}}

CURSOR_READ = {"type": "function", "function": {
    "name": "read_file", "description": "Read the contents of a file.",
    "parameters": {"type": "object", "properties": {
        "target_file": {"type": "string", "description": "The path of the file to read."},
        "should_read_entire_file": {"type": "boolean"},
        "start_line_one_indexed": {"type": "integer"}, "end_line_one_indexed_inclusive": {"type": "integer"},
        "explanation": {"type": "string"}},
        "required": ["target_file", "should_read_entire_file", "start_line_one_indexed",
                     "end_line_one_indexed_inclusive"]},
    "strict": False}}
CURSOR_GREP = {"type": "function", "function": {
    "name": "grep_search", "description": "Fast text-based regex search.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "case_sensitive": {"type": "boolean"},
        "include_pattern": {"type": "string"}},
        "required": ["query"]},
    "strict": False}}

BILLING = "x-anthropic-billing-header: cc_version=2.0.14.a1b; cc_entrypoint=cli; cch=7f3a9c;"
CC_SYSTEM = "You are Claude Code, Anthropic's official CLI for Claude."
CC_SYSTEM_LONG = ("You are an interactive CLI tool that helps users with software engineering tasks.\n\n"
                  "# Tone and style\nYou should be concise, direct, and to the point.")
EPH = {"type": "ephemeral"}

BIG = 9007199254740993            # 2^53 + 1: the first integer a double cannot hold
I64_MAX = 9223372036854775807
I64_MIN = -9223372036854775808
U64_MAX = 18446744073709551615
HUGE = 123456789012345678901234567890


def tc(id_, name, args, **extra):
    """A tool call as OpenAI clients send it (arguments a JSON string)."""
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}, **extra}


def sdk_assistant(tool_calls=None, content=None, reasoning=None):
    """An assistant message the OpenAI SDK echoes back from a vLLM response."""
    m = {"content": content, "refusal": None, "role": "assistant", "annotations": None,
         "audio": None, "function_call": None}
    if tool_calls is not None:       # vLLM drops an empty tool_calls from its responses
        m["tool_calls"] = tool_calls
    if reasoning is not None:
        m["reasoning"] = reasoning
    return m


def body(messages, **kw):
    return {"model": MODEL, "messages": messages, **kw}


def U(text):
    return {"role": "user", "content": text}


def S(text):
    return {"role": "system", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


def T(id_, text):
    return {"role": "tool", "tool_call_id": id_, "content": text}


def bodies():
    out = []

    def add(name, client, b):
        out.append((name, client, b))

    # ================================================================ OpenAI SDK
    add("sdk_basic", "openai-sdk", body([U("Hello! Who are you?")]))
    add("sdk_system", "openai-sdk", body([S("You are a helpful assistant."), U("Say hi.")],
                                         temperature=0.7, max_tokens=64))
    add("sdk_multi_turn", "openai-sdk", body([
        S("You are terse."), U("2+2?"), A("4"), U("and 3+3?")]))
    add("sdk_tool_roundtrip", "openai-sdk", body([
        U("What's the weather in Paris?"),
        sdk_assistant([tc("chatcmpl-tool-9f1c2a", "get_weather", "{\"city\": \"Paris\"}")],
                      reasoning="The user wants the weather; call get_weather."),
        T("chatcmpl-tool-9f1c2a", "{\"temperature\": 21, \"condition\": \"sunny\"}")],
        tools=[WEATHER]))
    add("sdk_tool_roundtrip_no_reasoning", "openai-sdk", body([
        U("Weather in Oslo and Rome?"),
        sdk_assistant([tc("call_1", "get_weather", "{\"city\": \"Oslo\"}"),
                       tc("call_2", "get_weather", "{\"city\": \"Rome\", \"unit\": \"celsius\"}")]),
        T("call_1", "-3 C, snow"), T("call_2", "18 C, clear")],
        tools=[WEATHER], tool_choice="auto"))
    add("sdk_tool_then_answer", "openai-sdk", body([
        U("Weather in Paris?"),
        sdk_assistant([tc("call_1", "get_weather", "{\"city\": \"Paris\"}")]),
        T("call_1", "21 C"),
        sdk_assistant(None, content="It is 21 C in Paris.", reasoning="Report it."),
        U("Thanks! And Berlin?")], tools=[WEATHER]))
    add("sdk_reasoning_last_turn", "openai-sdk", body([
        U("Think then answer: 17*3?"),
        sdk_assistant(None, content="51", reasoning="17*3 = 51")]))
    add("sdk_content_null_no_tools", "openai-sdk", body([U("hi"), sdk_assistant(None), U("again")]))
    add("sdk_tool_required", "openai-sdk", body([U("Search cats")], tools=[SEARCH], tool_choice="required"))
    add("sdk_tool_named", "openai-sdk", body([U("Search cats")], tools=[SEARCH, WEATHER],
                                             tool_choice={"type": "function", "function": {"name": "web_search"}}))
    add("sdk_tool_choice_none", "openai-sdk", body([U("Just chat")], tools=[WEATHER], tool_choice="none"))
    add("sdk_stream", "openai-sdk", body([U("Stream a haiku")], stream=True,
                                         stream_options={"include_usage": True}))
    add("sdk_name_field", "openai-sdk", body([S("Multi-user chat."), {"role": "user", "name": "alice", "content": "hi"},
                                              {"role": "user", "name": "bob", "content": "hello"}]))
    add("sdk_seed_logprobs", "openai-sdk", body([U("Pick a number")], seed=42, logprobs=True, top_logprobs=3,
                                                max_completion_tokens=10))
    add("sdk_user_text_parts", "openai-sdk", body([{"role": "user", "content": [
        {"type": "text", "text": "First part."}, {"type": "text", "text": "Second part."}]}]))
    add("sdk_refusal_part", "openai-sdk", body([
        U("Do something bad"),
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
        U("OK, something good then")]))
    add("sdk_assistant_refusal_field", "openai-sdk", body([
        U("Do something bad"), {"role": "assistant", "content": None, "refusal": "I can't help with that."},
        U("fine")]))
    add("sdk_function_role", "openai-sdk", body([
        U("Weather?"), {"role": "assistant", "content": None,
                        "function_call": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"role": "function", "name": "get_weather", "content": "sunny"}, U("and now?")]))
    add("sdk_developer_only", "openai-sdk", body([{"role": "developer", "content": "Answer in French."},
                                                  U("Hello")]))
    add("sdk_developer_and_system", "openai-sdk", body([
        S("You are helpful."), {"role": "developer", "content": "Answer in French."}, U("Hello")]))
    add("sdk_developer_mid", "openai-sdk", body([
        U("Hello"), A("Hi!"), {"role": "developer", "content": "Now answer in German."}, U("How are you?")]))
    add("sdk_developer_parts", "openai-sdk", body([
        {"role": "developer", "content": [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}]},
        S("Base system."), U("go")]))
    add("sdk_two_systems", "openai-sdk", body([S("First."), S("Second."), U("q")]))
    add("sdk_system_after_user", "openai-sdk", body([U("q"), S("Late system."), U("q2")]))
    add("sdk_developer_empty", "openai-sdk", body([{"role": "developer", "content": ""}, S("Sys."), U("q")]))
    add("sdk_unicode", "openai-sdk", body([U("Héllo 世界 🌍 — ¿qué tal?")]))
    add("sdk_agent_three_rounds", "openai-sdk", body([
        S("You are a research agent."), U("Compare the weather in Paris and Oslo, then search for travel tips."),
        sdk_assistant([tc("chatcmpl-tool-1", "get_weather", "{\"city\": \"Paris\"}")], reasoning="Paris first."),
        T("chatcmpl-tool-1", "{\"temperature\": 21}"),
        sdk_assistant([tc("chatcmpl-tool-2", "get_weather", "{\"city\": \"Oslo\", \"unit\": \"celsius\"}")], reasoning="Now Oslo."),
        T("chatcmpl-tool-2", "{\"temperature\": -3}"),
        sdk_assistant([tc("chatcmpl-tool-3", "web_search", "{\"query\": \"Oslo travel tips winter\", \"max_results\": 3}")]),
        T("chatcmpl-tool-3", "[\"Dress warmly\", \"Visit the fjords\"]")],
        tools=[WEATHER, SEARCH], tool_choice="auto", parallel_tool_calls=True, temperature=0.6, top_p=0.95))

    # ================================================================ LangChain
    add("lc_basic", "langchain", body([S("You are a helpful assistant."), U("What is LangChain?")],
                                      stream=False, n=1, temperature=0.0))
    add("lc_tools_roundtrip", "langchain", body([
        U("What is 3 * 12?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "id": "call_abc", "function": {"name": "multiply", "arguments": "{\"a\": 3, \"b\": 12}"}}]},
        {"role": "tool", "content": "36", "tool_call_id": "call_abc"}],
        tools=[LC_MULTIPLY], stream=False))
    add("lc_strict_tool", "langchain", body([U("7 times 6?")], tools=[LC_MULTIPLY_STRICT], parallel_tool_calls=False))
    add("lc_content_empty_with_tools", "langchain", body([
        U("3*4?"),
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "id": "c1", "function": {"name": "multiply", "arguments": "{\"a\": 3, \"b\": 4}"}}]},
        {"role": "tool", "content": "12", "tool_call_id": "c1"}, U("and 5*5?")], tools=[LC_MULTIPLY]))
    add("lc_reasoning_content", "langchain", body([
        U("2+2?"), {"role": "assistant", "content": "4", "reasoning_content": "Simple addition."}, U("3+3?")]))
    add("lc_reasoning_content_last", "langchain", body([
        U("2+2?"), {"role": "assistant", "content": "4", "reasoning_content": "Simple addition."}]))
    add("lc_unicode_args", "langchain", body([
        U("Weather in Zürich?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "id": "c1", "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}}]},
        {"role": "tool", "content": "12°C", "tool_call_id": "c1"}], tools=[WEATHER]))
    add("lc_nested_args", "langchain", body([
        U("Search"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "id": "c1", "function": {"name": "web_search",
                                                          "arguments": "{\"query\": \"cats\", \"filters\": {\"lang\": [\"en\", \"fr\"], \"safe\": true, \"min\": 1.5, \"n\": null}}"}}]},
        {"role": "tool", "content": "[]", "tool_call_id": "c1"}], tools=[SEARCH]))

    # ================================================================ Claude Code through a proxy
    add("cc_billing_separate_part", "claude-code", body([
        {"role": "system", "content": [
            {"type": "text", "text": BILLING},
            {"type": "text", "text": CC_SYSTEM, "cache_control": EPH},
            {"type": "text", "text": CC_SYSTEM_LONG, "cache_control": EPH}]},
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>\nContext.\n</system-reminder>"},
                                     {"type": "text", "text": "fix the bug in main.py", "cache_control": EPH}]}],
        tools=[CC_BASH, CC_READ, CC_EDIT], max_tokens=32000, temperature=1, stream=True,
        stream_options={"include_usage": True}))
    add("cc_billing_joined", "claude-code", body([
        {"role": "system", "content": [{"type": "text", "text": BILLING + "\n" + CC_SYSTEM}]},
        U("hello")]))
    add("cc_billing_string", "claude-code", body([S(BILLING + "\n" + CC_SYSTEM), U("hello")]))
    add("cc_billing_only_string", "claude-code", body([S(BILLING), U("hello")]))
    add("cc_billing_not_first_line", "claude-code", body([S(CC_SYSTEM + "\n" + BILLING), U("hello")]))
    add("cc_billing_in_user", "claude-code", body([U(BILLING + "\nhello")]))
    add("cc_billing_in_developer", "claude-code", body([{"role": "developer", "content": BILLING + "\nRules."}, U("hi")]))
    add("cc_billing_bare_string_part", "claude-code", body([
        {"role": "system", "content": [BILLING + "\n" + CC_SYSTEM, "More rules."]}, U("hi")]))
    add("cc_tool_loop", "claude-code", body([
        {"role": "system", "content": [{"type": "text", "text": BILLING}, {"type": "text", "text": CC_SYSTEM, "cache_control": EPH}]},
        {"role": "user", "content": [{"type": "text", "text": "list files"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "I'll list the files."}],
         "tool_calls": [tc("toolu_01A", "Bash", "{\"command\": \"ls -la\", \"description\": \"List files\"}")]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": [{"type": "text", "text": "total 8\nmain.py\nREADME.md"}]},
        {"role": "assistant", "content": None,
         "tool_calls": [tc("toolu_01B", "Read", "{\"file_path\": \"/repo/main.py\"}")]},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": [
            {"type": "text", "text": "     1\tprint('hi')"}, {"type": "text", "text": "<system-reminder>file read</system-reminder>"}]}],
        tools=[CC_BASH, CC_READ, CC_EDIT], max_tokens=32000, stream=True))
    add("cc_tool_result_empty_list", "claude-code", body([
        U("run it"), {"role": "assistant", "content": None, "tool_calls": [tc("t1", "Bash", "{\"command\": \"true\"}")]},
        {"role": "tool", "tool_call_id": "t1", "content": []}], tools=[CC_BASH]))
    add("cc_tool_result_text_null", "claude-code", body([
        U("run it"), {"role": "assistant", "content": None, "tool_calls": [tc("t1", "Bash", "{\"command\": \"true\"}")]},
        {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": None}, {"type": "text", "text": "ok"}]}],
        tools=[CC_BASH]))
    add("cc_tool_result_cache_control", "claude-code", body([
        U("run it"), {"role": "assistant", "content": None, "tool_calls": [tc("t1", "Bash", "{\"command\": \"date\"}")]},
        {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "Thu Dec 3", "cache_control": EPH}]}],
        tools=[CC_BASH]))
    add("cc_parallel_tool_results", "claude-code", body([
        U("read both"),
        {"role": "assistant", "content": None, "tool_calls": [
            tc("t1", "Read", "{\"file_path\": \"/a\"}"), tc("t2", "Read", "{\"file_path\": \"/b\"}")]},
        {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "A"}]},
        {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "B1"}, {"type": "text", "text": "B2"}]},
        U("summarise")], tools=[CC_READ]))
    add("cc_reasoning_effort_high", "claude-code", body([
        {"role": "system", "content": [{"type": "text", "text": CC_SYSTEM}]}, U("plan the refactor")],
        reasoning_effort="high", tools=[CC_BASH]))
    add("cc_thinking_reasoning_turn", "claude-code", body([
        U("check"), {"role": "assistant", "content": [{"type": "text", "text": "Checking."}],
                     "reasoning_content": "I should run the tests.",
                     "tool_calls": [tc("t1", "Bash", "{\"command\": \"make test\"}")]},
        {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "ok"}]}], tools=[CC_BASH]))
    add("cc_user_parts_and_strings", "claude-code", body([
        {"role": "user", "content": ["plain string part", {"type": "text", "text": "dict part"}]}]))

    # ================================================================ Cursor-style agents
    add("cursor_agent", "cursor", body([
        S("You are a powerful agentic AI coding assistant, powered by GLM."),
        {"role": "user", "content": [{"type": "text", "text": "<user_query>\nwhere is main defined?\n</user_query>"}]},
        {"role": "assistant", "content": "", "tool_calls": [
            tc("call_0", "grep_search", "{\"query\": \"def main\", \"case_sensitive\": true}")]},
        {"role": "tool", "tool_call_id": "call_0", "content": [{"type": "text", "text": "src/app.py:10: def main():"}]}],
        tools=[CURSOR_READ, CURSOR_GREP], stream=True, stream_options={"include_usage": True},
        parallel_tool_calls=True, reasoning_effort="medium"))
    add("cursor_developer", "cursor", body([
        {"role": "developer", "content": "Follow the user's rules."}, S("You are an agent."),
        {"role": "user", "content": [{"type": "text", "text": "refactor"}]}], tools=[CURSOR_READ]))
    add("cursor_tool_string_result", "cursor", body([
        U("read it"),
        {"role": "assistant", "content": None, "tool_calls": [
            tc("c0", "read_file", "{\"target_file\": \"a.py\", \"should_read_entire_file\": true, \"start_line_one_indexed\": 1, \"end_line_one_indexed_inclusive\": 200}")]},
        T("c0", "print(1)\n")], tools=[CURSOR_READ]))
    add("cursor_reasoning_low", "cursor", body([U("quick question")], reasoning_effort="low"))
    add("cursor_image_part", "cursor", body([{"role": "user", "content": [
        {"type": "text", "text": "what is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]))
    add("cursor_tool_result_image", "cursor", body([
        U("screenshot"), {"role": "assistant", "content": None, "tool_calls": [tc("c0", "read_file", "{\"target_file\": \"x.png\"}")]},
        {"role": "tool", "tool_call_id": "c0", "content": [
            {"type": "text", "text": "here"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}],
        tools=[CURSOR_READ]))

    # ================================================================ content null / parts
    add("null_content_assistant_no_tools", "edge", body([U("a"), A(None), U("b")]))
    add("null_content_and_null_tool_calls", "edge", body([U("a"), {"role": "assistant", "content": None, "tool_calls": None}, U("b")]))
    add("text_part_null_alone", "edge", body([{"role": "user", "content": [{"type": "text", "text": None}]}]))
    add("tool_part_text_null_alone", "edge", body([
        U("a"), {"role": "assistant", "content": None, "tool_calls": [tc("c", "get_weather", "{}")]},
        {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": None}]}], tools=[WEATHER]))
    add("system_billing_bare_alone", "edge", body([{"role": "system", "content": [BILLING]}, U("hi")]))
    add("system_billing_part_alone", "edge", body([{"role": "system", "content": [{"type": "text", "text": BILLING}]}, U("hi")]))
    add("text_part_with_uuid", "edge", body([{"role": "user", "content": [{"type": "text", "text": "x", "uuid": "u1"}]}]))
    add("user_empty_string", "edge", body([U(""), A("ok"), U("again")]))
    add("developer_with_tools", "edge", body([{"role": "developer", "content": "Use tools.", "tools": [WEATHER]}, U("hi")]))
    add("assistant_name_field", "edge", body([U("hi"), {"role": "assistant", "name": "bot", "content": "hello"}, U("bye")]))
    add("null_content_user", "edge", body([{"role": "user", "content": None}]))
    add("null_content_system", "edge", body([{"role": "system", "content": None}, U("x")]))
    add("null_content_tool", "edge", body([
        U("a"), {"role": "assistant", "content": None, "tool_calls": [tc("c", "get_weather", "{}")]},
        {"role": "tool", "tool_call_id": "c", "content": None}], tools=[WEATHER]))
    add("missing_content_user", "edge", body([{"role": "user"}]))
    add("missing_content_assistant_last", "edge", body([U("a"), {"role": "assistant"}]))
    add("text_part_null", "edge", body([{"role": "user", "content": [{"type": "text", "text": None}, {"type": "text", "text": "kept"}]}]))
    add("text_part_missing_text", "edge", body([{"role": "user", "content": [{"type": "text"}, {"type": "text", "text": "kept"}]}]))
    add("refusal_part_null", "edge", body([U("x"), {"role": "assistant", "content": [{"type": "refusal", "refusal": None}]}, U("y")]))
    add("user_refusal_part", "edge", body([{"role": "user", "content": [{"type": "refusal", "refusal": "nope"}, {"type": "text", "text": "yes"}]}]))
    add("empty_parts_list", "edge", body([{"role": "user", "content": []}]))
    add("assistant_content_parts", "edge", body([U("a"), {"role": "assistant", "content": [
        {"type": "text", "text": "Part one. "}, {"type": "text", "text": "Part two."}]}, U("b")]))
    add("assistant_think_in_content", "edge", body([U("a"), A("<think>hidden</think>visible"), U("b")]))
    add("unknown_part_type", "edge", body([{"role": "user", "content": [{"type": "bogus", "text": "x"}]}]))
    add("part_without_type", "edge", body([{"role": "user", "content": [{"text": "no type"}]}]))
    add("input_text_part", "edge", body([{"role": "user", "content": [{"type": "input_text", "text": "responses-style"}]}]))
    add("thinking_part", "edge", body([U("a"), {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "ok"}]}, U("b")]))
    add("audio_part", "edge", body([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]))
    add("content_not_string", "edge", body([{"role": "user", "content": 42}]))
    add("custom_role", "edge", body([{"role": "observer", "content": "watching"}, U("hi")]))
    add("role_missing", "edge", body([{"content": "no role"}]))
    add("message_not_object", "edge", body(["just a string"]))

    # ================================================================ reasoning fields
    add("reasoning_field", "edge", body([U("a"), {"role": "assistant", "content": "x", "reasoning": "R1"}]))
    add("reasoning_both_fields", "edge", body([U("a"), {"role": "assistant", "content": "x", "reasoning": "R-new", "reasoning_content": "R-old"}]))
    add("reasoning_content_null_reasoning", "edge", body([U("a"), {"role": "assistant", "content": "x", "reasoning": None, "reasoning_content": "R-old"}]))
    add("reasoning_on_user", "edge", body([{"role": "user", "content": "a", "reasoning": "user thought"}]))
    add("reasoning_not_string", "edge", body([U("a"), {"role": "assistant", "content": "x", "reasoning": 5}]))
    add("reasoning_history_dropped", "edge", body([
        U("q1"), {"role": "assistant", "content": "a1", "reasoning": "old thought"}, U("q2")]))

    # ================================================================ reasoning_effort / kwargs
    for eff in ["none", "minimal", "low", "medium", "high", "xhigh", "max"]:
        add(f"effort_{eff}", "edge", body([U("think?")], reasoning_effort=eff))
    add("effort_invalid", "edge", body([U("think?")], reasoning_effort="huge"))
    add("effort_none_kwargs_thinking_true", "edge", body([U("x")], reasoning_effort="none",
                                                          chat_template_kwargs={"enable_thinking": True}))
    add("effort_high_kwargs_thinking_false", "edge", body([U("x")], reasoning_effort="high",
                                                           chat_template_kwargs={"enable_thinking": False}))
    add("kwargs_effort_only", "edge", body([U("x")], chat_template_kwargs={"reasoning_effort": "high"}))
    add("kwargs_effort_vs_top", "edge", body([U("x")], reasoning_effort="low",
                                             chat_template_kwargs={"reasoning_effort": "high"}))
    add("kwargs_thinking_false", "edge", body([U("x")], chat_template_kwargs={"enable_thinking": False}))
    add("kwargs_effort_auto", "edge", body([U("x")], chat_template_kwargs={"reasoning_effort": "auto"}))
    add("kwargs_null_value", "edge", body([U("x")], chat_template_kwargs={"enable_thinking": None}))
    add("kwargs_add_generation_prompt", "edge", body([U("x")], chat_template_kwargs={"add_generation_prompt": False}))
    add("kwargs_chat_template", "edge", body([U("x")], chat_template_kwargs={"chat_template": "{{ 'pwned' }}"}))
    add("kwargs_clear_thinking_false", "edge", body([
        U("q1"), {"role": "assistant", "content": "a1", "reasoning_content": "t1"}, U("q2")],
        chat_template_kwargs={"clear_thinking": False}))
    add("kwargs_tools_override", "edge", body([U("x")], tools=[WEATHER],
                                              chat_template_kwargs={"tools": [SEARCH]}))
    add("top_chat_template", "edge", body([U("x")], chat_template="{{ messages[0].content }}"))
    add("continue_final_message", "edge", body([U("Write a poem"), A("Roses are red,")],
                                                continue_final_message=True, add_generation_prompt=False))
    add("continue_final_message_parts", "edge", body([U("Write"), {"role": "assistant", "content": [
        {"type": "text", "text": "Once upon"}, {"type": "text", "text": " a time  "}]}],
        continue_final_message=True, add_generation_prompt=False))
    add("continue_and_generation_prompt", "edge", body([U("x"), A("y")], continue_final_message=True,
                                                        add_generation_prompt=True))
    add("continue_default_generation_prompt", "edge", body([U("x"), A("y")], continue_final_message=True))
    add("no_generation_prompt", "edge", body([U("x")], add_generation_prompt=False))
    add("documents", "edge", body([U("x")], documents=[{"title": "t", "text": "doc text"}]))

    # ================================================================ tools as model_dump passes them
    add("tool_no_description", "edge", body([U("x")], tools=[{"type": "function", "function": {"name": "ping"}}]))
    add("tool_no_type", "edge", body([U("x")], tools=[{"function": {"name": "ping", "description": "p",
                                                                    "parameters": {"type": "object", "properties": {}}}}]))
    add("tool_key_order", "edge", body([U("x")], tools=[{"function": {"parameters": {"type": "object", "properties": {"z": {"type": "string"}, "a": {"type": "integer"}}},
                                                                      "description": "d", "name": "ordered"}, "type": "function"}]))
    add("tool_unknown_keys", "edge", body([U("x")], tools=[{"type": "function", "cache_control": EPH,
                                                            "function": {"name": "f", "description": "d", "x-extra": 1,
                                                                         "parameters": {"type": "object", "properties": {}, "x-vendor": True}}}]))
    add("tool_strict_true", "edge", body([U("x")], tools=[{"type": "function", "function": {
        "name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}, "strict": True}}]))
    add("tool_defer_loading", "edge", body([U("x")], tools=[WEATHER, {"type": "function", "defer_loading": True, "function": {
        "name": "lazy", "description": "loaded later", "parameters": {"type": "object", "properties": {}}}}]))
    add("tool_defer_loading_function", "edge", body([U("x")], tools=[{"type": "function", "function": {
        "name": "lazy", "description": "d", "defer_loading": False, "parameters": {}}, "defer_loading": True}]))
    add("tool_reference_result", "edge", body([
        U("find a tool"), {"role": "assistant", "content": None, "tool_calls": [tc("c", "web_search", "{\"query\": \"weather\"}")]},
        {"role": "tool", "tool_call_id": "c", "content": [{"type": "tool_reference", "name": "lazy"}]}],
        tools=[SEARCH, {"type": "function", "defer_loading": True, "function": {
            "name": "lazy", "description": "loaded later", "parameters": {"type": "object", "properties": {}}}}]))
    add("tool_type_custom", "edge", body([U("x")], tools=[{"type": "custom", "custom": {"name": "f"}}]))
    add("tools_empty_list", "edge", body([U("x")], tools=[]))
    add("tool_choice_without_tools", "edge", body([U("x")], tool_choice="auto"))
    add("tool_choice_unknown_name", "edge", body([U("x")], tools=[WEATHER],
                                                 tool_choice={"type": "function", "function": {"name": "nope"}}))
    add("tool_choice_bad_string", "edge", body([U("x")], tools=[WEATHER], tool_choice="sometimes"))
    add("tool_parameters_null", "edge", body([U("x")], tools=[{"type": "function", "function": {"name": "f", "description": None, "parameters": None}}]))
    add("tool_name_missing", "edge", body([U("x")], tools=[{"type": "function", "function": {"description": "no name"}}]))

    # ================================================================ tool-call arguments
    def args_case(name, args):
        add(name, "edge", body([U("x"), {"role": "assistant", "content": None, "tool_calls": [tc("c1", "get_weather", args)]},
                                T("c1", "done")], tools=[WEATHER]))
    args_case("args_empty_string", "")
    args_case("args_invalid_json", "{\"city\": \"Par")
    args_case("args_array", "[1, 2]")
    args_case("args_number", "42")
    args_case("args_string_json", "\"Paris\"")
    args_case("args_null_json", "null")
    args_case("args_whitespace", "  {\"city\": \"Paris\"}  ")
    args_case("args_trailing_garbage", "{\"city\": \"Paris\"} x")
    args_case("args_duplicate_keys", "{\"city\": \"Paris\", \"city\": \"Rome\"}")
    args_case("args_floats", "{\"t\": 1.0, \"u\": 1e5, \"v\": -0.0, \"w\": 2.50, \"x\": 1E-7}")
    args_case("args_raw_newline_in_string", "{\"city\": \"Par\nis\"}")
    add("args_object", "edge", body([U("x"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, T("c1", "done")],
        tools=[WEATHER]))
    add("args_null", "edge", body([U("x"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": None}}]}, T("c1", "done")],
        tools=[WEATHER]))
    add("args_missing", "edge", body([U("x"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather"}}]}, T("c1", "done")], tools=[WEATHER]))
    add("tool_call_no_type", "edge", body([U("x"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "function": {"name": "get_weather", "arguments": "{}"}}]}, T("c1", "done")], tools=[WEATHER]))
    add("tool_call_no_id", "edge", body([U("x"), {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}, T("c1", "done")], tools=[WEATHER]))
    add("tool_calls_empty_list", "edge", body([U("x"), {"role": "assistant", "content": "plain", "tool_calls": []}, U("y")]))
    add("tool_calls_null", "edge", body([U("x"), {"role": "assistant", "content": "plain", "tool_calls": None}, U("y")]))
    add("tool_without_call_id", "edge", body([U("x"), {"role": "tool", "content": "orphan result"}]))

    # ================================================================ integers
    add("int_big_args", "edge", body([U("x"), {"role": "assistant", "content": None, "tool_calls": [tc("c1", "web_search",
        "{\"query\": \"q\", \"a\": %d, \"b\": %d, \"c\": %d, \"d\": %d, \"e\": %d, \"f\": -0}" % (BIG, I64_MAX, I64_MIN, U64_MAX, HUGE))]},
        T("c1", "ok")], tools=[SEARCH]))
    add("int_big_tool_schema", "edge", body([U("x")], tools=[{"type": "function", "function": {
        "name": "limits", "description": "d", "parameters": {"type": "object", "properties": {"n": {
            "type": "integer", "minimum": I64_MIN, "maximum": U64_MAX, "default": BIG, "multipleOf": HUGE,
            "examples": [BIG - 2, 1.0, 2.5e-8]}}}}}]))
    add("int_big_args_object", "edge", body([U("x"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "web_search", "arguments": {"query": "q", "n": BIG, "m": I64_MIN}}}]},
        T("c1", "ok")], tools=[SEARCH]))
    add("int_seed_max", "edge", body([U("x")], seed=I64_MAX))
    add("int_seed_min", "edge", body([U("x")], seed=I64_MIN))
    add("int_seed_big", "edge", body([U("x")], seed=BIG))
    add("int_seed_overflow", "edge", body([U("x")], seed=I64_MAX + 1))
    add("int_kwargs_big", "edge", body([U("x")], chat_template_kwargs={"budget": BIG}))

    # ================================================================ NUL characters
    add("nul_in_content", "edge", body([U("before\u0000after")]))
    add("nul_in_system", "edge", body([S("sys\u0000tem"), U("x")]))
    add("nul_in_args", "edge", body([U("x"), {"role": "assistant", "content": None, "tool_calls": [tc("c1", "web_search",
        "{\"query\": \"a\\u0000b\", \"k\\u0000ey\": 1}")]}, T("c1", "r\u0000s")], tools=[SEARCH]))
    add("nul_in_tool_schema", "edge", body([U("x")], tools=[{"type": "function", "function": {
        "name": "f", "description": "d\u0000e", "parameters": {"type": "object", "properties": {"a\u0000b": {"type": "string"}}}}}]))

    # ================================================================ refused requests
    add("messages_empty", "edge", body([]))
    add("messages_missing", "edge", {"model": MODEL})
    add("messages_not_list", "edge", body({"role": "user", "content": "x"}))
    add("stream_options_without_stream", "edge", body([U("x")], stream_options={"include_usage": True}))
    add("top_logprobs_without_logprobs", "edge", body([U("x")], top_logprobs=2))
    add("max_tokens_too_large", "edge", body([U("x")], max_tokens=10_000_000))
    add("n_zero", "edge", body([U("x")], n=0))
    add("temperature_negative", "edge", body([U("x")], temperature=-1))
    add("top_p_zero", "edge", body([U("x")], top_p=0))
    return out
