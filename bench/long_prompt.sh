#!/usr/bin/env bash
# bench/long_prompt.sh: a long prompt joining running streams (issue #16's goal: the largest gap
# between two tokens of any running stream stays under 250 ms; the long request's TTFT reported).
#
#   bench/long_prompt.sh [--model FILE] [--reps R] [--streams N] [--prompt P] [--threads T]
#
# R times: `locallm bench FILE --parallel N --long-prompt P -c 8192 -t T --json` (N streams
# generating while a P-token prompt is prefilled in chunks between their steps). Prints each run,
# the median and the worst, with the CPU and the read bandwidth of bench/membw.c measured in the
# same run, and keeps the JSON lines in $dir/runs/long-prompt-<date>/. The model defaults to the
# synthetic Qwen2.5-0.5B Q4_0 (N 7, P 3900, T 2, R 5).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
model=$dir/qwen2.5-0.5b-Q4_0.gguf reps=5 streams=7 prompt=3900 threads=2
while [ $# -gt 0 ]; do
    case $1 in
        --model) model=$2; shift ;;
        --reps) reps=$2; shift ;;
        --streams) streams=$2; shift ;;
        --prompt) prompt=$2; shift ;;
        --threads) threads=$2; shift ;;
        -h|--help) bench_help "$0"; exit 0 ;;
        *) bench_bad_option "$1" ;;
    esac
    shift
done
mkdir -p "$dir"
bench_gguf "$root" qwen2.5-0.5b Q4_0 "$model"
bench_locallm "$root" "$dir" "$threads"
runs=$dir/runs/long-prompt-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$runs"
bench_machine "$root" "$dir" "$threads" "$runs/machine.json"
for r in $(seq 1 "$reps"); do
    log "run $r/$reps"
    "$LOCALLM" bench "$model" --parallel "$streams" --long-prompt "$prompt" -c 8192 -t "$threads" --json |
        tail -n 1 >>"$runs/runs.jsonl"
done
python3 - "$runs/runs.jsonl" "$runs/machine.json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
m = json.load(open(sys.argv[2]))
print("%s, read bandwidth %.1f GB/s, %d threads" % (m["cpu"], m["read_gb_s"], m["threads"]))
for r in rows:
    print("largest gap %.1f ms, long request TTFT %.0f ms" % (r["max_gap_ms"], r["long_ttft_ms"]))
g = [r["max_gap_ms"] for r in rows]
t = [r["long_ttft_ms"] for r in rows]
print("largest gap: median %.1f ms, worst %.1f ms; TTFT median %.0f ms" % (statistics.median(g), max(g), statistics.median(t)))
print("raw JSON lines: %s" % sys.argv[1])
PY
