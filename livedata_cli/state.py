"""Authenticated vault state: the config MAC, this machine's pins, and the journal chain.

The store is untrusted (DESIGN §1): it may edit, drop, replay or plant
objects.  Objects are authenticated one by one by the container format; this
module authenticates the *set*:

- ``config`` carries ``mac``, an HMAC-SHA256 under a key derived from the
  master key (``HKDF(master, salt = vault id, info = "livedata/v1/config-mac")``)
  over the canonical JSON of every other field.
- The home keeps ``state.json``: the vault id, key id and KMS key pinned at
  ``init`` (or on the first command of a home made before pins existed),
  whether the config has a MAC, this home's writer id, and the newest journal
  head of every writer it has seen.  A store whose config disagrees with a pin
  is exit 5, naming the field.
- Every journal starts with a ``chain`` record: writer id, the writer's
  counter (1, 2, 3, ...), the SHA-256 of the writer's previous journal object,
  and the heads of the other writers this home had seen.  One chain per
  writer: writers never wait for each other, and a dropped, rolled-back or
  replayed journal shows as a gap, a missing head or a repeated counter.

``docs/state-model.md`` describes the formats; this module only decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from livedata_cli import settings
from livedata_cli.crypto.wrap import subkey
from livedata_cli.errors import IntegrityError
from livedata_cli.locking import serialised

if TYPE_CHECKING:
    from livedata_cli.keys.oskeyring import KeyCache

STATE_FILE = "state.json"
CHAIN = "chain"  # the kind of a journal's first record
CONFIG_MAC_PURPOSE = "config-mac"  # HKDF info "livedata/v1/config-mac"


# -- the config MAC ------------------------------------------------------------
def config_fields(data: dict[str, Any]) -> bytes:
    """The bytes the config MAC covers: every field but ``mac`` and those that
    are null, as compact JSON with sorted keys (so an optional field added
    later leaves the MAC of configs without it as it was)."""
    body = {k: v for k, v in data.items() if k != "mac" and v is not None}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def config_mac(master_key: bytes, vault_id: str, data: dict[str, Any]) -> str:
    key = subkey(master_key, vault_id, CONFIG_MAC_PURPOSE)
    return hmac.new(key, config_fields(data), hashlib.sha256).hexdigest()


def check_config_mac(master_key: bytes, vault_id: str, data: dict[str, Any], url: str) -> None:
    """Raise unless ``data["mac"]`` authenticates the config under this master key."""
    mac = data.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, config_mac(master_key, vault_id, data)):
        raise IntegrityError(f"the vault config at {url} was changed by someone without the vault key (its MAC does not match)")


# -- this machine's pins and heads -------------------------------------------------
@dataclass
class Head:
    """The newest journal of one writer that this home knows of."""

    seq: int
    hash: str
    name: str = ""

    def to_json(self) -> list[Any]:
        return [self.seq, self.hash, self.name]


@dataclass
class State:
    """``state.json`` in the home: pins and heads (no secrets)."""

    vault_id: str
    key_id: str
    kms_key_id: str | None
    config_mac: bool  # the config had a MAC: a config without one is refused
    writer: str  # this home's writer id, random
    heads: dict[str, Head] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "vault_id": self.vault_id,
            "key_id": self.key_id,
            "kms_key_id": self.kms_key_id,
            "config_mac": self.config_mac,
            "writer": self.writer,
            "heads": {w: h.to_json() for w, h in sorted(self.heads.items())},
        }

    def save(self) -> None:
        path = settings.ensure_home() / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.to_json(), indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @staticmethod
    def load() -> State | None:
        """This home's state, or None for a home made before pins existed."""
        path = settings.home() / STATE_FILE
        try:
            d = json.loads(path.read_text())
            return State(
                vault_id=str(d["vault_id"]),
                key_id=str(d["key_id"]),
                kms_key_id=d.get("kms_key_id") or None,
                config_mac=bool(d.get("config_mac")),
                writer=str(d["writer"]),
                heads={str(w): Head(int(h[0]), str(h[1]), str(h[2]) if len(h) > 2 else "") for w, h in d.get("heads", {}).items()},
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, IndexError):
            raise IntegrityError(f"{path} is damaged: restore it from a backup, or delete it to pin the store's config anew") from None

    @staticmethod
    def pin(vault_id: str, key_id: str, kms_key_id: str | None, has_mac: bool) -> State:
        """Pins for a home that attaches (or was made before pins): a new writer id."""
        return State(vault_id, key_id, kms_key_id, has_mac, secrets.token_hex(8))


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise the journal counter of this home: one journal at a time takes the next number."""
    with serialised(settings.ensure_home() / ".state.lock"):
        yield


def check_pins(state: State, vault_id: str, key_id: str, kms_key_id: str | None, url: str) -> None:
    """Exit 5 when the store's config disagrees with what this machine pinned."""
    changes = []
    if vault_id != state.vault_id:
        changes.append(f"vault id {state.vault_id} -> {vault_id}")
    if key_id != state.key_id:
        changes.append(f"key id {state.key_id} -> {key_id}")
    if (kms_key_id or None) != state.kms_key_id:
        changes.append(f"KMS key {state.kms_key_id or 'none'} -> {kms_key_id or 'none'}")
    if changes:
        raise IntegrityError(
            f"the vault config at {url} does not match what this machine pinned ({'; '.join(changes)}): "
            "refusing to use it"
        )


# -- the journal chain ----------------------------------------------------------
def blob_hash(blob: bytes) -> str:
    """What a chain record names a journal by: SHA-256 of the whole stored object."""
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class Link:
    """A journal's place in its writer's chain, from its ``chain`` record."""

    writer: str
    seq: int
    prev: str  # hash of the writer's journal seq - 1 ("" for the first)
    hash: str  # hash of this journal object
    heads: dict[str, tuple[int, str]]  # other writers' heads, as the writer saw them
    snapshot: bool = False
    covers: dict[str, tuple[int, str]] = field(default_factory=dict)  # a snapshot's: what it restates

    @staticmethod
    def of(records: list[dict[str, Any]], blob_digest: str) -> Link | None:
        """The link of a decoded journal, or None for a journal made before chains."""
        if not records or records[0].get("t") != CHAIN:
            return None
        r = records[0]
        try:
            heads = {str(w): (int(h[0]), str(h[1])) for w, h in dict(r.get("heads", {})).items()}
            covers = {str(w): (int(h[0]), str(h[1])) for w, h in dict(r.get("covers", {})).items()}
            return Link(
                str(r["writer"]), int(r["seq"]), str(r.get("prev", "")), blob_digest, heads, bool(r.get("snapshot")), covers
            )
        except (KeyError, TypeError, ValueError, IndexError):
            raise IntegrityError("its chain record is malformed") from None


def chain_record(writer: str, seq: int, prev: str, heads: dict[str, Head], **extra: Any) -> dict[str, Any]:
    return {
        "t": CHAIN,
        "writer": writer,
        "seq": seq,
        "prev": prev,
        "heads": {w: [h.seq, h.hash] for w, h in sorted(heads.items()) if w != writer},
        **extra,
    }


# -- the heads in the OS keyring -------------------------------------------------
# A copy of the heads beside the cached vault key (service "livedata", account
# "<vault id>:journal-heads"), so a home whose state.json was lost or reset
# still knows how far the journals went, as long as the keyring keeps it.
def _heads_account(vault_id: str) -> str:
    return f"{vault_id}:journal-heads"


def keyring_heads(cache: KeyCache, vault_id: str) -> dict[str, Head]:
    """The heads the keyring remembers ({} when there is no usable keyring)."""
    kr = cache.backend()
    if kr is None:
        return {}
    try:
        value = kr.get_password("livedata", _heads_account(vault_id))
        return {str(w): Head(int(h[0]), str(h[1]), str(h[2])) for w, h in json.loads(value or "{}").items()}
    except Exception:  # a broken keyring or value: the heads in state.json still count
        return {}


def remember_heads(cache: KeyCache, vault_id: str, heads: dict[str, Head]) -> None:
    kr = cache.backend()
    if kr is None:
        return
    with contextlib.suppress(Exception):  # the keyring is a second copy; state.json holds the heads
        kr.set_password("livedata", _heads_account(vault_id), json.dumps({w: h.to_json() for w, h in heads.items()}))
