"""Sealed boxes to an account's X25519 public key (``livedata share --to``).

Every account on a Live-Data server has an X25519 key pair.  The private key
lives in the vault's store, sealed under a vault subkey, so every machine of
the vault has it; the public key is published to the server.

Box (bytes)::

    "LDB\\x01" || ephemeral public key (32) || nonce || AES-256-GCM(key, plaintext, aad)

- ``shared = X25519(ephemeral private, recipient public)``
- ``key = HKDF-SHA256(shared, salt="", info="livedata/v1/box" || ephemeral public || recipient public)``
- ``aad = "LDB\\x01" || ephemeral public || context`` (the caller's context,
  such as the share id), so a box cannot be moved to another context.

A public key is shown as its *fingerprint*: the first 16 hex digits of its
SHA-256.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from livedata_cli.crypto.wrap import hkdf, open_sealed, seal, subkey
from livedata_cli.errors import AuthError, IntegrityError

MAGIC = b"LDB\x01"
KEY_LEN = 32
PRIVATE_MAGIC = b"LDX\x01"


class BoxKeyError(AuthError):
    """This private key does not open the box (it was sealed to another key)."""


def generate() -> tuple[bytes, bytes]:
    """A new key pair: (private, public), 32 raw bytes each."""
    priv = X25519PrivateKey.generate()
    return priv.private_bytes_raw(), priv.public_key().public_bytes_raw()


def public_of(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def fingerprint(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def check_public(public: bytes) -> bytes:
    if len(public) != KEY_LEN:
        raise IntegrityError("the server's public key is not an X25519 key (32 bytes)")
    return public


def _key(shared: bytes, eph: bytes, recipient: bytes) -> bytes:
    return hkdf(shared, b"", b"livedata/v1/box" + eph + recipient)


def seal_to(public: bytes, plaintext: bytes, context: bytes) -> bytes:
    """A box only the holder of ``public``'s private key opens."""
    recipient = X25519PublicKey.from_public_bytes(check_public(public))
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes_raw()
    key = _key(eph.exchange(recipient), eph_pub, public)
    return MAGIC + eph_pub + seal(key, plaintext, MAGIC + eph_pub + context)


def open_box(private: bytes, blob: bytes, context: bytes) -> bytes:
    """The plaintext of a box; :class:`BoxKeyError` (exit 4) or :class:`IntegrityError` (exit 5)."""
    if blob[:4] != MAGIC or len(blob) < 4 + KEY_LEN + 12 + 16:
        raise IntegrityError("this is not a livedata sealed box (or it is damaged)")
    eph_pub = blob[4 : 4 + KEY_LEN]
    priv = X25519PrivateKey.from_private_bytes(private)
    try:
        shared = priv.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError:
        raise IntegrityError("this sealed box is damaged") from None
    key = _key(shared, eph_pub, priv.public_key().public_bytes_raw())
    try:
        return open_sealed(key, blob[4 + KEY_LEN :], MAGIC + eph_pub + context)
    except InvalidTag:
        raise IntegrityError("this sealed box was changed, or was not sealed to this account's key") from None


def _private_aad(vault_id: str) -> bytes:
    return b"livedata/v1/x25519\x00" + vault_id.encode()


def wrap_private(master_key: bytes, vault_id: str, private: bytes) -> bytes:
    """The private key as the store keeps it: sealed under the vault's ``x25519`` subkey."""
    kek = subkey(master_key, vault_id, "x25519")
    return PRIVATE_MAGIC + seal(kek, private, _private_aad(vault_id))


def unwrap_private(master_key: bytes, vault_id: str, blob: bytes) -> bytes:
    if blob[:4] != PRIVATE_MAGIC:
        raise IntegrityError("the vault's X25519 key object is damaged")
    try:
        private = open_sealed(subkey(master_key, vault_id, "x25519"), blob[4:], _private_aad(vault_id))
    except InvalidTag:
        raise IntegrityError("the vault's X25519 key object was changed") from None
    if len(private) != KEY_LEN:
        raise IntegrityError("the vault's X25519 key object is damaged")
    return private
