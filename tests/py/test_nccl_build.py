"""The NCCL communicator (engine/cuda/comm_nccl.cu) is part of the CUDA build
of glm-engine, and the GPU check program links against it (`make
nccl-check`). Nothing here runs them: that needs a GPU (`make nccl-run`,
tests/gpu/gpu_check.sh, docs/engine.md). libnccl is opened at run time, so
glm-engine must not depend on it at load time. Skipped visibly where the
toolkit is absent, and under the sanitizer build (CUDA=0 there: the stubs
of engine/cuda/nccl_none.c)."""
import os
import pathlib
import subprocess

import pytest

from conftest import ROOT, binpath

CUDA = pathlib.Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))


def _build():
    return pathlib.Path(os.environ.get("GLM_BIN", ROOT / "build" / "bin")).parent


def _need_toolkit():
    if not (CUDA / "bin" / "nvcc").exists() or not (CUDA / "include" / "nccl.h").exists():
        pytest.skip(f"no CUDA toolkit with NCCL under {CUDA}")
    if "asan" in _build().name:
        pytest.skip("the sanitizer build has no CUDA (CUDA=0)")


def test_nccl_communicator_compiles_and_links():
    _need_toolkit()
    build = _build()
    p = subprocess.run(["make", "-s", "--no-print-directory", f"BUILD={build}", "nccl-check"], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert (build / "gpu" / "nccl_check").exists()
    assert (build / "obj" / "engine" / "cuda" / "comm_nccl.cu.o").exists()


def test_glm_engine_has_the_nccl_communicator_without_linking_libnccl():
    _need_toolkit()
    eng = binpath("glm-engine")
    syms = subprocess.run(["nm", eng], capture_output=True, text=True, timeout=60).stdout
    # the real communicator (its dlopen loader), not nccl_none.c's stubs
    assert "eng_comm_nccl_create" in syms and "nccl_load" in syms
    ldd = subprocess.run(["ldd", eng], capture_output=True, text=True, timeout=60).stdout
    assert "libnccl" not in ldd and "libcudart.so" not in ldd
