#!/usr/bin/env bash
# tests/e2e/test_server_input.sh: hostile request bodies against a real `locallm serve` on
# models/tinychat (issue 20): a NUL (\u0000) in content, role or prompt is a 400 naming the field
# instead of text cut short (finding 8); text after the JSON body is a 400 (finding 8); an error
# that quotes invalid UTF-8 or control characters from the request is valid UTF-8 JSON (finding
# 9); the server keeps serving good requests. Then `serve --host 0.0.0.0` without an API key
# warns on stderr, with one or on loopback it does not (finding 15).
# Usage: test_server_input.sh /path/to/locallm   (env: LM_SOURCE_DIR = the repository)
set -euo pipefail

CLI=${1:?usage: test_server_input.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
TMP=$(mktemp -d)
E2E_SHOW='body log'
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT

start() { serve_listen "$MODEL" "$@"; }
# stop: SIGTERM, whatever the exit (some of these servers are stopped while their model loads)
stop() {
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
}
# post PATH BODY_FILE: status into $code, body into $TMP/body.
post() {
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' \
        --data-binary "@$2" "$BASE$1")
}
# expect400 PATH BODY_FILE PARAM MESSAGE_PIECE: a 400 in OpenAI's shape, the body strict UTF-8.
expect400() {
    post "$1" "$2"
    [[ $code == 400 ]] || fail "$2: HTTP $code, want 400"
    python3 - "$TMP/body" "$3" "$4" <<'EOF' || fail "$2: error body"
import json, sys
raw = open(sys.argv[1], "rb").read()
e = json.loads(raw.decode("utf-8", errors="strict"))["error"]
assert e["param"] == (sys.argv[2] or None), e
assert sys.argv[3] in e["message"], e["message"]
assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f for ch in e["message"]), repr(e["message"])
EOF
    pass
}
body() { printf '%s' "$2" >"$TMP/$1"; }

start --threads 1
serve_ready

# ---- NUL inside strings (finding 8) ----
body nul_content '{"messages":[{"role":"user","content":"Hello\u0000 world, this text must not vanish"}],"max_tokens":4}'
expect400 /v1/chat/completions "$TMP/nul_content" "messages[0].content" "'messages[0].content' must not contain a NUL character"
body nul_role '{"messages":[{"role":"user\u0000evil","content":"hi"}],"max_tokens":4}'
expect400 /v1/chat/completions "$TMP/nul_role" "messages[0].role" "'messages[0].role' must not contain a NUL character"
body nul_prompt '{"prompt":"Once upon\u0000 a time","max_tokens":4}'
expect400 /v1/completions "$TMP/nul_prompt" "prompt" "'prompt' must not contain a NUL character"

# ---- text after the body (finding 8) ----
body trailing '{"messages":[{"role":"user","content":"hi"}],"max_tokens":4} xyz'
expect400 /v1/chat/completions "$TMP/trailing" "" "unexpected text after the JSON value at byte 61"

# ---- invalid UTF-8 and control characters quoted back (finding 9) ----
printf '{"messages":[{"role":"us\xff\xfeer","content":"hi"}],"max_tokens":4}' >"$TMP/bad_utf8"
expect400 /v1/chat/completions "$TMP/bad_utf8" "messages[0].role" "unknown role 'us\\xff\\xfeer'"
body ctl_role '{"messages":[{"role":"\u001b]0;owned\u0007","content":"hi"}],"max_tokens":4}'
expect400 /v1/chat/completions "$TMP/ctl_role" "messages[0].role" "unknown role '\\x1b]0;owned\\x07'"

# ---- the server still answers, and the good request's content arrives whole ----
body good '{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":8,"temperature":0}'
post /v1/chat/completions "$TMP/good"
[[ $code == 200 ]] || fail "a good request after the bad ones: HTTP $code"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["usage"]["prompt_tokens"] > 10, j' "$TMP/body" ||
    fail "prompt tokens of the good request"
pass
stop

# ---- --host 0.0.0.0 without an API key warns (finding 15) ----
WARN="without an API key: anyone who can reach this address can use the model"
start --host 0.0.0.0
grep -q "locallm serve: warning: listening on 0.0.0.0 $WARN" "$TMP/log" || fail "no warning for --host 0.0.0.0"
stop
pass
start --host 0.0.0.0 --api-key sekret
grep -q "$WARN" "$TMP/log" && fail "a warning despite --api-key"
stop
LOCALLM_API_KEY=sekret start --host 0.0.0.0
grep -q "$WARN" "$TMP/log" && fail "a warning despite LOCALLM_API_KEY"
stop
start --host 127.0.0.1
grep -q "$WARN" "$TMP/log" && fail "a warning on loopback"
stop
pass

echo "test_server_input: $n_checks checks passed"
