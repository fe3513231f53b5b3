#!/usr/bin/env bash
# scripts/long_functions.sh [N]: the functions of src/ longer than N lines (default 100), longest
# first, as "lines file:line name". Keep functions under about 100 lines unless a table or a kernel
# reads better whole (STYLE.md); this is the list to look at, not a test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec python3 "$root/tools/deps_graph.py" --root "$root" --long "${1:-100}"
