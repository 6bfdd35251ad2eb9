"""Big store objects are written back to the disk behind the writer (livedata_cli/writeback.py).

The page cache of each file is read with Linux's ``cachestat(2)``: after an
upload's store object is written, at most ``LAG + WINDOW`` bytes of it may
still be dirty, so the fsync before its journal is short. Downloads are
written plainly (they are not fsynced).
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Cli
from livedata_cli import writeback
from livedata_cli.stores.local import LocalStore

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
BOUND = writeback.LAG + 2 * writeback.WINDOW  # what may stay dirty, with a segment of slack
_CACHESTAT = 451  # the same number on every architecture (the generic syscall table)


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [
        ("nr_cache", ctypes.c_uint64),
        ("nr_dirty", ctypes.c_uint64),
        ("nr_writeback", ctypes.c_uint64),
        ("nr_evicted", ctypes.c_uint64),
        ("nr_recently_evicted", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def unwritten(fd: int) -> int:
    """Bytes of the file still dirty or being written back, by ``cachestat(2)``."""
    rng, out = _Range(0, 0), _Stat()
    if _libc.syscall(_CACHESTAT, fd, ctypes.byref(rng), ctypes.byref(out), 0) != 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            pytest.skip("this kernel has no cachestat(2) (Linux < 6.5): dirty pages cannot be counted")
        raise OSError(err, os.strerror(err))
    return (out.nr_dirty + out.nr_writeback) * PAGE


def unwritten_path(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return unwritten(fd)
    finally:
        os.close(fd)


def big_file(path: Path, mib: int) -> bytes:
    """``mib`` MiB of random bytes (one random MiB repeated with a counter: fast, never equal blocks)."""
    block = secrets.token_bytes(MiB)
    data = b"".join(i.to_bytes(8, "big") + block[8:] for i in range(mib))
    path.write_bytes(data)
    return data


def test_plain_write_leaves_it_all_dirty(tmp_path: Path) -> None:
    """The measurement works here: a file written without the wrapper is dirty
    as a whole (so the tests below would see the old behaviour)."""
    with open(tmp_path / "plain.bin", "wb") as f:
        for _ in range(96):
            f.write(b"\x01" * MiB)
        f.flush()
        assert unwritten(f.fileno()) > 90 * MiB


def test_store_writer_keeps_dirty_data_bounded(tmp_path: Path) -> None:
    """A big object written into a folder store is mostly on the disk before
    ``flush()`` fsyncs it: the fsync at the end of an upload is short."""
    store = LocalStore(tmp_path / "store")
    store.prepare()
    chunk = secrets.token_bytes(MiB + 16)  # a sealed segment
    with store.writer("data/" + "ab" * 16) as out:
        for _ in range(160):
            out.write(chunk)
        out.flush()
        assert unwritten(out.fileno()) <= BOUND
    assert store.size("data/" + "ab" * 16) == 160 * len(chunk)


def test_download_to_a_pipe_is_unchanged(vault_cli: Cli, tmp_path: Path) -> None:
    """``-o -`` writes to a pipe: no page cache, nothing to write back, same bytes."""
    data = big_file(tmp_path / "big.bin", 20)
    vault_cli.ok("upload", str(tmp_path / "big.bin"), "--as", "big.bin")
    r = vault_cli.ok("download", "big.bin", "-o", "-")
    assert r.stdout == data


def test_sync_file_range_errors_are_oserrors(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as e:
            writeback.sync_file_range(w, 0, MiB, 2)
        assert e.value.errno == errno.ESPIPE
    finally:
        os.close(r)
        os.close(w)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=300_000), max_size=40),
    window_kib=st.integers(min_value=4, max_value=256),
    lag_kib=st.integers(min_value=0, max_value=512),
    buffered=st.booleans(),
)
def test_behind_writes_exactly_what_it_is_given(
    tmp_path: Path, sizes: list[int], window_kib: int, lag_kib: int, buffered: bool
) -> None:
    """Any sequence of writes, any window and lag, buffered or raw: the file
    holds exactly the bytes written, and at most lag + window + one write of
    them is left unwritten."""
    path = tmp_path / f"w-{secrets.token_hex(4)}"
    window, lag = window_kib << 10, lag_kib << 10
    expected = bytearray()
    with open(path, "wb", buffering=-1 if buffered else 0) as f:
        out = writeback.Behind(f, window=window, lag=lag)
        for i, size in enumerate(sizes):
            chunk = bytes([i % 251]) * size
            written = 0
            while written < size:  # a raw file may take part of a write
                written += out.write(memoryview(chunk)[written:])
            expected += chunk
        out.flush()
        assert unwritten(f.fileno()) <= lag + window + max(sizes, default=0) + PAGE
    assert path.read_bytes() == bytes(expected)
    path.unlink()


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC])
def test_a_write_error_found_by_writeback_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    """The kernel reports a failed writeback once per open file: writeback must
    pass it on, or the fsync that follows would succeed over lost data."""

    def failing(fd: int, offset: int, length: int, flags: int) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(writeback, "sync_file_range", failing)
    with open(tmp_path / "f", "wb") as f:
        out = writeback.Behind(f, window=MiB, lag=MiB)
        with pytest.raises(OSError) as e:
            for _ in range(4):
                out.write(b"x" * MiB)
        assert e.value.errno == err


def test_no_writeback_control_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def unsupported(fd: int, offset: int, length: int, flags: int) -> None:
        calls.append(offset)
        raise OSError(errno.ENOSYS, "not here")

    monkeypatch.setattr(writeback, "sync_file_range", unsupported)
    with open(tmp_path / "f", "wb") as f:
        out = writeback.Behind(f, window=MiB, lag=MiB)
        for _ in range(8):
            out.write(b"y" * MiB)
    assert calls == [0]  # tried once, then plain writes
    assert (tmp_path / "f").read_bytes() == b"y" * (8 * MiB)
