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
[ "$missing" = 0 ] && [ "$arm_missing" = 0 ] && exit 0

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
  if [ "$arm_missing" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null ||
      echo "deps.sh: could not install the aarch64 cross tools; make test-arm will SKIP" >&2
  fi
  exit 0
fi
if [ "$missing" = 0 ]; then
  echo "deps.sh: no apt-get: install an aarch64 cross gcc and qemu-aarch64 for make test-arm (it skips without them)" >&2
  exit 0
fi
echo "deps.sh: unknown system; install cmake, pkg-config, cJSON, PCRE2, utf8proc, libcurl, libmicrohttpd, libedit, cmocka, espeak-ng" >&2
exit 1
