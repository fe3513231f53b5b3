#!/usr/bin/env bash
# bench/scaling.sh: locallm's speed against the number of threads, on one machine.
#
#   bench/scaling.sh [--threads "1 2 4 8 16"] [--models "llama-3.2-1b:Q4_0 .."] [--reps R]
#
# For each synthetic file (tools/make_synthetic_gguf.py, written to $LOCALLM_BENCH_DIR, default
# /tmp/locallm-bench) and each thread count, runs `locallm bench -p 128,512 -n 64 -r R --json` and
# the read bandwidth of bench/membw.c at that thread count, and prints a markdown table: decode
# tok/s with its floor (file bytes / bandwidth) and prefill tok/s, with the speed-up over the
# first thread count. No peer: llama.cpp's published figures for the machine go next to it by hand
# (bench/RESULTS.md). Builds locallm (Release) unless $LOCALLM names a binary.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
threads="1 2 4 8 16"
models="llama-3.2-1b:Q4_0"
reps=3

while [ $# -gt 0 ]; do
    case $1 in
        --threads) threads=$2; shift ;;
        --models) models=$2; shift ;;
        --reps) reps=$2; shift ;;
        -h|--help) bench_help "$0"; exit 0 ;;
        *) bench_bad_option "$1" ;;
    esac
    shift
done

bench_python
mkdir -p "$dir"
bench_locallm "$root" "$dir" "$(nproc)"
bench_membw "$root" "$dir"

runs=$dir/scaling/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$runs"
for t in $threads; do
    "$dir/membw" "$t" 1024 9 2>/dev/null >"$runs/bw-$t.txt"
    log "read bandwidth with $t threads: $(cat "$runs/bw-$t.txt") GB/s"
done
for m in $models; do
    preset=${m%%:*} type=${m##*:}
    f=$dir/$preset-$type.gguf
    bench_gguf "$root" "$preset" "$type" "$f"
    for t in $threads; do
        log "$preset $type: $t threads"
        "$LOCALLM" bench "$f" -p 128,512 -n 64 -t "$t" -r "$reps" --json >"$runs/$preset-$type-t$t.json"
    done
done

"$python" - "$runs" "$dir" "$models" "$threads" "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')" <<'EOF'
import json, os, sys
runs, d, models, threads, cpu = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
print("CPU: %s, %d logical cores" % (cpu or "?", os.cpu_count()))
print()
print("| file | threads | read GB/s | decode tok/s (floor) | x | prefill P=128 tok/s | x | prefill P=512 tok/s | x |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for m in models:
    name = m.replace(":", "-")
    size = os.path.getsize(os.path.join(d, name + ".gguf"))
    base = None
    for t in threads:
        with open(os.path.join(runs, "%s-t%s.json" % (name, t))) as f:
            r = json.load(f)
        with open(os.path.join(runs, "bw-%s.txt" % t)) as f:
            bw = float(f.read().strip())
        dec = r["decode"]["tok_s"]
        p = {x["tokens"]: x["tok_s"] for x in r["prefill"]}
        cur = (dec, p.get(128), p.get(512))
        base = base or cur
        print("| %s | %s | %.1f | %.1f (%.1f) | %.2f | %.1f | %.2f | %.1f | %.2f |" % (
            name, t, bw, dec, bw * 1e9 / size, dec / base[0], cur[1], cur[1] / base[1], cur[2], cur[2] / base[2]))
print()
print("Medians of the repetitions of each `locallm bench` run; x = speed-up over %s thread(s)." % threads[0])
EOF
