# bench/lib.sh: what the bench scripts share; sourced, not run.
#   log MSG...               to stderr
#   bench_locallm ROOT DIR J  sets LOCALLM to a Release build of ROOT in DIR/build (J build jobs),
#                            unless LOCALLM already names a binary

log() { printf '%s\n' "$*" >&2; }

#   bench_machine ROOT DIR THREADS OUT  builds bench/membw.c into DIR and writes OUT: one JSON line
#                            with the CPU model, the read bandwidth (GB/s, THREADS threads) and THREADS
bench_machine() {
    cc -std=c11 -O3 -march=native -pthread "$1/bench/membw.c" -o "$2/membw"
    local cpu bw
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
    bw=$("$2/membw" "$3" 512 9 2>/dev/null)
    printf '{"cpu":"%s","read_gb_s":%s,"threads":%s}\n' "$cpu" "$bw" "$3" >"$4"
}

bench_locallm() {
    [ -n "${LOCALLM:-}" ] && return 0
    log "building locallm (Release) in $2/build"
    cmake -S "$1" -B "$2/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$2/build" -j"$3" --target locallm >/dev/null
    LOCALLM=$2/build/locallm
}
