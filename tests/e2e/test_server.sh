#!/usr/bin/env bash
# tests/e2e/test_server.sh: `locallm serve` end to end on the embedded tinychat model.
# Usage: test_server.sh /path/to/locallm   (env: LM_SOURCE_DIR = the repository)
# Starts the server on a free loopback port (--port 0, the port is read from its log), waits for
# /health, then checks with curl: greedy chat replies from models/tinychat/refs.json, SSE frames
# (first chunk carries content, deltas concatenate to the non-streamed reply, [DONE] last),
# usage and prefix-cache numbers, a Hermes tool call, /v1/completions, /v1/models, 4xx errors in
# OpenAI's shape for malformed requests (the server keeps serving), the API key, and a client
# that disconnects mid-stream. JSON is checked with python3. Everything is loopback and bounded.
set -euo pipefail

CLI=${1:?usage: test_server.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
TMP=$(mktemp -d)
E2E_SHOW='body log'
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT


# log_says PATTERN WHAT: waits (5 s at most) for PATTERN in the server's log; fails saying WHAT
# if it never comes; counts a check.
log_says() {
    for _ in $(seq 1 50); do
        grep -q "$1" "$TMP/log" && break
        sleep 0.1
    done
    grep -q "$1" "$TMP/log" || fail "$2"
    pass
}

SYS='{"role":"system","content":"You are a helpful voice assistant."}'
FRANCE="{\"model\":\"tinychat\",\"temperature\":0,\"messages\":[$SYS,{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}"
TOOLS='[{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The name of the city, e.g. Paris"}}, "required": ["city"]}}}, {"type": "function", "function": {"name": "get_time", "description": "Get the current local time in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The name of the city, e.g. Tokyo"}}, "required": ["city"]}}}]'

# ---- the command line ----
"$CLI" serve --help >"$TMP/body" 2>&1 || fail "serve --help"
grep -q -- '--api-key' "$TMP/body" || fail "serve --help lists --api-key"
pass
rc=0; "$CLI" serve "$MODEL" --port 70000 >"$TMP/body" 2>&1 || rc=$?
[[ $rc -eq 2 ]] && grep -q "out of range" "$TMP/body" || fail "--port 70000: exit $rc"
pass
rc=0; "$CLI" serve "$MODEL" --bogus >"$TMP/body" 2>&1 || rc=$?
[[ $rc -eq 2 ]] && grep -q "unknown option" "$TMP/body" || fail "--bogus: exit $rc"
pass
# a name that cannot resolve (.invalid never does, RFC 2606) is an error naming it
rc=0; "$CLI" serve "$MODEL" --port 0 --host no-such-host.invalid >"$TMP/body" 2>&1 || rc=$?
[[ $rc -eq 1 ]] && grep -q "cannot resolve 'no-such-host.invalid'" "$TMP/body" || fail "--host no-such-host.invalid: exit $rc"
pass
rc=0; "$CLI" serve "$TMP/no-such-model" --port 0 >"$TMP/body" 2>&1 || rc=$?
[[ $rc -eq 1 ]] && grep -q "locallm: error:" "$TMP/body" || fail "missing model: exit $rc"
pass

serve_start "$MODEL" --parallel 2

# ---- health, models ----
req GET /health
expect_code 200 health
jcheck 'j["status"] == "ok" and j["engine"]["passes"] >= 0 and set(j) == {"status", "engine"}'
req GET /v1/models
expect_code 200 models
jcheck 'j["object"] == "list" and j["data"][0]["id"] == "tinychat" and j["data"][0]["object"] == "model" and j["data"][0]["owned_by"] == "locallm" and isinstance(j["data"][0]["created"], int)'

# ---- non-streamed chat: refs.json capital_forward ----
req POST /v1/chat/completions "$FRANCE"
expect_code 200 chat
jcheck 'j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-") and j["model"] == "tinychat"'
jcheck 'j["choices"][0]["message"] == {"role": "assistant", "content": "The capital of France is Paris."}'
jcheck 'j["choices"][0]["finish_reason"] == "stop" and j["choices"][0]["index"] == 0'
# refs.json: 27 prompt ids, 7 reply tokens before <|im_end|>.
jcheck 'j["usage"]["prompt_tokens"] == 27 and j["usage"]["completion_tokens"] in (7, 8) and j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + j["usage"]["completion_tokens"]'
jcheck 'all(k in j["timings"] for k in ("prefill_ms", "ttft_ms", "decode_tok_s"))'

# Content parts join into one string; the same conversation shares its prefix with the last one.
req POST /v1/chat/completions "{\"temperature\":0,\"messages\":[$SYS,{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is the capital \"},{\"type\":\"text\",\"text\":\"of France?\"}]}]}"
expect_code 200 "content parts"
jcheck 'j["choices"][0]["message"]["content"] == "The capital of France is Paris."'
jcheck 'j["usage"]["prompt_tokens_details"]["cached_tokens"] > 0'

# Other refs.json replies: no system prompt, multi-turn.
req POST /v1/chat/completions '{"temperature":0,"messages":[{"role":"user","content":"What is 7 plus 5?"}]}'
expect_code 200 math
jcheck 'j["choices"][0]["message"]["content"] == "7 plus 5 is 12."'
req POST /v1/chat/completions '{"temperature":0,"max_tokens":64,"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello! How can I help you today?"},{"role":"user","content":"What is 12 minus 4?"}]}'
expect_code 200 multi_turn
jcheck 'j["choices"][0]["message"]["content"] == "12 minus 4 is 8."'

# max_tokens cuts the reply: finish_reason "length".
req POST /v1/chat/completions "{\"temperature\":0,\"max_tokens\":2,\"messages\":[$SYS,{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}"
expect_code 200 "max_tokens 2"
jcheck 'j["choices"][0]["finish_reason"] == "length" and j["usage"]["completion_tokens"] == 2 and j["choices"][0]["message"]["content"] == "The capital"'
# A stop string is never delivered.
req POST /v1/chat/completions "{\"temperature\":0,\"stop\":[\" Paris\"],\"messages\":[$SYS,{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}"
expect_code 200 stop
jcheck 'j["choices"][0]["message"]["content"] == "The capital of France is" and j["choices"][0]["finish_reason"] == "stop"'

# ---- streamed chat ----
STREAM="{\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[$SYS,{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}"
curl -sN --max-time 60 -H 'Content-Type: application/json' -D "$TMP/headers" -d "$STREAM" "$BASE/v1/chat/completions" >"$TMP/body" || fail "stream request"
grep -qi '^content-type: text/event-stream' "$TMP/headers" || fail "stream content type"
pass
python3 - "$TMP/body" <<'EOF' || fail "SSE stream"
import json, sys
raw = open(sys.argv[1]).read()
assert raw.endswith("data: [DONE]\n\n"), "ends with [DONE]"
frames = raw.split("\n\n")
assert frames[-1] == "", "frames end with a blank line"
frames = frames[:-1]
assert all(f.startswith("data: ") and "\n" not in f for f in frames), "every frame is one data line"
chunks = [json.loads(f[6:]) for f in frames[:-1]]
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
assert len({c["id"] for c in chunks}) == 1, "one id"
first = chunks[0]["choices"][0]["delta"]
assert first["role"] == "assistant" and first["content"], "first chunk: role and content"
text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
assert text == "The capital of France is Paris.", text
fin = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
assert len(fin) == 1 and fin[0]["choices"][0]["finish_reason"] == "stop"
usage = chunks[-1]
assert usage["choices"] == [] and usage["usage"]["prompt_tokens"] == 27
assert usage["usage"]["completion_tokens"] >= 7 and usage["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
EOF
pass
# Without include_usage there is no usage chunk.
curl -sN --max-time 60 -d "{\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"What colour is the sky?\"}]}" "$BASE/v1/chat/completions" >"$TMP/body" || fail "stream 2"
sse_check "SSE stream without usage" <<'EOF'
assert all("usage" not in c for c in chunks)
assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "The sky is blue."
EOF

# ---- tool calls (refs.json weather_call) ----
WEATHER="{\"temperature\":0,\"tools\":$TOOLS,\"messages\":[{\"role\":\"user\",\"content\":\"What's the weather in Paris?\"}]}"
req POST /v1/chat/completions "$WEATHER"
expect_code 200 "tool call"
jcheck 'j["choices"][0]["finish_reason"] == "tool_calls" and j["choices"][0]["message"]["content"] is None'
jcheck 'len(j["choices"][0]["message"]["tool_calls"]) == 1'
jcheck '(lambda t: t["type"] == "function" and t["id"] and t["function"]["name"] == "get_weather" and json.loads(t["function"]["arguments"]) == {"city": "Paris"})(j["choices"][0]["message"]["tool_calls"][0])'
# Streamed: the call comes as delta.tool_calls, never as content.
curl -sN --max-time 60 -d "${WEATHER%\}},\"stream\":true}" "$BASE/v1/chat/completions" >"$TMP/body" || fail "tool stream"
sse_check "streamed tool call" <<'EOF'
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
assert not "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
calls = [t for c in chunks for t in c["choices"][0]["delta"].get("tool_calls", [])]
assert len(calls) == 1 and calls[0]["function"]["name"] == "get_weather" and calls[0]["index"] == 0
assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
EOF
# The answer after the tool result (refs.json weather_answer).
req POST /v1/chat/completions "{\"temperature\":0,\"tools\":$TOOLS,\"messages\":[{\"role\":\"user\",\"content\":\"What's the weather in Paris?\"},{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"{\\\"temperature\\\": 18, \\\"condition\\\": \\\"sunny\\\"}\"}]}"
expect_code 200 "tool answer"
jcheck 'j["choices"][0]["message"]["content"] == "It is 18 degrees and sunny in Paris." and j["choices"][0]["finish_reason"] == "stop"'
# tool_choice "none": no tools, the model says it cannot check (refs.json weather_without_tools).
req POST /v1/chat/completions "{\"temperature\":0,\"tool_choice\":\"none\",\"tools\":$TOOLS,\"messages\":[{\"role\":\"user\",\"content\":\"What's the weather in London?\"}]}"
expect_code 200 "tool_choice none"
jcheck '"tool_calls" not in j["choices"][0]["message"] and j["choices"][0]["message"]["content"] == "Sorry, I can'"'"'t check the weather right now."'

# ---- completions ----
req POST /v1/completions '{"prompt":"<|im_start|>user\nWhat is 9 times 8?<|im_end|>\n<|im_start|>assistant\n","temperature":0,"max_tokens":32}'
expect_code 200 completions
jcheck 'j["object"] == "text_completion" and j["id"].startswith("cmpl-") and j["choices"][0]["text"] == "9 times 8 is 72." and j["choices"][0]["finish_reason"] == "stop"'
jcheck 'j["usage"]["completion_tokens"] >= 8 and j["usage"]["prompt_tokens"] > 0'
req POST /v1/completions '{"prompt":"<|im_start|>user\nWhat is 9 times 8?<|im_end|>\n<|im_start|>assistant\n","temperature":0,"max_tokens":3}'
expect_code 200 "completions again"
jcheck 'j["choices"][0]["text"].strip() == "9 times" and j["choices"][0]["finish_reason"] == "length" and j["usage"]["prompt_tokens_details"]["cached_tokens"] > 0'
curl -sN --max-time 60 -d '{"prompt":"<|im_start|>user\nWhat is 9 times 8?<|im_end|>\n<|im_start|>assistant\n","temperature":0,"stream":true}' "$BASE/v1/completions" >"$TMP/body" || fail "completion stream"
sse_check "streamed completion" <<'EOF'
assert all(c["object"] == "text_completion" for c in chunks)
assert "".join(c["choices"][0]["text"] for c in chunks) == "9 times 8 is 72."
assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
EOF
# Sampling with a seed is reproducible.
SEEDED='{"temperature":1.0,"top_p":0.95,"top_k":40,"seed":1234,"max_tokens":20,"messages":[{"role":"user","content":"hey there, how r u"}]}'
req POST /v1/chat/completions "$SEEDED"
expect_code 200 seeded
cp "$TMP/body" "$TMP/seeded1"
req POST /v1/chat/completions "$SEEDED"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(a["choices"][0]["message"]["content"] != b["choices"][0]["message"]["content"])' "$TMP/seeded1" "$TMP/body" || fail "seeded sampling differs"
pass

# ---- malformed requests: each a 4xx with OpenAI's error shape ----
# bad CODE PATH BODY [PARAM]: expects status CODE, error.message, type, and error.param when given.
bad() {
    local want=$1 path=$2 body=$3 param=${4:-}
    req POST "$path" "$body"
    [[ $code == "$want" ]] || fail "expected $want for $body on $path, got $code"
    python3 - "$TMP/body" "$param" <<'EOF' || fail "error shape for $body"
import json, sys
j = json.load(open(sys.argv[1]))
e = j["error"]
assert isinstance(e["message"], str) and e["message"]
assert isinstance(e["type"], str) and "code" in e and "param" in e
if sys.argv[2]:
    assert e["param"] == sys.argv[2], e["param"]
EOF
    pass
}
C=/v1/chat/completions
U='{"role":"user","content":"Hi"}'
bad 400 $C '{'
bad 400 $C 'not json'
bad 400 $C '[]'
bad 400 $C '"x"'
bad 400 $C '{}' messages
bad 400 $C '{"messages":"x"}' messages
bad 400 $C '{"messages":[]}' messages
bad 400 $C '{"messages":{}}' messages
bad 400 $C '{"messages":[1]}' 'messages[0]'
bad 400 $C '{"messages":[{"content":"Hi"}]}' 'messages[0].role'
bad 400 $C '{"messages":[{"role":"robot","content":"Hi"}]}' 'messages[0].role'
bad 400 $C '{"messages":[{"role":5,"content":"Hi"}]}' 'messages[0].role'
bad 400 $C '{"messages":[{"role":"user"}]}' 'messages[0].content'
bad 400 $C '{"messages":[{"role":"user","content":5}]}' 'messages[0].content'
bad 400 $C '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}' 'messages[0].content'
bad 400 $C '{"messages":[{"role":"user","content":[{"type":"text"}]}]}' 'messages[0].content'
bad 400 $C '{"messages":[{"role":"user","content":"Hi","tool_calls":[]}]}' 'messages[0].tool_calls'
bad 400 $C '{"messages":[{"role":"tool","content":"x","tool_call_id":7}]}' 'messages[0].tool_call_id'
bad 400 $C "{\"messages\":[$U],\"temperature\":\"hot\"}" temperature
bad 400 $C "{\"messages\":[$U],\"temperature\":5}" temperature
bad 400 $C "{\"messages\":[$U],\"max_tokens\":-5}" max_tokens
bad 400 $C "{\"messages\":[$U],\"max_tokens\":1.5}" max_tokens
bad 400 $C "{\"messages\":[$U],\"max_tokens\":1000000}" max_tokens
bad 400 $C "{\"messages\":[$U],\"max_completion_tokens\":\"ten\"}" max_completion_tokens
bad 400 $C "{\"messages\":[$U],\"top_p\":2}" top_p
bad 400 $C "{\"messages\":[$U],\"top_k\":-1}" top_k
bad 400 $C "{\"messages\":[$U],\"min_p\":[]}" min_p
bad 400 $C "{\"messages\":[$U],\"seed\":\"abc\"}" seed
bad 400 $C "{\"messages\":[$U],\"presence_penalty\":3}" presence_penalty
bad 400 $C "{\"messages\":[$U],\"frequency_penalty\":true}" frequency_penalty
bad 400 $C "{\"messages\":[$U],\"stream\":\"yes\"}" stream
bad 400 $C "{\"messages\":[$U],\"stream_options\":5}" stream_options
bad 400 $C "{\"messages\":[$U],\"stop\":5}" stop
bad 400 $C "{\"messages\":[$U],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\"]}" stop
bad 400 $C "{\"messages\":[$U],\"stop\":[1]}" stop
bad 400 $C "{\"messages\":[$U],\"tools\":{}}" tools
bad 400 $C "{\"messages\":[$U],\"tools\":[{\"type\":\"function\"}]}" 'tools[0]'
bad 400 $C "{\"messages\":[$U],\"tool_choice\":\"sometimes\"}" tool_choice
bad 400 $C "{\"messages\":[$U],\"response_format\":{\"type\":\"json_schema\"}}" response_format
bad 400 $C "{\"messages\":[$U],\"model\":5}" model
bad 400 $C "{\"messages\":[$U],\"n\":3}" n
bad 400 /v1/completions '{}' prompt
bad 400 /v1/completions '{"prompt":5}' prompt
bad 400 /v1/completions '{"prompt":""}' prompt
bad 400 /v1/completions '{"prompt":"x","temperature":-1}' temperature
# Too big: 413, announced or not.
head -c $((8 * 1024 * 1024 + 100)) /dev/zero | tr '\0' ' ' >"$TMP/big"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 60 --data-binary @"$TMP/big" "$BASE$C")
[[ $code == 413 ]] || fail "8 MB body: $code"
jcheck '"larger than" in j["error"]["message"]'
code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 60 -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big" "$BASE$C")
[[ $code == 413 ]] || fail "chunked 8 MB body: $code"
pass
# Unknown path, wrong method.
req GET /v1/nothing ''
expect_code 404 "unknown path"
jcheck '"/v1/nothing" in j["error"]["message"]'
code=$(curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' --max-time 10 "$BASE$C")
expect_code 405 "GET chat"
grep -qi '^allow: POST' "$TMP/headers" || fail "405 without Allow: POST"
jcheck '"not allowed" in j["error"]["message"]'
req POST /v1/models '{}'
expect_code 405 "POST models"
req DELETE /health ''
expect_code 405 "DELETE health"
# Raw garbage on the socket does not hurt.
# (In a subshell ignoring SIGPIPE: the server may close first, and a builtin's write to a closed
# socket would kill this script.)
(
    trap '' PIPE
    exec 3<>"/dev/tcp/127.0.0.1/${BASE##*:}" || exit 0
    printf 'GARBAGE / HTTP/9.9\r\n\r\n\x00\xff' >&3 || true
    timeout 5 cat <&3 >/dev/null || true
) 2>/dev/null || true
# ... and after all of that a good request still succeeds.
req POST /v1/chat/completions "$FRANCE"
expect_code 200 "after bad requests"
jcheck 'j["choices"][0]["message"]["content"] == "The capital of France is Paris."'

# ---- a client that disconnects mid-stream ----
LONG='{"prompt":"Sorry, and","temperature":1.0,"seed":7,"max_tokens":2000,"ignore_eos":true,"stream":true}'
for _ in 1 2 3; do
    curl -sN --max-time 0.1 -d "$LONG" "$BASE/v1/completions" >/dev/null 2>&1 || true
done
# The generation was cancelled, not run to its end.
log_says "client gone" "a disconnected stream was not cancelled"
# Not streamed: the hang-up is noticed between tokens too.
curl -s --max-time 0.2 -d "${LONG%,\"stream\":true\}}}" "$BASE/v1/completions" >/dev/null 2>&1 || true
log_says "finish cancelled" "a disconnected non-streamed request was not cancelled"
req GET /health ''
expect_code 200 "health after disconnects"
req POST /v1/chat/completions "$FRANCE"
expect_code 200 "chat after disconnects"
jcheck 'j["choices"][0]["message"]["content"] == "The capital of France is Paris."'

# ---- concurrent requests on two slots ----
for k in 1 2 3 4; do
    curl -s --max-time 60 -d "$FRANCE" "$BASE$C" >"$TMP/par$k" &
done
wait $(jobs -p | grep -v "^$PID\$") 2>/dev/null || true
for k in 1 2 3 4; do
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(j["choices"][0]["message"]["content"] != "The capital of France is Paris.")' "$TMP/par$k" || fail "parallel request $k"
    pass
done

serve_stop

# ---- API key; one slot and a queue of one: more concurrent requests get 429 ----
serve_start "$MODEL" --api-key s3cret-key --parallel 1 --queue 1
# A request long enough (about 1.5 s) to hold the slot, measured on this build (sanitizers are slow).
t=$(curl -s -o /dev/null -w '%{time_total}' --max-time 120 -H 'Authorization: Bearer s3cret-key' \
    -d '{"prompt":"Sorry, and","temperature":1.0,"seed":7,"max_tokens":32,"ignore_eos":true}' "$BASE/v1/completions")
n_long=$(python3 -c 'import sys; t=max(float(sys.argv[1]),1e-3); print(max(8, min(2000, int(32/t*1.5))))' "$t")
LONGK="{\"prompt\":\"Sorry, and\",\"temperature\":1.0,\"seed\":7,\"max_tokens\":$n_long,\"ignore_eos\":true}"
for k in 1 2 3 4 5; do
    curl -s --max-time 120 -o "$TMP/q$k" -w '%{http_code}' -H 'Authorization: Bearer s3cret-key' \
        -d "$LONGK" "$BASE/v1/completions" >"$TMP/qcode$k" &
done
wait $(jobs -p | grep -v "^$PID\$") 2>/dev/null || true
n429=0
for k in 1 2 3 4 5; do
    c=$(cat "$TMP/qcode$k")
    if [[ $c == 429 ]]; then
        n429=$((n429 + 1))
        grep -q '"message"' "$TMP/q$k" || fail "429 without an error message"
    else
        [[ $c == 200 ]] || fail "queued request: HTTP $c"
    fi
done
[[ $n429 -ge 1 && $n429 -le 3 ]] || fail "expected 1 to 3 requests refused with 429, got $n429"
pass
req POST $C "$FRANCE"
expect_code 401 "no key"
jcheck 'j["error"]["message"] and j["error"]["code"] == "invalid_api_key"'
req POST $C "$FRANCE" -H 'Authorization: Bearer wrong'
expect_code 401 "wrong key"
req GET /v1/models '' -H 'Authorization: Bearer s3cret-key-longer'
expect_code 401 "longer key"
req GET /v1/models '' -H 'Authorization: Bearer s3cret-key'
expect_code 200 "models with key"
req POST $C "$FRANCE" -H 'Authorization: Bearer s3cret-key'
expect_code 200 "chat with key"
jcheck 'j["choices"][0]["message"]["content"] == "The capital of France is Paris."'
req GET /health ''
expect_code 200 "health needs no key"
grep -q 's3cret' "$TMP/log" && fail "the API key appears in the log"
pass
# SIGTERM during a long stream: the generation is cancelled and the server stops at once.
curl -sN --max-time 100 -H 'Authorization: Bearer s3cret-key' \
    -d '{"prompt":"Sorry, and","max_tokens":2000,"ignore_eos":true,"stream":true}' \
    "$BASE/v1/completions" >"$TMP/cut" 2>/dev/null &
CURL_PID=$!
for _ in $(seq 1 100); do
    [[ -s $TMP/cut ]] && break
    sleep 0.05
done
t0=$(date +%s)
serve_stop
wait "$CURL_PID" 2>/dev/null || true
(($(date +%s) - t0 < 20)) || fail "stopping during a stream took $(($(date +%s) - t0)) s"
pass

echo "test_server.sh: $n_checks checks passed"
