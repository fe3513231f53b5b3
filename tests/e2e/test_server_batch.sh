#!/usr/bin/env bash
# tests/e2e/test_server_batch.sh: `locallm serve` batches concurrent requests into shared passes
# (continuous batching) on the embedded tinychat model: replies byte-identical to the same
# requests sent one at a time, a client that hangs up mid-batch stops costing tokens while the
# others go on, and a queued request gets the slot of one that hung up. The checks themselves are
# in server_batch.py (standard-library Python); this script starts and stops the servers.
# Usage: test_server_batch.sh /path/to/locallm   (env: LM_SOURCE_DIR = the repository)
set -euo pipefail

CLI=${1:?usage: test_server_batch.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
TMP=$(mktemp -d)
E2E_SHOW='log'
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT

start_server() {
    : >"$TMP/log"
    "$CLI" serve "$MODEL" --port 0 "$@" 2>"$TMP/log" &
    PID=$!
    local port=
    for _ in $(seq 1 100); do
        port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$TMP/log")
        [[ -n $port ]] && break
        kill -0 "$PID" 2>/dev/null || fail "the server exited at start"
        sleep 0.1
    done
    [[ -n $port ]] || fail "the server did not say where it listens"
    BASE=http://127.0.0.1:$port
    for _ in $(seq 1 300); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/health" || true) == 200 ]] && return 0
        sleep 0.1
    done
    fail "the model did not become ready"
}
stop_server() {
    kill -TERM "$PID"
    local rc=0
    wait "$PID" || rc=$?
    PID=
    [[ $rc -eq 0 ]] || fail "the server exited $rc after SIGTERM"
}

start_server --parallel 4
python3 "$SRC/tests/e2e/server_batch.py" "$BASE" identical || fail "identical"
python3 "$SRC/tests/e2e/server_batch.py" "$BASE" disconnect || fail "disconnect"
stop_server

start_server --parallel 1 --queue 2
python3 "$SRC/tests/e2e/server_batch.py" "$BASE" queue || fail "queue"
stop_server
echo "test_server_batch: ok"
