#!/usr/bin/env bash
# tests/e2e/test_tokenizer_only.sh: `tokenize`, `detokenize` and `template` on a tokenizer alone,
# no weights: a folder with tokenizer.json and tokenizer_config.json (the Hugging Face files of
# tests/data/tokenizers/<family>), the tokenizer.json file itself, a folder with only
# tokenizer.json, and a folder whose chat_template.jinja carries the template.
# Usage: test_tokenizer_only.sh /path/to/locallm   (env: LM_TEST_DATA = tests/data, LM_SOURCE_DIR)
# Checks, against the outputs of Hugging Face's own libraries (tests/data/tokenizers/*/refs.json),
# a sample of each family's corpus strings (ids with add_special_tokens=True, as tokenize's
# default; decoded text with and without special tokens) and of its chats rendered to the exact
# text and ids (or the template's own error). tinychat's tokenizer files alone render its refs.json prompts
# byte for byte as the full model does. run on a tokenizer folder says it cannot run.
set -euo pipefail

CLI=${1:?usage: test_tokenizer_only.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DATA=${LM_TEST_DATA:-$SRC/tests/data}
TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
trap 'rm -rf "$TMP"' EXIT

for f in llama3 qwen2 mistral phi3 llama2; do
    [[ -f $DATA/tokenizers/$f/tokenizer.json ]] || fail "$DATA/tokenizers/$f/tokenizer.json is missing (make testdata unpacks it)"
done

# ---- every family's folder against refs.json (python3 drives the CLI, one call per string) ----
python3 - "$CLI" "$DATA/tokenizers" "$TMP" <<'PY' || fail "tokenizer folders against refs.json"
import json, os, subprocess, sys

cli, root, tmp = sys.argv[1], sys.argv[2], sys.argv[3]

def run(*args):
    p = subprocess.run([cli, *args], capture_output=True, timeout=300)
    return p.returncode, p.stdout.decode("utf-8", "surrogateescape"), p.stderr.decode()

bad = []
n = 0
for fam in ["llama3", "qwen2", "mistral", "phi3", "llama2"]:
    folder = os.path.join(root, fam)
    refs = json.load(open(os.path.join(folder, "refs.json")))
    # a sample of each: every string and chat is checked one by one by tests/unit/test_tokenizer_json.c;
    # here they come through the CLI from a folder with no model in it
    for k, e in enumerate(refs["encode"]):
        if k % 12:
            continue
        path = os.path.join(tmp, "text")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(e["text"])
        want = e["ids_with_special"] if e.get("tokenizers_lib_agrees", True) else e["tokenizers_lib_ids_with_special"]
        # every other string through the tokenizer.json file itself, the rest through the folder
        where = os.path.join(folder, "tokenizer.json") if k % 2 else folder
        rc, out, err = run("tokenize", where, "--file", path, "--json")
        got = json.loads(out)["ids"] if rc == 0 else err
        if got != want:
            bad.append(f"{fam} encode {e['id']}: {got} != {want}")
        ids = ",".join(map(str, e["ids"]))
        # transformers' own decode where the tokenizers library disagrees, and llama2's refs
        # (keeping "<s>" when skipping), are not what tokenizer.json gives; the unit test says so
        if ids and "tokenizers_lib_ids" not in e and fam != "llama2":
            rc, out, err = run("detokenize", folder, "--ids", ids)
            if rc != 0 or out != e["decoded"]:
                bad.append(f"{fam} decode {e['id']}: {out!r} != {e['decoded']!r} {err}")
            ids_s = ",".join(map(str, e["ids_with_special"]))
            rc, out, err = run("detokenize", folder, "--ids", ids_s, "--skip-special")
            if rc != 0 or out != e["decoded_with_special_skip"]:
                bad.append(f"{fam} decode --skip-special {e['id']}: {out!r} {err}")
        n += 1
    for k, c in enumerate(refs["chat"]):
        if k % 3:
            continue
        mp, tp = os.path.join(tmp, "msgs.json"), os.path.join(tmp, "tools.json")
        json.dump(c["messages"], open(mp, "w"))
        args = ["template", folder, "--messages", mp]
        # llama2's tokenizer_config.json has no template: refs.json names the file it used
        src = refs.get("chat_template_source", "")
        if src.startswith("templates/"):
            args += ["--chat-template", os.path.join(root, "..", src)]
        if c.get("tools"):
            json.dump(c["tools"], open(tp, "w"))
            args += ["--tools", tp]
        if not c.get("add_generation_prompt", True):
            args.append("--no-generation-prompt")
        for key, val in (c.get("template_kwargs") or {}).items():
            args += ["--var", f"{key}={val}"]
        rc, out, err = run(*args)
        if c.get("error"):
            if rc != 1 or "locallm: error: cannot render the template" not in err:
                bad.append(f"{fam} chat {c['id']}: expected the template's error, got rc {rc} {err}")
            continue
        if rc != 0 or out != c["text"]:
            bad.append(f"{fam} chat {c['id']}: text differs (rc {rc}) {err}")
        rc, out, err = run(*args, "--ids")
        want = c["ids"] if c.get("tokenizers_lib_agrees", True) else c["tokenizers_lib_ids"]
        if rc != 0 or json.loads(out)["ids"] != want:
            bad.append(f"{fam} chat {c['id']}: ids differ (rc {rc}) {err}")
        n += 1
for b in bad[:20]:
    print(b, file=sys.stderr)
print(f"{n} strings and chats checked, {len(bad)} wrong", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
pass

# ---- tinychat's tokenizer files alone render as the full model does ----
mkdir -p "$TMP/tc"
cp "$SRC/models/tinychat/tokenizer.json" "$SRC/models/tinychat/tokenizer_config.json" "$TMP/tc/"
cat >"$TMP/msgs.json" <<'JSON'
[{"role": "system", "content": "You are a cheerful kitchen assistant."}, {"role": "user", "content": "good evening"}, {"role": "assistant", "content": "Good evening! How can I help you today?"}, {"role": "user", "content": "what's 3 times 4"}]
JSON
for mode in "" --ids; do
    cli template "$SRC/models/tinychat" --messages "$TMP/msgs.json" $mode
    [[ $rc -eq 0 ]] || fail "template on the full model"
    cp "$TMP/out" "$TMP/full"
    cli template "$TMP/tc" --messages "$TMP/msgs.json" $mode
    [[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/full" || fail "template $mode on tinychat's tokenizer folder"
    cli template "$TMP/tc/tokenizer.json" --messages "$TMP/msgs.json" $mode
    [[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/full" || fail "template $mode on tinychat's tokenizer.json"
    pass
done
cli tokenize "$TMP/tc" --text "good evening" --json
cp "$TMP/out" "$TMP/ids_tok"
cli tokenize "$SRC/models/tinychat" --text "good evening" --json
cmp -s "$TMP/out" "$TMP/ids_tok" || fail "tokenize: tokenizer folder vs full model"
pass

# chat_template.jinja beside tokenizer.json (no tokenizer_config.json) is the template
mkdir -p "$TMP/jinja"
cp "$SRC/models/tinychat/tokenizer.json" "$TMP/jinja/"
printf '%s' '{% for m in messages %}[{{ m.role }}] {{ m.content }}
{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}' >"$TMP/jinja/chat_template.jinja"
cli template "$TMP/jinja" --messages "$TMP/msgs.json"
printf '%s\n' "[system] You are a cheerful kitchen assistant." "[user] good evening" \
    "[assistant] Good evening! How can I help you today?" "[user] what's 3 times 4" >"$TMP/want"
printf '[assistant] ' >>"$TMP/want"
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "template from chat_template.jinja"
pass
# and it wins over tokenizer_config.json's template, as with a full model folder
cp "$SRC/models/tinychat/tokenizer_config.json" "$TMP/jinja/"
cli template "$TMP/jinja" --messages "$TMP/msgs.json"
[[ $rc -eq 0 ]] && cmp -s "$TMP/out" "$TMP/want" || fail "chat_template.jinja over tokenizer_config.json"
pass
# a lone tokenizer.json under another name is read alone
cp "$DATA/tokenizers/qwen2/tokenizer.json" "$TMP/qwen-tok.json"
cli tokenize "$TMP/qwen-tok.json" --text "Hello world" --json --no-bos-eos
[[ $rc -eq 0 && $(cat "$TMP/out") == '{"ids":[9707,1879]}' ]] || fail "tokenize a renamed tokenizer.json"
pass

# ---- what a tokenizer cannot do, and folders without one ----
mkdir -p "$TMP/empty"
cli tokenize "$TMP/empty" --text x
[[ $rc -eq 1 ]] && grep -qF "no tokenizer.json in the folder" "$TMP/err" || fail "tokenize on a folder without a tokenizer"
pass
cli run "$TMP/tc" "Hi"
[[ $rc -eq 1 ]] && grep -qF "a tokenizer without a model (tokenizer.json, no config.json)" "$TMP/err" ||
    fail "run on a tokenizer folder"
pass
cli detokenize "$TMP/tc" --ids 1,999999
[[ $rc -eq 1 ]] && grep -qF "outside the vocabulary" "$TMP/err" || fail "detokenize: an id outside the tokenizer"
pass

echo "test_tokenizer_only.sh: $n_checks checks passed"
