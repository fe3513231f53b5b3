#!/usr/bin/env bash
# bench/contention.sh: decode speed while other processes keep cores busy (speech recognition and
# TTS beside the model), default settings against fixed thread counts.
#
#   bench/contention.sh [--model FILE] [--reps R] [--busy "0 1 2"] [--threads "1 2"] [--gen G]
#
# For each number B of busy processes (each a spinning loop, started before and killed after the
# runs), alternately and R times: `locallm bench -n G` with the default threads (one per core:
# the pool lets go of the threads the OS keeps preempting) and with each fixed -t of --threads.
# Prints the medians and the default's fraction of the best fixed count, and keeps the JSON
# lines in $dir/runs/contention-<date>/. The model defaults to the synthetic Qwen2.5-0.5B Q4_0.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
model=$dir/qwen2.5-0.5b-Q4_0.gguf reps=3 busy="0 1 2" fixed="1 2" gen=64
while [ $# -gt 0 ]; do
    case $1 in
        --model) model=$2; shift ;;
        --reps) reps=$2; shift ;;
        --busy) busy=$2; shift ;;
        --threads) fixed=$2; shift ;;
        --gen) gen=$2; shift ;;
        -h|--help) bench_help "$0"; exit 0 ;;
        *) bench_bad_option "$1" ;;
    esac
    shift
done
mkdir -p "$dir"
bench_gguf "$root" qwen2.5-0.5b Q4_0 "$model"
bench_locallm "$root" "$dir" 2
cat >"$dir/spin.c" <<'C'
int main(void) { volatile unsigned long x = 0; for (;;) x++; }
C
cc -O1 "$dir/spin.c" -o "$dir/spin"
runs=$dir/runs/contention-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$runs"
bench_machine "$root" "$dir" "$(nproc)" "$runs/machine.json"
pids=()
stop_busy() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; pids=(); }
trap stop_busy EXIT
for b in $busy; do
    stop_busy
    for _ in $(seq 1 "$b"); do "$dir/spin" & pids+=($!); done
    sleep 1
    for r in $(seq 1 "$reps"); do
        log "$b busy: round $r/$reps"
        "$LOCALLM" bench "$model" -p 8 -n "$gen" -r 1 --json | sed "s/^{/{\"busy\":$b,\"setting\":\"default\",/" >>"$runs/runs.jsonl"
        for t in $fixed; do
            "$LOCALLM" bench "$model" -p 8 -n "$gen" -t "$t" -r 1 --json | sed "s/^{/{\"busy\":$b,\"setting\":\"t$t\",/" >>"$runs/runs.jsonl"
        done
    done
done
stop_busy
python3 - "$runs/runs.jsonl" "$busy" "$fixed" "$(nproc)" "$runs/machine.json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
busy, fixed, cores = sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
m = json.load(open(sys.argv[5]))
print("%s, read bandwidth %.1f GB/s" % (m["cpu"], m["read_gb_s"]))
print("decode tok/s, medians, on %s cores (default: one thread per core)" % cores)
print("| busy processes | default | " + " | ".join("-t " + t for t in fixed) + " | default / best fixed |")
print("| --- | --- | " + " | ".join("---" for _ in fixed) + " | --- |")
for b in busy:
    get = lambda s: statistics.median([r["decode"]["tok_s"] for r in rows if r["busy"] == int(b) and r["setting"] == s])
    d = get("default")
    f = [get("t" + t) for t in fixed]
    print("| %s | %.1f | %s | %.0f %% |" % (b, d, " | ".join("%.1f" % x for x in f), 100 * d / max(f)))
print("\nraw JSON lines: %s" % sys.argv[1])
PY
