"""glm-engine through real processes on a glm-mkmodel tiny checkpoint.

Greedy generation against the transformers goldens the model half commits
(tests/reference/goldens/glm5_tiny.json, written by
tests/reference/glm5_reference.py), batch invariance of one request alone and
inside a batch of 16 mixed requests, abort, bad input, and the by-hand pipe
`glm-msg pack | glm-engine | glm-msg unpack`.
"""
import json
import math
import os
import pathlib
import subprocess
import time

import pytest

from conftest import ROOT, binpath, engine_cmd, run_stage

GOLDEN = pathlib.Path(os.environ.get("GLM_ENGINE_GOLDEN", ROOT / "tests" / "reference" / "goldens" / "glm5_tiny.json"))
VOCAB = 1024   # the tiny preset


@pytest.fixture(scope="module")
def tiny(tiny_seed1):
    return tiny_seed1


def engine(model, *extra):
    # small KV pool: fast start
    return engine_cmd(model, "--num-gpu-blocks-override", "512", *extra)


def gen(rid, prompt, **sampling):
    return {"type": "generate", "id": rid, "prompt_ids": prompt, "sampling": sampling}


def without_times(m):
    return {k: v for k, v in m.items() if k not in ("arrival_time", "scheduled_time", "first_token_time", "finish_time")}


def tokens_by_choice(out, rid):
    res = {}
    for m in out:
        if m["type"] == "tokens" and m["id"] == rid:
            res.setdefault(m["index"], []).extend(m["token_ids"])
    return res


def finish_of(out, rid, index=0):
    fins = [m.get("finish_reason") for m in out if m["type"] == "tokens" and m["id"] == rid and m["index"] == index]
    return fins[-1] if fins else None


def test_greedy_equals_reference(tiny):
    if not GOLDEN.exists():
        pytest.skip(f"{GOLDEN} not present (the model half's goldens)")
    g = json.loads(GOLDEN.read_text())
    assert g["preset"] == "tiny" and g["seed"] == 1
    ref = g["greedy"]
    out, _ = run_stage(engine(tiny), [gen("g", ref["prompt"], temperature=0, max_tokens=len(ref["tokens"]),
                                          ignore_eos=True)])
    assert len(ref["tokens"]) >= 32
    assert tokens_by_choice(out, "g")[0] == ref["tokens"]
    assert finish_of(out, "g") == "length"
    end = [m for m in out if m["type"] == "end"]
    assert [without_times(m) for m in end] == [{"type": "end", "id": "g", "usage": {
        "prompt_tokens": len(ref["prompt"]), "completion_tokens": len(ref["tokens"])}}]
    start = next(m for m in out if m["type"] == "start")
    assert start["cached_tokens"] == 0
    # engine clock: arrival <= scheduled <= first token <= finish, all near now
    t = [start["arrival_time"], start["scheduled_time"], end[0]["first_token_time"], end[0]["finish_time"]]
    assert t == sorted(t) and abs(t[0] - time.time()) < 60


def _mixed_batch(target):
    msgs = []
    for k in range(15):
        prompt = [(k * 37 + i * 11) % VOCAB for i in range(3 + (k * 5) % 30)]
        s = {"max_tokens": 4 + k, "temperature": 0 if k % 3 == 0 else 0.7 + 0.05 * k, "ignore_eos": True}
        if k % 2:
            s.update(seed=k, top_p=0.9)
        if k % 4 == 1:
            s.update(presence_penalty=0.5, top_k=50)
        if k == 5:
            s["prompt_logprobs"] = 2
        msgs.append(gen(f"o{k}", prompt, **s))
    msgs.insert(7, target)
    return msgs


@pytest.mark.parametrize("sampling", [
    {"temperature": 0},
    {"temperature": 0.9, "seed": 1234, "top_p": 0.95, "top_k": 100, "repetition_penalty": 1.1, "logprobs": 3},
], ids=["greedy", "seeded"])
def test_batch_invariance(tiny, sampling):
    prompt = [(i * 29 + 5) % VOCAB for i in range(40)]   # longer than index_topk: the sparse path runs
    target = gen("t", prompt, max_tokens=24, ignore_eos=True, **sampling)
    alone, _ = run_stage(engine(tiny), [target])
    batch, _ = run_stage(engine(tiny, "--max-num-batched-tokens", "64"), _mixed_batch(target))
    a, b = tokens_by_choice(alone, "t")[0], tokens_by_choice(batch, "t")[0]
    assert len(a) == 24 and a == b
    if "logprobs" in sampling:
        lp = lambda out: [e for m in out if m["type"] == "tokens" and m["id"] == "t" for e in m["logprobs"]]
        for x, y in zip(lp(alone), lp(batch)):
            assert x["top"][0][0] == y["top"][0][0] and math.isclose(x["logprob"], y["logprob"], abs_tol=1e-5)
    # every request of the batch ended
    assert sorted(m["id"] for m in batch if m["type"] == "end") == sorted(["t"] + [f"o{k}" for k in range(15)])


def test_dtype_flag(tiny):
    """--dtype bfloat16 (BF16-rounded activations in the linears): batch
    invariant too and MTP equals plain decode, logprobs bit for bit; float32
    is auto; float16 refused."""
    prompt = [(i * 29 + 5) % VOCAB for i in range(40)]
    target = gen("t", prompt, max_tokens=16, ignore_eos=True, temperature=0.9, seed=1234, top_p=0.95, logprobs=3)
    alone, err = run_stage(engine(tiny, "--dtype", "bfloat16"), [target])
    assert "bfloat16 compute" in err
    batch, _ = run_stage(engine(tiny, "--dtype", "bfloat16", "--max-num-batched-tokens", "64"), _mixed_batch(target))
    lp = lambda out: [e for m in out if m["type"] == "tokens" and m["id"] == "t" for e in m["logprobs"]]
    assert tokens_by_choice(alone, "t") == tokens_by_choice(batch, "t") and len(lp(alone)) == 16
    assert lp(alone) == lp(batch)
    mtp, _ = run_stage(engine(tiny, "--dtype", "bfloat16", "--speculative-config.method", "mtp",
                              "--speculative-config.num_speculative_tokens", "3"), [target])
    assert lp(mtp) == lp(alone)                         # verification = plain decode, bit for bit
    f32, _ = run_stage(engine(tiny, "--dtype", "float32"), [target])
    auto, _ = run_stage(engine(tiny), [target])
    assert lp(f32) == lp(auto) and lp(f32) != lp(alone)
    p = subprocess.run(engine(tiny, "--dtype", "float16"), input=b"", capture_output=True, timeout=30)
    assert p.returncode == 2 and b"not supported" in p.stderr


def test_weights_hugepages_flag(tiny):
    """The cpu backend copies the weights into huge pages by default and says
    so (or why not); --no-weights-hugepages reads the file pages; the tokens
    and logprobs are the same bits either way."""
    prompt = [(i * 31 + 7) % VOCAB for i in range(24)]
    target = gen("h", prompt, max_tokens=12, ignore_eos=True, temperature=0.8, seed=99, logprobs=2)
    lp = lambda out: [e for m in out if m["type"] == "tokens" and m["id"] == "h" for e in m["logprobs"]]
    huge, err_h = run_stage(engine(tiny), [target])
    filep, err_f = run_stage(engine(tiny, "--no-weights-hugepages"), [target])
    assert "in 2 MiB huge pages" in err_h or "weights stay in 4 KiB file pages" in err_h
    assert "huge pages" not in err_f and "file pages" not in err_f
    assert tokens_by_choice(huge, "h") == tokens_by_choice(filep, "h") and len(lp(huge)) == 12
    assert lp(huge) == lp(filep)


def test_n_choices_and_prompt_logprobs(tiny):
    out, _ = run_stage(engine(tiny), [gen("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
                                          temperature=1.0, seed=3, max_tokens=5, ignore_eos=True, prompt_logprobs=1)
                                      | {"n": 3, "context": {"stream": True}}])
    start = [m for m in out if m["type"] == "start"]
    assert len(start) == 1 and start[0]["n"] == 3 and start[0]["context"] == {"stream": True}
    plp = start[0]["prompt_logprobs"]
    assert len(plp) == 17 and plp[0] is None and all(e["logprob"] <= 0 and len(e["top"]) == 1 for e in plp[1:])
    prompt = list(range(1, 18))
    for k, e in enumerate(plp[1:], 1):   # the prompt token's own entry: its id and its rank
        assert e["token_id"] == prompt[k] and e["rank"] >= 1
        best_id, best_lp = e["top"][0]
        assert (e["rank"] == 1) == (best_id == prompt[k] or best_lp == e["logprob"])
        assert e["rank"] > 1 or abs(best_lp - e["logprob"]) < 1e-6
    assert out.index(start[0]) < min(i for i, m in enumerate(out) if m["type"] == "tokens")
    ch = tokens_by_choice(out, "n")
    assert sorted(ch) == [0, 1, 2] and all(len(v) == 5 for v in ch.values())
    assert without_times(out[-1]) == {"type": "end", "id": "n", "usage": {"prompt_tokens": 17, "completion_tokens": 15}}


def test_abort_and_unknown_ids(tiny):
    msgs = [gen("a", [1, 2, 3], max_tokens=200, ignore_eos=True),
            {"type": "abort", "id": "a"},
            {"type": "abort", "id": "never-seen"},
            gen("b", [4, 5, 6], max_tokens=3, temperature=0, ignore_eos=True)]
    out, err = run_stage(engine(tiny), msgs)
    assert [m for m in out if m["type"] == "abort"] == msgs[1:3]
    assert not [m for m in out if m["id"] == "a" and m["type"] in ("end", "error")]
    assert len(tokens_by_choice(out, "a").get(0, [])) < 200
    assert len(tokens_by_choice(out, "b")[0]) == 3
    assert not [m for m in out if m["type"] == "error"]


def test_bad_input_keeps_serving(tiny):
    msgs = [gen("v", [5, VOCAB]),                                   # out of vocabulary
            gen("l", list(range(256))),                             # not shorter than max-model-len
            gen("t", [1], temperature=-0.5),
            gen("k", [1], top_k=VOCAB + 1),
            gen("p", [1], top_p=1.5),
            {"type": "generate", "id": "s", "prompt_ids": [1], "sampling": "greedy"},
            {"type": "generate", "id": "w", "prompt_ids": [1], "sampling": {"max_tokens": "many"}},
            {"type": "generate", "id": "x"},
            {"type": "generate"},                                   # no id: logged, dropped
            gen("ok", [1, 2], temperature=0, max_tokens=4, ignore_eos=True)]
    out, err = run_stage(engine(tiny), msgs)
    errors = {m["id"]: m for m in out if m["type"] == "error"}
    assert sorted(errors) == ["k", "l", "p", "s", "t", "v", "w", "x"]
    assert all(e["code"] == 400 and e["err_type"] == "BadRequestError" for e in errors.values())
    assert "vocabulary" in errors["v"]["message"] and "context length" in errors["l"]["message"]
    assert "top_k" in errors["k"]["message"]
    assert len(tokens_by_choice(out, "ok")[0]) == 4
    assert "without an id" in err   # a map without an id is skipped as bytes that are not a message


def test_by_hand_pipe(tiny):
    line = json.dumps(gen("h", [10, 20, 30], max_tokens=3, temperature=0, logprobs=2, ignore_eos=True)
                      | {"context": {"model": "tiny"}})
    cmd = f"{binpath('glm-msg')} pack | {' '.join(engine(tiny))} | {binpath('glm-msg')} unpack"
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], input=line.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    out = [json.loads(x) for x in p.stdout.decode().splitlines()]
    assert [m["type"] for m in out] == ["start", "tokens", "tokens", "tokens", "end"]
    assert out[0]["context"] == {"model": "tiny"} and out[0]["prompt_tokens"] == 3
    assert all(len(m["logprobs"][0]["top"]) == 2 for m in out[1:4])
    assert out[3]["finish_reason"] == "length"


def test_stats_answered(tiny):
    msgs = [gen("s1", [1, 2, 3, 4, 5], temperature=0, max_tokens=6, ignore_eos=True),
            gen("s2", [9, 8, 7], temperature=0, max_tokens=4, ignore_eos=True) | {"n": 2}]
    out, _ = run_stage(engine(tiny), msgs + [{"type": "stats", "id": "st"}, {"type": "stats", "id": "bad", "interval": -1}])
    st = [m for m in out if m["type"] == "stats"]
    assert len(st) == 1 and st[0]["id"] == "st"
    s = st[0]
    # answered when read: the loop reads what has arrived before stepping, so
    # the requests are queued and nothing ran yet
    assert s["num_requests_waiting"] + s["num_requests_running"] == 2 and s["generation_tokens"] == 0
    assert s["kv_blocks_total"] == 512 and s["kv_blocks_used"] <= 512
    assert all(isinstance(s[k], int) for k in ("num_preemptions", "prompt_tokens", "steps"))
    assert len(s["step_time_counts"]) == len(s["step_time_buckets"]) + 1
    err = [m for m in out if m["type"] == "error"]
    assert [e["id"] for e in err] == ["bad"] and "interval" in err[0]["message"]


def _shared_prefix_requests():
    base = [(i * 29 + 5) % VOCAB for i in range(50)]      # 3 full blocks of 16 and 2 tokens
    msgs = []
    for k in range(6):
        prompt = base + [(k * 41 + j) % VOCAB for j in range(3 + k)]
        s = {"max_tokens": 8, "ignore_eos": True, "temperature": 0}
        if k % 2:
            s.update(temperature=0.8, seed=k, logprobs=3)
        msgs.append(gen(f"p{k}", prompt, **s) | ({"n": 2} if k == 3 else {}))
    return msgs


@pytest.mark.parametrize("kv", ["auto", "fp8"])
def test_prefix_cache_bit_identical(tiny, kv):
    """Outputs (ids and logprobs) are bit-identical with the prefix cache on
    and off, with f32 and FP8 cache rows; requests admitted after the first
    one's prefill report the shared blocks as cached_tokens and the engine's
    stats count the hits."""
    msgs = _shared_prefix_requests() + [{"type": "stats", "id": "st"}]
    # a 48-token budget: the first request's prefill runs alone, the others
    # are admitted once its blocks are registered
    on, _ = run_stage(engine(tiny, "--max-num-batched-tokens", "48", "--kv-cache-dtype", kv), msgs)
    off, _ = run_stage(engine(tiny, "--max-num-batched-tokens", "48", "--no-enable-prefix-caching",
                              "--kv-cache-dtype", kv), msgs)
    def key(out):     # the tokens messages of each choice, in order (choices interleave differently)
        res = {}
        for m in out:
            if m["type"] == "tokens":
                res.setdefault((m["id"], m["index"]), []).append(m)
        return res
    assert key(on) == key(off) and sum(len(v) for v in key(on).values()) == 7 * 8
    starts = {m["id"]: m for m in on if m["type"] == "start"}
    assert starts["p0"]["cached_tokens"] == 0
    assert all(starts[f"p{k}"]["cached_tokens"] == 48 for k in range(1, 6))
    assert all(m["cached_tokens"] == 0 for m in off if m["type"] == "start")
    st_on = next(m for m in on if m["type"] == "stats")
    st_off = next(m for m in off if m["type"] == "stats")
    assert "prefix_cache_hits" in st_on and "prefix_cache_hits" not in st_off


def test_kv_cache_dtype_flag(tiny):
    r = gen("f", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], temperature=0, max_tokens=12, ignore_eos=True)
    auto, _ = run_stage(engine(tiny), [r])
    fp8, err = run_stage(engine(tiny, "--kv-cache-dtype", "fp8_e4m3"), [r])
    assert "fp8_e4m3" in err
    assert len(tokens_by_choice(fp8, "f")[0]) == 12 and len(tokens_by_choice(auto, "f")[0]) == 12
    p = subprocess.run(engine(tiny, "--kv-cache-dtype", "fp8_e5m2"), input=b"", capture_output=True, timeout=30)
    assert p.returncode == 2 and b"not supported" in p.stderr


# ----------------------------------------------------------------- MTP

def _by_choice(out):
    res = {}
    for m in out:
        if m["type"] == "tokens":
            r = res.setdefault((m["id"], m["index"]), {"ids": [], "lp": []})
            r["ids"] += m["token_ids"]
            r["lp"] += m.get("logprobs", [])
    return res


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_mtp_identical_to_plain(tiny, k):
    """Every K: the same tokens (and logprobs) with MTP on and off, for a
    request alone and inside 16 mixed requests (greedy and seeded, penalties,
    prompt logprobs, a 40-token prompt past index_topk), with the JSON and
    the dotted flag forms."""
    prompt = [(i * 29 + 5) % VOCAB for i in range(40)]
    target = gen("t", prompt, max_tokens=24, ignore_eos=True, temperature=0.9, seed=1234, top_p=0.95, logprobs=2)
    greedy = gen("g", prompt[:17], max_tokens=20, ignore_eos=True, temperature=0)
    spec = (["--speculative-config", json.dumps({"method": "mtp", "num_speculative_tokens": k})] if k % 2 else
            ["--speculative-config.method", "mtp", "--speculative-config.num_speculative_tokens", str(k)])
    plain_alone, _ = run_stage(engine(tiny), [target, greedy])
    plain_mixed, _ = run_stage(engine(tiny, "--max-num-batched-tokens", "64"), _mixed_batch(target) + [greedy])
    mtp_alone, err = run_stage(engine(tiny, *spec), [target, greedy, {"type": "stats", "id": "s"}])
    mtp_mixed, _ = run_stage(engine(tiny, "--max-num-batched-tokens", "64", *spec), _mixed_batch(target) + [greedy])
    assert f"{k} draft tokens per step" in err
    a, b = _by_choice(plain_mixed), _by_choice(mtp_mixed)
    assert a == b and len(a) == 17
    assert _by_choice(plain_alone) == _by_choice(mtp_alone) == {key: a[key] for key in (("t", 0), ("g", 0))}
    # several tokens arrive in one message only when drafts are accepted; the
    # random checkpoint's MTP is near-useless, so only the counters are checked
    st = next(m for m in mtp_alone if m["type"] == "stats")
    assert len(st["spec_decode_num_accepted_tokens_per_pos"]) == k
    assert all(m["type"] != "error" for m in mtp_mixed)


def test_mtp_stats_counters(tiny):
    msgs = [gen("a", [3, 1, 4, 1, 5], max_tokens=30, ignore_eos=True, temperature=0)]
    out, err = run_stage(engine(tiny, "--speculative-config.method", "mtp",
                                "--speculative-config.num_speculative_tokens", "3", "--log-stats-interval", "0"),
                         msgs)
    out2, _ = run_stage(engine(tiny, "--speculative-config", '{"method":"mtp","num_speculative_tokens":3}'),
                        msgs + [{"type": "stats", "id": "s0"}])
    # stats is answered before the step runs: zero counters, but present
    s = next(m for m in out2 if m["type"] == "stats")
    assert s["spec_decode_num_drafts"] == 0 and s["spec_decode_num_accepted_tokens_per_pos"] == [0, 0, 0]
    assert tokens_by_choice(out, "a")[0] == tokens_by_choice(out2, "a")[0]


@pytest.mark.parametrize("args,needle", [
    (["--speculative-config", '{"method":"ngram","num_speculative_tokens":3}'], "only mtp"),
    (["--speculative-config", '{"method":"mtp","num_speculative_tokens":6}'], "1 to 5"),
    (["--speculative-config", '{"method":"mtp","num_speculative_tokens":0}'], "1 to 5"),
    (["--speculative-config", '{"method":"mtp","draft_tensor_parallel_size":1}'], "not supported"),
    (["--speculative-config", '{"method":"mtp",'], "not JSON"),
    (["--speculative-config.num_speculative_tokens", "2"], "needs a method"),
    (["--speculative-config.num_speculative_tokens", "two", "--speculative-config.method", "mtp"], "integer"),
])
def test_mtp_bad_config(tiny, args, needle):
    p = subprocess.run(engine(tiny, *args), input=b"", capture_output=True, timeout=30)
    assert p.returncode == 2 and needle in p.stderr.decode(), p.stderr.decode()


def test_mtp_needs_the_layer(tmp_path):
    d = tmp_path / "nomtp"
    subprocess.run([binpath("glm-mkmodel"), "--preset", "tiny", "--no-mtp", "--out", str(d)], check=True,
                   capture_output=True)
    p = subprocess.run(engine(d, "--speculative-config.method", "mtp"), input=b"", capture_output=True, timeout=30)
    assert p.returncode == 2 and b"MTP layer" in p.stderr
    # without speculation the same checkpoint serves
    out, _ = run_stage(engine(d), [gen("x", [1, 2, 3], max_tokens=3, temperature=0, ignore_eos=True)])
    assert len(tokens_by_choice(out, "x")[0]) == 3


def _chi2_crit(df, z=3.09):
    """Wilson-Hilferty: the chi-square quantile at one-sided normal z (alpha 0.001)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_mtp_distribution_chi_square(tiny):
    """Sampling (temperature 0.6, top_k 20): the second generated token is
    produced by verification (the MTP's draft checked against the target's
    row). Over 1500 seeded requests, among those whose first token is the
    most frequent one, its histogram must fit the target distribution of that
    context — softmax(logits / 0.6) over the top 20, computed from the raw
    logprobs the engine reports — by chi-square at alpha 0.001."""
    prompt = [7, 100, 3, 55, 900, 12, 4, 4]
    n, temp = 1500, 0.6
    reqs = [gen(f"r{i}", prompt, temperature=temp, top_k=20, seed=i, max_tokens=2, ignore_eos=True) for i in range(n)]
    spec = ["--speculative-config.method", "mtp", "--speculative-config.num_speculative_tokens", "1",
            "--max-num-seqs", "256", "--num-gpu-blocks-override", "2048"]
    out, _ = run_stage(engine(tiny, *spec), reqs, timeout=300)
    pairs = [v["ids"] for v in _by_choice(out).values()]
    assert len(pairs) == n and all(len(p) == 2 for p in pairs)
    first = max(set(p[0] for p in pairs), key=lambda t: sum(p[0] == t for p in pairs))
    second = [p[1] for p in pairs if p[0] == first]
    assert len(second) >= 150
    ref, _ = run_stage(engine(tiny), [gen("p", prompt + [first], temperature=0, max_tokens=1, logprobs=20)])
    top = next(m for m in ref if m["type"] == "tokens")["logprobs"][0]["top"]
    w = {t: math.exp(lp / temp) for t, lp in top}
    z = sum(w.values())
    m = len(second)
    assert all(t in w for t in second)            # top_k 20: nothing outside
    bins, rest_o, rest_e = [], 0, 0.0
    for t, wt in w.items():
        o, e = second.count(t), wt / z * m
        if e >= 5:
            bins.append((o, e))
        else:
            rest_o, rest_e = rest_o + o, rest_e + e
    if rest_e > 0:
        bins.append((rest_o, rest_e))
    chi2 = sum((o - e) ** 2 / e for o, e in bins)
    df = len(bins) - 1
    print(f'chi2 {chi2:.1f} df {df} crit {_chi2_crit(df):.1f} m {m}')
    assert df >= 3 and chi2 < _chi2_crit(df), (chi2, df, bins)
