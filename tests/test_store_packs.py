"""Packs on S3 and the API store, as on the folder store, and shares of packed
files: a member is read with one ranged request, never with its whole pack,
and sharing it first copies it, server-side, into an object of its own, which
``share revoke``, ``rm --purge`` and ``prune`` delete once no live share needs it.

Real parts only: moto's S3 server over HTTP, a ``livedata server`` process,
the ``livedata`` commands (run in the test's process: the same code, streams and
exit codes without an interpreter start each; ``mount`` a real process); a TCP
proxy counts the bytes that travel, so the request counts are the commands' own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import store_kinds
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from s3server import aws_env
from store_kinds import KindVault
from tcpproxy import Proxy

from conftest import Cli, assert_one_line_error, write
from livedata_cli.packs import share_copy_key
from pgserver import new_user

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3


def _small_tree(root: Path, n: int = 40) -> dict[str, bytes]:
    files = {f"d{i % 4}/f{i:03d}.bin": os.urandom(100 + 97 * i) for i in range(n)}
    for rel, data in files.items():
        write(root / rel, data)
    return files


def _entries(cli: Cli) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in cli.ok("ls", "--json").json()}


def _stranger(cli: Cli, tmp_path: Path, name: str = "stranger") -> Cli:
    """Someone with no vault, no account and no AWS credentials."""
    from conftest import TEST_RUN

    env = {k: v for k, v in cli.env.items() if not k.startswith(("LIVEDATA_", "AWS_"))}
    env.update({"LIVEDATA_HOME": str(tmp_path / name), "LIVEDATA_NO_KEYRING": "1", "LIVEDATA_TESTONLY_RUN": TEST_RUN})
    work = tmp_path / f"{name}-work"
    work.mkdir()
    return Cli(env, work, inprocess=cli.inprocess)


# -- packs on every store kind ----------------------------------------------------------
def test_small_files_share_packs_on_every_store_kind(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    files = _small_tree(cli.cwd / "src")
    big = os.urandom(2 * 1024 * 1024 + 3)
    write(cli.cwd / "src" / "big.bin", big)
    cli.ok("upload", "src", "-r", "--as", "t/")
    entries = _entries(cli)
    packs = {e["pack"] for p, e in entries.items() if p != "t/big.bin"}
    assert len(packs) == 1 and None not in packs, "the 40 small files share one pack"
    assert entries["t/big.bin"]["pack"] is None
    assert len(kind_vault.keys("data/")) == 2, "one pack and the big file: two data objects, not 41"
    cli.ok("verify", "--data")
    cli.ok("download", "t/", "-o", "out")
    for rel, data in files.items():
        assert (cli.cwd / "out" / rel).read_bytes() == data
    assert (cli.cwd / "out" / "big.bin").read_bytes() == big
    other = kind_vault.other_machine()
    assert other.ok("download", "t/d1/f001.bin", "-o", "-").stdout == files["d1/f001.bin"]


def test_a_damaged_member_on_a_remote_store_fails_alone(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    files = _small_tree(cli.cwd / "src", 9)
    cli.ok("upload", "src", "-r", "--as", "t/")
    victim = _entries(cli)["t/d1/f005.bin"]
    key = f"data/{victim['pack']}"
    with kind_vault.raw() as store:
        blob = bytearray(store.get_bytes(key))
        blob[victim["offset"] + victim["length"] - 5] ^= 1  # inside the member's last segment
        store.put_bytes(key, bytes(blob))
    assert_one_line_error(cli("download", "t/d1/f005.bin", "-o", "x"), 5)
    assert not (cli.cwd / "x").exists()
    for rel in ("d0/f004.bin", "d2/f006.bin"):
        assert cli.ok("download", f"t/{rel}", "-o", "-").stdout == files[rel]


def _proxied_s3(cli: Cli, moto: str, s3_client: Any, tmp_path: Path) -> tuple[Cli, Proxy, dict[str, bytes]]:
    """A vault on moto with 300 small files (one ~3 MB pack), and a second home
    that reaches the same bucket through a byte-counting proxy."""
    import uuid
    from urllib.parse import urlparse

    bucket = f"ld-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=bucket)
    aws_env(cli, moto)
    cli.ok("init", "--store", f"s3://{bucket}/v")
    files = {f"f{i:03d}.bin": os.urandom(9000) for i in range(300)}
    for rel, data in files.items():
        write(cli.cwd / "src" / rel, data)
    cli.ok("upload", "src", "-r", "--as", "t/")
    proxy = Proxy(int(urlparse(moto).port or 0))
    other = Cli({**cli.env, "LIVEDATA_HOME": str(tmp_path / "other"), "AWS_ENDPOINT_URL": proxy.url}, cli.cwd, inprocess=cli.inprocess)
    other.ok("init", "--store", f"s3://{bucket}/v")
    return other, proxy, files


def test_reading_one_member_on_s3_fetches_its_range_only(
    cli: Cli, moto_url: str, s3: Any, tmp_path: Path
) -> None:
    other, proxy, files = _proxied_s3(cli, moto_url, s3, tmp_path)
    entries = _entries(other)
    pack = entries["t/f150.bin"]["pack"]
    assert pack and all(e["pack"] == pack for e in entries.values()), "300 small files, one pack"
    before = proxy.bytes["down"]
    assert other.ok("download", "t/f150.bin", "-o", "-").stdout == files["f150.bin"]
    fetched = proxy.bytes["down"] - before
    assert fetched < 100_000, f"{fetched} bytes came down for a 9,000-byte member of a 2.8 MB pack"
    before = proxy.bytes["down"]
    other.ok("verify")  # every member's header: the pack in a few blocks, once
    assert proxy.bytes["down"] - before < 4_000_000


def test_reading_one_member_on_the_api_store_fetches_its_range_only(
    kind_vault_api: KindVault, tmp_path: Path
) -> None:
    kv = kind_vault_api
    cli = kv.cli
    files = {f"f{i:03d}.bin": os.urandom(9000) for i in range(300)}
    for rel, data in files.items():
        write(cli.cwd / "src" / rel, data)
    cli.ok("upload", "src", "-r", "--as", "t/")
    from urllib.parse import urlparse

    proxy = Proxy(int(urlparse(kv.url).port or 0))
    home = tmp_path / "via-proxy"
    other = Cli({**cli.env, "LIVEDATA_HOME": str(home)}, cli.cwd, inprocess=cli.inprocess)
    account = {"LIVEDATA_PASSWORD": store_kinds.ACCOUNT_PASSWORD}
    other.ok("login", "--server", proxy.url, "--email", kv.email, env=account)
    other.ok("init", "--store", proxy.url)
    entries = _entries(other)
    assert len({e["pack"] for e in entries.values()}) == 1 and entries["t/f007.bin"]["pack"]
    before = proxy.bytes["down"]
    assert other.ok("download", "t/f200.bin", "-o", "-").stdout == files["f200.bin"]
    fetched = proxy.bytes["down"] - before
    assert fetched < 100_000, f"{fetched} bytes came down for a 9,000-byte member of a 2.8 MB pack"


@pytest.fixture
def kind_vault_api(cli: Cli, api_server: Any) -> KindVault:
    return store_kinds._api_vault(cli, api_server)


# -- the server: ranges and the copy endpoint ----------------------------------------------
@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    from livedata_cli.server import db
    from livedata_cli.server.app import create_app
    from livedata_cli.server.config import RateLimits, ServerConfig

    base = tmp_path / "server"
    config = ServerConfig(
        db_url=f"sqlite:///{base / 'db.sqlite'}", store_url=str(base / "blobs"), keys_path=str(base / "keys.json"),
        weaken_kdf=True, rate_limits=RateLimits(*(["1000/minute"] * 8)), quota_bytes=3_000_000,
    ).resolved()
    db.Database(config.db_url).migrate()
    with TestClient(create_app(config), base_url="http://testserver") as client:
        yield client


BIG = os.urandom(3 * 262144 + 1000)  # four server segments, the last one short


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, len(BIG) - 1), span=st.integers(1, len(BIG)))
def test_server_ranges_start_at_their_segment(api: TestClient, start: int, span: int) -> None:
    user = getattr(api, "_user", None) or new_user(api)
    api._user = user  # type: ignore[attr-defined]
    fid = getattr(api, "_fid", None) or user.upload(BIG, "big")["id"]
    api._fid = fid  # type: ignore[attr-defined]
    end = min(len(BIG), start + span) - 1
    r = user.get(f"/api/v1/files/{fid}/download", headers={"Range": f"bytes={start}-{end}"})
    assert r.status_code == 206 and r.content == BIG[start : end + 1]
    r = user.post(f"/api/v1/files/{fid}/copy", json={"offset": start, "length": end + 1 - start, "file_name": "c"})
    assert r.status_code == 201, r.text
    assert user.get(f"/api/v1/files/{r.json()['id']}/download").content == BIG[start : end + 1]


def test_server_copy_is_owner_only_counts_and_is_documented(api: TestClient) -> None:
    ada, bob = new_user(api), new_user(api)
    src = ada.upload(BIG[:500_000], "data/pack")
    used = ada.get("/api/v1/users/me/storage").json()["used_bytes"]
    r = ada.post(f"/api/v1/files/{src['id']}/copy", json={"offset": 1000, "length": 4000, "file_name": "data/copy"})
    assert r.status_code == 201 and r.json()["size"] == 4000 and r.json()["file_name"] == "data/copy"
    assert ada.get(f"/api/v1/files/{r.json()['id']}/download").content == BIG[1000:5000]
    assert ada.get("/api/v1/users/me/storage").json()["used_bytes"] == used + 4000, "the copy counts"
    # Again with the same name: an overwrite, not a second file.
    r = ada.post(f"/api/v1/files/{src['id']}/copy", json={"offset": 0, "length": 10, "file_name": "data/copy"})
    assert r.status_code == 201
    assert len(ada.get("/api/v1/files", params={"name": "data/copy"}).json()["items"]) == 1
    # Another user's id is a plain 404, no token a 401, a range outside the file a 416.
    body = {"offset": 0, "length": 10, "file_name": "mine"}
    assert bob.post(f"/api/v1/files/{src['id']}/copy", json=body).status_code == 404
    assert api.post(f"/api/v1/files/{src['id']}/copy", json=body).status_code == 401
    r = ada.post(f"/api/v1/files/{src['id']}/copy", json={"offset": 499_990, "length": 11, "file_name": "x"})
    assert r.status_code == 416
    for bad in ({"offset": -1, "length": 1, "file_name": "x"}, {"offset": 0, "length": 0, "file_name": "x"}):
        assert ada.post(f"/api/v1/files/{src['id']}/copy", json=bad).status_code == 422
    # Over the quota (3,000,000 bytes): refused, nothing stored.
    ada.upload(os.urandom(2_400_000), "filler")
    before = ada.get("/api/v1/users/me/storage").json()["used_bytes"]
    r = ada.post(f"/api/v1/files/{src['id']}/copy", json={"offset": 0, "length": 400_000, "file_name": "y"})
    assert r.status_code == 413 and r.json()["code"] == "quota_exceeded"
    assert ada.get("/api/v1/users/me/storage").json()["used_bytes"] == before
    spec = api.get("/api/v1/openapi.json").json()
    assert "post" in spec["paths"]["/api/v1/files/{file_id}/copy"]


# -- shares of packed files -------------------------------------------------------------------
# A folder store's share is a share file that holds the member's bytes: nothing to copy there.
remote_kinds = pytest.mark.parametrize("kind_vault", ["s3", "api"], indirect=True)


@pytest.fixture
def remote_vault(kind_vault: KindVault) -> KindVault:
    return kind_vault


def _share_member(kv: KindVault) -> tuple[dict[str, bytes], dict[str, Any]]:
    files = _small_tree(kv.cli.cwd / "src", 12)
    kv.cli.ok("upload", "src", "-r", "--as", "t/")
    return files, _entries(kv.cli)


@remote_kinds
def test_sharing_a_packed_file_copies_it_and_the_link_opens(remote_vault: KindVault, tmp_path: Path) -> None:
    kv, cli = remote_vault, remote_vault.cli
    files, entries = _share_member(kv)
    member = entries["t/d2/f006.bin"]
    assert member["pack"], "small files are packed on this store"
    made = cli.ok("share", "t/d2/f006.bin", "--expires", "2h", "--json").json()
    copy = share_copy_key(made["id"])
    with kv.raw() as store:
        assert store.size(copy) == member["length"], "an object of its own, the member's bytes"
        assert store.get_bytes(copy) == store.get_bytes(f"data/{member['pack']}")[
            member["offset"] : member["offset"] + member["length"]
        ]
    other = _stranger(cli, tmp_path)
    other.ok("download", made["link"], "-o", "got.bin")
    assert (other.cwd / "got.bin").read_bytes() == files["d2/f006.bin"]
    # prune keeps the live share's copy, and the link still opens.
    cli.ok("prune")
    assert copy in kv.keys("data/")
    other.ok("download", made["link"], "-o", "again.bin")
    assert (other.cwd / "again.bin").read_bytes() == files["d2/f006.bin"]
    # Revoked: the link no longer opens (exit 7, "revoked").  On S3 the copy
    # goes at once (its presigned URL would work until it expires); a server
    # refuses the revoked share itself, and the copy goes at the next prune.
    cli.ok("share", "revoke", made["id"])
    assert (copy in kv.keys("data/")) == (kv.kind == "api")
    r = other("download", made["link"], "-o", "late.bin")
    assert_one_line_error(r, 7)
    assert "revoked" in r.stderr
    assert not (other.cwd / "late.bin").exists()
    cli.ok("prune")
    assert copy not in kv.keys("data/")
    assert_one_line_error(other("download", made["link"], "-o", "late.bin"), 3 if kv.kind == "api" else 7)


@remote_kinds
def test_share_copies_go_with_a_purge_an_expiry_and_a_prune(remote_vault: KindVault, tmp_path: Path) -> None:
    kv, cli = remote_vault, remote_vault.cli
    files, _ = _share_member(kv)
    purged = cli.ok("share", "t/d1/f001.bin", "--json").json()
    expiring = cli.ok("share", "t/d3/f003.bin", "--expires", "1h", "--json").json()
    kept = cli.ok("share", "t/d0/f004.bin", "--json").json()
    copies = {n: share_copy_key(m["id"]) for n, m in (("purged", purged), ("expiring", expiring), ("kept", kept))}
    assert set(copies.values()) <= set(kv.keys("data/"))
    cli.ok("rm", "--purge", "t/d1/f001.bin")
    assert copies["purged"] not in kv.keys("data/"), "rm --purge deletes the share's copy"
    # A revoked share whose copy came back (a revoke killed midway, a hostile store): prune deletes it.
    cli.ok("share", "revoke", kept["id"])
    with kv.raw() as store:
        store.put_bytes(copies["kept"], b"left behind")
    later = str(time.time() + 3 * 3600)
    cli.ok("prune", env={"LIVEDATA_TESTONLY_NOW": later})
    left = set(kv.keys("data/"))
    assert copies["kept"] not in left, "a revoked share's copy is unreferenced"
    assert copies["expiring"] not in left, "an expired share's copy goes (after an hour's margin)"
    for rel in ("d0/f000.bin", "d3/f003.bin", "d2/f010.bin"):
        assert cli.ok("download", f"t/{rel}", "-o", "-").stdout == files[rel]
    cli.ok("verify", "--data")


@remote_kinds
def test_a_share_of_a_big_file_makes_no_copy(remote_vault: KindVault, tmp_path: Path) -> None:
    cli = remote_vault.cli
    big = os.urandom(1024 * 1024 + 77)
    write(cli.cwd / "big.bin", big)
    cli.ok("upload", "big.bin")
    before = set(remote_vault.keys("data/"))
    made = cli.ok("share", "big.bin", "--json").json()
    assert set(remote_vault.keys("data/")) == before
    other = _stranger(cli, tmp_path)
    other.ok("download", made["link"], "-o", "got.bin")
    assert (other.cwd / "got.bin").read_bytes() == big


def test_s3_share_link_fetches_the_copy_not_the_pack(cli: Cli, moto_url: str, s3: Any, tmp_path: Path) -> None:
    owner, proxy, files = _proxied_s3(cli, moto_url, s3, tmp_path)
    made = owner.ok("share", "t/f123.bin", "--json").json()
    assert f"127.0.0.1:{proxy.port}" in made["link"]
    other = _stranger(owner, tmp_path)
    before = proxy.bytes["down"]
    other.ok("download", made["link"], "-o", "got.bin")
    assert (other.cwd / "got.bin").read_bytes() == files["f123.bin"]
    assert proxy.bytes["down"] - before < 100_000, "the link hands out the member's copy, not its 2.8 MB pack"
    assert httpx.get(made["link"].partition("#")[0]).status_code == 200


def test_a_restore_of_many_members_reads_each_pack_in_few_requests(
    cli: Cli, moto_url: str, s3: Any, tmp_path: Path
) -> None:
    """Members read one after the other come from blocks of their pack kept for
    the command: 300 small files in a few GETs, not 300, in whatever order the
    restore takes them; every member is still authenticated on its own."""
    import uuid

    from s3server import CountingProxy

    bucket = f"ld-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    aws_env(cli, moto_url)
    cli.ok("init", "--store", f"s3://{bucket}/v")
    files = {f"f{i:03d}.bin": os.urandom(3000 + i) for i in range(300)}
    for rel, data in files.items():
        write(cli.cwd / "src" / rel, data)
    cli.ok("upload", "src", "-r", "--as", "t/")
    proxy = CountingProxy(moto_url)
    try:
        other = Cli({**cli.env, "LIVEDATA_HOME": str(tmp_path / "other"), "AWS_ENDPOINT_URL": proxy.url}, cli.cwd, inprocess=cli.inprocess)
        other.ok("init", "--store", f"s3://{bucket}/v")
        proxy.counts.clear()
        other.ok("download", "t/f000.bin", "-o", "one.bin")  # the command's own reads, and one member
        one = proxy.counts["s3:GET"]
        proxy.counts.clear()
        other.ok("download", "t/", "-o", "out")
        for rel, data in files.items():
            assert (cli.cwd / "out" / rel).read_bytes() == data
        assert proxy.counts["s3:GET"] - one < 20, proxy.counts
    finally:
        proxy.close()


@remote_kinds
def test_mount_reads_packed_files_on_remote_stores(remote_vault: KindVault, tmp_path: Path) -> None:
    """A FUSE mount of a vault on S3 or a server reads each packed file from its
    range of the pack, in any order."""
    import shutil
    import subprocess

    from conftest import livedata_exe

    if not (os.path.exists("/dev/fuse") and shutil.which("fusermount3")):
        pytest.fail("this suite needs FUSE (/dev/fuse and fusermount3)")
    cli = remote_vault.cli
    files = _small_tree(cli.cwd / "src", 20)
    cli.ok("upload", "src", "-r", "--as", "t/")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen([*livedata_exe(), "mount", str(mnt)], env=cli.env, cwd=cli.cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not os.path.ismount(mnt):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        for rel in sorted(files, reverse=True):  # not the order they lie in the pack
            assert (mnt / "t" / rel).read_bytes() == files[rel]
        with open(mnt / "t" / "d3" / "f019.bin", "rb") as f:
            f.seek(500)
            assert f.read(40) == files["d3/f019.bin"][500:540]
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False, capture_output=True)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
