"""Share links, the owner's side: create, list, revoke (and the copies of packed
files).  Opening one as a stranger is ``livedata_cli/share_recipient.py``.

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

import re
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from livedata_cli.crypto import share_manifest as sc
from livedata_cli.errors import (
    IntegrityError,
    NotFound,
    UsageError,
)
from livedata_cli.index import shares as share_index
from livedata_cli.names import for_json
from livedata_cli.share_recipient import FILE_MAGIC, SUFFIX, _iso, now
from livedata_cli.stores import LinkSharing, ObjectStore, PresignedLinks, ShareHosting

if TYPE_CHECKING:
    from livedata_cli.index.core import Version
    from livedata_cli.vault.core import Vault

DEFAULT_EXPIRY = 7 * 86400
S3_MAX_EXPIRY = 7 * 86400  # the longest a SigV4 presigned URL lasts
_DURATION_RE = re.compile(r"\s*(\d+)\s*([smhdw])\s*")


# The longest a share may last (a store may allow less: a Live-Data server a year).
MAX_EXPIRY = 100 * 365 * 86400


def parse_duration(text: str) -> int:
    """Seconds from ``90m``, ``36h``, ``7d``, ``2w`` (or ``30s``)."""
    m = _DURATION_RE.fullmatch(text)
    if not m or int(m.group(1)) <= 0:
        raise UsageError(f"--expires: {text!r} is not a duration such as 30m, 1h, 7d or 2w")
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    if seconds > MAX_EXPIRY:  # a date the clock functions cannot show
        raise UsageError(f"--expires: {text!r} is longer than {MAX_EXPIRY // 86400}d")
    return seconds


def _api(vault: Vault) -> ShareHosting:
    """The vault's store, where ``store_kind`` said "api": a server hosts its shares."""
    return cast("ShareHosting", vault.store)


def _sharing(vault: Vault) -> LinkSharing:
    """The vault's store, where ``store_kind`` said "s3" or "api": it copies byte ranges server-side."""
    return cast("LinkSharing", vault.store)


def store_kind(store: ObjectStore) -> str:
    """What a share is made of on this store (and the ``kind`` its journal record keeps)."""
    if isinstance(store, PresignedLinks):
        return "s3"
    if isinstance(store, ShareHosting):
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
            "path": for_json(self.path),
            "store": self.kind,
            "created": self.created,
            "expires": self.expires,
            "downloads": self.downloads,
            "max_downloads": self.max_downloads,
            "password": self.password,
            "location": for_json(self.location),
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
    vault: Vault,
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


def _copy_member(vault: Vault, v: Version, share_id: str) -> str:
    """A packed version's container copied into an object of its own (S3
    ``UploadPartCopy`` of the byte range, the API server's copy endpoint)."""
    from livedata_cli.packs import share_copy_key

    copy = share_copy_key(share_id)
    _sharing(vault).copy_range(v.store_key, v.offset, v.length, copy)
    return copy


def _publish(
    vault: Vault, kind: str, v: Version, store_key: str, offset: int, manifest: dict[str, Any], share_id: str,
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
        location = _api(vault).create_share(
            store_key,
            manifest=base64.b64encode(envelope).decode(),
            expires_in=expires_in,
            max_downloads=max_downloads,
            verifier=verifier,
        )
        return location, f"{vault.store.url}/s/{location}#{key}", key
    signer = cast("PresignedLinks", vault.store)  # kind "s3"
    manifest["data"] = signer.presign_get(store_key, expires_in)
    manifest["offset"] = offset
    envelope = sc.seal_manifest(secret, share_id, manifest, password)
    location = f"shares/{share_id}"
    vault.store.put_bytes(location, envelope)
    return location, f"{signer.presign_get(location, expires_in)}#{key}", key


def _recorded(
    vault: Vault, v: Version, kind: str, share_id: str, created: float, expires: float, max_downloads: int | None,
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


def _write_share_file(vault: Vault, v: Version, envelope: bytes, target: Path) -> None:
    """Manifest and container bytes, written as a download is (``localfs.write_file``:
    a temporary file, 0600, renamed into place once whole)."""
    from livedata_cli.localfs import write_file

    def write(out: BinaryIO) -> int:
        with vault.store.open(v.store_key) as src:
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
        return v.length

    write_file(target, write, mode=0o600)


def _journal(vault: Vault, record: dict[str, Any]) -> None:
    """One journal record of a share event (audited by the caller, with its path)."""
    vault._write_journal([record], audited=False)


def list_shares(vault: Vault) -> list[Share]:
    vault.sync()
    rows = share_index.all_shares(vault.index)
    server: dict[str, dict[str, Any]] = {}
    if any(r["kind"] == "api" for r in rows) and store_kind(vault.store) == "api":
        server = _api(vault).shares()
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


def revoke(vault: Vault, share_id: str) -> Share:
    """Revoke a share: the store forgets its manifest (S3); a share file is marked only."""
    found = find_share(list_shares(vault), share_id)
    if found is None:
        raise NotFound(f"no share {share_id} in this vault ('livedata share ls' lists them)")
    if found.revoked is not None:
        raise UsageError(f"share {share_id} is already revoked")
    if found.kind == "s3":
        vault.store.delete(found.location)
    elif found.kind == "api":
        _api(vault).revoke_share(found.location)
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


def _delete_copy(vault: Vault, share_id: str) -> None:
    """Delete a share's copy of a packed file, if it made one."""
    from livedata_cli.packs import share_copy_key

    copy = share_copy_key(share_id)
    if vault.store.exists(copy):
        vault.store.delete(copy)


def delete_copies(vault: Vault, vids: list[str]) -> int:
    """Delete the share copies of versions being purged; returns the bytes freed."""
    from livedata_cli.packs import share_copy_key

    freed = 0
    for share_id in share_index.copied_share_ids(vault.index, vids):
        copy = share_copy_key(share_id)
        if vault.store.exists(copy):
            freed += vault.store.size(copy)
            vault.store.delete(copy)
    return freed


__all__ = [
    "Created",
    "Share",
    "create",
    "delete_copies",
    "list_shares",
    "now",
    "revoke",
]
