"""glm-replay as a process: bad generate fields get an error (the stage keeps
going), bad scripts and options are refused at start."""
import subprocess

import pytest

from conftest import binpath, run_stage


@pytest.fixture
def script(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"output_ids": [1, 2, 3]}\n')
    return str(p)


def gen(rid, **sampling):
    return {"type": "generate", "id": rid, "prompt_ids": [1, 2], "sampling": sampling}


def test_bad_max_tokens_is_an_error_not_a_crash(tiny_model, script):
    msgs = [gen("neg", max_tokens=-1), gen("str", max_tokens="many"),
            {"type": "generate", "id": "smap", "prompt_ids": [1], "sampling": 5},
            gen("zero", max_tokens=0), gen("two", max_tokens=2)]
    out, _ = run_stage([binpath("glm-replay"), "--model", tiny_model, "--script", script], msgs)
    errs = {m["id"]: m for m in out if m["type"] == "error"}
    assert set(errs) == {"neg", "str", "smap"} and all(e["code"] == 400 for e in errs.values())
    toks = {m["id"]: m for m in out if m["type"] == "tokens"}
    assert toks["zero"]["token_ids"] == [] and toks["zero"]["finish_reason"] == "length"
    two = [m for m in out if m["type"] == "tokens" and m["id"] == "two"]
    assert [t for m in two for t in m["token_ids"]] == [1, 2] and two[-1]["finish_reason"] == "length"


@pytest.mark.parametrize("rule,msg", [
    ('{"output_ids": [1, 2, 1e12]}', "output_ids"),
    ('{"output_ids": [1.5]}', "output_ids"),
    ('{"output_ids": [1], "stop_reason": 1e300}', "stop_reason"),
    ('{"output_ids": [1], "stop_reason": 2.5}', "stop_reason"),
])
def test_bad_script_is_refused(tiny_model, tmp_path, rule, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text(rule + "\n")
    r = subprocess.run([binpath("glm-replay"), "--model", tiny_model, "--script", str(p)],
                       input=b"", capture_output=True, timeout=60)
    assert r.returncode == 1 and msg in r.stderr.decode()


@pytest.mark.parametrize("chunk", ["0", "3x", "abc", "99999999999999999999"])
def test_bad_chunk_option_is_refused(tiny_model, script, chunk):
    r = subprocess.run([binpath("glm-replay"), "--model", tiny_model, "--script", script, "--chunk", chunk],
                       input=b"", capture_output=True, timeout=60)
    assert r.returncode == 2 and b"--chunk" in r.stderr
