#!/usr/bin/env python3
"""tools/make_tok512.py: writes the two 512-token tokenizers of tests/data/convert/ (a byte-level
BPE one and a SentencePiece-style one), so the tokenizer-less fixture models of tests/data/models
(vocab 512) can be converted to GGUF, which carries a vocabulary. The merges are learned from a
short fixed text; the result is deterministic. Usage: python3 tools/make_tok512.py OUT_DIR"""
import json, os, sys
from collections import Counter

TEXT = ("Once upon a time there was a little girl who liked to read stories about the sea. "
        "The weather in Paris is sunny and the capital of France is Paris. What is the time? "
        "Hello! How can I help you today? The quick brown fox jumps over the lazy dog. ") * 4
# plus pseudo-random words (a fixed LCG), so that enough distinct pairs exist for 253 merges
_s = 12345
_words = []
for _ in range(600):
    _w = ""
    for _k in range(2 + _s % 5):
        _s = (_s * 1103515245 + 12345) % 2147483648
        _w += "etaoinshrdlucmfwyp"[(_s >> 16) % 18]
    _words.append(_w)
TEXT += " ".join(_words)

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

def learn(words, n_merges, vocab):
    seqs = [list(w) for w in words]
    merges = []
    while len(merges) < n_merges:
        pairs = Counter()
        for s in seqs:
            for a, b in zip(s, s[1:]): pairs[(a, b)] += 1
        if not pairs: break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if a + b in vocab:  # already a token: drop the pair from further counting
            pass
        merges.append((a, b)); vocab[a + b] = len(vocab)
        for s in seqs:
            i = 0
            while i < len(s) - 1:
                if s[i] == a and s[i + 1] == b: s[i:i + 2] = [a + b]
                i += 1
    return merges

def bpe(out):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    words = ["".join(b2u[c] for c in (w if i == 0 else " " + w).encode()) for i, w in enumerate(TEXT.split(" "))]
    merges = learn(words, 253, vocab)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    added = [{"id": 509 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(specials)]
    assert len(vocab) == 509, len(vocab)
    regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
          "normalizer": {"type": "NFC"},
          "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
              {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
              {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
          "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
          "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                    "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                    "vocab": vocab, "merges": [a + " " + b for a, b in merges]}}
    tc = {"add_bos_token": False, "add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>",
          "pad_token": "<|endoftext|>", "model_max_length": 4096, "tokenizer_class": "Qwen2Tokenizer",
          "chat_template": "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"}
    write(out + "/tok512-bpe", tj, tc)

def spm(out):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256): vocab["<0x%02X>" % b] = 3 + b
    chars = sorted(set("▁" + TEXT.replace(" ", "")))
    for c in chars: vocab.setdefault(c, len(vocab))
    words = ["▁" + w for w in TEXT.split(" ")]
    merges = learn(words, 509 - len(vocab), vocab)
    assert len(vocab) == 509, len(vocab)
    # chat tokens as Phi-3 has them (llama.cpp looks some of them up by name for phi3 models)
    extra = ["<|endoftext|>", "<|user|>", "<|assistant|>"]
    tj = {"version": "1.0", "truncation": None, "padding": None,
          "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True} for i, s in enumerate(["<unk>", "<s>", "</s>"])] +
                         [{"id": 509 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": True,
                           "normalized": False, "special": True} for i, s in enumerate(extra)],
          "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                             {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
          "pre_tokenizer": None,
          "post_processor": {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
          "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                                       {"type": "ByteFallback"}, {"type": "Fuse"},
                                                       {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
          "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                    "vocab": vocab, "merges": [a + " " + b for a, b in merges]}}
    tc = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
          "unk_token": "<unk>", "pad_token": None, "legacy": False, "model_max_length": 4096,
          "tokenizer_class": "LlamaTokenizer"}
    write(out + "/tok512-spm", tj, tc)

def write(d, tj, tc):
    os.makedirs(d, exist_ok=True)
    with open(d + "/tokenizer.json", "w", encoding="utf-8") as f: json.dump(tj, f, ensure_ascii=False, indent=1)
    with open(d + "/tokenizer_config.json", "w", encoding="utf-8") as f: json.dump(tc, f, ensure_ascii=False, indent=1)

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/convert"
    bpe(out); spm(out)
