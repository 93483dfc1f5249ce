#!/usr/bin/env python3
"""Throughput of glm-parse-reasoning and glm-parse-tools in pipe mode.

One request whose output is N tokens long (a token ~ 4 bytes of text, the
way detok emits it: one `delta` per engine step, `tokens_per_delta` tokens
each, with `token_ids`): 60% reasoning, `</think>`, some content, then a
tool call whose long string argument takes the rest, then `</tool_call>`.
The input of glm-parse-tools is what glm-parse-reasoning made of it.

Each stage reads a prepared msgpack file on stdin and writes to /dev/null;
the time is the whole process (start-up included), best of --repeat runs.
Prints a Markdown table: tokens/s and the 100k/10k time ratio.

    tests/bench/bench_parsers.py [--bin build/bin] [--repeat 5]
"""
import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[2]
TOOLS = [{"type": "function", "function": {"name": "write_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}}]
WORDS = ["the ", "model", " is ", "thin", "king", " abo", "ut t", "he q", "uest", "ion.", "\n", " 42 "]


def output_tokens(n):
    """n token strings of a GLM-5-like output."""
    toks = []
    r = int(n * 0.6)
    toks += [WORDS[i % len(WORDS)] for i in range(r)]
    toks += ["</think>", "\n\n", "I'll", " wri", "te i", "t.", "<tool_call>", "write", "_file", "<arg_key>",
             "path", "</arg_key>", "<arg_value>", "/tmp", "/x.py", "</arg_value>", "<arg_key>", "content",
             "</arg_key>", "<arg_value>"]
    while len(toks) < n - 2:
        toks.append(WORDS[len(toks) % len(WORDS)].replace(".", "\"."))
    toks += ["</arg_value>", "</tool_call>"]
    return toks[:n]


def messages(n, per_delta):
    toks = output_tokens(n)
    yield {"type": "start", "id": "bench", "n": 1, "prompt_tokens": 100,
           "context": {"thinking": True, "prompt_ends_in_think": True, "tools": TOOLS, "tool_choice": "auto"}}
    for i in range(0, len(toks), per_delta):
        m = {"type": "delta", "id": "bench", "index": 0, "token_ids": list(range(i, i + per_delta)),
             "text": "".join(toks[i:i + per_delta])}
        if i + per_delta >= len(toks):
            m["finish_reason"] = "stop"
        yield m
    yield {"type": "end", "id": "bench", "usage": {"prompt_tokens": 100, "completion_tokens": n}}


def run(binary, infile, outfile="/dev/null"):
    """Time one process (a path, or a command list) reading infile on stdin."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(infile, "rb") as fi, open(outfile, "wb") as fo:
        subprocess.run([binary] if isinstance(binary, str) else binary, stdin=fi, stdout=fo, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build" / "bin"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--per-delta", default="1,4")
    a = ap.parse_args()
    rsn, tcl = os.path.join(a.bin, "glm-parse-reasoning"), os.path.join(a.bin, "glm-parse-tools")
    sizes = [int(x) for x in a.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for per in (int(x) for x in a.per_delta.split(",")):
            times = {}
            for n in sizes:
                f_rsn, f_tcl = f"{d}/rsn-{n}-{per}.mp", f"{d}/tcl-{n}-{per}.mp"
                with open(f_rsn, "wb") as f:
                    for m in messages(n, per):
                        f.write(msgpack.packb(m))
                run(rsn, f_rsn, f_tcl)               # the tool stage's input = the reasoning stage's output
                for name, binary, infile in (("glm-parse-reasoning", rsn, f_rsn), ("glm-parse-tools", tcl, f_tcl)):
                    best = min(run(binary, infile) for _ in range(a.repeat))
                    times[(name, n)] = best
            for name in ("glm-parse-reasoning", "glm-parse-tools"):
                for n in sizes:
                    wall, cpu = times[(name, n)]
                    ratio = wall / times[(name, sizes[0])][0]
                    rows.append((name, per, n, wall, cpu, n / wall, ratio))
    print("| stage | tokens/delta | tokens | wall s | cpu s | tokens/s | time ratio vs %d |" % sizes[0])
    print("|---|---|---|---|---|---|---|")
    for name, per, n, wall, cpu, tps, ratio in rows:
        print(f"| {name} | {per} | {n} | {wall:.4f} | {cpu:.4f} | {tps/1e6:.2f} M | {ratio:.1f} |")


if __name__ == "__main__":
    main()
