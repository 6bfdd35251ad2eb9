"""One vault on every store kind, for the suites that must hold on all of them.

``kind_vault`` is parametrised over the folder store, S3 (moto's server over
HTTP) and the hosted API (a real ``livedata server`` process on SQLite), as
borg runs one archiver suite over every backend.  Each gives a CLI whose home
holds an initialised vault, a second machine attached to the same store, and
``raw()``: the same store opened in the test process, to play a hostile store
that edits, drops, replays or plants objects.

A test module takes the fixture, and the S3 fixtures it asks for by name, with
``kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli

STORE_KINDS = ("folder", "s3", "api")
ACCOUNT_PASSWORD = "a long account password for the store suite"


@dataclass
class KindVault:
    """A vault on one store kind."""

    kind: str
    cli: Cli
    url: str
    server: Any = None  # the ServerProcess of the api kind
    email: str = ""
    _homes: int = field(default=0, repr=False)

    @property
    def home(self) -> Path:
        return Path(self.cli.env["LIVEDATA_HOME"])

    def other_machine(self, name: str | None = None, *, attach: bool = True) -> Cli:
        """A second home of the same person, attached to the same store (``init --store``)."""
        self._homes += 1
        name = name or f"machine-{self._homes}"
        home = self.home.parent / name
        work = home.parent / f"{name}-work"
        work.mkdir(parents=True)
        other = Cli({**self.cli.env, "LIVEDATA_HOME": str(home)}, work)
        if self.kind == "api":
            env = {"LIVEDATA_PASSWORD": ACCOUNT_PASSWORD}
            other.ok("login", "--server", self.url, "--email", self.email, env=env)
        if attach:
            other.ok("init", "--store", self.url)
        return other

    @contextlib.contextmanager
    def raw(self, cli: Cli | None = None) -> Iterator[Any]:
        """The store itself, opened in this process with the home's credentials."""
        from livedata_cli.stores import open_store

        env = (cli or self.cli).env
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            yield open_store(self.url)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def keys(self, prefix: str = "") -> list[str]:
        with self.raw() as store:
            return sorted(store.list(prefix))


def _s3_vault(request: pytest.FixtureRequest, cli: Cli) -> KindVault:
    from s3server import aws_env

    moto_url = request.getfixturevalue("moto_url")
    s3 = request.getfixturevalue("s3")
    bucket = f"ld-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    aws_env(cli, moto_url)
    url = f"s3://{bucket}/vault"
    cli.ok("init", "--store", url)
    return KindVault("s3", cli, url)


def _api_vault(cli: Cli, tmp_path: Path, livedata_env: dict[str, str]) -> KindVault:
    from pgserver import ServerProcess

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    env.update(livedata_env, LIVEDATA_HOME=str(tmp_path / "srv"))
    server = ServerProcess([], env)
    email = f"u{uuid.uuid4().hex[:8]}@example.com"
    account = {"LIVEDATA_PASSWORD": ACCOUNT_PASSWORD}
    cli.ok("register", "--server", server.url, "--email", email, env=account)
    cli.ok("login", "--server", server.url, "--email", email, env=account)
    cli.ok("init", "--store", server.url)
    return KindVault("api", cli, server.url, server=server, email=email)


@pytest.fixture(params=STORE_KINDS)
def kind_vault(
    request: pytest.FixtureRequest, cli: Cli, tmp_path: Path, livedata_env: dict[str, str]
) -> Iterator[KindVault]:
    kind = request.param
    if kind == "folder":
        cli.ok("init")
        kv = KindVault("folder", cli, str(tmp_path / "home" / "store"))
    elif kind == "s3":
        kv = _s3_vault(request, cli)
    else:
        kv = _api_vault(cli, tmp_path, livedata_env)
    try:
        yield kv
    finally:
        if kv.server is not None:
            kv.server.stop()


def _s3_fixtures() -> tuple[Any, Any]:
    import s3server

    return s3server.moto_url, s3server.s3


# The S3 fixtures ``kind_vault`` asks for by name; a test module imports them with it.
moto_url, s3 = _s3_fixtures()
