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
from livedata_cli.errors import (
    IntegrityError,
)

MAGIC = b"LDB\x01"
KEY_LEN = 32
PRIVATE_MAGIC = b"LDX\x01"


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
    """The plaintext of a box, or :class:`IntegrityError` (exit 5): damaged, or sealed to another key."""
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


# -- sender signatures (``share --to``) ------------------------------------------------
# Each account also has an Ed25519 signing key, derived from its X25519 private
# key (so every machine of the vault has it and nothing new is stored), its
# public half published beside the X25519 key.  A share to an account is
#
#     "LDA\x01" || Ed25519 signature (64) || box
#
# where the box's context binds the share id, the sender's and the recipient's
# email, and the signature covers that context, the recipient's X25519 key and
# the whole box: the server can neither relabel who sent it, nor re-address or
# re-number it, nor forge one (it can make an anonymous box, but not sign it).
SIGNED_MAGIC = b"LDA\x01"
SIG_LEN = 64


def signing_private(private: bytes) -> bytes:
    """The Ed25519 seed that belongs to an X25519 private key."""
    return hkdf(private, b"", b"livedata/v1/share-sign")


def signing_public(private: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(signing_private(private)).public_key().public_bytes_raw()


def share_context(base: bytes, share_id: str, sender: str, recipient: str) -> bytes:
    """The context a share to an account is bound to (NUL-separated: no field holds a NUL)."""
    for field in (share_id, sender, recipient):
        if "\x00" in field:
            raise IntegrityError("a share's id or address holds a NUL byte")
    return b"\x00".join([base, share_id.encode(), sender.encode(), recipient.encode()])


def _signed_part(context: bytes, recipient_public: bytes, sealed: bytes) -> bytes:
    return b"livedata/v1/share-sig\x00" + context + b"\x00" + recipient_public + sealed


def seal_signed(private: bytes, recipient_public: bytes, plaintext: bytes, context: bytes) -> bytes:
    """A box to ``recipient_public``, signed with the sender's key derived from ``private``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    sealed = seal_to(recipient_public, plaintext, context)
    signature = Ed25519PrivateKey.from_private_bytes(signing_private(private)).sign(
        _signed_part(context, recipient_public, sealed)
    )
    return SIGNED_MAGIC + signature + sealed


def open_signed(private: bytes, sender_signing_public: bytes, blob: bytes, context: bytes) -> bytes:
    """The plaintext of a signed box, checked against the sender's signing key and the context.

    Anything else (an unsigned box, a signature by another key, another
    context) is an :class:`IntegrityError` (exit 5).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if blob[:4] != SIGNED_MAGIC or len(blob) < 4 + SIG_LEN:
        raise IntegrityError("this share is not signed by its sender (a server can forge an unsigned one)")
    signature, sealed = blob[4 : 4 + SIG_LEN], blob[4 + SIG_LEN :]
    try:
        Ed25519PublicKey.from_public_bytes(sender_signing_public).verify(
            signature, _signed_part(context, public_of(private), sealed)
        )
    except (InvalidSignature, ValueError):
        raise IntegrityError(
            "this share's signature does not match its sender, id or recipient (relabelled or re-addressed)"
        ) from None
    return open_box(private, sealed, context)
