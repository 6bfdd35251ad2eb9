"""No SQL outside ``index/``: each table's SQL lives beside its migration.

Read from the source (as tests/test_layout.py reads the imports): a module
outside ``index/`` that calls ``execute``, ``executemany`` or
``executescript``, or holds the text of an SQL statement, fails this test,
which names the file and the line.  ``server/`` has its own database (its
tables in ``server/db.py``) and ``convert/queue.py`` its own queue file:
neither is the index.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "livedata_cli"

# Not the local index: their own databases.
OWN_DATABASES = ("index/", "server/", "convert/queue.py")

CALLS = ("execute", "executemany", "executescript")
SQL = re.compile(
    r"\bSELECT\s+(DISTINCT\s+)?[\w*(\"'].*?\bFROM\s"
    r"|\bINSERT\s+(OR\s+\w+\s+)?INTO\s+\w"
    r"|\bUPDATE\s+\w+\s+SET\s"
    r"|\bDELETE\s+FROM\s+\w"
    r"|\bCREATE\s+(UNIQUE\s+)?(TABLE|INDEX|VIRTUAL\s+TABLE|TRIGGER|VIEW)\s"
    r"|\b(DROP|ALTER)\s+(TABLE|INDEX)\s"
    r"|\bPRAGMA\s+\w+"
    r"|\bBEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED)\b"
    r"|\b(SAVEPOINT|RELEASE|ROLLBACK\s+TO)\s+\w",
    re.DOTALL,
)


def sql_in(source: str) -> list[tuple[int, str]]:
    """(line, what) for every SQL call and every SQL text in a module's source."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CALLS:
            found.append((node.lineno, f"calls .{node.func.attr}()"))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if SQL.search(text):
                found.append((node.lineno, f"holds SQL text {text[:60]!r}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append((node.lineno, f"holds SQL text {node.value[:60]!r}"))
    return sorted(set(found))


def _checked() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(OWN_DATABASES):
            out[rel] = path
    return out


def test_no_module_outside_index_runs_or_holds_sql() -> None:
    wrong = [
        f"livedata_cli/{rel}:{line}: {what}"
        for rel, path in _checked().items()
        for line, what in sql_in(path.read_text())
    ]
    assert not wrong, "SQL outside livedata_cli/index/ (put it in the index module of its table):\n" + "\n".join(wrong)



def test_the_index_package_does_hold_the_sql() -> None:
    """The check sees the SQL where it is meant to be (it is not blind)."""
    for rel in ("index/core.py", "index/files.py", "index/journals.py", "index/pending.py", "index/audit.py"):
        assert sql_in((ROOT / rel).read_text()), rel


def test_the_check_catches_each_form() -> None:
    caught = {
        'db.execute("SELECT 1")': True,
        "cur.executemany(q, rows)": True,
        "conn.executescript(script)": True,
        "Q = 'SELECT vid, path FROM versions WHERE vid = ?'": True,
        'Q = f"DELETE FROM {table} WHERE id = ?"': True,
        "Q = 'INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)'": True,
        "Q = \"UPDATE versions SET tags = ? WHERE vid = ?\"": True,
        "Q = 'CREATE INDEX x ON versions(path)'": True,
        "Q = 'PRAGMA quick_check'": True,
        "msg = 'select the files from the list'": False,
        "msg = 'Select a version to delete from the trash'": False,
        "engine.run(jobs)": False,
    }
    for source, expected in caught.items():
        assert bool(sql_in(source)) is expected, source
