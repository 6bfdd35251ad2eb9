"""A folder store: the embedded default, also for USB disks and NFS mounts.

Objects are written to ``tmp/`` then renamed into place, so a killed process
never leaves half an object under its real name; ``flush()`` makes them
durable before a journal refers to them.  Objects are created 0600 and
folders 0700, so other local users cannot copy ``keys/*`` to guess a
passphrase offline.  Only ``init`` creates the store folder (``prepare``): a
folder that is missing (an unmounted disk) is "store unreachable", never
silently created again.  ``data/`` is
sharded by the first two hex digits of the object id so that a vault with
millions of files keeps folders small.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TypeGuard

from livedata_cli import writeback
from livedata_cli.errors import IntegrityError, NotFound, StoreUnreachable
from livedata_cli.stores import check_key

_HEX = frozenset("0123456789abcdef")
# Up to this many objects written since the last flush are fsynced one by one.
FSYNC_EACH_MAX = 64


class LocalStore:
    """An :class:`~livedata_cli.stores.ObjectStore` on a local folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.remote = False  # a local disk: no latency to hide with parallel transfers
        self.packs = True  # small files share pack objects (livedata_cli/packs.py)
        self.url = str(self.root)
        self._made: set[str] = set()  # folders known to exist
        self._tmp_dir: str | None = None
        self._unsynced: list[str] = []  # objects renamed into place since the last flush()
        self._lock = threading.Lock()

    # -- paths -------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return Path(self._spath(key))

    def _spath(self, key: str) -> str:
        """The file of a key, as a string (once per stored file: no pathlib here)."""
        return f"{self.url}/{key_path(key)}"

    def prepare(self) -> None:
        """Create the store folder (``init`` only), private to this user."""
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise StoreUnreachable(f"cannot create the store folder {self.root}: {e.strerror}") from None
        if not self.root.is_dir():
            raise StoreUnreachable(f"cannot create the store folder {self.root}: it is not a folder")

    def check(self) -> None:
        """StoreUnreachable unless the store folder is there (a disk may be unmounted)."""
        if not os.path.isdir(self.url):
            raise StoreUnreachable(
                f"store unreachable: the store folder {self.root} does not exist (is its disk mounted?)"
            )

    def _missing(self, key: str) -> NotFound:
        """A missing object, or (StoreUnreachable, raised) a missing store."""
        self.check()
        return NotFound(f"object {key} is missing from the store {self.root}")

    def _not_a_file(self, key: str) -> IntegrityError:
        return IntegrityError(f"object {key} in the store {self.root} is not a file")

    def _ensure_dir(self, folder: str) -> None:
        """Create a folder under the root (0700), never the root itself."""
        if folder in self._made:
            return
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise IntegrityError(f"{folder} in the store is not a folder") from None
        except FileNotFoundError:
            parent = os.path.dirname(folder)
            if os.path.normpath(parent) == os.path.normpath(self.url) or parent == folder:
                self.check()
                raise
            self._made.discard(parent)  # made before, gone since: the store may have moved away
            self._ensure_dir(parent)
            self._ensure_dir(folder)
        except OSError as e:
            self.check()
            raise StoreUnreachable(f"cannot write to store {self.root}: {e.strerror}") from None
        self._made.add(folder)

    def _tmp(self) -> str:
        if self._tmp_dir is None:
            tmp = f"{self.url}/tmp"
            self._ensure_dir(tmp)
            self._tmp_dir = tmp
        return f"{self._tmp_dir}/{secrets.token_hex(8)}"

    def _create(self, tmp: str) -> BinaryIO:
        """A new temporary object file, readable by this user only."""
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # tmp/ went away: the store folder with it?
            self.check()
            raise
        return os.fdopen(fd, "wb")

    def _commit(self, tmp: str, key: str, *, exclusive: bool) -> None:
        dest = self._path(key)
        self._ensure_dir(str(dest.parent))
        if exclusive:
            try:
                os.link(tmp, dest)  # fails if dest exists: create-only without a race
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        else:
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)

    # -- ObjectStore -------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        tmp = self._tmp()
        try:
            with self._create(tmp) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._commit(tmp, key, exclusive=exclusive)
        except FileExistsError:
            raise
        except BaseException as e:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if _unnamed_write_error(e):
                raise OSError(e.errno, e.strerror, tmp) from None
            raise

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """Data objects are renamed into place without an fsync each: ``flush()``
        makes a whole batch durable before its journal is written.  Plain
        string paths here: this may run once per stored file."""
        tmp = self._tmp()
        try:
            with self._create(tmp) as f:
                yield writeback.created(f)  # a big object is mostly on disk before flush() fsyncs it
            dest = self._spath(key)
            self._ensure_dir(os.path.dirname(dest))
            os.replace(tmp, dest)
            with self._lock:
                self._unsynced.append(dest)
        except BaseException as e:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if _unnamed_write_error(e):
                raise OSError(e.errno, e.strerror, tmp) from None
            raise

    def flush(self) -> None:
        """A few objects (packs, large files) are fsynced each, with their
        folders; many are flushed with one ``syncfs``, which also writes out
        whatever else the file system holds dirty (other programs' data)."""
        with self._lock:
            written, self._unsynced = self._unsynced, []
        if len(written) > FSYNC_EACH_MAX:
            _syncfs(self.root)
            return
        for path in written:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # deleted since (a duplicate found while written)
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for folder in sorted({os.path.dirname(p) for p in written}):
            _fsync_dir(Path(folder))

    def open(self, key: str) -> BinaryIO:
        """The object's file, for reading.  Anything else in its place (a folder,
        a FIFO) is a damaged object, exit 5; O_NONBLOCK so a FIFO is never waited on."""
        try:
            fd = os.open(self._spath(key), os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):  # a file in place of its folder: not there either
            raise self._missing(key) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise self._not_a_file(key)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    def exists(self, key: str) -> bool:
        if self._path(key).exists():
            return True
        self.check()
        return False

    def size(self, key: str) -> int:
        try:
            st = os.stat(self._spath(key))
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(key) from None
        if not stat.S_ISREG(st.st_mode):
            raise self._not_a_file(key)
        return st.st_size

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under a folder-like prefix such as ``journal/`` or ``keys/``, sorted."""
        self.check()  # an empty listing of a missing store would read as an empty vault
        base = prefix.rstrip("/")
        folder = self.root / base
        if base == "data":
            for shard in sorted(_listdir(folder)):
                for name in sorted(_listdir(folder / shard)):
                    yield f"data/{name}"
            return
        for name in sorted(_listdir(folder)):
            yield f"{base}/{name}"

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


def _unnamed_write_error(e: BaseException) -> TypeGuard[OSError]:
    """An OSError of a write, which names no file: raised again naming the object
    (a full disk then says it is the store's, not the current folder's)."""
    return isinstance(e, OSError) and e.filename is None and e.errno is not None


def key_path(key: str) -> str:
    """Where a key lives under a folder store's root (also the layout of ``account export``)."""
    if key.startswith("data/") and len(key) == 37 and _HEX.issuperset(key[5:]):
        return f"data/{key[5:7]}/{key[5:]}"
    return check_key(key)


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []


def _syncfs(folder: Path) -> None:
    """Flush the file system holding ``folder`` (Linux ``syncfs``), else everything."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems do not fsync folders
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
