"""An S3 store: AWS S3 or any S3-compatible server (MinIO, Ceph RGW, Wasabi, R2).

``s3://BUCKET/PREFIX`` holds the same objects as a folder store, under the
prefix: ``config``, ``keys/<slot>``, ``data/<object-id>``, ``journal/<name>``.
All names are opaque; the bucket listing shows ids, never file names.

Uploads stream: a container is cut into parts on segment boundaries (the
first part also carries the header), several parts travel at once on a small
thread pool, and memory stays at a few parts whatever the file size.  A file
that fits in one part is one ``PutObject``.  A multipart upload started with
``on_start`` is resumable: when the writing process dies, the upload is left
in the bucket, and the next run hands its id back; since the vault re-encrypts
with the same data key and salt, the parts regenerate byte for byte, and those
the bucket already holds with the same MD5 ETag are not sent again.

Downloads stream too: ranged GETs, several in flight, handed to the container
reader in order, which authenticates segment by segment.

Server-side encryption (a second layer under livedata's own):
``LIVEDATA_S3_SSE=kms`` (the vault's KMS key, else the bucket's default KMS
key), ``s3`` (SSE-S3, AES256) or ``none``; the default is ``kms`` for a vault
with a KMS key and ``s3`` otherwise.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from livedata_cli import aws
from livedata_cli.crypto.container import DEFAULT_LOG2_SEGMENT, HEADER_LEN, TAG_LEN
from livedata_cli.errors import IntegrityError, LivedataError, NotFound, UsageError
from livedata_cli.stores import OnStart, check_key

MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3's floor for every part but the last
MAX_PARTS = 10_000
DEFAULT_PART = 8 * MIB
# Parts of a stream whose size is unknown (stdin): large enough for ~300 GiB.
UNKNOWN_SIZE_PART = 32 * MIB
DEFAULT_CONCURRENCY = 4
# Downloads: the first ranged GET is small (a header check reads 102 bytes),
# the next ones are large and several run ahead of the reader.
FIRST_RANGE = 256 * 1024
RANGE_SIZE = 16 * MIB
SEALED_SEGMENT = (1 << DEFAULT_LOG2_SEGMENT) + TAG_LEN

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` → ``("bucket", "some/prefix")``."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.match(bucket):
        raise UsageError(f"invalid S3 bucket name {bucket!r} in {url!r}")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise UsageError(f"invalid S3 prefix in {url!r}")
    return bucket, "/".join(parts)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name} must be a whole number, got {value!r}") from None


def min_part_size() -> int:
    """The smallest part livedata sends: ``LIVEDATA_S3_PART_SIZE`` bytes, at least 5 MiB."""
    size = _env_int("LIVEDATA_S3_PART_SIZE", DEFAULT_PART)
    if size < MIN_PART:
        raise UsageError(f"LIVEDATA_S3_PART_SIZE must be at least {MIN_PART} (5 MiB), S3's minimum")
    return size


def choose_part_size(total: int | None) -> int:
    """Bytes per part (after the first, which also carries the header): whole
    sealed segments, at least the minimum, and few enough parts for S3's 10,000."""
    want = min_part_size()
    if total is None:
        want = max(want, UNKNOWN_SIZE_PART)
    else:
        want = max(want, -(-total // (MAX_PARTS - 10)))
    return -(-want // SEALED_SEGMENT) * SEALED_SEGMENT


def concurrency() -> int:
    n = _env_int("LIVEDATA_S3_CONCURRENCY", DEFAULT_CONCURRENCY)
    return max(1, min(n, 32))


def _not_implemented(e: BaseException) -> bool:
    """A call the server does not implement (501 NotImplemented, NotSupported)."""
    cause = e.__context__
    from livedata_cli import aws

    return cause is not None and aws.error_code(cause) in ("NotImplemented", "NotSupported", "501")


class S3Store:
    """An :class:`~livedata_cli.stores.ObjectStore` in an S3 bucket, under a prefix."""

    def __init__(self, url: str) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.kms_key_id: str | None = None
        self._client: Any = None
        self._lock = threading.Lock()
        self._silent: LivedataError | None = None  # set once the endpoint failed after its retries
        self.remote = True
        self.packs = True  # small files share pack objects (livedata_cli/packs.py)
        self._window: Any = None  # readahead.Readahead, made on the first member read

    # -- plumbing ------------------------------------------------------------
    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = aws.client("s3", pool=max(16, 4 * concurrency() + 8))
            return self._client

    def configure(self, *, kms_key_id: str | None) -> None:
        """Told by the vault which KMS key it uses, for SSE-KMS."""
        self.kms_key_id = kms_key_id

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, op: str, key: str | None, **kw: Any) -> Any:
        """One S3 call, its failures turned into livedata errors (exit 3/4/5/6)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            ReadTimeoutError,
        )

        if self._silent is not None:  # the endpoint stopped answering: do not wait on it again
            raise self._silent
        try:
            return getattr(self.client, op)(Bucket=self.bucket, **kw)
        except (ClientError, BotoCoreError) as e:
            what = f"{self.url}/{key}" if key else self.url
            if aws.error_code(e) in ("NoSuchKey", "404", "NotFound") and key:
                raise NotFound(f"object {key} is missing from the store {self.url}") from None
            err = aws.translate(e, what, bucket=self.bucket)
            if isinstance(e, ConnectionError | ReadTimeoutError):
                self._silent = err
            raise err from None

    def sse(self) -> dict[str, str]:
        """Server-side encryption arguments for writes (``LIVEDATA_S3_SSE``)."""
        mode = os.environ.get("LIVEDATA_S3_SSE", "").strip().lower() or ("kms" if self.kms_key_id else "s3")
        if mode == "kms":
            args = {"ServerSideEncryption": "aws:kms"}
            if self.kms_key_id:
                args["SSEKMSKeyId"] = self.kms_key_id
            return args
        if mode == "s3":
            return {"ServerSideEncryption": "AES256"}
        if mode == "none":
            return {}
        raise UsageError(f"LIVEDATA_S3_SSE must be kms, s3 or none, not {mode!r}")

    # -- ObjectStore -------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(key)
        if not exclusive:
            self._call("put_object", key, Key=full, Body=data, **self.sse())
            return
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*", **self.sse())
        except (ClientError, BotoCoreError) as e:
            code = aws.error_code(e)
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise FileExistsError(key) from None
            if code not in ("NotImplemented", "501"):
                raise aws.translate(e, f"{self.url}/{key}", bucket=self.bucket) from None
            # A server without conditional writes: check, then write.
            if self.exists(key):
                raise FileExistsError(key) from None
            self._call("put_object", key, Key=full, Body=data, **self.sse())

    def get_bytes(self, key: str) -> bytes:
        body = self._call("get_object", key, Key=self._key(key))["Body"]
        try:
            return bytes(body.read())
        except Exception as e:
            from botocore.exceptions import BotoCoreError

            if isinstance(e, BotoCoreError):
                raise aws.translate(e, f"{self.url}/{key}") from None
            raise
        finally:
            body.close()

    def writer(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self.resumable_writer(key)

    @contextlib.contextmanager
    def resumable_writer(
        self,
        key: str,
        *,
        size: int | None = None,
        upload_id: str | None = None,
        part_size: int | None = None,
        on_start: OnStart | None = None,
    ) -> Iterator[BinaryIO]:
        """A stream that becomes the object when the ``with`` block ends without error.

        ``size`` (the container's size, when known) chooses the part size.
        With ``on_start``, a multipart upload is started at once (when more
        than one part is needed) and reported as ``on_start(upload_id,
        part_size)``, and is left in the bucket if the block fails, to be
        resumed by passing ``upload_id`` and ``part_size`` back.
        """
        w = _PartWriter(self, key, size=size, upload_id=upload_id, part_size=part_size, on_start=on_start)
        try:
            yield w  # type: ignore[misc]
            w.finish()
        except BaseException:
            w.fail()
            raise

    def open(self, key: str) -> BinaryIO:
        return io.BufferedReader(_RangedReader(self, key), buffer_size=64 * 1024)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", key, Key=self._key(key))
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._call("head_object", key, Key=self._key(key))["ContentLength"])

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under a folder-like prefix such as ``journal/`` or ``keys/``, sorted."""
        base = prefix.strip("/")
        full = self._key(base) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Prefix": full}
            if token:
                kw["ContinuationToken"] = token
            page = self._call("list_objects_v2", None, **kw)
            for item in page.get("Contents", []):
                yield str(item["Key"])[strip:]
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def delete(self, key: str) -> None:
        with contextlib.suppress(NotFound):
            self._call("delete_object", key, Key=self._key(key))

    def flush(self) -> None:
        """Nothing to do: an S3 object is durable once its PUT or Complete returned."""

    def presign_get(self, key: str, expires_in: int) -> str:
        """A URL that GETs one object without credentials for ``expires_in`` seconds
        (share links; S3 allows at most 7 days).  Signed with SigV4, whose
        expiry S3 enforces, whatever the client signs requests with."""
        from botocore.config import Config

        meta = self.client.meta
        presigner = aws._session.create_client(
            "s3",
            endpoint_url=meta.endpoint_url,
            region_name=meta.region_name,
            config=meta.config.merge(Config(signature_version="s3v4")),
        )
        return str(
            presigner.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=int(expires_in)
            )
        )

    # -- multipart uploads ----------------------------------------------------
    def list_uploads(self, prefix: str = "data/") -> Iterator[tuple[str, str, float]]:
        """Multipart uploads in progress under a prefix: ``(key, upload id, started)``."""
        full = self._key(prefix.strip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        kw: dict[str, Any] = {"Prefix": full}
        while True:
            try:
                page = self._call("list_multipart_uploads", None, **kw)
            except LivedataError as e:
                if not _not_implemented(e):
                    raise
                # Housekeeping only: a server without the call (s3rver, some gateways)
                # has no abandoned uploads livedata can find; the command goes on.
                from livedata_cli import netwait

                if not getattr(self, "_said_no_list_uploads", False):  # once per command
                    self._said_no_list_uploads = True
                    netwait.note(f"{self.url}: the server does not support ListMultipartUploads; "
                                 "abandoned multipart uploads are not looked for")
                return
            for up in page.get("Uploads", []):
                started = up.get("Initiated")
                ts = started.timestamp() if hasattr(started, "timestamp") else time.time()
                yield str(up["Key"])[strip:], str(up["UploadId"]), float(ts)
            if not page.get("IsTruncated"):
                return
            kw["KeyMarker"] = page.get("NextKeyMarker")
            kw["UploadIdMarker"] = page.get("NextUploadIdMarker")

    def abort_upload(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(NotFound):
            self._call("abort_multipart_upload", key, Key=self._key(key), UploadId=upload_id)

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        """Abort an upload whose writing failed: that failure is the one to report, so
        the abort's own (the store's, the network's) is dropped (prune removes an upload
        left behind); Ctrl-C is not."""
        from botocore.exceptions import BotoCoreError, ClientError

        with contextlib.suppress(LivedataError, ClientError, BotoCoreError, OSError):
            self.abort_upload(key, upload_id)

    def list_parts(self, key: str, upload_id: str) -> dict[int, tuple[str, int]]:
        """The parts an upload already holds: number → (ETag, size)."""
        parts: dict[int, tuple[str, int]] = {}
        kw: dict[str, Any] = {"Key": self._key(key), "UploadId": upload_id}
        while True:
            page = self._call("list_parts", key, **kw)
            for p in page.get("Parts", []):
                parts[int(p["PartNumber"])] = (str(p["ETag"]), int(p["Size"]))
            if not page.get("IsTruncated"):
                return parts
            kw["PartNumberMarker"] = page.get("NextPartNumberMarker")

    # -- pack members and their share copies ------------------------------------------
    def open_range(self, key: str, offset: int, length: int) -> BinaryIO:
        """``key`` positioned at ``offset``, of which only ``length`` bytes are fetched
        (one ranged GET for a pack member, never the whole pack)."""
        from livedata_cli.stores import readahead

        if length <= readahead.MEMBER_MAX:
            if self._window is None:
                self._window = readahead.Readahead(self._get_range)
            return readahead.read_member(self._window, key, offset, length)
        reader = _RangedReader(self, key, offset, length)
        return io.BufferedReader(reader, buffer_size=64 * 1024)  # type: ignore[return-value]

    def _get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start..end`` of an object, in one GET (fewer at its end)."""
        return self.read_range(key, start, end)[0]

    def copy_range(self, src: str, offset: int, length: int, dst: str) -> None:
        """Bytes ``offset`` to ``offset + length`` of ``src`` as a new object ``dst``,
        server-side: a multipart upload of one part made with ``UploadPartCopy``
        and ``CopySourceRange`` (``CopyObject`` copies whole objects only; the
        one part of an upload may be smaller than 5 MiB, as any last part)."""
        if length <= 0:
            raise IntegrityError(f"object {src}: an empty range cannot be copied")
        full = self._key(dst)
        up = self._call("create_multipart_upload", dst, Key=full, **self.sse())
        upload_id = str(up["UploadId"])
        try:
            r = self._call(
                "upload_part_copy", src, Key=full, UploadId=upload_id, PartNumber=1,
                CopySource={"Bucket": self.bucket, "Key": self._key(src)},
                CopySourceRange=f"bytes={offset}-{offset + length - 1}",
            )
            etag = str(r["CopyPartResult"]["ETag"])
            self._call(
                "complete_multipart_upload", dst, Key=full, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
            )
        except BaseException:
            self._abort_quietly(dst, upload_id)
            raise

    def read_range(self, key: str, start: int, end: int) -> tuple[bytes, int]:
        """Bytes ``start``..``end`` (exclusive) of an object in one ranged GET,
        fewer when the object is shorter, and the object's size (a restore
        reads a run of pack members this way: livedata_cli/vault/restore.py)."""
        from botocore.exceptions import BotoCoreError, ClientError

        if self._silent is not None:
            raise self._silent
        what = f"{self.url}/{key}"
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end - 1}")
            body = r["Body"]
            try:
                data = bytes(body.read())
            finally:
                body.close()
        except ClientError as e:
            code = aws.error_code(e)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"object {key} is missing from the store {self.url}") from None
            if code == "InvalidRange":  # starts at or past the end
                return b"", self.size(key)
            raise aws.translate(e, what, bucket=self.bucket) from None
        except BotoCoreError as e:
            raise aws.translate(e, what) from None
        total = str(r.get("ContentRange") or "").rpartition("/")[2]
        if total.isdigit():
            return data, int(total)
        return data[start:end], len(data)  # a server that ignored Range sent it whole


class _PartWriter:
    """Cuts a stream into parts and uploads them, a few at a time.

    ``write`` runs on the container encryptor's writer thread; parts go to a
    small pool, with a semaphore so at most ``concurrency()`` parts are in
    flight and memory stays bounded.
    """

    def __init__(
        self,
        store: S3Store,
        key: str,
        *,
        size: int | None,
        upload_id: str | None,
        part_size: int | None,
        on_start: OnStart | None,
    ) -> None:
        self.store = store
        self.key = key
        self.full = store._key(key)
        self.part_size = part_size or choose_part_size(size)
        self.first_size = HEADER_LEN + self.part_size
        self.upload_id: str | None = None
        self.keep_on_failure = on_start is not None
        self.sent = 0  # parts sent by this run
        self.skipped = 0  # parts the bucket already had (resumed)
        self._buf = bytearray()
        self._number = 0
        self._etags: dict[int, str] = {}
        self._existing: dict[int, tuple[str, int]] = {}
        # Parts in flight: a few, and fewer when parts are large (stdin's 32 MiB,
        # files over ~80 GB), so memory stays near 64 MiB of parts.
        self._inflight = max(2, min(concurrency(), (64 * MIB) // self.part_size))
        self._slots = threading.BoundedSemaphore(self._inflight)
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[None]] = []
        self._error: BaseException | None = None
        self._done = False
        if upload_id is not None:
            try:
                self._existing = store.list_parts(key, upload_id)
                self.upload_id = upload_id
            except NotFound:
                self._existing = {}  # gone (aborted or expired): start afresh
        if self.upload_id is None and on_start is not None and size is not None and size > self.first_size:
            self._start()
            on_start(self.upload_id or "", self.part_size)

    # -- the stream side ------------------------------------------------------
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        mv = memoryview(data).cast("B")
        n = len(mv)
        while mv:
            limit = self.first_size if self._number == 0 else self.part_size
            if len(self._buf) >= limit:
                data, self._buf = self._buf, bytearray()
                self._send(data)
                continue
            room = limit - len(self._buf)
            self._buf += mv[:room]
            mv = mv[room:]
        return n

    def flush(self) -> None:
        pass

    # -- parts ------------------------------------------------------------------
    def _start(self) -> None:
        up = self.store._call("create_multipart_upload", self.key, Key=self.full, **self.store.sse())
        self.upload_id = str(up["UploadId"])

    def _send(self, data: bytearray) -> None:
        if self._error is not None:
            raise self._error
        if self.upload_id is None:
            self._start()
        self._number += 1
        number = self._number
        have = self._existing.get(number)
        if have is not None and have[1] == len(data):
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if have[0].strip('"').lower() == md5:
                self._etags[number] = have[0]
                self.skipped += 1
                return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._inflight, thread_name_prefix="livedata-s3-put")
        self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            raise self._error
        self._futures.append(self._pool.submit(self._put_part, number, data))

    def _put_part(self, number: int, data: bytearray) -> None:
        try:
            r = self.store._call(
                "upload_part",
                self.key,
                Key=self.full,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
            self._etags[number] = str(r["ETag"])
            self.sent += 1
        except BaseException as e:
            if self._error is None:
                self._error = e
            raise
        finally:
            self._slots.release()

    def _wait(self) -> None:
        for f in self._futures:
            f.exception()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        if self.upload_id is None and self._number == 0:
            # It all fit in one part: a single PUT, no multipart upload.
            self.store._call("put_object", self.key, Key=self.full, Body=bytes(self._buf), **self.store.sse())
            self._done = True
            return
        if self._buf or self._number == 0:
            data, self._buf = self._buf, bytearray()
            self._send(data)
        self._wait()
        parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in sorted(self._etags)]
        self.store._call(
            "complete_multipart_upload",
            self.key,
            Key=self.full,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._done = True

    def fail(self) -> None:
        """The block failed: stop, and abort the upload unless it can be resumed."""
        if self._error is None:
            self._error = IntegrityError("upload abandoned")
        with contextlib.suppress(Exception):  # the block's own error is the one to report
            self._wait()
        if self.upload_id is not None and not self._done and not self.keep_on_failure:
            self.store._abort_quietly(self.key, self.upload_id)


class _RangedReader(io.RawIOBase):
    """Reads one object with ranged GETs, several ahead of the reader.

    At most ``concurrency()`` ranges of ``RANGE_SIZE`` are in flight or
    waiting, so memory is bounded whatever the object size.  Every range
    after the first carries ``If-Match`` with the first one's ETag: an object
    replaced while it is read fails instead of mixing two versions.
    """

    def __init__(self, store: S3Store, key: str, start: int = 0, length: int | None = None) -> None:
        """With ``length``, only bytes ``start`` to ``start + length`` are ever
        asked for (a pack member: one GET for a small one), and the stream
        starts there; positions stay those of the whole object."""
        super().__init__()
        self.store = store
        self.key = key
        self.full = store._key(key)
        self._pos = start
        self._total: int | None = None
        self._end = None if length is None else start + length
        self._etag: str | None = None
        self._chunk = b""
        self._chunk_start = start
        self._ahead: collections.deque[tuple[int, Future[bytes]]] = collections.deque()
        self._next = start  # where the next scheduled range starts
        self._pool: ThreadPoolExecutor | None = None
        self._fetch_first(start)

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
            offset += self._total or 0
        if not (self._chunk_start <= offset <= self._chunk_start + len(self._chunk)):
            self._drop_ahead()
            self._chunk, self._chunk_start, self._next = b"", offset, offset
        self._pos = offset
        return offset

    def _get(self, start: int, end: int) -> tuple[bytes, Any]:
        kw: dict[str, Any] = {"Key": self.full, "Range": f"bytes={start}-{end - 1}"}
        if self._etag:
            kw["IfMatch"] = self._etag
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            r = self.store.client.get_object(Bucket=self.store.bucket, **kw)
            return r["Body"].read(), r
        except ClientError as e:
            code = aws.error_code(e)
            if code in ("PreconditionFailed", "412"):
                raise IntegrityError(f"object {self.key} changed in the store while being read") from None
            if code == "InvalidRange":
                return b"", None
            if code in ("NoSuchKey", "404"):
                raise NotFound(f"object {self.key} is missing from the store {self.store.url}") from None
            raise aws.translate(e, f"{self.store.url}/{self.key}", bucket=self.store.bucket) from None
        except BotoCoreError as e:
            raise aws.translate(e, f"{self.store.url}/{self.key}") from None

    def _get_bytes(self, start: int, end: int) -> bytes:
        return self._get(start, end)[0]

    def _fetch_first(self, start: int) -> None:
        end = start + FIRST_RANGE if self._end is None else max(start + 1, min(self._end, start + RANGE_SIZE))
        data, r = self._get(start, end)
        if r is not None:
            self._etag = r.get("ETag")
            content_range = str(r.get("ContentRange") or "")
            total = content_range.rpartition("/")[2]
            self._total = int(total) if total.isdigit() else start + len(data)
        else:
            self._total = start
        if self._end is not None:
            self._total = min(self._total, self._end)
            data = data[: max(0, self._total - start)]
        self._chunk, self._chunk_start, self._next = data, start, start + len(data)

    def _schedule(self) -> None:
        assert self._total is not None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(concurrency(), thread_name_prefix="livedata-s3-get")
        while len(self._ahead) < concurrency() and self._next < self._total:
            start, end = self._next, min(self._next + RANGE_SIZE, self._total)
            self._ahead.append((start, self._pool.submit(self._get_bytes, start, end)))
            self._next = end

    def _drop_ahead(self) -> None:
        for _start, f in self._ahead:
            f.cancel()
        self._ahead.clear()

    def readinto(self, buf: Any) -> int:
        out = memoryview(buf).cast("B")
        while True:
            offset = self._pos - self._chunk_start
            if 0 <= offset < len(self._chunk):
                n = min(len(out), len(self._chunk) - offset)
                out[:n] = self._chunk[offset : offset + n]
                self._pos += n
                return n
            if self._total is None:
                self._fetch_first(self._pos)
                continue
            if self._pos >= self._total:
                return 0
            if not self._ahead:
                self._next = max(self._next, self._pos)
                self._schedule()
            start, f = self._ahead.popleft()
            self._chunk, self._chunk_start = f.result(), start
            if not self._chunk:
                raise IntegrityError(f"object {self.key} is shorter than the store said")
            self._schedule()

    def close(self) -> None:
        self._drop_ahead()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        super().close()
