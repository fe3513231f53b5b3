#!/usr/bin/env bash
# tests/e2e/test_ollama.sh: `locallm serve`'s Ollama API, driven by the official Ollama JavaScript
# client and by curl.
# Usage: test_ollama.sh /path/to/locallm   (env: LM_SOURCE_DIR, LM_BUILD_DIR, LOCALLM_NPM_CACHE)
# Installs the npm package `ollama` (pinned below) into $LM_BUILD_DIR/npm-ollama (or
# $LOCALLM_NPM_CACHE) once and runs tests/e2e/ollama_client.mjs against a server on tinychat with
# an API key: version, list, show, chat and generate (streamed and not), options, format "json"
# and a JSON Schema, tool calls, logprobs, the load request and errors. Then curl checks the bytes:
# NDJSON framing and content type, the final object's fields, and {"error": ...} bodies.
# This test cannot be skipped: without node, npm or the client package it fails.
set -euo pipefail

CLI=${1:?usage: test_ollama.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
OLLAMA_VERSION=0.6.4
CLIENT_DIR=${LOCALLM_NPM_CACHE:-${LM_BUILD_DIR:-${TMPDIR:-/tmp}}/npm-ollama}

TMP=$(mktemp -d)
E2E_SHOW='body headers log'
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT

command -v node >/dev/null 2>&1 || fail "node is not installed (scripts/deps.sh installs it)"
command -v npm >/dev/null 2>&1 || fail "npm is not installed (scripts/deps.sh installs it)"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[[ $node_major -ge 18 ]] || fail "node $node_major is too old (18 or later is needed)"
installed=$(node -p "require('$CLIENT_DIR/node_modules/ollama/package.json').version" 2>/dev/null || true)
if [[ $installed != "$OLLAMA_VERSION" ]]; then
    mkdir -p "$CLIENT_DIR"
    echo "installing ollama@$OLLAMA_VERSION into $CLIENT_DIR"
    if ! timeout 300 npm install --prefix "$CLIENT_DIR" --no-audit --no-fund --no-save --silent \
        "ollama@$OLLAMA_VERSION" >"$CLIENT_DIR/install.log" 2>&1; then
        tail -5 "$CLIENT_DIR/install.log" >&2 || true
        fail "npm install ollama@$OLLAMA_VERSION failed (offline? the test needs the client)"
    fi
fi

KEY=ollama-test-key-$$
serve_start "$MODEL" --parallel 2 --api-key "$KEY"

timeout 300 node "$SRC/tests/e2e/ollama_client.mjs" "$CLIENT_DIR" "$BASE" "$KEY" || fail "ollama_client.mjs"
pass

# ---- bytes on the wire ----
AUTH=(-H "Authorization: Bearer $KEY")
# req METHOD PATH [BODY]: body into $TMP/body, headers into $TMP/headers, status into $code.
req() {
    local data=()
    [[ -n ${3:-} ]] && data=(--data-binary "$3")
    code=$(curl -sN -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' --max-time 60 -X "$1" "${AUTH[@]}" \
        "${data[@]}" "$BASE$2")
}
FRANCE='{"role":"system","content":"You are a helpful voice assistant."},{"role":"user","content":"What is the capital of France?"}'

# streamed by default: NDJSON, one object per line, each line ending in \n, nothing else
req POST /api/chat "{\"model\":\"tinychat\",\"messages\":[$FRANCE],\"options\":{\"temperature\":0}}"
[[ $code == 200 ]] || fail "streamed /api/chat: $code"
grep -qi '^Content-Type: application/x-ndjson' "$TMP/headers" || fail "streamed content type"
python3 - "$TMP/body" <<'EOF' || fail "NDJSON framing of /api/chat"
import json, sys
raw = open(sys.argv[1], "rb").read()
assert raw.endswith(b"\n") and b"\r" not in raw and b"data:" not in raw, raw[:200]
lines = raw[:-1].split(b"\n")
objs = [json.loads(l) for l in lines]
assert all(isinstance(o, dict) for o in objs)
assert [o["done"] for o in objs] == [False] * (len(objs) - 1) + [True]
for o in objs[:-1]:
    assert set(o) == {"model", "created_at", "message", "done"}, o
    assert set(o["message"]) == {"role", "content"} and o["message"]["role"] == "assistant", o
last = objs[-1]
assert set(last) == {"model", "created_at", "message", "done", "done_reason", "total_duration", "load_duration",
                     "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"}, sorted(last)
assert last["message"] == {"role": "assistant", "content": ""} and last["done_reason"] == "stop"
assert "".join(o["message"]["content"] for o in objs) == "The capital of France is Paris."
assert last["eval_count"] == len(objs) - 1 and last["prompt_eval_count"] == 27
# created_at: RFC 3339 in UTC with nanoseconds, as Ollama writes it
import re
assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", o["created_at"]) for o in objs)
EOF
pass
# "stream": false: one JSON object (not NDJSON), the whole reply in it
req POST /api/generate '{"model":"tinychat","prompt":"What is the capital of France?","system":"You are a helpful voice assistant.","stream":false,"options":{"temperature":0}}'
[[ $code == 200 ]] || fail "/api/generate stream false: $code"
grep -qi '^Content-Type: application/json' "$TMP/headers" || fail "non-streamed content type"
python3 - "$TMP/body" <<'EOF' || fail "non-streamed /api/generate body"
import json, sys
raw = open(sys.argv[1], "rb").read()
assert raw.count(b"\n") == 0, raw
o = json.loads(raw)
assert o["response"] == "The capital of France is Paris." and o["done"] is True and o["done_reason"] == "stop", o
assert "message" not in o
EOF
pass
# errors are {"error": "..."} with the HTTP status
err() {
    [[ $code == "$1" ]] || fail "$2: expected $1, got $code"
    python3 - "$TMP/body" "$3" <<'EOF' || fail "$2: error body"
import json, sys
o = json.load(open(sys.argv[1]))
assert list(o) == ["error"] and sys.argv[2] in o["error"], o
EOF
    pass
}
req POST /api/chat '{"model":"tinychat","messages":['
err 400 "malformed JSON" "request body"
req POST /api/chat '{"messages":[]}'
err 400 "no model" "model is required"
req POST /api/chat "{\"model\":\"llama3.2:1b\",\"messages\":[$FRANCE]}"
err 404 "unknown model" 'model "llama3.2:1b" not found'
req POST /api/generate '{"model":"tinychat","prompt":"hi","images":["aGk="]}'
err 400 "images" "text only"
req POST /api/generate '{"model":"tinychat","prompt":"def f(","suffix":"  return x"}'
err 400 "suffix" "'suffix' is not supported"
req POST /api/chat "{\"model\":\"tinychat\",\"messages\":[$FRANCE],\"think\":true}"
err 400 "think" "does not support thinking"
req POST /api/chat "{\"model\":\"tinychat\",\"messages\":[$FRANCE],\"options\":{\"num_predict\":1e12}}"
err 400 "num_predict out of range" "num_predict"
req POST /api/chat "{\"model\":\"tinychat\",\"messages\":[$FRANCE],\"format\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\",\"pattern\":\"^a\"}}}}"
err 400 "unsupported schema keyword" "format: \$.properties.x: keyword 'pattern' is not supported"
req GET /api/chat
err 405 "GET /api/chat" "method GET is not allowed"
grep -qi '^Allow: POST' "$TMP/headers" || fail "405 without Allow"
req POST /api/tags '{}'
err 405 "POST /api/tags" "use GET"
req GET /api/pull
err 404 "unknown /api path" "no such path"
AUTH=()
req GET /api/tags
err 401 "no API key" "invalid or missing API key"
# GET / answers as Ollama's does (clients probe it)
code=$(curl -s -o "$TMP/body" -w '%{http_code}' "$BASE/")
[[ $code == 200 ]] && grep -q "Ollama is running" "$TMP/body" || fail "GET /: $code"
code=$(curl -s -o /dev/null -I -w '%{http_code}' "$BASE/")
[[ $code == 200 ]] || fail "HEAD /: $code"
pass
# a request without options runs until the model stops (num_predict -1); tinychat stops long
# before any cap, so this checks the defaults work, not the absence of a cap
AUTH=(-H "Authorization: Bearer $KEY")
req POST /api/generate '{"model":"tinychat","prompt":"Once upon","raw":true,"stream":false,"options":{"temperature":0}}'
python3 - "$TMP/body" <<'EOF' || fail "raw generate without num_predict"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["done_reason"] == "stop" and o["eval_count"] > 6 and o["prompt_eval_count"] == 4, o
EOF
pass

serve_stop
echo "test_ollama: $n_checks checks passed"
