#!/usr/bin/env bash
# tests/e2e/test_openai_sdk.sh: `locallm serve` driven by the official OpenAI Node SDK.
# Usage: test_openai_sdk.sh /path/to/locallm   (env: LM_SOURCE_DIR, LM_BUILD_DIR)
# Installs the npm package `openai` (pinned below) into $LM_BUILD_DIR/npm-openai (or
# $LOCALLM_NPM_CACHE) once, starts the server on the embedded tinychat model with an API key,
# and runs tests/e2e/openai_sdk.mjs against it: chat (streamed and not), usage and cached
# tokens, tool calls, completions, models, abort, and the SDK's error classes.
# Without node/npm, or when the install fails (offline), it prints SKIP and exits 77, which
# ctest counts as skipped (SKIP_RETURN_CODE in CMakeLists.txt).
set -euo pipefail

CLI=${1:?usage: test_openai_sdk.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
OPENAI_VERSION=4.104.0
SDK_DIR=${LOCALLM_NPM_CACHE:-${LM_BUILD_DIR:-${TMPDIR:-/tmp}}/npm-openai}

skip() { echo "SKIP: $*"; exit 77; }
command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v npm >/dev/null 2>&1 || skip "npm is not installed"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[[ $node_major -ge 18 ]] || skip "node $node_major is too old (18 or later is needed)"

installed=$(node -p "require('$SDK_DIR/node_modules/openai/package.json').version" 2>/dev/null || true)
if [[ $installed != "$OPENAI_VERSION" ]]; then
    mkdir -p "$SDK_DIR"
    echo "installing openai@$OPENAI_VERSION into $SDK_DIR"
    if ! timeout 300 npm install --prefix "$SDK_DIR" --no-audit --no-fund --no-save --silent \
        "openai@$OPENAI_VERSION" >"$SDK_DIR/install.log" 2>&1; then
        tail -5 "$SDK_DIR/install.log" >&2 || true
        skip "npm install openai@$OPENAI_VERSION failed (offline?)"
    fi
fi

TMP=$(mktemp -d)
E2E_SHOW='log'
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT

KEY=sdk-test-key-$$
serve_start "$MODEL" --parallel 2 --api-key "$KEY"

timeout 300 node "$SRC/tests/e2e/openai_sdk.mjs" "$SDK_DIR" "$BASE/v1" "$KEY" ||
    fail "openai_sdk.mjs"
! grep -q "$KEY" "$TMP/log" || fail "the API key appears in the server log"
# The aborted stream was cancelled on the server: fewer tokens than its 2000, marked as gone.
# The server writes that line when the cancelled job ends, which can come after the client has
# exited: wait for it (up to 10 s) instead of reading the log once.
n_gone=
for _ in $(seq 1 100); do
    n_gone=$(sed -n 's/.* + \([0-9]*\) generated tokens, finish cancelled (client gone)$/\1/p' "$TMP/log" | head -1)
    [[ -n $n_gone ]] && break
    sleep 0.1
done
[[ -n $n_gone && $n_gone -lt 2000 ]] || fail "the aborted stream was not cancelled on the server (${n_gone:-no} tokens)"
echo "test_openai_sdk: the aborted stream stopped after $n_gone of its 2000 tokens"
serve_stop
echo "test_openai_sdk: passed"
