"""Conversations rendered through the real chat templates (GLM family and
the three tokenizer_config.json templates). Each entry: (name, context)."""

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city. Température en °C — 天气",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Zürich\""},
                "days": {"type": "integer", "minimum": 1, "maximum": 14, "default": 3},
                "units": {"type": "string", "enum": ["c", "f"]},
                "threshold": {"type": "number", "default": 0.5},
                "ratio": {"type": "number", "default": 1.0},
                "options": {
                    "type": "object",
                    "properties": {
                        "hourly": {"type": "boolean"},
                        "fields": {"type": "array", "items": {"type": "string"}},
                        "nested": {"type": "object", "properties": {"deep": {"type": ["string", "null"]}}},
                    },
                },
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "web_search",
        "description": "Search the web.\nReturns a list of results with <b>HTML</b> & \\ backslashes.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}},
                       "required": ["query"]},
    },
}
FLAT_TOOL = {"name": "calc", "description": "Evaluate arithmetic", "parameters": {"type": "object",
             "properties": {"expr": {"type": "string"}}}}
DEFERRED = {"type": "function", "function": {"name": "lazy_tool", "description": "loaded later",
            "parameters": {"type": "object", "properties": {}}, "defer_loading": True, "strict": True}}
STRICT = {"type": "function", "function": {"name": "strict_tool", "description": "strict one", "strict": False,
          "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}


def tc(name, args, wrap=True, id_="call_1"):
    if wrap:
        return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}
    return {"name": name, "arguments": args}


def conversations():
    c = []
    add = lambda name, **ctx: c.append((name, ctx))  # noqa: E731
    u = lambda t: {"role": "user", "content": t}  # noqa: E731
    a = lambda t, **kw: dict({"role": "assistant", "content": t}, **kw)  # noqa: E731
    s = lambda t: {"role": "system", "content": t}  # noqa: E731
    tool = lambda t: {"role": "tool", "content": t}  # noqa: E731

    add("single_user", messages=[u("Hello!")], add_generation_prompt=True)
    add("single_user_no_gen", messages=[u("Hello!")], add_generation_prompt=False)
    add("no_gen_var", messages=[u("Hello!")])
    add("empty_messages", messages=[], add_generation_prompt=True)
    add("empty_messages_no_gen", messages=[])
    add("system_user", messages=[s("You are helpful."), u("2+2?")], add_generation_prompt=True)
    add("multi_turn", messages=[s("sys"), u("a"), a("b"), u("c"), a("d"), u("e")], add_generation_prompt=True)
    add("multi_turn_reasoning", messages=[
        u("What is 2+2?"), a("4", reasoning_content="simple addition"),
        u("And 3+3?"), a("6", reasoning_content="add again")], add_generation_prompt=False)
    add("reasoning_last_turn_gen", messages=[
        u("q1"), a("a1", reasoning_content="r1"), u("q2"), a("a2", reasoning_content="r2")], add_generation_prompt=True)
    add("inline_think", messages=[u("hi"), a("<think>\nlet me think\n</think>\n\nHello there")],
        add_generation_prompt=False)
    add("inline_think_past", messages=[u("hi"), a("<think>old</think>answer"), u("next")],
        add_generation_prompt=True)
    add("reasoning_whitespace", messages=[u("x"), a("  padded  \n", reasoning_content="  spaced reasoning \n")])
    add("reasoning_empty", messages=[u("x"), a("y", reasoning_content="")], add_generation_prompt=True)
    add("reasoning_none", messages=[u("x"), a("y", reasoning_content=None)], add_generation_prompt=True)
    add("enable_thinking_false", messages=[u("Hello")], add_generation_prompt=True, enable_thinking=False)
    add("enable_thinking_true", messages=[u("Hello")], add_generation_prompt=True, enable_thinking=True)
    add("enable_thinking_false_multi", messages=[u("a"), a("b", reasoning_content="r"), u("c /nothink")],
        add_generation_prompt=True, enable_thinking=False)
    add("clear_thinking_false", messages=[
        u("q1"), a("a1", reasoning_content="r1"), u("q2"), a("a2", reasoning_content="r2"), u("q3")],
        add_generation_prompt=True, clear_thinking=False)
    add("clear_thinking_true", messages=[
        u("q1"), a("a1", reasoning_content="r1"), u("q2")], add_generation_prompt=True, clear_thinking=True)
    add("reasoning_effort_high", messages=[u("hard problem")], add_generation_prompt=True, reasoning_effort="high")
    add("reasoning_effort_low", messages=[u("easy")], add_generation_prompt=True, reasoning_effort="low")
    add("reasoning_effort_high_nothink", messages=[u("x")], add_generation_prompt=True,
        reasoning_effort="high", enable_thinking=False)
    add("tools_basic", messages=[u("Weather in Paris?")], tools=[WEATHER], add_generation_prompt=True)
    add("tools_two", messages=[s("Be brief."), u("Search cats")], tools=[WEATHER, SEARCH], add_generation_prompt=True)
    add("tools_flat", messages=[u("1+1")], tools=[FLAT_TOOL], add_generation_prompt=True)
    add("tools_deferred_strict", messages=[u("x")], tools=[WEATHER, DEFERRED, STRICT], add_generation_prompt=True)
    add("tools_empty_list", messages=[u("x")], tools=[], add_generation_prompt=True)
    add("tool_call_roundtrip", messages=[
        u("Weather in Zürich for 3 days?"),
        a("", tool_calls=[tc("get_weather", {"city": "Zürich", "days": 3, "units": "c"})]),
        tool('{"temp": 21.5, "sky": "clear"}'),
        a("It is 21.5 °C and clear.")], tools=[WEATHER], add_generation_prompt=False)
    add("tool_call_with_content", messages=[
        u("search"), a("Let me search.", reasoning_content="need a search",
                        tool_calls=[tc("web_search", {"query": "cats", "top_k": 5})]),
        tool("result 1")], tools=[SEARCH], add_generation_prompt=True)
    add("tool_call_args_types", messages=[
        u("go"), a(None, tool_calls=[tc("get_weather", {
            "city": "Paris", "days": 2, "threshold": 0.25, "ratio": 1.0, "big": 12345678901234,
            "flag": True, "off": False, "nothing": None, "list": [1, "two", 3.5, None],
            "obj": {"k": "v", "unicode": "日本語 ✓", "quote": "say \"hi\"\n"}, "empty_obj": {}, "empty_list": [],
            "float_exp": 1e-07, "neg": -3})])], tools=[WEATHER], add_generation_prompt=True)
    add("tool_calls_multiple", messages=[
        u("two things"), a("", tool_calls=[tc("get_weather", {"city": "A"}, id_="c1"),
                                           tc("web_search", {"query": "B"}, id_="c2")]),
        tool("ra"), tool("rb"), u("thanks")], tools=[WEATHER, SEARCH], add_generation_prompt=True)
    add("tool_call_flat", messages=[u("x"), a("", tool_calls=[tc("calc", {"expr": "1+1"}, wrap=False)]),
                                    tool("2")], add_generation_prompt=True)
    add("tool_call_string_args", messages=[u("x"), a("", tool_calls=[tc("calc", '{"expr": "1+1"}')])],
        add_generation_prompt=True)
    add("tool_call_missing_args", messages=[u("x"), a("", tool_calls=[{"function": {"name": "calc"}}])],
        add_generation_prompt=True)
    add("tool_result_list_content", messages=[u("x"), a("", tool_calls=[tc("calc", {"expr": "2"})]),
                                              {"role": "tool", "content": [{"output": "out A"}, {"output": "out B"}]}],
        add_generation_prompt=True)
    add("tool_result_text_parts", messages=[u("x"), a("", tool_calls=[tc("calc", {"expr": "2"})]),
                                            {"role": "tool", "content": [{"type": "text", "text": "part"}]}],
        add_generation_prompt=True)
    add("tool_reference", messages=[u("find tools"), a("", tool_calls=[tc("tool_search", {"q": "weather"})]),
                                    {"role": "tool", "content": [{"type": "tool_reference", "name": "get_weather"},
                                                                 {"type": "tool_reference", "name": "web_search"}]}],
        tools=[WEATHER, SEARCH, DEFERRED], add_generation_prompt=True)
    add("list_content_user", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Look at "}, "this", {"type": "text", "text": " please"}]}],
        add_generation_prompt=True)
    add("list_content_media", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}, {"type": "text", "text": "What is it?"},
        {"type": "input_audio", "input_audio": {"data": "..."}}, {"type": "video_url", "video_url": {"url": "v"}}]}],
        add_generation_prompt=True)
    add("list_content_system_assistant", messages=[
        {"role": "system", "content": [{"type": "text", "text": "sys part"}]}, u("q"),
        {"role": "assistant", "content": [{"type": "text", "text": "ans part"}]}], add_generation_prompt=False)
    add("content_none_assistant", messages=[u("q"), a(None)], add_generation_prompt=False)
    add("content_missing", messages=[u("q"), {"role": "assistant"}], add_generation_prompt=False)
    add("content_number", messages=[u("q"), a(42)])
    add("user_nothink_suffix", messages=[u("question /nothink")], add_generation_prompt=True, enable_thinking=False)
    add("unknown_role", messages=[{"role": "developer", "content": "dev"}, u("q")], add_generation_prompt=True)
    add("unicode_everywhere", messages=[s("Système: réponds en 日本語 🙂"), u("Ça va? 🚀\u2028line"),
                                        a("Très bien! ✓", reasoning_content="思考中…")], add_generation_prompt=True)
    add("special_chars", messages=[u("{{ not a template }} {% raw %} <tool_call> \\n \\ \"q\"")],
        add_generation_prompt=True)
    add("long_conversation", messages=[s("sys")] + [m for i in range(12) for m in (
        u(f"question {i}"), a(f"answer {i}", reasoning_content=f"thought {i}"))], tools=[WEATHER],
        add_generation_prompt=True)
    add("assistant_last_prefill", messages=[u("q"), a("partial answer")], add_generation_prompt=False)
    add("consecutive_users", messages=[u("one"), u("two"), a("three")], add_generation_prompt=True)
    add("system_only", messages=[s("only system")], add_generation_prompt=True)
    add("tool_first", messages=[tool("orphan result"), u("q")], add_generation_prompt=True)
    return c


def tokenizer_conversations(tok):
    u = lambda t: {"role": "user", "content": t}  # noqa: E731
    a = lambda t, **kw: dict({"role": "assistant", "content": t}, **kw)  # noqa: E731
    s = lambda t: {"role": "system", "content": t}  # noqa: E731
    c = [
        ("single", {"messages": [u("Hello!")], "add_generation_prompt": True}),
        ("system_multi", {"messages": [s("  You are helpful.  "), u("hi\n"), a("hello"), u("bye")],
                          "add_generation_prompt": True}),
        ("no_gen", {"messages": [u("x"), a("y")], "add_generation_prompt": False}),
        ("unicode", {"messages": [u("Grüße 🙂 日本"), a("ok ✓")], "add_generation_prompt": True}),
    ]
    if tok == "qwen3":
        c += [
            ("tools", {"messages": [s("sys"), u("weather?")], "tools": [WEATHER, SEARCH], "add_generation_prompt": True}),
            ("tools_no_system", {"messages": [u("weather?")], "tools": [WEATHER], "add_generation_prompt": True}),
            ("tool_calls", {"messages": [u("weather?"), a("", tool_calls=[tc("get_weather", {"city": "Paris", "days": 2})]),
                                         {"role": "tool", "content": "{\"temp\": 20}"},
                                         {"role": "tool", "content": "second"}, a("20 degrees")],
                            "tools": [WEATHER], "add_generation_prompt": True}),
            ("tool_calls_string_args", {"messages": [u("w"), a("checking", tool_calls=[
                tc("get_weather", "{\"city\": \"Oslo\"}"), tc("web_search", {"query": "q"})])],
                "add_generation_prompt": True}),
            ("reasoning", {"messages": [u("q1"), a("a1", reasoning_content="r1"), u("q2"),
                                        a("a2", reasoning_content="\nr2\n")], "add_generation_prompt": False}),
            ("inline_think", {"messages": [u("q"), a("<think>\nhmm\n</think>\n\nanswer")],
                              "add_generation_prompt": True}),
            ("thinking_off", {"messages": [u("q")], "add_generation_prompt": True, "enable_thinking": False}),
            ("tool_response_user", {"messages": [u("q"), a("x"), u("<tool_response>r</tool_response>")],
                                    "add_generation_prompt": True}),
        ]
    if tok == "deepseek_v3":
        c += [
            ("tool_calls", {"messages": [s("sys A"), s("sys B"), u("weather?"),
                                         a(None, tool_calls=[tc("get_weather", "{\"city\": \"Paris\"}", id_="a"),
                                                             tc("web_search", "{\"query\": \"x\"}", id_="b")]),
                                         {"role": "tool", "content": "20C"}, {"role": "tool", "content": "found"},
                                         a("It is 20C."), u("thanks")], "add_generation_prompt": True}),
            ("no_add_gen_var", {"messages": [u("x")]}),
        ]
    return c
