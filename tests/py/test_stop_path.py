"""A stop string found in glm-detok ends the engine's work on that choice.

The path (docs/protocol.md, `abort`): glm-detok finishes the choice with
finish_reason "stop"; whoever reads the output sends abort{id, index} down
the same path as the request, behind it; the engine drops the choice at once
and sends `end`. In a server glm-gateway does that (checked end to end by
test_gateway_engine.py::test_stop_string_aborts_engine_work); here the test
plays the gateway's part, so the stages' side of the contract is checked on
its own. Runs the real glm-tokenize, glm-engine and glm-detok over ZeroMQ on
the tiny default model.
"""
import msgpack

from conftest import binpath, run_pipeline, zmq_chain

ENGINE_ARGS = ["--kv-cache-memory-bytes", "64M", "--threads", "1"]


def stage_cmds(model):
    return [[binpath("glm-tokenize"), "--model", model],
            [binpath("glm-engine"), "--model", model, *ENGINE_ARGS],
            [binpath("glm-detok"), "--model", model]]


def greedy_text(model, n):
    req = {"type": "request", "id": "probe", "endpoint": "completions",
           "body": {"prompt": "Hello there", "max_tokens": n, "temperature": 0, "ignore_eos": True}}
    out = run_pipeline(stage_cmds(model), [req], timeout=120)
    return "".join(m.get("text", "") for m in out if m["type"] == "delta")


def test_stop_string_aborts_engine_work(tiny_model, tmp_path):
    text = greedy_text(tiny_model, 40)
    # a stop string that first occurs some way into the greedy output
    stop = None
    for p in range(8, len(text) - 3):
        cand = text[p:p + 3]
        if "\ufffd" not in cand and text.find(cand) == p:
            stop = cand
            break
    assert stop, text
    max_tokens = 4000   # the tiny model's context is 4096
    with zmq_chain(stage_cmds(tiny_model), tmp_path, timeout_ms=60000) as (src, sink):
        src.send(msgpack.packb({"type": "request", "id": "s1", "endpoint": "completions",
                                "body": {"prompt": "Hello there", "max_tokens": max_tokens, "temperature": 0,
                                         "ignore_eos": True, "stop": [stop]}}))
        got, end, aborted = "", None, False
        while end is None:
            m = msgpack.unpackb(sink.recv(), raw=False)
            if m["type"] == "delta" and m["id"] == "s1":
                got += m.get("text", "")
                if m.get("finish_reason") == "stop" and not aborted:
                    assert m["stop_reason"] == stop
                    # the gateway's part: cancel the choice upstream, in band
                    src.send(msgpack.packb({"type": "abort", "id": "s1", "index": m.get("index", 0)}))
                    aborted = True
            elif m["type"] == "end":
                end = m
            assert m["type"] != "error", m
    assert aborted and got == text[:text.find(stop)]
    # with ignore_eos only max_tokens or an abort ends the choice: the engine
    # ended it early, when the abort reached it (how early depends on timing)
    assert end["usage"]["completion_tokens"] < max_tokens, end
