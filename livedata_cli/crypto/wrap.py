"""Key wrapping and key derivation from the vault master key.

Data keys are wrapped with AES-256-GCM under a per-object key derived by
HKDF from the master key (DESIGN §4), so the random-nonce limit of AES-GCM
applies per object, never to the whole vault.  The AAD binds vault id,
object id and key id: a wrapped key moved to another record does not open.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from livedata_cli.errors import IntegrityError

NONCE_LEN = 12
KEY_LEN = 32
WRAPPED_LEN = NONCE_LEN + KEY_LEN + 16


def hkdf(key: bytes, salt: bytes, info: bytes, length: int = KEY_LEN) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def seal(kek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM with a fresh random nonce; returns nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE_LEN)
    return nonce + AESGCM(kek).encrypt(nonce, plaintext, aad)


def open_sealed(kek: bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`seal`; raises ``InvalidTag`` on any mismatch."""
    if len(blob) < NONCE_LEN + 16:
        raise InvalidTag()
    return AESGCM(kek).decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], aad)


@functools.lru_cache(maxsize=8)
def key_id(master_key: bytes, vault_id: str) -> str:
    """A short public name for a master key, so records say which key wrapped them."""
    return hkdf(master_key, vault_id.encode(), b"livedata/v1/key-id", 8).hex()


def subkey(master_key: bytes, vault_id: str, purpose: str) -> bytes:
    """An independent key for one purpose (journal, plaintext hash, audit)."""
    return hkdf(master_key, vault_id.encode(), b"livedata/v1/" + purpose.encode())


def _wrap_aad(vault_id: str, object_id: str, kid: str) -> bytes:
    return b"livedata/v1/data-key\x00" + b"\x00".join(
        s.encode() for s in (vault_id, object_id, kid)
    )


def wrap_data_key(master_key: bytes, vault_id: str, object_id: str, data_key: bytes) -> bytes:
    kek = hkdf(master_key, vault_id.encode(), b"livedata/v1/wrap/" + object_id.encode())
    return seal(kek, data_key, _wrap_aad(vault_id, object_id, key_id(master_key, vault_id)))


def unwrap_data_key(master_key: bytes, vault_id: str, object_id: str, wrapped: bytes) -> bytes:
    kek = hkdf(master_key, vault_id.encode(), b"livedata/v1/wrap/" + object_id.encode())
    try:
        return open_sealed(kek, wrapped, _wrap_aad(vault_id, object_id, key_id(master_key, vault_id)))
    except InvalidTag:
        raise IntegrityError(
            f"the data key of object {object_id} does not open with this vault's key"
        ) from None


def keyed_hash(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of one whole message, hex: :class:`KeyedHash` in one call."""
    return hmac.digest(key, data, "sha256").hex()  # OpenSSL's one-shot HMAC


class KeyedHash:
    """HMAC-SHA256 of a plaintext under a vault subkey: equal files compare
    equal inside the vault, but the store cannot confirm a guessed file."""

    def __init__(self, key: bytes) -> None:
        self._h = hmac.new(key, digestmod=hashlib.sha256)

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()
