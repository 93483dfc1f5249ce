"""GLM-4.5 family (Glm4MoeForCausalLM, glm-mkmodel --arch glm4-moe: grouped-
query attention) through real processes.

- glm-engine's greedy decode of the tiny GLM-4.5 checkpoints equals
  transformers' (tests/reference/goldens/glm45_tiny.json: q/k norms, 4 query
  heads per KV head; glm45air_tiny.json: no norms, groups of 2), alone, with
  MTP drafting (the MTP block is a GQA block) and with FP8 K/V rows where the
  top tokens are far apart; MTP and the prefix cache change no output, with
  f32 and FP8 K/V rows.
- A full chat request with tools and thinking through every stage on a
  GLM-4.5-architecture checkpoint whose embedding and lm_head are programmed
  (the random GQA layers still run) to write GLM-4.5-style output (a
  newline after the tool name), rendered by GLM-4.5's official template
  (../shared, copied at test time), parsed with --reasoning-parser glm45
  and --tool-call-parser glm45 (vLLM 0.33's name for the same parser class
  as glm47).
"""
import json
import shutil
import subprocess

import pytest

from conftest import ROOT, binpath, run_stage, shared
from gwstack import GatewayStack, real_engine
from mktok_render import render_env
from test_flash import (MESSAGES, MTP, REASONING, TOOLS, VOCAB, _encode, ask_weather, ask_weather_streaming, by_choice,
                        check_mtp_and_prefix_cache_change_nothing, engine, gen, script_bigram)

GOLDENS = {"tiny": ROOT / "tests" / "reference" / "goldens" / "glm45_tiny.json",
           "tiny-air": ROOT / "tests" / "reference" / "goldens" / "glm45air_tiny.json"}


def _mk(tmp_path_factory, preset, dtype="bf16"):
    d = tmp_path_factory.mktemp(f"gqa-{preset}-{dtype}") / "m"
    subprocess.run([binpath("glm-mkmodel"), "--arch", "glm4-moe", "--preset", preset, "--seed", "1",
                    "--dtype", dtype, "--out", str(d)], check=True, capture_output=True, timeout=120)
    return d


@pytest.fixture(scope="module")
def gqa_models(tmp_path_factory):
    return {p: _mk(tmp_path_factory, p) for p in GOLDENS}


def test_checkpoint_is_glm45(gqa_models):
    for preset, d in gqa_models.items():
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["architectures"] == ["Glm4MoeForCausalLM"] and cfg["model_type"] == "glm4_moe"
        assert cfg["attention_bias"] is True and cfg["partial_rotary_factor"] == 0.5
        assert cfg["use_qk_norm"] is (preset == "tiny")
        assert cfg["num_attention_heads"] // cfg["num_key_value_heads"] == (4 if preset == "tiny" else 2)
        assert not any(k.startswith(("index", "kv_lora", "q_lora")) for k in cfg)


@pytest.mark.parametrize("extra", [[], MTP], ids=["plain", "mtp3"])
@pytest.mark.parametrize("preset", sorted(GOLDENS))
def test_greedy_equals_transformers(gqa_models, preset, extra):
    g = json.loads(GOLDENS[preset].read_text())
    assert g["class"] == "Glm4MoeForCausalLM" and g["seed"] == 1 and g["preset"] == preset
    ref = g["greedy"]
    out, err = run_stage(engine(gqa_models[preset], *extra), [gen("g", ref["prompt"], temperature=0,
                                                                  max_tokens=len(ref["tokens"]), ignore_eos=True)])
    assert "Glm4MoeForCausalLM" in err and "GQA" in err
    assert len(ref["tokens"]) >= 32
    assert by_choice(out)[("g", 0)]["ids"] == ref["tokens"]


@pytest.mark.parametrize("kv", ["auto", "fp8"])
def test_mtp_and_prefix_cache_change_nothing(gqa_models, kv):
    """On the GLM-4.5 checkpoint (q/k norms, groups of 4), with f32 and FP8
    K/V rows."""
    check_mtp_and_prefix_cache_change_nothing(gqa_models["tiny"], kv)


def test_fp8_checkpoint_runs_with_mtp(tmp_path_factory):
    """The FP8 (block-scaled) tiny checkpoint decodes the same with and
    without MTP drafting (the MTP block's GQA projections are FP8 too)."""
    d = _mk(tmp_path_factory, "tiny-air", "fp8")
    assert json.loads((d / "config.json").read_text())["quantization_config"]["quant_method"] == "fp8"
    msgs = [gen("f", list(range(3, 40)), temperature=0, max_tokens=16, ignore_eos=True)]
    plain, _ = run_stage(engine(d), msgs)
    spec, _ = run_stage(engine(d, *MTP), msgs)
    assert by_choice(plain) == by_choice(spec) and len(by_choice(plain)[("f", 0)]["ids"]) == 16


# ------------------------------------------------------ full chat request

# GLM-4.5's tool-call format: the name, then a newline, then the arguments
# (GLM-4.7 writes them on the name's line); one newline only, since a bigram
# chain needs distinct tokens.
OUTPUT45 = (f"<think>{REASONING}</think><tool_call>get_weather\n<arg_key>city</arg_key>"
            "<arg_value>Paris</arg_value></tool_call><|observation|>")


@pytest.fixture(scope="module")
def scripted_glm45(gqa_models, tmp_path_factory):
    """The q/k-norm tiny checkpoint made a bigram machine writing OUTPUT45
    after the prompt, with GLM-4.5's official template (../shared, copied at
    test time, never committed) as its chat template. The generation prompt
    ends in <|assistant|>: the chain starts there and the model opens
    <think> itself."""
    d = tmp_path_factory.mktemp("gqa_scripted") / "m"
    shutil.copytree(gqa_models["tiny"], d)
    shutil.copyfile(shared("data", "templates", "glm-4.5.jinja"), d / "chat_template.jinja")
    script_bigram(d, [_encode(d, "<|assistant|>")[0]] + _encode(d, OUTPUT45), VOCAB)
    return d


@pytest.mark.parametrize("extra", [[], MTP + ["--kv-cache-dtype", "fp8"]], ids=["plain", "mtp3-fp8kv"])
def test_chat_with_tools_and_thinking_glm45(scripted_glm45, tmp_path, extra):
    gw = GatewayStack(tmp_path, str(scripted_glm45), real_engine(str(scripted_glm45), *extra))
    # the GLM-4.5 deployment's flags: --reasoning-parser glm45 --tool-call-parser glm45
    gw.cmds["reasoning"] += ["--reasoning-parser", "glm45"]
    gw.cmds["tools"] += ["--tool-call-parser", "glm45"]
    with gw:
        client = gw.openai()
        r, kw = ask_weather(client)
        prompt = render_env().from_string((scripted_glm45 / "chat_template.jinja").read_text()).render(
            messages=MESSAGES, tools=TOOLS, add_generation_prompt=True)
        assert prompt.endswith("<|assistant|>") and "<tool_call>{function-name}" in prompt   # GLM-4.5's text
        assert r.usage.prompt_tokens == len(_encode(scripted_glm45, prompt))
        assert r.usage.completion_tokens == len(_encode(scripted_glm45, OUTPUT45))
        ask_weather_streaming(client, kw)
