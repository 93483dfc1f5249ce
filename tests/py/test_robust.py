"""Robustness of every stage as real processes (issue 8, docs/reliability.md):
no forged messages from oversized input, resynchronisation that loses
nothing valid, the nesting limit end to end, graceful stop (SIGTERM, EOF,
drain timeout), ZeroMQ output with no downstream, out-of-range integers,
derived ids.

glm-parse-reasoning stands in for "any stage" where the behaviour is the
common stage loop's (common/io.c, common/stage.c); the model-bound stages run
on glm-mkmodel's tiny model or on a GLM-shaped model from ../shared."""
import os
import signal
import subprocess
import threading
import time

import msgpack
import pytest

from conftest import binpath, pack_all, run_pipeline, run_stage, unpack_all

RSN = "glm-parse-reasoning"


class Stage:
    """One stage on a pipe: write messages or raw bytes at will, read its
    output as it comes (a thread), signal it, wait for it."""

    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = []
        self.err = b""
        self.u = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        self.te = threading.Thread(target=self._read_err, daemon=True)
        self.te.start()

    def _read(self):
        while True:
            b = self.p.stdout.read1(65536)
            if not b:
                return
            self.u.feed(b)
            self.out.extend(self.u)

    def _read_err(self):
        self.err = self.p.stderr.read()

    def write(self, data):
        self.p.stdin.write(data if isinstance(data, bytes) else pack_all(data))
        self.p.stdin.flush()

    def wait_for(self, pred, timeout=10):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if pred(self.out):
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout=30):
        if not self.p.stdin.closed:
            self.p.stdin.close()
        rc = self.p.wait(timeout=timeout)
        self.t.join(timeout)
        self.te.join(timeout)
        return rc

    def stderr(self):
        return self.err.decode(errors="replace")


def ids(out, typ=None):
    return [m["id"] for m in out if typ is None or m["type"] == typ]


def ping(i):
    return {"type": "ping", "id": i}


# ----------------------------------------------------------------- no forged messages

def packed_with_raw_string(msg, raw):
    """msg packed with the string "@RAW@" replaced by raw bytes (a msgpack str
    need not be UTF-8): a client string whose bytes are messages."""
    mark = "@" * len(raw)

    def sub(v):
        if v == "@RAW@":
            return mark
        if isinstance(v, dict):
            return {k: sub(x) for k, x in v.items()}
        return v
    b = msgpack.packb(sub(msg))
    assert b.count(mark.encode()) == 1
    return b.replace(mark.encode(), raw)


def test_oversized_message_is_skipped_whole_and_answered():
    """A message over the limit is skipped by its declared length: a message
    packed inside one of its strings is never read, and the request is
    answered with an error; the traffic behind it is untouched."""
    forged = msgpack.packb({"type": "abort", "id": "victim"}) * 400
    big = packed_with_raw_string({"type": "start", "id": "big", "n": 1, "context": {"x": "@RAW@"}}, forged)
    before = msgpack.packb(ping("before"))
    s = Stage([binpath(RSN), "--max-message-bytes", "4096"])
    s.write(before + big + msgpack.packb(ping("after")))
    assert s.close() == 0
    assert ids(s.out) == ["before", "big", "after"]
    e = s.out[1]
    assert e["type"] == "error" and e["code"] == 400 and "4096 bytes" in e["message"]
    assert "victim" not in ids(s.out)
    assert f"skipped a {len(big)}-byte message at input offset {len(before)}" in s.stderr()


def test_oversized_request_cannot_inject_into_tokenize(glm_model):
    """The issue's case: one client's string carrying another request's messages."""
    inner = msgpack.packb({"type": "request", "id": "victim", "endpoint": "completions", "body": {"prompt": "x"}})
    big = packed_with_raw_string({"type": "request", "id": "big", "endpoint": "completions",
                                  "body": {"prompt": "@RAW@"}}, inner * 3000)
    ok = msgpack.packb({"type": "request", "id": "ok", "endpoint": "completions", "body": {"prompt": "hi"}})
    s = Stage([binpath("glm-tokenize"), "--model", glm_model["dir"], "--max-message-bytes", "65536"])
    s.write(big + ok)
    assert s.close() == 0
    assert [(m["type"], m["id"]) for m in s.out] == [("error", "big"), ("generate", "ok")]


def test_oversized_over_zmq_is_answered(tmp_path):
    zmq = pytest.importorskip("zmq")
    from conftest import zmq_chain
    with zmq_chain([[binpath(RSN), "--max-message-bytes", "2048"]], tmp_path) as (push, pull):
        push.send(msgpack.packb({"type": "start", "id": "big", "context": {"x": "y" * 5000}}))
        push.send(msgpack.packb(ping("after")))
        got = [msgpack.unpackb(pull.recv(), raw=False) for _ in range(2)]
    assert [(m["type"], m["id"]) for m in got] == [("error", "big"), ("ping", "after")]


# ----------------------------------------------------------------- resynchronisation

def test_bad_bytes_cost_only_themselves():
    """Junk between messages is skipped a byte at a time: every valid message
    after it is read, and each skip is logged with its offset."""
    stream = b""
    want = []
    junk = [b"\xc1", b"\x93", b"\x83", b"\xa5", b"\x81\xa1x\x93", b"\xdc\x00\x05", b"\xc1\xc1\xc1 garbage \x00"]
    for i, j in enumerate(junk):
        good = [ping(f"p{i}a"), ping(f"p{i}b"), ping(f"p{i}c")]
        want += [m["id"] for m in good]
        stream += j + pack_all(good)
    s = Stage([binpath(RSN)])
    s.write(stream)
    assert s.close() == 0
    assert ids(s.out) == want
    assert s.stderr().count("skipped") >= len(junk)
    assert "at input offset 0 " in s.stderr()


def test_corrupt_length_does_not_swallow_later_traffic():
    """A header declaring a 2 GiB string holds the stream only for the
    partial timeout; then the reader looks again one byte after it and finds
    the messages that were written behind it."""
    s = Stage([binpath(RSN), "--partial-timeout", "0.4"])
    s.write([ping("a")])
    s.write(b"\x82\xa2id\xa1z\xa1s\xdb\x7f\xff\xff\xff")         # {"id":"z","s": <2 GiB of string>}
    s.write([ping("b"), ping("c")])
    assert s.wait_for(lambda o: ids(o) == ["a", "b", "c"], timeout=10)
    s.write([ping("d")])
    assert s.close() == 0
    assert ids(s.out) == ["a", "b", "c", "d"]
    assert "still incomplete after 400 ms" in s.stderr()


def test_truncated_message_at_eof_is_not_rescanned():
    """A writer killed mid-message: the rest of its bytes is dropped, nothing
    inside it is taken for a message."""
    inner = msgpack.packb(ping("forged"))
    cut = msgpack.packb({"type": "start", "id": "t", "context": {"s": (inner * 50).decode("latin-1")}})[:300]
    s = Stage([binpath(RSN)])
    a = pack_all([ping("a")])
    s.write(a + cut)
    assert s.close() == 0
    assert ids(s.out) == ["a"]
    assert f"input ended inside a message at offset {len(a)} (300 bytes dropped)" in s.stderr()


# ----------------------------------------------------------------- nesting

def nested(depth):
    v = 1
    for _ in range(depth):
        v = [v]
    return v


def test_nesting_limit_on_the_wire():
    """msgpack-c alone stops at 32 levels; messages may nest 136 (the request
    body 128 plus the envelope); deeper ones get an error naming the limit."""
    ok = {"type": "start", "id": "ok", "context": {"v": nested(134)}}        # map, context, 134 lists: 136 levels
    deep = {"type": "start", "id": "deep", "context": {"v": nested(135)}}
    out, err = run_stage([binpath(RSN)], [ok, deep, ping("after"), {"type": "end", "id": "ok"}])
    assert [(m["type"], m["id"]) for m in out] == [("start", "ok"), ("error", "deep"), ("ping", "after"), ("end", "ok")]
    assert "136 levels" in out[1]["message"] and out[1]["code"] == 400


def deep_schema(levels):
    """A JSON schema of `levels` nested objects (two JSON levels each)."""
    s = {"type": "string"}
    for i in range(levels):
        s = {"type": "object", "properties": {f"f{i}": s}}
    return s


def tokenize_cmd(model):
    """glm-tokenize taking tool requests."""
    return [binpath("glm-tokenize"), "--model", model, "--enable-auto-tool-choice"]


def test_deep_tool_schema_through_the_text_pipeline(glm_model, tmp_path):
    """A tool schema nesting 20 objects (deeper than msgpack-c's 32 message
    levels) gets its answer through every stage; a body past 128 levels gets
    a 400 that names the limit."""
    script = tmp_path / "s.jsonl"
    script.write_text('{"output": "<think>ok</think>done"}\n')
    tools = [{"type": "function", "function": {"name": "f", "parameters": deep_schema(20)}}]
    m = glm_model["dir"]
    req = {"type": "request", "id": "r", "endpoint": "chat",
           "body": {"messages": [{"role": "user", "content": "hi"}], "tools": tools}}
    too_deep = {"type": "request", "id": "d", "endpoint": "chat",
                "body": {"messages": [{"role": "user", "content": "hi"}], "x": nested(128)}}
    out = run_pipeline([tokenize_cmd(m), [binpath("glm-replay"), "--model", m, "--script", str(script)],
                        [binpath("glm-detok"), "--model", m], [binpath(RSN)], [binpath("glm-parse-tools")]],
                       [req, too_deep])
    by = {}
    for x in out:
        by.setdefault(x["id"], []).append(x)
    assert [x["type"] for x in by["r"]][0] == "start" and by["r"][-1]["type"] == "end"
    assert "".join(x.get("text", "") for x in by["r"] if x["type"] == "delta") == "done"
    assert [x["type"] for x in by["d"]] == ["error"] and "128 levels" in by["d"][0]["message"]


# ----------------------------------------------------------------- graceful stop

def rstart(rid):
    return {"type": "start", "id": rid, "n": 1, "prompt_tokens": 1, "context": {"thinking": True}}


def rdelta(rid, text, **kw):
    return {"type": "delta", "id": rid, "index": 0, "text": text, **kw}


def test_sigterm_finishes_in_flight_requests():
    """After SIGTERM a stage keeps reading: the live request finishes, a new
    one is refused with 503, and it exits 0 once nothing is live."""
    s = Stage([binpath(RSN)])
    s.write([rstart("a"), rdelta("a", "think")])
    assert s.wait_for(lambda o: len(o) == 2)
    s.p.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    s.write([rstart("new"), rdelta("a", "ing</think>answer", finish_reason="stop"),
             {"type": "end", "id": "a"}])
    assert s.close() == 0
    a = [m for m in s.out if m["id"] == "a"]
    assert [m["type"] for m in a] == ["start", "delta", "delta", "end"]
    assert "".join(m.get("reasoning", "") for m in a) == "thinking" and a[2]["text"] == "answer"
    new = [m for m in s.out if m["id"] == "new"]
    assert [(m["type"], m["code"]) for m in new] == [("error", 503)]


def test_drain_timeout_answers_what_cannot_finish():
    s = Stage([binpath(RSN), "--drain-timeout", "0.3"])
    s.write([rstart("a"), rdelta("a", "held</thi")])          # a partial tag is held back
    assert s.wait_for(lambda o: len(o) == 2)
    t0 = time.time()
    s.p.send_signal(signal.SIGTERM)
    assert s.p.wait(timeout=10) == 0 and time.time() - t0 < 5
    s.close()
    a = [m for m in s.out if m["id"] == "a"]
    assert [m["type"] for m in a] == ["start", "delta", "delta", "error"]
    assert a[1]["reasoning"] == "held" and a[2]["reasoning"] == "</thi"   # what was held is let out first
    assert a[3]["code"] == 503 and "drain-timeout" in a[3]["message"]


def test_eof_answers_requests_that_can_never_finish():
    out, _ = run_stage([binpath(RSN)], [rstart("a"), rdelta("a", "x"), rstart("b"), rdelta("b", "y"),
                                         rdelta("b", "z", finish_reason="stop"), {"type": "end", "id": "b"}])
    a = [m for m in out if m["id"] == "a"]
    assert a[-1]["type"] == "error" and a[-1]["code"] == 503 and "input ended" in a[-1]["message"]
    assert [m["type"] for m in out if m["id"] == "b"][-1] == "end"


@pytest.mark.parametrize("stage", ["glm-detok", "glm-parse-tools"])
def test_text_stages_drain(stage, tiny_model):
    cmd = [binpath(stage)] + (["--model", tiny_model] if stage == "glm-detok" else [])
    inp = "tokens" if stage == "glm-detok" else "delta"
    part = {"type": inp, "id": "a", "index": 0, **({"token_ids": [5]} if inp == "tokens" else {"text": "x"})}
    s = Stage(cmd + ["--drain-timeout", "0.3"])
    s.write([{"type": "start", "id": "a", "n": 1, "context": {}}, part])
    assert s.wait_for(lambda o: len(o) == 2)
    s.p.send_signal(signal.SIGTERM)
    assert s.close() == 0
    assert [m["type"] for m in s.out][-1] == "error" and s.out[-1]["code"] == 503


def test_engine_sigterm_finishes_then_times_out(tiny_model):
    """The engine finishes running requests after SIGTERM (refusing new
    ones); what is still running at --drain-timeout gets an error."""
    base = [binpath("glm-engine"), "--model", tiny_model, "--threads", "1", "--max-model-len", "256",
            "--num-gpu-blocks-override", "64"]
    gen = lambda rid, n: {"type": "generate", "id": rid, "prompt_ids": [1, 2], "sampling": {
        "temperature": 0, "max_tokens": n, "ignore_eos": True}}
    s = Stage(base)
    s.write([gen("a", 40)])
    assert s.wait_for(lambda o: any(m["type"] == "tokens" for m in o))
    s.p.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    s.write([gen("late", 5)])
    assert s.close() == 0
    assert [m["type"] for m in s.out if m["id"] == "a"][-1] == "end"
    assert [(m["type"], m.get("code")) for m in s.out if m["id"] == "late"] == [("error", 503)]
    s = Stage(base + ["--drain-timeout", "0"])
    s.write([gen("b", 250)])
    assert s.wait_for(lambda o: any(m["type"] == "tokens" for m in o))
    s.p.send_signal(signal.SIGTERM)
    assert s.p.wait(timeout=20) == 0
    s.close()
    b = [m for m in s.out if m["id"] == "b"]
    assert b[-1]["type"] == "error" and b[-1]["code"] == 503


def test_tokenize_refuses_requests_while_draining(glm_model):
    s = Stage([binpath("glm-tokenize"), "--model", glm_model["dir"]])
    s.write([{"type": "request", "id": "a", "endpoint": "completions", "body": {"prompt": "hi"}}])
    assert s.wait_for(lambda o: len(o) == 1, timeout=30)
    s.p.send_signal(signal.SIGTERM)
    time.sleep(0.1)                                           # the signal is seen before the request
    s.write([{"type": "request", "id": "b", "endpoint": "completions", "body": {"prompt": "hi"}}, ping("p")])
    assert s.close() == 0
    assert [(m["type"], m["id"]) for m in s.out] == [("generate", "a"), ("error", "b"), ("ping", "p")]


# ----------------------------------------------------------------- ZeroMQ output

def test_undelivered_output_is_counted(tmp_path):
    """No downstream: the stage lingers, then says how many messages never left."""
    ep = f"ipc://{tmp_path}/nobody"
    p = subprocess.run([binpath(RSN), "--out", ep, "--linger", "0.3"], input=pack_all([ping("1"), ping("2")]),
                       capture_output=True, timeout=30)
    assert p.returncode == 0
    assert b"2 messages not delivered: downstream " + ep.encode() + b" never connected" in p.stderr


def test_late_downstream_still_gets_the_output(tmp_path):
    zmq = pytest.importorskip("zmq")
    ep = f"ipc://{tmp_path}/late"
    p = subprocess.Popen([binpath(RSN), "--out", ep, "--linger", "10"], stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdin.write(pack_all([ping("1"), ping("2")]))
    p.stdin.close()
    time.sleep(0.5)                                            # the stage is lingering now
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    sink.setsockopt(zmq.RCVTIMEO, 10000)
    sink.bind(ep)
    got = [msgpack.unpackb(sink.recv(), raw=False)["id"] for _ in range(2)]
    assert p.wait(timeout=20) == 0 and got == ["1", "2"]
    sink.close(linger=0)
    ctx.term()


# ----------------------------------------------------------------- integers, ids

def test_out_of_range_n_is_an_error_everywhere(tiny_model, tmp_path):
    script = tmp_path / "s.jsonl"
    script.write_text('{"output_ids": [1]}\n')
    big = 2 ** 64 - 1
    g = {"type": "generate", "id": "g", "prompt_ids": [1], "n": big, "sampling": {}}
    for cmd in ([binpath("glm-replay"), "--model", tiny_model, "--script", str(script)],
                [binpath("glm-engine"), "--model", tiny_model, "--threads", "1", "--max-model-len", "64",
                 "--num-gpu-blocks-override", "16"]):
        out, _ = run_stage(cmd, [g])
        assert [(m["type"], m["code"]) for m in out] == [("error", 400)], cmd[0]
    for stage in (RSN, "glm-parse-tools"):
        out, _ = run_stage([binpath(stage)], [{"type": "start", "id": "s", "n": big}])
        assert [(m["type"], m["code"]) for m in out] == [("error", 400)]


def test_derived_ids_fit_or_the_request_is_answered(glm_model):
    rid = "r" * 250
    body = {"prompt": ["a", "b"], "max_tokens": 1}
    out, _ = run_stage([binpath("glm-tokenize"), "--model", glm_model["dir"]], [
        {"type": "request", "id": rid, "endpoint": "completions", "body": body},
        {"type": "request", "id": "r" * 255, "endpoint": "completions", "body": body}])
    assert [m["id"] for m in out[:2]] == [rid + "#0", rid + "#1"]
    assert out[2]["type"] == "error" and out[2]["id"] == "r" * 255 and "256 bytes" in out[2]["message"]


# ----------------------------------------------------------------- template work

def test_hostile_template_is_bounded_and_interruptible(glm_model, tmp_path):
    """A template's tojson bomb fails at once with a 400 (memory checked while
    the result is built); a template that would scan strings for minutes is
    cut by a second SIGTERM, answering the request, and the stage exits 0."""
    bomb = tmp_path / "bomb.jinja"
    bomb.write_text("{% set s = 'x' * 60000000 %}{{ ([s] * 1000) | tojson }}")
    req = lambda rid: {"type": "request", "id": rid, "endpoint": "chat",
                       "body": {"messages": [{"role": "user", "content": "hi"}]}}
    t0 = time.time()
    out, _ = run_stage([binpath("glm-tokenize"), "--model", glm_model["dir"], "--chat-template", str(bomb)], [req("b")])
    assert time.time() - t0 < 20
    assert out[0]["type"] == "error" and out[0]["code"] == 400 and "LimitError" in out[0]["message"]
    slow = tmp_path / "slow.jinja"
    slow.write_text("{% set s = 'a' * 4000000 %}{% for i in range(100000) %}{% for j in range(100000) %}"
                    "{% set n = s.count('b') %}{% endfor %}{% endfor %}")
    s = Stage([binpath("glm-tokenize"), "--model", glm_model["dir"], "--chat-template", str(slow)])
    s.write([req("slow")])
    time.sleep(1.0)
    s.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    t0 = time.time()
    s.p.send_signal(signal.SIGTERM)
    rc = s.close(timeout=20)
    print(f"slow template: exit {rc} {time.time() - t0:.2f} s after the second SIGTERM")
    # Uncut it would run for hours; the cut is checked between template steps
    # (each s.count over 4 MB), so a loaded 2-core CI box still answers in
    # well under 10 s (it took up to ~5 s there with other tests running).
    assert rc == 0 and time.time() - t0 < 10
    assert [(m["type"], m["id"]) for m in s.out] == [("error", "slow")] and "interrupted" in s.out[0]["message"]


# ----------------------------------------------------------------- regex work

def test_catastrophic_pretokenizer_fails_the_request_not_the_stage(glm_model, tmp_path):
    import json
    import shutil
    d = tmp_path / "m"
    shutil.copytree(glm_model["dir"], d)
    tok = json.loads((d / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(a|a)+c"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    (d / "tokenizer.json").write_text(json.dumps(tok))
    req = lambda rid, p: {"type": "request", "id": rid, "endpoint": "completions", "body": {"prompt": p}}
    t0 = time.time()
    out, _ = run_stage([binpath("glm-tokenize"), "--model", str(d)], [req("bomb", "a" * 60 + "bc"), req("ok", "hi")])
    assert time.time() - t0 < 20
    assert [(m["type"], m["id"]) for m in out] == [("error", "bomb"), ("generate", "ok")]
    assert out[0]["code"] == 400 and "pre-tokenizer" in out[0]["message"]


# ----------------------------------------------------------------- SIGKILL and restart

def test_sigkill_and_restart_of_a_middle_stage(tiny_model, tmp_path):
    """glm-detok is killed (SIGKILL) while it holds a request and started
    again on the same endpoint: the engine's queued output reaches the new
    process, new requests are served completely. The killed request's state
    is gone with the process: its remaining tokens and `end` reach a stage
    that never saw its `start` and are dropped (docs/reliability.md: the
    gateway's timeout answers it)."""
    zmq = pytest.importorskip("zmq")
    eps = [f"ipc://{tmp_path}/k{i}" for i in range(3)]
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    sink.bind(eps[2])
    sink.setsockopt(zmq.RCVTIMEO, 200)
    engine = subprocess.Popen([binpath("glm-engine"), "--model", tiny_model, "--threads", "1", "--max-model-len", "2048",
                               "--num-gpu-blocks-override", "256", "--in", eps[0], "--out", eps[1]],
                              stderr=subprocess.DEVNULL)
    detok_cmd = [binpath("glm-detok"), "--model", tiny_model, "--in", eps[1], "--out", eps[2]]
    detok = subprocess.Popen(detok_cmd, stderr=subprocess.DEVNULL)
    src = ctx.socket(zmq.PUSH)
    src.connect(eps[0])
    got = []

    def drain(until, timeout=30):
        t0 = time.time()
        while time.time() - t0 < timeout and not until():
            try:
                got.append(msgpack.unpackb(sink.recv(), raw=False))
            except zmq.Again:
                pass
        return until()
    try:
        gen = lambda rid, n: msgpack.packb({"type": "generate", "id": rid, "prompt_ids": [1, 2], "sampling": {
            "max_tokens": n, "temperature": 0, "ignore_eos": True}})
        src.send(gen("long", 2000))
        assert drain(lambda: sum(m["id"] == "long" and m["type"] == "delta" for m in got) >= 5)
        detok.kill()
        detok.wait(timeout=10)
        time.sleep(0.3)
        detok = subprocess.Popen(detok_cmd, stderr=subprocess.DEVNULL)
        src.send(gen("after", 5))
        assert drain(lambda: any(m["id"] == "after" and m["type"] == "end" for m in got))
        after = [m for m in got if m["id"] == "after"]
        assert after[0]["type"] == "start" and sum(m["type"] == "delta" for m in after) == 5
        assert not any(m["id"] == "long" and m["type"] == "end" for m in got)   # lost with the killed process
    finally:
        for p in (engine, detok):
            p.terminate()
        assert engine.wait(timeout=30) == 0 and detok.wait(timeout=30) == 0
        src.close(linger=0)
        sink.close(linger=0)
        ctx.term()
