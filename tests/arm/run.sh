#!/usr/bin/env bash
# tests/arm/run.sh BUILD_DIR: `make test-arm`. Checks the code that runs on Apple Silicon and other
# AArch64 machines from an x86 host:
#  1. every library source compiles for aarch64 (-fsyntax-only; the x86-only _avx2/_avx512 files
#     and CUDA are left out exactly as CMake leaves them out there);
#  2. tests/arm/test_kernels_arm.c (NEON kernels vs the reference) is cross-built statically and
#     run under qemu-aarch64 on a CPU with dotprod (-cpu max: SDOT kernels) and one without
#     (-cpu cortex-a53: the plain-NEON fallback, and proof that nothing else in the binary needs
#     ARMv8.2), then built with CMake's flags for *_neon.c on Linux/aarch64, with UBSan, and with
#     clang -mcpu=apple-m1;
#  3. the unit tests of the CPU backend (test_quants*, test_attention, test_pool) over a minimal
#     cmocka, on both CPUs.
# On an AArch64 host the tests are built with cc and run directly. Without a cross compiler or
# qemu-aarch64 (macOS on Intel, say) it prints SKIP and succeeds, except under CI=true, where that
# is a failure; scripts/deps.sh installs both on Debian/Ubuntu (gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user). It appends its count to build/test-summary.txt.
set -euo pipefail

B=${1:-build-arm}
cd "$(dirname "$0")/../.."
mkdir -p "$B/inc"

arch=$(uname -m)
native=0
case "$arch" in aarch64 | arm64) native=1 ;; esac

if [ "$native" = 1 ]; then
    CC_ARM=${ARM_CC:-cc}
    RUN=()
else
    CC_ARM=${ARM_CC:-aarch64-linux-gnu-gcc}
    QEMU=${ARM_QEMU:-qemu-aarch64}
    if ! command -v "$CC_ARM" >/dev/null 2>&1 || ! command -v "$QEMU" >/dev/null 2>&1; then
        echo "test-arm: SKIP: needs $CC_ARM and $QEMU (scripts/deps.sh installs gcc-aarch64-linux-gnu and qemu-user on Debian/Ubuntu)"
        S=${LM_TEST_SUMMARY:-build/test-summary.txt}; mkdir -p "$(dirname "$S")" && echo "arm: 0 ran, 0 passed, 0 failed, 1 skipped" >>"$S"
        [ "${CI:-}" = true ] && { echo "test-arm: FAIL: a skip is a failure under CI=true" >&2; exit 1; }
        exit 0
    fi
fi

# core.h includes <cjson/cJSON.h>: the header is the same on every architecture, so the host's is
# used (only that directory, not all of the host's /usr/include); the library itself is replaced
# by tests/arm/cjson_stub.c.
cj=""
for d in "$(pkg-config --variable=includedir libcjson 2>/dev/null || true)" /usr/include /usr/local/include /opt/homebrew/include; do
    if [ -n "$d" ] && [ -f "$d/cjson/cJSON.h" ]; then cj=$d/cjson; break; fi
done
if [ -z "$cj" ]; then
    echo "test-arm: FAIL: cjson/cJSON.h not found (run scripts/deps.sh)"
    exit 1
fi
ln -sfn "$cj" "$B/inc/cjson"

COMMON=(-std=gnu11 -Wall -Wextra -Wno-unused-parameter -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude -Isrc)

# 1. the whole library, syntax only. Third-party headers come from the host after the target's
# own (-idirafter), which is enough for declarations.
if [ "$native" = 0 ]; then
    ma=$(gcc -print-multiarch 2>/dev/null || true)
    HOSTINC=(-idirafter /usr/include)
    [ -n "$ma" ] && HOSTINC+=(-idirafter "/usr/include/$ma")
else
    HOSTINC=()
fi
# syntax_all WHAT COMPILER ARGS...: every library source that aarch64 builds through COMPILER
# ARGS -fsyntax-only; names each that does not compile (WHAT says with what) and exits 1 if any.
# Sets n_src to the number of sources.
syntax_all() {
    local what=$1 f fail=0
    shift
    n_src=0
    while IFS= read -r f; do
        n_src=$((n_src + 1))
        if ! "$@" -fsyntax-only "$f" 2>"$B/syntax.log"; then
            echo "test-arm: FAIL: $f does not compile $what:"
            grep -m5 error "$B/syntax.log" || head -5 "$B/syntax.log"
            fail=1
        fi
    done < <(find src -name '*.c' ! -name '*_avx2.c' ! -name '*_avx512.c' ! -path '*/cuda/*' | sort)
    [ "$fail" = 0 ] || exit 1
}
ran=0
syntax_all "for aarch64" "$CC_ARM" "${COMMON[@]}" -I"$B/inc" "${HOSTINC[@]}"
echo "test-arm: $n_src library sources compile for aarch64 ($CC_ARM -fsyntax-only)"
# Apple builds with clang: the same check with clang for the M1 when this clang targets aarch64.
if [ "$native" = 0 ] && command -v clang >/dev/null 2>&1 &&
    echo 'int x;' | clang --target=aarch64-linux-gnu -fsyntax-only -x c - 2>/dev/null; then
    syntax_all "with clang -mcpu=apple-m1" clang --target=aarch64-linux-gnu -mcpu=apple-m1 "${COMMON[@]}" -I"$B/inc" \
        "${HOSTINC[@]}"
    echo "test-arm: and with clang --target=aarch64-linux-gnu -mcpu=apple-m1"
fi

# 2. the kernel test. -ffp-contract=off on both sides so dequantized values compare bit for bit.
SRCS=(src/core/alloc.c src/core/error.c src/core/util.c src/core/utf8.c src/core/file.c src/core/pool.c src/compute/types.c src/compute/cpu/quants_ref.c
      src/compute/cpu/quants_mlx_ref.c src/compute/cpu/select.c src/compute/cpu/quants_r16_ref.c src/compute/cpu/quants_r16m_ref.c
      tests/arm/cjson_stub.c tests/arm/test_kernels_arm.c)
TFLAGS=("${COMMON[@]}" -O2 -ffp-contract=off -I"$B/inc")
LINK=(-lm -lpthread)
[ "$native" = 0 ] && LINK=(-static "${LINK[@]}")

build() { # compiler, out, extra flags for the *_neon.c files...
    local cc=$1 out=$2
    shift 2
    "$cc" "${TFLAGS[@]}" -Werror "$@" -c src/compute/cpu/quants_neon.c -o "$out.neon.o"
    "$cc" "${TFLAGS[@]}" -Werror "$@" -c src/compute/cpu/attention_neon.c -o "$out.attn_neon.o"
    "$cc" "${TFLAGS[@]}" "${SRCS[@]}" "$out.neon.o" "${LINK[@]}" -o "$out"
}

# The default target (armv8-a): SDOT kernels come from the file's own pragma.
build "$CC_ARM" "$B/test_kernels_arm"
# As CMake builds *_neon.c on Linux/aarch64.
build "$CC_ARM" "$B/test_kernels_arm_cmakeflags" -march=armv8.2-a+dotprod+fp16
# clang for the CPU Apple clang targets by default, when this clang can build for aarch64 Linux.
clang_ok=0
if [ "$native" = 0 ] && command -v clang >/dev/null 2>&1 &&
    echo 'int main(void){return 0;}' | clang --target=aarch64-linux-gnu -static -x c - -o "$B/clang_probe" 2>/dev/null; then
    clang_ok=1
    TFLAGS_GCC=("${TFLAGS[@]}")
    TFLAGS+=(--target=aarch64-linux-gnu -mcpu=apple-m1)
    build clang "$B/test_kernels_arm_clang_m1"
    TFLAGS=("${TFLAGS_GCC[@]}")
fi

if [ "$native" = 1 ]; then
    "$B/test_kernels_arm"
    "$B/test_kernels_arm_cmakeflags" 2>/dev/null || echo "test-arm: (the armv8.2-a+dotprod build does not run on this CPU)"
else
    echo "test-arm: qemu-aarch64 -cpu max (FEAT_DotProd):"
    ran=$((ran + 1)); "$QEMU" -cpu max "$B/test_kernels_arm" --expect-dotprod 1
    echo "test-arm: qemu-aarch64 -cpu cortex-a53 (ARMv8.0, no dotprod):"
    ran=$((ran + 1)); "$QEMU" -cpu cortex-a53 "$B/test_kernels_arm" --expect-dotprod 0
    echo "test-arm: qemu-aarch64 -cpu max, quants_neon.c built with -march=armv8.2-a+dotprod+fp16:"
    ran=$((ran + 1)); "$QEMU" -cpu max "$B/test_kernels_arm_cmakeflags" --expect-dotprod 1
    # CMake's -march applies to the whole file, so the compiler could put ARMv8.2 instructions
    # into the plain kernels too; this run (a Raspberry Pi 3-class CPU) would die of SIGILL then.
    echo "test-arm: qemu-aarch64 -cpu cortex-a53, the same build:"
    ran=$((ran + 1)); "$QEMU" -cpu cortex-a53 "$B/test_kernels_arm_cmakeflags" --expect-dotprod 0
    # UndefinedBehaviorSanitizer (misaligned loads, overflows, shifts), linked dynamically against
    # the cross libc that qemu finds through QEMU_LD_PREFIX.
    sysroot=$("$CC_ARM" -print-sysroot 2>/dev/null || true)
    [ -n "$sysroot" ] && [ "$sysroot" != / ] || sysroot=/usr/aarch64-linux-gnu
    if "$CC_ARM" "${TFLAGS[@]}" -O1 -g -fsanitize=undefined -fno-sanitize-recover=all "${SRCS[@]}" \
        src/compute/cpu/quants_neon.c -lm -lpthread -o "$B/test_kernels_arm_ubsan" 2>/dev/null; then
        echo "test-arm: qemu-aarch64 -cpu max, built with -fsanitize=undefined:"
        ran=$((ran + 1)); QEMU_LD_PREFIX=$sysroot "$QEMU" -cpu max "$B/test_kernels_arm_ubsan" --expect-dotprod 1
    else
        echo "test-arm: (no aarch64 UBSan runtime: the -fsanitize=undefined run is skipped)"
    fi
    if [ "$clang_ok" = 1 ]; then
        echo "test-arm: qemu-aarch64 -cpu max, built with clang -mcpu=apple-m1:"
        ran=$((ran + 1)); "$QEMU" -cpu max "$B/test_kernels_arm_clang_m1" --expect-dotprod 1
    else
        echo "test-arm: (no clang that links for aarch64: the clang -mcpu=apple-m1 build is skipped)"
    fi
fi
# 3. the kernel unit tests of tests/unit (R16 and R16M included), unchanged, over tests/arm/cmocka (a minimal cmocka) and
# every portable source of core/ and compute/cpu/ (the pool, ops.c's threaded matmul and prefill).
# (not core/curl.c: nothing here speaks HTTP, and there is no cross-built libcurl to link)
CPU_SRCS=($(ls src/core/*.c | grep -v -e '/curl\.c$') src/compute/types.c $(ls src/compute/cpu/*.c | grep -v -e '_avx2\.c$' -e '_avx512\.c$' -e '_neon\.c$'))
for t in test_quants test_quants_mlx test_r16 test_r16m test_attention test_pool; do
    [ -f "tests/unit/$t.c" ] || continue
    "$CC_ARM" "${COMMON[@]}" -O2 -I"$B/inc" -Itests/arm/cmocka -Itests/unit "${CPU_SRCS[@]}" "$B/test_kernels_arm.neon.o" "$B/test_kernels_arm.attn_neon.o" \
        tests/arm/cjson_stub.c tests/arm/cmocka/cmocka_shim.c tests/unit/testutil.c \
        "tests/unit/$t.c" "${LINK[@]}" -o "$B/$t"
    if [ "$native" = 1 ]; then
        LM_TEST_DATA=$PWD/tests/data LM_SOURCE_DIR=$PWD "$B/$t" | tail -1
    else
        for cpu in max cortex-a53; do
            echo "test-arm: tests/unit/$t.c under qemu-aarch64 -cpu $cpu:"
            ran=$((ran + 1))
            if ! LM_TEST_DATA=$PWD/tests/data LM_SOURCE_DIR=$PWD "$QEMU" -cpu "$cpu" "$B/$t" >"$B/$t.$cpu.log"; then
                grep -E 'FAIL' "$B/$t.$cpu.log" | head -20
                tail -1 "$B/$t.$cpu.log"
                exit 1
            fi
            tail -1 "$B/$t.$cpu.log"
        done
    fi
done
echo "test-arm: passed"
S=${LM_TEST_SUMMARY:-build/test-summary.txt}; mkdir -p "$(dirname "$S")" && echo "arm: $ran ran, $ran passed, 0 failed, 0 skipped" >>"$S"
