"""Summaries tell the truth: bytes really read, real durations, one unit system (IEC)."""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import pytest

from conftest import Cli, write

pytestmark = pytest.mark.inprocess


def test_unchanged_upload_reads_nothing_and_download_reports_its_time(vault_cli: Cli) -> None:
    cli = vault_cli
    write(cli.cwd / "big.bin", os.urandom(3 * 1024 * 1024))
    first = cli.ok("upload", "big.bin", "--json").json()
    assert first["bytes_read"] == 3 * 1024 * 1024
    again = cli.ok("upload", "big.bin", "--json").json()
    assert again["bytes_read"] == 0  # answered by its stat: never opened
    assert "0 B read" in cli.ok("upload", "big.bin").stderr
    r = cli.ok("download", "big.bin", "-o", "out.bin")
    m = re.search(r"3\.0 MiB read in (\d+\.\d+) ?(s|ms)\)", r.stderr)
    assert m and float(m.group(1)) > 0, r.stderr
    assert cli.ok("download", "big.bin", "-o", "out2.bin", "--json").json()["duration"] > 0


def test_progress_speed_is_in_iec_units() -> None:
    from livedata_cli.cli.common import _speed_column

    column = _speed_column()
    text = column.render(SimpleNamespace(finished_speed=None, speed=3 * 1024 * 1024))
    assert text.plain == "3.0 MiB/s"
    assert column.render(SimpleNamespace(finished_speed=None, speed=None)).plain == "?"
