"""Two ``livedata server`` processes on one PostgreSQL and one S3 (moto) bucket: a resumable
upload's parts go to either instance, and the file completes and downloads intact.  Nothing of an
upload stays on an instance between requests (each instance has its own LIVEDATA_HOME)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from s3server import AWS_ENV, bucket, moto_url, s3  # noqa: F401
from test_server_uploads import account

from pgserver import PgServer, ServerProcess, postgres  # noqa: F401

API = "/api/v1"
MIB = 1024 * 1024


class Pair:
    def __init__(self, a: ServerProcess, b: ServerProcess, prefix: str) -> None:
        self.a, self.b, self.prefix = a, b, prefix

    @property
    def urls(self) -> list[str]:
        return [self.a.url + API, self.b.url + API]


@pytest.fixture
def pair(
    tmp_path: Path, livedata_env: dict[str, str], postgres: PgServer, moto_url: str, bucket: str  # noqa: F811
) -> Iterator[Callable[..., Pair]]:
    started: list[ServerProcess] = []

    def factory(*args: str) -> Pair:
        db_url = postgres.create_database()
        keys = tmp_path / "keys.json"  # the one secret the instances share
        procs = []
        for name in ("a", "b"):
            env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEDATA_", "AWS_"))}
            env.update({**livedata_env, **AWS_ENV}, LIVEDATA_HOME=str(tmp_path / name), AWS_ENDPOINT_URL=moto_url)
            p = ServerProcess(["--db", db_url, "--store", f"s3://{bucket}/srv", "--keys", str(keys), *args], env)
            started.append(p)
            procs.append(p)
        return Pair(procs[0], procs[1], "srv")

    yield factory
    for p in started:
        p.stop()


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:  # noqa: F811
    got = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return [str(o["Key"]) for o in got]


def _send(pair: Pair, auth: dict[str, str], sizes: list[int], *, complete_on: int) -> tuple[bytes, dict[str, Any]]:
    data = os.urandom(sum(sizes))
    clients = [httpx.Client(base_url=u, timeout=120) for u in pair.urls]
    try:
        r = clients[0].post("/files/uploads", params={"file_name": "big.bin"}, headers=auth)
        assert r.status_code == 201, r.text
        up = r.json()["id"]
        pos = 0
        for i, n in enumerate(sizes):
            c = clients[i % 2]  # alternately to each instance
            total = str(len(data)) if i == len(sizes) - 1 else "*"
            rng = f"bytes {pos}-{pos + n - 1}/{total}"
            r = c.put(f"/files/uploads/{up}", content=data[pos : pos + n], headers={**auth, "Content-Range": rng})
            assert r.status_code == 200, r.text
            pos += n
            assert clients[(i + 1) % 2].get(f"/files/uploads/{up}", headers=auth).json()["received"] == pos
        made = clients[complete_on].post(f"/files/uploads/{up}/complete", headers=auth)
        assert made.status_code == 201, made.text
        return data, made.json()
    finally:
        for c in clients:
            c.close()


def test_parts_sent_alternately_to_two_instances_complete_and_download_intact(
    pair: Callable[..., Pair], s3: Any, bucket: str, tmp_path: Path  # noqa: F811
) -> None:
    servers = pair()
    auth = account(servers.a.url)
    # 8 MiB parts as the CLI sends them, a 3 MiB one (below S3's 5 MiB: it waits as pending bytes),
    # then small ones, and a short last part.
    sizes = [8 * MIB, 3 * MIB, 8 * MIB, 1 * MIB, 3 * MIB, 123_457]
    data, made = _send(servers, auth, sizes, complete_on=1)
    assert made["size"] == len(data)
    for url in servers.urls:
        with httpx.Client(base_url=url, timeout=120) as c:
            back = c.get(f"/files/{made['id']}/download", headers=auth).content
            assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
            ranged = c.get(
                f"/files/{made['id']}/download", headers={**auth, "Range": f"bytes={11 * MIB - 5}-{11 * MIB + 4}"}
            )
            assert ranged.status_code == 206 and ranged.content == data[11 * MIB - 5 : 11 * MIB + 5]
    # The spool is gone from the bucket (objects and multipart uploads), and from both instances' homes.
    assert [k for k in _keys(s3, bucket, "srv/tmp/uploads")] == []
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix="srv/tmp/uploads").get("Uploads", []) == []
    for name in ("a", "b"):
        assert not list((tmp_path / name).rglob("*.part"))
    # The blob is the server's ciphertext, not the client's bytes.
    blobs = _keys(s3, bucket, "srv/data/")
    assert len(blobs) == 1
    stored = s3.get_object(Bucket=bucket, Key=blobs[0])["Body"].read()
    assert data[:4096] not in stored


def test_a_dropped_upload_leaves_nothing_in_the_bucket(pair: Callable[..., Pair], s3: Any, bucket: str) -> None:  # noqa: F811
    servers = pair()
    auth = account(servers.a.url)
    with httpx.Client(base_url=servers.urls[0], timeout=60) as a, httpx.Client(base_url=servers.urls[1], timeout=60) as b:
        up = a.post("/files/uploads", params={"file_name": "x"}, headers=auth).json()["id"]
        first = os.urandom(6 * MIB)
        assert b.put(f"/files/uploads/{up}", content=first,
                     headers={**auth, "Content-Range": f"bytes 0-{6 * MIB - 1}/*"}).status_code == 200
        assert a.put(f"/files/uploads/{up}", content=b"p" * 1000,
                     headers={**auth, "Content-Range": f"bytes {6 * MIB}-{6 * MIB + 999}/*"}).status_code == 200
        assert _keys(s3, bucket, f"srv/tmp/uploads/{up}/")  # the pending bytes
        assert s3.list_multipart_uploads(Bucket=bucket, Prefix=f"srv/tmp/uploads/{up}/").get("Uploads")
        assert b.delete(f"/files/uploads/{up}", headers=auth).status_code == 204
    assert _keys(s3, bucket, f"srv/tmp/uploads/{up}/") == []
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=f"srv/tmp/uploads/{up}/").get("Uploads", []) == []


def test_any_cut_into_parts_round_trips_through_two_instances(pair: Callable[..., Pair]) -> None:
    servers = pair()
    auth = account(servers.a.url)

    @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        sizes=st.lists(
            st.sampled_from([1, 1000, MIB, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 6 * MIB]), min_size=1, max_size=4
        ),
        complete_on=st.integers(0, 1),
    )
    def round_trip(sizes: list[int], complete_on: int) -> None:
        data, made = _send(servers, auth, sizes, complete_on=complete_on)
        with httpx.Client(base_url=servers.urls[1 - complete_on], timeout=120) as c:
            assert c.get(f"/files/{made['id']}/download", headers=auth).content == data
            assert c.delete(f"/files/{made['id']}", params={"purge": "true"}, headers=auth).status_code in (
                200, 204,
            )

    round_trip()


def test_spools_no_upload_owns_leave_the_bucket_at_start(pair: Callable[..., Pair], s3: Any, bucket: str) -> None:  # noqa: F811
    orphan = "0" * 32
    s3.put_object(Bucket=bucket, Key=f"srv/tmp/uploads/{orphan}/pending-5", Body=b"12345")
    s3.create_multipart_upload(Bucket=bucket, Key=f"srv/tmp/uploads/{orphan}/spool")
    servers = pair()
    assert _keys(s3, bucket, "srv/tmp/uploads") == []
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix="srv/tmp/uploads").get("Uploads", []) == []
    assert "orphan_spools_removed" in servers.a.log()


def test_with_a_folder_store_an_upload_stays_on_the_host_that_opened_it(
    tmp_path: Path, livedata_env: dict[str, str], postgres: PgServer  # noqa: F811
) -> None:
    db_url = postgres.create_database()
    keys = tmp_path / "keys.json"
    procs = []
    try:
        for name in ("a", "b"):
            env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
            env.update(livedata_env, LIVEDATA_HOME=str(tmp_path / name))
            procs.append(ServerProcess(["--db", db_url, "--keys", str(keys)], env))
        auth = account(procs[0].url)
        with httpx.Client(base_url=procs[0].url + API) as a, httpx.Client(base_url=procs[1].url + API) as b:
            up = a.post("/files/uploads", params={"file_name": "here"}, headers=auth).json()["id"]
            r = b.put(f"/files/uploads/{up}", content=b"x" * 10, headers={**auth, "Content-Range": "bytes 0-9/10"})
            assert r.status_code == 503 and r.json()["code"] == "spool_unavailable", r.text
            assert "Retry-After" in r.headers
            # Nothing is held or claimed by the refusal: the host that has the spool takes the part.
            r = a.put(f"/files/uploads/{up}", content=b"x" * 10, headers={**auth, "Content-Range": "bytes 0-9/10"})
            assert r.status_code == 200, r.text
            r = b.post(f"/files/uploads/{up}/complete", headers=auth)
            assert r.status_code == 503 and r.json()["code"] == "spool_unavailable", r.text
            assert a.post(f"/files/uploads/{up}/complete", headers=auth).status_code == 201
    finally:
        for p in procs:
            p.stop()
