"""Plain ``ls`` and ``search`` are served without the command tree (livedata_cli/quick.py).

Every command line is run twice, as real processes: through the console
script (``livedata``, which takes the fast path when it can) and through the
full command line alone (``livedata_cli.entry.main``); stdout, stderr and the
exit code must be byte for byte the same, whatever the options, including
the ones the fast path leaves to the full command line and every error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Cli, livedata_exe, write

FULL = [sys.executable, "-c", "import sys; from livedata_cli.entry import main; sys.exit(main())"]
HEAVY = {"typer", "rich", "livedata_cli.cli", "livedata_cli.vault.core", "livedata_cli.crypto", "keyring", "boto3", "httpx"}

LS_WORDS = ["--trash", "--all", "-a", "--null", "-0", "--no-header", "-q", "--quiet", "--long", "-l", "--json",
            "docs", "docs/", "photos/2024", "nothing/", "../up", "/abs", "", "a b", "-x", "--bogus", "--help", "-a0"]  # fmt: skip
SEARCH_WORDS = ["invoice", "report", "contr*", "tag:finance", "-draft", '"annual report"', "OR", "NOT", "x OR",
                "!!!", "", "photo", "-q", "--quiet", "--trash", "--all-versions", "--json", "--bogus", "-h"]  # fmt: skip
SEARCH_VALUES = {
    "--tag": ["finance", "family", "none"],
    "-t": ["finance"],
    "--type": ["pdf", "image/*", "text", "bogus/", "image"],
    "--since": ["7d", "2020-01-01", "nonsense", "yesterday"],
    "--until": ["2100-01-01", "1d", "x"],
    "--larger-than": ["1KB", "0", "10MiB", "big"],
    "--smaller-than": ["1MB", "-1"],
    "--limit": ["0", "1", "2", "-1", "abc", "007"],
    "-n": ["3", " 4"],
}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One vault for every example: files, tags, a note, folders, a removed file."""
    import os

    from conftest import PASSPHRASE, TEST_RUN

    root = tmp_path_factory.mktemp("quick")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    env.update(
        LIVEDATA_HOME=str(root / "home"), LIVEDATA_PASSPHRASE=PASSPHRASE, LIVEDATA_TESTONLY_WEAKEN_KDF="1",
        LIVEDATA_TESTONLY_RUN=TEST_RUN, LIVEDATA_NO_KEYRING="1",
    )  # fmt: skip
    work = root / "work"
    work.mkdir()
    cli = Cli(env, work)
    cli.ok("init")
    files = {
        "docs/invoice-2024.pdf": b"%PDF-1.4 invoice",
        "docs/annual report.pdf": b"%PDF-1.4 report " * 200,
        "docs/contract draft.txt": "contract draft text",
        "photos/2024/beach.jpg": b"\xff\xd8\xff" + b"j" * 3000,
        "photos/2024/évian photo.jpg": b"\xff\xd8\xff" + b"e" * 100,
        "notes/tab\tand\x1bescape.txt": "odd name",
        "old/report-draft.txt": "draft",
    }
    for name, data in files.items():
        write(work / "src" / name, data)
    cli.ok("upload", str(work / "src"), "--recursive", "--as", "")
    cli.ok("tag", "docs/invoice-2024.pdf", "finance", "family")
    cli.ok("tag", "photos/2024/beach.jpg", "family")
    cli.ok("upload", str(work / "src" / "docs" / "invoice-2024.pdf"), "--as", "docs/invoice-2024.pdf")
    cli.ok("rm", "old/report-draft.txt")
    return cli


def both(cli: Cli, args: list[str], env: dict[str, str] | None = None) -> None:
    full_env = {**cli.env, **(env or {})}
    fast = subprocess.run([*livedata_exe(), *args], capture_output=True, env=full_env, cwd=cli.cwd, timeout=60)
    slow = subprocess.run([*FULL, *args], capture_output=True, env=full_env, cwd=cli.cwd, timeout=60)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr), args


GLOBAL = ["--json", "-q", "--quiet", "--no-keyring", "--debug", "-P", "--profile", "x"]


def ls_args() -> st.SearchStrategy[list[str]]:
    return st.tuples(
        st.lists(st.sampled_from(GLOBAL), max_size=2), st.lists(st.sampled_from(LS_WORDS), max_size=4)
    ).map(lambda t: [*t[0], "ls", *t[1]])


@st.composite
def search_args(draw: st.DrawFn) -> list[str]:
    out = [*draw(st.lists(st.sampled_from(GLOBAL), max_size=2)), "search"]
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            out.append(draw(st.sampled_from(SEARCH_WORDS)))
        else:
            option = draw(st.sampled_from(sorted(SEARCH_VALUES)))
            out += [option, draw(st.sampled_from(SEARCH_VALUES[option]))]
    return out


ENVS = st.sampled_from([{}, {"LIVEDATA_QUIET": "1"}, {"LIVEDATA_JSON": "1"}, {"LIVEDATA_NO_KEYRING": "maybe"}])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=ls_args(), env=ENVS)
def test_ls_is_the_same_on_the_fast_path(library: Cli, args: list[str], env: dict[str, str]) -> None:
    both(library, args, env)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=search_args(), env=ENVS)
def test_search_is_the_same_on_the_fast_path(library: Cli, args: list[str], env: dict[str, str]) -> None:
    both(library, args, env)


@pytest.mark.parametrize(
    "args",
    [["ls"], ["ls", "docs/"], ["ls", "-0"], ["ls", "--trash"], ["ls", "-a"], ["search", "invoice"],
     ["search", "--tag", "family"], ["search", "report", "--type", "pdf", "-n", "1"], ["search", "nothing-like-it"],
     ["search", "--trash", "--type", "text"], ["ls", "--json"], ["ls", "--json", "-a", "docs"],
     ["search", "report", "--json"], ["search", "--json", "--tag", "family"], ["--json", "ls"],
     ["-q", "search", "nothing-like-it"], ["--no-keyring", "--json", "search", "report"]],
)  # fmt: skip
def test_common_forms_load_no_command_tree(library: Cli, args: list[str]) -> None:
    """What makes them fast: neither Typer nor the vault, crypto or store modules are imported."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", *livedata_exe(), *args] if livedata_exe()[0] != sys.executable
        else [sys.executable, "-X", "importtime", "-m", "livedata_cli", *args],
        capture_output=True, text=True, env=library.env, cwd=library.cwd,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    loaded = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(tuple(HEAVY))}, args
    both(library, args)


def test_a_config_file_and_a_profile(library: Cli, tmp_path: Path) -> None:
    """A config file's settings apply on the fast path as on the full one; a profile goes the full way."""
    config = Path(library.env["LIVEDATA_HOME"]) / "config.toml"
    try:
        for text in ("quiet = true\n", "json = true\n", "quiet = 3\n", "[profiles.work]\n", "not toml ["):
            config.write_text(text)
            for args in (["ls"], ["search", "nothing-like-it"], ["search", "invoice"]):
                both(library, args)
        both(library, ["ls"], {"LIVEDATA_PROFILE": "work"})
    finally:
        config.unlink(missing_ok=True)


def test_no_vault_and_a_vanished_index(cli: Cli) -> None:
    for args in (["ls"], ["search", "x"]):
        both(cli, args)
    cli.ok("init")
    (Path(cli.env["LIVEDATA_HOME"]) / "index.sqlite").unlink()
    for args in (["ls"], ["search", "x"]):
        both(cli, args)


def test_a_reader_that_goes_away(library: Cli) -> None:
    """``livedata ls | head -1``: exit 0, nothing on stderr, as the full command."""
    for cmd in (livedata_exe(), FULL):
        p = subprocess.Popen([*cmd, "ls"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=library.env)
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()
        err = p.stderr.read()
        assert p.wait(timeout=60) == 0 and err == b"", (cmd, err)


@pytest.mark.parametrize("how", ["header", "page", "truncated", "not-sqlite"])
def test_a_damaged_index_fails_the_same_way(cli: Cli, how: str) -> None:
    """A damaged index is the full command's to report: the same line, exit 5."""
    import os

    cli.ok("init")
    for i in range(30):
        write(cli.cwd / "tree" / f"f{i:02}.txt", f"file {i}\n")
    cli.ok("upload", "tree", "--recursive")
    index = Path(cli.env["LIVEDATA_HOME"]) / "index.sqlite"
    data = bytearray(index.read_bytes())
    if how == "header":
        data[:16] = b"garbage garbage!"
    elif how == "page":
        page = int.from_bytes(data[16:18], "big")
        for start in range(page, len(data), page):  # every page but the first (the schema)
            data[start : start + page] = os.urandom(min(page, len(data) - start))
    elif how == "truncated":
        data = data[: len(data) // 3]
    else:
        data = bytearray(b"this is not a database at all\n" * 100)
    index.write_bytes(bytes(data))
    for args in (["ls"], ["ls", "-0"], ["ls", "--json"], ["search", "file"], ["search", "--tag", "x"]):
        both(cli, args)


def test_ctrl_c_while_listing(tmp_path: Path, livedata_env: dict[str, str]) -> None:
    """Ctrl-C while ``ls`` waits on a full pipe: one line, exit 130, on both paths."""
    import os
    import signal
    import time

    from livedata_cli import settings
    from livedata_cli.index.core import Index

    home = Path(livedata_env["LIVEDATA_HOME"])
    settings.VaultSettings(store=str(home / "store"), vault_id="0" * 32).save()
    index = Index(home / settings.INDEX_FILE)
    records = [
        {"t": "put", "vid": f"{i:032x}", "path": f"folder/a-rather-long-file-name-{i:06d}.txt", "object": f"{i:032x}",
         "offset": 0, "length": 100, "size": 10, "mtime": 0.0, "mode": 0o644, "mime": "text/plain",
         "hash": "00" * 32, "header_hash": "00" * 32, "wrapped_key": "00" * 60, "key_id": "k",
         "created": 1.0 + i, "tags": [], "notes": ""}
        for i in range(20_000)
    ]  # fmt: skip
    index.apply("journal/synthetic", records)
    index.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")} | livedata_env
    for cmd in (livedata_exe(), FULL):
        p = subprocess.Popen(
            [*cmd, "ls"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        assert p.stdout is not None and p.stderr is not None
        first = p.stdout.read(100)  # it is listing: the rest waits on the full pipe
        assert first.startswith(b"folder/a-rather-long-file-name-000000.txt\n")
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        code = p.wait(timeout=30)
        assert (code, p.stderr.read()) == (130, b"livedata: error: interrupted\n"), cmd
        p.stdout.close()
