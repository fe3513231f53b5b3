#!/usr/bin/env bash
# tests/e2e/test_structured.sh: structured output end to end on the embedded tinychat model.
# Usage: test_structured.sh /path/to/locallm   (env: LM_SOURCE_DIR = the repository)
# CLI: `run` and `chat` with --grammar, --json-schema and --json give replies that match (checked
# with python3), and bad files or flags fail with the message and exit code. Server: OpenAI's
# response_format json_object and json_schema (streamed too) and llama.cpp's grammar field give
# content that parses and matches; a schema keyword that cannot be enforced, a bad grammar and a
# malformed response_format are 400s naming where the problem is. The OpenAI provider sends them
# on: `chat --provider` against this server gets the same constrained replies.
set -euo pipefail

CLI=${1:?usage: test_structured.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
TMP=$(mktemp -d)
E2E_SHOW='out err body log'
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT

cat >"$TMP/yn.gbnf" <<'EOF'
# yes or no, then a full stop
root ::= ("yes" | "no") "."
EOF
cat >"$TMP/bad.gbnf" <<'EOF'
root ::= "yes" |
  maybe
EOF
cat >"$TMP/weather.json" <<'EOF'
{"type": "object", "properties": {"city": {"type": "string"}, "temperature": {"type": "integer"},
 "condition": {"type": "string", "enum": ["sunny", "rainy", "cloudy"]}},
 "required": ["city", "temperature", "condition"], "additionalProperties": false}
EOF
echo '{"type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}}' >"$TMP/pattern.json"

# check_weather FILE: the text is one JSON object the weather schema allows.
check_weather() {
    python3 - "$1" <<'EOF' || fail "weather schema: $(cat "$1")"
import json, sys
j = json.loads(open(sys.argv[1]).read())
assert isinstance(j, dict) and list(j) == ["city", "temperature", "condition"], j
assert isinstance(j["city"], str) and isinstance(j["temperature"], int) and not isinstance(j["temperature"], bool)
assert j["condition"] in ("sunny", "rainy", "cloudy")
EOF
}

# ---- CLI ----
"$CLI" run "$MODEL" -p "Is Paris in France? Answer:" --grammar "$TMP/yn.gbnf" --no-stats >"$TMP/out" 2>"$TMP/err" ||
    fail "run --grammar"
reply=$(sed 's/^Is Paris in France? Answer://' "$TMP/out")
[[ $reply == "yes." || $reply == "no." ]] || fail "run --grammar gave '$reply'"
pass
echo "What's the weather like in Oslo?" | "$CLI" chat "$MODEL" --json-schema "$TMP/weather.json" -n 200 \
    >"$TMP/out" 2>"$TMP/err" || fail "chat --json-schema"
check_weather "$TMP/out"
pass
echo "Tell me about Paris." | "$CLI" chat "$MODEL" --json -n 200 >"$TMP/out" 2>"$TMP/err" || fail "chat --json"
python3 -c 'import json,sys; assert isinstance(json.loads(open(sys.argv[1]).read()), dict)' "$TMP/out" ||
    fail "chat --json is not a JSON object"
pass
rc=0
"$CLI" run "$MODEL" -p "x" --grammar "$TMP/bad.gbnf" >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc == 1 ]] || fail "bad grammar: exit $rc"
grep -q "grammar line 2 column 3: rule 'maybe' is used but never defined" "$TMP/err" || fail "bad grammar message"
pass
rc=0
"$CLI" run "$MODEL" -p "x" --json-schema "$TMP/pattern.json" >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc == 1 ]] || fail "unsupported schema: exit $rc"
grep -q "json_schema: \$.properties.x: keyword 'pattern' is not supported" "$TMP/err" || fail "unsupported schema message"
pass
rc=0
"$CLI" run "$MODEL" -p "x" --json --grammar "$TMP/yn.gbnf" >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc == 2 ]] || fail "--json with --grammar: exit $rc"
grep -q "give one of --grammar, --json-schema and --json" "$TMP/err" || fail "--json with --grammar message"
pass
rc=0
"$CLI" chat "$MODEL" --grammar "$TMP/missing.gbnf" </dev/null >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc == 1 ]] || fail "missing grammar file: exit $rc"
grep -q "cannot read the grammar file" "$TMP/err" || fail "missing grammar file message"
pass

# ---- server ----
serve_start "$MODEL"

post() {
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' \
        --data-binary "$1" "$BASE/v1/chat/completions")
}
content() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"], end="")' "$TMP/body"; }
U='{"role":"user","content":"What is the weather in Oslo?"}'
SCHEMA=$(tr -d '\n' <"$TMP/weather.json")

post "{\"messages\":[$U],\"temperature\":0,\"max_tokens\":200,\"response_format\":{\"type\":\"json_object\"}}"
[[ $code == 200 ]] || fail "json_object: $code"
content >"$TMP/out"
python3 -c 'import json,sys; assert isinstance(json.loads(open(sys.argv[1]).read()), dict)' "$TMP/out" ||
    fail "json_object content is not an object"
pass
post "{\"messages\":[$U],\"temperature\":0,\"max_tokens\":200,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"weather\",\"strict\":true,\"schema\":$SCHEMA}}}"
[[ $code == 200 ]] || fail "json_schema: $code"
content >"$TMP/out"
check_weather "$TMP/out"
cp "$TMP/out" "$TMP/nonstream"
pass
# streamed: the deltas join into the same object
code=$(curl -sN -o "$TMP/body" -w '%{http_code}' --max-time 60 -H 'Content-Type: application/json' --data-binary \
    "{\"messages\":[$U],\"temperature\":0,\"max_tokens\":200,\"stream\":true,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"weather\",\"schema\":$SCHEMA}}}" \
    "$BASE/v1/chat/completions")
[[ $code == 200 ]] || fail "streamed json_schema: $code"
python3 - "$TMP/body" >"$TMP/out" <<'EOF' || fail "streamed json_schema frames"
import json, sys
text = ""
for line in open(sys.argv[1]):
    if line.startswith("data: ") and line.strip() != "data: [DONE]":
        d = json.loads(line[6:])["choices"][0]["delta"]
        text += d.get("content") or ""
print(text, end="")
EOF
check_weather "$TMP/out"
cmp -s "$TMP/out" "$TMP/nonstream" || fail "streamed and non-streamed replies differ"
pass
post "{\"messages\":[{\"role\":\"user\",\"content\":\"Is Paris in France?\"}],\"temperature\":0,\"grammar\":\"root ::= (\\\"yes\\\" | \\\"no\\\") \\\".\\\"\"}"
[[ $code == 200 ]] || fail "grammar: $code"
reply=$(content)
[[ $reply == "yes." || $reply == "no." ]] || fail "grammar field gave '$reply'"
pass
# refused with a 400 that says where
bad() {
    post "$1"
    [[ $code == 400 ]] || fail "expected 400 for $1, got $code"
    python3 - "$TMP/body" "$2" "$3" <<'EOF' || fail "error body for $1"
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert e["param"] == sys.argv[2], e
assert sys.argv[3] in e["message"], e["message"]
EOF
    pass
}
bad "{\"messages\":[$U],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\",\"pattern\":\"^a\"}}}}}}" \
    response_format "response_format.json_schema.schema: \$.properties.x: keyword 'pattern' is not supported"
bad "{\"messages\":[$U],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"strin\"}}}}" \
    response_format "unknown type 'strin'"
bad "{\"messages\":[$U],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":5}}}" \
    response_format "must be a JSON Schema object"
bad "{\"messages\":[$U],\"response_format\":{\"type\":\"json_schema\"}}" response_format "needs a 'json_schema' object"
bad "{\"messages\":[$U],\"response_format\":{\"type\":\"yaml\"}}" response_format "type 'yaml' is not supported"
bad "{\"messages\":[$U],\"grammar\":\"root ::= x\"}" grammar "grammar line 1 column 10: rule 'x' is used but never defined"
bad "{\"messages\":[$U],\"grammar\":\"root ::= \\\"a\\\"\",\"response_format\":{\"type\":\"json_object\"}}" grammar "not both"
# through the OpenAI-compatible provider: the fields travel (response_format, grammar)
echo "Is Paris in France?" | "$CLI" chat --provider cloud --base-url "$BASE/v1" --model tinychat \
    --grammar "$TMP/yn.gbnf" >"$TMP/out" 2>"$TMP/err" || fail "chat --provider --grammar"
reply=$(cat "$TMP/out")
[[ $reply == "yes." || $reply == "no." ]] || fail "chat --provider --grammar gave '$reply'"
pass
echo "What's the weather like in Oslo?" | "$CLI" chat --provider cloud --base-url "$BASE/v1" --model tinychat \
    --json-schema "$TMP/weather.json" -n 200 >"$TMP/out" 2>"$TMP/err" || fail "chat --provider --json-schema"
check_weather "$TMP/out"
pass
# still serving
post "{\"messages\":[$U],\"temperature\":0,\"max_tokens\":200,\"response_format\":{\"type\":\"json_object\"}}"
[[ $code == 200 ]] || fail "after the errors: $code"
pass
serve_stop
echo "test_structured: $n_checks checks passed"
