"""File passwords: a second secret on one file's data key.

A protected version's data key ``DK`` is wrapped twice.  The inner wrap is an
envelope sealed under a key derived from the file password with Argon2id; the
envelope is what the vault key then wraps, as it wraps a plain data key
(``crypto/wrap.py``).  So the vault key alone opens the outer wrap and finds
only the envelope: ``DK`` stays sealed until the password is given.

Envelope (the plaintext of the outer wrap)::

    MAGIC (5) || n (2, big-endian) || params (n bytes, JSON) || nonce (12) || AES-256-GCM(DK) (48)

``params`` holds the Argon2id parameters and the 16-byte salt in hex, as a
vault key slot does, so they can be raised later.  The AAD binds vault id and
object id, so an envelope moved to another object does not open.  Changing or
removing a password makes a new envelope (or unwraps to the bare ``DK``); the
data object is never touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from livedata_cli.crypto.kdf import SALT_LEN, Argon2Params, derive_key
from livedata_cli.crypto.wrap import hkdf, open_sealed, seal
from livedata_cli.errors import IntegrityError

MAGIC = b"LDFP\x01"


@dataclass(frozen=True)
class PasswordKey:
    """A key derived from a file password, with the salt and parameters that made it."""

    params: Argon2Params
    salt: bytes
    kek: bytes

    @staticmethod
    def derive(password: str, params: Argon2Params | None = None, salt: bytes | None = None) -> PasswordKey:
        params = params or Argon2Params.default()
        salt = salt if salt is not None else os.urandom(SALT_LEN)
        return PasswordKey(params, salt, derive_key(password.encode(), salt, params))

    @property
    def ident(self) -> tuple[str, bytes]:
        return key_ident(self.params, self.salt)

    def verifier(self) -> str:
        """What an API store's server keeps (hashed) to check a password: derived
        from the password key, it is neither the password nor any key."""
        return hkdf(self.kek, self.salt, b"livedata/v1/file-password/verifier").hex()

    def gated(self, secret: bytes) -> PasswordKey:
        """The key that seals an envelope on an API store: the password key mixed
        with the server's release secret, which the server gives out only for the
        right verifier, so guesses can only be tried through its attempt limits."""
        return PasswordKey(self.params, self.salt, hkdf(self.kek, secret, b"livedata/v1/file-password/gated"))


def _aad(vault_id: str, object_id: str) -> bytes:
    return b"livedata/v1/file-password\x00" + vault_id.encode() + b"\x00" + object_id.encode()


def is_envelope(blob: bytes) -> bool:
    """Whether the plaintext of an outer wrap is a password envelope (not a bare data key)."""
    return blob[: len(MAGIC)] == MAGIC


def seal_data_key(
    key: PasswordKey, vault_id: str, object_id: str, data_key: bytes, *, lock: str | None = None
) -> bytes:
    """The envelope of a data key under a password key (``gated`` by the server lock ``lock``, if any)."""
    fields: dict[str, object] = {**key.params.to_json(), "salt": key.salt.hex()}
    if lock is not None:
        fields["lock"] = lock
    params = json.dumps(fields, sort_keys=True).encode()
    return MAGIC + len(params).to_bytes(2, "big") + params + seal(key.kek, data_key, _aad(vault_id, object_id))


def envelope_params(blob: bytes) -> tuple[Argon2Params, bytes, str | None]:
    """The Argon2id parameters and salt of an envelope, to derive its key from a
    password, and the id of its server lock (None: no server holds a part)."""
    try:
        n = int.from_bytes(blob[len(MAGIC) : len(MAGIC) + 2], "big")
        raw = json.loads(blob[len(MAGIC) + 2 : len(MAGIC) + 2 + n])
        salt = bytes.fromhex(str(raw["salt"]))
        params = Argon2Params.from_json(raw)
        lock = raw.get("lock")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError("a file password envelope is malformed") from None
    if len(salt) != SALT_LEN or not (lock is None or isinstance(lock, str)):
        raise IntegrityError("a file password envelope is malformed")
    return params, salt, lock


def open_envelope(key: PasswordKey, vault_id: str, object_id: str, blob: bytes) -> bytes | None:
    """The data key, or None when this password key does not open the envelope."""
    n = int.from_bytes(blob[len(MAGIC) : len(MAGIC) + 2], "big")
    try:
        return open_sealed(key.kek, blob[len(MAGIC) + 2 + n :], _aad(vault_id, object_id))
    except InvalidTag:
        return None


def key_ident(params: Argon2Params, salt: bytes) -> tuple[str, bytes]:
    """What a derived key is cached by: its parameters and salt."""
    return json.dumps(params.to_json(), sort_keys=True), salt
