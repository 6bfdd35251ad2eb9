"""The unlocked key cached in a real Secret Service (gnome-keyring on a private
D-Bus session started here), and the fallbacks when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, write

pytestmark = [pytest.mark.subprocess, pytest.mark.keyring]


def test_key_is_cached_and_lock_forgets_it(cli: Cli, secret_service: dict[str, str]) -> None:
    env = {**secret_service, "LIVEDATA_NO_KEYRING": None}
    cli.ok("init", env=env)
    write(cli.cwd / "a.txt", "cached")
    no_pass = {**env, "LIVEDATA_PASSPHRASE": None}
    # The key cached by init opens the vault with no passphrase anywhere.
    cli.ok("upload", "a.txt", env=no_pass)
    assert cli.ok("download", "a.txt", "-o", "-", env=no_pass).out == "cached"
    assert cli.ok("lock", "--json", env=no_pass).json()["key_was_cached"] is True
    assert_one_line_error(cli("download", "a.txt", "-o", "-", env=no_pass), 4)
    # Unlocking again with the passphrase caches it again.
    cli.ok("download", "a.txt", "-o", "-", env=env)
    assert cli.ok("download", "a.txt", "-o", "-", env=no_pass).out == "cached"
    # A second lock finds nothing in the real keyring, and says so.
    assert cli.ok("lock", env=no_pass).stderr.strip() == "locked"
    assert cli.ok("lock", env=no_pass).stderr.strip() == "locked (no key was cached)"


def test_no_keyring_flag_skips_the_cache(cli: Cli, secret_service: dict[str, str]) -> None:
    env = {**secret_service, "LIVEDATA_NO_KEYRING": None}
    cli.ok("--no-keyring", "init", env=env)
    write(cli.cwd / "a.txt", "x")
    assert_one_line_error(cli("upload", "a.txt", env={**env, "LIVEDATA_PASSPHRASE": None}), 4)


def test_no_secret_service_says_so_once_and_falls_back(cli: Cli, tmp_path: Path) -> None:
    env = {"LIVEDATA_NO_KEYRING": None, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    first = cli.ok("init", env=env)
    write(cli.cwd / "a.txt", "x")
    second = cli.ok("upload", "a.txt", env=env)
    third = cli.ok("upload", "a.txt", env=env)
    notes = [r.stderr.count("keyring") for r in (first, second, third)]
    assert sum(notes) == 1, (first.stderr, second.stderr, third.stderr)
    r = cli("download", "a.txt", "-o", "-", env={**env, "LIVEDATA_PASSPHRASE": None})
    assert_one_line_error(r, 4)
    assert "LIVEDATA_PASSPHRASE_FILE" in r.stderr
