"""Shared fixtures for the Python tests: where the binaries and data are."""
import os
import pathlib
import subprocess

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
