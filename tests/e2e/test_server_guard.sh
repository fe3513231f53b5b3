#!/usr/bin/env bash
# tests/e2e/test_server_guard.sh: what `locallm serve` refuses before a request reaches the model
# (issue 20, findings 1, 2, 3, 5, 9, 10 and 14), against real servers on models/tinychat: DNS
# rebinding (Host, --allow-host, Origin), HTTP edges answered in OpenAI's error JSON, read
# deadlines and the per-address caps beside 300 trickling connections, the API key checked before
# an 8 MB body is read, the cap on messages and a hang-up while a long conversation is prepared,
# and queued requests whose client left. The checks are in server_guard.py (standard-library
# Python over raw sockets), which starts and stops the servers.
# Usage: test_server_guard.sh /path/to/locallm   (env: LM_SOURCE_DIR = the repository)
set -euo pipefail

CLI=${1:?usage: test_server_guard.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
exec python3 "$SRC/tests/e2e/server_guard.py" "$CLI" "$SRC/models/tinychat" rebinding edges slow auth messages queue
