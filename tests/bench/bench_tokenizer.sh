#!/usr/bin/env bash
# Tokenizer benchmark: pl_tokenizer vs HF tokenizers, same text, one thread.
#   make bench            (or: BUILD=build bash tests/bench/bench_tokenizer.sh [TOKENIZER.json] [MB])
# Needs ../shared/data/tokenizers/llama3 and a Python with `tokenizers`: a
# venv is made in $BUILD/bench-venv on first use (test tooling only).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
TOK=${1:-${GLM_SHARED:-../shared}/data/tokenizers/llama3/tokenizer.json}
MB=${2:-12}
[ -f "$TOK" ] || { echo "bench: $TOK not found (shared data absent)"; exit 1; }
V=$BUILD/bench-venv
if [ ! -x "$V/bin/python" ] || ! "$V/bin/python" -c "import tokenizers" 2>/dev/null; then
    python3 -m venv "$V"
    "$V/bin/pip" install -q --disable-pip-version-check tokenizers==0.23.3
fi
TEXT=$BUILD/bench-text-${MB}mb.txt
[ -f "$TEXT" ] || "$V/bin/python" tests/bench/bench_hf.py gen "$TEXT" "$MB"
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg)"
echo "== encode, $TOK"
"$BUILD/bench/bench_tokenizer" "$TOK" "$TEXT"
"$V/bin/python" tests/bench/bench_hf.py hf "$TOK" "$TEXT"
for f in "$(dirname "$(dirname "$TOK")")"/*/tokenizer.json; do
    echo "== load, $f"
    "$BUILD/bench/bench_tokenizer" "$f" -
    "$V/bin/python" tests/bench/bench_hf.py load "$f"
done
