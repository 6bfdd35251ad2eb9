"""--quiet: cron mail stays empty unless something failed."""

from __future__ import annotations

import pytest

from conftest import Cli, Result, write

pytestmark = pytest.mark.inprocess


def _said(r: Result) -> list[str]:
    """stderr, less the test suite's own weak-KDF warning (real vaults never see it)."""
    return [line for line in r.stderr.splitlines() if "LIVEDATA_TESTONLY_WEAKEN_KDF" not in line]


def test_quiet_silences_the_no_keyring_note_and_summaries(cli: Cli) -> None:
    env = {"LIVEDATA_NO_KEYRING": None}  # a fresh CI home without a keyring
    cli.env.pop("LIVEDATA_NO_KEYRING")
    cli.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    r = cli("-q", "init", env=env)
    assert (r.code, r.stdout, _said(r)) == (0, b"", [])
    write(cli.cwd / "f.txt", "one\n")
    r = cli("--quiet", "upload", "f.txt")
    assert (r.code, r.stdout, _said(r)) == (0, b"", [])
    noisy = cli("upload", "f.txt")
    assert noisy.code == 0 and noisy.stderr  # without --quiet the summary (and the note) show
