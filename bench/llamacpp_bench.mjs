#!/usr/bin/env node
// llama.cpp side of bench/compare.sh: the same measurements as `locallm bench --json`, through
// node-llama-cpp's prebuilt CPU build (installed by compare.sh into bench/peer/).
//
//   node bench/llamacpp_bench.mjs MODEL.gguf [-p 128,512] [-n 64] [-t 2] [-r 3] [--decode-after 8]
//
// Prints one JSON object of the same shape as locallm's:
//   {"model":..,"threads":N,"prefill":[{"tokens":P,"tok_s":x,"ttft_ms":y},..],
//    "decode":{"tokens":N,"after":A,"tok_s":z},"load_ms":..,"peak_rss_mb":..,"engine":..}
// Each figure is the median over the repetitions, each on a cleared sequence:
//   prefill P: evaluate P seeded random token ids, no token sampled         -> P / seconds
//   TTFT P   : evaluate the same P ids and sample one token (greedy)        -> milliseconds
//   decode N : after a --decode-after-token prompt (default 8), N more greedy tokens one at a
//              time -> N / seconds
// No tokenization is timed; ids come from the middle of the vocabulary (away from specials).

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
// node-llama-cpp lives in bench/peer/node_modules (git-ignored), not next to this script
const entry = path.join(here, "peer", "node_modules", "node-llama-cpp", "dist", "index.js");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);

function die(msg) {
    process.stderr.write(`llamacpp_bench: ${msg}\n` +
        "usage: node bench/llamacpp_bench.mjs MODEL.gguf [-p 128,512] [-n 64] [-t 2] [-r 3] [--decode-after 8]\n");
    process.exit(2);
}

function parseArgs(argv) {
    const o = { model: null, prompts: [128, 512], gen: 64, threads: 2, reps: 3, decodeAfter: 8 };
    const int = (v, name) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) die(`${name} needs a non-negative integer, got '${v}'`);
        return n;
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const val = () => (i + 1 < argv.length ? argv[++i] : die(`${a} needs a value`));
        if (a === "-p") o.prompts = val().split(",").map((s) => int(s, "-p"));
        else if (a === "-n") o.gen = int(val(), "-n");
        else if (a === "-t") o.threads = int(val(), "-t");
        else if (a === "-r") o.reps = int(val(), "-r");
        else if (a === "--decode-after") o.decodeAfter = int(val(), "--decode-after");
        else if (a.startsWith("-")) die(`unknown option ${a}`);
        else if (o.model) die("only one model");
        else o.model = a;
    }
    if (!o.model) die("missing MODEL.gguf");
    if (o.threads < 1 || o.reps < 1 || o.prompts.some((p) => p < 1) || o.decodeAfter < 1)
        die("threads, reps, prompt lengths and --decode-after must be >= 1");
    return o;
}

// splitmix-like 32-bit generator: the same ids on every run
function ids(n, vocab, seed) {
    let s = seed >>> 0;
    const lo = Math.floor(vocab / 4), hi = Math.floor(vocab / 2);
    const out = [];
    for (let i = 0; i < n; i++) {
        s = (s + 0x9E3779B9) >>> 0;
        let z = s;
        z = Math.imul(z ^ (z >>> 16), 0x85EBCA6B) >>> 0;
        z = Math.imul(z ^ (z >>> 13), 0xC2B2AE35) >>> 0;
        z = (z ^ (z >>> 16)) >>> 0;
        out.push(lo + (z % (hi - lo)));
    }
    return out;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (a) => {
    const s = [...a].sort((x, y) => x - y), m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r3 = (x) => Math.round(x * 1000) / 1000;

function peakRssMb() {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const llama = await getLlama({
        gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
        maxThreads: o.threads, logLevel: LlamaLogLevel.error
    });
    let t = now();
    const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0, useMmap: true });
    const loadMs = (now() - t) * 1000;
    const vocab = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens?.length ?? model.fileInsights?.vocabularySize;
    if (!vocab) die("cannot read the vocabulary size");
    const maxP = Math.max(...o.prompts, o.decodeAfter);
    const ctxSize = Math.ceil((maxP + o.gen + 16) / 256) * 256;
    const context = await model.createContext({
        contextSize: ctxSize, batchSize: Math.min(512, ctxSize), sequences: 1,
        threads: { ideal: o.threads, min: o.threads }, ignoreMemorySafetyChecks: true
    });
    const seq = context.getSequence();

    // warm-up: page the weights in and start the thread pool
    await seq.clearHistory();
    await seq.evaluateWithoutGeneratingNewTokens(ids(16, vocab, 7));

    const prefill = [];
    for (const P of o.prompts) {
        const prompt = ids(P, vocab, 1234 + P);
        const tps = [], ttft = [];
        for (let r = 0; r < o.reps; r++) {
            await seq.clearHistory();
            t = now();
            await seq.evaluateWithoutGeneratingNewTokens(prompt);
            tps.push(P / (now() - t));
            await seq.clearHistory();
            t = now();
            const g = seq.evaluate(prompt, { temperature: 0, yieldEogToken: true });
            const first = await g.next();
            ttft.push((now() - t) * 1000);
            await g.return();
            if (first.done) die("no first token");
        }
        prefill.push({ tokens: P, tok_s: r3(median(tps)), ttft_ms: r3(median(ttft)) });
    }

    let decode = null;
    if (o.gen > 0) {
        const prompt = ids(o.decodeAfter, vocab, 99), tps = [];
        for (let r = 0; r < o.reps; r++) {
            await seq.clearHistory();
            const g = seq.evaluate(prompt, { temperature: 0, yieldEogToken: true });
            if ((await g.next()).done) die("no first token");
            t = now();
            for (let i = 0; i < o.gen; i++) if ((await g.next()).done) die(`generation ended after ${i} tokens`);
            tps.push(o.gen / (now() - t));
            await g.return();
        }
        decode = { tokens: o.gen, after: o.decodeAfter, tok_s: r3(median(tps)) };
    }
    console.log(JSON.stringify({
        model: o.model, threads: context.currentThreads, prefill, decode, load_ms: r3(loadMs),
        peak_rss_mb: Math.round(peakRssMb() * 10) / 10,
        engine: `llama.cpp ${llama.llamaCppRelease?.release ?? "?"} (node-llama-cpp prebuilt CPU, ${llama.buildType})`
    }));
    await context.dispose();
    await model.dispose();
    await llama.dispose();
}

main().catch((e) => {
    process.stderr.write(`llamacpp_bench: ${e?.stack ?? e}\n`);
    process.exit(1);
});
