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
[ "$missing" = 0 ] && exit 0

if [ "$(uname -s)" = Darwin ]; then
  command -v brew >/dev/null || { echo "deps.sh: Homebrew is needed on macOS (https://brew.sh)" >&2; exit 1; }
  brew install cmake pkg-config cjson pcre2 utf8proc curl libmicrohttpd libedit cmocka xz llvm espeak-ng
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
  exit 0
fi
echo "deps.sh: unknown system; install cmake, pkg-config, cJSON, PCRE2, utf8proc, libcurl, libmicrohttpd, libedit, cmocka, espeak-ng" >&2
exit 1
