#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets that need built inputs (issue 20):

    python3 tools/make_fuzz_corpus.py [REPO_ROOT]

tests/fuzz/corpus/gguf_tokenizer/  GGUF files holding only tokenizer.ggml.* metadata: a small
    SentencePiece ("llama") vocabulary with byte tokens, and a small byte-level BPE ("gpt2") one
    with merges and a pre-tokenizer name.
tests/fuzz/corpus/gguf_model/      whole tiny models: llama with F32 weights, llama with Q8_0
    matrices and a separate output matrix, qwen2 with F16 matrices and q/k/v biases, phi3 with
    fused qkv and gate/up.
tests/fuzz/corpus/safetensors_index/  model.safetensors.index.json texts for the two shards
    tests/fuzz/fuzz_safetensors_index.c writes (tensors a, b in model-00001-of-00002.safetensors;
    c in model-00002-of-00002.safetensors).

Deterministic (seeded), standard library only, every file well under libFuzzer's -max_len=65536.
The GGUF layout follows https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (v3).
"""

import json
import os
import random
import struct
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")

T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR = 4, 5, 6, 7, 8, 9
G_F32, G_F16, G_Q8_0 = 0, 1, 8


def gstr(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv_value(t, v):
    if t == T_U32:
        return struct.pack("<I", v)
    if t == T_I32:
        return struct.pack("<i", v)
    if t == T_F32:
        return struct.pack("<f", v)
    if t == T_BOOL:
        return struct.pack("<B", 1 if v else 0)
    if t == T_STR:
        return gstr(v)
    raise ValueError(t)


def kv(key, t, v, elem=None):
    out = gstr(key) + struct.pack("<I", t)
    if t == T_ARR:
        out += struct.pack("<IQ", elem, len(v)) + b"".join(kv_value(elem, x) for x in v)
    else:
        out += kv_value(t, v)
    return out


def f16(x):
    return struct.pack("<e", x)


def tensor_bytes(gtype, values, ne0):
    if gtype == G_F32:
        return struct.pack("<%df" % len(values), *values)
    if gtype == G_F16:
        return b"".join(f16(v) for v in values)
    if gtype == G_Q8_0:  # blocks of 32: f16 scale, 32 int8
        assert ne0 % 32 == 0
        out = b""
        for i in range(0, len(values), 32):
            blk = values[i:i + 32]
            amax = max(abs(v) for v in blk) or 1.0
            d = amax / 127.0
            out += f16(d) + struct.pack("<32b", *[max(-127, min(127, round(v / d))) for v in blk])
        return out
    raise ValueError(gtype)


def gguf(kvs, tensors):
    """kvs: encoded KV bytes; tensors: (name, (ne0, ne1...), gtype, values)."""
    align = 32
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    infos, data = b"", b""
    for name, shape, gtype, values in tensors:
        infos += gstr(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", gtype, len(data))
        data += tensor_bytes(gtype, values, shape[0])
        data += b"\0" * (-len(data) % align)
    body = head + infos
    body += b"\0" * (-len(body) % align)
    return body + data


def spm_vocab(extra):
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(256)] + extra
    types = [2, 3, 3] + [6] * 256 + [1] * len(extra)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(extra))]
    return [kv("tokenizer.ggml.model", T_STR, "llama"),
            kv("tokenizer.ggml.tokens", T_ARR, toks, T_STR),
            kv("tokenizer.ggml.scores", T_ARR, scores, T_F32),
            kv("tokenizer.ggml.token_type", T_ARR, types, T_I32),
            kv("tokenizer.ggml.bos_token_id", T_U32, 1),
            kv("tokenizer.ggml.eos_token_id", T_U32, 2),
            kv("tokenizer.ggml.unknown_token_id", T_U32, 0)], len(toks)


def bpe_vocab():
    # GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100...
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_chars = [chr(c) for c in cs]
    merges = ["\u0120 t", "h e", "\u0120t he", "i n", "o n", "e r", "\u0120 a", "a n"]
    toks = byte_chars + [m.replace(" ", "") for m in merges] + ["<|begin|>", "<|end|>"]
    types = [1] * (len(toks) - 2) + [3, 3]
    return [kv("tokenizer.ggml.model", T_STR, "gpt2"),
            kv("tokenizer.ggml.pre", T_STR, "llama-bpe"),
            kv("tokenizer.ggml.tokens", T_ARR, toks, T_STR),
            kv("tokenizer.ggml.token_type", T_ARR, types, T_I32),
            kv("tokenizer.ggml.merges", T_ARR, merges, T_STR),
            kv("tokenizer.ggml.bos_token_id", T_U32, len(toks) - 2),
            kv("tokenizer.ggml.eos_token_id", T_U32, len(toks) - 1)], len(toks)


def model(arch, n_embd, n_head, n_head_kv, n_ff, wtype, vocab, rng, output=False, bias=False, fused=False):
    tok_kvs, n_vocab = vocab
    hd = n_embd // n_head
    q, kvd = n_head * hd, n_head_kv * hd
    kvs = [kv("general.architecture", T_STR, arch),
           kv(arch + ".embedding_length", T_U32, n_embd),
           kv(arch + ".block_count", T_U32, 1),
           kv(arch + ".feed_forward_length", T_U32, n_ff),
           kv(arch + ".attention.head_count", T_U32, n_head),
           kv(arch + ".attention.head_count_kv", T_U32, n_head_kv),
           kv(arch + ".context_length", T_U32, 64),
           kv(arch + ".attention.layer_norm_rms_epsilon", T_F32, 1e-5),
           kv(arch + ".rope.freq_base", T_F32, 10000.0),
           kv("tokenizer.chat_template", T_STR,
              "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}")] + tok_kvs

    def mat(name, rows, cols, t=wtype):
        return (name, (cols, rows), t, [rng.uniform(-0.5, 0.5) for _ in range(rows * cols)])

    def vec(name, n):
        return (name, (n,), G_F32, [rng.uniform(0.5, 1.5) for _ in range(n)])

    ts = [mat("token_embd.weight", n_vocab, n_embd), vec("output_norm.weight", n_embd)]
    if output:
        ts.append(mat("output.weight", n_vocab, n_embd))
    p = "blk.0."
    ts += [vec(p + "attn_norm.weight", n_embd), vec(p + "ffn_norm.weight", n_embd),
           mat(p + "attn_output.weight", n_embd, q), mat(p + "ffn_down.weight", n_embd, n_ff)]
    if fused:
        ts += [mat(p + "attn_qkv.weight", q + 2 * kvd, n_embd), mat(p + "ffn_up.weight", 2 * n_ff, n_embd)]
    else:
        ts += [mat(p + "attn_q.weight", q, n_embd), mat(p + "attn_k.weight", kvd, n_embd),
               mat(p + "attn_v.weight", kvd, n_embd), mat(p + "ffn_gate.weight", n_ff, n_embd),
               mat(p + "ffn_up.weight", n_ff, n_embd)]
    if bias:
        ts += [vec(p + "attn_q.bias", q), vec(p + "attn_k.bias", kvd), vec(p + "attn_v.bias", kvd)]
    return gguf(kvs, ts)


def write(sub, name, data):
    d = os.path.join(CORPUS, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    rng = random.Random(20)
    spm = spm_vocab(["\u2581", "\u2581a", "\u2581the", "he", "llo", "\u2581he", "llo\u2581"])
    write("gguf_tokenizer", "spm_small.gguf", gguf(spm[0], []))
    write("gguf_tokenizer", "bpe_small.gguf", gguf(bpe_vocab()[0], []))
    write("gguf_tokenizer", "spm_no_scores.gguf",
          gguf([k for k in spm[0] if b"tokenizer.ggml.scores" not in k], []))
    write("gguf_model", "llama_f32.gguf", model("llama", 8, 2, 1, 16, G_F32, spm, rng))
    write("gguf_model", "llama_q8_0.gguf", model("llama", 32, 4, 2, 32, G_Q8_0, spm, rng, output=True))
    write("gguf_model", "qwen2_f16.gguf", model("qwen2", 8, 2, 2, 16, G_F16, bpe_vocab(), rng, bias=True))
    write("gguf_model", "phi3_f32.gguf", model("phi3", 8, 2, 2, 8, G_F32, spm, rng, fused=True))
    idx = {"metadata": {"total_size": 48},
           "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                          "c": "model-00002-of-00002.safetensors"}}
    write("safetensors_index", "two_shards.json", json.dumps(idx, indent=2))
    write("safetensors_index", "one_shard.json", json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    write("safetensors_index", "wrong_shard.json", json.dumps({"weight_map": {"c": "model-00001-of-00002.safetensors"}}))
    write("safetensors_index", "missing_shard.json", json.dumps({"weight_map": {"a": "model-00003-of-00003.safetensors"}}))
    write("safetensors_index", "unsafe_name.json", json.dumps({"weight_map": {"a": "../model-00001-of-00002.safetensors"}}))
    write("safetensors_index", "not_object.json", json.dumps({"weight_map": ["a"]}))
    write("safetensors_index", "folder_name.json", json.dumps({"weight_map": {"a": "."}}))


if __name__ == "__main__":
    main()
