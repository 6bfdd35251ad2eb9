"""The vault in an S3 bucket, with and without KMS, against moto's server over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import s3server
from s3server import MIB, CountingProxy, all_keys

from conftest import Cli, assert_one_line_error, livedata_exe, write

pytestmark = pytest.mark.inprocess
# The S3 fixtures, found by pytest under their own names.
moto_url, s3_cli, proxy = s3server.moto_url, s3server.s3_cli, s3server.proxy
s3, kms, bucket, kms_key = s3server.s3, s3server.kms, s3server.bucket, s3server.kms_key

OPAQUE_KEY = re.compile(
    r"^(config|keys/(pass|reco|kms)-[0-9a-f]{12}|data/[0-9a-f]{32}|journal/\d{20}-[0-9a-f]{16}"
    r"|audit/[0-9a-f]{16}/\d{12}-\d{12}|audit-head/[0-9a-f]{16})$"
)


def random_file(path: Path, size: int) -> Path:
    return write(path, os.urandom(size))


def data_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [k for k in all_keys(s3, bucket) if k.startswith(f"{prefix}/data/")]


def test_round_trip_empty_small_and_multipart(s3_cli: Cli, s3: Any, bucket: str, tmp_path: Path) -> None:
    s3_cli.ok("init", "--store", f"s3://{bucket}/team-vault")
    files = {
        "empty.bin": b"",
        "small.txt": b"small file\n",
        "big.bin": os.urandom(12 * MIB + 12345),  # three 5 MiB parts
    }
    for name, data in files.items():
        write(tmp_path / "in" / name, data)
    r = s3_cli.ok("upload", *(str(tmp_path / "in" / n) for n in files), "--as", "in/", "--json")
    assert r.json()["counts"] == {"new": 3}
    s3_cli.ok("upload", "-", "--as", "piped/stdin.txt", input=b"from stdin")

    # The big file went up in parts (a multipart ETag ends in -N); its container is exact.
    objects = [s3.head_object(Bucket=bucket, Key=k) for k in data_keys(s3, bucket, "team-vault")]
    assert max(h["ContentLength"] for h in objects) == 102 + len(files["big.bin"]) + 13 * 16
    assert any(h["ETag"].strip('"').endswith("-3") for h in objects)
    assert all(h.get("ServerSideEncryption") == "AES256" for h in objects)

    s3_cli.ok("download", "in/", "-o", str(tmp_path / "out"))
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    assert s3_cli.ok("download", "in/big.bin", "-o", "-").stdout == files["big.bin"]

    # Versions, ls, rm, sync, verify: the vault core, unchanged, on a bucket.
    write(tmp_path / "in" / "small.txt", "small file, second version\n")
    s3_cli.ok("upload", str(tmp_path / "in" / "small.txt"), "--as", "in/")
    assert s3_cli.ok("download", "in/small.txt", "--version", "1", "-o", "-").stdout == b"small file\n"
    s3_cli.ok("rm", "in/empty.bin")
    s3_cli.ok("sync", "--rebuild")
    listing = s3_cli.ok("ls", "--json").json()
    assert "in/big.bin" in json.dumps(listing) and "empty.bin" not in json.dumps(listing)
    verified = s3_cli.ok("verify", "--data", "--json").json()
    assert verified["problems"] == [] and verified["objects"] >= 4


def test_folder_upload_prefix_download_and_second_home(
    s3_cli: Cli, s3: Any, bucket: str, tmp_path: Path, livedata_env: dict[str, str]
) -> None:
    tree = tmp_path / "photos"
    files = {
        "a.txt": b"alpha",
        "trip/b.jpg": os.urandom(3000),
        "trip/deep/c.raw": os.urandom(6 * MIB),  # two parts
    }
    for rel, data in files.items():
        write(tree / rel, data)
    s3_cli.ok("init", "--store", f"s3://{bucket}/v")
    s3_cli.ok("upload", str(tree), "--recursive", "--as", "photos/")
    s3_cli.ok("download", "photos/", "-o", str(tmp_path / "restore"))
    for rel, data in files.items():
        assert (tmp_path / "restore" / rel).read_bytes() == data

    # A second machine: a fresh home attaches to the same bucket and sees the same files.
    other = Cli({**s3_cli.env, "LIVEDATA_HOME": str(tmp_path / "home2")}, s3_cli.cwd)
    r = other.ok("init", "--store", f"s3://{bucket}/v/", "--json")
    assert r.json()["created"] is False and r.json()["versions"] >= 3
    assert other.ok("download", "photos/trip/deep/c.raw", "-o", "-").stdout == files["trip/deep/c.raw"]
    other.ok("upload", "-", "--as", "from-two.txt", input=b"second machine")
    s3_cli.ok("sync")
    assert s3_cli.ok("download", "from-two.txt", "-o", "-").stdout == b"second machine"

    # Later commands need no endpoint variable: init remembered it.
    no_endpoint = {**other.env}
    del no_endpoint["AWS_ENDPOINT_URL"]
    assert Cli(no_endpoint, other.cwd).ok("download", "photos/a.txt", "-o", "-").stdout == b"alpha"


def test_bucket_reveals_no_names_tags_or_content(s3_cli: Cli, s3: Any, bucket: str, tmp_path: Path) -> None:
    secret_name = "quarterly-merger-plans"
    content = b"PLAINTEXT-MARKER " * 500
    write(tmp_path / secret_name / "board-minutes.txt", content)
    s3_cli.ok("init", "--store", f"s3://{bucket}/p")
    s3_cli.ok("upload", str(tmp_path / secret_name), "--recursive", "--tag", "confidential-tag")
    keys = all_keys(s3, bucket)
    assert keys and all(OPAQUE_KEY.match(k.removeprefix("p/")) for k in keys), keys
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for needle in (secret_name.encode(), b"board-minutes", b"confidential-tag", b"PLAINTEXT-MARKER"):
            assert needle not in body, (key, needle)


def test_tampered_object_is_exit_5(s3_cli: Cli, s3: Any, bucket: str, tmp_path: Path) -> None:
    s3_cli.ok("init", "--store", f"s3://{bucket}/t")
    s3_cli.ok("upload", str(random_file(tmp_path / "one.bin", 300_000)), str(random_file(tmp_path / "two.bin", 200)))
    entries = {e["path"]: e for e in s3_cli.ok("ls", "--json").json()}
    one, two = entries["one.bin"], entries["two.bin"]
    assert one["pack"] and one["pack"] == two["pack"], "small files share a pack on S3"
    key = f"t/data/{one['pack']}"
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    body = bytearray(original)
    body[one["offset"] + 150_000] ^= 1
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    r = s3_cli("download", "one.bin", "-o", str(tmp_path / "out.bin"))
    assert_one_line_error(r, 5)
    assert not (tmp_path / "out.bin").exists()
    # Another member's container in its place: caught before any segment.
    body = bytearray(original)
    body[two["offset"] : two["offset"] + two["length"]] = original[one["offset"] : one["offset"] + two["length"]]
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    assert_one_line_error(s3_cli("download", "two.bin", "-o", "-"), 5)
    assert s3_cli("verify").code == 5


def test_resume_after_killed_upload(s3_cli: Cli, s3: Any, bucket: str, tmp_path: Path, proxy: CountingProxy) -> None:
    s3_cli.ok("init", "--store", f"s3://{bucket}/r")
    big = random_file(tmp_path / "big.bin", 12 * MIB)  # three parts
    proxy.hold("s3:UploadPart", after=2)  # the network stalls after two parts
    env = {**s3_cli.env, "AWS_ENDPOINT_URL": proxy.url}
    child = subprocess.Popen(
        [*livedata_exe(), "upload", str(big)], env=env, cwd=s3_cli.cwd,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        parts: list[Any] = []
        while time.monotonic() < deadline and len(parts) < 2:
            uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            if uploads:
                up = uploads[0]
                parts = s3.list_parts(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"]).get("Parts", [])
            time.sleep(0.05)
        assert len(parts) == 2
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert "big.bin" not in s3_cli.ok("ls").out  # nothing half-stored is listed
    # Clean-up of abandoned uploads spares the one this home will resume.
    assert s3_cli.ok("sync", "--json").json()["abandoned_uploads_aborted"] == 0

    proxy.reset()
    sent_before = len(proxy.parts)
    s3_cli.ok("upload", str(big), env={"AWS_ENDPOINT_URL": proxy.url})
    # Only the part the bucket did not have reached it again (a request the
    # network made fail and botocore retried is no second part).
    # (Parts go two at a time: which two got through before the stall varies.)
    lacked = sorted({1, 2, 3} - {p["PartNumber"] for p in parts})
    assert len(lacked) == 1
    sent = [int(parse_qs(urlsplit(path).query)["partNumber"][0]) for path, _body in proxy.parts[sent_before:]]
    assert sent == lacked, proxy.counts
    assert proxy.counts["s3:CreateMultipartUpload"] == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_cli.ok("download", "big.bin", "-o", "-").stdout == big.read_bytes()


def test_abandoned_multipart_uploads_are_aborted(s3_cli: Cli, s3: Any, bucket: str) -> None:
    s3_cli.ok("init", "--store", f"s3://{bucket}/a")
    s3.create_multipart_upload(Bucket=bucket, Key="a/data/" + "0" * 32)
    s3.create_multipart_upload(Bucket=bucket, Key="elsewhere/data/" + "1" * 32)  # not this vault's
    # moto dates every upload in 2010: "older than a day" holds, unless the age is raised.
    r = s3_cli.ok("sync", "--json", env={"LIVEDATA_S3_ABANDON_AFTER": str(100 * 365 * 86400)})
    assert r.json()["abandoned_uploads_aborted"] == 0
    r = s3_cli.ok("sync", "--json")
    assert r.json()["abandoned_uploads_aborted"] == 1
    left = [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == ["elsewhere/data/" + "1" * 32]


def test_kms_vault_without_passphrase(
    s3_cli: Cli, s3: Any, kms: Any, bucket: str, kms_key: tuple[str, str], tmp_path: Path
) -> None:
    key_id, alias = kms_key
    del s3_cli.env["LIVEDATA_PASSPHRASE"]
    r = s3_cli.ok("init", "--store", f"s3://{bucket}/ci", "--kms-key", alias, "--json")
    assert r.json()["kms_key"] == alias and r.json()["created"] is True
    slots = [k for k in all_keys(s3, bucket) if k.startswith("ci/keys/")]
    assert len(slots) == 1 and slots[0].startswith("ci/keys/kms-")
    config = json.loads(s3.get_object(Bucket=bucket, Key="ci/config")["Body"].read())
    assert config["kms_key_id"] == alias

    data = os.urandom(7 * MIB)
    s3_cli.ok("upload", "-", "--as", "build/artifact.bin", input=data)
    assert s3_cli.ok("download", "build/artifact.bin", "-o", "-").stdout == data
    head = s3.head_object(Bucket=bucket, Key=data_keys(s3, bucket, "ci")[0])
    assert head["ServerSideEncryption"] == "aws:kms"

    # A second home attaches with KMS access alone.
    other = Cli({**s3_cli.env, "LIVEDATA_HOME": str(tmp_path / "home2")}, s3_cli.cwd)
    assert other.ok("init", "--store", f"s3://{bucket}/ci", "--json").json()["versions"] == 1

    # Break-glass passphrase, then the key is disabled: KMS refuses, exit 4 ...
    s3_cli.ok("keys", "add", env={"LIVEDATA_NEW_PASSPHRASE": "break glass"})
    kms.disable_key(KeyId=key_id)
    r = s3_cli("download", "build/artifact.bin", "-o", "-")
    assert_one_line_error(r, 4)
    assert "disabled" in r.stderr
    # ... unless the break-glass passphrase is given.
    r = s3_cli.ok("download", "build/artifact.bin", "-o", "-", env={"LIVEDATA_PASSPHRASE": "break glass"})
    assert r.stdout == data
    assert_one_line_error(other("download", "build/artifact.bin", "-o", "-"), 4)


def test_a_kms_slot_naming_another_key_is_exit_5_and_never_asked_of_that_key(
    s3_cli: Cli, s3: Any, kms: Any, bucket: str, kms_key: tuple[str, str]
) -> None:
    """The KMS key is the config's (MAC-checked, pinned): a slot whose key was
    swapped for a stranger's is tampering, exit 5, and its Decrypt is never
    sent there; a slot whose ARN alone was changed still opens with the vault's key."""
    _key_id, alias = kms_key
    del s3_cli.env["LIVEDATA_PASSPHRASE"]
    s3_cli.ok("init", "--store", f"s3://{bucket}/kv", "--kms-key", alias)
    s3_cli.ok("upload", "-", "--as", "a.txt", input=b"kept")
    slot_key = next(k for k in all_keys(s3, bucket) if k.startswith("kv/keys/kms-"))
    original = s3.get_object(Bucket=bucket, Key=slot_key)["Body"].read()
    stranger = kms.create_key(Description="not this vault's")["KeyMetadata"]
    slot = json.loads(original)
    slot["kdf"]["kms_key_arn"] = stranger["Arn"]
    s3.put_object(Bucket=bucket, Key=slot_key, Body=json.dumps(slot).encode())
    assert s3_cli.ok("download", "a.txt", "-o", "-").stdout == b"kept"
    slot["kdf"]["kms_key_id"] = stranger["KeyId"]
    s3.put_object(Bucket=bucket, Key=slot_key, Body=json.dumps(slot).encode())
    r = s3_cli("download", "a.txt", "-o", "-")
    assert_one_line_error(r, 5)
    assert stranger["KeyId"] in r.stderr and "not the vault's" in r.stderr
    s3.put_object(Bucket=bucket, Key=slot_key, Body=original)
    assert s3_cli.ok("download", "a.txt", "-o", "-").stdout == b"kept"


def test_kms_calls_per_command(
    s3_cli: Cli, bucket: str, kms_key: tuple[str, str], tmp_path: Path, proxy: CountingProxy
) -> None:
    """One KMS Decrypt per command however many files; per-object keys add one per object."""
    _key_id, alias = kms_key
    del s3_cli.env["LIVEDATA_PASSPHRASE"]
    s3_cli.env["AWS_ENDPOINT_URL_KMS"] = proxy.url
    for i in range(20):
        write(tmp_path / "many" / f"f{i:02}.txt", f"file {i}\n")
    s3_cli.ok("init", "--store", f"s3://{bucket}/plain", "--kms-key", alias)
    assert proxy.counts["kms:Encrypt"] == 1 and proxy.counts["kms:Decrypt"] == 0
    for args in (
        ("upload", str(tmp_path / "many"), "--recursive"),
        ("download", "many/", "-o", str(tmp_path / "back")),
        ("verify", "--data"),
    ):
        proxy.reset()
        s3_cli.ok(*args)
        assert proxy.counts["kms:Decrypt"] == 1, (args, proxy.counts)
        assert proxy.counts["kms:GenerateDataKey"] == 0

    home2 = {"LIVEDATA_HOME": str(tmp_path / "home2")}
    s3_cli.ok("init", "--store", f"s3://{bucket}/per-object", "--kms-key", alias, "--kms-per-object", env=home2)
    proxy.reset()
    s3_cli.ok("upload", str(tmp_path / "many" / "f00.txt"), str(tmp_path / "many" / "f01.txt"), env=home2)
    assert proxy.counts["kms:GenerateDataKey"] == 2 and proxy.counts["kms:Decrypt"] == 1
    proxy.reset()
    back = tmp_path / "back2"
    s3_cli.ok("download", "f00.txt", "-o", str(back / "a"), env=home2)
    assert proxy.counts["kms:Decrypt"] == 2  # the vault key, then this object's key
    assert (back / "a").read_text() == "file 0\n"


def test_missing_bucket_is_exit_3(s3_cli: Cli) -> None:
    r = s3_cli("init", "--store", "s3://no-such-bucket-here/v")
    assert_one_line_error(r, 3)
    assert "no-such-bucket-here" in r.stderr


def test_endpoint_down_is_exit_6(s3_cli: Cli, bucket: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # The subprocess timeout is the bound: retries and timeouts must end well within it.
    r = s3_cli("init", "--store", f"s3://{bucket}/v", env={"AWS_ENDPOINT_URL": closed}, timeout=20)
    assert_one_line_error(r, 6)
    s3_cli.ok("init", "--store", f"s3://{bucket}/v")
    assert_one_line_error(s3_cli("sync", env={"AWS_ENDPOINT_URL": closed}, timeout=20), 6)


def test_bad_s3_settings_are_usage_errors(s3_cli: Cli, bucket: str, tmp_path: Path) -> None:
    s3_cli.ok("init", "--store", f"s3://{bucket}/v")
    big = random_file(tmp_path / "f.bin", 6 * MIB)
    for var, value in (("LIVEDATA_S3_PART_SIZE", "1000"), ("LIVEDATA_S3_PART_SIZE", "big"), ("LIVEDATA_S3_SSE", "rot13")):
        r = s3_cli("upload", str(big), env={var: value})
        assert r.code == 2 and var in r.stderr, (var, value, r.stderr)
        assert "Traceback" not in r.stderr


def test_sse_can_be_turned_off(s3_cli: Cli, s3: Any, bucket: str) -> None:
    s3_cli.env["LIVEDATA_S3_SSE"] = "none"
    s3_cli.ok("init", "--store", f"s3://{bucket}/n")
    s3_cli.ok("upload", "-", "--as", "x", input=b"x")
    for key in all_keys(s3, bucket):
        assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key=key)
