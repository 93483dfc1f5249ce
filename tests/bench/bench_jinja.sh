#!/usr/bin/env bash
# Chat-template rendering: C interpreter vs Python jinja2 (as transformers
# sets it up), same template, same context, same run. Checks that both
# outputs are identical. Run from the repo root (make bench).
set -eu
BUILD=${BUILD:-build}
T=${1:-../shared/data/templates/glm-5.2.jinja}
C=tests/bench/jinja_context.json
if [ ! -f "$T" ]; then echo "bench_jinja: $T absent (needs ../shared), skipped"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$BUILD/bench/bench_jinja" "$T" "$C" "${C_RENDERS:-20000}" "$tmp/c.txt" | tee "$tmp/c.log"
if python3 -c 'import jinja2' 2>/dev/null; then
    python3 tests/bench/bench_jinja.py "$T" "$C" "${PY_RENDERS:-2000}" "$tmp/py.txt" | tee "$tmp/py.log"
    if cmp -s "$tmp/c.txt" "$tmp/py.txt"; then echo "outputs identical"; else echo "OUTPUTS DIFFER"; exit 1; fi
    c=$(sed -E 's/.*render: *([0-9.]+) us.*/\1/' "$tmp/c.log")
    p=$(sed -E 's/.*render: *([0-9.]+) us.*/\1/' "$tmp/py.log")
    awk -v c="$c" -v p="$p" 'BEGIN { printf "C takes %.3f of Python'"'"'s time per render (%.1fx faster)\n", c / p, p / c }'
else
    echo "python3 jinja2 absent: Python side skipped"
fi
