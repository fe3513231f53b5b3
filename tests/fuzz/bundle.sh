#!/usr/bin/env bash
# tests/fuzz/bundle.sh BUILD_DIR: packs the libFuzzer binaries of BUILD_DIR (make fuzz-bundle
# builds them with clang) into BUILD_DIR/bundle/ so they run on a machine that has only glibc:
# the binaries (debug info stripped; the unstripped ones stay in BUILD_DIR to symbolize the
# module+offset frames of a finding), every shared library they load apart from glibc's own in
# lib/, the committed corpora in corpus/ and run_long.sh. Run it there with
#   bash bundle/run_long.sh bundle SECONDS [OUT_DIR]
set -eu
B=${1:?usage: bundle.sh BUILD_DIR}
SRC=$(cd "$(dirname "$0")" && pwd)
D="$B/bundle"
rm -rf "$D"
mkdir -p "$D/lib" "$D/corpus"
n=0
for f in "$B"/fuzz_*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    strip --strip-debug -o "$D/$(basename "$f")" "$f"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "bundle: no fuzz_* binaries in $B" >&2; exit 1; }
# glibc's libraries are on every target machine; everything else travels.
ldd "$D"/fuzz_* | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
    grep -Ev '/(libc|libm|libpthread|libdl|librt|libresolv|libutil|ld-linux[^/]*)\.so' |
    while read -r l; do cp -L "$l" "$D/lib/"; done
cp -r "$SRC"/corpus/* "$D/corpus/"
cp "$SRC/run_long.sh" "$D/"
chmod +x "$D/run_long.sh"
echo "bundle: $n targets, $(ls "$D/lib" | wc -l) libraries, $(du -sh "$D" | cut -f1) in $(cd "$D" && pwd)"
