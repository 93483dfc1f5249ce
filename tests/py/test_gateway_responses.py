"""End to end with the official `openai` client's Responses API
(`responses.create`, stream and not): POST /v1/responses on a real
glm-gateway over the real text stages, glm-replay as the engine (exact
scripted outputs), the tiny default model (GLM-5.2's template)."""
import json

import openai
import pytest

from gwstack import GatewayStack, replay_engine, write_script

SCRIPT = [
    {"match": "sunny, 22C", "output": "Summing up.</think>It is sunny in Paris.", "chunk": 2},
    {"match": "weather in Paris", "chunk": 2,
     "output": "I should call the tool.</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris"
               "</arg_value><arg_key>days</arg_key><arg_value>3</arg_value></tool_call>"},
    {"match": "count", "output": "Counting.</think>one two three four five six seven eight nine ten"},
    {"match": "story", "output": "Once upon a time there was a small village by the sea."},
    {"output": "I thought about it.</think>The answer is 4.", "chunk": 3},
]
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                         "required": ["city"]}}]


@pytest.fixture(scope="module")
def gw(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("gwr")
    script = write_script(d / "script.jsonl", SCRIPT)
    with GatewayStack(d, tiny_model, replay_engine(tiny_model, script)) as s:
        yield s


@pytest.fixture(scope="module")
def client(gw):
    return gw.openai()


def items(resp):
    """Output items without what is random (item ids, call ids)."""
    out = []
    for it in resp.output:
        d = it.model_dump(exclude_none=True)
        d.pop("id", None)
        if d["type"] == "function_call":
            assert d.pop("call_id").startswith("chatcmpl-tool-")
        out.append(d)
    return out


def both(client, **kw):
    full = client.responses.create(model="tiny", **kw)
    events = list(client.responses.create(model="tiny", stream=True, **kw))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == ("response.incomplete" if full.status == "incomplete" else "response.completed")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response
    assert items(done) == items(full)
    assert done.status == full.status and done.usage == full.usage
    # the deltas assemble to the final items
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "".join(c.text for it in full.output if it.type == "message" for c in it.content)
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert reasoning == "".join(c.text for it in full.output if it.type == "reasoning" for c in it.content)
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert args == "".join(it.arguments for it in full.output if it.type == "function_call")
    return full


def test_text_and_reasoning(client):
    r = both(client, input="What is 2+2?", instructions="Be brief.")
    assert r.output_text == "The answer is 4."
    assert items(r) == [
        {"summary": [], "type": "reasoning", "content": [{"text": "I thought about it.", "type": "reasoning_text"}]},
        {"content": [{"annotations": [], "text": "The answer is 4.", "type": "output_text"}], "role": "assistant",
         "status": "completed", "type": "message"}]
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed" and r.model == "tiny"
    assert r.instructions == "Be brief."
    assert r.usage.output_tokens_details.reasoning_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_reasoning_effort_none(client):
    r = both(client, input="a story", reasoning={"effort": "none"})
    assert [it.type for it in r.output] == ["message"]
    assert r.output_text == "Once upon a time there was a small village by the sea."


def test_function_call_round_trip(client):
    r = both(client, input="weather in Paris?", tools=TOOLS)
    (rs, call) = r.output
    assert rs.type == "reasoning" and call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 3}
    history = [{"role": "user", "content": "weather in Paris?"}, *[it.model_dump(exclude_none=True) for it in r.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 22C"}]
    r2 = both(client, input=history, tools=TOOLS)
    assert r2.output_text == "It is sunny in Paris."


def test_max_output_tokens(client):
    r = both(client, input="count please", max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3 and r.max_output_tokens == 3


def test_refusals(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="tiny", input="hi", previous_response_id="resp_123")
    assert "previous_response_id" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="tiny", input="hi", tools=[{"type": "web_search_preview"}])
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")


def test_nothing_is_stored(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve("resp_abc")
    assert e.value.body["message"] == "Response with id 'resp_abc' not found."
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_abc")
    r = client.responses.create(model="tiny", input="a story", store=True, reasoning={"effort": "none"})
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
