#!/usr/bin/env python3
"""Tokenizer benchmark, Python side (test tooling; see tests/bench/bench_tokenizer.sh).

  bench_hf.py gen OUT.txt MB       write the deterministic mixed bench text:
                                   documents separated by \\x1e (never encoded)
  bench_hf.py load TOKENIZER.json  HF load time only (best of 3)
  bench_hf.py hf TOKENIZER.json TEXT
                                   HF tokenizers, one thread, encode() per document,
                                   add_special_tokens=False; prints the same summary
                                   line as the C bench (ids count + FNV hash of ids,
                                   so the two can be compared); process CPU time
"""
import os
import random
import sys
import time

WORDS = ("the of and to in is was for that with as on by at from it his an were are which this be "
         "or has had not but what all when there can more if no out so said who time about would up "
         "into them some could than other these its two first then way new because did people many "
         "system model token server request response memory thread process network value error data "
         "function return struct pointer buffer cache latency throughput kernel stream batch queue").split()
CODE = ['def {n}(x, y=None):\n    """Return {n} of x."""\n    if y is None:\n        y = []\n    for i in range(len(x)):\n        y.append(x[i] * {k})\n    return y\n',
        'static int {n}(const char *s, size_t n)\n{{\n\tsize_t i;\n\tfor (i = 0; i < n; i++) {{\n\t\tif (s[i] == \'\\n\') return (int)i + {k};\n\t}}\n\treturn -1;\n}}\n',
        '{{"id": {k}, "name": "{n}", "tags": ["a", "b"], "score": {k}.5, "ok": true, "next": null}}\n',
        '<div class="{n}"><a href="https://example.com/{n}?id={k}&lang=en">link {k}</a></div>\n']
MISC = ["Привет, как дела? Всё хорошо.", "مرحبا بكم في النظام", "नमस्ते, आप कैसे हैं?",
        "Tiếng Việt có dấu rất đẹp.", "日本語の文章とカタカナ。", "한국어 문장입니다.", "Ελληνικά γράμματα",
        "emoji 😀👍🏽🎉 and 👨‍👩‍👧", "naïve café façade — “quotes” ‘single’ …", "ﬁnal ① ² ½"]


def gen(path, mb):
    rng = random.Random(20261126)
    out = []
    size = 0
    target = int(mb * 1e6)
    while size < target:
        parts = []
        for _ in range(rng.randint(3, 12)):
            r = rng.random()
            if r < 0.6:
                n = rng.randint(5, 40)
                ws = [rng.choice(WORDS) for _ in range(n)]
                ws[0] = ws[0].capitalize()
                for j in range(1, n):
                    q = rng.random()
                    if q < 0.05:
                        ws[j] += rng.choice(["'s", "'re", "'ll", "n't", "'S"])
                    elif q < 0.1:
                        ws[j] += ","
                    elif q < 0.12:
                        ws[j] = ws[j].upper()
                    elif q < 0.15:
                        ws[j] = str(rng.randint(0, 10 ** rng.randint(1, 7)))
                parts.append(" ".join(ws) + rng.choice([".", "!", "?", ":"]) + rng.choice([" ", "\n", "\n\n", "  "]))
            elif r < 0.75:
                parts.append(rng.choice(CODE).format(n=rng.choice(WORDS) + "_" + rng.choice(WORDS), k=rng.randint(0, 999)))
            elif r < 0.85:
                parts.append("".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(5, 60)))
                             + rng.choice(["。", "，", "！", "\n"]))
            else:
                parts.append(rng.choice(MISC) + rng.choice([" ", "\n", "\t"]))
        doc = "".join(parts)
        out.append(doc)
        size += len(doc.encode("utf-8")) + 1
    with open(path, "w", encoding="utf-8") as f:
        f.write("\x1e".join(out))


def fnv(ids, h):
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001b3) & 0xffffffffffffffff
    return h


def hf(tokpath, textpath):
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer
    t0 = time.process_time()
    tk = Tokenizer.from_file(tokpath)
    load_ms = (time.process_time() - t0) * 1e3
    with open(textpath, encoding="utf-8") as f:
        docs = f.read().split("\x1e")
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    best = None
    for _ in range(3):
        t0 = time.process_time()
        res = [tk.encode(d, add_special_tokens=False).ids for d in docs]
        dt = time.process_time() - t0
        best = dt if best is None or dt < best else best
    h = 0xcbf29ce484222325
    n = 0
    for ids in res:
        h = fnv(ids, h)
        n += len(ids)
    print("hf-tokenizers: load %.0f ms, encode %.2f MB/s (%d docs, %.1f MB, best of 3), ids %d hash %016x"
          % (load_ms, nbytes / best / 1e6, len(docs), nbytes / 1e6, n, h))


def load(tokpath):
    from tokenizers import Tokenizer
    best = None
    for _ in range(3):
        t0 = time.process_time()
        Tokenizer.from_file(tokpath)
        dt = time.process_time() - t0
        best = dt if best is None or dt < best else best
    print("hf-tokenizers: load %.0f ms" % (best * 1e3))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1] == "load":
        load(sys.argv[2])
    else:
        hf(sys.argv[2], sys.argv[3])
