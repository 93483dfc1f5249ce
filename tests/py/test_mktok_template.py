"""glm-mkmodel's chat templates (our own text) must render exactly as GLM's:
tools/mkmodel/chat_template.jinja as GLM-5.2's template, and
chat_template_glm47.jinja (--arch glm4-moe-lite) as GLM-4.7-Flash's
(glm-4.7.jinja).

Rendered with Python jinja2 set up like transformers. The recorded cases
(tests/data/mktok/template_renders*.json, made by tests/mktok/gen_goldens.py)
are checked against their recorded renders always, and against a fresh
render of ../shared's reference template when the shared data is present;
the shared reference goldens (glm-render-goldens.json) are checked too."""
import json

import pytest

from conftest import ROOT, shared
from mktok_render import render_env

# (our source, recorded renders, ../shared reference)
TEMPLATES = {
    "glm52": ("chat_template.jinja", "template_renders.json", "glm-5.2.jinja"),
    "glm47": ("chat_template_glm47.jinja", "template_renders_glm47.json", "glm-4.7.jinja"),
}


def _src(key):
    return ROOT / "tools" / "mkmodel" / TEMPLATES[key][0]


def _recorded(key):
    return json.loads((ROOT / "tests" / "data" / "mktok" / TEMPLATES[key][1]).read_text(encoding="utf-8"))


CASES = [(key, case) for key in TEMPLATES for case in _recorded(key)["cases"]]


def _kw(case):
    return {k: v for k, v in case.items() if k != "name"}


def _ours(key):
    return render_env().from_string(_src(key).read_text(encoding="utf-8"))


def _ref(key):
    return render_env().from_string(shared("data", "templates", TEMPLATES[key][2]).read_text(encoding="utf-8"))


@pytest.mark.parametrize("key,case", CASES, ids=lambda v: v if isinstance(v, str) else v["name"])
def test_recorded_render(key, case):
    assert _ours(key).render(**_kw(case)) == _recorded(key)["renders"][case["name"]]


@pytest.mark.parametrize("key,case", CASES, ids=lambda v: v if isinstance(v, str) else v["name"])
def test_same_as_reference(key, case):
    assert _ours(key).render(**_kw(case)) == _ref(key).render(**_kw(case))


@pytest.mark.parametrize("key", list(TEMPLATES))
def test_shared_reference_goldens(key):
    g = json.loads(shared("data", "templates", "glm-render-goldens.json").read_text(encoding="utf-8"))
    want = g["renders"][TEMPLATES[key][2]]
    assert len(g["cases"]) >= 14
    ours = _ours(key)
    for case in g["cases"]:
        assert ours.render(**_kw(case)) == want[case["name"]], case["name"]


@pytest.mark.parametrize("key", list(TEMPLATES))
def test_template_is_our_own_text(key):
    # not a copy of GLM's file: they agree on output, not on source lines
    ref = shared("data", "templates", TEMPLATES[key][2]).read_text(encoding="utf-8")
    ours_lines = {l.strip() for l in _src(key).read_text(encoding="utf-8").splitlines() if len(l.strip()) > 30}
    ref_lines = {l.strip() for l in ref.splitlines() if len(l.strip()) > 30}
    common = ours_lines & ref_lines     # a few generic lines ("elif m.role == 'assistant'") are fine
    assert len(common) * 10 < len(ours_lines), sorted(common)
