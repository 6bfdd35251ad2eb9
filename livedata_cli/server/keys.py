"""The server's own secrets: blob-key versions, the token-signing secret and the sealing secret.

They live in one JSON file (0600, default ``$LIVEDATA_HOME/server/keys.json``;
share it between hosts that serve the same database).  ``token_secret`` only
signs JWTs; ``sealing_secret`` only feeds the HKDF of the keys that seal
values in the database (TOTP secrets), so neither use weakens the other.  A
key file from before the split has no ``sealing_secret``: the migration
(:meth:`ServerKeys.separate`) adds one and re-seals what the token secret
sealed, marking the file ``sealing_migration`` until it is done (crash-safe:
while marked, values sealed the old way still open).  Each blob's data key
is wrapped under the newest key version and the row records that version, so
``rotate-key`` only adds a version and re-wraps data keys (small rows, never
blob data) while servers keep serving: a server that meets a version it does
not know re-reads the file, and one that writes checks the file's mtime.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag

from livedata_cli.crypto import wrap
from livedata_cli.errors import IntegrityError, NotFound, UsageError

_SALT = b"livedata-server"


@dataclass(frozen=True)
class _Contents:
    token_secret: bytes
    versions: dict[int, bytes]
    mtime: float
    sealing_secret: bytes | None = None
    migrating: bool = False  # re-sealing from the token secret is under way

    @property
    def current(self) -> int:
        return max(self.versions)


class ServerKeys:
    """Reads, creates and rotates the key file; wraps and unwraps blob data keys."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._contents = self._load_or_create()

    # -- file --------------------------------------------------------------
    def _read(self) -> _Contents:
        try:
            stat = self.path.stat()
            data = json.loads(self.path.read_text())
            sealing = data.get("sealing_secret")
            return _Contents(
                token_secret=bytes.fromhex(data["token_secret"]),
                versions={int(k): bytes.fromhex(v) for k, v in data["versions"].items()},
                mtime=stat.st_mtime,
                sealing_secret=None if sealing is None else bytes.fromhex(sealing),
                migrating=bool(data.get("sealing_migration", False)),
            )
        except FileNotFoundError:
            raise NotFound(f"no server key file at {self.path}") from None
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"the server key file {self.path} is damaged") from None

    def _write(
        self, token_secret: bytes, versions: dict[int, bytes], sealing_secret: bytes | None = None,
        *, migrating: bool = False,
    ) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + f".{secrets.token_hex(4)}.tmp")
        data: dict[str, object] = {
            "token_secret": token_secret.hex(), "versions": {str(k): v.hex() for k, v in versions.items()}
        }
        if sealing_secret is not None:
            data["sealing_secret"] = sealing_secret.hex()
        if migrating:
            data["sealing_migration"] = True
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _load_or_create(self) -> _Contents:
        try:
            return self._read()
        except NotFound:
            # `livedata server` creates the file once, before its workers start.
            self._write(secrets.token_bytes(32), {1: secrets.token_bytes(32)}, secrets.token_bytes(32))
            return self._read()

    def _fresh(self) -> _Contents:
        """The contents, re-read when the file changed (another process rotated)."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return self._contents
        if mtime != self._contents.mtime:
            with self._lock:
                self._contents = self._read()
        return self._contents

    # -- use ---------------------------------------------------------------
    @property
    def token_secret(self) -> bytes:
        return self._contents.token_secret

    @property
    def current_version(self) -> int:
        return self._fresh().current

    @property
    def versions(self) -> list[int]:
        return sorted(self._fresh().versions)

    def rotate(self) -> int:
        """Add a new key version and make it current; returns its number."""
        with self._lock:
            contents = self._read()
            new = contents.current + 1
            self._write(contents.token_secret, {**contents.versions, new: secrets.token_bytes(32)},
                        contents.sealing_secret, migrating=contents.migrating)
            self._contents = self._read()
        return new

    def retire(self, version: int) -> None:
        """Remove a key version from the file (the caller checked that no blob uses it)."""
        with self._lock:
            contents = self._read()
            if version not in contents.versions:
                raise NotFound(f"server key version {version} is not in {self.path}")
            if version == contents.current:
                raise UsageError(f"key version {version} is the current one: rotate first ('livedata server rotate-key')")
            versions = {k: v for k, v in contents.versions.items() if k != version}
            self._write(contents.token_secret, versions, contents.sealing_secret, migrating=contents.migrating)
            self._contents = self._read()

    def separate(self, reseal: Callable[[ServerKeys], int]) -> int | None:
        """Give a key file from before the split its own sealing secret, and re-seal
        (``reseal``) what its token secret sealed; returns how many values were
        re-sealed, or None when the file needed nothing."""
        with self._lock:
            contents = self._read()
            if contents.sealing_secret is not None and not contents.migrating:
                return None
            sealing = contents.sealing_secret or secrets.token_bytes(32)
            self._write(contents.token_secret, contents.versions, sealing, migrating=True)
            self._contents = self._read()
        done = reseal(self)
        with self._lock:
            contents = self._read()
            self._write(contents.token_secret, contents.versions, contents.sealing_secret)
            self._contents = self._read()
        return done

    def _key(self, version: int) -> bytes:
        key = self._fresh().versions.get(version)
        if key is None:
            with self._lock:
                self._contents = self._read()
            key = self._contents.versions.get(version)
        if key is None:
            raise IntegrityError(f"server key version {version} is not in {self.path}")
        return key

    @staticmethod
    def _aad(blob_id: str, version: int) -> bytes:
        return b"livedata/server/v1/blob-key\x00" + blob_id.encode() + b"\x00" + str(version).encode()

    def wrap(self, blob_id: str, data_key: bytes, version: int | None = None) -> tuple[int, bytes]:
        """Wrap a blob's data key under a per-blob key derived from a server key version."""
        version = self.current_version if version is None else version
        kek = wrap.hkdf(self._key(version), _SALT, b"livedata/server/v1/blob/" + blob_id.encode())
        return version, wrap.seal(kek, data_key, self._aad(blob_id, version))

    def unwrap(self, blob_id: str, version: int, wrapped: bytes) -> bytes:
        kek = wrap.hkdf(self._key(version), _SALT, b"livedata/server/v1/blob/" + blob_id.encode())
        try:
            return wrap.open_sealed(kek, wrapped, self._aad(blob_id, version))
        except InvalidTag:
            raise IntegrityError(f"the server data key of blob {blob_id} does not open") from None

    def subkey(self, purpose: str) -> bytes:
        """An independent key for one purpose (sealing TOTP secrets), from the sealing secret."""
        contents = self._fresh()
        root = contents.sealing_secret if contents.sealing_secret is not None else contents.token_secret
        return wrap.hkdf(root, _SALT, b"livedata/server/v1/" + purpose.encode())

    def _legacy_subkey(self, purpose: str) -> bytes | None:
        """The key the token secret fed before the split, while a migration may have left values under it."""
        contents = self._fresh()
        if contents.sealing_secret is None or contents.migrating:
            return wrap.hkdf(contents.token_secret, _SALT, b"livedata/server/v1/" + purpose.encode())
        return None

    def seal(self, purpose: str, data: bytes) -> bytes:
        return wrap.seal(self.subkey(purpose), data, purpose.encode())

    def open(self, purpose: str, blob: bytes) -> bytes:
        try:
            return wrap.open_sealed(self.subkey(purpose), blob, purpose.encode())
        except InvalidTag:
            legacy = self._legacy_subkey(purpose)
            if legacy is not None:
                try:
                    return wrap.open_sealed(legacy, blob, purpose.encode())
                except InvalidTag:
                    pass
            raise IntegrityError(f"a sealed {purpose} does not open with this key file") from None
