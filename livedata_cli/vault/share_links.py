"""Share links: create, list, revoke, and open one as a stranger.

A share hands one file version to whoever holds its key, without giving the
store its plaintext or any other file's key (livedata_cli/crypto/share_manifest.py).
What a share is made of depends on the vault's store:

folder store
    A self-contained *share file* (``report.ldshare``): the sealed manifest
    and the version's container bytes, as stored.  Its key is printed once;
    ``livedata download report.ldshare#KEY`` opens it anywhere, with no vault.
    Expiry lives in the manifest and is checked by the client: a modified
    client can ignore it, and a file already handed out cannot be revoked.
S3 store
    The manifest goes to ``shares/<id>`` in the bucket; the link is a
    presigned URL of it (valid until the share expires, at most 7 days)
    with the key in its fragment, and the manifest holds a presigned URL
    of the data object.  Revoking deletes the manifest object.
Live-Data API store
    The server keeps the sealed manifest and serves the data object at
    ``/s/<id>``, counting downloads; revoking deletes the server's share.

A file packed with others (livedata_cli/packs.py) is first copied into an
object of its own, server-side (S3 ``UploadPartCopy`` of its byte range; the
API server's ``POST /files/{id}/copy``), since a link hands out a whole
object.  The copy's key follows from the share id
(:func:`livedata_cli.packs.share_copy_key`); ``rm --purge`` deletes it, and
so does ``share revoke`` on S3; ``prune`` keeps it exactly as long as the
share is live.

Each share is a journal record (``share``; ``unshare`` when revoked), so
``sync`` on another machine lists it too; records never hold a secret or key.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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

FILE_MAGIC = b"LDSHARE\x01"
SUFFIX = ".ldshare"
DEFAULT_EXPIRY = 7 * 86400
S3_MAX_EXPIRY = 7 * 86400  # the longest a SigV4 presigned URL lasts
KEY_ENV = "LIVEDATA_SHARE_KEY"
PASSWORD_ENV = "LIVEDATA_SHARE_PASSWORD"
MAX_ENVELOPE = 64 * 1024
_DURATION_RE = re.compile(r"\s*(\d+)\s*([smhdw])\s*")


def now() -> float:
    """The time, movable in tests by ``LIVEDATA_TESTONLY_NOW`` (seconds since the epoch)."""
    forced = os.environ.get("LIVEDATA_TESTONLY_NOW")
    if forced:
        try:
            return float(forced)
        except ValueError:
            raise UsageError("LIVEDATA_TESTONLY_NOW must be seconds since the epoch") from None
    return time.time()


def parse_duration(text: str) -> int:
    """Seconds from ``90m``, ``36h``, ``7d``, ``2w`` (or ``30s``)."""
    m = _DURATION_RE.fullmatch(text)
    if not m or int(m.group(1)) <= 0:
        raise UsageError(f"--expires: {text!r} is not a duration such as 30m, 1h, 7d or 2w")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def store_kind(store: Any) -> str:
    url = str(getattr(store, "url", ""))
    if url.startswith("s3://"):
        return "s3"
    if url.startswith(("https://", "http://")):
        return "api"
    return "file"


# -- the owner's side -----------------------------------------------------------
@dataclass(frozen=True)
class Share:
    """One share as ``share ls`` shows it."""

    id: str
    path: str
    kind: str
    created: float
    expires: float | None
    max_downloads: int | None
    password: bool
    location: str
    revoked: float | None
    downloads: int | None = None  # counted only where a server counts them
    server_state: str | None = None  # what the server says (used_up, locked, ...)

    def state(self, at: float) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.server_state:
            return self.server_state
        if self.expires is not None and at >= self.expires:
            return "expired"
        return "active"

    def to_json(self, at: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "store": self.kind,
            "created": self.created,
            "expires": self.expires,
            "downloads": self.downloads,
            "max_downloads": self.max_downloads,
            "password": self.password,
            "location": self.location,
            "state": self.state(at),
            "revoked": self.revoked,
        }


@dataclass(frozen=True)
class Created:
    share: Share
    key: str  # printed once; never stored
    link: str  # what to hand the recipient (with the key in it)
    size: int


def create(
    vault: Any,
    ref: str,
    *,
    expires_in: int = DEFAULT_EXPIRY,
    max_downloads: int | None = None,
    password: str | None = None,
    out: Path | None = None,
    version: int | None = None,
) -> Created:
    """Share one file version; the returned key is the only copy there will be."""
    kind = store_kind(vault.store)
    if max_downloads is not None and max_downloads < 1:
        raise UsageError("--max-downloads must be at least 1")
    if max_downloads is not None and kind != "api":
        raise UsageError(
            f"--max-downloads cannot be enforced by {'S3' if kind == 's3' else 'a share file'}: "
            "use a vault on a Live-Data API store (https://HOST) to limit downloads"
        )
    if kind == "s3" and expires_in > S3_MAX_EXPIRY:
        raise UsageError("--expires: an S3 share link lasts at most 7 days (S3's limit for presigned URLs)")
    if kind != "file" and out is not None:
        raise UsageError("--out writes a share file, which only a vault on a folder store makes; this one prints a link")
    if kind == "file" and out is not None and out.exists():
        raise UsageError(f"{out} exists: remove it or give another --out")
    vault.sync()
    v = vault.resolve(ref, version=version)
    if v.kind != "file":
        raise UsageError(f"{v.path} is a {v.kind}: only files can be shared")
    data_key = vault._data_key(v.object, v.wrapped_key)
    share_id, secret = sc.new_share_id(), sc.new_secret()
    created = now()
    expires = created + expires_in
    name = v.path.rsplit("/", 1)[-1]
    manifest: dict[str, Any] = {
        "name": name,
        "size": v.size,
        "mime": v.mime or "application/octet-stream",
        "key": data_key.hex(),
        "header_hash": v.header_hash,
        "length": v.length,
        "created": created,
        "expires": expires,
    }
    key = sc.encode_secret(secret)
    if kind == "file":
        target = out if out is not None else Path(name + SUFFIX)
        if target.exists():
            raise UsageError(f"{target} exists: remove it or give another --out")
        envelope = sc.seal_manifest(secret, share_id, manifest, password)
        _write_share_file(vault, v, envelope, target)
        location, link = str(target.absolute()), f"{target}#{key}"
    elif v.pack:
        # A presigned link or a server share hands out a whole object, and a
        # pack holds other files too: the member gets an object of its own,
        # copied server-side, under the writer lock (a prune running now
        # would take the copy for an unreferenced object).
        with vault.lock(command="livedata share"):
            copy = _copy_member(vault, v, share_id)
            try:
                location, link, key = _publish(vault, kind, v, copy, 0, manifest, share_id, secret, key, password,
                                               expires_in, max_downloads)
            except BaseException:
                with suppress(Exception):  # the copy is of no use now; prune deletes it otherwise
                    vault.store.delete(copy)
                raise
            return _recorded(vault, v, kind, share_id, created, expires, max_downloads, password, location,
                             link, key, {"copy": copy})
    if kind != "file":
        location, link, key = _publish(vault, kind, v, v.store_key, v.offset, manifest, share_id, secret, key,
                                       password, expires_in, max_downloads)
    return _recorded(vault, v, kind, share_id, created, expires, max_downloads, password, location, link, key, {})


def _copy_member(vault: Any, v: Any, share_id: str) -> str:
    """A packed version's container copied into an object of its own (S3
    ``UploadPartCopy`` of the byte range, the API server's copy endpoint)."""
    from livedata_cli.packs import share_copy_key

    copy = share_copy_key(share_id)
    vault.store.copy_range(v.store_key, v.offset, v.length, copy)
    return copy


def _publish(
    vault: Any, kind: str, v: Any, store_key: str, offset: int, manifest: dict[str, Any], share_id: str,
    secret: bytes, key: str, password: str | None, expires_in: int, max_downloads: int | None,
) -> tuple[str, str, str]:
    """Hand ``store_key`` out as a share link: (location, link, the key it carries:
    a password share's on the API store ends with its password parameters)."""
    if kind == "api":
        import base64

        # The server keeps an Argon2id hash of a password share's check value
        # as its verifier, never the value itself: its copy is sealed without it.
        envelope = sc.seal_manifest(secret, share_id, manifest, password, with_check=password is None)
        verifier = None
        if password is not None:
            hint = sc.password_hint(envelope)
            verifier = sc.check_from_hint(secret, hint, password).hex()
            key = f"{key}.{hint}"
        location = vault.store.create_share(
            store_key,
            manifest=base64.b64encode(envelope).decode(),
            expires_in=expires_in,
            max_downloads=max_downloads,
            verifier=verifier,
        )
        return location, f"{vault.store.url}/s/{location}#{key}", key
    store = vault.store
    manifest["data"] = store.presign_get(store_key, expires_in)
    manifest["offset"] = offset
    envelope = sc.seal_manifest(secret, share_id, manifest, password)
    location = f"shares/{share_id}"
    store.put_bytes(location, envelope)
    return location, f"{store.presign_get(location, expires_in)}#{key}", key


def _recorded(
    vault: Any, v: Any, kind: str, share_id: str, created: float, expires: float, max_downloads: int | None,
    password: str | None, location: str, link: str, key: str, extra: dict[str, Any],
) -> Created:
    """Journal the share (with its copy, if any), audit it and describe it."""
    record = {
        "t": "share",
        "id": share_id,
        "vid": v.vid,
        "path": v.path,
        "object": v.object,
        "kind": kind,
        "created": created,
        "expires": expires,
        "max_downloads": max_downloads,
        "password": password is not None,
        "location": location,
        **extra,
    }
    _journal(vault, record)
    detail = f"share {share_id} ({kind}), expires {_iso(expires)}" + (", password" if password else "")
    vault.events.add("share", v.path, object=v.object, detail=detail)
    share = Share(share_id, v.path, kind, created, expires, max_downloads, password is not None, location, None)
    return Created(share, key, link, v.size)


def _write_share_file(vault: Any, v: Any, envelope: bytes, target: Path) -> None:
    """Manifest and container bytes, written to a temporary file renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.livedata-{secrets.token_hex(4)}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, vault.store.open(v.store_key) as src:
            out.write(FILE_MAGIC + len(envelope).to_bytes(4, "big") + envelope)
            if v.offset:
                src.seek(v.offset)
            left = v.length
            while left:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    raise IntegrityError(f"object {v.object} is shorter than its record says")
                out.write(chunk)
                left -= len(chunk)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _journal(vault: Any, record: dict[str, Any]) -> None:
    """One journal record of a share event (audited by the caller, with its path)."""
    vault._write_journal([record], audited=False)


def list_shares(vault: Any) -> list[Share]:
    vault.sync()
    rows = vault.index.db.execute("SELECT * FROM shares ORDER BY created, id").fetchall()
    server: dict[str, dict[str, Any]] = {}
    if any(r["kind"] == "api" for r in rows) and store_kind(vault.store) == "api":
        server = vault.store.shares()
    out = []
    for r in rows:
        seen = server.get(r["location"]) if r["kind"] == "api" else None
        out.append(
            Share(
                r["id"], r["path"], r["kind"], r["created"], r["expires"], r["max_downloads"],
                bool(r["password"]), r["location"], r["revoked"],
                downloads=int(seen["downloads"]) if seen else None,
                server_state=str(seen["state"]) if seen and seen.get("state") != "active" else None,
            )
        )
    return out


def find_share(shares: list[Share], ref: str) -> Share | None:
    """A share by the id ``share ls`` prints, by the id in its link (an API
    link's ``/s/<id>``), or by the link itself (key fragment and all)."""
    where = ref.partition("#")[0].rstrip("/")
    m = re.search(r"/s/([A-Za-z0-9_-]+)$", where) or re.search(r"/shares/([A-Za-z0-9_-]+)(?:\?|$)", where)
    wanted = {ref, where, m.group(1)} if m else {ref, where}
    return next((s for s in shares if s.id in wanted or s.location in wanted
                 or s.location.removeprefix("shares/") in wanted), None)


def revoke(vault: Any, share_id: str) -> Share:
    """Revoke a share: the store forgets its manifest (S3); a share file is marked only."""
    found = find_share(list_shares(vault), share_id)
    if found is None:
        raise NotFound(f"no share {share_id} in this vault ('livedata share ls' lists them)")
    if found.revoked is not None:
        raise UsageError(f"share {share_id} is already revoked")
    if found.kind == "s3":
        vault.store.delete(found.location)
    elif found.kind == "api":
        vault.store.revoke_share(found.location)
    if found.kind == "s3":
        # The manifest is gone, but a presigned URL of the copy works until it
        # expires: deleting the copy ends it now.  (A server share refuses its
        # revoked link itself; its copy goes at the next prune, since deleting
        # it would delete the server's record of the revoke, and link holders
        # would hear "no such share" instead of "revoked".)
        _delete_copy(vault, found.id)
    at = now()
    _journal(vault, {"t": "unshare", "id": found.id, "time": at})
    vault.events.add("share-revoke", found.path, detail=f"share {found.id} ({found.kind})")
    return Share(
        found.id, found.path, found.kind, found.created, found.expires, found.max_downloads,
        found.password, found.location, at,
    )


def _delete_copy(vault: Any, share_id: str) -> None:
    """Delete a share's copy of a packed file, if it made one."""
    from livedata_cli.packs import share_copy_key

    copy = share_copy_key(share_id)
    if vault.store.exists(copy):
        vault.store.delete(copy)


def delete_copies(vault: Any, vids: list[str]) -> int:
    """Delete the share copies of versions being purged; returns the bytes freed."""
    freed = 0
    for i in range(0, len(vids), 500):
        chunk = vids[i : i + 500]
        rows = vault.index.db.execute(
            f"SELECT id FROM shares WHERE kind IN ('s3', 'api') AND vid IN ({','.join('?' * len(chunk))})", chunk
        ).fetchall()
        for (share_id,) in rows:
            from livedata_cli.packs import share_copy_key

            copy = share_copy_key(share_id)
            if vault.store.exists(copy):
                freed += vault.store.size(copy)
                vault.store.delete(copy)
    return freed


# -- the recipient's side -------------------------------------------------------
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


def _api_status(r: Any) -> None:
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


__all__ = [
    "Created",
    "Opened",
    "Share",
    "ShareRef",
    "create",
    "list_shares",
    "open_share",
    "parse_ref",
    "revoke",
]
