"""End to end with the official `anthropic` client: POST /v1/messages and
/v1/messages/count_tokens on a real glm-gateway over the real text stages,
glm-replay as the engine (exact scripted outputs) on the tiny default model
(its template is GLM-5.2's: thinking on unless disabled)."""
import json
import time
import urllib.error
import urllib.request

import anthropic
import pytest

from gwstack import GatewayStack, replay_engine, write_script

KEY = "sk-test-anthropic"
SCRIPT = [
    {"match": "sunny, 22C", "output": "Let me summarise.</think>It is sunny in Paris.", "chunk": 2},
    {"match": "weather in Paris", "chunk": 2,
     "output": "I should call the tool.</think>Checking.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris"
               "</arg_value><arg_key>days</arg_key><arg_value>3</arg_value></tool_call>"},
    {"match": "count", "output": "Counting.</think>one two three four five six seven eight nine ten"},
    {"match": "story", "output": "Once upon a time there was a small village by the sea."},
    {"output": "I thought about it.</think>The answer is 4.", "chunk": 3},
]
TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                           "required": ["city"]}}]


@pytest.fixture(scope="module")
def gw(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("gwa")
    script = write_script(d / "script.jsonl", SCRIPT)
    with GatewayStack(d, tiny_model, replay_engine(tiny_model, script), gateway_args=("--api-key", KEY)) as s:
        yield s


@pytest.fixture(scope="module")
def client(gw):
    return anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0, timeout=60)


def user(text):
    return [{"role": "user", "content": text}]


def blocks(msg):
    """Content blocks without what is random (signatures, tool ids)."""
    out = []
    for b in msg.content:
        d = b.model_dump(exclude_none=True)
        d.pop("signature", None)
        if d["type"] == "tool_use":
            assert d.pop("id").startswith("chatcmpl-tool-")
        out.append(d)
    return out


def both(client, **kw):
    """The full response and the stream's assembled message, checked equal."""
    full = client.messages.create(model="tiny", **kw)
    with client.messages.stream(model="tiny", **kw) as s:
        streamed = s.get_final_message()
    assert blocks(streamed) == blocks(full)
    assert streamed.stop_reason == full.stop_reason and streamed.stop_sequence == full.stop_sequence
    assert streamed.usage.input_tokens == full.usage.input_tokens
    assert streamed.usage.output_tokens == full.usage.output_tokens
    return full


def test_text_only(client):
    r = both(client, max_tokens=100, messages=user("a story"), thinking={"type": "disabled"})
    assert blocks(r) == [{"type": "text", "text": "Once upon a time there was a small village by the sea."}]
    assert r.stop_reason == "end_turn" and r.stop_sequence is None
    assert r.id.startswith("msg_") and r.type == "message" and r.role == "assistant" and r.model == "tiny"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0


def test_thinking_and_text(client):
    r = both(client, max_tokens=100, messages=user("What is 2+2?"), system="Be brief.")
    assert blocks(r) == [{"type": "thinking", "thinking": "I thought about it."},
                         {"type": "text", "text": "The answer is 4."}]
    assert len(r.content[0].signature) == 32


def test_tool_use_with_typed_input(client):
    r = both(client, max_tokens=200, messages=user("weather in Paris?"), tools=TOOLS)
    assert blocks(r) == [{"type": "thinking", "thinking": "I should call the tool."},
                         {"type": "text", "text": "Checking."},
                         {"type": "tool_use", "name": "get_weather", "input": {"city": "Paris", "days": 3}}]
    assert r.stop_reason == "tool_use"
    forced = client.messages.create(model="tiny", max_tokens=200, messages=user("weather in Paris?"), tools=TOOLS,
                                    tool_choice={"type": "tool", "name": "get_weather"})
    assert forced.content[-1].input == {"city": "Paris", "days": 3} and forced.stop_reason == "tool_use"


def test_tool_result_round_trip(client):
    first = client.messages.create(model="tiny", max_tokens=200, messages=user("weather in Paris?"), tools=TOOLS)
    call = first.content[-1]
    history = user("weather in Paris?") + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "is_error": False,
             "content": [{"type": "text", "text": "sunny, 22C"}, {"type": "text", "text": "wind 5 km/h"}]},
            {"type": "text", "text": "Thanks."}]}]
    r = both(client, max_tokens=100, messages=history, tools=TOOLS)
    assert blocks(r) == [{"type": "thinking", "thinking": "Let me summarise."},
                         {"type": "text", "text": "It is sunny in Paris."}]
    n = client.messages.count_tokens(model="tiny", messages=history, tools=TOOLS)
    assert n.input_tokens == r.usage.input_tokens
    # an error result, given as a plain string
    history[-1]["content"][0] = {"type": "tool_result", "tool_use_id": call.id, "is_error": True,
                                 "content": "sunny, 22C (stale)"}
    r = client.messages.create(model="tiny", max_tokens=100, messages=history, tools=TOOLS)
    assert r.content[-1].text == "It is sunny in Paris."


def test_stop_sequences(client):
    r = both(client, max_tokens=100, messages=user("count please"), stop_sequences=["four"])
    assert blocks(r)[-1] == {"type": "text", "text": "one two three "}
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == "four"


def test_max_tokens(client):
    r = both(client, max_tokens=3, messages=user("count please"))
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 3


def test_count_tokens_equals_prompt(client):
    for kw in ({"messages": user("What is 2+2?")},
               {"messages": user("weather in Paris?"), "tools": TOOLS, "system": "Be brief."},
               {"messages": user("a story"), "thinking": {"type": "disabled"}}):
        n = client.messages.count_tokens(model="tiny", **kw)
        r = client.messages.create(model="tiny", max_tokens=5, **kw)
        assert n.input_tokens == r.usage.input_tokens > 0


def test_event_sequence(gw):
    body = {"model": "tiny", "max_tokens": 100, "stream": True, "messages": user("weather in Paris?"), "tools": TOOLS}
    req = urllib.request.Request(gw.url + "/v1/messages", data=json.dumps(body).encode(),
                                 headers={"x-api-key": KEY, "anthropic-version": "2023-06-01",
                                          "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = []
    for rec in text.strip().split("\n\n"):
        name, data = rec.split("\n", 1)
        assert name.startswith("event: ") and data.startswith("data: ")
        d = json.loads(data[6:])
        assert d["type"] == name[7:]
        events.append(d)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["message_start", "ping"] and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    for i in range(3):   # each block: start, deltas, stop, in order, not interleaved
        mine = [e["type"] for e in events if e.get("index") == i]
        assert mine[0] == "content_block_start" and mine[-1] == "content_block_stop"
        assert set(mine[1:-1]) == {"content_block_delta"}
    args = "".join(e["delta"]["partial_json"] for e in events
                   if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta")
    assert json.loads(args) == {"city": "Paris", "days": 3}
    sig = [e for e in events if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"]
    assert len(sig) == 1 and sig[0]["index"] == 0
    assert events[0]["message"]["usage"]["output_tokens"] == 0
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


def test_errors_in_anthropic_shape(gw, client):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="tiny", max_tokens=0, messages=user("hi"))
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="nope", max_tokens=5, messages=user("hi"))
    assert e.value.body["error"]["type"] == "not_found_error"
    bad = anthropic.Anthropic(base_url=gw.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="tiny", max_tokens=5, messages=user("hi"))
    assert e.value.body["error"]["type"] == "authentication_error"
    # the OpenAI client's Bearer key works on the same server
    req = urllib.request.Request(gw.url + "/v1/messages", headers={"authorization": f"Bearer {KEY}"},
                                 data=json.dumps({"model": "tiny", "max_tokens": 5, "messages": user("hi")}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        assert json.loads(r.read())["type"] == "message"
    req = urllib.request.Request(gw.url + "/v1/messages", headers={"x-api-key": KEY}, data=b"{not json")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400 and json.loads(e.value.read())["error"]["type"] == "invalid_request_error"


def test_disconnect_aborts_and_metrics(tiny_model, tmp_path):
    """A client that leaves a /v1/messages or /v1/responses stream aborts
    the engine's work, as for chat; /metrics counts the routes by handler."""
    from test_gateway_faults import LONG, emitted, make_stack, read_events, total_tokens
    gw, log = make_stack(tiny_model, tmp_path)
    with gw:
        total = total_tokens(gw, LONG)
        for rid, path, body in (
                ("a1", "/v1/messages", {"model": "tiny", "max_tokens": 1000, "stream": True,
                                        "messages": user("a long story")}),
                ("a2", "/v1/responses", {"model": "tiny", "max_output_tokens": 1000, "stream": True,
                                         "input": "a long story"})):
            s = gw.connect()
            data = json.dumps(body).encode()
            s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\ncontent-length: %d\r\n\r\n"
                      % (path.encode(), rid.encode(), len(data)) + data)
            assert len(read_events(s, n=6)) >= 6
            s.close()
        time.sleep(0.5)
        for rid in ("msg_a1", "resp_a2"):
            n = emitted(log, rid)
            assert 0 < n < total / 2, (rid, n, total)
            time.sleep(0.2)
            assert emitted(log, rid) == n, "the engine kept generating after the abort"
        data = json.dumps({"model": "tiny", "max_tokens": 5, "messages": user("short")}).encode()
        urllib.request.urlopen(urllib.request.Request(gw.url + "/v1/messages", data=data)).read()
        with urllib.request.urlopen(gw.url + "/metrics") as r:
            m = r.read().decode()
        assert 'http_requests_total{handler="/v1/messages",method="POST",status="2xx"} 2.0' in m
        assert 'http_requests_total{handler="/v1/responses",method="POST",status="2xx"} 1.0' in m
        assert 'http_request_duration_seconds_count{handler="/v1/messages",method="POST"} 2.0' in m
        assert 'handler="/health"' not in m
        line = [x for x in m.splitlines() if 'finished_reason="abort"' in x][0]
        assert float(line.split()[-1]) >= 2


def test_thinking_budget_accepted(client):
    r = client.messages.create(model="tiny", max_tokens=4096, messages=user("What is 2+2?"),
                               thinking={"type": "enabled", "budget_tokens": 2048})
    assert [b.type for b in r.content] == ["thinking", "text"]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="tiny", max_tokens=2000, messages=user("x"),
                               thinking={"type": "enabled", "budget_tokens": 4000})


def test_pipeline_down_is_overloaded(tiny_model, tmp_path):
    from test_gateway_faults import FAST, health, make_stack
    gw, _ = make_stack(tiny_model, tmp_path, gateway_args=FAST)
    with gw:
        gw.kill("detok")
        deadline = time.monotonic() + 10
        while health(gw) != 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        c = anthropic.Anthropic(base_url=gw.url, api_key="none", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as e:
            c.messages.create(model="tiny", max_tokens=5, messages=user("hi"))
        assert e.value.status_code == 503 and e.value.body["error"]["type"] == "overloaded_error"
        gw.restart("detok")
        deadline = time.monotonic() + 10
        while health(gw) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.messages.create(model="tiny", max_tokens=5, messages=user("hi")).type == "message"


def test_through_glm_serve(tiny_model, tmp_path):
    """The whole server as deployed: glm-serve with the reference flags
    (glm45, glm47, auto tool choice, an API key), glm-replay as the engine;
    Claude-Code-style tool turn with the anthropic SDK, then the Responses
    API with the openai SDK on the same server."""
    import openai
    from test_glm_bench import glm_serve
    script = write_script(tmp_path / "s.jsonl", SCRIPT)
    flags = ("--reasoning-parser", "glm45", "--tool-call-parser", "glm47", "--enable-auto-tool-choice",
             "--api-key", KEY,
             "--stage", f"engine=glm-replay --script {script}")
    with glm_serve(tiny_model, *flags) as (url, model, _):
        c = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0, timeout=60)
        r = c.messages.create(model=model, max_tokens=200, messages=user("weather in Paris?"), tools=TOOLS)
        assert r.stop_reason == "tool_use" and r.content[-1].input == {"city": "Paris", "days": 3}
        with c.messages.stream(model=model, max_tokens=200, messages=user("weather in Paris?"), tools=TOOLS) as s:
            assert s.get_final_message().content[-1].input == {"city": "Paris", "days": 3}
        n = c.messages.count_tokens(model=model, messages=user("weather in Paris?"), tools=TOOLS)
        assert n.input_tokens == r.usage.input_tokens
        o = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=60)
        rr = o.responses.create(model=model, input="What is 2+2?")
        assert rr.output_text == "The answer is 4."
