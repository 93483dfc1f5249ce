#!/usr/bin/env bash
# Run every libFuzzer target in $BUILD/fuzzbin for its share of FUZZ_SECONDS,
# each from a seed corpus made of the project's own test data. Crashes and
# sanitizer reports leave their input in $BUILD/fuzz-artifacts/.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-fuzz}
SECS=${FUZZ_SECONDS:-60}
SHARED=${GLM_SHARED:-../shared}
targets=("$BUILD"/fuzzbin/fuzz_*)
per=$(( SECS / ${#targets[@]} )); [ "$per" -lt 5 ] && per=5
mkdir -p "$BUILD/fuzz-artifacts"
# glm-tokenize's request path needs a model: the one make fuzz creates, else a new tiny one
export GLM_FUZZ_MODEL=${GLM_FUZZ_MODEL:-build/fuzz/tiny}
if [ ! -f "$GLM_FUZZ_MODEL/config.json" ] && [ -x build/bin/glm-mkmodel ]; then
    build/bin/glm-mkmodel --preset tiny --seed 0 --out "$GLM_FUZZ_MODEL" >/dev/null 2>&1
fi
seed() {   # seed corpus for a target
    local d="$BUILD/fuzz-corpus/$1"; mkdir -p "$d"
    case $1 in
      fuzz_jinja) cp "$SHARED"/data/templates/*.jinja "$d"/ 2>/dev/null; cp "$GLM_FUZZ_MODEL"/chat_template.jinja "$d"/tiny.jinja 2>/dev/null ;;
      fuzz_tokenizer_json) cp tests/data/tokenizer/gpt2_bytelevel.json "$d"/ 2>/dev/null ;;
      fuzz_json_context) printf '{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}' > "$d/chat.json"
                         printf '{"prompt":["a","b"],"n":2,"echo":true}' > "$d/completions.json" ;;
      fuzz_wire) printf '\x82\xa4type\xa4ping\xa2id\xa1x' > "$d/ping.bin" ;;
      fuzz_safetensors) [ -f "$GLM_FUZZ_MODEL/model.safetensors" ] && head -c 65536 "$GLM_FUZZ_MODEL/model.safetensors" > "$d/head.bin" ;;
    esac
    echo "$d"
}
fail=0
for t in "${targets[@]}"; do
    name=$(basename "$t")
    corpus=$(seed "$name")
    log="$BUILD/fuzz-artifacts/$name.log"
    "$t" -max_total_time="$per" -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$BUILD/fuzz-artifacts/$name-" \
         "$corpus" >"$log" 2>&1
    rc=$?
    runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    [ -z "$runs" ] && runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    printf '%-22s %10s runs in %4d s  %s\n' "$name" "${runs:-?}" "$per" "$([ $rc -eq 0 ] && echo OK || echo "FAIL (see $log)")"
    [ $rc -ne 0 ] && fail=$((fail + 1))
done
echo "$(( ${#targets[@]} - fail )) passed, $fail failed"
[ $fail -eq 0 ]
