"""glm-detok as a process: logprob token strings, padded-vocabulary ids,
stop-string trimming and end's usage, min_tokens from the context, n > 1
interleaved, unknown request ids, bad fields (an error for that request, the
stage keeps going). tests/py/test_detok_goldens.py has the differential
suite against vLLM."""
import json
import subprocess

from conftest import binpath, run_pipeline, run_stage


def encode(model, text):
    return json.loads(subprocess.run([binpath("glm-tokenize"), "--model", model, "--encode"], input=text.encode(),
                                     capture_output=True, check=True).stdout)


def token_text(model, tid):
    return subprocess.run([binpath("glm-tokenize"), "--model", model, "--decode"], input=json.dumps([tid]).encode(),
                          capture_output=True, check=True).stdout.decode()


def test_logprobs_get_token_strings(tiny_model):
    ids = encode(tiny_model, "Hi 🚀")
    lps = [{"logprob": -0.5 * (i + 1), "top": [[ids[i], -0.5 * (i + 1)], [ids[0], -3.0]]} for i in range(len(ids))]
    msgs = [{"type": "start", "id": "r", "n": 1, "context": {}},
            {"type": "tokens", "id": "r", "index": 0, "token_ids": ids, "logprobs": lps, "finish_reason": "length"},
            {"type": "end", "id": "r", "usage": {"prompt_tokens": 1, "completion_tokens": len(ids)}}]
    out, _ = run_stage([binpath("glm-detok"), "--model", tiny_model], msgs)
    d = [m for m in out if m["type"] == "delta"][0]
    assert d["text"] == "Hi 🚀" and d["finish_reason"] == "length" and d["stop_reason"] is None
    assert len(d["logprobs"]) == len(ids)
    # vLLM: a token that is part of a character is "" and the one that
    # completes it carries the whole character (and the pieces' other text)
    assert "".join(e["token"] for e in d["logprobs"]) == "Hi 🚀"
    assert d["logprobs"][-1]["token"].endswith("🚀")
    for i, e in enumerate(d["logprobs"]):
        alone = token_text(tiny_model, ids[i])
        if not alone.endswith("\ufffd"):
            assert e["token"] == alone
        elif i < len(ids) - 1:
            assert e["token"] == ""
        assert e["token_id"] == ids[i] and e["bytes"] == list(e["token"].encode("utf-8"))
        assert e["logprob"] == -0.5 * (i + 1)
        assert [t["token_id"] for t in e["top"]] == [ids[i], ids[0]]
        assert e["top"][0]["token"] == e["token"]       # the same id at the same place: the same name
        assert e["top"][1]["logprob"] == -3.0 and e["top"][1]["token"] == token_text(tiny_model, ids[0])


def test_padded_vocabulary_ids_are_text_nothing(tiny_model):
    """The default model has 1024 embedding rows for 996 token ids; the
    engine can sample the padding. vLLM/HF decode those ids to nothing."""
    ids = encode(tiny_model, "ok")
    msgs = [{"type": "start", "id": "p", "n": 1, "context": {}},
            {"type": "tokens", "id": "p", "index": 0, "token_ids": [1000] + ids + [1023],
             "logprobs": [{"logprob": -1.0, "top": [[1001, -2.0]]}] * (len(ids) + 2), "finish_reason": "length"},
            {"type": "end", "id": "p", "usage": {"prompt_tokens": 1, "completion_tokens": len(ids) + 2}}]
    out, _ = run_stage([binpath("glm-detok"), "--model", tiny_model], msgs)
    assert [m["type"] for m in out] == ["start", "delta", "end"]
    d = out[1]
    assert d["text"] == "ok" and d["token_ids"] == [1000] + ids + [1023]
    assert d["logprobs"][0]["token"] == "" and d["logprobs"][0]["top"][0]["token"] == ""
    assert out[2]["usage"]["completion_tokens"] == len(ids) + 2


def test_stop_string_trims_step_and_usage(tiny_model):
    """An MTP step that completes a stop string in its second token: the
    rest of the step is gone from token_ids and logprobs, later steps (sent
    before the gateway's abort reaches the engine) say nothing, and end's
    usage counts what stood."""
    ids = encode(tiny_model, "a") + encode(tiny_model, "b") + encode(tiny_model, "X") + encode(tiny_model, "Y")
    lps = [{"logprob": -1.0, "top": []} for _ in ids]
    msgs = [{"type": "start", "id": "s", "n": 1, "context": {"stop": ["bX"], "min_tokens": 0}},
            {"type": "tokens", "id": "s", "index": 0, "token_ids": ids[:1], "logprobs": lps[:1]},
            {"type": "tokens", "id": "s", "index": 0, "token_ids": ids[1:], "logprobs": lps[1:]},
            {"type": "tokens", "id": "s", "index": 0, "token_ids": ids[:2], "logprobs": lps[:2],
             "finish_reason": "length"},
            {"type": "end", "id": "s", "usage": {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}}]
    out, _ = run_stage([binpath("glm-detok"), "--model", tiny_model], msgs)
    deltas = [m for m in out if m["type"] == "delta"]
    assert len(deltas) == 2
    assert deltas[0]["text"] == "" and deltas[0]["token_ids"] == ids[:1]     # "a" held: could start "bX"
    assert deltas[1]["text"] == "a" and deltas[1]["token_ids"] == ids[1:3] and len(deltas[1]["logprobs"]) == 2
    assert (deltas[1]["finish_reason"], deltas[1]["stop_reason"]) == ("stop", "bX")
    assert [m for m in out if m["type"] == "end"][0]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3,
                                                                   "total_tokens": 6}
    # min_tokens in the context: the stop string is not looked for in the first 3 tokens
    msgs[0]["context"]["min_tokens"] = 3
    out, _ = run_stage([binpath("glm-detok"), "--model", tiny_model], msgs)
    deltas = [m for m in out if m["type"] == "delta"]
    assert "".join(d["text"] for d in deltas) == "abXYab" and deltas[-1]["finish_reason"] == "length"
    assert [m for m in out if m["type"] == "end"][0]["usage"]["completion_tokens"] == 6


def test_interleaved_choices_and_bad_input(tiny_model):
    a, b = encode(tiny_model, "alpha beta"), encode(tiny_model, "gamma delta")
    msgs = [{"type": "start", "id": "x", "n": 2, "context": {"stop": ["delta"]}},
            {"type": "start", "id": "y", "n": 1, "context": {}}]
    for i in range(max(len(a), len(b))):
        if i < len(a):
            msgs.append({"type": "tokens", "id": "x", "index": 0, "token_ids": [a[i]],
                         **({"finish_reason": "length"} if i == len(a) - 1 else {})})
        if i < len(b):
            msgs.append({"type": "tokens", "id": "x", "index": 1, "token_ids": [b[i]],
                         **({"finish_reason": "length"} if i == len(b) - 1 else {})})
    msgs += [{"type": "tokens", "id": "y", "index": 0, "token_ids": "oops"},          # bad field
             {"type": "tokens", "id": "nobody", "index": 0, "token_ids": [1]},        # unknown id
             {"type": "tokens", "id": "x", "index": 5, "token_ids": [1]},             # index out of range
             {"type": "end", "id": "x", "usage": {}}]
    out, _ = run_stage([binpath("glm-detok"), "--model", tiny_model], msgs)
    text = {0: "", 1: ""}
    fin = {}
    for m in out:
        if m["type"] == "delta" and m["id"] == "x":
            text[m["index"]] += m["text"]
            if m.get("finish_reason"):
                fin[m["index"]] = (m["finish_reason"], m.get("stop_reason"))
    assert text == {0: "alpha beta", 1: "gamma "}
    assert fin == {0: ("length", None), 1: ("stop", "delta")}
    errs = [m for m in out if m["type"] == "error"]
    assert [e["id"] for e in errs] == ["y", "x"] and all(e["code"] == 400 for e in errs)
    assert not any(m["id"] == "nobody" for m in out)


def test_make_run_requests_end_without_error(tiny_model):
    """`make run`'s pipe with 64 sampled tokens from the default model (random
    weights: it samples the 28 padding rows of its embedding too): every
    request ends with text, no error, and end counts all 64 tokens."""
    reqs = [{"type": "request", "id": f"r{s}", "endpoint": "chat",
             "body": {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 64,
                      "temperature": 1.0, "seed": s, "logprobs": True, "top_logprobs": 2, "ignore_eos": True}}
            for s in range(6)]
    out = run_pipeline([[binpath("glm-tokenize"), "--model", tiny_model],
                        [binpath("glm-engine"), "--model", tiny_model, "--threads", "1", "--max-model-len", "256",
                         "--num-gpu-blocks-override", "256"],
                        [binpath("glm-detok"), "--model", tiny_model]], reqs, timeout=120)
    assert not [m for m in out if m["type"] == "error"]
    ends = {m["id"]: m["usage"]["completion_tokens"] for m in out if m["type"] == "end"}
    assert ends == {f"r{s}": 64 for s in range(6)}
    ids = [t for m in out if m["type"] == "delta" for t in m["token_ids"]]
    assert len(ids) == 6 * 64
    assert any(t >= 996 for t in ids), "no padded id sampled: the check proves nothing with these seeds"
