#!/usr/bin/env bash
# The GPU check, one prepared script for a machine with an NVIDIA GPU: the kernel tests on CUDA (Triton
# compiled, no TRITON_INTERPRET), then the kernel, backend and KV-compression benchmarks in quick modes,
# in under 8 minutes. Every step's JSON (and log) lands in one folder, with summary.json listing each
# step's exit status and seconds. Without a GPU it stops at once with a message and exit status 2.
#
#   bash bench/gpu_check.sh [OUT_DIR]      # default: bench/results/gpu-check-<UTC time>
#   PYTHON=/path/to/python bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
OUT="${1:-bench/results/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}"
THREADS="${GPU_CHECK_THREADS:-8}"
unset TRITON_INTERPRET
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! compgen -G '/dev/nvidia[0-9]*' >/dev/null; then
    echo "gpu_check: no NVIDIA GPU on this machine (no /dev/nvidia<N> device)." >&2
    echo "gpu_check: run it on a machine with an NVIDIA GPU, its driver and a CUDA build of torch." >&2
    exit 2
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch ($PY: torch.cuda.is_available() is False)." >&2
    echo "gpu_check: run it on a machine with an NVIDIA GPU, its driver and a CUDA build of torch." >&2
    exit 2
fi
if ! "$PY" -c 'import triton' 2>/dev/null; then
    echo "gpu_check: triton is not installed for $PY: pip install -e '.[gpu]'" >&2
    exit 2
fi

mkdir -p "$OUT"
"$PY" -c 'import json, sys, torch
json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "cuda": torch.version.cuda}, sys.stdout)' > "$OUT/device.json"
echo "gpu_check: $(cat "$OUT/device.json") -> $OUT"

STEPS=()
FAILED=0

# step NAME LIMIT_S RESULT_JSON COMMAND...: run COMMAND under a time limit, log to OUT/NAME.log, and copy
# RESULT_JSON into OUT when this run wrote it ("-" for none).
step() {
    local name=$1 limit=$2 result=$3
    shift 3
    local marker="$OUT/.started-$name" began=$SECONDS rc
    touch "$marker"
    echo "gpu_check: $name (at most ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    if [ "$result" != "-" ] && [ -f "$result" ] && [ "$result" -nt "$marker" ]; then
        cp "$result" "$OUT/"
    elif [ "$result" != "-" ] && [ "$rc" -eq 0 ]; then
        rc=1
        echo "gpu_check: $name exited 0 but did not write $result" >> "$OUT/$name.log"
    fi
    rm -f "$marker"
    [ "$rc" -eq 124 ] && echo "gpu_check: $name ran past ${limit}s" >> "$OUT/$name.log"
    [ "$rc" -ne 0 ] && FAILED=1 && echo "gpu_check: $name FAILED (exit $rc), see $OUT/$name.log" >&2
    STEPS+=("$name:$rc:$((SECONDS - began))")
}

# 140 + 60 + 170 + 90 = 460 s of limits: the whole check stays under 8 minutes.
step kernel_tests 140 - "$PY" -m pytest -q -p no:cacheprovider tests/kernels --junitxml "$OUT/kernel_tests.xml"
step kernels_bench 60 bench/results/kernels.json "$PY" bench/kernels_bench.py --repeats 10
step backend_bench 170 bench/results/backend.json \
    "$PY" bench/backend_bench.py --levels 1,8 --max-tokens 16 --prefix-rounds 1 --threads "$THREADS"
step kv_compression_bench 90 bench/results/kv_compression.json \
    "$PY" bench/kv_compression_bench.py --quick --sections kl \
    --methods expected_attention,snapkv,streaming_llm,ojakv --threads "$THREADS"

"$PY" - "$OUT/summary.json" "${STEPS[@]}" <<'PY'
import json, sys
steps = [dict(zip(("step", "exit", "seconds"), s.rsplit(":", 2))) for s in sys.argv[2:]]
for s in steps:
    s["exit"], s["seconds"] = int(s["exit"]), int(s["seconds"])
json.dump({"ok": all(s["exit"] == 0 for s in steps), "steps": steps}, open(sys.argv[1], "w"), indent=2)
print("| step | exit | seconds |\n|---|---|---|")
for s in steps:
    print(f"| {s['step']} | {s['exit']} | {s['seconds']} |")
PY
exit "$FAILED"
