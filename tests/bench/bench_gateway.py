#!/usr/bin/env python3
"""glm-gateway and the pipeline under streaming load, glm-replay as the
engine (so the model is not the bottleneck). Not a test: numbers for
docs/perf.md.

    make build/bench/bench_gw_client
    tests/.venv/bin/python tests/bench/bench_gateway.py [throughput] [latency] [streams10k]

Scenarios:
  throughput  glm-replay unpaced (tokens as fast as the stages take them),
              64 connections x 4 requests x 1000 tokens: sustained streamed
              tokens/s through every stage and the gateway; CPU per token of
              every process.
  latency100  the same with 100 streams (the machine far from busy).
  latency     glm-replay paced at one token per 50 ms per stream, 1000
              concurrent streams: the latency the pipeline adds per token,
              from glm-replay's emit (its --emit-log, CLOCK_REALTIME) to the
              client's read of the chunk that carries it (same clock).
  streams10k  10,000 concurrent streams, one token per second each, the
              gateway pinned to one core: do they all complete, at what
              latency and gateway CPU.
  apis        gateway CPU per streamed token, chat completions streaming
              vs Anthropic /v1/messages and /v1/responses streaming, same
              replayed output:
              unpaced (64 conns x 4 x 1000 tokens) and paced (200 streams x 200 tokens,
              a token per 20 ms each: every token its own write); three
              rounds, alternating.
The load generator is C (tests/bench/bench_gw_client.c, libuv + http-parser)
so the client's cost stays out of the numbers as far as possible.
"""
import bisect
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "py"))
from gwstack import GatewayStack, ORDER, replay_engine  # noqa: E402

BUILD = pathlib.Path(os.environ.get("BUILD", ROOT / "build"))
CLIENT = BUILD / "bench" / "bench_gw_client"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """(user, system) CPU seconds of a process."""
    f = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) / TICK, int(f[12]) / TICK


def make_model(d):
    m = d / "m"
    subprocess.run([str(BUILD / "bin" / "glm-mkmodel"), "--preset", "tiny", "--seed", "0", "--out", str(m)],
                   check=True, capture_output=True)
    return str(m)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def run_client(port, args, timeout=600):
    p = subprocess.run([str(CLIENT), "--port", str(port), *args], capture_output=True, text=True, timeout=timeout)
    out = p.stdout.strip().split()
    res = {out[i]: float(out[i + 1]) for i in range(0, len(out) - 1, 2)}
    if p.returncode:
        res["stderr"] = p.stderr[-2000:]
    return res


def added_latency(samples, emit_log):
    """Per tokens message: client read time of the chunk that first reports
    its cumulative count minus glm-replay's emit time."""
    emits = {}
    for line in pathlib.Path(emit_log).read_text().splitlines():
        rid, _, sent, t = line.split()
        emits.setdefault(rid, []).append((int(sent), float(t)))
    lat = []
    reads = {}
    for line in pathlib.Path(samples).read_text().splitlines():
        rid, tok, t = line.split()
        reads.setdefault(rid, []).append((int(tok), float(t)))
    for rid, rs in reads.items():
        rs.sort()
        toks = [r[0] for r in rs]
        for sent, te in emits.get(rid, []):
            i = bisect.bisect_left(toks, sent)
            if i < len(rs):
                lat.append(rs[i][1] - te)
    return lat


def stack(d, model, engine_extra, gateway_extra=()):
    d.mkdir(parents=True, exist_ok=True)
    script = d / "script.jsonl"
    script.write_text('{"output": "' + " tok" * 2000 + '"}\n')
    eng = replay_engine(model, script) + list(engine_extra)
    return GatewayStack(d, model, eng, gateway_args=["--max-connections", "20000", "--write-timeout", "600",
                                                    *gateway_extra])


def cpu_all(gw):
    return {n: cpu_seconds(gw.procs[n].pid) for n in ORDER}


def report(name, res, cpu0, cpu1, tokens, extra=""):
    print(f"\n== {name}: {res}")
    for n in ORDER:
        usr, sys_ = cpu1[n][0] - cpu0[n][0], cpu1[n][1] - cpu0[n][1]
        used = usr + sys_
        print(f"   {n:10s} cpu {used:7.2f} s (user {usr:5.2f}, system {sys_:5.2f})"
              f"   {used / max(tokens, 1) * 1e6:7.2f} us/token")
    if extra:
        print("   " + extra)


def throughput(d, model):
    with stack(d, model, ["--chunk", "1"]) as gw:
        run_client(gw.port, ["--conns", "8", "--requests", "1", "--max-tokens", "50"])   # warm up
        cpu0 = cpu_all(gw)
        res = run_client(gw.port, ["--conns", "64", "--requests", "4", "--max-tokens", "1000"])
        cpu1 = cpu_all(gw)
        report("throughput (unpaced replay, 64 conns x 4 x 1000 tokens)", res, cpu0, cpu1, res.get("tokens", 0))


def latency(d, model, conns=1000, step_ms=50, max_tokens=60, pin=False, ramp_ms=2000, name="latency"):
    log = d / "emit.log"
    with stack(d, model, ["--chunk", "1", "--step-ms", str(step_ms), "--emit-log", str(log)]) as gw:
        if pin:
            os.sched_setaffinity(gw.procs["gateway"].pid, {0})
        samples = d / "samples.txt"
        cpu0 = cpu_all(gw)
        res = run_client(gw.port, ["--conns", str(conns), "--max-tokens", str(max_tokens), "--ramp-ms", str(ramp_ms),
                                   "--samples", str(samples)])
        cpu1 = cpu_all(gw)
        lat = added_latency(samples, log)
        extra = (f"added latency per token over {len(lat)} tokens: p50 {pct(lat, 50) * 1e3:.3f} ms, "
                 f"p90 {pct(lat, 90) * 1e3:.3f} ms, p99 {pct(lat, 99) * 1e3:.3f} ms, "
                 f"mean {statistics.fmean(lat) * 1e3:.3f} ms" if lat else "no samples")
        report(f"{name} ({conns} streams, a token per {step_ms} ms each{', gateway on one core' if pin else ''})",
               res, cpu0, cpu1, res.get("tokens", 0), extra)


def apis(d, model, rounds=3):
    rows = []
    for r in range(rounds):
        for api in ("chat", "messages", "responses"):
            for paced in (False, True):
                extra = ["--chunk", "1"] + (["--step-ms", "20"] if paced else [])
                with stack(d / f"{api}{r}{int(paced)}", model, extra) as gw:
                    run_client(gw.port, ["--api", api, "--conns", "8", "--max-tokens", "50"])   # warm up
                    cpu0 = cpu_seconds(gw.procs["gateway"].pid)
                    args = ["--conns", "200", "--max-tokens", "200", "--ramp-ms", "500"] if paced else \
                           ["--conns", "64", "--requests", "4", "--max-tokens", "1000"]
                    res = run_client(gw.port, ["--api", api, *args])
                    cpu1 = cpu_seconds(gw.procs["gateway"].pid)
                    tok = res.get("tokens", 0)
                    us = [(cpu1[i] - cpu0[i]) / max(tok, 1) * 1e6 for i in (0, 1)]
                    rows.append((api, "paced" if paced else "unpaced", tok, res.get("tokens_per_s", 0), us))
                    print(f"   round {r} {api:9s} {'paced' if paced else 'unpaced':8s} tokens {tok:.0f} "
                          f"({res.get('tokens_per_s', 0):.0f}/s, failed {res.get('requests_failed')})  gateway "
                          f"{us[0] + us[1]:.2f} us/token (user {us[0]:.2f}, system {us[1]:.2f})", flush=True)
    return rows


def main():
    if not CLIENT.exists():
        sys.exit(f"{CLIENT} missing: make {CLIENT.relative_to(ROOT)}")
    which = sys.argv[1:] or ["throughput", "latency100", "latency", "streams10k"]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cpus  load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as t:
        d = pathlib.Path(t)
        model = make_model(d)
        if "throughput" in which:
            throughput(d / "a", model)
        if "latency100" in which:
            latency(d / "b1", model, conns=100, ramp_ms=500, name="latency100")
        if "latency" in which:
            latency(d / "b", model)
        if "apis" in which:
            apis(d / "e", model)
        if "streams10k" in which:
            latency(d / "c", model, conns=10000, step_ms=1000, max_tokens=12, pin=True, ramp_ms=4000,
                    name="streams10k")


if __name__ == "__main__":
    main()
