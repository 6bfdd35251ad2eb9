"""Share manifests: what a link's secret (and optional password) opens.

A share gives one file version to whoever holds its link.  The link carries
a fresh random 256-bit *share secret* (in a URL fragment, which no server
receives, or printed beside a share file); the shared version's data key
travels only inside a small *manifest* sealed under a key derived from that
secret, so a store holding the manifest learns nothing it could open.

Envelope (bytes)::

    "LDS\\x01" || u16 public length || public JSON || check (16) || sealed manifest

- ``public``: ``{"v": 1, "id": share id, "salt": hex 16 bytes, "kdf": null or
  Argon2id parameters}``; it is the AAD of the sealed manifest.
- ``ikm = secret``, or with a password ``secret || Argon2id(password, salt)``,
  so the link alone opens nothing when a password is set.
- ``manifest_key = HKDF-SHA256(ikm, salt, "livedata/v1/share/<id>/manifest")``;
  ``check = HKDF-SHA256(ikm, salt, "livedata/v1/share/<id>/check")[:16]``.
- ``sealed manifest = nonce || AES-256-GCM(manifest_key, JSON manifest, aad)``.

A password share on a Live-Data server is sealed *without* its check value
(``public`` then holds ``"check": false`` and the envelope has no check
bytes): the server keeps only an Argon2id hash of it, as its verifier, and
must not hold the value itself.  There the server's verifier check tells a
wrong password (exit 4); a sealed manifest that then fails is exit 5.

The check value tells a wrong key or password (exit 4) from a tampered
manifest (exit 5).  It needs the 256-bit secret to compute, so a store that
holds it cannot test passwords; a link holder could test passwords offline
against the sealed manifest anyway.  A server that limits password attempts
keeps only an Argon2id hash of ``check`` as its verifier: a client proves it
knows the password by sending ``check``, which reveals neither the password
nor the secret (HKDF is one-way).  Since the server hands out the envelope
only after that proof, a password link carries the public salt and Argon2id
parameters after the secret (:func:`password_hint`).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag

from livedata_cli.crypto.kdf import Argon2Params, derive_key
from livedata_cli.crypto.wrap import hkdf, open_sealed, seal
from livedata_cli.errors import (
    IntegrityError,
    ShareKeyError,
)

MAGIC = b"LDS\x01"
SECRET_LEN = 32
SALT_LEN = 16
CHECK_LEN = 16
# A manifest is a few hundred bytes; this bounds what a hostile envelope can make us parse.
MAX_PUBLIC = 4096


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_LEN)


def new_share_id() -> str:
    return secrets.token_hex(8)


def encode_secret(secret: bytes) -> str:
    """The printed form of a share secret: 43 characters of base64url."""
    return base64.urlsafe_b64encode(secret).rstrip(b"=").decode()


def decode_secret(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != SECRET_LEN:
        raise ShareKeyError("this is not a share key: it should be 43 characters of letters, digits, '-' and '_'")
    return raw


def _keys(secret: bytes, share_id: str, salt: bytes, password: str | None, params: Argon2Params | None) -> tuple[bytes, bytes]:
    ikm = secret
    if password is not None:
        assert params is not None
        ikm = secret + derive_key(password.encode(), salt, params)
    info = b"livedata/v1/share/" + share_id.encode()
    return hkdf(ikm, salt, info + b"/manifest"), hkdf(ikm, salt, info + b"/check", CHECK_LEN)


def seal_manifest(
    secret: bytes, share_id: str, manifest: dict[str, Any], password: str | None, *, with_check: bool = True
) -> bytes:
    """The envelope of a manifest, opened by :func:`open_manifest` with the same secret and password.

    ``with_check=False``: the envelope a server keeps, which must not hold the
    check value its verifier hash is made from."""
    salt = secrets.token_bytes(SALT_LEN)
    params = Argon2Params.default() if password is not None else None
    public: dict[str, Any] = {"v": 1, "id": share_id, "salt": salt.hex(), "kdf": params.to_json() if params else None}
    if not with_check:
        public["check"] = False
    pub = json.dumps(public, sort_keys=True, separators=(",", ":")).encode()
    key, check = _keys(secret, share_id, salt, password, params)
    body = json.dumps({**manifest, "id": share_id}, sort_keys=True).encode()
    return MAGIC + len(pub).to_bytes(2, "big") + pub + (check if with_check else b"") + seal(key, body, MAGIC + pub)


def _parse(blob: bytes) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """Public part, its bytes, check value and sealed manifest of an envelope."""
    if blob[:4] != MAGIC or len(blob) < 6:
        raise IntegrityError("this is not a livedata share (or it is damaged)")
    n = int.from_bytes(blob[4:6], "big")
    if n > MAX_PUBLIC or len(blob) < 6 + n + CHECK_LEN:
        raise IntegrityError("this livedata share is truncated or damaged")
    pub = blob[6 : 6 + n]
    try:
        public = json.loads(pub)
        if not isinstance(public, dict) or public.get("v") != 1:
            raise ValueError
        str(public["id"])
        bytes.fromhex(str(public["salt"]))
    except (ValueError, KeyError, TypeError):
        raise IntegrityError("this livedata share has an unreadable header") from None
    if public.get("check", True) is False:  # a server's copy: no check value
        return public, pub, b"", blob[6 + n :]
    return public, pub, blob[6 + n : 6 + n + CHECK_LEN], blob[6 + n + CHECK_LEN :]


def share_id_of(blob: bytes) -> str:
    return str(_parse(blob)[0]["id"])


def needs_password(blob: bytes) -> bool:
    return _parse(blob)[0].get("kdf") is not None


def password_hint(blob: bytes) -> str:
    """What a recipient needs, besides secret and password, to compute the check
    value before a server hands over the envelope: ``ID.SALT.M.T.P`` (no secret)."""
    public = _parse(blob)[0]
    kdf = public["kdf"]
    return f"{public['id']}.{public['salt']}.{kdf['m']}.{kdf['t']}.{kdf['p']}"


def check_from_hint(secret: bytes, hint: str, password: str) -> bytes:
    """The check value of a password-protected share, from a :func:`password_hint`.

    A client proves to a server that it knows the password by sending this
    value (as hex): the server keeps only an Argon2id hash of it, and the
    value itself reveals neither the password nor the secret."""
    try:
        share_id, salt, m, t, p = hint.split(".")
        params = Argon2Params.from_json({"alg": "argon2id", "m": m, "t": t, "p": p})
        return _keys(secret, share_id, bytes.fromhex(salt), password, params)[1]
    except ValueError:
        raise ShareKeyError("this share key is damaged: its password part is unreadable") from None


def open_manifest(secret: bytes, blob: bytes, password: str | None) -> dict[str, Any]:
    """The manifest inside an envelope.

    Raises :class:`ShareKeyError` (exit 4) for a wrong key or password and
    :class:`IntegrityError` (exit 5) for an envelope changed after sealing.
    """
    public, pub, check, body = _parse(blob)
    params: Argon2Params | None = None
    if public.get("kdf") is not None:
        if password is None:
            raise ShareKeyError(
                "this share is protected by a password: set LIVEDATA_SHARE_PASSWORD or run on a terminal to be asked"
            )
        try:
            params = Argon2Params.from_json(public["kdf"])
        except (ValueError, KeyError, TypeError):
            raise IntegrityError("this livedata share has unreadable password parameters") from None
    share_id = str(public["id"])
    try:
        key, expected = _keys(secret, share_id, bytes.fromhex(str(public["salt"])), password if params else None, params)
    except ValueError:
        raise IntegrityError("this livedata share has an unreadable salt") from None
    if check and not hmac.compare_digest(expected, check):
        raise ShareKeyError(
            "the key or password does not open this share" if params else "the key does not open this share"
        )
    try:
        manifest = json.loads(open_sealed(key, body, MAGIC + pub))
    except InvalidTag:
        if not check:  # the server checked our verifier before handing it out
            raise IntegrityError(
                "the share's manifest was changed after it was made (or the key does not open it)"
            ) from None
        raise IntegrityError("the share's manifest was changed after it was made") from None
    except ValueError:
        raise IntegrityError("the share's manifest is authenticated but unreadable") from None
    if not isinstance(manifest, dict) or manifest.get("id") != share_id:
        raise IntegrityError("the share's manifest belongs to another share")
    return manifest
