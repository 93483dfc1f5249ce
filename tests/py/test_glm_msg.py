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
    assert b"malformed msgpack" in p.stderr


def test_truncated_stream_keeps_complete_messages():
    data = pack_all([{"id": "1"}, {"id": "2"}])
    tail = msgpack.packb({"id": "3", "long": "x" * 100})[:20]
    p = subprocess.run([binpath("glm-msg"), "unpack"], input=data + tail, capture_output=True)
    assert [json.loads(l) for l in p.stdout.decode().splitlines()] == [{"id": "1"}, {"id": "2"}]
    assert b"input ended inside a message" in p.stderr
