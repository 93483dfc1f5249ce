#!/usr/bin/env python3
"""Python side of the chat-template benchmark: jinja2 configured as
transformers does, template compiled once, `renders` renders timed.
Usage: bench_jinja.py [template] [context.json] [renders] [output-file]"""
import json
import sys
import time

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def main():
    tpath = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/templates/glm-5.2.jinja"
    cpath = sys.argv[2] if len(sys.argv) > 2 else "tests/bench/jinja_context.json"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    with open(tpath, encoding="utf-8") as f:
        tpl = env.from_string(f.read())
    with open(cpath, encoding="utf-8") as f:
        ctx = json.load(f)
    for _ in range(20):
        out = tpl.render(**ctx)
    t0 = time.perf_counter()
    for _ in range(n):
        out = tpl.render(**ctx)
    per = (time.perf_counter() - t0) / n
    print(f"Python  render: {per * 1e6:8.1f} us/render  ({n} renders, output {len(out.encode())} bytes; jinja2 {jinja2.__version__})")
    if len(sys.argv) > 4:
        with open(sys.argv[4], "w", encoding="utf-8", newline="") as f:
            f.write(out)


if __name__ == "__main__":
    main()
