#!/usr/bin/env bash
# tests/e2e/test_library.sh: the library as a program that uses it sees it. Runs the examples
# built in-tree (examples/*.c, under ASan+UBSan in the ASan build), then installs this build into
# a temporary prefix (cmake --install, what `make install PREFIX=...` runs) and checks what was
# installed: the header, liblocallm.a, liblocallm.so with a versioned soname exporting exactly the
# functions locallm.h declares, locallm.pc with its private requirements, the CMake package, the
# CLI with its embedded models. The examples are then built against the installed copy three ways
# (pkg-config and the shared library, liblocallm.a with locallm.pc's private requirements,
# find_package(locallm) in a CMake project) and run again with the same checks.
# Usage: test_library.sh /path/to/locallm   (env: LM_BUILD_DIR, LM_SOURCE_DIR, LM_CC, and
# LM_SANITIZE_FLAGS in a sanitizer build)
# Example checks: chat_stream's turn 1 is tinychat's greedy reply, its turn 2 stops after 3
# pieces (finish: cancelled) and reuses turn 1's KV prefix; fallback answers locally when the
# endpoint before it is dead (the skipped reason names it), through `locallm serve` when that is
# first, and reports both reasons when every provider fails.
set -euo pipefail

CLI=${1:?usage: test_library.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${LM_BUILD_DIR:?LM_BUILD_DIR must name the build folder}
CC=${LM_CC:-cc}
read -r -a SAN <<<"${LM_SANITIZE_FLAGS:-}"
MODEL=$SRC/models/tinychat
TMP=$(mktemp -d)
E2E_SHOW='out err log'
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT

for tool in pkg-config cmake nm readelf python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (scripts/deps.sh installs it)"
done

# ---- a locallm serve for fallback to reach (loopback, any free port) ----
serve_start "$MODEL"
URL=$BASE/v1
# a port nothing listens on: bound and closed again
DEAD=http://127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')/v1

# check_examples DIR WHAT: runs DIR/chat_stream and DIR/fallback and checks what they print.
check_examples() {
    local dir=$1 what=$2 rc
    rc=0
    # concurrent: four conversations on one engine, one cancelled; it checks itself (exit 0) and
    # prints one line per turn that ran and the engine's shared passes
    timeout 300 "$dir/concurrent" "$MODEL" >"$TMP/out" 2>"$TMP/err" || rc=$?
    [[ $rc -eq 0 ]] || fail "$what: concurrent exited $rc: $(cat "$TMP/err")"
    grep -q '^\[0.1\] What is the capital of France? -> The capital of France is Paris.' "$TMP/out" ||
        fail "$what: concurrent: the first conversation's reply"
    grep -q '^\[3.1\] .*finish cancelled' "$TMP/out" || fail "$what: concurrent: the cancelled conversation"
    grep -q '^engine: .* passes, [1-9][0-9]* shared' "$TMP/out" || fail "$what: concurrent: no shared pass"
    rc=0
    timeout 300 "$dir/chat_stream" "$MODEL" >"$TMP/out" 2>"$TMP/err" || rc=$?
    [[ $rc -eq 0 ]] || fail "$what: chat_stream exited $rc"
    [[ $(sed -n 1p "$TMP/out") == "Hello! How can I help you today?" ]] || fail "$what: chat_stream turn 1"
    grep -q '^\[turn 1\] prompt 29 tokens (0 cached), first token [0-9.]* ms, 9 tokens at [0-9.]* tok/s, finish: stop$' "$TMP/out" ||
        fail "$what: chat_stream turn 1 metrics"
    # turn 2, stopped after 3 pieces: the first three tokens of the greedy answer
    [[ $(sed -n 3p "$TMP/out") == "$PIECES3" ]] || fail "$what: chat_stream turn 2 text"
    local cached
    cached=$(sed -n 's/^\[turn 2\] prompt [0-9]* tokens (\([0-9]*\) cached), .*, 3 tokens at .*, finish: cancelled$/\1/p' "$TMP/out")
    [[ -n $cached && $cached -gt 20 ]] || fail "$what: chat_stream turn 2 (cancelled, prefix reused)"
    pass
    rc=0
    timeout 120 "$dir/fallback" "$DEAD" "$MODEL" >"$TMP/out" 2>"$TMP/err" || rc=$?
    printf '%s\n' "The capital of France is Paris." "answered by: local" >"$TMP/want"
    [[ $rc -eq 0 ]] && head -2 "$TMP/out" | cmp -s - "$TMP/want" || fail "$what: fallback past a dead endpoint"
    grep -q "^skipped: remote1: ${DEAD//./\\.}/chat/completions: " "$TMP/out" || fail "$what: fallback: why remote1 was skipped"
    pass
    rc=0
    timeout 120 "$dir/fallback" "$URL" "$MODEL" >"$TMP/out" 2>"$TMP/err" || rc=$?
    printf '%s\n' "The capital of France is Paris." "answered by: remote1" >"$TMP/want"
    [[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "$what: fallback through locallm serve"
    pass
    rc=0
    timeout 120 "$dir/fallback" "$DEAD" >"$TMP/out" 2>"$TMP/err" || rc=$?
    [[ $rc -eq 1 ]] && grep -q "^no answer: no provider could answer: remote1: " "$TMP/err" || fail "$what: fallback with nothing to answer"
    pass
}

# the reference for chat_stream's cancelled turn: the chat CLI's second reply at -n 3
PIECES3=$(printf 'Hi\nWhat is the capital of France?\n' | "$CLI" chat "$MODEL" -n 3 | sed -n 2p)
[[ -n $PIECES3 ]] || fail "chat -n 3 gave no second reply"

# ---- 1. in-tree ----
[[ -x $BUILD/examples/chat_stream && -x $BUILD/examples/fallback && -x $BUILD/examples/concurrent ]] ||
    fail "the in-tree examples are not built in $BUILD/examples"
check_examples "$BUILD/examples" "in-tree"

# ---- 2. install ----
P=$TMP/prefix
cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1 || { cat "$TMP/install.log" >&2; fail "cmake --install"; }
LIBDIR=$(cd "$P" && ls -d lib*/pkgconfig | head -1 | xargs dirname)
VERSION=$(sed -n 's/^#define LM_VERSION "\(.*\)"$/\1/p' "$SRC/include/locallm.h")
MAJOR=${VERSION%%.*}
REST=${VERSION#*.}
SOVER=$MAJOR
[[ $MAJOR == 0 ]] && SOVER=$MAJOR.${REST%%.*}
for f in include/locallm.h "$LIBDIR/liblocallm.a" "$LIBDIR/liblocallm.so" "$LIBDIR/liblocallm.so.$SOVER" \
    "$LIBDIR/liblocallm.so.$VERSION" "$LIBDIR/pkgconfig/locallm.pc" "$LIBDIR/cmake/locallm/locallm-config.cmake" \
    "$LIBDIR/cmake/locallm/locallm-config-version.cmake" "$LIBDIR/cmake/locallm/locallm-targets.cmake" \
    bin/locallm share/locallm/models/stories260K.gguf share/locallm/models/tinychat/model.safetensors; do
    [[ -e $P/$f ]] || fail "not installed: $f"
done
cmp -s "$P/include/locallm.h" "$SRC/include/locallm.h" || fail "the installed header differs"
[[ $(readelf -d "$P/$LIBDIR/liblocallm.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p') == "liblocallm.so.$SOVER" ]] ||
    fail "soname is not liblocallm.so.$SOVER"
pass
# the shared library exports exactly the functions of locallm.h
python3 - "$SRC/include/locallm.h" >"$TMP/api" <<'PY'
import re, sys
text = re.sub(r"/\*.*?\*/", "", open(sys.argv[1]).read(), flags=re.S)
print("\n".join(sorted(set(re.findall(r"\b(lm_[a-z0-9_]+)\s*\(", text)))))
PY
nm -D --defined-only "$P/$LIBDIR/liblocallm.so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort -u >"$TMP/exported"
diff "$TMP/api" "$TMP/exported" >"$TMP/err" || fail "liblocallm.so exports differ from locallm.h's functions (< header only, > library only)"
[[ $(wc -l <"$TMP/api") -gt 40 ]] || fail "too few functions read from locallm.h"
pass
export PKG_CONFIG_PATH=$P/$LIBDIR/pkgconfig
[[ $(pkg-config --modversion locallm) == "$VERSION" ]] || fail "pkg-config --modversion"
for req in libcjson libpcre2-8 libutf8proc libcurl libmicrohttpd; do
    pkg-config --print-requires-private locallm | grep -qx "$req" || fail "locallm.pc lacks Requires.private $req"
done
pass
# the installed CLI finds its embedded models beside it: a broken one is named by its installed path
rc=0
env -u LOCALLM_DEFAULT_MODEL "$P/bin/locallm" run -p "Once upon a time" -n 3 --no-stats >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 0 && $(cat "$TMP/out") == "Once upon a time, there was" ]] || fail "the installed CLI"
printf 'not a model' >"$P/share/locallm/models/stories260K.gguf"
rc=0
env -u LOCALLM_DEFAULT_MODEL "$P/bin/locallm" run -p x -n 1 >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 1 ]] && grep -qF "$P/bin/../share/locallm/models/stories260K.gguf" "$TMP/err" ||
    fail "the installed CLI does not use share/locallm/models"
pass

# ---- 3. the examples against the installed library ----
mkdir -p "$TMP/shared" "$TMP/static"
read -r -a PC_CFLAGS <<<"$(pkg-config --cflags locallm)"
read -r -a PC_LIBS <<<"$(pkg-config --libs locallm)"
# liblocallm.a in a dynamically linked program: its private requirements as shared libraries
# (pkg-config --static would also ask for their own static dependencies, for a fully static link)
read -r -a PC_STATIC <<<"$(pkg-config --libs $(pkg-config --print-requires-private locallm)) -lpthread -lm"
for ex in chat_stream fallback concurrent; do
    "$CC" -std=c11 -Wall -Wextra -Werror "${SAN[@]}" "$SRC/examples/$ex.c" "${PC_CFLAGS[@]}" "${PC_LIBS[@]}" \
        -Wl,-rpath,"$P/$LIBDIR" -o "$TMP/shared/$ex" 2>"$TMP/err" || fail "$ex: build with pkg-config (shared)"
    readelf -d "$TMP/shared/$ex" | grep -q "NEEDED.*\[liblocallm.so.$SOVER\]" || fail "$ex does not load liblocallm.so.$SOVER"
    # static: liblocallm.a by name, then its dependencies
    "$CC" -std=c11 -Wall -Wextra -Werror "${SAN[@]}" "$SRC/examples/$ex.c" "${PC_CFLAGS[@]}" "$P/$LIBDIR/liblocallm.a" \
        "${PC_STATIC[@]}" -o "$TMP/static/$ex" 2>"$TMP/err" || fail "$ex: build with liblocallm.a"
    readelf -d "$TMP/static/$ex" | grep -q "liblocallm" && fail "$ex (static) still needs liblocallm.so"
done
pass
check_examples "$TMP/shared" "installed, shared"
check_examples "$TMP/static" "installed, static"

mkdir -p "$TMP/cmake-project"
cp "$SRC/examples/chat_stream.c" "$SRC/examples/fallback.c" "$SRC/examples/concurrent.c" "$TMP/cmake-project/"
cat >"$TMP/cmake-project/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(uses_locallm C)
find_package(locallm 0.1 REQUIRED)
add_executable(chat_stream chat_stream.c)
target_link_libraries(chat_stream PRIVATE locallm::locallm)
add_executable(fallback fallback.c)
target_link_libraries(fallback PRIVATE locallm::static)
add_executable(concurrent concurrent.c)
target_link_libraries(concurrent PRIVATE locallm::locallm)
CMAKE
cmake -S "$TMP/cmake-project" -B "$TMP/cmake-build" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_C_COMPILER="$CC" \
    -DCMAKE_C_FLAGS="${SAN[*]}" -DCMAKE_EXE_LINKER_FLAGS="${SAN[*]}" >"$TMP/err" 2>&1 || fail "find_package(locallm)"
cmake --build "$TMP/cmake-build" -j 2 >"$TMP/err" 2>&1 || fail "building against locallm::locallm and locallm::static"
readelf -d "$TMP/cmake-build/chat_stream" | grep -q "NEEDED.*\[liblocallm.so.$SOVER\]" || fail "locallm::locallm is not the shared library"
readelf -d "$TMP/cmake-build/fallback" | grep -q "liblocallm" && fail "locallm::static is not the static library"
pass
check_examples "$TMP/cmake-build" "installed, CMake package"

echo "test_library.sh: $n_checks checks passed"
