"""GLM-4.7-Flash (Glm4MoeLiteForCausalLM, glm-mkmodel --arch glm4-moe-lite)
through real processes.

- glm-engine's greedy decode of the tiny Flash checkpoint equals transformers'
  (tests/reference/goldens/glm47flash_tiny.json), alone, with MTP drafting
  and without the prefix cache; MTP, the prefix cache and FP8 cache rows
  change no output.
- A full chat request with tools and thinking through every stage, the real
  engine included, on a Flash checkpoint whose embedding and lm_head are
  programmed (the 4 random layers still run and add to the residual) so that
  greedy decoding writes a known reasoning + tool call: the model
  directory's own GLM-4.7 template renders the prompt (ours, or the official
  one from ../shared put in its place), glm-parse-reasoning and
  glm-parse-tools turn the output into reasoning and a tool call.
"""
import json
import pathlib
import random
import shutil
import struct
import subprocess

import pytest

from conftest import ROOT, binpath, engine_cmd, run_stage, shared
from gwstack import GatewayStack, real_engine
from mktok_render import render_env

GOLDEN = ROOT / "tests" / "reference" / "goldens" / "glm47flash_tiny.json"
VOCAB = 1024   # the tiny preset


@pytest.fixture(scope="module")
def flash(tmp_path_factory):
    d = tmp_path_factory.mktemp("flash") / "m"
    subprocess.run([binpath("glm-mkmodel"), "--arch", "glm4-moe-lite", "--preset", "tiny", "--seed", "1",
                    "--out", str(d)], check=True, capture_output=True, timeout=120)
    return d


def engine(model, *extra):
    return engine_cmd(model, "--num-gpu-blocks-override", "512", *extra)


def gen(rid, prompt, **sampling):
    return {"type": "generate", "id": rid, "prompt_ids": prompt, "sampling": sampling}


def by_choice(out):
    res = {}
    for m in out:
        assert m["type"] != "error", m
        if m["type"] == "tokens":
            r = res.setdefault((m["id"], m["index"]), {"ids": [], "lp": []})
            r["ids"] += m["token_ids"]
            r["lp"] += m.get("logprobs", [])
    return res


def test_checkpoint_is_flash(flash):
    cfg = json.loads((flash / "config.json").read_text())
    assert cfg["architectures"] == ["Glm4MoeLiteForCausalLM"] and cfg["model_type"] == "glm4_moe_lite"
    assert not any(k.startswith("index") for k in cfg) and "head_dim" not in cfg
    gen_cfg = json.loads((flash / "generation_config.json").read_text())
    assert gen_cfg["temperature"] == 1.0 and "top_p" not in gen_cfg      # GLM-4.7-Flash's sampling defaults
    # the model directory carries GLM-4.7's format (our own text, tools/mkmodel/chat_template_glm47.jinja)
    assert (flash / "chat_template.jinja").read_bytes() == \
        (ROOT / "tools" / "mkmodel" / "chat_template_glm47.jinja").read_bytes()


MTP = ["--speculative-config", '{"method":"mtp","num_speculative_tokens":3}']


@pytest.mark.parametrize("extra", [[], MTP, ["--no-enable-prefix-caching"]], ids=["plain", "mtp3", "no-prefix"])
def test_greedy_equals_transformers(flash, extra):
    g = json.loads(GOLDEN.read_text())
    assert g["class"] == "Glm4MoeLiteForCausalLM" and g["seed"] == 1
    ref = g["greedy"]
    out, _ = run_stage(engine(flash, *extra), [gen("g", ref["prompt"], temperature=0,
                                                   max_tokens=len(ref["tokens"]), ignore_eos=True)])
    assert len(ref["tokens"]) >= 32
    assert by_choice(out)[("g", 0)]["ids"] == ref["tokens"]


def _requests():
    """A shared 40-token prefix (prefix cache hits), greedy and seeded
    sampling with logprobs, n=2, a prompt past any DSA index_topk."""
    base = [(i * 37 + 11) % (VOCAB - 64) for i in range(40)]
    msgs = []
    for k in range(5):
        s = {"max_tokens": 10, "ignore_eos": True, "temperature": 0}
        if k % 2:
            s.update(temperature=0.9, seed=100 + k, top_p=0.9, logprobs=2)
        msgs.append(gen(f"r{k}", base + [k + 1, k + 2], **s) | ({"n": 2} if k == 3 else {}))
    return msgs


def check_mtp_and_prefix_cache_change_nothing(model, kv):
    """MTP K=3 and the prefix cache give outputs identical to plain decoding
    (_requests) on model with kv cache rows (also used by test_gqa.py)."""
    msgs = _requests() + [{"type": "stats", "id": "st"}]
    plain, _ = run_stage(engine(model, "--kv-cache-dtype", kv, "--no-enable-prefix-caching",
                                "--max-num-batched-tokens", "48"), msgs)
    both, err = run_stage(engine(model, "--kv-cache-dtype", kv, "--max-num-batched-tokens", "48", *MTP), msgs)
    assert "3 draft tokens per step" in err
    a, b = by_choice(plain), by_choice(both)
    assert a == b and len(a) == 6 and all(len(v["ids"]) == 10 for v in a.values())
    st = next(m for m in both if m["type"] == "stats")     # answered before the first step: fields only
    assert "prefix_cache_hits" in st and "spec_decode_num_drafts" in st
    assert any(m["type"] == "start" and m["cached_tokens"] > 0 for m in both)


@pytest.mark.parametrize("kv", ["auto", "fp8"])
def test_mtp_and_prefix_cache_change_nothing(flash, kv):
    """On the Flash checkpoint, with f32 and FP8 cache rows (no indexer key
    in the rows)."""
    check_mtp_and_prefix_cache_change_nothing(flash, kv)


# ------------------------------------------------------ full chat request

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
MESSAGES = [{"role": "system", "content": "You are a weather assistant."},
            {"role": "user", "content": "What is the weather in Paris?"}]
REASONING = "Look it up!"
OUTPUT = (f"<think>{REASONING}</think><tool_call>get_weather<arg_key>city</arg_key>"
          "<arg_value>Paris</arg_value></tool_call><|observation|>")


def _encode(model, text):
    p = subprocess.run([binpath("glm-tokenize"), "--model", str(model), "--encode"], input=text.encode(),
                       capture_output=True, timeout=30, check=True)
    return json.loads(p.stdout)


def _bf16(x):
    return struct.unpack("<I", struct.pack("<f", x))[0] >> 16     # exact for the values used here


def _patch_bf16(path, tensors):
    """Overwrite whole BF16 tensors of a safetensors file in place."""
    raw = bytearray(path.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    for name, values in tensors.items():
        t = hdr[name]
        b, e = t["data_offsets"]
        assert t["dtype"] == "BF16" and e - b == 2 * len(values), name
        raw[8 + n + b:8 + n + e] = struct.pack(f"<{len(values)}H", *map(_bf16, values))
    path.write_bytes(bytes(raw))


def script_bigram(d, chain, vocab):
    """Make the BF16 checkpoint in d a bigram machine on one token chain:
    embed(t) = 30 * u_t (u_t random +-1 rows), lm_head row of chain[i+1] =
    u_{chain[i]}, other rows 0. The layers still run; their output is small
    next to the scaled embedding, so after the final norm the next token is
    chain's successor of the current one by a wide margin. (Also used by
    test_gqa.py.)"""
    assert len(set(chain)) == len(chain), chain      # a bigram chain needs distinct tokens
    H = json.loads((d / "config.json").read_text())["hidden_size"]
    rng = random.Random(5)
    u = [[rng.choice((-1.0, 1.0)) for _ in range(H)] for _ in range(vocab)]
    embed = [30.0 * v for row in u for v in row]
    head = [0.0] * (vocab * H)
    for a, b in zip(chain, chain[1:]):
        head[b * H:(b + 1) * H] = u[a]
    _patch_bf16(d / "model.safetensors", {"model.embed_tokens.weight": embed, "lm_head.weight": head})


@pytest.fixture(scope="module")
def scripted_flash(flash, tmp_path_factory):
    """The tiny Flash checkpoint made a bigram machine writing OUTPUT after
    the generation prompt's <think> (script_bigram)."""
    d = tmp_path_factory.mktemp("flash_scripted") / "m"
    shutil.copytree(flash, d)
    script_bigram(d, [_encode(d, "<think>")[0]] + _encode(d, OUTPUT[len("<think>"):]), VOCAB)
    return d


@pytest.fixture(scope="module")
def official_template_flash(scripted_flash, tmp_path_factory):
    """The scripted checkpoint with GLM-4.7-Flash's official chat template
    (../shared, copied at test time, never committed) as its own."""
    d = tmp_path_factory.mktemp("flash_official") / "m"
    shutil.copytree(scripted_flash, d)
    shutil.copyfile(shared("data", "templates", "glm-4.7.jinja"), d / "chat_template.jinja")
    return d


def ask_weather(client):
    """The weather request with tools and thinking on a scripted checkpoint
    (also used by test_gqa.py): non-streaming, reasoning + one tool call."""
    kw = dict(model="tiny", messages=MESSAGES, tools=TOOLS, temperature=0, max_tokens=64)
    r = client.chat.completions.create(**kw)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert c.message.model_extra["reasoning"] == REASONING
    assert c.message.content is None
    (tc,) = c.message.tool_calls
    assert tc.function.name == "get_weather" and json.loads(tc.function.arguments) == {"city": "Paris"}
    return r, kw


def ask_weather_streaming(client, kw):
    """Streaming gives the same reasoning and call."""
    chunks = list(client.chat.completions.create(stream=True, **kw))
    reasoning = "".join((ch.choices[0].delta.model_extra or {}).get("reasoning") or ""
                        for ch in chunks if ch.choices)
    calls = [t for ch in chunks if ch.choices for t in (ch.choices[0].delta.tool_calls or [])]
    assert reasoning == REASONING
    assert calls[0].function.name == "get_weather"
    assert json.loads("".join(t.function.arguments or "" for t in calls)) == {"city": "Paris"}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] \
        == ["tool_calls"]


@pytest.mark.parametrize("model,extra", [("scripted_flash", []),
                                         ("scripted_flash", MTP + ["--kv-cache-dtype", "fp8"]),
                                         ("official_template_flash", [])],
                         ids=["plain", "mtp3-fp8kv", "official-template"])
def test_chat_with_tools_and_thinking(request, tmp_path, model, extra):
    scripted_flash = request.getfixturevalue(model)
    with GatewayStack(tmp_path, str(scripted_flash), real_engine(str(scripted_flash), *extra)) as gw:
        client = gw.openai()
        r, kw = ask_weather(client)
        # the prompt is the model directory's GLM-4.7 render: tools dumped whole, no
        # reasoning-effort line, generation prompt <|assistant|><think>
        prompt = render_env().from_string((scripted_flash / "chat_template.jinja").read_text()).render(
            messages=MESSAGES, tools=TOOLS, add_generation_prompt=True)
        assert "Reasoning Effort" not in prompt and '{"type": "function", "function": {' in prompt
        assert prompt.endswith("<|assistant|><think>")
        assert r.usage.prompt_tokens == len(_encode(scripted_flash, prompt))
        assert r.usage.completion_tokens == len(_encode(scripted_flash, OUTPUT)) - 1   # <think> was the prompt's
        ask_weather_streaming(client, kw)
        # thinking off: GLM-4.7 closes the block itself ('</think>'), the model answers
        # from there (our chain has no successor for '</think>' other than <tool_call>)
        r2 = client.chat.completions.create(extra_body={"chat_template_kwargs": {"enable_thinking": False}}, **kw)
        assert r2.choices[0].finish_reason == "tool_calls" and not r2.choices[0].message.model_extra.get("reasoning")
        assert json.loads(r2.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}


def test_official_template_renders_the_same(scripted_flash):
    """The official GLM-4.7-Flash template (../shared, never committed)
    renders this request exactly as the model directory's own template does."""
    off = render_env().from_string(shared("data", "templates", "glm-4.7.jinja").read_text())
    ours = render_env().from_string((scripted_flash / "chat_template.jinja").read_text())
    for kw in ({}, {"enable_thinking": False}):
        assert off.render(messages=MESSAGES, tools=TOOLS, add_generation_prompt=True, **kw) == \
            ours.render(messages=MESSAGES, tools=TOOLS, add_generation_prompt=True, **kw)
