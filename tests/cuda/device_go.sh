#!/bin/bash
# tests/cuda/device_go.sh STAGE...: run on the lent GPU machine from a carried folder
# (tests/cuda/README.md): unpacks the prebuilt programs of pkg/, runs tests/cuda/run.sh stages on
# the checkout's fixtures, writes $OUT/run.log and $OUT/logs.tgz and prints a digest.
# The gen stage (CPU only) runs beside the test stage; the stages after test wait for it.
# BUDGET (seconds, default 540): no step runs past it (DEADLINE_AT of run.sh); TEST_BUDGET
# (default 220): the same for the test stage, so that the benchmarks keep their time.
cd "$(dirname "$0")"
R=$PWD
mkdir -p bin /tmp/logs
for f in lmcuda test_device; do python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.open('pkg/$f.xz').read())" > bin/$f; chmod +x bin/$f; done
export LD_LIBRARY_PATH=$R/lib
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
export PREBUILT=1 LMCUDA=$R/bin/lmcuda TEST_DEVICE=$R/bin/test_device DATA=$R/../tests/data MODELS=$R/../models
T0=$(date +%s)
export BENCH_DIR=/tmp/lb LOGS=/tmp/logs DEADLINE_AT=$((T0 + ${BUDGET:-540}))
gen=0 pre=() post=()
for s in "$@"; do
    case $s in
    gen) gen=1 ;;
    build | test) pre+=("$s") ;;
    *) post+=("$s") ;;
    esac
done
rc=0
[ $gen = 1 ] && { bash tests/cuda/run.sh gen > $OUT/gen.log 2>&1 & gpid=$!; }
[ ${#pre[@]} -gt 0 ] && { DEADLINE_AT=$((T0 + ${TEST_BUDGET:-220})) bash tests/cuda/run.sh "${pre[@]}" > $OUT/run.log 2>&1 || rc=1; }
if [ $gen = 1 ]; then wait $gpid || rc=1; cat $OUT/gen.log >> $OUT/run.log; fi
[ ${#post[@]} -gt 0 ] && { bash tests/cuda/run.sh "${post[@]}" >> $OUT/run.log 2>&1 || rc=1; }
tar czf $OUT/logs.tgz -C /tmp/logs .
echo "==== digest (rc $rc)"
grep -h -E "^(kernels|fixtures|batch|errors|formats): |FAIL|^  [a-zA-Z].*(ok|FAIL)$" /tmp/logs/*.log | grep -v " ok$" | head -60
grep -h -E "^bench on|^  /|^    " /tmp/logs/bench.log 2>/dev/null
head -c 6000 /tmp/logs/profile.log 2>/dev/null
grep -h -E "^== " $OUT/run.log
exit $rc
