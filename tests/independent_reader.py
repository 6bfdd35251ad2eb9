"""A reader of livedata folder-store vaults written from docs/ alone.

It does not import livedata_cli: it follows docs/keys.md (slots, key id,
data-key wrapping, journal objects) and docs/container-format.md (the v1
container, packs), with ``cryptography`` and ``argon2-cffi`` for the
primitives.  If the docs are wrong or incomplete, this reader fails, and the
test that runs it (tests/test_independent_reader.py) says so.

    read_vault(store_folder, passphrase) -> Vault with every file version's bytes
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class ReadError(Exception):
    """The vault does not read as the docs say."""


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:12], blob[12:], aad)


# -- docs/container-format.md ----------------------------------------------------
HEADER_LEN = 102


def decrypt_container(dk: bytes, blob: bytes, header_hash: str | None = None) -> bytes:
    """Reader rules 1-9 of container-format.md, over a whole container in memory."""
    if len(blob) < HEADER_LEN:
        raise ReadError("truncated header")
    header = blob[:HEADER_LEN]
    if header_hash is not None and not hmac.compare_digest(hashlib.sha256(header).hexdigest(), header_hash):
        raise ReadError("header hash does not match the record")
    if header[:4] != b"LDV\x01" or header[4] != 1 or not 10 <= header[5] <= 24:
        raise ReadError("not a v1 container")
    seg = 1 << header[5]
    salt, commit, mac = header[6:38], header[38:70], header[70:102]
    payload_key = hkdf(dk, salt, b"livedata/v1/payload")
    if not hmac.compare_digest(hmac.digest(hkdf(dk, salt, b"livedata/v1/header"), header[:70], "sha256"), mac):
        raise ReadError("header MAC")
    if not hmac.compare_digest(hkdf(dk, salt, b"livedata/v1/commit"), commit):
        raise ReadError("key commitment")
    body = blob[HEADER_LEN:]
    if not body:
        raise ReadError("no segments")
    aead = AESGCM(payload_key)
    out = bytearray()
    for i, start in enumerate(range(0, len(body), seg + 16)):
        sealed = body[start : start + seg + 16]
        final = start + seg + 16 >= len(body)
        if len(sealed) < 16 or (final and len(sealed) == 16 and i > 0):
            raise ReadError(f"segment {i} truncated or empty")
        nonce = i.to_bytes(11, "big") + (b"\x01" if final else b"\x00")
        try:
            out += aead.decrypt(nonce, sealed, mac)
        except InvalidTag:
            raise ReadError(f"segment {i} does not authenticate") from None
    return bytes(out)


# -- docs/keys.md ------------------------------------------------------------------
MAX_M, MAX_T, MAX_P, MAX_SLOTS = 1024 * 1024, 16, 16, 32


def argon2id(secret: str, salt: bytes, kdf: dict[str, Any]) -> bytes:
    m, t, p = int(kdf["m"]), int(kdf["t"]), int(kdf["p"])
    if kdf.get("alg") != "argon2id" or not (8 * p <= m <= MAX_M and 1 <= t <= MAX_T and 1 <= p <= MAX_P):
        raise ReadError("KDF parameters out of bounds")
    if len(salt) != 16:
        raise ReadError("a passphrase salt is 16 bytes")
    return hash_secret_raw(secret.encode(), salt, time_cost=t, memory_cost=m, parallelism=p, hash_len=32, type=Type.ID)


def key_id(mk: bytes, vault_id: str) -> str:
    return hkdf(mk, vault_id.encode(), b"livedata/v1/key-id", 8).hex()


def open_slots(store: Path, config: dict[str, Any], passphrase: str) -> bytes:
    vault_id = config["vault_id"]
    for path in sorted((store / "keys").iterdir())[:MAX_SLOTS]:
        try:
            slot = json.loads(path.read_bytes())
            if slot["kind"] != "passphrase" or slot["slot"] != path.name:
                continue
            kek = argon2id(passphrase, bytes.fromhex(slot["salt"]), slot["kdf"])
            aad = b"livedata/v1/slot\x00" + vault_id.encode() + b"\x00" + slot["slot"].encode()
            mk = open_sealed(kek, bytes.fromhex(slot["wrapped"]), aad)
        except (ValueError, KeyError, ReadError, InvalidTag):
            continue
        if hmac.compare_digest(key_id(mk, vault_id), config["key_id"]):
            return mk
    raise ReadError("no slot opens with this passphrase")


def unwrap(mk: bytes, vault_id: str, object_id: str, wrapped: bytes) -> bytes:
    wrap_key = hkdf(mk, vault_id.encode(), b"livedata/v1/wrap/" + object_id.encode())
    aad = b"\x00".join([b"livedata/v1/data-key", vault_id.encode(), object_id.encode(), key_id(mk, vault_id).encode()])
    try:
        return open_sealed(wrap_key, wrapped, aad)
    except InvalidTag:
        raise ReadError(f"the data key of {object_id} does not open") from None


def read_journal(mk: bytes, vault_id: str, name: str, blob: bytes) -> list[dict[str, Any]]:
    if blob[:4] != b"LDJ\x01":
        raise ReadError(f"{name} is not a journal")
    dk = unwrap(mk, vault_id, name, blob[4:64])
    lines = zlib.decompress(decrypt_container(dk, blob[64:])).splitlines()
    return [json.loads(line) for line in lines if line]


def object_path(store: Path, object_id: str) -> Path:
    return store / "data" / object_id[:2] / object_id


# -- the whole vault ----------------------------------------------------------------
@dataclass
class Vault:
    vault_id: str
    records: int = 0
    journals: int = 0
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # vid -> record, replayed
    contents: dict[str, list[bytes]] = field(default_factory=dict)  # path -> every version's bytes, oldest first
    skipped: list[str] = field(default_factory=list)  # paths of versions behind a file password


def read_vault(store: Path, passphrase: str) -> Vault:
    config = json.loads((store / "config").read_bytes())
    mk = open_slots(store, config, passphrase)
    vault = Vault(config["vault_id"])
    for path in sorted((store / "journal").iterdir()):
        name = f"journal/{path.name}"
        vault.journals += 1
        for rec in read_journal(mk, vault.vault_id, name, path.read_bytes()):
            vault.records += 1
            kind, vid = rec.get("t"), rec.get("vid")
            if kind == "put":
                vault.versions[vid] = dict(rec)
            elif kind in ("file-password", "relocate") and vid in vault.versions:
                vault.versions[vid].update({k: v for k, v in rec.items() if k not in ("t", "time")})
            elif kind == "purge":
                for gone in rec["vids"]:
                    vault.versions.pop(gone, None)
    for v in sorted(vault.versions.values(), key=lambda r: (r["path"], r["created"], r["vid"])):
        if v.get("kind", "file") != "file":
            continue
        inner = unwrap(mk, vault.vault_id, v["object"], bytes.fromhex(v["wrapped_key"]))
        if inner[:5] == b"LDFP\x01":
            vault.skipped.append(v["path"])
            continue
        where = v.get("pack") or v["object"]
        with object_path(store, where).open("rb") as f:
            f.seek(int(v.get("offset") or 0))
            blob = f.read(int(v["length"]))
        data = decrypt_container(inner, blob, v["header_hash"])
        if len(data) != int(v["size"]):
            raise ReadError(f"{v['path']}: {len(data)} bytes, the record says {v['size']}")
        vault.contents.setdefault(v["path"], []).append(data)
    return vault
