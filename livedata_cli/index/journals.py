"""Journals: which of the store's journals this index has applied, and their chain.

The ``journals`` table names every applied journal with its writer, counter,
own hash and predecessor's hash (the journal chain of livedata_cli/state.py);
its migrations and queries live here, mixed into
:class:`livedata_cli.index.core.Index` as :class:`Journals`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager

# -- migrations (applied in order by livedata_cli/index/core.py) -------------------
JOURNALS = "CREATE TABLE journals (name TEXT PRIMARY KEY)"

# The journal chain (livedata_cli/state.py): each applied journal's
# writer, counter, own hash and predecessor's hash; NULL for journals
# made before chains.
CHAIN = """
        ALTER TABLE journals ADD COLUMN writer TEXT;
        ALTER TABLE journals ADD COLUMN seq INTEGER;
        ALTER TABLE journals ADD COLUMN hash TEXT;
        ALTER TABLE journals ADD COLUMN prev TEXT;
        CREATE INDEX journals_chain ON journals(writer, seq) WHERE writer IS NOT NULL;
        CREATE INDEX journals_hash ON journals(hash) WHERE hash IS NOT NULL
        """

Link = tuple[str | None, int | None, str | None, str | None]  # writer, counter, hash, predecessor's hash


class Journals:
    """Queries over the applied journals (a part of :class:`livedata_cli.index.core.Index`)."""

    db: sqlite3.Connection

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # Index.write

    def applied_journals(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM journals")}

    def journal_links(self) -> dict[str, Link]:
        """Every applied journal: name -> (writer, counter, hash, predecessor's hash)."""
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in self.db.execute("SELECT name, writer, seq, hash, prev FROM journals")}

    def forget_journals(self, names: Iterable[str]) -> None:
        """Journals a snapshot covers and that are gone from the store."""
        with self.write() as db:
            db.execute("DELETE FROM journals WHERE name IN (SELECT value FROM json_each(?))", (json.dumps(list(names)),))


def applied(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM journals WHERE name = ?", (name,)).fetchone() is not None


def record(db: sqlite3.Connection, name: str, link: Link | None) -> None:
    """A journal is applied, with its place in the chain (None for one made before chains)."""
    writer, seq, hash_, prev = link or (None, None, None, None)
    db.execute(
        "INSERT INTO journals (name, writer, seq, hash, prev) VALUES (?, ?, ?, ?, ?)",
        (name, writer, seq, hash_, prev),
    )


def covered(db: sqlite3.Connection, floors: dict[str, int], legacy: bool) -> list[str]:
    """The applied journals a snapshot covers: each writer's up to its floor, and
    (``legacy``) those made before chains."""
    return [
        r[0]
        for r in db.execute("SELECT name, writer, seq FROM journals")
        if (r[1] is None and legacy) or (r[1] is not None and r[2] is not None and r[2] <= floors.get(r[1], 0))
    ]


def clear(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM journals")
