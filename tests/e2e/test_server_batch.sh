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

serve_start "$MODEL" --parallel 4
python3 "$SRC/tests/e2e/server_batch.py" "$BASE" identical || fail "identical"
python3 "$SRC/tests/e2e/server_batch.py" "$BASE" disconnect || fail "disconnect"
serve_stop

serve_start "$MODEL" --parallel 1 --queue 2
python3 "$SRC/tests/e2e/server_batch.py" "$BASE" queue || fail "queue"
serve_stop
echo "test_server_batch: ok"
