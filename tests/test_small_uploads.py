"""First backups of many small files (livedata_cli/packs.py): members are
gathered and written to their pack a mebibyte at a time, padding is cut from
a block of the OS's random bytes, and a small file is read in reads sized by
its stat; every member still restores byte for byte and is padded to its
size class."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import s3server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Cli, data_objects, livedata_exe, write

moto_url, s3, bucket = s3server.moto_url, s3server.s3, s3server.bucket

FILES = 300

# Loaded by the livedata child first (PYTHONPATH): counts the calls of
# os.urandom made by livedata_cli/packs.py itself, and the write calls on the
# pack files of the store, and writes them out at exit.
_COUNTER = '''
import atexit, json, os, sys
_out = os.environ["COUNT_TO"]
_n = {"pack_urandom": 0}
_urandom, _open = os.urandom, open
def _counted(n):
    if sys._getframe(1).f_code.co_filename.endswith(os.sep + "packs.py"):
        _n["pack_urandom"] += 1
    return _urandom(n)
os.urandom = _counted
def _dump():
    with _open(_out, "w") as f:
        f.write(json.dumps(_n))
atexit.register(_dump)
'''


@pytest.mark.subprocess
def test_padding_of_many_members_takes_few_reads_of_the_random_source(vault_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = {f"d{i % 5}/f{i:03d}": os.urandom(i * 13 % 5000) for i in range(FILES)}
    for rel, data in files.items():
        write(src / rel, data)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_COUNTER)
    counts = tmp_path / "counts.json"
    env = {**vault_cli.env, "PYTHONPATH": str(hook), "COUNT_TO": str(counts)}
    p = subprocess.run(
        [*livedata_exe(), "upload", str(src), "-r", "--as", "t/", "--json"],
        capture_output=True, env=env, cwd=vault_cli.cwd, timeout=120,
    )
    assert p.returncode == 0, p.stderr.decode()
    n = json.loads(counts.read_text())
    assert n["pack_urandom"] <= 3, n  # before: one a member
    out = tmp_path / "out"
    vault_cli.ok("download", "t/", "-o", str(out))
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data, rel


@pytest.mark.subprocess
def test_a_first_backup_whose_first_file_is_empty(vault_cli: Cli, tmp_path: Path) -> None:
    """Many small files, sealed in worker processes, the first of them empty:
    stored like the rest (it used to end the upload with an IndexError, exit 1)."""
    src = tmp_path / "src"
    write(src / "a" / "0-empty", b"")
    files = {f"b/f{i:03d}": os.urandom(64 + i) for i in range(FILES)}
    for rel, data in files.items():
        write(src / rel, data)
    r = vault_cli.ok("upload", str(src), "-r", "--as", "t/", "--json")
    assert r.json()["counts"]["new"] == FILES + 3  # and the folders a and b
    out = tmp_path / "out"
    vault_cli.ok("download", "t/", "-o", str(out))
    assert (out / "a" / "0-empty").read_bytes() == b""
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data


@pytest.mark.subprocess
def test_a_pack_is_its_members_each_padded_to_its_class(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    """The pack object is exactly its members' containers, each padded to its
    size class: gathering members before writing changed nothing of the layout."""
    from livedata_cli.crypto.container import container_size
    from livedata_cli.packs import padded

    src = tmp_path / "src"
    sizes = [0, 1, 100, 4096, 5000, 70_000, 300_000]
    for i, n in enumerate(sizes):
        write(src / f"f{i}", os.urandom(n))
    before = set(data_objects(store_dir))
    r = vault_cli.ok("upload", str(src), "-r", "--as", "t/", "--json")
    assert r.json()["counts"]["new"] == len(sizes)
    (pack,) = set(data_objects(store_dir)) - before
    assert pack.stat().st_size == sum(padded(container_size(n)) for n in sizes)
    out = tmp_path / "out"
    vault_cli.ok("download", "t/", "-o", str(out))
    assert [len((out / f"f{i}").read_bytes()) for i in range(len(sizes))] == sizes


# Counts Argon2id derivations in the livedata child (PYTHONPATH), written out at exit.
_KDF_COUNTER = '''
import atexit, os
import argon2.low_level as _ll
_n, _raw, _open = [0], _ll.hash_secret_raw, open
def _counted(*a, **k):
    _n[0] += 1
    return _raw(*a, **k)
_ll.hash_secret_raw = _counted
def _dump():
    with _open(os.environ["COUNT_TO"], "w") as f:
        f.write(str(_n[0]))
atexit.register(_dump)
'''


@pytest.mark.subprocess
def test_a_job_key_file_opens_the_vault_without_stretching_a_passphrase(cli: Cli, tmp_path: Path) -> None:
    """The cron recipe: a passphrase made the vault, ``keys add --key-file`` made
    the job's key; the job's first backup opens the key's slot at once, without
    first running Argon2id against the passphrase slot that was used last."""
    cli.ok("init")
    key = tmp_path / "job.key"
    cli.ok("keys", "add", "--key-file", str(key))
    write(tmp_path / "src" / "f.txt", "data")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_KDF_COUNTER)
    counts = tmp_path / "kdf.txt"
    env = {k: v for k, v in cli.env.items() if not k.startswith("LIVEDATA_PASSPHRASE")}
    env |= {"LIVEDATA_PASSPHRASE_FILE": str(key), "PYTHONPATH": str(hook), "COUNT_TO": str(counts)}
    p = subprocess.run(
        [*livedata_exe(), "upload", str(tmp_path / "src"), "-r", "--as", "t/"],
        capture_output=True, env=env, cwd=cli.cwd, timeout=120,
    )
    assert p.returncode == 0, p.stderr.decode()
    assert counts.read_text() == "0"
    # The passphrase still opens it, and a wrong key file is still refused.
    assert cli.ok("download", "t/f.txt", "-o", "-").out == "data"
    key.write_text("AAAA-" * 12 + "AAAA\n")
    bad = subprocess.run(
        [*livedata_exe(), "download", "t/f.txt", "-o", "-"], capture_output=True, env=env, cwd=cli.cwd, timeout=120
    )
    assert bad.returncode == 4, bad.stderr.decode()


# Writes which heavy modules the livedata child loaded, at its exit (PYTHONPATH).
_MODULES = '''
import atexit, os, sys
_open = open
def _dump():
    with _open(os.environ["COUNT_TO"], "w") as f:
        f.write(" ".join(m for m in ("boto3", "s3transfer", "botocore") if m in sys.modules))
atexit.register(_dump)
'''


@pytest.mark.subprocess
def test_a_backup_and_restore_on_s3_load_botocore_but_not_boto3(
    cli: Cli, moto_url: str, bucket: str, tmp_path: Path
) -> None:
    """An S3 command makes its client with botocore alone: boto3's resource
    layer and transfer manager are never imported (a cost every S3 command
    paid), and the backup and restore still go through byte for byte."""
    s3cli = s3server.aws_env(cli, moto_url)
    s3cli.ok("init", "--store", f"s3://{bucket}/v")
    src = tmp_path / "src"
    files = {f"f{i}": os.urandom(i * 100) for i in range(20)}
    for rel, data in files.items():
        write(src / rel, data)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_MODULES)
    for i, args in enumerate((["upload", str(src), "-r", "--as", "t/"], ["download", "t/", "-o", str(tmp_path / "out")])):
        seen = tmp_path / f"modules{i}.txt"
        env = {**s3cli.env, "PYTHONPATH": str(hook), "COUNT_TO": str(seen)}
        p = subprocess.run([*livedata_exe(), *args], capture_output=True, env=env, cwd=s3cli.cwd, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        assert seen.read_text() == "botocore", args
    for rel, data in files.items():
        assert (tmp_path / "out" / rel).read_bytes() == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.one_of(st.integers(0, 70_000), st.integers((1 << 20) - 3, (1 << 20) + 3)), grow=st.integers(0, 3))
def test_a_small_file_is_read_whole_up_to_the_limit(tmp_path: Path, size: int, grow: int) -> None:
    """What a worker reads of a file: all of it when small, and one byte past
    the limit when not (then it is stored the usual way)."""
    from livedata_cli.packs import SMALL_FILE, _read_small

    path = tmp_path / "f"
    data = os.urandom(size + grow)
    path.write_bytes(data)
    st_, got = _read_small(str(path))
    assert st_.st_size == len(data)
    assert got == data[: SMALL_FILE + 1]
