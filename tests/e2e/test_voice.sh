#!/usr/bin/env bash
# tests/e2e/test_voice.sh: `locallm voice` end to end on models/tinychat.
# Usage: test_voice.sh /path/to/locallm   (env: LM_SOURCE_DIR = repo)
# Two utterances (partials, then a final; or plain text lines) give tinychat's greedy replies, cut
# into sentences, printed and spoken in order (--tts -: printed only); the library's chunker (lm_sentences_*) cuts early at a
# clause (--first-chunk) or a long sentence (--max-chunk); a TTS command gets one sentence per run
# on stdin with $LOCALLM_WAV named turnN_sentM.wav; a barge-in stops the first reply after the
# sentence being spoken, and the conversation keeps only that. The default TTS (espeak-ng) is
# checked by test_voice_tts.sh, playback (--play) by test_voice_play.sh.
set -euo pipefail

CLI=${1:?usage: test_voice.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT


cat >"$TMP/two.jsonl" <<'JSON'
{"partial": "Hi"}
{"final": "Hi"}
{"partial": "What is"}
{"partial": "What is the capital"}
{not json: a line starting with a brace must be JSON, or it is skipped with a warning
{"partial": "What is the capital of Fra"}
{"final": "What is the capital of France?"}
JSON
printf '%s\n' "Hello!" "How can I help you today?" "The capital of France is Paris." >"$TMP/want"

# ---- help and errors ----
cli voice --help
[[ $rc -eq 0 ]] && grep -q -- "--tts" "$TMP/out" || fail "voice --help"
pass
cli voice "$MODEL" --bogus
[[ $rc -eq 2 ]] && grep -qF "unknown option '--bogus'" "$TMP/err" || fail "voice --bogus"
pass
cli voice "$MODEL" --tts - --transcripts "$TMP/missing.jsonl"
[[ $rc -eq 1 ]] && grep -qF "missing.jsonl" "$TMP/err" || fail "voice with a missing transcript"
pass

# ---- sentences printed in order, from a file and from stdin ----
cli voice "$MODEL" --tts - --transcripts "$TMP/two.jsonl"
[[ $rc -eq 0 ]] || fail "voice --tts - exited $rc"
cmp -s "$TMP/out" "$TMP/want" || fail "voice --tts -: sentences"
grep -qF "two.jsonl:5: not a JSON object" "$TMP/err" || fail "voice: the bad line is not reported"
[[ $(grep -c '^turn [12]: end of speech -> first token ' "$TMP/err") -eq 2 ]] || fail "voice: latency report"
pass
rc=0
"$CLI" voice --tts - <"$TMP/two.jsonl" >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "voice from stdin (default model)"
pass

# --json: one object per turn on stderr; the partials were prefilled, so the second turn finds
# most of its prompt cached
cli voice "$MODEL" --tts - --transcripts "$TMP/two.jsonl" --json
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "voice --json: sentences"
[[ $(grep -c '^{"turn":' "$TMP/err") -eq 2 ]] || fail "voice --json: two JSON lines"
grep -q '^{"turn":2,.*"sentences":1,' "$TMP/err" || fail "voice --json: turn 2 fields"
cached=$(grep '^{"turn":2' "$TMP/err" | sed -E 's/.*"cached_tokens":([0-9]+).*/\1/')
prompt=$(grep '^{"turn":2' "$TMP/err" | sed -E 's/.*"prompt_tokens":([0-9]+).*/\1/')
[[ $((prompt - cached)) -le 10 ]] || fail "voice: turn 2 prefilled $((prompt - cached)) of $prompt tokens"
pass

# --no-partial-prefill: the same sentences, but turn 2 finds only turn 1's history cached
cli voice "$MODEL" --tts - --transcripts "$TMP/two.jsonl" --json --no-partial-prefill
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "voice --no-partial-prefill: sentences"
cached_np=$(grep '^{"turn":2' "$TMP/err" | sed -E 's/.*"cached_tokens":([0-9]+).*/\1/')
[[ $cached_np -lt $cached && $((prompt - cached_np)) -gt 10 ]] ||
    fail "voice --no-partial-prefill: turn 2 cached $cached_np tokens (with partial prefill: $cached)"
pass

# the chunker's options: the first sentence may end at a clause once it has --first-chunk
# characters ("Sorry," has 6); --max-chunk cuts a long sentence at a space
printf '%s\n' '{"final": "What is the weather in Paris?"}' >"$TMP/weather.jsonl"
cli voice "$MODEL" --tts - --transcripts "$TMP/weather.jsonl"
[[ $rc -eq 0 && $(cat "$TMP/out") == "Sorry, I can't check the weather right now." ]] ||
    fail "voice: 'Sorry,' is below the default --first-chunk 20"
pass
cli voice "$MODEL" --tts - --transcripts "$TMP/weather.jsonl" --first-chunk 5
printf '%s\n' "Sorry," "I can't check the weather right now." >"$TMP/want_fc"
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want_fc" || fail "voice --first-chunk 5"
pass
printf '%s\n' '{"final": "Hi"}' >"$TMP/hi.jsonl"
cli voice "$MODEL" --tts - --transcripts "$TMP/hi.jsonl" --max-chunk 10
printf '%s\n' "Hello!" "How can I help" "you today?" >"$TMP/want_mc"
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want_mc" || fail "voice --max-chunk 10"
pass
cli voice "$MODEL" --tts - --transcripts "$TMP/hi.jsonl" --first-chunk -1
[[ $rc -eq 2 ]] && grep -qF -- "--first-chunk: -1 is out of range" "$TMP/err" || fail "voice --first-chunk -1"
pass

# timed lines ("at_ms"): the second utterance comes 4 s after start, after the first reply (which
# takes well under a second, a few on a loaded machine under sanitizers)
cat >"$TMP/timed.jsonl" <<'JSON'
{"final": "Hi", "at_ms": 0}
{"partial": "What is the", "at_ms": 3900}
{"final": "What is the capital of France?", "at_ms": 4000}
JSON
cli voice "$MODEL" --tts - --transcripts "$TMP/timed.jsonl"
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "voice with at_ms"
grep -q "barge-in" "$TMP/err" && fail "voice with at_ms: unexpected barge-in"
pass

# ---- plain text lines are final transcripts: the same two turns, typed ----
printf '%s\n' "Hi" "  " "What is the capital of France?" >"$TMP/plain.txt"
rc=0
"$CLI" voice "$MODEL" <"$TMP/plain.txt" >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "voice with plain text lines"
[[ $(grep -c '^turn [12]: end of speech' "$TMP/err") -eq 2 ]] || fail "voice plain text: two turns"
grep -q "warning" "$TMP/err" && fail "voice plain text: a warning"
pass
# -q prints nothing on stdout
cli voice "$MODEL" -q --transcripts "$TMP/plain.txt"
[[ $rc -eq 0 && ! -s $TMP/out && $(grep -c '^turn ' "$TMP/err") -eq 2 ]] || fail "voice -q"
pass
cli voice "$MODEL" --tts - --play
[[ $rc -eq 2 ]] && grep -qF -- "--tts - means no speech" "$TMP/err" || fail "voice --tts - --play"
pass

# ---- a TTS command: one run per sentence, sentence on stdin, $LOCALLM_WAV ----
cat >"$TMP/tts.sh" <<'SH'
#!/bin/sh
s=$(cat)
printf '%s|%s\n' "$(basename "$LOCALLM_WAV")" "$s" >>"$SPOKEN"
printf 'RIFF' >"$LOCALLM_WAV"
SH
chmod +x "$TMP/tts.sh"
export SPOKEN=$TMP/spoken
cli voice "$MODEL" --tts "$TMP/tts.sh" --transcripts "$TMP/two.jsonl" --out-dir "$TMP/wav"
[[ $rc -eq 0 ]] || fail "voice --tts CMD exited $rc"
cmp -s "$TMP/out" "$TMP/want" || fail "voice --tts CMD: the reply text on stdout"
printf '%s\n' "turn1_sent1.wav|Hello!" "turn1_sent2.wav|How can I help you today?" \
    "turn2_sent1.wav|The capital of France is Paris." >"$TMP/want_spoken"
cmp -s "$SPOKEN" "$TMP/want_spoken" || { cat "$SPOKEN" >&2; fail "voice --tts CMD: sentences and WAV names"; }
[[ $(ls "$TMP/wav" | wc -l) -eq 3 ]] || fail "voice --tts CMD: three WAV files"
pass

# ---- barge-in: the transcript comes through a pipe; the next utterance is written once the
# first sentence ("Hello!") is being spoken (the TTS then takes 1 s more), so it arrives during the
# reply: the rest of the first reply is never spoken and the history keeps only "Hello!" ----
rm -f "$SPOKEN"
feed() {
    printf '%s\n' '{"final": "Hi"}'
    for ((k = 0; k < 600; k++)); do [[ -s $SPOKEN ]] && break; sleep 0.05; done
    printf '%s\n' '{"partial": "What"}' '{"final": "What is the capital of France?"}'
}
rc=0
feed | "$CLI" voice "$MODEL" --tts "$TMP/tts.sh; sleep 1" --out-dir "$TMP/wav2" --json \
    >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 0 ]] || fail "voice barge-in exited $rc"
printf '%s\n' "turn1_sent1.wav|Hello!" "turn2_sent1.wav|The capital of France is Paris." >"$TMP/want_spoken"
cmp -s "$SPOKEN" "$TMP/want_spoken" || { cat "$SPOKEN" >&2; fail "voice barge-in: spoken sentences"; }
grep -q '^{"turn":1,.*"sentences":1,.*"barge_in":true}' "$TMP/err" || fail "voice barge-in: turn 1 not reported as barged"
grep -q '^{"turn":2,.*"barge_in":false}' "$TMP/err" || fail "voice barge-in: turn 2"
pass
# the kept history is exactly user "Hi" / assistant "Hello!": the second prompt renders as
prompt2=$(grep '^{"turn":2' "$TMP/err" | sed -E 's/.*"prompt_tokens":([0-9]+).*/\1/')
printf '%s' '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"What is the capital of France?"}]' >"$TMP/hist.json"
want2=$("$CLI" template "$MODEL" --messages "$TMP/hist.json" --ids | tr -cd ',' | wc -c)
[[ $prompt2 -eq $((want2 + 1)) ]] || fail "voice barge-in: turn 2 prompt has $prompt2 tokens, history of Hi/Hello! has $((want2 + 1))"
pass

# ---- bench --conversation (the speed figures the voice loop depends on), on stories260K ----
cli bench "$SRC/tests/data/stories260K/stories260K-f32.gguf" -p 8 -n 0 -r 1 -t 1 --conversation --json
[[ $rc -eq 0 ]] || fail "bench --conversation exited $rc"
python3 - "$TMP/out" <<'PY' || fail "bench --conversation: JSON fields"
import json, sys
c = json.load(open(sys.argv[1]))["conversation"]
keys = ["turn1_ttft_ms", "turn5_ttft_ms", "full_reprefill_ttft_ms", "partial_ttft_ms"]
assert all(c[k] > 0 for k in keys), c
# 30 new tokens on 1,000 cached cost far less than 1,030 from scratch
assert c["turn5_ttft_ms"] < c["full_reprefill_ttft_ms"] / 2, c
PY
pass

# ---- the server's x_sentences: a streamed chat sends one whole sentence per chunk ----
serve_start "$MODEL"
req='{"messages":[{"role":"user","content":"Hi"}],"stream":true,"x_sentences":true}'
curl -sN --max-time 60 "$BASE/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "$req" >"$TMP/sse" || fail "x_sentences: curl"
python3 - "$TMP/sse" <<'PY' || fail "x_sentences: SSE chunks"
import json, sys
got = []
for line in open(sys.argv[1]):
    if line.startswith("data: {"):
        d = json.loads(line[6:])["choices"]
        if d and d[0]["delta"].get("content"):
            got.append(d[0]["delta"]["content"])
assert got == ["Hello!", "How can I help you today?"], got
PY
code=$(curl -s -o "$TMP/body" -w '%{http_code}' "$BASE/v1/chat/completions" \
    -H 'Content-Type: application/json' -d '{"messages":[{"role":"user","content":"Hi"}],"x_sentences":1}')
[[ $code == 400 ]] && grep -qF "'x_sentences' must be a boolean" "$TMP/body" || fail "x_sentences: 1 gives $code"
serve_stop
pass

echo "test_voice.sh: $n_checks checks passed"
