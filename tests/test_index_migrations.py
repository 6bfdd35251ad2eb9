"""The index's migrations, split by table family across index/, still make the schema
they made when they shipped as one list: same names, same order, same tables.

The expected schema is a digest of ``sqlite_master`` as the shipped
migrations built it (before their SQL moved beside each table's module); an
index left at any earlier migration upgrades to exactly that schema.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from livedata_cli.index.core import MIGRATIONS, Index

SHIPPED = [
    "0001_versions", "0002_entry_kinds", "0003_search", "0004_pending_uploads", "0005_audit_trail",
    "0006_shares", "0007_file_passwords", "0008_pinned_keys", "0009_packs", "0010_audit_unmirrored",
    "0011_pinned_signing_keys", "0012_pending_part_macs", "0013_journal_chain", "0014_version_numbers",
    "0015_newest_listing", "0016_hash_by_age",
]
# sha256 of the schema (type, name, table, SQL with whitespace folded; the
# migrations table left out) that the shipped 16 migrations build: 41 objects.
SCHEMA_SHA256 = "4fd537e6bdbd29a9b3492b5ee6a570cb74deea329eac9d3b9787f01268a4652c"


def _schema(db: sqlite3.Connection) -> tuple[str, int]:
    rows = db.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name != 'migrations' ORDER BY type, name"
    ).fetchall()
    dump = "\n".join(f"{t} {n} {tb} {' '.join((s or '').split())}" for t, n, tb, s in rows)
    return hashlib.sha256(dump.encode()).hexdigest(), len(rows)


def test_the_migrations_keep_their_names_and_order() -> None:
    assert [name for name, _sql in MIGRATIONS] == SHIPPED


def test_a_fresh_index_gets_the_schema_the_shipped_migrations_made(tmp_path: Path) -> None:
    index = Index(tmp_path / "index.sqlite")
    try:
        assert _schema(index.db) == (SCHEMA_SHA256, 41)
    finally:
        index.close()


@pytest.mark.parametrize("done", range(1, len(SHIPPED)))
def test_an_index_left_at_an_earlier_migration_upgrades_to_the_same_schema(tmp_path: Path, done: int) -> None:
    path = tmp_path / "index.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY)")
    for name, sql in MIGRATIONS[:done]:
        for statement in sql.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO migrations (name) VALUES (?)", (name,))
    db.close()
    index = Index(path)
    try:
        assert _schema(index.db) == (SCHEMA_SHA256, 41)
        assert [r[0] for r in index.db.execute("SELECT name FROM migrations ORDER BY rowid")] == SHIPPED
    finally:
        index.close()
