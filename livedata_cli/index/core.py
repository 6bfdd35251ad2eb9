"""The local SQLite index: a cache of the journals held in the store.

Everything here can be rebuilt by ``livedata sync`` from the store and the
vault key, so losing it loses nothing.  Two processes may write at once (two
cron jobs): the database runs in WAL mode, waits up to 30 s for a lock, and
every write transaction starts with ``BEGIN IMMEDIATE`` so none is lost to
"database is locked".

The standard library's ``sqlite3`` is used directly: it is already loaded,
where a wrapper library would cost tens of milliseconds on every start-up.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from livedata_cli.errors import IndexReadOnly
from livedata_cli.index import audit, damage, files, journals, pending
from livedata_cli.index.files import Files, Seen, Version
from livedata_cli.index.journals import Journals
from livedata_cli.index.pending import PendingUpload, PendingUploads

__all__ = ["MIGRATIONS", "Index", "PendingUpload", "PendingUploads", "Seen", "Version", "others_writing"]

# Free-form settings and markers of this index (``rebuild``, chain ids, heads...).
META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

# Named, ordered migrations, applied on open.  Never edit one that has shipped:
# add the next.  Each table family keeps its SQL in its own module (files,
# journals, pending, audit); this list is the one order they are applied in.
MIGRATIONS: list[tuple[str, str]] = [
    ("0001_versions", ";".join((files.VERSIONS, journals.JOURNALS, META))),
    ("0002_entry_kinds", files.ENTRY_KINDS),
    ("0003_search", files.SEARCH),
    ("0004_pending_uploads", pending.UPLOADS),
    ("0005_audit_trail", audit.TRAIL),
    (
        # Share links this vault made (livedata_cli/vault/share_links.py), from "share"
        # and "unshare" journal records; never their secrets or keys.
        "0006_shares",
        """
        CREATE TABLE shares (
            id TEXT PRIMARY KEY,
            vid TEXT NOT NULL,
            path TEXT NOT NULL,
            object TEXT NOT NULL,
            kind TEXT NOT NULL,
            created REAL NOT NULL,
            expires REAL,
            max_downloads INTEGER,
            password INTEGER NOT NULL DEFAULT 0,
            location TEXT NOT NULL DEFAULT '',
            revoked REAL
        )
        """,
    ),
    ("0007_file_passwords", files.FILE_PASSWORDS),
    (
        # Other accounts' X25519 public keys, pinned on first use by
        # 'share --to' (livedata_cli/vault/share_links.py): a later change is refused.
        "0008_pinned_keys",
        """
        CREATE TABLE pinned_keys (
            server TEXT NOT NULL,
            email TEXT NOT NULL,
            public_key TEXT NOT NULL,
            first_seen REAL NOT NULL,
            PRIMARY KEY (server, email)
        )
        """,
    ),
    ("0009_packs", files.PACKS),
    ("0010_audit_unmirrored", audit.UNMIRRORED),
    (
        # Senders' Ed25519 signing keys, pinned on first use by the recipient
        # of a 'share --to' (livedata_cli/vault/share_to_account.py): a later change is refused.
        "0011_pinned_signing_keys",
        """
        CREATE TABLE pinned_signing_keys (
            server TEXT NOT NULL,
            email TEXT NOT NULL,
            signing_key TEXT NOT NULL,
            first_seen REAL NOT NULL,
            PRIMARY KEY (server, email)
        )
        """,
    ),
    ("0012_pending_part_macs", pending.PART_MACS),
    ("0013_journal_chain", journals.CHAIN),
    ("0014_version_numbers", files.VERSION_NUMBERS),
    ("0015_newest_listing", files.NEWEST_LISTING),
    ("0016_hash_by_age", files.HASH_BY_AGE),
]

# Write transactions open in this process, by thread: a test's pause point
# waits until no other thread holds one (housekeeping.pause_point).
_open_writes: dict[int, int] = {}
_open_writes_lock = threading.Lock()


def _writing(delta: int) -> None:
    me = threading.get_ident()
    with _open_writes_lock:
        _open_writes[me] = _open_writes.get(me, 0) + delta
        if not _open_writes[me]:
            del _open_writes[me]


# Index files this process holds open, and how many times.  POSIX drops all of
# a process's locks on a file when any descriptor of it closes: reading the
# header of a file SQLite already has open here (a second connection, as the
# journal thread makes) would release SQLite's locks, and another process
# closing its own connection would then take this one for gone, checkpoint and
# delete the write-ahead log under it.  That corrupts the index.
_held: dict[str, int] = {}
_held_lock = threading.Lock()


def _hold(path: Path, delta: int) -> int:
    """Count an open (+1) or a close (-1) of ``path``; returns the count before."""
    key = os.path.realpath(path)
    with _held_lock:
        before = _held.get(key, 0)
        if before + delta:
            _held[key] = before + delta
        else:
            _held.pop(key, None)
    return before


def others_writing() -> bool:
    """Whether another thread of this process is inside an index write transaction."""
    me = threading.get_ident()
    with _open_writes_lock:
        return any(t != me for t in _open_writes)


class Index(Files, Journals):
    """The local SQLite cache: its connection, migrations, meta, and journal replay;
    the queries of each table family come from their modules (Files, Journals)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self.path = path
        self.read_only = False  # a read-only home: queries only (damage.connect_read_only)
        self.replaces: Index | None = None  # a rebuild's new index: the one it replaces
        self.swap_to: Path | None = None  # a rebuild's new index: where it goes when complete
        self.damaged_tables: list[str] = []  # a rebuild's: tables of the old index it could not read
        from livedata_cli.index.at_rest import check_unlocked

        check_unlocked(path)  # never a fresh empty index beside an encrypted one
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                # Names and tags are plaintext here: the file is for this user only.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as e:
            raise IndexReadOnly(f"cannot create the index {path}: {e.strerror}") from None
        first = _hold(path, +1) == 0
        try:
            if first:  # not again under another connection of this process: it would drop its locks
                damage.check_header(path)
            self._connect(path)
        except BaseException:
            _hold(path, -1)
            raise
        self._closed = False

    def _connect(self, path: Path) -> None:
        try:
            # Upload workers look up content hashes from their threads, under _lock.
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.OperationalError as e:
            if "locked" in str(e):
                raise
            from livedata_cli import envfail

            full = envfail.translate(e)  # a full home is no damage
            if full is not None and not damage.read_only_error(e):
                raise full from None
            if not damage.read_only_error(e) or (os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)):
                raise damage.damaged(path, str(e)) from None
            self.db = damage.connect_read_only(path)  # ls, search and download still work
            self.db.row_factory = sqlite3.Row
            self.read_only = True
        except sqlite3.DatabaseError as e:
            from livedata_cli import envfail

            known = envfail.translate(e)  # a full or read-only home, not a damaged index
            if known is not None:
                raise known from None
            raise damage.damaged(path, str(e)) from None

    def close(self) -> None:
        self.db.close()
        if not self._closed:
            self._closed = True
            _hold(self.path, -1)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once so concurrent writers queue."""
        if self.read_only:
            raise IndexReadOnly(
                f"the index {self.path} is read-only here: this command needs to write it (make {self.path.parent} writable)"
            )
        self.db.execute("BEGIN IMMEDIATE")
        _writing(+1)
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            _writing(-1)

    def _migrate(self) -> None:
        with self.write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)")
            done = {r[0] for r in db.execute("SELECT name FROM migrations")}
            for name, sql in MIGRATIONS:
                if name not in done:
                    for statement in sql.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute("INSERT INTO migrations (name) VALUES (?)", (name,))

    # -- meta ------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


    # -- journal replay ----------------------------------------------------
    def apply(
        self,
        journal: str,
        records: Iterable[dict[str, Any]],
        *,
        link: journals.Link | None = None,
        failed: list[str] | None = None,
        covers: tuple[dict[str, int], bool] | None = None,
    ) -> bool:
        """Apply one journal's records atomically; False if it was applied already.
        Runs of "put" records (a backup's thousands of files) go in bulk.

        ``link`` is the journal's (writer, counter, hash, predecessor's hash).
        With ``failed`` given, a record that cannot be applied is rolled back
        alone and described there, and the rest of the journal still applies;
        without it, the whole journal fails.  ``covers`` (a snapshot's: counters
        per writer, and whether journals made before chains are covered) drops
        what the covered journals put first: the snapshot restates it."""
        with self.write() as db:
            if journals.applied(db, journal):
                return False
            if covers is not None:
                files.supersede(db, covers)
            files.replay(db, journal, records, failed)
            journals.record(db, journal, link)
        return True

    def clear(self) -> None:
        with self.write() as db:
            files.clear(db)
            journals.clear(db)
            files.forget_numbers(db)
            db.execute("DELETE FROM meta WHERE key IN ('rebuild', 'bad_records', 'damaged_journals', 'snapshot_floors')")


# -- shares (their tables are 0006, 0008 and 0011 above) -----------------------------
def shares(db: sqlite3.Connection) -> Iterator[sqlite3.Row]:
    """Every share link this vault made, oldest first (what a snapshot restates)."""
    yield from db.execute("SELECT * FROM shares ORDER BY created, id")


def live_store_shares(db: sqlite3.Connection) -> Iterator[tuple[str, str, float | None]]:
    """(id, vid, expires) of every unrevoked share whose copy lives in the store (S3, API)."""
    yield from db.execute("SELECT id, vid, expires FROM shares WHERE revoked IS NULL AND kind IN ('s3', 'api')")

