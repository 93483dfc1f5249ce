"""How much CPU a benchmark client spends per streamed message, and what it
reports, against the scripted SSE server (tests/py/sse_server.py).

    tests/.venv/bin/python tests/glmbench/client_overhead.py --tokenizer DIR \
        [--prompts 200] [--concurrency 100] [--output-len 100] [--itl-ms 10] [--ttft-ms 50] \
        [--vllm /work/vref-venv/bin/vllm]

For each client (glm-bench; `vllm bench serve` when --vllm is given) it runs
the same workload twice, with N and 2N prompts, and takes the difference of
the client's CPU time (user + system, from wait4) so that start-up (Python
imports, tokenizer loading) cancels: CPU per message = (cpu(2N) - cpu(N)) /
(N * output_len), and the client's load on one core at the server's message
rate. It also prints the TTFT / ITL each client reports, against the script.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def start_server(args):
    p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "py" / "sse_server.py"), "--port", "0",
                          "--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms)],
                         stdout=subprocess.PIPE, text=True)
    port = re.match(r"listening on (\d+)", p.stdout.readline()).group(1)
    return p, f"http://127.0.0.1:{port}"


def run(cmd):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{out}")
    return out, ru.ru_utime + ru.ru_stime, wall


def value(out, label):
    m = re.search(re.escape(label) + r"\s+(\S+)", out)
    return float(m.group(1)) if m else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--output-len", type=int, default=100)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--ttft-ms", type=float, default=50)
    ap.add_argument("--itl-ms", type=float, default=10)
    ap.add_argument("--vllm", default=None, help="path of the vllm CLI to compare with")
    args = ap.parse_args()
    common = ["--model", "sse-test", "--tokenizer", args.tokenizer, "--dataset-name", "random",
              "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
              "--max-concurrency", str(args.concurrency)]
    clients = [("glm-bench", [str(ROOT / "build" / "bin" / "glm-bench"), "--quiet"])]
    if args.vllm:
        clients.append(("vllm bench serve", [args.vllm, "bench", "serve", "--disable-tqdm"]))
    server, url = start_server(args)
    try:
        print(f"server: ttft {args.ttft_ms} ms, itl {args.itl_ms} ms; {args.concurrency} streams at once, "
              f"{args.output_len} tokens each (one SSE message per token)")
        print("| client | msgs/s (2N run) | CPU per message | CPU share of one core | reported TTFT mean | "
              "reported ITL median |")
        print("|---|---|---|---|---|---|")
        for name, cmd in clients:
            n = args.prompts
            out1, cpu1, wall1 = run(cmd + common + ["--base-url", url, "--num-prompts", str(n)])
            out2, cpu2, wall2 = run(cmd + common + ["--base-url", url, "--num-prompts", str(2 * n)])
            msgs = n * args.output_len
            dur2 = value(out2, "Benchmark duration (s):")
            rate = 2 * msgs / dur2
            per_msg = (cpu2 - cpu1) / msgs
            print(f"| {name} | {rate:.0f} | {per_msg * 1e6:.1f} µs | {100 * per_msg * rate:.1f} % | "
                  f"{value(out2, 'Mean TTFT (ms):'):.2f} ms | {value(out2, 'Median ITL (ms):'):.2f} ms |")
            print(f"<!-- {name}: cpu {cpu1:.2f}/{cpu2:.2f} s, wall {wall1:.1f}/{wall2:.1f} s -->")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
