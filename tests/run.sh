#!/usr/bin/env bash
# Run every test: C unit tests (build/tests/test_*) then the Python tests
# (pipeline, conformance, end-to-end) under pytest. Prints each suite's
# output and ends with one line "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export GLM_BIN="$PWD/$BUILD/bin"
pass=0; fail=0; skip=0
add_counts() {  # parse the last "N passed, N failed[, N skipped]" of a log
    local line p f s
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
    if [ -z "$line" ]; then fail=$((fail + 1)); echo "!! $2 printed no summary (crashed?)"; return; fi
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
    s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line"); s=${s:-0}
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
}
log=$(mktemp); trap 'rm -f "$log"' EXIT
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    "$t" >"$log" 2>&1; rc=$?
    cat "$log"
    add_counts "$log" "$(basename "$t")"
    if [ $rc -ne 0 ] && ! grep -qE '^[0-9]+ passed, [1-9]' "$log"; then
        echo "!! $(basename "$t") exited $rc"; fail=$((fail + 1))
    fi
done
if ls tests/py/test_*.py >/dev/null 2>&1 && [ "${GLM_SKIP_PY:-0}" != 1 ]; then
    echo "== pytest"
    if scripts/test-venv.sh >"$log" 2>&1; then
        tests/.venv/bin/python -m pytest -q -rs tests/py 2>&1 | tee "$log"
        # pytest: "3 passed, 1 skipped in 0.5s" / "1 failed, 2 passed" / "5 skipped"
        sum=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "$log" | tail -n 1)
        p=$(grep -oE '[0-9]+ passed' <<<"$sum" | grep -oE '[0-9]+'); p=${p:-0}
        f=$(grep -oE '[0-9]+ (failed|errors?)' <<<"$sum" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'); f=${f:-0}
        s=$(grep -oE '[0-9]+ skipped' <<<"$sum" | grep -oE '[0-9]+'); s=${s:-0}
        [ -z "$sum" ] && { echo "!! pytest printed no summary"; f=1; }
        pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    else
        cat "$log"; echo "!! could not create the test virtualenv"; fail=$((fail + 1))
    fi
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
