"""glm-serve through real processes: supervision (READY over its notify
sockets, a SIGKILLed stage restarted with back-off and logged, SIGTERM/SIGINT
stopping the stages head first with exit 0, READY and WATCHDOG deadlines),
refused flags named by the stage that owns them, bad command lines, the
commands it would run (--print-commands), and the tool_choice rule of
--enable-auto-tool-choice end to end.

glm-gateway is replaced by a stand-in (serve_standin.py) that only speaks the
supervisor protocol; the test plays the gateway's part itself on the ipc://
endpoints of the runtime directory (--runtime-dir), so these tests run with
or without a gateway built."""
import calendar
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import pytest

from conftest import binpath

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = f"{sys.executable} {os.path.join(HERE, 'serve_standin.py')}"
ORDER = ["gateway", "tokenize", "engine", "detok", "parse-reasoning", "parse-tools"]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    p = tmp_path_factory.mktemp("serve") / "script.jsonl"
    p.write_text(json.dumps({"match": "weather", "output": "<think>look it up</think><tool_call>get_weather"
                             "<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>"}) + "\n"
                 + json.dumps({"output": "<think>hmm</think>Paris."}) + "\n")
    return str(p)


class Serve:
    """glm-serve in the background; stderr lines collected as they come."""

    def __init__(self, model, *args, gateway=STANDIN, env=None):
        self.rundir = tempfile.mkdtemp(prefix="gs", dir="/tmp")   # short: unix socket paths
        os.rmdir(self.rundir)   # glm-serve makes it, and removes it when done
        cmd = [binpath("glm-serve"), model, "--runtime-dir", self.rundir, "--port", "18999"]
        if gateway:
            cmd += ["--stage", f"gateway={gateway}"]
        cmd += list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines, self.out = [], []
        self.lock = threading.Lock()
        self.t = [threading.Thread(target=self._read, args=(self.proc.stderr, self.lines), daemon=True),
                  threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True)]
        for t in self.t:
            t.start()
        self.zctx = None

    def _read(self, f, into):
        for line in f:
            with self.lock:
                into.append(line.rstrip("\n"))

    def log(self):
        with self.lock:
            return list(self.lines)

    def wait_for(self, pattern, timeout=30, start=0, where=None):
        """The first match of pattern in the log lines from index start on."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                src = list(self.lines if where is None else where)
            for i in range(start, len(src)):
                m = rx.search(src[i])
                if m:
                    return i, m
            if self.proc.poll() is not None and time.time() > end - timeout + 1:
                time.sleep(0.2)   # let the reader threads drain, then one last look
                with self.lock:
                    src = list(self.lines if where is None else where)
                for i in range(start, len(src)):
                    if rx.search(src[i]):
                        return i, rx.search(src[i])
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r}; log:\n" + "\n".join(self.log()))

    def ready(self, timeout=60):
        _, m = self.wait_for(r"^glm-serve: ready at (\S+)", timeout, where=self.out)
        return m.group(1)

    def pid(self, stage, start=0):
        _, m = self.wait_for(rf"stage {stage} started \(pid (\d+)\)", start=start)
        return int(m.group(1))

    def connect(self):
        """Play the gateway: PULL on its input, PUSH to glm-tokenize."""
        import zmq
        self.zctx = zmq.Context()
        self.pull = self.zctx.socket(zmq.PULL)
        self.pull.bind(f"ipc://{self.rundir}/gateway.in")
        self.pull.setsockopt(zmq.RCVTIMEO, 20000)
        self.push = self.zctx.socket(zmq.PUSH)
        self.push.connect(f"ipc://{self.rundir}/tokenize.in")

    def chat(self, rid, text, **body):
        """Send a chat request; return its messages up to end/error."""
        body = {"messages": [{"role": "user", "content": text}], **body}
        self.push.send(msgpack.packb({"type": "request", "id": rid, "endpoint": "chat", "body": body}))
        out = []
        while True:
            m = msgpack.unpackb(self.pull.recv(), raw=False)
            assert m["id"] == rid, m
            out.append(m)
            if m["type"] in ("end", "error"):
                return out

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signal glm-serve (sig None: it was signalled already; a second
        signal would kill every stage at once) and wait for its exit status."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        for t in self.t:
            t.join(timeout=5)
        if self.zctx:
            self.pull.close(linger=0)
            self.push.close(linger=0)
            self.zctx.term()
            self.zctx = None
        return rc

    def close(self):
        """After a failed test: stop glm-serve (it stops its stages), kill it
        only if it hangs, and remove what it could not."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()   # its stages get SIGTERM through PR_SET_PDEATHSIG
                self.proc.wait(timeout=10)
        if self.zctx:
            self.stop(sig=None)
        shutil.rmtree(self.rundir, ignore_errors=True)


@pytest.fixture
def serve():
    made = []

    def start(*a, **kw):
        s = Serve(*a, **kw)
        made.append(s)
        return s
    yield start
    for s in made:
        s.close()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def text_of(msgs):
    d = [m for m in msgs if m["type"] == "delta"]
    return "".join(m.get("text", "") for m in d), "".join(m.get("reasoning", "") or "" for m in d)


# ================================================================ supervision

def test_ready_restart_with_backoff_and_ordered_stop(serve, tiny_model, script):
    s = serve(tiny_model, "--reasoning-parser", "glm45", "--stage", f"engine=glm-replay --script {script}",
              "--restart-delay", "0.3", "--restart-delay-max", "0.6")
    url = s.ready()
    assert url == "http://127.0.0.1:18999/v1"
    assert len(s.out) == 1, s.out   # one line on stdout, the stages' output goes to stderr
    pids = {st: s.pid(st) for st in ORDER}
    for st in ORDER:
        s.wait_for(rf"stage {st} ready \(pid {pids[st]}\)")
    s.connect()
    assert text_of(s.chat("r1", "capital?")) == ("Paris.", "hmm")

    # SIGKILL the engine three times: restarted after 0.3, 0.6, 0.6 s (the cap), each logged
    old = pids["engine"]
    for k, delay in ((1, "0.3"), (2, "0.6"), (3, "0.6")):
        mark = len(s.log())
        t0 = time.time()
        os.kill(old, signal.SIGKILL)
        s.wait_for(rf"stage engine \(pid {old}\) killed by signal 9 \(Killed\); restart {k} in {delay} s", start=mark)
        # the gateway is told at once, so it fails what was in flight instead of waiting for it
        s.wait_for(r"serve_standin: SIGUSR1 \(a stage restarted\)", start=mark)
        new = s.pid("engine", start=mark)
        s.wait_for(rf"stage engine ready again \(pid {new}, restart {k}\)", start=mark)
        assert time.time() - t0 >= float(delay) - 0.05
        assert new != old and not alive(old)
        old = new
    assert text_of(s.chat("r2", "again")) == ("Paris.", "hmm")   # serving again after the restarts
    for st in ORDER:   # nothing else was touched
        if st != "engine":
            assert alive(pids[st]), st
    pids["engine"] = old

    # SIGTERM: every stage stopped, head first, each one only after the previous one exited
    mark = len(s.log())
    assert s.stop() == 0, "\n".join(s.log())
    log = s.log()[mark:]
    stops = [re.search(r"stopping stage (\S+)", ln).group(1) for ln in log if "stopping stage" in ln]
    assert stops == ORDER
    for st in ORDER:
        i_stop = next(i for i, ln in enumerate(log) if f"stopping stage {st} " in ln)
        i_done = next(i for i, ln in enumerate(log) if f"stage {st} (pid {pids[st]}) stopped: exited with status 0" in ln)
        assert i_stop < i_done
        if st != ORDER[-1]:
            nxt = ORDER[ORDER.index(st) + 1]
            assert i_done < next(i for i, ln in enumerate(log) if f"stopping stage {nxt} " in ln)
        assert not alive(pids[st])
    assert not os.path.exists(s.rundir)   # glm-serve made it, glm-serve removed it


def test_sigterm_drains_work_in_flight(serve, tiny_model):
    """The real engine is generating when glm-serve gets SIGTERM: the stages
    upstream stop first, the engine finishes the request, and every token
    still reaches the end of the pipeline before the stages after it stop.
    (A forwarder stands in for glm-detok: the tiny model's random weights
    sample ids of its padded vocabulary that no tokenizer entry decodes.)"""
    s = serve(tiny_model, "--max-model-len", "4096", "--kv-cache-memory-bytes", "64M",
              "--stage", "engine=glm-engine --threads 1", "--stage", f"detok={STANDIN} --forward")
    s.ready(timeout=120)
    s.connect()
    n = 1500
    body = {"messages": [{"role": "user", "content": "count"}], "max_tokens": n, "ignore_eos": True, "temperature": 0}
    s.push.send(msgpack.packb({"type": "request", "id": "d1", "endpoint": "chat", "body": body}))
    first = msgpack.unpackb(s.pull.recv(), raw=False)
    assert first["type"] == "start", first
    s.proc.send_signal(signal.SIGTERM)
    msgs = [first]
    while msgs[-1]["type"] not in ("end", "error"):
        msgs.append(msgpack.unpackb(s.pull.recv(), raw=False))
    t_end = time.time()
    assert msgs[-1]["type"] == "end" and msgs[-1]["usage"]["completion_tokens"] == n, msgs[-1]
    assert sum(len(m["token_ids"]) for m in msgs if m["type"] == "tokens") == n
    assert s.stop(sig=None) == 0, "\n".join(s.log())
    assert any("glm-engine info done: " in ln and f"{n} generated" in ln for ln in s.log())
    # the engine was told to stop while the request still ran
    _, m = s.wait_for(r"^(\S+) glm-serve info stopping stage engine")
    t_stop = calendar.timegm(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + float(m.group(1)[19:-1])   # log time is UTC
    assert t_stop < t_end, (t_stop, t_end)


def test_sigint_stops_and_reasoning_stage_is_optional(serve, tiny_model, script):
    s = serve(tiny_model, "--stage", f"engine=glm-replay --script {script}")
    assert "(model" in s.out[0] if s.ready() else False
    assert "5 stages" in s.out[0]
    s.connect()
    # no --reasoning-parser: as in vLLM the <think> text stays in the content
    assert text_of(s.chat("r1", "capital?")) == ("<think>hmm</think>Paris.", "")
    assert s.stop(signal.SIGINT) == 0
    assert not any("parse-reasoning" in ln for ln in s.log())


def test_stage_failing_at_startup_stops_everything(serve, tiny_model):
    s = serve(tiny_model, "--stage", f"detok={STANDIN} --exit 3")
    rc = s.proc.wait(timeout=30)
    s.stop()
    assert rc == 1
    log = "\n".join(s.log())
    assert re.search(r"stage detok \(pid \d+\) exited with status 3 before it was ready", log), log
    assert "serving" not in "".join(s.out) and not s.out
    for st in ("gateway", "tokenize", "engine", "parse-tools"):
        pid = int(re.search(rf"stage {st} started \(pid (\d+)\)", log).group(1))
        assert not alive(pid)


def test_ready_timeout(serve, tiny_model):
    s = serve(tiny_model, "--stage", f"parse-tools={STANDIN} --no-ready", "--ready-timeout", "1")
    assert s.proc.wait(timeout=30) == 1
    s.stop()
    assert re.search(r"stage parse-tools \(pid \d+\) sent no READY=1 within 1 s", "\n".join(s.log()))


def test_watchdog_restarts_a_silent_stage_and_real_stages_keep_pinging(serve, tiny_model, script):
    s = serve(tiny_model, "--reasoning-parser", "glm45", "--watchdog-sec", "0.6", "--restart-delay", "0.1",
              "--stage", f"engine=glm-replay --script {script}", "--stage", f"detok={STANDIN} --no-watchdog",
              "--stage", "parse-tools=glm-parse-tools")
    s.ready()
    s.wait_for(r"stage detok \(pid \d+\) sent no WATCHDOG=1 for 0.6 s: SIGABRT")
    s.wait_for(r"stage detok \(pid \d+\) killed by signal 6 \(Aborted\).*; restart 1 in 0.1 s")
    time.sleep(1.5)   # meanwhile the real stages (tokenize, replay, reasoning, tools) ping in time
    for st in ("tokenize", "engine", "parse-reasoning", "parse-tools"):
        assert not any(f"stage {st} " in ln and "WATCHDOG" in ln for ln in s.log()), st
    mark = len(s.log())
    rc = s.stop()
    # 1 only when the stop caught the silent stand-in being aborted once more
    assert rc == 0 or any(re.search(r"stage detok \(pid \d+\) stopped: killed by signal 6", ln) for ln in s.log()[mark:])


# ================================================================ flags

REFUSED = [
    # (flags, the stage that refuses, words of its message)
    (["--kv-cache-dtype", "fp8_e5m2"], "engine", "--kv-cache-dtype fp8_e5m2 is not supported"),
    (["--speculative-config", '{"method": "eagle"}'], "engine", "speculative method 'eagle' is not supported"),
    (["--speculative-config.method", "mtp", "--speculative-config.num_speculative_tokens", "9"], "engine",
     "num_speculative_tokens 9 is not supported"),
    (["--tensor-parallel-size", "2", "--nnodes", "2"], "engine", "--nnodes: multi-node groups need the NCCL communicator"),
    (["--gpu-memory-utilization", "0.9"], "engine", "--gpu-memory-utilization: needs a GPU backend"),
    (["--tool-call-parser", "hermes"], "parse-tools", "unknown --tool-call-parser 'hermes'"),
    (["--reasoning-parser", "deepseek_r1"], "parse-reasoning", "unknown --reasoning-parser 'deepseek_r1'"),
    (["--generation-config", "/nonexistent-dir"], "tokenize", "/nonexistent-dir/generation_config.json"),
]


@pytest.mark.parametrize("flags,stage,words", REFUSED, ids=[r[0][0] for r in REFUSED])
def test_refused_features_are_named_by_their_stage(serve, tiny_model, flags, stage, words):
    s = serve(tiny_model, *flags)
    assert s.proc.wait(timeout=60) == 1
    s.stop()
    log = "\n".join(s.log())
    assert words in log, log
    assert re.search(rf"stage {stage} \(pid \d+\) exited with status \d+ before it was ready", log), log
    assert not s.out


def test_seed_serving_features_start(serve, tiny_model):
    """The reference command's serving features (FP8 KV cache, MTP with 5
    drafts, prefix caching) reach the engine under vLLM's names and it comes up."""
    s = serve(tiny_model, "--kv-cache-dtype", "fp8", "--speculative-config.method", "mtp",
              "--speculative-config.num_speculative_tokens", "5", "--enable-prefix-caching",
              "--reasoning-parser", "glm45", "--tool-call-parser", "glm47", "--enable-auto-tool-choice")
    s.ready(timeout=120)
    assert s.stop() == 0


def test_accepted_engine_flags_start(serve, tiny_model):
    """What this engine has is accepted under vLLM's names (and the real
    engine, with 2 tensor-parallel ranks, tokenizer and parsers come up from glm-serve)."""
    s = serve(tiny_model, "--kv-cache-dtype", "auto", "--no-enable-prefix-caching", "-tp", "2",
              "--enable-expert-parallel", "--max-num-seqs", "4", "--max-num-batched-tokens", "1k",
              "--kv-cache-memory-bytes", "64M", "--block-size", "16", "--seed", "3", "--max-model-len", "2k",
              "--generation-config", "vllm", "--uvicorn-log-level", "debug",
              "--reasoning-parser", "glm45", "--tool-call-parser", "glm47", "--enable-auto-tool-choice")
    s.ready(timeout=120)
    assert s.stop() == 0
    # debug level reached glm-serve, and each real stage said STOPPING=1 on its way out
    for st in ("tokenize", "engine", "detok", "parse-reasoning", "parse-tools"):
        assert any(f"glm-serve debug stage {st} is stopping" in ln for ln in s.log()), st


@pytest.mark.parametrize("args,words", [
    (["--quantization", "fp8"], "'--quantization' is not a glm-serve option"),
    (["--port"], "--port needs a value"),
    (["--enable-auto-tool-choice"], "--enable-auto-tool-choice requires --tool-call-parser"),
    (["--uvicorn-log-level", "verbose"], "--uvicorn-log-level: 'verbose' is not one of"),
    (["--stage", "frontend=x"], "unknown stage 'frontend'"),
])
def test_bad_command_lines(tiny_model, args, words):
    p = subprocess.run([binpath("glm-serve"), tiny_model, *args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and words in p.stderr, p.stderr
    assert p.stdout == ""


def test_missing_gateway_is_named(tiny_model, tmp_path):
    """glm-serve finds the stages beside itself: a copy of it alone in a folder names what is missing."""
    shutil.copy(binpath("glm-serve"), tmp_path / "glm-serve")
    p = subprocess.run([str(tmp_path / "glm-serve"), tiny_model], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "glm-gateway: No such file or directory (not built?); --stage gateway=COMMAND" in p.stderr


def parse_commands(text):
    """--print-commands output -> {stage: (env dict, argv list)}"""
    res = {}
    for line in text.splitlines():
        name, rest = line.split(": ", 1)
        words = shlex.split(rest)
        env = {}
        while "=" in words[0] and not words[0].startswith("/"):
            k, v = words.pop(0).split("=", 1)
            env[k] = v
        res[name] = (env, words)
    return res


def test_print_commands_maps_each_flag(tiny_model):
    p = subprocess.run([binpath("glm-serve"), "--dry-run", "--model", tiny_model, "--host", "0.0.0.0", "--port", "8123",
                        "--served-model-name", "glm", "glm-5", "--api-key", "sk-1", "--max-model-len", "2K",
                        "--max-num-seqs", "3", "--kv-cache-dtype", "fp8", "-sc", '{"method": "mtp"}',
                        "--chat-template", "my template.jinja", "--enable-auto-tool-choice", "--tool-call-parser", "glm47",
                        "--reasoning-parser", "glm45", "--uvicorn-log-level", "trace", "--runtime-dir", "/tmp/gsx"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert not os.path.exists("/tmp/gsx")   # a dry run makes nothing
    cmds = parse_commands(p.stdout)
    assert list(cmds) == ORDER
    bindir = os.path.dirname(binpath("glm-serve"))
    for st, (env, argv) in cmds.items():
        assert env["NOTIFY_SOCKET"] == f"/tmp/gsx/notify.{st}" and env["GLM_LOG_LEVEL"] == "debug"
        assert argv[0] == os.path.join(bindir, "glm-" + st)
        assert argv[argv.index("--in") + 1] == f"ipc:///tmp/gsx/{st}.in"
        assert "sk-1" not in " ".join(argv)
    gw = cmds["gateway"][1]
    assert cmds["gateway"][0]["GLMPIPE_API_KEY"] == "<hidden>"
    assert gw[gw.index("--served-model-name") + 1: gw.index("--served-model-name") + 3] == ["glm", "glm-5"]
    assert gw[gw.index("--host") + 1] == "0.0.0.0" and gw[gw.index("--port") + 1] == "8123"
    assert gw[gw.index("--max-model-len") + 1] == "2048" and gw[gw.index("--log-level") + 1] == "debug"
    assert gw[gw.index("--out") + 1] == "ipc:///tmp/gsx/tokenize.in"
    eng = cmds["engine"][1]
    assert eng[eng.index("--kv-cache-dtype") + 1] == "fp8"             # handed on under its own name
    assert eng[eng.index("--speculative-config") + 1] == '{"method": "mtp"}'
    assert eng[eng.index("--max-num-seqs") + 1] == "3" and eng[eng.index("--max-model-len") + 1] == "2048"
    tok = cmds["tokenize"][1]
    assert tok[tok.index("--chat-template") + 1] == "my template.jinja"
    assert "--enable-auto-tool-choice" in tok and tok[tok.index("--served-model-name") + 1] == "glm"
    assert cmds["parse-tools"][1][1:3] == ["--tool-call-parser", "glm47"]
    assert cmds["parse-reasoning"][1][1:3] == ["--reasoning-parser", "glm45"]
    assert cmds["parse-tools"][1][-1] == "ipc:///tmp/gsx/gateway.in"
    for flag in ("--max-num-seqs", "--kv-cache-dtype", "--chat-template", "--tool-call-parser", "--reasoning-parser",
                 "--enable-auto-tool-choice", "--speculative-config"):
        assert sum(flag in argv for _, argv in cmds.values()) == 1, flag


# ================================================================ tool_choice and --enable-auto-tool-choice

AUTO_MSG = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'


def test_auto_tool_choice_needs_the_flag(serve, tiny_model, script):
    s = serve(tiny_model, "--reasoning-parser", "glm45", "--tool-call-parser", "glm47",
              "--stage", f"engine=glm-replay --script {script}")
    s.ready()
    s.connect()
    for rid, extra in (("a1", {"tools": TOOLS}), ("a2", {"tools": TOOLS, "tool_choice": "auto"})):
        out = s.chat(rid, "weather?", **extra)
        assert [m["type"] for m in out] == ["error"]
        assert out[0]["code"] == 400 and out[0]["err_type"] == "BadRequestError" and out[0]["message"] == AUTO_MSG
    out = s.chat("a3", "weather?", tools=TOOLS, tool_choice="required")
    assert out[0]["message"] == 'tool_choice="required" requires --tool-call-parser to be set'
    out = s.chat("a4", "weather?", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert out[0]["message"] == 'tool_choice=function "get_weather" requires --tool-call-parser to be set'
    # "none" is allowed: no calls are reported, and the markup is taken out of the content as vLLM does
    out = s.chat("a5", "weather?", tools=TOOLS, tool_choice="none")
    content, reasoning = text_of(out)
    assert reasoning == "look it up" and "<tool_call>" not in content
    assert not [c for m in out if m["type"] == "delta" for c in m.get("tool_calls") or []]
    assert s.stop() == 0

    s = serve(tiny_model, "--reasoning-parser", "glm45", "--tool-call-parser", "glm47", "--enable-auto-tool-choice",
              "--stage", f"engine=glm-replay --script {script}")
    s.ready()
    s.connect()
    out = s.chat("b1", "weather?", tools=TOOLS)
    calls = [c for m in out if m["type"] == "delta" for c in m.get("tool_calls") or []]
    assert calls and calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(c["function"].get("arguments", "") for c in calls)) == {"city": "Paris"}
    assert [m.get("finish_reason") for m in out if m["type"] == "delta"][-1] == "tool_calls"
    assert s.stop() == 0


# ================================================================ the real gateway: what `make run` starts

def test_real_gateway_with_the_openai_client(serve, tiny_model, script):
    """glm-serve with every real stage but the engine (glm-replay for exact
    outputs): the official client gets reasoning, content and a tool call,
    streaming and not; a crashed engine fails only what was in flight (the
    gateway is told at once) and the server answers again after the restart."""
    import openai
    s = serve(tiny_model, "--served-model-name", "glm", "--reasoning-parser", "glm45", "--tool-call-parser", "glm47",
              "--enable-auto-tool-choice", "--restart-delay", "0.2",
              "--stage", f"engine=glm-replay --script {script} --step-ms 20", gateway=None)
    url = s.ready(timeout=60)
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=30)
    assert [m.id for m in client.models.list().data] == ["glm"]
    r = client.chat.completions.create(model="glm", messages=[{"role": "user", "content": "capital?"}])
    assert r.choices[0].message.content == "Paris." and r.choices[0].message.model_extra["reasoning"] == "hmm"
    r = client.chat.completions.create(model="glm", messages=[{"role": "user", "content": "weather?"}], tools=TOOLS)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="glm", messages=[{"role": "user", "content": "capital?"}], stream=True) if c.choices)
    assert text == "Paris."

    # the engine dies while a stream is open: that request fails, the next one is served after the restart
    mark = len(s.log())
    stream = client.chat.completions.create(model="glm", messages=[{"role": "user", "content": "capital?"}],
                                            stream=True)
    os.kill(s.pid("engine"), signal.SIGKILL)
    with pytest.raises((openai.APIError, openai.APIConnectionError)):
        for _ in stream:
            pass
    s.wait_for(r"told the gateway \(pid \d+\): requests in flight fail", start=mark)
    s.wait_for(r"stage engine ready again", start=mark)
    r = client.chat.completions.create(model="glm", messages=[{"role": "user", "content": "capital?"}])
    assert r.choices[0].message.content == "Paris."
    assert s.stop() == 0


def test_real_engine_behind_the_real_gateway(serve, tiny_model):
    """What `make run` serves: every stage real, the tiny default model."""
    import openai
    s = serve(tiny_model, "--max-model-len", "2048", "--kv-cache-memory-bytes", "64M", gateway=None)
    client = openai.OpenAI(base_url=s.ready(timeout=120), api_key="none", max_retries=0, timeout=60)
    c = client.completions.create(model=tiny_model, prompt="Hello", max_tokens=8, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 8
    r = client.chat.completions.create(model=tiny_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    assert r.usage.completion_tokens <= 8 and r.choices[0].finish_reason in ("length", "stop")
    assert s.stop() == 0


def test_replay_stage_takes_max_model_len(serve, tiny_model, script):
    """--max-model-len goes to the engine stage; glm-replay standing in for
    glm-engine takes it as the engine does (outputs stop there: "length")."""
    s = serve(tiny_model, "--max-model-len", "40", "--reasoning-parser", "glm45",
              "--stage", f"engine=glm-replay --script {script}")
    s.ready()
    s.connect()
    out = s.chat("m1", "capital?")
    prompt = next(m for m in out if m["type"] == "start")["prompt_tokens"]
    assert out[-1]["type"] == "end" and out[-1]["usage"]["completion_tokens"] <= 40 - prompt
    assert s.stop() == 0
