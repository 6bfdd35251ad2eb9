"""Search over the local index: the user's query syntax, filters, and ranking.

Search reads only the local SQLite index (no store, no key), so it needs no
unlock.  Nothing here imports the vault, crypto or keyring modules: a search
costs start-up plus the query, however large the vault.

Query syntax (parsed here into a safe FTS5 expression; user text never reaches
SQLite unquoted):

- ``tax 2025``: every word must match (in the path, name, tags, notes, MIME
  type or, where indexed, the contents);
- ``"tax return"``: a phrase, words next to each other;
- ``rep*``: words starting with ``rep``;
- ``invoice OR receipt``: either (OR binds tighter than the implicit AND:
  ``tax 2025 OR 2024`` is ``tax AND (2025 OR 2024)``);
- ``-draft`` or ``NOT draft``: leave out matches of this word or phrase;
- ``name:``, ``path:``, ``tag:``, ``note:``, ``type:``, ``text:`` before a word,
  phrase or prefix: match in that field only.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from livedata_cli.errors import QueryError, UsageError

# Column weights for bm25, in the FTS table's column order:
# vid (not indexed), path, name, tags, notes, mime, text.
_WEIGHTS = (0.0, 2.0, 6.0, 4.0, 3.0, 1.0, 1.0)
_FIELDS = {
    "name": "name",
    "path": "path",
    "tag": "tags",
    "tags": "tags",
    "note": "notes",
    "notes": "notes",
    "type": "mime",
    "mime": "mime",
    "text": "text",
    "content": "text",
}
# Shorthands for --type beyond "pdf" (= */pdf) and "image" (= image/*).
_TYPE_ALIASES = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "mp3": "audio/mpeg",
    "txt": "text/plain",
    "text": "text/*",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "epub": "application/epub+zip",
    "tgz": "application/gzip",
    "gz": "application/gzip",
}
MARK_START, MARK_END = "\x02", "\x03"  # around matched words in snippets
MAX_QUERY = 2000


# -- the query language ----------------------------------------------------------
@dataclass
class _Term:
    text: str
    phrase: bool = False
    prefix: bool = False
    field: str | None = None
    negated: bool = False

    def fts(self) -> str:
        quoted = '"' + self.text.replace('"', '""') + '"' + ("*" if self.prefix else "")
        return f"{self.field} : {quoted}" if self.field else quoted


_TOKEN = re.compile(r'\s*(?:(-)?(?:(\w+):)?"([^"]*)("?)(\*?)|(\S+))', re.UNICODE)


def _has_word(text: str) -> bool:
    """Whether the tokenizer would find a word in this text (letters or digits)."""
    return any(c.isalnum() for c in text)


def parse_query(query: str) -> str | None:
    """The FTS5 expression for a user's query, or None when it is empty.

    Raises :class:`QueryError` (exit 2) with a one-line hint on bad syntax.
    """
    if len(query) > MAX_QUERY:
        raise QueryError(f"longer than {MAX_QUERY} characters")
    groups: list[list[_Term]] = []  # AND of ORs
    excluded: list[_Term] = []
    want_or = False  # the previous token was OR
    negate_next = False  # the previous token was NOT
    pos = 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        m = _TOKEN.match(query, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-blank text
            raise QueryError(f"cannot read {query[pos:]!r}")
        pos = m.end()
        neg, fld, phrase, closed, star, bare = m.groups()
        if bare is not None:
            if bare == "OR":
                if not groups or want_or or negate_next:
                    raise QueryError("OR needs a word on each side")
                want_or = True
                continue
            if bare == "AND":
                continue
            if bare == "NOT":
                if want_or or negate_next:
                    raise QueryError("NOT needs a word after it")
                negate_next = True
                continue
            term = _bare_term(bare)
        else:
            if not closed:
                raise QueryError('a phrase is missing its closing "')
            term = _Term(phrase, phrase=True, prefix=bool(star), negated=bool(neg))
            if fld is not None:
                term.field = _field(fld)
        term.negated = term.negated or negate_next
        negate_next = False
        if not _has_word(term.text):
            if want_or:
                raise QueryError(f"{term.text!r} has no letters or digits to search for")
            continue  # punctuation alone: nothing to look for
        if term.negated:
            if want_or:
                raise QueryError("an excluded word cannot be one side of OR")
            excluded.append(term)
        elif want_or:
            groups[-1].append(term)
            want_or = False
        else:
            groups.append([term])
    if want_or:
        raise QueryError("OR needs a word on each side")
    if negate_next:
        raise QueryError("NOT needs a word after it")
    if not groups:
        if excluded:
            raise QueryError("a query needs at least one word that is not excluded")
        return None
    expr = " AND ".join("(" + " OR ".join(t.fts() for t in g) + ")" for g in groups)
    if excluded:
        expr = f"({expr}) NOT (" + " OR ".join(t.fts() for t in excluded) + ")"
    return expr


def _bare_term(token: str) -> _Term:
    negated = token.startswith("-") and len(token) > 1
    if negated:
        token = token[1:]
    fld = None
    name, sep, rest = token.partition(":")
    if sep and name.lower() in _FIELDS and rest:
        fld, token = _FIELDS[name.lower()], rest
    elif sep and name.lower() in _FIELDS:
        raise QueryError(f"{name}: needs a word after it")
    if '"' in token:
        raise QueryError(f'a quote inside a word ({token!r}): put phrases in "double quotes"')
    prefix = token.endswith("*")
    word = token.rstrip("*") if prefix else token
    if "*" in word:
        raise QueryError(f"'*' goes at the end of a word, as in rep* ({token!r})")
    if prefix and not _has_word(word):
        raise QueryError("'*' needs a few letters before it, as in rep*")
    return _Term(word, prefix=prefix, field=fld, negated=negated)


def _field(name: str) -> str:
    try:
        return _FIELDS[name.lower()]
    except KeyError:
        raise QueryError(f"unknown field {name!r}: use one of name, path, tag, note, type, text") from None


# -- filter values --------------------------------------------------------------
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}  # fmt: skip


def parse_size(text: str, option: str = "--larger-than") -> int:
    """Bytes from ``1MB`` (10^6), ``10KiB`` (2^10), ``5G`` (2^30) or a plain number."""
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise UsageError(f"{option}: {text!r} is not a size (examples: 500, 10KiB, 1MB, 2GiB)")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size >= 1 << 63:  # SQLite's integers end there
        raise UsageError(f"{option}: {text!r} is larger than any file")
    return size


_AGO = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d|w|y)\s*$", re.IGNORECASE)
_AGO_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


# Earlier than any file was stored: what a date before the calendar's start means.
_EPOCH_FLOOR = -62135596800.0  # 0001-01-01 UTC


def parse_when(text: str, option: str = "--since", *, end_of_day: bool = False, now: float | None = None) -> float:
    """A time from an ISO date or time (``2026-01-31``, ``2026-01-31T12:00``) or
    an age (``7d``, ``12h``, ``30m`` or ``30min``, ``2w``, ``1y``); dates are local midnight,
    or the midnight after them with ``end_of_day`` (for --until)."""
    now = time.time() if now is None else now
    m = _AGO.match(text)
    if m:
        return max(now - int(m.group(1)) * _AGO_SECONDS[m.group(2).lower()], _EPOCH_FLOOR)
    value = text.strip()
    if value in ("today", "yesterday"):
        day = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        if value == "yesterday":
            day -= timedelta(days=1)
        return (day + timedelta(days=1 if end_of_day else 0)).timestamp()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not a date (examples: 2026-01-31, 2026-01-31T09:30, 7d, 12h)"
        ) from None
    date_only = len(value) == 10
    try:
        if date_only and end_of_day:
            parsed += timedelta(days=1)
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):  # 0001-01-01 local time is before year 1 in UTC
        return _EPOCH_FLOOR if parsed.year < 1970 else float(1 << 40)


def type_condition(kind: str) -> tuple[str, list[str]]:
    """SQL (on ``v.mime``) and parameters for one --type value:
    ``application/pdf``, ``image/*``, ``pdf`` (= ``*/pdf``), ``image`` (= ``image/*``)."""
    kind = _TYPE_ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if not kind or any(c.isspace() for c in kind) or kind.count("/") > 1:
        raise UsageError(f"--type: {kind!r} is not a MIME type (examples: application/pdf, image/*, pdf)")
    if kind.endswith("/*"):
        return "v.mime LIKE ? ESCAPE '\\'", [_like(kind[:-1]) + "%"]
    if "/" in kind:
        return "v.mime = ?", [kind]
    return (
        "(v.mime LIKE ? ESCAPE '\\' OR v.mime LIKE ? ESCAPE '\\' OR v.mime LIKE ? ESCAPE '\\')",
        [_like(kind) + "/%", "%/" + _like(kind), "%/x-" + _like(kind)],
    )


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- running a search -------------------------------------------------------------
@dataclass
class Filters:
    """What a result must be, beyond matching the words."""

    tags: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    since: float | None = None
    until: float | None = None
    larger_than: int | None = None
    smaller_than: int | None = None
    trash: bool = False
    all_versions: bool = False

    def empty(self) -> bool:
        """No filter at all (trash and all-versions only choose where to look)."""
        bounds = (self.since, self.until, self.larger_than, self.smaller_than)
        return not self.tags and not self.types and all(b is None for b in bounds)


@dataclass(slots=True)
class Hit:
    """One search result."""

    vid: str
    path: str
    size: int
    mime: str | None
    created: float
    mtime: float | None
    tags: list[str]
    notes: str
    deleted: float | None
    score: float | None
    snippet: str | None = None  # with MARK_START/MARK_END around matched words

    def to_json(self) -> dict[str, Any]:
        from livedata_cli.names import for_json

        return {
            "path": for_json(self.path),
            "id": self.vid,
            "size": self.size,
            "mime": self.mime,
            "created": self.created,
            "mtime": self.mtime,
            "tags": self.tags,
            "notes": self.notes,
            "deleted": self.deleted,
            "score": self.score,
            "snippet": None if self.snippet is None else plain_snippet(self.snippet),
        }


@dataclass
class Results:
    hits: list[Hit]
    truncated: bool  # more results than the limit
    fts: str | None  # the FTS5 expression that ran (for --debug and tests)


def plain_snippet(snippet: str, start: str = "[", end: str = "]") -> str:
    """A snippet with its match marks as plain characters."""
    from livedata_cli.names import for_json

    return for_json(snippet).replace(MARK_START, start).replace(MARK_END, end)


def search(db: sqlite3.Connection, query: str, filters: Filters, *, limit: int | None) -> Results:
    """Run a search: ranked best first when there are words, else by path."""
    expr = parse_query(query)
    # The tag filters narrow the full-text match too (exact tags are checked below).
    narrowing = [f'tags : "{t.replace(chr(34), chr(34) * 2)}"' for t in filters.tags if _has_word(t)]
    match = " AND ".join(([f"({expr})"] if expr else []) + narrowing) or None
    where, params = _conditions(filters)
    try:
        found = None
        if expr is not None and limit is not None:
            found = _best_ranked(db, match, where, params, limit)
        if found is None:
            found = _all_matches(db, match, expr is not None, where, params, limit)
    except sqlite3.OperationalError as e:
        # The parser quotes every word, so this is not expected; still one line.
        raise QueryError(f"the index refused it ({e})") from None
    rows, truncated = found
    hits = _hits(rows)
    if expr is not None and hits:
        snippets = _snippets(db, f"({expr})", [r[10] for r in rows])
        for hit, row in zip(hits, rows, strict=True):
            hit.snippet = snippets.get(row[10])
    return Results(hits, truncated, match)


# Result rows: these columns, then the score and the FTS rowid.
_COLUMNS = "v.vid, v.path, v.size, v.mime, v.created, v.mtime, v.tags, v.notes, v.deleted"
_BM25 = "-bm25(search_fts, " + ", ".join(str(w) for w in _WEIGHTS) + ")"
_JOIN = "FROM search_fts JOIN versions v ON v.rowid = search_fts.rowid"


def _conditions(filters: Filters) -> tuple[str, list[Any]]:
    """The filters as SQL over ``versions v`` (the MATCH is added by the caller)."""
    where = [
        "v.deleted IS NOT NULL" if filters.trash else "v.deleted IS NULL",
        "v.mime IS NOT 'inode/directory'",  # folders are kept for their modes, not found
    ]
    params: list[Any] = []
    for t in filters.tags:
        where.append("EXISTS (SELECT 1 FROM json_each(v.tags) WHERE json_each.value = ?)")
        params.append(t)
    if filters.types:
        conds = [type_condition(k) for k in filters.types]
        where.append("(" + " OR ".join(c for c, _ in conds) + ")")
        params.extend(p for _, ps in conds for p in ps)
    for column, op, value in (
        ("v.created", ">=", filters.since),
        ("v.created", "<", filters.until),
        ("v.size", ">", filters.larger_than),
        ("v.size", "<", filters.smaller_than),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            params.append(value)
    if not filters.all_versions:
        where.append("v.newest = 1")  # of its path, on the same side of the trash
    return " AND ".join(where), params


def _all_matches(
    db: sqlite3.Connection, match: str | None, ranked: bool, where: str, params: list[Any], limit: int | None
) -> tuple[list[tuple[Any, ...]], bool]:
    args = list(params)
    if match is None:
        sql = f"SELECT {_COLUMNS}, NULL, NULL FROM versions v WHERE {where} ORDER BY v.path, v.created DESC"
    else:
        score = _BM25 if ranked else "NULL"
        order = "10 DESC, " if ranked else ""  # the score column
        sql = (
            f"SELECT {_COLUMNS}, {score}, search_fts.rowid {_JOIN} WHERE search_fts MATCH ? AND {where} "
            f"ORDER BY {order}v.path, v.created DESC"
        )
        args.insert(0, match)
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit + 1)
    rows = _query(db, sql, args)
    return rows[:limit] if limit is not None else rows, limit is not None and len(rows) > limit


def _best_ranked(
    db: sqlite3.Connection, match: str | None, where: str, params: list[Any], limit: int
) -> tuple[list[tuple[Any, ...]], bool]:
    """The best ``limit`` results, in the order of the full query (score, then
    path, then newest first), looking up only as many matches as needed.

    Scoring every match is cheap (the FTS index alone); looking a match up in
    ``versions`` (trash, newest version, filters) is what costs.  So matches
    are taken in groups of equal score, best first, until enough pass.
    """
    scored = _query(db, f"SELECT rowid, {_BM25} FROM search_fts WHERE search_fts MATCH ?", [match])
    scored.sort(key=lambda r: -r[1])
    out: list[tuple[Any, ...]] = []
    i = 0
    while i < len(scored) and len(out) <= limit:
        score, j = scored[i][1], i
        while j < len(scored) and scored[j][1] == score:
            j += 1
        group = [r[0] for r in scored[i:j]]
        out += [(*r[:9], score, r[10]) for r in _passing(db, group, where, params, limit + 1 - len(out))]
        i = j
    return out[:limit], len(out) > limit


# An equal-score group larger than this is walked in path order (the path
# index) rather than looked up whole: synthetic or camera names (IMG_1234.jpg)
# make thousands of equal scores.
_GROUP_LOOKUP = 2000


def _passing(
    db: sqlite3.Connection, rowids: list[int], where: str, params: list[Any], need: int
) -> list[tuple[Any, ...]]:
    """The rows among ``rowids`` that pass the filters, by path then newest
    first; at least ``need`` of them when there are that many."""
    if len(rowids) <= _GROUP_LOOKUP:
        rows = _lookup(db, rowids, where, params)
        rows.sort(key=lambda r: (r[1], -r[4]))
        return rows
    members = set(rowids)
    out: list[tuple[Any, ...]] = []
    batch: list[int] = []
    last_path = None
    for rowid, path in db.execute("SELECT rowid, path FROM versions ORDER BY path, created DESC"):
        if len(out) >= need and path != last_path:
            break
        if rowid in members:
            batch.append(rowid)
            last_path = path
            if len(batch) >= 200:
                out += _in_order(db, batch, where, params)
                batch = []
    return out + _in_order(db, batch, where, params)


def _in_order(db: sqlite3.Connection, rowids: list[int], where: str, params: list[Any]) -> list[tuple[Any, ...]]:
    by_id = {r[10]: r for r in _lookup(db, rowids, where, params)}
    return [by_id[r] for r in rowids if r in by_id]


def _lookup(db: sqlite3.Connection, rowids: list[int], where: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """These versions rows, if they pass the filters (result-row shape, no score)."""
    out: list[tuple[Any, ...]] = []
    for k in range(0, len(rowids), 500):
        chunk = rowids[k : k + 500]
        marks = ",".join("?" * len(chunk))
        out += _query(
            db, f"SELECT {_COLUMNS}, NULL, v.rowid FROM versions v WHERE v.rowid IN ({marks}) AND {where}",
            [*chunk, *params],
        )  # fmt: skip
    return out


def _query(db: sqlite3.Connection, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
    """Rows as plain tuples (cheaper than sqlite3.Row when there are thousands)."""
    cursor = db.cursor()
    cursor.row_factory = None
    return cursor.execute(sql, args).fetchall()


def _hits(rows: list[tuple[Any, ...]]) -> list[Hit]:
    # One JSON document for every row's tags: much faster than one parse each.
    tags = json.loads("[" + ",".join(r[6] for r in rows) + "]")
    # Positional: the columns are in Hit's field order (vid ... deleted, score).
    return [
        Hit(r[0], r[1], r[2], r[3], r[4], r[5], t, r[7], r[8], None if r[9] is None else float(f"{r[9]:.4g}"))
        for r, t in zip(rows, tags, strict=True)
    ]


def _snippets(db: sqlite3.Connection, expr: str, rowids: list[int]) -> dict[int, str]:
    """Snippets for the rows shown only (they cost a re-tokenisation each)."""
    out: dict[int, str] = {}
    for i in range(0, len(rowids), 500):
        chunk = rowids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for rowid, snippet in db.execute(
            f"SELECT rowid, snippet(search_fts, -1, ?, ?, '…', 12) FROM search_fts "
            # "+rowid": one pass over the matches; a plain "rowid IN" would
            # run the full-text query again for each row (slow for prefixes).
            f"WHERE search_fts MATCH ? AND +rowid IN ({marks})",
            [MARK_START, MARK_END, expr, *chunk],
        ):
            out[rowid] = " ".join(str(snippet).split())  # one line, whatever the text held
    return out


def open_index() -> sqlite3.Connection:
    """The local index of this home's vault (no store, no key needed)."""
    from livedata_cli import settings
    from livedata_cli.index.core import Index

    settings.VaultSettings.load()  # no vault here: exit 3 with the usual hint
    db = Index(settings.home() / settings.INDEX_FILE).db
    db.execute("PRAGMA mmap_size = 268435456")  # reads without copying: faster cold starts
    return db
