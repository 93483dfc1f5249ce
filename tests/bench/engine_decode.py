#!/usr/bin/env python3
"""Decode throughput of glm-engine at a given batch size (test tooling).

    tests/bench/engine_decode.py --model DIR [--batch 16] [--tokens 64] [--threads N] [--engine-args "-tp 2"]

Runs the engine twice on the same batch of B requests (distinct 16-token
prompts, greedy, ignore_eos): once with max_tokens 1 (load + prefill + one
sample) and once with max_tokens 1 + T. The difference is T decode steps at
batch B, so decode tokens/s = B * T / (t2 - t1). Wall time of whole processes,
best of --repeat runs each.
"""
import argparse
import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("GLM_BIN", os.path.join(ROOT, "build", "bin"))


def run(model, batch, max_tokens, threads, vocab, extra=()):
    import msgpack
    msgs = [{"type": "generate", "id": f"b{i}", "prompt_ids": [(i * 131 + j * 7) % vocab for j in range(16)],
             "sampling": {"temperature": 0, "max_tokens": max_tokens, "ignore_eos": True}} for i in range(batch)]
    data = b"".join(msgpack.packb(m) for m in msgs)
    cmd = [os.path.join(BIN, "glm-engine"), "--model", model, "--max-model-len", "512",
           "--max-num-seqs", str(max(batch, 1)), "--num-gpu-blocks-override", str(batch * 32 + 8)]
    if threads:
        cmd += ["--threads", str(threads)]
    cmd += list(extra)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, input=data, capture_output=True, check=True)
    dt = time.perf_counter() - t0
    u = msgpack.Unpacker()
    u.feed(p.stdout)
    n = sum(len(m["token_ids"]) for m in u if m.get("type") == "tokens")
    assert n == batch * max_tokens, (n, batch * max_tokens)
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engine-args", default="", help="more glm-engine flags, e.g. '-tp 2'")
    a = ap.parse_args()
    extra = a.engine_args.split()
    vocab = json.load(open(os.path.join(a.model, "config.json")))["vocab_size"]
    t1 = min(run(a.model, a.batch, 1, a.threads, vocab, extra) for _ in range(a.repeat))
    t2 = min(run(a.model, a.batch, 1 + a.tokens, a.threads, vocab, extra) for _ in range(a.repeat))
    step = (t2 - t1) / a.tokens
    print(f"batch {a.batch}: {a.tokens} decode steps in {t2 - t1:.3f} s -> {step * 1e3:.2f} ms/step, "
          f"{a.batch / step:.1f} tokens/s (prefill+load run {t1:.3f} s)")


if __name__ == "__main__":
    main()
