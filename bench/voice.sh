#!/usr/bin/env bash
# bench/voice.sh: the voice loop's latency on a Llama-3.2-1B-shaped Q4_0 file, with and without
# prefill of partial transcripts, plus `locallm bench --conversation` on the same file.
#
#   bench/voice.sh [--reps R] [--threads T] [--preset llama-3.2-1b] [--type Q4_0]
#                  [--words N] [--wps W] [--partial-ms P] [--conv-reps C] [--no-conversation]
#
# - writes the synthetic model (tools/make_synthetic_gguf.py, random weights) into
#   $LOCALLM_BENCH_DIR (default /tmp/locallm-bench), never into the repository;
# - builds locallm (Release) into $LOCALLM_BENCH_DIR/build unless $LOCALLM names a binary;
# - writes a timed transcript (JSON lines with "at_ms"): speech starts 500 ms after the model is
#   ready, N words (default 12) at W words/s (default 2.5), a partial every P ms (default 150)
#   holding the words begun so far, then the final at the end of the last word (end of speech);
# - runs `locallm voice --json --tts -` R times (default 5) with partial prefill and R times with
#   --no-partial-prefill, alternately, and prints the medians of "end of speech -> first token"
#   and "-> first sentence ready", with the prompt/cached token counts;
# - then `locallm bench --conversation` with C repetitions (default 1): TTFT of turn 1 with a
#   500-token system prompt, of turn 5, without reuse, and after partial prefill.
#
# The weights are random, so the reply is random words without sentence ends: the first chunk is
# forced by --max-chunk 40 (the chunker cuts at the first space after 40 characters, about 8
# tokens here), which is what "first sentence ready" measures. The synthetic vocabulary has no
# special tokens, so a simple plain-text chat template is used (User:/Assistant: lines) and the
# prompt is a short system prompt plus the utterance. Raw JSON lines go to
# $LOCALLM_BENCH_DIR/runs/voice-<date>/.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
reps=5
threads=2
preset=llama-3.2-1b
type=Q4_0
words=12
wps=2.5
partial_ms=150
conv_reps=1
conversation=1
max_tokens=16
max_chunk=40

while [ $# -gt 0 ]; do
    case $1 in
        --reps) reps=$2; shift ;;
        --threads) threads=$2; shift ;;
        --preset) preset=$2; shift ;;
        --type) type=$2; shift ;;
        --words) words=$2; shift ;;
        --wps) wps=$2; shift ;;
        --partial-ms) partial_ms=$2; shift ;;
        --conv-reps) conv_reps=$2; shift ;;
        --no-conversation) conversation=0 ;;
        -h|--help) bench_help "$0"; exit 0 ;;
        *) bench_bad_option "$1" ;;
    esac
    shift
done

mkdir -p "$dir"
model=$dir/$preset-$type.gguf
bench_gguf "$root" "$preset" "$type" "$model"
bench_locallm "$root" "$dir" "$threads"

runs=$dir/runs/voice-$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$runs"
tpl=$runs/plain.jinja
cat >"$tpl" <<'JINJA'
{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}
{% elif m.role == 'user' %}User: {{ m.content }}
{% else %}Assistant: {{ m.content }}
{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}
JINJA
transcript=$runs/transcript.jsonl
python3 - "$words" "$wps" "$partial_ms" >"$transcript" <<'PY'
import json, sys
n, wps, step = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
pool = ("can you tell me how far it is from here to the old town and what the "
        "weather will be like there this evening please").split()
words = [pool[i % len(pool)] for i in range(n)]
start, per_word = 500.0, 1000.0 / wps
end = start + n * per_word
t = start + step
while t < end:
    begun = min(n, int((t - start) // per_word) + 1)
    print(json.dumps({"partial": " ".join(words[:begun]), "at_ms": round(t)}))
    t += step
print(json.dumps({"final": " ".join(words), "at_ms": round(end)}))
PY
n_lines=$(wc -l <"$transcript")
log "transcript: $words words at $wps words/s, $((n_lines - 1)) partials every $partial_ms ms, final at $(tail -1 "$transcript" | sed -E 's/.*"at_ms": ([0-9]+).*/\1/') ms"

system="You are a helpful voice assistant. Answer in one or two short sentences."
voice() {
    "$LOCALLM" voice "$model" -t "$threads" --chat-template "$tpl" --system "$system" --tts - \
        -n "$max_tokens" --max-chunk "$max_chunk" --json --transcripts "$transcript" "$@"
}
for ((r = 1; r <= reps; r++)); do
    for mode in partial none; do
        extra=()
        [ "$mode" = none ] && extra=(--no-partial-prefill)
        voice "${extra[@]}" >"$runs/$mode-$r.out" 2>"$runs/$mode-$r.err" ||
            { cat "$runs/$mode-$r.err" >&2; exit 1; }
        line=$(grep '^{"turn":1' "$runs/$mode-$r.err")
        printf '%s\n' "$line" >>"$runs/$mode.jsonl"
        log "run $r, partial prefill $([ "$mode" = partial ] && echo on || echo off): $line"
    done
done

python3 - "$runs" "$reps" <<'PY'
import json, statistics, sys
runs, reps = sys.argv[1], int(sys.argv[2])
print(f"\nvoice loop, median of {reps} runs (ms from end of speech):\n")
print("| partial prefill | first token | first sentence ready | prompt tokens | cached at end of speech |")
print("| --- | --- | --- | --- | --- |")
for mode, name in (("partial", "on"), ("none", "off")):
    rows = [json.loads(l) for l in open(f"{runs}/{mode}.jsonl")]
    med = lambda k: statistics.median(r[k] for r in rows)
    print(f"| {name} | {med('first_token_ms'):.0f} | {med('first_sentence_ms'):.0f} | "
          f"{med('prompt_tokens'):.0f} | {med('cached_tokens'):.0f} |")
PY

if [ "$conversation" = 1 ]; then
    log "locallm bench --conversation ($conv_reps repetition(s); a few minutes on 2 cores)"
    "$LOCALLM" bench "$model" -t "$threads" -p 8 -n 0 -r "$conv_reps" --conversation --json \
        >"$runs/conversation.json"
    python3 - "$runs/conversation.json" "$conv_reps" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["conversation"]
print(f"\nbench --conversation, median of {sys.argv[2]} (TTFT = new tokens' prefill + one decode step):\n")
print("| turn | TTFT ms |")
print("| --- | --- |")
print(f"| turn 1: 500-token system prompt + 30 | {c['turn1_ttft_ms']:.0f} |")
print(f"| turn 5: 1,000 cached + 30 new | {c['turn5_ttft_ms']:.0f} |")
print(f"| turn 5 without reuse (1,030 prefilled) | {c['full_reprefill_ttft_ms']:.0f} |")
print(f"| after partial prefill: 1,025 cached + 5 new | {c['partial_ttft_ms']:.0f} |")
PY
fi
log "raw results in $runs"
