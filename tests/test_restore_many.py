"""Restores of many small files: the planner works out the target folder's real
path once and each folder's once, creates each folder once, and writes each
file to a fresh 0600 temporary file renamed into place; and it still refuses
every name or link that leads out of the target (livedata_cli/tree.py: Targets)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import Cli, assert_one_line_error, livedata_exe, write

FOLDERS = 4
PER_FOLDER = 15

# Loaded by the livedata child before anything else (PYTHONPATH): counts the
# real path walks and the folders it creates under the restore's target, and
# the open flags of the temporary files it creates, and writes them out at exit.
_COUNTER = '''
import atexit, json, os, sys
_out, _under = os.environ["COUNT_TO"], os.environ["COUNT_UNDER"]
_n = {"realpath": 0, "mkdir": 0, "part_flags": []}
_realpath, _open = os.path.realpath, open
def _counted(path, *a, **k):
    if os.fspath(path).startswith(_under):
        _n["realpath"] += 1
    return _realpath(path, *a, **k)
os.path.realpath = _counted
def _hook(event, args):
    if event == "os.mkdir" and os.fsdecode(args[0]).startswith(_under):
        _n["mkdir"] += 1
    elif event == "open" and isinstance(args[0], str) and ".livedata-" in args[0] and args[0].startswith(_under):
        _n["part_flags"].append(args[2])
sys.addaudithook(_hook)
def _dump():
    with _open(_out, "w") as f:
        f.write(json.dumps(_n))
atexit.register(_dump)
'''


def _tree(root: Path) -> dict[str, bytes]:
    made = {}
    for d in range(FOLDERS):
        for i in range(PER_FOLDER):
            data = os.urandom(i * 37)
            write(root / f"d{d}" / f"f{i:02d}.bin", data)
            made[f"d{d}/f{i:02d}.bin"] = data
    return made


@pytest.mark.subprocess
def test_a_restore_walks_and_makes_each_folder_once(vault_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = _tree(src)
    vault_cli.ok("upload", str(src), "-r", "--as", "t/")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_COUNTER)
    out, counts = tmp_path / "out", tmp_path / "counts.json"
    env = {
        **vault_cli.env,
        "PYTHONPATH": str(hook),
        "COUNT_TO": str(counts),
        "COUNT_UNDER": str(out),
    }
    p = subprocess.run(
        [*livedata_exe(), "download", "t/", "-o", str(out), "--json"],
        capture_output=True, env=env, cwd=vault_cli.cwd, timeout=120,
    )
    assert p.returncode == 0, p.stderr.decode()
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    assert not [p for p in out.rglob(".livedata-*")]
    n = json.loads(counts.read_text())
    # Before: two realpath walks and two folder creations per file (120 each here).
    assert n["realpath"] <= FOLDERS + 2, n
    assert n["mkdir"] <= FOLDERS + 2, n
    # Every file still went through a temporary file of its own, created
    # exclusively and never through a link.
    assert len(n["part_flags"]) == len(files)
    assert all(f & os.O_EXCL and f & os.O_CREAT and f & os.O_NOFOLLOW for f in n["part_flags"])


@pytest.mark.subprocess
def test_a_stored_link_then_a_file_below_it_writes_nothing_outside(vault_cli: Cli, tmp_path: Path) -> None:
    """A folder stored, then stored again as a link out of the tree: the link is
    restored, and the file still recorded under the old folder is refused, not
    written through the link (the planner checks folders again after a link)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    src = vault_cli.cwd / "src"
    write(src / "a" / "x.txt", "below the folder")
    write(src / "b" / "y.txt", "beside it")
    vault_cli.ok("upload", str(src), "-r", "--as", "t/")
    (src / "a" / "x.txt").unlink()
    (src / "a").rmdir()
    (src / "a").symlink_to(outside)
    vault_cli.ok("upload", str(src), "-r", "--as", "t/")
    r = vault_cli("download", "t/", "-o", "restore")
    assert r.code in (5, 8), r.stderr
    assert list(outside.iterdir()) == []
    restore = vault_cli.cwd / "restore"
    assert os.readlink(restore / "a") == str(outside)
    assert (restore / "b" / "y.txt").read_text() == "beside it"


@pytest.mark.subprocess
def test_a_file_where_a_folder_should_be_fails_that_folder_alone(vault_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a" / "x.txt", "x")
    write(src / "b.txt", "b")
    vault_cli.ok("upload", str(src), "-r", "--as", "t/")
    out = vault_cli.cwd / "out"
    write(out / "a", "a file, not a folder")
    r = vault_cli("download", "t/", "-o", str(out), "--json")
    assert r.code == 8, r.stderr
    failed = [i for i in r.json()["items"] if i["status"] == "failed"]
    assert [i["source"] for i in failed] == ["t/a", "t/a/x.txt"]
    assert (out / "b.txt").read_text() == "b"
    assert (out / "a").read_text() == "a file, not a folder"


@pytest.mark.subprocess
def test_restoring_into_an_existing_file_still_needs_overwrite(vault_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "f.txt", "new")
    vault_cli.ok("upload", str(src), "-r", "--as", "t/")
    out = vault_cli.cwd / "out"
    write(out / "f.txt", "mine")
    r = vault_cli("download", "t/", "-o", str(out))
    assert_one_line_error(r, 2)
    assert "exists: add --overwrite" in r.stderr
    assert (out / "f.txt").read_text() == "mine"
    vault_cli.ok("download", "t/", "-o", str(out), "--overwrite")
    assert (out / "f.txt").read_text() == "new"


def test_a_restore_into_a_missing_store_is_one_line(vault_cli: Cli, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f.txt", "x")
    vault_cli.ok("upload", str(tmp_path / "src"), "-r", "--as", "t/")
    r = vault_cli("download", "nothing/", "-o", str(tmp_path / "out"))
    assert_one_line_error(r, 3)


_names = st.lists(
    st.one_of(
        st.sampled_from(["", ".", "..", "a", "b", "sub", "link", "x\x00y", "...", "a/", "/"]),
        st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=5,
).map("/".join)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rels=st.lists(_names, min_size=1, max_size=12), lead=st.booleans())
@example(rels=["b", "/a"], lead=False)  # a name from the root's folder, then one with a leading '/'
@example(rels=["a/b/c", "a/b/", "a/b/d"], lead=False)
def test_targets_agree_with_a_fresh_check_of_each_name(tmp_path: Path, rels: list[str], lead: bool) -> None:
    """Whatever names a store hands over, the cached check lands exactly where a
    check of that name alone does, and never outside the root, even with a
    link out of the root among the folders."""
    from livedata_cli import localfs
    from livedata_cli.errors import IntegrityError

    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    link = root / "link"
    if not link.is_symlink():
        link.symlink_to(outside)
    places = localfs.Targets(root)
    for rel in rels:
        rel = "/" + rel if lead else rel
        try:
            alone: Path | None = localfs.safe_target(root, rel)
        except IntegrityError:
            alone = None
        try:
            cached: Path | None
            cached, folder = places.place(rel)
            assert folder == cached.parent, rel
        except IntegrityError:
            cached = None
        assert cached == alone, rel
        if cached is not None:
            real = os.path.realpath(cached.parent)
            assert os.path.commonpath([os.path.realpath(root), real]) == os.path.realpath(root)
