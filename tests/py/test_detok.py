"""glm-detok as a process: logprob token strings, n > 1 interleaved, unknown
ids, bad fields (an error for that request, the stage keeps going)."""
import json
import subprocess

from conftest import binpath, run_stage


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
            {"type": "tokens", "id": "r", "index": 0, "token_ids": ids, "logprobs": lps, "finish_reason": "stop"},
            {"type": "end", "id": "r", "usage": {"prompt_tokens": 1, "completion_tokens": len(ids)}}]
    out, _ = run_stage([binpath("glm-detok"), "--model", tiny_model], msgs)
    d = [m for m in out if m["type"] == "delta"][0]
    assert d["text"] == "Hi 🚀" and d["finish_reason"] == "stop" and d["stop_reason"] is None
    assert len(d["logprobs"]) == len(ids)
    for i, e in enumerate(d["logprobs"]):
        want = token_text(tiny_model, ids[i])     # the token decoded alone (U+FFFD for a partial character)
        assert e["token"] == want and e["token_id"] == ids[i]
        assert e["bytes"] == list(want.encode("utf-8"))
        assert e["logprob"] == -0.5 * (i + 1)
        assert [t["token_id"] for t in e["top"]] == [ids[i], ids[0]]
        assert e["top"][1]["logprob"] == -3.0 and e["top"][1]["token"] == token_text(tiny_model, ids[0])


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
