#!/usr/bin/env bash
# tests/e2e/test_hub.sh: `locallm pull / ls / rm` and auto-download against a fake hub on loopback.
# Usage: test_hub.sh /path/to/locallm   (env: LM_SOURCE_DIR = the repository)
# Starts tests/e2e/hub_server.py on a free 127.0.0.1 port and checks: the exact cache layout
# (blobs named by etag, relative symlinks, refs/main), run on a pulled GGUF and auto-download on
# a fresh cache, an interrupted pull resumed with a Range request, a corrupted transfer rejected,
# offline mode, ls/rm, refused ids, 401 and 404 messages, short names (run, pull, ls --available)
# and the memory check (LM_MEM_AVAILABLE_OVERRIDE, --force). Bounded in time.
set -euo pipefail

CLI=${1:?usage: test_hub.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
export LM_SOURCE_DIR=$SRC
TMP=$(mktemp -d)
PID=
cleanup() {
    if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

n_checks=0
pass() { n_checks=$((n_checks + 1)); }
fail() {
    echo "FAIL: $*" >&2
    for f in "$TMP"/out "$TMP"/err "$TMP"/log; do
        [[ -f $f ]] && { echo "--- $(basename "$f"):" >&2; tail -c 3000 "$f" >&2; echo >&2; }
    done
    exit 1
}

python3 "$SRC/tests/e2e/hub_server.py" "$TMP/repos" "$TMP/port" "$TMP/log" &
PID=$!
for _ in $(seq 100); do [[ -f $TMP/port ]] && break; sleep 0.1; done
[[ -f $TMP/port ]] || fail "the hub server did not start"
PORT=$(cat "$TMP/port")
export HF_ENDPOINT=http://127.0.0.1:$PORT
export HF_HUB_CACHE=$TMP/cache
unset HF_TOKEN HF_HUB_OFFLINE HF_HOME || true
export HOME=$TMP/home
L() { timeout 60 "$CLI" "$@" >"$TMP/out" 2>"$TMP/err"; }
control() { python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]).read()" "$HF_ENDPOINT/control?mode=$1"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
MC=11111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
GC=22222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb

# ---- a fresh pull: exactly the huggingface_hub layout ----
L pull test-org/tiny-model || fail "pull test-org/tiny-model"
R=$HF_HUB_CACHE/models--test-org--tiny-model
[[ $(cat "$TMP/out") == "$R/snapshots/$MC" ]] || fail "pull printed $(cat "$TMP/out")"; pass
[[ $(cat "$R/refs/main") == "$MC" ]] || fail "refs/main"; pass
[[ $(wc -c <"$R/refs/main") == 40 ]] || fail "refs/main has a newline"; pass
S=$R/snapshots/$MC
want_sha=$(sha "$SRC/models/tinychat/model.safetensors")
[[ $(readlink "$S/model.safetensors") == "../../blobs/$want_sha" ]] || fail "model.safetensors link: $(readlink "$S/model.safetensors")"; pass
[[ $(readlink "$S/sub/dir/extra.safetensors") == ../../../../blobs/* ]] || fail "nested link: $(readlink "$S/sub/dir/extra.safetensors")"; pass
tokj=$(python3 -c "import hashlib,sys; d=open(sys.argv[1],'rb').read(); print(hashlib.sha1(b'blob %d\0'%len(d)+d).hexdigest())" "$SRC/models/tinychat/tokenizer.json")
[[ $(readlink "$S/tokenizer.json") == "../../blobs/$tokj" ]] || fail "tokenizer.json must be named by X-Linked-Etag: $(readlink "$S/tokenizer.json")"; pass
cmp -s "$S/tokenizer.json" "$SRC/models/tinychat/tokenizer.json" || fail "tokenizer.json content"; pass
cmp -s "$S/model.safetensors" "$SRC/models/tinychat/model.safetensors" || fail "model content"; pass
for f in config.json generation_config.json tokenizer_config.json; do [[ -L $S/$f ]] || fail "$f missing"; done; pass
[[ ! -e $S/README.md ]] || fail "README.md should not be fetched"; pass
[[ -z $(ls "$R/blobs" | grep incomplete || true) ]] || fail "an .incomplete remains"; pass
[[ $(ls "$R/blobs" | wc -l) == 6 ]] || fail "blobs: $(ls "$R/blobs")"; pass
# a second pull downloads nothing
n0=$(grep -c '^GET /test-org' "$TMP/log" || true)
L pull test-org/tiny-model || fail "second pull"
n1=$(grep -c '^GET /test-org' "$TMP/log" || true)
[[ $n0 == "$n1" ]] || fail "second pull downloaded again ($n0 -> $n1)"; pass

# ---- GGUF: one file by :QUANT, run after pull, auto-download on a fresh cache ----
L pull test-org/tiny-gguf:q8_0 || fail "pull gguf"
G=$HF_HUB_CACHE/models--test-org--tiny-gguf
[[ $(cat "$TMP/out") == "$G/snapshots/$GC/stories260K-Q8_0.gguf" ]] || fail "gguf path $(cat "$TMP/out")"; pass
[[ ! -e $G/snapshots/$GC/stories260K-F32.gguf ]] || fail "only one gguf should be fetched"; pass
L pull test-org/tiny-gguf --include '*F32*' || fail "pull --include"
[[ $(cat "$TMP/out") == */stories260K-F32.gguf ]] || fail "--include picked $(cat "$TMP/out")"; pass
L pull test-org/tiny-gguf && fail "default Q4_K_M should not exist"
grep -q "Q4_K_M" "$TMP/err" && grep -q "stories260K-Q8_0.gguf" "$TMP/err" || fail "no-match message"; pass
L run test-org/tiny-gguf:Q8_0 -p "Once upon a time" -n 20 --no-stats || fail "run after pull"
expect=$(timeout 60 "$CLI" run "$SRC/tests/data/stories260K/stories260K-q8_0.gguf" -p "Once upon a time" -n 20 --no-stats 2>/dev/null)
[[ $(cat "$TMP/out") == "$expect" && -n $expect ]] || fail "run output differs from the local file"; pass
HF_HUB_CACHE=$TMP/fresh L run test-org/tiny-gguf:Q8_0 -p "Once upon a time" -n 20 --no-stats || fail "auto-download"
[[ $(cat "$TMP/out") == "$expect" ]] || fail "auto-download output"; pass
[[ -L $TMP/fresh/models--test-org--tiny-gguf/snapshots/$GC/stories260K-Q8_0.gguf ]] || fail "auto-download layout"; pass

# ---- offline ----
HF_HUB_OFFLINE=1 HF_ENDPOINT=http://127.0.0.1:1 L pull test-org/tiny-model || fail "offline from the cache"
[[ $(cat "$TMP/out") == "$S" ]] || fail "offline path"; pass
HF_HUB_OFFLINE=1 L pull test-org/other && fail "offline missing must fail"
grep -q "offline" "$TMP/err" && grep -q "test-org/other" "$TMP/err" || fail "offline message"; pass
HF_HUB_OFFLINE=1 HF_ENDPOINT=http://127.0.0.1:1 L run test-org/tiny-gguf:Q8_0 -p "Once upon a time" -n 20 --no-stats || fail "offline run"
[[ $(cat "$TMP/out") == "$expect" ]] || fail "offline run output"; pass
# connection failure names the endpoint and suggests the cached revision
HF_ENDPOINT=http://127.0.0.1:1 L pull test-org/tiny-model && fail "unreachable endpoint must fail"
grep -q "127.0.0.1:1" "$TMP/err" && grep -q "HF_HUB_OFFLINE=1" "$TMP/err" || fail "network message"; pass

# ---- interrupted pull resumes with a Range request ----
C2=$TMP/c2
control cut
HF_HUB_CACHE=$C2 L pull test-org/tiny-model && fail "a cut transfer must fail"
grep -q "interrupted\|incomplete" "$TMP/err" || fail "cut message"; pass
inc=$(ls "$C2/models--test-org--tiny-model/blobs/"*.incomplete)
[[ -s $inc ]] || fail "no .incomplete left"; pass
HF_HUB_CACHE=$C2 L pull test-org/tiny-model || fail "resume"
grep -q "^GET /test-org/tiny-model/resolve/$MC/model.safetensors range=bytes=[1-9]" "$TMP/log" || fail "no Range request logged"; pass
cmp -s "$C2/models--test-org--tiny-model/snapshots/$MC/model.safetensors" "$SRC/models/tinychat/model.safetensors" || fail "resumed content"; pass
[[ ! -e $inc ]] || fail ".incomplete remains after resume"; pass

# a server that ignores the Range (200) restarts the file from byte 0
C4=$TMP/c4
control cut
HF_HUB_CACHE=$C4 L pull test-org/tiny-model && fail "a cut transfer must fail"
control norange
HF_HUB_CACHE=$C4 L pull test-org/tiny-model || fail "restart after 200"
cmp -s "$C4/models--test-org--tiny-model/snapshots/$MC/model.safetensors" "$SRC/models/tinychat/model.safetensors" || fail "restarted content"; pass

# ---- write errors name the path (blobs/ is a file, so nothing can be written under it) ----
C5=$TMP/c5
mkdir -p "$C5/models--test-org--tiny-model"
echo x >"$C5/models--test-org--tiny-model/blobs"
HF_HUB_CACHE=$C5 L pull test-org/tiny-model && fail "an unwritable cache must fail"
grep -q "$C5/models--test-org--tiny-model/blobs/.*incomplete" "$TMP/err" || fail "write error message"; pass

# ---- a corrupted transfer is rejected ----
C3=$TMP/c3
control corrupt
HF_HUB_CACHE=$C3 L pull test-org/tiny-model && fail "corrupt must fail"
grep -q "sha256 mismatch" "$TMP/err" || fail "corrupt message"; pass
[[ ! -e $C3/models--test-org--tiny-model/blobs/$want_sha && -z $(ls "$C3/models--test-org--tiny-model/blobs" | grep "$want_sha" || true) ]] || fail "a corrupt blob was kept"; pass

# ---- errors ----
L pull test-org/gated && fail "gated must fail"
grep -q "HF_TOKEN" "$TMP/err" || fail "401 message"; pass
HF_TOKEN=secret L pull test-org/gated && fail "gated with token must fail"
grep -q "auth=yes" "$TMP/log" || fail "token not sent"; pass
L pull test-org/nope && fail "404 must fail"
grep -q "repository test-org/nope not found (or private)" "$TMP/err" || fail "404 message"; pass
n0=$(wc -l <"$TMP/log")
for bad in "../etc" "a/.." "/abs/x" "a/b/../c" "a/b c" 'a/b;rm' "a/..b" "-a/b" "a/b@../x"; do
    set +e; L pull "$bad"; rc=$?; set -e
    [[ $rc == 2 ]] || fail "id '$bad' should be refused with exit 2 (got $rc)"
    L rm "$bad" && fail "rm '$bad' should be refused"
done; pass
[[ $(wc -l <"$TMP/log") == "$n0" ]] || fail "refused ids reached the server"; pass
[[ ! -e $HF_HUB_CACHE/etc ]] || fail "something was created"; pass

# ---- short names (the catalog) and the memory check ----
n0=$(wc -l <"$TMP/log")
LM_MEM_AVAILABLE_OVERRIDE=1000000 L run "$SRC/tests/data/stories260K/stories260K-q8_0.gguf" -p "Once upon a time" -n 20 --no-stats && fail "the memory check must refuse"
grep -q "not enough memory for .*stories260K-q8_0.gguf: it needs about .* (weights .* + KV cache .* at 512 tokens + overhead .*) but only 976.6 KiB is available" "$TMP/err" || fail "memory message"; pass
grep -q -- "--force" "$TMP/err" || fail "the memory message must name --force"; pass
LM_MEM_AVAILABLE_OVERRIDE=1000000 L run "$SRC/tests/data/stories260K/stories260K-q8_0.gguf" -p "Once upon a time" -n 20 --no-stats --force || fail "--force must load"
[[ $(cat "$TMP/out") == "$expect" ]] || fail "--force output"; pass
LM_MEM_AVAILABLE_OVERRIDE=1000000 L chat "$SRC/models/tinychat" </dev/null && fail "chat must check memory"
grep -q "not enough memory for .*tinychat" "$TMP/err" || fail "chat memory message"; pass
LM_MEM_AVAILABLE_OVERRIDE=1000000 L chat "$SRC/models/tinychat" --force </dev/null || fail "chat accepts --force"; pass
LM_MEM_AVAILABLE_OVERRIDE=1000000 L info "$SRC/tests/data/stories260K/stories260K-q8_0.gguf" || fail "info only reads the model: no memory check"; pass
LM_MEM_AVAILABLE_OVERRIDE=1000000 L run "$SRC/tests/data/stories260K/stories260K-q8_0.gguf" -c 64 -p "x" -n 1 && fail "refuse at -c 64"
grep -q "at 64 tokens" "$TMP/err" || fail "the estimate must use --ctx"; pass
# a catalog model too big for the machine is refused before anything is downloaded
LM_MEM_AVAILABLE_OVERRIDE=1000000000 L pull llama3.2:3b && fail "pull of a model that does not fit"
grep -q "not enough memory for llama3.2:3b: it needs about 2.4 GiB (weights 1.7 GiB + KV cache 448.0 MiB at 4096 tokens" "$TMP/err" && grep -q "force to download" "$TMP/err" || fail "pull memory message"; pass
LM_MEM_AVAILABLE_OVERRIDE=1000000000 L run llama3.2:3b -p x && fail "run of a model that does not fit"
grep -q "not enough memory for llama3.2:3b" "$TMP/err" || fail "run memory message"; pass
[[ $(wc -l <"$TMP/log") == "$n0" ]] || fail "a refused model reached the server"; pass
# with --force the short name is pulled by its repo id (which the fake hub does not have)
LM_MEM_AVAILABLE_OVERRIDE=1000000000 L pull llama3.2:3b --force && fail "the fake hub has no such repo"
grep -q "mlx-community/Llama-3.2-3B-Instruct-4bit not found" "$TMP/err" || fail "short name expansion in pull"; pass
L run nosuch:1b -p x && fail "unknown short name"
grep -q "nosuch:1b: unknown model name; known names include llama3.2:3b" "$TMP/err" || fail "unknown short name message"; pass
L ls --available || fail "ls --available"
grep -q "^llama3.2:3b  *mlx-community/Llama-3.2-3B-Instruct-4bit  *mlx  *3.2B  *1.8 GB  *2.5 GB .* no  " "$TMP/out" || fail "ls --available llama3.2:3b line"; pass
[[ $(grep -c -- "-gguf " "$TMP/out") == 10 ]] || fail "ls --available gguf lines"; pass
# a short name whose repo is in the cache runs from it (the tiny chat model stands in)
cp -a "$R" "$HF_HUB_CACHE/models--mlx-community--Llama-3.2-3B-Instruct-4bit"
L ls --available || fail "ls --available (cached)"
grep -q "^llama3.2:3b .* yes  *Meta" "$TMP/out" || fail "ls --available must say cached"; pass
HF_HUB_OFFLINE=1 L run llama3.2:3b -p "Hi" -n 8 --no-stats || fail "run by short name"
want=$(timeout 60 "$CLI" run "$SRC/models/tinychat" -p "Hi" -n 8 --no-stats 2>/dev/null)
[[ $(cat "$TMP/out") == "$want" && -n $want ]] || fail "short name output differs"; pass
L rm llama3.2:3b || fail "rm by short name"
grep -q "^removed mlx-community/Llama-3.2-3B-Instruct-4bit$" "$TMP/out" || fail "rm short name output"; pass
[[ ! -e $HF_HUB_CACHE/models--mlx-community--Llama-3.2-3B-Instruct-4bit ]] || fail "rm by short name left the folder"; pass

# ---- ls / rm ----
L ls || fail "ls"
grep -q "^test-org/tiny-model .*main@11111111.*safetensors" "$TMP/out" || fail "ls model line"; pass
grep -q "^test-org/tiny-gguf .*gguf" "$TMP/out" || fail "ls gguf line"; pass
L rm test-org/tiny-gguf || fail "rm"
[[ ! -e $G ]] || fail "rm left the folder"; pass
L ls || fail "ls after rm"
! grep -q tiny-gguf "$TMP/out" || fail "ls still lists the removed model"; pass
L rm test-org/tiny-gguf && fail "rm of a missing model must fail"; pass

echo "test_hub: $n_checks checks passed"
