#!/usr/bin/env bash
# make run: build (done by make), create the embedded default model
# (glm-mkmodel, no download) and serve it in the foreground with glm-serve on
# 127.0.0.1:8000, CPU backend, the reference command's parsers:
#
#   glm-serve models/default --served-model-name glm-tiny --port 8000 --backend cpu \
#       --reasoning-parser glm45 --tool-call-parser glm47 --enable-auto-tool-choice
#
# The default model has random weights: its text is noise, but every stage
# does its real job on a real GLM-5-architecture checkpoint. Ctrl-C stops it.
# MODEL=DIR serves another model directory, PORT=N another port; arguments
# (make run ARGS='...') are added to glm-serve's command line.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}/bin
MODEL=${MODEL:-models/default}
PORT=${PORT:-8000}
if [ ! -f "$MODEL/config.json" ]; then
    echo "run: creating the default model in $MODEL" >&2
    "$B/glm-mkmodel" --preset tiny --seed 0 --out "$MODEL"
fi
NAME=()
[ "$MODEL" = models/default ] && NAME=(--served-model-name glm-tiny)
exec "$B/glm-serve" "$MODEL" "${NAME[@]}" --host 127.0.0.1 --port "$PORT" --backend cpu \
    --kv-cache-memory-bytes 256M \
    --reasoning-parser glm45 --tool-call-parser glm47 --enable-auto-tool-choice "$@"
