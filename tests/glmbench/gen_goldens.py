"""Goldens for glm-bench, made by vLLM 0.33.0's own benchmark code.

Run by hand with the reference environment (CI never needs vLLM):

    /work/vref-venv/bin/python tests/glmbench/gen_goldens.py

It writes tests/data/glmbench/*.json:
  rng.json       numpy default_rng integers, legacy np.random.gamma, Python
                 random.shuffle / choice streams (the generators vLLM draws from)
  stats.json     np.mean / std / median / percentile of assorted arrays
  arrivals.json  the send times vllm.benchmarks.serve.get_request produces
  stream.json    raw SSE byte chunks through vLLM's request functions (a fake
                 session and a scripted clock): messages and per-request outputs
  payload.json   the JSON bodies vLLM posts
  report.json    per-request outputs through vllm.benchmarks.serve.benchmark():
                 the printed result table and the result dict
  datasets.json  RandomDataset / ShareGPTDataset / CustomDataset samples for
                 the real tokenizers in ../shared/data/tokenizers
Floats are stored as JSON numbers in Python's repr, which round-trips exactly.
"""
import asyncio
import contextlib
import io
import json
import math
import os
import pathlib
import random
import sys
import types

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "glmbench"
SHARED = pathlib.Path(os.environ.get("GLM_SHARED", ROOT.parent / "shared"))
TOKS = SHARED / "data" / "tokenizers"

import vllm.benchmarks.serve as serve  # noqa: E402
import vllm.benchmarks.lib.endpoint_request_func as erf  # noqa: E402
from vllm.benchmarks.datasets import datasets as vds  # noqa: E402
from vllm.tokenizers import get_tokenizer  # noqa: E402


def dump(name, obj):
    p = OUT / name
    p.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n")
    print("wrote", p)


# ---------------------------------------------------------------- rng

def gen_rng():
    pcg = []
    for seed in [0, 1, 42, 123456789, 2**32 - 1]:
        g = np.random.default_rng(seed)
        calls = []
        for low, high, size in [(0, 151329, 40), (100, 1001, 9), (7, 8, 3), (0, 2**32, 5), (-5, 2**40, 6),
                                (1, 3, 17), (0, 154820, 33)]:
            calls.append({"low": low, "high": high, "values": g.integers(low, high, size=size).tolist()})
        pcg.append({"seed": seed, "calls": calls})
    legacy = []
    for seed in [0, 7, 2**32 - 1]:
        np.random.seed(seed)
        calls = []
        for shape, scale in [(1.0, 0.1), (0.5, 0.4), (2.5, 0.04), (0.1, 1.0), (7.0, 0.02), (1.0, 2.0)]:
            calls.append({"shape": shape, "scale": scale, "values": [np.random.gamma(shape=shape, scale=scale)
                                                                    for _ in range(25)]})
        legacy.append({"seed": seed, "calls": calls})
    py = []
    for seed in [0, 1, 2**40 + 3, -9]:
        random.seed(seed)
        calls = []
        for n in [1, 2, 10, 1000, 70000]:
            x = list(range(n))
            random.shuffle(x)
            calls.append({"shuffle": n, "values": x if n <= 1000 else x[:50] + x[-50:]})
        calls.append({"choice": 37, "values": [random.choice(range(37)) for _ in range(30)]})
        py.append({"seed": seed, "calls": calls})
    dump("rng.json", {"pcg64": pcg, "legacy_gamma": legacy, "python": py})


# ---------------------------------------------------------------- stats

def gen_stats():
    cases = []
    rng = np.random.default_rng(3)
    for n in [1, 2, 3, 7, 8, 9, 16, 17, 100, 127, 128, 129, 257, 1000, 4097]:
        a = (rng.gamma(2.0, 0.01, size=n) + rng.random(n) * 1e-3).tolist()
        ps = [0, 1, 25, 50, 90, 99, 99.9, 100]
        cases.append({"values": a, "mean": float(np.mean(a)), "std": float(np.std(a)), "median": float(np.median(a)),
                      "percentiles": ps, "pct": [float(np.percentile(a, p)) for p in ps]})
    cases.append({"values": [0.25, 0.25, 0.25], "mean": 0.25, "std": float(np.std([0.25] * 3)), "median": 0.25,
                  "percentiles": [99], "pct": [float(np.percentile([0.25] * 3, 99))]})
    dump("stats.json", cases)


# ---------------------------------------------------------------- arrivals

def gen_arrivals():
    cases = []
    for n, rate, burst, seed, ramp, rs, re_ in [
        (20, 10.0, 1.0, 0, None, None, None), (50, 2.0, 0.5, 1, None, None, None),
        (30, 100.0, 3.0, 7, None, None, None), (10, 5.0, float("inf"), 0, None, None, None),
        (8, float("inf"), 1.0, 0, None, None, None), (25, float("inf"), 1.0, 3, "linear", 1, 20),
        (25, float("inf"), 2.0, 4, "exponential", 2, 32), (1, 4.0, 1.0, 0, None, None, None)]:
        np.random.seed(seed)
        sleeps = []

        async def fake_sleep(t):
            sleeps.append(t)

        fake_time = types.SimpleNamespace(time=lambda: 0.0, perf_counter=lambda: 0.0)
        reqs = [vds.SampleRequest(prompt=str(i), prompt_len=1, expected_output_len=1) for i in range(n)]

        async def collect():
            out = []
            async for req, r in serve.get_request(reqs, rate, burst, ramp, rs, re_):
                out.append(r)
            return out

        with patched(serve, "time", fake_time), patched(serve.asyncio, "sleep", fake_sleep):
            rates = asyncio.run(collect())
        # every sleep is delay_ts[i] (the clock stands still); zero delays do not sleep
        cases.append({"n": n, "rate": "inf" if math.isinf(rate) else rate,
                      "burstiness": "inf" if math.isinf(burst) else burst, "seed": seed, "ramp": ramp,
                      "ramp_start": rs, "ramp_end": re_, "sleeps": sleeps,
                      "rates": ["inf" if math.isinf(r) else r for r in rates]})
    dump("arrivals.json", cases)


@contextlib.contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


# ---------------------------------------------------------------- stream rules

class FakeContent:
    def __init__(self, chunks):
        self.chunks = chunks

    async def iter_any(self):
        for c in self.chunks:
            yield c


class FakeResponse:
    def __init__(self, status, chunks, reason="OK"):
        self.status = status
        self.reason = reason
        self.content = FakeContent(chunks)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *a):
        return False


class FakeSession:
    def __init__(self, status, chunks, reason="OK"):
        self.resp = FakeResponse(status, chunks, reason)
        self.posted = []

    def post(self, url, json=None, headers=None):
        self.posted.append({"url": url, "json": json, "headers": headers})
        return self.resp


def d(obj):
    return "data: " + json.dumps(obj) + "\n\n"


def cmpl(text, usage=None, fin=None):
    o = {"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": fin}]}
    return o


def chat(delta, fin=None):
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]}


def usage(pt, ct):
    return {"id": "c", "choices": [], "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}}


STREAM_CASES = [
    ("completions", "plain", [d(cmpl(" a")) + d(cmpl(" b")), d(cmpl(" c", fin="length")), d(usage(7, 3)),
                              "data: [DONE]\n\n"]),
    ("completions", "split message and empty text", ["data: {\"choices\": [{\"te", "xt\": \"\"}]}\n", "\n",
                                                      d(cmpl("x")), d(usage(2, 2)), "data: [DONE]\n\n"]),
    ("completions", "no blank line after complete JSON", ["data: " + json.dumps(cmpl("p")), "\n\n" + d(cmpl("q")),
                                                          "data: [DONE]"]),
    ("completions", "comments and whitespace", [": ping\n\n", "  " + d(cmpl("u")) + "\n\n\n", ": keep-alive\n\n",
                                                d(cmpl("v")), "data: " + json.dumps(usage(4, 2)) + "   \n\n"]),
    ("completions", "no usage", [d(cmpl("one")), d(cmpl(" two")), "data: [DONE]\n\n"]),
    ("completions", "usage inside a choice chunk is not read", [d({**cmpl("z"), "usage": {"completion_tokens": 9}}),
                                                                 d(usage(5, 1))]),
    ("completions", "server metrics", [d(cmpl("m")), d({**usage(3, 1), "metrics": {"queue_time_ms": 12.5,
                                                                                     "time_to_first_token_ms": 40}})]),
    ("completions", "crlf framing", ["data: " + json.dumps(cmpl("r")) + "\r\n\r\n",
                                     "data: " + json.dumps(cmpl("s")) + "\r\n\r\n", "data: [DONE]\r\n\r\n"]),
    ("completions", "utf-8 split inside a character", [b"data: {\"choices\": [{\"text\": \"caf\xc3", b"\xa9\"}]}\n\n",
                                                       d(usage(1, 1))]),
    ("completions", "only usage: failure", [d(usage(3, 0)), "data: [DONE]\n\n"]),
    ("completions", "not JSON: failure", [d(cmpl("a")), "data: {oops}\n\n", d(cmpl("b"))]),
    ("completions", "empty choices then text", [d({"choices": []}), d(cmpl("t")), d(usage(1, 1))]),
    ("completions", "two usage chunks", [d(cmpl("a")), d(usage(3, 1)), d(usage(4, 2))]),
    ("chat", "role chunk not counted", [d(chat({"role": "assistant", "content": ""})), d(chat({"content": "Hi"})),
                                        d(chat({"content": " there"})), d(chat({}, fin="stop")), d(usage(11, 2)),
                                        "data: [DONE]\n\n"]),
    ("chat", "reasoning, tools, empty content", [d(chat({"role": "assistant", "content": ""})),
                                                 d(chat({"reasoning": "think"})), d(chat({"content": ""})),
                                                 d(chat({"tool_calls": [{"index": 0, "function": {"name": "f"}}]})),
                                                 d(chat({"content": None, "reasoning": ""})),
                                                 d(chat({"function_call": {"name": "g"}})), d(usage(9, 5))]),
    ("chat", "role and content together", [d(chat({"role": "assistant", "content": "Yes"})), d(chat({"content": "!"})),
                                           d(usage(3, 2))]),
    ("chat", "no output: failure", [d(chat({"role": "assistant", "content": ""})), d(chat({}, fin="stop")),
                                    d(usage(5, 0)), "data: [DONE]\n\n"]),
    ("chat", "many small pieces", ["da", "ta: ", json.dumps(chat({"content": "a"}))[:5],
                                   json.dumps(chat({"content": "a"}))[5:], "\n", "\n", d(chat({"content": "b"})),
                                   ": x\n\n", d(usage(2, 2))]),
]


def run_stream_case(endpoint, chunks, status=200):
    chunks = [c.encode() if isinstance(c, str) else c for c in chunks]
    ticks = [0]

    def clock():
        ticks[0] += 1
        return 100.0 + 0.0125 * ticks[0] + (0.001 * ticks[0]) ** 2

    inp = erf.RequestFuncInput(prompt="hello", api_url="http://x/v1/" + ("chat/completions" if endpoint == "chat"
                                                                         else "completions"),
                               prompt_len=17, output_len=8, model="m")
    fn = erf.async_request_openai_chat_completions if endpoint == "chat" else erf.async_request_openai_completions
    sess = FakeSession(status, chunks, "Not Found" if status != 200 else "OK")
    with patched(erf.time, "perf_counter", clock):
        out = asyncio.run(fn(inp, sess))
    h = erf.StreamedResponseHandler()
    msgs = []
    for c in chunks:
        msgs += h.add_chunk(c)
    return out, msgs


def gen_stream():
    cases = []
    for endpoint, name, chunks in STREAM_CASES:
        out, msgs = run_stream_case(endpoint, chunks)
        cases.append({"endpoint": endpoint, "name": name,
                      "chunks": [c if isinstance(c, str) else c.decode("latin-1") for c in chunks],
                      "latin1": [not isinstance(c, str) for c in chunks], "messages": msgs,
                      "clock": "100 + 0.0125 k + (0.001 k)^2 for the k-th reading",
                      "out": {"success": out.success, "error": out.error if out.success is False and
                              out.error.startswith("Never") else None,
                              "ttft": out.ttft, "itl": out.itl, "latency": out.latency,
                              "output_tokens": out.output_tokens or 0, "prompt_len": out.prompt_len,
                              "generated_text": out.generated_text, "start_time": out.start_time,
                              "server_queue_time": out.server_queue_time, "server_ttft": out.server_ttft}})
    dump("stream.json", cases)


# ---------------------------------------------------------------- payloads

def gen_payload():
    cases = []
    for endpoint, ignore_eos, logprobs, extra in [
        ("completions", False, None, None), ("completions", True, 3, {"temperature": 0.0, "top_k": 20}),
        ("completions", True, None, {"max_tokens": 5, "stop": ["\n"], "x": "é"}),
        ("chat", False, None, None), ("chat", True, None, {"temperature": 0.7, "chat_template_kwargs":
                                                           {"enable_thinking": False}, "stream": True})]:
        inp = erf.RequestFuncInput(prompt="Hello, wörld \"q\" \\ \n\t 🙂", api_url="http://x/v1/" +
                                   ("chat/completions" if endpoint == "chat" else "completions"), prompt_len=5,
                                   output_len=42, model="zai-org/GLM-5.2-FP8", logprobs=logprobs,
                                   ignore_eos=ignore_eos, extra_body=extra)
        fn = erf.async_request_openai_chat_completions if endpoint == "chat" else erf.async_request_openai_completions
        sess = FakeSession(200, [b"data: [DONE]\n\n"])
        asyncio.run(fn(inp, sess))
        cases.append({"endpoint": endpoint, "prompt": inp.prompt, "model": inp.model, "output_len": inp.output_len,
                      "ignore_eos": ignore_eos, "logprobs": logprobs, "extra_body": extra,
                      "body": json.dumps(sess.posted[0]["json"])})
    dump("payload.json", cases)


# ---------------------------------------------------------------- report

def mk_out(success=True, start=0.0, ttft=0.0, itl=(), latency=0.0, output_tokens=0, prompt_len=10, text="",
           error="", queue=None, server_queue=None, server_ttft=None):
    o = erf.RequestFuncOutput()
    o.success, o.start_time, o.ttft, o.itl, o.latency = success, start, ttft, list(itl), latency
    o.output_tokens, o.prompt_len, o.generated_text, o.error = output_tokens, prompt_len, text, error
    o.server_queue_time, o.server_ttft = server_queue, server_ttft
    return o


def out_json(o):
    return {"success": o.success, "start_time": o.start_time, "ttft": o.ttft, "itl": o.itl, "latency": o.latency,
            "output_tokens": o.output_tokens or 0, "prompt_len": o.prompt_len, "generated_text": o.generated_text,
            "error": o.error, "client_queue_time": o.client_queue_time, "server_queue_time": o.server_queue_time,
            "server_ttft": o.server_ttft}


def run_report(outputs, arrivals, dur, tokenizer, *, request_rate=float("inf"), max_concurrency=None,
               percentile_metrics="ttft,tpot,itl", percentiles="99", goodput=None):
    """benchmark() with a request function that returns the scripted outputs
    and a clock that makes the arrivals and the duration what we say."""
    n = len(outputs)
    base = 5000.0
    readings = [base] + [base + a for a in arrivals] + [base + dur]
    it = iter(readings)
    fake_time = types.SimpleNamespace(perf_counter=lambda: next(it), time=lambda: 0.0)

    async def fake_request(request_func_input, session, pbar=None):
        o = outputs[int(request_func_input.prompt)]
        return o

    async def no_sleep(t):
        return None

    for o in outputs:   # start times are given relative to the run's start
        o.start_time += base
    reqs = [vds.SampleRequest(prompt=str(i), prompt_len=outputs[i].prompt_len, expected_output_len=8)
            for i in range(n)]
    buf = io.StringIO()
    with patched(serve, "time", fake_time), patched(serve.asyncio, "sleep", no_sleep), \
            patched(serve, "ASYNC_REQUEST_FUNCS", {"openai": fake_request}), contextlib.redirect_stdout(buf):
        res = asyncio.run(serve.benchmark(
            task_type=serve.TaskType.GENERATION, endpoint_type="openai", api_url="http://127.0.0.1:9/v1/completions",
            base_url="http://127.0.0.1:9", model_id="m", model_name=None, tokenizer=tokenizer, input_requests=reqs,
            logprobs=None, request_rate=request_rate, burstiness=1.0, disable_tqdm=True, num_warmups=0,
            profile=False, selected_percentile_metrics=percentile_metrics.split(","),
            selected_percentiles=[float(p) for p in percentiles.split(",")], ignore_eos=True,
            goodput_config_dict=serve.parse_goodput(goodput) if goodput else {}, max_concurrency=max_concurrency,
            lora_modules=None, extra_headers=None, extra_body=None, ready_check_timeout_sec=0))
    text = buf.getvalue()
    start = text.index("Failed requests during") if "Failed requests during" in text else \
        text.index("=" * 12 + " Serving")
    table = text[start:]
    table = "".join(line + "\n" for line in table.splitlines() if not line.startswith("tip: "))
    return {"outputs": [out_json(o) for o in outputs], "duration": res["duration"], "has_tokenizer": bool(tokenizer),
            "tokenizer": getattr(tokenizer, "_glm_name", None), "request_rate": "inf" if math.isinf(request_rate)
            else request_rate, "max_concurrency": max_concurrency, "percentile_metrics": percentile_metrics,
            "metric_percentiles": percentiles, "goodput": goodput, "table": table, "result": res,
            "result_json": json.dumps(res)}


class Truthy:
    """A stand-in tokenizer: vLLM only tests it for truth when every output has a usage count."""
    _glm_name = None


def gen_report():
    rs = random.Random(11)
    cases = []
    # A: five plain completions
    outs, arr = [], []
    for i in range(5):
        itl = [0.01 + 0.001 * k + 0.0001 * i for k in range(9)]
        outs.append(mk_out(start=0.2 * i + 0.001 * i * i, ttft=0.05 + 0.01 * i, itl=itl, latency=0.05 + 0.01 * i + sum(itl),
                           output_tokens=10, prompt_len=100 + i))
        arr.append(0.2 * i)
    cases.append({"name": "plain", **run_report(outs, arr, 1.25, Truthy())})
    # B: failures, goodput, concurrency, finite rate, more percentiles and metrics
    outs, arr = [], []
    for i in range(12):
        if i in (3, 8):
            outs.append(mk_out(success=False, start=0.1 * i, error="Not Found" if i == 3 else
                               "Never received a valid chunk to calculate TTFT.This response will be marked as failed!"))
        else:
            k = 3 + i % 5
            itl = [rs.uniform(0.005, 0.03) for _ in range(k)]
            ttft = rs.uniform(0.02, 0.2)
            outs.append(mk_out(start=0.1 * i + rs.uniform(0, 0.3), ttft=ttft, itl=itl,
                               latency=ttft + sum(itl) + rs.uniform(0, 0.01), output_tokens=k + 1 + (i % 3),
                               prompt_len=50 + 7 * i))
        arr.append(0.1 * i)
    cases.append({"name": "failures-goodput-concurrency", **run_report(
        outs, arr, 2.5, Truthy(), request_rate=4.0, max_concurrency=4,
        percentile_metrics="ttft,tpot,itl,e2el,client_queue_time,e2el_including_client_queue",
        percentiles="25,50,99.9,99", goodput=["ttft:150", "tpot:20", "e2el:300"])})
    # C: one-token outputs and a missing usage count re-tokenized by a real tokenizer
    qwen = TOKS / "qwen3"
    if qwen.exists():
        tok = get_tokenizer(str(qwen))
        tok._glm_name = "qwen3"
        outs = [mk_out(start=0.0, ttft=0.3, itl=[], latency=0.3, output_tokens=1),
                mk_out(start=0.1, ttft=0.2, itl=[0.05, 0.04], latency=0.29, output_tokens=0,
                       text="Hello, world! Ünïcödé 東京 🙂 tokens"),
                mk_out(start=0.2, ttft=0.25, itl=[0.01] * 3, latency=0.28, output_tokens=4)]
        cases.append({"name": "recount-with-tokenizer", **run_report(outs, [0, 0, 0], 0.75, tok,
                                                                    percentile_metrics="ttft,tpot,itl,e2el")})
    # D: no tokenizer (--skip-tokenizer-init): outputs without usage count 1
    outs = [mk_out(start=1.0 * i, ttft=0.1, itl=[0.02, 0.03], latency=0.16, output_tokens=0, text="abc")
            for i in range(3)]
    cases.append({"name": "no-tokenizer", **run_report(outs, [0, 1, 2], 3.5, None,
                                                       percentile_metrics="ttft,tpot,itl,e2el")})
    # E: many requests with long ITL lists (pairwise sums past 128), server metrics on some
    outs, arr = [], []
    t = 0.0
    for i in range(100):
        t += rs.expovariate(20)
        k = rs.randint(0, 160)
        itl = [rs.expovariate(1 / 0.012) for _ in range(k)]
        ttft = rs.uniform(0.01, 1.5)
        sq = rs.uniform(0, 0.1) if i % 4 == 0 else None
        outs.append(mk_out(start=t + rs.uniform(0, 0.001), ttft=ttft, itl=itl,
                           latency=ttft + sum(itl) + rs.uniform(0, 0.002), output_tokens=k + 1,
                           prompt_len=rs.randint(1, 4000), server_queue=sq,
                           server_ttft=(ttft * 0.9 if sq is not None else None)))
        arr.append(t)
    big = run_report(outs, arr, t + 4.0, Truthy(), percentile_metrics="ttft,tpot,itl,e2el",
                     percentiles="50,90,95,99")
    # the per-request lists repeat the outputs: not stored twice
    big["dropped_keys"] = ["input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times", "queue_times",
                           "generated_texts", "errors", "server_queue_times", "server_ttfts"]
    for k in big["dropped_keys"]:
        big["result"].pop(k, None)
    big["result_json"] = json.dumps(big["result"])
    cases.append({"name": "many-requests", **big})
    for c in cases:
        del c["result"]
    dump("report.json", cases)


# ---------------------------------------------------------------- datasets

def gen_datasets():
    cases = []
    if not TOKS.exists():
        print("no shared tokenizers: datasets.json not written", file=sys.stderr)
        return
    # (not deepseek_v3: transformers 5 loads it as a LlamaTokenizer whose decode
    # skips the ByteLevel decoder, so its prompts are not what the
    # tokenizer.json decodes to; GLM's PreTrainedTokenizerFast is not affected)
    for name in ["qwen3", "llama3"]:
        tok = get_tokenizer(str(TOKS / name))
        for seed, n, inp, outl, rr, prefix in [(0, 8, 64, 16, 0.0, 0), (7, 6, 100, 30, 0.3, 12),
                                               (3, 5, 40, 8, {"input": 0.5, "output": 0.1}, 0),
                                               (11, 4, 300, 1, 0.0, 5)]:
            ds = vds.RandomDataset(random_seed=seed)
            got = ds.sample(tokenizer=tok, num_requests=n, prefix_len=prefix, range_ratio=rr, input_len=inp,
                            output_len=outl, request_id_prefix="rnd-")
            cases.append({"kind": "random", "tokenizer": name, "seed": seed, "num_prompts": n, "input_len": inp,
                          "output_len": outl, "range_ratio": rr, "prefix_len": prefix, "vocab_size": tok.vocab_size,
                          "num_special": tok.num_special_tokens_to_add(),
                          "samples": [{"prompt": s.prompt, "prompt_len": s.prompt_len,
                                       "output_len": s.expected_output_len, "request_id": s.request_id}
                                      for s in got]})
    tok = get_tokenizer(str(TOKS / "qwen3"))
    sg = str(OUT / "sharegpt_small.json")
    for seed, n, olen, no_shuffle, no_over in [(0, 12, None, False, False), (5, 40, None, False, False),
                                               (0, 10, 32, True, False), (2, 40, 16, False, True)]:
        got = vds.ShareGPTDataset(random_seed=seed, dataset_path=sg, disable_shuffle=no_shuffle).sample(
            tokenizer=tok, num_requests=n, output_len=olen, request_id_prefix="sg-", no_oversample=no_over)
        cases.append({"kind": "sharegpt", "tokenizer": "qwen3", "path": "sharegpt_small.json", "seed": seed,
                      "num_prompts": n, "output_len": olen, "disable_shuffle": no_shuffle, "no_oversample": no_over,
                      "samples": [{"prompt": s.prompt, "prompt_len": s.prompt_len, "output_len": s.expected_output_len,
                                   "request_id": s.request_id} for s in got]})
    cj = str(OUT / "custom_small.jsonl")
    for seed, n, olen, skip in [(0, 6, -1, True), (1, 20, 64, True), (0, 5, -1, False), (4, 0, 10, False)]:
        got = vds.CustomDataset(random_seed=seed, dataset_path=cj).sample(
            tokenizer=tok, num_requests=n, output_len=olen, skip_chat_template=skip, request_id_prefix="cu-")
        cases.append({"kind": "custom", "tokenizer": "qwen3", "path": "custom_small.jsonl", "seed": seed,
                      "num_prompts": n, "output_len": olen, "skip_chat_template": skip,
                      "samples": [{"prompt": s.prompt, "prompt_len": s.prompt_len, "output_len": s.expected_output_len,
                                   "request_id": s.request_id} for s in got]})
    dump("datasets.json", cases)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    what = sys.argv[1:] or ["rng", "stats", "arrivals", "stream", "payload", "report", "datasets"]
    for w in what:
        globals()["gen_" + w]()
