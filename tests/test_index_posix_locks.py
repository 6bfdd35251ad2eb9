"""A second connection to the index in one process keeps SQLite's locks.

POSIX drops every lock a process holds on a file when any descriptor of that
file closes.  Reading the index header with a plain ``open()`` while SQLite
has the file open here released SQLite's shared lock: another process closing
its connection then took itself for the last one, checkpointed and deleted the
write-ahead log under this one, and the index was corrupt (an upload and a
download running together did it about one time in ten).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from livedata_cli.index.core import Index

pytestmark = pytest.mark.inprocess


def _open_and_close_elsewhere(path: Path) -> None:
    """Another process opens the index, reads it and closes its connection."""
    code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM migrations').fetchone(); c.close()"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)


def test_a_second_connection_keeps_the_write_ahead_log_of_the_first(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    first = Index(path)
    try:
        with first.write() as db:
            db.execute("CREATE TABLE t (x INTEGER)")
        second = Index(path)  # as the journal thread of an upload opens its own
        try:
            _open_and_close_elsewhere(path)
            assert Path(f"{path}-wal").exists(), "another process deleted the log this one still writes"
            with first.write() as db:
                db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(2000)])
            with second.write() as db:
                db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(2000)])
        finally:
            second.close()
        _open_and_close_elsewhere(path)
        assert first.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert first.db.execute("SELECT count(*) FROM t").fetchone()[0] == 4000
    finally:
        first.close()


def test_closing_one_of_two_connections_keeps_the_check_for_the_next(tmp_path: Path) -> None:
    """The header is read again once no connection of this process is open."""
    path = tmp_path / "index.sqlite"
    Index(path).close()
    with open(path, "r+b") as f:
        f.write(b"not an SQLite file at all")
    from livedata_cli.errors import IndexDamaged

    with pytest.raises(IndexDamaged):
        Index(path)
