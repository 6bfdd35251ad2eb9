"""Folder downloads and ``verify --data`` planned first, then fetched in ranges
and in parallel (livedata_cli/vault/restore.py): byte-exact on every store kind, a
damaged member fails its file alone, a failing store leaves no partial file,
and a restore of packed small files from S3 is a handful of requests.

The commands run in the test's process: the restore's threads and its ranged
reads are the same there, and a counting proxy still sees every request."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path
from typing import Any

import pytest
import s3server
import store_kinds
from hypothesis import given, settings
from hypothesis import strategies as st
from s3server import CountingProxy
from store_kinds import KindVault

from conftest import Cli, assert_one_line_error, data_objects, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3
proxy, bucket = s3server.proxy, s3server.bucket

FILES = 200


def _small_tree(root: Path, n: int = FILES, seed: int = 23) -> dict[str, bytes]:
    """``n`` small files of assorted sizes (empty ones too) in nested folders,
    with their own modes and times."""
    rng = random.Random(seed)
    made: dict[str, bytes] = {}
    for i in range(n):
        rel = f"d{i % 7}/s{i % 3}/f{i:04d}.bin"
        size = rng.choice([0, 1, 15, 16, 17, 100, 1000, 4096, 5000, 30_000])
        data = rng.randbytes(size)
        path = write(root / rel, data)
        path.chmod(rng.choice([0o600, 0o640, 0o644, 0o755]))
        os.utime(path, (1_600_000_000 + i, 1_600_000_000 + i))
        made[rel] = data
    return made


def _no_temporaries(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".livedata-")]
    assert not leftovers, leftovers


def _same_tree(src: Path, dst: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        got, want = dst / rel, src / rel
        assert got.read_bytes() == data, rel
        assert got.stat().st_mode == want.stat().st_mode, rel
        assert got.stat().st_mtime == want.stat().st_mtime, rel


def test_a_tree_of_small_files_restores_byte_exact_on_every_store(kind_vault: KindVault, tmp_path: Path) -> None:
    cli = kind_vault.cli
    src = tmp_path / "src"
    files = _small_tree(src)
    big = os.urandom(3 * 1024 * 1024 + 5)  # streams on its own, beside the runs
    write(src / "big.bin", big)
    files["big.bin"] = big
    (src / "d0" / "link").symlink_to("s0/f0000.bin")
    cli.ok("upload", str(src), "--recursive", "--as", "t/")
    out = tmp_path / "out"
    r = cli.ok("download", "t/", "-o", str(out), "--json")
    report = r.json()
    assert report["counts"]["downloaded"] >= len(files) + 1
    assert "failed" not in report["counts"]
    assert [i["source"] for i in report["items"]] == sorted(i["source"] for i in report["items"])
    _same_tree(src, out, files)
    assert os.readlink(out / "d0" / "link") == "s0/f0000.bin"
    _no_temporaries(out)
    # A second machine has nothing cached: the same bytes from the store alone.
    other = kind_vault.other_machine()
    out2 = tmp_path / "out2"
    other.ok("download", "t/", "-o", str(out2))
    _same_tree(src, out2, files)
    checked = other.ok("verify", "--data", "--json").json()
    assert checked["problems"] == [] and checked["data_checked"] is True
    assert checked["objects"] == len(set(files.values()))  # equal contents share an object


def _tamper(kind_vault: KindVault, info: dict[str, Any], where: int) -> None:
    """Flip one byte of a version's container, ``where`` bytes into it, in the store."""
    key = f"data/{info['pack'] or info['object']}"
    with kind_vault.raw() as store:
        blob = bytearray(store.get_bytes(key))
        blob[info["offset"] + where] ^= 0x01
        store.put_bytes(key, bytes(blob))


@pytest.mark.parametrize("where", [50, 102 + 3], ids=["header", "segment"])
def test_a_tampered_member_fails_alone(kind_vault: KindVault, tmp_path: Path, where: int) -> None:
    cli = kind_vault.cli
    src = tmp_path / "src"
    files = _small_tree(src, n=40)
    cli.ok("upload", str(src), "--recursive", "--as", "t/")
    # a file whose content is its own (equal contents share an object)
    victim = next(rel for rel, data in files.items() if rel > "d3" and list(files.values()).count(data) == 1)
    _tamper(kind_vault, cli.ok("info", f"t/{victim}", "--json").json(), where)
    out = tmp_path / "out"
    r = cli("download", "t/", "-o", str(out), "--json")
    assert r.code == 8, r.stderr
    items = {i["source"]: i for i in r.json()["items"]}
    assert items[f"t/{victim}"]["status"] == "failed"
    assert items[f"t/{victim}"]["exit_code"] == 5
    assert [p for p, i in items.items() if i["status"] == "failed"] == [f"t/{victim}"]
    assert not (out / victim).exists()
    _no_temporaries(out)
    _same_tree(src, out, {k: v for k, v in files.items() if k != victim})
    # verify --data names that file, and only it
    r = cli("verify", "--data", "--json")
    assert r.code == 5
    assert [p["path"] for p in r.json()["problems"]] == [f"t/{victim}"]


def test_an_object_cut_short_or_extended_is_caught(kind_vault: KindVault, tmp_path: Path) -> None:
    """The last member of a pack cut off, or an object of its own with bytes after
    its container: the sizes in the records catch both, on restore and verify."""
    cli = kind_vault.cli
    src = tmp_path / "src"
    files = _small_tree(src, n=12)
    cli.ok("upload", str(src), "--recursive", "--as", "t/")
    infos = [cli.ok("info", f"t/{rel}", "--json").json() for rel in files]
    last = max(infos, key=lambda i: (i["pack"] or "", i["offset"]))  # the last member of a pack
    key = f"data/{last['pack'] or last['object']}"
    with kind_vault.raw() as store:
        blob = store.get_bytes(key)
        if last["pack"]:
            store.put_bytes(key, blob[: last["offset"] + last["length"] - 1])
        else:
            store.put_bytes(key, blob + b"\x00")
    r = cli("download", "t/", "-o", str(tmp_path / "out"), "--json")
    assert r.code == 8, r.stderr
    failed = [i for i in r.json()["items"] if i["status"] == "failed"]
    assert [i["source"] for i in failed] == [last["path"]]
    assert failed[0]["exit_code"] == 5
    _no_temporaries(tmp_path / "out")
    r = cli("verify", "--data", "--json")
    assert r.code == 5
    assert [p["path"] for p in r.json()["problems"]] == [last["path"]]


# -- S3: requests counted through a relay ----------------------------------------------------
def _packed_vault_on_s3(cli: Cli, s3: Any, bucket: str, tmp_path: Path, relay: str) -> tuple[Cli, dict[str, bytes]]:
    """A vault of packed small files, made on a folder store and copied into the
    bucket as it is (the store is opaque), and a second home attached to it there."""
    cli.ok("init")
    src = tmp_path / "src"
    files = _small_tree(src)
    cli.ok("upload", str(src), "--recursive", "--as", "t/")
    store = Path(cli.env["LIVEDATA_HOME"]) / "store"
    assert len(data_objects(store)) < 5  # packed on the folder store
    for path in store.rglob("*"):
        parts = path.relative_to(store).parts
        if not path.is_file() or parts[0] in ("tmp", "locks") or path.name.startswith("."):
            continue
        key = f"data/{parts[-1]}" if parts[0] == "data" else "/".join(parts)  # data/<shard>/<id> -> data/<id>
        s3.put_object(Bucket=bucket, Key=f"vault/{key}", Body=path.read_bytes())
    home = tmp_path / "s3-home"
    work = tmp_path / "s3-work"
    work.mkdir()
    other = s3server.aws_env(Cli({**cli.env, "LIVEDATA_HOME": str(home)}, work, inprocess=cli.inprocess), relay)
    other.ok("init", "--store", f"s3://{bucket}/vault")
    other.ok("sync")
    return other, files


def test_a_restore_of_packed_small_files_from_s3_is_a_handful_of_requests(
    cli: Cli, s3: Any, bucket: str, tmp_path: Path, proxy: CountingProxy
) -> None:
    other, files = _packed_vault_on_s3(cli, s3, bucket, tmp_path, proxy.url)
    proxy.reset()
    out = tmp_path / "out"
    other.ok("download", "t/", "-o", str(out))
    _same_tree(tmp_path / "src", out, files)
    gets = proxy.counts["s3:GET"]
    assert 1 <= gets <= 10, proxy.counts  # one ranged read per run of members, not one per file
    assert sum(proxy.counts.values()) <= 15, proxy.counts
    proxy.reset()
    assert other.ok("verify", "--data", "--json").json()["problems"] == []
    assert proxy.counts["s3:GET"] <= 15, proxy.counts


def test_a_store_that_fails_ranged_reads_leaves_no_partial_file(
    cli: Cli, s3: Any, bucket: str, tmp_path: Path, proxy: CountingProxy
) -> None:
    other, files = _packed_vault_on_s3(cli, s3, bucket, tmp_path, proxy.url)
    # Objects of their own too (over the pack size limit), so that a restore is
    # many reads, some of which fail.
    extra = tmp_path / "extra"
    for i in range(10):
        write(extra / f"e{i:02d}.bin", os.urandom(1_100_000 + i))
    other.ok("upload", str(extra), "--recursive", "--as", "t/extra/")
    proxy.reset()
    proxy.hold("s3:GET", after=6)  # then every read is answered 503 (after the relay's retries)
    proxy._released.set()  # answered at once, not held
    out = tmp_path / "out"
    r = other("download", "t/", "-o", str(out))
    assert_one_line_error(r, 6)
    assert "keeps failing" in r.stderr.splitlines()[-1], r.stderr  # the object and why, on the last line
    _no_temporaries(out)
    for path in out.rglob("*"):  # whatever was written is whole and right
        if path.is_file():
            rel = path.relative_to(out).as_posix()
            want = files.get(rel) or (extra / rel.removeprefix("extra/")).read_bytes()
            assert path.read_bytes() == want, rel


# -- the planner --------------------------------------------------------------------------
def _version(i: int, pack: str | None, offset: int, length: int) -> Any:
    from livedata_cli.index.core import Version

    return Version(
        vid=f"v{i}", path=f"p{i}", object=f"o{i}", offset=offset, length=length, size=0, mtime=None,
        mode=None, mime=None, hash="", header_hash="", wrapped_key=b"", key_id="", created=0.0,
        derived_from=None, tags=(), notes="", deleted=None, pack=pack,
    )


members = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", None]), st.integers(0, 3 << 20), st.integers(1, 2 << 20)),
    max_size=60,
)


@given(members, st.integers(0, 2 << 20), st.integers(1, 12 << 20))
@settings(max_examples=300, deadline=None)
def test_runs_cover_every_member_once_within_their_bounds(
    spans: list[tuple[str | None, int, int]], max_gap: int, max_run: int
) -> None:
    from livedata_cli.vault.restore import Job, plan_runs

    jobs = [Job(i, _version(i, pack, off if pack else 0, n)) for i, (pack, off, n) in enumerate(spans)]
    runs = plan_runs(jobs, max_gap=max_gap, max_run=max_run)
    seen = sorted(j.position for r in runs for j in r.jobs)
    assert seen == list(range(len(jobs)))  # every member in exactly one run
    for r in runs:
        assert r.jobs
        for j in r.jobs:
            assert r.key == j.v.store_key
            assert r.start <= j.v.offset and j.v.offset + j.v.length <= r.end
        if r.whole:  # an object of its own: read whole, one byte past its record
            assert len(r.jobs) == 1 and (r.start, r.end) == (0, r.jobs[0].v.length + 1)
            continue
        assert r.end - r.start <= max_run or len(r.jobs) == 1
        assert r.start == min(j.v.offset for j in r.jobs)
        assert r.end == max(j.v.offset + j.v.length for j in r.jobs)
    # A pack's members are all packed into as few runs as the gaps and the size cap allow.
    packed = [j for j in jobs if j.v.pack]
    assert sum(1 for r in runs if not r.whole) <= len(packed)


@settings(max_examples=200, deadline=None)
@given(
    folders=st.lists(st.sampled_from(["a", "a/b", "c", "d/e/f"]), max_size=300),
    size=st.integers(min_value=1, max_value=40),
)
def test_tasks_hold_one_folder_each_and_folders_take_turns(folders: list[str], size: int) -> None:
    """Writer tasks: every member once, each task within one folder and at most
    ``size`` long, and no two tasks in a row in one folder while another has some left."""
    from livedata_cli.vault.restore import Job
    from livedata_cli.vault.restore import tasks as split

    jobs = [Job(i, None, Path("/out") / f / f"{i}.bin") for i, f in enumerate(folders)]  # type: ignore[arg-type]
    tasks = split(jobs, size)
    assert sorted(j.position for t in tasks for j in t) == list(range(len(jobs)))
    assert all(0 < len(t) <= size and len({j.target.parent for j in t}) == 1 for t in tasks)
    left = {f: sum(1 for t in tasks if t[0].target.parent == Path("/out") / f) for f in set(folders)}
    for before, after in itertools.pairwise(tasks):
        folder = before[0].target.parent
        left[str(folder.relative_to("/out"))] -= 1
        others = any(n for f, n in left.items() if Path("/out") / f != folder)
        if others:
            assert after[0].target.parent != folder


@given(
    st.lists(
        st.tuples(st.sampled_from(["t/a", "t/b", "t/s/c", "u/d", "t/a/x"]), st.sampled_from(["put", "put", "rm"])),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(["", "t/", "t/s/", "u/", "v/"]),
)
@settings(max_examples=80, deadline=None)
def test_a_folder_download_plans_the_newest_version_of_each_path(history: list[tuple[str, str]], prefix: str) -> None:
    """What a folder download restores (the newest version of each path under
    the prefix, read from the index's ``newest`` flag) is what ranking every
    version gives, in the trash and out of it, after any history of puts
    and removals."""
    import tempfile

    from livedata_cli.index.core import Index

    with tempfile.TemporaryDirectory() as tmp:
        index = Index(Path(tmp) / "index.sqlite")
        for i, (path, kind) in enumerate(history):
            if kind == "rm":
                record: dict[str, Any] = {"t": "rm", "path": path, "time": 1000.0 + i}
            else:
                record = {
                    "t": "put", "vid": f"{i:032x}", "path": path, "object": f"{i:032x}", "length": 1, "size": i,
                    "mime": "", "hash": "0", "header_hash": "0", "wrapped_key": "00", "key_id": "k",
                    "created": 1000.0 + i,
                }  # fmt: skip
            index.apply(f"journal/{i:04d}", [record])
        for trash in (False, True):
            ranked = [v for v, _n in index.latest(prefix, trash=trash)]
            assert index.newest_under(prefix, trash=trash) == ranked
        index.close()
