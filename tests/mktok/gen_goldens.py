#!/usr/bin/env python3
"""Make tests/data/mktok/*.json: goldens for glm-mkmodel's tokenizer files.

Test tooling only (a scratch venv with PyPI `tokenizers` and `jinja2==3.1.6`):

    python3 -m venv /tmp/v && /tmp/v/bin/pip install tokenizers jinja2==3.1.6
    make build/tests/test_mktok && /tmp/v/bin/python tests/mktok/gen_goldens.py

1. Writes the tiny (960) and small (32704) text files with
   `build/tests/test_mktok --write`, loads each tokenizer.json with Hugging
   Face `tokenizers`, checks the layout (vocab size, added-token ids) and
   records the ids of the hard texts in cases.py plus an FNV-1a hash of the
   file -> goldens.json. test_mktok compares our tokenizer library's encodes
   and the hash against it.
2. Renders tools/mkmodel/chat_template.jinja and ../shared's glm-5.2.jinja with
   jinja2 set up like transformers for the cases in cases.py and in
   ../shared/data/templates/glm-render-goldens.json, asserts the renders are
   identical, and records our cases with their renders -> template_renders.json
   (tests/py/test_mktok_template.py re-renders them). The same for
   chat_template_glm47.jinja (glm-mkmodel --arch glm4-moe-lite) against
   ../shared's glm-4.7.jinja -> template_renders_glm47.json.
"""
import json
import pathlib
import subprocess
import sys
import tempfile

from tokenizers import Tokenizer

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "py"))
import cases  # noqa: E402
from mktok_render import render_env  # noqa: E402

OUT = ROOT / "tests" / "data" / "mktok"
SHARED = ROOT.parent / "shared" / "data" / "templates"
ADDED = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
         "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
         "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>",
         "<|end_of_transcription|>", "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>", "<think>",
         "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<arg_key>",
         "</arg_key>", "<arg_value>", "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>",
         "<|image|>", "<|video|>"]


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def tokenizer_goldens(tmp, name, base):
    d = pathlib.Path(tmp) / name
    d.mkdir()
    subprocess.run([str(ROOT / "build/tests/test_mktok"), "--write", str(d), str(base)], check=True)
    raw = (d / "tokenizer.json").read_bytes()
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=False) == base, tok.get_vocab_size(with_added_tokens=False)
    for off, content in enumerate(ADDED):
        assert tok.token_to_id(content) == base + off, (content, tok.token_to_id(content))
    encodes = []
    for text in cases.HARD_TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == text, text
        encodes.append({"text": text, "ids": ids})
    return {"base_vocab": base, "tokenizer_json_fnv1a64": fnv1a64(raw), "encodes": encodes}


def template_goldens(source="chat_template.jinja", reference="glm-5.2.jinja", own_cases=None):
    """Render our template and ../shared's reference on every case; they must agree."""
    own_cases = cases.TEMPLATE_CASES if own_cases is None else own_cases
    env = render_env()
    ours = env.from_string((ROOT / "tools/mkmodel" / source).read_text(encoding="utf-8"))
    ref = env.from_string((SHARED / reference).read_text(encoding="utf-8"))
    shared_cases = json.loads((SHARED / "glm-render-goldens.json").read_text(encoding="utf-8"))["cases"]
    renders = {}
    for case in shared_cases + own_cases:
        kw = {k: v for k, v in case.items() if k != "name"}
        a, b = ref.render(**kw), ours.render(**kw)
        assert a == b, f"{case['name']}:\n {reference}: {a!r}\n ours:    {b!r}"
        renders[case["name"]] = a
    print(f"templates: {source} and {reference}: {len(renders)} cases render identically")
    return {"description": f"Our chat template's ({source}) cases with their renders; each equals {reference}'s "
                           "render (jinja2 3.1.6 set up like transformers). Keys other than 'name' are "
                           "render variables.",
            "cases": own_cases,
            "renders": {c["name"]: renders[c["name"]] for c in own_cases}}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        g = {"tiny": tokenizer_goldens(tmp, "tiny", 960), "small": tokenizer_goldens(tmp, "small", 32704)}
    (OUT / "goldens.json").write_text(json.dumps(g, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (OUT / "template_renders.json").write_text(
        json.dumps(template_goldens(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    # GLM-4.7-Flash (glm-mkmodel --arch glm4-moe-lite): GLM-4.7's format
    g47 = template_goldens("chat_template_glm47.jinja", "glm-4.7.jinja", cases.TEMPLATE_CASES + cases.GLM47_CASES)
    (OUT / "template_renders_glm47.json").write_text(
        json.dumps(g47, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}/goldens.json ({len(cases.HARD_TEXTS)} texts x 2), template_renders.json and "
          "template_renders_glm47.json")


if __name__ == "__main__":
    main()
