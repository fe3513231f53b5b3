#!/usr/bin/env node
// tests/llamacpp/convert_check.mjs: `locallm convert` checked against llama.cpp (node-llama-cpp
// 3.21.1's prebuilt CPU build), run by tests/e2e/test_convert_llamacpp.sh from the folder where
// node-llama-cpp is installed.
//   node convert_check.mjs --cli build/locallm --src SOURCE_DIR --work TMP_DIR [--only tinychat|fixtures]
//
// 1. tinychat (models/tinychat, a trained Qwen2-architecture chat model whose rows are 256 and 768
//    wide, so the K-quants are real K-quants) is converted to every GGUF type convert writes.
//    llama.cpp must load each file, and its greedy continuation (32 tokens, temperature 0, past
//    end-of-generation) of 6 chat prompts from models/tinychat/refs.json must equal locallm's on
//    the same file. On the F16 file both engines must also tokenize all 24 prompt texts of
//    refs.json into refs.json's ids (the GGUF tokenizer metadata is complete and right).
// 2. Random-weight fixtures of the Qwen2, Qwen3, Llama (Llama 3 with its rope_freqs, and the
//    sharded MHA Llama 2) and Phi-3 architectures (tests/data/models/, given a 512-token
//    tokenizer from tests/data/convert/, byte-level BPE or SentencePiece-style) are converted to
//    Q4_K_M and Q8_0. Their rows are 128 wide, so most of "Q4_K_M" is llama.cpp's fallback types
//    (Q5_0, Q5_1, Q8_0), as convert assigns them. Random weights give near-ties, where a greedy
//    continuation would follow either engine's rounding after one flip (llama.cpp's CPU path
//    quantizes activations to 8 bits, locallm's differently), so instead of greedy text these
//    compare, at every position of a 300-token prompt, (a) the whole next-token distribution:
//    the RMS difference of the two engines' log-probabilities (over tokens above e^-8) must stay
//    under RMS_MAX at each position and under RMS_MEAN_MAX on average (measured: mean 0.003-0.08,
//    max 0.19, against 0.6 between a Q4_K_M file and the f32 weights: a file the engines read
//    differently would be off by at least the quantization error), and (b) the top-1 token,
//    which must be equal wherever locallm's top-2 logits are more than NEAR_TIE apart.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

// One thread on each side: ctest runs tests two at a time on small machines, where spinning
// thread pools of two engines at once would only slow each other down.

const NEAR_TIE = 0.25;          // logits: beyond the engines' compute noise (RMS 0.04-0.12)
const RMS_MAX = 0.3, RMS_MEAN_MAX = 0.15;
const TINYCHAT_TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K"];
const FIXTURES = [
    ["qwen2-f32", "bpe"], ["qwen3-f32", "bpe"], ["llama3-f32", "bpe"], ["llama2-f32", "spm"], ["phi3-f32", "spm"],
];
const FIXTURE_TYPES = ["Q4_K_M", "Q8_0"];

function args() {
    const o = {};
    const a = process.argv.slice(2);
    for (let i = 0; i < a.length; i += 2) o[a[i].replace(/^--/, "")] = a[i + 1];
    for (const k of ["cli", "src", "work"]) if (!o[k]) throw new Error(`missing --${k}`);
    return o;
}

const opt = args();
let failures = 0, checks = 0;
const fail = (msg) => { failures++; console.log(`FAIL: ${msg}`); };

function locallm(argv) {
    return execFileSync(opt.cli, argv, { encoding: "utf8", maxBuffer: 1 << 28, stdio: ["ignore", "pipe", "pipe"] });
}

function convert(src, out, type) {
    const t0 = Date.now();
    locallm(["convert", src, "-o", out, "--type", type, "-q", "-t", "1"]);
    return Date.now() - t0;
}

// locallm's greedy continuation and, per prompt position, its top-2 (id, logit)
function localEval(file, ids, nGreedy, top = 2) {
    const j = JSON.parse(locallm(["eval", file, "--ids", ids.join(","), "--top", String(top), "--greedy", String(nGreedy), "--json", "-t", "1"]));
    return { greedy: j.greedy ?? [], top: j.positions.map((p) => p.top) };
}

const llama = await getLlama({
    gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
    maxThreads: 1, logLevel: LlamaLogLevel.error, logger: () => {}
});
if (llama.gpu !== false) throw new Error(`expected a CPU-only llama.cpp, got gpu=${llama.gpu}`);

async function withModel(file, fn) {
    const model = await llama.loadModel({ modelPath: file, gpuLayers: 0, useMmap: true });
    const context = await model.createContext({ contextSize: 512, batchSize: 512, sequences: 1, threads: { ideal: 1, min: 1 }, ignoreMemorySafetyChecks: true });
    try {
        return await fn(model, context.getSequence());
    } finally {
        await context.dispose();
        await model.dispose();
    }
}

async function peerGreedy(seq, prompt, n) {
    await seq.clearHistory();
    const ids = [];
    const gen = seq.evaluate(prompt, { temperature: 0, yieldEogToken: true });
    for (let i = 0; i < n; i++) {
        const r = await gen.next();
        if (r.done) break;
        ids.push(r.value);
    }
    await gen.return();
    return ids;
}

// llama.cpp's log-probabilities of the next token after every position (vocabulary nv)
async function peerLogProbs(seq, prompt, nv) {
    await seq.clearHistory();
    const opts = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } };
    const res = await seq.controlledEvaluate(prompt.map((t) => [t, { generateNext: opts }]));
    return prompt.map((_, i) => {
        const lp = new Array(nv).fill(-Infinity);
        for (const [k, v] of res[i]?.next?.probabilities ?? []) lp[k] = Math.log(v);
        return lp;
    });
}

function logSoftmax(top, nv) {
    const a = new Array(nv).fill(-Infinity);
    for (const [k, v] of top) a[k] = v;
    const m = Math.max(...a);
    const l = m + Math.log(a.reduce((s, x) => s + Math.exp(x - m), 0));
    return a.map((x) => x - l);
}

// ---- 1. tinychat on every type ----
const refs = JSON.parse(fs.readFileSync(path.join(opt.src, "models/tinychat/refs.json"), "utf8"));
const longest = [...refs.prompts].sort((a, b) => b.reply_ids.length - a.reply_ids.length || a.name.localeCompare(b.name)).slice(0, 6);
if (opt.only !== "fixtures") console.log(`tinychat prompts: ${longest.map((p) => `${p.name} (${p.prompt_ids.length} ids)`).join(", ")}`);
for (const type of opt.only === "fixtures" ? [] : TINYCHAT_TYPES) {
    const file = path.join(opt.work, `tinychat-${type}.gguf`);
    const ms = convert(path.join(opt.src, "models/tinychat"), file, type);
    let same = 0;
    await withModel(file, async (model, seq) => {
        for (const p of longest) {
            checks++;
            const peer = await peerGreedy(seq, p.prompt_ids, 32);
            const local = localEval(file, p.prompt_ids, 32).greedy;
            if (peer.length !== 32) fail(`tinychat ${type} ${p.name}: llama.cpp produced ${peer.length} of 32 tokens`);
            else if (JSON.stringify(peer) !== JSON.stringify(local))
                fail(`tinychat ${type} ${p.name}: greedy differs\n  llama.cpp ${peer.join(",")}\n  locallm   ${local.join(",")}`);
            else same++;
        }
        if (type === "F16") {
            for (const p of refs.prompts) {
                checks++;
                const peer = Array.from(model.tokenize(p.prompt_text, true));
                fs.writeFileSync(path.join(opt.work, "prompt.txt"), p.prompt_text);
                const local = JSON.parse(locallm(["tokenize", file, "--file", path.join(opt.work, "prompt.txt"), "--json"])).ids;
                const want = JSON.stringify(p.prompt_ids);
                if (JSON.stringify(peer) !== want) fail(`tinychat tokenize ${p.name}: llama.cpp ${peer.join(",")} != refs ${want}`);
                if (JSON.stringify(local) !== want) fail(`tinychat tokenize ${p.name}: locallm ${local.join(",")} != refs ${want}`);
            }
            console.log(`tinychat F16: ${refs.prompts.length} prompt texts tokenized by both engines`);
        }
    });
    const size = fs.statSync(file).size;
    console.log(`tinychat ${type.padEnd(6)} ${String(size).padStart(9)} bytes, converted in ${ms} ms: greedy 32 equal on ${same}/${longest.length} prompts`);
}

// ---- 2. architecture fixtures ----
for (const [fx, tok] of opt.only === "tinychat" ? [] : FIXTURES) {
    const dir = path.join(opt.work, `${fx}-src`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const from = path.join(opt.src, "tests/data/models", fx);
    for (const f of fs.readdirSync(from)) if (f !== "refs.json") fs.symlinkSync(path.join(from, f), path.join(dir, f));
    for (const f of ["tokenizer.json", "tokenizer_config.json"])
        fs.copyFileSync(path.join(opt.src, "tests/data/convert", `tok512-${tok}`, f), path.join(dir, f));
    const seqs = JSON.parse(fs.readFileSync(path.join(from, "refs.json"), "utf8")).sequences;
    const prompt = seqs.reduce((a, s) => (s.input_ids.length > a.length ? s.input_ids : a), []);
    for (const type of FIXTURE_TYPES) {
        const file = path.join(opt.work, `${fx}-${type}.gguf`);
        convert(dir, file, type);
        const nv = 512;
        const local = localEval(file, prompt, 0, nv);
        const peer = await withModel(file, (model, seq) => peerLogProbs(seq, prompt, nv));
        let same = 0, ties = 0, rmsSum = 0, rmsMax = 0;
        for (let i = 0; i < prompt.length; i++) {
            checks++;
            const lp = logSoftmax(local.top[i], nv), pp = peer[i];
            let n = 0, sq = 0;
            for (let v = 0; v < nv; v++)
                if (Math.max(lp[v], pp[v]) > -8) {
                    const d = (Number.isFinite(lp[v]) ? lp[v] : -30) - (Number.isFinite(pp[v]) ? pp[v] : -30);
                    sq += d * d;
                    n++;
                }
            const rms = Math.sqrt(sq / Math.max(1, n));
            rmsSum += rms;
            rmsMax = Math.max(rmsMax, rms);
            if (!(rms <= RMS_MAX)) fail(`${fx} ${type} position ${i}: log-probabilities differ by ${rms.toFixed(4)} RMS (at most ${RMS_MAX})`);
            const [best, second] = local.top[i];
            const peerTop = pp.indexOf(Math.max(...pp));
            if (peerTop === best[0]) same++;
            else if (best[1] - second[1] < NEAR_TIE) ties++;
            else fail(`${fx} ${type} position ${i}: llama.cpp's top-1 ${peerTop}, locallm's ${best[0]} (${(best[1] - second[1]).toFixed(3)} ahead of its second)`);
        }
        const mean = rmsSum / prompt.length;
        if (!(mean <= RMS_MEAN_MAX)) fail(`${fx} ${type}: log-probabilities differ by ${mean.toFixed(4)} RMS on average (at most ${RMS_MEAN_MAX})`);
        console.log(`${fx} ${type}: log-prob RMS difference mean ${mean.toFixed(4)}, max ${rmsMax.toFixed(4)}; top-1 equal at ${same}/${prompt.length} positions, the other ${ties} are near-ties (top-2 gap < ${NEAR_TIE})`);
    }
}

await llama.dispose();
console.log(`${checks - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
