#!/usr/bin/env python3
"""Make tests/data/requests/anthropic_goldens.json: the prompt vLLM 0.33
renders for Anthropic Messages requests (POST /v1/messages and
/v1/messages/count_tokens) and for Responses requests (POST /v1/responses),
for three chat templates.

Run by hand with the vLLM reference environment (never in CI):

    make && VLLM_TARGET_DEVICE=cpu /work/vref-venv/bin/python tests/conformance/gen_agent_goldens.py

vLLM's own code does the work, as in gen_request_goldens.py (whose render
server and model directories this reuses): pydantic validates the body as
AnthropicMessagesRequest (or AnthropicCountTokensRequest),
AnthropicServingMessages.to_chat_completion_request converts it (with
merge_inline_system from its own template probe and the disabled-thinking
effort from its own probe, both run on the same render server), and the
converted ChatCompletionRequest is rendered by the render route. Responses
bodies go to the render server's own /v1/responses/render route (vLLM's
ResponsesRequest validation, construct_input_messages, construct_tool_dicts,
build_chat_params, the same renderer). The test
(tests/py/test_agent_api_goldens.py) converts the same bodies with
`glm-gateway --convert` and renders them with glm-tokenize.

Output: {"vllm", "templates", "cases": [{"name", "kind": "messages" |
"count" | "responses", "body", "results": {template: {"prompt", "ids"} | {"refused": msg}}}]}.
"""
import json
import os
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "tests" / "data" / "requests" / "anthropic_goldens.json"
os.environ.setdefault("GLM_SHARED", str((ROOT.parent / "shared").resolve()))
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "py"))

import gen_request_goldens as base  # noqa: E402

M = base.SERVED
TOOLS = [
    {"name": "get_weather", "description": "Current weather for a city.",
     "input_schema": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                       "days": {"type": "integer"}}, "required": ["city"]}},
    {"name": "Bash", "description": "Run a shell command.",
     "input_schema": {"type": "object", "properties": {"command": {"type": "string"},
                                                       "timeout": {"type": "number"}},
                      "required": ["command"], "additionalProperties": False,
                      "$schema": "http://json-schema.org/draft-07/schema#"}},
]


def u(text):
    return {"role": "user", "content": text}


def call_turn(cid="toolu_01", name="get_weather", inp=None, text=None, thinking=None):
    content = []
    if thinking is not None:
        content.append({"type": "thinking", "thinking": thinking, "signature": "c2lnbmF0dXJl"})
    if text is not None:
        content.append({"type": "text", "text": text})
    content.append({"type": "tool_use", "id": cid, "name": name, "input": inp if inp is not None else {"city": "Paris"}})
    return {"role": "assistant", "content": content}


def bodies():
    b = lambda **kw: {"model": M, "max_tokens": 1024, **kw}  # noqa: E731
    yield "text", "messages", b(messages=[u("Hello there")])
    yield "system_string", "messages", b(system="You are terse.", messages=[u("Hi")])
    yield "system_blocks_billing", "messages", b(system=[
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0.14; cch=abc;"},
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "\nBe concise."}], messages=[u("hi")])
    yield "system_empty", "messages", b(system="", messages=[u("Hi")])
    yield "multi_turn", "messages", b(messages=[u("Hi"), {"role": "assistant", "content": "Hello! How can I help?"},
                                                u("Tell me a joke.")])
    yield "user_blocks", "messages", b(messages=[{"role": "user", "content": [
        {"type": "text", "text": "First part."}, {"type": "text", "text": "Second part."}]}])
    yield "user_one_block", "messages", b(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Only part.", "cache_control": {"type": "ephemeral"}}]}])
    yield "empty_text_block", "messages", b(messages=[{"role": "user", "content": [
        {"type": "text", "text": ""}, {"type": "text", "text": "Real text."}]}])
    yield "thinking_history", "messages", b(messages=[
        u("What is 2+2?"),
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "Simple sum.", "signature": "x"},
                                          {"type": "text", "text": "4."}]},
        u("And 3+3?")])
    yield "redacted_thinking", "messages", b(messages=[
        u("Q1"), {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
                                                   {"type": "text", "text": "A1"}]}, u("Q2")])
    yield "tool_round_trip", "messages", b(tools=TOOLS, messages=[
        u("Weather in Paris?"), call_turn(thinking="Need the tool.", text="Let me check."),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny, 22C"}]}])
    yield "tool_result_blocks_error", "messages", b(tools=TOOLS, messages=[
        u("Weather in Paris?"), call_turn(),
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "is_error": True,
             "content": [{"type": "text", "text": "Error: timeout"}, {"type": "text", "text": "retry later"}]},
            {"type": "text", "text": "Please try again."}]}])
    yield "parallel_tool_results", "messages", b(tools=TOOLS, messages=[
        u("Weather in Paris and Rome?"),
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome", "days": 2}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": [{"type": "text", "text": "rain"}]}]}])
    yield "tool_input_types", "messages", b(tools=TOOLS, messages=[
        u("Run it"), call_turn(name="Bash", inp={"command": "ls -la ~/caf\u00e9", "timeout": 30.0, "n": 12345678901234567890,
                                                  "nested": {"a": [1, 2.5, None, True], "s": "x\"y"}}),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "file.txt"}]}])
    yield "tool_input_empty", "messages", b(tools=TOOLS, messages=[
        u("go"), call_turn(inp={}),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": ""}]}])
    yield "tools_auto", "messages", b(tools=TOOLS, tool_choice={"type": "auto"}, messages=[u("Weather?")])
    yield "tools_any", "messages", b(tools=TOOLS, tool_choice={"type": "any", "disable_parallel_tool_use": True},
                                     messages=[u("Weather?")])
    yield "tools_named", "messages", b(tools=TOOLS, tool_choice={"type": "tool", "name": "Bash"}, messages=[u("ls")])
    yield "tools_none", "messages", b(tools=TOOLS, tool_choice={"type": "none"}, messages=[u("Just talk.")])
    yield "thinking_disabled", "messages", b(thinking={"type": "disabled"}, messages=[u("Quick answer")])
    yield "thinking_enabled", "messages", b(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
                                            messages=[u("Think hard")])
    yield "thinking_adaptive_effort", "messages", b(thinking={"type": "adaptive"}, output_config={"effort": "high"},
                                                    messages=[u("Think")])
    yield "effort_low", "messages", b(output_config={"effort": "low"}, messages=[u("Think")])
    yield "disabled_beats_effort", "messages", b(output_config={"effort": "max"}, thinking={"type": "disabled"},
                                                 messages=[u("No thinking")])
    yield "inline_system", "messages", b(messages=[{"role": "system", "content": "Inline rules."}, u("Hi"),
                                                   {"role": "system", "content": [{"type": "text", "text": "More."}]},
                                                   u("Again")])
    yield "inline_system_billing", "messages", b(messages=[
        {"role": "system", "content": "x-anthropic-billing-header: x"}, u("Hi")])
    yield "kwargs", "messages", b(chat_template_kwargs={"enable_thinking": False}, messages=[u("Hi")])
    yield "prefill", "messages", b(messages=[u("Write JSON"), {"role": "assistant", "content": "{"}])
    yield "sampling_fields", "messages", b(messages=[u("Hi")], stop_sequences=["END"], temperature=0.5, top_p=0.9,
                                           top_k=40, metadata={"user_id": "u-1"}, stream=True)
    yield "claude_code_like", "messages", b(max_tokens=32000, system=[
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0.14"},
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        tools=TOOLS, metadata={"user_id": "user_abc_account__session_1"}, stream=True,
        thinking={"type": "enabled", "budget_tokens": 31999},
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>Context.</system-reminder>"},
            {"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]}])
    deferred = [{**TOOLS[0], "defer_loading": True}, TOOLS[1]]
    grep = {"name": "Grep", "description": "Search files.",
            "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}}}}
    yield "tool_changes", "messages", b(tools=deferred, messages=[
        {"role": "system", "content": [
            {"type": "text", "text": "Tools changed."},
            {"type": "tool_addition", "tool": {"type": "tool_reference", "name": "get_weather"}},
            {"type": "tool_removal", "tool": {"type": "tool_reference", "name": "Bash"}},
            {"type": "tool_addition", "tool": {"type": "tool_definition", "definition": grep}}]},
        u("find it")])
    yield "tool_changes_readd", "messages", b(tools=deferred, messages=[
        {"role": "system", "content": [{"type": "tool_removal", "tool": {"type": "tool_reference", "name": "Bash"}}]},
        u("x"),
        {"role": "system", "content": [{"type": "tool_addition", "tool": {"type": "tool_reference", "name": "Bash"}}]},
        u("y")])
    yield "tools_deferred", "messages", b(tools=deferred, messages=[u("x")])
    yield "tool_result_reference", "messages", b(tools=deferred, messages=[
        u("find tools"), call_turn(name="Bash", inp={"command": "ls"}),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": [
            {"type": "text", "text": "found"}, {"type": "tool_reference", "tool_name": "get_weather"}]}]}])
    yield "tool_result_image", "messages", b(messages=[
        u("look"), call_turn(),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]}])
    yield "bad_tool_change_in_user", "messages", b(tools=TOOLS, messages=[{"role": "user", "content": [
        {"type": "tool_addition", "tool": {"type": "tool_reference", "name": "Bash"}}]}])
    yield "bad_tool_change_unknown", "messages", b(tools=TOOLS, messages=[{"role": "system", "content": [
        {"type": "tool_removal", "tool": {"type": "tool_reference", "name": "Nope"}}]}, u("x")])
    yield "bad_tool_removal_definition", "messages", b(tools=TOOLS, messages=[{"role": "system", "content": [
        {"type": "tool_removal", "tool": {"type": "tool_definition", "definition": grep}}]}, u("x")])
    # count_tokens bodies (no max_tokens)
    yield "count_text", "count", {"model": M, "messages": [u("Hello there")]}
    yield "count_tools", "count", {"model": M, "system": "Sys", "tools": TOOLS, "messages": [
        u("Weather in Paris?"), call_turn(thinking="t"),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}]}]}
    yield "count_thinking_disabled", "count", {"model": M, "thinking": {"type": "disabled"}, "messages": [u("x")]}
    # refusals
    yield "bad_no_max_tokens", "messages", {"model": M, "messages": [u("Hi")]}
    yield "bad_max_tokens_zero", "messages", b(max_tokens=0, messages=[u("Hi")])
    yield "bad_role", "messages", b(messages=[{"role": "tool", "content": "x"}])
    yield "bad_block_type", "messages", b(messages=[{"role": "user", "content": [{"type": "video", "text": "x"}]}])
    yield "bad_budget_small", "messages", b(thinking={"type": "enabled", "budget_tokens": 100}, messages=[u("x")])
    yield "bad_budget_over_max", "messages", b(max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 4000},
                                               messages=[u("x")])
    yield "bad_tool_choice_no_name", "messages", b(tools=TOOLS, tool_choice={"type": "tool"}, messages=[u("x")])
    yield "bad_tool_no_schema", "messages", b(tools=[{"name": "f"}], messages=[u("x")])


def response_bodies():
    b = lambda **kw: {"model": M, **kw}  # noqa: E731
    rtools = [{"type": "function", "name": t["name"], "description": t["description"], "parameters": t["input_schema"]}
              for t in TOOLS]
    call = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    yield "r_string", "responses", b(input="Hello there")
    yield "r_instructions", "responses", b(instructions="You are terse.", input="Hi")
    yield "r_messages", "responses", b(input=[{"role": "user", "content": "Hi"},
                                              {"role": "assistant", "content": "Hello!"},
                                              {"role": "user", "content": [{"type": "input_text", "text": "Joke?"}]}])
    yield "r_developer", "responses", b(input=[{"role": "developer", "content": "Rules."}, {"role": "user", "content": "x"}])
    yield "r_typed_messages", "responses", b(input=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Q"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "A", "annotations": []}]},
        {"type": "message", "role": "user", "content": "Q2"}])
    yield "r_tools", "responses", b(input="Weather in Paris?", tools=rtools)
    yield "r_tool_choice_required", "responses", b(input="Weather?", tools=rtools, tool_choice="required")
    yield "r_tool_choice_named", "responses", b(input="ls", tools=rtools, tool_choice={"type": "function", "name": "Bash"})
    yield "r_tool_choice_none", "responses", b(input="talk", tools=rtools, tool_choice="none")
    yield "r_round_trip", "responses", b(tools=rtools, input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Need it."}]},
        call, {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 22C"}])
    yield "r_parallel_calls", "responses", b(tools=rtools, input=[
        {"role": "user", "content": "Paris and Rome?"}, call,
        {**call, "call_id": "call_2", "arguments": '{"city": "Rome", "days": 2}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": "rain"},
        {"type": "message", "role": "assistant", "id": "msg_2", "status": "completed",
         "content": [{"type": "output_text", "text": "Sunny and rain.", "annotations": []}]},
        {"role": "user", "content": "Thanks"}])
    yield "r_reasoning_summary", "responses", b(input=[
        {"role": "user", "content": "Q"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "sum"}]},
        {"type": "message", "role": "assistant", "id": "m", "status": "completed",
         "content": [{"type": "output_text", "text": "A", "annotations": []}]},
        {"role": "user", "content": "Q2"}])
    yield "r_effort_none", "responses", b(input="Quick", reasoning={"effort": "none"})
    yield "r_effort_high", "responses", b(input="Think", reasoning={"effort": "high"})
    yield "r_kwargs", "responses", b(input="Hi", chat_template_kwargs={"enable_thinking": False},
                                     reasoning={"effort": "low"})
    yield "r_partial", "responses", b(input=[{"role": "user", "content": "Write JSON"},
                                             {"type": "message", "role": "assistant", "id": "m", "status": "in_progress",
                                              "content": [{"type": "output_text", "text": "{", "annotations": []}]}])
    yield "r_sampling", "responses", b(input="Hi", max_output_tokens=100, temperature=0.3, top_p=0.5, stream=True,
                                       store=True, metadata={"k": "v"}, parallel_tool_calls=False)
    yield "r_bad_item", "responses", b(input=[{"type": "mystery"}])
    yield "r_bad_encrypted", "responses", b(input=[{"role": "user", "content": "x"},
                                                   {"type": "reasoning", "id": "rs", "summary": [],
                                                    "encrypted_content": "abc"}])


def main():
    import vllm
    import transformers
    from starlette.testclient import TestClient
    from vllm.entrypoints.anthropic.protocol import AnthropicCountTokensRequest, AnthropicMessagesRequest
    from vllm.entrypoints.anthropic.serving import AnthropicServingMessages

    rendered = base.record_renders()

    cases = [{"name": n, "kind": k, "body": b, "results": {}} for n, k, b in (*bodies(), *response_bodies())]
    assert len({c["name"] for c in cases}) == len(cases)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = base.model_dirs(tmp)
        for tname, d in dirs.items():
            client = TestClient(base.make_app(d), raise_server_exceptions=False)

            def render(chat_body):
                rendered.clear()
                r = client.post("/v1/chat/completions/render", content=chat_body.encode(),
                                headers={"content-type": "application/json"})
                return r, (rendered[-1] if rendered else None)

            # vLLM's probes: merge_inline_system from the template text,
            # the disabled-thinking effort from renders of "Hi"
            template = (pathlib.Path(d) / "chat_template.jinja")
            ttext = template.read_text() if template.exists() else \
                json.loads((pathlib.Path(d) / "tokenizer_config.json").read_text()).get("chat_template")
            merge = AnthropicServingMessages._detect_merge_inline_system(ttext)
            probe = {}
            for e in ("none", "low", "medium", "high", "xhigh", "max"):
                r, _ = render(json.dumps({"model": M, "messages": [u("Hi")], "reasoning_effort": e}))
                probe[e] = r.json().get("token_ids") if r.status_code == 200 else None
            disabled = "low" if probe["none"] is None or any(probe[e] == probe["none"] for e in probe if e != "none") \
                else "none"
            print(f"{tname}: merge_inline_system={merge} disabled_thinking_effort={disabled}", file=sys.stderr)
            for c in cases:
                if c["kind"] == "responses":
                    rendered.clear()
                    r = client.post("/v1/responses/render", content=json.dumps(c["body"]).encode(),
                                    headers={"content-type": "application/json"})
                    if r.status_code == 200:
                        c["results"][tname] = {"prompt": rendered[-1], "ids": r.json()["token_ids"]}
                    else:
                        c["results"][tname] = {"refused": r.json()["error"]["message"][:300]}
                    print(f"{tname:8} {c['name']:32} {r.status_code}", file=sys.stderr)
                    continue
                cls = AnthropicCountTokensRequest if c["kind"] == "count" else AnthropicMessagesRequest
                try:
                    req = cls.model_validate(c["body"])
                    chat = AnthropicServingMessages.to_chat_completion_request(
                        req, merge_inline_system=merge,
                        disabled_thinking_effort=disabled if req.thinking and req.thinking.type == "disabled"
                        else "none")
                except Exception as ex:   # pydantic's refusal: a 400 at vLLM's route
                    c["results"][tname] = {"refused": str(ex).splitlines()[0]}
                    continue
                r, prompt = render(chat.model_dump_json(exclude_unset=True))
                if r.status_code == 200:
                    c["results"][tname] = {"prompt": prompt, "ids": r.json()["token_ids"]}
                else:
                    c["results"][tname] = {"refused": r.json()["error"]["message"][:300]}
                print(f"{tname:8} {c['name']:32} {r.status_code}", file=sys.stderr)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    head = {"vllm": vllm.__version__, "transformers": transformers.__version__, "templates": list(dirs)}
    lines = ",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
    OUT.write_text(json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [\n' + lines + "\n]}\n")
    print(f"{len(cases)} bodies x {len(dirs)} templates -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
