"""Vault master key: key slots in the store, the OS keyring cache, and the
passphrase fallbacks of DESIGN §5.

Order of sources when the vault key is needed:
1. the OS keyring (service ``livedata``, account = vault id), unless
   ``LIVEDATA_NO_KEYRING=1`` or ``--no-keyring``; a keyring that is only a
   plaintext file counts as none;
2. ``LIVEDATA_PASSPHRASE``, ``LIVEDATA_PASSPHRASE_FILE``,
   ``LIVEDATA_PASSPHRASE_COMMAND`` (exactly one of them may be set);
3. a prompt, when the caller can ask on a terminal;
4. otherwise :class:`NoPassphrase` (exit 4), naming all of the above.

Nothing here prints: notices go through the ``notice`` callback of the CLI.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag

from livedata_cli import settings
from livedata_cli.crypto.kdf import SALT_LEN, Argon2Params, derive_key
from livedata_cli.crypto.wrap import hkdf, key_id, open_sealed, seal
from livedata_cli.errors import (
    AuthError,
    IntegrityError,
    NoPassphrase,
    NotFound,
    UsageError,
    VaultNotFound,
    WrongPassphrase,
)
from livedata_cli.keys.oskeyring import KEYRING_SERVICE as KEYRING_SERVICE
from livedata_cli.keys.oskeyring import KeyCache as KeyCache
from livedata_cli.stores import ObjectStore

MAX_SLOTS = 32  # slots read from a store at most: a hostile store may plant thousands
LAST_SLOT_FILE = "last-slot.json"  # in the home: the slot that opened each vault last
PASSPHRASE_VARS = ("LIVEDATA_PASSPHRASE", "LIVEDATA_PASSPHRASE_FILE", "LIVEDATA_PASSPHRASE_COMMAND")
FORMAT_VERSION = 1

Prompt = Callable[[str], str]


# -- the store's config object ------------------------------------------------
@dataclass(frozen=True)
class StoreConfig:
    """The vault's public description, stored as ``config`` (no secrets)."""

    vault_id: str
    key_id: str
    created: float
    format: int = FORMAT_VERSION
    suite: int = 1
    kms_key_id: str | None = None
    kms_per_object: bool = False
    mac: str | None = None  # HMAC of the other fields under the master key (livedata_cli/state.py)
    previous_keys: list[dict[str, str]] | None = None  # master keys before 'keys rotate', sealed (rotation.py)

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, indent=1).encode()

    @staticmethod
    def read(store: ObjectStore) -> StoreConfig:
        try:
            data = json.loads(store.get_bytes("config"))
        except NotFound:
            raise VaultNotFound(f"no livedata vault at {store.url}") from None
        except ValueError:
            raise IntegrityError(f"the vault config at {store.url} is damaged") from None
        if data.get("format") != FORMAT_VERSION:
            raise UsageError(
                f"the vault at {store.url} has format {data.get('format')}; this livedata reads {FORMAT_VERSION}"
            )
        return StoreConfig(**{k: data[k] for k in StoreConfig.__dataclass_fields__ if k in data})


# -- key slots ---------------------------------------------------------------
def _slot_aad(vault_id: str, slot_id: str) -> bytes:
    return b"livedata/v1/slot\x00" + vault_id.encode() + b"\x00" + slot_id.encode()


def new_recovery_key() -> str:
    """A 256-bit recovery key, printed once, grouped for copying by hand."""
    text = base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def _recovery_bytes(secret: str) -> bytes | None:
    text = secret.replace("-", "").replace(" ", "").upper()
    if len(text) != 52:
        return None
    try:
        raw = base64.b32decode(text + "====")
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


@dataclass
class Slot:
    """One way into the vault: the master key wrapped under a secret."""

    slot_id: str
    kind: str  # "passphrase" or "recovery"
    salt: bytes
    wrapped: bytes
    created: float
    kdf: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"keys/{self.slot_id}"

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "slot": self.slot_id,
                "kind": self.kind,
                "kdf": self.kdf,
                "salt": self.salt.hex(),
                "wrapped": self.wrapped.hex(),
                "created": self.created,
            },
            indent=1,
        ).encode()

    @staticmethod
    def from_bytes(data: bytes) -> Slot:
        """A slot as stored; ValueError (or KeyError) for one that is malformed
        or asks for KDF parameters beyond the caps, checked before any stretching."""
        d = json.loads(data)
        slot = Slot(
            slot_id=str(d["slot"]),
            kind=str(d["kind"]),
            salt=bytes.fromhex(d["salt"]),
            wrapped=bytes.fromhex(d["wrapped"]),
            created=float(d["created"]),
            kdf=d.get("kdf", {}),
        )
        if slot.kind == "passphrase":
            Argon2Params.from_json(slot.kdf)
            if len(slot.salt) != SALT_LEN:
                raise ValueError(f"a passphrase slot's salt is {SALT_LEN} bytes")
        return slot

    def _kek(self, secret: str) -> bytes | None:
        if self.kind == "recovery":
            raw = _recovery_bytes(secret)
            if raw is None:
                return None
            # A recovery key is already 256 random bits: no stretching needed.
            return hkdf(raw, self.salt, b"livedata/v1/recovery-slot")
        return derive_key(secret.encode(), self.salt, Argon2Params.from_json(self.kdf))

    def open(self, vault_id: str, secret: str) -> bytes | None:
        kek = self._kek(secret)
        if kek is None:
            return None
        try:
            return open_sealed(kek, self.wrapped, _slot_aad(vault_id, self.slot_id))
        except InvalidTag:
            return None


def make_slot(vault_id: str, master_key: bytes, secret: str, kind: str = "passphrase") -> Slot:
    slot_id = f"{kind[:4]}-{secrets.token_hex(6)}"
    salt = secrets.token_bytes(SALT_LEN if kind == "passphrase" else 32)
    params = Argon2Params.default()
    slot = Slot(slot_id, kind, salt, b"", time.time(), params.to_json() if kind == "passphrase" else {"alg": "hkdf-sha256"})
    kek = slot._kek(secret)
    assert kek is not None
    slot.wrapped = seal(kek, master_key, _slot_aad(vault_id, slot_id))
    return slot


def make_kms_slot(vault_id: str, master_key: bytes, kms_key_id: str) -> Slot:
    """A ``keys/kms-…`` slot: the master key encrypted by KMS, bound to this vault."""
    from livedata_cli.keys import kms

    blob, arn = kms.provider(kms_key_id).encrypt(master_key, kms.vault_context(vault_id))
    return Slot(
        slot_id=f"kms-{secrets.token_hex(6)}",
        kind="kms",
        salt=b"",
        wrapped=blob,
        created=time.time(),
        kdf={"kms_key_id": kms_key_id, "kms_key_arn": arn, "context": kms.VAULT_CONTEXT},
    )


def list_slots(store: ObjectStore, *, warn: Callable[[str], None] | None = None) -> list[Slot]:
    """The vault's key slots: at most ``MAX_SLOTS`` of them.  A malformed slot,
    or one whose KDF parameters exceed the caps, is skipped with a one-line
    warning: the others may still open the vault."""
    names = list(store.list("keys/"))
    if len(names) > MAX_SLOTS and warn is not None:
        warn(f"livedata: warning: the store holds {len(names)} key slots; only {MAX_SLOTS} are read")
    slots = []
    for key in names[:MAX_SLOTS]:
        try:
            slots.append(Slot.from_bytes(store.get_bytes(key)))
        except (ValueError, KeyError, TypeError) as e:
            if warn is not None:
                why = str(e) if isinstance(e, ValueError) and "Argon2id" in str(e) else "malformed"
                warn(f"livedata: warning: key slot {key.removeprefix('keys/')[:40]!r} skipped: {why}")
    return slots


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
    if last is not None and last.startswith("pass-") and _recovery_bytes(secret) is not None:
        last = None  # a key file or recovery key: the cheap recovery slots first, not Argon2id
    if last is not None:
        try:
            slot: Slot | None = Slot.from_bytes(store.get_bytes(f"keys/{last}"))
        except (NotFound, ValueError, KeyError, TypeError):
            slot = None
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
            with open(os.path.expanduser(value), encoding="utf-8") as f:
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


def replace_passphrase(store: ObjectStore, cfg: StoreConfig, current: str, new: str) -> Slot:
    """Write a slot for the new passphrase, then remove the one the old one opened."""
    master, old = open_with_secret(store, cfg, current)
    slot = make_slot(cfg.vault_id, master, new)
    store.put_bytes(slot.key, slot.to_bytes(), exclusive=True)
    store.delete(old.key)
    return slot


def remove_slot(store: ObjectStore, slot_id: str) -> None:
    slots = list_slots(store)
    if not any(s.slot_id == slot_id for s in slots):
        raise NotFound(f"no key slot {slot_id}")
    if len(slots) == 1:
        raise UsageError("this is the vault's last key slot: add another before removing it")
    store.delete(f"keys/{slot_id}")
