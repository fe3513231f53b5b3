#!/usr/bin/env python3
"""Write an MLX-format model folder (as mlx-community publishes them) with the exact tensor shapes
of a real model, filled with random weights, for benchmarks (speed does not depend on the values).

    python3 tools/make_synthetic_mlx.py --preset qwen2.5-0.5b --bits 4 --out /tmp/locallm-bench/qwen-mlx4
    python3 tools/make_synthetic_mlx.py --list-presets

The folder holds config.json (with "quantization": {"group_size", "bits"} and the same under
"quantization_config", as mlx_lm writes), model.safetensors (or model-0000i-of-0000n.safetensors
shards plus model.safetensors.index.json past --shard-mb), and, with --tokenizer DIR, the
tokenizer.json and tokenizer_config.json found there (e.g. tests/data/tokenizers/qwen2; a
tokenizer.json.xz is decompressed). Every Linear and the embedding are quantized: "<name>.weight"
U32 (rows, cols * bits / 32) packed little-endian from the low bits, "<name>.scales" and
"<name>.biases" (rows, cols / group_size) in BF16; norms and the Qwen2 q/k/v biases stay BF16.
Tensors are stored in name order with no padding between them, as MLX writes (so some start at
addresses that are not multiples of their element size). Folders are hundreds of MB: write them
to /tmp, never into the repository. Needs only the standard library; numpy is used when present.
"""

import argparse
import json
import lzma
import os
import random
import shutil
import struct
import sys

try:
    import numpy as np
except ImportError:  # the standard library path below is slower but complete
    np = None

PRESETS = {
    "qwen2.5-0.5b": dict(model_type="qwen2", arch="Qwen2ForCausalLM", hidden=896, layers=24, heads=14,
                         kv_heads=2, head_dim=64, ff=4864, vocab=151936, max_pos=32768, rope_theta=1000000.0,
                         eps=1e-6, qkv_bias=True, tied=True, rope_scaling=None, bos=151643, eos=151645),
    "llama-3.2-1b": dict(model_type="llama", arch="LlamaForCausalLM", hidden=2048, layers=16, heads=32,
                         kv_heads=8, head_dim=64, ff=8192, vocab=128256, max_pos=131072, rope_theta=500000.0,
                         eps=1e-5, qkv_bias=False, tied=True,
                         rope_scaling=dict(factor=32.0, high_freq_factor=4.0, low_freq_factor=1.0,
                                           original_max_position_embeddings=8192, rope_type="llama3"),
                         bos=128000, eos=128001),
    "llama-3.2-3b": dict(model_type="llama", arch="LlamaForCausalLM", hidden=3072, layers=28, heads=24,
                         kv_heads=8, head_dim=128, ff=8192, vocab=128256, max_pos=131072, rope_theta=500000.0,
                         eps=1e-5, qkv_bias=False, tied=True,
                         rope_scaling=dict(factor=32.0, high_freq_factor=4.0, low_freq_factor=1.0,
                                           original_max_position_embeddings=8192, rope_type="llama3"),
                         bos=128000, eos=128001),
}


def config_json(p, bits, group_size):
    q = {"group_size": group_size, "bits": bits}
    cfg = {
        "architectures": [p["arch"]],
        "model_type": p["model_type"],
        "hidden_size": p["hidden"],
        "num_hidden_layers": p["layers"],
        "num_attention_heads": p["heads"],
        "num_key_value_heads": p["kv_heads"],
        "head_dim": p["head_dim"],
        "intermediate_size": p["ff"],
        "vocab_size": p["vocab"],
        "max_position_embeddings": p["max_pos"],
        "rms_norm_eps": p["eps"],
        "rope_theta": p["rope_theta"],
        "tie_word_embeddings": p["tied"],
        "hidden_act": "silu",
        "bos_token_id": p["bos"],
        "eos_token_id": p["eos"],
        "torch_dtype": "bfloat16",
        "quantization": q,
        "quantization_config": dict(q),
    }
    if p["model_type"] == "llama":
        cfg["attention_bias"] = False
        cfg["mlp_bias"] = False
    if p["rope_scaling"]:
        cfg["rope_scaling"] = p["rope_scaling"]
    return cfg


def tensor_list(p, bits, gs):
    """(name, dtype, shape, kind) in name order; kind picks the random fill."""
    h, hd, ff = p["hidden"], p["head_dim"], p["ff"]
    out = []

    def linear(name, rows, cols):
        if cols % gs:
            sys.exit("make_synthetic_mlx: %s: %d columns are not a multiple of group size %d" % (name, cols, gs))
        out.append((name + ".weight", "U32", [rows, cols * bits // 32], "packed"))
        out.append((name + ".scales", "BF16", [rows, cols // gs], "scale"))
        out.append((name + ".biases", "BF16", [rows, cols // gs], "bias"))

    linear("model.embed_tokens", p["vocab"], h)
    if not p["tied"]:
        linear("lm_head", p["vocab"], h)
    out.append(("model.norm.weight", "BF16", [h], "norm"))
    for i in range(p["layers"]):
        b = "model.layers.%d." % i
        out.append((b + "input_layernorm.weight", "BF16", [h], "norm"))
        out.append((b + "post_attention_layernorm.weight", "BF16", [h], "norm"))
        for proj, rows in (("q_proj", p["heads"] * hd), ("k_proj", p["kv_heads"] * hd),
                           ("v_proj", p["kv_heads"] * hd)):
            linear(b + "self_attn." + proj, rows, h)
            if p["qkv_bias"]:
                out.append((b + "self_attn." + proj + ".bias", "BF16", [rows], "small"))
        linear(b + "self_attn.o_proj", h, p["heads"] * hd)
        linear(b + "mlp.gate_proj", ff, h)
        linear(b + "mlp.up_proj", ff, h)
        linear(b + "mlp.down_proj", h, ff)
    out.sort(key=lambda t: t[0])
    return out


ELEM = {"U32": 4, "BF16": 2, "F32": 4}


def nbytes(dtype, shape):
    n = ELEM[dtype]
    for d in shape:
        n *= d
    return n


def bf16_bytes(values):
    """Round-to-nearest-even BF16 encoding of a list of floats."""
    out = bytearray()
    for v in values:
        u = struct.unpack("<I", struct.pack("<f", v))[0]
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        out += struct.pack("<H", u)
    return bytes(out)


# Values of a real 4-bit fit of N(0, 0.02) weights in groups of 64 are about: scale 0.006, bias
# -0.045 (so w = scale * q + bias spans the group). The fill only has to be finite and plausible.
PATTERN_N = 1 << 16


def pattern(kind, rng):
    if kind == "scale":
        vals = [abs(rng.gauss(0.006, 0.002)) + 1e-4 for _ in range(PATTERN_N)]
    elif kind == "bias":
        vals = [rng.gauss(-0.045, 0.01) for _ in range(PATTERN_N)]
    elif kind == "norm":
        vals = [rng.gauss(1.0, 0.05) for _ in range(PATTERN_N)]
    else:  # small
        vals = [rng.gauss(0.0, 0.02) for _ in range(PATTERN_N)]
    return bf16_bytes(vals)


def write_tensor(f, kind, n, rng, patterns):
    """n bytes of the given kind of data."""
    chunk = 1 << 24
    if kind == "packed":
        while n:
            k = min(n, chunk)
            f.write(os.urandom(k) if np is None else np.random.default_rng(rng.getrandbits(63)).integers(
                0, 256, size=k, dtype=np.uint8).tobytes())
            n -= k
        return
    pat = patterns.setdefault(kind, pattern(kind, rng))
    # start at a random point of the pattern so tensors differ
    off = rng.randrange(len(pat) // 2) * 2
    data = pat[off:] + pat[:off]
    while n:
        k = min(n, len(data))
        f.write(data[:k])
        n -= k


def write_safetensors(path, tensors, rng, patterns):
    header, off = {"__metadata__": {"format": "mlx"}}, 0
    for name, dtype, shape, _ in tensors:
        n = nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, dtype, shape, kind in tensors:
            write_tensor(f, kind, nbytes(dtype, shape), rng, patterns)
    return off


def copy_tokenizer(src, out):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        s = os.path.join(src, name)
        if os.path.exists(s):
            shutil.copyfile(s, os.path.join(out, name))
        elif name == "tokenizer.json" and os.path.exists(s + ".xz"):
            with lzma.open(s + ".xz") as fi, open(os.path.join(out, name), "wb") as fo:
                shutil.copyfileobj(fi, fo)
        elif name == "tokenizer.json":
            sys.exit("make_synthetic_mlx: no tokenizer.json(.xz) in %s" % src)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--bits", type=int, default=4, choices=(4, 8))
    ap.add_argument("--group-size", type=int, default=64, choices=(32, 64, 128))
    ap.add_argument("--out", help="folder to create (must not exist, or be a folder this script wrote)")
    ap.add_argument("--tokenizer", help="folder with tokenizer.json[.xz] and tokenizer_config.json to copy")
    ap.add_argument("--shard-mb", type=int, default=5120, help="largest shard (default 5120 MiB, as mlx_lm)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--list-presets", action="store_true")
    a = ap.parse_args()
    if a.list_presets:
        for k, p in sorted(PRESETS.items()):
            print("%-14s %s hidden %d, %d layers, vocab %d" % (k, p["model_type"], p["hidden"], p["layers"], p["vocab"]))
        return
    if not a.preset or not a.out:
        ap.error("--preset and --out are required")
    p = PRESETS[a.preset]
    out = os.path.abspath(a.out)
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    if out == repo or out.startswith(repo + os.sep):
        sys.exit("make_synthetic_mlx: %s is inside the repository; write to /tmp" % out)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.startswith("model") and f.endswith((".safetensors", ".json")):
            os.remove(os.path.join(out, f))
    rng = random.Random(a.seed)
    tensors = tensor_list(p, a.bits, a.group_size)
    # shards: consecutive runs of tensors up to shard-mb each
    limit, shards, cur, size = a.shard_mb << 20, [], [], 0
    for t in tensors:
        n = nbytes(t[1], t[2])
        if cur and size + n > limit:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += n
    shards.append(cur)
    patterns, total, weight_map = {}, 0, {}
    for i, sh in enumerate(shards):
        name = "model.safetensors" if len(shards) == 1 else "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        total += write_safetensors(os.path.join(out, name), sh, rng, patterns)
        for t in sh:
            weight_map[t[0]] = name
    if len(shards) > 1:
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config_json(p, a.bits, a.group_size), f, indent=4)
    if a.tokenizer:
        copy_tokenizer(a.tokenizer, out)
    print("%s: %s %d-bit group %d, %d tensors, %.1f MiB in %d file(s)" % (
        out, a.preset, a.bits, a.group_size, len(tensors), total / 2**20, len(shards)), file=sys.stderr)


if __name__ == "__main__":
    main()
