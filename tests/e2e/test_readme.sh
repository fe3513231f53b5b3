#!/usr/bin/env bash
# tests/e2e/test_readme.sh: the README says what is true.
# Usage: test_readme.sh /path/to/locallm   (env: LM_BUILD_DIR, LM_SOURCE_DIR, LM_CC, and
# LM_SANITIZE_FLAGS in a sanitizer build)
# Checks: the library example (the ```c block after "<!-- readme-example: hello.c -->") compiles
# with the build line the README prints, against this build installed into a temporary prefix,
# without a warning (-std=c11 -Wall -Wextra -Werror), and answers tinychat's greedy reply; every
# `locallm COMMAND ...` line of the shell blocks names a real command and only options that
# command's --help lists; every command of `locallm --help` is in the README; every environment
# variable of its table is read somewhere in src/; its #links lead to headings; `make run` builds
# only the CLI target.
set -euo pipefail

CLI=${1:?usage: test_readme.sh /path/to/locallm}
SRC=${LM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${LM_BUILD_DIR:?LM_BUILD_DIR must name the build folder}
CC=$(command -v "${LM_CC:-cc}") || { echo "FAIL: no C compiler (${LM_CC:-cc})" >&2; exit 1; } # absolute: the wrapper below is named cc
README=$SRC/README.md
TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
trap 'rm -rf "$TMP"' EXIT


# ---- the library example, built as printed ----
python3 - "$README" "$TMP" <<'PY' || fail "README: the hello.c example or its build line is missing"
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"<!-- readme-example: hello\.c -->\n```c\n(.*?)```", text, re.S)
code = m.group(1)
build = re.search(r"```sh\n(cc hello\.c [^\n]*)\n", text[m.end():]).group(1)
run = re.search(r"\n(\./hello [^\n]*)\n", text[m.end():]).group(1)
open(sys.argv[2] + "/hello.c", "w").write(code)
open(sys.argv[2] + "/build.sh", "w").write(build + "\n")
open(sys.argv[2] + "/run.sh", "w").write(run + "\n")
lines = code.count("\n")
assert lines <= 35, f"the example has {lines} lines"
PY
[[ $(cat "$TMP/build.sh") == 'cc hello.c $(pkg-config --cflags --libs locallm) -o hello' ]] ||
    fail "README: the build line changed: $(cat "$TMP/build.sh")"
cmake --install "$BUILD" --prefix "$TMP/prefix" >"$TMP/err" 2>&1 || fail "cmake --install"
export PKG_CONFIG_PATH=$(dirname "$(ls -d "$TMP"/prefix/lib*/pkgconfig | head -1)")/pkgconfig
export LD_LIBRARY_PATH=$(dirname "$PKG_CONFIG_PATH")
# "cc" is the compiler of this build (the sanitizer runtime must match in the ASan build)
mkdir -p "$TMP/bin"
printf '#!/bin/sh\nexec %s %s "$@"\n' "$CC" "${LM_SANITIZE_FLAGS:-}" >"$TMP/bin/cc"
chmod +x "$TMP/bin/cc"
(cd "$TMP" && PATH=$TMP/bin:$PATH bash build.sh) >"$TMP/out" 2>"$TMP/err" || fail "the README's build line"
(cd "$TMP" && PATH=$TMP/bin:$PATH cc -std=c11 -Wall -Wextra -Werror -c hello.c -o /dev/null $(pkg-config --cflags locallm)) \
    >"$TMP/out" 2>"$TMP/err" || fail "hello.c is not warning-free C11"
pass
sed "s|models/tinychat|$SRC/models/tinychat|" "$TMP/run.sh" >"$TMP/run2.sh"
rc=0
(cd "$TMP" && timeout 120 bash run2.sh) >"$TMP/out" 2>"$TMP/err" || rc=$?
[[ $rc -eq 0 && $(cat "$TMP/out") == "The capital of France is Paris." ]] || fail "hello answered wrongly (rc $rc)"
pass

# ---- the commands and options the README shows ----
"$CLI" --help >"$TMP/help"
python3 - "$README" "$CLI" "$TMP/help" "$SRC" <<'PY' >"$TMP/out" 2>&1 || fail "README commands"
import os, re, shlex, subprocess, sys
readme, cli, helpfile, src = sys.argv[1:5]
text = open(readme).read()
bad = []
blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
helps = {}
n = 0
for block in blocks:
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0]
        for m in re.finditer(r"(?:^|\|\s*)locallm\s+(.*)", line):
            try:
                words = shlex.split(m.group(1).split("|")[0].split("&")[0])
            except ValueError as e:
                bad.append(f"{line}: {e}")
                continue
            cmd = words[0]
            if cmd not in helps:
                p = subprocess.run([cli, cmd, "--help"], capture_output=True, text=True)
                if p.returncode != 0:
                    bad.append(f"{line}: '{cmd}' is not a command")
                    continue
                helps[cmd] = p.stdout
            for w in words[1:]:
                if w.startswith("-") and len(w) > 1:
                    opt = w.split("=")[0]
                    if not re.search(r"(^|[ ,])" + re.escape(opt) + r"([ ,\n]|$)", helps[cmd], re.M):
                        bad.append(f"{line}: {cmd} has no option {opt}")
            n += 1
# every command of `locallm --help`
cmds = re.findall(r"^  ([a-z]+)", open(helpfile).read().split("Commands:")[1], re.M)
for c in cmds:
    if not re.search(r"locallm " + c + r"\b", text):
        bad.append(f"the README never shows `locallm {c}`")
# the environment table: each variable is read by the code
for var in re.findall(r"^\| `([A-Z_]+)`", text, re.M) + re.findall(r"^\| `[A-Z_]+`, `([A-Z_]+)`", text, re.M):
    found = subprocess.run(["grep", "-rqF", '"' + var, os.path.join(src, "src")]).returncode == 0
    if not found:
        bad.append(f"environment variable {var} is not read in src/")
# #anchors lead to headings (GitHub's rule: lower case, punctuation dropped, spaces to '-')
anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", text, re.M)}
for a in re.findall(r"\]\(#([^)]+)\)", text):
    if a not in anchors:
        bad.append(f"link #{a} leads nowhere")
print(f"{n} locallm lines checked")
for b in bad:
    print(b)
sys.exit(1 if bad or n < 20 else 0)
PY
pass

# ---- make run builds the CLI and nothing else ----
make -s -n -C "$SRC" run BUILD="$TMP/mk" JOBS=2 >"$TMP/out" 2>"$TMP/err" || fail "make -n run"
grep -q "cmake --build $TMP/mk -j 2 --target locallm\$" "$TMP/out" || fail "make run does not build only --target locallm"
[[ $(grep -c "cmake --build" "$TMP/out") -eq 1 ]] || fail "make run builds more than the CLI"
pass

echo "test_readme.sh: $n_checks checks passed"
