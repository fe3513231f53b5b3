#!/usr/bin/env bash
# bench/mlx.sh: locallm on MLX-quantized folders against the GGUF file of the same model shape.
#
#   bench/mlx.sh [--quick] [--reps R] [--models "qwen2.5-0.5b:4 llama-3.2-1b:4 qwen2.5-0.5b:8 .."]
#                [--threads T] [--prompts 128] [--gen 64]
#
# - writes synthetic models of real shapes with random weights into $LOCALLM_BENCH_DIR (default
#   /tmp/locallm-bench), never into the repository: MLX folders (tools/make_synthetic_mlx.py,
#   group size 64, BF16 scales and biases, as mlx-community's -4bit/-8bit) and GGUF files
#   (tools/make_synthetic_gguf.py; MLX 4-bit is compared with Q4_0, 8-bit with Q8_0: both store
#   4.5 resp. 8.5 bits per weight);
# - builds locallm (Release) into $LOCALLM_BENCH_DIR/build unless $LOCALLM names a binary;
# - runs `locallm bench` on the MLX folder and on the GGUF file ALTERNATELY, one repetition per
#   process, R rounds (same threads and prompt length), and prints a markdown table of medians
#   with the ratio MLX / GGUF (the goal is >= 0.90 for decode).
# --quick: Qwen2.5-0.5B 4-bit only, 3 rounds of 32 decoded tokens (about 1 minute on 2 idle cores).
# Raw JSON lines are kept in $LOCALLM_BENCH_DIR/runs-mlx/<date>/.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
models="qwen2.5-0.5b:4 qwen2.5-0.5b:8 llama-3.2-1b:4 llama-3.2-1b:8"
reps=5
threads=2
prompts=128
gen=64

while [ $# -gt 0 ]; do
    case $1 in
        --quick) models="qwen2.5-0.5b:4"; reps=3; gen=32 ;;
        --reps) reps=$2; shift ;;
        --models) models=$2; shift ;;
        --threads) threads=$2; shift ;;
        --prompts) prompts=$2; shift ;;
        --gen) gen=$2; shift ;;
        -h|--help) bench_help "$0"; exit 0 ;;
        *) bench_bad_option "$1" ;;
    esac
    shift
done

# the GGUF generator needs numpy; the MLX one uses it when present
bench_python

mkdir -p "$dir"

bench_locallm "$root" "$dir" "$threads"

tok_for() {
    case $1 in
        qwen*) echo "$root/tests/data/tokenizers/qwen2" ;;
        llama-3*) echo "$root/tests/data/tokenizers/llama3" ;;
        *) echo "" ;;
    esac
}

runs=$dir/runs-mlx/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$runs"
for m in $models; do
    preset=${m%%:*} bits=${m##*:}
    case $bits in 4) gtype=Q4_0 ;; 8) gtype=Q8_0 ;; *) log "mlx.sh: bits must be 4 or 8 ($m)"; exit 2 ;; esac
    mdir=$dir/$preset-mlx$bits
    gguf=$dir/$preset-$gtype.gguf
    if [ ! -f "$mdir/config.json" ]; then
        tok=$(tok_for "$preset")
        "$python" "$root/tools/make_synthetic_mlx.py" --preset "$preset" --bits "$bits" --out "$mdir" \
            ${tok:+--tokenizer "$tok"}
    fi
    bench_gguf "$root" "$preset" "$gtype" "$gguf"
    for r in $(seq 1 "$reps"); do
        log "$preset MLX $bits-bit vs $gtype: round $r/$reps"
        "$LOCALLM" bench "$mdir" -p "$prompts" -n "$gen" -t "$threads" -r 1 --json >>"$runs/$preset-mlx$bits.jsonl"
        "$LOCALLM" bench "$gguf" -p "$prompts" -n "$gen" -t "$threads" -r 1 --json >>"$runs/$preset-$gtype.jsonl"
    done
done

"$python" - "$runs" "$models" "$dir" "$prompts" "$threads" <<'EOF'
import json, os, statistics, sys
runs, models, d, p, threads = sys.argv[1], sys.argv[2].split(), sys.argv[3], int(sys.argv[4].split(",")[0]), sys.argv[5]

def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]

def med(rows, get):
    v = [x for x in (get(r) for r in rows) if x is not None]
    return statistics.median(v) if v else None

def size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
    return os.path.getsize(path)

def cell(a, b, fmt="%.1f"):
    if a is None or b is None:
        return (fmt % a if a is not None else "–") + " / " + (fmt % b if b is not None else "–")
    return "%s / %s (%.2f)" % (fmt % a, fmt % b, a / b)

print("| shape | MLX / GGUF | MiB | decode tok/s | prefill tok/s P=%d | peak RSS MiB |" % p)
print("| --- | --- | --- | --- | --- | --- |")
for m in models:
    preset, bits = m.split(":")
    gt = "Q4_0" if bits == "4" else "Q8_0"
    M, G = load(os.path.join(runs, "%s-mlx%s.jsonl" % (preset, bits))), load(os.path.join(runs, "%s-%s.jsonl" % (preset, gt)))
    pre = lambda r: next((x["tok_s"] for x in r["prefill"] if x["tokens"] == p), None)
    print("| %s | MLX %s-bit g64 / %s | %.0f / %.0f | %s | %s | %s |" % (
        preset, bits, gt, size(os.path.join(d, "%s-mlx%s" % (preset, bits))) / 2**20,
        size(os.path.join(d, "%s-%s.gguf" % (preset, gt))) / 2**20,
        cell(med(M, lambda r: r["decode"]["tok_s"]), med(G, lambda r: r["decode"]["tok_s"])),
        cell(med(M, pre), med(G, pre)),
        cell(med(M, lambda r: r["peak_rss_mb"]), med(G, lambda r: r["peak_rss_mb"]), "%.0f")))
print()
print("Cells are MLX / GGUF (ratio MLX/GGUF), medians of %d alternating round(s), %s threads." % (
    len(load(os.path.join(runs, "%s-mlx%s.jsonl" % tuple(models[0].split(":"))))), threads))
print("Raw runs: %s" % runs)
EOF
