"""``keys rotate``: a new master key, with no data re-encrypted.

Steps, each safe to be killed after (a rerun of ``keys rotate`` finishes the
work, and every command works in between):

1. New key slots for the new key ``M'``: the passphrase given now (it must
   open the vault today) and, in a KMS vault, the KMS key.  Until step 2 they
   are ignored (their key does not match the config's key id).
2. The config switches to ``M'``: new ``key_id``, MAC under ``M'``, and
   ``previous_keys``: every earlier master key sealed under ``M'``, so
   journals and records not yet rewrapped still open.  From here old slots
   and keys cached in keyrings no longer open the vault (their key id does
   not match).
3. A snapshot journal under ``M'`` (:func:`compaction.compact_journals`)
   restates every record with its data key rewrapped under ``M'``; the
   journals it covers are deleted.
4. Every other key slot goes (other passphrases and recovery keys cannot be
   rewrapped without their secrets: add them again with ``keys add``).

Homes that pinned the old key id accept the new one when the config names
the pinned key among ``previous_keys`` and opens, with its MAC, under the key
the user's passphrase (or KMS) gives; a store cannot forge that.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from livedata_cli import state
from livedata_cli.crypto.wrap import (
    key_id,
    open_sealed,
    seal,
    subkey,
    unwrap_data_key,
    wrap_data_key,
)
from livedata_cli.errors import IntegrityError, UsageError
from livedata_cli.keys.slots import (
    StoreConfig,
    list_slots,
    make_kms_slot,
    make_slot,
)
from livedata_cli.keys.unlock import open_with_secret
from livedata_cli.vault import compaction

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault

PREVIOUS_PURPOSE = "previous-key"


def _aad(vault_id: str, kid: str) -> bytes:
    return b"livedata/v1/previous-key\x00" + vault_id.encode() + b"\x00" + kid.encode()


def seal_previous(new_master: bytes, vault_id: str, old_master: bytes) -> dict[str, str]:
    kid = key_id(old_master, vault_id)
    sealed = seal(subkey(new_master, vault_id, PREVIOUS_PURPOSE), old_master, _aad(vault_id, kid))
    return {"key_id": kid, "sealed": sealed.hex()}


def open_previous(master: bytes, cfg: StoreConfig) -> list[bytes]:
    """The earlier master keys the config keeps, newest first."""
    from cryptography.exceptions import InvalidTag

    out = []
    for entry in cfg.previous_keys or []:
        try:
            old = open_sealed(subkey(master, cfg.vault_id, PREVIOUS_PURPOSE), bytes.fromhex(entry["sealed"]), _aad(cfg.vault_id, entry["key_id"]))
        except (InvalidTag, KeyError, ValueError, TypeError):
            raise IntegrityError("a previous key in the vault config does not open") from None
        if key_id(old, cfg.vault_id) != entry["key_id"]:
            raise IntegrityError("a previous key in the vault config is not the key it names")
        out.append(old)
    return out


def unwrap_any(vault: Vault, oid: str, wrapped: bytes) -> bytes:
    """A data key wrapped under the vault key or any previous one."""
    for master in [vault.master_key, *vault.previous_keys()]:
        try:
            return unwrap_data_key(master, vault.vault_id, oid, wrapped)
        except IntegrityError:
            continue
    raise IntegrityError(f"the data key of object {oid} does not open with this vault's key")


@dataclass(frozen=True)
class Rotation:
    key_id: str
    previous_key_id: str
    records: int  # data keys and records restated under the new key
    journals_compacted: int
    slots_removed: int


def rotate(vault: Vault) -> Rotation:
    """Rotate the master key (the caller holds the vault lock)."""
    from livedata_cli.keys import kms

    vault.sync(strict=True)
    old_master, cfg, vid = vault.master_key, vault.cfg, vault.vault_id
    store = vault.store
    before = list_slots(store)
    new_slots = []
    new_master = secrets.token_bytes(32)
    if any(s.kind == "passphrase" for s in before) or not cfg.kms_key_id:
        secret = vault.unlocker.secret("Passphrase (kept for the new key): ")
        opened, slot = open_with_secret(store, cfg, secret)  # a typo must not lock the vault
        if opened != old_master:
            raise UsageError("that passphrase opens another key than the vault's")
        new_slots.append(make_slot(vid, new_master, secret, slot.kind))
    if cfg.kms_key_id:
        new_slots.append(make_kms_slot(vid, new_master, cfg.kms_key_id))
    for slot in new_slots:  # 1
        store.put_bytes(slot.key, slot.to_bytes(), exclusive=True)
    previous = [seal_previous(new_master, vid, m) for m in [old_master, *vault.previous_keys()]]
    new_cfg = dataclasses.replace(cfg, key_id=key_id(new_master, vid), previous_keys=previous, mac=None)
    new_cfg = dataclasses.replace(new_cfg, mac=state.config_mac(new_master, vid, new_cfg.__dict__))
    store.put_bytes("config", new_cfg.to_bytes())  # 2
    vault.adopt_key(new_cfg, new_master)

    def rewrap(oid: str, wrapped: bytes) -> bytes:
        if wrapped.startswith(kms.PER_OBJECT_MAGIC):
            inner = unwrap_any(vault, oid, wrapped[len(kms.PER_OBJECT_MAGIC) :])
            return kms.PER_OBJECT_MAGIC + wrap_data_key(new_master, vid, oid, inner)
        return wrap_data_key(new_master, vid, oid, unwrap_any(vault, oid, wrapped))

    done = compaction.compact_journals(vault, rewrap=rewrap, key_id=new_cfg.key_id)  # 3
    keep = {s.slot_id for s in new_slots}
    removed = 0
    for slot in list_slots(store):  # 4
        if slot.slot_id not in keep:
            store.delete(slot.key)
            removed += 1
    if not cfg.kms_key_id:
        vault.unlocker.remember(vid, new_master)
    return Rotation(new_cfg.key_id, cfg.key_id, done.records, done.deleted, removed)
