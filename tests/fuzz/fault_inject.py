"""Fault injection on the whole text pipeline over ZeroMQ (docs/reliability.md):

    tests/.venv/bin/python tests/fuzz/fault_inject.py [--requests 40]

glm-tokenize → glm-engine (tiny model) → glm-detok → glm-parse-reasoning →
glm-parse-tools, each stage its own process on ipc:// endpoints, a PUSH
feeding the head and a PULL at the tail standing in for the gateway. For
every scenario the requests are classified by what reached the tail:
complete (`end`), answered with an `error`, or lost (nothing: the gateway's
timeout would have to answer it). Scenarios:

  sigkill-X   X is killed (SIGKILL) halfway through the requests and started
              again on the same endpoints 0.2 s later
  sigterm-X   X gets SIGTERM halfway through (drain: in-flight work finishes,
              new work refused with 503) and is started again after it exits
  stop-all    every stage gets SIGTERM head first, as glm-serve stops them,
              while requests are in flight
  no-tail     the tail (glm-parse-tools) is absent when the pipeline stops:
              glm-parse-reasoning must say how many messages it could not deliver
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / os.environ.get("FUZZ_BUILD", "build") / "bin"
STAGES = ["glm-tokenize", "glm-engine", "glm-detok", "glm-parse-reasoning", "glm-parse-tools"]


def stage_cmd(name, model):
    base = [str(BIN / name)]
    if name == "glm-tokenize":
        return base + ["--model", model]
    if name == "glm-engine":
        # two sequences at a time: requests queue in the engine, so some are always in flight
        return base + ["--model", model, "--threads", "1", "--max-model-len", "512", "--num-gpu-blocks-override", "512",
                       "--max-num-seqs", "2"]
    if name == "glm-detok":
        return base + ["--model", model]
    return base


class Chain:
    def __init__(self, model, tmp, skip=()):
        self.model = model
        self.eps = [f"ipc://{tmp}/e{i}" for i in range(len(STAGES) + 1)]
        self.ctx = zmq.Context()
        self.sink = self.ctx.socket(zmq.PULL)
        self.sink.bind(self.eps[-1])
        self.procs = {}
        self.logs = {}
        for i, name in enumerate(STAGES):
            if name not in skip:
                self.start(i)
        self.src = self.ctx.socket(zmq.PUSH)
        self.src.connect(self.eps[0])
        self.got = []
        self.stopping = False

    def start(self, i):
        name = STAGES[i]
        log = open(f"{self.eps[0][6:]}.{name}.log", "ab")
        self.logs[name] = log.name
        self.procs[name] = subprocess.Popen(stage_cmd(name, self.model) + ["--in", self.eps[i], "--out", self.eps[i + 1],
                                                                          "--linger", "2"], stderr=log)

    def send(self, rid):
        # one prompt for all: greedy output is the same for every request
        body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 24, "temperature": 0, "ignore_eos": True}
        self.src.send(msgpack.packb({"type": "request", "id": rid, "endpoint": "chat", "body": body}))

    def pump(self, seconds):
        t0 = time.time()
        while time.time() - t0 < seconds:
            if self.sink.poll(50):
                m = msgpack.unpackb(self.sink.recv(), raw=False, strict_map_key=False)
                m["_at_stop"] = self.stopping
                self.got.append(m)

    def classify(self, rids):
        """complete: `end` reached the tail; error: an `error` did while the
        pipeline ran; at-stop: only the pipeline's stop answered it (a stage
        held it with no way to finish); lost: nothing ever came."""
        res = {"complete": 0, "error": 0, "at-stop": 0, "lost": 0}
        self.errors = {}
        for r in rids:
            mine = [m for m in self.got if m.get("id") == r]
            if any(m["type"] == "end" for m in mine):
                res["complete"] += 1
                continue
            errs = [m for m in mine if m["type"] == "error"]
            for m in errs:
                self.errors[m["message"]] = self.errors.get(m["message"], 0) + 1
            res["error" if any(not m["_at_stop"] for m in errs) else "at-stop" if errs else "lost"] += 1
        return res

    def stop(self, order=STAGES):
        self.stopping = True
        for name in order:
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.terminate()
                t0 = time.time()
                while p.poll() is None and time.time() - t0 < 40:
                    self.pump(0.05)
        self.pump(0.5)
        self.src.close(linger=0)
        self.sink.close(linger=0)
        self.ctx.term()


def scenario(kind, target, model, n):
    with tempfile.TemporaryDirectory() as tmp:
        skip = ("glm-parse-tools",) if kind == "no-tail" else ()
        c = Chain(model, tmp, skip)
        rids = [f"{kind}-{i}" for i in range(n)]
        note = ""
        for i, r in enumerate(rids):
            c.send(r)
            c.pump(0.01)
            if i == n // 2 and kind in ("sigkill", "sigterm"):
                idx = STAGES.index(target)
                p = c.procs[target]
                if kind == "sigkill":
                    p.kill()
                    p.wait()
                    time.sleep(0.2)
                else:
                    p.terminate()
                    while p.poll() is None:
                        c.pump(0.05)
                    note = f"exit {p.returncode}"
                c.start(idx)
            if i == n // 2 and kind == "stop-all":
                break
        if kind == "stop-all":
            c.stop()
            rids = rids[: n // 2 + 1]
        else:
            c.pump(15 if kind != "no-tail" else 1)
            c.stop()
        res = c.classify(rids)
        if os.environ.get("FAULT_VERBOSE"):
            print(c.errors, file=sys.stderr)
        if kind == "no-tail":
            log = pathlib.Path(c.logs["glm-parse-reasoning"]).read_text(errors="replace")
            line = [l for l in log.splitlines() if "not delivered" in l]
            note = line[-1].split(" error ")[-1] if line else "no 'not delivered' line"
        return res, note


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=40)
    args = ap.parse_args()
    model = ROOT / "build" / "fuzz" / "tiny"
    if not (model / "config.json").exists():
        subprocess.run([str(BIN / "glm-mkmodel"), "--preset", "tiny", "--seed", "0", "--out", str(model)], check=True,
                       capture_output=True)
    rows = [("stop-all", "-"), ("no-tail", "-")]
    rows += [("sigterm", s) for s in STAGES] + [("sigkill", s) for s in STAGES]
    print(f"{'scenario':12s} {'stage':20s} {'requests':>8s} {'complete':>8s} {'error':>6s} {'at-stop':>7s} {'lost':>5s}  note")
    for kind, target in rows:
        res, note = scenario(kind, target, str(model), args.requests)
        total = sum(res.values())
        print(f"{kind:12s} {target:20s} {total:8d} {res['complete']:8d} {res['error']:6d} {res['at-stop']:7d} "
              f"{res['lost']:5d}  {note}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
