#!/usr/bin/env python3
"""Writes tests/bench/jinja_context.json: the chat-template benchmark input,
a 20-turn conversation with 5 tools (tool calls, tool results, reasoning)."""
import json
import os

TOOLS = []
for i in range(5):
    TOOLS.append({"type": "function", "function": {
        "name": f"tool_{i}",
        "description": f"Tool number {i}: looks things up in service {i} and returns a JSON summary.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
            "units": {"type": "string", "enum": ["c", "f"]},
            "options": {"type": "object", "properties": {"hourly": {"type": "boolean"},
                                                         "fields": {"type": "array", "items": {"type": "string"}}}}},
            "required": ["city"]}}})

msgs = [{"role": "system", "content": "You are a helpful assistant. Answer concisely and cite tools."}]
for i in range(20):
    msgs.append({"role": "user", "content": f"Question {i}: what is the weather like in city number {i}? "
                                            "Please answer in detail, with a forecast."})
    if i % 3 == 0:
        msgs.append({"role": "assistant", "content": "", "reasoning_content": f"I should call tool_{i % 5}.",
                     "tool_calls": [{"id": f"call_{i}", "type": "function", "function": {
                         "name": f"tool_{i % 5}", "arguments": {"city": f"City {i}", "days": 3,
                                                                "options": {"hourly": True, "fields": ["t", "w"]}}}}]})
        msgs.append({"role": "tool", "content": json.dumps({"temp": 20 + i, "sky": "clear", "wind": 3.5})})
    msgs.append({"role": "assistant", "content": f"The answer to question {i} is sunny with a light breeze. " * 3,
                 "reasoning_content": f"Reasoning about question {i}."})

ctx = {"messages": msgs, "tools": TOOLS, "add_generation_prompt": True}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jinja_context.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(ctx, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(path)
