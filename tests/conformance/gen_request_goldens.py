#!/usr/bin/env python3
"""Make tests/data/requests/goldens.json: what vLLM's own request path makes of
the request bodies in request_bodies.py, for three chat templates.

Run by hand with the vLLM reference environment (never in CI):

    make && VLLM_TARGET_DEVICE=cpu /work/vref-venv/bin/python tests/conformance/gen_request_goldens.py

What runs is vLLM's real code, nothing re-implemented: its GPU-less render
server (`vllm launch render`: the FastAPI route /v1/chat/completions/render,
vLLM's exception handlers, ChatCompletionRequest validation, OnlineRenderer ->
HfRenderer -> parse_chat_messages -> transformers' apply_chat_template ->
tokenization), started in-process with the serve flags of the reference
deployment (--tool-call-parser glm47 --enable-auto-tool-choice
--reasoning-parser glm45), fed each body over Starlette's test client. The
only hook records the prompt text vLLM's safe_apply_chat_template returns
(the route answers with token ids only).

Templates (model directories built the way tests/py/conftest.py builds them):
  glm-5.2, glm-4.7  GLM-shaped directory from ../shared (llama3 tokenizer.json
                    plus GLM's added tokens) with ../shared/data/templates/<t>.jinja
  default           `glm-mkmodel --preset tiny --seed 0` (our embedded default model)
The GLM directories say max_position_embeddings = GLM_MAX_LEN (the CI test
builds them the same way).

Output: {"vllm": version, "transformers": version, "templates": [...],
"cases": [{"name", "client", "body", "results": {template: {"prompt", "ids"}
| {"status", "message", "param", "reason"}}}]}. "reason" is the sentence vLLM
wrote for the refusal: the error message itself, or for a request refused by a
validator inside pydantic ("1 validation error: {... 'msg': 'Value error,
<reason>' ...}") the <reason>; None when pydantic itself refused a field type
(those messages list every union branch pydantic tried; the test compares the
status only).
"""
import asyncio
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "tests" / "data" / "requests" / "goldens.json"
os.environ.setdefault("GLM_SHARED", str((ROOT.parent / "shared").resolve()))
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "py"))

import request_bodies  # noqa: E402
from conftest import make_glm_model_dir  # noqa: E402

SERVED = request_bodies.MODEL
GLM_MAX_LEN = 202752     # GLM-5's context length: Claude Code asks for 32000 new tokens


def model_dirs(tmp):
    tmp = pathlib.Path(tmp)
    dirs = {}
    for t in ("glm-5.2", "glm-4.7"):
        d, _ = make_glm_model_dir(tmp / t, template=f"{t}.jinja", max_len=GLM_MAX_LEN)
        dirs[t] = d
    d = tmp / "default"
    subprocess.run([str(ROOT / "build" / "bin" / "glm-mkmodel"), "--preset", "tiny", "--seed", "0", "--out", str(d)],
                   check=True, capture_output=True)
    dirs["default"] = d
    return dirs


def make_app(model_dir):
    """vLLM's render server for model_dir, as `vllm launch render` builds it,
    minus the metrics/docs routers it does not need here."""
    from fastapi import FastAPI
    from vllm import AsyncEngineArgs
    from vllm.config import VllmConfig
    from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.entrypoints.launchers.render.app_state import init_render_app_state
    from vllm.entrypoints.scale_out.render.api_router import router
    from vllm.entrypoints.serve.exception_handling.register import init_exception_handler
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    args = parser.parse_args(["--model", str(model_dir), "--served-model-name", SERVED,
                              "--tool-call-parser", "glm47", "--enable-auto-tool-choice",
                              "--reasoning-parser", "glm45"])
    validate_parsed_serve_args(args)
    engine_args = AsyncEngineArgs.from_cli_args(args)
    model_config = engine_args.create_model_config()
    model_config.quantization = None
    vllm_config = VllmConfig(model_config=model_config, logging_config=engine_args.create_logging_config(),
                             structured_outputs_config=engine_args.create_structured_outputs_config())
    app = FastAPI()
    app.state.args = args
    app.include_router(router)
    init_exception_handler(app)
    asyncio.run(init_render_app_state(vllm_config, app.state, args))
    return app


def reason_of(message):
    """The sentence behind a refusal (see the module docstring)."""
    m = re.fullmatch(r"1 validation error:\n  (\{.*\})", message, re.S)
    if not m:
        pydantic = re.match(r"\d+ validation errors?(:| for )", message)
        return None if pydantic else message
    inner = re.search(r"'msg': '(?:Value error, )?((?:[^'\\]|\\.)*)'", m.group(1))
    if inner and "'type': 'value_error'" in m.group(1):
        return inner.group(1).encode().decode("unicode_escape")
    return None


def record_renders():
    """Record the prompt text vLLM renders (the routes return only ids):
    the list each render's text is appended to. Must be installed before a
    renderer is built: HfRenderer binds safe_apply_chat_template in __init__."""
    import vllm.renderers.hf as hf
    rendered = []
    real_apply = hf.safe_apply_chat_template

    def recording_apply(*a, **kw):
        out = real_apply(*a, **kw)
        rendered.append(out)
        return out
    hf.safe_apply_chat_template = recording_apply
    return rendered


def main():
    import vllm
    import transformers
    from starlette.testclient import TestClient

    rendered = record_renders()

    cases = [{"name": n, "client": c, "body": b, "results": {}} for n, c, b in request_bodies.bodies()]
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate body names"
    with tempfile.TemporaryDirectory() as tmp:
        dirs = model_dirs(tmp)
        for tname, d in dirs.items():
            client = TestClient(make_app(d), raise_server_exceptions=False)
            for c in cases:
                rendered.clear()
                r = client.post("/v1/chat/completions/render", content=json.dumps(c["body"]).encode(),
                                headers={"content-type": "application/json"})
                j = r.json()
                if r.status_code == 200:
                    assert rendered and isinstance(rendered[-1], str), c["name"]
                    c["results"][tname] = {"prompt": rendered[-1], "ids": j["token_ids"]}
                else:
                    e = j["error"]
                    c["results"][tname] = {"status": r.status_code, "message": e["message"],
                                           "param": e.get("param"), "reason": reason_of(e["message"])}
                print(f"{tname:8} {c['name']:40} {r.status_code}", file=sys.stderr)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {"vllm": vllm.__version__, "transformers": transformers.__version__,
           "templates": list(dirs), "cases": cases}
    # one case per line: readable diffs, no line per token id
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = ",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
    OUT.write_text(json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [\n' + lines + "\n]}\n")
    ok = sum(1 for c in cases for r in c["results"].values() if "ids" in r)
    print(f"{len(cases)} bodies x {len(dirs)} templates: {ok} rendered, "
          f"{len(cases) * len(dirs) - ok} refused -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
