#!/usr/bin/env python3
"""Generate the Jinja golden files in tests/data/jinja/ with Python jinja2
configured exactly as Hugging Face transformers' apply_chat_template does
(see ../shared/docs/glm-tokenizer-template.md section 3):

    ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                  extensions=[loopcontrols])
    filters["tojson"] = json.dumps(x, ensure_ascii=False, indent=None,
                                   separators=None, sort_keys=False)
    globals["raise_exception"] raises TemplateError(message)
    globals["strftime_now"](fmt) = now.strftime(fmt)  (fixed clock here)

Run from the repository root:  python3 tests/jinja/gen_goldens.py
(needs jinja2; the goldens record its version). Reads the templates from
../shared/data (never copied into the repo). Every case stores the context as
JSON text so C and Python parse the very same input (1 vs 1.0).
"""
import json
import os
import sys
from datetime import datetime, timezone

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

sys.path.insert(0, os.path.dirname(__file__))
import cases_glm        # noqa: E402
import cases_features   # noqa: E402
import cases_idioms     # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
OUT = os.path.join(ROOT, "tests", "data", "jinja")
FIXED_TIME = 1764115200  # 2025-11-26 00:00:00 UTC


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def strftime_now(fmt):
        return datetime.fromtimestamp(FIXED_TIME, timezone.utc).strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = make_env()


def render_case(name, source, context, **where):
    """One golden case: output, or the exception Python raised."""
    ctx_text = json.dumps(context, ensure_ascii=False)
    case = {"name": name}
    case.update(where)
    case["context"] = ctx_text
    try:
        tpl = ENV.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        case["error"] = {"phase": "compile", "type": type(e).__name__, "message": e.message or str(e), "line": e.lineno}
        return case
    except Exception as e:  # noqa: BLE001 - e.g. SyntaxError for 'break' outside a loop
        case["error"] = {"phase": "compile", "type": type(e).__name__, "message": str(e)}
        return case
    try:
        case["output"] = tpl.render(**json.loads(ctx_text))
    except jinja2.exceptions.TemplateSyntaxError as e:
        case["error"] = {"phase": "compile", "type": type(e).__name__, "message": str(e)}
    except Exception as e:  # noqa: BLE001 - the type is the golden
        case["error"] = {"phase": "render", "type": type(e).__name__, "message": str(e)}
    return case


def write(fname, cases, templates=None, contexts=None):
    """templates / contexts: shared texts that cases name with template_ref /
    context_ref instead of repeating them (keeps the goldens small)."""
    doc = {
        "generator": "tests/jinja/gen_goldens.py",
        "jinja2_version": jinja2.__version__,
        "fixed_time": FIXED_TIME,
    }
    if templates:
        doc["templates"] = templates
    if contexts:
        doc["contexts"] = contexts
        for c in cases:
            for k, v in contexts.items():
                if c["context"] == v:
                    c["context_ref"] = k
                    del c["context"]
                    break
    doc["cases"] = cases
    path = os.path.join(OUT, fname)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    nerr = sum(1 for c in cases if "error" in c)
    print(f"{path}: {len(cases)} cases ({nerr} errors)")


def glm_cases():
    out = []
    names = ["glm-4.5.jinja", "glm-4.6.jinja", "glm-4.7.jinja", "glm-5.1.jinja", "glm-5.2.jinja"]
    for tname in names:
        path = os.path.join(SHARED, "data", "templates", tname)
        with open(path, encoding="utf-8") as f:
            src = f.read()
        for cname, ctx in cases_glm.conversations():
            out.append(render_case(f"{tname}:{cname}", src, ctx, template_path="data/templates/" + tname))
    return out


def tokenizer_cases():
    out = []
    for tok in ["llama3", "qwen3", "deepseek_v3"]:
        path = os.path.join(SHARED, "data", "tokenizers", tok, "tokenizer_config.json")
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        src = cfg["chat_template"]
        special = {}
        for k in ["bos_token", "eos_token", "unk_token", "pad_token"]:
            v = cfg.get(k)
            if isinstance(v, dict):
                v = v.get("content")
            if v is not None:
                special[k] = v
        for cname, ctx in cases_glm.tokenizer_conversations(tok):
            ctx = dict(ctx)
            ctx.update(special)
            out.append(render_case(f"{tok}:{cname}", src, ctx, template_tokenizer=tok))
    return out


def feature_cases():
    out = []
    seen = set()
    for name, src, ctx in cases_features.cases():
        assert name not in seen, name
        seen.add(name)
        out.append(render_case(name, src, ctx, template=src))
    return out


FEATURE_CONTEXTS = {"nest": json.dumps(cases_features.NEST, ensure_ascii=False)}


def idiom_cases():
    out = []
    for tname, src in cases_idioms.TEMPLATES.items():
        for cname, ctx in cases_glm.conversations():
            ctx = dict(ctx)
            ctx.update(cases_idioms.EXTRA_VARS)
            case = render_case(f"{tname}:{cname}", src, ctx, template_ref=tname)
            out.append(case)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    write("glm.json", glm_cases())
    write("tokenizers.json", tokenizer_cases())
    write("features.json", feature_cases(), contexts=FEATURE_CONTEXTS)
    write("idioms.json", idiom_cases(), templates=cases_idioms.TEMPLATES)


if __name__ == "__main__":
    main()
