#!/usr/bin/env python3
"""tests/e2e/logprobs_check.py: the server's logprobs against `locallm eval`'s logits.

Usage: logprobs_check.py CLI MODEL BASE_URL

For a completion ("Once upon", tokenized by `locallm tokenize`) and a chat (the "greeting" prompt
of models/tinychat/refs.json, whose prompt_ids the template must reproduce), each generated
token's logprob and its top alternatives must equal the log-softmax of the logits `locallm eval`
writes for the same context (--logits-out), within TOL; the greedy tokens must be eval's
(--greedy), and their texts must spell the reply. Streamed chat logprobs must match the
non-streamed ones. Exits non-zero with a message on the first difference.
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import urllib.request

# The server and eval run the same kernels; the server may evaluate a prompt in other batch
# shapes (a cached prefix), which moves float32 logits by ~1e-5. 2e-3 in log-probability is far
# below any gap that would change a token's rank in these tests.
TOL = 2e-3
N_GEN = 4
TOP = 3

cli, model, base = sys.argv[1:4]


def fail(msg):
    print(f"FAIL: logprobs_check: {msg}", file=sys.stderr)
    sys.exit(1)


def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


def run(*args):
    return subprocess.run([cli, *args], check=True, capture_output=True, text=True).stdout


def log_softmax_after(ids):
    """Log-softmax of the logits after the last of ids, from `locallm eval --logits-out`."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        run("eval", model, "--ids", ",".join(map(str, ids)), "--top", "1", "--logits-out", f.name)
        raw = open(f.name, "rb").read()
    x = struct.unpack(f"<{len(raw) // 4}f", raw)
    m = max(x)
    lse = m + math.log(sum(math.exp(v - m) for v in x))
    return [v - lse for v in x]


def greedy(ids):
    return json.loads(run("eval", model, "--ids", ",".join(map(str, ids)), "--top", "1",
                          "--greedy", str(N_GEN), "--json"))["greedy"]


def detok(ids):
    return run("detokenize", model, "--ids", ",".join(map(str, ids)))


def check_tokens(what, prompt_ids, toks):
    """toks: [(text, logprob, [(alt_text, alt_logprob)...])] as the server reported them."""
    g = greedy(prompt_ids)
    if len(toks) != N_GEN:
        fail(f"{what}: {len(toks)} tokens reported, expected {N_GEN}")
    for k, (text, lp, alts) in enumerate(toks):
        ref = log_softmax_after(prompt_ids + g[:k])
        want_text = detok([g[k]])
        if text != want_text:
            fail(f"{what}: token {k} is {text!r}, eval's greedy token {g[k]} is {want_text!r}")
        if abs(ref[g[k]] - lp) > TOL:
            fail(f"{what}: token {k} {text!r}: logprob {lp}, eval's log-softmax {ref[g[k]]}")
        best = sorted(range(len(ref)), key=lambda i: -ref[i])[:TOP]
        if len(alts) != TOP:
            fail(f"{what}: token {k}: {len(alts)} alternatives, expected {TOP}")
        for r, (atext, alp) in enumerate(alts):
            if abs(ref[best[r]] - alp) > TOL or atext != detok([best[r]]):
                fail(f"{what}: token {k} alternative {r}: ({atext!r}, {alp}), eval has "
                     f"({detok([best[r]])!r}, {ref[best[r]]})")
    return g


# ---- /v1/completions: logprobs N, parallel arrays ----
prompt = "Once upon"
prompt_ids = json.loads(run("tokenize", model, "--text", prompt, "--json"))["ids"]
r = json.loads(post("/v1/completions", {"prompt": prompt, "temperature": 0, "max_tokens": N_GEN,
                                         "logprobs": TOP}))
ch = r["choices"][0]
lp = ch["logprobs"]
if sorted(lp) != ["text_offset", "token_logprobs", "tokens", "top_logprobs"]:
    fail(f"completions logprobs keys: {sorted(lp)}")
toks = []
for k, t in enumerate(lp["tokens"]):
    alts = sorted(lp["top_logprobs"][k].items(), key=lambda kv: -kv[1])
    toks.append((t, lp["token_logprobs"][k], alts))
g = check_tokens("completions", prompt_ids, toks)
if "".join(lp["tokens"]) != ch["text"] or ch["text"] != detok(g):
    fail(f"completions: tokens {lp['tokens']} do not spell the text {ch['text']!r}")
offs = [sum(len(t.encode()) for t in lp["tokens"][:k]) for k in range(len(lp["tokens"]))]
if lp["text_offset"] != offs:
    fail(f"completions: text_offset {lp['text_offset']}, expected {offs}")

# ---- /v1/chat/completions: logprobs true, top_logprobs N ----
refs = json.load(open(os.path.join(model, "refs.json")))
greeting = next(p for p in refs["prompts"] if p["name"] == "greeting")
body = {"messages": greeting["messages"], "temperature": 0, "max_tokens": N_GEN, "logprobs": True,
        "top_logprobs": TOP}
r = json.loads(post("/v1/chat/completions", body))
ch = r["choices"][0]
content = ch["logprobs"]["content"]
if ch["logprobs"].get("refusal", 0) is not None:
    fail("chat logprobs: 'refusal' must be null")
toks = [(t["token"], t["logprob"], [(a["token"], a["logprob"]) for a in t["top_logprobs"]]) for t in content]
for t in content:
    if t["bytes"] != list(t["token"].encode()):
        fail(f"chat: bytes {t['bytes']} of {t['token']!r}")
check_tokens("chat", greeting["prompt_ids"], toks)
if "".join(t["token"] for t in content) != ch["message"]["content"]:
    fail("chat: the tokens do not spell the content")

# streamed: the chunks' logprobs, in order, are the same tokens and values
body["stream"] = True
streamed = []
for line in post("/v1/chat/completions", body).split("\n"):
    if line.startswith("data: {"):
        c = json.loads(line[6:])
        for choice in c["choices"]:
            if choice.get("logprobs"):
                streamed += choice["logprobs"]["content"]
if [t["token"] for t in streamed] != [t["token"] for t in content]:
    fail(f"streamed chat tokens {[t['token'] for t in streamed]} != {[t['token'] for t in content]}")
for a, b in zip(streamed, content):
    if abs(a["logprob"] - b["logprob"]) > TOL or len(a["top_logprobs"]) != TOP:
        fail(f"streamed chat logprob of {a['token']!r}: {a['logprob']} vs {b['logprob']}")
print(f"logprobs_check: {2 * N_GEN} tokens and their top {TOP} match eval's log-softmax within {TOL}")
