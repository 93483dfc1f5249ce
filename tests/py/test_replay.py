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


# ---------------------------------------------------------------- timing

def timed_run(cmd, msgs_before, later=(), later_at=0.0, timeout=30):
    """Feed msgs_before at once (and `later` after later_at s), close stdin; return
    [(seconds since start, message)] as the stage writes them."""
    import threading
    import time

    import msgpack
    from conftest import pack_all
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    p.stdin.write(pack_all(msgs_before))
    p.stdin.flush()

    def feed_later():
        if later:
            time.sleep(later_at)
            p.stdin.write(pack_all(later))
            p.stdin.flush()
        p.stdin.close()
    th = threading.Thread(target=feed_later)
    th.start()
    u = msgpack.Unpacker(raw=False)
    got = []
    while True:
        b = p.stdout.read1(65536)
        if not b:
            break
        now = time.monotonic() - t0
        u.feed(b)
        got += [(now, m) for m in u]
    th.join()
    assert p.wait(timeout=timeout) == 0, p.stderr.read().decode()
    return got


def test_delays_time_the_tokens_and_requests_interleave(tiny_model, tmp_path):
    s = tmp_path / "s.jsonl"
    s.write_text('{"match": "", "output_ids": [5, 6, 7, 8, 9]}\n')
    got = timed_run([binpath("glm-replay"), "--model", tiny_model, "--script", str(s), "--first-delay-ms", "150",
                     "--delay-ms", "40"], [gen("a"), gen("b")])
    for rid in "ab":
        mine = [(t, m) for t, m in got if m["id"] == rid]
        assert [m["type"] for _, m in mine] == ["start"] + ["tokens"] * 5 + ["end"]
        start_t = mine[0][0]
        toks = [t for t, m in mine if m["type"] == "tokens"]
        assert start_t < 0.12                      # start at once
        assert 0.14 <= toks[0] <= 0.14 + 0.25      # the first token after the prefill delay
        gaps = [b - a for a, b in zip(toks, toks[1:])]
        assert all(0.025 <= g <= 0.2 for g in gaps), gaps
        assert mine[-1][0] - toks[-1] < 0.05       # end with the last tokens
    # both requests run at once: b's first token is not queued behind a's stream
    ta = [t for t, m in got if m["id"] == "a" and m["type"] == "tokens"]
    tb = [t for t, m in got if m["id"] == "b" and m["type"] == "tokens"]
    assert tb[0] < ta[-1]


def test_rule_delays_override_and_abort_cancels(tiny_model, tmp_path):
    s = tmp_path / "s.jsonl"
    s.write_text('{"match": "", "output_ids": [5, 6, 7, 8, 9, 10, 11, 12], "first_delay_ms": 50, "delay_ms": 60}\n')
    got = timed_run([binpath("glm-replay"), "--model", tiny_model, "--script", str(s), "--delay-ms", "1"],
                    [gen("x"), gen("y")], later=[{"type": "abort", "id": "x"}], later_at=0.2)
    x = [m for _, m in got if m["id"] == "x"]
    y = [m for _, m in got if m["id"] == "y"]
    # x was aborted after a few tokens: no more tokens, no end; the abort is passed on
    assert 1 <= sum(m["type"] == "tokens" for m in x) < 8 and x[-1]["type"] == "abort"
    assert not any(m["type"] == "end" for m in x)
    assert [m["type"] for m in y] == ["start"] + ["tokens"] * 8 + ["end"]
    ty = [t for t, m in got if m["id"] == "y" and m["type"] == "tokens"]
    assert ty[-1] - ty[0] >= 7 * 0.05          # the rule's 60 ms, not the option's 1 ms


@pytest.mark.parametrize("opt,val", [("--delay-ms", "-1"), ("--first-delay-ms", "abc"), ("--delay-ms", "1e9")])
def test_bad_delay_options_are_refused(tiny_model, script, opt, val):
    r = subprocess.run([binpath("glm-replay"), "--model", tiny_model, "--script", script, opt, val],
                       input=b"", capture_output=True, timeout=60)
    assert r.returncode == 2 and opt.encode() in r.stderr


def test_bad_delay_in_a_rule_is_refused(tiny_model, tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"output_ids": [1], "delay_ms": "soon"}\n')
    r = subprocess.run([binpath("glm-replay"), "--model", tiny_model, "--script", str(p)],
                       input=b"", capture_output=True, timeout=60)
    assert r.returncode == 1 and b"delay_ms" in r.stderr
