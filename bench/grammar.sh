#!/usr/bin/env bash
# bench/grammar.sh: what structured output costs (issue #23), measured by bench/grammar_bench.c.
#
#   bench/grammar.sh [--reps R] [--tokens N] [--threads T]
#
# - builds the library (Release) into $LOCALLM_BENCH_DIR/grammar/build (default
#   /tmp/locallm-bench) and bench/grammar_bench.c against it;
# - compile: the grammar of a call to one of 10 tools (tools JSON -> grammar -> compiled ->
#   matcher on the Qwen2 vocabulary), median of 200;
# - sampler: smp_sample alone on seeded random logits of Qwen2.5's 151,936 entries over the real
#   Qwen2 vocabulary (tests/data/tokenizers/qwen2), with and without bench/grammar_schema.json;
# - decode: tinychat (models/tinychat) and a Qwen2.5-0.5B-shaped Q4_0 GGUF carrying the real
#   Qwen2 tokenizer (tools/make_synthetic_gguf.py --tokenizer-json; random weights, so the
#   model writes random but schema-valid JSON), unconstrained against the schema, alternating,
#   greedy and at temperature 1; median decode tok/s of R runs of N tokens.
# Prints one JSON line per measurement. Take the benchmark lock (/work/BENCH_LOCK) around it on a
# shared machine.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
dir=$dir/grammar
reps=5 tokens=128 threads=2
while [ $# -gt 0 ]; do
    case $1 in
        --reps) reps=$2; shift ;;
        --tokens) tokens=$2; shift ;;
        --threads) threads=$2; shift ;;
        -h|--help) bench_help "$0"; exit 0 ;;
        *) bench_bad_option "$1" ;;
    esac
    shift
done
mkdir -p "$dir"
bash "$root/scripts/testdata.sh"
qwen_tok=$root/tests/data/tokenizers/qwen2
schema=$here/grammar_schema.json

bench_c_program "$root" "$dir" "$here/grammar_bench.c" "$dir/grammar_bench" \
    libcjson libpcre2-8 libutf8proc libcurl libmicrohttpd

gguf=$dir/qwen2.5-0.5b-Q4_0-qwen2tok.gguf
if [ ! -f "$gguf" ]; then
    bench_python
    log "writing $gguf"
    "$python" "$root/tools/make_synthetic_gguf.py" --preset qwen2.5-0.5b --type Q4_0 \
        --tokenizer-json "$qwen_tok/tokenizer.json" --out "$gguf" >&2
fi

lscpu | sed -n 's/^Model name: *//p' | sed 's/^/{"what":"cpu","model":"/; s/$/"}/'
"$dir/grammar_bench" compile "$qwen_tok" -r 200
"$dir/grammar_bench" compile "$root/models/tinychat" -r 200
"$dir/grammar_bench" sampler "$qwen_tok" "$schema" -n "$tokens" -r "$reps" --logits 151936
"$dir/grammar_bench" sampler "$root/models/tinychat" "$schema" -n "$tokens" -r "$reps"
for temp in 0 1; do
    "$dir/grammar_bench" decode "$root/models/tinychat" "$schema" -n "$tokens" -r "$reps" -t 1 --temp "$temp"
    "$dir/grammar_bench" decode "$gguf" "$schema" -n "$tokens" -r "$reps" -t "$threads" --temp "$temp"
done
