#!/usr/bin/env bash
# tests/e2e/test_run.sh: `locallm run` as a newcomer uses it, like `ollama run`, on models/tinychat
# (a chat model) and stories260K (no chat template), plus the option table's spellings and
# suggestions, `list`, and short names without a tag.
# Usage: test_run.sh /path/to/locallm   (env: LM_SOURCE_DIR = repo, LM_TEST_DATA = tests/data)
# Checks: one answer through the chat template from the words after MODEL, -p, -f and piped stdin
# (tinychat's greedy replies, models/tinychat/README.md); the chat REPL on a pseudo-terminal
# (tests/e2e/pty_session.py: replies, /stats showing the second turn reuses the first's KV
# prefix, a /-command suggestion, Ctrl-D); --raw and the template-less model continue plain text
# exactly as the library's greedy ids (eval --greedy) detokenize; -sys/--system-prompt,
# --ctx-size taking effect; "did you mean" for options and commands; `list` = `ls`; `llama3.2`
# resolving to the catalog's llama3.2:3b in a Hugging Face cache (tinychat standing in).
set -euo pipefail

CLI=${1:?usage: test_run.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DATA=${LM_TEST_DATA:-$SRC/tests/data}
CHAT=$SRC/models/tinychat
STORY=$DATA/stories260K/stories260K-f32.gguf
TMP=$(mktemp -d)
E2E_TIMEOUT=120
. "$(dirname "$0")/lib.sh"
trap 'rm -rf "$TMP"' EXIT
export HF_HUB_CACHE=$TMP/cache HF_HUB_OFFLINE=1
unset LOCALLM_DEFAULT_MODEL LOCALLM_CHAT_MODEL || true

expect_out() { # WANT ARGS...: exit 0 and stdout exactly WANT plus a newline
    local want=$1
    shift
    cli "$@"
    [[ $rc -eq 0 ]] || fail "locallm $* exited $rc"
    printf '%s\n' "$want" | cmp -s - "$TMP/out" || fail "locallm $*: stdout is not '$want'"
    pass
}
expect_usage() { # PIECE ARGS...: exit 2, "locallm: error:" and PIECE on stderr
    local piece=$1
    shift
    cli "$@"
    [[ $rc -eq 2 ]] || fail "locallm $* exited $rc, expected 2"
    [[ $(head -c 15 "$TMP/err") == "locallm: error:" ]] || fail "locallm $*: no 'locallm: error:'"
    grep -qF -- "$piece" "$TMP/err" || fail "locallm $*: stderr does not say '$piece'"
    pass
}

HI="Hello! How can I help you today?"
PARIS="The capital of France is Paris."

# ---- one answer through the chat template ----
expect_out "$PARIS" run "$CHAT" "What is the capital of France?"
expect_out "$PARIS" run "$CHAT" What is the capital of France?
[[ ! -s $TMP/err ]] || fail "run with a chat model printed timings without -v"
pass
expect_out "$HI" run "$CHAT" -p "Hi"
printf 'Hi' >"$TMP/prompt.txt"
expect_out "$HI" run "$CHAT" -f "$TMP/prompt.txt"
rc=0
printf 'What is the capital of France?\n' | timeout 120 "$CLI" run "$CHAT" >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 0 && $(cat "$TMP/out") == "$PARIS" ]] || fail "run with the question piped on stdin"
pass
# a system prompt, in llama.cpp's spelling too (models/tinychat refs: capital_forward)
expect_out "$PARIS" run "$CHAT" -sys "You are a helpful voice assistant." "What is the capital of France?"
expect_out "$PARIS" run "$CHAT" --system-prompt "You are a helpful voice assistant." -p "What is the capital of France?"
# -v: the turn's stats on stderr
cli run "$CHAT" "Hi" -v
[[ $rc -eq 0 ]] && grep -q "^prompt: 29 tokens (0 cached, 29 prefilled) | generated: 9 tokens" "$TMP/err" ||
    fail "run -v stats"
pass
# --ctx-size (llama.cpp) is --ctx: 16 tokens cannot hold the 29-token prompt, 512 can
cli run "$CHAT" "Hi" --ctx-size 16
[[ $rc -eq 1 ]] && grep -q "locallm: error: generation failed: .*16" "$TMP/err" || fail "run --ctx-size 16"
pass
expect_out "$HI" run "$CHAT" "Hi" --ctx-size=512
expect_out "$HI" run "$CHAT" "Hi" -c 512

# ---- the REPL on a pseudo-terminal ----
rc=0
timeout 180 python3 "$SRC/tests/e2e/pty_session.py" --timeout 60 --log "$TMP/repl" \
    --expect '> ' --send "Hi" --expect 'Hello! How can I help you today\?\n' \
    --expect '> ' --send "What is the capital of France?" --expect 'The capital of France is Paris\.\n' \
    --expect '> ' --send "/stats" --expect 'prompt: [0-9]+ tokens \([0-9]+ cached[^\n]*\n' \
    --expect '> ' --send "/sav" --expect "did you mean /save\?" \
    --expect '> ' --eof --status 0 -- "$CLI" run "$CHAT" || rc=$?
[[ $rc -eq 0 ]] || { cat "$TMP/repl" >&2; fail "run on a terminal"; }
cached=$(sed -n 's/^prompt: [0-9]* tokens (\([0-9]*\) cached.*/\1/p' "$TMP/repl")
[[ -n $cached && $cached -gt 20 ]] || fail "the REPL's second turn reused only '$cached' cached tokens"
pass

# ---- plain completion: --raw, and a model without a chat template ----
# the library's greedy continuation of the same ids, detokenized, is what run must print
raw_expect() { # MODEL PROMPT N: the prompt and its greedy N-token continuation
    local ids greedy
    ids=$("$CLI" tokenize "$1" --text "$2" --json | sed 's/{"ids":\[\(.*\)\]}/\1/')
    greedy=$("$CLI" eval "$1" --ids "$ids" --greedy "$3" --json | sed -n 's/.*"greedy":\[\([0-9,]*\)\]}$/\1/p')
    printf '%s' "$2"
    "$CLI" detokenize "$1" --ids "$greedy" --skip-special
}
want=$(raw_expect "$CHAT" "The capital of France is" 12)
expect_out "$want" run "$CHAT" --raw -p "The capital of France is" -n 12 --no-stats
want=$(raw_expect "$STORY" "Once upon a time" 40)
expect_out "$want" run "$STORY" Once upon a time -n 40 --no-stats
expect_out "$want" run "$STORY" -p "Once upon a time" -n 40 --no-stats
grep -q . "$TMP/err" && fail "--no-stats wrote to stderr"
pass
# the embedded model (make run): stories260K, plain text, timings on stderr
cli run -p "Once upon a time" -n 3
[[ $rc -eq 0 && $(cat "$TMP/out") == "Once upon a time, there was" ]] && grep -q "tok/s" "$TMP/err" ||
    fail "run with the embedded model"
pass
cli run "$STORY" --system "Be brief." "Once upon a time"
[[ $rc -eq 1 ]] && grep -qF "has no chat template, so --system has nothing to go into" "$TMP/err" ||
    fail "--system on a model without a template"
pass
expect_usage "give the prompt one way" run "$CHAT" -p "Hi" "there"
expect_usage "--raw continues plain text, which has no system prompt" run "$CHAT" --raw -sys x -p y
cli run "$CHAT"
[[ $rc -eq 1 ]] && grep -qF "nothing to ask: the prompt is empty" "$TMP/err" || fail "run with empty stdin"
pass

# ---- the option table: spellings, suggestions, help ----
expect_usage "unknown option '--tmp' (did you mean --temp?)" run "$CHAT" --tmp 0.5 "Hi"
expect_usage "unknown option '--ctxsize' (did you mean --ctx-size?)" run "$CHAT" --ctxsize 512
expect_usage "unknown option '-temp' (did you mean --temp?)" chat "$CHAT" -temp 1
expect_usage "unknown option '--sytem' (did you mean --system?)" chat "$CHAT" --sytem x
expect_usage "unknown option '--prot' (did you mean --port?)" serve "$CHAT" --prot 1
expect_usage "unknown option '--paly' (did you mean --play?)" voice "$CHAT" --paly
expect_usage "unknown option '--jsn' (did you mean --json?)" tokenize "$CHAT" --text x --jsn
expect_usage "unknown option '--availabel' (did you mean --available?)" ls --availabel
expect_usage "unknown option '--bogus'" run "$CHAT" --bogus
grep -q "did you mean" "$TMP/err" && fail "--bogus is nobody's typo"
pass
expect_usage "option --json takes no value" tokenize "$CHAT" --text x --json=1
expect_usage "option --temp needs a value" run "$CHAT" --temp
expect_usage "unknown command 'chta' (did you mean chat?)" chta
expect_usage "unknown command 'servr' (did you mean serve?)" servr
cli run --help
[[ $rc -eq 0 ]] || fail "run --help"
for want in "^Usage: locallm run \[MODEL\] \[PROMPT...\]" "^      --raw " "^  -sys, --system, --system-prompt TEXT" \
    "^  -c, --ctx, --ctx-size N" "^  -h, --help "; do
    grep -q -- "$want" "$TMP/out" || fail "run --help lacks /$want/"
done
pass
cli serve --help
grep -q "^      --fallback A\[,B\]" "$TMP/out" && grep -q "^      --parallel, -np N" "$TMP/out" || fail "serve --help"
pass

# ---- list, and a short name without a tag ----
repo=$HF_HUB_CACHE/models--mlx-community--Llama-3.2-3B-Instruct-4bit
commit=0123456789abcdef0123456789abcdef01234567
mkdir -p "$repo/snapshots/$commit" "$repo/refs"
cp "$CHAT"/*.json "$CHAT"/*.safetensors "$repo/snapshots/$commit/"
printf '%s' "$commit" >"$repo/refs/main"
cli ls
[[ $rc -eq 0 ]] && grep -q "^mlx-community/Llama-3.2-3B-Instruct-4bit " "$TMP/out" || fail "ls lists the cached model"
cp "$TMP/out" "$TMP/ls.out"
cli list
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/ls.out" || fail "list is not ls"
pass
expect_out "$HI" run llama3.2 "Hi"
expect_out "$HI" run llama3.2:3b "Hi"
cli ls --available
grep -q "A name without its tag picks the default size: .*llama3.2 = llama3.2:3b" "$TMP/out" || fail "ls --available: defaults"
pass
cli run qwen2.5 "Hi"
[[ $rc -eq 1 ]] && grep -q "mlx-community/Qwen2.5-7B-Instruct-4bit" "$TMP/err" || fail "qwen2.5 is qwen2.5:7b"
pass
cli rm llama3.2
[[ $rc -eq 0 && $(cat "$TMP/out") == "removed mlx-community/Llama-3.2-3B-Instruct-4bit" ]] || fail "rm llama3.2"
pass

echo "test_run.sh: $n_checks checks passed"
