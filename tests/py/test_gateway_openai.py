"""End to end with the official `openai` client: a real glm-gateway over the
real text stages, glm-replay as the engine (exact scripted outputs) on the
tiny default model (its template is GLM-5.2's: thinking on, the prompt ends
in an open <think>)."""
import json
import time
import urllib.request

import openai
import pytest

from gwstack import GatewayStack, replay_engine, write_script

SCRIPT = [
    {"match": "weather in Paris", "chunk": 2,
     "output": "I should call the tool.</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>"
               "<arg_key>days</arg_key><arg_value>3</arg_value></tool_call>"},
    {"match": "both cities", "chunk": 3,
     "output": "Two calls.</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>"
               "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value></tool_call>"},
    {"match": "count", "output": "Counting.</think>one two three four five six seven eight nine ten"},
    {"match": "story", "output": "Once upon a time there was a small village by the sea."},
    {"match": "alpha", "output": " beta gamma"},
    {"match": "omega", "output": " psi chi"},
    {"output": "I thought about it.</think>The answer is 4.", "chunk": 3},
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]


@pytest.fixture(scope="module")
def gw(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("gw")
    script = write_script(d / "script.jsonl", SCRIPT)
    with GatewayStack(d, tiny_model, replay_engine(tiny_model, script)) as s:
        yield s


@pytest.fixture(scope="module")
def client(gw):
    return gw.openai()


def count_tokens(gw, text):
    req = urllib.request.Request(gw.url + "/tokenize", data=json.dumps({"prompt": text}).encode())
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["count"]


def user(text):
    return [{"role": "user", "content": text}]


def assemble(chunks):
    """Join a chat stream back into per-choice messages."""
    out = {}
    for ch in chunks:
        for c in ch.choices:
            m = out.setdefault(c.index, {"content": "", "reasoning": "", "tool_calls": {}, "finish_reason": None,
                                         "role": None, "stop_reason": None})
            d = c.delta
            if d.role:
                m["role"] = d.role
            m["content"] += d.content or ""
            m["reasoning"] += (d.model_extra or {}).get("reasoning") or ""
            for tc in d.tool_calls or []:
                t = m["tool_calls"].setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    t["id"] = tc.id
                if tc.function and tc.function.name:
                    t["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    t["arguments"] += tc.function.arguments
            if c.finish_reason:
                assert m["finish_reason"] is None, "two finishing chunks for one choice"
                m["finish_reason"] = c.finish_reason
                m["stop_reason"] = (c.model_extra or {}).get("stop_reason")
    return out


def test_reasoning_and_content(gw, client):
    r = client.chat.completions.create(model="tiny", messages=user("What is 2+2?"))
    m = r.choices[0].message
    assert m.content == "The answer is 4."
    assert m.model_extra["reasoning"] == "I thought about it."
    assert m.model_extra["reasoning_content"] == "I thought about it."
    assert m.role == "assistant" and not m.tool_calls
    assert r.choices[0].finish_reason == "stop"
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == "tiny"
    assert r.system_fingerprint is None
    n_out = count_tokens(gw, SCRIPT[-1]["output"]) + 1   # + the eos token the output stops on, counted as in vLLM
    assert r.usage.completion_tokens == n_out
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + n_out


def test_stream_assembles_to_the_same_response(client):
    full = client.chat.completions.create(model="tiny", messages=user("What is 2+2?"))
    chunks = list(client.chat.completions.create(model="tiny", messages=user("What is 2+2?"), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    got = assemble(chunks)[0]
    assert got["content"] == full.choices[0].message.content
    assert got["reasoning"] == full.choices[0].message.model_extra["reasoning"]
    assert got["finish_reason"] == "stop"
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.usage is None for c in chunks)   # no stream_options: no usage


def test_tool_call_with_typed_arguments(client):
    r = client.chat.completions.create(model="tiny", messages=user("weather in Paris?"), tools=TOOLS)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert c.message.content is None
    assert c.message.model_extra["reasoning"] == "I should call the tool."
    (tc,) = c.message.tool_calls
    assert tc.type == "function" and tc.id.startswith("chatcmpl-tool-")
    assert tc.function.name == "get_weather"
    assert json.loads(tc.function.arguments) == {"city": "Paris", "days": 3}
    s = assemble(client.chat.completions.create(model="tiny", messages=user("weather in Paris?"), tools=TOOLS,
                                                stream=True))[0]
    assert s["finish_reason"] == "tool_calls"
    assert json.loads(s["tool_calls"][0]["arguments"]) == {"city": "Paris", "days": 3}
    assert s["tool_calls"][0]["name"] == "get_weather" and s["tool_calls"][0]["id"].startswith("chatcmpl-tool-")


def test_several_tool_calls(client):
    r = client.chat.completions.create(model="tiny", messages=user("weather in both cities"), tools=TOOLS)
    calls = r.choices[0].message.tool_calls
    assert [json.loads(t.function.arguments) for t in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert len({t.id for t in calls}) == 2
    s = assemble(client.chat.completions.create(model="tiny", messages=user("weather in both cities"), tools=TOOLS,
                                                stream=True))[0]
    assert [json.loads(s["tool_calls"][i]["arguments"]) for i in (0, 1)] == [{"city": "Paris"}, {"city": "Rome"}]


def test_n_choices(client):
    r = client.chat.completions.create(model="tiny", messages=user("What is 2+2?"), n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.content == "The answer is 4." for c in r.choices)
    n_out = r.usage.completion_tokens
    assert n_out == 3 * len(r.choices[0].message.model_extra["reasoning"].split()) or n_out > 0
    chunks = list(client.chat.completions.create(model="tiny", messages=user("What is 2+2?"), n=3, stream=True))
    got = assemble(chunks)
    assert sorted(got) == [0, 1, 2]
    assert all(got[i]["content"] == "The answer is 4." and got[i]["role"] == "assistant" for i in got)


def test_stop_string(client):
    r = client.chat.completions.create(model="tiny", messages=user("count please"), stop=["four"])
    c = r.choices[0]
    assert c.message.content == "one two three " and c.finish_reason == "stop"
    assert c.model_extra["stop_reason"] == "four"
    s = assemble(client.chat.completions.create(model="tiny", messages=user("count please"), stop=["four"],
                                                stream=True))[0]
    assert s["content"] == "one two three " and s["stop_reason"] == "four"


def test_length(gw, client):
    r = client.chat.completions.create(model="tiny", messages=user("count please"), max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    c = client.completions.create(model="tiny", prompt="a story", max_tokens=5)
    assert c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 5


def test_stream_usage(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=user("count please"), stream=True,
                                                 stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    full = client.chat.completions.create(model="tiny", messages=user("count please"))
    assert last.usage.completion_tokens == full.usage.completion_tokens
    assert last.usage.prompt_tokens == full.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])
    cont = list(client.chat.completions.create(model="tiny", messages=user("count please"), stream=True,
                                               stream_options={"include_usage": True,
                                                               "continuous_usage_stats": True}))
    seen = [c.usage.completion_tokens for c in cont if c.choices]
    assert seen[0] == 0 and seen == sorted(seen) and seen[-1] == full.usage.completion_tokens


def test_chat_logprobs(client):
    r = client.chat.completions.create(model="tiny", messages=user("What is 2+2?"), logprobs=True, top_logprobs=2,
                                       max_tokens=6)
    content = r.choices[0].logprobs.content
    assert len(content) == 6
    for e in content:
        assert e.logprob == 0.0 and bytes(e.bytes).decode() == e.token
        assert [t.token for t in e.top_logprobs] == [e.token]   # glm-replay: one certain candidate
    assert "".join(e.token for e in content).startswith("I thought")
    s = list(client.chat.completions.create(model="tiny", messages=user("What is 2+2?"), logprobs=True,
                                            max_tokens=6, stream=True))
    toks = [e.token for c in s for ch in c.choices if ch.logprobs for e in ch.logprobs.content]
    assert toks == [e.token for e in content]
    ids = client.chat.completions.create(model="tiny", messages=user("What is 2+2?"), logprobs=True, top_logprobs=1,
                                         max_tokens=6, extra_body={"return_tokens_as_token_ids": True,
                                                                   "return_token_ids": True})
    c = ids.choices[0]
    assert [e.token for e in c.logprobs.content] == [f"token_id:{t}" for t in c.model_extra["token_ids"]]
    assert bytes(c.logprobs.content[0].bytes).decode() == c.logprobs.content[0].token


def test_completions_prompt_list_echo_logprobs(client):
    r = client.completions.create(model="tiny", prompt=["alpha", "omega"], max_tokens=10, n=2, echo=True, logprobs=1)
    assert r.id.startswith("cmpl-") and r.object == "text_completion"
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert [c.text for c in r.choices] == ["alpha beta gamma"] * 2 + ["omega psi chi"] * 2
    lp = r.choices[0].logprobs
    # the eos token the output stops on is not in the text but keeps its logprob entry, as in vLLM
    assert "".join(lp.tokens[:-1]) == " beta gamma" and lp.tokens[-1] == "<|endoftext|>"
    assert lp.text_offset[0] == len("alpha")
    assert all(v == 0.0 for v in lp.token_logprobs) and lp.top_logprobs[0] == {lp.tokens[0]: 0.0}
    offs = lp.text_offset
    assert all(offs[i + 1] == offs[i] + len(lp.tokens[i]) for i in range(len(offs) - 1))
    s = list(client.completions.create(model="tiny", prompt=["alpha", "omega"], max_tokens=10, stream=True,
                                       stream_options={"include_usage": True}))
    texts = {}
    for ch in s:
        for c in ch.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
    assert texts == {0: " beta gamma", 1: " psi chi"}
    assert s[-1].usage.completion_tokens == r.usage.completion_tokens // 2


def test_errors(gw, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=user("hi"))
    assert e.value.body["message"] == "The model `nope` does not exist."
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=user("hi"), max_tokens=10 ** 6)
    assert e.value.body["param"] == "max_tokens" and "cannot be greater than max_model_len" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=user("hi " * 5000))
    assert e.value.body["param"] == "input_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=user("hi"), logit_bias={"5": 10})
    assert e.value.body["param"] == "logit_bias"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=user("hi"), stream_options={"include_usage": True})
    assert e.value.body["param"] == "stream_options"
    # a stream that fails validation is an HTTP error too, before any event
    with pytest.raises(openai.BadRequestError):
        list(client.chat.completions.create(model="tiny", messages=user("hi"), max_tokens=-1, stream=True))


def test_request_id_header(gw, client):
    r = client.with_options(default_headers={"X-Request-Id": "abc-123"}).chat.completions.with_raw_response.create(
        model="tiny", messages=user("What is 2+2?"))
    assert r.headers["x-request-id"] == "abc-123"
    assert r.parse().id == "chatcmpl-abc-123"
    r = client.chat.completions.with_raw_response.create(model="tiny", messages=user("What is 2+2?"))
    assert len(r.headers["x-request-id"]) == 32


def test_other_endpoints(gw, client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].model_extra["max_model_len"] == 4096 and models.data[0].owned_by == "vllm"
    with urllib.request.urlopen(gw.url + "/version") as r:
        assert "version" in json.loads(r.read())
    with urllib.request.urlopen(gw.url + "/health") as r:
        assert r.status == 200
    req = urllib.request.Request(gw.url + "/tokenize", data=json.dumps(
        {"model": "tiny", "messages": user("What is 2+2?")}).encode())
    with urllib.request.urlopen(req) as r:
        tok = json.loads(r.read())
    full = client.chat.completions.create(model="tiny", messages=user("What is 2+2?"))
    assert tok["count"] == full.usage.prompt_tokens == len(tok["tokens"]) and tok["max_model_len"] == 4096
    req = urllib.request.Request(gw.url + "/detokenize", data=json.dumps({"tokens": tok["tokens"]}).encode())
    with urllib.request.urlopen(req) as r:
        text = json.loads(r.read())["prompt"]
    assert text.endswith("<|assistant|><think>") and "What is 2+2?" in text
    with urllib.request.urlopen(gw.url + "/metrics") as r:
        m = r.read().decode()
    for name in ("vllm:num_requests_running{", "vllm:time_to_first_token_seconds_bucket{",
                 "vllm:inter_token_latency_seconds_count{", "vllm:e2e_request_latency_seconds_sum{",
                 "vllm:request_success_total{model_name=\"tiny\"", "vllm:generation_tokens_total{"):
        assert name in m, name


def test_api_key(tiny_model, tmp_path):
    script = write_script(tmp_path / "s.jsonl", [{"output": "ok"}])
    with GatewayStack(tmp_path, tiny_model, replay_engine(tiny_model, script),
                      gateway_args=["--api-key", "k1"], env={"GLMPIPE_API_KEY": "k2"}) as s:
        with pytest.raises(openai.AuthenticationError):
            s.openai(api_key="wrong").models.list()
        with pytest.raises(openai.AuthenticationError):
            s.openai(api_key="k").completions.create(model="tiny", prompt="x")
        assert s.openai(api_key="k1").completions.create(model="tiny", prompt="x").choices[0].text == "ok"
        assert s.openai(api_key="k2").models.list().data[0].id == "tiny"
        with urllib.request.urlopen(s.url + "/health") as r:   # not under /v1: no key
            assert r.status == 200


def test_auto_tool_choice_needs_the_server_flag(tiny_model, tmp_path):
    """Without --enable-auto-tool-choice (glm-tokenize's flag, handed on by
    glm-serve) a request with tools is refused by the client library as an
    HTTP 400 with vLLM's words, streaming or not; tool_choice "none" still
    works and reports no calls."""
    script = write_script(tmp_path / "script.jsonl", SCRIPT)
    with GatewayStack(tmp_path / "s", tiny_model, replay_engine(tiny_model, script), tokenize_args=()) as s:
        client = s.openai()
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as e:
                r = client.chat.completions.create(model="tiny", messages=user("weather in Paris?"), tools=TOOLS,
                                                   stream=stream)
                list(r) if stream else None
            assert e.value.status_code == 400
            assert e.value.body["message"] == ('"auto" tool choice requires --enable-auto-tool-choice and '
                                               '--tool-call-parser to be set')
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="tiny", messages=user("weather in Paris?"), tools=TOOLS,
                                           tool_choice="required")
        assert e.value.body["message"] == 'tool_choice="required" requires --tool-call-parser to be set'
        r = client.chat.completions.create(model="tiny", messages=user("weather in Paris?"), tools=TOOLS,
                                           tool_choice="none")
        m = r.choices[0].message
        assert not m.tool_calls and r.choices[0].finish_reason == "stop" and "<tool_call>" not in (m.content or "")


def test_deep_pipeline_message_is_read(tiny_model, tmp_path):
    """A pipeline message nested deeper than msgpack-c's own 32 levels (a
    context with a deep tool schema can be one) is framed and decoded as
    every stage does it (common/wire.h), not dropped: here an `error` with a
    60-level detail, sent into the gateway's input while the request runs,
    fails that request."""
    import threading
    import msgpack
    import zmq
    script = write_script(tmp_path / "script.jsonl", [{"output": "word " * 40}])
    engine = replay_engine(tiny_model, script) + ["--step-ms", "10"]
    with GatewayStack(tmp_path / "s", tiny_model, engine) as s:
        client = s.openai(max_retries=0)
        got = {}

        def ask():
            try:
                client.with_options(default_headers={"X-Request-Id": "deep1"}).chat.completions.create(
                    model="tiny", messages=user("hi"), timeout=30)
                got["ok"] = True
            except openai.APIStatusError as e:
                got["status"], got["message"] = e.status_code, e.body["message"]
        t = threading.Thread(target=ask)
        t.start()
        deep = "leaf"
        for _ in range(60):
            deep = {"d": deep}
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(s.ep("gateway"))
        time.sleep(0.5)   # the request is in flight (about 200 one-token steps of 10 ms)
        push.send(msgpack.packb({"type": "error", "id": "chatcmpl-deep1", "code": 500,
                                 "err_type": "InternalServerError", "message": "deep error", "detail": deep}))
        t.join(timeout=30)
        push.close(linger=0)
        ctx.term()
        time.sleep(3.0)   # the stages finish the request the gateway no longer waits for
        assert got.get("status") == 500 and "deep error" in got.get("message", ""), got
