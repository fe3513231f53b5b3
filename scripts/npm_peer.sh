#!/usr/bin/env bash
# scripts/npm_peer.sh: installs llama.cpp as the npm package node-llama-cpp 3.21.1 (its prebuilt
# CPU build) into bench/peer/ (git-ignored) from bench/peer.package.json and its lock, unless it is
# there already. Used by scripts/deps.sh, bench/compare.sh's peer and the llamacpp_convert test.
# Needs node >= 20 and npm. Prints nothing when there is nothing to do; exits non-zero on failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peer=$root/bench/peer
want=3.21.1
have=$(node -p "require('$peer/node_modules/node-llama-cpp/package.json').version" 2>/dev/null || true)
if [ "$have" = "$want" ] && cmp -s "$root/bench/peer.package.json" "$peer/package.json"; then exit 0; fi
command -v npm >/dev/null 2>&1 || { echo "npm_peer.sh: npm is not installed" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$major" -ge 20 ] || { echo "npm_peer.sh: node-llama-cpp $want needs node >= 20 (have ${major})" >&2; exit 1; }
echo "npm_peer.sh: installing node-llama-cpp $want into bench/peer/" >&2
mkdir -p "$peer"
cp "$root/bench/peer.package.json" "$peer/package.json"
cp "$root/bench/peer.package-lock.json" "$peer/package-lock.json"
# a lock (mkdir is atomic) so two test runs never install at once
lock=$peer/.installing
for _ in $(seq 1 600); do mkdir "$lock" 2>/dev/null && break; sleep 1; done
trap 'rmdir "$lock" 2>/dev/null || true' EXIT
have=$(node -p "require('$peer/node_modules/node-llama-cpp/package.json').version" 2>/dev/null || true)
[ "$have" = "$want" ] && exit 0
(cd "$peer" && timeout 900 npm ci --no-audit --no-fund --loglevel=error >&2)
have=$(node -p "require('$peer/node_modules/node-llama-cpp/package.json').version" 2>/dev/null || true)
[ "$have" = "$want" ] || { echo "npm_peer.sh: node-llama-cpp $want did not install" >&2; exit 1; }
