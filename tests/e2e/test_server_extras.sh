#!/usr/bin/env bash
# tests/e2e/test_server_extras.sh: the server's completeness items (issue 19 item 3) against real
# `locallm serve` processes: GET /v1/models/{id} (and OpenAI's 404 for another id), logprobs
# checked against `locallm eval` (tests/e2e/logprobs_check.py), --chat-template FILE and a
# built-in name on a model without a template (stories260K), --host with a host name, and
# --cors (preflight, Access-Control-Allow-Origin for listed origins only, bad values).
# Usage: test_server_extras.sh /path/to/locallm   (env: LM_SOURCE_DIR = the repository)
set -euo pipefail

CLI=${1:?usage: test_server_extras.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
STORIES=$SRC/models/stories260K.gguf
TMP=$(mktemp -d)
E2E_SHOW='body headers log'
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT

has_header() { grep -qi "^$1" "$TMP/headers" || fail "missing header '$1' ($2)"; pass; }
no_header() { ! grep -qi "^$1" "$TMP/headers" || fail "unexpected header '$1' ($2)"; pass; }

# ---- /v1/models/{id} and logprobs, on tinychat, with --host localhost ----
serve_start "$MODEL" --host localhost --cors http://localhost:3000,https://app.example --cors http://127.0.0.1:5173
[[ $SERVED_HOST == localhost ]] || fail "--host localhost: listening on '$SERVED_HOST'"
pass
code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 5 "http://localhost:${BASE##*:}/health")
expect_code 200 "/health through the name localhost"

req GET /v1/models/tinychat
expect_code 200 "GET /v1/models/tinychat"
jcheck 'j["id"] == "tinychat" and j["object"] == "model" and j["owned_by"] == "locallm" and isinstance(j["created"], int)'
req GET /v1/models/gpt-4o
expect_code 404 "GET /v1/models/gpt-4o"
jcheck 'j["error"]["code"] == "model_not_found" and j["error"]["type"] == "invalid_request_error" and "gpt-4o" in j["error"]["message"]'
req POST /v1/models/tinychat '{}'
expect_code 405 "POST /v1/models/tinychat"

python3 "$SRC/tests/e2e/logprobs_check.py" "$CLI" "$MODEL" "$BASE" || fail "logprobs against eval"
pass
# bad logprobs fields are 400s naming the field
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}'
expect_code 400 "top_logprobs without logprobs"
jcheck 'j["error"]["param"] == "top_logprobs"'
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21}'
expect_code 400 "top_logprobs 21"
req POST /v1/completions '{"prompt":"hi","logprobs":6}'
expect_code 400 "completions logprobs 6"
jcheck 'j["error"]["param"] == "logprobs"'
# without logprobs the field is null
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
jcheck 'j["choices"][0]["logprobs"] is None'

# ---- --cors ----
req OPTIONS /v1/chat/completions '' -H 'Origin: http://localhost:3000' -H 'Access-Control-Request-Method: POST' \
    -H 'Access-Control-Request-Headers: authorization, content-type'
expect_code 204 "preflight from a listed origin"
grep -qi '^Access-Control-Allow-Origin: http://localhost:3000' "$TMP/headers" || fail "preflight: allow-origin"
grep -qi '^Access-Control-Allow-Methods: .*POST' "$TMP/headers" || fail "preflight: allow-methods"
grep -qi '^Access-Control-Allow-Headers: authorization, content-type' "$TMP/headers" || fail "preflight: allow-headers"
pass
req OPTIONS /api/chat '' -H 'Origin: http://127.0.0.1:5173' -H 'Access-Control-Request-Method: POST'
expect_code 204 "preflight from the second --cors value"
req OPTIONS /v1/chat/completions '' -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: POST'
expect_code 403 "preflight from an origin not listed"
no_header 'Access-Control-Allow-Origin' "preflight from an origin not listed"
req GET /v1/models '' -H 'Origin: https://app.example'
expect_code 200 "GET from a listed origin"
grep -qi '^Access-Control-Allow-Origin: https://app.example' "$TMP/headers" || fail "allow-origin on a GET"
has_header 'Vary: Origin' "GET from a listed origin"
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"stream":true}' \
    -H 'Origin: http://localhost:3000'
grep -qi '^Access-Control-Allow-Origin: http://localhost:3000' "$TMP/headers" || fail "allow-origin on a stream"
pass
req GET /v1/models
no_header 'Access-Control-Allow-Origin' "a request without Origin"
serve_stop

rc=0; "$CLI" serve "$MODEL" --port 0 --cors localhost:3000 >"$TMP/body" 2>&1 || rc=$?
[[ $rc -eq 2 ]] && grep -q "not an origin" "$TMP/body" || fail "--cors localhost:3000: exit $rc"
pass
rc=0; "$CLI" serve "$MODEL" --port 0 --cors http://localhost:3000/ >"$TMP/body" 2>&1 || rc=$?
[[ $rc -eq 2 ]] && grep -q "not an origin" "$TMP/body" || fail "--cors with a path: exit $rc"
pass

# ---- --chat-template on a model without one (stories260K) ----
serve_start "$STORIES"
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":4}'
expect_code 400 "chat on a model without a template"
jcheck '"chat template" in j["error"]["message"]'
serve_stop

printf '%s' '{% for m in messages %}{{ m.role }}: {{ m.content }}
{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}' >"$TMP/plain.jinja"
serve_start "$STORIES" --chat-template "$TMP/plain.jinja"
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0}'
expect_code 200 "chat with --chat-template FILE"
cp "$TMP/body" "$TMP/chat.json"
# the chat is the plain completion of what the template renders, token for token
req POST /v1/completions "{\"prompt\":\"user: Once upon a time\\nassistant:\",\"max_tokens\":8,\"temperature\":0}"
expect_code 200 "the rendered prompt as a completion"
python3 - "$TMP/chat.json" "$TMP/body" <<'EOF' || fail "the chat reply is not the completion of the rendered template"
import json, sys
chat = json.load(open(sys.argv[1]))["choices"][0]["message"]["content"]
text = json.load(open(sys.argv[2]))["choices"][0]["text"]
print(f"test_server_extras: --chat-template FILE: {chat!r}")
sys.exit(0 if chat and chat == text else 1)
EOF
pass
req POST /api/show '{"model":"stories260K.gguf"}'
jcheck 'j["template"].startswith("{% for m in messages %}")'
serve_stop

serve_start "$STORIES" --chat-template chatml
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":4,"temperature":0}'
expect_code 200 "chat with --chat-template chatml"
req POST /api/show '{"model":"stories260K.gguf"}'
jcheck '"<|im_start|>" in j["template"]'
serve_stop

rc=0; "$CLI" serve "$STORIES" --port 0 --chat-template "$TMP/missing.jinja" >"$TMP/body" 2>&1 || rc=$?
[[ $rc -eq 2 ]] && grep -q "neither a built-in format" "$TMP/body" || fail "--chat-template missing file: exit $rc"
pass
echo "test_server_extras: $n_checks checks passed"
