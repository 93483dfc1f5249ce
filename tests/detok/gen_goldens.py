#!/usr/bin/env python3
"""Make tests/data/detok/*.json: what vLLM's own V1 output processor makes of
random engine outputs, for glm-detok's differential test
(tests/py/test_detok_goldens.py). Run by hand, CPU only, with the vLLM
reference environment (vllm 0.33.0 installed --no-deps, transformers,
tokenizers, torch CPU):

    make && /work/vref-venv/bin/python tests/detok/gen_goldens.py

It drives vllm.v1.engine.output_processor.OutputProcessor exactly as the
engine core feeds it: one EngineCoreOutput per engine step (new_token_ids,
LogprobsLists rows [sampled, top...], finish_reason STOP/LENGTH and
stop_reason on the last one), RequestOutputKind.DELTA, and records each
step's RequestOutput (text, token_ids, logprob token strings, finish). A step
after vLLM finished the request (a stop string) is not fed: vLLM aborts it.

Tokenizers (rebuilt by the test, never committed; the files record their
sha256 so a change shows):
  tiny        the default model's (glm-mkmodel --preset tiny --seed 0): 960
              BPE tokens with every byte, GLM's 36 added tokens; ids
              996..1023 are embedding rows without a token (padding)
  tiny_added  the same plus three odd added tokens ("«é»" special: its
              ByteLevel bytes are not UTF-8; "Ġend": decodes to " end";
              "日本": raw bytes), for spaces_between_special_tokens
  glm         llama3's tokenizer.json + GLM's added tokens, as
              tests/py/conftest.py builds it (needs ../shared); 28 padded ids

Cases: random ids from encoded text (English, code, CJK, emoji, combining
marks, U+FFFD), single-byte tokens that split multi-byte characters
(complete or cut), invalid bytes, random vocab ids, special and added
tokens, unknown ids; 0-3 stop strings (substrings of the output that span
tokens or start mid-character, prefixes of each other, overlapping,
special-token text, absent ones); include_stop_str_in_output,
skip_special_tokens, spaces_between_special_tokens, min_tokens, logprobs
0-3 with random alternatives; engine finish by length, eos or a
stop_token_ids id. Each case runs at three chunkings: 1, 3, random 1-6.
"""
import argparse
import hashlib
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "py"))

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
from vllm.sampling_params import RequestOutputKind, SamplingParams  # noqa: E402
from vllm.tokenizers import get_tokenizer  # noqa: E402
from vllm.v1.engine import EngineCoreOutput, EngineCoreRequest, FinishReason  # noqa: E402
from vllm.v1.engine.output_processor import OutputProcessor  # noqa: E402
from vllm.v1.outputs import LogprobsLists  # noqa: E402
import vllm  # noqa: E402

PROMPT = "[gMASK]<sop><|user|>\nHi there<|assistant|>"
TINY_EXTRA = [("«é»", True), ("Ġend", False), ("日本", False)]

PHRASES = [
    "Hello, world!", " the answer is 42.", " How's it going?", "\n\n", "    def f(x):\n\treturn x**2",
    " 日本語のテキスト", "中文", " 한국어", " العربية", " Zürich", " naïve café", "e\u0301", " 👩🏽‍💻",
    " 🚀🚀", "🇫🇷", " \ufffd", "END", " STOP", "Observation:", " ab", "abab", "aaa", "<think>", "</think>",
    "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
    " {\"a\": 1}", " €5", " ß", " 𝔘𝔫𝔦", " ﬁne", "\u00a0x", " - item\n", "...", " 123456",
]
SPLIT_CHARS = ["é", "ü", "中", "語", "🚀", "👩‍💻", "€", "한", "🇫🇷", "𝔘", "\ufffd", "ß", "ﬁ"]
BAD_BYTES = [[0x80], [0xFF], [0xC0], [0xF5], [0xE0, 0x80], [0xED, 0xA0, 0x80], [0xF0, 0x9F]]
STOP_EXTRA = ["zzz", "\n\n", "<|user|>", "<think>", "</arg_key>", "🚀", "中文", "\ufffd", "STOP", "END", ". ",
              "abab", "ab", "a"]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()


# ================================================================ tokenizers

def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def make_tiny(dest, bindir, extra):
    subprocess.run([str(bindir / "glm-mkmodel"), "--preset", "tiny", "--seed", "0", "--out", str(dest)],
                   check=True, capture_output=True, timeout=300)
    if extra:
        add_tokens(dest, extra)
    return {"vocab_rows": 1024, "eos": [960, 967, 969]}


def add_tokens(dest, extra):
    """Append added tokens after the last id (the C side does the same edit)."""
    p = dest / "tokenizer.json"
    tok = json.loads(p.read_text())
    base = max(max(tok["model"]["vocab"].values()), max(t["id"] for t in tok["added_tokens"])) + 1
    for off, (content, special) in enumerate(extra):
        tok["added_tokens"].append({"id": base + off, "content": content, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": special})
    p.write_text(json.dumps(tok, ensure_ascii=False))
    (dest / "tokenizer_config.json").unlink()   # its added_tokens_decoder would not list them


def make_glm(dest):
    import conftest
    d, ids = conftest.make_glm_model_dir(dest)
    return {"vocab_rows": json.loads((d / "config.json").read_text())["vocab_size"],
            "eos": [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]}


class Vocab:
    def __init__(self, tk, info):
        self.tk = tk
        hf = tk._tokenizer
        self.hf = hf
        self.n_known = hf.get_vocab_size(with_added_tokens=True)
        self.unknown = list(range(self.n_known, info["vocab_rows"]))
        dec = hf.get_added_tokens_decoder()
        self.special = sorted(i for i, t in dec.items() if t.special)
        self.added = sorted(i for i, t in dec.items() if not t.special)
        self.byte_id = {b: hf.token_to_id(B2U[b]) for b in range(256)}
        assert all(v is not None for v in self.byte_id.values())
        self.eos = info["eos"]

    def encode(self, s):
        return self.hf.encode(s, add_special_tokens=False).ids

    def byte_ids(self, bs):
        return [self.byte_id[b] for b in bs]


# ================================================================ cases

def gen_ids(rng, v, added_bias):
    ids = []
    target = rng.randint(1, 36)
    while len(ids) < target:
        if rng.random() < added_bias:   # runs of added tokens (spaces_between_special_tokens)
            ids += [rng.choice(v.special + v.added) for _ in range(rng.randint(1, 3))]
            continue
        r = rng.random()
        if r < 0.40:
            ids += v.encode(rng.choice(PHRASES))
        elif r < 0.58:   # a character as single bytes, sometimes cut
            bs = list(rng.choice(SPLIT_CHARS).encode())
            if rng.random() < 0.3:
                bs = bs[:rng.randint(1, len(bs))]
            ids += v.byte_ids(bs)
        elif r < 0.66:
            ids += v.byte_ids(rng.choice(BAD_BYTES))
        elif r < 0.78:
            ids += [rng.randrange(v.n_known) for _ in range(rng.randint(1, 3))]
        elif r < 0.88:
            ids.append(rng.choice(v.special + v.added))
        else:
            ids.append(rng.choice(v.unknown))
    return ids[:40]


def gen_stops(rng, v, ids):
    text = v.hf.decode(ids, skip_special_tokens=False)
    stops = []
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        r = rng.random()
        if r < 0.55 and text:
            a = rng.randrange(len(text))
            s = text[a:a + rng.randint(1, 8)]
        elif r < 0.70 and stops:   # a prefix or an extension of another
            o = rng.choice(stops)
            s = o[:rng.randint(1, len(o))] if rng.random() < 0.5 else o + (text[:2] or "x")
        elif r < 0.80 and text:    # overlapping with another match
            a = rng.randrange(len(text))
            s = text[a:a + rng.randint(2, 4)]
            if stops:
                s = stops[-1][-1:] + s
        else:
            s = rng.choice(STOP_EXTRA)
        if s and rng.random() < 0.1:
            s = s * 3   # a long one: more hold-back
        if s and s not in stops:
            stops.append(s)
    return stops


def gen_case(rng, v, name, quirky):
    """quirky: favour added tokens with skip_special_tokens and
    spaces_between_special_tokens both false (the tiny_added tokenizer)."""
    ids = gen_ids(rng, v, 0.3 if quirky else 0.0)
    finish, stop_reason = "length", None
    r = rng.random()
    if r < 0.35:
        finish = "stop"
        ids.append(rng.choice(v.eos))
    elif r < 0.5:
        finish = "stop"
        stop_reason = rng.choice(ids[:-1] or [v.encode(".")[0]]) if rng.random() < 0.7 else v.encode(".")[0]
        ids.append(stop_reason)
    params = {
        "stop": gen_stops(rng, v, ids),
        "include_stop_str_in_output": rng.random() < 0.3,
        "skip_special_tokens": rng.random() < (0.25 if quirky else 0.7),
        "spaces_between_special_tokens": rng.random() < (0.25 if quirky else 0.6),
        "min_tokens": 0 if rng.random() < 0.6 else rng.randint(1, max(1, len(ids) - (finish == "stop"))),
        "logprobs": None if rng.random() < 0.45 else rng.randint(0, 3),
    }
    top = None
    if params["logprobs"] is not None:
        pool = v.special + v.added + v.unknown + list(v.byte_id.values())
        top = []
        for tid in ids:
            alts = []
            for j in range(params["logprobs"]):
                alts.append(tid if j == 0 and rng.random() < 0.5 else
                            rng.choice(pool) if rng.random() < 0.6 else rng.randrange(v.n_known))
            top.append(alts)
    n = len(ids)
    sizes = []
    while sum(sizes) < n:
        sizes.append(rng.randint(1, 6))
    chunkings = {"1": [1] * n, "3": [3] * (n // 3) + ([n % 3] if n % 3 else []), "rand": fit(sizes, n)}
    return {"name": name, "ids": ids, "finish": finish, "stop_reason": stop_reason, "params": params, "top": top,
            "chunkings": chunkings}


def fit(sizes, n):
    out, left = [], n
    for s in sizes:
        if left <= 0:
            break
        out.append(min(s, left))
        left -= out[-1]
    return out


# ================================================================ vLLM

def logprob_values(npos, k):
    """The logprob values every side uses: exact binary fractions."""
    return [[-0.125 * (i + 1)] + [-0.5 * (j + 1) - 0.125 * i for j in range(k)] for i in range(npos)]


def run_vllm(tk, prompt_ids, case, sizes):
    p = case["params"]
    sp = SamplingParams(n=1, max_tokens=len(case["ids"]) + 8, min_tokens=p["min_tokens"], stop=p["stop"] or None,
                        include_stop_str_in_output=p["include_stop_str_in_output"],
                        skip_special_tokens=p["skip_special_tokens"],
                        spaces_between_special_tokens=p["spaces_between_special_tokens"],
                        logprobs=p["logprobs"], output_kind=RequestOutputKind.DELTA)
    req = EngineCoreRequest(request_id="r", prompt_token_ids=list(prompt_ids), mm_features=None, sampling_params=sp,
                            pooling_params=None, arrival_time=0.0, lora_request=None, cache_salt=None,
                            data_parallel_rank=None, external_req_id="r")
    op = OutputProcessor(tk, log_stats=False)
    op.add_request(req, prompt=None)
    ids = case["ids"]
    k = p["logprobs"]
    vals = logprob_values(len(ids), k or 0)
    steps, off = [], 0
    finish = None
    for si, size in enumerate(sizes):
        chunk = ids[off:off + size]
        last = si == len(sizes) - 1
        lp = None
        if k is not None:
            rows = [[ids[off + i]] + case["top"][off + i] for i in range(size)]
            lp = LogprobsLists(np.array(rows, dtype=np.int64), np.array([vals[off + i] for i in range(size)],
                                                                          dtype=np.float32),
                               np.ones(size, dtype=np.int64), None)
        eco = EngineCoreOutput(request_id="r", new_token_ids=list(chunk), new_logprobs=lp,
                               finish_reason=(FinishReason.STOP if case["finish"] == "stop" else FinishReason.LENGTH)
                               if last else None,
                               stop_reason=case["stop_reason"] if last else None)
        res = op.process_outputs([eco])
        assert len(res.request_outputs) == 1
        o = res.request_outputs[0].outputs[0]
        step = [o.text, len(o.token_ids)]
        assert list(o.token_ids) == chunk[:len(o.token_ids)]
        if k is not None:
            ents = []
            for i, pos in enumerate(o.logprobs):
                tid = chunk[i]
                ents.append([pos[tid].decoded_token, [pos[t].decoded_token for t in case["top"][off + i]]])
            assert len(ents) == len(o.token_ids)
            step.append(ents)
        steps.append(step)
        off += size
        if o.finish_reason is not None:
            finish = [o.finish_reason, o.stop_reason]
            break
    assert finish is not None
    return {"steps": steps, "finish": finish}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "build" / "bin"))
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "detok"))
    ap.add_argument("--seed", type=int, default=20261204)
    ap.add_argument("--only", help="one tokenizer")
    args = ap.parse_args()
    bindir = pathlib.Path(args.bin)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = [("tiny", 200), ("tiny_added", 60), ("glm", 160)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, ncases in plan:
            if args.only and name != args.only:
                continue
            d = pathlib.Path(tmp) / name
            if name == "glm":
                info = make_glm(d)
            else:
                info = make_tiny(d, bindir, TINY_EXTRA if name == "tiny_added" else None)
            tk = get_tokenizer(str(d))
            v = Vocab(tk, info)
            rng = random.Random(f"{args.seed}:{name}")
            prompt_ids = v.encode(PROMPT)
            cases, differ = [], 0
            for i in range(ncases):
                case = gen_case(rng, v, f"{name}-{i}", name == "tiny_added")
                case["runs"] = {c: run_vllm(tk, prompt_ids, case, sizes) for c, sizes in case["chunkings"].items()}
                finals = {json.dumps(["".join(s[0] for s in r["steps"]), r["finish"]], ensure_ascii=False)
                          for r in case["runs"].values()}
                differ += len(finals) > 1
                cases.append(case)
            doc = {"generator": "tests/detok/gen_goldens.py", "vllm": vllm.__version__, "tokenizer": name,
                   "tokenizer_sha256": sha256(d / "tokenizer.json"), "extra_added": TINY_EXTRA if name == "tiny_added"
                   else [], "vocab_rows": info["vocab_rows"], "prompt_ids": prompt_ids,
                   "logprob_values": "sampled -0.125*(i+1), top j -0.5*(j+1)-0.125*i (position i)",
                   "chunking_dependent_in_vllm": differ, "cases": cases}
            path = out / f"{name}.json"
            with open(path, "w", encoding="utf-8") as f:
                f.write("{\n")
                keys = [k for k in doc if k != "cases"]
                for key in keys:
                    f.write(f"{json.dumps(key)}: {json.dumps(doc[key], ensure_ascii=False)},\n")
                f.write('"cases": [\n')
                f.write(",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases))
                f.write("\n]}\n")
            nruns = sum(len(c["runs"]) for c in cases)
            print(f"{path}: {len(cases)} cases, {nruns} runs; vLLM's final text/finish depends on the chunking in "
                  f"{differ} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
