"""The recipient's side of a share link: open a share file or link as a
stranger would (no vault, account or keyring), check its key, password and
expiry, then fetch, authenticate and decrypt the one file it holds.

The owner's side (create, list, revoke, the copies of packed files) is
``vault/share_links.py``; the manifest format is ``crypto/share_manifest.py``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from livedata_cli.crypto import container
from livedata_cli.crypto import share_manifest as sc
from livedata_cli.errors import (
    AuthError,
    IntegrityError,
    NotFound,
    Refused,
    ShareKeyError,
    StoreUnreachable,
    UsageError,
)

if TYPE_CHECKING:
    import httpx

FILE_MAGIC = b"LDSHARE\x01"
SUFFIX = ".ldshare"
KEY_ENV = "LIVEDATA_SHARE_KEY"
PASSWORD_ENV = "LIVEDATA_SHARE_PASSWORD"
MAX_ENVELOPE = 64 * 1024


def now() -> float:
    """The time, movable in tests by ``LIVEDATA_TESTONLY_NOW`` (seconds since the epoch)."""
    forced = os.environ.get("LIVEDATA_TESTONLY_NOW")
    if forced:
        try:
            return float(forced)
        except ValueError:
            raise UsageError("LIVEDATA_TESTONLY_NOW must be seconds since the epoch") from None
    return time.time()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class ShareRef:
    kind: str  # "file", "url" (S3 presigned) or "api" (https://HOST/s/ID)
    where: str  # path of the share file, or the URL without its fragment
    key: str | None  # from the fragment


def parse_ref(ref: str) -> ShareRef | None:
    """A share file (``x.ldshare``, ``x.ldshare#KEY``) or link (``https://…#KEY``), else None."""
    where, hashmark, fragment = ref.partition("#")
    if where.startswith(("https://", "http://")):
        if re.search(r"/s/[A-Za-z0-9_-]+/?$", where):
            return ShareRef("api", where.rstrip("/"), fragment or None)
        return ShareRef("url", where, fragment or None) if hashmark or "/s/" in where or "/shares/" in where else None
    if where.endswith(SUFFIX) and (hashmark or os.path.isfile(where)):
        return ShareRef("file", where, fragment or None)
    return None


@dataclass
class Opened:
    """A share whose manifest opened: what it holds, and how to fetch its data."""

    ref: ShareRef
    manifest: dict[str, Any]
    verifier: str | None = None

    @property
    def name(self) -> str:
        base = os.path.basename(str(self.manifest.get("name", ""))) or "shared-file"
        return base if base not in (".", "..") else "shared-file"

    @property
    def size(self) -> int:
        return int(self.manifest["size"])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.manifest["id"],
            "name": self.name,
            "size": self.size,
            "mime": self.manifest.get("mime"),
            "expires": self.manifest.get("expires"),
        }

    def write(self, dst: BinaryIO, progress: Callable[[int], None] | None = None) -> int:
        """Authenticate and decrypt the shared data into ``dst``."""
        with self._data() as src:
            n = container.decrypt_stream(
                bytes.fromhex(self.manifest["key"]),
                src,
                dst,
                expected_header_hash=str(self.manifest["header_hash"]),
                on_progress=progress,
            )
        if n != self.size:
            raise IntegrityError(f"the share holds {n} bytes where its manifest says {self.size}")
        return n

    def download_to(self, target: Path, progress: Callable[[int], None] | None = None) -> int:
        """Write to a temporary file renamed into place after the last segment authenticated."""
        from livedata_cli.localfs import write_file

        return write_file(target, lambda out: self.write(out, progress))

    @contextmanager
    def _data(self) -> Iterator[Any]:
        if self.ref.kind == "file":
            with open(self.ref.where, "rb") as f:
                f.seek(len(FILE_MAGIC) + 4 + int.from_bytes(_read_head(f)[1], "big"))
                yield _Limited(f, int(self.manifest["length"]))
                if f.read(1):
                    raise IntegrityError(f"{self.ref.where} has bytes after its data: it was changed")
            return
        import httpx

        if self.ref.kind == "api":
            try:
                with httpx.stream("GET", _api_url(self.ref, "download"), headers=_vheaders(self.verifier), timeout=60) as r:
                    if r.status_code != 200:
                        r.read()
                        _api_status(r)
                    yield _Limited(_HttpReader(r.iter_raw()), int(self.manifest["length"]))
            except httpx.HTTPError as e:
                raise StoreUnreachable(f"cannot fetch the shared data: {e}") from None
            return
        headers: dict[str, str] = {}
        offset = int(self.manifest.get("offset", 0))
        if offset:
            headers["Range"] = f"bytes={offset}-{offset + int(self.manifest['length']) - 1}"
        try:
            with httpx.stream("GET", str(self.manifest["data"]), headers=headers, timeout=60) as r:
                _check_status(r.status_code, "the shared data")
                yield _Limited(_HttpReader(r.iter_raw()), int(self.manifest["length"]))
        except httpx.HTTPError as e:
            raise StoreUnreachable(f"cannot fetch the shared data: {e}") from None


def _read_head(f: BinaryIO) -> tuple[bytes, bytes]:
    head = f.read(len(FILE_MAGIC) + 4)
    if head[: len(FILE_MAGIC)] != FILE_MAGIC or len(head) < len(FILE_MAGIC) + 4:
        raise IntegrityError(f"{getattr(f, 'name', 'this file')} is not a livedata share file")
    return head[: len(FILE_MAGIC)], head[len(FILE_MAGIC) :]


def _check_status(status: int, what: str) -> None:
    if status in (403, 404, 410):
        raise Refused(f"{what} is no longer available: the share expired, was revoked or never existed")
    if status == 429:
        raise Refused(f"{what}: too many requests; try again later")
    if status >= 400:
        raise StoreUnreachable(f"{what}: the server answered HTTP {status}")


def open_share(ref: ShareRef, key: str | None, password: Callable[[], str | None]) -> Opened:
    """Open a share's manifest with its key (fragment, ``--key`` or LIVEDATA_SHARE_KEY)
    and, when it has one, its password; check its expiry."""
    text = ref.key or key or os.environ.get(KEY_ENV)
    if not text:
        raise AuthError(f"this share needs its key: add '#KEY' to it, give --key KEY or set {KEY_ENV}")
    text, _dot, hint = text.partition(".")
    secret = sc.decode_secret(text)
    verifier: str | None = None
    pw: str | None = None
    if ref.kind == "api":
        if hint:
            pw = password()
            if pw is None:
                raise ShareKeyError(
                    f"this share is protected by a password: set {PASSWORD_ENV} or run on a terminal to be asked"
                )
            verifier = sc.check_from_hint(secret, hint, pw).hex()
        envelope = _fetch_api_envelope(ref, verifier)
    else:
        envelope = _fetch_envelope(ref)
    if pw is None and sc.needs_password(envelope):
        pw = password()
    manifest = sc.open_manifest(secret, envelope, pw)
    expires = manifest.get("expires")
    if expires is not None and now() >= float(expires):
        raise Refused(f"this share expired at {_iso(float(expires))}")
    for field in ("size", "key", "header_hash", "length"):
        if field not in manifest:
            raise IntegrityError(f"the share's manifest lacks its {field}")
    return Opened(ref, manifest, verifier)


def _api_url(ref: ShareRef, what: str) -> str:
    base, _s, share_id = ref.where.rpartition("/s/")
    return f"{base}/api/v1/shares/{share_id}/{what}"


def _vheaders(verifier: str | None) -> dict[str, str]:
    return {"X-Share-Verifier": verifier} if verifier else {}


def _api_status(r: httpx.Response) -> None:
    """A share endpoint's refusal as the livedata error of its exit code."""
    try:
        message = str(r.json().get("detail") or r.json().get("message") or "")
    except ValueError:
        message = ""
    if r.status_code == 401:
        raise ShareKeyError("the password does not open this share (the server counts failed attempts)")
    if r.status_code == 404:
        raise NotFound("no such share on this server (the link is wrong, or the file was deleted)")
    if r.status_code in (410, 429):
        raise Refused(message or "this share is expired, used up, locked or revoked")
    if r.status_code >= 400:
        raise StoreUnreachable(f"the server answered HTTP {r.status_code}")


def _fetch_api_envelope(ref: ShareRef, verifier: str | None) -> bytes:
    import base64
    import binascii

    import httpx

    try:
        r = httpx.get(_api_url(ref, "public"), headers=_vheaders(verifier), timeout=30)
    except httpx.HTTPError as e:
        raise StoreUnreachable(f"cannot fetch the share: {e}") from None
    if r.status_code != 200:
        _api_status(r)
    try:
        return base64.b64decode(str(r.json()["manifest"]), validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise IntegrityError("the server's answer for this share is not a livedata share") from None


def _fetch_envelope(ref: ShareRef) -> bytes:
    if ref.kind == "file":
        try:
            with open(ref.where, "rb") as f:
                _magic, n = _read_head(f)
                size = int.from_bytes(n, "big")
                if size > MAX_ENVELOPE:
                    raise IntegrityError(f"{ref.where} is not a livedata share file (its header is too large)")
                envelope = f.read(size)
        except FileNotFoundError:
            raise NotFound(f"{ref.where}: no such share file") from None
        except IsADirectoryError:
            raise UsageError(f"{ref.where} is a folder, not a share file") from None
        if len(envelope) != size:
            raise IntegrityError(f"{ref.where} is truncated")
        return envelope
    import httpx

    try:
        r = httpx.get(ref.where, timeout=30)
    except httpx.HTTPError as e:
        raise StoreUnreachable(f"cannot fetch the share: {e}") from None
    _check_status(r.status_code, "this share")
    if len(r.content) > MAX_ENVELOPE:
        raise IntegrityError("this link does not lead to a livedata share")
    return r.content


class _Limited:
    """At most ``n`` bytes of a stream: the container, not what follows it."""

    def __init__(self, src: Any, n: int) -> None:
        self._src, self._left = src, n

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        data: bytes = self._src.read(want)
        self._left -= len(data)
        return data


class _HttpReader:
    """A ``read(n)`` view of an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            size = len(self._buf)
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


__all__ = ["KEY_ENV", "PASSWORD_ENV", "Opened", "ShareRef", "now", "open_share", "parse_ref"]
