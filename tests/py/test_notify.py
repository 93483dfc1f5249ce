"""Every stage reports to its supervisor over the NOTIFY_SOCKET the test
provides, as systemd (Type=notify, WatchdogSec=) and glm-serve expect:
READY=1 once it serves, WATCHDOG=1 every quarter of WATCHDOG_USEC while
idle, STOPPING=1 and exit 0 on SIGTERM. glm-serve itself does the same for
the whole pipeline when it runs under a supervisor."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import binpath

HERE = os.path.dirname(os.path.abspath(__file__))


class NotifySocket:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)

    def expect(self, state, timeout=30):
        """Wait for a datagram carrying `state`; return every line seen."""
        end = time.time() + timeout
        seen = []
        while time.time() < end:
            self.sock.settimeout(max(0.01, end - time.time()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            seen += data.split("\n")
            if state in seen:
                return seen
        raise AssertionError(f"no {state} within {timeout} s; got {seen}")

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def stage_cmds(model, script):
    return {
        "glm-tokenize": [binpath("glm-tokenize"), "--model", model],
        "glm-engine": [binpath("glm-engine"), "--model", model, "--threads", "1", "--kv-cache-memory-bytes", "16M"],
        "glm-detok": [binpath("glm-detok"), "--model", model],
        "glm-parse-reasoning": [binpath("glm-parse-reasoning")],
        "glm-parse-tools": [binpath("glm-parse-tools")],
        "glm-replay": [binpath("glm-replay"), "--model", model, "--script", script],
        "glm-gateway": [binpath("glm-gateway"), "--in", f"ipc://{os.path.dirname(script)}/gw.in",
                        "--out", f"ipc://{os.path.dirname(script)}/gw.out", "--host", "127.0.0.1", "--port", "0",
                        "--model", model, "--served-model-name", "m", "--max-model-len", "4096"],
    }


@pytest.mark.parametrize("name", ["glm-tokenize", "glm-engine", "glm-detok", "glm-parse-reasoning",
                                  "glm-parse-tools", "glm-replay", "glm-gateway"])
def test_stage_ready_watchdog_stopping(tmp_path, tiny_model, name):
    script = tmp_path / "s.jsonl"
    script.write_text('{"output": "hi"}\n')
    cmd = stage_cmds(tiny_model, str(script))[name]
    ns = NotifySocket(str(tmp_path / "notify"))
    env = {**os.environ, "NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "200000"}
    env.pop("WATCHDOG_PID", None)
    # stdin stays open and empty: the stage idles, as a served stage between requests
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        ns.expect("READY=1")
        t0 = time.time()
        ns.expect("WATCHDOG=1", timeout=1)   # pings while idle: every 50 ms for a 200 ms watchdog
        ns.expect("WATCHDOG=1", timeout=1)
        assert time.time() - t0 < 1
        p.send_signal(signal.SIGTERM)
        ns.expect("STOPPING=1", timeout=10)
        assert p.wait(timeout=10) == 0, p.stderr.read().decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        ns.close()


def test_no_notify_socket_no_pings(tmp_path, tiny_model):
    """Without NOTIFY_SOCKET a stage in a shell pipe behaves as before."""
    p = subprocess.run([binpath("glm-parse-tools")], input=b"", capture_output=True, timeout=10,
                       env={k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")})
    assert p.returncode == 0 and p.stdout == b""


def test_glm_serve_reports_the_pipeline(tmp_path, tiny_model):
    script = tmp_path / "s.jsonl"
    script.write_text('{"output": "hi"}\n')
    ns = NotifySocket(str(tmp_path / "notify"))
    standin = f"{sys.executable} {os.path.join(HERE, 'serve_standin.py')}"
    rundir = tempfile.mkdtemp(prefix="gn", dir="/tmp")   # short: unix socket paths
    p = subprocess.Popen([binpath("glm-serve"), tiny_model, "--runtime-dir", rundir,
                          "--stage", f"gateway={standin}", "--stage", f"engine=glm-replay --script {script}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "NOTIFY_SOCKET": ns.path})
    try:
        ns.expect("READY=1")
        assert p.stdout.readline().startswith("glm-serve: ready at http://127.0.0.1:8000/v1")
        p.send_signal(signal.SIGTERM)
        ns.expect("STOPPING=1", timeout=10)
        assert p.wait(timeout=30) == 0, p.stderr.read()
        assert os.listdir(rundir) == []   # what glm-serve and the stages made is gone
    finally:
        if os.path.isdir(rundir) and not os.listdir(rundir):
            os.rmdir(rundir)
        if p.poll() is None:
            p.kill()
            p.wait()
        ns.close()
