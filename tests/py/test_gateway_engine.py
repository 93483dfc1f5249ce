"""End to end with the official `openai` client over the real engine: the
tiny default model (glm-mkmodel, random weights) on glm-engine's CPU backend,
behind glm-gateway and the real text stages."""
import json
import re
import time
import urllib.request

import pytest

from gwstack import GatewayStack, real_engine


@pytest.fixture(scope="module")
def gw(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("gwe")
    with GatewayStack(d, tiny_model, real_engine(tiny_model), env={"GLM_LOG_LEVEL": "debug"}) as s:
        yield s


@pytest.fixture(scope="module")
def client(gw):
    return gw.openai()


def test_greedy_is_deterministic(client):
    kw = dict(model="tiny", prompt="Hello there", max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert a.choices[0].text == b.choices[0].text and a.choices[0].text
    s = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)
    assert s == a.choices[0].text
    assert a.choices[0].finish_reason == "length" and a.usage.completion_tokens == 12


def test_seeded_sampling_is_reproducible(client):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Tell me something"}], max_tokens=10,
              temperature=1.0, seed=1234, extra_body={"ignore_eos": True, "include_reasoning": False})
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert a.usage.completion_tokens == 10 and a.choices[0].finish_reason == "length"
    assert a.choices[0].message.content == b.choices[0].message.content


def test_n_choices_and_usage(client):
    r = client.completions.create(model="tiny", prompt="Once", max_tokens=5, n=3, temperature=1.0, seed=7,
                                  extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage.completion_tokens == 15 and all(c.finish_reason == "length" for c in r.choices)


def test_logprob_shapes(gw, client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                       temperature=0, logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    for e in content:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        assert e.top_logprobs[0].token == e.token   # greedy: the sampled token is the best one
        assert abs(e.top_logprobs[0].logprob - e.logprob) < 1e-5
        assert [t.logprob for t in e.top_logprobs[1:]] == sorted((t.logprob for t in e.top_logprobs[1:]), reverse=True)
    c = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0, logprobs=2,
                                  extra_body={"ignore_eos": True, "prompt_logprobs": 1})
    ch = c.choices[0]
    lp = ch.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    assert "".join(lp.tokens) == ch.text
    for tok, val, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert tok in top and top[tok] == val and 1 <= len(top) <= 3
    plp = ch.model_extra["prompt_logprobs"]
    assert len(plp) == c.usage.prompt_tokens and plp[0] is None
    prompt_ids = json.loads(urllib.request.urlopen(urllib.request.Request(
        gw.url + "/tokenize", data=json.dumps({"prompt": "Hello"}).encode())).read())["tokens"]
    for k, e in enumerate(plp[1:], 1):
        assert e and all(set(v) == {"logprob", "rank", "decoded_token"} for v in e.values())
        own = e[str(prompt_ids[k])]   # the prompt token's own entry comes first, with its rank
        assert list(e)[0] == str(prompt_ids[k]) and own["rank"] >= 1 and own["logprob"] <= 0
        alone = json.loads(urllib.request.urlopen(urllib.request.Request(   # glm-detok names it decoded alone
            gw.url + "/detokenize", data=json.dumps({"tokens": [prompt_ids[k]]}).encode())).read())["prompt"]
        assert own["decoded_token"] == alone
        assert all(isinstance(v["decoded_token"], str) for v in e.values())


def engine_log_has(gw, pattern, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, gw.log("engine")):
            return True
        time.sleep(0.05)
    return False


def stats_now(gw):
    with urllib.request.urlopen(gw.url + "/metrics") as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(vllm:[a-z_]+)\{[^}]*\} (\S+)$", text, re.M)}


def test_disconnect_frees_the_engine(gw):
    s = gw.connect()
    body = json.dumps({"prompt": "Hello", "max_tokens": 3000, "stream": True, "ignore_eos": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: gone1\r\ncontent-length: %d\r\n\r\n"
              % len(body) + body)
    got = b""
    while got.count(b"data: ") < 3:
        got += s.recv(65536)
    s.close()
    # the engine drops the request (and its KV blocks) when the abort arrives
    assert engine_log_has(gw, r"\[cmpl-gone1\] aborted"), gw.log("engine")
    st = stats_now(gw)
    if "vllm:kv_cache_usage_perc" in st:   # once the engine answers `stats`
        deadline = time.monotonic() + 5
        while st.get("vllm:kv_cache_usage_perc", 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            st = stats_now(gw)
        assert st["vllm:kv_cache_usage_perc"] == 0
    assert st["vllm:num_requests_running"] == 0


def test_stop_string_aborts_engine_work(gw, client):
    """glm-detok finds the stop string; the gateway sends abort{id, index};
    the engine stops at once instead of running to max_tokens."""
    text = client.completions.create(model="tiny", prompt="Hello there", max_tokens=40, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    # a stop string first seen some way in; no whitespace at the cut and no
    # tag characters (kept simple: the text of a completion is the model's own)
    stop = next(text[p:p + 3] for p in range(8, len(text) - 3)
                if "\ufffd" not in text[p:p + 3] and text.find(text[p:p + 3]) == p and not text[p - 1].isspace()
                and not text[p].isspace() and "<" not in text[:p + 3])
    r = client.completions.create(model="tiny", prompt="Hello there", max_tokens=4000, temperature=0, stop=[stop],
                                  extra_body={"ignore_eos": True})
    assert r.choices[0].text == text[:text.find(stop)]
    assert r.choices[0].finish_reason == "stop" and r.choices[0].model_extra["stop_reason"] == stop
    assert r.usage.completion_tokens < 4000
    assert engine_log_has(gw, r"choice 0 aborted")
