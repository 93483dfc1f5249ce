"""Differential test of the output side against vLLM's own parsers.

tests/data/parsers/vllm_glm47.json holds generated GLM outputs as token ids
and what vLLM (--reasoning-parser glm45 --tool-call-parser glm47, through its
chat serving layer) made of them, streaming and not (made by
tests/reference/vllm_parsers.py). Here every case goes through the real
stages, as the engine would feed them:

    glm-tokenize (the request -> context)   then, per chunking,
    tokens -> glm-detok | glm-parse-reasoning | glm-parse-tools

at 1 token per step, 3 per step and the case's random 1-6 steps. What a
client would assemble (reasoning, content, tool calls' names and arguments,
finish_reason) must equal vLLM's result wherever vLLM's streaming and
non-streaming paths agree, and glmpipe's documented result
(docs/protocol.md, "Parsers and vLLM") where they do not; at every chunking.
"""
import json
import pathlib
import re

import pytest

from conftest import ROOT, binpath, run_pipeline, run_stage

GOLDEN = ROOT / "tests" / "data" / "parsers" / "vllm_glm47.json"


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def steps_for(chunking, case):
    n = len(case["output_ids"])
    if chunking == "rand":
        return case["rand_steps"]
    k = int(chunking)
    return [k] * max(1, (n + k - 1) // k)


@pytest.fixture(scope="module")
def contexts(golden, glm_model):
    """glm-tokenize's generate message for every case's request."""
    reqs = []
    for n, c in enumerate(golden["cases"]):
        body = {"messages": [{"role": "user", "content": f"conformance case {n}"}], **c["body"]}
        reqs.append({"type": "request", "id": c["id"], "endpoint": "chat", "body": body})
    out, err = run_stage([binpath("glm-tokenize"), "--model", glm_model["dir"], "--enable-auto-tool-choice"], reqs, timeout=120)
    gens = {m["id"]: m for m in out if m["type"] == "generate"}
    errors = {m["id"]: m.get("message") for m in out if m["type"] == "error"}
    assert not errors, f"glm-tokenize refused requests vLLM accepted: {errors}"
    return gens


def engine_messages(case, gen, steps):
    """What glm-engine would send for this case: start, tokens per step (the
    finish reason on the last), end."""
    ids = case["output_ids"]
    msgs = [{"type": "start", "id": case["id"], "n": 1, "prompt_tokens": len(gen["prompt_ids"]),
             "context": gen["context"]}]
    pos = 0
    for size in steps:
        chunk = ids[pos:pos + size]
        pos += size
        m = {"type": "tokens", "id": case["id"], "index": 0, "token_ids": chunk}
        if pos >= len(ids):
            m["finish_reason"] = case["finish_reason"]
            m["stop_reason"] = None
            msgs.append(m)
            break
        msgs.append(m)
    msgs.append({"type": "end", "id": case["id"],
                 "usage": {"prompt_tokens": len(gen["prompt_ids"]), "completion_tokens": len(ids)}})
    return msgs


def fold(out, id_re):
    """Per request: what a streaming client assembles, checking the OpenAI
    delta shape on the way (a call's first entry has id, type and the whole
    name; later entries only arguments; indexes count up from 0)."""
    res = {}
    for m in out:
        if m["type"] == "error":
            res[m["id"]] = {"error": m.get("message")}
            continue
        if m["type"] != "delta":
            continue
        r = res.setdefault(m["id"], {"reasoning": "", "content": "", "tool_calls": [], "finish_reason": None,
                                     "problems": []})
        if r["finish_reason"] is not None:
            r["problems"].append("delta after finish_reason")
        r["content"] += m.get("text") or ""
        r["reasoning"] += m.get("reasoning") or ""
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function") or {}
            if "id" in tc:
                if tc["index"] != len(r["tool_calls"]) or not id_re.match(tc["id"]) or tc.get("type") != "function" \
                        or not fn.get("name"):
                    r["problems"].append(f"bad first entry {tc}")
                r["tool_calls"].append({"name": fn.get("name"), "arguments": ""})
            elif tc["index"] != len(r["tool_calls"]) - 1 or "name" in fn:
                r["problems"].append(f"bad entry {tc}")
                continue
            r["tool_calls"][-1]["arguments"] += fn.get("arguments") or ""
        if m.get("finish_reason") is not None:
            r["finish_reason"] = m["finish_reason"]
    return res


def canon(r):
    return {"reasoning": r["reasoning"] or "", "content": r["content"] or "",
            "tool_calls": [(c["name"], c["arguments"]) for c in r["tool_calls"]],
            "finish_reason": r["finish_reason"]}


@pytest.mark.parametrize("chunking", ["1", "3", "rand"])
def test_parsers_match_vllm(golden, contexts, glm_model, chunking):
    cases = golden["cases"]
    msgs = []
    for c in cases:
        msgs += engine_messages(c, contexts[c["id"]], steps_for(chunking, c))
    out = run_pipeline([[binpath("glm-detok"), "--model", glm_model["dir"]],
                        [binpath("glm-parse-reasoning"), "--reasoning-parser", "glm45"],
                        [binpath("glm-parse-tools"), "--tool-call-parser", "glm47"]], msgs, timeout=300)
    got = fold(out, re.compile(golden["tool_call_id"]))
    bad, equal = [], {"vllm": 0, "glmpipe-rules": 0}
    for c in cases:
        g = got.get(c["id"])
        want = canon(c["vllm"]["nonstream"] if c["agree"] else c["expect"])
        if g is None or "error" in g or g["problems"] or canon(g) != want:
            bad.append((c["id"], c["features"], g, want))
        else:
            equal["vllm" if c["agree"] else "glmpipe-rules"] += 1
    agree = sum(c["agree"] for c in cases)
    print(f"vLLM {golden['vllm_version']}, chunking {chunking}: {equal['vllm']}/{agree} cases equal to vLLM "
          f"(its paths agree), {equal['glmpipe-rules']}/{len(cases) - agree} equal to glmpipe's documented "
          "choice (they do not)")
    for cid, feats, g, want in bad[:8]:
        print(f"  {cid} {feats}\n    got  {json.dumps(g, ensure_ascii=False)}\n    want {json.dumps(want, ensure_ascii=False)}")
    assert not bad, f"{len(bad)} of {len(cases)} cases differ at chunking {chunking}: " + \
        " ".join(cid for cid, *_ in bad[:40])


def test_golden_is_broad(golden):
    """The generated set covers what it claims: enough cases on both sides of
    vLLM's agreement, every tool_choice, thinking on and off, truncation."""
    cases = golden["cases"]
    feats = {f for c in cases for f in c["features"]}
    assert len(cases) >= 500 and sum(c["agree"] for c in cases) >= 300
    for f in ["no_tools", "tc_none", "tc_auto", "tc_required", "tc_named", "tc_default", "thinking_on",
              "thinking_off", "truncated", "repeated_key", "unterminated_value", "unknown_name", "unknown_key",
              "unicode", "calls_3", "text_after_calls"]:
        assert f in feats, f
