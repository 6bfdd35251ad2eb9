"""How the vault master key is unlocked: the OS keyring cache, the passphrase
fallbacks of DESIGN §5, the slot that opened the vault last, and KMS.

Order of sources when the vault key is needed:
1. the OS keyring (service ``livedata``, account = vault id), unless
   ``LIVEDATA_NO_KEYRING=1`` or ``--no-keyring``; a keyring that is only a
   plaintext file counts as none;
2. ``LIVEDATA_PASSPHRASE``, ``LIVEDATA_PASSPHRASE_FILE``,
   ``LIVEDATA_PASSPHRASE_COMMAND`` (exactly one of them may be set);
3. a prompt, when the caller can ask on a terminal;
4. otherwise :class:`NoPassphrase` (exit 4), naming all of the above.

A KMS vault opens through KMS instead (:mod:`livedata_cli.keys.kms`).
Nothing here prints: notices go through the ``notice`` callback of the CLI.
"""

from __future__ import annotations

import hmac
import json
import os
import subprocess
from collections.abc import Callable

from livedata_cli import settings
from livedata_cli.crypto.wrap import key_id
from livedata_cli.errors import (
    AuthError,
    IntegrityError,
    NoPassphrase,
    NotFound,
    UsageError,
    WrongPassphrase,
)
from livedata_cli.keys.oskeyring import KeyCache
from livedata_cli.keys.slots import Slot, StoreConfig, list_slots, recovery_bytes
from livedata_cli.stores import ObjectStore

LAST_SLOT_FILE = "last-slot.json"  # in the home: the slot that opened each vault last
PASSPHRASE_VARS = ("LIVEDATA_PASSPHRASE", "LIVEDATA_PASSPHRASE_FILE", "LIVEDATA_PASSPHRASE_COMMAND")

Prompt = Callable[[str], str]


# -- the slot that opened the vault last --------------------------------------
def last_slot(vault_id: str) -> str | None:
    """The slot that opened this vault last on this machine (tried first)."""
    try:
        found = json.loads((settings.home() / LAST_SLOT_FILE).read_text()).get(vault_id)
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def remember_slot(vault_id: str, slot_id: str) -> None:
    path = settings.home() / LAST_SLOT_FILE
    try:
        known = json.loads(path.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    if known.get(vault_id) == slot_id:
        return
    known[vault_id] = slot_id
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, path)
    except OSError:
        pass  # only an optimisation: every slot is still tried


def open_with_secret(
    store: ObjectStore, cfg: StoreConfig, secret: str, *, warn: Callable[[str], None] | None = None
) -> tuple[bytes, Slot]:
    """Try the slots with this secret: the one that worked last here first
    (read alone: the others are not even fetched when it opens), then recovery
    slots (cheap), then passphrases."""
    last = last_slot(cfg.vault_id)
    if last is not None and last.startswith("pass-") and recovery_bytes(secret) is not None:
        last = None  # a key file or recovery key: the cheap recovery slots first, not Argon2id
    if last is not None:
        try:
            slot: Slot | None = Slot.from_bytes(store.get_bytes(f"keys/{last}"))
        except (NotFound, IntegrityError, ValueError, KeyError, TypeError):
            slot = None  # gone or malformed: the other slots are tried
        if slot is not None and slot.slot_id == last and slot.kind != "kms":
            master = _open_slot(slot, cfg, secret)
            if master is not None:
                return master, slot
    slots = sorted(
        (s for s in list_slots(store, warn=warn) if s.kind != "kms" and s.slot_id != last),
        key=lambda s: s.kind != "recovery",
    )
    if not slots and last is None:
        raise AuthError(f"the vault at {store.url} has no passphrase or recovery key slots")
    for slot in slots:
        master = _open_slot(slot, cfg, secret)
        if master is not None:
            remember_slot(cfg.vault_id, slot.slot_id)
            return master, slot
    raise WrongPassphrase()


def _open_slot(slot: Slot, cfg: StoreConfig, secret: str) -> bytes | None:
    master = slot.open(cfg.vault_id, secret)
    if master is not None and hmac.compare_digest(key_id(master, cfg.vault_id), cfg.key_id):
        return master
    return None


# -- passphrase sources -------------------------------------------------------
def passphrase_from_env() -> tuple[str, str] | None:
    """The passphrase and the variable it came from, or None when none is set."""
    set_vars = [v for v in PASSPHRASE_VARS if os.environ.get(v)]
    if len(set_vars) > 1:
        raise UsageError(f"{' and '.join(set_vars)} are all set: set only one passphrase source")
    if not set_vars:
        return None
    var = set_vars[0]
    value = os.environ[var]
    if var == "LIVEDATA_PASSPHRASE":
        return value, var
    if var == "LIVEDATA_PASSPHRASE_FILE":
        try:
            with open(os.path.expanduser(value), encoding="utf-8", errors="replace") as f:  # as a command's output
                return f.readline().rstrip("\r\n"), var
        except OSError as e:
            raise NoPassphrase(f"cannot read LIVEDATA_PASSPHRASE_FILE {value}: {e.strerror}") from None
    # LIVEDATA_PASSPHRASE_COMMAND: the passphrase comes back on stdout, never via argv.
    try:
        out = subprocess.run(value, shell=True, capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise NoPassphrase("LIVEDATA_PASSPHRASE_COMMAND did not answer within 120 s") from None
    if out.returncode != 0:
        raise NoPassphrase(f"LIVEDATA_PASSPHRASE_COMMAND failed with exit code {out.returncode}")
    return out.stdout.decode("utf-8", "replace").splitlines()[0] if out.stdout else "", var


NO_PASSPHRASE_HELP = (
    "the vault is locked and no passphrase is available: run on a terminal, or set one of "
    "LIVEDATA_PASSPHRASE, LIVEDATA_PASSPHRASE_FILE or LIVEDATA_PASSPHRASE_COMMAND"
)


class Unlocker:
    """Finds the master key of one vault, following DESIGN §5's order."""

    def __init__(
        self,
        *,
        use_keyring: bool = True,
        prompt: Prompt | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.cache = KeyCache(use_keyring)
        self.prompt = prompt
        self.notice = notice or (lambda _msg: None)
        self.failures: list[str] = []  # failed attempts, for the audit trail

    def secret(self, label: str = "Passphrase: ") -> str:
        """A passphrase from the environment or the prompt, or exit 4."""
        found = passphrase_from_env()
        if found is not None:
            return found[0]
        if self.prompt is not None:
            return self.prompt(label)
        raise NoPassphrase(NO_PASSPHRASE_HELP)

    def unlock(self, store: ObjectStore, cfg: StoreConfig) -> bytes:
        if cfg.kms_key_id:
            return self._unlock_kms(store, cfg, cfg.kms_key_id)
        cached = self.cache.get(cfg.vault_id)
        if cached is not None and hmac.compare_digest(key_id(cached, cfg.vault_id), cfg.key_id):
            return cached
        if not self.cache.enabled:
            self._say_no_keyring_once()
        secret = self.secret()
        try:
            master, _slot = open_with_secret(store, cfg, secret, warn=self.notice)
        except WrongPassphrase:
            self.failures.append("wrong passphrase")
            raise
        self.remember(cfg.vault_id, master)
        return master

    def remember(self, vault_id: str, master_key: bytes) -> None:
        self.cache.put(vault_id, master_key)

    def _unlock_kms(self, store: ObjectStore, cfg: StoreConfig, kms_key_id: str) -> bytes:
        """A KMS vault opens through KMS on every command, never from the keyring,
        so disabling the key locks it; a passphrase slot is the break-glass way in."""
        from livedata_cli.errors import StoreUnreachable
        from livedata_cli.keys import kms

        slots = list_slots(store)
        try:
            return kms.open_slots(slots, cfg.vault_id, cfg.key_id, kms_key_id)
        except (AuthError, StoreUnreachable):
            if not any(s.kind != "kms" for s in slots):
                raise
            if passphrase_from_env() is None and self.prompt is None:
                raise
        try:
            master, _slot = open_with_secret(store, cfg, self.secret(), warn=self.notice)
        except WrongPassphrase:
            self.failures.append("wrong passphrase")
            raise
        return master

    def _say_no_keyring_once(self) -> None:
        if settings.env_flag("LIVEDATA_NO_KEYRING"):
            return  # the user chose this; nothing to explain
        marker = settings.home() / ".no-keyring-notice"
        if marker.exists():
            return
        self.notice(
            f"note: {self.cache.reason}; the vault key is not cached, so each command needs "
            "LIVEDATA_PASSPHRASE(_FILE/_COMMAND) or a terminal prompt (said once)"
        )
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass
