# tests/e2e/lib.sh: what the e2e scripts share; sourced, not run (as bench/lib.sh is for the bench
# scripts). The caller sets CLI (the locallm binary) and TMP (its scratch folder) before using it.
#   pass                       counts one check in n_checks
#   fail MSG...                prints "FAIL: MSG", then the end of each file of E2E_SHOW (names or
#                              patterns under $TMP; default "out err") that exists, and exits 1
#   cli ARGS...                runs $CLI ARGS with stdin from /dev/null, stdout into $TMP/out and
#                              stderr into $TMP/err, killed after E2E_TIMEOUT seconds (default
#                              300); rc gets its exit status (set -e is not tripped)
#   cli_in INPUT ARGS...       the same with INPUT on stdin
#   expect_ok ARGS...          cli, then fail unless it exited 0
#   e2e_cleanup                for `trap e2e_cleanup EXIT`: stops the background process $PID (a
#                              server), when one is running, and removes $TMP
#   expect_error RC PIECE ARGS...
#                              cli, then fail unless it exited RC (any: non-zero) with stderr
#                              starting "locallm: error:" and naming PIECE; counts a check

n_checks=0
PID=
pass() { n_checks=$((n_checks + 1)); }

fail() {
    echo "FAIL: $*" >&2
    local p f
    for p in ${E2E_SHOW:-out err}; do
        for f in "$TMP"/$p; do
            [[ -f $f ]] && { echo "--- $(basename "$f"):" >&2; tail -c 3000 "$f" >&2; echo >&2; }
        done
    done
    exit 1
}

cli() {
    rc=0
    timeout "${E2E_TIMEOUT:-300}" "$CLI" "$@" </dev/null >"$TMP/out" 2>"$TMP/err" || rc=$?
}

cli_in() {
    local input=$1
    shift
    rc=0
    printf '%s' "$input" | timeout "${E2E_TIMEOUT:-300}" "$CLI" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
}

expect_ok() {
    cli "$@"
    [[ $rc -eq 0 ]] || fail "locallm $* exited $rc"
}

expect_error() {
    local want_rc=$1 piece=$2
    shift 2
    cli "$@"
    [[ $rc -ne 0 ]] || fail "locallm $* should fail"
    if [[ $want_rc != any && $rc -ne $want_rc ]]; then fail "locallm $* exited $rc, expected $want_rc"; fi
    [[ $(head -c 15 "$TMP/err") == "locallm: error:" ]] || fail "locallm $*: stderr does not start with 'locallm: error:'"
    grep -qF -- "$piece" "$TMP/err" || fail "locallm $*: stderr does not mention '$piece'"
    pass
}

e2e_cleanup() {
    if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
