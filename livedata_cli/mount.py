"""``livedata mount``: the vault as a read-only file system (FUSE), decrypted on read.

The tree is the index's view at mount time: the newest live version of every
file under the prefix (or the tree as it was ``--at`` a time), with folders
made from the paths, symlinks as symlinks, modes and mtimes as stored; and
``.versions/PATH/N`` for every version N of every file, as ``download
--version N`` numbers them.  Nothing is written and nothing is decrypted
until a file is read: a read fetches only the container segments that cover
it (each authenticated by its index and, for the last, its final flag),
keeps one decrypted segment per open file, and so runs in bounded memory
whatever the file's size.  A segment that fails authentication is EIO, never
wrong bytes.  Files with a file password are listed but refuse to open
(EACCES): a FUSE read cannot ask for a password.

The FUSE binding (``mfusepy``, over libfuse 3) is imported only here.
"""

from __future__ import annotations

import errno
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from livedata_cli.crypto import container
from livedata_cli.errors import LivedataError, UsageError
from livedata_cli.index.core import Version
from livedata_cli.packs import open_stored

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault

VERSIONS = ".versions"


@dataclass
class Node:
    """A file, symlink or folder of the mounted tree."""

    kind: str  # "dir", "file" or "symlink"
    version: Version | None = None
    children: dict[str, Node] = field(default_factory=dict)
    mtime: float = 0.0
    mode: int | None = None


def build_tree(current: list[Version], history: list[Version], prefix: str) -> Node:
    """The mounted tree: ``current`` at its paths relative to ``prefix``, and
    every version of ``history`` under ``.versions/``."""
    root = Node("dir", mtime=time.time())

    def folder(parts: list[str], base: Node) -> Node:
        node = base
        for part in parts:
            child = node.children.get(part)
            if child is None or child.kind != "dir":
                child = node.children[part] = Node("dir", mtime=node.mtime)
            node = child
        return node

    def parts_of(v: Version) -> list[str]:
        return [p for p in v.path[len(prefix):].split("/") if p]

    for v in current:
        parts = parts_of(v)
        if not parts:
            continue
        if v.kind == "dir":
            node = folder(parts, root)
            node.mtime, node.mode = v.mtime or v.created, v.mode
        else:
            folder(parts[:-1], root).children[parts[-1]] = Node(v.kind, v, mtime=v.mtime or v.created, mode=v.mode)
    files = [v for v in history if v.kind == "file" and parts_of(v)]
    if files:
        versions = folder([VERSIONS], root)
        for v in files:  # .versions/PATH/N, dated when that version was stored
            folder(parts_of(v), versions).children[str(v.number)] = Node("file", v, mtime=v.created, mode=v.mode)
    return root


class _Handle:
    """One open file: its data key, its store stream, and one decrypted segment."""

    def __init__(self, v: Version, data_key: bytes, src: BinaryIO) -> None:
        self.version = v
        self.src = src
        head = _read_exact(src, v.offset, container.HEADER_LEN)
        self.decryptor = container.Decryptor(data_key, head)
        if container.header_hash(head) != v.header_hash:
            raise LivedataError(f"{v.path}: the container's header is not the one its record names")
        self.segment_size = self.decryptor.segment_size
        self.segments = max(1, -(-v.size // self.segment_size))
        self.cached: tuple[int, bytes] | None = None
        self.lock = threading.Lock()

    def segment(self, i: int) -> bytes:
        if self.cached is not None and self.cached[0] == i:
            return self.cached[1]
        final = i == self.segments - 1
        plain_len = self.version.size - i * self.segment_size if final else self.segment_size
        start = self.version.offset + container.HEADER_LEN + i * (self.segment_size + container.TAG_LEN)
        sealed = _read_exact(self.src, start, plain_len + container.TAG_LEN)
        plain = self.decryptor.decrypt_segment_at(i, sealed, final=final)
        self.cached = (i, plain)
        return plain

    def read(self, size: int, offset: int) -> bytes:
        end = min(self.version.size, offset + size)
        out = bytearray()
        with self.lock:
            while offset < end:
                i = offset // self.segment_size
                seg = self.segment(i)
                start = offset - i * self.segment_size
                piece = seg[start : start + (end - offset)]
                out += piece
                offset += len(piece)
        return bytes(out)


def _read_exact(src: BinaryIO, offset: int, length: int) -> bytes:
    src.seek(offset)
    data = src.read(length)
    if len(data) != length:
        raise LivedataError("the store holds a shorter container than its record says: it was truncated")
    return data


def operations(vault: Vault, root: Node) -> Any:
    """The FUSE operations over ``root``, reading through ``vault``."""
    import mfusepy as fuse

    class ReadOnly(fuse.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self) -> None:
            self.handles: dict[int, _Handle] = {}
            self.next_fh = 1
            self.lock = threading.Lock()

        def _node(self, path: str) -> Node:
            node = root
            for part in path.strip("/").split("/"):
                if part:
                    child = node.children.get(part)
                    if child is None:
                        raise fuse.FuseOSError(errno.ENOENT)
                    node = child
            return node

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            node = self._node(path)
            ns = int(node.mtime * 1e9)
            st: dict[str, Any] = {"st_mtime": ns, "st_ctime": ns, "st_atime": ns, "st_nlink": 1}
            if node.kind == "dir":
                st.update(st_mode=stat.S_IFDIR | 0o555, st_nlink=2 + sum(c.kind == "dir" for c in node.children.values()))
            elif node.kind == "symlink":
                target = (node.version.target if node.version else "") or ""
                st.update(st_mode=stat.S_IFLNK | 0o777, st_size=len(target.encode("utf-8", "surrogateescape")))
            else:
                mode = (node.mode or 0o644) & 0o555  # read-only: no write bits
                st.update(st_mode=stat.S_IFREG | mode, st_size=node.version.size if node.version else 0)
            return st

        def readdir(self, path: str, fh: int) -> list[str]:
            node = self._node(path)
            if node.kind != "dir":
                raise fuse.FuseOSError(errno.ENOTDIR)
            return [".", "..", *sorted(node.children)]

        def readlink(self, path: str) -> str:
            node = self._node(path)
            if node.kind != "symlink" or node.version is None:
                raise fuse.FuseOSError(errno.EINVAL)
            return node.version.target or ""

        def open(self, path: str, flags: int) -> int:
            import os

            if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC):
                raise fuse.FuseOSError(errno.EROFS)
            node = self._node(path)
            v = node.version
            if node.kind != "file" or v is None:
                raise fuse.FuseOSError(errno.EISDIR if node.kind == "dir" else errno.EINVAL)
            if v.protected:
                raise fuse.FuseOSError(errno.EACCES)
            try:
                src = open_stored(vault.store, v.store_key, v.pack, v.offset, v.length)  # a pack member: its range only
                handle = _Handle(v, vault.data_key_of(v), src)
            except LivedataError:
                raise fuse.FuseOSError(errno.EIO) from None
            with self.lock:
                fh = self.next_fh
                self.next_fh += 1
                self.handles[fh] = handle
            vault.events.read(v.path, v.object)
            return fh

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            handle = self.handles.get(fh)
            if handle is None:
                raise fuse.FuseOSError(errno.EBADF)
            try:
                return handle.read(size, offset)
            except LivedataError:
                raise fuse.FuseOSError(errno.EIO) from None

        def release(self, path: str, fh: int) -> int:
            handle = self.handles.pop(fh, None)
            if handle is not None:
                handle.src.close()
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    return ReadOnly()


def mount(vault: Vault, mountpoint: str, prefix: str, at: float | None, *, foreground: bool = True) -> None:
    """Serve the vault at ``mountpoint`` until it is unmounted (``fusermount3 -u``) or interrupted."""
    try:
        import mfusepy as fuse
    except (ImportError, OSError) as e:  # the package, or libfuse itself, is missing
        if isinstance(e, ModuleNotFoundError):
            raise
        raise UsageError(f"FUSE is not usable here ({e}): install libfuse 3 (Debian: apt install fuse3)") from None
    import os

    if not os.path.isdir(mountpoint):
        raise UsageError(f"{mountpoint} is not a folder: make an empty folder to mount on")
    if not os.path.exists("/dev/fuse"):
        raise UsageError("this system has no /dev/fuse: FUSE mounts are not possible here")
    current = vault.index.as_of(prefix, at) if at is not None else [v for v, _n in vault.index.latest(prefix)]
    root = build_tree(current, vault.index.numbered_versions(prefix), prefix)
    fuse.FUSE(operations(vault, root), mountpoint, foreground=foreground, ro=True, nothreads=True,
              fsname="livedata", subtype="livedata", default_permissions=True)
