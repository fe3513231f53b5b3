#!/usr/bin/env node
// bench/llamacpp_batch.mjs (the project's llama.cpp batching peer, kept here so a fresh clone has it): llama.cpp peer for batched decoding: N sequences in one context (node-llama-cpp batches their
// tokens into shared llama_decode calls), each prefilling P random tokens and then generating G
// tokens greedily with EOS ignored. One JSON line on stdout:
//   {"sequences":N,"decode_tok_s":aggregate generated tokens / decode wall time,
//    "per_stream_tok_s":..., "ttft_ms_p50":..., "wall_s":...}
// usage: node batch.mjs MODEL.gguf [--sequences 4] [--threads 2] [--prompt-tokens 32] [--gen-tokens 64]
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
// node-llama-cpp lives in bench/peer/node_modules (git-ignored), not next to this script
const here = path.dirname(fileURLToPath(import.meta.url));
const { getLlama, LlamaLogLevel } = await import(
    pathToFileURL(path.join(here, "peer", "node_modules", "node-llama-cpp", "dist", "index.js")).href);

const a = process.argv.slice(2);
const opt = { model: null, n: 4, threads: 2, p: 32, g: 64 };
for (let i = 0; i < a.length; i++) {
    const v = () => Number(a[++i]);
    if (a[i] === "--sequences") opt.n = v();
    else if (a[i] === "--threads") opt.threads = v();
    else if (a[i] === "--prompt-tokens") opt.p = v();
    else if (a[i] === "--gen-tokens") opt.g = v();
    else opt.model = a[i];
}
if (!opt.model) { console.error("usage: batch.mjs MODEL.gguf [--sequences N] [--threads T] [--prompt-tokens P] [--gen-tokens G]"); process.exit(2); }

function prng(seed) { let s = seed >>> 0; return () => { s = (s + 0x6D2B79F5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }; }
const now = () => Number(process.hrtime.bigint()) / 1e9;

const llama = await getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true,
    progressLogs: false, maxThreads: opt.threads, logLevel: LlamaLogLevel.warn });
const model = await llama.loadModel({ modelPath: opt.model, gpuLayers: 0, useMmap: true });
// node-llama-cpp 3.21.1 has no fileInsights.vocabularySize: read the vocabulary from the metadata
// (without a size the prompt would be NaN ids, on which evaluate never returns)
const vocab = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens?.length ?? model.fileInsights?.vocabularySize;
if (!Number.isInteger(vocab) || vocab <= 0) { console.error(`batch.mjs: ${opt.model}: no vocabulary size in its metadata`); process.exit(1); }
const per = Math.ceil((opt.p + opt.g + 16) / 256) * 256;
const context = await model.createContext({ contextSize: per * opt.n, sequences: opt.n, batchSize: 512,
    threads: { ideal: opt.threads, min: opt.threads }, ignoreMemorySafetyChecks: true });

async function run(seq, seed, rec) {
    const r = prng(seed), ids = [];
    while (ids.length < opt.p) { const t = Math.floor(r() * vocab); if (!model.isSpecialToken(t) && !model.isEogToken(t)) ids.push(t); }
    const t0 = now(); let n = 0;
    const gen = seq.evaluate(ids, { temperature: 0, yieldEogToken: true });
    for await (const tok of gen) {
        if (n === 0) rec.ttft = now() - t0, rec.first = now();
        if (++n >= opt.g) break;
    }
    rec.end = now(); rec.n = n;
}
// warm-up: one short generation on one sequence
{ const s = context.getSequence(); await run(s, 99, {}); s.dispose(); }
const seqs = Array.from({ length: opt.n }, () => context.getSequence());
const recs = seqs.map(() => ({}));
const t0 = now();
await Promise.all(seqs.map((s, i) => run(s, i + 1, recs[i])));
const wall = now() - t0;
const firstAll = Math.max(...recs.map((r) => r.first)), endAll = Math.max(...recs.map((r) => r.end));
const gen = recs.reduce((s, r) => s + r.n, 0);
const ttfts = recs.map((r) => r.ttft * 1000).sort((x, y) => x - y);
console.log(JSON.stringify({ engine: "llama.cpp (node-llama-cpp)", sequences: opt.n, threads: opt.threads,
    prompt_tokens: opt.p, gen_tokens: opt.g, wall_s: +wall.toFixed(3),
    decode_tok_s: +(gen / (endAll - Math.min(...recs.map((r) => r.first)))).toFixed(2),
    per_stream_tok_s: +(recs.map((r) => (r.n - 1) / (r.end - r.first)).reduce((a, b) => a + b, 0) / opt.n).toFixed(2),
    ttft_ms_p50: +ttfts[ttfts.length >> 1].toFixed(1) }));
await context.dispose(); await model.dispose(); await llama.dispose();
