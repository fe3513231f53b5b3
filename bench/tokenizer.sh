#!/usr/bin/env bash
# bench/tokenizer.sh: tokenizer load time and encode throughput, locallm against llama.cpp.
#
#   bench/tokenizer.sh [--reps R]
#
# - builds the library (Release) into $LOCALLM_BENCH_DIR/tok/build (default /tmp/locallm-bench)
#   and bench/tok_bench.c against it;
# - texts: English prose (the licence texts in /usr/share/common-licenses, repeated to ~0.7 MB;
#   the repository's Markdown when they are missing) and C source (the repository's src/, ~0.9 MB);
# - the Llama 3 tokenizer (tests/data/tokenizers/llama3/tokenizer.json: 128k tokens, 280k merges)
#   as tokenizer.json and as a vocabulary-only GGUF (tokenizer.ggml.model gpt2, pre llama-bpe)
#   written here from the same file, so both engines read the same vocabulary;
# - locallm: bench/tok_bench (fastest of R loads, fastest of R encodes, one core);
#   llama.cpp: node-llama-cpp 3.21.1 (bench/peer, installed as bench/compare.sh does)
#   model.tokenize(text) on the GGUF, loaded with vocabOnly; its load time includes
#   node-llama-cpp's own GGUF reading and memory planning, so only its encode figure compares.
# Prints one JSON line per measurement and a markdown table. Token counts of the two engines are
# printed side by side: they must be equal.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
dir=$dir/tok
reps=5
while [ $# -gt 0 ]; do
    case $1 in
        --reps) reps=$2; shift ;;
        -h|--help) bench_help "$0"; exit 0 ;;
        *) bench_bad_option "$1" ;;
    esac
    shift
done
mkdir -p "$dir"

bash "$root/scripts/testdata.sh"
tj=$root/tests/data/tokenizers/llama3/tokenizer.json

# 1. locallm
bench_c_program "$root" "$dir" "$here/tok_bench.c" "$dir/tok_bench" libcjson libpcre2-8 libutf8proc libcurl

# 2. texts
prose=$dir/prose.txt code=$dir/code.txt
lic=/usr/share/common-licenses
if [ -f $lic/GPL-3 ] && [ -f $lic/Apache-2.0 ] && [ -f $lic/GPL-2 ] && [ -f $lic/LGPL-2.1 ]; then
    for _ in 1 2 3 4 5 6 7 8; do cat $lic/GPL-3 $lic/Apache-2.0 $lic/GPL-2 $lic/LGPL-2.1; done >"$prose"
else
    (cd "$root" && git ls-files '*.md' | xargs cat) >"$prose"
fi
(cd "$root" && git ls-files 'src/*.c' 'src/*.h' | sort | xargs cat | head -c 900000 || true) >"$code"

# 3. the same vocabulary as a GGUF (no tensors: llama.cpp loads it with vocab_only)
gguf=$dir/llama3-vocab.gguf
if [ ! -f "$gguf" ] || [ "$tj" -nt "$gguf" ]; then
python3 - "$tj" "$gguf" <<'EOF'
import json, struct, sys
U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9
def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b
def kv(key, t, v):
    body = {U32: lambda: struct.pack("<I", v), F32: lambda: struct.pack("<f", v),
            BOOL: lambda: struct.pack("<B", 1 if v else 0), STR: lambda: gstr(v)}[t]()
    return gstr(key) + struct.pack("<I", t) + body
def kv_array(key, t, vals):
    out = [gstr(key), struct.pack("<IIQ", ARR, t, len(vals))]
    out += [gstr(x) for x in vals] if t == STR else [struct.pack("<%di" % len(vals), *vals)]
    return b"".join(out)
tj = json.load(open(sys.argv[1], encoding="utf-8"))
vocab, added = tj["model"]["vocab"], {a["id"]: a for a in tj.get("added_tokens", [])}
n = max(max(vocab.values()), max(added, default=-1)) + 1
tokens, types = [None] * n, [1] * n              # token_type 1 normal, 3 control, 4 user, 5 unused
for s, i in vocab.items():
    tokens[i] = s
for i, a in added.items():
    tokens[i], types[i] = a["content"], 3 if a.get("special") else 4
for i in range(n):
    if tokens[i] is None:
        tokens[i], types[i] = "[PAD%d]" % i, 5
merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
a = "llama"
meta = [kv("general.architecture", STR, a), kv("general.name", STR, "Llama 3 vocabulary (bench)"),
        kv("general.alignment", U32, 32), kv(a + ".context_length", U32, 8192),
        kv(a + ".embedding_length", U32, 64), kv(a + ".block_count", U32, 1),
        kv(a + ".feed_forward_length", U32, 128), kv(a + ".attention.head_count", U32, 8),
        kv(a + ".attention.head_count_kv", U32, 8), kv(a + ".rope.freq_base", F32, 500000.0),
        kv(a + ".attention.layer_norm_rms_epsilon", F32, 1e-5), kv(a + ".vocab_size", U32, n),
        kv("tokenizer.ggml.model", STR, "gpt2"), kv("tokenizer.ggml.pre", STR, "llama-bpe"),
        kv_array("tokenizer.ggml.tokens", STR, tokens), kv_array("tokenizer.ggml.token_type", I32, types),
        kv_array("tokenizer.ggml.merges", STR, merges), kv("tokenizer.ggml.bos_token_id", U32, 128000),
        kv("tokenizer.ggml.eos_token_id", U32, 128001), kv("tokenizer.ggml.add_bos_token", BOOL, True)]
with open(sys.argv[2] + ".tmp", "wb") as f:
    f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta)))
    for m in meta:
        f.write(m)
    f.write(b"\0" * (-f.tell() % 32))
import os
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
EOF
fi

out=$dir/results.jsonl
: >"$out"
log "locallm: tokenizer.json"
"$dir/tok_bench" "$tj" -r "$reps" "$prose" "$code" | sed 's/^{/{"engine":"locallm","source":"tokenizer.json",/' | tee -a "$out"
log "locallm: GGUF"
"$dir/tok_bench" "$gguf" -r "$reps" "$prose" "$code" | sed 's/^{/{"engine":"locallm","source":"gguf",/' | tee -a "$out"

# 4. llama.cpp through node-llama-cpp
peer=$here/peer
if command -v node >/dev/null; then
    bench_peer "$here"
    cat >"$dir/llamacpp_tok.mjs" <<'EOF'
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
const [peer, model, reps, ...files] = process.argv.slice(2);
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(path.join(peer, "node_modules", "node-llama-cpp", "dist", "index.js")).href);
const llama = await getLlama({ gpu: false, logLevel: LlamaLogLevel.disabled, build: "never" });
let best = Infinity, m = null;
for (let r = 0; r < Number(reps); r++) {
    if (m) await m.dispose();
    const t0 = performance.now();
    m = await llama.loadModel({ modelPath: model, vocabOnly: true, gpuLayers: 0 });
    best = Math.min(best, performance.now() - t0);
}
console.log(JSON.stringify({ engine: "llama.cpp", source: "gguf", what: "load", file: model, ms: +best.toFixed(2) }));
for (const f of files) {
    const text = fs.readFileSync(f, "utf8");
    const bytes = Buffer.byteLength(text, "utf8");
    let b = Infinity, n = 0;
    for (let r = 0; r < Number(reps); r++) {
        const t0 = performance.now();
        n = m.tokenize(text, false).length;
        b = Math.min(b, performance.now() - t0);
    }
    console.log(JSON.stringify({ engine: "llama.cpp", source: "gguf", what: "encode", file: f, bytes, tokens: n, ms: +b.toFixed(2), mb_s: +(bytes / 1e6 / (b / 1e3)).toFixed(2) }));
}
await m.dispose();
EOF
    log "llama.cpp (node-llama-cpp): GGUF"
    node "$dir/llamacpp_tok.mjs" "$peer" "$gguf" "$reps" "$prose" "$code" | tee -a "$out"
else
    log "tokenizer.sh: no node: llama.cpp not measured"
fi

# 5. table
python3 - "$out" "$prose" "$code" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
name = {sys.argv[2]: "prose", sys.argv[3]: "code"}
print("\n| engine | vocabulary from | load ms | prose MB/s (tokens) | code MB/s (tokens) |")
print("|---|---|---:|---:|---:|")
for eng, src in [("locallm", "tokenizer.json"), ("locallm", "gguf"), ("llama.cpp", "gguf")]:
    r = [x for x in rows if x["engine"] == eng and x["source"] == src]
    if not r:
        continue
    load = next((x["ms"] for x in r if x["what"] == "load"), None)
    enc = {name.get(x["file"]): x for x in r if x["what"] == "encode"}
    cell = lambda k: "%.1f (%d)" % (enc[k]["mb_s"], enc[k]["tokens"]) if k in enc else "-"
    note = " *" if eng == "llama.cpp" else ""
    print("| %s | %s | %s%s | %s | %s |" % (eng, src, "%.1f" % load if load is not None else "-", note, cell("prose"), cell("code")))
print("\n* node-llama-cpp's loadModel: includes its own GGUF parsing and memory planning in JS.")
EOF
