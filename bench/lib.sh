# bench/lib.sh: what the bench scripts share; sourced (. "$(dirname "$0")/lib.sh"), not run.
# Sourcing sets here (bench/), root (the repository) and dir (the bench folder:
# $LOCALLM_BENCH_DIR, default /tmp/locallm-bench, never the repository). Messages name the script.
#   log MSG...               to stderr
#   bench_help SCRIPT        prints SCRIPT's usage: its comment block after the #! line, without '# '
#   bench_bad_option OPT     the usage error of an unknown option OPT; exits 2
#   bench_python             sets python to $PYTHON, else to the first python3 that has numpy (the
#                            synthetic model writers need it); exits 1 when none has
#   bench_gguf ROOT PRESET TYPE OUT  writes a synthetic GGUF of PRESET's shape and TYPE
#                            (tools/make_synthetic_gguf.py, random weights) to OUT unless OUT
#                            exists, with $python (bench_python when unset)
#   bench_locallm ROOT DIR J  sets LOCALLM to a Release build of ROOT in DIR/build (J build jobs),
#                            unless LOCALLM already names a binary
#   bench_c_program ROOT DIR SRC OUT PKG...  builds the library of ROOT (Release) in DIR/build and
#                            the bench program SRC against it into OUT, with the pkg-config PKGs
#   bench_peer HERE          installs the llama.cpp peer, node-llama-cpp 3.21.1, into HERE/peer
#                            (git-ignored) from HERE/peer.package.json and its lock, unless there
#   bench_membw ROOT DIR     builds bench/membw.c into DIR/membw
#   bench_bandwidth ROOT DIR THREADS  bench_membw, then prints the read bandwidth in GB/s with
#                            THREADS threads (median of 9 passes over 512 MiB)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
dir=${LOCALLM_BENCH_DIR:-/tmp/locallm-bench}

log() { printf '%s\n' "$*" >&2; }

bench_help() { awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$1"; }

bench_bad_option() {
    echo "${0##*/}: unknown option '$1' (see --help)" >&2
    exit 2
}

bench_python() {
    python=${PYTHON:-}
    if [ -z "$python" ]; then
        for p in python3 /usr/bin/python3; do
            if "$p" -c 'import numpy' 2>/dev/null; then python=$p; break; fi
        done
    fi
    [ -n "$python" ] || { echo "${0##*/}: needs python3 with numpy (apt-get install python3-numpy)" >&2; exit 1; }
}

bench_gguf() {
    [ -f "$4" ] && return 0
    [ -n "${python:-}" ] || bench_python
    log "writing $4"
    "$python" "$1/tools/make_synthetic_gguf.py" --preset "$2" --type "$3" --out "$4"
}

bench_locallm() {
    [ -n "${LOCALLM:-}" ] && return 0
    log "building locallm (Release) in $2/build"
    cmake -S "$1" -B "$2/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$2/build" -j"$3" --target locallm >/dev/null
    LOCALLM=$2/build/locallm
}

bench_c_program() {
    log "building the library (Release) in $2/build"
    cmake -S "$1" -B "$2/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$2/build" -j2 --target locallm_lib >/dev/null
    # shellcheck disable=SC2046
    ${CC:-cc} -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$1/include" -I"$1/src" \
        "$3" "$2/build/liblocallm.a" -o "$4" $(pkg-config --cflags --libs "${@:5}") -lm -lpthread
}

bench_peer() {
    local peer=$1/peer
    if [ ! -f "$peer/node_modules/node-llama-cpp/package.json" ] || ! cmp -s "$1/peer.package.json" "$peer/package.json"; then
        log "installing node-llama-cpp 3.21.1 into bench/peer/"
        mkdir -p "$peer"
        cp "$1/peer.package.json" "$peer/package.json"
        cp "$1/peer.package-lock.json" "$peer/package-lock.json"
        (cd "$peer" && { npm ci --no-audit --no-fund >&2 || npm install --no-audit --no-fund >&2; })
    fi
}

bench_membw() { cc -std=c11 -O3 -march=native -pthread "$1/bench/membw.c" -o "$2/membw"; }

bench_bandwidth() {
    bench_membw "$1" "$2"
    "$2/membw" "$3" 512 9 2>/dev/null
}

#   bench_machine ROOT DIR THREADS OUT  builds bench/membw.c into DIR and writes OUT: one JSON line
#                            with the CPU model, the read bandwidth (GB/s, THREADS threads) and THREADS
bench_machine() {
    local cpu bw
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
    bw=$(bench_bandwidth "$1" "$2" "$3")
    printf '{"cpu":"%s","read_gb_s":%s,"threads":%s}\n' "$cpu" "$bw" "$3" >"$4"
}
