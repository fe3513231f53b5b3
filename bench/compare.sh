#!/usr/bin/env bash
# bench/compare.sh: locallm against llama.cpp on the same GGUF files, side by side.
#
#   bench/compare.sh [--quick] [--reps R] [--models "qwen2.5-0.5b:Q4_0 llama-3.2-1b:Q8_0 .."]
#                    [--threads T] [--prompts 128,512] [--decode-after 8] [--locallm-prompts 128]
#
# - writes synthetic models of real shapes (tools/make_synthetic_gguf.py, random weights) into
#   $LOCALLM_BENCH_DIR (default /tmp/locallm-bench), never into the repository;
# - installs the peer, node-llama-cpp 3.21.1 (llama.cpp's prebuilt CPU build), into bench/peer/
#   (git-ignored) from bench/peer.package.json and its lock;
# - builds locallm (Release) into $LOCALLM_BENCH_DIR/build unless $LOCALLM names a binary;
# - for each file runs `locallm bench` and bench/llamacpp_bench.mjs ALTERNATELY, one repetition
#   per process, R rounds (same threads, prompt lengths 128 and 512, 64 decoded tokens), and
#   prints a markdown table of medians and locallm/llama.cpp ratios, with the decode floor
#   (file bytes / read bandwidth of bench/membw.c with the same threads).
# --models takes preset:type pairs; presets qwen2.5-0.5b, llama-3.2-1b, llama-3.2-3b; types Q4_0, Q8_0,
# F16 and Q4_K_M (llama-quantize's mix of Q4_K/Q6_K, with its Q5_0/Q8_0 fallbacks on 896-wide rows).
# --prompts: the prefill lengths (a column each; TTFT is the first's). --decode-after N: both
# engines time decode after an N-token prompt (default 8; 4096 measures decode at that context).
# --quick: Qwen2.5-0.5B-shaped Q4_0 only, one round. --locallm-prompts: shorter prompt lengths for
# locallm only (for slow configurations; the table says so). Raw JSON lines are kept in
# $LOCALLM_BENCH_DIR/runs/<date>/.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
models="qwen2.5-0.5b:Q4_0 qwen2.5-0.5b:Q8_0 llama-3.2-1b:Q4_0 llama-3.2-1b:Q8_0"
reps=3
threads=2
prompts=128,512
gen=64
after=8
lprompts=

while [ $# -gt 0 ]; do
    case $1 in
        --quick) models="qwen2.5-0.5b:Q4_0"; reps=1 ;;
        --reps) reps=$2; shift ;;
        --models) models=$2; shift ;;
        --threads) threads=$2; shift ;;
        --locallm-prompts) lprompts=$2; shift ;;
        --prompts) prompts=$2; shift ;;
        --decode-after) after=$2; shift ;;
        -h|--help) bench_help "$0"; exit 0 ;;
        *) bench_bad_option "$1" ;;
    esac
    shift
done
lprompts=${lprompts:-$prompts}

# a python3 with numpy (the generator needs it; the summary only needs json)
bench_python
command -v node >/dev/null || { echo "compare.sh: needs node and npm for the llama.cpp peer" >&2; exit 1; }

mkdir -p "$dir"

# 1. the peer
bench_peer "$here"

# 2. locallm
bench_locallm "$root" "$dir" "$threads"

# 3. memory bandwidth
bw=$(bench_bandwidth "$root" "$dir" "$threads")
log "read bandwidth with $threads threads: $bw GB/s (median of 9 passes)"

# 4. files and runs
runs=$dir/runs/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$runs"
for m in $models; do
    preset=${m%%:*} type=${m##*:}
    f=$dir/$preset-$type.gguf
    bench_gguf "$root" "$preset" "$type" "$f"
    for r in $(seq 1 "$reps"); do
        log "$preset $type: round $r/$reps"
        "$LOCALLM" bench "$f" -p "$lprompts" -n "$gen" --decode-after "$after" -t "$threads" -r 1 --json >>"$runs/$preset-$type.locallm.jsonl"
        node "$here/llamacpp_bench.mjs" "$f" -p "$prompts" -n "$gen" --decode-after "$after" -t "$threads" -r 1 >>"$runs/$preset-$type.llamacpp.jsonl"
    done
done

# 5. the table
"$python" - "$runs" "$bw" "$models" "$dir" "$prompts" "$after" <<'EOF'
import json, os, statistics, sys
runs, bw, models, d = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
plens, after = [int(p) for p in sys.argv[5].split(",")], int(sys.argv[6])

def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]

def med(rows, get):
    v = [x for x in (get(r) for r in rows) if x is not None]
    return statistics.median(v) if v else None

def prefill(rows, p, key):
    return med(rows, lambda r: next((x[key] for x in r["prefill"] if x["tokens"] == p), None))

def cell(a, b, fmt="%.1f"):
    if a is None or b is None:
        return (fmt % a if a is not None else "–") + " / " + (fmt % b if b is not None else "–")
    return "%s / %s (%.2fx)" % (fmt % a, fmt % b, a / b)

print("| file | MiB | decode tok/s after %d (floor) | %s | TTFT P=%d ms | peak RSS MiB |" % (
    after, " | ".join("prefill tok/s P=%d" % p for p in plens), plens[0]))
print("| --- | --- | --- | %s--- | --- |" % ("--- | " * len(plens)))
for m in models:
    name = m.replace(":", "-")
    L, C = load(os.path.join(runs, name + ".locallm.jsonl")), load(os.path.join(runs, name + ".llamacpp.jsonl"))
    size = os.path.getsize(os.path.join(d, name + ".gguf"))
    floor = bw * 1e9 / size
    print("| %s | %.0f | %s (%.1f) | %s | %s | %s |" % (
        name, size / 2**20,
        cell(med(L, lambda r: r["decode"]["tok_s"]), med(C, lambda r: r["decode"]["tok_s"])), floor,
        " | ".join(cell(prefill(L, p, "tok_s"), prefill(C, p, "tok_s")) for p in plens),
        cell(prefill(L, plens[0], "ttft_ms"), prefill(C, plens[0], "ttft_ms"), "%.0f"),
        cell(med(L, lambda r: r["peak_rss_mb"]), med(C, lambda r: r["peak_rss_mb"]), "%.0f")))
print()
print("Cells are locallm / llama.cpp (ratio locallm/llama.cpp), medians of %d round(s); floor = file bytes / %.1f GB/s." % (
    len(load(os.path.join(runs, models[0].replace(":", "-") + ".locallm.jsonl"))), bw))
print("Raw runs: %s" % runs)
EOF
