"""A store that stops answering: S3 (moto) and a real livedata server behind a
relay that, once frozen, accepts connections and reads requests but never
answers.  Every call is bounded (connect, first byte, idle read), so the
command is exit 6 within a minute, retries show on stderr as they happen
(nothing but the error under --quiet), and a slow transfer that keeps moving
still completes.  LIVEDATA_STALL_TIMEOUT is set low here; its default is 30 s."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from s3server import aws_env, moto_url, s3  # noqa: F401 (fixtures)
from tcpproxy import Proxy

from conftest import Cli, write

pytestmark = pytest.mark.subprocess

STALL = {"LIVEDATA_STALL_TIMEOUT": "1"}


@dataclass
class Relayed:
    cli: Cli
    proxy: Proxy


@pytest.fixture(params=["s3", "api"])
def relayed(request: pytest.FixtureRequest, cli: Cli, tmp_path: Path, livedata_env: dict[str, str]) -> Iterator[Relayed]:
    """A vault whose store is reached through a relay the test can freeze."""
    from urllib.parse import urlsplit

    if request.param == "s3":
        upstream = request.getfixturevalue("moto_url")
        bucket = f"ld-{uuid.uuid4().hex[:16]}"
        request.getfixturevalue("s3").create_bucket(Bucket=bucket)
        proxy = Proxy(int(urlsplit(upstream).port or 80))
        aws_env(cli, proxy.url)
        cli.ok("init", "--store", f"s3://{bucket}/vault")
        yield Relayed(cli, proxy)
        proxy.stop()
        return
    # The server this test process shares (an account of this test's own), behind a relay of
    # this test's own: freezing the relay stalls this vault's calls and no other test's.
    shared = request.getfixturevalue("api_server")
    server = shared.for_new_account()
    proxy = Proxy(int(urlsplit(server.url).port or 80))
    account = {"LIVEDATA_PASSWORD": "a long account password for the relay test"}
    email = f"u{uuid.uuid4().hex[:8]}@example.com"
    cli.ok("register", "--server", proxy.url, "--email", email, env=account)
    shared.logged_in()
    cli.ok("login", "--server", proxy.url, "--email", email, env=account)
    cli.ok("init", "--store", proxy.url)
    try:
        yield Relayed(cli, proxy)
    finally:
        proxy.stop()


def test_frozen_store_is_exit_6_within_a_minute_with_retries_shown(relayed: Relayed) -> None:
    cli, proxy = relayed.cli, relayed.proxy
    kept = os.urandom(200_000)
    write(cli.cwd / "kept.bin", kept)
    cli.ok("upload", "kept.bin")
    write(cli.cwd / "big.bin", os.urandom(12 * 1024 * 1024))
    proxy.frozen = True
    t0 = time.monotonic()
    r = cli("upload", "big.bin", env=STALL, timeout=90)
    took = time.monotonic() - t0
    assert r.code == 6, r.stderr
    assert took < 60, took
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert any("not answering, retry 2/" in line for line in lines), r.stderr
    assert lines[-1].startswith("livedata: error: ") and "Traceback" not in r.stderr
    r = cli("--quiet", "download", "kept.bin", "-o", "out.bin", env=STALL, timeout=90)
    assert r.code == 6 and len([x for x in r.stderr.splitlines() if x.strip()]) == 1, r.stderr
    assert not (cli.cwd / "out.bin").exists()
    proxy.frozen = False
    cli.ok("upload", "big.bin", env=STALL)
    assert cli.ok("download", "kept.bin", "-o", "-").stdout == kept
    cli.ok("verify", "--data")


def test_slow_but_moving_transfer_completes(relayed: Relayed) -> None:
    """A download whose bytes trickle in, each well within the stall bound, takes
    longer than the bound in all and still completes."""
    cli, proxy = relayed.cli, relayed.proxy
    data = os.urandom(1024 * 1024)
    write(cli.cwd / "slow.bin", data)
    cli.ok("upload", "slow.bin")
    proxy.pace = 0.3
    t0 = time.monotonic()
    r = cli("download", "slow.bin", "-o", "-", env={"LIVEDATA_STALL_TIMEOUT": "2"}, timeout=300)
    took = time.monotonic() - t0
    assert r.code == 0, r.stderr
    assert r.stdout == data and took > 2, took
    assert "not answering" not in r.stderr


def test_server_without_list_multipart_uploads_still_verifies(cli: Cli, moto_url: str, s3: object) -> None:  # noqa: F811
    """An S3-compatible server answering ListMultipartUploads with 501 NotImplemented:
    that housekeeping is skipped with one note; the check itself runs."""
    from s3server import CountingProxy

    relay = CountingProxy(moto_url)
    try:
        relay.unsupported.add("s3:ListMultipartUploads")
        bucket = f"ld-{uuid.uuid4().hex[:16]}"
        s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        aws_env(cli, relay.url)
        cli.ok("init", "--store", f"s3://{bucket}/vault")
        data = os.urandom(300_000)
        write(cli.cwd / "f.bin", data)
        cli.ok("upload", "f.bin")
        r = cli("verify", "--data")
        assert r.code == 0, r.stderr
        notes = [line for line in r.stderr.splitlines() if line.startswith("livedata")]
        assert len(notes) == 1 and notes[0].startswith("livedata: note: ") and "ListMultipartUploads" in notes[0]
        assert relay.counts["s3:ListMultipartUploads"] >= 1
        assert "note" not in cli("--quiet", "verify", "--data").stderr
        # The check still runs: damage is found.
        key = next(k for k in (o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) if "/data/" in k)  # type: ignore[attr-defined]
        body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())  # type: ignore[attr-defined]
        body[1000] ^= 1  # inside the file's container (the end of a pack may be padding)
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))  # type: ignore[attr-defined]
        assert cli("verify", "--data").code == 5
    finally:
        relay.close()


@pytest.mark.parametrize("value", ["abc", "0", "-3"])
def test_bad_stall_timeout_is_a_usage_error(cli: Cli, value: str) -> None:
    from conftest import assert_one_line_error

    env = {"LIVEDATA_STALL_TIMEOUT": value, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    r = cli("init", "--store", "s3://bucket1/vault", env=env)
    assert_one_line_error(r, 2)
    assert "stall_timeout" in r.stderr
