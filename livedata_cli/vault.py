"""Use cases: the only place that composes store, crypto, keys and index.

Write order, so a process killed at any point leaves the vault consistent:
data object (atomic) → journal object (atomic) → index rows.  A data object
without a journal record is an unreferenced orphan, invisible to users; a
journal without index rows is picked up by the next sync, which every write
command runs first.
"""

from __future__ import annotations

import fnmatch
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from livedata_cli import config, journal
from livedata_cli.crypto import container
from livedata_cli.crypto.wrap import KeyedHash, key_id, subkey, unwrap_data_key, wrap_data_key
from livedata_cli.errors import (
    IntegrityError,
    LivedataError,
    NotFound,
    StoreUnreachable,
    UsageError,
)
from livedata_cli.index import Index, Version
from livedata_cli.keys import StoreConfig, Unlocker, make_slot
from livedata_cli.mime import sniff
from livedata_cli.stores import ObjectStore, open_store

Progress = Callable[[int], None]

# A journal is flushed after this many records, bytes or seconds, so a killed
# backup of 10,000 files keeps what it had stored.
FLUSH_RECORDS = 2000
FLUSH_BYTES = 256 * 1024 * 1024
FLUSH_SECONDS = 10.0


def _noop(_n: int) -> None:
    pass


# -- vault paths ----------------------------------------------------------------
def clean_vault_path(path: str, *, folder: bool = False) -> str:
    """Check a user-given vault path: relative, ``/``-separated, no ``..``."""
    if "\x00" in path or "\\" in path:
        raise UsageError(f"invalid vault path {path!r}")
    if path.startswith("/"):
        raise UsageError(f"vault paths are relative: {path!r} starts with '/'")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UsageError(f"vault paths may not contain '..': {path!r}")
    cleaned = "/".join(parts)
    if folder and cleaned:
        cleaned += "/"
    return cleaned


def safe_target(root: Path, relative: str) -> Path:
    """Where a vault path lands under ``root``; never outside it, whatever the name."""
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("", ".", "..") or "\x00" in p for p in parts) or relative.startswith("/"):
        raise IntegrityError(f"refusing to write unsafe path {relative!r} outside {root}")
    target = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(target.parent)
    if os.path.commonpath([real_root, real_parent]) != real_root:
        raise IntegrityError(f"refusing to write {relative!r}: it leads outside {root}")
    return target


# -- reports ------------------------------------------------------------------
@dataclass
class ItemResult:
    """What happened to one file of a batch."""

    source: str
    path: str
    status: str  # stored, unchanged, deduplicated, failed, downloaded
    size: int = 0
    version: str | None = None
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "path": self.path, "status": self.status, "size": self.size}
        if self.version:
            d["id"] = self.version
        if self.error:
            d["error"] = self.error
            d["exit_code"] = self.exit_code
        return d


@dataclass
class BatchReport:
    items: list[ItemResult] = field(default_factory=list)
    bytes_read: int = 0
    bytes_stored: int = 0
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    @property
    def failed(self) -> list[ItemResult]:
        return [i for i in self.items if i.status == "failed"]

    def fail(self, source: str, path: str, err: LivedataError | OSError) -> None:
        if isinstance(err, OSError):
            msg = f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
            code = 3 if isinstance(err, FileNotFoundError) else 1
        else:
            msg, code = err.message, int(err.exit_code)
        self.items.append(ItemResult(source, path, "failed", error=msg, exit_code=code))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.status] = out.get(i.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [i.to_json() for i in self.items],
            "counts": self.counts(),
            "bytes_read": self.bytes_read,
            "bytes_stored": self.bytes_stored,
            "duration": round(self.duration, 3),
        }


@dataclass(frozen=True)
class UploadSource:
    """One file to store: a local path (or ``-`` for stdin) and its vault path."""

    local: str
    path: str


@dataclass(frozen=True)
class SyncResult:
    journals: int
    records: int
    versions: int


# -- the vault ------------------------------------------------------------------
class Vault:
    """An opened vault: its store, its config, the local index, and the key."""

    def __init__(self, store: ObjectStore, cfg: StoreConfig, index: Index, unlocker: Unlocker) -> None:
        self.store = store
        self.cfg = cfg
        self.index = index
        self.unlocker = unlocker
        self._master: bytes | None = None

    # -- opening ---------------------------------------------------------------
    @staticmethod
    def open(unlocker: Unlocker) -> Vault:
        settings = config.VaultSettings.load()
        store = open_store(settings.store)
        cfg = _read_config(store)
        if cfg.vault_id != settings.vault_id:
            raise IntegrityError(
                f"the store {store.url} holds vault {cfg.vault_id}, not {settings.vault_id} as this machine expects"
            )
        return Vault(store, cfg, Index(config.home() / config.INDEX_FILE), unlocker)

    @staticmethod
    def init(store_url: str | None, unlocker: Unlocker, new_secret: Callable[[], str]) -> tuple[Vault, bool]:
        """Create a vault, or attach to the one already in the store.

        Returns the vault and whether it was created (False: attached).
        """
        url = store_url or str(config.default_store_path())
        store = open_store(url)
        if config.VaultSettings.exists():
            current = config.VaultSettings.load()
            if open_store(current.store).url != store.url:
                raise UsageError(
                    f"{config.home()} already uses the vault at {current.store}; "
                    "set LIVEDATA_HOME to keep a second vault"
                )
        index = Index(config.home() / config.INDEX_FILE)
        if store.exists("config"):
            cfg = _read_config(store)
            vault = Vault(store, cfg, index, unlocker)
            vault.unlock()  # before anything is written locally
            config.VaultSettings(store=store.url, vault_id=cfg.vault_id).save()
            vault.sync(rebuild=True)
            return vault, False
        secret = new_secret()
        vault_id = secrets.token_hex(16)
        master = secrets.token_bytes(32)
        cfg = StoreConfig(vault_id=vault_id, key_id=key_id(master, vault_id), created=time.time())
        slot = make_slot(vault_id, master, secret)
        try:
            store.put_bytes(slot.key, slot.to_bytes(), exclusive=True)
            # The config is written last: a vault exists once it has a way in.
            store.put_bytes("config", cfg.to_bytes(), exclusive=True)
        except FileExistsError:
            raise UsageError(f"another process created a vault at {store.url} at the same time") from None
        except OSError as e:
            raise StoreUnreachable(f"cannot write to {store.url}: {e.strerror}") from None
        index.clear()
        config.VaultSettings(store=store.url, vault_id=vault_id).save()
        unlocker.remember(vault_id, master)
        vault = Vault(store, cfg, index, unlocker)
        vault._master = master
        return vault, True

    def close(self) -> None:
        self.index.close()

    def unlock(self) -> bytes:
        """The master key, asked for (or taken from the keyring) on first use."""
        if self._master is None:
            self._master = self.unlocker.unlock(self.store, self.cfg)
        return self._master

    @property
    def master_key(self) -> bytes:
        return self.unlock()

    @property
    def vault_id(self) -> str:
        return self.cfg.vault_id

    # -- sync ----------------------------------------------------------------
    def sync(self, *, rebuild: bool = False) -> SyncResult:
        """Replay the store's journals that this index has not seen."""
        if rebuild:
            self.index.clear()
        seen = self.index.applied_journals()
        n_journals = n_records = 0
        for name in self.store.list(journal.PREFIX):
            if name in seen:
                continue
            records = journal.decode(self.master_key, self.vault_id, name, self.store.get_bytes(name))
            if self.index.apply(name, records):
                n_journals += 1
                n_records += len(records)
        return SyncResult(n_journals, n_records, self.index.count())

    def _write_journal(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        name = journal.new_name()
        self.store.put_bytes(name, journal.encode(self.master_key, self.vault_id, name, records))
        self.index.apply(name, records)

    # -- upload ----------------------------------------------------------------
    def plan_upload(
        self,
        locals_: list[str],
        *,
        as_path: str | None,
        recursive: bool,
        excludes: list[str],
        report: BatchReport,
    ) -> list[UploadSource]:
        """Turn command-line paths into (local file, vault path) pairs; bad ones go to the report."""
        plan: list[UploadSource] = []
        if as_path is not None and len(locals_) > 1 and not as_path.endswith("/"):
            raise UsageError("--as must end with '/' when several paths are uploaded")
        for local in locals_:
            if local == "-":
                if not as_path or as_path.endswith("/"):
                    raise UsageError("uploading stdin ('-') needs --as VAULT_PATH")
                plan.append(UploadSource("-", clean_vault_path(as_path)))
                continue
            try:
                st = os.stat(local)
            except OSError as e:
                report.fail(local, "", e)
                continue
            base = Path(local).resolve().name
            if stat.S_ISDIR(st.st_mode):
                if not recursive:
                    report.fail(local, "", UsageError("is a folder: add --recursive"))
                    continue
                prefix = clean_vault_path(as_path if as_path is not None else base, folder=True)
                for file, rel in _walk(Path(local), excludes):
                    plan.append(UploadSource(str(file), prefix + rel))
            elif stat.S_ISREG(st.st_mode):
                if as_path is None:
                    target = base
                elif as_path.endswith("/") or as_path == "":
                    target = clean_vault_path(as_path, folder=True) + base
                else:
                    target = as_path
                plan.append(UploadSource(local, clean_vault_path(target)))
            else:
                report.fail(local, "", UsageError("is not a regular file or folder"))
        return plan

    def upload(
        self,
        plan: list[UploadSource],
        *,
        tags: list[str],
        report: BatchReport,
        progress: Progress = _noop,
        stdin: BinaryIO | None = None,
    ) -> BatchReport:
        """Store each planned file as a new version, unless it is unchanged."""
        self.sync()
        hash_key = subkey(self.master_key, self.vault_id, "plaintext-hash")
        pending: list[dict[str, Any]] = []
        by_hash: dict[str, dict[str, Any]] = {}  # content of this batch, not yet in the index
        pending_bytes = 0
        last_flush = time.monotonic()
        for src in plan:
            try:
                result, record = self._upload_one(src, tags, hash_key, progress, stdin, by_hash)
            except (LivedataError, OSError) as e:
                report.fail(src.local, src.path, e)
                continue
            report.items.append(result)
            report.bytes_read += result.size
            if record is not None:
                pending.append(record)
                if record["t"] == "put":
                    by_hash.setdefault(record["hash"], record)
                if result.status == "stored":
                    pending_bytes += int(record["length"])
                    report.bytes_stored += int(record["length"])
            if (
                len(pending) >= FLUSH_RECORDS
                or pending_bytes >= FLUSH_BYTES
                or time.monotonic() - last_flush >= FLUSH_SECONDS
            ):
                self._write_journal(pending)
                pending, pending_bytes, last_flush = [], 0, time.monotonic()
                by_hash.clear()
        self._write_journal(pending)
        report.duration = time.monotonic() - report.started
        return report

    def _upload_one(
        self,
        src: UploadSource,
        tags: list[str],
        hash_key: bytes,
        progress: Progress,
        stdin: BinaryIO | None,
        by_hash: dict[str, dict[str, Any]],
    ) -> tuple[ItemResult, dict[str, Any] | None]:
        previous = self.index.versions_of(src.path)
        newest = previous[-1] if previous else None
        mtime: float | None
        mode: int | None
        if src.local == "-":
            f: BinaryIO = stdin if stdin is not None else open(0, "rb", closefd=False)  # noqa: SIM115
            mtime, mode = time.time(), None
        else:
            f = open(src.local, "rb")  # noqa: SIM115
            st = os.fstat(f.fileno())
            mtime, mode = st.st_mtime, stat.S_IMODE(st.st_mode)
            if newest and newest.size == st.st_size and newest.mtime == mtime and newest.mode == mode:
                f.close()
                progress(st.st_size)
                return _unchanged(src, newest, tags)
        oid = secrets.token_hex(16)
        data_key = secrets.token_bytes(32)
        hasher = KeyedHash(hash_key)
        head = bytearray()

        def on_plaintext(segment: memoryview) -> None:
            hasher.update(segment)
            if len(head) < 4096:
                head.extend(segment[: 4096 - len(head)])

        try:
            with self.store.writer(f"data/{oid}") as out:
                header, size, length = container.encrypt_stream(
                    data_key, f, out, on_plaintext=on_plaintext, on_progress=progress
                )
        finally:
            if f is not stdin and src.local != "-":
                f.close()
        digest = hasher.hexdigest()
        record: dict[str, Any] = {
            "t": "put",
            "vid": secrets.token_hex(16),
            "path": src.path,
            "object": oid,
            "offset": 0,
            "length": length,
            "size": size,
            "mtime": mtime,
            "mode": mode,
            "mime": sniff(bytes(head)),
            "hash": digest,
            "header_hash": container.header_hash(header),
            "wrapped_key": wrap_data_key(self.master_key, self.vault_id, oid, data_key).hex(),
            "key_id": self.cfg.key_id,
            "created": time.time(),
            "derived_from": None,
            "tags": sorted(set(newest.tags if newest else ()) | set(tags)),
            "notes": newest.notes if newest else "",
        }
        if newest and newest.hash == digest:
            # Same content as the newest version: nothing is stored twice.
            self.store.delete(f"data/{oid}")
            return _unchanged(src, newest, tags)
        same = _same_content(self.index, by_hash, digest)
        if same is not None:
            # Identical content elsewhere in the vault: point at its object.
            self.store.delete(f"data/{oid}")
            record.update(same)
            return ItemResult(src.local, src.path, "deduplicated", size, record["vid"]), record
        return ItemResult(src.local, src.path, "stored", size, record["vid"]), record

    # -- lookups -------------------------------------------------------------------
    def resolve(self, ref: str, *, version: int | None = None, trash: bool = False) -> Version:
        """A single version from a vault path (newest, or number N) or a version/object id."""
        found = self._resolve(ref, version, trash)
        if found is None:
            self.sync()
            found = self._resolve(ref, version, trash)
        if found is None:
            if version is not None and self.index.versions_of(_path_of(ref), trash=trash):
                raise NotFound(f"{ref} has no version {version}")
            raise NotFound(f"{ref}: no such file in the vault")
        return found

    def _resolve(self, ref: str, version: int | None, trash: bool) -> Version | None:
        path = _path_of(ref)
        versions = self.index.versions_of(path, trash=trash) if path else []
        if versions:
            if version is None:
                return versions[-1]
            return next((v for v in versions if v.number == version), None)
        if _looks_like_id(ref) and version is None:
            v = self.index.version_by_id(ref.lower())
            if v is None:
                v = next((x for x in self.index.all_versions() if x.object == ref.lower()), None)
            return v
        return None

    def files_under(self, prefix: str, *, trash: bool = False) -> list[Version]:
        """Newest versions of the files under a folder prefix (``photos/``)."""
        prefix = clean_vault_path(prefix, folder=True)
        return [v for v, _n in self.index.latest(prefix, trash=trash)]

    def is_folder(self, ref: str) -> bool:
        if ref.endswith("/") or ref in ("", "."):
            return True
        return bool(self.index.latest(clean_vault_path(ref, folder=True)))

    # -- download ------------------------------------------------------------------
    def read_version(self, v: Version, dst: BinaryIO, progress: Progress = _noop) -> int:
        """Authenticate and decrypt one version into a stream."""
        data_key = unwrap_data_key(self.master_key, self.vault_id, v.object, v.wrapped_key)
        with self.store.open(f"data/{v.object}") as src:
            if v.offset:
                src.seek(v.offset)
            n = container.decrypt_stream(
                data_key, src, dst, expected_header_hash=v.header_hash, on_progress=progress
            )
        if n != v.size:
            raise IntegrityError(f"{v.path}: {n} bytes decrypted where the record says {v.size}")
        return n

    def download_to(self, v: Version, target: Path, progress: Progress = _noop) -> int:
        """Write one version to a file, atomically: a temporary file renamed into
        place only after the final segment authenticated."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.livedata-{secrets.token_hex(4)}.part"
        try:
            with open(tmp, "wb") as out:
                n = self.read_version(v, out, progress)
            if v.mode is not None:
                os.chmod(tmp, v.mode & 0o7777)
            if v.mtime is not None:
                os.utime(tmp, (v.mtime, v.mtime))
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return n

    def download_tree(
        self,
        versions: list[Version],
        prefix: str,
        root: Path,
        *,
        overwrite: bool,
        report: BatchReport,
        progress: Progress = _noop,
    ) -> BatchReport:
        """Restore files under ``prefix`` into ``root``, keeping going past bad ones."""
        root.mkdir(parents=True, exist_ok=True)
        for v in versions:
            rel = v.path[len(prefix) :]
            try:
                target = safe_target(root, rel)
                if target.exists() and not overwrite:
                    raise UsageError(f"{target} exists: add --overwrite to replace it")
                n = self.download_to(v, target, progress)
                report.items.append(ItemResult(v.path, str(target), "downloaded", n, v.vid))
                report.bytes_read += n
            except (LivedataError, OSError) as e:
                report.fail(v.path, rel, e)
        report.duration = time.monotonic() - report.started
        return report

    # -- changes -------------------------------------------------------------------
    def remove(self, ref: str, *, purge: bool) -> list[Version]:
        """Move a file (all its versions) to the trash, or purge it with its data."""
        self.sync()
        path = _path_of(ref)
        live = self.index.versions_of(path)
        trashed = self.index.versions_of(path, trash=True)
        if not live and not trashed:
            path = self.resolve(ref).path  # by id, or NotFound with the usual message
            live = self.index.versions_of(path)
            trashed = self.index.versions_of(path, trash=True)
        now = time.time()
        if not purge:
            if not live:
                raise NotFound(f"{ref} is already in the trash (--purge removes it for good)")
            self._write_journal([{"t": "rm", "path": path, "time": now}])
            return live
        victims = live + trashed
        self._write_journal([{"t": "purge", "vids": [v.vid for v in victims], "time": now}])
        for obj in {v.object for v in victims}:
            if self.index.object_refs(obj) == 0:
                self.store.delete(f"data/{obj}")
        return victims

    def restore(self, ref: str) -> list[Version]:
        """Bring a removed file back from the trash."""
        self.sync()
        path = _path_of(ref)
        trashed = self.index.versions_of(path, trash=True)
        if not trashed:
            raise NotFound(f"{ref} is not in the trash")
        self._write_journal([{"t": "restore", "path": path, "time": time.time()}])
        return trashed

    def tag(self, ref: str, tags: list[str], *, remove: bool) -> Version:
        self.sync()
        v = self.resolve(ref)
        key = "remove" if remove else "add"
        self._write_journal([{"t": "tag", "vid": v.vid, key: tags}])
        updated = self.index.version_by_id(v.vid)
        assert updated is not None
        return updated

    # -- verify --------------------------------------------------------------------
    def verify(self, *, data: bool, progress: Progress = _noop) -> dict[str, Any]:
        """Check every referenced object: present, header authentic and matching
        its record; with ``data``, every byte authenticated too."""
        self.sync()
        problems: list[dict[str, str]] = []
        checked: set[str] = set()
        n_versions = 0
        for v in self.index.all_versions():
            n_versions += 1
            if v.object in checked:
                continue
            checked.add(v.object)
            try:
                if data:
                    with open(os.devnull, "wb") as sink:
                        self.read_version(v, sink, progress)
                else:
                    data_key = unwrap_data_key(self.master_key, self.vault_id, v.object, v.wrapped_key)
                    with self.store.open(f"data/{v.object}") as src:
                        src.seek(v.offset)
                        header = src.read(container.HEADER_LEN)
                    container.verify_header(data_key, header, v.header_hash)
                    size = self.store.size(f"data/{v.object}")
                    if size != v.offset + v.length:
                        raise IntegrityError(f"object {v.object} is {size} bytes, the record says {v.length}")
            except (LivedataError, OSError) as e:
                problems.append({"path": v.path, "object": v.object, "error": str(e)})
        return {
            "versions": n_versions,
            "objects": len(checked),
            "data_checked": data,
            "problems": problems,
        }

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unchanged(
    src: UploadSource, newest: Version, tags: list[str]
) -> tuple[ItemResult, dict[str, Any] | None]:
    """An unchanged file stores nothing; new tags still reach its newest version."""
    extra = sorted(set(tags) - set(newest.tags))
    record = {"t": "tag", "vid": newest.vid, "add": extra} if extra else None
    return ItemResult(src.local, src.path, "unchanged", newest.size, newest.vid), record


def _same_content(index: Index, by_hash: dict[str, dict[str, Any]], digest: str) -> dict[str, Any] | None:
    """The object fields of a version with this content, stored or still pending."""
    keys = ("object", "offset", "length", "header_hash", "wrapped_key", "key_id")
    if digest in by_hash:
        return {k: by_hash[digest][k] for k in keys}
    same = index.find_by_hash(digest)
    if same is None:
        return None
    return {k: getattr(same, k) for k in keys} | {"wrapped_key": same.wrapped_key.hex()}


def _read_config(store: ObjectStore) -> StoreConfig:
    return StoreConfig.read(store)


def _path_of(ref: str) -> str:
    try:
        return clean_vault_path(ref)
    except UsageError:
        return ""


def _looks_like_id(ref: str) -> bool:
    return len(ref) == 32 and all(c in "0123456789abcdefABCDEF" for c in ref)


def _walk(root: Path, excludes: list[str]) -> Iterator[tuple[Path, str]]:
    """Regular files under ``root`` with their ``/``-separated relative paths, sorted."""

    def excluded(rel: str, name: str) -> bool:
        return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in excludes)

    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not excluded(rel_dir + d, d))
        for name in sorted(filenames):
            rel = rel_dir + name
            if excluded(rel, name):
                continue
            full = base / name
            if full.is_file():
                yield full, rel
