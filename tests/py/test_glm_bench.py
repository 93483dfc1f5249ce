"""glm-bench end to end, against the scripted SSE server (sse_server.py).

The server sends each stream's first token ttft_ms after the request arrived
and one message every itl_ms after that, so the TTFT / ITL / TPOT glm-bench
reports can be checked against the script (within scheduling tolerance on a
busy machine). Failures, arrivals, concurrency, headers, bodies, the
progress output and the speculative-decoding section are checked too. Any
OpenAI-compatible base URL works the same way: GLM_BENCH_URL=http://... runs
the timing-free checks against it instead (see test_any_server).
"""
import contextlib
import json
import os
import pathlib
import pty
import re
import subprocess
import sys
import time

import pytest

from conftest import binpath

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "glmbench"


@contextlib.contextmanager
def sse_server(*args):
    p = subprocess.Popen([sys.executable, str(HERE / "sse_server.py"), "--port", "0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        m = re.match(r"listening on (\d+)", line)
        assert m, f"server did not start: {line!r} {p.stderr.read() if p.poll() is not None else ''}"
        yield f"http://127.0.0.1:{m.group(1)}"
    finally:
        p.terminate()
        p.wait(timeout=10)


def stats(url):
    import urllib.request
    with urllib.request.urlopen(url + "/stats", timeout=10) as r:
        return json.loads(r.read())


def bench(args, timeout=120, env=None):
    p = subprocess.run([binpath("glm-bench"), *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    return p


def table_value(out, label):
    m = re.search(r"^" + re.escape(label) + r"\s+(\S+)", out, re.M)
    assert m, f"no '{label}' in:\n{out}"
    return float(m.group(1))


def common(url, model, n=16, inp=32, out=12, extra=()):
    return ["--base-url", url, "--model", "sse-test", "--tokenizer", model, "--dataset-name", "random",
            "--random-input-len", str(inp), "--random-output-len", str(out), "--num-prompts", str(n), *extra]


def test_completions_ttft_itl_match_the_script(tiny_model, tmp_path):
    with sse_server("--ttft-ms", "80", "--itl-ms", "20") as url:
        res = tmp_path / "r.json"
        p = bench(common(url, tiny_model, n=24, extra=["--max-concurrency", "8", "--save-result", "--save-detailed",
                                                      "--result-filename", str(res), "--metric-percentiles", "50,99"]))
        assert p.returncode == 0, p.stderr
        s = stats(url)
    out = p.stdout
    assert table_value(out, "Successful requests:") == 24
    assert table_value(out, "Failed requests:") == 0
    assert table_value(out, "Maximum request concurrency:") == 8
    assert table_value(out, "Total generated tokens:") == 24 * 12
    # the server never saw more than 8 streams at once
    assert s["max_open"] <= 8 and s["requests"] == 24
    ttft, itl, tpot = (table_value(out, "Mean TTFT (ms):"), table_value(out, "Median ITL (ms):"),
                       table_value(out, "Mean TPOT (ms):"))
    assert 78 <= ttft <= 80 + 60, out
    assert 15 <= itl <= 25, out
    assert 15 <= tpot <= 27, out
    r = json.loads(res.read_text())
    assert r["completed"] == 24 and r["failed"] == 0 and r["max_concurrency"] == 8
    assert all(len(x) == 11 for x in r["itls"])          # 12 tokens, one per message
    assert all(t >= 0.078 for t in r["ttfts"])
    assert r["output_lens"] == [12] * 24
    # total input tokens are the server's usage.prompt_tokens (vLLM 0.33.0)
    assert r["total_input_tokens"] == sum(len(b["prompt"].split()) for b in s["bodies"])
    for k in ["mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p50_ttft_ms", "p99_ttft_ms", "mean_itl_ms",
              "p99_tpot_ms", "request_throughput", "output_throughput", "total_token_throughput",
              "max_output_tokens_per_s", "max_concurrent_requests", "duration", "latencies", "queue_times"]:
        assert k in r, k
    # the random dataset always asks for ignore_eos, and streams with usage
    b = s["bodies"][0]
    assert b["ignore_eos"] is True and b["stream"] is True and b["stream_options"] == {"include_usage": True}
    assert b["max_tokens"] == 12 and b["repetition_penalty"] == 1.0 and b["logprobs"] is None


def test_chat_role_chunk_is_not_the_first_token(tiny_model):
    with sse_server("--ttft-ms", "100", "--itl-ms", "10") as url:
        p = bench(common(url, tiny_model, n=6, extra=["--endpoint", "/v1/chat/completions", "--temperature", "0"]))
        s = stats(url)
    assert p.returncode == 0, p.stderr
    # the role chunk goes out at once; counting it would give a TTFT near 0
    assert table_value(p.stdout, "Mean TTFT (ms):") >= 98, p.stdout
    b = s["bodies"][0]
    assert b["messages"][0]["role"] == "user" and b["messages"][0]["content"][0]["type"] == "text"
    assert b["max_completion_tokens"] == 12 and b["temperature"] == 0.0


def test_poisson_arrivals_spread_over_n_over_rate(tiny_model):
    with sse_server("--ttft-ms", "5", "--itl-ms", "1") as url:
        p = bench(common(url, tiny_model, n=30, out=2, extra=["--request-rate", "40", "--seed", "3"]))
        s = stats(url)
    assert p.returncode == 0, p.stderr
    a = sorted(s["arrivals"])
    # the last request goes out at exactly n/rate = 0.75 s after the start
    span = a[-1] - a[0]
    assert 0.45 <= span <= 0.85, span
    assert table_value(p.stdout, "Request rate configured (RPS):") == 40
    assert table_value(p.stdout, "Benchmark duration (s):") >= 0.75
    assert "Burstiness factor: 1.0 (Poisson process)" in p.stdout


def test_failures_are_counted_with_reasons(tiny_model, tmp_path):
    ds = tmp_path / "prompts.jsonl"
    rows = ["fine one", "FAIL400 please", "FAIL500 now", "DISCONNECT soon", "BADJSON later", "fine two"]
    ds.write_text("".join(json.dumps({"prompt": r}) + "\n" for r in rows))
    with sse_server("--ttft-ms", "5", "--itl-ms", "2") as url:
        p = bench(["--base-url", url, "--model", "sse-test", "--tokenizer", tiny_model, "--dataset-name", "custom",
                   "--dataset-path", str(ds), "--skip-chat-template", "--custom-output-len", "4",
                   "--num-prompts", "6", "--disable-shuffle"])
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert table_value(out, "Successful requests:") == 2
    assert table_value(out, "Failed requests:") == 4
    assert "Failed requests during benchmark run detected (capping to 10):" in out
    assert "1: HTTP 400 Bad Request: scripted failure 400" in out
    assert "1: HTTP 500 Internal Server Error: scripted failure 500" in out
    assert re.search(r"1: server disconnected mid-response", out)
    assert re.search(r"1: invalid JSON in the event stream", out)


def test_unreachable_server_fails_every_request(tiny_model):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = bench(common(f"http://127.0.0.1:{port}", tiny_model, n=5, out=3))
    assert p.returncode == 0, p.stderr
    assert table_value(p.stdout, "Successful requests:") == 0
    assert table_value(p.stdout, "Failed requests:") == 5
    assert f"5: Cannot connect to host 127.0.0.1:{port}: connection refused" in p.stdout


def test_goodput_and_selected_percentiles(tiny_model):
    with sse_server("--ttft-ms", "20", "--itl-ms", "5") as url:
        p = bench(common(url, tiny_model, n=8, out=6, extra=[
            "--goodput", "ttft:5000", "tpot:5000", "--percentile-metrics", "ttft,e2el", "--metric-percentiles",
            "50,90"]))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert table_value(out, "Request goodput (req/s):") == table_value(out, "Request throughput (req/s):")
    assert "P90 TTFT (ms):" in out and "P50 E2EL (ms):" in out
    assert "Inter-token Latency" not in out and "P99" not in out


def test_speculative_decoding_counters_from_metrics(tiny_model):
    with sse_server("--ttft-ms", "5", "--itl-ms", "1", "--spec-metrics") as url:
        p = bench(common(url, tiny_model, n=8, out=8))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "-------------Speculative Decoding---------------" in out
    assert table_value(out, "Acceptance rate (%):") == pytest.approx(66.67)
    assert table_value(out, "Acceptance length:") == 3.0
    assert table_value(out, "Drafts:") == 8 * 8 // 4
    assert re.search(r"^  Position 2:\s+0\.00", out, re.M)


def test_model_name_from_server_headers_and_extra_body(tiny_model):
    with sse_server() as url:
        p = bench(["--base-url", url, "--tokenizer", tiny_model, "--random-input-len", "8", "--random-output-len",
                   "2", "--num-prompts", "3", "--header", "X-Trace=abc", "--api-key", "sk-1",
                   "--request-id-prefix", "t-", "--extra-body", '{"top_k": 5, "max_tokens": 1}', "--quiet"])
        s = stats(url)
    assert p.returncode == 0, p.stderr
    h = {k.lower(): v for k, v in s["headers"][0].items()}
    assert h["authorization"] == "Bearer sk-1" and h["x-trace"] == "abc"
    assert sorted(x["x-request-id"] for x in ({k.lower(): v for k, v in hh.items()} for hh in s["headers"])) == \
        ["t-0", "t-1", "t-2"]
    b = s["bodies"][0]
    # --model absent: the first id of GET /v1/models; --extra-body overrides in place
    assert b["model"] == "sse-test" and b["top_k"] == 5 and b["max_tokens"] == 1
    assert list(b).index("max_tokens") < list(b).index("stream")


def test_prompts_realigned_to_a_server_tokenizer(tiny_model):
    with sse_server("--tokenize") as url:
        p = bench(common(url, tiny_model, n=4, inp=20, out=2, extra=["--model", "sse-test"]))
        s = stats(url)
    assert p.returncode == 0, p.stderr
    assert "WARNING: tokenizer mismatch (server=" in p.stdout and "re-aligning prompts." in p.stdout
    # the server counts characters: every prompt was cut to its token target
    assert all(len(b["prompt"]) <= 20 for b in s["bodies"])


def test_progress_output_modes(tiny_model):
    with sse_server("--ttft-ms", "5", "--itl-ms", "1") as url:
        args = common(url, tiny_model, n=4, out=2)
        plain = bench(args)
        quiet = bench(args + ["--quiet"])
        # on a terminal: a redrawn bar
        master, slave = pty.openpty()
        tty = subprocess.run([binpath("glm-bench"), *args], stdout=subprocess.PIPE, stderr=slave, timeout=60)
        os.close(slave)
        bar = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            bar += chunk
        os.close(master)
    assert plain.returncode == quiet.returncode == tty.returncode == 0
    assert re.search(r"glm-bench: 4/4 requests done, 0 running", plain.stderr)
    assert "requests done" not in quiet.stderr and "Starting main benchmark run" not in quiet.stdout
    assert "Serving Benchmark Result" in quiet.stdout
    assert b"\r100%|" in bar and b"4/4" in bar


def test_sharegpt_dataset(tiny_model):
    with sse_server("--ttft-ms", "2", "--itl-ms", "1") as url:
        p = bench(["--base-url", url, "--model", "sse-test", "--tokenizer", tiny_model, "--dataset-name", "sharegpt",
                   "--dataset-path", str(DATA / "sharegpt_small.json"), "--num-prompts", "5",
                   "--sharegpt-output-len", "3"])
        s = stats(url)
    assert p.returncode == 0, p.stderr
    assert table_value(p.stdout, "Successful requests:") == 5
    convs = json.loads((DATA / "sharegpt_small.json").read_text())
    firsts = {c["conversations"][0]["value"] for c in convs if len(c.get("conversations", [])) >= 2}
    assert all(b["prompt"] in firsts for b in s["bodies"])
    assert all("ignore_eos" not in b for b in s["bodies"])


def test_thousands_of_concurrent_streams(tiny_model):
    """1500 streams open at once from one process (every stream waits 1.5 s
    for its first token, so all are in flight together)."""
    n = 1500
    with sse_server("--ttft-ms", "1500", "--itl-ms", "50") as url:
        p = bench(common(url, tiny_model, n=n, inp=4, out=2), timeout=180)
        s = stats(url)
    assert p.returncode == 0, p.stderr
    assert table_value(p.stdout, "Successful requests:") == n, p.stdout[-3000:]
    assert s["max_open"] >= 1000, s["max_open"]


@pytest.mark.parametrize("args,msg", [
    (["--no-such-flag"], "unknown option --no-such-flag"),
    (["--goodput", "ttft=5"], "Invalid format found for service level objectives"),
    (["--goodput", "itl:5"], "Invalid metric name found, itl: 5"),
    (["--dataset-path", "x.json"], "Cannot use 'random' dataset with --dataset-path"),
    (["--max-concurrency", "0"], "--max-concurrency must be greater than 0"),
    (["--request-rate", "abc"], "--request-rate: invalid float value 'abc'"),
    (["--tokenizer", "/nonexistent/dir"], "not a local directory"),
    (["--base-url", "https://example.com"], "https is not supported"),
    (["--endpoint", "/v1/embeddings"], "URL must end with one of"),
])
def test_bad_arguments_are_refused(tiny_model, args, msg):
    base = ["--base-url", "http://127.0.0.1:9", "--model", "m", "--tokenizer", tiny_model, "--num-prompts", "1"]
    p = bench(base + args, timeout=30)
    assert p.returncode != 0
    assert msg in p.stderr, p.stderr


def _free_port():
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


@contextlib.contextmanager
def glm_serve(model, *args):
    """glm-serve with every real stage on the tiny model, on a free port."""
    port = _free_port()
    args = args or ("--kv-cache-memory-bytes", "64M", "--max-model-len", "1024")
    p = subprocess.Popen([binpath("glm-serve"), model, "--port", str(port), "--served-model-name", "tiny", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("glm-serve: ready at "), line
        yield f"http://127.0.0.1:{port}", "tiny", model
    finally:
        p.terminate()
        assert p.wait(timeout=60) == 0


def test_against_a_real_server(tiny_model):
    """A short run against a real server: glm-serve on the tiny model (every
    stage real), or any OpenAI-compatible server given by GLM_BENCH_URL=...
    GLM_BENCH_TOKENIZER=DIR [GLM_BENCH_MODEL=name] (vLLM, glmpipe elsewhere);
    checks what does not depend on its speed."""
    url = os.environ.get("GLM_BENCH_URL")
    ctx = contextlib.nullcontext((url, os.environ.get("GLM_BENCH_MODEL"), os.environ.get("GLM_BENCH_TOKENIZER"))) \
        if url else glm_serve(tiny_model)
    with ctx as (url, model, tok):
        args = ["--base-url", url, "--tokenizer", tok, "--random-input-len", "64", "--random-output-len", "16",
                "--num-prompts", "8", "--request-rate", "4", "--ignore-eos"]
        if model:
            args += ["--model", model]
        for endpoint in ["/v1/completions", "/v1/chat/completions"]:
            p = bench(args + ["--endpoint", endpoint], timeout=600)
            assert p.returncode == 0, p.stderr
            assert table_value(p.stdout, "Successful requests:") == 8, p.stdout
            assert table_value(p.stdout, "Total generated tokens:") == 8 * 16, p.stdout


def test_scripted_timing_through_glm_serve(tiny_model, tmp_path):
    """glm-serve with glm-replay as the engine, one step every 25 ms: the
    inter-token latency glm-bench measures through every real stage and the
    gateway is the script's step (loose bounds: 2 shared cores), and TTFT
    is a few steps at most."""
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"output_ids": list(range(300, 340))}) + "\n")
    engine = f"glm-replay --script {script} --step-ms 25"
    with glm_serve(tiny_model, "--stage", f"engine={engine}") as (url, model, tok):
        p = bench(["--base-url", url, "--model", model, "--tokenizer", tok, "--random-input-len", "32",
                   "--random-output-len", "40", "--num-prompts", "6", "--max-concurrency", "3",
                   "--percentile-metrics", "ttft,itl", "--metric-percentiles", "50"], timeout=300)
    assert p.returncode == 0, p.stderr
    assert table_value(p.stdout, "Successful requests:") == 6, p.stdout
    assert table_value(p.stdout, "Total generated tokens:") == 6 * 40, p.stdout
    assert 20 <= table_value(p.stdout, "Median ITL (ms):") <= 40, p.stdout
    assert table_value(p.stdout, "Median TTFT (ms):") <= 150, p.stdout


def test_result_file_warmups_ready_check_metadata(tiny_model, tmp_path):
    with sse_server("--ttft-ms", "5", "--itl-ms", "1") as url:
        args = common(url, tiny_model, n=3, out=2, extra=[
            "--save-result", "--result-dir", str(tmp_path / "res"), "--metadata", "gpu=none", "run=1",
            "--num-warmups", "2", "--ready-check-timeout-sec", "5", "--request-rate", "10", "--label", "lbl"])
        p = bench(args)
        s = stats(url)
        p2 = bench(common(url, tiny_model, n=2, out=2, extra=["--append-result", "--result-filename",
                                                             str(tmp_path / "a.json"), "--quiet"]))
        p3 = bench(common(url, tiny_model, n=2, out=2, extra=["--append-result", "--result-filename",
                                                             str(tmp_path / "a.json"), "--quiet"]))
    assert p.returncode == p2.returncode == p3.returncode == 0, p.stderr
    assert "Initial test run completed." in p.stdout and "Warming up with 2 requests..." in p.stdout
    assert s["requests"] == 1 + 2 + 3          # ready check, warm-ups, the run
    files = list((tmp_path / "res").iterdir())
    assert len(files) == 1 and re.fullmatch(r"lbl-10\.0qps-sse-test-\d{8}-\d{6}\.json", files[0].name), files
    r = json.loads(files[0].read_text())
    assert list(r)[:12] == ["date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts",
                            "gpu", "run", "request_rate", "burstiness", "max_concurrency"]
    assert r["gpu"] == "none" and r["run"] == "1" and r["request_rate"] == 10.0 and r["completed"] == 3
    assert "ttfts" not in r and "latencies" in r          # without --save-detailed, as vLLM
    lines = (tmp_path / "a.json").read_text().split("\n")
    assert len(lines) == 2 and all(json.loads(x)["completed"] == 2 for x in lines)


def test_request_timeout(tiny_model):
    with sse_server("--ttft-ms", "4000", "--itl-ms", "1") as url:
        t = time.monotonic()
        p = bench(common(url, tiny_model, n=2, out=2, extra=["--request-timeout", "1"]))
        took = time.monotonic() - t
    assert p.returncode == 0, p.stderr
    assert table_value(p.stdout, "Failed requests:") == 2
    assert "2: timeout: no complete response in time" in p.stdout
    assert took < 3.5


def test_custom_dataset_applies_the_chat_template(tiny_model, tmp_path):
    ds = tmp_path / "p.jsonl"
    ds.write_text(json.dumps({"prompt": "What is the capital of France?", "output_tokens": 3}) + "\n")
    with sse_server("--ttft-ms", "2", "--itl-ms", "1") as url:
        p = bench(["--base-url", url, "--model", "sse-test", "--tokenizer", tiny_model, "--dataset-name", "custom",
                   "--dataset-path", str(ds), "--custom-output-len", "-1", "--num-prompts", "2"])
        s = stats(url)
    assert p.returncode == 0, p.stderr
    # the GLM template's rendering, sent as the completion prompt; the file's output_tokens as max_tokens;
    # one row oversampled to --num-prompts
    assert len(s["bodies"]) == 2
    rendered = subprocess.run([binpath("glm-tokenize"), "--model", tiny_model, "--render"], check=True,
                              input=json.dumps({"messages": [{"role": "user", "content": "What is the capital of France?"}]}),
                              capture_output=True, text=True).stdout
    assert rendered.startswith("[gMASK]<sop>") and "What is the capital of France?" in rendered
    for b in s["bodies"]:
        assert b["prompt"] == rendered
        assert b["max_tokens"] == 3 and "ignore_eos" not in b
