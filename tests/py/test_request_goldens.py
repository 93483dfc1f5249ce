"""glm-tokenize against vLLM's own request path.

tests/data/requests/goldens.json was made by tests/conformance/
gen_request_goldens.py, which ran vLLM 0.33.0's real request path (its
render server: ChatCompletionRequest validation, the chat renderer,
transformers' apply_chat_template, tokenization) on ~175 request bodies
written the way the OpenAI SDK, LangChain, Claude Code proxies and Cursor-
style agents write them, for three templates. Here the same bodies go
through the real binaries, no vLLM needed:

  pipe    JSON Lines -> glm-msg pack -> glm-tokenize -> msgpack: every body;
          prompt ids must equal vLLM's (so must the prompt text: ids of a
          byte-level BPE decode to exactly one text), refusals must carry
          vLLM's status and, where vLLM wrote the sentence, its words.
  render  glm-tokenize --render: the same prompt text and the same refusal
          (every body for the default model's template, so every refusal
          path; for the GLM templates, whose llama3-sized tokenizer takes
          ~0.1 s to load per process, every tenth body).

Refusals that pydantic itself words (a field of the wrong type: vLLM's
message lists every union branch it tried) are compared by status only.
"""
import json
import pathlib
import subprocess

import pytest

from conftest import ROOT, binpath, make_glm_model_dir, unpack_all

GOLDENS = ROOT / "tests" / "data" / "requests" / "goldens.json"
GLM_MAX_LEN = 202752        # as gen_request_goldens.py builds the GLM directories
SERVED = "glm"

# Cases where glmpipe deliberately differs from vLLM; docs/protocol.md
# ("Request conformance") says why. Each must still differ (so the list
# cannot go stale).
KNOWN = {}


def load():
    return json.loads(GOLDENS.read_text())


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_model):
    """template -> model directory, built on first use; the GLM ones come
    from ../shared (their tests skip visibly without it), the default one
    from glm-mkmodel."""
    made = {"default": tiny_model}

    def get(template):
        if template not in made:
            path, _ = make_glm_model_dir(tmp_path_factory.mktemp(template), template=f"{template}.jinja",
                                         max_len=GLM_MAX_LEN)
            made[template] = str(path)
        return made[template]
    return get


def pipe(model_dir, cases):
    """Every body through glm-msg pack | glm-tokenize: {name: message}."""
    lines = "".join(json.dumps({"type": "request", "id": c["name"], "endpoint": "chat", "body": c["body"]},
                               ensure_ascii=False) + "\n" for c in cases).encode()
    packed = subprocess.run([binpath("glm-msg"), "pack"], input=lines, capture_output=True, check=True,
                            timeout=60).stdout
    p = subprocess.run([binpath("glm-tokenize"), "--model", model_dir, "--served-model-name", SERVED,
                        "--enable-auto-tool-choice"],   # the reference serve flags
                       input=packed, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    out = {m["id"]: m for m in unpack_all(p.stdout)}
    assert len(out) == len(cases)
    return out


def verdict(want, got_ok, got_ids_or_text, got_code, got_msg):
    """None when glm-tokenize agrees with vLLM, else what differs."""
    if "ids" in want or "prompt" in want:
        if not got_ok:
            return f"vLLM renders, we refuse: {got_code} {got_msg}"
        return None if got_ids_or_text == want["ids" if isinstance(got_ids_or_text, list) else "prompt"] \
            else "different prompt"
    if got_ok:
        return f"vLLM refuses ({want['status']} {want['reason'] or want['message'][:200]}), we render"
    if got_code != want["status"]:
        return f"status {got_code}, vLLM {want['status']}"
    if want["reason"] is not None and got_msg != want["reason"]:
        return f"message {got_msg!r}, vLLM {want['reason']!r}"
    return None


@pytest.mark.parametrize("template", ["glm-5.2", "glm-4.7", "default"])
def test_pipe_equals_vllm(models, template):
    g = load()
    cases = g["cases"]
    out = pipe(models(template), cases)
    diffs = {}
    for c in cases:
        m = out[c["name"]]
        ok = m["type"] == "generate"
        why = verdict(c["results"][template], ok, m.get("prompt_ids"), m.get("code"), m.get("message"))
        if why:
            diffs[c["name"]] = why
    unexpected = {k: v for k, v in diffs.items() if (k, template) not in KNOWN and k not in KNOWN}
    assert not unexpected, f"{len(unexpected)} of {len(cases)} bodies differ from vLLM {g['vllm']}: " + \
        json.dumps(unexpected, indent=1, ensure_ascii=False)[:6000]
    stale = [k for k in KNOWN if (k[0] if isinstance(k, tuple) else k) not in diffs and
             (not isinstance(k, tuple) or k[1] == template)]
    assert not stale, f"known differences that no longer differ: {stale}"


@pytest.mark.parametrize("template", ["glm-5.2", "glm-4.7", "default"])
def test_render_equals_vllm(models, template):
    g = load()
    chosen = [c for i, c in enumerate(g["cases"]) if template == "default" or i % 10 == 0]
    diffs = {}
    for c in chosen:
        want = c["results"][template]
        p = subprocess.run([binpath("glm-tokenize"), "--model", models(template), "--served-model-name", SERVED,
                            "--enable-auto-tool-choice", "--render"], input=json.dumps(c["body"]).encode(), capture_output=True, timeout=60)
        err = p.stderr.decode(errors="replace").strip()
        code, msg = None, None
        if p.returncode:
            head, _, msg = err.partition(": error ")
            code_s, _, msg = msg.partition(": ")
            code = int(code_s) if code_s.isdigit() else None
        why = verdict(want, p.returncode == 0, p.stdout.decode(errors="surrogateescape"), code, msg)
        if why and c["name"] not in KNOWN and (c["name"], template) not in KNOWN:
            diffs[c["name"]] = why
    assert not diffs, json.dumps(diffs, indent=1, ensure_ascii=False)[:6000]


def test_goldens_cover_the_clients_and_cases():
    g = load()
    assert g["vllm"] == "0.33.0"
    cases = g["cases"]
    assert len(cases) >= 100
    clients = {c["client"] for c in cases}
    assert {"openai-sdk", "langchain", "claude-code", "cursor", "edge"} <= clients
    assert set(g["templates"]) == {"glm-5.2", "glm-4.7", "default"}
    refused = sum(1 for c in cases for r in c["results"].values() if "status" in r)
    assert 50 < refused < len(cases) * 3 - 200     # both paths well covered
