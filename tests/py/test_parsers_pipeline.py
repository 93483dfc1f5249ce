"""glm-parse-reasoning | glm-parse-tools as real processes, on a pipe and over ZeroMQ.

Hand-made start/delta/end/abort messages go in; the tests check what comes
out of the second stage: reasoning, content and tool calls per choice, the
OpenAI streaming shape of tool_calls, finish_reason, tool_choice_unmet,
forwarding of unknown fields and messages, and that bad input gets an
`error` (or a log line) while the stages keep running.

GLM_BIN: folder of the binaries (default build/bin in the repo).
"""
import json
import os
import re
import subprocess
import time

import msgpack
import pytest

from conftest import BIN, run_pipeline, unpack_all, zmq_chain

RSN = str(BIN / "glm-parse-reasoning")
TCL = str(BIN / "glm-parse-tools")

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                         "metric": {"type": "boolean"}}}}},
    {"type": "function", "function": {"name": "get_current_date", "parameters": {}}},
]

pytestmark = pytest.mark.skipif(not (os.access(RSN, os.X_OK) and os.access(TCL, os.X_OK)),
                                reason=f"stage binaries not built in {BIN}")


# ----------------------------------------------------------------- messages

def start(rid, n=1, **ctx):
    return {"type": "start", "id": rid, "n": n, "prompt_tokens": 7, "context": ctx}


def delta(rid, text, index=0, **kw):
    return {"type": "delta", "id": rid, "index": index, "text": text, "token_ids": [1], **kw}


def end(rid):
    return {"type": "end", "id": rid, "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


def chunks(text, size):
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def stream(rid, text, size=3, index=0, finish="stop"):
    """The deltas of one choice: text cut in pieces, finish_reason on the last."""
    parts = chunks(text, size)
    msgs = [delta(rid, p, index) for p in parts]
    msgs[-1]["finish_reason"] = finish
    return msgs


# ----------------------------------------------------------------- transports

def run_pipe(msgs):
    """Feed msgs through both stages on a pipe; return the outputs."""
    return run_pipeline([[RSN], [TCL]], msgs)


DONE = {"type": "ping", "id": "__done__"}


def run_zmq(msgs, tmp_path):
    """The same over ZeroMQ ipc:// sockets. A final ping marks the end:
    messages keep their order through both stages."""
    with zmq_chain([[RSN], [TCL]], tmp_path, timeout_ms=20000) as (push, pull):
        for m in msgs + [DONE]:
            push.send(msgpack.packb(m))
        out = []
        while not out or out[-1] != DONE:
            out.append(msgpack.unpackb(pull.recv(), raw=False))
    return out[:-1]


@pytest.fixture(params=["pipe", "zmq"])
def run(request, tmp_path):
    """run(msgs) -> outputs, on either transport."""
    if request.param == "pipe":
        return run_pipe
    return lambda msgs: run_zmq(msgs, tmp_path)


# ----------------------------------------------------------------- results

ID_RE = re.compile(r"^chatcmpl-tool-[0-9a-f]{16}$")


def collect(out, rid):
    """Fold one request's deltas per choice, checking the OpenAI streaming shape."""
    res = {}
    for m in out:
        if m.get("id") != rid or m.get("type") != "delta":
            continue
        ch = res.setdefault(m["index"], {"reasoning": "", "content": "", "calls": [], "finish": None,
                                         "unmet": None, "deltas": 0})
        assert "finish_reason" not in m or ch["finish"] is None, "delta after finish_reason"
        ch["deltas"] += 1
        assert isinstance(m["text"], str)
        ch["content"] += m["text"]
        ch["reasoning"] += m.get("reasoning", "")
        for tc in m.get("tool_calls", []):
            i = tc["index"]
            if "id" in tc:                                   # first entry of a call
                assert i == len(ch["calls"]), "call index must count up from 0"
                assert ID_RE.match(tc["id"]) and tc["type"] == "function"
                ch["calls"].append({"id": tc["id"], "name": tc["function"]["name"], "arguments": ""})
            else:
                assert i == len(ch["calls"]) - 1 and "name" not in tc["function"]
            ch["calls"][i]["arguments"] += tc["function"].get("arguments", "")
        if "finish_reason" in m:
            ch["finish"] = m["finish_reason"]
            ch["unmet"] = m.get("tool_choice_unmet")
    for ch in res.values():
        for c in ch["calls"]:
            json.loads(c["arguments"])                       # concatenation is valid JSON
    return res


# ----------------------------------------------------------------- tests

GLM5_OUTPUT = ("The user wants the weather in Paris. I should call the tool.\n</think>\n\nLet me check."
               "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>"
               "<arg_key>days</arg_key><arg_value>3</arg_value></tool_call>")


@pytest.mark.parametrize("size", [1, 4, 17, 1000])
def test_reasoning_then_tool_call(run, size):
    msgs = [start("r1", thinking=True, prompt_ends_in_think=True, tools=TOOLS, tool_choice="auto")]
    msgs += stream("r1", GLM5_OUTPUT, size) + [end("r1")]
    out = run(msgs)
    ch = collect(out, "r1")[0]
    assert ch["reasoning"] == "The user wants the weather in Paris. I should call the tool."
    assert ch["content"] == "\n\nLet me check."
    assert [(c["name"], c["arguments"]) for c in ch["calls"]] == [("get_weather", '{"city": "Paris", "days": 3}')]
    assert ch["finish"] == "tool_calls" and ch["unmet"] is None
    types = [m["type"] for m in out]
    assert types[0] == "start" and types[-1] == "end"
    assert out[0]["context"]["tools"] == TOOLS               # start forwarded unchanged


def test_unknown_fields_and_messages_forwarded(run):
    d = delta("r1", "hi</think>there", logprobs=[{"token": "hi", "logprob": -0.5}], custom={"k": [1, 2.5]})
    d["finish_reason"] = "stop"
    d["stop_reason"] = 151336
    msgs = [start("r1", tools=TOOLS), {"type": "ping", "id": "p1"}, d,
            {"type": "mystery", "id": "r1", "payload": b"\x00\x01".decode("latin1")}, end("r1")]
    out = run(msgs)
    assert {"type": "ping", "id": "p1"} in out
    assert {"type": "mystery", "id": "r1", "payload": "\x00\x01"} in out
    dm = [m for m in out if m["type"] == "delta"][0]
    assert dm["logprobs"] == [{"token": "hi", "logprob": -0.5}] and dm["custom"] == {"k": [1, 2.5]}
    assert dm["token_ids"] == [1] and dm["stop_reason"] == 151336
    assert dm["reasoning"] == "hi" and dm["text"] == "there" and dm["finish_reason"] == "stop"
    assert out[-1] == end("r1")


def test_interleaved_requests_and_choices(run):
    a = "think A</think>Answer A"
    b = "<tool_call>get_current_date</tool_call>"
    msgs = [start("ra", n=2, thinking=True), start("rb", thinking=False, tools=TOOLS)]
    sa0, sa1, sb = stream("ra", a, 2, 0), stream("ra", "think B</think>Answer B", 3, 1), stream("rb", b, 5)
    while sa0 or sa1 or sb:                                  # interleave all three streams
        for s in (sa0, sa1, sb):
            if s:
                msgs.append(s.pop(0))
    msgs += [end("ra"), end("rb")]
    out = run(msgs)
    ra, rb = collect(out, "ra"), collect(out, "rb")
    assert (ra[0]["reasoning"], ra[0]["content"], ra[0]["finish"]) == ("think A", "Answer A", "stop")
    assert (ra[1]["reasoning"], ra[1]["content"]) == ("think B", "Answer B")
    assert rb[0]["reasoning"] == "" and rb[0]["content"] == ""
    assert [c["name"] for c in rb[0]["calls"]] == ["get_current_date"] and rb[0]["finish"] == "tool_calls"


def test_tool_choice_none_and_no_tools(run):
    """No calls are reported, and the call markup leaves the content anyway
    (vLLM 0.33). Content that is only whitespace around the markup is none,
    except under tool_choice "none" (vLLM parses nothing there)."""
    text = "Sure</think> <tool_call>get_current_date</tool_call> "
    msgs = [start("n1", tools=TOOLS, tool_choice="none")] + stream("n1", text) + [end("n1")]
    msgs += [start("n2")] + stream("n2", text) + [end("n2")]
    msgs += [start("n3")] + stream("n3", "x</think>Hi <tool_call>f<arg_key>a</arg_key><arg_value>1</arg_value>"
                                   "</tool_call> there") + [end("n3")]
    out = run(msgs)
    n1, n2, n3 = (collect(out, r)[0] for r in ("n1", "n2", "n3"))
    assert n1["content"] == "  " and n2["content"] == "" and n3["content"] == "Hi  there"
    assert all(ch["calls"] == [] and ch["finish"] == "stop" for ch in (n1, n2, n3))


def test_completions_pass_through(run):
    """/v1/completions text is not parsed (vLLM runs no parser there)."""
    text = "a</think>b<tool_call>get_current_date</tool_call>"
    out = run([start("k1", endpoint="completions", tools=TOOLS)] + stream("k1", text) + [end("k1")])
    ch = collect(out, "k1")[0]
    assert ch["content"] == text and ch["reasoning"] == "" and ch["calls"] == [] and ch["finish"] == "stop"


def test_parallel_tool_calls_false(run):
    """Only the first call is reported, as vLLM filters them."""
    calls = "<tool_call>get_current_date</tool_call><tool_call>get_weather<arg_key>city</arg_key>" \
            "<arg_value>Rome</arg_value></tool_call>"
    out = run([start("p1", tools=TOOLS, parallel_tool_calls=False)] + stream("p1", "x</think>" + calls) + [end("p1")]
              + [start("p2", tools=TOOLS)] + stream("p2", "x</think>" + calls) + [end("p2")])
    p1, p2 = collect(out, "p1")[0], collect(out, "p2")[0]
    assert [c["name"] for c in p1["calls"]] == ["get_current_date"] and p1["finish"] == "tool_calls"
    assert [c["name"] for c in p2["calls"]] == ["get_current_date", "get_weather"]


def test_tool_choice_required_and_named(run):
    call = "<tool_call>get_current_date</tool_call>"
    named = {"type": "function", "function": {"name": "get_weather"}}
    msgs = [start("q1", tools=TOOLS, tool_choice="required")] + stream("q1", "no call</think>just text") + [end("q1")]
    msgs += [start("q2", tools=TOOLS, tool_choice="required")] + stream("q2", "x</think>" + call) + [end("q2")]
    msgs += [start("q3", tools=TOOLS, tool_choice=named)] + stream("q3", "x</think>" + call) + [end("q3")]
    msgs += [start("q4", tools=TOOLS, tool_choice=named)] + stream(
        "q4", "x</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value></tool_call>") + [end("q4")]
    out = run(msgs)
    q1, q2, q3, q4 = (collect(out, r)[0] for r in ("q1", "q2", "q3", "q4"))
    assert q1["unmet"] and q1["finish"] == "stop" and q1["content"] == "just text"
    assert q2["unmet"] is None and q2["finish"] == "tool_calls"
    assert "get_weather" in q3["unmet"] and q3["finish"] == "stop"          # named: OpenAI keeps "stop"
    assert q4["unmet"] is None and q4["finish"] == "stop" and q4["calls"][0]["arguments"] == '{"city": "Rome"}'


def test_thinking_off_and_include_reasoning(run):
    msgs = [start("t1", chat_template_kwargs={"enable_thinking": False})] + stream("t1", "<think>a</think>b") + [end("t1")]
    msgs += [start("t2", include_reasoning=False)] + stream("t2", "secret</think>visible") + [end("t2")]
    out = run(msgs)
    t1, t2 = collect(out, "t1")[0], collect(out, "t2")[0]
    assert (t1["reasoning"], t1["content"]) == ("", "<think>a</think>b")
    assert (t2["reasoning"], t2["content"]) == ("", "visible")


def test_abort_and_unknown_ids(run):
    msgs = [start("a1", n=2), delta("a1", "part", 0), delta("a1", "p", 1),
            {"type": "abort", "id": "a1", "index": 1}, delta("a1", "late", 1),
            delta("a1", " two</think>c", 0, finish_reason="stop"),
            {"type": "abort", "id": "a1"}, delta("a1", "after abort", 0), end("a1"),
            delta("ghost", "nobody"), {"type": "abort", "id": "ghost"},
            start("ok"), delta("ok", "fine", finish_reason="stop"), end("ok")]
    out = run(msgs)
    a1 = collect(out, "a1")
    assert a1[0]["reasoning"] == "part two" and a1[0]["content"] == "c"
    assert a1[1]["deltas"] == 1                               # nothing for choice 1 after its abort
    assert not any(m.get("id") == "ghost" and m["type"] == "delta" for m in out)
    assert sum(1 for m in out if m["type"] == "abort") == 3   # aborts are always forwarded, known id or not
    assert not any(m["type"] == "end" and m["id"] == "a1" for m in out)   # state gone: end dropped as unknown
    assert collect(out, "ok")[0]["reasoning"] == "fine"


def test_end_releases_held_text(run):
    # the last delta has no finish_reason and ends mid-tag: end must release it
    msgs = [start("h1", tools=TOOLS), delta("h1", "thinking </thi"), end("h1")]
    msgs += [start("h2", tools=TOOLS), delta("h2", "r</think>ok <tool_call>get_current_date"), end("h2")]
    out = run(msgs)
    h1, h2 = collect(out, "h1")[0], collect(out, "h2")[0]
    assert h1["reasoning"] == "thinking </thi"
    assert h2["content"] == "ok" and [c["name"] for c in h2["calls"]] == ["get_current_date"]
    assert [m["type"] for m in out if m["id"] == "h2"][-1] == "end"


def test_bad_field_types_get_errors(run):
    msgs = [start("e1", thinking="yes"), delta("e1", "x"), end("e1"),
            start("e2", tools="not a list"), end("e2"),
            start("e3"), delta("e3", 42), end("e3"),
            start("e4"), delta("e4", "x", index=5), end("e4"),
            {"type": "start", "id": "e5", "n": "two"}, end("e5"),
            start("e6", tools=TOOLS, tool_choice={"type": "function"}), end("e6"),
            start("e7"), delta("e7", "x", finish_reason=3), end("e7"),
            {"id": "e8", "text": "no type"}, {"type": "delta", "text": "no id"},
            start("good"), delta("good", "still</think>alive", finish_reason="stop"), end("good")]
    out = run(msgs)
    errs = {m["id"]: m for m in out if m["type"] == "error"}
    for rid in ("e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"):
        assert rid in errs, rid
        assert errs[rid]["code"] == 400 and errs[rid]["err_type"] == "BadRequestError" and errs[rid]["message"]
    g = collect(out, "good")[0]
    assert (g["reasoning"], g["content"]) == ("still", "alive")


def test_malformed_msgpack_on_pipe():
    """Garbage on stdin is logged and skipped; messages written after it still work."""
    r = subprocess.Popen([RSN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t = subprocess.Popen([TCL], stdin=r.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    r.stdout.close()
    r.stdin.write(b"\xc1\xc1\xc1 garbage")                    # 0xc1 is never valid msgpack
    r.stdin.flush()
    time.sleep(0.3)
    r.stdin.write(msgpack.packb(5))                            # valid msgpack, not a map
    for m in [start("m1", tools=TOOLS)] + stream("m1", "ok</think><tool_call>get_current_date</tool_call>") + [end("m1")]:
        r.stdin.write(msgpack.packb(m))
    r.stdin.close()
    out, _ = t.communicate(timeout=30)
    rerr = r.stderr.read().decode()
    assert r.wait(timeout=10) == 0 and t.returncode == 0
    assert "skipped 3 bytes at input offset 0" in rerr and "not a map" in rerr
    ch = collect(unpack_all(out), "m1")[0]
    assert ch["reasoning"] == "ok" and ch["calls"][0]["name"] == "get_current_date"


def test_long_argument_streams_through_pipe():
    big = "line with \"quotes\" and ünïcödé\n" * 40000          # ~1.3 MB string argument
    text = ("</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>" + big +
            "</arg_value><arg_key>metric</arg_key><arg_value>True</arg_value></tool_call>")
    msgs = [start("big", tools=TOOLS)] + stream("big", text, 997) + [end("big")]
    out = run_pipe(msgs)
    ch = collect(out, "big")[0]
    (call,) = ch["calls"]
    assert json.loads(call["arguments"]) == {"city": big, "metric": True}
    assert call["arguments"] == json.dumps({"city": big, "metric": True}, ensure_ascii=False)
    pieces = sum(1 for m in out if m.get("tool_calls"))
    assert pieces > 1000                                       # streamed, not sent at the end
