"""The layering of the package, read from its imports (lazy ones too).

Each module belongs to a layer; a module imports only its own layer and those
below it, so a newcomer can read the package bottom up.  Import circles are
allowed only where they are listed below, each with its reason; a new one fails
this test and names the files.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "livedata_cli"

# Lowest first.  Every module is named here (a package names all its modules);
# cli/, server/ and the entry points are on top.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("basics", ("livedata_cli", "errors", "sizes", "names", "shellwords", "mime", "notices")),
    ("crypto", ("crypto",)),
    ("environment", ("settings", "envfail", "netwait", "interrupt", "locking", "keys.oskeyring", "aws", "writeback")),
    ("stores", ("stores", "remote", "keys.kms")),
    ("index", ("index", "localfs", "packs", "journal", "state", "keys")),
    ("vault", ("vault", "audit")),
    ("front", ("cli", "server", "_start", "quick", "entry", "__main__", "doctor", "mount", "sharepage")),
]

# Circles that are allowed, and why.  Each is a set of modules that import
# each other (a strongly connected component of the import graph).
ALLOWED_CIRCLES: dict[frozenset[str], str] = {
    frozenset({"stores", "stores.api", "stores.local", "stores.s3"}): (
        "the package's open_store() picks a store class; the classes share its check_key()"
    ),
    frozenset({"vault.compaction", "vault.core", "vault.maintenance", "vault.replay", "vault.reseal", "vault.restore", "vault.rotation"}): (
        "the vault's own parts: each takes the Vault it works for"
    ),
}


@functools.cache
def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                found.add(full if full in known else module)
    return {m for m in found if m in known and m != name}


def _short(module: str) -> str:
    return module.removeprefix("livedata_cli.") if module != "livedata_cli" else "livedata_cli"


def _layer(module: str) -> int:
    short = _short(module)
    for rank, (_label, prefixes) in enumerate(LAYERS):
        if any(short == p or short.startswith(p + ".") for p in prefixes):
            return rank
    return next(rank for rank, (label, _p) in enumerate(LAYERS) if label == "vault")


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    graph = _graph()
    wrong = [
        f"{graph_path(m)} ({LAYERS[_layer(m)][0]}) imports {_short(d)} ({LAYERS[_layer(d)][0]})"
        for m, deps in sorted(graph.items())
        for d in sorted(deps)
        if _layer(d) > _layer(m)
    ]
    assert not wrong, "imports that run up the layers:\n" + "\n".join(wrong)


def test_no_import_circles_but_the_listed_ones() -> None:
    graph = _graph()
    unexplained = []
    for circle in _circles(graph):
        short = frozenset(_short(m) for m in circle)
        if short in ALLOWED_CIRCLES or all(s.startswith(("server.", "convert.")) for s in short):
            continue
        unexplained.append(", ".join(graph_path(m) for m in sorted(circle)))
    assert not unexplained, "modules that import each other:\n" + "\n".join(unexplained)


def test_the_listed_circles_still_exist() -> None:
    """An allowed circle that is gone is taken off the list, so it cannot come back unnoticed."""
    present = {frozenset(_short(m) for m in c) for c in _circles(_graph())}
    assert not set(ALLOWED_CIRCLES) - present, set(ALLOWED_CIRCLES) - present


def graph_path(module: str) -> str:
    return str(_modules()[module].relative_to(ROOT.parent))
