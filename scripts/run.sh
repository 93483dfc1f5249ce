#!/usr/bin/env bash
# make run: build, create the embedded default model (glm-mkmodel, no
# download), and send a chat request through the whole pipeline:
#
#   glm-tokenize | glm-engine | glm-detok | glm-parse-reasoning | glm-parse-tools
#
# The default model has random weights, so its text is noise; what this shows
# is every stage doing its job on a real GLM-5-architecture checkpoint.
# PROMPT="..." picks the user message; MODEL=DIR another model directory.
# (The HTTP gateway will take this script's place once it exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}/bin
MODEL=${MODEL:-models/default}
PROMPT=${PROMPT:-What is the capital of France?}
if [ ! -f "$MODEL/config.json" ]; then
    echo "run: creating the default model in $MODEL" >&2
    "$B/glm-mkmodel" --preset tiny --seed 0 --out "$MODEL"
fi
# JSON string escaping for the prompt: backslash, quote, and newlines/tabs
esc=$(printf '%s' "$PROMPT" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }')
req='{"type":"request","id":"chatcmpl-demo","endpoint":"chat","body":{"messages":[{"role":"user","content":"'"$esc"'"}],"max_tokens":24,"temperature":0.7,"seed":1}}'
echo "run: request  $req" >&2
echo "$req" | "$B/glm-msg" pack \
  | "$B/glm-tokenize" --model "$MODEL" \
  | "$B/glm-engine" --model "$MODEL" --kv-cache-memory-bytes 256M \
  | "$B/glm-detok" --model "$MODEL" \
  | "$B/glm-parse-reasoning" --reasoning-parser glm45 \
  | "$B/glm-parse-tools" --tool-call-parser glm47 \
  | "$B/glm-msg" unpack
