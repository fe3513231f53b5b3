#!/usr/bin/env bash
# Decompresses the xz-stored test fixtures next to themselves (the big tokenizer.json files are
# committed compressed). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
find tests/data -name '*.xz' -print0 | while IFS= read -r -d '' f; do
  out="${f%.xz}"
  if [ ! -f "$out" ] || [ "$f" -nt "$out" ]; then xz -dkf "$f"; fi
done
