"""The NCCL communicator (engine/comm_nccl.cu) and its GPU check program
compile and link against the CUDA toolkit and libnccl (`make nccl-check`).
Nothing here runs them: that needs a GPU (`make nccl-run`, docs/engine.md).
Skipped visibly where the toolkit is absent, and under the sanitizer build
(the check program links the plain build's libraries)."""
import os
import pathlib
import subprocess

import pytest

from conftest import ROOT

CUDA = pathlib.Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))


def test_nccl_communicator_compiles_and_links():
    if not (CUDA / "bin" / "nvcc").exists() or not (CUDA / "include" / "nccl.h").exists():
        pytest.skip(f"no CUDA toolkit with NCCL under {CUDA}")
    build = pathlib.Path(os.environ.get("GLM_BIN", ROOT / "build" / "bin")).parent
    if "asan" in build.name:
        pytest.skip("the NCCL check links the plain build")
    p = subprocess.run(["make", "-s", "--no-print-directory", f"BUILD={build}", "nccl-check"], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert (build / "gpu" / "nccl_check").exists()
    assert (build / "obj" / "engine" / "comm_nccl.o").exists()
