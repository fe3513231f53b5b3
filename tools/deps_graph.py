#!/usr/bin/env python3
"""tools/deps_graph.py: the dependency graph between the files of src/, read from the source text.

Two graphs, each checked for cycles (strongly connected components of more than one file):
  - include: header A includes header B (a .c file is never included, so only headers can loop);
  - call:    a.c uses a function or global defined (not static) in b.c.
The call graph is what the issue about the house means by "file cycles": two files that each
call the other are one module in two pieces, or one of them holds a helper that belongs to a
third file.

Usage: tools/deps_graph.py [--root DIR] [--allow PREFIX]... [--edges] [--dead] [--long N]
  exit 1 when a cycle exists (ctest runs it so cycles cannot come back), 0 otherwise.
  --allow P   a cycle whose files all start with P is listed as allowed and does not fail
  --edges     also print every call edge "a.c -> b.c: fn, fn"
  --dead      list functions defined without static that nothing names but their definition (in
              src/, tests/, examples/, tools/, bench/ or include/); exit 1 when one is found
              outside the --allow prefixes
  --long N    list functions longer than N lines (and exit 0; for tools/long_functions.sh)
It reads text, not objects: comments, strings and character literals are blanked first, then
top-level function definitions are the identifiers followed by "(...)" and "{" at brace depth 0.
"""
import os
import re
import sys
from collections import defaultdict

IDENT = re.compile(r"[A-Za-z_]\w*")
KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "do", "else", "case",
            "defined", "_Static_assert", "static_assert", "__attribute__", "_Alignas",
            "alignas", "__declspec", "typeof", "__typeof__", "_Generic"}


def blank(text):
    """Comments, string and char literals become spaces (newlines kept, so line numbers hold)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_preproc(text):
    """Preprocessor lines (with their continuations) become blank lines."""
    lines = text.split("\n")
    out, cont = [], False
    for ln in lines:
        if cont or ln.lstrip().startswith("#"):
            cont = ln.rstrip().endswith("\\")
            out.append("")
        else:
            out.append(ln)
    return "\n".join(out)


def definitions(code):
    """(name, is_static, first_line, last_line) of every function defined at brace depth 0, and
    the names of non-static globals (variables) defined at depth 0."""
    funcs, globs = [], []
    depth, i, n = 0, 0, len(code)
    stmt_start = 0
    while i < n:
        c = code[i]
        if c == "{":
            if depth == 0:
                head = code[stmt_start:i]
                m = re.search(r"([A-Za-z_]\w*)\s*\(([^()]|\([^()]*\))*\)\s*$", head)
                if m and m.group(1) not in KEYWORDS and "=" not in head[:m.start()] \
                        and not re.search(r"\b(struct|union|enum)\s*\w*\s*$", head):
                    # find the matching close brace
                    d, j = 0, i
                    while j < n:
                        if code[j] == "{":
                            d += 1
                        elif code[j] == "}":
                            d -= 1
                            if d == 0:
                                break
                        j += 1
                    pre = head[:m.start()]
                    static = re.search(r"\bstatic\b", pre) is not None
                    first = code.count("\n", 0, stmt_start + len(head) - len(head.lstrip())) + 1
                    last = code.count("\n", 0, j) + 1
                    funcs.append((m.group(1), static, first, last))
                    i = j + 1
                    stmt_start = i
                    continue
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == ";" and depth == 0:
            stmt = code[stmt_start:i]
            lhs = stmt.split("=")[0]
            if "{" in lhs or "}" in lhs:
                stmt_start = i + 1
                i += 1
                continue
            if not re.search(r"\b(static|extern|typedef)\b", stmt) and "(" not in stmt.split("=")[0]:
                m = re.search(r"([A-Za-z_]\w*)\s*(\[[^\]]*\]\s*)*(=|$)", stmt.split("=")[0] + "=")
                if m and m.group(1) not in KEYWORDS:
                    globs.append(m.group(1))
            stmt_start = i + 1
        i += 1
    return funcs, globs


def scan(root):
    files = {}
    for d, _, names in os.walk(os.path.join(root, "src")):
        for nm in sorted(names):
            if nm.endswith((".c", ".h", ".cu")):
                p = os.path.join(d, nm)
                rel = os.path.relpath(p, root)
                with open(p, encoding="utf-8", errors="replace") as f:
                    raw = f.read()
                files[rel] = raw
    return files


def sccs(nodes, edges):
    """Tarjan's algorithm, iterative; returns components of more than one node."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for v0 in nodes:
        if v0 in index:
            continue
        work = [(v0, iter(sorted(edges.get(v0, ()))))]
        index[v0] = low[v0] = counter[0]
        counter[0] += 1
        stack.append(v0)
        on.add(v0)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main(argv):
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    show_edges = dead = False
    allow = []
    long_n = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--root":
            root = argv[i + 1]
            i += 1
        elif a == "--allow":
            allow.append(argv[i + 1])
            i += 1
        elif a == "--edges":
            show_edges = True
        elif a == "--dead":
            dead = True
        elif a == "--long":
            long_n = int(argv[i + 1])
            i += 1
        else:
            print(__doc__, file=sys.stderr)
            return 2
        i += 1
    root = os.path.abspath(root)
    files = scan(root)

    # include graph between headers (and .c -> header, for completeness; .c never loops)
    inc = defaultdict(set)
    for rel, raw in files.items():
        for m in re.finditer(r'^\s*#\s*include\s+"([^"]+)"', raw, re.M):
            target = m.group(1)
            for cand in (os.path.normpath(os.path.join(os.path.dirname(rel), target)),
                         os.path.normpath(os.path.join("src", target))):
                if cand in files:
                    inc[rel].add(cand)
                    break

    # call graph between .c files
    code = {rel: strip_preproc(blank(raw)) for rel, raw in files.items()}
    defs, where, statics = {}, {}, defaultdict(set)
    for rel in files:
        if not rel.endswith((".c", ".cu")):
            continue
        funcs, globs = definitions(code[rel])
        defs[rel] = funcs
        for name, st, _, _ in funcs:
            if st:
                statics[rel].add(name)
            else:
                where.setdefault(name, rel)
        for g in globs:
            where.setdefault(g, rel)

    if long_n is not None:
        rows = []
        for rel, funcs in defs.items():
            for name, _, a, b in funcs:
                if b - a + 1 > long_n:
                    rows.append((b - a + 1, rel, a, name))
        for ln, rel, a, name in sorted(rows, reverse=True):
            print(f"{ln:5d} {rel}:{a} {name}")
        return 0

    calls = defaultdict(lambda: defaultdict(set))
    uses = defaultdict(int)
    for rel in defs:
        for m in IDENT.finditer(code[rel]):
            name = m.group(0)
            if name in statics[rel]:
                continue
            tgt = where.get(name)
            if tgt is None:
                continue
            uses[name] += 1 if tgt != rel else 0
            if tgt != rel:
                calls[rel][tgt].add(name)
            else:
                uses[(name, "self")] = uses.get((name, "self"), 0) + 1

    if dead:
        # names referenced from anywhere outside src/ count too (tests, tools, examples)
        extra = []
        for sub in ("tests", "examples", "tools", "bench", "include"):
            for d, _, names in os.walk(os.path.join(root, sub)):
                for nm in names:
                    if nm.endswith((".c", ".h", ".cpp", ".cu")):
                        with open(os.path.join(d, nm), encoding="utf-8", errors="replace") as f:
                            extra.append(strip_preproc(blank(f.read())))
        outside = set()
        for t in extra:
            outside.update(IDENT.findall(t))
        rc = 0
        for rel, funcs in sorted(defs.items()):
            for name, st, a, _ in funcs:
                if st or name == "main":
                    continue
                if uses.get(name, 0) == 0 and uses.get((name, "self"), 0) <= 1 \
                        and name not in outside:
                    ok = any(rel.startswith(p) for p in allow)
                    rc |= 0 if ok else 1
                    print(f"{'allowed ' if ok else ''}{rel}:{a} {name}: defined, never called")
        if rc == 0:
            print("no dead functions (but those allowed) in src/")
        return rc

    rc = 0

    def allowed(comp):
        return any(all(f.startswith(p) for f in comp) for p in allow)

    for comp in sccs(sorted(inc), inc):
        rc |= 0 if allowed(comp) else 1
        print(("allowed " if allowed(comp) else "") + "include cycle: " + " <-> ".join(comp))
    for comp in sccs(sorted(calls), {k: set(v) for k, v in calls.items()}):
        rc |= 0 if allowed(comp) else 1
        print(("allowed " if allowed(comp) else "") + "call cycle: " + " <-> ".join(comp))
        for a in comp:
            for b in comp:
                if b in calls[a]:
                    print(f"    {a} -> {b}: {', '.join(sorted(calls[a][b]))}")
    if show_edges:
        for a in sorted(calls):
            for b in sorted(calls[a]):
                print(f"{a} -> {b}: {', '.join(sorted(calls[a][b]))}")
    if rc == 0:
        print(f"no cycles (but those allowed) between the {len(defs)} source files of src/")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
