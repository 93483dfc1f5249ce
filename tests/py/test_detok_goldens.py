"""glm-detok against vLLM 0.33.0's own output processor: the goldens in
tests/data/detok/ (made by tests/detok/gen_goldens.py with vLLM) are fed to
the real binary as start/tokens/end messages, and every delta must be what
vLLM's RequestOutput was for that engine step: text, token_ids (trimmed after
a stop string), logprob token strings (sampled and alternatives), finish
and stop reason; then end's usage counts only the tokens that stood.

The engine side is played as glmpipe's engine plays it: every step is sent,
also those after the step where glm-detok found a stop string (the engine
keeps going until the gateway's abort reaches it); glm-detok must say
nothing more for them, and lower end's completion_tokens."""
import hashlib
import json
import pathlib

import pytest

from conftest import ROOT, binpath, run_stage

GOLD = ROOT / "tests" / "data" / "detok"


def load(name):
    return json.loads((GOLD / f"{name}.json").read_text(encoding="utf-8"))


def add_tokens(src, dest, extra):
    """tests/detok/gen_goldens.py's add_tokens: extra added tokens after the last id."""
    tok = json.loads(pathlib.Path(src).read_text(encoding="utf-8"))
    base = max(max(tok["model"]["vocab"].values()), max(t["id"] for t in tok["added_tokens"])) + 1
    for off, (content, special) in enumerate(extra):
        tok["added_tokens"].append({"id": base + off, "content": content, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": special})
    dest.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def tokenizer_file(request, tmp_path_factory):
    def get(name, doc):
        if name == "glm":
            path = pathlib.Path(request.getfixturevalue("glm_model")["dir"]) / "tokenizer.json"
        else:
            path = pathlib.Path(request.getfixturevalue("tiny_model")) / "tokenizer.json"
            if doc["extra_added"]:
                path = add_tokens(path, tmp_path_factory.mktemp(name) / "tokenizer.json", doc["extra_added"])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == doc["tokenizer_sha256"], (
            f"{name}: tokenizer.json differs from the one the goldens were made with; "
            "regenerate them with tests/detok/gen_goldens.py")
        return str(path)
    return get


def logprob_values(npos, k):
    """As in the generator: exact binary fractions."""
    return [[-0.125 * (i + 1)] + [-0.5 * (j + 1) - 0.125 * i for j in range(k)] for i in range(npos)]


def messages(doc, case, chunking):
    rid = f"{case['name']}/{chunking}"
    p = case["params"]
    ctx = {"stop": p["stop"], "include_stop_str_in_output": p["include_stop_str_in_output"],
           "skip_special_tokens": p["skip_special_tokens"],
           "spaces_between_special_tokens": p["spaces_between_special_tokens"], "min_tokens": p["min_tokens"]}
    ids, k = case["ids"], p["logprobs"]
    vals = logprob_values(len(ids), k or 0)
    npr = len(doc["prompt_ids"])
    msgs = [{"type": "start", "id": rid, "n": 1, "prompt_tokens": npr, "context": ctx}]
    off = 0
    sizes = case["chunkings"][chunking]
    for si, size in enumerate(sizes):
        m = {"type": "tokens", "id": rid, "index": 0, "token_ids": ids[off:off + size]}
        if k is not None:
            m["logprobs"] = [{"logprob": vals[i][0], "top": [[t, vals[i][j + 1]] for j, t in enumerate(case["top"][i])]}
                             for i in range(off, off + size)]
        if si == len(sizes) - 1:
            m["finish_reason"] = case["finish"]
            if case["stop_reason"] is not None:
                m["stop_reason"] = case["stop_reason"]
        msgs.append(m)
        off += size
    msgs.append({"type": "end", "id": rid, "usage": {"prompt_tokens": npr, "completion_tokens": len(ids),
                                                      "total_tokens": npr + len(ids)}})
    return rid, msgs


def check_run(case, chunking, want, got, npr):
    """Differences between vLLM's steps and glm-detok's messages, as text lines."""
    ids, k = case["ids"], case["params"]["logprobs"]
    vals = logprob_values(len(ids), k or 0)
    deltas = [m for m in got if m["type"] == "delta"]
    ends = [m for m in got if m["type"] == "end"]
    errs = [m for m in got if m["type"] == "error"]
    if errs:
        return [f"error {errs[0]}"]
    diffs = []
    if len(deltas) != len(want["steps"]):
        diffs.append(f"{len(deltas)} deltas, vLLM {len(want['steps'])} steps")
    off = 0
    for si, (d, step) in enumerate(zip(deltas, want["steps"])):
        size = case["chunkings"][chunking][si]
        kept = step[1]
        if d["text"] != step[0]:
            diffs.append(f"step {si}: text {d['text']!r}, vLLM {step[0]!r}")
        if d["token_ids"] != ids[off:off + kept]:
            diffs.append(f"step {si}: token_ids {d['token_ids']}, vLLM {ids[off:off + kept]}")
        if k is not None:
            lps = d.get("logprobs", [])
            if len(lps) != kept:
                diffs.append(f"step {si}: {len(lps)} logprob entries, vLLM {kept}")
            for i, (e, (tok, tops)) in enumerate(zip(lps, step[2])):
                pos = off + i
                got_top = [t["token"] for t in e["top"]]
                if e["token"] != tok or got_top != tops:
                    diffs.append(f"step {si} pos {pos}: tokens {e['token']!r} {got_top!r}, vLLM {tok!r} {tops!r}")
                if e["bytes"] != list(e["token"].encode()) or any(t["bytes"] != list(t["token"].encode())
                                                                  for t in e["top"]):
                    diffs.append(f"step {si} pos {pos}: bytes are not the token's UTF-8")
                if (e["token_id"], e["logprob"]) != (ids[pos], vals[pos][0]) or \
                        [(t["token_id"], t["logprob"]) for t in e["top"]] != \
                        [(t, vals[pos][j + 1]) for j, t in enumerate(case["top"][pos])]:
                    diffs.append(f"step {si} pos {pos}: ids/logprob values not carried")
        elif "logprobs" in d:
            diffs.append(f"step {si}: logprobs without a request for them")
        last = si == len(want["steps"]) - 1
        fin = [d.get("finish_reason"), d.get("stop_reason")] if "finish_reason" in d else None
        if fin != (want["finish"] if last else None):
            diffs.append(f"step {si}: finish {fin}, vLLM {want['finish'] if last else None}")
        off += size
    kept_total = sum(s[1] for s in want["steps"])
    if len(ends) != 1 or ends[0]["usage"] != {"prompt_tokens": npr, "completion_tokens": kept_total,
                                               "total_tokens": npr + kept_total}:
        diffs.append(f"end {ends}, want completion_tokens {kept_total}")
    return diffs


@pytest.mark.parametrize("name", ["tiny", "tiny_added", "glm"])
def test_detok_matches_vllm(name, tokenizer_file):
    doc = load(name)
    tfile = tokenizer_file(name, doc)
    runs, streams = [], []
    for case in doc["cases"]:
        for chunking in case["chunkings"]:
            rid, msgs = messages(doc, case, chunking)
            runs.append((rid, case, chunking))
            streams.append(msgs)
    # interleave the requests round-robin: one process, many live requests
    feed = []
    for i in range(max(len(s) for s in streams)):
        feed += [s[i] for s in streams if i < len(s)]
    out, err = run_stage([binpath("glm-detok"), "--tokenizer", tfile], feed, timeout=120)
    by_id = {}
    for m in out:
        by_id.setdefault(m.get("id"), []).append(m)
    bad = []
    npr = len(doc["prompt_ids"])
    for rid, case, chunking in runs:
        diffs = check_run(case, chunking, case["runs"][chunking], by_id.get(rid, []), npr)
        if diffs:
            bad.append(f"{rid} (ids {case['ids']}, params {case['params']}):\n    " + "\n    ".join(diffs[:6]))
    assert len(runs) >= 3 * len(doc["cases"])
    assert not bad, f"{len(bad)} of {len(runs)} runs differ from vLLM {doc['vllm']}:\n" + "\n".join(bad[:8])
