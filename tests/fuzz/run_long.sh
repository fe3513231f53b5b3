#!/usr/bin/env bash
# tests/fuzz/run_long.sh: long libFuzzer runs of every fuzz binary in a folder, all in parallel.
#
#   run_long.sh TARGET_DIR SECONDS [OUT_DIR]
#
# TARGET_DIR holds fuzz_<name> binaries (built by `make fuzz-bundle`), lib/ with the shared
# libraries they need (used through LD_LIBRARY_PATH, so the machine running them needs only
# glibc) and corpus/<name>/ seed corpora. Each target runs for SECONDS with -fork=FORK jobs
# (default: cores / targets, at least 1) and keeps going after a finding (-ignore_crashes), so
# one crash does not end the run. OUT_DIR (default TARGET_DIR/out) gets per target:
#   <name>/log.txt        libFuzzer's output
#   <name>/corpus/        inputs it found (the seeds stay untouched)
#   <name>/artifacts/     crash-*, leak-*, timeout-*, oom-* inputs
#   <name>/findings.txt   the sanitizer summary of each artifact, replayed once
# findings.tar.gz and corpus.tar.gz holding all of the above, and summary.txt with executions, exec/s and findings per target. Exit status: 0 when no target
# has a finding, 1 otherwise.
set -u
if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET_DIR SECONDS [OUT_DIR]" >&2
    exit 2
fi
DIR=$(cd "$1" && pwd) || exit 2
SECS=$2
OUT=${3:-$DIR/out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export LD_LIBRARY_PATH="$DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
MAX_LEN=${MAX_LEN:-65536}

targets=()
for b in "$DIR"/fuzz_*; do
    [ -x "$b" ] && [ -f "$b" ] && targets+=("$(basename "$b")")
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "run_long: no fuzz_* binaries in $DIR" >&2
    exit 2
fi
cores=$(nproc 2>/dev/null || echo 2)
FORK=${FORK:-$(( cores / ${#targets[@]} ))}
[ "$FORK" -lt 1 ] && FORK=1
echo "run_long: ${#targets[@]} targets, $SECS s each, -fork=$FORK, $cores cores, output in $OUT"

# A missing shared library shows here, before hours of nothing.
for t in "${targets[@]}"; do
    if ! "$DIR/$t" -runs=0 >/dev/null 2>"$OUT/$t.check"; then
        echo "run_long: $t does not start:" >&2
        tail -5 "$OUT/$t.check" >&2
        exit 2
    fi
    rm -f "$OUT/$t.check"
done

pids=()
for t in "${targets[@]}"; do
    n=${t#fuzz_}
    w="$OUT/$n"
    mkdir -p "$w/corpus" "$w/artifacts"
    rm -f "$w/kinds.tsv"
    seeds="$DIR/corpus/$n"
    [ -d "$seeds" ] || seeds=
    # fork mode writes its jobs' logs in the current folder: run each target in its own.
    ( cd "$w" && exec timeout -k 30 $(( SECS + 300 )) "$DIR/$t" \
        -fork="$FORK" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$SECS" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$w/artifacts/" \
        "$w/corpus" $seeds >"$w/log.txt" 2>&1 ) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

{
    printf '%-16s %14s %10s %8s %s\n' target executions exec/s findings corpus
    for t in "${targets[@]}"; do
        n=${t#fuzz_}
        w="$OUT/$n"
        # fork mode: the last '#N: cov: ... exec/s: E' line; single process: the final stats.
        execs=$(grep -E '^#[0-9]+: cov:' "$w/log.txt" | tail -1 | sed -E 's/^#([0-9]+):.*/\1/')
        rate=$(grep -E '^#[0-9]+: cov:' "$w/log.txt" | tail -1 | sed -E 's/.*exec\/s:? ([0-9]+).*/\1/')
        if [ -z "$execs" ]; then
            execs=$(grep 'stat::number_of_executed_units' "$w/log.txt" | tail -1 | awk '{print $2}')
            rate=$(grep 'stat::average_exec_per_sec' "$w/log.txt" | tail -1 | awk '{print $2}')
        fi
        : >"$w/findings.txt"
        nf=0
        for a in "$w"/artifacts/*; do
            [ -f "$a" ] || continue
            nf=$((nf + 1))
            r=$(timeout 60 "$DIR/$t" -timeout=10 -rss_limit_mb=4096 "$a" 2>&1)
            sum=$(printf '%s\n' "$r" | grep -E 'SUMMARY: |ERROR: libFuzzer' | head -1)
            printf '== %s\n%s\n%s\n' "$(basename "$a")" "${sum:-no SUMMARY line}" \
                "$(printf '%s\n' "$r" | grep -E 'ERROR: |runtime error|^ *#[0-9]+ 0x' | head -16)" >>"$w/findings.txt"
            printf '%s\t%s\n' "${sum:-no SUMMARY line}" "$(basename "$a")" >>"$w/kinds.tsv"
        done
        printf '%-16s %14s %10s %8s %s\n' "$n" "${execs:-?}" "${rate:-?}" "$nf" "$(ls "$w/corpus" | wc -l)"
    done
} | tee "$OUT/summary.txt"
total_findings=$(awk 'NR > 1 { s += $4 } END { print s + 0 }' "$OUT/summary.txt")
# One line per distinct finding (same SUMMARY), with how many artifacts share it and one of them;
# the stacks are in <target>/findings.txt (module+offset frames: symbolize them against the
# unstripped binaries of the build folder, e.g. llvm-symbolizer --obj=build-fuzz/fuzz_X 0xOFFSET).
for t in "${targets[@]}"; do
    k="$OUT/${t#fuzz_}/kinds.tsv"
    if [ -s "$k" ]; then
        echo "---- ${t#fuzz_}: distinct findings (count, summary, example artifact)"
        sort "$k" | awk -F'\t' '{ n[$1]++; ex[$1] = $2 } END { for (s in n) printf "%6d  %s\n        %s\n", n[s], s, ex[s] }'
    fi
done
# Two archives, for machines that copy back only a few files: the findings and the grown corpora.
( cd "$OUT" && tar czf findings.tar.gz */artifacts */findings.txt */log.txt 2>/dev/null
  tar czf corpus.tar.gz */corpus 2>/dev/null )
echo "run_long: $total_findings findings (archives: $OUT/findings.tar.gz, $OUT/corpus.tar.gz)"
[ "$total_findings" -eq 0 ]
