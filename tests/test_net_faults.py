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
    from pgserver import ServerProcess

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    env.update(livedata_env, LIVEDATA_HOME=str(tmp_path / "srv"))
    server = ServerProcess([], env)
    proxy = Proxy(int(urlsplit(server.url).port or 80))
    account = {"LIVEDATA_PASSWORD": "a long account password for the relay test"}
    email = f"u{uuid.uuid4().hex[:8]}@example.com"
    cli.ok("register", "--server", proxy.url, "--email", email, env=account)
    cli.ok("login", "--server", proxy.url, "--email", email, env=account)
    cli.ok("init", "--store", proxy.url)
    try:
        yield Relayed(cli, proxy)
    finally:
        proxy.stop()
        server.stop()


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
