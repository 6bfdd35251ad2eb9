"""Housekeeping: what ``livedata prune`` reclaims, and the store lock it runs under.

A vault gathers space nobody can use: partial uploads in a folder store's
``tmp/`` (a killed upload's half-written file), data objects no record refers
to (a run killed after its data and before its journal), dead space in packs
(members whose versions were purged), and on S3 multipart uploads that were
never completed.  ``prune`` reclaims all of it, under an exclusive lock in the
store (:mod:`livedata_cli.locking`), and forgets no version while doing so.

Crash safety: every step leaves the vault consistent when killed.

* ``tmp/`` files and unreferenced objects are garbage already: deleting them
  one by one can stop anywhere.
* A pack with dead space is repacked: its live members are copied, byte for
  byte, into new packs; the new packs are made durable; a journal moves the
  members there (a ``repack`` record); only then is the old pack deleted.
  Killed before the journal, the new packs are unreferenced objects that the
  next prune deletes; killed after it, the old pack is.

A full store: a folder store keeps a small ``reserve`` file.  A command that
deletes data and finds the store (nearly) full deletes the reserve first, so
its lock and journal fit; the reserve is written again when there is room.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from livedata_cli import packs
from livedata_cli.crypto import container
from livedata_cli.errors import LivedataError, NotFound
from livedata_cli.index.core import Version
from livedata_cli.localfs import clean_vault_path
from livedata_cli.packs import padded
from livedata_cli.sizes import human_size
from livedata_cli.stores import ResumableWrites
from livedata_cli.vault import retention
from livedata_cli.vault.reports import Progress, noop
from livedata_cli.vault.store_locking import _root, guard_fast, pause_point

# prune compacts the journals into one snapshot once there are more than this many.
COMPACT_AFTER = 200

if TYPE_CHECKING:
    from livedata_cli.index.core import Index
    from livedata_cli.packs import PackWriter
    from livedata_cli.vault.core import Vault

# A share's copy outlives its expiry by this much: a download may be under way.
SHARE_COPY_MARGIN = 3600.0
# Old packs repacked per journal: a killed prune redoes at most this many.
REPACK_BATCH = 64
# A partial upload in tmp/ must be this much older than the prune (clock and
# file-system time granularity, NFS servers).
TMP_MARGIN = 2.0


# -- what can be reclaimed ---------------------------------------------------------
@dataclass
class Part:
    """One kind of reclaimable space: how many objects and bytes."""

    objects: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.objects += 1
        self.bytes += size

    def to_json(self) -> dict[str, int]:
        return {"objects": self.objects, "bytes": self.bytes}


@dataclass
class Reclaim:
    """Reclaimable (or reclaimed) space by kind."""

    tmp: Part = field(default_factory=Part)  # partial uploads in a folder store's tmp/
    unreferenced: Part = field(default_factory=Part)  # data objects no record refers to
    packs: Part = field(default_factory=Part)  # packs with dead space, and the dead bytes
    uploads: Part = field(default_factory=Part)  # abandoned S3 multipart uploads
    problems: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return self.tmp.bytes + self.unreferenced.bytes + self.packs.bytes + self.uploads.bytes

    @property
    def total_objects(self) -> int:
        return self.tmp.objects + self.unreferenced.objects + self.packs.objects + self.uploads.objects

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tmp": self.tmp.to_json(),
            "unreferenced": self.unreferenced.to_json(),
            "packs": self.packs.to_json(),
            "uploads": self.uploads.to_json(),
            "total_bytes": self.total_bytes,
            "total_objects": self.total_objects,
        }
        if self.problems:
            out["problems"] = self.problems
        return out


@dataclass(frozen=True)
class _Member:
    object: str
    offset: int
    length: int
    header_hash: str


@dataclass
class _Plan:
    reclaim: Reclaim
    tmp: list[tuple[str, int]]  # file path, size
    unreferenced: list[tuple[str, int]]  # store key, size
    repack: dict[str, list[_Member]]  # pack id -> live members, by offset
    uploads: list[tuple[str, str, int]]  # key, upload id, bytes


def _tmp_litter(vault: Vault, before: float) -> Iterator[tuple[str, int]]:
    root = _root(vault)
    if root is None:
        return
    try:
        entries = list(os.scandir(root / "tmp"))
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if entry.is_file(follow_symlinks=False) and st.st_mtime < before:
            yield entry.path, st.st_size


def _references(vault: Vault, ignore: set[str]) -> tuple[set[str], dict[str, list[_Member]]]:
    """Store keys that some version refers to, and each pack's live members."""
    refs: set[str] = set()
    members: dict[str, dict[str, _Member]] = {}
    packed: set[str] = set()  # versions in packs: a share of one has a copy
    from livedata_cli.index import files

    for vid, obj, pack, offset, length, hh, kind in files.placements(vault.index.db):
        if vid in ignore or kind not in (None, "file") or not obj:
            continue
        refs.add(f"data/{pack or obj}")
        if pack:
            members.setdefault(pack, {})[obj] = _Member(obj, int(offset), int(length), str(hh))
            packed.add(vid)
    refs.update(_share_copies(vault, packed))
    return refs, {p: sorted(m.values(), key=lambda x: x.offset) for p, m in members.items()}


def _share_copies(vault: Vault, packed: set[str]) -> set[str]:
    """The objects that live share links of packed versions were copied to
    (livedata_cli/vault/share_links.py): referenced until the share is revoked, has
    expired (with an hour's margin for a download under way) or its version
    is purged."""
    from livedata_cli.index.core import live_store_shares
    from livedata_cli.packs import share_copy_key
    from livedata_cli.vault.share_links import now as share_clock

    now = share_clock()
    rows = live_store_shares(vault.index.db)
    return {
        share_copy_key(sid)
        for sid, vid, expires in rows
        if vid in packed and (expires is None or float(expires) + SHARE_COPY_MARGIN > now)
    }


def _abandoned_uploads(vault: Vault) -> list[tuple[str, str, int]]:
    store = vault.store
    if not isinstance(store, ResumableWrites):
        return []
    from livedata_cli import settings
    from livedata_cli.index.core import PendingUploads

    age = float(os.environ.get("LIVEDATA_S3_ABANDON_AFTER", "") or 86400)
    pending = PendingUploads(settings.home() / settings.INDEX_FILE)
    try:
        known = pending.upload_ids()
    finally:
        pending.close()
    now = time.time()
    return [(key, uid, 0) for key, uid, started in store.list_uploads("data/") if uid not in known and now - started >= age]


def plan(vault: Vault, *, before: float | None = None, ignore: set[str] | None = None) -> _Plan:
    """What a prune would reclaim now.  ``ignore``: version ids about to be
    purged (a dry run of a policy); ``before``: tmp/ files older than this."""
    reclaim = Reclaim()
    cutoff = (before if before is not None else time.time()) - TMP_MARGIN
    tmp = list(_tmp_litter(vault, cutoff))
    for _path, size in tmp:
        reclaim.tmp.add(size)
    refs, members = _references(vault, ignore or set())
    unreferenced: list[tuple[str, int]] = []
    repack: dict[str, list[_Member]] = {}
    # What the index does not know may refer to any object: with a journal the
    # index could not replay, no data object counts as unreferenced.
    unread = sorted(set(vault.store.list("journal/")) - vault.index.applied_journals())
    if unread:
        reclaim.problems.append(
            f"{len(unread)} journal(s) not replayed into the index ({unread[0]}, ...): "
            "no data object is deleted or repacked until 'livedata sync' reads them"
        )
    for key in [] if unread else vault.store.list("data/"):
        try:
            if key not in refs:
                size = vault.store.size(key)
                unreferenced.append((key, size))
                reclaim.unreferenced.add(size)
                continue
            pack = key.removeprefix("data/")
            live = members.get(pack)
            if not live:
                continue
            size = vault.store.size(key)
        except NotFound:
            continue  # deleted while listed
        used = sum(padded(m.length) for m in live)  # each member is padded to its size class (packs.py)
        if used < size:
            repack[pack] = live
            reclaim.packs.objects += 1
            reclaim.packs.bytes += size - used
    uploads = _abandoned_uploads(vault)
    for _key, _uid, size in uploads:
        reclaim.uploads.add(size)
    return _Plan(reclaim, tmp, unreferenced, repack, uploads)


def reclaimable(vault: Vault) -> Reclaim:
    """The reclaimable space (``verify`` reports it; ``doctor`` shows the last figure)."""
    found = plan(vault).reclaim
    with contextlib.suppress(LivedataError, OSError):
        import json

        vault.index.set_meta("reclaimable", json.dumps({"time": time.time(), **found.to_json()}))
    return found


def last_reclaimable(index: Index) -> dict[str, Any] | None:
    """The figure of the last ``verify`` or ``prune`` on this machine."""
    import json

    raw = index.get_meta("reclaimable")
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- reclaiming --------------------------------------------------------------------
def reclaim(vault: Vault, *, dry_run: bool, ignore: set[str] | None = None) -> Reclaim:
    """Reclaim what :func:`plan` finds.  Runs under the exclusive store lock:
    no writer is running, so nothing in ``tmp/`` or ``data/`` is in flight."""
    from livedata_cli.audit import compaction as audit_compaction

    audit_after = audit_compaction.threshold()  # a bad setting stops the prune before it starts
    lock = vault.store_lock
    before = lock.started if lock is not None and lock.started else time.time()
    todo = plan(vault, before=before, ignore=ignore)
    if dry_run:
        return todo.reclaim
    done = Reclaim()

    for path, size in todo.tmp:
        guard_fast(vault)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        done.tmp.add(size)

    for key, size in todo.unreferenced:
        guard_fast(vault)
        vault.store.delete(key)
        done.unreferenced.add(size)
    pause_point("prune-deleted")

    if todo.repack:
        _repack(vault, todo.repack, done)

    for key, uid, size in todo.uploads:
        guard_fast(vault)
        vault.store.abort_upload(key, uid)  # type: ignore[attr-defined]
        done.uploads.add(size)

    # -- journal compaction -------------------------------------------------
    # Last, under the same exclusive lock: once the journals are many, one
    # snapshot journal restates them (vault/compaction.py) and they are deleted.
    if len(vault.index.journal_links()) > int(os.environ.get("LIVEDATA_COMPACT_AFTER") or COMPACT_AFTER):
        from livedata_cli.vault import compaction

        compaction.compact_journals(vault)
    # Then the audit objects: a chain's many small objects merged into few
    # (audit/compaction.py); a chain that does not verify is left as it is.
    done.problems += audit_compaction.compact_audit(vault, after=audit_after, pause=pause_point).skipped
    with contextlib.suppress(LivedataError, OSError):
        import json

        left = Reclaim(problems=done.problems)  # what this prune could not reclaim
        left.packs.objects = todo.reclaim.packs.objects - done.packs.objects
        left.packs.bytes = todo.reclaim.packs.bytes - done.packs.bytes
        vault.index.set_meta("reclaimable", json.dumps({"time": time.time(), **left.to_json()}))
    return done


def _read_exact(src: BinaryIO, length: int) -> bytes:
    chunks: list[bytes] = []
    left = length
    while left:
        chunk = src.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _repack(vault: Vault, packs_: dict[str, list[_Member]], done: Reclaim) -> None:
    """Copy the live members of packs with dead space into new packs, journal the
    move, then delete the old packs; ``REPACK_BATCH`` old packs at a time."""
    from livedata_cli.packs import PackWriter

    names = sorted(packs_)
    for start in range(0, len(names), REPACK_BATCH):
        batch = names[start : start + REPACK_BATCH]
        writer = PackWriter(vault.store)
        records: list[dict[str, Any]] = []
        sizes: dict[str, int] = {}
        try:
            for pack in batch:
                moved = _copy_members(vault, pack, packs_[pack], writer, done)
                if moved is None:
                    continue
                sizes[pack] = moved[1]
                records.append({"t": "repack", "from": pack, "members": moved[0], "time": time.time()})
            writer.seal()
        except BaseException as e:
            writer.discard(e)
            raise
        if not records:
            continue
        pause_point("repack-written")
        vault._write_journal(records)  # flushes the new packs first
        pause_point("repack-journaled")
        for rec in records:
            guard_fast(vault)
            old = rec["from"]
            if vault.index.store_refs(f"data/{old}") == 0:
                vault.store.delete(f"data/{old}")
                done.packs.objects += 1
                done.packs.bytes += sizes[old] - sum(padded(m.length) for m in packs_[old])


def _copy_members(
    vault: Vault, pack: str, members: list[_Member], writer: PackWriter, done: Reclaim
) -> tuple[list[list[Any]], int] | None:
    """Append one pack's live members to ``writer``; None (pack left as it is)
    when a member is not what its record says."""
    key = f"data/{pack}"
    moved: list[list[Any]] = []
    try:
        size = vault.store.size(key)
        with vault.store.open(key) as src:
            blobs: list[tuple[_Member, bytes]] = []
            for m in members:
                src.seek(m.offset)
                blob = _read_exact(src, m.length)
                if len(blob) != m.length or not hmac.compare_digest(
                    container.header_hash(blob[: container.HEADER_LEN]).encode(), m.header_hash.lower().encode()
                ):
                    done.problems.append(f"pack {pack}: member {m.object} does not match its record; pack left as it is")
                    return None
                blobs.append((m, blob))
    except (NotFound, OSError) as e:
        done.problems.append(f"pack {pack}: {e}")
        return None
    for m, blob in blobs:
        new_pack, offset = writer.add(blob)
        moved.append([m.object, new_pack, offset])
    return moved, size


# -- doctor -----------------------------------------------------------------------
TMP_OLD = 3600.0  # doctor counts tmp/ files untouched this long: no command writes that slowly


def doctor_summary(store_url: str, index_path: Path) -> tuple[str, str, dict[str, Any]]:
    """Doctor's line on reclaimable space: status ("ok" or "warn"), message, details.

    No unlock and no listing of data: partial uploads of a folder store that
    nothing touched for an hour, and the figure the last ``verify`` or
    ``prune`` on this machine found."""
    import json
    import sqlite3

    details: dict[str, Any] = {}
    litter = Part()
    root = Path(store_url.removeprefix("file://"))
    if "://" not in store_url.removeprefix("file://") and (root / "tmp").is_dir():
        cutoff = time.time() - TMP_OLD
        for entry in os.scandir(root / "tmp"):
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if st.st_mtime < cutoff:
                    litter.add(st.st_size)
    details["tmp"] = litter.to_json()
    last: dict[str, Any] | None = None
    if index_path.exists():
        with contextlib.suppress(sqlite3.Error, ValueError):
            from livedata_cli.index import peek

            value = peek.meta_value(index_path, "reclaimable")
            last = json.loads(value) if value is not None else None
    details["last_check"] = last
    notes: list[str] = []
    if litter.objects:
        notes.append(f"{litter.objects} partial upload(s) in tmp/ ({human_size(litter.bytes)}) left by killed runs")
    if last and last.get("total_objects"):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(last.get("time", 0))))
        notes.append(f"{human_size(int(last.get('total_bytes', 0)))} in {last['total_objects']} object(s) reclaimable at the last verify ({when})")
    if notes:
        return "warn", "; ".join(notes), details
    if last is None:
        return "ok", "no partial uploads; run 'livedata verify' for the reclaimable space", details
    return "ok", "nothing to reclaim at the last verify or prune", details


# -- prune and verify -----------------------------------------------------------
def prune(vault: Vault, prefix: str, policy: retention.Policy | None, *, dry_run: bool) -> dict[str, Any]:
    """Forget the versions the policy does not keep (none without a policy),
    then reclaim space: partial uploads, unreferenced objects, dead space in
    packs, abandoned multipart uploads (livedata_cli/vault/py).  Run
    it under the exclusive lock: ``lock(exclusive=True)``."""
    if policy is not None:
        policy.check()
    vault.sync(strict=True)  # a damaged or unreadable journal stops a prune: its objects look unreferenced
    prefix = clean_vault_path(prefix, folder=bool(prefix)) if prefix else ""
    drop: list[Version] = []
    kept = 0
    for newest, _n in vault.index.latest(prefix) if policy is not None else []:
        versions = list(reversed(vault.index.versions_of(newest.path)))
        keep = retention.keep([v.created for v in versions], policy)  # type: ignore[arg-type]
        kept += len(keep)
        drop += [v for i, v in enumerate(versions) if i not in keep]
    if policy is None:
        kept = vault.index.count()
    if drop and not dry_run:
        vault._write_journal([{"t": "purge", "vids": [v.vid for v in drop], "time": time.time()}])
    reclaimed = reclaim(vault, dry_run=dry_run, ignore={v.vid for v in drop})
    return {
        "dry_run": dry_run,
        "kept": kept,
        "removed": [{"path": v.path, "version": v.number, "id": v.vid, "created": v.created} for v in drop],
        "bytes_freed": reclaimed.total_bytes,
        "reclaimed": reclaimed.to_json(),
    }


def verify(vault: Vault, *, data: bool, progress: Progress = noop) -> dict[str, Any]:
    """Check every referenced object: present, header authentic and matching
    its record; with ``data``, every byte authenticated too."""
    from livedata_cli.vault import download, replay, resume

    vault.events.reads = False  # reading to check is not a download
    vault.sync(strict=True)
    problems: list[dict[str, str]] = []
    checked: set[str] = set()
    sizes: dict[str, int] = {}  # per store object: a pack is looked at once
    n_versions = 0
    to_read: list[Version] = []  # with data: read in ranges and in parallel (restore.py)
    for v in vault.index.all_versions():
        n_versions += 1
        if v.kind != "file" or v.object in checked:
            continue
        checked.add(v.object)
        if data:
            to_read.append(v)
            continue
        try:
            packs.check_size(vault.store, v, sizes)
            if v.protected:  # its key needs the file password: the size is what can be checked
                continue
            if data:
                with open(os.devnull, "wb") as sink:
                    download.read_version(vault, v, sink, progress)
            else:
                data_key = vault._data_key(v.object, v.wrapped_key)
                with packs.open_range(vault.store, v.store_key, v.offset, container.HEADER_LEN) as src:
                    header = src.read(container.HEADER_LEN)
                container.verify_header(data_key, header, v.header_hash)
        except (LivedataError, OSError) as e:
            problems.append({"path": v.path, "object": v.object, "error": str(e)})
    if data:
        from livedata_cli.vault import restore

        problems += restore.verify_data(vault, to_read, progress)
    problems += replay.check_stored(vault)
    return {
        "versions": n_versions,
        "objects": len(checked),
        "data_checked": data,
        "problems": problems,
        "abandoned_uploads_aborted": resume.abort_abandoned_uploads(vault),
        "reclaimable": reclaimable(vault).to_json(),
    }
