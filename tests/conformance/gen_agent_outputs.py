#!/usr/bin/env python3
"""Make tests/data/requests/anthropic_outputs.json: what vLLM 0.33's own
Anthropic output converters (and its Responses output-item builder) make of
glmpipe's chat output.

Run by hand with the vLLM reference environment (never in CI):

    make && VLLM_TARGET_DEVICE=cpu /work/vref-venv/bin/python tests/conformance/gen_agent_outputs.py

For each scenario (an Anthropic Messages body and a glm-replay script, the
ones tests/py/test_gateway_anthropic.py uses), vLLM's
AnthropicServingMessages.to_chat_completion_request converts the body; the
chat body goes to a real glm-gateway over the real text stages (glm-replay
as the engine), non-streaming and streaming with the stream options vLLM's
Anthropic path sets (include_usage, continuous_usage_stats); vLLM's
messages_full_converter and message_stream_converter turn those chat
outputs into the Messages body and the event stream. The test
(tests/py/test_agent_outputs.py) sends the Anthropic body to glm-gateway's
/v1/messages for the same script and compares, with random ids and
signatures masked and consecutive deltas of a block merged (chunking
depends on timing).

Responses scenarios: the body is converted by `glm-gateway --convert
responses` (whose prompts equal vLLM's: test_agent_api_goldens.py), the
chat output (reasoning, content, tool calls, finish_reason) goes through
vLLM's build_response_output_items; the test compares /v1/responses'
`output` items (ids masked).
"""
import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "tests" / "data" / "requests" / "anthropic_outputs.json"
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
sys.path.insert(0, str(ROOT / "tests" / "py"))

from gwstack import GatewayStack, replay_engine  # noqa: E402
import test_gateway_anthropic as T  # noqa: E402


def scenarios():
    u = T.user
    yield "text", {"max_tokens": 100, "messages": u("a story"), "thinking": {"type": "disabled"}}
    yield "thinking_text", {"max_tokens": 100, "messages": u("What is 2+2?"), "system": "Be brief."}
    yield "tool_use", {"max_tokens": 200, "messages": u("weather in Paris?"), "tools": T.TOOLS}
    yield "tool_named", {"max_tokens": 200, "messages": u("weather in Paris?"), "tools": T.TOOLS,
                         "tool_choice": {"type": "tool", "name": "get_weather"}}
    yield "stop_sequence", {"max_tokens": 100, "messages": u("count please"), "stop_sequences": ["four"]}
    yield "max_tokens", {"max_tokens": 3, "messages": u("count please")}
    yield "tool_result", {"max_tokens": 100, "tools": T.TOOLS, "messages": u("weather in Paris?") + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "sunny, 22C"}]}]}]}


def response_scenarios():
    rtools = [{"type": "function", "name": t["name"], "description": t["description"], "parameters": t["input_schema"]}
              for t in T.TOOLS]
    yield "r_text", {"input": "a story", "reasoning": {"effort": "none"}}
    yield "r_thinking", {"input": "What is 2+2?", "instructions": "Be brief."}
    yield "r_call", {"input": "weather in Paris?", "tools": rtools}
    yield "r_length", {"input": "count please", "max_output_tokens": 3}


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"x-api-key": T.KEY})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


def main():
    import vllm
    from vllm.entrypoints.anthropic.protocol import AnthropicMessagesRequest
    from vllm.entrypoints.anthropic.serving import AnthropicServingMessages
    from vllm.entrypoints.generate.base.protocol import FunctionCall
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionResponse, ChatCompletionStreamResponse
    from vllm.entrypoints.openai.responses.protocol import (InputTokensDetails, OutputTokensDetails, ResponsesRequest,
                                                           ResponsesResponse, ResponseUsage)
    from vllm.entrypoints.generate.base.protocol import DeltaMessage, DeltaToolCall
    from vllm.entrypoints.openai.responses.streaming_events import (SimpleStreamingEventProcessor, _StateType,
                                                                   split_delta)
    from vllm.entrypoints.openai.responses.utils import build_response_output_items, response_item_status

    cases = []
    with tempfile.TemporaryDirectory() as t:
        d = pathlib.Path(t)
        model = d / "m"
        subprocess.run([str(ROOT / "build" / "bin" / "glm-mkmodel"), "--preset", "tiny", "--seed", "0", "--out",
                        str(model)], check=True, capture_output=True)
        script = d / "script.jsonl"
        script.write_text("".join(json.dumps(r) + "\n" for r in T.SCRIPT))
        with GatewayStack(d, str(model), replay_engine(str(model), script), gateway_args=("--api-key", T.KEY)) as gw:
            for name, body in scenarios():
                body = {"model": "tiny", **body}
                chat = AnthropicServingMessages.to_chat_completion_request(AnthropicMessagesRequest.model_validate(body))
                cbody = json.loads(chat.model_dump_json(exclude_unset=True))
                cbody.pop("stream", None)
                cbody.pop("stream_options", None)
                full = ChatCompletionResponse.model_validate_json(post(gw.url + "/v1/chat/completions", cbody))
                vfull = AnthropicServingMessages.messages_full_converter(None, full).model_dump(exclude_none=True)
                sbody = {**cbody, "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
                raw = post(gw.url + "/v1/chat/completions", sbody)
                chunks = [ChatCompletionStreamResponse.model_validate_json(line[6:]) for line in raw.splitlines()
                          if line.startswith("data: {")]

                async def gen():
                    for c in chunks:
                        yield c

                async def collect():
                    return [e async for e in AnthropicServingMessages.message_stream_converter(None, gen())]
                events = []
                for e in asyncio.run(collect()):
                    name_line, data_line = e.strip("\n").split("\n")
                    events.append({"event": name_line[7:], "data": json.loads(data_line[6:])})
                cases.append({"name": name, "body": body, "full": vfull, "events": events})
                print(f"{name:14} {len(events)} events", file=sys.stderr)
            for name, body in response_scenarios():
                body = {"model": "tiny", **body}
                conv = subprocess.run([str(ROOT / "build" / "bin" / "glm-gateway"), "--convert", "responses"],
                                      input=json.dumps(body).encode(), capture_output=True, check=True)
                cbody = json.loads(conv.stdout)
                full = json.loads(post(gw.url + "/v1/chat/completions", cbody))
                ch = full["choices"][0]
                m = ch["message"]
                calls = [FunctionCall(id=t["id"], name=t["function"]["name"], arguments=t["function"]["arguments"])
                         for t in m.get("tool_calls") or []]
                items = build_response_output_items(reasoning=m.get("reasoning"), content=m.get("content"),
                                                    tool_calls=calls, tools=ResponsesRequest.model_validate(body).tools,
                                                    finish_reason=ch["finish_reason"])
                # the whole response object as vLLM builds it (from_request), for
                # its shape; the sampling values it reports depend on the
                # model's generation defaults, which the test does not compare
                req = ResponsesRequest.model_validate(body)
                u = full["usage"]
                usage = ResponseUsage(input_tokens=u["prompt_tokens"], output_tokens=u["completion_tokens"],
                                      total_tokens=u["total_tokens"],
                                      input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
                                      output_tokens_details=OutputTokensDetails(reasoning_tokens=0))
                status = "incomplete" if ch["finish_reason"] == "length" else "completed"
                resp = ResponsesResponse.from_request(req, req.to_sampling_params(4096), model_name="tiny",
                                                      created_time=0, output=items, status=status, usage=usage)
                # the item events of the stream: vLLM's SimpleStreamingEventProcessor
                # driven as _process_simple_streaming_events drives it, with the
                # deltas of glmpipe's chat stream for the same body
                sbody = {**cbody, "stream": True}
                raw = post(gw.url + "/v1/chat/completions", sbody)
                proc = SimpleStreamingEventProcessor(tools=req.tools)
                sev = []
                finish = None
                for line in raw.splitlines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if not chunk["choices"]:
                        continue
                    c0 = chunk["choices"][0]
                    finish = c0.get("finish_reason") or finish
                    d = c0["delta"]
                    dm = DeltaMessage(reasoning=d.get("reasoning"), content=d.get("content"),
                                      tool_calls=[DeltaToolCall.model_validate(t) for t in d.get("tool_calls") or []])
                    if dm.reasoning is None and not dm.content and not dm.tool_calls:
                        continue
                    for part in split_delta(dm):
                        target, tc = proc.resolve_target_state(part)
                        if target == _StateType.NONE:
                            continue
                        if proc.needs_transition(target, tc):
                            sev += proc.close_current()
                            sev += proc.open(target, tc)
                        sev += proc.emit_delta(part, None, None)
                sev += proc.close_current(response_item_status(finish))
                cases.append({"name": name, "api": "responses", "body": body,
                              "output": [i.model_dump(mode="json", by_alias=True) for i in items],
                              "response": resp.model_dump(mode="json", by_alias=True),
                              "events": [e.model_dump(mode="json", by_alias=True) for e in sev]})
                print(f"{name:14} {len(items)} items", file=sys.stderr)
    OUT.write_text(json.dumps({"vllm": vllm.__version__, "cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(cases)} scenarios -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
