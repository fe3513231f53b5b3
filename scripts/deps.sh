#!/usr/bin/env bash
# Installs the system packages locallm needs, and does nothing when they are all present.
# Debian/Ubuntu: apt-get; macOS: Homebrew.
set -euo pipefail

need_pc="libcjson libpcre2-8 libutf8proc libcurl libmicrohttpd libedit cmocka"
need_cmd="cmake pkg-config cc xz clang espeak-ng"  # espeak-ng: the voice tests' TTS

missing=0
for c in $need_cmd; do command -v "$c" >/dev/null 2>&1 || missing=1; done
if command -v pkg-config >/dev/null 2>&1; then
  for p in $need_pc; do pkg-config --exists "$p" 2>/dev/null || missing=1; done
fi
# ASan/UBSan/TSan runtimes for clang (the TSan suite is built with clang).
if command -v dpkg >/dev/null 2>&1; then
  dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || dpkg -s libclang-rt-dev >/dev/null 2>&1 || missing=1
fi
# make test-arm: an aarch64 cross compiler with its libc, and qemu-aarch64 (x86 Linux hosts only;
# on macOS and on aarch64 hosts the test builds natively or skips).
arm_missing=0
if [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ]; then
  command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || arm_missing=1
  command -v qemu-aarch64 >/dev/null 2>&1 || arm_missing=1
  [ -e /usr/aarch64-linux-gnu/include/stdio.h ] || arm_missing=1
fi
# Node.js (>= 20) and npm: the OpenAI SDK test and the llama.cpp peer (node-llama-cpp) run on it.
node_missing=0
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
{ [ "$node_major" -ge 20 ] && command -v npm >/dev/null 2>&1; } || node_missing=1
# The npm packages the tests use: node-llama-cpp 3.21.1 (llama.cpp) into bench/peer/.
here=$(cd "$(dirname "$0")" && pwd)
peer_ok() { [ "$node_missing" = 0 ] && bash "$here/npm_peer.sh"; }
if [ "$missing" = 0 ] && [ "$arm_missing" = 0 ] && [ "$node_missing" = 0 ]; then
    peer_ok || { echo "deps.sh: could not install node-llama-cpp into bench/peer/ (scripts/npm_peer.sh)" >&2; exit 1; }
    exit 0
fi

if [ "$(uname -s)" = Darwin ]; then
  command -v brew >/dev/null || { echo "deps.sh: Homebrew is needed on macOS (https://brew.sh)" >&2; exit 1; }
  brew install cmake pkg-config cjson pcre2 utf8proc curl libmicrohttpd libedit cmocka xz llvm espeak-ng node
  node_missing=0
  peer_ok || { echo "deps.sh: could not install node-llama-cpp into bench/peer/" >&2; exit 1; }
  exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "deps.sh: installing missing packages with apt-get" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake pkg-config xz-utils clang libclang-rt-14-dev \
    libcjson-dev libpcre2-dev libutf8proc-dev libcurl4-openssl-dev libmicrohttpd-dev \
    libedit-dev libcmocka-dev ca-certificates espeak-ng >/dev/null
  if [ "$arm_missing" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null ||
      { echo "deps.sh: could not install the aarch64 cross tools and qemu-user (make test-arm needs them)" >&2; exit 1; }
  fi
  if [ "$node_missing" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null ||
      { echo "deps.sh: could not install nodejs and npm" >&2; exit 1; }
    node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    [ "$node_major" -ge 20 ] || { echo "deps.sh: node $node_major is too old: the tests need node >= 20" >&2; exit 1; }
    node_missing=0
  fi
  peer_ok || { echo "deps.sh: could not install node-llama-cpp into bench/peer/ (scripts/npm_peer.sh)" >&2; exit 1; }
  exit 0
fi
if [ "$missing" = 0 ]; then
  echo "deps.sh: no apt-get: install an aarch64 cross gcc, qemu-aarch64 and node >= 20 with npm by hand" >&2
  peer_ok || exit 1
  exit 0
fi
echo "deps.sh: unknown system; install cmake, pkg-config, cJSON, PCRE2, utf8proc, libcurl, libmicrohttpd, libedit, cmocka, espeak-ng, node >= 20 and npm" >&2
exit 1
