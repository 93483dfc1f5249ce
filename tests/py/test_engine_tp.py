"""glm-engine --tensor-parallel-size N through real processes (ranks are
forked processes sharing one memory region; docs/engine.md).

The pipe tests (test_engine_pipe.py) rerun whole at TP 2; TP 2 / 4, with and
without expert parallel, give TP 1's prompt logprobs and greedy tokens; a
rank that dies fails the requests in flight with an error and the engine
exits 1 (busy or idle), a dead rank 0 takes its followers with it, and
refusals (multi-node on the CPU, too many ranks, FP8 splits that break a
block, GQA splits that straddle KV groups) are clear and never hang. The
GLM-4.5 family (GQA) gives TP 1's numbers at TP 2 (KV heads split) and TP 4
(replicated), with expert parallel, FP8 K/V rows and MTP.
"""
import os
import shutil
import select
import signal
import socket
import subprocess
import sys
import time

import msgpack
import pytest

from conftest import ROOT, binpath, engine_cmd, pack_all, run_stage


@pytest.fixture(scope="module")
def tiny(tiny_seed1):
    return tiny_seed1


@pytest.fixture(scope="module")
def tiny_fp8(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinyfp8")
    subprocess.run([binpath("glm-mkmodel"), "--preset", "tiny", "--seed", "1", "--dtype", "fp8", "--out", str(d)],
                   check=True, capture_output=True, timeout=120)
    return d


def engine(model, *extra):
    return engine_cmd(model, "--num-gpu-blocks-override", "256", *extra)


def gen(rid, prompt, **sampling):
    return {"type": "generate", "id": rid, "prompt_ids": prompt, "sampling": sampling}


def test_pipe_tests_pass_with_tp2():
    env = dict(os.environ, GLM_ENGINE_TP="2")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "py" / "test_engine_pipe.py")],
                       cwd=str(ROOT / "tests" / "py"), env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert " passed" in p.stdout and "failed" not in p.stdout


def _run(model, *flags):
    msgs = [gen("p", [(i * 37 + 5) % 1000 for i in range(40)], temperature=0, max_tokens=12, ignore_eos=True,
                prompt_logprobs=5, logprobs=3),
            gen("q", [3, 1, 4, 1, 5, 9, 2, 6], temperature=0, max_tokens=12, ignore_eos=True)]
    out, err = run_stage(engine(model, *flags), msgs)
    start = next(m for m in out if m["type"] == "start" and m["id"] == "p")
    toks = {rid: [t for m in out if m["type"] == "tokens" and m["id"] == rid for t in m["token_ids"]]
            for rid in ("p", "q")}
    return start["prompt_logprobs"], toks, err


@pytest.mark.parametrize("flags", [["-tp", "2"], ["-tp", "2", "--enable-expert-parallel"], ["-tp", "4"],
                                   ["-tp", "4", "--enable-expert-parallel"]], ids=["tp2", "tp2-ep", "tp4", "tp4-ep"])
def test_same_logprobs_and_greedy_as_tp1(tiny, flags):
    _check_same_as_tp1(tiny, flags)


def _check_same_as_tp1(model, flags, common=()):
    """flags (-tp N ...) against none, both with common: TP 1's greedy tokens,
    prompt logprobs within 1e-4 relative, the same top tokens."""
    ref_lp, ref_toks, _ = _run(model, *common)
    lp, toks, err = _run(model, *flags, *common)
    assert f"tensor parallel: {flags[1]} ranks" in err
    _assert_same(lp, toks, ref_lp, ref_toks)


def _assert_same(lp, toks, ref_lp, ref_toks):
    assert toks == ref_toks
    worst = 0.0
    for a, b in zip(lp[1:], ref_lp[1:]):
        assert a["token_id"] == b["token_id"] and a["rank"] == b["rank"]
        worst = max(worst, abs(a["logprob"] - b["logprob"]) / max(abs(b["logprob"]), 1.0))
        assert [t for t, _ in a["top"]] == [t for t, _ in b["top"]]
    assert worst <= 1e-4


# GLM-4.5 family (GQA): tiny (q/k norms, groups of 4) and tiny-air (no norms,
# groups of 2), 2 KV heads each: split at TP 2, replicated at TP 4; FP8 K/V
# rows and MTP drafting (its block is GQA) on both sides of the comparison.
MTP = ["--speculative-config", '{"method":"mtp","num_speculative_tokens":3}']


@pytest.fixture(scope="module")
def gqa(tmp_path_factory):
    out = {}
    for preset in ("tiny", "tiny-air"):
        d = tmp_path_factory.mktemp(f"gqa-{preset}") / "m"
        subprocess.run([binpath("glm-mkmodel"), "--arch", "glm4-moe", "--preset", preset, "--seed", "1",
                        "--out", str(d)], check=True, capture_output=True, timeout=120)
        out[preset] = d
    return out


@pytest.mark.parametrize("flags,common", [(["-tp", "2"], []), (["-tp", "4", "--enable-expert-parallel"], []),
                                          (["-tp", "4"], ["--kv-cache-dtype", "fp8"] + MTP)],
                         ids=["tp2", "tp4-ep", "tp4-fp8kv-mtp"])
@pytest.mark.parametrize("preset", ["tiny", "tiny-air"])
def test_gqa_same_logprobs_and_greedy_as_tp1(gqa, preset, flags, common):
    _check_same_as_tp1(gqa[preset], flags, common)


def test_gqa_straddling_split_refused(gqa):
    rc, err = _refused(engine(gqa["tiny"], "-tp", "3"))
    assert rc == 1
    assert "8 query heads in 2 KV-head groups of 4 cannot be split over 3 ranks" in err


# ================================================================ rank death

def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


class Engine:
    """A glm-engine on pipes, read as messages arrive."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.unp = msgpack.Unpacker()
        self.msgs = []

    def send(self, *msgs):
        self.proc.stdin.write(pack_all(msgs))
        self.proc.stdin.flush()

    def wait_for(self, pred, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            for m in self.msgs:
                if pred(m):
                    return m
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                data = os.read(self.proc.stdout.fileno(), 65536)
                if not data:
                    break
                self.unp.feed(data)
                self.msgs.extend(self.unp)
        for m in self.msgs:
            if pred(m):
                return m
        raise AssertionError(f"no such message; got {self.msgs[-5:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return self.proc.stderr.read().decode(errors="replace")


def _pid_gone(pid, timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1][0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_follower_death_fails_in_flight_requests_and_exits_1(tiny):
    e = Engine(engine(tiny, "-tp", "2", "--max-model-len", "256"))
    try:
        e.send(gen("long", [1, 2, 3], temperature=0, max_tokens=240, ignore_eos=True),
               gen("other", [7, 8], temperature=0, max_tokens=240, ignore_eos=True))
        e.wait_for(lambda m: m["type"] == "tokens" and m["id"] == "long")
        (follower,) = _children(e.proc.pid)
        os.kill(follower, signal.SIGKILL)
        t0 = time.time()
        for rid in ("long", "other"):
            err = e.wait_for(lambda m, rid=rid: m["type"] == "error" and m["id"] == rid, timeout=10)
            assert err["code"] == 500 and "rank died" in err["message"]
        assert e.proc.wait(timeout=10) == 1
        assert time.time() - t0 < 10
    finally:
        log = e.stop()
    assert "tensor-parallel rank" in log


def test_follower_death_while_idle_exits_1(tiny):
    e = Engine(engine(tiny, "-tp", "2"))
    try:
        e.send({"type": "stats", "id": "s"})
        e.wait_for(lambda m: m["type"] == "stats")     # loaded and serving
        (follower,) = _children(e.proc.pid)
        os.kill(follower, signal.SIGKILL)
        assert e.proc.wait(timeout=10) == 1             # no request needed to notice
    finally:
        log = e.stop()
    assert "tensor-parallel rank 1" in log and "killed by signal 9" in log


def _cpus(pid):
    with open(f"/proc/{pid}/status") as f:
        line = next(ln for ln in f if ln.startswith("Cpus_allowed_list:"))
    out = set()
    for part in line.split(":")[1].strip().split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def test_ranks_pinned_to_disjoint_cpus(tiny):
    mine = os.sched_getaffinity(0)
    if len(mine) < 2:
        pytest.skip("one CPU: ranks are not pinned")
    e = Engine(engine(tiny, "-tp", "2"))
    try:
        e.send({"type": "stats", "id": "s"})
        e.wait_for(lambda m: m["type"] == "stats")
        (follower,) = _children(e.proc.pid)
        a, b = _cpus(e.proc.pid), _cpus(follower)
        assert a and b and not (a & b) and (a | b) <= mine
        assert abs(len(a) - len(b)) <= 1
    finally:
        e.stop()


def test_rank0_death_takes_the_followers(tiny):
    e = Engine(engine(tiny, "-tp", "3"))
    try:
        e.send({"type": "stats", "id": "s"})
        e.wait_for(lambda m: m["type"] == "stats")
        kids = _children(e.proc.pid)
        assert len(kids) == 2
        os.kill(e.proc.pid, signal.SIGKILL)
        e.proc.wait(timeout=5)
        assert all(_pid_gone(k) for k in kids)
    finally:
        e.stop()


# ================================================================ refusals

def _refused(cmd, timeout=30):
    p = subprocess.run(cmd, input=b"", capture_output=True, timeout=timeout)
    return p.returncode, p.stderr.decode(errors="replace")


def test_multi_node_refused_on_cpu(tiny):
    rc, err = _refused(engine(tiny, "-tp", "2", "--nnodes", "2", "--node-rank", "0", "--master-addr", "10.0.0.1",
                              "--master-port", "29500"))
    assert rc == 2 and "--nnodes: multi-node groups need the NCCL communicator" in err


def test_more_ranks_than_heads_refused(tiny):
    rc, err = _refused(engine(tiny, "-tp", "8"))
    assert rc == 1 and "4 attention heads cannot be split over 8 ranks" in err


def test_fp8_split_inside_a_block_refused(tiny_fp8):
    rc, err = _refused(engine(tiny_fp8, "-tp", "2"))
    assert rc == 1
    assert "kv_b_proj.weight: rank 1 of 2 would take rows [224, 448) of 448, which starts inside a 128x128 FP8 block" in err
    # rank 0's own share fails too: the 96-wide shared expert is one FP8 block, all on rank 1
    assert "shared_experts.gate_proj.weight: rank 0 of 2 would get none of its 96 rows" in err


# GPU ranks (NCCL) and multi-node launches: what this machine can check
# without a GPU is the flag validation and the refusals, all before loading.

def _gpus():
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    p = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    return sum(ln.startswith("GPU ") for ln in p.stdout.splitlines()) if p.returncode == 0 else 0


def _engine_on(model, backend, *extra):
    cmd = engine(model, *extra)
    cmd[cmd.index("--backend") + 1] = backend
    return cmd


@pytest.mark.parametrize("extra,flag,why", [
    (["-tp", "2", "--nnodes", "2", "--node-rank", "2"], "--node-rank", "must be below --nnodes"),
    (["--node-rank", "1"], "--node-rank", "must be below --nnodes"),
    (["-tp", "3", "--nnodes", "2"], "--tensor-parallel-size", "must be a multiple of --nnodes"),
    (["-tp", "130", "--nnodes", "2"], "--tensor-parallel-size", "at most 64 ranks on one host"),
    (["--rendezvous-timeout", "0"], "--rendezvous-timeout", "expected seconds"),
    (["--master-port", "70000"], "--master-port", "expected an integer in range"),
], ids=["node-rank-past-nnodes", "node-rank-alone", "tp-not-multiple", "too-many-local", "timeout", "port"])
def test_gpu_group_flags_refused(tiny, extra, flag, why):
    rc, err = _refused(_engine_on(tiny, "cuda", *extra))
    assert rc == 2 and f"glm-engine: {flag}: {why}" in err, err


def test_gpu_ranks_need_a_device_per_rank(tiny):
    if _gpus() >= 2:
        pytest.skip("this machine has the GPUs: the refusal cannot be seen")
    rc, err = _refused(_engine_on(tiny, "cuda", "-tp", "2"))
    assert rc == 2 and "--tensor-parallel-size: needs 2 CUDA devices on this host (one per rank), found" in err, err


def test_multi_node_needs_gpus_with_auto(tiny):
    if _gpus() >= 1:
        pytest.skip("this machine has a GPU: the refusal cannot be seen")
    rc, err = _refused(_engine_on(tiny, "auto", "-tp", "2", "--nnodes", "2", "--master-addr", "127.0.0.1"))
    assert rc == 2 and ("--nnodes: multi-node groups need the NCCL communicator on CUDA devices: needs 1 CUDA device on this "
                         "host (one per rank), found 0") in err, err


def test_auto_runs_tp_on_the_cpu_without_gpus(tiny):
    if _gpus() >= 2:
        pytest.skip("this machine has the GPUs: auto takes them")
    p = subprocess.run(_engine_on(tiny, "auto", "-tp", "2"), input=b"", capture_output=True, timeout=60)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, err
    assert "--backend auto: tensor-parallel ranks on the cpu backend (needs 2 CUDA devices" in err
    assert "tensor parallel: 2 ranks (processes, shared memory)" in err


def _free_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def test_two_nodes_on_one_host_equal_tp1(tiny, monkeypatch):
    """The multi-node path on one machine with two GPUs: node 0 and node 1
    as two glm-engines each seeing one card (CUDA_VISIBLE_DEVICES), meeting
    through the rendezvous on 127.0.0.1, NCCL between them as between
    hosts; TP 1's greedy tokens and logprobs. Runs under
    GLM_ENGINE_BACKEND=cuda (tests/gpu/gpu_check.sh) on >= 2 GPUs."""
    if os.environ.get("GLM_ENGINE_BACKEND") != "cuda" or _gpus() < 2:
        pytest.skip("needs two GPUs and GLM_ENGINE_BACKEND=cuda")
    ref_lp, ref_toks, _ = _run(tiny)
    group = ["-tp", "2", "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
             "--rendezvous-timeout", "60"]
    node1 = subprocess.Popen(engine(tiny, *group, "--node-rank", "1"), env=dict(os.environ, CUDA_VISIBLE_DEVICES="1"),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        lp, toks, err = _run(tiny, *group, "--node-rank", "0")
        _, log1 = node1.communicate(timeout=60)     # node 0 stopped the group: node 1 exits 0
        assert node1.returncode == 0, log1.decode(errors="replace")
    finally:
        if node1.poll() is None:
            node1.kill()
            node1.wait()
    assert "tensor parallel: 2 ranks (processes, one per GPU, NCCL, over several nodes)" in err
    assert "rendezvous: node 1 joined" in err
    _assert_same(lp, toks, ref_lp, ref_toks)
