"""Shared fixtures for the Python tests: where the binaries and data are."""
import contextlib
import os
import pathlib
import subprocess
import threading

import msgpack
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("GLM_BIN", ROOT / "build" / "bin"))
SHARED = pathlib.Path(os.environ.get("GLM_SHARED", ROOT.parent / "shared"))


def binpath(name):
    p = BIN / name
    if not p.exists():
        pytest.skip(f"{p} not built")
    return str(p)


def shared(*parts):
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data {p} not present")
    return p


def pack_all(msgs):
    return b"".join(msgpack.packb(m, use_bin_type=True) for m in msgs)


def unpack_all(data):
    return list(_unpacker(data))


def _unpacker(data):
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(data)
    yield from u


def run_stage(cmd, msgs, timeout=60, check=True):
    """Run one stage on a pipe: feed msgs, return (messages out, stderr text)."""
    p = subprocess.run(cmd, input=pack_all(msgs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return list(_unpacker(p.stdout)), p.stderr.decode(errors="replace")


def run_pipeline(cmds, msgs, timeout=60):
    """Chain the commands with OS pipes, like a shell would: feed msgs to the
    first, return the messages out of the last. Every stage must exit 0."""
    procs = []
    for c in cmds:
        procs.append(subprocess.Popen(c, stdin=procs[-1].stdout if procs else subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        if len(procs) > 1:
            procs[-2].stdout.close()   # only the next stage holds the read end

    def feed():   # a thread: the last stage's output must be read while we write
        procs[0].stdin.write(pack_all(msgs))
        procs[0].stdin.close()
    w = threading.Thread(target=feed)
    w.start()
    out, last_err = procs[-1].communicate(timeout=timeout)
    w.join()
    for p in procs[:-1]:
        assert p.wait(timeout=timeout) == 0, p.stderr.read().decode(errors="replace")
    assert procs[-1].returncode == 0, last_err.decode(errors="replace")
    return unpack_all(out)


# GLM's 36 added tokens in id order (glm-tokenizer-template.md §2.1): the
# first 18 are special, the rest are not.
GLM_ADDED = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>",
    "<|end_of_transcription|>", "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>", "<think>",
    "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<arg_key>",
    "</arg_key>", "<arg_value>", "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>",
    "<|image|>", "<|video|>",
]


def make_glm_model_dir(dest, template="glm-5.2.jinja", max_len=8192):
    """A GLM-shaped model directory: llama3's tokenizer.json (same pre-tokenizer
    as GLM) with GLM's 36 added tokens appended, a GLM chat template, and
    GLM-5-style config/generation_config. Built from ../shared at test time,
    never committed."""
    import json
    src = shared("data", "tokenizers", "llama3", "tokenizer.json")
    tok = json.loads(src.read_text())
    base = max(max(tok["model"]["vocab"].values()), max(t["id"] for t in tok["added_tokens"])) + 1
    ids = {}
    for off, content in enumerate(GLM_ADDED):
        ids[content] = base + off
        tok["added_tokens"].append({"id": base + off, "content": content, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": off < 18})
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (dest / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "padding_side": "left",
        "model_max_length": 128000, "tokenizer_class": "PreTrainedTokenizer"}))
    (dest / "chat_template.jinja").write_bytes(shared("data", "templates", template).read_bytes())
    eos = [ids["<|endoftext|>"], ids["<|user|>"], ids["<|observation|>"]]
    (dest / "config.json").write_text(json.dumps({
        "architectures": ["GlmMoeDsaForCausalLM"], "model_type": "glm_moe_dsa",
        "max_position_embeddings": max_len, "vocab_size": base + 64, "eos_token_id": eos}))
    (dest / "generation_config.json").write_text(json.dumps({
        "eos_token_id": eos, "pad_token_id": ids["<|endoftext|>"], "temperature": 1.0, "top_p": 0.95}))
    return dest, ids


@pytest.fixture(scope="session")
def glm_model(tmp_path_factory):
    d, ids = make_glm_model_dir(tmp_path_factory.mktemp("glm52"))
    return {"dir": str(d), "ids": ids}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The embedded default model: glm-mkmodel's tiny preset (weights,
    config, trained tokenizer, chat template)."""
    d = tmp_path_factory.mktemp("tiny") / "m"
    subprocess.run([binpath("glm-mkmodel"), "--preset", "tiny", "--seed", "0", "--out", str(d)],
                   check=True, capture_output=True, timeout=120)
    return str(d)


@pytest.fixture(scope="session")
def tiny_seed1(tmp_path_factory):
    """glm-mkmodel's tiny preset with seed 1: the checkpoint the engine's
    transformers goldens (tests/reference/goldens/glm5_tiny.json) describe."""
    d = tmp_path_factory.mktemp("tiny1")
    subprocess.run([binpath("glm-mkmodel"), "--preset", "tiny", "--seed", "1", "--out", str(d)],
                   check=True, capture_output=True, timeout=120)
    return d


def engine_cmd(model, *extra):
    """glm-engine on one thread (the suite shares two cores), 256 positions,
    on the CPU backend unless GLM_ENGINE_BACKEND names another (make gpu-check
    runs the pipe tests with cuda). GLM_ENGINE_TP=N runs it with
    --tensor-parallel-size N (test_engine_tp.py reruns the pipe tests that way)."""
    tp = os.environ.get("GLM_ENGINE_TP")
    tpa = ["--tensor-parallel-size", tp] if tp else []
    return [binpath("glm-engine"), "--model", str(model), "--threads", "1", "--max-model-len", "256",
            "--backend", os.environ.get("GLM_ENGINE_BACKEND", "cpu"), *tpa, *extra]


@contextlib.contextmanager
def zmq_chain(cmds, tmp_path, timeout_ms=30000):
    """Run the stage commands chained over ZeroMQ ipc:// endpoints (each
    stage's --in binds, its --out connects to the next one's input). Yields
    (push, pull): push feeds the first stage, pull reads the last. On exit
    every stage gets SIGTERM and must exit 0."""
    zmq = pytest.importorskip("zmq")
    eps = [f"ipc://{tmp_path}/s{i}" for i in range(len(cmds) + 1)]
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    sink.bind(eps[-1])
    sink.setsockopt(zmq.RCVTIMEO, timeout_ms)
    procs = [subprocess.Popen(c + ["--in", eps[i], "--out", eps[i + 1]], stderr=subprocess.PIPE)
             for i, c in enumerate(cmds)]
    src = ctx.socket(zmq.PUSH)
    src.connect(eps[0])
    try:
        yield src, sink
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(timeout=10) == 0, p.stderr.read().decode(errors="replace")
        src.close(linger=0)
        sink.close(linger=0)
        ctx.term()
