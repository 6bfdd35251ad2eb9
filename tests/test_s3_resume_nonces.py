"""A resumed S3 upload never sends a changed part under the key and nonces it
used before: it resumes only when the parts already sent still hold the same
plaintext, and otherwise starts over with a new data key and salt."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import s3server
from s3server import MIB, CountingProxy

from conftest import Cli, livedata_exe, write

pytestmark = pytest.mark.subprocess
moto_url, s3_cli, proxy = s3server.moto_url, s3server.s3_cli, s3server.proxy
s3, bucket = s3server.s3, s3server.bucket


def _killed_after_two_parts(cli: Cli, s3: Any, bucket: str, proxy: CountingProxy, big: Path) -> list[int]:
    """Upload ``big`` until the store holds two of its parts, then kill the upload;
    returns the numbers of the parts it holds (they go in parallel: 1 and 2, or 1 and 3)."""
    proxy.hold("s3:UploadPart", after=2)  # the network stalls after two parts
    env = {**cli.env, "AWS_ENDPOINT_URL": proxy.url}
    child = subprocess.Popen(
        [*livedata_exe(), "upload", str(big)], env=env, cwd=cli.cwd,
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
    return sorted(int(p["PartNumber"]) for p in parts)


def _parts_by_key_and_number(proxy: CountingProxy) -> dict[tuple[str, str], set[bytes]]:
    """Every part body the store received, by object key and part number: one
    object key is one data key, and one part number the same segment nonces."""
    seen: dict[tuple[str, str], set[bytes]] = {}
    for path, body in proxy.parts:
        url = urlsplit(path)
        number = parse_qs(url.query)["partNumber"][0]
        seen.setdefault((url.path, number), set()).add(body)
    return seen


@pytest.mark.parametrize("change", [True, False], ids=["changed", "unchanged"])
def test_resume_starts_over_when_a_sent_part_changed(
    s3_cli: Cli, s3: Any, bucket: str, tmp_path: Path, proxy: CountingProxy, change: bool
) -> None:
    s3_cli.ok("init", "--store", f"s3://{bucket}/r")
    data = bytearray(os.urandom(12 * MIB))  # three parts: 5, 5 and 2 MiB of plaintext
    big = write(tmp_path / "big.bin", bytes(data))
    st = big.stat()
    held = _killed_after_two_parts(s3_cli, s3, bucket, proxy, big)
    first = {key for key, _n in _parts_by_key_and_number(proxy)}
    assert len(first) == 1
    if change:  # one byte in the middle of a part the store holds, other than the first; size and mtime kept
        data[(held[1] - 1) * 5 * MIB + MIB // 2] ^= 0xFF
        big.write_bytes(bytes(data))
        os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert big.stat().st_mtime_ns == st.st_mtime_ns and big.stat().st_size == st.st_size

    proxy.reset()
    s3_cli.ok("upload", str(big), env={"AWS_ENDPOINT_URL": proxy.url})
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # the old one aborted, the new done
    assert s3_cli.ok("download", "big.bin", "-o", "-").stdout == bytes(data)
    seen = _parts_by_key_and_number(proxy)
    # Never two different ciphertexts for one part of one object (one key, one set of nonces).
    assert all(len(bodies) == 1 for bodies in seen.values()), {k: len(v) for k, v in seen.items()}
    keys = {key for key, _n in seen}
    if change:  # a new object id, data key and salt, every part sent again
        assert len(keys) == 2 and proxy.counts["s3:CreateMultipartUpload"] == 1
        assert proxy.counts["s3:UploadPart"] == 3
    else:  # the same plaintext: resumed, only the missing part sent
        assert keys == first and proxy.counts["s3:CreateMultipartUpload"] == 0
        assert proxy.counts["s3:UploadPart"] == 1
