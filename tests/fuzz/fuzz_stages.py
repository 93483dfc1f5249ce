"""Wire-protocol fuzzer for every stage, as a real process on a pipe.

    make fuzz FUZZ_SECONDS=300                   (all stages, the time split between them)
    tests/.venv/bin/python tests/fuzz/fuzz_stages.py --seconds 60 --stages glm-detok,glm-parse-tools
    FUZZ_BUILD=build-asan make fuzz              (the same against the ASan+UBSan binaries)

Each stage runs once for its whole share of the time; inputs go in batches:
  structured  messages of the stage's protocol, framing kept, fields mutated
              (types swapped, 2^64-1 and other extreme integers, NaN/inf, huge,
              empty and non-UTF-8 strings, deep nesting, missing and unknown
              fields, long ids, unknown types)
  raw         random bytes, bit flips, truncations, splices and duplications
              of valid messages, stray msgpack headers, declared lengths of GiB
  mixed       structured messages with junk between them that cannot start a
              message (it must cost only itself)
After every batch a known request (the canary) goes in and its answer must
come back byte for byte as from a fresh stage, within the partial timeout;
after structured and mixed batches every request-starting message (the
stage's intake: request / generate / start) must have been answered (its id
seen on the output, an `error` counts). A crash, a hang, a wrong canary or an
unanswered request stops the run with the reproducer in build/fuzz/. Prints
per stage: inputs, batches, answered intake, bytes skipped, time."""
import argparse
import json
import os
import pathlib
import random
import select
import shutil
import signal
import subprocess
import sys
import time

import msgpack

ROOT = pathlib.Path(__file__).resolve().parents[2]
U64 = 2 ** 64 - 1


# ----------------------------------------------------------------- the stage process

class Proc:
    def __init__(self, cmd, log):
        self.cmd = cmd
        self.log = open(log, "wb")
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.raw = b""      # output bytes not yet parsed into messages
        self.msgs = []      # (message, its exact bytes)
        self.sent = []      # (time, bytes) written lately, for a reproducer

    def write(self, data):
        # write in slices, reading the output meanwhile (a stage blocks when its stdout fills)
        self.sent = (self.sent + [(time.time(), data)])[-40:]
        view = memoryview(data)
        while view:
            _, w, _ = select.select([self.p.stdout], [self.p.stdin], [], 5)
            self.pump()
            if w:
                n = os.write(self.p.stdin.fileno(), view[:65536])
                view = view[n:]
            elif self.p.poll() is not None:
                raise RuntimeError(f"stage exited {self.p.returncode}")

    def pump(self):
        try:
            while True:
                b = self.p.stdout.read(1 << 20)
                if not b:
                    break
                self.raw += b
        except (BlockingIOError, TypeError):
            pass
        u = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=1 << 30, object_pairs_hook=pairs,
                             ext_hook=lambda code, data: ("ext", code, data))
        u.feed(self.raw)
        used = 0
        for m in u:
            end = u.tell()
            self.msgs.append((m, self.raw[used:end]))
            used = end
        self.raw = self.raw[used:]

    def wait_for(self, pred, timeout):
        t0 = time.time()
        while time.time() - t0 < timeout:
            self.pump()
            if pred():
                return True
            if self.p.poll() is not None:
                self.pump()
                return pred()
            select.select([self.p.stdout], [], [], 0.05)
        return False

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        t0 = time.time()   # read while waiting: what it says at EOF may not fit in the pipe
        while self.p.poll() is None and time.time() - t0 < 60:
            self.pump()
            select.select([self.p.stdout], [], [], 0.05)
        rc = self.p.poll()
        if rc is None:
            self.p.kill()
            self.p.wait()
            rc = "hang at EOF"
        self.pump()
        self.log.close()
        return rc


# Stages forward any msgpack ext they are given; msgpack-python refuses ext
# type -1 (timestamp) whose payload is not a timestamp: read it as bytes.
_from_bytes = msgpack.ext.Timestamp.from_bytes


def _lenient_timestamp(b):
    try:
        return _from_bytes(b)
    except ValueError:
        return ("ext", -1, b)


msgpack.ext.Timestamp.from_bytes = staticmethod(_lenient_timestamp)


def pairs(kv):
    """A map as a dict, or as its list of pairs when a key is unhashable (a
    stage forwards maps with map keys as they came)."""
    try:
        return dict(kv)
    except TypeError:
        return kv


CLOCK_FIELDS = {b"arrival_time", b"scheduled_time", b"first_token_time", b"finish_time"}


def comparable(m, b):
    """A message's bytes for the canary comparison: exactly as written, except
    that the engine's clock readings (protocol: start/end may carry them) are
    left out, the one part of an answer that differs run to run."""
    if isinstance(m, dict) and CLOCK_FIELDS & set(m):
        return msgpack.packb({k: v for k, v in m.items() if k not in CLOCK_FIELDS}, use_bin_type=True)
    return b


def mid(m):
    v = m.get(b"id") if isinstance(m, dict) else None
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


# ----------------------------------------------------------------- inputs

def extreme(r):
    return r.choice([U64, 2 ** 63, -2 ** 63, 2 ** 31 - 1, -1, 0, 1, 1e308, -0.0, float("nan"), float("inf"),
                     "", "x" * r.randint(1, 5000), b"\xff\xfe bytes", "\ud800".encode("utf-8", "surrogatepass"),
                     None, True, [], {}, [1] * r.randint(0, 50), {"k": "v"}, deep(r.randint(1, 200)), 1.5])


def deep(n):
    v = 1
    for _ in range(n):
        v = [v]
    return v


def mutate_value(r, v, depth=0):
    if depth > 6 or r.random() < 0.3:
        return extreme(r)
    if isinstance(v, dict):
        v = dict(v)
        for k in list(v):
            if r.random() < 0.3:
                v[k] = mutate_value(r, v[k], depth + 1)
            elif r.random() < 0.1:
                del v[k]
        if r.random() < 0.2:
            v[r.choice(["zz", "n", "index", "type", "context", "finish_reason"])] = extreme(r)
        return v
    if isinstance(v, list):
        return [mutate_value(r, x, depth + 1) if r.random() < 0.3 else x for x in v][: r.randint(0, len(v) + 1)]
    return extreme(r)


def structured(r, stage, rid):
    """One message of the stage's protocol with fields mutated; the id is kept
    (so an answer can be expected) unless the mutation is of the id itself."""
    base = stage["messages"](r, rid)
    m = r.choice(base)
    if r.random() < 0.8:
        m = mutate_value(r, m)
        if not isinstance(m, dict):
            m = {"type": "ping", "id": rid}
        m["id"] = rid
        if r.random() < 0.1:
            m["type"] = r.choice(["", "zzz", 5, None, stage["intake"]])
    elif r.random() < 0.5:
        m = dict(m)
        m["id"] = r.choice(["", "i" * 300, 7, None, rid + "#0"])
    return m


NOT_A_START = bytes(b for b in range(256) if not (0x80 <= b <= 0x8f or b in (0xde, 0xdf)))


def junk_between(r):
    """Bytes that cannot start a message: skipping them must cost only themselves.
    Their own declared lengths must not swallow what follows, so only
    self-contained objects and single bytes are used."""
    parts = []
    for _ in range(r.randint(1, 4)):
        k = r.random()
        if k < 0.4:
            parts.append(bytes([0xc1]) * r.randint(1, 3))
        elif k < 0.7:
            parts.append(msgpack.packb(r.choice([5, -3, "str", [1, 2], 1.5, None, True, b"bin"])))
        else:
            parts.append(bytes(r.choice(b"\x00\x01\x7f\xc0\xc2\xc3\xe0\xff") for _ in range(r.randint(1, 8))))
    return b"".join(parts)


def raw(r, stage, rid):
    good = msgpack.packb(r.choice(stage["messages"](r, rid)), use_bin_type=True)
    k = r.random()
    if k < 0.2:
        return os.urandom(r.randint(1, 300))
    if k < 0.4:   # bit flips
        b = bytearray(good)
        for _ in range(r.randint(1, 4)):
            i = r.randrange(len(b))
            b[i] ^= 1 << r.randrange(8)
        return bytes(b)
    if k < 0.55:  # truncation
        return good[: r.randrange(len(good))]
    if k < 0.7:   # splice two messages
        other = msgpack.packb(r.choice(stage["messages"](r, rid + "b")), use_bin_type=True)
        i, j = r.randrange(len(good)), r.randrange(len(other))
        return good[:i] + other[j:]
    if k < 0.8:   # stray headers, huge declared lengths
        return r.choice([b"\xdb\x7f\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdd\x00\x10\x00\x00", b"\x8f", b"\x93",
                         b"\x81\xa2id", b"\xc6\xff\xff\xff\xff"])
    if k < 0.9:   # a valid message with an inserted byte
        i = r.randrange(len(good))
        return good[:i] + bytes([r.randrange(256)]) + good[i:]
    return good


# ----------------------------------------------------------------- stages

def gen_messages(vocab):
    def f(r, rid):
        ids = [r.randrange(vocab) for _ in range(r.randint(0, 8))]
        return [{"type": "generate", "id": rid, "prompt_ids": ids or [1], "n": r.randint(1, 3),
                 "sampling": {"max_tokens": r.randint(1, 4), "temperature": r.choice([0, 0.7, 1.0]), "seed": 1,
                              "ignore_eos": True, "logprobs": r.choice([None, 0, 2])},
                 "context": {"x": 1}},
                {"type": "abort", "id": rid}, {"type": "ping", "id": rid},
                {"type": "stats", "id": rid}]
    return f


def text_messages(input_type, vocab):
    def f(r, rid):
        n = r.randint(1, 3)
        if input_type == "tokens":
            part = lambda i, fin: {"type": "tokens", "id": rid, "index": i, "token_ids": [r.randrange(vocab) for _ in range(3)],
                                   **({"finish_reason": "stop"} if fin else {})}
        else:
            part = lambda i, fin: {"type": "delta", "id": rid, "index": i, "token_ids": [1],
                                   "text": r.choice(["hi ", "<think>", "</think>", "<tool_call>get_weather<arg_key>city",
                                                     "</arg_key><arg_value>Paris</arg_value></tool_call>", "é🚀"]),
                                   **({"finish_reason": "stop"} if fin else {})}
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}]
        return [{"type": "start", "id": rid, "n": n, "prompt_tokens": 3,
                 "context": {"thinking": True, "tools": tools, "tool_choice": "auto", "stop": ["zz"]}},
                part(0, False), part(0, True), part(n - 1, True),
                {"type": "end", "id": rid, "usage": {"prompt_tokens": 3, "completion_tokens": 3}},
                {"type": "abort", "id": rid, "index": 0}, {"type": "error", "id": rid, "code": 500}]
    return f


def request_messages(r, rid):
    msgs = [{"role": "user", "content": r.choice(["Hi", "é🚀 <think>", "x" * 300])}]
    return [{"type": "request", "id": rid, "endpoint": "chat", "body": {"messages": msgs, "max_tokens": 5}},
            {"type": "request", "id": rid, "endpoint": "completions", "body": {"prompt": ["a", "b"], "n": 2}},
            {"type": "request", "id": rid, "endpoint": "chat", "body": {
                "messages": msgs, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}},
            {"type": "ping", "id": rid}]


def bindir():
    """GLM_BIN (as the test suite sets it), else $FUZZ_BUILD/bin."""
    b = os.environ.get("GLM_BIN")
    return pathlib.Path(b) if b else ROOT / os.environ.get("FUZZ_BUILD", "build") / "bin"


def stages(model, script):
    vocab = 1024
    bin_ = lambda n: str(bindir() / n)
    common = ["--partial-timeout", "0.2", "--drain-timeout", "2"]
    text_canary = lambda inp: lambda rid: [
        {"type": "start", "id": rid, "n": 1, "prompt_tokens": 3, "context": {"thinking": True}},
        {"type": "tokens", "id": rid, "index": 0, "token_ids": [72, 105, 33], "finish_reason": "stop"} if inp == "tokens"
        else {"type": "delta", "id": rid, "index": 0, "text": "a</think>b", "token_ids": [1], "finish_reason": "stop"},
        {"type": "end", "id": rid, "usage": {"prompt_tokens": 3, "completion_tokens": 3}}]
    return {
        "glm-tokenize": {"cmd": [bin_("glm-tokenize"), "--model", model] + common, "intake": "request",
                         "messages": request_messages, "weight": 2,
                         "canary": lambda rid: [{"type": "request", "id": rid, "endpoint": "chat",
                                                 "body": {"messages": [{"role": "user", "content": "Hi"}]}}]},
        "glm-engine": {"cmd": [bin_("glm-engine"), "--model", model, "--threads", "1", "--max-model-len", "64",
                               "--num-gpu-blocks-override", "256", "--max-num-seqs", "16"] + common,
                       "intake": "generate", "messages": gen_messages(vocab), "weight": 2,
                       "canary": lambda rid: [{"type": "generate", "id": rid, "prompt_ids": [1, 2, 3],
                                               "sampling": {"max_tokens": 3, "temperature": 0, "ignore_eos": True}}]},
        "glm-replay": {"cmd": [bin_("glm-replay"), "--model", model, "--script", script] + common,
                       "intake": "generate", "messages": gen_messages(vocab), "weight": 1,
                       "canary": lambda rid: [{"type": "generate", "id": rid, "prompt_ids": [1, 2, 3], "sampling": {}}]},
        "glm-detok": {"cmd": [bin_("glm-detok"), "--model", model] + common, "intake": "start",
                      "messages": text_messages("tokens", vocab), "weight": 1, "canary": text_canary("tokens")},
        "glm-parse-reasoning": {"cmd": [bin_("glm-parse-reasoning")] + common, "intake": "start",
                                "messages": text_messages("delta", vocab), "weight": 1, "canary": text_canary("delta")},
        "glm-parse-tools": {"cmd": [bin_("glm-parse-tools")] + common, "intake": "start",
                            "messages": text_messages("delta", vocab), "weight": 1, "canary": text_canary("delta")},
    }


# ----------------------------------------------------------------- the run

def canary_answer(stage, outdir):
    p = Proc(stage["cmd"], outdir / "canary.log")
    p.write(b"".join(msgpack.packb(m, use_bin_type=True) for m in stage["canary"]("canary")))
    p.close()
    return [comparable(m, b) for m, b in p.msgs if mid(m) == "canary"]


def fuzz_stage(name, stage, seconds, seed, outdir, batch):
    r = random.Random(seed)
    want = canary_answer(stage, outdir)
    assert want, f"{name}: the canary got no answer from a fresh stage"
    log = outdir / f"{name}.log"
    p = Proc(stage["cmd"], log)
    stats = {"inputs": 0, "batches": 0, "intake": 0, "answered": 0, "canaries": 0}
    t_end = time.time() + seconds
    n = ck = 0
    try:
        while time.time() < t_end:
            kind = r.choice(["structured", "raw", "mixed"])
            data, expect = [], []
            for _ in range(batch):
                n += 1
                rid = f"f{n}"
                if kind == "raw":
                    data.append(raw(r, stage, rid))
                    continue
                m = structured(r, stage, rid)
                b = msgpack.packb(m, use_bin_type=True)
                if kind == "mixed":
                    data.append(junk_between(r))
                data.append(b)
                if m.get("type") == stage["intake"] and m.get("id") == rid:
                    expect.append(rid)
            blob = b"".join(data)
            before = len(p.msgs)
            p.write(blob)
            # After structured and mixed input the canary must be answered at
            # once. Raw junk may leave a message open that swallows the
            # canary's first bytes (a corrupt length is indistinguishable from
            # a real one until the partial timeout): then the stage must answer
            # a canary sent again, after the open message was given up.
            # Each canary has its own id (as long as "canary", so its answer is
            # the fresh stage's answer with the id bytes replaced): a swallowed
            # one coming out late cannot pass for the next.
            for attempt in range(6 if kind == "raw" else 1):
                ck += 1
                cid = f"k{ck % 100000:05d}"
                canary = b"".join(msgpack.packb(m, use_bin_type=True) for m in stage["canary"](cid))
                want_c = [b.replace(b"canary", cid.encode()) for b in want]
                mark = len(p.msgs)
                p.write(canary)
                if p.wait_for(lambda: [comparable(m, b) for m, b in p.msgs[mark:] if mid(m) == cid] == want_c,
                              timeout=20 if attempt == 0 and kind != "raw" else 2):
                    break
                stats["swallowed"] = stats.get("swallowed", 0) + 1
            else:
                got = [b for m, b in p.msgs[before:] if mid(m) == cid]
                raise AssertionError(f"canary answer differs after a {kind} batch: {len(got)} vs {len(want)} messages")
            del p.msgs[:before]   # keep memory flat
            # an answer carries the request's id, or a part's `<id>#k` (several completions prompts)
            answered = lambda: {str(mid(m)).split("#")[0] for m, _ in p.msgs}
            missing = [x for x in expect if x not in answered()]
            # engine: an accepted generate answers with start/tokens as it runs; wait a little
            if missing and not p.wait_for(lambda: all(x in answered() for x in missing), 20):
                raise AssertionError(f"{len(missing)} of {len(expect)} {stage['intake']} messages unanswered, e.g. {missing[:3]}")
            stats["inputs"] += batch
            stats["batches"] += 1
            stats["intake"] += len(expect)
            stats["answered"] += len(expect)
            stats["canaries"] += 1
            p.msgs.clear()
    except Exception as e:   # keep the evidence: the bytes written lately, and when
        (outdir / f"{name}.repro.bin").write_bytes(b"".join(d for _, d in p.sent))
        (outdir / f"{name}.repro.times").write_text("".join(f"{t:.3f} {len(d)}\n" for t, d in p.sent))
        p.p.kill()
        p.close()
        return stats, f"{type(e).__name__}: {e} (reproducer {outdir / (name + '.repro.bin')}, log {log})"
    rc = p.close()
    err = log.read_text(errors="replace")
    stats["skipped_lines"] = err.count("skipped")
    if rc != 0:
        return stats, f"exit status {rc} at EOF (log {log})"
    if "AddressSanitizer" in err or "runtime error" in err:
        return stats, f"sanitizer report (log {log})"
    return stats, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 60)))
    ap.add_argument("--stages", default=os.environ.get("FUZZ_STAGES", ""))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 1)))
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    outdir = pathlib.Path(os.environ.get("FUZZ_OUT", ROOT / "build" / "fuzz"))
    outdir.mkdir(parents=True, exist_ok=True)
    model = outdir / "tiny"
    if not (model / "config.json").exists():
        subprocess.run([str(bindir() / "glm-mkmodel"), "--preset", "tiny", "--seed", "0", "--out", str(model)],
                       check=True, capture_output=True)
    script = outdir / "script.jsonl"
    script.write_text('{"output": "<think>hm</think>ok <tool_call>get_weather<arg_key>city</arg_key>'
                      '<arg_value>Paris</arg_value></tool_call>", "chunk": 2}\n')
    all_stages = stages(str(model), str(script))
    names = [s for s in args.stages.split(",") if s] or list(all_stages)
    total_w = sum(all_stages[n]["weight"] for n in names)
    print(f"fuzz: {args.seconds:.0f} s over {len(names)} stages, seed {args.seed}, binaries {bindir()}")
    failed = 0
    for i, name in enumerate(names):
        st = all_stages[name]
        secs = args.seconds * st["weight"] / total_w
        t0 = time.time()
        stats, err = fuzz_stage(name, st, secs, args.seed * 1000 + i, outdir, args.batch)
        dt = time.time() - t0
        print(f"{name:20s} {stats['inputs']:7d} inputs {stats['batches']:5d} batches "
              f"{stats['answered']:6d}/{stats['intake']:<6d} intake answered  {stats['canaries']:5d} canaries ok "
              f"({stats.get('swallowed', 0)} resent after junk) "
              f"{dt:6.1f} s  {'OK' if not err else 'FAIL: ' + err}")
        failed += err is not None
    print(f"{len(names) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
