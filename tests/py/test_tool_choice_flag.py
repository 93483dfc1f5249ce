"""glm-tokenize --enable-auto-tool-choice: vLLM 0.33.0 builds a tool parser
only with --enable-auto-tool-choice (and --tool-call-parser, which glm-serve
requires with it); without one, every tool_choice but "none" is a 400 with the
chat renderer's words (vllm/renderers/online_renderer.py). The request's own
validation comes first, as in vLLM (pydantic, then the renderer).
--generation-config vllm/DIR chooses the sampling defaults' source."""
import json

from conftest import binpath, run_stage

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
AUTO = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'


def answers(model, bodies, *flags):
    msgs = [{"type": "request", "id": f"t{i}", "endpoint": "chat", "body": {"messages": [{"role": "user", "content": "x"}], **b}}
            for i, b in enumerate(bodies)]
    out, _ = run_stage([binpath("glm-tokenize"), "--model", model, *flags], msgs)
    assert [m["id"] for m in out] == [m["id"] for m in msgs]
    return out


BODIES = [
    {"tools": TOOLS},                                   # absent + tools = "auto"
    {"tools": TOOLS, "tool_choice": "auto"},
    {"tools": TOOLS, "tool_choice": "required"},
    {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}},
    {"tools": TOOLS, "tool_choice": "none"},
    {},                                                 # no tools: nothing to choose
    {"tools": [], "tool_choice": "auto"},               # validation first: an empty list is refused
    {"tool_choice": "required"},                        # validation first: tools must be set
    {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "g"}}},   # validation first
]


def test_without_the_flag(tiny_model):
    out = answers(tiny_model, BODIES)
    kinds = [m["type"] for m in out]
    assert kinds == ["error", "error", "error", "error", "generate", "generate", "error", "error", "error"]
    msgs = [m.get("message") for m in out]
    assert msgs[0] == msgs[1] == AUTO
    assert msgs[6].startswith("`tools` must not be an empty array.")
    assert msgs[2] == 'tool_choice="required" requires --tool-call-parser to be set'
    assert msgs[3] == 'tool_choice=function "f" requires --tool-call-parser to be set'
    assert msgs[7].startswith("When using `tool_choice`, `tools` must be set.")
    assert msgs[8].startswith("The tool specified in `tool_choice` does not match any of the specified `tools`")
    for m in out:
        if m["type"] == "error":
            assert m["code"] == 400 and m["err_type"] == "BadRequestError" and m["param"] in (None, "tool_choice", "tools")
    assert out[0]["param"] is None   # vLLM names no param for the server-side rule
    assert out[4]["context"]["tool_choice"] == "none"


def test_with_the_flag(tiny_model):
    out = answers(tiny_model, BODIES, "--enable-auto-tool-choice")
    assert [m["type"] for m in out] == ["generate"] * 6 + ["error"] * 3
    assert [m["context"]["tool_choice"] for m in out[:3]] == ["auto", "auto", "required"]


def test_generation_config_source(tmp_path, tiny_model):
    """auto: the model's generation_config.json; vllm: none of its sampling
    defaults (eos still from it); DIR: that folder's file instead."""
    gen = json.loads(open(f"{tiny_model}/generation_config.json").read())
    body = [{"max_tokens": 4}]
    auto = answers(tiny_model, body)[0]["sampling"]
    vllm = answers(tiny_model, body, "--generation-config", "vllm")[0]["sampling"]
    (tmp_path / "generation_config.json").write_text(json.dumps({**gen, "temperature": 0.25, "top_k": 7}))
    mine = answers(tiny_model, body, "--generation-config", str(tmp_path))[0]["sampling"]
    assert gen["top_p"] == 0.95 and auto["top_p"] == 0.95     # the tiny model's own default
    assert vllm["top_p"] == 1.0 and vllm["temperature"] == 1.0 and vllm["top_k"] == -1
    assert mine["temperature"] == 0.25 and mine["top_k"] == 7 and mine["top_p"] == 0.95
    assert auto["stop_token_ids"] == vllm["stop_token_ids"] == mine["stop_token_ids"] == gen["eos_token_id"]


def test_thinking_as_vllm_glm45_decides(tiny_model):
    """context.thinking (where glm-parse-reasoning starts) follows vLLM
    0.33's glm45 parser: on when neither switch is given, else Python's
    bool(thinking) or bool(enable_thinking)."""
    cases = [({}, True), ({"enable_thinking": False}, False), ({"enable_thinking": False, "thinking": True}, True),
             ({"thinking": False, "enable_thinking": True}, True), ({"enable_thinking": 0}, False),
             ({"enable_thinking": "no"}, True), ({"enable_thinking": None}, True),
             ({"thinking": None, "enable_thinking": False}, False), ({"thinking": []}, False)]
    out = answers(tiny_model, [{"chat_template_kwargs": kw} for kw, _ in cases])
    assert [m["type"] for m in out] == ["generate"] * len(cases), out
    assert [m["context"]["thinking"] for m in out] == [want for _, want in cases]
