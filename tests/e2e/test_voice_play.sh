#!/usr/bin/env bash
# tests/e2e/test_voice_play.sh: `locallm voice --play`, heard through the system's audio player,
# on models/tinychat with the default TTS (espeak-ng). The player is a recording stub put first on
# PATH in place of aplay (and of paplay): it logs each file it is given (name, RIFF header, size)
# and "plays" it for $PLAY_TICKS × 50 ms, logging whether it finished or was stopped.
# Usage: test_voice_play.sh /path/to/locallm   (env: LM_SOURCE_DIR = repo)
# Checks: plain text lines on stdin are what the user said; each sentence is synthesized to a real
# WAV file and played in order, one player run per sentence, while the reply text is printed; the
# first audio is reported when playback starts; a new utterance during playback stops the player
# at once (it is killed, the rest of the reply is never played) and the conversation keeps only
# what was heard; paplay is used where there is no aplay; no player or no espeak-ng is an error
# that says what to install; the temporary WAV files are removed.
# espeak-ng and python3 must be installed (scripts/deps.sh installs espeak-ng): the test fails
# without them.
set -euo pipefail

CLI=${1:?usage: test_voice_play.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat
TMP=$(mktemp -d)
E2E_SHOW='out err play.log'
. "$(dirname "$0")/lib.sh"
trap 'rm -rf "$TMP"' EXIT

for c in espeak-ng python3; do
    command -v "$c" >/dev/null 2>&1 || fail "$c not found (scripts/deps.sh installs espeak-ng)"
done

# A PATH of our own: the tools the TTS and the stub need, and the stub as the player; so neither a
# real aplay nor a real paplay of this machine is found.
mkdir -p "$TMP/sys" "$TMP/aplay" "$TMP/paplay" "$TMP/tmpdir"
for t in espeak-ng sh basename head wc sleep cat tr; do ln -s "$(command -v "$t")" "$TMP/sys/$t"; done
cat >"$TMP/stub" <<'SH'
#!/bin/sh
# a player: logs "start NAME PROGRAM ARGS MAGIC BYTES" (the file as FILE), then "end NAME", or
# "killed NAME" on SIGTERM
for wav; do :; done
name=$(basename "$wav")
args=
for a; do if [ "$a" = "$wav" ]; then args="$args FILE"; else args="$args $a"; fi; done
# the trap is set before "start" is logged (the test stops the player only after it sees that
# line); the playing is short sleeps, after each of which the shell runs a pending trap, because a
# TERM that arrives between starting a background job and `wait` is only acted on once the job ends
trap 'printf "killed %s\n" "$name" >>"$PLAYLOG"; exit 143' TERM
printf 'start %s %s%s %s %s\n' "$name" "$(basename "$0")" "$args" "$(head -c 4 "$wav")" \
    "$(wc -c <"$wav" | tr -d ' ')" >>"$PLAYLOG"
ticks=${PLAY_TICKS:-4}
while [ "$ticks" -gt 0 ]; do
    sleep 0.05
    ticks=$((ticks - 1))
done
printf 'end %s\n' "$name" >>"$PLAYLOG"
SH
cp "$TMP/stub" "$TMP/aplay/aplay"
cp "$TMP/stub" "$TMP/paplay/paplay"
chmod +x "$TMP/aplay/aplay" "$TMP/paplay/paplay"
export PLAYLOG=$TMP/play.log TMPDIR=$TMP/tmpdir
APLAY_PATH=$TMP/aplay:$TMP/sys
printf '%s\n' "Hello!" "How can I help you today?" >"$TMP/want_hi"

# ---- two sentences, played in order while the text is printed ----
rc=0
printf 'Hi\n' | timeout 120 env PATH="$APLAY_PATH" "$CLI" voice "$MODEL" --play --json >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 0 ]] || fail "voice --play exited $rc"
cmp -s "$TMP/out" "$TMP/want_hi" || fail "voice --play: the reply text"
grep -q "warning" "$TMP/err" && fail "voice --play: a warning"
python3 - "$PLAYLOG" <<'PY' || fail "voice --play: what the player got"
import sys
log = [l.split() for l in open(sys.argv[1])]
assert [l[:2] for l in log] == [["start", "turn1_sent1.wav"], ["end", "turn1_sent1.wav"],
                                ["start", "turn1_sent2.wav"], ["end", "turn1_sent2.wav"]], log
for l in (log[0], log[2]):
    assert l[2:5] == ["aplay", "-q", "FILE"], l   # aplay -q FILE
    assert l[5] == "RIFF" and int(l[6]) > 2000, l  # a real WAV from espeak-ng
# "How can I help you today?" takes longer to say than "Hello!"
assert int(log[2][6]) > int(log[0][6]), log
PY
grep -q '^{"turn":1,.*"sentences":2,.*"barge_in":false}' "$TMP/err" || fail "voice --play: the turn report"
fa=$(sed -n 's/.*"first_sentence_ms":\([0-9.]*\),"first_audio_ms":\([0-9.]*\),.*/\1 \2/p' "$TMP/err")
awk -v a="${fa% *}" -v b="${fa#* }" 'BEGIN { exit !(b > a && b > 0) }' || fail "first audio ($fa) is not after the first sentence"
# (libpulse, which espeak-ng loads, may leave its own pulse-XXXX folder there: not ours)
ours() { ls -A "$TMP/tmpdir" | grep -v '^pulse-' || true; }
[[ -z $(ours) ]] || fail "voice --play left files in \$TMPDIR: $(ls -R "$TMP/tmpdir")"
pass

# ---- barge-in: the next utterance comes while the first sentence plays (for 4 s) ----
rm -f "$PLAYLOG"
feed() {
    printf 'Hi\n'
    for ((k = 0; k < 1200; k++)); do grep -q "^start turn1_sent1" "$PLAYLOG" 2>/dev/null && break; sleep 0.05; done
    printf 'What is the capital of France?\n'
}
rc=0
feed | PLAY_TICKS=80 timeout 120 env PATH="$APLAY_PATH" "$CLI" voice "$MODEL" --play --json >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 0 ]] || fail "voice --play barge-in exited $rc"
printf '%s\n' "start turn1_sent1.wav" "killed turn1_sent1.wav" "start turn2_sent1.wav" "end turn2_sent1.wav" >"$TMP/want"
cut -d' ' -f1-2 "$PLAYLOG" | cmp -s - "$TMP/want" || fail "voice --play barge-in: the player was not stopped, or played the rest"
grep -q '^{"turn":1,.*"sentences":1,.*"barge_in":true}' "$TMP/err" || fail "voice --play barge-in: turn 1 report"
t1=$(sed -n 's/^{"turn":1,.*"total_ms":\([0-9.]*\),.*/\1/p' "$TMP/err")
awk -v t="$t1" 'BEGIN { exit !(t < 4000) }' || fail "turn 1 lasted $t1 ms: the playback was waited out, not stopped"
# the history kept only "Hello!": turn 2's prompt is that conversation's
prompt2=$(sed -n 's/^{"turn":2,.*"prompt_tokens":\([0-9]*\),.*/\1/p' "$TMP/err")
printf '%s' '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"What is the capital of France?"}]' >"$TMP/hist.json"
want2=$("$CLI" template "$MODEL" --messages "$TMP/hist.json" --ids | tr -cd ',' | wc -c)
[[ $prompt2 -eq $((want2 + 1)) ]] || fail "voice --play barge-in: turn 2 prompt has $prompt2 tokens, the history Hi/Hello! has $((want2 + 1))"
[[ -z $(ours) ]] || fail "voice --play barge-in left files in \$TMPDIR"
pass

# ---- paplay where there is no aplay ----
rm -f "$PLAYLOG"
rc=0
printf 'Hi\n' | timeout 120 env PATH="$TMP/paplay:$TMP/sys" "$CLI" voice "$MODEL" --play -q >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 0 && ! -s $TMP/out ]] || fail "voice --play -q with paplay"
[[ $(grep -c "^start turn1_sent[12].wav paplay FILE RIFF" "$PLAYLOG") -eq 2 ]] || fail "voice --play: paplay FILE, twice"
pass

# ---- what is missing is named ----
rc=0
PATH=$TMP/sys "$CLI" voice "$MODEL" --play </dev/null >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 1 ]] && grep -qF "locallm: error: --play: no audio player found: install alsa-utils (aplay) or pulseaudio-utils (paplay)" "$TMP/err" ||
    fail "voice --play without a player"
pass
rm "$TMP/sys/espeak-ng"
rc=0
PATH=$APLAY_PATH "$CLI" voice "$MODEL" --play </dev/null >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 1 ]] && grep -qF "espeak-ng, the default TTS, is not installed" "$TMP/err" || fail "voice --play without espeak-ng"
pass

echo "test_voice_play.sh: $n_checks checks passed"
