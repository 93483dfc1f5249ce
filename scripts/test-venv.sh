#!/usr/bin/env bash
# Create tests/.venv with the test tooling of tests/requirements.txt.
# Quick no-op when the venv already matches the requirements file.
set -euo pipefail
cd "$(dirname "$0")/.."
V=tests/.venv
stamp="$V/.req-$(sha256sum tests/requirements.txt | cut -c1-16)"
[ -f "$stamp" ] && exit 0
PY=${PYTHON:-python3}
[ -x "$V/bin/python" ] || "$PY" -m venv "$V"
"$V/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
rm -f "$V"/.req-*; touch "$stamp"
