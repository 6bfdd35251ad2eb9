"""Tables: a header line on a terminal, none when piped or with --no-header; cells escaped, tags quoted."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import Cli, run_on_tty, write

pytestmark = pytest.mark.inprocess


def test_headers_on_a_terminal_only(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "r.pdf", "pdf")
    vault_cli.ok("upload", "r.pdf", "--tag", "a b,c", "--tag", "plain")
    env = {**vault_cli.env, "TERM": "dumb", "NO_COLOR": "1", "COLUMNS": "200"}
    for args, header in ((["ls", "--long"], ["SIZE", "VERSIONS", "UPLOADED", "TAGS", "PATH"]),
                         (["keys", "ls"], ["SLOT", "KIND", "CREATED", "KEY", "DERIVATION"]),
                         (["audit"], ["TIME", "ACTION", "PATH", "RESULT", "HOST", "USER", "FLAGS"])):
        code, screen = run_on_tty(args, env, vault_cli.cwd)
        lines = [line for line in screen.replace("\r", "").splitlines() if line.strip()]
        assert code == 0 and lines[0].split() == header, (args, screen)
        code, screen = run_on_tty([*args, "--no-header"], env, vault_cli.cwd)
        assert code == 0 and header[0] not in screen.split()[0:1], (args, screen)
        piped = vault_cli.ok(*args).out.splitlines()
        assert piped and piped[0].split()[0] != header[0], args
    row = vault_cli.ok("ls", "--long").out
    assert "'a b,c',plain" in row  # a tag holding separators reads as one tag


def test_table_cells_cannot_drive_the_terminal(vault_cli: Cli, open_vault: Any) -> None:
    write(vault_cli.cwd / "x.txt", "x")
    vault_cli.ok("upload", "x.txt", "--as", "a\x1b[2Jb.txt")
    vault = open_vault()  # a tag the command line refuses, as another machine's livedata could store it
    with vault.lock():
        vault.tag("a\x1b[2Jb.txt", ["t\x07g"], remove=False)
    vault.close()
    out = vault_cli.ok("ls", "--long").out + vault_cli.ok("audit").out
    assert "\x1b" not in out and "\x07" not in out and "a\\x1b[2Jb.txt" in out
