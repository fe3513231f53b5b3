#!/usr/bin/env bash
# tests/cuda/run.sh: the CUDA backend's GPU tests and benchmarks, on a machine with an NVIDIA GPU
# (CI has none: there `make test` only builds the backend and runs test_device). Stages, each
# within one 10-minute command on an H100, each ending with a summary line:
#   build     cmake -DLM_CUDA=ON and the lmcuda and test_device programs
#   gen       synthetic benchmark files of real shapes (tools/make_synthetic_*.py, about 3.5 GB)
#   test      lmcuda kernels, fixtures, batch and errors, and test_device
#   bench     lmcuda bench on the generated files
#   profile   Nsight Compute: time and DRAM throughput of every kernel of a decode step and of a
#             512-token prefill of the 1B file, summed by kernel
#   sanitize  compute-sanitizer memcheck, racecheck and synccheck on a subset
# Usage: tests/cuda/run.sh STAGE... (or all). Environment: BUILD (default build-cuda), LMCUDA
# and TEST_DEVICE (prebuilt programs: build is skipped), DATA and MODELS (the fixture folders,
# default tests/data and models), BENCH_DIR (default /tmp/locallm-bench), LOGS (copies of each
# stage's output, default $BUILD/cuda-logs), STEP_TIMEOUT (seconds per step, default 900),
# DEADLINE_AT (epoch seconds: no step runs past it; one that cannot start is noted NOT RUN).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-cuda}
LMCUDA=${LMCUDA:-$BUILD/lmcuda}
TEST_DEVICE=${TEST_DEVICE:-$BUILD/test_device}
DATA=${DATA:-tests/data}
MODELS=${MODELS:-models}
BENCH_DIR=${BENCH_DIR:-/tmp/locallm-bench}
LOGS=${LOGS:-$BUILD/cuda-logs}
mkdir -p "$LOGS"
SUMMARY=()

note() { SUMMARY+=("$1"); echo "== $1"; }

# run NAME CMD...: the command's output to the terminal and $LOGS/NAME.log; notes ok or FAILED
run() {
    local name=$1
    shift
    local t0=$SECONDS lim=${STEP_TIMEOUT:-900}
    if [ -n "${DEADLINE_AT:-}" ]; then
        local left=$((DEADLINE_AT - $(date +%s)))
        [ "$left" -lt "$lim" ] && lim=$left
        if [ "$lim" -lt 10 ]; then
            note "$name: NOT RUN (DEADLINE_AT reached)"
            FAILED=1
            return
        fi
    fi
    if timeout "$lim" "$@" 2>&1 | tee "$LOGS/$name.log"; then
        note "$name: ok ($((SECONDS - t0)) s)"
    else
        note "$name: FAILED ($((SECONDS - t0)) s; log $LOGS/$name.log)"
        FAILED=1
    fi
}

FAILED=0

stage_build() {
    if [ -x "$LMCUDA" ] && [ -n "${PREBUILT:-}" ]; then
        note "build: using the prebuilt $LMCUDA"
        return
    fi
    run build bash -c "cmake -S . -B '$BUILD' -DCMAKE_BUILD_TYPE=Release -DLM_CUDA=ON >/dev/null &&
        cmake --build '$BUILD' -j '$(nproc)' --target lmcuda test_device locallm"
}

BENCH_FILES=(qwen2.5-0.5b-q4_0.gguf llama-3.2-1b-q4_0.gguf llama-3.2-3b-q4_0.gguf llama-3.2-1b-mlx4)

stage_gen() {
    mkdir -p "$BENCH_DIR"
    local p
    for p in qwen2.5-0.5b llama-3.2-1b llama-3.2-3b; do
        [ -s "$BENCH_DIR/$p-q4_0.gguf" ] ||
            run "gen-$p" python3 tools/make_synthetic_gguf.py --preset "$p" --type Q4_0 --out "$BENCH_DIR/$p-q4_0.gguf"
    done
    [ -d "$BENCH_DIR/llama-3.2-1b-mlx4" ] ||
        run gen-llama-3.2-1b-mlx4 python3 tools/make_synthetic_mlx.py --preset llama-3.2-1b --bits 4 --group-size 64 \
            --out "$BENCH_DIR/llama-3.2-1b-mlx4"
    note "gen: $(du -sh "$BENCH_DIR" | cut -f1) in $BENCH_DIR"
}

stage_test() {
    run kernels "$LMCUDA" kernels
    run fixtures "$LMCUDA" fixtures "$DATA" "$MODELS"
    run batch "$LMCUDA" batch "$DATA"
    run errors "$LMCUDA" errors "$DATA" "$MODELS"
    run test_device env LM_TEST_DATA="$DATA" "$TEST_DEVICE"
}

stage_bench() {
    local files=() f
    for f in "${BENCH_FILES[@]}"; do [ -e "$BENCH_DIR/$f" ] && files+=("$BENCH_DIR/$f"); done
    if [ ${#files[@]} = 0 ]; then
        note "bench: no files in $BENCH_DIR (run the gen stage)"
        FAILED=1
        return
    fi
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader |
        tee "$LOGS/gpu.txt"
    run bench "$LMCUDA" bench "${files[@]}"
    grep '^JSON ' "$LOGS/bench.log" | sed 's/^JSON //' >"$LOGS/bench.jsonl"
}

stage_profile() {
    local f=$BENCH_DIR/llama-3.2-1b-q4_0.gguf ncu=ncu
    command -v ncu >/dev/null || ncu=$(ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
    if [ ! -e "$f" ] || [ -z "$ncu" ]; then
        note "profile: needs $f (gen) and ncu"
        FAILED=1
        return
    fi
    run profile-ncu "$ncu" --profile-from-start off --clock-control none --csv --page raw --print-units base \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size \
        "$LMCUDA" profile "$f"
    run profile python3 tests/cuda/ncu_summary.py "$LOGS/profile-ncu.log"
}

stage_sanitize() {
    local cs=compute-sanitizer
    command -v $cs >/dev/null || cs=/usr/local/cuda/bin/compute-sanitizer
    run memcheck-batch env LMCUDA_ONLY=tiny-q4_k env $cs --tool memcheck --error-exitcode 9 "$LMCUDA" batch "$DATA"
    run memcheck-fixtures env LMCUDA_ONLY=qwen2-mlx env $cs --tool memcheck --error-exitcode 9 "$LMCUDA" fixtures "$DATA" "$MODELS"
    run racecheck env LMCUDA_ONLY=stories260K-q8 env $cs --tool racecheck --error-exitcode 9 "$LMCUDA" batch "$DATA"
    run synccheck env LMCUDA_ONLY=llama3-mlx-q4 env $cs --tool synccheck --error-exitcode 9 "$LMCUDA" batch "$DATA"
    run initcheck env LMCUDA_ONLY=tiny-q4_0 env $cs --tool initcheck --error-exitcode 9 "$LMCUDA" batch "$DATA"
}

stages=("$@")
[ ${#stages[@]} = 0 ] && stages=(all)
for s in "${stages[@]}"; do
    case $s in
    all) stage_build; stage_gen; stage_test; stage_bench; stage_profile; stage_sanitize ;;
    build | gen | test | bench | profile | sanitize) "stage_$s" ;;
    *) echo "run.sh: unknown stage '$s' (build gen test bench profile sanitize all)" >&2; exit 2 ;;
    esac
done
echo "== summary"
printf '  %s\n' "${SUMMARY[@]}"
exit $FAILED
