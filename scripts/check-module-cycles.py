#!/usr/bin/env python3
"""Fails when the modules of a workspace crate depend on each other in a cycle.

For every member of the workspace, each file under `src/` (but not `src/bin/`, whose files
are crate roots of their own) is mapped to its module path (`src/ledger/batches.rs` is
`ledger::batches`; `lib.rs` and `main.rs` are the root). Every `crate::`, `super::` and
`self::` path (in `use` items, grouped ones included, and inline in code) is resolved to the
module it names. A reference from `a::x` to `b::y` is an edge `a -> b` among the top-level
modules, and one from `d::x` to `d::y` an edge `x -> y` among the modules of `d`: each
directory level is checked on its own. A module's own parent (its `mod.rs`) is not a sibling,
so a child using what its parent holds is never a cycle.

Crates listed in scripts/module-cycles-allowed.txt are reported but do not fail the check.
Standard library only.
"""

from __future__ import annotations

import glob
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_FILE = ROOT / "scripts" / "module-cycles-allowed.txt"

# Comments, then string and char literals, are blanked before paths are read.
LITERALS = re.compile(
    r"""
      //[^\n]*
    | /\*.*?\*/
    | (?<!\w)b?r(?P<hashes>\#*)".*?"(?P=hashes)
    | (?<!\w)b?"(?:\\.|[^"\\])*"
    | (?<!\w)b?'(?:\\.|[^'\\\n])'
    """,
    re.S | re.X,
)
TOKENS = re.compile(
    r"""
      (?P<use>\buse\b[^;]*;)
    | (?P<mod>\bmod\s+(?P<modname>[A-Za-z_]\w*)\s*\{)
    | (?P<open>\{)
    | (?P<close>\})
    | (?P<path>(?<![\w$])(?:crate|super|self)(?:\s*::\s*(?:[A-Za-z_]\w*))+)
    """,
    re.X,
)
USE_TOKENS = re.compile(r"::|[{},*;]|[A-Za-z_]\w*")


def blank(match: re.Match) -> str:
    # Keep newlines so nothing else shifts meaningfully.
    return re.sub(r"[^\n]", " ", match.group(0))


def strip_literals(text: str) -> str:
    return LITERALS.sub(blank, text)


def parse_use(statement: str) -> list[tuple[list[str], str | None]]:
    """Expands `use a::{b, c::{self, d}, e as f, g::*};` into its paths, each with the name it
    brings into scope: (a::b, b), (a::c, c), (a::c::d, d), (a::e, f), (a::g, None)."""
    tokens = USE_TOKENS.findall(statement)
    # Drop the visibility (`pub`, `pub(crate)`: its parentheses are not tokens) and `use`.
    if "use" in tokens:
        tokens = tokens[tokens.index("use") + 1 :]
    found: list[tuple[list[str], str | None]] = []
    pos = 0

    def tree(prefix: list[str]) -> None:
        nonlocal pos
        segments = list(prefix)
        while pos < len(tokens):
            t = tokens[pos]
            if t == "::":
                pos += 1
            elif t == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos] != "}":
                    if tokens[pos] == ",":
                        pos += 1
                        continue
                    tree(segments)
                pos += 1  # the closing brace
                return
            elif t in (",", "}", ";"):
                break
            elif t == "*":
                pos += 1
                found.append((segments, None))
                return
            elif t == "as":
                alias = tokens[pos + 1] if pos + 1 < len(tokens) else None
                pos += 2
                found.append((segments, None if alias == "_" else alias))
                return
            else:
                pos += 1
                if t != "self" or not segments:
                    segments.append(t)
        if segments:
            found.append((segments, segments[-1]))

    tree([])
    return [(p, a) for p, a in found if p]


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return tuple(parts)


def resolve(
    path: list[str], here: tuple[str, ...], modules: set[tuple[str, ...]]
) -> tuple[str, ...] | None:
    """The absolute path `path` names from module `here`, or None if it is not in this crate
    (another crate's, or the standard library's)."""
    head, rest = path[0], path[1:]
    if head == "crate":
        base: tuple[str, ...] = ()
    elif head == "self":
        base = here
    elif head == "super":
        base = here[:-1]
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
    elif here + (head,) in modules:
        # A path relative to the current module (2018 edition): one of its children.
        base, rest = here, path
    else:
        return None
    return base + tuple(s for s in rest if s != "self")


Aliases = dict[tuple[str, ...], dict[str, tuple[str, ...]]]


def target_module(
    path: tuple[str, ...], modules: set[tuple[str, ...]], aliases: Aliases
) -> tuple[str, ...]:
    """The module that defines what `path` names, following `use` re-exports: `crate::Foo`
    where the root has `pub use config::Foo` is a reference to `config`."""
    module: tuple[str, ...] = ()
    rest = list(path)
    for _ in range(32):  # re-export chains are short; this bounds a malformed loop
        while rest and module + (rest[0],) in modules:
            module += (rest.pop(0),)
        if not rest or rest[0] not in aliases.get(module, {}):
            return module
        target = aliases[module][rest[0]]
        if target == module + (rest[0],):
            return module
        module, rest = (), list(target) + rest[1:]
    return module


def scan(text: str, module: tuple[str, ...]):
    """Yields, in order, ("mod", inline module path) and ("ref", module the reference is made
    from, path, name a `use` brings into scope or None) for one file."""
    text = strip_literals(text)
    stack: list[tuple[str, int]] = []  # inline modules: (name, brace depth inside it)
    depth = 0
    for m in TOKENS.finditer(text):
        here = module + tuple(name for name, _ in stack)
        if m.group("use"):
            for path, alias in parse_use(m.group("use")):
                yield "ref", here, path, alias
        elif m.group("mod"):
            depth += 1
            stack.append((m.group("modname"), depth))
            yield "mod", here + (m.group("modname"),), None, None
        elif m.group("open"):
            depth += 1
        elif m.group("close"):
            if stack and stack[-1][1] == depth:
                stack.pop()
            depth -= 1
        elif m.group("path"):
            yield "ref", here, re.sub(r"\s+", "", m.group("path")).split("::"), None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def crate_cycles(src: Path) -> list[str]:
    """One line per cycle: the directory level and its modules, with the edges inside it."""
    files = [f for f in sorted(src.rglob("*.rs")) if f.relative_to(src).parts[0] != "bin"]
    scanned = [
        list(scan(f.read_text(encoding="utf-8", errors="replace"), module_of(src, f)))
        for f in files
    ]
    modules = {module_of(src, f) for f in files}
    modules |= {item[1] for items in scanned for item in items if item[0] == "mod"}
    refs = [(here, path, alias) for items in scanned for kind, here, path, alias in items if kind == "ref"]
    aliases: Aliases = {}
    for here, path, alias in refs:
        target = resolve(path, here, modules)
        if alias is not None and target is not None:
            aliases.setdefault(here, {})[alias] = target
    # Per directory level (the common parent): sibling -> sibling edges.
    graphs: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for here, path, _ in refs:
        target = resolve(path, here, modules)
        if target is None:
            continue
        target = target_module(target, modules, aliases)
        for level in range(min(len(here), len(target))):
            if here[level] != target[level]:
                graph = graphs.setdefault(here[:level], {})
                graph.setdefault(here[level], set()).add(target[level])
                break
    lines = []
    for parent in sorted(graphs):
        graph = graphs[parent]
        for cycle in find_cycles(graph):
            where = "::".join(("crate",) + parent)
            members = set(cycle)
            edges = ", ".join(
                f"{a} -> {b}" for a in cycle for b in sorted(graph.get(a, ())) if b in members
            )
            lines.append(f"in {where}: {{{', '.join(cycle)}}} ({edges})")
    return lines


def workspace_crates() -> list[tuple[str, Path]]:
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    crates = []
    for pattern in manifest["workspace"]["members"]:
        for member in sorted(glob.glob(str(ROOT / pattern))):
            cargo = Path(member) / "Cargo.toml"
            if not cargo.is_file():
                continue
            name = tomllib.loads(cargo.read_text()).get("package", {}).get("name")
            src = Path(member) / "src"
            if name and src.is_dir():
                crates.append((name, src))
    return crates


def allowed_crates() -> set[str]:
    if not ALLOWED_FILE.is_file():
        return set()
    names = set()
    for line in ALLOWED_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line)
    return names


def main() -> int:
    allowed = allowed_crates()
    failing = []
    for name, src in workspace_crates():
        cycles = crate_cycles(src)
        if not cycles:
            if name in allowed:
                print(
                    f"note: {name} has no module cycle any more: remove it from "
                    f"{ALLOWED_FILE.relative_to(ROOT)}"
                )
            continue
        status = "allowed for now" if name in allowed else "FAIL"
        print(f"{name} ({src.relative_to(ROOT)}): module cycle(s), {status}")
        for line in cycles:
            print(f"  {line}")
        if name not in allowed:
            failing.append(name)
    if failing:
        print(
            f"module cycles in: {', '.join(failing)}. Make the modules depend one way "
            "(move the shared type into the lower module, or pass a narrow handle).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
