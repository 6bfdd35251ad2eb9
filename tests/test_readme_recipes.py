"""README's recipes, run as written, so they cannot rot.

Every fenced block that follows a ``<!-- recipe: NAME -->`` comment in
README.md is a recipe.  Each runs in a fresh home (``HOME`` of its own, no
``LIVEDATA_HOME``, no keyring) with the installed ``livedata`` on ``PATH`` and
only the environment the README documents for it:

- ``sh`` blocks run line by line under ``bash -e -o pipefail``; a line that
  installs livedata (``pip install .``) is the install the test already did;
  crontab lines run the way cron runs them (``env -i`` with cron's PATH, no
  terminal, ``setsid``).
- GitHub Actions and GitLab CI blocks run through a small runner that gives
  each step only its own ``env:`` (as the real runners do), with the
  expressions a runner fills in (``${{ secrets.X }}``, ``$CI_PIPELINE_ID``).

A recipe whose blocks must not all run here (a server at a made-up address,
an S3 endpoint) has no marker; ``test_every_shell_block_is_a_recipe_or_says_why``
makes that a decision written next to the block.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import PASSPHRASE, livedata_exe, write

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = re.compile(r"<!-- recipe: ([a-z0-9-]+) -->")
NOT_A_RECIPE = re.compile(r"<!-- not a recipe: .+ -->")
CRON_LINE = re.compile(r"^(\S+\s+){5}(?P<command>.+)$")
CRON_PATH = "/usr/bin:/bin"  # what cron gives a job


@dataclass
class Block:
    name: str
    lang: str
    text: str


def blocks() -> list[Block]:
    """Fenced blocks with their marker (``""`` when none) and language."""
    lines = README.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)$", lines[i])
        if not fence:
            i += 1
            continue
        end = lines.index("```", i + 1)
        before = "\n".join(lines[max(0, i - 2) : i])
        marker = MARKER.search(before)
        name = marker.group(1) if marker else ("-" if NOT_A_RECIPE.search(before) else "")
        found.append(Block(name, fence.group(1), "\n".join(lines[i + 1 : end])))
        i = end + 1
    return found


def recipe(name: str) -> Block:
    matches = [b for b in blocks() if b.name == name]
    assert len(matches) == 1, f"README has {len(matches)} blocks marked recipe: {name}"
    return matches[0]


class Home:
    """A new user's machine: a home folder, a work folder, livedata on PATH."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "user"
        self.work = self.home / "work-dir"
        self.work.mkdir(parents=True)
        self.bin = Path(livedata_exe()[0]).parent
        # Where `pipx install .` puts the command, as the cron recipe expects.
        local_bin = self.home / ".local" / "bin"
        local_bin.mkdir(parents=True)
        (local_bin / "livedata").symlink_to(livedata_exe()[0])
        self.env = {
            "HOME": str(self.home),
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            **{k: v for k, v in os.environ.items() if k.startswith("LIVEDATA_TESTONLY")},
        }

    def sh(
        self, script: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        expect: dict[str, int] | None = None,
    ) -> str:
        """Run a shell block; any command that fails fails the recipe, except a
        line containing a key of ``expect``, which must exit with its value."""
        lines = [line for line in script.splitlines() if not re.match(r"^\s*pipx? install \.", line)]
        for key, code in (expect or {}).items():
            lines = [f"{{ {line.split('  #')[0]}; }} && exit 99 || test $? -eq {code}" if key in line else line
                     for line in lines]
        p = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", "\n".join(lines)],
            env={**self.env, **(env or {})},
            cwd=cwd or self.work,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert p.returncode == 0, f"recipe failed with exit {p.returncode}:\n{script}\n--- stderr:\n{p.stderr}"
        return p.stdout

    def cron(self, line: str) -> subprocess.CompletedProcess[str]:
        """One crontab line, run as cron runs it: sh, cron's PATH, no terminal, own session."""
        m = CRON_LINE.match(line)
        assert m, line
        env = {"HOME": str(self.home), "PATH": CRON_PATH, "SHELL": "/bin/sh", "LOGNAME": "user",
               **{k: v for k, v in os.environ.items() if k.startswith("LIVEDATA_TESTONLY")}}
        return subprocess.run(
            ["setsid", "/bin/sh", "-c", m.group("command")],
            env=env, cwd=self.home, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    for var in [v for v in os.environ if v.startswith("LIVEDATA_") and not v.startswith("LIVEDATA_TESTONLY")]:
        monkeypatch.delenv(var)
    return Home(tmp_path)


def test_every_shell_block_is_a_recipe_or_says_why() -> None:
    """A new shell block gets a marker (and so a run here) or a written reason why not."""
    unmarked = [b.text.splitlines()[0] for b in blocks() if b.lang in ("sh", "yaml") and not b.name]
    assert not unmarked, f"shell blocks without '<!-- recipe: NAME -->' or '<!-- not a recipe: why -->': {unmarked}"


def test_quick_start(user: Home) -> None:
    write(user.work / "report.pdf", b"%PDF-1.4 the quarterly report\n")
    write(user.home / "photos" / "2026" / "a.jpg", os.urandom(2000))
    write(user.work / "src" / "main.c", "int main(void) { return 0; }\n")
    user.sh(recipe("quick-start").text, env={"LIVEDATA_PASSPHRASE": PASSPHRASE})
    assert (user.work / "restore" / "2026" / "a.jpg").read_bytes() == (user.home / "photos" / "2026" / "a.jpg").read_bytes()
    assert (user.work / "old.pdf").read_bytes() == b"%PDF-1.4 the quarterly report\n"


def _backup_tree(user: Home) -> None:
    write(user.home / "work" / "a.txt", "a\n")
    write(user.home / "work" / "b.tmp", "scratch\n")
    write(user.home / "work" / "deep" / "c.txt", "c\n")


def test_backups(user: Home) -> None:
    _backup_tree(user)
    write(user.home / ".livedataignore", "# nothing else to leave out\n")
    env = {"LIVEDATA_PASSPHRASE": PASSPHRASE}
    user.sh("livedata init", env=env)
    # A fresh vault holds nothing from before the README's date: exit 3, as documented.
    user.sh(recipe("backups").text, env=env, expect={"--at 2026-11-20": 3})
    listed = user.sh("livedata ls backups/work/", env=env).split()
    assert listed == ["backups/work/a.txt", "backups/work/deep/c.txt"]


def test_cron_recipe_on_a_fresh_home(user: Home) -> None:
    _backup_tree(user)
    env = {"LIVEDATA_PASSPHRASE": PASSPHRASE}
    user.sh("livedata init", env=env)
    shell_part, _, crontab = recipe("cron").text.partition("# crontab -e")
    for line in shell_part.splitlines():
        # At the terminal the passphrase is typed; a line that names the key file uses that alone.
        user.sh(line, env={} if "LIVEDATA_PASSPHRASE_FILE=" in line else env)
    assert (user.home / ".config" / "livedata").stat().st_mode & 0o777 == 0o700
    assert (user.home / ".config" / "livedata" / "backup.key").stat().st_mode & 0o777 == 0o600
    jobs = [line for line in crontab.splitlines() if CRON_LINE.match(line) and not line.startswith("#")]
    assert len(jobs) >= 2
    for line in jobs:
        p = user.cron(line)
        # cron mails whatever a job prints: a good run prints nothing at all.
        assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), line
    assert user.sh("livedata ls backups/work/", env=env).split() == ["backups/work/a.txt", "backups/work/deep/c.txt"]


# -- CI recipes: each step gets only its own environment --------------------------


def _expressions(values: dict[str, str]) -> Callable[[str], str]:
    def fill(text: str) -> str:
        return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: values[m.group(1)], text)

    return fill


def _ci_setup(user: Home) -> tuple[str, Path]:
    """A vault made earlier (the recipes attach to it) and a build's output."""
    store = str(user.home.parent / "team-store")
    other = {"LIVEDATA_HOME": str(user.home.parent / "maker"), "LIVEDATA_PASSPHRASE": PASSPHRASE}
    user.sh(f"livedata init --store {store}", env=other)
    checkout = user.home / "checkout"
    write(checkout / "dist" / "app.tar.gz", os.urandom(3000))
    write(checkout / "dist" / "app.sha256", "abc\n")
    return store, checkout


def test_github_actions_recipe(user: Home) -> None:
    import yaml

    store, checkout = _ci_setup(user)
    runner_temp = user.home / "runner-temp"
    runner_temp.mkdir()
    fill = _expressions({
        "secrets.LIVEDATA_PASSPHRASE": PASSPHRASE, "runner.temp": str(runner_temp),
        "github.run_id": "4242", "github.sha": "0123abcd", "github.ref_name": "main",
    })
    steps: list[dict[str, Any]] = yaml.safe_load(recipe("github-actions").text)
    built = checkout / "dist"
    for step in steps:
        env = {k: fill(str(v)) for k, v in (step.get("env") or {}).items()}
        if "download" in step["run"]:  # a later job's checkout: the build output is not there
            shutil.rmtree(built)
        user.sh(fill(step["run"]), env={"VAULT_STORE": store, **env}, cwd=checkout)
    assert (built / "app.sha256").read_text() == "abc\n"


def test_gitlab_recipe(user: Home) -> None:
    import yaml

    store, checkout = _ci_setup(user)
    job = next(iter(yaml.safe_load(recipe("gitlab").text).values()))
    predefined = {"CI_PROJECT_DIR": str(checkout), "CI_PIPELINE_ID": "77", "CI_COMMIT_SHA": "0123abcd",
                  "CI_COMMIT_BRANCH": "main", "VAULT_STORE": store, "LIVEDATA_PASSPHRASE": PASSPHRASE}
    saved = dict(os.environ)
    os.environ.update(predefined)
    try:
        variables = {k: os.path.expandvars(v) for k, v in job.get("variables", {}).items()}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out = user.sh("\n".join(job["script"]), env={**predefined, **variables}, cwd=checkout)
    assert '"new": 2' in out


def test_completion_recipe(user: Home) -> None:
    script = recipe("completion").text.splitlines()
    bash = next(line for line in script if "bash" in line).split("#")[0]
    user.sh(f"set +e; {bash}; complete -p livedata")


def test_search_recipe(user: Home) -> None:
    write(user.work / "report.pdf", b"%PDF-1.4 tax 2025 report\n")
    write(user.work / "notes" / "plan.txt", "the invoice plan\n")
    env = {"LIVEDATA_PASSPHRASE": PASSPHRASE}
    user.sh("livedata init && livedata upload report.pdf --tag finance", env=env)
    out = user.sh(recipe("search").text, env=env)
    assert "report.pdf" in out


def test_audit_recipe(user: Home) -> None:
    env = {"LIVEDATA_PASSPHRASE": PASSPHRASE}
    write(user.work / "finance" / "q.txt", "q\n")
    user.sh("livedata init && livedata upload finance --recursive --as finance/ && livedata download finance/q.txt -o -",
            env=env)
    user.sh(recipe("audit").text, env=env)
    assert "download" in (user.work / "trail.csv").read_text()


def test_demo_script(user: Home) -> None:
    """``make demo``: the narrated round trip on a throw-away vault."""
    demo = README.parent / "scripts" / "demo.sh"
    out = user.sh(f"bash {demo} {livedata_exe()[0]}")
    assert "identical" in out and "random ids and ciphertext" in out
