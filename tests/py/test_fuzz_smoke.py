"""The wire-protocol fuzzer (tests/fuzz/fuzz_stages.py, `make fuzz`) stays
runnable: a few seconds on two stages, every batch's canary answered byte for
byte and every intake message answered."""
import os
import subprocess
import sys

from conftest import BIN, ROOT, binpath


def test_fuzzer_smoke(tmp_path):
    binpath("glm-parse-tools")
    env = dict(os.environ, GLM_BIN=str(BIN), FUZZ_OUT=str(tmp_path))
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz" / "fuzz_stages.py"), "--seconds", "3",
                        "--stages", "glm-parse-reasoning,glm-detok", "--batch", "20"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 passed, 0 failed" in p.stdout
