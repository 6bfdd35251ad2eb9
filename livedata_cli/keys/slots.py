"""The vault's key slots in the store: the ``config`` object, the slot format
(the master key wrapped under a passphrase, a recovery key or KMS), and
adding and removing slots.  How a slot is chosen and opened when the vault
key is needed is :mod:`livedata_cli.keys.unlock`."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag

from livedata_cli.crypto.kdf import SALT_LEN, Argon2Params, derive_key
from livedata_cli.crypto.wrap import hkdf, open_sealed, seal
from livedata_cli.errors import (
    IntegrityError,
    NotFound,
    UsageError,
    VaultNotFound,
)
from livedata_cli.stores import ObjectStore

MAX_SLOTS = 32  # slots read from a store at most: a hostile store may plant thousands
FORMAT_VERSION = 1
SLOT_KINDS = ("passphrase", "recovery", "kms")

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
        """The store's config; exit 5 unless it is a JSON object whose fields have
        the types written here (the store may hand back any JSON, and the fields
        are used before the config MAC can be checked), exit 2 for another format."""
        damaged = f"the vault config at {store.url} is damaged"
        try:
            data = json.loads(store.get_bytes("config"))
        except NotFound:
            raise VaultNotFound(f"no livedata vault at {store.url}") from None
        except (ValueError, RecursionError):
            raise IntegrityError(damaged) from None
        if not isinstance(data, dict):
            raise IntegrityError(f"{damaged}: it is not a JSON object")
        for name, ok in _CONFIG_TYPES.items():
            if name not in data:
                if name in _CONFIG_REQUIRED:
                    raise IntegrityError(f"{damaged}: its field {name!r} is missing")
            elif not ok(data[name]):
                raise IntegrityError(f"{damaged}: its field {name!r} has the wrong type ({type(data[name]).__name__})")
        if data["format"] != FORMAT_VERSION:
            raise UsageError(  # its MAC cannot be checked before the format is known
                f"the vault at {store.url} has format {data['format']}; this livedata reads {FORMAT_VERSION} "
                "(a newer livedata wrote it, or someone changed the store's config)"
            )
        return StoreConfig(**{k: data[k] for k in StoreConfig.__dataclass_fields__ if k in data})


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_previous_key(v: object) -> bool:
    return isinstance(v, dict) and isinstance(v.get("key_id"), str) and isinstance(v.get("sealed"), str)


# The type each config field must have where present; the required ones must be.
_CONFIG_REQUIRED = ("vault_id", "key_id", "created", "format")
_CONFIG_TYPES: dict[str, Callable[[object], bool]] = {
    "vault_id": lambda v: isinstance(v, str),
    "key_id": lambda v: isinstance(v, str),
    "created": lambda v: _is_int(v) or isinstance(v, float),
    "format": _is_int,
    "suite": _is_int,
    "kms_key_id": lambda v: v is None or isinstance(v, str),
    "kms_per_object": lambda v: isinstance(v, bool),
    "mac": lambda v: v is None or isinstance(v, str),
    "previous_keys": lambda v: v is None or (isinstance(v, list) and all(_is_previous_key(p) for p in v)),
}


# -- key slots ---------------------------------------------------------------
def _slot_aad(vault_id: str, slot_id: str) -> bytes:
    return b"livedata/v1/slot\x00" + vault_id.encode() + b"\x00" + slot_id.encode()


def new_recovery_key() -> str:
    """A 256-bit recovery key, printed once, grouped for copying by hand."""
    text = base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def recovery_bytes(secret: str) -> bytes | None:
    """The 256 bits of a recovery key (or key file) as typed, or None when ``secret`` is not one."""
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
        (the store may plant any JSON, so every field's type is checked) or asks
        for KDF parameters beyond the caps, checked before any stretching."""
        try:
            d = json.loads(data)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        slot_id, kind, kdf, created = d.get("slot"), d.get("kind"), d.get("kdf", {}), d.get("created")
        salt, wrapped = d.get("salt"), d.get("wrapped")
        if not (
            isinstance(slot_id, str)
            and isinstance(kind, str)
            and kind in SLOT_KINDS
            and isinstance(kdf, dict)
            and isinstance(salt, str)
            and isinstance(wrapped, str)
            and isinstance(created, int | float)
            and not isinstance(created, bool)
        ):
            raise ValueError("a field is missing or of the wrong type")
        slot = Slot(slot_id, kind, bytes.fromhex(salt), bytes.fromhex(wrapped), float(created), kdf)
        if slot.kind == "passphrase":
            Argon2Params.from_json(slot.kdf)
            if len(slot.salt) != SALT_LEN:
                raise ValueError(f"a passphrase slot's salt is {SALT_LEN} bytes")
        return slot

    def _kek(self, secret: str) -> bytes | None:
        if self.kind == "recovery":
            raw = recovery_bytes(secret)
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
        except (ValueError, KeyError, TypeError, IntegrityError) as e:  # IntegrityError: not even a file
            if warn is not None:
                why = str(e) if isinstance(e, ValueError) and "Argon2id" in str(e) else "malformed"
                warn(f"livedata: warning: key slot {key.removeprefix('keys/')[:40]!r} skipped: {why}")
    return slots


def replace_passphrase(store: ObjectStore, cfg: StoreConfig, master_key: bytes, old: Slot, new: str) -> Slot:
    """Write a slot for the new passphrase, then remove ``old``, the slot the current one opened."""
    slot = make_slot(cfg.vault_id, master_key, new)
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
