"""glm-msg: JSON Lines <-> msgpack, exactly."""
import json
import subprocess

import msgpack

from conftest import binpath, unpack_all, pack_all


def test_pack_matches_python_msgpack():
    lines = [
        {"type": "request", "id": "r1", "body": {"messages": [{"role": "user", "content": "héllo 世界 🚀"}]}},
        {"type": "tokens", "id": "r1", "index": 0, "token_ids": [1, 2, 3], "x": 1.5, "y": -7, "z": None, "b": False},
    ]
    src = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in lines).encode()
    p = subprocess.run([binpath("glm-msg"), "pack"], input=src, capture_output=True, check=True)
    assert unpack_all(p.stdout) == lines


def test_int_and_float_survive_a_round_trip():
    src = b'{"a":1,"b":1.0,"c":[2.5,3],"d":1e2}\n'
    packed = subprocess.run([binpath("glm-msg"), "pack"], input=src, capture_output=True, check=True).stdout
    obj = unpack_all(packed)[0]
    assert type(obj["a"]) is int and type(obj["b"]) is float and type(obj["d"]) is float
    back = subprocess.run([binpath("glm-msg"), "unpack"], input=packed, capture_output=True, check=True).stdout
    assert back == b'{"a":1,"b":1.0,"c":[2.5,3],"d":100.0}\n'


def test_unpack_one_line_per_message():
    msgs = [{"type": "ping", "id": str(i)} for i in range(100)]
    out = subprocess.run([binpath("glm-msg"), "unpack"], input=pack_all(msgs), capture_output=True, check=True).stdout
    assert [json.loads(l) for l in out.decode().splitlines()] == msgs


def test_bad_json_line_is_reported_and_skipped():
    src = b'{"id":"a"}\n{not json\n\n{"id":"b"}\n'
    p = subprocess.run([binpath("glm-msg"), "pack"], input=src, capture_output=True)
    assert p.returncode == 1
    assert b"line 2" in p.stderr
    assert unpack_all(p.stdout) == [{"id": "a"}, {"id": "b"}]


def test_garbage_msgpack_is_reported():
    p = subprocess.run([binpath("glm-msg"), "unpack"], input=b"\xc1\xc1\xc1", capture_output=True)
    assert p.returncode == 1
    assert b"skipped 3 bytes at input offset 0" in p.stderr


def test_truncated_stream_keeps_complete_messages():
    data = pack_all([{"id": "1"}, {"id": "2"}])
    tail = msgpack.packb({"id": "3", "long": "x" * 100})[:20]
    p = subprocess.run([binpath("glm-msg"), "unpack"], input=data + tail, capture_output=True)
    assert [json.loads(l) for l in p.stdout.decode().splitlines()] == [{"id": "1"}, {"id": "2"}]
    assert b"input ended inside a message" in p.stderr


def _one_at_a_time(cmd, chunks, read_one):
    """Feed chunks one by one; after each, the stage must have written its
    message already (stdin still open): a stage that buffers until EOF fails."""
    import os
    import select
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        got = []
        for c in chunks:
            p.stdin.write(c)
            p.stdin.flush()
            r, _, _ = select.select([p.stdout], [], [], 10)
            assert r, f"{cmd[-1]}: nothing written within 10 s while stdin stays open (not flushed)"
            got.append(read_one(os.read(p.stdout.fileno(), 1 << 16)))
        return got
    finally:
        p.stdin.close()
        p.wait(timeout=10)


def test_pack_flushes_every_message():
    lines = [b'{"type":"tokens","id":"a","token_ids":[%d]}\n' % i for i in range(3)]
    got = _one_at_a_time([binpath("glm-msg"), "pack"], lines, lambda b: unpack_all(b)[0])
    assert [m["token_ids"] for m in got] == [[0], [1], [2]]


def test_unpack_flushes_every_message():
    msgs = [msgpack.packb({"type": "tokens", "id": "a", "token_ids": [i]}) for i in range(3)]
    got = _one_at_a_time([binpath("glm-msg"), "unpack"], msgs, lambda b: json.loads(b))
    assert [m["token_ids"] for m in got] == [[0], [1], [2]]


def test_integers_exact_at_any_size():
    """Every integer passes exactly: int64 and uint64 as msgpack ints,
    larger ones as the bigint extension (type 1, decimal text)."""
    vals = [2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1,
            123456789012345678901234567890, 0, -0, 1.0, -0.0, 2.5e-8]
    src = json.dumps({"v": vals}).encode() + b"\n"
    packed = subprocess.run([binpath("glm-msg"), "pack"], input=src, capture_output=True, check=True).stdout
    obj = msgpack.unpackb(packed, raw=False)["v"]
    assert obj[:5] == vals[:5] and obj[5] == msgpack.ExtType(1, b"18446744073709551616")
    assert obj[6] == msgpack.ExtType(1, b"-9223372036854775809")
    assert obj[7] == msgpack.ExtType(1, b"123456789012345678901234567890")
    assert obj[8:] == vals[8:] and type(obj[9]) is int and type(obj[10]) is float
    back = subprocess.run([binpath("glm-msg"), "unpack"], input=packed, capture_output=True, check=True).stdout
    assert back.decode() == json.dumps({"v": vals}, separators=(",", ":")) + "\n"


def test_nul_characters_kept():
    m = {"type": "x", "id": "a\u0000b", "s": "before\u0000after", "k\u0000ey": ["\u0000"]}
    src = json.dumps(m).encode() + b"\n"
    packed = subprocess.run([binpath("glm-msg"), "pack"], input=src, capture_output=True, check=True).stdout
    assert unpack_all(packed) == [m]
    back = subprocess.run([binpath("glm-msg"), "unpack"], input=packed, capture_output=True, check=True).stdout
    assert json.loads(back) == m
