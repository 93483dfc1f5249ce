"""glm-bench and `vllm bench serve` side by side on the scripted SSE server:
the same command line must send the same requests (bodies equal as JSON, in
the same order) on the same schedule (each request's send time after the
first within a few ms), and report the same metrics within timing noise.

By hand, with the vLLM reference environment (CI has no vLLM):

    tests/.venv/bin/python tests/glmbench/compare_with_vllm.py --vllm /work/vref-venv/bin/vllm \
        --tokenizer ../shared/data/tokenizers/qwen3 [--endpoint /v1/chat/completions]

Exits non-zero when the requests or the schedule differ.
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]


def server():
    p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "py" / "sse_server.py"), "--port", "0",
                          "--ttft-ms", "30", "--itl-ms", "8"], stdout=subprocess.PIPE, text=True)
    port = re.match(r"listening on (\d+)", p.stdout.readline()).group(1)
    return p, f"http://127.0.0.1:{port}"


def stats(url):
    with urllib.request.urlopen(url + "/stats") as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vllm", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--endpoint", default="/v1/completions")
    ap.add_argument("--seed", default="5")
    args = ap.parse_args()
    common = ["--model", "sse-test", "--tokenizer", args.tokenizer, "--dataset-name", "random",
              "--random-input-len", "200", "--random-output-len", "24", "--random-range-ratio", "0.5",
              "--random-prefix-len", "16", "--num-prompts", "40", "--request-rate", "25", "--burstiness", "0.7",
              "--seed", args.seed, "--endpoint", args.endpoint, "--request-id-prefix", "cmp-",
              "--temperature", "0", "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99"]
    backend = ["--backend", "openai-chat"] if "chat" in args.endpoint else []
    runs = {}
    for name, cmd in [("glm-bench", [str(ROOT / "build" / "bin" / "glm-bench")]),
                      ("vllm", [args.vllm, "bench", "serve", "--disable-tqdm", *backend])]:
        srv, url = server()
        try:
            out = subprocess.run(cmd + common + ["--base-url", url], capture_output=True, text=True, timeout=600)
            if out.returncode:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            runs[name] = (out.stdout, stats(url))
        finally:
            srv.terminate()
            srv.wait()
    (g_out, g), (v_out, v) = runs["glm-bench"], runs["vllm"]
    ok = True
    # the same requests in the same order
    gb = sorted(g["bodies"], key=lambda b: json.dumps(b, sort_keys=True))
    vb = sorted(v["bodies"], key=lambda b: json.dumps(b, sort_keys=True))
    same_set = gb == vb
    gi = [h.get("x-request-id") or h.get("X-Request-Id") for h in g["headers"]]
    vi = [h.get("x-request-id") or h.get("X-Request-Id") for h in v["headers"]]
    by_id_g = dict(zip(gi, g["bodies"]))
    by_id_v = dict(zip(vi, v["bodies"]))
    same_by_id = by_id_g == by_id_v
    print(f"request bodies: {len(gb)} vs {len(vb)}; equal as a set: {same_set}; equal request by request "
          f"(x-request-id): {same_by_id}")
    ok &= same_set and same_by_id
    # the same schedule: send times relative to the first request, per request id
    t0g, t0v = min(g["arrivals"]), min(v["arrivals"])
    ag = {i: t - t0g for i, t in zip(gi, g["arrivals"])}
    av = {i: t - t0v for i, t in zip(vi, v["arrivals"])}
    worst = max(abs(ag[i] - av[i]) for i in ag)
    print(f"schedule: largest difference of a request's send time (relative to the first) {worst * 1000:.1f} ms")
    ok &= worst < 0.05
    print("\n--- glm-bench ---")
    print(g_out[g_out.index("====="):])
    print("--- vllm bench serve ---")
    print(v_out[v_out.index("====="):])
    print("same requests and schedule" if ok else "DIFFERENT")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
