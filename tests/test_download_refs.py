"""What a download REF names (vault/download.py: what_is) and where its file lands
(localfs.download_target): every kind of REF through the installed command, and
the output-path rules, which vault files and shares share."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import Cli, assert_one_line_error, write
from livedata_cli.localfs import download_target

pytestmark = pytest.mark.inprocess


def test_every_kind_of_ref_through_download(vault_cli: Cli, tmp_path: Path) -> None:
    write(vault_cli.cwd / "a.txt", "first")
    vault_cli.ok("upload", "a.txt", "--as", "docs/a.txt")
    write(vault_cli.cwd / "a.txt", "second")
    vault_cli.ok("upload", "a.txt", "--as", "docs/a.txt")
    write(vault_cli.cwd / "b.txt", "bee")
    vault_cli.ok("upload", "b.txt", "--as", "docs/sub/b.txt")
    versions = vault_cli.ok("info", "docs/a.txt", "--json").json()["versions"]
    oldest = versions[0]["id"]

    # A vault path: its newest version; --version N: that one.
    vault_cli.ok("download", "docs/a.txt", "-o", "newest.txt")
    assert (vault_cli.cwd / "newest.txt").read_text() == "second"
    vault_cli.ok("download", "docs/a.txt", "--version", "1", "-o", "v1.txt")
    assert (vault_cli.cwd / "v1.txt").read_text() == "first"
    # A version id.
    vault_cli.ok("download", oldest, "-o", "by-id.txt")
    assert (vault_cli.cwd / "by-id.txt").read_text() == "first"
    # A folder prefix: a tree, here only what --include selects.
    vault_cli.ok("download", "docs/", "-o", "tree", "--include", "sub/*")
    assert sorted(p.relative_to(vault_cli.cwd / "tree").as_posix() for p in (vault_cli.cwd / "tree").rglob("*")) == [
        "sub", "sub/b.txt"
    ]
    # A share file: opened with no vault at all.
    key = vault_cli.ok("share", "docs/a.txt", "--out", "a.ldshare", "--json").json()["key"]
    vault_cli.ok("download", f"a.ldshare#{key}", "-o", "shared.txt")
    assert (vault_cli.cwd / "shared.txt").read_text() == "second"
    # Nothing: a path, an id, a prefix that name nothing are exit 3; --include of one file exit 2.
    assert_one_line_error(vault_cli("download", "docs/none.txt"), 3)
    assert_one_line_error(vault_cli("download", "0" * 32), 3)
    assert_one_line_error(vault_cli("download", "nothing/"), 3)
    assert_one_line_error(vault_cli("download", "docs/a.txt", "--include", "*"), 2)


def test_an_existing_file_is_kept_for_a_vault_file_and_a_share_alike(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "r.txt", "stored")
    vault_cli.ok("upload", "r.txt", "--as", "r.txt")
    key = vault_cli.ok("share", "r.txt", "--out", "r.ldshare", "--json").json()["key"]
    write(vault_cli.cwd / "r.txt", "mine, changed")
    for ref in ("r.txt", f"r.ldshare#{key}"):
        r = vault_cli("download", ref)
        assert_one_line_error(r, 2)
        assert "r.txt exists: add --overwrite or give -o PATH" in r.stderr
        assert (vault_cli.cwd / "r.txt").read_text() == "mine, changed"
    vault_cli.ok("download", f"r.ldshare#{key}", "--overwrite")
    assert (vault_cli.cwd / "r.txt").read_text() == "stored"


_names = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda n: n not in (".", "..", "folder")
)


@given(name=_names, output=st.sampled_from([None, "folder", "folder/", "file.out"]))
def test_where_a_downloaded_file_lands(name: str, output: str | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        cwd = os.getcwd()
        os.chdir(d)
        try:
            Path("folder").mkdir()
            target = download_target(output, name)
            if output is None:
                assert target == Path(name)
            elif output.startswith("folder"):  # an existing folder: the file goes into it, under its own name
                assert target == Path("folder") / name
            else:
                assert target == Path(output)
        finally:
            os.chdir(cwd)
