"""A Live-Data API store: ``https://HOST``, the vault lives in the account.

Each store key (``config``, ``keys/<slot>``, ``data/<object-id>``,
``journal/<name>``, ``audit/<chain>/<range>``) is one file of the account
whose ``file_name`` is that key and nothing else: no path, name, tag, note or
type of the user's files ever reaches the server, which sees the same opaque
names and ciphertext as a folder or a bucket would.  The server's extensions
used here: ``GET /files?name=`` (lookup), ``?prefix=&after=`` (listing in
name order), ``POST /files?replace=true`` (overwrite) and ``If-None-Match:
*`` (create only, 412 when the name exists).

Uploads stream: up to 18 MiB (a pack) stays in memory and is sent as one
request with its length; a larger object is spooled to an unlinked temporary
file in the home (ciphertext only) while a thread sends it as a resumable
upload (``/files/uploads``) in parts of 8 MiB as it grows.  When the connection
drops, or the server answers 5xx, the thread asks the server how many bytes
it holds and goes on from there, reading them again from the spool; the
server makes the parts a file only on the final commit.  Downloads stream
(``iter_raw``) and, after a dropped connection, go on from the last byte
received with ``Range``.  Memory stays bounded: an object of up to 18 MiB
on its way up, a few chunks otherwise.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from livedata_cli import settings
from livedata_cli.errors import IntegrityError, LivedataError, NotFound, QuotaFull, StoreUnreachable
from livedata_cli.remote.account import audit_logs
from livedata_cli.remote.client import Client, backoff, retries
from livedata_cli.stores import check_key

MIB = 1024 * 1024
# An object up to this size is one request from memory: a whole pack
# (livedata_cli/packs.py: 16 MiB and its last member of up to 1 MiB, sealed),
# where a resumable upload of it cost four requests and a spool file.
SPOOL_MEMORY = 18 * MIB
PART = 8 * MIB  # a larger one goes up as a resumable upload in parts of this size
CHUNK = 256 * 1024
SKIP_AHEAD = 4 * MIB  # a seek this far ahead reads on in the open response (pack members in order)
PAGE = 200  # the server's largest page
CACHE_LIMIT = 50_000  # name → (id, size) entries kept


class ApiStore:
    """An :class:`~livedata_cli.stores.ObjectStore` in a Live-Data account."""

    def __init__(self, url: str) -> None:
        self.client = Client(url)
        self.url = self.client.server
        self.remote = True
        self.packs = True  # small files share pack objects (livedata_cli/packs.py)
        self._window: Any = None  # readahead.Readahead, made on the first member read
        self._ids: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    # -- names ---------------------------------------------------------------------
    def _what(self, key: str) -> str:
        return f"{self.url} object {key}"

    def _missing(self, key: str) -> NotFound:
        return NotFound(f"object {key} is missing from the store {self.url}")

    def _remember(self, key: str, fid: str, size: int) -> None:
        with self._lock:
            if len(self._ids) >= CACHE_LIMIT:
                self._ids.clear()
            self._ids[key] = (fid, size)

    def _forget(self, key: str) -> None:
        with self._lock:
            self._ids.pop(key, None)

    def _lookup(self, key: str, *, fresh: bool = False) -> tuple[str, int] | None:
        """The file id and size of a key (newest file of that name), or None."""
        check_key(key)
        if not fresh:
            with self._lock:
                hit = self._ids.get(key)
            if hit is not None:
                return hit
        what = self._what(key)
        body = self.client.get_json("/files", what=what, params={"name": key, "per_page": PAGE})
        with self.client.shaped(what):
            items = sorted(body.get("items", []), key=lambda i: float(i.get("created_at", 0)))
            if not items:
                self._forget(key)
                return None
            found = str(items[-1]["id"]), int(items[-1]["size"])
        self._remember(key, *found)
        return found

    # -- writing -------------------------------------------------------------------
    def _post(self, key: str, body: Any, *, exclusive: bool, length: int | None = None) -> None:
        params: dict[str, Any] = {"file_name": key, "content_type": "application/octet-stream"}
        headers = {"Content-Type": "application/octet-stream"}
        if exclusive:
            headers["If-None-Match"] = "*"
        else:
            params["replace"] = "true"
        if length is not None:
            headers["Content-Length"] = str(length)
        resp = self.client.request(
            "POST", "/files", what=self._what(key), params=params, headers=headers, body=body, ok=(201, 412)
        )
        if resp.status_code == 412:
            raise FileExistsError(key)
        made = self.client.answer(resp, self._what(key))
        with self.client.shaped(self._what(key)):
            self._remember(key, str(made["id"]), int(made["size"]))

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        check_key(key)
        try:
            self._post(key, lambda: data, exclusive=exclusive, length=len(data))
        except FileExistsError:
            # A retried request whose first try was stored after all reads as
            # "exists": the same bytes there mean it was ours.
            try:
                if self.get_bytes(key) == data:
                    return
            except NotFound:
                pass
            raise

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        check_key(key)
        up = _Upload(self, key)
        try:
            yield up  # type: ignore[misc]
        except BaseException:
            up.abort()
            raise
        up.finish()

    # -- reading -------------------------------------------------------------------
    def open(self, key: str) -> BinaryIO:
        found = self._lookup(key)
        if found is None:
            raise self._missing(key)
        return io.BufferedReader(_Download(self, key, *found), buffer_size=CHUNK)  # type: ignore[return-value]

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def exists(self, key: str) -> bool:
        return self._lookup(key, fresh=True) is not None

    def size(self, key: str) -> int:
        found = self._lookup(key)
        if found is None:
            raise self._missing(key)
        return found[1]

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under a folder-like prefix such as ``journal/``, in name order, at every depth."""
        base = prefix.strip("/")
        if base:
            check_key(base)
        after: str | None = None
        while True:
            params: dict[str, Any] = {"prefix": f"{base}/" if base else "", "per_page": PAGE}
            if after is not None:
                params["after"] = after
            what = f"{self.url} listing {base or '/'}"
            body = self.client.get_json("/files", what=what, params=params)
            with self.client.shaped(what):
                items = [(str(i["file_name"]), str(i["id"]), int(i["size"])) for i in body.get("items", [])]
                if any(not name.startswith(params["prefix"]) for name, _, _ in items):
                    raise ValueError("a name outside the prefix asked for")
            last_name: str | None = None
            for name, fid, size in items:
                self._remember(name, fid, size)
                if name != last_name:  # two files of one name (an overwrite in flight): one key
                    yield name
                last_name = name
            if len(items) < PAGE:
                return
            after = items[-1][0]

    def delete(self, key: str) -> None:
        check_key(key)
        body = self.client.get_json("/files", what=self._what(key), params={"name": key, "per_page": PAGE})
        with self.client.shaped(self._what(key)):
            ids = [str(item["id"]) for item in body.get("items", [])]
        for fid in ids:
            with contextlib.suppress(NotFound):
                self.client.request(
                    "DELETE", f"/files/{fid}", what=self._what(key), params={"purge": "true"}, ok=(204,)
                )
        self._forget(key)

    def flush(self) -> None:
        """Nothing to do: the server answered each upload after storing it."""

    # -- share links (livedata_cli/vault/share_links.py) ------------------------------------------
    def create_share(
        self, key: str, *, manifest: str, expires_in: int, max_downloads: int | None, verifier: str | None,
        recipient: str | None = None, share_id: str | None = None,
    ) -> str:
        """A server share of one object: the server keeps the sealed manifest, the
        expiry, the download limit and an Argon2id hash of the password verifier."""
        found = self._lookup(key)
        if found is None:
            raise self._missing(key)
        body = {
            "file_id": found[0], "manifest": manifest, "expires_in": expires_in,
            "max_downloads": max_downloads, "password_verifier": verifier,
        }
        if recipient is not None:
            body["recipient_email"] = recipient
        if share_id is not None:
            body["id"] = share_id
        return str(self.client.request("POST", "/shares", what=f"{self.url} shares", json_body=body).json()["id"])

    def shares(self) -> dict[str, dict[str, Any]]:
        """This account's shares by id: downloads and the server's state."""
        out: dict[str, dict[str, Any]] = {}
        page = 1
        while True:
            body = self.client.get_json("/shares", what=f"{self.url} shares", params={"page": page, "per_page": PAGE})
            for item in body.get("items", []):
                out[str(item["id"])] = item
            if page * PAGE >= int(body.get("total", 0)):
                return out
            page += 1

    def revoke_share(self, share_id: str) -> None:
        with contextlib.suppress(NotFound):
            self.client.request("DELETE", f"/shares/{share_id}", what=f"{self.url} share {share_id}", ok=(204,))

    # -- shares to an account (livedata share --to) -------------------------------------
    def publish_public_key(self, public_hex: str, signing_hex: str | None = None) -> None:
        self.client.request(
            "PUT", "/users/me/public-key", what=f"{self.url} public key",
            json_body={"public_key": public_hex, "signing_key": signing_hex}, ok=(204,),
        )

    def signing_key_of(self, email: str) -> str | None:
        """Another account's Ed25519 signing key (hex) as the server says it is, or None."""
        try:
            body = self.client.get_json("/users/public-key", what=f"{self.url} public key of {email}",
                                        params={"email": email})
        except NotFound:
            return None
        key = body.get("signing_key")
        return None if key is None else str(key)

    def share_page(self, share_id: str) -> bytes | None:
        """The page the server serves for a share link in a browser, or None if it cannot be fetched."""
        import httpx

        try:
            resp = self.client.http.get(f"{self.url}/s/{share_id}")
        except httpx.HTTPError:
            return None
        return resp.content if resp.status_code == 200 else None

    def my_email(self) -> str:
        """The signed-in account's email, as the server says it is."""
        return str(self.client.get_json("/users/me", what=f"{self.url} profile").get("email", "")).strip().lower()

    def public_key_of(self, email: str) -> str | None:
        """Another account's X25519 public key (hex) as the server says it is, or None."""
        try:
            body = self.client.get_json("/users/public-key", what=f"{self.url} public key of {email}",
                                        params={"email": email})
        except NotFound:
            return None
        return str(body["public_key"])

    def incoming_shares(self) -> builtins.list[dict[str, Any]]:
        """Shares addressed to this account, newest first."""
        out: builtins.list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.client.get_json(
                "/shares/incoming", what=f"{self.url} incoming shares", params={"page": page, "per_page": PAGE}
            )
            out.extend(body.get("items", []))
            if page * PAGE >= int(body.get("total", 0)):
                return out
            page += 1

    def open_incoming(self, share_id: str) -> Any:
        """The streamed response of a share addressed to this account (close it after)."""
        return self.client.request(
            "GET", f"/shares/incoming/{share_id}/download", what=f"{self.url} share {share_id}", stream=True,
            ok=(200, 410),
        )

    # -- the account -----------------------------------------------------------------
    def server_audit(self, *, since: float | None = None, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """The account's audit records kept by the server, newest first."""
        return audit_logs(self.client, since=since, limit=limit)

    # -- pack members and their share copies ------------------------------------------
    def open_range(self, key: str, offset: int, length: int) -> BinaryIO:
        """``key`` positioned at ``offset``, of which only ``length`` bytes are asked
        for (``Range: bytes=A-B``: a pack member, never the whole pack)."""
        from livedata_cli.stores import readahead

        if length <= readahead.MEMBER_MAX:
            if self._window is None:
                self._window = readahead.Readahead(self._get_range)
            return readahead.read_member(self._window, key, offset, length)
        found = self._lookup(key)
        if found is None:
            raise self._missing(key)
        reader = _Download(self, key, *found, start=offset, length=length)
        return io.BufferedReader(reader, buffer_size=CHUNK)  # type: ignore[return-value]

    def _get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start..end`` of an object, in one request (fewer at its end)."""
        return self.read_range(key, start, end)[0]

    def copy_range(self, src: str, offset: int, length: int, dst: str) -> None:
        """Bytes ``offset`` to ``offset + length`` of ``src`` as a new object ``dst``,
        copied by the server (``POST /files/{id}/copy``): nothing travels twice."""
        check_key(dst)
        found = self._lookup(src)
        if found is None:
            raise self._missing(src)
        made = self.client.request(
            "POST", f"/files/{found[0]}/copy", what=self._what(src),
            json_body={"offset": offset, "length": length, "file_name": dst}, ok=(201,),
        ).json()
        self._remember(dst, str(made["id"]), int(made["size"]))

    # -- ranged reads ---------------------------------------------------------------
    def read_range(self, key: str, start: int, end: int) -> tuple[bytes, int]:
        """Bytes ``start``..``end`` (exclusive) of an object in one ranged request,
        fewer when the object is shorter, and the object's size (a restore
        reads a run of pack members this way: livedata_cli/vault/restore.py)."""
        for attempt in range(2):
            found = self._lookup(key, fresh=bool(attempt))
            if found is None:
                raise self._missing(key)
            fid, size = found
            if start >= size or end <= start:
                return b"", size
            try:
                resp = self.client.request(
                    "GET", f"/files/{fid}/download", what=self._what(key),
                    headers={"Range": f"bytes={start}-{min(end, size) - 1}"}, ok=(200, 206),
                )
            except NotFound:  # replaced since it was looked up: once more by name
                if attempt:
                    raise self._missing(key) from None
                continue
            data = resp.content
            if resp.status_code == 200:  # a server that ignored Range
                return data[start:end], len(data)
            total = str(resp.headers.get("content-range", "")).rpartition("/")[2]
            return data, int(total) if total.isdigit() else size
        raise self._missing(key)


class _Aborted(Exception):
    """The writer failed: the upload in flight must not complete."""


class _Upload:
    """The stream handed to the container encryptor; see the module docstring."""

    def __init__(self, store: ApiStore, key: str) -> None:
        self.store = store
        self.key = key
        self._buf = bytearray()
        self._fd: int | None = None
        self._size = 0
        self._done = False
        self._aborted = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._upload_id: str | None = None

    # -- the stream side ------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._error is not None:
            raise self._error
        mv = memoryview(data).cast("B")
        n = len(mv)
        if self._fd is None and len(self._buf) + n <= SPOOL_MEMORY:
            self._buf += mv
            return n
        if self._fd is None:
            self._start_spool()
        assert self._fd is not None
        written = 0
        while written < n:
            written += os.pwrite(self._fd, mv[written:], self._size + written)
        with self._cond:
            self._size += n
            self._cond.notify_all()
        return n

    def flush(self) -> None:
        pass

    # -- spooling --------------------------------------------------------------------
    def _start_spool(self) -> None:
        home = settings.ensure_home()
        f = tempfile.TemporaryFile(dir=home, prefix=".upload-")  # noqa: SIM115 - unlinked at once
        self._fd = os.dup(f.fileno())
        f.close()
        os.pwrite(self._fd, bytes(self._buf), 0)
        self._size = len(self._buf)
        self._buf = bytearray()
        self._thread = threading.Thread(target=self._send, name="livedata-api-put", daemon=True)
        self._thread.start()

    def _wait_for(self, pos: int) -> tuple[int, bool]:
        """Wait until the spool holds a whole part past ``pos`` or the writer is done: (size, done)."""
        with self._cond:
            while self._size < pos + PART and not self._done and not self._aborted:
                self._cond.wait()
            if self._aborted:
                raise _Aborted()
            return self._size, self._done

    def _spooled(self, start: int, stop: int) -> Iterator[bytes]:
        assert self._fd is not None
        pos = start
        while pos < stop:
            chunk = os.pread(self._fd, min(CHUNK, stop - pos), pos)
            if not chunk:
                raise StoreUnreachable(f"the upload spool of {self.key} was cut short")
            pos += len(chunk)
            yield chunk

    def _send_parts(self) -> None:
        """A resumable upload: parts of the spool as it grows; after a failure, on from the server's offset."""
        from livedata_cli.errors import Refused

        client, what = self.store.client, self.store._what(self.key)
        params = {"file_name": self.key, "content_type": "application/octet-stream", "replace": "true"}
        self._upload_id = upload_id = str(
            client.request("POST", "/files/uploads", what=what, params=params, ok=(201,)).json()["id"]
        )
        path = f"/files/uploads/{upload_id}"
        pos, failures = 0, 0
        while True:
            size, done = self._wait_for(pos)
            if done and pos >= size:
                break
            stop = min(size, pos + PART)
            total = str(size) if done else "*"
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {pos}-{stop - 1}/{total}",
                "Content-Length": str(stop - pos),
            }
            try:
                resp = client.request(
                    "PUT", path, what=what, headers=headers, body=functools.partial(self._spooled, pos, stop),
                    ok=(200, 409), attempts=0,
                )
                if resp.status_code == 200:
                    pos, failures = int(resp.json()["received"]), 0
                    continue
            except QuotaFull:
                raise
            except (StoreUnreachable, Refused):
                failures += 1
                if failures > retries():
                    raise
                time.sleep(backoff(failures - 1))
            # A dropped connection, an overloaded server or a part out of step: ask where it stands.
            pos = int(client.get_json(path, what=what)["received"])
        try:
            made = client.request("POST", f"{path}/complete", what=what, ok=(201,)).json()
        except NotFound:
            # A retried commit whose first try was stored: the file is there.
            found = self.store._lookup(self.key, fresh=True)
            if found is None or found[1] != pos:
                raise
            made = {"id": found[0], "size": found[1]}
        self._upload_id = None
        self.store._remember(self.key, str(made["id"]), int(made["size"]))

    def _send(self) -> None:
        try:
            self._send_parts()
        except BaseException as e:
            if self._upload_id is not None:
                with contextlib.suppress(Exception):
                    self.store.client.request(
                        "DELETE", f"/files/uploads/{self._upload_id}", what=self.store._what(self.key), ok=(204,),
                        attempts=0,
                    )
            self._error = e if isinstance(e, LivedataError | _Aborted) else StoreUnreachable(
                f"uploading {self.key} to {self.store.url} failed: {type(e).__name__}: {e}"
            )

    # -- the end -----------------------------------------------------------------------
    def finish(self) -> None:
        try:
            if self._thread is None:
                data = bytes(self._buf)
                self._buf = bytearray()
                self.store._post(self.key, lambda: data, exclusive=False, length=len(data))
                return
            with self._cond:
                self._done = True
                self._cond.notify_all()
            self._thread.join()
            if self._error is not None:
                raise self._error
        finally:
            self._close()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Download(io.RawIOBase):
    """One object, streamed; a dropped connection goes on from the last byte with ``Range``."""

    def __init__(self, store: ApiStore, key: str, fid: str, size: int, start: int = 0, length: int | None = None) -> None:
        """With ``length``, only bytes ``start`` to ``start + length`` are asked for
        (``Range: bytes=A-B``, a pack member), and the stream starts there."""
        super().__init__()
        self.store = store
        self.key = key
        self.fid = fid
        self.size = size
        self.total = size if length is None else min(size, start + length)
        self._bounded = length is not None
        self._pos = start
        self._resp: Any = None
        self._chunks: Iterator[bytes] | None = None
        self._chunk = b""
        self._failures = 0
        self._relooked = False
        self._skip = 0  # bytes of the open response to drop before _pos (a short seek ahead)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self.total
        if offset != self._pos:
            ahead = offset - self._pos
            if self._chunks is not None and 0 < ahead + self._skip <= SKIP_AHEAD:
                self._skip += ahead  # the next member of a pack: read on rather than ask again
            else:
                self._drop()
            self._pos = offset
        return offset

    def _drop(self) -> None:
        if self._resp is not None:
            with contextlib.suppress(Exception):
                self._resp.close()
        self._resp, self._chunks, self._chunk, self._skip = None, None, b"", 0

    def _open(self) -> None:
        headers = {"Range": f"bytes={self._pos}-"} if self._pos else {}
        if self._bounded and self._pos < self.total:
            headers = {"Range": f"bytes={self._pos}-{self.total - 1}"}
        try:
            resp = self.store.client.request(
                "GET", f"/files/{self.fid}/download", what=self.store._what(self.key), headers=headers,
                stream=True, ok=(200, 206),
            )
        except NotFound:
            # Replaced since it was looked up: once more by name, else it is gone.
            found = None if self._relooked else self.store._lookup(self.key, fresh=True)
            self._relooked = True
            if found is None or found[1] != self.size:
                raise self.store._missing(self.key) from None
            self.fid = found[0]
            return self._open()
        if resp.status_code == 200 and self._pos:
            skip = self._pos  # a server that ignored Range: drop what we have
            chunks = resp.iter_raw(CHUNK)
            while skip > 0:
                part = next(chunks, b"")
                if not part:
                    break
                if len(part) > skip:
                    self._chunk = part[skip:]
                skip -= len(part)
            self._resp, self._chunks = resp, chunks
            return
        self._resp, self._chunks = resp, resp.iter_raw(CHUNK)

    def readinto(self, buf: Any) -> int:
        import httpx

        out = memoryview(buf).cast("B")
        while True:
            if self._pos >= self.total:
                return 0
            if self._chunk and self._skip:
                n = min(len(self._chunk), self._skip)
                self._chunk, self._skip = self._chunk[n:], self._skip - n
                continue
            if self._chunk:
                n = min(len(out), len(self._chunk))
                out[:n] = self._chunk[:n]
                self._chunk = self._chunk[n:]
                self._pos += n
                self._failures = 0
                return n
            try:
                if self._chunks is None:
                    self._open()
                    continue
                part = next(self._chunks, b"")
                if not part:
                    raise IntegrityError(
                        f"object {self.key} ended at byte {self._pos} of {self.total} in the store {self.store.url}"
                    )
                self._chunk = part
            except (httpx.TransportError, IntegrityError) as e:
                self._drop()
                self._failures += 1
                if self._failures > retries():
                    if isinstance(e, IntegrityError):
                        raise
                    raise StoreUnreachable(
                        f"downloading {self.key} from {self.store.url} failed {self._failures} times: {type(e).__name__}"
                    ) from None
                time.sleep(backoff(self._failures - 1))

    def close(self) -> None:
        self._drop()
        super().close()
