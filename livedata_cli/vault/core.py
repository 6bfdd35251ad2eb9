"""The Vault: an opened vault and its state (store, config, index, keys, locks).

Here a vault is created, attached and opened, synced with the store's
journals, and its files resolved, removed, restored from the trash, tagged
and noted; the data keys are opened here too.  The other use cases (upload,
download, file passwords, sharing, maintenance) are functions in their own
modules of this package that take a Vault.

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
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from livedata_cli import locking, names, settings, state
from livedata_cli.audit import recorder
from livedata_cli.crypto import filepass
from livedata_cli.crypto.wrap import (
    key_id,
    subkey,
    unwrap_data_key,
    wrap_data_key,
)
from livedata_cli.errors import (
    IntegrityError,
    LivedataError,
    NotFound,
    StoreUnreachable,
    UsageError,
)
from livedata_cli.index import recovery
from livedata_cli.index.core import Index, Version
from livedata_cli.keys.slots import StoreConfig, make_kms_slot, make_slot
from livedata_cli.keys.unlock import Unlocker
from livedata_cli.localfs import clean_vault_path, path_of
from livedata_cli.stores import Configurable, LocalFolder, ObjectStore, open_store
from livedata_cli.vault import file_passwords, replay, store_locking

__all__ = ["SyncResult", "Vault"]

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
        self._hash_keys: tuple[bytes, list[bytes]] | None = None  # (the master key they are for, the keys)
        self._state: state.State | None = None
        # File passwords: asked through this (the CLI sets a prompt), cached by salt once they open.
        self.ask_file_password: Callable[[str], str | None] = file_passwords.password_from_env
        self._file_keys: dict[tuple[str, bytes, str], tuple[filepass.PasswordKey, filepass.PasswordKey]] = {}
        self._file_passwords: list[str] = []
        self._file_lock = threading.Lock()
        self.events = recorder.attach(self)  # this command's audit events (written when the command ends)
        self.store_lock: locking.StoreLock | None = None  # held by Vault.lock (livedata_cli/vault/store_locking.py)
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
        if isinstance(store, LocalFolder):  # only init creates a folder store
            store.prepare()
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

    def plaintext_hash_keys(self) -> list[bytes]:
        """The keys of plaintext hashes (which content a vault holds already;
        whether a local file is unchanged), the one new hashes use first: the
        vault's first master key's, kept across ``keys rotate`` so content stored
        before a rotation still matches.  Then the later keys' own, which hashes
        made between a rotation and this rule were made under."""
        master = self.master_key
        if self._hash_keys is None or self._hash_keys[0] != master:  # worked out once a command
            masters = [*reversed(self.previous_keys()), master]
            self._hash_keys = (master, [subkey(m, self.vault_id, "plaintext-hash") for m in masters])
        return self._hash_keys[1]

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

    # -- locks -----------------------------------------------------------------
    def lock(
        self, *, wait: bool = True, exclusive: bool = False, command: str = "livedata"
    ) -> AbstractContextManager[None]:
        """The write lock: in the store folder for local stores (so every home on
        this machine shares it), else in this home; and a lock object in the
        store, shared or (for commands that delete data) ``exclusive``, for
        every machine that shares the store (livedata_cli/vault/store_locking.py)."""
        if isinstance(self.store, LocalFolder):  # a folder store that is gone is unreachable, never re-created
            self.store.check()
            path = self.store.root / "lock"
        else:
            path = settings.ensure_home() / "lock"
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
        with store_locking.store_locked(self, exclusive=False, command=command, wait=True):
            yield

    @contextlib.contextmanager
    def _locked(self, path: Path, *, wait: bool, exclusive: bool, command: str) -> Iterator[None]:
        with (
            locking.exclusive(path, wait=wait, notice=self.unlocker.notice),
            store_locking.store_locked(self, exclusive=exclusive, command=command, wait=wait),
        ):
            store_locking.pause_point("locked")
            yield


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
            path = path_of(ref)
            if version is not None and version in self.index.pruned_numbers(path):
                raise NotFound(f"version {version} of {path} was pruned")
            if version is not None and self.index.versions_of(path, trash=trash):
                raise NotFound(f"{ref} has no version {version}")
            raise NotFound(f"{ref}: no such file in the vault" + (" at that time" if at else ""))
        if version is None and at is None and found.path == path_of(ref):
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
        path = path_of(ref)
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
        return self.index.newest_under(prefix, trash=trash)




    # -- changes -------------------------------------------------------------------
    @_journal_locked("rm")
    def remove(self, ref: str, *, purge: bool) -> list[Version]:
        """Move a file (all its versions) to the trash, or purge it with its data."""
        self.sync()
        path = path_of(ref)
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
        store_locking.pause_point("purge-journaled")
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
                store_locking.pause_point("purge-journaled")
                self._delete_unreferenced(victims)
            return {p: live + trashed for p, (live, trashed) in chosen.items()}, failed
        if chosen:
            self._write_journal([{"t": "rm", "path": p, "time": now} for p in chosen])
        return {p: live for p, (live, _t) in chosen.items()}, failed

    def _paths_for_rm(self, ref: str, *, purge: bool, recursive: bool) -> list[str]:
        if ref.endswith("/") or (recursive and not _is_glob(ref) and not self.index.versions_of(path_of(ref))
                                 and not self.index.versions_of(path_of(ref), trash=True)):
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
        path = path_of(ref)
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
            store_locking.guard_fast(self)
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
        path = path_of(ref)
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
        self._write_journal([{"t": "note", "vid": v.vid, "text": names.check_note(text)}])
        updated = self.index.version_by_id(v.vid)
        assert updated is not None
        return updated


    # -- data keys (KMS per-object keys, file passwords) ------------------------------
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
            return file_passwords.open_protected(self, oid, key)[0]
        return key


    def _new_data_key(self, oid: str) -> tuple[bytes, bytes]:
        """A fresh data key and its wrapped form for the record."""
        if self.cfg.kms_per_object and self.cfg.kms_key_id:
            from livedata_cli.keys import kms

            return kms.new_data_key(self.cfg.kms_key_id, self.master_key, self.vault_id, oid)
        data_key = secrets.token_bytes(32)
        return data_key, wrap_data_key(self.master_key, self.vault_id, oid, data_key)


    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _configure_store(store: ObjectStore, cfg: StoreConfig) -> None:
    """Tell a store what it may use of the vault config (S3: SSE-KMS with the vault's KMS key)."""
    if isinstance(store, Configurable):
        store.configure(kms_key_id=cfg.kms_key_id)


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


def _is_glob(ref: str) -> bool:
    return any(c in ref for c in "*?[")


def _looks_like_id(ref: str) -> bool:
    return len(ref) == 32 and all(c in "0123456789abcdefABCDEF" for c in ref)
