"""glm-tokenize through a real process: renders equal Python jinja2's, ids
equal the tokenizer's, vLLM's validation wording, bad input never kills it."""
import json
import os
import subprocess
import tempfile
import time

import msgpack
import pytest

from conftest import binpath, shared, run_stage, pack_all, unpack_all

GOLDENS = None


def goldens():
    global GOLDENS
    if GOLDENS is None:
        GOLDENS = json.loads(shared("data", "templates", "glm-render-goldens.json").read_text())
    return GOLDENS


def case_to_request(case):
    """A golden case (template variables) as the OpenAI request a client
    sends: tool calls with an id and their arguments as a JSON string (what
    vLLM's ChatCompletionRequest accepts; it parses them back to a mapping)."""
    body = {"messages": json.loads(json.dumps(case["messages"]))}
    kwargs = {}
    for k, v in case.items():
        if k in ("name", "messages"):
            continue
        if k in ("tools", "add_generation_prompt"):
            body[k] = v
        else:
            kwargs[k] = v
    if kwargs:
        body["chat_template_kwargs"] = kwargs
    for m in body["messages"]:
        for i, tc in enumerate(m.get("tool_calls") or []):
            tc.setdefault("id", f"call_{i}")
            fn = tc["function"]
            if isinstance(fn.get("arguments"), dict):
                fn["arguments"] = json.dumps(fn["arguments"], ensure_ascii=False)
    return body


def tokenize(model, *args, input=b"", check=True):
    # the reference serve flags: tool requests are taken (test_tool_choice_flag.py tests without)
    p = subprocess.run([binpath("glm-tokenize"), "--model", model, "--enable-auto-tool-choice", *args], input=input,
                       capture_output=True, timeout=60)
    if check and p.returncode:
        raise AssertionError(p.stderr.decode())
    return p


@pytest.mark.parametrize("template", ["glm-4.5.jinja", "glm-4.7.jinja", "glm-5.1.jinja", "glm-5.2.jinja"])
def test_render_equals_python_jinja2(glm_model, template):
    g = goldens()
    tpl = str(shared("data", "templates", template))
    checked = 0
    for i, case in enumerate(g["cases"]):
        want = g["renders"][template][case["name"]]
        if isinstance(want, dict):   # the reference raised
            continue
        if any("content" in m and m["content"] is None for m in case["messages"]):
            # vLLM hands the template content null as [] (nothing rendered);
            # Python on the raw message prints None (test_request_goldens.py)
            continue
        req = case_to_request(case)
        got = tokenize(glm_model["dir"], "--render", "--chat-template", tpl, input=json.dumps(req).encode()).stdout
        assert got.decode() == want, case["name"]
        checked += 1
    assert checked >= 10


def test_generate_message(glm_model):
    ids = glm_model["ids"]
    req = {"type": "request", "id": "chatcmpl-1", "endpoint": "chat", "x_trace": "keep-me",
           "body": {"model": "glm", "messages": [{"role": "user", "content": "Hello!"}],
                    "max_tokens": 5, "stop": "END", "seed": 7}}
    out, _ = run_stage([binpath("glm-tokenize"), "--model", glm_model["dir"]], [req])
    assert len(out) == 1
    g = out[0]
    assert g["type"] == "generate" and g["id"] == "chatcmpl-1" and g["x_trace"] == "keep-me"
    prompt = tokenize(glm_model["dir"], "--render", input=json.dumps(req["body"]).encode()).stdout
    assert prompt.endswith(b"<|assistant|><think>")
    want_ids = json.loads(tokenize(glm_model["dir"], "--encode", input=prompt).stdout)
    assert g["prompt_ids"] == want_ids
    assert g["prompt_ids"][:2] == [ids["[gMASK]"], ids["<sop>"]]
    s = g["sampling"]
    assert s["max_tokens"] == 5 and s["seed"] == 7
    assert s["top_p"] == 0.95 and s["temperature"] == 1.0      # generation_config defaults
    assert s["stop_token_ids"] == [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]
    c = g["context"]
    assert c["stop"] == ["END"] and c["thinking"] is True and c["prompt_ends_in_think"] is True
    assert c["tool_choice"] == "none" and c["model"] == "glm" and c["stream"] is False


def test_thinking_off_and_tools(glm_model):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": tools,
            "chat_template_kwargs": {"enable_thinking": False}, "ignore_eos": True, "max_tokens": 3}
    out, _ = run_stage([binpath("glm-tokenize"), "--model", glm_model["dir"], "--enable-auto-tool-choice"],
                       [{"type": "request", "id": "a", "endpoint": "chat", "body": body}])
    c = out[0]["context"]
    assert c["thinking"] is False and c["prompt_ends_in_think"] is False
    # tools as vLLM's model_dump hands them on: description null when absent
    assert c["tool_choice"] == "auto" and c["tools"] == [
        {"type": "function", "function": {"name": "f", "description": None, "parameters": tools[0]["function"]["parameters"]}}]
    assert out[0]["sampling"]["stop_token_ids"] == []


def test_default_kwargs_and_reasoning_effort(glm_model):
    """vLLM's build_chat_params: server defaults, then the request's kwargs,
    then reasoning_effort, which also sets enable_thinking (effort != "none")
    unless the request's kwargs set it."""
    plain = {"messages": [{"role": "user", "content": "hi"}]}
    off = ("--default-chat-template-kwargs", '{"enable_thinking": false}')
    p = tokenize(glm_model["dir"], "--render", *off, input=json.dumps(plain).encode())
    assert p.stdout.decode().endswith("<|assistant|><think></think>")
    body = dict(plain, reasoning_effort="high")
    p = tokenize(glm_model["dir"], "--render", *off, input=json.dumps(body).encode())
    assert "Reasoning Effort: High" in p.stdout.decode() and p.stdout.decode().endswith("<|assistant|><think>")
    body = dict(plain, reasoning_effort="none")
    p = tokenize(glm_model["dir"], "--render", input=json.dumps(body).encode())
    assert p.stdout.decode().endswith("<|assistant|><think></think>")
    body = dict(plain, reasoning_effort="none", chat_template_kwargs={"enable_thinking": True})
    p = tokenize(glm_model["dir"], "--render", input=json.dumps(body).encode())
    assert p.stdout.decode().endswith("<|assistant|><think>")


def test_completions_prompts(glm_model):
    reqs = [
        {"type": "request", "id": "c1", "endpoint": "completions", "body": {"prompt": "Hello world"}},
        {"type": "request", "id": "c2", "endpoint": "completions", "body": {"prompt": [1, 2, 3], "max_tokens": 4}},
        {"type": "request", "id": "c3", "endpoint": "completions", "body": {"prompt": ["a", [5, 6]], "echo": True}},
    ]
    out, _ = run_stage([binpath("glm-tokenize"), "--model", glm_model["dir"]], reqs)
    assert [m["id"] for m in out] == ["c1", "c2", "c3#0", "c3#1"]
    assert out[0]["prompt_ids"] == json.loads(tokenize(glm_model["dir"], "--encode", input=b"Hello world").stdout)
    assert out[0]["sampling"]["max_tokens"] == 16          # completions default
    assert out[1]["prompt_ids"] == [1, 2, 3] and out[1]["sampling"]["max_tokens"] == 4
    assert out[2]["context"]["parent_id"] == "c3" and out[3]["context"]["prompt_index"] == 1
    assert out[2]["context"]["prompt_text"] == "a"


def errors_for(model, bodies, endpoint="chat", extra=()):
    msgs = [{"type": "request", "id": f"e{i}", "endpoint": endpoint, "body": b} for i, b in enumerate(bodies)]
    out, _ = run_stage([binpath("glm-tokenize"), "--model", model, *extra], msgs)
    assert len(out) == len(bodies)
    return out


def test_bad_requests_get_errors_and_stage_keeps_running(glm_model):
    bodies = [
        {"messages": "hi"},
        {"messages": [{"role": "user", "content": 5}]},
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{not json"}}]}]},
        {"messages": [{"role": "user", "content": "x"}], "temperature": -1},
        {"messages": [{"role": "user", "content": "x"}], "top_p": 0},
        {"messages": [{"role": "user", "content": "x"}], "n": 0},
        {"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"},
        {"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}},
        {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000},
    ]
    out = errors_for(glm_model["dir"], bodies)
    assert all(m["type"] == "error" and m["code"] == 400 for m in out), out
    msgs = [m["message"] for m in out]
    assert "'messages' must be a list" in msgs[0]
    assert "content" in msgs[1]
    assert "tool_calls[0] must be" in msgs[2]      # vLLM's types need id and type
    assert msgs[3] == "temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)"
    assert msgs[4] == "top_p must be in (0, 1], got 0.0. (parameter=top_p, value=0.0)"
    assert msgs[6] == "When using `tool_choice`, `tools` must be set. (parameter=tool_choice)"
    assert msgs[7] == "Stream options can only be defined when `stream=True`. (parameter=stream_options)"
    assert msgs[8] == "when using `top_logprobs`, `logprobs` must be set to true. (parameter=top_logprobs)"
    assert msgs[9] == ("max_tokens=100000 cannot be greater than max_model_len=8192. Please request fewer output "
                       "tokens. (parameter=max_tokens, value=100000)")
    assert out[9]["param"] == "max_tokens"


def test_max_tokens_is_clamped_to_the_room_left(glm_model):
    """vLLM 0.33 (get_max_tokens): a max_tokens that fits the context but not
    beside this prompt is lowered to what fits, not refused."""
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8190}
    out, _ = run_stage([binpath("glm-tokenize"), "--model", glm_model["dir"]],
                       [{"type": "request", "id": "a", "endpoint": "chat", "body": body}])
    assert out[0]["type"] == "generate"
    assert out[0]["sampling"]["max_tokens"] == 8192 - len(out[0]["prompt_ids"])


def test_prompt_too_long_uses_vllm_wording(glm_model):
    text = "hello " * 9000
    n = len(json.loads(tokenize(glm_model["dir"], "--encode", input=text.encode()).stdout))
    out = errors_for(glm_model["dir"], [{"prompt": text}], endpoint="completions")
    assert out[0]["type"] == "error"
    assert n > 8192
    assert out[0]["message"] == ("This model's maximum context length is 8192 tokens. However, your prompt contains at "
                                 "least 8193 input tokens, which exceeds this limit even without any output tokens. "
                                 "Please reduce the length of the input prompt. (parameter=input_tokens, value=8193)")
    assert out[0]["param"] == "input_tokens"


def test_twenty_megabyte_prompt(glm_model):
    big = "word " * (4 << 20)   # 20 MiB
    t = time.time()
    out = errors_for(glm_model["dir"], [{"messages": [{"role": "user", "content": big}]}, {"prompt": "ok"}],
                     extra=())
    assert out[0]["type"] == "error" and "maximum context length" in out[0]["message"]
    assert out[1]["type"] == "error" or out[1]["type"] == "generate"
    assert time.time() - t < 60


def test_template_raise_exception_and_syntax_error(glm_model, tmp_path):
    tpl = tmp_path / "raise.jinja"
    tpl.write_text("{% if messages[0].role != 'system' %}{{ raise_exception('first message must be system') }}{% endif %}ok")
    out = errors_for(glm_model["dir"], [{"messages": [{"role": "user", "content": "x"}]}],
                     extra=("--chat-template", str(tpl)))
    assert out[0]["type"] == "error" and "first message must be system" in out[0]["message"]
    bad = tmp_path / "bad.jinja"
    bad.write_text("hello\n{% if x %}\n{{ y }")
    p = tokenize(glm_model["dir"], "--chat-template", str(bad), check=False)
    assert p.returncode == 1 and b"line" in p.stderr and b"column" in p.stderr


def test_malformed_messages_do_not_stop_the_stage(glm_model):
    good = msgpack.packb({"type": "request", "id": "ok", "endpoint": "completions", "body": {"prompt": "hi"}})
    stream = msgpack.packb([1, 2]) + msgpack.packb({"type": "request"}) + msgpack.packb({"id": "x"}) + \
        msgpack.packb({"type": "request", "id": "b", "body": 5}) + \
        msgpack.packb({"type": "abort", "id": "zz"}) + good
    p = subprocess.run([binpath("glm-tokenize"), "--model", glm_model["dir"]], input=stream, capture_output=True, timeout=30)
    assert p.returncode == 0
    out = unpack_all(p.stdout)
    assert [m["type"] for m in out] == ["error", "error", "abort", "generate"]
    assert out[0]["id"] == "x" and out[1]["id"] == "b"
    assert b"not a map" in p.stderr and b"without an id" in p.stderr


def test_missing_or_corrupt_tokenizer(tmp_path, glm_model):
    p = subprocess.run([binpath("glm-tokenize"), "--model", str(tmp_path)], capture_output=True, timeout=30)
    assert p.returncode == 1 and b"tokenizer.json" in p.stderr
    d = tmp_path / "m"
    d.mkdir()
    full = open(os.path.join(glm_model["dir"], "tokenizer.json"), "rb").read()
    (d / "tokenizer.json").write_bytes(full[: len(full) // 2])
    p = subprocess.run([binpath("glm-tokenize"), "--model", str(d)], capture_output=True, timeout=30)
    assert p.returncode == 1 and b"tokenizer.json" in p.stderr


def test_zeromq_transport(glm_model, tmp_path):
    zmq = pytest.importorskip("zmq")
    ep_in, ep_out = f"ipc://{tmp_path}/in", f"ipc://{tmp_path}/out"
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(ep_out)                       # downstream binds its input
    p = subprocess.Popen([binpath("glm-tokenize"), "--model", glm_model["dir"], "--in", ep_in, "--out", ep_out],
                         stderr=subprocess.PIPE)
    try:
        push = ctx.socket(zmq.PUSH)
        push.connect(ep_in)                 # upstream connects to the stage's input
        for i in range(3):
            push.send(msgpack.packb({"type": "request", "id": f"z{i}", "endpoint": "completions",
                                     "body": {"prompt": f"hello {i}"}}))
        pull.setsockopt(zmq.RCVTIMEO, 20000)
        got = [msgpack.unpackb(pull.recv()) for _ in range(3)]
        assert [m["id"] for m in got] == ["z0", "z1", "z2"]
        assert all(m["type"] == "generate" for m in got)
        push.close(linger=0)
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0     # SIGTERM: clean exit
        pull.close(linger=0)
        ctx.term()


def test_render_keeps_python_number_types(tiny_model):
    """OpenAI clients send tool-call arguments as JSON strings; Python's
    json.loads keeps 1.0 a float and 1e5 becomes 100000.0. The prompt must
    show them exactly as transformers would (the model was trained on it)."""
    from mktok_render import render_env
    args = '{"x": 1.0, "y": 2, "z": 1e5, "s": "1.0", "n": null, "nested": {"f": -0.5, "l": [1, 2.0]}}'
    body = {"messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "", "tool_calls": [
                             {"id": "a", "type": "function", "function": {"name": "f", "arguments": args}}]}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {"x": {"type": "number", "default": 1.0}}}}}]}
    got = tokenize(tiny_model, "--render", input=json.dumps(body).encode()).stdout.decode()
    ref_msgs = json.loads(json.dumps(body["messages"]))
    ref_msgs[1]["tool_calls"][0]["function"]["arguments"] = json.loads(args)
    ref_tools = json.loads(json.dumps(body["tools"]))      # as vLLM's model_dump passes them
    ref_tools[0]["function"] = {"name": "f", "description": None, "parameters": ref_tools[0]["function"]["parameters"]}
    tpl = render_env().from_string(open(os.path.join(tiny_model, "chat_template.jinja")).read())
    want = tpl.render(messages=ref_msgs, tools=ref_tools, add_generation_prompt=True,
                      eos_token="<|endoftext|>", pad_token="<|endoftext|>", documents=None)
    assert got == want
    assert "<arg_value>1.0</arg_value>" in got and "<arg_value>100000.0</arg_value>" in got


CFM_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def transformers_continue_final(render, msgs):
    """transformers 5.x apply_chat_template(continue_final_message=True): the
    final message gets a tag, the chat is rendered and cut at the tag."""
    msgs = json.loads(json.dumps(msgs))
    final = msgs[-1]["content"]
    msgs[-1]["content"] = final + CFM_TAG
    rendered = render(msgs)
    if final.strip() not in rendered or CFM_TAG.strip() not in rendered:
        return None
    loc = rendered.rindex(CFM_TAG.strip())
    if rendered[loc:loc + len(CFM_TAG)] == CFM_TAG:
        return rendered[:loc]
    return rendered[:loc].rstrip()


@pytest.mark.parametrize("final", ["Hi", "Hi ", " Hi", " Hi ", "Hi\u3000", "\u3000Hi", "a\u2003b\u2028", "  ", ""])
@pytest.mark.parametrize("content", ["m.content", "m.content | trim"])
def test_continue_final_message_cut_matches_transformers(glm_model, tmp_path, final, content):
    import jinja2
    src = "{% for m in messages %}[{{ m.role }}]{{ " + content + " }}|{% endfor %}"
    tpl = tmp_path / "t.jinja"
    tpl.write_text(src)
    msgs = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": final}]
    want = transformers_continue_final(lambda m: jinja2.Template(src).render(messages=m), msgs)
    assert want is not None
    req = {"messages": msgs, "continue_final_message": True, "add_generation_prompt": False}
    got = tokenize(glm_model["dir"], "--render", "--chat-template", str(tpl), input=json.dumps(req).encode())
    assert got.stdout.decode() == want


def test_out_of_range_numbers_are_errors(glm_model):
    base = {"messages": [{"role": "user", "content": "x"}]}
    out = errors_for(glm_model["dir"], [dict(base, top_k=1e300), dict(base, top_k=-1e300), dict(base, include_stop_str_in_output="yes")])
    assert [(m["type"], m["code"], m["param"]) for m in out] == \
        [("error", 400, "top_k"), ("error", 400, "top_k"), ("error", 400, "include_stop_str_in_output")]


def test_integers_and_nul_pass_exactly(glm_model):
    """Every integer exact from the request to the generate message (seed,
    tools in the context; beyond 64 bits the msgpack bigint extension), NUL
    characters kept; a seed outside int64 is refused as vLLM refuses it."""
    tools = [{"type": "function", "function": {"name": "f", "description": "a\u0000b", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "maximum": 2**64 - 1, "default": 2**53 + 1,
                                               "multipleOf": 2**70}}}}}]
    bodies = [{"messages": [{"role": "user", "content": "x\u0000y"}], "seed": 2**63 - 1, "tools": tools},
              {"messages": [{"role": "user", "content": "x"}], "seed": 2**63}]
    lines = "".join(json.dumps({"type": "request", "id": f"r{i}", "endpoint": "chat", "body": b}) + "\n"
                    for i, b in enumerate(bodies)).encode()
    packed = subprocess.run([binpath("glm-msg"), "pack"], input=lines, capture_output=True, check=True).stdout
    p = subprocess.run([binpath("glm-tokenize"), "--model", glm_model["dir"], "--enable-auto-tool-choice"],
                       input=packed, capture_output=True,
                       timeout=60)
    out = unpack_all(p.stdout)
    g = out[0]
    assert g["type"] == "generate" and g["sampling"]["seed"] == 2**63 - 1
    n = g["context"]["tools"][0]["function"]["parameters"]["properties"]["n"]
    assert n["maximum"] == 2**64 - 1 and n["default"] == 2**53 + 1
    assert n["multipleOf"] == msgpack.ExtType(1, str(2**70).encode())
    assert g["context"]["tools"][0]["function"]["description"] == "a\u0000b"
    prompt = tokenize(glm_model["dir"], "--render", input=json.dumps(bodies[0]).encode()).stdout.decode()
    assert "x\u0000y" in prompt and '"maximum": 18446744073709551615' in prompt and str(2**70) in prompt
    assert out[1]["type"] == "error" and out[1]["code"] == 400 and out[1]["param"] == "seed"
