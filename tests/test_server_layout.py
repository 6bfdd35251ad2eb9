"""The server package's own rules, read from its code and its routes.

* Every table is defined in ``server/db.py`` beside the migration that creates
  it; no router defines one, and ``db.py`` imports no router.
* A route that works on one of the caller's objects says so in its signature
  (an ``Owned…`` dependency of ``server/deps.py``), the one place that answers
  404 for another account's id; no router keeps its own copy of that check.
* A database migrated from nothing holds every table and column the
  definitions name.
* No two server modules import each other, even through others (the
  import graph of ``tests/test_layout.py``, lazy imports included).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SERVER = Path(__file__).resolve().parent.parent / "livedata_cli" / "server"


def _calls(tree: ast.AST) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            out.append((name, node.lineno))
    return out


def test_no_server_module_but_db_defines_a_table() -> None:
    wrong = [
        f"livedata_cli/server/{path.name}:{line} calls {name}()"
        for path in sorted(SERVER.glob("*.py"))
        if path.name != "db.py"
        for name, line in _calls(ast.parse(path.read_text()))
        if name in ("Table", "MetaData")
    ]
    assert not wrong, "tables belong in server/db.py:\n" + "\n".join(wrong)


def test_db_imports_no_other_server_module() -> None:
    tree = ast.parse((SERVER / "db.py").read_text())
    found = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("livedata_cli")
    ]
    assert not found, "server/db.py imports back from the package:\n" + "\n".join(found)


def test_no_router_keeps_its_own_ownership_check() -> None:
    wrong = [
        f"livedata_cli/server/{path.name}:{node.lineno} defines {node.name}()"
        for path in sorted(SERVER.glob("*.py"))
        if path.name != "deps.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.lstrip("_") == "owned"
    ]
    assert not wrong, "use the Owned… dependencies of server/deps.py:\n" + "\n".join(wrong)


# Routes that take an object's id in their path without being its owner's, and why.
NOT_THE_OWNERS = {
    ("GET", "/shares/{share_id}/public"): "a link holder's view, checked by the share's verifier",
    ("GET", "/shares/{share_id}/download"): "a link holder's download, checked by the share's verifier",
    ("GET", "/shares/incoming/{share_id}/download"): "the recipient's download of a share addressed to her",
    ("GET", "/s/{share_id}"): "the page a share link opens in a browser (the same for every id)",
}


def _dependency_calls(dependant: Any) -> set[Any]:
    found = set()
    for sub in dependant.dependencies:
        found.add(sub.call)
        found |= _dependency_calls(sub)
    return found


def _routes() -> list[Any]:
    import importlib

    from fastapi.routing import APIRoute, APIRouter

    found = []
    for path in sorted(SERVER.glob("*.py")):
        module = importlib.import_module(f"livedata_cli.server.{path.stem}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            found += [r for r in router.routes if isinstance(r, APIRoute)]
    return found


def test_every_route_on_an_id_of_the_caller_takes_it_as_an_owned_object() -> None:
    from livedata_cli.server import deps

    owner_of = {
        "file_id": deps._owned_file,
        "share_id": deps._owned_share,
        "job_id": deps._owned_conversion,
        "upload_id": deps._owned_upload,
    }
    routes = _routes()
    checked, wrong = 0, []
    for route in routes:
        for param, dependency in owner_of.items():
            if "{" + param + "}" not in route.path:
                continue
            for method in sorted(route.methods):
                if (method, route.path) in NOT_THE_OWNERS:
                    continue
                checked += 1
                if dependency not in _dependency_calls(route.dependant):
                    wrong.append(f"{method} {route.path} ({route.endpoint.__module__}.{route.endpoint.__name__})")
    assert not wrong, "routes on an id of the caller without an Owned… dependency:\n" + "\n".join(wrong)
    assert checked >= 20, checked
    for method, path in NOT_THE_OWNERS:
        assert any(r.path == path and method in r.methods for r in routes), path


def test_a_migrated_database_holds_every_defined_table_and_column(tmp_path: Path) -> None:
    from livedata_cli.server import db

    database = db.Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        database.migrate()
        defined = [
            t for m in (db.metadata, db.file_locks_metadata, db.keys_metadata, db.recipients_metadata,
                        db.uploads_metadata)
            for t in m.tables.values()
        ]
        with database.read() as conn:
            inspector = sa.inspect(conn)
            have = set(inspector.get_table_names())
            for table in defined:
                assert table.name in have, table.name
                columns = {c["name"] for c in inspector.get_columns(table.name)}
                assert columns == {c.name for c in table.columns}, table.name
        every_table = {t.name for t in defined} | {"schema_migrations"}
        assert have == every_table, have ^ every_table
    finally:
        database.dispose()


def test_no_import_circles_inside_the_server() -> None:
    from test_layout import _circles, _graph, graph_path

    graph = _graph()
    server = {m: {d for d in deps if d.startswith("livedata_cli.server.")}
              for m, deps in graph.items() if m.startswith("livedata_cli.server.")}
    found = [", ".join(graph_path(m) for m in sorted(circle)) for circle in _circles(server)]
    assert not found, "server modules that import each other:\n" + "\n".join(found)
