#!/usr/bin/env bash
# The GPU check, one prepared script for a machine with an NVIDIA GPU, in under 8 minutes: the kernel
# tests on CUDA (Triton compiled, no TRITON_INTERPRET) and the kernels bench; then the whole engine on
# CUDA: its device tests (greedy output against the CPU engine, Triton decode, int8 pages), backend_bench
# (bfloat16, Triton decode + SDPA prefill; tokens/s vs HF generate one by one and batched at 1/8/32,
# greedy parity with HF on the GPU, TTFT with a cached prefix) and kv_pages_bench (GPU memory the KV pool
# holds in float32 / bfloat16 / int8 / int4). Every step's JSON and log lands in one folder; summary.json
# has each step's exit status and seconds and the headline figures. Without a GPU it stops at once with
# a message and exit status 2.
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

# 120 + 45 + 75 + 150 + 75 = 465 s of limits: the whole check stays under 8 minutes.
step kernel_tests 120 - "$PY" -m pytest -q -p no:cacheprovider tests/kernels --junitxml "$OUT/kernel_tests.xml"
step kernels_bench 45 bench/results/kernels.json "$PY" bench/kernels_bench.py --repeats 10
step engine_cuda_tests 75 - "$PY" -m pytest -q -s -p no:cacheprovider tests/backend/test_backend_device.py \
    --junitxml "$OUT/engine_cuda_tests.xml"
step backend_bench 150 bench/results/backend.json \
    "$PY" bench/backend_bench.py --device cuda --dtype bfloat16 --attention-backend kernels \
    --levels 1,8,32 --max-tokens 32 --prefix-rounds 2 --threads "$THREADS"
step kv_pages_bench 75 bench/results/kv_pages.json \
    "$PY" bench/kv_pages_bench.py --device cuda --blocks 4096 --threads "$THREADS"

"$PY" - "$OUT" "${STEPS[@]}" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
steps = [dict(zip(("step", "exit", "seconds"), s.rsplit(":", 2))) for s in sys.argv[2:]]
for s in steps:
    s["exit"], s["seconds"] = int(s["exit"]), int(s["seconds"])
summary = {"ok": all(s["exit"] == 0 for s in steps), "steps": steps}
summary["device"] = json.loads((out / "device.json").read_text())
if (out / "backend.json").is_file():
    backend = json.loads((out / "backend.json").read_text())
    summary["engine_vs_hf"] = {
        "greedy_parity": backend["greedy_parity_with_hf"],
        "prefix_cache_ttft_cached_over_cold": backend["prefix_cache"]["cached_over_cold"],
        "levels": {
            level: {
                "ours_tokens_per_s": row["ours"]["tokens_per_s"],
                "hf_batched_tokens_per_s": row["hf_batched"]["tokens_per_s"],
                "ours_over_hf_batched": row["speedup_vs_hf_batched"],
                "ours_over_hf_one_by_one": row["speedup_vs_hf_one_by_one"],
            }
            for level, row in backend["levels"].items()
        },
    }
if (out / "kv_pages.json").is_file():
    pages = json.loads((out / "kv_pages.json").read_text())["configs"]
    keep = ("pool_bytes", "pool_ratio", "resident_saved", "tokens_per_s_batch8", "greedy_agreement")
    summary["kv_pages"] = {name: {k: row[k] for k in keep} for name, row in pages.items()}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
PY
exit "$FAILED"
