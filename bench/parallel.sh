#!/usr/bin/env bash
# bench/parallel.sh: concurrent conversations on one model, locallm against llama.cpp.
#
#   bench/parallel.sh [--reps R] [--threads T] [--streams "1 2 4 8 16"] [--gen G] [--prompt P]
#                     [--models "qwen2.5-0.5b:Q4_0 llama-3.2-1b:Q4_0"] [--base REV | --base-bin PATH]
#
# For each synthetic file (tools/make_synthetic_gguf.py, into $LOCALLM_BENCH_DIR, default
# /tmp/locallm-bench) and each stream count N, alternately and R times:
#   - `locallm bench --parallel N` (N sessions on one engine, each prefilling P random tokens and
#     generating G tokens greedily, EOS ignored),
#   - bench/llamacpp_batch.mjs --sequences N (node-llama-cpp 3.21.1: N sequences in one context,
#     their tokens batched into shared llama_decode calls), same P, G and threads,
#   - with --base REV, also the locallm of git revision REV (built into the bench dir) at N = 1:
#     "one stream before the change" (--base-bin: that locallm already built, at PATH).
# Prints a markdown table of medians (aggregate decode tok/s, per-stream tok/s, TTFT p50) with the
# read bandwidth of bench/membw.c, and keeps the raw JSON lines in $dir/runs/<date>/ (copy them
# into bench/runs/ to keep them with the results).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
models="qwen2.5-0.5b:Q4_0 llama-3.2-1b:Q4_0"
reps=3 threads=2 streams="1 2 4 8 16" gen=128 prompt=32 base= base_bin=
while [ $# -gt 0 ]; do
    case $1 in
        --reps) reps=$2; shift ;;
        --threads) threads=$2; shift ;;
        --streams) streams=$2; shift ;;
        --gen) gen=$2; shift ;;
        --prompt) prompt=$2; shift ;;
        --models) models=$2; shift ;;
        --base) base=$2; shift ;;
        --base-bin) base_bin=$2; shift ;;
        -h|--help) bench_help "$0"; exit 0 ;;
        *) bench_bad_option "$1" ;;
    esac
    shift
done
bench_python
command -v node >/dev/null || { echo "parallel.sh: needs node for the llama.cpp peer" >&2; exit 1; }
mkdir -p "$dir"
bench_peer "$here"
bench_locallm "$root" "$dir" "$threads"
BASE_BIN=$base_bin
if [ -n "$base" ]; then
    rm -rf "$dir/base-src"
    git -C "$root" worktree add --detach -f "$dir/base-src" "$base" >/dev/null 2>&1 ||
        { mkdir -p "$dir/base-src" && git -C "$root" archive "$base" | tar -x -C "$dir/base-src"; }
    cmake -S "$dir/base-src" -B "$dir/base-build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$dir/base-build" -j"$threads" --target locallm >/dev/null
    BASE_BIN=$dir/base-build/locallm
fi
bw=$(bench_bandwidth "$root" "$dir" "$threads")
log "read bandwidth with $threads threads: $bw GB/s"
runs=$dir/runs/parallel-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$runs"
for m in $models; do
    preset=${m%%:*} type=${m##*:}
    f=$dir/$preset-$type.gguf
    bench_gguf "$root" "$preset" "$type" "$f"
    for r in $(seq 1 "$reps"); do
        for n in $streams; do
            log "$preset $type: $n streams, round $r/$reps"
            "$LOCALLM" bench "$f" --parallel "$n" --prompt-tokens "$prompt" -n "$gen" -t "$threads" -r 1 --json \
                >>"$runs/$preset-$type.locallm.jsonl"
            node "$here/llamacpp_batch.mjs" "$f" --sequences "$n" --threads "$threads" --prompt-tokens "$prompt" \
                --gen-tokens "$gen" >>"$runs/$preset-$type.llamacpp.jsonl"
            if [ -n "$BASE_BIN" ] && [ "$n" = 1 ]; then
                "$BASE_BIN" bench "$f" -p "$prompt" -n "$gen" -t "$threads" -r 1 --json >>"$runs/$preset-$type.base.jsonl"
                "$LOCALLM" bench "$f" -p "$prompt" -n "$gen" -t "$threads" -r 1 --json >>"$runs/$preset-$type.new.jsonl"
            fi
        done
    done
done
"$python" - "$runs" "$bw" "$models" "$streams" "$threads" <<'PY'
import json, os, statistics, sys
runs, bw, models, streams, threads = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
def load(p):
    if not os.path.exists(p): return []
    return [json.loads(l) for l in open(p) if l.strip()]
def med(v): return statistics.median(v) if v else None
print("read bandwidth %.1f GB/s, %s threads; aggregate decode tok/s (per stream; TTFT p50 ms)" % (bw, threads))
for m in models:
    name = m.replace(":", "-")
    L, C, B, N = (load(os.path.join(runs, name + s)) for s in (".locallm.jsonl", ".llamacpp.jsonl", ".base.jsonl", ".new.jsonl"))
    print("\n%s\n" % name)
    hdr = "| streams | locallm | llama.cpp | ratio |" + (" locallm / its 1 stream |" if L else "")
    print(hdr)
    print("| --- | --- | --- | --- | --- |")
    one = med([r["decode_tok_s"] for r in L if r["sequences"] == 1])
    for n in streams:
        n = int(n)
        l = [r for r in L if r["sequences"] == n]
        c = [r for r in C if r["sequences"] == n]
        lt, ct = med([r["decode_tok_s"] for r in l]), med([r["decode_tok_s"] for r in c])
        lp, cp = med([r["per_stream_tok_s"] for r in l]), med([r["per_stream_tok_s"] for r in c])
        lf, cf = med([r["ttft_ms_p50"] for r in l]), med([r["ttft_ms_p50"] for r in c])
        print("| %d | %.1f (%.1f; %.0f) | %.1f (%.1f; %.0f) | %.2fx | %.2fx |" % (n, lt, lp, lf, ct, cp, cf, lt / ct, lt / one))
    if B:
        bd = med([r["decode"]["tok_s"] for r in B])
        nd = med([r["decode"]["tok_s"] for r in N])
        print("\none stream (locallm bench -n %s, alternating): before the change %.1f tok/s, after %.1f (%.2fx); "
              "aggregate at 4 streams %.2fx the one stream before, at 8 streams %.2fx" % (
              B[0]["decode"]["tokens"], bd, nd, nd / bd,
              med([r["decode_tok_s"] for r in L if r["sequences"] == 4] or [0]) / bd,
              med([r["decode_tok_s"] for r in L if r["sequences"] == 8] or [0]) / bd))
print("\nraw JSON lines: %s" % runs)
PY
