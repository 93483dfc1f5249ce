"""Goldens for glm-parse-reasoning | glm-parse-tools from vLLM's own serving code.

Generates GLM-style model outputs (reasoning, content, 0-3 tool calls with
typed / untyped / unknown / repeated / unterminated arguments, unicode,
truncation by max_tokens) for requests with and without tools, every
tool_choice, thinking on and off; turns each into real token ids with a GLM
tokenizer (built from ../shared as tests/py/conftest.py builds it), and runs
them through vLLM's `--reasoning-parser glm45 --tool-call-parser glm47
--enable-auto-tool-choice` the way its chat serving layer does:

  non-streaming  parser.parse(text) + assemble_chat_message_fields +
                 resolve_finish_reason (chat_completion_full_generator)
  streaming      ChatStreamProcessor.step per engine step, with the text of
                 that step from vLLM's own incremental detokenizer
                 (chat_completion_stream_generator), at three chunkings:
                 1 token per step, 3 per step, and random 1-6 (MTP-like)

and writes tests/data/parsers/vllm_glm47.json: per case the request fields,
the output token ids, vLLM's results on every path, and whether they agree.
tests/py/test_parsers_conformance.py replays the same ids through glmpipe's
real stages in CI, without vLLM.

Run by hand (vLLM installed --no-deps in a venv with transformers, tokenizers,
pydantic, torch CPU, jinja2, xgrammar):

    /work/vref-venv/bin/python tests/reference/vllm_parsers.py \
        --out tests/data/parsers/vllm_glm47.json

The output is deterministic for a given --seed (tool-call ids, which vLLM
draws at random, are not recorded; their shape is checked here).
"""
import argparse
import copy
import json
import logging
import os
import pathlib
import random
import re
import sys
import tempfile
import types

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "py"))

CHUNKINGS = ("1", "3", "rand")
TOOL_ID_RE = re.compile(r"^chatcmpl-tool-[0-9a-f]{16}$")

# ============================================================== tools

TOOLS = {
    "get_weather": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]},
    "search": {"type": "object", "properties": {
        "query": {"type": "string"}, "limit": {"type": ["integer", "null"]}, "score": {"type": "number"},
        "filters": {"type": "object", "properties": {"lang": {"type": "string"}, "year": {"type": "integer"}}},
        "tags": {"type": "array", "items": {"type": "string"}}}},
    "calc": {"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": "number"}, "op": {"enum": ["+", "-", "*", "/"]},
        "expr": {"anyOf": [{"type": "integer"}, {"type": "string"}]}, "exact": {"enum": [True, False, None]}}},
    "configure": {"type": "object", "properties": {
        "config": {"type": "dict"}, "ids": {"type": "array", "items": {"type": "integer"}},
        "count": {"type": "int64"}, "ratio": {"type": "double"}, "on": {"type": "bool"},
        "payload": {"type": ["object", "array", "string"]}, "mode": {"type": "Text"}}},
    "get_time": {"type": "object", "properties": {}},
    "untyped": {"type": "object"},
    "noschema": None,
}


def tool_def(name):
    fn = {"name": name, "description": f"the {name} tool"}
    if TOOLS[name] is not None:
        fn["parameters"] = TOOLS[name]
    return {"type": "function", "function": fn}


def prop_types(tool, key):
    """The schema type family a generated value should aim at."""
    params = TOOLS.get(tool)
    if not params or key not in params.get("properties", {}):
        return "string"
    p = params["properties"][key]
    t = p.get("type")
    if "anyOf" in p:
        return "anyof"
    if "enum" in p and t is None:
        return "enum_" + ("bool" if True in p["enum"] else "str")
    if isinstance(t, list):
        return t[0]
    return {"dict": "object", "int64": "integer", "double": "number", "bool": "boolean", "Text": "string"}.get(t, t)


# ============================================================== value pools

STRINGS = ["Paris", "San Francisco", "Zürich", "東京都", "emoji 🚀👨‍👩‍👧", 'say "hi"', "back\\slash", "line1\nline2",
           "tab\there", "  padded  ", "", "a < b", "<b>bold</b>", "x</arg", "1 < 2 && 3 > 2", "ctl\x01\x1f",
           "null", "42", "true", "{\"a\": 1}", "ünïcödé ñ", "العربية", "ẞ straße", "\u00a0nbsp\u00a0", "é",
           "<arg", "</arg_value", "<tool_call", "multi\n\nline\n", "trailing space ", "  "]
INTEGERS = ["3", " 42 ", "-7", "+5", "0", "-0", "1_000", "007", "12345678901234567890", "-98765432109876543210",
            "٣", "３", "3.0", "1e3", "abc", "", "0x10", "null", "1__0", "_1", "\n12\n", "९९"]
NUMBERS = ["1.5", "-0.25", "3", "1e3", "1E-5", " 2.50 ", "1_0.5", "inf", "nan", "-inf", "abc", ".5", "5.",
           "1e400", "123456789012345678901", "0.1", "-0", "1.0", "2e-7", "٣.٥", "3.14159265358979"]
BOOLEANS = ["true", "false", "True", "FALSE", "1", "0", "yes", "", "null", " true ", "tRuE"]
OBJECTS = ['{"lang": "en", "year": 2020}', '{"year": "2020"}', '{"a": 1, "a": 2}', "{bad}", "{}",
           '{"big": 123456789012345678901234567890}', '{"nested": {"level": "3", "x": [1, 2]}}', "[1]",
           '{"f": 1.50, "e": 1e2, "u": "\\u00e9", "n": null}', '{"a": NaN}', "  {\"k\": \"v\"}  ",
           '{"deep": {"deeper": {"deepest": -12345678901234567890}}}', '{"s": "tab\\there"}', "null"]
ARRAYS = ['["a", "b"]', "[1, 2, 3]", "[]", "[1, 123456789012345678901234567890]", "a,b", '["x",]',
          '{"a": 1}', "[1.0, 2.5e3, -0.0]", '[{"k": [true, false, null]}]', "[1e999]", " [ 1 ] ", '["ü", "🚀"]']
ENUM_STR = ["+", "-", "*", "/", "%"]
ENUM_BOOL = ["true", "false", "null", "maybe", "True"]
ANYOF = ["5", "five", "-3", "1.5", "[1]"]

POOLS = {"string": STRINGS, "integer": INTEGERS, "number": NUMBERS, "boolean": BOOLEANS, "object": OBJECTS,
         "array": ARRAYS, "enum_str": ENUM_STR, "enum_bool": ENUM_BOOL, "anyof": ANYOF, "null": ["null", "None"]}

CONTENT = ["The answer is 4.", "Sure, let me check.", "好的，我来查一下。", "Voilà — c'est fait.", "I'll call a tool.",
           "a < b and c > d", "Use <b>HTML</b> here.", "Math: 1 <= 2", "emoji 🚀✨ ok", "Line one.\nLine two.",
           "<tool", "</think", "text with <arg_key> inside", "<|user|> lookalike", "tabs\tand  spaces",
           "ends with newline\n", "\n\nleading newlines", "Ünïcödé façade", "שלום", "🙂"]
REASONING = ["Let me think about this.", "The user wants the weather.", "用户想知道天气。", "Step 1: parse.\nStep 2: act.",
             "Consider a < b.", "hmm", "  spaced reasoning  ", "Reason with emoji 🤔", "Need tools: get_weather.",
             "multi\n\nparagraph\n", "<think> nested?", "a </tool_call> stray"]


# ============================================================== case generator

def gen_call(rng, tools_in_req, f):
    """One tool call's markup; f collects feature tags."""
    names = [t for t in tools_in_req] or list(TOOLS)
    r = rng.random()
    if r < 0.07:
        name = rng.choice(["unknown_tool", "get_wether", "search2"])
        f.add("unknown_name")
    elif r < 0.09:
        name = ""
        f.add("empty_name")
    else:
        name = rng.choice(names)
    pad = rng.choice(["", "", "", "\n", " ", "\n\n"])
    head = rng.choice(["", "", " ", "\n"]) + name + pad
    if pad or head[0:1].isspace():
        f.add("name_ws")
    params = TOOLS.get(name) or {}
    keys = list((params or {}).get("properties", {}))
    nargs = rng.choice([0, 1, 1, 2, 2, 3, 4]) if name != "get_time" else rng.choice([0, 0, 1])
    parts = []
    used = []
    for i in range(nargs):
        r = rng.random()
        if used and r < 0.08:
            key = rng.choice(used)
            f.add("repeated_key")
        elif not keys or r < 0.18:
            key = rng.choice(["note", "extra", "x", "ключ", "key with space", " city "])
            f.add("unknown_key")
        else:
            key = rng.choice(keys)
        used.append(key)
        kind = prop_types(name, key.strip())
        if kind in POOLS:
            value = rng.choice(POOLS[kind])
        else:
            value = rng.choice(STRINGS)
        f.add("arg_" + kind)
        if any(ord(c) > 127 for c in value):
            f.add("unicode")
        sep_kv = rng.choice(["", "", "", "\n", " ", "\n  "])
        sep_pair = rng.choice(["", "", "\n"]) if i else ""
        if rng.random() < 0.03:
            sep_pair += "junk"
            f.add("text_between_pairs")
        parts.append(f"{sep_pair}<arg_key>{key}</arg_key>{sep_kv}<arg_value>{value}</arg_value>")
    body = "".join(parts)
    r = rng.random()
    if parts and r < 0.05:
        body = body[: -len("</arg_value>")]
        f.add("unterminated_value")
    elif r < 0.07:
        body += "<arg_key>dangling</arg_key>"
        f.add("key_without_value")
    tail = rng.choice(["", "", "\n"]) if parts else ""
    return "<tool_call>" + head + body + tail + "</tool_call>"


def gen_case(rng, idx):
    f = set()
    body = {}
    # ---- request
    r = rng.random()
    if r < 0.12:
        tools_in_req = []
        f.add("no_tools")
    else:
        tools_in_req = rng.sample(list(TOOLS), rng.choice([1, 2, 3, len(TOOLS)]))
        body["tools"] = [tool_def(n) for n in tools_in_req]
        r = rng.random()
        if r < 0.12:
            body["tool_choice"] = "none"
        elif r < 0.22:
            body["tool_choice"] = "required"
        elif r < 0.30:
            body["tool_choice"] = {"type": "function", "function": {"name": rng.choice(tools_in_req)}}
        elif r < 0.55:
            body["tool_choice"] = "auto"
        if rng.random() < 0.06:
            body["parallel_tool_calls"] = False
    f.add("tc_" + (body["tool_choice"] if isinstance(body.get("tool_choice"), str)
                   else "named" if "tool_choice" in body else "default"))
    r = rng.random()
    thinking = True
    if r < 0.25:
        body["chat_template_kwargs"] = {"enable_thinking": False}
        thinking = False
    elif r < 0.35:
        body["chat_template_kwargs"] = {"enable_thinking": True}
    f.add("thinking_on" if thinking else "thinking_off")
    if rng.random() < 0.06:
        body["include_reasoning"] = False
        f.add("no_include_reasoning")

    # ---- output text
    out = ""
    if thinking:
        r = rng.random()
        if r < 0.1:
            out += "<think>"
            f.add("explicit_think")
        if rng.random() < 0.9:
            out += rng.choice(REASONING)
            if rng.random() < 0.2:
                out += rng.choice(["\n", " ", "\n\n"])
        r = rng.random()
        if r < 0.08:
            f.add("unclosed_reasoning")   # all reasoning, or a call inside reasoning
        else:
            out += "</think>"
            if rng.random() < 0.3:
                out += "\n"
    elif rng.random() < 0.05:
        out += "<think>x</think>"
        f.add("think_tags_when_off")
    ncalls = rng.choice([0, 0, 1, 1, 1, 2, 2, 3]) if tools_in_req or rng.random() < 0.5 else 0
    if rng.random() < 0.7 or not ncalls:
        out += rng.choice(CONTENT)
        f.add("content_before")
        if ncalls and rng.random() < 0.25:
            out += rng.choice([" ", "\n", "\n\n"])
            f.add("ws_before_call")
    for k in range(ncalls):
        if k and rng.random() < 0.15:
            out += rng.choice(["\n", " Then: ", "\n\nAlso "])
            f.add("text_between_calls")
        out += gen_call(rng, tools_in_req, f)
    if ncalls:
        f.add(f"calls_{ncalls}")
        if rng.random() < 0.12:
            out += rng.choice(["\n", " Done.", "\nAnything else?"])
            f.add("text_after_calls")
        if rng.random() < 0.05:
            out = out[: -len("</tool_call>")]
            f.add("unterminated_call")
    if rng.random() < 0.04:
        out += rng.choice(["<tool", "</thi", "<", "<tool_call"])
        f.add("partial_tag_at_end")
    truncate = rng.random() < 0.12
    return {"body": body, "text": out, "features": f, "truncate": truncate}



# ============================================================== glmpipe's rules

# What glmpipe's stages do, written out in Python: the same as vLLM wherever
# vLLM's streaming and non-streaming paths agree (main() checks this on every
# such case), and glmpipe's documented choice where they do not
# (docs/protocol.md, "Parsers and vLLM"):
#   - content is all text outside tool calls, in order; when at least one call
#     is reported its trailing whitespace is dropped, and its leading
#     whitespace too when a call came before any text (vLLM non-streaming
#     keeps only the text before the first call, stripped; streaming keeps all
#     of it, its whitespace depending on the chunking);
#   - a repeated argument key keeps its first value once that value has been
#     sent (vLLM non-streaming: the last value; streaming: broken JSON);
#   - an argument value still open when its call ends (</tool_call>, or the
#     end of the output) is kept (vLLM non-streaming drops the pair;
#     streaming sends an unterminated JSON string).

PAIR_RE = re.compile(r"<arg_key>(?P<key>.*?)</arg_key>\s*<arg_value>(?P<value>.*?)</arg_value>", re.DOTALL)
PARTIAL_RE = re.compile(r"<arg_key>(?P<key>.*?)</arg_key>\s*<arg_value>(?P<value>.*)$", re.DOTALL)
TAG_RE = re.compile(r"<think>|</think>|<tool_call>|</tool_call>")


def model_reasoning(text, thinking):
    """(reasoning, content stream): glm-parse-reasoning. Tool-call regions
    pass through whole as content; the trailing whitespace of each reasoning
    run is dropped."""
    if not thinking:
        return "", text
    reasoning, content, run = [], [], []
    state = "R"
    pos = 0

    def end_run():
        reasoning.append("".join(run).rstrip())
        run.clear()
    for m in TAG_RE.finditer(text):
        piece = text[pos:m.start()]
        tag = m.group(0)
        pos = m.end()
        if state == "R":
            run.append(piece)
        else:
            content.append(piece)
        if state == "T":
            if tag == "</tool_call>":
                content.append(tag)
                state = "C"
            else:
                content.append(tag)
            continue
        if state == "R":
            if tag == "<think>":
                continue
            if tag in ("</think>", "<tool_call>"):
                end_run()
                if tag == "<tool_call>":
                    content.append(tag)
                    state = "T"
                else:
                    state = "C"
            else:   # </tool_call> in reasoning: text
                run.append(tag)
            continue
        # content
        if tag == "<think>":
            state = "R"
        elif tag == "<tool_call>":
            content.append(tag)
            state = "T"
        elif tag == "</tool_call>":
            content.append(tag)
        # </think> in content: dropped
    if state == "R":
        run.append(text[pos:])
        end_run()
    else:
        content.append(text[pos:])
    return "".join(reasoning), "".join(content)


def streamable(props, key):
    """vLLM streams a string value before it closes only when the tool has no
    properties, or the key's schema allows nothing but "string"."""
    if not props:
        return True
    from vllm.tool_parsers.utils import extract_types_from_schema
    return key in props and set(extract_types_from_schema(props[key])) == {"string"}


def model_args(raw, name, tools):
    """The arguments JSON of one call from its raw text after the name.

    A repeated key replaces the value of the last pair while that value has
    not been sent (the key is still the last one, and its value is not a
    streamed string, or the new value extends the streamed one: vLLM's
    streaming and non-streaming paths agree there); otherwise the first value
    stays. A value still open at the end of the call is kept, but
    never replaces a complete one."""
    props = {}
    for t in tools or []:
        if t["function"]["name"] == name:
            props = (t["function"].get("parameters") or {}).get("properties") or {}
    params, sent = {}, set()
    for m in PAIR_RE.finditer(raw):
        k, v = m.group("key").strip(), m.group("value")
        if k not in params:
            sent.update(params)
            params[k] = v
        elif k == next(reversed(params)) and k not in sent:
            # a streamed string can only grow: the new value must extend it
            if not streamable(props, k) or v.startswith(params[k]):
                params[k] = v
    rest = PAIR_RE.sub("", raw)
    m = PARTIAL_RE.search(rest)
    if m and m.group("key").strip():
        params.setdefault(m.group("key").strip(), m.group("value"))
    from vllm.tool_parsers.utils import coerce_to_schema_type, extract_types_from_schema
    out = {}
    for k, v in params.items():
        p = props.get(k)
        out[k] = coerce_to_schema_type(v, extract_types_from_schema(p)) if isinstance(p, dict) and props else v
    return json.dumps(out, ensure_ascii=False)


def model_tools(content, body):
    """(content, calls): glm-parse-tools. Call markup never reaches the
    content, whether the call is reported, dropped (a name not among the
    tools), or not parsed for calls at all (no tools; tool_choice "none")."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto" if tools else "none")
    active = bool(tools) and choice != "none"
    names = {t["function"]["name"] for t in tools}
    text, calls = [], []
    markup = False
    lead_dropped = False   # a reported call came before any non-space content
    i = 0
    while True:
        j = content.find("<tool_call>", i)
        if j < 0:
            text.append(content[i:])
            break
        text.append(content[i:j])
        markup = True
        k = content.find("</tool_call>", j)
        region = content[j + len("<tool_call>"): k if k >= 0 else len(content)]
        i = k + len("</tool_call>") if k >= 0 else len(content)
        a = region.find("<arg_key>")
        name = (region if a < 0 else region[:a]).strip()
        if active and name in names:
            if not calls and not "".join(text).strip():
                lead_dropped = True
            calls.append({"name": name, "arguments": model_args(region[a:] if a >= 0 else "", name, tools)})
    out = "".join(text)
    if calls:
        # whitespace next to calls at the ends: the leading run only when a
        # call came before any text (text streams before a call is known)
        out = out.strip() if lead_dropped else out.rstrip()
    elif markup and bool(tools) == active and not out.strip():
        out = ""   # only whitespace around call markup (vLLM drops it unless tool_choice is "none")
    if body.get("parallel_tool_calls") is False:
        calls = calls[:1]
    return out, calls


def glmpipe_expect(text, body, finish):
    kw = body.get("chat_template_kwargs") or {}
    thinking = kw.get("enable_thinking", True) is not False
    reasoning, content = model_reasoning(text, thinking)
    content, calls = model_tools(content, body)
    if body.get("include_reasoning") is False:
        reasoning = ""
    named = isinstance(body.get("tool_choice"), dict)
    return {"reasoning": reasoning, "content": content, "tool_calls": calls,
            "finish_reason": "tool_calls" if calls and finish == "stop" and not named else finish}

# ============================================================== vLLM driving

class VLLM:
    def __init__(self, model_dir):
        from vllm.tokenizers.registry import get_tokenizer
        from vllm.parser import ParserManager
        self.tok = get_tokenizer(str(model_dir))
        assert "<|user|>" in self.tok.all_special_tokens, "extra_special_tokens not honoured"
        self.pcls = ParserManager.get_parser(tool_parser_name="glm47", reasoning_parser_name="glm45",
                                             enable_auto_tools=True)
        self.eos = self.tok.convert_tokens_to_ids("<|user|>")

    def request(self, body, n):
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        b = {"model": "glm", "messages": [{"role": "user", "content": f"conformance case {n}"}]}
        b.update(copy.deepcopy(body))
        return ChatCompletionRequest(**b)

    def prepare(self, body, n):
        """What OpenAIServingChat does before generation: chat_template_kwargs,
        the rendered prompt's ids, and the parser's adjust_request (which turns
        skip_special_tokens off)."""
        req = self.request(body, n)
        kw = req.build_chat_params(None, "auto", None).chat_template_kwargs
        tkw = {k: v for k, v in kw.items() if k not in ("add_generation_prompt", "continue_final_message", "documents")}
        prompt = self.tok.apply_chat_template(
            [dict(m) for m in req.messages], tools=[t.model_dump() for t in req.tools] if req.tools else None,
            add_generation_prompt=True, tokenize=False, **tkw)
        pids = self.tok.encode(prompt, add_special_tokens=False)
        p = self.pcls(self.tok, req.tools, model_config=None, chat_template_kwargs=kw)
        p.set_prompt_token_ids(pids)
        req = p.adjust_request(request=req)
        return req, kw, pids, prompt

    def detokenizer(self, req, pids):
        from vllm.v1.engine.detokenizer import IncrementalDetokenizer
        sp = types.SimpleNamespace(
            skip_special_tokens=True if req.skip_special_tokens is None else req.skip_special_tokens,
            spaces_between_special_tokens=req.spaces_between_special_tokens,
            stop=None, min_tokens=0, include_stop_str_in_output=False)
        return IncrementalDetokenizer.from_new_request(
            self.tok, types.SimpleNamespace(sampling_params=sp, prompt_token_ids=pids, request_id="golden"))

    def nonstream(self, body, n, ids, finish):
        from vllm.entrypoints.openai.chat_completion.message_assembly import assemble_chat_message_fields
        from vllm.entrypoints.serve.utils.tool_calls_utils import resolve_finish_reason
        req, kw, pids, prompt = self.prepare(body, n)
        dt = self.detokenizer(req, pids)
        dt.update(list(ids), finish == "stop")
        text = dt.get_next_output_text(True, False)
        p = self.pcls(self.tok, req.tools, model_config=None, chat_template_kwargs=kw)
        p.set_prompt_token_ids(pids)
        r, c, tc = p.parse(text, req, enable_auto_tools=True, model_output_token_ids=list(ids))
        fields = assemble_chat_message_fields(req, r, c, tc, enable_auto_tools=True, parser_cls=self.pcls)
        calls = [{"id": t.id, "name": t.function.name, "arguments": t.function.arguments} for t in fields.tool_calls]
        res = {"reasoning": fields.reasoning, "content": fields.content, "tool_calls": calls,
               "finish_reason": resolve_finish_reason(finish, req, bool(calls))}
        return res, text, prompt

    def stream(self, body, n, ids, finish, steps):
        from vllm.entrypoints.openai.chat_completion.stream_processor import ChatStreamProcessor
        req, kw, pids, _ = self.prepare(body, n)
        dt = self.detokenizer(req, pids)
        p = self.pcls(self.tok, req.tools, model_config=None, chat_template_kwargs=kw)
        proc = ChatStreamProcessor(req, p, enable_auto_tools=True, parser_cls=self.pcls)
        res = {"reasoning": "", "content": "", "tool_calls": [], "finish_reason": None}
        pos = 0
        for size in steps:
            chunk = list(ids[pos:pos + size])
            pos += size
            last = pos >= len(ids)
            dt.update(chunk, last and finish == "stop")
            text = dt.get_next_output_text(last, True)
            d, fr = proc.step(text, chunk, finish if last else None, pids)
            if d is not None:
                res["reasoning"] += d.reasoning or ""
                res["content"] += d.content or ""
                for tc in d.tool_calls or []:
                    calls = res["tool_calls"]
                    if tc.id is not None:
                        calls.append({"index": tc.index, "id": tc.id, "name": None, "arguments": ""})
                    call = next((c for c in calls if c["index"] == tc.index), None)
                    if call is None:   # arguments for a call whose first delta never came
                        call = {"index": tc.index, "id": None, "name": None, "arguments": ""}
                        calls.append(call)
                    if tc.function is not None and tc.function.name is not None:
                        call["name"] = (call["name"] or "") + tc.function.name
                    if tc.function is not None and tc.function.arguments:
                        call["arguments"] += tc.function.arguments
            if last:
                res["finish_reason"] = fr
                break
        return res


def rand_steps(rng, n):
    steps, total = [], 0
    while total < n:
        s = rng.randint(1, 6)
        steps.append(s)
        total += s
    return steps


def steps_for(chunking, n, rsteps):
    if chunking == "rand":
        return rsteps
    k = int(chunking)
    return [k] * ((n + k - 1) // k or 1)


def canon(res):
    """The client-visible result, for comparing paths: None and "" alike for
    text, calls as (name, arguments) in order."""
    return (res["reasoning"] or "", res["content"] or "",
            [(c["name"], c["arguments"]) for c in res["tool_calls"]], res["finish_reason"])


def valid_json_object(s):
    try:
        return isinstance(json.loads(s), dict)
    except ValueError:
        return False


def _ends_partial(ids, tok):
    text = tok.decode(ids, skip_special_tokens=False)
    return text.endswith("\ufffd")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=640)
    ap.add_argument("--seed", type=int, default=20261204)
    ap.add_argument("--shared", default=os.environ.get("GLM_SHARED", str(HERE.parents[2] / "shared")))
    args = ap.parse_args()
    os.environ["GLM_SHARED"] = args.shared
    logging.disable(logging.WARNING)
    import conftest
    import vllm

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vllm-goldens-"))
    model_dir, ids_by_tok = conftest.make_glm_model_dir(tmp / "glm52")
    # GLM-5.2's own tokenizer_config.json lists its 18 special tokens as
    # extra_special_tokens: vLLM's parser then drops them from the text (it
    # detokenizes with skip_special_tokens off), as glm-detok skips them
    cfg_path = model_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["extra_special_tokens"] = conftest.GLM_ADDED[:18]
    cfg_path.write_text(json.dumps(cfg))
    v = VLLM(model_dir)
    rng = random.Random(args.seed)
    cases = []
    mismatch = []
    for n in range(args.count):
        c = gen_case(rng, n)
        ids = v.tok.encode(c["text"], add_special_tokens=False)
        finish = "stop"
        if c["truncate"] and len(ids) > 2:
            # cut between characters: a cut inside one is glm-detok's case
            # (vLLM drops the partial bytes), tested there
            cut = rng.randint(1, len(ids) - 1)
            while cut > 1 and _ends_partial(ids[:cut], v.tok):
                cut -= 1
            ids = ids[:cut]
            finish = "length"
            c["features"].add("truncated")
        else:
            ids = ids + [v.eos]
        rsteps = rand_steps(rng, len(ids))
        ns, text, prompt = v.nonstream(c["body"], n, ids, finish)
        streams = {ch: v.stream(c["body"], n, ids, finish, steps_for(ch, len(ids), rsteps)) for ch in CHUNKINGS}
        for res in [ns] + list(streams.values()):
            for call in res["tool_calls"]:
                if call["id"] is not None and not TOOL_ID_RE.match(call["id"]):
                    sys.exit(f"case {n}: tool-call id {call['id']!r} is not chatcmpl-tool-<16 hex>; update TOOL_ID_RE "
                             "and glm-parse-tools")
                call.pop("id", None)
                call.pop("index", None)
        agree = all(canon(s) == canon(ns) for s in streams.values())
        diff = sorted({k for s in streams.values() for k, a, b in
                       zip(("reasoning", "content", "tool_calls", "finish_reason"), canon(s), canon(ns)) if a != b})
        bad_stream_json = any(not valid_json_object(call["arguments"]) for s in streams.values()
                              for call in s["tool_calls"])
        # special tokens in the text are dropped (glm-detok skips them; vLLM's parser drops them)
        plain = text
        for sp in conftest.GLM_ADDED[:18]:
            plain = plain.replace(sp, "")
        expect = glmpipe_expect(plain, c["body"], finish)
        model_ok = canon(expect) == canon(ns)
        if agree and not model_ok:
            mismatch.append(n)
        cases.append({
            "id": f"c{n:04d}",
            "features": sorted(c["features"]),
            "body": c["body"],
            "output_ids": ids,
            "finish_reason": finish,
            "rand_steps": rsteps,
            "text": text,
            "prompt_tail": prompt[-40:],
            # streaming results are kept only where they differ from non-streaming
            "vllm": {"nonstream": ns, "stream": {k: r for k, r in streams.items() if canon(r) != canon(ns)}},
            "agree": agree,
            "differ_in": diff,
            "stream_args_invalid_json": bad_stream_json,
            "expect": None if agree else expect,
            "expect_source": "vllm" if agree else "glmpipe-rules",
        })
    doc = {
        "description": "vLLM's glm45 reasoning + glm47 tool parsers through its chat serving layer, on generated GLM "
                       "outputs; made by tests/reference/vllm_parsers.py, checked by "
                       "tests/py/test_parsers_conformance.py",
        "vllm_version": vllm.__version__,
        "seed": args.seed,
        "tokenizer": "tests/py/conftest.py make_glm_model_dir: llama3 tokenizer.json + GLM's 36 added tokens, "
                     "chat template glm-5.2.jinja; its 18 special tokens as extra_special_tokens (as GLM-5.2's "
                     "tokenizer_config.json)",
        "eos_token": "<|user|>",
        "tool_call_id": TOOL_ID_RE.pattern,
        "chunkings": {"1": "1 token per engine step", "3": "3 tokens per step",
                      "rand": "rand_steps of the case (1-6 per step, MTP-like)"},
        "fields": {"vllm.nonstream": "vLLM's chat_completion_full_generator result",
                   "vllm.stream": "ChatStreamProcessor results folded, per chunking, where they differ from nonstream",
                   "agree": "vLLM's paths agree on reasoning, content, tool calls and finish_reason at every chunking",
                   "expect": "where they do not: glmpipe's documented result (glmpipe_expect above)"},
        "tools": {n: tool_def(n) for n in TOOLS},
        "cases": cases,
    }
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:   # one case per line: readable diffs
        head = json.dumps({k: v for k, v in doc.items() if k != "cases"}, ensure_ascii=False, indent=1)
        fh.write(head[:-2] + ',\n "cases": [\n')
        fh.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        fh.write("\n ]\n}\n")
    nag = sum(c["agree"] for c in cases)
    if mismatch:
        print(f"glmpipe's rules differ from vLLM where vLLM agrees with itself: {len(mismatch)} cases, e.g. "
              + " ".join(f"c{n:04d}" for n in mismatch[:20]))
    print(f"{len(cases)} cases, vLLM paths agree on {nag}, disagree on {len(cases) - nag}; wrote {args.out}")


if __name__ == "__main__":
    main()
