#!/usr/bin/env bash
# tests/e2e/test_providers.sh: the OpenAI-compatible provider and the fallback chain, end to end.
# Usage: test_providers.sh /path/to/locallm   (env: LM_SOURCE_DIR = the repository)
# The "cloud" is a second real `locallm serve` process on the embedded tinychat model, with an
# API key. `locallm chat --provider/--fallback` must stream the same greedy replies the local
# model gives; a wrong key, a dead port and a server that accepts but never answers give clear
# errors within the configured timeout; the fallback chain answers from whoever is up and names
# it; `locallm serve --fallback` answers from the cloud while its own model is missing or fails.
# Everything is loopback and bounded in time.
set -euo pipefail

CLI=${1:?usage: test_providers.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
TMP=$(mktemp -d)
E2E_SHOW='out err body *.log'
. "$(dirname "$0")/lib.sh"
PIDS=()
SERVERS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT


# serve NAME ARGS...: starts `locallm serve ARGS --port 0` in the background, logging to
# $TMP/NAME.log; sets PORT to its port once it listens (it may still be loading).
serve() {
    local name=$1
    shift
    : >"$TMP/$name.log" # exists before the first read below (the background redirection may lag)
    "$CLI" serve "$@" --port 0 2>"$TMP/$name.log" &
    PIDS+=($!)
    SERVERS+=("$!:$name")
    listen_port "$TMP/$name.log" "$!" "serve $name"
}
# serve_up NAME ARGS...: serve, then waits until its model is ready (lib.sh's serve_ready).
serve_up() {
    serve "$@"
    BASE=http://127.0.0.1:$PORT serve_ready
}
# A loopback port nothing listens on (bound, then closed).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# chat INPUT ARGS...: runs `locallm chat ARGS` with INPUT on stdin; $rc, $TMP/out, $TMP/err.
chat() {
    local input=$1
    shift
    rc=0
    printf '%s' "$input" | "$CLI" chat "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
}
has_err() { grep -qF -- "$1" "$TMP/err" || fail "$2: stderr does not mention '$1'"; }

INPUT=$'Hi\nWhat is the capital of France?\n'

# ---- the reference: what the local model says (greedy) ----
chat "$INPUT" "$MODEL"
[[ $rc -eq 0 ]] || fail "local chat exited $rc"
cp "$TMP/out" "$TMP/want"
printf '%s\n' "Hello! How can I help you today?" "The capital of France is Paris." | cmp -s - "$TMP/want" ||
    fail "local chat: not the greedy reference replies"
pass

# ---- the cloud: a second locallm serve with an API key ----
export LM_TEST_CLOUD_KEY=sekrit-test-key
serve_up cloud "$MODEL" --api-key "$LM_TEST_CLOUD_KEY"
CLOUD_PORT=$PORT
CLOUD=(--base-url "http://127.0.0.1:$CLOUD_PORT/v1" --model tinychat --api-key-env LM_TEST_CLOUD_KEY)
DEAD_PORT=$(free_port)

# --provider: the same replies, streamed from the cloud; -v names the provider and passes the
# server's usage through (the second turn reuses the cloud slot's prefix).
chat "$INPUT" --provider cloud "${CLOUD[@]}" -v
[[ $rc -eq 0 ]] || fail "chat --provider cloud exited $rc"
cmp -s "$TMP/out" "$TMP/want" || fail "chat --provider cloud: replies differ from the local ones"
pass
[[ $(grep -c '^prompt: .*| provider: cloud$' "$TMP/err") -eq 2 ]] || fail "chat --provider -v: two stats lines naming the provider"
pass
cached=$(grep '^prompt: ' "$TMP/err" | sed -n 2p | sed -E 's/.*\(([0-9]+) cached.*/\1/')
[[ $cached -gt 0 ]] || fail "chat --provider: the second turn reports no cached prompt tokens"
pass
has_err "provider cloud: http://127.0.0.1:$CLOUD_PORT/v1, model tinychat" "chat --provider -v"
pass
# Sampling fields travel: a stop string cut by the server never reaches the client; max_tokens.
chat $'What is the capital of France?\n' --provider cloud "${CLOUD[@]}" --stop " Paris"
[[ $rc -eq 0 && $(cat "$TMP/out") == "The capital of France is" ]] || fail "chat --provider --stop: $(cat "$TMP/out")"
pass
chat $'What is the capital of France?\n' --provider cloud "${CLOUD[@]}" -n 2
[[ $rc -eq 0 && $(cat "$TMP/out") == "The capital" ]] || fail "chat --provider -n 2: $(cat "$TMP/out")"
pass

# A wrong key: HTTP 401 with the server's own message.
LM_TEST_CLOUD_KEY=wrong chat $'Hi\n' --provider cloud "${CLOUD[@]}"
[[ $rc -eq 1 ]] || fail "wrong key: exit $rc"
has_err "locallm: error: generation failed: cloud: HTTP 401 from http://127.0.0.1:$CLOUD_PORT/v1/chat/completions" "wrong key"
has_err "invalid or missing API key" "wrong key"
[[ ! -s $TMP/out || $(tr -d '\n' <"$TMP/out") == "" ]] || fail "wrong key: something on stdout"
pass
# The variable not set: a note, then the 401.
env -u LM_TEST_CLOUD_KEY "$CLI" chat --provider cloud "${CLOUD[@]}" <<<"Hi" >"$TMP/out" 2>"$TMP/err" && rc=0 || rc=$?
[[ $rc -eq 1 ]] || fail "unset key: exit $rc"
has_err '$LM_TEST_CLOUD_KEY is not set' "unset key"
has_err "HTTP 401" "unset key"
pass

# A dead port: a connection error naming the provider and the URL.
chat $'Hi\n' --provider dead --base-url "http://127.0.0.1:$DEAD_PORT/v1" --model x
[[ $rc -eq 1 ]] || fail "dead port: exit $rc"
has_err "generation failed: dead: http://127.0.0.1:$DEAD_PORT/v1/chat/completions: Couldn't connect to server" "dead port"
pass

# A server that accepts and never answers: reported within --timeout.
python3 - "$TMP/silent.port" <<'EOF' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
held = []
s.settimeout(60)
end = time.time() + 60
while time.time() < end:
    try:
        c, _ = s.accept()
        held.append(c)  # read nothing, answer nothing
    except socket.timeout:
        break
EOF
PIDS+=($!)
for _ in $(seq 1 50); do [[ -s $TMP/silent.port ]] && break; sleep 0.1; done
SILENT_PORT=$(cat "$TMP/silent.port")
t0=$(date +%s.%N)
chat $'Hi\n' --provider silent --base-url "http://127.0.0.1:$SILENT_PORT/v1" --model x --timeout 1.5
t1=$(date +%s.%N)
[[ $rc -eq 1 ]] || fail "silent server: exit $rc"
has_err "silent: no answer from http://127.0.0.1:$SILENT_PORT/v1/chat/completions within 1500 ms" "silent server"
python3 -c "import sys; d = $t1 - $t0; sys.exit(0 if 1.4 <= d <= 5.0 else 1)" || fail "silent server: took $(python3 -c "print($t1 - $t0)") s with --timeout 1.5"
pass

# ---- the fallback chain in chat ----
# The local model is missing: the cloud answers, and stderr says so.
chat "$INPUT" "$TMP/no-such-model" --fallback cloud "${CLOUD[@]}" -v
[[ $rc -eq 0 ]] || fail "fallback, local missing: exit $rc"
cmp -s "$TMP/out" "$TMP/want" || fail "fallback, local missing: replies differ"
has_err "the local model is unavailable (cannot load model" "fallback, local missing"
has_err "locallm chat: answered by cloud (local: cannot load model" "fallback, local missing"
[[ $(grep -c '| provider: cloud$' "$TMP/err") -eq 2 ]] || fail "fallback, local missing: stats name the cloud"
pass
# The cloud is dead but the local model is fine: local answers, no note.
chat "$INPUT" "$MODEL" --fallback dead --base-url "http://127.0.0.1:$DEAD_PORT/v1" -v
[[ $rc -eq 0 ]] || fail "fallback, cloud dead: exit $rc"
cmp -s "$TMP/out" "$TMP/want" || fail "fallback, cloud dead: replies differ"
[[ $(grep -c '| provider: local$' "$TMP/err") -eq 2 ]] || fail "fallback, cloud dead: stats name local"
! grep -q "answered by" "$TMP/err" || fail "fallback, cloud dead: a fallback note although local answered"
pass
# Both down: one error naming both.
chat $'Hi\n' "$TMP/no-such-model" --fallback dead --base-url "http://127.0.0.1:$DEAD_PORT/v1"
[[ $rc -eq 1 ]] || fail "both down: exit $rc"
has_err "locallm: error: generation failed: local: cannot load model" "both down"
has_err "no provider could answer: dead: http://127.0.0.1:$DEAD_PORT/v1/chat/completions: Couldn't connect to server" "both down"
pass
# A providers file: a dead provider first, then the cloud; the order is kept and both named.
cat >"$TMP/providers.json" <<EOF
{"providers": [
  {"name": "down", "base_url": "http://127.0.0.1:$DEAD_PORT/v1", "model": "x"},
  {"name": "cloud2", "base_url": "http://127.0.0.1:$CLOUD_PORT/v1", "model": "tinychat", "api_key_env": "LM_TEST_CLOUD_KEY"}
]}
EOF
chat $'Hi\n' "$TMP/no-such-model" --providers "$TMP/providers.json" --fallback down,cloud2
[[ $rc -eq 0 && $(cat "$TMP/out") == "Hello! How can I help you today?" ]] || fail "providers file: exit $rc, $(cat "$TMP/out")"
has_err "answered by cloud2 (local: cannot load model" "providers file"
has_err "down: http://127.0.0.1:$DEAD_PORT/v1/chat/completions: Couldn't connect to server" "providers file"
pass
# The default config file ($XDG_CONFIG_HOME/locallm/providers.json) is read too.
mkdir -p "$TMP/xdg/locallm"
cp "$TMP/providers.json" "$TMP/xdg/locallm/providers.json"
XDG_CONFIG_HOME=$TMP/xdg chat $'Hi\n' --provider cloud2
[[ $rc -eq 0 && $(cat "$TMP/out") == "Hello! How can I help you today?" ]] || fail "default config file: exit $rc"
pass
# Built-in providers resolve without a file (nothing is sent: no input).
HOME=$TMP XDG_CONFIG_HOME=$TMP/none "$CLI" chat --provider groq -v </dev/null >"$TMP/out" 2>"$TMP/err" || fail "--provider groq with no input"
has_err "provider groq: https://api.groq.com/openai/v1, model" "built-in groq"
pass
HOME=$TMP XDG_CONFIG_HOME=$TMP/none "$CLI" chat --provider openai -v </dev/null >"$TMP/out" 2>"$TMP/err" || fail "--provider openai with no input"
has_err "provider openai: https://api.openai.com/v1, model" "built-in openai"
pass
# Usage errors.
expect_usage() {
    local piece=$1
    shift
    rc=0
    HOME=$TMP XDG_CONFIG_HOME=$TMP/none "$CLI" "$@" </dev/null >"$TMP/out" 2>"$TMP/err" || rc=$?
    [[ $rc -eq 2 ]] || fail "locallm $*: exit $rc, expected 2"
    has_err "$piece" "locallm $*"
    pass
}
expect_usage "unknown provider 'nowhere'" chat --provider nowhere
expect_usage "--base-url: 'ftp://x' must start with http:// or https://" chat --provider x --base-url ftp://x
expect_usage "need --provider or --fallback" chat --base-url http://127.0.0.1:1/v1
expect_usage "--provider answers instead of a local model" chat "$MODEL" --provider openai
expect_usage "--timeout: 'soon' is not a number" chat --provider openai --timeout soon
expect_usage "need --fallback" serve --model x
rc=0; "$CLI" chat --providers "$TMP/nothing.json" --provider openai </dev/null >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 1 ]] || fail "missing providers file: exit $rc"
has_err "nothing.json" "missing providers file"
pass
echo '[{"name": "bad", "base_url": 5}]' >"$TMP/bad.json"
rc=0; "$CLI" chat --providers "$TMP/bad.json" --provider bad </dev/null >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 1 ]] || fail "bad providers file: exit $rc"
has_err "bad.json: provider 0: 'base_url' must be a string" "bad providers file"
pass

# ---- serve --fallback ----
SYS='{"role":"system","content":"You are a helpful voice assistant."}'
FRANCE="{\"temperature\":0,\"messages\":[$SYS,{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}"
post() { # PORT BODY [curl args]: status in $code, body in $TMP/body, headers in $TMP/headers
    local port=$1 body=$2
    shift 2
    code=$(curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' --max-time 60 \
        -H 'Content-Type: application/json' --data-binary "$body" "$@" "http://127.0.0.1:$port/v1/chat/completions")
}

# Its own model is missing: chat goes to the cloud; /health still says why the model is missing.
serve nomodel "$TMP/no-such-model" --fallback cloud "${CLOUD[@]}"
NOMODEL_PORT=$PORT
for _ in $(seq 1 50); do
    curl -s -o "$TMP/body" --max-time 5 "http://127.0.0.1:$NOMODEL_PORT/health"
    grep -q '"status":"error"' "$TMP/body" && break
    sleep 0.1
done
jcheck 'j["status"] == "error" and "no-such-model" in j["message"] and j["fallback"] == ["cloud"]'
post "$NOMODEL_PORT" "$FRANCE"
[[ $code == 200 ]] || fail "serve --fallback, no model: HTTP $code"
jcheck 'j["choices"][0]["message"] == {"role": "assistant", "content": "The capital of France is Paris."}'
jcheck 'j["provider"] == "cloud" and j["model"] == "tinychat" and j["usage"]["prompt_tokens"] == 27'
grep -qi '^x-locallm-provider: cloud' "$TMP/headers" || fail "serve --fallback: no x-locallm-provider header"
pass
curl -sN --max-time 60 -D "$TMP/headers" -d "${FRANCE%\}},\"stream\":true,\"stream_options\":{\"include_usage\":true}}" \
    "http://127.0.0.1:$NOMODEL_PORT/v1/chat/completions" >"$TMP/body" || fail "serve --fallback stream"
grep -qi '^x-locallm-provider: cloud' "$TMP/headers" || fail "serve --fallback stream: header"
python3 - "$TMP/body" <<'EOF' || fail "serve --fallback: SSE from the cloud"
import json, sys
raw = open(sys.argv[1]).read()
assert raw.endswith("data: [DONE]\n\n")
chunks = [json.loads(f[6:]) for f in raw.split("\n\n")[:-2]]
assert all(c["provider"] == "cloud" and c["model"] == "tinychat" for c in chunks)
assert chunks[0]["choices"][0]["delta"]["content"], "first chunk carries content"
assert len(chunks) > 3, "streamed in pieces"
text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
assert text == "The capital of France is Paris.", text
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 27
EOF
pass
# Its model is still loading (tests/e2e/slow_open.c, preloaded, holds open() of loading.gguf
# until loading.gguf.go exists): the cloud answers meanwhile and /health says "loading".
${CC:-cc} -shared -fPIC -O1 -o "$TMP/slow_open.so" "$SRC/tests/e2e/slow_open.c" -ldl || fail "cannot build slow_open.so"
cp "$SRC/tests/data/stories260K/stories260K-q8_0.gguf" "$TMP/loading.gguf"
LD_PRELOAD=$TMP/slow_open.so ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
    serve loading "$TMP/loading.gguf" --fallback cloud "${CLOUD[@]}"
LOADING_PORT=$PORT
curl -s -o "$TMP/body" --max-time 5 "http://127.0.0.1:$LOADING_PORT/health"
jcheck 'j["status"] == "loading" and j["fallback"] == ["cloud"]'
post "$LOADING_PORT" "$FRANCE"
[[ $code == 200 ]] || fail "serve --fallback while loading: HTTP $code"
jcheck 'j["provider"] == "cloud" and j["choices"][0]["message"]["content"] == "The capital of France is Paris."'
grep -q "the local model is still loading: asking cloud" "$TMP/loading.log" || fail "serve --fallback while loading: not logged"
pass
# Let the load finish so the server can stop.
touch "$TMP/loading.gguf.go"

# Tool calls from the cloud come back as tool calls (the provider hands them on as Hermes text,
# which the server parses like a local model's): refs.json weather_call and time_call.
TOOLS='[{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The name of the city, e.g. Paris"}}, "required": ["city"]}}}, {"type": "function", "function": {"name": "get_time", "description": "Get the current local time in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The name of the city, e.g. Tokyo"}}, "required": ["city"]}}}]'
post "$NOMODEL_PORT" "{\"temperature\":0,\"tools\":$TOOLS,\"messages\":[{\"role\":\"user\",\"content\":\"What's the weather in Paris?\"}]}"
[[ $code == 200 ]] || fail "serve --fallback tool call: HTTP $code"
jcheck 'j["provider"] == "cloud" and j["choices"][0]["finish_reason"] == "tool_calls" and j["choices"][0]["message"]["content"] is None'
jcheck '(lambda t: len(t) == 1 and t[0]["function"]["name"] == "get_weather" and json.loads(t[0]["function"]["arguments"]) == {"city": "Paris"})(j["choices"][0]["message"]["tool_calls"])'
curl -sN --max-time 60 -d "{\"temperature\":0,\"stream\":true,\"tools\":$TOOLS,\"messages\":[{\"role\":\"user\",\"content\":\"What time is it in Tokyo?\"}]}" \
    "http://127.0.0.1:$NOMODEL_PORT/v1/chat/completions" >"$TMP/body" || fail "serve --fallback streamed tool call"
sse_check "serve --fallback: streamed tool call from the cloud" <<'EOF'
assert not "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
calls = [t for c in chunks for t in c["choices"][0]["delta"].get("tool_calls", [])]
assert len(calls) == 1 and calls[0]["function"]["name"] == "get_time"
assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Tokyo"}
assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
EOF

# /v1/completions has no cloud fallback: 503 with the load error.
code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 10 -d '{"prompt":"x"}' "http://127.0.0.1:$NOMODEL_PORT/v1/completions")
[[ $code == 503 ]] || fail "completions without a model: HTTP $code"
jcheck '"no-such-model" in j["error"]["message"]'

# The model is fine, the cloud is dead: local answers.
serve_up localok "$MODEL" --fallback dead --base-url "http://127.0.0.1:$DEAD_PORT/v1"
post "$PORT" "$FRANCE"
[[ $code == 200 ]] || fail "serve, cloud dead: HTTP $code"
jcheck 'j["provider"] == "local" and j["model"] == "tinychat" and j["choices"][0]["message"]["content"] == "The capital of France is Paris."'
grep -qi '^x-locallm-provider: local' "$TMP/headers" || fail "serve, local: header"
pass
# The local model fails before its first token (the prompt does not fit its 48-token context):
# the cloud (full context) answers instead.
LONG="{\"temperature\":0,\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"$(printf 'tell me about the weather in Paris %.0s' $(seq 1 8))\"}]}"
serve_up smallctx "$MODEL" --ctx 48 --fallback cloud "${CLOUD[@]}"
post "$PORT" "$LONG"
[[ $code == 200 ]] || fail "serve, local fails: HTTP $code"
jcheck 'j["provider"] == "cloud" and j["usage"]["prompt_tokens"] > 48 and j["choices"][0]["message"]["content"]'
grep -q "failed before its first token" "$TMP/smallctx.log" || fail "serve, local fails: not logged"
pass
# Both down: 502 naming both.
serve bothdown "$TMP/no-such-model" --fallback dead --base-url "http://127.0.0.1:$DEAD_PORT/v1"
sleep 0.3
post "$PORT" "$FRANCE"
[[ $code == 502 ]] || fail "serve, both down: HTTP $code"
jcheck '"no provider could answer: local: cannot load the model" in j["error"]["message"] and "dead: http://127.0.0.1:" in j["error"]["message"] and j["error"]["type"] == "server_error"'
# Keys never reach the logs.
! grep -q "$LM_TEST_CLOUD_KEY" "$TMP"/*.log || fail "an API key was logged"
pass

# Every server stops cleanly on SIGTERM (under ASan: nothing leaked, cloud calls included).
for entry in "${SERVERS[@]}"; do
    pid=${entry%%:*}
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    [[ $rc -eq 0 ]] || fail "serve ${entry#*:} exited $rc after SIGTERM"
    grep -q "stopped" "$TMP/${entry#*:}.log" || fail "serve ${entry#*:}: no clean stop in the log"
    pass
done
echo "test_providers: $n_checks checks passed"
