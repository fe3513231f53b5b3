#!/usr/bin/env bash
# tests/e2e/test_hub.sh: `locallm pull / ls / rm` and auto-download against a fake hub on loopback.
# Usage: test_hub.sh /path/to/locallm   (env: LM_SOURCE_DIR = the repository)
# Starts tests/e2e/hub_server.py on a free 127.0.0.1 port and checks: the exact cache layout
# (blobs named by etag, relative symlinks, refs/main), run on a pulled GGUF and auto-download on
# a fresh cache, an interrupted pull resumed with a Range request, a corrupted transfer rejected,
# offline mode, ls/rm, refused ids, 401 and 404 messages, short names (run, pull, ls --available)
# and the memory check (LM_MEM_AVAILABLE_OVERRIDE, --force). Hub manners (issue 19): .locks/ per
# blob and a pull that waits for another process holding one, a complete repo pulled again without
# a request per file and with one "up to date" line, the HF_* variables as huggingface_hub reads
# them. Hostile repositories (issue 20): control characters in file names, a 60,000-file listing,
# a redirect to ftp://, oversized and overflowing non-LFS files, a corrupted small file, symlink
# loops in a cached snapshot. Bounded in time.
set -euo pipefail

CLI=${1:?usage: test_hub.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
export LM_SOURCE_DIR=$SRC
TMP=$(mktemp -d)
E2E_SHOW='out err log'
. "$(dirname "$0")/lib.sh"
trap e2e_cleanup EXIT

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
# pull_fails_within MODE SECONDS VAR=VALUE...: with the server in MODE, `pull test-org/tiny-model`
# with those variables set must fail, and within SECONDS.
pull_fails_within() {
    local mode=$1 limit=$2 t0 t1
    shift 2
    control "$mode"
    t0=$(date +%s)
    (export "$@"; L pull test-org/tiny-model) && fail "$mode, $*: the pull must fail"
    t1=$(date +%s)
    (( t1 - t0 < limit )) || fail "$mode, $*: took $((t1 - t0)) s"
    pass
}
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
grep -q "^downloading model.safetensors (10506464 bytes)$" "$TMP/err" && grep -q "^done model.safetensors$" "$TMP/err" ||
    fail "a fresh pull prints a line per file"; pass
# .locks/ as huggingface_hub lays it out: one lock file per blob
LK=$HF_HUB_CACHE/.locks/models--test-org--tiny-model
[[ -f $LK/$want_sha.lock && -f $LK/$tokj.lock ]] || fail "no .locks/models--test-org--tiny-model/<etag>.lock: $(ls -a "$LK" 2>&1)"; pass
[[ $(ls "$LK" | wc -l) == 6 ]] || fail "lock files: $(ls "$LK")"; pass
# a second pull downloads nothing, asks for no file's metadata and says "up to date" once
n0=$(grep -c '^GET /test-org' "$TMP/log" || true)
h0=$(grep -c '^HEAD /test-org' "$TMP/log" || true)
L pull test-org/tiny-model || fail "second pull"
n1=$(grep -c '^GET /test-org' "$TMP/log" || true)
h1=$(grep -c '^HEAD /test-org' "$TMP/log" || true)
[[ $n0 == "$n1" ]] || fail "second pull downloaded again ($n0 -> $n1)"; pass
[[ $h0 == "$h1" ]] || fail "second pull asked for the metadata of complete files ($h0 -> $h1 HEAD)"; pass
[[ $(cat "$TMP/err") == "test-org/tiny-model: up to date (6 files in the cache)" ]] || fail "second pull output: $(cat "$TMP/err")"; pass
L pull -q test-org/tiny-model || fail "pull -q"
[[ ! -s $TMP/err ]] || fail "pull -q printed: $(cat "$TMP/err")"; pass

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

# ---- hub manners (issue 19): .locks/ shared with huggingface_hub ----
# Another downloader (Python's filelock takes flock on .locks/.../<etag>.lock, as here) holds the
# lock of model.safetensors, writes the blob and lets go: the pull waits for it, then finds the
# blob complete and never downloads it, so the two never write one <blob>.incomplete.
C6=$TMP/c6
mkdir -p "$C6/.locks/models--test-org--tiny-model" "$C6/models--test-org--tiny-model/blobs"
python3 - "$C6" "$want_sha" "$SRC/models/tinychat/model.safetensors" <<'EOF' &
import fcntl, os, shutil, sys, time
cache, sha, src = sys.argv[1:4]
lock = os.path.join(cache, ".locks/models--test-org--tiny-model", sha + ".lock")
fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
open(lock + ".held", "w").close()
time.sleep(2.5)
blob = os.path.join(cache, "models--test-org--tiny-model/blobs", sha)
shutil.copy(src, blob + ".incomplete")
os.rename(blob + ".incomplete", blob)
fcntl.flock(fd, fcntl.LOCK_UN)
EOF
HOLDER=$!
for _ in $(seq 100); do [[ -f $C6/.locks/models--test-org--tiny-model/$want_sha.lock.held ]] && break; sleep 0.05; done
g0=$(grep -c "^GET /test-org/tiny-model/resolve/$MC/model.safetensors" "$TMP/log" || true)
HF_HUB_CACHE=$C6 L pull test-org/tiny-model || fail "pull beside a lock holder"
wait "$HOLDER" || fail "the lock holder failed"
g1=$(grep -c "^GET /test-org/tiny-model/resolve/$MC/model.safetensors" "$TMP/log" || true)
[[ $g0 == "$g1" ]] || fail "model.safetensors was downloaded while another process held its lock"; pass
grep -q "^waiting for another download of model.safetensors to finish" "$TMP/err" || fail "no waiting message"; pass
cmp -s "$C6/models--test-org--tiny-model/snapshots/$MC/model.safetensors" "$SRC/models/tinychat/model.safetensors" ||
    fail "the blob the other process wrote is not linked"; pass

# ---- HF_* variables as huggingface_hub reads them (issue 19) ----
for v in 1 ON on Yes TRUE true; do
    HF_HUB_OFFLINE=$v HF_ENDPOINT=http://127.0.0.1:1 L pull test-org/tiny-model || fail "HF_HUB_OFFLINE=$v is true"
done; pass
for v in 0 off no false 2; do
    HF_HUB_OFFLINE=$v HF_ENDPOINT=http://127.0.0.1:1 L pull test-org/tiny-model && fail "HF_HUB_OFFLINE=$v is not true"
done; pass
TRANSFORMERS_OFFLINE=YES HF_ENDPOINT=http://127.0.0.1:1 L pull test-org/tiny-model || fail "TRANSFORMERS_OFFLINE"; pass
auth() { grep -c "^GET /api/models/test-org/gated.* auth=yes" "$TMP/log" || true; }
echo "hf_from_file" >"$TMP/tokfile"
a0=$(auth); HF_TOKEN_PATH=$TMP/tokfile L pull test-org/gated && fail "gated"
[[ $(auth) -gt $a0 ]] || fail "HF_TOKEN_PATH: no token sent"; pass
grep -q "the token sent was refused" "$TMP/err" || fail "HF_TOKEN_PATH message"; pass
mkdir -p "$TMP/hfhome" && echo "hf_home_token" >"$TMP/hfhome/token"
a0=$(auth); HF_HOME=$TMP/hfhome L pull test-org/gated && fail "gated"
[[ $(auth) -gt $a0 ]] || fail "\$HF_HOME/token: no token sent"; pass
a0=$(auth); HUGGING_FACE_HUB_TOKEN=legacy L pull test-org/gated && fail "gated"
[[ $(auth) -gt $a0 ]] || fail "HUGGING_FACE_HUB_TOKEN: no token sent"; pass
a0=$(auth); HF_TOKEN=secret HF_TOKEN_PATH=$TMP/tokfile HF_HUB_DISABLE_IMPLICIT_TOKEN=on L pull test-org/gated && fail "gated"
[[ $(auth) == "$a0" ]] || fail "HF_HUB_DISABLE_IMPLICIT_TOKEN: a token was sent"; pass
! grep -q "the token sent was refused" "$TMP/err" || fail "HF_HUB_DISABLE_IMPLICIT_TOKEN message"; pass
# a download that stalls fails after HF_HUB_DOWNLOAD_TIMEOUT, a HEAD after HF_HUB_ETAG_TIMEOUT
pull_fails_within stall 15 HF_HUB_DOWNLOAD_TIMEOUT=1 HF_HUB_CACHE="$TMP/c8"
grep -q "download of model.safetensors .* was interrupted" "$TMP/err" || fail "stall message"; pass
pull_fails_within slowhead 4 HF_HUB_ETAG_TIMEOUT=1 HF_HUB_CACHE="$TMP/c9"
grep -q "config.json: no answer within 1 s" "$TMP/err" || fail "etag timeout message"; pass
HF_HUB_ETAG_TIMEOUT=soon HF_HUB_CACHE=$TMP/c9 L pull test-org/tiny-model || fail "a bad timeout falls back to the default"
grep -q "HF_HUB_ETAG_TIMEOUT='soon' is not a number of seconds" "$TMP/err" || fail "bad timeout warning"; pass
# HF_HUB_DISABLE_PROGRESS_BARS on a terminal: plain lines instead of a redrawn bar
python3 - "$CLI" "$TMP" <<'EOF' || fail "progress bars on a terminal"
import os, pty, subprocess, sys
cli, tmp = sys.argv[1:3]
def run(cache, extra):
    m, s = pty.openpty()
    env = dict(os.environ, HF_HUB_CACHE=os.path.join(tmp, cache), **extra)
    p = subprocess.Popen([cli, "pull", "test-org/tiny-model"], stdout=subprocess.DEVNULL, stderr=s, env=env)
    os.close(s)
    out = b""
    while True:
        try:
            d = os.read(m, 65536)
        except OSError:
            break
        if not d:
            break
        out += d
    os.close(m)
    assert p.wait(timeout=60) == 0, out
    return out
bars = run("c10", {})
assert b"\x1b[K" in bars and b"model.safetensors" in bars, bars
plain = run("c11", {"HF_HUB_DISABLE_PROGRESS_BARS": "True"})
assert b"\x1b[K" not in plain, plain
assert b"downloading model.safetensors (10506464 bytes)\r\n" in plain and b"done model.safetensors\r\n" in plain, plain
EOF
pass

# ---- hostile repositories (issue 20) ----
# file names with terminal controls: refused, and printed escaped (finding 7)
L pull test-org/evil-names && fail "control characters in rfilename"
! grep -q $'\x1b' "$TMP/err" || fail "a raw ESC reached the terminal"; pass
grep -qF "rfilename '\x1b[31mevil\x07.safetensors' is not a safe relative path" "$TMP/err" || fail "evil name message"; pass
L pull test-org/evil-c1 && fail "a C1 control in rfilename"
! grep -q $'\xc2\x9b' "$TMP/err" || fail "a raw CSI reached the terminal"; pass
grep -qF "rfilename '\u009b31mx.safetensors'" "$TMP/err" || fail "C1 name message"; pass
# listings: 60,000 files are refused, 20,000 are read (walked, not indexed: finding 6)
L pull test-org/many-files && fail "60,000 files"
grep -q "the repository lists 60001 files, more than the 50000 a model repository may have" "$TMP/err" || fail "many files message"; pass
L pull test-org/lots || fail "a listing of 20,004 files"
LS=$HF_HUB_CACHE/models--test-org--lots/snapshots/33333333cccccccccccccccccccccccccccccccc
[[ $(cat "$TMP/out") == "$LS" ]] || fail "lots path"; pass
[[ $(ls "$LS" | wc -l) == 4 ]] || fail "lots files: $(ls "$LS")"; pass
# a redirect to ftp:// is not followed (finding 15)
L pull test-org/redirect-ftp && fail "a redirect to ftp"
grep -q "refused a redirect to a URL that is not http or https" "$TMP/err" || fail "redirect message"; pass
! grep -q FTP-CONNECT "$TMP/log" || fail "the ftp:// URL was contacted"; pass
# files under a git sha1 etag: capped and verified (finding 15)
L pull test-org/huge-config && fail "a 100 MB non-LFS file"
grep -q "config.json: announced as 104857600 bytes, but a file kept in git (not LFS, etag abababababab) may have at most 33554432; refused" "$TMP/err" ||
    fail "huge config message"; pass
L pull test-org/overflow && fail "more bytes than announced"
cfg_size=$(wc -c <"$SRC/models/tinychat/config.json" | tr -d ' ')
grep -q "config.json: the server sent more than the $cfg_size bytes it announced; the partial file was deleted" "$TMP/err" ||
    fail "overflow message"; pass
[[ -z $(ls "$HF_HUB_CACHE/models--test-org--overflow/blobs") ]] || fail "overflow left: $(ls "$HF_HUB_CACHE/models--test-org--overflow/blobs")"; pass
control corrupt_small
HF_HUB_CACHE=$TMP/c7 L pull test-org/tiny-model && fail "a corrupted small file must fail"
grep -q "config.json: git sha1 mismatch (expected " "$TMP/err" || fail "sha1 message"; pass
# a cached snapshot with symlink loops resolves offline at once (finding 12)
ln -s . "$S/loop-a"
ln -s . "$S/loop-b"
ln -s sub "$S/loop-c"
HF_HUB_OFFLINE=1 L pull test-org/tiny-model || fail "offline with symlink loops"
[[ $(cat "$TMP/out") == "$S" ]] || fail "offline path with loops"; pass
HF_HUB_OFFLINE=1 L run test-org/tiny-model -p "Hi" -n 4 --no-stats || fail "run with symlink loops"; pass
rm "$S/loop-a" "$S/loop-b" "$S/loop-c"

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
