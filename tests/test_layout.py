"""The layering of the package, read from its imports (lazy ones too).

Each module belongs to a layer; a module imports only its own layer and those
below it, so a newcomer can read the package bottom up.  Import circles are
allowed only where they are listed below, each with its reason; a new one fails
this test and names the files.

Imports under ``if TYPE_CHECKING:`` never run: they count for the layering (a
type named from a layer above is still an arrow that runs up) but not for the
circles (``vault/upload.py`` names the ``Vault`` it takes, which ``core.py``
never imports back at run time).
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
    ("environment", ("settings", "envfail", "netwait", "interrupt", "locking", "keys.oskeyring", "aws", "writeback", "forked", "localfs")),
    ("stores", ("stores", "remote", "keys.kms")),
    ("index", ("index", "packs", "journal", "state", "keys")),
    ("vault", ("vault", "audit", "share_recipient")),
    ("front", ("cli", "server", "_start", "quick", "entry", "__main__", "doctor", "mount", "sharepage")),
]

# Circles that are allowed, and why.  Each is a set of modules that import
# each other (a strongly connected component of the import graph).
ALLOWED_CIRCLES: dict[frozenset[str], str] = {
    frozenset({"stores", "stores.api", "stores.local", "stores.s3"}): (
        "the package's open_store() picks a store class; the classes share its check_key()"
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


def _type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): a block that never runs."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(tree: ast.AST, *, typing: bool) -> list[ast.AST]:
    """Every node of ``tree``; without ``typing``, none under ``if TYPE_CHECKING:``
    (its ``else:`` branch runs, so it stays)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if not typing and _type_checking(node):
            assert isinstance(node, ast.If)
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports(name: str, path: Path, known: dict[str, Path], *, typing: bool = True) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk(ast.parse(path.read_text()), typing=typing):
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


@functools.cache
def _graph(*, typing: bool = True) -> dict[str, set[str]]:
    """Who imports whom; with ``typing``, imports for type checkers only too."""
    known = _modules()
    return {name: _imports(name, path, known, typing=typing) for name, path in known.items()}


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
    graph = _graph(typing=False)
    unexplained = []
    for circle in _circles(graph):
        short = frozenset(_short(m) for m in circle)
        if short in ALLOWED_CIRCLES or all(s.startswith(("server.", "convert.")) for s in short):
            continue
        unexplained.append(", ".join(graph_path(m) for m in sorted(circle)))
    assert not unexplained, "modules that import each other:\n" + "\n".join(unexplained)


def test_the_listed_circles_still_exist() -> None:
    """An allowed circle that is gone is taken off the list, so it cannot come back unnoticed."""
    present = {frozenset(_short(m) for m in c) for c in _circles(_graph(typing=False))}
    assert not set(ALLOWED_CIRCLES) - present, set(ALLOWED_CIRCLES) - present


def graph_path(module: str) -> str:
    return str(_modules()[module].relative_to(ROOT.parent))


def test_imports_for_type_checkers_only_make_no_circle(tmp_path: Path) -> None:
    """``if TYPE_CHECKING:`` imports count for the layers, not for the circles;
    its ``else:`` branch and every other import count for both."""
    known = {"livedata_cli.a": tmp_path / "a.py", "livedata_cli.b": tmp_path / "b.py", "livedata_cli.c": tmp_path / "c.py"}
    known["livedata_cli.a"].write_text(
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "if TYPE_CHECKING:\n    from livedata_cli.b import B\n"
        "if typing.TYPE_CHECKING:\n    pass\nelse:\n    from livedata_cli import c\n"
        "def f() -> None:\n    if TYPE_CHECKING:\n        import livedata_cli.c\n"
    )
    assert _imports("livedata_cli.a", known["livedata_cli.a"], known) == {"livedata_cli.b", "livedata_cli.c"}
    assert _imports("livedata_cli.a", known["livedata_cli.a"], known, typing=False) == {"livedata_cli.c"}


def test_the_vault_core_imports_no_use_case() -> None:
    """``vault/core.py`` is the Vault and its state; the use cases take a Vault
    and are called by the commands, never by the core.  (The core does use two
    parts of use-case modules, which import it for type checkers only: the
    opener of file password envelopes, for data keys, and the deletion of share
    links' copies, for ``rm --purge``.)"""
    graph = _graph(typing=False)
    use_cases = {"upload", "download", "reading", "maintenance", "share_to_account", "restore"}
    reached: set[str] = set()
    todo = ["livedata_cli.vault.core"]
    while todo:
        m = todo.pop()
        for d in graph[m]:
            if d not in reached:
                reached.add(d)
                todo.append(d)
    wrong = sorted(m for m in reached if m.startswith("livedata_cli.vault.") and m.rpartition(".")[2] in use_cases)
    assert not wrong, f"livedata_cli/vault/core.py reaches the use cases {wrong} when it runs"

