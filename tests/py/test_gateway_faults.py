"""Faults around glm-gateway: clients that vanish, stages that die or stop
answering, the supervisor's restart notice, a graceful stop. glm-replay is
the engine, paced like one (--step-ms), logging every tokens message it
emits (--emit-log), so the tests can see where an abort stopped it."""
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from gwstack import GatewayStack, replay_engine, write_script

LONG = " ".join(f"w{i}" for i in range(300))
SCRIPT = [{"match": "long", "output": LONG}, {"output": "short answer"}]
FAST = ["--ping-interval", "0.2", "--stage-timeout", "1", "--health-timeout", "1"]


def make_stack(tiny_model, tmp_path, gateway_args=(), step_ms=20):
    script = write_script(tmp_path / "script.jsonl", SCRIPT)
    log = tmp_path / "emit.log"
    eng = replay_engine(tiny_model, script) + ["--step-ms", str(step_ms), "--emit-log", str(log)]
    return GatewayStack(tmp_path, tiny_model, eng, gateway_args=list(gateway_args)), log


def emitted(log, rid):
    """Tokens glm-replay sent for a request (the last tokens_sent logged)."""
    last = 0
    for line in log.read_text().splitlines():
        i, _, sent, _ = line.split()
        if i == rid:
            last = max(last, int(sent))
    return last


def total_tokens(gw, text):
    req = urllib.request.Request(gw.url + "/tokenize", data=json.dumps({"prompt": text}).encode())
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["count"]


def health(gw):
    try:
        with urllib.request.urlopen(gw.url + "/health", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def start_stream(gw, rid, prompt="a long story", max_tokens=1000):
    s = gw.connect()
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "stream": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\ncontent-length: %d\r\n\r\n"
              % (rid.encode(), len(body)) + body)
    return s


def read_events(s, n=None, until_done=False, timeout=10):
    """SSE `data:` payloads from a chunked response (raw, not de-chunked:
    chunk-size lines are skipped, events do not straddle our reads here)."""
    s.settimeout(timeout)
    buf, events = b"", []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = s.recv(65536)
        if not d:
            break
        buf += d
        events = [l[6:] for l in buf.split(b"\n") if l.startswith(b"data: ")]
        if n is not None and len(events) >= n:
            break
        if until_done and events and events[-1] == b"[DONE]":
            break
    return events


def test_client_disconnect_aborts_the_engine_work(tiny_model, tmp_path):
    gw, log = make_stack(tiny_model, tmp_path)
    with gw:
        total = total_tokens(gw, LONG)
        s = start_stream(gw, "d1")
        assert len(read_events(s, n=3)) >= 3
        s.close()   # mid-stream
        # non-streaming: the client gives up while the answer is generated
        s = gw.connect()
        body = json.dumps({"prompt": "a long story", "max_tokens": 1000}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: d2\r\ncontent-length: %d\r\n\r\n"
                  % len(body) + body)
        time.sleep(0.3)
        s.close()
        time.sleep(0.5)
        for rid in ("cmpl-d1", "cmpl-d2"):
            n = emitted(log, rid)
            assert 0 < n < total / 2, (rid, n, total)
            time.sleep(0.2)
            assert emitted(log, rid) == n, "the engine kept generating after the abort"
        with urllib.request.urlopen(gw.url + "/metrics") as r:
            m = r.read().decode()
        line = [l for l in m.splitlines() if 'finished_reason="abort"' in l][0]
        assert float(line.split()[-1]) >= 2
        assert health(gw) == 200


def test_stage_killed_midstream_then_restarted(tiny_model, tmp_path):
    gw, log = make_stack(tiny_model, tmp_path, FAST)
    with gw:
        client = gw.openai(timeout=20)
        s = start_stream(gw, "k1")
        assert len(read_events(s, n=2)) >= 2
        t0 = time.monotonic()
        gw.kill("detok")
        events = read_events(s, until_done=True, timeout=10)
        took = time.monotonic() - t0
        assert events[-1] == b"[DONE]"
        err = json.loads(events[-2])["error"]
        assert err["code"] == 503 and "pipeline" in err["message"]
        assert took < 3, took
        s.close()
        assert health(gw) == 503
        with pytest.raises(openai.APIStatusError) as e:
            client.completions.create(model="tiny", prompt="x")
        assert e.value.status_code == 503
        gw.restart("detok")
        deadline = time.monotonic() + 10
        while health(gw) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health(gw) == 200
        assert client.completions.create(model="tiny", prompt="x").choices[0].text == "short answer"


def test_stage_that_stops_answering(tiny_model, tmp_path):
    gw, log = make_stack(tiny_model, tmp_path, FAST)
    with gw:
        client = gw.openai(timeout=20)
        eng = gw.procs["engine"]
        result = {}

        def call():
            try:
                client.completions.create(model="tiny", prompt="a long story", max_tokens=1000)
            except openai.APIStatusError as e:
                result["status"] = e.status_code
        t = threading.Thread(target=call)
        t.start()
        time.sleep(0.3)
        os.kill(eng.pid, signal.SIGSTOP)
        try:
            t.join(timeout=5)
            assert result.get("status") == 503   # non-streaming: a 503 within the stage timeout
            assert health(gw) == 503
        finally:
            os.kill(eng.pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while health(gw) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.completions.create(model="tiny", prompt="x").choices[0].text == "short answer"


def test_supervisor_notice_fails_inflight_at_once(tiny_model, tmp_path):
    # a slow heartbeat: only the notice can explain the quick error below
    gw, log = make_stack(tiny_model, tmp_path, ["--stage-timeout", "30"])
    with gw:
        s = start_stream(gw, "n1")
        assert len(read_events(s, n=2)) >= 2
        gw.kill("engine")
        gw.restart("engine")   # back at once: the heartbeat never notices
        t0 = time.monotonic()
        os.kill(gw.procs["gateway"].pid, signal.SIGUSR1)
        events = read_events(s, until_done=True, timeout=10)
        assert events[-1] == b"[DONE]" and json.loads(events[-2])["error"]["code"] == 503
        assert time.monotonic() - t0 < 2
        s.close()
        gw.wait_healthy()
        assert gw.openai().completions.create(model="tiny", prompt="x").choices[0].text == "short answer"


def test_sigterm_lets_open_streams_finish(tiny_model, tmp_path):
    gw, log = make_stack(tiny_model, tmp_path, ["--drain-timeout", "20"], step_ms=10)
    with gw:
        s = start_stream(gw, "t1", max_tokens=40)
        assert len(read_events(s, n=1)) >= 1
        gw.procs["gateway"].send_signal(signal.SIGTERM)
        time.sleep(0.1)
        with pytest.raises(OSError):   # no longer accepting
            socket.create_connection(("127.0.0.1", gw.port), timeout=2).recv(1)
        events = read_events(s, until_done=True, timeout=10)
        assert events[-1] == b"[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert gw.procs["gateway"].wait(timeout=10) == 0
        s.close()
