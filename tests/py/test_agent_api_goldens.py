"""Prompt equality for the Anthropic Messages API and the Responses API:
the prompt glmpipe renders for a /v1/messages (or count_tokens) or
/v1/responses body equals the one vLLM 0.33 renders for it.

tests/data/requests/anthropic_goldens.json was made by
tests/conformance/gen_agent_goldens.py with vLLM's own conversion
(AnthropicServingMessages.to_chat_completion_request) and render path, for
three templates. Here each body goes through the gateway's conversion
(`glm-gateway --convert`, the code /v1/messages runs) and then glm-tokenize
(the pipe, as test_request_goldens.py sends chat bodies): the prompt ids
must equal vLLM's, and a body vLLM refuses must be refused."""
import json
import subprocess

import pytest

from conftest import ROOT, binpath
from test_request_goldens import models, pipe  # noqa: F401  (models: the fixture)

GOLDENS = ROOT / "tests" / "data" / "requests" / "anthropic_goldens.json"


def convert(cases, mode):
    lines = "".join(json.dumps(c["body"], ensure_ascii=False) + "\n" for c in cases).encode()
    p = subprocess.run([binpath("glm-gateway"), "--convert", mode], input=lines, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    out = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert len(out) == len(cases)
    return out


@pytest.mark.parametrize("template", ["glm-5.2", "glm-4.7", "default"])
def test_prompts_equal_vllm(models, template):  # noqa: F811
    g = json.loads(GOLDENS.read_text())
    cases = g["cases"]
    chats = {}
    for mode, kind in (("messages", "messages"), ("messages-count", "count"), ("responses", "responses")):
        mine = [c for c in cases if c["kind"] == kind]
        for c, chat in zip(mine, convert(mine, mode)):
            chats[c["name"]] = chat
    diffs = {}
    sendable = []
    for c in cases:
        want, chat = c["results"][template], chats[c["name"]]
        if "error" in chat:
            if "refused" not in want:
                diffs[c["name"]] = f"we refuse ({chat['error']}), vLLM renders"
            continue
        if "refused" in want and (want["refused"].startswith(("1 validation error", "2 validation errors")) or
                                  c["kind"] == "responses"):
            diffs[c["name"]] = f"vLLM refuses ({want['refused']}), our conversion accepts"
            continue
        sendable.append({"name": c["name"], "body": chat})
    out = pipe(models(template), sendable)
    for s in sendable:
        want, m = next(c for c in cases if c["name"] == s["name"])["results"][template], out[s["name"]]
        if "ids" in want:
            if m["type"] != "generate":
                diffs[s["name"]] = f"vLLM renders, we refuse: {m.get('message')}"
            elif m["prompt_ids"] != want["ids"]:
                diffs[s["name"]] = "different prompt"
        elif m["type"] == "generate":
            diffs[s["name"]] = f"vLLM refuses ({want['refused']}), we render"
    assert not diffs, f"{len(diffs)} of {len(cases)} bodies differ from vLLM {g['vllm']}: " + \
        json.dumps(diffs, indent=1, ensure_ascii=False)[:6000]


def mutations(body, rng, n):
    """n copies of body with one value somewhere replaced by a value of
    another JSON type (the shapes a broken or hostile client sends)."""
    odd = [None, True, 0, -1, 1.5, 1e300, "", "x", [], [None], {}, {"type": None}, [[[]]], "\u0000\udcff"[:1]]
    paths = []

    def walk(v, path):
        paths.append(path)
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, path + [k])
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, path + [i])
    walk(body, [])
    for _ in range(n):
        b = json.loads(json.dumps(body))
        path = rng.choice(paths)
        if not path:
            yield rng.choice(odd)
            continue
        parent = b
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = rng.choice(odd)
        yield b


def test_conversion_survives_malformed_bodies():
    """Every body with one value of the wrong type: a chat body or a clear
    error line, never a crash (run under ASan by `make asan-test`)."""
    import random
    rng = random.Random(16)
    g = json.loads(GOLDENS.read_text())
    for mode, kinds in (("messages", ("messages", "count")), ("messages-count", ("count",)), ("responses", ("responses",))):
        bodies = [m for c in g["cases"] if c["kind"] in kinds for m in mutations(c["body"], rng, 25)]
        out = convert([{"body": b} for b in bodies], mode)
        assert all(isinstance(o, dict) and ("error" in o or "messages" in o) for o in out)
        assert sum("error" in o for o in out) > len(out) // 10   # the mutations do reach the checks
