"""glm-gateway's /v1/messages output against vLLM 0.33's own Anthropic
output converters.

tests/data/requests/anthropic_outputs.json was made by
tests/conformance/gen_agent_outputs.py: vLLM's messages_full_converter and
message_stream_converter applied to glmpipe's chat output for the same
request and the same replayed engine output. Here the Anthropic body goes
to glm-gateway's /v1/messages: the body must be vLLM's and the events
vLLM's, with random ids and signatures masked, consecutive deltas of a
block merged (chunk boundaries depend on timing) and our `ping` left out
(vLLM sends none; Anthropic's API does). For /v1/responses: the `output`
items equal what vLLM's build_response_output_items makes of the same chat
output, ids masked, in the body and in response.completed."""
import json
import urllib.request

import pytest

from conftest import ROOT
from test_gateway_anthropic import KEY, gw  # noqa: F401  (gw: the fixture)

GOLDENS = ROOT / "tests" / "data" / "requests" / "anthropic_outputs.json"


def mask(v):
    """Random ids and signatures out of a body or an event."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if k in ("id", "signature", "call_id", "item_id") and isinstance(x, str):
                out[k] = "TOOL" if x.startswith(("chatcmpl-tool-", "toolu_")) else "ID"
            else:
                out[k] = mask(x)
        return out
    if isinstance(v, list):
        return [mask(x) for x in v]
    return v


def merged(events):
    out = []
    for e in events:
        if e["event"] == "ping":
            continue
        d = e["data"]
        prev = out[-1]["data"] if out else None
        if (e["event"] == "content_block_delta" and prev and prev["type"] == "content_block_delta" and
                prev["index"] == d["index"] and prev["delta"]["type"] == d["delta"]["type"] and
                d["delta"]["type"] != "signature_delta"):
            key = {"thinking_delta": "thinking", "text_delta": "text", "input_json_delta": "partial_json"}[d["delta"]["type"]]
            prev["delta"][key] += d["delta"][key]
            continue
        out.append({"event": e["event"], "data": json.loads(json.dumps(d))})
    return mask(out)


def post(gw, body, path="/v1/messages"):  # noqa: F811
    req = urllib.request.Request(gw.url + path, data=json.dumps(body).encode(), headers={"x-api-key": KEY})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


ALL = json.loads(GOLDENS.read_text())["cases"]
def within(ours, theirs):
    """ours equals theirs, except that an object of ours may leave out the
    members pydantic fills with None (vLLM echoes request objects such as
    `reasoning` and `tools` as its models dump them)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return all(k in theirs and within(v, theirs[k]) for k, v in ours.items()) and \
            all(v is None for k, v in theirs.items() if k not in ours)
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(within(a, b) for a, b in zip(ours, theirs))
    return ours == theirs


CASES = [c for c in ALL if c.get("api") != "responses"]
RCASES = [c for c in ALL if c.get("api") == "responses"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_messages_output_equals_vllm(gw, case):  # noqa: F811
    full = json.loads(post(gw, case["body"]))
    assert mask(full) == mask(case["full"])
    raw = post(gw, {**case["body"], "stream": True})
    events = []
    for rec in raw.strip().split("\n\n"):
        name, data = rec.split("\n", 1)
        events.append({"event": name[7:], "data": json.loads(data[6:])})
    assert merged(events) == merged(case["events"])


@pytest.mark.parametrize("case", RCASES, ids=[c["name"] for c in RCASES])
def test_responses_output_equals_vllm(gw, case):  # noqa: F811
    full = json.loads(post(gw, case["body"], "/v1/responses"))
    assert mask(full["output"]) == mask(case["output"])
    # the response object: vLLM's fields, in vLLM's order; those that do not
    # depend on the model's sampling defaults or on token counts equal
    want = case["response"]
    assert list(full) == list(want)
    loose = {"id", "created_at", "output", "usage", "temperature", "top_p", "max_output_tokens", "top_logprobs"}
    for k in full:
        if k not in loose:
            assert within(full[k], want[k]), (k, full[k], want[k])
    assert list(full["usage"]) == list(want["usage"])
    for k in ("input_tokens_details", "output_tokens_details"):
        assert list(full["usage"][k]) == list(want["usage"][k])
    raw = post(gw, {**case["body"], "stream": True}, "/v1/responses")
    last = json.loads(raw.strip().split("\n\n")[-1].split("\n", 1)[1][6:])
    assert last["type"] == ("response.incomplete" if full["status"] == "incomplete" else "response.completed")
    assert mask(last["response"]["output"]) == mask(case["output"])


def merged_responses(events):
    """Item events only (not created / in_progress / the terminal one), each
    item's consecutive deltas merged, sequence numbers dropped."""
    out = []
    for e in events:
        e = {k: v for k, v in e.items() if k != "sequence_number"}
        if e["type"] in ("response.created", "response.in_progress", "response.completed", "response.incomplete"):
            continue
        prev = out[-1] if out else None
        if prev and e["type"].endswith(".delta") and prev["type"] == e["type"] and prev["item_id"] == e["item_id"]:
            prev["delta"] += e["delta"]
            continue
        # vLLM contradicts itself on a reasoning item's status: null in the
        # body, "completed" in the stream's output_item.done; glmpipe says
        # null in both (docs/protocol.md §9)
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "reasoning":
            e = {**e, "item": {**e["item"], "status": None}}
        out.append(json.loads(json.dumps(e)))
    return mask(out)


@pytest.mark.parametrize("case", RCASES, ids=[c["name"] for c in RCASES])
def test_responses_events_equal_vllm(gw, case):  # noqa: F811
    raw = post(gw, {**case["body"], "stream": True}, "/v1/responses")
    events = [json.loads(rec.split("\n", 1)[1][6:]) for rec in raw.strip().split("\n\n")]
    assert merged_responses(events) == merged_responses(case["events"])
