#!/usr/bin/env bash
# tests/e2e/test_voice_tts.sh: `locallm voice` with its default TTS, espeak-ng, on models/tinychat.
# Usage: test_voice_tts.sh /path/to/locallm   (env: LM_SOURCE_DIR = repo)
# Two utterances give three sentences (--tts - lists them); with the default TTS the same run
# writes exactly one WAV file per sentence, named turnN_sentM.wav in speaking order, each a valid
# RIFF/WAVE file (fmt chunk, data chunk whose length matches the file size and the frame count)
# with a non-trivial amount of audio, longer for the longer sentence.
# espeak-ng and python3 must be installed (scripts/deps.sh installs espeak-ng): without them the
# test fails rather than skip.
set -euo pipefail

CLI=${1:?usage: test_voice_tts.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
MODEL=$SRC/models/tinychat

for c in espeak-ng python3; do
    command -v "$c" >/dev/null 2>&1 || { echo "FAIL: $c not found (scripts/deps.sh installs it)" >&2; exit 1; }
done

TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT

cat >"$TMP/two.jsonl" <<'JSON'
{"partial": "Hi"}
{"final": "Hi"}
{"partial": "What is the capital"}
{"final": "What is the capital of France?"}
JSON

# the sentences, as text
cli voice "$MODEL" --tts - --transcripts "$TMP/two.jsonl"
printf '%s\n' "Hello!" "How can I help you today?" "The capital of France is Paris." >"$TMP/want"
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "voice --tts -: sentences"

# the same run spoken by espeak-ng (no --tts: the default)
cli voice "$MODEL" --transcripts "$TMP/two.jsonl" --out-dir "$TMP/wav" --json
[[ $rc -eq 0 ]] || fail "voice with espeak-ng exited $rc"
cmp -s "$TMP/out" "$TMP/want" || fail "voice with espeak-ng: the reply text on stdout"
grep -q "TTS command failed" "$TMP/err" && fail "voice: espeak-ng failed"
grep -q '^{"turn":1,.*"sentences":2,' "$TMP/err" || fail "voice: turn 1 did not speak 2 sentences"
grep -q '^{"turn":2,.*"sentences":1,' "$TMP/err" || fail "voice: turn 2 did not speak 1 sentence"
# TTS time is measured: the first audio comes after the first sentence
tts_ms=$(grep '^{"turn":1' "$TMP/err" | sed -E 's/.*"tts_ms":([0-9.]+).*/\1/')
awk -v t="$tts_ms" 'BEGIN { exit !(t > 0) }' || fail "voice: tts_ms is $tts_ms"

printf '%s\n' turn1_sent1.wav turn1_sent2.wav turn2_sent1.wav >"$TMP/want_files"
(cd "$TMP/wav" && ls -1) >"$TMP/files"
cmp -s "$TMP/files" "$TMP/want_files" || { cat "$TMP/files" >&2; fail "voice: one WAV per sentence"; }
# written in speaking order (each file is complete before the next sentence is spoken)
[[ ! $TMP/wav/turn1_sent1.wav -nt $TMP/wav/turn1_sent2.wav &&
   ! $TMP/wav/turn1_sent2.wav -nt $TMP/wav/turn2_sent1.wav ]] || fail "voice: WAV files out of order"

# every file a valid WAV; durations follow the sentences' lengths
python3 - "$TMP/wav" >"$TMP/check" 2>&1 <<'PY' || { cat "$TMP/check" >&2; fail "voice: invalid WAV file"; }
import os, struct, sys, wave
folder = sys.argv[1]
secs = []
for name in ["turn1_sent1.wav", "turn1_sent2.wav", "turn2_sent1.wav"]:
    path = os.path.join(folder, name)
    data = open(path, "rb").read()
    assert data[0:4] == b"RIFF" and data[8:12] == b"WAVE", f"{name}: no RIFF/WAVE header"
    riff_size = struct.unpack("<I", data[4:8])[0]
    # espeak-ng writing to a file fills in the sizes when it closes it
    assert riff_size == len(data) - 8, f"{name}: RIFF size {riff_size}, file has {len(data) - 8}"
    pos, chunks = 12, {}
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        chunks[cid] = (pos + 8, size)
        pos += 8 + size + (size & 1)
    assert pos == len(data), f"{name}: chunks end at {pos}, file has {len(data)} bytes"
    assert b"fmt " in chunks and b"data" in chunks, f"{name}: chunks {list(chunks)}"
    fmt_at, fmt_size = chunks[b"fmt "]
    tag, ch, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", data[fmt_at:fmt_at + 16])
    assert tag == 1 and ch >= 1 and rate >= 8000 and bits in (8, 16), f"{name}: fmt {tag} {ch} {rate} {bits}"
    assert align == ch * bits // 8 and byte_rate == rate * align, f"{name}: fmt rates"
    data_size = chunks[b"data"][1]
    assert data_size % align == 0, f"{name}: data {data_size} bytes, frames of {align}"
    with wave.open(path) as w:
        assert w.getnframes() * w.getsampwidth() * w.getnchannels() == data_size
        secs.append(w.getnframes() / w.getframerate())
print(" ".join(f"{s:.2f}" for s in secs))
assert all(s > 0.2 for s in secs), f"durations {secs}"
# "Hello!" is shorter to say than "How can I help you today?"
assert secs[0] < secs[1], f"durations {secs}"
PY

echo "test_voice_tts.sh: espeak-ng wrote 3 valid WAV files ($(cat "$TMP/check") s)"
