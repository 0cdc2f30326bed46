#!/usr/bin/env python3
"""Lists import cycles between the modules of each crate in the workspace.

A module is one source file (`src/a/b.rs` or `src/a/b/mod.rs` is `a::b`; `lib.rs` and `main.rs`
are the crate root). Module A imports module B when A's code, outside comments, names a path
into B: `use crate::b::...`, `crate::b::x(...)` or `super::b::...`. A path is cut at the longest prefix that is a module, so
`crate::scoring::ScoredMiner` counts as an import of `scoring`, not of the file that defines the
item. A parent also imports a child whose path it names (`b::f()`, `pub use b::X`); declaring
`mod b;` is not an import. A cycle is a strongly connected set of two or more
modules. Exits 1 when there is one.

Run by hand from the repository root: `python3 scripts/module_cycles.py`.
"""

import pathlib
import re
import sys


def strip_comments(text):
    """`text` without comments, and with string and character literals emptied."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif re.match(r'r#*"', text[i : i + 10]) and (i == 0 or not text[i - 1].isalnum()):
            hashes = len(re.match(r"r(#*)", text[i:]).group(1))
            end = text.find('"' + "#" * hashes, i + 2 + hashes)
            out.append('""')
            i = n if end < 0 else end + 1 + hashes
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:]):
            i += re.match(r"'(\\.[^']*|[^\\'])'", text[i:]).end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_files(src, root_file):
    """The modules of the crate rooted at `src/root_file`, following its `mod name;` lines."""
    files = {}

    def visit(module, path):
        text = strip_comments(path.read_text())
        files[module] = text
        here = path.parent if path.name in ("lib.rs", "main.rs", "mod.rs") else path.with_suffix("")
        for m in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, flags=re.M):
            child = m.group(1)
            for candidate in (here / f"{child}.rs", here / child / "mod.rs"):
                if candidate.exists():
                    visit(module + (child,), candidate)
                    break

    visit((), src / root_file)
    return files


def crate_graph(src, root_file):
    files = module_files(src, root_file)
    modules = set(files)
    edges = {m: set() for m in modules}

    def resolve(parts):
        best = None
        for i in range(len(parts) + 1):
            if tuple(parts[:i]) in modules:
                best = tuple(parts[:i])
        return best

    for module, text in files.items():
        targets = []
        for m in re.finditer(r"\bcrate((?:::\w+)+)", text):
            targets.append(m.group(1).split("::")[1:])
        for m in re.finditer(r"\b((?:super::)+)((?:\w+::)*\w+)", text):
            up = m.group(1).count("super::")
            base = list(module[: len(module) - up]) if up <= len(module) else []
            targets.append(base + m.group(2).split("::"))
        for m in re.finditer(r"(?<!::)(?<!\w)(?:self::)?(\w+)::", text):
            child = module + (m.group(1),)
            if child in modules:
                targets.append(list(child))
        for m in re.finditer(r"\buse\s+(?:self::)?\{([^}]*)\}", text):
            for name in re.findall(r"(?<!::)(?<!\w)(\w+)::", m.group(1)):
                if module + (name,) in modules:
                    targets.append(list(module + (name,)))
        for parts in targets:
            target = resolve(parts)
            if target is not None and target != module:
                edges[module].add(target)
    return edges


def cycles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def name(module):
    return "::".join(module) or "(root)"


def main():
    root = pathlib.Path(".")
    found = False
    for manifest in sorted(root.glob("*/Cargo.toml")):
        src = manifest.parent / "src"
        for root_file in ("lib.rs", "main.rs"):
            if not (src / root_file).exists():
                continue
            edges = crate_graph(src, root_file)
            for group in cycles(edges):
                found = True
                print(f"{manifest.parent.name} ({root_file}): " + " <-> ".join(name(m) for m in group))
                for a in group:
                    for b in sorted(edges[a]):
                        if b in group:
                            print(f"    {name(a)} imports {name(b)}")
    if not found:
        print("no import cycles between modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
