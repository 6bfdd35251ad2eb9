"""prune compacts many journals into one snapshot, and nothing is forgotten."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Cli, write

pytestmark = pytest.mark.inprocess


def test_prune_compacts_the_journals_once_they_are_many(vault_cli: Cli, store_dir: Path) -> None:
    cli = vault_cli
    for i in range(5):
        write(cli.cwd / f"f{i}.txt", f"version {i}\n")
        cli.ok("upload", f"f{i}.txt", "--tag", f"t{i}")
    cli.ok("note", "f0.txt", "a note kept through compaction")
    before = sorted(p.name for p in store_dir.glob("journal/*"))
    assert len(before) >= 6
    cli.ok("prune", env={"LIVEDATA_COMPACT_AFTER": "3"})
    after = sorted(p.name for p in store_dir.glob("journal/*"))
    assert len(after) < len(before)
    other_home = Path(cli.env["LIVEDATA_HOME"]).parent / "fresh"
    fresh = Cli({**cli.env, "LIVEDATA_HOME": str(other_home)}, cli.cwd)
    fresh.ok("init", "--store", str(store_dir))
    assert fresh.ok("ls").out.split() == [f"f{i}.txt" for i in range(5)]
    assert fresh.ok("note", "f0.txt").out.strip() == "a note kept through compaction"
    assert fresh.ok("download", "f3.txt", "-o", "-").stdout == b"version 3\n"
    assert fresh.ok("verify", "--data", "--json").json()["problems"] == []
    cli.ok("verify")
