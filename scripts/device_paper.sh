#!/usr/bin/env bash
# One GPU for ~10 minutes, spent measuring: the paper profile of one model, then `python -m bench`,
# each under its own time limit, their summaries and logs under one output directory.
#
#   scripts/device_paper.sh [OUT]                 # OUT default: runs/device_paper_<UTC time>
#   MODEL=gemma-3-270m scripts/device_paper.sh    # another model (default: the packaged SmolLM2)
#   DRY_RUN=1 scripts/device_paper.sh             # print the plan, check python / torch / CUDA, run nothing
#
# Environment: MODEL (default), DEVICE (cuda), PAPER_S (420: seconds for the paper profile),
# BENCH_S (150: seconds for the bench), BENCH_ONLY (1,2,7: bench rows; peak-RAM subprocesses are skipped:
# --no-memory), PY (.venv/bin/python, else python3),
# EXTRA_RUN_ARGS (more options for `reward-circuits run`).
#
# Robust by construction: every part runs under `timeout` (SIGINT, then SIGKILL 30 s later), its exit
# code and wall time go to OUT/times.tsv whatever happens, and OUT/summary.json is written at the end
# even when a part failed (then the script exits 1). Nothing here needs the network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${1:-runs/device_paper_$(date -u +%Y%m%d_%H%M%S)}
MODEL=${MODEL:-default}
DEVICE=${DEVICE:-cuda}
PAPER_S=${PAPER_S:-420}
BENCH_S=${BENCH_S:-150}
BENCH_ONLY=${BENCH_ONLY:-1,2,7}
EXTRA_RUN_ARGS=${EXTRA_RUN_ARGS:-}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# shellcheck disable=SC2206
RUN_CMD=("$PY" -m reward_circuits.cli run --profile paper --model "$MODEL" --device "$DEVICE" --out "$OUT/paper" $EXTRA_RUN_ARGS)
BENCH_CMD=("$PY" -m bench --device "$DEVICE" --only "$BENCH_ONLY" --no-memory --json "$OUT/bench.json")

echo "device_paper: model=$MODEL device=$DEVICE out=$OUT (paper ${PAPER_S}s, bench ${BENCH_S}s) at $(date -u +%FT%TZ)"
echo "  1. ${RUN_CMD[*]}"
echo "  2. ${BENCH_CMD[*]}"
if [ "${DRY_RUN:-0}" = "1" ]; then
  "$PY" - "$DEVICE" <<'PY'
import sys, torch
from reward_circuits.configs import check_device
print(f"  torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
try:
    print(f"  device {check_device(sys.argv[1])!r}: ok")
except ValueError as e:
    print(f"  device check: {e}")
PY
  echo "dry run: nothing was run."
  exit 0
fi

mkdir -p "$OUT"
{
  echo "date_utc $(date -u +%FT%TZ)"
  echo "uptime $(uptime)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' || true
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
printf 'part\texit_code\twall_s\tload_before\tload_after\n' > "$OUT/times.tsv"

FAILED=0
run_part() {  # run_part NAME SECONDS CMD...: never stops the script; records exit code and wall time
  local name=$1 limit=$2
  shift 2
  local start end rc load0 load1
  load0=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
  start=$(date +%s.%N)
  echo "== $name (limit ${limit}s) started $(date -u +%T)"
  set +e
  timeout --signal=INT --kill-after=30 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  set -e
  end=$(date +%s.%N)
  load1=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
  local wall
  wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$wall" "$load0" "$load1" >> "$OUT/times.tsv"
  echo "== $name: exit $rc after ${wall}s$([ "$rc" = 124 ] && echo ' (time limit)')"
  tail -n 5 "$OUT/$name.log" || true
  [ "$rc" = 0 ] || FAILED=1
}

run_part paper "$PAPER_S" "${RUN_CMD[@]}"
run_part bench "$BENCH_S" "${BENCH_CMD[@]}"

"$PY" - "$OUT" "$MODEL" "$DEVICE" <<'PY' || FAILED=1
import csv, json, os, sys
out, model, device = sys.argv[1:4]
parts = {r["part"]: r for r in csv.DictReader(open(os.path.join(out, "times.tsv")), delimiter="\t")}
def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
paper = read(os.path.join(out, "paper", "summary.json"))
bench = read(os.path.join(out, "bench.json"))
summary = {"model": model, "device": device, "parts": parts,
           "paper_summary": os.path.join(out, "paper", "summary.json") if paper else None,
           "paper_wall_time_s": (paper or {}).get("wall_time_s"), "paper_timings": (paper or {}).get("timings"),
           "bench_table": (bench or {}).get("table_markdown"), "machine": open(os.path.join(out, "machine.txt")).read()}
tmp = os.path.join(out, "summary.json.tmp")
with open(tmp, "w") as f:
    json.dump(summary, f, indent=2)
os.replace(tmp, os.path.join(out, "summary.json"))
print(f"wrote {os.path.join(out, 'summary.json')}")
PY
cat "$OUT/times.tsv"
exit "$FAILED"
