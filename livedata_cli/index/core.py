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

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from livedata_cli.errors import IndexReadOnly
from livedata_cli.index import recovery
from livedata_cli.names import for_json

# Named, ordered migrations, applied on open.  Never edit one that has shipped:
# add the next.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_versions",
        """
        CREATE TABLE versions (
            vid TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            object TEXT NOT NULL,
            "offset" INTEGER NOT NULL DEFAULT 0,
            length INTEGER NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL,
            mode INTEGER,
            mime TEXT,
            hash TEXT NOT NULL,
            header_hash TEXT NOT NULL,
            wrapped_key BLOB NOT NULL,
            key_id TEXT NOT NULL,
            created REAL NOT NULL,
            derived_from TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            notes TEXT NOT NULL DEFAULT '',
            deleted REAL,
            journal TEXT
        );
        CREATE INDEX versions_path ON versions(path, created);
        CREATE INDEX versions_hash ON versions(hash);
        CREATE INDEX versions_object ON versions(object);
        CREATE TABLE journals (name TEXT PRIMARY KEY);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    (
        "0002_entry_kinds",
        """
        ALTER TABLE versions ADD COLUMN kind TEXT NOT NULL DEFAULT 'file';
        ALTER TABLE versions ADD COLUMN target TEXT
        """,
    ),
    (
        # Full-text search over every version: one row per version, keyed by
        # versions.rowid (kept in step by _apply_record; VACUUM may renumber
        # rowids, so rerun 'sync --rebuild' after one).  The FTS table keeps its
        # own copy of the words, and is the only home of the opt-in "text" of a
        # file's contents.  versions.newest marks the newest version of each
        # path on each side of the trash, so search need not work it out per
        # match.  Rows already present are indexed here.
        "0003_search",
        """
        ALTER TABLE versions ADD COLUMN newest INTEGER NOT NULL DEFAULT 0;
        UPDATE versions SET newest = NOT EXISTS (
            SELECT 1 FROM versions w WHERE w.path = versions.path
            AND (w.deleted IS NULL) = (versions.deleted IS NULL)
            AND (w.created > versions.created OR (w.created = versions.created AND w.vid > versions.vid))
        );
        CREATE VIRTUAL TABLE search_fts USING fts5(
            vid UNINDEXED, path, name, tags, notes, mime, text,
            tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'
        );
        INSERT INTO search_fts (rowid, vid, path, name, tags, notes, mime, text)
            SELECT rowid, vid, path,
                   substr(path, length(rtrim(path, replace(path, '/', ''))) + 1),
                   (SELECT group_concat(value, ' ') FROM json_each(versions.tags)),
                   notes, mime, NULL
            FROM versions
        """,
    ),
    (
        # Multipart uploads in progress (S3), so a killed upload resumes: the
        # data key is wrapped by the vault key, never stored in the clear.
        "0004_pending_uploads",
        """
        CREATE TABLE pending_uploads (
            object TEXT PRIMARY KEY,
            upload_id TEXT NOT NULL,
            source TEXT NOT NULL,
            path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            wrapped_key BLOB NOT NULL,
            salt BLOB NOT NULL,
            part_size INTEGER NOT NULL,
            created REAL NOT NULL
        );
        CREATE INDEX pending_uploads_source ON pending_uploads(source, path)
        """,
    ),
    (
        # The audit trail (livedata_cli/audit/chain.py): chained, MACed events of
        # every machine; events waiting for the key to be chained; and which
        # store objects of other machines' chains were imported.
        "0005_audit_trail",
        """
        CREATE TABLE audit_events (
            vault TEXT NOT NULL,
            chain TEXT NOT NULL,
            seq INTEGER NOT NULL,
            time INTEGER NOT NULL,
            action TEXT NOT NULL,
            path TEXT NOT NULL DEFAULT '',
            object TEXT NOT NULL DEFAULT '',
            result TEXT NOT NULL,
            code INTEGER NOT NULL DEFAULT 0,
            host TEXT NOT NULL DEFAULT '',
            user TEXT NOT NULL DEFAULT '',
            version TEXT NOT NULL DEFAULT '',
            request_id TEXT NOT NULL DEFAULT '',
            command TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '',
            prev TEXT NOT NULL,
            mac TEXT NOT NULL,
            mirrored INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (vault, chain, seq)
        );
        CREATE INDEX audit_events_time ON audit_events(vault, time);
        CREATE TABLE audit_pending (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            vault TEXT NOT NULL,
            event TEXT NOT NULL
        );
        CREATE TABLE audit_objects (name TEXT PRIMARY KEY)
        """,
    ),
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
    (
        # Versions whose data key also needs a file password (crypto/filepass.py).
        "0007_file_passwords",
        """
        ALTER TABLE versions ADD COLUMN protected INTEGER NOT NULL DEFAULT 0
        """,
    ),
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
    (
        # Small files share pack objects (livedata_cli/packs.py): "object" stays
        # the member's own id (its data key is wrapped for it), "pack" names the
        # store object holding it at "offset".  NULL: the object is its own.
        "0009_packs",
        """
        ALTER TABLE versions ADD COLUMN pack TEXT;
        CREATE INDEX versions_pack ON versions(pack) WHERE pack IS NOT NULL
        """,
    ),
    (
        # The audit events not yet mirrored to the store: each command finds its
        # own few, not every event of the chain.
        "0010_audit_unmirrored",
        """
        CREATE INDEX audit_unmirrored ON audit_events(vault, chain, seq) WHERE mirrored = 0
        """,
    ),
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
    (
        # A keyed hash of each part's plaintext of a pending multipart upload: a
        # resume reuses the data key and salt only when the parts already sent
        # hold the same plaintext (livedata_cli/vault/resume.py).
        "0012_pending_part_macs",
        """
        CREATE TABLE pending_parts (
            object TEXT NOT NULL,
            part INTEGER NOT NULL,
            mac TEXT NOT NULL,
            PRIMARY KEY (object, part)
        )
        """,
    ),
    (
        # The journal chain (livedata_cli/state.py): each applied journal's
        # writer, counter, own hash and predecessor's hash; NULL for journals
        # made before chains.
        "0013_journal_chain",
        """
        ALTER TABLE journals ADD COLUMN writer TEXT;
        ALTER TABLE journals ADD COLUMN seq INTEGER;
        ALTER TABLE journals ADD COLUMN hash TEXT;
        ALTER TABLE journals ADD COLUMN prev TEXT;
        CREATE INDEX journals_chain ON journals(writer, seq) WHERE writer IS NOT NULL;
        CREATE INDEX journals_hash ON journals(hash) WHERE hash IS NOT NULL
        """,
    ),
    (
        # Stable version numbers: every version ever put, purged ones too, so a
        # version keeps its number after a prune.  An index from before this
        # has already forgotten its purged versions: the next sync rebuilds it
        # from the journals (meta "rebuild").
        "0014_version_numbers",
        """
        CREATE TABLE version_numbers (
            vid TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            created REAL NOT NULL
        );
        CREATE INDEX version_numbers_path ON version_numbers(path, created, vid);
        INSERT INTO version_numbers (vid, path, created) SELECT vid, path, created FROM versions;
        INSERT OR REPLACE INTO meta (key, value)
            SELECT 'rebuild', 'version numbers' WHERE EXISTS (SELECT 1 FROM journals)
        """,
    ),
    (
        # What a plain ``ls`` reads: the newest versions in path order, with the
        # columns its filter needs, so the listing never visits the table.
        "0015_newest_listing",
        "CREATE INDEX versions_newest ON versions(path, deleted, kind) WHERE newest",
    ),
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


def others_writing() -> bool:
    """Whether another thread of this process is inside an index write transaction."""
    me = threading.get_ident()
    with _open_writes_lock:
        return any(t != me for t in _open_writes)


# Recomputes versions.newest for every version of one path.
_RESTATE = """
    UPDATE versions SET newest = NOT EXISTS (
        SELECT 1 FROM versions w WHERE w.path = versions.path
        AND (w.deleted IS NULL) = (versions.deleted IS NULL)
        AND (w.created > versions.created OR (w.created = versions.created AND w.vid > versions.vid))
    ) WHERE path = ?
"""


@dataclass(frozen=True)
class Version:
    """One stored version of one vault path, as the index knows it."""

    vid: str
    path: str
    object: str
    offset: int
    length: int
    size: int
    mtime: float | None
    mode: int | None
    mime: str | None
    hash: str
    header_hash: str
    wrapped_key: bytes
    key_id: str
    created: float
    derived_from: str | None
    tags: tuple[str, ...]
    notes: str
    deleted: float | None
    kind: str = "file"  # file, symlink or dir (dir and symlink have no data object)
    target: str | None = None  # a symlink's target
    number: int = 0  # 1 for the oldest version of its path
    protected: bool = False  # the data key also needs a file password
    pack: str | None = None  # the pack object holding this version's container, if packed

    @property
    def store_key(self) -> str:
        """The store object that holds this version's container."""
        return f"data/{self.pack or self.object}"

    def to_json(self) -> dict[str, Any]:
        """The fields a user may see (no wrapped key)."""
        return {
            "id": self.vid,
            "path": for_json(self.path),
            "version": self.number,
            "object": self.object,
            "pack": self.pack,
            "offset": self.offset,
            "length": self.length,
            "size": self.size,
            "mtime": self.mtime,
            "mode": self.mode,
            "mime": self.mime,
            "hash": self.hash,
            "header_hash": self.header_hash,
            "key_id": self.key_id,
            "created": self.created,
            "derived_from": self.derived_from,
            "tags": list(self.tags),
            "notes": self.notes,
            "deleted": self.deleted,
            "kind": self.kind,
            **({"target": for_json(self.target or "")} if self.kind == "symlink" else {}),
            "password": self.protected,
        }


class Seen(NamedTuple):
    """The fields of a newest version that decide whether a file changed."""

    vid: str
    kind: str
    size: int
    mtime: float | None
    mode: int | None
    mime: str | None
    protected: bool
    tags: tuple[str, ...]


_COLUMNS = (
    "vid, path, object, \"offset\", length, size, mtime, mode, mime, hash, header_hash, "
    "wrapped_key, key_id, created, derived_from, tags, notes, deleted, kind, target, protected, pack"
)
# A version's number counts every version of its path ever put up to it,
# purged ones included (version_numbers), so numbers never move.
_NUMBER_OF = (
    "(SELECT COUNT(*) FROM version_numbers n WHERE n.path = versions.path "
    "AND (n.created < versions.created OR (n.created = versions.created AND n.vid <= versions.vid)))"
)
_NUMBERED = f"SELECT {_COLUMNS}, {_NUMBER_OF} AS number FROM versions"


def _version(row: sqlite3.Row) -> Version:
    """A Version from a row of _COLUMNS (plus "number" when numbered), by position:
    this runs once per file on every upload."""
    tags = row[15]
    return Version(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11],
        row[12], row[13], row[14],
        () if tags == "[]" else tuple(json.loads(tags)),
        row[16], row[17], row[18], row[19],
        row[22] if len(row) > 22 else 0,
        bool(row[20]),
        row[21],
    )


class Index:
    """Queries and journal replay over the local SQLite cache."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self.path = path
        self.read_only = False  # a read-only home: queries only (index_file.py)
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
        recovery.check_header(path)
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
            if full is not None and not recovery.read_only_error(e):
                raise full from None
            if not recovery.read_only_error(e) or (os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)):
                raise recovery.damaged(path, str(e)) from None
            self.db = recovery.connect_read_only(path)  # ls, search and download still work
            self.db.row_factory = sqlite3.Row
            self.read_only = True
        except sqlite3.DatabaseError as e:
            from livedata_cli import envfail

            known = envfail.translate(e)  # a full or read-only home, not a damaged index
            if known is not None:
                raise known from None
            raise recovery.damaged(path, str(e)) from None

    def close(self) -> None:
        self.db.close()

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
    def applied_journals(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM journals")}

    def journal_links(self) -> dict[str, tuple[str | None, int | None, str | None, str | None]]:
        """Every applied journal: name -> (writer, counter, hash, predecessor's hash)."""
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in self.db.execute("SELECT name, writer, seq, hash, prev FROM journals")}

    def apply(
        self,
        journal: str,
        records: Iterable[dict[str, Any]],
        *,
        link: tuple[str | None, int | None, str | None, str | None] | None = None,
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
            if db.execute("SELECT 1 FROM journals WHERE name = ?", (journal,)).fetchone():
                return False
            if covers is not None:
                _supersede(db, covers)
            puts: list[dict[str, Any]] = []
            for rec in records:
                if rec.get("t") == "put":
                    puts.append(rec)
                    continue
                if puts:
                    _guarded(db, journal, puts, failed)
                    puts = []
                _guarded(db, journal, [rec], failed)
            if puts:
                _guarded(db, journal, puts, failed)
            writer, seq, hash_, prev = link or (None, None, None, None)
            db.execute(
                "INSERT INTO journals (name, writer, seq, hash, prev) VALUES (?, ?, ?, ?, ?)",
                (journal, writer, seq, hash_, prev),
            )
        return True

    def clear(self) -> None:
        with self.write() as db:
            db.execute("DELETE FROM versions")
            db.execute("DELETE FROM search_fts")
            db.execute("DELETE FROM journals")
            db.execute("DELETE FROM version_numbers")
            db.execute("DELETE FROM meta WHERE key IN ('rebuild', 'bad_records', 'damaged_journals', 'snapshot_floors')")

    def forget_journals(self, names: Iterable[str]) -> None:
        """Journals a snapshot covers and that are gone from the store."""
        with self.write() as db:
            db.execute("DELETE FROM journals WHERE name IN (SELECT value FROM json_each(?))", (json.dumps(list(names)),))

    def pruned_numbers(self, path: str) -> list[int]:
        """The numbers of this path's versions that were purged (gaps in its numbering)."""
        rows = self.db.execute(
            "SELECT vid, ROW_NUMBER() OVER (ORDER BY created, vid) FROM version_numbers WHERE path = ?", (path,)
        ).fetchall()
        live = {r[0] for r in self.db.execute("SELECT vid FROM versions WHERE path = ?", (path,))}
        return [int(r[1]) for r in rows if r[0] not in live]

    # -- queries ---------------------------------------------------------
    def versions_of(self, path: str, *, trash: bool = False) -> list[Version]:
        """All versions of one path, oldest first (numbered from 1)."""
        rows = self.db.execute(
            f"SELECT * FROM ({_NUMBERED} WHERE path = ?) "
            f"WHERE (deleted IS NOT NULL) = ? ORDER BY number",
            (path, trash),
        ).fetchall()
        return [_version(r) for r in rows]

    def as_of(self, prefix: str, at: float) -> list[Version]:
        """The tree under a prefix as it was at time ``at``: for each path, the
        newest version created by then, unless it was in the trash by then."""
        rows = self.db.execute(
            f"""
            SELECT * FROM (
                SELECT *, ROW_NUMBER() OVER (PARTITION BY path ORDER BY created DESC, vid DESC) AS rn
                FROM ({_NUMBERED} WHERE path LIKE ? ESCAPE '\\') WHERE created <= ?
            ) WHERE rn = 1 AND (deleted IS NULL OR deleted > ?) ORDER BY path
            """,
            (_like_prefix(prefix), at, at),
        ).fetchall()
        return [_version(r) for r in rows]

    def version_by_object(self, obj: str) -> Version | None:
        row = self.db.execute(
            f"SELECT * FROM ({_NUMBERED}) WHERE object = ? ORDER BY created DESC LIMIT 1", (obj,)
        ).fetchone()
        return None if row is None else _version(row)

    def version_by_id(self, vid: str) -> Version | None:
        row = self.db.execute(f"SELECT * FROM ({_NUMBERED}) WHERE vid = ?", (vid,)).fetchone()
        return None if row is None else _version(row)

    def latest(self, prefix: str = "", *, trash: bool = False) -> list[tuple[Version, int]]:
        """The newest version of every path under a prefix, with its count of versions."""
        rows = self.db.execute(
            f"""
            SELECT * FROM (
                SELECT *, COUNT(*) OVER (PARTITION BY path) AS n_versions,
                       ROW_NUMBER() OVER (PARTITION BY path ORDER BY created DESC, vid DESC) AS rn
                FROM ({_NUMBERED} WHERE path LIKE ? ESCAPE '\\')
                WHERE (deleted IS NOT NULL) = ?
            ) WHERE rn = 1 ORDER BY path
            """,
            (_like_prefix(prefix), trash),
        ).fetchall()
        return [(_version(r), int(r["n_versions"])) for r in rows]

    def numbered_versions(self, prefix: str = "") -> list[Version]:
        """Every live version under a prefix with its number, by path then number."""
        rows = self.db.execute(
            f"SELECT * FROM ({_NUMBERED} WHERE path LIKE ? ESCAPE '\\') WHERE deleted IS NULL ORDER BY path, number",
            (_like_prefix(prefix),),
        ).fetchall()
        return [_version(r) for r in rows]

    def newest_paths(self, prefix: str = "", *, trash: bool = False, dirs: bool = False) -> Iterator[str]:
        """The paths ``latest`` would list, in order, streamed from the ``newest``
        flag journal replay keeps: what a plain ``ls`` prints, with no row
        turned into a Version."""
        cur = self.db.cursor()
        cur.row_factory = None  # plain tuples: no Row object per path
        cur.execute(
            "SELECT path FROM versions WHERE newest AND (deleted IS NOT NULL) = ? "
            "AND path LIKE ? ESCAPE '\\' AND (? OR kind != 'dir') ORDER BY path",
            (trash, _like_prefix(prefix), dirs),
        )
        while rows := cur.fetchmany(2048):
            for (path,) in rows:
                yield path

    def find_by_hash(self, hash_: str) -> Version | None:
        """A stored version with this content (any path), for deduplication; thread-safe."""
        with self._lock:
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM versions WHERE hash = ? AND kind = 'file' AND NOT protected ORDER BY created LIMIT 1",
                (hash_,),
            ).fetchone()
        return None if row is None else _version(row)

    def find_by_hashes(self, hashes: list[str]) -> dict[str, Version]:
        """``find_by_hash`` for many hashes in one query."""
        with self._lock:
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM versions WHERE hash IN (SELECT value FROM json_each(?)) "
                "AND kind = 'file' AND NOT protected ORDER BY created DESC",
                (json.dumps(hashes),),
            ).fetchall()
        return {r[9]: _version(r) for r in rows}  # the oldest of each hash wins, as in find_by_hash

    def newest_live(self, paths: Iterable[str]) -> dict[str, Version]:
        """The newest live version of each of these paths that has one (one query,
        on the ``newest`` flag that journal replay keeps)."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM versions "
            "WHERE path IN (SELECT value FROM json_each(?)) AND deleted IS NULL AND newest",
            (json.dumps(list(paths)),),
        ).fetchall()
        return {r[1]: _version(r) for r in rows}

    def newest_seen(self, paths: Iterable[str]) -> dict[str, Seen]:
        """What an upload compares with a file's stat, for the newest live version
        of each path: a few columns, so a rerun over 10,000 unchanged files
        builds no full Version."""
        rows = self.db.execute(
            "SELECT path, vid, kind, size, mtime, mode, mime, protected, tags FROM versions "
            "WHERE path IN (SELECT value FROM json_each(?)) AND deleted IS NULL AND newest",
            (json.dumps(list(paths)),),
        ).fetchall()
        return {
            r[0]: Seen(r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), () if r[8] == "[]" else tuple(json.loads(r[8])))
            for r in rows
        }

    def has_text(self, vid: str) -> bool:
        """Whether a version's contents were indexed for search (thread-safe)."""
        with self._lock:
            row = self.db.execute(
                "SELECT text IS NOT NULL FROM search_fts WHERE rowid = (SELECT rowid FROM versions WHERE vid = ?)",
                (vid,),
            ).fetchone()
        return bool(row and row[0])

    def store_refs(self, key: str) -> int:
        """Versions whose container is in this store object (``data/<id>``): a
        pack's members, or the versions sharing an object of their own."""
        oid = key.removeprefix("data/")
        row = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM versions WHERE pack = ?) "
            "+ (SELECT COUNT(*) FROM versions WHERE object = ? AND pack IS NULL)",
            (oid, oid),
        ).fetchone()
        return int(row[0])

    def all_versions(self) -> Iterator[Version]:
        for row in self.db.execute(f"SELECT {_COLUMNS} FROM versions ORDER BY path, created"):
            yield _version(row)

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM versions").fetchone()[0])

    def version_totals(self, prefix: str = "") -> tuple[int, int, int, int]:
        """Under a prefix, trash included: file versions, their plaintext bytes, and
        the distinct containers behind them with their ciphertext bytes (a
        deduplicated container counts once)."""
        row = self.db.execute(
            """
            SELECT COUNT(*), COALESCE(SUM(size), 0),
                   (SELECT COUNT(*) FROM (SELECT DISTINCT object FROM versions
                        WHERE path LIKE ?1 ESCAPE '\\' AND kind = 'file')),
                   (SELECT COALESCE(SUM(length), 0) FROM (SELECT object, MAX(length) AS length FROM versions
                        WHERE path LIKE ?1 ESCAPE '\\' AND kind = 'file' GROUP BY object))
            FROM versions WHERE path LIKE ?1 ESCAPE '\\' AND kind = 'file'
            """,
            (_like_prefix(prefix),),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _supersede(db: sqlite3.Connection, covers: tuple[dict[str, int], bool]) -> None:
    """Forget the versions that journals covered by a snapshot put."""
    floors, legacy = covers
    names = [
        r[0]
        for r in db.execute("SELECT name, writer, seq FROM journals")
        if (r[1] is None and legacy) or (r[1] is not None and r[2] is not None and r[2] <= floors.get(r[1], 0))
    ]
    if not names:
        return
    gone = "SELECT value FROM json_each(?)"
    db.execute(
        f"DELETE FROM search_fts WHERE rowid IN (SELECT rowid FROM versions WHERE journal IN ({gone}))", (json.dumps(names),)
    )
    db.execute(f"DELETE FROM versions WHERE journal IN ({gone})", (json.dumps(names),))


_RECORD_ERRORS = (KeyError, ValueError, TypeError, AttributeError, sqlite3.Error)


def _guarded(db: sqlite3.Connection, journal: str, recs: list[dict[str, Any]], failed: list[str] | None) -> None:
    """Apply records inside a savepoint: one that fails is rolled back alone and
    named in ``failed`` (a bulk run of puts is retried one by one to find it)."""
    if failed is None:
        _apply_puts(db, journal, recs) if recs[0].get("t") == "put" else _apply_record(db, journal, recs[0])
        return
    db.execute("SAVEPOINT record")
    try:
        if recs[0].get("t") == "put":
            _apply_puts(db, journal, recs)
        else:
            _apply_record(db, journal, recs[0])
    except _RECORD_ERRORS as e:
        db.execute("ROLLBACK TO record")
        db.execute("RELEASE record")
        if len(recs) > 1:
            for rec in recs:
                _guarded(db, journal, [rec], failed)
            return
        failed.append(_describe(journal, recs[0], e))
        return
    db.execute("RELEASE record")


def _describe(journal: str, rec: Any, err: Exception) -> str:
    """A bad record, named without its secrets: journal, kind, path or version id."""
    if not isinstance(rec, dict):
        return f"{journal}: a record that is not an object"
    what = rec.get("path") or rec.get("vid") or rec.get("id") or ""
    kind = rec.get("t", "?")
    reason = type(err).__name__ + (f" {err}" if isinstance(err, KeyError) else "")
    return f"{journal}: {kind} record{' of ' + repr(what) if what else ''} ({reason})"


def _apply_record(db: sqlite3.Connection, journal: str, rec: dict[str, Any]) -> None:
    """Replay one journal record; every kind is idempotent and order-tolerant."""
    kind = rec.get("t")
    if kind == "put":
        _apply_puts(db, journal, [rec])
    elif kind == "rm":
        # Only versions created before the removal: replay order between two
        # machines' journals cannot hide a later upload.
        db.execute(
            "UPDATE versions SET deleted = ? WHERE path = ? AND deleted IS NULL AND created <= ?",
            (float(rec["time"]), rec["path"], float(rec["time"])),
        )
        db.execute(_RESTATE, (rec["path"],))
    elif kind == "restore":
        db.execute(
            "UPDATE versions SET deleted = NULL WHERE path = ? AND created <= ?",
            (rec["path"], float(rec["time"])),
        )
        db.execute(_RESTATE, (rec["path"],))
    elif kind == "purge":
        vids = [(v,) for v in rec["vids"]]
        paths = {r[0] for v in vids for r in db.execute("SELECT path FROM versions WHERE vid = ?", v)}
        db.executemany("DELETE FROM search_fts WHERE rowid = (SELECT rowid FROM versions WHERE vid = ?)", vids)
        db.executemany("DELETE FROM versions WHERE vid = ?", vids)
        db.executemany(_RESTATE, [(p,) for p in sorted(paths)])
    elif kind == "tag":
        row = db.execute("SELECT tags FROM versions WHERE vid = ?", (rec["vid"],)).fetchone()
        if row is not None:
            tags = (set(json.loads(row[0])) | set(rec.get("add", []))) - set(rec.get("remove", []))
            db.execute(
                "UPDATE versions SET tags = ? WHERE vid = ?", (json.dumps(sorted(tags)), rec["vid"])
            )
            _fts_refresh(db, rec["vid"])
    elif kind == "note":
        db.execute("UPDATE versions SET notes = ? WHERE vid = ?", (rec["text"], rec["vid"]))
        _fts_refresh(db, rec["vid"])
    elif kind == "share":
        db.execute(
            "INSERT OR IGNORE INTO shares (id, vid, path, object, kind, created, expires, max_downloads, password, location) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec["id"], rec["vid"], rec["path"], rec.get("object", ""), rec.get("kind", "file"),
                float(rec["created"]), rec.get("expires"), rec.get("max_downloads"),
                int(bool(rec.get("password"))), rec.get("location", ""),
            ),
        )
    elif kind == "file-password":
        # A version's data key rewrapped: a password set, changed or removed.
        db.execute(
            "UPDATE versions SET wrapped_key = ?, protected = ? WHERE vid = ?",
            (bytes.fromhex(rec["wrapped_key"]), int(bool(rec.get("protected"))), rec["vid"]),
        )
        if "object" in rec:  # set or changed: re-encrypted into a new object (reseal.py)
            db.execute(
                'UPDATE versions SET object = ?, pack = ?, "offset" = ?, length = ?, header_hash = ?, hash = ? WHERE vid = ?',
                (rec["object"], rec.get("pack"), int(rec.get("offset", 0)), int(rec["length"]),
                 rec["header_hash"], rec.get("hash", ""), rec["vid"]),
            )
    elif kind == "relocate":
        # A pack member copied byte for byte into another pack (reseal.py).
        db.execute('UPDATE versions SET pack = ?, "offset" = ? WHERE vid = ?', (rec["pack"], int(rec["offset"]), rec["vid"]))
    elif kind == "numbered":
        # A snapshot's trace of a purged version: its number stays taken.
        db.execute(
            "INSERT OR IGNORE INTO version_numbers (vid, path, created) VALUES (?, ?, ?)",
            (rec["vid"], rec["path"], float(rec["created"])),
        )
    elif kind == "unshare":
        db.execute("UPDATE shares SET revoked = ? WHERE id = ? AND revoked IS NULL", (float(rec["time"]), rec["id"]))
    elif kind == "repack":
        # prune moved a pack's live members, byte for byte, into new packs (livedata_cli/vault/maintenance.py).
        db.executemany(
            'UPDATE versions SET pack = ?, "offset" = ? WHERE object = ? AND +pack = ?',  # by object: a pack has thousands
            [(str(new), int(offset), str(obj), rec["from"]) for obj, new, offset in rec["members"]],
        )
    # Unknown kinds come from a newer livedata: skip them rather than fail.


def _apply_puts(db: sqlite3.Connection, journal: str, puts: list[dict[str, Any]]) -> None:
    """New versions, their search rows and ``newest`` flags, a statement per kind
    of row rather than per record.  A version is inserted as the newest of its
    path; only paths that already had versions (or get several here) are
    worked out again."""
    older = {
        r[0]
        for r in db.execute(
            "SELECT DISTINCT path FROM versions WHERE path IN (SELECT value FROM json_each(?))",
            (json.dumps([rec["path"] for rec in puts]),),
        )
    }
    before = db.total_changes
    db.executemany(
        f"INSERT OR IGNORE INTO versions ({_COLUMNS}, journal, newest) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        [
            (
                rec["vid"],
                rec["path"],
                rec["object"],
                int(rec.get("offset", 0)),
                int(rec["length"]),
                int(rec["size"]),
                rec.get("mtime"),
                rec.get("mode"),
                rec.get("mime"),
                rec["hash"],
                rec["header_hash"],
                bytes.fromhex(rec["wrapped_key"]),
                rec["key_id"],
                float(rec["created"]),
                rec.get("derived_from"),
                json.dumps(sorted(set(tags))) if (tags := rec.get("tags")) else "[]",
                rec.get("notes", ""),
                rec.get("deleted"),  # set only in a snapshot: a version in the trash
                rec.get("kind", "file"),
                rec.get("target"),
                int(bool(rec.get("protected"))),
                rec.get("pack"),
                journal,
            )
            for rec in puts
        ],
    )
    new = puts
    if db.total_changes - before != len(puts):  # some were replays: keep the rows this journal added
        mine = {r[0] for r in db.execute("SELECT vid FROM versions WHERE journal = ?", (journal,))}
        new = [rec for rec in puts if rec["vid"] in mine]
    db.executemany(
        "INSERT OR IGNORE INTO version_numbers (vid, path, created) VALUES (?, ?, ?)",
        [(rec["vid"], rec["path"], float(rec["created"])) for rec in new],
    )
    # Search rows: the name is the last part of the path, the tags are words.
    db.executemany(
        "INSERT INTO search_fts (rowid, vid, path, name, tags, notes, mime, text) "
        "VALUES ((SELECT rowid FROM versions WHERE vid = ?1), ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [
            (
                rec["vid"],
                rec["path"],
                rec["path"].rsplit("/", 1)[-1],
                " ".join(sorted(set(tags))) if (tags := rec.get("tags")) else None,
                rec.get("notes", ""),
                rec.get("mime"),
                rec.get("text"),
            )
            for rec in new
        ],
    )
    counts: dict[str, int] = {}
    for rec in new:
        counts[rec["path"]] = counts.get(rec["path"], 0) + 1
    db.executemany(_RESTATE, [(p,) for p, n in counts.items() if n > 1 or p in older])


def _fts_refresh(db: sqlite3.Connection, vid: str) -> None:
    """Bring one version's search row in step with its tags and notes."""
    db.execute(
        "UPDATE search_fts SET "
        "tags = (SELECT group_concat(value, ' ') FROM versions, json_each(versions.tags) WHERE vid = :vid), "
        "notes = (SELECT notes FROM versions WHERE vid = :vid) "
        "WHERE rowid = (SELECT rowid FROM versions WHERE vid = :vid)",
        {"vid": vid},
    )


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload this machine started and has not finished."""

    object: str
    upload_id: str
    source: str
    path: str
    size: int
    mtime: float
    wrapped_key: bytes
    salt: bytes
    part_size: int
    created: float


class PendingUploads:
    """The ``pending_uploads`` table, on a connection of its own: upload workers
    use it from their threads while the main thread writes journals."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def find(self, source: str, path: str) -> PendingUpload | None:
        with self._lock:
            row = self.db.execute(
                "SELECT * FROM pending_uploads WHERE source = ? AND path = ? ORDER BY created DESC LIMIT 1",
                (source, path),
            ).fetchone()
        if row is None:
            return None
        return PendingUpload(**{k: row[k] for k in row.keys()})  # noqa: SIM118

    def save(self, up: PendingUpload) -> None:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute(
                    "INSERT OR REPLACE INTO pending_uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        up.object, up.upload_id, up.source, up.path, up.size, up.mtime,
                        up.wrapped_key, up.salt, up.part_size, up.created,
                    ),
                )
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def drop(self, obj: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM pending_uploads WHERE object = ?", (obj,))
            self.db.execute("DELETE FROM pending_parts WHERE object = ?", (obj,))

    def save_part(self, obj: str, part: int, mac: str) -> None:
        """The keyed hash of one part's plaintext, kept before the part can be resumed."""
        with self._lock:
            self.db.execute("INSERT OR REPLACE INTO pending_parts VALUES (?, ?, ?)", (obj, part, mac))

    def part_macs(self, obj: str) -> dict[int, str]:
        with self._lock:
            return {int(r[0]): str(r[1]) for r in self.db.execute(
                "SELECT part, mac FROM pending_parts WHERE object = ?", (obj,)
            )}

    def upload_ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.db.execute("SELECT upload_id FROM pending_uploads")}
