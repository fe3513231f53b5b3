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
#   serve_start ARGS...        starts `$CLI serve ARGS --port 0` in the background (stderr into
#                              $TMP/log), sets PID, PORT, BASE (http://127.0.0.1:PORT) and
#                              SERVED_HOST (the host its "listening on" line names), then
#                              serve_ready; fails if it exits or names no address in 10 s
#   serve_listen ARGS...       the same without waiting for the model
#   serve_ready                waits until $BASE/health answers 200 (a 503 must say "loading" or
#                              "error"); fails after 30 s
#   serve_stop                 SIGTERM to $PID; fails unless it exits 0 having logged "stopped"
#   req METHOD PATH [BODY] [CURL ARGS...]
#                              METHOD $BASE$PATH (BODY sent as JSON when not empty): body into
#                              $TMP/body, headers into $TMP/headers, status into code
#   expect_code CODE WHAT      fails unless code is CODE; counts a check
#   jcheck PYTHON_EXPR         evaluates the expression with j = the JSON of $TMP/body; fails
#                              naming it unless truthy; counts a check
#   sse_check WHAT             checks that $TMP/body is SSE frames ending with "data: [DONE]",
#                              then runs the Python on stdin with chunks = the JSON of the other
#                              frames; fails naming WHAT if it raises; counts a check

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

# listen_port LOG PID WHAT: waits (10 s at most) for the server PID to write "listening on
# http://HOST:PORT" to LOG, and sets PORT and SERVED_HOST; fails, naming WHAT, if the server
# exits first or never says. LOG must exist before the call (the background redirection may lag).
listen_port() {
    local log=$1 pid=$2 what=$3 i
    PORT=
    for i in $(seq 1 100); do
        PORT=$(sed -n 's|.*listening on http://\(.*\):\([0-9][0-9]*\).*|\2|p' "$log")
        [[ -n $PORT ]] && break
        kill -0 "$pid" 2>/dev/null || fail "$what exited at start"
        sleep 0.1
    done
    [[ -n $PORT ]] || fail "$what did not say where it listens"
    SERVED_HOST=$(sed -n 's|.*listening on http://\(.*\):\([0-9][0-9]*\).*|\1|p' "$log")
}

serve_listen() {
    : >"$TMP/log"
    "$CLI" serve "$@" --port 0 2>"$TMP/log" &
    PID=$!
    listen_port "$TMP/log" "$PID" "the server"
    BASE=http://127.0.0.1:$PORT
}

serve_ready() {
    local i code
    for i in $(seq 1 300); do
        code=$(curl -s -o "$TMP/health" -w '%{http_code}' --max-time 5 "$BASE/health" || true)
        [[ $code == 200 ]] && return 0
        if [[ $code == 503 ]]; then
            grep -q '"status":"loading"\|"status":"error"' "$TMP/health" || fail "/health 503 without a status"
        fi
        sleep 0.1
    done
    fail "the model did not become ready"
}

serve_start() {
    serve_listen "$@"
    serve_ready
}

serve_stop() {
    kill -TERM "$PID"
    local rc=0
    wait "$PID" || rc=$?
    PID=
    [[ $rc -eq 0 ]] || fail "the server exited $rc after SIGTERM"
    grep -q "stopped" "$TMP/log" || fail "no clean stop in the server's log"
}

req() {
    local method=$1 path=$2 body=${3:-}
    shift 3 || shift $#
    local data=()
    [[ -n $body ]] && data=(-H 'Content-Type: application/json' --data-binary "$body")
    code=$(curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' --max-time 60 -X "$method" \
        "${data[@]}" "$@" "$BASE$path")
}

expect_code() { [[ $code == "$1" ]] || fail "expected HTTP $1, got $code ($2)"; pass; }

jcheck() {
    python3 - "$TMP/body" "$1" <<'EOF' || fail "body check: $1"
import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
    pass
}

sse_check() {
    python3 -c '
import json, sys
frames = open(sys.argv[1]).read().split("\n\n")[:-1]
assert frames[-1] == "data: [DONE]", frames[-1:]
assert all(f.startswith("data: ") for f in frames), [f for f in frames if not f.startswith("data: ")][:1]
chunks = [json.loads(f[6:]) for f in frames[:-1]]
exec(sys.stdin.read())' "$TMP/body" || fail "$1"
    pass
}

e2e_cleanup() {
    if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
