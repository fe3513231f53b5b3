# bench/lib.sh: what the bench scripts share; sourced, not run.
#   log MSG...               to stderr
#   bench_locallm ROOT DIR J  sets LOCALLM to a Release build of ROOT in DIR/build (J build jobs),
#                            unless LOCALLM already names a binary

log() { printf '%s\n' "$*" >&2; }

bench_locallm() {
    [ -n "${LOCALLM:-}" ] && return 0
    log "building locallm (Release) in $2/build"
    cmake -S "$1" -B "$2/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$2/build" -j"$3" --target locallm >/dev/null
    LOCALLM=$2/build/locallm
}
