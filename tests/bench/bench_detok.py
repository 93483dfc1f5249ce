#!/usr/bin/env python3
"""Throughput of glm-detok in pipe mode, and whether it stays linear.

One request whose output is N tokens: real token ids of mixed text (English,
code, CJK, emoji) from the tiny default model's tokenizer, `tokens_per_msg`
ids per `tokens` message (1 = plain decoding, 4 = MTP-like), with two stop
strings that never match so the stop-string check runs on every byte.
With --logprobs K every token carries its logprob and K alternatives (ids of
the same text, so pieces of characters are named by vLLM's look-back).
Same timing as bench_parsers.py (whole process, best of --repeat).

    tests/bench/bench_detok.py [--bin build/bin] [--repeat 5] [--logprobs K]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_parsers import ROOT, run  # noqa: E402

TEXT = ("The model is thinking about the question, step by step. 42 + 17 = 59.\n"
        "def f(x):\n    return {\"key\": [1, 2, 3], \"value\": x ** 2}\n"
        "日本語のテキストと中文的句子，还有한국어 문장。 Emoji: 👩🏽‍💻🚀✨\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build" / "bin"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--per-msg", default="1,4")
    ap.add_argument("--logprobs", type=int, default=None)
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        model = f"{d}/m"
        subprocess.run([f"{a.bin}/glm-mkmodel", "--preset", "tiny", "--out", model], check=True, capture_output=True)
        ids = json.loads(subprocess.run([f"{a.bin}/glm-tokenize", "--model", model, "--encode"], input=TEXT.encode(),
                                        capture_output=True, check=True).stdout)
        cmd = [f"{a.bin}/glm-detok", "--model", model]
        for per in (int(x) for x in a.per_msg.split(",")):
            times = {}
            for n in sizes:
                path = f"{d}/dtk-{n}-{per}.mp"
                out = [ids[i % len(ids)] for i in range(n)]
                with open(path, "wb") as f:
                    f.write(msgpack.packb({"type": "start", "id": "bench", "n": 1, "prompt_tokens": 10,
                                           "context": {"stop": ["<never-seen-1>", "STOP NOW"], "skip_special_tokens": True}}))
                    for i in range(0, n, per):
                        m = {"type": "tokens", "id": "bench", "index": 0, "token_ids": out[i:i + per]}
                        if a.logprobs is not None:
                            m["logprobs"] = [{"logprob": -0.5, "top": [[out[(j + k) % n], -1.0 - k]
                                                                       for k in range(a.logprobs)]}
                                             for j in range(i, min(i + per, n))]
                        if i + per >= n:
                            m["finish_reason"] = "length"
                        f.write(msgpack.packb(m))
                    f.write(msgpack.packb({"type": "end", "id": "bench", "usage": {"prompt_tokens": 10, "completion_tokens": n}}))
                times[n] = min(run(cmd, path) for _ in range(a.repeat))
            for n in sizes:
                wall, cpu = times[n]
                rows.append((per, n, wall, cpu, n / wall, wall / times[sizes[0]][0]))
    lp = "-" if a.logprobs is None else a.logprobs
    print("| stage | tokens/msg | logprobs | tokens | wall s | cpu s | tokens/s | time ratio vs %d |" % sizes[0])
    print("|---|---|---|---|---|---|---|---|")
    for per, n, wall, cpu, tps, ratio in rows:
        print(f"| glm-detok | {per} | {lp} | {n} | {wall:.4f} | {cpu:.4f} | {tps/1e6:.2f} M | {ratio:.1f} |")


if __name__ == "__main__":
    main()
