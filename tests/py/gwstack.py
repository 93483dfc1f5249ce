"""A whole server for end-to-end tests: the five stages and glm-gateway,
wired over ipc:// endpoints in a private directory, as glm-serve wires them.

    with GatewayStack(tmp_path, model, engine=replay_engine(model, script)) as gw:
        client = gw.openai()

Every process logs to a file in the directory (shown when a test fails).
kill()/restart() let a test take one stage down and bring it back. When
glm-serve exists, start() can launch it instead; the tests only use url,
openai(), kill(), restart() and stop().
"""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import time

from conftest import binpath

# stage name -> (binary, input endpoint name); each --out goes to the next --in
ORDER = ["tokenize", "engine", "detok", "reasoning", "tools", "gateway"]
ENGINE_ARGS = ["--kv-cache-memory-bytes", "64M", "--threads", "1"]


def write_script(path, rows):
    """glm-replay's script (one JSON object per line) at path; returns path."""
    path = pathlib.Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def replay_engine(model, script, chunk=1):
    return [binpath("glm-replay"), "--model", model, "--script", str(script), "--chunk", str(chunk)]


def real_engine(model, *extra):
    return [binpath("glm-engine"), "--model", model, *ENGINE_ARGS, *extra]


class GatewayStack:
    # the reference serve flags (vllm serve ... --enable-auto-tool-choice); pass () to test without
    def __init__(self, tmp_path, model, engine, gateway_args=(), tokenize_args=("--enable-auto-tool-choice",), env=None):
        self.dir = pathlib.Path(tmp_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        # ipc paths must stay short (sun_path is 108 bytes)
        self.ipc = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"gw{os.getpid()}_{id(self) & 0xffffff:x}"
        self.ipc.mkdir(exist_ok=True)
        self.model = model
        self.env = dict(os.environ, **(env or {}))
        self.cmds = {
            "tokenize": [binpath("glm-tokenize"), "--model", model, *tokenize_args],
            "engine": list(engine),
            "detok": [binpath("glm-detok"), "--model", model],
            "reasoning": [binpath("glm-parse-reasoning")],
            "tools": [binpath("glm-parse-tools")],
            "gateway": [binpath("glm-gateway"), "--host", "127.0.0.1", "--port", "0",
                        "--served-model-name", "tiny", "--model", model, "--max-model-len", "4096",
                        *gateway_args],
        }
        self.procs = {}
        self.logs = {}
        self.port = None

    # ---------------------------------------------------------------- wiring
    def ep(self, name):
        return f"ipc://{self.ipc}/{name}"

    def _io(self, name):
        i = ORDER.index(name)
        nxt = ORDER[i + 1] if i + 1 < len(ORDER) else ORDER[0]
        if name == "gateway":
            return ["--in", self.ep("gateway"), "--out", self.ep("tokenize")]
        return ["--in", self.ep(name), "--out", self.ep(nxt)]

    def start_stage(self, name):
        log = open(self.dir / f"{name}.log", "ab")
        self.logs[name] = self.dir / f"{name}.log"
        self.procs[name] = subprocess.Popen(self.cmds[name] + self._io(name), stdout=subprocess.DEVNULL,
                                            stderr=log, env=self.env)
        log.close()
        return self.procs[name]

    def start(self, timeout=30):
        for name in ORDER:
            self.start_stage(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(rb"ready: http://[^:]+:(\d+)", self.logs["gateway"].read_bytes())
            if m:
                self.port = int(m.group(1))
                break
            if self.procs["gateway"].poll() is not None:
                raise AssertionError("glm-gateway exited: " + self.log("gateway"))
            time.sleep(0.02)
        assert self.port, "glm-gateway never became ready: " + self.log("gateway")
        self.wait_healthy(timeout=deadline - time.monotonic())
        return self

    def wait_healthy(self, timeout=20):
        import urllib.request
        deadline = time.monotonic() + max(timeout, 1)
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.05)
        raise AssertionError("the pipeline never became healthy:\n" + self.all_logs())

    # ---------------------------------------------------------------- faults
    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs[name]
        p.send_signal(sig)
        p.wait(timeout=10)

    def restart(self, name):
        return self.start_stage(name)

    # ---------------------------------------------------------------- access
    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self):
        return self.url + "/v1"

    def openai(self, **kw):
        import openai
        kw.setdefault("api_key", "none")
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 60)
        return openai.OpenAI(base_url=self.base_url, **kw)

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def log(self, name):
        p = self.logs.get(name)
        return p.read_text(errors="replace")[-4000:] if p and p.exists() else ""

    def all_logs(self):
        return "\n".join(f"--- {n}\n{self.log(n)}" for n in ORDER)

    # ---------------------------------------------------------------- stop
    def stop(self, check=True):
        bad = []
        for name in ORDER[::-1]:
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name in ORDER[::-1]:
            p = self.procs.get(name)
            if not p:
                continue
            try:
                # All stages get SIGTERM at once, so the gateway may leave
                # before the last stage has handed it everything; that stage
                # then waits out its linger (30 s by default, common/io.c)
                # for a downstream that may come back, as it should under a
                # supervisor. Wait longer than that before calling it hung.
                rc = p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
                bad.append(f"{name} did not stop on SIGTERM")
                continue
            if rc != 0 and rc != -signal.SIGKILL:
                bad.append(f"{name} exited {rc}")
        for f in self.ipc.glob("*"):
            f.unlink()
        self.ipc.rmdir()
        if check and bad:
            raise AssertionError("; ".join(bad) + "\n" + self.all_logs())

    def __enter__(self):
        return self.start()

    def __exit__(self, et, ev, tb):
        self.stop(check=et is None)
