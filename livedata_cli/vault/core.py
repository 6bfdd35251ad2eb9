"""Use cases: the only place that composes store, crypto, keys and index.

Write order, so a process killed at any point leaves the vault consistent:
data object (atomic) → journal object (atomic) → index rows.  A data object
without a journal record is an unreferenced orphan, invisible to users; a
journal without index rows is picked up by the next sync, which every write
command runs first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hmac
import io
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ParamSpec, TypeVar, cast

from livedata_cli import envfail, localfs, locking, names, packs, settings, state
from livedata_cli.audit import recorder
from livedata_cli.crypto import container, filepass
from livedata_cli.crypto.wrap import (
    KeyedHash,
    key_id,
    keyed_hash,
    subkey,
    unwrap_data_key,
    wrap_data_key,
)
from livedata_cli.errors import (
    AuthError,
    IntegrityError,
    LivedataError,
    NotFound,
    Skipped,
    StoreUnreachable,
    UsageError,
    WrongFilePassword,
)
from livedata_cli.index import recovery
from livedata_cli.index.core import Index, PendingUpload, Seen, Version
from livedata_cli.keys.slots import StoreConfig, Unlocker, make_kms_slot, make_slot
from livedata_cli.localfs import UploadSource, clean_vault_path, safe_target
from livedata_cli.mime import TEXT_LIMIT, extract_text, is_text, sniff
from livedata_cli.packs import PackWriter, Sealed, SmallFileSealer, packs_small_files
from livedata_cli.stores import ObjectStore, open_store
from livedata_cli.vault import maintenance, replay, resume, retention

__all__ = ["BatchReport", "ItemResult", "UploadSource", "Vault", "clean_vault_path", "safe_target"]

Progress = Callable[[int], None]

# A journal is flushed after this many records, bytes or seconds, so a killed
# backup of 10,000 files keeps what it had stored.
FLUSH_RECORDS = 2000
FLUSH_BYTES = 256 * 1024 * 1024
FLUSH_SECONDS = 10.0
# A file's note is for a few lines of context, not a document.
NOTE_LIMIT = 64 * 1024
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
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _journal_locked(command: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A Vault method that writes a journal runs under :meth:`Vault.journal_lock`."""

    def wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def inner(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with cast("Vault", args[0]).journal_lock(command):
                return fn(*args, **kwargs)

        return inner

    return wrap


def _noop(_n: int) -> None:
    pass


# -- reports ------------------------------------------------------------------
@dataclass
class ItemResult:
    """What happened to one file of a batch."""

    source: str
    path: str
    status: str  # new, changed, unchanged, failed, skipped, downloaded
    size: int = 0
    version: str | None = None
    stored: int = 0  # bytes written to the store
    deduplicated: bool = False  # content already in the vault: no new data
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "source": names.for_json(self.source),
            "path": names.for_json(self.path),
            "status": self.status,
            "size": self.size,
        }
        if self.version:
            d["id"] = self.version
        if self.status in ("new", "changed"):
            d["stored"] = self.stored
            d["deduplicated"] = self.deduplicated
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
        if isinstance(err, Skipped):
            self.items.append(ItemResult(source, path, "skipped", error=err.message))
            return
        known = envfail.translate(err) if isinstance(err, OSError) else None
        if known is not None:
            msg, code = known.message, int(known.exit_code)
            msg = msg.removeprefix(f"{source}: ")  # the line names the source already
        elif isinstance(err, OSError):
            named = err.filename is not None and os.fsdecode(err.filename) not in (source, path)
            msg = f"{err.strerror or err}" + (f": {os.fsdecode(err.filename)}" if named else "")
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
class SyncResult:
    journals: int
    records: int
    versions: int
    damaged: tuple[str, ...] = ()  # journals that did not authenticate
    bad_records: tuple[str, ...] = ()  # records that could not be applied


# -- the vault ------------------------------------------------------------------
class Vault:
    """An opened vault: its store, its config, the local index, and the key."""

    def __init__(
        self,
        store: ObjectStore,
        cfg: StoreConfig | None,
        index: Index,
        unlocker: Unlocker,
        *,
        vault_id: str | None = None,
    ) -> None:
        self.store = store
        self._cfg = cfg
        self._vault_id = cfg.vault_id if cfg is not None else str(vault_id)
        self.index = index
        self.unlocker = unlocker
        self._master: bytes | None = None
        self._state: state.State | None = None
        # File passwords: asked through this (the CLI sets a prompt), cached by salt once they open.
        self.ask_file_password: Callable[[str], str | None] = _file_password_from_env
        self._file_keys: dict[tuple[str, bytes, str], tuple[filepass.PasswordKey, filepass.PasswordKey]] = {}
        self._file_passwords: list[str] = []
        self._file_lock = threading.Lock()
        self.events = recorder.attach(self)  # this command's audit events (written when the command ends)
        self.store_lock: locking.StoreLock | None = None  # held by Vault.lock (livedata_cli/vault/maintenance.py)
        if cfg is not None:
            _configure_store(store, cfg)

    # -- opening ---------------------------------------------------------------
    @staticmethod
    def open(unlocker: Unlocker, *, recover_index: bool = False) -> Vault:
        """This home's vault.  The store is not touched until something needs it,
        so ``ls`` and ``info`` read the local index alone (no network, no credentials).
        With ``recover_index`` (a rebuild follows) a damaged index is moved aside."""
        saved = settings.VaultSettings.load()
        store = open_store(saved.store)
        index_path = settings.home() / settings.INDEX_FILE
        master = None
        from livedata_cli.index import at_rest

        if at_rest.is_locked(index_path):  # 'lock --index': the key opens the index first
            cfg = _read_config(store)
            if cfg.vault_id != saved.vault_id:
                raise IntegrityError(
                    f"the store {store.url} holds vault {cfg.vault_id}, not {saved.vault_id} as this machine expects"
                )
            master = unlocker.unlock(store, cfg)
            at_rest.unlock(index_path, master, saved.vault_id)
        index = recovery.open_recovering(index_path) if recover_index else Index(index_path)
        vault = Vault(store, None, index, unlocker, vault_id=saved.vault_id)
        vault._master = master
        return vault

    @property
    def cfg(self) -> StoreConfig:
        """The store's config, read (and checked against this machine's) on first use."""
        if self._cfg is None:
            cfg = _read_config(self.store)
            if cfg.vault_id != self._vault_id:
                raise IntegrityError(
                    f"the store {self.store.url} holds vault {cfg.vault_id}, not {self._vault_id} as this machine expects"
                )
            st = self.pins()
            state.check_pins(st, cfg.vault_id, _rotated_key_id(cfg, st), cfg.kms_key_id, self.store.url)
            _configure_store(self.store, cfg)
            self._cfg = cfg
        return self._cfg

    @staticmethod
    def init(
        store_url: str | None,
        unlocker: Unlocker,
        new_secret: Callable[[], str],
        *,
        kms_key: str | None = None,
        kms_per_object: bool = False,
    ) -> tuple[Vault, bool]:
        """Create a vault, or attach to the one already in the store.

        Returns the vault and whether it was created (False: attached).
        """
        url = store_url or str(settings.default_store_path())
        store = open_store(url)
        if settings.VaultSettings.exists():
            current = settings.VaultSettings.load()
            if open_store(current.store).url != store.url:
                raise UsageError(
                    f"{settings.home()} already uses the vault at {current.store}; "
                    "set LIVEDATA_HOME to keep a second vault"
                )
        prepare = getattr(store, "prepare", None)
        if prepare is not None:  # only init creates a folder store
            prepare()
        index = Index(settings.home() / settings.INDEX_FILE)
        if store.exists("config"):
            cfg = _read_config(store)
            pinned = state.State.load()
            if pinned is not None:  # this home used a vault here before: it must be the same one
                state.check_pins(pinned, cfg.vault_id, cfg.key_id, cfg.kms_key_id, store.url)
            vault = Vault(store, cfg, index, unlocker)
            vault._state = pinned or state.State.pin(cfg.vault_id, cfg.key_id, cfg.kms_key_id, cfg.mac is not None)
            vault.unlock()  # before anything is written locally; checks the config MAC
            if kms_key and kms_key != cfg.kms_key_id:
                raise UsageError(f"the vault at {store.url} already exists, with KMS key {cfg.kms_key_id or 'none'}")
            settings.VaultSettings.for_store(store.url, cfg.vault_id).save()
            if pinned is None:
                vault._state.save()  # trust on first use: the config this attach opened with the vault key
            vault.sync(rebuild=True)
            return vault, False
        _refuse_headless(store)
        if kms_per_object and not kms_key:
            raise UsageError("--kms-per-object needs --kms-key")
        secret = None if kms_key else new_secret()
        vault_id = secrets.token_hex(16)
        master = secrets.token_bytes(32)
        cfg = StoreConfig(
            vault_id=vault_id,
            key_id=key_id(master, vault_id),
            created=time.time(),
            kms_key_id=kms_key,
            kms_per_object=kms_per_object,
        )
        cfg = dataclasses.replace(cfg, mac=state.config_mac(master, vault_id, cfg.__dict__))
        if secret is None:

            slot = make_kms_slot(vault_id, master, str(kms_key))
        else:
            slot = make_slot(vault_id, master, secret)
        _configure_store(store, cfg)
        try:
            store.put_bytes(slot.key, slot.to_bytes(), exclusive=True)
            # The config is written last: a vault exists once it has a way in.
            store.put_bytes("config", cfg.to_bytes(), exclusive=True)
        except FileExistsError:
            raise UsageError(f"another process created a vault at {store.url} at the same time") from None
        except OSError as e:
            raise StoreUnreachable(f"cannot write to {store.url}: {e.strerror}") from None
        index.clear()
        settings.VaultSettings.for_store(store.url, vault_id).save()
        state.State.pin(vault_id, cfg.key_id, kms_key, True).save()
        if not kms_key:  # a KMS vault opens through KMS each time, never from the keyring
            unlocker.remember(vault_id, master)
        vault = Vault(store, cfg, index, unlocker)
        vault._master = master
        return vault, True

    def close(self) -> None:
        self.events.close()  # hands the command's audit events over
        self.index.close()

    def unlock(self) -> bytes:
        """The master key, asked for (or taken from the keyring) on first use."""
        if self._master is None:
            master = self.unlocker.unlock(self.store, self.cfg)
            self._check_config_mac(master)
            self._master = master
        return self._master

    def pins(self, *, reload: bool = False) -> state.State:
        """This home's pins and journal heads (``state.json``); a home made before
        pins existed pins the store's config on first use."""
        if self._state is None or reload:
            found = state.State.load()
            if found is None:
                cfg = self._cfg or _read_config(self.store)
                found = state.State.pin(cfg.vault_id, cfg.key_id, cfg.kms_key_id, cfg.mac is not None)
                try:
                    with state.locked():
                        found = state.State.load() or found
                        found.save()
                except OSError:
                    pass  # a read-only home: pinned for this command only
            self._state = found
        return self._state

    def _check_config_mac(self, master: bytes) -> None:
        cfg = self.cfg
        if cfg.mac is not None:
            state.check_config_mac(master, cfg.vault_id, cfg.__dict__, self.store.url)
        elif self.pins().config_mac:
            raise IntegrityError(f"the vault config at {self.store.url} lost its MAC: refusing to use it")
        if self.pins().key_id != cfg.key_id:  # a 'keys rotate' elsewhere, proven by the MAC under the new key
            self._repin(cfg.key_id)

    def _repin(self, new_key_id: str) -> None:
        with state.locked():
            st = self.pins(reload=True)
            st.key_id = new_key_id
            st.save()

    def adopt_key(self, cfg: StoreConfig, master: bytes) -> None:
        """Use a new master key and config from now on (``keys rotate``)."""
        self._cfg, self._master = cfg, master
        self._repin(cfg.key_id)

    def previous_keys(self) -> list[bytes]:
        """Master keys this vault had before ``keys rotate`` (newest first), so
        journals not yet compacted still open."""
        if not self.cfg.previous_keys:
            return []
        from livedata_cli.vault import rotation

        return rotation.open_previous(self.master_key, self.cfg)

    def ensure_config_mac(self, st: state.State) -> None:
        """A vault made before config MACs gets one on its first unlocked write;
        from then on this home refuses a config without one."""
        cfg = self.cfg
        if cfg.mac is None:
            cfg = dataclasses.replace(cfg, mac=state.config_mac(self.master_key, cfg.vault_id, cfg.__dict__))
            self.store.put_bytes("config", cfg.to_bytes())
            self._cfg = cfg
        if not st.config_mac:
            st.config_mac = True
            st.save()

    @property
    def master_key(self) -> bytes:
        return self.unlock()

    @property
    def vault_id(self) -> str:
        return self._vault_id

    # -- sync ----------------------------------------------------------------
    def sync(self, *, rebuild: bool = False, strict: bool = False) -> SyncResult:
        """Replay the store's journals that this index has not seen, and check
        their chain (:mod:`livedata_cli.vault.replay`).  A lost or rolled-back journal
        is exit 5; with ``strict`` (the sync and verify commands) a damaged
        journal is exit 5 and a record that could not be applied exit 8, after
        everything else was applied; otherwise they are a warning.  A rebuild
        is built aside and swapped in when complete, so a killed rebuild leaves
        the old index in use."""
        if rebuild:
            self.index = recovery.aside(self.index)
        out = replay.sync(self, rebuild=rebuild)
        if self.index.swap_to is not None:
            self.index = recovery.swap_in(self.index)
        replay.raise_for(out, strict=strict, notice=self.unlocker.notice)
        return SyncResult(
            out.journals, out.records, self.index.count(), tuple(sorted(out.damaged)), tuple(out.bad_records)
        )

    def _write_journal(self, records: list[dict[str, Any]], index: Index | None = None, *, audited: bool = True) -> None:
        if not records:
            return
        index = index or self.index

        def audit_it() -> None:  # before apply: a purge's paths are still known
            if audited:
                self.events.journal(records, index)

        replay.write(self, records, index, audit_it)

    # -- upload ----------------------------------------------------------------
    def lock(
        self, *, wait: bool = True, exclusive: bool = False, command: str = "livedata"
    ) -> AbstractContextManager[None]:
        """The write lock: in the store folder for local stores (so every home on
        this machine shares it), else in this home; and a lock object in the
        store, shared or (for commands that delete data) ``exclusive``, for
        every machine that shares the store (livedata_cli/vault/maintenance.py)."""
        root = getattr(self.store, "root", None)
        check = getattr(self.store, "check", None)
        if check is not None:  # a folder store that is gone is unreachable, never re-created
            check()
        path = Path(root) / "lock" if isinstance(root, Path) else settings.ensure_home() / "lock"
        return self._locked(path, wait=wait, exclusive=exclusive, command=command)

    @contextlib.contextmanager
    def journal_lock(self, command: str) -> Iterator[None]:
        """A shared lock in the store around a command that writes a journal and
        holds no store lock yet (tag, note, rm, restore, share): a prune's journal
        compaction (exclusive) then never runs between its sync and its journal,
        which could restate the state without its change."""
        if self.store_lock is not None:
            yield
            return
        with maintenance.store_locked(self, exclusive=False, command=command, wait=True):
            yield

    @contextlib.contextmanager
    def _locked(self, path: Path, *, wait: bool, exclusive: bool, command: str) -> Iterator[None]:
        with (
            locking.exclusive(path, wait=wait, notice=self.unlocker.notice),
            maintenance.store_locked(self, exclusive=exclusive, command=command, wait=wait),
        ):
            maintenance.pause_point("locked")
            yield

    def plan_upload(
        self,
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

    def preview_upload(self, plan: list[UploadSource], report: BatchReport) -> None:
        """What ``upload`` would do with ``plan``, from the index and each file's
        stat alone: new, changed (its content is read to know more) or unchanged.
        Nothing is read, locked, unlocked or written."""
        newest = self.index.newest_seen(src.path for src in plan)
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
        self,
        plan: list[UploadSource],
        *,
        tags: list[str],
        report: BatchReport,
        progress: Progress = _noop,
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
        self.sync()
        if password is not None and no_password:
            raise UsageError("--password and --no-password exclude each other")
        # The walk's stat decides most files of a rerun: those only need the few
        # fields of Seen; the others get their full newest Version.
        seen = self.index.newest_seen(s.path for s in plan)
        batch = _Batch(
            hash_key_of=lambda: subkey(self.master_key, self.vault_id, "plaintext-hash"),
            tags=sorted(set(tags)),
            newest={},
            progress=progress,
            stdin=stdin,
            index_content=index_content,
            password_key=filepass.PasswordKey.derive(password) if password is not None else None,
            no_password=no_password,
            derived_from=derived_from or {},
            packer=PackWriter(self.store) if packs_small_files(self.store) else None,
        )
        for src in plan:
            old = seen.get(src.path)
            if old is not None and src.kind == "file" and src.stat is not None and self._unchanged_stat(src.stat, old, batch):
                batch.unchanged[src.path] = old
        batch.newest = self.index.newest_live(p for p in seen if p not in batch.unchanged)
        if any(s.kind == "file" and s.path not in batch.unchanged for s in plan):
            batch.hash_key  # noqa: B018 (unlock here, once, on this thread, not in a worker)
        if jobs is None:
            jobs = REMOTE_JOBS if getattr(self.store, "remote", True) else 1
        self._start_sealer(plan, batch, jobs)
        try:
            self._upload_all(plan, batch, max(1, jobs), report)
        except BaseException as e:
            if batch.packer is not None:
                batch.packer.discard(e)  # no journal names it
            raise
        finally:
            if batch.sealer is not None:
                batch.sealer.close()
        report.duration = time.monotonic() - report.started
        return report

    def _start_sealer(self, plan: list[UploadSource], batch: _Batch, jobs: int) -> None:
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
            or self.cfg.kms_per_object
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
            batch.known = self.index.find_by_hashes([o.digest for o in outcomes if isinstance(o, Sealed)])

        batch.sealer = SmallFileSealer(
            (self.master_key, self.vault_id, batch.hash_key),
            [(src.local, src.stat.st_size) for src in files if src.stat],
            min(cores, SEALER_WORKERS),
            look_up,
        )
        batch.sealed = {src.path for src in files}

    def _upload_all(self, plan: list[UploadSource], batch: _Batch, jobs: int, report: BatchReport) -> None:
        """Run the plan on ``jobs`` threads, collecting records in plan order into
        journals, which are written on a thread of their own meanwhile."""
        pending: list[dict[str, Any]] = []
        unflushed: list[ItemResult] = []  # the items of the records in pending
        pending_bytes = 0
        last_flush = time.monotonic()

        def run(src: UploadSource) -> tuple[ItemResult, dict[str, Any] | None] | Exception:
            try:
                return self._upload_one(src, batch)
            except (LivedataError, OSError) as e:
                return e

        # Files the walk's stat found unchanged are answered here, in plan order,
        # without a trip through the workers (a rerun is mostly those).
        todo = [src for src in plan if src.path not in batch.unchanged]
        with ThreadPoolExecutor(jobs) as pool, _JournalWriter(self, batch) as journals:
            done = iter(map(run, todo) if jobs == 1 else pool.map(run, todo))
            for src in plan:
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
                    len(pending) >= FLUSH_RECORDS
                    or pending_bytes >= FLUSH_BYTES
                    or time.monotonic() - last_flush >= FLUSH_SECONDS
                ):
                    journals.submit(pending)
                    pending, unflushed, pending_bytes, last_flush = [], [], 0, time.monotonic()
            journals.submit(pending)

    def _upload_one(self, src: UploadSource, batch: _Batch) -> tuple[ItemResult, dict[str, Any] | None]:
        """Store one entry; returns its result and the journal record to write (if any)."""
        newest = batch.newest.get(src.path)
        if src.kind != "file":
            return self._upload_link_or_dir(src, batch, newest)
        if batch.sealer is not None and src.path in batch.sealed:
            outcome = batch.sealer.take(src.local)
            if isinstance(outcome, OSError):
                raise outcome
            if outcome is not None:
                return self._store_sealed(src, outcome, batch, newest)
        if src.local == "-":
            f: BinaryIO = batch.stdin if batch.stdin is not None else open(0, "rb", closefd=False)  # noqa: SIM115
            mtime, mode = time.time(), None
        else:
            f = open(src.local, "rb")  # noqa: SIM115
            st = os.fstat(f.fileno())
            mtime, mode = st.st_mtime, stat.S_IMODE(st.st_mode)
            if newest is not None and self._unchanged_stat(st, newest, batch):
                f.close()
                batch.progress(st.st_size)
                return _unchanged(src, newest, batch.tags)
        try:
            return self._store_file(src, f, batch, newest, mtime, mode)
        finally:
            if src.local != "-":
                f.close()

    def _store_sealed(
        self, src: UploadSource, sealed: Sealed, batch: _Batch, newest: Version | None
    ) -> tuple[ItemResult, dict[str, Any] | None]:
        """A small file a worker encrypted: unchanged, a duplicate (its container
        is dropped), or a new member of the pack."""
        st = sealed.stat
        mtime, mode = st.st_mtime, stat.S_IMODE(st.st_mode)
        batch.progress(sealed.size)
        if newest is not None and self._unchanged_stat(st, newest, batch):
            return _unchanged(src, newest, batch.tags)
        claim = batch.claim(sealed.digest)
        try:
            skip = self._skip_if_known(
                src, batch, newest, sealed.digest, sealed.size, mtime, mode, b"", batch.known.get
            )
            if skip is not None:
                if skip[1] is not None and skip[1]["t"] == "put":
                    skip[1]["mime"] = sealed.mime
                return skip
            record = self._put_record(src, newest, batch.tags, sealed.size, mtime, mode, b"", sealed.digest)
            record["mime"] = sealed.mime
            _add_member(batch, record, sealed.oid, sealed.wrapped_key, sealed.container, sealed.header_hash)
            return self._finish_new(src, batch, newest, record, b"", None)
        finally:
            claim.set()

    def _unchanged_stat(self, st: os.stat_result, newest: Version | Seen, batch: _Batch) -> bool:
        """Same size, mtime and mode as the newest version: not read again (as restic)."""
        return (
            newest.kind == "file"
            and (newest.size, newest.mtime, newest.mode) == (st.st_size, st.st_mtime, stat.S_IMODE(st.st_mode))
            and not self._wants_text(newest, batch)
            and newest.protected == batch.protects(newest)
        )

    def _store_file(
        self,
        src: UploadSource,
        f: BinaryIO,
        batch: _Batch,
        newest: Version | None,
        mtime: float | None,
        mode: int | None,
    ) -> tuple[ItemResult, dict[str, Any] | None]:
        protect = self._protection(src.path, batch, newest)
        # Small files are read whole (bounded by SMALL_FILE), so their content
        # is known before anything is written: a duplicate never reaches the store.
        head = f.read(SMALL_FILE + 1)
        if protect is not None:  # never deduplicated, either way: its object and key are its own
            return self._encrypt_new(src, f, batch, newest, mtime, mode, head, None, protect)
        small = len(head) <= SMALL_FILE
        known: str | None = None
        claim: threading.Event | None = None
        if small:
            known = keyed_hash(batch.hash_key, head)
            claim = batch.claim(known)  # equal files in flight: the first stores, the others wait
            skip = self._skip_if_known(src, batch, newest, known, len(head), mtime, mode, head)
            if skip is not None:
                claim.set()
                batch.progress(len(head))
                return skip
        try:
            return self._encrypt_new(src, f, batch, newest, mtime, mode, head, known)
        finally:
            if claim is not None:
                claim.set()

    def _encrypt_new(
        self,
        src: UploadSource,
        f: BinaryIO,
        batch: _Batch,
        newest: Version | None,
        mtime: float | None,
        mode: int | None,
        head: bytes,
        known: str | None,
        protect: filepass.PasswordKey | None = None,
    ) -> tuple[ItemResult, dict[str, Any] | None]:
        small = known is not None
        if batch.packer is not None and len(head) <= SMALL_FILE:
            return self._pack_new(src, batch, newest, mtime, mode, head, known, protect)
        new = self._new_object(src, f, resumable=not small and protect is None)
        oid, data_key = new.oid, new.data_key
        wrapped = new.wrapped_key
        if protect is not None:
            wrapped = self._seal_for(protect, oid, data_key)
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
            skip = self._skip_if_known(src, batch, newest, digest, size, mtime, mode, head)
            if skip is not None:
                self.store.delete(f"data/{oid}")  # hashed while written: drop the copy
                return skip
        record = self._put_record(src, newest, batch.tags, size, mtime, mode, head, digest)
        record.update(
            object=oid,
            length=length,
            header_hash=container.header_hash(header),
            wrapped_key=wrapped.hex(),
        )
        if not small and protect is None and batch.first_with(digest, record) is not record:
            # An equal file of this batch, hashed at the same time, was stored first.
            skip = self._skip_if_known(src, batch, newest, digest, size, mtime, mode, head)
            if skip is not None:
                self.store.delete(f"data/{oid}")
                return skip
        return self._finish_new(src, batch, newest, record, head, protect)

    def _pack_new(
        self,
        src: UploadSource,
        batch: _Batch,
        newest: Version | None,
        mtime: float | None,
        mode: int | None,
        head: bytes,
        known: str | None,
        protect: filepass.PasswordKey | None,
    ) -> tuple[ItemResult, dict[str, Any] | None]:
        """A small file (read whole already) as a member of the upload's pack."""
        oid = secrets.token_hex(16)
        data_key, wrapped = self._new_data_key(oid)
        if protect is not None:
            wrapped = self._seal_for(protect, oid, data_key)
        enc = container.Encryptor(data_key)
        sealed = enc.header + enc.encrypt_segment(head, final=True)
        batch.progress(len(head))
        record = self._put_record(src, newest, batch.tags, len(head), mtime, mode, head, known or "")
        _add_member(batch, record, oid, wrapped, sealed, container.header_hash(enc.header))
        return self._finish_new(src, batch, newest, record, head, protect)

    def _finish_new(
        self,
        src: UploadSource,
        batch: _Batch,
        newest: Version | None,
        record: dict[str, Any],
        head: bytes,
        protect: filepass.PasswordKey | None,
    ) -> tuple[ItemResult, dict[str, Any] | None]:
        if protect is None:
            self._add_text(record, head, batch)
            batch.by_hash.setdefault(record["hash"], record)
        else:  # no content hash or words: the vault key alone must not confirm a guess
            record.update(hash="", protected=True)
        status = "changed" if newest is not None else "new"
        return ItemResult(src.local, src.path, status, record["size"], record["vid"], stored=record["length"]), record

    def _skip_if_known(
        self,
        src: UploadSource,
        batch: _Batch,
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
            and not self._wants_text(newest, batch)
            and not newest.protected  # reached with --no-password: the new version drops it
        ):
            return _unchanged(src, newest, batch.tags)
        same = batch.by_hash.get(digest)
        fields: dict[str, Any] | None = None
        if same is not None:
            fields = {k: same.get(k) for k in _OBJECT_FIELDS}
        else:
            found = (look_up or self.index.find_by_hash)(digest)
            if found is not None:
                fields = {k: getattr(found, k) for k in _OBJECT_FIELDS} | {"wrapped_key": found.wrapped_key.hex()}
        if fields is None:
            return None
        record = self._put_record(src, newest, batch.tags, size, mtime, mode, head, digest)
        self._add_text(record, head, batch)
        record.update(fields)
        status = "changed" if newest is not None else "new"
        return ItemResult(src.local, src.path, status, size, record["vid"], deduplicated=True), record

    def _add_text(self, record: dict[str, Any], head: bytes, batch: _Batch) -> None:
        """With --index-content, the start of a text file goes into its record
        (encrypted in the journal), so search finds its words on every machine."""
        if batch.index_content and is_text(record.get("mime")):
            # "" when the start is not text after all: indexed, with no words.
            record["text"] = extract_text(head[:TEXT_LIMIT]) or ""

    def _wants_text(self, newest: Version | Seen, batch: _Batch) -> bool:
        """An unchanged text file stored without --index-content gets a new
        version (same data object) that carries its text."""
        return batch.index_content and is_text(newest.mime) and not self.index.has_text(newest.vid)

    def _upload_link_or_dir(
        self, src: UploadSource, batch: _Batch, newest: Version | None
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
        record = self._put_record(src, newest, batch.tags, 0, mtime, mode, b"", "")
        record.update(kind=src.kind, target=target, mime="inode/symlink" if target else "inode/directory")
        status = "changed" if newest is not None else "new"
        return ItemResult(src.local, src.path, status, 0, record["vid"]), record

    def _put_record(
        self,
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
            "key_id": self.cfg.key_id,
            "created": time.time(),
            "derived_from": None,
            "tags": sorted(set(newest.tags if newest else ()) | set(tags)),
            "notes": newest.notes if newest else "",
        }

    # -- lookups -------------------------------------------------------------------
    def resolve(
        self, ref: str, *, version: int | None = None, trash: bool = False, at: float | None = None
    ) -> Version:
        """One version: of a vault path (its newest, number N, or the newest at a
        time), or by version or object id."""
        found = self._resolve(ref, version, trash, at)
        if found is None:
            self.sync()
            found = self._resolve(ref, version, trash, at)
        if found is None:
            path = _path_of(ref)
            if version is not None and version in self.index.pruned_numbers(path):
                raise NotFound(f"version {version} of {path} was pruned")
            if version is not None and self.index.versions_of(path, trash=trash):
                raise NotFound(f"{ref} has no version {version}")
            raise NotFound(f"{ref}: no such file in the vault" + (" at that time" if at else ""))
        if version is None and at is None and found.path == _path_of(ref):
            self._refuse_stale(found)
        return found

    def _refuse_stale(self, v: Version) -> None:
        """Never serve a file's older version as its newest: a damaged journal
        written after it may hold a newer one (or its removal)."""
        stale = replay.stale_since(self.index)
        if stale is not None and v.created <= stale[1]:
            raise IntegrityError(
                f"{v.path}: its newest version may be in damaged journal {stale[0]}; "
                f"'--version {v.number}' gets the newest version this machine can read"
            )

    def _resolve(self, ref: str, version: int | None, trash: bool, at: float | None) -> Version | None:
        path = _path_of(ref)
        if path and at is not None:
            return next((v for v in self.index.as_of(path, at) if v.path == path), None)
        versions = self.index.versions_of(path, trash=trash) if path else []
        if versions:
            if version is None:
                return versions[-1]
            return next((v for v in versions if v.number == version), None)
        if _looks_like_id(ref) and version is None:
            return self.index.version_by_id(ref.lower()) or self.index.version_by_object(ref.lower())
        return None

    def files_under(self, prefix: str, *, trash: bool = False) -> list[Version]:
        """Newest versions of the entries under a folder prefix (``photos/``)."""
        prefix = clean_vault_path(prefix, folder=True)
        return [v for v, _n in self.index.latest(prefix, trash=trash)]

    def select_tree(
        self, ref: str, *, version: int | None, at: float | None, latest: bool, tags: list[str]
    ) -> tuple[str, list[Version]] | None:
        """What a download of ``ref`` restores as a tree (prefix and entries), or
        None when ``ref`` names a single file."""
        if latest:
            return self.latest_set(ref, tags)
        path = _path_of(ref)
        if version is not None or (path and not ref.endswith("/") and self.index.versions_of(path)):
            return None
        prefix = clean_vault_path(ref, folder=True)
        for attempt in range(2):
            entries = self.index.as_of(prefix, at) if at is not None else self.files_under(prefix)
            if tags:
                entries = [v for v in entries if v.kind != "dir" and set(tags) <= set(v.tags)]
            if entries or attempt:
                break
            self.sync()
        if entries:
            return prefix, entries
        if ref.endswith("/") or not path or tags or at is not None:
            raise NotFound(f"nothing under {prefix or 'the vault root'}" + (" with those tags" if tags else ""))
        return None  # a plain name: resolve() says whether it exists

    # -- download ------------------------------------------------------------------
    def read_version(self, v: Version, dst: BinaryIO, progress: Progress = _noop) -> int:
        """Authenticate and decrypt one version into a stream."""
        data_key = self._data_key(v.object, v.wrapped_key)
        try:
            source = packs.open_stored(self.store, v.store_key, v.pack, v.offset, v.length)
        except NotFound:
            moved = self._repacked(v)
            if moved is None:
                raise
            v, source = moved, packs.open_stored(self.store, moved.store_key, moved.pack, moved.offset, moved.length)
        with source as src:
            if v.offset and not v.pack:
                src.seek(v.offset)
            n = container.decrypt_stream(
                data_key,
                cast(BinaryIO, packs.Slice(src, v.length)) if v.pack else src,
                dst,
                expected_header_hash=v.header_hash,
                on_progress=progress,
            )
        if n != v.size:
            raise IntegrityError(f"{v.path}: {n} bytes decrypted where the record says {v.size}")
        self.events.read(v.path, v.object)
        return n

    def _repacked(self, v: Version) -> Version | None:
        """A packed version whose pack is gone may have been moved by a prune on
        another machine (livedata_cli/vault/maintenance.py): replay, and look again."""
        if not v.pack:
            return None
        self.sync()
        moved = self.index.version_by_id(v.vid)
        return moved if moved is not None and moved.store_key != v.store_key else None

    def download_to(self, v: Version, target: Path, progress: Progress = _noop) -> int:
        """Write one version to a file, atomically: a temporary file renamed into
        place only after the final segment authenticated."""
        if v.kind == "symlink":
            target.parent.mkdir(parents=True, exist_ok=True)
            localfs.make_symlink(target, names.to_local(v.target or ""), v.mtime)
            return 0
        if v.kind == "dir":
            raise UsageError(f"{v.path} is a folder: download {v.path}/ to restore its contents")
        return localfs.write_file(
            target, lambda out: self.read_version(v, out, progress), mode=v.mode, mtime=v.mtime
        )

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
        """Restore entries under ``prefix`` into ``root``: files, symlinks (never
        followed) and folders, keeping going past bad ones.  Folder modes and
        times are set last, deepest first, so a read-only folder can be filled.
        Files are fetched in ranges and in parallel (livedata_cli/vault/restore.py)."""
        from livedata_cli.vault import restore

        restore.restore_tree(self, versions, prefix, root, overwrite=overwrite, report=report, progress=progress)
        report.duration = time.monotonic() - report.started
        return report

    def already_restored(self, v: Version, target: Path) -> bool:
        """Whether ``target`` already holds exactly this version: same size and
        modification time, and the same content (its keyed hash; a protected
        version, which has none, is decrypted and compared)."""
        if v.kind == "symlink":
            return localfs.same_link(target, names.to_local(v.target or ""))
        if v.kind != "file" or not localfs.same_file(target, v.size, v.mtime):
            return False
        try:
            if v.hash:
                digest = localfs.file_digest(target, subkey(self.master_key, self.vault_id, "plaintext-hash"))
                return hmac.compare_digest(digest, v.hash)
            with open(target, "rb") as local:
                same = _SameAs(local)
                self.read_version(v, cast(BinaryIO, same))
                return same.equal and not local.read(1)
        except (OSError, AuthError):  # unreadable, or its file password is not at hand
            return False

    def latest_set(self, prefix: str, tags: list[str]) -> tuple[str, list[Version]]:
        """The newest set under a prefix (``ci/<run>/``) having a file with all these
        tags: what ``download ci/ --latest --tag branch=main`` restores."""
        prefix = clean_vault_path(prefix, folder=True)
        groups: dict[str, list[Version]] = {}
        for v, _n in self.index.latest(prefix):
            first, sep, _rest = v.path[len(prefix) :].partition("/")
            if sep:
                groups.setdefault(first, []).append(v)
        wanted = set(tags)
        candidates = {
            name: vs for name, vs in groups.items() if any(wanted <= set(v.tags) for v in vs)
        }
        if not candidates:
            raise NotFound(f"no set under {prefix or 'the vault'} has the tags {', '.join(tags) or '(any)'}")
        name = max(candidates, key=lambda g: max(v.created for v in candidates[g]))
        return f"{prefix}{name}/", candidates[name]

    def prune(self, prefix: str, policy: retention.Policy | None, *, dry_run: bool) -> dict[str, Any]:
        """Forget the versions the policy does not keep (none without a policy),
        then reclaim space: partial uploads, unreferenced objects, dead space in
        packs, abandoned multipart uploads (livedata_cli/vault/maintenance.py).  Run
        it under the exclusive lock: ``lock(exclusive=True)``."""
        if policy is not None:
            policy.check()
        self.sync(strict=True)  # a damaged or unreadable journal stops a prune: its objects look unreferenced
        prefix = clean_vault_path(prefix, folder=bool(prefix)) if prefix else ""
        drop: list[Version] = []
        kept = 0
        for newest, _n in self.index.latest(prefix) if policy is not None else []:
            versions = list(reversed(self.index.versions_of(newest.path)))
            keep = retention.keep([v.created for v in versions], policy)  # type: ignore[arg-type]
            kept += len(keep)
            drop += [v for i, v in enumerate(versions) if i not in keep]
        if policy is None:
            kept = self.index.count()
        if drop and not dry_run:
            self._write_journal([{"t": "purge", "vids": [v.vid for v in drop], "time": time.time()}])
        reclaimed = maintenance.reclaim(self, dry_run=dry_run, ignore={v.vid for v in drop})
        return {
            "dry_run": dry_run,
            "kept": kept,
            "removed": [{"path": v.path, "version": v.number, "id": v.vid, "created": v.created} for v in drop],
            "bytes_freed": reclaimed.total_bytes,
            "reclaimed": reclaimed.to_json(),
        }

    # -- changes -------------------------------------------------------------------
    @_journal_locked("rm")
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
        maintenance.pause_point("purge-journaled")
        self._delete_unreferenced(victims)
        return victims

    @_journal_locked("rm")
    def remove_many(
        self, refs: list[str], *, purge: bool, recursive: bool = False
    ) -> tuple[dict[str, list[Version]], list[tuple[str, LivedataError]]]:
        """``rm`` of several paths, globs (``'photos/*.jpg'``) and, with ``recursive``,
        prefixes (``photos/``), in one journal: the removed versions by path, and
        the refs that named nothing (each with its error).  A file already in the
        trash counts only for a purge."""
        self.sync()
        chosen: dict[str, tuple[list[Version], list[Version]]] = {}
        failed: list[tuple[str, LivedataError]] = []
        for ref in refs:
            try:
                paths = self._paths_for_rm(ref, purge=purge, recursive=recursive)
            except LivedataError as e:
                failed.append((ref, e))
                continue
            for path in paths:
                live, trashed = self.index.versions_of(path), self.index.versions_of(path, trash=True)
                if live or (purge and trashed):
                    chosen[path] = (live, trashed)
            if not paths:
                failed.append((ref, NotFound(f"{ref}: no file matches" if _is_glob(ref) else f"nothing under {ref}")))
        now = time.time()
        if purge:
            victims = [v for live, trashed in chosen.values() for v in live + trashed]
            if victims:
                self._write_journal([{"t": "purge", "vids": [v.vid for v in victims], "time": now}])
                maintenance.pause_point("purge-journaled")
                self._delete_unreferenced(victims)
            return {p: live + trashed for p, (live, trashed) in chosen.items()}, failed
        if chosen:
            self._write_journal([{"t": "rm", "path": p, "time": now} for p in chosen])
        return {p: live for p, (live, _t) in chosen.items()}, failed

    def _paths_for_rm(self, ref: str, *, purge: bool, recursive: bool) -> list[str]:
        if ref.endswith("/") or (recursive and not _is_glob(ref) and not self.index.versions_of(_path_of(ref))
                                 and not self.index.versions_of(_path_of(ref), trash=True)):
            if not recursive:
                raise UsageError(f"{ref} is a folder: add --recursive to remove everything under it")
            prefix = clean_vault_path(ref, folder=True)
            found = [v.path for v, _n in self.index.latest(prefix)]
            if purge:
                found += [v.path for v, _n in self.index.latest(prefix, trash=True)]
            return sorted(set(found))
        if _is_glob(ref):
            import fnmatch

            pattern = clean_vault_path(ref)
            found = [p for p in self.index.newest_paths() if fnmatch.fnmatchcase(p, pattern)]
            if purge:
                found += [p for p in self.index.newest_paths(trash=True) if fnmatch.fnmatchcase(p, pattern)]
            return sorted(set(found))
        path = _path_of(ref)
        if not self.index.versions_of(path) and not self.index.versions_of(path, trash=True):
            path = self.resolve(ref).path  # by id, or NotFound with the usual message
        if not purge and not self.index.versions_of(path):
            raise NotFound(f"{ref} is already in the trash (--purge removes it for good)")
        return [path]

    def _delete_unreferenced(self, gone: list[Version]) -> int:
        """Delete the store objects that no version refers to any more (a pack
        when none of its members is left); returns the bytes freed."""
        freed = 0
        for key in sorted({v.store_key for v in gone if v.object}):
            maintenance.guard_fast(self)
            if self.index.store_refs(key) == 0 and self.store.exists(key):
                freed += self.store.size(key)
                self.store.delete(key)
        packed = [v.vid for v in gone if v.pack]
        if packed:  # their share links' copies (livedata_cli/vault/share_links.py)
            from livedata_cli.vault import share_links

            freed += share_links.delete_copies(self, packed)
        return freed

    @_journal_locked("restore")
    def restore(self, ref: str) -> list[Version]:
        """Bring a removed file back from the trash."""
        self.sync()
        path = _path_of(ref)
        trashed = self.index.versions_of(path, trash=True)
        if not trashed:
            raise NotFound(f"{ref} is not in the trash")
        self._write_journal([{"t": "restore", "path": path, "time": time.time()}])
        return trashed

    @_journal_locked("tag")
    def tag(self, ref: str, tags: list[str], *, remove: bool) -> Version:
        self.sync()
        v = self.resolve(ref)
        key = "remove" if remove else "add"
        self._write_journal([{"t": "tag", "vid": v.vid, key: tags}])
        updated = self.index.version_by_id(v.vid)
        assert updated is not None
        return updated

    @_journal_locked("note")
    def note(self, ref: str, text: str, *, append: bool = False) -> Version:
        """Set (or, with ``append``, extend) the note of a file's newest version;
        an empty text removes it.  New versions inherit the note."""
        self.sync()
        v = self.resolve(ref)
        if append and v.notes:
            text = v.notes.rstrip("\n") + "\n" + text
        if len(text.encode()) > NOTE_LIMIT:
            raise UsageError(f"a note holds at most {NOTE_LIMIT // 1024} KiB")
        self._write_journal([{"t": "note", "vid": v.vid, "text": text}])
        updated = self.index.version_by_id(v.vid)
        assert updated is not None
        return updated

    # -- verify --------------------------------------------------------------------
    def verify(self, *, data: bool, progress: Progress = _noop) -> dict[str, Any]:
        """Check every referenced object: present, header authentic and matching
        its record; with ``data``, every byte authenticated too."""
        self.events.reads = False  # reading to check is not a download
        self.sync(strict=True)
        problems: list[dict[str, str]] = []
        checked: set[str] = set()
        sizes: dict[str, int] = {}  # per store object: a pack is looked at once
        n_versions = 0
        to_read: list[Version] = []  # with data: read in ranges and in parallel (restore.py)
        for v in self.index.all_versions():
            n_versions += 1
            if v.kind != "file" or v.object in checked:
                continue
            checked.add(v.object)
            if data:
                to_read.append(v)
                continue
            try:
                packs.check_size(self.store, v, sizes)
                if v.protected:  # its key needs the file password: the size is what can be checked
                    continue
                if data:
                    with open(os.devnull, "wb") as sink:
                        self.read_version(v, sink, progress)
                else:
                    data_key = self._data_key(v.object, v.wrapped_key)
                    with packs.open_range(self.store, v.store_key, v.offset, container.HEADER_LEN) as src:
                        header = src.read(container.HEADER_LEN)
                    container.verify_header(data_key, header, v.header_hash)
            except (LivedataError, OSError) as e:
                problems.append({"path": v.path, "object": v.object, "error": str(e)})
        if data:
            from livedata_cli.vault import restore

            problems += restore.verify_data(self, to_read, progress)
        problems += replay.check_stored(self)
        return {
            "versions": n_versions,
            "objects": len(checked),
            "data_checked": data,
            "problems": problems,
            "abandoned_uploads_aborted": self.abort_abandoned_uploads(),
            "reclaimable": maintenance.reclaimable(self).to_json(),
        }

    # -- data keys and new objects (KMS per-object keys, resumable uploads) ----------
    def data_key_of(self, v: Version) -> bytes:
        """A version's data key (a mounted file is decrypted segment by segment with it)."""
        return self._data_key(v.object, v.wrapped_key)

    def _data_key(self, oid: str, wrapped: bytes) -> bytes:
        """The data key of an object, from its record's wrapped key."""
        from livedata_cli.keys import kms

        if kms.is_per_object(wrapped):
            return kms.open_data_key(self.cfg.kms_key_id, self.master_key, self.vault_id, oid, wrapped)
        try:
            key = unwrap_data_key(self.master_key, self.vault_id, oid, wrapped)
        except IntegrityError:
            if not self.cfg.previous_keys:
                raise
            from livedata_cli.vault import rotation

            key = rotation.unwrap_any(self, oid, wrapped)
        if filepass.is_envelope(key):  # the vault key found a password envelope, not the data key
            return self._open_protected(oid, key)[0]
        return key

    def _open_protected(self, oid: str, envelope: bytes) -> tuple[bytes, filepass.PasswordKey]:
        """The data key inside a file password envelope, and the password key that opened it.

        Keys that opened an envelope are cached by salt, and passwords that
        worked are tried first, so a batch asks once per password, not per file.
        On an API store the envelope also needs the release secret of its
        server lock, which the server gives only for the right verifier and
        refuses (exit 7) after a few wrong ones.
        """
        from livedata_cli.remote import password_gates

        params, salt, lock = filepass.envelope_params(envelope)
        ident = (*filepass.key_ident(params, salt), lock or "")
        with self._file_lock:
            cached = self._file_keys.get(ident)
            if cached is not None:
                data_key = filepass.open_envelope(cached[0], self.vault_id, oid, envelope)
                if data_key is not None:
                    return data_key, cached[1]
            found = self.index.version_by_object(oid)
            path = found.path if found is not None else oid
            tried: set[str] = set()
            for known in [*self._file_passwords, None]:
                password = known if known is not None else self.ask_file_password(path)
                if password is None:
                    raise AuthError(
                        f"{path} is password-protected: set LIVEDATA_FILE_PASSWORD, or run on a terminal to be asked"
                    )
                if password in tried:  # tried already: never spend a server attempt on it twice
                    break
                tried.add(password)
                key = filepass.PasswordKey.derive(password, params, salt)
                opener: filepass.PasswordKey | None = key
                if lock is not None:
                    try:
                        opener = key.gated(password_gates.release(self.store, lock, key.verifier(), path))
                    except WrongFilePassword:
                        opener = None
                data_key = filepass.open_envelope(opener, self.vault_id, oid, envelope) if opener else None
                if data_key is not None and opener is not None:
                    if known is None:
                        self._file_passwords.append(password)
                    self._file_keys[ident] = (opener, key)
                    return data_key, key
            self.events.add("file-password", path, object=oid, result="denied", code=4, detail="wrong file password")
            raise AuthError(f"wrong file password for {path}")

    def _seal_for(self, key: filepass.PasswordKey, oid: str, data_key: bytes) -> bytes:
        """A data key's record form under a file password (and, on an API store, a new server lock)."""
        from livedata_cli.remote import password_gates

        lock, sealer = None, key
        if password_gates.supported(self.store):
            lock, secret = password_gates.create(self.store, key.verifier())
            sealer = key.gated(secret)
        envelope = filepass.seal_data_key(sealer, self.vault_id, oid, data_key, lock=lock)
        return wrap_data_key(self.master_key, self.vault_id, oid, envelope)

    def _protection(self, path: str, batch: _Batch, newest: Version | None) -> filepass.PasswordKey | None:
        """The password key a new version of ``path`` is stored under, or None."""
        if batch.no_password:
            return None
        if batch.password_key is not None:
            return batch.password_key
        source = self.index.version_by_id(batch.derived_from[path]) if path in batch.derived_from else None
        for v in (newest, source):
            if v is not None and v.protected:
                envelope = unwrap_data_key(self.master_key, self.vault_id, v.object, v.wrapped_key)
                return self._open_protected(v.object, envelope)[1]
        return None

    def check_file_password(self, v: Version) -> None:
        """Ask for a protected version's password now (AuthError if it is missing or wrong)."""
        if v.protected:
            self._data_key(v.object, v.wrapped_key)

    def set_file_password(self, ref: str, action: str, new_password: str | None) -> list[Version]:
        """Set, change or remove the file password of every version of a file.

        ``set`` and ``change`` re-encrypt every version under a fresh data key
        into new objects and delete the old ones (``reseal.py``), so the old
        wrapped keys that earlier journals keep open nothing; ``remove`` only
        rewraps the data keys.  ``change`` and ``remove`` need the current
        password (asked through ``ask_file_password``).
        """
        self.sync()
        v = self.resolve(ref)
        if v.kind != "file":
            raise UsageError(f"{v.path} is a {v.kind}: only files have passwords")
        versions = [
            x for x in self.index.versions_of(v.path) + self.index.versions_of(v.path, trash=True) if x.kind == "file"
        ]
        protected = any(x.protected for x in versions)
        if action == "set" and protected:
            raise UsageError(f"{v.path} already has a file password: use 'livedata password change'")
        if action != "set" and not protected:
            raise UsageError(f"{v.path} has no file password: use 'livedata password set'")
        keys = [(x, self._data_key(x.object, x.wrapped_key)) for x in versions]  # every key opens before any change
        new_key = filepass.PasswordKey.derive(new_password) if new_password is not None else None
        old_locks = {lock for x in versions if x.protected for lock in [self._lock_of(x)] if lock}
        from livedata_cli.vault import reseal

        if new_key is not None:  # new objects first; the old ones go once the journal names the new
            records = reseal.reseal_versions(self, keys, new_key)
        else:
            records = [
                {"t": "file-password", "vid": x.vid, "protected": False, "time": time.time(),
                 "wrapped_key": wrap_data_key(self.master_key, self.vault_id, x.object, data_key).hex()}
                for x, data_key in keys
            ]
        self._write_journal(records)
        if new_key is not None:
            reseal.drop_old_objects(self, versions)
        if old_locks:
            from livedata_cli.remote import password_gates

            for lock in sorted(old_locks):  # after the journal: a crash before leaves a lock unused, not a file shut
                password_gates.delete(self.store, lock)
        return [self.index.version_by_id(x.vid) or x for x in versions]

    def _lock_of(self, v: Version) -> str | None:
        """The server lock of a protected version's envelope, if it has one."""
        inner = unwrap_data_key(self.master_key, self.vault_id, v.object, v.wrapped_key)
        return filepass.envelope_params(inner)[2] if filepass.is_envelope(inner) else None

    def unprotected_copies(self, versions: list[Version]) -> list[str]:
        """Other paths whose versions share a data object with these and have no password."""
        objects = {v.object for v in versions}
        vids = {v.vid for v in versions}
        return sorted(
            {x.path for x in self.index.all_versions() if x.object in objects and x.vid not in vids and not x.protected}
        )

    def _new_data_key(self, oid: str) -> tuple[bytes, bytes]:
        """A fresh data key and its wrapped form for the record."""
        if self.cfg.kms_per_object and self.cfg.kms_key_id:
            from livedata_cli.keys import kms

            return kms.new_data_key(self.cfg.kms_key_id, self.master_key, self.vault_id, oid)
        data_key = secrets.token_bytes(32)
        return data_key, wrap_data_key(self.master_key, self.vault_id, oid, data_key)

    def _new_object(self, src: UploadSource, f: BinaryIO, *, resumable: bool) -> _NewObject:
        """Object id, data key and writer for a new data object.

        Where the store can resume multipart uploads (S3), a file's upload is
        recorded when it starts; a rerun after a crash finds the record (same
        source, size and mtime), reuses the object id, data key and salt, so
        the container regenerates byte for byte and the parts already in the
        store are not sent again.  The record goes once the object is whole.
        It is reused only when every part sent holds the same plaintext now
        (keyed hashes kept with the record, ``resume.py``): else a changed part
        would go out again under the same key and nonces.
        """
        start = getattr(self.store, "resumable_writer", None)
        if start is None or not resumable or src.local == "-":
            oid = secrets.token_hex(16)
            data_key, wrapped = self._new_data_key(oid)
            return _NewObject(oid, data_key, wrapped, None, self.store.writer(f"data/{oid}"))
        from livedata_cli.index.core import PendingUploads

        st = os.fstat(f.fileno())
        source = os.path.abspath(src.local)
        pending = PendingUploads(settings.home() / settings.INDEX_FILE)
        found = pending.find(source, src.path)
        macs = resume.mac_key(self.master_key, self.vault_id)
        per_part = resume.part_plaintext(found.part_size) if found else 0
        if found is not None and (
            (found.size, found.mtime) != (st.st_size, st.st_mtime)
            or not resume.parts_unchanged(  # same key and nonces only over the same plaintext
                macs, found.object, f, per_part, self._parts_sent(found), pending.part_macs(found.object)
            )
        ):
            self.store.abort_upload(f"data/{found.object}", found.upload_id)  # type: ignore[attr-defined]
            pending.drop(found.object)
            found = None
        if found is not None:
            oid, wrapped, salt = found.object, found.wrapped_key, found.salt
            data_key = self._data_key(oid, wrapped)
        else:
            oid, salt = secrets.token_hex(16), secrets.token_bytes(container.SALT_LEN)
            data_key, wrapped = self._new_data_key(oid)

        hashed: list[resume.PartMacs] = []

        def hash_parts(part_size: int) -> None:
            save = functools.partial(pending.save_part, oid)
            hashed.append(resume.PartMacs(macs, oid, part_size, st.st_size, save))

        if found is not None:
            hash_parts(found.part_size)

        def on_start(upload_id: str, part_size: int) -> None:
            hash_parts(part_size)
            pending.save(
                PendingUpload(oid, upload_id, source, src.path, st.st_size, st.st_mtime, wrapped, salt, part_size, time.time())
            )

        @contextlib.contextmanager
        def writer() -> Iterator[BinaryIO]:
            try:
                with start(
                    f"data/{oid}",
                    size=container.container_size(st.st_size),
                    upload_id=found.upload_id if found else None,
                    part_size=found.part_size if found else None,
                    on_start=on_start,
                ) as out:
                    yield hashed[0].guard(out) if hashed else out
                pending.drop(oid)
            finally:
                pending.close()

        return _NewObject(oid, data_key, wrapped, salt, writer(), lambda mv: hashed[0].update(mv) if hashed else None)

    def _parts_sent(self, found: PendingUpload) -> list[int]:
        """The part numbers a pending upload holds in the store; part 0, which
        no hash matches, when the upload is gone (whatever the store kept of it)."""
        try:
            return list(self.store.list_parts(f"data/{found.object}", found.upload_id))  # type: ignore[attr-defined]
        except NotFound:
            return [0]

    def abort_abandoned_uploads(self) -> int:
        """Abort this vault's multipart uploads that no pending record here knows
        and that are older than ``LIVEDATA_S3_ABANDON_AFTER`` seconds (a day)."""
        list_uploads = getattr(self.store, "list_uploads", None)
        if list_uploads is None:
            return 0
        from livedata_cli.index.core import PendingUploads

        try:
            age = float(os.environ.get("LIVEDATA_S3_ABANDON_AFTER", "") or 86400)
        except ValueError:
            raise UsageError("LIVEDATA_S3_ABANDON_AFTER must be a number of seconds") from None
        pending = PendingUploads(settings.home() / settings.INDEX_FILE)
        try:
            known = pending.upload_ids()
        finally:
            pending.close()
        now, aborted = time.time(), 0
        for key, upload_id, started in list_uploads("data/"):
            if upload_id not in known and now - started >= age:
                self.store.abort_upload(key, upload_id)  # type: ignore[attr-defined]
                aborted += 1
        return aborted

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    batch: _Batch, record: dict[str, Any], oid: str, wrapped: bytes, sealed: bytes, header_hash: str
) -> None:
    """Append a whole container to the upload's pack and point its record there."""
    assert batch.packer is not None
    pack, offset = batch.packer.add(sealed)
    record.update(
        object=oid, pack=pack, offset=offset, length=len(sealed), header_hash=header_hash, wrapped_key=wrapped.hex()
    )


class _SameAs(io.RawIOBase):
    """A sink that compares what is written with a file's bytes."""

    def __init__(self, local: BinaryIO) -> None:
        self._local = local
        self.equal = True

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        if self.equal and self._local.read(len(data)) != data:
            self.equal = False
        return len(data)


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


@dataclass
class _NewObject:
    """Where a new data object goes: its id, data key (and record form), the
    container salt (None: random) and the store writer."""

    oid: str
    data_key: bytes
    wrapped_key: bytes
    salt: bytes | None
    writer: AbstractContextManager[BinaryIO]
    on_plaintext: Callable[[memoryview], None] | None = None  # a resumable upload's part hashes


@dataclass
class _Batch:
    """What every file of one upload command shares."""

    hash_key_of: Callable[[], bytes]  # unlocks the vault: not called when nothing changed
    tags: list[str]
    newest: dict[str, Version]  # the newest live version of each path that may have changed
    progress: Progress
    stdin: BinaryIO | None
    unchanged: dict[str, Seen] = field(default_factory=dict)  # paths the walk's stat found unchanged
    by_hash: dict[str, dict[str, Any]] = field(default_factory=dict)  # this batch's content, not yet indexed
    index_content: bool = False  # keep the text of text-like files for search
    password_key: filepass.PasswordKey | None = None  # --password: every file stored gets it
    no_password: bool = False  # --no-password: new versions of protected paths get none
    derived_from: dict[str, str] = field(default_factory=dict)  # conversions: path -> source version id
    packer: PackWriter | None = None  # small files go into packs (folder stores)
    sealer: SmallFileSealer | None = None  # small files encrypted by worker processes
    sealed: set[str] = field(default_factory=set)  # the paths the sealer has
    known: dict[str, Version] = field(default_factory=dict)  # the index's versions of the sealer's current chunk
    _claims: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _hash_key: bytes | AuthError | None = None

    @property
    def hash_key(self) -> bytes:
        """The plaintext-hash key, derived (and the vault unlocked) on first use, so
        a rerun over an unchanged tree needs no passphrase stretch at all.  A
        failed unlock is kept: it is asked for once, not once per file."""
        if self._hash_key is None:
            with self._lock:
                if self._hash_key is None:
                    try:
                        self._hash_key = self.hash_key_of()
                    except AuthError as e:
                        self._hash_key = e
        if isinstance(self._hash_key, AuthError):
            raise self._hash_key
        return self._hash_key

    def claim(self, digest: str) -> threading.Event:
        """First caller for a content hash gets a fresh event to set when its record
        is in ``by_hash``; later callers wait for that, then find the record."""
        with self._lock:
            event = self._claims.get(digest)
            if event is None:
                event = self._claims[digest] = threading.Event()
                return event
        event.wait()
        return threading.Event()

    def first_with(self, digest: str, record: dict[str, Any]) -> dict[str, Any]:
        """The record that stores this content in this batch: ``record``, unless
        another was registered first (the check and the claim are one step)."""
        with self._lock:
            return self.by_hash.setdefault(digest, record)

    def protects(self, newest: Version | Seen) -> bool:
        """Whether a new version of this path would have a file password."""
        return not self.no_password and (self.password_key is not None or newest.protected)

    def indexed(self, records: list[dict[str, Any]]) -> None:
        """These records are in the index now: lookups find them there."""
        with self._lock:
            for rec in records:
                if self.by_hash.get(rec.get("hash", "")) is rec:
                    del self.by_hash[rec["hash"]]
            self._claims = {d: e for d, e in self._claims.items() if not e.is_set()}


class _JournalWriter:
    """Writes an upload's journals one at a time on a thread of its own, so the
    next files are read and encrypted while SQLite, zlib and the disk flush
    work (they release the GIL).  It has its own index connection: the
    batch's ``by_hash`` answers for records until their journal is in."""

    def __init__(self, vault: Vault, batch: _Batch) -> None:
        self._vault = vault
        self._batch = batch
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="livedata-journal")
        self._index: Index | None = None
        self._inflight: Future[None] | None = None

    def submit(self, records: list[dict[str, Any]]) -> None:
        """Seal the open pack, wait for the journal before, and start this one."""
        if self._batch.packer is not None:
            self._batch.packer.seal()
        self.wait()
        if records:
            self._vault.unlock()  # here, on the command's thread, where a prompt belongs
            self._inflight = self._thread.submit(self._write, records)

    def wait(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._index is None:
            self._index = Index(self._vault.index.path)
        self._vault._write_journal(records, self._index)
        self._batch.indexed(records)

    def __enter__(self) -> _JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.wait()  # a journal already started is finished, whatever else happened
        finally:
            self._thread.shutdown()
            if self._index is not None:
                self._index.close()


def _file_password_from_env(_path: str) -> str | None:
    """The file password for scripts; the CLI asks on a terminal instead, when there is one."""
    return os.environ.get("LIVEDATA_FILE_PASSWORD") or None


def _configure_store(store: ObjectStore, cfg: StoreConfig) -> None:
    """Tell a store what it may use of the vault config (S3: SSE-KMS with the vault's KMS key)."""
    configure = getattr(store, "configure", None)
    if configure is not None:
        configure(kms_key_id=cfg.kms_key_id)


def _refuse_headless(store: ObjectStore) -> None:
    """A store without ``config`` that holds a vault's objects lost its config:
    a new vault on top would orphan them (and lock out every other machine)."""
    for prefix in ("keys/", "journal/", "data/"):
        if next(iter(store.list(prefix)), None) is not None:
            raise IntegrityError(
                f"the store {store.url} has no config but holds {prefix.rstrip('/')} objects of a vault: "
                "refusing to create a new vault on top (put its config object back, or init an empty store)"
            )


def _read_config(store: ObjectStore) -> StoreConfig:
    return StoreConfig.read(store)


def _rotated_key_id(cfg: StoreConfig, pins: state.State) -> str:
    """The key id to hold against the pin: the pinned one when the config says
    it rotated away from it (the MAC under the new key, checked at unlock,
    proves that), else the config's own."""
    if cfg.key_id != pins.key_id and any(p.get("key_id") == pins.key_id for p in cfg.previous_keys or []):
        return pins.key_id
    return cfg.key_id


def _path_of(ref: str) -> str:
    try:
        return clean_vault_path(ref)
    except UsageError:
        return ""


def _is_glob(ref: str) -> bool:
    return any(c in ref for c in "*?[")


def _looks_like_id(ref: str) -> bool:
    return len(ref) == 32 and all(c in "0123456789abcdefABCDEF" for c in ref)
