"""What one command did, bound to the vault it opened, written to the trail when it ends.

A vault registers with the running command when it is made
(:func:`attach`: ``vault.events`` is the command's :class:`Recorder`) and
hands its recorder over when it closes (:meth:`Recorder.close`: the recorder
keeps what it needs to write the events, never the vault itself).  When the
command ends, ``main()`` gives its exit code to :func:`finish`, which writes
the events in one SQLite transaction and mirrors them to the store
(:class:`livedata_cli.audit.chain.Trail`); events of a command that never
had the vault key wait, MACed under the pending key, for the next one.

A command that opened no vault has nothing here (:func:`opened` is False),
unless it changes something without a vault (``lock``), which records its
event pending.  This module is imported by every command's end, so it loads
nothing heavy until there are events to write.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from livedata_cli import __version__
from livedata_cli.errors import ExitCode, LivedataError
from livedata_cli.names import unicode_text

if TYPE_CHECKING:
    from livedata_cli.index.core import Index
    from livedata_cli.keys.oskeyring import KeyCache
    from livedata_cli.keys.unlock import Unlocker
    from livedata_cli.stores import ObjectStore


class RecordedVault(Protocol):
    """What a recorder reads of its vault (:class:`livedata_cli.vault.core.Vault`)."""

    @property
    def vault_id(self) -> str: ...

    @property
    def store(self) -> ObjectStore: ...

    @property
    def unlocker(self) -> Unlocker: ...

    @property
    def _master(self) -> bytes | None: ...  # the key if this command unlocked it; never asked for here


class FailedItem(Protocol):
    """A failed item of a batch (:class:`livedata_cli.vault.core.ItemResult`)."""

    @property
    def path(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def error(self) -> str | None: ...

    @property
    def exit_code(self) -> int | None: ...


@dataclass
class _HandedOver:
    """What a closed vault left its recorder: enough to write the events."""

    vault_id: str
    store: ObjectStore
    master: bytes | None
    cache: KeyCache
    failures: list[str] = field(default_factory=list)

    @staticmethod
    def of(vault: RecordedVault) -> _HandedOver:
        return _HandedOver(vault.vault_id, vault.store, vault._master, vault.unlocker.cache,
                           list(vault.unlocker.failures))


# -- one event ---------------------------------------------------------------
def _host() -> str:
    import socket

    try:
        return socket.gethostname()
    except OSError:
        return ""


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())


def now_us() -> int:
    return time.time_ns() // 1000


def result_of(code: int) -> str:
    """``ok``, ``denied`` (authentication or a limit) or ``error``, from an exit code."""
    if code == 0:
        return "ok"
    if code in (ExitCode.AUTH, ExitCode.REFUSED):
        return "denied"
    return "error"


# -- what one command did ------------------------------------------------------
class Recorder:
    """The events of the running command, collected in memory until it ends."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.vault: RecordedVault | None = None
        self.handed: _HandedOver | None = None  # set when the vault closed
        self.command = secrets.token_hex(8)
        self.name = ""  # the command (``keys passwd``), when the CLI knows it
        self.target = ""  # what the command was pointed at (REF or paths)
        self.reads = True  # False while verifying: reading to check is not a download

    def add(
        self,
        action: str,
        path: str = "",
        *,
        object: str = "",
        result: str = "ok",
        code: int = 0,
        detail: str = "",
        at: int | None = None,
    ) -> None:
        self.events.append(self.event(action, path, object=object, result=result, code=code, detail=detail, at=at))

    def event(
        self,
        action: str,
        path: str = "",
        *,
        object: str = "",
        result: str = "ok",
        code: int = 0,
        detail: str = "",
        at: int | None = None,
    ) -> dict[str, Any]:
        return {
            "time": now_us() if at is None else at,
            "action": action,
            "path": unicode_text(path),  # a path given on the command line may hold any bytes
            "object": unicode_text(object),
            "result": result,
            "code": int(code),
            "host": _who()[0],
            "user": _who()[1],
            "version": __version__,
            "request_id": "",
            "command": self.command,
            "detail": unicode_text(detail),
        }

    def read(self, path: str, obj: str) -> None:
        """Plaintext of a stored version was released."""
        if self.reads:
            self.add("download", path, object=obj)

    def failed(self, action: str, path: str, error: BaseException, obj: str = "") -> None:
        code = int(error.exit_code) if isinstance(error, LivedataError) else int(ExitCode.UNEXPECTED)
        message = error.message if isinstance(error, LivedataError) else str(error)
        self.add(action, path, object=obj, result=result_of(code), code=code, detail=message[:200])

    def failed_items(self, verb: str, items: Iterable[FailedItem]) -> None:
        """The failed items of a batch (``BatchReport.failed``), one event each."""
        for item in items:
            code = int(item.exit_code or ExitCode.UNEXPECTED)
            self.add(verb, item.path or item.source, result=result_of(code), code=code, detail=str(item.error)[:200])

    def journal(self, records: Iterable[dict[str, Any]], index: Index) -> None:
        """Events for the metadata records a command is about to write."""
        for rec in records:
            kind = str(rec.get("t", ""))
            if kind == "put":
                self.add("upload", str(rec.get("path", "")), object=str(rec.get("object") or ""))
            elif kind in ("rm", "restore"):
                self.add(kind, str(rec.get("path", "")))
            elif kind == "purge":
                seen: set[tuple[str, str]] = set()
                for vid in rec.get("vids", []):
                    v = index.version_by_id(vid)
                    where = (v.path, v.object or "") if v is not None else ("", "")
                    if where not in seen:
                        seen.add(where)
                        self.add("purge", where[0], object=where[1])
            elif kind in ("tag", "note", "file-password"):
                found = index.version_by_id(rec.get("vid"))  # type: ignore[arg-type]
                detail = ""
                if kind == "tag":
                    detail = " ".join([*(f"+{t}" for t in rec.get("add", [])), *(f"-{t}" for t in rec.get("remove", []))])
                self.add(kind, found.path if found else "", object=(found.object or "") if found else "", detail=detail)
            else:
                self.add(kind or "record")

    def close(self) -> None:
        """The vault closes and hands its events over: they are written when the command ends."""
        if self.vault is not None:
            self.handed = _HandedOver.of(self.vault)
            self.vault = None

    def flush(self, code: int) -> None:
        """Write the events so far as one finished command (a long-running worker,
        after each job) and go on recording under a fresh command id."""
        try:
            _write(self, self.name, code, audited=True)
        finally:  # written or not, these events are done with
            self.events = []
            self.command = secrets.token_hex(8)

    def _source(self) -> _HandedOver | None:
        if self.handed is None and self.vault is not None:
            return _HandedOver.of(self.vault)
        return self.handed


@functools.cache
def _who() -> tuple[str, str]:
    """This machine's name and the OS user, looked up once, when a first event is made."""
    return _host(), _user()


_current = Recorder()


def attach(vault: RecordedVault) -> Recorder:
    """The running command's recorder, now bound to the vault it works on.

    A command works on one vault; a second vault opened in the same process
    (library use) starts a fresh recorder, so events never pile up unbounded.
    """
    global _current
    if (_current.vault is not None and _current.vault is not vault) or _current.handed is not None:
        _current = Recorder()
    _current.vault = vault
    return _current


def current() -> Recorder:
    return _current


def opened() -> bool:
    """Whether the running command opened a vault (its recorder is bound to one)."""
    return _current.vault is not None or _current.handed is not None


def _take() -> Recorder:
    global _current
    rec, _current = _current, Recorder()
    return rec


# -- the end of a command ------------------------------------------------------
def finish(command: str, code: int, *, audited: bool, vault_less: bool = False) -> None:
    """Record what the command that just ended did.

    ``audited`` is False for commands that only look (``ls``, ``audit``):
    they leave no event of their own, but failed unlocks are kept all the
    same.  A command that never opened the vault (``lock``) records its event
    pending, when ``vault_less``.
    """
    _write(_take(), command, code, audited=audited, vault_less=vault_less)


def _write(rec: Recorder, command: str, code: int, *, audited: bool, vault_less: bool = False) -> None:
    source = rec._source()
    events: list[dict[str, Any]] = []
    if source is not None:
        for reason in source.failures:
            events.append(rec.event("unlock", result="denied", code=int(ExitCode.AUTH), detail=reason))
    if audited:
        events += rec.events
        explained = code in (0, int(ExitCode.PARTIAL)) or any(e["code"] == code for e in rec.events)
        if not rec.events or not explained:
            events.append(rec.event(command, rec.target, result=result_of(code), code=code))
    if not events:
        return
    from livedata_cli import settings
    from livedata_cli.audit.chain import Trail, add_pending
    from livedata_cli.index import at_rest
    from livedata_cli.index.core import Index

    if at_rest.is_locked(settings.home() / settings.INDEX_FILE):
        return  # 'lock --index': no index to keep them in until the next unlock
    if source is None:
        if not vault_less or not settings.VaultSettings.exists():
            return
        vault_id = settings.VaultSettings.load().vault_id
        index = Index(settings.home() / settings.INDEX_FILE)
        try:
            from livedata_cli.keys.oskeyring import KeyCache

            add_pending(index, vault_id, events, KeyCache(True))
        finally:
            index.close()
        return
    index = Index(settings.home() / settings.INDEX_FILE)
    try:
        if source.master is None:
            add_pending(index, source.vault_id, events, source.cache)
            return
        Trail(index, source.store, source.vault_id, source.master, source.cache).append(events)
    finally:
        index.close()
