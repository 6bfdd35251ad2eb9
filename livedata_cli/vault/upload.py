"""Upload: local files and folders into the vault, as new versions.

Write order, so a process killed at any point leaves the vault consistent:
data object (atomic) → journal object (atomic) → index rows (``Vault._write_journal``).
Unchanged files are answered by their stat; content the vault holds already
is not stored twice; small files go into packs (``packs.py``); a big file's
upload to S3 resumes after a crash (``resume.py``).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from livedata_cli import envfail, localfs, names, packs
from livedata_cli.crypto import container, filepass
from livedata_cli.crypto.wrap import KeyedHash, keyed_hash, unwrap_data_key
from livedata_cli.errors import AuthError, LivedataError, UsageError
from livedata_cli.index.core import Seen, Version
from livedata_cli.localfs import UploadSource
from livedata_cli.mime import TEXT_LIMIT, extract_text, is_text, sniff
from livedata_cli.packs import PackWriter, Sealed, SmallFileSealer, packs_small_files
from livedata_cli.vault import file_passwords, resume
from livedata_cli.vault.reports import BatchReport, ItemResult, Progress, noop
from livedata_cli.vault.upload_batch import Batch, JournalWriter

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault

__all__ = ["plan_upload", "preview_upload", "upload"]

# A journal is flushed after this many records, bytes or seconds, so a killed
# backup of 10,000 files keeps what it had stored.  A tail of under half as
# many records joins the last journal: a journal of its own would cost its
# lock checks and requests for a handful of files.
FLUSH_RECORDS = 2000
FLUSH_BYTES = 256 * 1024 * 1024
FLUSH_SECONDS = 10.0
# Files up to this size are read whole before anything is written (one segment).
SMALL_FILE = packs.SMALL_FILE
# A folder store's small files go to worker processes (this many at most)
# when an upload has at least this many of them.
SEALER_WORKERS = 4
SEALER_MIN_FILES = 256
# Files in flight at once during an upload to a remote store; a folder store
# is fastest with one (threads only add contention for the GIL there).
REMOTE_JOBS = 4
# The fields of a record that name its data object (shared by deduplicated versions).
_OBJECT_FIELDS = ("object", "pack", "offset", "length", "header_hash", "wrapped_key", "key_id")

def plan_upload(
    vault: Vault,
    locals_: list[str],
    *,
    as_path: str | None,
    recursive: bool,
    excludes: list[str],
    report: BatchReport,
) -> list[UploadSource]:
    """Turn command-line paths into (local path, vault path) pairs; bad ones go to the report."""
    return localfs.plan_upload(
        locals_,
        as_path=as_path,
        recursive=recursive,
        excludes=excludes,
        fail=lambda local, err: report.fail(local, "", err),
    )


def preview_upload(vault: Vault, plan: list[UploadSource], report: BatchReport) -> None:
    """What ``upload`` would do with ``plan``, from the index and each file's
    stat alone: new, changed (its content is read to know more) or unchanged.
    Nothing is read, locked, unlocked or written."""
    newest = vault.index.newest_seen(src.path for src in plan)
    for src in plan:
        old = newest.get(src.path)
        st = src.stat
        if src.kind != "file" or src.local == "-":
            status = "new" if old is None else "unchanged" if old.kind == src.kind else "changed"
        elif old is None:
            status = "new"
        elif st is not None and old.kind == "file" and (old.size, old.mtime, old.mode) == (
            st.st_size, st.st_mtime, stat.S_IMODE(st.st_mode)
        ):
            status = "unchanged"
        else:
            status = "changed"
        size = st.st_size if st is not None else 0
        report.items.append(ItemResult(src.local, src.path, status, size))
        if status != "unchanged":
            report.bytes_read += size


def upload(
    vault: Vault,
    plan: list[UploadSource],
    *,
    tags: list[str],
    report: BatchReport,
    progress: Progress = noop,
    stdin: BinaryIO | None = None,
    jobs: int | None = None,
    index_content: bool = False,
    derived_from: dict[str, str] | None = None,
    password: str | None = None,
    no_password: bool = False,
) -> BatchReport:
    """Store each planned entry as a new version, unless it is unchanged.

    Files are read, hashed, encrypted and written by ``jobs`` threads (file
    I/O, hashing and AES-GCM release the GIL); records are collected here,
    in plan order, and written as journals.  ``derived_from`` maps a vault
    path to the version id it was made from (a conversion's source).
    With ``password`` every file stored gets that file password; without
    it a new version of a protected path (or the conversion of a protected
    file) keeps the password of what it came from, unless ``no_password``.
    """
    vault.sync()
    if password is not None and no_password:
        raise UsageError("--password and --no-password exclude each other")
    # The walk's stat decides most files of a rerun: those only need the few
    # fields of Seen; the others get their full newest Version.
    seen = vault.index.newest_seen(s.path for s in plan)
    batch = Batch(
        hash_key_of=lambda: vault.plaintext_hash_keys()[0],
        tags=sorted(set(tags)),
        newest={},
        progress=progress,
        stdin=stdin,
        index_content=index_content,
        password_key=filepass.PasswordKey.derive(password) if password is not None else None,
        no_password=no_password,
        derived_from=derived_from or {},
        packer=PackWriter(vault.store) if packs_small_files(vault.store) else None,
    )
    for src in plan:
        old = seen.get(src.path)
        if old is not None and src.kind == "file" and src.stat is not None and _unchanged_stat(vault, src.stat, old, batch):
            batch.unchanged[src.path] = old
    batch.newest = vault.index.newest_live(p for p in seen if p not in batch.unchanged)
    if any(s.kind == "file" and s.path not in batch.unchanged for s in plan):
        batch.hash_key  # noqa: B018 (unlock here, once, on this thread, not in a worker)
    if jobs is None:
        # Threads help a remote store with files of their own (each its own
        # requests); small files go into packs, sealed faster by worker processes.
        big = any(s.kind == "file" and s.path not in batch.unchanged and (s.stat is None or s.stat.st_size > SMALL_FILE) for s in plan)
        jobs = REMOTE_JOBS if vault.store.remote and big else 1
    _start_sealer(vault, plan, batch, jobs)
    try:
        _upload_all(vault, plan, batch, max(1, jobs), report)
    except BaseException as e:
        if batch.packer is not None:
            batch.packer.discard(e)  # no journal names it
        raise
    finally:
        if batch.sealer is not None:
            batch.sealer.close()
    report.duration = time.monotonic() - report.started
    return report


def _start_sealer(vault: Vault, plan: list[UploadSource], batch: Batch, jobs: int) -> None:
    """Small files go to worker processes when there are many, several cores,
    and nothing about them needs more than a fresh key: into a pack, in
    plan order, without passwords, KMS data keys or indexed text."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if (
        cores < 2
        or jobs != 1
        or batch.packer is None
        or batch.index_content
        or batch.password_key is not None
        or batch.derived_from
        or vault.cfg.kms_per_object
    ):
        return
    files = [
        src
        for src in plan
        if src.kind == "file"
        and src.local != "-"
        and src.stat is not None
        and src.stat.st_size <= SMALL_FILE
        and src.path not in batch.unchanged
        and not (src.path in batch.newest and batch.newest[src.path].protected)
    ]
    if len(files) < SEALER_MIN_FILES:
        return

    def look_up(outcomes: list[packs.Outcome]) -> None:  # one query a chunk, not one a file
        batch.known = vault.index.find_by_hashes([o.digest for o in outcomes if isinstance(o, Sealed)])

    batch.sealer = SmallFileSealer(
        (vault.master_key, vault.vault_id, batch.hash_key),
        [(src.local, src.stat.st_size) for src in files if src.stat],
        min(cores, SEALER_WORKERS),
        look_up,
    )
    batch.sealed = {src.path for src in files}


def _upload_all(vault: Vault, plan: list[UploadSource], batch: Batch, jobs: int, report: BatchReport) -> None:
    """Run the plan on ``jobs`` threads, collecting records in plan order into
    journals, which are written on a thread of their own meanwhile."""
    pending: list[dict[str, Any]] = []
    unflushed: list[ItemResult] = []  # the items of the records in pending
    pending_bytes = 0
    last_flush = time.monotonic()

    def run(src: UploadSource) -> tuple[ItemResult, dict[str, Any] | None] | Exception:
        try:
            return _upload_one(vault, src, batch)
        except (LivedataError, OSError) as e:
            return e

    # Files the walk's stat found unchanged are answered here, in plan order,
    # without a trip through the workers (a rerun is mostly those).
    todo = [src for src in plan if src.path not in batch.unchanged]
    with ThreadPoolExecutor(jobs) as pool, JournalWriter(vault, batch) as journals:
        done = iter(map(run, todo) if jobs == 1 else pool.map(run, todo))
        for position, src in enumerate(plan, 1):
            old = batch.unchanged.get(src.path)
            if old is not None:
                batch.progress(old.size)  # not even opened
                outcome: tuple[ItemResult, dict[str, Any] | None] | Exception = _unchanged(src, old, batch.tags)
            else:
                outcome = next(done)
            if isinstance(outcome, AuthError):  # the vault key, not this file: the command fails
                raise outcome
            if isinstance(outcome, Exception) and envfail.is_fatal(outcome):  # a full or vanished store
                left = sum(s.stat.st_size for s in todo[todo.index(src):] if s.stat is not None)
                err = envfail.translate(outcome, needed=left, place=envfail.STORE) or outcome
                if batch.packer is not None:  # members of a pack the store did not take are not stored
                    gone = batch.packer.abandon(outcome)
                    for rec, item in zip(pending, unflushed, strict=True):
                        if rec.get("pack") in gone:
                            item.status, item.error, item.exit_code = "failed", str(err), getattr(err, "exit_code", 1)
                    kept = [(r, i) for r, i in zip(pending, unflushed, strict=True) if r.get("pack") not in gone]
                    pending, unflushed = [r for r, _ in kept], [i for _, i in kept]
                try:  # keep what was stored before it: its journal, if the store still takes one
                    journals.submit(pending)
                    journals.wait()
                except (LivedataError, OSError):
                    for item in unflushed:  # stored, but no journal names them: not in the vault
                        item.status, item.error, item.exit_code = "failed", str(err), getattr(err, "exit_code", 1)
                raise _with_report(err, report) from None
            if isinstance(outcome, Exception):
                report.fail(src.local, src.path, outcome)  # type: ignore[arg-type]
                continue
            result, record = outcome
            report.items.append(result)
            if old is None:  # a file answered by its stat was never read
                report.bytes_read += result.size
            if record is not None and batch.derived_from and record.get("t") == "put":
                record["derived_from"] = batch.derived_from.get(src.path)
            if record is not None:
                pending.append(record)
                unflushed.append(result)
                pending_bytes += result.stored
            report.bytes_stored += result.stored
            if (
                (len(pending) >= FLUSH_RECORDS and len(plan) - position > FLUSH_RECORDS // 2)
                or pending_bytes >= FLUSH_BYTES
                or time.monotonic() - last_flush >= FLUSH_SECONDS
            ):
                journals.submit(pending)
                pending, unflushed, pending_bytes, last_flush = [], [], 0, time.monotonic()
        journals.submit(pending)


def _upload_one(vault: Vault, src: UploadSource, batch: Batch) -> tuple[ItemResult, dict[str, Any] | None]:
    """Store one entry; returns its result and the journal record to write (if any)."""
    newest = batch.newest.get(src.path)
    if src.kind != "file":
        return _upload_link_or_dir(vault, src, batch, newest)
    if batch.sealer is not None and src.path in batch.sealed:
        outcome = batch.sealer.take(src.local)
        if isinstance(outcome, OSError):
            raise outcome
        if outcome is not None:
            return _store_sealed(vault, src, outcome, batch, newest)
    if src.local == "-":
        f: BinaryIO = batch.stdin if batch.stdin is not None else open(0, "rb", closefd=False)  # noqa: SIM115
        mtime, mode = time.time(), None
    else:
        f = open(src.local, "rb")  # noqa: SIM115
        st = os.fstat(f.fileno())
        mtime, mode = st.st_mtime, stat.S_IMODE(st.st_mode)
        if newest is not None and _unchanged_stat(vault, st, newest, batch):
            f.close()
            batch.progress(st.st_size)
            return _unchanged(src, newest, batch.tags)
    try:
        return _store_file(vault, src, f, batch, newest, mtime, mode)
    finally:
        if src.local != "-":
            f.close()


def _store_sealed(
    vault: Vault, src: UploadSource, sealed: Sealed, batch: Batch, newest: Version | None
) -> tuple[ItemResult, dict[str, Any] | None]:
    """A small file a worker encrypted: unchanged, a duplicate (its container
    is dropped), or a new member of the pack."""
    st = sealed.stat
    mtime, mode = st.st_mtime, stat.S_IMODE(st.st_mode)
    batch.progress(sealed.size)
    if newest is not None and _unchanged_stat(vault, st, newest, batch):
        return _unchanged(src, newest, batch.tags)
    # No claim on the content hash: sealed files are taken one at a time, on
    # this thread (the sealer runs only when nothing else stores files).
    skip = _skip_if_known(vault, src, batch, newest, sealed.digest, sealed.size, mtime, mode, b"", batch.known.get)
    if skip is not None:
        if skip[1] is not None and skip[1]["t"] == "put":
            skip[1]["mime"] = sealed.mime
        return skip
    record = _put_record(vault, src, newest, batch.tags, sealed.size, mtime, mode, b"", sealed.digest)
    record["mime"] = sealed.mime
    _add_member(batch, record, sealed.oid, sealed.wrapped_key, sealed.container, sealed.header_hash)
    return _finish_new(vault, src, batch, newest, record, b"", None)


def _unchanged_stat(vault: Vault, st: os.stat_result, newest: Version | Seen, batch: Batch) -> bool:
    """Same size, mtime and mode as the newest version: not read again (as restic)."""
    return (
        newest.kind == "file"
        and (newest.size, newest.mtime, newest.mode) == (st.st_size, st.st_mtime, stat.S_IMODE(st.st_mode))
        and not _wants_text(vault, newest, batch)
        and newest.protected == batch.protects(newest)
    )


def _store_file(
    vault: Vault,
    src: UploadSource,
    f: BinaryIO,
    batch: Batch,
    newest: Version | None,
    mtime: float | None,
    mode: int | None,
) -> tuple[ItemResult, dict[str, Any] | None]:
    protect = _protection(vault, src.path, batch, newest)
    # Small files are read whole (bounded by SMALL_FILE), so their content
    # is known before anything is written: a duplicate never reaches the store.
    head = f.read(SMALL_FILE + 1)
    if protect is not None:  # never deduplicated, either way: its object and key are its own
        return _encrypt_new(vault, src, f, batch, newest, mtime, mode, head, None, protect)
    small = len(head) <= SMALL_FILE
    known: str | None = None
    claim: threading.Event | None = None
    if small:
        known = keyed_hash(batch.hash_key, head)
        claim = batch.claim(known)  # equal files in flight: the first stores, the others wait
        skip = _skip_if_known(vault, src, batch, newest, known, len(head), mtime, mode, head)
        if skip is not None:
            claim.set()
            batch.progress(len(head))
            return skip
    try:
        return _encrypt_new(vault, src, f, batch, newest, mtime, mode, head, known)
    finally:
        if claim is not None:
            claim.set()


def _encrypt_new(
    vault: Vault,
    src: UploadSource,
    f: BinaryIO,
    batch: Batch,
    newest: Version | None,
    mtime: float | None,
    mode: int | None,
    head: bytes,
    known: str | None,
    protect: filepass.PasswordKey | None = None,
) -> tuple[ItemResult, dict[str, Any] | None]:
    small = known is not None
    if batch.packer is not None and len(head) <= SMALL_FILE:
        return _pack_new(vault, src, batch, newest, mtime, mode, head, known, protect)
    new = resume.new_object(vault, src, f, resumable=not small and protect is None)
    oid, data_key = new.oid, new.data_key
    wrapped = new.wrapped_key
    if protect is not None:
        wrapped = file_passwords.seal_for(vault, protect, oid, data_key)
    hasher = KeyedHash(batch.hash_key)
    on_plaintext = hasher.update if new.on_plaintext is None else _both(hasher.update, new.on_plaintext)
    source = io.BytesIO(head) if small else cast(BinaryIO, _Prefixed(head, f))
    with new.writer as out:
        header, size, length = container.encrypt_stream(
            data_key,
            source,
            out,
            salt=new.salt,
            on_plaintext=None if small else on_plaintext,
            on_progress=batch.progress,
        )
    digest = known if known is not None else hasher.hexdigest()
    if not small and protect is None:
        skip = _skip_if_known(vault, src, batch, newest, digest, size, mtime, mode, head)
        if skip is not None:
            vault.store.delete(f"data/{oid}")  # hashed while written: drop the copy
            return skip
    record = _put_record(vault, src, newest, batch.tags, size, mtime, mode, head, digest)
    record.update(
        object=oid,
        length=length,
        header_hash=container.header_hash(header),
        wrapped_key=wrapped.hex(),
    )
    if not small and protect is None and batch.first_with(digest, record) is not record:
        # An equal file of this batch, hashed at the same time, was stored first.
        skip = _skip_if_known(vault, src, batch, newest, digest, size, mtime, mode, head)
        if skip is not None:
            vault.store.delete(f"data/{oid}")
            return skip
    return _finish_new(vault, src, batch, newest, record, head, protect)


def _pack_new(
    vault: Vault,
    src: UploadSource,
    batch: Batch,
    newest: Version | None,
    mtime: float | None,
    mode: int | None,
    head: bytes,
    known: str | None,
    protect: filepass.PasswordKey | None,
) -> tuple[ItemResult, dict[str, Any] | None]:
    """A small file (read whole already) as a member of the upload's pack."""
    oid = secrets.token_hex(16)
    data_key, wrapped = vault._new_data_key(oid)
    if protect is not None:
        wrapped = file_passwords.seal_for(vault, protect, oid, data_key)
    enc = container.Encryptor(data_key)
    sealed = enc.header + enc.encrypt_segment(head, final=True)
    batch.progress(len(head))
    record = _put_record(vault, src, newest, batch.tags, len(head), mtime, mode, head, known or "")
    _add_member(batch, record, oid, wrapped, sealed, container.header_hash(enc.header))
    return _finish_new(vault, src, batch, newest, record, head, protect)


def _finish_new(
    vault: Vault,
    src: UploadSource,
    batch: Batch,
    newest: Version | None,
    record: dict[str, Any],
    head: bytes,
    protect: filepass.PasswordKey | None,
) -> tuple[ItemResult, dict[str, Any] | None]:
    if protect is None:
        _add_text(vault, record, head, batch)
        batch.by_hash.setdefault(record["hash"], record)
    else:  # no content hash or words: the vault key alone must not confirm a guess
        record.update(hash="", protected=True)
    status = "changed" if newest is not None else "new"
    return ItemResult(src.local, src.path, status, record["size"], record["vid"], stored=record["length"]), record


def _skip_if_known(
    vault: Vault,
    src: UploadSource,
    batch: Batch,
    newest: Version | None,
    digest: str,
    size: int,
    mtime: float | None,
    mode: int | None,
    head: bytes,
    look_up: Callable[[str], Version | None] | None = None,
) -> tuple[ItemResult, dict[str, Any] | None] | None:
    """Unchanged content, or content the vault already holds: no new data object.
    ``look_up`` finds content in the index (default: one query)."""
    if (
        newest is not None
        and newest.kind == "file"
        and newest.hash == digest
        and not _wants_text(vault, newest, batch)
        and not newest.protected  # reached with --no-password: the new version drops it
    ):
        return _unchanged(src, newest, batch.tags)
    same = batch.by_hash.get(digest)
    fields: dict[str, Any] | None = None
    if same is not None:
        fields = {k: same.get(k) for k in _OBJECT_FIELDS}
    else:
        found = (look_up or vault.index.find_by_hash)(digest)
        if found is not None:
            fields = {k: getattr(found, k) for k in _OBJECT_FIELDS} | {"wrapped_key": found.wrapped_key.hex()}
    if fields is None:
        return None
    record = _put_record(vault, src, newest, batch.tags, size, mtime, mode, head, digest)
    _add_text(vault, record, head, batch)
    record.update(fields)
    status = "changed" if newest is not None else "new"
    return ItemResult(src.local, src.path, status, size, record["vid"], deduplicated=True), record


def _add_text(vault: Vault, record: dict[str, Any], head: bytes, batch: Batch) -> None:
    """With --index-content, the start of a text file goes into its record
    (encrypted in the journal), so search finds its words on every machine."""
    if batch.index_content and is_text(record.get("mime")):
        # "" when the start is not text after all: indexed, with no words.
        record["text"] = extract_text(head[:TEXT_LIMIT]) or ""


def _wants_text(vault: Vault, newest: Version | Seen, batch: Batch) -> bool:
    """An unchanged text file stored without --index-content gets a new
    version (same data object) that carries its text."""
    return batch.index_content and is_text(newest.mime) and not vault.index.has_text(newest.vid)


def _upload_link_or_dir(
    vault: Vault, src: UploadSource, batch: Batch, newest: Version | None
) -> tuple[ItemResult, dict[str, Any] | None]:
    st = os.lstat(src.local)
    mtime, mode = st.st_mtime, stat.S_IMODE(st.st_mode)
    target = names.from_local(os.readlink(src.local)) if src.kind == "symlink" else None
    if (
        newest is not None
        and newest.kind == src.kind
        and newest.target == target
        and (src.kind == "symlink" or (newest.mtime, newest.mode) == (mtime, mode))
    ):
        return _unchanged(src, newest, batch.tags)
    record = _put_record(vault, src, newest, batch.tags, 0, mtime, mode, b"", "")
    record.update(kind=src.kind, target=target, mime="inode/symlink" if target else "inode/directory")
    status = "changed" if newest is not None else "new"
    return ItemResult(src.local, src.path, status, 0, record["vid"]), record


def _put_record(
    vault: Vault,
    src: UploadSource,
    newest: Version | None,
    tags: list[str],
    size: int,
    mtime: float | None,
    mode: int | None,
    head: bytes,
    digest: str,
) -> dict[str, Any]:
    return {
        "t": "put",
        "vid": secrets.token_hex(16),
        "path": src.path,
        "kind": "file",
        "object": "",
        "offset": 0,
        "length": 0,
        "size": size,
        "mtime": mtime,
        "mode": mode,
        "mime": sniff(head[:4096]),
        "hash": digest,
        "header_hash": "",
        "wrapped_key": "",
        "key_id": vault.cfg.key_id,
        "created": time.time(),
        "derived_from": None,
        "tags": sorted(set(newest.tags if newest else ()) | set(tags)),
        "notes": newest.notes if newest else "",
    }


def _protection(vault: Vault, path: str, batch: Batch, newest: Version | None) -> filepass.PasswordKey | None:
    """The password key a new version of ``path`` is stored under, or None."""
    if batch.no_password:
        return None
    if batch.password_key is not None:
        return batch.password_key
    source = vault.index.version_by_id(batch.derived_from[path]) if path in batch.derived_from else None
    for v in (newest, source):
        if v is not None and v.protected:
            envelope = unwrap_data_key(vault.master_key, vault.vault_id, v.object, v.wrapped_key)
            return file_passwords.open_protected(vault, v.object, envelope)[1]
    return None


def _with_report(e: BaseException, report: BatchReport) -> BaseException:
    """``e``, carrying what the batch did before it: ``--json`` prints that too."""
    report.duration = time.monotonic() - report.started
    with contextlib.suppress(AttributeError):
        e.document = report.to_json()  # type: ignore[attr-defined]
    return e


def _unchanged(
    src: UploadSource, newest: Version | Seen, tags: list[str]
) -> tuple[ItemResult, dict[str, Any] | None]:
    """An unchanged entry stores nothing; new tags still reach its newest version."""
    extra = sorted(set(tags) - set(newest.tags))
    record = {"t": "tag", "vid": newest.vid, "add": extra} if extra else None
    return ItemResult(src.local, src.path, "unchanged", newest.size, newest.vid), record


def _both(first: Callable[[memoryview], None], second: Callable[[memoryview], None]) -> Callable[[memoryview], None]:
    def both(mv: memoryview) -> None:
        first(mv)
        second(mv)

    return both


def _add_member(
    batch: Batch, record: dict[str, Any], oid: str, wrapped: bytes, sealed: bytes, header_hash: str
) -> None:
    """Append a whole container to the upload's pack and point its record there."""
    assert batch.packer is not None
    pack, offset = batch.packer.add(sealed)
    record.update(
        object=oid, pack=pack, offset=offset, length=len(sealed), header_hash=header_hash, wrapped_key=wrapped.hex()
    )


class _Prefixed(io.RawIOBase):
    """A file whose first bytes were already read: replays them, then reads on."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(buf)  # type: ignore[attr-defined, no-any-return]
