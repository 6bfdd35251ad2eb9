"""One vault on every store kind, for the suites that must hold on all of them.

``kind_vault`` is parametrised over the folder store, S3 (moto's server over
HTTP) and the hosted API (a real ``livedata server`` process on SQLite), as
borg runs one archiver suite over every backend.  Each gives a CLI whose home
holds an initialised vault, a second machine attached to the same store, and
``raw()``: the same store opened in the test process, to play a hostile store
that edits, drops, replays or plants objects.

The api kind's server is shared by the tests of one test process (``api_server`` in conftest.py),
each test with a fresh account of its own, as the moto server is shared with a
fresh bucket per test: starting a server costs seconds, an account milliseconds.

A test module takes the fixture, and the S3 fixtures it asks for by name, with
``kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3``.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import PASSPHRASE, TEST_RUN, Cli

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
    _shared: Any = field(default=None, repr=False)  # the SharedServer that counts logins

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
        other = Cli({**self.cli.env, "LIVEDATA_HOME": str(home)}, work, inprocess=self.cli.inprocess)
        if self.kind == "api":
            env = {"LIVEDATA_PASSWORD": ACCOUNT_PASSWORD}
            if self._shared is not None:
                self._shared.logged_in()
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


class SharedServer:
    """A ``livedata server`` (SQLite, a blob folder) shared by the api-kind vaults of one
    test process, each on an account of its own.

    The server's rate limits count per address and every test comes from 127.0.0.1,
    so a fresh server replaces the old one before a budget could run out:
    ``register_ip`` allows 60 accounts an hour, ``login_ip`` 60 logins a minute.
    """

    MAX_ACCOUNTS = 40
    MAX_RECENT_LOGINS = 30  # leaves a test room for the logins of its other machines

    def __init__(self, root: Path) -> None:
        self.root = root
        self.process: Any = None
        self.accounts = 0
        self.logins: list[float] = []
        self._started = 0

    def _env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        env.update(
            LIVEDATA_HOME=str(home),
            LIVEDATA_PASSPHRASE=PASSPHRASE,
            LIVEDATA_TESTONLY_WEAKEN_KDF="1",
            LIVEDATA_TESTONLY_RUN=TEST_RUN,
            LIVEDATA_NO_KEYRING="1",
        )
        return env

    def logged_in(self) -> None:
        self.logins.append(time.monotonic())

    def for_new_account(self) -> Any:
        """The server a new account goes to: the running one while its budgets last."""
        from pgserver import ServerProcess

        now = time.monotonic()
        self.logins = [t for t in self.logins if now - t < 60]
        fresh = (
            self.process is None
            or self.process.proc.poll() is not None
            or self.accounts >= self.MAX_ACCOUNTS
            or len(self.logins) >= self.MAX_RECENT_LOGINS
        )
        if fresh:
            self.stop()
            self._started += 1
            home = self.root / f"srv-{self._started}"
            self.process = ServerProcess([], self._env(home))
            self.accounts, self.logins = 0, []
        self.accounts += 1
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def _api_vault(cli: Cli, shared: SharedServer) -> KindVault:
    server = shared.for_new_account()
    email = f"u{uuid.uuid4().hex[:12]}@example.com"
    account = {"LIVEDATA_PASSWORD": ACCOUNT_PASSWORD}
    cli.ok("register", "--server", server.url, "--email", email, env=account)
    shared.logged_in()
    cli.ok("login", "--server", server.url, "--email", email, env=account)
    cli.ok("init", "--store", server.url)
    return KindVault("api", cli, server.url, server=server, email=email, _shared=shared)


def every_stage_on_folder(stages: Sequence[str], representative: str) -> pytest.MarkDecorator:
    """Parametrise ``kind_vault`` and ``stage``: every stage on the folder kind, and on S3 and
    the API the one ``representative`` stage.

    A stage is a point of livedata's own code (a pause or kill point), the same on every
    store kind; what differs between kinds is how the store holds what was written so far,
    which one stage in the middle of the work shows.  Each remote case costs seconds.
    """
    assert representative in stages
    cases = [pytest.param("folder", stage, id=f"folder-{stage}") for stage in stages]
    cases += [pytest.param(kind, representative, id=f"{kind}-{representative}") for kind in STORE_KINDS[1:]]
    return pytest.mark.parametrize(("kind_vault", "stage"), cases, indirect=["kind_vault"])


@pytest.fixture(params=STORE_KINDS)
def kind_vault(request: pytest.FixtureRequest, cli: Cli, tmp_path: Path) -> KindVault:
    kind = request.param
    if kind == "folder":
        cli.ok("init")
        return KindVault("folder", cli, str(tmp_path / "home" / "store"))
    if kind == "s3":
        return _s3_vault(request, cli)
    return _api_vault(cli, request.getfixturevalue("api_server"))


def _s3_fixtures() -> tuple[Any, Any]:
    import s3server

    return s3server.moto_url, s3server.s3


# The S3 fixtures ``kind_vault`` asks for by name; a test module imports them with it.
moto_url, s3 = _s3_fixtures()
