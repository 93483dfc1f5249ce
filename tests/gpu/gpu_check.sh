#!/usr/bin/env bash
# make gpu-check — the CUDA backend on a machine with a GPU, in one go:
#   1. no GPU (no driver or no device): print SKIP and exit 0 (nothing was checked);
#   2. build (make -j all), or use a prebuilt bundle (GLM_GPU_PREBUILT=DIR, made by
#      tests/gpu/bundle.sh, for machines without the build's Debian packages);
#   3. build/tests/test_cuda with GLM_GPU_CHECK=1: every CUDA op against the CPU
#      backend, whole steps of the tiny and small presets (bf16/fp8 weights,
#      f32/fp8 KV: prompt logits error, greedy agreement, free-run continuations),
#      decode timing at batch 1/8/64;
#   4. the engine's pipe tests (tests/py/test_engine_pipe.py) with --backend cuda;
#   5. the NCCL communicator (tests/gpu/nccl_check): TP = 1 through NCCL equals the
#      plain path bit for bit (CPU and CUDA backends); with >= 2 cards TP = 2 over NCCL
#      within 1e-4 of TP = 1, then glm-engine --backend cuda -tp 2 against -tp 1 through
#      the pipe (tests/py/test_engine_tp.py: logprobs, greedy tokens, expert parallel,
#      a follower killed busy and idle, and two "nodes" on this host, one card each,
#      meeting through the multi-node rendezvous). Without libnccl on the machine (the bundle
#      cannot carry its ~200 MB) this step says SKIP in the summary: the NCCL path did
#      not run, and no PASS line claims it did;
#   6. a summary. Exit status: 0 only when every step that ran passed.
# Budget: ~5 minutes on one H200 (each step has its own timeout).
set -u
cd "$(dirname "$0")/../.."
T0=$(date +%s)
say() { printf 'gpu-check: %s\n' "$*"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    say "SKIP: no NVIDIA GPU or driver on this machine (nothing was checked)"
    exit 0
fi
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)
say "card: $CARD"

if [ -n "${GLM_GPU_PREBUILT:-}" ]; then
    B=$GLM_GPU_PREBUILT
    export LD_LIBRARY_PATH="$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    TEST="$B/tests/test_cuda"
    NCCL_CHECK="$B/tests/nccl_check"
    export GLM_BIN="$PWD/$B/bin"
    say "using the prebuilt bundle in $B"
else
    t=$(date +%s)
    if ! make -j"$(nproc)" all >/tmp/gpu-check-build.log 2>&1; then
        tail -n 40 /tmp/gpu-check-build.log; say "FAIL: build"; exit 1
    fi
    grep -q 'nvcc' /tmp/gpu-check-build.log || ls build/obj/engine/cuda/*.cu.o >/dev/null 2>&1 ||
        { say "FAIL: the build has no CUDA objects (is nvcc on PATH?)"; exit 1; }
    say "build: $(( $(date +%s) - t )) s"
    TEST=build/tests/test_cuda
    NCCL_CHECK=build/gpu/nccl_check
    make -s nccl-check >>/tmp/gpu-check-build.log 2>&1 || { tail -n 20 /tmp/gpu-check-build.log; say "FAIL: make nccl-check"; exit 1; }
    export GLM_BIN="$PWD/build/bin"
fi

fails=0
log=$(mktemp); tlog=$(mktemp); trap 'rm -f "$log" "$tlog"' EXIT

# GLM_GPU_REAL=1: also time decode on GLM-5.2's real layer shapes (4 layers, FP8; ~12 GB
# written to /tmp first, a minute or two more).
if [ "${GLM_GPU_REAL:-0}" = 1 ]; then
    REAL=/tmp/glm-gpu-check-real4
    [ -f "$REAL/config.json" ] || "$GLM_BIN/glm-mkmodel" --real-shapes --layers 4 --dtype fp8 --out "$REAL" >/dev/null ||
        { say "FAIL: could not write the real-shapes checkpoint"; exit 1; }
    export GLM_GPU_BENCH_MODEL=$REAL
fi

say "== CUDA vs CPU: ops, whole steps, decode timing"
GLM_GPU_CHECK=1 timeout 420 "$TEST" >"$tlog" 2>&1; rc=$?
cat "$tlog"
grep -q '^device: cuda' "$tlog" || { say "FAIL: the test binary found no CUDA device although nvidia-smi lists one"; fails=$((fails + 1)); }
[ $rc -eq 0 ] || { say "FAIL: test_cuda exited $rc"; fails=$((fails + 1)); }
grep -qE '^skip ' "$tlog" && { say "FAIL: some GPU tests skipped"; fails=$((fails + 1)); }

say "== pipe tests with --backend cuda"
PY=python3; [ -x tests/.venv/bin/python ] && PY=tests/.venv/bin/python
if GLM_ENGINE_BACKEND=cuda timeout 240 $PY -m pytest -q -x tests/py/test_engine_pipe.py >"$log" 2>&1; then
    tail -n 3 "$log"
else
    tail -n 60 "$log"; say "FAIL: pipe tests"; fails=$((fails + 1))
fi

NGPU=$(nvidia-smi -L | grep -c '^GPU ')
nccl_state="not run"
say "== NCCL communicator ($NGPU card(s)): TP = 1 through NCCL vs the plain path (and TP = 2 with >= 2 cards)"
nlog=$(mktemp); trap 'rm -f "$log" "$tlog" "$nlog"' EXIT
NR=""; [ "$NGPU" -ge 2 ] && NR=2
GLM_NCCL_RANKS=$NR timeout 120 "$NCCL_CHECK" >"$nlog" 2>&1; nrc=$?
cat "$nlog"
if [ $nrc -eq 2 ]; then
    nccl_state="SKIP: $(grep -m1 -E 'NCCL unavailable|no CUDA device' "$nlog") -- the NCCL path did NOT run"
    say "$nccl_state"
elif [ $nrc -ne 0 ]; then
    nccl_state="FAIL (nccl_check exited $nrc)"; say "$nccl_state"; fails=$((fails + 1))
else
    nccl_state="PASS (nccl_check: $(tail -n 1 "$nlog"))"
    if [ "$NGPU" -ge 2 ]; then
        say "== glm-engine --backend cuda -tp 2 vs -tp 1 (tests/py/test_engine_tp.py)"
        if GLM_ENGINE_BACKEND=cuda GLM_ENGINE_TP_PIN=0 timeout 180 $PY -m pytest -q \
             -k "(same_logprobs_and_greedy_as_tp1 and tp2 and not gqa) or follower_death or two_nodes" \
             tests/py/test_engine_tp.py >"$log" 2>&1; then
            tail -n 3 "$log"; nccl_state="$nccl_state; glm-engine -tp 2 on cuda: $(tail -n 1 "$log")"
        else
            tail -n 60 "$log"; say "FAIL: glm-engine -tp 2 on cuda"; fails=$((fails + 1))
            nccl_state="$nccl_state; glm-engine -tp 2 on cuda: FAIL"
        fi
    fi
fi

say "== summary ($(( $(date +%s) - T0 )) s)"
say "card: $CARD"
grep -E '^\|' "$tlog"
say "NCCL: $nccl_state"
grep -E '^cuda (vs|backend)' "$nlog"
[ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && cp "$tlog" "$OUT/test_cuda.log" && cp "$nlog" "$OUT/nccl_check.log"
if [ $fails -eq 0 ]; then say "PASS"; else say "FAIL ($fails)"; fi
[ $fails -eq 0 ]
