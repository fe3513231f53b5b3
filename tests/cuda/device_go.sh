#!/bin/bash
# tests/cuda/device_go.sh: run on the lent GPU machine from a carried folder (tests/cuda/README.md):
# unpacks the prebuilt programs of pkg/, runs tests/cuda/run.sh stages on the checkout's fixtures,
# writes $OUT/run.log and $OUT/logs.tgz and prints a digest.
cd "$(dirname "$0")"
R=$PWD
mkdir -p bin /tmp/logs
for f in lmcuda test_device; do python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.open('pkg/$f.xz').read())" > bin/$f; chmod +x bin/$f; done
export LD_LIBRARY_PATH=$R/lib
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
export PREBUILT=1 LMCUDA=$R/bin/lmcuda TEST_DEVICE=$R/bin/test_device DATA=$R/../tests/data MODELS=$R/../models
export BENCH_DIR=/tmp/lb LOGS=/tmp/logs
bash tests/cuda/run.sh "$@" > $OUT/run.log 2>&1
rc=$?
tar czf $OUT/logs.tgz -C /tmp/logs .
echo "==== digest (rc $rc)"
grep -h -E "^(kernels|fixtures|batch|errors|formats): |FAIL|^  [a-zA-Z].*(ok|FAIL)$" /tmp/logs/*.log | grep -v " ok$" | head -60
grep -h -E "^bench on|^  /|^    " /tmp/logs/bench.log 2>/dev/null
head -c 3500 /tmp/logs/profile.log 2>/dev/null
sed -n '/^== summary/,$p' $OUT/run.log
exit $rc
