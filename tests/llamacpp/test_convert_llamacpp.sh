#!/usr/bin/env bash
# tests/llamacpp/test_convert_llamacpp.sh CLI: `locallm convert` checked against llama.cpp (the npm
# package node-llama-cpp 3.21.1, installed into bench/peer/ by scripts/npm_peer.sh, which
# scripts/deps.sh runs). What is compared is said in tests/llamacpp/convert_check.mjs. Registered
# by CMakeLists.txt for the release build only (under the sanitizers it would only be slower).
# Exits 77 (skipped, which `make test` under CI=true counts as a failure) only when node itself is
# missing; a failed install is a failure.
set -euo pipefail
CLI=${1:?usage: test_convert_llamacpp.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v node >/dev/null 2>&1 || { echo "SKIP: node is not installed (scripts/deps.sh installs it)"; exit 77; }
bash "$SRC/scripts/npm_peer.sh"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# ESM resolves node-llama-cpp next to the script: run it from the peer folder
cp "$SRC/tests/llamacpp/convert_check.mjs" "$SRC/bench/peer/convert_check.mjs"
cd "$SRC/bench/peer"
node convert_check.mjs --cli "$CLI" --src "$SRC" --work "$TMP"
