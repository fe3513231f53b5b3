#!/usr/bin/env bash
# tests/e2e/test_chat.sh: `locallm chat` and `locallm template` end to end, on models/tinychat.
# Usage: test_chat.sh /path/to/locallm   (env: LM_SOURCE_DIR = repo)
# Checks greedy replies in pipe mode against tinychat's references (models/tinychat/refs.json,
# README), that the prefix of earlier turns is reused, preset parsing and overrides, and that
# template reproduces refs.json's prompt_text byte for byte and prompt_ids exactly (one prompt is
# embedded below; with python3 every refs.json prompt is checked).
set -euo pipefail

CLI=${1:?usage: test_chat.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
REFS=$MODEL/refs.json
TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
trap 'rm -rf "$TMP"' EXIT

# ---- help ----
cli chat --help
[[ $rc -eq 0 ]] && grep -q -- "--preset" "$TMP/out" || fail "chat --help"
pass
cli template --help
[[ $rc -eq 0 ]] && grep -q -- "--messages" "$TMP/out" || fail "template --help"
pass

# ---- chat, pipe mode: one message per line, one reply per line, nothing else on stdout ----
cli_in $'Hi\nWhat is the capital of France?\n' chat "$MODEL"
[[ $rc -eq 0 ]] || fail "chat exited $rc"
printf '%s\n' "Hello! How can I help you today?" "The capital of France is Paris." >"$TMP/want"
cmp -s "$TMP/out" "$TMP/want" || fail "chat replies differ from the greedy references"
[[ ! -s $TMP/err ]] || fail "chat wrote to stderr without --verbose"
pass

# the default model is tinychat; the second turn reuses the first turn's prefix (verbose stats)
cli_in $'Hi\nWhat is the capital of France?\n' chat -v
[[ $rc -eq 0 ]] || fail "chat (default model) exited $rc"
cmp -s "$TMP/out" "$TMP/want" || fail "chat with the default model"
[[ $(grep -c '^prompt: ' "$TMP/err") -eq 2 ]] || fail "chat -v: expected two stats lines"
cached=$(grep '^prompt: ' "$TMP/err" | sed -n 2p | sed -E 's/.*\(([0-9]+) cached.*/\1/')
[[ $cached -gt 20 ]] || fail "chat: the second turn reused only $cached cached tokens"
pass

# a system prompt (refs.json capital_forward), blank lines skipped
cli_in $'\nWhat is the capital of France?\n\n' chat "$MODEL" --system "You are a helpful voice assistant."
[[ $rc -eq 0 ]] || fail "chat --system exited $rc"
[[ $(cat "$TMP/out") == "The capital of France is Paris." ]] || fail "chat --system reply"
pass

# max tokens cut the reply: -n 3 gives the first three tokens of "Hello! How can ..."
cli_in $'Hi\n' chat "$MODEL" -n 3
[[ $rc -eq 0 && $(cat "$TMP/out") == "Hello! How" ]] || fail "chat -n 3"
pass

# ---- presets: fields, and flags overriding them ----
cli chat "$MODEL" --preset precise -v
[[ $rc -eq 0 ]] || fail "chat --preset precise exited $rc"
grep -qF "sampling: max 500 tokens, temperature 0.3, " "$TMP/err" || fail "precise preset fields"
grep -qF "top-p 0.95," "$TMP/err" || fail "precise preset top-p"
grep -qF "with stop strings" "$TMP/err" && fail "precise preset has no stop strings"
pass
cli chat "$MODEL" --preset=conversational -v
grep -qF "sampling: max 300 tokens, temperature 0.7, " "$TMP/err" || fail "conversational preset fields"
grep -qF "top-p 0.9," "$TMP/err" && grep -qF "with stop strings" "$TMP/err" || fail "conversational preset top-p/stops"
pass
cli chat "$MODEL" --temp 0 --preset conversational -n 20 -v
grep -qF "sampling: max 20 tokens, temperature 0, " "$TMP/err" || fail "flags override the preset"
grep -qF "top-p 0.9," "$TMP/err" || fail "preset fields not overridden stay"
pass
cli chat "$MODEL" -v
grep -qF "sampling: max 256 tokens, temperature 0, " "$TMP/err" || fail "chat defaults"
pass
# conversational at temperature 0 answers as greedy does
cli_in $'Hi\n' chat "$MODEL" --preset conversational --temp 0
[[ $rc -eq 0 && $(cat "$TMP/out") == "Hello! How can I help you today?" ]] || fail "conversational --temp 0"
pass

expect_error 2 "--preset: 'chatty' is not a preset" chat "$MODEL" --preset chatty
expect_error 2 "--temp: 'hot' is not a number" chat "$MODEL" --temp hot
expect_error 2 "unknown option '--bogus'" chat --bogus
expect_error 2 "--max-messages: -1 is out of range" chat "$MODEL" --max-messages -1
expect_error 1 "neither a built-in format" chat "$MODEL" --chat-template "$TMP/none.jinja"
expect_error 1 "cannot load model" chat "$TMP/nothing-here"

# --chat-template: a built-in name and a file
cli_in $'Hi\n' chat "$MODEL" --chat-template chatml
[[ $rc -eq 0 && -s $TMP/out ]] || fail "chat --chat-template chatml"
pass

# ---- the interactive prompt, on a pseudo-terminal (util-linux script) ----
if command -v script >/dev/null 2>&1 && script -qfec true /dev/null >/dev/null 2>&1; then
    feed_repl() {
        printf '%s\n' "Hi" "/stats" "/save $TMP/c1.json" "/system You are a helpful voice assistant." \
            "/reset" "What is the capital of France?" "/bogus" "/load $TMP/c1.json" "/save $TMP/c2.json"
        # keep the terminal open until the last command ran, then leave
        for ((k = 0; k < 1200; k++)); do [[ -s $TMP/c2.json ]] && break; sleep 0.05; done
        printf '%s\n' "/quit"
    }
    rc=0
    feed_repl | timeout 120 script -qfec "$(printf '%q ' "$CLI" chat "$MODEL")" /dev/null >"$TMP/out" 2>"$TMP/err" || rc=$?
    tr -d '\r' <"$TMP/out" >"$TMP/repl"
    [[ $rc -eq 0 ]] || fail "chat on a terminal exited $rc"
    grep -qx "Hello! How can I help you today?" "$TMP/repl" || fail "chat REPL: first reply"
    grep -qF "prompt: 29 tokens (0 cached, 29 prefilled) | generated: 9 tokens" "$TMP/repl" || fail "chat REPL: /stats"
    grep -qx "The capital of France is Paris." "$TMP/repl" || fail "chat REPL: reply after /system and /reset"
    grep -qF "unknown command '/bogus'" "$TMP/repl" || fail "chat REPL: unknown command"
    grep -qF "loaded 2 messages" "$TMP/repl" || fail "chat REPL: /load"
    grep -qF '"content":	"Hello! How can I help you today?"' "$TMP/c1.json" || fail "chat REPL: /save content"
    cmp -s "$TMP/c1.json" "$TMP/c2.json" || fail "chat REPL: /load then /save differs"
    pass
else
    fail "script (util-linux) is not usable, so the interactive prompt cannot be checked"
fi

# ---- template ----
# refs.json multi_turn_new_system, embedded
cat >"$TMP/msgs.json" <<'JSON'
[{"role": "system", "content": "You are a cheerful kitchen assistant."}, {"role": "user", "content": "good evening"}, {"role": "assistant", "content": "Good evening! How can I help you today?"}, {"role": "user", "content": "what's 3 times 4"}, {"role": "assistant", "content": "3 times 4 is 12."}, {"role": "user", "content": "and what is the capital of Italy"}]
JSON
printf '%s' $'<|im_start|>system\nYou are a cheerful kitchen assistant.<|im_end|>\n<|im_start|>user\ngood evening<|im_end|>\n<|im_start|>assistant\nGood evening! How can I help you today?<|im_end|>\n<|im_start|>user\nwhat\'s 3 times 4<|im_end|>\n<|im_start|>assistant\n3 times 4 is 12.<|im_end|>\n<|im_start|>user\nand what is the capital of Italy<|im_end|>\n<|im_start|>assistant\n' >"$TMP/want"
IDS='{"ids":[2027,365,10,300,309,262,266,301,263,385,32,107,517,99,1348,360,46,2028,10,2027,299,10,1497,1286,2028,10,2027,307,10,672,1286,33,611,443,429,349,504,621,63,2028,10,2027,299,10,555,547,32,51,581,32,52,2028,10,2027,307,10,51,581,32,52,321,32,49,50,46,2028,10,2027,299,10,787,687,321,288,383,330,1336,2028,10,2027,307,10]}'

cli template "$MODEL" --messages "$TMP/msgs.json"
[[ $rc -eq 0 ]] || fail "template exited $rc"
cmp -s "$TMP/out" "$TMP/want" || fail "template text differs from refs.json prompt_text"
pass
cli template "$MODEL" --messages "$TMP/msgs.json" --ids
[[ $rc -eq 0 && $(cat "$TMP/out") == "$IDS" ]] || fail "template --ids differs from refs.json prompt_ids"
pass
# the same template given as a file; a --var the template ignores changes nothing
cli template "$MODEL" --messages "$TMP/msgs.json" --chat-template "$SRC/tests/data/templates/qwen2.5-instruct.jinja" --var who=me --var "x=a \"quoted\" value"
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "template --chat-template FILE --var"
pass
# without the generation prompt the assistant's turn is not opened
cli template "$MODEL" --messages "$TMP/msgs.json" --no-generation-prompt
head -c -22 "$TMP/want" >"$TMP/want_nogen"
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want_nogen" || fail "template --no-generation-prompt"
pass
# a --var the template reads (a file template) arrives as a string
printf '%s' '{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}<{{ who }}|{{ n }}>' >"$TMP/vars.jinja"
cli template "$MODEL" --messages "$TMP/msgs.json" --chat-template "$TMP/vars.jinja" --var who=me --var n=42 --var who='a "b"'
[[ $rc -eq 0 ]] || fail "template --var exited $rc"
[[ $(cat "$TMP/out") == *'[user:and what is the capital of Italy]<a "b"|42>' ]] || fail "template --var values"
pass

expect_error 2 "--messages FILE.json is required" template "$MODEL"
expect_error 2 "name the model" template --messages "$TMP/msgs.json"
expect_error 2 "--var: 'novalue' is not NAME=VALUE" template "$MODEL" --messages "$TMP/msgs.json" --var novalue
printf '{"role": "user"}' >"$TMP/bad.json"
expect_error 1 "expected a JSON array of messages" template "$MODEL" --messages "$TMP/bad.json"
printf '[{"content": "x"}]' >"$TMP/bad.json"
expect_error 1 "message 0: expected an object with a string 'role'" template "$MODEL" --messages "$TMP/bad.json"
printf '[{"role": "user", "content": "x"' >"$TMP/bad.json"
expect_error 1 "bad.json" template "$MODEL" --messages "$TMP/bad.json"

# every refs.json prompt (messages and tools), with python3 when there is one
if command -v python3 >/dev/null 2>&1; then
    n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["prompts"]))' "$REFS")
    for ((k = 0; k < n; k++)); do
        python3 - "$REFS" "$k" "$TMP" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["prompts"][int(sys.argv[2])]
d = sys.argv[3]
json.dump(p["messages"], open(d + "/k_msgs.json", "w"))
json.dump(p["tools"] or [], open(d + "/k_tools.json", "w"))
open(d + "/k_text", "w", newline="").write(p["prompt_text"])
open(d + "/k_ids", "w").write(json.dumps({"ids": p["prompt_ids"]}, separators=(",", ":")))
open(d + "/k_name", "w").write(p["name"] + ("" if p["tools"] else " notools"))
PY
        name=$(cat "$TMP/k_name")
        tools=()
        [[ $name == *notools ]] || tools=(--tools "$TMP/k_tools.json")
        cli template "$MODEL" --messages "$TMP/k_msgs.json" "${tools[@]}"
        [[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/k_text" || fail "template: refs.json '$name' prompt_text"
        cli template "$MODEL" --messages "$TMP/k_msgs.json" "${tools[@]}" --ids
        [[ $rc -eq 0 && $(cat "$TMP/out") == "$(cat "$TMP/k_ids")" ]] || fail "template --ids: refs.json '$name' prompt_ids"
        pass
    done
else
    echo "python3 not found: only the embedded refs.json prompt was checked" >&2
fi

echo "test_chat.sh: $n_checks checks passed"
