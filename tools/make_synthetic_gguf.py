#!/usr/bin/env python3
"""Write a GGUF v3 file with the exact tensor shapes, types and metadata of a real model, filled
with random weights, for benchmarks (speed does not depend on the weights' values).

    python3 tools/make_synthetic_gguf.py --preset qwen2.5-0.5b --type Q4_0 --out /tmp/x.gguf
    python3 tools/make_synthetic_gguf.py --preset llama-3.2-1b --type Q4_K_M --out /tmp/y.gguf
    python3 tools/make_synthetic_gguf.py --list-presets

Every weight matrix (token embedding included) gets --type; norms, biases and rope_freqs stay
F32. --type Q4_K_M mixes types the way llama-quantize's Q4_K_M does: Q4_K matrices, Q6_K for
attn_v and ffn_down in the first and last eighth of the layers and every third layer between,
Q6_K for the output matrix (the token embedding when it is tied, else Q4_K); a row length that is
not a multiple of 256 falls back like llama.cpp (Q4_K -> Q5_0, Q6_K -> Q8_0), so the 896-wide
Qwen2.5-0.5B gets mostly Q5_0/Q8_0 there. Random quants, with sane half-float scales. The vocabulary is a synthetic SentencePiece one ("llama" tokenizer model) of the real size:
<unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then unique dummy pieces, with scores and
token types, which both locallm and llama.cpp load. --tokenizer-json FILE writes that real
byte-level BPE tokenizer instead (tokenizer.ggml.model "gpt2" with its tokens, merges, added
tokens, tokenizer.ggml.pre --pre, eos/pad from the added tokens), padded with [PADn] entries up to
the preset's vocabulary as llama.cpp's converter does, e.g. the Qwen2.5 shape with the real Qwen2
tokenizer of tests/data/tokenizers/qwen2 (bench/grammar.sh). Files are hundreds of MB: write them
to /tmp, never into the repository. Needs numpy only.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

PRESETS = {
    # tiny: for committed test fixtures (tests/data/synthetic), rows a multiple of 256 so K-quants
    # are used as such
    "tiny": dict(arch="qwen2", name="tiny (synthetic)", n_layer=2, n_embd=256, n_head=4,
                 n_head_kv=2, n_ff=512, n_vocab=512, n_ctx=4096, rope_base=10000.0,
                 rms_eps=1e-6, qkv_bias=True, tied=False, rope_freqs=None),
    "qwen2.5-0.5b": dict(arch="qwen2", name="Qwen2.5-0.5B (synthetic)", n_layer=24, n_embd=896, n_head=14,
                         n_head_kv=2, n_ff=4864, n_vocab=151936, n_ctx=32768, rope_base=1000000.0,
                         rms_eps=1e-6, qkv_bias=True, tied=True, rope_freqs=None),
    "llama-3.2-1b": dict(arch="llama", name="Llama-3.2-1B (synthetic)", n_layer=16, n_embd=2048, n_head=32,
                         n_head_kv=8, n_ff=8192, n_vocab=128256, n_ctx=131072, rope_base=500000.0,
                         rms_eps=1e-5, qkv_bias=False, tied=True,
                         rope_freqs=dict(factor=32.0, low=1.0, high=4.0, orig=8192)),
    "llama-3.2-3b": dict(arch="llama", name="Llama-3.2-3B (synthetic)", n_layer=28, n_embd=3072, n_head=24,
                         n_head_kv=8, n_ff=8192, n_vocab=128256, n_ctx=131072, rope_base=500000.0,
                         rms_eps=1e-5, qkv_bias=False, tied=True,
                         rope_freqs=dict(factor=32.0, low=1.0, high=4.0, orig=8192)),
}

# ggml tensor types: (id, elements per block, bytes per block)
GGML_TYPES = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q5_0": (6, 32, 22),
              "Q8_0": (8, 32, 34), "Q4_K": (12, 256, 144), "Q6_K": (14, 256, 210)}
# llama_ftype of general.file_type
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15}
# half-float scale fields of each block: (byte offset, low, high); every other byte is random.
# Q4_0 {d; qs[16]}, Q5_0 {d; qh[4]; qs[16]}, Q8_0 {d; qs[32]}, Q4_K {d; dmin; scales[12]; qs[128]}
# (any 12 bytes are valid packed 6-bit scales/mins), Q6_K {ql[128]; qh[64]; i8 scales[16]; d}.
# The ranges keep random weights within about +-0.02..0.2 for every type.
SCALE_FIELDS = {"Q4_0": [(0, 0.01, 0.03)], "Q5_0": [(0, 0.005, 0.015)], "Q8_0": [(0, 0.00125, 0.00375)],
                "Q4_K": [(0, 1e-4, 1e-3), (2, 1e-4, 1e-3)], "Q6_K": [(208, 1e-4, 5e-4)]}
# llama.cpp's fallback for k-quants on rows that are not a multiple of 256
K_FALLBACK = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}

# GGUF metadata value types
U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9
ALIGN = 32


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = gguf_str(key) + struct.pack("<I", vtype)
    if vtype == U32:
        out += struct.pack("<I", value)
    elif vtype == I32:
        out += struct.pack("<i", value)
    elif vtype == F32:
        out += struct.pack("<f", value)
    elif vtype == BOOL:
        out += struct.pack("<B", 1 if value else 0)
    elif vtype == STR:
        out += gguf_str(value)
    else:
        raise ValueError(vtype)
    return out


def kv_array(key, elem_type, values):
    out = [gguf_str(key), struct.pack("<IIQ", ARR, elem_type, len(values))]
    if elem_type == STR:
        out.extend(gguf_str(v) for v in values)
    elif elem_type == F32:
        out.append(np.asarray(values, dtype="<f4").tobytes())
    elif elem_type == I32:
        out.append(np.asarray(values, dtype="<i4").tobytes())
    else:
        raise ValueError(elem_type)
    return b"".join(out)


def vocabulary(n):
    """Synthetic SentencePiece vocabulary: specials, byte tokens, unique dummy pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # UNKNOWN, CONTROL, BYTE
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < n:
        # short pieces first, like a real vocabulary: "▁a", "▁b", .., "▁aa", ..
        k, piece = i, ""
        while True:
            piece = letters[k % 26] + piece
            k = k // 26 - 1
            if k < 0:
                break
        tokens.append("\u2581" + piece)
        types.append(1)  # NORMAL
        i += 1
    scores = [0.0] * 259 + [-float(j) for j in range(n - 259)]
    return tokens, scores, types


def bpe_vocabulary(path, n, pre, eos_text):
    """A tokenizer.json's byte-level BPE as GGUF metadata (gpt2 model), padded to n tokens."""
    tj = json.load(open(path, encoding="utf-8"))
    model = tj["model"]
    if model.get("type") != "BPE":
        raise SystemExit("%s: not a BPE tokenizer" % path)
    vocab = dict(model["vocab"])
    types = {}
    for t in tj.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
        types[t["id"]] = 3 if t.get("special") else 4  # CONTROL, USER_DEFINED
    if max(vocab.values()) >= n:
        raise SystemExit("%s: %d tokens do not fit a vocabulary of %d" % (path, max(vocab.values()) + 1, n))
    tokens = ["[PAD%d]" % i for i in range(n)]
    ttypes = [5] * n  # UNUSED, as llama.cpp pads
    for piece, i in vocab.items():
        tokens[i] = piece
        ttypes[i] = types.get(i, 1)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    eos = vocab.get(eos_text)
    if eos is None:
        raise SystemExit("%s: no token %r for end of sequence" % (path, eos_text))
    return [
        kv("tokenizer.ggml.model", STR, "gpt2"),
        kv("tokenizer.ggml.pre", STR, pre),
        kv_array("tokenizer.ggml.tokens", STR, tokens),
        kv_array("tokenizer.ggml.token_type", I32, ttypes),
        kv_array("tokenizer.ggml.merges", STR, merges),
        kv("tokenizer.ggml.eos_token_id", U32, eos),
        kv("tokenizer.ggml.padding_token_id", U32, eos),
        kv("tokenizer.ggml.add_bos_token", BOOL, False),
    ]


def llama3_rope_freqs(head_dim, base, rf):
    """Per-frequency divisors of Llama 3.1+ rope scaling (what rope_freqs.weight holds)."""
    out = []
    lo_wavelen = rf["orig"] / rf["low"]
    hi_wavelen = rf["orig"] / rf["high"]
    for i in range(0, head_dim, 2):
        freq = 1.0 / (base ** (i / head_dim))
        wavelen = 2 * math.pi / freq
        if wavelen < hi_wavelen:
            out.append(1.0)
        elif wavelen > lo_wavelen:
            out.append(rf["factor"])
        else:
            smooth = (rf["orig"] / wavelen - rf["low"]) / (rf["high"] - rf["low"])
            out.append(1.0 / ((1 - smooth) / rf["factor"] + smooth))
    return out


def use_more_bits(i, n):
    """llama.cpp's Q4_K_M rule: first and last eighth of the layers and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def weight_type(ftype, name, layer, p, ne0):
    """The type of one weight matrix for --type ftype."""
    if ftype != "Q4_K_M":
        return ftype
    t = "Q4_K"
    if name == "output.weight" or (name == "token_embd.weight" and p["tied"]):
        t = "Q6_K"
    elif name.endswith(("attn_v.weight", "ffn_down.weight")) and use_more_bits(layer, p["n_layer"]):
        t = "Q6_K"
    if ne0 % 256:
        t = K_FALLBACK[t]
    return t


def tensor_list(p, ftype):
    """(name, ne (innermost first), type, kind) of every tensor, in llama.cpp's order."""
    E, hd = p["n_embd"], p["n_embd"] // p["n_head"]
    Q, KV, F = p["n_head"] * hd, p["n_head_kv"] * hd, p["n_ff"]
    t = [("token_embd.weight", (E, p["n_vocab"]), ftype, "w")]
    if p["rope_freqs"]:
        t.append(("rope_freqs.weight", (hd // 2,), "F32", "rope"))
    for l in range(p["n_layer"]):
        b = "blk.%d." % l
        t.append((b + "attn_norm.weight", (E,), "F32", "norm"))
        t.append((b + "attn_q.weight", (E, Q), ftype, "w"))
        t.append((b + "attn_k.weight", (E, KV), ftype, "w"))
        t.append((b + "attn_v.weight", (E, KV), ftype, "w"))
        if p["qkv_bias"]:
            t.append((b + "attn_q.bias", (Q,), "F32", "bias"))
            t.append((b + "attn_k.bias", (KV,), "F32", "bias"))
            t.append((b + "attn_v.bias", (KV,), "F32", "bias"))
        t.append((b + "attn_output.weight", (Q, E), ftype, "w"))
        t.append((b + "ffn_norm.weight", (E,), "F32", "norm"))
        t.append((b + "ffn_gate.weight", (E, F), ftype, "w"))
        t.append((b + "ffn_up.weight", (E, F), ftype, "w"))
        t.append((b + "ffn_down.weight", (F, E), ftype, "w"))
    t.append(("output_norm.weight", (E,), "F32", "norm"))
    if not p["tied"]:
        t.append(("output.weight", (E, p["n_vocab"]), ftype, "w"))
    out = []
    for name, ne, ttype, kind in t:
        if kind == "w":
            layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
            ttype = weight_type(ftype, name, layer, p, ne[0])
        out.append((name, ne, ttype, kind))
    return out


def nbytes(ne, ttype):
    _, blk, bsz = GGML_TYPES[ttype]
    n = int(np.prod(ne))
    if ne[0] % blk:
        raise ValueError("row length %d is not a multiple of %d" % (ne[0], blk))
    return n // blk * bsz


def write_weight(f, rng, n, ttype):
    """n elements of random weights of ttype, written in chunks (about 0.02 in magnitude)."""
    chunk = 1 << 22
    if ttype == "F16":
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            f.write((rng.standard_normal(m, dtype=np.float32) * 0.02).astype("<f2").tobytes())
        return
    _, blk, bsz = GGML_TYPES[ttype]
    nb = n // blk
    for s in range(0, nb, chunk // blk * 8):
        m = min(chunk // blk * 8, nb - s)
        a = np.frombuffer(rng.bytes(m * bsz), dtype=np.uint8).reshape(m, bsz).copy()
        for off, lo, hi in SCALE_FIELDS[ttype]:
            d = (lo + rng.random(m, dtype=np.float32) * (hi - lo)).astype("<f2")
            a[:, off:off + 2] = d.view(np.uint8).reshape(m, 2)
        f.write(a.tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--type", default="Q4_0", choices=["Q4_0", "Q8_0", "F16", "Q4_K_M"])
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-rope-freqs", action="store_true", help="leave out rope_freqs.weight (llama)")
    ap.add_argument("--list-presets", action="store_true")
    ap.add_argument("--tokenizer-json", help="write this byte-level BPE tokenizer (tokenizer.json) as the vocabulary")
    ap.add_argument("--pre", default="qwen2", help="tokenizer.ggml.pre for --tokenizer-json (default qwen2)")
    ap.add_argument("--eos", default="<|im_end|>", help="end-of-sequence token text for --tokenizer-json")
    a = ap.parse_args()
    if a.list_presets:
        for k, p in sorted(PRESETS.items()):
            print("%-14s %s: %d layers, hidden %d, %d heads (%d kv), ff %d, vocab %d%s" % (
                k, p["arch"], p["n_layer"], p["n_embd"], p["n_head"], p["n_head_kv"], p["n_ff"], p["n_vocab"],
                ", q/k/v biases" if p["qkv_bias"] else ""))
        return 0
    if not a.preset or not a.out:
        ap.error("--preset and --out are required")
    p = dict(PRESETS[a.preset])
    if a.no_rope_freqs:
        p["rope_freqs"] = None
    arch, hd = p["arch"], p["n_embd"] // p["n_head"]

    meta = [
        kv("general.architecture", STR, arch),
        kv("general.name", STR, p["name"]),
        kv("general.file_type", U32, FILE_TYPES[a.type]),
        kv("general.alignment", U32, ALIGN),
        kv(arch + ".context_length", U32, p["n_ctx"]),
        kv(arch + ".embedding_length", U32, p["n_embd"]),
        kv(arch + ".block_count", U32, p["n_layer"]),
        kv(arch + ".feed_forward_length", U32, p["n_ff"]),
        kv(arch + ".attention.head_count", U32, p["n_head"]),
        kv(arch + ".attention.head_count_kv", U32, p["n_head_kv"]),
        kv(arch + ".rope.freq_base", F32, p["rope_base"]),
        kv(arch + ".rope.dimension_count", U32, hd),
        kv(arch + ".attention.layer_norm_rms_epsilon", F32, p["rms_eps"]),
    ]
    if arch == "llama":
        meta.append(kv(arch + ".vocab_size", U32, p["n_vocab"]))
    if a.tokenizer_json:
        meta += bpe_vocabulary(a.tokenizer_json, p["n_vocab"], a.pre, a.eos)
    else:
        tokens, scores, types = vocabulary(p["n_vocab"])
        meta += [
            kv("tokenizer.ggml.model", STR, "llama"),
            kv_array("tokenizer.ggml.tokens", STR, tokens),
            kv_array("tokenizer.ggml.scores", F32, scores),
            kv_array("tokenizer.ggml.token_type", I32, types),
            kv("tokenizer.ggml.unknown_token_id", U32, 0),
            kv("tokenizer.ggml.bos_token_id", U32, 1),
            kv("tokenizer.ggml.eos_token_id", U32, 2),
            kv("tokenizer.ggml.add_bos_token", BOOL, True),
            kv("tokenizer.ggml.add_eos_token", BOOL, False),
        ]

    tensors = tensor_list(p, a.type)
    infos, offset = [], 0
    for name, ne, ttype, _ in tensors:
        infos.append(gguf_str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) +
                     struct.pack("<IQ", GGML_TYPES[ttype][0], offset))
        offset += (nbytes(ne, ttype) + ALIGN - 1) // ALIGN * ALIGN

    rng = np.random.default_rng(a.seed)
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
        for m in meta:
            f.write(m)
        for i in infos:
            f.write(i)
        f.write(b"\0" * (-f.tell() % ALIGN))
        for name, ne, ttype, kind in tensors:
            n = int(np.prod(ne))
            if kind == "w":
                write_weight(f, rng, n, ttype)
            elif kind == "norm":
                f.write(np.ones(n, dtype="<f4").tobytes())
            elif kind == "bias":
                f.write((rng.standard_normal(n, dtype=np.float32) * 0.1).astype("<f4").tobytes())
            elif kind == "rope":
                f.write(np.asarray(llama3_rope_freqs(hd, p["rope_base"], p["rope_freqs"]), dtype="<f4").tobytes())
            f.write(b"\0" * (-f.tell() % ALIGN))
    os.replace(tmp, a.out)
    mix = {}
    for _, _, ttype, kind in tensors:
        if kind == "w":
            mix[ttype] = mix.get(ttype, 0) + 1
    print("%s: %s %s, %d tensors (%s), %.1f MiB" % (
        a.out, a.preset, a.type, len(tensors), ", ".join("%d %s" % (v, k) for k, v in sorted(mix.items())),
        os.path.getsize(a.out) / 2 ** 20), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
