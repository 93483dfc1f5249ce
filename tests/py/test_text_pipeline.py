"""The text side through real processes:

    glm-tokenize | glm-replay | glm-detok | glm-parse-reasoning | glm-parse-tools

on a shell pipe and over ZeroMQ, with scripted model outputs (glm-replay)
sent in MTP-like chunks. Checks what a client would finally see: reasoning,
content, tool calls (name once, arguments as stable prefixes), finish reasons.
"""
import json

import msgpack
import pytest

from conftest import binpath, run_pipeline, zmq_chain

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                          "metric": {"type": "boolean"}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]

SCRIPT = [
    {"match": "plain question", "output": "<think>Let me think about it.\n</think>The answer is 4."},
    {"match": "weather please", "output": "<think>Need the weather.</think>Checking.<tool_call>get_weather"
                                          "<arg_key>city</arg_key><arg_value>Zürich</arg_value>"
                                          "<arg_key>days</arg_key><arg_value>2</arg_value>"
                                          "<arg_key>metric</arg_key><arg_value>true</arg_value></tool_call>"
                                          "<tool_call>get_time</tool_call>"},
    {"match": "stop test", "output": "alpha beta GAMMA delta"},
    {"match": "unicode", "output": "<think>日本語で考える 🚀</think>答えは👨‍👩‍👧‍👦です"},
    {"match": "length", "output": "one two three four five six seven eight nine ten"},
    {"output": "default answer"},
]


def chat(rid, text, **extra):
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 200}
    body.update(extra)
    return {"type": "request", "id": rid, "endpoint": "chat", "body": body}


def stage_cmds(model, script, chunk):
    return [
        [binpath("glm-tokenize"), "--model", model, "--enable-auto-tool-choice"],
        [binpath("glm-replay"), "--model", model, "--script", script, "--chunk", str(chunk)],
        [binpath("glm-detok"), "--model", model],
        [binpath("glm-parse-reasoning"), "--reasoning-parser", "glm45"],
        [binpath("glm-parse-tools"), "--tool-call-parser", "glm47"],
    ]


def collect(msgs):
    """Fold the output stream into what a non-streaming client sees, per (id, index)."""
    res = {}
    for m in msgs:
        if m["type"] == "error":
            res[m["id"]] = {"error": m}
            continue
        if m["type"] != "delta":
            continue
        c = res.setdefault((m["id"], m.get("index", 0)),
                           {"reasoning": "", "content": "", "calls": {}, "finish": None, "names_sent": []})
        c["reasoning"] += m.get("reasoning") or ""
        c["content"] += m.get("text") or ""
        for tc in m.get("tool_calls") or []:
            call = c["calls"].setdefault(tc["index"], {"name": None, "arguments": "", "id": None})
            fn = tc.get("function") or {}
            if fn.get("name") is not None:
                assert call["name"] is None, "a tool name is sent once"
                call["name"] = fn["name"]
                call["id"] = tc.get("id")
                c["names_sent"].append(fn["name"])
            call["arguments"] += fn.get("arguments") or ""
        if m.get("finish_reason"):
            assert c["finish"] is None, "one finish per choice"
            c["finish"] = m["finish_reason"]
            c["stop_reason"] = m.get("stop_reason")
    return res


@pytest.fixture
def script(tmp_path):
    p = tmp_path / "script.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in SCRIPT))
    return str(p)


def requests():
    return [
        chat("r-plain", "plain question"),
        chat("r-tools", "weather please", tools=TOOLS),
        chat("r-stop", "stop test", stop=["GAMMA"], chat_template_kwargs={"enable_thinking": False}),
        chat("r-uni", "unicode"),
        chat("r-len", "length", max_tokens=3, chat_template_kwargs={"enable_thinking": False}),
        chat("r-n2", "plain question", n=2),
    ]


def check_results(res):
    plain = res[("r-plain", 0)]
    assert plain["reasoning"] == "Let me think about it."      # trailing whitespace of reasoning dropped
    assert plain["content"] == "The answer is 4." and plain["finish"] == "stop"
    assert res[("r-n2", 0)]["content"] == res[("r-n2", 1)]["content"] == "The answer is 4."

    tools = res[("r-tools", 0)]
    assert tools["reasoning"] == "Need the weather."
    assert tools["content"] == "Checking."
    assert tools["finish"] == "tool_calls"
    calls = [tools["calls"][i] for i in sorted(tools["calls"])]
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Zürich", "days": 2, "metric": True}
    assert calls[0]["arguments"] == '{"city": "Zürich", "days": 2, "metric": true}'
    assert calls[1]["arguments"] == "{}"
    assert all(c["id"].startswith("chatcmpl-tool-") and len(c["id"]) == len("chatcmpl-tool-") + 16 for c in calls)

    stop = res[("r-stop", 0)]
    assert stop["content"] == "alpha beta " and stop["finish"] == "stop" and stop["stop_reason"] == "GAMMA"

    uni = res[("r-uni", 0)]
    assert uni["reasoning"] == "日本語で考える 🚀" and uni["content"] == "答えは👨‍👩‍👧‍👦です"

    ln = res[("r-len", 0)]
    assert ln["finish"] == "length" and ln["reasoning"] == ""
    assert ln["content"] and "one two three four".startswith(ln["content"].strip()[:3])


@pytest.mark.parametrize("chunk", [1, 3, 6])
def test_text_pipeline_on_pipes(glm_model, script, chunk):
    out = run_pipeline(stage_cmds(glm_model["dir"], script, chunk), requests())
    res = collect(out)
    check_results(res)
    # every request's start and end made it through, in order
    for rid in ["r-plain", "r-tools", "r-stop", "r-uni", "r-len", "r-n2"]:
        kinds = [m["type"] for m in out if m["id"] == rid]
        assert kinds[0] == "start" and kinds[-1] == "end", (rid, kinds)


def test_text_pipeline_over_zeromq(glm_model, script, tmp_path):
    with zmq_chain(stage_cmds(glm_model["dir"], script, 2), tmp_path) as (src, sink):
        for m in requests():
            src.send(msgpack.packb(m))
        out = []
        ends = set()
        while len(ends) < len(requests()):
            m = msgpack.unpackb(sink.recv(), raw=False)
            out.append(m)
            if m["type"] in ("end", "error"):
                ends.add(m["id"])
        check_results(collect(out))


def test_abort_and_unknown_ids_pass_quietly(glm_model, script):
    msgs = [chat("a1", "plain question"), {"type": "abort", "id": "a1"},
            {"type": "tokens", "id": "ghost", "index": 0, "token_ids": [1, 2]},
            {"type": "ping", "id": "p1"}, chat("a2", "plain question")]
    # the abort reaches replay after it already answered a1 (replay answers at once);
    # downstream stages then drop a1's state; a2 must be untouched
    out = run_pipeline(stage_cmds(glm_model["dir"], script, 2), msgs)
    assert any(m["type"] == "ping" and m["id"] == "p1" for m in out)
    assert not any(m["id"] == "ghost" for m in out)
    assert collect(out)[("a2", 0)]["content"] == "The answer is 4."
